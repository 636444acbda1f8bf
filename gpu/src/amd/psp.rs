//! The PSP (the platform security processor, MP0) as the driver talks to it, and the firmware
//! pieces it loads: the bootloader handshake (C2PMSG_35/36), the KM ring (C2PMSG_64/67/69-71)
//! with its 64-byte frames and 1024-byte command buffers, and the commands tk sends (LOAD_TOC,
//! SETUP_TMR, LOAD_IP_FW, AUTOLOAD_RLC). The simulated GPU implements the other side with the
//! same constants.
//!
//! Facts from public sources: Linux's drivers/gpu/drm/amd/amdgpu/psp_v13_0.c (handshake, ring
//! creation), amdgpu_psp.h (`psp_bootloader_cmd`, PSP_TMR_SIZE, the response masks),
//! psp_gfx_if.h (`psp_gfx_rb_frame`, `psp_gfx_cmd_resp`, `psp_gfx_cmd_id`, `psp_gfx_fw_type`),
//! amdgpu_psp.c (the order of the steps) and amdgpu_ucode.h (the firmware headers the pieces are
//! cut by).

use super::firmware::{Firmware, FirmwareSet};
use super::ucode::PspKind;

/// C2PMSG_35 reads this when the bootloader is ready for a command (and exactly this on
/// success: error bits sit in bits 0..7).
pub const BL_READY: u32 = 0x8000_0000;
/// Bootloader commands (`psp_bootloader_cmd`), written to C2PMSG_35.
pub const BL_LOAD_SYSDRV: u32 = 0x10000;
pub const BL_LOAD_SOSDRV: u32 = 0x20000;
pub const BL_LOAD_KEY_DATABASE: u32 = 0x80000;
pub const BL_LOAD_SOCDRV: u32 = 0xb0000;
pub const BL_LOAD_DBGDRV: u32 = 0xc0000;
pub const BL_LOAD_INTFDRV: u32 = 0xd0000;
pub const BL_LOAD_RASDRV: u32 = 0xe0000;
/// On PSP 13 this step sends the key database again (psp_v13_0.c `load_spl` passes the KDB).
pub const BL_LOAD_TOS_SPL_TABLE: u32 = 0x1000_0000;
/// The bootloader's buffer: 1 MiB, 1 MiB aligned; C2PMSG_36 takes its address >> 20.
pub const BL_BUFFER: u64 = 1 << 20;

/// C2PMSG_64 commands (`psp_gfx_crtl_cmd_id`): create the KM ring, destroy the rings.
pub const RING_CREATE_KM: u32 = 2 << 16;
pub const RING_DESTROY: u32 = 0x30000;
/// C2PMSG_64's response: bit 31 set, status (bits 0..15) zero.
pub const RING_RESPONSE_MASK: u32 = 0x8000_ffff;
/// The KM ring's size in bytes, and a frame's.
pub const RING_BYTES: u32 = 0x1000;
pub const FRAME_BYTES: u32 = 64;
/// A command buffer's size (`psp_gfx_cmd_resp`).
pub const CMD_BYTES: usize = 1024;

/// Frame fields (byte offsets in `psp_gfx_rb_frame`).
pub const FRAME_CMD_LO: usize = 0;
pub const FRAME_CMD_HI: usize = 4;
pub const FRAME_FENCE_LO: usize = 12;
pub const FRAME_FENCE_HI: usize = 16;
pub const FRAME_FENCE_VALUE: usize = 20;
/// Command buffer fields (byte offsets in `psp_gfx_cmd_resp`): the id, the body (its words at
/// 28, 32, 36, 40), the response's status and the TMR size LOAD_TOC answers with.
pub const CMD_ID: usize = 8;
pub const CMD_BODY: usize = 28;
pub const RESP_STATUS: usize = 864;
pub const RESP_TMR_SIZE: usize = 880;

/// Command ids (`psp_gfx_cmd_id`).
pub const CMD_SETUP_TMR: u32 = 0x05;
pub const CMD_LOAD_IP_FW: u32 = 0x06;
pub const CMD_LOAD_TOC: u32 = 0x20;
pub const CMD_AUTOLOAD_RLC: u32 = 0x21;
/// The status of a command the PSP does not know (`PSP_ERR_UNKNOWN_COMMAND`).
pub const ERR_UNKNOWN_COMMAND: u32 = 0x100;
/// The TMR's size when the firmware has no TOC, and its alignment (amdgpu_psp.h).
pub const TMR_DEFAULT: u32 = 0x40_0000;
pub const TMR_ALIGN: u64 = 1 << 20;

/// Firmware types of LOAD_IP_FW (`psp_gfx_fw_type`).
pub const FW_RLC_V: u32 = 7;
pub const FW_RLC_G: u32 = 8;
pub const FW_RLC_GPM_MEM: u32 = 20;
pub const FW_RLC_SRM_MEM: u32 = 21;
pub const FW_RLC_SRM_CNTL: u32 = 22;
pub const FW_RLC_P: u32 = 25;
pub const FW_RLC_IRAM: u32 = 26;
pub const FW_RLC_DRAM_BOOT: u32 = 48;
pub const FW_SMU: u32 = 18;
pub const FW_IMU_I: u32 = 68;
pub const FW_IMU_D: u32 = 69;
pub const FW_SDMA_TH0: u32 = 71;
pub const FW_SDMA_TH1: u32 = 72;
pub const FW_RS64_PFP: u32 = 87;
pub const FW_RS64_ME: u32 = 88;
pub const FW_RS64_MEC: u32 = 89;
pub const FW_RS64_PFP_P0_STACK: u32 = 90;
pub const FW_RS64_PFP_P1_STACK: u32 = 91;
pub const FW_RS64_ME_P0_STACK: u32 = 92;
pub const FW_RS64_ME_P1_STACK: u32 = 93;
pub const FW_RS64_MEC_P0_STACK: u32 = 94;
pub const FW_RS64_MEC_P3_STACK: u32 = 97;

/// A firmware type's name, for messages.
pub fn fw_name(t: u32) -> String {
    match t {
        FW_RLC_G => "RLC_G".into(),
        FW_RLC_V => "RLC_V".into(),
        FW_RLC_P => "RLC_P".into(),
        FW_RLC_GPM_MEM => "RLC_RESTORE_LIST_GPM_MEM".into(),
        FW_RLC_SRM_MEM => "RLC_RESTORE_LIST_SRM_MEM".into(),
        FW_RLC_SRM_CNTL => "RLC_RESTORE_LIST_SRM_CNTL".into(),
        FW_RLC_IRAM => "RLC_IRAM".into(),
        FW_RLC_DRAM_BOOT => "RLC_DRAM_BOOT".into(),
        FW_SMU => "SMU".into(),
        FW_IMU_I => "IMU_I".into(),
        FW_IMU_D => "IMU_D".into(),
        FW_SDMA_TH0 => "SDMA_UCODE_TH0".into(),
        FW_SDMA_TH1 => "SDMA_UCODE_TH1".into(),
        FW_RS64_PFP => "RS64_PFP".into(),
        FW_RS64_ME => "RS64_ME".into(),
        FW_RS64_MEC => "RS64_MEC".into(),
        FW_RS64_PFP_P0_STACK | FW_RS64_PFP_P1_STACK => format!("RS64_PFP_P{}_STACK", t - FW_RS64_PFP_P0_STACK),
        FW_RS64_ME_P0_STACK | FW_RS64_ME_P1_STACK => format!("RS64_ME_P{}_STACK", t - FW_RS64_ME_P0_STACK),
        FW_RS64_MEC_P0_STACK..=FW_RS64_MEC_P3_STACK => format!("RS64_MEC_P{}_STACK", t - FW_RS64_MEC_P0_STACK),
        t => format!("firmware type {t}"),
    }
}

/// One bootloader step: the command and the sOS blob's component it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootloaderStep {
    pub command: u32,
    pub kind: PspKind,
    pub name: &'static str,
}

/// The bootloader steps for an sOS blob, in Linux's order (`psp_hw_start`): the key database,
/// the SPL step (which sends the key database again on PSP 13, only when the blob has an SPL),
/// the system driver, the SOC, interface, debug and RAS drivers, then the sOS. Components the
/// blob lacks are skipped.
pub fn bootloader_steps(sos: &Firmware) -> Vec<BootloaderStep> {
    let has = |k| sos.blob.components.iter().any(|c| c.kind == k);
    let mut v = Vec::new();
    let mut step = |command, kind, name, when: bool| {
        if when {
            v.push(BootloaderStep { command, kind, name });
        }
    };
    step(BL_LOAD_KEY_DATABASE, PspKind::Kdb, "KDB", has(PspKind::Kdb));
    step(BL_LOAD_TOS_SPL_TABLE, PspKind::Kdb, "SPL (the key database again)", has(PspKind::Spl) && has(PspKind::Kdb));
    step(BL_LOAD_SYSDRV, PspKind::SysDrv, "SYS_DRV", has(PspKind::SysDrv));
    step(BL_LOAD_SOCDRV, PspKind::SocDrv, "SOC_DRV", has(PspKind::SocDrv));
    step(BL_LOAD_INTFDRV, PspKind::IntfDrv, "INTF_DRV", has(PspKind::IntfDrv));
    step(BL_LOAD_DBGDRV, PspKind::DbgDrv, "DBG_DRV", has(PspKind::DbgDrv));
    step(BL_LOAD_RASDRV, PspKind::RasDrv, "RAS_DRV", has(PspKind::RasDrv));
    step(BL_LOAD_SOSDRV, PspKind::Sos, "SOS", has(PspKind::Sos));
    v
}

/// One LOAD_IP_FW: the firmware type and the bytes of its file it sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    pub fw_type: u32,
    /// The file it is cut from.
    pub file: String,
    pub offset: usize,
    pub size: usize,
}

impl Piece {
    /// Its bytes in `set` (empty when the file is not there).
    pub fn bytes<'s>(&self, set: &'s FirmwareSet) -> &'s [u8] {
        set.files
            .iter()
            .find(|f| f.name == self.file)
            .and_then(|f| f.bytes.get(self.offset..self.offset.checked_add(self.size)?))
            .unwrap_or(&[])
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The pieces of a firmware file, cut as its header says, with their types:
/// - SMU (`smu_*.bin`): the microcode, as SMU;
/// - SDMA (`sdma_*.bin`, `sdma_firmware_header_v2_0`: ctx ucode at the common ucode offset with
///   `ctx_ucode_size_bytes` at byte 36, ctl ucode at `ctl_ucode_offset` (48) with
///   `ctl_ucode_size_bytes` (52)): TH1 then TH0, as tinygrad's am driver sends them;
/// - PFP, ME, MEC (`gfx_firmware_header_v2_0`: `ucode_size_bytes` 36, `data_size_bytes` 44,
///   `data_offset_bytes` 48): the RS64 code at the common header's ucode offset (as Linux's
///   `amdgpu_ucode_init_single_fw` takes it), then the data once per stack (2, 2 and 4 pipes);
/// - IMU (`imu_firmware_header_v1_0`: IRAM size at 32, DRAM size at 40): IMU_I at the ucode
///   offset, IMU_D right after it (Linux ignores the header's own offset fields, which count from
///   the microcode);
/// - RLC (`rlc_firmware_header_v2_1`..`v2_3`, offsets from the start of the file): the
///   save/restore lists (SRM_CNTL 116/120, GPM_MEM 132/136, SRM_MEM 148/152), IRAM (156/160)
///   and DRAM (164/168) from version 2.2, RLC_P (180/184) and RLC_V (196/200) in version 2.3,
///   and RLC_G (the common header's ucode) last; empty pieces are skipped, as Linux does.
///
/// A size or offset outside the file is an error naming the field.
pub fn pieces(f: &Firmware) -> Result<Vec<Piece>, String> {
    let b = &f.bytes;
    let field = |at: usize, what: &str| -> Result<usize, String> {
        u32_at(b, at).map(|v| v as usize).ok_or_else(|| format!("{}: its header has no {what} (byte {at})", f.name))
    };
    let piece = |fw_type, offset: usize, size: usize| -> Result<Piece, String> {
        if offset.checked_add(size).is_none_or(|e| e > b.len()) || size == 0 {
            return Err(format!(
                "{}: the {} piece (bytes {offset}..{}) is empty or outside the {}-byte file",
                f.name,
                fw_name(fw_type),
                offset.saturating_add(size),
                b.len()
            ));
        }
        Ok(Piece { fw_type, file: f.name.clone(), offset, size })
    };
    let h = &f.blob.header;
    let (uo, us) = (h.ucode_offset as usize, h.ucode_size as usize);
    let name = f.name.as_str();
    let gfx_v2 = |code: u32, stacks: std::ops::RangeInclusive<u32>| -> Result<Vec<Piece>, String> {
        let mut v = vec![piece(code, uo, field(36, "ucode size")?)?];
        let (data_at, data_size) = (field(48, "data offset")?, field(44, "data size")?);
        for s in stacks {
            v.push(piece(s, data_at, data_size)?);
        }
        Ok(v)
    };
    if name.starts_with("smu_") {
        Ok(vec![piece(FW_SMU, uo, us)?])
    } else if name.starts_with("sdma_") {
        Ok(vec![
            piece(FW_SDMA_TH1, field(48, "ctl ucode offset")?, field(52, "ctl ucode size")?)?,
            piece(FW_SDMA_TH0, uo, field(36, "ctx ucode size")?)?,
        ])
    } else if name.ends_with("_pfp.bin") {
        gfx_v2(FW_RS64_PFP, FW_RS64_PFP_P0_STACK..=FW_RS64_PFP_P1_STACK)
    } else if name.ends_with("_me.bin") {
        gfx_v2(FW_RS64_ME, FW_RS64_ME_P0_STACK..=FW_RS64_ME_P1_STACK)
    } else if name.ends_with("_mec.bin") {
        gfx_v2(FW_RS64_MEC, FW_RS64_MEC_P0_STACK..=FW_RS64_MEC_P3_STACK)
    } else if name.ends_with("_imu.bin") {
        let iram = field(32, "IRAM size")?;
        let dram_at = uo.checked_add(iram).ok_or_else(|| format!("{}: its IRAM size overflows", f.name))?;
        Ok(vec![piece(FW_IMU_I, uo, iram)?, piece(FW_IMU_D, dram_at, field(40, "DRAM size")?)?])
    } else if name.ends_with("_rlc.bin") {
        let (major, minor) = h.header_version;
        if major != 2 || minor > 3 {
            return Err(format!("{}: RLC header version {major}.{minor}; tk reads 2.0 to 2.3", f.name));
        }
        let mut v = Vec::new();
        let mut optional = |fw_type, size_at: usize, offset_at: usize, when: bool| -> Result<(), String> {
            if when {
                let size = field(size_at, "piece size")?;
                if size > 0 {
                    v.push(piece(fw_type, field(offset_at, "piece offset")?, size)?);
                }
            }
            Ok(())
        };
        optional(FW_RLC_SRM_CNTL, 116, 120, minor >= 1)?;
        optional(FW_RLC_GPM_MEM, 132, 136, minor >= 1)?;
        optional(FW_RLC_SRM_MEM, 148, 152, minor >= 1)?;
        optional(FW_RLC_IRAM, 156, 160, minor >= 2)?;
        optional(FW_RLC_DRAM_BOOT, 164, 168, minor >= 2)?;
        optional(FW_RLC_P, 180, 184, minor == 3)?;
        optional(FW_RLC_V, 196, 200, minor == 3)?;
        v.push(piece(FW_RLC_G, uo, us)?);
        Ok(v)
    } else {
        Ok(Vec::new())
    }
}

/// The order of Linux's `enum AMDGPU_UCODE_ID` (amdgpu_ucode.h) for the pieces tk loads:
/// amdgpu_psp.c's psp_load_non_psp_fw sends them in that order, and RLC_G last (AUTOLOAD_RLC
/// follows it).
pub const LINUX_ORDER: [u32; 23] = [
    FW_SDMA_TH0,
    FW_SDMA_TH1,
    FW_RS64_PFP,
    FW_RS64_ME,
    FW_RS64_MEC,
    FW_RS64_PFP_P0_STACK,
    FW_RS64_PFP_P1_STACK,
    FW_RS64_ME_P0_STACK,
    FW_RS64_ME_P1_STACK,
    FW_RS64_MEC_P0_STACK,
    FW_RS64_MEC_P0_STACK + 1,
    FW_RS64_MEC_P0_STACK + 2,
    FW_RS64_MEC_P3_STACK,
    FW_IMU_I,
    FW_IMU_D,
    FW_RLC_SRM_CNTL,
    FW_RLC_GPM_MEM,
    FW_RLC_SRM_MEM,
    FW_RLC_IRAM,
    FW_RLC_DRAM_BOOT,
    FW_RLC_P,
    FW_RLC_V,
    FW_RLC_G,
];

/// Every LOAD_IP_FW of a bring-up, in the order tk sends them: the SMU's first (before
/// SETUP_TMR, as Linux's psp_hw_start does on MP0 13.0.0, whose PMFW manages power), then the
/// others in Linux's `AMDGPU_UCODE_ID` order, RLC_G last (after which the driver sends
/// AUTOLOAD_RLC).
pub fn load_order(set: &FirmwareSet) -> Result<Vec<Piece>, String> {
    let mut v = Vec::new();
    for suffix in ["smu_", "sdma_", "_pfp.bin", "_me.bin", "_mec.bin", "_imu.bin", "_rlc.bin"] {
        let f = set
            .files
            .iter()
            .find(|f| if suffix.ends_with('_') { f.name.starts_with(suffix) } else { f.name.ends_with(suffix) })
            .ok_or_else(|| format!("the firmware set has no {suffix}* file"))?;
        v.extend(pieces(f)?);
    }
    // The SMU's stays first; every other type is in LINUX_ORDER.
    v.sort_by_key(|p| {
        if p.fw_type == FW_SMU {
            0
        } else {
            1 + LINUX_ORDER.iter().position(|t| *t == p.fw_type).unwrap_or(LINUX_ORDER.len())
        }
    });
    Ok(v)
}

/// The MEC's entry point from its `gfx_firmware_header_v2_0` (`ucode_start_addr_lo` at byte 52,
/// `_hi` at 56): the values of CP_MEC_RS64_PRGRM_CNTR_START and _HI (gfx_v11_0.c: the 64-bit
/// byte address >> 2).
pub fn mec_entry(mec: &Firmware) -> Result<(u32, u32), String> {
    let lo = u32_at(&mec.bytes, 52).ok_or_else(|| format!("{}: no ucode_start_addr_lo", mec.name))?;
    let hi = u32_at(&mec.bytes, 56).ok_or_else(|| format!("{}: no ucode_start_addr_hi", mec.name))?;
    Ok(((lo >> 2) | (hi << 30), hi >> 2))
}
