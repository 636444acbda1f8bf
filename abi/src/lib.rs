//! tk-abi: what compiled code and the runtime agree on, written once.
//!
//! - [`launch`]: per device kernel, the symbols it reads, its bounds checks and its launch shape;
//!   the compile targets' names.
//! - [`helpers`]: the host functions generated CPU code calls.
//! - [`target`]: compile targets, their default knobs and reduction splitting, and the one path
//!   from a prepared graph to device kernels (a bundle's loader lowers again with it).
//! - [`code`]: the device code a device loads.
//! - [`cpu`]: the signature of a compiled CPU kernel.
//! - [`check`]: the error slots a failed bounds check fills, and what they mean.
//! - [`grid`]: the grid a GPU kernel is launched with.
//! - [`amd`]: AMD kernel arguments, the kernel descriptor and the code-object reader.
//! - [`cubin`]: the reader of NVIDIA cubins (ptxas's ELF files).
//! - [`interrupt`]: the process's request to stop the work in progress (Ctrl-C).
//! - [`progress`]: how far the work in progress has got, for a progress bar.
//!
//! tk-abi depends on tk-ir alone, so the code generators, the toolchain, the runtime and the
//! simulators can all use it.

pub mod amd;
pub mod check;
pub mod code;
pub mod cpu;
pub mod cubin;
pub mod grid;
pub mod helpers;
pub mod interrupt;
pub mod launch;
pub mod progress;
pub mod target;
