//! The firmware parser on real blobs: linux-firmware's RDNA3 files (gc 11.x, psp 13.x, smu 13.x,
//! sdma 6.x), which scripts/setup fetches into .tools/linux-firmware (Debian's
//! firmware-amd-graphics). Missing there, the test fails in CI (`CI=true`) and is skipped, saying
//! why, elsewhere.

use std::path::PathBuf;
use tk_gpu::amd::discovery;
use tk_gpu::amd::ucode::{self, PspKind};

fn dir() -> Option<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.tools/linux-firmware");
    if d.join("amdgpu").is_dir() {
        return Some(d);
    }
    let msg = format!("{} is missing: run scripts/setup", d.display());
    assert!(std::env::var("CI").map_or(true, |v| v != "true"), "{msg}");
    eprintln!("skipping the linux-firmware tests: {msg}");
    None
}

#[test]
fn every_rdna3_blob_of_linux_firmware_parses() {
    let Some(d) = dir() else { return };
    let mut n = 0;
    for e in std::fs::read_dir(d.join("amdgpu")).expect("amdgpu/") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if !["gc_11_", "psp_13_", "smu_13_", "sdma_6_"].iter().any(|p| name.starts_with(p)) || !name.ends_with(".bin") {
            continue;
        }
        let bytes = std::fs::read(e.path()).expect("read");
        let blob = ucode::parse(&name, &bytes).unwrap_or_else(|err| panic!("{err}"));
        assert!(blob.header.ucode_size > 0, "{name}");
        n += 1;
    }
    assert!(n >= 20, "only {n} RDNA3 blobs");
}

#[test]
fn navi31s_files_are_there_and_its_psp_blob_has_the_bootloader_components() {
    let Some(d) = dir() else { return };
    // The names IP discovery derives for Navi 31 are linux-firmware's.
    let names = discovery::navi31().firmware().expect("names");
    for n in &names {
        assert!(d.join("amdgpu").join(n).is_file(), "linux-firmware has no amdgpu/{n}");
    }
    assert!(tk_gpu::amd::firmware::locate(&d, 0x744c).is_ok());
    let bytes = std::fs::read(d.join("amdgpu/psp_13_0_0_sos.bin")).expect("sos");
    let blob = ucode::parse("psp_13_0_0_sos.bin", &bytes).expect("parses");
    assert_eq!(blob.header.ip_version, (13, 0));
    for k in [PspKind::Sos, PspKind::SysDrv, PspKind::Kdb, PspKind::Toc, PspKind::Spl] {
        let c = blob.component(&bytes, k).unwrap_or_else(|| panic!("no {k} component"));
        assert!(!c.is_empty(), "{k}");
    }
    // The MEC microcode's CRC field is zlib's CRC-32 of what follows the common header.
    let mec = std::fs::read(d.join("amdgpu/gc_11_0_0_mec.bin")).expect("mec");
    let m = ucode::parse("gc_11_0_0_mec.bin", &mec).expect("parses");
    assert_eq!(m.header.ip_version, (11, 0));
    assert!(m.crc_matches);
}
