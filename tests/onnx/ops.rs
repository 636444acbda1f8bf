//! From an ONNX node to a tk program: which template in `tests/onnx/ops/` expresses the operator,
//! and the values substituted into it. Attributes are substituted as written; the operands that
//! tk needs at compile time (axes, shapes, pads, slice bounds, repeats, the scan axis) are read
//! from the case and substituted as constants. Data operands stay kernel arguments.

use crate::case::{Attr, Case, Tensor};
use std::collections::BTreeMap;

/// The operators whose cases are classified, in the order of the conformance table.
pub const OPS: &[&str] = &[
    "Abs",
    "Neg",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
    "Sin",
    "Cos",
    "Tanh",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "Softplus",
    "Erf",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Clip",
    "Min",
    "Max",
    "Mean",
    "Sum",
    "Where",
    "Equal",
    "Less",
    "Greater",
    "And",
    "Or",
    "Xor",
    "Not",
    "Cast",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL2",
    "ReduceLogSumExp",
    "ArgMax",
    "ArgMin",
    "MatMul",
    "Gemm",
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "Transpose",
    "Reshape",
    "Expand",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Concat",
    "Slice",
    "Pad",
    "Tile",
    "Gather",
    "CumSum",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "Mish",
];

/// A case turned into a tk program: the template (a file stem under `tests/onnx/ops/`), the
/// values of its `{{...}}` slots, and which of the node's inputs are passed to the kernel, in
/// the order of its parameters.
#[derive(Debug)]
pub struct Instance {
    pub template: String,
    pub vars: BTreeMap<String, String>,
    pub args: Vec<usize>,
}

/// The tk type of a tensor: `f32[3, 4]`, or `f32` for a scalar.
fn ty(t: &Tensor) -> String {
    let d = t.dtype().map_or("?", |d| d.name());
    if t.shape.is_empty() { d.to_string() } else { format!("{d}[{}]", list(&t.shape)) }
}

fn list<T: ToString>(v: &[T]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// A shape or axis tuple: `(3, 4)`, `(3,)`, `()`.
fn tuple<T: ToString>(v: &[T]) -> String {
    if v.len() == 1 { format!("({},)", v[0].to_string()) } else { format!("({})", list(v)) }
}

/// An f32 attribute as a tk float literal that rounds back to the same f32.
pub fn float_lit(v: f32) -> Result<String, String> {
    if !v.is_finite() {
        return Err(format!("non-finite constant {v}"));
    }
    let s = format!("{v:?}");
    Ok(if s.contains('.') || s.contains('e') { s } else { format!("{s}.0") })
}

fn attr_text(a: &Attr) -> Option<String> {
    Some(match a {
        Attr::Float(f) => float_lit(*f).ok()?,
        Attr::Int(i) => i.to_string(),
        Attr::Str(s) => s.clone(),
        Attr::Ints(v) => tuple(v),
        Attr::Floats(v) => {
            format!("({})", v.iter().map(|&f| float_lit(f).ok()).collect::<Option<Vec<_>>>()?.join(", "))
        }
        Attr::Other => return None,
    })
}

fn int_attr(c: &Case, name: &str, default: i64) -> i64 {
    match c.attrs.get(name) {
        Some(Attr::Int(i)) => *i,
        _ => default,
    }
}

fn str_attr<'a>(c: &'a Case, name: &str, default: &'a str) -> &'a str {
    match c.attrs.get(name) {
        Some(Attr::Str(s)) => s,
        _ => default,
    }
}

fn input(c: &Case, k: usize) -> Result<&Tensor, String> {
    c.inputs.get(k).and_then(|t| t.as_ref()).ok_or_else(|| format!("{} needs input {k}", c.op))
}

/// An integer operand given as an input (newer opsets) or an attribute (older ones).
fn ints_operand(c: &Case, k: usize, attr: &str) -> Result<Option<Vec<i64>>, String> {
    if let Some(Some(t)) = c.inputs.get(k) {
        return t.ints().map(Some);
    }
    Ok(match c.attrs.get(attr) {
        Some(Attr::Ints(v)) => Some(v.clone()),
        Some(Attr::Int(i)) => Some(vec![*i]),
        _ => None,
    })
}

fn norm_axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let n = if a < 0 { a + r } else { a };
    if (0..r.max(1)).contains(&n) { Ok(n as usize) } else { Err(format!("axis {a} out of range for rank {rank}")) }
}

/// `axis:` for a reduction: one axis as an integer, several as a tuple.
fn axis_arg(axes: &[usize]) -> String {
    if axes.len() == 1 { axes[0].to_string() } else { tuple(axes) }
}

/// numpy's broadcast of two shapes (ONNX's multidirectional broadcasting).
fn broadcast(a: &[usize], b: &[i64]) -> Result<Vec<usize>, String> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let x = if i + a.len() >= n { a[i + a.len() - n] as i64 } else { 1 };
        let y = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        *o = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return Err(format!("shapes {a:?} and {b:?} do not broadcast")),
        } as usize;
    }
    Ok(out)
}

/// Clamp ONNX slice bounds as the operator defines them (tk slices are not clamped).
fn slice_item(start: i64, end: i64, step: i64, dim: usize) -> String {
    let d = dim as i64;
    let fix = |v: i64| if v < 0 { v + d } else { v };
    let (s, e) = (fix(start), fix(end));
    if step > 0 {
        let s = s.clamp(0, d);
        let e = e.clamp(s, d);
        if step == 1 { format!("{s}:{e}") } else { format!("{s}:{e}:{step}") }
    } else {
        let s = s.clamp(-1, d - 1);
        let e = e.clamp(-1, s);
        // A negative bound counts from the end in tk, so "down to the first element" is an
        // omitted stop.
        if e < 0 { if s < 0 { "0:0".to_string() } else { format!("{s}::{step}") } } else { format!("{s}:{e}:{step}") }
    }
}

/// The edge, reflect and wrap paddings as tk code: axis by axis, the array is joined (`cat`) with
/// slices of itself, one `let` per padded axis.
fn pad_by_copies(mode: &str, pairs: &[(i64, i64)], shape: &[usize]) -> Result<String, String> {
    let rank = shape.len();
    let mut lets = Vec::new();
    let mut cur = "x".to_string();
    for (a, (&(lo, hi), &d)) in pairs.iter().zip(shape).enumerate() {
        if lo == 0 && hi == 0 {
            continue;
        }
        let d = d as i64;
        let slice = |from: i64, to: i64| {
            let items: Vec<String> =
                (0..rank).map(|i| if i == a { format!("{from}:{to}") } else { ":".into() }).collect();
            format!("{cur}[{}]", items.join(", "))
        };
        let (left, right): (Vec<String>, Vec<String>) = match mode {
            "edge" if d > 0 => ((0..lo).map(|_| slice(0, 1)).collect(), (0..hi).map(|_| slice(d - 1, d)).collect()),
            "reflect" if lo < d && hi < d => {
                ((1..=lo).rev().map(|k| slice(k, k + 1)).collect(), (1..=hi).map(|k| slice(d - 1 - k, d - k)).collect())
            }
            "wrap" if lo <= d && hi <= d => (vec![slice(d - lo, d)], vec![slice(0, hi)]),
            _ => return Err(format!("pad mode '{mode}' with pads ({lo}, {hi}) on an axis of {d}")),
        };
        let parts: Vec<String> = left.into_iter().chain([cur.clone()]).chain(right).collect();
        let name = format!("p{a}");
        lets.push(format!("let {name} = cat({}, axis: {a});", parts.join(", ")));
        cur = name;
    }
    lets.push(cur);
    Ok(lets.join("\n    "))
}

/// Why a case cannot be expressed, before any template is tried.
pub fn unsupported(c: &Case) -> Option<String> {
    if c.nodes != 1 {
        return Some(format!(
            "a function expansion into {} nodes; the harness translates single-operator models",
            c.nodes
        ));
    }
    for t in c.inputs.iter().flatten().chain(&c.outputs) {
        if let Err(e) = &t.array {
            return Some(e.clone());
        }
    }
    match c.op.as_str() {
        "Softmax" | "LogSoftmax" if c.opset < 13 => Some("opset < 13 softmax flattens to 2-D".into()),
        _ => None,
    }
}

pub fn instantiate(c: &Case) -> Result<Instance, String> {
    let mut vars = BTreeMap::new();
    let present: Vec<usize> = (0..c.inputs.len()).filter(|&k| c.inputs[k].is_some()).collect();
    for (k, t) in c.inputs.iter().enumerate() {
        if let Some(t) = t {
            vars.insert(format!("in{k}"), ty(t));
            vars.insert(format!("dt{k}"), t.dtype().map_or("?", |d| d.name()).to_string());
            vars.insert(format!("rank{k}"), t.shape.len().to_string());
        }
    }
    for (k, t) in c.outputs.iter().enumerate() {
        vars.insert(format!("out{k}"), ty(t));
        vars.insert(format!("odt{k}"), t.dtype().map_or("?", |d| d.name()).to_string());
        vars.insert(format!("oshape{k}"), tuple(&t.shape));
    }
    let outs: Vec<String> = c.outputs.iter().map(ty).collect();
    vars.insert("outs".into(), if outs.len() == 1 { outs[0].clone() } else { format!("({})", outs.join(", ")) });
    for (name, a) in &c.attrs {
        if let Some(v) = attr_text(a) {
            vars.insert(name.clone(), v);
        }
    }
    let x = input(c, 0)?;
    let rank = x.shape.len();
    let dt0 = x.dtype().ok_or("input 0 has no tk dtype")?;
    let mut template = c.op.clone();
    let mut args = present.clone();
    let mut set = |k: &str, v: String| {
        vars.insert(k.to_string(), v);
    };
    match c.op.as_str() {
        "Div" if dt0.is_int() => template = "Div.int".into(),
        "Pow" if input(c, 1)?.dtype() != Some(dt0) || !dt0.is_float() => template = "Pow.mixed".into(),
        "Clip" => {
            let (lo, hi) = (c.inputs.get(1).is_some_and(|t| t.is_some()), c.inputs.get(2).is_some_and(|t| t.is_some()));
            template = match (lo, hi) {
                (true, true) => "Clip",
                (true, false) => "Clip.min",
                (false, true) => "Clip.max",
                (false, false) => "Clip.none",
            }
            .into();
        }
        "Max" | "Min" | "Sum" | "Mean" | "Concat" => {
            let names: Vec<String> = (0..present.len()).map(|k| format!("x{k}")).collect();
            let params: Vec<String> = present
                .iter()
                .zip(&names)
                .map(|(&k, n)| format!("{n}: {}", ty(c.inputs[k].as_ref().expect("present"))))
                .collect();
            set("params", params.join(", "));
            set("args", names.join(", "));
            set("n", names.len().to_string());
            set("sum_all", names.join(" + "));
            let fold = |f: &str| names[1..].iter().fold(names[0].clone(), |acc, n| format!("{f}({acc}, {n})"));
            set("max_all", fold("max"));
            set("min_all", fold("min"));
            if c.op == "Concat" {
                let axis = norm_axis(int_attr(c, "axis", 0), rank)?;
                set("axis", axis.to_string());
            }
        }
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" | "ReduceProd" | "ReduceL2" | "ReduceLogSumExp" => {
            let axes = ints_operand(c, 1, "axes")?.unwrap_or_default();
            args = vec![0];
            if axes.is_empty() && int_attr(c, "noop_with_empty_axes", 0) == 1 {
                template = "Identity".into();
            } else {
                let mut axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?;
                if axes.is_empty() {
                    axes = (0..rank).collect();
                }
                axes.sort_unstable();
                set("axes", axis_arg(&axes));
                set("keep", if int_attr(c, "keepdims", 1) == 1 { "true" } else { "false" }.into());
                if dt0 == tk_ir::dtype::DType::Bool && (c.op == "ReduceMax" || c.op == "ReduceMin") {
                    template = format!("{}.bool", c.op);
                }
            }
        }
        "ArgMax" | "ArgMin" => {
            let axis = norm_axis(int_attr(c, "axis", 0), rank)?;
            set("axis", axis.to_string());
            set("axis_len", x.shape[axis].to_string());
            if int_attr(c, "select_last_index", 0) == 1 {
                template = format!("{}.last", c.op);
            }
        }
        "Gemm" => {
            set("opA", if int_attr(c, "transA", 0) == 1 { "transpose(a)" } else { "a" }.into());
            set("opB", if int_attr(c, "transB", 0) == 1 { "transpose(b)" } else { "b" }.into());
            if !c.inputs.get(2).is_some_and(|t| t.is_some()) {
                template = "Gemm.nobias".into();
            }
        }
        "Softmax" | "LogSoftmax" => set("axis", norm_axis(int_attr(c, "axis", -1), rank)?.to_string()),
        "LayerNormalization" => {
            let axis = norm_axis(int_attr(c, "axis", -1), rank)?;
            let axes: Vec<usize> = (axis..rank).collect();
            set("axes", axis_arg(&axes));
            if c.inputs.get(2).is_none_or(|t| t.is_none()) {
                return Err("LayerNormalization without a bias input has no template".into());
            }
            if c.outputs.len() == 1 {
                template = "LayerNormalization.1".into();
            }
        }
        "Transpose" => {
            let perm = match c.attrs.get("perm") {
                Some(Attr::Ints(p)) => p.clone(),
                _ => (0..rank as i64).rev().collect(),
            };
            set("perm", tuple(&perm));
        }
        "Reshape" => {
            let shape = input(c, 1)?.ints()?;
            let allowzero = int_attr(c, "allowzero", 0) == 1;
            let shape: Vec<i64> = shape
                .iter()
                .enumerate()
                .map(|(i, &d)| if d == 0 && !allowzero { x.shape.get(i).map_or(0, |&v| v as i64) } else { d })
                .collect();
            set("shape", tuple(&shape));
            args = vec![0];
        }
        "Expand" => {
            let shape = broadcast(&x.shape, &input(c, 1)?.ints()?)?;
            set("shape", tuple(&shape));
            args = vec![0];
        }
        "Flatten" => {
            let a = int_attr(c, "axis", 1);
            let axis = if a < 0 { a + rank as i64 } else { a };
            if !(0..=rank as i64).contains(&axis) {
                return Err(format!("flatten axis {a} out of range"));
            }
            let lead: usize = x.shape[..axis as usize].iter().product();
            let trail: usize = x.shape[axis as usize..].iter().product();
            set("shape", tuple(&[lead, trail]));
        }
        "Squeeze" => {
            let axes: Vec<usize> = match ints_operand(c, 1, "axes")? {
                Some(a) => a.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?,
                None => (0..rank).filter(|&i| x.shape[i] == 1).collect(),
            };
            let items: Vec<&str> = (0..rank).map(|i| if axes.contains(&i) { "0" } else { ":" }).collect();
            set("index", list(&items));
            args = vec![0];
        }
        "Unsqueeze" => {
            let axes = ints_operand(c, 1, "axes")?.ok_or("Unsqueeze needs axes")?;
            let out_rank = rank + axes.len();
            let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, out_rank)).collect::<Result<_, _>>()?;
            let items: Vec<&str> = (0..out_rank).map(|i| if axes.contains(&i) { "new" } else { ":" }).collect();
            set("index", list(&items));
            args = vec![0];
        }
        "Slice" => {
            let starts = input(c, 1)?.ints()?;
            let ends = input(c, 2)?.ints()?;
            let axes = match c.inputs.get(3) {
                Some(Some(t)) => t.ints()?,
                _ => (0..starts.len() as i64).collect(),
            };
            let steps = match c.inputs.get(4) {
                Some(Some(t)) => t.ints()?,
                _ => vec![1; starts.len()],
            };
            let mut items = vec![":".to_string(); rank];
            for (i, &a) in axes.iter().enumerate() {
                let a = norm_axis(a, rank)?;
                items[a] = slice_item(starts[i], ends[i], steps[i], x.shape[a]);
            }
            set("index", items.join(", "));
            args = vec![0];
        }
        "Pad" => {
            let pads = input(c, 1)?.ints()?;
            let axes: Vec<usize> = match c.inputs.get(3) {
                Some(Some(t)) => t.ints()?.iter().map(|&a| norm_axis(a, rank)).collect::<Result<_, _>>()?,
                _ => (0..rank).collect(),
            };
            if pads.len() != 2 * axes.len() {
                return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
            }
            let mut pairs = vec![(0, 0); rank];
            for (i, &a) in axes.iter().enumerate() {
                pairs[a] = (pads[i], pads[i + axes.len()]);
            }
            if pairs.iter().any(|&(l, h)| l < 0 || h < 0) {
                return Err("negative pads (cropping) have no template".into());
            }
            set(
                "pads",
                format!("({})", pairs.iter().map(|(l, h)| format!("({l}, {h})")).collect::<Vec<_>>().join(", ")),
            );
            let mode = str_attr(c, "mode", "constant");
            if mode != "constant" {
                template = "Pad.copy".into();
                set("mode", mode.to_string());
                set("padded", pad_by_copies(mode, &pairs, &x.shape)?);
            }
            let value = match c.inputs.get(2) {
                Some(Some(v)) => {
                    let a = v.array.as_ref()?;
                    if a.len() != 1 {
                        return Err("the pad value is not a scalar".into());
                    }
                    if a.dtype.is_float() { float_lit(a.get_f64(0) as f32)? } else { (a.get_f64(0) as i64).to_string() }
                }
                _ => if dt0.is_float() { "0.0" } else { "0" }.to_string(),
            };
            set("value", value);
            args = vec![0];
        }
        "Tile" => {
            let reps = input(c, 1)?.ints()?;
            if reps.len() != rank {
                return Err(format!("{} repeats for rank {rank}", reps.len()));
            }
            set("index", vec!["new, :"; rank].join(", "));
            let inter: Vec<i64> = reps.iter().zip(&x.shape).flat_map(|(&r, &d)| [r, d as i64]).collect();
            set("expanded", tuple(&inter));
            args = vec![0];
        }
        "Gather" => {
            let idx = input(c, 1)?;
            let axis = norm_axis(int_attr(c, "axis", 0), rank)?;
            let q = idx.shape.len();
            let out_rank = rank - 1 + q;
            let b: Vec<String> = (0..out_rank).map(|i| format!("i{i}")).collect();
            set("binders", format!("[{}]", b.join(", ")));
            set("idx_expr", if q == 0 { "idx".to_string() } else { format!("idx[{}]", b[axis..axis + q].join(", ")) });
            let mut data_index: Vec<String> = b[..axis].to_vec();
            data_index.push("k".into());
            data_index.extend(b[axis + q..].iter().cloned());
            set("data_index", data_index.join(", "));
            set("axis_len", x.shape[axis].to_string());
        }
        "CumSum" => {
            let axis = input(c, 1)?.ints()?;
            let axis = norm_axis(*axis.first().ok_or("CumSum without an axis")?, rank)?;
            set("axis", axis.to_string());
            let (e, r) = (int_attr(c, "exclusive", 0) == 1, int_attr(c, "reverse", 0) == 1);
            template = match (e, r) {
                (false, false) => "CumSum",
                (true, false) => "CumSum.exclusive",
                (false, true) => "CumSum.reverse",
                (true, true) => "CumSum.reverse_exclusive",
            }
            .into();
            args = vec![0];
        }
        "Gelu" if str_attr(c, "approximate", "none") == "tanh" => template = "Gelu.tanh".into(),
        _ => {}
    }
    Ok(Instance { template, vars, args })
}

/// Fills a template's `{{name}}` and `{{name|default}}` slots.
pub fn fill(template: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let j = rest[i..].find("}}").ok_or("unclosed {{ in the template")? + i;
        let slot = &rest[i + 2..j];
        let (name, default) = match slot.split_once('|') {
            Some((n, d)) => (n.trim(), Some(d.trim())),
            None => (slot.trim(), None),
        };
        match (vars.get(name), default) {
            (Some(v), _) => out.push_str(v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("the template's slot {{{{{name}}}}} has no value for this case")),
        }
        rest = &rest[j + 2..];
    }
    out.push_str(rest);
    Ok(out)
}
