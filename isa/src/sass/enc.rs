//! Decoding a SASS word into an instruction of named fields, and encoding one back into the
//! same 128 bits.
//!
//! Every instruction tk's tables know is a base opcode (bits 0-8) with an operand form (bits
//! 9-11), a guard predicate (bits 12-15), a list of named fields (registers, predicates,
//! immediates, constant-bank slots, branch offsets, modifiers) and the control bits (bits
//! 105-125). Decoding refuses a word with a set bit that no field of its opcode covers, so
//! `encode(decode(w)) == w` is a real statement: the tables account for every bit ptxas sets.
//! The ALU instructions share the operand layouts of their form (NAK's `encode_alu`: source B
//! an immediate, a constant bank or a uniform register in bits 32-63, or source C there with
//! B's register moving to bits 64-71); the other instructions list their fields directly.
//!
//! The field positions are the ones the printer ([`super::print`]) reads, judged against
//! nvdisasm on ptxas's output, plus the bits ptxas sets that nvdisasm does not print (the
//! memory instructions' descriptor register, for instance), found by decoding every word of
//! tk's corpus.

use super::{Control, bits};

/// What a field holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A register (255 is RZ).
    Reg,
    /// A uniform register (63 is URZ).
    UReg,
    /// A predicate (7 is PT); its negation is a separate [`Kind::Flag`] field.
    Pred,
    /// A uniform predicate (7 is UPT).
    UPred,
    /// A one-bit switch: a negation, an absolute value, `.X`, `.FTZ`, ...
    Flag,
    /// A modifier of several bits (a rounding mode, a comparison, a size, a LUT, ...).
    Mod,
    /// An immediate.
    Imm,
    /// A constant bank's number, or its byte offset in 4-byte units.
    CBank,
    /// A branch target: a signed count of 4-byte units from the next instruction.
    Offset,
    /// A special register's number (`SR_TID.X` is 0x21).
    Special,
    /// A signed byte offset added to an address.
    AddrOffset,
    /// A one-bit switch that ptxas sets on every instruction of its kind (the uniform
    /// datapath's bit 91, the `.E` of 64-bit global addresses); it starts set.
    Set,
}

/// A field of an instruction: its name, its bits and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub at: u8,
    pub width: u8,
    pub kind: Kind,
}

impl Field {
    fn mask(&self) -> u128 {
        ((1u128 << self.width) - 1) << self.at
    }

    /// The value an instruction built from scratch starts with: RZ, URZ and PT for registers
    /// and predicates, zero otherwise.
    fn default_value(&self) -> u32 {
        match self.kind {
            Kind::Reg => 255,
            Kind::UReg => 63,
            Kind::Pred | Kind::UPred => 7,
            Kind::Set => 1,
            _ => 0,
        }
    }
}

/// Why a word does not decode, or an instruction does not encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("opcode {opcode:#05x} is not in tk's SASS tables for sm_{sm}")]
    UnknownOpcode { opcode: u16, sm: u32 },
    #[error("{name} (opcode {opcode:#05x}) has bits set that none of its fields covers: {bits:#034x}")]
    StrayBits { name: &'static str, opcode: u16, bits: u128 },
    #[error("{name} has no field `{field}`; its fields are: {fields}")]
    NoField { name: &'static str, field: String, fields: String },
    #[error("{name}: {value:#x} does not fit field `{field}` ({width} bits)")]
    TooWide { name: &'static str, field: &'static str, value: u64, width: u8 },
    #[error(
        "{name}: field `{field}` at bit {at} of {width} bits is not a field tk can encode (1-32 bits within bits 16-104)"
    )]
    BadField { name: &'static str, field: &'static str, at: u8, width: u8 },
    #[error("{name}: a branch from {at:#x} to {target:#x} does not fit its {width}-bit offset")]
    Target { name: &'static str, at: u64, target: u64, width: u8 },
}

/// An instruction: its opcode (bits 0-11: base opcode and form), its guard (bits 12-15:
/// predicate and negation), the values of its fields and its control bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inst {
    pub name: &'static str,
    pub opcode: u16,
    pub guard: u8,
    pub fields: Vec<(Field, u32)>,
    pub ctrl: Control,
}

/// The guard and control bits: not fields of any instruction.
const GUARD_CTRL: u128 = (0xf << 12) | (((1u128 << 21) - 1) << 105);

impl Inst {
    /// The instruction of word `w` for `sm`.
    pub fn decode(w: u128, sm: u32) -> Result<Inst, EncodeError> {
        let opcode = bits(w, 0, 12) as u16;
        let (name, fields) = layout(opcode, sm).ok_or(EncodeError::UnknownOpcode { opcode, sm })?;
        let covered = fields.iter().fold(0xfffu128 | GUARD_CTRL, |m, f| m | f.mask());
        if w & !covered != 0 {
            return Err(EncodeError::StrayBits { name, opcode, bits: w & !covered });
        }
        Ok(Inst {
            name,
            opcode,
            guard: bits(w, 12, 4) as u8,
            fields: fields.into_iter().map(|f| (f, bits(w, u32::from(f.at), u32::from(f.width)))).collect(),
            ctrl: Control::of(w),
        })
    }

    /// An instruction of `opcode` (bits 0-11) for `sm` with every field at its default (RZ,
    /// URZ, PT or zero), no guard, and control bits that stall one cycle and set no
    /// scoreboard.
    pub fn new(opcode: u16, sm: u32) -> Result<Inst, EncodeError> {
        let (name, fields) = layout(opcode, sm).ok_or(EncodeError::UnknownOpcode { opcode, sm })?;
        Ok(Inst {
            name,
            opcode,
            guard: 7,
            fields: fields.into_iter().map(|f| (f, f.default_value())).collect(),
            ctrl: Control { stall: 1, yield_: false, write_sb: 7, read_sb: 7, wait: 0, reuse: 0 },
        })
    }

    /// The 128 bits of this instruction.
    pub fn encode(&self) -> Result<u128, EncodeError> {
        let mut w = u128::from(self.opcode & 0xfff) | u128::from(self.guard & 0xf) << 12;
        for (f, v) in &self.fields {
            self.check(f)?;
            if u128::from(*v) >> f.width != 0 {
                return Err(EncodeError::TooWide {
                    name: self.name,
                    field: f.name,
                    value: u64::from(*v),
                    width: f.width,
                });
            }
            w |= u128::from(*v) << f.at;
        }
        Ok(self.ctrl.put(w))
    }

    /// A field built by hand must stay inside the bits fields may have (1-32 bits within
    /// 16-104): not the opcode, guard or control bits.
    fn check(&self, f: &Field) -> Result<(), EncodeError> {
        if (1..=32).contains(&f.width) && f.at >= 16 && u32::from(f.at) + u32::from(f.width) <= 105 {
            Ok(())
        } else {
            Err(EncodeError::BadField { name: self.name, field: f.name, at: f.at, width: f.width })
        }
    }

    fn slot(&self, name: &str) -> Result<usize, EncodeError> {
        self.fields.iter().position(|(f, _)| f.name == name).ok_or_else(|| EncodeError::NoField {
            name: self.name,
            field: name.to_string(),
            fields: self.fields.iter().map(|(f, _)| f.name).collect::<Vec<_>>().join(", "),
        })
    }

    /// The value of field `name`, or None when the instruction has no such field.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.fields.iter().find(|(f, _)| f.name == name).map(|&(_, v)| v)
    }

    /// Sets field `name` to `v` (which must fit its width).
    pub fn set(&mut self, name: &str, v: u32) -> Result<&mut Inst, EncodeError> {
        let k = self.slot(name)?;
        let f = self.fields[k].0;
        self.check(&f)?;
        if u64::from(v) >> f.width != 0 {
            return Err(EncodeError::TooWide { name: self.name, field: f.name, value: u64::from(v), width: f.width });
        }
        self.fields[k].1 = v;
        Ok(self)
    }

    /// Points the branch offset of this instruction at byte `at` to byte `target`.
    pub fn set_target(&mut self, at: u64, target: u64) -> Result<&mut Inst, EncodeError> {
        let k = self.slot("target")?;
        // The offset field may be wider than 32 bits (BRA's is 48): it is split over two
        // fields, `target` (the low 32 bits) and `target.hi`.
        let hi = self.slot("target.hi").ok();
        self.check(&self.fields[k].0)?;
        if let Some(h) = hi {
            self.check(&self.fields[h].0)?;
        }
        let width = self.fields[k].0.width + hi.map_or(0, |h| self.fields[h].0.width);
        let bad = || EncodeError::Target { name: self.name, at, target, width };
        let from = at.checked_add(16).ok_or_else(bad)?;
        let delta = i128::from(target) - i128::from(from);
        let units = delta / 4;
        let half = 1i128 << (width - 1);
        if delta % 4 != 0 || !(-half..half).contains(&units) {
            return Err(bad());
        }
        let v = (units as i64 as u64) & ((1u64 << width) - 1);
        self.fields[k].1 = (v & ((1u64 << self.fields[k].0.width) - 1)) as u32;
        if let Some(h) = hi {
            self.fields[h].1 = (v >> self.fields[k].0.width) as u32;
        }
        Ok(self)
    }
}

// --- The tables --------------------------------------------------------------------------

const fn f(name: &'static str, at: u8, width: u8, kind: Kind) -> Field {
    Field { name, at, width, kind }
}

const fn flag(name: &'static str, at: u8) -> Field {
    f(name, at, 1, Kind::Flag)
}

const fn m(name: &'static str, at: u8, width: u8) -> Field {
    f(name, at, width, Kind::Mod)
}

const fn pred(name: &'static str, at: u8) -> Field {
    f(name, at, 3, Kind::Pred)
}

const fn upred(name: &'static str, at: u8) -> Field {
    f(name, at, 3, Kind::UPred)
}

/// Placeholder positions for the negation and absolute value of sources B and C: where they
/// are depends on the form (bits 63/62 go with the operand in bits 32-63, 75/74 with the one
/// in 64-71; an immediate has none).
const NEG_B: u8 = 250;
const ABS_B: u8 = 251;
const NEG_C: u8 = 252;
const ABS_C: u8 = 253;

const NB: Field = flag("b.neg", NEG_B);
const AB: Field = flag("b.abs", ABS_B);
const NC: Field = flag("c.neg", NEG_C);
const AC: Field = flag("c.abs", ABS_C);
const A_NEG: Field = flag("a.neg", 72);
const A_ABS: Field = flag("a.abs", 73);
/// The predicate source of `.X` and select forms (bits 87-89, negated by 90).
const PB: Field = pred("pb", 87);
const PB_NEG: Field = flag("pb.neg", 90);
const UPB: Field = upred("pb", 87);
const PC: Field = pred("pc", 77);
const PC_NEG: Field = flag("pc.neg", 80);
const UPC: Field = upred("pc", 77);
const P0: Field = pred("p0", 81);
const P1: Field = pred("p1", 84);
const UP0: Field = upred("p0", 81);
const UP1: Field = upred("p1", 84);

/// An ALU instruction: which of the destination (bits 16-23), source A (bits 24-31) and the
/// form-dependent sources B and C it has, whether its registers are uniform, and its other
/// fields.
struct Alu {
    name: &'static str,
    d: bool,
    a: bool,
    b: bool,
    c: bool,
    uniform: bool,
    fields: Vec<Field>,
}

/// An ALU instruction with the operands `srcs` names (`d`, `a`, `b`, `c`; `u` for the
/// uniform datapath) and `fields`.
fn alu(name: &'static str, srcs: &str, fields: Vec<Field>) -> Alu {
    let has = |ch: char| srcs.contains(ch);
    Alu { name, d: has('d'), a: has('a'), b: has('b'), c: has('c'), uniform: has('u'), fields }
}

/// The fields of ISETP and UISETP (`p`: their predicates' kind): the comparison, signedness,
/// the boolean op with the predicate source, `.EX` with its extra predicate, and the two
/// predicate destinations.
fn setp(p: fn(&'static str, u8) -> Field) -> Vec<Field> {
    vec![
        m("cmp", 76, 3),
        flag("signed", 73),
        m("bop", 74, 2),
        flag("ex", 72),
        p("p0", 81),
        p("p1", 84),
        p("pb", 87),
        PB_NEG,
        p("pex", 68),
        flag("pex.neg", 71),
    ]
}

/// The ALU instructions by base opcode (bits 0-8).
fn alu_op(opc: u32, sm: u32) -> Option<Alu> {
    const IMAD: &[Field] = &[flag("signed", 73), flag("x", 74), NC, P0, PB, PB_NEG];
    Some(match opc {
        0x24 => alu("IMAD", "dabc", IMAD.to_vec()),
        0x25 => alu("IMAD.WIDE", "dabc", IMAD.to_vec()),
        0x27 => alu("IMAD.HI", "dabc", IMAD.to_vec()),
        0x10 => alu("IADD3", "dabc", vec![A_NEG, NB, NC, flag("x", 74), P0, P1, PB, PB_NEG, PC, PC_NEG]),
        0x0c => alu("ISETP", "ab", setp(pred)),
        0x07 => alu("SEL", "dab", vec![PB, PB_NEG]),
        0x08 => alu("FSEL", "dab", vec![A_NEG, A_ABS, NB, AB, flag("ftz", 80), PB, PB_NEG]),
        0x02 => alu("MOV", "db", vec![m("mask", 72, 4)]),
        0x12 => alu("LOP3", "dabc", vec![m("lut", 72, 8), flag("pand", 80), P0, PB, PB_NEG]),
        0x19 => alu("SHF", "dabc", vec![flag("right", 76), flag("wrap", 75), m("type", 73, 2), flag("hi", 80)]),
        0x11 => alu(
            "LEA",
            "dabc",
            vec![A_NEG, flag("hi", 80), flag("sx32", 73), flag("x", 74), m("shift", 75, 5), NB, P0, PB, PB_NEG],
        ),
        0x1c => alu(
            "PLOP3",
            "",
            vec![
                P0,
                P1,
                PB,
                PB_NEG,
                PC,
                PC_NEG,
                pred("pd", 68),
                flag("pd.neg", 71),
                flag("pd.uniform", 67),
                m("lut.lo", 64, 3),
                m("lut.hi", 72, 5),
                m("lut2", 16, 8),
            ],
        ),
        0x03 => alu("P2R", "dab", vec![m("byte", 76, 2)]),
        0x04 => alu("R2P", "ab", vec![m("byte", 76, 2)]),
        0x16 => alu("PRMT", "dabc", vec![m("mode", 72, 3)]),
        0x1a => alu("SGXT", "dab", vec![flag("wrap", 75), flag("signed", 73)]),
        0x17 => alu("IMNMX", "dab", vec![flag("signed", 73), PB, PB_NEG]),
        0x13 => alu("IABS", "db", vec![]),
        0x23 => alu(
            "FFMA",
            "dabc",
            vec![A_NEG, A_ABS, NB, AB, NC, AC, flag("ftz", 80), flag("fmz", 76), m("rnd", 78, 2), flag("sat", 77)],
        ),
        0x21 => {
            alu("FADD", "dabc", vec![A_NEG, A_ABS, NB, AB, NC, AC, flag("ftz", 80), m("rnd", 78, 2), flag("sat", 77)])
        }
        0x20 => alu(
            "FMUL",
            "dab",
            vec![
                A_NEG,
                A_ABS,
                NB,
                AB,
                flag("ftz", 80),
                flag("fmz", 76),
                m("rnd", 78, 2),
                flag("sat", 77),
                m("scale", 84, 3),
            ],
        ),
        0x0b => alu(
            "FSETP",
            "ab",
            vec![A_NEG, A_ABS, NB, AB, m("cmp", 76, 4), flag("ftz", 80), m("bop", 74, 2), P0, P1, PB, PB_NEG],
        ),
        0x2a => alu(
            "DSETP",
            "abc",
            vec![A_NEG, A_ABS, NB, AB, NC, AC, m("cmp", 76, 4), m("bop", 74, 2), P0, P1, PB, PB_NEG],
        ),
        0x2b => alu("DFMA", "dabc", vec![A_NEG, A_ABS, NB, AB, NC, AC, m("rnd", 78, 2)]),
        0x29 => alu("DADD", "dabc", vec![A_NEG, A_ABS, NB, AB, NC, AC, m("rnd", 78, 2)]),
        0x28 => alu("DMUL", "dab", vec![A_NEG, A_ABS, NB, AB, m("rnd", 78, 2)]),
        0x108 => alu("MUFU", "db", vec![m("op", 74, 4), flag("f16", 73), NB, AB]),
        0x102 => alu("FCHK", "ab", vec![P0, A_NEG, A_ABS, NB, AB]),
        0x30 => alu(
            "HADD2",
            "dabc",
            vec![
                A_NEG,
                A_ABS,
                m("a.swizzle", 74, 2),
                flag("f32", 78),
                flag("ftz", 80),
                flag("sat", 77),
                flag("b.neg", 63),
                flag("b.abs", 62),
                m("b.swizzle", 60, 2),
            ],
        ),
        0x104 | 0x110 => alu(
            "F2F",
            "db",
            vec![
                flag("ftz", 80),
                m("dst", 75, 2),
                flag("bf16", 77),
                m("src", 84, 2),
                m("rnd", 78, 2),
                NB,
                AB,
                m("b.half", 60, 2),
            ],
        ),
        0x105 | 0x111 => alu(
            "F2I",
            "db",
            vec![
                flag("signed", 72),
                m("dst", 75, 2),
                m("src", 84, 2),
                flag("ftz", 80),
                m("rnd", 78, 2),
                flag("ntz", 77),
                NB,
                AB,
                m("b.half", 60, 2),
            ],
        ),
        0x106 | 0x112 => alu(
            "I2F",
            "db",
            vec![flag("signed", 74), m("dst", 75, 2), m("src", 84, 2), m("rnd", 78, 2), m("b.byte", 60, 2)],
        ),
        0x107 | 0x113 => alu(
            "FRND",
            "db",
            vec![flag("ftz", 80), m("dst", 75, 2), m("src", 84, 2), m("rnd", 78, 2), NB, AB, m("b.half", 60, 2)],
        ),
        0x45 if sm >= 86 => {
            alu("I2FP", "db", vec![flag("signed", 74), m("dst", 75, 2), m("src", 84, 2), m("rnd", 78, 2)])
        }
        0x3e => alu("F2FP", "dabc", vec![flag("bf16", 76), flag("satfinite", 77), flag("relu", 75)]),
        0x35 => alu("HFMA2.MMA", "dabc", vec![A_NEG]),
        // The uniform datapath.
        0xa4 => alu("UIMAD", "dabcu", vec![flag("signed", 73), flag("x", 74), NC, UP0, UPB, PB_NEG]),
        0xa5 => alu("UIMAD.WIDE", "dabcu", vec![flag("signed", 73), flag("x", 74), NC, UP0, UPB, PB_NEG]),
        0x90 => alu("UIADD3", "dabcu", vec![A_NEG, NB, NC, flag("x", 74), UP0, UP1, UPB, PB_NEG, UPC, PC_NEG]),
        0x87 => alu("USEL", "dabu", vec![UPB, PB_NEG]),
        0x8c => alu("UISETP", "abu", setp(upred)),
        0x99 => alu("USHF", "dabcu", vec![flag("right", 76), flag("wrap", 75), m("type", 73, 2), flag("hi", 80)]),
        0x92 => alu("ULOP3", "dabcu", vec![m("lut", 72, 8), flag("pand", 80), UP0, UPB, PB_NEG]),
        0x91 => alu(
            "ULEA",
            "dabcu",
            vec![A_NEG, flag("hi", 80), flag("sx32", 73), flag("x", 74), m("shift", 75, 5), UP0, UPB, PB_NEG],
        ),
        0x9a => alu("USGXT", "dabu", vec![flag("wrap", 75), flag("signed", 73)]),
        0x82 => alu("UMOV", "dbu", vec![]),
        0x109 => alu("POPC", "db", vec![flag("b.not", 63)]),
        0xbd => alu("UFLO", "dbu", vec![UP0, flag("u32", 91), flag("sh", 73), flag("b.not", 63)]),
        _ => return None,
    })
}

/// The fields of source slots B and C of an ALU instruction in `form`: bits 32-63 hold B (a
/// register, an immediate, a constant bank or a uniform register) in forms 1, 4, 5 and 6, or
/// C in forms 2, 3 and 7, when B's register moves to bits 64-71.
fn alu_slots(op: &Alu, form: u32, out: &mut Vec<Field>) -> Option<()> {
    let reg = if op.uniform { Kind::UReg } else { Kind::Reg };
    let (lo_name, hi_name, lo_used, hi_used) = match form {
        1 | 4 | 5 | 6 => ("b", "c", op.b, op.c),
        2 | 3 | 7 => ("c", "b", op.c, op.b),
        _ => return None,
    };
    // Uniform instructions have no constant-bank forms.
    if op.uniform && matches!(form, 3 | 5) {
        return None;
    }
    if lo_used {
        match form {
            1 => out.push(f(lo_name, 32, 8, reg)),
            4 | 2 => out.push(f(lo_name, 32, 32, Kind::Imm)),
            5 | 3 => {
                out.push(f("cbank.ur", 32, 6, Kind::UReg));
                out.push(f("cbank.offset", 40, 14, Kind::CBank));
                out.push(f("cbank", 54, 5, Kind::CBank));
                out.push(flag("cbank.bindless", 91));
            }
            _ => {
                out.push(f(lo_name, 32, 8, Kind::UReg));
                // A uniform register as an ALU source sets bit 91 (the uniform datapath's own
                // instructions set it anyway).
                if !op.uniform {
                    out.push(f("ur", 91, 1, Kind::Set));
                }
            }
        }
    }
    if hi_used {
        out.push(f(hi_name, 64, 8, reg));
    }
    Some(())
}

/// The fields of instruction `opcode` (bits 0-11) for `sm`, or None.
fn layout(opcode: u16, sm: u32) -> Option<(&'static str, Vec<Field>)> {
    if !super::SMS.contains(&sm) {
        return None;
    }
    if let Some(found) = fixed(opcode) {
        return Some(found);
    }
    let (opc, form) = (u32::from(opcode & 0x1ff), u32::from(opcode >> 9));
    let op = alu_op(opc, sm)?;
    let reg = if op.uniform { Kind::UReg } else { Kind::Reg };
    let mut out = Vec::new();
    if op.uniform {
        out.push(f("uniform", 91, 1, Kind::Set));
    }
    if op.d {
        out.push(f("d", 16, 8, reg));
    }
    if op.a {
        out.push(f("a", 24, 8, reg));
    }
    alu_slots(&op, form, &mut out)?;
    let imm_lo = matches!(form, 2 | 4);
    for &fl in &op.fields {
        // The negation and absolute value of B and C: bits 63/62 for the operand in bits
        // 32-63 (none for an immediate), 75/74 for the one in 64-71.
        let at = match fl.at {
            NEG_B | ABS_B | NEG_C | ABS_C => {
                let is_b = matches!(fl.at, NEG_B | ABS_B);
                let neg = matches!(fl.at, NEG_B | NEG_C);
                let lo = is_b == matches!(form, 1 | 4 | 5 | 6);
                match (lo, neg) {
                    (true, _) if imm_lo => continue,
                    (true, true) => 63,
                    (true, false) => 62,
                    (false, true) => 75,
                    (false, false) => 74,
                }
            }
            at => at,
        };
        let fl = Field { at, ..fl };
        // A field whose bits the form's operands (or an earlier field) already take is not
        // there in this form.
        if out.iter().all(|o| o.mask() & fl.mask() == 0) {
            out.push(fl);
        }
    }
    Some((op.name, out))
}

/// The instructions whose fields do not follow the ALU forms, by bits 0-11.
fn fixed(opcode: u16) -> Option<(&'static str, Vec<Field>)> {
    use Kind::*;
    const D: Field = f("d", 16, 8, Reg);
    const UD: Field = f("d", 16, 8, UReg);
    const A: Field = f("a", 24, 8, Reg);
    const COND: Field = pred("cond", 87);
    const COND_NEG: Field = flag("cond.neg", 90);
    const OFF: Field = f("offset", 40, 24, AddrOffset);
    const E: Field = f("e", 72, 1, Set);
    const SIZE: Field = m("size", 73, 3);
    const ORDER: Field = m("order", 77, 4);
    const EVICT: Field = m("evict", 84, 3);
    const A64: Field = flag("a.64", 90);
    const DESC: Field = flag("desc", 91);
    const TARGET: Field = f("target", 34, 32, Offset);
    Some(match opcode {
        0x981 => (
            "LDG",
            vec![
                D,
                A,
                f("ur", 32, 6, UReg),
                OFF,
                // A predicate operand stored complemented (0 is none), and its negation.
                m("pred.not", 64, 3),
                flag("pred.neg", 67),
                m("ltc", 68, 2),
                E,
                SIZE,
                flag("no_ur", 76),
                ORDER,
                P0,
                EVICT,
                A64,
                DESC,
            ],
        ),
        0x986 => (
            "STG",
            vec![
                A,
                f("data", 32, 8, Reg),
                OFF,
                f("ur", 64, 6, UReg),
                E,
                SIZE,
                flag("no_ur", 76),
                ORDER,
                EVICT,
                A64,
                DESC,
            ],
        ),
        0x98e => (
            "RED",
            vec![
                A,
                f("data", 32, 8, Reg),
                OFF,
                f("ur", 64, 6, UReg),
                flag("no_ur", 71),
                E,
                m("type", 73, 4),
                ORDER,
                EVICT,
                m("op", 87, 3),
                A64,
                DESC,
            ],
        ),
        0x3a9 => (
            "ATOMG.CAS",
            vec![P0, D, A, f("b", 32, 8, Reg), OFF, f("c", 64, 8, Reg), E, m("type", 73, 4), ORDER, EVICT, A64],
        ),
        0xab9 => (
            "ULDC",
            vec![
                UD,
                f("cbank.ur", 24, 6, UReg),
                f("cbank.offset", 38, 16, CBank),
                f("cbank", 54, 5, CBank),
                SIZE,
                DESC,
            ],
        ),
        0x883 => ("UP2UR", vec![UD, f("a", 24, 8, UReg), f("mask", 32, 32, Imm), m("byte", 76, 2)]),
        0x919 => ("S2R", vec![D, f("sr", 72, 8, Special)]),
        0x9c3 => ("S2UR", vec![UD, f("sr", 72, 8, Special)]),
        0x805 => ("CS2R", vec![D, f("sr", 72, 8, Special), flag("64", 80)]),
        0x3c2 => ("R2UR", vec![P0, UD, A]),
        0x947 => {
            ("BRA", vec![m("mode", 32, 2), TARGET, f("target.hi", 66, 16, Offset), m("incdec", 85, 2), COND, COND_NEG])
        }
        0x945 => ("BSSY", vec![f("barrier", 16, 4, Mod), f("target", 34, 30, Offset), COND, COND_NEG]),
        0x941 => ("BSYNC", vec![f("barrier", 16, 4, Mod), COND, COND_NEG]),
        0x942 => ("BREAK", vec![f("barrier", 16, 4, Mod), COND, COND_NEG]),
        0x944 => ("CALL.REL", vec![TARGET, f("target.hi", 66, 16, Offset), flag("noinc", 86), COND, COND_NEG]),
        0x950 => ("RET.REL", vec![A, TARGET, f("target.hi", 66, 16, Offset), flag("nodec", 86), COND, COND_NEG]),
        0x94d => ("EXIT", vec![m("mode", 84, 2), flag("no_atexit", 86), COND, COND_NEG]),
        0x948 => ("WARPSYNC", vec![f("mask", 32, 32, Imm), COND, COND_NEG]),
        0x946 => ("YIELD", vec![COND, COND_NEG]),
        0x918 => ("NOP", vec![]),
        0x984 => ("LDS", vec![D, A, OFF, SIZE, m("scale", 78, 2)]),
        0x388 => ("STS", vec![A, f("data", 32, 8, Reg), OFF, SIZE, m("scale", 78, 2)]),
        0xb1d => ("BAR", vec![f("barrier", 54, 4, Mod), flag("defer_blocking", 80)]),
        0x886 => ("VOTEU", vec![UD, m("mode", 72, 2), UP0, COND, COND_NEG]),
        _ => return None,
    })
}

/// Every opcode (bits 0-11) tk's tables can encode for `sm`, with its name.
pub fn opcodes(sm: u32) -> Vec<(u16, &'static str)> {
    (0..0x1000u16).filter_map(|o| layout(o, sm).map(|(n, _)| (o, n))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_fields_of_an_instruction_overlap() {
        for sm in super::super::SMS {
            for (o, name) in opcodes(sm) {
                let (_, fields) = layout(o, sm).expect("listed");
                let mut taken = 0xfffu128 | GUARD_CTRL;
                for fl in &fields {
                    assert!(u32::from(fl.at) + u32::from(fl.width) <= 105, "{name} {o:#x}: {fl:?}");
                    assert_eq!(taken & fl.mask(), 0, "{name} {o:#x}: {fl:?} overlaps");
                    taken |= fl.mask();
                }
            }
        }
    }

    #[test]
    fn ptxas_words_decode_and_encode_back() {
        for (w, sm, name) in [
            (0x000e_2200_0000_2100_0000_0000_0002_7919u128, 86, "S2R"),
            (0x000f_e200_078e_00ff_0000_0a00_ff01_7624, 86, "IMAD"),
            (0x000f_e200_0000_01ff_0000_0004_ff09_7435, 80, "HFMA2.MMA"),
            (0x000f_e200_0000_00ff_0000_0044_ff44_723e, 89, "F2FP"),
            (0x000f_ea00_0380_0000_0000_7140_0000_8947, 86, "BRA"),
            (0x000f_e200_0f8e_c03f_0000_00ff_0404_7892, 86, "ULOP3"),
            (0x000f_e400_0380_0000_ffff_ffff_0000_7948, 86, "WARPSYNC"),
        ] {
            let i = Inst::decode(w, sm).unwrap_or_else(|e| panic!("{w:#x}: {e}"));
            assert_eq!(i.name, name);
            assert_eq!(i.encode(), Ok(w), "{i:?}");
        }
    }

    #[test]
    fn instructions_built_from_fields_are_ptxas_words() {
        // S2R R2, SR_TID.X with ptxas's control bits.
        let mut i = Inst::new(0x919, 86).expect("S2R");
        i.set("d", 2).and_then(|i| i.set("sr", 0x21)).expect("fields");
        i.ctrl = Control { stall: 1, yield_: true, write_sb: 0, read_sb: 7, wait: 0, reuse: 0 };
        assert_eq!(i.encode(), Ok(0x000e_2200_0000_2100_0000_0000_0002_7919));
        // @!P0 BRA to 0x7150 from 0x0.
        let mut b = Inst::new(0x947, 86).expect("BRA");
        b.guard = 8;
        b.set_target(0, 0x7150).expect("in reach");
        b.ctrl = Control { stall: 5, yield_: true, write_sb: 7, read_sb: 7, wait: 0, reuse: 0 };
        assert_eq!(b.encode(), Ok(0x000f_ea00_0380_0000_0000_7140_0000_8947));
        // Backwards, and out of reach.
        let mut back = Inst::new(0x947, 86).expect("BRA");
        back.set_target(0x100, 0x80).expect("in reach");
        let label = |t: u64| Some(format!("L{t:x}"));
        let text = super::super::print(back.encode().expect("encodes"), 86, 0x100, &label).expect("prints");
        assert_eq!(text.body, "BRA `(L80)");
        let mut bssy = Inst::new(0x945, 86).expect("BSSY");
        assert!(matches!(bssy.set_target(0, 1 << 40), Err(EncodeError::Target { .. })));
        assert!(matches!(bssy.set_target(0, 0x22), Err(EncodeError::Target { .. })));
    }

    #[test]
    fn bad_fields_and_words_are_errors() {
        let mut i = Inst::new(0x919, 86).expect("S2R");
        assert!(matches!(i.set("d", 256), Err(EncodeError::TooWide { .. })));
        let e = i.set("q", 1).map(|_| ()).expect_err("no such field");
        assert!(e.to_string().contains("its fields are: d, sr"), "{e}");
        assert!(matches!(Inst::new(0x919, 90), Err(EncodeError::UnknownOpcode { .. })));
        assert!(matches!(Inst::decode(0, 86), Err(EncodeError::UnknownOpcode { .. })));
        // S2R with a bit no field covers.
        let w = 0x000e_2200_0000_2100_0000_0000_0002_7919u128 | 1 << 100;
        assert!(matches!(Inst::decode(w, 86), Err(EncodeError::StrayBits { bits, .. }) if bits == 1 << 100));
        // A field built by hand outside the encodable bits.
        let mut bad = Inst::new(0x919, 86).expect("S2R");
        bad.fields[0].0.width = 40;
        assert!(matches!(bad.encode(), Err(EncodeError::BadField { .. })));
        assert!(matches!(bad.set("d", 1), Err(EncodeError::BadField { .. })));
        // I2FP is new in sm_86.
        assert!(Inst::new(0x245, 80).is_err() && Inst::new(0x245, 86).is_ok());
    }

    proptest::proptest! {
        /// Any word decodes or is refused, and what decodes encodes back to the same bits.
        #[test]
        fn any_word_round_trips_or_is_refused(lo in proptest::num::u64::ANY, hi in proptest::num::u64::ANY, sm in proptest::sample::select(vec![80u32, 86, 89])) {
            let w = u128::from(hi) << 64 | u128::from(lo);
            for w in [w, w & !(((1u128 << 41) - 1) << 64) & !(0xffff_ffff << 32)] {
                if let Ok(i) = Inst::decode(w, sm) {
                    proptest::prop_assert_eq!(i.encode(), Ok(w));
                }
            }
        }
    }
}
