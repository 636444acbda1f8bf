//! The simulated GPUs. `sim:sm_86` (any NVIDIA target): kernels are compiled to PTX exactly as
//! for a real GPU and run by the PTX simulator (`tk-sim`). `sim:gfx1100` (any gfx11 target):
//! kernels are compiled by LLVM into a code object exactly as for a real GPU, and the RDNA3
//! emulator (`tk_sim::rdna3`) runs its machine code. Both check every memory access and report
//! missing barriers. Memory is host memory; queues run inline.
//!
//! Warps and waves run in a seeded random order: the seed is `TK_SIM_SEED` (default 0) plus the
//! number of the launch, so a run is reproducible and different launches see different orders.

use crate::device::{Buffer, Code, CodeKind, Device, Event, Executable, Queue};
use crate::error::RunError;
use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tk_abi::grid::{Grid, SIM_MAX_BLOCKS};
use tk_abi::launch::{AmdTarget, GpuKernel as PtxKernel, Launch, NvidiaTarget};
use tk_ir::kernel::Kernel;

struct SimMem(Mutex<Vec<u8>>);

/// A buffer's memory during a launch: locked, or a copy of another argument's (see
/// `lock_buffers`).
enum Held<'b> {
    Locked(std::sync::MutexGuard<'b, Vec<u8>>),
    Copy(Vec<u8>),
}

impl Held<'_> {
    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            Held::Locked(g) => g.as_mut_slice(),
            Held::Copy(v) => v.as_mut_slice(),
        }
    }
}

/// Kernels compiled to PTX and decoded for the simulator.
pub struct SimExecutable {
    module: tk_sim::ptx::Module,
    /// The PTX text, for error reports and `tk emit`.
    pub ptx: String,
    infos: Vec<PtxKernel>,
    kernels: Vec<Kernel>,
}

impl Executable for SimExecutable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.kernels.len()
    }
}

/// Kernels compiled into an AMD code object and decoded for the RDNA3 emulator.
pub struct AmdExecutable {
    code: tk_sim::rdna3::CodeObject,
    infos: Vec<PtxKernel>,
    kernels: Vec<Kernel>,
}

impl Executable for AmdExecutable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.kernels.len()
    }
}

/// Kernels assembled by ptxas into a cubin and decoded for the SASS emulator.
pub struct SassExecutable {
    program: tk_sim::sass::Program,
    infos: Vec<PtxKernel>,
    kernels: Vec<Kernel>,
}

impl Executable for SassExecutable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.kernels.len()
    }
}

/// The GPU a simulated device stands for.
#[derive(Clone, Copy, Debug)]
pub enum SimTarget {
    Nvidia(NvidiaTarget),
    Amd(AmdTarget),
    /// An NVIDIA GPU whose machine code (ptxas's cubin) the SASS emulator runs: `sass:sm_86`.
    Sass(NvidiaTarget),
}

impl std::fmt::Display for SimTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SimTarget::Nvidia(t) | SimTarget::Sass(t) => write!(f, "{t}"),
            SimTarget::Amd(t) => write!(f, "{t}"),
        }
    }
}

pub struct SimDevice {
    target: SimTarget,
    launches: AtomicU64,
    seed: u64,
    /// Thread-instructions its launches executed (PTX instructions on `sim:sm_XX`, SASS on
    /// `sass:sm_XX`; not counted on the RDNA3 emulator).
    executed: AtomicU64,
}

/// Where the emulated AMD address space puts buffer `i`, the error slots and the kernel
/// arguments (far apart, so an access past a buffer's end hits nothing).
fn amd_buffer_address(i: usize) -> u64 {
    (i as u64 + 1) << 40
}
const AMD_ERR_ADDRESS: u64 = 0xfe << 40;
const AMD_KERNARG_ADDRESS: u64 = 0xff << 40;

impl SimDevice {
    pub fn new(target: NvidiaTarget) -> SimDevice {
        Self::with(SimTarget::Nvidia(target))
    }
    /// The SASS emulator, `sass:sm_86` (sm_80, sm_86 and sm_89).
    pub fn sass(target: NvidiaTarget) -> SimDevice {
        Self::with(SimTarget::Sass(target))
    }
    /// The emulated RDNA3 GPU, `sim:gfx1100`.
    pub fn amd(target: AmdTarget) -> SimDevice {
        Self::with(SimTarget::Amd(target))
    }
    fn with(target: SimTarget) -> SimDevice {
        let seed = std::env::var("TK_SIM_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0);
        SimDevice { target, launches: AtomicU64::new(0), seed, executed: AtomicU64::new(0) }
    }
    /// Thread-instructions this device's launches have executed (for benchmarks).
    pub fn executed(&self) -> u64 {
        self.executed.load(Ordering::Relaxed)
    }
    fn err(&self, m: impl Into<String>) -> RunError {
        RunError::Device { device: self.name(), message: m.into() }
    }
}

fn mem(b: &Buffer) -> Option<&SimMem> {
    b.mem.downcast_ref::<SimMem>()
}

/// The grid of a simulated launch (the simulators run every block, so fewer of them).
pub fn grid(launch: &Launch, dims: &HashMap<String, i64>) -> tk_sim::ptx::Grid {
    let Grid { blocks, threads } = tk_abi::grid::grid(launch, dims, SIM_MAX_BLOCKS);
    tk_sim::ptx::Grid { blocks, threads }
}

impl SimDevice {
    /// Checks a launch's buffers (the kernel's count, distinct, this device's) and locks them.
    fn lock_buffers<'b>(&self, k: usize, kernel: &Kernel, bufs: &'b [Buffer]) -> Result<Vec<Held<'b>>, RunError> {
        if bufs.len() != kernel.bufs.len() {
            return Err(self.err(format!("kernel {k} takes {} buffers, got {}", kernel.bufs.len(), bufs.len())));
        }
        let mut held: Vec<Held<'b>> = Vec::with_capacity(bufs.len());
        for (i, a) in bufs.iter().enumerate() {
            // The same array passed for two inputs (`f(x, x)`): the simulated memory gives each
            // buffer its own range, so the second one reads a copy. Kernels never write their
            // inputs; a buffer that is written must be distinct.
            if let Some(j) = bufs[..i].iter().position(|b| Arc::ptr_eq(&a.mem, &b.mem)) {
                if kernel.bufs[i].write || kernel.bufs[j].write {
                    return Err(self.err(format!(
                        "kernel {k} got the same buffer for buffers {j} and {i}, and writes one of them"
                    )));
                }
                let copy = held[j].as_mut_slice().to_vec();
                held.push(Held::Copy(copy));
                continue;
            }
            let m = mem(a).ok_or_else(|| self.err("a buffer of another device"))?;
            held.push(Held::Locked(m.0.lock().map_err(|_| self.err("a buffer lock was poisoned"))?));
        }
        Ok(held)
    }

    fn launch_sass(
        &self,
        exe: &SassExecutable,
        k: usize,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
    ) -> Result<(), RunError> {
        let (Some(info), Some(kernel)) = (exe.infos.get(k), exe.kernels.get(k)) else {
            return Err(self.err(format!("no device kernel {k}")));
        };
        self.launch_nvidia(k, kernel, info, bufs, dims, |grid, args, seed| {
            exe.program.launch(&info.name, grid, args, seed).map_err(|e| {
                if let tk_sim::sass::SassError::Interrupted { .. } = e {
                    return RunError::Interrupted;
                }
                RunError::Fault {
                    device: self.name(),
                    message: format!("{e} (device kernel {k}; the device kernel computes the expression shown)"),
                    loc: kernel.loc,
                }
            })
        })
    }

    /// A launch with tk's NVIDIA kernel ABI (the buffers, the dimension symbols as i64, the
    /// error slots) on one of the NVIDIA simulators (`run`: the grid, the arguments, the seed;
    /// it returns the thread-instructions executed).
    fn launch_nvidia(
        &self,
        k: usize,
        kernel: &Kernel,
        info: &PtxKernel,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
        run: impl FnOnce(tk_sim::ptx::Grid, &mut [tk_sim::ptx::Arg<'_>], u64) -> Result<u64, RunError>,
    ) -> Result<(), RunError> {
        let mut guards = self.lock_buffers(k, kernel, bufs)?;
        let mut err = vec![0u8; tk_abi::check::GPU_SLOTS];
        let mut args: Vec<tk_sim::ptx::Arg<'_>> =
            guards.iter_mut().map(|g| tk_sim::ptx::Arg::Buffer(g.as_mut_slice())).collect();
        for s in &info.symbols {
            let v = *dims.get(s).ok_or_else(|| self.err(format!("dimension `{s}` has no value")))?;
            args.push(tk_sim::ptx::Arg::Int(v));
        }
        args.push(tk_sim::ptx::Arg::Buffer(&mut err));
        let seed = self.seed.wrapping_add(self.launches.fetch_add(1, Ordering::Relaxed));
        let steps = run(grid(&info.launch, dims), &mut args, seed)?;
        self.executed.fetch_add(steps, Ordering::Relaxed);
        drop(args);
        RunError::check(tk_abi::check::decode_gpu(&err, &info.checks, dims))
    }

    fn launch_amd(
        &self,
        exe: &AmdExecutable,
        k: usize,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
    ) -> Result<(), RunError> {
        let (Some(info), Some(kernel)) = (exe.infos.get(k), exe.kernels.get(k)) else {
            return Err(self.err(format!("no device kernel {k}")));
        };
        let mut guards = self.lock_buffers(k, kernel, bufs)?;
        // The kernel arguments of tk's ABI: buffer addresses, sizes, the error slots, the grid.
        let g = grid(&info.launch, dims);
        let addresses: Vec<u64> = (0..bufs.len()).map(amd_buffer_address).collect();
        let mut symbols = Vec::with_capacity(info.symbols.len());
        for s in &info.symbols {
            symbols.push(*dims.get(s).ok_or_else(|| self.err(format!("dimension `{s}` has no value")))?);
        }
        let mut kernarg = tk_abi::amd::kernargs(&addresses, &symbols, AMD_ERR_ADDRESS, g.blocks);
        // Scalar loads fetch whole blocks, past the arguments' end: a runtime's kernarg segment
        // is a larger allocation, so the region is too (zeros).
        kernarg.resize(kernarg.len().next_multiple_of(256) + 256, 0);
        let mut err = vec![0u8; tk_abi::check::GPU_SLOTS];
        let mut regions: Vec<tk_sim::rdna3::Region<'_>> = guards
            .iter_mut()
            .enumerate()
            .map(|(i, g)| tk_sim::rdna3::Region {
                base: amd_buffer_address(i),
                data: g.as_mut_slice(),
                name: format!("buffer {i}"),
                writable: true,
            })
            .collect();
        regions.push(tk_sim::rdna3::Region {
            base: AMD_ERR_ADDRESS,
            data: &mut err,
            name: "the error slots".into(),
            writable: true,
        });
        regions.push(tk_sim::rdna3::Region {
            base: AMD_KERNARG_ADDRESS,
            data: &mut kernarg,
            name: "the kernel arguments".into(),
            writable: false,
        });
        let mut memory = tk_sim::rdna3::Regions { regions };
        let seed = self.seed.wrapping_add(self.launches.fetch_add(1, Ordering::Relaxed));
        exe.code.launch(&info.name, g.blocks, g.threads, AMD_KERNARG_ADDRESS, &mut memory, seed).map_err(|e| {
            if let tk_sim::rdna3::EmuError::Interrupted(_) = e {
                return RunError::Interrupted;
            }
            RunError::Fault {
                device: self.name(),
                message: format!("{e} (device kernel {k}; the device kernel computes the expression shown)"),
                loc: kernel.loc,
            }
        })?;
        drop(memory);
        RunError::check(tk_abi::check::decode_gpu(&err, &info.checks, dims))
    }
}

impl Device for SimDevice {
    fn name(&self) -> String {
        match self.target {
            SimTarget::Sass(t) => format!("sass:{t}"),
            t => format!("sim:{t}"),
        }
    }
    fn target(&self) -> String {
        match self.target {
            SimTarget::Nvidia(t) => format!("{t} (simulated PTX)"),
            SimTarget::Amd(t) => format!("{t} (emulated RDNA3 machine code)"),
            SimTarget::Sass(t) => format!("{t} (emulated SASS, assembled by ptxas)"),
        }
    }
    fn compile_target(&self) -> tk_abi::target::Target {
        match self.target {
            SimTarget::Nvidia(t) | SimTarget::Sass(t) => tk_abi::target::Target::Nvidia(t),
            SimTarget::Amd(t) => tk_abi::target::Target::Amd(t),
        }
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer, RunError> {
        Ok(Buffer::new(Arc::new(SimMem(Mutex::new(vec![0; bytes]))), bytes))
    }
    fn queue(&self) -> Queue {
        Queue { id: 0 }
    }
    fn write(&self, _q: &Queue, dst: &Buffer, src: &[u8]) -> Result<(), RunError> {
        let m = mem(dst).ok_or_else(|| self.err("a buffer of another device"))?;
        let mut d = m.0.lock().map_err(|_| self.err("a buffer lock was poisoned"))?;
        let n = src.len().min(d.len());
        d[..n].copy_from_slice(&src[..n]);
        Ok(())
    }
    fn read(&self, _q: &Queue, src: &Buffer, dst: &mut [u8]) -> Result<(), RunError> {
        let m = mem(src).ok_or_else(|| self.err("a buffer of another device"))?;
        let s = m.0.lock().map_err(|_| self.err("a buffer lock was poisoned"))?;
        let n = dst.len().min(s.len());
        dst[..n].copy_from_slice(&s[..n]);
        Ok(())
    }
    fn copy(&self, _q: &Queue, src: &Buffer, dst: &Buffer) -> Result<(), RunError> {
        if Arc::ptr_eq(&src.mem, &dst.mem) {
            return Ok(());
        }
        let data = {
            let m = mem(src).ok_or_else(|| self.err("a buffer of another device"))?;
            m.0.lock().map_err(|_| self.err("a buffer lock was poisoned"))?.clone()
        };
        self.write(&Queue { id: 0 }, dst, &data)
    }
    fn accepts(&self) -> &'static [CodeKind] {
        match self.target {
            SimTarget::Nvidia(_) => &[CodeKind::Ptx],
            SimTarget::Amd(_) => &[CodeKind::Hsaco],
            SimTarget::Sass(_) => &[CodeKind::Cubin],
        }
    }
    fn load(&self, kernels: &[Kernel], code: Code<'_>) -> Result<Arc<dyn Executable>, RunError> {
        if let (SimTarget::Amd(_), Code::Hsaco(bytes)) = (self.target, code) {
            let mut code = tk_sim::rdna3::CodeObject::parse(bytes).map_err(|e| self.err(e.to_string()))?;
            code.host_driven = true;
            let infos: Vec<PtxKernel> = kernels
                .iter()
                .map(|k| {
                    tk_abi::launch::gpu_kernel(k, &k.name).map_err(|message| RunError::Compile { message, loc: k.loc })
                })
                .collect::<Result<_, _>>()?;
            for i in &infos {
                if code.kernel(&i.name).is_none() {
                    return Err(self.err(format!("the code object has no kernel `{}`", i.name)));
                }
            }
            return Ok(Arc::new(AmdExecutable { code, infos, kernels: kernels.to_vec() }));
        }
        if let (SimTarget::Sass(t), Code::Cubin(bytes)) = (self.target, code) {
            let mut program = tk_sim::sass::Program::load(bytes).map_err(|e| self.err(e.to_string()))?;
            program.host_driven = true;
            let infos = super::cuda::gpu_infos(kernels)?;
            for i in &infos {
                if program.kernel(&i.name).is_none() {
                    return Err(self.err(format!("the cubin has no kernel `{}`", i.name)));
                }
            }
            if program.sm != t.sm {
                return Err(self.err(format!("the cubin is for sm_{}, the device is {t}", program.sm)));
            }
            return Ok(Arc::new(SassExecutable { program, infos, kernels: kernels.to_vec() }));
        }
        let (SimTarget::Nvidia(_), Code::Ptx(text)) = (self.target, code) else {
            let runs = match self.target {
                SimTarget::Amd(_) => "an AMD code object",
                SimTarget::Sass(_) => "a cubin",
                SimTarget::Nvidia(_) => "PTX",
            };
            return Err(self.err(format!("the simulator runs {runs}, not {}", code.kind().describe())));
        };
        // The launch information comes from the kernels; the code is the bundle's.
        let infos = super::cuda::gpu_infos(kernels)?;
        let mut module = tk_sim::ptx::Module::parse(text).map_err(|e| self.err(format!("decoding the PTX: {e}")))?;
        module.host_driven = true;
        Ok(Arc::new(SimExecutable { module, ptx: text.to_string(), infos, kernels: kernels.to_vec() }))
    }
    fn launch(
        &self,
        _q: &Queue,
        exe: &Arc<dyn Executable>,
        k: usize,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
    ) -> Result<(), RunError> {
        if let Some(amd) = exe.as_any().downcast_ref::<AmdExecutable>() {
            return self.launch_amd(amd, k, bufs, dims);
        }
        if let Some(sass) = exe.as_any().downcast_ref::<SassExecutable>() {
            return self.launch_sass(sass, k, bufs, dims);
        }
        let exe = exe.as_any().downcast_ref::<SimExecutable>().ok_or_else(|| self.err("not a simulator executable"))?;
        let (Some(info), Some(kernel)) = (exe.infos.get(k), exe.kernels.get(k)) else {
            return Err(self.err(format!("no device kernel {k}")));
        };
        self.launch_nvidia(k, kernel, info, bufs, dims, |grid, args, seed| {
            exe.module.launch(&info.name, grid, args, seed).map_err(|e| {
                // The access's own source when the PTX marks it, else the kernel's.
                if let tk_sim::ptx::SimError::Interrupted { .. } = e {
                    return RunError::Interrupted;
                }
                let (loc, what) = match &e {
                    tk_sim::ptx::SimError::Fault { loc: Some((file, lo, hi)), .. } => {
                        (tk_ir::graph::Loc { file: *file, lo: *lo, hi: *hi }, "the access is in the expression shown")
                    }
                    _ => (kernel.loc, "the device kernel computes the expression shown"),
                };
                RunError::Fault { device: self.name(), message: format!("{e} (device kernel {k}; {what})"), loc }
            })
        })
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
}
