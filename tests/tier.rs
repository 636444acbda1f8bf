//! The CPU's two tiers (docs/performance.md, "Tiers"): Cranelift's code runs at once; with the
//! cargo feature `llvm`, a kernel that keeps running is recompiled by LLVM in the background and
//! its code swapped in. Both compile the same kernel IR, so results are identical bit for bit.
//! `TK_CPU_TIER=cranelift|llvm|auto` and the device name `cpu,tier=...` choose.

#[macro_use]
mod common;
#[allow(unused_imports)]
use common::*;
#[allow(unused_imports)]
use std::collections::HashMap;
#[allow(unused_imports)]
use tk_runtime::HostArray;
#[allow(unused_imports)]
use tk_runtime::devices::cpu::{CpuExecutable, Tier};

// The whole differential suite on LLVM's code (every kernel compiled by LLVM when loaded).
#[cfg(feature = "llvm")]
device_suite!(llvm, "cpu,tier=llvm", sizes: [0, 1, 3, 7, 17], runs: 150, tolerance: [1, 5, 33], runs: 60);

#[allow(dead_code)]
fn cpu_exe(c: &tk_runtime::Compiled) -> &CpuExecutable {
    c.executable().as_any().downcast_ref::<CpuExecutable>().expect("a CPU executable")
}

/// Every device kernel of every example, under the exact options and the defaults (split
/// reductions, register tiles), compiles with LLVM and loads through the runtime's own loader: none
/// stays on Cranelift.
#[cfg(feature = "llvm")]
#[test]
fn every_example_kernel_runs_llvm_code_on_the_llvm_tier() {
    let dev = tk_runtime::open("cpu,tier=llvm").expect("device");
    let mut kernels = 0;
    let mut failures = Vec::new();
    for f in examples() {
        for (name, g) in compile(&f) {
            for opts in [exact(), tk_toolchain::target::Options::default()] {
                let c = tk_toolchain::compile(dev.as_ref(), &name, &g, &opts)
                    .unwrap_or_else(|e| panic!("{}::{name}: {e}", f.display()));
                let exe = cpu_exe(&c);
                for i in 0..c.kernels.len() {
                    kernels += 1;
                    if exe.tier(i) != Some(Tier::Llvm) {
                        failures.push(format!("{}::{name} kernel {i}: {:?}", f.display(), exe.tier_failures()));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "kernels left on Cranelift:\n{}", failures.join("\n"));
    assert!(kernels >= 150, "only {kernels} kernels");
}

/// Runs `entry` of `file` on `dev` at size `n` for every dimension; returns the outputs' bytes.
#[allow(dead_code)]
fn run_once(
    c: &tk_runtime::Compiled,
    dev: &dyn tk_runtime::Device,
    host: &[HostArray],
    explicit: &HashMap<String, i64>,
) -> Vec<Vec<u8>> {
    c.run(dev, host, explicit).expect("runs").iter().map(|a| a.data.clone()).collect()
}

/// Under the `auto` policy a kernel starts on Cranelift's code and, after it has been launched
/// `TIER_UP_CALLS` times, switches to LLVM's while the program keeps running; every run before,
/// during and after the switch gives the same bits.
#[cfg(feature = "llvm")]
#[test]
fn a_hot_kernel_switches_to_llvm_with_identical_results() {
    use std::time::{Duration, Instant};
    let dev = tk_runtime::open("cpu,tier=auto").expect("device");
    // matmul at 150: whole 8-row register tiles, 64-column blocks and the remainders of both.
    for (file, size) in [("examples/matmul.tk", 150), ("examples/softmax.tk", 45)] {
        let (name, g) = compile(std::path::Path::new(file)).remove(0);
        // Default options: split reductions and register tiles, the code users run.
        let c = tk_toolchain::compile(dev.as_ref(), &name, &g, &tk_toolchain::target::Options::default())
            .expect("compiles");
        let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
        let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
        let args = random_args(&g, &dims, &mut Rng(7));
        let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
        let exe = cpu_exe(&c);
        let first = run_once(&c, dev.as_ref(), &host, &explicit);
        assert!(
            (0..c.kernels.len()).all(|i| exe.tier(i) == Some(Tier::Cranelift)),
            "{file}: a kernel left Cranelift after one run"
        );
        let started = Instant::now();
        let mut runs = 1;
        while !(0..c.kernels.len()).all(|i| exe.tier(i) == Some(Tier::Llvm)) {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{file}: no switch to LLVM after {runs} runs: {:?}",
                exe.tier_failures()
            );
            assert_eq!(run_once(&c, dev.as_ref(), &host, &explicit), first, "{file}: run {runs} differs");
            runs += 1;
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(runs >= tk_runtime::devices::cpu::TIER_UP_CALLS as usize, "{file}: switched after {runs} runs");
        for _ in 0..3 {
            assert_eq!(run_once(&c, dev.as_ref(), &host, &explicit), first, "{file}: LLVM's code differs");
        }
    }
    assert!(tk_runtime::devices::cpu::tier_ups() >= 2);
}

/// `tier=cranelift` never recompiles, however hot a kernel is.
#[test]
fn the_cranelift_policy_never_switches() {
    let dev = tk_runtime::open("cpu,tier=cranelift").expect("device");
    let (name, g) = compile(std::path::Path::new("examples/saxpy.tk")).remove(0);
    let c = tk_toolchain::compile(dev.as_ref(), &name, &g, &exact()).expect("compiles");
    let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, 100)).collect();
    let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
    let args = random_args(&g, &dims, &mut Rng(3));
    let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
    for _ in 0..4 * tk_runtime::devices::cpu::TIER_UP_CALLS {
        run_once(&c, dev.as_ref(), &host, &explicit);
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!((0..c.kernels.len()).all(|i| cpu_exe(&c).tier(i) == Some(Tier::Cranelift)));
}

/// Tier names are checked where they are given, and a build without LLVM says so when asked
/// for it.
#[test]
fn tier_mistakes_are_clear() {
    let e = tk_runtime::open("cpu,tier=fast").err().expect("refused").to_string();
    assert!(e.contains("unknown CPU tier `fast`") && e.contains("cranelift, llvm and auto"), "{e}");
    let e = tk_runtime::open("cpu,speed=2").err().expect("refused").to_string();
    assert!(e.contains("unknown option `speed=2`") && e.contains("tier=cranelift|llvm|auto"), "{e}");
    let o = tk_env(
        &["run", "examples/saxpy.tk", "-k", "saxpy", "--arg", "a=2", "--arg", "x=rand:8", "--arg", "y=rand:8"],
        &[],
    );
    assert!(o.status.success(), "{}", err(&o));
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tk"));
    c.args(["run", "examples/saxpy.tk", "-k", "saxpy", "--arg", "a=2", "--arg", "x=rand:8", "--arg", "y=rand:8"]);
    let o = c.env("TK_CPU_TIER", "fastest").output().expect("tk runs");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("TK_CPU_TIER: unknown CPU tier `fastest`"), "{}", err(&o));
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tk"));
    c.args(["run", "examples/saxpy.tk", "-k", "saxpy", "--arg", "a=2", "--arg", "x=rand:8", "--arg", "y=rand:8"]);
    let o = c.env("TK_CPU_TIER", "llvm").env("TK_CACHE", "0").output().expect("tk runs");
    if cfg!(feature = "llvm") {
        assert!(o.status.success(), "{}", err(&o));
    } else {
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(err(&o).contains("has no LLVM") && err(&o).contains("--features llvm"), "{}", err(&o));
    }
}
