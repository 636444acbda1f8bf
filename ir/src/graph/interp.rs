//! The reference interpreter of the graph IR: exact in every dtype (floats are computed in f64
//! and rounded to the node's dtype after every operation; integers wrap), and the oracle that
//! every backend is compared with.
//!
//! Transcendentals (exp, log, sin, ...) are evaluated in f64 and rounded once. That is the
//! accuracy reference the shared decomposition is measured against; once the decomposition pass
//! exists, graphs reach the interpreter already decomposed.

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::*;
use std::collections::HashMap;

/// An array on the host: row-major elements, floats as f64, integers as i128, in its dtype.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Data,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    F(Vec<f64>),
    I(Vec<i128>),
    B(Vec<bool>),
}

impl Array {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn get(&self, i: usize) -> Scalar {
        match &self.data {
            Data::F(v) => Scalar::Float(v[i]),
            Data::I(v) => Scalar::Int(v[i]),
            Data::B(v) => Scalar::Bool(v[i]),
        }
    }
    /// An array of `dtype` filled by `f(flat index)`, values rounded/wrapped to the dtype.
    pub fn from_fn(dtype: DType, shape: Vec<usize>, mut f: impl FnMut(usize) -> Scalar) -> Array {
        let n: usize = shape.iter().product();
        let data = if dtype.is_float() {
            Data::F((0..n).map(|i| round(as_f64(f(i)), dtype)).collect())
        } else if dtype == DType::Bool {
            Data::B((0..n).map(|i| as_bool(f(i))).collect())
        } else {
            Data::I((0..n).map(|i| wrap(as_i128(f(i)), dtype)).collect())
        };
        Array { dtype, shape, data }
    }
}

/// An error while interpreting: a message and the source location of the node.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InterpError {
    pub message: String,
    pub loc: Loc,
}

fn err<T>(loc: Loc, message: impl Into<String>) -> Result<T, InterpError> {
    Err(InterpError { message: message.into(), loc })
}

/// Rounds an f64 to the nearest value of a float dtype (ties to even).
pub fn round(v: f64, d: DType) -> f64 {
    match d {
        DType::F32 => v as f32 as f64,
        DType::F16 => half::f16::from_f64(v).to_f64(),
        DType::Bf16 => half::bf16::from_f64(v).to_f64(),
        _ => v,
    }
}

/// Wraps an integer to the range of an integer dtype (two's complement).
pub fn wrap(v: i128, d: DType) -> i128 {
    match d.int_range() {
        Some((lo, hi)) => (v - lo).rem_euclid(hi - lo + 1) + lo,
        None => v,
    }
}

fn as_f64(s: Scalar) -> f64 {
    match s {
        Scalar::Float(v) => v,
        Scalar::Int(v) => v as f64,
        Scalar::Bool(b) => f64::from(u8::from(b)),
    }
}
fn as_i128(s: Scalar) -> i128 {
    match s {
        Scalar::Int(v) => v,
        Scalar::Float(v) => v as i128,
        Scalar::Bool(b) => i128::from(b),
    }
}
fn as_bool(s: Scalar) -> bool {
    match s {
        Scalar::Bool(b) => b,
        Scalar::Int(v) => v != 0,
        Scalar::Float(v) => v != 0.0,
    }
}

/// Binds the symbolic dimensions of a graph's inputs from the shapes of the arguments, plus any
/// explicit dimensions; checks every compound dimension.
pub fn bind_dims(g: &Graph, args: &[Array], explicit: &HashMap<String, i64>) -> Result<HashMap<String, i64>, String> {
    if args.len() != g.inputs.len() {
        return Err(format!("expected {} arguments, got {}", g.inputs.len(), args.len()));
    }
    let mut env = explicit.clone();
    for ((name, dtype, shape), a) in g.inputs.iter().zip(args) {
        if a.dtype != *dtype {
            return Err(format!("argument `{name}`: expected {dtype}, got {}", a.dtype));
        }
        if a.shape.len() != shape.len() {
            return Err(format!("argument `{name}`: expected rank {}, got shape {:?}", shape.len(), a.shape));
        }
        for (d, &n) in shape.iter().zip(&a.shape) {
            if let [s] = d.symbols().as_slice()
                && *d == Dim::sym(s)
            {
                match env.get(s) {
                    Some(&v) if v != n as i64 => {
                        return Err(format!("argument `{name}`: dimension `{s}` is {n} here but {v} elsewhere"));
                    }
                    _ => {
                        env.insert(s.clone(), n as i64);
                    }
                }
            }
        }
    }
    for ((name, _, shape), a) in g.inputs.iter().zip(args) {
        for (d, &n) in shape.iter().zip(&a.shape) {
            match d.eval(&|s| env.get(s).copied()) {
                Some(v) if v == n as i64 => {}
                Some(v) => return Err(format!("argument `{name}`: dimension `{d}` must be {v}, got {n}")),
                None => return Err(format!("argument `{name}`: dimension `{d}` has an unbound size")),
            }
        }
    }
    Ok(env)
}

struct Interp<'e> {
    dims: &'e HashMap<String, i64>,
}

/// Runs a graph on concrete arguments; `dims` binds every dimension symbol (see [`bind_dims`]).
pub fn run(g: &Graph, dims: &HashMap<String, i64>, args: &[Array]) -> Result<Vec<Array>, InterpError> {
    let it = Interp { dims };
    let vals = it.eval_graph(g, args)?;
    g.outputs.iter().map(|(_, id)| Ok(vals[id.index()][0].clone())).collect()
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

fn unravel(mut i: usize, shape: &[usize], out: &mut [i64]) {
    for k in (0..shape.len()).rev() {
        let n = shape[k].max(1);
        out[k] = (i % n) as i64;
        i /= n;
    }
}

impl Interp<'_> {
    fn dim(&self, d: &Dim, loc: Loc) -> Result<i64, InterpError> {
        match d.eval(&|s| self.dims.get(s).copied()) {
            Some(v) => Ok(v),
            None => err(loc, format!("dimension `{d}` has no value")),
        }
    }
    fn shape(&self, n: &Node) -> Result<Vec<usize>, InterpError> {
        n.shape
            .iter()
            .map(|d| {
                let v = self.dim(d, n.loc)?;
                if v < 0 {
                    return err(n.loc, format!("dimension `{d}` is negative ({v}) for these sizes"));
                }
                Ok(v as usize)
            })
            .collect()
    }

    fn eval_graph(&self, g: &Graph, args: &[Array]) -> Result<Vec<Vec<Array>>, InterpError> {
        let mut vals: Vec<Vec<Array>> = vec![Vec::new(); g.g.node_count()];
        for id in g.topo() {
            let n = g.node(id);
            let a: Vec<&Array> = n.args.iter().map(|x| &vals[x.index()][0]).collect();
            let v = self.eval_node(n, &a, args, &vals)?;
            vals[id.index()] = v;
        }
        Ok(vals)
    }

    fn eval_node(
        &self,
        n: &Node,
        a: &[&Array],
        args: &[Array],
        vals: &[Vec<Array>],
    ) -> Result<Vec<Array>, InterpError> {
        let shape = self.shape(n)?;
        let d = n.dtype;
        let one = |x: Array| Ok(vec![x]);
        match &n.op {
            Op::Input(k) => match args.get(*k) {
                Some(x) if x.shape == shape => one(x.clone()),
                Some(x) => err(n.loc, format!("input {k} has shape {:?}, expected {:?}", x.shape, shape)),
                None => err(n.loc, format!("missing input {k}")),
            },
            Op::Const(s) => one(Array::from_fn(d, shape, |_| *s)),
            Op::Size(dim) => {
                let v = self.dim(dim, n.loc)?;
                one(Array::from_fn(d, shape, |_| Scalar::Int(v as i128)))
            }
            Op::Iota { axis, offset } => {
                let off = self.dim(offset, n.loc)?;
                let mut c = vec![0i64; shape.len()];
                let sh = shape.clone();
                one(Array::from_fn(d, shape, |i| {
                    unravel(i, &sh, &mut c);
                    Scalar::Int((c[*axis] + off) as i128)
                }))
            }
            Op::Unary(op) => one(unary(*op, a[0], d)),
            Op::Binary(op) => {
                if a[0].shape != a[1].shape {
                    return err(n.loc, "internal: binary operands of different shapes");
                }
                one(binary(*op, a[0], a[1], d))
            }
            Op::Where => {
                one(Array::from_fn(d, shape, |i| if as_bool(a[0].get(i)) { a[1].get(i) } else { a[2].get(i) }))
            }
            Op::Cast => one(cast(a[0], d)),
            Op::Bitcast => one(bitcast(a[0], d)),
            Op::Fma => one(fma(a[0], a[1], a[2], d)),
            Op::Reduce { op, axes } => {
                let empty = axes.iter().any(|&k| a[0].shape.get(k) == Some(&0));
                if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) && empty && shape.iter().product::<usize>() > 0 {
                    return err(n.loc, "argmax/argmin over an empty axis");
                }
                if a.len() != op.arity() || a.iter().any(|x| x.shape != a[0].shape) {
                    return err(n.loc, format!("internal: a `{op:?}` reduction of {} arrays", a.len()));
                }
                one(reduce(*op, a[0], a.get(1).copied(), axes, d, &shape))
            }
            Op::Scan { op, axis } => one(scan(*op, a[0], *axis, d)),
            Op::ScatterAdd { batch } => one(scatter_add(a[0], a[1], *batch, d, &shape)),
            Op::Index { map, guards, fill } => self.index(n, a, map, guards, *fill, shape).map(|x| vec![x]),
            Op::Proj(k) => match vals[n.args[0].index()].get(*k) {
                Some(x) => one(x.clone()),
                None => err(n.loc, format!("internal: no output {k}")),
            },
            Op::Loop { lo, trip, carried, has_exit, body } => {
                let lo = self.dim(lo, n.loc)?;
                let trip = self.dim(trip, n.loc)?.max(0);
                let mut cur: Vec<Array> = a[..*carried].iter().map(|x| (*x).clone()).collect();
                let captured: Vec<Array> = a[*carried..].iter().map(|x| (*x).clone()).collect();
                let mut frozen: Vec<Vec<bool>> = cur.iter().map(|x| vec![false; x.len()]).collect();
                for k in 0..trip {
                    let mut inputs = vec![Array::from_fn(DType::I64, vec![], |_| Scalar::Int((lo + k) as i128))];
                    inputs.extend(cur.iter().cloned());
                    inputs.extend(captured.iter().cloned());
                    let bv = self.eval_graph(body, &inputs)?;
                    let outs: Vec<&Array> = body.outputs.iter().map(|(_, id)| &bv[id.index()][0]).collect();
                    if *has_exit {
                        // One exit mask per carried value, in its shape.
                        for (k, fz) in frozen.iter_mut().enumerate() {
                            let exit = outs[*carried + k];
                            for (i, f) in fz.iter_mut().enumerate() {
                                if as_bool(exit.get(i)) {
                                    *f = true;
                                }
                            }
                        }
                        if frozen.iter().all(|f| f.iter().all(|x| *x)) {
                            break;
                        }
                    }
                    for (ci, c) in cur.iter_mut().enumerate() {
                        let next = outs[ci];
                        let fz = &frozen[ci];
                        let old = c.clone();
                        *c = Array::from_fn(c.dtype, c.shape.clone(), |i| if fz[i] { old.get(i) } else { next.get(i) });
                    }
                }
                Ok(cur)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn index(
        &self,
        n: &Node,
        a: &[&Array],
        map: &[IExpr],
        guards: &[Guard],
        fill: Scalar,
        shape: Vec<usize>,
    ) -> Result<Array, InterpError> {
        let src = a[0];
        let data = &a[1..];
        let src_strides = strides(&src.shape);
        let mut coord = vec![0i64; shape.len()];
        let mut error: Option<String> = None;
        let sh = shape.clone();
        let guard_bounds: Vec<(i64, i64)> = guards
            .iter()
            .map(|g| Ok((self.dim(&g.lo, n.loc)?, self.dim(&g.hi, n.loc)?)))
            .collect::<Result<_, InterpError>>()?;
        let out = Array::from_fn(n.dtype, shape, |i| {
            unravel(i, &sh, &mut coord);
            for (g, &(lo, hi)) in guards.iter().zip(&guard_bounds) {
                let v = self.iexpr(&g.expr, &coord, data, i);
                if v < lo || v >= hi {
                    if g.on_invalid == OnInvalid::Error && error.is_none() {
                        error = Some(format!("index {v} is out of range {lo}..{hi}"));
                    }
                    return fill;
                }
            }
            let mut flat = 0usize;
            for (k, m) in map.iter().enumerate() {
                let v = self.iexpr(m, &coord, data, i);
                if v < 0 || v as usize >= src.shape[k] {
                    if error.is_none() {
                        error = Some(format!("index {v} is out of range for an axis of size {}", src.shape[k]));
                    }
                    return fill;
                }
                flat += v as usize * src_strides[k];
            }
            src.get(flat)
        });
        match error {
            Some(e) => err(n.loc, e),
            None => Ok(out),
        }
    }

    fn iexpr(&self, e: &IExpr, coord: &[i64], data: &[&Array], flat: usize) -> i64 {
        match e {
            IExpr::Coord(k) => coord[*k],
            IExpr::Dim(d) => d.eval(&|s| self.dims.get(s).copied()).unwrap_or(0),
            IExpr::Add(a, b) => self.iexpr(a, coord, data, flat).wrapping_add(self.iexpr(b, coord, data, flat)),
            IExpr::Mul(a, b) => self.iexpr(a, coord, data, flat).wrapping_mul(self.iexpr(b, coord, data, flat)),
            IExpr::Div(a, b) => {
                let y = self.iexpr(b, coord, data, flat);
                if y == 0 { 0 } else { self.iexpr(a, coord, data, flat).div_euclid(y) }
            }
            IExpr::Mod(a, b) => {
                let y = self.iexpr(b, coord, data, flat);
                if y == 0 { 0 } else { self.iexpr(a, coord, data, flat).rem_euclid(y) }
            }
            IExpr::Data(k) => data.get(*k).map(|x| as_i128(x.get(flat)) as i64).unwrap_or(0),
        }
    }
}

fn unary(op: UnaryOp, x: &Array, d: DType) -> Array {
    let n = x.shape.clone();
    Array::from_fn(d, n, |i| {
        let s = x.get(i);
        match (op, s) {
            (UnaryOp::Neg, Scalar::Float(v)) => Scalar::Float(-v),
            (UnaryOp::Neg, Scalar::Int(v)) => Scalar::Int(-v),
            (UnaryOp::Not, Scalar::Bool(b)) => Scalar::Bool(!b),
            (UnaryOp::Not, Scalar::Int(v)) => Scalar::Int(!v),
            (UnaryOp::Abs, Scalar::Float(v)) => Scalar::Float(v.abs()),
            (UnaryOp::Abs, Scalar::Int(v)) => Scalar::Int(v.abs()),
            (op, s) => {
                let v = as_f64(s);
                Scalar::Float(match op {
                    UnaryOp::Sqrt => v.sqrt(),
                    UnaryOp::Floor => v.floor(),
                    UnaryOp::Ceil => v.ceil(),
                    UnaryOp::Round => v.round_ties_even(),
                    UnaryOp::Exp => v.exp(),
                    UnaryOp::Exp2 => v.exp2(),
                    UnaryOp::Log => v.ln(),
                    UnaryOp::Log2 => v.log2(),
                    UnaryOp::Sin => v.sin(),
                    UnaryOp::Cos => v.cos(),
                    UnaryOp::Tanh => v.tanh(),
                    UnaryOp::Erf => erf(v),
                    UnaryOp::Rsqrt => 1.0 / v.sqrt(),
                    _ => v,
                })
            }
        }
    })
}

/// erf in f64 (Abramowitz-Stegun 7.1.26 is not accurate enough; this uses the series and the
/// continued fraction, accurate to about 1e-15). Backends call this function for f64 `erf`.
pub fn erf(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series.
        let mut sum = ax;
        let mut term = ax;
        let x2 = ax * ax;
        let mut k = 0.0;
        loop {
            k += 1.0;
            term *= -x2 / k;
            let t = term / (2.0 * k + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() || k > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else if ax < 27.0 {
        // erfc by Lentz's continued fraction.
        let x2 = ax * ax;
        let mut f = ax;
        let mut c = ax;
        let mut dd = 0.0;
        for k in 1..200 {
            let an = k as f64 / 2.0;
            dd = ax + an * dd;
            dd = 1.0 / dd;
            c = ax + an / c;
            let delta = c * dd;
            f *= delta;
            if (delta - 1.0).abs() < 1e-16 {
                break;
            }
        }
        1.0 - (-x2).exp() / (f * std::f64::consts::PI.sqrt())
    } else {
        1.0
    };
    if x < 0.0 { -r } else { r }
}

fn floor_div(a: i128, b: i128) -> i128 {
    if b == 0 {
        return 0;
    }
    let q = a / b;
    if (a % b != 0) && ((a < 0) != (b < 0)) { q - 1 } else { q }
}

fn floor_mod(a: i128, b: i128) -> i128 {
    if b == 0 { 0 } else { a - b * floor_div(a, b) }
}

fn binary(op: BinaryOp, x: &Array, y: &Array, d: DType) -> Array {
    let src = x.dtype;
    Array::from_fn(d, x.shape.clone(), |i| {
        let (a, b) = (x.get(i), y.get(i));
        use BinaryOp::*;
        match (a, b) {
            (Scalar::Float(a), Scalar::Float(b)) => match op {
                Add => Scalar::Float(a + b),
                Sub => Scalar::Float(a - b),
                Mul => Scalar::Float(a * b),
                Div => Scalar::Float(a / b),
                Rem => Scalar::Float(if b == 0.0 { f64::NAN } else { a - b * (a / b).floor() }),
                Pow => Scalar::Float(a.powf(b)),
                Min => Scalar::Float(fmin(a, b)),
                Max => Scalar::Float(fmax(a, b)),
                Eq => Scalar::Bool(a == b),
                Ne => Scalar::Bool(a != b),
                Lt => Scalar::Bool(a < b),
                Le => Scalar::Bool(a <= b),
                Gt => Scalar::Bool(a > b),
                Ge => Scalar::Bool(a >= b),
                And | Or | Xor | Shl | Shr | DivTrunc | RemTrunc => Scalar::Float(f64::NAN),
            },
            (Scalar::Int(a), Scalar::Int(b)) => {
                let bits = i128::from(src.bits());
                match op {
                    Add => Scalar::Int(a + b),
                    Sub => Scalar::Int(a - b),
                    Mul => Scalar::Int(wrap(a.wrapping_mul(b), src)),
                    Div => Scalar::Int(floor_div(a, b)),
                    Rem => Scalar::Int(floor_mod(a, b)),
                    DivTrunc => Scalar::Int(if b == 0 { 0 } else { a / b }),
                    RemTrunc => Scalar::Int(if b == 0 { 0 } else { a % b }),
                    Pow => {
                        let mut r: i128 = 1;
                        if b < 0 {
                            return Scalar::Int(match a {
                                1 => 1,
                                -1 => {
                                    if b % 2 == 0 {
                                        1
                                    } else {
                                        -1
                                    }
                                }
                                _ => 0,
                            });
                        }
                        let (mut base, mut e) = (a, b);
                        while e > 0 {
                            if e & 1 == 1 {
                                r = wrap(r.wrapping_mul(base), src);
                            }
                            base = wrap(base.wrapping_mul(base), src);
                            e >>= 1;
                        }
                        Scalar::Int(r)
                    }
                    Min => Scalar::Int(a.min(b)),
                    Max => Scalar::Int(a.max(b)),
                    And => Scalar::Int(a & b),
                    Or => Scalar::Int(a | b),
                    Xor => Scalar::Int(a ^ b),
                    Shl => Scalar::Int(if b < 0 || b >= bits { 0 } else { (a << b) & ((1i128 << bits) - 1) }),
                    Shr => Scalar::Int(if b < 0 || b >= bits { if a < 0 { -1 } else { 0 } } else { a >> b }),
                    Eq => Scalar::Bool(a == b),
                    Ne => Scalar::Bool(a != b),
                    Lt => Scalar::Bool(a < b),
                    Le => Scalar::Bool(a <= b),
                    Gt => Scalar::Bool(a > b),
                    Ge => Scalar::Bool(a >= b),
                }
            }
            (a, b) => {
                let (a, b) = (as_bool(a), as_bool(b));
                match op {
                    And | Min => Scalar::Bool(a && b),
                    Or | Max => Scalar::Bool(a || b),
                    Xor | Ne => Scalar::Bool(a != b),
                    Eq => Scalar::Bool(a == b),
                    Lt => Scalar::Bool(!a & b),
                    Le => Scalar::Bool(a <= b),
                    Gt => Scalar::Bool(a & !b),
                    Ge => Scalar::Bool(a >= b),
                    _ => Scalar::Bool(false),
                }
            }
        }
    })
}

fn cast(x: &Array, d: DType) -> Array {
    Array::from_fn(d, x.shape.clone(), |i| match (x.get(i), d) {
        (Scalar::Float(v), d) if d.is_int() => {
            let (lo, hi) = d.int_range().unwrap_or((0, 0));
            // Clamp as integers: `i64::MAX as f64` rounds up to 2^63, which would wrap.
            Scalar::Int(if v.is_nan() { 0 } else { (v.trunc() as i128).clamp(lo, hi) })
        }
        (s, _) => s,
    })
}

fn bitcast(x: &Array, d: DType) -> Array {
    Array::from_fn(d, x.shape.clone(), |i| match (x.get(i), x.dtype, d) {
        (Scalar::Float(v), DType::F32, _) => Scalar::Int(i128::from((v as f32).to_bits() as i32)),
        (Scalar::Float(v), DType::F64, _) => Scalar::Int(i128::from(v.to_bits() as i64)),
        (Scalar::Int(v), _, DType::F32) => Scalar::Float(f64::from(f32::from_bits(v as u32))),
        (Scalar::Int(v), _, DType::F64) => Scalar::Float(f64::from_bits(v as u64)),
        (s, _, _) => s,
    })
}

fn fma(a: &Array, b: &Array, c: &Array, d: DType) -> Array {
    Array::from_fn(d, a.shape.clone(), |i| {
        let (x, y, z) = (as_f64(a.get(i)), as_f64(b.get(i)), as_f64(c.get(i)));
        Scalar::Float(match d {
            DType::F32 => f64::from((x as f32).mul_add(y as f32, z as f32)),
            _ => x.mul_add(y, z),
        })
    })
}

/// The accumulator dtype of a reduction: f32 for f16/bf16.
/// The dtype a sum of `d` accumulates in.
pub fn acc_dtype(d: DType) -> DType {
    match d {
        DType::F16 | DType::Bf16 => DType::F32,
        d => d,
    }
}

/// A reduction accumulator: the one definition of reduction arithmetic that the graph
/// interpreter and the kernel interpreter share. Elements are taken in order; the first element
/// starts the accumulation (so `sum([-0.0])` is `-0.0`); floats accumulate in f32 for f16/bf16.
#[derive(Clone, Debug)]
pub struct Acc {
    op: ReduceOp,
    acc: DType,
    src: DType,
    out: DType,
    value: Option<Scalar>,
    index: i64,
    count: i64,
}

/// The contract's float maximum (docs/numerics.md): NaN if either is NaN, and -0 < +0 (Rust's
/// `f64::max` may return either zero).
pub fn fmax(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == b {
        if a.is_sign_negative() { b } else { a }
    } else {
        a.max(b)
    }
}

/// The contract's float minimum: NaN if either is NaN, and -0 < +0.
pub fn fmin(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == b {
        if a.is_sign_negative() { a } else { b }
    } else {
        a.min(b)
    }
}

impl Acc {
    pub fn new(op: ReduceOp, src: DType, out: DType) -> Acc {
        Acc { op, acc: acc_dtype(src), src, out, value: None, index: -1, count: 0 }
    }

    pub fn push(&mut self, v: Scalar) {
        let k = self.count;
        self.count += 1;
        let max = matches!(self.op, ReduceOp::Max | ReduceOp::ArgMax);
        self.value = Some(match (self.op, self.value) {
            (ReduceOp::ArgMax | ReduceOp::ArgMin, None) => {
                self.index = k;
                v
            }
            (ReduceOp::ArgMax | ReduceOp::ArgMin, Some(b)) => {
                let better = match (b, v) {
                    (Scalar::Float(b), Scalar::Float(v)) => {
                        !b.is_nan() && (v.is_nan() || if max { v > b } else { v < b })
                    }
                    (Scalar::Int(b), Scalar::Int(v)) => {
                        if max {
                            v > b
                        } else {
                            v < b
                        }
                    }
                    _ => false,
                };
                if better {
                    self.index = k;
                    v
                } else {
                    b
                }
            }
            (_, None) => match v {
                Scalar::Float(x) => Scalar::Float(round(x, self.acc)),
                v => v,
            },
            (ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Dot, Some(Scalar::Float(s))) => {
                let x = as_f64(v);
                Scalar::Float(round(if self.op == ReduceOp::Prod { s * x } else { s + x }, self.acc))
            }
            (ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Dot, Some(Scalar::Int(s))) => {
                let x = as_i128(v);
                Scalar::Int(wrap(if self.op == ReduceOp::Prod { s.wrapping_mul(x) } else { s + x }, self.out))
            }
            (_, Some(Scalar::Float(b))) => match v {
                Scalar::Float(x) => Scalar::Float(if max { fmax(b, x) } else { fmin(b, x) }),
                _ => Scalar::Float(b),
            },
            (_, Some(Scalar::Int(b))) => Scalar::Int(if max { b.max(as_i128(v)) } else { b.min(as_i128(v)) }),
            (_, Some(b)) => b,
        });
    }

    /// One step of a contraction ([`ReduceOp::Dot`]): `acc = fma(a, b, acc)`, the exact product
    /// plus the running value rounded once to the accumulator dtype (f32 for f16 and bf16, whose
    /// products are exact in f32). The first step rounds the product alone (an fma onto -0.0).
    /// Integers (a contraction is only made of floats, but the text form can say otherwise)
    /// wrap, as a product and a sum would.
    pub fn push_product(&mut self, a: Scalar, b: Scalar) {
        self.count += 1;
        self.value = Some(match (a, b) {
            (Scalar::Float(_), _) | (_, Scalar::Float(_)) => {
                let (x, y) = (as_f64(a), as_f64(b));
                let z = match self.value {
                    Some(s) => as_f64(s),
                    None => -0.0,
                };
                Scalar::Float(match self.acc {
                    DType::F32 => f64::from((x as f32).mul_add(y as f32, z as f32)),
                    d => round(x.mul_add(y, z), d),
                })
            }
            _ => {
                let p = as_i128(a).wrapping_mul(as_i128(b));
                let s = self.value.map_or(0, as_i128);
                Scalar::Int(wrap(s.wrapping_add(p), self.out))
            }
        });
    }

    /// The current result (for scans, after every element).
    pub fn result(&self) -> Scalar {
        match (self.op, self.value) {
            (ReduceOp::ArgMax | ReduceOp::ArgMin, _) => Scalar::Int(i128::from(self.index)),
            (_, Some(v)) => v,
            (ReduceOp::Sum | ReduceOp::Dot, None) => {
                if self.acc.is_float() {
                    Scalar::Float(0.0)
                } else {
                    Scalar::Int(0)
                }
            }
            (ReduceOp::Prod, None) => {
                if self.acc.is_float() {
                    Scalar::Float(1.0)
                } else {
                    Scalar::Int(1)
                }
            }
            (op, None) => {
                let max = op == ReduceOp::Max;
                match (self.src.is_float(), self.src.int_range()) {
                    (true, _) => Scalar::Float(if max { f64::NEG_INFINITY } else { f64::INFINITY }),
                    (false, Some((lo, hi))) => Scalar::Int(if max { lo } else { hi }),
                    _ => Scalar::Bool(!max),
                }
            }
        }
    }
}

/// `op` over `axes` of `x`; a contraction ([`ReduceOp::Dot`]) multiplies by `y`, of `x`'s shape.
fn reduce(op: ReduceOp, x: &Array, y: Option<&Array>, axes: &[usize], d: DType, out_shape: &[usize]) -> Array {
    let xs = &x.shape;
    let red: Vec<usize> = axes.to_vec();
    let keep: Vec<usize> = (0..xs.len()).filter(|k| !red.contains(k)).collect();
    let red_shape: Vec<usize> = red.iter().map(|&k| xs[k]).collect();
    let red_n: usize = red_shape.iter().product();
    let st = strides(xs);
    let mut oc = vec![0i64; keep.len()];
    let mut rc = vec![0i64; red.len()];
    Array::from_fn(d, out_shape.to_vec(), |o| {
        unravel(o, out_shape, &mut oc);
        let base: usize = keep.iter().zip(&oc).map(|(&k, &c)| c as usize * st[k]).sum();
        let mut acc = Acc::new(op, x.dtype, d);
        for r in 0..red_n {
            unravel(r, &red_shape, &mut rc);
            let i = base + red.iter().zip(rc.iter()).map(|(&k, &c)| c as usize * st[k]).sum::<usize>();
            match y {
                Some(y) => acc.push_product(x.get(i), y.get(i)),
                None => acc.push(x.get(i)),
            }
        }
        acc.result()
    })
}

/// `out[b, indices[b, k], r] += values[b, k, r]` for k in order, from zero; indices outside the
/// result's rows are dropped.
fn scatter_add(values: &Array, indices: &Array, batch: usize, d: DType, out_shape: &[usize]) -> Array {
    let mut out = Array::from_fn(d, out_shape.to_vec(), |_| Scalar::zero(d));
    let n = values.shape.get(batch).copied().unwrap_or(0);
    let size = out_shape.get(batch).copied().unwrap_or(0);
    let outer: usize = values.shape[..batch.min(values.shape.len())].iter().product();
    let inner: usize = values.shape.get(batch + 1..).map_or(1, |s| s.iter().product());
    let add = Op::Binary(BinaryOp::Add);
    for b in 0..outer {
        for k in 0..n {
            let j = as_i128(indices.get(b * n + k));
            let Ok(j) = usize::try_from(j) else { continue };
            if j >= size {
                continue;
            }
            for r in 0..inner {
                let o = (b * size + j) * inner + r;
                let s = scalar_op(&add, &[(out.get(o), d), (values.get((b * n + k) * inner + r), d)], d);
                match (&mut out.data, s) {
                    (Data::F(v), s) => v[o] = as_f64(s),
                    (Data::I(v), s) => v[o] = as_i128(s),
                    (Data::B(v), s) => v[o] = as_bool(s),
                }
            }
        }
    }
    out
}

fn scan(op: ReduceOp, x: &Array, axis: usize, d: DType) -> Array {
    let xs = x.shape.clone();
    let st = strides(&xs);
    let n = xs.get(axis).copied().unwrap_or(1);
    let mut out = Array::from_fn(d, xs.clone(), |i| x.get(i));
    let lines = x.len().checked_div(n).unwrap_or(0);
    let mut c = vec![0i64; xs.len()];
    let mut line_shape = xs.clone();
    if axis < line_shape.len() {
        line_shape[axis] = 1;
    }
    for l in 0..lines {
        unravel(l, &line_shape, &mut c);
        let base: usize = c.iter().zip(&st).map(|(&a, &s)| a as usize * s).sum();
        let mut acc = Acc::new(op, x.dtype, d);
        for k in 0..n {
            let i = base + k * st[axis];
            acc.push(x.get(i));
            match (&mut out.data, acc.result()) {
                (Data::F(o), r) => o[i] = round(as_f64(r), d),
                (Data::I(o), r) => o[i] = as_i128(r),
                (Data::B(o), r) => o[i] = as_bool(r),
            }
        }
    }
    out
}

/// Evaluates one elementwise operation (unary, binary, where, cast) on scalars, with exactly the
/// arithmetic of the graph interpreter. `args` are (value, dtype) pairs.
pub fn scalar_op(op: &Op, args: &[(Scalar, DType)], d: DType) -> Scalar {
    let arr = |(s, t): (Scalar, DType)| Array::from_fn(t, vec![], |_| s);
    let r = match op {
        Op::Unary(u) => unary(*u, &arr(args[0]), d),
        Op::Binary(b) => binary(*b, &arr(args[0]), &arr(args[1]), d),
        Op::Cast => cast(&arr(args[0]), d),
        Op::Bitcast => bitcast(&arr(args[0]), d),
        Op::Fma => fma(&arr(args[0]), &arr(args[1]), &arr(args[2]), d),
        Op::Where => {
            let pick = if as_bool(args[0].0) { args[1] } else { args[2] };
            Array::from_fn(d, vec![], |_| pick.0)
        }
        _ => Array::from_fn(d, vec![], |_| Scalar::Int(0)),
    };
    r.get(0)
}

/// Converts a scalar to the representation of a dtype (rounding or wrapping).
pub fn scalar_to(s: Scalar, d: DType) -> Scalar {
    Array::from_fn(d, vec![], |_| s).get(0)
}

impl Array {
    /// Element `i` as a scalar.
    pub fn at(&self, i: usize) -> Scalar {
        self.get(i)
    }
    /// Sets element `i` (converted to the array's dtype).
    pub fn set(&mut self, i: usize, s: Scalar) {
        let d = self.dtype;
        match (&mut self.data, scalar_to(s, d)) {
            (Data::F(v), x) => v[i] = as_f64(x),
            (Data::I(v), x) => v[i] = as_i128(x),
            (Data::B(v), x) => v[i] = as_bool(x),
        }
    }
}

/// The integer value of a scalar used as an index.
pub fn scalar_index(s: Scalar) -> i64 {
    as_i128(s) as i64
}

/// The truth value of a scalar.
pub fn scalar_bool(s: Scalar) -> bool {
    as_bool(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(x: f64) -> u64 {
        x.to_bits()
    }

    #[test]
    fn min_and_max_order_negative_zero_below_positive_zero_and_propagate_nan() {
        for (a, b) in [(-0.0, 0.0), (0.0, -0.0)] {
            assert_eq!(bits(fmax(a, b)), bits(0.0));
            assert_eq!(bits(fmin(a, b)), bits(-0.0));
        }
        assert!(fmax(f64::NAN, 1.0).is_nan() && fmin(1.0, f64::NAN).is_nan());
        assert_eq!((fmax(-1.0, 2.0), fmin(-1.0, 2.0)), (2.0, -1.0));
        // Reductions too, whichever zero comes first.
        for xs in [[-0.0, 0.0], [0.0, -0.0]] {
            for (op, want) in [(ReduceOp::Max, 0.0), (ReduceOp::Min, -0.0)] {
                let mut acc = Acc::new(op, DType::F32, DType::F32);
                for x in xs {
                    acc.push(Scalar::Float(x));
                }
                let Scalar::Float(got) = acc.result() else { panic!("a float") };
                assert_eq!(bits(got), bits(want), "{op:?} of {xs:?}");
            }
        }
    }
}
