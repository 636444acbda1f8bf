//! What the code generators share: each backend's capabilities, which decide what the kernel
//! IR's legalize pass (`tk_ir::kernel::legalize`) rewrites before an emitter sees a kernel.

use tk_abi::target::Target;
use tk_ir::kernel::Kernel;
use tk_ir::kernel::legalize::Caps;

/// The code generators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// CPU code through Cranelift.
    Cranelift,
    /// NVIDIA PTX.
    Ptx,
    /// LLVM IR (AMD RDNA3).
    Llvm,
}

impl Backend {
    /// The backend that compiles for `target`.
    pub fn of(target: Target) -> Backend {
        match target {
            Target::Cpu => Backend::Cranelift,
            Target::Nvidia(_) => Backend::Ptx,
            Target::Amd(_) => Backend::Llvm,
        }
    }

    /// What the backend does natively. None floors integer division: Cranelift, PTX and LLVM have
    /// truncating division only (and Cranelift's traps on a zero divisor).
    pub fn caps(self) -> Caps {
        match self {
            Backend::Cranelift | Backend::Ptx | Backend::Llvm => Caps { floor_div: false },
        }
    }

    /// A kernel as this backend's emitter receives it: legalized.
    pub fn legal(self, k: &Kernel) -> Kernel {
        tk_ir::kernel::legalize::legalize(k, self.caps())
    }
}
