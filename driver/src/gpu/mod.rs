//! tk's userspace driver for AMD GPUs (part 1): the register and packet table shared with the
//! simulated GPU ([`regs`]), PM4 packets ([`pm4`]), GMC page tables ([`gmc`]), the transport
//! trait ([`transport`]), the simulated PCIe GPU ([`simgpu`]) and the `amd:N` device
//! ([`device`]). docs/driver.md describes the design and what is not built yet.

pub mod code_object;
pub mod device;
pub mod firmware;
pub mod gmc;
#[cfg(target_os = "macos")]
pub mod iokit;
pub mod pm4;
pub mod regs;
pub mod simgpu;
#[cfg(unix)]
pub mod tinygpu;
pub mod transport;
