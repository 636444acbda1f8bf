//! The semantics docs/language.md pins, as far as the front end computes them: constant folding
//! must give exactly the values every backend computes at run time.

use std::path::Path;
use tk_compiler::tast::{Lit, TKind};

/// Folds `expr` (the body of a kernel returning `ty`) and returns the literal it folds to.
fn fold(ty: &str, expr: &str) -> Lit {
    let src = format!("kernel k() -> {ty} {{ {expr} }}\n");
    let c = tk_compiler::check_source(Path::new("fold.tk"), src);
    assert!(c.is_ok(), "{expr}: {}", c.render_plain());
    match &c.kernels[0].results[0].kind {
        TKind::Lit(l) => *l,
        other => panic!("{expr} did not fold: {other:?}"),
    }
}

#[test]
fn integer_overflow_wraps() {
    assert_eq!(fold("i8", "(127 as i8) + (1 as i8)"), Lit::Int(-128));
    assert_eq!(fold("u8", "(0 as u8) - (1 as u8)"), Lit::Int(255));
    assert_eq!(fold("i32", "(2147483647 as i32) * (2 as i32)"), Lit::Int(-2));
    assert_eq!(fold("i8", "300 as i8"), Lit::Int(44));
}

#[test]
fn integer_division_floors_and_remainder_follows_the_divisor() {
    assert_eq!(fold("i32", "7 / 2"), Lit::Int(3));
    assert_eq!(fold("i32", "-7 / 2"), Lit::Int(-4));
    assert_eq!(fold("i32", "7 / -2"), Lit::Int(-4));
    assert_eq!(fold("i32", "-7 / -2"), Lit::Int(3));
    assert_eq!(fold("i32", "-7 % 3"), Lit::Int(2));
    assert_eq!(fold("i32", "7 % -3"), Lit::Int(-2));
    assert_eq!(fold("i32", "-6 % 3"), Lit::Int(0));
}

#[test]
fn integer_division_by_zero_is_zero_and_min_over_minus_one_wraps() {
    assert_eq!(fold("i32", "5 / 0"), Lit::Int(0));
    assert_eq!(fold("i32", "5 % 0"), Lit::Int(0));
    assert_eq!(fold("i8", "(-128 as i8) / (-1 as i8)"), Lit::Int(-128));
}

#[test]
fn float_to_int_casts_saturate_and_nan_is_zero() {
    assert_eq!(fold("i8", "1000.0 as i8"), Lit::Int(127));
    assert_eq!(fold("i8", "-1000.0 as i8"), Lit::Int(-128));
    assert_eq!(fold("u8", "-3.5 as u8"), Lit::Int(0));
    assert_eq!(fold("i32", "-2.9 as i32"), Lit::Int(-2));
    assert_eq!(fold("i32", "(0.0 / 0.0) as i32"), Lit::Int(0));
    assert_eq!(fold("bool", "0.5 as bool"), Lit::Bool(true));
    assert_eq!(fold("f32", "true as f32"), Lit::Float(1.0));
}

#[test]
fn literals_default_to_i32_and_f32() {
    let c = tk_compiler::check_source(
        Path::new("lits.tk"),
        "kernel k<n>() -> (a: i32[n], b: f32[n]) { ([i in 0..n] => 1, [i in 0..n] => 1.5) }\n".to_string(),
    );
    assert!(c.is_ok(), "{}", c.render_plain());
    // A literal that does not fit the dtype its context needs is an error, not a wrap.
    let c = tk_compiler::check_source(Path::new("lits.tk"), "kernel k(x: u8[n]) -> u8[n] { x + 256 }\n".to_string());
    assert_eq!(c.diags.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), ["E0202"]);
    let c = tk_compiler::check_source(Path::new("lits.tk"), "kernel k(x: u8[n]) -> u8[n] { x - -1 }\n".to_string());
    assert_eq!(c.diags.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), ["E0202"]);
}

#[test]
fn shifts_past_the_width_shift_everything_out() {
    assert_eq!(fold("i32", "(1 as i32) << (31 as i32)"), Lit::Int(i32::MIN as i128));
    assert_eq!(fold("i32", "(1 as i32) << (32 as i32)"), Lit::Int(0));
    assert_eq!(fold("i32", "(-8 as i32) >> (1 as i32)"), Lit::Int(-4));
    assert_eq!(fold("i32", "(-8 as i32) >> (40 as i32)"), Lit::Int(-1));
    assert_eq!(fold("i32", "(8 as i32) >> (40 as i32)"), Lit::Int(0));
    assert_eq!(fold("i32", "(8 as i32) << (-1 as i32)"), Lit::Int(0));
    assert_eq!(fold("u8", "(255 as u8) << (1 as u8)"), Lit::Int(254));
    assert_eq!(fold("u8", "(255 as u8) >> (7 as u8)"), Lit::Int(1));
}

#[test]
fn round_is_half_to_even_and_nan_propagates_through_max_min() {
    assert_eq!(fold("f32", "round(2.5)"), Lit::Float(2.0));
    assert_eq!(fold("f32", "round(3.5)"), Lit::Float(4.0));
    assert_eq!(fold("f32", "round(-2.5)"), Lit::Float(-2.0));
    assert_eq!(fold("f32", "floor(-2.5)"), Lit::Float(-3.0));
    assert_eq!(fold("f32", "ceil(-2.5)"), Lit::Float(-2.0));
    for e in ["max(0.0 / 0.0, 1.0)", "max(1.0, 0.0 / 0.0)", "min(0.0 / 0.0, 1.0)", "min(1.0, 0.0 / 0.0)"] {
        assert!(matches!(fold("f32", e), Lit::Float(v) if v.is_nan()), "{e}");
    }
    assert_eq!(fold("f32", "max(-0.5, 2.0)"), Lit::Float(2.0));
}

#[test]
fn integer_powers_of_negative_floats_are_exact() {
    // `x ** 2` with an integer literal exponent keeps x's dtype and is x * x.
    let c = tk_compiler::check_source(Path::new("pow.tk"), "kernel k(x: f16[n]) -> f16[n] { x ** 2 }\n".to_string());
    assert!(c.is_ok(), "{}", c.render_plain());
    match &c.kernels[0].results[0].kind {
        TKind::Binary(tk_compiler::ast::BinOp::Pow, _, e) => assert!(matches!(e.kind, TKind::Lit(Lit::Int(2)))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn inf_and_nan_are_float_literals_of_any_float_dtype() {
    assert_eq!(fold("f32", "-inf"), Lit::Float(f64::NEG_INFINITY));
    assert_eq!(fold("f16", "inf"), Lit::Float(f64::INFINITY));
    assert_eq!(fold("f32", "-1.0 / 0.0"), Lit::Float(f64::NEG_INFINITY), "division by zero folds to IEEE's value");
    assert!(matches!(fold("bf16", "nan"), Lit::Float(v) if v.is_nan()));
    assert_eq!(fold("bool", "nan == nan"), Lit::Bool(false));
    assert_eq!(fold("bool", "-inf < -3.0e38"), Lit::Bool(true));
    assert_eq!(fold("i32", "inf as i32"), Lit::Int(i64::from(i32::MAX) as i128));
    // A finite literal past the dtype's range is still an error; a local may shadow `inf`.
    let c = tk_compiler::check_source(Path::new("big.tk"), "kernel k() -> f32 { 1.0e39 }\n".to_string());
    assert!(c.render_plain().contains("E0202"), "{}", c.render_plain());
    assert_eq!(fold("f32", "{ let inf = 2.0; inf * 3.0 }"), Lit::Float(6.0));
}
