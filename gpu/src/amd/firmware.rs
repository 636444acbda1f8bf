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
