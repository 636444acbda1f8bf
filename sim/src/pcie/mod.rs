//! Simulated PCIe GPUs behind tk-gpu's transport trait: registers, firmware formats and command
//! streams as the hardware has them, running the machine code on tk-sim's emulators.
//! [`amd`]: an RDNA3 GPU (the `amd:sim` device); [`nv`]: an NVIDIA GPU as far as the driver's
//! first bring-up steps reach; [`tinygpu_server`]: the TinyGPU.app socket
//! protocol in front of it; [`tampered`]: one with an access withheld, for tests.

pub mod amd;
pub mod nv;
pub mod tampered;
#[cfg(unix)]
pub mod tinygpu_server;

/// The value of a simulated GPU's `link-drop=N` option: after N register or configuration-space
/// accesses the link is gone.
fn link_drop(n: &str) -> Result<u64, String> {
    n.parse().map_err(|_| format!("link-drop={n}: expected a number of accesses, such as link-drop=100"))
}

/// System memory is handed out in pieces of this size (a multiple of the Mac's 16 KiB host
/// pages), scattered on the bus below 2^40 (TinyGPU's 40-bit bus addresses).
pub const SYSMEM_CHUNK: u64 = 256 << 10;
/// The most DMA segments one buffer may have (TinyGPU's limit, docs/driver.md).
pub const MAX_SEGMENTS: u64 = 32;

/// A piece of system memory on the bus: (bus address, bytes, memory, offset in it).
pub type Chunk = (u64, u64, std::sync::Arc<dyn tk_gpu::transport::HostMem>, u64);
