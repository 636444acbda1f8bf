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
