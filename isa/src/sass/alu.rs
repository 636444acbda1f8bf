//! The ALU and conversion instructions: integer (IMAD, IADD3, ISETP, SEL, MOV, LOP3, SHF, LEA,
//! PLOP3, P2R, R2P, PRMT, SGXT, IMNMX, IABS), float (FFMA, FADD, FMUL, FSETP, FSEL, MUFU,
//! FCHK), half (HADD2), double (DFMA, DADD, DMUL, DSETP) and conversions (F2F, F2I, I2F, FRND,
//! I2FP, F2FP).
//!
//! Bits 0-8 are the base opcode and 9-11 the operand form: 1 both sources registers; 4, 5, 6
//! source B an immediate (bits 32-63), a constant bank or a uniform register; 2, 3, 7 the same
//! for source C, with B's register moving to bits 64-71 (NAK's `encode_alu`).

use super::fmt::*;
use super::{bit, bits};

/// A source operand: a register, a uniform register, an immediate or a constant bank.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Src {
    Reg(u32),
    Ureg(u32),
    Imm(u32),
    Cbank,
}

fn slot_b(w: u128) -> Src {
    match bits(w, 9, 3) {
        4 => Src::Imm(bits(w, 32, 32)),
        5 => Src::Cbank,
        6 => Src::Ureg(bits(w, 32, 8)),
        2 | 3 | 7 => Src::Reg(bits(w, 64, 8)),
        _ => Src::Reg(bits(w, 32, 8)),
    }
}

fn slot_c(w: u128) -> Src {
    match bits(w, 9, 3) {
        2 => Src::Imm(bits(w, 32, 32)),
        3 => Src::Cbank,
        7 => Src::Ureg(bits(w, 32, 8)),
        _ => Src::Reg(bits(w, 64, 8)),
    }
}

/// The negate and absolute-value bits of the logical B and C operands: bits 63/62 go with
/// the operand in bits 32-63, 75/74 with the one in 64-71.
fn neg_b(w: u128) -> (bool, bool) {
    if matches!(bits(w, 9, 3), 1 | 4 | 5 | 6) { (bit(w, 63), bit(w, 62)) } else { (bit(w, 75), bit(w, 74)) }
}

fn neg_c(w: u128) -> (bool, bool) {
    if matches!(bits(w, 9, 3), 1 | 4 | 5 | 6) { (bit(w, 75), bit(w, 74)) } else { (bit(w, 63), bit(w, 62)) }
}

/// How an immediate prints.
type Imm<'a> = &'a dyn Fn(u32) -> String;

/// Options for printing an operand.
struct Op<'a> {
    imm: &'a dyn Fn(u32) -> String,
    neg: bool,
    abs: bool,
    neg_ch: char,
    reuse: Option<u32>,
    spaced: bool,
}

fn op(w: u128, s: Src, o: Op<'_>) -> String {
    let (text, is_reg) = match s {
        Src::Reg(n) => (r(n), true),
        Src::Ureg(n) => (ur(n), false),
        Src::Cbank => (cbank(w, o.spaced), false),
        Src::Imm(v) => return (o.imm)(v),
    };
    let text = mods(&text, o.neg, o.abs, o.neg_ch);
    match o.reuse {
        Some(at) if is_reg => reuse(text, w, at),
        _ => text,
    }
}

/// An operand with its reuse bit and nothing else.
fn plain<'a>(imm: &'a dyn Fn(u32) -> String, reuse: u32) -> Op<'a> {
    Op { imm, neg: false, abs: false, neg_ch: '-', reuse: Some(reuse), spaced: false }
}

fn signed<'a>(imm: &'a dyn Fn(u32) -> String, (neg, abs): (bool, bool), reuse: u32) -> Op<'a> {
    Op { imm, neg, abs, neg_ch: '-', reuse: Some(reuse), spaced: false }
}

/// Source A (bits 24-31) with its negate/abs and reuse (bit 122).
fn a(w: u128, neg: bool, abs: bool, ch: char) -> String {
    reuse(mods(&r(bits(w, 24, 8)), neg, abs, ch), w, 122)
}

fn pr(w: u128, at: u32) -> String {
    p(bits(w, at, 3), false, false)
}

fn pn(w: u128, at: u32, neg_at: u32) -> String {
    p(bits(w, at, 3), bit(w, neg_at), false)
}

const CMP_I: [&str; 8] = ["F", "LT", "EQ", "LE", "GT", "NE", "GE", "T"];
const CMP_F: [&str; 16] =
    ["F", "LT", "EQ", "LE", "GT", "NE", "GE", "NUM", "NAN", "LTU", "EQU", "LEU", "GTU", "NEU", "GEU", "T"];
const SETOP: [&str; 4] = ["AND", "OR", "XOR", "INVALID3"];
const RND: [&str; 4] = ["", ".RM", ".RP", ".RZ"];
const RNDI: [&str; 4] = ["", ".FLOOR", ".CEIL", ".TRUNC"];

/// FTZ/FMZ of FFMA and FMUL (bits 80 and 76).
fn dnz(w: u128) -> &'static str {
    ["", ".FTZ", ".FMZ", ".INVALID3"][(u32::from(bit(w, 80)) | u32::from(bit(w, 76)) << 1) as usize]
}

fn flag(on: bool, s: &str) -> &str {
    if on { s } else { "" }
}

/// IMAD's power-of-two multipliers that nvdisasm prints as `.SHL` (not 2^16 nor 2^31).
fn shl_multiplier(v: u32) -> bool {
    (2..=1 << 30).contains(&v) && v.is_power_of_two() && v != 0x10000
}

/// The float immediate of a half-precision source (the low 16 bits).
fn f16lo(v: u32) -> String {
    f16imm(v & 0xffff)
}

pub fn print(w: u128, sm: u32) -> Option<String> {
    let opc = bits(w, 0, 9);
    let form = bits(w, 9, 3);
    let d = r(bits(w, 16, 8));
    let (bs, cs) = (slot_b(w), slot_c(w));
    let (hs, hu, fi, di): (Imm<'_>, Imm<'_>, Imm<'_>, Imm<'_>) = (&hexs, &hexu, &f32imm, &f64imm);
    let guard_b = || pn(w, 87, 90);
    let text = match opc {
        0x24 | 0x25 | 0x27 => {
            let x = bit(w, 74);
            let mut name = String::from(match opc {
                0x24 => "IMAD",
                0x25 => "IMAD.WIDE",
                _ => "IMAD.HI",
            });
            if opc == 0x24 && !x && form != 6 && form != 7 {
                if bits(w, 24, 8) == 255 || bs == Src::Reg(255) || bs == Src::Imm(0) {
                    name += ".MOV";
                } else if bs == Src::Imm(1) {
                    name += if cs == Src::Reg(255) { ".MOV" } else { ".IADD" };
                } else if matches!(bs, Src::Imm(v) if shl_multiplier(v)) && cs == Src::Reg(255) {
                    name += ".SHL";
                }
            }
            if !bit(w, 73) {
                name += ".U32";
            }
            if x {
                name += ".X";
            }
            let ch = if x { '~' } else { '-' };
            let mut ops = vec![d];
            if opc != 0x24 && bits(w, 81, 3) != 7 {
                ops.push(pr(w, 81));
            }
            ops.push(a(w, false, false, '-'));
            ops.push(op(w, bs, plain(hs, 123)));
            let (nc, _) = neg_c(w);
            ops.push(op(w, cs, Op { imm: hs, neg: nc, abs: false, neg_ch: ch, reuse: Some(124), spaced: false }));
            if x {
                ops.push(guard_b());
            }
            inst(&name, &ops)
        }
        0x10 => {
            let x = bit(w, 74);
            let ch = if x { '~' } else { '-' };
            let mut ops = vec![d];
            for at in [81, 84] {
                if bits(w, at, 3) != 7 {
                    ops.push(pr(w, at));
                }
            }
            ops.push(a(w, bit(w, 72), false, ch));
            ops.push(op(
                w,
                bs,
                Op { imm: hs, neg: bit(w, 63), abs: false, neg_ch: ch, reuse: Some(123), spaced: false },
            ));
            ops.push(op(
                w,
                cs,
                Op { imm: hs, neg: bit(w, 75), abs: false, neg_ch: ch, reuse: Some(124), spaced: false },
            ));
            if x {
                ops.push(guard_b());
                ops.push(pn(w, 77, 80));
            }
            inst(if x { "IADD3.X" } else { "IADD3" }, &ops)
        }
        0x0c => {
            let name = format!(
                "ISETP.{}{}.{}{}",
                CMP_I[bits(w, 76, 3) as usize],
                flag(!bit(w, 73), ".U32"),
                SETOP[bits(w, 74, 2) as usize],
                flag(bit(w, 72), ".EX")
            );
            let mut ops = vec![pr(w, 81), pr(w, 84), a(w, false, false, '-'), op(w, bs, plain(hs, 123)), guard_b()];
            if bit(w, 72) {
                ops.push(pn(w, 68, 71));
            }
            inst(&name, &ops)
        }
        0x07 => inst("SEL", &[d, a(w, false, false, '-'), op(w, bs, plain(hu, 123)), guard_b()]),
        0x08 => inst(
            if bit(w, 80) { "FSEL.FTZ" } else { "FSEL" },
            &[d, a(w, bit(w, 72), bit(w, 73), '-'), op(w, bs, signed(fi, neg_b(w), 123)), guard_b()],
        ),
        0x02 => {
            let mut ops = vec![d, op(w, bs, plain(hu, 123))];
            if bits(w, 72, 4) != 0xf {
                ops.push(hexu(bits(w, 72, 4)));
            }
            inst("MOV", &ops)
        }
        0x12 => {
            let mut ops = Vec::new();
            if bits(w, 81, 3) != 7 {
                ops.push(pr(w, 81));
            }
            ops.extend([
                d,
                a(w, false, false, '-'),
                op(w, bs, plain(hu, 123)),
                op(w, cs, plain(hu, 124)),
                hexu(bits(w, 72, 8)),
                guard_b(),
            ]);
            inst(if bit(w, 80) { "LOP3.LUT.PAND" } else { "LOP3.LUT" }, &ops)
        }
        0x19 => {
            let name = format!(
                "SHF.{}{}.{}{}",
                if bit(w, 76) { "R" } else { "L" },
                flag(bit(w, 75), ".W"),
                ["S64", "U64", "S32", "U32"][bits(w, 73, 2) as usize],
                flag(bit(w, 80), ".HI")
            );
            inst(&name, &[d, a(w, false, false, '-'), op(w, bs, plain(hu, 123)), op(w, cs, plain(hu, 124))])
        }
        0x11 => {
            let (x, hi, sx) = (bit(w, 74), bit(w, 80), bit(w, 73));
            let ch = if x { '~' } else { '-' };
            let name = format!("LEA{}{}{}", flag(hi, ".HI"), flag(x, ".X"), flag(sx, ".SX32"));
            let mut ops = vec![d];
            if bits(w, 81, 3) != 7 {
                ops.push(pr(w, 81));
            }
            ops.push(a(w, bit(w, 72), false, ch));
            ops.push(op(
                w,
                bs,
                Op { imm: hu, neg: neg_b(w).0, abs: false, neg_ch: ch, reuse: Some(123), spaced: false },
            ));
            if hi && !sx {
                ops.push(op(w, cs, plain(hu, 124)));
            }
            ops.push(hexu(bits(w, 75, 5)));
            if x {
                ops.push(guard_b());
            }
            inst(&name, &ops)
        }
        0x1c => {
            let lut = bits(w, 72, 5) << 3 | bits(w, 64, 3);
            inst(
                "PLOP3.LUT",
                &[
                    pr(w, 81),
                    pr(w, 84),
                    guard_b(),
                    pn(w, 77, 80),
                    p(bits(w, 68, 3), bit(w, 71), bit(w, 67)),
                    hexu(lut),
                    hexu(bits(w, 16, 8)),
                ],
            )
        }
        0x03 => inst(
            &format!("P2R{}", ["", ".B1", ".B2", ".B3"][bits(w, 76, 2) as usize]),
            &[d, "PR".into(), a(w, false, false, '-'), op(w, bs, plain(hs, 123))],
        ),
        0x04 => inst(
            "R2P",
            &[
                "PR".into(),
                reuse(r(bits(w, 24, 8)), w, 122) + ["", ".B1", ".B2", ".B3"][bits(w, 76, 2) as usize],
                op(w, bs, plain(hu, 123)),
            ],
        ),
        0x16 => inst(
            &format!(
                "PRMT{}",
                ["", ".F4E", ".B4E", ".RC8", ".ECL", ".ECR", ".RC16", ".INVALID7"][bits(w, 72, 3) as usize]
            ),
            &[d, a(w, false, false, '-'), op(w, bs, plain(hu, 123)), op(w, cs, plain(hu, 124))],
        ),
        0x1a => inst(
            &format!("SGXT{}{}", flag(bit(w, 75), ".W"), flag(!bit(w, 73), ".U32")),
            &[d, a(w, false, false, '-'), op(w, bs, plain(hu, 123))],
        ),
        0x17 => inst(
            if bit(w, 73) { "IMNMX" } else { "IMNMX.U32" },
            &[d, a(w, false, false, '-'), op(w, bs, plain(hs, 123)), guard_b()],
        ),
        0x13 => inst("IABS", &[d, op(w, bs, plain(hs, 123))]),
        0x23 => {
            let name = format!("FFMA{}{}{}", dnz(w), RND[bits(w, 78, 2) as usize], flag(bit(w, 77), ".SAT"));
            inst(
                &name,
                &[
                    d,
                    a(w, bit(w, 72), bit(w, 73), '-'),
                    op(w, bs, signed(fi, neg_b(w), 123)),
                    op(w, cs, signed(fi, neg_c(w), 124)),
                ],
            )
        }
        0x21 => {
            let name =
                format!("FADD{}{}{}", flag(bit(w, 80), ".FTZ"), RND[bits(w, 78, 2) as usize], flag(bit(w, 77), ".SAT"));
            let second = if form == 1 { Src::Reg(bits(w, 32, 8)) } else { cs };
            inst(
                &name,
                &[d, a(w, bit(w, 72), bit(w, 73), '-'), op(w, second, signed(fi, (bit(w, 63), bit(w, 62)), 124))],
            )
        }
        0x20 => {
            let scale = [".INVALID0", ".D8", ".D4", ".D2", "", ".M2", ".M4", ".M8"][bits(w, 84, 3) as usize];
            let name = format!("FMUL{}{scale}{}{}", dnz(w), RND[bits(w, 78, 2) as usize], flag(bit(w, 77), ".SAT"));
            inst(&name, &[d, a(w, bit(w, 72), bit(w, 73), '-'), op(w, bs, signed(fi, neg_b(w), 123))])
        }
        0x0b => {
            let name = format!(
                "FSETP.{}{}.{}",
                CMP_F[bits(w, 76, 4) as usize],
                flag(bit(w, 80), ".FTZ"),
                SETOP[bits(w, 74, 2) as usize]
            );
            inst(
                &name,
                &[
                    pr(w, 81),
                    pr(w, 84),
                    a(w, bit(w, 72), bit(w, 73), '-'),
                    op(w, bs, signed(fi, neg_b(w), 123)),
                    guard_b(),
                ],
            )
        }
        0x2a => {
            let c = bits(w, 76, 4);
            let cn = match c {
                0 => "MIN",
                15 => "MAX",
                _ => CMP_F[c as usize],
            };
            let second = if form == 1 {
                op(w, Src::Reg(bits(w, 32, 8)), signed(di, (bit(w, 63), bit(w, 62)), 124))
            } else {
                op(w, cs, Op { imm: di, neg: bit(w, 63), abs: bit(w, 62), neg_ch: '-', reuse: None, spaced: false })
            };
            inst(
                &format!("DSETP.{cn}.{}", SETOP[bits(w, 74, 2) as usize]),
                &[pr(w, 81), pr(w, 84), a(w, bit(w, 72), bit(w, 73), '-'), second, guard_b()],
            )
        }
        0x2b => inst(
            &format!("DFMA{}", RND[bits(w, 78, 2) as usize]),
            &[
                d,
                a(w, bit(w, 72), bit(w, 73), '-'),
                op(w, bs, signed(di, neg_b(w), 123)),
                op(w, cs, signed(di, neg_c(w), 124)),
            ],
        ),
        0x29 => inst(
            &format!("DADD{}", RND[bits(w, 78, 2) as usize]),
            &[d, a(w, bit(w, 72), bit(w, 73), '-'), op(w, cs, signed(di, neg_c(w), 124))],
        ),
        0x28 => inst(
            &format!("DMUL{}", RND[bits(w, 78, 2) as usize]),
            &[d, a(w, bit(w, 72), bit(w, 73), '-'), op(w, bs, signed(di, neg_b(w), 123))],
        ),
        0x108 => {
            const OPS: [&str; 10] = ["COS", "SIN", "EX2", "LG2", "RCP", "RSQ", "RCP64H", "RSQ64H", "SQRT", "TANH"];
            let (o, half) = (bits(w, 74, 4), bit(w, 73));
            let name = match OPS.get(o as usize) {
                Some(n) if !(half && (o == 6 || o == 7)) => n.to_string(),
                _ => format!("INVALID{o}"),
            };
            let imm: &dyn Fn(u32) -> String = if o == 6 || o == 7 {
                &f64imm
            } else if half {
                &f16lo
            } else {
                &f32imm
            };
            let (n, ab) = neg_b(w);
            inst(
                &format!("MUFU.{name}{}", flag(half, ".F16")),
                &[d, op(w, bs, Op { imm, neg: n, abs: ab, neg_ch: '-', reuse: Some(123), spaced: half })],
            )
        }
        0x102 => inst("FCHK", &[pr(w, 81), a(w, bit(w, 72), bit(w, 73), '-'), op(w, bs, signed(fi, neg_b(w), 123))]),
        0x30 => {
            const SW: [&str; 4] = ["", ".F32", ".H0_H0", ".H1_H1"];
            let f32_ = bit(w, 78);
            let name = format!("HADD2{}{}{}", flag(f32_, ".F32"), flag(bit(w, 80), ".FTZ"), flag(bit(w, 77), ".SAT"));
            let first = reuse(mods(&r(bits(w, 24, 8)), bit(w, 72), !f32_ && bit(w, 73), '-'), w, 122)
                + SW[bits(w, 74, 2) as usize];
            let sw = SW[bits(w, 60, 2) as usize];
            let mut ops = vec![d, first];
            match form {
                1 => ops.push(reuse(mods(&r(bits(w, 32, 8)), bit(w, 63), bit(w, 62), '-'), w, 124) + sw),
                2 if f32_ => ops.push(f16imm(bits(w, 32, 16))),
                2 => {
                    ops.push(f16imm(bits(w, 48, 16)));
                    ops.push(f16imm(bits(w, 32, 16)));
                }
                3 => ops.push(mods(&cbank(w, true), bit(w, 63), bit(w, 62), '-') + sw),
                _ => ops.push(mods(&ur(bits(w, 32, 8)), bit(w, 63), bit(w, 62), '-') + sw),
            }
            inst(&name, &ops)
        }
        0x104 | 0x110 => {
            const T: [&str; 4] = ["?", "F16", "F32", "F64"];
            let dt = if bit(w, 77) && bits(w, 75, 2) == 0 { "BF16" } else { T[bits(w, 75, 2) as usize] };
            let ss = bits(w, 84, 2);
            let name =
                format!("F2F{}.{dt}.{}{}", flag(bit(w, 80), ".FTZ"), T[ss as usize], RND[bits(w, 78, 2) as usize]);
            inst(&name, &[d, float_src(w, bs, ss)])
        }
        0x105 | 0x111 => {
            let (sg, ds, ss) = (bit(w, 72), bits(w, 75, 2), bits(w, 84, 2));
            let dn = format!("{}{}", if sg { "S" } else { "U" }, 8 << ds);
            let name = format!(
                "F2I{}{}{}{}{}",
                flag(bit(w, 80), ".FTZ"),
                if dn == "S32" { String::new() } else { format!(".{dn}") },
                if ss == 2 { String::new() } else { format!(".F{}", 8 << ss) },
                RNDI[bits(w, 78, 2) as usize],
                flag(bit(w, 77), ".NTZ")
            );
            inst(&name, &[d, float_src(w, bs, ss)])
        }
        0x106 | 0x112 => {
            let (sg, ds, ss) = (bit(w, 74), bits(w, 75, 2), bits(w, 84, 2));
            let sn = format!("{}{}", if sg { "S" } else { "U" }, 8 << ss);
            let name = format!(
                "I2F{}{}{}",
                if ds == 2 { String::new() } else { format!(".F{}", 8 << ds) },
                if sn == "S32" { String::new() } else { format!(".{sn}") },
                RND[bits(w, 78, 2) as usize]
            );
            let imm: &dyn Fn(u32) -> String = if sg { &hexs } else { &hexu };
            let mut x = op(w, bs, Op { imm, neg: false, abs: false, neg_ch: '-', reuse: Some(123), spaced: ss < 2 });
            let sel = bits(w, 60, 2) as usize;
            if !matches!(bs, Src::Imm(_)) && sel != 0 {
                x += match ss {
                    0 => ["", ".B1", ".B2", ".B3"][sel],
                    1 => ["", ".H1", ".INVALID2", ".INVALID3"][sel],
                    _ => "",
                };
            }
            inst(&name, &[d, x])
        }
        0x107 | 0x113 => {
            let ds = bits(w, 75, 2);
            let name = format!(
                "FRND{}{}{}",
                flag(bit(w, 80), ".FTZ"),
                if ds == 2 { String::new() } else { format!(".F{}", 8 << ds) },
                RNDI[bits(w, 78, 2) as usize]
            );
            inst(&name, &[d, float_src(w, bs, ds)])
        }
        // I2FP is new in sm_86.
        0x45 if sm >= 86 => {
            let sg = bit(w, 74);
            inst(
                &format!("I2FP.F32.{}", if sg { "S32" } else { "U32" }),
                &[d, op(w, bs, plain(if sg { hs } else { hu }, 123))],
            )
        }
        0x3e => {
            // sm_89 names both types: F2FP.F16.F32.PACK_AB, F2FP.BF16.F32.PACK_AB.
            let ty = match (sm >= 89, bit(w, 76)) {
                (false, false) => "",
                (false, true) => ".BF16",
                (true, false) => ".F16.F32",
                (true, true) => ".BF16.F32",
            };
            let name = format!("F2FP{}{}{ty}.PACK_AB", flag(bit(w, 77), ".SATFINITE"), flag(bit(w, 75), ".RELU"));
            inst(&name, &[d, a(w, false, false, '-'), op(w, bs, plain(fi, 123))])
        }
        // HFMA2.MMA with an immediate pair as C, as ptxas uses it for sm_80 to move constants
        // (`HFMA2.MMA R9, -RZ, RZ, 0, 2.38e-07`): the fields beyond those are not in the tables.
        0x35 if form == 2 && bits(w, 73, 32) == 0 => inst(
            "HFMA2.MMA",
            &[
                d,
                reuse(mods(&r(bits(w, 24, 8)), bit(w, 72), false, '-'), w, 122),
                reuse(r(bits(w, 64, 8)), w, 123),
                f16imm(bits(w, 48, 16)),
                f16imm(bits(w, 32, 16)),
            ],
        ),
        _ => return None,
    };
    Some(text)
}

/// The float source B of a conversion whose source size is `ss` (1 half, 2 single, 3
/// double), with its negation, absolute value and reuse, and `.H1` on a half source whose high
/// half is selected.
fn float_src(w: u128, bs: Src, ss: u32) -> String {
    let imm: Imm<'_> = match ss {
        3 => &f64imm,
        1 => &f16lo,
        _ => &f32imm,
    };
    let (neg, abs) = neg_b(w);
    h1(w, op(w, bs, Op { imm, neg, abs, neg_ch: '-', reuse: Some(123), spaced: ss == 1 }), ss)
}

/// `.H1` on a half-precision source whose bits 60-61 select the high half (inside the bars
/// of an absolute value).
fn h1(w: u128, s: String, ss: u32) -> String {
    if bits(w, 60, 2) == 1 && ss == 1 {
        match s.strip_suffix('|') {
            Some(inner) => format!("{inner}.H1|"),
            None => s + ".H1",
        }
    } else {
        s
    }
}
