//! Cold bring-up of an RDNA3 GPU, step by step, each a named stage of the driver's log
//! (`TK_LOG=driver`): warm-check, reset, soc, gmc (in the device module), ih, psp, smu, gfx,
//! sdma and queue. A step that fails says which step, which register or command, and what it
//! read back. docs/driver.md has each step's public source; the values here carry theirs in
//! [`super::regs`] and [`super::psp`].

use super::firmware::FirmwareSet;
use super::link::{LINK_LOST, link_gone, log};
use super::psp::{self, Piece};
use super::regs::*;
use super::sdma;
use crate::queue::GpuError;
use crate::transport::{SysMem, Transport};
use std::time::{Duration, Instant};

/// What SCRATCH_REG0 holds once tk has booted the GPU ("tk" and a layout version): the next
/// start finds the firmware running and re-initialises only the queues.
pub const SCRATCH_BOOTED: u32 = 0x746b_0001;

/// The SMU's messages (Linux's pm/swsmu/inc/pmfw_if/smu_v13_0_0_ppsmc.h) and its answer for
/// success (`PPSMC_Result_OK`; 0xFF failed, 0xFE unknown message, 0xFD a missing prerequisite).
pub const SMU_GET_VERSION: u32 = 0x2;
pub const SMU_ENABLE_ALL_FEATURES: u32 = 0x6;
pub const SMU_SET_DRIVER_TABLE_HI: u32 = 0xe;
pub const SMU_SET_DRIVER_TABLE_LO: u32 = 0xf;
pub const SMU_MODE1_RESET: u32 = 0x2f;
pub const SMU_OK: u32 = 1;

/// CP_MEC_RS64_CNTL bits (gc_11_0_0_sh_mask.h): invalidate the instruction cache, reset pipe 0,
/// halt.
pub const MEC_INVALIDATE_ICACHE: u32 = 0x10;
pub const MEC_PIPE0_RESET: u32 = 0x1_0000;
pub const MEC_PIPE0_ACTIVE: u32 = 0x400_0000;
pub const MEC_HALT: u32 = 0x4000_0000;
/// RLC_RLCS_BOOTLOAD_STATUS.BOOTLOAD_COMPLETE.
pub const RLC_BOOTLOAD_COMPLETE: u32 = 0x8000_0000;
/// GRBM_GFX_CNTL.MEID (bits 2..3): 1 selects the MEC's registers (PIPEID bits 0..1 and
/// QUEUEID bits 8..10 are 0: pipe 0, queue 0).
pub const GRBM_MEID_MEC: u32 = 1 << 2;
/// The PCI command register's memory-space (bit 1) and bus-master (bit 2) enables: the GPU's
/// DMA (PSP, SDMA, the command processor) needs bus mastering.
pub const PCI_COMMAND_MEMORY_MASTER: u32 = 0x6;
/// The PCI command register's bus master enable bit (PCI Local Bus Specification 3.0, 6.2.2).
pub const PCI_COMMAND_BUS_MASTER: u32 = 0x4;
/// CP_HQD_DEQUEUE_REQUEST.DEQUEUE_REQ = 1: drain the queue (gc_11_0_0_sh_mask.h; the value
/// Linux's gfx_v11_0 writes).
pub const HQD_DEQUEUE_DRAIN: u32 = 1;
/// SH_MEM_CONFIG: 64-bit addresses, unaligned accesses allowed (ALIGNMENT_MODE 3), instruction
/// prefetch 3, as gfx_v11_0.c programs every VMID.
pub const SH_MEM_CONFIG_VALUE: u32 = 1 | 3 << 2 | 3 << 14;
/// SH_MEM_BASES: shared aperture 1, private aperture 2 (gfx_v11_0.c).
pub const SH_MEM_BASES_VALUE: u32 = 1 << 16 | 2;

/// SDMA0_F32_CNTL: HALT (bit 0), TH1_RESET (bit 13).
pub const SDMA_HALT: u32 = 1;
pub const SDMA_TH1_RESET: u32 = 1 << 13;
/// SDMA0_QUEUE0_RB_CNTL: RB_ENABLE (bit 0), RB_SIZE (bits 1..5, log2 of the dwords),
/// RPTR_WRITEBACK_ENABLE (bit 12), RB_PRIV (bit 23).
pub const SDMA_RB_ENABLE: u32 = 1;
pub const SDMA_RB_SIZE_SHIFT: u32 = 1;
pub const SDMA_RB_SIZE_MASK: u32 = 0x3e;
pub const SDMA_RPTR_WRITEBACK: u32 = 1 << 12;
pub const SDMA_RB_PRIV: u32 = 1 << 23;
/// SDMA0_QUEUE0_DOORBELL.ENABLE (bit 28); IB_CNTL.IB_ENABLE (bit 0).
pub const SDMA_DOORBELL_ENABLE: u32 = 1 << 28;
pub const SDMA_IB_ENABLE: u32 = 1;
/// RCC_DOORBELL_APER_EN.BIF_DOORBELL_APER_EN.
pub const DOORBELL_APER_EN: u32 = 1;
/// The MQD (`struct v11_compute_mqd`, 2048 bytes): dword 0x80 + k mirrors register
/// CP_MQD_BASE_ADDR + k (Linux's v11_structs.h).
pub const MQD_BYTES: usize = 2048;
pub const MQD_REGS_AT: usize = 0x80;

/// What the warm check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootState {
    /// No firmware running: the whole bring-up.
    Cold,
    /// tk booted this GPU before (SCRATCH_REG0): the firmware runs; only the queues are set up.
    Warm,
    /// Another driver's firmware runs: a mode-1 reset first, then the whole bring-up.
    LeftRunning,
}

impl std::fmt::Display for BootState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BootState::Cold => "cold (no firmware was running; tk booted it)",
            BootState::Warm => "warm (tk's firmware was running; tk set up its queues again)",
            BootState::LeftRunning => "left running by another driver (tk reset it with a mode-1 reset and booted it)",
        })
    }
}

/// The register side of a bring-up: reads and writes that name their step, and waits bounded by
/// the driver's timeout.
pub(super) struct Regs<'a> {
    pub t: &'a dyn Transport,
    pub map: &'a RegMap,
    pub timeout: Duration,
}

impl Regs<'_> {
    /// What the device reported, if anything, for an error message.
    pub fn said(&self) -> String {
        self.t.fault().map(|f| format!(" (the device reports: {f})")).unwrap_or_default()
    }

    fn lost(&self, step: &str, m: String) -> GpuError {
        if link_gone(self.t) { GpuError::Link(LINK_LOST.into()) } else { GpuError::Setup(format!("{step}: {m}")) }
    }

    /// Reads `r`; an all-ones value from a GPU whose vendor id also reads all ones is a lost link.
    pub fn r(&self, step: &str, r: Reg) -> Result<u32, GpuError> {
        let v = self.t.read32(super::BAR_MMIO, self.map.byte(r)).map_err(|m| self.lost(step, m))?;
        if v == u32::MAX && link_gone(self.t) {
            return Err(GpuError::Link(LINK_LOST.into()));
        }
        Ok(v)
    }

    pub fn w(&self, step: &str, r: Reg, v: u32) -> Result<(), GpuError> {
        self.t
            .write32(super::BAR_MMIO, self.map.byte(r), v)
            .map_err(|m| self.lost(step, format!("writing {v:#x} to {}: {m}", r.name)))
    }

    /// Reads `r` until `ok` holds; past the timeout, an error naming what the step waited for
    /// and the value it read last.
    pub fn poll(&self, step: &str, r: Reg, what: &str, ok: impl Fn(u32) -> bool) -> Result<u32, GpuError> {
        let start = Instant::now();
        loop {
            let v = self.r(step, r)?;
            if ok(v) {
                return Ok(v);
            }
            if start.elapsed() > self.timeout {
                return Err(GpuError::Setup(format!(
                    "{step}: waited {} ms (TK_GPU_TIMEOUT_MS) for {what}; {} reads {v:#x}{}",
                    self.timeout.as_millis(),
                    r.name,
                    self.said()
                )));
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Puts `msg` with `arg` in the SMU's mailbox once it has answered the last message, without
    /// waiting for the answer.
    pub fn smu_send(&self, step: &str, msg: u32, arg: u32) -> Result<(), GpuError> {
        self.poll(step, MP1_C2PMSG_90, "the SMU to take a message", |v| v != 0)?;
        self.w(step, MP1_C2PMSG_90, 0)?;
        self.w(step, MP1_C2PMSG_82, arg)?;
        self.w(step, MP1_C2PMSG_66, msg)
    }

    /// Sends the SMU `msg` with `arg` through its mailbox (Linux's smu_cmn.c: wait for the last
    /// answer, clear it, write the argument and the message, wait for the answer) and returns
    /// the argument register's value after it.
    pub fn smu(&self, step: &str, msg: u32, arg: u32, name: &str) -> Result<u32, GpuError> {
        self.smu_send(step, msg, arg)?;
        let resp = self.poll(step, MP1_C2PMSG_90, &format!("the SMU's answer to {name}"), |v| v != 0)?;
        if resp != SMU_OK {
            let why = match resp {
                0xff => "failed",
                0xfe => "unknown message",
                0xfd => "a prerequisite is missing",
                _ => "an unexpected answer",
            };
            return Err(GpuError::Setup(format!(
                "{step}: the SMU answered {name} (message {msg:#x}) with {resp:#x} ({why})"
            )));
        }
        self.r(step, MP1_C2PMSG_82)
    }
}

/// Where things live in the driver's system memory during bring-up: offsets and the GPU virtual
/// address of offset 0.
pub(super) struct Sys<'a> {
    pub mem: &'a SysMem,
    pub va: u64,
}

impl Sys<'_> {
    pub fn write(&self, off: u64, src: &[u8]) {
        let o = off as usize;
        self.mem.mem.with(&mut |m: &mut [u8]| m[o..o + src.len()].copy_from_slice(src));
    }
    pub fn read_u32(&self, off: u64) -> u32 {
        let o = off as usize;
        let mut b = [0u8; 4];
        self.mem.mem.with(&mut |m: &mut [u8]| b.copy_from_slice(&m[o..o + 4]));
        u32::from_le_bytes(b)
    }
}

/// The warm check: SCRATCH_REG0 and the sOS's sign of life (C2PMSG_81).
pub(super) fn warm_check(r: &Regs<'_>) -> Result<BootState, GpuError> {
    let scratch = r.r("warm-check", SCRATCH_REG0)?;
    let sos = r.r("warm-check", MP0_C2PMSG_81)?;
    let state = match (sos != 0, scratch == SCRATCH_BOOTED) {
        (false, _) => BootState::Cold,
        (true, true) => BootState::Warm,
        (true, false) => BootState::LeftRunning,
    };
    log("warm-check", || format!("SCRATCH_REG0 {scratch:#x}, sOS sign of life (C2PMSG_81) {sos:#x}: {state}"));
    Ok(state)
}

/// The dwords of the PCI configuration header a reset loses and the driver writes back, in
/// the order they are restored (Linux's pci_restore_config_space writes the header from the
/// top down): interrupt line, expansion ROM, BARs 5 to 0, cache line size and latency timer,
/// and last the command register, so that decoding starts once the BARs are in place.
/// How long a function may stay off the bus after its mode-1 reset before it counts as lost
/// (Linux sleeps 500 ms after SMU 13's Mode1Reset, then polls the VRAM size register).
const RESET_WINDOW: Duration = Duration::from_secs(2);

const PCI_HEADER_RESTORED: [u16; 10] = [0x3c, 0x30, 0x24, 0x20, 0x1c, 0x18, 0x14, 0x10, 0x0c, 0x04];

/// A mode-1 reset through the SMU (Linux's amdgpu_device_mode1_reset): the PCI configuration
/// header saved and bus mastering switched off first; after the message, a wait until the
/// function answers again (all-ones reads are expected while it is in reset, and are not a
/// lost link until the timeout runs out); the header written back; then a wait for the
/// bootloader of the reset GPU.
pub(super) fn reset(r: &Regs<'_>) -> Result<(), GpuError> {
    let t = r.t;
    let cfg = |e: String| GpuError::Setup(format!("reset: the PCI configuration space: {e}"));
    let mut saved = Vec::new();
    for off in PCI_HEADER_RESTORED {
        saved.push((off, t.config_read(off, 4).map_err(cfg)?));
    }
    let command = t.config_read(4, 2).map_err(cfg)?;
    // Bus mastering off while the chip resets (pci_clear_master). A transport that cannot
    // write configuration space (the DriverKit extension owns it) leaves it to the extension.
    let writable = t.config_write(4, 2, command & !PCI_COMMAND_BUS_MASTER).is_ok();
    // The SMU resets the chip instead of answering: the message is sent, not waited for.
    r.smu_send("reset", SMU_MODE1_RESET, 0)?;
    let start = Instant::now();
    let window = r.timeout.min(RESET_WINDOW);
    loop {
        let vendor = t.config_read(0, 2).unwrap_or(0xffff);
        let memsize = t.read32(super::BAR_MMIO, r.map.byte(RCC_CONFIG_MEMSIZE)).unwrap_or(u32::MAX);
        if vendor != 0xffff && memsize != u32::MAX {
            break;
        }
        if start.elapsed() > window {
            return Err(GpuError::Link(format!(
                "{LINK_LOST} (it did not come back within {} ms of its mode-1 reset)",
                window.as_millis()
            )));
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    if writable {
        for (off, v) in saved {
            let v = if off == 4 { v & 0xffff } else { v };
            let width = if off == 4 { 2 } else { 4 };
            t.config_write(off, width, v).map_err(cfg)?;
        }
    }
    r.poll("reset", MP0_C2PMSG_81, "the old sOS to stop after the mode-1 reset", |v| v == 0)?;
    r.poll("reset", MP0_C2PMSG_35, "the bootloader after the mode-1 reset", |v| v == psp::BL_READY)?;
    log("reset", || {
        format!(
            "mode-1 reset through the SMU (Mode1Reset); PCI configuration header {}; the bootloader is ready again",
            if writable { "restored" } else { "left to the transport" }
        )
    });
    Ok(())
}

/// Takes the compute queue GRBM_GFX_CNTL selects off the MEC if it is active (a previous run's,
/// on a warm start): a dequeue request, a wait until the MEC has drained it, the request
/// cleared and the queue's pointers zeroed (Linux's gfx_v11_0 kiq/kcq init_register).
pub(super) fn dequeue(r: &Regs<'_>) -> Result<bool, GpuError> {
    if r.r("queue", CP_HQD_ACTIVE)? & 1 == 0 {
        return Ok(false);
    }
    r.w("queue", CP_HQD_DEQUEUE_REQUEST, HQD_DEQUEUE_DRAIN)?;
    r.poll("queue", CP_HQD_ACTIVE, "the MEC to drain the previous compute queue (CP_HQD_DEQUEUE_REQUEST)", |v| {
        v & 1 == 0
    })?;
    r.w("queue", CP_HQD_DEQUEUE_REQUEST, 0)?;
    r.w("queue", CP_HQD_PQ_RPTR, 0)?;
    r.w("queue", CP_HQD_PQ_WPTR_LO, 0)?;
    r.w("queue", CP_HQD_PQ_WPTR_HI, 0)?;
    Ok(true)
}

/// The SOC step: the doorbell aperture; the VRAM size from RCC_CONFIG_MEMSIZE.
pub(super) fn soc(r: &Regs<'_>) -> Result<u64, GpuError> {
    r.w("soc", RCC_DOORBELL_APER_EN, DOORBELL_APER_EN)?;
    // The HDP flush goes through a hole in the register BAR (nbio_v4_3 remap_hdp_registers).
    r.w("soc", REMAP_HDP_MEM_FLUSH_CNTL, HDP_FLUSH_HOLE as u32)?;
    r.w("soc", REMAP_HDP_REG_FLUSH_CNTL, HDP_FLUSH_HOLE as u32 + 4)?;
    let mib = r.r("soc", RCC_CONFIG_MEMSIZE)?;
    log("soc", || {
        format!(
            "doorbell aperture enabled; HDP flush at register BAR offset {HDP_FLUSH_HOLE:#x}; \
             RCC_CONFIG_MEMSIZE says {mib} MiB of VRAM"
        )
    });
    Ok(u64::from(mib) << 20)
}

/// Flushes the HDP, the host data path's write cache, so that what the CPU wrote to VRAM
/// through the BAR (page tables) reaches the GPU's engines: a write of 0 to the remapped flush
/// register, read back to post it (Linux's hdp_v6_0 flush_hdp).
pub fn hdp_flush(t: &dyn Transport) -> Result<(), String> {
    t.write32(super::BAR_MMIO, HDP_FLUSH_HOLE, 0)?;
    t.read32(super::BAR_MMIO, HDP_FLUSH_HOLE).map(|_| ())
}

/// Invalidates VMID 0's translations in hub `h`'s TLBs: invalidation engine 17's request and
/// its acknowledgement, with the engine's semaphore held on the MM hub (Linux's
/// gmc_v11_0_flush_gpu_tlb, MMIO path).
pub fn flush_hub(t: &dyn Transport, map: &RegMap, h: &Hub, limit: Duration) -> Result<(), GpuError> {
    let link = |m: String| GpuError::Link(m);
    let start = Instant::now();
    let wait = |r: Reg, ok: &dyn Fn(u32) -> bool| -> Result<(), GpuError> {
        loop {
            let v = t.read32(super::BAR_MMIO, map.byte(r)).map_err(link)?;
            if v == u32::MAX && link_gone(t) {
                return Err(GpuError::Link(LINK_LOST.into()));
            }
            if ok(v) {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(GpuError::Timeout { limit, var: "TK_GPU_TIMEOUT_MS" });
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    };
    if let Some(sem) = h.sem {
        wait(sem, &|v| v & 1 != 0)?;
    }
    t.write32(super::BAR_MMIO, map.byte(h.req), INVALIDATE_VMID0).map_err(link)?;
    wait(h.ack, &|v| v & 1 != 0)?;
    if let Some(sem) = h.sem {
        t.write32(super::BAR_MMIO, map.byte(sem), 0).map_err(link)?;
    }
    Ok(())
}

/// The GMC step for one hub (gfxhub_v3_0 / mmhub_v3_0 gart_enable): the frame buffer's place,
/// read from the hub (the firmware sets it); VM context 0's page table at `root` over the whole
/// 48-bit space; the AGP aperture closed; the system aperture over the frame buffer, with
/// `scratch` (a VRAM page) for accesses that miss it; the L1 TLB, the L2 cache and the fault
/// defaults; context 0 enabled with four levels. Returns the frame buffer's first and last
/// address.
pub(super) fn hub(r: &Regs<'_>, h: &Hub, root: u64, scratch: u64) -> Result<(u64, u64), GpuError> {
    let s = "gmc";
    let (base, top) = (r.r(s, h.fb_base)? & FB_LOCATION_MASK, r.r(s, h.fb_top)? & FB_LOCATION_MASK);
    if base > top {
        return Err(GpuError::Setup(format!(
            "gmc: the {}'s frame buffer location is empty ({} {base:#x}, {} {top:#x}): the GPU's firmware did not \
             place it",
            h.name, h.fb_base.name, h.fb_top.name
        )));
    }
    let fb = (u64::from(base) << FB_LOCATION_SHIFT, (u64::from(top) << FB_LOCATION_SHIFT) | 0xff_ffff);
    r.w(s, h.table_base.0, root as u32 | PTE_VALID as u32)?;
    r.w(s, h.table_base.1, (root >> 32) as u32)?;
    // The context's range, in pages (address >> 12, the high half >> 44): all of the 48-bit
    // space the four levels reach.
    let last = (1u64 << 48) - 1;
    r.w(s, h.start.0, 0)?;
    r.w(s, h.start.1, 0)?;
    r.w(s, h.end.0, (last >> 12) as u32)?;
    r.w(s, h.end.1, (last >> 44) as u32)?;
    // AGP closed (its bottom above its top), the system aperture over the frame buffer.
    r.w(s, h.agp_base, 0)?;
    r.w(s, h.agp_bot, FB_LOCATION_MASK)?;
    r.w(s, h.agp_top, 0)?;
    r.w(s, h.aperture_low, (fb.0 >> APERTURE_SHIFT) as u32)?;
    r.w(s, h.aperture_high, (fb.1 >> APERTURE_SHIFT) as u32)?;
    r.w(s, h.default_lsb, (scratch >> 12) as u32)?;
    r.w(s, h.default_msb, (scratch >> 44) as u32)?;
    let l1 = r.r(s, h.l1_tlb_cntl)?;
    r.w(s, h.l1_tlb_cntl, (l1 & !L1_TLB_CNTL_FIELDS) | L1_TLB_CNTL)?;
    let l2 = r.r(s, h.l2_cntl[0])?;
    r.w(s, h.l2_cntl[0], (l2 & !L2_CNTL_CLEAR) | L2_CNTL_SET)?;
    let l2b = r.r(s, h.l2_cntl[1])?;
    r.w(s, h.l2_cntl[1], l2b | L2_CNTL2)?;
    r.w(s, h.l2_cntl[2], L2_CNTL3)?;
    r.w(s, h.l2_cntl[3], L2_CNTL4)?;
    r.w(s, h.l2_cntl[4], L2_CNTL5)?;
    let f = r.r(s, h.fault_cntl)?;
    r.w(s, h.fault_cntl, f | FAULT_ENABLE_DEFAULTS)?;
    // Four levels: PAGE_TABLE_DEPTH 3.
    r.w(s, h.context0_cntl, VM_CONTEXT_ENABLE | 3 << VM_PAGE_TABLE_DEPTH_SHIFT)?;
    Ok(fb)
}

/// The IH step: interrupt ring 0 in system memory, its write pointer written back next to it
/// (ih_v6_0 irq_init and enable_ring). tk reads the ring while it waits for the GPU instead
/// of taking interrupts, so ENABLE_INTR stays off; VM faults arrive there.
pub(super) fn ih(r: &Regs<'_>, ring_va: u64, log2_dwords: u32, wb_va: u64) -> Result<(), GpuError> {
    let s = "ih";
    let off = r.r(s, IH_RB_CNTL)?;
    r.w(s, IH_RB_CNTL, off & !(IH_RB_ENABLE | IH_ENABLE_INTR))?;
    r.w(s, IH_RB_RPTR, 0)?;
    r.w(s, IH_RB_WPTR, 0)?;
    r.w(s, IH_RB_BASE, (ring_va >> 8) as u32)?;
    r.w(s, IH_RB_BASE_HI, ((ring_va >> 40) & 0xff) as u32)?;
    let cntl =
        IH_MC_SPACE_GPU | IH_WPTR_OVERFLOW_ENABLE | log2_dwords << IH_RB_SIZE_SHIFT | IH_WPTR_WRITEBACK | IH_MC_SNOOP;
    r.w(s, IH_RB_CNTL, cntl | IH_WPTR_OVERFLOW_CLEAR)?;
    r.w(s, IH_RB_WPTR_ADDR_LO, wb_va as u32)?;
    r.w(s, IH_RB_WPTR_ADDR_HI, ((wb_va >> 32) & 0xffff) as u32)?;
    r.w(s, IH_RB_WPTR, 0)?;
    r.w(s, IH_RB_RPTR, 0)?;
    r.w(s, IH_DOORBELL_RPTR, 0)?;
    // Enabled, with the overflow flag pulsed clear.
    r.w(s, IH_RB_CNTL, cntl | IH_RB_ENABLE)?;
    r.w(s, IH_RB_CNTL, cntl | IH_RB_ENABLE | IH_WPTR_OVERFLOW_CLEAR)?;
    r.w(s, IH_RB_CNTL, cntl | IH_RB_ENABLE)?;
    log(s, || {
        format!(
            "interrupt ring 0: {} KiB at 0x{ring_va:x}, write pointer written back to 0x{wb_va:x}; read while waiting \
             (no MSI)",
            (4u64 << log2_dwords) >> 10
        )
    });
    Ok(())
}

/// The PSP's KM ring and its command buffer in the driver's system memory.
pub(super) struct PspRing {
    /// Offsets in system memory of the ring, the command buffer, the fence.
    pub ring: u64,
    pub cmd: u64,
    pub fence: u64,
    /// The staging area (1 MiB aligned in the GPU's address space) firmware is copied to.
    pub staging: u64,
    pub staging_bytes: u64,
    wptr: u32,
    seq: u32,
}

impl PspRing {
    pub fn new(ring: u64, cmd: u64, fence: u64, staging: u64, staging_bytes: u64) -> PspRing {
        PspRing { ring, cmd, fence, staging, staging_bytes, wptr: 0, seq: 0 }
    }
}

fn stage(sys: &Sys<'_>, ring: &PspRing, what: &str, bytes: &[u8]) -> Result<u64, GpuError> {
    if bytes.len() as u64 > ring.staging_bytes {
        return Err(GpuError::Setup(format!(
            "psp: {what} has {} bytes; the driver stages at most {}",
            bytes.len(),
            ring.staging_bytes
        )));
    }
    sys.write(ring.staging, bytes);
    Ok(sys.va + ring.staging)
}

/// Sends one command through the KM ring and waits for its fence; returns the command buffer
/// with the response.
fn command(
    r: &Regs<'_>,
    sys: &Sys<'_>,
    ring: &mut PspRing,
    id: u32,
    body: &[u32],
    what: &str,
) -> Result<Vec<u8>, GpuError> {
    let mut cmd = vec![0u8; psp::CMD_BYTES];
    cmd[psp::CMD_ID..psp::CMD_ID + 4].copy_from_slice(&id.to_le_bytes());
    for (k, w) in body.iter().enumerate() {
        let at = psp::CMD_BODY + 4 * k;
        cmd[at..at + 4].copy_from_slice(&w.to_le_bytes());
    }
    sys.write(ring.cmd, &cmd);
    ring.seq += 1;
    let (cmd_va, fence_va) = (sys.va + ring.cmd, sys.va + ring.fence);
    let mut frame = [0u8; psp::FRAME_BYTES as usize];
    let put = |f: &mut [u8], at: usize, v: u32| f[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(&mut frame, psp::FRAME_CMD_LO, cmd_va as u32);
    put(&mut frame, psp::FRAME_CMD_HI, (cmd_va >> 32) as u32);
    put(&mut frame, psp::FRAME_FENCE_LO, fence_va as u32);
    put(&mut frame, psp::FRAME_FENCE_HI, (fence_va >> 32) as u32);
    put(&mut frame, psp::FRAME_FENCE_VALUE, ring.seq);
    let ring_dwords = psp::RING_BYTES / 4;
    sys.write(ring.ring + u64::from(ring.wptr) * 4, &frame);
    ring.wptr = (ring.wptr + psp::FRAME_BYTES / 4) % ring_dwords;
    r.w("psp", MP0_C2PMSG_67, ring.wptr)?;
    let start = Instant::now();
    let mut checked = Instant::now();
    while sys.read_u32(ring.fence) != ring.seq {
        // The fence is in system memory; every 20 ms, whether the GPU still answers.
        if checked.elapsed() > Duration::from_millis(20) {
            checked = Instant::now();
            if link_gone(r.t) {
                return Err(GpuError::Link(LINK_LOST.into()));
            }
        }
        if start.elapsed() > r.timeout {
            return Err(GpuError::Setup(format!(
                "psp: waited {} ms (TK_GPU_TIMEOUT_MS) for the PSP to finish {what} (fence {} of the KM ring)",
                r.timeout.as_millis(),
                ring.seq
            )));
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    let mut out = vec![0u8; psp::CMD_BYTES];
    let o = ring.cmd as usize;
    sys.mem.mem.with(&mut |m: &mut [u8]| out.copy_from_slice(&m[o..o + psp::CMD_BYTES]));
    let status = u32::from_le_bytes([
        out[psp::RESP_STATUS],
        out[psp::RESP_STATUS + 1],
        out[psp::RESP_STATUS + 2],
        out[psp::RESP_STATUS + 3],
    ]);
    if status != 0 {
        return Err(GpuError::Setup(format!("psp: the PSP refused {what} with status {status:#x}{}", r.said())));
    }
    Ok(out)
}

/// Loads one firmware piece with LOAD_IP_FW.
fn load_piece(r: &Regs<'_>, sys: &Sys<'_>, ring: &mut PspRing, fw: &FirmwareSet, p: &Piece) -> Result<(), GpuError> {
    let what = format!("LOAD_IP_FW of {} ({}, {} bytes)", psp::fw_name(p.fw_type), p.file, p.size);
    let va = stage(sys, ring, &what, p.bytes(fw))?;
    command(r, sys, ring, psp::CMD_LOAD_IP_FW, &[va as u32, (va >> 32) as u32, p.size as u32, p.fw_type], &what)?;
    Ok(())
}

/// The PSP step: the bootloader components, the KM ring, the TOC, the SMU's firmware, the TMR
/// (at `tmr` = (its GPU address, its VRAM offset, the bytes reserved for it)), then every other
/// firmware piece, with AUTOLOAD_RLC after RLC_G. Returns the TMR's size.
pub(super) fn psp(
    r: &Regs<'_>,
    sys: &Sys<'_>,
    ring: &mut PspRing,
    fw: &FirmwareSet,
    tmr: (u64, u64, u64),
) -> Result<u32, GpuError> {
    let sos = fw.find("_sos.bin").ok_or_else(|| GpuError::Setup("psp: the firmware has no sOS blob".into()))?;
    let steps = psp::bootloader_steps(sos);
    for s in &steps {
        r.poll("psp", MP0_C2PMSG_35, "the bootloader to be ready", |v| v & psp::BL_READY != 0)?;
        let bytes = sos.blob.component(&sos.bytes, s.kind).unwrap_or(&[]);
        let va = stage(sys, ring, s.name, bytes)?;
        r.w("psp", MP0_C2PMSG_36, (va >> 20) as u32)?;
        r.w("psp", MP0_C2PMSG_35, s.command)?;
        if s.command == psp::BL_LOAD_SOSDRV {
            // The sOS signals life in C2PMSG_81; a refusal sets error bits in C2PMSG_35.
            let start = Instant::now();
            loop {
                if r.r("psp", MP0_C2PMSG_81)? != 0 {
                    break;
                }
                let bl = r.r("psp", MP0_C2PMSG_35)?;
                if bl & psp::BL_READY != 0 && bl != psp::BL_READY {
                    return Err(GpuError::Setup(format!(
                        "psp: the bootloader refused the sOS: C2PMSG_35 reads {bl:#x}{}",
                        r.said()
                    )));
                }
                if start.elapsed() > r.timeout {
                    return Err(GpuError::Setup(format!(
                        "psp: waited {} ms (TK_GPU_TIMEOUT_MS) for the sOS to start: C2PMSG_81 reads 0{}",
                        r.timeout.as_millis(),
                        r.said()
                    )));
                }
                std::thread::sleep(Duration::from_micros(20));
            }
        } else {
            let v = r.poll("psp", MP0_C2PMSG_35, &format!("the bootloader to take {}", s.name), |v| {
                v & psp::BL_READY != 0
            })?;
            if v != psp::BL_READY {
                return Err(GpuError::Setup(format!(
                    "psp: the bootloader refused {} (command {:#x}): C2PMSG_35 reads {v:#x}{}",
                    s.name,
                    s.command,
                    r.said()
                )));
            }
        }
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name).collect();
    log("psp", || format!("bootloader: {}; the sOS runs", names.join(", ")));
    // The KM ring.
    let ready = |v: u32| v & psp::RING_RESPONSE_MASK == psp::BL_READY;
    r.poll("psp", MP0_C2PMSG_64, "the sOS to accept a ring", ready)?;
    let ring_va = sys.va + ring.ring;
    r.w("psp", MP0_C2PMSG_69, ring_va as u32)?;
    r.w("psp", MP0_C2PMSG_70, (ring_va >> 32) as u32)?;
    r.w("psp", MP0_C2PMSG_71, psp::RING_BYTES)?;
    r.w("psp", MP0_C2PMSG_64, psp::RING_CREATE_KM)?;
    let v = r.poll("psp", MP0_C2PMSG_64, "the KM ring to be created", |v| v & psp::BL_READY != 0)?;
    if !ready(v) {
        return Err(GpuError::Setup(format!("psp: the sOS refused the KM ring: C2PMSG_64 reads {v:#x}{}", r.said())));
    }
    // The TOC gives the TMR's size.
    let mut tmr_size = psp::TMR_DEFAULT;
    if let Some(toc) = sos.blob.component(&sos.bytes, super::ucode::PspKind::Toc) {
        let va = stage(sys, ring, "the TOC", toc)?;
        let resp =
            command(r, sys, ring, psp::CMD_LOAD_TOC, &[va as u32, (va >> 32) as u32, toc.len() as u32], "LOAD_TOC")?;
        let at = psp::RESP_TMR_SIZE;
        let size = u32::from_le_bytes([resp[at], resp[at + 1], resp[at + 2], resp[at + 3]]);
        if size != 0 {
            tmr_size = size;
        }
    }
    let (tmr_va, tmr_pa, tmr_room) = tmr;
    if u64::from(tmr_size) > tmr_room {
        return Err(GpuError::Setup(format!(
            "psp: the TOC asks for a TMR of {tmr_size:#x} bytes; the driver reserves {tmr_room:#x}"
        )));
    }
    let order = psp::load_order(fw).map_err(|m| GpuError::Setup(format!("firmware: {m}")))?;
    let (smu, rest): (Vec<Piece>, Vec<Piece>) = order.into_iter().partition(|p| p.fw_type == psp::FW_SMU);
    for p in &smu {
        load_piece(r, sys, ring, fw, p)?;
    }
    command(
        r,
        sys,
        ring,
        psp::CMD_SETUP_TMR,
        &[tmr_va as u32, (tmr_va >> 32) as u32, tmr_size, 0x2, tmr_pa as u32, (tmr_pa >> 32) as u32],
        "SETUP_TMR",
    )?;
    for p in &rest {
        load_piece(r, sys, ring, fw, p)?;
        if p.fw_type == psp::FW_RLC_G {
            command(r, sys, ring, psp::CMD_AUTOLOAD_RLC, &[], "AUTOLOAD_RLC")?;
        }
    }
    log("psp", || {
        format!(
            "KM ring at {ring_va:#x}; TMR of {} KiB at VRAM {tmr_pa:#x}; {} firmware pieces loaded (LOAD_IP_FW), then AUTOLOAD_RLC",
            tmr_size >> 10,
            smu.len() + rest.len()
        )
    });
    Ok(tmr_size)
}

/// The SMU step: its version, the driver table, every feature on.
pub(super) fn smu(r: &Regs<'_>, table_va: u64) -> Result<(), GpuError> {
    let version = r.smu("smu", SMU_GET_VERSION, 0, "GetSmuVersion")?;
    r.smu("smu", SMU_SET_DRIVER_TABLE_HI, (table_va >> 32) as u32, "SetDriverDramAddrHigh")?;
    r.smu("smu", SMU_SET_DRIVER_TABLE_LO, table_va as u32, "SetDriverDramAddrLow")?;
    r.smu("smu", SMU_ENABLE_ALL_FEATURES, 0, "EnableAllSmuFeatures")?;
    log("smu", || format!("SMU firmware {version:#x} answers; driver table at {table_va:#x}; all features enabled"));
    Ok(())
}

/// The GFX step: wait for the RLC's autoload, start the MEC at its firmware's entry point,
/// the shader memory apertures of VMID 0, the MEC's doorbell range.
pub(super) fn gfx(r: &Regs<'_>, fw: &FirmwareSet, doorbell: u32) -> Result<(), GpuError> {
    let start = Instant::now();
    loop {
        let status = r.r("gfx", RLC_RLCS_BOOTLOAD_STATUS)?;
        let cp = r.r("gfx", CP_STAT)?;
        if status & RLC_BOOTLOAD_COMPLETE != 0 && cp == 0 {
            break;
        }
        if start.elapsed() > r.timeout {
            return Err(GpuError::Setup(format!(
                "gfx: waited {} ms (TK_GPU_TIMEOUT_MS) for the RLC's autoload: RLC_RLCS_BOOTLOAD_STATUS reads \
                 {status:#x}, CP_STAT {cp:#x}",
                r.timeout.as_millis()
            )));
        }
        std::thread::sleep(Duration::from_micros(20));
    }
    let mec = fw.find("_mec.bin").ok_or_else(|| GpuError::Setup("gfx: the firmware has no MEC blob".into()))?;
    let (lo, hi) = psp::mec_entry(mec).map_err(|m| GpuError::Setup(format!("gfx: {m}")))?;
    r.w("gfx", GRBM_GFX_CNTL, GRBM_MEID_MEC)?;
    r.w("gfx", CP_MEC_RS64_PRGRM_CNTR_START, lo)?;
    r.w("gfx", CP_MEC_RS64_PRGRM_CNTR_START_HI, hi)?;
    r.w("gfx", CP_MEC_RS64_CNTL, MEC_HALT | MEC_PIPE0_RESET | MEC_INVALIDATE_ICACHE)?;
    r.w("gfx", CP_MEC_RS64_CNTL, MEC_PIPE0_ACTIVE)?;
    r.w("gfx", GRBM_GFX_CNTL, 0)?;
    gfx_config(r, doorbell)?;
    log("gfx", || {
        format!(
            "RLC autoload complete; MEC program counter {lo:#x} (high {hi:#x}), un-halted; doorbell range \
             {doorbell:#x}"
        )
    });
    Ok(())
}

/// What every start programs, warm or cold (gfx_v11_0.c does it on each resume): VMID 0's
/// shader memory apertures and the MEC's doorbell range.
pub(super) fn gfx_config(r: &Regs<'_>, doorbell: u32) -> Result<(), GpuError> {
    r.w("gfx", SH_MEM_CONFIG, SH_MEM_CONFIG_VALUE)?;
    r.w("gfx", SH_MEM_BASES, SH_MEM_BASES_VALUE)?;
    r.w("gfx", CP_MEC_DOORBELL_RANGE_LOWER, doorbell & 0xffc)?;
    r.w("gfx", CP_MEC_DOORBELL_RANGE_UPPER, doorbell & 0xffc)
}

/// The SDMA step: engine 0's queue 0 with its ring at `ring_va` (2^`log2_dwords` dwords), the
/// read pointer written back at `rptr_va`, rung through the 64-bit doorbell at byte `doorbell`;
/// then the engine is un-halted (Linux's sdma_v6_0_gfx_resume_instance order).
pub(super) fn sdma(r: &Regs<'_>, ring_va: u64, log2_dwords: u32, rptr_va: u64, doorbell: u32) -> Result<(), GpuError> {
    let s = "sdma";
    let cntl = (log2_dwords << SDMA_RB_SIZE_SHIFT & SDMA_RB_SIZE_MASK) | SDMA_RB_PRIV | SDMA_RPTR_WRITEBACK;
    r.w(s, SDMA0_F32_CNTL, SDMA_HALT | SDMA_TH1_RESET)?;
    r.w(s, SDMA0_QUEUE0_RB_CNTL, cntl)?;
    for reg in [SDMA0_QUEUE0_RB_RPTR, SDMA0_QUEUE0_RB_RPTR_HI, SDMA0_QUEUE0_RB_WPTR, SDMA0_QUEUE0_RB_WPTR_HI] {
        r.w(s, reg, 0)?;
    }
    r.w(s, SDMA0_QUEUE0_RB_RPTR_ADDR_HI, (rptr_va >> 32) as u32)?;
    r.w(s, SDMA0_QUEUE0_RB_RPTR_ADDR_LO, rptr_va as u32 & !3)?;
    r.w(s, SDMA0_QUEUE0_RB_BASE, (ring_va >> 8) as u32)?;
    r.w(s, SDMA0_QUEUE0_RB_BASE_HI, (ring_va >> 40) as u32)?;
    r.w(s, SDMA0_QUEUE0_MINOR_PTR_UPDATE, 1)?;
    r.w(s, SDMA0_QUEUE0_DOORBELL, SDMA_DOORBELL_ENABLE)?;
    r.w(s, SDMA0_QUEUE0_DOORBELL_OFFSET, doorbell & DOORBELL_OFFSET_MASK)?;
    r.w(s, SDMA0_QUEUE0_MINOR_PTR_UPDATE, 0)?;
    r.w(s, SDMA0_F32_CNTL, 0)?;
    r.w(s, SDMA0_QUEUE0_RB_CNTL, cntl | SDMA_RB_ENABLE)?;
    r.w(s, SDMA0_QUEUE0_IB_CNTL, SDMA_IB_ENABLE)?;
    log(s, || {
        format!(
            "engine 0 queue 0: a {} KiB ring at {ring_va:#x}, doorbell {doorbell:#x}; un-halted",
            (4u64 << log2_dwords) >> 10
        )
    });
    Ok(())
}

/// Appends an SDMA copy of `bytes` from `src` to `dst` in packets of at most
/// [`sdma::COPY_MAX`] bytes; a range past the end of the address space is an error.
pub fn copy_packets(src: u64, dst: u64, bytes: u64, out: &mut Vec<sdma::Packet>) -> Result<(), GpuError> {
    if src.checked_add(bytes).is_none() || dst.checked_add(bytes).is_none() {
        return Err(GpuError::Invalid(format!("a copy of {bytes} bytes from {src:#x} to {dst:#x} overflows")));
    }
    let mut done = 0;
    while done < bytes {
        let n = (bytes - done).min(u64::from(sdma::COPY_MAX));
        out.push(sdma::Packet::CopyLinear { src: src + done, dst: dst + done, bytes: n as u32 });
        done += n;
    }
    Ok(())
}
