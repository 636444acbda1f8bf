//! Random programs on a device (part of every device's suite, `device_suite!`): each random
//! expression (the compiler's differential-test generators: float expressions in f32 and in f16,
//! bf16 or f64, and integer ones in every integer dtype) is compiled for the device twice, once
//! with symbolic sizes `n` and `m` and run at several sizes, and once with the sizes written into
//! the program as constants (the code generators fold those, and the ONNX cases showed that they
//! reach instructions symbolic sizes never do). Every run matches the reference interpreter bit for
//! bit under the exact options. `TK_RANDOM_PROGRAMS=500 TK_RANDOM_SEED=random cargo test
//! --features amdgpu random_programs` searches longer and elsewhere; CI runs 24 programs per device
//! from a fixed seed.

use proptest::prelude::*;
use std::collections::HashMap;
use std::path::Path;
use tk_ir::dtype::DType;
use tk_ir::graph::Scalar;
use tk_ir::graph::interp::{self, Array};
use tk_runtime::HostArray;

/// Awkward sizes: empty, one, primes, and non-multiples of the vector widths.
pub const SIZES: [i64; 6] = [0, 1, 2, 5, 7, 13];

/// What a random expression computes: f32[n, m] or f32[m] from `x` and `y`, or an integer
/// dtype's [n, m] from `a` and `x`.
#[derive(Clone, Copy)]
pub enum Kind {
    Mat,
    Row,
    Int(&'static str),
    /// A float expression in another float dtype (`f32` in the expression becomes it).
    Float(&'static str),
}

/// The source of kernel `main` computing `e`, with the sizes symbolic (`None`) or written in.
pub fn program(e: &str, kind: Kind, sizes: Option<(i64, i64)>) -> String {
    let (n, m, e) = match sizes {
        None => ("n".to_string(), "m".to_string(), e.to_string()),
        Some((n, m)) => {
            (n.to_string(), m.to_string(), e.replace("0..n", &format!("0..{n}")).replace("0..m", &format!("0..{m}")))
        }
    };
    match kind {
        Kind::Mat => format!("kernel main(x: f32[{n}, {m}], y: f32[{m}]) -> f32[{n}, {m}] {{ {e} }}\n"),
        Kind::Row => format!("kernel main(x: f32[{n}, {m}], y: f32[{m}]) -> f32[{m}] {{ {e} }}\n"),
        Kind::Int(t) => format!("kernel main(a: {t}[{n}, {m}], x: f32[{n}, {m}]) -> {t}[{n}, {m}] {{ {e} }}\n"),
        Kind::Float(t) => {
            let e = e.replace("f32", t);
            format!("kernel main(x: {t}[{n}, {m}], y: {t}[{m}]) -> {t}[{n}, {m}] {{ {e} }}\n")
        }
    }
}

/// Integer arguments with the values where integer semantics bite (the dtype's extremes, -1, 0,
/// shift amounts around the widths) among small values.
pub fn with_edge_integers(args: Vec<Array>, rng: &mut super::Rng) -> Vec<Array> {
    args.into_iter()
        .map(|a| {
            let Some((lo, hi)) = a.dtype.int_range().filter(|_| !a.dtype.is_float() && a.dtype != DType::Bool) else {
                return a;
            };
            let edges = [lo, lo + 1, hi, hi - 1, -1, 0, 1, 7, 8, 31, 32, 63, 64];
            Array::from_fn(a.dtype, a.shape.clone(), |_| {
                let v = match rng.next() % 4 {
                    0 => edges[(rng.next() % edges.len() as u64) as usize],
                    _ => (rng.next() % 9) as i128 - 4,
                };
                Scalar::Int(interp::wrap(v, a.dtype))
            })
        })
        .collect()
}

/// Compiles `src` for `device` and runs it at each of `runs` (n, m), comparing with the
/// interpreter.
pub fn agree(device: &str, src: &str, runs: &[(i64, i64)], seed: u64) -> Result<(), TestCaseError> {
    let session = tk_toolchain::Session::with_options(super::exact());
    let c = session.check(Path::new("random.tk"), src.to_string());
    prop_assert!(c.is_ok(), "{}\n{}", src, c.render_plain());
    let g = session.prepared(&c.kernels[0]).map_err(|e| TestCaseError::fail(format!("{src}: {e}")))?;
    let dev = super::open_device(device).map_err(|e| TestCaseError::fail(format!("{device}: {e}")))?;
    let compiled = session
        .compile(dev.as_ref(), "main", &g)
        .map_err(|e| TestCaseError::fail(format!("{device}: {src}compile: {e}")))?;
    let mut rng = super::Rng(seed | 1);
    for &(n, m) in runs {
        let dims: HashMap<String, i64> = [("n".to_string(), n), ("m".to_string(), m)].into();
        let args = with_edge_integers(super::random_args(&g, &dims, &mut rng), &mut rng);
        let want = interp::bind_dims(&g, &args, &HashMap::new())
            .map_err(|e| e.to_string())
            .and_then(|b| interp::run(&g, &b, &args).map_err(|e| e.message));
        let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
        let got = compiled.run(dev.as_ref(), &host, &HashMap::new());
        match (want, got) {
            (Ok(w), Ok(o)) => {
                let o: Vec<Array> = o.iter().map(HostArray::to_interp).collect();
                prop_assert_eq!(
                    format!("{w:?}"),
                    format!("{o:?}"),
                    "{} at n = {}, m = {} on {} with {:?}",
                    src,
                    n,
                    m,
                    device,
                    args
                );
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
pub fn both(device: &str, e: &str, kind: Kind, n: i64, m: i64, seed: u64) -> Result<(), TestCaseError> {
    let runs: Vec<(i64, i64)> = vec![(n, m), (m, n), (1, m)];
    agree(device, &program(e, kind, None), &runs, seed)?;
    agree(device, &program(e, kind, Some((n, m))), &[(n, m)], seed)
}

/// One random program of each kind.
#[derive(Debug, Clone)]
pub struct Programs {
    pub mat: String,
    pub row: String,
    pub int: (&'static str, String),
    pub float: (&'static str, String),
    pub n: i64,
    pub m: i64,
    pub seed: u64,
}

pub fn programs() -> impl Strategy<Value = Programs> {
    let int = prop::sample::select(super::random_exprs::INT_DTYPES.to_vec())
        .prop_flat_map(|t| (Just(t), super::random_exprs::int_mat(t, 3)));
    let float = (prop::sample::select(vec!["f16", "bf16", "f64"]), super::random_exprs::mat(2));
    let size = || prop::sample::select(SIZES.to_vec());
    (super::random_exprs::mat(3), super::random_exprs::row(2), int, float, size(), size(), any::<u64>())
        .prop_map(|(mat, row, int, float, n, m, seed)| Programs { mat, row, int, float, n, m, seed })
}

/// Every program of `p` on `device`.
pub fn on(device: &str, p: &Programs) -> Result<(), TestCaseError> {
    both(device, &p.mat, Kind::Mat, p.n, p.m, p.seed)?;
    both(device, &p.row, Kind::Row, p.n, p.m, p.seed)?;
    both(device, &p.int.1, Kind::Int(p.int.0), p.n, p.m, p.seed)?;
    both(device, &p.float.1, Kind::Float(p.float.0), p.n, p.m, p.seed)
}

/// 24 programs of each kind per device, or `TK_RANDOM_PROGRAMS` (to search longer by hand).
/// The programs come from a fixed seed, so a run is repeatable; `TK_RANDOM_SEED=N` picks
/// another and `TK_RANDOM_SEED=random` a fresh one each run.
pub fn config() -> ProptestConfig {
    let cases = std::env::var("TK_RANDOM_PROGRAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let rng_seed = match std::env::var("TK_RANDOM_SEED").ok().as_deref() {
        Some("random") => proptest::test_runner::RngSeed::Random,
        Some(v) => proptest::test_runner::RngSeed::Fixed(
            v.parse().unwrap_or_else(|_| panic!("TK_RANDOM_SEED={v}: expected a number or `random`")),
        ),
        None => proptest::test_runner::RngSeed::Fixed(0x7C_2026),
    };
    ProptestConfig { cases, rng_seed, failure_persistence: None, ..ProptestConfig::default() }
}
