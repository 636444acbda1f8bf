//! The devices: [`cpu`] (the default), [`cuda`] (NVIDIA GPUs through libcuda), [`sim`] (the
//! simulated GPUs, feature `sim`) and [`amd`] (tk's userspace AMD driver, on tk-gpu); and the
//! device registry: [`open`] a device by name, [`list`] this machine's.

pub mod amd;
pub mod cpu;
pub mod cuda;
pub mod nv;
#[cfg(feature = "sim")]
pub mod sim;

use crate::device::Device;
use crate::error::RunError;
use std::sync::Arc;

/// The devices this machine has: (name, compile target). Simulated GPUs are always there
/// (`sim:sm_86` is listed; any NVIDIA target works). NVIDIA GPUs are listed when the driver is
/// installed; otherwise a line says that there is none.
pub fn list() -> Vec<(String, String)> {
    let cpu = cpu::CpuDevice::new();
    let mut v = vec![(cpu.name(), cpu.target())];
    #[cfg(feature = "sim")]
    {
        let sim = sim::SimDevice::new(tk_abi::launch::NvidiaTarget { sm: 86 });
        let amd = sim::SimDevice::amd(tk_abi::launch::AmdTarget::ALL[0]);
        v.extend([
            (sim.name(), format!("{} (also sim:sm_80, sim:sm_89, sim:sm_90, sim:sm_120)", sim.target())),
            (amd.name(), format!("{} (also sim:gfx1101, sim:gfx1102)", amd.target())),
            ("sass:sm_86".into(), "sm_86 (emulated SASS from ptxas; also sass:sm_80, sass:sm_89; needs ptxas)".into()),
            (
                "amd:sim".into(),
                "gfx1100 (simulated PCIe GPU: cold boot, page tables, PM4 and SDMA queues, RDNA3 emulator)".into(),
            ),
            (
                "nv:sim".into(),
                "sm_86 (simulated PCIe GA102: GSP boot, RPCs, page tables, GPFIFO and QMD launches, SASS emulator; \
                 nv:sim,chip=ad102 is an sm_89 AD102)"
                    .into(),
            ),
        ]);
    }
    v.extend(pcie_gpus());
    if !cuda::driver_present() {
        v.push(("cuda:-".into(), "none: no NVIDIA driver (libcuda) on this machine".into()));
        return v;
    }
    let mut n = 0;
    while let Ok(d) = cuda::CudaDevice::open(n) {
        v.push((d.name(), d.target()));
        n += 1;
    }
    if n == 0 {
        v.push(("cuda:-".into(), "none: the NVIDIA driver reports no usable GPU".into()));
    }
    v
}

/// [`list`] with details per device, for `tk devices --verbose`: for the AMD GPUs tk can open,
/// what their IP discovery table says, their BARs and boot state (opening them to find out); for
/// GPUs on the PCI bus, their driver binding, IOMMU group and BAR sizes; for NVIDIA GPUs, the
/// architecture tk compiles for.
pub fn list_verbose() -> Vec<(String, String, Vec<String>)> {
    list()
        .into_iter()
        .map(|(name, target)| {
            let details = details(&name);
            (name, target, details)
        })
        .collect()
}

fn details(name: &str) -> Vec<String> {
    let amd: Option<Result<amd::AmdDevice, RunError>> = match name {
        #[cfg(feature = "sim")]
        "amd:sim" => Some(amd::AmdDevice::open_sim()),
        #[cfg(unix)]
        n if n.starts_with("amd:tinygpu=") => Some(open_tinygpu(n)),
        _ => None,
    };
    if let Some(a) = amd {
        return match a {
            Ok(a) => a.details(),
            Err(e) => vec![format!("cannot open: {e}")],
        };
    }
    #[cfg(feature = "sim")]
    if name == "nv:sim" {
        return match nv::NvDevice::open_sim_with(Default::default()) {
            Ok(d) => d.details(),
            Err(e) => vec![format!("cannot open: {e}")],
        };
    }
    #[cfg(target_os = "linux")]
    if let Some(addr) = name.strip_prefix("amd:pci=") {
        use tk_gpu::transport::linux_pci::{LinuxOs, describe};
        return match describe(&LinuxOs, addr) {
            Ok(f) => {
                let bars: Vec<String> = f
                    .bar_sizes
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| **s > 0)
                    .map(|(i, s)| format!("BAR{i} {}", amd::size(*s)))
                    .collect();
                vec![
                    format!(
                        "driver: {}; IOMMU group: {}",
                        f.driver.as_deref().unwrap_or("none"),
                        f.iommu_group.map_or("none (the IOMMU is off)".to_string(), |g| g.to_string())
                    ),
                    format!("BARs: {}", bars.join(", ")),
                    "boot: not opened (the bring-up runs when a program uses it; it has run against tk's simulated GPU \
                     only)"
                        .into(),
                ]
            }
            Err(e) => vec![e],
        };
    }
    Vec::new()
}

/// The AMD and NVIDIA GPUs tk's own drivers can reach: a TinyGPU server named by
/// `TK_TINYGPU_SOCKET`, and on Linux the AMD and NVIDIA display controllers on the PCI bus.
fn pcie_gpus() -> Vec<(String, String)> {
    let mut v = Vec::new();
    #[cfg(unix)]
    if let Ok(p) = std::env::var("TK_TINYGPU_SOCKET") {
        let probe = tk_gpu::transport::tinygpu::TinyGpu::connect(std::path::Path::new(&p)).and_then(|t| t.probe());
        let prefix = if matches!(probe, Ok((0x10de, _))) { "nv" } else { "amd" };
        let what = probe
            .map(|(vendor, id)| format!("PCI {vendor:04x}:{id:04x} through the TinyGPU server"))
            .unwrap_or_else(|e| format!("unreachable: {e}"));
        v.push((format!("{prefix}:tinygpu={p}"), what));
    }
    #[cfg(target_os = "linux")]
    {
        use tk_gpu::transport::linux_pci::{LinuxOs, enumerate};
        for f in enumerate(&LinuxOs).unwrap_or_default() {
            let prefix = match f.vendor {
                0x1002 => "amd",
                0x10de => "nv",
                _ => continue,
            };
            if f.is_gpu() {
                let binding = match f.driver.as_deref() {
                    Some(d) => format!("bound to {d}"),
                    None => "bound to no driver".to_string(),
                };
                v.push((
                    format!("{prefix}:pci={}", f.address),
                    format!(
                        "PCI {:04x}:{:04x}, {binding} (tk's bring-up has run against its simulated GPU only: \
                         docs/driver.md)",
                        f.vendor, f.device
                    ),
                ));
            }
        }
    }
    v
}

/// Opens `amd:pci=ADDRESS` on Linux: the function through VFIO (`tk_gpu::transport::linux_pci`,
/// whose errors say what stands in the way: no such function, not a GPU, another driver, no
/// IOMMU group), then the driver's bring-up with linux-firmware's blobs. Elsewhere it says which
/// transport to use instead.
fn open_pci(name: &str) -> Result<amd::AmdDevice, RunError> {
    let addr = &name["amd:pci=".len()..];
    let dev = |m: String| RunError::Device { device: name.to_string(), message: m };
    #[cfg(target_os = "linux")]
    {
        use tk_gpu::transport::linux_pci::{LinuxOs, LinuxPci, describe};
        match describe(&LinuxOs, addr) {
            Ok(f) if f.vendor != 0x1002 => {
                return Err(dev(format!(
                    "{addr} is not an AMD GPU (PCI {:04x}:{:04x}); `tk devices` lists them",
                    f.vendor, f.device
                )));
            }
            Ok(_) => {}
            Err(_) => {
                return Err(dev(format!("no PCI device {addr} (`tk devices` lists the AMD GPUs this machine sees)")));
            }
        }
        let t = LinuxPci::open(&LinuxOs, addr).map_err(dev)?;
        amd::AmdDevice::open(name, Box::new(t), tk_abi::launch::AmdTarget::ALL[0])
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(dev(format!(
            "{addr}: `amd:pci=` is the Linux PCIe transport (VFIO); on a Mac a GPU is `amd:tinygpu=SOCKET` (the \
             TinyGPU.app server) or `amd:iokit`"
        )))
    }
}

/// Opens `amd:tinygpu=SOCKET`: the GPU behind a TinyGPU.app server.
#[cfg(unix)]
fn open_tinygpu(n: &str) -> Result<amd::AmdDevice, RunError> {
    let path = std::path::Path::new(&n["amd:tinygpu=".len()..]);
    let dev = |m: String| RunError::Device { device: n.to_string(), message: m };
    let t = tk_gpu::transport::tinygpu::TinyGpu::connect(path).map_err(dev)?;
    let (vendor, id) = t.probe().map_err(dev)?;
    if vendor != 0x1002 {
        return Err(dev(format!("the server's GPU is vendor {vendor:#06x} device {id:#06x}, not AMD")));
    }
    amd::AmdDevice::open(n, Box::new(t), tk_abi::launch::AmdTarget::ALL[0])
}

/// Opens `nv:tinygpu=SOCKET`: the NVIDIA GPU behind a TinyGPU.app server.
#[cfg(unix)]
fn open_nv_tinygpu(n: &str) -> Result<nv::NvDevice, RunError> {
    let path = std::path::Path::new(&n["nv:tinygpu=".len()..]);
    let dev = |m: String| RunError::Device { device: n.to_string(), message: m };
    let t = tk_gpu::transport::tinygpu::TinyGpu::connect(path).map_err(dev)?;
    let (vendor, id) = t.probe().map_err(dev)?;
    if vendor != 0x10de {
        return Err(dev(format!("the server's GPU is vendor {vendor:#06x} device {id:#06x}, not NVIDIA")));
    }
    nv::NvDevice::open(n, Box::new(t))
}

/// Opens `nv:pci=ADDRESS` on Linux: the function through VFIO, then the NVIDIA bring-up.
fn open_nv_pci(name: &str) -> Result<nv::NvDevice, RunError> {
    let addr = &name["nv:pci=".len()..];
    let dev = |m: String| RunError::Device { device: name.to_string(), message: m };
    #[cfg(target_os = "linux")]
    {
        use tk_gpu::transport::linux_pci::{LinuxOs, LinuxPci, describe};
        match describe(&LinuxOs, addr) {
            Ok(f) if f.vendor != 0x10de => {
                return Err(dev(format!(
                    "{addr} is not an NVIDIA GPU (PCI {:04x}:{:04x}); `tk devices` lists the GPUs",
                    f.vendor, f.device
                )));
            }
            Ok(_) => {}
            Err(_) => return Err(dev(format!("no PCI device {addr} (`tk devices` lists the GPUs this machine sees)"))),
        }
        let t = LinuxPci::open(&LinuxOs, addr).map_err(dev)?;
        nv::NvDevice::open(name, Box::new(t))
    }
    #[cfg(not(target_os = "linux"))]
    {
        Err(dev(format!(
            "{addr}: `nv:pci=` is the Linux PCIe transport (VFIO); on a Mac a GPU is `nv:tinygpu=SOCKET` (the \
             TinyGPU.app server) or `nv:iokit`"
        )))
    }
}

/// Opens a device by name. A name that is not a device is an [`RunError::Argument`]; a device
/// that exists by name but cannot be used here (no driver, no such GPU) is a
/// [`RunError::Device`].
pub fn open(name: &str) -> Result<Arc<dyn Device>, RunError> {
    let bad = |m: String| RunError::Argument { message: format!("device `{name}`: {m}") };
    match name {
        "cpu" => Ok(Arc::new(cpu::CpuDevice::with_tier(
            cpu::TierPolicy::from_env().map_err(|message| RunError::Argument { message })?,
        ))),
        n if n.starts_with("cpu,") => {
            let mut tier = None;
            for opt in n["cpu,".len()..].split(',') {
                match opt.split_once('=') {
                    Some(("tier", v)) => {
                        tier = Some(cpu::TierPolicy::parse(v).map_err(bad)?);
                    }
                    _ => {
                        return Err(bad(format!(
                            "unknown option `{opt}`: the CPU takes tier=cranelift|llvm|auto (e.g. cpu,tier=llvm)"
                        )));
                    }
                }
            }
            let tier = match tier {
                Some(t) => t,
                None => cpu::TierPolicy::from_env().map_err(|message| RunError::Argument { message })?,
            };
            Ok(Arc::new(cpu::CpuDevice::with_tier(tier)))
        }
        #[cfg(feature = "sim")]
        n if n.starts_with("sim:") => {
            let hint = "a simulated device is sim:<GPU target>, e.g. sim:sm_86 or sim:gfx1100";
            let t = &n["sim:".len()..];
            if t.starts_with("gfx") {
                let t = t.parse().map_err(|m: String| bad(format!("{m}; {hint}")))?;
                return Ok(Arc::new(sim::SimDevice::amd(t)));
            }
            let t = t.parse().map_err(|m: String| bad(format!("{m}; {hint}")))?;
            Ok(Arc::new(sim::SimDevice::new(t)))
        }
        #[cfg(feature = "sim")]
        n if n.starts_with("sass:") => {
            let hint = "the SASS emulator's devices are sass:sm_80, sass:sm_86 and sass:sm_89 (sim:sm_XX simulates the \
                        PTX of any NVIDIA target)";
            let t: tk_abi::launch::NvidiaTarget =
                n["sass:".len()..].parse().map_err(|m: String| bad(format!("{m}; {hint}")))?;
            if !tk_sim::sass::SMS.contains(&t.sm) {
                return Err(bad(format!("the SASS emulator does not run {t}; {hint}")));
            }
            Ok(Arc::new(sim::SimDevice::sass(t)))
        }
        #[cfg(not(feature = "sim"))]
        n if n.starts_with("sim:") || n.starts_with("sass:") || n.starts_with("amd:sim") || n.starts_with("nv:sim") => {
            Err(RunError::Device {
                device: n.to_string(),
                message: "this build of the tk runtime has no simulated devices (its cargo feature `sim` is off)"
                    .into(),
            })
        }
        #[cfg(feature = "sim")]
        n if n == "nv:sim" || n.starts_with("nv:sim,") => {
            let opts = tk_sim::pcie::nv::NvSimOptions::parse(&n["nv:sim".len()..]).map_err(bad)?;
            Ok(Arc::new(nv::NvDevice::open_sim_with(opts)?))
        }
        #[cfg(unix)]
        n if n.starts_with("nv:tinygpu=") => Ok(Arc::new(open_nv_tinygpu(n)?)),
        n if n.starts_with("nv:pci=") => Ok(Arc::new(open_nv_pci(n)?)),
        "nv:iokit" => {
            #[cfg(target_os = "macos")]
            {
                let dev = |m: String| RunError::Device { device: name.to_string(), message: m };
                let t = tk_gpu::transport::iokit::IoKit::open().map_err(dev)?;
                Ok(Arc::new(nv::NvDevice::open(name, Box::new(t))?))
            }
            #[cfg(not(target_os = "macos"))]
            Err(RunError::Device {
                device: name.to_string(),
                message: "the IOKit transport (the TinyGPU DriverKit extension) exists on macOS only".into(),
            })
        }
        n if n.starts_with("nv:") => Err(RunError::Device {
            device: n.to_string(),
            message: "unknown NVIDIA device; tk's own NVIDIA driver has `nv:sim` (the simulated GPU, options \
                      chip=ga102|ad102|gb202, left-running, hang, link-drop=N), `nv:tinygpu=SOCKET` (a GPU behind a \
                      TinyGPU.app server), `nv:pci=ADDRESS` (Linux) and `nv:iokit` (macOS); NVIDIA GPUs with \
                      NVIDIA's driver are `cuda:N`"
                .into(),
        }),
        n if n.starts_with("cuda:") => {
            let k: usize = n["cuda:".len()..]
                .parse()
                .map_err(|_| bad("expected cuda:N with N a GPU number (cuda:0 is the first)".into()))?;
            Ok(Arc::new(cuda::CudaDevice::open(k)?))
        }
        #[cfg(feature = "sim")]
        n if n == "amd:sim" || n.starts_with("amd:sim,") => {
            let opts = tk_sim::pcie::amd::SimOptions::parse(&n["amd:sim".len()..]).map_err(bad)?;
            Ok(Arc::new(amd::AmdDevice::open_sim_with(opts)?))
        }
        #[cfg(unix)]
        n if n.starts_with("amd:tinygpu=") => Ok(Arc::new(open_tinygpu(n)?)),
        "amd:iokit" => {
            #[cfg(target_os = "macos")]
            {
                let dev = |m: String| RunError::Device { device: name.to_string(), message: m };
                let t = tk_gpu::transport::iokit::IoKit::open().map_err(dev)?;
                Ok(Arc::new(amd::AmdDevice::open(name, Box::new(t), tk_abi::launch::AmdTarget::ALL[0])?))
            }
            #[cfg(not(target_os = "macos"))]
            Err(RunError::Device {
                device: name.to_string(),
                message: "the IOKit transport (the TinyGPU DriverKit extension) exists on macOS only".into(),
            })
        }
        n if n.starts_with("amd:pci=") => Ok(Arc::new(open_pci(n)?)),
        n if n.starts_with("amd:") => Err(RunError::Device {
            device: n.to_string(),
            message: "unknown AMD device; AMD devices are `amd:sim` (the simulated GPU), `amd:tinygpu=SOCKET` (a GPU \
                      behind a TinyGPU.app server) and `amd:pci=ADDRESS`; `tk devices` lists this machine's"
                .into(),
        }),
        _ => Err(bad(
            "unknown device; device names are `cpu`, `sim:<target>` (e.g. sim:sm_86, sim:gfx1100), `sass:sm_86`, \
                      `cuda:N`, `amd:N` and `nv:sim` (`tk devices` lists this machine's)"
                .into(),
        )),
    }
}
