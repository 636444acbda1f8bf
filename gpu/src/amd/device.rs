//! The AMD driver proper, for a GPU whose firmware is running: the page tables of VMID 0, a VRAM
//! allocator whose allocations are mapped at [`VA_BASE`] + offset, one compute queue (a PM4 ring
//! in system memory, bound through the HQD registers, rung through its doorbell) with a
//! RELEASE_MEM fence, DMA copies through a staging area, and the dispatch sequence of
//! docs/driver.md. The runtime's `amd:*` device is a thin layer over [`AmdGpu`].

use super::discovery::{self, Discovery};
use super::gmc::{self, PAGE, Phys};
use super::pm4::Packet;
use super::regs::*;
use super::{BAR_DOORBELL, BAR_MMIO, BAR_VRAM};
use crate::memory::Heap;
use crate::queue::{CommandQueue, GpuError};
use crate::transport::{SysMem, Transport};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Where VRAM offset 0 appears in the GPU's virtual address space.
pub const VA_BASE: u64 = 0x1000_0000_0000;
/// Where the driver's system memory appears in the GPU's virtual address space.
pub const SYS_VA: u64 = 0x2000_0000_0000;
/// The layout of the driver's system memory: the ring, the fence, the error slots, the kernel
/// arguments and the staging area for DMA copies.
const SYS_RING: u64 = 0;
const SYS_FENCE: u64 = 4 << RING_LOG2;
const SYS_ERRORS: u64 = SYS_FENCE + PAGE;
const SYS_KERNARG: u64 = SYS_ERRORS + PAGE;
const SYS_STAGING: u64 = SYS_KERNARG + PAGE;
/// Bytes of the staging area: larger copies go in pieces.
pub const STAGING: u64 = 4 << 20;
/// The PM4 ring: 2^14 dwords.
const RING_LOG2: u32 = 14;
/// The doorbell of tk's queue (a byte offset in the doorbell BAR).
const DOORBELL: u64 = 0x8;
/// The smallest VRAM the driver works with.
const MIN_VRAM: u64 = 64 << 20;

struct State {
    heap: Heap,
    root: u64,
    wptr: u64,
    seq: u64,
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

/// Physical memory of the GPU through the transport (page-table writes).
struct Bar<'a>(&'a dyn Transport);

impl Phys for Bar<'_> {
    fn read_u64(&mut self, pa: u64) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.0.read_bytes(BAR_VRAM, pa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn write_u64(&mut self, pa: u64, v: u64) -> Result<(), String> {
        self.0.write_bytes(BAR_VRAM, pa, &v.to_le_bytes())
    }
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
            && let Ok(mut st) = d.st.lock()
        {
            let root = st.root;
            for p in (0..self.bytes.max(1)).step_by(PAGE as usize) {
                let _ = gmc::unmap(&mut Bar(d.t.as_ref()), root, VA_BASE + self.pa + p);
            }
            st.heap.release(self.pa, self.bytes);
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
}

/// What a GPU that stopped answering is reported as.
pub const LINK_LOST: &str = "the GPU stopped answering: the Thunderbolt link dropped or the enclosure lost power";

/// Whether the GPU is gone: its PCI vendor id reads as all ones (or cannot be read at all). An
/// all-ones register read is confirmed this way before it is taken for a lost link.
pub fn link_gone(t: &dyn Transport) -> bool {
    matches!(t.config_read(0, 2), Ok(0xffff) | Err(_))
}

/// The bound on every wait for the GPU: `TK_GPU_TIMEOUT_MS` (the same for every GPU driver),
/// else the older `TK_AMD_TIMEOUT_MS`, else 20 s.
fn default_timeout() -> Duration {
    let ms = ["TK_GPU_TIMEOUT_MS", "TK_AMD_TIMEOUT_MS"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.parse().ok()))
        .unwrap_or(20_000);
    Duration::from_millis(ms)
}

/// Whether `TK_LOG` asks for the driver's log (`TK_LOG=driver`, or a comma-separated list that
/// holds `driver`).
fn logging() -> bool {
    std::env::var("TK_LOG").is_ok_and(|v| v.split(',').any(|x| x.trim() == "driver"))
}

/// One line of the driver's log on stderr: `driver: STEP: what it did`.
fn log(step: &str, what: impl FnOnce() -> String) {
    if logging() {
        eprintln!("driver: {step}: {}", what());
    }
}

impl AmdGpu {
    /// Sets up the page tables and the compute queue on a GPU whose firmware is running.
    pub fn open(t: Box<dyn Transport>) -> Result<AmdGpu, GpuError> {
        let setup = |what: &str, m: String| GpuError::Setup(format!("{what}: {m}"));
        // The driver manages the VRAM its BAR reaches (IP discovery will give the whole size).
        let vram = t.bar_size(BAR_VRAM).map_err(|m| setup("reading the VRAM BAR's size", m))?;
        if vram < MIN_VRAM {
            return Err(GpuError::Setup(format!(
                "the VRAM BAR has {vram} bytes; the driver needs at least {} MiB",
                MIN_VRAM >> 20
            )));
        }
        // IP discovery: the GPU must be one whose registers tk knows, where tk's register table
        // puts them. The table's 64 KiB at the end of VRAM stay out of the heap.
        let found = discovery::read(t.as_ref(), vram).map_err(|m| {
            if link_gone(t.as_ref()) { GpuError::Link(LINK_LOST.into()) } else { setup("IP discovery", m) }
        })?;
        let target = found.gfx_target().map_err(|m| setup("IP discovery", m))?;
        log("discovery", || {
            format!(
                "{target}: {} IP blocks, table version {}, read 64 KiB below the end of the {} MiB VRAM BAR",
                found.ips.len(),
                found.ip_version,
                vram >> 20
            )
        });
        let gc = found.base(discovery::GC).map_err(|m| setup("IP discovery", m))?;
        if gc != u64::from(GC_BASE) {
            return Err(setup(
                "IP discovery",
                format!(
                    "the GC registers start at dword 0x{gc:x}, not at 0x{GC_BASE:x} where tk's register table (Navi 31's) \
                     has them"
                ),
            ));
        }
        let st = State { heap: Heap::new(vram - discovery::TABLE_OFFSET_FROM_END, PAGE), root: 0, wptr: 0, seq: 0 };
        let sys = t.sysmem((SYS_STAGING + STAGING) as usize).map_err(|m| setup("allocating system memory", m))?;
        if (sys.mem.len() as u64) < SYS_STAGING + STAGING {
            return Err(GpuError::Setup("the transport gave less system memory than asked for".into()));
        }
        let gpu = AmdGpu {
            d: Arc::new(Shared { t, st: Mutex::new(st), lost: AtomicBool::new(false), io: Mutex::new(()), sys }),
            timeout: default_timeout(),
            discovery: found,
        };
        gpu.init().map_err(GpuError::Setup)?;
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

    fn init(&self) -> Result<(), String> {
        let t = self.d.t.as_ref();
        let mut st = self.d.st.lock().map_err(|_| "poisoned")?;
        let zero_page = |st: &mut State| -> Result<u64, String> {
            let p = st.heap.alloc(PAGE).ok_or("VRAM is full")?;
            t.write_bytes(BAR_VRAM, p, &[0; PAGE as usize])?;
            Ok(p)
        };
        st.root = zero_page(&mut st)?;
        self.d.sys.mem.with(&mut |m: &mut [u8]| m.fill(0));
        // Map the system memory page by page to its bus addresses (snooped: the CPU's caches
        // stay coherent).
        let flags = PTE_SYSTEM | PTE_SNOOPED | PTE_READABLE | PTE_WRITEABLE;
        for p in (0..SYS_STAGING + STAGING).step_by(PAGE as usize) {
            let bus = self.d.sys.bus(p).ok_or("the system memory's segments are shorter than it")?;
            if bus % PAGE != 0 {
                return Err(format!("system memory segment at bus address {bus:#x} is not page aligned"));
            }
            let root = st.root;
            let mut alloc = || zero_page(&mut st);
            gmc::map(&mut Bar(t), root, SYS_VA + p, bus, flags, &mut alloc)?;
        }
        log("gmc", || {
            format!(
                "VM context 0: 4-level page table at VRAM 0x{:x}; {} KiB of system memory mapped at 0x{SYS_VA:x}",
                st.root,
                (SYS_STAGING + STAGING) >> 10
            )
        });
        let w = |r: Reg, v: u32| t.write32(BAR_MMIO, u64::from(mmio_byte(r)), v);
        w(GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32, st.root as u32 | PTE_VALID as u32)?;
        w(GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32, (st.root >> 32) as u32)?;
        // Four levels: PAGE_TABLE_DEPTH 3.
        w(GCVM_CONTEXT0_CNTL, VM_CONTEXT_ENABLE | 3 << VM_PAGE_TABLE_DEPTH_SHIFT)?;
        let ring_va = SYS_VA + SYS_RING;
        w(CP_HQD_VMID, 0)?;
        w(CP_HQD_PQ_BASE, (ring_va >> 8) as u32)?;
        w(CP_HQD_PQ_BASE_HI, (ring_va >> 40) as u32)?;
        w(CP_HQD_PQ_RPTR, 0)?;
        w(CP_HQD_PQ_CONTROL, RING_LOG2 - 1)?;
        w(CP_HQD_PQ_DOORBELL_CONTROL, (DOORBELL as u32 & DOORBELL_OFFSET_MASK) | DOORBELL_EN)?;
        w(CP_HQD_ACTIVE, 1)?;
        log("queue", || {
            format!(
                "compute queue (MEC me 1, pipe 0, queue 0) active: a {} KiB ring at 0x{ring_va:x}, doorbell 0x{DOORBELL:x}",
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

    /// Allocates VRAM and maps it with the PTE `flags` (readable, writeable, executable).
    pub fn alloc(&self, bytes: u64, flags: u64) -> Result<Vram, GpuError> {
        self.check_lost()?;
        let t = self.d.t.as_ref();
        let mut st = self.d.state()?;
        let pa = st.heap.alloc(bytes).ok_or(GpuError::OutOfMemory(bytes))?;
        let root = st.root;
        let mut tables_full = false;
        let mut failed = None;
        for p in (0..bytes.max(1)).step_by(PAGE as usize) {
            let mut alloc = || -> Result<u64, String> {
                let Some(p) = st.heap.alloc(PAGE) else {
                    tables_full = true;
                    return Err("no VRAM is left for page tables".into());
                };
                t.write_bytes(BAR_VRAM, p, &[0; PAGE as usize])?;
                Ok(p)
            };
            if let Err(m) = gmc::map(&mut Bar(t), root, VA_BASE + pa + p, pa + p, flags, &mut alloc) {
                failed = Some((p, m));
                break;
            }
        }
        let Some((done, m)) = failed else { return Ok(Vram { pa, bytes, dev: Arc::downgrade(&self.d) }) };
        if !tables_full {
            // The transport failed: the device is gone.
            return Err(self.note(GpuError::Link(m)));
        }
        // Out of VRAM for page tables: undo this allocation; the device stays usable.
        for p in (0..done).step_by(PAGE as usize) {
            let _ = gmc::unmap(&mut Bar(t), root, VA_BASE + pa + p);
        }
        st.heap.release(pa, bytes);
        Err(GpuError::OutOfMemory(bytes))
    }

    /// Copies host bytes to GPU memory at `va`: through the staging area, by the command
    /// processor's DMA (one submission per staging-sized piece).
    pub fn upload(&self, va: u64, src: &[u8]) -> Result<(), GpuError> {
        self.check_lost()?;
        let _io = self.d.io.lock().map_err(|_| GpuError::Lost)?;
        for (k, piece) in src.chunks(STAGING as usize).enumerate() {
            self.d.sys_write(SYS_STAGING, piece);
            let dst = va + k as u64 * STAGING;
            self.run(&[Packet::DmaData { src: SYS_VA + SYS_STAGING, dst, bytes: piece.len() as u32 }])?;
        }
        Ok(())
    }

    /// Copies GPU memory at `va` to the host, the other way.
    pub fn download(&self, va: u64, dst: &mut [u8]) -> Result<(), GpuError> {
        self.check_lost()?;
        let _io = self.d.io.lock().map_err(|_| GpuError::Lost)?;
        for (k, piece) in dst.chunks_mut(STAGING as usize).enumerate() {
            let src = va + k as u64 * STAGING;
            self.run(&[Packet::DmaData { src, dst: SYS_VA + SYS_STAGING, bytes: piece.len() as u32 }])?;
            self.d.sys_read(SYS_STAGING, piece);
        }
        Ok(())
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
        let t = self.d.t.as_ref();
        let start = Instant::now();
        let mut checked = Instant::now();
        loop {
            if self.fence() >= value {
                return Ok(());
            }
            // Asking the device about faults, and whether it still answers, are round trips:
            // not on every poll.
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
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}
