//! System memory the GSP boot hands to the GPU: buffers filled by the CPU and named to the GPU
//! by their bus addresses, images laid out page by page (each buffer small enough for the
//! transport's 32 DMA segments even with 16 KiB pieces), and the three-level radix table that
//! describes GSP-RM's image to the booter (4 KiB pages of 8-byte bus addresses; level 0 is one
//! page whose first entry names the level-1 page: nouveau `nvkm_gsp_radix3_sg`, nova-core
//! `gsp/fw.rs`; docs/nvidia-facts.md, "Other linux-firmware containers").

use super::NvError;
use crate::transport::{SysMem, Transport};

/// The GPU's page size for these tables.
pub const PAGE: usize = 4096;
/// The Mac's host page: system memory comes in whole ones (the TinyGPU server refuses less).
pub const HOST_PAGE: usize = 16 << 10;
/// The largest buffer allocated at once: 32 segments of the Mac's 16 KiB pages.
pub const MAX_BUFFER: usize = 32 * HOST_PAGE;

fn fail(step: &'static str, detail: String) -> NvError {
    NvError::Step { step, detail }
}

/// One buffer of system memory the GPU reads.
pub struct Buffer {
    pub sys: SysMem,
    pub len: usize,
}

impl Buffer {
    /// Allocates `len` bytes (zeroed) for `what`.
    pub fn new(t: &dyn Transport, len: usize, step: &'static str, what: &str) -> Result<Buffer, NvError> {
        let sys = t
            .sysmem(len.max(1).next_multiple_of(HOST_PAGE))
            .map_err(|e| fail(step, format!("system memory for {what}: {e}")))?;
        let covered: u64 = sys.segments.iter().map(|&(_, n)| n).sum();
        if sys.mem.len() < len || covered < len as u64 {
            return Err(fail(step, format!("the transport gave less system memory than the {len} bytes {what} needs")));
        }
        let last = sys.segments.len().saturating_sub(1);
        let whole =
            |k: usize, b: u64, n: u64| b.is_multiple_of(PAGE as u64) && (k == last || n.is_multiple_of(PAGE as u64));
        if !sys.segments.iter().enumerate().all(|(k, &(b, n))| whole(k, b, n)) {
            return Err(fail(step, format!("the transport's DMA segments for {what} are not whole 4 KiB pages")));
        }
        Ok(Buffer { sys, len })
    }

    /// Copies `bytes` in at `at` (which the caller keeps inside the buffer).
    pub fn write(&self, at: usize, bytes: &[u8]) {
        self.sys.mem.with(&mut |m| {
            if let Some(to) = at.checked_add(bytes.len()).and_then(|end| m.get_mut(at..end)) {
                to.copy_from_slice(bytes);
            }
        });
    }

    /// Reads `n` bytes at `at` (zeros past the end).
    pub fn read(&self, at: usize, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.sys.mem.with(&mut |m| {
            if let Some(from) = at.checked_add(n).and_then(|end| m.get(at..end)) {
                out.copy_from_slice(from);
            }
        });
        out
    }

    /// The bus address of byte `at`.
    pub fn bus(&self, at: usize) -> u64 {
        self.sys.bus(at as u64).unwrap_or(0)
    }
}

/// `bytes` copied into system memory page by page, in buffers of at most [`MAX_BUFFER`].
pub struct Paged {
    pub bufs: Vec<Buffer>,
    /// Every page's bus address, in order.
    pub pages: Vec<u64>,
    pub len: usize,
}

impl Paged {
    pub fn new(t: &dyn Transport, bytes: &[u8], step: &'static str, what: &str) -> Result<Paged, NvError> {
        let (mut bufs, mut pages) = (Vec::new(), Vec::new());
        for piece in bytes.chunks(MAX_BUFFER) {
            let b = Buffer::new(t, piece.len().next_multiple_of(PAGE), step, what)?;
            b.write(0, piece);
            pages.extend((0..piece.len().div_ceil(PAGE)).map(|k| b.bus(k * PAGE)));
            bufs.push(b);
        }
        Ok(Paged { bufs, pages, len: bytes.len() })
    }

    /// Copies `bytes` in at `at`, across buffers (bytes past the end are dropped).
    pub fn write(&self, at: usize, bytes: &[u8]) {
        let mut done = 0;
        while done < bytes.len() {
            let pos = at + done;
            let (k, off) = (pos / MAX_BUFFER, pos % MAX_BUFFER);
            let Some(b) = self.bufs.get(k) else { return };
            let n = (MAX_BUFFER - off).min(bytes.len() - done);
            b.write(off, &bytes[done..done + n]);
            done += n;
        }
    }

    /// Reads `n` bytes at `at`, across buffers (zeros past the end).
    pub fn read(&self, at: usize, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let pos = at + out.len();
            let (k, off) = (pos / MAX_BUFFER, pos % MAX_BUFFER);
            let m = (MAX_BUFFER - off).min(n - out.len());
            match self.bufs.get(k) {
                Some(b) => out.extend(b.read(off, m)),
                None => out.resize(n, 0),
            }
        }
        out
    }
}

/// The three-level radix table over `pages`: level 0 (one page, one entry), level 1 (one page:
/// up to 512 level-2 pages, 1 GiB of image), level 2 (the data pages' addresses). Returns the
/// table's buffer; level 0 is its first page.
pub fn radix3(t: &dyn Transport, pages: &[u64], step: &'static str) -> Result<Buffer, NvError> {
    let per = PAGE / 8;
    let l2 = pages.len().div_ceil(per).max(1);
    if l2 > per {
        return Err(fail(step, format!("an image of {} pages is too big for a three-level radix table", pages.len())));
    }
    let b = Buffer::new(t, (2 + l2) * PAGE, step, "GSP-RM's radix table")?;
    let entries = |v: &mut dyn Iterator<Item = u64>| v.flat_map(u64::to_le_bytes).collect::<Vec<u8>>();
    b.write(0, &b.bus(PAGE).to_le_bytes());
    b.write(PAGE, &entries(&mut (0..l2).map(|k| b.bus((2 + k) * PAGE))));
    b.write(2 * PAGE, &entries(&mut pages.iter().copied()));
    Ok(b)
}
