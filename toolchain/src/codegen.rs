//! Device code for a target, and compiling device kernels for a device: the code generator the
//! device's target needs, the external tools it needs, then the device loads the code. The CPU's
//! code goes through the kernel cache.

use crate::target::Target;
use std::sync::Arc;
use tk_abi::code::{CodeBuf, CodeKind};
use tk_ir::kernel::Kernel;
use tk_runtime::RunError;
use tk_runtime::device::{Device, Executable};

fn compile_err(message: String) -> RunError {
    RunError::Compile { message, loc: Default::default() }
}

/// The PTX module of device kernels (entries `k{i}`) for an NVIDIA target.
pub fn ptx(kernels: &[Kernel], t: tk_abi::launch::NvidiaTarget) -> Result<tk_codegen::ptx::Module, RunError> {
    tk_codegen::ptx::module(&[(String::new(), kernels.to_vec())], t).map_err(|e| compile_err(e.message))
}

/// The AMD code object of device kernels (kernels named as the device kernels).
pub fn hsaco(kernels: &[Kernel], t: tk_abi::launch::AmdTarget) -> Result<Vec<u8>, RunError> {
    let m = tk_codegen::llvm::module(&[(String::new(), kernels.to_vec())], t).map_err(|e| compile_err(e.message))?;
    Ok(crate::tools::lld::code_object(&m)?.hsaco)
}

/// Device code for `kernels` in the first of the device's accepted kinds this toolchain can make
/// (a cubin needs ptxas: without it, PTX for the driver to compile).
pub fn code_for(dev: &dyn Device, kernels: &[Kernel]) -> Result<CodeBuf, RunError> {
    let accepts = dev.accepts();
    match dev.compile_target() {
        Target::Cpu => Ok(CodeBuf::Jit(crate::cache::jit(kernels)?)),
        Target::Nvidia(t) => {
            let m = ptx(kernels, t)?;
            if accepts.first() == Some(&CodeKind::Cubin) {
                match crate::tools::ptxas::assemble(&m.text, t) {
                    Ok(a) => return Ok(CodeBuf::Cubin(a.cubin)),
                    Err(RunError::MissingTool { .. }) if accepts.contains(&CodeKind::Ptx) => {}
                    Err(RunError::MissingTool { tool, message }) => {
                        return Err(RunError::MissingTool {
                            tool,
                            message: format!(
                                "{message}; {} runs the machine code ptxas makes, so it needs ptxas (macOS has \
                                 none): `--device sim:{t}` simulates the same kernels' PTX without it",
                                dev.name()
                            ),
                        });
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(CodeBuf::Ptx(m.text))
        }
        Target::Amd(t) => Ok(CodeBuf::Hsaco(hsaco(kernels, t)?)),
    }
}

/// Compiles device kernels for `dev` and loads them (the CPU's through a kernel cache).
pub fn compile(
    dev: &dyn Device,
    kernels: &[Kernel],
    cache: &crate::cache::KernelCache,
) -> Result<Arc<dyn Executable>, RunError> {
    if dev.compile_target() == Target::Cpu && dev.accepts().contains(&CodeKind::CpuObject) {
        return cache.get_or_compile(dev, kernels);
    }
    let code = code_for(dev, kernels)?;
    dev.load(kernels, code.as_code())
}
