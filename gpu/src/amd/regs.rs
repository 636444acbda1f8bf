//! The register offsets, field values and PM4 opcodes the AMD driver and the simulated GPU share.
//! Every value carries its public source. A register is a dword offset from one of its IP
//! block's base segments, which the IP discovery table gives ([`RegMap`] resolves them).

/// The IP block a register belongs to; its address is the block's base (segment `seg` of the
/// block in the IP discovery table) plus the register's offset, in dwords (Linux's
/// `SOC15_REG_OFFSET`: `reg_offset[ip][inst][BASE_IDX] + reg`, soc15_common.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Block {
    /// The graphics core (GC 11: CP, RLC, GCVM, and the SDMA 6 engines).
    Gc,
    /// MP0: the PSP's mailbox.
    Mp0,
    /// MP1: the SMU's mailbox.
    Mp1,
    /// NBIO: the bus interface (indirect VRAM access, doorbell aperture, VRAM size).
    Nbio,
}

impl Block {
    /// The block's hardware id in the IP discovery table.
    pub fn hw_id(self) -> u16 {
        use super::discovery::*;
        match self {
            Block::Gc => GC,
            Block::Mp0 => MP0,
            Block::Mp1 => MP1,
            Block::Nbio => NBIF,
        }
    }
}

/// A register the driver programs (the simulated GPU refuses the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Reg {
    pub name: &'static str,
    pub block: Block,
    /// The base segment (`*_BASE_IDX` in Linux's offset headers).
    pub seg: u8,
    /// Dword offset from the segment's base.
    pub offset: u32,
    pub source: &'static str,
}

const GC11: &str = "Linux drivers/gpu/drm/amd/include/asic_reg/gc/gc_11_0_0_offset.h";
const MP13: &str = "Linux drivers/gpu/drm/amd/include/asic_reg/mp/mp_13_0_0_offset.h";
const NBIO43: &str = "Linux drivers/gpu/drm/amd/include/asic_reg/nbio/nbio_4_3_0_offset.h";
const MESA: &str = "Mesa src/amd/common/sid.h (R_00Bxxx: byte address in the SH register space)";
const SOC15D: &str = "Linux drivers/gpu/drm/amd/amdgpu/soc15d.h (PACKET3_*)";
const VMH: &str = "Linux drivers/gpu/drm/amd/amdgpu/amdgpu_vm.h (AMDGPU_PTE_*)";

const fn gc(name: &'static str, seg: u8, offset: u32) -> Reg {
    Reg { name, block: Block::Gc, seg, offset, source: GC11 }
}
const fn mp0(name: &'static str, offset: u32) -> Reg {
    Reg { name, block: Block::Mp0, seg: 0, offset, source: MP13 }
}
const fn mp1(name: &'static str, offset: u32) -> Reg {
    Reg { name, block: Block::Mp1, seg: 0, offset, source: MP13 }
}
const fn nbio(name: &'static str, seg: u8, offset: u32) -> Reg {
    Reg { name, block: Block::Nbio, seg, offset, source: NBIO43 }
}

// The compute queue (HQD) of MEC me 1 pipe 0 queue 0, selected through GRBM_GFX_CNTL.
pub const CP_HQD_ACTIVE: Reg = gc("CP_HQD_ACTIVE", 0, 0x1fab);
pub const CP_HQD_VMID: Reg = gc("CP_HQD_VMID", 0, 0x1fac);
pub const CP_HQD_PQ_BASE: Reg = gc("CP_HQD_PQ_BASE", 0, 0x1fb1);
pub const CP_HQD_PQ_BASE_HI: Reg = gc("CP_HQD_PQ_BASE_HI", 0, 0x1fb2);
pub const CP_HQD_PQ_RPTR: Reg = gc("CP_HQD_PQ_RPTR", 0, 0x1fb3);
pub const CP_HQD_PQ_DOORBELL_CONTROL: Reg = gc("CP_HQD_PQ_DOORBELL_CONTROL", 0, 0x1fb8);
pub const CP_HQD_PQ_CONTROL: Reg = gc("CP_HQD_PQ_CONTROL", 0, 0x1fba);
/// DEQUEUE_REQ [3:0]: 1 drains the queue (gc_11_0_0_sh_mask.h).
pub const CP_HQD_DEQUEUE_REQUEST: Reg = gc("CP_HQD_DEQUEUE_REQUEST", 0, 0x1fc1);
pub const CP_MQD_BASE_ADDR: Reg = gc("CP_MQD_BASE_ADDR", 0, 0x1fa9);
pub const CP_MQD_BASE_ADDR_HI: Reg = gc("CP_MQD_BASE_ADDR_HI", 0, 0x1faa);
pub const CP_MQD_CONTROL: Reg = gc("CP_MQD_CONTROL", 0, 0x1fcb);
pub const CP_HQD_PQ_WPTR_LO: Reg = gc("CP_HQD_PQ_WPTR_LO", 0, 0x1fdf);
pub const CP_HQD_PQ_WPTR_HI: Reg = gc("CP_HQD_PQ_WPTR_HI", 0, 0x1fe0);
pub const CP_MEC_DOORBELL_RANGE_LOWER: Reg = gc("CP_MEC_DOORBELL_RANGE_LOWER", 0, 0x1dfc);
pub const CP_MEC_DOORBELL_RANGE_UPPER: Reg = gc("CP_MEC_DOORBELL_RANGE_UPPER", 0, 0x1dfd);
pub const CP_STAT: Reg = gc("CP_STAT", 0, 0x0f40);
// VM context 0 (GC 11.0.0's offsets; GC 10's differ).
pub const GCVM_CONTEXT0_CNTL: Reg = gc("GCVM_CONTEXT0_CNTL", 0, 0x1688);
pub const GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32: Reg = gc("GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32", 0, 0x16f3);
pub const GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32: Reg = gc("GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32", 0, 0x16f4);
pub const GCVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32: Reg = gc("GCVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32", 0, 0x1713);
pub const GCVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32: Reg = gc("GCVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32", 0, 0x1714);
pub const GCVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32: Reg = gc("GCVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32", 0, 0x1733);
pub const GCVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32: Reg = gc("GCVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32", 0, 0x1734);
// Invalidation engine 17, the one Linux's gmc_v11_0.c uses for the CPU's flushes.
pub const GCVM_INVALIDATE_ENG17_REQ: Reg = gc("GCVM_INVALIDATE_ENG17_REQ", 0, 0x16bc);
pub const GCVM_INVALIDATE_ENG17_ACK: Reg = gc("GCVM_INVALIDATE_ENG17_ACK", 0, 0x16ce);
// The RS64 MEC: halt and program counter (segment 1).
pub const CP_MEC_RS64_CNTL: Reg = gc("CP_MEC_RS64_CNTL", 1, 0x2904);
pub const CP_MEC_RS64_PRGRM_CNTR_START: Reg = gc("CP_MEC_RS64_PRGRM_CNTR_START", 1, 0x2900);
pub const CP_MEC_RS64_PRGRM_CNTR_START_HI: Reg = gc("CP_MEC_RS64_PRGRM_CNTR_START_HI", 1, 0x2938);
pub const RLC_RLCS_BOOTLOAD_STATUS: Reg = gc("RLC_RLCS_BOOTLOAD_STATUS", 1, 0x4e82);
pub const GRBM_GFX_CNTL: Reg = gc("GRBM_GFX_CNTL", 1, 0x0900);
pub const SH_MEM_CONFIG: Reg = gc("SH_MEM_CONFIG", 1, 0x09e4);
pub const SH_MEM_BASES: Reg = gc("SH_MEM_BASES", 1, 0x09e3);
/// tk's flags for the next start (a warm start re-initialises only what a reset of the
/// graphics core loses).
pub const SCRATCH_REG0: Reg = gc("SCRATCH_REG0", 1, 0x2040);
// SDMA 6 engine 0, queue 0 (in the GC block on GC 11).
pub const SDMA0_F32_CNTL: Reg = gc("SDMA0_F32_CNTL", 1, 0x589a);
pub const SDMA0_QUEUE0_RB_CNTL: Reg = gc("SDMA0_QUEUE0_RB_CNTL", 0, 0x0080);
pub const SDMA0_QUEUE0_RB_BASE: Reg = gc("SDMA0_QUEUE0_RB_BASE", 0, 0x0081);
pub const SDMA0_QUEUE0_RB_BASE_HI: Reg = gc("SDMA0_QUEUE0_RB_BASE_HI", 0, 0x0082);
pub const SDMA0_QUEUE0_RB_RPTR: Reg = gc("SDMA0_QUEUE0_RB_RPTR", 0, 0x0083);
pub const SDMA0_QUEUE0_RB_RPTR_HI: Reg = gc("SDMA0_QUEUE0_RB_RPTR_HI", 0, 0x0084);
pub const SDMA0_QUEUE0_RB_WPTR: Reg = gc("SDMA0_QUEUE0_RB_WPTR", 0, 0x0085);
pub const SDMA0_QUEUE0_RB_WPTR_HI: Reg = gc("SDMA0_QUEUE0_RB_WPTR_HI", 0, 0x0086);
pub const SDMA0_QUEUE0_RB_RPTR_ADDR_HI: Reg = gc("SDMA0_QUEUE0_RB_RPTR_ADDR_HI", 0, 0x0088);
pub const SDMA0_QUEUE0_RB_RPTR_ADDR_LO: Reg = gc("SDMA0_QUEUE0_RB_RPTR_ADDR_LO", 0, 0x0089);
pub const SDMA0_QUEUE0_IB_CNTL: Reg = gc("SDMA0_QUEUE0_IB_CNTL", 0, 0x008a);
pub const SDMA0_QUEUE0_DOORBELL: Reg = gc("SDMA0_QUEUE0_DOORBELL", 0, 0x0092);
pub const SDMA0_QUEUE0_DOORBELL_OFFSET: Reg = gc("SDMA0_QUEUE0_DOORBELL_OFFSET", 0, 0x00ab);
pub const SDMA0_QUEUE0_MINOR_PTR_UPDATE: Reg = gc("SDMA0_QUEUE0_MINOR_PTR_UPDATE", 0, 0x00b5);
// The PSP's mailbox: C2PMSG_N is at 0x60 + (N - 32).
pub const MP0_C2PMSG_35: Reg = mp0("MP0_SMN_C2PMSG_35", 0x63);
pub const MP0_C2PMSG_36: Reg = mp0("MP0_SMN_C2PMSG_36", 0x64);
pub const MP0_C2PMSG_58: Reg = mp0("MP0_SMN_C2PMSG_58", 0x7a);
pub const MP0_C2PMSG_64: Reg = mp0("MP0_SMN_C2PMSG_64", 0x80);
pub const MP0_C2PMSG_67: Reg = mp0("MP0_SMN_C2PMSG_67", 0x83);
pub const MP0_C2PMSG_69: Reg = mp0("MP0_SMN_C2PMSG_69", 0x85);
pub const MP0_C2PMSG_70: Reg = mp0("MP0_SMN_C2PMSG_70", 0x86);
pub const MP0_C2PMSG_71: Reg = mp0("MP0_SMN_C2PMSG_71", 0x87);
pub const MP0_C2PMSG_81: Reg = mp0("MP0_SMN_C2PMSG_81", 0x91);
// The SMU's mailbox: message, argument, response (C2PMSG_N at 0x260 + (N - 32)).
pub const MP1_C2PMSG_66: Reg = mp1("MP1_SMN_C2PMSG_66", 0x282);
pub const MP1_C2PMSG_82: Reg = mp1("MP1_SMN_C2PMSG_82", 0x292);
pub const MP1_C2PMSG_90: Reg = mp1("MP1_SMN_C2PMSG_90", 0x29a);
// NBIO 4.3.
pub const MM_INDEX: Reg = nbio("BIF_BX_PF0_MM_INDEX", 0, 0x0);
pub const MM_DATA: Reg = nbio("BIF_BX_PF0_MM_DATA", 0, 0x1);
pub const MM_INDEX_HI: Reg = nbio("BIF_BX_PF0_MM_INDEX_HI", 0, 0x6);
pub const RCC_DOORBELL_APER_EN: Reg = nbio("RCC_DEV0_EPF0_RCC_DOORBELL_APER_EN", 2, 0xc0);
pub const RCC_CONFIG_MEMSIZE: Reg = nbio("RCC_DEV0_EPF0_RCC_CONFIG_MEMSIZE", 2, 0xc3);

/// Every register the driver reads or writes.
pub const ALL: &[Reg] = &[
    CP_HQD_ACTIVE,
    CP_HQD_VMID,
    CP_HQD_PQ_BASE,
    CP_HQD_PQ_BASE_HI,
    CP_HQD_PQ_RPTR,
    CP_HQD_PQ_DOORBELL_CONTROL,
    CP_HQD_PQ_CONTROL,
    CP_HQD_DEQUEUE_REQUEST,
    CP_MQD_BASE_ADDR,
    CP_MQD_BASE_ADDR_HI,
    CP_MQD_CONTROL,
    CP_HQD_PQ_WPTR_LO,
    CP_HQD_PQ_WPTR_HI,
    CP_MEC_DOORBELL_RANGE_LOWER,
    CP_MEC_DOORBELL_RANGE_UPPER,
    CP_STAT,
    GCVM_CONTEXT0_CNTL,
    GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32,
    GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32,
    GCVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32,
    GCVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32,
    GCVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32,
    GCVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32,
    GCVM_INVALIDATE_ENG17_REQ,
    GCVM_INVALIDATE_ENG17_ACK,
    CP_MEC_RS64_CNTL,
    CP_MEC_RS64_PRGRM_CNTR_START,
    CP_MEC_RS64_PRGRM_CNTR_START_HI,
    RLC_RLCS_BOOTLOAD_STATUS,
    GRBM_GFX_CNTL,
    SH_MEM_CONFIG,
    SH_MEM_BASES,
    SCRATCH_REG0,
    SDMA0_F32_CNTL,
    SDMA0_QUEUE0_RB_CNTL,
    SDMA0_QUEUE0_RB_BASE,
    SDMA0_QUEUE0_RB_BASE_HI,
    SDMA0_QUEUE0_RB_RPTR,
    SDMA0_QUEUE0_RB_RPTR_HI,
    SDMA0_QUEUE0_RB_WPTR,
    SDMA0_QUEUE0_RB_WPTR_HI,
    SDMA0_QUEUE0_RB_RPTR_ADDR_HI,
    SDMA0_QUEUE0_RB_RPTR_ADDR_LO,
    SDMA0_QUEUE0_IB_CNTL,
    SDMA0_QUEUE0_DOORBELL,
    SDMA0_QUEUE0_DOORBELL_OFFSET,
    SDMA0_QUEUE0_MINOR_PTR_UPDATE,
    MP0_C2PMSG_35,
    MP0_C2PMSG_36,
    MP0_C2PMSG_58,
    MP0_C2PMSG_64,
    MP0_C2PMSG_67,
    MP0_C2PMSG_69,
    MP0_C2PMSG_70,
    MP0_C2PMSG_71,
    MP0_C2PMSG_81,
    MP1_C2PMSG_66,
    MP1_C2PMSG_82,
    MP1_C2PMSG_90,
    MM_INDEX,
    MM_DATA,
    MM_INDEX_HI,
    RCC_DOORBELL_APER_EN,
    RCC_CONFIG_MEMSIZE,
];

/// The byte addresses of the registers in the register BAR, from an IP discovery table.
#[derive(Clone, Debug)]
pub struct RegMap {
    by_reg: std::collections::HashMap<Reg, u64>,
    by_addr: std::collections::HashMap<u64, Reg>,
}

impl RegMap {
    /// Resolves every register of [`ALL`]; a block or segment the table lacks is an error
    /// naming the register.
    pub fn new(d: &super::discovery::Discovery) -> Result<RegMap, String> {
        let mut by_reg = std::collections::HashMap::new();
        for &r in ALL {
            let ip = d.ip(r.block.hw_id(), 0).ok_or_else(|| {
                format!(
                    "the IP discovery table lists no {} block, which holds {}",
                    super::discovery::hw_name(r.block.hw_id()).unwrap_or("such"),
                    r.name
                )
            })?;
            let base = ip.bases.get(usize::from(r.seg)).ok_or_else(|| {
                format!("{ip} has {} register segments; {} is in segment {}", ip.bases.len(), r.name, r.seg)
            })?;
            let byte = base.checked_add(u64::from(r.offset)).and_then(|d| d.checked_mul(4)).ok_or_else(|| {
                format!("{ip}'s register segment {} at dword {base:#x} puts {} beyond any address", r.seg, r.name)
            })?;
            by_reg.insert(r, byte);
        }
        let by_addr = by_reg.iter().map(|(r, a)| (*a, *r)).collect();
        Ok(RegMap { by_reg, by_addr })
    }

    /// The register's byte offset in the register BAR.
    pub fn byte(&self, r: Reg) -> u64 {
        // Every register of ALL is resolved by `new`; others are not tk's.
        self.by_reg.get(&r).copied().unwrap_or(u64::MAX)
    }

    /// The register at byte offset `off`, if tk's driver uses one there.
    pub fn at(&self, off: u64) -> Option<Reg> {
        self.by_addr.get(&off).copied()
    }
}

/// CP_HQD_PQ_CONTROL.QUEUE_SIZE: the ring holds 2^(QUEUE_SIZE + 1) dwords (source: GC11's
/// gc_11_0_0_sh_mask.h, CP_HQD_PQ_CONTROL__QUEUE_SIZE_MASK 0x3f).
pub const PQ_CONTROL_QUEUE_SIZE_MASK: u32 = 0x3f;
/// CP_HQD_PQ_DOORBELL_CONTROL: DOORBELL_OFFSET in bits 2..28 (a dword index into the doorbell
/// BAR), DOORBELL_EN bit 30 (gc_11_0_0_sh_mask.h).
pub const DOORBELL_OFFSET_SHIFT: u32 = 2;
pub const DOORBELL_OFFSET_MASK: u32 = 0x0fff_fffc;
pub const DOORBELL_EN: u32 = 1 << 30;
/// GCVM_INVALIDATE_ENG*_REQ for VMID 0 as gfxhub_v3_0.c builds it: PER_VMID_INVALIDATE_REQ
/// bit 0, FLUSH_TYPE 0, INVALIDATE_L2_PTES/PDE0/PDE1/PDE2 and INVALIDATE_L1_PTES (bits 19..23);
/// the ACK register's bit 0 answers for VMID 0 (gc_11_0_0_sh_mask.h).
pub const INVALIDATE_VMID0: u32 = 0x00f8_0001;
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
