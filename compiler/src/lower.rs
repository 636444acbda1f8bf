//! Lowering a checked kernel (crate::tast) to the graph IR (tk_ir::graph).
//!
//! Index comprehensions, range reductions and loops introduce index variables. Each lowered value
//! lives in an *iteration space*: its graph node has the extents of the index variables it depends
//! on as leading axes, followed by the value's own shape. Combining two values aligns both to the
//! union of their variables with a view (an `Index` node whose map is affine), so indexing such as
//! `img[i + 1, j]` becomes a view of `img` over the space of `i` and `j`, and a reduction over a
//! range variable reduces that variable's axis.

use crate::ast::{BinOp, UnOp};
use crate::dims::Dim;
use crate::tast::*;
use crate::types::{DType, Ty};
use std::collections::HashMap;
use tk_ir::graph::{BinaryOp, Graph, Guard, IExpr, Loc, NodeId, OnInvalid, Op, ReduceOp, Scalar, UnaryOp};

/// A construct the graph IR cannot express yet, with its location.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct LowerError {
    pub message: String,
    pub loc: Loc,
}

type Res<T> = Result<T, LowerError>;

/// A lowered value: a node whose leading axes are the extents of `vars`.
#[derive(Clone, Debug)]
struct Lv {
    node: NodeId,
    vars: Vec<u32>,
}

#[derive(Clone, Debug)]
enum Lowered {
    One(Lv),
    Many(Vec<Lowered>),
}

/// One graph under construction: the kernel's, or a loop body's.
struct Ctx {
    g: Graph,
    memo: HashMap<usize, Lowered>,
    /// Parameters and outer loop-carried values visible here: key -> node in this graph.
    captured: HashMap<Capture, Lv>,
    /// Captures of a loop body, in order: (key, value in the enclosing graph).
    captures: Vec<(Capture, Lv)>,
    /// The loop's own iteration number and carried values (loop bodies only).
    locals: HashMap<u32, Lv>,
    first_capture_input: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Capture {
    Param(usize),
    Carried(u32),
}

struct Lowerer {
    ctx: Vec<Ctx>,
    /// Active index variables, outermost first.
    space: Vec<u32>,
    ext: HashMap<u32, Dim>,
    lo: HashMap<u32, Dim>,
    /// Loop-carried variable ids -> their type, for capture in nested loop bodies.
    param_types: Vec<Ty>,
}

fn loc(e: &TExpr) -> Loc {
    Loc { file: e.file as u32, lo: e.span.lo, hi: e.span.hi }
}

fn dtype_of(t: &Ty) -> DType {
    t.elem().map(|e| e.default_dtype()).unwrap_or(DType::I32)
}

/// Lowers one checked kernel to a graph whose inputs are the kernel's parameters and whose
/// outputs are its results.
pub fn lower_kernel(k: &CheckedKernel) -> Res<Graph> {
    let mut l = Lowerer {
        ctx: vec![Ctx {
            g: Graph::default(),
            memo: HashMap::new(),
            captured: HashMap::new(),
            captures: Vec::new(),
            locals: HashMap::new(),
            first_capture_input: 0,
        }],
        space: Vec::new(),
        ext: HashMap::new(),
        lo: HashMap::new(),
        param_types: k.params.iter().map(|p| p.ty.clone()).collect(),
    };
    l.g().dims = k.dim_params.clone();
    for p in &k.params {
        l.g().inputs.push((p.name.clone(), dtype_of(&p.ty), p.ty.shape().to_vec()));
    }
    for ((name, _), r) in k.outputs.iter().zip(&k.results) {
        let v = l.lower(r)?;
        let Lowered::One(lv) = v else {
            return Err(LowerError { message: "a kernel output is a tuple".into(), loc: loc(r) });
        };
        let node = l.align(&lv, &[], r.ty.shape(), loc(r));
        l.g().outputs.push((name.clone(), node));
    }
    Ok(l.ctx.pop().map(|c| c.g).unwrap_or_default())
}

impl Lowerer {
    fn g(&mut self) -> &mut Graph {
        &mut self.ctx.last_mut().expect("a graph context").g
    }

    fn space_shape(&self, vars: &[u32]) -> Vec<Dim> {
        vars.iter().map(|v| self.ext.get(v).cloned().unwrap_or_default()).collect()
    }

    /// Orders variables as they are nested (outermost first).
    fn order(&self, mut vars: Vec<u32>) -> Vec<u32> {
        vars.sort_by_key(|v| self.space.iter().position(|s| s == v).unwrap_or(usize::MAX));
        vars.dedup();
        vars
    }

    fn union(&self, a: &[u32], b: &[u32]) -> Vec<u32> {
        self.order(a.iter().chain(b).copied().collect())
    }

    fn add(&mut self, op: Op, dtype: DType, shape: Vec<Dim>, args: Vec<NodeId>, l: Loc) -> NodeId {
        self.g().add(op, dtype, shape, args, l)
    }

    fn vshape(&self, lv: &Lv) -> Vec<Dim> {
        let n = self.ctx.last().expect("ctx").g.node(lv.node);
        n.shape[lv.vars.len()..].to_vec()
    }

    fn dtype(&self, lv: &Lv) -> DType {
        self.ctx.last().expect("ctx").g.node(lv.node).dtype
    }

    /// A view of `lv` with leading axes `vars` (a superset of lv.vars) and value shape `vshape`
    /// (lv's value shape broadcast from the right).
    fn align(&mut self, lv: &Lv, vars: &[u32], vshape: &[Dim], l: Loc) -> NodeId {
        let src_v = self.vshape(lv);
        if lv.vars == vars && src_v == vshape {
            return lv.node;
        }
        let nv = vars.len();
        let mut map = Vec::new();
        for v in &lv.vars {
            let pos = vars.iter().position(|x| x == v).unwrap_or(0);
            map.push(IExpr::Coord(pos));
        }
        let off = vshape.len().saturating_sub(src_v.len());
        for (k, d) in src_v.iter().enumerate() {
            let out_axis = off + k;
            if d.is_one() && !vshape.get(out_axis).is_some_and(|o| o.is_one()) {
                map.push(IExpr::c(0));
            } else {
                map.push(IExpr::Coord(nv + out_axis));
            }
        }
        let mut shape = self.space_shape(vars);
        shape.extend(vshape.iter().cloned());
        let d = self.dtype(lv);
        self.add(Op::Index { map, guards: vec![], fill: Scalar::zero(d) }, d, shape, vec![lv.node], l)
    }

    fn one(&mut self, r: &R) -> Res<Lv> {
        match self.lower(r)? {
            Lowered::One(lv) => Ok(lv),
            Lowered::Many(_) => Err(LowerError { message: "a tuple used as an array".into(), loc: loc(r) }),
        }
    }

    fn lower(&mut self, r: &R) -> Res<Lowered> {
        let key = std::sync::Arc::as_ptr(r) as usize;
        if let Some(v) = self.ctx.last().and_then(|c| c.memo.get(&key)) {
            return Ok(v.clone());
        }
        let v = self.lower_inner(r)?;
        if let Some(c) = self.ctx.last_mut() {
            c.memo.insert(key, v.clone());
        }
        Ok(v)
    }

    fn lower_inner(&mut self, r: &R) -> Res<Lowered> {
        let l = loc(r);
        let d = dtype_of(&r.ty);
        let vshape = r.ty.shape().to_vec();
        let lv = match &r.kind {
            TKind::Param(i) => self.capture(Capture::Param(*i), l)?,
            TKind::Carried(id) => match self.ctx.last().and_then(|c| c.locals.get(id)).cloned() {
                Some(lv) => lv,
                None => self.capture(Capture::Carried(*id), l)?,
            },
            TKind::Lit(lit) => {
                let s = match *lit {
                    Lit::Int(v) if d.is_float() => Scalar::Float(v as f64),
                    Lit::Int(v) => Scalar::Int(v),
                    Lit::Float(v) => Scalar::Float(v),
                    Lit::Bool(b) => Scalar::Bool(b),
                };
                Lv { node: self.add(Op::Const(s), d, vec![], vec![], l), vars: vec![] }
            }
            TKind::Dim(dim) => {
                let n = self.add(Op::Size(dim.clone()), DType::I64, vec![], vec![], l);
                if d != DType::I64 {
                    self.cast(&Lv { node: n, vars: vec![] }, d, l)
                } else {
                    Lv { node: n, vars: vec![] }
                }
            }
            TKind::Var(id) => {
                if let Some(lv) = self.ctx.last().and_then(|c| c.locals.get(id)).cloned() {
                    lv
                } else if self.ctx.iter().any(|c| c.locals.contains_key(id)) {
                    // The iteration number of an enclosing loop.
                    self.capture(Capture::Carried(*id), l)?
                } else {
                    let ext = self.ext.get(id).cloned().unwrap_or_default();
                    let lo = self.lo.get(id).cloned().unwrap_or_default();
                    let n = self.add(Op::Iota { axis: 0, offset: lo }, DType::I64, vec![ext], vec![], l);
                    Lv { node: n, vars: vec![*id] }
                }
            }
            TKind::Unary(op, a) => {
                let a = self.one(a)?;
                let u = match op {
                    UnOp::Neg => UnaryOp::Neg,
                    UnOp::Not => UnaryOp::Not,
                };
                self.unary(u, &a, d, l)
            }
            TKind::Binary(BinOp::MatMul, a, b) => {
                let (a, b) = (self.one(a)?, self.one(b)?);
                self.matmul(&a, &b, &vshape, d, l)
            }
            TKind::Binary(BinOp::Pow, a, b)
                if let TKind::Lit(Lit::Int(k)) = b.kind
                    && a.ty.elem().is_some_and(|e| e.is_float()) =>
            {
                let a = self.one(a)?;
                self.int_power(&a, k, d, l)
            }
            TKind::Binary(op, a, b) => {
                let (x, y) = (self.one(a)?, self.one(b)?);
                let bop = match op {
                    BinOp::Or | BinOp::BitOr => BinaryOp::Or,
                    BinOp::And | BinOp::BitAnd => BinaryOp::And,
                    BinOp::BitXor => BinaryOp::Xor,
                    BinOp::Eq => BinaryOp::Eq,
                    BinOp::Ne => BinaryOp::Ne,
                    BinOp::Lt => BinaryOp::Lt,
                    BinOp::Le => BinaryOp::Le,
                    BinOp::Gt => BinaryOp::Gt,
                    BinOp::Ge => BinaryOp::Ge,
                    BinOp::Shl => BinaryOp::Shl,
                    BinOp::Shr => BinaryOp::Shr,
                    BinOp::Add => BinaryOp::Add,
                    BinOp::Sub => BinaryOp::Sub,
                    BinOp::Mul => BinaryOp::Mul,
                    BinOp::Div => BinaryOp::Div,
                    BinOp::Rem => BinaryOp::Rem,
                    BinOp::Pow => BinaryOp::Pow,
                    BinOp::MatMul => BinaryOp::Mul,
                };
                self.binary(bop, &x, &y, &vshape, d, l)
            }
            TKind::Cast(to, a) => {
                let a = self.one(a)?;
                self.cast(&a, *to, l)
            }
            TKind::Builtin(name, args, attrs) => self.builtin(name, args, attrs, &vshape, d, l)?,
            TKind::Index(base, items) => self.index(base, items, &vshape, d, l)?,
            TKind::Comprehension(ivars, body) => {
                self.enter(ivars);
                let b = self.one(body);
                self.leave(ivars);
                let b = b?;
                let outer: Vec<u32> = b.vars.iter().copied().filter(|v| !ivars.iter().any(|iv| iv.id == *v)).collect();
                let mut all = outer.clone();
                all.extend(ivars.iter().map(|v| v.id));
                let bv = body.ty.shape().to_vec();
                let node = self.align_ordered(&b, &all, &bv, l);
                Lv { node, vars: outer }
            }
            TKind::Reduce(name, ivars, body) => {
                self.enter(ivars);
                let b = self.one(body);
                self.leave(ivars);
                let mut b = b?;
                if self.dtype(&b) != d {
                    b = self.cast(&b, d, l);
                }
                let outer: Vec<u32> = b.vars.iter().copied().filter(|v| !ivars.iter().any(|iv| iv.id == *v)).collect();
                let mut all = outer.clone();
                all.extend(ivars.iter().map(|v| v.id));
                let bv = body.ty.shape().to_vec();
                let node = self.align_ordered(&b, &all, &bv, l);
                let axes: Vec<usize> = (outer.len()..outer.len() + ivars.len()).collect();
                let op = match *name {
                    "prod" => ReduceOp::Prod,
                    "max" => ReduceOp::Max,
                    "min" => ReduceOp::Min,
                    _ => ReduceOp::Sum,
                };
                let mut shape = self.space_shape(&outer);
                shape.extend(bv);
                let n = self.add(Op::Reduce { op, axes }, d, shape, vec![node], l);
                Lv { node: n, vars: outer }
            }
            TKind::Loop { var, carried, exit, next } => return self.lower_loop(r, var, carried, exit.as_ref(), next),
            TKind::Tuple(xs) => {
                let mut v = Vec::new();
                for x in xs {
                    v.push(self.lower(x)?);
                }
                return Ok(Lowered::Many(v));
            }
            TKind::Proj(t, k) => {
                return match self.lower(t)? {
                    Lowered::Many(mut v) if *k < v.len() => Ok(v.swap_remove(*k)),
                    other if *k == 0 => Ok(other),
                    _ => Err(LowerError { message: "projection out of range".into(), loc: l }),
                };
            }
        };
        Ok(Lowered::One(lv))
    }

    /// Like `align`, but the target variables are in the given order (not re-sorted).
    fn align_ordered(&mut self, lv: &Lv, vars: &[u32], vshape: &[Dim], l: Loc) -> NodeId {
        self.align(lv, vars, vshape, l)
    }

    fn enter(&mut self, ivars: &[IVar]) {
        for v in ivars {
            self.space.push(v.id);
            self.ext.insert(v.id, v.extent.clone());
            self.lo.insert(v.id, v.lo.clone());
        }
    }
    fn leave(&mut self, ivars: &[IVar]) {
        for _ in ivars {
            self.space.pop();
        }
    }

    /// A parameter or an outer carried value, made available in the current graph.
    fn capture(&mut self, key: Capture, l: Loc) -> Res<Lv> {
        let depth = self.ctx.len();
        self.capture_at(depth - 1, key, l)
    }

    fn capture_at(&mut self, level: usize, key: Capture, l: Loc) -> Res<Lv> {
        if let Some(lv) = self.ctx[level].captured.get(&key) {
            return Ok(lv.clone());
        }
        if level == 0 {
            let Capture::Param(i) = key else {
                return Err(LowerError { message: "internal: a carried value outside its loop".into(), loc: l });
            };
            let t = self.param_types.get(i).cloned().unwrap_or(Ty::Tuple(vec![]));
            let n = self.ctx[0].g.add(Op::Input(i), dtype_of(&t), t.shape().to_vec(), vec![], l);
            let lv = Lv { node: n, vars: vec![] };
            self.ctx[0].captured.insert(key, lv.clone());
            return Ok(lv);
        }
        if let Capture::Carried(id) = key
            && let Some(lv) = self.ctx[level].locals.get(&id)
        {
            return Ok(lv.clone());
        }
        let outer = self.capture_at(level - 1, key, l)?;
        let (dtype, shape) = {
            let n = self.ctx[level - 1].g.node(outer.node);
            (n.dtype, n.shape.clone())
        };
        let c = &mut self.ctx[level];
        let k = c.first_capture_input + c.captures.len();
        c.captures.push((key, outer.clone()));
        c.g.inputs.push((format!("capture{k}"), dtype, shape.clone()));
        let n = c.g.add(Op::Input(k), dtype, shape, vec![], l);
        let lv = Lv { node: n, vars: outer.vars };
        c.captured.insert(key, lv.clone());
        Ok(lv)
    }

    fn unary(&mut self, op: UnaryOp, a: &Lv, d: DType, l: Loc) -> Lv {
        let shape = self.ctx.last().expect("ctx").g.node(a.node).shape.clone();
        let n = self.add(Op::Unary(op), d, shape, vec![a.node], l);
        Lv { node: n, vars: a.vars.clone() }
    }

    fn cast(&mut self, a: &Lv, d: DType, l: Loc) -> Lv {
        if self.dtype(a) == d {
            return a.clone();
        }
        let shape = self.ctx.last().expect("ctx").g.node(a.node).shape.clone();
        let n = self.add(Op::Cast, d, shape, vec![a.node], l);
        Lv { node: n, vars: a.vars.clone() }
    }

    fn binary(&mut self, op: BinaryOp, a: &Lv, b: &Lv, vshape: &[Dim], d: DType, l: Loc) -> Lv {
        let vars = self.union(&a.vars, &b.vars);
        let x = self.align(a, &vars, vshape, l);
        let y = self.align(b, &vars, vshape, l);
        let mut shape = self.space_shape(&vars);
        shape.extend(vshape.iter().cloned());
        let n = self.add(Op::Binary(op), d, shape, vec![x, y], l);
        Lv { node: n, vars }
    }

    fn where_(&mut self, c: &Lv, a: &Lv, b: &Lv, vshape: &[Dim], d: DType, l: Loc) -> Lv {
        let vars = self.union(&self.union(&c.vars, &a.vars), &b.vars);
        let cn = self.align(c, &vars, vshape, l);
        let x = self.align(a, &vars, vshape, l);
        let y = self.align(b, &vars, vshape, l);
        let mut shape = self.space_shape(&vars);
        shape.extend(vshape.iter().cloned());
        let n = self.add(Op::Where, d, shape, vec![cn, x, y], l);
        Lv { node: n, vars }
    }

    fn constant(&mut self, s: Scalar, d: DType, l: Loc) -> Lv {
        Lv { node: self.add(Op::Const(s), d, vec![], vec![], l), vars: vec![] }
    }

    /// `x ** k` for an integer constant k: repeated multiplication (exact for negative x).
    fn int_power(&mut self, x: &Lv, k: i128, d: DType, l: Loc) -> Lv {
        let vshape = self.vshape(x);
        let one = self.constant(Scalar::Float(1.0), d, l);
        let mut acc: Option<Lv> = None;
        let mut base = x.clone();
        let mut e = k.unsigned_abs();
        while e > 0 {
            if e & 1 == 1 {
                acc = Some(match acc {
                    None => base.clone(),
                    Some(a) => self.binary(BinaryOp::Mul, &a, &base, &vshape, d, l),
                });
            }
            e >>= 1;
            if e > 0 {
                base = self.binary(BinaryOp::Mul, &base, &base, &vshape, d, l);
            }
        }
        let p = match acc {
            Some(a) => a,
            None => {
                let n = self.align(&one, &x.vars, &vshape, l);
                Lv { node: n, vars: x.vars.clone() }
            }
        };
        if k < 0 { self.binary(BinaryOp::Div, &one, &p, &vshape, d, l) } else { p }
    }

    fn matmul(&mut self, a: &Lv, b: &Lv, out_v: &[Dim], d: DType, l: Loc) -> Lv {
        let (sa, sb) = (self.vshape(a), self.vshape(b));
        let (has_m, has_n) = (sa.len() >= 2, sb.len() >= 2);
        let k_dim = sa[sa.len() - 1].clone();
        let nb = out_v.len() - usize::from(has_m) - usize::from(has_n);
        let vars = self.union(&a.vars, &b.vars);
        let nv = vars.len();
        // The product space: batch..., m?, n?, k.
        let mut p = out_v.to_vec();
        p.push(k_dim);
        let k_axis = nv + p.len() - 1;
        let m_axis = nv + nb;
        let n_axis = nv + nb + usize::from(has_m);
        let mut shape = self.space_shape(&vars);
        shape.extend(p.iter().cloned());
        let view = |me: &mut Self, x: &Lv, s: &[Dim], is_a: bool| -> NodeId {
            let mut map: Vec<IExpr> =
                x.vars.iter().map(|v| IExpr::Coord(vars.iter().position(|y| y == v).unwrap_or(0))).collect();
            let mat_axes = if is_a { usize::from(has_m) + 1 } else { usize::from(has_n) + 1 };
            let batch_src = s.len().saturating_sub(mat_axes);
            for (i, dim) in s[..batch_src].iter().enumerate() {
                let out = nv + nb - batch_src + i;
                map.push(if dim.is_one() && !p[out - nv].is_one() { IExpr::c(0) } else { IExpr::Coord(out) });
            }
            if is_a {
                if has_m {
                    map.push(IExpr::Coord(m_axis));
                }
                map.push(IExpr::Coord(k_axis));
            } else {
                map.push(IExpr::Coord(k_axis));
                if has_n {
                    map.push(IExpr::Coord(n_axis));
                }
            }
            me.add(Op::Index { map, guards: vec![], fill: Scalar::zero(d) }, d, shape.clone(), vec![x.node], l)
        };
        let av = view(self, a, &sa, true);
        let bv = view(self, b, &sb, false);
        let prod = self.add(Op::Binary(BinaryOp::Mul), d, shape.clone(), vec![av, bv], l);
        let mut out_shape = self.space_shape(&vars);
        out_shape.extend(out_v.iter().cloned());
        let n = self.add(Op::Reduce { op: ReduceOp::Sum, axes: vec![k_axis] }, d, out_shape, vec![prod], l);
        Lv { node: n, vars }
    }

    /// A view of `x` (value axes only) with a new value shape and a map from output value
    /// coordinates (offset by the variable axes) to source value coordinates.
    #[allow(clippy::too_many_arguments)]
    fn value_view(
        &mut self,
        x: &Lv,
        vshape: &[Dim],
        value_map: Vec<IExpr>,
        guards: Vec<Guard>,
        fill: Scalar,
        d: DType,
        l: Loc,
    ) -> Lv {
        let mut map: Vec<IExpr> = (0..x.vars.len()).map(IExpr::Coord).collect();
        map.extend(value_map);
        let mut shape = self.space_shape(&x.vars);
        shape.extend(vshape.iter().cloned());
        let n = self.add(Op::Index { map, guards, fill }, d, shape, vec![x.node], l);
        Lv { node: n, vars: x.vars.clone() }
    }

    fn builtin(&mut self, name: &str, args: &[R], attrs: &Attrs, vshape: &[Dim], d: DType, l: Loc) -> Res<Lv> {
        let unary_op = |n: &str| {
            Some(match n {
                "exp" => UnaryOp::Exp,
                "exp2" => UnaryOp::Exp2,
                "log" => UnaryOp::Log,
                "log2" => UnaryOp::Log2,
                "sqrt" => UnaryOp::Sqrt,
                "rsqrt" => UnaryOp::Rsqrt,
                "sin" => UnaryOp::Sin,
                "cos" => UnaryOp::Cos,
                "tanh" => UnaryOp::Tanh,
                "erf" => UnaryOp::Erf,
                "floor" => UnaryOp::Floor,
                "ceil" => UnaryOp::Ceil,
                "round" => UnaryOp::Round,
                "abs" => UnaryOp::Abs,
                _ => return None,
            })
        };
        if let Some(op) = unary_op(name) {
            let x = self.one(&args[0])?;
            return Ok(self.unary(op, &x, d, l));
        }
        let nv_of = |x: &Lv| x.vars.len();
        Ok(match name {
            "min" | "max" if args.len() == 2 => {
                let (x, y) = (self.one(&args[0])?, self.one(&args[1])?);
                let op = if name == "min" { BinaryOp::Min } else { BinaryOp::Max };
                self.binary(op, &x, &y, vshape, d, l)
            }
            "pow" => {
                let (x, y) = (self.one(&args[0])?, self.one(&args[1])?);
                self.binary(BinaryOp::Pow, &x, &y, vshape, d, l)
            }
            "fma" => {
                // f16 and bf16: an f32 fma, then one narrowing (docs/numerics.md).
                let wide = tk_ir::graph::interp::acc_dtype(d);
                let mut v = Vec::new();
                for a in args {
                    let x = self.one(a)?;
                    v.push(self.cast(&x, wide, l));
                }
                let vars = self.union(&self.union(&v[0].vars, &v[1].vars), &v[2].vars);
                let nodes: Vec<NodeId> = v.iter().map(|x| self.align(x, &vars, vshape, l)).collect();
                let mut shape = self.space_shape(&vars);
                shape.extend(vshape.iter().cloned());
                let n = self.add(Op::Fma, wide, shape, nodes, l);
                self.cast(&Lv { node: n, vars }, d, l)
            }
            "where" => {
                let (c, x, y) = (self.one(&args[0])?, self.one(&args[1])?, self.one(&args[2])?);
                self.where_(&c, &x, &y, vshape, d, l)
            }
            "sum" | "prod" | "max" | "min" | "mean" | "argmax" | "argmin" => {
                let mut x = self.one(&args[0])?;
                let nv = nv_of(&x);
                let xs = self.vshape(&x);
                let orig_xs = xs.clone();
                let op = match name {
                    "prod" => ReduceOp::Prod,
                    "max" => ReduceOp::Max,
                    "min" => ReduceOp::Min,
                    "argmax" => ReduceOp::ArgMax,
                    "argmin" => ReduceOp::ArgMin,
                    _ => ReduceOp::Sum,
                };
                let mut axes = attrs.axes.clone();
                if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) && attrs.axes.len() == xs.len() && xs.len() != 1 {
                    // Flattened index: view the value as one axis.
                    let total = xs.iter().fold(Dim::constant(1), |a, b| a.mul(b));
                    x = self.reshape(&x, &xs, std::slice::from_ref(&total), l);
                    axes = vec![0];
                }
                let acc_d = if name == "mean" {
                    d
                } else if matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) {
                    self.dtype(&x)
                } else {
                    d
                };
                if self.dtype(&x) != acc_d {
                    x = self.cast(&x, acc_d, l);
                }
                let xs = self.vshape(&x);
                let kept: Vec<Dim> =
                    xs.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.clone()).collect();
                let mut shape = self.space_shape(&x.vars);
                shape.extend(kept.iter().cloned());
                let node_axes: Vec<usize> = axes.iter().map(|a| a + nv).collect();
                let rop = if name == "mean" { ReduceOp::Sum } else { op };
                let n = self.add(Op::Reduce { op: rop, axes: node_axes }, d, shape, vec![x.node], l);
                let mut r = Lv { node: n, vars: x.vars.clone() };
                if name == "mean" {
                    let count = axes.iter().fold(Dim::constant(1), |a, &k| a.mul(&xs[k]));
                    let c = self.add(Op::Size(count), DType::I64, vec![], vec![], l);
                    let c = self.cast(&Lv { node: c, vars: vec![] }, d, l);
                    r = self.binary(BinaryOp::Div, &r, &c, &kept, d, l);
                }
                if attrs.keep {
                    // Re-insert the reduced axes with size 1.
                    let map =
                        (0..orig_xs.len()).filter(|i| !attrs.axes.contains(i)).map(|i| IExpr::Coord(nv + i)).collect();
                    r = self.value_view(&r, vshape, map, vec![], Scalar::zero(d), d, l);
                }
                r
            }
            "cumsum" | "cumprod" => {
                let mut x = self.one(&args[0])?;
                if self.dtype(&x) != d {
                    x = self.cast(&x, d, l);
                }
                let nv = nv_of(&x);
                let shape = self.ctx.last().expect("ctx").g.node(x.node).shape.clone();
                let op = if name == "cumsum" { ReduceOp::Sum } else { ReduceOp::Prod };
                let n = self.add(Op::Scan { op, axis: nv + attrs.axes[0] }, d, shape, vec![x.node], l);
                Lv { node: n, vars: x.vars.clone() }
            }
            "scatter_add" => {
                // In the accumulator's dtype (f32 for f16 and bf16, as `sum`), narrowed once at
                // the end.
                let (v, idx) = (self.one(&args[0])?, self.one(&args[1])?);
                let vars = self.union(&v.vars, &idx.vars);
                let (vs, is) = (self.vshape(&v), self.vshape(&idx));
                let acc = tk_ir::graph::interp::acc_dtype(d);
                let v = self.cast(&v, acc, l);
                let x = self.align(&v, &vars, &vs, l);
                let y = self.align(&idx, &vars, &is, l);
                let mut shape = self.space_shape(&vars);
                shape.extend(vshape.iter().cloned());
                let n = self.add(Op::ScatterAdd { batch: vars.len() }, acc, shape, vec![x, y], l);
                self.cast(&Lv { node: n, vars }, d, l)
            }
            "reshape" => {
                let x = self.one(&args[0])?;
                let xs = self.vshape(&x);
                self.reshape(&x, &xs, &attrs.shape, l)
            }
            "permute" => {
                let x = self.one(&args[0])?;
                let nv = nv_of(&x);
                let mut inv = vec![0; attrs.perm.len()];
                for (o, &s) in attrs.perm.iter().enumerate() {
                    inv[s] = o;
                }
                let map = inv.iter().map(|&o| IExpr::Coord(nv + o)).collect();
                self.value_view(&x, vshape, map, vec![], Scalar::zero(d), d, l)
            }
            "expand" => {
                let x = self.one(&args[0])?;
                let node = self.align(&x, &x.vars.clone(), vshape, l);
                Lv { node, vars: x.vars }
            }
            "flip" => {
                let x = self.one(&args[0])?;
                let nv = nv_of(&x);
                let xs = self.vshape(&x);
                let map = xs
                    .iter()
                    .enumerate()
                    .map(|(i, dim)| {
                        if attrs.axes.contains(&i) {
                            IExpr::sum(
                                IExpr::Dim(dim.add_const(-1)),
                                IExpr::product(IExpr::c(-1), IExpr::Coord(nv + i)),
                            )
                        } else {
                            IExpr::Coord(nv + i)
                        }
                    })
                    .collect();
                self.value_view(&x, vshape, map, vec![], Scalar::zero(d), d, l)
            }
            "pad" => {
                let x = self.one(&args[0])?;
                let fill = match &args[1].kind {
                    TKind::Lit(Lit::Float(v)) => Scalar::Float(*v),
                    TKind::Lit(Lit::Int(v)) if d.is_float() => Scalar::Float(*v as f64),
                    TKind::Lit(Lit::Int(v)) => Scalar::Int(*v),
                    TKind::Lit(Lit::Bool(b)) => Scalar::Bool(*b),
                    _ => {
                        return Err(LowerError {
                            message: "a padding value that is not a constant is not supported yet".into(),
                            loc: l,
                        });
                    }
                };
                let nv = nv_of(&x);
                let xs = self.vshape(&x);
                let mut map = Vec::new();
                let mut guards = Vec::new();
                for (i, (dim, (before, _))) in xs.iter().zip(&attrs.pads).enumerate() {
                    let e = IExpr::sum(IExpr::Coord(nv + i), IExpr::Dim(before.neg()));
                    guards.push(Guard {
                        expr: e.clone(),
                        lo: Dim::constant(0),
                        hi: dim.clone(),
                        on_invalid: OnInvalid::Fill,
                    });
                    map.push(e);
                }
                self.value_view(&x, vshape, map, guards, fill, d, l)
            }
            "cat" | "stack" => {
                let axis = attrs.axes[0];
                let mut parts = Vec::new();
                for a in args {
                    parts.push(self.one(a)?);
                }
                let vars = parts.iter().fold(Vec::new(), |acc, p| self.union(&acc, &p.vars));
                let nv = vars.len();
                let mut acc: Option<Lv> = None;
                let mut offset = Dim::constant(0);
                let t = self.add(Op::Const(Scalar::Bool(true)), DType::Bool, vec![], vec![], l);
                let mut pieces = Vec::new();
                for p in &parts {
                    let ps = self.vshape(p);
                    let size = if name == "cat" { ps[axis].clone() } else { Dim::constant(1) };
                    pieces.push((p.clone(), offset.clone(), size.clone(), ps));
                    offset = offset.add(&size);
                }
                for (p, off, size, ps) in pieces.into_iter().rev() {
                    // The piece, aligned to the output's variables, placed at `off` along `axis`.
                    let base = self.align(&p, &vars, &ps, l);
                    let mut map: Vec<IExpr> = (0..nv).map(IExpr::Coord).collect();
                    for i in 0..vshape.len() {
                        if name == "stack" && i == axis {
                            continue;
                        }
                        if i == axis {
                            map.push(IExpr::sum(IExpr::Coord(nv + i), IExpr::Dim(off.neg())));
                        } else {
                            map.push(IExpr::Coord(nv + i));
                        }
                    }
                    let mut shape = self.space_shape(&vars);
                    shape.extend(vshape.iter().cloned());
                    let g = Guard {
                        expr: IExpr::sum(IExpr::Coord(nv + axis), IExpr::Dim(off.neg())),
                        lo: Dim::constant(0),
                        hi: size,
                        on_invalid: OnInvalid::Fill,
                    };
                    let view = self.add(
                        Op::Index { map, guards: vec![g.clone()], fill: Scalar::zero(d) },
                        d,
                        shape.clone(),
                        vec![base],
                        l,
                    );
                    let view = Lv { node: view, vars: vars.clone() };
                    acc = Some(match acc {
                        None => view,
                        Some(rest) => {
                            let mask = self.add(
                                Op::Index { map: vec![], guards: vec![g], fill: Scalar::Bool(false) },
                                DType::Bool,
                                shape.clone(),
                                vec![t],
                                l,
                            );
                            let mask = Lv { node: mask, vars: vars.clone() };
                            self.where_(&mask, &view, &rest, vshape, d, l)
                        }
                    });
                }
                acc.ok_or(LowerError { message: "nothing to join".into(), loc: l })?
            }
            "full" => {
                let v = self.one(&args[0])?;
                let node = self.align(&v, &v.vars.clone(), vshape, l);
                Lv { node, vars: v.vars }
            }
            "arange" => {
                let start = attrs.start.clone().unwrap_or_default();
                let len = attrs.shape[0].clone();
                let io =
                    self.add(Op::Iota { axis: 0, offset: Dim::constant(0) }, DType::I64, vec![len.clone()], vec![], l);
                let io = Lv { node: io, vars: vec![] };
                let step = self.constant(Scalar::Int(i128::from(attrs.step)), DType::I64, l);
                let s = self.add(Op::Size(start), DType::I64, vec![], vec![], l);
                let s = Lv { node: s, vars: vec![] };
                let m = self.binary(BinaryOp::Mul, &io, &step, std::slice::from_ref(&len), DType::I64, l);
                let v = self.binary(BinaryOp::Add, &m, &s, std::slice::from_ref(&len), DType::I64, l);
                self.cast(&v, d, l)
            }
            other => return Err(LowerError { message: format!("`{other}` is not lowered yet"), loc: l }),
        })
    }

    fn reshape(&mut self, x: &Lv, from: &[Dim], to: &[Dim], l: Loc) -> Lv {
        let nv = x.vars.len();
        let d = self.dtype(x);
        // Row-major linear index of the output coordinate, then the source coordinates.
        let mut lin = IExpr::c(0);
        for (i, dim) in to.iter().enumerate() {
            let stride = to[i + 1..].iter().fold(Dim::constant(1), |a, b| a.mul(b));
            let _ = dim;
            lin = IExpr::sum(lin, IExpr::product(IExpr::Coord(nv + i), IExpr::Dim(stride)));
        }
        let mut map = Vec::new();
        for (j, dim) in from.iter().enumerate() {
            let stride = from[j + 1..].iter().fold(Dim::constant(1), |a, b| a.mul(b));
            let q = if stride.is_one() {
                lin.clone()
            } else {
                IExpr::Div(Box::new(lin.clone()), Box::new(IExpr::Dim(stride)))
            };
            map.push(if j == 0 { q } else { IExpr::Mod(Box::new(q), Box::new(IExpr::Dim(dim.clone()))) });
        }
        self.value_view(x, to, map, vec![], Scalar::zero(d), d, l)
    }

    /// Converts an index expression to an affine map component, when it is one.
    fn iexpr(&self, e: &TExpr, vars: &[u32]) -> Option<IExpr> {
        Some(match &e.kind {
            TKind::Lit(Lit::Int(c)) => IExpr::c(i64::try_from(*c).ok()?),
            TKind::Dim(d) => IExpr::Dim(d.clone()),
            TKind::Var(id) if !self.ctx.last().is_some_and(|c| c.locals.contains_key(id)) => {
                let pos = vars.iter().position(|v| v == id)?;
                IExpr::sum(IExpr::Coord(pos), IExpr::Dim(self.lo.get(id).cloned().unwrap_or_default()))
            }
            TKind::Cast(DType::I64, a) => self.iexpr(a, vars)?,
            TKind::Unary(UnOp::Neg, a) => IExpr::product(IExpr::c(-1), self.iexpr(a, vars)?),
            TKind::Binary(op, a, b) => {
                let (x, y) = (self.iexpr(a, vars)?, self.iexpr(b, vars)?);
                match op {
                    BinOp::Add => IExpr::sum(x, y),
                    BinOp::Sub => IExpr::sum(x, IExpr::product(IExpr::c(-1), y)),
                    BinOp::Mul => IExpr::product(x, y),
                    BinOp::Div => IExpr::Div(Box::new(x), Box::new(y)),
                    BinOp::Rem => IExpr::Mod(Box::new(x), Box::new(y)),
                    _ => return None,
                }
            }
            _ => return None,
        })
    }

    fn space_vars_of(&self, e: &TExpr, out: &mut Vec<u32>) {
        match &e.kind {
            TKind::Var(id) if self.ext.contains_key(id) && self.space.contains(id) => out.push(*id),
            TKind::Unary(_, a) | TKind::Cast(_, a) => self.space_vars_of(a, out),
            TKind::Binary(_, a, b) => {
                self.space_vars_of(a, out);
                self.space_vars_of(b, out);
            }
            _ => {}
        }
    }

    fn index(&mut self, base: &R, items: &[TIndex], vshape: &[Dim], d: DType, l: Loc) -> Res<Lv> {
        let b = self.one(base)?;
        let bs = self.vshape(&b);
        // Output variables: the base's, plus those the affine indices use, plus data indices'.
        let mut vars = b.vars.clone();
        let mut data_lvs = Vec::new();
        for it in items {
            if let TIndex::Select(e, _) = it {
                let mut vs = Vec::new();
                self.space_vars_of(e, &mut vs);
                if self.iexpr(e, &self.order(vs.clone())).is_some() {
                    vars = self.union(&vars, &vs);
                } else {
                    let lv = self.one(e)?;
                    vars = self.union(&vars, &lv.vars);
                    data_lvs.push(lv);
                }
            }
        }
        let nv = vars.len();
        let mut map: Vec<IExpr> =
            b.vars.iter().map(|v| IExpr::Coord(vars.iter().position(|x| x == v).unwrap_or(0))).collect();
        let mut guards = Vec::new();
        let mut data_nodes = Vec::new();
        let mut oc = 0usize;
        let mut sa = 0usize;
        let mut di = 0usize;
        for it in items {
            match it {
                TIndex::New => oc += 1,
                TIndex::Slice { start, step, .. } => {
                    let e =
                        IExpr::sum(IExpr::Dim(start.clone()), IExpr::product(IExpr::c(*step), IExpr::Coord(nv + oc)));
                    // Slices are not clamped: one outside the axis is an error when sizes are bound.
                    guards.push(Guard {
                        expr: e.clone(),
                        lo: Dim::constant(0),
                        hi: bs[sa].clone(),
                        on_invalid: OnInvalid::Error,
                    });
                    map.push(e);
                    oc += 1;
                    sa += 1;
                }
                TIndex::Select(e, bounds) => {
                    let size = bs[sa].clone();
                    let comp = match self.iexpr(e, &vars) {
                        Some(ix) => {
                            let on_invalid = if *bounds == Bounds::Proven { OnInvalid::Fill } else { OnInvalid::Error };
                            guards.push(Guard { expr: ix.clone(), lo: Dim::constant(0), hi: size, on_invalid });
                            ix
                        }
                        None => {
                            let lv = data_lvs[di].clone();
                            di += 1;
                            let mut full = vshape.to_vec();
                            full.truncate(vshape.len());
                            let node = self.align(&lv, &vars, vshape, l);
                            data_nodes.push(node);
                            let ix = IExpr::Data(data_nodes.len() - 1);
                            guards.push(Guard {
                                expr: ix.clone(),
                                lo: Dim::constant(0),
                                hi: size,
                                on_invalid: OnInvalid::Error,
                            });
                            ix
                        }
                    };
                    map.push(comp);
                    sa += 1;
                }
            }
        }
        while sa < bs.len() {
            map.push(IExpr::Coord(nv + oc));
            oc += 1;
            sa += 1;
        }
        let mut shape = self.space_shape(&vars);
        shape.extend(vshape.iter().cloned());
        let mut args = vec![b.node];
        args.extend(data_nodes);
        let n = self.add(Op::Index { map, guards, fill: Scalar::zero(d) }, d, shape, args, l);
        Ok(Lv { node: n, vars })
    }

    fn lower_loop(&mut self, r: &R, var: &IVar, carried: &[(u32, R)], exit: Option<&R>, next: &[R]) -> Res<Lowered> {
        let l = loc(r);
        let space = self.order(self.space.clone());
        // Initial values, over the whole current iteration space.
        let mut inits = Vec::new();
        let mut types = Vec::new();
        for (_, init) in carried {
            let lv = self.one(init)?;
            let vs = init.ty.shape().to_vec();
            let node = self.align(&lv, &space, &vs, l);
            let dt = dtype_of(&init.ty);
            let mut shape = self.space_shape(&space);
            shape.extend(vs);
            inits.push(node);
            types.push((dt, shape));
        }
        // The body graph: inputs [iteration, carried..., captures...].
        let mut body = Ctx {
            g: Graph::default(),
            memo: HashMap::new(),
            captured: HashMap::new(),
            captures: Vec::new(),
            locals: HashMap::new(),
            first_capture_input: 1 + carried.len(),
        };
        body.g.inputs.push(("iteration".into(), DType::I64, vec![]));
        let it = body.g.add(Op::Input(0), DType::I64, vec![], vec![], l);
        body.locals.insert(var.id, Lv { node: it, vars: vec![] });
        for (k, ((id, _), (dt, shape))) in carried.iter().zip(&types).enumerate() {
            body.g.inputs.push((format!("carried{k}"), *dt, shape.clone()));
            let n = body.g.add(Op::Input(1 + k), *dt, shape.clone(), vec![], l);
            body.locals.insert(*id, Lv { node: n, vars: space.clone() });
        }
        self.ctx.push(body);
        let result = (|| -> Res<()> {
            for (k, nx) in next.iter().enumerate() {
                let lv = self.one(nx)?;
                let node = self.align(&lv, &space, nx.ty.shape(), loc(nx));
                self.g().outputs.push((format!("next{k}"), node));
            }
            if let Some(c) = exit {
                // One exit mask per carried value, broadcast to its shape.
                let lv = self.one(c)?;
                for (k, (_, nx)) in carried.iter().enumerate() {
                    let node = self.align(&lv, &space, nx.ty.shape(), loc(c));
                    self.g().outputs.push((format!("exit{k}"), node));
                }
            }
            Ok(())
        })();
        let body = self.ctx.pop().expect("the loop body context");
        result?;
        let mut args = inits;
        args.extend(body.captures.iter().map(|(_, lv)| lv.node));
        let first = types.first().cloned().unwrap_or((DType::I32, vec![]));
        let node = self.add(
            Op::Loop {
                lo: var.lo.clone(),
                trip: var.extent.clone(),
                carried: carried.len(),
                has_exit: exit.is_some(),
                body: Box::new(body.g),
            },
            first.0,
            first.1,
            args,
            l,
        );
        let mut outs = Vec::new();
        for (k, (dt, shape)) in types.into_iter().enumerate() {
            let p = self.add(Op::Proj(k), dt, shape, vec![node], l);
            outs.push(Lowered::One(Lv { node: p, vars: space.clone() }));
        }
        Ok(if outs.len() == 1 { outs.remove(0) } else { Lowered::Many(outs) })
    }
}
