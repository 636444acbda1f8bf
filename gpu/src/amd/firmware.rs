//! The first step of bringing up a cold GPU: finding its firmware. The blobs come from a
//! linux-firmware tree: `TK_FIRMWARE_DIR`, else `/lib/firmware`, in its `amdgpu/` directory.
//! A missing file is an error that names it and says where to get it.

use std::path::{Path, PathBuf};

/// The firmware files a GPU needs, by PCI device id. Names as in linux-firmware's `amdgpu/`
/// directory (Navi 31: GC 11.0.0, PSP and SMU 13.0.0, SDMA 6.0.0; ../shared/notes/tinygpu.md).
pub fn needed(device_id: u16) -> Option<&'static [&'static str]> {
    const NAVI31: [&str; 9] = [
        "psp_13_0_0_sos.bin",
        "psp_13_0_0_ta.bin",
        "smu_13_0_0.bin",
        "gc_11_0_0_imu.bin",
        "gc_11_0_0_rlc.bin",
        "gc_11_0_0_mec.bin",
        "gc_11_0_0_me.bin",
        "gc_11_0_0_pfp.bin",
        "sdma_6_0_0.bin",
    ];
    match device_id {
        0x744c | 0x7448 => Some(&NAVI31),
        _ => None,
    }
}

/// The linux-firmware directory tk reads.
pub fn dir() -> PathBuf {
    std::env::var_os("TK_FIRMWARE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/lib/firmware"))
}

/// Finds every blob the GPU needs under `root`, or says which are missing and how to get them.
pub fn locate(root: &Path, device_id: u16) -> Result<Vec<PathBuf>, String> {
    let names = needed(device_id).ok_or_else(|| {
        format!("tk does not know the firmware of AMD GPU 1002:{device_id:04x} (it knows Navi 31, 1002:744c)")
    })?;
    let paths: Vec<PathBuf> = names.iter().map(|n| root.join("amdgpu").join(n)).collect();
    let missing: Vec<String> = paths.iter().filter(|p| !p.is_file()).map(|p| p.display().to_string()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "missing GPU firmware: {}. Install linux-firmware (Debian: firmware-amd-graphics) or point \
             TK_FIRMWARE_DIR at a copy of https://git.kernel.org/pub/scm/linux/kernel/git/firmware/linux-firmware.git",
            missing.join(", ")
        ));
    }
    Ok(paths)
}

/// One firmware file, read and checked.
#[derive(Clone, Debug)]
pub struct Firmware {
    /// Its name in linux-firmware's `amdgpu/` directory.
    pub name: String,
    pub bytes: Vec<u8>,
    pub blob: super::ucode::Blob,
}

impl Firmware {
    /// The microcode: the bytes the header's ucode offset and size name.
    pub fn ucode(&self) -> &[u8] {
        let h = &self.blob.header;
        // `ucode::parse` checked that the range lies in the blob.
        self.bytes.get(h.ucode_offset as usize..(h.ucode_offset + h.ucode_size) as usize).unwrap_or(&[])
    }
}

/// The firmware a bring-up loads: every file IP discovery names, parsed and checked.
#[derive(Clone, Debug, Default)]
pub struct FirmwareSet {
    pub files: Vec<Firmware>,
    /// Where the files came from (a directory, or "the simulated GPU's synthetic firmware").
    pub origin: String,
}

/// Why the firmware could not be had: missing files (named, with where to get them) or a file
/// that is not what its name says.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FirmwareError {
    #[error("{0}")]
    Missing(String),
    #[error("{0}")]
    Bad(String),
}

impl FirmwareSet {
    /// Reads `names` from `root`/amdgpu. Every missing file is named in one error, with its path
    /// and where to get it.
    pub fn load(root: &Path, names: &[String]) -> Result<FirmwareSet, FirmwareError> {
        let dir = root.join("amdgpu");
        let missing: Vec<String> =
            names.iter().filter(|n| !dir.join(n).is_file()).map(|n| dir.join(n).display().to_string()).collect();
        if !missing.is_empty() {
            return Err(FirmwareError::Missing(format!(
                "{} (linux-firmware's amdgpu/ directory has {}). Install linux-firmware (Debian: \
                 firmware-amd-graphics) or point TK_FIRMWARE_DIR at a copy of \
                 https://git.kernel.org/pub/scm/linux/kernel/git/firmware/linux-firmware.git",
                missing.join(", "),
                if missing.len() == 1 { "it" } else { "them" }
            )));
        }
        let mut files = Vec::new();
        for n in names {
            let path = dir.join(n);
            let bytes = std::fs::read(&path)
                .map_err(|e| FirmwareError::Bad(format!("reading GPU firmware {}: {e}", path.display())))?;
            files.push((n.clone(), bytes));
        }
        FirmwareSet::from_files(files, &root.display().to_string())
    }

    /// Checks files already in memory (`(name, bytes)`), such as a simulated GPU's.
    pub fn from_files(files: Vec<(String, Vec<u8>)>, origin: &str) -> Result<FirmwareSet, FirmwareError> {
        let mut out = Vec::new();
        for (name, bytes) in files {
            let blob = super::ucode::parse(&name, &bytes).map_err(|e| FirmwareError::Bad(e.to_string()))?;
            out.push(Firmware { name, bytes, blob });
        }
        Ok(FirmwareSet { files: out, origin: origin.to_string() })
    }

    /// The file whose name ends with `suffix` (`"_mec.bin"`, `"_sos.bin"`), if any.
    pub fn find(&self, suffix: &str) -> Option<&Firmware> {
        self.files.iter().find(|f| f.name.ends_with(suffix))
    }

    /// Bytes in all.
    pub fn bytes(&self) -> usize {
        self.files.iter().map(|f| f.bytes.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_firmware_is_named_and_present_firmware_is_found() {
        let root = std::env::temp_dir().join(format!("tk-fw-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("amdgpu")).expect("dir");
        let e = locate(&root, 0x744c).expect_err("nothing there");
        assert!(e.contains("psp_13_0_0_sos.bin") && e.contains("TK_FIRMWARE_DIR"), "{e}");
        for n in needed(0x744c).expect("navi 31") {
            std::fs::write(root.join("amdgpu").join(n), b"blob").expect("write");
        }
        assert_eq!(locate(&root, 0x744c).expect("found").len(), 9);
        std::fs::remove_file(root.join("amdgpu/smu_13_0_0.bin")).expect("rm");
        let e = locate(&root, 0x744c).expect_err("one missing");
        assert!(e.contains("smu_13_0_0.bin") && !e.contains("psp_13_0_0_sos.bin"), "{e}");
        assert!(locate(&root, 0x1234).expect_err("unknown").contains("does not know"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
