//! Simulated PCIe GPUs behind tk-gpu's transport trait: registers, firmware formats and command
//! streams as the hardware has them, running the machine code on tk-sim's emulators.
//! [`amd`]: an RDNA3 GPU (the `amd:sim` device); [`nv`]: an NVIDIA GPU as far as the driver's
//! first bring-up steps reach; [`tinygpu_server`]: the TinyGPU.app socket
//! protocol in front of it; [`tampered`]: one with an access withheld, for tests.

pub mod amd;
pub mod nv;
pub mod tampered;
#[cfg(unix)]
pub mod tinygpu_server;

/// The value of a simulated GPU's `link-drop=N` option: after N register or configuration-space
/// accesses the link is gone.
fn link_drop(n: &str) -> Result<u64, String> {
    n.parse().map_err(|_| format!("link-drop={n}: expected a number of accesses, such as link-drop=100"))
}

/// Deterministic bytes for `what` (a small xorshift generator seeded by the name): the
/// contents of the simulated GPUs' synthetic firmware.
pub fn filler(what: &str, n: usize) -> Vec<u8> {
    let mut x = what.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// System memory is handed out in pieces of this size (a multiple of the Mac's 16 KiB host
/// pages), scattered on the bus below 2^40 (TinyGPU's 40-bit bus addresses).
pub const SYSMEM_CHUNK: u64 = 256 << 10;
/// The most DMA segments one buffer may have (TinyGPU's limit, docs/driver.md).
pub const MAX_SEGMENTS: u64 = 32;

/// A piece of system memory on the bus: (bus address, bytes, memory, offset in it).
pub type Chunk = (u64, u64, std::sync::Arc<dyn tk_gpu::transport::HostMem>, u64);

/// Makes `mem` reachable by DMA in [`SYSMEM_CHUNK`] pieces at scattered bus addresses above
/// `region` (backwards, with a gap after each, as an IOMMU hands them out), adds them to
/// `sys` and returns the segment list. A buffer that would need more than [`MAX_SEGMENTS`]
/// pieces is refused, as the Mac path refuses it.
pub fn attach(
    sys: &mut Vec<Chunk>,
    mem: std::sync::Arc<dyn tk_gpu::transport::HostMem>,
    region: u64,
) -> Result<Vec<(u64, u64)>, String> {
    let n = (mem.len() as u64).div_ceil(SYSMEM_CHUNK);
    if n > MAX_SEGMENTS {
        return Err(format!(
            "{} bytes of DMA memory would take {n} segments of {} KiB; a buffer has at most {MAX_SEGMENTS} (the \
             TinyGPU limit)",
            mem.len(),
            SYSMEM_CHUNK >> 10
        ));
    }
    let base = region + sys.len() as u64 * 4 * SYSMEM_CHUNK + 2 * n * SYSMEM_CHUNK;
    let mut segs = Vec::new();
    for k in 0..n {
        let bus = base - 2 * k * SYSMEM_CHUNK;
        let len = SYSMEM_CHUNK.min(mem.len() as u64 - k * SYSMEM_CHUNK);
        sys.push((bus, len, mem.clone(), k * SYSMEM_CHUNK));
        segs.push((bus, len));
    }
    Ok(segs)
}
