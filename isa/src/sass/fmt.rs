//! nvdisasm's spelling of operands: registers, predicates, immediates (signed or unsigned hex,
//! and floats as C's `%.20g`), constant banks, negation, absolute value and `.reuse`.

use super::{bit, bits};

pub fn r(n: u32) -> String {
    if n == 255 { "RZ".into() } else { format!("R{n}") }
}

pub fn ur(n: u32) -> String {
    if n == 63 { "URZ".into() } else { format!("UR{n}") }
}

/// A predicate (7 is PT), `!` when negated, `U` for a uniform one.
pub fn p(n: u32, neg: bool, uniform: bool) -> String {
    let name = if n == 7 { "PT".to_string() } else { format!("P{n}") };
    format!("{}{}{name}", if neg { "!" } else { "" }, if uniform { "U" } else { "" })
}

/// The guard predicate of bits 12-15 (a uniform one for the uniform datapath's
/// instructions), with its trailing space, or nothing for PT.
pub fn guard(w: u128, uniform: bool) -> String {
    let (g, neg) = (bits(w, 12, 3), bit(w, 15));
    if g == 7 && !neg { String::new() } else { format!("@{} ", p(g, neg, uniform)) }
}

pub fn hexs(v: u32) -> String {
    if v & 0x8000_0000 != 0 { format!("-0x{:x}", v.wrapping_neg()) } else { format!("0x{v:x}") }
}

pub fn hexu(v: u32) -> String {
    format!("0x{v:x}")
}

/// C's `%.{prec}e`: Rust's exponent spelled with a sign and at least two digits.
fn exp(x: f64, prec: usize) -> String {
    let s = format!("{x:.prec$e}");
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = e.strip_prefix('-').map_or(("+", e), |d| ("-", d));
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// C's `%.20g`.
fn g20(x: f64) -> String {
    let e = if x == 0.0 { 0 } else { x.abs().log10().floor() as i32 };
    // The exponent of the value as %e would round it.
    let e = exp(x, 19).split_once('e').and_then(|(_, e)| e.parse::<i32>().ok()).unwrap_or(e);
    let strip = |s: String| -> String {
        if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
    };
    if !(-4..20).contains(&e) {
        let s = exp(x, 19);
        let (m, ex) = s.split_once('e').unwrap_or((&s, ""));
        format!("{}e{ex}", strip(m.to_string()))
    } else {
        let prec = (19 - e).max(0) as usize;
        strip(format!("{x:.prec$}"))
    }
}

/// nvdisasm's float: `%.20g` below 1e9, `%.20e` from there; infinities, NaNs and -0.0 with a
/// trailing space.
fn float(x: f64, negative: bool, nan: impl Fn() -> bool) -> String {
    if x.is_infinite() {
        return format!("{}INF ", if x < 0.0 { "-" } else { "+" });
    }
    if x.is_nan() {
        return format!("{}{}", if negative { "-" } else { "+" }, if nan() { "QNAN " } else { "SNAN " });
    }
    if x == 0.0 {
        return if negative { "-0.0 ".into() } else { "0".into() };
    }
    if x.abs() >= 1e9 { exp(x, 20) } else { g20(x) }
}

pub fn f32imm(v: u32) -> String {
    float(f64::from(f32::from_bits(v)), v >> 31 == 1, || v & 0x40_0000 != 0)
}

/// A double immediate: the high 32 bits of the double.
pub fn f64imm(v: u32) -> String {
    let d = u64::from(v) << 32;
    float(f64::from_bits(d), v >> 31 == 1, || d & (1 << 51) != 0)
}

pub fn f16imm(v: u32) -> String {
    let h = v & 0xffff;
    let (sign, e, m) = (h >> 15, (h >> 10) & 0x1f, h & 0x3ff);
    let mag = match e {
        0 => f64::from(m) * 2f64.powi(-24),
        31 => {
            if m == 0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        _ => (1.0 + f64::from(m) / 1024.0) * 2f64.powi(e as i32 - 15),
    };
    let x = if sign == 1 { -mag } else { mag };
    float(x, sign == 1, || m & 0x200 != 0)
}

/// The constant-bank operand of bits 32-58: `c[BANK][OFFSET]` (the offset a signed 16-bit
/// byte offset), `cx[URn][OFFSET]` when bit 91 makes it bindless; with a space between the
/// brackets where nvdisasm puts one (sub-word operands).
pub fn cbank(w: u128, spaced: bool) -> String {
    let off = bits(w, 40, 14) << 2;
    let offs = if off & 0x8000 != 0 { format!("-0x{:x}", 0x10000 - off) } else { format!("0x{off:x}") };
    if bit(w, 91) {
        return format!("cx[{}][{offs}]", ur(bits(w, 32, 6)));
    }
    format!("c[0x{:x}]{}[{offs}]", bits(w, 54, 5), if spaced { " " } else { "" })
}

/// `s` with absolute value bars and a negation sign (`-`, or `~` for the `.X` forms).
pub fn mods(s: &str, neg: bool, abs: bool, neg_ch: char) -> String {
    let s = if abs { format!("|{s}|") } else { s.to_string() };
    if neg { format!("{neg_ch}{s}") } else { s }
}

pub fn reuse(s: String, w: u128, at: u32) -> String {
    if bit(w, at) { s + ".reuse" } else { s }
}

/// The instruction text: the name, then the operands separated by commas.
pub fn inst(name: &str, ops: &[String]) -> String {
    if ops.is_empty() { name.to_string() } else { format!("{name} {}", ops.join(", ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_c_does() {
        assert_eq!(f32imm(1.0f32.to_bits()), "1");
        assert_eq!(f32imm(0.5f32.to_bits()), "0.5");
        assert_eq!(f32imm((-2.5f32).to_bits()), "-2.5");
        assert_eq!(f32imm(0.1f32.to_bits()), "0.10000000149011611938");
        assert_eq!(f32imm(1e-5f32.to_bits()), "9.9999997473787516356e-06");
        assert_eq!(f32imm(1e10f32.to_bits()), "1.00000000000000000000e+10");
        assert_eq!(f32imm(f32::INFINITY.to_bits()), "+INF ");
        assert_eq!(f32imm(0x8000_0000), "-0.0 ");
        assert_eq!(f32imm(0x7fc0_0000), "+QNAN ");
        assert_eq!(f16imm(0x3c00), "1");
        assert_eq!(hexs(0xffff_fff0), "-0x10");
    }
}
