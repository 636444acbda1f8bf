//! The one pipeline entry: a [`Session`] takes source through every stage, source -> checked
//! program -> graph IR -> prepared graph -> schedule -> kernel IR -> device code, and hands each
//! stage out for printing (`tk emit`) or goes on to compile for a device. The command line, the
//! REPL, the `tk` library facade and tk-build all compile through it, so what `tk emit` prints is
//! what runs.

use crate::target::{Lowered, Options, Target};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;
use tk_compiler::Checked;
use tk_compiler::tast::CheckedKernel;
use tk_ir::graph::Graph;
use tk_runtime::device::{Device, Executable};
use tk_runtime::{Compiled, RunError};

/// A kernel the graph lowering cannot handle yet: which kernel and why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("kernel `{kernel}`: {message}")]
pub struct GraphError {
    pub kernel: String,
    pub message: String,
    /// Where in the source (default when unknown).
    pub loc: tk_ir::graph::Loc,
}

/// One entry ready to compile: its name, source file and prepared graph (what bundles and
/// libraries are built from).
pub use crate::bundle::Entry;

/// A compilation session: the options every lowering uses, and the kernel cache CPU code goes
/// through (the process's, configured from the environment, unless one is given).
#[derive(Clone, Default)]
pub struct Session {
    pub options: Options,
    cache: Option<Arc<crate::cache::KernelCache>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("options", &self.options).field("own_cache", &self.cache.is_some()).finish()
    }
}

impl Session {
    /// A session with the default options (the target's knobs, split reductions).
    pub fn new() -> Session {
        Session::default()
    }

    /// A session with the given options.
    pub fn with_options(options: Options) -> Session {
        Session { options, cache: None }
    }

    /// This session with its own kernel cache for CPU code.
    pub fn with_cache(mut self, cache: Arc<crate::cache::KernelCache>) -> Session {
        self.cache = Some(cache);
        self
    }

    /// Parses, loads and checks source named `path` (its `use` paths resolve relative to it).
    ///
    /// Every kernel the checker accepts is then lowered as far as the kernel IR (for the CPU, with
    /// this session's options), so that a construct the later stages cannot handle yet is an
    /// error here, E0411 at its place, and never a failure of `tk run` or `tk build` later.
    pub fn check(&self, path: &Path, src: String) -> Checked {
        let mut checked = tk_compiler::check_source(path, src);
        if !checked.is_ok() {
            return checked;
        }
        let mut diags = Vec::new();
        for k in &checked.kernels {
            let (message, loc) = match self.prepared(k) {
                Ok(g) => match crate::target::lower(&g, Target::Cpu, &self.options) {
                    Ok(_) => continue,
                    Err(e) => (e.message, e.loc),
                },
                Err(e) => (e.message, e.loc),
            };
            let known = loc.hi > 0 && checked.program.sources.files.get(loc.file as usize).is_ok();
            let (file, span) = if known {
                (loc.file as usize, tk_compiler::ast::Span { lo: loc.lo, hi: loc.hi })
            } else {
                (k.file, k.span)
            };
            diags.push(
                tk_compiler::diag::Diag::new(
                    tk_compiler::diag::Code::Unsupported,
                    file,
                    span,
                    format!("kernel `{}`: {message}", k.name),
                )
                .label("tk cannot compile this yet")
                .help("write it another way (docs/errors.md#e0411 lists the known limits), or report the program"),
            );
        }
        if !diags.is_empty() {
            checked.diags = diags;
            checked.kernels.clear();
        }
        checked
    }

    /// The graph IR of a checked kernel, as lowered (before the rewrite passes).
    pub fn graph(&self, k: &CheckedKernel) -> Result<Graph, GraphError> {
        tk_compiler::lower::lower_kernel(k).map_err(|e| GraphError {
            kernel: k.name.clone(),
            message: e.message,
            loc: e.loc,
        })
    }

    /// A graph after the rewrite passes and the decomposition of transcendentals: what every
    /// backend compiles and the reference interpreter runs.
    pub fn prepare(&self, g: &Graph) -> Graph {
        tk_ir::graph::passes::prepare(g)
    }

    /// The prepared graph of a checked kernel.
    pub fn prepared(&self, k: &CheckedKernel) -> Result<Graph, GraphError> {
        Ok(self.prepare(&self.graph(k)?))
    }

    /// The prepared graph of every kernel of a checked file, as entries named by source.
    pub fn entries(&self, source: &Path, checked: &Checked) -> Result<Vec<Entry>, GraphError> {
        checked
            .kernels
            .iter()
            .map(|k| Ok(Entry { name: k.name.clone(), source: source.display().to_string(), graph: self.prepared(k)? }))
            .collect()
    }

    /// Schedules a prepared graph for a target and lowers every device kernel.
    pub fn lower(&self, g: &Graph, target: Target) -> Result<Lowered, RunError> {
        Ok(crate::target::lower(g, target, &self.options)?)
    }

    /// Compiles device kernels for `dev` and loads them.
    pub fn load(&self, dev: &dyn Device, kernels: &[tk_ir::kernel::Kernel]) -> Result<Arc<dyn Executable>, RunError> {
        let cache = self.cache.clone().unwrap_or_else(crate::cache::KernelCache::global);
        crate::codegen::compile(dev, kernels, &cache)
    }

    /// Compiles an entry's prepared graph for `dev`: schedule, kernel IR, device code, loaded.
    pub fn compile(&self, dev: &dyn Device, name: &str, g: &Graph) -> Result<Compiled, RunError> {
        let lowered = self.lower(g, dev.compile_target())?;
        let t = Instant::now();
        let exe = self.load(dev, &lowered.kernels)?;
        Ok(Compiled::from_executable(name, lowered, exe, t.elapsed()))
    }

    /// The graph after the rewrite passes alone (what `tk emit --stage graph` shows: the
    /// transcendentals not yet decomposed).
    pub fn optimized(&self, g: &Graph) -> Graph {
        tk_ir::graph::passes::optimize(g)
    }

    /// The schedule of a prepared graph for a target, as text.
    pub fn schedule_text(&self, g: &Graph, target: Target, name: &str) -> String {
        tk_ir::schedule::print(&crate::target::schedule(g, target, &self.options), name)
    }

    /// The Cranelift IR of a device kernel, before Cranelift's optimisations.
    pub fn clif(&self, k: &tk_ir::kernel::Kernel) -> Result<String, String> {
        tk_codegen::cpu::clif(k).map_err(|e| e.to_string())
    }

    /// The PTX module of groups of device kernels (entries `<prefix>k<i>`).
    pub fn ptx(
        &self,
        groups: &[(String, Vec<tk_ir::kernel::Kernel>)],
        t: tk_abi::launch::NvidiaTarget,
    ) -> Result<String, String> {
        tk_codegen::ptx::module(groups, t).map(|m| m.text).map_err(|e| e.to_string())
    }

    /// The SASS ptxas makes of a PTX module (needs ptxas and nvdisasm).
    pub fn sass(&self, ptx: &str, t: tk_abi::launch::NvidiaTarget) -> Result<String, RunError> {
        crate::tools::ptxas::assemble(ptx, t).and_then(|a| crate::tools::ptxas::disassemble(&a.cubin))
    }

    /// The LLVM IR module of groups of device kernels for an AMD target.
    pub fn llvm(
        &self,
        groups: &[(String, Vec<tk_ir::kernel::Kernel>)],
        t: tk_abi::launch::AmdTarget,
    ) -> Result<tk_codegen::llvm::Module, String> {
        tk_codegen::llvm::module(groups, t).map_err(|e| e.to_string())
    }

    /// The RDNA3 disassembly of the code object of an LLVM IR module (the `amdgpu` feature,
    /// ld.lld and llvm-objdump).
    pub fn gcn(&self, m: &tk_codegen::llvm::Module, t: tk_abi::launch::AmdTarget) -> Result<String, RunError> {
        crate::tools::lld::code_object(m).and_then(|c| crate::tools::lld::disassemble(&c.hsaco, t))
    }
}
