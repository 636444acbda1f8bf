//! The CUDA device, `cuda:N`: kernels compiled to PTX, assembled by ptxas into a cubin for the
//! GPU's architecture when ptxas is available (otherwise the driver compiles the PTX), loaded
//! and launched through the CUDA driver API, which cudarc loads at run time. Queues are CUDA
//! streams and events are CUDA events. Without an NVIDIA driver nothing changes except that
//! `cuda:N` cannot be opened (the error says why).

use crate::device::{Buffer, Code, CodeKind, Device, Event, Executable, GpuEvent, Queue};
use crate::error::RunError;
use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tk_abi::launch::{GpuKernel as PtxKernel, Launch, NvidiaTarget};
use tk_ir::kernel::Kernel;

/// Whether the NVIDIA driver library can be loaded.
pub fn driver_present() -> bool {
    // SAFETY: only tries to load the library; no driver call is made.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// The tk target for a GPU of compute capability `major.minor`: the same architecture when tk
/// supports it, else the newest older one (its PTX runs on newer GPUs through the driver).
pub fn target_for(major: i32, minor: i32) -> Result<NvidiaTarget, String> {
    let cc = (major * 10 + minor) as u32;
    NvidiaTarget::ALL
        .iter()
        .rev()
        .copied()
        .find(|t| t.sm <= cc)
        .ok_or_else(|| format!("compute capability {major}.{minor} is older than Ampere (sm_80), which tk needs"))
}

/// One kernel parameter as it is passed to the launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Param {
    /// A device pointer.
    Ptr(u64),
    /// A dimension value.
    Int(i64),
}

/// The parameters of a device kernel: the buffers' device pointers in the kernel's order, the
/// dimension values in the order of `info.symbols`, then the error slots' pointer.
pub fn pack_params(
    info: &PtxKernel,
    ptrs: &[u64],
    dims: &HashMap<String, i64>,
    err: u64,
) -> Result<Vec<Param>, String> {
    let mut p: Vec<Param> = ptrs.iter().map(|&x| Param::Ptr(x)).collect();
    for s in &info.symbols {
        p.push(Param::Int(*dims.get(s).ok_or_else(|| format!("dimension `{s}` has no value"))?));
    }
    p.push(Param::Ptr(err));
    Ok(p)
}

/// The grid of a launch: (blocks, threads per block).
pub fn grid(launch: &Launch, dims: &HashMap<String, i64>) -> (u32, u32) {
    let g = tk_abi::grid::grid(launch, dims, tk_abi::grid::GPU_MAX_BLOCKS);
    (g.blocks, g.threads)
}

struct CudaMem(Mutex<CudaSlice<u8>>);

/// Kernels loaded on a GPU.
pub struct CudaExecutable {
    _module: Arc<CudaModule>,
    funcs: Vec<CudaFunction>,
    infos: Vec<PtxKernel>,
    /// Whether the module is a cubin (else PTX compiled by the driver).
    pub cubin: bool,
}

impl Executable for CudaExecutable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.funcs.len()
    }
}

struct CudaEv(CudaEvent);

impl GpuEvent for CudaEv {
    fn query(&self) -> bool {
        self.0.is_complete()
    }
    fn elapsed(&self, later: &dyn GpuEvent) -> Option<Duration> {
        let l = later.as_any().downcast_ref::<CudaEv>()?;
        let ms = self.0.elapsed_ms(&l.0).ok()?;
        Some(Duration::from_secs_f64(f64::from(ms.max(0.0)) / 1e3))
    }
    fn wait(&self) -> Result<(), String> {
        self.0.synchronize().map_err(|e| e.to_string())
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub struct CudaDevice {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    streams: Mutex<Vec<Arc<CudaStream>>>,
    target: NvidiaTarget,
    gpu: String,
}

impl CudaDevice {
    /// Opens GPU `ordinal`.
    fn load_image(
        &self,
        image: cudarc::nvrtc::Ptx,
        infos: Vec<PtxKernel>,
        cubin: bool,
    ) -> Result<Arc<dyn Executable>, RunError> {
        let module = self.ctx.load_module(image).map_err(|e| self.err(format!("loading the kernels: {e}")))?;
        let funcs = infos
            .iter()
            .map(|k| module.load_function(&k.name).map_err(|e| self.err(format!("kernel {}: {e}", k.name))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(CudaExecutable { _module: module, funcs, infos, cubin }))
    }

    pub fn open(ordinal: usize) -> Result<CudaDevice, RunError> {
        let name = format!("cuda:{ordinal}");
        let err = |m: String| RunError::Device { device: name.clone(), message: m };
        if !driver_present() {
            return Err(err(
                "no NVIDIA driver on this machine (libcuda was not found); `tk devices` lists the devices, and \
                 `--device sim:sm_86` runs the same code on the simulator"
                    .into(),
            ));
        }
        let count = CudaContext::device_count().map_err(|e| err(format!("the CUDA driver failed: {e}")))?;
        if ordinal as i32 >= count {
            return Err(err(format!("this machine has {count} NVIDIA GPU(s)")));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| err(format!("creating a context: {e}")))?;
        let (major, minor) = ctx.compute_capability().map_err(|e| err(e.to_string()))?;
        let target = target_for(major, minor).map_err(err)?;
        let gpu = ctx.name().unwrap_or_else(|_| "NVIDIA GPU".into());
        let stream = ctx.default_stream();
        Ok(CudaDevice { ordinal, ctx, streams: Mutex::new(vec![stream]), target, gpu })
    }

    fn err(&self, m: impl Into<String>) -> RunError {
        RunError::Device { device: self.name(), message: m.into() }
    }

    fn stream(&self, q: &Queue) -> Result<Arc<CudaStream>, RunError> {
        let s = self.streams.lock().map_err(|_| self.err("a lock was poisoned"))?;
        s.get(q.id).cloned().ok_or_else(|| self.err(format!("no queue {}", q.id)))
    }
}

fn mem(b: &Buffer) -> Option<&CudaMem> {
    b.mem.downcast_ref::<CudaMem>()
}

impl Device for CudaDevice {
    fn name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }
    fn target(&self) -> String {
        format!("{} ({})", self.target, self.gpu)
    }
    fn compile_target(&self) -> tk_abi::target::Target {
        tk_abi::target::Target::Nvidia(self.target)
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer, RunError> {
        let s = self.ctx.default_stream();
        let m = s.alloc_zeros::<u8>(bytes.max(1)).map_err(|e| self.err(format!("allocating {bytes} bytes: {e}")))?;
        Ok(Buffer::new(Arc::new(CudaMem(Mutex::new(m))), bytes))
    }
    fn queue(&self) -> Queue {
        let Ok(mut s) = self.streams.lock() else { return Queue { id: 0 } };
        match self.ctx.default_stream().fork() {
            Ok(n) => {
                s.push(n);
                Queue { id: s.len() - 1 }
            }
            Err(_) => Queue { id: 0 },
        }
    }
    fn write(&self, q: &Queue, dst: &Buffer, src: &[u8]) -> Result<(), RunError> {
        let s = self.stream(q)?;
        let m = mem(dst).ok_or_else(|| self.err("a buffer of another device"))?;
        let mut d = m.0.lock().map_err(|_| self.err("a lock was poisoned"))?;
        let n = src.len().min(dst.bytes());
        let mut view = d.slice_mut(0..n);
        s.memcpy_htod(&src[..n], &mut view).map_err(|e| self.err(format!("copy to the GPU: {e}")))
    }
    fn read(&self, q: &Queue, src: &Buffer, dst: &mut [u8]) -> Result<(), RunError> {
        let s = self.stream(q)?;
        let m = mem(src).ok_or_else(|| self.err("a buffer of another device"))?;
        let d = m.0.lock().map_err(|_| self.err("a lock was poisoned"))?;
        let n = dst.len().min(src.bytes());
        s.memcpy_dtoh(&d.slice(0..n), &mut dst[..n]).map_err(|e| self.err(format!("copy from the GPU: {e}")))?;
        s.synchronize().map_err(|e| self.err(e.to_string()))
    }
    fn copy(&self, q: &Queue, src: &Buffer, dst: &Buffer) -> Result<(), RunError> {
        if Arc::ptr_eq(&src.mem, &dst.mem) {
            return Ok(());
        }
        let s = self.stream(q)?;
        let (a, b) = (mem(src), mem(dst));
        let (Some(a), Some(b)) = (a, b) else { return Err(self.err("a buffer of another device")) };
        let a = a.0.lock().map_err(|_| self.err("a lock was poisoned"))?;
        let mut b = b.0.lock().map_err(|_| self.err("a lock was poisoned"))?;
        let n = src.bytes().min(dst.bytes());
        let mut view = b.slice_mut(0..n);
        s.memcpy_dtod(&a.slice(0..n), &mut view).map_err(|e| self.err(format!("copy on the GPU: {e}")))
    }
    fn accepts(&self) -> &'static [CodeKind] {
        &[CodeKind::Cubin, CodeKind::Ptx]
    }
    fn load(&self, kernels: &[Kernel], code: Code<'_>) -> Result<Arc<dyn Executable>, RunError> {
        let infos = gpu_infos(kernels)?;
        match code {
            Code::Cubin(c) => self.load_image(cudarc::nvrtc::Ptx::from_binary(c.to_vec()), infos, true),
            Code::Ptx(t) => self.load_image(cudarc::nvrtc::Ptx::from_src(t.to_string()), infos, false),
            Code::CpuObject(_) | Code::Jit(_) | Code::Hsaco(_) => {
                Err(self.err(format!("cannot load {} on an NVIDIA GPU", code.kind().describe())))
            }
        }
    }
    fn launch(
        &self,
        q: &Queue,
        exe: &Arc<dyn Executable>,
        k: usize,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
    ) -> Result<(), RunError> {
        let exe = exe.as_any().downcast_ref::<CudaExecutable>().ok_or_else(|| self.err("not a CUDA executable"))?;
        let (Some(f), Some(info)) = (exe.funcs.get(k), exe.infos.get(k)) else {
            return Err(self.err(format!("no device kernel {k}")));
        };
        let s = self.stream(q)?;
        let mems: Vec<&CudaMem> = bufs
            .iter()
            .map(|b| mem(b).ok_or_else(|| self.err("a buffer of another device")))
            .collect::<Result<_, _>>()?;
        let mut guards = Vec::new();
        for m in &mems {
            guards.push(m.0.lock().map_err(|_| self.err("a lock was poisoned"))?);
        }
        let ptrs: Vec<u64> = guards.iter().map(|g| g.device_ptr(&s).0).collect();
        let errs = s.alloc_zeros::<i64>(4).map_err(|e| self.err(e.to_string()))?;
        let params = pack_params(info, &ptrs, dims, errs.device_ptr(&s).0).map_err(|e| self.err(e))?;
        let values: Vec<u64> = params
            .iter()
            .map(|p| match p {
                Param::Ptr(x) => *x,
                Param::Int(v) => *v as u64,
            })
            .collect();
        let (blocks, threads) = grid(&info.launch, dims);
        let cfg = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
        let mut b = s.launch_builder(f);
        for v in &values {
            b.arg(v);
        }
        // SAFETY: the parameters match the entry's declaration (pack_params follows the PTX
        // backend's parameter order); every pointer is a live allocation of the right size.
        unsafe { b.launch(cfg) }.map_err(|e| self.err(format!("launching {}: {e}", info.name)))?;
        // Failed checks are reported at the launch that made them.
        let e = s.clone_dtoh(&errs).map_err(|e| self.err(e.to_string()))?;
        s.synchronize().map_err(|e| self.err(e.to_string()))?;
        RunError::check(tk_abi::check::decode([e[0], e[1], e[2], e[3]], &info.checks, dims))
    }
    fn record(&self, q: &Queue) -> Event {
        let ev = self
            .stream(q)
            .ok()
            .and_then(|s| s.record_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT)).ok());
        match ev {
            Some(e) => Event::gpu(Arc::new(CudaEv(e))),
            None => Event::now(),
        }
    }
    fn wait(&self, e: &Event) -> Result<(), RunError> {
        e.wait().map_err(|m| self.err(m))
    }
    fn synchronize(&self, q: &Queue) -> Result<(), RunError> {
        self.stream(q)?.synchronize().map_err(|e| self.err(e.to_string()))
    }
}

/// The launch information of kernels `k{i}` of a PTX module made from `kernels`.
pub(crate) fn gpu_infos(kernels: &[Kernel]) -> Result<Vec<tk_abi::launch::GpuKernel>, RunError> {
    tk_abi::launch::module_kernels(kernels).map_err(|(message, loc)| RunError::Compile { message, loc })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tk_ir::dims::Dim;

    fn info(symbols: &[&str]) -> PtxKernel {
        PtxKernel {
            name: "e_k0".into(),
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            checks: vec![],
            launch: Launch::Elements { extent: Dim::sym("n"), threads: 256 },
            shared_bytes: 0,
        }
    }

    #[test]
    fn parameters_are_buffers_then_dimensions_then_the_error_slots() {
        let dims: HashMap<String, i64> = [("m".to_string(), 3), ("n".to_string(), 5)].into();
        let p = pack_params(&info(&["m", "n"]), &[0x1000, 0x2000], &dims, 0x9000).expect("packs");
        assert_eq!(p, vec![Param::Ptr(0x1000), Param::Ptr(0x2000), Param::Int(3), Param::Int(5), Param::Ptr(0x9000)]);
        let e = pack_params(&info(&["k"]), &[], &dims, 0).expect_err("k is unbound");
        assert!(e.contains("`k`"), "{e}");
    }

    #[test]
    fn modules_are_built_for_the_gpus_architecture_or_the_newest_older_one() {
        assert_eq!(target_for(8, 6), Ok(NvidiaTarget { sm: 86 }));
        assert_eq!(target_for(8, 7), Ok(NvidiaTarget { sm: 86 }));
        assert_eq!(target_for(9, 0), Ok(NvidiaTarget { sm: 90 }));
        assert_eq!(target_for(10, 0), Ok(NvidiaTarget { sm: 90 }));
        assert_eq!(target_for(12, 0), Ok(NvidiaTarget { sm: 120 }));
        assert!(target_for(7, 5).expect_err("Turing").contains("sm_80"));
    }

    #[test]
    fn grids_cover_the_range() {
        let dims: HashMap<String, i64> = [("n".to_string(), 1000)].into();
        assert_eq!(grid(&info(&[]).launch, &dims), (4, 256));
        let dims: HashMap<String, i64> = [("n".to_string(), 0)].into();
        assert_eq!(grid(&info(&[]).launch, &dims), (1, 256));
        assert_eq!(grid(&Launch::Single, &dims), (1, 1));
        let b = Launch::Blocks { extent: Some(Dim::constant(1 << 40)), threads: 64 };
        assert_eq!(grid(&b, &dims), (tk_abi::grid::GPU_MAX_BLOCKS as u32, 64));
    }
}
