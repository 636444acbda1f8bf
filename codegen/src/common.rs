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

    /// What the backend does natively (see [`Caps`] for what the legalize pass rewrites where a
    /// field is false). None floors integer division (Cranelift, PTX and LLVM have truncating
    /// division only, and Cranelift's traps on a zero divisor), rounds f16/bf16 arithmetic (all
    /// three hold those values in wider registers), has the language's float remainder or an
    /// integer power. Cranelift's `fmin`/`fmax` and LLVM's `llvm.minimum`/`llvm.maximum`
    /// propagate NaN and order -0 below +0; PTX's `min`/`max` do not.
    pub fn caps(self) -> Caps {
        let nan_minmax = match self {
            Backend::Cranelift | Backend::Llvm => true,
            Backend::Ptx => false,
        };
        Caps { floor_div: false, narrow_float: false, float_rem: false, int_pow: false, nan_minmax }
    }

    /// A kernel as this backend's emitter receives it: legalized.
    pub fn legal(self, k: &Kernel) -> Kernel {
        tk_ir::kernel::legalize::legalize(k, self.caps())
    }
}

/// The message for an operation an emitter never receives because the legalize pass rewrote it
/// (reaching one is a bug in the pass or its capability table).
pub(crate) fn legalized(what: &str) -> String {
    format!("{what} reached the emitter: the legalize pass rewrites it first (tk_ir::kernel::legalize)")
}

/// The message for a float power, which the graph passes decompose before any code generator.
pub(crate) fn decomposed(t: tk_ir::dtype::DType) -> String {
    format!("pow on {t} reached the emitter: the graph passes decompose it first (tk_ir::graph::decompose)")
}
