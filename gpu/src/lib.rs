//! tk-gpu: tk's userspace GPU driver below the runtime.
//!
//! - [`transport`]: one PCIe function as the driver sees it (the vendor-neutral trait), and its
//!   implementations: the TinyGPU.app socket and, on macOS, the TinyGPU DriverKit extension.
//! - [`queue`]: what every vendor's driver offers for running work (a command queue with a
//!   fence, waits with a timeout) and the errors a GPU raises; [`memory`]: the VRAM allocator.
//! - [`amd`]: the AMD driver ([`amd::device::AmdGpu`]: page tables, VRAM, the PM4 queue, DMA,
//!   dispatch) and its register and packet tables (shared with the simulated GPU), PM4 packets,
//!   GMC page tables and firmware lookup.
//! - [`nv`]: the NVIDIA driver's first bring-up steps: the chip, a GSP left running, the VBIOS,
//!   its FWSEC firmware and FWSEC-FRTS on the GSP falcon.
//!
//! The `amd:*` device that the runtime opens is a thin layer over these (tk-runtime's
//! `devices::amd`);
//! the simulated PCIe GPUs that answer through the same transport trait are in tk-sim.
//! docs/driver.md describes the design and what is not built yet.

pub mod amd;
pub mod memory;
pub mod nv;
pub mod queue;
pub mod transport;
