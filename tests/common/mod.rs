//! Helpers shared by the device tests: the examples, their prepared graphs, random arguments
//! with awkward values, and a small deterministic generator.
#![allow(dead_code, unused_macros)]

pub mod random;
#[path = "../../compiler/tests/random_exprs/mod.rs"]
pub mod random_exprs;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tk_ir::dtype::DType;
use tk_ir::graph::interp::{self, Array};
use tk_ir::graph::{Graph, Scalar};
use tk_runtime::HostArray;

/// Devices a test opened itself (a GPU behind a fake TinyGPU server, booted with the firmware
/// the test gives it), found by name before `tk_runtime::open` is tried.
static OPENED: std::sync::Mutex<Vec<(String, std::sync::Arc<dyn tk_runtime::Device>)>> =
    std::sync::Mutex::new(Vec::new());

/// Makes `dev` the device the helpers below use for `name`.
#[allow(dead_code)]
pub fn register_device(name: &str, dev: std::sync::Arc<dyn tk_runtime::Device>) {
    if let Ok(mut v) = OPENED.lock() {
        v.push((name.to_string(), dev));
    }
}

/// A device registered under `name`, else `tk_runtime::open(name)`.
pub fn open_device(name: &str) -> Result<std::sync::Arc<dyn tk_runtime::Device>, tk_runtime::RunError> {
    if let Ok(v) = OPENED.lock()
        && let Some((_, d)) = v.iter().find(|(n, _)| n == name)
    {
        return Ok(d.clone());
    }
    tk_runtime::open(name)
}

/// A fake TinyGPU server on a fresh socket in the temp directory (`tag` names it), whose
/// simulated GPU powers on cold.
#[cfg(unix)]
pub fn tinygpu_server(tag: &str) -> tk_sim::pcie::tinygpu_server::FakeServer {
    let path = std::env::temp_dir().join(format!("tk-{}-{tag}.sock", std::process::id()));
    tk_sim::pcie::tinygpu_server::FakeServer::start(&path).expect("the fake TinyGPU server starts")
}

/// The GPU behind a fake TinyGPU server, booted (cold the first time): the simulated GPU there
/// runs its synthetic firmware, and the driver is given the same blobs (a user's come from
/// linux-firmware). Returns the device's name (`amd:tinygpu=SOCKET`) and the device.
#[cfg(unix)]
pub fn tinygpu_device(
    server: &tk_sim::pcie::tinygpu_server::FakeServer,
) -> (String, tk_runtime::devices::amd::AmdDevice) {
    let t = tk_gpu::transport::tinygpu::TinyGpu::connect(&server.path).expect("connects");
    let fw = tk_gpu::amd::firmware::FirmwareSet::from_files(
        tk_sim::pcie::amd::synthetic(&tk_gpu::amd::discovery::navi31()),
        "the simulated GPU's synthetic firmware",
    )
    .expect("firmware");
    let name = format!("amd:tinygpu={}", server.path.display());
    let dev = tk_runtime::devices::amd::AmdDevice::open_with_firmware(
        &name,
        Box::new(t),
        tk_abi::launch::AmdTarget::ALL[0],
        Some(fw),
    )
    .expect("boots over the socket");
    (name, dev)
}

/// A fake TinyGPU server with a simulated NVIDIA GA102 behind it (`tag` names its socket).
#[cfg(unix)]
pub fn nv_tinygpu_server(tag: &str) -> tk_sim::pcie::tinygpu_server::FakeServer {
    let path = std::env::temp_dir().join(format!("tk-{}-{tag}-nv.sock", std::process::id()));
    tk_sim::pcie::tinygpu_server::FakeServer::start_nv(&path, Default::default())
        .expect("the fake TinyGPU server starts")
}

/// The NVIDIA GPU behind a fake TinyGPU server, booted with the simulated GPU's firmware (a
/// user's comes from linux-firmware). Returns the device's name (`nv:tinygpu=SOCKET`) and the
/// device.
#[cfg(unix)]
pub fn nv_tinygpu_device(
    server: &tk_sim::pcie::tinygpu_server::FakeServer,
) -> (String, tk_runtime::devices::nv::NvDevice) {
    let t = tk_gpu::transport::tinygpu::TinyGpu::connect(&server.path).expect("connects");
    let files = tk_sim::pcie::nv::firmware::files("ga102").expect("firmware files");
    let chip = tk_gpu::nv::chip::Chip { arch: tk_gpu::nv::chip::Arch::Ampere, id: 0x172, name: "GA102" };
    let fw = tk_gpu::nv::firmware::NvFirmware::from_files(&files, &chip, "the simulated GPU's synthetic firmware")
        .expect("firmware");
    let name = format!("nv:tinygpu={}", server.path.display());
    let dev = tk_runtime::devices::nv::NvDevice::open_with_firmware(&name, Box::new(t), Some(fw))
        .expect("boots over the socket");
    (name, dev)
}

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

pub fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("examples")
        .expect("examples")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tk"))
        .collect();
    v.sort();
    v
}

pub fn compile(path: &Path) -> Vec<(String, Graph)> {
    let src = std::fs::read_to_string(path).expect("readable");
    let c = tk_compiler::check_source(path, src);
    assert!(c.is_ok(), "{}", c.render_plain());
    c.kernels
        .iter()
        .map(|k| {
            let g = tk_compiler::lower::lower_kernel(k).unwrap_or_else(|e| panic!("{}: {e}", k.name));
            (k.name.clone(), tk_ir::graph::passes::prepare(&g))
        })
        .collect()
}

/// Compile options under which every device is bit-identical to the interpreter.
pub fn exact() -> tk_toolchain::target::Options {
    tk_toolchain::target::Options { knobs: None, deterministic: true, split: None }
}

pub fn symbols(g: &Graph) -> Vec<String> {
    let mut v: Vec<String> = g.inputs.iter().flat_map(|(_, _, s)| s.iter().flat_map(|d| d.symbols())).collect();
    v.extend(g.dims.iter().cloned());
    v.sort();
    v.dedup();
    v
}

pub fn random_args(g: &Graph, dims: &HashMap<String, i64>, rng: &mut Rng) -> Vec<Array> {
    g.inputs
        .iter()
        .map(|(_, d, shape)| {
            let shape: Vec<usize> =
                shape.iter().map(|x| x.eval(&|s| dims.get(s).copied()).expect("bound") as usize).collect();
            Array::from_fn(*d, shape, |_| {
                if d.is_float() {
                    // Mostly in [-4, 4), with occasional large values, zeros and non-finite ones.
                    match rng.next() % 64 {
                        0 => Scalar::Float(0.0),
                        1 => Scalar::Float(-0.0),
                        2 => Scalar::Float(1e30),
                        3 => Scalar::Float(f64::INFINITY),
                        _ => Scalar::Float((rng.next() % 8_000_001) as f64 / 1_000_000.0 - 4.0),
                    }
                } else if *d == DType::Bool {
                    Scalar::Bool(rng.next().is_multiple_of(2))
                } else {
                    Scalar::Int((rng.next() % 7) as i128 - 2)
                }
            })
        })
        .collect()
}

/// Every example runs on `device` and matches the reference interpreter bit for bit (in the
/// deterministic mode) on random inputs with every symbol set to each of `sizes`.
pub fn every_example_matches_the_interpreter(device: &str, sizes: &[i64], min_runs: usize) {
    every_example_matches_the_interpreter_on(open_device(device).expect("device"), device, sizes, min_runs);
}

/// [`every_example_matches_the_interpreter`] on a device already open.
#[allow(dead_code)]
pub fn every_example_matches_the_interpreter_on(
    dev: std::sync::Arc<dyn tk_runtime::Device>,
    device: &str,
    sizes: &[i64],
    min_runs: usize,
) {
    let mut rng = Rng(0x5EED);
    let mut ran = 0;
    let mut failures = Vec::new();
    for f in examples() {
        for (name, g) in compile(&f) {
            let compiled = match tk_toolchain::compile(dev.as_ref(), &name, &g, &exact()) {
                Ok(c) => c,
                Err(e) => {
                    failures.push(format!("{}::{name}: compile: {e}", f.display()));
                    continue;
                }
            };
            for &size in sizes {
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                if g.inputs
                    .iter()
                    .any(|(_, _, s)| s.iter().any(|d| d.eval(&|x| dims.get(x).copied()).is_none_or(|v| v < 0)))
                {
                    continue;
                }
                let args = random_args(&g, &dims, &mut rng);
                let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
                let want = interp::bind_dims(&g, &args, &explicit)
                    .map_err(|e| e.to_string())
                    .and_then(|b| interp::run(&g, &b, &args).map_err(|e| e.message));
                let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
                let got = compiled.run(dev.as_ref(), &host, &explicit);
                match (want, got) {
                    (Ok(w), Ok(o)) => {
                        let o: Vec<Array> = o.iter().map(HostArray::to_interp).collect();
                        if format!("{w:?}") != format!("{o:?}") {
                            failures.push(format!(
                                "{}::{name} size {size}:\n  interpreter {w:?}\n  {device:<11} {o:?}",
                                f.display()
                            ));
                        }
                        ran += 1;
                    }
                    (Err(_), Err(_)) => ran += 1,
                    (w, o) => failures.push(format!(
                        "{}::{name} size {size}: interpreter {:?} vs {device} {:?}",
                        f.display(),
                        w.err(),
                        o.err().map(|e| e.to_string())
                    )),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert!(ran >= min_runs, "only {ran} runs");
}

/// Sums of products are contractions (docs/numerics.md): each step is one fma. The inputs make
/// the second product `(1 + e)(1 - e) = 1 - e²` round to 1 in the dtype, so a multiply followed
/// by an add gives `-1 + 1 = 0` while the fma gives `-e²` exactly. The expected values are
/// derived by hand, not taken from the interpreter (which is checked against them too): a dot
/// product, a matrix product and a comprehension, under the exact and the default options, and
/// a long vector (zeros after the two elements) under `--deterministic`.
pub fn contractions_round_once(device: &str) {
    let dev = open_device(device).expect("device");
    // (dtype, e): 1 - e² is at most half an ulp below 1 and not representable, e² is.
    for (t, e) in [("f32", 2f64.powi(-13)), ("f64", 2f64.powi(-30)), ("f16", 2f64.powi(-6)), ("bf16", 2f64.powi(-5))] {
        let src = format!(
            "kernel dot(x: {t}[n], y: {t}[n]) -> {t} {{ sum(x * y) }}\n\
             kernel mm(a: {t}[m, k], b: {t}[k, n]) -> {t}[m, n] {{ a @ b }}\n\
             kernel loops(a: {t}[m, k], b: {t}[k, n]) -> {t}[m, n] {{ [i, j] => sum(r in 0..k: a[i, r] * b[r, j]) }}\n"
        );
        let c = tk_compiler::check_source(Path::new("contract.tk"), src);
        assert!(c.is_ok(), "{t}: {}", c.render_plain());
        let d = tk_ir::dtype::DType::parse(t).expect("dtype");
        let want = -e * e;
        for k in &c.kernels {
            let g = tk_ir::graph::passes::prepare(&tk_compiler::lower::lower_kernel(k).expect("lowers"));
            for (len, options) in [(2, exact()), (2, Default::default()), (1000, exact())] {
                let first = |i: usize| {
                    Scalar::Float(match i {
                        0 => -1.0,
                        1 => 1.0 + e,
                        _ => 0.0,
                    })
                };
                let second = |i: usize| {
                    Scalar::Float(match i {
                        0 => 1.0,
                        1 => 1.0 - e,
                        _ => 1.0,
                    })
                };
                let (args, dims): (Vec<Array>, HashMap<String, i64>) = if k.name == "dot" {
                    (
                        vec![Array::from_fn(d, vec![len], first), Array::from_fn(d, vec![len], second)],
                        [("n".to_string(), len as i64)].into(),
                    )
                } else {
                    (
                        vec![Array::from_fn(d, vec![1, len], first), Array::from_fn(d, vec![len, 1], second)],
                        [("m".to_string(), 1), ("k".to_string(), len as i64), ("n".to_string(), 1)].into(),
                    )
                };
                let reference = interp::run(&g, &dims, &args).expect("runs");
                assert_eq!(reference[0].at(0), Scalar::Float(want), "the interpreter: {t} {} length {len}", k.name);
                let compiled = tk_toolchain::compile(dev.as_ref(), &k.name, &g, &options).expect("compiles");
                let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
                let got = compiled.run(dev.as_ref(), &host, &HashMap::new()).expect("runs");
                assert_eq!(
                    got[0].get_f64(0).to_bits(),
                    want.to_bits(),
                    "{device}: {t} {} length {len} ({options:?}) gave {} where one fma per step gives {want}",
                    k.name,
                    got[0].get_f64(0)
                );
            }
        }
    }
}

/// `scatter_add` on many colliding rows, in the default mode (atomic adds on GPUs) and in the
/// deterministic one: integer results are exact, float ones within the bound of a reordered sum
/// (docs/numerics.md) by default and bit-identical to the interpreter when deterministic.
pub fn scatter_add_is_exact_for_integers(device: &str) {
    let dev = open_device(device).expect("device");
    let src = "kernel hist<nb>(ids: i32[n]) -> i32[nb] { scatter_add(ones(n, dtype: i32), ids, nb) }\n\
               kernel hist64<nb>(ids: i64[n]) -> i64[nb] { scatter_add(ones(n, dtype: i64) * 3000000000, ids, nb) }\n\
               kernel counts<nb>(v: u32[n, d], ids: i32[n]) -> u32[nb, d] { scatter_add(v, ids, nb) }\n\
               kernel wsum<nb>(w: f32[n, d], ids: i64[n]) -> f32[nb, d] { scatter_add(w, ids, nb) }\n\
               kernel wsum64<nb>(w: f64[n], ids: i32[n]) -> f64[nb] { scatter_add(w, ids, nb) }\n";
    let c = tk_compiler::check_source(Path::new("scatter.tk"), src.to_string());
    assert!(c.is_ok(), "{}", c.render_plain());
    let mut rng = Rng(0x5CA7);
    for k in &c.kernels {
        let g = tk_ir::graph::passes::prepare(&tk_compiler::lower::lower_kernel(k).expect("lowers"));
        for (deterministic, options) in [(false, Default::default()), (true, exact())] {
            let compiled = tk_toolchain::compile(dev.as_ref(), &k.name, &g, &options).expect("compiles");
            for (n, d, nb) in [(0, 1, 3), (1, 1, 1), (7, 3, 5), (300, 1, 37), (1000, 2, 4)] {
                let dims: HashMap<String, i64> =
                    [("n".to_string(), n), ("d".to_string(), d), ("nb".to_string(), nb)].into();
                let mut args = random_args(&g, &dims, &mut rng);
                // Ids in -2..nb + 2: most rows collide, a few fall outside and are dropped.
                let last = args.len() - 1;
                args[last] = Array::from_fn(args[last].dtype, vec![n as usize], |_| {
                    Scalar::Int((rng.next() % (nb as u64 + 4)) as i128 - 2)
                });
                let explicit: HashMap<String, i64> = [("nb".to_string(), nb)].into();
                let bound = interp::bind_dims(&g, &args, &explicit).expect("binds");
                let want = HostArray::from_interp(&interp::run(&g, &bound, &args).expect("runs")[0]);
                let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
                let mut got = compiled.run(dev.as_ref(), &host, &explicit).expect("runs");
                // Run twice more into one output array holding garbage: every run starts from
                // zero, whatever the array held.
                let q = dev.queue();
                let dargs: Vec<tk_runtime::DeviceArray> = host
                    .iter()
                    .map(|a| tk_runtime::DeviceArray::upload(dev.as_ref(), &q, a))
                    .collect::<Result<_, _>>()
                    .expect("uploads");
                let shapes: Vec<(DType, Vec<usize>)> = host.iter().map(|a| (a.dtype, a.shape.clone())).collect();
                let all = compiled.bind(&shapes, &explicit).expect("binds");
                let garbage =
                    HostArray::from_interp(&Array::from_fn(want.dtype, want.shape.clone(), |_| Scalar::Int(7)));
                let out = tk_runtime::DeviceArray::upload(dev.as_ref(), &q, &garbage).expect("uploads");
                for _ in 0..2 {
                    compiled.launch_into(dev.as_ref(), &q, &dargs, &all, std::slice::from_ref(&out)).expect("runs");
                }
                let again = out.download(dev.as_ref(), &q).expect("downloads");
                dev.synchronize(&q).expect("synchronizes");
                if deterministic || want.dtype.is_int() {
                    assert_eq!(
                        (0..want.len()).map(|i| again.get_f64(i).to_bits()).collect::<Vec<_>>(),
                        (0..want.len()).map(|i| got[0].get_f64(i).to_bits()).collect::<Vec<_>>(),
                        "{device}: {} n={n} d={d} nb={nb}: a run into an array that held other values",
                        k.name
                    );
                }
                got.push(again);
                // A reordered float sum of n terms is within n * eps * (the sum of magnitudes).
                let magnitudes: f64 = (0..host[0].len()).map(|i| host[0].get_f64(i).abs()).sum();
                for (i, o) in (0..want.len()).flat_map(|i| [(i, 0), (i, 1)]) {
                    let (a, b) = (want.get_f64(i), got[o].get_f64(i));
                    let tolerance = if !deterministic && want.dtype.is_float() {
                        let eps = if want.dtype == DType::F32 { 2f64.powi(-23) } else { 2f64.powi(-52) };
                        n as f64 * eps * magnitudes
                    } else {
                        0.0
                    };
                    // Integers compare exactly (|values| < 2^53); a reordered float sum that
                    // overflows (the inputs hold 1e30s and infinities) may end in either
                    // infinity or NaN.
                    let ok = a.to_bits() == b.to_bits()
                        || (a - b).abs() <= tolerance
                        || (tolerance > 0.0 && !a.is_finite() && !b.is_finite());
                    assert!(
                        ok,
                        "{device}: {} n={n} d={d} nb={nb} deterministic={deterministic}: element {i} is {b}, the interpreter says {a}",
                        k.name
                    );
                }
            }
        }
    }
}

/// Integer and float edge cases (division by zero, MIN / -1, shifts past the width, casts of
/// NaN, infinities and huge values) compute exactly what the interpreter computes, without
/// trapping, in every integer dtype, scalar and vectorised.
pub fn integer_and_cast_edge_cases_match_the_interpreter(device: &str) {
    let dev = open_device(device).expect("device");
    for t in ["i8", "i16", "i32", "i64", "u8", "u32"] {
        let src = format!(
            "kernel ops(a: {t}[n], b: {t}[n]) -> ({t}[n], {t}[n], {t}[n], {t}[n], {t}[n], {t}[n], {t}[n], {t}[n], bool[n]) {{\n\
             (a / b, a % b, a << b, a >> b, a * b, a - b, min(a, b), abs(a), a < b)\n}}\n\
             kernel casts(x: f32[n]) -> ({t}[n], {t}[n]) {{ (x as {t}, (x as f64 * 3.0) as {t}) }}\n\
             kernel back(a: {t}[n]) -> (f32[n], f64[n], f16[n], bool[n]) {{ (a as f32, a as f64, a as f16, a as bool) }}\n"
        );
        let c = tk_compiler::check_source(Path::new("edge.tk"), src);
        assert!(c.is_ok(), "{t}: {}", c.render_plain());
        let d = tk_ir::dtype::DType::parse(t).expect("dtype");
        let (lo, hi) = d.int_range().expect("int");
        let ints: Vec<i128> = vec![lo, lo + 1, -1, 0, 1, 2, 7, 8, 31, 32, 63, 64, hi - 1, hi, 5, -3, 100, -100]
            .into_iter()
            .map(|v| tk_ir::graph::interp::wrap(v, d))
            .collect();
        let floats = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e30,
            -1e30,
            2147483648.0,
            -2147483649.0,
            255.5,
            -0.9,
            0.9,
            -128.5,
            65535.7,
            4294967296.0,
            -0.0,
            3.5,
            -7.25,
            1e10,
            -1e10,
        ];
        for k in &c.kernels {
            let g = tk_ir::graph::passes::prepare(&tk_compiler::lower::lower_kernel(k).expect("lowers"));
            let compiled = tk_toolchain::compile(dev.as_ref(), &k.name, &g, &exact()).expect("compiles");
            let n = ints.len();
            let args: Vec<Array> = g
                .inputs
                .iter()
                .enumerate()
                .map(|(ai, (_, dt, _))| {
                    Array::from_fn(*dt, vec![n * n], |i| {
                        let (x, y) = (i / n, i % n);
                        if dt.is_float() {
                            Scalar::Float(floats[(x + y) % floats.len()])
                        } else {
                            Scalar::Int(ints[if ai == 0 { x } else { y }])
                        }
                    })
                })
                .collect();
            let dims: HashMap<String, i64> = [("n".to_string(), (n * n) as i64)].into();
            let want = interp::run(&g, &dims, &args).expect("runs");
            let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
            let got = compiled.run(dev.as_ref(), &host, &HashMap::new()).expect("runs");
            let got: Vec<Array> = got.iter().map(HostArray::to_interp).collect();
            for (o, (w, g)) in want.iter().zip(&got).enumerate() {
                assert_eq!(format!("{w:?}"), format!("{g:?}"), "{device}: {t} {} output {o}", k.name);
            }
        }
    }
    float_min_max_edge_cases(device, dev.as_ref());
}

/// min and max of every pair of zeros of both signs, NaN, infinities and ones, elementwise and
/// as reductions in either order: -0 < +0 and NaN wins, as docs/numerics.md says. Products too:
/// 0 x -1 is -0 (LLVM 19 loses that sign in f16 on AMD; tk puts it back).
fn float_min_max_edge_cases(device: &str, dev: &dyn tk_runtime::Device) {
    let vals = [-0.0, 0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0, -1.0];
    let pairs: Vec<(f64, f64)> = vals.iter().flat_map(|&a| vals.iter().map(move |&b| (a, b))).collect();
    for t in ["f32", "f64", "f16", "bf16"] {
        let src = format!(
            "kernel pairwise(a: {t}[n], b: {t}[n]) -> ({t}[n], {t}[n], {t}[n], {t}[n], {t}[n]) {{\n\
             (min(a, b), max(a, b), a * b, a * 0.5, where(a > b, a, b) * b)\n}}\n\
             kernel reduced(x: {t}[n, 2]) -> ({t}[n], {t}[n]) {{ (min(x, axis: 1), max(x, axis: 1)) }}\n"
        );
        let c = tk_compiler::check_source(Path::new("minmax.tk"), src);
        assert!(c.is_ok(), "{t}: {}", c.render_plain());
        let d = tk_ir::dtype::DType::parse(t).expect("dtype");
        let n = pairs.len();
        for k in &c.kernels {
            let g = tk_ir::graph::passes::prepare(&tk_compiler::lower::lower_kernel(k).expect("lowers"));
            let compiled = tk_toolchain::compile(dev, &k.name, &g, &exact()).expect("compiles");
            let args: Vec<Array> = if k.name == "pairwise" {
                vec![
                    Array::from_fn(d, vec![n], |i| Scalar::Float(pairs[i].0)),
                    Array::from_fn(d, vec![n], |i| Scalar::Float(pairs[i].1)),
                ]
            } else {
                vec![Array::from_fn(d, vec![n, 2], |i| {
                    Scalar::Float(if i % 2 == 0 { pairs[i / 2].0 } else { pairs[i / 2].1 })
                })]
            };
            let dims: HashMap<String, i64> = [("n".to_string(), n as i64)].into();
            let want = interp::run(&g, &dims, &args).expect("runs");
            let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
            let got = compiled.run(dev, &host, &HashMap::new()).expect("runs");
            let got: Vec<Array> = got.iter().map(HostArray::to_interp).collect();
            for (o, (w, g)) in want.iter().zip(&got).enumerate() {
                assert_eq!(format!("{w:?}"), format!("{g:?}"), "{device}: {t} {} output {o}", k.name);
            }
            // The reference itself, on the zeros.
            let zero = |a: &Array, i: usize| match a.at(i) {
                Scalar::Float(x) => x.to_bits(),
                _ => panic!("a float"),
            };
            // Pair 1 is (-0, +0), pair 7 is (+0, -0): min is -0 and max is +0 for both.
            for p in [1, 7] {
                assert_eq!(zero(&want[0], p), (-0.0f64).to_bits(), "{t} {}: min of pair {p}", k.name);
                assert_eq!(zero(&want[1], p), 0.0f64.to_bits(), "{t} {}: max of pair {p}", k.name);
            }
        }
    }
}

/// Every example under the default options (split reductions included) agrees with the
/// interpreter: exactly for integers and bools, within a reduction-reordering tolerance for
/// floats. Sizes are not multiples of the split width.
pub fn default_options_match_the_interpreter_within_tolerance(device: &str, sizes: &[i64], min_runs: usize) {
    options_match_the_interpreter_within_tolerance(device, &Default::default(), sizes, min_runs)
}

/// Every example compiled with `opts` matches the interpreter within tolerance on `device`.
pub fn options_match_the_interpreter_within_tolerance(
    device: &str,
    opts: &tk_toolchain::target::Options,
    sizes: &[i64],
    min_runs: usize,
) {
    let dev = open_device(device).expect("device");
    let mut rng = Rng(0xD1F);
    let mut ran = 0;
    for f in examples() {
        for (name, g) in compile(&f) {
            let compiled = tk_toolchain::compile(dev.as_ref(), &name, &g, opts)
                .unwrap_or_else(|e| panic!("{}::{name} with {opts:?}: {e}", f.display()));
            for &size in sizes {
                let dims: HashMap<String, i64> = symbols(&g).into_iter().map(|s| (s, size)).collect();
                let elems: i64 = g
                    .inputs
                    .iter()
                    .map(|(_, _, s)| s.iter().map(|d| d.eval(&|x| dims.get(x).copied()).unwrap_or(-1)).product::<i64>())
                    .sum();
                if !(0..=50_000).contains(&elems) {
                    continue;
                }
                let args = random_args(&g, &dims, &mut rng);
                let explicit: HashMap<String, i64> = g.dims.iter().map(|d| (d.clone(), dims[d])).collect();
                let want = interp::bind_dims(&g, &args, &explicit).ok().and_then(|b| interp::run(&g, &b, &args).ok());
                let host: Vec<HostArray> = args.iter().map(HostArray::from_interp).collect();
                let got = compiled.run(dev.as_ref(), &host, &explicit).ok();
                let (Some(w), Some(o)) = (want, got) else { continue };
                for (wa, oa) in w.iter().zip(&o) {
                    let wa = HostArray::from_interp(wa);
                    for i in 0..wa.len() {
                        let (a, b) = (wa.get_f64(i), oa.get_f64(i));
                        // A reordered float sum whose partial sums overflow (the inputs hold
                        // 1e30s and infinities) may end in either infinity or in NaN.
                        let ok = a == b
                            || (a.is_nan() && b.is_nan())
                            || (wa.dtype.is_float() && !a.is_finite() && !b.is_finite())
                            || (wa.dtype.is_float() && (a - b).abs() <= 1e-3 * a.abs().max(1.0));
                        assert!(ok, "{}::{name} size {size} element {i}: {device} {b}, interpreter {a}", f.display());
                    }
                }
                ran += 1;
            }
        }
    }
    assert!(ran >= min_runs, "only {ran} runs");
}

/// `tk run` on `device` and on the CPU write `.npy` files that agree under the numeric
/// contract, for every entry of every example.
pub fn tk_run_agrees_with_the_cpu_for_every_example(tk_bin: &str, device: &str) {
    let tk =
        |args: &[&str]| std::process::Command::new(tk_bin).args(args).env("NO_COLOR", "1").output().expect("tk runs");
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let tmp_dir = |name: &str| {
        let d = std::env::temp_dir().join(format!("tk-run-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    };
    let mut compared = 0;
    let mut failures = Vec::new();
    for f in examples() {
        let src = std::fs::read_to_string(&f).expect("readable");
        let c = tk_compiler::check_source(&f, src);
        for k in &c.kernels {
            let g = tk_compiler::lower::lower_kernel(k).expect("lowers");
            let mut args: Vec<String> = vec!["run".into(), f.display().to_string(), "-k".into(), k.name.clone()];
            for (name, d, shape) in &g.inputs {
                let v = if shape.is_empty() {
                    match d {
                        tk_ir::dtype::DType::Bool => "true".to_string(),
                        d if d.is_float() => "1.5".to_string(),
                        _ => "3".to_string(),
                    }
                } else {
                    format!("rand:{}", vec!["7"; shape.len()].join("x"))
                };
                args.extend(["--arg".into(), format!("{name}={v}")]);
            }
            for s in &g.dims {
                args.extend(["--dim".into(), format!("{s}=3")]);
            }
            let mut outs = Vec::new();
            for dev in ["cpu", device] {
                // Named after the compared device too: tests of several devices run at once in
                // one process, and their CPU runs must not share (and delete) a directory.
                let dir = tmp_dir(&format!(
                    "{}-{}-vs-{}-{}",
                    k.name,
                    dev.replace(':', "_"),
                    device.replace([':', '/', '='], "_"),
                    compared
                ));
                let mut a = args.clone();
                a.extend(["--device".into(), dev.into(), "--out".into(), dir.display().to_string()]);
                let refs: Vec<&str> = a.iter().map(String::as_str).collect();
                let o = tk(&refs);
                outs.push((o.status.code(), dir, err(&o)));
            }
            let ((c1, d1, e1), (c2, d2, e2)) = (&outs[0], &outs[1]);
            if c1 != c2 {
                failures.push(format!("{}::{}: cpu exit {c1:?} ({e1}), sim exit {c2:?} ({e2})", f.display(), k.name));
                continue;
            }
            if *c1 != Some(0) {
                // Both failed (an index error on random data): the same error.
                let code = |e: &str| e.split(']').next().unwrap_or("").to_string();
                if code(e1) != code(e2) {
                    failures.push(format!("{}::{}: cpu `{e1}` vs sim `{e2}`", f.display(), k.name));
                }
                continue;
            }
            for (i, (oname, id)) in g.outputs.iter().enumerate() {
                let dt = g.node(*id).dtype;
                // `tk run --out` names files NAME.npy, or out.npy / out{i}.npy for unnamed outputs.
                let Some(file) = [format!("{oname}.npy"), "out.npy".to_string(), format!("out{i}.npy")]
                    .into_iter()
                    .find(|n| d1.join(n).is_file())
                else {
                    failures.push(format!("{}::{}: no file for output {i} `{oname}`", f.display(), k.name));
                    continue;
                };
                let (a, b) = (HostArray::read_npy(&d1.join(&file), dt), HostArray::read_npy(&d2.join(&file), dt));
                let (Ok(a), Ok(b)) = (a, b) else {
                    failures.push(format!("{}::{}: unreadable {file}", f.display(), k.name));
                    continue;
                };
                for i in 0..a.len() {
                    let (x, y) = (a.get_f64(i), b.get_f64(i));
                    let ok = x == y
                        || (x.is_nan() && y.is_nan())
                        || (a.dtype.is_float() && (x - y).abs() <= 1e-3 * x.abs().max(1.0));
                    if !ok {
                        failures.push(format!("{}::{} {file}[{i}]: cpu {x}, sim {y}", f.display(), k.name));
                        break;
                    }
                }
            }
            compared += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(compared >= 40, "only {compared} entries compared");
}

/// Every device with a `device_suite!` that runs everywhere. The ONNX harness (tests/onnx) runs
/// its cases on each and lists them in docs/conformance.md; each suite checks that its device is
/// listed here or in [`HARDWARE_SUITE_DEVICES`].
pub const SUITE_DEVICES: [&str; 6] = ["cpu", "sim:sm_86", "sim:gfx1100", "amd:sim", "sass:sm_86", "nv:sim"];

/// Devices whose suite runs at fewer sizes, without the ONNX cases: other architectures of a
/// device family whose full suite runs (the SASS emulator on sm_80 and sm_89), and the CPU's LLVM
/// tier (the same kernel IR as the CPU's Cranelift code, whose full suite runs).
pub const SPOT_SUITE_DEVICES: [&str; 3] = ["sass:sm_80", "sass:sm_89", "cpu,tier=llvm"];

/// Devices with a `device_suite!` that need hardware (an NVIDIA GPU and its driver): their suites
/// and the ONNX cases run where the hardware is and are skipped, saying so, elsewhere;
/// `TK_REQUIRE_GPU=1` (on GPU machines) makes a missing GPU a failure.
pub const HARDWARE_SUITE_DEVICES: [&str; 1] = ["cuda:0"];

/// Whether `device` can run here and this build can compile for it: the AMD devices need code
/// objects (the `amdgpu` feature and ld.lld), and in CI (`CI=true`) their absence fails the test;
/// the CUDA devices need an NVIDIA driver, and without one (as on every CI machine) the test is
/// skipped unless `TK_REQUIRE_GPU` is set. A skip prints the reason.
pub fn device_ready(device: &str, test: &str) -> bool {
    if device.starts_with("cuda") {
        if tk_runtime::devices::cuda::driver_present() {
            return true;
        }
        assert!(
            std::env::var_os("TK_REQUIRE_GPU").is_none(),
            "{test} on {device}: TK_REQUIRE_GPU is set but there is no NVIDIA driver"
        );
        eprintln!("skipping {test} on {device}: no NVIDIA driver here");
        return false;
    }
    if device.starts_with("sass:") || device.starts_with("nv:") {
        // The SASS emulator runs ptxas's cubins (behind the simulated NVIDIA GPU for `nv:sim`).
        return match tk_toolchain::tools::ptxas::find(tk_toolchain::tools::ptxas::Tool::Ptxas) {
            Ok(_) => true,
            Err(e) => {
                assert!(
                    std::env::var("CI").map_or(true, |v| v != "true"),
                    "{test} on {device}: ptxas is required in CI: {e}"
                );
                eprintln!("skipping {test} on {device}: {e}");
                false
            }
        };
    }
    if !(device.starts_with("amd:") || device.contains("gfx")) {
        return true;
    }
    match tk_toolchain::tools::lld::available() {
        Ok(()) => true,
        Err(e) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "{test} on {device}: AMD code objects are required in CI: {e}"
            );
            eprintln!("skipping {test} on {device}: {e}");
            false
        }
    }
}

/// The differential suite of a device, as a module of tests: every example against the reference
/// interpreter bit for bit at awkward sizes, the integer, cast and min/max edge cases, the
/// default options (split reductions) within tolerance, and random programs. A new device gets
/// it with one line (`device_suite!(name, "device");`, after `#[macro_use] mod common;`), plus its
/// name in [`SUITE_DEVICES`] for the ONNX cases (a test of the suite checks that it is there).
/// The long form sets the example sizes and runs, and the sizes and runs of the tolerance test.
macro_rules! device_suite {
    ($module:ident, $device:expr) => {
        device_suite!($module, $device, sizes: [0, 1, 2, 3, 5, 7, 13, 17], runs: 300, tolerance: [1, 5, 33], runs: 100);
    };
    ($module:ident, $device:expr, sizes: [$($s:expr),*], runs: $runs:expr, tolerance: [$($t:expr),*], runs: $truns:expr) => {
        mod $module {
            use super::common;

            const DEVICE: &str = {
                // The device may be named by a constant of the file that invokes the suite.
                #[allow(unused_imports)]
                use super::*;
                $device
            };

            fn ready(test: &str) -> bool {
                common::device_ready(DEVICE, test)
            }

            #[test]
            fn has_the_onnx_cases() {
                assert!(
                    common::SUITE_DEVICES.contains(&DEVICE)
                        || common::HARDWARE_SUITE_DEVICES.contains(&DEVICE)
                        || common::SPOT_SUITE_DEVICES.contains(&DEVICE),
                    "add {DEVICE} to common::SUITE_DEVICES (or HARDWARE_SUITE_DEVICES) so that the ONNX cases run on it"
                );
            }

            #[test]
            fn every_example_matches_the_interpreter() {
                if ready("every_example_matches_the_interpreter") {
                    common::every_example_matches_the_interpreter(DEVICE, &[$($s),*], $runs);
                }
            }

            #[test]
            fn integer_and_cast_edge_cases_match_the_interpreter() {
                if ready("integer_and_cast_edge_cases_match_the_interpreter") {
                    common::integer_and_cast_edge_cases_match_the_interpreter(DEVICE);
                }
            }

            #[test]
            fn contractions_round_once() {
                if ready("contractions_round_once") {
                    common::contractions_round_once(DEVICE);
                }
            }

            #[test]
            fn scatter_add_is_exact_for_integers() {
                if ready("scatter_add_is_exact_for_integers") {
                    common::scatter_add_is_exact_for_integers(DEVICE);
                }
            }

            #[test]
            fn default_options_match_the_interpreter_within_tolerance() {
                if ready("default_options_match_the_interpreter_within_tolerance") {
                    common::default_options_match_the_interpreter_within_tolerance(DEVICE, &[$($t),*], $truns);
                }
            }

            proptest::proptest! {
                #![proptest_config(common::random::config())]

                #[test]
                fn random_programs_match_the_interpreter(p in common::random::programs()) {
                    if ready("random_programs_match_the_interpreter") {
                        common::random::on(DEVICE, &p)?;
                    }
                }
            }
        }
    };
}

/// The instruction and label lines of a SASS listing (`nvdisasm -c`'s or `tk disasm`'s),
/// whitespace collapsed.
pub fn sass_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| (l.starts_with("/*") && l[2..].contains("*/")) || (l.starts_with(".L_x_") && l.ends_with(':')))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Decodes every word of every kernel of `cubin` (named `name`) into an instruction and
/// encodes it back: each word must come back bit for bit, control bits included. Pushes a
/// message per kernel that does not onto `failures` (the first word that differs, with its
/// text) and returns how many words it checked.
pub fn reencode(name: &str, cubin: &[u8], failures: &mut Vec<String>) -> usize {
    use tk_isa::sass::Inst;
    let c = match tk_abi::cubin::read(cubin) {
        Ok(c) => c,
        Err(e) => {
            failures.push(format!("{name}: {e}"));
            return 0;
        }
    };
    let mut words = 0;
    for k in &c.kernels {
        for (i, chunk) in k.code.chunks_exact(16).enumerate() {
            let w = u128::from_le_bytes(chunk.try_into().expect("16 bytes"));
            words += 1;
            let back = Inst::decode(w, c.sm).and_then(|inst| inst.encode());
            if back != Ok(w) {
                let text = tk_isa::sass::print(w, c.sm, (i * 16) as u64, &|t| Some(format!("{t:#x}")))
                    .map_or("(unknown)".to_string(), |t| t.to_string());
                failures.push(format!(
                    "{name}: {} /*{:04x}*/ {w:#034x} `{text}`: {}",
                    k.name,
                    i * 16,
                    match back {
                        Ok(b) => format!("encodes as {b:#034x}"),
                        Err(e) => e.to_string(),
                    }
                ));
                break;
            }
        }
    }
    words
}

/// `tk` (this build's binary) with the environment variables `env`, colours off.
pub fn tk_env(args: &[&str], env: &[(&str, &std::path::Path)]) -> std::process::Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_tk"));
    c.args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("tk runs")
}

/// A process's standard error.
pub fn err(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh temporary directory for this test process.
pub fn tmp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tk-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}
