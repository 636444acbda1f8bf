//! Typing rules of the builtin functions (docs/language.md has the table).

use crate::ast::{self, CallArgs, ExprKind, Span};
use crate::check::{Checker, Reported, as_dim};
use crate::diag::Code;
use crate::dims::Dim;
use crate::tast::*;
use crate::types::{DType, Elem, Ty, shape_str};

type Res<T> = Result<T, Reported>;

const UNARY_FLOAT: &[&str] =
    &["exp", "exp2", "log", "log2", "sqrt", "rsqrt", "sin", "cos", "tanh", "erf", "floor", "ceil", "round"];
const REDUCE: &[&str] = &["sum", "prod", "max", "min", "mean", "argmax", "argmin"];

/// The signature of a builtin: positional parameter names, keyword names, and whether extra
/// positional arguments are allowed (cat, stack).
fn signature(name: &str, npos: usize) -> (&'static [&'static str], &'static [&'static str], bool) {
    match name {
        n if UNARY_FLOAT.contains(&n) || n == "abs" => (&["x"], &[], false),
        "min" | "max" if npos == 2 => (&["a", "b"], &[], false),
        n if REDUCE.contains(&n) => (&["x"], &["axis", "keep"], false),
        "pow" => (&["a", "b"], &[], false),
        "fma" => (&["a", "b", "c"], &[], false),
        "where" => (&["cond", "a", "b"], &[], false),
        "cumsum" | "cumprod" => (&["x"], &["axis"], false),
        "reshape" | "expand" | "broadcast_to" => (&["x", "shape"], &[], false),
        "permute" => (&["x", "perm"], &[], false),
        "transpose" => (&["x", "perm"], &["perm"], false),
        "flip" => (&["x"], &["axis"], false),
        "pad" => (&["x", "widths"], &["value"], false),
        "cat" | "stack" => (&[], &["axis"], true),
        "zeros" | "ones" => (&["shape"], &["dtype"], false),
        "full" => (&["shape", "value"], &["dtype"], false),
        "arange" => (&["start", "stop", "step"], &["dtype"], false),
        "scatter_add" => (&["values", "indices", "size"], &[], false),
        _ => (&[], &[], false),
    }
}

fn min_positional(name: &str) -> usize {
    match name {
        "transpose" | "arange" => 1,
        "cat" | "stack" => 1,
        n => signature(n, 1).0.len(),
    }
}

struct Bound<'a> {
    pos: Vec<&'a ast::Expr>,
    kw: Vec<(&'a ast::Ident, &'a ast::Expr)>,
}

impl Bound<'_> {
    fn kw(&self, k: &str) -> Option<&ast::Expr> {
        self.kw.iter().find(|(n, _)| n.name == k).map(|(_, e)| *e)
    }
}

impl Checker<'_> {
    pub(crate) fn builtin(&mut self, f: &ast::Ident, args: &CallArgs, span: Span, expected: Option<&Ty>) -> Res<R> {
        let name: &'static str = crate::load::BUILTINS.iter().copied().find(|b| *b == f.name).unwrap_or("sum");
        let list = match args {
            CallArgs::Reduce(bs, body) => {
                if !matches!(name, "sum" | "prod" | "max" | "min") {
                    return Err(self.err_at(
                        Code::ArgCount,
                        span,
                        format!("`{name}` does not take the range form"),
                        "only sum, prod, max and min reduce over ranges",
                        Some("write `sum(r in 0..k: ...)`, or call it with arguments"),
                    ));
                }
                return self.reduce_range(name, bs, body, span);
            }
            CallArgs::List(l) => l,
        };
        let npos = list.iter().filter(|a| a.name.is_none()).count();
        let (pos_names, kw_names, variadic) = signature(name, npos);
        let mut b = Bound { pos: Vec::new(), kw: Vec::new() };
        for a in list {
            match &a.name {
                None => {
                    if !variadic && b.pos.len() >= pos_names.len() {
                        let mut help = format!("its arguments are ({})", describe(pos_names, kw_names));
                        if pos_names.contains(&"shape") {
                            // numpy's habit: `zeros(v, d)` for `zeros((v, d))`.
                            help = format!("{help}; a shape of several dimensions is one tuple, as in `zeros((a, b))`");
                        }
                        return Err(self.err_at(
                            Code::ArgCount,
                            a.value.span,
                            format!(
                                "`{name}` takes at most {}",
                                crate::check::plural(pos_names.len(), "positional argument")
                            ),
                            "extra argument",
                            Some(&help),
                        ));
                    }
                    b.pos.push(&a.value);
                }
                Some(k) => {
                    if !kw_names.contains(&k.name.as_str()) {
                        let mut help = format!("`{name}` takes ({})", describe(pos_names, kw_names));
                        if let Some(s) = crate::diag::suggest(&k.name, kw_names.iter().copied()) {
                            help = format!("did you mean `{s}`?");
                        }
                        return Err(self.err_at(
                            Code::UnknownKeyword,
                            k.span,
                            format!("`{name}` has no keyword `{}`", k.name),
                            "unknown keyword",
                            Some(&help),
                        ));
                    }
                    if b.kw.iter().any(|(n, _)| n.name == k.name) {
                        return Err(self.err_at(
                            Code::DuplicateKeyword,
                            k.span,
                            format!("`{}` is given twice", k.name),
                            "given again here",
                            None,
                        ));
                    }
                    b.kw.push((k, &a.value));
                }
            }
        }
        if b.pos.len() < min_positional(name) {
            let missing = pos_names.get(b.pos.len()).copied().unwrap_or("arrays");
            return Err(self.err_at(
                Code::MissingArg,
                span,
                format!("missing argument `{missing}` of `{name}`"),
                "not enough arguments",
                Some(&format!("`{name}` takes ({})", describe(pos_names, kw_names))),
            ));
        }
        match name {
            n if UNARY_FLOAT.contains(&n) => {
                let x = self.elab_arr(b.pos[0])?;
                let x = self.need_float(name, x)?;
                let ty = x.ty.clone();
                // Exact operations on constants fold; transcendentals never do (they must go
                // through the one shared decomposition).
                if let TKind::Lit(Lit::Float(v)) = x.kind {
                    let folded = match name {
                        "floor" => Some(v.floor()),
                        "ceil" => Some(v.ceil()),
                        "round" => Some(v.round_ties_even()),
                        _ => None,
                    };
                    if let Some(f) = folded {
                        return Ok(self.mk_pub(TKind::Lit(Lit::Float(f)), ty, span));
                    }
                }
                Ok(self.mk_pub(TKind::Builtin(name, vec![x], Attrs::default()), ty, span))
            }
            "abs" => {
                let x = self.elab_arr(b.pos[0])?;
                let e = self.elem_pub(&x)?;
                if e.is_bool() {
                    return Err(self.err_at(
                        Code::OpNotSupported,
                        x.span,
                        "`abs` is not defined for bool",
                        "bool",
                        None,
                    ));
                }
                let ty = x.ty.clone();
                Ok(self.mk_pub(TKind::Builtin(name, vec![x], Attrs::default()), ty, span))
            }
            "min" | "max" if b.pos.len() == 2 => {
                let x = self.elab_arr(b.pos[0])?;
                let y = self.elab_arr(b.pos[1])?;
                let (x, y, e) = self.unify_pub(x, y, span)?;
                let shape = self.broadcast_pub(&x, &y, span)?;
                let max = name == "max";
                match (&x.kind, &y.kind) {
                    // NaN propagates: either operand NaN gives NaN.
                    (TKind::Lit(Lit::Float(a)), TKind::Lit(Lit::Float(c))) => {
                        let v =
                            if max { tk_ir::graph::interp::fmax(*a, *c) } else { tk_ir::graph::interp::fmin(*a, *c) };
                        return Ok(self.mk_pub(TKind::Lit(Lit::Float(v)), Ty::Arr(e, shape), span));
                    }
                    (TKind::Lit(Lit::Int(a)), TKind::Lit(Lit::Int(c))) => {
                        let v = if max { *a.max(c) } else { *a.min(c) };
                        return Ok(self.mk_pub(TKind::Lit(Lit::Int(v)), Ty::Arr(e, shape), span));
                    }
                    _ => {}
                }
                Ok(self.mk_pub(TKind::Builtin(name, vec![x, y], Attrs::default()), Ty::Arr(e, shape), span))
            }
            "pow" => {
                let x = self.elab_arr(b.pos[0])?;
                let y = self.elab_arr(b.pos[1])?;
                let (x, y, _) = self.unify_pub(x, y, span)?;
                let x = self.need_float(name, x)?;
                let y = match self.elem_pub(&x)? {
                    Elem::D(d) => self.coerce_pub(y, d, span)?,
                    _ => y,
                };
                let shape = self.broadcast_pub(&x, &y, span)?;
                let e = self.elem_pub(&x)?;
                Ok(self.mk_pub(TKind::Builtin(name, vec![x, y], Attrs::default()), Ty::Arr(e, shape), span))
            }
            "fma" => {
                // `a * b + c` rounded once, in the dtype of the three.
                let x = self.elab_arr(b.pos[0])?;
                let y = self.elab_arr(b.pos[1])?;
                let z = self.elab_arr(b.pos[2])?;
                let (x, y, _) = self.unify_pub(x, y, span)?;
                let (x, z, _) = self.unify_pub(x, z, span)?;
                let x = self.need_float(name, x)?;
                let (y, z) = match self.elem_pub(&x)? {
                    Elem::D(d) => (self.coerce_pub(y, d, span)?, self.coerce_pub(z, d, span)?),
                    _ => (y, z),
                };
                let s1 = self.broadcast_pub(&x, &y, span)?;
                let shape = self.broadcast_shapes_pub(&s1, z.shape_of(), span)?;
                let e = self.elem_pub(&x)?;
                Ok(self.mk_pub(TKind::Builtin(name, vec![x, y, z], Attrs::default()), Ty::Arr(e, shape), span))
            }
            "where" => self.where_(&b, span),
            "scatter_add" => self.scatter_add(&b, span),
            n if REDUCE.contains(&n) => self.reduce(name, &b, span),
            "cumsum" | "cumprod" => {
                let x = self.elab_arr(b.pos[0])?;
                let e = self.elem_pub(&x)?;
                let rank = x.shape_of().len();
                let axis = match b.kw("axis") {
                    Some(a) => self.axes_arg(a, rank, false)?[0],
                    None if rank == 0 => {
                        return Err(self.err_at(
                            Code::AxisOutOfRange,
                            x.span,
                            format!("`{name}` needs an array of rank 1 or more"),
                            "a scalar",
                            None,
                        ));
                    }
                    None => rank - 1,
                };
                let x = self.weak_default(x)?;
                let d = match self.elem_pub(&x)? {
                    Elem::D(d) => d.sum_result(),
                    _ => e.default_dtype(),
                };
                let shape = x.shape_of().to_vec();
                Ok(self.mk_pub(
                    TKind::Builtin(name, vec![x], Attrs { axes: vec![axis], ..Attrs::default() }),
                    Ty::Arr(Elem::D(d), shape),
                    span,
                ))
            }
            "reshape" => {
                let x = self.elab_arr(b.pos[0])?;
                let shape = self.shape_arg(b.pos[1], true)?;
                let total: Dim = x.shape_of().iter().fold(Dim::constant(1), |a, d| a.mul(d));
                let known: Dim = shape.iter().flatten().fold(Dim::constant(1), |a, d| a.mul(d));
                let holes = shape.iter().filter(|d| d.is_none()).count();
                let shape: Vec<Dim> = if holes == 1 {
                    let Some(fill) = total.exact_div(&known) else {
                        return Err(self.err_at(
                            Code::ReshapeCount,
                            b.pos[1].span,
                            format!("cannot infer `-1`: {} elements do not divide into {}", total, known),
                            "the other dimensions do not divide the element count",
                            Some("write every dimension explicitly"),
                        ));
                    };
                    shape.into_iter().map(|d| d.unwrap_or_else(|| fill.clone())).collect()
                } else {
                    shape.into_iter().flatten().collect()
                };
                let new_total = shape.iter().fold(Dim::constant(1), |a, d| a.mul(d));
                if new_total != total {
                    return Err(self.err_at(
                        Code::ReshapeCount,
                        b.pos[1].span,
                        format!("reshape of {} elements into {} elements", total, new_total),
                        &format!(
                            "shape {} has {new_total} elements, the input {} has {total}",
                            shape_str(&shape),
                            shape_str(x.shape_of())
                        ),
                        Some(&if format!("{total}{new_total}").contains('/') {
                            format!(
                                "the counts must be equal for every size, and `{new_total}` equals `{total}` only when \
                                 its division is exact, which tk cannot prove: give the quotient its own dimension \
                                 (declare the input with it, e.g. `f32[t, 3 * H * dh]` for `d / H`, and reshape to \
                                 `(t, 3, H, dh)`)"
                            )
                        } else {
                            format!(
                                "the number of elements must stay the same for every size: `{total}` and \
                                 `{new_total}` differ; write the new shape from the input's dimensions"
                            )
                        }),
                    ));
                }
                let e = self.elem_pub(&x)?;
                Ok(self.mk_pub(
                    TKind::Builtin(name, vec![x], Attrs { shape: shape.clone(), ..Attrs::default() }),
                    Ty::Arr(e, shape),
                    span,
                ))
            }
            "permute" | "transpose" => {
                let x = self.elab_arr(b.pos[0])?;
                let rank = x.shape_of().len();
                let perm_e = b.pos.get(1).copied().or_else(|| b.kw("perm"));
                let perm: Vec<usize> = match perm_e {
                    None => (0..rank).rev().collect(),
                    Some(p) => {
                        let v = self.axes_arg_dup(p, rank, true, false)?;
                        let mut sorted = v.clone();
                        sorted.sort();
                        if v.len() != rank || sorted != (0..rank).collect::<Vec<_>>() {
                            return Err(self.err_at(
                                Code::BadPermutation,
                                p.span,
                                format!("({}) is not a permutation of the {rank} axes", join(&v)),
                                "each axis must appear exactly once",
                                Some(&format!(
                                    "write a tuple of {rank} distinct axes from 0 to {}, e.g. `({})` reverses them",
                                    rank.saturating_sub(1),
                                    join(&(0..rank).rev().collect::<Vec<_>>())
                                )),
                            ));
                        }
                        v
                    }
                };
                let shape: Vec<Dim> = perm.iter().map(|&i| x.shape_of()[i].clone()).collect();
                let e = self.elem_pub(&x)?;
                Ok(self.mk_pub(
                    TKind::Builtin("permute", vec![x], Attrs { perm, ..Attrs::default() }),
                    Ty::Arr(e, shape),
                    span,
                ))
            }
            "expand" | "broadcast_to" => {
                let x = self.elab_arr(b.pos[0])?;
                let shape: Vec<Dim> = self.shape_arg(b.pos[1], false)?.into_iter().flatten().collect();
                let got = self.broadcast_shapes_pub(x.shape_of(), &shape, span)?;
                if got != shape {
                    return Err(self.err_at(
                        Code::Broadcast,
                        span,
                        format!("cannot broadcast {} to {}", shape_str(x.shape_of()), shape_str(&shape)),
                        "the result would have another shape",
                        None,
                    ));
                }
                let e = self.elem_pub(&x)?;
                Ok(self.mk_pub(
                    TKind::Builtin("expand", vec![x], Attrs { shape: shape.clone(), ..Attrs::default() }),
                    Ty::Arr(e, shape),
                    span,
                ))
            }
            "flip" => {
                let x = self.elab_arr(b.pos[0])?;
                let rank = x.shape_of().len();
                let axes = match b.kw("axis") {
                    Some(a) => self.axes_arg(a, rank, true)?,
                    None => (0..rank).collect(),
                };
                let ty = x.ty.clone();
                Ok(self.mk_pub(TKind::Builtin(name, vec![x], Attrs { axes, ..Attrs::default() }), ty, span))
            }
            "pad" => {
                let x = self.elab_arr(b.pos[0])?;
                let rank = x.shape_of().len();
                let pads = self.pads_arg(b.pos[1], rank)?;
                let x = self.weak_default(x)?;
                let e = self.elem_pub(&x)?;
                let value = match b.kw("value") {
                    Some(v) => {
                        let v = self.elab_arr(v)?;
                        if !matches!(v.kind, TKind::Lit(_)) {
                            return Err(self.err_at(
                                Code::NotConstant,
                                v.span,
                                "the padding value must be a constant",
                                &format!("this is a run-time value of type {}", v.ty),
                                Some("use a literal or a `const`; for a run-time value, pad and then `where(...)`"),
                            ));
                        }
                        if !v.shape_of().is_empty() {
                            return Err(self.err_at(
                                Code::BadPad,
                                v.span,
                                "the padding value must be a scalar",
                                "an array",
                                None,
                            ));
                        }
                        match e {
                            Elem::D(d) => self.coerce_pub(v, d, span)?,
                            _ => v,
                        }
                    }
                    None => {
                        let lit = if e.is_float() {
                            Lit::Float(0.0)
                        } else if e.is_bool() {
                            Lit::Bool(false)
                        } else {
                            Lit::Int(0)
                        };
                        self.mk_pub(TKind::Lit(lit), Ty::scalar(e), span)
                    }
                };
                if self.elem_pub(&value)? != e && !self.elem_pub(&value)?.is_weak() {
                    let ve = self.elem_pub(&value)?;
                    return Err(self.err_at(
                        Code::DtypeMismatch,
                        value.span,
                        format!("padding value is {ve} but the array is {e}"),
                        "mismatched dtype",
                        Some(&format!("cast it with `as {e}`")),
                    ));
                }
                let shape: Vec<Dim> = x.shape_of().iter().zip(&pads).map(|(d, (a, b))| d.add(a).add(b)).collect();
                Ok(self.mk_pub(
                    TKind::Builtin(name, vec![x, value], Attrs { pads, ..Attrs::default() }),
                    Ty::Arr(e, shape),
                    span,
                ))
            }
            "cat" | "stack" => {
                let mut xs = Vec::new();
                for p in &b.pos {
                    xs.push(self.elab_arr(p)?);
                }
                let mut e = self.elem_pub(&xs[0])?;
                for i in 1..xs.len() {
                    let (a, bb, e2) = self.unify_pub(xs[0].clone(), xs[i].clone(), span)?;
                    xs[0] = a;
                    xs[i] = bb;
                    e = e2;
                }
                if e.is_weak() {
                    e = Elem::D(e.default_dtype());
                }
                if let Elem::D(d) = e {
                    for x in xs.iter_mut() {
                        *x = self.coerce_pub(x.clone(), d, span)?;
                    }
                }
                let s0 = xs[0].shape_of().to_vec();
                let rank = if name == "cat" { s0.len() } else { s0.len() + 1 };
                if name == "cat" && rank == 0 {
                    return Err(self.err_at(
                        Code::JoinShape,
                        xs[0].span,
                        "`cat` joins arrays of rank 1 or more",
                        "a scalar",
                        Some("use `stack` to join scalars"),
                    ));
                }
                let axis = match b.kw("axis") {
                    Some(a) => self.axes_arg(a, rank, false)?[0],
                    None => 0,
                };
                let mut total = Dim::constant(0);
                for x in &xs {
                    let s = x.shape_of();
                    let same = if name == "cat" {
                        s.len() == s0.len() && s.iter().zip(&s0).enumerate().all(|(i, (a, b))| i == axis || a == b)
                    } else {
                        s == s0.as_slice()
                    };
                    if !same {
                        let what = if name == "cat" {
                            "all dimensions but the joined axis must be equal"
                        } else {
                            "stacked arrays must have equal shapes"
                        };
                        return Err(self.err_at(
                            Code::JoinShape,
                            x.span,
                            format!("`{name}` of arrays with shapes {} and {}", shape_str(&s0), shape_str(s)),
                            &format!("shape {}", shape_str(s)),
                            Some(what),
                        ));
                    }
                    if name == "cat" {
                        total = total.add(&s[axis]);
                    }
                }
                let mut shape = s0.clone();
                if name == "cat" {
                    shape[axis] = total;
                } else {
                    shape.insert(axis, Dim::constant(xs.len() as i64));
                }
                Ok(self.mk_pub(
                    TKind::Builtin(name, xs, Attrs { axes: vec![axis], ..Attrs::default() }),
                    Ty::Arr(e, shape),
                    span,
                ))
            }
            "zeros" | "ones" | "full" => {
                let shape: Vec<Dim> = self.shape_arg(b.pos[0], false)?.into_iter().flatten().collect();
                let dtype = self.dtype_kw(&b)?;
                let value = if name == "full" {
                    let v = self.elab_arr(b.pos[1])?;
                    if !v.shape_of().is_empty() {
                        return Err(self.err_at(
                            Code::BadShape,
                            v.span,
                            "the fill value must be a scalar",
                            "an array",
                            Some("use `expand(x, shape)` to broadcast an array"),
                        ));
                    }
                    let d = match (dtype, self.elem_pub(&v)?) {
                        (Some(d), _) => d,
                        (None, Elem::D(d)) => d,
                        (None, w) => match expected.and_then(|t| t.elem()) {
                            Some(Elem::D(d)) => d,
                            _ => w.default_dtype(),
                        },
                    };
                    if let (Some(d), Elem::D(vd)) = (dtype, self.elem_pub(&v)?)
                        && d != vd
                    {
                        return Err(self.err_at(
                            Code::DtypeMismatch,
                            v.span,
                            format!("fill value is {vd} but `dtype:` is {d}"),
                            "mismatched dtype",
                            Some(&format!("cast it with `as {d}`")),
                        ));
                    }
                    self.coerce_pub(v, d, span)?
                } else {
                    let d = dtype
                        .or(match expected.and_then(|t| t.elem()) {
                            Some(Elem::D(d)) => Some(d),
                            _ => None,
                        })
                        .unwrap_or(DType::F32);
                    let lit = if d.is_float() {
                        Lit::Float(if name == "ones" { 1.0 } else { 0.0 })
                    } else if d == DType::Bool {
                        Lit::Bool(name == "ones")
                    } else {
                        Lit::Int(i128::from(name == "ones"))
                    };
                    self.mk_pub(TKind::Lit(lit), Ty::scalar(Elem::D(d)), span)
                };
                let e = self.elem_pub(&value)?;
                Ok(self.mk_pub(
                    TKind::Builtin("full", vec![value], Attrs { shape: shape.clone(), ..Attrs::default() }),
                    Ty::Arr(e, shape),
                    span,
                ))
            }
            "arange" => {
                let mut ds = Vec::new();
                for p in &b.pos {
                    let v = self.elab_arr(p)?;
                    match as_dim(&v) {
                        Some(d) => ds.push((d, p.span)),
                        None => {
                            return Err(self.err_at(
                                Code::NotConstant,
                                p.span,
                                "`arange` bounds must be known before the kernel runs",
                                &format!("this is a run-time value of type {}", v.ty),
                                Some("use integer constants and dimensions"),
                            ));
                        }
                    }
                }
                let (start, stop, step) = match ds.len() {
                    1 => (Dim::constant(0), ds[0].0.clone(), 1),
                    2 => (ds[0].0.clone(), ds[1].0.clone(), 1),
                    _ => match ds[2].0.as_const() {
                        Some(s) if s > 0 => (ds[0].0.clone(), ds[1].0.clone(), s),
                        _ => {
                            return Err(self.err_at(
                                Code::BadShape,
                                ds[2].1,
                                "`arange` step must be a positive integer constant",
                                "not a positive constant",
                                None,
                            ));
                        }
                    },
                };
                let Some(len) = stop.sub(&start).add_const(step - 1).floor_div(step) else {
                    return Err(Reported);
                };
                if len.as_const().is_some_and(|c| c < 0) {
                    return Err(self.err_at(
                        Code::BadShape,
                        span,
                        "`arange` with stop before start",
                        "negative length",
                        None,
                    ));
                }
                let d = self.dtype_kw(&b)?.unwrap_or(DType::I32);
                if d == DType::Bool {
                    return Err(self.err_at(
                        Code::OpNotSupported,
                        span,
                        "`arange` of bool",
                        "bool is not a number type",
                        None,
                    ));
                }
                Ok(self.mk_pub(
                    TKind::Builtin(
                        name,
                        vec![],
                        Attrs { shape: vec![len.clone()], start: Some(start), step, ..Attrs::default() },
                    ),
                    Ty::Arr(Elem::D(d), vec![len]),
                    span,
                ))
            }
            _ => Err(self.err_at(
                Code::UnknownFunction,
                f.span,
                format!("unknown builtin `{name}`"),
                "not a builtin",
                None,
            )),
        }
    }

    fn where_(&mut self, b: &Bound<'_>, span: Span) -> Res<R> {
        let c = self.elab_arr(b.pos[0])?;
        if self.elem_pub(&c)? != Elem::D(DType::Bool) {
            return Err(self.err_at(
                Code::NotBool,
                c.span,
                format!("the condition of `where` must be bool, found {}", c.ty),
                "not bool",
                Some("compare to get a bool: `where(x > 0.0, a, b)`"),
            ));
        }
        let pos = self.facts_for(&c, false);
        let x = self.with_facts(pos, |s| s.elab_arr(b.pos[1]))?;
        let neg = self.facts_for(&c, true);
        let y = self.with_facts(neg, |s| s.elab_arr(b.pos[2]))?;
        let (x, y, e) = self.unify_pub(x, y, span)?;
        let s1 = self.broadcast_pub(&x, &y, span)?;
        let shape = self.broadcast_shapes_pub(c.shape_of(), &s1, span)?;
        Ok(self.mk_pub(TKind::Builtin("where", vec![c, x, y], Attrs::default()), Ty::Arr(e, shape), span))
    }

    /// `scatter_add(values, indices, size)`: row k of `values` (its first axis) is added into row
    /// `indices[k]` of a result with `size` rows; other indices are dropped. Each result row is
    /// the sum, in k order, of the rows sent to it (the order a `sum` reduces in).
    fn scatter_add(&mut self, b: &Bound<'_>, span: Span) -> Res<R> {
        let v = self.elab_arr(b.pos[0])?;
        let v = self.weak_default(v)?;
        let idx = self.elab_arr(b.pos[1])?;
        let size: Vec<Dim> = self.shape_arg(b.pos[2], false)?.into_iter().flatten().collect();
        let [size] = size.as_slice() else {
            return Err(self.err_at(
                Code::BadShape,
                b.pos[2].span,
                "`size` of `scatter_add` is one dimension, the number of result rows",
                "not one size",
                Some("e.g. `scatter_add(values, ids, nb)`"),
            ));
        };
        let vs = v.shape_of().to_vec();
        let Some(rows) = vs.first().cloned() else {
            return Err(self.err_at(
                Code::AxisOutOfRange,
                v.span,
                "`scatter_add` needs values of rank 1 or more (a row per index)",
                "a scalar",
                None,
            ));
        };
        let Elem::D(d) = self.elem_pub(&v)? else { return Err(Reported) };
        if d == DType::Bool {
            return Err(self.err_at(
                Code::OpNotSupported,
                v.span,
                "`scatter_add` adds numbers, not bools",
                "bool values",
                Some("cast them: `(mask as i32)` counts the true ones"),
            ));
        }
        let ie = self.elem_pub(&idx)?;
        if !ie.is_int() {
            return Err(self.err_at(
                Code::IndexNotInt,
                idx.span,
                format!("the indices of `scatter_add` must be integers, found {}", idx.ty),
                "not integers",
                None,
            ));
        }
        let idx = self.weak_default(idx)?;
        if idx.shape_of() != std::slice::from_ref(&rows) {
            return Err(self.err_at(
                Code::Broadcast,
                idx.span,
                format!(
                    "`scatter_add` takes one index per row of `values`: `values` has shape {}, the indices {}",
                    shape_str(&vs),
                    shape_str(idx.shape_of())
                ),
                "one index per row needed",
                None,
            ));
        }
        let rd = d.sum_result();
        let mut shape = vec![size.clone()];
        shape.extend(vs[1..].iter().cloned());
        let attrs = Attrs { shape: vec![size.clone()], ..Attrs::default() };
        Ok(self.mk_pub(TKind::Builtin("scatter_add", vec![v, idx], attrs), Ty::Arr(Elem::D(rd), shape), span))
    }

    fn reduce(&mut self, name: &'static str, b: &Bound<'_>, span: Span) -> Res<R> {
        let x = self.elab_arr(b.pos[0])?;
        let x = self.weak_default(x)?;
        let rank = x.shape_of().len();
        let arg = matches!(name, "argmax" | "argmin");
        let axes: Vec<usize> = match b.kw("axis") {
            Some(a) => {
                let v = self.axes_arg(a, rank, true)?;
                if arg && v.len() != 1 {
                    return Err(self.err_at(
                        Code::AxisOutOfRange,
                        a.span,
                        format!("`{name}` takes a single axis"),
                        "several axes",
                        Some("omit `axis:` to get the index into the flattened array"),
                    ));
                }
                v
            }
            None => (0..rank).collect(),
        };
        let keep = match b.kw("keep") {
            None => false,
            Some(k) => {
                let v = self.elab_arr(k)?;
                match v.kind {
                    TKind::Lit(Lit::Bool(t)) => t,
                    TKind::Lit(_) => {
                        return Err(self.err_at(
                            Code::NotConstant,
                            k.span,
                            "`keep:` must be `true` or `false`",
                            &format!("this is {}", v.ty),
                            None,
                        ));
                    }
                    _ => {
                        return Err(self.err_at(
                            Code::NotConstant,
                            k.span,
                            "`keep:` must be a compile-time constant",
                            &format!("this is a run-time value of type {}", v.ty),
                            Some("write `keep: true` or `keep: false`"),
                        ));
                    }
                }
            }
        };
        let Elem::D(d) = self.elem_pub(&x)? else { return Err(Reported) };
        let rd = match name {
            "argmax" | "argmin" => DType::I64,
            "sum" | "prod" => d.sum_result(),
            "mean" if !d.is_float() => DType::F32,
            _ => d,
        };
        if d == DType::Bool && matches!(name, "max" | "min" | "mean" | "argmax" | "argmin") {
            return Err(self.err_at(
                Code::OpNotSupported,
                x.span,
                format!("`{name}` is not defined for bool"),
                "bool array",
                Some("cast it first: `x as i32`"),
            ));
        }
        let mut shape = Vec::new();
        for (i, dim) in x.shape_of().iter().enumerate() {
            if axes.contains(&i) {
                if keep {
                    shape.push(Dim::constant(1));
                }
            } else {
                shape.push(dim.clone());
            }
        }
        Ok(self.mk_pub(
            TKind::Builtin(name, vec![x], Attrs { axes, keep, ..Attrs::default() }),
            Ty::Arr(Elem::D(rd), shape),
            span,
        ))
    }

    fn reduce_range(&mut self, name: &'static str, bs: &[ast::Binder], body: &ast::Expr, span: Span) -> Res<R> {
        self.reduce_range_pub(name, bs, body, span)
    }

    fn need_float(&mut self, name: &str, x: R) -> Res<R> {
        match self.elem_pub(&x)? {
            Elem::FloatLit => {
                let s = x.span;
                self.coerce_pub(x, DType::F32, s)
            }
            e if e.is_float() => Ok(x),
            e => {
                let help = match self.snippet(x.span) {
                    Some(t) if t.chars().all(|c| c.is_alphanumeric() || c == '_') => {
                        format!("convert it first: `{name}({t} as f32)`")
                    }
                    Some(t) => format!("convert it first: `{name}(({t}) as f32)`"),
                    None => "convert it first with `as f32`".to_string(),
                };
                Err(self.err_at(
                    Code::NeedsFloat,
                    x.span,
                    format!("`{name}` needs a float argument, found {e}"),
                    &format!("this is {e}"),
                    Some(&help),
                ))
            }
        }
    }

    fn weak_default(&mut self, x: R) -> Res<R> {
        match self.elem_pub(&x)? {
            w @ (Elem::IntLit | Elem::FloatLit) => {
                let s = x.span;
                self.coerce_pub(x, w.default_dtype(), s)
            }
            _ => Ok(x),
        }
    }

    fn dtype_kw(&mut self, b: &Bound<'_>) -> Res<Option<DType>> {
        match b.kw("dtype") {
            None => Ok(None),
            Some(e) => match &e.kind {
                ExprKind::Name(n) => match DType::parse(&n.name) {
                    Some(d) => Ok(Some(d)),
                    None => {
                        let n = n.clone();
                        self.dtype_of_pub(&n).map(Some)
                    }
                },
                _ => Err(self.err_at(
                    Code::UnknownType,
                    e.span,
                    "`dtype:` takes a dtype name",
                    "not a dtype",
                    Some("write e.g. `dtype: f32`"),
                )),
            },
        }
    }

    /// Axis arguments: an int or a tuple of ints, negative counting from the end.
    fn axes_arg(&mut self, e: &ast::Expr, rank: usize, allow_many: bool) -> Res<Vec<usize>> {
        self.axes_arg_dup(e, rank, allow_many, true)
    }

    fn axes_arg_dup(&mut self, e: &ast::Expr, rank: usize, allow_many: bool, reject_dup: bool) -> Res<Vec<usize>> {
        let v = self.elab(e, None).map_err(|_| Reported)?;
        let items: Vec<R> = match &v.kind {
            TKind::Tuple(xs) if allow_many => xs.clone(),
            _ => vec![v.clone()],
        };
        let mut out = Vec::new();
        for it in items {
            let TKind::Lit(Lit::Int(a)) = it.kind else {
                return Err(self.err_at(
                    Code::NotConstant,
                    it.span,
                    "an axis must be an integer constant",
                    &format!("this is {}", it.ty),
                    Some("axes are known at compile time: `axis: 1`, `axis: (0, 1)`, `axis: -1`"),
                ));
            };
            let r = rank as i128;
            if a < -r || a >= r {
                return Err(self.err_at(
                    Code::AxisOutOfRange,
                    it.span,
                    format!("axis {a} is out of range for an array of rank {rank}"),
                    &format!("valid axes are {} ..= {}", -r, r - 1),
                    None,
                ));
            }
            let ax = if a < 0 { (a + r) as usize } else { a as usize };
            if reject_dup && out.contains(&ax) {
                return Err(self.err_at(
                    Code::DuplicateAxis,
                    it.span,
                    format!("axis {ax} is given twice"),
                    "repeated axis",
                    None,
                ));
            }
            out.push(ax);
        }
        Ok(out)
    }

    /// A shape: a tuple of dimension expressions, or one dimension. `-1` (one hole) when allowed.
    fn shape_arg(&mut self, e: &ast::Expr, allow_hole: bool) -> Res<Vec<Option<Dim>>> {
        let v = self.elab(e, None)?;
        let items: Vec<R> = match &v.kind {
            TKind::Tuple(xs) => xs.clone(),
            _ => vec![v.clone()],
        };
        let mut out = Vec::new();
        let mut holes = 0;
        for it in items {
            if let TKind::Lit(Lit::Int(-1)) = it.kind
                && allow_hole
            {
                holes += 1;
                if holes > 1 {
                    return Err(self.err_at(
                        Code::BadShape,
                        it.span,
                        "only one dimension can be `-1`",
                        "second `-1`",
                        None,
                    ));
                }
                out.push(None);
                continue;
            }
            match as_dim(&it) {
                Some(d) if d.as_const().is_none_or(|c| c >= 0) => out.push(Some(d)),
                Some(d) => {
                    return Err(self.err_at(
                        Code::BadShape,
                        it.span,
                        format!("negative dimension {d}"),
                        "dimensions are sizes",
                        if allow_hole { Some("use `-1` for the one inferred dimension") } else { None },
                    ));
                }
                None => {
                    return Err(self.err_at(
                        Code::BadShape,
                        it.span,
                        "a shape is made of dimensions known before the kernel runs",
                        &format!("this is a run-time value of type {}", it.ty),
                        Some("use integer constants and dimension names: `(n, 2 * m)`"),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn pads_arg(&mut self, e: &ast::Expr, rank: usize) -> Res<Vec<(Dim, Dim)>> {
        let v = self.elab(e, None)?;
        let pairs: Vec<R> = match &v.kind {
            TKind::Tuple(xs) if xs.iter().all(|x| matches!(x.kind, TKind::Tuple(_))) => xs.clone(),
            TKind::Tuple(_) => vec![v.clone()],
            _ => vec![],
        };
        if pairs.len() != rank {
            return Err(self.err_at(
                Code::BadPad,
                e.span,
                format!("`pad` needs one (before, after) pair per axis: {rank}, found {}", pairs.len()),
                "wrong number of pairs",
                Some("write e.g. `pad(x, ((1, 1), (0, 2)))` for a 2-D array"),
            ));
        }
        let mut out = Vec::new();
        for p in pairs {
            let TKind::Tuple(ab) = &p.kind else { return Err(Reported) };
            let ds: Vec<Option<Dim>> = ab.iter().map(|x| as_dim(x)).collect();
            match ds.as_slice() {
                [Some(a), Some(b)] if a.provably_nonneg() && b.provably_nonneg() => out.push((a.clone(), b.clone())),
                _ => {
                    return Err(self.err_at(
                        Code::BadPad,
                        p.span,
                        "padding widths are non-negative dimensions known before the kernel runs",
                        "invalid (before, after) pair",
                        Some("use non-negative integer constants or dimensions"),
                    ));
                }
            }
        }
        Ok(out)
    }
}

fn describe(pos: &[&str], kw: &[&str]) -> String {
    let mut v: Vec<String> = pos.iter().map(|s| s.to_string()).collect();
    if pos.is_empty() {
        v.push("arrays...".to_string());
    }
    v.extend(kw.iter().map(|k| format!("{k}: ...")));
    v.join(", ")
}

fn join(v: &[usize]) -> String {
    v.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}
