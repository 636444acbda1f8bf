//! tk as a library: compile `.tk` source just in time, or load a bundle, and call the entries
//! from Rust. Both give [`Entry`] values that are called the same way.
//!
//! ```
//! use tk::{AsArg, Device, HostArray};
//!
//! let program = tk::compile_str(
//!     "kernel saxpy(a: f32, x: f32[n], y: f32[n]) -> f32[n] { a * x + y }",
//! ).unwrap();
//! let dev = Device::open("cpu").unwrap();
//! let a = HostArray::from_slice(&[], &[2.0f32]).unwrap();
//! let x = HostArray::from_slice(&[3], &[1.0f32, 2.0, 3.0]).unwrap();
//! let y = HostArray::from_slice(&[3], &[0.5f32, 0.5, 0.5]).unwrap();
//! let out = program.entry("saxpy").unwrap().call(&dev, &[a.as_arg(), x.as_arg(), y.as_arg()]).unwrap();
//! assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![2.5, 4.5, 6.5]);
//! ```
//!
//! A program that only loads bundles can depend on the runtime crate alone (`tk-runtime`), whose
//! [`tk_runtime::api`] this crate re-exports.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

pub mod disasm;

pub use tk_runtime::api::{Arg, AsArg, Bundle, Device, Entry};
pub use tk_runtime::{DType, DeviceArray, HostArray, RunError};

/// A `.tk` program with errors: the diagnostics, rendered as the command line shows them, and
/// where the first one points.
#[derive(Debug, thiserror::Error)]
#[error("{rendered}")]
pub struct CompileError {
    /// Every diagnostic, rendered without color.
    pub rendered: String,
    /// The first error's code (`E0100`), when the error is a diagnostic.
    pub code: Option<String>,
    /// The file the first error is in (the name given to [`compile_named`], or the path).
    pub file: String,
    /// The 1-based line and column of the first error (0 when it has no place, such as an
    /// unreadable file).
    pub line: usize,
    pub column: usize,
}

impl CompileError {
    fn plain(file: &Path, message: String) -> CompileError {
        CompileError { rendered: message, code: None, file: file.display().to_string(), line: 0, column: 0 }
    }
}

/// A checked `.tk` program whose entries compile when first called on a device.
pub struct Program {
    graphs: Arc<HashMap<String, tk_ir::graph::Graph>>,
    names: Vec<String>,
}

struct Jit(Arc<HashMap<String, tk_ir::graph::Graph>>);

impl tk_runtime::api::Source for Jit {
    fn load(&self, dev: &Device, name: &str) -> Result<tk_runtime::Compiled, RunError> {
        let g = self.0.get(name).ok_or_else(|| RunError::Argument { message: format!("no entry `{name}`") })?;
        tk_toolchain::Session::new().compile(dev.raw(), name, g)
    }
}

/// Checks `.tk` source (named `<string>` in diagnostics).
///
/// ```
/// let e = tk::compile_str("kernel k(x: f32[n]) -> f32[n] { x + y }").err().unwrap();
/// assert!(e.to_string().contains("E0100"));
/// ```
pub fn compile_str(src: &str) -> Result<Program, CompileError> {
    compile(Path::new("<string>"), src.to_string())
}

/// Checks `.tk` source named `name` in diagnostics (its `use` paths resolve relative to the
/// current directory).
///
/// ```
/// let e = tk::compile_named("kernel k(x: f32[n]) -> f32[n] {\n    x + y\n}", "model.tk").err().unwrap();
/// assert_eq!((e.code.as_deref(), e.file.as_str(), e.line, e.column), (Some("E0100"), "model.tk", 2, 9));
/// ```
pub fn compile_named(src: &str, name: &str) -> Result<Program, CompileError> {
    compile(Path::new(name), src.to_string())
}

/// Checks a `.tk` file (its `use` paths resolve relative to it).
///
/// ```
/// let p = tk::compile_file("examples/softmax.tk").unwrap();
/// assert!(p.entries().contains(&"softmax_rows"));
/// ```
pub fn compile_file(path: impl AsRef<Path>) -> Result<Program, CompileError> {
    let path = path.as_ref();
    let src =
        std::fs::read_to_string(path).map_err(|e| CompileError::plain(path, format!("{}: {e}", path.display())))?;
    compile(path, src)
}

fn compile(path: &Path, src: String) -> Result<Program, CompileError> {
    let session = tk_toolchain::Session::new();
    let checked = session.check(path, src);
    if !checked.is_ok() {
        let first = checked.diags.first();
        let place = first.and_then(|d| d.location(&checked.program.sources));
        let (file, line, column) = place.unwrap_or_else(|| (path.display().to_string(), 0, 0));
        return Err(CompileError {
            rendered: checked.render_plain(),
            code: first.map(|d| d.code.as_str().to_string()),
            file,
            line,
            column,
        });
    }
    let mut graphs = HashMap::new();
    let mut names = Vec::new();
    for k in &checked.kernels {
        let g = session.prepared(k).map_err(|e| CompileError::plain(path, e.to_string()))?;
        graphs.insert(k.name.clone(), g);
        names.push(k.name.clone());
    }
    Ok(Program { graphs: Arc::new(graphs), names })
}

impl Program {
    /// The entry points, in source order.
    pub fn entries(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }
    /// Every entry's signature (as a bundle lists them), in source order.
    ///
    /// ```
    /// let p = tk::compile_str("kernel k<h>(x: f32[n]) -> f32[n, h] { [i, j] => x[i] }").unwrap();
    /// let s = &p.signatures()[0];
    /// assert_eq!(s.inputs, vec![("x".to_string(), "f32".to_string(), vec!["n".to_string()])]);
    /// assert_eq!((s.outputs[0].2.clone(), s.dims.clone()), (vec!["n".to_string(), "h".to_string()], vec!["h".to_string()]));
    /// ```
    pub fn signatures(&self) -> Vec<tk_runtime::bundle::Signature> {
        let dims = |s: &[tk_ir::dims::Dim]| s.iter().map(|d| d.to_string()).collect::<Vec<_>>();
        self.names
            .iter()
            .filter_map(|n| self.graphs.get(n).map(|g| (n, g)))
            .map(|(name, g)| tk_runtime::bundle::Signature {
                name: name.clone(),
                source: String::new(),
                inputs: g.inputs.iter().map(|(n, d, s)| (n.clone(), d.name().to_string(), dims(s))).collect(),
                outputs: g
                    .outputs
                    .iter()
                    .map(|(n, id)| (n.clone(), g.node(*id).dtype.name().to_string(), dims(&g.node(*id).shape)))
                    .collect(),
                dims: g.dims.clone(),
            })
            .collect()
    }
    /// The entry named `name`, compiled for each device the first time it is called there.
    ///
    /// ```
    /// let p = tk::compile_str("kernel id(x: i32[n]) -> i32[n] { x }").unwrap();
    /// assert!(p.entry("id").is_ok());
    /// assert!(p.entry("nope").is_err());
    /// ```
    pub fn entry(&self, name: &str) -> Result<Entry, RunError> {
        if !self.graphs.contains_key(name) {
            return Err(RunError::Argument {
                message: format!("no entry `{name}`; the entries are: {}", self.names.join(", ")),
            });
        }
        Ok(Entry::new(name, Arc::new(Jit(self.graphs.clone()))))
    }
}
