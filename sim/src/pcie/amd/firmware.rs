//! The simulated GPU's synthetic firmware: one blob per file IP discovery names, in the real
//! container formats (the common amdgpu header and each kind's own: the PSP component table,
//! `gfx_firmware_header_v2_0`, `sdma_firmware_header_v2_0`, `imu_firmware_header_v1_0`,
//! `rlc_firmware_header_v2_3`; Linux's amdgpu_ucode.h), filled with deterministic bytes that
//! differ per piece, so that a piece sent as the wrong type is caught. `amd:sim` boots with
//! these unless `TK_FIRMWARE_DIR` is set.

use super::super::filler;
use std::collections::HashMap;
use tk_gpu::amd::ucode::{self, PspKind};

/// The MEC's entry point in the synthetic blob (`ucode_start_addr_lo`/`_hi`).
pub const MEC_START: (u32, u32) = (0x3000, 0x7_0000);
/// The SMU firmware's version (its header's ucode version, what GetSmuVersion answers).
pub const SMU_VERSION: u32 = 0x004e_3f00;
/// The sOS component's version.
pub const SOS_VERSION: u32 = 0x0031_0025;

/// A blob: the common header (IP version, header version and size, ucode version), the header's
/// extra fields `(byte, value)`, the payload at byte 256, the CRC.
fn blob(
    ip: (u16, u16),
    header: (u16, u16),
    header_size: u32,
    version: u32,
    extra: &[(usize, u32)],
    payload: &[u8],
) -> Vec<u8> {
    let mut b = ucode::build(ip, version, false, &[], payload);
    b[4..8].copy_from_slice(&header_size.to_le_bytes());
    b[8..10].copy_from_slice(&header.0.to_le_bytes());
    b[10..12].copy_from_slice(&header.1.to_le_bytes());
    for &(at, v) in extra {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    ucode::seal(&mut b);
    b
}

/// The synthetic files for IP versions `psp`, `smu`, `gc` and `sdma` (as `13_0_0`), named as
/// linux-firmware names them.
pub fn synthetic(psp: &str, smu: &str, gc: &str, sdma: &str) -> Vec<(String, Vec<u8>)> {
    synthetic_with_pieces(psp, smu, gc, sdma).0
}

/// Firmware files (`(name, bytes)`) and the pieces a card takes, by LOAD_IP_FW type.
pub type Files = Vec<(String, Vec<u8>)>;
pub type Pieces = HashMap<u32, Vec<u8>>;

/// [`synthetic`], and the bytes the card takes for each LOAD_IP_FW firmware type, known from how
/// the blobs were made (not from reading their headers back, as the driver does).
pub fn synthetic_with_pieces(psp: &str, smu: &str, gc: &str, sdma: &str) -> (Files, Pieces) {
    use tk_gpu::amd::psp as t;
    let mut pieces = HashMap::new();
    let mut v = Vec::new();
    let sos_parts = [
        (PspKind::SysDrv, 0x0031_0025, filler("sys_drv", 3072)),
        (PspKind::Sos, SOS_VERSION, filler("sos", 4096)),
        (PspKind::Toc, 12, filler("toc", 512)),
        (PspKind::Kdb, 0x0400_0100, filler("kdb", 1024)),
        (PspKind::Spl, 0x0100_30c0, filler("spl", 256)),
    ];
    v.push((format!("psp_{psp}_sos.bin"), ucode::build((13, 0), SOS_VERSION, true, &sos_parts, &[])));
    v.push((format!("psp_{psp}_ta.bin"), ucode::build((13, 0), 1, true, &[], &[])));
    pieces.insert(t::FW_SMU, filler("smu", 8192));
    v.push((format!("smu_{smu}.bin"), ucode::build((13, 0), SMU_VERSION, false, &[], &filler("smu", 8192))));
    // IMU: IRAM then DRAM (imu_firmware_header_v1_0: sizes at 32 and 40, offsets counted from
    // the microcode at 36 and 44).
    let (iram, dram) = (filler("imu_i", 2048), filler("imu_d", 1024));
    pieces.insert(t::FW_IMU_I, iram.clone());
    pieces.insert(t::FW_IMU_D, dram.clone());
    v.push((
        format!("gc_{gc}_imu.bin"),
        blob((11, 0), (1, 0), 48, 1, &[(32, 2048), (36, 0), (40, 1024), (44, 2048)], &[iram, dram].concat()),
    ));
    // RLC v2.3: RLC_G first (the common ucode), then the lists, IRAM, DRAM, RLC_P and RLC_V at
    // absolute offsets.
    let rlc_g = filler("rlc_g", 2048);
    pieces.insert(t::FW_RLC_G, rlc_g.clone());
    let parts: [(&str, u32, usize, usize, usize); 7] = [
        ("srm_cntl", t::FW_RLC_SRM_CNTL, 0, 116, 120),
        ("gpm_mem", t::FW_RLC_GPM_MEM, 512, 132, 136),
        ("srm_mem", t::FW_RLC_SRM_MEM, 768, 148, 152),
        ("rlc_iram", t::FW_RLC_IRAM, 1536, 156, 160),
        ("rlc_dram", t::FW_RLC_DRAM_BOOT, 1024, 164, 168),
        ("rlc_p", t::FW_RLC_P, 512, 180, 184),
        ("rlc_v", t::FW_RLC_V, 768, 196, 200),
    ];
    let mut payload = rlc_g.clone();
    let mut extra = Vec::new();
    for (name, fw_type, size, size_at, off_at) in parts {
        extra.push((size_at, size as u32));
        extra.push((off_at, (256 + payload.len()) as u32));
        // An empty piece is not sent (Linux skips them).
        if size > 0 {
            pieces.insert(fw_type, filler(name, size));
        }
        payload.extend(filler(name, size));
    }
    let mut rlc = blob((11, 0), (2, 3), 204, 0x6e, &extra, &payload);
    // The common header's ucode is RLC_G alone.
    rlc[20..24].copy_from_slice(&(rlc_g.len() as u32).to_le_bytes());
    ucode::seal(&mut rlc);
    v.push((format!("gc_{gc}_rlc.bin"), rlc));
    // PFP, ME and MEC: gfx_firmware_header_v2_0 (ucode size 36, offset 40, data size 44,
    // offset 48, entry point 52/56).
    let gfx = [
        ("mec", 6144, 2048, t::FW_RS64_MEC, t::FW_RS64_MEC_P0_STACK..=t::FW_RS64_MEC_P3_STACK),
        ("me", 3072, 1024, t::FW_RS64_ME, t::FW_RS64_ME_P0_STACK..=t::FW_RS64_ME_P1_STACK),
        ("pfp", 4096, 1024, t::FW_RS64_PFP, t::FW_RS64_PFP_P0_STACK..=t::FW_RS64_PFP_P1_STACK),
    ];
    for (part, code, data, code_type, stacks) in gfx {
        pieces.insert(code_type, filler(&format!("{part}_code"), code));
        for s in stacks {
            pieces.insert(s, filler(&format!("{part}_data"), data));
        }
        let payload = [filler(&format!("{part}_code"), code), filler(&format!("{part}_data"), data)].concat();
        let extra = [
            (32, 0x1d),
            (36, code as u32),
            (40, 256),
            (44, data as u32),
            (48, 256 + code as u32),
            (52, MEC_START.0),
            (56, MEC_START.1),
        ];
        v.push((format!("gc_{gc}_{part}.bin"), blob((11, 0), (2, 0), 60, 0x1d, &extra, &payload)));
    }
    // SDMA: sdma_firmware_header_v2_0 (ctx ucode at the ucode offset, its size at 36; ctl ucode
    // offset 48 and size 52).
    let (ctx, ctl) = (filler("sdma_ctx", 2048), filler("sdma_ctl", 1024));
    pieces.insert(t::FW_SDMA_TH0, ctx.clone());
    pieces.insert(t::FW_SDMA_TH1, ctl.clone());
    v.push((
        format!("sdma_{sdma}.bin"),
        blob((6, 0), (2, 0), 64, 0x10, &[(36, 2048), (48, 256 + 2048), (52, 1024)], &[ctx, ctl].concat()),
    ));
    (v, pieces)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tk_gpu::amd::firmware::FirmwareSet;
    use tk_gpu::amd::psp;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// A damaged blob (bytes changed, or cut short) is an error naming the file when it is
        /// parsed or cut into pieces, never a panic.
        #[test]
        fn damaged_firmware_is_an_error_not_a_panic(
            file in 0usize..9,
            edits in proptest::collection::vec((0usize..20_000, any::<u8>()), 1..8),
            cut in proptest::option::of(0usize..20_000),
        ) {
            let mut files = synthetic("13_0_0", "13_0_0", "11_0_0", "6_0_0");
            let (name, b) = &mut files[file];
            for (at, v) in edits {
                // Mostly in the headers, where the offsets and sizes are.
                let at = if at % 2 == 0 { at % 256 } else { at };
                let n = b.len();
                if let Some(x) = b.get_mut(at % n) {
                    *x = v;
                }
            }
            if let Some(c) = cut {
                b.truncate(c % (b.len() + 1));
            }
            let name = name.clone();
            match FirmwareSet::from_files(files, "test") {
                Err(e) => prop_assert!(e.to_string().contains(&name), "{e}"),
                Ok(set) => {
                    if let Err(e) = psp::load_order(&set) {
                        prop_assert!(!e.is_empty());
                    }
                    if let Some(m) = set.find("_mec.bin") {
                        let _ = psp::mec_entry(m);
                    }
                    if let Some(s) = set.find("_sos.bin") {
                        for step in psp::bootloader_steps(s) {
                            let _ = s.blob.component(&s.bytes, step.kind);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_synthetic_firmware_parses_and_cuts_into_distinct_pieces() {
        let names = tk_gpu::amd::discovery::navi31().firmware().expect("names");
        let files = synthetic("13_0_0", "13_0_0", "11_0_0", "6_0_0");
        let got: Vec<&String> = files.iter().map(|(n, _)| n).collect();
        assert_eq!(got, names.iter().collect::<Vec<_>>());
        let set = FirmwareSet::from_files(files, "test").expect("parses");
        let order = psp::load_order(&set).expect("pieces");
        let types: Vec<u32> = order.iter().map(|p| p.fw_type).collect();
        assert_eq!(types[0], psp::FW_SMU);
        assert_eq!(types.last(), Some(&psp::FW_RLC_G));
        // The SMU's first, then Linux's AMDGPU_UCODE_ID order (TH0 before TH1, all RS64 code
        // before the stacks, IMU before the RLC's pieces).
        let linux: Vec<u32> = std::iter::once(psp::FW_SMU).chain(psp::LINUX_ORDER).collect();
        assert!(linux.windows(2).all(|w| w[0] != w[1]));
        let want: Vec<u32> = linux.iter().copied().filter(|t| types.contains(t)).collect();
        assert_eq!(types, want);
        // Every type once, except the stacks, which carry the same data.
        let mut distinct: Vec<&[u8]> = order.iter().map(|p| p.bytes(&set)).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), order.len() - 5, "{types:?}");
        assert!(set.files.iter().all(|f| f.blob.crc_matches));
        // The driver's reading of the headers gives what the generator put there.
        let (_, want) = synthetic_with_pieces("13_0_0", "13_0_0", "11_0_0", "6_0_0");
        assert_eq!(want.len(), order.len());
        for p in &order {
            assert_eq!(Some(p.bytes(&set)), want.get(&p.fw_type).map(Vec::as_slice), "{}", psp::fw_name(p.fw_type));
        }
        let mec = set.find("_mec.bin").expect("mec");
        assert_eq!(psp::mec_entry(mec), Ok(((MEC_START.0 >> 2) | (MEC_START.1 << 30), MEC_START.1 >> 2)));
    }
}
