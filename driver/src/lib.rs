//! tk devices and the runtime: the [`device::Device`] interface with the CPU, the simulated
//! GPU and CUDA as implementations, host arrays (`.npy`, random inputs), the runtime that
//! executes an entry's schedule ([`runtime`]) and bundles ([`bundle`]).
//!
//! With the `compile` feature (the default) it also compiles: the JIT, the kernel cache, `tk
//! build` and bundle writing. Without it, the crate is the runtime alone: it loads bundles and
//! runs them, and depends on no code generator (no Cranelift, no LLVM).

#[cfg(feature = "compile")]
pub mod amd;
#[cfg(feature = "compile")]
pub mod aot;
pub mod api;
pub mod array;
pub mod bundle;
#[cfg(feature = "compile")]
pub mod cache;
#[cfg(feature = "compile")]
pub mod clib;
pub mod cpu;
pub mod cuda;
pub mod device;
pub mod error;
pub mod gpu;
pub mod loader;
#[cfg(feature = "compile")]
pub mod nvidia;
pub mod runtime;
pub mod sim;
pub mod target;

/// The build of tk: version, git commit, and a hash of the diff for dirty trees.
pub const BUILD_ID: &str = env!("TK_BUILD_ID");

pub use array::HostArray;
pub use device::{Device, open};
pub use error::RunError;
pub use runtime::{Compiled, DeviceArray, compile};
pub use tk_ir::dtype::DType;
