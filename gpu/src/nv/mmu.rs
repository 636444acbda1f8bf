//! The driver's own GPU page tables, MMU "version 2" (Pascal and later): five levels over a
//! 49-bit virtual address (PDE3 bits 48:47, PDE2 46:38, PDE1 37:29, the dual PDE0 28:21 and
//! the page table 20:12), 4 KiB pages in page tables and 2 MiB pages straight in PDE0, each
//! page in VRAM or in system memory. The tables themselves live in system memory the CPU
//! writes directly, so mapping costs no round trip to the GPU: over the TinyGPU socket a
//! register access is one. GSP-RM is told the root (an externally owned VA space); after a
//! change the driver invalidates the GPU's TLBs.
//!
//! Bit layouts: open-gpu-kernel-modules 570.144 `kernel-open/nvidia-uvm/hwref/turing/tu102/
//! dev_mmu.h` (the VER2 fields, which `kern_gmmu_fmt_ga10x.c` keeps for GA10x),
//! `uvm_pascal_mmu.c`; nouveau `vmmgp100.c`; the TLB invalidation registers from
//! `ampere/ga102/dev_vm.h` and nouveau `vmmtu102.c` (docs/nvidia-facts.md, "MMU v2", 1-2).

use super::sysmem::{Buffer, PAGE};
use super::{BAR_MMIO, NvError, chip};
use crate::transport::Transport;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Where a page is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aperture {
    Vram,
    /// System memory, snooped (coherent).
    Sys,
}

/// Page sizes: 4 KiB in a page table, 2 MiB in PDE0.
pub const SMALL: u64 = 4 << 10;
pub const HUGE: u64 = 2 << 20;
/// The virtual address bits.
pub const VA_BITS: u32 = 49;

/// Entry bits. A PDE: bits 2:1 the aperture of the next table (1 VRAM, 2 coherent system
/// memory), bit 3 volatile, bits 53:8 the table's address >> 12. A PTE: bit 0 valid, bits 2:1
/// the page's aperture (0 VRAM, 2 coherent system memory), bit 3 volatile, bits 53:8 its
/// address >> 12 (ADDRESS_SYS; for VRAM below 128 GiB the same as ADDRESS_VID), bits 63:56
/// the kind (6, generic memory).
pub const PDE_APERTURE_SYS: u64 = 2 << 1;
pub const PDE_VOL: u64 = 1 << 3;
pub const PTE_VALID: u64 = 1;
pub const PTE_APERTURE_SYS: u64 = 2 << 1;
pub const PTE_VOL: u64 = 1 << 3;
pub const PTE_KIND_GENERIC: u64 = 6 << 56;
pub const ADDR_SHIFT: u32 = 12;
pub const ADDR_FIELD: u32 = 8;
pub const ADDR_MASK: u64 = ((1 << 46) - 1) << ADDR_FIELD;

/// The levels: (lowest VA bit indexed, index bits, entry bytes).
pub const LEVELS: [(u32, u32, usize); 5] = [(47, 2, 8), (38, 9, 8), (29, 9, 8), (21, 8, 16), (12, 9, 8)];

/// NV_VIRTUAL_FUNCTION_PRIV_MMU_INVALIDATE_PDB / _UPPER_PDB / _INVALIDATE (BAR0 0xB80000 + VF
/// offsets): the PDB (address >> 12 in bits 31:4, bit 1 system memory), then the trigger
/// (bit 31, reads 0 when done) with ALL_VA (bit 0) for the one PDB.
pub const MMU_INVALIDATE_PDB: u64 = 0xb8_30a0;
pub const MMU_INVALIDATE_UPPER_PDB: u64 = 0xb8_30a4;
pub const MMU_INVALIDATE: u64 = 0xb8_30b0;
pub const INVALIDATE_ALL_VA: u32 = 1;
pub const INVALIDATE_TRIGGER: u32 = 1 << 31;
pub const INVALIDATE_PDB_SYS: u32 = 1 << 1;

/// The PTE of a page at `pa`.
pub fn pte(aperture: Aperture, pa: u64) -> u64 {
    let ap = match aperture {
        Aperture::Vram => 0,
        Aperture::Sys => PTE_APERTURE_SYS | PTE_VOL,
    };
    PTE_VALID | ap | (pa >> ADDR_SHIFT) << ADDR_FIELD | PTE_KIND_GENERIC
}

/// A PDE naming a table in system memory at `pa`.
pub fn pde(pa: u64) -> u64 {
    PDE_APERTURE_SYS | PDE_VOL | (pa >> ADDR_SHIFT) << ADDR_FIELD
}

/// Why a mapping cannot be made.
fn bad(detail: String) -> NvError {
    NvError::Step { step: "vaspace", detail }
}

/// The page tables of one VA space.
pub struct PageTables {
    /// Table pages, allocated from system memory in pools.
    pools: Vec<Buffer>,
    free: Vec<(usize, usize)>,
    /// The tables by (level, VA of the region they cover): (pool, offset in it).
    tables: HashMap<(usize, u64), (usize, usize)>,
    /// The root table's bus address (the VA space's page directory base).
    pub root_bus: u64,
    /// What every mapped page points at (VA -> (aperture, address, size)).
    maps: BTreeMap<u64, (Aperture, u64, u64)>,
}

/// Tables per system-memory pool (128 pages: 512 KiB, within the 32-segment limit).
const POOL_PAGES: usize = 128;

impl PageTables {
    /// An empty VA space: its root table (PDE3).
    pub fn new(t: &dyn Transport) -> Result<PageTables, NvError> {
        let mut p = PageTables {
            pools: Vec::new(),
            free: Vec::new(),
            tables: HashMap::new(),
            root_bus: 0,
            maps: BTreeMap::new(),
        };
        let root = p.table(t, 0, 0)?;
        p.root_bus = p.pools[root.0].bus(root.1);
        Ok(p)
    }

    /// The table at `level` covering `va` (allocated and zeroed on first use).
    fn table(&mut self, t: &dyn Transport, level: usize, va: u64) -> Result<(usize, usize), NvError> {
        let span = if level == 0 { 0 } else { LEVELS[level - 1].0 };
        let key = (level, if level == 0 { 0 } else { va >> span << span });
        if let Some(&at) = self.tables.get(&key) {
            return Ok(at);
        }
        if self.free.is_empty() {
            let b = Buffer::new(t, POOL_PAGES * PAGE, "vaspace", "page tables")?;
            let k = self.pools.len();
            self.free.extend((0..POOL_PAGES).rev().map(|p| (k, p * PAGE)));
            self.pools.push(b);
        }
        let at = self.free.pop().ok_or_else(|| bad("no page-table page".into()))?;
        self.pools[at.0].write(at.1, &[0u8; PAGE]);
        self.tables.insert(key, at);
        Ok(at)
    }

    fn set(&self, at: (usize, usize), index: usize, bytes: usize, v: u64) {
        let b = &self.pools[at.0];
        b.write(at.1 + index * bytes, &v.to_le_bytes());
    }

    /// Maps `size` bytes at virtual `va` to `pa` in `aperture`, with 2 MiB pages where `va`,
    /// `pa` and the rest allow and 4 KiB pages elsewhere.
    pub fn map(&mut self, t: &dyn Transport, va: u64, pa: u64, size: u64, aperture: Aperture) -> Result<(), NvError> {
        if !va.is_multiple_of(SMALL) || !pa.is_multiple_of(SMALL) || !size.is_multiple_of(SMALL) {
            return Err(bad(format!("a mapping of {size:#x} bytes at {va:#x} to {pa:#x} is not whole 4 KiB pages")));
        }
        if va.checked_add(size).is_none_or(|end| end > 1 << VA_BITS) || pa.checked_add(size).is_none() {
            return Err(bad(format!("a mapping of {size:#x} bytes at {va:#x} runs past the 49-bit VA space")));
        }
        let mut off = 0;
        while off < size {
            let (v, p) = (va + off, pa + off);
            let huge = v.is_multiple_of(HUGE) && p.is_multiple_of(HUGE) && size - off >= HUGE;
            let page = if huge { HUGE } else { SMALL };
            let before = self.maps.range(..v + page).next_back();
            if before.is_some_and(|(&m, e)| m + e.2 > v) {
                return Err(bad(format!("{v:#x} is mapped already")));
            }
            self.map_page(t, v, p, huge, aperture)?;
            self.maps.insert(v, (aperture, p, page));
            off += page;
        }
        Ok(())
    }

    fn map_page(&mut self, t: &dyn Transport, va: u64, pa: u64, huge: bool, aperture: Aperture) -> Result<(), NvError> {
        let index = |level: usize| ((va >> LEVELS[level].0) & ((1 << LEVELS[level].1) - 1)) as usize;
        // PDE3, PDE2, PDE1: each names the next table.
        let mut cur = self.table(t, 0, va)?;
        for level in 0..3 {
            let next = self.table(t, level + 1, va)?;
            self.set(cur, index(level), 8, pde(self.pools[next.0].bus(next.1)));
            cur = next;
        }
        // PDE0: 16 bytes, the big-page half low, the small-page half high.
        let i0 = index(3);
        if huge {
            self.set(cur, 2 * i0, 8, pte(aperture, pa));
            self.set(cur, 2 * i0 + 1, 8, 0);
            return Ok(());
        }
        let pt = self.table(t, 4, va)?;
        self.set(cur, 2 * i0, 8, 0);
        self.set(cur, 2 * i0 + 1, 8, pde(self.pools[pt.0].bus(pt.1)));
        self.set(pt, index(4), 8, pte(aperture, pa));
        Ok(())
    }

    /// Unmaps the pages of `size` bytes at `va` (each mapping must lie inside).
    pub fn unmap(&mut self, va: u64, size: u64) {
        let pages: Vec<u64> = self
            .maps
            .range(va..va.saturating_add(size))
            .filter(|(m, e)| **m + e.2 <= va + size)
            .map(|(m, _)| *m)
            .collect();
        for v in pages {
            let Some((_, _, page)) = self.maps.remove(&v) else { continue };
            let index = |level: usize| ((v >> LEVELS[level].0) & ((1 << LEVELS[level].1) - 1)) as usize;
            if page == HUGE {
                if let Some(&pd0) = self.tables.get(&(3, v >> LEVELS[2].0 << LEVELS[2].0)) {
                    self.set(pd0, 2 * index(3), 8, 0);
                }
            } else if let Some(&pt) = self.tables.get(&(4, v >> LEVELS[3].0 << LEVELS[3].0)) {
                self.set(pt, index(4), 8, 0);
            }
        }
    }

    /// Where `va` points, from the driver's record.
    pub fn translate(&self, va: u64) -> Option<(Aperture, u64)> {
        let (m, e) = self.maps.range(..=va).next_back()?;
        (va < m + e.2).then(|| (e.0, e.1 + va - m))
    }

    /// Invalidates the GPU's TLBs for this VA space and waits for it.
    pub fn invalidate(&self, t: &dyn Transport, timeout: Duration) -> Result<(), NvError> {
        let wr = |off: u64, v: u32| t.write32(BAR_MMIO, off, v).map_err(bad);
        wr(MMU_INVALIDATE_PDB, ((self.root_bus >> 12) << 4) as u32 | INVALIDATE_PDB_SYS)?;
        wr(MMU_INVALIDATE_UPPER_PDB, (self.root_bus >> 40) as u32)?;
        wr(MMU_INVALIDATE, INVALIDATE_TRIGGER | INVALIDATE_ALL_VA)?;
        let deadline = Instant::now() + timeout;
        while chip::read(t, MMU_INVALIDATE)? & INVALIDATE_TRIGGER != 0 {
            if Instant::now() >= deadline {
                return Err(bad(format!("the TLB invalidation did not finish within {timeout:?}")));
            }
            std::thread::sleep(Duration::from_micros(10));
        }
        Ok(())
    }
}
