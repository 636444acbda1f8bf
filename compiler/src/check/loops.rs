//! Comprehensions and sequential loops: index ranges, index variables and loop-carried values.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn range_of(&mut self, r: &ast::RangeExpr) -> Res<(Dim, Dim)> {
        let lo = self.elab(&r.lo, None)?;
        let hi = self.elab(&r.hi, None)?;
        let mut dims = Vec::new();
        for x in [&lo, &hi] {
            match as_dim(x) {
                Some(d) => dims.push(d),
                None => {
                    return Err(self.err(
                        self.diag(Code::NotConstant, x.span, "range bounds must be known before the kernel runs")
                            .label(format!("this is a run-time value of type {}", x.ty))
                            .help("use integer constants and dimensions: `0..n`, `1..k - 1`"),
                    ));
                }
            }
        }
        let ext = dims[1].sub(&dims[0]);
        Ok((dims[0].clone(), ext))
    }

    pub(super) fn new_ivar(&mut self, name: &ast::Ident, lo: Dim, extent: Dim) -> (IVar, R) {
        let id = self.fresh_var();
        let hi = lo.add(&extent).add_const(-1);
        self.vars.insert(id, (lo.clone(), hi));
        let r = self.mk(TKind::Var(id), Ty::scalar(Elem::D(DType::I64)), name.span);
        (IVar { id, name: name.name.clone(), lo, extent }, r)
    }

    pub(super) fn comprehension(
        &mut self,
        bs: &[ast::Binder],
        body: &ast::Expr,
        span: Span,
        expected: Option<&Ty>,
    ) -> Res<R> {
        let exp_shape = match expected {
            Some(Ty::Arr(_, s)) => Some(s.clone()),
            _ => None,
        };
        if let Some(s) = &exp_shape
            && s.len() < bs.len()
        {
            return Err(self.err(
                self.diag(
                    Code::ComprehensionRank,
                    span,
                    format!("{} index variables for a result of rank {}", bs.len(), s.len()),
                )
                .label(format!("the result has shape {}", shape_str(s)))
                .help("write one index variable per dimension of the result"),
            ));
        }
        self.push_scope();
        let r = (|| {
            let mut ivars = Vec::new();
            let mut seen = HashSet::new();
            for (i, b) in bs.iter().enumerate() {
                if !seen.insert(b.name.name.clone()) {
                    return Err(self.err(
                        self.diag(Code::DuplicateParam, b.name.span, format!("index `{}` is bound twice", b.name.name))
                            .label("bound again here"),
                    ));
                }
                let (lo, ext) = match (&b.range, &exp_shape) {
                    (Some(r), _) => self.range_of(r)?,
                    (None, Some(s)) => (Dim::constant(0), s[i].clone()),
                    (None, None) => {
                        return Err(self.err(
                            self.diag(
                                Code::UnknownExtent,
                                b.name.span,
                                format!("cannot infer the extent of `{}`", b.name.name),
                            )
                            .label("no declared result shape to take it from")
                            .help(format!(
                                "annotate the binding with the comprehension's rank (`let y: f32[{}] = ...`) or give \
                                 a range: `[{} in 0..n]`",
                                ["n", "m", "k", "l", "p", "q"]
                                    .iter()
                                    .cycle()
                                    .take(bs.len())
                                    .copied()
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                b.name.name
                            )),
                        ));
                    }
                };
                let (iv, r) = self.new_ivar(&b.name, lo, ext);
                self.bind(&b.name.name, Binding::Value(r));
                ivars.push(iv);
            }
            let inner = match (&exp_shape, expected) {
                (Some(s), Some(Ty::Arr(e, _))) => Some(Ty::Arr(*e, s[bs.len()..].to_vec())),
                _ => None,
            };
            let body = self.elab(body, inner.as_ref())?;
            let Ty::Arr(e, bshape) = body.ty.clone() else {
                return Err(self.err(
                    self.diag(Code::TupleAsArray, body.span, "a comprehension body must be an array")
                        .label(format!("this is {}", body.ty)),
                ));
            };
            let e = if e.is_weak() {
                match expected.and_then(|t| t.elem()) {
                    Some(Elem::D(d)) => Elem::D(d),
                    _ => Elem::D(e.default_dtype()),
                }
            } else {
                e
            };
            let body = match e {
                Elem::D(d) => {
                    let bs = body.span;
                    self.coerce(body, d, bs)?
                }
                _ => body,
            };
            let mut shape: Vec<Dim> = ivars.iter().map(|v| v.extent.clone()).collect();
            shape.extend(bshape);
            Ok(self.mk(TKind::Comprehension(ivars, body), Ty::Arr(e, shape), span))
        })();
        self.pop_scope();
        r
    }

    pub(super) fn elab_loop(
        &mut self,
        var: &ast::Ident,
        range: &ast::RangeExpr,
        carried: &[(ast::Ident, ast::Expr)],
        body: &ast::Block,
        span: Span,
    ) -> Res<R> {
        let (lo, ext) = self.range_of(range)?;
        let mut inits = Vec::new();
        for (n, e) in carried {
            let v = self.elab(e, None)?;
            let _ = self.elem(&v)?;
            inits.push((n, v));
        }
        let mut seen = HashSet::new();
        for (n, _) in &inits {
            if !seen.insert(n.name.clone()) || n.name == var.name {
                return Err(self.err(
                    self.diag(Code::DuplicateParam, n.span, format!("`{}` is bound twice in this loop", n.name))
                        .label("bound again here"),
                ));
            }
        }
        // A literal initial value stays weak in a first pass over the body; the dtype the body
        // gives it (or i32/f32 when the body does not decide) is then fixed in a second pass.
        let mut types: Vec<Ty> = inits.iter().map(|(_, v)| v.ty.clone()).collect();
        for attempt in 0..2 {
            let diag_mark = self.diags.len();
            let r = self.loop_attempt(var, &lo, &ext, &inits, &types, body, span);
            match r {
                Ok(Ok(r)) => return Ok(r),
                Ok(Err(better)) if attempt == 0 => {
                    self.diags.truncate(diag_mark);
                    types = better;
                }
                Ok(Err(_)) => unreachable_retry(),
                Err(e) => return Err(e),
            }
        }
        Err(Reported)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn loop_attempt(
        &mut self,
        var: &ast::Ident,
        lo: &Dim,
        ext: &Dim,
        inits: &[(&ast::Ident, R)],
        types: &[Ty],
        body: &ast::Block,
        span: Span,
    ) -> Res<Result<R, Vec<Ty>>> {
        self.push_scope();
        let r = (|| {
            let (iv, ivr) = self.new_ivar(var, lo.clone(), ext.clone());
            self.bind(&var.name, Binding::Value(ivr));
            let mut carried = Vec::new();
            for ((n, init), t) in inits.iter().zip(types) {
                let id = self.fresh_var();
                let init = self.conform(init.clone(), t, init.span, &format!("carried value `{}`", n.name))?;
                let cur = self.mk(TKind::Carried(id), t.clone(), n.span);
                self.bind(&n.name, Binding::Value(cur));
                carried.push((id, init));
            }
            // The body: statements (with at most one `break if`), then the next values.
            self.push_scope();
            let mut exit = None;
            let res = (|| {
                for s in &body.stmts {
                    match s {
                        Stmt::Let { pat, ty, value, .. } => self.elab_let(pat, ty.as_ref(), value)?,
                        Stmt::BreakIf { cond, span: bs } => {
                            if exit.is_some() {
                                return Err(self.err(
                                    self.diag(Code::TwoBreaks, *bs, "a loop body has at most one `break if`")
                                        .label("second `break if`")
                                        .help("combine the conditions: `break if a || b;`"),
                                ));
                            }
                            let c = self.elab(cond, None)?;
                            if self.elem(&c)? != Elem::D(DType::Bool) {
                                return Err(self.err(
                                    self.diag(
                                        Code::NotBool,
                                        cond.span,
                                        format!("`break if` needs a bool condition, found {}", c.ty),
                                    )
                                    .label("not bool"),
                                ));
                            }
                            for t in types {
                                let s = self.broadcast_shapes(c.shape_of(), t.shape(), cond.span, None)?;
                                if s != t.shape() {
                                    return Err(self.err(
                                        self.diag(
                                            Code::Broadcast,
                                            cond.span,
                                            format!(
                                                "the exit condition has shape {} but a carried value has shape {}",
                                                shape_str(c.shape_of()),
                                                shape_str(t.shape())
                                            ),
                                        )
                                        .label("does not broadcast to the carried values"),
                                    ));
                                }
                            }
                            exit = Some(c);
                        }
                    }
                }
                self.elab(&body.value, None)
            })();
            self.pop_scope();
            let next = res?;
            let parts = if inits.len() == 1 { vec![next.clone()] } else { self.tuple_parts(&next) };
            if parts.len() != inits.len()
                || (inits.len() > 1 && !matches!(next.ty, Ty::Tuple(_)))
                || (inits.len() == 1 && matches!(next.ty, Ty::Tuple(_)))
            {
                let got = match &next.ty {
                    Ty::Tuple(ts) => ts.len(),
                    _ => 1,
                };
                return Err(self.err(
                    self.diag(
                        Code::LoopArity,
                        body.value.span,
                        format!("the loop carries {} values but its body gives {}", inits.len(), got),
                    )
                    .label(plural(got, "value"))
                    .help(format!(
                        "end the body with the next value of every carried variable, in order: `({})`",
                        inits.iter().map(|(n, _)| format!("{}2", n.name)).collect::<Vec<_>>().join(", ")
                    )),
                ));
            }
            // A literal initial value takes the dtype the body gives it.
            let mut better = types.to_vec();
            let mut retry = false;
            for (i, p) in parts.iter().enumerate() {
                if let Ty::Arr(w, ws) = &types[i]
                    && w.is_weak()
                {
                    let d = match p.ty.elem() {
                        Some(Elem::D(got)) if got.is_float() || *w == Elem::IntLit => got,
                        _ => w.default_dtype(),
                    };
                    better[i] = Ty::Arr(Elem::D(d), ws.clone());
                    retry = true;
                }
            }
            if retry {
                return Ok(Err(better));
            }
            let mut next_vals = Vec::new();
            for (i, p) in parts.into_iter().enumerate() {
                let n = inits[i].0;
                match (&p.ty, &types[i]) {
                    (Ty::Arr(pe, ps), Ty::Arr(Elem::D(d), ts)) => {
                        let same_elem = *pe == Elem::D(*d) || pe.is_weak();
                        if !same_elem || ps != ts {
                            return Err(self.err(
                                self.diag(
                                    Code::LoopCarriedType,
                                    p.span,
                                    format!("the loop changes the type of `{}` from {} to {}", n.name, types[i], p.ty),
                                )
                                .label(format!("this is {}", p.ty))
                                .secondary(self.file(), n.span, format!("`{}` is {} here", n.name, types[i]))
                                .help(
                                    "carried values keep their dtype and shape; cast the update or the initial value",
                                ),
                            ));
                        }
                        let sp = p.span;
                        next_vals.push(self.coerce(p, *d, sp)?);
                    }
                    _ => next_vals.push(p),
                }
            }
            let ty = if types.len() == 1 { types[0].clone() } else { Ty::Tuple(types.to_vec()) };
            Ok(Ok(self.mk(TKind::Loop { var: iv, carried, exit, next: next_vals }, ty, span)))
        })();
        self.pop_scope();
        r
    }

    // ---------------------------------------------------------------- indexing
}
