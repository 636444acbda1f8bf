//! Every example and every standard-library module checks cleanly.

use std::path::{Path, PathBuf};

fn tk_files(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("readable dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "tk") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn examples_check_cleanly() {
    let files = tk_files("examples");
    assert!(files.len() >= 12, "expected at least 12 examples, found {}", files.len());
    let mut failures = String::new();
    let mut kernels = 0;
    for f in &files {
        let src = std::fs::read_to_string(f).expect("readable");
        let checked = tk_compiler::check_source(f, src);
        if !checked.is_ok() {
            failures.push_str(&checked.render_plain());
        }
        kernels += checked.kernels.len();
    }
    assert!(failures.is_empty(), "examples with errors:\n{failures}");
    assert!(kernels >= 20, "the examples define only {kernels} kernels");
}

#[test]
fn stdlib_modules_check_cleanly() {
    let mut n = 0;
    for name in tk_stdlib::module_names() {
        let src = tk_stdlib::module(name).expect("listed module exists");
        // Check each module as a root file: every fn's names resolve and typed fns type-check.
        let checked = tk_compiler::check_source(Path::new(&format!("<std>/{name}.tk")), src.to_string());
        assert!(checked.is_ok(), "std::{name} has errors:\n{}", checked.render_plain());
        n += 1;
    }
    assert!(n >= 3);
}

/// Importing every stdlib fn and calling it on concrete arrays type-checks each generic fn.
#[test]
fn stdlib_fns_instantiate() {
    let src = r#"
use std::nn::*;
use std::math::*;
kernel acts(x: f32[b, n]) -> (a: f32[b, n], g: f32[b, n], s: f32[b, n], sm: f32[b, n], ls: f32[b, n]) {
    (relu(x), gelu(x), silu(x), softmax(x), log_softmax(x, axis: 1))
}
kernel norms(x: f32[b, n], g: f32[n], beta: f32[n]) -> (l: f32[b, n], r: f32[b, n]) {
    (layernorm(x, g, beta), rmsnorm(x, g))
}
kernel att(q: f32[s, d], k: f32[t, d], v: f32[t, e]) -> f32[s, e] { attention(q, k, v) }
kernel half_acts(x: f16[n]) -> f16[n] { sigmoid(gelu(x)) }
"#;
    let checked = tk_compiler::check_source(Path::new("stdlib_use.tk"), src.to_string());
    assert!(checked.is_ok(), "{}", checked.render_plain());
    assert_eq!(checked.kernels.len(), 4);
}

/// Every builtin, every dtype and every operator appears in a program that the tests check
/// cleanly (the examples, the stdlib and the type filetests).
#[test]
fn every_language_feature_is_exercised() {
    let mut text = String::new();
    for dir in ["examples", "stdlib/std", "tests/filetests/types"] {
        for f in tk_files(dir) {
            text.push_str(&std::fs::read_to_string(f).expect("readable"));
            text.push('\n');
        }
    }
    let words: std::collections::HashSet<&str> =
        text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty()).collect();
    let mut missing = Vec::new();
    for b in tk_compiler::load::BUILTINS {
        if !text.contains(&format!("{b}(")) {
            missing.push(format!("builtin `{b}`"));
        }
    }
    for d in tk_compiler::types::DType::ALL {
        if !words.contains(d.name()) {
            missing.push(format!("dtype `{d}`"));
        }
    }
    let ops = [
        " + ",
        " - ",
        " * ",
        " / ",
        " % ",
        " @ ",
        " ** ",
        " << ",
        " >> ",
        " & ",
        " | ",
        " ^ ",
        " && ",
        " || ",
        " == ",
        " != ",
        " < ",
        " <= ",
        " > ",
        " >= ",
        "!",
        " as ",
        "] =>",
        "loop ",
        "break if",
        "keep: true",
        "new",
        "::-1",
        "use std::",
        "use lib::",
        "const ",
        "kernel ",
        "fn ",
        "-> (",
        "= -1)",
        "in 0..",
    ];
    for op in ops {
        if !text.contains(op) {
            missing.push(format!("syntax `{op}`"));
        }
    }
    assert!(missing.is_empty(), "not exercised by any checked program: {missing:?}");
}
