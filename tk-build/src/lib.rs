//! Compiles a crate's `.tk` kernels at build time, from its `build.rs`, so that the crate runs
//! them with the tk runtime alone and no compilation at run time.
//!
//! `build.rs`:
//!
//! ```no_run
//! // in fn main() of build.rs:
//! tk_build::Build::new().file("kernels/stats.tk").compile("kernels").unwrap_or_else(|e| panic!("{e}"));
//! ```
//!
//! This writes `$OUT_DIR/kernels.tkb`, a bundle holding every entry for every CPU platform (and
//! any GPU target added with [`Build::target`]), and `$OUT_DIR/kernels.rs`, one Rust function per
//! entry. The crate includes it and calls the entries like functions:
//!
//! ```ignore
//! mod kernels {
//!     include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
//! }
//! let dev = tk_runtime::open("cpu")?;
//! let y = kernels::softmax_rows(dev.as_ref(), &x)?;
//! ```
//!
//! The crate itself depends on `tk-driver` with `default-features = false` (the runtime only).
//! Each wrapper checks its arguments' dtypes and ranks and returns a typed
//! [`tk_runtime::RunError`]; the runtime then checks every dimension against the signature.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// An error of the build: a `.tk` file with errors (the diagnostics, rendered), or a failure to
/// compile or write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read it: {message}")]
    Read { path: String, message: String },
    #[error("{0}")]
    Diagnostics(String),
    #[error("{0}")]
    Build(#[from] tk_runtime::RunError),
    #[error("{0}")]
    Setup(String),
}

/// A build of `.tk` files into a bundle and Rust wrappers.
#[derive(Clone, Debug)]
pub struct Build {
    files: Vec<PathBuf>,
    targets: Vec<String>,
    deterministic: bool,
    out_dir: Option<PathBuf>,
}

impl Default for Build {
    fn default() -> Build {
        Build::new()
    }
}

impl Build {
    /// A build for the CPU (every platform a bundle supports).
    pub fn new() -> Build {
        Build { files: Vec::new(), targets: vec!["cpu".into()], deterministic: false, out_dir: None }
    }
    /// Adds a `.tk` file (relative to the crate's root).
    pub fn file(&mut self, path: impl AsRef<Path>) -> &mut Build {
        self.files.push(path.as_ref().to_path_buf());
        self
    }
    /// Adds a GPU target (`sm_86`, `gfx1100`, ...) besides the CPU.
    pub fn target(&mut self, t: &str) -> &mut Build {
        if !self.targets.iter().any(|x| x == t) {
            self.targets.push(t.to_string());
        }
        self
    }
    /// Keeps every reduction in the reference order (results bit-identical to the interpreter).
    pub fn deterministic(&mut self, on: bool) -> &mut Build {
        self.deterministic = on;
        self
    }
    /// Writes into `dir` instead of `$OUT_DIR` (for use outside build scripts).
    pub fn out_dir(&mut self, dir: impl AsRef<Path>) -> &mut Build {
        self.out_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Compiles the files into `<module>.tkb` and `<module>.rs` in the output directory, and
    /// tells Cargo to rerun the build when a source changes.
    pub fn compile(&self, module: &str) -> Result<(), Error> {
        let out = match &self.out_dir {
            Some(d) => d.clone(),
            None => PathBuf::from(
                std::env::var_os("OUT_DIR")
                    .ok_or_else(|| Error::Setup("OUT_DIR is not set: call this from build.rs".into()))?,
            ),
        };
        let targets: Vec<tk_toolchain::target::Target> =
            self.targets.iter().map(|t| t.parse().map_err(Error::Setup)).collect::<Result<_, _>>()?;
        let opts = tk_toolchain::target::Options { knobs: None, deterministic: self.deterministic, split: None };
        let session = tk_toolchain::Session::with_options(opts.clone());
        let mut entries: Vec<tk_toolchain::bundle::Entry> = Vec::new();
        let mut sigs = Vec::new();
        for f in &self.files {
            println!("cargo:rerun-if-changed={}", f.display());
            let src = std::fs::read_to_string(f)
                .map_err(|e| Error::Read { path: f.display().to_string(), message: e.to_string() })?;
            let checked = session.check(f, src);
            if !checked.is_ok() {
                return Err(Error::Diagnostics(checked.render_plain()));
            }
            for k in &checked.kernels {
                let g = session.prepared(k).map_err(|e| Error::Diagnostics(format!("{}: {e}", f.display())))?;
                if entries.iter().any(|e| e.name == k.name) {
                    return Err(Error::Setup(format!("two entries are named `{}`", k.name)));
                }
                sigs.push((f.display().to_string(), k.name.clone(), g.clone()));
                entries.push(tk_toolchain::bundle::Entry {
                    name: k.name.clone(),
                    source: f.display().to_string(),
                    graph: g,
                });
            }
        }
        let bundle = out.join(format!("{module}.tkb"));
        tk_toolchain::bundle::build(&entries, &targets, &opts, &bundle)?;
        let rs = wrappers(module, &sigs);
        std::fs::write(out.join(format!("{module}.rs")), rs)
            .map_err(|e| Error::Setup(format!("writing {module}.rs: {e}")))?;
        Ok(())
    }
}

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "box", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false",
    "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override",
    "priv", "pub", "ref", "return", "static", "struct", "super", "trait", "true", "try", "type", "typeof", "unsafe",
    "unsized", "use", "virtual", "where", "while", "yield",
];

fn ident(n: &str) -> String {
    if RUST_KEYWORDS.contains(&n) { format!("r#{n}") } else { n.to_string() }
}

fn dtype_path(d: tk_ir::dtype::DType) -> String {
    format!("tk_runtime::DType::{d:?}")
}

/// The Rust wrappers of a bundle's entries.
fn wrappers(module: &str, sigs: &[(String, String, tk_ir::graph::Graph)]) -> String {
    let mut s = String::new();
    let _ =
        writeln!(s, "// @generated by tk-build {} from the .tk files below; do not edit.", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(
        s,
        r#"
#[allow(unused_imports)]
use std::collections::HashMap;

/// The bundle holding every entry's code.
pub static BUNDLE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/{module}.tkb"));

fn bundle() -> Result<&'static tk_runtime::bundle::Bundle, tk_runtime::RunError> {{
    static B: std::sync::OnceLock<Result<tk_runtime::bundle::Bundle, tk_runtime::RunError>> = std::sync::OnceLock::new();
    B.get_or_init(|| tk_runtime::bundle::Bundle::from_bytes(BUNDLE.to_vec(), "{module}.tkb")).as_ref().map_err(|e| e.clone())
}}

type Loaded = std::sync::Arc<tk_runtime::Compiled>;

/// An entry loaded onto a device, once per device and entry.
fn entry(dev: &dyn tk_runtime::Device, name: &str) -> Result<Loaded, tk_runtime::RunError> {{
    static CACHE: std::sync::OnceLock<std::sync::Mutex<HashMap<(String, String), Loaded>>> = std::sync::OnceLock::new();
    let key = (dev.name(), name.to_string());
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().map_err(|_| poisoned())?.get(&key) {{
        return Ok(c.clone());
    }}
    let c = std::sync::Arc::new(bundle()?.load_entry(dev, name)?);
    cache.lock().map_err(|_| poisoned())?.insert(key, c.clone());
    Ok(c)
}}

fn poisoned() -> tk_runtime::RunError {{
    tk_runtime::RunError::Argument {{ message: "a lock of the kernel cache was poisoned".into() }}
}}

/// Checks an argument's dtype and rank before anything runs.
fn check(a: &tk_runtime::HostArray, entry: &str, name: &str, dtype: tk_runtime::DType, rank: usize) -> Result<(), tk_runtime::RunError> {{
    if a.dtype != dtype || a.shape.len() != rank {{
        return Err(tk_runtime::RunError::Argument {{
            message: format!("`{{entry}}` argument `{{name}}`: expected {{dtype}} of rank {{rank}}, got {{}} of shape {{:?}}", a.dtype, a.shape),
        }});
    }}
    Ok(())
}}"#
    );
    for (src, name, g) in sigs {
        let ty = |d: tk_ir::dtype::DType, shape: &[tk_ir::dims::Dim]| {
            let dims: Vec<String> = shape.iter().map(|x| x.to_string()).collect();
            if dims.is_empty() { d.name().to_string() } else { format!("{d}[{}]", dims.join(", ")) }
        };
        let ins: Vec<String> = g.inputs.iter().map(|(n, d, sh)| format!("{n}: {}", ty(*d, sh))).collect();
        let outs: Vec<String> = g
            .outputs
            .iter()
            .map(|(n, id)| {
                let node = g.node(*id);
                format!("{n}: {}", ty(node.dtype, &node.shape))
            })
            .collect();
        let dims = if g.dims.is_empty() { String::new() } else { format!("<{}>", g.dims.join(", ")) };
        let _ = writeln!(s, "\n/// `{name}{dims}({}) -> ({})`, from `{src}`.", ins.join(", "), outs.join(", "));
        if !g.dims.is_empty() {
            let _ = writeln!(s, "///\n/// The explicit dimensions {} are passed after the arrays.", g.dims.join(", "));
        }
        let mut params = vec!["dev: &dyn tk_runtime::Device".to_string()];
        params.extend(g.inputs.iter().map(|(n, _, _)| format!("{}: &tk_runtime::HostArray", ident(n))));
        params.extend(g.dims.iter().map(|d| format!("{}: i64", ident(d))));
        let ret = if g.outputs.len() == 1 {
            "tk_runtime::HostArray".to_string()
        } else {
            format!("({})", vec!["tk_runtime::HostArray"; g.outputs.len()].join(", "))
        };
        let _ = writeln!(s, "pub fn {}({}) -> Result<{ret}, tk_runtime::RunError> {{", ident(name), params.join(", "));
        for (n, d, sh) in &g.inputs {
            let _ = writeln!(s, "    check({}, {name:?}, {n:?}, {}, {})?;", ident(n), dtype_path(*d), sh.len());
        }
        let args: Vec<String> = g.inputs.iter().map(|(n, _, _)| ident(n)).collect();
        let explicit: Vec<String> = g.dims.iter().map(|d| format!("({d:?}.to_string(), {})", ident(d))).collect();
        let _ =
            writeln!(s, "    let explicit: HashMap<String, i64> = [{}].into_iter().collect();", explicit.join(", "));
        let _ = writeln!(
            s,
            "    let mut outs = entry(dev, {name:?})?.run_refs(dev, &[{}], &explicit)?.into_iter();",
            args.join(", ")
        );
        let take = "outs.next().ok_or_else(|| tk_runtime::RunError::Argument { message: \"missing output\".into() })?";
        if g.outputs.len() == 1 {
            let _ = writeln!(
                s,
                "    outs.next().ok_or_else(|| tk_runtime::RunError::Argument {{ message: \"missing output\".into() }})"
            );
        } else {
            let parts: Vec<&str> = vec![take; g.outputs.len()];
            let _ = writeln!(s, "    Ok(({}))", parts.join(", "));
        }
        let _ = writeln!(s, "}}");
    }
    s
}
