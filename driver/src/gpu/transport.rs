//! The transport to one PCIe function: BAR reads and writes. Implementations: the in-process
//! simulated GPU ([`super::simgpu`]). BAR 0 is VRAM, BAR 2 the doorbells, BAR 5 the registers.

/// The VRAM BAR.
pub const BAR_VRAM: u8 = 0;
/// The doorbell BAR (64-bit doorbells).
pub const BAR_DOORBELL: u8 = 2;
/// The register BAR.
pub const BAR_MMIO: u8 = 5;

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
}
