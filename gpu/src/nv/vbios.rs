//! The card's VBIOS, as far as the GSP boot needs it: the chain of PCI expansion-ROM images, the
//! BIT table in the PC-AT image, its FALCON_DATA token, the falcon ucode table, and the FWSEC
//! firmware it points to (descriptor v3, signatures, IMEM and DMEM images, the DMEM mapper that
//! takes the FRTS command). [`Fwsec::frts_dmem`] patches the DMEM with the command that makes
//! FWSEC carve the 1 MiB FRTS region out of VRAM and set WPR2.
//!
//! Facts and their sources (all layouts little-endian):
//! - image chain: PCI Firmware Specification (ROM header 0x55AA, PCI data structure pointer at
//!   0x18, "PCIR" with the image length in 512-byte units at 0x10, the code type at 0x14, the
//!   last-image bit 7 of 0x15); NVIDIA's "NPDE" extension 16-byte aligned after the PCIR, whose
//!   sub-image length (0x08) and last-image bit (0x0A) override the PCIR's
//!   (open-gpu-kernel-modules `pci_exp_table.h`, `kernel_gsp_vbios_tu102.c`; nouveau `npde.c`);
//!   code type 0xE0 for the FWSEC images; an "NVGI" IFR header may precede the ROM (nova-core
//!   `vbios.rs`, `dev_bus.h`).
//! - BIT: the bytes `FF B8 'B' 'I' 'T' 00`, a 12-byte header (version, header size, token size,
//!   token count, checksum: the header's bytes sum to 0), 6-byte tokens (id, data version,
//!   data size, data offset); FALCON_DATA is token 0x70 ('p'), version 2, holding the u32
//!   offset of the falcon ucode table (open-gpu-kernel-modules `kernel_gsp_fwsec.c`).
//! - pointers into FWSEC: the table and descriptor offsets assume the FWSEC images follow the
//!   PC-AT image directly (they skip the EFI image between them): offset − the PC-AT image's
//!   length indexes the FWSEC images laid end to end (nova-core `vbios.rs`; the same rule as
//!   `kernel_gsp_vbios_tu102.c`'s expansion-ROM offset and nouveau's `nvbios_addr`).
//! - the ucode table: a 6-byte header (version 1, header size, entry size, entry count,
//!   descriptor version and size), 6-byte entries (application id, target id, u32 descriptor
//!   offset); FWSEC_PROD is application 0x85.
//! - the descriptor v3 (44 bytes: header with bit 0 valid, version in bits 15:8 and the size
//!   including the signatures in bits 31:16; stored size, PKC data offset, interface offset,
//!   IMEM physical base, load size and virtual base, DMEM physical base and load size, engine
//!   mask, ucode id, signature count and versions), 384-byte RSA-3K signatures after it, then
//!   the IMEM image followed by the DMEM image.
//! - the application interface table in DMEM at the interface offset (version 1, header
//!   size, entry size, entry count; 8-byte entries: id, DMEM offset), the DMEM mapper (id 4;
//!   64 bytes, the command buffer's offset and size at 0x08/0x0C, `init_cmd` at 0x2C), and the
//!   FRTS command 0x15 with its 24-byte READ_VBIOS and 20-byte FRTS_REGION descriptors.

/// The ROM header's signatures: 0xAA55, and NVIDIA's 0x4E56 and 0xBB77.
const ROM_SIGS: [u16; 3] = [0xaa55, 0x4e56, 0xbb77];
/// The PCI data structure's signatures: "PCIR", and NVIDIA's "NPDS" and "RGIS".
const PCIR_SIGS: [u32; 3] = [0x5249_4350, 0x5344_504e, 0x5349_4752];
const NPDE_SIG: u32 = 0x4544_504e;
const NVGI_SIG: u32 = 0x4947_564e;
const RFRD_SIG: u32 = 0x4452_4652;
/// PCI code types: the PC-AT (x86) image holding the BIT, EFI, and NVIDIA's FWSEC images.
pub const CODE_PCAT: u8 = 0x00;
pub const CODE_EFI: u8 = 0x03;
pub const CODE_FWSEC: u8 = 0xe0;
const BIT_PATTERN: [u8; 6] = [0xff, 0xb8, b'B', b'I', b'T', 0];
pub const TOKEN_FALCON_DATA: u8 = 0x70;
pub const APP_FWSEC_PROD: u8 = 0x85;
/// The descriptor v3's size and each signature's.
pub const DESC_V3_BYTES: usize = 44;
pub const SIGNATURE_BYTES: usize = 384;
pub const APP_DMEM_MAPPER: u32 = 4;
pub const DMEM_MAPPER_BYTES: usize = 64;
/// The DMEM mapper's fields used here.
const MAPPER_CMD_IN_OFFSET: usize = 0x08;
const MAPPER_CMD_IN_SIZE: usize = 0x0c;
const MAPPER_INIT_CMD: usize = 0x2c;
/// The FRTS command and its buffer: READ_VBIOS (version 1, size 24, image offset 0, image size
/// 0, flags 2) then FRTS_REGION (version 1, size 20, address >> 12, size in 4 KiB units, media
/// type 2 = frame buffer).
pub const CMD_FRTS: u32 = 0x15;
pub const FRTS_CMD_BYTES: usize = 44;
/// The FRTS region: 1 MiB.
pub const FRTS_BYTES: u64 = 1 << 20;
/// The most images tk walks (real ROMs have four or five).
const MAX_IMAGES: usize = 32;

/// What is wrong with a VBIOS image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VbiosError {
    #[error("the VBIOS ends at byte {len:#x}, inside {what} (at {at:#x})")]
    Truncated { what: &'static str, at: usize, len: usize },
    #[error("the VBIOS has no ROM image at {at:#x} (signature {sig:#06x}, not 0xaa55)")]
    NoImage { at: usize, sig: u16 },
    #[error("the VBIOS image at {at:#x}: {what}")]
    BadImage { at: usize, what: String },
    #[error("the VBIOS has {0}")]
    Missing(&'static str),
    #[error("the VBIOS's {what}: {detail}")]
    Bad { what: &'static str, detail: String },
}

/// Little-endian reads that name what they read when the bytes run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn slice(&self, at: usize, n: usize, what: &'static str) -> Result<&[u8], VbiosError> {
        at.checked_add(n).and_then(|end| self.0.get(at..end)).ok_or(VbiosError::Truncated {
            what,
            at,
            len: self.0.len(),
        })
    }
    fn u8(&self, at: usize, what: &'static str) -> Result<u8, VbiosError> {
        Ok(self.slice(at, 1, what)?[0])
    }
    fn u16(&self, at: usize, what: &'static str) -> Result<u16, VbiosError> {
        let b = self.slice(at, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&self, at: usize, what: &'static str) -> Result<u32, VbiosError> {
        let b = self.slice(at, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// One image of the ROM: where it starts (from the ROM's start), its length and code type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Image {
    pub offset: usize,
    pub len: usize,
    pub code_type: u8,
}

/// The FWSEC descriptor v3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FwsecDesc {
    pub version: u8,
    /// The descriptor's size with its signatures.
    pub size: u32,
    pub stored_size: u32,
    pub pkc_data_offset: u32,
    pub interface_offset: u32,
    pub imem_phys_base: u32,
    pub imem_load_size: u32,
    pub imem_virt_base: u32,
    pub dmem_phys_base: u32,
    pub dmem_load_size: u32,
    pub engine_id_mask: u16,
    pub ucode_id: u8,
    pub signature_count: u8,
    pub signature_versions: u16,
}

/// The FWSEC firmware of a VBIOS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fwsec {
    pub desc: FwsecDesc,
    pub signatures: Vec<Vec<u8>>,
    pub imem: Vec<u8>,
    pub dmem: Vec<u8>,
    /// The DMEM mapper's offset in DMEM, and its command buffer's offset and size.
    pub mapper: usize,
    pub cmd_in: (usize, usize),
}

/// A parsed VBIOS: its images and its FWSEC firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vbios {
    /// Where the PCI ROM starts in what was read (after an "NVGI" header, if any).
    pub rom_start: usize,
    pub images: Vec<Image>,
    pub fwsec: Fwsec,
}

fn bad(what: &'static str, detail: impl Into<String>) -> VbiosError {
    VbiosError::Bad { what, detail: detail.into() }
}

/// Where the PCI ROM starts: 0, or past an "NVGI" IFR header (versions 1-3).
fn rom_start(b: &Bytes<'_>) -> Result<usize, VbiosError> {
    if b.0.len() < 4 || b.u32(0, "the ROM header")? != NVGI_SIG {
        return Ok(0);
    }
    let fixed1 = b.u32(4, "the IFR header")?;
    let version = (fixed1 >> 8) & 0xff;
    let fixed_size = ((fixed1 >> 16) & 0x7fff) as usize;
    let at = match version {
        1 | 2 => b.u32(fixed_size + 4, "the IFR header's ROM offset")? as usize,
        3 => {
            let total = (b.u32(8, "the IFR header")? & 0xf_ffff) as usize;
            let dir = b.u32(total, "the IFR flash status")? as usize + 4096;
            if b.u32(dir, "the IFR directory")? != RFRD_SIG {
                return Err(bad("IFR header", format!("no RFRD directory at {dir:#x}")));
            }
            b.u32(dir + 8, "the IFR directory's ROM offset")? as usize
        }
        v => return Err(bad("IFR header", format!("version {v} (tk reads 1, 2 and 3)"))),
    };
    if at >= b.0.len() {
        return Err(bad("IFR header", format!("ROM offset {at:#x} is beyond the {} bytes read", b.0.len())));
    }
    Ok(at)
}

/// How many bytes of the PROM window the VBIOS takes: the end of its last image, found from the
/// headers alone (so the driver reads no more than that: over the TinyGPU socket every 32-bit
/// word is a round trip). Truncated when `rom` is too short to tell.
pub fn extent(rom: &[u8]) -> Result<usize, VbiosError> {
    let b = Bytes(rom);
    let start = rom_start(&b)?;
    let last = walk(&b, start, false)?.pop().map_or(start, |i| i.offset + i.len);
    Ok(last)
}

/// The chain of images from `start`.
fn images(b: &Bytes<'_>, start: usize) -> Result<Vec<Image>, VbiosError> {
    walk(b, start, true)
}

/// The chain of images from `start`, each image's bytes required to be there when `whole`.
fn walk(b: &Bytes<'_>, start: usize, whole: bool) -> Result<Vec<Image>, VbiosError> {
    let mut out = Vec::new();
    let mut at = start;
    loop {
        let sig = b.u16(at, "a ROM image header")?;
        if !ROM_SIGS.contains(&sig) {
            return Err(VbiosError::NoImage { at, sig });
        }
        let pcir = at + usize::from(b.u16(at + 0x18, "a ROM image header")?);
        if !PCIR_SIGS.contains(&b.u32(pcir, "a PCI data structure")?) {
            return Err(VbiosError::BadImage { at, what: format!("no PCIR structure at {pcir:#x}") });
        }
        let pcir_len = usize::from(b.u16(pcir + 0x0a, "a PCI data structure")?);
        let mut len = usize::from(b.u16(pcir + 0x10, "a PCI data structure")?) * 512;
        let code_type = b.u8(pcir + 0x14, "a PCI data structure")?;
        let mut last = b.u8(pcir + 0x15, "a PCI data structure")? & 0x80 != 0;
        // NVIDIA's extension, 16-byte aligned after the PCIR, overrides the length and the
        // last-image flag (the PCIR's may span the hidden images after it).
        let npde = (pcir + pcir_len).next_multiple_of(16);
        if b.0.get(npde..npde + 4).is_some() && b.u32(npde, "an NPDE extension")? == NPDE_SIG {
            let sub = usize::from(b.u16(npde + 0x08, "an NPDE extension")?) * 512;
            if sub != 0 {
                len = sub;
                last = b.u8(npde + 0x0a, "an NPDE extension")? & 0x80 != 0;
            }
        }
        if len == 0 {
            return Err(VbiosError::BadImage { at, what: "its length is 0".into() });
        }
        if whole {
            b.slice(at, len, "a ROM image")?;
        }
        out.push(Image { offset: at, len, code_type });
        if last {
            return Ok(out);
        }
        if out.len() == MAX_IMAGES {
            return Err(bad("image chain", format!("more than {MAX_IMAGES} images and none marked last")));
        }
        at = (at + len).next_multiple_of(512);
    }
}

/// The FALCON_DATA pointer (the ucode table's offset) from the BIT of the PC-AT image.
fn falcon_data(b: &Bytes<'_>, pcat: &Image) -> Result<u32, VbiosError> {
    let image = b.slice(pcat.offset, pcat.len, "the PC-AT image")?;
    let bit = image
        .windows(BIT_PATTERN.len())
        .position(|w| w == BIT_PATTERN)
        .map(|p| pcat.offset + p)
        .ok_or(VbiosError::Missing("no BIT table in its PC-AT image"))?;
    let header_size = usize::from(b.u8(bit + 8, "the BIT header")?);
    let token_size = usize::from(b.u8(bit + 9, "the BIT header")?);
    let tokens = usize::from(b.u8(bit + 10, "the BIT header")?);
    if header_size < 12 || token_size < 6 {
        return Err(bad(
            "BIT header",
            format!("header size {header_size}, token size {token_size} (at least 12 and 6)"),
        ));
    }
    let sum = b.slice(bit, header_size, "the BIT header")?.iter().fold(0u8, |s, &x| s.wrapping_add(x));
    if sum != 0 {
        return Err(bad("BIT header", format!("its checksum fails (the bytes sum to {sum:#04x}, not 0)")));
    }
    for i in 0..tokens {
        let t = bit + header_size + i * token_size;
        if b.u8(t, "a BIT token")? != TOKEN_FALCON_DATA {
            continue;
        }
        let (version, size) = (b.u8(t + 1, "a BIT token")?, b.u16(t + 2, "a BIT token")?);
        if version != 2 || size < 4 {
            return Err(bad("FALCON_DATA token", format!("version {version}, {size} bytes (tk reads version 2)")));
        }
        let data = pcat.offset + usize::from(b.u16(t + 4, "a BIT token")?);
        return b.u32(data, "the FALCON_DATA token's data");
    }
    Err(VbiosError::Missing("no FALCON_DATA token in its BIT table"))
}

/// The entries' offsets of a table at `at` whose header starts with its version (1), header
/// size, entry size and entry count (the falcon ucode table, FWSEC's interface table).
fn entries(
    b: &Bytes<'_>,
    at: usize,
    what: &'static str,
    min_header: usize,
    min_entry: usize,
) -> Result<Vec<usize>, VbiosError> {
    let h = b.slice(at, 4, what)?;
    let (version, header_size, entry_size) = (h[0], usize::from(h[1]), usize::from(h[2]));
    if version != 1 || header_size < min_header || entry_size < min_entry {
        return Err(bad(
            what,
            format!("version {version}, header {header_size} bytes, entries {entry_size} bytes (tk reads version 1)"),
        ));
    }
    Ok((0..usize::from(h[3])).map(|i| at + header_size + i * entry_size).collect())
}

/// Parses a VBIOS as read from the PROM window (up to 1 MiB).
pub fn parse(rom: &[u8]) -> Result<Vbios, VbiosError> {
    let b = Bytes(rom);
    let start = rom_start(&b)?;
    let images = images(&b, start)?;
    let pcat =
        images.iter().find(|i| i.code_type == CODE_PCAT).ok_or(VbiosError::Missing("no PC-AT image (code type 0)"))?;
    let first_fwsec = images
        .iter()
        .position(|i| i.code_type == CODE_FWSEC)
        .ok_or(VbiosError::Missing("no FWSEC image (code type 0xe0)"))?;
    // The FWSEC images and everything after them, end to end: the section the table and
    // descriptor offsets index once the PC-AT image's length is taken off.
    let mut section = Vec::new();
    for i in &images[first_fwsec..] {
        section.extend_from_slice(b.slice(i.offset, i.len, "a FWSEC image")?);
    }
    let s = Bytes(&section);
    let rebase = |ptr: u32, what: &'static str| {
        (ptr as usize)
            .checked_sub(pcat.len)
            .ok_or_else(|| bad(what, format!("offset {ptr:#x} points into the PC-AT image ({:#x} bytes)", pcat.len)))
    };
    let table = rebase(falcon_data(&b, pcat)?, "falcon ucode table")?;
    let mut desc_ptr = None;
    for e in entries(&s, table, "falcon ucode table", 6, 6)? {
        if s.u8(e, "a falcon ucode table entry")? == APP_FWSEC_PROD {
            desc_ptr = Some(s.u32(e + 2, "a falcon ucode table entry")?);
            break;
        }
    }
    let desc_ptr =
        desc_ptr.ok_or(VbiosError::Missing("no FWSEC_PROD entry (application 0x85) in its falcon ucode table"))?;
    let fwsec = fwsec(&s, rebase(desc_ptr, "FWSEC descriptor")?)?;
    Ok(Vbios { rom_start: start, images, fwsec })
}

fn fwsec(s: &Bytes<'_>, at: usize) -> Result<Fwsec, VbiosError> {
    let w = |k: usize| s.u32(at + k, "the FWSEC descriptor");
    let hdr = w(0)?;
    let version = (hdr >> 8 & 0xff) as u8;
    if hdr & 1 == 0 || version != 3 {
        return Err(bad(
            "FWSEC descriptor",
            format!(
                "header {hdr:#010x}: version {version}{} (tk reads version 3, Ampere GA10x and Ada)",
                if hdr & 1 == 0 { ", not marked valid" } else { "" }
            ),
        ));
    }
    let h = |k: usize| s.u16(at + k, "the FWSEC descriptor");
    let desc = FwsecDesc {
        version,
        size: hdr >> 16,
        stored_size: w(0x04)?,
        pkc_data_offset: w(0x08)?,
        interface_offset: w(0x0c)?,
        imem_phys_base: w(0x10)?,
        imem_load_size: w(0x14)?,
        imem_virt_base: w(0x18)?,
        dmem_phys_base: w(0x1c)?,
        dmem_load_size: w(0x20)?,
        engine_id_mask: h(0x24)?,
        ucode_id: s.u8(at + 0x26, "the FWSEC descriptor")?,
        signature_count: s.u8(at + 0x27, "the FWSEC descriptor")?,
        signature_versions: h(0x28)?,
    };
    // DMATRFMOFFS is 24 bits, and DMA moves whole 256-byte blocks: IMEM and DMEM must lie
    // below 16 MiB, and IMEM must be whole blocks (its DMEM follows it in the DMA image).
    for (base, size, what) in
        [(desc.imem_phys_base, desc.imem_load_size, "IMEM"), (desc.dmem_phys_base, desc.dmem_load_size, "DMEM")]
    {
        if u64::from(base) + u64::from(size) > 1 << 24 || !base.is_multiple_of(256) {
            return Err(bad(
                "FWSEC descriptor",
                format!("{what} at {base:#x}, {size:#x} bytes: not 256-byte aligned below 16 MiB"),
            ));
        }
    }
    if !desc.imem_load_size.is_multiple_of(256) {
        return Err(bad(
            "FWSEC descriptor",
            format!("IMEM of {:#x} bytes is not whole 256-byte blocks", desc.imem_load_size),
        ));
    }
    let sigs = usize::from(desc.signature_count) * SIGNATURE_BYTES;
    if (desc.size as usize) < DESC_V3_BYTES + sigs {
        return Err(bad(
            "FWSEC descriptor",
            format!(
                "{} bytes cannot hold it and {} signatures ({} bytes)",
                desc.size,
                desc.signature_count,
                DESC_V3_BYTES + sigs
            ),
        ));
    }
    let signatures = (0..usize::from(desc.signature_count))
        .map(|k| {
            s.slice(at + DESC_V3_BYTES + k * SIGNATURE_BYTES, SIGNATURE_BYTES, "a FWSEC signature").map(<[u8]>::to_vec)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let image = at + desc.size as usize;
    let imem = s.slice(image, desc.imem_load_size as usize, "the FWSEC IMEM image")?.to_vec();
    let dmem = s.slice(image + imem.len(), desc.dmem_load_size as usize, "the FWSEC DMEM image")?.to_vec();
    if (desc.pkc_data_offset as usize).checked_add(SIGNATURE_BYTES).is_none_or(|end| end > dmem.len())
        && desc.signature_count > 0
    {
        return Err(bad(
            "FWSEC descriptor",
            format!("the signature's place {:#x} is outside its DMEM", desc.pkc_data_offset),
        ));
    }
    let d = Bytes(&dmem);
    let mut mapper = None;
    for e in entries(&d, desc.interface_offset as usize, "FWSEC interface table", 4, 8)? {
        if d.u32(e, "a FWSEC interface entry")? == APP_DMEM_MAPPER {
            mapper = Some(d.u32(e + 4, "a FWSEC interface entry")? as usize);
            break;
        }
    }
    let mapper = mapper.ok_or(VbiosError::Missing("no DMEM mapper (application 4) in FWSEC's interface table"))?;
    d.slice(mapper, DMEM_MAPPER_BYTES, "the FWSEC DMEM mapper")?;
    let cmd_in = (
        d.u32(mapper + MAPPER_CMD_IN_OFFSET, "the FWSEC DMEM mapper")? as usize,
        d.u32(mapper + MAPPER_CMD_IN_SIZE, "the FWSEC DMEM mapper")? as usize,
    );
    if cmd_in.1 < FRTS_CMD_BYTES {
        return Err(bad(
            "FWSEC DMEM mapper",
            format!("its command buffer holds {} bytes, the FRTS command {FRTS_CMD_BYTES}", cmd_in.1),
        ));
    }
    d.slice(cmd_in.0, FRTS_CMD_BYTES, "the FWSEC command buffer")?;
    Ok(Fwsec { desc, signatures, imem, dmem, mapper, cmd_in })
}

impl Fwsec {
    /// The DMEM image with the FRTS command for a 1 MiB region at VRAM byte `frts_addr`
    /// (4 KiB aligned): `init_cmd` set to 0x15 and the command's two descriptors in the
    /// command buffer.
    pub fn frts_dmem(&self, frts_addr: u64) -> Result<Vec<u8>, VbiosError> {
        let mut d = self.dmem.clone();
        // parse() checked that the mapper and the command buffer fit; a Fwsec built by hand
        // gets an error instead.
        let mut put = |at: usize, v: u32| {
            at.checked_add(4)
                .and_then(|end| d.get_mut(at..end))
                .map(|w| w.copy_from_slice(&v.to_le_bytes()))
                .ok_or_else(|| bad("FWSEC DMEM", format!("offset {at:#x} is beyond its {} bytes", self.dmem.len())))
        };
        put(self.mapper.saturating_add(MAPPER_INIT_CMD), CMD_FRTS)?;
        let c = self.cmd_in.0;
        for (k, v) in
            [1, 24, 0, 0, 0, 2, 1, 20, (frts_addr >> 12) as u32, (FRTS_BYTES >> 12) as u32, 2].into_iter().enumerate()
        {
            put(c.saturating_add(4 * k), v)?;
        }
        Ok(d)
    }
}

/// Where the VGA workspace starts in VRAM of `usable` bytes, from its base register
/// (NV_PDISP_VGA_WORKSPACE_BASE 0x625F04: bit 3 valid, bits 31:8 the address >> 16; nova-core
/// `fb.rs`): the register counts when it points into the last 1 MiB; below that the workspace
/// is taken to start 128 KiB before the end; without it (or when it points past the end) 1 MiB
/// before the end.
pub fn vga_workspace(usable: u64, vga_workspace_base: Option<u32>) -> Option<u64> {
    let fallback = usable.checked_sub(1 << 20)?;
    Some(match vga_workspace_base {
        Some(r) if r & 8 != 0 && u64::from(r >> 8) << 16 < usable => {
            let addr = u64::from(r >> 8) << 16;
            if addr < fallback { usable.checked_sub(128 << 10)? } else { addr }
        }
        _ => fallback,
    })
}

/// Where FWSEC-FRTS puts its 1 MiB region: below the VGA workspace ([`vga_workspace`]),
/// aligned down to 128 KiB (nova-core `fb.rs`).
pub fn frts_addr(usable: u64, vga_workspace_base: Option<u32>) -> Option<u64> {
    (vga_workspace(usable, vga_workspace_base)? & !((128 << 10) - 1)).checked_sub(FRTS_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frts_sits_below_the_vga_workspace() {
        let gib = 1u64 << 30;
        assert_eq!(frts_addr(24 * gib, None), Some(24 * gib - (2 << 20)));
        // A valid workspace register in the last MiB: that address, aligned down.
        let ws = 24 * gib - (512 << 10) + 0x1_0000;
        assert_eq!(frts_addr(24 * gib, Some(((ws >> 16) as u32) << 8 | 8)), Some((ws & !0x1_ffff) - (1 << 20)));
        assert_eq!(frts_addr(1 << 19, None), None);
    }

    #[test]
    fn short_or_foreign_roms_are_errors() {
        assert!(matches!(parse(&[]), Err(VbiosError::Truncated { .. })));
        assert!(matches!(parse(&[0x12, 0x34, 0, 0]), Err(VbiosError::NoImage { sig: 0x3412, .. })));
        let mut rom = vec![0u8; 1024];
        rom[0..2].copy_from_slice(&0xaa55u16.to_le_bytes());
        rom[0x18] = 0x40;
        let e = parse(&rom).expect_err("no PCIR");
        assert!(e.to_string().contains("no PCIR structure at 0x40"), "{e}");
    }
}
