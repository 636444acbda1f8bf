//! The GPU's two memory hubs as the simulated GPU models them: the GFX hub (the command
//! processor, the shaders, SDMA) and the MM hub (the PSP, the IH), each with its L1 TLB and L2
//! switches, its frame-buffer location and system aperture, VM context 0's page tables and a
//! translation cache that only an invalidation request empties. A translation fault latches
//! the hub's fault status registers and, once the IH ring is enabled, writes an interrupt
//! vector to it, as the hardware reports faults.

use super::{Chunk, Inner, vram_range};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use tk_gpu::amd::gmc::{self, PAGE, Phys};
use tk_gpu::amd::regs::*;

/// Which hub an access goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Which {
    Gfx,
    Mm,
}

impl Which {
    pub fn regs(self) -> Hub {
        match self {
            Which::Gfx => GFXHUB,
            Which::Mm => MMHUB,
        }
    }
}

/// A hub's translation state, read from its registers when an engine starts an access.
pub(super) struct HubView {
    pub which: Which,
    pub root: u64,
    /// VM context 0's first and last page.
    pub range: (u64, u64),
    /// The frame buffer's location and the system aperture (first and last byte).
    pub fb: (u64, u64),
    pub aperture: (u64, u64),
    /// The AGP aperture when it is open (bottom above top closes it).
    pub agp: Option<(u64, u64)>,
}

/// Reads `which`'s registers; an engine translating through a hub whose L1 TLB, L2 cache or
/// context 0 the driver has not enabled is refused, naming the register.
pub(super) fn view(get: impl Fn(Reg) -> u32, which: Which) -> Result<HubView, String> {
    let h = which.regs();
    let off = |r: Reg, bit: u32, what: &str| -> Result<(), String> {
        if get(r) & bit == 0 {
            return Err(format!(
                "the {} translated an address with {what} off ({}): the gmc step has not run",
                h.name, r.name
            ));
        }
        Ok(())
    };
    off(h.l1_tlb_cntl, L1_TLB_ENABLE, "its L1 TLB")?;
    off(h.l2_cntl[0], L2_CACHE_ENABLE, "its L2 cache")?;
    off(h.context0_cntl, VM_CONTEXT_ENABLE, "VM context 0 (the GART)")?;
    let pair = |(lo, hi): (Reg, Reg)| u64::from(get(lo)) | u64::from(get(hi)) << 32;
    let fb16 = |r: Reg| u64::from(get(r) & FB_LOCATION_MASK) << FB_LOCATION_SHIFT;
    let (agp_bot, agp_top) = (fb16(h.agp_bot), fb16(h.agp_top) | 0xff_ffff);
    Ok(HubView {
        which,
        root: pair(h.table_base) & PTE_ADDR_MASK,
        range: (pair(h.start), pair(h.end)),
        fb: (fb16(h.fb_base), fb16(h.fb_top) | 0xff_ffff),
        aperture: (
            u64::from(get(h.aperture_low)) << APERTURE_SHIFT,
            (u64::from(get(h.aperture_high)) << APERTURE_SHIFT) | ((1 << APERTURE_SHIFT) - 1),
        ),
        agp: (agp_bot <= agp_top).then_some((agp_bot, agp_top)),
    })
}

/// A translation fault: the address, whether it was a write, and whether the page was mapped
/// (a permission fault) or not.
#[derive(Clone, Copy, Debug)]
pub(super) struct VmFault {
    pub which: Which,
    pub va: u64,
    pub write: bool,
    pub permission: bool,
}

/// GPU memory seen through one hub: the apertures, then VM context 0's page tables with the
/// hub's translation cache.
pub(super) struct Vm<'a> {
    pub i: &'a Inner,
    pub vram: &'a mut [u8],
    pub sys: &'a [Chunk],
    pub view: HubView,
    pub tlb: &'a mut HashMap<u64, (u64, u64)>,
}

struct Raw<'a>(&'a mut [u8]);

impl Phys for Raw<'_> {
    fn read_u64(&mut self, pa: u64) -> Result<u64, String> {
        let r = vram_range(self.0.len(), pa, 8)?;
        Ok(u64::from_le_bytes(self.0[r].try_into().map_err(|_| "8 bytes")?))
    }
    fn write_u64(&mut self, pa: u64, v: u64) -> Result<(), String> {
        let r = vram_range(self.0.len(), pa, 8)?;
        self.0[r].copy_from_slice(&v.to_le_bytes());
        Ok(())
    }
}

impl Vm<'_> {
    fn fault(&self, va: u64, write: bool, permission: bool, m: String) -> String {
        if let Ok(mut f) = self.i.vm_fault.lock() {
            f.get_or_insert(VmFault { which: self.view.which, va, write, permission });
        }
        m
    }

    /// The physical address of `va` and whether it is system memory.
    fn page(&mut self, va: u64, write: bool) -> Result<(u64, bool), String> {
        let v = &self.view;
        let name = v.which.regs().name;
        if va >= v.aperture.0 && va <= v.aperture.1 {
            // The system aperture: the frame buffer directly, without the page tables.
            if va >= v.fb.0 && va <= v.fb.1 {
                return Ok((va - v.fb.0, false));
            }
            let m = match v.agp {
                Some((b, t)) if va >= b && va <= t => {
                    format!("address {va:#x} is in the {name}'s AGP aperture, which the simulated GPU does not model")
                }
                _ => format!("address {va:#x} is in the {name}'s system aperture but outside its frame buffer"),
            };
            return Err(self.fault(va, write, false, m));
        }
        let key = va / PAGE;
        if key < v.range.0 || key > v.range.1 {
            let m = format!(
                "virtual address {va:#x} is outside VM context 0's range on the {name} (pages {:#x}..={:#x}, \
                 PAGE_TABLE_START/END_ADDR): the gmc step did not set it",
                v.range.0, v.range.1
            );
            return Err(self.fault(va, write, false, m));
        }
        let (pa, flags) = match self.tlb.get(&key) {
            Some(e) => *e,
            None => {
                if self.i.hdp_dirty.load(Ordering::SeqCst) {
                    return Err(format!(
                        "the {name} walked the page tables while CPU writes to VRAM through the BAR were still in \
                         the HDP (no HDP flush since): the driver must flush it before the GPU reads what it wrote"
                    ));
                }
                match gmc::translate(&mut Raw(self.vram), self.view.root, key * PAGE) {
                    Ok(e) => {
                        self.tlb.insert(key, e);
                        e
                    }
                    Err(m) => return Err(self.fault(va, write, false, m)),
                }
            }
        };
        let need = if write { PTE_WRITEABLE } else { PTE_READABLE };
        if flags & need == 0 {
            let m = format!("virtual address {va:#x} is not {}", if write { "writeable" } else { "readable" });
            return Err(self.fault(va, write, true, m));
        }
        Ok((pa + va % PAGE, flags & PTE_SYSTEM != 0))
    }

    fn access(&mut self, va: u64, len: usize, write: bool, mut f: impl FnMut(&mut [u8], usize)) -> Result<(), String> {
        let mut done = 0;
        while done < len {
            let a = va + done as u64;
            let (pa, system) = self.page(a, write)?;
            let n = ((PAGE - a % PAGE) as usize).min(len - done);
            if system {
                let (bus, _, mem, off) =
                    self.sys.iter().find(|(b, l, _, _)| pa >= *b && pa + n as u64 <= b + l).ok_or_else(|| {
                        format!("virtual address {a:#x} maps bus address {pa:#x}, which is no system memory")
                    })?;
                let o = (off + pa - bus) as usize;
                let mut res = Err("the system memory is gone".to_string());
                mem.with(&mut |m: &mut [u8]| {
                    res = match m.get_mut(o..o + n) {
                        Some(s) => {
                            f(s, done);
                            Ok(())
                        }
                        None => Err(format!("bus address {pa:#x} is past its memory")),
                    };
                });
                res?;
            } else {
                let r = vram_range(self.vram.len(), pa, n)?;
                f(&mut self.vram[r], done);
            }
            done += n;
        }
        Ok(())
    }
}

impl crate::rdna3::Memory for Vm<'_> {
    fn write(&mut self, addr: u64, src: &[u8]) -> Result<(), String> {
        self.access(addr, src.len(), true, |dst, at| dst.copy_from_slice(&src[at..at + dst.len()]))
            .map_err(|e| format!("a write of {} bytes at {addr:#x}: {e}", src.len()))
    }
    fn read(&mut self, addr: u64, out: &mut [u8]) -> Result<(), String> {
        let n = out.len();
        self.access(addr, n, false, |src, at| out[at..at + src.len()].copy_from_slice(src))
            .map_err(|e| format!("a read of {n} bytes at {addr:#x}: {e}"))
    }
}

/// Whether the GPU may master the bus (PCI command register bit 2): without it, no DMA.
pub(super) fn bus_master(i: &Inner) -> Result<(), String> {
    if i.command.load(std::sync::atomic::Ordering::Relaxed) & 4 == 0 {
        return Err(
            "the GPU's DMA ran with bus mastering off (PCI command register bit 2): the driver did not enable it"
                .into(),
        );
    }
    Ok(())
}

/// Reads or writes `buf` at `addr` through `which`'s hub (locks VRAM, the system memory list
/// and the hub's translation cache for the access).
pub(super) fn access(
    i: &Inner,
    regs: &HashMap<u32, u32>,
    which: Which,
    addr: u64,
    buf: &mut [u8],
    write: bool,
) -> Result<(), String> {
    let get = |r: Reg| regs.get(&(i.map.byte(r) as u32)).copied().unwrap_or(0);
    let view = view(get, which)?;
    bus_master(i)?;
    let mut vram = i.vram.lock().map_err(|_| "poisoned")?;
    let sys = i.sys.lock().map_err(|_| "poisoned")?.clone();
    let mut tlb = i.tlb(which).lock().map_err(|_| "poisoned")?;
    let mut vm = Vm { i, vram: &mut vram, sys: &sys, view, tlb: &mut tlb };
    if write { crate::rdna3::Memory::write(&mut vm, addr, buf) } else { crate::rdna3::Memory::read(&mut vm, addr, buf) }
}

/// Reports the translation fault an engine just met, if any, as the hub does: the fault status
/// and address registers latch the first fault (until VM_L2_PROTECTION_FAULT_CNTL clears them),
/// and the interrupt handler writes a vector to its ring. Needs VRAM unlocked. Returns whether
/// there was one.
pub(super) fn report_fault(i: &Inner, regs: &mut HashMap<u32, u32>) -> bool {
    let Some(f) = i.vm_fault.lock().ok().and_then(|mut f| f.take()) else { return false };
    let h = f.which.regs();
    let at = |r: Reg| i.map.byte(r) as u32;
    if regs.get(&at(h.fault_status)).copied().unwrap_or(0) == 0 {
        let kind = if f.permission { FAULT_PERMISSION } else { FAULT_MAPPING_ERROR };
        regs.insert(at(h.fault_status), kind | if f.write { FAULT_WRITE } else { 0 });
        regs.insert(at(h.fault_addr.0), (f.va >> 12) as u32);
        regs.insert(at(h.fault_addr.1), ((f.va >> 44) & 0xf) as u32);
    }
    let (client, hub_bit) = match f.which {
        Which::Gfx => (IH_CLIENT_GFX, 0),
        Which::Mm => (IH_CLIENT_VMC, 1 << 31),
    };
    let stamp = i.iv_stamp.fetch_add(1, Ordering::Relaxed);
    let iv = [
        client | IH_SRC_VM_FAULT << 8 | hub_bit,
        stamp as u32,
        ((stamp >> 32) & 0xffff) as u32,
        0,
        (f.va >> 12) as u32,
        ((f.va >> 44) & 0xf) as u32 | if f.write { IV_FAULT_WRITE } else { IV_FAULT_READ },
        0,
        0,
    ];
    post(i, regs, &iv);
    // A fault while writing the vector is dropped, as the IH drops what it cannot write.
    if let Ok(mut f) = i.vm_fault.lock() {
        f.take();
    }
    true
}

/// Writes an interrupt vector to IH ring 0 (through the MM hub) and advances its write
/// pointer and write-back; nothing when the ring is off, an overflow when it is full.
fn post(i: &Inner, regs: &mut HashMap<u32, u32>, iv: &[u32; 8]) {
    let at = |r: Reg| i.map.byte(r) as u32;
    let get = |regs: &HashMap<u32, u32>, r: Reg| regs.get(&at(r)).copied().unwrap_or(0);
    let cntl = get(regs, IH_RB_CNTL);
    if cntl & IH_RB_ENABLE == 0 {
        return;
    }
    let base = u64::from(get(regs, IH_RB_BASE)) << 8 | u64::from(get(regs, IH_RB_BASE_HI) & 0xff) << 40;
    let size = 4u64 << ((cntl >> IH_RB_SIZE_SHIFT) & 0x1f);
    let wptr = u64::from(get(regs, IH_RB_WPTR) & IH_OFFSET_MASK) % size;
    let rptr = u64::from(get(regs, IH_RB_RPTR) & IH_OFFSET_MASK) % size;
    let next = (wptr + tk_gpu::amd::regs::IV_BYTES) % size;
    if next == rptr {
        if cntl & IH_WPTR_OVERFLOW_ENABLE != 0 {
            regs.insert(at(IH_RB_WPTR), wptr as u32 | IH_RB_OVERFLOW);
        }
        return;
    }
    let mut b: Vec<u8> = iv.iter().flat_map(|d| d.to_le_bytes()).collect();
    if access(i, regs, Which::Mm, base + wptr, &mut b, true).is_err() {
        return;
    }
    regs.insert(at(IH_RB_WPTR), next as u32);
    if cntl & IH_WPTR_WRITEBACK != 0 {
        let wb =
            u64::from(get(regs, IH_RB_WPTR_ADDR_LO) & !3) | u64::from(get(regs, IH_RB_WPTR_ADDR_HI) & 0xffff) << 32;
        let _ = access(i, regs, Which::Mm, wb, &mut (next as u32).to_le_bytes(), true);
    }
}
