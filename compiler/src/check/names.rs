//! Name resolution: what a name refers to, the name pass over each `fn` body with its "did you
//! mean" suggestions, and the recursion check.

use super::*;

impl<'p> Checker<'p> {
    /// Finds an item visible from module `mid`: (defining module, item).
    pub(super) fn find_item(&self, mid: ModId, name: &str) -> Option<(ModId, &'p Item)> {
        let m = &self.prog.modules[mid];
        if let Some(&i) = m.defs.get(name) {
            return Some((mid, &m.ast.items[i]));
        }
        let &(tm, i, _) = m.imports.get(name)?;
        Some((tm, &self.prog.modules[tm].ast.items[i]))
    }

    pub(super) fn visible_names(&self, mid: ModId) -> Vec<String> {
        let m = &self.prog.modules[mid];
        let mut v: Vec<String> = m.defs.keys().chain(m.imports.keys()).cloned().collect();
        if let Some(f) = self.frames.last() {
            for s in &f.scopes {
                v.extend(s.iter().map(|(n, _)| n.clone()));
            }
        }
        v
    }

    // ---------------------------------------------------------------- name resolution pass

    /// Reports unknown names, unknown functions and recursion in `f` without typing it, so that
    /// generic fns nobody calls are still checked.
    pub(super) fn resolve_names(&mut self, mid: ModId, f: &ast::FnItem) {
        let file = self.prog.modules[mid].file;
        let mut scope: Vec<String> = f.dims.iter().map(|d| d.name.clone()).collect();
        let mut seen = HashSet::new();
        for p in &f.params {
            if !seen.insert(p.name.name.clone()) {
                self.diags.push(
                    Diag::new(
                        Code::DuplicateParam,
                        file,
                        p.name.span,
                        format!("parameter `{}` is declared twice", p.name.name),
                    )
                    .label("declared again here")
                    .help("give each parameter its own name"),
                );
            }
            scope.push(p.name.name.clone());
            if let Some(t) = &p.ty {
                // Every name in a parameter's shape is a dimension (unbound ones are reported
                // when the kernel is checked).
                for d in t.dims.iter().flatten() {
                    let mut stack = vec![d];
                    while let Some(e) = stack.pop() {
                        if let ExprKind::Name(n) = &e.kind {
                            scope.push(n.name.clone());
                        }
                        stack.extend(e.children());
                    }
                }
            }
        }
        // Every dimension name in a parameter or result type counts as declared.
        let mut r =
            NameWalk { checker: self, mid, file, scopes: vec![scope], fn_name: f.name.name.clone(), calls: Vec::new() };
        r.block(&f.body);
        let calls = std::mem::take(&mut r.calls);
        if f.kind == FnKind::Fn {
            self.find_recursion(mid, f, calls);
        }
    }

    pub(super) fn find_recursion(&mut self, mid: ModId, f: &ast::FnItem, direct: Vec<(String, Span)>) {
        // Depth-first search over the call graph from f's direct calls, looking for f.
        let target = (mid, f.name.name.clone());
        let mut stack: Vec<(ModId, String, Vec<String>)> =
            direct.iter().map(|(n, _)| (mid, n.clone(), vec![f.name.name.clone(), n.clone()])).collect();
        let mut visited = HashSet::new();
        while let Some((m, name, path)) = stack.pop() {
            let Some((dm, Item::Fn(g))) = self.find_item(m, &name) else { continue };
            if (dm, g.name.name.clone()) == target {
                if self.reported_recursion.insert(format!("{mid}:{}", f.name.name)) {
                    for n in &path {
                        self.reported_recursion.insert(format!("{mid}:{n}"));
                    }
                    let first = direct.iter().find(|(n, _)| *n == path[1]).map(|(_, s)| *s).unwrap_or(f.name.span);
                    let label = if path.len() == 2 {
                        "this fn calls itself".to_string()
                    } else {
                        format!("this fn reaches itself through `{}`", path[1])
                    };
                    let d = Diag::new(
                        Code::Recursion,
                        self.prog.modules[mid].file,
                        f.name.span,
                        format!("`{}` is recursive", f.name.name),
                    )
                    .label(label)
                    .secondary(self.prog.modules[mid].file, first, format!("cycle: {}", path.join(" -> ")))
                    .help("fns are inlined, so they cannot recurse; use a `loop` with carried values");
                    self.diags.push(d);
                }
                return;
            }
            if !visited.insert((dm, g.name.name.clone())) {
                continue;
            }
            let mut calls = Vec::new();
            collect_calls(&g.body, &mut calls);
            for c in calls {
                let mut p = path.clone();
                p.push(c.clone());
                stack.push((dm, c, p));
            }
        }
    }

    // ---------------------------------------------------------------- constants

    pub(super) fn elab_name(&mut self, n: &ast::Ident) -> Res<R> {
        match self.lookup(&n.name) {
            Some(Binding::Value(v)) => {
                // Leaves are cheap to copy: give them the use site, so errors point there.
                let kind = match &v.kind {
                    TKind::Param(i) => Some(TKind::Param(*i)),
                    TKind::Var(i) => Some(TKind::Var(*i)),
                    TKind::Carried(i) => Some(TKind::Carried(*i)),
                    TKind::Lit(l) => Some(TKind::Lit(*l)),
                    TKind::Dim(d) => Some(TKind::Dim(d.clone())),
                    _ => None,
                };
                return Ok(match kind {
                    Some(k) => self.mk(k, v.ty.clone(), n.span),
                    None => v,
                });
            }
            Some(Binding::Dim(d)) => {
                let r = self.mk(TKind::Dim(d), Ty::scalar(Elem::D(DType::I64)), n.span);
                return Ok(r);
            }
            None => {}
        }
        let m = self.module();
        match self.find_item(m, &n.name) {
            Some((_, Item::Const(_))) => {
                let v = self.const_value(m, &n.name, n.span)?;
                return Ok(Rc::new(TExpr { kind: clone_lit(&v), ty: v.ty.clone(), file: self.file(), span: n.span }));
            }
            Some((_, Item::Fn(f))) => {
                let what = if f.kind == FnKind::Kernel { "kernel" } else { "fn" };
                return Err(self.err(
                    self.diag(Code::NotAValue, n.span, format!("`{}` is a {what}, not a value", n.name))
                        .label("used as a value here")
                        .help(format!("call it: `{}(...)`", n.name)),
                ));
            }
            _ => {}
        }
        if let Some((_, v)) = crate::load::BUILTIN_CONSTS.iter().find(|(c, _)| *c == n.name) {
            return Ok(self.mk(TKind::Lit(Lit::Float(*v)), Ty::scalar(Elem::FloatLit), n.span));
        }
        if BUILTINS.contains(&n.name.as_str()) || is_dtype_name(&n.name) {
            let what = if is_dtype_name(&n.name) { "a dtype" } else { "a builtin function" };
            return Err(self.err(
                self.diag(Code::NotAValue, n.span, format!("`{}` is {what}, not a value", n.name))
                    .label("used as a value here"),
            ));
        }
        let mut d =
            self.diag(Code::UnknownName, n.span, format!("cannot find `{}` in this scope", n.name)).label("not found");
        let cands = self.visible_names(m);
        if let Some(s) = suggest(&n.name, cands.iter().map(|s| s.as_str())) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        Err(self.err(d))
    }
}

pub(super) fn is_dtype_name(s: &str) -> bool {
    DType::parse(s).is_some()
}

/// Calls made in a block, by name (for the recursion check).
pub(super) fn collect_calls(b: &ast::Block, out: &mut Vec<String>) {
    let mut stack: Vec<&ast::Expr> = Vec::new();
    for s in &b.stmts {
        match s {
            Stmt::Let { value, .. } => stack.push(value),
            Stmt::BreakIf { cond, .. } => stack.push(cond),
        }
    }
    stack.push(&b.value);
    while let Some(e) = stack.pop() {
        if let ExprKind::Call(f, _) = &e.kind {
            out.push(f.name.clone());
        }
        stack.extend(e.children());
    }
}

/// The name pass over one fn body.
pub(super) struct NameWalk<'c, 'p> {
    checker: &'c mut Checker<'p>,
    mid: ModId,
    file: FileId,
    scopes: Vec<Vec<String>>,
    fn_name: String,
    calls: Vec<(String, Span)>,
}

impl NameWalk<'_, '_> {
    fn known(&self, n: &str) -> bool {
        self.scopes.iter().any(|s| s.iter().any(|x| x == n))
    }
    fn block(&mut self, b: &ast::Block) {
        self.scopes.push(Vec::new());
        for s in &b.stmts {
            match s {
                Stmt::Let { pat, value, ty, .. } => {
                    if let Some(t) = ty {
                        for d in t.dims.iter().flatten() {
                            self.expr(d);
                        }
                    }
                    self.expr(value);
                    let names: Vec<String> = match pat {
                        ast::Pattern::Name(n) => vec![n.name.clone()],
                        ast::Pattern::Tuple(ns, _) => ns.iter().map(|n| n.name.clone()).collect(),
                    };
                    if let Some(s) = self.scopes.last_mut() {
                        s.extend(names);
                    }
                }
                Stmt::BreakIf { cond, .. } => self.expr(cond),
            }
        }
        self.expr(&b.value);
        self.scopes.pop();
    }
    fn binders(&mut self, bs: &[ast::Binder]) {
        for b in bs {
            if let Some(r) = &b.range {
                self.expr(&r.lo);
                self.expr(&r.hi);
            }
        }
        self.scopes.push(bs.iter().map(|b| b.name.name.clone()).collect());
    }
    fn expr(&mut self, e: &ast::Expr) {
        match &e.kind {
            ExprKind::Name(n) => {
                let ok = self.known(&n.name)
                    || self.checker.find_item(self.mid, &n.name).is_some()
                    || BUILTINS.contains(&n.name.as_str())
                    || crate::load::BUILTIN_CONSTS.iter().any(|(c, _)| *c == n.name)
                    || is_dtype_name(&n.name);
                if !ok {
                    let mut cands: Vec<String> = self.scopes.iter().flatten().cloned().collect();
                    cands.extend(self.checker.visible_names(self.mid));
                    let mut d = Diag::new(
                        Code::UnknownName,
                        self.file,
                        n.span,
                        format!("cannot find `{}` in this scope", n.name),
                    )
                    .label("not found");
                    if let Some(s) = suggest(&n.name, cands.iter().map(|s| s.as_str())) {
                        d = d.help(format!("did you mean `{s}`?"));
                    }
                    let dup = self.checker.diags.iter().any(|x| {
                        x.file == self.file && x.span == n.span && x.code == Code::UnknownName && x.span.lo == n.span.lo
                    });
                    if !dup {
                        self.checker.diags.push(d);
                    }
                }
            }
            ExprKind::Call(f, args) => {
                let is_item = matches!(self.checker.find_item(self.mid, &f.name), Some((_, Item::Fn(_))));
                if is_item {
                    self.calls.push((f.name.clone(), f.span));
                } else if !BUILTINS.contains(&f.name.as_str())
                    && !self.known(&f.name)
                    && self.checker.find_item(self.mid, &f.name).is_none()
                {
                    let mut cands: Vec<String> = BUILTINS.iter().map(|s| s.to_string()).collect();
                    cands.extend(self.checker.visible_names(self.mid));
                    let mut d = Diag::new(
                        Code::UnknownFunction,
                        self.file,
                        f.span,
                        format!("cannot find function `{}`", f.name),
                    )
                    .label("not a builtin or a visible fn");
                    d = d.help(super::calls::unknown_fn_help(&f.name, &cands));
                    self.checker.diags.push(d);
                }
                let _ = &self.fn_name;
                match args {
                    CallArgs::List(list) => {
                        for a in list {
                            // `dtype: f32` names a dtype; nothing to resolve.
                            self.expr(&a.value);
                        }
                    }
                    CallArgs::Reduce(bs, body) => {
                        self.binders(bs);
                        self.expr(body);
                        self.scopes.pop();
                    }
                }
            }
            ExprKind::Comprehension(bs, body) => {
                self.binders(bs);
                self.expr(body);
                self.scopes.pop();
            }
            ExprKind::Block(b) => self.block(b),
            ExprKind::Loop { var, range, carried, body } => {
                self.expr(&range.lo);
                self.expr(&range.hi);
                for (_, c) in carried {
                    self.expr(c);
                }
                let mut names = vec![var.name.clone()];
                names.extend(carried.iter().map(|(n, _)| n.name.clone()));
                self.scopes.push(names);
                self.block(body);
                self.scopes.pop();
            }
            _ => {
                for c in e.children() {
                    self.expr(c);
                }
            }
        }
    }
}
