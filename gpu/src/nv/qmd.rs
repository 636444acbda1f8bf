//! The compute launch descriptor, QMD version 3 (Ampere and Ada: 256 bytes, fields named by bit
//! ranges across its 64 words), the GPFIFO entry and the pushbuffer's method headers.
//!
//! Bit ranges: open-gpu-doc `classes/compute/clc7c0qmd.h` (QMDV03_00; Ada's `clc9c0qmd.h`
//! has the same fields), `classes/host/clc56f.h` (GP entries, method headers via
//! `manuals/ampere/ga100/dev_ram.ref.txt`); values as tinygrad's `ops_nv.py` sets them, the
//! constant-buffer size shifted by 4 as the field's name and Mesa's NAK say
//! (docs/nvidia-facts.md, "MMU v2, GPFIFO, QMD v3", 3-5).

/// A QMD field: its highest and lowest bit.
pub type Field = (u32, u32);

pub const QMD_GROUP_ID: Field = (133, 128);
pub const SM_GLOBAL_CACHING_ENABLE: Field = (134, 134);
pub const INVALIDATE_TEXTURE_HEADER_CACHE: Field = (186, 186);
pub const INVALIDATE_TEXTURE_SAMPLER_CACHE: Field = (187, 187);
pub const INVALIDATE_TEXTURE_DATA_CACHE: Field = (188, 188);
pub const INVALIDATE_SHADER_DATA_CACHE: Field = (189, 189);
pub const PROGRAM_PREFETCH_ADDR_LOWER_SHIFTED: Field = (287, 256);
pub const CWD_MEMBAR_TYPE: Field = (369, 368);
pub const API_VISIBLE_CALL_LIMIT: Field = (378, 378);
pub const SAMPLER_INDEX: Field = (382, 382);
pub const CTA_RASTER_WIDTH: Field = (415, 384);
pub const CTA_RASTER_HEIGHT: Field = (431, 416);
pub const CTA_RASTER_DEPTH: Field = (463, 448);
pub const SHARED_MEMORY_SIZE: Field = (561, 544);
pub const MIN_SM_CONFIG_SHARED_MEM_SIZE: Field = (567, 562);
pub const MAX_SM_CONFIG_SHARED_MEM_SIZE: Field = (574, 569);
pub const QMD_MAJOR_VERSION: Field = (583, 580);
pub const CTA_THREAD_DIMENSION0: Field = (607, 592);
pub const CTA_THREAD_DIMENSION1: Field = (623, 608);
pub const CTA_THREAD_DIMENSION2: Field = (639, 624);
pub const REGISTER_COUNT_V: Field = (656, 648);
pub const TARGET_SM_CONFIG_SHARED_MEM_SIZE: Field = (662, 657);
pub const SHADER_LOCAL_MEMORY_LOW_SIZE: Field = (759, 736);
pub const BARRIER_COUNT: Field = (767, 763);
pub const PROGRAM_ADDRESS_LOWER: Field = (1567, 1536);
pub const PROGRAM_ADDRESS_UPPER: Field = (1584, 1568);
pub const SHADER_LOCAL_MEMORY_HIGH_SIZE: Field = (1623, 1600);
pub const PROGRAM_PREFETCH_ADDR_UPPER_SHIFTED: Field = (1640, 1632);
pub const PROGRAM_PREFETCH_SIZE: Field = (1649, 1641);
pub const SASS_VERSION: Field = (1663, 1656);

/// Constant buffer `i` (0..8): valid, address, invalidate, size >> 4.
pub const fn constant_buffer_valid(i: u32) -> Field {
    (640 + i, 640 + i)
}
pub const fn constant_buffer_addr_lower(i: u32) -> Field {
    (1055 + 64 * i, 1024 + 64 * i)
}
pub const fn constant_buffer_addr_upper(i: u32) -> Field {
    (1072 + 64 * i, 1056 + 64 * i)
}
pub const fn constant_buffer_invalidate(i: u32) -> Field {
    (1074 + 64 * i, 1074 + 64 * i)
}
pub const fn constant_buffer_size_shifted4(i: u32) -> Field {
    (1087 + 64 * i, 1075 + 64 * i)
}

/// The QMD's size.
pub const QMD_BYTES: usize = 256;

/// A QMD being built or read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qmd(pub [u32; 64]);

impl Default for Qmd {
    fn default() -> Qmd {
        Qmd([0; 64])
    }
}

impl Qmd {
    /// Sets a field (at most 32 bits wide, which every QMD v3 field is).
    pub fn set(&mut self, (hi, lo): Field, v: u32) {
        let width = hi - lo + 1;
        let mask = if width == 32 { u32::MAX } else { (1 << width) - 1 };
        let v = v & mask;
        let (w, b) = ((lo / 32) as usize, lo % 32);
        self.0[w] = (self.0[w] & !(mask << b)) | (v << b);
        if b + width > 32 {
            let spill = b + width - 32;
            let m2 = (1u32 << spill) - 1;
            self.0[w + 1] = (self.0[w + 1] & !m2) | (v >> (32 - b));
        }
    }

    pub fn get(&self, (hi, lo): Field) -> u32 {
        let width = hi - lo + 1;
        let (w, b) = ((lo / 32) as usize, lo % 32);
        let mut v = u64::from(self.0[w]) >> b;
        if b + width > 32 {
            v |= u64::from(self.0[w + 1]) << (32 - b);
        }
        (v & ((1u64 << width) - 1)) as u32
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub fn from_bytes(b: &[u8]) -> Option<Qmd> {
        let mut q = Qmd::default();
        for (k, w) in q.0.iter_mut().enumerate() {
            *w = u32::from_le_bytes(b.get(4 * k..4 * k + 4)?.try_into().ok()?);
        }
        Some(q)
    }
}

/// What a launch needs in its QMD.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Launch {
    pub program: u64,
    pub program_bytes: u64,
    pub blocks: u32,
    pub threads: u32,
    pub registers: u32,
    pub barriers: u32,
    pub shared_bytes: u32,
    pub local_bytes: u32,
    /// The SM version the code is for (0x86, 0x89).
    pub sass_version: u32,
    /// Constant banks 0 and (if any) 2: address and size.
    pub bank0: (u64, u32),
    pub bank2: Option<(u64, u32)>,
}

/// The shared-memory configuration a launch asks for (in 4 KiB units + 1): the smallest of
/// 32, 64 and 100 KiB that holds it.
pub fn shared_config(bytes: u32) -> u32 {
    let kib = [32u32, 64, 100].into_iter().find(|&k| bytes <= k << 10).unwrap_or(100);
    kib / 4 + 1
}

/// The QMD v3 of a launch.
pub fn build(l: &Launch) -> Qmd {
    let mut q = Qmd::default();
    for f in [
        SM_GLOBAL_CACHING_ENABLE,
        INVALIDATE_TEXTURE_HEADER_CACHE,
        INVALIDATE_TEXTURE_SAMPLER_CACHE,
        INVALIDATE_TEXTURE_DATA_CACHE,
        INVALIDATE_SHADER_DATA_CACHE,
        API_VISIBLE_CALL_LIMIT,
        SAMPLER_INDEX,
    ] {
        q.set(f, 1);
    }
    q.set(QMD_GROUP_ID, 0x3f);
    q.set(CWD_MEMBAR_TYPE, 1);
    q.set(QMD_MAJOR_VERSION, 3);
    q.set(CTA_RASTER_WIDTH, l.blocks);
    q.set(CTA_RASTER_HEIGHT, 1);
    q.set(CTA_RASTER_DEPTH, 1);
    q.set(CTA_THREAD_DIMENSION0, l.threads);
    q.set(CTA_THREAD_DIMENSION1, 1);
    q.set(CTA_THREAD_DIMENSION2, 1);
    let shared = l.shared_bytes.next_multiple_of(128);
    q.set(SHARED_MEMORY_SIZE, shared);
    let cfg = shared_config(shared);
    q.set(MIN_SM_CONFIG_SHARED_MEM_SIZE, cfg);
    q.set(TARGET_SM_CONFIG_SHARED_MEM_SIZE, cfg);
    q.set(MAX_SM_CONFIG_SHARED_MEM_SIZE, shared_config(100 << 10));
    q.set(REGISTER_COUNT_V, l.registers);
    q.set(BARRIER_COUNT, l.barriers.max(1));
    q.set(SHADER_LOCAL_MEMORY_HIGH_SIZE, l.local_bytes);
    q.set(PROGRAM_ADDRESS_LOWER, l.program as u32);
    q.set(PROGRAM_ADDRESS_UPPER, (l.program >> 32) as u32);
    q.set(PROGRAM_PREFETCH_ADDR_LOWER_SHIFTED, (l.program >> 8) as u32);
    q.set(PROGRAM_PREFETCH_ADDR_UPPER_SHIFTED, (l.program >> 40) as u32);
    q.set(PROGRAM_PREFETCH_SIZE, (l.program_bytes >> 8).min(0x1ff) as u32);
    q.set(SASS_VERSION, l.sass_version);
    let banks = [(0, Some(l.bank0)), (2, l.bank2)];
    for (i, b) in banks {
        if let Some((addr, size)) = b {
            q.set(constant_buffer_valid(i), 1);
            q.set(constant_buffer_addr_lower(i), addr as u32);
            q.set(constant_buffer_addr_upper(i), (addr >> 32) as u32);
            q.set(constant_buffer_invalidate(i), 1);
            q.set(constant_buffer_size_shifted4(i), size.div_ceil(16));
        }
    }
    q
}

/// A pushbuffer method header: incrementing (SEC_OP 1) `count` data words from method byte
/// offset `method` on `subchannel`.
pub fn incr(subchannel: u32, method: u32, count: u32) -> u32 {
    1 << 29 | (count & 0x1fff) << 16 | (subchannel & 7) << 13 | (method >> 2) & 0xfff
}

/// A GPFIFO entry: a pushbuffer segment of `dwords` words at GPU VA `va`.
pub fn gp_entry(va: u64, dwords: u32) -> u64 {
    (va & 0xff_ffff_fffc) | u64::from(dwords & 0x1f_ffff) << 42
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_across_words() {
        let mut q = Qmd::default();
        q.set(SHARED_MEMORY_SIZE, 0x3_ff80);
        q.set(PROGRAM_ADDRESS_UPPER, 0x1_2345);
        q.set(constant_buffer_size_shifted4(2), 0x1fff);
        q.set(CTA_RASTER_WIDTH, 0xdead_beef);
        assert_eq!(q.get(SHARED_MEMORY_SIZE), 0x3_ff80);
        assert_eq!(q.get(PROGRAM_ADDRESS_UPPER), 0x1_2345);
        assert_eq!(q.get(constant_buffer_size_shifted4(2)), 0x1fff);
        assert_eq!(q.get(CTA_RASTER_WIDTH), 0xdead_beef);
        assert_eq!(q.get(CTA_RASTER_HEIGHT), 0);
        // 2 MiB page-aligned shared memory config: 100 KiB is 26.
        assert_eq!(shared_config(100 << 10), 26);
        assert_eq!(shared_config(0), 9);
        assert_eq!(Qmd::from_bytes(&q.to_bytes()), Some(q));
    }

    #[test]
    fn headers_and_entries_encode_as_the_host_reads_them() {
        assert_eq!(incr(1, 0x2b4, 1), 0x2001_20ad);
        let e = gp_entry(0x1_2345_6780, 5);
        assert_eq!(e & 0xff_ffff_ffff, 0x1_2345_6780);
        assert_eq!((e >> 42) & 0x1f_ffff, 5);
    }
}
