//! Printing the AST back as `.tk` source (the `ast` stage of `tk emit`). Parentheses are inserted
//! only where precedence needs them, so `parse(print(m)) == m`.

use crate::ast::*;
use std::fmt::Write;

/// Prints a module as source text.
pub fn module_to_string(m: &Module) -> String {
    let mut p = Printer { out: String::new(), indent: 0 };
    for (i, item) in m.items.iter().enumerate() {
        if i > 0 {
            p.out.push('\n');
        }
        p.item(item);
    }
    p.out
}

/// Prints one expression.
pub fn expr_to_string(e: &Expr) -> String {
    let mut p = Printer { out: String::new(), indent: 0 };
    p.expr(e, 0);
    p.out
}

pub fn type_to_string(t: &Type) -> String {
    let mut p = Printer { out: String::new(), indent: 0 };
    p.ty(t);
    p.out
}

struct Printer {
    out: String,
    indent: usize,
}

const P_COMP: u8 = 0;
const P_OR: u8 = 1;
const P_AND: u8 = 2;
const P_CMP: u8 = 3;
const P_BITOR: u8 = 4;
const P_BITXOR: u8 = 5;
const P_BITAND: u8 = 6;
const P_SHIFT: u8 = 7;
const P_ADD: u8 = 8;
const P_MUL: u8 = 9;
const P_CAST: u8 = 10;
const P_UNARY: u8 = 11;
const P_POW: u8 = 12;
const P_POSTFIX: u8 = 13;
const P_PRIMARY: u8 = 14;

fn bin_prec(op: BinOp) -> u8 {
    match op {
        BinOp::Or => P_OR,
        BinOp::And => P_AND,
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => P_CMP,
        BinOp::BitOr => P_BITOR,
        BinOp::BitXor => P_BITXOR,
        BinOp::BitAnd => P_BITAND,
        BinOp::Shl | BinOp::Shr => P_SHIFT,
        BinOp::Add | BinOp::Sub => P_ADD,
        BinOp::Mul | BinOp::Div | BinOp::Rem | BinOp::MatMul => P_MUL,
        BinOp::Pow => P_POW,
    }
}

fn prec(e: &Expr) -> u8 {
    match &e.kind {
        ExprKind::Comprehension(..) => P_COMP,
        ExprKind::Binary(op, ..) => bin_prec(*op),
        ExprKind::Cast(..) => P_CAST,
        ExprKind::Unary(..) => P_UNARY,
        ExprKind::Index(..) => P_POSTFIX,
        _ => P_PRIMARY,
    }
}

impl Printer {
    fn nl(&mut self) {
        self.out.push('\n');
        for _ in 0..self.indent {
            self.out.push_str("    ");
        }
    }

    fn item(&mut self, item: &Item) {
        match item {
            Item::Use(u) => {
                self.out.push_str("use ");
                let path: Vec<&str> = u.path.iter().map(|p| p.name.as_str()).collect();
                self.out.push_str(&path.join("::"));
                match &u.names {
                    UseNames::Glob(_) => self.out.push_str("::*"),
                    UseNames::Names(ns) if ns.len() == 1 => {
                        let _ = write!(self.out, "::{}", ns[0].name);
                    }
                    UseNames::Names(ns) => {
                        let names: Vec<&str> = ns.iter().map(|n| n.name.as_str()).collect();
                        let _ = write!(self.out, "::{{{}}}", names.join(", "));
                    }
                }
                self.out.push_str(";\n");
            }
            Item::Const(c) => {
                let _ = write!(self.out, "const {}", c.name.name);
                if let Some(t) = &c.ty {
                    self.out.push_str(": ");
                    self.ty(t);
                }
                self.out.push_str(" = ");
                self.expr(&c.value, P_COMP);
                self.out.push_str(";\n");
            }
            Item::Fn(f) => {
                self.out.push_str(if f.kind == FnKind::Kernel { "kernel " } else { "fn " });
                self.out.push_str(&f.name.name);
                if !f.dims.is_empty() {
                    let d: Vec<&str> = f.dims.iter().map(|d| d.name.as_str()).collect();
                    let _ = write!(self.out, "<{}>", d.join(", "));
                }
                self.out.push('(');
                for (i, p) in f.params.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    self.out.push_str(&p.name.name);
                    if let Some(t) = &p.ty {
                        self.out.push_str(": ");
                        self.ty(t);
                    }
                    if let Some(d) = &p.default {
                        self.out.push_str(" = ");
                        self.expr(d, P_COMP);
                    }
                }
                self.out.push(')');
                if let Some(r) = &f.ret {
                    self.out.push_str(" -> ");
                    match r {
                        RetType::Single(t) => self.ty(t),
                        RetType::Tuple(fields, _) => {
                            self.out.push('(');
                            for (i, fl) in fields.iter().enumerate() {
                                if i > 0 {
                                    self.out.push_str(", ");
                                }
                                if let Some(n) = &fl.name {
                                    let _ = write!(self.out, "{}: ", n.name);
                                }
                                self.ty(&fl.ty);
                            }
                            self.out.push(')');
                        }
                    }
                }
                self.out.push(' ');
                self.block(&f.body);
                self.out.push('\n');
            }
        }
    }

    fn ty(&mut self, t: &Type) {
        self.out.push_str(&t.name.name);
        if let Some(dims) = &t.dims {
            self.out.push('[');
            self.list(dims);
            self.out.push(']');
        }
    }

    fn list(&mut self, es: &[Expr]) {
        for (i, e) in es.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.expr(e, P_COMP);
        }
    }

    fn block(&mut self, b: &Block) {
        self.out.push('{');
        self.indent += 1;
        for s in &b.stmts {
            self.nl();
            match s {
                Stmt::Let { pat, ty, value, .. } => {
                    self.out.push_str("let ");
                    match pat {
                        Pattern::Name(n) => self.out.push_str(&n.name),
                        Pattern::Tuple(ns, _) => {
                            let names: Vec<&str> = ns.iter().map(|n| n.name.as_str()).collect();
                            let _ = write!(self.out, "({})", names.join(", "));
                        }
                    }
                    if let Some(t) = ty {
                        self.out.push_str(": ");
                        self.ty(t);
                    }
                    self.out.push_str(" = ");
                    self.expr(value, P_COMP);
                    self.out.push(';');
                }
                Stmt::BreakIf { cond, .. } => {
                    self.out.push_str("break if ");
                    self.expr(cond, P_COMP);
                    self.out.push(';');
                }
            }
        }
        self.nl();
        self.expr(&b.value, P_COMP);
        self.indent -= 1;
        self.nl();
        self.out.push('}');
    }

    fn binders(&mut self, bs: &[Binder]) {
        for (i, b) in bs.iter().enumerate() {
            if i > 0 {
                self.out.push_str(", ");
            }
            self.out.push_str(&b.name.name);
            if let Some(r) = &b.range {
                self.out.push_str(" in ");
                self.range(r);
            }
        }
    }

    fn range(&mut self, r: &RangeExpr) {
        self.expr(&r.lo, P_ADD);
        self.out.push_str("..");
        self.expr(&r.hi, P_ADD);
    }

    fn expr(&mut self, e: &Expr, min: u8) {
        let p = prec(e);
        let paren = p < min;
        if paren {
            self.out.push('(');
        }
        match &e.kind {
            ExprKind::Int(v) => {
                let _ = write!(self.out, "{v}");
            }
            ExprKind::Float(v) => {
                let _ = write!(self.out, "{v:?}");
            }
            ExprKind::Bool(b) => {
                let _ = write!(self.out, "{b}");
            }
            ExprKind::Name(n) => self.out.push_str(&n.name),
            ExprKind::Unary(op, a) => {
                self.out.push_str(match op {
                    UnOp::Neg => "-",
                    UnOp::Not => "!",
                });
                self.expr(a, P_UNARY);
            }
            ExprKind::Binary(op, a, b) => {
                let (l, r) = match op {
                    BinOp::Pow => (P_POSTFIX, P_UNARY),
                    op if op.is_comparison() => (p + 1, p + 1),
                    _ => (p, p + 1),
                };
                self.expr(a, l);
                let _ = write!(self.out, " {} ", op.symbol());
                self.expr(b, r);
            }
            ExprKind::Cast(a, t) => {
                self.expr(a, P_CAST);
                let _ = write!(self.out, " as {}", t.name);
            }
            ExprKind::Call(f, args) => {
                self.out.push_str(&f.name);
                self.out.push('(');
                match args {
                    CallArgs::List(list) => {
                        for (i, a) in list.iter().enumerate() {
                            if i > 0 {
                                self.out.push_str(", ");
                            }
                            if let Some(n) = &a.name {
                                let _ = write!(self.out, "{}: ", n.name);
                            }
                            self.expr(&a.value, P_COMP);
                        }
                    }
                    CallArgs::Reduce(bs, body) => {
                        self.binders(bs);
                        self.out.push_str(": ");
                        self.expr(body, P_COMP);
                    }
                }
                self.out.push(')');
            }
            ExprKind::Index(a, items) => {
                self.expr(a, P_POSTFIX);
                self.out.push('[');
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    match it {
                        IndexItem::Expr(x) => self.expr(x, P_COMP),
                        IndexItem::New(_) => self.out.push_str("new"),
                        IndexItem::Slice { start, stop, step, .. } => {
                            if let Some(s) = start {
                                self.expr(s, P_COMP);
                            }
                            self.out.push(':');
                            if let Some(s) = stop {
                                self.expr(s, P_COMP);
                            }
                            if let Some(s) = step {
                                self.out.push(':');
                                self.expr(s, P_COMP);
                            }
                        }
                    }
                }
                self.out.push(']');
            }
            ExprKind::Tuple(es) => {
                self.out.push('(');
                self.list(es);
                if es.len() == 1 {
                    self.out.push(',');
                }
                self.out.push(')');
            }
            ExprKind::Array(es) => {
                self.out.push('[');
                self.list(es);
                self.out.push(']');
            }
            ExprKind::Block(b) => self.block(b),
            ExprKind::Comprehension(bs, body) => {
                self.out.push('[');
                self.binders(bs);
                self.out.push_str("] => ");
                self.expr(body, P_COMP);
            }
            ExprKind::Loop { var, range, carried, body } => {
                let _ = write!(self.out, "loop {} in ", var.name);
                self.range(range);
                self.out.push_str(" with (");
                for (i, (n, v)) in carried.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(", ");
                    }
                    let _ = write!(self.out, "{} = ", n.name);
                    self.expr(v, P_COMP);
                }
                self.out.push_str(") ");
                self.block(body);
            }
        }
        if paren {
            self.out.push(')');
        }
    }
}
