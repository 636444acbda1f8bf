//! The `amd:N` device: the runtime's face of tk's AMD userspace driver
//! ([`tk_gpu::amd::device::AmdGpu`]: page tables, VRAM, one PM4 compute queue with a fence, DMA
//! and the dispatch sequence of docs/driver.md). This layer loads code objects, packs kernel
//! arguments (tk-abi), and turns the driver's errors into run errors: a GPU that does not
//! answer is a lost device (exit code 3), never a hang. `amd:sim` is tk-sim's simulated GPU
//! (`tk_sim::pcie::amd`).

use crate::device::{Buffer, Code, CodeKind, Device, Event, Executable, Queue};
use crate::error::RunError;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tk_abi::launch::{AmdTarget, GpuKernel};
use tk_gpu::amd::device::{AmdGpu, Dispatch, Vram};
use tk_gpu::amd::regs::{PTE_EXECUTABLE, PTE_READABLE, PTE_WRITEABLE};
use tk_gpu::queue::GpuError;
use tk_gpu::transport::Transport;
use tk_ir::kernel::Kernel;

/// A kernel uploaded to VRAM: where its code is and its descriptor's registers.
struct Loaded {
    code_va: u64,
    rsrc: [u32; 3],
    lds: u32,
}

pub struct AmdExecutable {
    _code: Vram,
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
    gpu: AmdGpu,
}

/// A size for people: MiB when a whole number of them, else KiB.
pub(crate) fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

impl AmdDevice {
    /// Opens `amd:sim`, the simulated GPU.
    #[cfg(feature = "sim")]
    pub fn open_sim() -> Result<AmdDevice, RunError> {
        Self::open_sim_with(tk_sim::pcie::amd::SimOptions::default())
    }

    /// Opens `amd:sim` with options (`amd:sim,link-drop=N`).
    #[cfg(feature = "sim")]
    pub fn open_sim_with(o: tk_sim::pcie::amd::SimOptions) -> Result<AmdDevice, RunError> {
        Self::open("amd:sim", Box::new(tk_sim::pcie::amd::SimGpu::with_options(o)), AmdTarget::ALL[0])
    }

    /// Boots the GPU behind `t` and sets up its queues and page tables.
    pub fn open(name: &str, t: Box<dyn Transport>, target: AmdTarget) -> Result<AmdDevice, RunError> {
        Self::open_with_firmware(name, t, target, None)
    }

    /// [`AmdDevice::open`] with the firmware given (else the device's own, or linux-firmware's).
    pub fn open_with_firmware(
        name: &str,
        t: Box<dyn Transport>,
        target: AmdTarget,
        firmware: Option<tk_gpu::amd::firmware::FirmwareSet>,
    ) -> Result<AmdDevice, RunError> {
        // TK_DRIVER_TRACE=FILE records every transport call (tk_gpu::transport::trace).
        let t: Box<dyn Transport> = match std::env::var_os("TK_DRIVER_TRACE").filter(|p| !p.is_empty()) {
            Some(p) => Box::new(
                tk_gpu::transport::trace::Recorder::create(t, std::path::Path::new(&p))
                    .map_err(|m| RunError::Device { device: name.to_string(), message: m })?,
            ),
            None => t,
        };
        let gpu = AmdGpu::open_with(t, firmware).map_err(|e| match e {
            GpuError::Firmware(m) => RunError::MissingTool { tool: "GPU firmware".into(), message: m },
            e => RunError::Device { device: name.to_string(), message: e.to_string() },
        })?;
        Ok(AmdDevice { name: name.to_string(), target, gpu })
    }

    /// Requests the transport has made (round trips to the device).
    pub fn round_trips(&self) -> u64 {
        self.gpu.round_trips()
    }

    /// The driver underneath (tests count what a launch costs with it).
    pub fn gpu(&self) -> &AmdGpu {
        &self.gpu
    }

    /// How the GPU was found when it was opened (cold, warm, left running).
    pub fn boot_state(&self) -> tk_gpu::amd::boot::BootState {
        self.gpu.boot_state()
    }

    /// What `tk devices --verbose` shows: the chip and IP versions from IP discovery, the shape
    /// of its graphics core, the BAR sizes, free VRAM and the boot state.
    pub fn details(&self) -> Vec<String> {
        let d = self.gpu.discovery();
        let mut v = Vec::new();
        let chip = match (d.gfx_target(), d.version_of(tk_gpu::amd::discovery::GC)) {
            (Ok(t), Ok((a, b, c))) => format!("{t} (GC {a}.{b}.{c})"),
            (Err(e), _) | (_, Err(e)) => e,
        };
        v.push(format!("chip: {chip}, from its IP discovery table"));
        let ips: Vec<String> = d.ips.iter().map(ToString::to_string).collect();
        v.push(format!("IP blocks: {}", ips.join(", ")));
        if let Some(gc) = &d.gc {
            v.push(format!(
                "graphics core: {} shader engines x {} shader arrays x {} WGPs, wave{}, {} KiB of LDS",
                gc.shader_engines, gc.sa_per_se, gc.wgp0_per_sa, gc.wave_size, gc.lds_size
            ));
        }
        let mib = |b: u8| self.gpu.bar_size(b).map(size).unwrap_or_else(|e| e);
        v.push(format!(
            "BARs: VRAM {}, doorbells {}, registers {}",
            mib(tk_gpu::amd::BAR_VRAM),
            mib(tk_gpu::amd::BAR_DOORBELL),
            mib(tk_gpu::amd::BAR_MMIO)
        ));
        v.push(format!("VRAM free for tk: {} MiB", self.gpu.free_vram() >> 20));
        v.push(format!("boot: {}; firmware from {}", self.gpu.boot_state(), self.gpu.firmware_origin()));
        v
    }

    /// How long a launch may take before the device counts as lost.
    pub fn with_timeout(mut self, t: Duration) -> AmdDevice {
        self.gpu = self.gpu.with_timeout(t);
        self
    }

    fn err(&self, m: impl Into<String>) -> RunError {
        RunError::Device { device: self.name.clone(), message: m.into() }
    }

    fn gpu_err(&self, e: GpuError) -> RunError {
        self.err(e.to_string())
    }
}

fn amd_mem(b: &Buffer) -> Option<&Vram> {
    b.mem.downcast_ref::<Vram>()
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
        let m = self.gpu.alloc(bytes as u64, PTE_READABLE | PTE_WRITEABLE).map_err(|e| self.gpu_err(e))?;
        Ok(Buffer::new(Arc::new(m), bytes))
    }
    fn queue(&self) -> Queue {
        Queue { id: 0 }
    }
    fn write(&self, _q: &Queue, dst: &Buffer, src: &[u8]) -> Result<(), RunError> {
        let m = amd_mem(dst).ok_or_else(|| self.err("a buffer of another device"))?;
        let n = src.len().min(dst.bytes());
        self.gpu.upload(m.va(), &src[..n]).map_err(|e| self.gpu_err(e))
    }
    fn read(&self, _q: &Queue, src: &Buffer, dst: &mut [u8]) -> Result<(), RunError> {
        let m = amd_mem(src).ok_or_else(|| self.err("a buffer of another device"))?;
        let n = dst.len().min(src.bytes());
        self.gpu.download(m.va(), &mut dst[..n]).map_err(|e| self.gpu_err(e))
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
        let Code::Hsaco(bytes) = code else {
            return Err(self.err(format!("an AMD GPU runs AMD code objects, not {}", code.kind().describe())));
        };
        let obj = tk_abi::amd::read_code(bytes).map_err(|m| self.err(format!("the code object: {m}")))?;
        let mem = self
            .gpu
            .alloc(obj.text.len() as u64, PTE_READABLE | PTE_WRITEABLE | PTE_EXECUTABLE)
            .map_err(|e| self.gpu_err(e))?;
        self.gpu.upload(mem.va(), &obj.text).map_err(|e| self.gpu_err(e))?;
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
        let exe = exe.as_any().downcast_ref::<AmdExecutable>().ok_or_else(|| self.err("not an AMD executable"))?;
        let (Some(info), Some(kernel), Some(l)) = (exe.infos.get(k), exe.kernels.get(k), exe.loaded.get(k)) else {
            return Err(self.err(format!("no device kernel {k}")));
        };
        if bufs.len() != kernel.bufs.len() {
            return Err(self.err(format!("kernel {k} takes {} buffers, got {}", kernel.bufs.len(), bufs.len())));
        }
        let g = tk_abi::grid::grid(&info.launch, dims, tk_abi::grid::GPU_MAX_BLOCKS);
        let mut addresses = Vec::with_capacity(bufs.len());
        for b in bufs {
            addresses.push(amd_mem(b).ok_or_else(|| self.err("a buffer of another device"))?.va());
        }
        let mut symbols = Vec::with_capacity(info.symbols.len());
        for s in &info.symbols {
            symbols.push(*dims.get(s).ok_or_else(|| self.err(format!("dimension `{s}` has no value")))?);
        }
        let args = tk_abi::amd::kernargs(&addresses, &symbols, self.gpu.errors_va(), g.blocks);
        let d = Dispatch {
            code_va: l.code_va,
            rsrc: l.rsrc,
            lds_bytes: l.lds,
            kernargs: &args,
            blocks: g.blocks,
            threads: g.threads,
        };
        let mut err = [0u8; tk_abi::check::GPU_SLOTS];
        self.gpu.dispatch(&d, &mut err).map_err(|e| match e {
            GpuError::Fault(_) => RunError::Fault {
                device: self.name.clone(),
                message: format!("{e} (device kernel {k})"),
                loc: kernel.loc,
            },
            GpuError::Invalid(m) => self.err(format!("kernel {k}: {m}")),
            e => self.gpu_err(e),
        })?;
        RunError::check(tk_abi::check::decode_gpu(&err, &info.checks, dims))
    }
    fn record(&self, _q: &Queue) -> Event {
        Event::now()
    }
    fn wait(&self, _e: &Event) -> Result<(), RunError> {
        Ok(())
    }
    fn synchronize(&self, _q: &Queue) -> Result<(), RunError> {
        // Every operation waits for its fence: nothing is in flight, but a lost device says so.
        self.gpu.check_lost().map_err(|e| self.gpu_err(e))
    }
}

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use std::time::Instant;
    use tk_gpu::amd::gmc::PAGE;
    use tk_gpu::amd::pm4::Packet;
    use tk_sim::pcie::amd::SimGpu;
    use tk_sim::pcie::tampered::{Tampered, Withheld};

    /// The driver reads the GPU's IP discovery table when it opens it: the simulated Navi 31's
    /// says gfx1100 and its shape; a GPU of another GC version, one whose GC registers lie
    /// elsewhere, and one without a table are refused, each saying why.
    /// `amd:sim,link-drop=N`: wherever the link drops, in the boot or in a later copy, the
    /// device reports the lost link (not a parse error, not a hang) within 5 s.
    /// A trace recorded while the driver boots the simulated GPU and copies through it replays
    /// against a fresh simulated GPU, every read giving what the trace holds; a trace whose
    /// reads or writes were changed stops at the line that no longer holds.
    #[test]
    fn a_recorded_driver_trace_replays_against_the_simulated_gpu() {
        use tk_gpu::transport::trace::{Recorder, replay};
        let path = std::env::temp_dir().join(format!("tk-trace-{}.txt", std::process::id()));
        {
            let rec = Recorder::create(Box::new(SimGpu::new()), &path).expect("trace file");
            let d = AmdDevice::open("amd:sim", Box::new(rec), AmdTarget::ALL[0]).expect("opens");
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
        assert!(text.lines().any(|l| l.starts_with("write64 2 0x800 ")), "the SDMA doorbell");
        assert!(text.lines().any(|l| l.starts_with("sys 0 ")), "ring contents");
        let settle = |sim: &SimGpu| sim.settle(Duration::from_secs(5));
        let sim = SimGpu::new();
        let calls = replay(&text, &sim, &|| settle(&sim)).expect("replays");
        assert!(calls > 1000, "{calls} calls");
        // A read that no longer holds: the discovery header's first byte.
        let header = text.lines().find(|l| l.starts_with("read 0 ")).expect("discovery read").to_string();
        let changed = header.replacen("-> 07", "-> 08", 1);
        assert_ne!(header, changed);
        let sim = SimGpu::new();
        let e = replay(&text.replacen(&header, &changed, 1), &sim, &|| settle(&sim)).expect_err("differs");
        assert!(e.contains("the device gave 07") && e.contains("the trace has 08"), "{e}");
        // A write that no longer holds: the SDMA ring left disabled, so the first copy faults.
        let map = tk_gpu::amd::regs::RegMap::new(&tk_gpu::amd::discovery::navi31()).expect("registers");
        let reg = map.byte(tk_gpu::amd::regs::SDMA0_QUEUE0_RB_CNTL);
        let enable = text
            .lines()
            .find(|l| l.starts_with(&format!("write32 5 0x{reg:x} ")) && l.ends_with('9'))
            .expect("RB_ENABLE")
            .to_string();
        let sim = SimGpu::new();
        let disabled = format!("{}8", &enable[..enable.len() - 1]);
        let e = replay(&text.replacen(&enable, &disabled, 1), &sim, &|| settle(&sim)).expect_err("faults");
        assert!(e.contains("write64 2 0x800") && e.contains("ring is not enabled"), "{e}");
    }

    #[test]
    fn a_dropped_link_is_reported_as_such_in_the_boot_and_later() {
        use tk_gpu::amd::device::LINK_LOST;
        use tk_sim::pcie::amd::SimOptions;
        let boot = AmdDevice::open_sim().expect("opens").round_trips();
        assert!(boot > 100, "{boot} accesses to boot");
        let mut in_boot = 0;
        let mut later = 0;
        for n in [0, 1, 2, boot / 3, boot - 1, boot, boot + 1, boot + 3, boot + 10, boot + 17] {
            let start = Instant::now();
            let result =
                AmdDevice::open_sim_with(SimOptions { link_drop: Some(n), ..SimOptions::default() }).and_then(|d| {
                    let q = d.queue();
                    let b = d.alloc(1 << 16)?;
                    d.write(&q, &b, &[7u8; 1 << 16])?;
                    let mut back = vec![0u8; 1 << 16];
                    d.read(&q, &b, &mut back)?;
                    d.synchronize(&q)?;
                    Ok(back)
                });
            let e = result.expect_err("the link dropped").to_string();
            assert!(e.contains(LINK_LOST), "link-drop={n}: {e}");
            assert!(start.elapsed() < Duration::from_secs(5), "link-drop={n}: {:?}", start.elapsed());
            if n < boot { in_boot += 1 } else { later += 1 }
        }
        assert!(in_boot >= 4 && later >= 4);
        assert!(SimOptions::parse(",link-drop=7") == Ok(SimOptions { link_drop: Some(7), ..SimOptions::default() }));
        assert!(SimOptions::parse(",warp").unwrap_err().contains("unknown option `warp`"));
    }

    #[test]
    fn opening_reads_ip_discovery_and_refuses_gpus_tk_does_not_know() {
        use tk_gpu::amd::BAR_VRAM;
        use tk_gpu::amd::discovery::{self, TABLE_OFFSET_FROM_END};
        let at = tk_sim::pcie::amd::VRAM_BYTES as u64 - TABLE_OFFSET_FROM_END;
        let gpu = AmdGpu::open(Box::new(SimGpu::new())).expect("opens");
        assert_eq!(gpu.discovery().gfx_target(), Ok("gfx1100"));
        assert_eq!(gpu.discovery().gc.as_ref().map(|g| (g.shader_engines, g.wave_size)), Some((6, 32)));
        let refused = |table: &[u8]| -> String {
            let sim = SimGpu::new();
            sim.write_bytes(BAR_VRAM, at, table).expect("write");
            match AmdGpu::open(Box::new(sim)) {
                Ok(_) => panic!("opened"),
                Err(e) => e.to_string(),
            }
        };
        let mut d = discovery::navi31();
        d.ips[0].version = (12, 0, 1);
        let e = refused(&discovery::build(&d));
        assert!(e.contains("discovery: GC 12.0.1 is not supported"), "{e}");
        // The driver finds the registers where the table says: with GC moved, its writes miss
        // the simulated GPU's registers.
        let mut d = discovery::navi31();
        d.ips[0].bases[0] = 0x2000;
        let e = refused(&discovery::build(&d));
        assert!(e.contains("unexpected register write") && e.contains(&format!("{:#x}", (0x2000 + 0x16f3) * 4)), "{e}");
        let e = refused(&[0; 16]);
        assert!(e.contains("no IP discovery table 64 KiB below the end of VRAM (read through the VRAM BAR"), "{e}");
        let mut b = discovery::build(&discovery::navi31());
        b[100] ^= 1;
        let e = refused(&b);
        assert!(e.contains("checksum"), "{e}");
    }

    #[test]
    fn a_hung_gpu_is_a_lost_device_and_can_be_reopened() {
        let dev =
            AmdDevice::open("amd:hung", Box::new(Tampered(SimGpu::new(), Withheld::Doorbells)), AmdTarget::ALL[0])
                .expect("opens")
                .with_timeout(Duration::from_millis(200));
        let start = Instant::now();
        let e = dev.gpu.run(&[Packet::Nop(1)]).expect_err("times out");
        assert!(start.elapsed() < Duration::from_secs(5), "no hang");
        assert!(e.to_string().contains("did not finish") && e.to_string().contains("lost"), "{e}");
        let e = dev.alloc(16).err().expect("lost");
        assert!(e.to_string().contains("open it again"), "{e}");
        // A new device works.
        let dev = AmdDevice::open_sim().expect("reopens");
        dev.gpu.run(&[Packet::Nop(1)]).expect("the simulated GPU answers");
    }

    #[test]
    fn buffers_round_trip_through_vram_and_are_freed() {
        let dev = AmdDevice::open_sim().expect("opens");
        let q = dev.queue();
        let free = |d: &AmdDevice| d.gpu.free_vram();
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

    #[test]
    fn no_vram_left_for_page_tables_is_out_of_memory_and_the_device_stays_usable() {
        let dev = AmdDevice::open_sim().expect("opens");
        let free = dev.gpu.free_vram();
        // All free VRAM as one buffer leaves no page for the tables that map it.
        let e = dev.alloc(free as usize).err().expect("no room for its page tables");
        assert!(e.to_string().contains("out of VRAM"), "{e}");
        assert_eq!(dev.gpu.free_vram(), free, "the allocation was undone");
        let q = dev.queue();
        let b = dev.alloc(100).expect("the device is still usable");
        dev.write(&q, &b, &[7; 100]).expect("write");
    }

    #[cfg(not(target_os = "macos"))]
    #[test]
    fn the_iokit_transport_is_macos_only() {
        let e = crate::devices::open("amd:iokit").err().expect("not here");
        assert!(e.to_string().contains("macOS only"), "{e}");
    }
}
