//! Dtypes: type annotations, literal coercion, unification of operand dtypes, and the typing of
//! the unary, binary, power and cast operators.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn dtype_of(&mut self, name: &ast::Ident) -> Res<DType> {
        match DType::parse(&name.name) {
            Some(d) => Ok(d),
            None => {
                let mut d = self
                    .diag(Code::UnknownType, name.span, format!("unknown type `{}`", name.name))
                    .label("not a dtype");
                let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
                d = match suggest(&name.name, names.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("the dtypes are {}", names.join(", "))),
                };
                Err(self.err(d))
            }
        }
    }

    // ---------------------------------------------------------------- kernels and fns

    pub(super) fn resolve_type(&mut self, t: &ast::Type) -> Res<Ty> {
        if matches!(t.name.name.as_str(), "int" | "float") {
            return Err(self.err(
                self.diag(Code::KindParam, t.span, format!("`{}` is a compile-time parameter kind", t.name.name))
                    .label("only allowed on `fn` parameters")
                    .help("use a dtype such as `i32` or `f32`"),
            ));
        }
        let d = self.dtype_of(&t.name)?;
        let mut shape = Vec::new();
        for e in t.dims.iter().flatten() {
            shape.push(self.dim_of(e)?);
        }
        Ok(Ty::Arr(Elem::D(d), shape))
    }

    /// Gives a weak (literal) value the dtype `d`, checking that constants fit.
    pub(super) fn coerce(&mut self, r: R, d: DType, span: Span) -> Res<R> {
        let Ty::Arr(e, shape) = &r.ty else { return Ok(r) };
        if !e.is_weak() {
            return Ok(r);
        }
        if *e == Elem::FloatLit && !d.is_float() {
            let msg = if d == DType::Bool {
                "a float literal cannot be a bool"
            } else {
                "a float literal cannot become an integer"
            };
            return Err(self.err(
                self.diag(Code::FloatForInt, span, msg)
                    .label(format!("this is a float, but {d} is needed here"))
                    .help(format!("use an integer literal, or make the other operand a float (e.g. `... as f32`); `as {d}` would truncate")),
            ));
        }
        if *e == Elem::IntLit && d == DType::Bool {
            return Err(self.err(
                self.diag(Code::DtypeMismatch, span, "an integer literal cannot be a bool")
                    .label("integer here, bool needed")
                    .help("use `true`/`false`, or compare: `x != 0`"),
            ));
        }
        let ty = Ty::Arr(Elem::D(d), shape.clone());
        let kind = match &r.kind {
            TKind::Lit(l) => {
                let l = self.lit_to(*l, d, r.span)?;
                TKind::Lit(l)
            }
            TKind::Unary(op, a) => TKind::Unary(*op, self.coerce(a.clone(), d, span)?),
            TKind::Binary(op, a, b) if !op.is_comparison() && !matches!(op, BinOp::Shl | BinOp::Shr) => {
                TKind::Binary(*op, self.coerce(a.clone(), d, span)?, self.coerce(b.clone(), d, span)?)
            }
            TKind::Comprehension(vars, body) => TKind::Comprehension(vars.clone(), self.coerce(body.clone(), d, span)?),
            TKind::Builtin(name, args, attrs) if *name == "where" => TKind::Builtin(
                name,
                vec![args[0].clone(), self.coerce(args[1].clone(), d, span)?, self.coerce(args[2].clone(), d, span)?],
                attrs.clone(),
            ),
            _ => TKind::Cast(d, r.clone()),
        };
        Ok(Rc::new(TExpr { kind, ty, file: r.file, span: r.span }))
    }

    pub(super) fn lit_to(&mut self, l: Lit, d: DType, span: Span) -> Res<Lit> {
        match l {
            Lit::Int(v) if d.is_int() => {
                let (lo, hi) = d.int_range().unwrap_or((0, 0));
                if v < lo || v > hi {
                    return Err(self.err(
                        self.diag(Code::LiteralOutOfRange, span, format!("literal `{v}` does not fit in {d}"))
                            .label(format!("{d} holds {lo} ..= {hi}"))
                            .help("use a wider dtype, or write the value with a cast to make the wrap-around explicit"),
                    ));
                }
                Ok(Lit::Int(v))
            }
            Lit::Int(v) if d.is_float() => self.lit_to(Lit::Float(v as f64), d, span),
            Lit::Float(v) if d.is_float() => {
                let max = d.float_max().unwrap_or(f64::MAX);
                // `inf`, `nan` and what folding makes of them (`-1.0 / 0.0`) are every float
                // dtype's; a finite value past the dtype's largest is an error.
                if v.is_finite() && v.abs() > max * (1.0 + 2f64.powi(-11)) {
                    return Err(self.err(
                        self.diag(Code::LiteralOutOfRange, span, format!("literal `{v:?}` is out of range for {d}"))
                            .label(format!("the largest finite {d} is {max:e}")),
                    ));
                }
                Ok(Lit::Float(v))
            }
            other => Ok(other),
        }
    }

    /// Checks a value against a declared type (let annotations, results, typed arguments).
    pub(super) fn conform(&mut self, r: R, ty: &Ty, span: Span, what: &str) -> Res<R> {
        let (Ty::Arr(de, dshape), Ty::Arr(ve, vshape)) = (ty, &r.ty) else {
            if let Ty::Tuple(_) = &r.ty {
                return Err(self.err(
                    self.diag(Code::TupleAsArray, span, format!("a tuple where {what} expects an array"))
                        .label(format!("this has type {}", r.ty))
                        .help("destructure it first: `let (a, b) = ...;`"),
                ));
            }
            return Err(self.err(
                self.diag(Code::TupleMismatch, span, format!("an array where {what} expects a tuple"))
                    .label(format!("this has type {}", r.ty)),
            ));
        };
        let (de, dshape, ve, vshape) = (*de, dshape.clone(), *ve, vshape.clone());
        let Elem::D(dd) = de else { return Ok(r) };
        let r = if ve.is_weak() {
            self.coerce(r, dd, span)?
        } else if ve != de {
            return Err(self.err(
                self.diag(Code::DeclaredDtype, span, format!("expected {dd}, found {ve}"))
                    .label(format!("this is {ve}, but {what} is {dd}"))
                    .help(format!("convert it with `as {dd}`")),
            ));
        } else {
            r
        };
        if vshape != dshape {
            return Err(self.err(
                self.diag(
                    Code::DeclaredShape,
                    span,
                    format!("expected shape {}, found {}", shape_str(&dshape), shape_str(&vshape)),
                )
                .label(format!(
                    "this has shape {}, but {what} has shape {}",
                    shape_str(&vshape),
                    shape_str(&dshape)
                )),
            ));
        }
        Ok(r)
    }

    /// The common element type of two operands (literals adapt; dtypes must agree).
    pub(super) fn unify(&mut self, a: R, b: R, span: Span) -> Res<(R, R, Elem)> {
        for x in [&a, &b] {
            if let Ty::Tuple(ts) = &x.ty {
                return Err(self.err(
                    self.diag(Code::TupleAsArray, span, "a tuple used as an array")
                        .label("this operation needs arrays")
                        .secondary(x.file, x.span, format!("this is a tuple of {}", ts.len()))
                        .help("destructure it first: `let (a, b) = ...;`"),
                ));
            }
        }
        let (ea, eb) = (self.elem(&a)?, self.elem(&b)?);
        match (ea, eb) {
            _ if ea == eb => Ok((a, b, ea)),
            (Elem::D(d), w) if w.is_weak() => {
                let bs = b.span;
                let b = self.coerce(b, d, bs)?;
                Ok((a, b, ea))
            }
            (w, Elem::D(d)) if w.is_weak() => {
                let as_ = a.span;
                let a = self.coerce(a, d, as_)?;
                Ok((a, b, eb))
            }
            (Elem::IntLit, Elem::FloatLit) | (Elem::FloatLit, Elem::IntLit) => Ok((a, b, Elem::FloatLit)),
            // An index value (index variables, dimensions, and integer arithmetic on them, all
            // i64) meets another integer dtype: that operand widens to i64, which loses nothing
            // (`arange(n) == i`, `ids[k] + i`). Other i64 values do not convert implicitly.
            (Elem::D(DType::I64), Elem::D(y)) if y.is_int() && is_index_value(&a) => {
                let b = self.cast(b, DType::I64, span)?;
                Ok((a, b, ea))
            }
            (Elem::D(x), Elem::D(DType::I64)) if x.is_int() && is_index_value(&b) => {
                let a = self.cast(a, DType::I64, span)?;
                Ok((a, b, eb))
            }
            (Elem::D(x), Elem::D(y)) => {
                let is_index = is_index_value;
                let (to, from_side) = if is_index(&a) && !is_index(&b) {
                    (y, "left")
                } else if (is_index(&b) && !is_index(&a)) || (x.is_float() && !y.is_float()) {
                    (x, "right")
                } else if y.is_float() && !x.is_float() {
                    (y, "left")
                } else if x.bits() >= y.bits() {
                    (x, "right")
                } else {
                    (y, "left")
                };
                let side = if from_side == "left" { &a } else { &b };
                let fix = match self.snippet(side.span) {
                    Some(t)
                        if t.chars().all(|c| {
                            c.is_alphanumeric() || c == '_' || c == '[' || c == ']' || c == ',' || c == ' '
                        }) =>
                    {
                        format!("`{t} as {to}`")
                    }
                    Some(t) => format!("`({t}) as {to}`"),
                    None => format!("`as {to}`"),
                };
                Err(self.err(
                    self.diag(Code::DtypeMismatch, span, format!("mismatched dtypes: {x} and {y}"))
                        .secondary(a.file, a.span, format!("this is {x}"))
                        .secondary(b.file, b.span, format!("this is {y}"))
                        .help(format!("tk never converts implicitly: cast the {from_side} operand: {fix}")),
                ))
            }
            _ => unreachable_elem(),
        }
    }

    pub(super) fn elem(&mut self, r: &R) -> Res<Elem> {
        match &r.ty {
            Ty::Arr(e, _) => Ok(*e),
            Ty::Tuple(ts) => Err(self.err(
                self.diag(Code::TupleAsArray, r.span, "a tuple used as an array")
                    .label(format!("this is a tuple of {}", ts.len()))
                    .help("destructure it first: `let (a, b) = ...;`"),
            )),
        }
    }

    pub(super) fn unary(&mut self, op: UnOp, a: R, span: Span) -> Res<R> {
        let e = self.elem(&a)?;
        match op {
            UnOp::Neg => {
                if e.is_bool() {
                    return Err(self.err(
                        self.diag(Code::OpNotSupported, span, "cannot negate a bool")
                            .label("bool operand")
                            .help("use `!` for logical not"),
                    ));
                }
                if let TKind::Lit(l) = &a.kind {
                    let l = match l {
                        Lit::Int(v) => Lit::Int(-v),
                        Lit::Float(v) => Lit::Float(-v),
                        b => *b,
                    };
                    let l = if let Elem::D(d) = e { self.fold_wrap(l, d) } else { l };
                    return Ok(self.mk(TKind::Lit(l), a.ty.clone(), span));
                }
                if let TKind::Dim(d) = &a.kind {
                    return Ok(self.mk(TKind::Dim(d.neg()), a.ty.clone(), span));
                }
            }
            UnOp::Not => {
                if e.is_float() {
                    return Err(self.err(
                        self.diag(Code::OpNotSupported, span, format!("`!` is not defined for {e}"))
                            .label("float operand")
                            .help(
                                "`!` is logical not on bool and bitwise not on integers; compare first: `!(x > 0.0)`",
                            ),
                    ));
                }
                if let TKind::Lit(Lit::Bool(b)) = a.kind {
                    return Ok(self.mk(TKind::Lit(Lit::Bool(!b)), a.ty.clone(), span));
                }
            }
        }
        let ty = a.ty.clone();
        Ok(self.mk(TKind::Unary(op, a), ty, span))
    }

    pub(super) fn binary(&mut self, op: BinOp, a: R, b: R, span: Span) -> Res<R> {
        if op == BinOp::MatMul {
            return self.matmul(a, b, span);
        }
        if op == BinOp::Pow {
            return self.pow(a, b, span);
        }
        let (a, b, e) = if matches!(op, BinOp::Shl | BinOp::Shr) {
            let (ea, eb) = (self.elem(&a)?, self.elem(&b)?);
            if !ea.is_int() || !eb.is_int() {
                return Err(self.err(
                    self.diag(Code::OpNotSupported, span, format!("`{}` needs integer operands", op.symbol()))
                        .label(format!("{ea} {} {eb}", op.symbol()))
                        .help("shifts are defined on integer dtypes only"),
                ));
            }
            let a = if ea.is_weak() && !eb.is_weak() {
                let d = if let Elem::D(d) = eb { d } else { DType::I32 };
                self.coerce(a, d, span)?
            } else {
                a
            };
            let b = match self.elem(&a)? {
                Elem::D(d) => self.coerce(b, d, span)?,
                _ => b,
            };
            let e = self.elem(&a)?;
            (a, b, e)
        } else {
            self.unify(a, b, span)?
        };
        let shape = self.broadcast(&a, &b, span)?;
        // Dimension arithmetic stays symbolic: `n + 1`, `2 * n`, `n / 4`.
        if let (Some(x), Some(y)) = (as_dim(&a), as_dim(&b)) {
            let i64t = Ty::scalar(Elem::D(DType::I64));
            let is_dim = matches!(a.kind, TKind::Dim(_)) || matches!(b.kind, TKind::Dim(_));
            if is_dim {
                let d = match op {
                    BinOp::Add => Some(x.add(&y)),
                    BinOp::Sub => Some(x.sub(&y)),
                    BinOp::Mul => Some(x.mul(&y)),
                    BinOp::Div => y.as_const().filter(|c| *c > 0).and_then(|c| x.floor_div(c)),
                    _ => None,
                };
                if let Some(d) = d {
                    return Ok(self.mk(TKind::Dim(d), i64t, span));
                }
            }
        }
        let check = |s: &mut Self, ok: bool, what: &str| -> Res<()> {
            if ok {
                Ok(())
            } else {
                Err(s.err(
                    s.diag(Code::OpNotSupported, span, format!("`{}` is not defined for {e}", op.symbol()))
                        .label(format!("{e} operands"))
                        .help(what.to_string()),
                ))
            }
        };
        let result_elem = match op {
            BinOp::Or | BinOp::And => {
                if !e.is_bool() {
                    return Err(self.err(
                        self.diag(Code::NotBool, span, format!("`{}` needs bool operands, found {e}", op.symbol()))
                            .label("not bool")
                            .help("compare first (`x > 0.0`), or use `&`/`|` for bitwise operations on integers"),
                    ));
                }
                e
            }
            BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => Elem::D(DType::Bool),
            BinOp::BitOr | BinOp::BitXor | BinOp::BitAnd => {
                check(self, !e.is_float(), "bitwise operators work on integers and bools; cast floats explicitly")?;
                e
            }
            BinOp::Shl | BinOp::Shr => e,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                check(self, !e.is_bool(), "arithmetic is not defined on bool; cast with `as i32` or use `&&`/`||`")?;
                e
            }
            BinOp::MatMul | BinOp::Pow => e,
        };
        if let (TKind::Lit(x), TKind::Lit(y)) = (&a.kind, &b.kind)
            && let Some(l) = fold_binary(op, *x, *y, e)
        {
            let l = if let Elem::D(d) = result_elem { self.fold_wrap(l, d) } else { l };
            return Ok(self.mk(TKind::Lit(l), Ty::scalar(result_elem), span));
        }
        Ok(self.mk(TKind::Binary(op, a, b), Ty::Arr(result_elem, shape), span))
    }

    pub(super) fn pow(&mut self, a: R, b: R, span: Span) -> Res<R> {
        let (ea, eb) = (self.elem(&a)?, self.elem(&b)?);
        // `x ** 2`: an integer literal exponent keeps x's dtype (repeated multiplication).
        let (a, b, e) = if ea.is_float() && eb == Elem::IntLit { (a, b, ea) } else { self.unify(a, b, span)? };
        if e.is_bool() {
            return Err(
                self.err(self.diag(Code::OpNotSupported, span, "`**` is not defined for bool").label("bool operands"))
            );
        }
        let shape = self.broadcast(&a, &b, span)?;
        if let (TKind::Lit(Lit::Float(x)), TKind::Lit(Lit::Float(y))) = (&a.kind, &b.kind) {
            return Ok(self.mk(TKind::Lit(Lit::Float(x.powf(*y))), Ty::scalar(e), span));
        }
        Ok(self.mk(TKind::Binary(BinOp::Pow, a, b), Ty::Arr(e, shape), span))
    }

    pub(super) fn cast(&mut self, a: R, d: DType, span: Span) -> Res<R> {
        let e = self.elem(&a)?;
        if let TKind::Lit(l) = &a.kind {
            let l = match (*l, d) {
                (Lit::Int(v), d) if d.is_float() => Lit::Float(v as f64),
                (Lit::Float(v), d) if d.is_int() => {
                    let (lo, hi) = d.int_range().unwrap_or((0, 0));
                    Lit::Int(if v.is_nan() { 0 } else { (v.trunc() as i128).clamp(lo, hi) })
                }
                (Lit::Bool(b), d) if d.is_float() => Lit::Float(f64::from(u8::from(b))),
                (Lit::Bool(b), _) => Lit::Int(i128::from(b)),
                (Lit::Int(v), DType::Bool) => Lit::Bool(v != 0),
                (Lit::Float(v), DType::Bool) => Lit::Bool(v != 0.0),
                (l, _) => l,
            };
            let l = if d == DType::Bool { l } else { self.fold_wrap(l, d) };
            if !(d.is_float() && e.is_weak()) || self.lit_to(l, d, span).is_ok() {
                return Ok(self.mk(TKind::Lit(l), Ty::scalar(Elem::D(d)), span));
            }
            return Err(Reported);
        }
        if e == Elem::D(d) {
            return Ok(a);
        }
        let shape = a.shape_of().to_vec();
        Ok(self.mk(TKind::Cast(d, a), Ty::Arr(Elem::D(d), shape), span))
    }
}

/// Whether an i64 expression is an index value: an index variable, a dimension, or `+ - *` of
/// them and integer literals.
fn is_index_value(r: &R) -> bool {
    match &r.kind {
        TKind::Var(_) | TKind::Dim(_) => true,
        TKind::Unary(UnOp::Neg, x) => is_index_value(x),
        TKind::Binary(BinOp::Add | BinOp::Sub | BinOp::Mul, x, y) => {
            let leaf = |e: &R| is_index_value(e) || matches!(e.kind, TKind::Lit(Lit::Int(_)));
            leaf(x) && leaf(y) && (is_index_value(x) || is_index_value(y))
        }
        _ => false,
    }
}

pub(super) fn unreachable_elem() -> Res<(R, R, Elem)> {
    Err(Reported)
}

pub(super) fn type_text(t: &ast::Type) -> String {
    crate::pretty::type_to_string(t)
}
