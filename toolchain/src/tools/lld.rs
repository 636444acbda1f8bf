//! AMD code objects: LLVM's relocatable object linked into a loadable code object (`.hsaco`)
//! by ld.lld, read back for the kernel descriptors and the AMDGPU metadata note, and checked
//! against the fixed kernel ABI (docs/architecture.md).
//!
//! The tools: ld.lld is found through `TK_LLD`, then `PATH` as `ld.lld-19` or `ld.lld`;
//! llvm-objdump (for `tk emit --stage gcn`) through `TK_OBJDUMP`, then `llvm-objdump-19` or
//! `llvm-objdump`. `scripts/setup` installs both (Debian's lld-19 and llvm-19).

use crate::tools::{tempdir, write};
use std::path::PathBuf;
use std::process::Command;
use tk_codegen::llvm;
use tk_runtime::RunError;

/// An LLVM command-line tool.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    Lld,
    Objdump,
}

impl Tool {
    fn names(self) -> [&'static str; 2] {
        match self {
            Tool::Lld => ["ld.lld-19", "ld.lld"],
            Tool::Objdump => ["llvm-objdump-19", "llvm-objdump"],
        }
    }
    fn env(self) -> &'static str {
        match self {
            Tool::Lld => "TK_LLD",
            Tool::Objdump => "TK_OBJDUMP",
        }
    }
}

/// Finds a tool, or says how to install it.
pub fn find(tool: Tool) -> Result<PathBuf, RunError> {
    let [name, _] = tool.names();
    if let Some(p) = std::env::var_os(tool.env()).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(RunError::MissingTool {
            tool: name.into(),
            message: format!(
                "{} is set to `{}`, which is not a file: point it at {name}, or unset it to search PATH",
                tool.env(),
                p.display()
            ),
        });
    }
    if let Some(path) = std::env::var_os("PATH") {
        for n in tool.names() {
            for dir in std::env::split_paths(&path) {
                let p = dir.join(n);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
    }
    let pkg = match tool {
        Tool::Lld => "lld-19",
        Tool::Objdump => "llvm-19",
    };
    Err(RunError::MissingTool {
        tool: name.into(),
        message: format!(
            "`{name}` was not found (looked at ${} and PATH). Run `scripts/setup` in the tk source tree (on Debian and \
             Ubuntu: `apt-get install {pkg}`; with Homebrew: `brew install llvm lld`), or set {} to the binary",
            tool.env(),
            tool.env()
        ),
    })
}

/// The relocatable object of a module, compiled by LLVM 19 (the `amdgpu` feature).
#[cfg(feature = "amdgpu")]
fn llvm_object(m: &llvm::Module) -> Result<Vec<u8>, RunError> {
    llvm::object(m).map_err(|message| RunError::Compile { message, loc: Default::default() })
}

#[cfg(not(feature = "amdgpu"))]
fn llvm_object(_m: &llvm::Module) -> Result<Vec<u8>, RunError> {
    Err(no_llvm())
}

/// Whether this build of tk can make AMD code objects: the `amdgpu` feature (LLVM 19) and
/// ld.lld.
pub fn available() -> Result<(), RunError> {
    if !cfg!(feature = "amdgpu") {
        return Err(no_llvm());
    }
    find(Tool::Lld).map(|_| ())
}

fn no_llvm() -> RunError {
    RunError::MissingTool {
        tool: "LLVM 19".into(),
        message: "this tk was built without the `amdgpu` feature, which compiles AMD code with LLVM 19: run \
                  `scripts/setup`, then build tk with `cargo build --features amdgpu`"
            .into(),
    }
}

/// Links a relocatable object into a code object with ld.lld.
pub fn link(obj: &[u8]) -> Result<Vec<u8>, RunError> {
    let lld = find(Tool::Lld)?;
    let dir = tempdir()?;
    let (o, out) = (dir.path.join("k.o"), dir.path.join("k.hsaco"));
    write(&o, obj)?;
    let r =
        Command::new(&lld).arg("-shared").arg("-o").arg(&out).arg(&o).output().map_err(|e| RunError::Tool {
            tool: "ld.lld".into(),
            message: format!("running {}: {e}", lld.display()),
        })?;
    if !r.status.success() {
        return Err(RunError::Tool {
            tool: "ld.lld".into(),
            message: format!("linking the AMD code object failed:\n{}", String::from_utf8_lossy(&r.stderr)),
        });
    }
    std::fs::read(&out)
        .map_err(|e| RunError::Tool { tool: "ld.lld".into(), message: format!("reading its output: {e}") })
}

pub use tk_abi::amd::{Descriptor, KernelDesc};

/// A built code object and what it holds.
pub struct CodeObject {
    pub hsaco: Vec<u8>,
    pub kernels: Vec<KernelDesc>,
}

/// Compiles a module into a code object and checks every kernel against the ABI.
pub fn code_object(m: &llvm::Module) -> Result<CodeObject, RunError> {
    // Find the tools before the (slower) LLVM compilation.
    available()?;
    let obj = llvm_object(m)?;
    let hsaco = link(&obj)?;
    let bad = |message: String| RunError::Compile { message, loc: Default::default() };
    let kernels = tk_abi::amd::read_metadata(&hsaco)
        .map_err(|e| bad(format!("the code object LLVM made for {}: {e}", m.target)))?;
    for k in &kernels {
        k.descriptor.check_abi(&k.name).map_err(bad)?;
        if k.scratch_bytes > 0 {
            return Err(bad(format!(
                "kernel `{}` needs {} bytes of scratch per work-item, which tk's kernel ABI does not provide",
                k.name, k.scratch_bytes
            )));
        }
    }
    Ok(CodeObject { hsaco, kernels })
}

/// The RDNA3 disassembly of a code object, from llvm-objdump.
pub fn disassemble(hsaco: &[u8], target: llvm::Target) -> Result<String, RunError> {
    let objdump = find(Tool::Objdump)?;
    let dir = tempdir()?;
    let f = dir.path.join("k.hsaco");
    write(&f, hsaco)?;
    let o = Command::new(&objdump).arg(format!("--mcpu={}", target.name)).arg("-d").arg(&f).output().map_err(|e| {
        RunError::Tool { tool: "llvm-objdump".into(), message: format!("running {}: {e}", objdump.display()) }
    })?;
    if !o.status.success() {
        return Err(RunError::Tool {
            tool: "llvm-objdump".into(),
            message: String::from_utf8_lossy(&o.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}
