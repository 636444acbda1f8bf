//! IP discovery: the table an AMD GPU keeps 64 KiB below the end of its VRAM, which lists every
//! hardware block (GC, PSP, SMU, SDMA, ...) with its version and register base addresses, the
//! harvested (disabled) blocks and the graphics core's shape. A cold bring-up reads it first:
//! the versions pick the register layout and the firmware files, the bases place the registers.
//!
//! [`parse`] reads and checks a table; [`build`] writes one (the simulated GPU's, and the tests').
//!
//! Facts from public sources: the binary layout (binary header and its table list, the IP
//! discovery header with its die list, the die header, the IP entries of table versions 1 to 4,
//! the GC info and harvest tables), the signatures and the table ids are Linux's
//! drivers/gpu/drm/amd/include/discovery.h; the hardware ids are its soc15_hw_ip.h; the checksums
//! (16-bit byte sums: of the binary after the `binary_checksum` field, and of each table) are
//! how umr's and Linux's amdgpu_discovery.c verify them; the location (64 KiB below the end of
//! VRAM, at most 10 KiB) is ../shared/notes/bringup.md; GC 11.0.0, 11.0.3 and 11.0.2 are
//! gfx1100, gfx1101 and gfx1102 in amdgpu_discovery.c.

use std::fmt;

pub const BINARY_SIGNATURE: u32 = 0x2821_1407;
pub const IP_TABLE_SIGNATURE: u32 = 0x5344_5049;
pub const GC_TABLE_ID: u32 = 0x4347;
pub const HARVEST_TABLE_SIGNATURE: u32 = 0x5652_4148;
/// The table's distance from the end of VRAM, and its largest size.
pub const TABLE_OFFSET_FROM_END: u64 = 64 << 10;
pub const TABLE_MAX_BYTES: usize = 10 << 10;

/// Hardware ids (soc15_hw_ip.h).
pub const MP1: u16 = 1;
pub const GC: u16 = 11;
pub const OSSSYS: u16 = 40;
pub const HDP: u16 = 41;
pub const SDMA0: u16 = 42;
pub const SDMA1: u16 = 43;
pub const NBIF: u16 = 108;
pub const MMHUB: u16 = 34;
pub const MP0: u16 = 255;

/// The name of a hardware id, where tk knows it.
pub fn hw_name(id: u16) -> Option<&'static str> {
    Some(match id {
        1 => "SMU (MP1)",
        3 => "THM",
        4 => "SMUIO",
        6 => "CLKA",
        11 => "GC",
        12 => "VCN",
        34 => "MMHUB",
        35 => "ATHUB",
        40 => "OSSSYS (IH)",
        41 => "HDP",
        42 => "SDMA0",
        43 => "SDMA1",
        46 => "DF",
        70 => "PCIE",
        108 => "NBIF",
        150 => "UMC",
        200 => "XGMI",
        255 => "PSP (MP0)",
        271 => "DMU",
        _ => return None,
    })
}

/// What is wrong with a discovery table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiscoveryError {
    #[error("the IP discovery table is truncated: {what} needs bytes {at}..{end} of {len}")]
    Truncated { what: String, at: usize, end: usize, len: usize },
    #[error("the IP discovery table's {what} signature is 0x{found:08x}, not 0x{want:08x}")]
    Signature { what: &'static str, found: u32, want: u32 },
    #[error("the IP discovery table's {what} checksum is 0x{found:04x}, but its bytes sum to 0x{sum:04x}")]
    Checksum { what: &'static str, found: u16, sum: u16 },
    #[error("the IP discovery table: {0}")]
    Invalid(String),
}

/// One hardware block (an instance of an IP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpBlock {
    pub hw_id: u16,
    pub instance: u8,
    pub die: u16,
    /// major, minor, revision.
    pub version: (u8, u8, u8),
    /// Table versions 1 and 2: the harvest nibble; 3 and 4: the sub-revision.
    pub sub_revision: u8,
    /// Table versions 3 and 4: the variant.
    pub variant: u8,
    /// Register base addresses (dword offsets in the register BAR).
    pub bases: Vec<u64>,
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (a, b, c) = self.version;
        let name = hw_name(self.hw_id).map_or_else(|| format!("hw {}", self.hw_id), str::to_string);
        write!(f, "{name} #{} {a}.{b}.{c}", self.instance)
    }
}

/// The graphics core's shape (the GC info table, version 1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcInfo {
    pub version: (u16, u16),
    pub shader_engines: u32,
    pub wgp0_per_sa: u32,
    pub wgp1_per_sa: u32,
    pub rb_per_se: u32,
    pub gl2c: u32,
    pub gprs: u32,
    pub wave_size: u32,
    pub max_waves_per_simd: u32,
    pub lds_size: u32,
    pub sa_per_se: u32,
}

/// A parsed discovery table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// The binary header's version (major, minor).
    pub version: (u16, u16),
    /// The IP table's version (1 to 4).
    pub ip_version: u16,
    pub ips: Vec<IpBlock>,
    pub gc: Option<GcInfo>,
    /// Harvested blocks: (hardware id, instance).
    pub harvest: Vec<(u16, u8)>,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn bytes(&self, at: usize, n: usize, what: &str) -> Result<&[u8], DiscoveryError> {
        at.checked_add(n).and_then(|end| self.b.get(at..end)).ok_or_else(|| DiscoveryError::Truncated {
            what: what.to_string(),
            at,
            end: at.saturating_add(n),
            len: self.b.len(),
        })
    }
    fn u8(&self, at: usize, what: &str) -> Result<u8, DiscoveryError> {
        Ok(self.bytes(at, 1, what)?[0])
    }
    fn u16(&self, at: usize, what: &str) -> Result<u16, DiscoveryError> {
        let b = self.bytes(at, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize, what: &str) -> Result<u32, DiscoveryError> {
        let b = self.bytes(at, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&self, at: usize, what: &str) -> Result<u64, DiscoveryError> {
        Ok(u64::from(self.u32(at, what)?) | u64::from(self.u32(at + 4, what)?) << 32)
    }
}

/// The 16-bit byte sum the table's checksums use.
pub fn checksum(b: &[u8]) -> u16 {
    b.iter().fold(0u16, |s, &x| s.wrapping_add(u16::from(x)))
}

/// The byte offset of `binary_checksum`'s successor, `binary_size`: the binary checksum covers
/// the bytes from there on.
const SUM_FROM: usize = 10;

/// Reads and checks a discovery table (the bytes from its start; trailing bytes are ignored).
pub fn parse(bytes: &[u8]) -> Result<Discovery, DiscoveryError> {
    let r = Reader { b: bytes };
    let sig = r.u32(0, "the binary header")?;
    if sig != BINARY_SIGNATURE {
        return Err(DiscoveryError::Signature { what: "binary", found: sig, want: BINARY_SIGNATURE });
    }
    let major = r.u16(4, "the binary header")?;
    let minor = r.u16(6, "the binary header")?;
    let sum = r.u16(8, "the binary header")?;
    let size = usize::from(r.u16(10, "the binary header")?);
    if size < SUM_FROM {
        return Err(DiscoveryError::Invalid(format!("its binary size {size} is smaller than its header")));
    }
    let body = r.bytes(SUM_FROM, size - SUM_FROM, "the binary")?;
    if checksum(body) != sum {
        return Err(DiscoveryError::Checksum { what: "binary", found: sum, sum: checksum(body) });
    }
    // The table list: version 1 (and 0, which Linux reads the same way) has six entries after
    // the size; version 2 a count and padding first (discovery.h, binary_header_v2).
    let (list, count) = match major {
        0 | 1 => (12, 6),
        2 => (16, usize::from(r.u16(12, "the binary header")?)),
        v => {
            return Err(DiscoveryError::Invalid(format!("binary header version {v}.{minor} is unknown (1 and 2 are)")));
        }
    };
    // (offset, checksum, size) of table `i`, or None where the table is absent.
    let table = |i: usize| -> Result<Option<(usize, u16, usize)>, DiscoveryError> {
        if i >= count {
            return Ok(None);
        }
        let at = list + 8 * i;
        let off = usize::from(r.u16(at, "the table list")?);
        let sum = r.u16(at + 2, "the table list")?;
        let len = usize::from(r.u16(at + 4, "the table list")?);
        Ok((off != 0).then_some((off, sum, len)))
    };
    let checked = |i: usize, what: &'static str| -> Result<Option<usize>, DiscoveryError> {
        let Some((off, sum, len)) = table(i)? else { return Ok(None) };
        let b = r.bytes(off, len, what)?;
        if checksum(b) != sum {
            return Err(DiscoveryError::Checksum { what, found: sum, sum: checksum(b) });
        }
        Ok(Some(off))
    };

    // The IP discovery table.
    let ip_at = checked(0, "IP table")?.ok_or_else(|| DiscoveryError::Invalid("it has no IP table".into()))?;
    let sig = r.u32(ip_at, "the IP table header")?;
    if sig != IP_TABLE_SIGNATURE {
        return Err(DiscoveryError::Signature { what: "IP table", found: sig, want: IP_TABLE_SIGNATURE });
    }
    let ip_version = r.u16(ip_at + 4, "the IP table header")?;
    if !(1..=4).contains(&ip_version) {
        return Err(DiscoveryError::Invalid(format!("IP table version {ip_version} is unknown (1 to 4 are)")));
    }
    let dies = usize::from(r.u16(ip_at + 12, "the IP table header")?);
    if dies > 16 {
        return Err(DiscoveryError::Invalid(format!("{dies} dies (at most 16)")));
    }
    let wide = ip_version == 4 && r.u8(ip_at + 78, "the IP table header")? & 1 != 0;
    let mut ips = Vec::new();
    for d in 0..dies {
        let die_id = r.u16(ip_at + 14 + 4 * d, "the die list")?;
        // A die's offset counts from the start of the binary.
        let die_at = usize::from(r.u16(ip_at + 16 + 4 * d, "the die list")?);
        let n = usize::from(r.u16(die_at + 2, "a die header")?);
        let mut at = die_at + 4;
        for _ in 0..n {
            let what = "an IP entry";
            let hw_id = r.u16(at, what)?;
            let instance = r.u8(at + 2, what)?;
            let nbase = usize::from(r.u8(at + 3, what)?);
            let version = (r.u8(at + 4, what)?, r.u8(at + 5, what)?, r.u8(at + 6, what)?);
            let bits = r.u8(at + 7, what)?;
            at += 8;
            let mut bases = Vec::with_capacity(nbase);
            for _ in 0..nbase {
                if wide {
                    bases.push(r.u64(at, what)?);
                    at += 8;
                } else {
                    bases.push(u64::from(r.u32(at, what)?));
                    at += 4;
                }
            }
            let (sub_revision, variant) = (bits & 0xf, if ip_version >= 3 { bits >> 4 } else { 0 });
            ips.push(IpBlock { hw_id, instance, die: die_id, version, sub_revision, variant, bases });
        }
    }

    // The GC info table (version 1: the fields up to the LDS size and SAs per SE are common).
    let gc = match checked(1, "GC table")? {
        None => None,
        Some(at) => {
            let what = "the GC table";
            let id = r.u32(at, what)?;
            if id != GC_TABLE_ID {
                return Err(DiscoveryError::Signature { what: "GC table", found: id, want: GC_TABLE_ID });
            }
            let version = (r.u16(at + 4, what)?, r.u16(at + 6, what)?);
            let f = |i: usize| r.u32(at + 12 + 4 * i, what);
            Some(if version.0 == 1 {
                GcInfo {
                    version,
                    shader_engines: f(0)?,
                    wgp0_per_sa: f(1)?,
                    wgp1_per_sa: f(2)?,
                    rb_per_se: f(3)?,
                    gl2c: f(4)?,
                    gprs: f(5)?,
                    wave_size: f(11)?,
                    max_waves_per_simd: f(12)?,
                    lds_size: f(14)?,
                    sa_per_se: f(16)?,
                }
            } else {
                GcInfo { version, ..GcInfo::default() }
            })
        }
    };

    // The harvest table: up to 32 (hardware id, instance) entries; a zero id ends it.
    let mut harvest = Vec::new();
    if let Some(at) = checked(2, "harvest table")? {
        let sig = r.u32(at, "the harvest table")?;
        if sig != HARVEST_TABLE_SIGNATURE {
            return Err(DiscoveryError::Signature { what: "harvest table", found: sig, want: HARVEST_TABLE_SIGNATURE });
        }
        for i in 0..32 {
            let e = at + 8 + 4 * i;
            if e + 4 > bytes.len() {
                break;
            }
            let id = r.u16(e, "the harvest table")?;
            if id == 0 {
                break;
            }
            harvest.push((id, r.u8(e + 2, "the harvest table")?));
        }
    }
    Ok(Discovery { version: (major, minor), ip_version, ips, gc, harvest })
}

impl Discovery {
    /// Instance `instance` of hardware block `hw_id`.
    pub fn ip(&self, hw_id: u16, instance: u8) -> Option<&IpBlock> {
        self.ips.iter().find(|b| b.hw_id == hw_id && b.instance == instance)
    }

    /// The version of block `hw_id` (instance 0), or an error naming the missing block.
    pub fn version_of(&self, hw_id: u16) -> Result<(u8, u8, u8), String> {
        self.ip(hw_id, 0)
            .map(|b| b.version)
            .ok_or_else(|| format!("the IP discovery table lists no {} block", hw_name(hw_id).unwrap_or("such")))
    }

    /// The processor the graphics core is, by its GC version: gfx1100, gfx1101 or gfx1102; any
    /// other is refused by name.
    pub fn gfx_target(&self) -> Result<&'static str, String> {
        match self.version_of(GC)? {
            (11, 0, 0) => Ok("gfx1100"),
            (11, 0, 3) => Ok("gfx1101"),
            (11, 0, 2) => Ok("gfx1102"),
            (a, b, c) => Err(format!(
                "GC {a}.{b}.{c} is not supported: tk drives RDNA3 GPUs, GC 11.0.0 (gfx1100, Navi 31), 11.0.3 \
                 (gfx1101, Navi 32) and 11.0.2 (gfx1102, Navi 33)"
            )),
        }
    }

    /// The dword offset of block `hw_id`'s first register segment (BASE_IDX 0).
    pub fn base(&self, hw_id: u16) -> Result<u64, String> {
        let b = self
            .ip(hw_id, 0)
            .ok_or_else(|| format!("the IP discovery table lists no {} block", hw_name(hw_id).unwrap_or("such")))?;
        b.bases.first().copied().ok_or_else(|| format!("{b} has no register base"))
    }

    /// The linux-firmware files (in `amdgpu/`) the bring-up loads, named after the IP versions:
    /// PSP (MP0) sOS and TA, SMU (MP1), the GC microcode (IMU, RLC, MEC, ME, PFP) and SDMA.
    pub fn firmware(&self) -> Result<Vec<String>, String> {
        let v = |id| -> Result<String, String> {
            let (a, b, c) = self.version_of(id)?;
            Ok(format!("{a}_{b}_{c}"))
        };
        let (psp, smu, gc, sdma) = (v(MP0)?, v(MP1)?, v(GC)?, v(SDMA0)?);
        let mut names = vec![format!("psp_{psp}_sos.bin"), format!("psp_{psp}_ta.bin"), format!("smu_{smu}.bin")];
        for part in ["imu", "rlc", "mec", "me", "pfp"] {
            names.push(format!("gc_{gc}_{part}.bin"));
        }
        names.push(format!("sdma_{sdma}.bin"));
        Ok(names)
    }
}

/// The byte offsets, in the register BAR, of the registers the driver needs before it has the
/// table: NBIO's `MM_INDEX`, `MM_DATA` and `MM_INDEX_HI` (dwords 0x0, 0x1, 0x6 of segment 0,
/// which is 0) and `RCC_CONFIG_MEMSIZE` (dword 0xc3 of segment 2, 0xd20 on Navi 21 and 31:
/// 0xde3, where tinygrad's am driver reads it before discovery). Sources: Linux's
/// nbio_4_3_0_offset.h, sienna_cichlid_ip_offset.h.
pub const MM_INDEX_BYTE: u64 = 0x0;
pub const MM_DATA_BYTE: u64 = 0x4;
pub const MM_INDEX_HI_BYTE: u64 = 0x18;
pub const MEMSIZE_BYTE: u64 = 0xde3 * 4;
/// MM_INDEX's bit 31: the index is a VRAM address (bits 0..30; the rest in MM_INDEX_HI).
pub const MM_INDEX_VRAM: u32 = 0x8000_0000;

/// Where the table's bytes come from: the VRAM BAR, or the indirect register pair when the BAR
/// does not reach the end of VRAM.
pub enum Path {
    Bar,
    /// Through MM_INDEX/MM_DATA, in a VRAM of this many bytes.
    Indirect(u64),
}

fn read_at(t: &dyn crate::transport::Transport, path: &Path, at: u64, out: &mut [u8]) -> Result<(), String> {
    match path {
        Path::Bar => t.read_bytes(super::BAR_VRAM, at, out),
        Path::Indirect(_) => {
            let mut hi = None;
            for (k, c) in out.chunks_mut(4).enumerate() {
                let a = at + 4 * k as u64;
                if hi != Some(a >> 31) {
                    t.write32(super::BAR_MMIO, MM_INDEX_HI_BYTE, (a >> 31) as u32)?;
                    hi = Some(a >> 31);
                }
                t.write32(super::BAR_MMIO, MM_INDEX_BYTE, (a as u32 & 0x7fff_ffff) | MM_INDEX_VRAM)?;
                let v = t.read32(super::BAR_MMIO, MM_DATA_BYTE)?.to_le_bytes();
                c.copy_from_slice(&v[..c.len()]);
            }
            Ok(())
        }
    }
}

/// Reads the table 64 KiB below the end of VRAM (`vram` bytes): through the VRAM BAR when
/// `path` is [`Path::Bar`] (the BAR reaches the end), else through MM_INDEX/MM_DATA, one dword
/// at a time. First the header, then as many bytes as it says (about 600 on Navi 31). The
/// error says what was found instead.
pub fn read_from(t: &dyn crate::transport::Transport, vram: u64, path: &Path) -> Result<Discovery, String> {
    let at = vram
        .checked_sub(TABLE_OFFSET_FROM_END)
        .ok_or_else(|| format!("the VRAM ({vram} bytes) is too small to hold the IP discovery table"))?;
    let mut head = [0u8; 12];
    read_at(t, path, at, &mut head)?;
    let sig = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if sig != BINARY_SIGNATURE {
        let how = match path {
            Path::Bar => "the VRAM BAR",
            Path::Indirect(_) => "MM_INDEX/MM_DATA",
        };
        return Err(format!(
            "no IP discovery table 64 KiB below the end of VRAM (read through {how}: found 0x{sig:08x} at VRAM offset \
             0x{at:x}, not the signature 0x{BINARY_SIGNATURE:08x})"
        ));
    }
    let size = usize::from(u16::from_le_bytes([head[10], head[11]]));
    if size > TABLE_MAX_BYTES {
        return Err(format!("the IP discovery table claims {size} bytes (at most {TABLE_MAX_BYTES})"));
    }
    let mut b = vec![0u8; size.next_multiple_of(4).max(12)];
    read_at(t, path, at, &mut b)?;
    parse(&b).map_err(|e| e.to_string())
}

/// [`read_from`] through the VRAM BAR of `vram_bar` bytes.
pub fn read(t: &dyn crate::transport::Transport, vram_bar: u64) -> Result<Discovery, String> {
    read_from(t, vram_bar, &Path::Bar)
}

/// Writes `d` as a table: binary header version 1 with its six-entry table list, the IP table
/// (one die; entries of `d.ip_version`, 64-bit bases when a version-4 table needs them), a GC
/// table (version 1.0) when `d.gc` is set, and a harvest table.
pub fn build(d: &Discovery) -> Vec<u8> {
    let mut b = vec![0u8; 12 + 6 * 8];
    let put16 = |b: &mut Vec<u8>, at: usize, v: u16| b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    b[..4].copy_from_slice(&BINARY_SIGNATURE.to_le_bytes());
    put16(&mut b, 4, 1);
    put16(&mut b, 6, 0);
    let mut tables: Vec<(usize, usize, usize)> = Vec::new();

    // IP table: header (80 bytes), die header, entries.
    let ip_at = b.len();
    let wide = d.ip_version == 4 && d.ips.iter().any(|ip| ip.bases.iter().any(|&x| x > u64::from(u32::MAX)));
    let mut t = vec![0u8; 80];
    t[..4].copy_from_slice(&IP_TABLE_SIGNATURE.to_le_bytes());
    t[4..6].copy_from_slice(&d.ip_version.to_le_bytes());
    t[12..14].copy_from_slice(&1u16.to_le_bytes());
    t[16..18].copy_from_slice(&((ip_at + 80) as u16).to_le_bytes());
    t[78] = u8::from(wide);
    t.extend_from_slice(&0u16.to_le_bytes());
    t.extend_from_slice(&(d.ips.len() as u16).to_le_bytes());
    for ip in &d.ips {
        t.extend_from_slice(&ip.hw_id.to_le_bytes());
        t.push(ip.instance);
        t.push(ip.bases.len() as u8);
        t.extend_from_slice(&[ip.version.0, ip.version.1, ip.version.2, ip.sub_revision & 0xf | ip.variant << 4]);
        for &x in &ip.bases {
            if wide {
                t.extend_from_slice(&x.to_le_bytes());
            } else {
                t.extend_from_slice(&(x as u32).to_le_bytes());
            }
        }
    }
    let n = t.len();
    t[6..8].copy_from_slice(&(n as u16).to_le_bytes());
    b.extend_from_slice(&t);
    tables.push((0, ip_at, n));

    if let Some(gc) = &d.gc {
        let at = b.len();
        let mut fields = [0u32; 19];
        fields[0] = gc.shader_engines;
        fields[1] = gc.wgp0_per_sa;
        fields[2] = gc.wgp1_per_sa;
        fields[3] = gc.rb_per_se;
        fields[4] = gc.gl2c;
        fields[5] = gc.gprs;
        fields[11] = gc.wave_size;
        fields[12] = gc.max_waves_per_simd;
        fields[14] = gc.lds_size;
        fields[16] = gc.sa_per_se;
        let size = 12 + 4 * fields.len();
        b.extend_from_slice(&GC_TABLE_ID.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&(size as u32).to_le_bytes());
        for f in fields {
            b.extend_from_slice(&f.to_le_bytes());
        }
        tables.push((1, at, size));
    }
    let at = b.len();
    b.extend_from_slice(&HARVEST_TABLE_SIGNATURE.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    for i in 0..32 {
        let (id, inst) = d.harvest.get(i).copied().unwrap_or((0, 0));
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&[inst, 0]);
    }
    tables.push((2, at, 8 + 32 * 4));
    for (i, off, len) in tables {
        let sum = checksum(&b[off..off + len]);
        put16(&mut b, 12 + 8 * i, off as u16);
        put16(&mut b, 12 + 8 * i + 2, sum);
        put16(&mut b, 12 + 8 * i + 4, len as u16);
    }
    let size = b.len();
    put16(&mut b, 10, size as u16);
    let sum = checksum(&b[SUM_FROM..]);
    put16(&mut b, 8, sum);
    b
}

/// GC's first register segment on Navi 31, in dwords (the same as Navi 21's, Linux's
/// sienna_cichlid_ip_offset.h GC_BASE seg 0).
pub const NAVI31_GC_BASE: u64 = 0x1260;

/// A Navi 31 (gfx1100) table: the blocks the bring-up uses, at the register bases Navi 31
/// reports (GC's is [`NAVI31_GC_BASE`]), its GC shape (6 shader engines of 2 arrays, 4
/// WGPs each, wave32, 64 KiB of LDS) and no harvested blocks. The simulated GPU serves it.
pub fn navi31() -> Discovery {
    let ip = |hw_id, version, bases: &[u64]| IpBlock {
        hw_id,
        instance: 0,
        die: 0,
        version,
        sub_revision: 0,
        variant: 0,
        bases: bases.to_vec(),
    };
    Discovery {
        version: (1, 0),
        ip_version: 3,
        ips: vec![
            ip(GC, (11, 0, 0), &[NAVI31_GC_BASE, 0xa000, 0x1_c000, 0x2_4000]),
            ip(MP0, (13, 0, 0), &[0x1_6000, 0x1_0000]),
            ip(MP1, (13, 0, 0), &[0x1_6000, 0x0_e000]),
            ip(SDMA0, (6, 0, 0), &[NAVI31_GC_BASE, 0xa000]),
            ip(SDMA1, (6, 0, 0), &[NAVI31_GC_BASE, 0xa000]),
            ip(OSSSYS, (6, 0, 0), &[0x10a0, 0x0_240c0]),
            ip(HDP, (6, 0, 0), &[0x0f20, 0x0_240a0]),
            ip(NBIF, (4, 3, 0), &[0x0, 0x14, 0x0d20, 0x1_0c00]),
            ip(MMHUB, (3, 0, 0), &[0x1_a000, 0x2_408800]),
        ],
        gc: Some(GcInfo {
            version: (1, 0),
            shader_engines: 6,
            wgp0_per_sa: 4,
            wgp1_per_sa: 0,
            rb_per_se: 4,
            gl2c: 16,
            gprs: 1536,
            wave_size: 32,
            max_waves_per_simd: 16,
            lds_size: 64,
            sa_per_se: 2,
        }),
        harvest: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_navi31_table_reads_back_and_names_its_target_and_firmware() {
        let d = navi31();
        let b = build(&d);
        assert!(b.len() <= TABLE_MAX_BYTES);
        let back = parse(&b).expect("parses");
        assert_eq!(back, d);
        assert_eq!(back.gfx_target(), Ok("gfx1100"));
        assert_eq!(back.base(GC), Ok(NAVI31_GC_BASE));
        // The firmware names from the IP versions are the list tk knows for Navi 31.
        let want: Vec<String> =
            super::super::firmware::needed(0x744c).expect("navi 31").iter().map(|s| s.to_string()).collect();
        assert_eq!(back.firmware(), Ok(want));
        assert_eq!(back.ip(GC, 0).expect("gc").to_string(), "GC #0 11.0.0");
        // Trailing bytes (the rest of the reserved area) are ignored.
        let mut padded = b.clone();
        padded.resize(TABLE_MAX_BYTES, 0xff);
        assert_eq!(parse(&padded), Ok(d));
    }

    /// A version-2 binary header (a table count and padding before the list, discovery.h's
    /// binary_header_v2) lists the same tables: the same table parses the same.
    #[test]
    fn a_version_2_binary_header_reads_like_version_1() {
        let d = navi31();
        let v1 = build(&d);
        let sum = |b: &[u8]| b.iter().fold(0u16, |s, x| s.wrapping_add(u16::from(*x)));
        // Every table moves 4 bytes on; the list gains a count (6) and padding.
        let mut v2 = v1[..12].to_vec();
        v2.extend_from_slice(&6u16.to_le_bytes());
        v2.extend_from_slice(&0u16.to_le_bytes());
        for i in 0..6 {
            let e = &v1[12 + 8 * i..20 + 8 * i];
            let off = u16::from_le_bytes([e[0], e[1]]);
            let moved = if off == 0 { 0 } else { off + 4 };
            v2.extend_from_slice(&moved.to_le_bytes());
            v2.extend_from_slice(&e[2..]);
        }
        v2.extend_from_slice(&v1[60..]);
        // The IP table's die offset is from the binary's start: it moves too, and the IP
        // table's checksum with it.
        let ip_at = usize::from(u16::from_le_bytes([v2[16], v2[17]]));
        let ip_len = usize::from(u16::from_le_bytes([v2[20], v2[21]]));
        let die = u16::from_le_bytes([v2[ip_at + 16], v2[ip_at + 17]]) + 4;
        v2[ip_at + 16..ip_at + 18].copy_from_slice(&die.to_le_bytes());
        let s = sum(&v2[ip_at..ip_at + ip_len]);
        v2[18..20].copy_from_slice(&s.to_le_bytes());
        v2[4..6].copy_from_slice(&2u16.to_le_bytes());
        let size = u16::try_from(v2.len()).expect("small");
        v2[10..12].copy_from_slice(&size.to_le_bytes());
        let s = sum(&v2[SUM_FROM..]);
        v2[8..10].copy_from_slice(&s.to_le_bytes());
        let back = parse(&v2).expect("parses");
        assert_eq!(back, Discovery { version: (2, 0), ..d.clone() });
        // A count larger than the list is read as far as the tables tk needs.
        let mut more = v2.clone();
        more[12..14].copy_from_slice(&0xffffu16.to_le_bytes());
        let s = sum(&more[SUM_FROM..]);
        more[8..10].copy_from_slice(&s.to_le_bytes());
        assert_eq!(parse(&more).map(|b| b.ips.len()), Ok(d.ips.len()));
        // A count of 0 lists no IP table: an error naming it.
        let mut none = v2.clone();
        none[12..14].copy_from_slice(&0u16.to_le_bytes());
        let s = sum(&none[SUM_FROM..]);
        none[8..10].copy_from_slice(&s.to_le_bytes());
        assert_eq!(parse(&none), Err(DiscoveryError::Invalid("it has no IP table".into())));
        // Version 0 reads as version 1, as Linux reads it.
        let mut v0 = v1.clone();
        v0[4..6].copy_from_slice(&0u16.to_le_bytes());
        let s = sum(&v0[SUM_FROM..]);
        v0[8..10].copy_from_slice(&s.to_le_bytes());
        assert_eq!(parse(&v0), Ok(Discovery { version: (0, 0), ..d }));
    }

    #[test]
    fn other_gpus_are_named_and_refused() {
        let mut d = navi31();
        d.ips[0].version = (11, 0, 3);
        assert_eq!(parse(&build(&d)).expect("parses").gfx_target(), Ok("gfx1101"));
        d.ips[0].version = (12, 0, 1);
        let e = parse(&build(&d)).expect("parses").gfx_target().expect_err("RDNA4");
        assert!(e.contains("GC 12.0.1 is not supported") && e.contains("gfx1102"), "{e}");
        d.ips.retain(|b| b.hw_id != GC);
        let e = parse(&build(&d)).expect("parses").gfx_target().expect_err("no GC");
        assert!(e.contains("lists no GC block"), "{e}");
    }

    #[test]
    fn table_versions_1_to_4_and_wide_bases_read_back() {
        for v in 1..=4u16 {
            let mut d = navi31();
            d.ip_version = v;
            if v < 3 {
                for ip in &mut d.ips {
                    ip.variant = 0;
                }
            }
            if v == 4 {
                d.ips[1].bases.push(0x1_0000_0000);
            }
            assert_eq!(parse(&build(&d)).expect("parses"), d, "IP table version {v}");
        }
    }

    #[test]
    fn damage_is_named() {
        let b = build(&navi31());
        let mut x = b.clone();
        x[0] ^= 1;
        assert!(matches!(parse(&x), Err(DiscoveryError::Signature { what: "binary", .. })));
        // A flipped byte inside the IP table: the binary checksum catches it first.
        let mut x = b.clone();
        x[80] ^= 0x40;
        let e = parse(&x).expect_err("checksum");
        assert!(e.to_string().contains("binary checksum"), "{e}");
        // Truncated.
        let e = parse(&b[..b.len() / 2]).expect_err("short");
        assert!(e.to_string().contains("truncated"), "{e}");
        assert!(parse(&[]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Damaged tables, with their checksums fixed up so that the parser reads on, are read
        /// or refused, never a panic.
        #[test]
        fn damaged_tables_never_panic(edits in prop::collection::vec((0usize..600, any::<u8>()), 1..8), cut in 0usize..700, fix in any::<bool>()) {
            let mut b = build(&navi31());
            for (at, v) in edits {
                let n = b.len();
                b[at % n] = v;
            }
            if fix && b.len() > SUM_FROM {
                // Each table's checksum, then the binary's, as the damaged bytes say.
                for i in 0..3 {
                    let at = 12 + 8 * i;
                    let off = usize::from(u16::from_le_bytes([b[at], b[at + 1]]));
                    let len = usize::from(u16::from_le_bytes([b[at + 4], b[at + 5]]));
                    if off + len <= b.len() {
                        let sum = checksum(&b[off..off + len]);
                        b[at + 2..at + 4].copy_from_slice(&sum.to_le_bytes());
                    }
                }
                let size = usize::from(u16::from_le_bytes([b[10], b[11]])).min(b.len()).max(SUM_FROM);
                let sum = checksum(&b[SUM_FROM..size]);
                b[8..10].copy_from_slice(&sum.to_le_bytes());
            }
            b.truncate(cut);
            let _ = parse(&b);
        }
    }
}
