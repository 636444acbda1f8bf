//! The front end never panics, overflows its stack or loops, whatever the input.

use std::path::Path;
use std::time::{Duration, Instant};

fn check(src: String) -> Vec<&'static str> {
    let c = tk_compiler::check_source(Path::new("input.tk"), src);
    c.diags.iter().map(|d| d.code.as_str()).collect()
}

fn wrap(depth: usize, open: &str, inner: &str, close: &str) -> String {
    format!("kernel k(x: f32[n]) -> f32[n] {{ {}{inner}{} }}\n", open.repeat(depth), close.repeat(depth))
}

#[test]
fn deep_parentheses_are_fine() {
    // Parentheses do not add AST nodes: 100k levels parse.
    let codes = check(wrap(100_000, "(", "x", ")"));
    assert!(codes.is_empty(), "{codes:?}");
}

#[test]
fn deep_nesting_is_refused_with_a_diagnostic() {
    for (open, inner, close) in [
        ("-", "x", ""),
        ("!", "x", ""),
        ("{ ", "x", " }"),
        ("exp(", "x", ")"),
        ("[i] => ", "x", ""),
        ("(x + ", "x", ")"),
    ] {
        let codes = check(wrap(100_000, open, inner, close));
        assert!(codes.contains(&"E0006"), "{open}: {codes:?}");
    }
    let long_chain = format!("kernel k(x: f32[n]) -> f32[n] {{ {} }}\n", vec!["x"; 100_000].join(" + "));
    assert!(check(long_chain).contains(&"E0006"));
    let deep_type =
        format!("kernel k(x: f32[{}n{}]) -> f32[n] {{ x }}\n", "(".repeat(100_000), " + 1)".repeat(100_000));
    assert!(check(deep_type).contains(&"E0006"));
}

#[test]
fn nesting_just_under_the_limit_checks() {
    let depth = tk_compiler::ast::MAX_NESTING as usize - 4;
    let codes = check(wrap(depth, "-", "x", ""));
    assert!(codes.is_empty(), "{codes:?}");
}

#[test]
fn recursion_is_an_error_not_a_hang() {
    let src = "fn f(x) { g(x) + 1.0 }\nfn g(x) { f(x) * 2.0 }\nkernel k(x: f32[n]) -> f32[n] { f(x) }\n";
    assert!(check(src.to_string()).contains(&"E0106"));
    let src = "fn f(x) { f(x) }\n";
    assert!(check(src.to_string()).contains(&"E0106"));
}

#[test]
fn exponential_inlining_terminates() {
    // Each fn calls the next twice: 2^40 expansions if nothing stopped it; sharing keeps it linear,
    // and the nesting limit bounds it.
    let mut src = String::new();
    for i in 0..40 {
        src.push_str(&format!("fn h{i}(x) {{ h{}(x) + h{}(x) }}\n", i + 1, i + 1));
    }
    src.push_str("fn h40(x) { x }\nkernel k(x: f32[n]) -> f32[n] { h0(x) }\n");
    let t = Instant::now();
    let codes = check(src);
    assert!(codes.contains(&"E0406"), "{codes:?}");
    assert!(t.elapsed() < Duration::from_secs(60), "took {:?}", t.elapsed());
}

#[test]
fn multi_megabyte_files_check() {
    let mut src = String::new();
    let mut i = 0;
    while src.len() < 4 << 20 {
        src.push_str(&format!("kernel k{i}(a: f32, x: f32[n], y: f32[n]) -> f32[n] {{ a * x + y }}\n"));
        i += 1;
    }
    let t = Instant::now();
    let c = tk_compiler::check_source(Path::new("big.tk"), src);
    assert!(c.is_ok());
    assert_eq!(c.kernels.len(), i);
    assert!(t.elapsed() < Duration::from_secs(120), "took {:?}", t.elapsed());
}

#[test]
fn odd_bytes_and_unicode_do_not_panic() {
    for s in [
        "\u{0}",
        "kernel \u{1F600}",
        "\"",
        "'",
        "/*",
        "*/",
        "0x",
        "0b2",
        "1e",
        "1e+",
        "..",
        "::",
        "k<",
        "kernel k<>() -> f32 { 1.0 }",
        "é",
        "\u{FEFF}kernel",
    ] {
        let _ = check(s.to_string());
    }
}
