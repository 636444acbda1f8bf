//! The simulated GSP-RM, from the moment booter_load starts the GSP's RISC-V core. It reads the
//! libos arguments the GSP's mailboxes name (the log buffers, each mapping its own pages, and
//! RMARGS with the message queues' arguments), finds the shared queue buffer through its page
//! table, and sets up its status queue. Then, as the real one runs beside the CPU, it makes
//! progress whenever the driver touches a register: it takes the command queue's messages
//! (checking sequence numbers, headers and checksums), wants GSP_SET_SYSTEM_INFO and
//! SET_REGISTRY first, asks for one CPU-sequencer run, and reports GSP_INIT_DONE once the
//! sequence's register writes have happened. Anything else stops it with a fault that names it
//! (`Transport::fault`), as a GSP-RM that crashes goes silent.
//!
//! The sequence it asks for is synthetic (what GSP-RM 570.144 sends at a first boot is not in
//! the public sources): a register store, write, read-modify-write, poll and delay on the GSP
//! falcon's registers. Layouts: tk_gpu::nv::gsp and tk_gpu::nv::rpc name their sources.

use super::NvSimGpu;
use tk_gpu::nv::chip::BOOT_42;
use tk_gpu::nv::falcon::{GSP, MAILBOX1, RISCV_CPUCTL};
use tk_gpu::nv::gsp::{LIBOS_REGION_BYTES, id8};
use tk_gpu::nv::rm::FN_SET_PAGE_DIRECTORY;
use tk_gpu::nv::rpc::{
    CMDQ_OFFSET, QUEUE_BYTES, QUEUE_ENTRIES, QUEUE_ENTRY_BYTES, QUEUE_ENTRY_OFFSET, QUEUE_RX_HDR, SHARED_PTES,
    STATQ_OFFSET,
};
use tk_gpu::nv::rpc::{
    EV_GSP_INIT_DONE, EV_GSP_RUN_CPU_SEQUENCER, FN_FREE, FN_GSP_RM_ALLOC, FN_GSP_RM_CONTROL, FN_GSP_SET_SYSTEM_INFO,
    FN_SET_REGISTRY, MAX_ELEMENTS, SEQ_DELAY_US, SEQ_HDR_BYTES, SEQ_REG_MODIFY, SEQ_REG_POLL, SEQ_REG_STORE,
    SEQ_REG_WRITE, decode, element_count, encode,
};

/// What the synthetic sequence leaves in the GSP's mailbox 1 (written, then modified).
pub const SEQ_WRITE: u32 = 0x5e9_0000;
pub const SEQ_MASK: u32 = 0xff;
pub const SEQ_BITS: u32 = 0x42;
pub const SEQ_DONE: u32 = SEQ_WRITE | SEQ_BITS;

/// GSP-RM's progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    /// Not started (or stopped by a fault).
    #[default]
    Off,
    /// Waiting for the system information and the registry.
    Init,
    /// The sequencer request is out; waiting for its register writes.
    Sequencer,
    /// GSP_INIT_DONE sent.
    Ready,
}

/// GSP-RM's state.
#[derive(Default)]
pub struct GspRm {
    pub phase: Phase,
    /// The shared buffer's pages (bus addresses).
    pages: Vec<u64>,
    /// The next sequence number expected from the CPU, and the next one sent.
    rx_seq: u32,
    tx_seq: u32,
    pub system_info: bool,
    pub registry: bool,
    /// Messages taken from the command queue.
    pub received: Vec<u32>,
    /// The resource manager's objects.
    pub rm: super::rm::Rm,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

impl NvSimGpu {
    /// Reads the shared queue buffer at `off` through its page table.
    pub(super) fn shared_read(&self, rm: &GspRm, off: usize, n: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let at = off + out.len();
            let page = *rm.pages.get(at / 4096).ok_or(format!("a queue access at {at:#x}, past the shared buffer"))?;
            let m = (4096 - at % 4096).min(n - out.len());
            out.extend(self.read_bus(page + (at % 4096) as u64, m)?);
        }
        Ok(out)
    }

    fn shared_write(&self, rm: &GspRm, off: usize, bytes: &[u8]) -> Result<(), String> {
        let mut done = 0;
        while done < bytes.len() {
            let at = off + done;
            let page = *rm.pages.get(at / 4096).ok_or(format!("a queue access at {at:#x}, past the shared buffer"))?;
            let m = (4096 - at % 4096).min(bytes.len() - done);
            self.dma_write(page + (at % 4096) as u64, &bytes[done..done + m])?;
            done += m;
        }
        Ok(())
    }

    /// GSP-RM starts: the libos arguments at `libos`, RMARGS, the shared buffer, the status
    /// queue's header.
    pub(super) fn gsp_rm_start(&self, libos: u64) -> Result<(), String> {
        let args = self.read_bus(libos, 4 * LIBOS_REGION_BYTES)?;
        let names = ["LOGINIT", "LOGINTR", "LOGRM", "RMARGS"];
        let mut rmargs = None;
        for (k, name) in names.iter().enumerate() {
            let r = &args[k * LIBOS_REGION_BYTES..(k + 1) * LIBOS_REGION_BYTES];
            let (id, pa, size) = (u64_at(r, 0), u64_at(r, 8), u64_at(r, 16));
            if id != id8(name) || r[24] != 1 || r[25] != 1 {
                return Err(format!("libos argument {k} is not {name}, contiguous, in system memory"));
            }
            if *name == "RMARGS" {
                rmargs = Some(pa);
            } else {
                // A log buffer maps its own pages after its put pointer.
                let first = self.read_bus(pa, 16)?;
                if size < 4096 || u64_at(&first, 8) != pa {
                    return Err(format!("the {name} log buffer at {pa:#x} ({size} bytes) does not map its own pages"));
                }
            }
        }
        let a = self.read_bus(rmargs.unwrap_or(0), 0x48)?;
        let (shared, ptes, cmdq, statq) = (u64_at(&a, 0), u32_at(&a, 8), u64_at(&a, 0x10), u64_at(&a, 0x18));
        if ptes != SHARED_PTES || cmdq != CMDQ_OFFSET as u64 || statq != STATQ_OFFSET as u64 || a[0x30] != 1 {
            return Err(format!(
                "RMARGS: {ptes} page-table entries, queues at {cmdq:#x} and {statq:#x}, DMEM stack {}: not what \
                 GSP-RM 570.144 expects",
                a[0x30]
            ));
        }
        let table = self.read_bus(shared, 8 * ptes as usize)?;
        let pages: Vec<u64> = (0..ptes as usize).map(|k| u64_at(&table, 8 * k)).collect();
        if pages[0] != shared {
            return Err("the shared buffer's page table does not start with the buffer itself".into());
        }
        let mut rm = self.gsp_rm.lock().map_err(|_| "poisoned")?;
        *rm = GspRm { phase: Phase::Init, pages, ..GspRm::default() };
        let hdr = [0, QUEUE_BYTES as u32, QUEUE_ENTRY_BYTES as u32, QUEUE_ENTRIES, 0, 1, QUEUE_RX_HDR as u32, 0x1000];
        let bytes: Vec<u8> = hdr.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.shared_write(&rm, STATQ_OFFSET, &bytes)?;
        self.shared_write(&rm, STATQ_OFFSET + QUEUE_RX_HDR, &0u32.to_le_bytes())
    }

    /// GSP-RM makes progress (called after each register access while it runs). A fault
    /// stops it.
    pub(super) fn gsp_rm_step(&self) {
        let Ok(mut rm) = self.gsp_rm.lock() else { return };
        if rm.phase == Phase::Off {
            return;
        }
        if let Err(why) = self.gsp_rm_progress(&mut rm) {
            rm.phase = Phase::Off;
            if let Ok(mut f) = self.fault.lock() {
                *f = Some(format!("GSP-RM stopped: {why}"));
            }
        }
    }

    fn gsp_rm_progress(&self, rm: &mut GspRm) -> Result<(), String> {
        let n = QUEUE_ENTRIES;
        loop {
            let wp = u32_at(&self.shared_read(rm, CMDQ_OFFSET + 0x10, 4)?, 0);
            let rp = u32_at(&self.shared_read(rm, STATQ_OFFSET + QUEUE_RX_HDR, 4)?, 0);
            if wp >= n {
                return Err(format!("the command queue's write pointer is {wp}, past its {n} entries"));
            }
            if wp == rp {
                break;
            }
            let entry = |k: u32| CMDQ_OFFSET + QUEUE_ENTRY_OFFSET + ((rp + k) % n) as usize * QUEUE_ENTRY_BYTES;
            let first = self.shared_read(rm, entry(0), QUEUE_ENTRY_BYTES)?;
            let count = element_count(&first);
            if count == 0 || count > MAX_ELEMENTS || count as u32 > (wp + n - rp) % n {
                return Err(format!("a command of {count} elements"));
            }
            let mut e = first;
            for k in 1..count as u32 {
                e.extend(self.shared_read(rm, entry(k), QUEUE_ENTRY_BYTES)?);
            }
            let seq = u32_at(&e, 0x24);
            if seq != rm.rx_seq {
                return Err(format!("a command with sequence number {seq}, expected {}", rm.rx_seq));
            }
            let m = decode(&e).map_err(|d| format!("the CPU sent {d}"))?;
            rm.rx_seq += 1;
            self.shared_write(rm, STATQ_OFFSET + QUEUE_RX_HDR, &((rp + count as u32) % n).to_le_bytes())?;
            rm.received.push(m.function);
            match m.function {
                FN_GSP_SET_SYSTEM_INFO => self.check_system_info(&m.payload).map(|()| rm.system_info = true)?,
                FN_SET_REGISTRY => check_registry(&m.payload).map(|()| rm.registry = true)?,
                f @ (FN_GSP_RM_ALLOC | FN_GSP_RM_CONTROL | FN_FREE | FN_SET_PAGE_DIRECTORY)
                    if rm.phase == Phase::Ready =>
                {
                    let (result, reply) = self.rm_call(&mut rm.rm, f, m.payload)?;
                    self.gsp_rm_send_result(rm, f, result, &reply)?;
                }
                f => return Err(format!("RPC function {f} is not one the simulated GSP-RM answers")),
            }
        }
        if rm.phase == Phase::Init && rm.system_info && rm.registry {
            rm.phase = Phase::Sequencer;
            self.gsp_rm_send(rm, EV_GSP_RUN_CPU_SEQUENCER, &sequence())?;
        }
        if rm.phase == Phase::Sequencer {
            let m1 = self.gsp.lock().map_err(|_| "poisoned")?.read(MAILBOX1).unwrap_or(0);
            if m1 == SEQ_DONE {
                rm.phase = Phase::Ready;
                self.gsp_rm_send(rm, EV_GSP_INIT_DONE, &[0u8; 8])?;
            }
        }
        Ok(())
    }

    /// Puts a message into the status queue.
    fn gsp_rm_send(&self, rm: &mut GspRm, function: u32, payload: &[u8]) -> Result<(), String> {
        self.gsp_rm_send_result(rm, function, 0, payload)
    }

    fn gsp_rm_send_result(&self, rm: &mut GspRm, function: u32, result: u32, payload: &[u8]) -> Result<(), String> {
        let n = QUEUE_ENTRIES;
        let e = encode(rm.tx_seq, function, result, payload);
        let count = (e.len() / QUEUE_ENTRY_BYTES) as u32;
        let wp = u32_at(&self.shared_read(rm, STATQ_OFFSET + 0x10, 4)?, 0);
        let rp = u32_at(&self.shared_read(rm, CMDQ_OFFSET + QUEUE_RX_HDR, 4)?, 0);
        if (rp + n - wp - 1) % n < count {
            return Err("the status queue is full: the CPU does not read it".into());
        }
        for k in 0..count {
            let at = STATQ_OFFSET + QUEUE_ENTRY_OFFSET + ((wp + k) % n) as usize * QUEUE_ENTRY_BYTES;
            self.shared_write(rm, at, &e[k as usize * QUEUE_ENTRY_BYTES..(k as usize + 1) * QUEUE_ENTRY_BYTES])?;
        }
        rm.tx_seq += 1;
        self.shared_write(rm, STATQ_OFFSET + 0x10, &((wp + count) % n).to_le_bytes())
    }

    fn check_system_info(&self, p: &[u8]) -> Result<(), String> {
        use tk_gpu::nv::rpc::SYSTEM_INFO_BYTES;
        if p.len() != SYSTEM_INFO_BYTES {
            return Err(format!("GSP_SET_SYSTEM_INFO with {} bytes, not {SYSTEM_INFO_BYTES}", p.len()));
        }
        let dev = u32_at(p, 0x58);
        let want = u32::from(self.opts.chip.device_id()) << 16 | 0x10de;
        if dev != want || u64_at(p, 0) == 0 {
            return Err(format!("GSP_SET_SYSTEM_INFO names device {dev:#x} (BAR0 {:#x}), not {want:#x}", u64_at(p, 0)));
        }
        Ok(())
    }
}

/// SET_REGISTRY's packed table: its size, entries inside it, names inside it.
fn check_registry(p: &[u8]) -> Result<(), String> {
    let (size, n) = (u32_at(p, 0) as usize, u32_at(p, 4) as usize);
    if size != p.len() || 8 + 16 * n > size {
        return Err(format!("a registry table of {size} bytes with {n} entries in {} bytes", p.len()));
    }
    for k in 0..n {
        let e = 8 + 16 * k;
        let name = u32_at(p, e) as usize;
        if name >= size || !p[name..].contains(&0) || !(1..=3).contains(&p[e + 4]) {
            return Err(format!("registry entry {k} has no name inside the table or an unknown type"));
        }
    }
    Ok(())
}

/// The synthetic CPU sequence (see the module's docs).
fn sequence() -> Vec<u8> {
    let m1 = (GSP.base + MAILBOX1) as u32;
    let words = [
        SEQ_REG_STORE,
        BOOT_42 as u32,
        0,
        SEQ_REG_WRITE,
        m1,
        SEQ_WRITE,
        SEQ_REG_MODIFY,
        m1,
        SEQ_MASK,
        SEQ_BITS,
        SEQ_REG_POLL,
        (GSP.base + RISCV_CPUCTL) as u32,
        0x80,
        0x80,
        1000,
        0,
        SEQ_DELAY_US,
        5,
    ];
    let mut p = vec![0u8; SEQ_HDR_BYTES];
    p[0..4].copy_from_slice(&0x400u32.to_le_bytes());
    p[4..8].copy_from_slice(&(words.len() as u32).to_le_bytes());
    p.extend(words.iter().flat_map(|w| w.to_le_bytes()));
    p
}
