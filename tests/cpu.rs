//! Every example runs on the CPU device and matches the reference interpreter bit for bit, on
//! random inputs with awkward sizes (0, 1, primes, sizes that are not multiples of the vector
//! widths).

use std::collections::HashMap;
use std::path::Path;
use tk_ir::graph::interp::{self, Array};
use tk_runtime::HostArray;

#[macro_use]
mod common;
use common::*;

device_suite!(suite, "cpu", sizes: [0, 1, 2, 3, 5, 7, 13, 17], runs: 300, tolerance: [1, 5, 33, 67], runs: 150);

/// Every example compiles for the Mac (aarch64-apple-darwin) and for aarch64 Linux to a
/// relocatable object whose symbols are the device kernels, from the same translation as the JIT.
#[test]
fn every_example_cross_compiles_to_aarch64_objects() {
    use object::{Object, ObjectSymbol};
    let mut objects = 0;
    for f in examples() {
        for (name, g) in compile(&f) {
            let s = tk_ir::schedule::schedule(&g);
            let kernels: Vec<tk_ir::kernel::Kernel> = (0..s.kernels.len())
                .map(|i| {
                    let shape = &s.buffers[s.kernels[i].writes[0]].shape;
                    tk_ir::kernel::lower(&s, i, &tk_toolchain::target::Target::Cpu.default_knobs(shape))
                        .expect("lowers")
                })
                .collect();
            for (triple, arch, format) in [
                ("aarch64-apple-darwin", object::Architecture::Aarch64, object::BinaryFormat::MachO),
                ("aarch64-unknown-linux-gnu", object::Architecture::Aarch64, object::BinaryFormat::Elf),
            ] {
                let prefix = format!("tk_{name}_");
                let bytes = tk_codegen::cpu::object(&kernels, Some(triple), &prefix)
                    .unwrap_or_else(|e| panic!("{}::{name} for {triple}: {e}", f.display()));
                let obj = object::File::parse(&*bytes).expect("a valid object");
                assert_eq!(obj.architecture(), arch);
                assert_eq!(obj.format(), format);
                let defined: Vec<String> = obj
                    .symbols()
                    .filter(|s| s.is_definition())
                    .filter_map(|s| s.name().ok().map(|n| n.trim_start_matches('_').to_string()))
                    .collect();
                for k in &kernels {
                    let want = format!("{prefix}{}", k.name);
                    assert!(defined.contains(&want), "{triple}: {want} not in {defined:?}");
                }
                objects += 1;
            }
        }
    }
    assert!(objects >= 100, "only {objects} objects");
}

/// Random valid knobs (parallel axes, unrolling, vector width) never change a result.
#[test]
fn knobs_do_not_change_cpu_results() {
    use tk_ir::kernel::Knobs;
    let dev = tk_runtime::open("cpu").expect("cpu device");
    let mut rng = Rng(99);
    let mut checked = 0;
    for f in examples() {
        for (name, g) in compile(&f) {
            let s = tk_ir::schedule::schedule(&g);
            let ranks: Vec<usize> = s.kernels.iter().map(|k| s.buffers[k.writes[0]].shape.len()).collect();
            let min_rank = ranks.iter().copied().min().unwrap_or(0);
            for trial in 0..3 {
                let r = min_rank as u64;
                let knobs = Knobs {
                    parallel: (rng.next() % (r + 1)) as usize,
                    unroll: 1 << (rng.next() % 4),
                    vector: if r == 0 { 1 } else { 1 << (rng.next() % 6) },
                    group: 1,
                    upcast: 1 << (rng.next() % 3),
                };
                let opts =
                    tk_toolchain::target::Options { knobs: Some((&knobs).into()), deterministic: true, split: None };
                let compiled = tk_toolchain::compile(dev.as_ref(), &name, &g, &opts)
                    .unwrap_or_else(|e| panic!("{}::{name} {knobs}: {e}", f.display()));
                let size = [3i64, 5, 17][trial];
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                let args = random_args(&g, &dims, &mut rng);
                let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
                let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
                let want = interp::bind_dims(&g, &args, &explicit).ok().and_then(|b| interp::run(&g, &b, &args).ok());
                let got = compiled.run(dev.as_ref(), &host, &explicit).ok();
                match (want, got) {
                    (Some(w), Some(o)) => {
                        let o: Vec<Array> = o.iter().map(HostArray::to_interp).collect();
                        assert_eq!(format!("{w:?}"), format!("{o:?}"), "{}::{name} {knobs} size {size}", f.display());
                    }
                    (None, None) => {}
                    (w, o) => {
                        panic!("{}::{name} {knobs} size {size}: {:?} vs {:?}", f.display(), w.is_some(), o.is_some())
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 200, "{checked}");
}

/// Launches large enough to be split over threads match the interpreter too.
#[test]
fn parallel_launches_match_the_interpreter() {
    let dev = tk_runtime::open("cpu").expect("cpu device");
    let mut rng = Rng(4242);
    let mut split = 0;
    for f in examples() {
        for (name, g) in compile(&f) {
            // The largest size whose inputs stay below 40k elements.
            let elems = |size: i64| -> i64 {
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                g.inputs
                    .iter()
                    .map(|(_, _, s)| {
                        s.iter().map(|d| d.eval(&|x| dims.get(x).copied()).unwrap_or(0).max(0)).product::<i64>()
                    })
                    .sum()
            };
            let Some(size) = [257i64, 127, 61, 29].into_iter().find(|s| elems(*s) <= 40_000) else { continue };
            if g.inputs.is_empty() && size > 61 {
                continue;
            }
            let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
            let compiled = tk_toolchain::compile(dev.as_ref(), &name, &g, &exact()).expect("compiles");
            let args = random_args(&g, &dims, &mut rng);
            let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
            let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
            let want = interp::bind_dims(&g, &args, &explicit).ok().and_then(|b| interp::run(&g, &b, &args).ok());
            let got = compiled.run(dev.as_ref(), &host, &explicit).ok();
            match (want, got) {
                (Some(w), Some(o)) => {
                    let o: Vec<Array> = o.iter().map(HostArray::to_interp).collect();
                    assert!(format!("{w:?}") == format!("{o:?}"), "{}::{name} size {size}", f.display());
                    split += 1;
                }
                (None, None) => {}
                (w, o) => panic!("{}::{name} size {size}: {:?} vs {:?}", f.display(), w.is_some(), o.is_some()),
            }
        }
    }
    assert!(split >= 40, "{split}");
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    if threads > 1 {
        assert!(
            tk_runtime::devices::cpu::split_launches() >= 20,
            "only {} launches ran on several threads",
            tk_runtime::devices::cpu::split_launches()
        );
    }
}

/// Long reductions to a scalar are split into partials by default: integer sums, max and min
/// stay exact, and float sums meet the reduction bound of docs/numerics.md.
#[test]
fn split_reductions_meet_the_contract() {
    let src = "kernel s(x: f32[n]) -> f32 { sum(x) }\n\
               kernel mx(x: f32[n]) -> f32 { max(x) }\n\
               kernel mn(x: f32[n]) -> f32 { min(x) }\n\
               kernel si(x: i8[n]) -> i32 { sum(x) }\n\
               kernel sb(x: bool[n]) -> i32 { sum(x) }\n\
               kernel sh(x: f16[n]) -> f16 { sum(x) }\n\
               kernel rows(x: f32[b, n]) -> f32[b] { sum(x, axis: 1) }\n\
               kernel mm(a: f32[m, k], b: f32[k, n]) -> f32[m, n] { a @ b }\n";
    let path = Path::new("split.tk");
    let c = tk_compiler::check_source(path, src.to_string());
    assert!(c.is_ok(), "{}", c.render_plain());
    let dev = tk_runtime::open("cpu").expect("cpu");
    let mut rng = Rng(77);
    for k in &c.kernels {
        let g = tk_ir::graph::passes::prepare(&tk_compiler::lower::lower_kernel(k).expect("lowers"));
        let split =
            tk_ir::graph::passes::split_reductions(&g, &tk_ir::graph::passes::Split { chunks: 2, lanes: 16, rows: 16 });
        if k.name == "mm" {
            // The reduction reads columns of `b`: strided, so it is not split.
            assert_eq!(split.g.node_count(), g.g.node_count(), "a matrix product was split");
            continue;
        }
        assert!(split.g.node_count() > g.g.node_count(), "{}: not split", k.name);
        if k.name == "rows" {
            let compiled = tk_toolchain::compile(dev.as_ref(), &k.name, &g, &Default::default()).expect("compiles");
            for (b, n) in [(3i64, 1000i64), (2, 37)] {
                let dims: HashMap<String, i64> = [("b".to_string(), b), ("n".to_string(), n)].into();
                let args = random_args(&g, &dims, &mut rng);
                let want = interp::run(&g, &dims, &args).expect("runs");
                let x = HostArray::from_interp(&args[0]);
                let got = compiled.run(dev.as_ref(), std::slice::from_ref(&x), &HashMap::new()).expect("runs");
                let w = HostArray::from_interp(&want[0]);
                for r in 0..b as usize {
                    let abs: f64 = (0..n as usize).map(|j| x.get_f64(r * n as usize + j).abs()).sum();
                    let bound = (n - 1) as f64 * 2f64.powi(-24) * abs;
                    let (wv, gv) = (w.get_f64(r), got[0].get_f64(r));
                    assert!(
                        wv == gv || (wv - gv).abs() <= bound || (wv.is_nan() && gv.is_nan()),
                        "row {r}: {gv} vs {wv} (bound {bound})"
                    );
                }
            }
            continue;
        }
        let compiled = tk_toolchain::compile(dev.as_ref(), &k.name, &g, &Default::default()).expect("compiles");
        for n in [0i64, 1, 31, 32, 33, 1000, 4099, 100_003] {
            let dims: HashMap<String, i64> = [("n".to_string(), n)].into();
            let args = random_args(&g, &dims, &mut rng);
            let want = interp::run(&g, &dims, &args).expect("runs");
            let got = compiled.run(dev.as_ref(), &[HostArray::from_interp(&args[0])], &HashMap::new()).expect("runs");
            let (w, o) = (HostArray::from_interp(&want[0]).get_f64(0), got[0].get_f64(0));
            if k.name == "s" || k.name == "sh" {
                let x = HostArray::from_interp(&args[0]);
                let abs: f64 = (0..x.len()).map(|i| x.get_f64(i).abs()).sum();
                let u = if k.name == "s" { 2f64.powi(-24) } else { 2f64.powi(-11) };
                let bound =
                    (n.max(1) - 1) as f64 * 2f64.powi(-24) * abs + if k.name == "sh" { u * w.abs() } else { 0.0 };
                assert!(
                    w == o || (w - o).abs() <= bound || (w.is_nan() && o.is_nan()),
                    "{} n={n}: {o} vs {w} (bound {bound})",
                    k.name
                );
            } else {
                assert!(w == o || (w.is_nan() && o.is_nan()), "{} n={n}: {o} vs {w}", k.name);
            }
        }
    }
}

/// Register tiles (`upcast`) of matrix products compute exactly the untiled results, for sizes
/// that leave partial tiles at every edge.
#[test]
fn register_tiles_match_the_interpreter() {
    use tk_ir::kernel::Knobs;
    let dev = tk_runtime::open("cpu").expect("cpu device");
    let mut rng = Rng(4242);
    let mut tiled = 0;
    for (name, g) in compile(Path::new("examples/matmul.tk")) {
        for f in [2u32, 4, 8] {
            let s = tk_ir::schedule::schedule(&g);
            let rank = s.buffers[s.kernels[0].writes[0]].shape.len();
            let knobs = Knobs { parallel: rank, upcast: f, ..Knobs::default() };
            let opts = tk_toolchain::target::Options { knobs: Some((&knobs).into()), deterministic: true, split: None };
            let compiled = tk_toolchain::compile(dev.as_ref(), &name, &g, &opts).expect("compiles");
            let text = tk_ir::kernel::print(&compiled.kernels[0]);
            // Matrix products contract to `reduce dot` (sums of fused products).
            if text.matches("acc dot").count() >= (f * f) as usize {
                tiled += 1;
            }
            for size in [1i64, 3, 5, 6, 9] {
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                let args = random_args(&g, &dims, &mut rng);
                let want = interp::run(&g, &dims, &args).expect("runs");
                let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
                let got = compiled.run(dev.as_ref(), &host, &HashMap::new()).expect("runs");
                let got: Vec<Array> = got.iter().map(HostArray::to_interp).collect();
                assert_eq!(format!("{want:?}"), format!("{got:?}"), "{name} upcast={f} size {size}");
            }
        }
    }
    assert!(tiled >= 9, "only {tiled} entries were tiled");
}

/// Runs `loaded` (code from a bundle) and `jit` (the JIT's code for the same graph `g`) on the same
/// random arguments, `size` for every dimension, and asserts the same outputs or the same error.
/// NaNs of any sign and payload are equal (a bundle's baseline-ISA code may make another NaN than
/// the JIT's).
fn assert_same_as_jit(
    dev: &dyn tk_runtime::Device,
    loaded: &tk_runtime::Compiled,
    jit: &tk_runtime::Compiled,
    name: &str,
    g: &tk_ir::graph::Graph,
    size: i64,
    rng: &mut Rng,
) {
    let dims: HashMap<String, i64> = symbols(g).into_iter().map(|s| (s, size)).collect();
    let host: Vec<HostArray> = random_args(g, &dims, rng).iter().map(HostArray::from_interp).collect();
    let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
    match (loaded.run(dev, &host, &explicit), jit.run(dev, &host, &explicit)) {
        (Ok(a), Ok(j)) => {
            let a: Vec<Array> = a.iter().map(HostArray::to_interp).collect();
            let j: Vec<Array> = j.iter().map(HostArray::to_interp).collect();
            assert_eq!(format!("{a:?}"), format!("{j:?}"), "{name} at size {size}");
        }
        (Err(a), Err(j)) => assert_eq!(a.to_string(), j.to_string(), "{name} at size {size}"),
        (a, j) => panic!("{name} at size {size}: loaded {:?}, JIT {:?}", a.err(), j.err()),
    }
}

/// Every example's CPU code from a bundle (a relocatable object for this machine, linked by the
/// runtime's own loader) computes what the JIT's code does. In process, so that it also runs
/// under qemu for aarch64 (scripts/test-aarch64), where the loader's aarch64 relocations run.
#[test]
fn every_example_runs_from_a_cpu_bundle_through_the_loader() {
    let mut entries = Vec::new();
    let mut graphs = Vec::new();
    for f in examples() {
        for (name, g) in compile(&f) {
            entries.push(tk_toolchain::bundle::Entry {
                name: name.clone(),
                source: f.display().to_string(),
                graph: g.clone(),
            });
            graphs.push((name, g));
        }
    }
    let path = std::env::temp_dir().join(format!("tk-cpu-loader-{}.tkb", std::process::id()));
    let opts = tk_toolchain::target::Options::default();
    tk_toolchain::bundle::build(&entries, &[tk_toolchain::target::Target::Cpu], &opts, &path)
        .expect("the bundle builds");
    let b = tk_runtime::bundle::Bundle::load(&path).expect("the bundle loads");
    let _ = std::fs::remove_file(&path);
    let dev = tk_runtime::open("cpu").expect("cpu");
    let mut rng = Rng(0x10AD);
    let mut ran = 0;
    for (name, g) in &graphs {
        let loaded = b.load_entry(dev.as_ref(), name).unwrap_or_else(|e| panic!("{name}: {e}"));
        let jit = tk_toolchain::compile(dev.as_ref(), name, g, &opts).expect("the JIT compiles");
        for size in [1, 5, 7] {
            assert_same_as_jit(dev.as_ref(), &loaded, &jit, name, g, size, &mut rng);
            ran += 1;
        }
    }
    assert!(ran >= 200, "only {ran} runs");
}

/// LLVM's aarch64 code from a bundle a tk with LLVM built on another machine (the Mac's
/// deployment path: `tk build --target cpu` on x86_64 Linux, the bundle loaded on aarch64):
/// every example's LLVM object goes through the runtime's loader (its branch veneers and address
/// groups), is the object a load takes by default, and computes what the JIT's Cranelift code
/// computes, bit for bit. It runs under qemu: scripts/test-aarch64 builds the bundle with
/// `target/debug/tk` and names it in `TK_TEST_LLVM_BUNDLE`.
#[test]
fn llvm_objects_for_aarch64_run_through_the_loader() {
    if !cfg!(target_arch = "aarch64") {
        eprintln!(
            "llvm_objects_for_aarch64_run_through_the_loader: nothing to run on this CPU (scripts/test-aarch64 runs it under qemu)"
        );
        return;
    }
    let Some(path) = std::env::var_os("TK_TEST_LLVM_BUNDLE") else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "TK_TEST_LLVM_BUNDLE is unset: run scripts/test-aarch64");
        eprintln!("skipped: TK_TEST_LLVM_BUNDLE is unset (scripts/test-aarch64 builds the bundle and sets it)");
        return;
    };
    let b = tk_runtime::bundle::Bundle::load(Path::new(&path)).expect("the bundle loads");
    let dev = tk_runtime::open("cpu").expect("cpu");
    let key = tk_runtime::bundle::OBJECT_LLVM_AARCH64;
    let mut rng = Rng(0xA64);
    let (mut ran, mut entries) = (0, 0);
    for f in examples() {
        for (name, g) in compile(&f) {
            if !b.cpu_objects(dev.as_ref(), &name).iter().any(|k| k == key) {
                continue;
            }
            entries += 1;
            if std::env::var_os("TK_CPU_TIER").is_none() {
                assert_eq!(b.cpu_object_for(dev.as_ref(), &name), Some(key), "{name}");
            }
            let loaded = b.load_entry_object(dev.as_ref(), &name, key).unwrap_or_else(|e| panic!("{name}: {e}"));
            let jit = tk_toolchain::compile(dev.as_ref(), &name, &g, &Default::default()).expect("the JIT compiles");
            for size in [1, 5, 7, 33] {
                assert_same_as_jit(dev.as_ref(), &loaded, &jit, &name, &g, size, &mut rng);
                ran += 1;
            }
        }
    }
    eprintln!("{entries} entries ran LLVM's aarch64 code, {ran} runs");
    assert!(entries >= 80 && ran >= 320, "only {entries} entries with LLVM code, {ran} runs");
}

/// An entry keeps its temporaries on the CPU for its next launch: launches of the same sizes take
/// them (no allocation, no fresh pages), launches of other sizes allocate others, and launches from
/// several threads at once each get their own; every result is the interpreter's, bit for bit.
/// (Debug builds fill every temporary with a pattern before a launch, so a kernel that read one
/// before writing it would fail here and in every differential test.)
#[test]
fn temporaries_are_kept_between_launches() {
    // A column softmax: several kernels with temporaries between them on the CPU.
    let src = "kernel main(x: f32[n, m]) -> f32[n, m] {\n    let e = exp(x - max(x, axis: 0, keep: true));\n    e / sum(e, axis: 0, keep: true)\n}\n";
    let dev = tk_runtime::open("cpu").expect("cpu");
    let session = tk_toolchain::Session::new();
    let c = session.check(Path::new("cols.tk"), src.to_string());
    assert!(c.is_ok(), "{}", c.render_plain());
    let g = session.prepared(&c.kernels[0]).expect("prepares");
    let compiled = tk_toolchain::compile(dev.as_ref(), "main", &g, &Default::default()).expect("compiles");
    assert!(compiled.schedule.buffers.iter().any(|b| matches!(b.kind, tk_ir::schedule::BufferKind::Temp { .. })));
    assert_eq!(compiled.kept_temporaries(), 0);
    let check = |n: i64, m: i64, seed: u64| {
        let dims: HashMap<String, i64> = [("n".to_string(), n), ("m".to_string(), m)].into();
        let args = random_args(&g, &dims, &mut Rng(seed));
        let b = interp::bind_dims(&compiled.schedule.graph, &args, &HashMap::new()).expect("binds");
        let want = interp::run(&compiled.schedule.graph, &b, &args).expect("interprets");
        let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
        let got = compiled.run(dev.as_ref(), &host, &HashMap::new()).expect("runs");
        let got: Vec<Array> = got.iter().map(HostArray::to_interp).collect();
        assert_eq!(format!("{want:?}"), format!("{got:?}"), "n = {n}, m = {m}, seed {seed}");
    };
    for (i, (n, m)) in [(37, 5), (37, 5), (300, 70), (300, 70), (37, 5), (1, 1)].into_iter().enumerate() {
        check(n, m, i as u64);
        assert!(compiled.kept_temporaries() > 0, "after launch {i}");
    }
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for r in 0..5u64 {
                    check(300, 70, 100 + 10 * t + r);
                }
            });
        }
    });
}

/// Row kernels (the scheduler's rule 6: a row's reductions and the elementwise work reading them
/// in one CPU kernel) compute the separate kernels' bits: each program runs with and without
/// split reductions against the interpreter of the same graph at awkward sizes, and the kernel
/// counts show which programs became row kernels. Reading another row's reduction keeps the
/// kernels apart; reading the row backwards makes a row kernel that computes the exponentials
/// twice (the output's row cannot hold them while it is overwritten).
#[test]
fn row_kernels_match_the_interpreter() {
    use tk_toolchain::target::{Options, Split, Target};
    // Cranelift's code, and LLVM's where tk is built with it (every kernel at load).
    let mut devices = vec!["cpu,tier=cranelift"];
    if cfg!(feature = "llvm") {
        devices.push("cpu,tier=llvm");
    }
    let softmax = "let e = exp(x - max(x, axis: 1, keep: true));\n    e / sum(e, axis: 1, keep: true)";
    // (source, device kernels without and with split reductions)
    let programs: [(String, usize, usize); 7] = [
        (format!("kernel main(x: f32[n, m]) -> f32[n, m] {{\n    {softmax}\n}}\n"), 1, 1),
        (format!("kernel main(x: f16[n, m]) -> f16[n, m] {{\n    {softmax}\n}}\n"), 1, 1),
        ("kernel main(x: f32[n, 3, m]) -> f32[n, 3, m] {\n    let e = exp(x - max(x, axis: 2, keep: true));\n    e / sum(e, axis: 2, keep: true)\n}\n".into(), 1, 1),
        ("kernel main(x: f32[n, m]) -> f32[n, m] {\n    let c = x - mean(x, axis: 1, keep: true);\n    c * rsqrt(mean(c * c, axis: 1, keep: true) + 1e-5)\n}\n".into(), 1, 1),
        ("kernel main(x: f32[n, m]) -> f32[n, m] {\n    let s = x - max(x, axis: 1, keep: true);\n    s - log(sum(exp(s), axis: 1, keep: true))\n}\n".into(), 1, 1),
        ("kernel main(x: f32[n, m]) -> f32[n, m] {\n    x - max(x, axis: 1, keep: true)[::-1]\n}\n".into(), 2, 4),
        ("kernel main(x: f32[n, m]) -> f32[n, m] {\n    let e = exp(x - max(x, axis: 1, keep: true));\n    e[:, ::-1] / sum(e, axis: 1, keep: true)\n}\n".into(), 1, 1),
    ];
    let split = Split { chunks: 2, lanes: 16, rows: 16 };
    let mut rng = Rng(77);
    let mut checked = 0;
    for (dev_name, (src, exact_count, split_count)) in devices.iter().flat_map(|d| programs.iter().map(move |p| (d, p)))
    {
        let dev = tk_runtime::open(dev_name).expect("cpu device");
        for (opts, count) in [
            (Options { knobs: None, deterministic: true, split: None }, exact_count),
            (Options { knobs: None, deterministic: false, split: Some(split) }, split_count),
        ] {
            let session = tk_toolchain::Session::with_options(opts.clone());
            let c = session.check(Path::new("rows.tk"), src.clone());
            assert!(c.is_ok(), "{src}{}", c.render_plain());
            let g = session.prepared(&c.kernels[0]).expect("prepares");
            let compiled = tk_toolchain::compile(dev.as_ref(), "main", &g, &opts).expect("compiles");
            assert_eq!(compiled.kernels.len(), *count, "{src} (deterministic: {})", opts.deterministic);
            // The reference: the interpreter of the graph the CPU scheduled (split as it was).
            let reference = tk_toolchain::target::split(&g, Target::Cpu, &opts).into_owned();
            for (n, m) in [(1, 1), (3, 5), (2, 17), (5, 33), (4, 100), (0, 7), (7, 0), (2, 300)] {
                let dims: HashMap<String, i64> = [("n".to_string(), n), ("m".to_string(), m)].into();
                let args = random_args(&g, &dims, &mut rng);
                let b = interp::bind_dims(&reference, &args, &HashMap::new()).expect("binds");
                let want = interp::run(&reference, &b, &args).expect("interprets");
                let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
                let got = compiled.run(dev.as_ref(), &host, &HashMap::new()).expect("runs");
                let got: Vec<Array> = got.iter().map(HostArray::to_interp).collect();
                assert_eq!(
                    format!("{want:?}"),
                    format!("{got:?}"),
                    "{src} at n = {n}, m = {m} on {dev_name}, {opts:?}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, devices.len() * 7 * 2 * 8);
}
