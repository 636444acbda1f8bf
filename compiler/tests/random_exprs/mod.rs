//! Random tk expressions over `x: f32[n, m]` and `y: f32[m]`, for property tests: shared by the
//! compiler's differential tests (graph against kernel interpreter) and the root package's
//! `tests/common/random.rs` (every device of `device_suite!` against the interpreter). Comprehensions range over
//! `0..n` and `0..m`, so a caller can substitute concrete sizes for the two symbols.

use proptest::prelude::*;

/// Random expressions of shape f32[n, m] (`mat`) and f32[m] (`row`).
pub fn mat(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("x".to_string()),
        Just("(x * 0.5)".to_string()),
        Just("([i in 0..n, j in 0..m] => x[i, j] + (j as f32))".to_string())
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let m = || mat(depth - 1);
    let r = || row(depth - 1);
    prop_oneof![
        leaf,
        (m(), m()).prop_map(|(a, b)| format!("({a} + {b})")),
        (m(), m()).prop_map(|(a, b)| format!("({a} * {b})")),
        (m(), r()).prop_map(|(a, b)| format!("({a} - {b})")),
        (m(), m()).prop_map(|(a, b)| format!("({a} / (abs({b}) + 1.0))")),
        m().prop_map(|a| format!("exp(-abs({a}))")),
        m().prop_map(|a| format!("tanh({a})")),
        m().prop_map(|a| format!("sqrt(abs({a}))")),
        (m(), m(), m()).prop_map(|(c, a, b)| format!("where({c} > 0.0, {a}, {b})")),
        m().prop_map(|a| format!("({a} - max({a}, axis: 1, keep: true))")),
        m().prop_map(|a| format!("({a} / (sum(abs({a}), axis: 1, keep: true) + 1.0))")),
        m().prop_map(|a| format!("flip({a}, axis: 0)")),
        m().prop_map(|a| format!("transpose(transpose({a}))")),
        m().prop_map(|a| format!("cumsum({a}, axis: 1)")),
        m().prop_map(|a| format!("max({a}, 0.25)")),
        (m(), m()).prop_map(|(a, b)| format!("min({a}, {b})")),
        (m(), m()).prop_map(|(a, b)| format!("max({a}, -{b})")),
        (m(), m()).prop_map(|(a, b)| format!("({a} % {b})")),
        m().prop_map(|a| format!("({a} @ transpose({a}) @ {a})")),
    ]
    .boxed()
}

pub fn row(depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![Just("y".to_string()), Just("(y * y)".to_string())];
    if depth == 0 {
        return leaf.boxed();
    }
    let m = || mat(depth - 1);
    let r = || row(depth - 1);
    prop_oneof![
        leaf,
        m().prop_map(|a| format!("sum({a}, axis: 0)")),
        m().prop_map(|a| format!("min({a}, axis: 0)")),
        (r(), r()).prop_map(|(a, b)| format!("({a} * {b} - {a})")),
        r().prop_map(|a| format!("log(abs({a}) + 1.0)")),
        r().prop_map(|a| format!("([j in 0..m] => {a}[j] * 3.0)")),
    ]
    .boxed()
}

/// The integer dtypes the integer generator draws from.
pub const INT_DTYPES: [&str; 6] = ["i8", "i16", "i32", "i64", "u8", "u32"];

/// Random integer expressions of dtype `t` and shape [n, m] over `a: t[n, m]` and
/// `x: f32[n, m]`: wrapping arithmetic, floor division and remainder (by zero included), shifts
/// past the width, powers (negative exponents included), bit operations, min/max/abs, selects, sums, scans and casts both ways. Every
/// one is defined for every input (docs/numerics.md), so any mismatch is a bug.
pub fn int_mat(t: &'static str, depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        Just("a".to_string()),
        Just(format!("(x as {t})")),
        Just(format!("([i in 0..n, j in 0..m] => a[i, j] * ((i * 3 + j) as {t}))")),
        Just("(a >> 1)".to_string()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let m = move || int_mat(t, depth - 1);
    prop_oneof![
        leaf,
        (m(), m()).prop_map(|(p, q)| format!("({p} + {q})")),
        (m(), m()).prop_map(|(p, q)| format!("({p} - {q})")),
        (m(), m()).prop_map(|(p, q)| format!("({p} * {q})")),
        (m(), m()).prop_map(|(p, q)| format!("({p} / {q})")),
        (m(), m()).prop_map(|(p, q)| format!("({p} % {q})")),
        (m(), m()).prop_map(|(p, q)| format!("({p} ** {q})")),
        m().prop_map(|p| format!("({p} ** 3)")),
        (m(), m()).prop_map(|(p, q)| format!("({p} << {q})")),
        (m(), m()).prop_map(|(p, q)| format!("({p} >> {q})")),
        (m(), m()).prop_map(|(p, q)| format!("(({p} & {q}) ^ ({p} | 5))")),
        m().prop_map(|p| format!("(!{p})")),
        (m(), m()).prop_map(|(p, q)| format!("min({p}, {q})")),
        (m(), m()).prop_map(|(p, q)| format!("max({p}, {q})")),
        m().prop_map(|p| format!("abs({p})")),
        (m(), m(), m()).prop_map(|(c, p, q)| format!("where({c} > {p}, {p}, {q})")),
        m().prop_map(move |p| format!("({p} - (sum({p}, axis: 1, keep: true) as {t}))")),
        m().prop_map(|p| format!("(max({p}, axis: 0, keep: true) + {p})")),
        m().prop_map(move |p| format!("(cumsum({p}, axis: 0) as {t})")),
        m().prop_map(move |p| format!("((({p} as f32) * 0.75) as {t})")),
        m().prop_map(move |p| format!("((({p} as i64) * 3 + 1) as {t})")),
        m().prop_map(|p| format!("flip({p}, axis: 1)")),
    ]
    .boxed()
}
