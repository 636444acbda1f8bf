//! Kernels and typed `fn`s: parameters, declared results and how a body conforms to them.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn check_kernel(&mut self, mid: ModId, f: &ast::FnItem) -> Res<CheckedKernel> {
        let file = self.prog.modules[mid].file;
        self.frames.push(Frame { module: mid, file, scopes: vec![vec![]] });
        self.lets.clear();
        let r = self.check_kernel_inner(f);
        self.frames.pop();
        r
    }

    pub(super) fn check_kernel_inner(&mut self, f: &ast::FnItem) -> Res<CheckedKernel> {
        let mut bound: Vec<String> = Vec::new();
        for d in &f.dims {
            if bound.contains(&d.name) {
                return Err(self.err(
                    self.diag(Code::DuplicateParam, d.span, format!("dimension `{}` is declared twice", d.name))
                        .label("declared again here"),
                ));
            }
            bound.push(d.name.clone());
        }
        for p in &f.params {
            if p.default.is_some() {
                return Err(self.err(
                    self.diag(Code::BadDefault, p.span, "kernel parameters have no defaults")
                        .label("default value here")
                        .help("every kernel argument is given at the call; move the default into a `fn`"),
                ));
            }
            let Some(t) = &p.ty else {
                return Err(self.err(
                    self.diag(
                        Code::ParamNeedsType,
                        p.name.span,
                        format!("kernel parameter `{}` needs a type", p.name.name),
                    )
                    .label("no type")
                    .help(format!("write e.g. `{}: f32[n]`; only `fn` parameters may be generic", p.name.name)),
                ));
            };
            if matches!(t.name.name.as_str(), "int" | "float") {
                return Err(self.err(
                    self.diag(Code::KindParam, t.span, format!("`{}` is a compile-time parameter kind", t.name.name))
                        .label("not allowed on a kernel")
                        .help("kernel parameters are arrays or scalars of a dtype, e.g. `i32`; compile-time parameters belong to `fn`s"),
                ));
            }
            for d in t.dims.iter().flatten() {
                if let ExprKind::Name(n) = &d.kind
                    && !bound.contains(&n.name)
                    && !self.is_int_const(&n.name)
                {
                    bound.push(n.name.clone());
                }
            }
        }
        for b in &bound {
            self.bind(b, Binding::Dim(Dim::sym(b)));
        }
        let mut params = Vec::new();
        for (i, p) in f.params.iter().enumerate() {
            let Some(t) = &p.ty else { continue };
            let ty = self.resolve_type(t)?;
            if params.iter().any(|q: &KParam| q.name == p.name.name) || bound.contains(&p.name.name) {
                return Err(self.err(
                    self.diag(Code::DuplicateParam, p.name.span, format!("`{}` is declared twice", p.name.name))
                        .label("this name is already a parameter or a dimension")
                        .help("give each parameter and dimension its own name"),
                ));
            }
            let v = self.mk(TKind::Param(i), ty.clone(), p.name.span);
            self.bind(&p.name.name, Binding::Value(v));
            params.push(KParam { name: p.name.name.clone(), ty });
        }
        let (outputs, expected) = self.resolve_ret(f.ret.as_ref(), f.name.span)?;
        let body = self.elab_block(&f.body, Some(&expected))?;
        let results = self.conform_outputs(body, &outputs, f)?;
        Ok(CheckedKernel {
            name: f.name.name.clone(),
            file: self.file(),
            span: f.span,
            dim_params: f.dims.iter().map(|d| d.name.clone()).collect(),
            params,
            outputs,
            results,
            lets: std::mem::take(&mut self.lets),
        })
    }

    pub(super) fn resolve_ret(&mut self, ret: Option<&ast::RetType>, span: Span) -> Res<(Vec<(String, Ty)>, Ty)> {
        match ret {
            None => Err(self
                .err(self.diag(Code::OutputCount, span, "missing result type").label("kernels declare their results"))),
            Some(ast::RetType::Single(t)) => {
                let ty = self.resolve_type(t)?;
                Ok((vec![("out".to_string(), ty.clone())], ty))
            }
            Some(ast::RetType::Tuple(fields, s)) => {
                if fields.is_empty() {
                    return Err(self.err(
                        self.diag(Code::OutputCount, *s, "a kernel must return at least one array").label("no outputs"),
                    ));
                }
                let mut outs: Vec<(String, Ty)> = Vec::new();
                for (i, fl) in fields.iter().enumerate() {
                    let ty = self.resolve_type(&fl.ty)?;
                    let name = match &fl.name {
                        Some(n) => {
                            if outs.iter().any(|(o, _)| *o == n.name) {
                                return Err(self.err(
                                    self.diag(
                                        Code::DuplicateOutput,
                                        n.span,
                                        format!("output `{}` is declared twice", n.name),
                                    )
                                    .label("duplicate output name")
                                    .help("outputs are written to files named after them; give each its own name"),
                                ));
                            }
                            n.name.clone()
                        }
                        None => format!("out{i}"),
                    };
                    outs.push((name, ty));
                }
                let t = Ty::Tuple(outs.iter().map(|(_, t)| t.clone()).collect());
                Ok((outs, t))
            }
        }
    }

    pub(super) fn conform_outputs(&mut self, body: R, outputs: &[(String, Ty)], f: &ast::FnItem) -> Res<Vec<R>> {
        let span = f.body.value.span;
        if outputs.len() == 1 {
            if let Ty::Tuple(ts) = &body.ty {
                return Err(self.err(
                    self.diag(
                        Code::OutputCount,
                        span,
                        format!("`{}` declares 1 output but its body gives {}", f.name.name, ts.len()),
                    )
                    .label(format!("this is a tuple of {}", ts.len()))
                    .help("declare every output: `-> (a: f32[n], b: f32[n])`"),
                ));
            }
            return Ok(vec![self.conform(body, &outputs[0].1, span, "the declared result")?]);
        }
        let parts = match &body.ty {
            Ty::Tuple(ts) if ts.len() == outputs.len() => self.tuple_parts(&body),
            Ty::Tuple(ts) => {
                return Err(self.err(
                    self.diag(
                        Code::OutputCount,
                        span,
                        format!("`{}` declares {} outputs but its body gives {}", f.name.name, outputs.len(), ts.len()),
                    )
                    .label(format!("a tuple of {}", ts.len())),
                ));
            }
            _ => {
                return Err(self.err(
                    self.diag(
                        Code::OutputCount,
                        span,
                        format!("`{}` declares {} outputs but its body gives 1", f.name.name, outputs.len()),
                    )
                    .label("a single array")
                    .help("end the body with a tuple: `(a, b)`"),
                ));
            }
        };
        let mut out = Vec::new();
        for (p, (n, t)) in parts.into_iter().zip(outputs) {
            let sp = p.span;
            out.push(self.conform(p, t, sp, &format!("output `{n}`"))?);
        }
        Ok(out)
    }

    pub(super) fn tuple_parts(&self, r: &R) -> Vec<R> {
        match (&r.kind, &r.ty) {
            (TKind::Tuple(v), _) => v.clone(),
            (_, Ty::Tuple(ts)) => (0..ts.len())
                .map(|i| {
                    Rc::new(TExpr { kind: TKind::Proj(r.clone(), i), ty: ts[i].clone(), file: r.file, span: r.span })
                })
                .collect(),
            _ => vec![r.clone()],
        }
    }

    /// Elaborates an `fn` whose parameters are all typed (so it is checked even if unused).
    pub(super) fn check_typed_fn(&mut self, mid: ModId, f: &'p ast::FnItem) {
        let all_typed = f.params.iter().all(|p| p.ty.is_some());
        if !all_typed {
            for p in &f.params {
                if let Some(d) = &p.default
                    && !matches!(
                        d.kind,
                        ExprKind::Int(_)
                            | ExprKind::Float(_)
                            | ExprKind::Bool(_)
                            | ExprKind::Unary(UnOp::Neg, _)
                            | ExprKind::Name(_)
                            | ExprKind::Tuple(_)
                    )
                {
                    self.diags.push(
                        Diag::new(
                            Code::BadDefault,
                            self.prog.modules[mid].file,
                            d.span,
                            "a default must be a constant",
                        )
                        .label("not a constant")
                        .help("defaults are literals or constants, e.g. `axis: int = -1`"),
                    );
                }
            }
            return;
        }
        let file = self.prog.modules[mid].file;
        self.frames.push(Frame { module: mid, file, scopes: vec![vec![]] });
        self.inline_stack.push((mid, f.name.name.clone()));
        let _ = (|| -> Res<()> {
            let mut args = Vec::new();
            for p in &f.params {
                let Some(t) = &p.ty else { continue };
                match t.name.name.as_str() {
                    "int" | "float" | "bool" if t.dims.is_none() => {
                        let v = match &p.default {
                            Some(d) => self.elab(d, None)?,
                            None => {
                                let l = match t.name.name.as_str() {
                                    "int" => (Lit::Int(0), Elem::IntLit),
                                    "float" => (Lit::Float(0.0), Elem::FloatLit),
                                    _ => (Lit::Bool(false), Elem::D(DType::Bool)),
                                };
                                self.mk(TKind::Lit(l.0), Ty::scalar(l.1), p.span)
                            }
                        };
                        args.push(v);
                    }
                    _ => {
                        for d in t.dims.iter().flatten() {
                            if let ExprKind::Name(n) = &d.kind
                                && self.lookup(&n.name).is_none()
                                && !self.is_int_const(&n.name)
                            {
                                self.bind(&n.name, Binding::Dim(Dim::sym(&n.name)));
                            }
                        }
                        let ty = self.resolve_type(t)?;
                        args.push(self.mk(TKind::Param(args.len()), ty, p.name.span));
                    }
                }
            }
            let dims: Vec<(String, Dim)> = f.dims.iter().map(|d| (d.name.clone(), Dim::sym(&d.name))).collect();
            self.inline_fn(mid, f, &dims, args.into_iter().map(Some).collect(), f.name.span).map(|_| ())
        })();
        self.inline_stack.pop();
        self.frames.pop();
    }

    // ---------------------------------------------------------------- types
}
