//! Which GPU answers: the architecture and chip from NV_PMC_BOOT_42, whether a GSP from an
//! earlier driver still runs (its write-protected region WPR2 is set), whether the GPU's own
//! boot firmware (GFW) has finished, and how much VRAM it reports. An all-ones read is taken
//! for a lost link once the PCI vendor id confirms it.

use super::BAR_MMIO;
use crate::transport::{LINK_LOST, Transport, link_gone};

/// NV_PMC_BOOT_0 (nv_ref.h): the first identification register.
pub const BOOT_0: u64 = 0x0;
/// NV_PMC_BOOT_42 (nv_ref.h): bits 29:24 the architecture, 23:20 the implementation; bits
/// 29:20 together are the chip id.
pub const BOOT_42: u64 = 0xa00;
/// NV_PFB_PRI_MMU_WPR2_ADDR_LO / _HI (tu102 dev_fb.h): the write-protected region 2, address
/// >> 12 in bits 31:4; HI is 0 until FWSEC-FRTS (or a running GSP) sets it.
pub const WPR2_ADDR_LO: u64 = 0x1f_a824;
pub const WPR2_ADDR_HI: u64 = 0x1f_a828;
/// NV_PGC6_AON_SECURE_SCRATCH_GROUP_42, used as NV_USABLE_FB_SIZE_IN_MB on GA102 and later
/// (nova-core regs.rs, nouveau ramga102.c): the usable VRAM in MiB, written by the GPU's boot
/// firmware.
pub const USABLE_FB_SIZE_IN_MB: u64 = 0x11_83a4;
/// GFW boot progress (nova-core regs.rs, gfw.rs): once bit 0 of the privilege mask
/// 0x118128 is set, bits 7:0 of 0x118234 read 0xff when the boot firmware has finished.
pub const GFW_PRIV_LEVEL_MASK: u64 = 0x11_8128;
pub const GFW_BOOT_PROGRESS: u64 = 0x11_8234;
/// Where the VBIOS appears in BAR0 (NV_PROM_DATA), and how much of it is visible.
pub const PROM: u64 = 0x30_0000;
pub const PROM_BYTES: usize = 1 << 20;

/// An NVIDIA GPU architecture (NV_PMC_BOOT_42_ARCHITECTURE in nv_ref.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    Turing,
    Ampere,
    Hopper,
    Ada,
    BlackwellGb10x,
    BlackwellGb20x,
}

impl Arch {
    fn of(v: u32) -> Option<Arch> {
        Some(match v {
            0x16 => Arch::Turing,
            0x17 => Arch::Ampere,
            0x18 => Arch::Hopper,
            0x19 => Arch::Ada,
            0x1a => Arch::BlackwellGb10x,
            0x1b => Arch::BlackwellGb20x,
            _ => return None,
        })
    }
}

/// The chip that answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chip {
    pub arch: Arch,
    /// NV_PMC_BOOT_42 bits 29:20 (0x172 for GA102).
    pub id: u16,
    pub name: &'static str,
}

/// The chips by id (nova-core gpu.rs).
const CHIPS: [(u16, &str); 22] = [
    (0x162, "TU102"),
    (0x164, "TU104"),
    (0x166, "TU106"),
    (0x167, "TU117"),
    (0x168, "TU116"),
    (0x170, "GA100"),
    (0x172, "GA102"),
    (0x173, "GA103"),
    (0x174, "GA104"),
    (0x176, "GA106"),
    (0x177, "GA107"),
    (0x180, "GH100"),
    (0x192, "AD102"),
    (0x193, "AD103"),
    (0x194, "AD104"),
    (0x196, "AD106"),
    (0x197, "AD107"),
    (0x1b2, "GB202"),
    (0x1b3, "GB203"),
    (0x1b5, "GB205"),
    (0x1b6, "GB206"),
    (0x1b7, "GB207"),
];

/// Why a GPU cannot be driven.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChipError {
    #[error("{LINK_LOST}")]
    LinkLost,
    #[error("the transport failed: {0}")]
    Transport(String),
    #[error("NV_PMC_BOOT_42 reads {0:#010x}: not an NVIDIA GPU tk knows (architecture {arch:#x})", arch = .0 >> 24 & 0x3f)]
    Unknown(u32),
    #[error("{name} is a {arch:?} GPU; tk's NVIDIA driver boots Ampere (GA102-GA107) and Ada (AD102-AD107) GPUs{why}")]
    Unsupported { name: &'static str, arch: Arch, why: &'static str },
    #[error(
        "the GPU's boot firmware did not finish within the timeout (GFW boot progress {0:#x}; TK_GPU_TIMEOUT_MS \
         sets the bound); power-cycle the enclosure and try again"
    )]
    GfwNotDone(u32),
}

/// The chip of an NV_PMC_BOOT_42 value, if tk can drive it.
pub fn identify(boot42: u32) -> Result<Chip, ChipError> {
    let id = (boot42 >> 20 & 0x3ff) as u16;
    let arch = Arch::of(boot42 >> 24 & 0x3f).ok_or(ChipError::Unknown(boot42))?;
    let name = CHIPS.iter().find(|c| c.0 == id).map(|c| c.1).ok_or(ChipError::Unknown(boot42))?;
    let why = match arch {
        Arch::Ampere if id == 0x170 => {
            ": GA100 boots through a different FWSEC layout (descriptor v2), which tk does not read yet"
        }
        Arch::Ampere | Arch::Ada => return Ok(Chip { arch, id, name }),
        Arch::BlackwellGb10x | Arch::BlackwellGb20x => {
            ": Blackwell boots its GSP through the FSP (fmc firmware), which tk does not drive yet"
        }
        Arch::Hopper => ": Hopper boots its GSP through the FSP, which tk does not drive",
        Arch::Turing => ": Turing is older than tk's SASS tables (sm_80 and later)",
    };
    Err(ChipError::Unsupported { name, arch, why })
}

/// A BAR0 register; all ones confirmed by the PCI vendor id is the lost link.
pub(super) fn read(t: &dyn Transport, off: u64) -> Result<u32, ChipError> {
    let v = t.read32(BAR_MMIO, off).map_err(ChipError::Transport)?;
    if v == u32::MAX && link_gone(t) {
        return Err(ChipError::LinkLost);
    }
    Ok(v)
}

/// Identifies the GPU behind `t`.
pub fn detect(t: &dyn Transport) -> Result<Chip, ChipError> {
    identify(read(t, BOOT_42)?)
}

/// Whether a GSP from an earlier driver (or an earlier run) still runs: WPR2 is set. Its
/// firmware must be stopped by a function reset before FWSEC-FRTS can run again.
pub fn gsp_left_running(t: &dyn Transport) -> Result<bool, ChipError> {
    Ok(read(t, WPR2_ADDR_HI)? != 0)
}

/// Whether the GPU's own boot firmware has finished (it sets up VRAM and the usable-size
/// register).
pub fn gfw_done(t: &dyn Transport) -> Result<bool, ChipError> {
    Ok(read(t, GFW_PRIV_LEVEL_MASK)? & 1 == 1 && read(t, GFW_BOOT_PROGRESS)? & 0xff == 0xff)
}

/// The usable VRAM in bytes.
pub fn usable_vram(t: &dyn Transport) -> Result<u64, ChipError> {
    Ok(u64::from(read(t, USABLE_FB_SIZE_IN_MB)?) << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_42_names_the_chip() {
        // GA102 (RTX 3090): architecture 0x17, implementation 2, revision A1.
        assert_eq!(identify(0x1720_a100).map(|c| c.name), Ok("GA102"));
        assert_eq!(identify(0x1940_a100).map(|c| (c.name, c.arch)), Ok(("AD104", Arch::Ada)));
        let e = identify(0x1b20_a100).expect_err("Blackwell");
        assert!(e.to_string().contains("GB202") && e.to_string().contains("FSP"), "{e}");
        assert!(matches!(identify(0x1700_a100), Err(ChipError::Unsupported { name: "GA100", .. })));
        assert!(matches!(identify(0x1f00_0000), Err(ChipError::Unknown(_))));
        assert!(matches!(identify(0x1710_0000), Err(ChipError::Unknown(_))));
    }
}
