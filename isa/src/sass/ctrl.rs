//! Memory, uniform, special-register and control-flow instructions as ptxas emits them for
//! sm_86: global loads, stores, reductions and compare-and-swap (the descriptor forms, whose
//! uniform register nvdisasm does not print), constant loads, the uniform ALU, special
//! registers, branches, convergence barriers, calls, returns and exits.
//!
//! Branch offsets count bytes from the next instruction, in 4-byte units from bit 34 (NAK
//! writes `target - ip - 4` in words), and print as the target's label or function name.

use super::fmt::*;
use super::{bit, bits};

/// Sign-extends the `n`-bit field at `at` and scales it to bytes.
fn offset(w: u128, at: u32, n: u32) -> i64 {
    let v = ((w >> at) & ((1u128 << n) - 1)) as u64;
    let shift = 64 - n;
    (((v << shift) as i64) >> shift) * 4
}

/// The byte offset of the branch target of `w` at `at`.
pub fn target(w: u128, at: u64) -> Option<u64> {
    let off = match bits(w, 0, 12) {
        0x947 | 0x944 | 0x950 => offset(w, 34, 48),
        0x945 => offset(w, 34, 30),
        _ => return None,
    };
    at.checked_add(16)?.checked_add_signed(off)
}

fn up(w: u128, at: u32, neg_at: u32) -> String {
    p(bits(w, at, 3), bit(w, neg_at), true)
}

/// A signed 24-bit byte offset as nvdisasm appends it to an address (`+0x4`, `+-0x10`).
fn addr_offset(w: u128) -> String {
    let v = bits(w, 40, 24);
    let v = ((v << 8) as i32) >> 8;
    match v {
        0 => String::new(),
        v if v < 0 => format!("+-0x{:x}", v.unsigned_abs()),
        v => format!("+0x{v:x}"),
    }
}

/// A global address: the register as 64-bit (bit 90) or 32-bit, the uniform register added
/// when `no_ur` is clear, and the offset.
fn global_addr(w: u128, no_ur: bool, ur_at: u32) -> String {
    let reg = format!("{}{}", r(bits(w, 24, 8)), if bit(w, 90) { ".64" } else { ".U32" });
    let plus_ur = if no_ur { String::new() } else { format!("+{}", ur(bits(w, ur_at, 6))) };
    format!("[{reg}{plus_ur}{}]", addr_offset(w))
}

const SIZE: [&str; 8] = [".U8", ".S8", ".U16", ".S16", "", ".64", ".128", ".INVALID7"];
const EVICT: [&str; 8] = [".EF", "", ".EL", ".LU", ".EU", ".NA", ".INVALID6", ".INVALID7"];
const ORDER: [&str; 16] = [
    "",
    ".CONSTANT.PRIVATE",
    ".CONSTANT.CTA",
    ".CONSTANT.CTA.PRIVATE",
    ".CONSTANT",
    ".STRONG.SM",
    ".STRONG.GPU.PRIVATE",
    ".STRONG.GPU",
    ".MMIO.GPU",
    ".CONSTANT.SM",
    ".STRONG.SYS",
    ".CONSTANT.SM.PRIVATE",
    ".MMIO.SYS",
    ".CONSTANT.VC",
    ".CONSTANT.VC.PRIVATE",
    ".CONSTANT.GPU",
];
const RED_OP: [&str; 8] = ["ADD", "MIN", "MAX", "INC", "DEC", "AND", "OR", "XOR"];
const RED_TYPE: [&str; 7] = ["", ".S32", ".64", ".F32.FTZ.RN", ".F16x2.RN", ".S64", ".F64.RN"];
const CMP_I: [&str; 8] = ["F", "LT", "EQ", "LE", "GT", "NE", "GE", "T"];
const SETOP: [&str; 3] = ["AND", "OR", "XOR"];

/// The name of special register `n` as nvdisasm prints it (the ones tk's code reads; others
/// are None).
fn special(n: u32) -> Option<String> {
    Some(match n {
        0x00 => "SR_LANEID".into(),
        0x21 => "SR_TID.X".into(),
        0x22 => "SR_TID.Y".into(),
        0x23 => "SR_TID.Z".into(),
        0x25 => "SR_CTAID.X".into(),
        0x26 => "SR_CTAID.Y".into(),
        0x27 => "SR_CTAID.Z".into(),
        0x38 => "SR_EQMASK".into(),
        0x39 => "SR_LTMASK".into(),
        0x3a => "SR_LEMASK".into(),
        0x3b => "SR_GTMASK".into(),
        0x3c => "SR_GEMASK".into(),
        0x50 => "SR_CLOCKLO".into(),
        0x51 => "SR_CLOCKHI".into(),
        0x52 => "SR_GLOBALTIMERLO".into(),
        0x53 => "SR_GLOBALTIMERHI".into(),
        0xff => "SRZ".into(),
        _ => return None,
    })
}

/// A uniform ALU source in the B slot: a uniform register (bits 32-39) or, in form 4, an
/// immediate; in form 2 the register moves to bits 64-71 (the C slot holds the immediate).
fn ub(w: u128, imm: &dyn Fn(u32) -> String) -> Option<String> {
    Some(match bits(w, 9, 3) {
        1 => ur(bits(w, 32, 8)),
        4 => imm(bits(w, 32, 32)),
        2 => ur(bits(w, 64, 8)),
        _ => return None,
    })
}

fn uc(w: u128, imm: &dyn Fn(u32) -> String) -> Option<String> {
    Some(match bits(w, 9, 3) {
        1 | 4 => ur(bits(w, 64, 8)),
        2 => imm(bits(w, 32, 32)),
        _ => return None,
    })
}

fn target_text(w: u128, at: u64, label: &dyn Fn(u64) -> Option<String>) -> Option<String> {
    Some(format!("`({})", label(target(w, at)?)?))
}

/// A condition predicate operand (bits 87-89, negated by 90), or nothing when it is PT.
fn cond(w: u128) -> Option<String> {
    (bits(w, 87, 3) != 7 || bit(w, 90)).then(|| p(bits(w, 87, 3), bit(w, 90), false))
}

/// The instruction text of `w` at `at` and whether its guard is a uniform predicate, or None.
pub fn print(w: u128, at: u64, label: &dyn Fn(u64) -> Option<String>) -> Option<(String, bool)> {
    let opc = bits(w, 0, 12);
    let d = r(bits(w, 16, 8));
    let ud = ur(bits(w, 16, 8));
    let uniform = matches!(
        opc & 0x1ff,
        0xa4 | 0xa5 | 0x90 | 0x87 | 0x8c | 0x99 | 0x9a | 0x92 | 0x91 | 0x83 | 0x82 | 0xb9 | 0x1c3 | 0x86 | 0xbd
    );
    let text = match opc {
        0x981 => {
            if !bit(w, 72) || !bit(w, 91) || bit(w, 101) {
                return None;
            }
            let mut ops = Vec::new();
            if bits(w, 81, 3) != 7 {
                ops.push(p(bits(w, 81, 3), false, false));
            }
            ops.push(d);
            ops.push(global_addr(w, bit(w, 76), 32));
            // An optional predicate operand in bits 64-67, stored complemented (0 is none, 8
            // is !PT); ptxas leaves it clear. Bits 68-69: the L2 prefetch size.
            if bits(w, 64, 4) != 0 {
                ops.push(p(7 - bits(w, 64, 3), bit(w, 67), false));
            }
            let name = format!(
                "LDG.E{}{}{}{}",
                EVICT[bits(w, 84, 3) as usize],
                ["", ".LTC64B", ".LTC128B", ".LTC256B"][bits(w, 68, 2) as usize],
                SIZE[bits(w, 73, 3) as usize],
                ORDER[bits(w, 77, 4) as usize]
            );
            inst(&name, &ops)
        }
        0x986 => {
            let order = bits(w, 77, 4);
            if !bit(w, 72) || !bit(w, 91) || bit(w, 101) || ![0, 4, 5, 6, 7, 8, 0xa, 0xc].contains(&order) {
                return None;
            }
            let order = if order == 4 { ".STRONG.SM.PRIVATE" } else { ORDER[order as usize] };
            let name = format!("STG.E{}{}{order}", EVICT[bits(w, 84, 3) as usize], SIZE[bits(w, 73, 3) as usize]);
            inst(&name, &[global_addr(w, bit(w, 76), 64), r(bits(w, 32, 8))])
        }
        0x98e => {
            let ty = RED_TYPE.get(bits(w, 73, 4) as usize)?;
            if !bit(w, 72) || !bit(w, 91) || bit(w, 101) {
                return None;
            }
            let name = format!(
                "RED.E.{}{}{ty}{}",
                RED_OP[bits(w, 87, 3) as usize],
                EVICT[bits(w, 84, 3) as usize],
                ORDER[bits(w, 77, 4) as usize]
            );
            inst(&name, &[global_addr(w, bit(w, 71), 64), r(bits(w, 32, 8))])
        }
        0x3a9 => {
            // Compare-and-swap, in the form without a descriptor: the address prints without
            // `.64`.
            let ty = [".", ".S32", ".64"].get(bits(w, 73, 4) as usize)?.trim_start_matches('.');
            if !bit(w, 72) || bits(w, 84, 3) != 1 {
                return None;
            }
            let ty = if ty.is_empty() { String::new() } else { format!(".{ty}") };
            let name = format!("ATOMG.E.CAS{ty}{}", ORDER[bits(w, 77, 4) as usize]);
            inst(
                &name,
                &[
                    p(bits(w, 81, 3), false, false),
                    d,
                    format!("[{}{}]", r(bits(w, 24, 8)), addr_offset(w)),
                    r(bits(w, 32, 8)),
                    r(bits(w, 64, 8)),
                ],
            )
        }
        0xab9 => {
            let off = bits(w, 38, 16);
            let offs = if off & 0x8000 != 0 { format!("-0x{:x}", 0x10000 - off) } else { format!("0x{off:x}") };
            let c = if bit(w, 91) {
                format!("cx[{}][{offs}]", ur(bits(w, 24, 6)))
            } else {
                format!("c[0x{:x}][{offs}]", bits(w, 54, 5))
            };
            let size = SIZE[bits(w, 73, 3) as usize];
            if bits(w, 73, 3) > 5 {
                return None;
            }
            inst(&format!("ULDC{size}"), &[ud, c])
        }
        0x882 => inst("UMOV", &[ud, hexu(bits(w, 32, 32))]),
        0xc82 => inst("UMOV", &[ud, ur(bits(w, 32, 6))]),
        0x2a4 | 0x8a4 | 0x4a4 | 0x2a5 | 0x8a5 | 0x4a5 => {
            let wide = opc & 0xff == 0xa5;
            let x = bit(w, 74);
            if wide && (x || bits(w, 81, 3) != 7) {
                return None;
            }
            let name = format!(
                "UIMAD{}{}{}",
                if wide { ".WIDE" } else { "" },
                if bit(w, 73) { "" } else { ".U32" },
                if x { ".X" } else { "" }
            );
            let c = mods(&uc(w, &hexs)?, bit(w, 75) && bits(w, 9, 3) != 2, false, if x { '~' } else { '-' });
            let mut ops = vec![ud, ur(bits(w, 24, 8)), ub(w, &hexs)?, c];
            if x {
                ops.push(up(w, 87, 90));
            }
            inst(&name, &ops)
        }
        0x290 | 0x890 => {
            let x = bit(w, 74);
            let ch = if x { '~' } else { '-' };
            let mut ops = vec![ud];
            for at in [81, 84] {
                if bits(w, at, 3) != 7 {
                    ops.push(p(bits(w, at, 3), false, true));
                }
            }
            ops.push(mods(&ur(bits(w, 24, 8)), bit(w, 72), false, ch));
            let b = ub(w, &hexs)?;
            ops.push(if bits(w, 9, 3) == 1 { mods(&b, bit(w, 63), false, ch) } else { b });
            ops.push(mods(&uc(w, &hexs)?, bit(w, 75), false, ch));
            if x {
                ops.push(up(w, 87, 90));
                ops.push(up(w, 77, 80));
            }
            inst(if x { "UIADD3.X" } else { "UIADD3" }, &ops)
        }
        0x287 | 0x887 => inst("USEL", &[ud, ur(bits(w, 24, 8)), ub(w, &hexu)?, up(w, 87, 90)]),
        0x28c | 0x88c => {
            let name = format!(
                "UISETP.{}{}.{}{}",
                CMP_I[bits(w, 76, 3) as usize],
                if bit(w, 73) { "" } else { ".U32" },
                SETOP.get(bits(w, 74, 2) as usize)?,
                if bit(w, 72) { ".EX" } else { "" }
            );
            let mut ops = vec![
                p(bits(w, 81, 3), false, true),
                p(bits(w, 84, 3), false, true),
                ur(bits(w, 24, 8)),
                ub(w, &hexs)?,
                up(w, 87, 90),
            ];
            if bit(w, 72) {
                ops.push(up(w, 68, 71));
            }
            inst(&name, &ops)
        }
        0x299 | 0x899 | 0x499 => {
            let name = format!(
                "USHF.{}{}.{}{}",
                if bit(w, 76) { "R" } else { "L" },
                if bit(w, 75) { ".W" } else { "" },
                ["S64", "U64", "S32", "U32"][bits(w, 73, 2) as usize],
                if bit(w, 80) { ".HI" } else { "" }
            );
            inst(&name, &[ud, ur(bits(w, 24, 8)), ub(w, &hexu)?, uc(w, &hexu)?])
        }
        0x292 | 0x892 | 0x492 => {
            let mut ops = Vec::new();
            if bits(w, 81, 3) != 7 {
                ops.push(p(bits(w, 81, 3), false, true));
            }
            ops.extend([ud, ur(bits(w, 24, 8)), ub(w, &hexu)?, uc(w, &hexu)?, hexu(bits(w, 72, 8)), up(w, 87, 90)]);
            inst(if bit(w, 80) { "ULOP3.LUT.PAND" } else { "ULOP3.LUT" }, &ops)
        }
        0x291 | 0x891 | 0x491 => {
            let (x, hi, sx) = (bit(w, 74), bit(w, 80), bit(w, 73));
            let ch = if x { '~' } else { '-' };
            let name = format!(
                "ULEA{}{}{}",
                if hi { ".HI" } else { "" },
                if x { ".X" } else { "" },
                if sx { ".SX32" } else { "" }
            );
            let mut ops = vec![ud];
            if bits(w, 81, 3) != 7 {
                ops.push(p(bits(w, 81, 3), false, true));
            }
            ops.push(mods(&ur(bits(w, 24, 8)), bit(w, 72), false, ch));
            ops.push(ub(w, &hexu)?);
            if hi && !sx {
                ops.push(uc(w, &hexu)?);
            }
            ops.push(hexu(bits(w, 75, 5)));
            if x {
                ops.push(up(w, 87, 90));
            }
            inst(&name, &ops)
        }
        0x883 => inst(
            &format!("UP2UR{}", ["", ".B1", ".B2", ".B3"][bits(w, 76, 2) as usize]),
            &[ud, "UPR".into(), ur(bits(w, 24, 8)), hexu(bits(w, 32, 32))],
        ),
        0x29a | 0x89a => inst(
            &format!("USGXT{}{}", if bit(w, 75) { ".W" } else { "" }, if bit(w, 73) { "" } else { ".U32" }),
            &[ud, ur(bits(w, 24, 8)), ub(w, &hexu)?],
        ),
        0x919 if !bit(w, 91) => inst("S2R", &[d, special(bits(w, 72, 8))?]),
        0x9c3 => inst("S2UR", &[ud, special(bits(w, 72, 8))?]),
        0x805 => inst(if bit(w, 80) { "CS2R" } else { "CS2R.32" }, &[d, special(bits(w, 72, 8))?]),
        0x3c2 => {
            let mut ops = Vec::new();
            if bits(w, 81, 3) != 7 {
                ops.push(p(bits(w, 81, 3), false, false));
            }
            ops.extend([ud, r(bits(w, 24, 8))]);
            inst("R2UR", &ops)
        }
        0x947 if !bit(w, 91) => {
            let name = format!(
                "BRA{}{}",
                ["", ".U", ".DIV", ".CONV"][bits(w, 32, 2) as usize],
                ["", ".INC", ".DEC", ".INVALID3"][bits(w, 85, 2) as usize]
            );
            let mut ops: Vec<String> = cond(w).into_iter().collect();
            ops.push(target_text(w, at, label)?);
            inst(&name, &ops)
        }
        0x945 if !bit(w, 91) => {
            let mut ops: Vec<String> = cond(w).into_iter().collect();
            ops.push(format!("B{}", bits(w, 16, 4)));
            ops.push(target_text(w, at, label)?);
            inst("BSSY", &ops)
        }
        0x941 | 0x942 => {
            let mut ops: Vec<String> = cond(w).into_iter().collect();
            ops.push(format!("B{}", bits(w, 16, 4)));
            inst(if opc == 0x941 { "BSYNC" } else { "BREAK" }, &ops)
        }
        0x944 if !bit(w, 91) && cond(w).is_none() => {
            inst(if bit(w, 86) { "CALL.REL.NOINC" } else { "CALL.REL" }, &[target_text(w, at, label)?])
        }
        0x950 if !bit(w, 91) && !bit(w, 85) && cond(w).is_none() => format!(
            "{} {} {}",
            if bit(w, 86) { "RET.REL.NODEC" } else { "RET.REL" },
            r(bits(w, 24, 8)),
            target_text(w, at, label)?
        ),
        0x94d if !bit(w, 91) => {
            let name = format!(
                "EXIT{}{}",
                ["", ".KEEPREFCOUNT", ".PREEMPTED", ".INVALID3"][bits(w, 84, 2) as usize],
                if bit(w, 86) { ".NO_ATEXIT" } else { "" }
            );
            inst(&name, &cond(w).into_iter().collect::<Vec<_>>())
        }
        0x948 => {
            let mut ops: Vec<String> = cond(w).into_iter().collect();
            ops.push(hexu(bits(w, 32, 32)));
            inst("WARPSYNC", &ops)
        }
        0x946 => inst("YIELD", &cond(w).into_iter().collect::<Vec<_>>()),
        0x918 => "NOP".into(),
        // Shared memory (the forms without a uniform register): the address register with its
        // scale (`.X4`), and the offset; RZ with an offset prints as the offset alone.
        0x984 | 0x388 if !bit(w, 91) => {
            let size = SIZE[bits(w, 73, 3) as usize];
            let scale = ["", ".X4", ".X8", ".X16"][bits(w, 78, 2) as usize];
            let (base, off) = (bits(w, 24, 8), addr_offset(w));
            let addr = match (base, off.is_empty()) {
                (255, false) => format!("[{}]", off.trim_start_matches('+')),
                _ => format!("[{}{scale}{off}]", r(base)),
            };
            if opc == 0x984 {
                inst(&format!("LDS{size}"), &[d, addr])
            } else {
                inst(&format!("STS{size}"), &[addr, r(bits(w, 32, 8))])
            }
        }
        // BAR.SYNC of a barrier for all threads (no thread count, no other mode).
        0xb1d if bits(w, 42, 12) == 0 && bits(w, 77, 3) == 0 => {
            inst(if bit(w, 80) { "BAR.SYNC.DEFER_BLOCKING" } else { "BAR.SYNC" }, &[hexu(bits(w, 54, 4))])
        }
        0x886 => inst(
            &format!("VOTEU.{}", ["ALL", "ANY", "EQ", "INVALID3"][bits(w, 72, 2) as usize]),
            &[ud, p(bits(w, 81, 3), false, true), p(bits(w, 87, 3), bit(w, 90), false)],
        ),
        // The forms ptxas emits for warp-wide counts: UFLO.U32 of a uniform register, POPC of a
        // register or a uniform register; other fields must be clear.
        0x2bd if bits(w, 64, 41) == 0x080e_0000 => inst("UFLO.U32", &[ud, ur(bits(w, 32, 8))]),
        0x309 if bits(w, 64, 41) == 0 && !bit(w, 63) => inst("POPC", &[d, r(bits(w, 32, 8))]),
        0xd09 if bits(w, 64, 41) == 1 << 27 && !bit(w, 63) => inst("POPC", &[d, ur(bits(w, 32, 8))]),
        _ => return None,
    };
    Some((text, uniform))
}
