//! The `iokit` transport (macOS): the TinyGPU DriverKit extension's user client, opened directly
//! through IOKit (../shared/notes/tinygpu.md). Opening it needs the
//! `com.apple.developer.driverkit.userclient-access` entitlement, so most programs use the
//! TinyGPU.app server instead (`amd:tinygpu=SOCKET`).
//!
//! BARs are mapped into this process with `IOConnectMapMemory64` (memory type = BAR number), so
//! register and VRAM accesses are plain loads and stores; memory type >= 6 allocates a DMA buffer
//! of that many bytes whose bus segment list (u64 pairs, ended by [0, 0]) is written at its start.
//!
//! This file is compile-checked for aarch64-apple-darwin in CI; it has not run on a Mac yet.

use super::*;
use io_kit_sys::ret::kIOReturnSuccess;
use io_kit_sys::types::{io_connect_t, kIOMapAnywhere};
use io_kit_sys::{
    IOConnectCallScalarMethod, IOConnectMapMemory64, IOObjectRelease, IOServiceClose, IOServiceGetMatchingService,
    IOServiceNameMatching, IOServiceOpen,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A mapping of device memory into this process.
#[derive(Clone, Copy)]
struct Map {
    addr: usize,
    len: usize,
}

/// The DriverKit user client of one GPU.
pub struct IoKit {
    conn: io_connect_t,
    bars: Mutex<HashMap<u8, Map>>,
    trips: AtomicU64,
}

// SAFETY: the connection is a Mach port name and the mappings are device memory owned by this
// object; accesses go through `&self` methods that use volatile loads and stores.
unsafe impl Send for IoKit {}
unsafe impl Sync for IoKit {}

impl IoKit {
    /// Opens the TinyGPU service's user client.
    pub fn open() -> Result<IoKit, String> {
        let name = std::ffi::CString::new("tinygpu").map_err(|e| e.to_string())?;
        // SAFETY: plain IOKit calls with valid arguments; the matching dictionary is consumed
        // by IOServiceGetMatchingService.
        unsafe {
            let matching = IOServiceNameMatching(name.as_ptr());
            if matching.is_null() {
                return Err("IOServiceNameMatching failed".into());
            }
            let svc = IOServiceGetMatchingService(0, matching as _);
            if svc == 0 {
                return Err(
                    "no `tinygpu` service: install TinyGPU (the DriverKit extension) and connect an AMD RDNA3 \
                            or newer GPU"
                        .into(),
                );
            }
            let mut conn: io_connect_t = 0;
            let kr = IOServiceOpen(svc, mach2::traps::mach_task_self(), 0, &mut conn);
            IOObjectRelease(svc);
            if kr != kIOReturnSuccess {
                return Err(format!(
                    "opening the TinyGPU user client failed ({kr:#x}); it needs the DriverKit user-client entitlement, \
                     so use TinyGPU.app's server: --device amd:tinygpu=SOCKET"
                ));
            }
            Ok(IoKit { conn, bars: Mutex::new(HashMap::new()), trips: AtomicU64::new(0) })
        }
    }

    fn map(&self, memory_type: u32) -> Result<Map, String> {
        let (mut addr, mut size) = (0u64, 0u64);
        // SAFETY: maps device memory into this task; the out-pointers are valid.
        let kr = unsafe {
            IOConnectMapMemory64(
                self.conn,
                memory_type,
                mach2::traps::mach_task_self(),
                &mut addr,
                &mut size,
                kIOMapAnywhere as u32,
            )
        };
        if kr != kIOReturnSuccess || addr == 0 {
            return Err(format!("mapping memory type {memory_type} failed ({kr:#x})"));
        }
        Ok(Map { addr: addr as usize, len: size as usize })
    }

    /// Calls a user-client method with scalar arguments (selectors: 0 ReadCfg(offset, size) ->
    /// value, 1 WriteCfg(offset, size, value), 2 Reset; ../shared/notes/tinygpu.md).
    fn call(&self, selector: u32, args: &[u64]) -> Result<u64, String> {
        let mut out = [0u64; 1];
        let mut n: u32 = 1;
        self.trips.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the input array has `args.len()` scalars and the output room for `n`.
        let kr = unsafe {
            IOConnectCallScalarMethod(self.conn, selector, args.as_ptr(), args.len() as u32, out.as_mut_ptr(), &mut n)
        };
        if kr != kIOReturnSuccess {
            return Err(format!("the TinyGPU user client's method {selector} failed ({kr:#x})"));
        }
        Ok(out[0])
    }

    fn bar(&self, bar: u8, off: u64, n: usize) -> Result<usize, String> {
        let mut bars = self.bars.lock().map_err(|_| "poisoned")?;
        let m = match bars.get(&bar) {
            Some(m) => *m,
            None => {
                let m = self.map(u32::from(bar))?;
                bars.insert(bar, m);
                m
            }
        };
        let o = usize::try_from(off).map_err(|_| "offset")?;
        if o.checked_add(n).is_none_or(|e| e > m.len) {
            return Err(format!("{n} bytes at offset {off:#x} are outside BAR {bar} ({} bytes)", m.len));
        }
        self.trips.fetch_add(1, Ordering::Relaxed);
        Ok(m.addr + o)
    }
}

impl Drop for IoKit {
    fn drop(&mut self) {
        // SAFETY: the connection was opened by `open` and is closed once.
        unsafe {
            IOServiceClose(self.conn);
        }
    }
}

/// A DMA buffer mapped into this process.
struct Dma {
    map: Map,
    lock: Mutex<()>,
}

// SAFETY: the mapping lives as long as the connection; access is serialised by `lock`.
unsafe impl Send for Dma {}
unsafe impl Sync for Dma {}

impl HostMem for Dma {
    fn len(&self) -> usize {
        self.map.len
    }
    fn with(&self, f: &mut dyn FnMut(&mut [u8])) {
        if let Ok(_g) = self.lock.lock() {
            // SAFETY: the mapping is `len` bytes of memory this process may write.
            f(unsafe { std::slice::from_raw_parts_mut(self.map.addr as *mut u8, self.map.len) });
        }
    }
}

impl Transport for IoKit {
    fn name(&self) -> String {
        "iokit tinygpu".into()
    }
    fn read32(&self, bar: u8, off: u64) -> Result<u32, String> {
        let p = self.bar(bar, off, 4)?;
        // SAFETY: inside the BAR mapping (checked), 4-byte register access.
        Ok(unsafe { std::ptr::read_volatile(p as *const u32) })
    }
    fn write32(&self, bar: u8, off: u64, v: u32) -> Result<(), String> {
        let p = self.bar(bar, off, 4)?;
        // SAFETY: as above.
        unsafe { std::ptr::write_volatile(p as *mut u32, v) };
        Ok(())
    }
    fn write64(&self, bar: u8, off: u64, v: u64) -> Result<(), String> {
        let p = self.bar(bar, off, 8)?;
        // SAFETY: as above (64-bit doorbells).
        unsafe { std::ptr::write_volatile(p as *mut u64, v) };
        Ok(())
    }
    fn read_bytes(&self, bar: u8, off: u64, out: &mut [u8]) -> Result<(), String> {
        let p = self.bar(bar, off, out.len())?;
        for (k, b) in out.iter_mut().enumerate() {
            // SAFETY: inside the BAR mapping (checked for the whole range).
            *b = unsafe { std::ptr::read_volatile((p + k) as *const u8) };
        }
        Ok(())
    }
    fn write_bytes(&self, bar: u8, off: u64, src: &[u8]) -> Result<(), String> {
        let p = self.bar(bar, off, src.len())?;
        for (k, b) in src.iter().enumerate() {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile((p + k) as *mut u8, *b) };
        }
        Ok(())
    }
    fn round_trips(&self) -> u64 {
        self.trips.load(Ordering::Relaxed)
    }
    fn config_read(&self, offset: u16, width: u8) -> Result<u32, String> {
        check_config_access(offset, width)?;
        Ok(self.call(0, &[u64::from(offset), u64::from(width)])? as u32)
    }
    fn config_write(&self, offset: u16, width: u8, value: u32) -> Result<(), String> {
        check_config_access(offset, width)?;
        self.call(1, &[u64::from(offset), u64::from(width), u64::from(value)]).map(|_| ())
    }
    fn reset(&self) -> Result<(), String> {
        self.call(2, &[]).map(|_| ())
    }
    fn bar_size(&self, bar: u8) -> Result<u64, String> {
        // Mapping a BAR (memory type < 6) tells its size.
        let mut bars = self.bars.lock().map_err(|_| "poisoned")?;
        if let Some(m) = bars.get(&bar) {
            return Ok(m.len as u64);
        }
        let m = self.map(u32::from(bar))?;
        bars.insert(bar, m);
        Ok(m.len as u64)
    }
    fn sysmem(&self, bytes: usize) -> Result<SysMem, String> {
        let size = u32::try_from(bytes.max(4096).next_multiple_of(16384)).map_err(|_| "too much system memory")?;
        let map = self.map(size)?;
        let dma = Arc::new(Dma { map, lock: Mutex::new(()) });
        let mut segments = Vec::new();
        dma.with(&mut |m: &mut [u8]| {
            for k in 0..32 {
                let w = |o: usize| u64::from_le_bytes(m[o..o + 8].try_into().unwrap_or([0; 8]));
                let (bus, len) = (w(16 * k), w(16 * k + 8));
                if bus == 0 && len == 0 {
                    break;
                }
                segments.push((bus, len));
            }
        });
        if segments.is_empty() {
            return Err("the DMA buffer holds no bus segment list".into());
        }
        Ok(SysMem { mem: dma, segments })
    }
}
