//! Constants: `const` items, compile-time folding of literal operations, and dimension values.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn const_value(&mut self, mid: ModId, name: &str, use_span: Span) -> Res<R> {
        let key = (mid, name.to_string());
        if let Some(v) = self.const_cache.get(&key) {
            return v.clone().ok_or(Reported);
        }
        let Some((dm, Item::Const(c))) = self.find_item(mid, name) else {
            return Err(Reported);
        };
        let dkey = (dm, name.to_string());
        if let Some(v) = self.const_cache.get(&dkey) {
            let v = v.clone();
            self.const_cache.insert(key, v.clone());
            return v.ok_or(Reported);
        }
        if !self.const_busy.insert(dkey.clone()) {
            let file = self.prog.modules[dm].file;
            return Err(self.err(
                Diag::new(Code::BadConst, file, c.name.span, format!("constant `{name}` depends on itself"))
                    .label("its value refers back to it")
                    .secondary(self.file(), use_span, "used here"),
            ));
        }
        self.frames.push(Frame { module: dm, file: self.prog.modules[dm].file, scopes: vec![vec![]] });
        let r = self.elab_const(c);
        self.frames.pop();
        self.const_busy.remove(&dkey);
        let v = r.ok();
        self.const_cache.insert(dkey, v.clone());
        self.const_cache.insert(key, v.clone());
        v.ok_or(Reported)
    }

    pub(super) fn elab_const(&mut self, c: &ast::ConstItem) -> Res<R> {
        let v = self.elab(&c.value, None)?;
        if let Ty::Arr(_, s) = &v.ty
            && !s.is_empty()
        {
            return Err(self.err(
                self.diag(Code::BadConst, c.value.span, format!("a `const` must be a scalar; this is {}", v.ty))
                    .label("an array")
                    .help("compute arrays inside a kernel, or pass them as arguments"),
            ));
        }
        if !matches!(v.kind, TKind::Lit(_)) {
            return Err(self.err(
                self.diag(
                    Code::BadConst,
                    c.value.span,
                    format!("the value of `{}` is not a compile-time constant", c.name.name),
                )
                .label("not a constant expression")
                .help("a `const` is built from literals, other constants, arithmetic and casts"),
            ));
        }
        match &c.ty {
            None => Ok(v),
            Some(t) => {
                if t.dims.is_some() {
                    return Err(self.err(
                        self.diag(Code::BadConst, t.span, "a constant is a scalar")
                            .label("array types are not allowed here")
                            .help(format!("write `const {}: {} = ...;`", c.name.name, t.name.name)),
                    ));
                }
                let d = self.dtype_of(&t.name)?;
                self.conform(v, &Ty::scalar(Elem::D(d)), c.value.span, "the constant's declared type")
            }
        }
    }

    pub(super) fn is_int_const(&mut self, name: &str) -> bool {
        let m = self.module();
        matches!(self.find_item(m, name), Some((_, Item::Const(_))))
    }

    /// A dimension expression in a type: names of dimensions, integer constants and `+ - * /`.
    pub(super) fn dim_of(&mut self, e: &ast::Expr) -> Res<Dim> {
        match &e.kind {
            ExprKind::Int(v) => i64::try_from(*v).map(Dim::constant).map_err(|_| {
                self.err(self.diag(Code::BadDim, e.span, "dimension too large").label("does not fit in i64"))
            }),
            ExprKind::Name(n) => match self.lookup(&n.name) {
                Some(Binding::Dim(d)) => Ok(d),
                Some(Binding::Value(v)) => match (&v.kind, &v.ty) {
                    (TKind::Dim(d), _) => Ok(d.clone()),
                    (TKind::Lit(Lit::Int(i)), _) => Ok(Dim::constant(*i as i64)),
                    _ => Err(self.err(
                        self.diag(Code::BadDim, e.span, format!("`{}` is a value, not a dimension", n.name))
                            .label(format!("`{}` has type {}", n.name, v.ty))
                            .help("dimensions are sizes known before the kernel runs: names bound by shapes, `<dims>`, or integer constants"),
                    )),
                },
                None => {
                    let m = self.module();
                    if let Some((_, Item::Const(_))) = self.find_item(m, &n.name) {
                        let v = self.const_value(m, &n.name, n.span)?;
                        if let TKind::Lit(Lit::Int(i)) = v.kind {
                            return Ok(Dim::constant(i as i64));
                        }
                        return Err(self.err(
                            self.diag(Code::BadDim, e.span, format!("constant `{}` is not an integer", n.name)).label(format!("has type {}", v.ty)),
                        ));
                    }
                    Err(self.err(
                        self.diag(Code::UnboundDim, e.span, format!("dimension `{}` is not bound", n.name))
                            .label("unknown dimension")
                            .help(format!(
                                "bind `{0}` with a bare name in a parameter's shape (`x: f32[{0}]`) or an explicit dimension parameter (`kernel k<{0}>(...)`)",
                                n.name
                            )),
                    ))
                }
            },
            ExprKind::Binary(op @ (BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div), a, b) => {
                let x = self.dim_of(a)?;
                let y = self.dim_of(b)?;
                match op {
                    BinOp::Add => Ok(x.add(&y)),
                    BinOp::Sub => Ok(x.sub(&y)),
                    BinOp::Mul => Ok(x.mul(&y)),
                    _ => match y.as_const() {
                        Some(c) if c > 0 => Ok(x.floor_div(c).unwrap_or_default()),
                        _ => Err(self.err(
                            self.diag(Code::BadDim, b.span, "dimensions divide only by positive integer constants")
                                .label(format!("`{y}` is not a positive constant")),
                        )),
                    },
                }
            }
            _ => Err(self.err(
                self.diag(Code::BadDim, e.span, "invalid dimension expression")
                    .label("not a dimension")
                    .help("a dimension is a name, an integer, or `+ - * /` (floor) of those: `f32[h - 2, 2 * n]`"),
            )),
        }
    }

    // ---------------------------------------------------------------- literal typing

    pub(super) fn fold_wrap(&self, l: Lit, d: DType) -> Lit {
        match (l, d.int_range()) {
            (Lit::Int(v), Some((lo, hi))) => {
                let m = hi - lo + 1;
                Lit::Int((v - lo).rem_euclid(m) + lo)
            }
            _ => l,
        }
    }
}

pub(super) fn is_const(r: &TExpr) -> bool {
    match &r.kind {
        TKind::Lit(_) => true,
        TKind::Tuple(v) => v.iter().all(|x| is_const(x)),
        _ => false,
    }
}

/// A dimension value: an integer literal or a symbolic dimension.
pub(crate) fn as_dim(r: &TExpr) -> Option<Dim> {
    match &r.kind {
        TKind::Dim(d) => Some(d.clone()),
        TKind::Lit(Lit::Int(c)) => i64::try_from(*c).ok().map(Dim::constant),
        _ => None,
    }
}

pub(super) fn clone_lit(r: &TExpr) -> TKind {
    match &r.kind {
        TKind::Lit(l) => TKind::Lit(*l),
        TKind::Dim(d) => TKind::Dim(d.clone()),
        _ => TKind::Tuple(vec![]),
    }
}

pub(super) fn fold_binary(op: BinOp, x: Lit, y: Lit, e: Elem) -> Option<Lit> {
    use Lit::*;
    let float = e.is_float();
    // Shifts need the width, so only typed integers fold. Past the width everything is shifted
    // out: `<<` gives 0; `>>` gives 0, or -1 for a negative signed value.
    if let (BinOp::Shl | BinOp::Shr, Int(a), Int(b), Elem::D(d)) = (op, x, y, e) {
        let bits = i128::from(d.bits());
        let (lo, hi) = d.int_range()?;
        if !(lo..=hi).contains(&a) {
            return None;
        }
        let out = if b < 0 || b >= bits {
            if op == BinOp::Shr && a < 0 { -1 } else { 0 }
        } else if op == BinOp::Shl {
            // Keep the low `bits` bits; the caller wraps into the dtype's range.
            (a << b) & ((1i128 << bits) - 1)
        } else {
            a >> b
        };
        return Some(Int(out));
    }
    let (xf, yf) = match (x, y) {
        (Int(a), Int(b)) if !float => {
            return Some(match op {
                BinOp::Add => Int(a.checked_add(b)?),
                BinOp::Sub => Int(a.checked_sub(b)?),
                BinOp::Mul => Int(a.checked_mul(b)?),
                BinOp::Div => Int(if b == 0 { 0 } else { a.div_euclid(b) - i128::from(b < 0 && a.rem_euclid(b) != 0) }),
                BinOp::Rem => Int(if b == 0 { 0 } else { ((a % b) + b) % b }),
                BinOp::BitAnd => Int(a & b),
                BinOp::BitOr => Int(a | b),
                BinOp::BitXor => Int(a ^ b),
                BinOp::Eq => Bool(a == b),
                BinOp::Ne => Bool(a != b),
                BinOp::Lt => Bool(a < b),
                BinOp::Le => Bool(a <= b),
                BinOp::Gt => Bool(a > b),
                BinOp::Ge => Bool(a >= b),
                _ => return None,
            });
        }
        (Int(a), Int(b)) => (a as f64, b as f64),
        (Float(a), Float(b)) => (a, b),
        (Int(a), Float(b)) => (a as f64, b),
        (Float(a), Int(b)) => (a, b as f64),
        (Bool(a), Bool(b)) => {
            return Some(match op {
                BinOp::And | BinOp::BitAnd => Bool(a && b),
                BinOp::Or | BinOp::BitOr => Bool(a || b),
                BinOp::BitXor | BinOp::Ne => Bool(a != b),
                BinOp::Eq => Bool(a == b),
                _ => return None,
            });
        }
        _ => return None,
    };
    // f64 arithmetic rounded once to f32 is the correctly rounded f32 result for + - * /, as f64
    // has more than 2 * 24 + 2 significand bits. f16/bf16 constants are left unfolded.
    if matches!(e, Elem::D(d) if d != DType::F64 && d != DType::F32) {
        return None;
    }
    let round = |v: f64| if e == Elem::D(DType::F32) { v as f32 as f64 } else { v };
    let (xf, yf) = (round(xf), round(yf));
    let folded = match op {
        BinOp::Add => Some(xf + yf),
        BinOp::Sub => Some(xf - yf),
        BinOp::Mul => Some(xf * yf),
        BinOp::Div => Some(xf / yf),
        _ => None,
    };
    if let Some(v) = folded {
        return Some(Float(round(v)));
    }
    Some(match op {
        BinOp::Add => Float(xf + yf),
        BinOp::Sub => Float(xf - yf),
        BinOp::Mul => Float(xf * yf),
        BinOp::Div => Float(xf / yf),
        BinOp::Eq => Bool(xf == yf),
        BinOp::Ne => Bool(xf != yf),
        BinOp::Lt => Bool(xf < yf),
        BinOp::Le => Bool(xf <= yf),
        BinOp::Gt => Bool(xf > yf),
        BinOp::Ge => Bool(xf >= yf),
        _ => return None,
    })
}
