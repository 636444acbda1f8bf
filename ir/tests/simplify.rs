//! The index simplifier never changes a value: for random expressions over coordinates with
//! known extents, the simplified expression evaluates to the same value at every coordinate.

use proptest::prelude::*;
use tk_ir::dims::Dim;
use tk_ir::graph::IExpr;

fn eval(e: &IExpr, c: &[i64], n: i64) -> i64 {
    match e {
        IExpr::Coord(k) => c[*k],
        IExpr::Dim(d) => d.eval(&|_| Some(n)).unwrap_or(0),
        IExpr::Add(a, b) => eval(a, c, n) + eval(b, c, n),
        IExpr::Mul(a, b) => eval(a, c, n) * eval(b, c, n),
        IExpr::Div(a, b) => {
            let y = eval(b, c, n);
            if y == 0 { 0 } else { eval(a, c, n).div_euclid(y) }
        }
        IExpr::Mod(a, b) => {
            let y = eval(b, c, n);
            if y == 0 { 0 } else { eval(a, c, n).rem_euclid(y) }
        }
        IExpr::Data(_) => 0,
    }
}

fn expr() -> impl Strategy<Value = IExpr> {
    let leaf = prop_oneof![
        (0usize..3).prop_map(IExpr::Coord),
        (-3i64..8).prop_map(IExpr::c),
        Just(IExpr::Dim(Dim::sym("n"))),
        Just(IExpr::Dim(Dim::sym("n").mul(&Dim::constant(2)))),
    ];
    leaf.prop_recursive(4, 24, 2, |inner| {
        let div = prop_oneof![(1i64..6).prop_map(IExpr::c), Just(IExpr::Dim(Dim::sym("n")))];
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| IExpr::Add(Box::new(a), Box::new(b))),
            (inner.clone(), (-3i64..5).prop_map(IExpr::c)).prop_map(|(a, b)| IExpr::Mul(Box::new(a), Box::new(b))),
            (inner.clone(), Just(IExpr::Dim(Dim::sym("n")))).prop_map(|(a, b)| IExpr::Mul(Box::new(a), Box::new(b))),
            (inner.clone(), div.clone()).prop_map(|(a, b)| IExpr::Div(Box::new(a), Box::new(b))),
            (inner, div).prop_map(|(a, b)| IExpr::Mod(Box::new(a), Box::new(b))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn simplification_preserves_values(e in expr(), n in 0i64..7, exts in prop::collection::vec(0i64..6, 3)) {
        // Extents: constants, or expressions of n, as kernel ranges have.
        let extents = [Dim::constant(exts[0]), Dim::sym("n"), Dim::sym("n").mul(&Dim::constant(exts[2]))];
        let s = e.simplified_in(&|k| extents.get(k).cloned());
        let ext_vals: Vec<i64> = extents.iter().map(|d| d.eval(&|_| Some(n)).unwrap_or(0)).collect();
        for c0 in 0..ext_vals[0] {
            for c1 in 0..ext_vals[1] {
                for c2 in 0..ext_vals[2].min(8) {
                    let c = [c0, c1, c2];
                    prop_assert_eq!(eval(&e, &c, n), eval(&s, &c, n), "{} vs {} at {:?}, n = {}", e, s, c, n);
                }
            }
        }
    }
}

#[test]
fn reshape_indices_collapse() {
    // (c0 / 4) * 4 + c0 % 4 == c0; (4 c0 + c1) / 4 == c0 when c1 < 4; (4 c0 + c1) % 4 == c1.
    let c = |k| IExpr::Coord(k);
    let four = || IExpr::c(4);
    let ext = |k: usize| Some(if k == 1 { Dim::constant(4) } else { Dim::sym("n") });
    let e = IExpr::Add(
        Box::new(IExpr::Mul(Box::new(IExpr::Div(Box::new(c(0)), Box::new(four()))), Box::new(four()))),
        Box::new(IExpr::Mod(Box::new(c(0)), Box::new(four()))),
    );
    assert_eq!(e.simplified_in(&ext), c(0));
    let lin = IExpr::Add(Box::new(IExpr::Mul(Box::new(four()), Box::new(c(0)))), Box::new(c(1)));
    assert_eq!(IExpr::Div(Box::new(lin.clone()), Box::new(four())).simplified_in(&ext), c(0));
    assert_eq!(IExpr::Mod(Box::new(lin), Box::new(four())).simplified_in(&ext), c(1));
}
