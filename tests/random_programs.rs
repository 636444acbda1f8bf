//! Random programs on every device: each random expression (the compiler's differential-test
//! generator) is compiled for the device twice, once with symbolic sizes `n` and `m` and run at
//! several sizes, and once with the sizes written into the program as constants (the code
//! generators fold those, and the ONNX cases showed that they reach instructions symbolic sizes
//! never do). Every run matches the reference interpreter bit for bit under the exact options.
//! `TK_RANDOM_PROGRAMS=500 cargo test --features amdgpu --test random_programs` searches longer.

#[path = "../compiler/tests/random_exprs/mod.rs"]
mod random_exprs;

mod common;

use proptest::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use tk_driver::HostArray;
use tk_ir::interp::{self, Array};

/// Awkward sizes: empty, one, primes, and non-multiples of the vector widths.
const SIZES: [i64; 6] = [0, 1, 2, 5, 7, 13];

/// The source of kernel `main` computing `e` of shape f32[n, m] (`row`: f32[m]), with the sizes
/// symbolic (`None`) or written in.
fn program(e: &str, row: bool, sizes: Option<(i64, i64)>) -> String {
    let (n, m, e) = match sizes {
        None => ("n".to_string(), "m".to_string(), e.to_string()),
        Some((n, m)) => {
            (n.to_string(), m.to_string(), e.replace("0..n", &format!("0..{n}")).replace("0..m", &format!("0..{m}")))
        }
    };
    let out = if row { format!("f32[{m}]") } else { format!("f32[{n}, {m}]") };
    format!("kernel main(x: f32[{n}, {m}], y: f32[{m}]) -> {out} {{ {e} }}\n")
}

/// Compiles `src` for `device` and runs it at each of `runs` (n, m), comparing with the
/// interpreter.
fn agree(device: &str, src: &str, runs: &[(i64, i64)], seed: u64) -> Result<(), TestCaseError> {
    let c = tk_compiler::check_source(Path::new("random.tk"), src.to_string());
    prop_assert!(c.is_ok(), "{}\n{}", src, c.render_plain());
    let g = tk_compiler::lower::lower_kernel(&c.kernels[0]).map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
    let g = tk_ir::passes::prepare(&g);
    let dev = tk_driver::open(device).map_err(|e| TestCaseError::fail(format!("{device}: {e}")))?;
    let compiled = tk_driver::compile(dev.as_ref(), "main", &g, &common::exact())
        .map_err(|e| TestCaseError::fail(format!("{device}: {src}compile: {e}")))?;
    let mut rng = common::Rng(seed | 1);
    for &(n, m) in runs {
        let dims: HashMap<String, i64> = [("n".to_string(), n), ("m".to_string(), m)].into();
        let args = common::random_args(&g, &dims, &mut rng);
        let want = interp::bind_dims(&g, &args, &HashMap::new())
            .map_err(|e| e.to_string())
            .and_then(|b| interp::run(&g, &b, &args).map_err(|e| e.message));
        let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
        let got = compiled.run(dev.as_ref(), &host, &HashMap::new());
        match (want, got) {
            (Ok(w), Ok(o)) => {
                let o: Vec<Array> = o.iter().map(HostArray::to_interp).collect();
                prop_assert_eq!(format!("{w:?}"), format!("{o:?}"), "{} at n = {}, m = {} on {}", src, n, m, device);
            }
            (Err(_), Err(_)) => {}
            (w, o) => prop_assert!(
                false,
                "{} at n = {}, m = {}: interpreter {:?} vs {} {:?}",
                src,
                n,
                m,
                w.err(),
                device,
                o.err().map(|e| e.to_string())
            ),
        }
    }
    Ok(())
}

/// Both forms of a random program on `device`.
fn both(device: &str, e: &str, row: bool, n: i64, m: i64, seed: u64) -> Result<(), TestCaseError> {
    let runs: Vec<(i64, i64)> = vec![(n, m), (m, n), (1, m)];
    agree(device, &program(e, row, None), &runs, seed)?;
    agree(device, &program(e, row, Some((n, m))), &[(n, m)], seed)
}

/// 24 programs per device, or `TK_RANDOM_PROGRAMS` (to search longer by hand).
fn config() -> ProptestConfig {
    let cases = std::env::var("TK_RANDOM_PROGRAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

fn size() -> impl Strategy<Value = i64> {
    prop::sample::select(SIZES.to_vec())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_programs_agree_on_the_cpu(e in random_exprs::mat(3), row in random_exprs::row(2), n in size(), m in size(), seed in any::<u64>()) {
        both("cpu", &e, false, n, m, seed)?;
        both("cpu", &row, true, n, m, seed)?;
    }

    #[test]
    fn random_programs_agree_on_the_ptx_simulator(e in random_exprs::mat(3), row in random_exprs::row(2), n in size(), m in size(), seed in any::<u64>()) {
        both("sim:sm_86", &e, false, n, m, seed)?;
        both("sim:sm_86", &row, true, n, m, seed)?;
    }
}

#[cfg(feature = "amdgpu")]
proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_programs_agree_on_the_rdna3_emulator(e in random_exprs::mat(3), row in random_exprs::row(2), n in size(), m in size(), seed in any::<u64>()) {
        both("sim:gfx1100", &e, false, n, m, seed)?;
        both("sim:gfx1100", &row, true, n, m, seed)?;
    }
}
