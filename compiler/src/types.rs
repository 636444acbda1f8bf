//! Element types, array types and the literal ("weak") types that adapt to their context.

use crate::dims::Dim;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    F16,
    Bf16,
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U32,
    Bool,
}

impl DType {
    pub const ALL: [DType; 11] = [
        DType::F16,
        DType::Bf16,
        DType::F32,
        DType::F64,
        DType::I8,
        DType::I16,
        DType::I32,
        DType::I64,
        DType::U8,
        DType::U32,
        DType::Bool,
    ];
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::U8 => "u8",
            DType::U32 => "u32",
            DType::Bool => "bool",
        }
    }
    pub fn parse(s: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == s)
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::Bf16 | DType::F32 | DType::F64)
    }
    pub fn is_int(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U32)
    }
    pub fn is_signed_int(self) -> bool {
        matches!(self, DType::I8 | DType::I16 | DType::I32 | DType::I64)
    }
    /// Size in bits.
    pub fn bits(self) -> u32 {
        match self {
            DType::Bool | DType::I8 | DType::U8 => 8,
            DType::F16 | DType::Bf16 | DType::I16 => 16,
            DType::F32 | DType::I32 | DType::U32 => 32,
            DType::F64 | DType::I64 => 64,
        }
    }
    /// The range of an integer dtype.
    pub fn int_range(self) -> Option<(i128, i128)> {
        Some(match self {
            DType::I8 => (i8::MIN as i128, i8::MAX as i128),
            DType::I16 => (i16::MIN as i128, i16::MAX as i128),
            DType::I32 => (i32::MIN as i128, i32::MAX as i128),
            DType::I64 => (i64::MIN as i128, i64::MAX as i128),
            DType::U8 => (0, u8::MAX as i128),
            DType::U32 => (0, u32::MAX as i128),
            _ => return None,
        })
    }
    /// The largest finite value of a float dtype.
    pub fn float_max(self) -> Option<f64> {
        Some(match self {
            DType::F16 => 65504.0,
            DType::Bf16 => 3.3895313892515355e38,
            DType::F32 => f32::MAX as f64,
            DType::F64 => f64::MAX,
            _ => return None,
        })
    }
    /// Result dtype of `sum`/`prod` (documented in docs/language.md).
    pub fn sum_result(self) -> DType {
        match self {
            DType::Bool | DType::I8 | DType::I16 | DType::U8 => DType::I32,
            d => d,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An element type: a dtype, or the type of a literal that has not met a dtype yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Elem {
    D(DType),
    IntLit,
    FloatLit,
}

impl Elem {
    pub fn is_weak(self) -> bool {
        !matches!(self, Elem::D(_))
    }
    /// The dtype a literal takes when nothing else decides: i32 and f32.
    pub fn default_dtype(self) -> DType {
        match self {
            Elem::D(d) => d,
            Elem::IntLit => DType::I32,
            Elem::FloatLit => DType::F32,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, Elem::FloatLit) || matches!(self, Elem::D(d) if d.is_float())
    }
    pub fn is_int(self) -> bool {
        matches!(self, Elem::IntLit) || matches!(self, Elem::D(d) if d.is_int())
    }
    pub fn is_bool(self) -> bool {
        self == Elem::D(DType::Bool)
    }
}

impl fmt::Display for Elem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Elem::D(d) => write!(f, "{d}"),
            Elem::IntLit => f.write_str("{integer}"),
            Elem::FloatLit => f.write_str("{float}"),
        }
    }
}

/// The type of a value: an array (rank 0 = scalar) or a tuple.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    Arr(Elem, Vec<Dim>),
    Tuple(Vec<Ty>),
}

impl Ty {
    pub fn scalar(e: Elem) -> Ty {
        Ty::Arr(e, vec![])
    }
    pub fn elem(&self) -> Option<Elem> {
        match self {
            Ty::Arr(e, _) => Some(*e),
            Ty::Tuple(_) => None,
        }
    }
    pub fn shape(&self) -> &[Dim] {
        match self {
            Ty::Arr(_, s) => s,
            Ty::Tuple(_) => &[],
        }
    }
}

pub fn shape_str(shape: &[Dim]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Arr(e, s) if s.is_empty() => write!(f, "{e}"),
            Ty::Arr(e, s) => write!(f, "{e}{}", shape_str(s)),
            Ty::Tuple(ts) => {
                let parts: Vec<String> = ts.iter().map(|t| t.to_string()).collect();
                write!(f, "({})", parts.join(", "))
            }
        }
    }
}
