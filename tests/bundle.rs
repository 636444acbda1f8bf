//! Bundles (`tk build --emit bundle`, docs/bundle.md): every example's entries loaded from a
//! bundle run on the CPU, `sim:sm_86` and `sim:gfx1100` with the results of the JIT, `tk inspect` shows what
//! a bundle holds, and truncated, bit-flipped, foreign, newer and tampered files are rejected with
//! a clear error.

mod common;
use common::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tk_runtime::HostArray;
use tk_runtime::bundle::Bundle;

fn tk(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tk")).args(args).env("NO_COLOR", "1").output().expect("tk runs")
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tk-bundle-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d.join(name)
}

/// Whether ptxas is here (the sm_86 variant needs it); in CI it must be.
fn have_ptxas() -> bool {
    match tk_toolchain::tools::ptxas::find(tk_toolchain::tools::ptxas::Tool::Ptxas) {
        Ok(_) => true,
        Err(e) => {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "ptxas is required in CI: {e}");
            eprintln!("skipping the sm_86 variant: {e}");
            false
        }
    }
}

/// Whether AMD code objects can be built here (LLVM 19 and ld.lld): required in CI.
fn have_amd() -> bool {
    match tk_toolchain::tools::lld::available() {
        Ok(()) => true,
        Err(e) => {
            assert!(std::env::var("CI").map_or(true, |v| v != "true"), "the AMD backend is required in CI: {e}");
            eprintln!("skipping the AMD part: {e}");
            false
        }
    }
}

/// The targets of a test bundle: the CPU and the GPUs whose tools are here.
fn targets(gpu: bool, amd: bool) -> String {
    let mut t = vec!["cpu"];
    if gpu {
        t.push("sm_86");
    }
    if amd {
        t.push("gfx1100");
    }
    t.join(",")
}

fn build(files: &[&str], targets: &str, out: &Path) {
    let mut args = vec!["build"];
    args.extend_from_slice(files);
    let o = out.display().to_string();
    args.extend_from_slice(&["--target", targets, "-o", &o]);
    let r = tk(&args);
    assert_eq!(r.status.code(), Some(0), "{}", err(&r));
}

#[test]
fn every_example_runs_from_a_bundle_like_the_jit() {
    let gpu = have_ptxas();
    let amd = have_amd();
    let files: Vec<String> = examples().iter().map(|p| p.display().to_string()).collect();
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    let path = tmp("examples.tkb");
    build(&refs, &targets(gpu, amd), &path);
    let b = Bundle::load(&path).expect("the bundle loads");
    let mut devices = vec!["cpu"];
    if gpu {
        devices.push("sim:sm_86");
    }
    if amd {
        devices.push("sim:gfx1100");
    }
    let mut rng = Rng(0xB0B);
    let mut ran = 0;
    for dname in devices {
        let dev = tk_runtime::open(dname).expect("device");
        for f in examples() {
            for (name, g) in compile(&f) {
                let loaded = b.load_entry(dev.as_ref(), &name).unwrap_or_else(|e| panic!("{name} on {dname}: {e}"));
                let jit =
                    tk_toolchain::compile(dev.as_ref(), &name, &g, &Default::default()).expect("the JIT compiles");
                assert_eq!(loaded.kernels.len(), jit.kernels.len(), "{name}: the same device kernels");
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, 5)).collect();
                let args = random_args(&g, &dims, &mut rng);
                let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
                let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
                let (a, j) = (loaded.run(dev.as_ref(), &host, &explicit), jit.run(dev.as_ref(), &host, &explicit));
                match (a, j) {
                    // Equal values (NaNs of any sign and payload count as equal, as everywhere in the
                    // contract: the bundle's baseline-ISA code may make another NaN than the JIT's).
                    (Ok(a), Ok(j)) => {
                        let (a, j): (Vec<_>, Vec<_>) = (
                            a.iter().map(HostArray::to_interp).collect(),
                            j.iter().map(HostArray::to_interp).collect(),
                        );
                        assert_eq!(
                            format!("{a:?}"),
                            format!("{j:?}"),
                            "{name} on {dname}: the bundle's code computes what the JIT's does"
                        )
                    }
                    (Err(a), Err(j)) => assert_eq!(a.to_string(), j.to_string(), "{name} on {dname}"),
                    (a, j) => panic!("{name} on {dname}: bundle {:?}, JIT {:?}", a.err(), j.err()),
                }
                ran += 1;
            }
        }
    }
    assert!(ran >= 60, "only {ran} entries ran");
}

#[test]
fn tk_inspect_shows_entries_and_targets() {
    let path = tmp("inspect.tkb");
    build(&["examples/saxpy.tk"], "cpu", &path);
    let o = tk(&["inspect", &path.display().to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("checksum ok"), "{out}");
    assert!(out.contains("saxpy(a: f32, x: f32[n], y: f32[n]) -> (out: f32[n])"), "{out}");
    for (variant, triple) in tk_runtime::bundle::CPU_PLATFORMS {
        assert!(out.contains(&format!("{variant} ({triple})")), "{out}");
    }
}

/// x86_64 variants carry a second object for x86-64-v3 (AVX2, FMA) beside the baseline one (and
/// on Linux, from a tk with LLVM, LLVM's objects for x86-64-v3 and v4); the baseline code calls
/// `fmaf` for a contraction where the v3 code has the instruction; every object computes what the
/// JIT computes for every example, and the loader picks the best level the CPU has.
#[test]
fn x86_64_bundles_carry_baseline_and_v3_code_that_agree() {
    use object::{Object, ObjectSymbol};
    use tk_codegen::cpu::Level;
    let path = tmp("levels.tkb");
    let files: Vec<String> = examples().iter().map(|p| p.display().to_string()).collect();
    let refs: Vec<&str> = files.iter().map(String::as_str).collect();
    build(&refs, "cpu", &path);
    let o = tk(&["inspect", &path.display().to_string()]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let code_lines = |variant: &str| -> Vec<String> {
        out.split("\n  cpu-")
            .find(|s| s.starts_with(variant.trim_start_matches("cpu-")))
            .map(|s| s.lines().skip(1).map(str::to_string).collect())
            .unwrap_or_default()
    };
    for (variant, triple) in tk_runtime::bundle::CPU_PLATFORMS {
        let lines = code_lines(variant);
        assert!(!lines.is_empty(), "{variant}: {out}");
        let v3 = lines.iter().filter(|l| l.contains("object_x86_64_v3")).count();
        if triple.starts_with("x86_64") {
            assert_eq!(v3, lines.len(), "{variant}: every entry has v3 code:\n{out}");
        } else {
            assert_eq!(v3, 0, "{variant}: no v3 code for {triple}:\n{out}");
        }
    }

    // The contraction of a matrix product: a libcall in baseline code, an instruction in v3 code.
    let g = &compile(std::path::Path::new("examples/matmul.tk"))[0].1;
    let l = tk_toolchain::target::lower(g, tk_toolchain::target::Target::Cpu, &Default::default()).expect("lowers");
    let calls = |level| -> Vec<String> {
        let obj = tk_codegen::cpu::portable_object(&l.kernels, "x86_64-unknown-linux-gnu", level).expect("object");
        let f = object::File::parse(&*obj).expect("ELF");
        f.symbols().filter(|s| s.is_undefined()).filter_map(|s| s.name().ok().map(str::to_string)).collect()
    };
    assert!(calls(Level::Baseline).iter().any(|s| s == "fmaf"), "{:?}", calls(Level::Baseline));
    assert!(!calls(Level::X86_64V3).iter().any(|s| s.starts_with("fma")), "{:?}", calls(Level::X86_64V3));
    assert!(tk_codegen::cpu::portable_object(&l.kernels, "aarch64-apple-darwin", Level::X86_64V3).is_err());

    // Both objects compute what the JIT does, bit for bit.
    let b = Bundle::load(&path).expect("the bundle loads");
    let dev = tk_runtime::open("cpu").expect("cpu");
    let mut rng = Rng(0x3C3);
    for f in examples() {
        for (name, g) in compile(&f) {
            let jit = tk_toolchain::compile(dev.as_ref(), &name, &g, &Default::default()).expect("the JIT compiles");
            let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, 7)).collect();
            let host: Vec<HostArray> = random_args(&g, &dims, &mut rng).iter().map(HostArray::from_interp).collect();
            let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
            let show = |r: Result<Vec<HostArray>, tk_runtime::RunError>| match r {
                Ok(v) => format!("{:?}", v.iter().map(HostArray::to_interp).collect::<Vec<_>>()),
                Err(e) => e.to_string(),
            };
            let want = show(jit.run(dev.as_ref(), &host, &explicit));
            // A tk with LLVM adds LLVM's x86-64-v3 and v4 objects to x86_64 Linux entries, which
            // the loader prefers on a CPU of that level; else Cranelift's v3 object on a CPU that
            // runs x86-64-v3 code, else the baseline one.
            let keys = b.cpu_objects(dev.as_ref(), &name);
            let linux_x86 = cfg!(all(target_arch = "x86_64", target_os = "linux"));
            let llvm_keys = [tk_runtime::bundle::OBJECT_LLVM_X86_64_V3, tk_runtime::bundle::OBJECT_LLVM_X86_64_V4];
            if cfg!(feature = "llvm") && linux_x86 {
                for k in llvm_keys {
                    assert!(keys.iter().any(|x| x == k), "{name}: no {k} in {keys:?}");
                }
            } else {
                assert!(!keys.iter().any(|x| llvm_keys.contains(&x.as_str())), "{name}: {keys:?}");
            }
            let v3 = cfg!(target_arch = "x86_64") && tk_runtime::bundle::host_runs_x86_64_v3();
            let v4 = cfg!(target_arch = "x86_64") && tk_runtime::bundle::host_runs_x86_64_v4();
            let want_key = match (cfg!(feature = "llvm") && linux_x86, v4, v3) {
                (true, true, _) => tk_runtime::bundle::OBJECT_LLVM_X86_64_V4,
                (true, false, true) => tk_runtime::bundle::OBJECT_LLVM_X86_64_V3,
                (false, _, true) => tk_runtime::bundle::OBJECT_X86_64_V3,
                _ => "object",
            };
            assert_eq!(b.cpu_object_for(dev.as_ref(), &name), Some(want_key), "{name}");
            let mut loads = vec![
                ("default", b.load_entry(dev.as_ref(), &name)),
                ("baseline", b.load_entry_baseline(dev.as_ref(), &name)),
            ];
            // Every object this CPU can run computes what the JIT does.
            for (key, runs) in [
                (tk_runtime::bundle::OBJECT_X86_64_V3, v3),
                (tk_runtime::bundle::OBJECT_LLVM_X86_64_V3, v3),
                (tk_runtime::bundle::OBJECT_LLVM_X86_64_V4, v4),
            ] {
                if runs && keys.iter().any(|x| x == key) {
                    loads.push((key, b.load_entry_object(dev.as_ref(), &name, key)));
                }
            }
            for (what, loaded) in loads {
                let loaded = loaded.unwrap_or_else(|e| panic!("{name} ({what}): {e}"));
                assert_eq!(show(loaded.run(dev.as_ref(), &host, &explicit)), want, "{name}: the {what} object");
            }
        }
    }
}

/// A bundle built with `--opts` records the knobs named and loads with them, computing what the
/// JIT computes with the same knobs.
#[test]
fn bundles_keep_the_knobs_opts_named() {
    let path = tmp("knobs.tkb");
    let o = tk(&[
        "build",
        "examples/softmax.tk",
        "--target",
        "cpu",
        "-o",
        &path.display().to_string(),
        "--opts",
        "unroll=2",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let shown = String::from_utf8_lossy(&tk(&["inspect", &path.display().to_string()]).stdout).into_owned();
    assert!(shown.contains("knobs unroll=2"), "{shown}");
    let b = Bundle::load(&path).expect("loads");
    let dev = tk_runtime::open("cpu").expect("cpu");
    let g = &compile(std::path::Path::new("examples/softmax.tk"))[0].1;
    let opts = tk_toolchain::target::Options { knobs: Some("unroll=2".parse().expect("knobs")), ..Default::default() };
    let jit = tk_toolchain::compile(dev.as_ref(), "softmax_rows", g, &opts).expect("compiles");
    let loaded = b.load_entry(dev.as_ref(), "softmax_rows").expect("loads");
    assert_eq!(loaded.kernels.len(), jit.kernels.len());
    for (a, j) in loaded.kernels.iter().zip(&jit.kernels) {
        assert_eq!(tk_ir::kernel::print(a), tk_ir::kernel::print(j));
    }
}

/// Rewrites a bundle's bytes with a fresh checksum, as a well-meaning but wrong tool would.
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    let body = b.len() - 32;
    let sum = Sha256::digest(&b[..body]);
    b[body..].copy_from_slice(&sum);
    b
}

fn rejected(bytes: Vec<u8>, what: &str) -> String {
    match Bundle::from_bytes(bytes, "x.tkb") {
        Ok(_) => panic!("{what}: accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn corrupt_bundles_are_rejected_with_a_clear_error() {
    let path = tmp("corrupt.tkb");
    build(&["examples/saxpy.tk"], "cpu", &path);
    let good = std::fs::read(&path).expect("bundle");
    assert!(Bundle::from_bytes(good.clone(), "x.tkb").is_ok());
    // Truncated anywhere.
    for cut in [0, 7, 20, 40, good.len() / 2, good.len() - 1] {
        let e = rejected(good[..cut].to_vec(), "truncated");
        assert!(e.contains("truncated") || e.contains("not a tk bundle"), "cut at {cut}: {e}");
    }
    // Every region, one bit flipped: the checksum catches it.
    for at in [40, good.len() / 3, good.len() / 2, good.len() - 40, good.len() - 1] {
        let mut b = good.clone();
        b[at] ^= 0x10;
        let e = rejected(b, "bit flip");
        assert!(e.contains("checksum"), "flip at {at}: {e}");
    }
    // A foreign file.
    let e = rejected(std::fs::read("examples/saxpy.tk").expect("source"), "a .tk file");
    assert!(e.contains("not a tk bundle"), "{e}");
    // A newer format.
    let mut b = good.clone();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    let e = rejected(reseal(b), "version 2");
    assert!(e.contains("version 2") && e.contains("rebuild"), "{e}");
    // Trailing bytes.
    let mut b = good.clone();
    b.extend_from_slice(&[0; 8]);
    assert!(rejected(b, "trailing bytes").contains("trailing"));
    // A tampered graph with a valid checksum: its kernels no longer match the code.
    let text = String::from_utf8_lossy(&good).into_owned();
    assert!(text.contains("mul"), "the graph text is in the manifest");
    let pos = good.windows(5).position(|w| w == b" mul ").expect("a mul in the graph");
    let mut t = good.clone();
    t[pos + 1..pos + 4].copy_from_slice(b"add");
    let b = Bundle::from_bytes(reseal(t), "x.tkb").expect("the file itself is well formed");
    let dev = tk_runtime::open("cpu").expect("cpu");
    let e = b.load_entry(dev.as_ref(), "saxpy").err().expect("the tampered entry is refused").to_string();
    assert!(e.contains("differ") && e.contains("rebuild"), "{e}");
}

#[test]
fn loading_reports_missing_entries_and_targets() {
    let path = tmp("missing.tkb");
    build(&["examples/saxpy.tk"], "cpu", &path);
    let b = Bundle::load(&path).expect("bundle");
    let cpu = tk_runtime::open("cpu").expect("cpu");
    let e = b.load_entry(cpu.as_ref(), "nope").err().expect("no such entry").to_string();
    assert!(e.contains("saxpy") && e.contains("daxpy"), "{e}");
    let sim = tk_runtime::open("sim:sm_86").expect("sim");
    let e = b.load_entry(sim.as_ref(), "saxpy").err().expect("no sm_86 code").to_string();
    assert!(e.contains("sm_86") && e.contains("cpu-"), "{e}");
    // The command line: a corrupt file is a user error naming the file.
    let bad = tmp("bad.tkb");
    std::fs::write(&bad, b"TKBUNDLE").expect("write");
    let o = tk(&["inspect", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("bad.tkb") && err(&o).contains("truncated"), "{}", err(&o));
    // A bundle cut short says so in words, not as a Rust value.
    let good = std::fs::read(&path).expect("read");
    std::fs::write(&bad, &good[..good.len() - 100]).expect("write");
    let o = tk(&["inspect", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("the bundle is truncated: the header says"), "{}", err(&o));
    assert!(!err(&o).contains("Some("), "{}", err(&o));
    // `tk run` on a bundle says what it is and what to do instead of "not UTF-8".
    let o = tk(&["run", &path.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("is a tk bundle") && err(&o).contains("tk inspect"), "{}", err(&o));
}

/// A bundle holds AMD code objects where the AMD backend is built in.
#[test]
fn bundles_hold_amd_code_objects() {
    let out = tmp("amd.tkb");
    let o = tk(&["build", "examples/saxpy.tk", "--target", "cpu,gfx1100", "-o", &out.display().to_string()]);
    if o.status.code() == Some(4) {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "the AMD backend is required in CI: {}", err(&o));
        eprintln!("skipping: {}", err(&o));
        assert!(!out.exists(), "nothing is written");
        return;
    }
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let b = Bundle::load(&out).expect("bundle");
    assert!(b.targets().contains(&"gfx1100".to_string()), "{:?}", b.targets());
    let i = tk(&["inspect", &out.display().to_string()]);
    let text = String::from_utf8_lossy(&i.stdout);
    assert!(text.contains("gfx1100: gpu lowering") && text.contains("hsaco"), "{text}");
}

/// Cargo, run from the test on the workspace.
fn cargo(args: &[&str]) -> Output {
    Command::new(env!("CARGO")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("cargo runs")
}

#[test]
fn a_program_without_the_compiler_runs_a_bundle() {
    // The consumer's dependency tree has no compiler crate.
    let tree = cargo(&["tree", "-p", "tk-bundle-runner", "-e", "normal", "--prefix", "none"]);
    assert!(tree.status.success(), "{}", err(&tree));
    let tree = String::from_utf8_lossy(&tree.stdout).into_owned();
    assert!(tree.contains("tk-runtime"), "{tree}");
    for forbidden in ["tk-compiler", "tk-codegen", "cranelift", "llvm-sys", "inkwell", "tk-stdlib", "lalrpop"] {
        assert!(!tree.contains(forbidden), "the runtime-only program depends on {forbidden}:\n{tree}");
    }
    // Built on its own (`cargo build -p` resolves its features alone), it runs the bundle's code
    // and gets the JIT's results.
    let gpu = have_ptxas();
    let amd = have_amd();
    let bundle = tmp("runner.tkb");
    build(&["examples/softmax.tk"], &targets(gpu, amd), &bundle);
    let o = cargo(&["build", "-q", "-p", "tk-bundle-runner"]);
    assert!(o.status.success(), "{}", err(&o));
    let x = HostArray::random(
        tk_runtime::DType::F32,
        vec![7, 13],
        tk_runtime::array::Random::Normal,
        &mut tk_runtime::array::rng(7),
    );
    let xin = tmp("x.npy");
    x.write_npy(&xin).expect("write x");
    let g = compile(Path::new("examples/softmax.tk")).into_iter().find(|(n, _)| n == "softmax_rows").expect("entry").1;
    let mut devices = vec!["cpu"];
    if gpu {
        // The PTX simulator, and the sm_86 cubin through tk's NVIDIA driver and the simulated GPU.
        devices.extend(["sim:sm_86", "nv:sim"]);
    }
    if amd {
        devices.push("sim:gfx1100");
    }
    for d in devices {
        let out = tmp(&format!("runner-out-{}", d.replace(':', "_")));
        let r = Command::new(env!("CARGO"))
            .args(["run", "-q", "-p", "tk-bundle-runner", "--"])
            .args([&bundle.display().to_string(), "softmax_rows", &out.display().to_string(), "--device", d])
            .arg(&xin)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("the runner runs");
        assert!(r.status.success(), "{d}: {}", err(&r));
        let got = HostArray::read_npy(&out.join("out.npy"), tk_runtime::DType::F32).expect("an output");
        let dev = tk_runtime::open(d).expect("device");
        let jit = tk_toolchain::compile(dev.as_ref(), "softmax_rows", &g, &Default::default()).expect("compiles");
        let want = jit.run(dev.as_ref(), std::slice::from_ref(&x), &HashMap::new()).expect("runs");
        assert_eq!(format!("{:?}", got.to_interp()), format!("{:?}", want[0].to_interp()), "{d}");
    }
}

/// `examples/rust-app`: its build script compiles its kernels (tk-build) and the program calls
/// them like functions, with the runtime alone; the results are the JIT's.
#[test]
fn the_build_script_example_builds_and_runs() {
    let tree = cargo(&["tree", "-p", "tk-rust-app", "-e", "normal", "--prefix", "none"]);
    let tree = String::from_utf8_lossy(&tree.stdout).into_owned();
    assert!(tree.contains("tk-runtime") && !tree.contains("tk-compiler") && !tree.contains("cranelift"), "{tree}");
    let o = Command::new(env!("CARGO"))
        .args(["run", "-q", "-p", "tk-rust-app"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(o.status.success(), "{}", err(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // The same entries through the JIT.
    let dev = tk_runtime::open("cpu").expect("cpu");
    let kernels = compile(Path::new("examples/rust-app/kernels/stats.tk"));
    let run = |name: &str, args: &[HostArray], dims: &[(&str, i64)]| -> Vec<Vec<f32>> {
        let g = &kernels.iter().find(|(n, _)| n == name).expect("entry").1;
        let c = tk_toolchain::compile(dev.as_ref(), name, g, &Default::default()).expect("compiles");
        let dims: HashMap<String, i64> = dims.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        c.run(dev.as_ref(), args, &dims).expect("runs").iter().map(|a| a.to_vec::<f32>().expect("f32")).collect()
    };
    let x = HostArray::from_slice(&[2, 4], &[1.0f32, 2.0, 3.0, 4.0, -1.0, 0.0, 0.5, 8.0]).expect("x");
    let p = run("softmax_rows", std::slice::from_ref(&x), &[]);
    assert!(out.contains(&format!("softmax_rows: {:?}", p[0])), "{out}");
    let m = run("moments", std::slice::from_ref(&x), &[]);
    assert!(out.contains(&format!("moments: mean {:?} var {:?}", m[0], m[1])), "{out}");
    let r = run("ramp", &[HostArray::from_slice(&[], &[0.25f32]).expect("scale")], &[("n", 5)]);
    assert!(out.contains(&format!("ramp: {:?}", r[0])), "{out}");
    assert!(out.contains("error: `softmax_rows` argument `x`: expected f32 of rank 2, got i32"), "{out}");
}

/// The embedding API: an entry from a bundle and the same entry JIT-compiled from source are
/// called alike, on host or device-resident arrays, with typed errors for bad arguments.
#[test]
fn bundles_and_the_jit_are_called_alike() {
    use tk::{AsArg, Device};
    let path = tmp("api.tkb");
    build(&["examples/softmax.tk"], "cpu", &path);
    let dev = Device::open("cpu").expect("cpu");
    let from_bundle = tk::Bundle::load(&path).expect("bundle").entry("softmax_rows").expect("entry");
    let from_source = tk::compile_file("examples/softmax.tk").expect("compiles").entry("softmax_rows").expect("entry");
    let x = HostArray::from_slice(&[2, 3], &[1.0f32, 2.0, 3.0, -1.0, 0.0, 1.0]).expect("x");
    let a = from_bundle.call(&dev, &[x.as_arg()]).expect("bundle call");
    let b = from_source.call(&dev, &[x.as_arg()]).expect("JIT call");
    assert_eq!(a, b);
    // Resident: upload once, call twice, nothing copied back until asked.
    let on_dev = dev.upload(&x).expect("upload");
    for _ in 0..2 {
        let outs = from_bundle.call_resident(&dev, &[on_dev.as_arg()], &HashMap::new()).expect("resident call");
        assert_eq!(dev.download(&outs[0]).expect("download"), a[0]);
    }
    // A wrong dtype or rank is a typed argument error.
    let ints = HostArray::from_slice(&[2, 3], &[1i32, 2, 3, 4, 5, 6]).expect("ints");
    let e = from_bundle.call(&dev, &[ints.as_arg()]).expect_err("refused");
    assert!(matches!(e, tk::RunError::Argument { .. }) && e.to_string().contains("i32"), "{e}");
    let e = from_source.call(&dev, &[]).expect_err("refused");
    assert!(matches!(e, tk::RunError::Argument { .. }), "{e}");
}
