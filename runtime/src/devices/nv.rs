//! The `nv:N` devices: the runtime's face of tk's userspace NVIDIA driver
//! ([`tk_gpu::nv::device::NvGpu`]: GSP-RM booted, the driver's own page tables, a compute and a
//! copy channel, QMD launches). This layer loads cubins (tk-abi's reader: each kernel's code
//! into VRAM, its constant banks), builds constant bank 0 with tk's kernel ABI (the grid's
//! sizes where the CUDA ABI keeps them, then the buffers, dimension values and error slots as
//! the cubin's parameters), and turns the driver's errors into run errors: a GPU that stops
//! answering or never finishes is a lost device (exit code 3), a missing firmware file exit
//! code 4. `nv:sim` is tk-sim's simulated GPU (`tk_sim::pcie::nv`).

use crate::device::{Buffer, Code, CodeKind, Device, Event, Executable, Queue};
use crate::error::RunError;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use tk_abi::launch::{GpuKernel, NvidiaTarget};
use tk_gpu::nv::device::{NvGpu, Vram};
use tk_gpu::nv::qmd;
use tk_gpu::queue::GpuError;
use tk_gpu::transport::Transport;
use tk_ir::kernel::Kernel;

/// VRAM that returns to the heap when the last buffer using it goes.
struct NvMem {
    gpu: Arc<NvGpu>,
    v: Vram,
}

impl Drop for NvMem {
    fn drop(&mut self) {
        self.gpu.free(self.v);
    }
}

/// A kernel whose code is in VRAM: what its launches need.
struct Loaded {
    program: u64,
    code_bytes: u64,
    registers: u32,
    barriers: u32,
    shared_bytes: u32,
    local_bytes: u32,
    /// Constant bank 0 as the cubin initialises it, up to the parameters' end.
    bank0: Vec<u8>,
    param_base: u32,
    params: Vec<tk_abi::cubin::Param>,
    bank2: Option<(u64, u32)>,
}

pub struct NvExecutable {
    _code: Vec<NvMem>,
    kernels: Vec<Kernel>,
    infos: Vec<GpuKernel>,
    loaded: Vec<Loaded>,
}

impl Executable for NvExecutable {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn len(&self) -> usize {
        self.kernels.len()
    }
}

pub struct NvDevice {
    name: String,
    target: NvidiaTarget,
    gpu: Arc<NvGpu>,
    /// The most blocks a launch gets (the simulated GPU runs every block on the CPU).
    max_blocks: i64,
}

impl NvDevice {
    /// Opens `nv:sim` with options (`nv:sim,chip=ad102,link-drop=N`).
    #[cfg(feature = "sim")]
    pub fn open_sim_with(o: tk_sim::pcie::nv::NvSimOptions) -> Result<NvDevice, RunError> {
        let mut d = Self::open("nv:sim", Box::new(tk_sim::pcie::nv::NvSimGpu::new(o)))?;
        d.max_blocks = tk_abi::grid::SIM_MAX_BLOCKS;
        Ok(d)
    }

    /// Boots the GPU behind `t` and opens its channels; the code it runs is sm_86 on Ampere,
    /// sm_89 on Ada.
    pub fn open(name: &str, t: Box<dyn Transport>) -> Result<NvDevice, RunError> {
        Self::open_with_firmware(name, t, None)
    }

    /// [`NvDevice::open`] with the firmware given (else the device's own, or linux-firmware's).
    pub fn open_with_firmware(
        name: &str,
        t: Box<dyn Transport>,
        fw: Option<tk_gpu::nv::firmware::NvFirmware>,
    ) -> Result<NvDevice, RunError> {
        // TK_DRIVER_TRACE=FILE records every transport call (tk_gpu::transport::trace).
        let t: Box<dyn Transport> = match std::env::var_os("TK_DRIVER_TRACE").filter(|p| !p.is_empty()) {
            Some(p) => Box::new(
                tk_gpu::transport::trace::Recorder::create(t, std::path::Path::new(&p))
                    .map_err(|m| RunError::Device { device: name.to_string(), message: m })?,
            ),
            None => t,
        };
        let timeout = tk_gpu::nv::gpu_timeout();
        let gpu = NvGpu::open_with(t, fw, timeout).map_err(|e| match e {
            GpuError::Firmware(m) => RunError::MissingTool { tool: "GPU firmware".into(), message: m },
            e => RunError::Device { device: name.to_string(), message: e.to_string() },
        })?;
        let sm = if gpu.chip().arch == tk_gpu::nv::chip::Arch::Ada { 89 } else { 86 };
        let target = NvidiaTarget { sm };
        Ok(NvDevice { name: name.to_string(), target, gpu: Arc::new(gpu), max_blocks: tk_abi::grid::GPU_MAX_BLOCKS })
    }

    /// The driver underneath (tests count what a launch costs with it).
    pub fn gpu(&self) -> &NvGpu {
        &self.gpu
    }

    /// What `tk devices --verbose` shows.
    pub fn details(&self) -> Vec<String> {
        let c = self.gpu.chip();
        let mut v = vec![format!("chip: {} ({:?}, chip id {:#x}), compiled for {}", c.name, c.arch, c.id, self.target)];
        if let Some(l) = self.gpu.with_boot(|b| b.gsp.layout) {
            v.push(format!(
                "GSP-RM {} runs in WPR2 {:#x}..{:#x}; {} MiB of VRAM, {} MiB free for tk",
                tk_gpu::nv::firmware::VERSION,
                l.wpr_start,
                l.wpr_end,
                l.fb_size >> 20,
                self.gpu.free_vram() >> 20
            ));
        }
        v
    }

    fn err(&self, m: impl Into<String>) -> RunError {
        RunError::Device { device: self.name.clone(), message: m.into() }
    }

    fn gpu_err(&self, e: GpuError) -> RunError {
        self.err(e.to_string())
    }

    fn alloc_vram(&self, bytes: u64) -> Result<NvMem, RunError> {
        let v = self.gpu.alloc(bytes).map_err(|e| self.gpu_err(e))?;
        Ok(NvMem { gpu: self.gpu.clone(), v })
    }
}

fn nv_mem(b: &Buffer) -> Option<&NvMem> {
    b.mem.downcast_ref::<NvMem>()
}

impl Device for NvDevice {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn target(&self) -> String {
        format!("{} (NVIDIA GPU through tk's driver: GSP-RM, page tables, GPFIFO and QMD launches)", self.target)
    }
    fn compile_target(&self) -> tk_abi::target::Target {
        tk_abi::target::Target::Nvidia(self.target)
    }
    fn accepts(&self) -> &'static [CodeKind] {
        &[CodeKind::Cubin]
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer, RunError> {
        Ok(Buffer::new(Arc::new(self.alloc_vram(bytes as u64)?), bytes))
    }
    fn queue(&self) -> Queue {
        Queue { id: 0 }
    }
    fn write(&self, _q: &Queue, dst: &Buffer, src: &[u8]) -> Result<(), RunError> {
        let m = nv_mem(dst).ok_or_else(|| self.err("a buffer of another device"))?;
        let n = src.len().min(dst.bytes());
        self.gpu.upload(m.v.va, &src[..n]).map_err(|e| self.gpu_err(e))
    }
    fn read(&self, _q: &Queue, src: &Buffer, dst: &mut [u8]) -> Result<(), RunError> {
        let m = nv_mem(src).ok_or_else(|| self.err("a buffer of another device"))?;
        let n = dst.len().min(src.bytes());
        self.gpu.download(m.v.va, &mut dst[..n]).map_err(|e| self.gpu_err(e))
    }
    fn copy(&self, _q: &Queue, src: &Buffer, dst: &Buffer) -> Result<(), RunError> {
        if Arc::ptr_eq(&src.mem, &dst.mem) {
            return Ok(());
        }
        let (s, d) = (
            nv_mem(src).ok_or_else(|| self.err("a buffer of another device"))?,
            nv_mem(dst).ok_or_else(|| self.err("a buffer of another device"))?,
        );
        let n = src.bytes().min(dst.bytes()) as u64;
        self.gpu.copy(s.v.va, d.v.va, n).map_err(|e| self.gpu_err(e))
    }
    fn load(&self, kernels: &[Kernel], code: Code<'_>) -> Result<Arc<dyn Executable>, RunError> {
        let Code::Cubin(bytes) = code else {
            return Err(self.err(format!("an NVIDIA GPU runs cubins, not {}", code.kind().describe())));
        };
        let cubin = tk_abi::cubin::read(bytes).map_err(|e| self.err(format!("the cubin: {e}")))?;
        if cubin.sm != self.target.sm {
            return Err(self.err(format!("the cubin is for sm_{}, the GPU is {}", cubin.sm, self.target)));
        }
        let infos = super::cuda::gpu_infos(kernels)?;
        let (mut code_mem, mut loaded) = (Vec::new(), Vec::new());
        for info in &infos {
            let k = cubin
                .kernels
                .iter()
                .find(|k| k.entry && k.name == info.name)
                .ok_or_else(|| self.err(format!("the cubin has no kernel `{}`", info.name)))?;
            if !k.relocations.is_empty() {
                return Err(self.err(format!(
                    "kernel `{}` has {} relocations in its code; tk's driver loads code that needs none",
                    k.name,
                    k.relocations.len()
                )));
            }
            let code = self.alloc_vram(k.code.len() as u64)?;
            self.gpu.upload(code.v.va, &k.code).map_err(|e| self.gpu_err(e))?;
            let bank2 = if k.constant2.is_empty() {
                None
            } else {
                let m = self.alloc_vram(k.constant2.len() as u64)?;
                self.gpu.upload(m.v.va, &k.constant2).map_err(|e| self.gpu_err(e))?;
                let b = (m.v.va, k.constant2.len() as u32);
                code_mem.push(m);
                Some(b)
            };
            let mut bank0 = k.constant0.clone();
            bank0.resize(bank0.len().max((k.param_base + k.param_bytes) as usize), 0);
            loaded.push(Loaded {
                program: code.v.va,
                code_bytes: k.code.len() as u64,
                registers: k.registers,
                barriers: k.barriers,
                shared_bytes: k.shared_bytes as u32,
                local_bytes: k.min_stack_size.max(k.frame_size),
                bank0,
                param_base: k.param_base,
                params: k.params.clone(),
                bank2,
            });
            code_mem.push(code);
        }
        Ok(Arc::new(NvExecutable { _code: code_mem, kernels: kernels.to_vec(), infos, loaded }))
    }
    fn launch(
        &self,
        _q: &Queue,
        exe: &Arc<dyn Executable>,
        k: usize,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
    ) -> Result<(), RunError> {
        let exe = exe.as_any().downcast_ref::<NvExecutable>().ok_or_else(|| self.err("not an NVIDIA executable"))?;
        let (Some(info), Some(kernel), Some(l)) = (exe.infos.get(k), exe.kernels.get(k), exe.loaded.get(k)) else {
            return Err(self.err(format!("no device kernel {k}")));
        };
        if bufs.len() != kernel.bufs.len() {
            return Err(self.err(format!("kernel {k} takes {} buffers, got {}", kernel.bufs.len(), bufs.len())));
        }
        let mut ptrs = Vec::with_capacity(bufs.len());
        for b in bufs {
            ptrs.push(nv_mem(b).ok_or_else(|| self.err("a buffer of another device"))?.v.va);
        }
        let params = super::cuda::pack_params(info, &ptrs, dims, self.gpu.errors_va()).map_err(|m| self.err(m))?;
        if params.len() != l.params.len() {
            return Err(self.err(format!(
                "kernel {k} takes {} parameters, tk passes {}",
                l.params.len(),
                params.len()
            )));
        }
        let g = tk_abi::grid::grid(&info.launch, dims, self.max_blocks);
        let mut bank0 = l.bank0.clone();
        // The driver's part of bank 0 (the CUDA ABI's layout): the block's and grid's sizes.
        for (at, v) in [(0x0, g.threads), (0x4, 1), (0x8, 1), (0xc, g.blocks), (0x10, 1), (0x14, 1)] {
            if let Some(s) = bank0.get_mut(at..at + 4) {
                s.copy_from_slice(&v.to_le_bytes());
            }
        }
        for (p, v) in l.params.iter().zip(&params) {
            let v = match v {
                super::cuda::Param::Ptr(x) => *x,
                super::cuda::Param::Int(x) => *x as u64,
            };
            let at = (l.param_base + u32::from(p.offset)) as usize;
            let n = usize::from(p.size).min(8);
            bank0
                .get_mut(at..at + n)
                .ok_or_else(|| self.err(format!("parameter {} lies outside constant bank 0", p.ordinal)))?
                .copy_from_slice(&v.to_le_bytes()[..n]);
        }
        self.gpu.clear_errors(tk_abi::check::GPU_SLOTS);
        let launch = qmd::Launch {
            program: l.program,
            program_bytes: l.code_bytes,
            blocks: g.blocks,
            threads: g.threads,
            registers: l.registers,
            barriers: l.barriers,
            shared_bytes: l.shared_bytes,
            local_bytes: l.local_bytes,
            sass_version: ((self.target.sm / 10) << 4) | (self.target.sm % 10),
            bank0: (0, 0),
            bank2: l.bank2,
        };
        self.gpu.launch(launch, &bank0).map_err(|e| match e {
            GpuError::Fault(_) => RunError::Fault {
                device: self.name.clone(),
                message: format!("{e} (device kernel {k}; the device kernel computes the expression shown)"),
                loc: kernel.loc,
            },
            GpuError::Invalid(m) => self.err(format!("kernel {k}: {m}")),
            e => self.gpu_err(e),
        })?;
        let mut err = vec![0u8; tk_abi::check::GPU_SLOTS];
        self.gpu.read_errors(&mut err);
        RunError::check(tk_abi::check::decode_gpu(&err, &info.checks, dims))
    }
    fn record(&self, _q: &Queue) -> Event {
        Event::now()
    }
    fn wait(&self, _e: &Event) -> Result<(), RunError> {
        Ok(())
    }
    fn synchronize(&self, _q: &Queue) -> Result<(), RunError> {
        // Every operation waits for its semaphore: nothing is in flight, but a lost device says so.
        self.gpu.check_lost().map_err(|e| self.gpu_err(e))
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use tk_sim::pcie::nv::NvSimGpu;

    /// A trace recorded while the driver boots the simulated GPU (GSP-RM, RPCs, channels) and
    /// copies through it replays against a fresh simulated GPU, every read giving what the
    /// trace holds; a trace whose reads were changed stops at the line that no longer holds.
    #[test]
    fn a_recorded_driver_trace_replays_against_the_simulated_gpu() {
        use tk_gpu::transport::trace::{Recorder, replay};
        let path = std::env::temp_dir().join(format!("tk-nv-trace-{}.txt", std::process::id()));
        {
            let rec = Recorder::create(Box::new(NvSimGpu::new(Default::default())), &path).expect("trace file");
            let d = NvDevice::open("nv:sim", Box::new(rec)).expect("opens");
            let q = d.queue();
            let b = d.alloc(1 << 14).expect("alloc");
            d.write(&q, &b, &[5u8; 1 << 14]).expect("write");
            let mut back = vec![0u8; 1 << 14];
            d.read(&q, &b, &mut back).expect("read");
            assert_eq!(back, vec![5u8; 1 << 14]);
        }
        let text = std::fs::read_to_string(&path).expect("trace");
        let _ = std::fs::remove_file(&path);
        assert!(text.starts_with("# tk driver trace 1"), "{}", &text[..80.min(text.len())]);
        // The doorbell with the copy channel's token, and the queues' contents.
        assert!(text.lines().any(|l| l.starts_with("write32 0 0xbb0090 0x10001")), "the copy channel's doorbell");
        assert!(text.lines().any(|l| l.starts_with("sys ")), "shared memory contents");
        let sim = NvSimGpu::new(Default::default());
        let calls = replay(&text, &sim, &|| Ok(())).expect("replays");
        assert!(calls > 200, "{calls} calls");
        // A read that no longer holds: NV_PMC_BOOT_42.
        let boot42 = text.lines().find(|l| l.starts_with("read32 0 0xa00 ")).expect("BOOT_42").to_string();
        let changed = boot42.replacen("0x1720a100", "0x1920a100", 1);
        assert_ne!(boot42, changed);
        let e = replay(&text.replacen(&boot42, &changed, 1), &NvSimGpu::new(Default::default()), &|| Ok(()))
            .expect_err("differs");
        assert!(e.contains("the device gave 0x1720a100") && e.contains("the trace has 0x1920a100"), "{e}");
    }
}
