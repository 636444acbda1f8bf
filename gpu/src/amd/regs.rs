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
    /// NBIO: the bus interface (indirect VRAM access, doorbell aperture, VRAM size, the HDP
    /// flush's register remap).
    Nbio,
    /// MMHUB: the memory hub of the PSP, the SMU and the interrupt handler.
    Mmhub,
    /// OSSSYS: the interrupt handler (IH) and its rings.
    Osssys,
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
            Block::Mmhub => MMHUB,
            Block::Osssys => OSSSYS,
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

const MMHUB30: &str = "Linux drivers/gpu/drm/amd/include/asic_reg/mmhub/mmhub_3_0_0_offset.h";
const OSSSYS60: &str = "Linux drivers/gpu/drm/amd/include/asic_reg/oss/osssys_6_0_0_offset.h";

const fn mm(name: &'static str, offset: u32) -> Reg {
    Reg { name, block: Block::Mmhub, seg: 0, offset, source: MMHUB30 }
}
const fn oss(name: &'static str, offset: u32) -> Reg {
    Reg { name, block: Block::Osssys, seg: 0, offset, source: OSSSYS60 }
}
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
// The GFX hub's apertures, L1 TLB and L2 cache (gfxhub_v3_0.c programs them).
pub const GCMC_VM_FB_LOCATION_BASE: Reg = gc("GCMC_VM_FB_LOCATION_BASE", 0, 0x1678);
pub const GCMC_VM_FB_LOCATION_TOP: Reg = gc("GCMC_VM_FB_LOCATION_TOP", 0, 0x1679);
pub const GCMC_VM_AGP_TOP: Reg = gc("GCMC_VM_AGP_TOP", 0, 0x167a);
pub const GCMC_VM_AGP_BOT: Reg = gc("GCMC_VM_AGP_BOT", 0, 0x167b);
pub const GCMC_VM_AGP_BASE: Reg = gc("GCMC_VM_AGP_BASE", 0, 0x167c);
pub const GCMC_VM_SYSTEM_APERTURE_LOW_ADDR: Reg = gc("GCMC_VM_SYSTEM_APERTURE_LOW_ADDR", 0, 0x167d);
pub const GCMC_VM_SYSTEM_APERTURE_HIGH_ADDR: Reg = gc("GCMC_VM_SYSTEM_APERTURE_HIGH_ADDR", 0, 0x167e);
pub const GCMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB: Reg = gc("GCMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB", 0, 0x15a8);
pub const GCMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB: Reg = gc("GCMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB", 0, 0x15a9);
pub const GCMC_VM_MX_L1_TLB_CNTL: Reg = gc("GCMC_VM_MX_L1_TLB_CNTL", 0, 0x167f);
pub const GCVM_L2_CNTL: Reg = gc("GCVM_L2_CNTL", 0, 0x15bc);
pub const GCVM_L2_CNTL2: Reg = gc("GCVM_L2_CNTL2", 0, 0x15bd);
pub const GCVM_L2_CNTL3: Reg = gc("GCVM_L2_CNTL3", 0, 0x15be);
pub const GCVM_L2_CNTL4: Reg = gc("GCVM_L2_CNTL4", 0, 0x15d4);
pub const GCVM_L2_CNTL5: Reg = gc("GCVM_L2_CNTL5", 0, 0x15da);
pub const GCVM_L2_PROTECTION_FAULT_CNTL: Reg = gc("GCVM_L2_PROTECTION_FAULT_CNTL", 0, 0x15c4);
pub const GCVM_L2_PROTECTION_FAULT_STATUS: Reg = gc("GCVM_L2_PROTECTION_FAULT_STATUS", 0, 0x15c8);
pub const GCVM_L2_PROTECTION_FAULT_ADDR_LO32: Reg = gc("GCVM_L2_PROTECTION_FAULT_ADDR_LO32", 0, 0x15c9);
pub const GCVM_L2_PROTECTION_FAULT_ADDR_HI32: Reg = gc("GCVM_L2_PROTECTION_FAULT_ADDR_HI32", 0, 0x15ca);
// The MM hub (MMHUB 3.0.0): the same registers for the PSP's, the SMU's and the IH's accesses.
pub const MMMC_VM_FB_LOCATION_BASE: Reg = mm("MMMC_VM_FB_LOCATION_BASE", 0x08ec);
pub const MMMC_VM_FB_LOCATION_TOP: Reg = mm("MMMC_VM_FB_LOCATION_TOP", 0x08ed);
pub const MMMC_VM_AGP_TOP: Reg = mm("MMMC_VM_AGP_TOP", 0x08ee);
pub const MMMC_VM_AGP_BOT: Reg = mm("MMMC_VM_AGP_BOT", 0x08ef);
pub const MMMC_VM_AGP_BASE: Reg = mm("MMMC_VM_AGP_BASE", 0x08f0);
pub const MMMC_VM_SYSTEM_APERTURE_LOW_ADDR: Reg = mm("MMMC_VM_SYSTEM_APERTURE_LOW_ADDR", 0x08f1);
pub const MMMC_VM_SYSTEM_APERTURE_HIGH_ADDR: Reg = mm("MMMC_VM_SYSTEM_APERTURE_HIGH_ADDR", 0x08f2);
pub const MMMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB: Reg = mm("MMMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB", 0x08d8);
pub const MMMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB: Reg = mm("MMMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB", 0x08d9);
pub const MMMC_VM_MX_L1_TLB_CNTL: Reg = mm("MMMC_VM_MX_L1_TLB_CNTL", 0x08f3);
pub const MMVM_L2_CNTL: Reg = mm("MMVM_L2_CNTL", 0x0700);
pub const MMVM_L2_CNTL2: Reg = mm("MMVM_L2_CNTL2", 0x0701);
pub const MMVM_L2_CNTL3: Reg = mm("MMVM_L2_CNTL3", 0x0702);
pub const MMVM_L2_CNTL4: Reg = mm("MMVM_L2_CNTL4", 0x0718);
pub const MMVM_L2_CNTL5: Reg = mm("MMVM_L2_CNTL5", 0x071e);
pub const MMVM_L2_PROTECTION_FAULT_CNTL: Reg = mm("MMVM_L2_PROTECTION_FAULT_CNTL", 0x0708);
pub const MMVM_L2_PROTECTION_FAULT_STATUS: Reg = mm("MMVM_L2_PROTECTION_FAULT_STATUS", 0x070c);
pub const MMVM_L2_PROTECTION_FAULT_ADDR_LO32: Reg = mm("MMVM_L2_PROTECTION_FAULT_ADDR_LO32", 0x070d);
pub const MMVM_L2_PROTECTION_FAULT_ADDR_HI32: Reg = mm("MMVM_L2_PROTECTION_FAULT_ADDR_HI32", 0x070e);
pub const MMVM_CONTEXT0_CNTL: Reg = mm("MMVM_CONTEXT0_CNTL", 0x0740);
pub const MMVM_INVALIDATE_ENG17_SEM: Reg = mm("MMVM_INVALIDATE_ENG17_SEM", 0x0762);
pub const MMVM_INVALIDATE_ENG17_REQ: Reg = mm("MMVM_INVALIDATE_ENG17_REQ", 0x0774);
pub const MMVM_INVALIDATE_ENG17_ACK: Reg = mm("MMVM_INVALIDATE_ENG17_ACK", 0x0786);
pub const MMVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32: Reg = mm("MMVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32", 0x07ab);
pub const MMVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32: Reg = mm("MMVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32", 0x07ac);
pub const MMVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32: Reg = mm("MMVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32", 0x07cb);
pub const MMVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32: Reg = mm("MMVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32", 0x07cc);
pub const MMVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32: Reg = mm("MMVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32", 0x07eb);
pub const MMVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32: Reg = mm("MMVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32", 0x07ec);
// The interrupt handler's ring 0 (OSSSYS 6.0.0; ih_v6_0.c programs it).
pub const IH_RB_CNTL: Reg = oss("IH_RB_CNTL", 0x080);
pub const IH_RB_BASE: Reg = oss("IH_RB_BASE", 0x081);
pub const IH_RB_BASE_HI: Reg = oss("IH_RB_BASE_HI", 0x082);
pub const IH_RB_RPTR: Reg = oss("IH_RB_RPTR", 0x083);
pub const IH_RB_WPTR: Reg = oss("IH_RB_WPTR", 0x084);
pub const IH_RB_WPTR_ADDR_HI: Reg = oss("IH_RB_WPTR_ADDR_HI", 0x085);
pub const IH_RB_WPTR_ADDR_LO: Reg = oss("IH_RB_WPTR_ADDR_LO", 0x086);
pub const IH_DOORBELL_RPTR: Reg = oss("IH_DOORBELL_RPTR", 0x087);
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
/// Where in the register BAR a write flushes the HDP (the host data path's write cache) and
/// its register path (byte offsets; nbio_v4_3.c remap_hdp_registers).
pub const REMAP_HDP_MEM_FLUSH_CNTL: Reg = nbio("BIF_BX0_REMAP_HDP_MEM_FLUSH_CNTL", 2, 0x12d);
pub const REMAP_HDP_REG_FLUSH_CNTL: Reg = nbio("BIF_BX0_REMAP_HDP_REG_FLUSH_CNTL", 2, 0x12e);

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
    REMAP_HDP_MEM_FLUSH_CNTL,
    REMAP_HDP_REG_FLUSH_CNTL,
    GCMC_VM_FB_LOCATION_BASE,
    GCMC_VM_FB_LOCATION_TOP,
    GCMC_VM_AGP_TOP,
    GCMC_VM_AGP_BOT,
    GCMC_VM_AGP_BASE,
    GCMC_VM_SYSTEM_APERTURE_LOW_ADDR,
    GCMC_VM_SYSTEM_APERTURE_HIGH_ADDR,
    GCMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB,
    GCMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB,
    GCMC_VM_MX_L1_TLB_CNTL,
    GCVM_L2_CNTL,
    GCVM_L2_CNTL2,
    GCVM_L2_CNTL3,
    GCVM_L2_CNTL4,
    GCVM_L2_CNTL5,
    GCVM_L2_PROTECTION_FAULT_CNTL,
    GCVM_L2_PROTECTION_FAULT_STATUS,
    GCVM_L2_PROTECTION_FAULT_ADDR_LO32,
    GCVM_L2_PROTECTION_FAULT_ADDR_HI32,
    MMMC_VM_FB_LOCATION_BASE,
    MMMC_VM_FB_LOCATION_TOP,
    MMMC_VM_AGP_TOP,
    MMMC_VM_AGP_BOT,
    MMMC_VM_AGP_BASE,
    MMMC_VM_SYSTEM_APERTURE_LOW_ADDR,
    MMMC_VM_SYSTEM_APERTURE_HIGH_ADDR,
    MMMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB,
    MMMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB,
    MMMC_VM_MX_L1_TLB_CNTL,
    MMVM_L2_CNTL,
    MMVM_L2_CNTL2,
    MMVM_L2_CNTL3,
    MMVM_L2_CNTL4,
    MMVM_L2_CNTL5,
    MMVM_L2_PROTECTION_FAULT_CNTL,
    MMVM_L2_PROTECTION_FAULT_STATUS,
    MMVM_L2_PROTECTION_FAULT_ADDR_LO32,
    MMVM_L2_PROTECTION_FAULT_ADDR_HI32,
    MMVM_CONTEXT0_CNTL,
    MMVM_INVALIDATE_ENG17_SEM,
    MMVM_INVALIDATE_ENG17_REQ,
    MMVM_INVALIDATE_ENG17_ACK,
    MMVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32,
    MMVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32,
    MMVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32,
    MMVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32,
    MMVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32,
    MMVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32,
    IH_RB_CNTL,
    IH_RB_BASE,
    IH_RB_BASE_HI,
    IH_RB_RPTR,
    IH_RB_WPTR,
    IH_RB_WPTR_ADDR_HI,
    IH_RB_WPTR_ADDR_LO,
    IH_DOORBELL_RPTR,
];

/// The register-BAR byte offset the driver points the HDP flush at, and writes to flush: Linux's
/// MMIO_REG_HOLE_OFFSET (0x80000 less a 4 KiB page, amdgpu.h) plus
/// KFD_MMIO_REMAP_HDP_MEM_FLUSH_CNTL (0, kfd_ioctl.h); the register flush is 4 bytes on.
pub const HDP_FLUSH_HOLE: u64 = 0x7_f000;

/// One memory hub's registers: the GFX hub (the CP, the shaders, SDMA) and the MM hub (the
/// PSP, the SMU, the IH) translate the same way through their own copies.
#[derive(Clone, Copy, Debug)]
pub struct Hub {
    pub name: &'static str,
    pub fb_base: Reg,
    pub fb_top: Reg,
    pub agp_top: Reg,
    pub agp_bot: Reg,
    pub agp_base: Reg,
    pub aperture_low: Reg,
    pub aperture_high: Reg,
    pub default_lsb: Reg,
    pub default_msb: Reg,
    pub l1_tlb_cntl: Reg,
    pub l2_cntl: [Reg; 5],
    pub fault_cntl: Reg,
    pub fault_status: Reg,
    pub fault_addr: (Reg, Reg),
    pub context0_cntl: Reg,
    pub table_base: (Reg, Reg),
    pub start: (Reg, Reg),
    pub end: (Reg, Reg),
    /// Invalidation engine 17's semaphore (Linux takes it on the MM hub only), request and
    /// acknowledgement.
    pub sem: Option<Reg>,
    pub req: Reg,
    pub ack: Reg,
}

pub const GFXHUB: Hub = Hub {
    name: "GFX hub",
    fb_base: GCMC_VM_FB_LOCATION_BASE,
    fb_top: GCMC_VM_FB_LOCATION_TOP,
    agp_top: GCMC_VM_AGP_TOP,
    agp_bot: GCMC_VM_AGP_BOT,
    agp_base: GCMC_VM_AGP_BASE,
    aperture_low: GCMC_VM_SYSTEM_APERTURE_LOW_ADDR,
    aperture_high: GCMC_VM_SYSTEM_APERTURE_HIGH_ADDR,
    default_lsb: GCMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB,
    default_msb: GCMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB,
    l1_tlb_cntl: GCMC_VM_MX_L1_TLB_CNTL,
    l2_cntl: [GCVM_L2_CNTL, GCVM_L2_CNTL2, GCVM_L2_CNTL3, GCVM_L2_CNTL4, GCVM_L2_CNTL5],
    fault_cntl: GCVM_L2_PROTECTION_FAULT_CNTL,
    fault_status: GCVM_L2_PROTECTION_FAULT_STATUS,
    fault_addr: (GCVM_L2_PROTECTION_FAULT_ADDR_LO32, GCVM_L2_PROTECTION_FAULT_ADDR_HI32),
    context0_cntl: GCVM_CONTEXT0_CNTL,
    table_base: (GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32, GCVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32),
    start: (GCVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32, GCVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32),
    end: (GCVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32, GCVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32),
    sem: None,
    req: GCVM_INVALIDATE_ENG17_REQ,
    ack: GCVM_INVALIDATE_ENG17_ACK,
};

pub const MMHUB: Hub = Hub {
    name: "MM hub",
    fb_base: MMMC_VM_FB_LOCATION_BASE,
    fb_top: MMMC_VM_FB_LOCATION_TOP,
    agp_top: MMMC_VM_AGP_TOP,
    agp_bot: MMMC_VM_AGP_BOT,
    agp_base: MMMC_VM_AGP_BASE,
    aperture_low: MMMC_VM_SYSTEM_APERTURE_LOW_ADDR,
    aperture_high: MMMC_VM_SYSTEM_APERTURE_HIGH_ADDR,
    default_lsb: MMMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_LSB,
    default_msb: MMMC_VM_SYSTEM_APERTURE_DEFAULT_ADDR_MSB,
    l1_tlb_cntl: MMMC_VM_MX_L1_TLB_CNTL,
    l2_cntl: [MMVM_L2_CNTL, MMVM_L2_CNTL2, MMVM_L2_CNTL3, MMVM_L2_CNTL4, MMVM_L2_CNTL5],
    fault_cntl: MMVM_L2_PROTECTION_FAULT_CNTL,
    fault_status: MMVM_L2_PROTECTION_FAULT_STATUS,
    fault_addr: (MMVM_L2_PROTECTION_FAULT_ADDR_LO32, MMVM_L2_PROTECTION_FAULT_ADDR_HI32),
    context0_cntl: MMVM_CONTEXT0_CNTL,
    table_base: (MMVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_LO32, MMVM_CONTEXT0_PAGE_TABLE_BASE_ADDR_HI32),
    start: (MMVM_CONTEXT0_PAGE_TABLE_START_ADDR_LO32, MMVM_CONTEXT0_PAGE_TABLE_START_ADDR_HI32),
    end: (MMVM_CONTEXT0_PAGE_TABLE_END_ADDR_LO32, MMVM_CONTEXT0_PAGE_TABLE_END_ADDR_HI32),
    sem: Some(MMVM_INVALIDATE_ENG17_SEM),
    req: MMVM_INVALIDATE_ENG17_REQ,
    ack: MMVM_INVALIDATE_ENG17_ACK,
};

/// The hub register values gfxhub_v3_0.c and mmhub_v3_0.c write (field layouts from
/// gc_11_0_0_sh_mask.h / mmhub_3_0_0_sh_mask.h as tinygrad's generated tables give them).
/// MC_VM_FB_LOCATION_BASE/TOP and MC_VM_AGP_*: 16 MiB units (address >> 24), 24 bits.
pub const FB_LOCATION_SHIFT: u32 = 24;
pub const FB_LOCATION_MASK: u32 = 0x00ff_ffff;
/// MC_VM_SYSTEM_APERTURE_LOW/HIGH_ADDR: 256 KiB units (address >> 18).
pub const APERTURE_SHIFT: u32 = 18;
/// MC_VM_MX_L1_TLB_CNTL: ENABLE_L1_TLB (bit 0), SYSTEM_ACCESS_MODE 3 (bits 3..4),
/// ENABLE_ADVANCED_DRIVER_MODEL (bit 6), MTYPE UC (3, bits 11..13): 0x1859.
pub const L1_TLB_ENABLE: u32 = 1;
pub const L1_TLB_CNTL: u32 = 0x1859;
/// The fields of MC_VM_MX_L1_TLB_CNTL the driver sets (bits 0, 3..13); the others keep their
/// values.
pub const L1_TLB_CNTL_FIELDS: u32 = 0x3ff9;
/// VM_L2_CNTL, read-modify-write: ENABLE_L2_CACHE (bit 0) and
/// ENABLE_DEFAULT_PAGE_OUT_TO_SYSTEM_MEMORY (bit 11) on, CONTEXT1_IDENTITY_ACCESS_MODE 1
/// (bits 19..20); ENABLE_L2_FRAGMENT_PROCESSING (1), L2_PDE0_CACHE_TAG_GENERATION_MODE (8),
/// PDE_FAULT_CLASSIFICATION (18) and IDENTITY_MODE_FRAGMENT_SIZE (21..25) off.
pub const L2_CACHE_ENABLE: u32 = 1;
pub const L2_CNTL_SET: u32 = 1 | 1 << 11 | 1 << 19;
pub const L2_CNTL_CLEAR: u32 = 1 << 1 | 1 << 8 | 1 << 18 | 3 << 19 | 0x1f << 21;
/// VM_L2_PROTECTION_FAULT_CNTL: the *_PROTECTION_FAULT_ENABLE_DEFAULT bits (2..12), which
/// gfxhub/mmhub set_fault_enable_default turn on unless faults should stop the GPU.
pub const FAULT_ENABLE_DEFAULTS: u32 = 0x1ffc;
/// VM_L2_CNTL2: INVALIDATE_ALL_L1_TLBS and INVALIDATE_L2_CACHE (bits 0, 1).
pub const L2_CNTL2: u32 = 0x3;
/// VM_L2_CNTL3 (BANK_SELECT 9, BIGK_FRAGMENT_SIZE 6 on the defaults), VM_L2_CNTL4
/// (L2_CACHE_4K_PARTITION_COUNT 1) and VM_L2_CNTL5 (WALKER_PRIORITY_CLIENT_ID 0x1ff).
pub const L2_CNTL3: u32 = 0x8013_0009;
pub const L2_CNTL4: u32 = 0x1;
pub const L2_CNTL5: u32 = 0x3fe0;
/// VM_L2_PROTECTION_FAULT_CNTL.CLEAR_PROTECTION_FAULT_STATUS_ADDR (bit 0).
pub const FAULT_CLEAR: u32 = 1;
/// VM_L2_PROTECTION_FAULT_STATUS: MAPPING_ERROR (bit 8), PERMISSION_FAULTS (bits 4..7), RW
/// (bit 18: a write).
pub const FAULT_MAPPING_ERROR: u32 = 1 << 8;
pub const FAULT_PERMISSION: u32 = 0xf << 4;
pub const FAULT_WRITE: u32 = 1 << 18;

/// IH_RB_CNTL (osssys_6_0_0_sh_mask.h): RB_ENABLE bit 0, RB_SIZE bits 1..5 (log2 of the ring's
/// dwords), WPTR_WRITEBACK_ENABLE bit 8, WPTR_OVERFLOW_ENABLE bit 16, ENABLE_INTR bit 17,
/// MC_SNOOP bit 20, MC_SPACE bits 28..30 (4: a GPU address, as Linux sets it when the PSP
/// loads the firmware), WPTR_OVERFLOW_CLEAR bit 31.
pub const IH_RB_ENABLE: u32 = 1;
pub const IH_RB_SIZE_SHIFT: u32 = 1;
pub const IH_WPTR_WRITEBACK: u32 = 1 << 8;
pub const IH_WPTR_OVERFLOW_ENABLE: u32 = 1 << 16;
pub const IH_ENABLE_INTR: u32 = 1 << 17;
pub const IH_MC_SNOOP: u32 = 1 << 20;
pub const IH_MC_SPACE_GPU: u32 = 4 << 28;
pub const IH_WPTR_OVERFLOW_CLEAR: u32 = 1 << 31;
/// IH_RB_WPTR: RB_OVERFLOW bit 0; OFFSET bits 2..17 (a byte offset).
pub const IH_RB_OVERFLOW: u32 = 1;
pub const IH_OFFSET_MASK: u32 = 0x0003_fffc;
/// An interrupt vector: 32 bytes. Dword 0: client id (bits 0..7), source id (8..15), ring id
/// (16..23), VMID (24..27), hub (bit 31: 0 GFX, 1 MM); dwords 4..7: source data (amdgpu_ih.c
/// amdgpu_ih_decode_iv_helper).
pub const IV_BYTES: u64 = 32;
/// Client and source ids (soc15_ih_clientid.h's SOC21 list, irqsrcs_vmc_1_0.h): a GFX hub
/// fault comes from the GFX client (its UTCL2) with source 0, an MM hub fault from VMC with
/// source 0. Its address: source data 0 is the page (address >> 12), bits 0..3 of source data
/// 1 the address bits 44..47; bit 5 of source data 1 says a write, bit 6 a read
/// (amdgpu_gmc.h AMDGPU_GMC9_FAULT_SOURCE_DATA_*).
pub const IH_CLIENT_GFX: u32 = 10;
pub const IH_CLIENT_VMC: u32 = 18;
pub const IH_SRC_VM_FAULT: u32 = 0;
pub const IV_FAULT_WRITE: u32 = 0x20;
pub const IV_FAULT_READ: u32 = 0x40;

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
