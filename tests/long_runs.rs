//! Long runs: the host's interrupt (`tk_abi::interrupt`, Ctrl-C in the REPL) stops a run between
//! device kernels, between the chunks of a long CPU kernel, and inside the simulators; and runs
//! report their progress (`tk_abi::progress`, the bar of `tk run`). One test in its own binary:
//! both are process-wide.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};
use tk_runtime::{Device, HostArray, RunError};

fn compile(dev: &dyn Device, src: &str, name: &str) -> tk_runtime::Compiled {
    let c = tk_compiler::check_source(Path::new("k.tk"), src.to_string());
    assert!(c.is_ok(), "{}", c.render_plain());
    let k = c.kernels.iter().find(|k| k.name == name).expect("kernel");
    let g = tk_ir::graph::passes::prepare(&tk_compiler::lower::lower_kernel(k).expect("lowers"));
    tk_toolchain::Session::new().compile(dev, name, &g).expect("compiles")
}

// Softmax over the columns: several device kernels on every device (a row softmax is one row
// kernel on the CPU).
const SOFTMAX: &str = "kernel softmax(x: f32[b, n]) -> f32[b, n] {\n    let e = exp(x - max(x, axis: 0, keep: true));\n    e / sum(e, axis: 0, keep: true)\n}\n";
const MATMUL: &str = "kernel mm(a: f32[m, k], b: f32[k, n]) -> f32[m, n] { a @ b }\n";

#[test]
fn an_interrupt_stops_the_run_and_runs_report_progress() {
    let mut rng = tk_runtime::array::rng(1);
    let x = HostArray::random(tk_ir::dtype::DType::F32, vec![4, 33], tk_runtime::array::Random::Uniform, &mut rng);
    for name in ["cpu", "sim:sm_86", "sim:gfx1100"] {
        if !common::device_ready(name, "interrupt") {
            continue;
        }
        let dev = tk_runtime::open(name).expect("device");
        let c = compile(dev.as_ref(), SOFTMAX, "softmax");
        // Asked before the run: no kernel starts, and the inputs are untouched.
        tk_abi::interrupt::request();
        let e = c.run(dev.as_ref(), std::slice::from_ref(&x), &HashMap::new()).expect_err("interrupted");
        assert!(matches!(e, RunError::Interrupted), "{name}: {e}");
        assert_eq!(e.to_string(), "interrupted");
        tk_abi::interrupt::clear();
        tk_abi::progress::reset();
        let y = c.run(dev.as_ref(), std::slice::from_ref(&x), &HashMap::new()).expect("runs once cleared");
        assert_eq!(y[0].shape, vec![4, 33]);
        assert!(c.kernels.len() > 1, "{name}: softmax is several device kernels");
        assert_eq!(tk_abi::progress::fraction(), Some(1.0), "{name}: a finished run reports all its work done");
    }
    // Asked while one long CPU kernel runs: the chunks not yet started are skipped.
    let dev = tk_runtime::open("cpu").expect("cpu");
    let c = compile(dev.as_ref(), MATMUL, "mm");
    assert_eq!(c.kernels.len(), 1, "one device kernel: only the CPU device's own check can stop it");
    let a = HostArray::random(tk_ir::dtype::DType::F32, vec![2048, 2048], tk_runtime::array::Random::Uniform, &mut rng);
    let started = Instant::now();
    // The request comes once the kernel's chunks have started (the device counts the launches
    // it splits just before it starts them).
    let before = tk_runtime::devices::cpu::split_launches();
    let stopper = std::thread::spawn(move || {
        while tk_runtime::devices::cpu::split_launches() == before && started.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_micros(200));
        }
        // Under way: the run reports that it is past its start and short of its end.
        let f = tk_abi::progress::fraction();
        tk_abi::interrupt::request();
        f
    });
    let r = c.run(dev.as_ref(), &[a.clone(), a], &HashMap::new());
    let under_way = stopper.join().expect("joins");
    assert!(under_way.is_some_and(|f| f < 1.0), "{under_way:?}");
    tk_abi::interrupt::clear();
    assert!(matches!(r, Err(RunError::Interrupted)), "a 2048^3 matmul ran to the end ({:?})", started.elapsed());
}
