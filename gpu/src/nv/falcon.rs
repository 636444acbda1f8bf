//! The falcon microcontrollers (GSP, SEC2) as the driver runs heavy-secure firmware on them:
//! reset into falcon mode, DMA of the IMEM and DMEM images from system memory, the boot ROM's
//! signature parameters, start, and the wait for the halt. Then FWSEC-FRTS on the GSP falcon:
//! the firmware from the VBIOS with the FRTS command patched into its DMEM and the signature
//! the fuses select, which must leave WPR2 set at the requested region.
//!
//! Register offsets and sequences: open-gpu-kernel-modules' published `dev_falcon_v4.h`,
//! `dev_falcon_second_pri.h`, `dev_riscv_pri.h`, `dev_fbif_v4.h` (ga102) and nova-core's
//! `falcon.rs`, `falcon/hal/ga102.rs`, `firmware/fwsec.rs` and `gsp/boot.rs`; docs/nvidia-facts.md
//! lists them, and where the sources disagree (tk follows nova-core: DMEM DMA not secure, boot
//! vector 0, mailbox 0 written 0 and required 0 after the halt).

use super::chip;
use super::vbios::{Fwsec, SIGNATURE_BYTES};
use super::{BAR_MMIO, NvError};
use crate::transport::{SysMem, Transport};
use std::time::{Duration, Instant};

/// A falcon: its name and its register block in BAR0 (the second block, with the boot ROM and
/// RISC-V registers, is 0x1000 above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Falcon {
    pub name: &'static str,
    pub base: u64,
}

/// The GSP falcon (NV_PGSP, dev_gsp.h) and SEC2 (NV_PSEC, dev_sec_pri.h).
pub const GSP: Falcon = Falcon { name: "GSP", base: 0x11_0000 };
pub const SEC2: Falcon = Falcon { name: "SEC2", base: 0x84_0000 };

pub const MAILBOX0: u64 = 0x040;
pub const MAILBOX1: u64 = 0x044;
/// NV_PFALCON_FALCON_OS: the driver writes the RISC-V bootloader's version here after
/// booter_load (nova-core, nouveau r535, open-gpu-kernel-modules `kgspBootstrap_TU102`).
pub const OS: u64 = 0x080;
/// NV_PFALCON_FALCON_RM: the driver writes NV_PMC_BOOT_0 here after a reset.
pub const RM: u64 = 0x084;
/// Bit 12: memory scrubbing still running; bit 31: ready for reset (GA102+).
pub const HWCFG2: u64 = 0x0f4;
pub const HWCFG2_SCRUBBING: u32 = 1 << 12;
/// Bit 1 STARTCPU, bit 4 HALTED, bit 6 ALIAS_EN (start through CPUCTL_ALIAS instead).
pub const CPUCTL: u64 = 0x100;
pub const CPUCTL_START: u32 = 1 << 1;
pub const CPUCTL_HALTED: u32 = 1 << 4;
pub const CPUCTL_ALIAS_EN: u32 = 1 << 6;
pub const BOOTVEC: u64 = 0x104;
pub const DMACTL: u64 = 0x10c;
/// DMA: the source base >> 8 (and bits 48:40 of the address in DMATRFBASE1), the offset in
/// IMEM/DMEM, the command (bit 1 idle, bit 2 secure, bit 4 IMEM, bits 10:8 the size: 6 is
/// 256 bytes), and the source offset (for IMEM also the block's tag).
pub const DMATRFBASE: u64 = 0x110;
pub const DMATRFMOFFS: u64 = 0x114;
pub const DMATRFCMD: u64 = 0x118;
pub const DMATRFFBOFFS: u64 = 0x11c;
pub const DMATRFBASE1: u64 = 0x128;
pub const CPUCTL_ALIAS: u64 = 0x130;
pub const DMA_IDLE: u32 = 1 << 1;
pub const DMA_SECURE: u32 = 1 << 2;
pub const DMA_IMEM: u32 = 1 << 4;
pub const DMA_256B: u32 = 6 << 8;
/// NV_PFALCON_FALCON_ENGINE: bit 0 holds the falcon in reset.
pub const ENGINE: u64 = 0x3c0;
/// The FBIF: transfer configuration 0 (target coherent system memory = 1, physical = bit 2)
/// and the control register (bit 7: physical accesses without a context allowed).
pub const FBIF_TRANSCFG0: u64 = 0x600;
pub const FBIF_CTL: u64 = 0x624;
pub const TRANSCFG_SYSMEM_PHYSICAL: u32 = 1 | 1 << 2;
pub const FBIF_ALLOW_PHYS: u32 = 1 << 7;
/// The second block (base + 0x1000): the boot ROM's RSA-3K mode, the ucode id and engine mask
/// whose fuses select the signature, the DMEM offset of the signature, and the core select.
pub const MOD_SEL: u64 = 0x1180;
pub const BROM_CURR_UCODE_ID: u64 = 0x1198;
pub const BROM_ENGIDMASK: u64 = 0x119c;
pub const BROM_PARAADDR0: u64 = 0x1210;
pub const BCR_CTRL: u64 = 0x1668;
/// BCR_CTRL for the RISC-V core: CORE_SELECT (bit 4), VALID (bit 0) and BRFETCH (bit 8), as
/// open-gpu-kernel-modules' `kflcnResetIntoRiscv_GA102` and nouveau's `ga102_gsp_reset` write.
pub const BCR_CTRL_RISCV: u32 = 0x111;
/// NV_PRISCV_RISCV_CPUCTL (second block): bit 7 ACTIVE_STAT, the RISC-V core runs (GA102+).
pub const RISCV_CPUCTL: u64 = 0x1388;
pub const RISCV_ACTIVE: u32 = 1 << 7;
pub const MOD_SEL_RSA3K: u32 = 1;
/// NV_FUSE_OPT_FPF_SEC2_UCODE1_VERSION(i) and ..._GSP_...(i): the fuse version per ucode id
/// (bits 15:0).
pub const SEC2_FUSE_VERSION: u64 = 0x82_4140;
pub const GSP_FUSE_VERSION: u64 = 0x82_41c0;
/// NV_PBUS_SW_SCRATCH(0xE): bits 31:16 the FRTS error code (0 = success).
pub const FRTS_SCRATCH: u64 = 0x1438;

fn rd(t: &dyn Transport, off: u64) -> Result<u32, NvError> {
    Ok(chip::read(t, off)?)
}

fn wr(t: &dyn Transport, off: u64, v: u32) -> Result<(), NvError> {
    t.write32(BAR_MMIO, off, v).map_err(|e| NvError::Step { step: "falcon", detail: e })
}

/// Polls `off` until `done(value)`, within `timeout`.
fn poll(
    t: &dyn Transport,
    off: u64,
    timeout: Duration,
    what: &str,
    done: impl Fn(u32) -> bool,
) -> Result<u32, NvError> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = rd(t, off)?;
        if done(v) {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(NvError::Step {
                step: "falcon",
                detail: format!("{what}: register {off:#x} still reads {v:#x} after {timeout:?}"),
            });
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

impl Falcon {
    fn rd(&self, t: &dyn Transport, off: u64) -> Result<u32, NvError> {
        rd(t, self.base + off)
    }
    fn wr(&self, t: &dyn Transport, off: u64, v: u32) -> Result<(), NvError> {
        wr(t, self.base + off, v)
    }

    /// Resets the falcon and leaves it in falcon (not RISC-V) mode with its memories scrubbed.
    pub fn reset(&self, t: &dyn Transport, timeout: Duration) -> Result<(), NvError> {
        self.wr(t, ENGINE, 1)?;
        std::thread::sleep(Duration::from_micros(10));
        self.wr(t, ENGINE, 0)?;
        let scrub = format!("{} falcon memory scrubbing", self.name);
        poll(t, self.base + HWCFG2, timeout, &scrub, |v| v & HWCFG2_SCRUBBING == 0)?;
        if self.rd(t, BCR_CTRL)? & (1 << 4) != 0 {
            self.wr(t, BCR_CTRL, 0)?;
            poll(t, self.base + BCR_CTRL, timeout, &format!("{} core select", self.name), |v| v & 1 != 0)?;
        }
        let boot0 = rd(t, chip::BOOT_0)?;
        self.wr(t, RM, boot0)
    }

    /// Loads an image (in system memory at `sys`, which must be one bus segment) into the
    /// falcon in 256-byte DMA transfers: `imem` into IMEM (secure; each block's tag is its
    /// offset in the image), then `dmem` into DMEM.
    pub fn dma_load(
        &self,
        t: &dyn Transport,
        sys: &SysMem,
        imem: Load,
        dmem: Load,
        timeout: Duration,
    ) -> Result<(), NvError> {
        let end = |l: &Load| l.src as u64 + (l.len as u64).next_multiple_of(256);
        let need = end(&imem).max(end(&dmem));
        let bus = match sys.segments.first() {
            Some(&(bus, n))
                if n >= need
                    && bus.is_multiple_of(256)
                    && imem.len.is_multiple_of(256)
                    && imem.src.is_multiple_of(256)
                    && dmem.src.is_multiple_of(256)
                    && bus + need <= 1 << 49 =>
            {
                bus
            }
            _ => {
                return Err(NvError::Step {
                    step: "falcon",
                    detail: format!(
                        "the firmware's {need} bytes are not in one 256-byte aligned DMA segment below 2^49, or its \
                         IMEM ({} bytes at {:#x}) or DMEM (at {:#x}) is not whole 256-byte blocks",
                        imem.len, imem.src, dmem.src
                    ),
                });
            }
        };
        self.wr(t, FBIF_CTL, self.rd(t, FBIF_CTL)? | FBIF_ALLOW_PHYS)?;
        self.wr(t, DMACTL, 0)?;
        self.wr(t, FBIF_TRANSCFG0, TRANSCFG_SYSMEM_PHYSICAL)?;
        // IMEM: the base is the image, the source offset (which becomes the block's tag, its
        // virtual address) the offset in it. DMEM: the base is the data itself.
        let transfer = |base: u64, fboffs: u32, l: &Load, cmd: u32| -> Result<(), NvError> {
            self.wr(t, DMATRFBASE, (base >> 8) as u32)?;
            self.wr(t, DMATRFBASE1, ((base >> 40) & 0x1ff) as u32)?;
            for pos in (0..l.len).step_by(256) {
                let to = l.dst.checked_add(pos as u32).filter(|&a| a < 1 << 24).ok_or_else(|| NvError::Step {
                    step: "falcon",
                    detail: format!("a DMA to {:#x} + {pos:#x}, beyond the falcon's 24-bit memory offsets", l.dst),
                })?;
                self.wr(t, DMATRFMOFFS, to)?;
                self.wr(t, DMATRFFBOFFS, fboffs + pos as u32)?;
                self.wr(t, DMATRFCMD, cmd)?;
                poll(t, self.base + DMATRFCMD, timeout, &format!("{} DMA", self.name), |v| v & DMA_IDLE != 0)?;
            }
            Ok(())
        };
        transfer(bus, imem.src as u32, &imem, DMA_256B | DMA_IMEM | DMA_SECURE)?;
        transfer(bus + dmem.src as u64, 0, &dmem, DMA_256B)
    }

    /// Starts the falcon at `bootvec` with the mailboxes set (mailbox 0 cleared when none are
    /// given) and waits for it to halt; returns mailboxes 0 and 1.
    pub fn run(
        &self,
        t: &dyn Transport,
        bootvec: u32,
        mailboxes: Option<(u32, u32)>,
        timeout: Duration,
    ) -> Result<(u32, u32), NvError> {
        self.wr(t, BOOTVEC, bootvec)?;
        let (m0, m1) = mailboxes.unwrap_or((0, 0));
        self.wr(t, MAILBOX0, m0)?;
        if mailboxes.is_some() {
            self.wr(t, MAILBOX1, m1)?;
        }
        if self.rd(t, CPUCTL)? & CPUCTL_ALIAS_EN != 0 {
            self.wr(t, CPUCTL_ALIAS, CPUCTL_START)?;
        } else {
            self.wr(t, CPUCTL, CPUCTL_START)?;
        }
        poll(t, self.base + CPUCTL, timeout, &format!("{} falcon halt", self.name), |v| v & CPUCTL_HALTED != 0)?;
        Ok((self.rd(t, MAILBOX0)?, self.rd(t, MAILBOX1)?))
    }
}

/// One part of a falcon image to load: `len` bytes at offset `src` of the image in system
/// memory, to offset `dst` of IMEM or DMEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub src: usize,
    pub len: usize,
    pub dst: u32,
}

/// The index of the signature the fuse `version` register selects among those present in
/// `versions` (one bit per signature): the highest set fuse bit's position + 1 names the
/// version, and its signature is the one after every present lower version.
pub fn signature_index(fuse: u32, versions: u16) -> Option<usize> {
    let v = 32 - (fuse & 0xffff).leading_zeros();
    if v >= 16 || versions & (1 << v) == 0 {
        return None;
    }
    Some((versions & ((1u16 << v) - 1)).count_ones() as usize)
}

/// Runs FWSEC-FRTS on the GSP falcon: the FRTS command for `frts_addr` and the signature the
/// fuses select patched into the DMEM image, the image DMA'd from system memory, the boot ROM
/// told where the signature is, the falcon run to its halt; then mailbox 0, the FRTS error
/// scratch and WPR2 must say the region was set up where asked.
pub fn fwsec_frts(t: &dyn Transport, fw: &Fwsec, frts_addr: u64, timeout: Duration) -> Result<(), NvError> {
    let d = &fw.desc;
    let fail = |detail: String| NvError::Step { step: "fwsec-frts", detail };
    if rd(t, chip::WPR2_ADDR_HI)? != 0 {
        return Err(fail("WPR2 is already set: the GPU needs a reset first".into()));
    }
    let mut dmem = fw.frts_dmem(frts_addr).map_err(|e| fail(e.to_string()))?;
    if !(1..=16).contains(&d.ucode_id) || d.engine_id_mask & (1 << 10) == 0 {
        return Err(fail(format!(
            "the VBIOS's FWSEC is not for the GSP falcon (ucode id {}, engine mask {:#x}; the GSP is bit 10)",
            d.ucode_id, d.engine_id_mask
        )));
    }
    if d.signature_count > 0 {
        let fuse = rd(t, GSP_FUSE_VERSION + 4 * u64::from(d.ucode_id - 1))?;
        let k = signature_index(fuse, d.signature_versions).filter(|&k| k < fw.signatures.len()).ok_or_else(|| {
            fail(format!(
                "the GPU's fuses (version register {fuse:#x}) select no signature of the VBIOS's FWSEC \
                     (versions {:#x})",
                d.signature_versions
            ))
        })?;
        let at = d.pkc_data_offset as usize;
        let (slot, sig) = (at.checked_add(SIGNATURE_BYTES).and_then(|end| dmem.get_mut(at..end)), &fw.signatures[k]);
        match slot {
            Some(slot) if sig.len() == SIGNATURE_BYTES => slot.copy_from_slice(sig),
            _ => {
                return Err(fail(format!(
                    "the signature's place {at:#x} is outside FWSEC's DMEM, or it is not {SIGNATURE_BYTES} bytes"
                )));
            }
        }
    }
    let mut image = fw.imem.clone();
    image.extend_from_slice(&dmem);
    image.resize(fw.imem.len() + dmem.len().next_multiple_of(256), 0);
    let sys = t
        .sysmem(image.len().next_multiple_of(super::sysmem::HOST_PAGE))
        .map_err(|e| fail(format!("system memory for the firmware: {e}")))?;
    let mut copied = false;
    sys.mem.with(&mut |m| {
        if let Some(to) = m.get_mut(..image.len()) {
            to.copy_from_slice(&image);
            copied = true;
        }
    });
    if !copied {
        return Err(fail(format!("the transport gave less system memory than the {} bytes asked for", image.len())));
    }
    GSP.reset(t, timeout)?;
    let imem = Load { src: 0, len: fw.imem.len(), dst: d.imem_phys_base };
    GSP.dma_load(t, &sys, imem, Load { src: fw.imem.len(), len: dmem.len(), dst: d.dmem_phys_base }, timeout)?;
    GSP.wr(t, BROM_PARAADDR0, d.pkc_data_offset)?;
    GSP.wr(t, BROM_ENGIDMASK, u32::from(d.engine_id_mask))?;
    GSP.wr(t, BROM_CURR_UCODE_ID, u32::from(d.ucode_id))?;
    GSP.wr(t, MOD_SEL, MOD_SEL_RSA3K)?;
    let (mbox0, _) = GSP.run(t, 0, None, timeout)?;
    let scratch = rd(t, FRTS_SCRATCH)? >> 16;
    if mbox0 != 0 || scratch != 0 {
        let why = t.fault().map(|f| format!(": {f}")).unwrap_or_default();
        return Err(fail(format!("FWSEC reported failure (mailbox 0 {mbox0:#x}, FRTS error {scratch:#x}){why}")));
    }
    let (lo, hi) = (rd(t, chip::WPR2_ADDR_LO)?, rd(t, chip::WPR2_ADDR_HI)?);
    let start = u64::from(lo >> 4) << 12;
    if hi == 0 || start != frts_addr {
        return Err(fail(format!(
            "FWSEC halted cleanly but WPR2 is {lo:#x}..{hi:#x}, not the region at {frts_addr:#x} it was asked for"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuses_pick_a_signature() {
        // No fuse bit: version 0, the first signature if version 0 is present.
        assert_eq!(signature_index(0, 0b1), Some(0));
        // Fuse bit 1 set: version 2; versions 0, 1 and 2 present: the third signature.
        assert_eq!(signature_index(0b10, 0b111), Some(2));
        assert_eq!(signature_index(0b10, 0b101), Some(1));
        assert_eq!(signature_index(0b10, 0b011), None);
        assert_eq!(signature_index(0x8000, 0xffff), None);
    }
}
