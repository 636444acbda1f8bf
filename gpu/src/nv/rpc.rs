//! Talking to GSP-RM: the two message queues in shared system memory (the command queue the
//! CPU writes, the status queue GSP-RM writes), their elements (a 48-byte header with an XOR
//! checksum, then the RPC header and payload, up to 16 elements of 4 KiB per message; longer
//! payloads continue in CONTINUATION_RECORD messages), the doorbell (NV_PGSP_QUEUE_HEAD(0)),
//! and the `gsp-init` step: GSP-RM's status queue comes up, its CPU-sequencer requests are
//! served, and it reports GSP_INIT_DONE.
//!
//! Layouts, numbers and the protocol: open-gpu-kernel-modules 570.144 `message_queue_priv.h`,
//! `msgq_priv.h`, `msgq.c`, `g_rpc-message-header.h`, `rpc_global_enums.h`, `rmgspseq.h`,
//! `kernel_gsp.c`; nova-core `gsp/cmdq.rs`, `gsp/sequencer.rs`; nouveau `r535/rpc.c`
//! (docs/nvidia-facts.md, "GSP-RM", sections 3-6).

use super::sysmem::{PAGE, Paged};
use super::{BAR_MMIO, NvError, chip};
use crate::transport::Transport;
use std::time::{Duration, Instant};

/// The message queues' shared buffer: the page table (129 entries), then the command queue
/// (CPU to GSP) and the status queue (GSP to CPU), 256 KiB each.
pub const QUEUE_BYTES: usize = 0x4_0000;
pub const CMDQ_OFFSET: usize = 0x1000;
pub const STATQ_OFFSET: usize = CMDQ_OFFSET + QUEUE_BYTES;
pub const SHARED_BYTES: usize = STATQ_OFFSET + QUEUE_BYTES;
pub const SHARED_PTES: u32 = (SHARED_BYTES / PAGE) as u32;
/// A queue's header (`msgqTxHeader`), where its reader's pointer lives and where its entries
/// start, and the entries' size and count.
pub const QUEUE_RX_HDR: usize = 0x20;
pub const QUEUE_ENTRY_OFFSET: usize = 0x1000;
pub const QUEUE_ENTRY_BYTES: usize = 0x1000;
pub const QUEUE_ENTRIES: u32 = ((QUEUE_BYTES - QUEUE_ENTRY_OFFSET) / QUEUE_ENTRY_BYTES) as u32;

/// `GSP_ARGUMENTS_CACHED` (570.144, 0x48 bytes) for the shared buffer at `shared`.
pub fn rm_args(shared: u64) -> Vec<u8> {
    let mut b = vec![0u8; 0x48];
    b[0..8].copy_from_slice(&shared.to_le_bytes());
    b[8..12].copy_from_slice(&SHARED_PTES.to_le_bytes());
    b[0x10..0x18].copy_from_slice(&(CMDQ_OFFSET as u64).to_le_bytes());
    b[0x18..0x20].copy_from_slice(&(STATQ_OFFSET as u64).to_le_bytes());
    b[0x30] = 1; // bDmemStack
    b
}

/// RPC functions (`NV_VGPU_MSG_FUNCTION_*`, 570.144).
pub const FN_FREE: u32 = 10;
pub const FN_CONTINUATION_RECORD: u32 = 71;
pub const FN_GSP_SET_SYSTEM_INFO: u32 = 72;
pub const FN_SET_REGISTRY: u32 = 73;
pub const FN_GSP_RM_CONTROL: u32 = 76;
pub const FN_GSP_RM_ALLOC: u32 = 103;
/// Events GSP-RM sends (`NV_VGPU_MSG_EVENT_*`, 570.144).
pub const EV_GSP_INIT_DONE: u32 = 0x1001;
pub const EV_GSP_RUN_CPU_SEQUENCER: u32 = 0x1002;
pub const EV_POST_EVENT: u32 = 0x1003;
pub const EV_RC_TRIGGERED: u32 = 0x1004;
pub const EV_MMU_FAULT_QUEUED: u32 = 0x1005;
pub const EV_OS_ERROR_LOG: u32 = 0x1006;
pub const EV_UCODE_LIBOS_PRINT: u32 = 0x100c;
pub const EV_GSP_LOCKDOWN_NOTICE: u32 = 0x101c;

/// The element header (`GSP_MSG_QUEUE_ELEMENT` up to the RPC), the RPC header
/// (`rpc_message_header_v03_00`), its version and signature ("VRPC").
pub const ELEM_HDR_BYTES: usize = 0x30;
pub const RPC_HDR_BYTES: usize = 0x20;
pub const RPC_HEADER_VERSION: u32 = 0x0300_0000;
pub const RPC_SIGNATURE: u32 = 0x4350_5256;
/// A pending result, as the CPU sends it.
pub const RPC_PENDING: u32 = 0xffff_ffff;
/// The most elements of one message, and the most payload one message carries.
pub const MAX_ELEMENTS: usize = 16;
pub const MAX_PAYLOAD: usize = MAX_ELEMENTS * QUEUE_ENTRY_BYTES - ELEM_HDR_BYTES - RPC_HDR_BYTES;
/// NV_PGSP_QUEUE_HEAD(0): writing 0 tells GSP-RM that the command queue has new messages.
pub const QUEUE_HEAD0: u64 = 0x11_0c00;

/// The XOR checksum of a message: its 64-bit little-endian words XORed (zero-padded), the two
/// halves folded together.
pub fn checksum(bytes: &[u8]) -> u32 {
    let x = bytes.chunks(8).fold(0u64, |acc, c| {
        let mut w = [0u8; 8];
        w[..c.len()].copy_from_slice(c);
        acc ^ u64::from_le_bytes(w)
    });
    (x >> 32) as u32 ^ x as u32
}

/// One message: its function (or event), result and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub function: u32,
    pub result: u32,
    pub payload: Vec<u8>,
}

/// A message as queue elements (a whole number of 4 KiB entries), with sequence number `seq`.
pub fn encode(seq: u32, function: u32, result: u32, payload: &[u8]) -> Vec<u8> {
    let len = ELEM_HDR_BYTES + RPC_HDR_BYTES + payload.len();
    let count = len.div_ceil(QUEUE_ENTRY_BYTES);
    let mut e = vec![0u8; count * QUEUE_ENTRY_BYTES];
    let put = |e: &mut Vec<u8>, at: usize, v: u32| e[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(&mut e, 0x24, seq);
    put(&mut e, 0x28, count as u32);
    let r = ELEM_HDR_BYTES;
    put(&mut e, r, RPC_HEADER_VERSION);
    put(&mut e, r + 4, RPC_SIGNATURE);
    put(&mut e, r + 8, (RPC_HDR_BYTES + payload.len()) as u32);
    put(&mut e, r + 0xc, function);
    put(&mut e, r + 0x10, result);
    put(&mut e, r + 0x14, result);
    e[r + RPC_HDR_BYTES..len].copy_from_slice(payload);
    let sum = checksum(&e[..len]);
    put(&mut e, 0x20, sum);
    e
}

fn word(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
}

/// The element count a message's first entry announces (0 when it is not a message).
pub fn element_count(first: &[u8]) -> usize {
    word(first, 0x28) as usize
}

/// Reads a message back from its elements: the header's version and signature, the length
/// inside the elements, the checksum.
pub fn decode(e: &[u8]) -> Result<Message, String> {
    let r = ELEM_HDR_BYTES;
    let (version, sig, len) = (word(e, r), word(e, r + 4), word(e, r + 8) as usize);
    if version != RPC_HEADER_VERSION || sig != RPC_SIGNATURE {
        return Err(format!("a message whose RPC header reads version {version:#x}, signature {sig:#x}"));
    }
    let end = r + len;
    if len < RPC_HDR_BYTES || end > e.len() {
        return Err(format!("a message of {len} bytes in {} bytes of queue elements", e.len()));
    }
    if checksum(&e[..end]) != 0 {
        return Err(format!("a message (function {:#x}) whose checksum does not match", word(e, r + 0xc)));
    }
    Ok(Message { function: word(e, r + 0xc), result: word(e, r + 0x10), payload: e[r + RPC_HDR_BYTES..end].to_vec() })
}

/// Where a queue's parts lie in the shared buffer.
fn write_ptr(queue: usize) -> usize {
    queue + 0x10
}
fn read_ptr(queue: usize) -> usize {
    queue + QUEUE_RX_HDR
}
fn entry(queue: usize, k: u32) -> usize {
    queue + QUEUE_ENTRY_OFFSET + k as usize * QUEUE_ENTRY_BYTES
}

/// The CPU's side of the queues.
pub struct Rpc {
    /// The next command's sequence number.
    seq: u32,
    timeout: Duration,
    /// Events GSP-RM sent while the driver waited for replies.
    pub events: Vec<u32>,
}

fn fail(step: &'static str, detail: String) -> NvError {
    NvError::Step { step, detail }
}

impl Rpc {
    pub fn new(timeout: Duration) -> Rpc {
        Rpc { seq: 0, timeout, events: Vec::new() }
    }

    fn get(shared: &Paged, at: usize) -> u32 {
        word(&shared.read(at, 4), 0)
    }

    /// Sends one RPC (split into continuation records when its payload is longer than one
    /// message carries) and rings the doorbell after each message.
    pub fn send(&mut self, t: &dyn Transport, shared: &Paged, function: u32, payload: &[u8]) -> Result<(), NvError> {
        let mut parts = payload.chunks(MAX_PAYLOAD);
        let first = parts.next().unwrap_or(&[]);
        self.send_one(t, shared, function, first)?;
        for p in parts {
            self.send_one(t, shared, FN_CONTINUATION_RECORD, p)?;
        }
        Ok(())
    }

    fn send_one(&mut self, t: &dyn Transport, shared: &Paged, function: u32, payload: &[u8]) -> Result<(), NvError> {
        let e = encode(self.seq, function, RPC_PENDING, payload);
        let count = (e.len() / QUEUE_ENTRY_BYTES) as u32;
        let n = QUEUE_ENTRIES;
        let deadline = Instant::now() + self.timeout;
        let wp = loop {
            // GSP-RM keeps its read pointer of the command queue in the status queue's header.
            let (wp, rp) = (Self::get(shared, write_ptr(CMDQ_OFFSET)), Self::get(shared, read_ptr(STATQ_OFFSET)));
            if wp >= n || rp >= n {
                return Err(fail("rpc", format!("the command queue's pointers are corrupt (write {wp}, read {rp})")));
            }
            if (rp + n - wp - 1) % n >= count {
                break wp;
            }
            if Instant::now() >= deadline {
                return Err(fail("rpc", format!("GSP-RM left no room in the command queue for {:?}", self.timeout)));
            }
            chip::read(t, chip::BOOT_0)?;
            std::thread::sleep(Duration::from_micros(100));
        };
        for k in 0..count {
            let at = (k as usize) * QUEUE_ENTRY_BYTES;
            shared.write(entry(CMDQ_OFFSET, (wp + k) % n), &e[at..at + QUEUE_ENTRY_BYTES]);
        }
        shared.write(write_ptr(CMDQ_OFFSET), &((wp + count) % n).to_le_bytes());
        self.seq = self.seq.wrapping_add(1);
        t.write32(BAR_MMIO, QUEUE_HEAD0, 0).map_err(|e| fail("rpc", e))
    }

    /// Whether GSP-RM has set up its status queue (its header as `msgqTxHeader` says).
    pub fn status_queue_up(shared: &Paged) -> Result<bool, NvError> {
        let h = shared.read(STATQ_OFFSET, 0x20);
        let f = |k: usize| word(&h, 4 * k);
        if f(1) == 0 {
            return Ok(false);
        }
        let want = [0, QUEUE_BYTES as u32, QUEUE_ENTRY_BYTES as u32, QUEUE_ENTRIES];
        if [f(0), f(1), f(2), f(3)] != want || f(6) < 0x20 || f(7) != QUEUE_ENTRY_OFFSET as u32 {
            return Err(fail(
                "gsp-init",
                format!(
                    "GSP-RM's status queue header is not the expected layout: {:x?}",
                    (0..8).map(f).collect::<Vec<_>>()
                ),
            ));
        }
        Ok(true)
    }

    /// The next message from GSP-RM, if one is there.
    pub fn try_recv(&mut self, shared: &Paged) -> Result<Option<Message>, NvError> {
        let n = QUEUE_ENTRIES;
        let (wp, rp) = (Self::get(shared, write_ptr(STATQ_OFFSET)), Self::get(shared, read_ptr(CMDQ_OFFSET)));
        if wp >= n || rp >= n {
            return Err(fail("rpc", format!("the status queue's pointers are corrupt (write {wp}, read {rp})")));
        }
        if wp == rp {
            return Ok(None);
        }
        let first = shared.read(entry(STATQ_OFFSET, rp), QUEUE_ENTRY_BYTES);
        let count = element_count(&first);
        let avail = (wp + n - rp) % n;
        if count == 0 || count > MAX_ELEMENTS || count as u32 > avail {
            return Err(fail("rpc", format!("a status message of {count} elements with {avail} written")));
        }
        let mut e = first;
        for k in 1..count as u32 {
            e.extend(shared.read(entry(STATQ_OFFSET, (rp + k) % n), QUEUE_ENTRY_BYTES));
        }
        let m = decode(&e).map_err(|d| fail("rpc", format!("GSP-RM sent {d}")))?;
        shared.write(read_ptr(CMDQ_OFFSET), &((rp + count as u32) % n).to_le_bytes());
        Ok(Some(m))
    }

    /// Waits for the next message, within the timeout; the link is checked while waiting.
    pub fn recv(&mut self, t: &dyn Transport, shared: &Paged, what: &str) -> Result<Message, NvError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            if let Some(m) = self.try_recv(shared)? {
                return Ok(m);
            }
            chip::read(t, chip::BOOT_0)?;
            if Instant::now() >= deadline {
                let why = t.fault().map(|f| format!(" ({f})")).unwrap_or_default();
                return Err(fail("rpc", format!("GSP-RM sent no {what} within {:?}{why}", self.timeout)));
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

/// `GspSystemInfo`'s size in 570.144 (GSP_SET_SYSTEM_INFO's payload).
pub const SYSTEM_INFO_BYTES: usize = 0x3a0;
/// Where the PCI configuration space appears in BAR0 (`pciConfigMirrorBase`, nouveau and
/// tinygrad) and its size.
pub const PCI_CONFIG_MIRROR: u32 = 0x8_8000;

/// GSP_SET_SYSTEM_INFO's payload (`GspSystemInfo`): the BARs' bus addresses (from the
/// configuration space), the PCI ids, the configuration-space mirror and the host's page size.
pub fn system_info(t: &dyn Transport) -> Result<Vec<u8>, NvError> {
    let cfg = |off: u16, w: u8| t.config_read(off, w).map_err(|e| fail("rpc", format!("PCI configuration space: {e}")));
    let bar64 = |off: u16| -> Result<u64, NvError> {
        let lo = cfg(off, 4)?;
        let hi = if lo & 0b110 == 0b100 { cfg(off + 4, 4)? } else { 0 };
        Ok((u64::from(hi) << 32 | u64::from(lo)) & !0xf)
    };
    let mut p = vec![0u8; SYSTEM_INFO_BYTES];
    let put64 = |p: &mut Vec<u8>, at: usize, v: u64| p[at..at + 8].copy_from_slice(&v.to_le_bytes());
    let put32 = |p: &mut Vec<u8>, at: usize, v: u32| p[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put64(&mut p, 0x00, bar64(0x10)?); // gpuPhysAddr: BAR0
    put64(&mut p, 0x08, bar64(0x14)?); // gpuPhysFbAddr: BAR1
    put64(&mut p, 0x10, bar64(0x1c)?); // gpuPhysInstAddr: BAR3
    put64(&mut p, 0x48, MAX_USER_VA); // maxUserVa
    put32(&mut p, 0x50, PCI_CONFIG_MIRROR);
    put32(&mut p, 0x54, 0x1000);
    put32(&mut p, 0x58, cfg(0, 4)?); // PCIDeviceID: device << 16 | vendor
    put32(&mut p, 0x5c, cfg(0x2c, 4)?); // PCISubDeviceID: subsystem << 16 | subsystem vendor
    put32(&mut p, 0x60, cfg(0x08, 1)?); // PCIRevisionID
    Ok(p)
}

/// The largest user virtual address GSP-RM is told of (nova-core's and tinygrad's).
pub const MAX_USER_VA: u64 = 0x7fff_ffff_f000;

/// SET_REGISTRY's payload (`PACKED_REGISTRY_TABLE`): 32-bit entries, each a name inside the
/// table; tk sets what nova-core sets.
pub fn registry() -> Vec<u8> {
    let entries = [("RMSecBusResetEnable", 1u32), ("RMForcePcieConfigSave", 1), ("RMDevidCheckIgnore", 1)];
    let mut names = Vec::new();
    let head = 8 + 16 * entries.len();
    let mut p = Vec::new();
    p.extend(0u32.to_le_bytes());
    p.extend((entries.len() as u32).to_le_bytes());
    for (name, v) in entries {
        p.extend(((head + names.len()) as u32).to_le_bytes());
        p.extend([1u8, 0, 0, 0]); // a 32-bit value
        p.extend(v.to_le_bytes());
        p.extend(4u32.to_le_bytes());
        names.extend(name.bytes());
        names.push(0);
    }
    p.extend(names);
    let size = p.len() as u32;
    p[0..4].copy_from_slice(&size.to_le_bytes());
    p
}

/// CPU-sequencer opcodes (`GSP_SEQ_BUF_OPCODE`) and their payload words.
pub const SEQ_REG_WRITE: u32 = 0;
pub const SEQ_REG_MODIFY: u32 = 1;
pub const SEQ_REG_POLL: u32 = 2;
pub const SEQ_DELAY_US: u32 = 3;
pub const SEQ_REG_STORE: u32 = 4;
pub const SEQ_CORE_RESET: u32 = 5;
pub const SEQ_CORE_START: u32 = 6;
pub const SEQ_CORE_WAIT_FOR_HALT: u32 = 7;
pub const SEQ_CORE_RESUME: u32 = 8;
/// The sequencer payload's header: buffer size, words used, eight saved registers.
pub const SEQ_HDR_BYTES: usize = 0x28;

/// Runs a GSP_RUN_CPU_SEQUENCER request: register writes, read-modify-writes, polls (in
/// microseconds; 0 means 4 s, as nova-core and nouveau read it), delays and stores. The core
/// operations (reset, start, wait for halt, resume) belong to suspend and resume, which tk does
/// not do: they are refused by name. Returns the number of commands run.
pub fn run_sequencer(t: &dyn Transport, payload: &[u8], timeout: Duration) -> Result<usize, NvError> {
    let bad = |d: String| fail("gsp-init", format!("GSP-RM's CPU sequence: {d}"));
    if payload.len() < SEQ_HDR_BYTES {
        return Err(bad(format!("{} bytes, shorter than its header", payload.len())));
    }
    let used = word(payload, 4) as usize;
    let words: Vec<u32> = payload[SEQ_HDR_BYTES..].chunks_exact(4).map(|w| word(w, 0)).collect();
    if used > words.len() {
        return Err(bad(format!("{used} words announced, {} sent", words.len())));
    }
    let mut save = [0u32; 8];
    let (mut i, mut ran) = (0, 0);
    let rd = |a: u32| -> Result<u32, NvError> { Ok(chip::read(t, u64::from(a))?) };
    let wr = |a: u32, v: u32| t.write32(BAR_MMIO, u64::from(a), v).map_err(|e| fail("gsp-init", e));
    while i < used {
        let op = words[i];
        let n = match op {
            SEQ_REG_WRITE | SEQ_REG_STORE => 2,
            SEQ_REG_MODIFY => 3,
            SEQ_REG_POLL => 5,
            SEQ_DELAY_US => 1,
            SEQ_CORE_RESET | SEQ_CORE_START | SEQ_CORE_WAIT_FOR_HALT | SEQ_CORE_RESUME => {
                return Err(bad(format!(
                    "opcode {op} (a GSP core reset, start, halt wait or resume) belongs to suspend and resume, which tk \
                     does not support"
                )));
            }
            _ => return Err(bad(format!("unknown opcode {op} at word {i}"))),
        };
        let a = words.get(i + 1..i + 1 + n).ok_or_else(|| bad(format!("opcode {op} at word {i} is cut short")))?;
        match op {
            SEQ_REG_WRITE => wr(a[0], a[1])?,
            SEQ_REG_MODIFY => wr(a[0], (rd(a[0])? & !a[1]) | a[2])?,
            SEQ_REG_POLL => {
                let us = if a[3] == 0 { 4_000_000 } else { u64::from(a[3]) };
                let limit = Duration::from_micros(us).min(timeout);
                let deadline = Instant::now() + limit;
                loop {
                    let v = rd(a[0])?;
                    if v & a[1] == a[2] {
                        break;
                    }
                    if Instant::now() >= deadline {
                        return Err(bad(format!(
                            "register {:#x} reads {v:#x}, not {:#x} under mask {:#x}, after {limit:?} (error code {:#x})",
                            a[0], a[2], a[1], a[4]
                        )));
                    }
                    std::thread::sleep(Duration::from_micros(10));
                }
            }
            SEQ_DELAY_US => std::thread::sleep(Duration::from_micros(u64::from(a[0]))),
            _ => {
                let slot = save.get_mut(a[1] as usize).ok_or_else(|| bad(format!("a store to save slot {}", a[1])))?;
                *slot = rd(a[0])?;
            }
        }
        i += 1 + n;
        ran += 1;
    }
    Ok(ran)
}

/// What GSP-RM's initialisation took: the CPU sequences served and their commands, and the
/// other events that came before GSP_INIT_DONE.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitReport {
    pub sequences: usize,
    pub commands: usize,
    pub events: Vec<u32>,
}

/// The `gsp-init` step: waits for GSP-RM's status queue, serves its CPU-sequencer requests and
/// waits for GSP_INIT_DONE, all within `timeout`.
pub fn wait_init_done(
    t: &dyn Transport,
    shared: &Paged,
    rpc: &mut Rpc,
    timeout: Duration,
) -> Result<InitReport, NvError> {
    let deadline = Instant::now() + timeout;
    while !Rpc::status_queue_up(shared)? {
        chip::read(t, chip::BOOT_0)?;
        if Instant::now() >= deadline {
            let why = t.fault().map(|f| format!(" ({f})")).unwrap_or_default();
            return Err(fail("gsp-init", format!("GSP-RM did not set up its status queue within {timeout:?}{why}")));
        }
        std::thread::sleep(Duration::from_micros(100));
    }
    let mut r = InitReport::default();
    loop {
        let m = rpc.recv(t, shared, "GSP_INIT_DONE")?;
        match m.function {
            EV_GSP_RUN_CPU_SEQUENCER => {
                r.commands += run_sequencer(t, &m.payload, timeout)?;
                r.sequences += 1;
            }
            EV_GSP_INIT_DONE if m.result != 0 => {
                return Err(fail(
                    "gsp-init",
                    format!("GSP-RM reports its initialisation failed (status {:#x})", m.result),
                ));
            }
            EV_GSP_INIT_DONE => return Ok(r),
            e => r.events.push(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_checksums_catch_damage() {
        let e = encode(3, FN_SET_REGISTRY, RPC_PENDING, b"payload bytes");
        assert_eq!(e.len(), QUEUE_ENTRY_BYTES);
        assert_eq!(element_count(&e), 1);
        let m = decode(&e).expect("decodes");
        assert_eq!((m.function, m.result, m.payload.as_slice()), (FN_SET_REGISTRY, RPC_PENDING, &b"payload bytes"[..]));
        let mut bad = e.clone();
        bad[0x55] ^= 1;
        assert!(decode(&bad).is_err_and(|d| d.contains("checksum")));
        // A payload over one entry takes several.
        let big = vec![7u8; 3 * QUEUE_ENTRY_BYTES];
        let e = encode(0, FN_GSP_RM_ALLOC, 0, &big);
        assert_eq!(element_count(&e), 4);
        assert_eq!(decode(&e).expect("decodes").payload, big);
    }

    #[test]
    fn the_checksum_folds_xor_of_words() {
        let mut b = vec![0u8; 16];
        b[0..8].copy_from_slice(&0x1111_2222_0000_0001u64.to_le_bytes());
        b[8..16].copy_from_slice(&0x0000_0001_3333_0000u64.to_le_bytes());
        assert_eq!(checksum(&b), (0x1111_2223u32) ^ 0x3333_0001);
    }
}
