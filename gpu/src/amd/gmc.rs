//! GPU virtual memory: four levels of 512-entry tables (virtual-address shifts 39, 30, 21 and 12)
//! in the GMC format, and the walk that translates a virtual address (the simulated GPU's).

use super::regs::*;

/// The virtual-address shift of each level, root first.
pub const SHIFTS: [u32; 4] = [39, 30, 21, 12];
pub const PAGE: u64 = 4096;

/// Reads and writes physical memory (VRAM offsets) for the page tables.
pub trait Phys {
    fn read_u64(&mut self, pa: u64) -> Result<u64, String>;
    fn write_u64(&mut self, pa: u64, v: u64) -> Result<(), String>;
}

/// The index of `va` in the table of level `l`.
pub fn index(va: u64, l: usize) -> u64 {
    (va >> SHIFTS[l]) & 511
}

/// Translates `va` through the tables at `root`: the physical address and the entry's flags.
pub fn translate(mem: &mut dyn Phys, root: u64, va: u64) -> Result<(u64, u64), String> {
    let mut table = root & PTE_ADDR_MASK;
    for l in 0..4 {
        let e = mem.read_u64(table + index(va, l) * 8)?;
        if e & PTE_VALID == 0 {
            return Err(format!("virtual address {va:#x} is not mapped (level {l} entry is invalid)"));
        }
        if l == 3 {
            return Ok(((e & PTE_ADDR_MASK) | (va & (PAGE - 1)), e));
        }
        table = e & PTE_ADDR_MASK;
    }
    unreachable!("four levels")
}

/// Maps the page at `va` to `pa` with `flags`, allocating tables with `alloc` (which returns a
/// zeroed 4 KiB physical page).
pub fn map(
    mem: &mut dyn Phys,
    root: u64,
    va: u64,
    pa: u64,
    flags: u64,
    alloc: &mut dyn FnMut() -> Result<u64, String>,
) -> Result<(), String> {
    let mut table = root & PTE_ADDR_MASK;
    for l in 0..3 {
        let slot = table + index(va, l) * 8;
        let e = mem.read_u64(slot)?;
        table = if e & PTE_VALID != 0 {
            e & PTE_ADDR_MASK
        } else {
            let t = alloc()?;
            mem.write_u64(slot, t | PTE_VALID)?;
            t
        };
    }
    mem.write_u64(table + index(va, 3) * 8, (pa & PTE_ADDR_MASK) | flags | PTE_VALID)
}

/// Removes the mapping of the page at `va` (tables stay).
pub fn unmap(mem: &mut dyn Phys, root: u64, va: u64) -> Result<(), String> {
    let mut table = root & PTE_ADDR_MASK;
    for l in 0..3 {
        let e = mem.read_u64(table + index(va, l) * 8)?;
        if e & PTE_VALID == 0 {
            return Ok(());
        }
        table = e & PTE_ADDR_MASK;
    }
    mem.write_u64(table + index(va, 3) * 8, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Ram(Vec<u8>);
    impl Phys for Ram {
        fn read_u64(&mut self, pa: u64) -> Result<u64, String> {
            let b = self.0.get(pa as usize..pa as usize + 8).ok_or("outside")?;
            Ok(u64::from_le_bytes(b.try_into().map_err(|_| "8 bytes")?))
        }
        fn write_u64(&mut self, pa: u64, v: u64) -> Result<(), String> {
            self.0.get_mut(pa as usize..pa as usize + 8).ok_or("outside")?.copy_from_slice(&v.to_le_bytes());
            Ok(())
        }
    }

    #[test]
    fn mapped_pages_translate_and_unmapped_ones_fault() {
        let mut ram = Ram(vec![0; 64 * 4096]);
        let mut next = 4096u64;
        let mut alloc = || {
            next += 4096;
            Ok(next)
        };
        let va = 0x7f12_3456_7000;
        map(&mut ram, 0, va, 0x20_0000, PTE_READABLE, &mut alloc).expect("maps");
        // Four levels: the root and three allocated tables.
        assert_eq!(next, 4 * 4096);
        let (pa, flags) = translate(&mut ram, 0, va + 0x123).expect("translates");
        assert_eq!(pa, 0x20_0123);
        assert_eq!(flags & (PTE_READABLE | PTE_VALID | PTE_WRITEABLE), PTE_READABLE | PTE_VALID);
        // The entry is in the GMC format: address bits and flags.
        let e = translate(&mut ram, 0, va + 4096).expect_err("the next page is not mapped");
        assert!(e.contains("not mapped"), "{e}");
        unmap(&mut ram, 0, va).expect("unmaps");
        assert!(translate(&mut ram, 0, va).is_err());
    }
}
