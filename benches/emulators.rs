//! The speed of the SASS emulator against the PTX simulator, side by side on the same kernels.
//!
//! Run: `cargo run --example emulator_bench` (the simulators are optimised in debug builds
//! too; needs ptxas, from scripts/setup). For each kernel it prints each device's time per
//! launch, the thread-instructions it executed (PTX instructions on `sim:sm_86`, SASS
//! instructions on `sass:sm_86`) and their rate, and the ratio of the two times.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tk_runtime::devices::sim::SimDevice;
use tk_runtime::{Device, DeviceArray, HostArray};

use tk_ir::dtype::DType;

type Case = (&'static str, &'static str, DType, &'static [&'static [usize]]);

const CASES: [Case; 3] = [
    (
        "matmul 96x96x96",
        "kernel f(a: f32[n, k], b: f32[k, m]) -> f32[n, m] { a @ b }\n",
        DType::F32,
        &[&[96, 96], &[96, 96]],
    ),
    (
        "softmax 128x256",
        "use std::nn::{softmax};\nkernel f(x: f32[r, n]) -> f32[r, n] { softmax(x, axis: 1) }\n",
        DType::F32,
        &[&[128, 256]],
    ),
    (
        "i64 division 16k",
        "kernel f(a: i64[n], b: i64[n]) -> i64[n] { a / (b * b + 1) }\n",
        DType::I64,
        &[&[16384], &[16384]],
    ),
];

fn main() {
    let t = tk_abi::launch::NvidiaTarget { sm: 86 };
    let devices = [("sim:sm_86", Arc::new(SimDevice::new(t))), ("sass:sm_86", Arc::new(SimDevice::sass(t)))];
    let session = tk_toolchain::Session::new();
    println!(
        "{:<18} {:>12} {:>14} {:>12}   {:>12} {:>14} {:>12}   {:>9}",
        "kernel", "PTX sim ms", "PTX inst", "M inst/s", "SASS ms", "SASS inst", "M inst/s", "SASS/PTX"
    );
    for (name, src, dtype, shapes) in CASES {
        let c = session.check(Path::new("bench.tk"), src.to_string());
        assert!(c.is_ok(), "{}", c.render_plain());
        let g = session.prepared(&c.kernels[0]).expect("lowers");
        let mut rng = tk_runtime::array::rng(0);
        let args: Vec<HostArray> = shapes
            .iter()
            .map(|s| HostArray::random(dtype, s.to_vec(), tk_runtime::array::Random::Uniform, &mut rng))
            .collect();
        let mut row = Vec::new();
        for (dname, dev) in &devices {
            let compiled = session.compile(dev.as_ref(), name, &g).unwrap_or_else(|e| panic!("{dname}: {e}"));
            let q = dev.queue();
            let dargs: Vec<DeviceArray> =
                args.iter().map(|a| DeviceArray::upload(dev.as_ref(), &q, a).expect("upload")).collect();
            let shapes: Vec<_> = args.iter().map(|a| (a.dtype, a.shape.clone())).collect();
            let dims = compiled.bind(&shapes, &HashMap::new()).expect("binds");
            let outs = compiled.launch(dev.as_ref(), &q, &dargs, &dims).expect("launches");
            let before = dev.executed();
            let runs: u32 = 3;
            let t0 = Instant::now();
            for _ in 0..runs {
                compiled.launch_into(dev.as_ref(), &q, &dargs, &dims, &outs).expect("launches");
            }
            let secs = t0.elapsed().as_secs_f64() / f64::from(runs);
            let inst = (dev.executed() - before) / u64::from(runs);
            row.push((secs, inst));
        }
        let ((ps, pi), (ss, si)) = (row[0], row[1]);
        println!(
            "{name:<18} {:>12.1} {pi:>14} {:>12.1}   {:>12.1} {si:>14} {:>12.1}   {:>9.2}",
            ps * 1e3,
            pi as f64 / ps / 1e6,
            ss * 1e3,
            si as f64 / ss / 1e6,
            ss / ps
        );
    }
}
