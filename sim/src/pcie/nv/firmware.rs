//! The simulated NVIDIA GPU's synthetic GSP firmware, in the containers of the real files
//! (tk_gpu::nv::firmware names the sources): `booter_load` (bin header, HS header v2, two
//! signatures, patch location, fuse metadata, load header, image), `bootloader` (bin header,
//! `RM_RISCV_UCODE_DESC`, image) and GSP-RM (an ELF64 with `.fwimage` and both chips'
//! signature sections). The contents are deterministic filler: the simulated falcons check
//! that what the driver loads is these bytes, in the places the containers say, not that they
//! are signed.

use super::super::filler;
use tk_gpu::nv::firmware::{BIN_HEADER_BYTES, BIN_MAGIC, HS_HEADER_BYTES, LOAD_HEADER_BYTES, META_BYTES, names};
use tk_gpu::nv::vbios::SIGNATURE_BYTES;

/// The synthetic booter image: non-secure OS code at 0, the secure application's code, then
/// the data (DMEM) with the signature's place inside it.
pub const BOOTER_OS_CODE: (u32, u32) = (0, 0x100);
pub const BOOTER_APP: (u32, u32) = (0x100, 0x600);
pub const BOOTER_DATA: (u32, u32) = (0x700, 0x400);
pub const BOOTER_PATCH_LOC: u32 = 0x800;
pub const BOOTER_BYTES: usize = 0xb00;
/// Two signatures, for fuse versions 0 and 1: the last is for version `BOOTER_FUSE_VER`.
pub const BOOTER_SIGS: usize = 2;
pub const BOOTER_FUSE_VER: u32 = 1;
/// The booter's ucode id (its fuse register) and engine mask (SEC2).
pub const BOOTER_UCODE_ID: u32 = 3;
pub const BOOTER_ENGINE_MASK: u32 = 1;

/// The bootloader's descriptor: 21 u32s as open-gpu-kernel-modules' current
/// `RM_RISCV_UCODE_DESC` has them, and the fields the WPR metadata carries.
pub const BOOTLOADER_DESC_WORDS: usize = 21;
pub const BOOTLOADER_BYTES: usize = 0x1400;
pub const BOOTLOADER_APP_VERSION: u32 = 0x0570_0144;
pub const BOOTLOADER_MANIFEST: (u32, u32) = (0x1000, 0x400);
pub const BOOTLOADER_MONITOR_DATA: (u32, u32) = (0xc00, 0x400);
pub const BOOTLOADER_MONITOR_CODE: (u32, u32) = (0x0, 0xc00);

/// GSP-RM's `.fwimage`: not a whole number of pages, so the radix table's last page is
/// partly used.
pub const GSP_IMAGE_BYTES: usize = 0x2_3456;
pub const GSP_SIGNATURE_BYTES: usize = 0x1000;

fn words(v: &[u32]) -> Vec<u8> {
    v.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// A bin header followed by `header` and `data`.
fn container(header: &[u8], data: &[u8]) -> Vec<u8> {
    let data_offset = BIN_HEADER_BYTES + header.len();
    let size = (data_offset + data.len()).next_multiple_of(256);
    let mut f = words(&[BIN_MAGIC, 1, size as u32, BIN_HEADER_BYTES as u32, data_offset as u32, data.len() as u32]);
    f.extend_from_slice(header);
    f.extend_from_slice(data);
    f.resize(size, 0);
    f
}

/// The booter's signatures as the file carries them.
pub fn booter_signatures() -> Vec<Vec<u8>> {
    (0..BOOTER_SIGS).map(|k| filler(&format!("booter signature {k}"), SIGNATURE_BYTES)).collect()
}

/// The booter's image (without a signature in its place).
pub fn booter_image() -> Vec<u8> {
    let mut img = filler("booter_load", BOOTER_BYTES);
    let p = BOOTER_PATCH_LOC as usize;
    img[p..p + SIGNATURE_BYTES].fill(0);
    img
}

/// `booter_load-570.144.bin`.
pub fn booter() -> Vec<u8> {
    let s = BOOTER_SIGS * SIGNATURE_BYTES;
    // File offsets of the HS header's parts (the HS header is at 24, its parts follow it).
    let sig_at = BIN_HEADER_BYTES + HS_HEADER_BYTES;
    let patch_loc_at = sig_at + s;
    let patch_sig_at = patch_loc_at + 4;
    let meta_at = patch_sig_at + 4;
    let num_at = meta_at + META_BYTES;
    let load_at = num_at + 4;
    let mut h = words(&[
        sig_at as u32,
        s as u32,
        patch_loc_at as u32,
        patch_sig_at as u32,
        meta_at as u32,
        META_BYTES as u32,
        num_at as u32,
        load_at as u32,
        LOAD_HEADER_BYTES as u32,
    ]);
    for sig in booter_signatures() {
        h.extend_from_slice(&sig);
    }
    h.extend(words(&[BOOTER_PATCH_LOC, 0, BOOTER_FUSE_VER, BOOTER_ENGINE_MASK, BOOTER_UCODE_ID, BOOTER_SIGS as u32]));
    h.extend(words(&[
        BOOTER_OS_CODE.0,
        BOOTER_OS_CODE.1,
        BOOTER_DATA.0,
        BOOTER_DATA.1,
        1,
        BOOTER_APP.0,
        BOOTER_APP.1,
        BOOTER_DATA.0,
        BOOTER_DATA.1,
    ]));
    container(&h, &booter_image())
}

/// The bootloader's image.
pub fn bootloader_image() -> Vec<u8> {
    filler("bootloader", BOOTLOADER_BYTES)
}

/// `bootloader-570.144.bin`.
pub fn bootloader() -> Vec<u8> {
    let mut d = [0u32; BOOTLOADER_DESC_WORDS];
    d[0] = 5; // the descriptor's version
    d[5] = 0; // riscvElfOffset
    d[6] = BOOTLOADER_BYTES as u32;
    d[7] = BOOTLOADER_APP_VERSION;
    (d[8], d[9]) = BOOTLOADER_MANIFEST;
    (d[10], d[11]) = BOOTLOADER_MONITOR_DATA;
    (d[12], d[13]) = BOOTLOADER_MONITOR_CODE;
    d[14] = 1; // bIsMonitorEnabled
    container(&words(&d), &bootloader_image())
}

/// GSP-RM's image and the signature of `chip_dir`'s chips.
pub fn gsp_image() -> Vec<u8> {
    filler("GSP-RM", GSP_IMAGE_BYTES)
}

pub fn gsp_signature(dir: &str) -> Vec<u8> {
    filler(&format!("GSP-RM signature {dir}"), GSP_SIGNATURE_BYTES)
}

/// `gsp-570.144.bin`: an ELF64 with the image and both signature sections.
pub fn gsp() -> Result<Vec<u8>, String> {
    use object::write::Object;
    use object::{Architecture, BinaryFormat, Endianness, SectionKind};
    let mut o = Object::new(BinaryFormat::Elf, Architecture::Riscv64, Endianness::Little);
    for (name, data) in [
        (".fwimage", gsp_image()),
        (".fwsignature_ga10x", gsp_signature("ga102")),
        (".fwsignature_ad10x", gsp_signature("ad102")),
    ] {
        let s = o.add_section(Vec::new(), name.as_bytes().to_vec(), SectionKind::ReadOnlyData);
        o.set_section_data(s, data, 4096);
    }
    o.write().map_err(|e| format!("writing the synthetic GSP-RM ELF: {e}"))
}

/// The three files under their linux-firmware names, for a chip whose files live in `dir`
/// (`ga102` or `ad102`).
pub fn files(dir: &str) -> Result<Vec<(String, Vec<u8>)>, String> {
    let [b, l, g] = names(dir);
    Ok(vec![(b, booter()), (l, bootloader()), (g, gsp()?)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tk_gpu::nv::chip::{Arch, Chip};
    use tk_gpu::nv::firmware::NvFirmware;

    #[test]
    fn the_driver_reads_the_synthetic_files_back() {
        for (dir, chip) in [
            ("ga102", Chip { arch: Arch::Ampere, id: 0x172, name: "GA102" }),
            ("ad102", Chip { arch: Arch::Ada, id: 0x192, name: "AD102" }),
        ] {
            let fw = NvFirmware::from_files(&files(dir).expect("files"), &chip, "test").expect("parses");
            assert_eq!(fw.booter.image, booter_image());
            assert_eq!(fw.booter.signatures, booter_signatures());
            assert_eq!(fw.booter.patch_loc, BOOTER_PATCH_LOC);
            assert_eq!((fw.booter.load.app_offset, fw.booter.load.app_size), BOOTER_APP);
            assert_eq!((fw.booter.ucode_id, fw.booter.engine_id_mask, fw.booter.fuse_ver), (3, 1, 1));
            assert_eq!(fw.bootloader.image, bootloader_image());
            assert_eq!(fw.bootloader.app_version, BOOTLOADER_APP_VERSION);
            assert_eq!(fw.bootloader.data_offset, BOOTLOADER_MONITOR_DATA.0);
            assert_eq!(fw.gsp.image, gsp_image());
            assert_eq!(fw.gsp.signature, gsp_signature(dir));
        }
    }

    #[test]
    fn damaged_files_are_refused_by_name() {
        let chip = Chip { arch: Arch::Ampere, id: 0x172, name: "GA102" };
        let with = |k: usize, f: &dyn Fn(&mut Vec<u8>)| {
            let mut fs = files("ga102").expect("files");
            f(&mut fs[k].1);
            NvFirmware::from_files(&fs, &chip, "test").expect_err("refused").to_string()
        };
        let e = with(0, &|b| b[0] = 0);
        assert!(e.contains("booter_load-570.144.bin") && e.contains("magic"), "{e}");
        // One signature fewer than the header's count says.
        let num_at = BIN_HEADER_BYTES + HS_HEADER_BYTES + 2 * SIGNATURE_BYTES + 8 + META_BYTES;
        let e = with(0, &|b| b[num_at] = 3);
        assert!(e.contains("signatures"), "{e}");
        // The image's size beyond the file.
        let e = with(1, &|b| b[21] = 0xff);
        assert!(e.contains("bootloader-570.144.bin") && e.contains("beyond"), "{e}");
        let e = with(2, &|b| b.truncate(64));
        assert!(e.contains("gsp-570.144.bin") && e.contains("ELF"), "{e}");
        let e = with(2, &|b| {
            let at = b.windows(9).position(|w| w == b".fwimage\0").expect("name");
            b[at + 1] = b'x';
        });
        assert!(e.contains("no .fwimage section"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(1000))]
        /// Corrupted or cut firmware files are errors, never panics: edits go to the headers
        /// (the first 2 KiB, where a GSP-RM ELF's section table is near the end instead).
        #[test]
        fn corrupt_firmware_never_panics(
            which in 0usize..3,
            edits in proptest::collection::vec((0usize..0x800, proptest::num::u8::ANY, proptest::bool::ANY), 1..8),
            cut in proptest::option::of(0usize..0x800),
        ) {
            let chip = Chip { arch: Arch::Ampere, id: 0x172, name: "GA102" };
            let mut fs = files("ga102").expect("files");
            let f = &mut fs[which].1;
            for (at, v, from_end) in edits {
                let n = f.len();
                let i = if from_end { n - 1 - at % n } else { at % n };
                f[i] = v;
            }
            if let Some(c) = cut {
                let n = f.len();
                f.truncate(if c % 2 == 0 { c.min(n) } else { n.saturating_sub(c) });
            }
            let _ = NvFirmware::from_files(&fs, &chip, "test");
        }
    }
}
