//! RDNA3 (gfx11) machine code: the instruction formats, the opcodes the emulator knows, decoding
//! and the assembly text of each instruction.
//!
//! The field layouts and operand encodings are those of AMD's RDNA3 ISA reference (microcode
//! formats, operand encodings, inline constants). The text follows LLVM's AMDGPU assembly syntax so
//! that a test can compare it with `llvm-objdump --mcpu=gfx1100` instruction by instruction.
//! An opcode the table does not list is an error naming the format and opcode number.

use std::fmt::{self, Write as _};

/// The width and kind of an operand: decides register counts, inline constants and modifiers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum T {
    /// 32-bit integer or bits.
    B32,
    F32,
    /// 64-bit integer or bits.
    B64,
    F64,
    F16,
    /// 16-bit integer.
    B16,
    /// 96 and 128-bit memory data.
    B96,
    B128,
    B256,
    B512,
}

impl T {
    /// 32-bit registers an operand of this type spans.
    pub fn regs(self) -> u16 {
        match self {
            T::B64 | T::F64 => 2,
            T::B96 => 3,
            T::B128 => 4,
            T::B256 => 8,
            T::B512 => 16,
            _ => 1,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, T::F32 | T::F64 | T::F16)
    }
    pub fn is64(self) -> bool {
        matches!(self, T::B64 | T::F64)
    }
}

/// The microcode format of an instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enc {
    Sop2,
    Sopk,
    Sop1,
    Sopc,
    Sopp,
    Smem,
    Vop1,
    Vop2,
    Vopc,
    /// VOP3 and VOP3SD (the forms with a scalar destination).
    Vop3,
    Vop3p,
    Vopd,
    Global,
    Ds,
}

/// What an instruction does; the executor matches on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum Sem {
    // Scalar ALU.
    SAddU32,
    SSubU32,
    SAddI32,
    SSubI32,
    SAddcU32,
    SSubbU32,
    SLshl32,
    SLshl64,
    SLshr32,
    SLshr64,
    SAshr32,
    SAshr64,
    SMinI32,
    SMinU32,
    SMaxI32,
    SMaxU32,
    SAnd,
    SOr,
    SXor,
    SAndNot1,
    SOrNot1,
    SBfeU32,
    SBfeI32,
    SMulI32,
    SMulHiU32,
    SMulHiI32,
    SCselect,
    /// `s_pack_{ll,lh,hh,hl}_b32_b16`: the low result half from S0's low (0) or high (1) half,
    /// the high one from S1's.
    SPack(bool, bool),
    /// (S0 << n) + S1, SCC the carry.
    SLshlAdd(u8),
    SNand,
    SNor,
    SXnor,
    SAbsdiff,
    SBfm,
    SMov,
    SNot,
    SBrev,
    SBitset1,
    SAndSaveexec,
    SOrSaveexec,
    SAndNot1Saveexec,
    SMovk,
    SAddk,
    SMulk,
    SCmovk,
    /// `s_cmpk_*`: SCC = the register compared with the immediate (sign- or zero-extended).
    SCmpk(Cond, bool),
    SCmp(Cond, bool),
    // Program control.
    SNop,
    SEndpgm,
    SBranch,
    SCbranchScc0,
    SCbranchScc1,
    SCbranchVccz,
    SCbranchVccnz,
    SCbranchExecz,
    SCbranchExecnz,
    SBarrier,
    SWaitcnt,
    // Scalar memory.
    SLoad,
    // Vector ALU.
    VMov,
    VReadfirstlane,
    VReadlane,
    VWritelane,
    VCvtI32F64,
    VCvtF64I32,
    VCvtF32I32,
    VCvtF32U32,
    VCvtU32F32,
    VCvtI32F32,
    VCvtF16F32,
    VCvtF32F16,
    VCvtF32F64,
    VCvtF64F32,
    VCvtF32Ubyte0,
    /// Byte 1, 2 or 3 of the source as an f32.
    VCvtF32Ubyte(u8),
    VCvtU32F64,
    VCvtF64U32,
    VTrunc,
    VCeil,
    VRndne,
    VFloor,
    VRcp,
    VRcpIflag,
    VRsq,
    VSqrt,
    VExp,
    VLog,
    VBfrev,
    VNot,
    VCndmask,
    VAddF,
    VSubF,
    VSubrevF,
    VMulF,
    VMinF,
    VMaxF,
    VMulU32U24,
    VMinI32,
    VMaxI32,
    VMinU32,
    VMaxU32,
    VLshlrev,
    VLshrrev,
    VAshrrev,
    VAnd,
    VOr,
    VXor,
    VXnor,
    VAddCoCi,
    VSubCoCi,
    VSubrevCoCi,
    VAddNc,
    VSubNc,
    VSubrevNc,
    VFmac,
    VFmamk,
    VFmaak,
    VMadI32I24,
    VBfeU32,
    VBfeI32,
    VBfi,
    VFma,
    VAlignbit,
    VDivFixup,
    VDivFmas,
    VDivScale,
    VLshlAdd,
    VAdd3,
    /// Three-operand integer min/max (`signed`): min3, max3, med3, and max(min(a, b), c) /
    /// min(max(a, b), c).
    VMin3(bool),
    VMax3(bool),
    VMed3(bool),
    VMinMax(bool),
    VMaxMin(bool),
    /// (a ^ b) + c.
    VXad,
    /// (a + b) << c.
    VAddLshl,
    /// The 32 bits at byte offset c[1:0] of the 64 bits {a, b}.
    VAlignbyte,
    /// A byte permute of {a, b} selected by c's bytes.
    VPerm,
    /// a * b + c, 16-bit sources (`signed`), a 16- or 32-bit result.
    VMad16(bool),
    /// A packed 16-bit integer operation on both halves (VOP3P; op_sel picks each source's half
    /// for the low result, op_sel_hi for the high one).
    VPk(Pk),
    /// A packed f16 operation on both halves: neg_lo/neg_hi negate each source's half.
    VPkF(PkF),
    VLshlOr,
    VAndOr,
    VXor3,
    VOr3,
    VMadU64U32,
    VAddCo,
    VSubCo,
    VSubrevCo,
    VAddNcU16,
    VSubNcU16,
    VMulLoU16,
    VMaxU16,
    VMaxI16,
    VMinU16,
    VMinI16,
    VLshlrevB16,
    VLshrrevB16,
    VAshrrevI16,
    VMadU32U24,
    VMulI32I24,
    VMulHiI32I24,
    VMulHiU32U24,
    VMadI64I32,
    VCvtF16U16,
    VCvtF16I16,
    VCvtU16F16,
    VCvtI16F16,
    VCvtI32I16,
    VCvtU32U16,
    VClz,
    VCls,
    VCtz,
    SSext8,
    SSext16,
    SAbs,
    SBcnt1,
    SBcnt0,
    SCtz,
    SClz,
    SCls,
    SCmov,
    SBitset0,
    VPackF16,
    VBcnt,
    VLdexp,
    VMulLo,
    VMulHiU32,
    VMulHiI32,
    VFmaMix,
    VFmaMixlo,
    VFmaMixhi,
    /// A compare; the flag says whether integers are signed.
    VCmp(Cond, bool),
    VCmpx(Cond, bool),
    VCmpClass,
    VCmpxClass,
    // Vector memory.
    GLoad(Ext),
    /// A load of 8 or 16 bits into one half of a VGPR (`true`: the high half), keeping the
    /// other half.
    GLoadD16(Ext, bool),
    GStore,
    GStoreHi,
    /// Compare-and-swap of `d`'s width: data holds the new value, then the compared one.
    GAtomicCmpswap,
    /// Integer add of `d`'s width (wrapping).
    GAtomicAdd,
    DsLoad,
    DsStore,
}

impl Sem {
    /// Whether the instruction writes a lane mask to a scalar destination (the VOP3SD forms).
    pub fn writes_sdst(self) -> bool {
        matches!(
            self,
            Sem::VAddCo
                | Sem::VSubCo
                | Sem::VSubrevCo
                | Sem::VAddCoCi
                | Sem::VSubCoCi
                | Sem::VSubrevCoCi
                | Sem::VDivScale
                | Sem::VMadU64U32
        )
    }
}

/// The packed 16-bit integer operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pk {
    MulLo,
    Add,
    Sub,
    Lshlrev,
    Lshrrev,
    Ashrrev,
    MaxI,
    MinI,
    MaxU,
    MinU,
    MadU,
    MadI,
}

/// The packed f16 operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PkF {
    Fma,
    Add,
    Mul,
    Min,
    Max,
}

/// How a narrow load fills its register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ext {
    Zero,
    Sign,
}

/// A comparison. Float comparisons are ordered unless named `N*`/`U`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cond {
    F,
    Lt,
    Eq,
    Le,
    Gt,
    Lg,
    Ge,
    O,
    U,
    Nge,
    Nlg,
    Ngt,
    Nle,
    Neq,
    Nlt,
    Tru,
    /// Integer not-equal.
    Ne,
}

/// One table entry: the name LLVM prints (without `_e32`/`_e64`), what it does, the destination
/// type and the source types.
#[derive(Clone, Copy, Debug)]
pub struct Op {
    pub name: &'static str,
    pub sem: Sem,
    pub d: T,
    pub s: [T; 3],
    /// Number of sources.
    pub n: u8,
}

const fn op(name: &'static str, sem: Sem, d: T, s: [T; 3], n: u8) -> Op {
    Op { name, sem, d, s, n }
}

use T::*;
const I1: [T; 3] = [B32, B32, B32];
const F1: [T; 3] = [F32, F32, F32];
const D1: [T; 3] = [F64, F64, F64];
const H1: [T; 3] = [F16, F16, F16];
const L1: [T; 3] = [B64, B64, B64];

/// SOP2 opcodes.
fn sop2(o: u32) -> Option<Op> {
    Some(match o {
        0 => op("s_add_u32", Sem::SAddU32, B32, I1, 2),
        1 => op("s_sub_u32", Sem::SSubU32, B32, I1, 2),
        2 => op("s_add_i32", Sem::SAddI32, B32, I1, 2),
        3 => op("s_sub_i32", Sem::SSubI32, B32, I1, 2),
        4 => op("s_addc_u32", Sem::SAddcU32, B32, I1, 2),
        5 => op("s_subb_u32", Sem::SSubbU32, B32, I1, 2),
        8 => op("s_lshl_b32", Sem::SLshl32, B32, I1, 2),
        9 => op("s_lshl_b64", Sem::SLshl64, B64, [B64, B32, B32], 2),
        10 => op("s_lshr_b32", Sem::SLshr32, B32, I1, 2),
        11 => op("s_lshr_b64", Sem::SLshr64, B64, [B64, B32, B32], 2),
        12 => op("s_ashr_i32", Sem::SAshr32, B32, I1, 2),
        13 => op("s_ashr_i64", Sem::SAshr64, B64, [B64, B32, B32], 2),
        18 => op("s_min_i32", Sem::SMinI32, B32, I1, 2),
        19 => op("s_min_u32", Sem::SMinU32, B32, I1, 2),
        20 => op("s_max_i32", Sem::SMaxI32, B32, I1, 2),
        21 => op("s_max_u32", Sem::SMaxU32, B32, I1, 2),
        22 => op("s_and_b32", Sem::SAnd, B32, I1, 2),
        23 => op("s_and_b64", Sem::SAnd, B64, L1, 2),
        24 => op("s_or_b32", Sem::SOr, B32, I1, 2),
        25 => op("s_or_b64", Sem::SOr, B64, L1, 2),
        26 => op("s_xor_b32", Sem::SXor, B32, I1, 2),
        27 => op("s_xor_b64", Sem::SXor, B64, L1, 2),
        34 => op("s_and_not1_b32", Sem::SAndNot1, B32, I1, 2),
        35 => op("s_and_not1_b64", Sem::SAndNot1, B64, L1, 2),
        36 => op("s_or_not1_b32", Sem::SOrNot1, B32, I1, 2),
        37 => op("s_or_not1_b64", Sem::SOrNot1, B64, L1, 2),
        38 => op("s_bfe_u32", Sem::SBfeU32, B32, I1, 2),
        39 => op("s_bfe_i32", Sem::SBfeI32, B32, I1, 2),
        44 => op("s_mul_i32", Sem::SMulI32, B32, I1, 2),
        45 => op("s_mul_hi_u32", Sem::SMulHiU32, B32, I1, 2),
        46 => op("s_mul_hi_i32", Sem::SMulHiI32, B32, I1, 2),
        48 => op("s_cselect_b32", Sem::SCselect, B32, I1, 2),
        50 => op("s_pack_ll_b32_b16", Sem::SPack(false, false), B32, I1, 2),
        51 => op("s_pack_lh_b32_b16", Sem::SPack(false, true), B32, I1, 2),
        52 => op("s_pack_hh_b32_b16", Sem::SPack(true, true), B32, I1, 2),
        53 => op("s_pack_hl_b32_b16", Sem::SPack(true, false), B32, I1, 2),
        6 => op("s_absdiff_i32", Sem::SAbsdiff, B32, I1, 2),
        14 => op("s_lshl1_add_u32", Sem::SLshlAdd(1), B32, I1, 2),
        15 => op("s_lshl2_add_u32", Sem::SLshlAdd(2), B32, I1, 2),
        16 => op("s_lshl3_add_u32", Sem::SLshlAdd(3), B32, I1, 2),
        17 => op("s_lshl4_add_u32", Sem::SLshlAdd(4), B32, I1, 2),
        28 => op("s_nand_b32", Sem::SNand, B32, I1, 2),
        30 => op("s_nor_b32", Sem::SNor, B32, I1, 2),
        32 => op("s_xnor_b32", Sem::SXnor, B32, I1, 2),
        42 => op("s_bfm_b32", Sem::SBfm, B32, I1, 2),
        49 => op("s_cselect_b64", Sem::SCselect, B64, L1, 2),
        _ => return None,
    })
}

fn sop1(o: u32) -> Option<Op> {
    Some(match o {
        0 => op("s_mov_b32", Sem::SMov, B32, I1, 1),
        1 => op("s_mov_b64", Sem::SMov, B64, L1, 1),
        2 => op("s_cmov_b32", Sem::SCmov, B32, I1, 1),
        4 => op("s_brev_b32", Sem::SBrev, B32, I1, 1),
        5 => op("s_brev_b64", Sem::SBrev, B64, L1, 1),
        9 => op("s_ctz_i32_b64", Sem::SCtz, B32, L1, 1),
        11 => op("s_clz_i32_u64", Sem::SClz, B32, L1, 1),
        25 => op("s_bcnt1_i32_b64", Sem::SBcnt1, B32, L1, 1),
        8 => op("s_ctz_i32_b32", Sem::SCtz, B32, I1, 1),
        10 => op("s_clz_i32_u32", Sem::SClz, B32, I1, 1),
        12 => op("s_cls_i32", Sem::SCls, B32, I1, 1),
        16 => op("s_bitset0_b32", Sem::SBitset0, B32, I1, 1),
        22 => op("s_bcnt0_i32_b32", Sem::SBcnt0, B32, I1, 1),
        14 => op("s_sext_i32_i8", Sem::SSext8, B32, I1, 1),
        15 => op("s_sext_i32_i16", Sem::SSext16, B32, I1, 1),
        21 => op("s_abs_i32", Sem::SAbs, B32, I1, 1),
        24 => op("s_bcnt1_i32_b32", Sem::SBcnt1, B32, I1, 1),
        18 => op("s_bitset1_b32", Sem::SBitset1, B32, I1, 1),
        30 => op("s_not_b32", Sem::SNot, B32, I1, 1),
        31 => op("s_not_b64", Sem::SNot, B64, L1, 1),
        3 => op("s_cmov_b64", Sem::SCmov, B64, L1, 1),
        32 => op("s_and_saveexec_b32", Sem::SAndSaveexec, B32, I1, 1),
        34 => op("s_or_saveexec_b32", Sem::SOrSaveexec, B32, I1, 1),
        48 => op("s_and_not1_saveexec_b32", Sem::SAndNot1Saveexec, B32, I1, 1),
        _ => return None,
    })
}

fn sopk(o: u32) -> Option<Op> {
    use Cond::*;
    const CMPK: [(&str, Cond, bool); 12] = [
        ("s_cmpk_eq_i32", Eq, true),
        ("s_cmpk_lg_i32", Lg, true),
        ("s_cmpk_gt_i32", Gt, true),
        ("s_cmpk_ge_i32", Ge, true),
        ("s_cmpk_lt_i32", Lt, true),
        ("s_cmpk_le_i32", Le, true),
        ("s_cmpk_eq_u32", Eq, false),
        ("s_cmpk_lg_u32", Lg, false),
        ("s_cmpk_gt_u32", Gt, false),
        ("s_cmpk_ge_u32", Ge, false),
        ("s_cmpk_lt_u32", Lt, false),
        ("s_cmpk_le_u32", Le, false),
    ];
    Some(match o {
        0 => op("s_movk_i32", Sem::SMovk, B32, I1, 0),
        2 => op("s_cmovk_i32", Sem::SCmovk, B32, I1, 0),
        3..=14 => {
            let (name, c, signed) = CMPK[o as usize - 3];
            op(name, Sem::SCmpk(c, signed), B32, I1, 0)
        }
        15 => op("s_addk_i32", Sem::SAddk, B32, I1, 0),
        16 => op("s_mulk_i32", Sem::SMulk, B32, I1, 0),
        _ => return None,
    })
}

fn sopc(o: u32) -> Option<Op> {
    use Cond::*;
    const C32: [(Cond, &str, bool); 6] =
        [(Eq, "eq", true), (Lg, "lg", true), (Gt, "gt", true), (Ge, "ge", true), (Lt, "lt", true), (Le, "le", true)];
    let names_i = ["s_cmp_eq_i32", "s_cmp_lg_i32", "s_cmp_gt_i32", "s_cmp_ge_i32", "s_cmp_lt_i32", "s_cmp_le_i32"];
    let names_u = ["s_cmp_eq_u32", "s_cmp_lg_u32", "s_cmp_gt_u32", "s_cmp_ge_u32", "s_cmp_lt_u32", "s_cmp_le_u32"];
    Some(match o {
        0..=5 => op(names_i[o as usize], Sem::SCmp(C32[o as usize].0, true), B32, I1, 2),
        6..=11 => op(names_u[o as usize - 6], Sem::SCmp(C32[o as usize - 6].0, false), B32, I1, 2),
        16 => op("s_cmp_eq_u64", Sem::SCmp(Eq, false), B64, L1, 2),
        17 => op("s_cmp_lg_u64", Sem::SCmp(Lg, false), B64, L1, 2),
        _ => return None,
    })
}

fn sopp(o: u32) -> Option<Op> {
    Some(match o {
        0 => op("s_nop", Sem::SNop, B32, I1, 0),
        4 => op("s_set_inst_prefetch_distance", Sem::SNop, B32, I1, 0),
        5 => op("s_clause", Sem::SNop, B32, I1, 0),
        7 => op("s_delay_alu", Sem::SNop, B32, I1, 0),
        8 => op("s_waitcnt_depctr", Sem::SNop, B32, I1, 0),
        9 => op("s_waitcnt", Sem::SWaitcnt, B32, I1, 0),
        31 => op("s_code_end", Sem::SNop, B32, I1, 0),
        32 => op("s_branch", Sem::SBranch, B32, I1, 0),
        33 => op("s_cbranch_scc0", Sem::SCbranchScc0, B32, I1, 0),
        34 => op("s_cbranch_scc1", Sem::SCbranchScc1, B32, I1, 0),
        35 => op("s_cbranch_vccz", Sem::SCbranchVccz, B32, I1, 0),
        36 => op("s_cbranch_vccnz", Sem::SCbranchVccnz, B32, I1, 0),
        37 => op("s_cbranch_execz", Sem::SCbranchExecz, B32, I1, 0),
        38 => op("s_cbranch_execnz", Sem::SCbranchExecnz, B32, I1, 0),
        48 => op("s_endpgm", Sem::SEndpgm, B32, I1, 0),
        54 => op("s_sendmsg", Sem::SNop, B32, I1, 0),
        61 => op("s_barrier", Sem::SBarrier, B32, I1, 0),
        _ => return None,
    })
}

fn smem(o: u32) -> Option<Op> {
    Some(match o {
        0 => op("s_load_b32", Sem::SLoad, B32, L1, 0),
        1 => op("s_load_b64", Sem::SLoad, B64, L1, 0),
        2 => op("s_load_b128", Sem::SLoad, B128, L1, 0),
        3 => op("s_load_b256", Sem::SLoad, B256, L1, 0),
        4 => op("s_load_b512", Sem::SLoad, B512, L1, 0),
        _ => return None,
    })
}

/// VOP1 opcodes (their VOP3 forms are 384 + opcode).
fn vop1(o: u32) -> Option<Op> {
    Some(match o {
        1 => op("v_mov_b32", Sem::VMov, B32, I1, 1),
        2 => op("v_readfirstlane_b32", Sem::VReadfirstlane, B32, I1, 1),
        3 => op("v_cvt_i32_f64", Sem::VCvtI32F64, B32, D1, 1),
        4 => op("v_cvt_f64_i32", Sem::VCvtF64I32, F64, I1, 1),
        5 => op("v_cvt_f32_i32", Sem::VCvtF32I32, F32, I1, 1),
        6 => op("v_cvt_f32_u32", Sem::VCvtF32U32, F32, I1, 1),
        7 => op("v_cvt_u32_f32", Sem::VCvtU32F32, B32, F1, 1),
        8 => op("v_cvt_i32_f32", Sem::VCvtI32F32, B32, F1, 1),
        10 => op("v_cvt_f16_f32", Sem::VCvtF16F32, F16, F1, 1),
        11 => op("v_cvt_f32_f16", Sem::VCvtF32F16, F32, H1, 1),
        15 => op("v_cvt_f32_f64", Sem::VCvtF32F64, F32, D1, 1),
        16 => op("v_cvt_f64_f32", Sem::VCvtF64F32, F64, F1, 1),
        17 => op("v_cvt_f32_ubyte0", Sem::VCvtF32Ubyte0, F32, I1, 1),
        18 => op("v_cvt_f32_ubyte1", Sem::VCvtF32Ubyte(1), F32, I1, 1),
        19 => op("v_cvt_f32_ubyte2", Sem::VCvtF32Ubyte(2), F32, I1, 1),
        20 => op("v_cvt_f32_ubyte3", Sem::VCvtF32Ubyte(3), F32, I1, 1),
        21 => op("v_cvt_u32_f64", Sem::VCvtU32F64, B32, D1, 1),
        22 => op("v_cvt_f64_u32", Sem::VCvtF64U32, F64, I1, 1),
        23 => op("v_trunc_f64", Sem::VTrunc, F64, D1, 1),
        24 => op("v_ceil_f64", Sem::VCeil, F64, D1, 1),
        25 => op("v_rndne_f64", Sem::VRndne, F64, D1, 1),
        26 => op("v_floor_f64", Sem::VFloor, F64, D1, 1),
        33 => op("v_trunc_f32", Sem::VTrunc, F32, F1, 1),
        34 => op("v_ceil_f32", Sem::VCeil, F32, F1, 1),
        35 => op("v_rndne_f32", Sem::VRndne, F32, F1, 1),
        36 => op("v_floor_f32", Sem::VFloor, F32, F1, 1),
        37 => op("v_exp_f32", Sem::VExp, F32, F1, 1),
        39 => op("v_log_f32", Sem::VLog, F32, F1, 1),
        42 => op("v_rcp_f32", Sem::VRcp, F32, F1, 1),
        43 => op("v_rcp_iflag_f32", Sem::VRcpIflag, F32, F1, 1),
        46 => op("v_rsq_f32", Sem::VRsq, F32, F1, 1),
        47 => op("v_rcp_f64", Sem::VRcp, F64, D1, 1),
        49 => op("v_rsq_f64", Sem::VRsq, F64, D1, 1),
        51 => op("v_sqrt_f32", Sem::VSqrt, F32, F1, 1),
        52 => op("v_sqrt_f64", Sem::VSqrt, F64, D1, 1),
        55 => op("v_not_b32", Sem::VNot, B32, I1, 1),
        57 => op("v_clz_i32_u32", Sem::VClz, B32, I1, 1),
        59 => op("v_cls_i32", Sem::VCls, B32, I1, 1),
        58 => op("v_ctz_i32_b32", Sem::VCtz, B32, I1, 1),
        80 => op("v_cvt_f16_u16", Sem::VCvtF16U16, F16, [B16, B16, B16], 1),
        81 => op("v_cvt_f16_i16", Sem::VCvtF16I16, F16, [B16, B16, B16], 1),
        82 => op("v_cvt_u16_f16", Sem::VCvtU16F16, B16, H1, 1),
        83 => op("v_cvt_i16_f16", Sem::VCvtI16F16, B16, H1, 1),
        106 => op("v_cvt_i32_i16", Sem::VCvtI32I16, B32, [B16, B16, B16], 1),
        107 => op("v_cvt_u32_u16", Sem::VCvtU32U16, B32, [B16, B16, B16], 1),
        56 => op("v_bfrev_b32", Sem::VBfrev, B32, I1, 1),
        _ => return None,
    })
}

/// VOP2 opcodes (their VOP3 forms are 256 + opcode).
fn vop2(o: u32) -> Option<Op> {
    Some(match o {
        1 => op("v_cndmask_b32", Sem::VCndmask, B32, I1, 2),
        3 => op("v_add_f32", Sem::VAddF, F32, F1, 2),
        4 => op("v_sub_f32", Sem::VSubF, F32, F1, 2),
        5 => op("v_subrev_f32", Sem::VSubrevF, F32, F1, 2),
        8 => op("v_mul_f32", Sem::VMulF, F32, F1, 2),
        9 => op("v_mul_i32_i24", Sem::VMulI32I24, B32, I1, 2),
        10 => op("v_mul_hi_i32_i24", Sem::VMulHiI32I24, B32, I1, 2),
        11 => op("v_mul_u32_u24", Sem::VMulU32U24, B32, I1, 2),
        12 => op("v_mul_hi_u32_u24", Sem::VMulHiU32U24, B32, I1, 2),
        15 => op("v_min_f32", Sem::VMinF, F32, F1, 2),
        16 => op("v_max_f32", Sem::VMaxF, F32, F1, 2),
        17 => op("v_min_i32", Sem::VMinI32, B32, I1, 2),
        18 => op("v_max_i32", Sem::VMaxI32, B32, I1, 2),
        19 => op("v_min_u32", Sem::VMinU32, B32, I1, 2),
        20 => op("v_max_u32", Sem::VMaxU32, B32, I1, 2),
        24 => op("v_lshlrev_b32", Sem::VLshlrev, B32, I1, 2),
        25 => op("v_lshrrev_b32", Sem::VLshrrev, B32, I1, 2),
        26 => op("v_ashrrev_i32", Sem::VAshrrev, B32, I1, 2),
        27 => op("v_and_b32", Sem::VAnd, B32, I1, 2),
        28 => op("v_or_b32", Sem::VOr, B32, I1, 2),
        29 => op("v_xor_b32", Sem::VXor, B32, I1, 2),
        30 => op("v_xnor_b32", Sem::VXnor, B32, I1, 2),
        32 => op("v_add_co_ci_u32", Sem::VAddCoCi, B32, I1, 3),
        33 => op("v_sub_co_ci_u32", Sem::VSubCoCi, B32, I1, 3),
        34 => op("v_subrev_co_ci_u32", Sem::VSubrevCoCi, B32, I1, 3),
        37 => op("v_add_nc_u32", Sem::VAddNc, B32, I1, 2),
        38 => op("v_sub_nc_u32", Sem::VSubNc, B32, I1, 2),
        39 => op("v_subrev_nc_u32", Sem::VSubrevNc, B32, I1, 2),
        43 => op("v_fmac_f32", Sem::VFmac, F32, F1, 2),
        44 => op("v_fmamk_f32", Sem::VFmamk, F32, F1, 2),
        45 => op("v_fmaak_f32", Sem::VFmaak, F32, F1, 2),
        50 => op("v_add_f16", Sem::VAddF, F16, H1, 2),
        51 => op("v_sub_f16", Sem::VSubF, F16, H1, 2),
        53 => op("v_mul_f16", Sem::VMulF, F16, H1, 2),
        57 => op("v_max_f16", Sem::VMaxF, F16, H1, 2),
        58 => op("v_min_f16", Sem::VMinF, F16, H1, 2),
        _ => return None,
    })
}

/// VOPC opcodes: the compares of each type in the order F, LT, EQ, LE, GT, LG/NE, GE, ...;
/// +128 writes EXEC instead (`v_cmpx`).
fn vopc(o: u32) -> Option<Op> {
    use Cond::*;
    const FC: [(Cond, &str); 16] = [
        (F, "f"),
        (Lt, "lt"),
        (Eq, "eq"),
        (Le, "le"),
        (Gt, "gt"),
        (Lg, "lg"),
        (Ge, "ge"),
        (O, "o"),
        (U, "u"),
        (Nge, "nge"),
        (Nlg, "nlg"),
        (Ngt, "ngt"),
        (Nle, "nle"),
        (Neq, "neq"),
        (Nlt, "nlt"),
        (Tru, "t"),
    ];
    const IC: [(Cond, &str); 8] =
        [(F, "f"), (Lt, "lt"), (Eq, "eq"), (Le, "le"), (Gt, "gt"), (Ne, "ne"), (Ge, "ge"), (Tru, "t")];
    let x = o >= 128;
    let o = o & 127;
    let (c, cn, t, tn) = match o {
        0..=47 => {
            let (c, n) = FC[(o % 16) as usize];
            let (t, tn) = [(F16, "f16"), (F32, "f32"), (F64, "f64")][(o / 16) as usize];
            (c, n, t, tn)
        }
        49..=54 | 57..=62 => {
            let (c, n) = IC[(o % 8) as usize];
            let (t, tn) = [(B16, "i16"), (B16, "u16")][((o - 48) / 8) as usize];
            (c, n, t, tn)
        }
        64..=95 => {
            let (c, n) = IC[(o % 8) as usize];
            let (t, tn) = [(B32, "i32"), (B32, "u32"), (B64, "i64"), (B64, "u64")][((o - 64) / 8) as usize];
            (c, n, t, tn)
        }
        125..=127 => {
            let (t, tn) = [(F16, "f16"), (F32, "f32"), (F64, "f64")][(o - 125) as usize];
            let name = cmp_name(x, "class", tn);
            let sem = if x { Sem::VCmpxClass } else { Sem::VCmpClass };
            return Some(op(name, sem, B32, [t, B32, B32], 2));
        }
        _ => return None,
    };
    let name = cmp_name(x, cn, tn);
    let signed = tn.starts_with('i');
    let sem = if x { Sem::VCmpx(c, signed) } else { Sem::VCmp(c, signed) };
    Some(op(name, sem, B32, [t, t, B32], 2))
}

/// The name of a compare: `v_cmp[x]_{cond}_{type}`. Names are `&'static str` like the rest of
/// the table, so each is built once.
fn cmp_name(x: bool, cond: &str, ty: &str) -> &'static str {
    static NAMES: std::sync::OnceLock<std::sync::Mutex<std::collections::HashMap<String, &'static str>>> =
        std::sync::OnceLock::new();
    let name = format!("{}_{cond}_{ty}", if x { "v_cmpx" } else { "v_cmp" });
    let names = NAMES.get_or_init(Default::default);
    let Ok(mut m) = names.lock() else { return "v_cmp" };
    // At most 2 x (16 x 3 + 8 x 6 + 3) names ever exist.
    m.entry(name.clone()).or_insert_with(|| Box::leak(name.into_boxed_str()))
}

/// VOP3-only opcodes (VOP3 opcodes below 256 are VOPC, 256-383 VOP2, 384-511 VOP1).
fn vop3(o: u32) -> Option<Op> {
    const I3: [T; 3] = [B32, B32, B32];
    Some(match o {
        522 => op("v_mad_i32_i24", Sem::VMadI32I24, B32, I3, 3),
        523 => op("v_mad_u32_u24", Sem::VMadU32U24, B32, I3, 3),
        528 => op("v_bfe_u32", Sem::VBfeU32, B32, I3, 3),
        529 => op("v_bfe_i32", Sem::VBfeI32, B32, I3, 3),
        530 => op("v_bfi_b32", Sem::VBfi, B32, I3, 3),
        531 => op("v_fma_f32", Sem::VFma, F32, F1, 3),
        532 => op("v_fma_f64", Sem::VFma, F64, D1, 3),
        534 => op("v_alignbit_b32", Sem::VAlignbit, B32, I3, 3),
        535 => op("v_alignbyte_b32", Sem::VAlignbyte, B32, I3, 3),
        538 => op("v_min3_i32", Sem::VMin3(true), B32, I3, 3),
        539 => op("v_min3_u32", Sem::VMin3(false), B32, I3, 3),
        541 => op("v_max3_i32", Sem::VMax3(true), B32, I3, 3),
        542 => op("v_max3_u32", Sem::VMax3(false), B32, I3, 3),
        544 => op("v_med3_i32", Sem::VMed3(true), B32, I3, 3),
        545 => op("v_med3_u32", Sem::VMed3(false), B32, I3, 3),
        551 => op("v_div_fixup_f32", Sem::VDivFixup, F32, F1, 3),
        577 => op("v_mad_u16", Sem::VMad16(false), B16, [B16, B16, B16], 3),
        580 => op("v_perm_b32", Sem::VPerm, B32, I3, 3),
        581 => op("v_xad_u32", Sem::VXad, B32, I3, 3),
        583 => op("v_add_lshl_u32", Sem::VAddLshl, B32, I3, 3),
        586 => op("v_min3_i16", Sem::VMin3(true), B16, [B16, B16, B16], 3),
        587 => op("v_min3_u16", Sem::VMin3(false), B16, [B16, B16, B16], 3),
        589 => op("v_max3_i16", Sem::VMax3(true), B16, [B16, B16, B16], 3),
        590 => op("v_max3_u16", Sem::VMax3(false), B16, [B16, B16, B16], 3),
        592 => op("v_med3_i16", Sem::VMed3(true), B16, [B16, B16, B16], 3),
        593 => op("v_med3_u16", Sem::VMed3(false), B16, [B16, B16, B16], 3),
        595 => op("v_mad_i16", Sem::VMad16(true), B16, [B16, B16, B16], 3),
        552 => op("v_div_fixup_f64", Sem::VDivFixup, F64, D1, 3),
        567 => op("v_div_fmas_f32", Sem::VDivFmas, F32, F1, 3),
        568 => op("v_div_fmas_f64", Sem::VDivFmas, F64, D1, 3),
        576 => op("v_xor3_b32", Sem::VXor3, B32, I3, 3),
        582 => op("v_lshl_add_u32", Sem::VLshlAdd, B32, I3, 3),
        596 => op("v_div_fixup_f16", Sem::VDivFixup, F16, H1, 3),
        597 => op("v_add3_u32", Sem::VAdd3, B32, I3, 3),
        598 => op("v_lshl_or_b32", Sem::VLshlOr, B32, I3, 3),
        599 => op("v_and_or_b32", Sem::VAndOr, B32, I3, 3),
        600 => op("v_or3_b32", Sem::VOr3, B32, I3, 3),
        601 => op("v_mad_u32_u16", Sem::VMad16(false), B32, [B16, B16, B32], 3),
        602 => op("v_mad_i32_i16", Sem::VMad16(true), B32, [B16, B16, B32], 3),
        610 => op("v_maxmin_u32", Sem::VMaxMin(false), B32, I3, 3),
        611 => op("v_minmax_u32", Sem::VMinMax(false), B32, I3, 3),
        612 => op("v_maxmin_i32", Sem::VMaxMin(true), B32, I3, 3),
        613 => op("v_minmax_i32", Sem::VMinMax(true), B32, I3, 3),
        764 => op("v_div_scale_f32", Sem::VDivScale, F32, F1, 3),
        765 => op("v_div_scale_f64", Sem::VDivScale, F64, D1, 3),
        766 => op("v_mad_u64_u32", Sem::VMadU64U32, B64, [B32, B32, B64], 3),
        767 => op("v_mad_i64_i32", Sem::VMadI64I32, B64, [B32, B32, B64], 3),
        768 => op("v_add_co_u32", Sem::VAddCo, B32, I3, 2),
        769 => op("v_sub_co_u32", Sem::VSubCo, B32, I3, 2),
        770 => op("v_subrev_co_u32", Sem::VSubrevCo, B32, I3, 2),
        771 => op("v_add_nc_u16", Sem::VAddNcU16, B16, [B16, B16, B16], 2),
        772 => op("v_sub_nc_u16", Sem::VSubNcU16, B16, [B16, B16, B16], 2),
        773 => op("v_mul_lo_u16", Sem::VMulLoU16, B16, [B16, B16, B16], 2),
        777 => op("v_max_u16", Sem::VMaxU16, B16, [B16, B16, B16], 2),
        778 => op("v_max_i16", Sem::VMaxI16, B16, [B16, B16, B16], 2),
        779 => op("v_min_u16", Sem::VMinU16, B16, [B16, B16, B16], 2),
        780 => op("v_min_i16", Sem::VMinI16, B16, [B16, B16, B16], 2),
        785 => op("v_pack_b32_f16", Sem::VPackF16, B32, H1, 2),
        796 => op("v_ldexp_f32", Sem::VLdexp, F32, [F32, B32, B32], 2),
        798 => op("v_bcnt_u32_b32", Sem::VBcnt, B32, I3, 2),
        807 => op("v_add_f64", Sem::VAddF, F64, D1, 2),
        808 => op("v_mul_f64", Sem::VMulF, F64, D1, 2),
        809 => op("v_min_f64", Sem::VMinF, F64, D1, 2),
        810 => op("v_max_f64", Sem::VMaxF, F64, D1, 2),
        811 => op("v_ldexp_f64", Sem::VLdexp, F64, [F64, B32, B32], 2),
        812 => op("v_mul_lo_u32", Sem::VMulLo, B32, I3, 2),
        813 => op("v_mul_hi_u32", Sem::VMulHiU32, B32, I3, 2),
        814 => op("v_mul_hi_i32", Sem::VMulHiI32, B32, I3, 2),
        824 => op("v_lshlrev_b16", Sem::VLshlrevB16, B16, [B16, B16, B16], 2),
        825 => op("v_lshrrev_b16", Sem::VLshrrevB16, B16, [B16, B16, B16], 2),
        826 => op("v_ashrrev_i16", Sem::VAshrrevI16, B16, [B16, B16, B16], 2),
        828 => op("v_lshlrev_b64", Sem::VLshlrev, B64, [B32, B64, B64], 2),
        829 => op("v_lshrrev_b64", Sem::VLshrrev, B64, [B32, B64, B64], 2),
        830 => op("v_ashrrev_i64", Sem::VAshrrev, B64, [B32, B64, B64], 2),
        864 => op("v_readlane_b32", Sem::VReadlane, B32, I3, 2),
        865 => op("v_writelane_b32", Sem::VWritelane, B32, I3, 2),
        _ => return None,
    })
}

fn vop3p(o: u32) -> Option<Op> {
    const M: [T; 3] = [F32, F32, F32];
    const P: [T; 3] = [B32, B32, B32];
    Some(match o {
        0 => op("v_pk_mad_i16", Sem::VPk(Pk::MadI), B32, P, 3),
        1 => op("v_pk_mul_lo_u16", Sem::VPk(Pk::MulLo), B32, P, 2),
        2 => op("v_pk_add_i16", Sem::VPk(Pk::Add), B32, P, 2),
        3 => op("v_pk_sub_i16", Sem::VPk(Pk::Sub), B32, P, 2),
        4 => op("v_pk_lshlrev_b16", Sem::VPk(Pk::Lshlrev), B32, P, 2),
        5 => op("v_pk_lshrrev_b16", Sem::VPk(Pk::Lshrrev), B32, P, 2),
        6 => op("v_pk_ashrrev_i16", Sem::VPk(Pk::Ashrrev), B32, P, 2),
        7 => op("v_pk_max_i16", Sem::VPk(Pk::MaxI), B32, P, 2),
        8 => op("v_pk_min_i16", Sem::VPk(Pk::MinI), B32, P, 2),
        9 => op("v_pk_mad_u16", Sem::VPk(Pk::MadU), B32, P, 3),
        10 => op("v_pk_add_u16", Sem::VPk(Pk::Add), B32, P, 2),
        11 => op("v_pk_sub_u16", Sem::VPk(Pk::Sub), B32, P, 2),
        12 => op("v_pk_max_u16", Sem::VPk(Pk::MaxU), B32, P, 2),
        13 => op("v_pk_min_u16", Sem::VPk(Pk::MinU), B32, P, 2),
        14 => op("v_pk_fma_f16", Sem::VPkF(PkF::Fma), B32, P, 3),
        15 => op("v_pk_add_f16", Sem::VPkF(PkF::Add), B32, P, 2),
        16 => op("v_pk_mul_f16", Sem::VPkF(PkF::Mul), B32, P, 2),
        17 => op("v_pk_min_f16", Sem::VPkF(PkF::Min), B32, P, 2),
        18 => op("v_pk_max_f16", Sem::VPkF(PkF::Max), B32, P, 2),
        32 => op("v_fma_mix_f32", Sem::VFmaMix, F32, M, 3),
        33 => op("v_fma_mixlo_f16", Sem::VFmaMixlo, F16, M, 3),
        34 => op("v_fma_mixhi_f16", Sem::VFmaMixhi, F16, M, 3),
        _ => return None,
    })
}

/// VOPD: the X and Y opcodes (Y adds add_nc_u32, lshlrev_b32 and and_b32).
fn vopd(o: u32, y: bool) -> Option<Op> {
    Some(match o {
        0 => op("v_dual_fmac_f32", Sem::VFmac, F32, F1, 2),
        1 => op("v_dual_fmaak_f32", Sem::VFmaak, F32, F1, 2),
        2 => op("v_dual_fmamk_f32", Sem::VFmamk, F32, F1, 2),
        3 => op("v_dual_mul_f32", Sem::VMulF, F32, F1, 2),
        4 => op("v_dual_add_f32", Sem::VAddF, F32, F1, 2),
        5 => op("v_dual_sub_f32", Sem::VSubF, F32, F1, 2),
        6 => op("v_dual_subrev_f32", Sem::VSubrevF, F32, F1, 2),
        8 => op("v_dual_mov_b32", Sem::VMov, B32, I1, 1),
        9 => op("v_dual_cndmask_b32", Sem::VCndmask, B32, I1, 2),
        10 => op("v_dual_max_f32", Sem::VMaxF, F32, F1, 2),
        11 => op("v_dual_min_f32", Sem::VMinF, F32, F1, 2),
        16 if y => op("v_dual_add_nc_u32", Sem::VAddNc, B32, I1, 2),
        17 if y => op("v_dual_lshlrev_b32", Sem::VLshlrev, B32, I1, 2),
        18 if y => op("v_dual_and_b32", Sem::VAnd, B32, I1, 2),
        _ => return None,
    })
}

fn global(o: u32) -> Option<Op> {
    Some(match o {
        16 => op("global_load_u8", Sem::GLoad(Ext::Zero), B32, [B32, B8, B32], 0),
        17 => op("global_load_i8", Sem::GLoad(Ext::Sign), B32, [B32, B8, B32], 0),
        18 => op("global_load_u16", Sem::GLoad(Ext::Zero), B32, [B32, B16, B32], 0),
        19 => op("global_load_i16", Sem::GLoad(Ext::Sign), B32, [B32, B16, B32], 0),
        20 => op("global_load_b32", Sem::GLoad(Ext::Zero), B32, I1, 0),
        21 => op("global_load_b64", Sem::GLoad(Ext::Zero), B64, L1, 0),
        22 => op("global_load_b96", Sem::GLoad(Ext::Zero), B96, [B96, B96, B96], 0),
        23 => op("global_load_b128", Sem::GLoad(Ext::Zero), B128, [B128, B128, B128], 0),
        24 => op("global_store_b8", Sem::GStore, B32, [B32, B8, B32], 0),
        25 => op("global_store_b16", Sem::GStore, B32, [B32, B16, B32], 0),
        26 => op("global_store_b32", Sem::GStore, B32, I1, 0),
        27 => op("global_store_b64", Sem::GStore, B64, L1, 0),
        28 => op("global_store_b96", Sem::GStore, B96, [B96, B96, B96], 0),
        29 => op("global_store_b128", Sem::GStore, B128, [B128, B128, B128], 0),
        30 => op("global_load_d16_u8", Sem::GLoadD16(Ext::Zero, false), B32, [B32, B8, B32], 0),
        31 => op("global_load_d16_i8", Sem::GLoadD16(Ext::Sign, false), B32, [B32, B8, B32], 0),
        32 => op("global_load_d16_b16", Sem::GLoadD16(Ext::Zero, false), B32, [B32, B16, B32], 0),
        33 => op("global_load_d16_hi_u8", Sem::GLoadD16(Ext::Zero, true), B32, [B32, B8, B32], 0),
        34 => op("global_load_d16_hi_i8", Sem::GLoadD16(Ext::Sign, true), B32, [B32, B8, B32], 0),
        35 => op("global_load_d16_hi_b16", Sem::GLoadD16(Ext::Zero, true), B32, [B32, B16, B32], 0),
        36 => op("global_store_d16_hi_b8", Sem::GStoreHi, B32, [B32, B8, B32], 0),
        37 => op("global_store_d16_hi_b16", Sem::GStoreHi, B32, [B32, B16, B32], 0),
        // Atomics: opcodes and encodings as `llc-19 -mcpu=gfx1100 -show-mc-encoding` prints them.
        52 => op("global_atomic_cmpswap_b32", Sem::GAtomicCmpswap, B32, L1, 0),
        53 => op("global_atomic_add_u32", Sem::GAtomicAdd, B32, I1, 0),
        66 => op("global_atomic_cmpswap_b64", Sem::GAtomicCmpswap, B64, [B128, B128, B128], 0),
        67 => op("global_atomic_add_u64", Sem::GAtomicAdd, B64, L1, 0),
        _ => return None,
    })
}

fn ds(o: u32) -> Option<Op> {
    Some(match o {
        13 => op("ds_store_b32", Sem::DsStore, B32, I1, 0),
        77 => op("ds_store_b64", Sem::DsStore, B64, L1, 0),
        54 => op("ds_load_b32", Sem::DsLoad, B32, I1, 0),
        118 => op("ds_load_b64", Sem::DsLoad, B64, L1, 0),
        _ => return None,
    })
}

/// A byte in memory (the width of `_u8`/`_b8` accesses; never a register type).
#[allow(non_upper_case_globals)]
const B8: T = T::B16;

/// One decoded instruction. Register operands use the 9-bit source encoding (VGPRs are 256 + n).
#[derive(Clone, Debug)]
pub struct Inst {
    pub enc: Enc,
    pub op: Op,
    /// Whether a VOP1/VOP2/VOPC opcode came in its VOP3 encoding (`_e64`).
    pub e64: bool,
    /// Byte offset in the code section.
    pub pc: u32,
    /// Length in 32-bit words.
    pub len: u8,
    /// The vector or scalar destination (VGPRs as 256 + n).
    pub dst: u16,
    /// The scalar destination of VOP3SD forms and of `_e64` compares.
    pub sdst: u16,
    pub src: [u16; 3],
    pub lit: Option<u32>,
    pub neg: u8,
    pub abs: u8,
    pub clamp: bool,
    pub omod: u8,
    pub opsel: u8,
    pub opsel_hi: u8,
    /// SOPP/SOPK immediate, SMEM/FLAT/DS offset.
    pub imm: i32,
    /// FLAT: the scalar base (124 = none); SMEM: the soffset register.
    pub saddr: u16,
    /// FLAT/DS data register; SMEM data register.
    pub data: u16,
    /// FLAT/DS address register; SMEM base pair.
    pub addr: u16,
    pub glc: bool,
    pub slc: bool,
    pub dlc: bool,
    /// The second half of a VOPD pair.
    pub y: Option<Box<Inst>>,
}

/// Why a word sequence is not an instruction the emulator knows.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeError {
    pub pc: u32,
    pub message: String,
}

impl std::error::Error for DecodeError {}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at code offset {:#x}: {}", self.pc, self.message)
    }
}

fn blank(enc: Enc, op: Op, pc: u32) -> Inst {
    Inst {
        enc,
        op,
        e64: false,
        pc,
        len: 1,
        dst: 0,
        sdst: 124,
        src: [0; 3],
        lit: None,
        neg: 0,
        abs: 0,
        clamp: false,
        omod: 0,
        opsel: 0,
        opsel_hi: 0,
        imm: 0,
        saddr: 124,
        data: 0,
        addr: 0,
        glc: false,
        slc: false,
        dlc: false,
        y: None,
    }
}

fn bits(w: u32, lo: u32, n: u32) -> u32 {
    (w >> lo) & ((1u32 << n) - 1)
}

/// Decodes the instruction at word `i` of `code`.
pub fn decode(code: &[u32], i: usize) -> Result<Inst, DecodeError> {
    let pc = (i * 4) as u32;
    let w = code[i];
    let word = |k: usize| -> Result<u32, DecodeError> {
        code.get(i + k)
            .copied()
            .ok_or(DecodeError { pc, message: "the instruction is cut off by the end of the code".into() })
    };
    let unknown = |fmt: &str, o: u32| DecodeError {
        pc,
        message: format!("unknown {fmt} opcode {o} (word {w:#010x}); the emulator does not implement this instruction"),
    };
    let mut inst;
    if w >> 23 == 0x17d {
        let o = bits(w, 8, 8);
        inst = blank(Enc::Sop1, sop1(o).ok_or_else(|| unknown("SOP1", o))?, pc);
        inst.dst = bits(w, 16, 7) as u16;
        inst.src[0] = bits(w, 0, 8) as u16;
    } else if w >> 23 == 0x17e {
        let o = bits(w, 16, 7);
        inst = blank(Enc::Sopc, sopc(o).ok_or_else(|| unknown("SOPC", o))?, pc);
        inst.src = [bits(w, 0, 8) as u16, bits(w, 8, 8) as u16, 0];
    } else if w >> 23 == 0x17f {
        let o = bits(w, 16, 7);
        inst = blank(Enc::Sopp, sopp(o).ok_or_else(|| unknown("SOPP", o))?, pc);
        inst.imm = (w & 0xffff) as u16 as i16 as i32;
    } else if w >> 28 == 0xb {
        let o = bits(w, 23, 5);
        inst = blank(Enc::Sopk, sopk(o).ok_or_else(|| unknown("SOPK", o))?, pc);
        inst.dst = bits(w, 16, 7) as u16;
        inst.imm = (w & 0xffff) as u16 as i16 as i32;
    } else if w >> 30 == 2 {
        let o = bits(w, 23, 7);
        inst = blank(Enc::Sop2, sop2(o).ok_or_else(|| unknown("SOP2", o))?, pc);
        inst.dst = bits(w, 16, 7) as u16;
        inst.src = [bits(w, 0, 8) as u16, bits(w, 8, 8) as u16, 0];
    } else if w >> 26 == 0x3d {
        let o = bits(w, 18, 8);
        inst = blank(Enc::Smem, smem(o).ok_or_else(|| unknown("SMEM", o))?, pc);
        let w1 = word(1)?;
        inst.len = 2;
        inst.data = bits(w, 6, 7) as u16;
        inst.addr = (bits(w, 0, 6) * 2) as u16;
        inst.glc = bits(w, 14, 1) == 1;
        inst.dlc = bits(w, 13, 1) == 1;
        inst.saddr = bits(w1, 25, 7) as u16;
        inst.imm = ((bits(w1, 0, 21) << 11) as i32) >> 11;
    } else if w >> 25 == 0x3f {
        let o = bits(w, 9, 8);
        inst = blank(Enc::Vop1, vop1(o).ok_or_else(|| unknown("VOP1", o))?, pc);
        let d = bits(w, 17, 8) as u16;
        inst.dst = if inst.op.sem == Sem::VReadfirstlane { d } else { 256 + d };
        inst.src[0] = bits(w, 0, 9) as u16;
    } else if w >> 25 == 0x3e {
        let o = bits(w, 17, 8);
        inst = blank(Enc::Vopc, vopc(o).ok_or_else(|| unknown("VOPC", o))?, pc);
        inst.src = [bits(w, 0, 9) as u16, 256 + bits(w, 9, 8) as u16, 0];
        inst.sdst = 106;
    } else if w >> 31 == 0 {
        let o = bits(w, 25, 6);
        inst = blank(Enc::Vop2, vop2(o).ok_or_else(|| unknown("VOP2", o))?, pc);
        inst.dst = 256 + bits(w, 17, 8) as u16;
        inst.src = [bits(w, 0, 9) as u16, 256 + bits(w, 9, 8) as u16, 106];
        if matches!(inst.op.sem, Sem::VAddCoCi | Sem::VSubCoCi | Sem::VSubrevCoCi) {
            inst.sdst = 106;
        }
    } else if w >> 26 == 0x35 {
        let o = bits(w, 16, 10);
        let (enc_op, e64) = match o {
            0..=255 => (vopc(o), true),
            256..=383 => (vop2(o - 256), true),
            384..=511 => (vop1(o - 384), true),
            _ => (vop3(o), false),
        };
        inst = blank(Enc::Vop3, enc_op.ok_or_else(|| unknown("VOP3", o))?, pc);
        inst.e64 = e64;
        let w1 = word(1)?;
        inst.len = 2;
        let sd = inst.op.sem.writes_sdst();
        let vd = bits(w, 0, 8) as u16;
        match inst.op.sem {
            Sem::VCmp(..)
            | Sem::VCmpClass
            | Sem::VCmpx(..)
            | Sem::VCmpxClass
            | Sem::VReadlane
            | Sem::VReadfirstlane => {
                inst.sdst = vd;
                inst.dst = vd;
            }
            _ => inst.dst = 256 + vd,
        }
        if sd {
            inst.sdst = bits(w, 8, 7) as u16;
        } else {
            inst.abs = bits(w, 8, 3) as u8;
            inst.opsel = bits(w, 11, 4) as u8;
        }
        inst.clamp = bits(w, 15, 1) == 1;
        inst.src = [bits(w1, 0, 9) as u16, bits(w1, 9, 9) as u16, bits(w1, 18, 9) as u16];
        inst.omod = bits(w1, 27, 2) as u8;
        inst.neg = bits(w1, 29, 3) as u8;
    } else if w >> 24 == 0xcc {
        let o = bits(w, 16, 7);
        inst = blank(Enc::Vop3p, vop3p(o).ok_or_else(|| unknown("VOP3P", o))?, pc);
        let w1 = word(1)?;
        inst.len = 2;
        inst.dst = 256 + bits(w, 0, 8) as u16;
        // neg_hi doubles as abs for the mixed-precision FMAs.
        inst.abs = bits(w, 8, 3) as u8;
        inst.opsel = bits(w, 11, 3) as u8;
        inst.opsel_hi = (bits(w1, 27, 2) | (bits(w, 14, 1) << 2)) as u8;
        inst.clamp = bits(w, 15, 1) == 1;
        inst.src = [bits(w1, 0, 9) as u16, bits(w1, 9, 9) as u16, bits(w1, 18, 9) as u16];
        inst.neg = bits(w1, 29, 3) as u8;
    } else if w >> 26 == 0x32 {
        let (ox, oy) = (bits(w, 22, 4), bits(w, 17, 5));
        let x = vopd(ox, false).ok_or_else(|| unknown("VOPD X", ox))?;
        let y = vopd(oy, true).ok_or_else(|| unknown("VOPD Y", oy))?;
        let w1 = word(1)?;
        inst = blank(Enc::Vopd, x, pc);
        inst.len = 2;
        inst.dst = 256 + bits(w1, 24, 8) as u16;
        inst.src = [bits(w, 0, 9) as u16, 256 + bits(w, 9, 8) as u16, 106];
        let mut yi = blank(Enc::Vopd, y, pc);
        let dx = bits(w1, 24, 8);
        yi.dst = 256 + ((bits(w1, 17, 7) << 1) | ((dx & 1) ^ 1)) as u16;
        yi.src = [bits(w1, 0, 9) as u16, 256 + bits(w1, 9, 8) as u16, 106];
        inst.y = Some(Box::new(yi));
    } else if w >> 26 == 0x37 {
        let seg = bits(w, 16, 2);
        let o = bits(w, 18, 7);
        if seg != 2 {
            return Err(DecodeError {
                pc,
                message: format!(
                    "a {} memory instruction (word {w:#010x}); the emulator runs global memory only",
                    ["flat", "scratch", "global", "?"][seg as usize]
                ),
            });
        }
        inst = blank(Enc::Global, global(o).ok_or_else(|| unknown("GLOBAL", o))?, pc);
        let w1 = word(1)?;
        inst.len = 2;
        inst.imm = ((bits(w, 0, 13) << 19) as i32) >> 19;
        inst.dlc = bits(w, 13, 1) == 1;
        inst.glc = bits(w, 14, 1) == 1;
        inst.slc = bits(w, 15, 1) == 1;
        inst.addr = 256 + bits(w1, 0, 8) as u16;
        inst.data = 256 + bits(w1, 8, 8) as u16;
        inst.saddr = bits(w1, 16, 7) as u16;
        inst.dst = 256 + bits(w1, 24, 8) as u16;
    } else if w >> 26 == 0x36 {
        let o = bits(w, 18, 8);
        inst = blank(Enc::Ds, ds(o).ok_or_else(|| unknown("DS", o))?, pc);
        let w1 = word(1)?;
        inst.len = 2;
        if bits(w, 17, 1) == 1 {
            return Err(DecodeError { pc, message: "a GDS access; the emulator has no global data share".into() });
        }
        inst.imm = bits(w, 0, 16) as i32;
        inst.addr = 256 + bits(w1, 0, 8) as u16;
        inst.data = 256 + bits(w1, 8, 8) as u16;
        inst.dst = 256 + bits(w1, 24, 8) as u16;
    } else {
        return Err(DecodeError { pc, message: format!("word {w:#010x} is in no RDNA3 encoding the emulator knows") });
    }
    // One trailing 32-bit literal serves every source that asks for it (255).
    let wants_lit = match inst.enc {
        Enc::Sop2 | Enc::Sopc => inst.src[..2].contains(&255),
        Enc::Sop1 => inst.src[0] == 255,
        Enc::Vop1 | Enc::Vopc => inst.src[0] == 255,
        Enc::Vop2 => inst.src[0] == 255 || matches!(inst.op.sem, Sem::VFmamk | Sem::VFmaak),
        Enc::Vop3 | Enc::Vop3p => inst.src[..inst.op.n as usize].contains(&255),
        Enc::Vopd => {
            let y = inst.y.as_ref().map(|y| y.src[0] == 255 || matches!(y.op.sem, Sem::VFmamk | Sem::VFmaak));
            inst.src[0] == 255 || matches!(inst.op.sem, Sem::VFmamk | Sem::VFmaak) || y == Some(true)
        }
        _ => false,
    };
    if wants_lit {
        inst.lit = Some(word(inst.len as usize)?);
        inst.len += 1;
        if let Some(y) = &mut inst.y {
            y.lit = inst.lit;
        }
    }
    Ok(inst)
}

/// Decodes a whole code section. Errors name the first instruction that is not known.
pub fn decode_all(code: &[u32]) -> Result<Vec<Inst>, DecodeError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < code.len() {
        let inst = decode(code, i)?;
        i += inst.len as usize;
        out.push(inst);
    }
    Ok(out)
}

/// The text of a scalar or vector register range starting at `r` (VGPRs are 256 + n).
pub fn reg(r: u16, n: u16) -> String {
    let (p, i) = if r >= 256 { ("v", r - 256) } else { ("s", r) };
    if n == 1 { format!("{p}{i}") } else { format!("{p}[{i}:{}]", i + n - 1) }
}

/// The text of a source operand of type `t`.
pub fn operand(code: u16, t: T, lit: Option<u32>) -> String {
    let n = t.regs();
    match code {
        0..=105 => reg(code, n),
        106 if n == 2 => "vcc".into(),
        106 => "vcc_lo".into(),
        107 => "vcc_hi".into(),
        124 => "null".into(),
        125 => "m0".into(),
        126 if n == 2 => "exec".into(),
        126 => "exec_lo".into(),
        127 => "exec_hi".into(),
        128..=192 => (code - 128).to_string(),
        193..=208 => format!("-{}", code - 192),
        240 => "0.5".into(),
        241 => "-0.5".into(),
        242 => "1.0".into(),
        243 => "-1.0".into(),
        244 => "2.0".into(),
        245 => "-2.0".into(),
        246 => "4.0".into(),
        247 => "-4.0".into(),
        248 => "0.15915494".into(),
        253 => "src_scc".into(),
        255 => format!("{:#x}", lit.unwrap_or(0)),
        256.. => reg(code, n),
        _ => format!("src_{code}"),
    }
}

fn modded(code: u16, t: T, lit: Option<u32>, neg: bool, abs: bool) -> String {
    let mut s = operand(code, t, lit);
    if abs {
        s = format!("|{s}|");
    }
    if neg {
        s = format!("-{s}");
    }
    s
}

impl Inst {
    /// The type of source `i`.
    pub fn st(&self, i: usize) -> T {
        self.op.s[i]
    }

    fn src_text(&self, i: usize) -> String {
        if matches!(self.op.sem, Sem::VPk(_) | Sem::VPkF(_)) {
            // Packed operations print their negations as neg_lo/neg_hi flags.
            return modded(self.src[i], self.st(i), self.lit, false, false);
        }
        modded(self.src[i], self.st(i), self.lit, self.neg >> i & 1 == 1, self.abs >> i & 1 == 1)
    }

    fn name(&self) -> String {
        let n = self.op.name;
        match self.enc {
            Enc::Vop1 | Enc::Vop2 | Enc::Vopc => {
                if matches!(self.op.sem, Sem::VReadfirstlane | Sem::VFmamk | Sem::VFmaak) {
                    n.to_string()
                } else {
                    format!("{n}_e32")
                }
            }
            Enc::Vop3 if self.e64 && !matches!(self.op.sem, Sem::VAddCo | Sem::VSubCo | Sem::VSubrevCo) => {
                format!("{n}_e64")
            }
            _ => n.to_string(),
        }
    }

    fn vop_text(&self, out: &mut String) {
        let d = modded(self.dst, self.op.d, None, false, false);
        let sd = operand(self.sdst, T::B32, None);
        let srcs: Vec<String> = (0..self.op.n as usize).map(|i| self.src_text(i)).collect();
        let k = format!("{:#x}", self.lit.unwrap_or(0));
        let e32 = self.enc != Enc::Vop3;
        let parts: Vec<String> = match self.op.sem {
            Sem::VCmp(..) | Sem::VCmpClass => [vec![if e32 { "vcc_lo".into() } else { sd }], srcs].concat(),
            Sem::VCmpx(..) | Sem::VCmpxClass => srcs,
            Sem::VCndmask if self.enc == Enc::Vopd => [vec![d], srcs[..2].to_vec()].concat(),
            Sem::VCndmask => {
                let m = if e32 { "vcc_lo".into() } else { operand(self.src[2], T::B32, None) };
                [vec![d], srcs[..2].to_vec(), vec![m]].concat()
            }
            Sem::VAddCoCi | Sem::VSubCoCi | Sem::VSubrevCoCi => {
                if e32 {
                    vec![d, "vcc_lo".into(), srcs[0].clone(), srcs[1].clone(), "vcc_lo".into()]
                } else {
                    let c = operand(self.src[2], T::B32, None);
                    vec![d, sd, srcs[0].clone(), srcs[1].clone(), c]
                }
            }
            Sem::VAddCo | Sem::VSubCo | Sem::VSubrevCo | Sem::VDivScale | Sem::VMadU64U32 => {
                [vec![d, sd], srcs].concat()
            }
            Sem::VFmamk => vec![d, srcs[0].clone(), k, srcs[1].clone()],
            Sem::VFmaak => vec![d, srcs[0].clone(), srcs[1].clone(), k],
            Sem::VReadlane | Sem::VReadfirstlane => [vec![reg(self.dst, 1)], srcs].concat(),
            _ => [vec![d], srcs].concat(),
        };
        out.push_str(&self.name());
        if !parts.is_empty() {
            out.push(' ');
            out.push_str(&parts.join(", "));
        }
        let flags = |out: &mut String, v: u8, n: usize, name: &str| {
            if v != 0 {
                let b: Vec<String> = (0..n).map(|i| (v >> i & 1).to_string()).collect();
                let _ = write!(out, " {name}:[{}]", b.join(","));
            }
        };
        if self.enc == Enc::Vop3p && matches!(self.op.sem, Sem::VPk(_) | Sem::VPkF(_)) {
            // Packed operations name their n sources; op_sel_hi defaults to all ones.
            let n = self.op.n as usize;
            let all = (1u8 << n) - 1;
            flags(out, self.opsel & all, n, "op_sel");
            if self.opsel_hi & all != all {
                let b: Vec<String> = (0..n).map(|i| (self.opsel_hi >> i & 1).to_string()).collect();
                let _ = write!(out, " op_sel_hi:[{}]", b.join(","));
            }
            flags(out, self.neg & all, n, "neg_lo");
            flags(out, self.abs & all, n, "neg_hi");
        } else if self.enc == Enc::Vop3p {
            flags(out, self.opsel, 3, "op_sel");
            flags(out, self.opsel_hi, 3, "op_sel_hi");
        } else if self.enc == Enc::Vop3 {
            // op_sel names the sources and then the destination.
            let n = self.op.n as usize;
            let v = (self.opsel & ((1 << n) - 1)) | ((self.opsel >> 3 & 1) << n);
            flags(out, v, n + 1, "op_sel");
        }
        if self.clamp {
            out.push_str(" clamp");
        }
        match self.omod {
            1 => out.push_str(" mul:2"),
            2 => out.push_str(" mul:4"),
            3 => out.push_str(" div:2"),
            _ => {}
        }
    }
}

const DELAY_IDS: [&str; 12] = [
    "NO_DEP",
    "VALU_DEP_1",
    "VALU_DEP_2",
    "VALU_DEP_3",
    "VALU_DEP_4",
    "TRANS32_DEP_1",
    "TRANS32_DEP_2",
    "TRANS32_DEP_3",
    "FMA_ACCUM_CYCLE_1",
    "SALU_CYCLE_1",
    "SALU_CYCLE_2",
    "SALU_CYCLE_3",
];
const DELAY_SKIPS: [&str; 6] = ["SAME", "NEXT", "SKIP_1", "SKIP_2", "SKIP_3", "SKIP_4"];

/// `s_waitcnt`'s counters on gfx11: vmcnt, expcnt, lgkmcnt.
pub fn waitcnt_fields(imm: u16) -> (u32, u32, u32) {
    let v = u32::from(imm);
    (bits(v, 10, 6), bits(v, 0, 3), bits(v, 4, 6))
}

impl fmt::Display for Inst {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        let name = self.op.name;
        let src = |i: usize| operand(self.src[i], self.op.s[i], self.lit);
        match self.enc {
            Enc::Sop2 => {
                let _ = write!(s, "{name} {}, {}, {}", operand(self.dst, self.op.d, None), src(0), src(1));
            }
            Enc::Sop1 => {
                let _ = write!(s, "{name} {}, {}", operand(self.dst, self.op.d, None), src(0));
            }
            Enc::Sopc => {
                let _ = write!(s, "{name} {}, {}", src(0), src(1));
            }
            Enc::Sopk => {
                let _ = write!(s, "{name} {}, {:#x}", operand(self.dst, self.op.d, None), self.imm as u16);
            }
            Enc::Sopp => {
                let imm = self.imm as u16;
                match name {
                    "s_code_end" | "s_barrier" => s.push_str(name),
                    "s_endpgm" if imm == 0 => s.push_str(name),
                    "s_nop" => {
                        let _ = write!(s, "{name} {imm}");
                    }
                    "s_waitcnt" => {
                        let (vm, exp, lgkm) = waitcnt_fields(imm);
                        let mut parts = Vec::new();
                        if vm != 63 {
                            parts.push(format!("vmcnt({vm})"));
                        }
                        if exp != 7 {
                            parts.push(format!("expcnt({exp})"));
                        }
                        if lgkm != 63 {
                            parts.push(format!("lgkmcnt({lgkm})"));
                        }
                        if parts.is_empty() {
                            let _ = write!(s, "{name} {imm:#x}");
                        } else {
                            let _ = write!(s, "{name} {}", parts.join(" "));
                        }
                    }
                    "s_delay_alu" => {
                        let v = u32::from(imm);
                        let mut parts = Vec::new();
                        let (id0, skip, id1) = (bits(v, 0, 4), bits(v, 4, 3), bits(v, 7, 4));
                        let id = |x: u32| DELAY_IDS.get(x as usize).copied().unwrap_or("?");
                        if id0 != 0 {
                            parts.push(format!("instid0({})", id(id0)));
                        }
                        if skip != 0 {
                            parts.push(format!("instskip({})", DELAY_SKIPS.get(skip as usize).copied().unwrap_or("?")));
                        }
                        if id1 != 0 {
                            parts.push(format!("instid1({})", id(id1)));
                        }
                        let _ = write!(s, "{name} {}", parts.join(" | "));
                    }
                    "s_sendmsg" if imm == 3 => {
                        let _ = write!(s, "{name} sendmsg(MSG_DEALLOC_VGPRS)");
                    }
                    // LLVM prints branch offsets as unsigned 16-bit numbers.
                    n if n.starts_with("s_branch") || n.starts_with("s_cbranch") => {
                        let _ = write!(s, "{name} {imm}");
                    }
                    _ => {
                        let _ = write!(s, "{name} {imm:#x}");
                    }
                }
            }
            Enc::Smem => {
                let _ = write!(s, "{name} {}, {}, ", reg(self.data, self.op.d.regs()), reg(self.addr, 2));
                if self.saddr != 124 {
                    let _ = write!(s, "{}", operand(self.saddr, T::B32, None));
                    if self.imm != 0 {
                        let _ = write!(s, " offset:{:#x}", self.imm);
                    }
                } else if self.imm != 0 {
                    let _ = write!(s, "{:#x}", self.imm);
                } else {
                    s.push_str("null");
                }
                if self.glc {
                    s.push_str(" glc");
                }
                if self.dlc {
                    s.push_str(" dlc");
                }
            }
            Enc::Vop1 | Enc::Vop2 | Enc::Vopc | Enc::Vop3 | Enc::Vop3p => self.vop_text(&mut s),
            Enc::Vopd => {
                self.vop_text(&mut s);
                if let Some(y) = &self.y {
                    s.push_str(" :: ");
                    y.vop_text(&mut s);
                }
            }
            Enc::Global => {
                let addr = if self.saddr == 124 { reg(self.addr, 2) } else { reg(self.addr, 1) };
                let saddr = if self.saddr == 124 { "off".to_string() } else { reg(self.saddr, 2) };
                match self.op.sem {
                    Sem::GLoad(_) | Sem::GLoadD16(..) => {
                        let _ = write!(s, "{name} {}, {addr}, {saddr}", reg(self.dst, self.op.d.regs()));
                    }
                    Sem::GAtomicCmpswap | Sem::GAtomicAdd => {
                        let d = self.op.d.regs();
                        let data = if self.op.sem == Sem::GAtomicCmpswap { 2 * d } else { d };
                        if self.glc {
                            let _ = write!(s, "{name} {}, ", reg(self.dst, d));
                        } else {
                            let _ = write!(s, "{name} ");
                        }
                        let _ = write!(s, "{addr}, {}, {saddr}", reg(self.data, data));
                    }
                    _ => {
                        let _ = write!(s, "{name} {addr}, {}, {saddr}", reg(self.data, self.op.d.regs()));
                    }
                }
                if self.imm != 0 {
                    let _ = write!(s, " offset:{}", self.imm);
                }
                if self.glc {
                    s.push_str(" glc");
                }
                if self.slc {
                    s.push_str(" slc");
                }
                if self.dlc {
                    s.push_str(" dlc");
                }
            }
            Enc::Ds => {
                match self.op.sem {
                    Sem::DsLoad => {
                        let _ = write!(s, "{name} {}, {}", reg(self.dst, self.op.d.regs()), reg(self.addr, 1));
                    }
                    _ => {
                        let _ = write!(s, "{name} {}, {}", reg(self.addr, 1), reg(self.data, self.op.d.regs()));
                    }
                }
                if self.imm != 0 {
                    let _ = write!(s, " offset:{}", self.imm);
                }
            }
        }
        f.write_str(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(words: &[u32]) -> String {
        decode(words, 0).map(|i| i.to_string()).unwrap_or_else(|e| e.to_string())
    }

    // Expectations worked out by hand from the RDNA3 microcode formats.
    #[test]
    fn scalar_formats() {
        // SOP1 s_mov_b32 s12, s15: 101111101 | sdst 12 | op 0 | ssrc0 15.
        assert_eq!(text(&[0xBE8C000F]), "s_mov_b32 s12, s15");
        // SOP2 s_lshl_b64 s[2:3], s[8:9], 1: 10 | op 9 | sdst 2 | ssrc1 129 (=1) | ssrc0 8.
        assert_eq!(text(&[0x84828108]), "s_lshl_b64 s[2:3], s[8:9], 1");
        // SOP2 with a literal and a negative inline constant.
        assert_eq!(text(&[0x800CFF00, 0xFFFFFF80]), "s_add_u32 s12, s0, 0xffffff80");
        assert_eq!(text(&[0x8B0EC80E]), "s_and_b32 s14, s14, -8");
        // SOPK s_movk_i32 s23, 0xff6a.
        assert_eq!(text(&[0xB017FF6A]), "s_movk_i32 s23, 0xff6a");
        // The other SOPK forms, as llvm-mc prints them: op [27:23].
        assert_eq!(text(&[0xB80A3000]), "s_mulk_i32 s10, 0x3000");
        assert_eq!(text(&[0xB6840000]), "s_cmpk_lt_u32 s4, 0x0");
        assert_eq!(text(&[0xB1050009]), "s_cmovk_i32 s5, 0x9");
        assert_eq!(text(&[0xBE980A17]), "s_clz_i32_u32 s24, s23");
        assert_eq!(text(&[0xBE850C04]), "s_cls_i32 s5, s4");
        assert_eq!(text(&[0xBE8502AA]), "s_cmov_b32 s5, 42");
        // SOPP: waitcnt fields vmcnt [15:10], lgkmcnt [9:4], expcnt [2:0].
        assert_eq!(text(&[0xBF89FC07]), "s_waitcnt lgkmcnt(0)");
        assert_eq!(text(&[0xBF8704A1]), "s_delay_alu instid0(VALU_DEP_1) | instskip(SKIP_1) | instid1(SALU_CYCLE_1)");
        assert_eq!(text(&[0xBFA50195]), "s_cbranch_execz 405");
        // SMEM: sdata [12:6], sbase [5:0] in pairs, soffset [63:57], offset [52:32].
        assert_eq!(text(&[0xF40C0100, 0xF8000000]), "s_load_b256 s[4:11], s[0:1], null");
        assert_eq!(text(&[0xF4040000, 0xF8000028]), "s_load_b64 s[0:1], s[0:1], 0x28");
    }

    #[test]
    fn vector_formats() {
        // VOP2 v_or_b32 v16, s2, v0.
        assert_eq!(text(&[0x38200002]), "v_or_b32_e32 v16, s2, v0");
        assert_eq!(text(&[0x140A0685]), "v_mul_hi_i32_i24_e32 v5, 5, v3");
        assert_eq!(text(&[0xD71C0006, 0x00020501]), "v_ldexp_f32 v6, v1, v2");
        assert_eq!(text(&[0xD6650000, 0x040E0501]), "v_minmax_i32 v0, v1, v2, v3");
        assert_eq!(text(&[0xD6440002, 0x04160903]), "v_perm_b32 v2, v3, v4, v5");
        assert_eq!(text(&[0xCC0F4202, 0x38020903]), "v_pk_add_f16 v2, v3, v4 neg_lo:[1,0] neg_hi:[0,1]");
        assert_eq!(text(&[0xCC104002, 0x0801E103]), "v_pk_mul_f16 v2, v3, 0.5 op_sel_hi:[1,0]");
        assert_eq!(text(&[0x7E146308]), "v_rsq_f64_e32 v[10:11], v[8:9]");
        assert_eq!(text(&[0xBE8C1F0C]), "s_not_b64 s[12:13], s[12:13]");
        assert_eq!(text(&[0x3C1A1105]), "v_xnor_b32_e32 v13, v5, v8");
        assert_eq!(text(&[0x99030507]), "s_pack_ll_b32_b16 s3, s7, s5");
        assert_eq!(text(&[0x7E6E250F]), "v_cvt_f32_ubyte1_e32 v55, v15");
        assert_eq!(text(&[0xCC064006, 0x10020881]), "v_pk_ashrrev_i16 v6, 1, v4 op_sel_hi:[0,1]");
        assert_eq!(text(&[0xDC821FFE, 0x00000000]), "global_load_d16_b16 v0, v0, s[0:1] offset:-2");
        assert_eq!(text(&[0xD6590002, 0x04160903]), "v_mad_u32_u16 v2, v3, v4, v5");
        assert_eq!(text(&[0xD64A0002, 0x04160903]), "v_min3_i16 v2, v3, v4, v5");
        // VOP1 with a literal.
        assert_eq!(text(&[0x7E0E02FF, 0xFF800000]), "v_mov_b32_e32 v7, 0xff800000");
        // VOP3 compare writing EXEC.
        assert_eq!(text(&[0xD4D4007E, 0x0002200E]), "v_cmpx_gt_i64_e64 s[14:15], v[16:17]");
        // VOP3SD: the scalar carry-out in [14:8].
        assert_eq!(text(&[0xD7006A10, 0x00002910]), "v_add_co_u32 v16, vcc_lo, v16, s20");
        // VOPD: shared literal; vdsty = field << 1 | !(vdstx & 1).
        assert_eq!(
            text(&[0xCA1000FF, 0x080800FF, 0xFF800000]),
            "v_dual_mov_b32 v8, 0xff800000 :: v_dual_mov_b32 v9, 0xff800000"
        );
        // VOP3 modifiers: neg in [63:61], abs in [10:8].
        assert_eq!(text(&[0xD5100003, 0x20010109]), "v_max_f32_e64 v3, -v9, 0");
        // GLOBAL: 13-bit signed offset, saddr 124 = off.
        assert_eq!(text(&[0xDC521FF8, 0x337C000D]), "global_load_b32 v51, v[13:14], off offset:-8");
        // Atomics, as llvm-objdump-19 prints llc-19's code for gfx1100.
        assert_eq!(text(&[0xDCD60000, 0x007C0005]), "global_atomic_add_u32 v[5:6], v0, off");
        assert_eq!(text(&[0xDD0E0000, 0x007C0705]), "global_atomic_add_u64 v[5:6], v[7:8], off");
        assert_eq!(text(&[0xDCD24000, 0x047C0402]), "global_atomic_cmpswap_b32 v4, v[2:3], v[4:5], off glc");
        assert_eq!(text(&[0xDC520000, 0x07060003]), "global_load_b32 v7, v3, s[6:7]");
        assert_eq!(text(&[0xDD0A4000, 0x00301213]), "global_atomic_cmpswap_b64 v[0:1], v19, v[18:21], s[48:49] glc");
        // f64 literal: the high word.
        assert_eq!(text(&[0xD6140010, 0x044228FF, 0xC1F00000]), "v_fma_f64 v[16:17], 0xc1f00000, v[20:21], v[16:17]");
    }

    #[test]
    fn arbitrary_words_decode_or_fail_without_panicking() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut known = 0;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let words = [x as u32, (x >> 32) as u32, x.rotate_left(7) as u32];
            if let Ok(i) = decode(&words, 0) {
                known += 1;
                assert!(!i.to_string().is_empty());
            }
        }
        assert!(known > 1000, "{known}");
    }

    #[test]
    fn unknown_opcodes_are_named() {
        let e = decode(&[0xBE80FF00], 0).unwrap_err();
        assert!(e.message.contains("SOP1 opcode 255"), "{e}");
        let e = decode(&[0xF4040000], 0).unwrap_err();
        assert!(e.message.contains("cut off"), "{e}");
    }
}
