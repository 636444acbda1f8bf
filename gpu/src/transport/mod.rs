//! The transport to one PCIe function, vendor-neutral: configuration space, BAR reads and
//! writes, BAR sizes, a function reset and DMA-able system memory. Which BAR holds what is the
//! vendor's business (`crate::amd::BAR_*`). Implementations: the TinyGPU.app socket
//! ([`tinygpu`]), the TinyGPU DriverKit extension on macOS (`iokit`), VFIO on Linux
//! ([`linux_pci`]), and the simulated PCIe GPUs of tk-sim.

#[cfg(target_os = "macos")]
pub mod iokit;
pub mod linux_pci;
#[cfg(unix)]
pub mod tinygpu;
pub mod trace;

/// Host memory the GPU can reach by DMA, shared between the driver and the device.
pub trait HostMem: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Runs `f` on the memory (the lock keeps the two sides' accesses whole).
    fn with(&self, f: &mut dyn FnMut(&mut [u8]));
}

impl HostMem for std::sync::Mutex<Vec<u8>> {
    fn len(&self) -> usize {
        self.lock().map(|v| v.len()).unwrap_or(0)
    }
    fn with(&self, f: &mut dyn FnMut(&mut [u8])) {
        if let Ok(mut v) = self.lock() {
            f(&mut v);
        }
    }
}

/// DMA-able system memory: the host's view and the bus addresses of its pieces, in order
/// (`(bus address, bytes)`; pieces are not contiguous on the bus).
pub struct SysMem {
    pub mem: std::sync::Arc<dyn HostMem>,
    pub segments: Vec<(u64, u64)>,
}

impl SysMem {
    /// The bus address of byte `off`.
    pub fn bus(&self, off: u64) -> Option<u64> {
        let mut at = 0;
        for &(b, n) in &self.segments {
            if off < at + n {
                return Some(b + off - at);
            }
            at += n;
        }
        None
    }
}

/// One PCIe function, as the driver sees it. Errors are descriptions of what failed.
pub trait Transport: Send + Sync {
    /// What the transport talks to, for messages (`sim`, a socket path, a PCI address).
    fn name(&self) -> String;
    fn read32(&self, bar: u8, off: u64) -> Result<u32, String>;
    fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String>;
    fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String>;
    fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String>;
    fn write_bytes(&self, bar: u8, off: u64, src: &[u8]) -> Result<(), String>;
    /// A fault the device reported and cannot signal through memory: the simulated GPU's
    /// emulator faults and rejected packets or registers. (A real GPU raises VM faults as
    /// interrupts, which tk does not use yet.)
    fn fault(&self) -> Option<String> {
        None
    }
    /// Requests (round trips) made so far.
    fn round_trips(&self) -> u64;
    /// Allocates `bytes` of system memory the GPU reaches by DMA.
    fn sysmem(&self, bytes: usize) -> Result<SysMem, String>;
    /// Reads `width` (1, 2 or 4) bytes of the function's PCI configuration space at `offset`.
    fn config_read(&self, offset: u16, width: u8) -> Result<u32, String>;
    /// Writes `width` (1, 2 or 4) bytes of the function's PCI configuration space at `offset`.
    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String>;
    /// Resets the function (a function-level reset where the device has one).
    fn reset(&self) -> Result<(), String>;
    /// The size of a BAR in bytes (0 for a BAR the function does not have).
    fn bar_size(&self, bar: u8) -> Result<u64, String>;
    /// Firmware the device itself supplies (`(file name, bytes)`): a simulated GPU's synthetic
    /// blobs. None for real hardware, whose firmware comes from linux-firmware.
    fn firmware(&self) -> Option<Vec<(String, Vec<u8>)>> {
        None
    }
}

/// What a GPU that stopped answering is reported as (every vendor's driver).
pub const LINK_LOST: &str = "the GPU stopped answering: the Thunderbolt link dropped or the enclosure lost power";

/// Whether the GPU is gone: its PCI vendor id reads as all ones (or cannot be read at all). An
/// all-ones register read is confirmed this way before it is taken for a lost link.
pub fn link_gone(t: &dyn Transport) -> bool {
    matches!(t.config_read(0, 2), Ok(0xffff) | Err(_))
}

/// Checks the width of a configuration-space access: 1, 2 or 4 bytes, naturally aligned, inside
/// the 4 KiB extended configuration space.
pub fn check_config_access(offset: u16, width: u8) -> Result<(), String> {
    if !matches!(width, 1 | 2 | 4) {
        return Err(format!("a configuration-space access of {width} bytes (1, 2 or 4)"));
    }
    if !offset.is_multiple_of(u16::from(width)) || u32::from(offset) + u32::from(width) > 4096 {
        return Err(format!("a {width}-byte configuration-space access at {offset:#x} (aligned, below 0x1000)"));
    }
    Ok(())
}
