//! The abstract syntax tree. Every node carries the byte span it was parsed from.
//!
//! Equality (`PartialEq`) ignores spans, so that `parse(print(ast)) == ast` can be tested.

use std::fmt;

/// A byte range in one source file.
#[derive(Clone, Copy, Default, Eq)]
pub struct Span {
    pub lo: u32,
    pub hi: u32,
}

impl Span {
    pub fn new(lo: usize, hi: usize) -> Span {
        Span { lo: lo as u32, hi: hi as u32 }
    }
    pub fn to(self, other: Span) -> Span {
        Span { lo: self.lo.min(other.lo), hi: self.hi.max(other.hi) }
    }
    pub fn range(self) -> std::ops::Range<usize> {
        self.lo as usize..self.hi as usize
    }
}

impl PartialEq for Span {
    /// Spans never make two trees different.
    fn eq(&self, _: &Span) -> bool {
        true
    }
}

impl std::hash::Hash for Span {
    /// Consistent with `PartialEq`: spans never distinguish two trees.
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl fmt::Debug for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.lo, self.hi)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl Ident {
    pub fn new(name: &str, span: Span) -> Ident {
        Ident { name: name.to_string(), span }
    }
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Module {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Use(UseItem),
    Const(ConstItem),
    Fn(FnItem),
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Use(u) => u.span,
            Item::Const(c) => c.span,
            Item::Fn(f) => f.span,
        }
    }
}

/// `use std::nn::{softmax, gelu};`, `use util::helper;` or `use std::math::*;`
#[derive(Clone, Debug, PartialEq)]
pub struct UseItem {
    /// The module path (`std`, `nn`).
    pub path: Vec<Ident>,
    pub names: UseNames,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum UseNames {
    Names(Vec<Ident>),
    Glob(Span),
}

#[derive(Clone, Debug, PartialEq)]
pub struct ConstItem {
    pub name: Ident,
    pub ty: Option<Type>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FnKind {
    /// A helper, inlined where it is called.
    Fn,
    /// An entry point users call.
    Kernel,
}

/// A `fn` or a `kernel`.
#[derive(Clone, Debug, PartialEq)]
pub struct FnItem {
    pub kind: FnKind,
    pub name: Ident,
    /// Explicit dimension parameters: `kernel mandelbrot<h, w>(...)`.
    pub dims: Vec<Ident>,
    pub params: Vec<Param>,
    pub ret: Option<RetType>,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: Ident,
    pub ty: Option<Type>,
    pub default: Option<Expr>,
    pub span: Span,
}

/// `f32`, `f32[n, 2 * n]`, or a compile-time parameter kind `int` / `float` / `bool`.
#[derive(Clone, Debug, PartialEq)]
pub struct Type {
    pub name: Ident,
    pub dims: Option<Vec<Expr>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum RetType {
    Single(Type),
    /// `(mean: f32[b], var: f32[b])` or `(f32[n], i32[n])`.
    Tuple(Vec<RetField>, Span),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetField {
    pub name: Option<Ident>,
    pub ty: Type,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub value: Box<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Let {
        pat: Pattern,
        ty: Option<Type>,
        value: Expr,
        span: Span,
    },
    /// `break if cond;` inside a `loop` body.
    BreakIf {
        cond: Expr,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    Name(Ident),
    Tuple(Vec<Ident>, Span),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    BitOr,
    BitXor,
    BitAnd,
    Shl,
    Shr,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    MatMul,
    Pow,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::BitAnd => "&",
            BinOp::Shl => "<<",
            BinOp::Shr => ">>",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::MatMul => "@",
            BinOp::Pow => "**",
        }
    }
    pub fn is_comparison(self) -> bool {
        matches!(self, BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
    /// Nesting depth of this tree (1 for a leaf); bounded by [`MAX_NESTING`] at parse time.
    pub depth: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(u64),
    Float(f64),
    Bool(bool),
    Name(Ident),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Cast(Box<Expr>, Ident),
    Call(Ident, CallArgs),
    Index(Box<Expr>, Vec<IndexItem>),
    Tuple(Vec<Expr>),
    /// `[1.0, 2.0, 3.0]`, nested for higher ranks: an array literal (at least one element).
    Array(Vec<Expr>),
    Block(Block),
    /// `[i, j] => body` or `[i in 0..n] => body`.
    Comprehension(Vec<Binder>, Box<Expr>),
    /// `loop k in 0..256 with (zx = 0.0, n = 0) { break if ...; (zx2, n + 1) }`
    Loop {
        var: Ident,
        range: RangeExpr,
        carried: Vec<(Ident, Expr)>,
        body: Block,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum CallArgs {
    /// `f(x, axis: 1)`
    List(Vec<Arg>),
    /// `sum(r in 0..k, c in 0..ci: body)`
    Reduce(Vec<Binder>, Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Binder {
    pub name: Ident,
    pub range: Option<RangeExpr>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RangeExpr {
    pub lo: Box<Expr>,
    pub hi: Box<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // a slice's three bounds; index lists are short
pub enum IndexItem {
    Expr(Expr),
    Slice { start: Option<Expr>, stop: Option<Expr>, step: Option<Expr>, span: Span },
    New(Span),
}

impl IndexItem {
    pub fn span(&self) -> Span {
        match self {
            IndexItem::Expr(e) => e.span,
            IndexItem::Slice { span, .. } | IndexItem::New(span) => *span,
        }
    }
}

impl Expr {
    /// Builds a node and computes its depth from its children.
    pub fn new(kind: ExprKind, span: Span) -> Expr {
        let mut e = Expr { kind, span, depth: 1 };
        e.depth = 1 + e.children().iter().map(|c| c.depth).max().unwrap_or(0);
        e
    }

    /// The children of this expression, in source order.
    pub fn children(&self) -> Vec<&Expr> {
        let mut out = Vec::new();
        match &self.kind {
            ExprKind::Int(_) | ExprKind::Float(_) | ExprKind::Bool(_) | ExprKind::Name(_) => {}
            ExprKind::Unary(_, a) | ExprKind::Cast(a, _) => out.push(&**a),
            ExprKind::Binary(_, a, b) => {
                out.push(&**a);
                out.push(&**b);
            }
            ExprKind::Call(_, CallArgs::List(args)) => out.extend(args.iter().map(|a| &a.value)),
            ExprKind::Call(_, CallArgs::Reduce(bs, body)) | ExprKind::Comprehension(bs, body) => {
                for b in bs {
                    if let Some(r) = &b.range {
                        out.push(&*r.lo);
                        out.push(&*r.hi);
                    }
                }
                out.push(&**body);
            }
            ExprKind::Index(a, items) => {
                out.push(&**a);
                for it in items {
                    match it {
                        IndexItem::Expr(e) => out.push(e),
                        IndexItem::Slice { start, stop, step, .. } => out.extend(start.iter().chain(stop).chain(step)),
                        IndexItem::New(_) => {}
                    }
                }
            }
            ExprKind::Tuple(es) | ExprKind::Array(es) => out.extend(es.iter()),
            ExprKind::Block(b) => block_children(b, &mut out),
            ExprKind::Loop { range, carried, body, .. } => {
                out.push(&*range.lo);
                out.push(&*range.hi);
                out.extend(carried.iter().map(|(_, e)| e));
                block_children(body, &mut out);
            }
        }
        out
    }
}

fn block_children<'a>(b: &'a Block, out: &mut Vec<&'a Expr>) {
    for s in &b.stmts {
        match s {
            Stmt::Let { value, .. } => out.push(value),
            Stmt::BreakIf { cond, .. } => out.push(cond),
        }
    }
    out.push(&b.value);
}

/// The deepest nesting the front end accepts in one expression (documented in docs/language.md).
pub const MAX_NESTING: u32 = 256;
