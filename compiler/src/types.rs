//! Element types, array types and the literal ("weak") types that adapt to their context.

use std::fmt;
use tk_ir::dims::Dim;
pub use tk_ir::dtype::DType;

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
