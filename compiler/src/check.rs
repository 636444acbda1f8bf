//! Name resolution, dtype inference and shape inference with symbolic dimensions, by elaborating
//! every kernel (and every fully typed `fn`) into the typed tree of [`crate::tast`].

use crate::ast::{self, BinOp, CallArgs, ExprKind, FnKind, Item, Span, Stmt, UnOp};
use crate::diag::{Code, Diag, FileId};
use crate::dims::Dim;
use crate::load::{BUILTINS, ModId, Program};
use crate::tast::*;
use crate::types::{DType, Elem, Ty, shape_str};
use std::collections::{HashMap, HashSet};
use std::sync::Arc as Rc;

/// Most nested `fn` inlinings (documented in docs/language.md).
pub const MAX_INLINE_DEPTH: usize = 64;
/// Most nested elaboration steps, a guard for the stack.
const MAX_ELAB_DEPTH: u32 = 6000;
/// Most expression nodes one kernel may expand to after inlining (documented in docs/language.md).
pub const MAX_ELAB_STEPS: u64 = 1_000_000;

/// A diagnostic has been recorded; elaboration of the current item stops.
#[derive(Debug)]
pub struct Reported;
type Res<T> = Result<T, Reported>;

/// The closest candidate by edit distance, if close enough to suggest.
pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(name, c);
        if d <= (name.len().max(2) / 3).max(1) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[derive(Clone)]
enum Binding {
    Value(R),
    Dim(Dim),
}

struct Fact {
    key: String,
    lo: Option<Dim>,
    hi: Option<Dim>,
}

/// The context of one function body being elaborated.
struct Frame {
    module: ModId,
    file: FileId,
    scopes: Vec<Vec<(String, Binding)>>,
}

pub struct Checker<'p> {
    prog: &'p Program,
    pub diags: Vec<Diag>,
    frames: Vec<Frame>,
    inline_stack: Vec<(ModId, String)>,
    depth: u32,
    /// Elaboration steps for the current item, bounded by MAX_ELAB_STEPS.
    steps: u64,
    next_var: u32,
    vars: HashMap<u32, (Dim, Dim)>,
    facts: Vec<Fact>,
    const_cache: HashMap<(ModId, String), Option<R>>,
    const_busy: HashSet<(ModId, String)>,
    lets: Vec<(String, Ty)>,
    reported_recursion: HashSet<String>,
}

/// Checks every module of a program; returns the checked kernels of the root module.
pub fn check_program(prog: &Program) -> (Vec<CheckedKernel>, Vec<Diag>) {
    let mut c = Checker {
        prog,
        diags: Vec::new(),
        frames: Vec::new(),
        inline_stack: Vec::new(),
        depth: 0,
        steps: 0,
        next_var: 0,
        vars: HashMap::new(),
        facts: Vec::new(),
        const_cache: HashMap::new(),
        const_busy: HashSet::new(),
        lets: Vec::new(),
        reported_recursion: HashSet::new(),
    };
    let mut kernels = Vec::new();
    for (mid, m) in prog.modules.iter().enumerate() {
        for item in &m.ast.items {
            match item {
                Item::Use(_) => {}
                Item::Const(k) => {
                    let _ = c.const_value(mid, &k.name.name, k.name.span);
                }
                Item::Fn(f) => {
                    c.steps = 0;
                    c.resolve_names(mid, f);
                    match f.kind {
                        FnKind::Kernel => {
                            if let Ok(k) = c.check_kernel(mid, f)
                                && mid == 0
                            {
                                kernels.push(k);
                            }
                        }
                        FnKind::Fn => c.check_typed_fn(mid, f),
                    }
                }
            }
        }
    }
    (kernels, c.diags)
}

fn is_dtype_name(s: &str) -> bool {
    DType::parse(s).is_some()
}

impl<'p> Checker<'p> {
    fn file(&self) -> FileId {
        self.frames.last().map(|f| f.file).unwrap_or(0)
    }
    fn module(&self) -> ModId {
        self.frames.last().map(|f| f.module).unwrap_or(0)
    }
    fn err(&mut self, d: Diag) -> Reported {
        // Point at the call site when the error is inside an inlined fn.
        self.diags.push(d);
        Reported
    }
    fn diag(&self, code: Code, span: Span, msg: impl Into<String>) -> Diag {
        Diag::new(code, self.file(), span, msg)
    }
    /// The source text at `span` in the current file, when it is short enough to quote.
    pub(crate) fn snippet(&self, span: Span) -> Option<String> {
        let src = self.prog.sources.source(self.file());
        let t = src.get(span.range())?;
        (t.len() <= 40 && !t.contains('\n')).then(|| t.to_string())
    }
    fn mk(&self, kind: TKind, ty: Ty, span: Span) -> R {
        Rc::new(TExpr { kind, ty, file: self.file(), span })
    }
    fn fresh_var(&mut self) -> u32 {
        self.next_var += 1;
        self.next_var
    }

    fn lookup(&self, name: &str) -> Option<Binding> {
        let f = self.frames.last()?;
        for scope in f.scopes.iter().rev() {
            for (n, b) in scope.iter().rev() {
                if n == name {
                    return Some(b.clone());
                }
            }
        }
        None
    }
    fn bind(&mut self, name: &str, b: Binding) {
        if let Some(f) = self.frames.last_mut()
            && let Some(s) = f.scopes.last_mut()
        {
            s.push((name.to_string(), b));
        }
    }
    fn push_scope(&mut self) {
        if let Some(f) = self.frames.last_mut() {
            f.scopes.push(Vec::new());
        }
    }
    fn pop_scope(&mut self) {
        if let Some(f) = self.frames.last_mut() {
            f.scopes.pop();
        }
    }

    /// Finds an item visible from module `mid`: (defining module, item).
    fn find_item(&self, mid: ModId, name: &str) -> Option<(ModId, &'p Item)> {
        let m = &self.prog.modules[mid];
        if let Some(&i) = m.defs.get(name) {
            return Some((mid, &m.ast.items[i]));
        }
        let &(tm, i, _) = m.imports.get(name)?;
        Some((tm, &self.prog.modules[tm].ast.items[i]))
    }

    fn visible_names(&self, mid: ModId) -> Vec<String> {
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
    fn resolve_names(&mut self, mid: ModId, f: &ast::FnItem) {
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

    fn find_recursion(&mut self, mid: ModId, f: &ast::FnItem, direct: Vec<(String, Span)>) {
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

    fn const_value(&mut self, mid: ModId, name: &str, use_span: Span) -> Res<R> {
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

    fn elab_const(&mut self, c: &ast::ConstItem) -> Res<R> {
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

    fn dtype_of(&mut self, name: &ast::Ident) -> Res<DType> {
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

    fn check_kernel(&mut self, mid: ModId, f: &ast::FnItem) -> Res<CheckedKernel> {
        let file = self.prog.modules[mid].file;
        self.frames.push(Frame { module: mid, file, scopes: vec![vec![]] });
        self.lets.clear();
        let r = self.check_kernel_inner(f);
        self.frames.pop();
        r
    }

    fn check_kernel_inner(&mut self, f: &ast::FnItem) -> Res<CheckedKernel> {
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

    fn is_int_const(&mut self, name: &str) -> bool {
        let m = self.module();
        matches!(self.find_item(m, name), Some((_, Item::Const(_))))
    }

    fn resolve_ret(&mut self, ret: Option<&ast::RetType>, span: Span) -> Res<(Vec<(String, Ty)>, Ty)> {
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

    fn conform_outputs(&mut self, body: R, outputs: &[(String, Ty)], f: &ast::FnItem) -> Res<Vec<R>> {
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

    fn tuple_parts(&self, r: &R) -> Vec<R> {
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
    fn check_typed_fn(&mut self, mid: ModId, f: &'p ast::FnItem) {
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
            self.inline_fn(mid, f, args.into_iter().map(Some).collect(), f.name.span).map(|_| ())
        })();
        self.inline_stack.pop();
        self.frames.pop();
    }

    // ---------------------------------------------------------------- types

    fn resolve_type(&mut self, t: &ast::Type) -> Res<Ty> {
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

    /// A dimension expression in a type: names of dimensions, integer constants and `+ - * /`.
    fn dim_of(&mut self, e: &ast::Expr) -> Res<Dim> {
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

    /// Gives a weak (literal) value the dtype `d`, checking that constants fit.
    fn coerce(&mut self, r: R, d: DType, span: Span) -> Res<R> {
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
            TKind::Builtin(name, args, attrs) if *name == "where" => TKind::Builtin(
                name,
                vec![args[0].clone(), self.coerce(args[1].clone(), d, span)?, self.coerce(args[2].clone(), d, span)?],
                attrs.clone(),
            ),
            _ => TKind::Cast(d, r.clone()),
        };
        Ok(Rc::new(TExpr { kind, ty, file: r.file, span: r.span }))
    }

    fn lit_to(&mut self, l: Lit, d: DType, span: Span) -> Res<Lit> {
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
                if v.abs() > max * (1.0 + 2f64.powi(-11)) {
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
    fn conform(&mut self, r: R, ty: &Ty, span: Span, what: &str) -> Res<R> {
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
    fn unify(&mut self, a: R, b: R, span: Span) -> Res<(R, R, Elem)> {
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
            (Elem::D(x), Elem::D(y)) => {
                let is_index = |r: &R| matches!(r.kind, TKind::Var(_) | TKind::Dim(_));
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

    fn elem(&mut self, r: &R) -> Res<Elem> {
        match &r.ty {
            Ty::Arr(e, _) => Ok(*e),
            Ty::Tuple(ts) => Err(self.err(
                self.diag(Code::TupleAsArray, r.span, "a tuple used as an array")
                    .label(format!("this is a tuple of {}", ts.len()))
                    .help("destructure it first: `let (a, b) = ...;`"),
            )),
        }
    }

    fn broadcast(&mut self, a: &R, b: &R, span: Span) -> Res<Vec<Dim>> {
        self.broadcast_shapes(a.shape_of(), b.shape_of(), span, Some((a, b)))
    }

    fn broadcast_shapes(&mut self, sa: &[Dim], sb: &[Dim], span: Span, ops: Option<(&R, &R)>) -> Res<Vec<Dim>> {
        let n = sa.len().max(sb.len());
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let x = if i + sa.len() >= n { Some(&sa[i + sa.len() - n]) } else { None };
            let y = if i + sb.len() >= n { Some(&sb[i + sb.len() - n]) } else { None };
            let d = match (x, y) {
                (Some(x), None) => x.clone(),
                (None, Some(y)) => y.clone(),
                (Some(x), Some(y)) if x == y => x.clone(),
                (Some(x), Some(y)) if x.is_one() => y.clone(),
                (Some(x), Some(y)) if y.is_one() => x.clone(),
                (Some(x), Some(y)) => {
                    let mut d = self
                        .diag(
                            Code::Broadcast,
                            span,
                            format!("shapes {} and {} cannot be broadcast", shape_str(sa), shape_str(sb)),
                        )
                        .label(format!("dimension `{x}` meets dimension `{y}`"));
                    if let Some((a, b)) = ops {
                        d = d.secondary(a.file, a.span, format!("shape {}", shape_str(sa))).secondary(
                            b.file,
                            b.span,
                            format!("shape {}", shape_str(sb)),
                        );
                    }
                    d = if x.as_const().is_none() && y.as_const().is_none() {
                        d.help("dimensions with different names are different sizes; if they are the same size, use one name in both parameters")
                    } else {
                        d.help("to line up other axes, insert size-1 axes with `new`, e.g. `b[:, new]`")
                    };
                    d = d.note("broadcasting aligns shapes from the right; a dimension of 1 stretches");
                    return Err(self.err(d));
                }
                (None, None) => Dim::constant(1),
            };
            out.push(d);
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- expressions

    fn elab_expr(&mut self, e: &ast::Expr, expected: Option<&Ty>) -> Res<R> {
        self.depth += 1;
        self.steps += 1;
        if self.steps == MAX_ELAB_STEPS {
            self.depth -= 1;
            return Err(self.err(
                self.diag(
                    Code::InlineTooDeep,
                    e.span,
                    format!("the program expands to more than {MAX_ELAB_STEPS} expressions after inlining"),
                )
                .label("expansion stops here")
                .help("a fn that calls another fn several times multiplies the work; bind shared results with `let`"),
            ));
        }
        if self.steps > MAX_ELAB_STEPS {
            self.depth -= 1;
            return Err(Reported);
        }
        if self.depth > MAX_ELAB_DEPTH {
            self.depth -= 1;
            return Err(self.err(
                self.diag(Code::InlineTooDeep, e.span, "program too deeply nested after inlining")
                    .label("elaboration gives up here")
                    .help("split deep expressions with `let` bindings"),
            ));
        }
        let r = self.elab_inner(e, expected);
        self.depth -= 1;
        r
    }

    fn elab_inner(&mut self, e: &ast::Expr, expected: Option<&Ty>) -> Res<R> {
        let span = e.span;
        match &e.kind {
            ExprKind::Int(v) => Ok(self.mk(TKind::Lit(Lit::Int(*v as i128)), Ty::scalar(Elem::IntLit), span)),
            ExprKind::Float(v) => Ok(self.mk(TKind::Lit(Lit::Float(*v)), Ty::scalar(Elem::FloatLit), span)),
            ExprKind::Bool(v) => Ok(self.mk(TKind::Lit(Lit::Bool(*v)), Ty::scalar(Elem::D(DType::Bool)), span)),
            ExprKind::Name(n) => self.elab_name(n),
            ExprKind::Unary(op, a) => {
                let a = self.elab(a, None)?;
                self.unary(*op, a, span)
            }
            ExprKind::Binary(op, a, b) => {
                let a = self.elab(a, None)?;
                let b = self.elab(b, None)?;
                self.binary(*op, a, b, span)
            }
            ExprKind::Cast(a, t) => {
                let a = self.elab(a, None)?;
                let d = self.dtype_of(t)?;
                self.cast(a, d, span)
            }
            ExprKind::Call(f, args) => self.elab_call(f, args, span, expected),
            ExprKind::Index(a, items) => {
                let a = self.elab(a, None)?;
                self.index(a, items, span)
            }
            ExprKind::Tuple(es) => {
                let mut v = Vec::new();
                for (i, x) in es.iter().enumerate() {
                    let exp = match expected {
                        Some(Ty::Tuple(ts)) => ts.get(i),
                        _ => None,
                    };
                    v.push(self.elab(x, exp)?);
                }
                let ty = Ty::Tuple(v.iter().map(|r| r.ty.clone()).collect());
                Ok(self.mk(TKind::Tuple(v), ty, span))
            }
            ExprKind::Block(b) => self.elab_block(b, expected),
            ExprKind::Comprehension(bs, body) => self.comprehension(bs, body, span, expected),
            ExprKind::Loop { var, range, carried, body } => self.elab_loop(var, range, carried, body, span),
        }
    }

    fn elab_name(&mut self, n: &ast::Ident) -> Res<R> {
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

    fn unary(&mut self, op: UnOp, a: R, span: Span) -> Res<R> {
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

    fn fold_wrap(&self, l: Lit, d: DType) -> Lit {
        match (l, d.int_range()) {
            (Lit::Int(v), Some((lo, hi))) => {
                let m = hi - lo + 1;
                Lit::Int((v - lo).rem_euclid(m) + lo)
            }
            _ => l,
        }
    }

    fn binary(&mut self, op: BinOp, a: R, b: R, span: Span) -> Res<R> {
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

    fn pow(&mut self, a: R, b: R, span: Span) -> Res<R> {
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

    fn cast(&mut self, a: R, d: DType, span: Span) -> Res<R> {
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

    fn matmul(&mut self, a: R, b: R, span: Span) -> Res<R> {
        let (a, b, e) = self.unify(a, b, span)?;
        if e.is_bool() {
            return Err(self.err(
                self.diag(Code::OpNotSupported, span, "`@` is not defined for bool")
                    .label("bool operands")
                    .help("cast to a number type first"),
            ));
        }
        let (sa, sb) = (a.shape_of().to_vec(), b.shape_of().to_vec());
        for (r, s) in [(&a, &sa), (&b, &sb)] {
            if s.is_empty() {
                return Err(self.err(
                    self.diag(Code::MatmulScalar, r.span, "`@` needs arrays of rank 1 or more")
                        .label("this is a scalar")
                        .help("use `*` to scale by a scalar"),
                ));
            }
        }
        let ka = sa[sa.len() - 1].clone();
        let kb = if sb.len() == 1 { sb[0].clone() } else { sb[sb.len() - 2].clone() };
        if ka != kb {
            return Err(self.err(
                self.diag(
                    Code::MatmulInner,
                    span,
                    format!("matrix product of {} and {}", shape_str(&sa), shape_str(&sb)),
                )
                .label(format!("inner dimensions `{ka}` and `{kb}` differ"))
                .secondary(a.file, a.span, format!("shape {}", shape_str(&sa)))
                .secondary(b.file, b.span, format!("shape {}", shape_str(&sb)))
                .help("the last dimension of the left operand must equal the first matrix dimension of the right one"),
            ));
        }
        let batch_a = if sa.len() > 2 { &sa[..sa.len() - 2] } else { &[] };
        let batch_b = if sb.len() > 2 { &sb[..sb.len() - 2] } else { &[] };
        let mut shape = self.broadcast_shapes(batch_a, batch_b, span, Some((&a, &b)))?;
        if sa.len() >= 2 {
            shape.push(sa[sa.len() - 2].clone());
        }
        if sb.len() >= 2 {
            shape.push(sb[sb.len() - 1].clone());
        }
        Ok(self.mk(TKind::Binary(BinOp::MatMul, a, b), Ty::Arr(e, shape), span))
    }

    // ---------------------------------------------------------------- blocks, lets, loops

    fn elab_block(&mut self, b: &ast::Block, expected: Option<&Ty>) -> Res<R> {
        self.push_scope();
        let r = self.elab_block_inner(b, expected);
        self.pop_scope();
        r
    }

    fn elab_block_inner(&mut self, b: &ast::Block, expected: Option<&Ty>) -> Res<R> {
        for s in &b.stmts {
            match s {
                Stmt::Let { pat, ty, value, .. } => self.elab_let(pat, ty.as_ref(), value)?,
                // A loop body handles its own `break if` (elab_loop); anywhere else it is an error.
                Stmt::BreakIf { span, .. } => {
                    return Err(self.err(
                        self.diag(Code::BreakOutsideLoop, *span, "`break if` outside a loop body")
                            .label("not directly inside a `loop` body")
                            .help("`break if cond;` is a statement of a `loop ... with (...) { ... }` body"),
                    ));
                }
            }
        }
        self.elab(&b.value, expected)
    }

    /// `let pat: ty = value;`
    fn elab_let(&mut self, pat: &ast::Pattern, ty: Option<&ast::Type>, value: &ast::Expr) -> Res<()> {
        let decl = match ty {
            Some(t) => Some(self.resolve_type(t)?),
            None => None,
        };
        let mut v = self.elab(value, decl.as_ref())?;
        if let (Some(d), Some(t)) = (&decl, ty) {
            v = self.conform(v, d, value.span, &format!("the annotation `{}`", type_text(t)))?;
        }
        self.bind_pattern(pat, v, value.span)
    }

    fn bind_pattern(&mut self, pat: &ast::Pattern, v: R, span: Span) -> Res<()> {
        match pat {
            ast::Pattern::Name(n) => {
                self.lets.push((n.name.clone(), v.ty.clone()));
                self.bind(&n.name, Binding::Value(v));
            }
            ast::Pattern::Tuple(names, ps) => {
                let Ty::Tuple(ts) = &v.ty else {
                    return Err(self.err(
                        self.diag(Code::NotATuple, span, format!("cannot destructure a value of type {}", v.ty))
                            .label("not a tuple")
                            .secondary(self.file(), *ps, format!("this pattern expects {} values", names.len())),
                    ));
                };
                if ts.len() != names.len() {
                    return Err(self.err(
                        self.diag(
                            Code::TupleMismatch,
                            *ps,
                            format!("pattern has {} names but the value has {} parts", names.len(), ts.len()),
                        )
                        .label(format!("{} names", names.len()))
                        .secondary(self.file(), span, format!("a tuple of {}", ts.len())),
                    ));
                }
                let mut seen = HashSet::new();
                for n in names {
                    if !seen.insert(n.name.clone()) && n.name != "_" {
                        return Err(self.err(
                            self.diag(
                                Code::DuplicateParam,
                                n.span,
                                format!("`{}` is bound twice in this pattern", n.name),
                            )
                            .label("bound again here"),
                        ));
                    }
                }
                for (n, p) in names.iter().zip(self.tuple_parts(&v)) {
                    self.lets.push((n.name.clone(), p.ty.clone()));
                    self.bind(&n.name, Binding::Value(p));
                }
            }
        }
        Ok(())
    }

    fn range_of(&mut self, r: &ast::RangeExpr) -> Res<(Dim, Dim)> {
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

    fn new_ivar(&mut self, name: &ast::Ident, lo: Dim, extent: Dim) -> (IVar, R) {
        let id = self.fresh_var();
        let hi = lo.add(&extent).add_const(-1);
        self.vars.insert(id, (lo.clone(), hi));
        let r = self.mk(TKind::Var(id), Ty::scalar(Elem::D(DType::I64)), name.span);
        (IVar { id, name: name.name.clone(), lo, extent }, r)
    }

    fn comprehension(&mut self, bs: &[ast::Binder], body: &ast::Expr, span: Span, expected: Option<&Ty>) -> Res<R> {
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
                                "annotate the binding (`let y: f32[n, m] = ...`) or give a range: `[{} in 0..n]`",
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

    fn elab_loop(
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
    fn loop_attempt(
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

    fn index(&mut self, a: R, items: &[ast::IndexItem], span: Span) -> Res<R> {
        let Ty::Arr(e, shape) = a.ty.clone() else {
            return Err(self.err(
                self.diag(Code::TupleAsArray, a.span, "cannot index a tuple")
                    .label(format!("this is {}", a.ty))
                    .help("destructure it first: `let (a, b) = ...;`"),
            ));
        };
        let consumed = items.iter().filter(|i| !matches!(i, ast::IndexItem::New(_))).count();
        if consumed > shape.len() {
            return Err(self.err(
                self.diag(
                    Code::TooManyIndices,
                    span,
                    format!("{consumed} indices for an array of rank {}", shape.len()),
                )
                .label(format!("this array has shape {}", shape_str(&shape)))
                .secondary(a.file, a.span, format!("rank {}", shape.len())),
            ));
        }
        if items.is_empty() {
            return Err(self.err(
                self.diag(Code::TooManyIndices, span, "empty index")
                    .label("nothing between `[` and `]`")
                    .help("write `x[i]`, `x[1:]` or `x[:, new]`"),
            ));
        }
        let mut out_items = Vec::new();
        let mut out_shape = Vec::new();
        let mut axis = 0;
        for it in items {
            match it {
                ast::IndexItem::New(_) => {
                    out_items.push(TIndex::New);
                    out_shape.push(Dim::constant(1));
                }
                ast::IndexItem::Expr(x) => {
                    let size = shape[axis].clone();
                    let v = self.elab(x, None)?;
                    let ve = self.elem(&v)?;
                    if !ve.is_int() {
                        return Err(self.err(
                            self.diag(Code::IndexNotInt, x.span, format!("an index must be an integer, found {ve}"))
                                .label("not an integer")
                                .help(match (ve.is_float(), self.snippet(x.span)) {
                                    (true, Some(t)) if ve == Elem::FloatLit => {
                                        format!("write an integer, e.g. `{}`", t.split('.').next().unwrap_or("0"))
                                    }
                                    (true, Some(t)) => format!("convert it: `{t} as i32`"),
                                    (true, None) => "convert it with `as i32`".to_string(),
                                    _ => "to select elements by a bool mask, use `where(mask, x, 0.0)`".to_string(),
                                }),
                        ));
                    }
                    if !v.shape_of().is_empty() {
                        return Err(self.err(
                            self.diag(
                                Code::IndexNotInt,
                                x.span,
                                format!("an index must be a scalar, found shape {}", shape_str(v.shape_of())),
                            )
                            .label("an array of indices")
                            .help("gather element by element with a comprehension: `[i, j] => table[ids[i], j]`"),
                        ));
                    }
                    let (v, bounds) = self.check_index(v, &size, x.span, &a)?;
                    out_items.push(TIndex::Select(v, bounds));
                    axis += 1;
                }
                ast::IndexItem::Slice { start, stop, step, span: ss } => {
                    let size = shape[axis].clone();
                    let step_v = match step {
                        None => 1,
                        Some(s) => {
                            let v = self.elab(s, None)?;
                            match v.kind {
                                TKind::Lit(Lit::Int(c)) if c != 0 && c.abs() < i64::MAX as i128 => c as i64,
                                TKind::Lit(Lit::Int(_)) => {
                                    return Err(self.err(
                                        self.diag(Code::BadSlice, s.span, "slice step cannot be zero").label("step 0"),
                                    ));
                                }
                                _ => {
                                    return Err(self.err(
                                        self.diag(
                                            Code::NotConstant,
                                            s.span,
                                            "a slice step must be an integer constant",
                                        )
                                        .label(format!("this is {}", v.ty)),
                                    ));
                                }
                            }
                        }
                    };
                    let bound = |s: &mut Self, b: &Option<ast::Expr>, default: Dim| -> Res<Dim> {
                        let Some(b) = b else { return Ok(default) };
                        let v = s.elab(b, None)?;
                        match &v.kind {
                            TKind::Lit(Lit::Int(c)) if *c < 0 => Ok(size.add_const(*c as i64)),
                            _ => match as_dim(&v) {
                                Some(d) => Ok(d),
                                None => Err(s.err(
                                    s.diag(Code::NotConstant, b.span, "slice bounds must be known before the kernel runs")
                                        .label(format!("this is a run-time value of type {}", v.ty))
                                        .help("use integer constants and dimensions; for data-dependent windows use a comprehension"),
                                )),
                            },
                        }
                    };
                    let (start_d, stop_d) = if step_v > 0 {
                        (bound(self, start, Dim::constant(0))?, bound(self, stop, size.clone())?)
                    } else {
                        (bound(self, start, size.add_const(-1))?, bound(self, stop, Dim::constant(-1))?)
                    };
                    let len = if step_v > 0 {
                        stop_d.sub(&start_d).add_const(step_v - 1).floor_div(step_v)
                    } else {
                        start_d.sub(&stop_d).add_const(-step_v - 1).floor_div(-step_v)
                    };
                    let Some(len) = len else {
                        return Err(self
                            .err(self.diag(Code::BadSlice, *ss, "invalid slice").label("cannot compute its length")));
                    };
                    if let Some(c) = len.as_const()
                        && c < 0
                    {
                        return Err(self.err(
                            self.diag(Code::BadSlice, *ss, format!("this slice has negative length {c}"))
                                .label("start is past stop"),
                        ));
                    }
                    // With constant sizes, a slice outside the axis is caught now; with symbolic
                    // sizes it is checked when the dimensions are bound.
                    if let (Some(n), Some(st), Some(l)) = (size.as_const(), start_d.as_const(), len.as_const()) {
                        let last = st + (l - 1).max(0) * step_v;
                        if l > 0 && (st < 0 || st >= n || last < 0 || last >= n) {
                            return Err(self.err(
                                self.diag(
                                    Code::BadSlice,
                                    *ss,
                                    format!("this slice reaches outside an axis of size {n}"),
                                )
                                .label(format!("elements {st} to {last} with step {step_v}"))
                                .help("slice bounds are not clamped: keep them within the axis"),
                            ));
                        }
                    }
                    out_items.push(TIndex::Slice { start: start_d, step: step_v, len: len.clone() });
                    out_shape.push(len);
                    axis += 1;
                }
            }
        }
        out_shape.extend(shape[axis..].iter().cloned());
        Ok(self.mk(TKind::Index(a, out_items), Ty::Arr(e, out_shape), span))
    }

    /// Classifies an index and proves it in bounds when it depends on index variables.
    fn check_index(&mut self, v: R, size: &Dim, span: Span, arr: &R) -> Res<(R, Bounds)> {
        // Constant negative indices count from the end (numpy).
        if let TKind::Lit(Lit::Int(c)) = v.kind {
            let v2 = if c < 0 {
                self.mk(TKind::Dim(size.add_const(c as i64)), Ty::scalar(Elem::D(DType::I64)), v.span)
            } else {
                v.clone()
            };
            return Ok((v2, Bounds::AtBind));
        }
        if matches!(v.kind, TKind::Dim(_)) {
            return Ok((v, Bounds::AtBind));
        }
        // Try the plain intervals and the ones refined by `where` facts: each bound may be
        // proven by either.
        let plain = self.interval(&v, false);
        let refined = self.interval(&v, true);
        let with = match (plain, refined) {
            (Interval::Known { lo: l1, hi: h1, vars }, Interval::Known { lo: l2, hi: h2, .. }) => {
                let lo = if l1.provably_nonneg() { l1 } else { l2 };
                let hi = if size.add_const(-1).sub(&h1).provably_nonneg() { h1 } else { h2 };
                Interval::Known { lo, hi, vars }
            }
            (_, r) => r,
        };
        match with {
            Interval::Data => Ok((v, Bounds::Runtime)),
            Interval::Unknown => Err(self.err(
                self.diag(Code::OutOfBounds, span, "cannot prove this index is in bounds")
                    .label(format!(
                        "the index is not an affine function of the index variables; the axis has size `{size}`"
                    ))
                    .secondary(arr.file, arr.span, format!("shape {}", shape_str(arr.shape_of())))
                    .help("guard it: `where(idx < n, x[idx], 0.0)`, or pad the input with `pad(...)`"),
            )),
            Interval::Known { lo, hi, vars } => {
                if !vars {
                    return Ok((v, Bounds::AtBind));
                }
                let lo_ok = lo.provably_nonneg();
                let hi_ok = size.add_const(-1).sub(&hi).provably_nonneg();
                if lo_ok && hi_ok {
                    return Ok((v, Bounds::Proven));
                }
                let (what, bound) = if !lo_ok {
                    ("below 0", format!("its smallest value is `{lo}`"))
                } else {
                    ("past the end", format!("its largest value is `{hi}` but the axis has size `{size}`"))
                };
                let idx = self.snippet(span).unwrap_or_else(|| "i".to_string());
                let guard = if !lo_ok { format!("{idx} >= 0") } else { format!("{idx} < {size}") };
                Err(self.err(
                    self.diag(Code::OutOfBounds, span, format!("index may be out of bounds ({what})"))
                        .label(bound)
                        .secondary(arr.file, arr.span, format!("shape {}", shape_str(arr.shape_of())))
                        .help(format!("guard the access with `where({guard}, <access>, 0.0)`, shrink the result's extent, or `pad` the input")),
                ))
            }
        }
    }

    fn interval(&self, e: &TExpr, facts: bool) -> Interval {
        let k = key(e);
        let fact = if facts { self.facts.iter().rev().find(|f| f.key == k) } else { None };
        let base = self.interval_raw(e, facts);
        match (base, fact) {
            (Interval::Known { lo, hi, vars }, Some(f)) => {
                Interval::Known { lo: f.lo.clone().unwrap_or(lo), hi: f.hi.clone().unwrap_or(hi), vars }
            }
            (b, _) => b,
        }
    }

    fn interval_raw(&self, e: &TExpr, facts: bool) -> Interval {
        use Interval::*;
        match &e.kind {
            TKind::Lit(Lit::Int(c)) => {
                Known { lo: Dim::constant(*c as i64), hi: Dim::constant(*c as i64), vars: false }
            }
            TKind::Dim(d) => Known { lo: d.clone(), hi: d.clone(), vars: false },
            TKind::Var(id) => match self.vars.get(id) {
                Some((lo, hi)) => Known { lo: lo.clone(), hi: hi.clone(), vars: true },
                None => Unknown,
            },
            // Only a cast to i64 keeps every index value; narrower casts may wrap.
            TKind::Cast(DType::I64, a) => self.interval(a, facts),
            TKind::Unary(UnOp::Neg, a) => match self.interval(a, facts) {
                Known { lo, hi, vars } => Known { lo: hi.neg(), hi: lo.neg(), vars },
                x => x,
            },
            TKind::Binary(op, a, b) => {
                let (x, y) = (self.interval(a, facts), self.interval(b, facts));
                let (Known { lo: l1, hi: h1, vars: v1 }, Known { lo: l2, hi: h2, vars: v2 }) = (&x, &y) else {
                    return if matches!(x, Data) || matches!(y, Data) { Data } else { Unknown };
                };
                let vars = *v1 || *v2;
                match op {
                    BinOp::Add => Known { lo: l1.add(l2), hi: h1.add(h2), vars },
                    BinOp::Sub => Known { lo: l1.sub(h2), hi: h1.sub(l2), vars },
                    BinOp::Mul => {
                        // One side is a constant or a size (non-negative, exact).
                        let (iv_lo, iv_hi, c) = if l2 == h2 {
                            (l1, h1, l2)
                        } else if l1 == h1 {
                            (l2, h2, l1)
                        } else {
                            return Unknown;
                        };
                        match c.as_const() {
                            Some(k) if k >= 0 => Known { lo: iv_lo.mul(c), hi: iv_hi.mul(c), vars },
                            Some(_) => Known { lo: iv_hi.mul(c), hi: iv_lo.mul(c), vars },
                            None if c.provably_nonneg() && iv_lo.provably_nonneg() => {
                                Known { lo: iv_lo.mul(c), hi: iv_hi.mul(c), vars }
                            }
                            None => Unknown,
                        }
                    }
                    BinOp::Div => match (h2.as_const(), l2 == h2) {
                        (Some(k), true) if k > 0 => match (l1.floor_div(k), h1.floor_div(k)) {
                            (Some(lo), Some(hi)) => Known { lo, hi, vars },
                            _ => Unknown,
                        },
                        _ => Unknown,
                    },
                    BinOp::Rem => match (h2.as_const(), l2 == h2) {
                        (Some(k), true) if k > 0 => Known { lo: Dim::constant(0), hi: Dim::constant(k - 1), vars },
                        _ => Unknown,
                    },
                    _ => Unknown,
                }
            }
            TKind::Builtin("where", args, _) => {
                // Either branch: only provable when both are.
                match (self.interval(&args[1], facts), self.interval(&args[2], facts)) {
                    (Known { lo: a, hi: b, vars: v1 }, Known { lo: c, hi: d, vars: v2 }) if a == c && b == d => {
                        Known { lo: a, hi: b, vars: v1 || v2 }
                    }
                    (Data, _) | (_, Data) => Data,
                    _ => Unknown,
                }
            }
            TKind::Lit(_) => Unknown,
            _ => Data,
        }
    }

    /// Facts about index expressions that a `where` condition establishes.
    fn facts_of(&self, c: &TExpr, negate: bool) -> Vec<Fact> {
        let mut out = Vec::new();
        match &c.kind {
            TKind::Binary(BinOp::And, a, b) if !negate => {
                out.extend(self.facts_of(a, false));
                out.extend(self.facts_of(b, false));
            }
            TKind::Binary(BinOp::Or, a, b) if negate => {
                out.extend(self.facts_of(a, true));
                out.extend(self.facts_of(b, true));
            }
            TKind::Unary(UnOp::Not, a) => out.extend(self.facts_of(a, !negate)),
            TKind::Binary(op, a, b) if op.is_comparison() => {
                let op = if negate {
                    match op {
                        BinOp::Lt => BinOp::Ge,
                        BinOp::Le => BinOp::Gt,
                        BinOp::Gt => BinOp::Le,
                        BinOp::Ge => BinOp::Lt,
                        o => *o,
                    }
                } else {
                    *op
                };
                let exact = |x: &TExpr| match self.interval_raw(x, false) {
                    Interval::Known { lo, hi, .. } if lo == hi => Some(lo),
                    _ => None,
                };
                // x < y  gives  x <= y - 1 and y >= x + 1 (when the other side is exact).
                let mut add = |x: &TExpr, lo: Option<Dim>, hi: Option<Dim>| out.push(Fact { key: key(x), lo, hi });
                match op {
                    BinOp::Lt => {
                        if let Some(y) = exact(b) {
                            add(a, None, Some(y.add_const(-1)))
                        }
                        if let Some(x) = exact(a) {
                            add(b, Some(x.add_const(1)), None)
                        }
                    }
                    BinOp::Le => {
                        if let Some(y) = exact(b) {
                            add(a, None, Some(y))
                        }
                        if let Some(x) = exact(a) {
                            add(b, Some(x), None)
                        }
                    }
                    BinOp::Gt => {
                        if let Some(y) = exact(b) {
                            add(a, Some(y.add_const(1)), None)
                        }
                        if let Some(x) = exact(a) {
                            add(b, None, Some(x.add_const(-1)))
                        }
                    }
                    BinOp::Ge => {
                        if let Some(y) = exact(b) {
                            add(a, Some(y), None)
                        }
                        if let Some(x) = exact(a) {
                            add(b, None, Some(x))
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        // Combine facts on the same expression (`i >= 1 && i < n`).
        let mut merged: Vec<Fact> = Vec::new();
        for f in out {
            if let Some(m) = merged.iter_mut().find(|m| m.key == f.key) {
                if f.lo.is_some() {
                    m.lo = f.lo;
                }
                if f.hi.is_some() {
                    m.hi = f.hi;
                }
            } else {
                merged.push(f);
            }
        }
        merged
    }

    // ---------------------------------------------------------------- calls

    fn elab_call(&mut self, f: &ast::Ident, args: &CallArgs, span: Span, expected: Option<&Ty>) -> Res<R> {
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
        if let Some(s) = suggest(&f.name, cands.iter().map(|s| s.as_str())) {
            d = d.help(format!("did you mean `{s}`?"));
        } else {
            d = d.help("import it with `use`, e.g. `use std::nn::{relu};`, or define it with `fn`");
        }
        Err(self.err(d))
    }

    fn call_fn(&mut self, dm: ModId, item: &'p ast::FnItem, list: &[ast::Arg], f: &ast::Ident, span: Span) -> Res<R> {
        if !item.dims.is_empty() {
            return Err(self.err(
                self.diag(
                    Code::ExplicitDimCall,
                    f.span,
                    format!("`{}` has explicit dimension parameters and cannot be called here", f.name),
                )
                .label("called as a function")
                .secondary(self.prog.modules[dm].file, item.name.span, "declared with `<...>` dimensions")
                .help("move its body into a `fn` that takes the sizes from its arguments, and call that"),
            ));
        }
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
        let r = self.inline_fn(dm, item, vals, f.span);
        self.inline_stack.pop();
        r.map(|r| Rc::new(TExpr { kind: clone_kind(&r), ty: r.ty.clone(), file: self.file(), span })).or(Err(Reported))
    }

    /// Elaborates the body of `item` with its parameters bound to `args` (None: use the default).
    fn inline_fn(&mut self, dm: ModId, item: &'p ast::FnItem, args: Vec<Option<R>>, call_span: Span) -> Res<R> {
        let caller_file = self.file();
        let file = self.prog.modules[dm].file;
        let mark = self.diags.len();
        self.frames.push(Frame { module: dm, file, scopes: vec![vec![]] });
        let saved_lets = std::mem::take(&mut self.lets);
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

enum Interval {
    Known { lo: Dim, hi: Dim, vars: bool },
    Data,
    Unknown,
}

fn unreachable_elem() -> Res<(R, R, Elem)> {
    Err(Reported)
}

fn unreachable_retry() {}

fn type_text(t: &ast::Type) -> String {
    crate::pretty::type_to_string(t)
}

fn is_const(r: &TExpr) -> bool {
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

fn clone_lit(r: &TExpr) -> TKind {
    match &r.kind {
        TKind::Lit(l) => TKind::Lit(*l),
        TKind::Dim(d) => TKind::Dim(d.clone()),
        _ => TKind::Tuple(vec![]),
    }
}

/// Re-wraps the node an inlined call produced, with the call's span (children are shared).
fn clone_kind(r: &R) -> TKind {
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

fn fold_binary(op: BinOp, x: Lit, y: Lit, e: Elem) -> Option<Lit> {
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

impl TExpr {
    pub fn shape_of(&self) -> &[Dim] {
        self.ty.shape()
    }
}

/// Calls made in a block, by name (for the recursion check).
fn collect_calls(b: &ast::Block, out: &mut Vec<String>) {
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
struct NameWalk<'c, 'p> {
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
                    d = match suggest(&f.name, cands.iter().map(|s| s.as_str())) {
                        Some(s) => d.help(format!("did you mean `{s}`?")),
                        None => d.help("import it with `use`, e.g. `use std::nn::{relu};`, or define it with `fn`"),
                    };
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

/// Helpers used by the builtin typing rules (crate::builtins).
impl Checker<'_> {
    pub(crate) fn err_at(
        &mut self,
        code: Code,
        span: Span,
        msg: impl Into<String>,
        label: &str,
        help: Option<&str>,
    ) -> Reported {
        let mut d = self.diag(code, span, msg).label(label);
        if let Some(h) = help {
            d = d.help(h);
        }
        self.err(d)
    }
    pub(crate) fn mk_pub(&self, kind: TKind, ty: Ty, span: Span) -> R {
        self.mk(kind, ty, span)
    }
    pub(crate) fn elem_pub(&mut self, r: &R) -> Res<Elem> {
        self.elem(r)
    }
    pub(crate) fn unify_pub(&mut self, a: R, b: R, span: Span) -> Res<(R, R, Elem)> {
        self.unify(a, b, span)
    }
    pub(crate) fn coerce_pub(&mut self, r: R, d: DType, span: Span) -> Res<R> {
        self.coerce(r, d, span)
    }
    pub(crate) fn broadcast_pub(&mut self, a: &R, b: &R, span: Span) -> Res<Vec<Dim>> {
        self.broadcast(a, b, span)
    }
    pub(crate) fn broadcast_shapes_pub(&mut self, a: &[Dim], b: &[Dim], span: Span) -> Res<Vec<Dim>> {
        self.broadcast_shapes(a, b, span, None)
    }
    pub(crate) fn dtype_of_pub(&mut self, n: &ast::Ident) -> Res<DType> {
        self.dtype_of(n)
    }
    pub(crate) fn elab(&mut self, e: &ast::Expr, expected: Option<&Ty>) -> Res<R> {
        self.elab_expr(e, expected)
    }
    /// Elaborates an expression that must be an array (not a tuple).
    pub(crate) fn elab_arr(&mut self, e: &ast::Expr) -> Res<R> {
        let v = self.elab_expr(e, None)?;
        self.elem(&v)?;
        Ok(v)
    }
    pub(crate) fn facts_for(&self, c: &TExpr, negate: bool) -> Vec<(String, Option<Dim>, Option<Dim>)> {
        self.facts_of(c, negate).into_iter().map(|f| (f.key, f.lo, f.hi)).collect()
    }
    pub(crate) fn with_facts<T>(
        &mut self,
        facts: Vec<(String, Option<Dim>, Option<Dim>)>,
        f: impl FnOnce(&mut Self) -> T,
    ) -> T {
        let n = self.facts.len();
        self.facts.extend(facts.into_iter().map(|(key, lo, hi)| Fact { key, lo, hi }));
        let r = f(self);
        self.facts.truncate(n);
        r
    }
    pub(crate) fn reduce_range_pub(
        &mut self,
        name: &'static str,
        bs: &[ast::Binder],
        body: &ast::Expr,
        span: Span,
    ) -> Res<R> {
        self.push_scope();
        let r = (|| {
            let mut ivars = Vec::new();
            let mut seen = HashSet::new();
            for b in bs {
                if !seen.insert(b.name.name.clone()) {
                    return Err(self.err(
                        self.diag(Code::DuplicateParam, b.name.span, format!("index `{}` is bound twice", b.name.name))
                            .label("bound again here"),
                    ));
                }
                let Some(r) = &b.range else { return Err(Reported) };
                let (lo, ext) = self.range_of(r)?;
                let (iv, r) = self.new_ivar(&b.name, lo, ext);
                self.bind(&b.name.name, Binding::Value(r));
                ivars.push(iv);
            }
            let v = self.elab_expr(body, None)?;
            let e = self.elem(&v)?;
            let v = if e.is_weak() {
                let s = v.span;
                self.coerce(v, e.default_dtype(), s)?
            } else {
                v
            };
            let Some(Elem::D(d)) = v.ty.elem() else { return Err(Reported) };
            if d == DType::Bool && name != "sum" && name != "prod" {
                return Err(self.err(
                    self.diag(Code::OpNotSupported, v.span, format!("`{name}` is not defined for bool"))
                        .label("bool values"),
                ));
            }
            let rd = if matches!(name, "sum" | "prod") { d.sum_result() } else { d };
            let shape = v.shape_of().to_vec();
            Ok(self.mk(TKind::Reduce(name, ivars, v), Ty::Arr(Elem::D(rd), shape), span))
        })();
        self.pop_scope();
        r
    }
}

pub(crate) fn plural(n: usize, word: &str) -> String {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
}
