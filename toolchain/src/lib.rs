//! tk-toolchain: everything that compiles.
//!
//! - [`Session`] ([`session`]): the one pipeline entry (source -> checked program -> graph ->
//!   prepared graph -> schedule -> kernel IR -> device code), used by the command line, the REPL,
//!   the `tk` library facade and tk-build.
//! - [`target`]: compile targets and their default knobs (from tk-abi).
//! - [`codegen`]: device code for a target or a device (Cranelift objects and the JIT, PTX and
//!   cubins, AMD code objects), and loading it onto a device.
//! - [`tools`]: the external tools (ptxas, nvdisasm, ld.lld, llvm-objdump).
//! - [`cache`]: the kernel cache of compiled CPU code.
//! - [`bundle`], [`aot`], [`clib`]: bundles, per-target build directories, static libraries.
//!
//! Devices only load the code made here (tk-runtime); the toolchain may use the runtime, never
//! the reverse.

pub mod aot;
pub mod bundle;
pub mod cache;
pub mod clib;
pub mod codegen;
pub mod emit;
pub mod session;
pub mod target;
pub mod tools;

pub use session::Session;

/// The build of tk: version, git commit, and a hash of the diff for dirty trees.
pub const BUILD_ID: &str = env!("TK_BUILD_ID");

/// Opens a device by name (`tk_runtime::open`) and checks that this toolchain can compile for it
/// as asked: a CPU whose tier is forced to LLVM (`TK_CPU_TIER=llvm`, `cpu,tier=llvm`) needs a
/// build with LLVM, else [`tk_runtime::RunError::Argument`] names the fix before anything
/// compiles.
pub fn open(name: &str) -> Result<std::sync::Arc<dyn tk_runtime::Device>, tk_runtime::RunError> {
    let dev = tk_runtime::open(name)?;
    if dev.cpu_tier() == Some(tk_runtime::devices::cpu::TierPolicy::Llvm) && !tk_codegen::llvm::cpu::AVAILABLE {
        return Err(cache::no_llvm());
    }
    Ok(dev)
}

/// Compiles an entry's prepared graph for `dev` with `opts` (a [`Session`] with those options).
pub fn compile(
    dev: &dyn tk_runtime::Device,
    name: &str,
    g: &tk_ir::graph::Graph,
    opts: &target::Options,
) -> Result<tk_runtime::Compiled, tk_runtime::RunError> {
    Session::with_options(opts.clone()).compile(dev, name, g)
}
