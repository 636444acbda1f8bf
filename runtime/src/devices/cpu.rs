//! The CPU device: kernels compiled by the toolchain (Cranelift), loaded from an object or
//! taken from the JIT, run on a thread pool; queues run inline.
//!
//! Parallelism: a kernel whose body is one parallel range is split into chunks of that range,
//! run on rayon's pool (one worker per core). A kernel with fewer than [`PARALLEL_WORK`]
//! iterations in all runs on the calling thread, so small launches pay no threading overhead.
//! A chunk that has not started when the host asks to stop ([`tk_abi::interrupt`]) is skipped
//! and the launch ends with [`RunError::Interrupted`].

use crate::device::{Buffer, Code, CodeKind, Device, Event, Executable, Queue};
use crate::error::RunError;
use std::alloc::Layout;
use std::any::Any;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Arc;
use tk_abi::code::HostCode;
use tk_abi::cpu::KernelFn;
use tk_abi::launch::KernelInfo;
use tk_ir::dims::Dim;
use tk_ir::kernel::{Inst, Kernel};

/// How many launches so far were split over threads (all CPU devices of the process).
static SPLIT_LAUNCHES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The number of launches that ran on several threads since the process started.
pub fn split_launches() -> usize {
    SPLIT_LAUNCHES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Below this many loop iterations (summed over the kernel), a launch runs on one thread.
pub const PARALLEL_WORK: u64 = 1 << 15;

/// Host memory of a CPU buffer: allocated by the device (64-byte aligned, zero-initialised), or
/// the caller's (`Device::wrap_host`), kept alive by its owner.
struct CpuMem {
    ptr: NonNull<u8>,
    kind: MemKind,
}

enum MemKind {
    Allocated(Layout),
    Borrowed(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
}

// SAFETY: the memory is plain bytes; kernels running on several threads write disjoint parts of
// it, and the runtime orders launches (the queue is in order).
unsafe impl Send for CpuMem {}
unsafe impl Sync for CpuMem {}

impl Drop for CpuMem {
    fn drop(&mut self) {
        if let MemKind::Allocated(layout) = self.kind {
            // SAFETY: allocated in `alloc` with this layout.
            unsafe { std::alloc::dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

fn mem(b: &Buffer) -> Result<&CpuMem, RunError> {
    b.mem.downcast_ref::<CpuMem>().ok_or(RunError::Device {
        device: "cpu".into(),
        message: "a buffer of another device was passed to the CPU device".into(),
    })
}

/// The memory that holds compiled code.
enum Owned {
    Jit(#[allow(dead_code)] Arc<dyn HostCode>),
    Loaded(#[allow(dead_code)] crate::loader::LoadedCode),
}

/// The code a CPU kernel runs: Cranelift's (compiled at once) or LLVM's (the faster tier,
/// compiled in the background for kernels that keep running).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Cranelift,
    Llvm,
}

pub use crate::tier::TierPolicy;

/// Launches of one device kernel after which the `auto` policy recompiles it with LLVM.
pub const TIER_UP_CALLS: u32 = 8;

/// Compiles one device kernel with LLVM into an object for this machine whose only kernel is
/// `tk_k0` (the toolchain's; the runtime loads it with its own loader).
pub type Recompiler = dyn Fn(&Kernel) -> Result<Vec<u8>, String> + Send + Sync;

/// How many kernels switched to LLVM's code since the process started (all CPU devices).
static TIER_UPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The number of kernels whose LLVM code was swapped in since the process started.
pub fn tier_ups() -> usize {
    TIER_UPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// One line of the tier log on stderr (`TK_LOG=tier`, or a comma-separated list holding it).
fn tier_log(what: impl FnOnce() -> String) {
    if std::env::var("TK_LOG").is_ok_and(|v| v.split(',').any(|x| x.trim() == "tier")) {
        eprintln!("tier: {}", what());
    }
}

fn ms(t: std::time::Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

const CRANELIFT: u8 = 0;
const COMPILING: u8 = 1;
const LLVM: u8 = 2;
const FAILED: u8 = 3;

/// The kernels' current functions and tiers, shared with background compiles.
struct Tiers {
    funcs: Vec<std::sync::atomic::AtomicUsize>,
    state: Vec<std::sync::atomic::AtomicU8>,
    calls: Vec<std::sync::atomic::AtomicU32>,
    kernels: Vec<Kernel>,
    /// The auto policy's compiler, once tiering is on.
    auto: std::sync::OnceLock<Arc<Recompiler>>,
    /// LLVM code swapped in (kept alive as long as any launch can run it).
    upgraded: std::sync::Mutex<Vec<crate::loader::LoadedCode>>,
    /// Why kernels stay on Cranelift (the first failure of each), for `TK_LOG`.
    failures: std::sync::Mutex<Vec<String>>,
}

impl Tiers {
    fn function(&self, i: usize) -> Option<KernelFn> {
        let p = self.funcs.get(i)?.load(std::sync::atomic::Ordering::Acquire);
        // SAFETY: every value stored is the entry of code compiled from `kernels[i]` with the
        // signature of `KernelFn`, kept alive by this executable.
        Some(unsafe { std::mem::transmute::<usize, KernelFn>(p) })
    }

    /// Recompiles kernel `i` with `compile`, loads it and swaps it in.
    fn upgrade(&self, i: usize, compile: &Recompiler) {
        use std::sync::atomic::Ordering;
        let started = std::time::Instant::now();
        let name = &self.kernels[i].name;
        let r = compile(&self.kernels[i]).and_then(|obj| {
            let code = crate::loader::load(&obj, &crate::loader::resolve).map_err(|e| e.0)?;
            let p = code.symbol(&tk_abi::cpu::symbol(0)).ok_or("the LLVM object has no kernel")?;
            code.name_for_profilers(&tk_abi::cpu::symbol(0), &format!("tk kernel {i} ({name}, llvm)"));
            Ok((code, p as usize))
        });
        match r {
            Ok((code, p)) => {
                if let Ok(mut u) = self.upgraded.lock() {
                    u.push(code);
                    self.funcs[i].store(p, Ordering::Release);
                    self.state[i].store(LLVM, Ordering::Release);
                    TIER_UPS.fetch_add(1, Ordering::Relaxed);
                }
                tier_log(|| format!("kernel {i} ({name}) runs LLVM's code ({:.1} ms to compile)", ms(started)));
            }
            Err(m) => {
                self.state[i].store(FAILED, Ordering::Release);
                tier_log(|| format!("kernel {i} ({name}) stays on Cranelift: {m}"));
                if let Ok(mut f) = self.failures.lock() {
                    f.push(format!("kernel {i}: {m}"));
                }
            }
        }
    }

    /// Counts a launch of kernel `i`; the auto policy's threshold starts its recompilation.
    fn note_launch(self: &Arc<Self>, i: usize) {
        use std::sync::atomic::Ordering;
        let Some(compile) = self.auto.get() else { return };
        let Some(c) = self.calls.get(i) else { return };
        if c.fetch_add(1, Ordering::Relaxed) + 1 != TIER_UP_CALLS {
            return;
        }
        if self.state[i].compare_exchange(CRANELIFT, COMPILING, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return;
        }
        let (me, compile) = (self.clone(), compile.clone());
        static BEFORE_FIRST: std::sync::Once = std::sync::Once::new();
        BEFORE_FIRST.call_once(register_exit_wait);
        let spawned = std::thread::Builder::new().name("tk-llvm-tier".into()).spawn(move || {
            // One LLVM compilation at a time: the JIT's background work stays on one core.
            let one = LLVM_COMPILE.lock();
            me.upgrade(i, &*compile);
            drop(one);
            // Again after the first compilation, which made LLVM's lazily built globals: so the
            // wait also runs before their destructors.
            static AFTER_FIRST: std::sync::Once = std::sync::Once::new();
            AFTER_FIRST.call_once(register_exit_wait);
        });
        if spawned.is_err() {
            self.state[i].store(FAILED, Ordering::Release);
        }
    }
}

/// Held by the LLVM tier's background compilation (one at a time).
static LLVM_COMPILE: std::sync::Mutex<()> = std::sync::Mutex::new(());

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

/// Whether [`finish_llvm_at_exit`] has run.
static EXITING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Run at process exit: waits for the LLVM compilation in progress and keeps the lock, so none
/// starts while LLVM is torn down (a compilation running through the destructors of LLVM's
/// globals can crash a process whose work is done). Registered with `atexit` before the first
/// background compilation and again after it, so it runs before the destructors of LLVM's
/// globals, made when LLVM was loaded or during that compilation; the second call returns.
extern "C" fn finish_llvm_at_exit() {
    if EXITING.swap(true, std::sync::atomic::Ordering::AcqRel) {
        return;
    }
    match LLVM_COMPILE.lock() {
        Ok(g) => std::mem::forget(g),
        Err(poisoned) => std::mem::forget(poisoned.into_inner()),
    }
}

fn register_exit_wait() {
    // SAFETY: `atexit` takes any `extern "C" fn()`; the handler only takes a lock.
    unsafe {
        atexit(finish_llvm_at_exit);
    }
}

/// Compiled kernels with what the launcher needs.
pub struct CpuExecutable {
    _code: Owned,
    tiers: Arc<Tiers>,
    infos: Vec<KernelInfo>,
    kernels: Vec<Kernel>,
}

impl CpuExecutable {
    /// Kernels compiled by the JIT for the same kernels.
    pub fn from_jit(jit: &Arc<dyn HostCode>, kernels: &[Kernel]) -> Result<CpuExecutable, String> {
        if jit.len() != kernels.len() {
            return Err(format!("the JIT compiled {} kernels, not {}", jit.len(), kernels.len()));
        }
        let funcs = (0..kernels.len())
            .map(|i| jit.function(i).ok_or_else(|| format!("the JIT has no kernel {i}")))
            .collect::<Result<_, _>>()?;
        Ok(CpuExecutable::new(Owned::Jit(jit.clone()), funcs, kernels))
    }

    /// Kernels from an object made by `tk_codegen::cpu::host_object` for the same kernels.
    pub fn from_object(obj: &[u8], kernels: &[Kernel]) -> Result<CpuExecutable, crate::loader::LoadError> {
        let code = crate::loader::load(obj, &crate::loader::resolve)?;
        let mut funcs = Vec::new();
        for (i, k) in kernels.iter().enumerate() {
            let p = code
                .symbol(&tk_abi::cpu::symbol(i))
                .ok_or_else(|| crate::loader::LoadError(format!("the object has no kernel {i}")))?;
            code.name_for_profilers(&tk_abi::cpu::symbol(i), &format!("tk kernel {i} ({})", k.name));
            // SAFETY: `tk_k{i}` was compiled from `kernels[i]` with the signature of `KernelFn`.
            funcs.push(unsafe { std::mem::transmute::<*const u8, KernelFn>(p) });
        }
        Ok(CpuExecutable::new(Owned::Loaded(code), funcs, kernels))
    }

    fn new(code: Owned, funcs: Vec<KernelFn>, kernels: &[Kernel]) -> CpuExecutable {
        use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize};
        let tiers = Tiers {
            funcs: funcs.iter().map(|f| AtomicUsize::new(*f as usize)).collect(),
            state: funcs.iter().map(|_| AtomicU8::new(CRANELIFT)).collect(),
            calls: funcs.iter().map(|_| AtomicU32::new(0)).collect(),
            kernels: kernels.to_vec(),
            auto: std::sync::OnceLock::new(),
            upgraded: std::sync::Mutex::new(Vec::new()),
            failures: std::sync::Mutex::new(Vec::new()),
        };
        let infos = kernels.iter().map(tk_abi::launch::kernel_info).collect();
        CpuExecutable { _code: code, tiers: Arc::new(tiers), infos, kernels: kernels.to_vec() }
    }

    /// Turns on the LLVM tier under `policy` with the toolchain's `compile`: `llvm` recompiles
    /// every kernel now, `auto` each kernel once it has been launched [`TIER_UP_CALLS`] times (in
    /// a background thread), `cranelift` nothing. A kernel LLVM cannot compile keeps Cranelift's
    /// code ([`CpuExecutable::tier_failures`] says why). Calling it again changes nothing.
    pub fn enable_tiers(&self, policy: TierPolicy, compile: Arc<Recompiler>) {
        use std::sync::atomic::Ordering;
        match policy {
            TierPolicy::Cranelift => {}
            TierPolicy::Auto => {
                let _ = self.tiers.auto.set(compile);
            }
            TierPolicy::Llvm => {
                for i in 0..self.kernels.len() {
                    if self.tiers.state[i]
                        .compare_exchange(CRANELIFT, COMPILING, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                    {
                        self.tiers.upgrade(i, &*compile);
                    }
                }
                // A kernel another thread is compiling (an executable the cache shares): LLVM's
                // code from the first launch means waiting for it.
                for s in &self.tiers.state {
                    while s.load(Ordering::Acquire) == COMPILING {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                }
            }
        }
    }

    /// The code device kernel `i` runs now.
    pub fn tier(&self, i: usize) -> Option<Tier> {
        let s = self.tiers.state.get(i)?.load(std::sync::atomic::Ordering::Acquire);
        Some(if s == LLVM { Tier::Llvm } else { Tier::Cranelift })
    }

    /// Why kernels could not move to LLVM's code.
    pub fn tier_failures(&self) -> Vec<String> {
        self.tiers.failures.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

impl Executable for CpuExecutable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.kernels.len()
    }
}

pub struct CpuDevice {
    target: String,
    tier: TierPolicy,
}

impl Default for CpuDevice {
    fn default() -> CpuDevice {
        CpuDevice::new()
    }
}

impl CpuDevice {
    /// The CPU with the tier policy of `TK_CPU_TIER` (`auto` when unset or invalid; the
    /// toolchain reports an invalid value).
    pub fn new() -> CpuDevice {
        CpuDevice::with_tier(TierPolicy::from_env().unwrap_or(TierPolicy::Auto))
    }

    /// The CPU with a tier policy (`cpu,tier=llvm`).
    pub fn with_tier(tier: TierPolicy) -> CpuDevice {
        CpuDevice { target: crate::bundle::host_cpu_variant(), tier }
    }
}

/// The number of loop iterations a kernel body runs (an estimate of its work).
fn work(body: &[Inst], dims: &HashMap<String, i64>) -> u64 {
    let mut total = 0u64;
    for i in body {
        total = total.saturating_add(match i {
            Inst::Range { extent, body, .. } => {
                let n = extent.eval(&|s| dims.get(s).copied()).unwrap_or(0).max(0) as u64;
                n.saturating_mul(work(body, dims).max(1))
            }
            Inst::Loop { trip, body, .. } => {
                let n = trip.eval(&|s| dims.get(s).copied()).unwrap_or(0).max(0) as u64;
                n.saturating_mul(work(body, dims).max(1))
            }
            _ => 0,
        });
    }
    total
}

fn eval(d: &Dim, dims: &HashMap<String, i64>) -> i64 {
    d.eval(&|s| dims.get(s).copied()).unwrap_or(0)
}

/// Calls a compiled kernel on `[lo, hi)` of its parallel range; maps a failed check to an error.
fn call(
    f: KernelFn,
    info: &KernelInfo,
    ptrs: &[usize],
    dvals: &[i64],
    lo: i64,
    hi: i64,
    dims: &HashMap<String, i64>,
) -> Result<(), RunError> {
    let mut err = [0i64; 3];
    let p: Vec<*mut u8> = ptrs.iter().map(|p| *p as *mut u8).collect();
    // SAFETY: `p` holds one valid buffer per kernel argument, sized for the bound dimensions
    // (the runtime allocated them from the same shapes), `dvals` one value per symbol, and `err`
    // three writable slots: the contract of the generated code.
    let code = unsafe { f(p.as_ptr(), dvals.as_ptr(), lo, hi, err.as_mut_ptr()) };
    RunError::check(tk_abi::check::decode_cpu(code, err, &info.checks, dims))
}

impl Device for CpuDevice {
    fn name(&self) -> String {
        "cpu".into()
    }
    fn cpu_tier(&self) -> Option<TierPolicy> {
        Some(self.tier)
    }
    fn target(&self) -> String {
        self.target.clone()
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer, RunError> {
        let size = bytes.max(64).next_multiple_of(64);
        let layout = Layout::from_size_align(size, 64).map_err(|e| RunError::Device {
            device: "cpu".into(),
            message: format!("allocating {bytes} bytes: {e}"),
        })?;
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(p).ok_or(RunError::Device {
            device: "cpu".into(),
            message: format!("out of memory allocating {bytes} bytes"),
        })?;
        Ok(Buffer::new(Arc::new(CpuMem { ptr, kind: MemKind::Allocated(layout) }), bytes))
    }
    fn queue(&self) -> Queue {
        Queue { id: 0 }
    }
    fn write(&self, _q: &Queue, dst: &Buffer, src: &[u8]) -> Result<(), RunError> {
        let m = mem(dst)?;
        let n = src.len().min(dst.bytes());
        // SAFETY: `m` has at least `dst.bytes()` bytes; the regions do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), m.ptr.as_ptr(), n) };
        Ok(())
    }
    fn read(&self, _q: &Queue, src: &Buffer, dst: &mut [u8]) -> Result<(), RunError> {
        let m = mem(src)?;
        let n = dst.len().min(src.bytes());
        // SAFETY: as in `write`.
        unsafe { std::ptr::copy_nonoverlapping(m.ptr.as_ptr(), dst.as_mut_ptr(), n) };
        Ok(())
    }
    fn copy(&self, _q: &Queue, src: &Buffer, dst: &Buffer) -> Result<(), RunError> {
        let (s, d) = (mem(src)?, mem(dst)?);
        let n = src.bytes().min(dst.bytes());
        // SAFETY: both hold at least `n` bytes; `copy` allows overlap.
        unsafe { std::ptr::copy(s.ptr.as_ptr(), d.ptr.as_ptr(), n) };
        Ok(())
    }
    fn accepts(&self) -> &'static [CodeKind] {
        &[CodeKind::Jit, CodeKind::CpuObject]
    }
    fn load(&self, kernels: &[Kernel], code: Code<'_>) -> Result<Arc<dyn Executable>, RunError> {
        let dev = |message: String| RunError::Device { device: "cpu".into(), message };
        let e = match code {
            Code::CpuObject(obj) => CpuExecutable::from_object(obj, kernels)
                .map_err(|e| dev(format!("loading the kernels' object: {}", e.0)))?,
            Code::Jit(jit) => CpuExecutable::from_jit(jit, kernels).map_err(dev)?,
            _ => return Err(dev(format!("cannot load {} on the CPU", code.kind().describe()))),
        };
        Ok(Arc::new(e))
    }
    fn launch(
        &self,
        _q: &Queue,
        exe: &Arc<dyn Executable>,
        k: usize,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
    ) -> Result<(), RunError> {
        let dev = |m: String| RunError::Device { device: "cpu".into(), message: m };
        let exe = exe.as_any().downcast_ref::<CpuExecutable>().ok_or(dev("not a CPU executable".into()))?;
        let (Some(f), Some(info), Some(kernel)) = (exe.tiers.function(k), exe.infos.get(k), exe.kernels.get(k)) else {
            return Err(dev(format!("no device kernel {k}")));
        };
        exe.tiers.note_launch(k);
        let started = log_launches().then(std::time::Instant::now);
        let r = run(k, f, info, kernel, bufs, dims);
        if let Some(t) = started {
            let tier = if exe.tier(k) == Some(Tier::Llvm) { "llvm" } else { "cranelift" };
            eprintln!("launch: kernel {k} ({}, {tier}) {:.3} ms", kernel.name, ms(t));
        }
        r
    }
    fn record(&self, _q: &Queue) -> Event {
        Event::now()
    }
    fn wait(&self, _e: &Event) -> Result<(), RunError> {
        Ok(())
    }
    fn synchronize(&self, _q: &Queue) -> Result<(), RunError> {
        Ok(())
    }
    fn launches_finish_on_return(&self) -> bool {
        true
    }
    unsafe fn wrap_host(&self, ptr: NonNull<u8>, bytes: usize, owner: Box<dyn Any + Send + Sync>) -> Option<Buffer> {
        Some(Buffer::new(Arc::new(CpuMem { ptr, kind: MemKind::Borrowed(owner) }), bytes))
    }
    fn host_ptr(&self, b: &Buffer) -> Option<NonNull<u8>> {
        mem(b).ok().map(|m| m.ptr)
    }
}

/// Whether `TK_LOG` asks for one line per CPU launch (`TK_LOG=launch`): the kernel, its tier and
/// its wall time.
fn log_launches() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("TK_LOG").is_ok_and(|v| v.split(',').any(|x| x.trim() == "launch")))
}

/// Runs device kernel `k` (function `f`) on its buffers: on this thread when it is small, else
/// split over the thread pool.
fn run(
    k: usize,
    f: KernelFn,
    info: &KernelInfo,
    kernel: &Kernel,
    bufs: &[Buffer],
    dims: &HashMap<String, i64>,
) -> Result<(), RunError> {
    {
        let dev = |m: String| RunError::Device { device: "cpu".into(), message: m };
        if bufs.len() != kernel.bufs.len() {
            return Err(dev(format!("kernel {k} takes {} buffers, got {}", kernel.bufs.len(), bufs.len())));
        }
        let mut dvals = Vec::with_capacity(info.symbols.len());
        for s in &info.symbols {
            dvals.push(*dims.get(s).ok_or(dev(format!("dimension `{s}` has no value")))?);
        }
        let ptrs: Vec<usize> =
            bufs.iter().map(|b| mem(b).map(|m| m.ptr.as_ptr() as usize)).collect::<Result<_, _>>()?;
        let extent = info.parallel.as_ref().map(|d| eval(d, dims)).unwrap_or(0);
        let threads = rayon::current_num_threads() as i64;
        if extent < 2 || threads < 2 || work(&kernel.body, dims) < PARALLEL_WORK {
            tk_abi::progress::units(1);
            let r = call(f, info, &ptrs, &dvals, 0, i64::MAX, dims);
            tk_abi::progress::advance(1);
            return r;
        }
        // Several chunks per thread balance uneven rows; each chunk is a contiguous block, whole
        // vectors wide when the parallel axis is also the vectorised one.
        let align = if kernel.bufs.iter().find(|b| b.write).is_some_and(|b| b.shape.len() == 1) {
            i64::from(kernel.knobs.vector.max(1))
        } else {
            1
        };
        let groups = (extent + align - 1) / align;
        let chunks = (threads * 4).min(groups);
        SPLIT_LAUNCHES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tk_abi::progress::units(chunks as u64);
        let results: Vec<Result<(), RunError>> = {
            use rayon::prelude::*;
            (0..chunks)
                .into_par_iter()
                .map(|c| {
                    if tk_abi::interrupt::requested() {
                        return Err(RunError::Interrupted);
                    }
                    let lo = (groups * c / chunks) * align;
                    let hi = ((groups * (c + 1) / chunks) * align).min(extent);
                    let r = call(f, info, &ptrs, &dvals, lo, hi, dims);
                    tk_abi::progress::advance(1);
                    r
                })
                .collect()
        };
        results.into_iter().collect()
    }
}
