//! Kernel IR -> LLVM IR for AMD RDNA3 GPUs (gfx11), and through LLVM 19's AMDGPU backend to a
//! relocatable object (cargo feature `amdgpu`).
//!
//! One LLVM module holds every device kernel of a compilation. Each device kernel is an
//! `amdgpu_kernel` function in wave32 mode whose kernel arguments (the kernarg segment) are, in
//! order: the kernel's buffers as global pointers (`ptr addrspace(1)`, 8 bytes each), the values
//! of the dimension symbols it reads ([`symbols`] order, i64), a pointer to four i64 error slots
//! (as on NVIDIA: a failed check stores its number plus one in slot 0 with a compare-and-swap, the
//! first failure wins, then the offending value and the bounds in slots 1 to 3), and the number
//! of workgroups of the launch (i64). The kernels ask for nothing but the kernarg segment
//! pointer, the workgroup id in x and the work-item id in x; `docs/architecture.md` fixes this
//! ABI and the loaders reject a code object that wants more.
//!
//! The launch shapes are those of the PTX backend ([`Launch`]): a grid-stride loop over the
//! elements of the parallel ranges with [`THREADS`] work-items per workgroup, one workgroup per
//! index of the outer range for kernels with workgroup (local) ranges, or a single work-item.
//!
//! The numeric contract (docs/numerics.md): no fast-math flags (`contract`, `afn`, `reassoc`,
//! ...) appear on any instruction, fma only where the kernel IR has one, f32 and f64
//! denormals are kept (`"denormal-fp-math"="ieee,ieee"`), and `llvm.sqrt`, `fdiv` and the
//! conversions are the correctly rounded LLVM operations. f16 and bf16 values live in f32
//! registers and are rounded after every operation, as on the other backends.
//!
//! The IR is written as text and parsed by LLVM (through inkwell) when the feature is on, so
//! `tk emit --stage llvm` works in every build.

mod emit;

#[cfg(feature = "amdgpu")]
mod llvm;

pub use crate::ptx::Launch;
#[cfg(feature = "amdgpu")]
pub use llvm::{object, optimized_ir};

use crate::cpu::{CheckInfo, Unsupported};
use tk_ir::kernel::Kernel;

/// Work-items per workgroup of an elementwise (grid-stride) kernel.
pub const THREADS: u32 = 256;

/// An AMD compile target: an RDNA3 (gfx11) processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub name: &'static str,
}

impl Target {
    /// The targets tk supports. (`gfx11-generic`, which runs on every gfx11 GPU, needs code
    /// object v6; tk's kernel ABI is code object v5.)
    pub const ALL: [Target; 3] = [Target { name: "gfx1100" }, Target { name: "gfx1101" }, Target { name: "gfx1102" }];
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        Target::ALL.iter().copied().find(|t| t.name == s).ok_or_else(|| {
            let known: Vec<&str> = Target::ALL.iter().map(|t| t.name).collect();
            if s == "gfx11-generic" {
                format!(
                    "`gfx11-generic` needs code object v6, and tk's kernel ABI is code object v5: build for {} instead",
                    known.join(", ")
                )
            } else if s.starts_with("gfx") {
                format!("tk does not support `{s}`; the AMD targets are {} (RDNA3)", known.join(", "))
            } else {
                format!("`{s}` is not an AMD target; the targets are {}", known.join(", "))
            }
        })
    }
}

/// The LLVM target triple of every AMD kernel.
pub const TRIPLE: &str = "amdgcn-amd-amdhsa";

/// LLVM 19's data layout for `amdgcn-amd-amdhsa` (allocas live in address space 5).
pub const DATA_LAYOUT: &str = "e-p:64:64-p1:64:64-p2:32:32-p3:32:32-p4:64:64-p5:32:32-p6:32:32-p7:160:256:256:32-\
p8:128:128-p9:192:256:256:32-i64:64-v16:16-v24:32-v32:32-v48:64-v96:128-v192:256-v256:256-v512:512-v1024:1024-\
v2048:2048-n32:64-S32-A5-G1-ni:7:8:9";

/// What the launcher needs to know about one kernel of a module.
#[derive(Clone, Debug)]
pub struct AmdKernel {
    /// The kernel's symbol (its descriptor is `{name}.kd`).
    pub name: String,
    /// Dimension symbols passed as i64 kernel arguments after the buffers, in order.
    pub symbols: Vec<String>,
    pub checks: Vec<CheckInfo>,
    pub launch: Launch,
    /// Bytes of LDS (workgroup memory) the kernel declares.
    pub lds_bytes: u64,
}

/// An LLVM IR module for an AMD target and, per kernel, what the launcher needs.
#[derive(Clone, Debug)]
pub struct Module {
    pub ir: String,
    pub target: Target,
    pub kernels: Vec<AmdKernel>,
}

/// Translates device kernels into one LLVM IR module. Each group is an entry point's device
/// kernels with the prefix of their names (`{prefix}{kernel name}`).
pub fn module(groups: &[(String, Vec<Kernel>)], target: Target) -> Result<Module, Unsupported> {
    let mut ir = String::new();
    ir.push_str(&format!("; Generated by tk {} for {target}\n", env!("CARGO_PKG_VERSION")));
    ir.push_str(&format!("target datalayout = \"{DATA_LAYOUT}\"\ntarget triple = \"{TRIPLE}\"\n"));
    let mut kernels = Vec::new();
    let mut decls = std::collections::BTreeSet::new();
    for (prefix, ks) in groups {
        for k in ks {
            let name = format!("{prefix}{}", k.name);
            let (text, info, used) = emit::kernel(k, &name, kernels.len())?;
            ir.push('\n');
            ir.push_str(&text);
            decls.extend(used);
            kernels.push(info);
        }
    }
    ir.push('\n');
    for d in decls {
        ir.push_str(&d);
        ir.push('\n');
    }
    Ok(Module { ir, target, kernels })
}

/// The dimension symbols a kernel takes as arguments, in order.
pub fn symbols(k: &Kernel) -> Vec<String> {
    crate::cpu::symbols(k)
}
