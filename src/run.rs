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
use tk_ir::graph::{Graph, Op, ReduceOp, Scalar};
use tk_ir::kernel::KnobOverrides;
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
    pub knobs: Option<KnobOverrides>,
    pub deterministic: bool,
    pub print: Print,
}

/// How results print: `short` elides the middle of large arrays as numpy does, `full` prints
/// every element.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Print {
    Short,
    Full,
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// What an interrupted run prints.
pub const INTERRUPTED: &str = "interrupted: the run stopped before it finished; nothing was assigned";

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
        RunError::Interrupted => {
            eprintln!("{INTERRUPTED}");
            return exit::INTERRUPTED;
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
        RunError::Interrupted => return format!("{INTERRUPTED}\n"),
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

/// A nested list literal, `[[1, 2], [3, 4]]`: its shape and its elements in row-major order
/// (each still text), or what is wrong with it.
fn parse_list(v: &str) -> Result<(Vec<usize>, Vec<String>), String> {
    /// The list starting at `s[*at]` (a `[`) at nesting `depth`; `leaf` is the depth of the
    /// scalars once one is seen (every one must be at the same depth).
    fn items<'a>(
        s: &'a str,
        at: &mut usize,
        depth: usize,
        shape: &mut Vec<Option<usize>>,
        leaf: &mut Option<usize>,
        out: &mut Vec<&'a str>,
    ) -> Result<(), String> {
        if leaf.is_some_and(|l| l < depth) {
            return Err("rows of different depths".into());
        }
        if depth >= 32 {
            return Err("more than 32 nested lists".into());
        }
        // At `[`.
        *at += 1;
        if shape.len() <= depth {
            shape.push(None);
        }
        let mut count = 0;
        loop {
            let rest = &s[*at..];
            let skipped = rest.len() - rest.trim_start().len();
            *at += skipped;
            match s[*at..].chars().next() {
                None => return Err("a `[` without its `]`".into()),
                Some(']') if count == 0 => {
                    *at += 1;
                    break;
                }
                Some('[') => items(s, at, depth + 1, shape, leaf, out)?,
                Some(_) => {
                    let end = s[*at..].find([',', ']']).map_or(s.len(), |k| *at + k);
                    let tok = s[*at..end].trim();
                    if tok.is_empty() || tok.contains('[') {
                        return Err(format!("an empty or malformed element at byte {}", *at));
                    }
                    if *leaf.get_or_insert(depth) != depth {
                        return Err("rows of different depths".into());
                    }
                    out.push(tok);
                    *at = end;
                }
            }
            count += 1;
            let rest = &s[*at..];
            *at += rest.len() - rest.trim_start().len();
            match s[*at..].chars().next() {
                Some(',') => *at += 1,
                Some(']') => {
                    *at += 1;
                    break;
                }
                _ => return Err(format!("expected `,` or `]` at byte {}", *at)),
            }
        }
        match shape[depth] {
            Some(n) if n != count => Err(format!("ragged rows: {n} and {count} elements")),
            _ => {
                shape[depth] = Some(count);
                Ok(())
            }
        }
    }
    let s = v.trim();
    let (mut at, mut shape, mut out) = (0usize, Vec::new(), Vec::new());
    items(s, &mut at, 0, &mut shape, &mut None, &mut out)?;
    if at != s.len() {
        return Err(format!("text after the closing `]`: `{}`", &s[at..]));
    }
    let shape: Vec<usize> = shape.into_iter().map(|d| d.unwrap_or(0)).collect();
    if shape.iter().product::<usize>() != out.len() {
        return Err("rows of different depths".into());
    }
    Ok((shape, out.into_iter().map(str::to_string).collect()))
}

/// One argument's value: a `.npy` file, `rand:DIMS`, `randn:DIMS`, `randint:LO:HI:DIMS`, a
/// list literal or a scalar literal.
pub fn parse_value(
    name: &str,
    v: &str,
    dtype: DType,
    shape: &[Dim],
    r: &mut tk_runtime::array::ChaCha8Rng,
) -> Result<HostArray, ArgError> {
    let ty = || {
        let s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        format!("{dtype}[{}]", s.join(", "))
    };
    if let Some(rest) = v.strip_prefix("randint:") {
        let form = || usage(format!("argument `{name}`: `{v}`: expected randint:LO:HI:DIMS, e.g. randint:0:1000:64"));
        let mut parts = rest.splitn(3, ':');
        let (Some(lo), Some(hi), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(form());
        };
        let (Ok(lo), Ok(hi)) = (lo.trim().parse::<i64>(), hi.trim().parse::<i64>()) else {
            return Err(form());
        };
        let dims = parse_dims(d).map_err(|e| usage(format!("argument `{name}`: {e}")))?;
        return HostArray::try_randint(dtype, lo, hi, dims, r)
            .map_err(|e| usage(format!("argument `{name}` ({}): {e}", ty())));
    }
    for (prefix, dist) in [("rand:", Random::Uniform), ("randn:", Random::Normal)] {
        if let Some(d) = v.strip_prefix(prefix) {
            let dims = parse_dims(d).map_err(|e| usage(format!("argument `{name}`: {e}")))?;
            return HostArray::try_random(dtype, dims, dist, r)
                .map_err(|e| ArgError { code: exit::USER, message: format!("argument `{name}`: {e}") });
        }
    }
    if v.trim_start().starts_with('[') {
        let (dims, elems) = parse_list(v).map_err(|e| {
            let shown: String = v.chars().take(60).collect();
            let more = if shown.len() < v.len() { "..." } else { "" };
            usage(format!("argument `{name}`: `{shown}{more}`: {e}"))
        })?;
        let mut h = HostArray::try_zeros(dtype, dims).map_err(|e| usage(format!("argument `{name}`: {e}")))?;
        for (i, e) in elems.iter().enumerate() {
            let s = parse_scalar(e, dtype).ok_or_else(|| {
                usage(format!("argument `{name}`: element {i}, `{e}`, is not a {dtype} value (it is {})", ty()))
            })?;
            h.set(i, s);
        }
        return Ok(h);
    }
    if v.ends_with(".npy") || Path::new(v).is_file() {
        return HostArray::read_npy(Path::new(v), dtype)
            .map_err(|e| ArgError { code: exit::USER, message: format!("argument `{name}`: {e}") });
    }
    match parse_scalar(v, dtype) {
        Some(s) if shape.is_empty() => Ok(HostArray::scalar(dtype, s)),
        Some(_) => Err(usage(format!(
            "argument `{name}` is {}; a scalar fits only a rank-0 parameter: pass a .npy file or rand:DIMS",
            ty()
        ))),
        None => Err(usage(format!(
            "argument `{name}`: `{v}` is not a .npy file, rand:DIMS, randn:DIMS, randint:LO:HI:DIMS, a list like [1, 2, 3] or a {dtype} literal (it is {})",
            ty()
        ))),
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
            // A contraction multiplies and adds once per element.
            Op::Reduce { op: ReduceOp::Dot, .. } => 2.0 * count(&g.node(n.args[0]).shape),
            Op::Reduce { .. } | Op::Scan { .. } | Op::ScatterAdd { .. } => count(&g.node(n.args[0]).shape),
            _ => 0.0,
        };
    }
    total
}

fn fmt_value(a: &HostArray, i: usize) -> String {
    match a.get(i) {
        // numpy's spelling (Rust's is `NaN`).
        Scalar::Float(v) if v.is_nan() => "nan".to_string(),
        Scalar::Float(v) if a.dtype == DType::F64 => format!("{v}"),
        Scalar::Float(v) => format!("{}", v as f32),
        Scalar::Int(v) => format!("{v}"),
        Scalar::Bool(b) => format!("{b}"),
    }
}

/// Arrays with more elements than this print with the middle of each axis elided (numpy's
/// default threshold), showing [`EDGE`] items at each end.
const THRESHOLD: usize = 1000;
const EDGE: usize = 3;
/// Lines of values wrap at this width, as numpy's do.
const LINE_WIDTH: usize = 75;

/// The values of an array laid out by shape, as numpy prints them: a matrix as rows, a scalar
/// as one value, and with `short` the middle of each long axis elided with `...`.
pub fn format_array(a: &HostArray, print: Print) -> String {
    if a.shape.is_empty() {
        return fmt_value(a, 0);
    }
    let elide = print == Print::Short && a.len() > THRESHOLD;
    // The indices shown along an axis of length n (None: the `...` marker).
    let shown = |n: usize| -> Vec<Option<usize>> {
        if elide && n > 2 * EDGE {
            (0..EDGE).map(Some).chain([None]).chain((n - EDGE..n).map(Some)).collect()
        } else {
            (0..n).map(Some).collect()
        }
    };
    // Every shown value, so that columns align.
    let mut strides = vec![1usize; a.shape.len()];
    for k in (0..a.shape.len() - 1).rev() {
        strides[k] = strides[k + 1] * a.shape[k + 1];
    }
    fn walk(
        a: &HostArray,
        axis: usize,
        at: usize,
        strides: &[usize],
        shown: &dyn Fn(usize) -> Vec<Option<usize>>,
        out: &mut Vec<String>,
    ) {
        for i in shown(a.shape[axis]).into_iter().flatten() {
            if axis + 1 == a.shape.len() {
                out.push(fmt_value(a, at + i));
            } else {
                walk(a, axis + 1, at + i * strides[axis], strides, shown, out);
            }
        }
    }
    let mut all = Vec::new();
    walk(a, 0, 0, &strides, &shown, &mut all);
    let width = all.iter().map(|v| v.len()).max().unwrap_or(0);
    fn block(
        a: &HostArray,
        axis: usize,
        at: usize,
        strides: &[usize],
        shown: &dyn Fn(usize) -> Vec<Option<usize>>,
        width: usize,
    ) -> String {
        let rank = a.shape.len();
        let items: Vec<String> = shown(a.shape[axis])
            .into_iter()
            .map(|i| match i {
                None => "...".to_string(),
                Some(i) if axis + 1 == rank => format!("{:>width$}", fmt_value(a, at + i)),
                Some(i) => block(a, axis + 1, at + i * strides[axis], strides, shown, width),
            })
            .collect();
        if axis + 1 == rank {
            // One line, wrapped at numpy's 75 columns under the bracket.
            let mut lines = vec![String::new()];
            for (k, it) in items.iter().enumerate() {
                let piece = if k + 1 < items.len() { format!("{it},") } else { it.clone() };
                let cur = lines.last_mut().expect("a line");
                if !cur.is_empty() && axis + 2 + cur.len() + piece.len() > LINE_WIDTH {
                    lines.push(piece);
                    continue;
                }
                if !cur.is_empty() {
                    cur.push(' ');
                }
                cur.push_str(&piece);
            }
            return format!("[{}]", lines.join(&format!("\n{}", " ".repeat(axis + 1))));
        }
        let sep = {
            // Rows on their own lines, indented under the bracket; blank lines between blocks
            // of higher rank, as numpy prints them.
            format!(",{}{}", "\n".repeat(rank - axis - 1), " ".repeat(axis + 1))
        };
        format!("[{}]", items.join(&sep))
    }
    block(a, 0, 0, &strides, &shown, width)
}

/// An output: its name and type, its values by shape (see [`format_array`]), and for arrays of
/// several elements min, max and mean (or the count of true values).
pub fn show(name: &str, a: &HostArray, print: Print) -> String {
    let mut s = String::new();
    let dims: Vec<String> = a.shape.iter().map(|d| d.to_string()).collect();
    let _ = writeln!(s, "{name}: {}[{}]", a.dtype, dims.join(", "));
    for line in format_array(a, print).lines() {
        if line.is_empty() {
            s.push('\n');
        } else {
            let _ = writeln!(s, "  {line}");
        }
    }
    let n = a.len();
    if n > 1 {
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

/// A spinner with the elapsed time on stderr while long work runs (a compile, a run on a
/// simulator, a build), which becomes a bar with the percentage done once the work reports its
/// progress ([`tk_abi::progress`]): drawn only on a terminal, nothing when stderr is piped or
/// redirected.
pub fn progress(message: String) -> indicatif::ProgressBar {
    tk_abi::progress::reset();
    let bar = indicatif::ProgressBar::with_draw_target(Some(1000), indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(250));
    // Once the work reports its steps (device kernels, blocks, files and targets), the spinner
    // becomes a bar.
    if !bar.is_hidden() {
        let b = bar.clone();
        std::thread::spawn(move || {
            let mut styled = false;
            while !b.is_finished() {
                if let Some(f) = tk_abi::progress::fraction() {
                    if !styled {
                        if let Ok(style) = indicatif::ProgressStyle::with_template(
                            "{spinner} {msg} [{bar:30}] {percent:>3}% ({elapsed})",
                        ) {
                            b.set_style(style.progress_chars("=> "));
                        }
                        styled = true;
                    }
                    b.set_position((f * 1000.0) as u64);
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        });
    }
    bar
}

/// A bad argument: a usage error (the command line's shape) or an error in the data it names.
pub struct ArgError {
    pub code: u8,
    pub message: String,
}

fn usage(message: String) -> ArgError {
    ArgError { code: exit::USAGE, message }
}

/// Whether `path` is a tk bundle (by its magic bytes).
fn is_bundle(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 8];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == tk_runtime::bundle::MAGIC
}

/// The `--dim NAME=N` values: integers, at least 0, each name once (usage errors otherwise).
fn explicit_dims(dims: &[String]) -> Result<HashMap<String, i64>, String> {
    let mut explicit = HashMap::new();
    for d in dims {
        let (k, v) = split_kv(d, "dim")?;
        let n = v.parse::<i64>().map_err(|_| format!("--dim {d}: `{v}` is not an integer"))?;
        if n < 0 {
            return Err(format!("--dim {d}: a dimension is a size, at least 0"));
        }
        if explicit.insert(k.to_string(), n).is_some() {
            return Err(format!("--dim {k} is given twice"));
        }
    }
    Ok(explicit)
}

/// The arguments of `g`'s parameters from `--arg NAME=VALUE` flags, in parameter order (so
/// `--seed` gives the same values whatever the order of the flags).
fn arguments(name: &str, g: &Graph, given_args: &[String], seed: u64) -> Result<Vec<HostArray>, ArgError> {
    let mut given: HashMap<&str, &str> = HashMap::new();
    for a in given_args {
        let (k, v) = split_kv(a, "arg").map_err(usage)?;
        if !g.inputs.iter().any(|i| i.0 == k) {
            let ps: Vec<&str> = g.inputs.iter().map(|i| i.0.as_str()).collect();
            return Err(usage(format!("`{name}` has no parameter `{k}`; its parameters are: {}", ps.join(", "))));
        }
        if given.insert(k, v).is_some() {
            return Err(usage(format!("argument `{k}` is given twice")));
        }
    }
    let mut r = rng(seed);
    let mut args = Vec::new();
    for (pname, dtype, shape) in &g.inputs {
        let Some(v) = given.get(pname.as_str()) else {
            let s: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            return Err(usage(format!(
                "missing argument `{pname}` ({dtype}[{}]): pass --arg {pname}=VALUE, where VALUE is a .npy file, a \
                 scalar, rand:DIMS, randn:DIMS or randint:LO:HI:DIMS (e.g. rand:4x8)",
                s.join(", ")
            )));
        };
        args.push(parse_value(pname, v, *dtype, shape, &mut r)?);
    }
    Ok(args)
}

pub fn run(o: RunOpts, choice: ColorChoice) -> u8 {
    if is_bundle(&o.file) {
        eprintln!(
            "error: {} is a tk bundle (made by `tk build --emit bundle`); `tk run` compiles .tk source. `tk inspect {}` \
             shows its entries; programs run them through the bundle API (tk_runtime::bundle::Bundle, see \
             docs/architecture.md)",
            o.file.display(),
            o.file.display()
        );
        return exit::USAGE;
    }
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
                return exit::USAGE;
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
            return exit::USAGE;
        }
    };
    // The command line is checked before anything is compiled.
    let explicit = match explicit_dims(&o.dims) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::USAGE;
        }
    };
    let dev = match tk_toolchain::open(&o.device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            // A name that is no device is a usage error; missing firmware or tools exit 4; a
            // device that cannot be used here (no driver) is a device failure.
            return match e {
                RunError::Argument { .. } => exit::USAGE,
                RunError::MissingTool { .. } => exit::MISSING_TOOL,
                _ => exit::RUNTIME,
            };
        }
    };
    crate::warn_knobs(o.knobs.as_ref(), dev.compile_target());
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
    let stats = &tk_toolchain::cache::KernelCache::global().stats;
    let hits = |s: &tk_toolchain::cache::Stats| {
        (
            s.memory_hits.load(std::sync::atomic::Ordering::Relaxed),
            s.disk_hits.load(std::sync::atomic::Ordering::Relaxed),
        )
    };
    let before = hits(stats);
    let spinner = progress(format!("compiling `{}` for {}", kernel.name, o.device));
    let compiled = session.compile(dev.as_ref(), &kernel.name, &g);
    spinner.finish_and_clear();
    let compiled = match compiled {
        Ok(c) => c,
        Err(e) => return report(&e, &checked.program.sources, choice),
    };
    let after = hits(stats);
    let cached = if after.0 > before.0 {
        " (cache hit: memory)"
    } else if after.1 > before.1 {
        " (cache hit: disk)"
    } else {
        ""
    };
    let t_args = Instant::now();
    let args = match arguments(&kernel.name, &g, &o.args, o.seed) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error[E0500]: {}", e.message);
            return e.code;
        }
    };
    let t_args = t_args.elapsed();
    let t1 = Instant::now();
    let spinner = progress(format!("running `{}` on {}", kernel.name, o.device));
    let outs = compiled.run(dev.as_ref(), &args, &explicit);
    spinner.finish_and_clear();
    let outs = match outs {
        Ok(o) => o,
        Err(e) => return report(&e, &checked.program.sources, choice),
    };
    let t_run = t1.elapsed();
    let t_out = Instant::now();
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
                outln!("wrote {}", p.display());
            }
        }
        None => {
            for (n, a) in out_names.iter().zip(&outs) {
                out!("{}", show(n, a, o.print));
            }
        }
    }
    let t_out = t_out.elapsed();
    if o.time {
        let ct = &compiled.times;
        outln!(
            "time: parse {}, check {}, lower {}, schedule {}, codegen {}{cached} ({} device kernel{}), arguments {}, \
             run {}, output {}; total {}",
            ms(checked.parse_time),
            ms(checked.check_time),
            ms(t_lower + ct.lower),
            ms(ct.schedule),
            ms(ct.codegen),
            compiled.kernels.len(),
            if compiled.kernels.len() == 1 { "" } else { "s" },
            ms(t_args),
            ms(t_run),
            ms(t_out),
            ms(checked.parse_time + checked.check_time + t0.elapsed())
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
    let run = || -> Result<(Vec<Duration>, Vec<tk_runtime::DeviceArray>), RunError> {
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
        Ok((times, outs))
    };
    let (times, outs) = match run() {
        Ok(x) => x,
        Err(e) => return report(&e, sources, choice),
    };
    let median = times[times.len() / 2];
    let bytes: usize =
        args.iter().map(|a| a.data.len()).sum::<usize>() + outs.iter().map(|o| o.buffer.bytes()).sum::<usize>();
    let shapes: Vec<(DType, Vec<usize>)> = args.iter().map(|a| (a.dtype, a.shape.clone())).collect();
    let dims = c.bind(&shapes, explicit).unwrap_or_default();
    let secs = median.as_secs_f64().max(1e-12);
    outln!(
        "bench: {n} run{}: min {}, median {}, max {}; at the median {:.2} GB/s, {:.2} GFLOP/s",
        if n == 1 { "" } else { "s" },
        ms(times[0]),
        ms(median),
        ms(times[times.len() - 1]),
        bytes as f64 / secs / 1e9,
        flops(g, &dims) / secs / 1e9
    );
    exit::OK
}
