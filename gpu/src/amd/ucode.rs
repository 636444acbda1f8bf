//! The containers of AMD GPU firmware (linux-firmware's `amdgpu/*.bin`): the common header every
//! blob starts with, and the component table of PSP blobs (the bootloader's pieces: sOS, system
//! driver, KDB, TOC, SPL, ...), parsed and checked before anything is uploaded.
//!
//! Facts from public sources: the common header (`common_firmware_header`: sizes, header and IP
//! versions, ucode version, size and offset, a CRC field) and the PSP headers (version 1: fixed
//! descriptors of version, offset and size; version 2: a count and typed descriptors, offsets
//! counted from the ucode array; 2.1 adds an auxiliary index) with the `psp_fw_type` numbers are
//! Linux's drivers/gpu/drm/amd/amdgpu/amdgpu_ucode.h. Observed on linux-firmware 20230210
//! (Debian's firmware-amd-graphics): the CRC field holds the zlib CRC-32 of the bytes after the
//! 32-byte common header in 351 of its 530 blobs with a consistent size, but not in others
//! (gc_11_0_0_rlc.bin, smu_13_0_0.bin among them), so a mismatch is reported, not refused.

use std::fmt;

/// What is wrong with a firmware blob.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("firmware {file}: {message}")]
pub struct UcodeError {
    pub file: String,
    pub message: String,
}

/// The common header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The size of the whole blob.
    pub size: u32,
    pub header_size: u32,
    pub header_version: (u16, u16),
    /// The IP version the blob is for (major, minor).
    pub ip_version: (u16, u16),
    pub ucode_version: u32,
    pub ucode_size: u32,
    /// Where the microcode starts, from the start of the blob.
    pub ucode_offset: u32,
    pub crc32: u32,
}

/// The bootloader components of a PSP blob (`psp_fw_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PspKind {
    Sos,
    SysDrv,
    Kdb,
    Toc,
    Spl,
    Rl,
    SocDrv,
    IntfDrv,
    DbgDrv,
    RasDrv,
    IpKeyMgrDrv,
    SpdmDrv,
    Other(u32),
}

impl PspKind {
    fn from(v: u32) -> PspKind {
        match v {
            1 => PspKind::Sos,
            2 => PspKind::SysDrv,
            3 => PspKind::Kdb,
            4 => PspKind::Toc,
            5 => PspKind::Spl,
            6 => PspKind::Rl,
            7 => PspKind::SocDrv,
            8 => PspKind::IntfDrv,
            9 => PspKind::DbgDrv,
            10 => PspKind::RasDrv,
            11 => PspKind::IpKeyMgrDrv,
            12 => PspKind::SpdmDrv,
            v => PspKind::Other(v),
        }
    }
    /// The number `psp_fw_type` gives it.
    pub fn number(self) -> u32 {
        match self {
            PspKind::Sos => 1,
            PspKind::SysDrv => 2,
            PspKind::Kdb => 3,
            PspKind::Toc => 4,
            PspKind::Spl => 5,
            PspKind::Rl => 6,
            PspKind::SocDrv => 7,
            PspKind::IntfDrv => 8,
            PspKind::DbgDrv => 9,
            PspKind::RasDrv => 10,
            PspKind::IpKeyMgrDrv => 11,
            PspKind::SpdmDrv => 12,
            PspKind::Other(v) => v,
        }
    }
}

impl fmt::Display for PspKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PspKind::Other(v) => write!(f, "type {v}"),
            k => write!(f, "{}", format!("{k:?}").to_uppercase()),
        }
    }
}

/// One component of a PSP blob: where its bytes are in the blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Component {
    pub kind: PspKind,
    pub version: u32,
    /// Offset in the blob (the header's ucode offset plus the descriptor's).
    pub offset: u32,
    pub size: u32,
}

/// A checked blob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub header: Header,
    /// The PSP components (empty for other blobs).
    pub components: Vec<Component>,
    /// Whether the CRC field is the zlib CRC-32 of the bytes after the common header.
    pub crc_matches: bool,
}

impl Blob {
    /// The bytes of component `kind` of `bytes` (the blob this was parsed from).
    pub fn component<'b>(&self, bytes: &'b [u8], kind: PspKind) -> Option<&'b [u8]> {
        let c = self.components.iter().find(|c| c.kind == kind)?;
        bytes.get(c.offset as usize..(c.offset as usize).checked_add(c.size as usize)?)
    }
}

const COMMON: usize = 32;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses and checks a blob read from file `file` (named in errors). A PSP blob is recognised
/// by its name (`psp_*`), as the driver loads it.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Blob, UcodeError> {
    let bad = |m: String| UcodeError { file: file.to_string(), message: m };
    if bytes.len() < COMMON {
        return Err(bad(format!("{} bytes is shorter than the 32-byte common firmware header", bytes.len())));
    }
    let w = |at| u32_at(bytes, at).unwrap_or(0);
    let h = |at| u16_at(bytes, at).unwrap_or(0);
    let header = Header {
        size: w(0),
        header_size: w(4),
        header_version: (h(8), h(10)),
        ip_version: (h(12), h(14)),
        ucode_version: w(16),
        ucode_size: w(20),
        ucode_offset: w(24),
        crc32: w(28),
    };
    if header.size as usize != bytes.len() {
        return Err(bad(format!(
            "the header says {} bytes but the file has {} (truncated or not an amdgpu firmware file)",
            header.size,
            bytes.len()
        )));
    }
    if (header.header_size as usize) < COMMON || header.header_size > header.size {
        return Err(bad(format!(
            "a header size of {} bytes is impossible in a {}-byte blob",
            header.header_size, header.size
        )));
    }
    let ucode_end = u64::from(header.ucode_offset) + u64::from(header.ucode_size);
    if header.ucode_offset < header.header_size || ucode_end > u64::from(header.size) {
        return Err(bad(format!(
            "the microcode (bytes {}..{ucode_end}) lies outside the blob's {} bytes after its {}-byte header",
            header.ucode_offset, header.size, header.header_size
        )));
    }
    let crc_matches = crc32fast::hash(&bytes[COMMON..]) == header.crc32;
    let name = file.rsplit('/').next().unwrap_or(file);
    let mut components = Vec::new();
    if name.starts_with("psp_") {
        let legacy = |at: usize, kind: PspKind| -> Option<Component> {
            let (version, off, size) = (u32_at(bytes, at)?, u32_at(bytes, at + 4)?, u32_at(bytes, at + 8)?);
            (size > 0).then_some(Component { kind, version, offset: header.ucode_offset.checked_add(off)?, size })
        };
        match header.header_version {
            (1, minor) => {
                // sOS, then TOC and KDB (1.1) or a reserved one and KDB (1.2), then SPL, RL (1.3).
                let mut order = vec![PspKind::Sos];
                match minor {
                    1 | 3 => order.extend([PspKind::Toc, PspKind::Kdb]),
                    2 => order.extend([PspKind::Other(0), PspKind::Kdb]),
                    _ => {}
                }
                if minor == 3 {
                    order.extend([PspKind::Spl, PspKind::Rl]);
                }
                for (i, kind) in order.into_iter().enumerate() {
                    if COMMON + 12 * (i + 1) > header.header_size as usize {
                        return Err(bad(format!(
                            "a version 1.{minor} PSP header of {} bytes is too short",
                            header.header_size
                        )));
                    }
                    components.extend(legacy(COMMON + 12 * i, kind).filter(|c| c.kind != PspKind::Other(0)));
                }
            }
            (2, minor @ (0 | 1)) => {
                let count = u32_at(bytes, COMMON).unwrap_or(0) as usize;
                let first = if minor == 0 { COMMON + 4 } else { COMMON + 8 };
                if count > 64 || first + 16 * count > header.header_size.max(header.ucode_offset) as usize {
                    return Err(bad(format!("{count} PSP components do not fit its header")));
                }
                for i in 0..count {
                    let at = first + 16 * i;
                    let (Some(kind), Some(version), Some(off), Some(size)) =
                        (u32_at(bytes, at), u32_at(bytes, at + 4), u32_at(bytes, at + 8), u32_at(bytes, at + 12))
                    else {
                        return Err(bad(format!("PSP component {i} is truncated")));
                    };
                    let offset = header
                        .ucode_offset
                        .checked_add(off)
                        .ok_or_else(|| bad(format!("PSP component {i}'s offset overflows")))?;
                    components.push(Component { kind: PspKind::from(kind), version, offset, size });
                }
            }
            (a, b) => return Err(bad(format!("PSP header version {a}.{b} is unknown (1.0 to 1.3, 2.0 and 2.1 are)"))),
        }
        for c in &components {
            if u64::from(c.offset) + u64::from(c.size) > ucode_end {
                return Err(bad(format!(
                    "PSP component {} (bytes {}..{}) lies outside the microcode (bytes {}..{ucode_end})",
                    c.kind,
                    c.offset,
                    u64::from(c.offset) + u64::from(c.size),
                    header.ucode_offset
                )));
            }
        }
    }
    Ok(Blob { header, components, crc_matches })
}

/// A synthetic blob in the real container format: a version 2.0 PSP blob of `components` when
/// `psp` (each `(kind, version, bytes)`), else a version 1.0 blob of `ucode`. The CRC field is
/// set. The simulated GPU and the tests use these.
pub fn build(
    ip_version: (u16, u16),
    ucode_version: u32,
    psp: bool,
    components: &[(PspKind, u32, Vec<u8>)],
    ucode: &[u8],
) -> Vec<u8> {
    const UCODE_AT: usize = 256;
    let mut payload = Vec::new();
    let mut descs = Vec::new();
    if psp {
        for (kind, version, bytes) in components {
            descs.push((kind.number(), *version, payload.len() as u32, bytes.len() as u32));
            payload.extend_from_slice(bytes);
        }
    } else {
        payload.extend_from_slice(ucode);
    }
    let header_size = if psp { COMMON + 4 + 16 * descs.len() } else { COMMON };
    let ucode_at = UCODE_AT.max(header_size.next_multiple_of(256));
    let size = ucode_at + payload.len();
    let mut b = vec![0u8; ucode_at];
    let put = |b: &mut Vec<u8>, at: usize, v: u32| b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    put(&mut b, 0, size as u32);
    put(&mut b, 4, header_size as u32);
    let (hv, hm) = if psp { (2u16, 0u16) } else { (1, 0) };
    b[8..10].copy_from_slice(&hv.to_le_bytes());
    b[10..12].copy_from_slice(&hm.to_le_bytes());
    b[12..14].copy_from_slice(&ip_version.0.to_le_bytes());
    b[14..16].copy_from_slice(&ip_version.1.to_le_bytes());
    put(&mut b, 16, ucode_version);
    put(&mut b, 20, payload.len() as u32);
    put(&mut b, 24, ucode_at as u32);
    if psp {
        put(&mut b, COMMON, descs.len() as u32);
        for (i, (k, v, o, s)) in descs.iter().enumerate() {
            let at = COMMON + 4 + 16 * i;
            put(&mut b, at, *k);
            put(&mut b, at + 4, *v);
            put(&mut b, at + 8, *o);
            put(&mut b, at + 12, *s);
        }
    }
    b.extend_from_slice(&payload);
    let crc = crc32fast::hash(&b[COMMON..]);
    put(&mut b, 28, crc);
    b
}

/// Sets the CRC field of a blob (zlib's CRC-32 of the bytes after the common header), as
/// [`build`] does; for blobs whose header was extended after building.
pub fn seal(b: &mut [u8]) {
    if b.len() >= COMMON {
        let crc = crc32fast::hash(&b[COMMON..]);
        b[28..32].copy_from_slice(&crc.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sos() -> Vec<u8> {
        build(
            (13, 0),
            0x31_0025,
            true,
            &[
                (PspKind::SysDrv, 0x31_0025, vec![1; 100]),
                (PspKind::Sos, 0x31_0025, vec![2; 64]),
                (PspKind::Toc, 0xc, vec![3; 12]),
                (PspKind::Kdb, 0x400_3100, vec![4; 20]),
            ],
            &[],
        )
    }

    #[test]
    fn synthetic_blobs_read_back_with_their_components() {
        let b = sos();
        let blob = parse("amdgpu/psp_13_0_0_sos.bin", &b).expect("parses");
        assert_eq!(blob.header.ip_version, (13, 0));
        assert_eq!(blob.header.header_version, (2, 0));
        assert!(blob.crc_matches);
        let kinds: Vec<String> = blob.components.iter().map(|c| c.kind.to_string()).collect();
        assert_eq!(kinds, ["SYSDRV", "SOS", "TOC", "KDB"]);
        assert_eq!(blob.component(&b, PspKind::Sos), Some(&[2u8; 64][..]));
        assert_eq!(blob.component(&b, PspKind::Toc), Some(&[3u8; 12][..]));
        assert_eq!(blob.component(&b, PspKind::Spl), None);
        let mec = build((11, 0), 0x1ee, false, &[], &[7; 40]);
        let m = parse("gc_11_0_0_mec.bin", &mec).expect("parses");
        assert!(m.components.is_empty() && m.crc_matches);
        assert_eq!((m.header.ucode_offset, m.header.ucode_size), (256, 40));
    }

    #[test]
    fn damaged_blobs_are_named_with_what_is_wrong() {
        let b = sos();
        let e = parse("psp_13_0_0_sos.bin", &b[..b.len() - 1]).expect_err("truncated");
        assert!(e.to_string().starts_with("firmware psp_13_0_0_sos.bin: the header says"), "{e}");
        let e = parse("x.bin", &[0; 10]).expect_err("short");
        assert!(e.to_string().contains("shorter than the 32-byte common firmware header"), "{e}");
        // A component reaching past the microcode.
        let mut x = b.clone();
        x[32 + 4 + 16 + 12..32 + 4 + 16 + 16].copy_from_slice(&100_000u32.to_le_bytes());
        let e = parse("psp_13_0_0_sos.bin", &x).expect_err("outside");
        assert!(e.to_string().contains("PSP component SOS (bytes"), "{e}");
        // An unknown PSP header version.
        let mut x = b.clone();
        x[8] = 3;
        let e = parse("psp_13_0_0_sos.bin", &x).expect_err("version");
        assert!(e.to_string().contains("PSP header version 3.0 is unknown"), "{e}");
        // A flipped payload byte: still read, but the CRC no longer matches.
        let mut x = b.clone();
        let last = x.len() - 1;
        x[last] ^= 1;
        assert!(!parse("psp_13_0_0_sos.bin", &x).expect("parses").crc_matches);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Damaged blobs are read or refused, never a panic.
        #[test]
        fn damaged_blobs_never_panic(edits in prop::collection::vec((0usize..600, any::<u8>()), 0..8), cut in 0usize..700, psp in any::<bool>()) {
            let mut b = if psp { sos() } else { build((11, 0), 1, false, &[], &[5; 300]) };
            for (at, v) in edits {
                let n = b.len();
                b[at % n] = v;
            }
            b.truncate(cut);
            // Keep the size field consistent half of the time, so that parsing reads on.
            if cut % 2 == 0 && b.len() >= 4 {
                let n = b.len() as u32;
                b[..4].copy_from_slice(&n.to_le_bytes());
            }
            let _ = parse(if psp { "psp_13_0_0_sos.bin" } else { "gc_11_0_0_mec.bin" }, &b);
        }
    }
}
