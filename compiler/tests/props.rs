//! Property tests of the front end: printing and re-parsing any AST gives the same AST, and no
//! mutation of valid programs and no random input panics the front end.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use std::path::Path;
use tk_compiler::ast::*;

const KEYWORDS: &[&str] =
    &["use", "const", "fn", "kernel", "let", "as", "in", "loop", "with", "break", "if", "true", "false", "new"];

fn sp() -> Span {
    Span::default()
}

fn ident() -> impl Strategy<Value = Ident> {
    "[a-z_][a-z0-9_]{0,4}"
        .prop_filter("not a keyword", |s| !KEYWORDS.contains(&s.as_str()))
        .prop_map(|s| Ident::new(&s, sp()))
}

fn e(kind: ExprKind) -> Expr {
    Expr::new(kind, sp())
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        any::<u64>().prop_map(|v| e(ExprKind::Int(v))),
        (0u32..100_000, -12i32..12).prop_map(|(m, x)| e(ExprKind::Float(m as f64 * 10f64.powi(x)))),
        any::<bool>().prop_map(|b| e(ExprKind::Bool(b))),
        ident().prop_map(|n| e(ExprKind::Name(n))),
    ]
}

fn binop() -> impl Strategy<Value = BinOp> {
    prop::sample::select(vec![
        BinOp::Or,
        BinOp::And,
        BinOp::Eq,
        BinOp::Ne,
        BinOp::Lt,
        BinOp::Le,
        BinOp::Gt,
        BinOp::Ge,
        BinOp::BitOr,
        BinOp::BitXor,
        BinOp::BitAnd,
        BinOp::Shl,
        BinOp::Shr,
        BinOp::Add,
        BinOp::Sub,
        BinOp::Mul,
        BinOp::Div,
        BinOp::Rem,
        BinOp::MatMul,
        BinOp::Pow,
    ])
}

fn range(x: BoxedStrategy<Expr>) -> impl Strategy<Value = RangeExpr> {
    (x.clone(), x).prop_map(|(lo, hi)| RangeExpr { lo: Box::new(lo), hi: Box::new(hi), span: sp() })
}

fn ty(x: BoxedStrategy<Expr>) -> impl Strategy<Value = Type> {
    (ident(), prop::option::of(prop::collection::vec(x, 0..3))).prop_map(|(name, dims)| Type { name, dims, span: sp() })
}

fn block(x: BoxedStrategy<Expr>) -> impl Strategy<Value = Block> {
    let pat = prop_oneof![
        ident().prop_map(Pattern::Name),
        prop::collection::vec(ident(), 0..3).prop_map(|v| Pattern::Tuple(v, sp())),
    ];
    let stmt = prop_oneof![
        (pat, prop::option::of(ty(x.clone())), x.clone()).prop_map(|(pat, ty, value)| Stmt::Let {
            pat,
            ty,
            value,
            span: sp()
        }),
        x.clone().prop_map(|cond| Stmt::BreakIf { cond, span: sp() }),
    ];
    (prop::collection::vec(stmt, 0..3), x).prop_map(|(stmts, v)| Block { stmts, value: Box::new(v), span: sp() })
}

fn expr() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(5, 48, 4, |inner| {
        let x = inner.boxed();
        let binder = (ident(), prop::option::of(range(x.clone()))).prop_map(|(name, range)| Binder { name, range });
        let rbinder = (ident(), range(x.clone())).prop_map(|(name, range)| Binder { name, range: Some(range) });
        let arg = (prop::option::of(ident()), x.clone()).prop_map(|(name, value)| Arg { name, value });
        let item = prop_oneof![
            x.clone().prop_map(IndexItem::Expr),
            Just(IndexItem::New(sp())),
            (prop::option::of(x.clone()), prop::option::of(x.clone()), prop::option::of(x.clone()))
                .prop_map(|(start, stop, step)| IndexItem::Slice { start, stop, step, span: sp() }),
        ];
        prop_oneof![
            (prop::sample::select(vec![UnOp::Neg, UnOp::Not]), x.clone())
                .prop_map(|(op, a)| e(ExprKind::Unary(op, Box::new(a)))),
            (binop(), x.clone(), x.clone()).prop_map(|(op, a, b)| e(ExprKind::Binary(op, Box::new(a), Box::new(b)))),
            (x.clone(), ident()).prop_map(|(a, t)| e(ExprKind::Cast(Box::new(a), t))),
            (ident(), prop::collection::vec(arg, 0..4)).prop_map(|(f, a)| e(ExprKind::Call(f, CallArgs::List(a)))),
            (ident(), prop::collection::vec(rbinder, 1..3), x.clone())
                .prop_map(|(f, b, body)| e(ExprKind::Call(f, CallArgs::Reduce(b, Box::new(body))))),
            (x.clone(), prop::collection::vec(item, 0..4))
                .prop_map(|(a, items)| e(ExprKind::Index(Box::new(a), items))),
            prop::collection::vec(x.clone(), 0..4).prop_map(|v| e(ExprKind::Tuple(v))),
            prop::collection::vec(x.clone(), 1..4).prop_map(|v| e(ExprKind::Array(v))),
            block(x.clone()).prop_map(|b| e(ExprKind::Block(b))),
            (prop::collection::vec(binder, 1..3), x.clone())
                .prop_map(|(b, body)| e(ExprKind::Comprehension(b, Box::new(body)))),
            (ident(), range(x.clone()), prop::collection::vec((ident(), x.clone()), 0..3), block(x.clone()))
                .prop_map(|(var, range, carried, body)| e(ExprKind::Loop { var, range, carried, body })),
        ]
    })
}

fn module() -> impl Strategy<Value = Module> {
    let x = expr().boxed();
    let use_item = (
        prop::collection::vec(ident(), 1..3),
        prop_oneof![prop::collection::vec(ident(), 1..3).prop_map(UseNames::Names), Just(UseNames::Glob(sp())),],
    )
        .prop_map(|(path, names)| Item::Use(UseItem { path, names, span: sp() }));
    let const_item = (ident(), prop::option::of(ty(x.clone())), x.clone())
        .prop_map(|(name, ty, value)| Item::Const(ConstItem { name, ty, value, span: sp() }));
    let param = (ident(), prop::option::of(ty(x.clone())), prop::option::of(x.clone()))
        .prop_map(|(name, ty, default)| Param { name, ty, default, span: sp() });
    let ret = prop_oneof![
        ty(x.clone()).prop_map(RetType::Single),
        prop::collection::vec(
            (prop::option::of(ident()), ty(x.clone())).prop_map(|(name, ty)| RetField { name, ty }),
            0..3
        )
        .prop_map(|f| RetType::Tuple(f, sp())),
    ];
    let fn_item = (
        any::<bool>(),
        ident(),
        prop::collection::vec(ident(), 0..3),
        prop::collection::vec(param, 0..3),
        prop::option::of(ret),
        block(x),
    )
        .prop_map(|(kernel, name, dims, params, ret, body)| {
            let kind = if kernel { FnKind::Kernel } else { FnKind::Fn };
            let (dims, ret) = match kind {
                // A kernel always has a result type; only kernels have explicit dimensions.
                FnKind::Kernel => (dims, Some(ret.unwrap_or(RetType::Tuple(vec![], sp())))),
                FnKind::Fn => (vec![], ret),
            };
            Item::Fn(FnItem { kind, name, dims, params, ret, body, span: sp() })
        });
    prop::collection::vec(prop_oneof![use_item, const_item, fn_item], 0..4).prop_map(|items| Module { items })
}

/// The AST node kinds a generated module contains, to check that generation covers all of them.
fn kinds(m: &Module, out: &mut std::collections::BTreeSet<&'static str>) {
    fn walk(e: &Expr, out: &mut std::collections::BTreeSet<&'static str>) {
        out.insert(match &e.kind {
            ExprKind::Int(_) => "int",
            ExprKind::Float(_) => "float",
            ExprKind::Bool(_) => "bool",
            ExprKind::Name(_) => "name",
            ExprKind::Unary(..) => "unary",
            ExprKind::Binary(..) => "binary",
            ExprKind::Cast(..) => "cast",
            ExprKind::Call(_, CallArgs::List(_)) => "call",
            ExprKind::Call(_, CallArgs::Reduce(..)) => "reduce",
            ExprKind::Index(..) => "index",
            ExprKind::Tuple(_) => "tuple",
            ExprKind::Array(_) => "array",
            ExprKind::Block(_) => "block",
            ExprKind::Comprehension(..) => "comprehension",
            ExprKind::Loop { .. } => "loop",
        });
        for c in e.children() {
            walk(c, out);
        }
    }
    for i in &m.items {
        match i {
            Item::Use(_) => {
                out.insert("use");
            }
            Item::Const(c) => {
                out.insert("const");
                walk(&c.value, out);
            }
            Item::Fn(f) => {
                out.insert(if f.kind == FnKind::Kernel { "kernel" } else { "fn" });
                walk(&f.body.value, out);
                for s in &f.body.stmts {
                    match s {
                        Stmt::Let { value, .. } => walk(value, out),
                        Stmt::BreakIf { cond, .. } => walk(cond, out),
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn print_parse_round_trip(m in module()) {
        let printed = tk_compiler::pretty::module_to_string(&m);
        let (parsed, diags) = tk_compiler::parser::parse(0, &printed);
        let deep = m.items.iter().any(|i| match i {
            Item::Fn(f) => f.body.value.depth > MAX_NESTING,
            _ => false,
        });
        prop_assume!(!deep);
        prop_assert!(diags.is_empty(), "printed program does not parse:\n{}\n{:?}", printed, diags.iter().map(|d| &d.message).collect::<Vec<_>>());
        prop_assert_eq!(&parsed, &m, "\n{}", printed);
        // Printing is a fixed point.
        prop_assert_eq!(tk_compiler::pretty::module_to_string(&parsed), printed);
    }

    #[test]
    fn expression_round_trip(x in expr()) {
        let printed = tk_compiler::pretty::expr_to_string(&x);
        let parsed = tk_compiler::parser::parse_expr(0, &printed);
        prop_assert!(parsed.is_ok(), "{}", printed);
        prop_assert_eq!(parsed.ok(), Some(x), "\n{}", printed);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let src = String::from_utf8_lossy(&bytes).into_owned();
        let _ = tk_compiler::check_source(Path::new("random.tk"), src);
    }

    #[test]
    fn random_token_soup_never_panics(toks in prop::collection::vec(prop::sample::select(vec![
        "kernel", "fn", "let", "use", "const", "loop", "in", "with", "break", "if", "as", "new", "std", "::",
        "x", "n", "f32", "i32", "sum", "where", "(", ")", "[", "]", "{", "}", ",", ";", ":", "..", "->", "=>",
        "=", "+", "-", "*", "**", "/", "@", "<", ">", "&&", "!", "0", "1", "2.0", "axis", "true",
    ]), 0..80)) {
        let _ = tk_compiler::check_source(Path::new("soup.tk"), toks.join(" "));
    }

    /// Every diagnostic renders, and stays small however long its source line: the same token
    /// soup on one line padded to thousands of characters, or over many lines, or with tabs and
    /// multi-byte characters around the error.
    #[test]
    fn diagnostics_render_small_for_any_line_length(
        toks in prop::collection::vec(prop::sample::select(vec![
            "kernel", "k", "(", ")", "x", ":", "f32[n]", "->", "{", "}", "+", ";", "let", "=", "é", "\t", "∑", "1.0",
        ]), 0..60),
        pad in 0usize..5000,
        newlines in any::<bool>(),
    ) {
        let sep = if newlines { "\n" } else { " " };
        let src = format!("{}{}{}", " ".repeat(pad), toks.join(sep), "é".repeat(pad / 2));
        let c = tk_compiler::check_source(Path::new("long.tk"), src);
        for d in &c.diags {
            let r = d.render_plain(&c.program.sources);
            prop_assert!(r.len() < 4000, "{} bytes:\n{r}", r.len());
        }
    }
}

/// Mutations of every example (a token dropped, duplicated or swapped) never panic the front end.
#[test]
fn mutated_examples_never_panic() {
    let mut files: Vec<_> = std::fs::read_dir("../examples")
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tk"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for f in files {
        let src = std::fs::read_to_string(&f).expect("readable");
        let spans: Vec<(usize, usize)> =
            tk_compiler::lexer::Lexer::new(&src).flatten().map(|(l, _, r)| (l, r)).collect();
        if spans.len() < 2 {
            continue;
        }
        for _ in 0..40 {
            let (op, i, j) =
                (0u8..3, 0..spans.len(), 0..spans.len()).new_tree(&mut runner).expect("strategy").current();
            let (a, b) = (spans[i], spans[j]);
            let mutated = match op {
                0 => format!("{}{}", &src[..a.0], &src[a.1..]),
                1 => format!("{}{} {}", &src[..a.1], &src[a.0..a.1], &src[a.1..]),
                _ => {
                    let (x, y) = if a.0 <= b.0 { (a, b) } else { (b, a) };
                    if x.1 > y.0 {
                        continue;
                    }
                    format!("{}{}{}{}{}", &src[..x.0], &src[y.0..y.1], &src[x.1..y.0], &src[x.0..x.1], &src[y.1..])
                }
            };
            // Relative imports must resolve next to the original file.
            let _ = tk_compiler::check_source(&f, mutated);
        }
    }
}

/// The generator reaches every node kind.
#[test]
fn generator_covers_every_node_kind() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..2000 {
        let m = module().new_tree(&mut runner).expect("strategy").current();
        kinds(&m, &mut seen);
    }
    let all = [
        "int",
        "float",
        "bool",
        "name",
        "unary",
        "binary",
        "cast",
        "call",
        "reduce",
        "index",
        "tuple",
        "array",
        "block",
        "comprehension",
        "loop",
        "use",
        "const",
        "fn",
        "kernel",
    ];
    for k in all {
        assert!(seen.contains(k), "the generator never produced `{k}`: {seen:?}");
    }
}
