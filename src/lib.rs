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

pub use tk_runtime::api::{Arg, AsArg, Bundle, Device, Entry};
pub use tk_runtime::{DType, DeviceArray, HostArray, RunError};

/// A `.tk` program with errors: the diagnostics, rendered as the command line shows them.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CompileError(pub String);

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

/// Checks a `.tk` file (its `use` paths resolve relative to it).
///
/// ```
/// let p = tk::compile_file("examples/softmax.tk").unwrap();
/// assert!(p.entries().contains(&"softmax_rows"));
/// ```
pub fn compile_file(path: impl AsRef<Path>) -> Result<Program, CompileError> {
    let path = path.as_ref();
    let src = std::fs::read_to_string(path).map_err(|e| CompileError(format!("{}: {e}", path.display())))?;
    compile(path, src)
}

fn compile(path: &Path, src: String) -> Result<Program, CompileError> {
    let session = tk_toolchain::Session::new();
    let checked = session.check(path, src);
    if !checked.is_ok() {
        return Err(CompileError(checked.render_plain()));
    }
    let mut graphs = HashMap::new();
    let mut names = Vec::new();
    for k in &checked.kernels {
        let g = session.prepared(k).map_err(|e| CompileError(e.to_string()))?;
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
