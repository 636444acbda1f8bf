//! The graph IR: a dataflow graph (petgraph) of primitive operations on arrays with symbolic
//! shapes. Every node has a dtype, a shape and the source location it came from.
//!
//! Movement (reshape, permute, expand, pad, shrink, flip, slicing, comprehension indexing) is one
//! operation, [`Op::Index`]: an index map from each output coordinate to a source coordinate, plus
//! a validity mask; a map made only of affine expressions is a *view* (no data moves), a map with
//! data-dependent components is a *gather*.

use crate::dims::Dim;
use crate::dtype::DType;
use petgraph::graph::{DiGraph, NodeIndex};
use std::fmt;

pub mod decompose;
pub mod interp;
pub mod passes;
pub mod text;

pub type NodeId = NodeIndex<u32>;

/// A source location: file number and byte range (see tk-compiler's SourceMap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Loc {
    pub file: u32,
    pub lo: u32,
    pub hi: u32,
}

/// A constant element value. Integers are stored wide and mean the value in the node's dtype.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    Int(i128),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    /// Zero (or false) in the representation of dtype `d`.
    pub fn zero(d: DType) -> Scalar {
        if d.is_float() {
            Scalar::Float(0.0)
        } else if d == DType::Bool {
            Scalar::Bool(false)
        } else {
            Scalar::Int(0)
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Int(v) => write!(f, "{v}"),
            Scalar::Float(v) if v.is_nan() => f.write_str("nan"),
            Scalar::Float(v) if v.is_infinite() => f.write_str(if *v > 0.0 { "inf" } else { "-inf" }),
            Scalar::Float(v) => write!(f, "{v:?}"),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    /// Logical not on bool, bitwise not on integers.
    Not,
    Abs,
    Sqrt,
    Floor,
    Ceil,
    Round,
    // Transcendentals: they exist until the shared decomposition replaces them by primitives.
    Exp,
    Exp2,
    Log,
    Log2,
    Sin,
    Cos,
    Tanh,
    Erf,
    Rsqrt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Pow,
    Min,
    Max,
    And,
    Or,
    Xor,
    Shl,
    Shr,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Truncating integer division, the machine instruction (legalized kernel IR only: the
    /// legalize pass writes `Div` with it, and guarantees a divisor that is neither 0 nor -1 where
    /// the dividend could be the dtype's minimum). Defined as 0 for a zero divisor.
    DivTrunc,
    /// The remainder of [`BinaryOp::DivTrunc`] (the dividend's sign), 0 for a zero divisor.
    RemTrunc,
}

impl BinaryOp {
    pub fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Prod,
    Max,
    Min,
    /// Index of the first maximum (NaN counts as the maximum), as i64.
    ArgMax,
    /// Index of the first minimum (NaN counts as the minimum), as i64.
    ArgMin,
    /// A contraction: the sum of the products of its two arguments (float dtypes), accumulated
    /// with fused multiply-add, `acc = fma(a[i], b[i], acc)` in the reduction's order, one
    /// rounding per step (docs/numerics.md). The prepare passes write every float `sum` of a
    /// product as one ([`crate::graph::passes::contract`]); its partial results are combined by
    /// `Sum`. In the kernel IR its accumulator takes pushes of two values.
    Dot,
}

impl ReduceOp {
    /// The reduction that combines partial results of this one (a split or grouped reduction).
    pub fn combine(self) -> ReduceOp {
        match self {
            ReduceOp::Dot => ReduceOp::Sum,
            op => op,
        }
    }

    /// How many arguments a reduction node of this op has (a contraction reads two arrays).
    pub fn arity(self) -> usize {
        if self == ReduceOp::Dot { 2 } else { 1 }
    }
}

/// A symbolic integer expression over the output coordinates of an [`Op::Index`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IExpr {
    /// The output coordinate along an axis.
    Coord(usize),
    /// A size (or any dimension expression).
    Dim(Dim),
    Add(Box<IExpr>, Box<IExpr>),
    Mul(Box<IExpr>, Box<IExpr>),
    /// Floor division by a positive value.
    Div(Box<IExpr>, Box<IExpr>),
    /// Remainder with the sign of the (positive) divisor.
    Mod(Box<IExpr>, Box<IExpr>),
    /// The value of data argument `k` (argument `k + 1` of the Index node) at this coordinate.
    Data(usize),
}

impl IExpr {
    pub fn c(v: i64) -> IExpr {
        IExpr::Dim(Dim::constant(v))
    }
    pub fn sum(a: IExpr, b: IExpr) -> IExpr {
        match (&a, &b) {
            (IExpr::Dim(x), IExpr::Dim(y)) => IExpr::Dim(x.add(y)),
            (IExpr::Dim(x), _) if x.as_const() == Some(0) => b,
            (_, IExpr::Dim(y)) if y.as_const() == Some(0) => a,
            _ => IExpr::Add(Box::new(a), Box::new(b)),
        }
    }
    pub fn product(a: IExpr, b: IExpr) -> IExpr {
        match (&a, &b) {
            (IExpr::Dim(x), IExpr::Dim(y)) => IExpr::Dim(x.mul(y)),
            (IExpr::Dim(x), _) if x.as_const() == Some(1) => b,
            (_, IExpr::Dim(y)) if y.as_const() == Some(1) => a,
            (IExpr::Dim(x), _) | (_, IExpr::Dim(x)) if x.as_const() == Some(0) => IExpr::c(0),
            _ => IExpr::Mul(Box::new(a), Box::new(b)),
        }
    }
    /// Linear form `sum(coef_k * c_k) + constant` when the expression is affine in the coordinates.
    fn linear(&self) -> Option<(std::collections::BTreeMap<usize, Dim>, Dim)> {
        use std::collections::BTreeMap;
        match self {
            IExpr::Coord(k) => Some((BTreeMap::from([(*k, Dim::constant(1))]), Dim::constant(0))),
            IExpr::Dim(d) => Some((BTreeMap::new(), d.clone())),
            IExpr::Add(a, b) => {
                let (mut ta, ca) = a.linear()?;
                let (tb, cb) = b.linear()?;
                for (k, c) in tb {
                    let e = ta.entry(k).or_insert_with(|| Dim::constant(0));
                    *e = e.add(&c);
                }
                ta.retain(|_, c| c.as_const() != Some(0));
                Some((ta, ca.add(&cb)))
            }
            IExpr::Mul(a, b) => {
                let (ta, ca) = a.linear()?;
                let (tb, cb) = b.linear()?;
                let (terms, c, k) = if ta.is_empty() {
                    (tb, cb, ca)
                } else if tb.is_empty() {
                    (ta, ca, cb)
                } else {
                    return None;
                };
                let mut terms: BTreeMap<usize, Dim> = terms.into_iter().map(|(i, x)| (i, x.mul(&k))).collect();
                terms.retain(|_, c| c.as_const() != Some(0));
                Some((terms, c.mul(&k)))
            }
            _ => None,
        }
    }

    /// A canonical, simplified form: affine parts collected (`c0 + 2`, `n * c1`), divisions and
    /// remainders by 1 removed.
    pub fn simplified(&self) -> IExpr {
        if let Some((terms, c)) = self.linear() {
            let mut out: Option<IExpr> = None;
            for (k, coef) in terms {
                let t = IExpr::product(IExpr::Dim(coef), IExpr::Coord(k));
                out = Some(match out {
                    None => t,
                    Some(o) => IExpr::Add(Box::new(o), Box::new(t)),
                });
            }
            return match out {
                None => IExpr::Dim(c),
                Some(o) if c.as_const() == Some(0) => o,
                Some(o) => IExpr::Add(Box::new(o), Box::new(IExpr::Dim(c))),
            };
        }
        match self {
            IExpr::Add(a, b) => IExpr::sum(a.simplified(), b.simplified()),
            IExpr::Mul(a, b) => IExpr::product(a.simplified(), b.simplified()),
            IExpr::Div(a, b) => match b.simplified() {
                IExpr::Dim(d) if d.is_one() => a.simplified(),
                b => IExpr::Div(Box::new(a.simplified()), Box::new(b)),
            },
            IExpr::Mod(a, b) => match b.simplified() {
                IExpr::Dim(d) if d.is_one() => IExpr::c(0),
                b => IExpr::Mod(Box::new(a.simplified()), Box::new(b)),
            },
            e => e.clone(),
        }
    }

    /// Simplifies using the ranges of the coordinates (`Coord(k)` in `0..extent[k]`): divisions
    /// and remainders whose result the ranges decide, and `(a / d) * d + a % d` → `a`.
    pub fn simplified_in(&self, extent: &dyn Fn(usize) -> Option<Dim>) -> IExpr {
        let e = match self {
            IExpr::Add(a, b) => IExpr::sum(a.simplified_in(extent), b.simplified_in(extent)),
            IExpr::Mul(a, b) => IExpr::product(a.simplified_in(extent), b.simplified_in(extent)),
            IExpr::Div(a, b) => IExpr::Div(Box::new(a.simplified_in(extent)), Box::new(b.simplified_in(extent))),
            IExpr::Mod(a, b) => IExpr::Mod(Box::new(a.simplified_in(extent)), Box::new(b.simplified_in(extent))),
            e => e.clone(),
        }
        .simplified();
        // Split a / d and a % d when a = d * q + r with r provably in 0..d.
        let split = |a: &IExpr, d: &Dim| -> Option<(IExpr, IExpr, bool)> {
            let (terms, c) = a.linear()?;
            let mut q = IExpr::c(0);
            let mut r = IExpr::c(0);
            let mut r_hi = Dim::constant(0);
            for (k, coef) in terms {
                match coef.exact_div(d) {
                    Some(qc) => q = IExpr::sum(q, IExpr::product(IExpr::Dim(qc), IExpr::Coord(k))),
                    None => {
                        if !coef.provably_nonneg() {
                            return None;
                        }
                        let ext = extent(k)?;
                        r_hi = r_hi.add(&coef.mul(&ext.add_const(-1)));
                        r = IExpr::sum(r, IExpr::product(IExpr::Dim(coef), IExpr::Coord(k)));
                    }
                }
            }
            match c.exact_div(d) {
                Some(qc) => q = IExpr::sum(q, IExpr::Dim(qc)),
                None => {
                    if !c.provably_nonneg() {
                        return None;
                    }
                    r_hi = r_hi.add(&c);
                    r = IExpr::sum(r, IExpr::Dim(c));
                }
            }
            // r >= 0 holds (non-negative parts); r < d when d - 1 - r_hi >= 0.
            let below = d.add_const(-1).sub(&r_hi).provably_nonneg();
            Some((q.simplified(), r.simplified(), below))
        };
        let positive = |d: &Dim| d.add_const(-1).provably_nonneg() && d.as_const() != Some(0);
        match &e {
            // floor((d q + r) / d) = q + floor(r / d), and = q when 0 <= r < d.
            // (0 <= r < d already implies d >= 1; the general split needs d >= 1 proven.)
            IExpr::Div(a, b) => match &**b {
                IExpr::Dim(d) => match split(a, d) {
                    Some((q, _, true)) => q,
                    Some((q, r, false)) if positive(d) && q != IExpr::c(0) => {
                        IExpr::sum(q, IExpr::Div(Box::new(r), b.clone()))
                    }
                    _ => e,
                },
                _ => e,
            },
            // (d q + r) % d = r % d, and = r when 0 <= r < d.
            IExpr::Mod(a, b) => match &**b {
                IExpr::Dim(d) => match split(a, d) {
                    Some((_, r, true)) => r,
                    Some((q, r, false)) if positive(d) && q != IExpr::c(0) => IExpr::Mod(Box::new(r), b.clone()),
                    _ => e,
                },
                _ => e,
            },
            IExpr::Add(x, y) => match (&**x, &**y) {
                // (a / d) * d + a % d = a
                (IExpr::Mul(p, d1), IExpr::Mod(a2, d2)) | (IExpr::Mod(a2, d2), IExpr::Mul(p, d1))
                    if matches!(&**p, IExpr::Div(a1, d0) if a1 == a2 && d0 == d2) && d1 == d2 =>
                {
                    (**a2).clone()
                }
                _ => e,
            },
            _ => e,
        }
    }

    pub fn uses_data(&self) -> bool {
        match self {
            IExpr::Data(_) => true,
            IExpr::Coord(_) | IExpr::Dim(_) => false,
            IExpr::Add(a, b) | IExpr::Mul(a, b) | IExpr::Div(a, b) | IExpr::Mod(a, b) => a.uses_data() || b.uses_data(),
        }
    }
}

impl fmt::Display for IExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IExpr::Coord(a) => write!(f, "c{a}"),
            IExpr::Dim(d) if d.as_const().is_some() => write!(f, "{d}"),
            IExpr::Dim(d) => write!(f, "({d})"),
            IExpr::Add(a, b) => write!(f, "({a} + {b})"),
            IExpr::Mul(a, b) => write!(f, "{a} * {b}"),
            IExpr::Div(a, b) => write!(f, "({a} / {b})"),
            IExpr::Mod(a, b) => write!(f, "({a} % {b})"),
            IExpr::Data(k) => write!(f, "d{k}"),
        }
    }
}

/// A bounds condition of an index map: `lo <= expr < hi`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Guard {
    pub expr: IExpr,
    pub lo: Dim,
    pub hi: Dim,
    pub on_invalid: OnInvalid,
}

/// How an out-of-range coordinate of an Index map is treated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OnInvalid {
    /// The element takes the fill value (padding, guarded comprehension accesses).
    Fill,
    /// Out of range is a run-time error naming the node's location (gathers, size checks).
    Error,
}

#[derive(Clone, Debug)]
pub enum Op {
    /// Kernel parameter `k`.
    Input(usize),
    /// A constant, broadcast to the node's shape.
    Const(Scalar),
    /// The coordinate along `axis` of the node's shape, plus `offset` (i64).
    Iota {
        axis: usize,
        offset: Dim,
    },
    Unary(UnaryOp),
    Binary(BinaryOp),
    /// `where(cond, a, b)`.
    Where,
    Cast,
    /// Reinterprets the bits as another dtype of the same width (f32 <-> i32/u32).
    Bitcast,
    /// `a * b + c` with one rounding.
    Fma,
    /// Reduces the listed axes away.
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
    },
    /// Inclusive scan along an axis.
    Scan {
        op: ReduceOp,
        axis: usize,
    },
    /// `out[c] = src[map(c)]` where every guard holds; otherwise per `on_invalid`.
    /// Arguments: the source, then the data arrays that `IExpr::Data` refers to (in the output shape).
    Index {
        map: Vec<IExpr>,
        guards: Vec<Guard>,
        fill: Scalar,
    },
    /// `scatter_add`: arguments `values` of shape `[B.., n, R..]` (`batch` leading axes) and
    /// integer `indices` of shape `[B.., n]`; the result `[B.., size, R..]` starts at zero and,
    /// for k in 0..n in order, adds `values[b, k, r]` into row `indices[b, k]` (rounded to the
    /// node's dtype at each step, integers wrapping); indices outside `0..size` are dropped.
    ScatterAdd {
        batch: usize,
    },
    /// A size as an i64 scalar.
    Size(Dim),
    /// Output `k` of a multi-output node (a loop).
    Proj(usize),
    /// A sequential loop, elementwise over the node's shape. Arguments: the initial carried values,
    /// then captured outer values. The body graph's inputs are: the iteration number (i64 scalar),
    /// the carried values, the captured values; its outputs are the next carried values, then (with
    /// an exit condition) one bool mask per carried value, in that value's shape. The node has one
    /// value per carried value (read with Proj).
    /// An element stops changing from the first iteration whose exit condition holds for it.
    Loop {
        lo: Dim,
        trip: Dim,
        carried: usize,
        has_exit: bool,
        body: Box<Graph>,
    },
}

#[derive(Clone, Debug)]
pub struct Node {
    pub op: Op,
    pub dtype: DType,
    pub shape: Vec<Dim>,
    pub args: Vec<NodeId>,
    pub loc: Loc,
}

/// A graph: nodes in petgraph (an edge `a -> b` with weight `k` says `a` is argument `k` of `b`),
/// with the inputs' types and the outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    pub g: DiGraph<Node, u32>,
    /// Parameter names, dtypes and shapes.
    pub inputs: Vec<(String, DType, Vec<Dim>)>,
    /// Explicit dimension parameters (`kernel k<h, w>`), bound by the caller.
    pub dims: Vec<String>,
    /// Output names and nodes.
    pub outputs: Vec<(String, NodeId)>,
}

impl Graph {
    pub fn add(&mut self, op: Op, dtype: DType, shape: Vec<Dim>, args: Vec<NodeId>, loc: Loc) -> NodeId {
        let id = self.g.add_node(Node { op, dtype, shape, args: args.clone(), loc });
        for (k, a) in args.into_iter().enumerate() {
            self.g.add_edge(a, id, k as u32);
        }
        id
    }
    pub fn node(&self, id: NodeId) -> &Node {
        &self.g[id]
    }
    /// Nodes in a canonical order where arguments come before their users: a depth-first
    /// post-order from the outputs (arguments in order), then any node no output uses.
    pub fn topo(&self) -> Vec<NodeId> {
        let mut seen = vec![false; self.g.node_count()];
        let mut order = Vec::with_capacity(self.g.node_count());
        let roots = self.outputs.iter().map(|(_, id)| *id).chain(self.g.node_indices());
        for root in roots {
            if seen[root.index()] {
                continue;
            }
            // Iterative DFS: (node, next argument to visit).
            let mut stack = vec![(root, 0usize)];
            seen[root.index()] = true;
            while let Some((id, k)) = stack.pop() {
                let args = &self.g[id].args;
                if k < args.len() {
                    stack.push((id, k + 1));
                    let a = args[k];
                    if !seen[a.index()] {
                        seen[a.index()] = true;
                        stack.push((a, 0));
                    }
                } else {
                    order.push(id);
                }
            }
        }
        order
    }
}
