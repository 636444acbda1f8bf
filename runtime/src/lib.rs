//! tk-runtime: devices that load compiled code and run it, and everything around them: the
//! [`device::Device`] interface and the device registry ([`devices::open`], [`devices::list`]),
//! the devices ([`devices`]: the CPU, CUDA, the simulated GPUs behind feature `sim`, and the
//! userspace AMD driver's `amd:*` on top of tk-gpu), the execution of an entry's schedule
//! ([`runtime`]), host arrays and `.npy` files ([`array`]), bundle reading ([`bundle`]), the
//! object loader ([`loader`]) and the embedding API ([`api`]).
//!
//! It depends on no compiler crate: compiling is tk-toolchain's, which makes the [`Code`] that
//! devices load. A program that only loads bundles links this crate alone.

pub mod api;
pub mod array;
pub mod bundle;
pub mod device;
pub mod devices;
pub mod error;
pub mod loader;
pub mod runtime;
pub mod tier;

pub use array::HostArray;
pub use device::{Code, Device};
pub use devices::{list, open};
pub use error::RunError;
pub use runtime::{Compiled, DeviceArray};
pub use tk_abi::target::{Options, Target};
pub use tk_ir::dtype::DType;
