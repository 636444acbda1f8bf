//! The NVIDIA backend: every example's PTX runs on the simulated GPU (`sim:sm_86`) and matches
//! the reference interpreter under the numeric contract, on random inputs with awkward sizes;
//! the simulator catches planted out-of-bounds and missing-barrier kernels.

#[macro_use]
mod common;

device_suite!(suite, SIM);

const SIM: &str = "sim:sm_86";

/// Runs a hand-written device kernel (kernel IR text) on the simulator with `b = rows` and
/// `n = len` and f32 buffers of the kernel's shapes.
fn run_planted(text: &str, dims: &[(&str, i64)]) -> Result<(), tk_runtime::RunError> {
    use std::collections::HashMap;
    let mut k = tk_ir::kernel::parse(text).expect("the planted kernel parses");
    // Source locations are not part of the text form: give the loads one, as lowering does.
    fn mark(body: &mut [tk_ir::kernel::Inst]) {
        for i in body {
            match i {
                tk_ir::kernel::Inst::Load { loc, .. } => *loc = LOAD_LOC,
                tk_ir::kernel::Inst::Range { body, .. } => mark(body),
                _ => {}
            }
        }
    }
    mark(&mut k.body);
    let dev = tk_runtime::open(SIM).expect("simulator");
    let q = dev.queue();
    let exe = tk_toolchain::Session::new().load(dev.as_ref(), std::slice::from_ref(&k))?;
    let dims: HashMap<String, i64> = dims.iter().map(|(s, v)| (s.to_string(), *v)).collect();
    let mut bufs = Vec::new();
    for b in &k.bufs {
        let elems: i64 = b.shape.iter().map(|d| d.eval(&|s| dims.get(s).copied()).expect("bound")).product();
        let buf = dev.alloc(elems as usize * 4)?;
        let data: Vec<u8> = (0..elems).flat_map(|i| (i as f32).to_le_bytes()).collect();
        dev.write(&q, &buf, &data)?;
        bufs.push(buf);
    }
    dev.launch(&q, &exe, 0, &bufs, &dims)
}

const LOAD_LOC: tk_ir::graph::Loc = tk_ir::graph::Loc { file: 0, lo: 17, hi: 21 };

#[test]
fn the_simulator_catches_an_out_of_bounds_read() {
    let oob = "kernel k0(b0: f32[n], b1: f32[n] out) knobs parallel=1,unroll=1,vector=1,group=1 {\n\
               range i0 in 0..<n> global {\n\
               r0 = load a0[(i0 + 1)] : f32\n\
               store a1[i0] = r0\n\
               }\n\
               }\n";
    let e = run_planted(oob, &[("n", 100)]).expect_err("an out-of-bounds read must be reported");
    assert!(matches!(e, tk_runtime::RunError::Fault { .. }), "a fault (E0503): {e:?}");
    assert_eq!(e.loc(), Some(LOAD_LOC), "the fault points at the faulting load's source");
    let e = e.to_string();
    eprintln!("{e}");
    assert!(e.contains("out of bounds"), "{e}");
    // The report names the kernel, the block, the thread (the last element's), the buffer and
    // the PTX line.
    assert!(e.contains("kernel `k0`") && e.contains("block 0") && e.contains("thread 99"), "{e}");
    assert!(e.contains("buffer 0") && e.contains("element 100 of 100") && e.contains("PTX line"), "{e}");
    // The same kernel reading in bounds runs.
    run_planted(&oob.replace("(i0 + 1)", "i0"), &[("n", 100)]).expect("in bounds");
}

#[test]
fn the_simulator_catches_a_missing_barrier() {
    let racy = "kernel k0(b0: f32[b, 4], b1: f32[b] out) knobs parallel=1,unroll=1,vector=1,group=4 {\n\
                range i0 in 0..<b> global {\n\
                local l0: f32[<4>]\n\
                range i1 in 0..<4> local {\n\
                r0 = load a0[((4 * i0) + i1)] : f32\n\
                store l0[i1] = r0\n\
                BARRIER\
                }\n\
                r1 = acc sum f32 -> f32\n\
                range i2 in 0..<4> sequential {\n\
                r2 = load l0[i2] : f32\n\
                accumulate r1 += r2\n\
                }\n\
                r3 = result r1\n\
                store a1[i0] = r3\n\
                }\n\
                }\n";
    let e = run_planted(&racy.replace("BARRIER", ""), &[("b", 3)]).expect_err("a race must be reported").to_string();
    assert!(e.contains("shared-memory race") && e.contains("missing barrier"), "{e}");
    assert!(e.contains("tk_l0[byte"), "the report names the local buffer: {e}");
    run_planted(&racy.replace("BARRIER", "barrier\n"), &[("b", 3)]).expect("with the barrier the kernel is correct");
}

/// One device array passed for two inputs (`saxpy(a, x, x)` with `x` resident) runs on both
/// simulators as on the CPU: the simulated memory reads a copy for the second.
#[test]
fn the_same_resident_array_for_two_inputs() {
    use tk::{AsArg, Device, HostArray};
    let p = tk::compile_str("kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] { a * x + y }").expect("checks");
    let a = HostArray::from_slice(&[], &[2.0f32]).expect("a");
    for name in ["cpu", SIM, "sim:gfx1100"] {
        if !common::device_ready(name, "the_same_resident_array_for_two_inputs") {
            continue;
        }
        let dev = Device::open(name).expect("device");
        let x = dev.upload(&HostArray::from_slice(&[3], &[1.0f32, 2.0, 3.0]).expect("x")).expect("uploads");
        let out = p
            .entry("saxpy")
            .and_then(|e| e.call(&dev, &[a.as_arg(), x.as_arg(), x.as_arg()]))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(out[0].to_vec::<f32>().expect("f32"), vec![3.0, 6.0, 9.0], "{name}");
    }
}

/// `--opts group=G` on every example, reductions nested in a shared one included (softmax,
/// layernorm: the inner one then runs in each thread): the same results as the interpreter,
/// within the reordering docs/numerics.md allows.
#[test]
fn a_workgroup_size_for_every_kernel_keeps_every_example_working() {
    let opts = tk_toolchain::target::Options {
        knobs: Some(tk_ir::kernel::KnobOverrides { group: Some(32), ..Default::default() }),
        ..Default::default()
    };
    common::options_match_the_interpreter_within_tolerance(SIM, &opts, &[9], 40);
}
