//! The Linux PCIe transport (`amd:pci=ADDRESS`): a GPU found through sysfs and driven through
//! VFIO, which gives a userspace driver the function's BARs, configuration space, reset and DMA
//! mappings behind the IOMMU.
//!
//! The operating system is behind two small traits, [`PciOs`] (the sysfs tree and opening a
//! function through VFIO) and [`VfioFunction`] (one opened function), so that every path is
//! tested against a fake; [`LinuxOs`] is the real one. It has not run on hardware here (there
//! is none): docs/driver.md says so.
//!
//! Facts from public sources: the sysfs attributes (`vendor`, `device`, `class`, `resource`,
//! the `driver` and `iommu_group` links, `driver_override`, `drivers_probe`) are the kernel's
//! Documentation/ABI/testing/sysfs-bus-pci; VFIO's ioctls, structures and region indices are
//! include/uapi/linux/vfio.h, and the binding procedure Documentation/driver-api/vfio.rst.

use super::{HostMem, SysMem, Transport, check_config_access};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// One PCI function as sysfs describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciFunction {
    /// The address, `DDDD:BB:DD.F`.
    pub address: String,
    pub vendor: u16,
    pub device: u16,
    /// The class code (24 bits: class, subclass, programming interface).
    pub class: u32,
    /// The driver bound to it (`amdgpu`, `vfio-pci`), if any.
    pub driver: Option<String>,
    /// Its IOMMU group, if the IOMMU is on.
    pub iommu_group: Option<u32>,
    /// The sizes of BARs 0 to 5 in bytes (0 where there is none), from `resource`.
    pub bar_sizes: [u64; 6],
}

impl PciFunction {
    /// Display controllers (class 0x03): VGA, 3D and other display devices.
    pub fn is_gpu(&self) -> bool {
        self.class >> 16 == 0x03
    }
}

/// A region of an opened function, as VFIO describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub size: u64,
    /// Where the region is in the device file (for reads, writes and mappings).
    pub offset: u64,
    /// Whether it can be mapped into the process.
    pub mappable: bool,
}

/// A mapped BAR: 32-bit accesses, each one load or store.
pub trait MappedBar: Send + Sync {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the 32-bit register at `off` (in bounds and aligned: the caller checks).
    fn read32(&self, off: u64) -> u32;
    fn write32(&self, off: u64, v: u32);
}

/// One function opened through VFIO.
pub trait VfioFunction: Send + Sync {
    /// Region `index`: BARs 0-5, the ROM (6), configuration space (7).
    fn region(&self, index: u32) -> Result<Region, String>;
    /// Reads or writes bytes of the device file (configuration space through region 7).
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String>;
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), String>;
    /// Maps a region.
    fn map(&self, region: Region) -> Result<Arc<dyn MappedBar>, String>;
    /// Resets the function.
    fn reset(&self) -> Result<(), String>;
    /// Allocates `bytes` of memory and maps it for the device's DMA through the IOMMU: the
    /// memory and its pieces' bus addresses.
    fn dma(&self, bytes: usize) -> Result<SysMem, String>;
}

/// The operating system's side: the sysfs tree of PCI functions, and opening one through VFIO.
pub trait PciOs: Send + Sync {
    /// The addresses under /sys/bus/pci/devices.
    fn functions(&self) -> Result<Vec<String>, String>;
    /// An attribute file of a function (`vendor`, `resource`, ...), without trailing space.
    fn attribute(&self, address: &str, name: &str) -> Result<String, String>;
    /// The last component of a link of a function (`driver`, `iommu_group`), or `None`.
    fn link(&self, address: &str, name: &str) -> Option<String>;
    /// Opens the function through VFIO group `group`.
    fn open(&self, group: u32, address: &str) -> Result<Box<dyn VfioFunction>, String>;
}

fn hex(s: &str) -> Option<u64> {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// A function's description from sysfs.
pub fn describe(os: &dyn PciOs, address: &str) -> Result<PciFunction, String> {
    let attr = |n: &str| -> Result<u64, String> {
        let s = os.attribute(address, n)?;
        hex(&s).ok_or_else(|| format!("{address}: sysfs `{n}` is `{s}`, not a hexadecimal number"))
    };
    let mut bar_sizes = [0u64; 6];
    // `resource`: one line per resource, "start end flags" in hexadecimal; BARs are lines 0-5.
    let res = os.attribute(address, "resource")?;
    for (i, line) in res.lines().take(6).enumerate() {
        let f: Vec<u64> = line.split_whitespace().filter_map(hex).collect();
        if let [start, end, _] = f[..]
            && end > start
        {
            bar_sizes[i] = end - start + 1;
        }
    }
    let group = os.link(address, "iommu_group");
    Ok(PciFunction {
        address: address.to_string(),
        vendor: attr("vendor")? as u16,
        device: attr("device")? as u16,
        class: attr("class")? as u32,
        driver: os.link(address, "driver"),
        iommu_group: match group {
            Some(g) => Some(g.parse().map_err(|_| format!("{address}: IOMMU group `{g}` is not a number"))?),
            None => None,
        },
        bar_sizes,
    })
}

/// Every PCI function sysfs lists, described (functions whose attributes cannot be read are
/// left out).
pub fn enumerate(os: &dyn PciOs) -> Result<Vec<PciFunction>, String> {
    let mut v: Vec<PciFunction> = os.functions()?.iter().filter_map(|a| describe(os, a).ok()).collect();
    v.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(v)
}

/// The commands that hand a function to vfio-pci, for messages.
pub fn bind_commands(address: &str, driver: Option<&str>) -> String {
    let mut c = String::from("sudo modprobe vfio-pci; ");
    if driver.is_some() {
        c += &format!("echo {address} | sudo tee /sys/bus/pci/devices/{address}/driver/unbind; ");
    }
    c += &format!(
        "echo vfio-pci | sudo tee /sys/bus/pci/devices/{address}/driver_override; \
         echo {address} | sudo tee /sys/bus/pci/drivers_probe"
    );
    c
}

/// A GPU opened through VFIO.
pub struct LinuxPci {
    address: String,
    function: Box<dyn VfioFunction>,
    bars: Vec<Option<Arc<dyn MappedBar>>>,
    config: Region,
    accesses: AtomicU64,
}

/// VFIO's region index of configuration space.
const CONFIG_REGION: u32 = 7;

impl LinuxPci {
    /// Opens the function at `address`: it must be a GPU bound to vfio-pci in an IOMMU group.
    /// Every other case is an error that says what is wrong and what to do.
    pub fn open(os: &dyn PciOs, address: &str) -> Result<LinuxPci, String> {
        let f = describe(os, address)
            .map_err(|e| format!("no PCI function {address} ({e}); `tk devices` lists the GPUs this machine sees"))?;
        if !f.is_gpu() {
            return Err(format!(
                "{address} is not a GPU: PCI {:04x}:{:04x}, class 0x{:06x}",
                f.vendor, f.device, f.class
            ));
        }
        match f.driver.as_deref() {
            Some("vfio-pci") => {}
            other => {
                let held = match other {
                    Some(d) => format!("is bound to the `{d}` driver"),
                    None => "is bound to no driver".to_string(),
                };
                return Err(format!(
                    "{address} {held}; tk drives a GPU through vfio-pci. To hand it over: {}",
                    bind_commands(address, other)
                ));
            }
        }
        let Some(group) = f.iommu_group else {
            return Err(format!(
                "{address} has no IOMMU group: VFIO needs the IOMMU. Enable it in the firmware setup (VT-d or \
                 AMD-Vi) and on the kernel command line (`intel_iommu=on` or `amd_iommu=on`), then reboot"
            ));
        };
        let function = os.open(group, address).map_err(|e| format!("{address}: opening it through VFIO: {e}"))?;
        let mut bars = Vec::new();
        for i in 0..6 {
            let r = function.region(i).map_err(|e| format!("{address}: BAR {i}: {e}"))?;
            if r.size == 0 {
                bars.push(None);
                continue;
            }
            if r.size != f.bar_sizes[i as usize] {
                return Err(format!(
                    "{address}: BAR {i} is {} bytes through VFIO but {} bytes in sysfs",
                    r.size, f.bar_sizes[i as usize]
                ));
            }
            // I/O-port BARs and others VFIO cannot map are left out; tk uses memory BARs.
            bars.push(if r.mappable {
                Some(function.map(r).map_err(|e| format!("{address}: BAR {i}: {e}"))?)
            } else {
                None
            });
        }
        let config = function.region(CONFIG_REGION).map_err(|e| format!("{address}: configuration space: {e}"))?;
        Ok(LinuxPci { address: address.to_string(), function, bars, config, accesses: AtomicU64::new(0) })
    }

    fn bar(&self, bar: u8, off: u64, bytes: u64) -> Result<&Arc<dyn MappedBar>, String> {
        let b = self.bars.get(bar as usize).and_then(Option::as_ref).ok_or_else(|| {
            format!("{}: BAR {bar} is not mapped (the function has no memory BAR {bar})", self.address)
        })?;
        if !off.is_multiple_of(4) || off.checked_add(bytes).is_none_or(|e| e > b.len()) {
            return Err(format!(
                "{}: an access of {bytes} bytes at 0x{off:x} is outside BAR {bar} ({} bytes) or not 4-byte aligned",
                self.address,
                b.len()
            ));
        }
        self.accesses.fetch_add(1, Ordering::Relaxed);
        Ok(b)
    }
}

impl Transport for LinuxPci {
    fn name(&self) -> String {
        self.address.clone()
    }
    fn read32(&self, bar: u8, off: u64) -> Result<u32, String> {
        Ok(self.bar(bar, off, 4)?.read32(off))
    }
    fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
        self.bar(bar, off, 4)?.write32(off, v);
        Ok(())
    }
    fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String> {
        let b = self.bar(bar, off, 8)?;
        b.write32(off, v as u32);
        b.write32(off + 4, (v >> 32) as u32);
        Ok(())
    }
    fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String> {
        let len = (out.len() as u64).next_multiple_of(4);
        let b = self.bar(bar, off, len)?;
        for (i, c) in out.chunks_mut(4).enumerate() {
            let w = b.read32(off + 4 * i as u64).to_le_bytes();
            c.copy_from_slice(&w[..c.len()]);
        }
        Ok(())
    }
    fn write_bytes(&self, bar: u8, off: u64, src: &[u8]) -> Result<(), String> {
        if !src.len().is_multiple_of(4) {
            return Err(format!("{}: BAR writes are whole 32-bit words ({} bytes given)", self.address, src.len()));
        }
        let b = self.bar(bar, off, src.len() as u64)?;
        for (i, c) in src.chunks(4).enumerate() {
            b.write32(off + 4 * i as u64, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        }
        Ok(())
    }
    fn round_trips(&self) -> u64 {
        self.accesses.load(Ordering::Relaxed)
    }
    fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
        let m = self.function.dma(bytes).map_err(|e| format!("{}: DMA memory of {bytes} bytes: {e}", self.address))?;
        let total: u64 = m.segments.iter().map(|s| s.1).sum();
        if total < bytes as u64 || m.mem.len() < bytes {
            return Err(format!("{}: the DMA mapping covers {total} of {bytes} bytes", self.address));
        }
        Ok(m)
    }
    fn config_read(&self, offset: u16, width: u8) -> Result<u32, String> {
        check_config_access(offset, width)?;
        if u64::from(offset) + u64::from(width) > self.config.size {
            return Err(format!("{}: configuration space has {} bytes", self.address, self.config.size));
        }
        let mut b = [0u8; 4];
        self.function.read_at(self.config.offset + u64::from(offset), &mut b[..width as usize])?;
        self.accesses.fetch_add(1, Ordering::Relaxed);
        Ok(u32::from_le_bytes(b))
    }
    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String> {
        check_config_access(offset, width)?;
        if u64::from(offset) + u64::from(width) > self.config.size {
            return Err(format!("{}: configuration space has {} bytes", self.address, self.config.size));
        }
        self.function.write_at(self.config.offset + u64::from(offset), &value.to_le_bytes()[..width as usize])?;
        self.accesses.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    fn reset(&self) -> Result<(), String> {
        self.function.reset().map_err(|e| format!("{}: reset: {e}", self.address))
    }
    fn bar_size(&self, bar: u8) -> Result<u64, String> {
        match self.bars.get(bar as usize) {
            Some(Some(b)) => Ok(b.len()),
            Some(None) => Ok(0),
            None => Err(format!("there is no BAR {bar} (BARs are 0 to 5)")),
        }
    }
}

/// Host memory behind a lock, for [`SysMem`].
struct Locked<T>(std::sync::Mutex<T>);

impl<T: AsMut<[u8]> + AsRef<[u8]> + Send> HostMem for Locked<T> {
    fn len(&self) -> usize {
        self.0.lock().map(|m| m.as_ref().len()).unwrap_or(0)
    }
    fn with(&self, f: &mut dyn FnMut(&mut [u8])) {
        if let Ok(mut m) = self.0.lock() {
            f(m.as_mut());
        }
    }
}

/// Wraps memory for a [`SysMem`].
pub fn host_mem<T: AsMut<[u8]> + AsRef<[u8]> + Send + 'static>(m: T) -> Arc<dyn HostMem> {
    Arc::new(Locked(std::sync::Mutex::new(m)))
}

#[cfg(target_os = "linux")]
pub use real::LinuxOs;

#[cfg(target_os = "linux")]
mod real {
    //! sysfs and VFIO for real: ioctls on the container, group and device files.

    use super::*;
    use std::fs::File;
    use std::os::fd::{AsRawFd, FromRawFd};
    use std::os::unix::fs::FileExt;
    use std::path::PathBuf;

    const SYS: &str = "/sys/bus/pci/devices";

    // include/uapi/linux/vfio.h: VFIO_TYPE ';', VFIO_BASE 100, every ioctl `_IO(VFIO_TYPE,
    // VFIO_BASE + n)` (no size or direction bits), its argument a pointer or a value.
    const fn vfio(n: u64) -> u64 {
        (b';' as u64) << 8 | (100 + n)
    }
    const GET_API_VERSION: u64 = vfio(0);
    const CHECK_EXTENSION: u64 = vfio(1);
    const SET_IOMMU: u64 = vfio(2);
    const GROUP_GET_STATUS: u64 = vfio(3);
    const GROUP_SET_CONTAINER: u64 = vfio(4);
    const GROUP_GET_DEVICE_FD: u64 = vfio(6);
    const DEVICE_GET_REGION_INFO: u64 = vfio(8);
    const DEVICE_RESET: u64 = vfio(11);
    const IOMMU_MAP_DMA: u64 = vfio(13);
    const API_VERSION: i32 = 0;
    const TYPE1V2_IOMMU: u64 = 3;
    const GROUP_FLAGS_VIABLE: u32 = 1;
    const REGION_INFO_FLAG_MMAP: u32 = 4;
    const DMA_MAP_FLAG_READ_WRITE: u32 = 3;

    #[repr(C)]
    struct GroupStatus {
        argsz: u32,
        flags: u32,
    }
    #[repr(C)]
    struct RegionInfo {
        argsz: u32,
        flags: u32,
        index: u32,
        cap_offset: u32,
        size: u64,
        offset: u64,
    }
    #[repr(C)]
    struct DmaMap {
        argsz: u32,
        flags: u32,
        vaddr: u64,
        iova: u64,
        size: u64,
    }

    /// `ioctl(fd, request, arg)`: the result, or the OS error.
    fn ioctl(fd: &File, request: u64, arg: libc::c_ulong) -> Result<i32, String> {
        // SAFETY: `request` is one of VFIO's ioctls and `arg` is the value or a pointer to the
        // structure it takes, alive for the call.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, arg) };
        if r < 0 { Err(std::io::Error::last_os_error().to_string()) } else { Ok(r) }
    }

    /// The real operating system.
    pub struct LinuxOs;

    impl PciOs for LinuxOs {
        fn functions(&self) -> Result<Vec<String>, String> {
            let d = std::fs::read_dir(SYS).map_err(|e| format!("{SYS}: {e}"))?;
            Ok(d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        }
        fn attribute(&self, address: &str, name: &str) -> Result<String, String> {
            let p = PathBuf::from(SYS).join(address).join(name);
            std::fs::read_to_string(&p).map(|s| s.trim_end().to_string()).map_err(|e| format!("{}: {e}", p.display()))
        }
        fn link(&self, address: &str, name: &str) -> Option<String> {
            let t = std::fs::read_link(PathBuf::from(SYS).join(address).join(name)).ok()?;
            Some(t.file_name()?.to_string_lossy().into_owned())
        }
        fn open(&self, group: u32, address: &str) -> Result<Box<dyn VfioFunction>, String> {
            let rw =
                |p: &str| std::fs::OpenOptions::new().read(true).write(true).open(p).map_err(|e| format!("{p}: {e}"));
            let container = rw("/dev/vfio/vfio")?;
            if ioctl(&container, GET_API_VERSION, 0)? != API_VERSION {
                return Err("the kernel's VFIO API version is not 0".into());
            }
            if ioctl(&container, CHECK_EXTENSION, TYPE1V2_IOMMU as _)? == 0 {
                return Err("the kernel's VFIO has no type-1 IOMMU (v2)".into());
            }
            let group_path = format!("/dev/vfio/{group}");
            let g = rw(&group_path)
                .map_err(|e| format!("{e} (is every function of IOMMU group {group} bound to vfio-pci?)"))?;
            let mut st = GroupStatus { argsz: std::mem::size_of::<GroupStatus>() as u32, flags: 0 };
            ioctl(&g, GROUP_GET_STATUS, &mut st as *mut GroupStatus as _)?;
            if st.flags & GROUP_FLAGS_VIABLE == 0 {
                return Err(format!(
                    "IOMMU group {group} is not viable: every function in /sys/kernel/iommu_groups/{group}/devices must \
                     be bound to vfio-pci (or to no driver)"
                ));
            }
            let cfd = container.as_raw_fd();
            ioctl(&g, GROUP_SET_CONTAINER, &cfd as *const i32 as _)?;
            ioctl(&container, SET_IOMMU, TYPE1V2_IOMMU as _)?;
            let name = std::ffi::CString::new(address).map_err(|_| "a NUL in the address".to_string())?;
            let fd = ioctl(&g, GROUP_GET_DEVICE_FD, name.as_ptr() as _)?;
            // SAFETY: the ioctl returned a new file descriptor that nothing else owns.
            let device = unsafe { File::from_raw_fd(fd) };
            Ok(Box::new(Vfio { container, _group: g, device, next_iova: std::sync::Mutex::new(1 << 32) }))
        }
    }

    struct Vfio {
        container: File,
        _group: File,
        device: File,
        next_iova: std::sync::Mutex<u64>,
    }

    struct Mmio {
        map: memmap2::MmapRaw,
    }

    impl MappedBar for Mmio {
        fn len(&self) -> u64 {
            self.map.len() as u64
        }
        fn read32(&self, off: u64) -> u32 {
            // SAFETY: the caller checked that `off` is aligned and inside the mapping; MMIO needs
            // one 32-bit load.
            unsafe { self.map.as_ptr().add(off as usize).cast::<u32>().read_volatile() }
        }
        fn write32(&self, off: u64, v: u32) {
            // SAFETY: as for `read32`.
            unsafe { self.map.as_mut_ptr().add(off as usize).cast::<u32>().write_volatile(v) }
        }
    }

    impl VfioFunction for Vfio {
        fn region(&self, index: u32) -> Result<Region, String> {
            let mut r = RegionInfo {
                argsz: std::mem::size_of::<RegionInfo>() as u32,
                flags: 0,
                index,
                cap_offset: 0,
                size: 0,
                offset: 0,
            };
            ioctl(&self.device, DEVICE_GET_REGION_INFO, &mut r as *mut RegionInfo as _)?;
            Ok(Region { size: r.size, offset: r.offset, mappable: r.flags & REGION_INFO_FLAG_MMAP != 0 })
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
            self.device.read_exact_at(buf, offset).map_err(|e| e.to_string())
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), String> {
            self.device.write_all_at(data, offset).map_err(|e| e.to_string())
        }
        fn map(&self, region: Region) -> Result<Arc<dyn MappedBar>, String> {
            let map = memmap2::MmapOptions::new()
                .offset(region.offset)
                .len(region.size as usize)
                .map_raw(&self.device)
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(Mmio { map }))
        }
        fn reset(&self) -> Result<(), String> {
            ioctl(&self.device, DEVICE_RESET, 0).map(|_| ())
        }
        fn dma(&self, bytes: usize) -> Result<SysMem, String> {
            let size = bytes.max(1).next_multiple_of(1 << 21);
            let mem = memmap2::MmapMut::map_anon(size).map_err(|e| e.to_string())?;
            let mut next = self.next_iova.lock().map_err(|_| "a lock was poisoned".to_string())?;
            let iova = *next;
            let mut m = DmaMap {
                argsz: std::mem::size_of::<DmaMap>() as u32,
                flags: DMA_MAP_FLAG_READ_WRITE,
                vaddr: mem.as_ptr() as u64,
                iova,
                size: size as u64,
            };
            ioctl(&self.container, IOMMU_MAP_DMA, &mut m as *mut DmaMap as _)?;
            *next += size as u64;
            Ok(SysMem { mem: host_mem(mem), segments: vec![(iova, size as u64)] })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A fake sysfs tree: functions with their attributes and links; opening a function in an
    /// IOMMU group gives a [`FakeFunction`].
    #[derive(Default)]
    struct FakeOs {
        attrs: HashMap<(String, String), String>,
        links: HashMap<(String, String), String>,
        /// Opening fails with this message.
        open_error: Option<String>,
        /// VFIO reports BAR 0 at this size instead of sysfs's.
        vfio_bar0: Option<u64>,
        state: Arc<Mutex<State>>,
    }

    #[derive(Default)]
    struct State {
        config: Vec<u8>,
        bar0: Vec<u8>,
        resets: u32,
        dma: Vec<usize>,
    }

    impl FakeOs {
        fn function(
            &mut self,
            addr: &str,
            (vendor, device, class): (u16, u16, u32),
            bars: &[u64],
            driver: Option<&str>,
            group: Option<u32>,
        ) {
            let a = |s: &mut Self, k: &str, v: String| {
                s.attrs.insert((addr.to_string(), k.to_string()), v);
            };
            a(self, "vendor", format!("0x{vendor:04x}"));
            a(self, "device", format!("0x{device:04x}"));
            a(self, "class", format!("0x{class:06x}"));
            let mut res = String::new();
            for i in 0..13 {
                let size = bars.get(i).copied().unwrap_or(0);
                let start = 0xf000_0000u64 + (i as u64) * 0x1000_0000;
                let (s, e) = if size == 0 { (0, 0) } else { (start, start + size - 1) };
                res += &format!("0x{s:016x} 0x{e:016x} 0x{:016x}\n", if size == 0 { 0 } else { 0x14220c });
            }
            a(self, "resource", res.trim_end().to_string());
            if let Some(d) = driver {
                self.links.insert((addr.to_string(), "driver".into()), d.to_string());
            }
            if let Some(g) = group {
                self.links.insert((addr.to_string(), "iommu_group".into()), g.to_string());
            }
        }

        /// An AMD RDNA3 GPU (Navi 31) bound to vfio-pci with a 256 MiB BAR 0 and 2 MiB BAR 2,
        /// a non-GPU (an NVMe controller) and the GPU's audio function.
        fn machine() -> FakeOs {
            let mut os = FakeOs::default();
            os.function(
                "0000:03:00.0",
                (0x1002, 0x744c, 0x030000),
                &[256 << 20, 0, 2 << 20, 0, 0, 1 << 20],
                Some("vfio-pci"),
                Some(14),
            );
            os.function("0000:03:00.1", (0x1002, 0xab30, 0x040300), &[16 << 10], Some("snd_hda_intel"), Some(14));
            os.function("0000:01:00.0", (0x144d, 0xa808, 0x010802), &[16 << 10], Some("nvme"), Some(12));
            let mut s = os.state.lock().expect("lock");
            s.config = vec![0; 4096];
            s.config[..4].copy_from_slice(&[0x02, 0x10, 0x4c, 0x74]);
            s.bar0 = vec![0; 4096];
            drop(s);
            os
        }
    }

    struct FakeBar(Arc<Mutex<State>>, u64);

    impl MappedBar for FakeBar {
        fn len(&self) -> u64 {
            self.1
        }
        fn read32(&self, off: u64) -> u32 {
            let s = self.0.lock().expect("lock");
            let o = (off % 4096) as usize;
            u32::from_le_bytes([s.bar0[o], s.bar0[o + 1], s.bar0[o + 2], s.bar0[o + 3]])
        }
        fn write32(&self, off: u64, v: u32) {
            let mut s = self.0.lock().expect("lock");
            let o = (off % 4096) as usize;
            s.bar0[o..o + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    struct FakeFunction {
        sizes: [u64; 6],
        state: Arc<Mutex<State>>,
    }

    const CONFIG_OFFSET: u64 = 7 << 40;

    impl VfioFunction for FakeFunction {
        fn region(&self, index: u32) -> Result<Region, String> {
            match index {
                0..=5 => Ok(Region {
                    size: self.sizes[index as usize],
                    offset: u64::from(index) << 40,
                    mappable: self.sizes[index as usize] > 0,
                }),
                7 => Ok(Region { size: 4096, offset: CONFIG_OFFSET, mappable: false }),
                _ => Err("no such region".into()),
            }
        }
        fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), String> {
            let s = self.state.lock().map_err(|_| "lock")?;
            let o = offset.checked_sub(CONFIG_OFFSET).ok_or("not config")? as usize;
            buf.copy_from_slice(&s.config[o..o + buf.len()]);
            Ok(())
        }
        fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), String> {
            let mut s = self.state.lock().map_err(|_| "lock")?;
            let o = offset.checked_sub(CONFIG_OFFSET).ok_or("not config")? as usize;
            s.config[o..o + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn map(&self, region: Region) -> Result<Arc<dyn MappedBar>, String> {
            Ok(Arc::new(FakeBar(self.state.clone(), region.size)))
        }
        fn reset(&self) -> Result<(), String> {
            self.state.lock().map_err(|_| "lock")?.resets += 1;
            Ok(())
        }
        fn dma(&self, bytes: usize) -> Result<SysMem, String> {
            self.state.lock().map_err(|_| "lock")?.dma.push(bytes);
            // Pieces of at most 16 KiB, scattered on the bus.
            let mut segments = Vec::new();
            let mut left = bytes as u64;
            let mut bus = 0x10_0000_0000u64;
            while left > 0 {
                let n = left.min(16 << 10);
                segments.push((bus, n));
                bus += 3 * (16 << 10);
                left -= n;
            }
            Ok(SysMem { mem: host_mem(vec![0u8; bytes]), segments })
        }
    }

    impl PciOs for FakeOs {
        fn functions(&self) -> Result<Vec<String>, String> {
            let mut v: Vec<String> = self.attrs.keys().map(|(a, _)| a.clone()).collect();
            v.sort();
            v.dedup();
            Ok(v)
        }
        fn attribute(&self, address: &str, name: &str) -> Result<String, String> {
            self.attrs
                .get(&(address.to_string(), name.to_string()))
                .cloned()
                .ok_or_else(|| format!("/sys/bus/pci/devices/{address}/{name}: No such file or directory"))
        }
        fn link(&self, address: &str, name: &str) -> Option<String> {
            self.links.get(&(address.to_string(), name.to_string())).cloned()
        }
        fn open(&self, _group: u32, address: &str) -> Result<Box<dyn VfioFunction>, String> {
            if let Some(e) = &self.open_error {
                return Err(e.clone());
            }
            let mut sizes = describe(self, address)?.bar_sizes;
            if let Some(s) = self.vfio_bar0 {
                sizes[0] = s;
            }
            Ok(Box::new(FakeFunction { sizes, state: self.state.clone() }))
        }
    }

    #[test]
    fn enumeration_describes_every_function_and_tells_gpus_apart() {
        let os = FakeOs::machine();
        let all = enumerate(&os).expect("enumerates");
        let addrs: Vec<&str> = all.iter().map(|f| f.address.as_str()).collect();
        assert_eq!(addrs, ["0000:01:00.0", "0000:03:00.0", "0000:03:00.1"]);
        let gpu = &all[1];
        assert!(gpu.is_gpu() && !all[0].is_gpu() && !all[2].is_gpu());
        assert_eq!((gpu.vendor, gpu.device, gpu.class), (0x1002, 0x744c, 0x030000));
        assert_eq!(gpu.driver.as_deref(), Some("vfio-pci"));
        assert_eq!(gpu.iommu_group, Some(14));
        assert_eq!(gpu.bar_sizes, [256 << 20, 0, 2 << 20, 0, 0, 1 << 20]);
        assert_eq!(all[0].driver.as_deref(), Some("nvme"));
        // A function whose attributes are malformed is left out of the list, and named when
        // opened.
        let mut os = FakeOs::machine();
        os.attrs.insert(("0000:03:00.0".into(), "vendor".into()), "ati".into());
        assert_eq!(enumerate(&os).expect("enumerates").len(), 2);
        let e = LinuxPci::open(&os, "0000:03:00.0").err().expect("refused");
        assert!(e.contains("sysfs `vendor` is `ati`, not a hexadecimal number"), "{e}");
    }

    #[test]
    fn a_gpu_bound_to_vfio_gives_its_bars_config_space_reset_and_dma() {
        let os = FakeOs::machine();
        let t = LinuxPci::open(&os, "0000:03:00.0").expect("opens");
        assert_eq!(t.name(), "0000:03:00.0");
        assert_eq!(t.bar_size(0), Ok(256 << 20));
        assert_eq!(t.bar_size(1), Ok(0));
        assert_eq!(t.bar_size(2), Ok(2 << 20));
        assert!(t.bar_size(6).is_err());
        // Registers through the mapping.
        t.write32(0, 0x40, 0xdead_beef).expect("write");
        assert_eq!(t.read32(0, 0x40), Ok(0xdead_beef));
        t.write64(0, 0x80, 0x1122_3344_5566_7788).expect("write64");
        assert_eq!((t.read32(0, 0x80), t.read32(0, 0x84)), (Ok(0x5566_7788), Ok(0x1122_3344)));
        t.write_bytes(0, 0x100, &[1, 2, 3, 4, 5, 6, 7, 8]).expect("bytes");
        let mut back = [0u8; 6];
        t.read_bytes(0, 0x100, &mut back).expect("bytes");
        assert_eq!(back, [1, 2, 3, 4, 5, 6]);
        // Out of the BAR, misaligned, an unmapped BAR: errors naming the BAR.
        assert!(t.read32(0, 256 << 20).unwrap_err().contains("outside BAR 0"));
        assert!(t.read32(0, 2).unwrap_err().contains("not 4-byte aligned"));
        assert!(t.read32(1, 0).unwrap_err().contains("BAR 1 is not mapped"));
        assert!(t.write_bytes(0, 0, &[1, 2, 3]).unwrap_err().contains("whole 32-bit words"));
        // Configuration space: the vendor and device ids, widths, writes.
        assert_eq!(t.config_read(0, 2), Ok(0x1002));
        assert_eq!(t.config_read(2, 2), Ok(0x744c));
        assert_eq!(t.config_read(0, 4), Ok(0x744c_1002));
        t.config_write(4, 2, 0x0006).expect("command register");
        assert_eq!(t.config_read(4, 1), Ok(6));
        assert!(t.config_read(1, 2).is_err(), "misaligned");
        assert!(t.config_read(4094, 4).is_err(), "past the end");
        // Reset.
        t.reset().expect("reset");
        assert_eq!(os.state.lock().expect("lock").resets, 1);
        // DMA memory in several pieces: bus addresses follow the pieces.
        let m = t.sysmem(40 << 10).expect("dma");
        assert_eq!(m.segments.len(), 3);
        assert_eq!(m.bus(0), Some(0x10_0000_0000));
        assert_eq!(m.bus(16 << 10), Some(0x10_0000_0000 + 3 * (16 << 10)));
        assert_eq!(m.bus((40 << 10) - 1), Some(0x10_0000_0000 + 6 * (16 << 10) + (8 << 10) - 1));
        assert_eq!(m.bus(40 << 10), None);
        assert!(t.round_trips() > 0);
    }

    #[test]
    fn every_reason_a_function_cannot_be_opened_is_said_with_the_fix() {
        let os = FakeOs::machine();
        let e = LinuxPci::open(&os, "0000:09:00.0").err().expect("missing");
        assert!(e.contains("no PCI function 0000:09:00.0") && e.contains("tk devices"), "{e}");
        let e = LinuxPci::open(&os, "0000:01:00.0").err().expect("not a GPU");
        assert!(e.contains("0000:01:00.0 is not a GPU: PCI 144d:a808, class 0x010802"), "{e}");

        // Bound to another driver: name it and the commands that hand it to vfio-pci.
        let mut os = FakeOs::machine();
        os.links.insert(("0000:03:00.0".into(), "driver".into()), "amdgpu".into());
        let e = LinuxPci::open(&os, "0000:03:00.0").err().expect("amdgpu");
        assert!(e.contains("is bound to the `amdgpu` driver"), "{e}");
        assert!(e.contains("/sys/bus/pci/devices/0000:03:00.0/driver/unbind"), "{e}");
        assert!(e.contains("echo vfio-pci | sudo tee /sys/bus/pci/devices/0000:03:00.0/driver_override"), "{e}");
        // Bound to none: no unbind step.
        os.links.remove(&("0000:03:00.0".to_string(), "driver".to_string()));
        let e = LinuxPci::open(&os, "0000:03:00.0").err().expect("no driver");
        assert!(e.contains("is bound to no driver") && !e.contains("unbind"), "{e}");

        // No IOMMU group.
        let mut os = FakeOs::machine();
        os.links.remove(&("0000:03:00.0".to_string(), "iommu_group".to_string()));
        let e = LinuxPci::open(&os, "0000:03:00.0").err().expect("no group");
        assert!(e.contains("no IOMMU group") && e.contains("amd_iommu=on"), "{e}");

        // VFIO refuses (a group that is not viable, say).
        let mut os = FakeOs::machine();
        os.open_error = Some("IOMMU group 14 is not viable".into());
        let e = LinuxPci::open(&os, "0000:03:00.0").err().expect("not viable");
        assert!(e.contains("0000:03:00.0: opening it through VFIO: IOMMU group 14 is not viable"), "{e}");

        // VFIO and sysfs disagree on a BAR's size.
        let mut os = FakeOs::machine();
        os.vfio_bar0 = Some(1 << 20);
        let e = LinuxPci::open(&os, "0000:03:00.0").err().expect("size");
        assert!(e.contains("BAR 0 is 1048576 bytes through VFIO but 268435456 bytes in sysfs"), "{e}");
    }
}
