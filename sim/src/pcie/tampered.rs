//! A simulated GPU with one thing taken away, for tests of what the driver does when a
//! transport or a device does not cooperate: configuration writes refused (as where a DriverKit
//! extension owns configuration space), doorbells that never reach the command processor (a
//! hung GPU), the simulator's own fault reports (as on hardware, where only the interrupt ring
//! tells), or one register write or the HDP flush dropped (a driver that skips a step).
//! Everything else goes to the GPU inside.

use super::amd::SimGpu;
use tk_gpu::amd::regs::{HDP_FLUSH_HOLE, Reg, RegMap};
use tk_gpu::amd::{BAR_DOORBELL, BAR_MMIO};
use tk_gpu::transport::{SysMem, Transport};

/// What a [`Tampered`] GPU does not do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Withheld {
    /// Configuration-space writes fail: the driver cannot turn bus mastering on.
    ConfigWrites,
    /// Doorbell writes are swallowed: queued work never runs.
    Doorbells,
    /// [`Transport::fault`] says nothing: faults reach the driver only as a real GPU reports
    /// them.
    FaultReports,
    /// Writes to the HDP flush register are dropped.
    HdpFlush,
    /// Writes to this register are dropped.
    Register(Reg),
}

impl Tampered {
    /// Whether a register write at `off` is withheld.
    fn drops(&self, bar: u8, off: u64) -> bool {
        match self.1 {
            Withheld::Doorbells => bar == BAR_DOORBELL,
            Withheld::HdpFlush => bar == BAR_MMIO && off == HDP_FLUSH_HOLE,
            Withheld::Register(r) => {
                bar == BAR_MMIO && RegMap::new(&tk_gpu::amd::discovery::navi31()).is_ok_and(|m| m.byte(r) == off)
            }
            _ => false,
        }
    }
}

/// A simulated GPU behind a transport that withholds one kind of access.
pub struct Tampered(pub SimGpu, pub Withheld);

impl Transport for Tampered {
    fn name(&self) -> String {
        format!("{} ({:?} withheld)", self.0.name(), self.1)
    }
    fn read32(&self, bar: u8, off: u64) -> Result<u32, String> {
        self.0.read32(bar, off)
    }
    fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
        if self.drops(bar, off) { Ok(()) } else { self.0.write32(bar, off, v) }
    }
    fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String> {
        if self.drops(bar, off) { Ok(()) } else { self.0.write64(bar, off, v) }
    }
    fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String> {
        self.0.read_bytes(bar, off, out)
    }
    fn write_bytes(&self, bar: u8, off: u64, src: &[u8]) -> Result<(), String> {
        self.0.write_bytes(bar, off, src)
    }
    fn fault(&self) -> Option<String> {
        if self.1 == Withheld::FaultReports { None } else { self.0.fault() }
    }
    fn round_trips(&self) -> u64 {
        self.0.round_trips()
    }
    fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
        self.0.sysmem(bytes)
    }
    fn config_read(&self, offset: u16, width: u8) -> Result<u32, String> {
        self.0.config_read(offset, width)
    }
    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String> {
        if self.1 == Withheld::ConfigWrites {
            return Err("configuration writes are not allowed here".into());
        }
        self.0.config_write(offset, width, value)
    }
    fn reset(&self) -> Result<(), String> {
        self.0.reset()
    }
    fn bar_size(&self, bar: u8) -> Result<u64, String> {
        self.0.bar_size(bar)
    }
    fn firmware(&self) -> Option<Vec<(String, Vec<u8>)>> {
        self.0.firmware()
    }
}
