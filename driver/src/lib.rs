//! tk devices and the runtime: the [`device::Device`] interface with the CPU as its first
//! implementation, host arrays (`.npy`, random inputs), and the runtime that executes an
//! entry's schedule ([`runtime`]).

pub mod amd;
pub mod aot;
pub mod array;
pub mod bundle;
pub mod cache;
pub mod cpu;
pub mod cuda;
pub mod device;
pub mod error;
pub mod loader;
pub mod nvidia;
pub mod runtime;
pub mod sim;
pub mod target;

pub use array::HostArray;
pub use device::{Device, open};
pub use error::RunError;
pub use runtime::{Compiled, DeviceArray, compile};
