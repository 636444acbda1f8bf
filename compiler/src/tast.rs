//! The checked program: every kernel elaborated into a typed expression DAG. `fn`s are inlined,
//! constants folded, names resolved, literals given their dtypes. The graph-IR lowering reads this.

use crate::ast::{BinOp, Span, UnOp};
use crate::diag::FileId;
use crate::dims::Dim;
use crate::types::{DType, Ty};
use std::fmt::Write;
use std::sync::Arc;

pub type R = Arc<TExpr>;

#[derive(Debug)]
pub struct TExpr {
    pub kind: TKind,
    pub ty: Ty,
    pub file: FileId,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Lit {
    Int(i128),
    Float(f64),
    Bool(bool),
}

/// How an index is known to be in bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bounds {
    /// Proven at compile time for every value of the index variables.
    Proven,
    /// Depends only on sizes: checked when the dimensions are bound, before anything runs.
    AtBind,
    /// Depends on data (a gather): checked while the kernel runs.
    Runtime,
}

#[derive(Debug)]
pub enum TIndex {
    Select(R, Bounds),
    Slice { start: Dim, step: i64, len: Dim },
    New,
}

/// An index variable of a comprehension, a reduction or a loop: values `lo .. lo + extent`.
#[derive(Clone, Debug)]
pub struct IVar {
    pub id: u32,
    pub name: String,
    pub lo: Dim,
    pub extent: Dim,
}

#[derive(Clone, Debug, Default)]
pub struct Attrs {
    pub axes: Vec<usize>,
    pub keep: bool,
    pub shape: Vec<Dim>,
    pub perm: Vec<usize>,
    pub pads: Vec<(Dim, Dim)>,
    pub start: Option<Dim>,
    pub step: i64,
}

#[derive(Debug)]
pub enum TKind {
    Param(usize),
    Lit(Lit),
    /// A dimension used as a value (i64).
    Dim(Dim),
    Var(u32),
    Unary(UnOp, R),
    Binary(BinOp, R, R),
    Cast(DType, R),
    Builtin(&'static str, Vec<R>, Attrs),
    Index(R, Vec<TIndex>),
    Comprehension(Vec<IVar>, R),
    Reduce(&'static str, Vec<IVar>, R),
    Loop {
        var: IVar,
        carried: Vec<(u32, R)>,
        exit: Option<R>,
        next: Vec<R>,
    },
    /// The current value of a loop-carried variable.
    Carried(u32),
    Tuple(Vec<R>),
    Proj(R, usize),
}

#[derive(Debug)]
pub struct KParam {
    pub name: String,
    pub ty: Ty,
}

#[derive(Debug)]
pub struct CheckedKernel {
    pub name: String,
    pub file: FileId,
    pub span: Span,
    /// Explicit dimension parameters (`<h, w>`), bound at call time.
    pub dim_params: Vec<String>,
    pub params: Vec<KParam>,
    /// Output names (`out`, or the declared names) and types.
    pub outputs: Vec<(String, Ty)>,
    pub results: Vec<R>,
    /// Types of `let` bindings, in source order, for `tk emit --stage types`.
    pub lets: Vec<(String, Ty)>,
}

/// Writes a kernel and its bindings' types (the `types` stage).
pub fn print_types(k: &CheckedKernel) -> String {
    let mut s = String::new();
    let dims = if k.dim_params.is_empty() { String::new() } else { format!("<{}>", k.dim_params.join(", ")) };
    let params: Vec<String> = k.params.iter().map(|p| format!("{}: {}", p.name, p.ty)).collect();
    let outs: Vec<String> = k.outputs.iter().map(|(n, t)| format!("{n}: {t}")).collect();
    let _ = writeln!(s, "kernel {}{dims}({}) -> ({})", k.name, params.join(", "), outs.join(", "));
    for (n, t) in &k.lets {
        let _ = writeln!(s, "    let {n}: {t}");
    }
    s
}

/// A structural key for an expression (used to match `where` guards with indices).
pub fn key(e: &TExpr) -> String {
    let mut s = String::new();
    key_into(e, &mut s, 0);
    s
}

fn key_into(e: &TExpr, s: &mut String, depth: u32) {
    if depth > 64 {
        s.push('…');
        return;
    }
    match &e.kind {
        TKind::Lit(l) => {
            let _ = write!(s, "{l:?}");
        }
        TKind::Dim(d) => {
            let _ = write!(s, "dim({d})");
        }
        TKind::Var(v) => {
            let _ = write!(s, "v{v}");
        }
        TKind::Param(p) => {
            let _ = write!(s, "p{p}");
        }
        TKind::Unary(op, a) => {
            let _ = write!(s, "({op:?} ");
            key_into(a, s, depth + 1);
            s.push(')');
        }
        TKind::Binary(op, a, b) => {
            let _ = write!(s, "({} ", op.symbol());
            key_into(a, s, depth + 1);
            s.push(' ');
            key_into(b, s, depth + 1);
            s.push(')');
        }
        TKind::Cast(d, a) => {
            let _ = write!(s, "(as {d} ");
            key_into(a, s, depth + 1);
            s.push(')');
        }
        _ => {
            let _ = write!(s, "#{:p}", e as *const TExpr);
        }
    }
}
