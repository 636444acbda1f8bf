//! IEEE arithmetic in the four rounding modes of SASS (`.RN` the default, `.RM`, `.RP`, `.RZ`).
//!
//! Every f32 operation is computed exactly as an f64 pair `s + e` (`s` the f64 nearest the exact
//! value, `e` the exact rest: products of two f32 values are exact in f64, and TwoSum gives the
//! rest of a sum), then rounded once to f32 in the mode. f64 sums and products get their rest
//! the same way (TwoSum, and an fma for the product).

/// A rounding mode, as bits 78-79 of the float ops number them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rnd {
    Rn,
    Rm,
    Rp,
    Rz,
}

impl Rnd {
    pub fn of(bits: u32) -> Rnd {
        [Rnd::Rn, Rnd::Rm, Rnd::Rp, Rnd::Rz][(bits & 3) as usize]
    }
}

/// The sum `a + b` as an f64 and its exact rest (Knuth's TwoSum).
pub fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    if !s.is_finite() {
        return (s, 0.0);
    }
    let bb = s - a;
    let e = (a - (s - bb)) + (b - bb);
    (s, e)
}

fn f32_up(x: f32) -> f32 {
    x.next_up()
}

fn f32_down(x: f32) -> f32 {
    x.next_down()
}

/// The f32 that `s + e` rounds to in mode `m` (`s` the f64 nearest `s + e`, `|e|` at most half
/// an ulp of `s`).
pub fn round_f32(s: f64, e: f64, m: Rnd) -> f32 {
    if s.is_nan() {
        return f32::NAN;
    }
    let mut f = s as f32;
    if s.is_infinite() {
        return f;
    }
    if f.is_infinite() {
        // Past the largest finite value: where each mode rounds an overflow (a value exactly
        // on the tie below infinity rounds down when the rest is below it).
        let max = f32::MAX.copysign(f);
        let tie = (2f64.powi(128) - 2f64.powi(103)).copysign(s);
        let away = match m {
            Rnd::Rn => !(s == tie && e != 0.0 && e.signum() != s.signum()),
            Rnd::Rz => false,
            Rnd::Rp => f > 0.0,
            Rnd::Rm => f < 0.0,
        };
        return if away { f } else { max };
    }
    // The side of `f` the exact value is on: s - f is exact (Sterbenz), and a nonzero
    // difference outweighs the rest.
    let d = s - f64::from(f);
    let side = if d != 0.0 {
        d.signum()
    } else if e != 0.0 {
        e.signum()
    } else {
        0.0
    };
    if side == 0.0 {
        return f;
    }
    match m {
        Rnd::Rn => {
            // A tie between two f32 values broken by the rest (s itself sits on the tie).
            if d != 0.0 && e != 0.0 {
                let other = if d > 0.0 { f32_up(f) } else { f32_down(f) };
                let half = (f64::from(other) - f64::from(f)) / 2.0;
                if d == half && e.signum() == d.signum() {
                    f = other;
                }
            }
            f
        }
        Rnd::Rp if side > 0.0 => f32_up(f),
        Rnd::Rm if side < 0.0 => f32_down(f),
        Rnd::Rz if (f > 0.0 && side < 0.0) || (f < 0.0 && side > 0.0) => {
            if f > 0.0 {
                f32_down(f)
            } else {
                f32_up(f)
            }
        }
        _ => f,
    }
}

/// The f64 that `s + e` rounds to in mode `m` (`s` already the nearest).
pub fn round_f64(s: f64, e: f64, m: Rnd) -> f64 {
    if !s.is_finite() || e == 0.0 {
        return s;
    }
    match m {
        Rnd::Rn => s,
        Rnd::Rp if e > 0.0 => s.next_up(),
        Rnd::Rm if e < 0.0 => s.next_down(),
        Rnd::Rz if (s > 0.0 && e < 0.0) || (s < 0.0 && e > 0.0) => {
            if s > 0.0 {
                s.next_down()
            } else {
                s.next_up()
            }
        }
        _ => s,
    }
}

/// The sign of an exact zero sum of `a` and `b` in mode `m`: -0 when both are -0, or when
/// rounding down and they are not both +0.
fn zero_sum(a: f64, b: f64, m: Rnd) -> f64 {
    let both_neg = a.is_sign_negative() && b.is_sign_negative();
    let both_pos = a.is_sign_positive() && b.is_sign_positive();
    if both_neg || (m == Rnd::Rm && !both_pos) { -0.0 } else { 0.0 }
}

/// Denormals flushed to a zero of the same sign (`.FTZ`).
pub fn ftz32(x: f32) -> f32 {
    if x.is_subnormal() { f32::from_bits(x.to_bits() & 0x8000_0000) } else { x }
}

pub fn add32(a: f32, b: f32, m: Rnd) -> f32 {
    if m == Rnd::Rn { a + b } else { exact_add32(a, b, m) }
}

/// [`add32`] without the host's round-to-nearest shortcut.
fn exact_add32(a: f32, b: f32, m: Rnd) -> f32 {
    let (a, b) = (f64::from(a), f64::from(b));
    let (s, e) = two_sum(a, b);
    if s == 0.0 && e == 0.0 {
        return zero_sum(a, b, m) as f32;
    }
    round_f32(s, e, m)
}

pub fn mul32(a: f32, b: f32, m: Rnd) -> f32 {
    if m == Rnd::Rn {
        return a * b;
    }
    round_f32(f64::from(a) * f64::from(b), 0.0, m)
}

pub fn fma32(a: f32, b: f32, c: f32, m: Rnd) -> f32 {
    if m == Rnd::Rn { a.mul_add(b, c) } else { exact_fma32(a, b, c, m) }
}

/// [`fma32`] without the host's round-to-nearest shortcut.
fn exact_fma32(a: f32, b: f32, c: f32, m: Rnd) -> f32 {
    let p = f64::from(a) * f64::from(b);
    let c = f64::from(c);
    let (s, e) = two_sum(p, c);
    if s == 0.0 && e == 0.0 && !s.is_nan() {
        return zero_sum(p, c, m) as f32;
    }
    round_f32(s, e, m)
}

pub fn add64(a: f64, b: f64, m: Rnd) -> f64 {
    let (s, e) = two_sum(a, b);
    if s == 0.0 && e == 0.0 {
        return zero_sum(a, b, m);
    }
    round_f64(s, e, m)
}

pub fn mul64(a: f64, b: f64, m: Rnd) -> f64 {
    let p = a * b;
    if m == Rnd::Rn || !p.is_finite() || p == 0.0 {
        return p;
    }
    // The product's rest, exact unless it underflows (then the fma's own rounding decides).
    round_f64(p, a.mul_add(b, -p), m)
}

/// `a * b + c` rounded once in mode `m`. The rest of the nearest result is found from the
/// product's exact rest and TwoSum; its sign is exact unless the three parts cancel below an
/// ulp of each other.
pub fn fma64(a: f64, b: f64, c: f64, m: Rnd) -> f64 {
    let s = a.mul_add(b, c);
    if m == Rnd::Rn || !s.is_finite() {
        return s;
    }
    let p = a * b;
    if !p.is_finite() {
        return s;
    }
    let pe = a.mul_add(b, -p);
    let (u, ue) = two_sum(p, c);
    let r = (u - s) + (ue + pe);
    if s == 0.0 && r == 0.0 {
        return if m == Rnd::Rm && !(p.is_sign_positive() && c.is_sign_positive()) { -0.0 } else { s };
    }
    round_f64(s, r, m)
}

/// `x` rounded to an integral value in mode `m` (FRND).
pub fn rint64(x: f64, m: Rnd) -> f64 {
    match m {
        Rnd::Rn => x.round_ties_even(),
        Rnd::Rm => x.floor(),
        Rnd::Rp => x.ceil(),
        Rnd::Rz => x.trunc(),
    }
}

/// An integer's value rounded to f32 or f64 in mode `m`.
pub fn int_to_f32(v: i128, m: Rnd) -> f32 {
    let s = v as f64;
    let e = (v - s as i128) as f64;
    round_f32(s, e, m)
}

pub fn int_to_f64(v: i128, m: Rnd) -> f64 {
    let s = v as f64;
    let e = (v - s as i128) as f64;
    round_f64(s, e, m)
}

/// A float converted to an integer of `bits` bits (signed or not), rounded in mode `m`,
/// saturating at the ends; NaN converts to 0.
pub fn float_to_int(x: f64, m: Rnd, signed: bool, bits: u32) -> u64 {
    if x.is_nan() {
        return 0;
    }
    let r = rint64(x, m);
    let (lo, hi): (i128, i128) =
        if signed { (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1) } else { (0, (1i128 << bits) - 1) };
    let v = if r <= lo as f64 {
        lo
    } else if r >= hi as f64 {
        hi
    } else {
        r as i128
    };
    (v as u64) & if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directed_rounding_brackets_the_exact_value() {
        let (a, b) = (1.0f32, f32::EPSILON / 4.0);
        assert_eq!(add32(a, b, Rnd::Rn), 1.0);
        assert_eq!(add32(a, b, Rnd::Rz), 1.0);
        assert_eq!(add32(a, b, Rnd::Rm), 1.0);
        assert_eq!(add32(a, b, Rnd::Rp), 1.0f32.next_up());
        assert_eq!(add32(-a, -b, Rnd::Rm), (-1.0f32).next_down());
        assert_eq!(add32(-a, -b, Rnd::Rz), -1.0);
        // A tie in f32 that the rest breaks: 1 + 2^-24 + 2^-60 rounds up.
        let t = fma32(1.0 + f32::EPSILON, 1.0 + f32::EPSILON, -1.0 - f32::EPSILON, Rnd::Rn);
        assert_eq!(f64::from(t), f64::from(f32::EPSILON) * (1.0 + f64::from(f32::EPSILON)) as f32 as f64);
        assert_eq!(add32(1.0, -1.0, Rnd::Rm).to_bits(), (-0.0f32).to_bits());
        assert_eq!(add32(1.0, -1.0, Rnd::Rn).to_bits(), 0);
        assert_eq!(add32(f32::MAX, f32::MAX, Rnd::Rz), f32::MAX);
        assert_eq!(add32(f32::MAX, f32::MAX, Rnd::Rn), f32::INFINITY);
        assert_eq!(int_to_f32(u64::MAX as i128, Rnd::Rp), 18446744073709551616.0);
        assert_eq!(int_to_f32((1 << 24) + 1, Rnd::Rz), 16777216.0);
        assert_eq!(float_to_int(-1.5, Rnd::Rz, true, 64) as i64, -1);
        assert_eq!(float_to_int(1e30, Rnd::Rz, true, 32), 0x7fff_ffff);
        assert_eq!(float_to_int(-3.0, Rnd::Rz, false, 32), 0);
        assert_eq!(float_to_int(f64::NAN, Rnd::Rz, true, 32), 0);
    }

    proptest::proptest! {
        /// The exact method's round-to-nearest agrees with the host's own f32 arithmetic, and
        /// the directed modes bracket it.
        #[test]
        fn rounding_matches_the_host(a in proptest::num::f32::ANY, b in proptest::num::f32::ANY, c in proptest::num::f32::ANY) {
            let n = exact_fma32(a, b, c, Rnd::Rn);
            let host = a.mul_add(b, c);
            proptest::prop_assert!(n.to_bits() == host.to_bits() || (n.is_nan() && host.is_nan()));
            let s = exact_add32(a, b, Rnd::Rn);
            proptest::prop_assert!(s.to_bits() == (a + b).to_bits() || (s.is_nan() && (a + b).is_nan()));
            if n.is_finite() {
                let (dn, up) = (fma32(a, b, c, Rnd::Rm), fma32(a, b, c, Rnd::Rp));
                proptest::prop_assert!(dn <= n && n <= up);
                proptest::prop_assert!(dn == up || dn.next_up() == up);
            }
        }
    }
}
