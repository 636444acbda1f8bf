//! The cold simulated GPU's firmware processors, at the register level: the PSP's bootloader
//! and KM ring (firmware loads checked byte for byte against the blobs the card expects), the
//! SMU's mailbox, the RLC's autoload, the MEC's halt and program counter, the SDMA engine (its
//! ring, decoded packets, fences), and the checks that make a dispatch before a proper bring-up
//! an error naming the missing step. Register side effects run when the register is written.
//!
//! Addresses the PSP is given are the GPU's, translated by the MM hub ([`hub`]): VRAM through
//! the system aperture over the frame buffer, anything else through VM context 0's page tables
//! (the GART), which must be enabled.

use super::hub::{self, Which};
use super::{Inner, vram_range};
use std::collections::{BTreeSet, HashMap};
use tk_gpu::amd::boot::*;
use tk_gpu::amd::firmware::FirmwareSet;
use tk_gpu::amd::psp;
use tk_gpu::amd::regs::*;
use tk_gpu::amd::sdma;
use tk_gpu::amd::ucode::PspKind;

/// What the card's firmware processors have done since power-on.
#[derive(Default)]
pub(super) struct Chip {
    /// The firmware the card accepts (its signatures, in this model: the bytes themselves).
    pub fw: Option<FirmwareSet>,
    pub expected: HashMap<u32, Vec<u8>>,
    /// Bootloader commands done, in order.
    pub bootloader: Vec<u32>,
    pub sos_alive: bool,
    /// The KM ring (address, bytes) and its read pointer in dwords.
    pub ring: Option<(u64, u32)>,
    pub ring_rptr: u32,
    pub toc_loaded: bool,
    pub tmr: Option<(u64, u32)>,
    pub loaded: BTreeSet<u32>,
    pub autoload: bool,
    pub smu_table: (Option<u32>, Option<u32>),
    pub smu_features: bool,
    pub mec_running: bool,
    /// Whether the compute queue (MEC me 1 pipe 0 queue 0) is active: its HQD registers are
    /// the MEC's until a dequeue request drains it.
    pub hqd_active: bool,
    /// The SDMA queue's read pointer in bytes.
    pub sdma_rptr: u64,
    /// `hang`: the MEC takes work and never finishes it.
    pub hang: bool,
}

/// How many reads a mode-1 reset answers with all ones before the function is back.
pub(super) const MODE1_RESET_READS: u32 = 3;

/// The TMR size the model's PSP answers LOAD_TOC with.
pub const TOC_TMR_SIZE: u32 = 0x40_0000;

/// How the simulated GPU powers on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Power {
    /// Nothing ever ran: the whole bring-up is needed.
    #[default]
    Cold,
    /// tk booted it before (its scratch flag is set; the firmware runs).
    Warm,
    /// Another driver's firmware runs (no tk flag): a mode-1 reset first.
    LeftRunning,
}

impl Chip {
    /// A card that runs the firmware `fw` and takes exactly the pieces `expected` (by type).
    /// For synthetic firmware these come from how the blobs were made, not from the driver's
    /// reading of their headers; for linux-firmware's blobs (`expected` None) they are cut the
    /// way the driver cuts them (Linux's header layouts, `psp::load_order`).
    pub fn new(fw: Option<FirmwareSet>, expected: Option<HashMap<u32, Vec<u8>>>) -> Chip {
        let expected = match (expected, &fw) {
            (Some(e), _) => e,
            (None, Some(set)) => psp::load_order(set)
                .map(|order| order.into_iter().map(|p| (p.fw_type, p.bytes(set).to_vec())).collect())
                .unwrap_or_default(),
            (None, None) => HashMap::new(),
        };
        Chip { fw, expected, ..Chip::default() }
    }

    /// Back to power-on (a mode-1 or function-level reset), keeping the card's firmware.
    pub fn reset(&mut self) {
        let (fw, expected, hang) = (self.fw.take(), std::mem::take(&mut self.expected), self.hang);
        *self = Chip { fw, expected, hang, ..Chip::default() };
    }

    /// The register values at power-on.
    pub fn power_on(&mut self, regs: &mut HashMap<u32, u32>, map: &RegMap, how: Power) {
        regs.clear();
        let mut set = |r: Reg, v: u32| {
            regs.insert(map.byte(r) as u32, v);
        };
        set(RCC_CONFIG_MEMSIZE, (super::VRAM_BYTES >> 20) as u32);
        set(CP_MEC_RS64_CNTL, MEC_HALT);
        set(SDMA0_F32_CNTL, SDMA_HALT | SDMA_TH1_RESET);
        // The firmware places the frame buffer in the GPU's address space at power-on; the
        // driver reads where (Linux's gmc_v11_0 takes it from the MM hub).
        for h in [GFXHUB, MMHUB] {
            set(h.fb_base, (super::FB_BASE >> FB_LOCATION_SHIFT) as u32);
            set(h.fb_top, ((super::FB_BASE + super::VRAM_BYTES as u64 - 1) >> FB_LOCATION_SHIFT) as u32);
        }
        set(MMVM_INVALIDATE_ENG17_SEM, 1);
        if how == Power::Cold {
            set(MP0_C2PMSG_35, psp::BL_READY);
            set(CP_STAT, 0x8000_0000);
            return;
        }
        // Firmware running: the bootloader is gone, the sOS, SMU, RLC and MEC run.
        self.sos_alive = true;
        self.toc_loaded = true;
        self.loaded = self.expected.keys().copied().collect();
        self.autoload = true;
        self.smu_features = true;
        self.mec_running = true;
        // The previous driver's compute queue is still active.
        self.hqd_active = true;
        set(CP_HQD_ACTIVE, 1);
        set(MP0_C2PMSG_81, 1);
        set(MP0_C2PMSG_58, super::firmware::SOS_VERSION);
        set(MP0_C2PMSG_64, psp::BL_READY);
        set(MP1_C2PMSG_90, SMU_OK);
        set(RLC_RLCS_BOOTLOAD_STATUS, RLC_BOOTLOAD_COMPLETE);
        set(CP_MEC_RS64_CNTL, MEC_PIPE0_ACTIVE);
        set(RCC_DOORBELL_APER_EN, DOORBELL_APER_EN);
        if how == Power::Warm {
            set(SCRATCH_REG0, SCRATCH_BOOTED);
        }
    }

    fn component(&self, kind: PspKind) -> Option<Vec<u8>> {
        let sos = self.fw.as_ref()?.find("_sos.bin")?;
        sos.blob.component(&sos.bytes, kind).map(<[u8]>::to_vec)
    }
}

/// Reads or writes GPU memory at an address: the PSP's accesses go through the MM hub, the
/// SDMA engine's and the MEC's through the GFX hub ([`hub::access`]).
fn mc(i: &Inner, regs: &HashMap<u32, u32>, addr: u64, buf: &mut [u8], write: bool, which: Which) -> Result<(), String> {
    hub::access(i, regs, which, addr, buf, write)
}

fn read(i: &Inner, regs: &HashMap<u32, u32>, addr: u64, n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    mc(i, regs, addr, &mut b, false, Which::Mm)?;
    Ok(b)
}

/// What the SDMA engine or the MEC reads at `addr` (`n` bytes), through the page tables.
fn dma_read(i: &Inner, regs: &HashMap<u32, u32>, addr: u64, n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0u8; n];
    mc(i, regs, addr, &mut b, false, Which::Gfx)?;
    Ok(b)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The effect of writing `v` to `r`: Ok(()) or a fault naming what went wrong. `regs` holds the
/// value written already.
pub(super) fn on_write(
    i: &Inner,
    chip: &mut Chip,
    regs: &mut HashMap<u32, u32>,
    map: &RegMap,
    r: Reg,
    v: u32,
) -> Result<(), String> {
    let get = |regs: &HashMap<u32, u32>, r: Reg| regs.get(&(map.byte(r) as u32)).copied().unwrap_or(0);
    let set = |regs: &mut HashMap<u32, u32>, r: Reg, v: u32| {
        regs.insert(map.byte(r) as u32, v);
    };
    match r {
        MP0_C2PMSG_35 => {
            // A bootloader command.
            if chip.sos_alive {
                // The bootloader is gone once the sOS runs: nothing answers.
                set(regs, MP0_C2PMSG_35, 0);
                return Ok(());
            }
            let addr = u64::from(get(regs, MP0_C2PMSG_36)) << 20;
            let (kind, name) = match v {
                psp::BL_LOAD_KEY_DATABASE | psp::BL_LOAD_TOS_SPL_TABLE => (PspKind::Kdb, "the key database"),
                psp::BL_LOAD_SYSDRV => (PspKind::SysDrv, "the system driver"),
                psp::BL_LOAD_SOSDRV => (PspKind::Sos, "the sOS"),
                psp::BL_LOAD_SOCDRV => (PspKind::SocDrv, "the SOC driver"),
                psp::BL_LOAD_INTFDRV => (PspKind::IntfDrv, "the interface driver"),
                psp::BL_LOAD_DBGDRV => (PspKind::DbgDrv, "the debug driver"),
                psp::BL_LOAD_RASDRV => (PspKind::RasDrv, "the RAS driver"),
                _ => {
                    set(regs, MP0_C2PMSG_35, psp::BL_READY | 0x1);
                    return Err(format!("the PSP bootloader got unknown command {v:#x} (C2PMSG_35)"));
                }
            };
            let refuse = |regs: &mut HashMap<u32, u32>, m: String| {
                set(regs, MP0_C2PMSG_35, psp::BL_READY | 0x2);
                Err(m)
            };
            if v == psp::BL_LOAD_SOSDRV && !chip.bootloader.contains(&psp::BL_LOAD_SYSDRV) {
                return refuse(regs, "the PSP bootloader was asked to start the sOS before the system driver".into());
            }
            let Some(want) = chip.component(kind) else {
                return refuse(regs, format!("the card's sOS blob has no {kind} component"));
            };
            let got = match read(i, regs, addr, want.len()) {
                Ok(b) => b,
                Err(e) => return refuse(regs, format!("the PSP bootloader could not read {name}: {e}")),
            };
            if got != want {
                return refuse(
                    regs,
                    format!("the PSP bootloader refused {name} at {addr:#x}: not the card's signed image"),
                );
            }
            chip.bootloader.push(v);
            if v == psp::BL_LOAD_SOSDRV {
                chip.sos_alive = true;
                set(regs, MP0_C2PMSG_35, 0);
                set(regs, MP0_C2PMSG_81, 1);
                set(regs, MP0_C2PMSG_58, super::firmware::SOS_VERSION);
                set(regs, MP0_C2PMSG_64, psp::BL_READY);
            } else {
                set(regs, MP0_C2PMSG_35, psp::BL_READY);
            }
            Ok(())
        }
        MP0_C2PMSG_64 => {
            let ok = |regs: &mut HashMap<u32, u32>| set(regs, MP0_C2PMSG_64, psp::BL_READY);
            match v {
                psp::RING_CREATE_KM if chip.sos_alive && chip.ring.is_none() => {
                    let addr = u64::from(get(regs, MP0_C2PMSG_69)) | u64::from(get(regs, MP0_C2PMSG_70)) << 32;
                    let size = get(regs, MP0_C2PMSG_71);
                    if size < psp::RING_BYTES || !size.is_multiple_of(psp::FRAME_BYTES) {
                        set(regs, MP0_C2PMSG_64, psp::BL_READY | 0x3);
                        return Err(format!("the sOS refused a KM ring of {size} bytes"));
                    }
                    chip.ring = Some((addr, size));
                    chip.ring_rptr = 0;
                    ok(regs);
                    Ok(())
                }
                psp::RING_DESTROY if chip.sos_alive => {
                    chip.ring = None;
                    ok(regs);
                    Ok(())
                }
                _ if !chip.sos_alive => Ok(()),
                _ => {
                    set(regs, MP0_C2PMSG_64, psp::BL_READY | 0x1);
                    Err(format!(
                        "the sOS refused ring command {v:#x} (C2PMSG_64){}",
                        if chip.ring.is_some() { ": a KM ring exists" } else { "" }
                    ))
                }
            }
        }
        MP0_C2PMSG_67 => {
            let Some((base, size)) = chip.ring else {
                return Err("C2PMSG_67 (the KM ring's write pointer) was written, but no KM ring exists".into());
            };
            let dwords = size / 4;
            if !v.is_multiple_of(psp::FRAME_BYTES / 4) {
                return Err(format!(
                    "C2PMSG_67 (the KM ring's write pointer) was set to {v}, not a whole number of 16-dword frames"
                ));
            }
            while chip.ring_rptr != v % dwords {
                let frame = read(i, regs, base + u64::from(chip.ring_rptr) * 4, psp::FRAME_BYTES as usize)?;
                chip.ring_rptr = (chip.ring_rptr + psp::FRAME_BYTES / 4) % dwords;
                let cmd_addr =
                    u64::from(u32_at(&frame, psp::FRAME_CMD_LO)) | u64::from(u32_at(&frame, psp::FRAME_CMD_HI)) << 32;
                let fence = u64::from(u32_at(&frame, psp::FRAME_FENCE_LO))
                    | u64::from(u32_at(&frame, psp::FRAME_FENCE_HI)) << 32;
                let value = u32_at(&frame, psp::FRAME_FENCE_VALUE);
                let mut cmd = read(i, regs, cmd_addr, psp::CMD_BYTES)?;
                let (status, fault) = command(i, chip, regs, map, &mut cmd);
                cmd[psp::RESP_STATUS..psp::RESP_STATUS + 4].copy_from_slice(&status.to_le_bytes());
                mc(i, regs, cmd_addr, &mut cmd, true, Which::Mm)?;
                mc(i, regs, fence, &mut value.to_le_bytes(), true, Which::Mm)?;
                if let Some(f) = fault {
                    return Err(f);
                }
            }
            Ok(())
        }
        MP1_C2PMSG_66 => smu(i, chip, regs, map, v),
        GCVM_INVALIDATE_ENG17_REQ | MMVM_INVALIDATE_ENG17_REQ => {
            // The requested VMIDs' translations in that hub go; the acknowledgement names them.
            let which = if r == GCVM_INVALIDATE_ENG17_REQ { Which::Gfx } else { Which::Mm };
            let vmids = v & 0xffff;
            if vmids & 1 != 0 {
                i.tlb(which).lock().map_err(|_| "poisoned")?.clear();
            }
            set(regs, which.regs().ack, vmids);
            Ok(())
        }
        MMVM_INVALIDATE_ENG17_SEM => {
            // Released: the next read takes it again.
            set(regs, MMVM_INVALIDATE_ENG17_SEM, 1);
            Ok(())
        }
        GCVM_L2_PROTECTION_FAULT_CNTL | MMVM_L2_PROTECTION_FAULT_CNTL if v & FAULT_CLEAR != 0 => {
            let h = if r == GCVM_L2_PROTECTION_FAULT_CNTL { GFXHUB } else { MMHUB };
            for f in [h.fault_status, h.fault_addr.0, h.fault_addr.1] {
                set(regs, f, 0);
            }
            set(regs, r, v & !FAULT_CLEAR);
            Ok(())
        }
        IH_RB_CNTL => {
            if v & IH_WPTR_OVERFLOW_CLEAR != 0 {
                let w = get(regs, IH_RB_WPTR);
                set(regs, IH_RB_WPTR, w & !IH_RB_OVERFLOW);
            }
            if v & IH_RB_ENABLE != 0 {
                if v & (7 << 28) != IH_MC_SPACE_GPU {
                    return Err(format!(
                        "IH ring 0 was enabled with MC_SPACE {} (IH_RB_CNTL {v:#x}); the simulated GPU takes GPU \
                         addresses (4), as Linux programs it",
                        (v >> 28) & 7
                    ));
                }
                let base = u64::from(get(regs, IH_RB_BASE)) << 8 | u64::from(get(regs, IH_RB_BASE_HI) & 0xff) << 40;
                if base == 0 {
                    return Err("IH ring 0 was enabled without a base address (IH_RB_BASE)".into());
                }
            }
            Ok(())
        }
        CP_MEC_RS64_CNTL => {
            if v & MEC_HALT != 0 || v & MEC_PIPE0_ACTIVE == 0 {
                // Halted, or pipe 0 (tk's queue's) not active.
                chip.mec_running = false;
                return Ok(());
            }
            let entry = chip.fw.as_ref().and_then(|f| f.find("_mec.bin")).and_then(|m| psp::mec_entry(m).ok());
            let pc = (get(regs, CP_MEC_RS64_PRGRM_CNTR_START), get(regs, CP_MEC_RS64_PRGRM_CNTR_START_HI));
            let why = if !chip.autoload {
                Some("the RLC has not loaded its microcode (the psp step's AUTOLOAD_RLC)".to_string())
            } else if Some(pc) != entry {
                Some(format!(
                    "its program counter ({:#x}, {:#x}) is not the MEC firmware's entry point (the gfx step)",
                    pc.0, pc.1
                ))
            } else {
                None
            };
            if let Some(w) = why {
                return Err(format!("the MEC was un-halted (CP_MEC_RS64_CNTL) but {w}"));
            }
            chip.mec_running = true;
            Ok(())
        }
        CP_MEC_RS64_PRGRM_CNTR_START | CP_MEC_RS64_PRGRM_CNTR_START_HI => {
            let me = (get(regs, GRBM_GFX_CNTL) >> 2) & 3;
            if me != 1 {
                return Err(format!("{} was written with GRBM_GFX_CNTL selecting ME {me}, not the MEC (ME 1)", r.name));
            }
            Ok(())
        }
        CP_HQD_ACTIVE
        | CP_HQD_VMID
        | CP_HQD_PQ_BASE
        | CP_HQD_PQ_BASE_HI
        | CP_HQD_PQ_RPTR
        | CP_HQD_PQ_CONTROL
        | CP_HQD_PQ_DOORBELL_CONTROL
        | CP_HQD_DEQUEUE_REQUEST
        | CP_HQD_PQ_WPTR_LO
        | CP_HQD_PQ_WPTR_HI
        | CP_MQD_BASE_ADDR
        | CP_MQD_BASE_ADDR_HI
            if (get(regs, GRBM_GFX_CNTL) >> 2) & 3 != 1 =>
        {
            Err(format!(
                "{} was written with GRBM_GFX_CNTL selecting ME {}, not the MEC (ME 1) whose queue tk uses",
                r.name,
                (get(regs, GRBM_GFX_CNTL) >> 2) & 3
            ))
        }
        CP_HQD_VMID
        | CP_HQD_PQ_BASE
        | CP_HQD_PQ_BASE_HI
        | CP_HQD_PQ_RPTR
        | CP_HQD_PQ_CONTROL
        | CP_HQD_PQ_DOORBELL_CONTROL
        | CP_HQD_PQ_WPTR_LO
        | CP_HQD_PQ_WPTR_HI
        | CP_MQD_BASE_ADDR
        | CP_MQD_BASE_ADDR_HI
            if chip.hqd_active =>
        {
            Err(format!(
                "{} was written while the compute queue is active (CP_HQD_ACTIVE): the MEC owns an active \
                 queue's registers until a dequeue request (CP_HQD_DEQUEUE_REQUEST) drains it",
                r.name
            ))
        }
        CP_HQD_ACTIVE if v & 1 == 0 && chip.hqd_active => {
            set(regs, CP_HQD_ACTIVE, 1);
            Err("the active compute queue was switched off through CP_HQD_ACTIVE without a dequeue request \
                 (CP_HQD_DEQUEUE_REQUEST): the MEC may still be running it"
                .into())
        }
        CP_HQD_DEQUEUE_REQUEST if v & 0xf != 0 => {
            // The MEC drains the queue and lets it go (a hung queue never drains).
            if chip.hqd_active && !chip.hang {
                chip.hqd_active = false;
                set(regs, CP_HQD_ACTIVE, 0);
            }
            Ok(())
        }
        CP_HQD_ACTIVE if v & 1 == 1 => {
            if !chip.mec_running {
                return Err(
                    "the compute queue was activated (CP_HQD_ACTIVE) while the MEC is halted: the gfx step has not run"
                        .into(),
                );
            }
            if get(regs, RCC_DOORBELL_APER_EN) & DOORBELL_APER_EN == 0 {
                return Err(
                    "the compute queue was activated, but the doorbell aperture is off: the soc step has not run"
                        .into(),
                );
            }
            let db = get(regs, CP_HQD_PQ_DOORBELL_CONTROL) & DOORBELL_OFFSET_MASK;
            let (lo, hi) = (get(regs, CP_MEC_DOORBELL_RANGE_LOWER), get(regs, CP_MEC_DOORBELL_RANGE_UPPER));
            if db < lo || db > hi {
                return Err(format!(
                    "the queue's doorbell {db:#x} is outside the MEC's doorbell range {lo:#x}..={hi:#x} (the gfx step)"
                ));
            }
            // The MEC reads the queue's MQD: it must describe the queue the registers do.
            let mqd = u64::from(get(regs, CP_MQD_BASE_ADDR)) | u64::from(get(regs, CP_MQD_BASE_ADDR_HI)) << 32;
            if mqd == 0 {
                return Err("the compute queue was activated without an MQD (CP_MQD_BASE_ADDR)".into());
            }
            let m = dma_read(i, regs, mqd, MQD_BYTES).map_err(|e| format!("reading the MQD: {e}"))?;
            for reg in [
                CP_MQD_BASE_ADDR,
                CP_MQD_BASE_ADDR_HI,
                CP_HQD_VMID,
                CP_HQD_PQ_BASE,
                CP_HQD_PQ_BASE_HI,
                CP_HQD_PQ_RPTR,
                CP_HQD_PQ_CONTROL,
                CP_HQD_PQ_DOORBELL_CONTROL,
            ] {
                let at = 4 * (MQD_REGS_AT + (reg.offset - CP_MQD_BASE_ADDR.offset) as usize);
                if u32_at(&m, at) != get(regs, reg) {
                    return Err(format!(
                        "the MQD at {mqd:#x} has {:#x} for {}, the register {:#x}",
                        u32_at(&m, at),
                        reg.name,
                        get(regs, reg)
                    ));
                }
            }
            chip.hqd_active = true;
            Ok(())
        }
        SDMA0_F32_CNTL if v & SDMA_HALT == 0 => {
            for t in [psp::FW_SDMA_TH0, psp::FW_SDMA_TH1] {
                if !chip.loaded.contains(&t) {
                    return Err(format!(
                        "the SDMA engine was un-halted (SDMA0_F32_CNTL) without its microcode: {} was not loaded (the psp step)",
                        psp::fw_name(t)
                    ));
                }
            }
            Ok(())
        }
        SDMA0_QUEUE0_RB_RPTR => {
            chip.sdma_rptr = u64::from(v);
            Ok(())
        }
        MM_DATA => mm_data(i, regs, map, Some(v)).map(|_| ()),
        _ => Ok(()),
    }
}

/// A read (`write` None) or write of MM_DATA: the dword of VRAM (MM_INDEX bit 31 set; address
/// bits 0..30 there, the rest in MM_INDEX_HI) or of the registers (bit 31 clear) that MM_INDEX
/// names.
pub(super) fn mm_data(i: &Inner, regs: &HashMap<u32, u32>, map: &RegMap, write: Option<u32>) -> Result<u32, String> {
    let get = |r: Reg| regs.get(&(map.byte(r) as u32)).copied().unwrap_or(0);
    let index = get(MM_INDEX);
    if index & 0x8000_0000 == 0 {
        return Err(format!("MM_INDEX {index:#x} names a register; tk's driver reads VRAM through it (bit 31)"));
    }
    let addr = u64::from(index & 0x7fff_ffff) | u64::from(get(MM_INDEX_HI)) << 31;
    let mut vram = i.vram.lock().map_err(|_| "poisoned")?;
    let r = vram_range(vram.len(), addr, 4)?;
    match write {
        Some(v) => {
            vram[r].copy_from_slice(&v.to_le_bytes());
            i.hdp_dirty.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(v)
        }
        None => Ok(u32::from_le_bytes([vram[r.start], vram[r.start + 1], vram[r.start + 2], vram[r.start + 3]])),
    }
}

/// One KM ring command: its status, and a fault to report with a refusal.
fn command(
    i: &Inner,
    chip: &mut Chip,
    regs: &mut HashMap<u32, u32>,
    map: &RegMap,
    cmd: &mut [u8],
) -> (u32, Option<String>) {
    let id = u32_at(cmd, psp::CMD_ID);
    let w = |k: usize| u32_at(cmd, psp::CMD_BODY + 4 * k);
    let addr = u64::from(w(0)) | u64::from(w(1)) << 32;
    let refuse = |m: String| (1, Some(m));
    match id {
        psp::CMD_LOAD_TOC => {
            let Some(toc) = chip.component(PspKind::Toc) else { return refuse("LOAD_TOC: the card has no TOC".into()) };
            if w(2) as usize != toc.len() {
                return refuse(format!("LOAD_TOC of {} bytes: not the card's TOC", w(2)));
            }
            match read(i, regs, addr, toc.len()) {
                Ok(b) if b == toc => {
                    chip.toc_loaded = true;
                    cmd[psp::RESP_TMR_SIZE..psp::RESP_TMR_SIZE + 4].copy_from_slice(&TOC_TMR_SIZE.to_le_bytes());
                    (0, None)
                }
                Ok(_) => refuse("LOAD_TOC: not the card's TOC".into()),
                Err(e) => refuse(format!("LOAD_TOC: {e}")),
            }
        }
        psp::CMD_SETUP_TMR => {
            let size = w(2);
            // An address in the frame buffer, where the MM hub places it.
            let fb = u64::from(
                regs.get(&(map.byte(MMMC_VM_FB_LOCATION_BASE) as u32)).copied().unwrap_or(0) & FB_LOCATION_MASK,
            ) << FB_LOCATION_SHIFT;
            let in_vram = addr
                .checked_sub(fb)
                .and_then(|o| o.checked_add(u64::from(size)))
                .is_some_and(|end| end <= super::VRAM_BYTES as u64);
            if chip.component(PspKind::Toc).is_some() && !chip.toc_loaded {
                refuse("SETUP_TMR before LOAD_TOC".into())
            } else if !in_vram || !(addr - fb).is_multiple_of(psp::TMR_ALIGN) || size < TOC_TMR_SIZE {
                refuse(format!(
                    "SETUP_TMR at {addr:#x} of {size:#x} bytes: the TMR must be {TOC_TMR_SIZE:#x} bytes of VRAM, 1 MiB aligned"
                ))
            } else if let Err(e) = read(i, regs, addr, 4) {
                // The PSP reaches its TMR at that address through the MM hub: the system
                // aperture must cover the frame buffer.
                refuse(format!("SETUP_TMR at {addr:#x}: the PSP cannot reach it: {e}"))
            } else {
                chip.tmr = Some((addr, size));
                (0, None)
            }
        }
        psp::CMD_LOAD_IP_FW => {
            let (size, t) = (w(2) as usize, w(3));
            let Some(want) = chip.expected.get(&t) else {
                return refuse(format!("LOAD_IP_FW of {}, which this card does not take", psp::fw_name(t)));
            };
            if t != psp::FW_SMU && chip.tmr.is_none() {
                return refuse(format!("LOAD_IP_FW of {} before SETUP_TMR", psp::fw_name(t)));
            }
            if size != want.len() {
                return refuse(format!("LOAD_IP_FW of {size} bytes: not the card's {} image", psp::fw_name(t)));
            }
            match read(i, regs, addr, size) {
                Ok(b) if &b == want => {
                    chip.loaded.insert(t);
                    if t == psp::FW_SMU {
                        regs.insert(map.byte(MP1_C2PMSG_90) as u32, SMU_OK);
                    }
                    (0, None)
                }
                Ok(_) => refuse(format!(
                    "LOAD_IP_FW: {size} bytes at {addr:#x} are not the card's {} image",
                    psp::fw_name(t)
                )),
                Err(e) => refuse(format!("LOAD_IP_FW of {}: {e}", psp::fw_name(t))),
            }
        }
        psp::CMD_AUTOLOAD_RLC => {
            let missing: Vec<String> =
                chip.expected.keys().filter(|t| !chip.loaded.contains(t)).map(|t| psp::fw_name(*t)).collect();
            if !missing.is_empty() {
                return refuse(format!(
                    "AUTOLOAD_RLC before the GC firmware was loaded: {} missing",
                    missing.join(", ")
                ));
            }
            chip.autoload = true;
            regs.insert(map.byte(RLC_RLCS_BOOTLOAD_STATUS) as u32, RLC_BOOTLOAD_COMPLETE);
            regs.insert(map.byte(CP_STAT) as u32, 0);
            (0, None)
        }
        id => (psp::ERR_UNKNOWN_COMMAND, Some(format!("the PSP got unknown command {id:#x}"))),
    }
}

/// The SMU's answer to message `msg` (C2PMSG_66), with its argument in C2PMSG_82.
fn smu(i: &Inner, chip: &mut Chip, regs: &mut HashMap<u32, u32>, map: &RegMap, msg: u32) -> Result<(), String> {
    let at = |r: Reg| map.byte(r) as u32;
    if !chip.loaded.contains(&psp::FW_SMU) {
        // No SMU firmware: nothing answers.
        return Ok(());
    }
    let arg = regs.get(&at(MP1_C2PMSG_82)).copied().unwrap_or(0);
    let (resp, out) = match msg {
        SMU_GET_VERSION => (SMU_OK, Some(super::firmware::SMU_VERSION)),
        SMU_SET_DRIVER_TABLE_HI => {
            chip.smu_table.0 = Some(arg);
            (SMU_OK, None)
        }
        SMU_SET_DRIVER_TABLE_LO => {
            chip.smu_table.1 = Some(arg);
            (SMU_OK, None)
        }
        SMU_ENABLE_ALL_FEATURES if chip.smu_table.0.is_some() && chip.smu_table.1.is_some() => {
            chip.smu_features = true;
            (SMU_OK, None)
        }
        SMU_ENABLE_ALL_FEATURES => (0xfd, None),
        SMU_MODE1_RESET => {
            // The whole chip resets; the SMU answers first. The function leaves the bus for a
            // moment (reads return all ones) and comes back with its configuration space at
            // power-on values: memory decoding and bus mastering off until the driver restores
            // them.
            chip.reset();
            i.command.store(0, std::sync::atomic::Ordering::Relaxed);
            i.resetting.store(MODE1_RESET_READS, std::sync::atomic::Ordering::Relaxed);
            i.tlb.lock().map_err(|_| "poisoned")?.clear();
            let memsize = regs.get(&at(RCC_CONFIG_MEMSIZE)).copied();
            chip.power_on(regs, map, Power::Cold);
            if let Some(m) = memsize {
                regs.insert(at(RCC_CONFIG_MEMSIZE), m);
            }
            regs.insert(at(MP1_C2PMSG_90), SMU_OK);
            return Ok(());
        }
        _ => (0xfe, None),
    };
    if let Some(o) = out {
        regs.insert(at(MP1_C2PMSG_82), o);
    }
    regs.insert(at(MP1_C2PMSG_90), resp);
    Ok(())
}

/// Runs the SDMA queue up to write pointer `wptr` (bytes): copies and fences, through VM
/// context 0. Errors name the packet.
pub(super) fn run_sdma(
    i: &Inner,
    chip: &mut Chip,
    regs: &mut HashMap<u32, u32>,
    map: &RegMap,
    wptr: u64,
) -> Result<(), String> {
    let get = |r: Reg| regs.get(&(map.byte(r) as u32)).copied().unwrap_or(0);
    if get(SDMA0_F32_CNTL) & SDMA_HALT != 0 {
        return Err(
            "the SDMA doorbell rang while the engine is halted (SDMA0_F32_CNTL): the sdma step has not run".into()
        );
    }
    let cntl = get(SDMA0_QUEUE0_RB_CNTL);
    if cntl & SDMA_RB_ENABLE == 0 {
        return Err("the SDMA doorbell rang, but its ring is not enabled (SDMA0_QUEUE0_RB_CNTL)".into());
    }
    let size = 4u64 << ((cntl & SDMA_RB_SIZE_MASK) >> SDMA_RB_SIZE_SHIFT);
    let base = (u64::from(get(SDMA0_QUEUE0_RB_BASE)) | u64::from(get(SDMA0_QUEUE0_RB_BASE_HI)) << 32) << 8;
    if wptr < chip.sdma_rptr || wptr - chip.sdma_rptr > size || !wptr.is_multiple_of(4) {
        return Err(format!(
            "the SDMA write pointer {wptr} is not within one ring ({size} bytes) of its read pointer {}",
            chip.sdma_rptr
        ));
    }
    let mut words = Vec::new();
    let mut at = chip.sdma_rptr;
    while at < wptr {
        let b = dma_read(i, regs, base + at % size, 4).map_err(|e| format!("reading the SDMA ring: {e}"))?;
        words.push(u32_at(&b, 0));
        at += 4;
    }
    for p in sdma::decode(&words).map_err(|e| format!("the SDMA ring: {e}"))? {
        match p {
            sdma::Packet::Nop(_) | sdma::Packet::Trap { .. } => {}
            sdma::Packet::CopyLinear { src, dst, bytes } => {
                let mut b = dma_read(i, regs, src, bytes as usize).map_err(|e| format!("SDMA copy: {e}"))?;
                mc(i, regs, dst, &mut b, true, Which::Gfx).map_err(|e| format!("SDMA copy: {e}"))?;
            }
            sdma::Packet::Fence { addr, value } => {
                mc(i, regs, addr, &mut value.to_le_bytes(), true, Which::Gfx)
                    .map_err(|e| format!("SDMA fence: {e}"))?;
            }
        }
    }
    let wb = u64::from(get(SDMA0_QUEUE0_RB_RPTR_ADDR_LO)) | u64::from(get(SDMA0_QUEUE0_RB_RPTR_ADDR_HI)) << 32;
    chip.sdma_rptr = wptr;
    regs.insert(map.byte(SDMA0_QUEUE0_RB_RPTR) as u32, wptr as u32);
    regs.insert(map.byte(SDMA0_QUEUE0_RB_RPTR_HI) as u32, (wptr >> 32) as u32);
    if cntl & SDMA_RPTR_WRITEBACK != 0 && wb != 0 {
        mc(i, regs, wb, &mut wptr.to_le_bytes(), true, Which::Gfx)
            .map_err(|e| format!("SDMA read-pointer write-back: {e}"))?;
    }
    Ok(())
}
