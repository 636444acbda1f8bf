//! Calls: builtins, `fn` calls with named and positional arguments, and inlining.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn elab_call(&mut self, f: &ast::Ident, args: &CallArgs, span: Span, expected: Option<&Ty>) -> Res<R> {
        if let Some(b) = self.lookup(&f.name) {
            let (what, help) = match &b {
                Binding::Dim(_) => (
                    "a dimension".to_string(),
                    "a dimension is a size; use it as a value without parentheses".to_string(),
                ),
                Binding::Value(v) if !v.shape_of().is_empty() => {
                    (format!("an array of type {}", v.ty), format!("to index it, write `{}[...]`", f.name))
                }
                Binding::Value(v) => (
                    format!("a value of type {}", v.ty),
                    "remove the parentheses; if a fn of this name exists, rename the local binding that hides it"
                        .to_string(),
                ),
            };
            return Err(self.err(
                self.diag(Code::NotCallable, f.span, format!("`{}` is {what}, not a function", f.name))
                    .label("cannot be called")
                    .help(help),
            ));
        }
        let m = self.module();
        match self.find_item(m, &f.name) {
            Some((dm, Item::Fn(item))) => {
                let CallArgs::List(list) = args else {
                    return Err(self.err(
                        self.diag(Code::UnexpectedToken, span, format!("`{}` does not take a range form", f.name))
                            .label("`name(r in 0..k: ...)` is only for sum, prod, max and min"),
                    ));
                };
                return self.call_fn(dm, item, list, f, span);
            }
            Some((_, Item::Const(_))) => {
                return Err(self.err(
                    self.diag(Code::NotCallable, f.span, format!("`{}` is a constant, not a function", f.name))
                        .label("cannot be called")
                        .help(format!("use it as a value: `{}`", f.name)),
                ));
            }
            _ => {}
        }
        if BUILTINS.contains(&f.name.as_str()) {
            return self.builtin(f, args, span, expected);
        }
        let mut d = self
            .diag(Code::UnknownFunction, f.span, format!("cannot find function `{}`", f.name))
            .label("not a builtin or a visible fn");
        let mut cands: Vec<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
        cands.extend(self.visible_names(m));
        d = d.help(unknown_fn_help(&f.name, &cands));
        Err(self.err(d))
    }

    pub(super) fn call_fn(
        &mut self,
        dm: ModId,
        item: &'p ast::FnItem,
        list: &[ast::Arg],
        f: &ast::Ident,
        span: Span,
    ) -> Res<R> {
        // Explicit dimensions (`kernel hist<nb>(...)`) are given by name at the call, like other
        // compile-time arguments: `hist(v, nb: 5)`. Their values are dimension expressions of the
        // caller (integer constants, its dimensions, `+ - * /` of them).
        let is_dim = |a: &ast::Arg| a.name.as_ref().is_some_and(|k| item.dims.iter().any(|d| d.name == k.name));
        let mut dims: Vec<(String, Dim)> = Vec::new();
        for d in &item.dims {
            let given: Vec<&ast::Arg> =
                list.iter().filter(|a| a.name.as_ref().is_some_and(|k| k.name == d.name)).collect();
            let Some(a) = given.first() else {
                let shown: Vec<String> = item.dims.iter().map(|d| format!("{}: N", d.name)).collect();
                return Err(self.err(
                    self.diag(
                        Code::ExplicitDimCall,
                        f.span,
                        format!("`{}` needs its dimension `{}` at the call", f.name, d.name),
                    )
                    .label(format!("`{}` is not given", d.name))
                    .secondary(self.prog.modules[dm].file, d.span, "an explicit dimension, declared here")
                    .help(format!(
                        "no argument's shape gives it: pass it by name, e.g. `{}(..., {})`",
                        f.name,
                        shown.join(", ")
                    )),
                ));
            };
            if let Some(again) = given.get(1).and_then(|a| a.name.as_ref()) {
                return Err(self.err(
                    self.diag(Code::DuplicateKeyword, again.span, format!("`{}` is given twice", d.name))
                        .label("given again here"),
                ));
            }
            let v = self.dim_of(&a.value)?;
            if let Some(c) = v.as_const()
                && c < 0
            {
                return Err(self.err(
                    self.diag(Code::BadDim, a.value.span, format!("dimension `{}` is {c}", d.name))
                        .label("a size cannot be negative"),
                ));
            }
            dims.push((d.name.clone(), v));
        }
        let list: Vec<ast::Arg> = list.iter().filter(|a| !is_dim(a)).cloned().collect();
        let list = &list[..];
        if self.inline_stack.iter().any(|(m, n)| *m == dm && *n == item.name.name) {
            // Recursion is reported by the name pass; stop here quietly.
            if !self.reported_recursion.contains(&format!("{dm}:{}", item.name.name)) {
                self.reported_recursion.insert(format!("{dm}:{}", item.name.name));
                return Err(self.err(
                    self.diag(Code::Recursion, f.span, format!("`{}` is recursive", f.name))
                        .label("this call reaches the function again")
                        .help("fns are inlined, so they cannot recurse; use a `loop` with carried values"),
                ));
            }
            return Err(Reported);
        }
        if self.inline_stack.len() >= MAX_INLINE_DEPTH {
            return Err(self.err(
                self.diag(Code::InlineTooDeep, f.span, format!("more than {MAX_INLINE_DEPTH} nested fn calls"))
                    .label("inlining stops here")
                    .help("flatten the chain of helper functions"),
            ));
        }
        // Bind arguments: positional first, then keywords.
        let mut slots: Vec<Option<&ast::Expr>> = vec![None; item.params.len()];
        let mut positional = 0;
        let mut seen_keyword = false;
        for a in list {
            match &a.name {
                None if seen_keyword => {
                    return Err(self.err(
                        self.diag(Code::ArgCount, a.value.span, "positional argument after keyword arguments")
                            .label("positional")
                            .help("pass positional arguments first, then `name: value` arguments"),
                    ));
                }
                None => {
                    if positional >= item.params.len() {
                        return Err(self.err(
                            self.diag(
                                Code::ArgCount,
                                a.value.span,
                                format!(
                                    "`{}` takes {} but {} were given",
                                    f.name,
                                    plural(item.params.len(), "argument"),
                                    list.iter().filter(|a| a.name.is_none()).count()
                                ),
                            )
                            .label("extra argument")
                            .secondary(
                                self.prog.modules[dm].file,
                                item.name.span,
                                "defined here",
                            ),
                        ));
                    }
                    slots[positional] = Some(&a.value);
                    positional += 1;
                }
                Some(k) => {
                    seen_keyword = true;
                    let Some(i) = item.params.iter().position(|p| p.name.name == k.name) else {
                        let names: Vec<&str> = item.params.iter().map(|p| p.name.name.as_str()).collect();
                        let mut d = self
                            .diag(Code::UnknownKeyword, k.span, format!("`{}` has no parameter `{}`", f.name, k.name))
                            .label("unknown keyword");
                        d = match suggest(&k.name, names.iter().copied()) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!("its parameters are: {}", names.join(", "))),
                        };
                        return Err(self.err(d));
                    };
                    if slots[i].is_some() {
                        return Err(self.err(
                            self.diag(Code::DuplicateKeyword, k.span, format!("`{}` is given twice", k.name))
                                .label("given again here"),
                        ));
                    }
                    slots[i] = Some(&a.value);
                }
            }
        }
        let mut vals = Vec::new();
        for (p, s) in item.params.iter().zip(&slots) {
            match s {
                Some(e) => vals.push(Some(self.elab(e, None)?)),
                None if p.default.is_some() => vals.push(None),
                None => {
                    return Err(self.err(
                        self.diag(
                            Code::MissingArg,
                            span,
                            format!("missing argument `{}` of `{}`", p.name.name, f.name),
                        )
                        .label(format!("`{}` is not given", p.name.name))
                        .secondary(
                            self.prog.modules[dm].file,
                            p.span,
                            "parameter declared here",
                        ),
                    ));
                }
            }
        }
        self.inline_stack.push((dm, item.name.name.clone()));
        let r = self.inline_fn(dm, item, &dims, vals, f.span);
        self.inline_stack.pop();
        r.map(|r| Rc::new(TExpr { kind: clone_kind(&r), ty: r.ty.clone(), file: self.file(), span })).or(Err(Reported))
    }

    /// Elaborates the body of `item` with its parameters bound to `args` (None: use the default).
    pub(super) fn inline_fn(
        &mut self,
        dm: ModId,
        item: &'p ast::FnItem,
        dims: &[(String, Dim)],
        args: Vec<Option<R>>,
        call_span: Span,
    ) -> Res<R> {
        let caller_file = self.file();
        let file = self.prog.modules[dm].file;
        let mark = self.diags.len();
        let first_arg = args.first().and_then(|a| a.as_ref()).map(|a| (a.file, a.span));
        self.frames.push(Frame { module: dm, file, scopes: vec![vec![]] });
        let saved_lets = std::mem::take(&mut self.lets);
        for (name, d) in dims {
            self.bind(name, Binding::Dim(d.clone()));
        }
        let r = (|| {
            for (p, a) in item.params.iter().zip(args) {
                let v = match a {
                    Some(v) => v,
                    None => {
                        let Some(d) = &p.default else { return Err(Reported) };
                        let v = self.elab(d, None)?;
                        if !is_const(&v) {
                            return Err(self.err(
                                self.diag(Code::BadDefault, d.span, "a default must be a constant")
                                    .label("not a constant")
                                    .help("defaults are literals or constants, e.g. `axis: int = -1`"),
                            ));
                        }
                        v
                    }
                };
                let v = match &p.ty {
                    None => v,
                    Some(t) if t.dims.is_none() && matches!(t.name.name.as_str(), "int" | "float" | "bool") => {
                        let ok = match (t.name.name.as_str(), v.ty.elem()) {
                            ("int", Some(e)) => e.is_int(),
                            ("float", Some(e)) => e.is_float() || e.is_int(),
                            ("bool", Some(e)) => e.is_bool(),
                            _ => false,
                        };
                        if !is_const(&v) || !ok {
                            let msg = if ok { "must be a compile-time constant" } else { "has the wrong kind" };
                            return Err(self.err(
                                Diag::new(
                                    Code::NotConstant,
                                    caller_file,
                                    v.span,
                                    format!("argument `{}` {msg}", p.name.name),
                                )
                                .label(format!(
                                    "`{}` is a compile-time `{}`; this is {}",
                                    p.name.name, t.name.name, v.ty
                                ))
                                .secondary(file, p.span, "declared here")
                                .help("pass a literal or a `const`"),
                            ));
                        }
                        v
                    }
                    Some(t) => {
                        // Typed parameter: dtype must match; dimension names unify per call.
                        let shape = v.shape_of().to_vec();
                        let dims = t.dims.clone().unwrap_or_default();
                        if dims.len() != shape.len() {
                            return Err(self.err(
                                Diag::new(
                                    Code::DeclaredShape,
                                    caller_file,
                                    v.span,
                                    format!(
                                        "argument `{}` has rank {} but the parameter has rank {}",
                                        p.name.name,
                                        shape.len(),
                                        dims.len()
                                    ),
                                )
                                .label(format!("shape {}", shape_str(&shape)))
                                .secondary(file, t.span, "parameter type"),
                            ));
                        }
                        for (de, actual) in dims.iter().zip(&shape) {
                            if let ExprKind::Name(n) = &de.kind
                                && self.lookup(&n.name).is_none()
                                && !self.is_int_const(&n.name)
                            {
                                self.bind(&n.name, Binding::Dim(actual.clone()));
                            }
                        }
                        let ty = self.resolve_type(t)?;
                        match self.conform(v.clone(), &ty, v.span, &format!("parameter `{}`", p.name.name)) {
                            Ok(v) => v,
                            Err(_) => {
                                if let Some(d) = self.diags.last_mut() {
                                    d.file = caller_file;
                                    d.secondary.push((file, t.span, "parameter type".into()));
                                }
                                return Err(Reported);
                            }
                        }
                    }
                };
                self.bind(&p.name.name, Binding::Value(v));
            }
            let Some(ret) = &item.ret else {
                return self.elab_block(&item.body, None);
            };
            let (outputs, expected) = self.resolve_ret(Some(ret), item.name.span)?;
            let body = self.elab_block(&item.body, Some(&expected))?;
            let mut parts = self.conform_outputs(body, &outputs, item)?;
            if parts.len() == 1 {
                return Ok(parts.remove(0));
            }
            let ty = Ty::Tuple(parts.iter().map(|p| p.ty.clone()).collect());
            Ok(self.mk(TKind::Tuple(parts), ty, item.body.value.span))
        })();
        self.lets = saved_lets;
        self.frames.pop();
        // An error inside the standard library is the call's: report it at the user's call, with
        // the place in the library as context, and never suggest editing the library.
        let is_std = |f: FileId| self.prog.sources.name(f).starts_with("<std>");
        if r.is_err()
            && self.diags.len() > mark
            && is_std(file)
            && !is_std(caller_file)
            && let Some(d) = self.diags.last_mut()
            && d.file == file
        {
            let fname = &item.name.name;
            let module = tk_stdlib::defining_module(fname).unwrap_or("");
            let arg = first_arg
                .and_then(|(f, s)| self.prog.sources.source(f).get(s.lo as usize..s.hi as usize))
                .unwrap_or("x")
                .to_string();
            let help = if d.code == Code::NeedsFloat {
                format!("`{fname}` computes in floats: cast the argument, e.g. `{fname}({arg} as f32)`")
            } else {
                format!(
                    "check the arguments against `std::{module}::{fname}` (docs/stdlib.md lists its signature and \
                     what it does)"
                )
            };
            let inner = std::mem::replace(
                d,
                Diag::new(
                    d.code,
                    caller_file,
                    call_span,
                    format!("this call of `{fname}` fails inside it: {}", d.message),
                )
                .help(help),
            );
            let label = if inner.label.is_empty() { "here".to_string() } else { inner.label.clone() };
            d.secondary.push((inner.file, inner.span, format!("inside `{fname}` (std::{module}): {label}")));
        }
        if (r.is_err() && self.diags.len() > mark && caller_file != file
            || (r.is_err() && self.inline_stack.len() > 1 && self.diags.len() > mark))
            && let Some(d) = self.diags.last_mut()
            && !d.secondary.iter().any(|(_, _, l)| l.starts_with("in this call"))
        {
            d.secondary.push((caller_file, call_span, format!("in this call of `{}`", item.name.name)));
        }
        r
    }
}

pub(super) fn unreachable_retry() {}

/// Re-wraps the node an inlined call produced, with the call's span (children are shared).
pub(super) fn clone_kind(r: &R) -> TKind {
    match &r.kind {
        TKind::Lit(l) => TKind::Lit(*l),
        TKind::Dim(d) => TKind::Dim(d.clone()),
        TKind::Tuple(v) => TKind::Tuple(v.clone()),
        _ => TKind::Proj(
            Rc::new(TExpr {
                kind: TKind::Tuple(vec![r.clone()]),
                ty: Ty::Tuple(vec![r.ty.clone()]),
                file: r.file,
                span: r.span,
            }),
            0,
        ),
    }
}

/// The help for a call of an unknown fn: the standard module that defines it, else the closest
/// visible name, else how to import or define one.
pub(super) fn unknown_fn_help(name: &str, candidates: &[String]) -> String {
    if let Some(m) = tk_stdlib::defining_module(name) {
        return format!("`{name}` is in the standard library: import it with `use std::{m}::{{{name}}};`");
    }
    let stdlib: Vec<String> = tk_stdlib::items().into_iter().map(|i| i.name).collect();
    match suggest(name, candidates.iter().chain(&stdlib).map(|s| s.as_str())) {
        Some(s) if !candidates.contains(&s) => {
            let m = tk_stdlib::defining_module(&s).unwrap_or("nn");
            format!("did you mean `{s}`? It is in the standard library: `use std::{m}::{{{s}}};`")
        }
        Some(s) => format!("did you mean `{s}`?"),
        None => "import it with `use std::MODULE::{NAME};` (docs/stdlib.md lists the standard fns), or define it \
                 with `fn`"
            .into(),
    }
}
