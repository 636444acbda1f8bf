//! The register offsets, field values and PM4 opcodes the AMD driver and the simulated GPU share.
//! Every value carries its public source. GC registers are dword offsets in the GC block
//! (BASE_IDX 0), which starts at [`GC_BASE`] dwords into the register BAR on gfx1100.

/// A register the driver writes and the simulated GPU accepts.
#[derive(Clone, Copy, Debug)]
pub struct Reg {
    pub name: &'static str,
    /// Dword offset within the GC block.
    pub offset: u32,
    pub source: &'static str,
}

const GC11: &str = "Linux drivers/gpu/drm/amd/include/asic_reg/gc/gc_11_0_0_offset.h";
const MESA: &str = "Mesa src/amd/common/sid.h (R_00Bxxx: byte address in the SH register space)";
const SOC15D: &str = "Linux drivers/gpu/drm/amd/amdgpu/soc15d.h (PACKET3_*)";
const VMH: &str = "Linux drivers/gpu/drm/amd/amdgpu/amdgpu_vm.h (AMDGPU_PTE_*)";

/// The GC block's dword offset in the register BAR on gfx1100 (from IP discovery on Navi 31;
/// source: tk's notes, ../shared/notes/tinygpu.md, and public bring-up code). Real bring-up must
/// read it from the IP discovery table.
pub const GC_BASE: u32 = 0x1260;

pub const CP_HQD_ACTIVE: Reg = Reg { name: "CP_HQD_ACTIVE", offset: 0x1fab, source: GC11 };
pub const CP_HQD_VMID: Reg = Reg { name: "CP_HQD_VMID", offset: 0x1fac, source: GC11 };
pub const CP_HQD_PQ_BASE: Reg = Reg { name: "CP_HQD_PQ_BASE", offset: 0x1fb1, source: GC11 };
pub const CP_HQD_PQ_BASE_HI: Reg = Reg { name: "CP_HQD_PQ_BASE_HI", offset: 0x1fb2, source: GC11 };
pub const CP_HQD_PQ_RPTR: Reg = Reg { name: "CP_HQD_PQ_RPTR", offset: 0x1fb3, source: GC11 };
pub const CP_HQD_PQ_DOORBELL_CONTROL: Reg = Reg { name: "CP_HQD_PQ_DOORBELL_CONTROL", offset: 0x1fb8, source: GC11 };
pub const CP_HQD_PQ_CONTROL: Reg = Reg { name: "CP_HQD_PQ_CONTROL", offset: 0x1fba, source: GC11 };
pub const GCVM_CONTEXT0_CNTL: Reg = Reg { name: "GCVM_CONTEXT0_CNTL", offset: 0x1624, source: GC11 };
pub const GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32: Reg =
    Reg { name: "GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32", offset: 0x168f, source: GC11 };
pub const GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32: Reg =
    Reg { name: "GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32", offset: 0x1690, source: GC11 };

/// The registers the driver programs directly (the simulated GPU rejects writes to others).
pub const MMIO: [Reg; 10] = [
    CP_HQD_ACTIVE,
    CP_HQD_VMID,
    CP_HQD_PQ_BASE,
    CP_HQD_PQ_BASE_HI,
    CP_HQD_PQ_RPTR,
    CP_HQD_PQ_DOORBELL_CONTROL,
    CP_HQD_PQ_CONTROL,
    GCVM_CONTEXT0_CNTL,
    GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32,
    GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32,
];

/// The byte offset of a GC register in the register BAR.
pub fn mmio_byte(r: Reg) -> u32 {
    (GC_BASE + r.offset) * 4
}

/// CP_HQD_PQ_CONTROL.QUEUE_SIZE: the ring holds 2^(QUEUE_SIZE + 1) dwords (source: GC11's
/// gc_11_0_0_sh_mask.h, CP_HQD_PQ_CONTROL__QUEUE_SIZE_MASK 0x3f).
pub const PQ_CONTROL_QUEUE_SIZE_MASK: u32 = 0x3f;
/// CP_HQD_PQ_DOORBELL_CONTROL: DOORBELL_OFFSET in bits 2..28 (a dword index into the doorbell
/// BAR), DOORBELL_EN bit 30 (gc_11_0_0_sh_mask.h).
pub const DOORBELL_OFFSET_SHIFT: u32 = 2;
pub const DOORBELL_OFFSET_MASK: u32 = 0x0fff_fffc;
pub const DOORBELL_EN: u32 = 1 << 30;
/// GCVM_CONTEXT0_CNTL: ENABLE_CONTEXT bit 0, PAGE_TABLE_DEPTH bits 1..2 (gc_11_0_0_sh_mask.h).
pub const VM_CONTEXT_ENABLE: u32 = 1;
pub const VM_PAGE_TABLE_DEPTH_SHIFT: u32 = 1;

/// SH registers, as byte addresses; SET_SH_REG takes (address - [`SH_REG_BASE`]) / 4.
pub const SH_REG_BASE: u32 = 0xB000;
pub const COMPUTE_START_X: u32 = 0xB810;
pub const COMPUTE_NUM_THREAD_X: u32 = 0xB81C;
pub const COMPUTE_PGM_LO: u32 = 0xB830;
pub const COMPUTE_PGM_RSRC1: u32 = 0xB848;
pub const COMPUTE_RESOURCE_LIMITS: u32 = 0xB854;
pub const COMPUTE_TMPRING_SIZE: u32 = 0xB860;
pub const COMPUTE_PGM_RSRC3: u32 = 0xB8A0;
pub const COMPUTE_USER_DATA_0: u32 = 0xB900;
/// Where each SH address above comes from.
pub const SH_SOURCE: &str = MESA;

/// COMPUTE_DISPATCH_INITIATOR bits (the last dword of DISPATCH_DIRECT; Mesa sid.h S_00B800_*).
pub const DISPATCH_COMPUTE_SHADER_EN: u32 = 1 << 0;
pub const DISPATCH_FORCE_START_AT_000: u32 = 1 << 2;
pub const DISPATCH_CS_W32_EN: u32 = 1 << 15;
/// COMPUTE_PGM_RSRC2.LDS_SIZE, bits 15..24, in 512-byte granules (Mesa sid.h S_00B84C_LDS_SIZE).
pub const RSRC2_LDS_SHIFT: u32 = 15;
pub const RSRC2_LDS_MASK: u32 = 0x1ff;
pub const LDS_GRANULE: u32 = 512;

/// PM4 type-3 opcodes.
pub const PKT3_NOP: u32 = 0x10;
pub const PKT3_DISPATCH_DIRECT: u32 = 0x15;
pub const PKT3_RELEASE_MEM: u32 = 0x49;
pub const PKT3_ACQUIRE_MEM: u32 = 0x58;
pub const PKT3_SET_SH_REG: u32 = 0x76;
pub const PKT3_DMA_DATA: u32 = 0x50;
pub const PKT3_SOURCE: &str = SOC15D;

/// Page-table entry bits.
pub const PTE_VALID: u64 = 1 << 0;
pub const PTE_SYSTEM: u64 = 1 << 1;
pub const PTE_SNOOPED: u64 = 1 << 2;
pub const PTE_EXECUTABLE: u64 = 1 << 4;
pub const PTE_READABLE: u64 = 1 << 5;
pub const PTE_WRITEABLE: u64 = 1 << 6;
/// The physical address bits of an entry (a 4 KiB-aligned address, bits 12..48).
pub const PTE_ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;
pub const PTE_SOURCE: &str = VMH;
