//! Comprehensions and sequential loops: index ranges, index variables and loop-carried values.

use super::*;

/// The most scalar elements an array literal may have (each is one select per element computed).
const MAX_ARRAY_LITERAL: usize = 1024;

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

    /// An array literal `[a, b, c]`, nested for higher ranks: its elements are scalars (any
    /// scalar expression), all of one dtype by the rules of operators (literals adapt, and an
    /// all-literal array stays a literal that takes its context's dtype). It becomes a
    /// comprehension whose body selects element `k` at row-major position `k`.
    pub(super) fn array_literal(&mut self, es: &[ast::Expr], span: Span) -> Res<R> {
        let mut leaves: Vec<&ast::Expr> = Vec::new();
        let shape = self.literal_shape(es, span, &mut leaves)?;
        if leaves.len() > MAX_ARRAY_LITERAL {
            return Err(self.err(
                self.diag(
                    Code::ArrayLiteralSize,
                    span,
                    format!("an array literal of {} elements; the most is {MAX_ARRAY_LITERAL}", leaves.len()),
                )
                .label("too many elements")
                .help("pass data this large as an argument (a .npy file with `tk run --arg`, an array from the host)"),
            ));
        }
        let mut vals = Vec::with_capacity(leaves.len());
        for l in &leaves {
            let v = self.elab(l, None)?;
            if let Ty::Tuple(_) = v.ty {
                return Err(self.err(
                    self.diag(Code::TupleAsArray, l.span, "a tuple inside an array literal")
                        .label("not a scalar")
                        .help("an array literal's elements are scalars, or array literals for more axes"),
                ));
            }
            if !v.shape_of().is_empty() {
                return Err(self.err(
                    self.diag(Code::JoinShape, l.span, "an array inside an array literal")
                        .label(format!("this is {}, not a scalar", v.ty))
                        .help("an array literal's elements are scalars or array literals; join arrays with `stack(a, b)` or `cat(a, b)`"),
                ));
            }
            vals.push(v);
        }
        // The common element type, as operators find it.
        let mut rep = vals[0].clone();
        for v in &vals[1..] {
            let (a, b, e) = self.unify(rep.clone(), v.clone(), v.span)?;
            rep = if self.elem(&a)? == e { a } else { b };
        }
        let elem = self.elem(&rep)?;
        let mut leaves_t = Vec::with_capacity(vals.len());
        for v in vals {
            leaves_t.push(match elem {
                Elem::D(d) => self.coerce(v, d, span)?,
                Elem::FloatLit => match &v.kind {
                    TKind::Lit(Lit::Int(i)) => {
                        self.mk(TKind::Lit(Lit::Float(*i as f64)), Ty::scalar(Elem::FloatLit), v.span)
                    }
                    _ => v,
                },
                _ => v,
            });
        }
        // One index variable per axis; the row-major position selects the element.
        let mut ivars = Vec::with_capacity(shape.len());
        let mut pos: Option<R> = None;
        for (axis, n) in shape.iter().enumerate() {
            let name = ast::Ident::new(&format!("__axis{axis}"), span);
            let (iv, var) = self.new_ivar(&name, Dim::constant(0), Dim::constant(*n as i64));
            ivars.push(iv);
            let stride: usize = shape[axis + 1..].iter().product();
            let lit = self.mk(TKind::Lit(Lit::Int(stride as i128)), Ty::scalar(Elem::IntLit), span);
            let term = self.binary(BinOp::Mul, var, lit, span)?;
            pos = Some(match pos {
                None => term,
                Some(p) => self.binary(BinOp::Add, p, term, span)?,
            });
        }
        let pos = pos.ok_or(Reported)?;
        let mut body = leaves_t.pop().ok_or(Reported)?;
        for (k, leaf) in leaves_t.into_iter().enumerate().rev() {
            let at = self.mk(TKind::Lit(Lit::Int(k as i128)), Ty::scalar(Elem::IntLit), span);
            let cond = self.binary(BinOp::Eq, pos.clone(), at, span)?;
            body = self.mk(TKind::Builtin("where", vec![cond, leaf, body], Attrs::default()), Ty::scalar(elem), span);
        }
        let dims = shape.iter().map(|n| Dim::constant(*n as i64)).collect();
        Ok(self.mk(TKind::Comprehension(ivars, body), Ty::Arr(elem, dims), span))
    }

    /// The shape of a (nested) array literal, and its scalar elements in row-major order.
    fn literal_shape<'e>(
        &mut self,
        es: &'e [ast::Expr],
        span: Span,
        leaves: &mut Vec<&'e ast::Expr>,
    ) -> Res<Vec<usize>> {
        let nested = es.iter().filter(|e| matches!(e.kind, ExprKind::Array(_))).count();
        if nested == 0 {
            leaves.extend(es.iter());
            return Ok(vec![es.len()]);
        }
        if nested != es.len() {
            let odd = es.iter().find(|e| !matches!(e.kind, ExprKind::Array(_))).map_or(span, |e| e.span);
            return Err(self.err(
                self.diag(Code::JoinShape, odd, "an array literal mixes scalars and nested arrays")
                    .label("a scalar among rows")
                    .help("every element of a nested literal is a row of the same length: `[[1, 2], [3, 4]]`"),
            ));
        }
        let mut inner: Option<(Vec<usize>, Span)> = None;
        for e in es {
            let ExprKind::Array(items) = &e.kind else { continue };
            let s = self.literal_shape(items, e.span, leaves)?;
            match &inner {
                None => inner = Some((s, e.span)),
                Some((first, first_span)) if *first != s => {
                    let dims = |v: &[usize]| v.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ");
                    return Err(self.err(
                        self.diag(Code::JoinShape, e.span, "the rows of an array literal differ in shape")
                            .label(format!("this row has shape [{}]", dims(&s)))
                            .secondary(self.file(), *first_span, format!("the first has shape [{}]", dims(first)))
                            .help("every row of a nested literal has the same shape"),
                    ));
                }
                Some(_) => {}
            }
        }
        let mut shape = vec![es.len()];
        shape.extend(inner.map(|(s, _)| s).unwrap_or_default());
        Ok(shape)
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
