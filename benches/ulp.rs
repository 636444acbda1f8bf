//! `scripts/ulp --exhaustive`: the accuracy of the f32 decomposition of every transcendental over
//! all 2^32 f32 inputs, run as compiled CPU kernels (the same code `tk run` runs), against an
//! f64 reference (Rust's f64 functions; for erf, the f64 decomposition, itself within one ulp
//! of correctly rounded f64 results, see docs/numerics.md).
//!
//! `cargo run --release --example ulp_exhaustive [FUNCTION...]` (default: all).

use std::collections::HashMap;
use tk_ir::dims::Dim;
use tk_ir::dtype::DType;
use tk_ir::graph::{Graph, Loc, Op, UnaryOp};
use tk_runtime::HostArray;

/// Inputs per launch.
const CHUNK: u64 = 1 << 24;

fn graph(op: UnaryOp, d: DType) -> Graph {
    let mut g = Graph::default();
    let n = Dim::sym("n");
    g.inputs.push(("x".into(), d, vec![n.clone()]));
    let x = g.add(Op::Input(0), d, vec![n.clone()], vec![], Loc::default());
    let y = g.add(Op::Unary(op), d, vec![n], vec![x], Loc::default());
    g.outputs.push(("y".into(), y));
    tk_ir::graph::passes::prepare(&g)
}

fn main() {
    let all = [
        ("exp", UnaryOp::Exp, (-104.0, 89.0)),
        ("exp2", UnaryOp::Exp2, (-150.0, 128.0)),
        ("log", UnaryOp::Log, (0.0, 3.5e38)),
        ("log2", UnaryOp::Log2, (0.0, 3.5e38)),
        ("sin", UnaryOp::Sin, (-1e5, 1e5)),
        ("cos", UnaryOp::Cos, (-1e5, 1e5)),
        ("tanh", UnaryOp::Tanh, (-12.0, 12.0)),
        ("erf", UnaryOp::Erf, (-6.0, 6.0)),
        ("rsqrt", UnaryOp::Rsqrt, (0.0, 3.5e38)),
    ];
    let wanted: Vec<String> = std::env::args().skip(1).collect();
    if let Some(bad) = wanted.iter().find(|w| !all.iter().any(|a| a.0 == w.as_str())) {
        let names: Vec<&str> = all.iter().map(|a| a.0).collect();
        eprintln!("unknown function `{bad}`; the functions are {}", names.join(", "));
        std::process::exit(2);
    }
    let dev = match tk_runtime::open("cpu") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(3);
        }
    };
    let opts = tk_toolchain::target::Options { knobs: None, deterministic: true, split: None };
    let compile = |op: UnaryOp, d: DType| {
        tk_toolchain::compile(dev.as_ref(), "f", &graph(op, d), &opts).unwrap_or_else(|e| {
            eprintln!("error: compiling {op:?}: {e}");
            std::process::exit(3)
        })
    };
    let erf64 = compile(UnaryOp::Erf, DType::F64);
    for (name, op, (lo, hi)) in all {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let f = compile(op, DType::F32);
        let t0 = std::time::Instant::now();
        let (mut worst, mut at, mut count) = (0.0f64, 0.0f32, 0u64);
        for c in 0..(1u64 << 32) / CHUNK {
            let xs: Vec<f32> = (c * CHUNK..(c + 1) * CHUNK).map(|b| f32::from_bits(b as u32)).collect();
            let mut input = HostArray::zeros(DType::F32, vec![xs.len()]);
            for (i, x) in xs.iter().enumerate() {
                input.data[i * 4..i * 4 + 4].copy_from_slice(&x.to_le_bytes());
            }
            let got = match f.run(dev.as_ref(), std::slice::from_ref(&input), &HashMap::new()) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("error: {name}: {e}");
                    std::process::exit(3);
                }
            };
            let want: Vec<f64> = if op == UnaryOp::Erf {
                let mut wide = HostArray::zeros(DType::F64, vec![xs.len()]);
                for (i, x) in xs.iter().enumerate() {
                    wide.data[i * 8..i * 8 + 8].copy_from_slice(&f64::from(*x).to_le_bytes());
                }
                match erf64.run(dev.as_ref(), &[wide], &HashMap::new()) {
                    Ok(o) => (0..xs.len()).map(|i| o[0].get_f64(i)).collect(),
                    Err(e) => {
                        eprintln!("error: erf reference: {e}");
                        std::process::exit(3);
                    }
                }
            } else {
                xs.iter()
                    .map(|&x| {
                        let x = f64::from(x);
                        match op {
                            UnaryOp::Exp => x.exp(),
                            UnaryOp::Exp2 => x.exp2(),
                            UnaryOp::Log => x.ln(),
                            UnaryOp::Log2 => x.log2(),
                            UnaryOp::Sin => x.sin(),
                            UnaryOp::Cos => x.cos(),
                            UnaryOp::Tanh => x.tanh(),
                            _ => 1.0 / x.sqrt(),
                        }
                    })
                    .collect()
            };
            for (i, &x) in xs.iter().enumerate() {
                let xd = f64::from(x);
                if !(x.is_nan() || (lo..=hi).contains(&xd)) {
                    continue;
                }
                count += 1;
                let e = tk_ir::graph::decompose::ulp_error_f32(got[0].get_f64(i) as f32, want[i]);
                if e > worst || e.is_nan() {
                    worst = e;
                    at = x;
                }
            }
        }
        println!(
            "{name:<6} max error {worst:>6.3} ulp at x = {at:e} over all {count} f32 inputs in [{lo:e}, {hi:e}] ({:.0} s)",
            t0.elapsed().as_secs_f64()
        );
    }
}
