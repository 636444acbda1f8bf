//! Name resolution, dtype inference and shape inference with symbolic dimensions, by elaborating
//! every kernel (and every fully typed `fn`) into the typed tree of [`crate::tast`].

use crate::ast::{self, BinOp, CallArgs, ExprKind, FnKind, Item, Span, Stmt, UnOp};
use crate::diag::{Code, Diag, FileId, suggest};
use crate::dims::Dim;
use crate::load::{BUILTINS, ModId, Program};
use crate::tast::*;
use crate::types::{DType, Elem, Ty, shape_str};
use std::collections::{HashMap, HashSet};
use std::sync::Arc as Rc;

mod bounds;
mod calls;
mod coercion;
mod consts;
mod indexing;
mod items;
mod loops;
mod names;
mod shapes;

use bounds::*;
use calls::*;
use coercion::*;
pub(crate) use consts::as_dim;
use consts::*;

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
            ExprKind::Array(es) => self.array_literal(es, span),
            ExprKind::Block(b) => self.elab_block(b, expected),
            ExprKind::Comprehension(bs, body) => self.comprehension(bs, body, span, expected),
            ExprKind::Loop { var, range, carried, body } => self.elab_loop(var, range, carried, body, span),
        }
    }

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
}

impl TExpr {
    pub fn shape_of(&self) -> &[Dim] {
        self.ty.shape()
    }
}

/// Helpers used by the builtin typing rules (the builtins module).
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
