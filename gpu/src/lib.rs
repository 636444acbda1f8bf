//! tk-gpu: tk's userspace GPU driver below the runtime.
//!
//! - [`transport`]: one PCIe function as the driver sees it (the vendor-neutral trait), and its
//!   implementations: the TinyGPU.app socket and, on macOS, the TinyGPU DriverKit extension.
//! - [`amd`]: the AMD driver's register and packet tables (shared with the simulated GPU), PM4
//!   packets, GMC page tables and firmware lookup.
//!
//! The `amd:*` device that the runtime opens is built on these (tk-runtime's `devices::amd`);
//! the simulated PCIe GPUs that answer through the same transport trait are in tk-sim.
//! docs/driver.md describes the design and what is not built yet.

pub mod amd;
pub mod transport;
