//! The AMD driver proper: the bring-up of a cold GPU ([`super::boot`]: discovery, firmware, PSP,
//! SMU, MEC, SDMA), the page tables of VMID 0, a VRAM allocator whose allocations are mapped at
//! [`VA_BASE`] + offset, one compute queue (a PM4 ring in system memory, described by an MQD,
//! bound through the HQD registers, rung through its doorbell) with a RELEASE_MEM fence, copies
//! by the SDMA engine through a staging area, and the dispatch sequence of docs/driver.md. The
//! runtime's `amd:*` device is a thin layer over [`AmdGpu`].

use super::boot::{self, BootState, PspRing, Regs, Sys};
use super::discovery::{self, Discovery};
use super::firmware::{FirmwareError, FirmwareSet};
use super::gmc::{self, PAGE, Phys};
use super::pm4::Packet;
use super::regs::*;
use super::sdma;
use super::{BAR_DOORBELL, BAR_MMIO, BAR_VRAM};
use crate::memory::Heap;
use crate::queue::{CommandQueue, GpuError};
use crate::transport::{SysMem, Transport};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Where VRAM offset 0 appears in the GPU's virtual address space.
pub const VA_BASE: u64 = 0x1000_0000_0000;
/// Where the driver's system memory appears in the GPU's virtual address space.
pub const SYS_VA: u64 = 0x2000_0000_0000;
/// The layout of the driver's system memory: the PM4 ring, its fence, the error slots, the
/// kernel arguments, the PSP's KM ring, command buffer and fence, the SDMA engine's read-pointer
/// write-back and fence, the MQD, the SDMA ring, and (1 MiB aligned, for the PSP's bootloader)
/// the staging area for firmware and copies.
const SYS_RING: u64 = 0;
const SYS_FENCE: u64 = 4 << RING_LOG2;
const SYS_ERRORS: u64 = SYS_FENCE + PAGE;
const SYS_KERNARG: u64 = SYS_ERRORS + PAGE;
const SYS_PSP_RING: u64 = SYS_KERNARG + PAGE;
const SYS_PSP_CMD: u64 = SYS_PSP_RING + PAGE;
const SYS_PSP_FENCE: u64 = SYS_PSP_CMD + PAGE;
const SYS_SDMA_WB: u64 = SYS_PSP_FENCE + PAGE;
/// The SDMA fence, in the write-back page after the read pointer.
const SYS_SDMA_FENCE: u64 = SYS_SDMA_WB + 64;
const SYS_MQD: u64 = SYS_SDMA_WB + PAGE;
const SYS_SDMA_RING: u64 = SYS_MQD + PAGE;
/// The SDMA ring: 2^12 dwords.
const SDMA_RING_LOG2: u32 = 12;
/// The interrupt ring's write-pointer write-back, and the ring (2^12 dwords: 512 vectors).
const SYS_IH_WB: u64 = SYS_SDMA_RING + (4 << SDMA_RING_LOG2);
const SYS_IH_RING: u64 = SYS_IH_WB + PAGE;
const IH_RING_LOG2: u32 = 12;
const SYS_STAGING: u64 = 1 << 20;
/// Bytes of the staging area: larger copies go in pieces.
pub const STAGING: u64 = 4 << 20;
/// The PM4 ring: 2^14 dwords.
const RING_LOG2: u32 = 14;
/// The doorbell of tk's compute queue, and of its SDMA queue (byte offsets in the doorbell BAR;
/// the SDMA one is Linux's for engine 0, soc21.c).
const DOORBELL: u64 = 0x8;
const SDMA_DOORBELL: u64 = 0x800;
/// The smallest VRAM the driver works with.
const MIN_VRAM: u64 = 64 << 20;
/// VRAM kept for the PSP's trusted memory region (TMR) at offset 0 (1 MiB aligned); the TOC's
/// size must fit.
const TMR_ROOM: u64 = 32 << 20;

struct State {
    heap: Heap,
    root: u64,
    wptr: u64,
    seq: u64,
    /// The SDMA ring's write pointer (bytes, never wrapped) and its last fence value.
    sdma_wptr: u64,
    sdma_seq: u32,
    tables: Tables,
}

struct Shared {
    t: Box<dyn Transport>,
    st: Mutex<State>,
    lost: AtomicBool,
    /// Held while the staging area, the kernel arguments or the error slots are in use.
    io: Mutex<()>,
    /// Rings, fences, kernel arguments and staging live here: the host reaches them without a
    /// round trip to the device.
    sys: SysMem,
    /// Where the registers are (for the TLB flush of a freed buffer).
    regs: RegMap,
    /// How far the driver has read the interrupt ring (a byte offset).
    ih_rptr: std::sync::atomic::AtomicU32,
}

impl Shared {
    fn sys_write(&self, off: u64, src: &[u8]) {
        let o = off as usize;
        self.sys.mem.with(&mut |m: &mut [u8]| m[o..o + src.len()].copy_from_slice(src));
    }
    fn sys_read(&self, off: u64, dst: &mut [u8]) {
        let o = off as usize;
        self.sys.mem.with(&mut |m: &mut [u8]| dst.copy_from_slice(&m[o..o + dst.len()]));
    }
    fn state(&self) -> Result<MutexGuard<'_, State>, GpuError> {
        self.st.lock().map_err(|_| GpuError::Lost)
    }
}

/// The driver's copy of its page tables: every entry it wrote, and the table pages it zeroed.
/// The driver is the only writer of its tables, so a walk never reads them back through the
/// BAR (a round trip per entry over the TinyGPU socket).
#[derive(Default)]
struct Tables {
    entries: HashMap<u64, u64>,
    zeroed: RefCell<HashSet<u64>>,
}

/// Physical memory of the GPU through the transport (page-table writes), read from the
/// driver's copy.
struct Bar<'a> {
    t: &'a dyn Transport,
    entries: &'a mut HashMap<u64, u64>,
    zeroed: &'a RefCell<HashSet<u64>>,
}

impl Phys for Bar<'_> {
    fn read_u64(&mut self, pa: u64) -> Result<u64, String> {
        if let Some(v) = self.entries.get(&pa) {
            return Ok(*v);
        }
        if self.zeroed.borrow().contains(&(pa & !(PAGE - 1))) {
            return Ok(0);
        }
        let mut b = [0u8; 8];
        self.t.read_bytes(BAR_VRAM, pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn write_u64(&mut self, pa: u64, v: u64) -> Result<(), String> {
        self.t.write_bytes(BAR_VRAM, pa, &v.to_le_bytes())?;
        self.entries.insert(pa, v);
        Ok(())
    }
}

/// See [`AmdGpu::flush_tlb`].
fn flush_tlb(t: &dyn Transport, regs: &RegMap, limit: Duration) -> Result<(), GpuError> {
    boot::hdp_flush(t).map_err(GpuError::Link)?;
    boot::flush_hub(t, regs, &GFXHUB, limit)
}

/// A zeroed page of VRAM for a page table, from `heap`; `zeroed` learns that it is.
fn table_page(t: &dyn Transport, heap: &mut Heap, zeroed: &RefCell<HashSet<u64>>) -> Result<Option<u64>, String> {
    let Some(p) = heap.alloc(PAGE) else { return Ok(None) };
    t.write_bytes(BAR_VRAM, p, &[0; PAGE as usize])?;
    zeroed.borrow_mut().insert(p);
    Ok(Some(p))
}

/// A VRAM allocation, mapped at `VA_BASE + offset`; unmapped and freed when dropped.
pub struct Vram {
    pa: u64,
    bytes: u64,
    dev: Weak<Shared>,
}

impl Vram {
    /// Its address in the GPU's virtual address space.
    pub fn va(&self) -> u64 {
        VA_BASE + self.pa
    }
    /// Its size in bytes as asked for.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for Vram {
    fn drop(&mut self) {
        if let Some(d) = self.dev.upgrade()
            && let Ok(mut guard) = d.st.lock()
        {
            let st = &mut *guard;
            let mut bar = Bar { t: d.t.as_ref(), entries: &mut st.tables.entries, zeroed: &st.tables.zeroed };
            for p in (0..self.bytes.max(1)).step_by(PAGE as usize) {
                let _ = gmc::unmap(&mut bar, st.root, VA_BASE + self.pa + p);
            }
            st.heap.release(self.pa, self.bytes);
            // No cached translation may outlive the mapping (a lost device cannot be flushed,
            // and needs no flush).
            if !d.lost.load(Ordering::SeqCst) {
                let _ = flush_tlb(d.t.as_ref(), &d.regs, Duration::from_secs(1));
            }
        }
    }
}

/// One compute dispatch: the kernel's code and descriptor registers, its arguments and grid.
pub struct Dispatch<'a> {
    /// The code's virtual address (256-byte aligned).
    pub code_va: u64,
    /// COMPUTE_PGM_RSRC1, 2 and 3 from the kernel descriptor.
    pub rsrc: [u32; 3],
    /// Bytes of LDS the kernel uses.
    pub lds_bytes: u32,
    /// The kernel-argument segment (at most a page).
    pub kernargs: &'a [u8],
    /// Workgroups in x, and work-items per workgroup.
    pub blocks: u32,
    pub threads: u32,
}

/// An RDNA3 GPU behind a transport, set up for compute.
pub struct AmdGpu {
    d: Arc<Shared>,
    timeout: Duration,
    discovery: Discovery,
    regs: RegMap,
    boot: BootState,
    /// Where the firmware came from (a directory, or the simulated GPU).
    firmware: String,
}

pub use super::link::{LINK_LOST, link_gone};
use super::link::{default_timeout, log, logging};

impl AmdGpu {
    /// Boots the GPU behind `t` (cold, warm or left running by another driver) and sets up its
    /// page tables and queues. The firmware is the device's own (a simulated GPU's) unless
    /// `TK_FIRMWARE_DIR` is set, else linux-firmware's (`firmware::dir`).
    pub fn open(t: Box<dyn Transport>) -> Result<AmdGpu, GpuError> {
        AmdGpu::open_with(t, None)
    }

    /// [`AmdGpu::open`] with the firmware given.
    pub fn open_with(t: Box<dyn Transport>, firmware: Option<FirmwareSet>) -> Result<AmdGpu, GpuError> {
        let setup = |what: &str, m: String| GpuError::Setup(format!("{what}: {m}"));
        // The driver manages the VRAM its BAR reaches.
        let vram = t.bar_size(BAR_VRAM).map_err(|m| setup("reading the VRAM BAR's size", m))?;
        if vram < MIN_VRAM {
            return Err(GpuError::Setup(format!(
                "the VRAM BAR has {vram} bytes; the driver needs at least {} MiB",
                MIN_VRAM >> 20
            )));
        }
        // IP discovery: the GPU must be one whose registers tk knows. The table lies 64 KiB
        // below the end of VRAM: read through the BAR when it reaches that far (and then kept
        // out of the heap), else through MM_INDEX/MM_DATA (Thunderbolt BARs are often 256 MiB).
        let lost =
            |m: String| if link_gone(t.as_ref()) { GpuError::Link(LINK_LOST.into()) } else { setup("discovery", m) };
        let mib = t.read32(BAR_MMIO, discovery::MEMSIZE_BYTE).map_err(lost)?;
        if mib == u32::MAX && link_gone(t.as_ref()) {
            return Err(GpuError::Link(LINK_LOST.into()));
        }
        let size = if mib == 0 { vram } else { u64::from(mib) << 20 };
        let (path, heap_bytes) = if size > vram {
            (discovery::Path::Indirect(size), vram)
        } else {
            (discovery::Path::Bar, vram - discovery::TABLE_OFFSET_FROM_END)
        };
        let found = discovery::read_from(t.as_ref(), size.max(vram), &path).map_err(lost)?;
        let target = found.gfx_target().map_err(|m| setup("discovery", m))?;
        let regs = RegMap::new(&found).map_err(|m| setup("discovery", m))?;
        log("discovery", || {
            let how = match path {
                discovery::Path::Bar => format!("the {} MiB VRAM BAR", vram >> 20),
                discovery::Path::Indirect(_) => {
                    format!("MM_INDEX/MM_DATA (the VRAM BAR has {} MiB of {} MiB)", vram >> 20, size >> 20)
                }
            };
            format!(
                "{target}: {} IP blocks, table version {}, read 64 KiB below the end of VRAM through {how}",
                found.ips.len(),
                found.ip_version
            )
        });
        // The firmware: given, the device's own, or linux-firmware's; every file parsed and
        // its pieces cut before anything is sent.
        let fw = match firmware {
            Some(f) => f,
            None => match t.firmware().filter(|_| std::env::var_os("TK_FIRMWARE_DIR").is_none()) {
                Some(files) => FirmwareSet::from_files(files, "the simulated GPU's synthetic firmware")
                    .map_err(|e| setup("firmware", e.to_string()))?,
                None => {
                    let names = found.firmware().map_err(|m| setup("firmware", m))?;
                    FirmwareSet::load(&super::firmware::dir(), &names).map_err(|e| match e {
                        FirmwareError::Missing(m) => GpuError::Firmware(m),
                        FirmwareError::Bad(m) => setup("firmware", m),
                    })?
                }
            },
        };
        super::psp::load_order(&fw).map_err(|m| setup("firmware", m))?;
        log("firmware", || format!("{} files, {} KiB, from {}", fw.files.len(), fw.bytes() >> 10, fw.origin));
        let mut heap = Heap::new(heap_bytes, PAGE);
        // The TMR's room first: offset 0, 1 MiB aligned.
        let tmr = heap.alloc(TMR_ROOM).ok_or_else(|| setup("gmc", "no VRAM for the PSP's TMR".into()))?;
        let st = State { heap, root: 0, wptr: 0, seq: 0, sdma_wptr: 0, sdma_seq: 0, tables: Tables::default() };
        let sys_bytes = SYS_STAGING + STAGING;
        let sys = t.sysmem(sys_bytes as usize).map_err(|m| setup("allocating system memory", m))?;
        if (sys.mem.len() as u64) < sys_bytes {
            return Err(GpuError::Setup("the transport gave less system memory than asked for".into()));
        }
        let mut gpu = AmdGpu {
            d: Arc::new(Shared {
                t,
                st: Mutex::new(st),
                lost: AtomicBool::new(false),
                io: Mutex::new(()),
                sys,
                regs: regs.clone(),
                ih_rptr: std::sync::atomic::AtomicU32::new(0),
            }),
            timeout: default_timeout(),
            discovery: found,
            regs,
            boot: BootState::Cold,
            firmware: fw.origin.clone(),
        };
        gpu.boot = gpu.init(&fw, tmr)?;
        if logging() {
            let n = gpu.round_trips();
            eprintln!("driver: boot done after {n} register accesses ({n} round trips)");
        }
        Ok(gpu)
    }

    /// How long a submission may take before the device counts as lost.
    pub fn with_timeout(mut self, t: Duration) -> AmdGpu {
        self.timeout = t;
        self
    }

    /// What the GPU's IP discovery table says (its blocks, versions and shape).
    pub fn discovery(&self) -> &Discovery {
        &self.discovery
    }

    /// The size of a BAR in bytes, as the transport reports it.
    pub fn bar_size(&self, bar: u8) -> Result<u64, String> {
        self.d.t.bar_size(bar)
    }

    /// Requests the transport has made (round trips to the device).
    pub fn round_trips(&self) -> u64 {
        self.d.t.round_trips()
    }

    /// Free VRAM in bytes.
    pub fn free_vram(&self) -> u64 {
        self.d.st.lock().map(|s| s.heap.free_bytes()).unwrap_or(0)
    }

    /// How the GPU was found: cold, warm, or left running by another driver.
    pub fn boot_state(&self) -> BootState {
        self.boot
    }

    /// Where the firmware came from.
    pub fn firmware_origin(&self) -> &str {
        &self.firmware
    }

    fn regs(&self) -> Regs<'_> {
        Regs { t: self.d.t.as_ref(), map: &self.regs, timeout: self.timeout }
    }

    /// The bring-up: warm check, reset, soc, gmc, ih, psp, smu, gfx, sdma, queue.
    fn init(&self, fw: &FirmwareSet, tmr: u64) -> Result<BootState, GpuError> {
        let r = self.regs();
        // Memory space and bus mastering on: the GPU's DMA needs them (vfio-pci leaves bus
        // mastering off). A transport that cannot write configuration space (IOKit, where the
        // DriverKit extension owns it) goes on, saying so.
        let t = self.d.t.as_ref();
        match t.config_read(4, 2).and_then(|c| t.config_write(4, 2, c | boot::PCI_COMMAND_MEMORY_MASTER)) {
            Ok(()) => {}
            Err(e) if link_gone(t) => return Err(GpuError::Link(format!("{LINK_LOST} ({e})"))),
            Err(e) => log("soc", || format!("could not enable bus mastering in the PCI command register: {e}")),
        }
        let state = boot::warm_check(&r)?;
        if state == BootState::LeftRunning {
            boot::reset(&r)?;
        }
        let vram = boot::soc(&r)?;
        let bar = self.bar_size(BAR_VRAM).unwrap_or(0);
        if vram < bar {
            return Err(GpuError::Setup(format!(
                "soc: RCC_CONFIG_MEMSIZE says {} MiB of VRAM, less than the {} MiB VRAM BAR",
                vram >> 20,
                bar >> 20
            )));
        }
        let (root, scratch) = self.gmc().map_err(|m| self.link_or(format!("gmc: {m}")))?;
        // Both hubs share the page tables; the frame buffer's place comes from the MM hub.
        boot::hub(&r, &GFXHUB, root, scratch)?;
        let fb = boot::hub(&r, &MMHUB, root, scratch)?;
        boot::hdp_flush(t).map_err(|m| self.link_or(format!("gmc: the HDP flush: {m}")))?;
        for h in [GFXHUB, MMHUB] {
            boot::flush_hub(t, &self.regs, &h, self.timeout)?;
        }
        log("gmc", || {
            format!(
                "GFX and MM hubs: frame buffer at 0x{:x}..=0x{:x} (system aperture), AGP closed, L1 TLB and L2 \
                 on, VM context 0 enabled, TLBs flushed",
                fb.0, fb.1
            )
        });
        boot::ih(&r, SYS_VA + SYS_IH_RING, IH_RING_LOG2, SYS_VA + SYS_IH_WB)?;
        self.d.ih_rptr.store(0, Ordering::SeqCst);
        let sys = Sys { mem: &self.d.sys, va: SYS_VA };
        if state != BootState::Warm {
            let mut ring = PspRing::new(SYS_PSP_RING, SYS_PSP_CMD, SYS_PSP_FENCE, SYS_STAGING, STAGING);
            // The PSP reaches the TMR through the frame buffer's place in its hub.
            boot::psp(&r, &sys, &mut ring, fw, (fb.0 + tmr, tmr, TMR_ROOM))?;
            let table = self.alloc(PAGE, PTE_READABLE | PTE_WRITEABLE)?;
            boot::smu(&r, table.va())?;
            // The SMU's table stays for as long as the GPU runs.
            std::mem::forget(table);
            boot::gfx(&r, fw, DOORBELL as u32)?;
        } else {
            // The MEC runs; its queue (dequeued first) and the SDMA engine are set up again below.
            boot::gfx_config(&r, DOORBELL as u32)?;
            log("gfx", || "the MEC runs (warm start); shader apertures and doorbell range set again".into());
        }
        boot::sdma(&r, SYS_VA + SYS_SDMA_RING, SDMA_RING_LOG2, SYS_VA + SYS_SDMA_WB, SDMA_DOORBELL as u32)?;
        self.queue(&r)?;
        r.w("queue", SCRATCH_REG0, boot::SCRATCH_BOOTED)?;
        Ok(state)
    }

    /// A transport failure during bring-up: a lost link, or the step's error.
    fn link_or(&self, m: String) -> GpuError {
        if link_gone(self.d.t.as_ref()) { GpuError::Link(LINK_LOST.into()) } else { GpuError::Setup(m) }
    }

    /// The GMC step's page tables: VMID 0's, with the driver's system memory mapped. Returns
    /// the root table and a scratch page (both VRAM offsets).
    fn gmc(&self) -> Result<(u64, u64), String> {
        let t = self.d.t.as_ref();
        let mut guard = self.d.st.lock().map_err(|_| "poisoned")?;
        let st = &mut *guard;
        let State { heap, tables, root, .. } = st;
        let mut zero_page = || table_page(t, heap, &tables.zeroed)?.ok_or_else(|| "VRAM is full".to_string());
        *root = zero_page()?;
        let root = *root;
        self.d.sys.mem.with(&mut |m: &mut [u8]| m.fill(0));
        // Map the system memory page by page to its bus addresses (snooped: the CPU's caches
        // stay coherent).
        let flags = PTE_SYSTEM | PTE_SNOOPED | PTE_READABLE | PTE_WRITEABLE;
        for p in (0..SYS_STAGING + STAGING).step_by(PAGE as usize) {
            let bus = self.d.sys.bus(p).ok_or("the system memory's segments are shorter than it")?;
            if bus % PAGE != 0 {
                return Err(format!("system memory segment at bus address {bus:#x} is not page aligned"));
            }
            let mut bar = Bar { t, entries: &mut tables.entries, zeroed: &tables.zeroed };
            gmc::map(&mut bar, root, SYS_VA + p, bus, flags, &mut zero_page)?;
        }
        let scratch = zero_page()?;
        log("gmc", || {
            format!(
                "VM context 0: 4-level page table at VRAM 0x{:x}; {} KiB of system memory mapped at 0x{SYS_VA:x}",
                root,
                (SYS_STAGING + STAGING) >> 10
            )
        });
        Ok((root, scratch))
    }

    /// The queue step: the MQD in system memory, then the HQD registers of MEC me 1 pipe 0
    /// queue 0 from it, and the queue activated.
    fn queue(&self, r: &Regs<'_>) -> Result<(), GpuError> {
        let ring_va = SYS_VA + SYS_RING;
        let mqd_va = SYS_VA + SYS_MQD;
        let hqd = [
            (CP_MQD_BASE_ADDR, mqd_va as u32 & !3),
            (CP_MQD_BASE_ADDR_HI, (mqd_va >> 32) as u32),
            (CP_HQD_VMID, 0),
            (CP_HQD_PQ_BASE, (ring_va >> 8) as u32),
            (CP_HQD_PQ_BASE_HI, (ring_va >> 40) as u32),
            (CP_HQD_PQ_RPTR, 0),
            (CP_HQD_PQ_CONTROL, RING_LOG2 - 1),
            (CP_HQD_PQ_DOORBELL_CONTROL, (DOORBELL as u32 & DOORBELL_OFFSET_MASK) | DOORBELL_EN),
        ];
        let mut mqd = vec![0u8; boot::MQD_BYTES];
        for (reg, v) in hqd {
            let at = 4 * (boot::MQD_REGS_AT + (reg.offset - CP_MQD_BASE_ADDR.offset) as usize);
            mqd[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        self.d.sys_write(SYS_MQD, &mqd);
        // The HQD registers are those of the queue GRBM_GFX_CNTL selects: MEC (ME 1), pipe 0,
        // queue 0.
        r.w("queue", GRBM_GFX_CNTL, boot::GRBM_MEID_MEC)?;
        let dequeued = boot::dequeue(r)?;
        for (reg, v) in hqd {
            r.w("queue", reg, v)?;
        }
        r.w("queue", CP_HQD_ACTIVE, 1)?;
        r.w("queue", GRBM_GFX_CNTL, 0)?;
        log("queue", || {
            format!(
                "{}compute queue (MEC me 1, pipe 0, queue 0) active: MQD at 0x{mqd_va:x}, a {} KiB ring at \
                 0x{ring_va:x}, doorbell 0x{DOORBELL:x}",
                if dequeued { "the previous queue drained (dequeue request); " } else { "" },
                (4u64 << RING_LOG2) >> 10
            )
        });
        Ok(())
    }

    /// Fails with [`GpuError::Lost`] once an earlier failure lost the device.
    pub fn check_lost(&self) -> Result<(), GpuError> {
        if self.d.lost.load(Ordering::SeqCst) { Err(GpuError::Lost) } else { Ok(()) }
    }

    /// Marks the device lost when `e` loses it.
    fn note(&self, e: GpuError) -> GpuError {
        if e.loses_device() {
            self.d.lost.store(true, Ordering::SeqCst);
        }
        e
    }

    /// Invalidates VMID 0's translations in the GPU's TLBs after its page tables changed:
    /// invalidation engine 17's request, then its acknowledgement (Linux's gmc_v11_0.c, without
    /// the semaphore, which Linux uses only on the MMHUB).
    fn flush_tlb(&self) -> Result<(), GpuError> {
        flush_tlb(self.d.t.as_ref(), &self.d.regs, self.timeout)
    }

    /// Allocates VRAM and maps it with the PTE `flags` (readable, writeable, executable).
    pub fn alloc(&self, bytes: u64, flags: u64) -> Result<Vram, GpuError> {
        self.check_lost()?;
        let t = self.d.t.as_ref();
        let mut guard = self.d.state()?;
        let st = &mut *guard;
        let pa = st.heap.alloc(bytes).ok_or(GpuError::OutOfMemory(bytes))?;
        let root = st.root;
        let mut tables_full = false;
        let mut failed = None;
        let State { heap, tables, .. } = st;
        for p in (0..bytes.max(1)).step_by(PAGE as usize) {
            let mut alloc = || -> Result<u64, String> {
                table_page(t, heap, &tables.zeroed)?.ok_or_else(|| {
                    tables_full = true;
                    "no VRAM is left for page tables".to_string()
                })
            };
            let mut bar = Bar { t, entries: &mut tables.entries, zeroed: &tables.zeroed };
            if let Err(m) = gmc::map(&mut bar, root, VA_BASE + pa + p, pa + p, flags, &mut alloc) {
                failed = Some((p, m));
                break;
            }
        }
        let Some((done, m)) = failed else {
            drop(guard);
            // The GPU may have cached translations of these pages (freed and mapped again).
            self.flush_tlb().map_err(|e| self.note(e))?;
            return Ok(Vram { pa, bytes, dev: Arc::downgrade(&self.d) });
        };
        if !tables_full {
            // The transport failed: the device is gone.
            return Err(self.note(GpuError::Link(m)));
        }
        // Out of VRAM for page tables: undo this allocation; the device stays usable.
        let mut bar = Bar { t, entries: &mut tables.entries, zeroed: &tables.zeroed };
        for p in (0..done).step_by(PAGE as usize) {
            let _ = gmc::unmap(&mut bar, root, VA_BASE + pa + p);
        }
        heap.release(pa, bytes);
        Err(GpuError::OutOfMemory(bytes))
    }

    /// Copies host bytes to GPU memory at `va`: through the staging area, by the SDMA engine
    /// (one submission, one doorbell, per staging-sized piece).
    pub fn upload(&self, va: u64, src: &[u8]) -> Result<(), GpuError> {
        self.check_lost()?;
        let _io = self.d.io.lock().map_err(|_| GpuError::Lost)?;
        for (k, piece) in src.chunks(STAGING as usize).enumerate() {
            self.d.sys_write(SYS_STAGING, piece);
            let mut copies = Vec::new();
            let dst =
                va.checked_add(k as u64 * STAGING).ok_or_else(|| GpuError::Invalid(format!("{va:#x} overflows")))?;
            boot::copy_packets(SYS_VA + SYS_STAGING, dst, piece.len() as u64, &mut copies)?;
            self.sdma_run(&copies)?;
        }
        Ok(())
    }

    /// Copies GPU memory at `va` to the host, the other way.
    pub fn download(&self, va: u64, dst: &mut [u8]) -> Result<(), GpuError> {
        self.check_lost()?;
        let _io = self.d.io.lock().map_err(|_| GpuError::Lost)?;
        for (k, piece) in dst.chunks_mut(STAGING as usize).enumerate() {
            let mut copies = Vec::new();
            let src =
                va.checked_add(k as u64 * STAGING).ok_or_else(|| GpuError::Invalid(format!("{va:#x} overflows")))?;
            boot::copy_packets(src, SYS_VA + SYS_STAGING, piece.len() as u64, &mut copies)?;
            self.sdma_run(&copies)?;
            self.d.sys_read(SYS_STAGING, piece);
        }
        Ok(())
    }

    /// Writes `packets` and a fence to the SDMA ring, rings its doorbell and waits for the
    /// fence. A packet block never wraps around the ring's end: the rest of the ring is filled
    /// with NOPs (zero dwords) first, as tinygrad does.
    fn sdma_run(&self, packets: &[sdma::Packet]) -> Result<(), GpuError> {
        let t = self.d.t.as_ref();
        let seq = {
            let mut st = self.d.state()?;
            st.sdma_seq = st.sdma_seq.wrapping_add(1);
            let seq = st.sdma_seq;
            let mut words = Vec::new();
            for p in packets {
                p.encode(&mut words);
            }
            sdma::Packet::Fence { addr: SYS_VA + SYS_SDMA_FENCE, value: seq }.encode(&mut words);
            let size = 4u64 << SDMA_RING_LOG2;
            let bytes = 4 * words.len() as u64;
            if bytes >= size {
                return Err(GpuError::Invalid(format!("{bytes} bytes of SDMA packets do not fit its ring")));
            }
            let at = st.sdma_wptr % size;
            if at + bytes > size {
                self.d.sys_write(SYS_SDMA_RING + at, &vec![0; (size - at) as usize]);
                st.sdma_wptr += size - at;
            }
            let at = st.sdma_wptr % size;
            let raw: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            self.d.sys_write(SYS_SDMA_RING + at, &raw);
            st.sdma_wptr += bytes;
            // The doorbell, in bytes: the only round trip of a copy.
            t.write64(BAR_DOORBELL, SDMA_DOORBELL, st.sdma_wptr).map_err(|m| self.note(GpuError::Link(m)))?;
            seq
        };
        self.wait_until(self.timeout, || {
            let mut b = [0u8; 4];
            self.d.sys_read(SYS_SDMA_FENCE, &mut b);
            u32::from_le_bytes(b) == seq
        })
    }

    /// Polls `done` (a fence in system memory: no round trip) until it holds. Every 20 ms it
    /// asks the device about faults and whether it still answers (round trips, so not on every
    /// poll); past `limit` the device is lost.
    fn wait_until(&self, limit: Duration, done: impl Fn() -> bool) -> Result<(), GpuError> {
        let t = self.d.t.as_ref();
        let start = Instant::now();
        let mut checked = Instant::now();
        loop {
            if done() {
                return Ok(());
            }
            if let Some(e) = self.interrupts() {
                return Err(self.note(e));
            }
            if checked.elapsed() > Duration::from_millis(20) {
                checked = Instant::now();
                if let Some(f) = t.fault() {
                    return Err(self.note(GpuError::Fault(f)));
                }
                if link_gone(t) {
                    return Err(self.note(GpuError::Link(LINK_LOST.into())));
                }
            }
            if start.elapsed() > limit {
                return Err(self.note(GpuError::Timeout { limit, var: "TK_GPU_TIMEOUT_MS" }));
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// Reads the interrupt vectors that arrived since the last look (the ring and its
    /// write-pointer write-back are in system memory: no round trip unless one did) and
    /// returns the first VM fault among them as a device error naming the address and the hub
    /// (amdgpu_ih.c's decoding, gmc_v11_0_process_interrupt's address).
    fn interrupts(&self) -> Option<GpuError> {
        let d = &self.d;
        let mut b = [0u8; 4];
        d.sys_read(SYS_IH_WB, &mut b);
        let size = 4u32 << IH_RING_LOG2;
        let wb = u32::from_le_bytes(b);
        let wptr = (wb & IH_OFFSET_MASK) % size;
        let mut rptr = d.ih_rptr.load(Ordering::SeqCst);
        if wptr == rptr {
            return None;
        }
        let mut fault = None;
        while rptr != wptr {
            let mut iv = [0u8; IV_BYTES as usize];
            d.sys_read(SYS_IH_RING + u64::from(rptr), &mut iv);
            rptr = (rptr + IV_BYTES as u32) % size;
            let dw = |k: usize| u32::from_le_bytes([iv[4 * k], iv[4 * k + 1], iv[4 * k + 2], iv[4 * k + 3]]);
            let (client, src) = (dw(0) & 0xff, (dw(0) >> 8) & 0xff);
            if src == IH_SRC_VM_FAULT && (client == IH_CLIENT_GFX || client == IH_CLIENT_VMC) {
                let addr = u64::from(dw(4)) << 12 | u64::from(dw(5) & 0xf) << 44;
                let hub = if dw(0) >> 31 == 1 { MMHUB.name } else { GFXHUB.name };
                let what = if dw(5) & IV_FAULT_WRITE != 0 { "write" } else { "read" };
                let vmid = (dw(0) >> 24) & 0xf;
                fault
                    .get_or_insert(format!("a GPU page fault: a {what} at 0x{addr:x} through the {hub} (VMID {vmid})"));
            }
        }
        d.ih_rptr.store(rptr, Ordering::SeqCst);
        // The ring's read pointer, so that the IH can reuse the room.
        let _ = d.t.write32(BAR_MMIO, d.regs.byte(IH_RB_RPTR), rptr);
        fault.map(|m| {
            GpuError::Fault(match d.t.fault() {
                Some(f) => format!("{m}; the device reports: {f}"),
                None => m,
            })
        })
    }

    /// The address of the error slots a kernel's arguments point at (see [`AmdGpu::dispatch`]).
    pub fn errors_va(&self) -> u64 {
        SYS_VA + SYS_ERRORS
    }

    /// Runs one dispatch to completion: writes its arguments, clears `errors.len()` bytes of
    /// error slots, submits the launch sequence, waits, and copies the error slots to `errors`.
    pub fn dispatch(&self, d: &Dispatch<'_>, errors: &mut [u8]) -> Result<(), GpuError> {
        self.check_lost()?;
        if d.kernargs.len() as u64 > PAGE {
            return Err(GpuError::Invalid(format!("{} bytes of kernel arguments; at most {PAGE}", d.kernargs.len())));
        }
        if errors.len() as u64 > PAGE {
            return Err(GpuError::Invalid(format!("{} bytes of error slots; at most {PAGE}", errors.len())));
        }
        // COMPUTE_PGM_LO holds the address >> 8.
        if !d.code_va.is_multiple_of(256) {
            return Err(GpuError::Invalid(format!("kernel code at {:#x} is not 256-byte aligned", d.code_va)));
        }
        // The arguments and error slots are the driver's (one launch at a time). Scalar loads
        // read whole blocks past the arguments: the segment is a page.
        let _io = self.d.io.lock().map_err(|_| GpuError::Lost)?;
        let kernarg = SYS_VA + SYS_KERNARG;
        self.d.sys_write(SYS_KERNARG, d.kernargs);
        self.d.sys_write(SYS_ERRORS, &vec![0; errors.len()]);
        let lds = d.lds_bytes.div_ceil(LDS_GRANULE);
        let rsrc2 = d.rsrc[1] | (lds & RSRC2_LDS_MASK) << RSRC2_LDS_SHIFT;
        let sh = |reg: u32, values: Vec<u32>| Packet::SetShReg { reg, values };
        let packets = [
            Packet::AcquireMem,
            sh(COMPUTE_PGM_LO, vec![(d.code_va >> 8) as u32, (d.code_va >> 40) as u32]),
            sh(COMPUTE_PGM_RSRC1, vec![d.rsrc[0], rsrc2]),
            sh(COMPUTE_PGM_RSRC3, vec![d.rsrc[2]]),
            sh(COMPUTE_TMPRING_SIZE, vec![0]),
            sh(COMPUTE_USER_DATA_0, vec![kernarg as u32, (kernarg >> 32) as u32]),
            sh(COMPUTE_RESOURCE_LIMITS, vec![0]),
            sh(COMPUTE_START_X, vec![0, 0, 0]),
            sh(COMPUTE_NUM_THREAD_X, vec![d.threads, 1, 1]),
            Packet::DispatchDirect {
                x: d.blocks,
                y: 1,
                z: 1,
                initiator: DISPATCH_COMPUTE_SHADER_EN | DISPATCH_FORCE_START_AT_000 | DISPATCH_CS_W32_EN,
            },
        ];
        self.run(&packets)?;
        self.d.sys_read(SYS_ERRORS, errors);
        Ok(())
    }

    /// Submits `packets` and waits for them.
    pub fn run(&self, packets: &[Packet]) -> Result<(), GpuError> {
        let v = self.submit(packets)?;
        self.wait(v, self.timeout)
    }
}

impl CommandQueue for AmdGpu {
    type Command = Packet;

    /// Writes the packets and a RELEASE_MEM of the next fence value to the ring, then rings the
    /// doorbell.
    fn submit(&self, packets: &[Packet]) -> Result<u64, GpuError> {
        self.check_lost()?;
        let t = self.d.t.as_ref();
        let mut st = self.d.state()?;
        st.seq += 1;
        let seq = st.seq;
        let mut words = Vec::new();
        for p in packets {
            p.encode(&mut words);
        }
        Packet::ReleaseMem { addr: SYS_VA + SYS_FENCE, value: seq }.encode(&mut words);
        let size = 1u64 << RING_LOG2;
        if words.len() as u64 >= size {
            return Err(GpuError::Invalid(format!("{} dwords of packets do not fit the ring", words.len())));
        }
        for (k, w) in words.iter().enumerate() {
            let at = (st.wptr + k as u64) % size;
            self.d.sys_write(SYS_RING + at * 4, &w.to_le_bytes());
        }
        st.wptr += words.len() as u64;
        // The doorbell: the only round trip of a submission.
        t.write64(BAR_DOORBELL, DOORBELL, st.wptr).map_err(|m| self.note(GpuError::Link(m)))?;
        Ok(seq)
    }

    fn fence(&self) -> u64 {
        let mut b = [0u8; 8];
        self.d.sys_read(SYS_FENCE, &mut b);
        u64::from_le_bytes(b)
    }

    fn wait(&self, value: u64, limit: Duration) -> Result<(), GpuError> {
        self.wait_until(limit, || self.fence() >= value)
    }
}
