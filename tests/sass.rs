//! The SASS emulator's devices (`sass:sm_80`, `sass:sm_86`, `sass:sm_89`): tk's PTX through
//! ptxas into a cubin, whose machine code the emulator runs. The differential suite runs in
//! full on sm_86 and at one size per example on sm_80 and sm_89.

#[macro_use]
mod common;

device_suite!(sm86, "sass:sm_86");
device_suite!(sm80, "sass:sm_80", sizes: [7], runs: 20, tolerance: [5], runs: 10);
device_suite!(sm89, "sass:sm_89", sizes: [7], runs: 20, tolerance: [5], runs: 10);

/// Workgroup-shared reductions (`--opts group=32`): shared memory and block barriers, which
/// the default options do not use.
#[test]
fn workgroup_reductions_match_the_interpreter() {
    if !common::device_ready("sass:sm_86", "workgroup_reductions_match_the_interpreter") {
        return;
    }
    let opts = tk_toolchain::target::Options {
        knobs: Some(tk_ir::kernel::KnobOverrides { group: Some(32), ..Default::default() }),
        ..Default::default()
    };
    common::options_match_the_interpreter_within_tolerance("sass:sm_86", &opts, &[9], 40);
}

/// A cubin ptxas makes for the kernels of `src` (sm_86), and each device kernel's launch facts.
fn cubin_of(
    tag: &str,
    src: &str,
    group: Option<u32>,
) -> (Vec<u8>, Vec<tk_ir::kernel::Kernel>, Vec<tk_abi::launch::GpuKernel>) {
    let dir = std::env::temp_dir().join(format!("tk-sass-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("k.tk");
    std::fs::write(&path, src).expect("writes");
    let t = tk_abi::launch::NvidiaTarget { sm: 86 };
    let opts = tk_toolchain::target::Options {
        knobs: group.map(|g| tk_ir::kernel::KnobOverrides { group: Some(g), ..Default::default() }),
        ..common::exact()
    };
    let (name, g) = common::compile(&path).remove(0);
    let l = tk_toolchain::target::lower(&g, tk_toolchain::target::Target::Nvidia(t), &opts).expect("lowers");
    let m = tk_codegen::ptx::module(&[(format!("{name}_"), l.kernels.clone())], t).expect("PTX");
    let cubin = tk_toolchain::tools::ptxas::assemble(&m.text, t).expect("ptxas").cubin;
    let infos = l
        .kernels
        .iter()
        .enumerate()
        .map(|(i, k)| tk_abi::launch::gpu_kernel(k, &format!("{name}_k{i}")).expect("launch facts"))
        .collect();
    (cubin, l.kernels, infos)
}

/// `cubin` with instruction `i` of the kernel whose code is `code` replaced by `w` (the code
/// is found in the file by its bytes).
fn patched(cubin: &[u8], code: &[u8], i: usize, w: u128) -> Vec<u8> {
    let mut out = cubin.to_vec();
    patch(&mut out, code_at(cubin, code), i, w);
    out
}

fn code_at(cubin: &[u8], code: &[u8]) -> usize {
    cubin.windows(code.len()).position(|s| s == code).expect("the code is in the file")
}

fn patch(cubin: &mut [u8], at: usize, i: usize, w: u128) {
    cubin[at + 16 * i..at + 16 * i + 16].copy_from_slice(&w.to_le_bytes());
}

/// Runs device kernel 0 of `f(x: f32[n])`-shaped code on `n` elements with an output of
/// `out` elements.
fn run(cubin: &[u8], info: &tk_abi::launch::GpuKernel, n: usize, out: usize) -> Result<u64, tk_sim::sass::SassError> {
    let p = tk_sim::sass::Program::load(cubin)?;
    let mut x = vec![0u8; n * 4];
    let mut y = vec![0u8; out * 4];
    let mut err = vec![0u8; tk_abi::check::GPU_SLOTS];
    let mut args = vec![tk_sim::ptx::Arg::Buffer(&mut x), tk_sim::ptx::Arg::Buffer(&mut y)];
    args.extend(info.symbols.iter().map(|_| tk_sim::ptx::Arg::Int(n as i64)));
    args.push(tk_sim::ptx::Arg::Buffer(&mut err));
    let dims: std::collections::HashMap<String, i64> = info.symbols.iter().map(|s| (s.clone(), n as i64)).collect();
    p.launch(&info.name, tk_runtime::devices::sim::grid(&info.launch, &dims), &mut args, 1)
}

const SCALE: &str = "kernel f(x: f32[n]) -> f32[n] { x * 2.0 + 1.0 }\n";

#[test]
fn an_out_of_bounds_store_is_caught_with_the_kernel_and_offset() {
    if !common::device_ready("sass:sm_86", "an_out_of_bounds_store_is_caught_with_the_kernel_and_offset") {
        return;
    }
    let (cubin, kernels, infos) = cubin_of("oob", SCALE, None);
    assert_eq!((kernels.len(), kernels[0].bufs.len()), (1, 2), "one device kernel with x and the result");
    run(&cubin, &infos[0], 64, 64).expect("runs with buffers of the right size");
    let e = run(&cubin, &infos[0], 64, 40).expect_err("a short output buffer").to_string();
    assert!(e.contains("kernel `f_k0`") && e.contains("STG") && e.contains("out of bounds"), "{e}");
    assert!(e.contains("offset 0x"), "{e}");
}

#[test]
fn a_missing_barrier_is_caught() {
    if !common::device_ready("sass:sm_86", "a_missing_barrier_is_caught") {
        return;
    }
    let src = "kernel f(x: f32[r, n]) -> f32[r] { sum(x, axis: 1) }\n";
    let (cubin, _, infos) = cubin_of("bar", src, Some(32));
    let c = tk_abi::cubin::read(&cubin).expect("reads");
    let k = c.kernel(&infos[0].name).expect("the kernel");
    let p = tk_sim::sass::Program::load(&cubin).expect("loads");
    let bars: Vec<usize> = p.kernels[0]
        .insts
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.op, tk_sim::sass::Op::Bar { .. }))
        .map(|(j, _)| j)
        .collect();
    assert!(!bars.is_empty(), "the workgroup reduction synchronises its block");
    let launch = |cubin: &[u8]| {
        let p = tk_sim::sass::Program::load(cubin)?;
        let mut x: Vec<u8> = (0..4 * 64).flat_map(|v| (v as f32).to_le_bytes()).collect();
        let mut y = vec![0u8; 4 * 4];
        let mut err = vec![0u8; tk_abi::check::GPU_SLOTS];
        let info = &infos[0];
        let dims: std::collections::HashMap<String, i64> =
            [("r".to_string(), 4i64), ("n".to_string(), 64)].into_iter().collect();
        let mut args = vec![tk_sim::ptx::Arg::Buffer(&mut x), tk_sim::ptx::Arg::Buffer(&mut y)];
        args.extend(info.symbols.iter().map(|s| tk_sim::ptx::Arg::Int(dims[s])));
        args.push(tk_sim::ptx::Arg::Buffer(&mut err));
        p.launch(&info.name, tk_runtime::devices::sim::grid(&info.launch, &dims), &mut args, 3)?;
        Ok::<Vec<u8>, tk_sim::sass::SassError>(y)
    };
    let y = launch(&cubin).expect("the unedited kernel runs");
    let want: Vec<u8> =
        (0..4).flat_map(|r| ((0..64).map(|c| (r * 64 + c) as f32).sum::<f32>()).to_le_bytes()).collect();
    assert_eq!(y, want);
    // Every barrier becomes a NOP with the same control bits.
    let mut bad = cubin.clone();
    let at = code_at(&cubin, &k.code);
    for &j in &bars {
        let w = p.kernels[0].word(j).expect("word");
        patch(&mut bad, at, j, (w & !((1u128 << 105) - 1)) | 0x7918);
    }
    let e = launch(&bad).expect_err("the race is found").to_string();
    assert!(e.contains("shared-memory race") && e.contains("missing barrier") && e.contains(&infos[0].name), "{e}");
}

#[test]
fn a_cleared_scoreboard_wait_before_a_loads_consumer_is_caught() {
    if !common::device_ready("sass:sm_86", "a_cleared_scoreboard_wait_before_a_loads_consumer_is_caught") {
        return;
    }
    let (cubin, _, infos) = cubin_of("sb", SCALE, None);
    let k = tk_abi::cubin::read(&cubin).expect("reads").kernel(&infos[0].name).expect("kernel").clone();
    let p = tk_sim::sass::Program::load(&cubin).expect("loads");
    let kk = &p.kernels[0];
    let (i, d, sb) = kk
        .insts
        .iter()
        .enumerate()
        .find_map(|(i, inst)| match inst.op {
            tk_sim::sass::Op::Ldg { d, .. } if inst.ctrl.write_sb < 6 => Some((i, d, inst.ctrl.write_sb)),
            _ => None,
        })
        .expect("a scoreboarded load");
    let j = (i + 1..kk.insts.len())
        .find(|&j| {
            kk.hazard_info(j).is_some_and(|h| h.reads.iter().any(|r| r.0 == tk_sim::sass::hazard::File::R && r.1 == d))
        })
        .expect("the load's consumer");
    let mut bad = cubin.clone();
    let at = code_at(&cubin, &k.code);
    for m in i + 1..=j {
        let mut c = kk.insts[m].ctrl;
        c.wait &= !(1 << sb);
        patch(&mut bad, at, m, c.put(kk.word(m).expect("word")));
    }
    let e = run(&bad, &infos[0], 64, 64).expect_err("the hazard is found").to_string();
    assert!(e.contains("kernel `f_k0`") && e.contains(&format!("offset {:#06x}", j * 16)), "{e}");
    assert!(e.contains("before waiting for `LDG"), "{e}");
}

#[test]
fn a_fixed_latency_consumer_issued_one_cycle_after_its_producer_is_caught() {
    if !common::device_ready("sass:sm_86", "a_fixed_latency_consumer_issued_one_cycle_after_its_producer_is_caught") {
        return;
    }
    let (cubin, _, infos) = cubin_of("stall", SCALE, None);
    let k = tk_abi::cubin::read(&cubin).expect("reads").kernel(&infos[0].name).expect("kernel").clone();
    let p = tk_sim::sass::Program::load(&cubin).expect("loads");
    let kk = &p.kernels[0];
    use tk_sim::sass::hazard::{File, Kind};
    // A fixed-latency producer whose next instruction reads what it wrote.
    let i = (0..kk.insts.len() - 1)
        .find(|&i| {
            let (a, b) = (kk.hazard_info(i).expect("info"), kk.hazard_info(i + 1).expect("info"));
            matches!(a.kind, Kind::Fixed(_))
                && a.writes.iter().any(|w| w.0 != File::Up && b.reads.iter().any(|r| (r.0, r.1) == (w.0, w.1)))
        })
        .expect("an adjacent producer and consumer");
    let mut c = kk.insts[i].ctrl;
    assert!(c.stall > 1, "ptxas gave the producer a stall of {}", c.stall);
    c.stall = 1;
    let bad = patched(&cubin, &k.code, i, c.put(kk.word(i).expect("word")));
    let e = run(&bad, &infos[0], 64, 64).expect_err("the hazard is found").to_string();
    assert!(e.contains("kernel `f_k0`") && e.contains(&format!("offset {:#06x}", (i + 1) * 16)), "{e}");
    // The consumer now issues too early (after its producer, or after an earlier one the
    // shortened stall brought closer).
    assert!(e.contains("stall counts too short"), "{e}");
}
