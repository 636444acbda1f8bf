//! An NVIDIA GPU as tk's runtime uses it ([`NvGpu`]): booted through GSP-RM (`nv::boot`), with
//! its channels open (`channels` step), VRAM handed out from a first-fit heap and mapped into
//! the driver's VA space, copies between host and VRAM by the copy engine through a staging
//! area in system memory, and launches by QMD. Everything the GPU reads per launch (the QMD,
//! constant bank 0, the pushbuffer, the semaphore) is in system memory, so a launch costs one
//! round trip, its doorbell.

use super::channel::{self, Channels, SUBCH_COMPUTE, SUBCH_COPY};
use super::chip::{Arch, Chip};
use super::firmware::NvFirmware;
use super::mmu::{Aperture, HUGE, PageTables};
use super::qmd::{self, incr};
use super::rm;
use super::sysmem::{PAGE, Paged};
use super::{Boot, NvError};
use crate::memory::Heap;
use crate::queue::GpuError;
use crate::transport::Transport;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// Where things are in the driver's VA space.
pub const STAGING_VA: u64 = 0x18_0000_0000;
pub const LAUNCH_VA: u64 = 0x19_0000_0000;
pub const VRAM_VA: u64 = 0x20_0000_0000;
/// A page of system memory the kernels' error slots live in: the CPU clears and reads it
/// without a round trip.
pub const ERRORS_VA: u64 = 0x1a_0000_0000;
/// The staging area for copies (system memory), and the launch slots: per launch 4 KiB,
/// constant bank 0 first and the QMD at `QMD_AT`.
pub const STAGING_BYTES: usize = 4 << 20;
pub const LAUNCH_SLOTS: usize = 64;
pub const SLOT_BYTES: usize = 4096;
pub const QMD_AT: usize = SLOT_BYTES - qmd::QMD_BYTES;
/// Compute methods: SEND_PCAS_A (the QMD's VA >> 8) and SEND_SIGNALING_PCAS2_B with
/// PREFETCH_SCHEDULE (9), as tinygrad launches.
pub const SEND_PCAS_A: u32 = 0x02b4;
pub const SEND_SIGNALING_PCAS2_B: u32 = 0x02c0;
pub const PCAS_PREFETCH_SCHEDULE: u32 = 9;
/// Copy methods: OFFSET_IN_UPPER (then _LOWER, OFFSET_OUT_UPPER, _LOWER), LINE_LENGTH_IN and
/// LAUNCH_DMA: non-pipelined (2), pitch source (bit 7) and destination (bit 8), virtual.
pub const OFFSET_IN_UPPER: u32 = 0x400;
pub const LINE_LENGTH_IN: u32 = 0x418;
pub const LAUNCH_DMA: u32 = 0x300;
pub const LAUNCH_DMA_COPY: u32 = 2 | 1 << 7 | 1 << 8;

/// A VRAM allocation: its place in VRAM and in the VA space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vram {
    pub pa: u64,
    pub va: u64,
    pub bytes: u64,
}

/// A booted NVIDIA GPU.
pub struct NvGpu {
    t: Box<dyn Transport>,
    boot: Mutex<Boot>,
    channels: Channels,
    heap: Mutex<Heap>,
    staging: Paged,
    slots: Paged,
    errors: Paged,
    /// The next launch slot, and the fence that last used each.
    slot: AtomicUsize,
    slot_fence: Mutex<Vec<u64>>,
    /// Copies use the staging area one at a time.
    copying: Mutex<()>,
    lost: AtomicBool,
    timeout: Duration,
}

fn setup(e: NvError) -> GpuError {
    match e {
        NvError::Chip(super::chip::ChipError::LinkLost) => GpuError::Link(crate::transport::LINK_LOST.into()),
        NvError::Firmware(super::firmware::FirmwareError::Missing(files)) => GpuError::Firmware(
            super::firmware::FirmwareError::Missing(files)
                .to_string()
                .trim_start_matches("missing GPU firmware: ")
                .into(),
        ),
        e => GpuError::Setup(e.to_string()),
    }
}

impl NvGpu {
    /// Boots the GPU behind `t` and opens its channels; `TK_GPU_TIMEOUT_MS` bounds every wait.
    pub fn open(t: Box<dyn Transport>) -> Result<NvGpu, GpuError> {
        NvGpu::open_within(t, crate::amd::link::default_timeout())
    }

    /// [`NvGpu::open`] with `timeout` bounding every wait.
    pub fn open_within(t: Box<dyn Transport>, timeout: Duration) -> Result<NvGpu, GpuError> {
        NvGpu::open_with(t, None, timeout)
    }

    /// [`NvGpu::open`] with the firmware given (else the device's own, or linux-firmware's) and
    /// `timeout` bounding every wait.
    pub fn open_with(t: Box<dyn Transport>, fw: Option<NvFirmware>, timeout: Duration) -> Result<NvGpu, GpuError> {
        let mut boot = super::boot_within(t.as_ref(), fw, timeout).map_err(setup)?;
        let chip = boot.probe.chip;
        // VRAM below GSP-RM's reserved region is the driver's.
        let mut heap = Heap::new(boot.gsp.layout.non_wpr_heap, PAGE as u64);
        // Each channel's instance block (4 KiB) and method buffer (20 KiB) in 64 KiB of VRAM.
        let mut block = || heap.alloc(0x1_0000).ok_or(GpuError::OutOfMemory(0x1_0000));
        let (a, c) = (block()?, block()?);
        let vram = [(a, a + 0x1000), (c, c + 0x1000)];
        let b = &mut boot;
        let compute = if chip.arch == Arch::Ada { rm::ADA_COMPUTE_A } else { rm::AMPERE_COMPUTE_B };
        let channels =
            channel::open(t.as_ref(), (&b.gsp.shared, &mut b.rpc, &b.objects), &mut b.tables, compute, vram, timeout)
                .map_err(setup)?;
        let map_sys = |tables: &mut PageTables, p: &Paged, va: u64| -> Result<(), GpuError> {
            for (k, &bus) in p.pages.iter().enumerate() {
                tables.map(t.as_ref(), va + (k * PAGE) as u64, bus, PAGE as u64, Aperture::Sys).map_err(setup)?;
            }
            Ok(())
        };
        let staging =
            Paged::new(t.as_ref(), &vec![0u8; STAGING_BYTES], "channels", "the staging area").map_err(setup)?;
        let slots = Paged::new(t.as_ref(), &vec![0u8; LAUNCH_SLOTS * SLOT_BYTES], "channels", "the launch slots")
            .map_err(setup)?;
        let errors = Paged::new(t.as_ref(), &[0u8; PAGE], "channels", "the error slots").map_err(setup)?;
        map_sys(&mut b.tables, &errors, ERRORS_VA)?;
        map_sys(&mut b.tables, &staging, STAGING_VA)?;
        map_sys(&mut b.tables, &slots, LAUNCH_VA)?;
        b.tables.invalidate(t.as_ref(), timeout).map_err(setup)?;
        super::log("channels", || {
            format!(
                "compute ({compute:#x}) and copy channels, doorbell tokens {:#x} and {:#x}",
                channels.compute.token, channels.copy.token
            )
        });
        if crate::amd::link::logging() {
            let n = t.round_trips();
            eprintln!("driver: boot done after {n} register accesses ({n} round trips)");
        }
        Ok(NvGpu {
            t,
            boot: Mutex::new(boot),
            channels,
            heap: Mutex::new(heap),
            staging,
            slots,
            errors,
            slot: AtomicUsize::new(0),
            slot_fence: Mutex::new(vec![0; LAUNCH_SLOTS]),
            copying: Mutex::new(()),
            lost: AtomicBool::new(false),
            timeout,
        })
    }

    /// The chip.
    pub fn chip(&self) -> Chip {
        self.boot.lock().map(|b| b.probe.chip).unwrap_or(Chip { arch: Arch::Ampere, id: 0, name: "?" })
    }

    /// Requests the transport has made (round trips to the device).
    pub fn round_trips(&self) -> u64 {
        self.t.round_trips()
    }

    pub fn transport(&self) -> &dyn Transport {
        self.t.as_ref()
    }

    fn check(&self) -> Result<(), GpuError> {
        if self.lost.load(Ordering::Relaxed) { Err(GpuError::Lost) } else { Ok(()) }
    }

    fn lose<T>(&self, r: Result<T, GpuError>) -> Result<T, GpuError> {
        if let Err(e) = &r
            && e.loses_device()
        {
            super::log("lost", || e.to_string());
            self.lost.store(true, Ordering::Relaxed);
        }
        r
    }

    /// Allocates `bytes` of VRAM (whole 4 KiB pages, 2 MiB pages in the tables where aligned)
    /// and maps it.
    pub fn alloc(&self, bytes: u64) -> Result<Vram, GpuError> {
        self.check()?;
        let size = bytes.max(1).next_multiple_of(if bytes >= HUGE { HUGE } else { PAGE as u64 });
        let pa = self.heap.lock().map_err(|_| GpuError::Lost)?.alloc(size).ok_or(GpuError::OutOfMemory(bytes))?;
        let va = VRAM_VA + pa;
        let mut b = self.boot.lock().map_err(|_| GpuError::Lost)?;
        b.tables.map(self.t.as_ref(), va, pa, size, Aperture::Vram).map_err(setup)?;
        b.tables.invalidate(self.t.as_ref(), self.timeout).map_err(setup)?;
        Ok(Vram { pa, va, bytes: size })
    }

    /// Frees an allocation.
    pub fn free(&self, v: Vram) {
        if let Ok(mut b) = self.boot.lock() {
            b.tables.unmap(v.va, v.bytes);
            let _ = b.tables.invalidate(self.t.as_ref(), self.timeout);
        }
        if let Ok(mut h) = self.heap.lock() {
            h.release(v.pa, v.bytes);
        }
    }

    /// Free VRAM, in bytes.
    pub fn free_vram(&self) -> u64 {
        self.heap.lock().map(|h| h.free_bytes()).unwrap_or(0)
    }

    /// Copies `n` bytes from VA `src` to VA `dst` on the copy engine and waits.
    fn dma(&self, src: u64, dst: u64, n: u32) -> Result<(), GpuError> {
        let c = &self.channels.copy;
        let m = [
            incr(SUBCH_COPY, OFFSET_IN_UPPER, 4),
            (src >> 32) as u32,
            src as u32,
            (dst >> 32) as u32,
            dst as u32,
            incr(SUBCH_COPY, LINE_LENGTH_IN, 1),
            n,
            incr(SUBCH_COPY, LAUNCH_DMA, 1),
            LAUNCH_DMA_COPY,
        ];
        let v = self.lose(c.submit(self.t.as_ref(), &m))?;
        self.lose(c.wait(self.t.as_ref(), v, self.timeout))
    }

    /// Writes `src` to VRAM at VA `dst` (through the staging area, by the copy engine).
    pub fn upload(&self, dst: u64, src: &[u8]) -> Result<(), GpuError> {
        self.check()?;
        let _g = self.copying.lock().map_err(|_| GpuError::Lost)?;
        for (k, chunk) in src.chunks(STAGING_BYTES).enumerate() {
            self.staging.write(0, chunk);
            self.dma(STAGING_VA, dst + (k * STAGING_BYTES) as u64, chunk.len() as u32)?;
        }
        Ok(())
    }

    /// Reads VRAM at VA `src` into `dst`.
    pub fn download(&self, src: u64, dst: &mut [u8]) -> Result<(), GpuError> {
        self.check()?;
        let _g = self.copying.lock().map_err(|_| GpuError::Lost)?;
        for (k, chunk) in dst.chunks_mut(STAGING_BYTES).enumerate() {
            self.dma(src + (k * STAGING_BYTES) as u64, STAGING_VA, chunk.len() as u32)?;
            chunk.copy_from_slice(&self.staging.read(0, chunk.len()));
        }
        Ok(())
    }

    /// Copies `n` bytes between VRAM allocations.
    pub fn copy(&self, src: u64, dst: u64, n: u64) -> Result<(), GpuError> {
        self.check()?;
        let mut off = 0;
        while off < n {
            let k = (n - off).min(1 << 31);
            self.dma(src + off, dst + off, k as u32)?;
            off += k;
        }
        Ok(())
    }

    /// Launches: constant bank 0 (`bank0`, with the grid's sizes and the parameters where the
    /// code reads them) and the QMD go into a launch slot; the compute channel sends the QMD.
    /// Waits for the launch to finish.
    pub fn launch(&self, mut l: qmd::Launch, bank0: &[u8]) -> Result<(), GpuError> {
        self.check()?;
        if bank0.len() > QMD_AT {
            return Err(GpuError::Invalid(format!(
                "constant bank 0 of {} bytes does not fit a launch slot ({QMD_AT} bytes)",
                bank0.len()
            )));
        }
        let k = self.slot.fetch_add(1, Ordering::Relaxed) % LAUNCH_SLOTS;
        let c = &self.channels.compute;
        let before = self.slot_fence.lock().map_err(|_| GpuError::Lost)?[k];
        self.lose(c.wait(self.t.as_ref(), before, self.timeout))?;
        let at = k * SLOT_BYTES;
        self.slots.write(at, bank0);
        l.bank0 = (LAUNCH_VA + at as u64, bank0.len() as u32);
        let q = qmd::build(&l);
        self.slots.write(at + QMD_AT, &q.to_bytes());
        let qmd_va = LAUNCH_VA + (at + QMD_AT) as u64;
        let m = [
            incr(SUBCH_COMPUTE, SEND_PCAS_A, 1),
            (qmd_va >> 8) as u32,
            incr(SUBCH_COMPUTE, SEND_SIGNALING_PCAS2_B, 1),
            PCAS_PREFETCH_SCHEDULE,
        ];
        let v = self.lose(c.submit(self.t.as_ref(), &m))?;
        self.slot_fence.lock().map_err(|_| GpuError::Lost)?[k] = v;
        self.lose(c.wait(self.t.as_ref(), v, self.timeout))
    }

    /// Runs raw methods on the compute channel (`copy`: the copy channel) and waits: for tests
    /// and tools that talk to the engines directly.
    pub fn submit_methods(&self, copy: bool, methods: &[u32]) -> Result<(), GpuError> {
        self.check()?;
        let c = if copy { &self.channels.copy } else { &self.channels.compute };
        let v = self.lose(c.submit(self.t.as_ref(), methods))?;
        self.lose(c.wait(self.t.as_ref(), v, self.timeout))
    }

    /// Writes `bytes` into the launch slots' memory at `at` (mapped at [`LAUNCH_VA`] + `at`): for
    /// tests that hand the GPU a QMD of their own.
    pub fn write_launch_slots(&self, at: usize, bytes: &[u8]) {
        if at + bytes.len() <= LAUNCH_SLOTS * SLOT_BYTES {
            self.slots.write(at, bytes);
        }
    }

    /// The error slots' VA (a page of system memory).
    pub fn errors_va(&self) -> u64 {
        ERRORS_VA
    }

    /// Zeroes the first `n` bytes of the error slots.
    pub fn clear_errors(&self, n: usize) {
        self.errors.write(0, &vec![0u8; n.min(PAGE)]);
    }

    /// Reads the error slots.
    pub fn read_errors(&self, out: &mut [u8]) {
        let n = out.len().min(PAGE);
        out[..n].copy_from_slice(&self.errors.read(0, n));
    }

    /// Whether an earlier failure lost the device.
    pub fn check_lost(&self) -> Result<(), GpuError> {
        self.check()
    }

    /// The RPC layer and objects, for tests and `tk devices --verbose`.
    pub fn with_boot<T>(&self, f: impl FnOnce(&mut Boot) -> T) -> Option<T> {
        self.boot.lock().ok().map(|mut b| f(&mut b))
    }
}
