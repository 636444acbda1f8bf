//! A simulated NVIDIA PCIe GPU behind the [`Transport`] trait, as far as the driver's first
//! bring-up steps reach: the boot registers of an Ampere GA102, Ada AD102 or Blackwell GB202,
//! the write-protected region WPR2 (set when a GSP from an earlier driver runs, cleared by a
//! function reset), the GPU's boot-firmware (GFW) status, the usable-VRAM register, the VGA
//! workspace register, a synthetic VBIOS in the real layout behind the PROM window
//! ([`vbios`]), system memory by DMA, and the GSP falcon with a model of FWSEC-FRTS
//! (`falcon`). SEC2, the GSP's RISC-V core, the MMU, the host engine and the copy engine are
//! not modelled yet: a register outside the model is an error that names it.

mod falcon;
pub mod firmware;
mod gsp;
mod gsp_rm;
mod host;
mod mmu;
mod rm;
pub mod vbios;

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tk_gpu::nv::channel::DOORBELL;
use tk_gpu::nv::chip::{
    BOOT_0, BOOT_42, GFW_BOOT_PROGRESS, GFW_PRIV_LEVEL_MASK, PROM, PROM_BYTES, USABLE_FB_SIZE_IN_MB, WPR2_ADDR_HI,
    WPR2_ADDR_LO,
};
use tk_gpu::nv::falcon::{FRTS_SCRATCH, GSP, GSP_FUSE_VERSION, MAILBOX0, SEC2, SEC2_FUSE_VERSION};
use tk_gpu::nv::mmu::{
    INVALIDATE_PDB_SYS, INVALIDATE_TRIGGER, MMU_INVALIDATE, MMU_INVALIDATE_PDB, MMU_INVALIDATE_UPPER_PDB,
};
use tk_gpu::nv::rpc::QUEUE_HEAD0;
use tk_gpu::nv::{BAR_MMIO, BAR_VRAM, VGA_WORKSPACE_BASE};
use tk_gpu::transport::*;

/// The chips the simulated GPU can be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimChip {
    /// An RTX 3090 (GA102, PCI 10de:2204).
    #[default]
    Ga102,
    /// An RTX 4090 (AD102, 10de:2684).
    Ad102,
    /// An RTX 5090 (GB202, 10de:2b85).
    Gb202,
}

impl SimChip {
    /// NV_PMC_BOOT_42: architecture, implementation and revision A1.
    fn boot42(self) -> u32 {
        match self {
            SimChip::Ga102 => 0x1720_a100,
            SimChip::Ad102 => 0x1920_a100,
            SimChip::Gb202 => 0x1b20_a100,
        }
    }

    pub fn device_id(self) -> u16 {
        match self {
            SimChip::Ga102 => 0x2204,
            SimChip::Ad102 => 0x2684,
            SimChip::Gb202 => 0x2b85,
        }
    }

    /// Usable VRAM in MiB (24 GiB, 24 GiB and 32 GiB, less what the boot firmware keeps).
    fn vram_mib(self) -> u32 {
        match self {
            SimChip::Ga102 | SimChip::Ad102 => 24 * 1024 - 64,
            SimChip::Gb202 => 32 * 1024 - 64,
        }
    }
}

/// The simulated GPU's options (`nv:sim,OPTION,...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NvSimOptions {
    pub chip: SimChip,
    /// `left-running`: a GSP from an earlier driver runs (WPR2 is set) until a function reset.
    pub left_running: bool,
    /// `link-drop=N`: after N register or configuration-space accesses, reads return all ones
    /// and writes are dropped.
    pub link_drop: Option<u64>,
    /// `hang`: launched work never finishes (for when launches exist).
    pub hang: bool,
}

impl NvSimOptions {
    /// Parses the options after `nv:sim,` (comma-separated).
    pub fn parse(s: &str) -> Result<NvSimOptions, String> {
        let mut o = NvSimOptions::default();
        for opt in s.split(',').filter(|x| !x.is_empty()) {
            match opt.split_once('=') {
                Some(("link-drop", n)) => o.link_drop = Some(super::link_drop(n)?),
                Some(("chip", c)) => {
                    o.chip = match c {
                        "ga102" => SimChip::Ga102,
                        "ad102" => SimChip::Ad102,
                        "gb202" => SimChip::Gb202,
                        _ => return Err(format!("chip={c}: the simulated NVIDIA GPU is ga102, ad102 or gb202")),
                    }
                }
                None if opt == "left-running" => o.left_running = true,
                None if opt == "hang" => o.hang = true,
                _ => {
                    return Err(format!(
                        "unknown option `{opt}` of nv:sim; its options are chip=ga102|ad102|gb202, left-running (a \
                         GSP from an earlier driver runs), hang (launched work never finishes) and link-drop=N (the \
                         link drops after N register accesses)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// BAR0: 16 MiB of registers; BAR1: a 256 MiB VRAM aperture.
pub const MMIO_BAR_BYTES: u64 = 16 << 20;
pub const VRAM_BAR_BYTES: u64 = 256 << 20;
/// Where the simulated FRTS region would start (what a WPR2 left by an earlier GSP reads).
const LEFT_WPR2: u32 = 0x5fe0_0000 >> 8;

/// The simulated NVIDIA GPU.
pub struct NvSimGpu {
    opts: NvSimOptions,
    vbios: Vec<u8>,
    /// WPR2's LO and HI registers (address >> 12 in bits 31:4).
    wpr2: Mutex<(u32, u32)>,
    gsp: Mutex<falcon::Falcon>,
    sec2: Mutex<falcon::Falcon>,
    gsp_rm: Mutex<gsp_rm::GspRm>,
    /// VRAM and the TLB.
    mem: Mutex<mmu::Memory>,
    /// The TLB invalidation's PDB registers (LO, UPPER).
    inval_pdb: Mutex<(u32, u32)>,
    /// Launches run (each gets its own warp-order seed).
    launches: AtomicU64,
    /// System memory on the bus: (bus address, bytes, memory, offset in it).
    sys: Mutex<Vec<super::Chunk>>,
    /// The FRTS error code (NV_PBUS_SW_SCRATCH(0xE) bits 31:16).
    scratch: AtomicU32,
    fault: Mutex<Option<String>>,
    /// Register reads left before the GPU's boot firmware reports done (after power-on it has
    /// finished; a function reset starts it again).
    gfw_busy: AtomicU64,
    command: AtomicU16,
    accesses: AtomicU64,
    trips: AtomicU64,
}

impl NvSimGpu {
    pub fn new(opts: NvSimOptions) -> NvSimGpu {
        NvSimGpu {
            opts,
            vbios: vbios::build(opts.chip.device_id()),
            wpr2: Mutex::new(if opts.left_running { (LEFT_WPR2, LEFT_WPR2 + 0x1000) } else { (0, 0) }),
            gsp: Mutex::new(falcon::Falcon::new("GSP", opts.left_running)),
            sec2: Mutex::new(falcon::Falcon::new("SEC2", false)),
            gsp_rm: Mutex::new(gsp_rm::GspRm::default()),
            mem: Mutex::new(mmu::Memory::default()),
            inval_pdb: Mutex::new((0, 0)),
            launches: AtomicU64::new(0),
            sys: Mutex::new(Vec::new()),
            scratch: AtomicU32::new(0),
            fault: Mutex::new(None),
            gfw_busy: AtomicU64::new(0),
            command: AtomicU16::new(0),
            accesses: AtomicU64::new(0),
            trips: AtomicU64::new(0),
        }
    }

    /// Counts an access; whether the link has dropped by now.
    fn gone(&self) -> bool {
        self.trips.fetch_add(1, Ordering::Relaxed);
        self.opts.link_drop.is_some_and(|n| self.accesses.fetch_add(1, Ordering::Relaxed) >= n)
    }

    fn reg(&self, off: u64) -> Result<u32, String> {
        Ok(match off {
            BOOT_0 => self.opts.chip.boot42() >> 20 << 20,
            BOOT_42 => self.opts.chip.boot42(),
            WPR2_ADDR_LO => self.wpr2.lock().map_err(|_| "poisoned")?.0,
            WPR2_ADDR_HI => self.wpr2.lock().map_err(|_| "poisoned")?.1,
            FRTS_SCRATCH => self.scratch.load(Ordering::Relaxed) << 16,
            // Fuse version 1 for every ucode id: FWSEC's second signature, booter_load's first.
            o if (GSP_FUSE_VERSION..GSP_FUSE_VERSION + 64).contains(&o) => 1,
            o if (SEC2_FUSE_VERSION..SEC2_FUSE_VERSION + 64).contains(&o) => 1,
            o if (SEC2.base..SEC2.base + 0x2000).contains(&o) => {
                return self.sec2.lock().map_err(|_| "poisoned")?.read(o - SEC2.base).ok_or_else(|| {
                    format!("the simulated SEC2 falcon does not model register {:#x} yet", o - SEC2.base)
                });
            }
            o if (GSP.base..GSP.base + 0x2000).contains(&o) => {
                return self.gsp.lock().map_err(|_| "poisoned")?.read(o - GSP.base).ok_or_else(|| {
                    format!("the simulated GSP falcon does not model register {:#x} yet", o - GSP.base)
                });
            }
            GFW_PRIV_LEVEL_MASK => 1,
            GFW_BOOT_PROGRESS => {
                let busy = self.gfw_busy.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if busy.is_ok() { 0x3f } else { 0xff }
            }
            USABLE_FB_SIZE_IN_MB => self.opts.chip.vram_mib(),
            // Invalidations finish at once.
            MMU_INVALIDATE => 0,
            // No display engine state: the workspace register is not valid.
            VGA_WORKSPACE_BASE => 0,
            _ => return Err(format!("the simulated NVIDIA GPU does not model register {off:#x} yet")),
        })
    }
}

impl NvSimGpu {
    /// The PCI device id.
    pub fn device_id(&self) -> u16 {
        self.opts.chip.device_id()
    }

    /// Makes `mem` (shared with a TinyGPU client) reachable by DMA; returns its segments.
    pub fn attach_sysmem(&self, mem: Arc<dyn HostMem>) -> Result<Vec<(u64, u64)>, String> {
        let mut sys = self.sys.lock().map_err(|_| "poisoned")?;
        super::attach(&mut sys, mem, 0x40_0000_0000)
    }

    /// Reads system memory by bus address, for the falcon's DMA: the bytes must lie in one
    /// piece the driver allocated.
    fn dma_read(&self, bus: u64, out: &mut [u8]) -> Result<(), String> {
        let sys = self.sys.lock().map_err(|_| "poisoned")?;
        let (b, _, mem, off) = sys
            .iter()
            .find(|(b, n, _, _)| (*b..b + n).contains(&bus) && bus + out.len() as u64 <= b + n)
            .ok_or_else(|| format!("a GSP falcon DMA from bus address {bus:#x}, which no system memory holds"))?;
        let at = (off + bus - b) as usize;
        mem.with(&mut |m| out.copy_from_slice(&m[at..at + out.len()]));
        Ok(())
    }

    /// Writes system memory by bus address (GSP-RM's status queue), within one piece.
    fn dma_write(&self, bus: u64, bytes: &[u8]) -> Result<(), String> {
        let sys = self.sys.lock().map_err(|_| "poisoned")?;
        let (b, _, mem, off) = sys
            .iter()
            .find(|(b, n, _, _)| (*b..b + n).contains(&bus) && bus + bytes.len() as u64 <= b + n)
            .ok_or_else(|| format!("a GSP write to bus address {bus:#x}, which no system memory holds"))?;
        let at = (off + bus - b) as usize;
        mem.with(&mut |m| m[at..at + bytes.len()].copy_from_slice(bytes));
        Ok(())
    }
}

impl Transport for NvSimGpu {
    fn name(&self) -> String {
        "nv:sim".into()
    }
    fn read32(&self, bar: u8, off: u64) -> Result<u32, String> {
        if self.gone() {
            return Ok(u32::MAX);
        }
        match bar {
            BAR_MMIO if (PROM..PROM + PROM_BYTES as u64).contains(&off) => {
                let at = (off - PROM) as usize;
                let mut b = [0u8; 4];
                for (k, x) in b.iter_mut().enumerate() {
                    *x = self.vbios.get(at + k).copied().unwrap_or(0xff);
                }
                Ok(u32::from_le_bytes(b))
            }
            BAR_MMIO => {
                let v = self.reg(off);
                self.gsp_rm_step();
                v
            }
            _ => Err(format!("the simulated NVIDIA GPU has no BAR {bar} reads modelled yet")),
        }
    }
    fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
        if self.gone() {
            return Ok(());
        }
        let r = self.write_reg(bar, off, v);
        self.gsp_rm_step();
        r
    }
    fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String> {
        self.write32(bar, off, v as u32)
    }
    fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String> {
        // As over the TinyGPU socket: one 32-bit access per word.
        if !off.is_multiple_of(4) || !out.len().is_multiple_of(4) {
            return Err(format!("a {}-byte read at {off:#x}: 32-bit aligned accesses only", out.len()));
        }
        for (k, chunk) in out.chunks_exact_mut(4).enumerate() {
            chunk.copy_from_slice(&self.read32(bar, off + 4 * k as u64)?.to_le_bytes());
        }
        Ok(())
    }
    fn write_bytes(&self, bar: u8, off: u64, _src: &[u8]) -> Result<(), String> {
        self.write32(bar, off, 0)
    }
    fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }
    fn firmware(&self) -> Option<Vec<(String, Vec<u8>)>> {
        let dir = match self.opts.chip {
            SimChip::Ga102 => "ga102",
            SimChip::Ad102 => "ad102",
            SimChip::Gb202 => return None,
        };
        firmware::files(dir).ok()
    }
    fn fault(&self) -> Option<String> {
        self.fault.lock().ok().and_then(|f| f.clone())
    }
    fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
        let mem: Arc<dyn HostMem> = Arc::new(Mutex::new(vec![0u8; bytes]));
        let mut sys = self.sys.lock().map_err(|_| "poisoned")?;
        let segments = super::attach(&mut sys, mem.clone(), 0x40_0000_0000)?;
        Ok(SysMem { mem, segments })
    }
    fn config_read(&self, offset: u16, width: u8) -> Result<u32, String> {
        check_config_access(offset, width)?;
        if self.gone() {
            return Ok(if width == 4 { u32::MAX } else { (1 << (8 * u32::from(width))) - 1 });
        }
        let [cl, ch] = self.command.load(Ordering::Relaxed).to_le_bytes();
        let [vl, vh] = 0x10deu16.to_le_bytes();
        let [dl, dh] = self.opts.chip.device_id().to_le_bytes();
        let byte = |at: u16| match at {
            0 => vl,
            1 => vh,
            2 => dl,
            3 => dh,
            4 => cl,
            5 => ch,
            0x08 => 0xa1, // revision
            0x0b => 0x03, // class: display controller
            // BAR0 (32-bit) at 0xfb00_0000; BAR1 and BAR3 64-bit prefetchable.
            0x10 => 0x00,
            0x13 => 0xfb,
            0x14 => 0x0c,
            0x17 => 0xd0,
            0x1c => 0x0c,
            0x1f => 0xe0,
            0x2c => 0xde, // subsystem vendor 0x10de, subsystem 0x1612
            0x2d => 0x10,
            0x2e => 0x12,
            0x2f => 0x16,
            _ => 0,
        };
        let mut b = [0u8; 4];
        for (k, x) in b.iter_mut().take(usize::from(width)).enumerate() {
            *x = byte(offset + k as u16);
        }
        Ok(u32::from_le_bytes(b))
    }
    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String> {
        check_config_access(offset, width)?;
        if self.gone() {
            return Ok(());
        }
        let mut c = self.command.load(Ordering::Relaxed).to_le_bytes();
        for (k, x) in value.to_le_bytes().iter().take(usize::from(width)).enumerate() {
            match offset + k as u16 {
                4 => c[0] = *x,
                5 => c[1] = *x,
                _ => {}
            }
        }
        self.command.store(u16::from_le_bytes(c), Ordering::Relaxed);
        Ok(())
    }
    fn reset(&self) -> Result<(), String> {
        if self.gone() {
            return Err(tk_gpu::transport::LINK_LOST.into());
        }
        // A function reset stops the GSP and clears WPR2; the GPU's boot firmware runs again
        // (for a few polls).
        *self.wpr2.lock().map_err(|_| "poisoned")? = (0, 0);
        *self.gsp.lock().map_err(|_| "poisoned")? = falcon::Falcon::new("GSP", false);
        *self.sec2.lock().map_err(|_| "poisoned")? = falcon::Falcon::new("SEC2", false);
        *self.gsp_rm.lock().map_err(|_| "poisoned")? = gsp_rm::GspRm::default();
        self.invalidate(None);
        self.gfw_busy.store(3, Ordering::Relaxed);
        Ok(())
    }
    fn bar_size(&self, bar: u8) -> Result<u64, String> {
        Ok(match bar {
            BAR_MMIO => MMIO_BAR_BYTES,
            BAR_VRAM => VRAM_BAR_BYTES,
            _ => 0,
        })
    }
}

impl NvSimGpu {
    fn write_reg(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
        if bar == BAR_MMIO && off == QUEUE_HEAD0 {
            // The doorbell: GSP-RM looks at its command queue (at its next step).
            return if v == 0 { Ok(()) } else { Err(format!("a write of {v:#x} to NV_PGSP_QUEUE_HEAD(0), not 0")) };
        }
        match (bar, off) {
            (BAR_MMIO, DOORBELL) => {
                // The GPU runs the work; what goes wrong there is a fault, not a failed write.
                if let Err(why) = self.doorbell(v) {
                    *self.fault.lock().map_err(|_| "poisoned")? = Some(why);
                }
                return Ok(());
            }
            (BAR_MMIO, MMU_INVALIDATE_PDB) => {
                self.inval_pdb.lock().map_err(|_| "poisoned")?.0 = v;
                return Ok(());
            }
            (BAR_MMIO, MMU_INVALIDATE_UPPER_PDB) => {
                self.inval_pdb.lock().map_err(|_| "poisoned")?.1 = v;
                return Ok(());
            }
            (BAR_MMIO, MMU_INVALIDATE) if v & INVALIDATE_TRIGGER != 0 => {
                let (lo, hi) = *self.inval_pdb.lock().map_err(|_| "poisoned")?;
                if v & 2 != 0 {
                    self.invalidate(None);
                } else if lo & INVALIDATE_PDB_SYS != 0 {
                    self.invalidate(Some(u64::from(hi) << 40 | u64::from(lo >> 4) << 12));
                } else {
                    return Err(format!(
                        "a TLB invalidation of a page directory in VRAM ({lo:#x}), which tk never uses"
                    ));
                }
                return Ok(());
            }
            _ => {}
        }
        let falcon = [&GSP, &SEC2].into_iter().find(|f| (f.base..f.base + 0x2000).contains(&off));
        let Some(which) = falcon.filter(|_| bar == BAR_MMIO) else {
            return Err(format!("the simulated NVIDIA GPU does not model writes to BAR {bar} offset {off:#x} yet"));
        };
        let is_gsp = which.base == GSP.base;
        let mut f = if is_gsp { self.gsp.lock() } else { self.sec2.lock() }.map_err(|_| "poisoned")?;
        match f.write(off - which.base, v)? {
            falcon::Effect::None => Ok(()),
            falcon::Effect::Dma { bus, imem, secure, dst, tag } => {
                let mut bytes = [0u8; 256];
                self.dma_read(bus, &mut bytes)?;
                f.dma_done(&bytes, imem, secure, dst, tag)
            }
            falcon::Effect::Start if is_gsp => {
                let vram = u64::from(self.opts.chip.vram_mib()) << 20;
                match f.run_fwsec(&self.vbios, 1, vram) {
                    Ok((lo, hi)) => {
                        *self.wpr2.lock().map_err(|_| "poisoned")? =
                            (((lo >> 12) << 4) as u32, ((hi >> 12) << 4) as u32);
                        f.regs.insert(MAILBOX0, 0);
                        self.scratch.store(0, Ordering::Relaxed);
                    }
                    Err((code, why)) => {
                        f.regs.insert(MAILBOX0, code);
                        self.scratch.store(code, Ordering::Relaxed);
                        *self.fault.lock().map_err(|_| "poisoned")? = Some(why);
                    }
                }
                Ok(())
            }
            falcon::Effect::Start => {
                // booter_load on SEC2: it reads the WPR metadata, loads GSP-RM and starts the
                // GSP's RISC-V core (gsp.rs).
                f.halted = true;
                let result = self.run_booter(&f);
                match result {
                    Ok(()) => {
                        f.regs.insert(MAILBOX0, 0);
                    }
                    Err((code, why)) => {
                        f.regs.insert(MAILBOX0, code);
                        *self.fault.lock().map_err(|_| "poisoned")? = Some(why);
                    }
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tk_gpu::nv::{NvError, chip::ChipError, probe};

    fn sim(opts: &str) -> NvSimGpu {
        NvSimGpu::new(NvSimOptions::parse(opts).expect("options"))
    }

    #[test]
    fn probe_finds_the_chip_the_vram_and_fwsec() {
        for (opts, name) in [("", "GA102"), ("chip=ad102", "AD102")] {
            let g = sim(opts);
            let p = probe(&g).expect("probes");
            assert_eq!(p.chip.name, name);
            assert!(!p.was_running);
            assert_eq!(p.vram, (24 * 1024 - 64) << 20);
            // No valid VGA workspace: 1 MiB below the end, aligned to 128 KiB, less 1 MiB.
            assert_eq!(p.frts_addr, p.vram - (2 << 20));
            assert_eq!(p.vbios.fwsec.desc.version, 3);
        }
    }

    #[test]
    fn a_gsp_left_running_is_reset() {
        let g = sim("left-running");
        let p = probe(&g).expect("probes after the reset");
        assert!(p.was_running);
        assert_eq!(*g.wpr2.lock().expect("lock"), (0, 0));
    }

    #[test]
    fn boot_firmware_that_never_finishes_is_a_clear_error() {
        let g = sim("");
        g.gfw_busy.store(u64::MAX, Ordering::Relaxed);
        let e = tk_gpu::nv::probe_within(&g, std::time::Duration::from_millis(30)).expect_err("times out");
        assert!(matches!(e, NvError::Chip(ChipError::GfwNotDone(0x3f))), "{e}");
        assert!(e.to_string().contains("TK_GPU_TIMEOUT_MS"), "{e}");
    }

    #[test]
    fn blackwell_is_refused_by_name() {
        let e = probe(&sim("chip=gb202")).expect_err("refused");
        assert!(matches!(e, NvError::Chip(ChipError::Unsupported { name: "GB202", .. })), "{e}");
        assert!(e.to_string().contains("FSP"), "{e}");
    }

    #[test]
    fn a_dropped_link_is_reported_at_every_step() {
        // Register and configuration accesses of a probe: count them, then drop the link
        // after each number below that.
        let whole = sim("");
        probe(&whole).expect("probes");
        let n = whole.trips.load(Ordering::Relaxed);
        tk_gpu::nv::boot(&whole).expect("boots");
        // A boot's accesses: the probe's n, then FWSEC-FRTS's and the booter's f.
        let f = whole.trips.load(Ordering::Relaxed) - 2 * n;
        for k in
            [0, 1, 2, 3, 5, 8, 100, 4000, n / 2, n - 3, n + 2, n + 10, n + f / 4, n + f / 2, n + 3 * f / 4, n + f - 4]
        {
            let e = tk_gpu::nv::boot(&sim(&format!("link-drop={k}"))).err().map(|e| e.to_string());
            assert!(e.as_ref().is_some_and(|e| e.contains("the GPU stopped answering")), "link-drop={k}: {e:?}");
        }
    }

    #[test]
    fn fwsec_frts_sets_wpr2_over_the_region() {
        for opts in ["", "chip=ad102", "left-running"] {
            let g = sim(opts);
            let p = probe(&g).unwrap_or_else(|e| panic!("{opts}: {e}"));
            let t = Duration::from_secs(1);
            tk_gpu::nv::falcon::fwsec_frts(&g, &p.vbios.fwsec, p.frts_addr, t)
                .unwrap_or_else(|e| panic!("{opts}: {e}"));
            let (lo, hi) = *g.wpr2.lock().expect("lock");
            assert_eq!(u64::from(lo >> 4) << 12, p.frts_addr, "{opts}");
            assert_eq!(u64::from(hi >> 4) << 12, p.frts_addr + (1 << 20), "{opts}");
            assert_eq!(g.fault(), None);
            // Running it again finds WPR2 set.
            let again = tk_gpu::nv::falcon::fwsec_frts(&g, &p.vbios.fwsec, p.frts_addr, t);
            assert!(again.is_err_and(|e| e.to_string().contains("WPR2 is already set")));
        }
    }

    #[test]
    fn booter_load_starts_gsp_rm_over_wpr2() {
        for opts in ["", "chip=ad102", "left-running"] {
            let g = sim(opts);
            let b = tk_gpu::nv::boot(&g).unwrap_or_else(|e| panic!("{opts}: {e}"));
            let l = b.gsp.layout;
            assert_eq!(l.frts, b.probe.frts_addr);
            let (lo, hi) = *g.wpr2.lock().expect("lock");
            assert_eq!((u64::from(lo >> 4) << 12, u64::from(hi >> 4) << 12), (l.wpr_start, l.wpr_end), "{opts}");
            assert!(g.gsp.lock().expect("lock").riscv_active);
            assert_eq!(g.fault(), None);
        }
    }

    #[test]
    fn booter_load_refuses_what_the_real_one_would() {
        use tk_gpu::nv::firmware::NvFirmware;
        let t = Duration::from_secs(1);
        let err = |f: &dyn Fn(&mut NvFirmware)| {
            let g = sim("");
            let p = probe(&g).expect("probes");
            let mut fw = tk_gpu::nv::firmware(&g, &p.chip, None).expect("firmware");
            f(&mut fw);
            let e = tk_gpu::nv::boot_within(&g, Some(fw), t).err().expect("refused").to_string();
            assert!(!g.gsp.lock().expect("lock").riscv_active, "{e}");
            e
        };
        let e = err(&|fw| fw.booter.signatures.swap(0, 1));
        assert!(e.contains("booter_load failed") && e.contains("not the one the fuses select"), "{e}");
        let e = err(&|fw| fw.booter.image[0x180] ^= 1);
        assert!(e.contains("secure IMEM does not hold its code"), "{e}");
        let e = err(&|fw| fw.booter.image[0xa00] ^= 1);
        assert!(e.contains("DMEM differs"), "{e}");
        let e = err(&|fw| fw.gsp.image[0x1_2345] ^= 1);
        assert!(e.contains("not GSP-RM's"), "{e}");
        let e = err(&|fw| fw.gsp.signature[7] ^= 1);
        assert!(e.contains("signature is not GSP-RM's"), "{e}");
        let e = err(&|fw| fw.bootloader.data_offset += 0x100);
        assert!(e.contains("not the GSP's RISC-V bootloader"), "{e}");
        let e = err(&|fw| fw.booter.engine_id_mask = 4);
        assert!(e.contains("not for SEC2"), "{e}");
    }

    #[test]
    fn gsp_rm_runs_the_cpu_sequence_and_reports_init_done() {
        for opts in ["", "chip=ad102", "left-running"] {
            let g = sim(opts);
            let b = tk_gpu::nv::boot(&g).unwrap_or_else(|e| panic!("{opts}: {e}"));
            assert_eq!(b.init.sequences, 1);
            assert_eq!(b.init.commands, 5);
            let rm = g.gsp_rm.lock().expect("lock");
            assert_eq!(rm.phase, gsp_rm::Phase::Ready);
            assert_eq!(&rm.received[..2], [tk_gpu::nv::rpc::FN_GSP_SET_SYSTEM_INFO, tk_gpu::nv::rpc::FN_SET_REGISTRY]);
            // The rpc and vaspace steps: the client, device, subdevice and VA space, its root.
            assert_eq!(rm.rm.objects.len(), 4);
            assert_eq!(rm.rm.roots.values().copied().collect::<Vec<_>>(), [b.tables.root_bus]);
            assert_eq!(b.objects.gr_runlist, rm::GR_RUNLIST);
            assert_eq!(g.fault(), None);
        }
    }

    /// Boots through the booter (GSP-RM started, nothing answered yet), after `before` had
    /// its say on the command queue.
    fn up_to_booter(
        g: &NvSimGpu,
        before: &dyn Fn(&mut tk_gpu::nv::rpc::Rpc, &tk_gpu::nv::gsp::GspMem),
    ) -> (tk_gpu::nv::gsp::GspMem, tk_gpu::nv::rpc::Rpc) {
        let t = Duration::from_secs(1);
        let p = probe(g).expect("probes");
        let fw = tk_gpu::nv::firmware(g, &p.chip, None).expect("firmware");
        tk_gpu::nv::falcon::fwsec_frts(g, &p.vbios.fwsec, p.frts_addr, t).expect("fwsec");
        let mut rpc = tk_gpu::nv::rpc::Rpc::new(Duration::from_millis(200));
        let mem = tk_gpu::nv::gsp::boot_with(g, &fw, (p.vram, p.vga_workspace, p.frts_addr), &mut rpc, t, before)
            .expect("booter");
        (mem, rpc)
    }

    #[test]
    fn gsp_rm_stops_on_what_it_does_not_know_and_the_driver_says_why() {
        use tk_gpu::nv::rpc::{Rpc, wait_init_done};
        let g = sim("");
        let (mem, mut rpc) = up_to_booter(&g, &|rpc, mem| rpc.send(&g, &mem.shared, 999, b"?").expect("sends"));
        let e = wait_init_done(&g, &mem.shared, &mut rpc, Duration::from_millis(200)).expect_err("no init done");
        assert!(e.to_string().contains("RPC function 999 is not one the simulated GSP-RM answers"), "{e}");
        // A damaged message: its checksum no longer holds.
        let g = sim("");
        let (mem, mut rpc) = up_to_booter(&g, &|_, mem| {
            let at = tk_gpu::nv::rpc::CMDQ_OFFSET + 0x1000 + 0x60;
            let b = mem.shared.read(at, 1)[0];
            mem.shared.write(at, &[b ^ 1]);
        });
        let e = wait_init_done(&g, &mem.shared, &mut rpc, Duration::from_millis(200)).expect_err("no init done");
        assert!(e.to_string().contains("checksum does not match"), "{e}");
        // The same, in the driver's own reading of a status message.
        let g = sim("");
        let (mem, _) = up_to_booter(&g, &|_, _| {});
        g.read32(BAR_MMIO, BOOT_0).expect("a register read lets GSP-RM run");
        let at = tk_gpu::nv::rpc::STATQ_OFFSET + 0x1000 + 0x60;
        let b = mem.shared.read(at, 1)[0];
        mem.shared.write(at, &[b ^ 1]);
        let e = Rpc::new(Duration::from_millis(100)).try_recv(&mem.shared).expect_err("refused");
        assert!(e.to_string().contains("checksum does not match"), "{e}");
    }

    #[test]
    fn the_mmu_walks_the_drivers_page_tables() {
        use tk_gpu::nv::mmu::{Aperture, HUGE, PageTables, SMALL};
        let g = sim("");
        let mut pt = PageTables::new(&g).expect("root");
        let sys = g.sysmem(64 << 10).expect("sysmem");
        // A 2 MiB page and 4 KiB pages in VRAM, 4 KiB pages of system memory, far apart.
        pt.map(&g, 0x20_0000, 0x4000_0000, HUGE + 3 * SMALL, Aperture::Vram).expect("maps");
        pt.map(&g, 0x1_0000_0000_0000, sys.bus(0).expect("bus"), 4 * SMALL, Aperture::Sys).expect("maps");
        let t = Duration::from_secs(1);
        pt.invalidate(&g, t).expect("invalidates");
        for va in [0x20_0000u64, 0x20_1234, 0x3f_fffc, 0x40_0000, 0x40_2ff8, 0x1_0000_0000_0000, 0x1_0000_0000_3ffc] {
            assert_eq!(g.translate(pt.root_bus, va).ok(), pt.translate(va), "{va:#x}");
        }
        for va in [0x1f_f000u64, 0x40_3000, 0x1_0000_0000_4000, 1 << 47] {
            let e = g.translate(pt.root_bus, va).expect_err("unmapped");
            assert!(e.contains("MMU fault") && e.contains(&format!("{va:#x}")), "{e}");
        }
        // Through the tables: a write to VRAM and one to system memory land where mapped.
        g.va_write(pt.root_bus, 0x20_0ffe, b"abcd").expect("writes");
        assert_eq!(g.vram_read(0x4000_0ffe, 4).expect("reads"), b"abcd");
        assert_eq!(g.va_read(pt.root_bus, 0x20_0ffe, 4).expect("reads"), b"abcd");
        g.va_write(pt.root_bus, 0x1_0000_0000_1000, b"xy").expect("writes");
        let mut got = [0u8; 2];
        sys.mem.with(&mut |m| got.copy_from_slice(&m[0x1000..0x1002]));
        assert_eq!(&got, b"xy");
        // A changed mapping is seen only after an invalidation (the TLB holds the old one).
        pt.unmap(0x40_0000, SMALL);
        pt.map(&g, 0x40_0000, 0x5000_0000, SMALL, Aperture::Vram).expect("maps");
        assert_eq!(g.translate(pt.root_bus, 0x40_0010).ok(), Some((Aperture::Vram, 0x4020_0010)));
        pt.invalidate(&g, t).expect("invalidates");
        assert_eq!(g.translate(pt.root_bus, 0x40_0010).ok(), Some((Aperture::Vram, 0x5000_0010)));
        // Overlaps and odd sizes are refused.
        assert!(
            pt.map(&g, 0x20_1000, 0, SMALL, Aperture::Vram).is_err_and(|e| e.to_string().contains("mapped already"))
        );
        assert!(pt.map(&g, 0x80_0000, 0, 100, Aperture::Vram).is_err());
    }

    #[test]
    fn the_copy_engine_moves_data_through_the_staging_area() {
        use tk_gpu::nv::device::NvGpu;
        let gpu = NvGpu::open(Box::new(sim(""))).expect("opens");
        let a = gpu.alloc(5 << 20).expect("allocates");
        let b = gpu.alloc(3 << 10).expect("allocates");
        let data: Vec<u8> = (0..(5 << 20) as u32).map(|i| (i * 7 + i / 4096) as u8).collect();
        gpu.upload(a.va, &data).expect("uploads");
        let mut back = vec![0u8; data.len()];
        gpu.download(a.va, &mut back).expect("downloads");
        assert!(back == data, "the 5 MiB read back differ");
        gpu.copy(a.va + 100, b.va, 3000).expect("copies");
        let mut c = vec![0u8; 3000];
        gpu.download(b.va, &mut c).expect("downloads");
        assert_eq!(c, data[100..3100]);
        // One round trip per copy: the doorbell (the waits find the semaphore in memory).
        let before = gpu.round_trips();
        gpu.upload(b.va, &data[..1 << 10]).expect("uploads");
        assert!(gpu.round_trips() - before <= 2, "{} round trips", gpu.round_trips() - before);
    }

    /// A launch is one round trip besides the checks made while it runs that the GPU still
    /// answers: the doorbell. The QMD, constant bank 0, the pushbuffer, the semaphore and the
    /// error slots are in system memory. The kernel: EXIT, then the closing self-branch, built
    /// with tk-isa's encoder.
    #[test]
    fn a_launch_takes_one_round_trip() {
        use tk_gpu::nv::device::NvGpu;
        use tk_isa::sass::{Control, Inst};
        let gpu = NvGpu::open(Box::new(sim(""))).expect("opens");
        let ctrl = Control { stall: 5, yield_: true, write_sb: 7, read_sb: 7, wait: 0, reuse: 0 };
        let mut exit = Inst::new(0x94d, 86).expect("EXIT");
        exit.ctrl = ctrl;
        let mut bra = Inst::new(0x947, 86).expect("BRA");
        bra.set_target(0x10, 0x10).expect("in reach");
        bra.ctrl = ctrl;
        let code: Vec<u8> = [exit, bra].iter().flat_map(|i| i.encode().expect("encodes").to_le_bytes()).collect();
        let mem = gpu.alloc(4096).expect("allocates");
        gpu.upload(mem.va, &code).expect("uploads");
        let l = tk_gpu::nv::qmd::Launch {
            program: mem.va,
            program_bytes: code.len() as u64,
            blocks: 2,
            threads: 64,
            registers: 8,
            barriers: 0,
            shared_bytes: 0,
            local_bytes: 0,
            sass_version: 0x86,
            bank0: (0, 0),
            bank2: None,
        };
        gpu.launch(l, &[0u8; 0x200]).expect("the first launch");
        let (before, start) = (gpu.round_trips(), std::time::Instant::now());
        gpu.launch(l, &[0u8; 0x200]).expect("a launch");
        let trips = gpu.round_trips() - before;
        let checks = (start.elapsed().as_millis() / 20) as u64;
        assert!(trips >= 1 && trips <= 1 + checks, "{trips} round trips for a launch");
        assert_eq!(g_fault(&gpu), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(150))]
        /// Hostile pushbuffers (random method headers and data, and launches of a random QMD
        /// from random code) end in a fault that names what the GPU refused, or run; never a
        /// panic, never a hang.
        #[test]
        fn hostile_methods_and_qmds_never_panic(
            words in proptest::collection::vec(proptest::num::u32::ANY, 1..40),
            qmd in proptest::collection::vec(proptest::num::u32::ANY, 64),
            copy in proptest::bool::ANY,
        ) {
            use tk_gpu::nv::device::{LAUNCH_VA, NvGpu, SEND_PCAS_A, SEND_SIGNALING_PCAS2_B};
            use tk_gpu::nv::qmd::incr;
            let gpu = NvGpu::open_within(Box::new(sim("")), Duration::from_millis(200)).expect("boots");
            let _ = gpu.submit_methods(copy, &words);
            let gpu = NvGpu::open_within(Box::new(sim("")), Duration::from_millis(200)).expect("boots");
            // A random QMD in a launch slot (the slots are mapped), sent as a launch.
            let mut q = tk_gpu::nv::qmd::Qmd(qmd.try_into().unwrap_or([0; 64]));
            q.set(tk_gpu::nv::qmd::QMD_MAJOR_VERSION, 3);
            let va = LAUNCH_VA + 0xf00;
            gpu.write_launch_slots(0xf00, &q.to_bytes());
            let m = [incr(1, SEND_PCAS_A, 1), (va >> 8) as u32, incr(1, SEND_SIGNALING_PCAS2_B, 1), 9];
            let _ = gpu.submit_methods(false, &m);
        }
    }

    fn g_fault(gpu: &tk_gpu::nv::device::NvGpu) -> Option<String> {
        gpu.transport().fault()
    }

    #[test]
    fn a_hung_kernel_is_a_timeout_and_then_the_device_is_lost() {
        use tk_gpu::nv::device::NvGpu;
        use tk_gpu::queue::GpuError;
        let gpu = NvGpu::open_within(Box::new(sim("hang")), Duration::from_millis(200)).expect("boots");
        let l = tk_gpu::nv::qmd::Launch {
            program: 0x20_0000_0000,
            program_bytes: 256,
            blocks: 1,
            threads: 32,
            registers: 8,
            barriers: 1,
            shared_bytes: 0,
            local_bytes: 0,
            sass_version: 0x86,
            bank0: (0, 0),
            bank2: None,
        };
        let t0 = std::time::Instant::now();
        let e = gpu.launch(l, &[0u8; 0x200]).expect_err("never finishes");
        assert!(matches!(e, GpuError::Timeout { .. }), "{e}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert!(matches!(gpu.alloc(4096), Err(GpuError::Lost)));
    }

    #[test]
    fn a_missing_firmware_file_is_named() {
        let dir = std::env::temp_dir().join(format!("tk-nvsim-fw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let g = sim("");
        let p = probe(&g).expect("probes");
        let e = tk_gpu::nv::firmware::NvFirmware::load(&dir, &p.chip).expect_err("missing");
        let e = NvError::from(e).to_string();
        assert!(e.contains(&format!("{}/nvidia/ga102/gsp/gsp-570.144.bin", dir.display())), "{e}");
    }

    #[test]
    fn fwsec_that_the_boot_rom_or_fwsec_would_refuse_fails_with_the_reason() {
        let t = Duration::from_secs(1);
        let err = |f: &dyn Fn(&mut tk_gpu::nv::vbios::Fwsec, &mut u64)| {
            let g = sim("");
            let p = probe(&g).expect("probes");
            let (mut fw, mut at) = (p.vbios.fwsec.clone(), p.frts_addr);
            f(&mut fw, &mut at);
            let e = tk_gpu::nv::falcon::fwsec_frts(&g, &fw, at, t).expect_err("refused").to_string();
            assert_eq!(*g.wpr2.lock().expect("lock"), (0, 0), "{e}");
            e
        };
        // The other signature than the fuses select.
        let e = err(&|fw, _| fw.signatures.swap(0, 1));
        assert!(e.contains("FWSEC reported failure") && e.contains("not the one the fuses select"), "{e}");
        // Code that is not the VBIOS's.
        let e = err(&|fw, _| fw.imem[0x10] ^= 1);
        assert!(e.contains("IMEM does not hold"), "{e}");
        // An FRTS region beyond VRAM.
        let e = err(&|_, at| *at = 64 << 30);
        assert!(e.contains("not inside"), "{e}");
        // FWSEC for another falcon than the GSP.
        let e = err(&|fw, _| fw.desc.engine_id_mask = 1);
        assert!(e.contains("not for the GSP falcon"), "{e}");
        // A damaged DMEM.
        let e = err(&|fw, _| fw.dmem[0x100] ^= 0xff);
        assert!(e.contains("DMEM differs"), "{e}");
    }

    #[test]
    fn options_are_checked() {
        assert!(NvSimOptions::parse("chip=gh100").is_err_and(|e| e.contains("ga102, ad102 or gb202")));
        assert!(NvSimOptions::parse("warm").is_err_and(|e| e.contains("unknown option `warm` of nv:sim")));
        assert!(NvSimOptions::parse("link-drop=x").is_err());
        assert_eq!(
            NvSimOptions::parse("chip=ad102,left-running,link-drop=7"),
            Ok(NvSimOptions { chip: SimChip::Ad102, left_running: true, link_drop: Some(7), hang: false })
        );
    }
}
