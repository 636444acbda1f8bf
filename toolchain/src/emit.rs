//! The text of a compiler stage for a checked file, as `tk emit --stage ...` prints it and the
//! file tests (`tests/filetests.rs`) check it: the graph IR, the schedule, the kernel IR (before
//! and after legalization), the
//! Cranelift IR, the PTX module and its SASS, the LLVM IR module and its RDNA3 disassembly.

use crate::Session;
use crate::target::Target;
use std::fmt::Write;
use tk_compiler::Checked;
use tk_runtime::RunError;

/// A stage after checking that has a text form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The graph IR after the rewrite passes (transcendentals not yet decomposed).
    Graph,
    /// The device kernels and buffers each entry is partitioned into.
    Schedule,
    /// The loop-level kernel IR of every device kernel.
    Kernel,
    /// The kernel IR after legalization for the target: what its emitter receives.
    Legal,
    /// The Cranelift IR of every device kernel (CPU).
    Clif,
    /// The PTX module (NVIDIA).
    Ptx,
    /// The SASS ptxas makes of the PTX (needs ptxas and nvdisasm).
    Sass,
    /// The LLVM IR module (AMD).
    Llvm,
    /// The RDNA3 disassembly of the code object (needs the `amdgpu` feature and ld.lld).
    Gcn,
}

/// Why a stage could not be printed.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// A kernel failed to lower or to translate (`internal`: a code generator's own failure).
    #[error("kernel `{kernel}`: {message}")]
    Kernel { kernel: String, message: String, internal: bool },
    /// The module of the file's kernels could not be made.
    #[error("{0}")]
    Module(String),
    /// The file has no kernel of that name.
    #[error("no kernel `{0}`")]
    NoEntry(String),
    /// An external tool is missing or failed.
    #[error("{0}")]
    Tool(RunError),
}

/// What the stage's text is headed with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Notes {
    /// Fast math was asked for (the backends say what they do with it).
    pub fast_math: bool,
}

impl Session {
    /// The text of `stage` for the kernels of a checked file (only `entry` when given), compiled
    /// for `target` with this session's options.
    pub fn emit(
        &self,
        checked: &Checked,
        stage: Stage,
        target: Target,
        entry: Option<&str>,
        notes: Notes,
    ) -> Result<String, EmitError> {
        let mut s = String::new();
        let mut groups = Vec::new();
        for k in checked.kernels.iter().filter(|k| entry.is_none_or(|e| e == k.name)) {
            let kernel_err =
                |message: String, internal: bool| EmitError::Kernel { kernel: k.name.clone(), message, internal };
            let g = self.graph(k).map_err(|e| kernel_err(e.message, false))?;
            if stage == Stage::Graph {
                // The graph stage shows the optimised graph; later stages compile the prepared
                // one (transcendentals decomposed into primitives).
                s.push_str(&tk_ir::graph::text::print(&self.optimized(&g), &k.name));
                continue;
            }
            let prepared = self.prepare(&g);
            if stage == Stage::Schedule {
                s.push_str(&self.schedule_text(&prepared, target, &k.name));
                continue;
            }
            let lowered = self.lower(&prepared, target).map_err(|e| kernel_err(e.to_string(), false))?;
            if matches!(stage, Stage::Ptx | Stage::Sass | Stage::Llvm | Stage::Gcn)
                || target == Target::Cpu && stage == Stage::Llvm
            {
                groups.push((format!("{}_", k.name), lowered.kernels));
                continue;
            }
            let _ = writeln!(s, "// entry {}: {} device kernel(s)", k.name, lowered.kernels.len());
            if notes.fast_math {
                let _ = writeln!(
                    s,
                    "// fast-math: contraction and hardware approximations allowed; results may differ between devices"
                );
            }
            if self.options.deterministic {
                let _ = writeln!(s, "// deterministic: every reduction runs in the reference order");
            }
            for (i, kern) in lowered.kernels.iter().enumerate() {
                if stage == Stage::Clif {
                    let t = self.clif(kern).map_err(|e| kernel_err(e, true))?;
                    let _ = writeln!(s, "; device kernel {i}");
                    s.push_str(&t);
                } else if stage == Stage::Legal {
                    s.push_str(&tk_ir::kernel::print(&tk_codegen::common::Backend::of(target).legal(kern)));
                } else {
                    s.push_str(&tk_ir::kernel::print(kern));
                }
            }
        }
        if let Some(e) = entry
            && !checked.kernels.iter().any(|k| k.name == e)
        {
            return Err(EmitError::NoEntry(e.to_string()));
        }
        if let Target::Amd(t) = target
            && matches!(stage, Stage::Llvm | Stage::Gcn)
        {
            let m = self.llvm(&groups, t).map_err(EmitError::Module)?;
            if notes.fast_math {
                s.push_str("; fast-math: allowed, but the AMD backend emits no fast-math flags yet\n");
            }
            if stage == Stage::Llvm {
                s.push_str(&m.ir);
            } else {
                s.push_str(&self.gcn(&m, t).map_err(EmitError::Tool)?);
            }
        }
        if target == Target::Cpu && stage == Stage::Llvm {
            // The CPU's LLVM tier: one module per entry (kernel i is `tk_k{i}`), as tk writes it
            // for this machine, before LLVM's optimisation.
            let host = tk_codegen::llvm::cpu::host();
            for (prefix, kernels) in &groups {
                let _ = writeln!(s, "; entry {}", prefix.trim_end_matches('_'));
                s.push_str(
                    &tk_codegen::llvm::cpu::module(kernels, &host).map_err(|e| EmitError::Module(e.to_string()))?,
                );
            }
        }
        if let Target::Nvidia(t) = target
            && matches!(stage, Stage::Ptx | Stage::Sass)
        {
            let m = self.ptx(&groups, t).map_err(EmitError::Module)?;
            if notes.fast_math {
                s.push_str("// fast-math: allowed, but the PTX backend emits no approximations yet\n");
            }
            if stage == Stage::Ptx {
                s.push_str(&m);
            } else {
                s.push_str(&self.sass(&m, t).map_err(EmitError::Tool)?);
            }
        }
        Ok(s)
    }
}
