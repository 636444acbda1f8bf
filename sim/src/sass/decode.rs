//! SASS words decoded once into the emulator's instructions. The bit positions are those of
//! `tk_isa::sass` (Mesa NAK's `sm70_encode.rs`, checked against nvdisasm on ptxas's output).
//! A word whose form the emulator does not model is an error naming it, never a guess.

use super::fp::Rnd;
use tk_isa::sass::{Control, bit, bits};

/// A source operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Src {
    /// A register (255 reads zero).
    R(u8),
    /// A uniform register (63 reads zero).
    Ur(u8),
    Imm(u32),
    /// Constant bank, byte offset.
    C(u8, u32),
}

/// A predicate operand: its number (7 is PT), whether it is negated and whether it is a
/// uniform predicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct P {
    pub n: u8,
    pub neg: bool,
    pub uniform: bool,
}

impl P {
    fn of(w: u128, at: u32, neg_at: Option<u32>, uniform: bool) -> P {
        P { n: bits(w, at, 3) as u8, neg: neg_at.is_some_and(|n| bit(w, n)), uniform }
    }
    pub const PT: P = P { n: 7, neg: false, uniform: false };
}

/// Float source modifiers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fm {
    pub neg: bool,
    pub abs: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MufuOp {
    Cos,
    Sin,
    Ex2,
    Lg2,
    Rcp,
    Rsq,
    Rcp64h,
    Rsq64h,
    Sqrt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    U8,
    S8,
    U16,
    S16,
    B32,
    B64,
    B128,
}

impl Width {
    pub fn bytes(self) -> u64 {
        match self {
            Width::U8 | Width::S8 => 1,
            Width::U16 | Width::S16 => 2,
            Width::B32 => 4,
            Width::B64 => 8,
            Width::B128 => 16,
        }
    }
    pub fn regs(self) -> u8 {
        match self {
            Width::B64 => 2,
            Width::B128 => 4,
            _ => 1,
        }
    }
}

/// A global address: a register (a 64-bit pair, or 32 bits), a uniform register pair added
/// to it, and a byte offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Addr {
    pub r: u8,
    pub wide: bool,
    pub ur: Option<u8>,
    pub off: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedOp {
    Add,
    Min,
    Max,
    And,
    Or,
    Xor,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedTy {
    U32,
    S32,
    U64,
    F32,
    S64,
    F64,
}

/// An integer compare (bits 76-78 of ISETP).
pub type Cmp = u8;

/// The emulator's instructions. Registers are numbers; `d` is the destination.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Op {
    /// IMAD: d = a * b + c (`.X`: plus the carry `cin`, with `~c` for a negated c); `.HI`
    /// takes the high half of the product; `.WIDE` a 64-bit product plus a 64-bit c.
    Imad {
        d: u8,
        a: Src,
        b: Src,
        c: Src,
        neg_c: bool,
        x: bool,
        cin: P,
        signed: bool,
        kind: u8,
        cout: u8,
    },
    Iadd3 {
        d: u8,
        a: Src,
        b: Src,
        c: Src,
        neg: [bool; 3],
        x: bool,
        cin: [P; 2],
        cout: [u8; 2],
    },
    Isetp {
        p: u8,
        q: u8,
        cmp: Cmp,
        signed: bool,
        setop: u8,
        a: Src,
        b: Src,
        pin: P,
        ex: Option<P>,
    },
    Sel {
        d: u8,
        a: Src,
        b: Src,
        p: P,
    },
    Fsel {
        d: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        p: P,
    },
    Mov {
        d: u8,
        b: Src,
    },
    Lop3 {
        d: u8,
        p: u8,
        a: Src,
        b: Src,
        c: Src,
        lut: u8,
    },
    Shf {
        d: u8,
        lo: Src,
        shift: Src,
        hi: Src,
        right: bool,
        wrap: bool,
        ty: u8,
        high: bool,
    },
    Lea {
        d: u8,
        cout: u8,
        a: Src,
        neg_a: bool,
        b: Src,
        sx: bool,
        c: Src,
        shift: u8,
        hi: bool,
        x: bool,
        cin: P,
    },
    Plop3 {
        p: u8,
        q: u8,
        srcs: [P; 3],
        lut: u8,
        lut2: u8,
    },
    P2r {
        d: u8,
        a: Src,
        mask: Src,
        byte: u8,
    },
    R2p {
        a: Src,
        mask: Src,
        byte: u8,
    },
    Prmt {
        d: u8,
        a: Src,
        sel: Src,
        c: Src,
    },
    Sgxt {
        d: u8,
        a: Src,
        b: Src,
        signed: bool,
        wrap: bool,
    },
    Imnmx {
        d: u8,
        a: Src,
        b: Src,
        signed: bool,
        p: P,
    },
    Iabs {
        d: u8,
        b: Src,
    },
    Ffma {
        d: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        c: Src,
        cm: Fm,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
    },
    Fadd {
        d: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
    },
    Fmul {
        d: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        rnd: Rnd,
        ftz: bool,
        sat: bool,
    },
    Fsetp {
        p: u8,
        q: u8,
        cmp: u8,
        ftz: bool,
        setop: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        pin: P,
    },
    Dsetp {
        p: u8,
        q: u8,
        cmp: u8,
        setop: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        pin: P,
    },
    Dfma {
        d: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        c: Src,
        cm: Fm,
        rnd: Rnd,
    },
    Dadd {
        d: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        rnd: Rnd,
    },
    Dmul {
        d: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        rnd: Rnd,
    },
    Mufu {
        d: u8,
        op: MufuOp,
        b: Src,
        bm: Fm,
    },
    Fchk {
        p: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
    },
    /// HADD2.F32: an f32 plus one half of an f16 pair, as f32.
    Hadd2F32 {
        d: u8,
        a: Src,
        am: Fm,
        b: Src,
        bm: Fm,
        b_hi: bool,
        ftz: bool,
    },
    /// F2F: `from`/`to` sizes 1 (f16, or bf16 when `bf`), 2 (f32), 3 (f64).
    F2f {
        d: u8,
        b: Src,
        bm: Fm,
        from: u8,
        to: u8,
        bf: bool,
        rnd: Rnd,
        ftz: bool,
        b_hi: bool,
    },
    F2i {
        d: u8,
        b: Src,
        bm: Fm,
        from: u8,
        bytes: u8,
        signed: bool,
        rnd: Rnd,
        ftz: bool,
    },
    I2f {
        d: u8,
        b: Src,
        bytes: u8,
        signed: bool,
        to: u8,
        rnd: Rnd,
    },
    Frnd {
        d: u8,
        b: Src,
        bm: Fm,
        size: u8,
        rnd: Rnd,
        ftz: bool,
    },
    /// F2FP.PACK_AB: d = (a rounded to f16 or bf16) << 16 | (b rounded).
    F2fp {
        d: u8,
        a: Src,
        b: Src,
        bf: bool,
    },
    Ldg {
        d: u8,
        addr: Addr,
        w: Width,
    },
    Stg {
        addr: Addr,
        v: u8,
        w: Width,
    },
    Red {
        addr: Addr,
        v: u8,
        op: RedOp,
        ty: RedTy,
    },
    Cas {
        d: u8,
        addr: u8,
        cmp: u8,
        new: u8,
        wide: bool,
    },
    /// Shared memory at `r * scale + off`.
    Lds {
        d: u8,
        r: u8,
        scale: u8,
        off: i32,
        w: Width,
    },
    Sts {
        r: u8,
        scale: u8,
        off: i32,
        v: u8,
        w: Width,
    },
    Bar {
        id: u8,
    },
    Uldc {
        d: u8,
        bank: u8,
        off: u32,
        w: Width,
    },
    S2r {
        d: u8,
        sr: u8,
    },
    Cs2r {
        d: u8,
        sr: u8,
        wide: bool,
    },
    R2ur {
        d: u8,
        a: u8,
    },
    Voteu {
        d: u8,
        p: u8,
        mode: u8,
        src: P,
    },
    Uflo {
        d: u8,
        a: Src,
    },
    Popc {
        d: u8,
        a: Src,
    },
    Bra {
        target: u32,
        cond: P,
    },
    Bssy {
        b: u8,
        target: u32,
    },
    Bsync {
        b: u8,
        cond: P,
    },
    Break {
        b: u8,
        cond: P,
    },
    Call {
        target: u32,
    },
    Ret {
        r: u8,
        base: u32,
    },
    Exit {
        cond: P,
    },
    /// The lanes of `mask` converge here.
    Warpsync {
        mask: u32,
    },
    Nop,
}

/// A decoded instruction: its guard, operation and control bits.
#[derive(Clone, Copy, Debug)]
pub struct Inst {
    pub guard: P,
    pub op: Op,
    pub ctrl: Control,
    /// Whether it runs on the uniform datapath (once per warp).
    pub uniform: bool,
}

fn r(w: u128, at: u32) -> u8 {
    bits(w, at, 8) as u8
}

/// The constant-bank operand of bits 40-58 (bindless banks are not modelled).
fn cbank(w: u128) -> Option<Src> {
    if bit(w, 91) {
        return None;
    }
    Some(Src::C(bits(w, 54, 5) as u8, bits(w, 40, 14) << 2))
}

fn slot_b(w: u128) -> Option<Src> {
    Some(match bits(w, 9, 3) {
        4 => Src::Imm(bits(w, 32, 32)),
        5 => cbank(w)?,
        6 => Src::Ur(bits(w, 32, 6) as u8),
        2 | 3 | 7 => Src::R(r(w, 64)),
        _ => Src::R(r(w, 32)),
    })
}

fn slot_c(w: u128) -> Option<Src> {
    Some(match bits(w, 9, 3) {
        2 => Src::Imm(bits(w, 32, 32)),
        3 => cbank(w)?,
        7 => Src::Ur(bits(w, 32, 6) as u8),
        _ => Src::R(r(w, 64)),
    })
}

fn b_in_low(w: u128) -> bool {
    matches!(bits(w, 9, 3), 1 | 4 | 5 | 6)
}

/// Float modifiers of B and C; an immediate has none (its bits 62-63 are its own).
fn fm_b(w: u128) -> Fm {
    if bits(w, 9, 3) == 4 {
        return Fm::default();
    }
    if b_in_low(w) { Fm { neg: bit(w, 63), abs: bit(w, 62) } } else { Fm { neg: bit(w, 75), abs: bit(w, 74) } }
}

fn fm_c(w: u128) -> Fm {
    if bits(w, 9, 3) == 2 {
        return Fm::default();
    }
    if b_in_low(w) { Fm { neg: bit(w, 75), abs: bit(w, 74) } } else { Fm { neg: bit(w, 63), abs: bit(w, 62) } }
}

fn fm_a(w: u128) -> Fm {
    Fm { neg: bit(w, 72), abs: bit(w, 73) }
}

fn a(w: u128) -> Src {
    Src::R(r(w, 24))
}

fn pd(w: u128, at: u32) -> u8 {
    bits(w, at, 3) as u8
}

/// The condition predicate of bits 87-89, negated by bit 90.
fn cond(w: u128) -> P {
    P::of(w, 87, Some(90), false)
}

fn width(v: u32) -> Option<Width> {
    Some(match v {
        0 => Width::U8,
        1 => Width::S8,
        2 => Width::U16,
        3 => Width::S16,
        4 => Width::B32,
        5 => Width::B64,
        6 => Width::B128,
        _ => return None,
    })
}

fn signed24(w: u128) -> i32 {
    ((bits(w, 40, 24) << 8) as i32) >> 8
}

fn global(w: u128, no_ur: bool, ur_at: u32) -> Addr {
    Addr {
        r: r(w, 24),
        wide: bit(w, 90),
        ur: if no_ur { None } else { Some(bits(w, ur_at, 6) as u8) },
        off: signed24(w),
    }
}

/// The byte offset of a relative branch target (`at` the branch's own offset).
fn target(w: u128, at: u32) -> Option<u32> {
    let t = tk_isa::sass::target(w, u64::from(at))?;
    u32::try_from(t).ok()
}

/// Decodes the word at byte offset `at`, or None when the emulator does not model it.
pub fn decode(w: u128, at: u32, sm: u32) -> Option<Inst> {
    let ctrl = Control::of(w);
    let guard = P::of(w, 12, Some(15), false);
    let opc = bits(w, 0, 12);
    let op9 = opc & 0x1ff;
    let form = bits(w, 9, 3);
    let d = r(w, 16);
    let alu = |op: Op| Some(Inst { guard, op, ctrl, uniform: false });
    // An instruction of the uniform datapath: its guard is a uniform predicate.
    let uni = |op: Op| Some(Inst { guard: P { uniform: true, ..guard }, op, ctrl, uniform: true });
    // The uniform datapath's ALU ops: their registers are uniform registers.
    let uniform_alu =
        matches!(op9, 0xa4 | 0xa5 | 0x90 | 0x87 | 0x8c | 0x99 | 0x9a | 0x92 | 0x91) && matches!(form, 1 | 2 | 4);
    if uniform_alu {
        return decode_uniform(w, opc, op9, form, ctrl);
    }
    match opc {
        // Bits 64-67: LDG's optional predicate operand (complemented; 0 is none), which the
        // emulator does not model.
        0x981 if bit(w, 72) && bit(w, 91) && !bit(w, 101) && bits(w, 81, 3) == 7 && bits(w, 64, 4) == 0 => {
            return alu(Op::Ldg { d, addr: global(w, bit(w, 76), 32), w: width(bits(w, 73, 3))? });
        }
        0x986 if bit(w, 72) && bit(w, 91) && !bit(w, 101) => {
            return alu(Op::Stg { addr: global(w, bit(w, 76), 64), v: r(w, 32), w: width(bits(w, 73, 3))? });
        }
        0x98e if bit(w, 72) && bit(w, 91) && !bit(w, 101) => {
            let ty = [RedTy::U32, RedTy::S32, RedTy::U64, RedTy::F32, RedTy::S64, RedTy::F64];
            let ty = match bits(w, 73, 4) {
                t @ 0..=3 => ty[t as usize],
                5 => RedTy::S64,
                6 => RedTy::F64,
                _ => return None,
            };
            let op = match bits(w, 87, 3) {
                0 => RedOp::Add,
                1 => RedOp::Min,
                2 => RedOp::Max,
                5 => RedOp::And,
                6 => RedOp::Or,
                7 => RedOp::Xor,
                _ => return None,
            };
            if op != RedOp::Add && matches!(ty, RedTy::F32 | RedTy::F64) {
                return None;
            }
            return alu(Op::Red { addr: global(w, bit(w, 71), 64), v: r(w, 32), op, ty });
        }
        0x3a9 if bit(w, 72) && bits(w, 84, 3) == 1 && bits(w, 40, 24) == 0 && bits(w, 81, 3) == 7 => {
            let wide = match bits(w, 73, 4) {
                0 | 1 => false,
                2 => true,
                _ => return None,
            };
            return alu(Op::Cas { d, addr: r(w, 24), cmp: r(w, 32), new: r(w, 64), wide });
        }
        0xab9 if !bit(w, 91) && bits(w, 73, 3) <= 5 => {
            let off = bits(w, 38, 16);
            return uni(Op::Uldc { d, bank: bits(w, 54, 5) as u8, off, w: width(bits(w, 73, 3))? });
        }
        0x883 => {
            return uni(Op::P2r {
                d,
                a: Src::Ur(bits(w, 24, 6) as u8),
                mask: Src::Imm(bits(w, 32, 32)),
                byte: bits(w, 76, 2) as u8,
            });
        }
        0x882 | 0xc82 => {
            let b = if opc == 0x882 { Src::Imm(bits(w, 32, 32)) } else { Src::Ur(bits(w, 32, 6) as u8) };
            return uni(Op::Mov { d, b });
        }
        0x919 if !bit(w, 91) => return alu(Op::S2r { d, sr: bits(w, 72, 8) as u8 }),
        0x9c3 => return uni(Op::S2r { d, sr: bits(w, 72, 8) as u8 }),
        0x805 => return alu(Op::Cs2r { d, sr: bits(w, 72, 8) as u8, wide: bit(w, 80) }),
        0x3c2 if bits(w, 81, 3) == 7 => return alu(Op::R2ur { d, a: r(w, 24) }),
        0x947 if !bit(w, 91) && bits(w, 32, 2) <= 1 => return alu(Op::Bra { target: target(w, at)?, cond: cond(w) }),
        0x945 if !bit(w, 91) && cond(w) == P::PT => {
            return alu(Op::Bssy { b: bits(w, 16, 4) as u8, target: target(w, at)? });
        }
        0x941 => return alu(Op::Bsync { b: bits(w, 16, 4) as u8, cond: cond(w) }),
        0x942 => return alu(Op::Break { b: bits(w, 16, 4) as u8, cond: cond(w) }),
        0x944 if !bit(w, 91) && cond(w) == P::PT => return alu(Op::Call { target: target(w, at)? }),
        0x950 if !bit(w, 91) && !bit(w, 85) && cond(w) == P::PT => {
            return alu(Op::Ret { r: r(w, 24), base: target(w, at)? });
        }
        0x94d if !bit(w, 91) => return alu(Op::Exit { cond: cond(w) }),
        0x948 if cond(w) == P::PT => return alu(Op::Warpsync { mask: bits(w, 32, 32) }),
        0x946 | 0x918 => return alu(Op::Nop),
        0x984 | 0x388 if !bit(w, 91) => {
            let (rr, off, wd) = (r(w, 24), signed24(w), width(bits(w, 73, 3))?);
            let scale = [1, 4, 8, 16][bits(w, 78, 2) as usize];
            return alu(if opc == 0x984 {
                Op::Lds { d, r: rr, scale, off, w: wd }
            } else {
                Op::Sts { r: rr, scale, off, v: r(w, 32), w: wd }
            });
        }
        0xb1d if bits(w, 42, 12) == 0 && bits(w, 77, 3) == 0 => return alu(Op::Bar { id: bits(w, 54, 4) as u8 }),
        0x886 => {
            return uni(Op::Voteu { d, p: pd(w, 81), mode: bits(w, 72, 2) as u8, src: cond(w) });
        }
        0x2bd if bits(w, 64, 41) == 0x080e_0000 => {
            return uni(Op::Uflo { d, a: Src::Ur(bits(w, 32, 8) as u8) });
        }
        0x309 if bits(w, 64, 41) == 0 && !bit(w, 63) => return alu(Op::Popc { d, a: Src::R(r(w, 32)) }),
        0xd09 if bits(w, 64, 41) == 1 << 27 && !bit(w, 63) => {
            return alu(Op::Popc { d, a: Src::Ur(bits(w, 32, 8) as u8) });
        }
        _ => {}
    }
    let (bs, cs) = (slot_b(w), slot_c(w));
    let op = match op9 {
        0x24 | 0x25 | 0x27 => Op::Imad {
            d,
            a: a(w),
            b: bs?,
            c: cs?,
            neg_c: fm_c(w).neg,
            x: bit(w, 74),
            cin: cond(w),
            signed: bit(w, 73),
            kind: (op9 - 0x24) as u8,
            cout: if op9 == 0x24 { 7 } else { pd(w, 81) },
        },
        0x10 if b_in_low(w) => Op::Iadd3 {
            d,
            a: a(w),
            b: bs?,
            c: cs?,
            neg: [bit(w, 72), form != 4 && bit(w, 63), bit(w, 75)],
            x: bit(w, 74),
            cin: [cond(w), P::of(w, 77, Some(80), false)],
            cout: [pd(w, 81), pd(w, 84)],
        },
        0x0c => Op::Isetp {
            p: pd(w, 81),
            q: pd(w, 84),
            cmp: bits(w, 76, 3) as u8,
            signed: bit(w, 73),
            setop: bits(w, 74, 2) as u8,
            a: a(w),
            b: bs?,
            pin: cond(w),
            ex: bit(w, 72).then(|| P::of(w, 68, Some(71), false)),
        },
        0x07 => Op::Sel { d, a: a(w), b: bs?, p: cond(w) },
        0x08 if !bit(w, 80) => Op::Fsel { d, a: a(w), am: fm_a(w), b: bs?, bm: fm_b(w), p: cond(w) },
        0x02 => Op::Mov { d, b: bs? },
        // The predicate output is modelled with `!PT` as its input (as ptxas tests bits):
        // it says whether the result is nonzero.
        0x12 if !bit(w, 80) && (bits(w, 81, 3) == 7 || cond(w) == P { n: 7, neg: true, uniform: false }) => {
            Op::Lop3 { d, p: pd(w, 81), a: a(w), b: bs?, c: cs?, lut: bits(w, 72, 8) as u8 }
        }
        0x19 => Op::Shf {
            d,
            lo: a(w),
            shift: bs?,
            hi: cs?,
            right: bit(w, 76),
            wrap: bit(w, 75),
            ty: bits(w, 73, 2) as u8,
            high: bit(w, 80),
        },
        // `.SX32` (high form only): the high word is A's sign.
        0x11 if !bit(w, 73) || bit(w, 80) => Op::Lea {
            d,
            cout: pd(w, 81),
            a: a(w),
            neg_a: bit(w, 72),
            b: bs?,
            sx: bit(w, 73),
            c: if bit(w, 80) && !bit(w, 73) { cs? } else { Src::R(255) },
            shift: bits(w, 75, 5) as u8,
            hi: bit(w, 80),
            x: bit(w, 74),
            cin: cond(w),
        },
        0x1c => Op::Plop3 {
            p: pd(w, 81),
            q: pd(w, 84),
            srcs: [cond(w), P::of(w, 77, Some(80), false), P { n: pd(w, 68), neg: bit(w, 71), uniform: bit(w, 67) }],
            lut: (bits(w, 72, 5) << 3 | bits(w, 64, 3)) as u8,
            lut2: bits(w, 16, 8) as u8,
        },
        0x03 => Op::P2r { d, a: a(w), mask: bs?, byte: bits(w, 76, 2) as u8 },
        0x04 => Op::R2p { a: a(w), mask: bs?, byte: bits(w, 76, 2) as u8 },
        0x16 if bits(w, 72, 3) == 0 => Op::Prmt { d, a: a(w), sel: bs?, c: cs? },
        0x1a => Op::Sgxt { d, a: a(w), b: bs?, signed: bit(w, 73), wrap: bit(w, 75) },
        0x17 => Op::Imnmx { d, a: a(w), b: bs?, signed: bit(w, 73), p: cond(w) },
        0x13 => Op::Iabs { d, b: bs? },
        0x23 if !bit(w, 76) => Op::Ffma {
            d,
            a: a(w),
            am: fm_a(w),
            b: bs?,
            bm: fm_b(w),
            c: cs?,
            cm: fm_c(w),
            rnd: Rnd::of(bits(w, 78, 2)),
            ftz: bit(w, 80),
            sat: bit(w, 77),
        },
        0x21 => Op::Fadd {
            d,
            a: a(w),
            am: fm_a(w),
            b: if form == 1 { Src::R(r(w, 32)) } else { cs? },
            bm: if form == 2 { Fm::default() } else { Fm { neg: bit(w, 63), abs: bit(w, 62) } },
            rnd: Rnd::of(bits(w, 78, 2)),
            ftz: bit(w, 80),
            sat: bit(w, 77),
        },
        0x20 if !bit(w, 76) && bits(w, 84, 3) == 4 => Op::Fmul {
            d,
            a: a(w),
            am: fm_a(w),
            b: bs?,
            bm: fm_b(w),
            rnd: Rnd::of(bits(w, 78, 2)),
            ftz: bit(w, 80),
            sat: bit(w, 77),
        },
        0x0b => Op::Fsetp {
            p: pd(w, 81),
            q: pd(w, 84),
            cmp: bits(w, 76, 4) as u8,
            ftz: bit(w, 80),
            setop: bits(w, 74, 2) as u8,
            a: a(w),
            am: fm_a(w),
            b: bs?,
            bm: fm_b(w),
            pin: cond(w),
        },
        0x2a if !matches!(bits(w, 76, 4), 0 | 15) => Op::Dsetp {
            p: pd(w, 81),
            q: pd(w, 84),
            cmp: bits(w, 76, 4) as u8,
            setop: bits(w, 74, 2) as u8,
            a: a(w),
            am: fm_a(w),
            b: if form == 1 { Src::R(r(w, 32)) } else { cs? },
            bm: if form == 2 { Fm::default() } else { Fm { neg: bit(w, 63), abs: bit(w, 62) } },
            pin: cond(w),
        },
        0x2b => {
            Op::Dfma { d, a: a(w), am: fm_a(w), b: bs?, bm: fm_b(w), c: cs?, cm: fm_c(w), rnd: Rnd::of(bits(w, 78, 2)) }
        }
        0x29 => Op::Dadd { d, a: a(w), am: fm_a(w), b: cs?, bm: fm_c(w), rnd: Rnd::of(bits(w, 78, 2)) },
        0x28 => Op::Dmul { d, a: a(w), am: fm_a(w), b: bs?, bm: fm_b(w), rnd: Rnd::of(bits(w, 78, 2)) },
        0x108 if !bit(w, 73) => {
            use MufuOp::*;
            let op = [Cos, Sin, Ex2, Lg2, Rcp, Rsq, Rcp64h, Rsq64h, Sqrt].get(bits(w, 74, 4) as usize).copied()?;
            Op::Mufu { d, op, b: bs?, bm: fm_b(w) }
        }
        0x102 if bits(w, 9, 3) == 1 || b_in_low(w) => {
            Op::Fchk { p: pd(w, 81), a: a(w), am: fm_a(w), b: bs?, bm: fm_b(w) }
        }
        // HADD2.F32 with an f16 half of a register as B (as ptxas converts f16 to f32).
        0x30 if bit(w, 78)
            && form == 1
            && matches!(bits(w, 60, 2), 2 | 3)
            && r(w, 24) == 255
            && bits(w, 74, 2) == 0 =>
        {
            Op::Hadd2F32 {
                d,
                a: a(w),
                am: Fm { neg: bit(w, 72), abs: false },
                b: Src::R(r(w, 32)),
                bm: Fm { neg: bit(w, 63), abs: bit(w, 62) },
                b_hi: bits(w, 60, 2) == 3,
                ftz: bit(w, 80),
            }
        }
        0x104 | 0x110 => {
            let (to, from) = (bits(w, 75, 2) as u8, bits(w, 84, 2) as u8);
            let bf = bit(w, 77) && to == 0;
            if from == 0 || (to == 0 && !bf) || (bit(w, 77) && to != 0) {
                return None;
            }
            Op::F2f {
                d,
                b: bs?,
                bm: fm_b(w),
                from,
                to: if bf { 1 } else { to },
                bf,
                rnd: Rnd::of(bits(w, 78, 2)),
                ftz: bit(w, 80),
                b_hi: bits(w, 60, 2) == 1 && from == 1,
            }
        }
        0x105 | 0x111 => {
            let from = bits(w, 84, 2) as u8;
            if from < 2 {
                return None;
            }
            Op::F2i {
                d,
                b: bs?,
                bm: fm_b(w),
                from,
                bytes: 1 << bits(w, 75, 2),
                signed: bit(w, 72),
                rnd: Rnd::of(bits(w, 78, 2)),
                ftz: bit(w, 80),
            }
        }
        0x106 | 0x112 => {
            let (ss, ds) = (bits(w, 84, 2), bits(w, 75, 2) as u8);
            if ss < 2 || ds < 2 || bits(w, 60, 2) != 0 {
                return None;
            }
            Op::I2f { d, b: bs?, bytes: 1 << ss, signed: bit(w, 74), to: ds, rnd: Rnd::of(bits(w, 78, 2)) }
        }
        0x107 | 0x113 => {
            let size = bits(w, 75, 2) as u8;
            if size < 2 {
                return None;
            }
            Op::Frnd { d, b: bs?, bm: fm_b(w), size, rnd: Rnd::of(bits(w, 78, 2)), ftz: bit(w, 80) }
        }
        0x45 if sm >= 86 => Op::I2f { d, b: bs?, bytes: 4, signed: bit(w, 74), to: 2, rnd: Rnd::Rn },
        0x3e if !bit(w, 77) && !bit(w, 75) => Op::F2fp { d, a: a(w), b: bs?, bf: bit(w, 76) },
        // HFMA2.MMA with an immediate pair as C and -RZ, RZ as A and B: a move of the pair.
        0x35 if form == 2 && bits(w, 73, 32) == 0 && r(w, 24) == 255 && r(w, 64) == 255 => {
            Op::Mov { d, b: Src::Imm(bits(w, 32, 32)) }
        }
        _ => return None,
    };
    alu(op)
}

/// The uniform datapath's ALU ops (UIMAD, UIADD3, USEL, UISETP, USHF).
fn decode_uniform(w: u128, opc: u32, op9: u32, form: u32, ctrl: Control) -> Option<Inst> {
    let u = |at: u32| Src::Ur(bits(w, at, 6) as u8);
    let (b, c) = match form {
        1 => (u(32), u(64)),
        4 => (Src::Imm(bits(w, 32, 32)), u(64)),
        _ => (u(64), Src::Imm(bits(w, 32, 32))),
    };
    let d = bits(w, 16, 6) as u8;
    let ua = u(24);
    let up = |at: u32, neg: Option<u32>| P::of(w, at, neg, true);
    let op = match op9 {
        0xa4 | 0xa5 => {
            let wide = op9 == 0xa5;
            if wide && (bit(w, 74) || bits(w, 81, 3) != 7) {
                return None;
            }
            Op::Imad {
                d,
                a: ua,
                b,
                c,
                neg_c: bit(w, 75) && form != 2,
                x: bit(w, 74),
                cin: up(87, Some(90)),
                signed: bit(w, 73),
                kind: if wide { 1 } else { 0 },
                cout: 7,
            }
        }
        0x90 => Op::Iadd3 {
            d,
            a: ua,
            b,
            c,
            neg: [bit(w, 72), form == 1 && bit(w, 63), bit(w, 75)],
            x: bit(w, 74),
            cin: [up(87, Some(90)), up(77, Some(80))],
            cout: [bits(w, 81, 3) as u8, bits(w, 84, 3) as u8],
        },
        0x87 => Op::Sel { d, a: ua, b, p: up(87, Some(90)) },
        0x8c => Op::Isetp {
            p: bits(w, 81, 3) as u8,
            q: bits(w, 84, 3) as u8,
            cmp: bits(w, 76, 3) as u8,
            signed: bit(w, 73),
            setop: bits(w, 74, 2) as u8,
            a: ua,
            b,
            pin: up(87, Some(90)),
            ex: bit(w, 72).then(|| up(68, Some(71))),
        },
        0x99 => Op::Shf {
            d,
            lo: ua,
            shift: b,
            hi: c,
            right: bit(w, 76),
            wrap: bit(w, 75),
            ty: bits(w, 73, 2) as u8,
            high: bit(w, 80),
        },
        0x92 if !bit(w, 80) && (bits(w, 81, 3) == 7 || up(87, Some(90)) == P { n: 7, neg: true, uniform: true }) => {
            Op::Lop3 { d, p: bits(w, 81, 3) as u8, a: ua, b, c, lut: bits(w, 72, 8) as u8 }
        }
        0x91 if form != 2 => Op::Lea {
            d,
            cout: bits(w, 81, 3) as u8,
            a: ua,
            neg_a: bit(w, 72),
            b,
            sx: bit(w, 73),
            c: if bit(w, 80) && !bit(w, 73) { c } else { Src::Ur(63) },
            shift: bits(w, 75, 5) as u8,
            hi: bit(w, 80),
            x: bit(w, 74),
            cin: up(87, Some(90)),
        },
        0x9a if form != 2 => Op::Sgxt { d, a: ua, b, signed: bit(w, 73), wrap: bit(w, 75) },
        _ => return None,
    };
    let _ = opc;
    Some(Inst { guard: P::of(w, 12, Some(15), true), op, ctrl, uniform: true })
}
