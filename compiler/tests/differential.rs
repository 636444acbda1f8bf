//! Differential property tests: random programs and sizes (including 0, 1 and primes) give the
//! same results from the graph interpreter and, after scheduling, from the kernel interpreter
//! under random valid knobs.

mod random_exprs;

use proptest::prelude::*;
use random_exprs::{mat, row};
use std::collections::HashMap;
use std::path::Path;
use tk_compiler::types::DType;
use tk_ir::graph::Scalar;
use tk_ir::graph::interp::{self, Array};
use tk_ir::kernel::Knobs;

fn run(src: &str, n: i64, m: i64, knob_seed: u64) -> Result<(), TestCaseError> {
    let c = tk_compiler::check_source(Path::new("random.tk"), src.to_string());
    prop_assert!(c.is_ok(), "{}\n{}", src, c.render_plain());
    let g = tk_compiler::lower::lower_kernel(&c.kernels[0]).map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
    let g = tk_ir::graph::passes::prepare(&g);
    let s = tk_ir::schedule::schedule(&g);
    let mut seed = knob_seed | 1;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let knobs: Vec<Knobs> = s
        .kernels
        .iter()
        .map(|k| {
            let r = s.buffers[k.writes[0]].shape.len();
            Knobs {
                parallel: (next() % (r as u64 + 1)) as usize,
                unroll: 1 << (next() % 3),
                vector: if r == 0 { 1 } else { 1 << (next() % 3) },
                group: 1,
                upcast: 1 << (next() % 3),
            }
        })
        .collect();
    let dims: HashMap<String, i64> = [("n".to_string(), n), ("m".to_string(), m)].into();
    let x = Array::from_fn(DType::F32, vec![n as usize, m as usize], |i| {
        Scalar::Float(((i * 7919) % 23) as f64 / 7.0 - 1.5)
    });
    let y = Array::from_fn(DType::F32, vec![m as usize], |i| Scalar::Float(((i * 104729) % 13) as f64 / 5.0 - 1.0));
    let args: Vec<Array> = g
        .inputs
        .iter()
        .map(|(name, d, _)| match name.as_str() {
            "x" => x.clone(),
            "y" => y.clone(),
            // An integer `a`: the dtype's extremes and shift amounts among small values.
            _ => {
                let (lo, hi) = d.int_range().expect("an integer dtype");
                let vals = [lo, hi, -1, 0, 1, 2, 3, -3, 7, 8, 31, 32, 64, lo + 1, hi - 1];
                Array::from_fn(*d, vec![n as usize, m as usize], |i| {
                    Scalar::Int(interp::wrap(vals[(i * 7) % vals.len()], *d))
                })
            }
        })
        .collect();
    let b = interp::bind_dims(&g, &args, &dims).map_err(TestCaseError::fail)?;
    let want = interp::run(&g, &b, &args);
    let got = tk_ir::kernel::run_schedule(&s, &knobs, &b, &args);
    match (want, got) {
        (Ok(a), Ok(c)) => prop_assert_eq!(format!("{a:?}"), format!("{c:?}"), "{}", src),
        (Err(_), Err(_)) => {}
        (a, c) => prop_assert!(false, "{}: graph {:?} vs kernel {:?}", src, a, c),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_agree(e in mat(3), n in prop::sample::select(vec![0i64, 1, 2, 3, 5, 7]), m in prop::sample::select(vec![0i64, 1, 2, 4, 5, 11]), seed in any::<u64>()) {
        let src = format!("kernel k(x: f32[n, m], y: f32[m]) -> f32[n, m] {{ {e} }}\n");
        run(&src, n, m, seed)?;
    }

    #[test]
    fn random_integer_programs_agree((t, e) in prop::sample::select(random_exprs::INT_DTYPES.to_vec()).prop_flat_map(|t| (Just(t), random_exprs::int_mat(t, 3))), n in prop::sample::select(vec![0i64, 1, 2, 3, 5, 7]), m in prop::sample::select(vec![0i64, 1, 2, 4, 5, 11]), seed in any::<u64>()) {
        let src = format!("kernel k(a: {t}[n, m], x: f32[n, m]) -> {t}[n, m] {{ {e} }}\n");
        run(&src, n, m, seed)?;
    }

    #[test]
    fn random_row_programs_agree(e in row(3), n in prop::sample::select(vec![0i64, 1, 3, 7]), m in prop::sample::select(vec![0i64, 1, 5, 13]), seed in any::<u64>()) {
        let src = format!("kernel k(x: f32[n, m], y: f32[m]) -> f32[m] {{ {e} }}\n");
        run(&src, n, m, seed)?;
    }
}
