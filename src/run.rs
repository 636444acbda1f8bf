//! `tk run`: compile one entry of a file for a device and run it on arguments from the command
//! line (`.npy` files, scalar literals, or random arrays).

use crate::exit;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tk_compiler::codespan_reporting::term::termcolor::{ColorChoice, StandardStream};
use tk_compiler::diag::{Code, Diag};
use tk_ir::dims::Dim;
use tk_ir::dtype::DType;
use tk_ir::graph::{Graph, Op, Scalar};
use tk_ir::kernel::Knobs;
use tk_runtime::array::{Random, rng};
use tk_runtime::{Device, HostArray, RunError};

pub struct RunOpts {
    pub file: PathBuf,
    pub entry: Option<String>,
    pub args: Vec<String>,
    pub dims: Vec<String>,
    pub out: Option<PathBuf>,
    pub device: String,
    pub bench: Option<usize>,
    pub time: bool,
    pub seed: u64,
    pub knobs: Option<Knobs>,
    pub deterministic: bool,
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Renders a run-time error, pointing at the source when it has a location.
pub fn report(e: &RunError, sources: &tk_compiler::diag::SourceMap, choice: ColorChoice) -> u8 {
    let (code, label, status) = match e {
        RunError::Argument { .. } => (Code::ArgMismatch, "", exit::USER),
        RunError::OutOfRange { .. } => (Code::IndexOutOfRange, "this index", exit::USER),
        RunError::Dimension { .. } => (Code::BadRuntimeDim, "here", exit::USER),
        RunError::Fault { .. } => (Code::DeviceFault, "in the device kernel computing this", exit::RUNTIME),
        RunError::File { .. } => (Code::ArgMismatch, "", exit::USER),
        RunError::MissingTool { .. } => {
            eprintln!("error: {e}");
            return exit::MISSING_TOOL;
        }
        RunError::Compile { .. } | RunError::Device { .. } | RunError::Tool { .. } => {
            eprintln!("error: {e}");
            return exit::RUNTIME;
        }
    };
    match e.loc() {
        Some(loc) if sources.files.get(loc.file as usize).is_ok() && loc.hi > 0 => {
            let d =
                Diag::new(code, loc.file as usize, tk_compiler::ast::Span { lo: loc.lo, hi: loc.hi }, e.to_string())
                    .label(label);
            let mut err = StandardStream::stderr(choice);
            let _ = d.render_to(sources, &mut err);
        }
        _ => eprintln!("error[{}]: {e}", code.as_str()),
    }
    status
}

/// A run-time error as plain text, with its source snippet when it has a location.
pub fn render_plain(e: &RunError, sources: &tk_compiler::diag::SourceMap) -> String {
    let code = match e {
        RunError::OutOfRange { .. } => Code::IndexOutOfRange,
        RunError::Dimension { .. } => Code::BadRuntimeDim,
        RunError::Fault { .. } => Code::DeviceFault,
        RunError::Argument { .. } | RunError::File { .. } => Code::ArgMismatch,
        RunError::Compile { .. } | RunError::Device { .. } | RunError::Tool { .. } | RunError::MissingTool { .. } => {
            return format!("error: {e}\n");
        }
    };
    match e.loc() {
        Some(loc) if sources.files.get(loc.file as usize).is_ok() && loc.hi > 0 => {
            Diag::new(code, loc.file as usize, tk_compiler::ast::Span { lo: loc.lo, hi: loc.hi }, e.to_string())
                .render_plain(sources)
        }
        _ => format!("error[{}]: {e}\n", code.as_str()),
    }
}

/// Parses `NAME=VALUE`.
fn split_kv<'a>(s: &'a str, what: &str) -> Result<(&'a str, &'a str), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or(format!("--{what} `{s}`: expected NAME=VALUE"))
}

/// `1024x1024` -> [1024, 1024]; empty -> a scalar.
fn parse_dims(s: &str) -> Result<Vec<usize>, String> {
    if s.is_empty() {
        return Ok(vec![]);
    }
    s.split(['x', 'X', ','])
        .map(|p| p.trim().parse::<usize>().map_err(|_| format!("`{p}` is not a size (write sizes like 4x8)")))
        .collect()
}

fn parse_scalar(v: &str, d: DType) -> Option<Scalar> {
    if d == DType::Bool {
        return match v {
            "true" => Some(Scalar::Bool(true)),
            "false" => Some(Scalar::Bool(false)),
            _ => None,
        };
    }
    if d.is_float() {
        return match v {
            "inf" => Some(Scalar::Float(f64::INFINITY)),
            "-inf" => Some(Scalar::Float(f64::NEG_INFINITY)),
            "nan" => Some(Scalar::Float(f64::NAN)),
            _ => v.parse::<f64>().ok().map(Scalar::Float),
        };
    }
    let i: i128 = v.parse().ok()?;
    let (lo, hi) = d.int_range()?;
    (lo..=hi).contains(&i).then_some(Scalar::Int(i))
}

/// One argument's value: a `.npy` file, `rand:DIMS`, `randn:DIMS` or a scalar literal.
pub fn parse_value(
    name: &str,
    v: &str,
    dtype: DType,
    shape: &[Dim],
    r: &mut tk_runtime::array::ChaCha8Rng,
) -> Result<HostArray, String> {
    let ty = || {
        let s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        format!("{dtype}[{}]", s.join(", "))
    };
    for (prefix, dist) in [("rand:", Random::Uniform), ("randn:", Random::Normal)] {
        if let Some(d) = v.strip_prefix(prefix) {
            let dims = parse_dims(d).map_err(|e| format!("argument `{name}`: {e}"))?;
            return Ok(HostArray::random(dtype, dims, dist, r));
        }
    }
    if v.ends_with(".npy") || Path::new(v).is_file() {
        return HostArray::read_npy(Path::new(v), dtype).map_err(|e| format!("argument `{name}`: {e}"));
    }
    match parse_scalar(v, dtype) {
        Some(s) if shape.is_empty() => Ok(HostArray::scalar(dtype, s)),
        Some(_) => Err(format!(
            "argument `{name}` is {}; a scalar fits only a rank-0 parameter: pass a .npy file or rand:DIMS",
            ty()
        )),
        None => Err(format!(
            "argument `{name}`: `{v}` is not a .npy file, rand:DIMS, randn:DIMS or a {dtype} literal (it is {})",
            ty()
        )),
    }
}

/// Floating-point operations of one run of a graph (arithmetic on floats, reductions counting
/// one operation per element; loop bodies are not counted).
fn flops(g: &Graph, dims: &HashMap<String, i64>) -> f64 {
    let count = |shape: &[Dim]| -> f64 {
        shape.iter().map(|d| d.eval(&|s| dims.get(s).copied()).unwrap_or(0).max(0) as f64).product()
    };
    let mut total = 0.0;
    for id in g.topo() {
        let n = g.node(id);
        let float = n.dtype.is_float() || n.args.first().is_some_and(|a| g.node(*a).dtype.is_float());
        if !float {
            continue;
        }
        total += match &n.op {
            Op::Unary(_) | Op::Binary(_) => count(&n.shape),
            Op::Fma => 2.0 * count(&n.shape),
            Op::Reduce { .. } | Op::Scan { .. } => count(&g.node(n.args[0]).shape),
            _ => 0.0,
        };
    }
    total
}

fn fmt_value(a: &HostArray, i: usize) -> String {
    match a.get(i) {
        Scalar::Float(v) if a.dtype == DType::F64 => format!("{v}"),
        Scalar::Float(v) => format!("{}", v as f32),
        Scalar::Int(v) => format!("{v}"),
        Scalar::Bool(b) => format!("{b}"),
    }
}

/// A short summary of an output: type, first values, min/max/mean.
pub fn summary(name: &str, a: &HostArray) -> String {
    let mut s = String::new();
    let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
    let _ = writeln!(s, "{name}: {}[{}]", a.dtype, dims.join(", "));
    let n = a.len();
    let shown: Vec<String> = (0..n.min(8)).map(|i| fmt_value(a, i)).collect();
    let _ = writeln!(s, "  [{}{}]", shown.join(", "), if n > 8 { ", ..." } else { "" });
    if n > 0 {
        if a.dtype == DType::Bool {
            let t = (0..n).filter(|i| a.get_f64(*i) != 0.0).count();
            let _ = writeln!(s, "  true: {t} of {n}");
        } else {
            let (mut lo, mut hi, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
            let mut nan = 0;
            for i in 0..n {
                let v = a.get_f64(i);
                if v.is_nan() {
                    nan += 1;
                    continue;
                }
                lo = lo.min(v);
                hi = hi.max(v);
                sum += v;
            }
            let mean = sum / (n - nan).max(1) as f64;
            let f = |v: f64| if a.dtype.is_float() { format!("{}", v as f32) } else { format!("{v}") };
            let _ = write!(s, "  min {}  max {}  mean {}", f(lo), f(hi), mean as f32);
            if nan > 0 {
                let _ = write!(s, "  ({nan} NaN)");
            }
            s.push('\n');
        }
    }
    s
}

pub fn run(o: RunOpts, choice: ColorChoice) -> u8 {
    let checked = match crate::check_one(&o.file, choice) {
        Ok(c) => c,
        Err(c) => return c,
    };
    let names: Vec<&str> = checked.kernels.iter().map(|k| k.name.as_str()).collect();
    let kernel = match (&o.entry, checked.kernels.as_slice()) {
        (Some(e), ks) => match ks.iter().find(|k| &k.name == e) {
            Some(k) => k,
            None => {
                eprintln!("error: {} has no kernel `{e}`; its kernels are: {}", o.file.display(), names.join(", "));
                return exit::USER;
            }
        },
        (None, [k]) => k,
        (None, []) => {
            eprintln!("error: {} defines no kernel to run", o.file.display());
            return exit::USER;
        }
        (None, _) => {
            eprintln!(
                "error: {} has {} kernels ({}); choose one with -k ENTRY",
                o.file.display(),
                names.len(),
                names.join(", ")
            );
            return exit::USER;
        }
    };
    let dev = match tk_runtime::open(&o.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            // A name that is no device is the user's error; a device that cannot be used here
            // (no driver) is a device failure.
            return if matches!(e, RunError::Argument { .. }) { exit::USER } else { exit::RUNTIME };
        }
    };
    let t0 = Instant::now();
    let session = tk_toolchain::Session::with_options(tk_toolchain::target::Options {
        knobs: o.knobs.clone(),
        deterministic: o.deterministic,
        split: None,
    });
    let g = match session.prepared(kernel) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {}: {e}", o.file.display());
            return exit::USER;
        }
    };
    let t_lower = t0.elapsed();
    let compiled = match session.compile(dev.as_ref(), &kernel.name, &g) {
        Ok(c) => c,
        Err(e) => return report(&e, &checked.program.sources, choice),
    };
    // Arguments, in parameter order (so `--seed` gives the same values whatever the order of
    // the --arg flags).
    let mut given: HashMap<&str, &str> = HashMap::new();
    for a in &o.args {
        match split_kv(a, "arg") {
            Ok((k, v)) => {
                if !g.inputs.iter().any(|i| i.0 == k) {
                    let ps: Vec<&str> = g.inputs.iter().map(|i| i.0.as_str()).collect();
                    eprintln!(
                        "error[E0500]: `{}` has no parameter `{k}`; its parameters are: {}",
                        kernel.name,
                        ps.join(", ")
                    );
                    return exit::USER;
                }
                if given.insert(k, v).is_some() {
                    eprintln!("error[E0500]: argument `{k}` is given twice");
                    return exit::USER;
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USER;
            }
        }
    }
    let mut r = rng(o.seed);
    let mut args = Vec::new();
    for (name, dtype, shape) in &g.inputs {
        let Some(v) = given.get(name.as_str()) else {
            let s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            eprintln!(
                "error[E0500]: missing argument `{name}` ({dtype}[{}]): pass --arg {name}=VALUE, where VALUE is a .npy \
                 file, a scalar, rand:DIMS or randn:DIMS (e.g. rand:4x8)",
                s.join(", ")
            );
            return exit::USER;
        };
        match parse_value(name, v, *dtype, shape, &mut r) {
            Ok(a) => args.push(a),
            Err(e) => {
                eprintln!("error[E0500]: {e}");
                return exit::USER;
            }
        }
    }
    let mut explicit = HashMap::new();
    for d in &o.dims {
        match split_kv(d, "dim").and_then(|(k, v)| {
            v.parse::<i64>().map(|n| (k, n)).map_err(|_| format!("--dim {d}: `{v}` is not an integer"))
        }) {
            Ok((k, n)) => {
                explicit.insert(k.to_string(), n);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return exit::USER;
            }
        }
    }
    let t1 = Instant::now();
    let outs = match compiled.run(dev.as_ref(), &args, &explicit) {
        Ok(o) => o,
        Err(e) => return report(&e, &checked.program.sources, choice),
    };
    let t_run = t1.elapsed();
    let out_names: Vec<String> = compiled.outputs().into_iter().map(|o| o.0).collect();
    match &o.out {
        Some(dir) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("error: cannot create {}: {e}", dir.display());
                return exit::USER;
            }
            for (n, a) in out_names.iter().zip(&outs) {
                let p = dir.join(format!("{n}.npy"));
                if let Err(e) = a.write_npy(&p) {
                    eprintln!("error: {e}");
                    return exit::USER;
                }
                println!("wrote {}", p.display());
            }
        }
        None => {
            for (n, a) in out_names.iter().zip(&outs) {
                print!("{}", summary(n, a));
            }
        }
    }
    if o.time {
        let ct = &compiled.times;
        println!(
            "time: parse {}, check {}, lower {}, schedule {}, codegen {} ({} device kernel{}), run {}",
            ms(checked.parse_time),
            ms(checked.check_time),
            ms(t_lower + ct.lower),
            ms(ct.schedule),
            ms(ct.codegen),
            compiled.kernels.len(),
            if compiled.kernels.len() == 1 { "" } else { "s" },
            ms(t_run)
        );
    }
    if let Some(n) = o.bench {
        return bench(dev.as_ref(), &compiled, &g, &args, &explicit, n.max(1), &checked.program.sources, choice);
    }
    exit::OK
}

#[allow(clippy::too_many_arguments)]
fn bench(
    dev: &dyn Device,
    c: &tk_runtime::Compiled,
    g: &Graph,
    args: &[HostArray],
    explicit: &HashMap<String, i64>,
    n: usize,
    sources: &tk_compiler::diag::SourceMap,
    choice: ColorChoice,
) -> u8 {
    let q = dev.queue();
    let run = || -> Result<(Duration, Vec<tk_runtime::DeviceArray>), RunError> {
        let dargs: Vec<tk_runtime::DeviceArray> =
            args.iter().map(|a| tk_runtime::DeviceArray::upload(dev, &q, a)).collect::<Result<_, _>>()?;
        dev.synchronize(&q)?;
        let shapes: Vec<(DType, Vec<usize>)> = args.iter().map(|a| (a.dtype, a.shape.clone())).collect();
        let dims = c.bind(&shapes, explicit)?;
        let mut times = Vec::with_capacity(n);
        // One warm-up run, then n timed runs with the arguments and outputs resident on the
        // device (outputs are allocated once, as numpy's `out=` arrays are).
        let outs = c.launch(dev, &q, &dargs, &dims)?;
        for i in 0..=n {
            let t = Instant::now();
            c.launch_into(dev, &q, &dargs, &dims, &outs)?;
            dev.synchronize(&q)?;
            if i > 0 {
                times.push(t.elapsed());
            }
        }
        times.sort();
        Ok((times[times.len() / 2], outs))
    };
    let (median, outs) = match run() {
        Ok(x) => x,
        Err(e) => return report(&e, sources, choice),
    };
    let bytes: usize =
        args.iter().map(|a| a.data.len()).sum::<usize>() + outs.iter().map(|o| o.buffer.bytes()).sum::<usize>();
    let shapes: Vec<(DType, Vec<usize>)> = args.iter().map(|a| (a.dtype, a.shape.clone())).collect();
    let dims = c.bind(&shapes, explicit).unwrap_or_default();
    let secs = median.as_secs_f64().max(1e-12);
    println!(
        "bench: {n} runs, median {}, {:.2} GB/s, {:.2} GFLOP/s",
        ms(median),
        bytes as f64 / secs / 1e9,
        flops(g, &dims) / secs / 1e9
    );
    exit::OK
}
