//! The AMD userspace driver: the device set up for compute ([`device`]: page tables, VRAM, the
//! PM4 queue and its fence, DMA, dispatch) and its parts: the register and packet table shared
//! with the simulated GPU ([`regs`]), PM4 packets ([`pm4`]), GMC page tables ([`gmc`]),
//! firmware lookup ([`firmware`]), the firmware containers ([`ucode`]) and the IP discovery
//! table ([`discovery`]).

pub mod boot;
pub mod device;
pub mod discovery;
pub mod firmware;
pub mod gmc;
pub mod link;
pub mod pm4;
pub mod psp;
pub mod regs;
pub mod sdma;
pub mod ucode;

/// The VRAM BAR (source: ../shared/notes/tinygpu.md, "BAR0 = VRAM, BAR2 = doorbells (64-bit),
/// BAR5 = MMIO registers", as Linux amdgpu maps them for gfx11).
pub const BAR_VRAM: u8 = 0;
/// The doorbell BAR (64-bit doorbells).
pub const BAR_DOORBELL: u8 = 2;
/// The register BAR.
pub const BAR_MMIO: u8 = 5;
