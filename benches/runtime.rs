//! Compile time and launch overhead of the CPU device, through the Rust API.
//!
//! Run: `cargo run --release --example runtime_bench` (scripts/bench_cpu runs it).
//! - compile: every kernel of every example, from source to machine code, with the kernel cache
//!   off; prints the median time per device kernel.
//! - launch: a 1k-element entry with its arguments and outputs resident on the device; prints
//!   the median time of one call.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tk_runtime::devices::cpu::CpuDevice;
use tk_runtime::{Device, DeviceArray, HostArray};
use tk_toolchain::cache::KernelCache;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn main() {
    let dev = CpuDevice::new();
    let session = tk_toolchain::Session::new().with_cache(Arc::new(KernelCache::new(
        false,
        None,
        tk_codegen::cpu::host_description(),
    )));
    // Compile time per device kernel, cold.
    let mut per_kernel = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir("examples")
        .expect("run from the repository root")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tk"))
        .collect();
    files.sort();
    let mut entries = 0;
    // The LLVM tier's compile time per device kernel (kernel IR to a loaded object's code).
    #[allow(unused_mut)]
    let mut llvm_per_kernel: Vec<Duration> = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).expect("readable");
        let t0 = Instant::now();
        let c = session.check(f, src);
        let front = t0.elapsed() / c.kernels.len().max(1) as u32;
        for k in &c.kernels {
            let t = Instant::now();
            let g = session.prepared(k).expect("lowers");
            let compiled = session.compile(&dev, &k.name, &g).expect("compiles");
            let n = compiled.kernels.len().max(1) as u32;
            per_kernel.push((t.elapsed() + front) / n);
            entries += 1;
            #[cfg(feature = "llvm")]
            for kern in &compiled.kernels {
                let t = Instant::now();
                let obj = tk_codegen::llvm::cpu::object(std::slice::from_ref(kern)).expect("LLVM compiles");
                tk_runtime::loader::load(&obj, &tk_runtime::loader::resolve).expect("loads");
                llvm_per_kernel.push(t.elapsed());
            }
        }
    }
    let m = median(per_kernel.clone());
    let max = per_kernel.iter().max().copied().unwrap_or_default();
    println!(
        "compile: {entries} entries of {} examples, median {:.3} ms per device kernel (max {:.3} ms), source to machine code, cache off",
        files.len(),
        m.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3
    );
    if !llvm_per_kernel.is_empty() {
        let max = llvm_per_kernel.iter().max().copied().unwrap_or_default();
        println!(
            "compile, LLVM tier: {} device kernels, median {:.3} ms per device kernel (max {:.3} ms), kernel IR to loaded code (in the background for hot kernels)",
            llvm_per_kernel.len(),
            median(llvm_per_kernel.clone()).as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    // Launch overhead: saxpy on 1024 elements, resident.
    let src = "kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] { a * x + y }\n";
    let c = session.check(Path::new("saxpy.tk"), src.to_string());
    let g = session.prepared(&c.kernels[0]).expect("lowers");
    let compiled = session.compile(&dev, "saxpy", &g).expect("compiles");
    let q = dev.queue();
    let mut rng = tk_runtime::array::rng(0);
    let args = [
        HostArray::scalar(tk_ir::dtype::DType::F32, tk_ir::graph::Scalar::Float(2.0)),
        HostArray::random(tk_ir::dtype::DType::F32, vec![1024], tk_runtime::array::Random::Uniform, &mut rng),
        HostArray::random(tk_ir::dtype::DType::F32, vec![1024], tk_runtime::array::Random::Uniform, &mut rng),
    ];
    let dargs: Vec<DeviceArray> = args.iter().map(|a| DeviceArray::upload(&dev, &q, a).expect("upload")).collect();
    let shapes: Vec<_> = args.iter().map(|a| (a.dtype, a.shape.clone())).collect();
    let dims = compiled.bind(&shapes, &HashMap::new()).expect("binds");
    let outs = compiled.launch(&dev, &q, &dargs, &dims).expect("launches");
    let mut times = Vec::new();
    for _ in 0..20_000 {
        let t = Instant::now();
        compiled.launch_into(&dev, &q, &dargs, &dims, &outs).expect("launches");
        dev.synchronize(&q).expect("syncs");
        times.push(t.elapsed());
    }
    // With binding (shape checks) included, as a call from user code pays it.
    let mut bound = Vec::new();
    for _ in 0..20_000 {
        let t = Instant::now();
        let dims = compiled.bind(&shapes, &HashMap::new()).expect("binds");
        compiled.launch_into(&dev, &q, &dargs, &dims, &outs).expect("launches");
        dev.synchronize(&q).expect("syncs");
        bound.push(t.elapsed());
    }
    println!(
        "launch: 1k-element saxpy, arguments resident: median {:.2} us per call ({:.2} us with argument checks)",
        median(times).as_secs_f64() * 1e6,
        median(bound).as_secs_f64() * 1e6
    );
}
