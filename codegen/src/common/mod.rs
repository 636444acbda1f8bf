//! What the code generators share: each backend's capabilities, which decide what the kernel
//! IR's legalize pass (`tk_ir::kernel::legalize`) rewrites before an emitter sees a kernel; the
//! error an emitter reports (`error`); and the accumulator dtypes every backend uses.

use tk_abi::target::Target;
use tk_ir::dtype::DType;
use tk_ir::graph::ReduceOp;

mod error;
pub use error::Unsupported;
pub(crate) use error::{decomposed, legalized, unsupported};
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
    /// LLVM IR for the host CPU (the CPU's LLVM tier).
    LlvmCpu,
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
    /// propagate NaN and order -0 below +0; PTX's `min`/`max` do not. On the CPU, LLVM 19's
    /// x86 lowering of `llvm.minimum`/`llvm.maximum` on values widened from f16 returned NaN
    /// for non-NaN operands (found by the differential suite), so the LLVM tier gets them written
    /// out as compares and selects, as PTX does.
    pub fn caps(self) -> Caps {
        let nan_minmax = match self {
            Backend::Cranelift | Backend::Llvm => true,
            Backend::Ptx | Backend::LlvmCpu => false,
        };
        Caps { floor_div: false, narrow_float: false, float_rem: false, int_pow: false, nan_minmax }
    }

    /// A kernel as this backend's emitter receives it: legalized.
    pub fn legal(self, k: &Kernel) -> Kernel {
        tk_ir::kernel::legalize::legalize(k, self.caps())
    }
}

/// The accumulation dtype of a reduction's running value.
pub fn acc_value_dtype(op: ReduceOp, src: DType, out: DType) -> DType {
    let widen = |d: DType| if matches!(d, DType::F16 | DType::Bf16) { DType::F32 } else { d };
    match op {
        ReduceOp::Sum | ReduceOp::Prod if !src.is_float() => out,
        _ => widen(src),
    }
}
