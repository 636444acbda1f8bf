//! A synthetic VBIOS in the real layout (tk_gpu::nv::vbios names the sources): a PC-AT image
//! with its BIT table and FALCON_DATA token, an EFI image between it and the FWSEC images (the
//! layout whose pointers need the PC-AT-relative fix-up), and two FWSEC images holding the
//! falcon ucode table (a debug and a production entry) and the FWSEC firmware (descriptor v3,
//! two signatures, IMEM and DMEM images with the interface table and the DMEM mapper). The
//! code and signatures are filler: the simulated falcon checks the structure, not the
//! cryptography.

use tk_gpu::nv::vbios::{
    APP_DMEM_MAPPER, APP_FWSEC_PROD, CODE_EFI, CODE_FWSEC, CODE_PCAT, DESC_V3_BYTES, DMEM_MAPPER_BYTES,
    SIGNATURE_BYTES, TOKEN_FALCON_DATA,
};

/// Where the synthetic FWSEC's DMEM keeps its parts.
pub const DMEM_INTERFACE: usize = 0x0;
pub const DMEM_MAPPER: usize = 0x40;
pub const DMEM_CMD_IN: usize = 0x200;
pub const DMEM_CMD_IN_BYTES: usize = 0x100;
pub const DMEM_PKC: usize = 0x300;
pub const DMEM_BYTES: usize = 0x600;
pub const IMEM_BYTES: usize = 0x800;
/// Where the FWSEC descriptor sits in the synthetic ROM (PC-AT 0x1000 bytes, EFI 0x800,
/// FWSEC #1 0x400, then 0x100 into FWSEC #2), and what follows it: two signatures, then IMEM,
/// then DMEM.
pub const DESC_AT: usize = 0x1d00;
pub const SIGS_AT: usize = DESC_AT + DESC_V3_BYTES;
pub const IMEM_AT: usize = SIGS_AT + 2 * SIGNATURE_BYTES;
pub const DMEM_AT: usize = IMEM_AT + IMEM_BYTES;
/// The descriptor's ucode id, engine mask (the GSP) and signature versions (0 and 1).
pub const UCODE_ID: u8 = 1;
pub const ENGINE_MASK: u16 = 1 << 10;
pub const SIGNATURE_VERSIONS: u16 = 0b11;

/// The DMEM mapper's signature as ROMs carry it ("DMAP"; no driver checks it).
const DMAP: u32 = 0x5041_4d44;

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// One ROM image of `blocks` 512-byte blocks: the 0xAA55 header, a PCIR at 0x20 and an NPDE
/// after it (the NPDE's length and last flag are the ones that count; the PCIR's claims the
/// whole rest of the ROM, as on real cards).
fn image(blocks: u16, code_type: u8, last: bool, device: u16) -> Vec<u8> {
    let mut b = vec![0u8; usize::from(blocks) * 512];
    put16(&mut b, 0, 0xaa55);
    put16(&mut b, 0x18, 0x20);
    b[0x20..0x24].copy_from_slice(b"PCIR");
    put16(&mut b, 0x24, 0x10de);
    put16(&mut b, 0x26, device);
    put16(&mut b, 0x2a, 0x18);
    b[0x2c] = 3;
    b[0x2f] = 3; // class code: display controller
    put16(&mut b, 0x30, 0x7fff);
    b[0x34] = code_type;
    b[0x35] = 0;
    // NPDE, 16-byte aligned after the 0x18-byte PCIR.
    b[0x40..0x44].copy_from_slice(b"NPDE");
    put16(&mut b, 0x44, 0x0101);
    put16(&mut b, 0x46, 0x0c);
    put16(&mut b, 0x48, blocks);
    b[0x4a] = if last { 0x80 } else { 0 };
    b
}

/// The filler bytes of a synthetic image: a counter mixed with `salt`.
fn filler(n: usize, salt: u8) -> impl Iterator<Item = u8> {
    (0..n).map(move |i| (i as u8).wrapping_mul(31).wrapping_add(salt))
}

/// The synthetic VBIOS of a GPU with PCI device id `device`.
pub fn build(device: u16) -> Vec<u8> {
    // PC-AT image: 8 blocks, the BIT at 0x100, FALCON_DATA's data at 0x200.
    let mut pcat = image(8, CODE_PCAT, false, device);
    let efi = image(4, CODE_EFI, false, device);
    let mut fw1 = image(2, CODE_FWSEC, false, device);
    let desc_size = DESC_V3_BYTES + 2 * SIGNATURE_BYTES;
    let fw2_blocks = (0x100 + desc_size + IMEM_BYTES + DMEM_BYTES).div_ceil(512) as u16;
    let mut fw2 = image(fw2_blocks, CODE_FWSEC, true, device);
    // Offsets in the FWSEC section (FWSEC #1 then #2), and as the ROM's pointers give them:
    // plus the PC-AT image's length, as if no EFI image sat between.
    let table = 0x100;
    let desc = fw1.len() + 0x100;
    let pcat_len = pcat.len();
    let ptr = |off: usize| (pcat_len + off) as u32;

    let bit = 0x100;
    pcat[bit..bit + 6].copy_from_slice(&[0xff, 0xb8, b'B', b'I', b'T', 0]);
    put16(&mut pcat, bit + 6, 0x0100);
    pcat[bit + 8] = 12;
    pcat[bit + 9] = 6;
    pcat[bit + 10] = 2;
    let sum = pcat[bit..bit + 12].iter().fold(0u8, |s, &x| s.wrapping_add(x));
    pcat[bit + 11] = 0u8.wrapping_sub(sum);
    // A token tk does not read ('B', BIOS data), then FALCON_DATA.
    let t0 = bit + 12;
    pcat[t0..t0 + 6].copy_from_slice(&[b'B', 1, 4, 0, 0x40, 0x02]);
    pcat[t0 + 6] = TOKEN_FALCON_DATA;
    pcat[t0 + 7] = 2;
    put16(&mut pcat, t0 + 8, 4);
    put16(&mut pcat, t0 + 10, 0x200);
    put32(&mut pcat, 0x200, ptr(table));

    // The falcon ucode table in FWSEC #1: a debug entry first, then the production one.
    fw1[table..table + 6].copy_from_slice(&[1, 6, 6, 2, 3, DESC_V3_BYTES as u8]);
    fw1[table + 6] = 0x45;
    fw1[table + 7] = 7;
    put32(&mut fw1, table + 8, ptr(desc + 0x40));
    fw1[table + 12] = APP_FWSEC_PROD;
    fw1[table + 13] = 7;
    put32(&mut fw1, table + 14, ptr(desc));

    // The descriptor v3 at the start of FWSEC #2's payload.
    let d = desc - fw1.len();
    let hdr = (desc_size as u32) << 16 | 3 << 8 | 1;
    for (k, v) in [
        hdr,
        (IMEM_BYTES + DMEM_BYTES) as u32,
        DMEM_PKC as u32,
        DMEM_INTERFACE as u32,
        0,
        IMEM_BYTES as u32,
        0,
        0,
        DMEM_BYTES as u32,
    ]
    .into_iter()
    .enumerate()
    {
        put32(&mut fw2, d + 4 * k, v);
    }
    put16(&mut fw2, d + 0x24, ENGINE_MASK);
    fw2[d + 0x26] = UCODE_ID;
    fw2[d + 0x27] = 2;
    put16(&mut fw2, d + 0x28, SIGNATURE_VERSIONS);
    let sigs = d + DESC_V3_BYTES;
    for (i, x) in filler(2 * SIGNATURE_BYTES, 0x5a).enumerate() {
        fw2[sigs + i] = x;
    }
    let imem = d + desc_size;
    for (i, x) in filler(IMEM_BYTES, 0x11).enumerate() {
        fw2[imem + i] = x;
    }
    let dmem = imem + IMEM_BYTES;
    // The interface table: an entry tk does not use, then the DMEM mapper.
    let it = dmem + DMEM_INTERFACE;
    fw2[it..it + 4].copy_from_slice(&[1, 4, 8, 2]);
    put32(&mut fw2, it + 4, 1);
    put32(&mut fw2, it + 8, 0x180);
    put32(&mut fw2, it + 12, APP_DMEM_MAPPER);
    put32(&mut fw2, it + 16, DMEM_MAPPER as u32);
    let m = dmem + DMEM_MAPPER;
    put32(&mut fw2, m, DMAP);
    put16(&mut fw2, m + 4, 3);
    put16(&mut fw2, m + 6, DMEM_MAPPER_BYTES as u16);
    put32(&mut fw2, m + 8, DMEM_CMD_IN as u32);
    put32(&mut fw2, m + 12, DMEM_CMD_IN_BYTES as u32);

    let mut rom = pcat;
    rom.extend(efi);
    rom.extend(fw1);
    rom.extend(fw2);
    debug_assert_eq!(rom.len() - fw2_blocks as usize * 512 + d, DESC_AT);
    rom
}

#[cfg(test)]
mod tests {
    use super::*;
    use tk_gpu::nv::vbios::{self, VbiosError};

    #[test]
    fn the_driver_finds_fwsec_in_the_synthetic_vbios() {
        let rom = build(0x2204);
        let v = vbios::parse(&rom).expect("parses");
        let types: Vec<u8> = v.images.iter().map(|i| i.code_type).collect();
        assert_eq!(types, [CODE_PCAT, CODE_EFI, CODE_FWSEC, CODE_FWSEC]);
        let f = &v.fwsec;
        assert_eq!(f.imem, rom[IMEM_AT..DMEM_AT]);
        assert_eq!(f.signatures[0], rom[SIGS_AT..SIGS_AT + SIGNATURE_BYTES]);
        assert_eq!((f.desc.version, f.desc.signature_count, f.desc.engine_id_mask), (3, 2, 1 << 10));
        assert_eq!((f.imem.len(), f.dmem.len()), (IMEM_BYTES, DMEM_BYTES));
        assert_eq!(f.imem[..4], filler(4, 0x11).collect::<Vec<_>>()[..]);
        assert_eq!(
            f.signatures[1][..2],
            filler(SIGNATURE_BYTES + 2, 0x5a).skip(SIGNATURE_BYTES).collect::<Vec<_>>()[..]
        );
        assert_eq!((f.mapper, f.cmd_in), (DMEM_MAPPER, (DMEM_CMD_IN, DMEM_CMD_IN_BYTES)));
        let d = f.frts_dmem(0x5_fe00_0000).expect("patches");
        let word = |at: usize| u32::from_le_bytes(d[at..at + 4].try_into().expect("4 bytes"));
        assert_eq!(word(DMEM_MAPPER + 0x2c), 0x15);
        assert_eq!(word(DMEM_CMD_IN + 0x20), 0x5f_e000);
        assert_eq!(word(DMEM_CMD_IN + 0x24), 0x100);
        // Without the EFI image the same pointers still land (nothing assumed about it).
        let mut no_efi = rom[..0x1000].to_vec();
        no_efi.extend_from_slice(&rom[0x1800..]);
        assert_eq!(vbios::parse(&no_efi).map(|v| v.fwsec), Ok(v.fwsec.clone()));
        // Behind an "NVGI" IFR header (version 1: the ROM's offset after the fixed data).
        let mut ifr = vec![0u8; 0x200];
        ifr[0..4].copy_from_slice(b"NVGI");
        put32(&mut ifr, 4, 0x10 << 16 | 1 << 8);
        put32(&mut ifr, 0x14, 0x200);
        ifr.extend_from_slice(&rom);
        let behind = vbios::parse(&ifr).expect("parses behind the IFR header");
        assert_eq!((behind.rom_start, behind.fwsec), (0x200, v.fwsec));
    }

    #[test]
    fn broken_vbioses_name_what_is_wrong() {
        let rom = build(0x2204);
        let err = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut r = rom.clone();
            f(&mut r);
            vbios::parse(&r).expect_err("broken").to_string()
        };
        assert!(err(&|r| r[0x100] = 0).contains("no BIT table"));
        assert!(err(&|r| r[0x10b] ^= 1).contains("checksum"));
        assert!(err(&|r| r[0x112] = b'q').contains("no FALCON_DATA token"));
        // The last image's NPDE loses its last flag: the chain runs off the end.
        let fw2 = 0x1800 + 0x400;
        assert!(err(&|r| r[fw2 + 0x4a] = 0).contains("inside a ROM image header"));
        // No production entry in the ucode table.
        assert!(err(&|r| r[0x1800 + 0x100 + 12] = 0x45).contains("FWSEC_PROD"));
        // IMEM that is not whole 256-byte blocks.
        assert!(err(&|r| r[fw2 + 0x100 + 0x14] = 0xf0).contains("not whole 256-byte blocks"));
        // A version 2 descriptor (GA100/Turing).
        assert!(err(&|r| r[fw2 + 0x101] = 2).contains("version 2"));
        // A command buffer too small for the FRTS command.
        let mapper = fw2 + 0x100 + DESC_V3_BYTES + 2 * SIGNATURE_BYTES + IMEM_BYTES + DMEM_MAPPER;
        assert!(
            err(&|r| {
                r[mapper + 12] = 8;
                r[mapper + 13] = 0;
            })
            .contains("command buffer holds 8 bytes")
        );
        assert!(matches!(vbios::parse(&rom[..rom.len() - 0x300]), Err(VbiosError::Truncated { .. })));
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]
        /// Corrupted or cut VBIOSes are errors, never panics.
        #[test]
        fn corrupt_vbioses_never_panic(edits in proptest::collection::vec((0usize..0x4000, proptest::num::u8::ANY), 1..8), cut in 0usize..0x4000) {
            let mut r = build(0x2204);
            for (at, v) in edits {
                let n = r.len();
                r[at % n] = v;
            }
            let _ = vbios::parse(&r);
            r.truncate(cut.min(r.len()));
            let _ = vbios::parse(&r);
        }
    }
}
