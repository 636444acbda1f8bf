//! The `firmware` step: the three files of GSP-RM 570.144 a GA10x or AD10x boots with, read
//! from a linux-firmware tree (`TK_FIRMWARE_DIR`, else `/lib/firmware`) or handed over by a
//! simulated GPU, their containers parsed and checked before anything is sent to the GPU:
//!
//! - `nvidia/<chip>/gsp/booter_load-570.144.bin`: the heavy-secure booter for the SEC2 falcon,
//!   a 24-byte `nvfw_bin_hdr`, the HS header v2 with its signatures, patch location, fuse
//!   metadata and load header, then the image;
//! - `nvidia/<chip>/gsp/bootloader-570.144.bin`: the GSP's RISC-V bootloader, the same bin
//!   header and an `RM_RISCV_UCODE_DESC`;
//! - `nvidia/<chip>/gsp/gsp-570.144.bin`: GSP-RM itself, an ELF64 whose `.fwimage` section is
//!   the image and whose `.fwsignature_ga10x` (`_ad10x` on Ada) section its signature.
//!
//! Layouts: nouveau's `extract-firmware-nouveau.py` (which writes these files from
//! open-gpu-kernel-modules), `include/nvfw/hs.h` and `fw.h`, open-gpu-kernel-modules'
//! `rmRiscvUcode.h`, nova-core's `firmware/booter.rs`, `firmware/riscv.rs` and `firmware/gsp.rs`
//! (docs/nvidia-facts.md, sections 5 and 6 of "The falcons").

use super::chip::{Arch, Chip};
use super::vbios::SIGNATURE_BYTES;
use std::path::{Path, PathBuf};

/// The GSP-RM release the driver speaks (its RPC layouts are open-gpu-kernel-modules' at this
/// tag).
pub const VERSION: &str = "570.144";

/// The magic of `nvfw_bin_hdr` (NVIDIA's PCI vendor id).
pub const BIN_MAGIC: u32 = 0x10de;
/// The bin header's size; the HS header follows it.
pub const BIN_HEADER_BYTES: usize = 24;
/// `nvfw_hs_header_v2`: nine u32s.
pub const HS_HEADER_BYTES: usize = 36;
/// The HS load header v2 with one application: nine u32s.
pub const LOAD_HEADER_BYTES: usize = 36;
/// The booter's fuse metadata: fuse version, engine-id mask, ucode id.
pub const META_BYTES: usize = 12;
/// The fields of `RM_RISCV_UCODE_DESC` the driver reads (the first fourteen u32s).
pub const RISCV_DESC_MIN_BYTES: usize = 56;

/// The firmware's directory in linux-firmware for a chip: every GA10x shares GA102's files and
/// every AD10x AD102's (linux-firmware links the others to them).
pub fn chip_dir(chip: &Chip) -> Option<&'static str> {
    match chip.arch {
        Arch::Ampere if chip.id != 0x170 => Some("ga102"),
        Arch::Ada => Some("ad102"),
        _ => None,
    }
}

/// The files' names in linux-firmware, `nvidia/<chip>/gsp/...`, in the order they are used.
pub fn names(dir: &str) -> [String; 3] {
    ["booter_load", "bootloader", "gsp"].map(|f| format!("nvidia/{dir}/gsp/{f}-{VERSION}.bin"))
}

/// Why the firmware could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirmwareError {
    /// Files that are not there: their paths, and where to get them.
    #[error(
        "missing GPU firmware: {}. They are part of linux-firmware (its nvidia/ directory, release {VERSION} of \
         GSP-RM): install a recent linux-firmware or point TK_FIRMWARE_DIR at a copy of \
         https://git.kernel.org/pub/scm/linux/kernel/git/firmware/linux-firmware.git",
        .0.join(", ")
    )]
    Missing(Vec<String>),
    /// A file that is not what its name says.
    #[error("GPU firmware {file}: {detail}")]
    Bad { file: String, detail: String },
    #[error("tk does not know the GSP firmware of {0} (it knows GA102-GA107 and AD102-AD107)")]
    Chip(&'static str),
}

/// The booter's HS load header: where the non-secure OS code and the data lie in the image,
/// and the one secure application (the code loaded into IMEM).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadHeader {
    pub os_code_offset: u32,
    pub os_code_size: u32,
    pub os_data_offset: u32,
    pub os_data_size: u32,
    pub app_offset: u32,
    pub app_size: u32,
    pub app_data_offset: u32,
    pub app_data_size: u32,
}

/// `booter_load`: the SEC2 image, its signatures (one per fuse version), where the chosen one
/// goes, and the boot ROM's parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Booter {
    pub image: Vec<u8>,
    pub signatures: Vec<Vec<u8>>,
    /// The image offset the chosen signature is copied to.
    pub patch_loc: u32,
    /// The fuse version the last signature is for, the engine-id mask (SEC2 is bit 0) and the
    /// ucode id whose fuse register selects the signature.
    pub fuse_ver: u32,
    pub engine_id_mask: u32,
    pub ucode_id: u32,
    pub load: LoadHeader,
}

/// The GSP's RISC-V bootloader and the descriptor fields the WPR metadata needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootloader {
    pub image: Vec<u8>,
    /// Written to the GSP falcon's OS register after booter_load.
    pub app_version: u32,
    pub manifest_offset: u32,
    pub code_offset: u32,
    pub data_offset: u32,
}

/// GSP-RM: the `.fwimage` section and the chip's signature section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GspRm {
    pub image: Vec<u8>,
    pub signature: Vec<u8>,
}

/// The firmware a boot needs, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NvFirmware {
    pub booter: Booter,
    pub bootloader: Bootloader,
    pub gsp: GspRm,
    /// Where the files came from (a directory, or "the simulated GPU's synthetic firmware").
    pub origin: String,
}

/// The linux-firmware directory tk reads.
pub fn dir() -> PathBuf {
    crate::amd::firmware::dir()
}

impl NvFirmware {
    /// Reads the chip's files from the linux-firmware tree at `root`; every missing file is
    /// named in one error.
    pub fn load(root: &Path, chip: &Chip) -> Result<NvFirmware, FirmwareError> {
        let d = chip_dir(chip).ok_or(FirmwareError::Chip(chip.name))?;
        let names = names(d);
        let missing: Vec<String> =
            names.iter().map(|n| root.join(n)).filter(|p| !p.is_file()).map(|p| p.display().to_string()).collect();
        if !missing.is_empty() {
            return Err(FirmwareError::Missing(missing));
        }
        let mut files = Vec::new();
        for n in names {
            let path = root.join(&n);
            let bytes = std::fs::read(&path).map_err(|e| FirmwareError::Bad {
                file: path.display().to_string(),
                detail: format!("cannot be read: {e}"),
            })?;
            files.push((n, bytes));
        }
        NvFirmware::from_files(&files, chip, &root.display().to_string())
    }

    /// Checks files already in memory (`(name in linux-firmware, bytes)`), such as a simulated
    /// GPU's.
    pub fn from_files(files: &[(String, Vec<u8>)], chip: &Chip, origin: &str) -> Result<NvFirmware, FirmwareError> {
        let d = chip_dir(chip).ok_or(FirmwareError::Chip(chip.name))?;
        let [b, l, g] = names(d);
        let get = |name: &str| {
            files
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, bytes)| bytes.as_slice())
                .ok_or_else(|| FirmwareError::Missing(vec![format!("{name} (in {origin})")]))
        };
        let bad = |file: &String| {
            let file = file.clone();
            move |detail: String| FirmwareError::Bad { file, detail }
        };
        let sig_section = if chip.arch == Arch::Ada { ".fwsignature_ad10x" } else { ".fwsignature_ga10x" };
        Ok(NvFirmware {
            booter: parse_booter(get(&b)?).map_err(bad(&b))?,
            bootloader: parse_bootloader(get(&l)?).map_err(bad(&l))?,
            gsp: parse_gsp(get(&g)?, sig_section).map_err(bad(&g))?,
            origin: origin.to_string(),
        })
    }

    /// Bytes in all.
    pub fn bytes(&self) -> usize {
        self.booter.image.len() + self.bootloader.image.len() + self.gsp.image.len() + self.gsp.signature.len()
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, String> {
    at.checked_add(4)
        .and_then(|end| b.get(at..end))
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .ok_or_else(|| format!("the file ends ({} bytes) before the word at {at:#x}", b.len()))
}

fn range(b: &[u8], at: u32, len: u32, what: &str) -> Result<std::ops::Range<usize>, String> {
    let (at, len) = (at as usize, len as usize);
    match at.checked_add(len) {
        Some(end) if end <= b.len() => Ok(at..end),
        _ => Err(format!("its {what} ({len} bytes at {at:#x}) lies beyond its {} bytes", b.len())),
    }
}

/// The bin header: checks the magic and returns the data (image) it names.
fn bin_data(b: &[u8]) -> Result<(std::ops::Range<usize>, u32), String> {
    let magic = u32_at(b, 0)?;
    if magic != BIN_MAGIC {
        return Err(format!("not an NVIDIA firmware container (its magic is {magic:#x}, not 0x10de)"));
    }
    let (header, data, size) = (u32_at(b, 12)?, u32_at(b, 16)?, u32_at(b, 20)?);
    Ok((range(b, data, size, "image")?, header))
}

/// Parses `booter_load-570.144.bin` (docs/nvidia-facts.md, "The falcons" 5.2).
pub fn parse_booter(b: &[u8]) -> Result<Booter, String> {
    let (data, hs) = bin_data(b)?;
    let image = &b[data];
    let hs = hs as usize;
    let f = |k: usize| u32_at(b, hs + 4 * k);
    let (sig_off, sig_size, patch_loc_off, patch_sig_off, meta_off, meta_size, num_sig_off, load_off, load_size) =
        (f(0)?, f(1)?, f(2)?, f(3)?, f(4)?, f(5)?, f(6)?, f(7)?, f(8)?);
    let num = u32_at(b, num_sig_off as usize)?;
    if num == 0 || sig_size != num.saturating_mul(SIGNATURE_BYTES as u32) {
        return Err(format!(
            "its {num} signatures take {sig_size} bytes, not {SIGNATURE_BYTES} each (the RSA-3K signatures of GA10x \
             and AD10x)"
        ));
    }
    let patch_sig = u32_at(b, patch_sig_off as usize)?;
    if patch_sig != 0 {
        return Err(format!("its production signatures start at index {patch_sig}, not 0"));
    }
    let sigs = &b[range(b, sig_off, sig_size, "signatures")?];
    if meta_size as usize != META_BYTES || (load_size as usize) < LOAD_HEADER_BYTES {
        return Err(format!("its metadata ({meta_size} bytes) or load header ({load_size} bytes) has the wrong size"));
    }
    let m = |k: usize| u32_at(b, meta_off as usize + 4 * k);
    let l = |k: usize| u32_at(b, load_off as usize + 4 * k);
    if l(4)? != 1 {
        return Err(format!("its load header names {} applications, not one", l(4)?));
    }
    let load = LoadHeader {
        os_code_offset: l(0)?,
        os_code_size: l(1)?,
        os_data_offset: l(2)?,
        os_data_size: l(3)?,
        app_offset: l(5)?,
        app_size: l(6)?,
        app_data_offset: l(7)?,
        app_data_size: l(8)?,
    };
    let patch_loc = u32_at(b, patch_loc_off as usize)?;
    range(image, load.app_offset, load.app_size, "secure code")?;
    let dmem = range(image, load.os_data_offset, load.os_data_size, "data")?;
    let sig = range(image, patch_loc, SIGNATURE_BYTES as u32, "signature's place")?;
    if sig.start < dmem.start || sig.end > dmem.end {
        return Err(format!("its signature's place {patch_loc:#x} is not inside its data"));
    }
    if [load.app_offset, load.app_size, load.os_data_offset].iter().any(|v| !v.is_multiple_of(256)) {
        return Err(
            "its secure code or data does not start on a 256-byte block, or its code is not whole blocks".into()
        );
    }
    Ok(Booter {
        image: image.to_vec(),
        signatures: sigs.chunks(SIGNATURE_BYTES).map(<[u8]>::to_vec).collect(),
        patch_loc,
        fuse_ver: m(0)?,
        engine_id_mask: m(1)?,
        ucode_id: m(2)?,
        load,
    })
}

/// Parses `bootloader-570.144.bin` (docs/nvidia-facts.md, "The falcons" 6.2).
pub fn parse_bootloader(b: &[u8]) -> Result<Bootloader, String> {
    let (data, desc) = bin_data(b)?;
    let desc = desc as usize;
    if data.start < desc + RISCV_DESC_MIN_BYTES {
        return Err(format!("its image at {:#x} overlaps its descriptor at {desc:#x}", data.start));
    }
    let f = |k: usize| u32_at(b, desc + 4 * k);
    let image = &b[data];
    let (manifest, data_off, code_off) = (f(8)?, f(10)?, f(12)?);
    for (v, n, what) in
        [(manifest, f(9)?, "manifest"), (data_off, f(11)?, "monitor data"), (code_off, f(13)?, "monitor code")]
    {
        range(image, v, n, what)?;
    }
    Ok(Bootloader {
        image: image.to_vec(),
        app_version: f(7)?,
        manifest_offset: manifest,
        code_offset: code_off,
        data_offset: data_off,
    })
}

/// Parses `gsp-570.144.bin`: the ELF64's `.fwimage` and `signature` sections.
pub fn parse_gsp(b: &[u8], signature: &str) -> Result<GspRm, String> {
    use object::{Object, ObjectSection};
    let elf = object::read::elf::ElfFile64::<object::Endianness>::parse(b)
        .map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let section = |name: &str| -> Result<Vec<u8>, String> {
        let s = elf.section_by_name(name).ok_or_else(|| format!("it has no {name} section"))?;
        let d = s.data().map_err(|e| format!("its {name} section: {e}"))?;
        if d.is_empty() {
            return Err(format!("its {name} section is empty"));
        }
        Ok(d.to_vec())
    };
    Ok(GspRm { image: section(".fwimage")?, signature: section(signature)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_linux_firmware() {
        let ga104 = Chip { arch: Arch::Ampere, id: 0x174, name: "GA104" };
        assert_eq!(names(chip_dir(&ga104).expect("known"))[2], "nvidia/ga102/gsp/gsp-570.144.bin");
        let ad107 = Chip { arch: Arch::Ada, id: 0x197, name: "AD107" };
        assert_eq!(names(chip_dir(&ad107).expect("known"))[0], "nvidia/ad102/gsp/booter_load-570.144.bin");
        assert_eq!(chip_dir(&Chip { arch: Arch::Ampere, id: 0x170, name: "GA100" }), None);
    }

    #[test]
    fn missing_files_are_named_with_where_to_get_them() {
        let root = std::env::temp_dir().join(format!("tk-nvfw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let ga102 = Chip { arch: Arch::Ampere, id: 0x172, name: "GA102" };
        let e = NvFirmware::load(&root, &ga102).expect_err("missing").to_string();
        for f in ["booter_load-570.144.bin", "bootloader-570.144.bin", "nvidia/ga102/gsp/gsp-570.144.bin"] {
            assert!(e.contains(f), "{e}");
        }
        assert!(e.contains("TK_FIRMWARE_DIR") && e.contains("linux-firmware"), "{e}");
        std::fs::create_dir_all(root.join("nvidia/ga102/gsp")).expect("dir");
        std::fs::write(root.join("nvidia/ga102/gsp/booter_load-570.144.bin"), b"junk").expect("write");
        let e = NvFirmware::load(&root, &ga102).expect_err("still missing").to_string();
        assert!(!e.contains("booter_load") && e.contains("bootloader-570.144.bin"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn short_and_foreign_files_are_refused() {
        assert!(parse_booter(&[]).is_err_and(|e| e.contains("ends")));
        assert!(parse_booter(&[0x7f, b'E', b'L', b'F', 0, 0, 0, 0]).is_err_and(|e| e.contains("magic is 0x464c457f")));
        assert!(parse_bootloader(&[0xde, 0x10, 0, 0]).is_err_and(|e| e.contains("ends")));
        assert!(parse_gsp(b"\x10\xde", ".fwsignature_ga10x").is_err_and(|e| e.contains("ELF")));
    }
}
