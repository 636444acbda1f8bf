//! One ONNX node test case on disk: `<case>/model.onnx` and `<case>/test_data_set_0/
//! {input,output}_N.pb`, read into the operator, its attributes and host arrays.

use crate::proto::{self, AttributeProto, TensorProto};
use std::collections::BTreeMap;
use std::path::Path;
use tk_ir::dtype::DType;
use tk_runtime::HostArray;

/// An attribute value, as ONNX stores it.
#[derive(Clone, Debug)]
pub enum Attr {
    Float(f32),
    Int(i64),
    Str(String),
    Floats(Vec<f32>),
    Ints(Vec<i64>),
    /// Tensors, graphs and string lists: no operator of the harness takes them.
    Other,
}

/// A tensor of a case: its ONNX dtype, shape and, where tk has that dtype, the host array.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub shape: Vec<usize>,
    /// `Err(reason)` for dtypes tk does not have.
    pub array: Result<HostArray, String>,
}

impl Tensor {
    pub fn dtype(&self) -> Option<DType> {
        self.array.as_ref().ok().map(|a| a.dtype)
    }
    /// The elements as i64 (for the integer operands that become constants).
    pub fn ints(&self) -> Result<Vec<i64>, String> {
        let a = self.array.as_ref()?;
        if !a.dtype.is_int() {
            return Err(format!("expected an integer tensor, found {}", a.dtype));
        }
        Ok((0..a.len()).map(|i| a.get_f64(i) as i64).collect())
    }
}

pub struct Case {
    pub name: String,
    pub op: String,
    pub opset: i64,
    pub attrs: BTreeMap<String, Attr>,
    /// The node's inputs in order; `None` for an omitted optional input (an empty name).
    pub inputs: Vec<Option<Tensor>>,
    pub outputs: Vec<Tensor>,
    /// Nodes in the model: 1 for the single-operator cases the harness runs.
    pub nodes: usize,
}

pub fn onnx_type_name(t: i32) -> &'static str {
    match t {
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        14 => "COMPLEX64",
        15 => "COMPLEX128",
        16 => "BFLOAT16",
        17 => "FLOAT8E4M3FN",
        18 => "FLOAT8E4M3FNUZ",
        19 => "FLOAT8E5M2",
        20 => "FLOAT8E5M2FNUZ",
        21 => "UINT4",
        22 => "INT4",
        23 => "FLOAT4E2M1",
        24 => "FLOAT8E8M0",
        25 => "UINT2",
        26 => "INT2",
        _ => "UNDEFINED",
    }
}

/// The tk dtype of an ONNX element type, or why there is none.
pub fn tk_dtype(t: i32) -> Result<DType, String> {
    Ok(match t {
        1 => DType::F32,
        2 => DType::U8,
        3 => DType::I8,
        5 => DType::I16,
        6 => DType::I32,
        7 => DType::I64,
        9 => DType::Bool,
        10 => DType::F16,
        11 => DType::F64,
        12 => DType::U32,
        16 => DType::Bf16,
        _ => return Err(format!("tk has no {} dtype", onnx_type_name(t))),
    })
}

/// A TensorProto's elements as a host array (little-endian storage, as tk keeps them).
pub fn tensor(t: &TensorProto) -> Result<Tensor, String> {
    if t.data_location == 1 {
        return Err("tensor data stored externally".into());
    }
    let shape: Vec<usize> = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("negative dimension {d}")))
        .collect::<Result<_, _>>()?;
    let array = tk_dtype(t.data_type).and_then(|d| host_array(t, d, shape.clone()));
    Ok(Tensor { shape, array })
}

fn host_array(t: &TensorProto, d: DType, shape: Vec<usize>) -> Result<HostArray, String> {
    let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("the tensor's size overflows")?;
    let width = tk_runtime::array::elem_bytes(d);
    if !t.raw_data.is_empty() || n == 0 {
        if Some(t.raw_data.len()) != n.checked_mul(width) {
            return Err(format!("raw_data holds {} bytes for {n} elements of {d}", t.raw_data.len()));
        }
        return Ok(HostArray { dtype: d, shape, data: t.raw_data.clone() });
    }
    let count = |len: usize| {
        if len == n { Ok(()) } else { Err(format!("{len} stored elements for a tensor of {n}")) }
    };
    let mut a = HostArray { dtype: d, shape, data: Vec::new() };
    match d {
        DType::F32 => {
            count(t.float_data.len())?;
            a.data = t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect();
        }
        DType::F64 => {
            count(t.double_data.len())?;
            a.data = t.double_data.iter().flat_map(|v| v.to_le_bytes()).collect();
        }
        DType::I64 => {
            count(t.int64_data.len())?;
            a.data = t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect();
        }
        DType::U32 => {
            count(t.uint64_data.len())?;
            a.data = t.uint64_data.iter().flat_map(|&v| (v as u32).to_le_bytes()).collect();
        }
        // int32_data holds the narrower integer types, bools and the 16-bit float bit patterns.
        _ => {
            count(t.int32_data.len())?;
            a.data = t.int32_data.iter().flat_map(|&v| v.to_le_bytes()[..width].to_vec()).collect();
        }
    }
    Ok(a)
}

fn attr(a: &AttributeProto) -> Attr {
    match a.r#type {
        1 => Attr::Float(a.f),
        2 => Attr::Int(a.i),
        3 => Attr::Str(String::from_utf8_lossy(&a.s).into_owned()),
        6 => Attr::Floats(a.floats.clone()),
        7 => Attr::Ints(a.ints.clone()),
        _ => Attr::Other,
    }
}

fn read_tensor(path: &Path) -> Result<Tensor, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let t: TensorProto = proto::decode(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    tensor(&t).map_err(|e| format!("{}: {e}", path.display()))
}

/// The operator of a case's model and how many nodes it has, without reading its tensors.
pub fn model_op(dir: &Path) -> Result<(String, usize), String> {
    let model_path = dir.join("model.onnx");
    let bytes = std::fs::read(&model_path).map_err(|e| format!("{}: {e}", model_path.display()))?;
    let model: proto::ModelProto = proto::decode(&bytes).map_err(|e| format!("{}: {e}", model_path.display()))?;
    let graph = model.graph.unwrap_or_default();
    Ok((graph.node.first().map(|n| n.op_type.clone()).unwrap_or_default(), graph.node.len()))
}

impl Case {
    pub fn load(dir: &Path) -> Result<Case, String> {
        let name = dir.file_name().and_then(|n| n.to_str()).ok_or("case directory name")?.to_string();
        let model_path = dir.join("model.onnx");
        let bytes = std::fs::read(&model_path).map_err(|e| format!("{}: {e}", model_path.display()))?;
        let model: proto::ModelProto = proto::decode(&bytes).map_err(|e| format!("{}: {e}", model_path.display()))?;
        let graph = model.graph.ok_or_else(|| format!("{}: no graph", model_path.display()))?;
        let opset =
            model.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(0, |o| o.version);
        let nodes = graph.node.len();
        let Some(node) = graph.node.first() else {
            return Err(format!("{}: the graph has no node", model_path.display()));
        };
        let data = dir.join("test_data_set_0");
        // The input_N.pb files follow the graph's inputs; the node refers to them by name.
        let graph_inputs: Vec<&str> = graph.input.iter().map(|v| v.name.as_str()).collect();
        let mut inputs = Vec::new();
        for name in &node.input {
            if name.is_empty() {
                inputs.push(None);
                continue;
            }
            if let Some(t) = graph.initializer.iter().find(|t| &t.name == name) {
                inputs.push(Some(tensor(t)?));
                continue;
            }
            let k = graph_inputs
                .iter()
                .position(|g| g == name)
                .ok_or_else(|| format!("{}: node input '{name}' is not a graph input", model_path.display()))?;
            inputs.push(Some(read_tensor(&data.join(format!("input_{k}.pb")))?));
        }
        let mut outputs = Vec::new();
        for k in 0..graph.output.len() {
            outputs.push(read_tensor(&data.join(format!("output_{k}.pb")))?);
        }
        Ok(Case {
            name,
            op: node.op_type.clone(),
            opset,
            attrs: node.attribute.iter().map(|a| (a.name.clone(), attr(a))).collect(),
            inputs,
            outputs,
            nodes,
        })
    }
}
