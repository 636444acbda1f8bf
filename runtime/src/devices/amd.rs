//! The `amd:N` device: tk's userspace driver for an RDNA3 GPU behind a [`Transport`]. It keeps
//! one compute queue (a PM4 ring in VRAM, bound through the HQD registers, rung through its
//! doorbell), the page tables of VMID 0, a VRAM allocator whose allocations are mapped at
//! `VA_BASE + offset`, and launches each kernel with the sequence of docs/driver.md, then polls
//! the RELEASE_MEM fence with a timeout: a GPU that does not answer is a lost device (exit code
//! 3), never a hang. `amd:sim` is tk-sim's simulated GPU (`tk_sim::pcie::amd`).

use crate::device::{Buffer, Code, CodeKind, Device, Event, Executable, Queue};
use crate::error::RunError;
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tk_abi::launch::{AmdTarget, GpuKernel};
use tk_gpu::amd::gmc::{self, PAGE, Phys};
use tk_gpu::amd::pm4::Packet;
use tk_gpu::amd::regs::*;
use tk_gpu::amd::{BAR_DOORBELL, BAR_MMIO, BAR_VRAM};
use tk_gpu::transport::*;
use tk_ir::kernel::Kernel;

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

/// The VRAM allocator: first fit over free ranges.
struct Heap {
    free: BTreeMap<u64, u64>,
}

impl Heap {
    fn alloc(&mut self, bytes: u64) -> Option<u64> {
        let n = bytes.max(1).next_multiple_of(PAGE);
        let (&at, &len) = self.free.iter().find(|(_, l)| **l >= n)?;
        self.free.remove(&at);
        if len > n {
            self.free.insert(at + n, len - n);
        }
        Some(at)
    }
    fn release(&mut self, at: u64, bytes: u64) {
        let n = bytes.max(1).next_multiple_of(PAGE);
        self.free.insert(at, n);
        // Merge with the neighbours.
        let next = self.free.range(at + n..).next().map(|(a, l)| (*a, *l));
        if let Some((a, l)) = next.filter(|(a, _)| *a == at + n) {
            self.free.remove(&a);
            self.free.insert(at, n + l);
        }
        let prev = self.free.range(..at).next_back().map(|(a, l)| (*a, *l));
        if let Some((a, l)) = prev.filter(|(a, l)| a + l == at) {
            let cur = self.free.remove(&at).unwrap_or(n);
            self.free.insert(a, l + cur);
        }
    }
}

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

/// A VRAM allocation, mapped at `VA_BASE + pa`; freed (and unmapped) when dropped.
struct AmdMem {
    pa: u64,
    bytes: u64,
    dev: Weak<Shared>,
}

impl AmdMem {
    fn va(&self) -> u64 {
        VA_BASE + self.pa
    }
}

impl Drop for AmdMem {
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

/// A kernel uploaded to VRAM: where its code is and its descriptor's registers.
struct Loaded {
    code_va: u64,
    rsrc: [u32; 3],
    lds: u32,
}

pub struct AmdExecutable {
    _code: AmdMem,
    kernels: Vec<Kernel>,
    infos: Vec<GpuKernel>,
    loaded: Vec<Loaded>,
}

impl Executable for AmdExecutable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.kernels.len()
    }
}

pub struct AmdDevice {
    name: String,
    target: AmdTarget,
    d: Arc<Shared>,
    timeout: Duration,
}

fn timeout() -> Duration {
    let ms = std::env::var("TK_AMD_TIMEOUT_MS").ok().and_then(|s| s.parse().ok()).unwrap_or(20_000);
    Duration::from_millis(ms)
}

impl AmdDevice {
    /// Opens `amd:sim`, the simulated GPU.
    #[cfg(feature = "sim")]
    pub fn open_sim() -> Result<AmdDevice, RunError> {
        Self::open("amd:sim", Box::new(tk_sim::pcie::amd::SimGpu::new()), AmdTarget::ALL[0])
    }

    /// Sets up the queue and page tables on a GPU whose firmware is running.
    pub fn open(name: &str, t: Box<dyn Transport>, target: AmdTarget) -> Result<AmdDevice, RunError> {
        let bad = |m: String| RunError::Device { device: name.to_string(), message: m };
        // The driver manages the VRAM its BAR reaches (IP discovery will give the whole size).
        let vram = t.bar_size(BAR_VRAM).map_err(|m| bad(format!("reading the VRAM BAR's size: {m}")))?;
        if vram < 64 << 20 {
            return Err(bad(format!("the VRAM BAR has {vram} bytes; the driver needs at least 64 MiB")));
        }
        let mut heap = Heap { free: BTreeMap::new() };
        heap.free.insert(0, vram);
        let st = State { heap, root: 0, wptr: 0, seq: 0 };
        let sys =
            t.sysmem((SYS_STAGING + STAGING) as usize).map_err(|m| bad(format!("allocating system memory: {m}")))?;
        if (sys.mem.len() as u64) < SYS_STAGING + STAGING {
            return Err(bad("the transport gave less system memory than asked for".into()));
        }
        let dev = AmdDevice {
            name: name.to_string(),
            target,
            d: Arc::new(Shared { t, st: Mutex::new(st), lost: AtomicBool::new(false), io: Mutex::new(()), sys }),
            timeout: timeout(),
        };
        dev.init().map_err(|m| dev.err(format!("setting up the GPU: {m}")))?;
        Ok(dev)
    }

    /// Requests the transport has made (round trips to the device).
    pub fn round_trips(&self) -> u64 {
        self.d.t.round_trips()
    }

    /// How long a launch may take before the device counts as lost.
    pub fn with_timeout(mut self, t: Duration) -> AmdDevice {
        self.timeout = t;
        self
    }

    fn err(&self, m: impl Into<String>) -> RunError {
        RunError::Device { device: self.name.clone(), message: m.into() }
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
        Ok(())
    }

    fn check_lost(&self) -> Result<(), RunError> {
        if self.d.lost.load(Ordering::SeqCst) {
            return Err(self.err("the device was lost after an earlier failure; open it again"));
        }
        Ok(())
    }

    fn lose(&self, m: String) -> RunError {
        self.d.lost.store(true, Ordering::SeqCst);
        self.err(m)
    }

    /// Allocates and maps VRAM.
    fn vram(&self, bytes: u64, flags: u64) -> Result<AmdMem, RunError> {
        let t = self.d.t.as_ref();
        let mut st = self.d.st.lock().map_err(|_| self.err("a lock was poisoned"))?;
        let pa = st.heap.alloc(bytes).ok_or_else(|| self.err(format!("out of VRAM allocating {bytes} bytes")))?;
        let root = st.root;
        for p in (0..bytes.max(1)).step_by(PAGE as usize) {
            let mut alloc = || -> Result<u64, String> {
                let p = st.heap.alloc(PAGE).ok_or("VRAM is full")?;
                t.write_bytes(BAR_VRAM, p, &[0; PAGE as usize])?;
                Ok(p)
            };
            gmc::map(&mut Bar(t), root, VA_BASE + pa + p, pa + p, flags, &mut alloc).map_err(|m| self.err(m))?;
        }
        Ok(AmdMem { pa, bytes, dev: Arc::downgrade(&self.d) })
    }

    /// Copies host bytes to GPU memory at `va`: through the staging area, by the command
    /// processor's DMA (one submission per staging-sized piece).
    fn dma_to(&self, va: u64, src: &[u8]) -> Result<(), RunError> {
        let _io = self.d.io.lock().map_err(|_| self.err("a lock was poisoned"))?;
        for (k, piece) in src.chunks(STAGING as usize).enumerate() {
            self.d.sys_write(SYS_STAGING, piece);
            let dst = va + k as u64 * STAGING;
            self.submit(&[Packet::DmaData { src: SYS_VA + SYS_STAGING, dst, bytes: piece.len() as u32 }])?;
        }
        Ok(())
    }

    /// Copies GPU memory at `va` to the host, the other way.
    fn dma_from(&self, va: u64, dst: &mut [u8]) -> Result<(), RunError> {
        let _io = self.d.io.lock().map_err(|_| self.err("a lock was poisoned"))?;
        for (k, piece) in dst.chunks_mut(STAGING as usize).enumerate() {
            let src = va + k as u64 * STAGING;
            self.submit(&[Packet::DmaData { src, dst: SYS_VA + SYS_STAGING, bytes: piece.len() as u32 }])?;
            self.d.sys_read(SYS_STAGING, piece);
        }
        Ok(())
    }

    /// Writes packets to the ring, rings the doorbell and waits for the fence.
    fn submit(&self, packets: &[Packet]) -> Result<(), RunError> {
        let t = self.d.t.as_ref();
        let mut st = self.d.st.lock().map_err(|_| self.err("a lock was poisoned"))?;
        st.seq += 1;
        let seq = st.seq;
        let mut words = Vec::new();
        for p in packets {
            p.encode(&mut words);
        }
        Packet::ReleaseMem { addr: SYS_VA + SYS_FENCE, value: seq }.encode(&mut words);
        let size = 1u64 << RING_LOG2;
        for (k, w) in words.iter().enumerate() {
            let at = (st.wptr + k as u64) % size;
            self.d.sys_write(SYS_RING + at * 4, &w.to_le_bytes());
        }
        st.wptr += words.len() as u64;
        // The doorbell: the only round trip of a submission.
        t.write64(BAR_DOORBELL, DOORBELL, st.wptr).map_err(|m| self.lose(m))?;
        drop(st);
        let start = Instant::now();
        let limit = self.timeout;
        let mut checked = Instant::now();
        loop {
            let mut b = [0u8; 8];
            self.d.sys_read(SYS_FENCE, &mut b);
            if u64::from_le_bytes(b) >= seq {
                return Ok(());
            }
            // Asking the device about faults is a round trip: not on every poll.
            if checked.elapsed() > Duration::from_millis(20) {
                checked = Instant::now();
                if let Some(f) = t.fault() {
                    return Err(self.lose(format!("the GPU faulted: {f}")));
                }
            }
            if start.elapsed() > limit {
                return Err(self.lose(format!(
                    "the GPU did not finish the launch within {} ms (TK_AMD_TIMEOUT_MS); the device is lost",
                    limit.as_millis()
                )));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
}

fn amd_mem(b: &Buffer) -> Option<&AmdMem> {
    b.mem.downcast_ref::<AmdMem>()
}

impl Device for AmdDevice {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn target(&self) -> String {
        format!("{} (simulated PCIe GPU: page tables, PM4 queue, RDNA3 emulator)", self.target)
    }
    fn compile_target(&self) -> tk_abi::target::Target {
        tk_abi::target::Target::Amd(self.target)
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer, RunError> {
        self.check_lost()?;
        let m = self.vram(bytes as u64, PTE_READABLE | PTE_WRITEABLE)?;
        Ok(Buffer::new(Arc::new(m), bytes))
    }
    fn queue(&self) -> Queue {
        Queue { id: 0 }
    }
    fn write(&self, _q: &Queue, dst: &Buffer, src: &[u8]) -> Result<(), RunError> {
        self.check_lost()?;
        let m = amd_mem(dst).ok_or_else(|| self.err("a buffer of another device"))?;
        let n = src.len().min(dst.bytes());
        self.dma_to(m.va(), &src[..n])
    }
    fn read(&self, _q: &Queue, src: &Buffer, dst: &mut [u8]) -> Result<(), RunError> {
        self.check_lost()?;
        let m = amd_mem(src).ok_or_else(|| self.err("a buffer of another device"))?;
        let n = dst.len().min(src.bytes());
        self.dma_from(m.va(), &mut dst[..n])
    }
    fn copy(&self, q: &Queue, src: &Buffer, dst: &Buffer) -> Result<(), RunError> {
        if Arc::ptr_eq(&src.mem, &dst.mem) {
            return Ok(());
        }
        let mut tmp = vec![0u8; src.bytes().min(dst.bytes())];
        self.read(q, src, &mut tmp)?;
        self.write(q, dst, &tmp)
    }
    fn accepts(&self) -> &'static [CodeKind] {
        &[CodeKind::Hsaco]
    }
    fn load(&self, kernels: &[Kernel], code: Code<'_>) -> Result<Arc<dyn Executable>, RunError> {
        self.check_lost()?;
        let Code::Hsaco(bytes) = code else {
            return Err(self.err(format!("an AMD GPU runs AMD code objects, not {}", code.kind().describe())));
        };
        let obj = tk_abi::amd::read_code(bytes).map_err(|m| self.err(format!("the code object: {m}")))?;
        let mem = self.vram(obj.text.len() as u64, PTE_READABLE | PTE_WRITEABLE | PTE_EXECUTABLE)?;
        self.dma_to(mem.va(), &obj.text)?;
        let mut infos = Vec::new();
        let mut loaded = Vec::new();
        for k in kernels {
            let info =
                tk_abi::launch::gpu_kernel(k, &k.name).map_err(|message| RunError::Compile { message, loc: k.loc })?;
            let e = obj
                .kernels
                .iter()
                .find(|e| e.name == info.name)
                .ok_or_else(|| self.err(format!("the code object has no kernel `{}`", info.name)))?;
            // COMPUTE_PGM_LO holds the address >> 8: the code must start on 256 bytes.
            if !e.offset.is_multiple_of(256) {
                return Err(self.err(format!("kernel `{}`: its code is not 256-byte aligned in .text", e.name)));
            }
            let d = &e.descriptor;
            loaded.push(Loaded {
                code_va: mem.va() + e.offset,
                rsrc: [d.compute_pgm_rsrc1, d.compute_pgm_rsrc2, d.compute_pgm_rsrc3],
                lds: d.group_segment_fixed_size,
            });
            infos.push(info);
        }
        Ok(Arc::new(AmdExecutable { _code: mem, kernels: kernels.to_vec(), infos, loaded }))
    }
    fn launch(
        &self,
        _q: &Queue,
        exe: &Arc<dyn Executable>,
        k: usize,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
    ) -> Result<(), RunError> {
        self.check_lost()?;
        let exe = exe.as_any().downcast_ref::<AmdExecutable>().ok_or_else(|| self.err("not an AMD executable"))?;
        let (Some(info), Some(kernel), Some(l)) = (exe.infos.get(k), exe.kernels.get(k), exe.loaded.get(k)) else {
            return Err(self.err(format!("no device kernel {k}")));
        };
        if bufs.len() != kernel.bufs.len() {
            return Err(self.err(format!("kernel {k} takes {} buffers, got {}", kernel.bufs.len(), bufs.len())));
        }
        let g = tk_abi::grid::grid(&info.launch, dims, tk_abi::grid::GPU_MAX_BLOCKS);
        let errors = SYS_VA + SYS_ERRORS;
        let mut addresses = Vec::with_capacity(bufs.len());
        for b in bufs {
            addresses.push(amd_mem(b).ok_or_else(|| self.err("a buffer of another device"))?.va());
        }
        let mut symbols = Vec::with_capacity(info.symbols.len());
        for s in &info.symbols {
            symbols.push(*dims.get(s).ok_or_else(|| self.err(format!("dimension `{s}` has no value")))?);
        }
        let args = tk_abi::amd::kernargs(&addresses, &symbols, errors, g.blocks);
        if args.len() as u64 > PAGE {
            return Err(self.err(format!("kernel {k} has {} bytes of arguments; at most {PAGE}", args.len())));
        }
        // The arguments and error slots are the driver's (one launch at a time). Scalar loads
        // read whole blocks past the arguments: the segment is a page.
        let _io = self.d.io.lock().map_err(|_| self.err("a lock was poisoned"))?;
        let kernarg = SYS_VA + SYS_KERNARG;
        self.d.sys_write(SYS_KERNARG, &args);
        self.d.sys_write(SYS_ERRORS, &[0; 32]);
        let lds = l.lds.div_ceil(LDS_GRANULE);
        let rsrc2 = l.rsrc[1] | (lds & RSRC2_LDS_MASK) << RSRC2_LDS_SHIFT;
        let sh = |reg: u32, values: Vec<u32>| Packet::SetShReg { reg, values };
        let packets = [
            Packet::AcquireMem,
            sh(COMPUTE_PGM_LO, vec![(l.code_va >> 8) as u32, (l.code_va >> 40) as u32]),
            sh(COMPUTE_PGM_RSRC1, vec![l.rsrc[0], rsrc2]),
            sh(COMPUTE_PGM_RSRC3, vec![l.rsrc[2]]),
            sh(COMPUTE_TMPRING_SIZE, vec![0]),
            sh(COMPUTE_USER_DATA_0, vec![kernarg as u32, (kernarg >> 32) as u32]),
            sh(COMPUTE_RESOURCE_LIMITS, vec![0]),
            sh(COMPUTE_START_X, vec![0, 0, 0]),
            sh(COMPUTE_NUM_THREAD_X, vec![g.threads, 1, 1]),
            Packet::DispatchDirect {
                x: g.blocks,
                y: 1,
                z: 1,
                initiator: DISPATCH_COMPUTE_SHADER_EN | DISPATCH_FORCE_START_AT_000 | DISPATCH_CS_W32_EN,
            },
        ];
        self.submit(&packets).map_err(|e| match e {
            RunError::Device { device, message } if message.contains("faulted") => {
                RunError::Fault { device, message: format!("{message} (device kernel {k})"), loc: kernel.loc }
            }
            e => e,
        })?;
        let mut err = [0u8; tk_abi::check::GPU_SLOTS];
        self.d.sys_read(SYS_ERRORS, &mut err);
        RunError::check(tk_abi::check::decode_gpu(&err, &info.checks, dims))
    }
    fn record(&self, _q: &Queue) -> Event {
        Event::now()
    }
    fn wait(&self, _e: &Event) -> Result<(), RunError> {
        Ok(())
    }
    fn synchronize(&self, _q: &Queue) -> Result<(), RunError> {
        self.check_lost()
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use tk_sim::pcie::amd::SimGpu;

    /// A GPU that hangs: doorbells never reach the command processor.
    struct Hung(SimGpu);
    impl Transport for Hung {
        fn name(&self) -> String {
            "hung".into()
        }
        fn read32(&self, bar: u8, off: u64) -> Result<u32, String> {
            self.0.read32(bar, off)
        }
        fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
            self.0.write32(bar, off, v)
        }
        fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String> {
            if bar == BAR_DOORBELL { Ok(()) } else { self.0.write64(bar, off, v) }
        }
        fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String> {
            self.0.read_bytes(bar, off, out)
        }
        fn write_bytes(&self, bar: u8, off: u64, src: &[u8]) -> Result<(), String> {
            self.0.write_bytes(bar, off, src)
        }
        fn round_trips(&self) -> u64 {
            self.0.round_trips()
        }
        fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
            self.0.sysmem(bytes)
        }
        fn config_read(&self, offset: u16, width: u8) -> Result<u32, String> {
            self.0.config_read(offset, width)
        }
        fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String> {
            self.0.config_write(offset, width, value)
        }
        fn reset(&self) -> Result<(), String> {
            self.0.reset()
        }
        fn bar_size(&self, bar: u8) -> Result<u64, String> {
            self.0.bar_size(bar)
        }
    }

    #[test]
    fn a_hung_gpu_is_a_lost_device_and_can_be_reopened() {
        let dev = AmdDevice::open("amd:hung", Box::new(Hung(SimGpu::new())), AmdTarget::ALL[0])
            .expect("opens")
            .with_timeout(Duration::from_millis(200));
        let start = Instant::now();
        let e = dev.submit(&[Packet::Nop(1)]).expect_err("times out");
        assert!(start.elapsed() < Duration::from_secs(5), "no hang");
        assert!(e.to_string().contains("did not finish") && e.to_string().contains("lost"), "{e}");
        let e = dev.alloc(16).err().expect("lost");
        assert!(e.to_string().contains("open it again"), "{e}");
        // A new device works.
        let dev = AmdDevice::open_sim().expect("reopens");
        dev.submit(&[Packet::Nop(1)]).expect("the simulated GPU answers");
    }

    #[test]
    fn buffers_round_trip_through_vram_and_are_freed() {
        let dev = AmdDevice::open_sim().expect("opens");
        let q = dev.queue();
        let free = |d: &AmdDevice| d.d.st.lock().map(|s| s.heap.free.values().sum::<u64>()).unwrap_or(0);
        let before = free(&dev);
        {
            let b = dev.alloc(10_000).expect("alloc");
            let data: Vec<u8> = (0..10_000).map(|i| i as u8).collect();
            dev.write(&q, &b, &data).expect("write");
            let mut back = vec![0u8; 10_000];
            dev.read(&q, &b, &mut back).expect("read");
            assert_eq!(back, data);
        }
        // Page tables stay; the buffer's pages come back.
        assert!(free(&dev) + 4 * PAGE >= before, "{} vs {before}", free(&dev));
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn the_iokit_transport_is_macos_only() {
        let e = crate::devices::open("amd:iokit").err().expect("not here");
        assert!(e.to_string().contains("macOS only"), "{e}");
    }

    #[test]
    fn the_heap_reuses_and_merges_freed_ranges() {
        let mut h = Heap { free: BTreeMap::new() };
        h.free.insert(0, 16 * PAGE);
        let a = h.alloc(1).expect("a");
        let b = h.alloc(PAGE + 1).expect("b");
        let c = h.alloc(PAGE).expect("c");
        assert_eq!((a, b, c), (0, PAGE, 3 * PAGE));
        h.release(b, PAGE + 1);
        h.release(a, 1);
        h.release(c, PAGE);
        assert_eq!(h.free.len(), 1, "{:?}", h.free);
        assert_eq!(h.alloc(16 * PAGE), Some(0));
    }
}
