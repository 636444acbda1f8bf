//! The simulated GSP falcon, as far as FWSEC-FRTS needs it: reset, core select, the DMA engine
//! (256-byte transfers from system memory by physical bus address into IMEM, marked secure, or
//! DMEM), the boot ROM's registers, and a start that runs a model of FWSEC. The model checks
//! what the real boot ROM and FWSEC would check structurally: the boot-ROM parameters match the
//! VBIOS descriptor, IMEM holds the VBIOS's code in secure blocks, DMEM holds its data with
//! the signature the fuses select at the descriptor's PKC offset (the cryptography is not
//! modelled), and the DMEM mapper carries a well-formed FRTS command for a region inside VRAM.
//! Then it sets WPR2 over the region, clears mailbox 0 and halts; otherwise it halts with an
//! error in mailbox 0 and the FRTS scratch register, and says why through `Transport::fault`.

use super::vbios::{self, DMEM_AT, ENGINE_MASK, IMEM_AT, SIGNATURE_VERSIONS, SIGS_AT, UCODE_ID};
use tk_gpu::nv::falcon::{
    BCR_CTRL, BOOTVEC, BROM_CURR_UCODE_ID, BROM_ENGIDMASK, BROM_PARAADDR0, CPUCTL, CPUCTL_ALIAS, CPUCTL_START,
    DMA_IDLE, DMA_IMEM, DMA_SECURE, DMACTL, DMATRFBASE, DMATRFBASE1, DMATRFCMD, DMATRFFBOFFS, DMATRFMOFFS, ENGINE,
    FBIF_ALLOW_PHYS, FBIF_CTL, FBIF_TRANSCFG0, HWCFG2, MAILBOX0, MAILBOX1, MOD_SEL, OS, RISCV_CPUCTL, RM,
    TRANSCFG_SYSMEM_PHYSICAL,
};
use tk_gpu::nv::vbios::{CMD_FRTS, FRTS_CMD_BYTES, SIGNATURE_BYTES};

/// IMEM and DMEM of the simulated GSP falcon.
pub const IMEM_BYTES: usize = 64 << 10;
pub const DMEM_BYTES: usize = 64 << 10;

/// The GSP falcon's state.
pub struct Falcon {
    /// "GSP" or "SEC2", for messages.
    pub name: &'static str,
    pub in_reset: bool,
    pub riscv: bool,
    pub halted: bool,
    /// The RISC-V core runs (GSP-RM, once booter_load has started it).
    pub riscv_active: bool,
    pub imem: Vec<u8>,
    pub imem_secure: Vec<bool>,
    /// Each IMEM block's tag (the virtual address >> 8 its DMA named).
    pub imem_tag: Vec<u32>,
    pub dmem: Vec<u8>,
    /// Registers written (offsets from the falcon's base) and read back as written.
    pub regs: std::collections::HashMap<u64, u32>,
}

impl Falcon {
    pub fn new(name: &'static str, running: bool) -> Falcon {
        Falcon {
            name,
            in_reset: false,
            riscv: running,
            halted: false,
            riscv_active: running,
            imem: vec![0; IMEM_BYTES],
            imem_secure: vec![false; IMEM_BYTES / 256],
            imem_tag: vec![0; IMEM_BYTES / 256],
            dmem: vec![0; DMEM_BYTES],
            regs: Default::default(),
        }
    }

    fn reg(&self, off: u64) -> u32 {
        self.regs.get(&off).copied().unwrap_or(0)
    }

    /// A register read (offset from the falcon's base), or None for one outside the model.
    pub fn read(&self, off: u64) -> Option<u32> {
        Some(match off {
            HWCFG2 => 1 << 10, // a RISC-V core is present; scrubbing done
            BCR_CTRL => u32::from(self.riscv) << 4 | 1,
            CPUCTL => u32::from(self.halted) << 4,
            RISCV_CPUCTL => u32::from(self.riscv_active) << 7,
            DMATRFCMD => self.reg(off) | DMA_IDLE,
            MAILBOX0 | MAILBOX1 | RM | OS | BOOTVEC | DMACTL | DMATRFBASE | DMATRFBASE1 | DMATRFMOFFS
            | DMATRFFBOFFS | FBIF_TRANSCFG0 | FBIF_CTL | MOD_SEL | BROM_CURR_UCODE_ID | BROM_ENGIDMASK
            | BROM_PARAADDR0 | ENGINE => self.reg(off),
            _ => return None,
        })
    }
}

/// What a falcon register write asks of the rest of the GPU.
pub enum Effect {
    None,
    /// A DMA transfer of 256 bytes from this bus address.
    Dma {
        bus: u64,
        imem: bool,
        secure: bool,
        dst: usize,
        tag: u32,
    },
    /// The CPU starts.
    Start,
}

impl Falcon {
    /// A register write (offset from the falcon's base); Err names what the model refuses.
    pub fn write(&mut self, off: u64, v: u32) -> Result<Effect, String> {
        match off {
            ENGINE => {
                if v & 1 != 0 {
                    *self = Falcon { in_reset: true, riscv: self.riscv, ..Falcon::new(self.name, false) };
                } else {
                    self.in_reset = false;
                }
                self.regs.insert(off, v);
                return Ok(Effect::None);
            }
            _ if self.in_reset => {
                return Err(format!("a write to {} falcon register {off:#x} while it is held in reset", self.name));
            }
            BCR_CTRL => self.riscv = v & (1 << 4) != 0,
            DMATRFCMD => {
                self.regs.insert(off, v);
                if (v >> 8) & 7 != 6 {
                    return Err(format!("a {} falcon DMA command {v:#x} of another size than 256 bytes", self.name));
                }
                if self.reg(FBIF_TRANSCFG0) & 7 != TRANSCFG_SYSMEM_PHYSICAL || self.reg(FBIF_CTL) & FBIF_ALLOW_PHYS == 0
                {
                    return Err(format!(
                        "a {} falcon DMA before its FBIF allows physical system-memory accesses",
                        self.name
                    ));
                }
                let (dst, fboffs) = (self.reg(DMATRFMOFFS), self.reg(DMATRFFBOFFS));
                if !dst.is_multiple_of(256) || !fboffs.is_multiple_of(256) || dst >= 1 << 24 {
                    return Err(format!(
                        "a {} falcon DMA of 256 bytes to {dst:#x} from offset {fboffs:#x}: both must be 256-byte aligned \
                         (and the destination below 16 MiB)",
                        self.name
                    ));
                }
                if v & DMA_SECURE != 0 && v & DMA_IMEM == 0 {
                    return Err(format!("a secure {} falcon DMA into DMEM (only IMEM is loaded secure)", self.name));
                }
                let base = (u64::from(self.reg(DMATRFBASE1) & 0x1ff) << 32 | u64::from(self.reg(DMATRFBASE))) << 8;
                return Ok(Effect::Dma {
                    bus: base + u64::from(fboffs),
                    imem: v & DMA_IMEM != 0,
                    secure: v & DMA_SECURE != 0,
                    dst: dst as usize,
                    tag: fboffs >> 8,
                });
            }
            CPUCTL | CPUCTL_ALIAS if v & CPUCTL_START != 0 => {
                if self.riscv {
                    return Err(format!(
                        "the {} falcon was started in RISC-V mode (core select) for a falcon image",
                        self.name
                    ));
                }
                return Ok(Effect::Start);
            }
            MAILBOX0 | MAILBOX1 | RM | OS | BOOTVEC | DMACTL | DMATRFBASE | DMATRFBASE1 | DMATRFMOFFS
            | DMATRFFBOFFS | FBIF_TRANSCFG0 | FBIF_CTL | MOD_SEL | BROM_CURR_UCODE_ID | BROM_ENGIDMASK
            | BROM_PARAADDR0 => {}
            _ => {
                return Err(format!(
                    "a write of {v:#x} to {} falcon register {off:#x}, which the model does not know",
                    self.name
                ));
            }
        }
        self.regs.insert(off, v);
        Ok(Effect::None)
    }

    /// Completes a DMA transfer with the 256 bytes read from system memory.
    pub fn dma_done(&mut self, bytes: &[u8], imem: bool, secure: bool, dst: usize, tag: u32) -> Result<(), String> {
        let (mem, what) = if imem { (&mut self.imem, "IMEM") } else { (&mut self.dmem, "DMEM") };
        let to = mem
            .get_mut(dst..dst + 256)
            .ok_or(format!("a {} falcon DMA to {what} {dst:#x}, beyond its size", self.name))?;
        to.copy_from_slice(bytes);
        if imem {
            self.imem_secure[dst / 256] = secure;
            self.imem_tag[dst / 256] = tag;
        }
        Ok(())
    }

    /// Runs FWSEC as the model has it (see the module's docs): Ok(the FRTS region's start and
    /// end in VRAM) or Err(an error code for the scratch register, and why).
    pub fn run_fwsec(&mut self, rom: &[u8], fuse_version: u32, vram: u64) -> Result<(u64, u64), (u32, String)> {
        self.halted = true;
        // The synthetic FWSEC's descriptor (vbios.rs): IMEM and DMEM both load at 0.
        let want = [
            (MOD_SEL, 1, "MOD_SEL (RSA-3K)"),
            (BROM_CURR_UCODE_ID, u32::from(UCODE_ID), "BROM_CURR_UCODE_ID"),
            (BROM_ENGIDMASK, u32::from(ENGINE_MASK), "BROM_ENGIDMASK"),
            (BROM_PARAADDR0, vbios::DMEM_PKC as u32, "BROM_PARAADDR0 (the signature's DMEM offset)"),
            (BOOTVEC, 0, "BOOTVEC"),
        ];
        for (reg, v, what) in want {
            if self.reg(reg) != v {
                return Err((2, format!("the boot ROM refuses FWSEC: {what} is {:#x}, not {v:#x}", self.reg(reg))));
            }
        }
        let imem = &rom[IMEM_AT..DMEM_AT];
        let base = 0;
        if self.imem.get(base..base + imem.len()) != Some(imem) {
            return Err((3, "the boot ROM refuses FWSEC: IMEM does not hold the VBIOS's FWSEC code".into()));
        }
        if !self.imem_secure[base / 256..(base + imem.len()).div_ceil(256)].iter().all(|&s| s) {
            return Err((3, "the boot ROM refuses FWSEC: its code was not loaded into secure IMEM".into()));
        }
        let dmem = self.dmem[..vbios::DMEM_BYTES].to_vec();
        let sig_at = vbios::DMEM_PKC;
        // The fuses' version is the highest set bit's position + 1; its signature follows those
        // of the lower versions the firmware carries.
        let version = (0..16).rev().find(|b| fuse_version >> b & 1 == 1).map_or(0, |b| b + 1);
        let k = (0..version).filter(|v| SIGNATURE_VERSIONS >> v & 1 == 1).count();
        let sig = rom.get(SIGS_AT + k * SIGNATURE_BYTES..SIGS_AT + (k + 1) * SIGNATURE_BYTES);
        if sig != dmem.get(sig_at..sig_at + SIGNATURE_BYTES) {
            return Err((
                4,
                format!(
                    "the boot ROM refuses FWSEC: the signature at DMEM {sig_at:#x} is not the one the fuses select (signature {k})"
                ),
            ));
        }
        // Everything else of DMEM as the VBIOS has it, but for the mapper's command and its
        // buffer, which the driver writes.
        let orig = &rom[DMEM_AT..DMEM_AT + dmem.len()];
        let mapper_cmd = vbios::DMEM_MAPPER + 0x2c;
        let cmd = vbios::DMEM_CMD_IN;
        let patched = |i: usize| {
            (sig_at..sig_at + SIGNATURE_BYTES).contains(&i)
                || (mapper_cmd..mapper_cmd + 4).contains(&i)
                || (cmd..cmd + FRTS_CMD_BYTES).contains(&i)
        };
        if let Some(i) = (0..dmem.len()).find(|&i| !patched(i) && dmem[i] != orig[i]) {
            return Err((5, format!("FWSEC's DMEM differs from the VBIOS's at {i:#x}")));
        }
        let word = |at: usize| u32::from_le_bytes([dmem[at], dmem[at + 1], dmem[at + 2], dmem[at + 3]]);
        if word(mapper_cmd) != CMD_FRTS {
            return Err((6, format!("FWSEC's DMEM mapper holds command {:#x}, not FRTS (0x15)", word(mapper_cmd))));
        }
        let got: Vec<u32> = (0..11).map(|k| word(cmd + 4 * k)).collect();
        let region = u64::from(got[8]) << 12;
        if got[..8] != [1, 24, 0, 0, 0, 2, 1, 20] || got[9] != 0x100 || got[10] != 2 {
            return Err((7, format!("a malformed FRTS command: {got:x?}")));
        }
        if region + (1 << 20) > vram {
            return Err((8, format!("the FRTS region at {region:#x} is not inside the {vram:#x} bytes of VRAM")));
        }
        Ok((region, region + (1 << 20)))
    }
}
