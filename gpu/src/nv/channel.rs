//! The `channels` step and what runs on the channels: a channel group (KEPLER_CHANNEL_GROUP_A)
//! on the compute engine's runlist with a context share over the driver's VA space, and two
//! GPFIFO channels in it (AMPERE_CHANNEL_GPFIFO_A): one with the compute class bound to
//! subchannel 1, one with the copy class (AMPERE_DMA_COPY_B) bound to subchannel 4. Each
//! channel's GPFIFO ring, USERD, pushbuffer and semaphore live in one piece of system memory
//! mapped into the VA space, so the CPU writes them without a round trip; its instance block
//! and method buffer are in VRAM. A submission is methods in the pushbuffer, then a semaphore
//! release (after the engine is idle), a GPFIFO entry, GP_PUT in USERD and the work-submit
//! token written to the doorbell: one register write. The wait polls the semaphore in system
//! memory, checking now and then that the GPU still answers.
//!
//! Layouts and numbers: open-gpu-doc `clc56f.h` (host methods, USERD), `clc7c0.h`,
//! `clc7b5.h`; open-gpu-kernel-modules 570.144 `alloc_channel.h`, `nvos.h`, `ctrlc36f.h`,
//! `ctrla06c.h`, `dev_vm.h` (the doorbell); tinygrad `ops_nv.py` (docs/nvidia-facts.md).

use super::mmu::{Aperture, PageTables};
use super::qmd::{gp_entry, incr};
use super::rm::{self, Objects};
use super::rpc::Rpc;
use super::sysmem::{Buffer, PAGE, Paged};
use super::{BAR_MMIO, NvError, chip};
use crate::queue::GpuError;
use crate::transport::Transport;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// NV_VIRTUAL_FUNCTION_DOORBELL (BAR0 0xB80000 + 0x30090): the work-submit token goes here.
pub const DOORBELL: u64 = 0xbb_0090;
/// A channel's system memory: the GPFIFO ring, USERD, the semaphore, the pushbuffer.
pub const CHANNEL_BYTES: usize = 512 << 10;
pub const GPFIFO_ENTRIES: u32 = 1024;
pub const USERD_AT: usize = 0x2000;
pub const SEMAPHORE_AT: usize = 0x3000;
pub const PUSHBUFFER_AT: usize = 0x4000;
/// USERD's GP_GET and GP_PUT.
pub const USERD_GP_GET: usize = 0x88;
pub const USERD_GP_PUT: usize = 0x8c;
/// Host methods (AMPERE_CHANNEL_GPFIFO_A): SET_OBJECT, the semaphore.
pub const SET_OBJECT: u32 = 0x000;
pub const SEM_ADDR_LO: u32 = 0x05c;
/// SEM_EXECUTE: release (1), after the engine is idle (bit 20), a 64-bit payload (bit 24).
pub const SEM_RELEASE_WFI_64: u32 = 1 | 1 << 20 | 1 << 24;
/// Subchannels: compute on 1, copy on 4 (as tinygrad binds them).
pub const SUBCH_COMPUTE: u32 = 1;
pub const SUBCH_COPY: u32 = 4;
/// The channel group, context share and channels' handles.
pub const H_TSG: u32 = 0xa06c_0000;
pub const H_CTXSHARE: u32 = 0x9067_0000;
pub const H_CHANNEL: u32 = 0xc56f_0000;
pub const H_ENGINE: u32 = 0xc7c0_0000;
/// NV_MEMORY_DESC_PARAMS address spaces (SYSMEM 1, FBMEM 2).
pub const ADDR_SYSMEM: u32 = 1;
pub const ADDR_FBMEM: u32 = 2;
/// Where channel memory goes in the VA space.
pub const CHANNEL_VA: u64 = 0x10_0000_0000;

fn fail(detail: String) -> NvError {
    NvError::Step { step: "channels", detail }
}

/// One GPFIFO channel.
pub struct Channel {
    pub handle: u32,
    /// The doorbell value: runlist << 16 | channel id.
    pub token: u32,
    pub mem: Buffer,
    /// Where `mem` is in the VA space.
    pub va: u64,
    put: AtomicU32,
    pb: AtomicUsize,
    /// The last semaphore value asked for.
    seq: AtomicU64,
    /// The bound class.
    pub class: u32,
}

/// A memory descriptor (`NV_MEMORY_DESC_PARAMS`).
fn desc(p: &mut [u8], at: usize, base: u64, size: u64, space: u32) {
    p[at..at + 8].copy_from_slice(&base.to_le_bytes());
    p[at + 8..at + 16].copy_from_slice(&size.to_le_bytes());
    p[at + 16..at + 20].copy_from_slice(&space.to_le_bytes());
}

impl Channel {
    /// Allocates channel `k` of the group with an object of `class` on it.
    #[allow(clippy::too_many_arguments)]
    fn open(
        t: &dyn Transport,
        (shared, rpc, o): (&Paged, &mut Rpc, &Objects),
        tables: &mut PageTables,
        vram: (u64, u64),
        k: u32,
        class: u32,
    ) -> Result<Channel, NvError> {
        let mem = Buffer::new(t, CHANNEL_BYTES, "channels", "a channel's ring and pushbuffer")?;
        let va = CHANNEL_VA + u64::from(k) * CHANNEL_BYTES as u64;
        for p in 0..CHANNEL_BYTES / PAGE {
            tables.map(t, va + (p * PAGE) as u64, mem.bus(p * PAGE), PAGE as u64, Aperture::Sys)?;
        }
        let handle = H_CHANNEL + k;
        let mut c = vec![0u8; rm::CHANNEL_PARAMS];
        c[8..16].copy_from_slice(&va.to_le_bytes()); // gpFifoOffset
        c[0x10..0x14].copy_from_slice(&GPFIFO_ENTRIES.to_le_bytes());
        c[0x18..0x1c].copy_from_slice(&H_CTXSHARE.to_le_bytes());
        // The instance block (and RAMFC in it) and the method buffer in VRAM, USERD in
        // system memory.
        let (inst, mthd) = vram;
        desc(&mut c, 0x90, inst, 0x1000, ADDR_FBMEM);
        desc(&mut c, 0xa8, mem.bus(USERD_AT), 0x200, ADDR_SYSMEM);
        desc(&mut c, 0xc0, inst, 0x200, ADDR_FBMEM);
        desc(&mut c, 0xd8, mthd, 0x5000, ADDR_FBMEM);
        rpc.alloc(t, shared, o.client, H_TSG, handle, rm::AMPERE_CHANNEL_GPFIFO_A, &c)?;
        rpc.alloc(t, shared, o.client, handle, H_ENGINE + k, class, &[])?;
        let r =
            rpc.control(t, shared, (o.client, handle), rm::CTRL_GPFIFO_GET_WORK_SUBMIT_TOKEN, &u32::MAX.to_le_bytes())?;
        let mut token = r.get(0..4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        // GSP-RM fills in the channel id; the runlist goes in bits 22:16.
        if token >> 16 & 0x7f == 0 {
            token |= (o.gr_runlist & 0x7f) << 16;
        }
        let ch = Channel {
            handle,
            token,
            mem,
            va,
            put: AtomicU32::new(0),
            pb: AtomicUsize::new(PUSHBUFFER_AT),
            seq: AtomicU64::new(0),
            class,
        };
        Ok(ch)
    }

    /// The semaphore's value (system memory: no round trip).
    pub fn completed(&self) -> u64 {
        let b = self.mem.read(SEMAPHORE_AT, 8);
        u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
    }

    /// Queues `methods` and a semaphore release after them; returns the value that marks them
    /// done. The doorbell is the only round trip.
    pub fn submit(&self, t: &dyn Transport, methods: &[u32]) -> Result<u64, GpuError> {
        let seq = self.seq.load(SeqCst) + 1;
        let sem = self.va + SEMAPHORE_AT as u64;
        let mut m = methods.to_vec();
        m.extend([incr(0, SEM_ADDR_LO, 5), sem as u32, (sem >> 32) as u32, seq as u32, (seq >> 32) as u32]);
        m.push(SEM_RELEASE_WFI_64);
        let bytes: Vec<u8> = m.iter().flat_map(|w| w.to_le_bytes()).collect();
        if bytes.len() > CHANNEL_BYTES - PUSHBUFFER_AT {
            return Err(GpuError::Invalid(format!("{} bytes of methods in one submission", bytes.len())));
        }
        let mut at = self.pb.load(SeqCst);
        if at + bytes.len() > CHANNEL_BYTES {
            // The pushbuffer wraps: everything before must be done first.
            self.wait(t, self.seq.load(SeqCst), crate::amd::link::default_timeout())?;
            at = PUSHBUFFER_AT;
        }
        self.mem.write(at, &bytes);
        self.pb.store((at + bytes.len()).next_multiple_of(16), SeqCst);
        let put = self.put.load(SeqCst);
        let entry = gp_entry(self.va + at as u64, m.len() as u32);
        self.mem.write(8 * put as usize, &entry.to_le_bytes());
        let put = (put + 1) % GPFIFO_ENTRIES;
        self.put.store(put, SeqCst);
        self.mem.write(USERD_AT + USERD_GP_PUT, &put.to_le_bytes());
        self.seq.store(seq, SeqCst);
        t.write32(BAR_MMIO, DOORBELL, self.token).map_err(|e| {
            if crate::transport::link_gone(t) {
                GpuError::Link(crate::transport::LINK_LOST.into())
            } else {
                GpuError::Setup(e)
            }
        })?;
        Ok(seq)
    }

    /// Waits until the semaphore reaches `value`; a GPU that has not got there after `limit`
    /// is lost. Every 20 ms the GPU is asked whether it still answers and whether it faulted.
    pub fn wait(&self, t: &dyn Transport, value: u64, limit: Duration) -> Result<(), GpuError> {
        let start = Instant::now();
        let mut checked = start;
        loop {
            if self.completed() >= value {
                return Ok(());
            }
            if let Some(f) = t.fault() {
                return Err(GpuError::Fault(f));
            }
            if checked.elapsed() >= Duration::from_millis(20) {
                checked = Instant::now();
                if chip::read(t, chip::BOOT_0).is_err() {
                    return Err(GpuError::Link(crate::transport::LINK_LOST.into()));
                }
            }
            if start.elapsed() >= limit {
                return Err(GpuError::Timeout { limit, var: "TK_GPU_TIMEOUT_MS" });
            }
            std::thread::yield_now();
        }
    }
}

/// The channels a device runs work on.
pub struct Channels {
    pub compute: Channel,
    pub copy: Channel,
}

/// The `channels` step: the channel group, its context share, the compute and copy channels
/// with their classes bound, the group scheduled. `vram` gives each channel's instance block
/// and method buffer (4 KiB and 20 KiB of VRAM each).
pub fn open(
    t: &dyn Transport,
    (shared, rpc, o): (&Paged, &mut Rpc, &Objects),
    tables: &mut PageTables,
    compute_class: u32,
    vram: [(u64, u64); 2],
    timeout: Duration,
) -> Result<Channels, NvError> {
    let mut g = vec![0u8; rm::TSG_PARAMS];
    g[8..12].copy_from_slice(&rm::H_VASPACE.to_le_bytes());
    g[12..16].copy_from_slice(&rm::ENGINE_TYPE_GR0.to_le_bytes());
    rpc.alloc(t, shared, o.client, o.device, H_TSG, rm::KEPLER_CHANNEL_GROUP_A, &g)?;
    let mut s = vec![0u8; rm::CTXSHARE_PARAMS];
    s[0..4].copy_from_slice(&rm::H_VASPACE.to_le_bytes());
    s[4..8].copy_from_slice(&1u32.to_le_bytes()); // an asynchronous subcontext
    rpc.alloc(t, shared, o.client, H_TSG, H_CTXSHARE, rm::FERMI_CONTEXT_SHARE_A, &s)?;
    let compute = Channel::open(t, (shared, rpc, o), tables, vram[0], 0, compute_class)?;
    let copy = Channel::open(t, (shared, rpc, o), tables, vram[1], 1, rm::AMPERE_DMA_COPY_B)?;
    tables.invalidate(t, timeout)?;
    rpc.control(t, shared, (o.client, H_TSG), rm::CTRL_TSG_GPFIFO_SCHEDULE, &[1, 0])?;
    // Bind the classes: SET_OBJECT on their subchannels.
    let ch = Channels { compute, copy };
    for (c, subch) in [(&ch.compute, SUBCH_COMPUTE), (&ch.copy, SUBCH_COPY)] {
        let v = c.submit(t, &[incr(subch, SET_OBJECT, 1), c.class]).map_err(|e| fail(e.to_string()))?;
        c.wait(t, v, timeout).map_err(|e| fail(format!("binding class {:#x}: {e}", c.class)))?;
    }
    Ok(ch)
}
