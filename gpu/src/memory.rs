//! GPU memory bookkeeping shared by the vendors' drivers: a first-fit allocator over page-sized
//! ranges of device memory.

use std::collections::BTreeMap;

/// A first-fit allocator over the free ranges of `[0, size)`, in units of `page` bytes; freed
/// ranges merge with their neighbours.
#[derive(Debug)]
pub struct Heap {
    page: u64,
    free: BTreeMap<u64, u64>,
}

impl Heap {
    /// A heap over `[0, size)` with allocations rounded up to `page` bytes (a power of two).
    pub fn new(size: u64, page: u64) -> Heap {
        let mut free = BTreeMap::new();
        if size > 0 {
            free.insert(0, size);
        }
        Heap { page, free }
    }

    /// The offset of `bytes` (at least one page) of free memory, or None when no range fits.
    pub fn alloc(&mut self, bytes: u64) -> Option<u64> {
        let n = bytes.max(1).checked_next_multiple_of(self.page)?;
        let (&at, &len) = self.free.iter().find(|(_, l)| **l >= n)?;
        self.free.remove(&at);
        if len > n {
            self.free.insert(at + n, len - n);
        }
        Some(at)
    }

    /// Returns an allocation of `bytes` at `at`.
    pub fn release(&mut self, at: u64, bytes: u64) {
        let n = bytes.max(1).next_multiple_of(self.page);
        self.free.insert(at, n);
        let next = self.free.range(at + n..).next().map(|(a, l)| (*a, *l));
        if let Some((a, l)) = next.filter(|(a, _)| *a == at + n) {
            self.free.remove(&a);
            self.free.insert(at, n + l);
        }
        let prev = self.free.range(..at).next_back().map(|(a, l)| (*a, *l));
        if let Some((a, l)) = prev.filter(|(a, l)| a + l == at) {
            let cur = self.free.remove(&at).unwrap_or(n);
            self.free.insert(a, l + cur);
        }
    }

    /// Free bytes in all.
    pub fn free_bytes(&self) -> u64 {
        self.free.values().sum()
    }

    /// Free ranges (a fragmented heap has several).
    pub fn free_ranges(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heap_reuses_and_merges_freed_ranges() {
        const PAGE: u64 = 4096;
        let mut h = Heap::new(16 * PAGE, PAGE);
        let a = h.alloc(1).expect("a");
        let b = h.alloc(PAGE + 1).expect("b");
        let c = h.alloc(PAGE).expect("c");
        assert_eq!((a, b, c), (0, PAGE, 3 * PAGE));
        h.release(b, PAGE + 1);
        h.release(a, 1);
        h.release(c, PAGE);
        assert_eq!(h.free_ranges(), 1);
        assert_eq!(h.alloc(16 * PAGE), Some(0));
        assert_eq!(h.alloc(1), None, "full");
        assert_eq!(h.alloc(u64::MAX), None, "a size that overflows fits nowhere");
    }
}
