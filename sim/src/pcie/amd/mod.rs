//! A simulated RDNA3 GPU behind the [`Transport`] trait. It powers on cold, like a GPU in an
//! enclosure no driver ever touched: an IP discovery table in VRAM, a PSP that takes its
//! bootloader components and firmware through the real handshake and KM ring, an SMU mailbox, an
//! RLC autoload, a halted MEC and SDMA engine ([`chip`]), and synthetic firmware in the real
//! formats ([`firmware`]). Once booted, a command processor on its own thread wakes when the
//! queue's doorbell is written, reads the ring through the page tables, decodes the PM4 packets
//! and runs each DISPATCH_DIRECT on the RDNA3 emulator, then performs the RELEASE_MEM write; the
//! SDMA engine runs its ring when its doorbell is written.
//!
//! Unknown packets, writes to registers tk does not program, doorbells of no queue, steps taken
//! out of order and faults of the emulated kernels are reported through [`Transport::fault`]
//! (and stop the queue).

mod chip;
pub mod firmware;
mod hub;

pub use chip::Power;

use hub::Vm;
use std::collections::HashMap;
use std::sync::atomic::AtomicU16;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use tk_gpu::amd::firmware::FirmwareSet;
use tk_gpu::amd::pm4::{self, Packet};
use tk_gpu::amd::regs::*;
use tk_gpu::amd::{BAR_DOORBELL, BAR_MMIO, BAR_VRAM};
use tk_gpu::transport::*;

/// VRAM of the simulated GPU (allocated lazily by the OS as it is touched).
pub const VRAM_BYTES: usize = 1 << 30;
/// The doorbell and register BARs' sizes (an RX 7900 XTX, Navi 31, as `lspci -v` lists its
/// regions: 2 MiB of doorbells at BAR 2, 1 MiB of registers at BAR 5).
pub const DOORBELL_BAR_BYTES: u64 = 2 << 20;
pub const MMIO_BAR_BYTES: u64 = 1 << 20;
/// Where the simulated GPU's firmware places the frame buffer in the GPU's address space at
/// power-on (MC_VM_FB_LOCATION_BASE; the model's choice, 16 MiB aligned).
pub const FB_BASE: u64 = 0x80_0000_0000;
/// The PCI ids the simulated GPU answers with: AMD, Navi 31 (RX 7900 XTX).
pub const VENDOR_ID: u16 = 0x1002;
pub const DEVICE_ID: u16 = 0x744c;

use super::Chunk;

pub use super::{MAX_SEGMENTS, SYSMEM_CHUNK};

struct Inner {
    vram: Mutex<Vec<u8>>,
    sys: Mutex<Vec<Chunk>>,
    /// The low halves of 64-bit doorbells written as two 32-bit writes.
    db_lo: Mutex<HashMap<u64, u32>>,
    regs: Mutex<HashMap<u32, u32>>,
    fault: Mutex<Option<String>>,
    /// The last doorbell value (the queue's write pointer) and whether it is new.
    doorbell: Mutex<Option<u64>>,
    wake: Condvar,
    stop: AtomicBool,
    trips: AtomicU64,
    seed: u64,
    /// The PCI command register (the one writable configuration register tk uses).
    command: AtomicU16,
    /// Reads left that a mode-1 reset still answers with all ones (the function is not back
    /// on the bus yet).
    resetting: std::sync::atomic::AtomicU32,
    /// `link-drop=N`: after N register or configuration accesses, the link is gone.
    link_drop: Option<u64>,
    /// The VRAM BAR's size (`bar=MIB`; all of VRAM by default).
    vram_bar: u64,
    accesses: AtomicU64,
    /// The last write pointer the doorbell rang with, and the last one the command processor
    /// finished (for [`SimGpu::settle`]).
    rung: AtomicU64,
    done: AtomicU64,
    /// The firmware processors' state, and where the registers are.
    chip: Mutex<chip::Chip>,
    map: RegMap,
    /// VMID 0's cached translations (page -> (physical address, entry flags)) in the GFX and
    /// the MM hub: kept across doorbells, as the GPU's TLBs keep them, until an invalidation
    /// request to that hub.
    tlb: Mutex<HashMap<u64, (u64, u64)>>,
    mm_tlb: Mutex<HashMap<u64, (u64, u64)>>,
    /// CPU writes to VRAM through the BAR that the HDP may still hold (no HDP flush since).
    hdp_dirty: AtomicBool,
    /// The translation fault an engine met, until the hub reports it.
    vm_fault: Mutex<Option<hub::VmFault>>,
    /// The interrupt vectors' timestamp.
    iv_stamp: AtomicU64,
}

impl Inner {
    fn tlb(&self, which: hub::Which) -> &Mutex<HashMap<u64, (u64, u64)>> {
        match which {
            hub::Which::Gfx => &self.tlb,
            hub::Which::Mm => &self.mm_tlb,
        }
    }
}

/// The simulated GPU's options (`amd:sim,OPTION,...`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimOptions {
    /// `link-drop=N`: after N register or configuration-space accesses (BAR reads and writes,
    /// doorbells, config reads and writes), reads return all ones and writes are dropped, as
    /// when a Thunderbolt link drops or an enclosure loses power.
    pub link_drop: Option<u64>,
    /// `warm` (tk booted it before) or `left-running` (another driver's firmware runs); cold
    /// when neither.
    pub power: Power,
    /// `hang`: the compute queue takes work and never finishes it.
    pub hang: bool,
    /// `bar=MIB`: a VRAM BAR of this many MiB, smaller than the 1 GiB of VRAM (the IP
    /// discovery table at its end is then out of the BAR's reach).
    pub bar_mib: Option<u64>,
}

impl SimOptions {
    /// Parses the options after `amd:sim,` (comma-separated).
    pub fn parse(s: &str) -> Result<SimOptions, String> {
        let mut o = SimOptions::default();
        for opt in s.split(',').filter(|x| !x.is_empty()) {
            match opt.split_once('=') {
                Some(("link-drop", n)) => o.link_drop = Some(super::link_drop(n)?),
                None if opt == "warm" => o.power = Power::Warm,
                None if opt == "left-running" => o.power = Power::LeftRunning,
                None if opt == "hang" => o.hang = true,
                Some(("bar", n)) => {
                    let mib: u64 = n.parse().map_err(|_| format!("bar={n}: expected MiB, such as bar=256"))?;
                    if !(64..=(VRAM_BYTES as u64 >> 20)).contains(&mib) || !mib.is_power_of_two() {
                        return Err(format!(
                            "bar={n}: the VRAM BAR is a power of two from 64 to {} MiB",
                            VRAM_BYTES >> 20
                        ));
                    }
                    o.bar_mib = Some(mib);
                }
                _ => {
                    return Err(format!(
                        "unknown option `{opt}` of amd:sim; its options are warm (tk booted it before), left-running \
                         (another driver's firmware runs), hang (the queue never finishes), bar=MIB (a VRAM BAR \
                         smaller than VRAM) and link-drop=N (the link drops after N register accesses)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// The synthetic firmware for the IP versions of `table`.
pub fn synthetic(table: &tk_gpu::amd::discovery::Discovery) -> Vec<(String, Vec<u8>)> {
    synthetic_with_pieces(table).0
}

/// [`synthetic`] and the pieces the card takes, by firmware type.
fn synthetic_with_pieces(table: &tk_gpu::amd::discovery::Discovery) -> (firmware::Files, firmware::Pieces) {
    use tk_gpu::amd::discovery::{GC, MP0, MP1, SDMA0};
    let v = |id| table.version_of(id).map(|(a, b, c)| format!("{a}_{b}_{c}")).unwrap_or_default();
    firmware::synthetic_with_pieces(&v(MP0), &v(MP1), &v(GC), &v(SDMA0))
}

/// The simulated GPU. Dropping it stops its command processor.
pub struct SimGpu {
    inner: Arc<Inner>,
    cp: Option<std::thread::JoinHandle<()>>,
}

impl SimGpu {
    pub fn new() -> SimGpu {
        SimGpu::with_options(SimOptions::default())
    }

    /// A simulated GPU with `options`.
    pub fn with_options(options: SimOptions) -> SimGpu {
        let seed = std::env::var("TK_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        let table = tk_gpu::amd::discovery::navi31();
        // The card's firmware: linux-firmware's from TK_FIRMWARE_DIR when set, else synthetic.
        let (fw, expected) = match std::env::var_os("TK_FIRMWARE_DIR") {
            Some(d) => (table.firmware().ok().and_then(|n| FirmwareSet::load(std::path::Path::new(&d), &n).ok()), None),
            None => {
                let (files, pieces) = synthetic_with_pieces(&table);
                (FirmwareSet::from_files(files, "synthetic").ok(), Some(pieces))
            }
        };
        let map = RegMap::new(&table).unwrap_or_else(|e| panic!("the simulated GPU's own table: {e}"));
        let mut chip = chip::Chip::new(fw, expected);
        chip.hang = options.hang;
        let mut regs = HashMap::new();
        chip.power_on(&mut regs, &map, options.power);
        let inner = Arc::new(Inner {
            vram: Mutex::new(vec![0; VRAM_BYTES]),
            sys: Mutex::new(Vec::new()),
            db_lo: Mutex::new(HashMap::new()),
            regs: Mutex::new(regs),
            fault: Mutex::new(None),
            doorbell: Mutex::new(None),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            trips: AtomicU64::new(0),
            seed,
            command: AtomicU16::new(0),
            resetting: std::sync::atomic::AtomicU32::new(0),
            link_drop: options.link_drop,
            vram_bar: options.bar_mib.map_or(VRAM_BYTES as u64, |m| m << 20),
            accesses: AtomicU64::new(0),
            rung: AtomicU64::new(0),
            done: AtomicU64::new(0),
            chip: Mutex::new(chip),
            map,
            tlb: Mutex::new(HashMap::new()),
            mm_tlb: Mutex::new(HashMap::new()),
            hdp_dirty: AtomicBool::new(false),
            vm_fault: Mutex::new(None),
            iv_stamp: AtomicU64::new(0),
        });
        // Navi 31's IP discovery table, 64 KiB below the end of VRAM, where the GPU keeps it.
        let table = tk_gpu::amd::discovery::build(&table);
        if let Ok(mut v) = inner.vram.lock() {
            let at = VRAM_BYTES - tk_gpu::amd::discovery::TABLE_OFFSET_FROM_END as usize;
            v[at..at + table.len()].copy_from_slice(&table);
        }
        let i = inner.clone();
        let cp = std::thread::Builder::new().name("tk-sim-cp".into()).spawn(move || command_processor(&i)).ok();
        SimGpu { inner, cp }
    }
}

impl SimGpu {
    /// Makes `mem` reachable by DMA, in pieces at scattered bus addresses (as an IOMMU hands
    /// them out), and returns the segment list.
    /// A buffer that would need more than [`MAX_SEGMENTS`] pieces is refused, as the Mac path
    /// refuses it.
    pub fn attach_sysmem(&self, mem: Arc<dyn HostMem>) -> Result<Vec<(u64, u64)>, String> {
        let mut sys = self.inner.sys.lock().map_err(|_| "poisoned")?;
        super::attach(&mut sys, mem, 0x80_0000_0000)
    }
}

impl Default for SimGpu {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for SimGpu {
    fn drop(&mut self) {
        // Set under the doorbell's lock: the command processor checks `stop` and goes to sleep
        // under that lock, so the notification cannot fall between the two (a lost wake-up,
        // which hung a test run once).
        let guard = self.inner.doorbell.lock();
        self.inner.stop.store(true, Ordering::SeqCst);
        drop(guard);
        self.inner.wake.notify_all();
        if let Some(h) = self.cp.take() {
            let _ = h.join();
        }
    }
}

fn set_fault(i: &Inner, m: String) {
    if let Ok(mut f) = i.fault.lock() {
        f.get_or_insert(m);
    }
}

pub(super) fn vram_range(len: usize, off: u64, n: usize) -> Result<std::ops::Range<usize>, String> {
    let s = usize::try_from(off).map_err(|_| format!("VRAM offset {off:#x}"))?;
    if s.checked_add(n).is_none_or(|e| e > len) {
        return Err(format!("{n} bytes at VRAM offset {off:#x} are outside the {len}-byte VRAM"));
    }
    Ok(s..s + n)
}

/// The simulated GPU's configuration space header: ids, command register, class code (display
/// controller, VGA-compatible: 0x030000).
fn config_byte(command: u16, offset: u16) -> u8 {
    let [v0, v1] = VENDOR_ID.to_le_bytes();
    let [d0, d1] = DEVICE_ID.to_le_bytes();
    let [c0, c1] = command.to_le_bytes();
    match offset {
        0 => v0,
        1 => v1,
        2 => d0,
        3 => d1,
        4 => c0,
        5 => c1,
        0x0b => 0x03,
        _ => 0,
    }
}

impl SimGpu {
    /// Waits until the command processor has run everything the doorbell rang for (or the
    /// queue faulted), at most `limit`: what a trace replay does where the driver waited.
    pub fn settle(&self, limit: std::time::Duration) -> Result<(), String> {
        let start = std::time::Instant::now();
        loop {
            let fault = self.inner.fault.lock().map(|f| f.is_some()).unwrap_or(true);
            if fault || self.inner.done.load(Ordering::SeqCst) >= self.inner.rung.load(Ordering::SeqCst) {
                return Ok(());
            }
            if start.elapsed() > limit {
                return Err(format!("the simulated GPU did not finish its queue within {limit:?}"));
            }
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    /// Counts a register or configuration access; true once the link is gone (`link-drop`).
    fn gone(&self) -> bool {
        match self.inner.link_drop {
            Some(n) => self.inner.accesses.fetch_add(1, Ordering::Relaxed) >= n,
            None => false,
        }
    }

    /// Whether a read now still meets a function in reset (and counts it): it reads all ones.
    fn in_reset(&self) -> bool {
        self.inner.resetting.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }
}

impl Transport for SimGpu {
    fn name(&self) -> String {
        "sim".into()
    }
    fn read32(&self, bar: u8, off: u64) -> Result<u32, String> {
        let mut b = [0u8; 4];
        match bar {
            BAR_MMIO => {
                self.inner.trips.fetch_add(1, Ordering::Relaxed);
                if self.gone() || self.in_reset() {
                    return Ok(u32::MAX);
                }
                let r = self.inner.regs.lock().map_err(|_| "poisoned")?;
                if off >= MMIO_BAR_BYTES {
                    return Err(format!("register offset {off:#x} is outside the {MMIO_BAR_BYTES}-byte register BAR"));
                }
                if self.inner.map.at(off) == Some(MM_DATA) {
                    return chip::mm_data(&self.inner, &r, &self.inner.map, None);
                }
                Ok(r.get(&(off as u32)).copied().unwrap_or(0))
            }
            _ => {
                self.read_bytes(bar, off, &mut b)?;
                Ok(u32::from_le_bytes(b))
            }
        }
    }
    fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
        match bar {
            BAR_DOORBELL => {
                if !off.is_multiple_of(4) || off >= DOORBELL_BAR_BYTES {
                    return Err(format!(
                        "a doorbell write at offset {off:#x}: doorbells are dwords inside the {DOORBELL_BAR_BYTES}-byte BAR"
                    ));
                }
                // A 64-bit doorbell as two writes: the high half rings it.
                let mut lo = self.inner.db_lo.lock().map_err(|_| "poisoned")?;
                if off.is_multiple_of(8) {
                    lo.insert(off, v);
                    return Ok(());
                }
                let l = lo.remove(&(off - 4)).unwrap_or(0);
                drop(lo);
                self.write64(bar, off - 4, u64::from(l) | u64::from(v) << 32)
            }
            BAR_MMIO => {
                self.inner.trips.fetch_add(1, Ordering::Relaxed);
                if self.gone() {
                    return Ok(());
                }
                let flush = self
                    .inner
                    .regs
                    .lock()
                    .map_err(|_| "poisoned")?
                    .get(&(self.inner.map.byte(REMAP_HDP_MEM_FLUSH_CNTL) as u32))
                    .copied();
                if flush.is_some_and(|f| f != 0 && u64::from(f) == off) {
                    // The HDP flush, through the register hole NBIO remaps it to.
                    self.inner.hdp_dirty.store(false, Ordering::SeqCst);
                    return Ok(());
                }
                let Some(r) = self.inner.map.at(off) else {
                    let m = format!("unexpected register write: {v:#x} to register offset {off:#x}");
                    set_fault(&self.inner, m.clone());
                    return Err(m);
                };
                let mut chip = self.inner.chip.lock().map_err(|_| "poisoned")?;
                let mut regs = self.inner.regs.lock().map_err(|_| "poisoned")?;
                regs.insert(off as u32, v);
                if let Err(m) = chip::on_write(&self.inner, &mut chip, &mut regs, &self.inner.map, r, v) {
                    let _ = hub::report_fault(&self.inner, &mut regs);
                    set_fault(&self.inner, m.clone());
                    // The PSP and SMU answer through their status registers, as on hardware;
                    // other misuse fails the write itself.
                    if !matches!(r.block, Block::Mp0 | Block::Mp1) {
                        return Err(m);
                    }
                }
                Ok(())
            }
            _ => self.write_bytes(bar, off, &v.to_le_bytes()),
        }
    }
    fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String> {
        if bar != BAR_DOORBELL {
            return self.write_bytes(bar, off, &v.to_le_bytes());
        }
        if !off.is_multiple_of(8) || off >= DOORBELL_BAR_BYTES {
            return Err(format!(
                "a 64-bit doorbell write at offset {off:#x}: not 8-byte aligned inside the doorbell BAR"
            ));
        }
        self.inner.trips.fetch_add(1, Ordering::Relaxed);
        if self.gone() {
            return Ok(());
        }
        let map = &self.inner.map;
        {
            let mut chip = self.inner.chip.lock().map_err(|_| "poisoned")?;
            let mut regs = self.inner.regs.lock().map_err(|_| "poisoned")?;
            let get = |r: Reg| regs.get(&(map.byte(r) as u32)).copied().unwrap_or(0);
            if get(RCC_DOORBELL_APER_EN) & tk_gpu::amd::boot::DOORBELL_APER_EN == 0 {
                let m = format!(
                    "a doorbell write at offset {off:#x} while the doorbell aperture is off: the soc step has not run"
                );
                set_fault(&self.inner, m.clone());
                return Err(m);
            }
            let sdma = get(SDMA0_QUEUE0_DOORBELL) & tk_gpu::amd::boot::SDMA_DOORBELL_ENABLE != 0;
            if sdma && u64::from(get(SDMA0_QUEUE0_DOORBELL_OFFSET) & DOORBELL_OFFSET_MASK) == off {
                return match chip::run_sdma(&self.inner, &mut chip, &mut regs, map, v) {
                    Ok(()) => Ok(()),
                    Err(m) => {
                        set_fault(&self.inner, m.clone());
                        // A translation fault stops the engine and goes to the interrupt ring,
                        // as on hardware; the doorbell write itself went through.
                        if hub::report_fault(&self.inner, &mut regs) { Ok(()) } else { Err(m) }
                    }
                };
            }
            let ctl = get(CP_HQD_PQ_DOORBELL_CONTROL);
            let ours = Some(ctl).filter(|c| c & DOORBELL_EN != 0).map(|c| u64::from(c & DOORBELL_OFFSET_MASK));
            if ours != Some(off) {
                let m = format!("a doorbell write at offset {off:#x}, which no enabled queue uses");
                set_fault(&self.inner, m.clone());
                return Err(m);
            }
            if chip.hang {
                // The queue takes the work and never finishes it.
                return Ok(());
            }
        }
        self.inner.rung.store(v, Ordering::SeqCst);
        *self.inner.doorbell.lock().map_err(|_| "poisoned")? = Some(v);
        self.inner.wake.notify_all();
        Ok(())
    }
    fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String> {
        if bar != BAR_VRAM {
            return Err(format!("BAR {bar} has no memory to read"));
        }
        self.inner.trips.fetch_add(1, Ordering::Relaxed);
        if self.gone() {
            out.fill(0xff);
            return Ok(());
        }
        let v = self.inner.vram.lock().map_err(|_| "poisoned")?;
        let r = vram_range(self.inner.vram_bar as usize, off, out.len())?;
        out.copy_from_slice(&v[r]);
        Ok(())
    }
    fn write_bytes(&self, bar: u8, off: u64, src: &[u8]) -> Result<(), String> {
        if bar != BAR_VRAM {
            return Err(format!("BAR {bar} has no memory to write"));
        }
        self.inner.trips.fetch_add(1, Ordering::Relaxed);
        if self.gone() {
            return Ok(());
        }
        let mut v = self.inner.vram.lock().map_err(|_| "poisoned")?;
        let r = vram_range(self.inner.vram_bar as usize, off, src.len())?;
        v[r].copy_from_slice(src);
        self.inner.hdp_dirty.store(true, Ordering::SeqCst);
        Ok(())
    }
    fn config_read(&self, offset: u16, width: u8) -> Result<u32, String> {
        check_config_access(offset, width)?;
        self.inner.trips.fetch_add(1, Ordering::Relaxed);
        if self.gone() || self.in_reset() {
            return Ok(if width == 4 { u32::MAX } else { (1 << (8 * u32::from(width))) - 1 });
        }
        let command = self.inner.command.load(Ordering::Relaxed);
        let mut b = [0u8; 4];
        for (k, x) in b.iter_mut().take(usize::from(width)).enumerate() {
            *x = config_byte(command, offset + k as u16);
        }
        Ok(u32::from_le_bytes(b))
    }
    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String> {
        check_config_access(offset, width)?;
        self.inner.trips.fetch_add(1, Ordering::Relaxed);
        if self.gone() {
            return Ok(());
        }
        // Read-only fields ignore writes, as on the hardware; the command register keeps them.
        let mut command = self.inner.command.load(Ordering::Relaxed).to_le_bytes();
        for (k, x) in value.to_le_bytes().iter().take(usize::from(width)).enumerate() {
            match offset + k as u16 {
                4 => command[0] = *x,
                5 => command[1] = *x,
                _ => {}
            }
        }
        self.inner.command.store(u16::from_le_bytes(command), Ordering::Relaxed);
        Ok(())
    }
    fn reset(&self) -> Result<(), String> {
        self.inner.trips.fetch_add(1, Ordering::Relaxed);
        if self.gone() {
            return Ok(());
        }
        // A function-level reset: registers, doorbells, the pending fault and the command
        // register return to their power-on values (VRAM keeps its contents).
        let lock = |e| format!("the simulated GPU's state lock was poisoned ({e})");
        {
            let mut chip = self.inner.chip.lock().map_err(|_| lock("chip"))?;
            let mut regs = self.inner.regs.lock().map_err(|_| lock("registers"))?;
            chip.reset();
            chip.power_on(&mut regs, &self.inner.map, Power::Cold);
        }
        self.inner.tlb.lock().map_err(|_| lock("TLB"))?.clear();
        self.inner.mm_tlb.lock().map_err(|_| lock("TLB"))?.clear();
        self.inner.hdp_dirty.store(false, Ordering::SeqCst);
        *self.inner.vm_fault.lock().map_err(|_| lock("fault"))? = None;
        self.inner.db_lo.lock().map_err(|_| lock("doorbells"))?.clear();
        *self.inner.fault.lock().map_err(|_| lock("fault"))? = None;
        *self.inner.doorbell.lock().map_err(|_| lock("doorbell"))? = None;
        self.inner.command.store(0, Ordering::Relaxed);
        Ok(())
    }
    fn bar_size(&self, bar: u8) -> Result<u64, String> {
        Ok(match bar {
            BAR_VRAM => self.inner.vram_bar,
            BAR_DOORBELL => DOORBELL_BAR_BYTES,
            BAR_MMIO => MMIO_BAR_BYTES,
            _ => 0,
        })
    }
    fn fault(&self) -> Option<String> {
        self.inner.fault.lock().ok().and_then(|f| f.clone())
    }
    fn round_trips(&self) -> u64 {
        self.inner.trips.load(Ordering::Relaxed)
    }
    fn firmware(&self) -> Option<Vec<(String, Vec<u8>)>> {
        // With TK_FIRMWARE_DIR set, the card runs linux-firmware's blobs and the driver reads
        // them from there too.
        if std::env::var_os("TK_FIRMWARE_DIR").is_some() {
            return None;
        }
        Some(synthetic(&tk_gpu::amd::discovery::navi31()))
    }
    fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
        let mem: Arc<dyn HostMem> = Arc::new(Mutex::new(vec![0u8; bytes]));
        let segments = self.attach_sysmem(mem.clone())?;
        Ok(SysMem { mem, segments })
    }
}

/// The command processor: one compute queue (the HQD registers), run until the GPU is dropped.
fn command_processor(i: &Inner) {
    let mut rptr: u64 = 0;
    let mut sh: HashMap<u32, u32> = HashMap::new();
    let mut dispatches: u64 = 0;
    loop {
        let wptr = {
            let Ok(mut d) = i.doorbell.lock() else { return };
            loop {
                if i.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(w) = d.take() {
                    break w;
                }
                d = match i.wake.wait(d) {
                    Ok(d) => d,
                    Err(_) => return,
                };
            }
        };
        if i.fault.lock().map(|f| f.is_some()).unwrap_or(true) {
            // A faulted queue stops (the driver reports the device as lost).
            continue;
        }
        if let Err(e) = run_ring(i, &mut rptr, wptr, &mut sh, &mut dispatches) {
            if let Ok(mut regs) = i.regs.lock() {
                let _ = hub::report_fault(i, &mut regs);
            }
            set_fault(i, e);
        }
        i.done.store(wptr, Ordering::SeqCst);
    }
}

fn run_ring(i: &Inner, rptr: &mut u64, wptr: u64, sh: &mut HashMap<u32, u32>, n: &mut u64) -> Result<(), String> {
    let reg = |r: Reg| i.regs.lock().map(|m| m.get(&(i.map.byte(r) as u32)).copied().unwrap_or(0)).unwrap_or(0);
    hub::bus_master(i)?;
    if reg(CP_HQD_ACTIVE) & 1 == 0 {
        return Err("the doorbell rang for a queue that is not active (CP_HQD_ACTIVE)".into());
    }
    let view = hub::view(reg, hub::Which::Gfx).map_err(|e| format!("the queue runs in VMID 0, but {e}"))?;
    let base = ((u64::from(reg(CP_HQD_PQ_BASE_HI)) << 32) | u64::from(reg(CP_HQD_PQ_BASE))) << 8;
    let q = reg(CP_HQD_PQ_CONTROL) & PQ_CONTROL_QUEUE_SIZE_MASK;
    if q > 24 {
        return Err(format!("CP_HQD_PQ_CONTROL asks for a ring of 2^{} dwords", q + 1));
    }
    let size = 1u64 << (q + 1);
    if wptr < *rptr || wptr - *rptr > size {
        return Err(format!(
            "the write pointer {wptr} is not within one ring ({size} dwords) of the read pointer {rptr}"
        ));
    }
    let mut vram = i.vram.lock().map_err(|_| "poisoned")?;
    let sys = i.sys.lock().map_err(|_| "poisoned")?.clone();
    let mut tlb = i.tlb.lock().map_err(|_| "poisoned")?;
    let mut vm = Vm { i, vram: &mut vram, sys: &sys, view, tlb: &mut tlb };
    let mut words = Vec::with_capacity((wptr - *rptr) as usize);
    for k in *rptr..wptr {
        let mut b = [0u8; 4];
        crate::rdna3::Memory::read(&mut vm, base + (k % size) * 4, &mut b)
            .map_err(|e| format!("reading the ring: {e}"))?;
        words.push(u32::from_le_bytes(b));
    }
    let packets = pm4::decode(&words).map_err(|e| format!("the ring between {rptr} and {wptr}: {e}"))?;
    for p in packets {
        match p {
            Packet::Nop(_) | Packet::AcquireMem => {}
            Packet::SetShReg { reg, values } => {
                for (k, v) in values.iter().enumerate() {
                    let r = reg.wrapping_add(4 * k as u32);
                    if !known_sh(r) {
                        return Err(format!("SET_SH_REG of register {r:#x}, which tk's driver does not program"));
                    }
                    sh.insert(r, *v);
                }
            }
            Packet::DispatchDirect { x, y, z, initiator } => {
                dispatch(&mut vm, sh, [x, y, z], initiator, i.seed.wrapping_add(*n))?;
                *n += 1;
            }
            Packet::DmaData { src, dst, bytes } => {
                let mut buf = vec![0u8; bytes as usize];
                crate::rdna3::Memory::read(&mut vm, src, &mut buf).map_err(|e| format!("DMA_DATA: {e}"))?;
                crate::rdna3::Memory::write(&mut vm, dst, &buf).map_err(|e| format!("DMA_DATA: {e}"))?;
            }
            Packet::ReleaseMem { addr, value } => {
                crate::rdna3::Memory::write(&mut vm, addr, &value.to_le_bytes())
                    .map_err(|e| format!("RELEASE_MEM: {e}"))?;
            }
        }
    }
    *rptr = wptr;
    drop(tlb);
    drop(vram);
    i.regs.lock().map_err(|_| "poisoned")?.insert(i.map.byte(CP_HQD_PQ_RPTR) as u32, wptr as u32);
    Ok(())
}

fn known_sh(r: u32) -> bool {
    matches!(r, COMPUTE_PGM_LO | 0xB834 | COMPUTE_PGM_RSRC1 | 0xB84C | COMPUTE_PGM_RSRC3 | COMPUTE_TMPRING_SIZE)
        || matches!(r, COMPUTE_RESOURCE_LIMITS)
        || (COMPUTE_START_X..COMPUTE_START_X + 12).contains(&r)
        || (COMPUTE_NUM_THREAD_X..COMPUTE_NUM_THREAD_X + 12).contains(&r)
        || (COMPUTE_USER_DATA_0..COMPUTE_USER_DATA_0 + 64).contains(&r)
}

fn dispatch(vm: &mut Vm<'_>, sh: &HashMap<u32, u32>, g: [u32; 3], initiator: u32, seed: u64) -> Result<(), String> {
    let r = |a: u32| sh.get(&a).copied().unwrap_or(0);
    if initiator & DISPATCH_COMPUTE_SHADER_EN == 0 {
        return Err("DISPATCH_DIRECT without COMPUTE_SHADER_EN".into());
    }
    if initiator & DISPATCH_CS_W32_EN == 0 {
        return Err("DISPATCH_DIRECT in wave64; the simulated GPU runs tk's wave32 kernels".into());
    }
    if g[1] != 1 || g[2] != 1 || r(COMPUTE_NUM_THREAD_X + 4) > 1 || r(COMPUTE_NUM_THREAD_X + 8) > 1 {
        return Err("a dispatch in y or z; tk's kernel ABI launches in x only".into());
    }
    let pgm = (u64::from(r(COMPUTE_PGM_LO)) | u64::from(r(0xB834)) << 32) << 8;
    let (rsrc1, rsrc2) = (r(COMPUTE_PGM_RSRC1), r(0xB84C));
    // The code from the program address to the end of its mapping (at most 1 MiB).
    let mut code = Vec::new();
    let mut b = [0u8; 4];
    while code.len() < 1 << 18 && crate::rdna3::Memory::read(vm, pgm + 4 * code.len() as u64, &mut b).is_ok() {
        code.push(u32::from_le_bytes(b));
    }
    if code.is_empty() {
        return Err(format!("COMPUTE_PGM points at {pgm:#x}, which is not mapped"));
    }
    let kernel = crate::rdna3::KernelCode {
        name: "dispatch".into(),
        entry: 0,
        user_sgprs: ((rsrc2 >> 1) & 31) as u16,
        workgroup_id_x: rsrc2 >> 7 & 1 == 1,
        vgprs: (((rsrc1 & 63) + 1) * 8) as usize,
        lds_bytes: (((rsrc2 >> RSRC2_LDS_SHIFT) & RSRC2_LDS_MASK) * LDS_GRANULE) as usize,
    };
    let co = crate::rdna3::CodeObject::from_code(&code, kernel);
    let user: Vec<u32> = (0..16).map(|k| r(COMPUTE_USER_DATA_0 + 4 * k)).collect();
    co.launch_with("dispatch", g[0], r(COMPUTE_NUM_THREAD_X), &user, vm, seed).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcie::tampered::{Tampered, Withheld};

    #[test]
    fn registers_tk_does_not_program_and_stray_doorbells_are_faults() {
        let g = SimGpu::new();
        let e = g.write32(BAR_MMIO, 0x40, 1).expect_err("unknown register");
        assert!(e.contains("unexpected register write"), "{e}");
        assert!(g.fault().is_some());
        let g = SimGpu::new();
        g.write32(BAR_MMIO, at(RCC_DOORBELL_APER_EN), 1).expect("aperture");
        let e = g.write64(BAR_DOORBELL, 8, 1).expect_err("no queue");
        assert!(e.contains("no enabled queue"), "{e}");
    }

    /// The register at byte offset of `r` in the simulated GPU's map.
    fn at(r: Reg) -> u64 {
        RegMap::new(&tk_gpu::amd::discovery::navi31()).expect("map").byte(r)
    }

    #[test]
    fn a_cold_gpu_refuses_each_step_taken_before_the_one_it_needs() {
        use tk_gpu::amd::boot::*;
        let g = SimGpu::new();
        let e = g.write32(BAR_MMIO, at(CP_HQD_ACTIVE), 1).expect_err("not the MEC's queue");
        assert!(e.contains("selecting ME 0"), "{e}");
        g.write32(BAR_MMIO, at(GRBM_GFX_CNTL), GRBM_MEID_MEC).expect("select the MEC");
        let e = g.write32(BAR_MMIO, at(CP_HQD_ACTIVE), 1).expect_err("MEC halted");
        assert!(e.contains("MEC is halted") && e.contains("the gfx step"), "{e}");
        let e = SimGpu::new().write32(BAR_MMIO, at(SDMA0_F32_CNTL), 0).expect_err("no SDMA microcode");
        assert!(e.contains("SDMA_UCODE_TH0") && e.contains("the psp step"), "{e}");
        let e = SimGpu::new().write32(BAR_MMIO, at(CP_MEC_RS64_CNTL), MEC_PIPE0_ACTIVE).expect_err("no autoload");
        assert!(e.contains("AUTOLOAD_RLC"), "{e}");
        let e = SimGpu::new().write64(BAR_DOORBELL, 8, 1).expect_err("no aperture");
        assert!(e.contains("the soc step"), "{e}");
        let g = SimGpu::new();
        g.write32(BAR_MMIO, at(GRBM_GFX_CNTL), 0).expect("select ME 0");
        let e = g.write32(BAR_MMIO, at(CP_MEC_RS64_PRGRM_CNTR_START), 0x100).expect_err("not the MEC");
        assert!(e.contains("ME 0"), "{e}");
        // The PSP answers through its registers, as the hardware does: a bootloader command
        // before the GART exists is refused with error bits, and the reason is the fault.
        let g = SimGpu::new();
        assert_eq!(g.read32(BAR_MMIO, at(MP0_C2PMSG_35)), Ok(tk_gpu::amd::psp::BL_READY));
        g.write32(BAR_MMIO, at(MP0_C2PMSG_36), 0x200_0000).expect("address");
        g.write32(BAR_MMIO, at(MP0_C2PMSG_35), tk_gpu::amd::psp::BL_LOAD_KEY_DATABASE).expect("command");
        assert_eq!(g.read32(BAR_MMIO, at(MP0_C2PMSG_35)), Ok(tk_gpu::amd::psp::BL_READY | 2));
        assert!(g.fault().is_some_and(|f| f.contains("the gmc step")), "{:?}", g.fault());
        // No SMU firmware: its mailbox never answers.
        let g = SimGpu::new();
        g.write32(BAR_MMIO, at(MP1_C2PMSG_66), SMU_GET_VERSION).expect("message");
        assert_eq!(g.read32(BAR_MMIO, at(MP1_C2PMSG_90)), Ok(0));
    }

    /// A warm GPU still runs the previous driver's compute queue: its registers are the MEC's
    /// until a dequeue request drains it. A mode-1 reset takes the function off the bus for a
    /// few reads and brings it back with its PCI command register cleared.
    #[test]
    fn an_active_queue_must_be_dequeued_and_a_mode1_reset_clears_the_command_register() {
        use tk_gpu::amd::boot::*;
        let g = SimGpu::with_options(SimOptions { power: Power::Warm, ..SimOptions::default() });
        g.write32(BAR_MMIO, at(GRBM_GFX_CNTL), GRBM_MEID_MEC).expect("select the MEC");
        assert_eq!(g.read32(BAR_MMIO, at(CP_HQD_ACTIVE)), Ok(1));
        let e = g.write32(BAR_MMIO, at(CP_HQD_PQ_BASE), 0x1234).expect_err("active");
        assert!(e.contains("while the compute queue is active") && e.contains("CP_HQD_DEQUEUE_REQUEST"), "{e}");
        let e = g.write32(BAR_MMIO, at(CP_HQD_ACTIVE), 0).expect_err("no dequeue");
        assert!(e.contains("without a dequeue request"), "{e}");
        assert_eq!(g.read32(BAR_MMIO, at(CP_HQD_ACTIVE)), Ok(1));
        g.write32(BAR_MMIO, at(CP_HQD_DEQUEUE_REQUEST), HQD_DEQUEUE_DRAIN).expect("dequeue");
        assert_eq!(g.read32(BAR_MMIO, at(CP_HQD_ACTIVE)), Ok(0));
        g.write32(BAR_MMIO, at(CP_HQD_PQ_BASE), 0x1234).expect("an inactive queue's register");

        let g = SimGpu::with_options(SimOptions { power: Power::LeftRunning, ..SimOptions::default() });
        g.config_write(4, 2, PCI_COMMAND_MEMORY_MASTER).expect("command");
        g.write32(BAR_MMIO, at(MP1_C2PMSG_66), SMU_MODE1_RESET).expect("Mode1Reset");
        for _ in 0..chip::MODE1_RESET_READS {
            assert_eq!(g.config_read(0, 2), Ok(0xffff), "in reset");
        }
        assert_eq!(g.config_read(0, 2), Ok(u32::from(VENDOR_ID)));
        assert_eq!(g.config_read(4, 2), Ok(0), "the command register after the reset");
        assert_eq!(g.read32(BAR_MMIO, at(MP0_C2PMSG_35)), Ok(tk_gpu::amd::psp::BL_READY));
        assert_eq!(g.read32(BAR_MMIO, at(CP_HQD_ACTIVE)), Ok(0));
    }

    #[test]
    fn the_driver_boots_it_cold_warm_and_left_running() {
        use tk_gpu::amd::boot::BootState;
        use tk_gpu::amd::device::AmdGpu;
        let gpu = AmdGpu::open(Box::new(SimGpu::new())).expect("boots");
        assert_eq!(gpu.boot_state(), BootState::Cold);
        for (power, state) in [(Power::Warm, BootState::Warm), (Power::LeftRunning, BootState::LeftRunning)] {
            let sim = SimGpu::with_options(SimOptions { power, ..SimOptions::default() });
            let gpu = AmdGpu::open(Box::new(sim)).expect("boots");
            assert_eq!(gpu.boot_state(), state);
            // The reset left bus mastering on: the driver restored the command register.
            // Copies run on the SDMA engine it set up.
            let b = gpu.alloc(8192, PTE_READABLE | PTE_WRITEABLE).expect("alloc");
            gpu.upload(b.va(), &[3; 8192]).expect("upload");
            let mut back = [0u8; 8192];
            gpu.download(b.va(), &mut back).expect("download");
            assert_eq!(back, [3; 8192]);
        }
    }

    #[test]
    fn dma_memory_comes_in_at_most_32_segments_of_40_bit_bus_addresses() {
        let g = SimGpu::new();
        let m = g.sysmem(5 << 20).expect("5 MiB");
        assert_eq!(m.segments.len(), 20);
        assert!(m.segments.iter().all(|(b, n)| b + n <= 1 << 40 && b % (16 << 10) == 0));
        let e = g.sysmem(9 << 20).err().expect("too many segments");
        assert!(e.contains("at most 32"), "{e}");
    }

    /// The GMC step's registers and the HDP flush are needed: a driver that skips one is
    /// refused where the hardware would fail, naming what is missing. A fault reaches the
    /// driver through the interrupt ring alone, naming the address, as on hardware.
    #[test]
    fn the_hubs_the_hdp_flush_and_the_interrupt_ring_are_needed() {
        use tk_gpu::amd::device::{AmdGpu, VA_BASE};
        let boot = |w: Withheld| AmdGpu::open(Box::new(Tampered(SimGpu::new(), w))).err().map(|e| e.to_string());
        let e = boot(Withheld::HdpFlush).expect("no HDP flush");
        assert!(e.contains("HDP flush"), "{e}");
        let e = boot(Withheld::Register(GCMC_VM_MX_L1_TLB_CNTL)).expect("GFX hub L1 TLB off");
        assert!(e.contains("GFX hub") && e.contains("L1 TLB"), "{e}");
        let e = boot(Withheld::Register(MMVM_L2_CNTL)).expect("MM hub L2 off");
        assert!(e.contains("MM hub") && e.contains("L2 cache"), "{e}");
        // Without the system aperture, the PSP's TMR address in the frame buffer goes to the
        // page tables, where nothing maps it.
        let e = boot(Withheld::Register(MMMC_VM_SYSTEM_APERTURE_HIGH_ADDR)).expect("MM hub aperture closed");
        assert!(e.contains("TMR") || e.contains("not mapped"), "{e}");
        let e = boot(Withheld::Register(IH_RB_CNTL));
        assert!(e.is_none(), "the interrupt ring is not needed to boot: {e:?}");

        let gpu = AmdGpu::open(Box::new(Tampered(SimGpu::new(), Withheld::FaultReports))).expect("boots");
        let va = VA_BASE + (512 << 20);
        let e = gpu.upload(va, &[1; 64]).expect_err("unmapped").to_string();
        assert!(e.contains("page fault") && e.contains(&format!("{va:#x}")) && e.contains("GFX hub"), "{e}");
        let gpu = AmdGpu::open(Box::new(Tampered(SimGpu::new(), Withheld::Register(IH_RB_CNTL)))).expect("boots");
        let e = gpu.upload(va, &[1; 64]).expect_err("unmapped").to_string();
        assert!(e.contains("not mapped"), "the simulator's own report: {e}");
    }

    #[test]
    fn dma_needs_bus_mastering_and_the_sdma_engine_goes_through_the_page_tables() {
        use tk_gpu::amd::device::{AmdGpu, VA_BASE};
        let e =
            AmdGpu::open(Box::new(Tampered(SimGpu::new(), Withheld::ConfigWrites))).err().expect("no DMA").to_string();
        assert!(e.contains("bus mastering off"), "{e}");
        // VRAM that no allocation mapped: the copy faults, naming the address.
        let gpu = AmdGpu::open(Box::new(SimGpu::new())).expect("boots");
        let e = gpu.upload(VA_BASE + (512 << 20), &[1; 64]).expect_err("unmapped").to_string();
        assert!(e.contains("SDMA copy") && e.contains("not mapped"), "{e}");
    }

    #[test]
    fn freed_buffers_fault_after_the_drivers_tlb_flush() {
        use tk_gpu::amd::device::AmdGpu;
        let gpu = AmdGpu::open(Box::new(SimGpu::new())).expect("boots");
        let b = gpu.alloc(8192, PTE_READABLE | PTE_WRITEABLE).expect("alloc");
        let va = b.va();
        // The copy caches the translations of both pages.
        gpu.upload(va, &[9; 8192]).expect("upload");
        drop(b);
        // Without the invalidation in the driver's free, the cached translation would let
        // this copy through.
        let e = gpu.upload(va, &[1; 16]).expect_err("freed").to_string();
        assert!(e.contains("not mapped"), "{e}");
    }

    #[test]
    fn a_bar_smaller_than_vram_is_read_through_mm_index() {
        use tk_gpu::amd::device::AmdGpu;
        let o = SimOptions::parse("bar=256").expect("option");
        let sim = SimGpu::with_options(o);
        assert_eq!(sim.bar_size(BAR_VRAM), Ok(256 << 20));
        // The table at the end of the 1 GiB is out of the BAR's reach...
        let table = VRAM_BYTES as u64 - tk_gpu::amd::discovery::TABLE_OFFSET_FROM_END;
        assert!(sim.read_bytes(BAR_VRAM, table, &mut [0; 4]).is_err());
        // ...but not of MM_INDEX/MM_DATA.
        sim.write32(BAR_MMIO, at(MM_INDEX_HI), (table >> 31) as u32).expect("index hi");
        sim.write32(BAR_MMIO, at(MM_INDEX), (table as u32 & 0x7fff_ffff) | 0x8000_0000).expect("index");
        let sig = sim.read32(BAR_MMIO, at(MM_DATA)).expect("data");
        assert_eq!(sig, tk_gpu::amd::discovery::BINARY_SIGNATURE);
        let gpu = AmdGpu::open(Box::new(sim)).expect("boots");
        assert_eq!(gpu.discovery().gfx_target(), Ok("gfx1100"));
        assert!(gpu.free_vram() < 256 << 20);
        for bad in ["bar=100", "bar=32", "bar=2048", "bar=x"] {
            assert!(SimOptions::parse(bad).expect_err(bad).contains("bar="), "{bad}");
        }
    }

    #[test]
    fn firmware_the_card_does_not_take_is_refused_naming_the_piece() {
        use tk_gpu::amd::device::AmdGpu;
        use tk_gpu::amd::firmware::FirmwareSet;
        let refused = |file: &str, at: usize| -> String {
            let mut files = synthetic(&tk_gpu::amd::discovery::navi31());
            let (_, b) = files.iter_mut().find(|(n, _)| n.ends_with(file)).expect("file");
            b[at] ^= 0x40;
            tk_gpu::amd::ucode::seal(b);
            let fw = FirmwareSet::from_files(files, "test").expect("still parses");
            match AmdGpu::open_with(Box::new(SimGpu::new()), Some(fw)) {
                Ok(_) => panic!("booted with a changed {file}"),
                Err(e) => e.to_string(),
            }
        };
        // The MEC's code (it starts at byte 256).
        let e = refused("_mec.bin", 300);
        assert!(
            e.contains("psp: the PSP refused LOAD_IP_FW of RS64_MEC") && e.contains("not the card's RS64_MEC image"),
            "{e}"
        );
        // The SDMA's second thread (after its 2 KiB first one).
        let e = refused("sdma_6_0_0.bin", 256 + 2048 + 10);
        assert!(e.contains("SDMA_UCODE_TH1"), "{e}");
        // The key database in the sOS blob: the bootloader refuses it.
        let sos = synthetic(&tk_gpu::amd::discovery::navi31()).remove(0).1;
        let blob = tk_gpu::amd::ucode::parse("psp_13_0_0_sos.bin", &sos).expect("sos");
        let kdb = blob.components.iter().find(|c| c.kind == tk_gpu::amd::ucode::PspKind::Kdb).expect("kdb");
        let e = refused("_sos.bin", kdb.offset as usize + 1);
        assert!(e.contains("psp: the bootloader refused KDB") && e.contains("not the card's signed image"), "{e}");
    }

    #[test]
    fn configuration_space_bar_sizes_and_reset() {
        let g = SimGpu::new();
        assert_eq!(g.config_read(0, 2).expect("vendor"), u32::from(VENDOR_ID));
        assert_eq!(g.config_read(0, 4).expect("ids"), u32::from(VENDOR_ID) | u32::from(DEVICE_ID) << 16);
        assert_eq!(g.config_read(0x0b, 1).expect("class"), 0x03);
        // The command register keeps what is written; read-only fields ignore writes.
        g.config_write(4, 2, 0x6).expect("command");
        g.config_write(0, 2, 0xffff).expect("read-only");
        assert_eq!(g.config_read(4, 2).expect("command"), 0x6);
        assert_eq!(g.config_read(0, 2).expect("vendor"), u32::from(VENDOR_ID));
        assert!(g.config_read(1, 2).expect_err("unaligned").contains("aligned"));
        assert!(g.config_read(0, 3).expect_err("width").contains("1, 2 or 4"));
        assert!(g.config_read(0xffe, 4).is_err());
        assert_eq!(g.bar_size(BAR_VRAM).expect("vram"), VRAM_BYTES as u64);
        assert_eq!(g.bar_size(BAR_MMIO).expect("mmio"), MMIO_BAR_BYTES);
        assert_eq!(g.bar_size(1).expect("no such BAR"), 0);
        // A reset clears a pending fault and the command register.
        assert!(g.write32(BAR_MMIO, 0x40, 1).is_err());
        assert!(g.fault().is_some());
        g.reset().expect("reset");
        assert!(g.fault().is_none());
        assert_eq!(g.config_read(4, 2).expect("command"), 0);
    }
}
