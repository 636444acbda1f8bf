//! The simulated GPU's memory: VRAM (sparse, 4 KiB pages made on first write) and the MMU,
//! which walks the driver's version-2 page tables (tables in VRAM or in system memory) the way
//! the hardware does, and caches what it found in a TLB that only an invalidation clears (so a
//! driver that changes a mapping and forgets to invalidate reads stale memory, as on a GPU).
//! A walk that ends at an invalid entry is a fault naming the address and the level.

use super::NvSimGpu;
use std::collections::HashMap;
use tk_gpu::nv::mmu::{ADDR_FIELD, ADDR_MASK, ADDR_SHIFT, Aperture, HUGE, LEVELS, SMALL};

/// VRAM pages and the TLB.
#[derive(Default)]
pub struct Memory {
    pages: HashMap<u64, Box<[u8; 4096]>>,
    /// (root, VA page) -> (aperture, page address, page size).
    tlb: HashMap<(u64, u64), (Aperture, u64, u64)>,
}

fn table_aperture(e: u64) -> Option<Aperture> {
    match (e >> 1) & 3 {
        1 => Some(Aperture::Vram),
        2 | 3 => Some(Aperture::Sys),
        _ => None,
    }
}

fn page_aperture(e: u64) -> Option<Aperture> {
    match (e >> 1) & 3 {
        0 => Some(Aperture::Vram),
        2 | 3 => Some(Aperture::Sys),
        _ => None, // peer memory
    }
}

fn addr(e: u64) -> u64 {
    ((e & ADDR_MASK) >> ADDR_FIELD) << ADDR_SHIFT
}

impl NvSimGpu {
    fn vram_bytes(&self) -> u64 {
        u64::from(self.opts.chip.vram_mib()) << 20
    }

    /// Reads `n` bytes of VRAM at `pa` (never-written memory reads as zero).
    pub(super) fn vram_read(&self, pa: u64, n: usize) -> Result<Vec<u8>, String> {
        if pa.checked_add(n as u64).is_none_or(|end| end > self.vram_bytes()) {
            return Err(format!("a VRAM access of {n} bytes at {pa:#x}, past the end of VRAM"));
        }
        let m = self.mem.lock().map_err(|_| "poisoned")?;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let at = pa + out.len() as u64;
            let k = ((4096 - at % 4096) as usize).min(n - out.len());
            match m.pages.get(&(at / 4096)) {
                Some(p) => out.extend_from_slice(&p[(at % 4096) as usize..(at % 4096) as usize + k]),
                None => out.resize(out.len() + k, 0),
            }
        }
        Ok(out)
    }

    pub(super) fn vram_write(&self, pa: u64, bytes: &[u8]) -> Result<(), String> {
        if pa.checked_add(bytes.len() as u64).is_none_or(|end| end > self.vram_bytes()) {
            return Err(format!("a VRAM access of {} bytes at {pa:#x}, past the end of VRAM", bytes.len()));
        }
        let mut m = self.mem.lock().map_err(|_| "poisoned")?;
        let mut done = 0;
        while done < bytes.len() {
            let at = pa + done as u64;
            let k = ((4096 - at % 4096) as usize).min(bytes.len() - done);
            let page = m.pages.entry(at / 4096).or_insert_with(|| Box::new([0; 4096]));
            page[(at % 4096) as usize..(at % 4096) as usize + k].copy_from_slice(&bytes[done..done + k]);
            done += k;
        }
        Ok(())
    }

    /// Reads physical memory in an aperture.
    pub(super) fn phys_read(&self, ap: Aperture, pa: u64, n: usize) -> Result<Vec<u8>, String> {
        match ap {
            Aperture::Vram => self.vram_read(pa, n),
            Aperture::Sys => self.read_bus(pa, n),
        }
    }

    pub(super) fn phys_write(&self, ap: Aperture, pa: u64, bytes: &[u8]) -> Result<(), String> {
        match ap {
            Aperture::Vram => self.vram_write(pa, bytes),
            Aperture::Sys => self.dma_write(pa, bytes),
        }
    }

    fn entry(&self, ap: Aperture, at: u64) -> Result<u64, String> {
        let b = self.phys_read(ap, at, 8)?;
        Ok(u64::from_le_bytes(b.try_into().map_err(|_| "short read")?))
    }

    /// Walks the page tables whose root is at `root` (system memory) for `va`: the page's
    /// aperture, its address and its size. The TLB answers first.
    pub(super) fn translate(&self, root: u64, va: u64) -> Result<(Aperture, u64), String> {
        {
            let m = self.mem.lock().map_err(|_| "poisoned")?;
            for size in [SMALL, HUGE] {
                if let Some(&(ap, pa, s)) = m.tlb.get(&(root, va / size * size)).filter(|e| e.2 == size) {
                    return Ok((ap, pa + va % s));
                }
            }
        }
        let fault = |level: &str| format!("MMU fault: virtual address {va:#x} is not mapped ({level} entry invalid)");
        if va >> 49 != 0 {
            return Err(format!("MMU fault: virtual address {va:#x} is beyond 49 bits"));
        }
        let index = |level: usize| (va >> LEVELS[level].0) & ((1 << LEVELS[level].1) - 1);
        let (mut ap, mut table) = (Aperture::Sys, root);
        for (level, name) in ["PDE3", "PDE2", "PDE1"].iter().enumerate() {
            let e = self.entry(ap, table + 8 * index(level))?;
            if e & 1 != 0 {
                return Err(format!("MMU fault at {va:#x}: a {name} entry marked as a PTE (not supported here)"));
            }
            ap = table_aperture(e).ok_or_else(|| fault(name))?;
            table = addr(e);
        }
        let at = table + 16 * index(3);
        let (big, small) = (self.entry(ap, at)?, self.entry(ap, at + 8)?);
        let (pte, size) = if big & 1 != 0 {
            (big, HUGE)
        } else {
            let pt_ap = table_aperture(small).ok_or_else(|| fault("PDE0"))?;
            (self.entry(pt_ap, addr(small) + 8 * index(4))?, SMALL)
        };
        if pte & 1 == 0 {
            return Err(fault(if size == HUGE { "PDE0" } else { "PTE" }));
        }
        let page_ap = page_aperture(pte).ok_or_else(|| format!("MMU fault at {va:#x}: a PTE for peer memory"))?;
        let pa = addr(pte);
        if !pa.is_multiple_of(size) {
            return Err(format!("MMU fault at {va:#x}: a 2 MiB page at {pa:#x}, which is not 2 MiB aligned"));
        }
        self.mem.lock().map_err(|_| "poisoned")?.tlb.insert((root, va / size * size), (page_ap, pa, size));
        Ok((page_ap, pa + va % size))
    }

    /// Reads `n` bytes at virtual `va` of the VA space at `root`.
    pub(super) fn va_read(&self, root: u64, va: u64, n: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let v = va + out.len() as u64;
            let k = ((4096 - v % 4096) as usize).min(n - out.len());
            let (ap, pa) = self.translate(root, v)?;
            out.extend(self.phys_read(ap, pa, k)?);
        }
        Ok(out)
    }

    pub(super) fn va_write(&self, root: u64, va: u64, bytes: &[u8]) -> Result<(), String> {
        let mut done = 0;
        while done < bytes.len() {
            let v = va + done as u64;
            let k = ((4096 - v % 4096) as usize).min(bytes.len() - done);
            let (ap, pa) = self.translate(root, v)?;
            self.phys_write(ap, pa, &bytes[done..done + k])?;
            done += k;
        }
        Ok(())
    }

    /// A TLB invalidation: of one VA space (its root), or of all.
    pub(super) fn invalidate(&self, root: Option<u64>) {
        if let Ok(mut m) = self.mem.lock() {
            match root {
                Some(r) => m.tlb.retain(|k, _| k.0 != r),
                None => m.tlb.clear(),
            }
        }
    }
}
