//! Legalization: the kernel IR rewritten into operations every code generator maps one to one,
//! driven by what the target lacks ([`Caps`]). The numeric contract (docs/numerics.md) is then
//! written once, here, instead of in each emitter.
//!
//! Rules (each applies where the target's [`Caps`] field is false):
//! - `floor_div`: integer division and remainder floor, and a zero divisor gives 0 (and the
//!   dtype's minimum divided by -1 wraps): `Div`/`Rem` on integers become the machine's
//!   truncating division ([`BinaryOp::DivTrunc`], [`BinaryOp::RemTrunc`]) on a divisor made safe
//!   (never 0, never -1 for signed dtypes), corrected to the floor with compares and selects.
//! - `narrow_float`: f16 and bf16 results are rounded as the interpreter rounds them. Add, sub,
//!   mul, div and sqrt are computed in f32 and rounded by a cast (the correctly rounded result:
//!   f32's 24 bits are at least twice their precision plus two, so the double rounding is
//!   innocuous); fma is computed in f64 and rounded by a cast, as the interpreter defines it.
//! - `float_rem`: the float remainder has the divisor's sign, `a - b * floor(a / b)` in f64, and
//!   a zero divisor gives NaN; then a cast rounds to the dtype.
//! - `int_pow`: an integer power is square-and-multiply in a loop of at most `bits` trips,
//!   wrapping in the dtype; a negative exponent gives 1 for base 1, +-1 for base -1 (by the
//!   exponent's parity) and 0 otherwise.
//! - `nan_minmax`: float min and max propagate NaN and order -0 below +0: compares and selects,
//!   with the zeros and NaNs (where the compare cannot decide) resolved by an addition, since
//!   `+0 + -0 = +0` and `NaN + x = NaN` (min negates around it). A float max or min accumulator
//!   becomes a register (its own number) that starts at -inf (+inf) and is updated with that
//!   operation, as the interpreter's accumulator computes it.
//!
//! What stays with the emitters, because the kernel IR has no other way to say it: the rounding
//! inside `Mma`, and conversions (`Cast`), which are the primitives the rules above are written
//! in. No target lacks a 64-bit operation today (PTX, LLVM and Cranelift all have
//! them), so there is no rule for that yet.
//!
//! `tk emit --stage kernel` prints the kernel IR before legalization, `--stage legal` after. The
//! reference interpreter runs both forms alike, and the legalized form computes the same values
//! bit for bit (tested below and by every device's differential suite).

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::{BinaryOp, Op, ReduceOp, Scalar, UnaryOp};
use crate::kernel::{Inst, Kernel};
use std::collections::HashMap;

/// What a target can do natively, so the pass leaves it alone. The default lacks everything.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// Integer division that floors and gives 0 for a zero divisor (no target has it).
    pub floor_div: bool,
    /// f16 and bf16 arithmetic that rounds each result to the narrow dtype (no target has it:
    /// they hold these values in wider registers).
    pub narrow_float: bool,
    /// The language's float remainder (no target has it).
    pub float_rem: bool,
    /// An integer power instruction (no target has it).
    pub int_pow: bool,
    /// Float min and max that propagate NaN and order -0 below +0 (Cranelift's `fmin`/`fmax`,
    /// LLVM's `llvm.minimum`/`llvm.maximum`; PTX's `min`/`max` return the other operand for a
    /// NaN).
    pub nan_minmax: bool,
}

/// The legalized form of a kernel for a target with `caps`.
pub fn legalize(k: &Kernel, caps: Caps) -> Kernel {
    let mut known = Vec::new();
    crate::kernel::reg_dtypes(&k.body, &mut known);
    let dtypes = known.iter().enumerate().filter_map(|(r, d)| Some((r, (*d)?))).collect();
    let mut out = k.clone();
    let mut regs = k.regs;
    let mut cx = Cx { caps, regs: &mut regs, dtypes, accs: HashMap::new() };
    out.body = cx.body(&k.body);
    out.regs = regs;
    out
}

fn is_int(d: DType) -> bool {
    !d.is_float() && d != DType::Bool
}

fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::Bf16)
}

struct Cx<'a> {
    caps: Caps,
    regs: &'a mut usize,
    dtypes: HashMap<usize, DType>,
    /// Float max and min accumulators rewritten into registers (`nan_minmax`): whether max, and
    /// the running value's dtype (f32 for f16 and bf16 sources).
    accs: HashMap<usize, (bool, DType)>,
}

impl Cx<'_> {
    fn body(&mut self, insts: &[Inst]) -> Vec<Inst> {
        let mut out = Vec::with_capacity(insts.len());
        for i in insts {
            self.inst(i.clone(), &mut out);
        }
        out
    }

    /// Appends `i` to `out`, legalized; what a rule writes is legalized in turn (each rule's
    /// output only uses operations the rule itself does not match, so this ends).
    fn inst(&mut self, i: Inst, out: &mut Vec<Inst>) {
        match i {
            Inst::Range { var, extent, kind, body } => {
                let body = self.body(&body);
                out.push(Inst::Range { var, extent, kind, body })
            }
            Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                let body = self.body(&body);
                out.push(Inst::Loop { lo, trip, iter, carried, body, next, exit })
            }
            Inst::Alu { dst, op, args, dtype } => {
                let ts: Vec<DType> = args.iter().map(|a| self.dtype(*a, dtype)).collect();
                let mut e = Emit { cx: self, out: Vec::new() };
                if e.alu_rule(dst, &op, &args, &ts, dtype) {
                    let written = std::mem::take(&mut e.out);
                    for w in written {
                        self.inst(w, out);
                    }
                } else {
                    out.push(Inst::Alu { dst, op, args, dtype });
                }
            }
            Inst::AccNew { acc, op: op @ (ReduceOp::Max | ReduceOp::Min), src, dtype }
                if !self.caps.nan_minmax && src.is_float() =>
            {
                // The running value lives in register `acc` (accumulators and registers share
                // the numbering), starting at the identity; an empty max is -inf.
                let vd = if is_half(src) { DType::F32 } else { src };
                let max = op == ReduceOp::Max;
                self.accs.insert(acc, (max, vd));
                self.dtypes.insert(acc, vd);
                let _ = dtype;
                let init = if max { f64::NEG_INFINITY } else { f64::INFINITY };
                out.push(Inst::Const { dst: acc, value: Scalar::Float(init), dtype: vd });
            }
            Inst::AccPush { acc, value, pred, .. } if self.accs.contains_key(&acc) => {
                let (max, vd) = self.accs[&acc];
                let tv = self.dtype(value, vd);
                let mut e = Emit { cx: self, out: Vec::new() };
                let x = e.to(value, tv, vd);
                let m = e.bin(if max { BinaryOp::Max } else { BinaryOp::Min }, acc, x, vd);
                let v = match pred {
                    Some(p) => e.select(p, m, acc, vd),
                    None => m,
                };
                e.out.push(Inst::Copy { dst: acc, src: v });
                let written = std::mem::take(&mut e.out);
                for w in written {
                    self.inst(w, out);
                }
            }
            Inst::AccGet { dst, acc } if self.accs.contains_key(&acc) => {
                let (_, vd) = self.accs[&acc];
                let t = self.dtype(dst, vd);
                if t == vd {
                    out.push(Inst::Copy { dst, src: acc });
                } else {
                    out.push(Inst::Alu { dst, op: Op::Cast, args: vec![acc], dtype: t });
                }
            }
            other => out.push(other),
        }
    }

    fn dtype(&self, r: usize, or: DType) -> DType {
        self.dtypes.get(&r).copied().unwrap_or(or)
    }
}

/// Writes instructions for one rule.
struct Emit<'c, 'a> {
    cx: &'c mut Cx<'a>,
    out: Vec<Inst>,
}

impl Emit<'_, '_> {
    /// Writes the legal form of `dst = op(args)` and says so, or returns false when the
    /// operation is legal as it is.
    fn alu_rule(&mut self, dst: usize, op: &Op, args: &[usize], ts: &[DType], d: DType) -> bool {
        let caps = self.cx.caps;
        match op {
            Op::Binary(op @ (BinaryOp::Div | BinaryOp::Rem)) if !caps.floor_div && is_int(d) => {
                let (a, b) = (self.to(args[0], ts[0], d), self.to(args[1], ts[1], d));
                self.floor_divrem(dst, *op == BinaryOp::Div, a, b, d);
            }
            Op::Binary(BinaryOp::Rem) if !caps.float_rem && d.is_float() => {
                let (a, b) = (self.to(args[0], ts[0], DType::F64), self.to(args[1], ts[1], DType::F64));
                self.float_rem(dst, a, b, d);
            }
            Op::Binary(BinaryOp::Pow) if !caps.int_pow && is_int(d) => {
                let a = self.to(args[0], ts[0], d);
                // The exponent keeps its own value (and dtype), as the interpreter reads it.
                let (e, te) = if is_int(ts[1]) { (args[1], ts[1]) } else { (self.to(args[1], ts[1], d), d) };
                self.int_pow(dst, a, e, d, te);
            }
            Op::Binary(op @ (BinaryOp::Min | BinaryOp::Max)) if !caps.nan_minmax && d.is_float() => {
                let (a, b) = (self.to(args[0], ts[0], d), self.to(args[1], ts[1], d));
                self.fminmax(dst, *op == BinaryOp::Max, a, b, d);
            }
            Op::Binary(op @ (BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div))
                if !caps.narrow_float && (is_half(d) || (d.is_float() && ts.iter().any(|t| is_half(*t)))) =>
            {
                let (a, b) = (self.to(args[0], ts[0], DType::F32), self.to(args[1], ts[1], DType::F32));
                let v = self.bin(*op, a, b, DType::F32);
                self.alu_to(dst, Op::Cast, vec![v], d);
            }
            Op::Unary(UnaryOp::Sqrt) if !caps.narrow_float && (is_half(d) || (d.is_float() && is_half(ts[0]))) => {
                let a = self.to(args[0], ts[0], DType::F32);
                let v = self.alu(Op::Unary(UnaryOp::Sqrt), vec![a], DType::F32);
                self.alu_to(dst, Op::Cast, vec![v], d);
            }
            Op::Fma if !caps.narrow_float && is_half(d) => {
                let w: Vec<usize> = (0..3).map(|i| self.to(args[i], ts[i], DType::F64)).collect();
                let v = self.alu(Op::Fma, w, DType::F64);
                self.alu_to(dst, Op::Cast, vec![v], d);
            }
            _ => return false,
        }
        true
    }

    fn reg(&mut self) -> usize {
        let r = *self.cx.regs;
        *self.cx.regs += 1;
        r
    }
    fn konst(&mut self, value: Scalar, dtype: DType) -> usize {
        let dst = self.reg();
        self.out.push(Inst::Const { dst, value, dtype });
        self.cx.dtypes.insert(dst, dtype);
        dst
    }
    fn int(&mut self, v: i128, dtype: DType) -> usize {
        self.konst(Scalar::Int(v), dtype)
    }
    fn alu_to(&mut self, dst: usize, op: Op, args: Vec<usize>, dtype: DType) -> usize {
        self.out.push(Inst::Alu { dst, op, args, dtype });
        self.cx.dtypes.insert(dst, dtype);
        dst
    }
    fn alu(&mut self, op: Op, args: Vec<usize>, dtype: DType) -> usize {
        let dst = self.reg();
        self.alu_to(dst, op, args, dtype)
    }
    fn bin(&mut self, op: BinaryOp, a: usize, b: usize, dtype: DType) -> usize {
        self.alu(Op::Binary(op), vec![a, b], dtype)
    }
    fn select(&mut self, c: usize, a: usize, b: usize, dtype: DType) -> usize {
        self.alu(Op::Where, vec![c, a, b], dtype)
    }
    fn copy(&mut self, src: usize, dtype: DType) -> usize {
        let dst = self.reg();
        self.out.push(Inst::Copy { dst, src });
        self.cx.dtypes.insert(dst, dtype);
        dst
    }
    /// Register `r` (of dtype `from`) as dtype `to`.
    fn to(&mut self, r: usize, from: DType, to: DType) -> usize {
        if from == to { r } else { self.alu(Op::Cast, vec![r], to) }
    }

    /// `dst = a / b` (or `a % b`) with the language's rules: the quotient floors, the remainder
    /// has the divisor's sign, a zero divisor gives 0, and `MIN / -1` wraps to `MIN` (`MIN % -1`
    /// is 0). The machine's truncating division only ever sees a divisor that is neither 0 nor -1.
    fn floor_divrem(&mut self, dst: usize, div: bool, a: usize, b: usize, t: DType) {
        let zero = self.int(0, t);
        let one = self.int(1, t);
        let b0 = self.bin(BinaryOp::Eq, b, zero, DType::Bool);
        if !t.is_signed_int() {
            let safe = self.select(b0, one, b, t);
            let v = self.bin(if div { BinaryOp::DivTrunc } else { BinaryOp::RemTrunc }, a, safe, t);
            self.alu_to(dst, Op::Where, vec![b0, zero, v], t);
            return;
        }
        let minus_one = self.int(-1, t);
        let m1 = self.bin(BinaryOp::Eq, b, minus_one, DType::Bool);
        let bad = self.bin(BinaryOp::Or, b0, m1, DType::Bool);
        let safe = self.select(bad, one, b, t);
        let q = self.bin(BinaryOp::DivTrunc, a, safe, t);
        let r = self.bin(BinaryOp::RemTrunc, a, safe, t);
        // Floor: where r != 0 and r, b differ in sign, q -= 1 and r += b.
        let rnz = self.bin(BinaryOp::Ne, r, zero, DType::Bool);
        let x = self.bin(BinaryOp::Xor, r, b, t);
        let diff = self.bin(BinaryOp::Lt, x, zero, DType::Bool);
        let fix = self.bin(BinaryOp::And, rnz, diff, DType::Bool);
        let v = if div {
            let q1 = self.bin(BinaryOp::Sub, q, one, t);
            let q2 = self.select(fix, q1, q, t);
            // a / -1 = -a, wrapping.
            let neg = self.bin(BinaryOp::Sub, zero, a, t);
            self.select(m1, neg, q2, t)
        } else {
            let r1 = self.bin(BinaryOp::Add, r, b, t);
            let r2 = self.select(fix, r1, r, t);
            self.select(m1, zero, r2, t)
        };
        self.alu_to(dst, Op::Where, vec![b0, zero, v], t);
    }

    /// `dst = a - b * floor(a / b)` from f64 operands, NaN for a zero divisor, rounded to `t`.
    fn float_rem(&mut self, dst: usize, x: usize, y: usize, t: DType) {
        let f = DType::F64;
        let q = self.bin(BinaryOp::Div, x, y, f);
        let q = self.alu(Op::Unary(UnaryOp::Floor), vec![q], f);
        let p = self.bin(BinaryOp::Mul, y, q, f);
        let r = self.bin(BinaryOp::Sub, x, p, f);
        let zero = self.konst(Scalar::Float(0.0), f);
        let z = self.bin(BinaryOp::Eq, y, zero, DType::Bool);
        let nan = self.konst(Scalar::Float(f64::NAN), f);
        if t == f {
            self.alu_to(dst, Op::Where, vec![z, nan, r], f);
        } else {
            let v = self.select(z, nan, r, f);
            self.alu_to(dst, Op::Cast, vec![v], t);
        }
    }

    /// `dst = a ** e` in dtype `t`, wrapping, for an exponent of integer dtype `te`:
    /// square-and-multiply over the exponent's bits in a loop that stops when no bit is left, and
    /// the language's rule for negative exponents.
    fn int_pow(&mut self, dst: usize, a: usize, e: usize, t: DType, te: DType) {
        let zero = self.int(0, t);
        let one = self.int(1, t);
        let (ezero, eone) = if te == t { (zero, one) } else { (self.int(0, te), self.int(1, te)) };
        let neg = if te.is_signed_int() { Some(self.bin(BinaryOp::Lt, e, ezero, DType::Bool)) } else { None };
        let e0 = match neg {
            Some(n) => self.select(n, ezero, e, te),
            None => e,
        };
        // Carried: result, base, the exponent's remaining bits.
        let (r, b, ev) = (self.copy(one, t), self.copy(a, t), self.copy(e0, te));
        let iter = self.reg();
        self.cx.dtypes.insert(iter, DType::I64);
        let outer = std::mem::take(&mut self.out);
        let done = self.bin(BinaryOp::Eq, ev, ezero, DType::Bool);
        let bit = self.bin(BinaryOp::And, ev, eone, te);
        let odd = self.bin(BinaryOp::Ne, bit, ezero, DType::Bool);
        let m = self.bin(BinaryOp::Mul, r, b, t);
        let r2 = self.select(odd, m, r, t);
        let b2 = self.bin(BinaryOp::Mul, b, b, t);
        let e2 = self.bin(BinaryOp::Shr, ev, eone, te);
        let body = std::mem::replace(&mut self.out, outer);
        self.out.push(Inst::Loop {
            lo: Dim::constant(0),
            trip: Dim::constant(i64::from(te.bits())),
            iter,
            carried: vec![r, b, ev],
            body,
            next: vec![r2, b2, e2],
            exit: Some(done),
        });
        let Some(neg) = neg else {
            self.out.push(Inst::Copy { dst, src: r });
            self.cx.dtypes.insert(dst, t);
            return;
        };
        // A negative exponent: 1 for base 1, +-1 for base -1 by the exponent's parity, else 0.
        let minus_one = self.int(-1, t);
        let is1 = self.bin(BinaryOp::Eq, a, one, DType::Bool);
        let ism1 = self.bin(BinaryOp::Eq, a, minus_one, DType::Bool);
        let low = self.bin(BinaryOp::And, e, eone, te);
        let even = self.bin(BinaryOp::Eq, low, ezero, DType::Bool);
        let sign = self.select(even, one, minus_one, t);
        let v = self.select(ism1, sign, zero, t);
        let v = self.select(is1, one, v, t);
        self.alu_to(dst, Op::Where, vec![neg, v, r], t);
    }

    /// `dst = max(a, b)` (or min) under the contract: NaN if either is NaN, -0 < +0. Where the
    /// operands are unordered or both zeros, `a + b` is the answer for max (`+0 + -0 = +0`,
    /// NaN stays NaN) and `-(-a + -b)` for min; elsewhere a compare and a select.
    fn fminmax(&mut self, dst: usize, max: bool, a: usize, b: usize, t: DType) {
        let ua = self.bin(BinaryOp::Ne, a, a, DType::Bool);
        let ub = self.bin(BinaryOp::Ne, b, b, DType::Bool);
        let uno = self.bin(BinaryOp::Or, ua, ub, DType::Bool);
        let zero = self.konst(Scalar::Float(0.0), t);
        let za = self.bin(BinaryOp::Eq, a, zero, DType::Bool);
        let zb = self.bin(BinaryOp::Eq, b, zero, DType::Bool);
        let zz = self.bin(BinaryOp::And, za, zb, DType::Bool);
        let special = self.bin(BinaryOp::Or, uno, zz, DType::Bool);
        let s = if max {
            self.bin(BinaryOp::Add, a, b, t)
        } else {
            let na = self.alu(Op::Unary(UnaryOp::Neg), vec![a], t);
            let nb = self.alu(Op::Unary(UnaryOp::Neg), vec![b], t);
            let n = self.bin(BinaryOp::Add, na, nb, t);
            self.alu(Op::Unary(UnaryOp::Neg), vec![n], t)
        };
        let pick = self.bin(if max { BinaryOp::Gt } else { BinaryOp::Lt }, a, b, DType::Bool);
        let c = self.select(pick, a, b, t);
        self.alu_to(dst, Op::Where, vec![special, s, c], t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::interp::{scalar_op, scalar_to};

    /// A kernel of one ALU instruction `r2 = op(r0, r1)` (or `r3 = op(r0, r1, r2)`).
    fn one(op: Op, arity: usize, t: DType) -> Kernel {
        Kernel {
            name: "k".into(),
            bufs: vec![],
            body: vec![Inst::Alu { dst: arity, op, args: (0..arity).collect(), dtype: t }],
            regs: arity + 1,
            knobs: Default::default(),
            loc: Default::default(),
        }
    }

    /// Runs straight-line constants, ALU operations, copies and loops on scalar registers.
    fn run(body: &[Inst], r: &mut Vec<(Scalar, DType)>) {
        for i in body {
            match i {
                Inst::Const { dst, value, dtype } => r[*dst] = (scalar_to(*value, *dtype), *dtype),
                Inst::Alu { dst, op, args, dtype } => {
                    let a: Vec<(Scalar, DType)> = args.iter().map(|x| r[*x]).collect();
                    r[*dst] = (scalar_op(op, &a, *dtype), *dtype);
                }
                Inst::Copy { dst, src } => r[*dst] = r[*src],
                Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                    let (lo, trip) = (lo.as_const().expect("constant"), trip.as_const().expect("constant"));
                    for k in 0..trip {
                        r[*iter] = (Scalar::Int(i128::from(lo + k)), DType::I64);
                        run(body, r);
                        if exit.is_some_and(|e| r[e].0 == Scalar::Bool(true)) {
                            break;
                        }
                        let vals: Vec<(Scalar, DType)> = next.iter().map(|x| r[*x]).collect();
                        for (c, v) in carried.iter().zip(vals) {
                            r[*c] = (scalar_to(v.0, r[*c].1), r[*c].1);
                        }
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// The value of `op(args)` through the legalized form, next to the reference operation.
    fn both(op: &Op, args: &[Scalar], t: DType) -> (Scalar, Scalar) {
        let k = one(op.clone(), args.len(), t);
        let l = legalize(&k, Caps::default());
        assert!(l.body.len() > 1, "{op:?} on {t} is legalized");
        let typed: Vec<(Scalar, DType)> = args.iter().map(|a| (scalar_to(*a, t), t)).collect();
        let want = scalar_op(op, &typed, t);
        let mut r = vec![(Scalar::Int(0), DType::I64); l.regs];
        r[..typed.len()].copy_from_slice(&typed);
        run(&l.body, &mut r);
        (want, r[args.len()].0)
    }

    /// Equal as the differential tests compare: bit for bit, except that any NaN equals any NaN.
    fn same(a: Scalar, b: Scalar) -> bool {
        match (a, b) {
            (Scalar::Float(x), Scalar::Float(y)) => (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    fn int_values(t: DType) -> Vec<i128> {
        let (lo, hi) = t.int_range().expect("an integer dtype");
        if t.bits() == 8 {
            return (lo..=hi).collect();
        }
        let mut v = vec![lo, lo + 1, hi, hi - 1, -1, 0, 1, 2, 3, 5, 7, -7, 31, 32, 63, 64, 100, -100, -3];
        v.retain(|x| (lo..=hi).contains(x));
        v
    }

    /// Awkward floats: zeros of both signs, infinities, NaN, subnormals of every width, halfway
    /// cases, and values that overflow the narrow dtypes.
    fn float_values() -> Vec<f64> {
        let mut v = vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1.0,
            -1.0,
            1.5,
            -2.25,
            0.1,
            1.0 / 3.0,
            -7.0,
            3.0,
            65504.0,
            65520.0,
            1e-7,
            6e-8,
            1e-40,
            3.0e38,
            -1e300,
            1.0 + 2f64.powi(-11),
            1.0 + 2f64.powi(-8),
            1.0 + 3.0 * 2f64.powi(-12),
            2f64.powi(-24),
            2f64.powi(-133),
        ];
        let mut x = 0.7_f64;
        for _ in 0..24 {
            x = (x * 9.13 + 0.37).fract();
            v.push((x - 0.5) * 2f64.powi((x * 40.0) as i32 - 20));
        }
        v
    }

    #[test]
    fn legalized_integer_division_and_power_match_the_reference_operations() {
        for t in [DType::I8, DType::U8, DType::I16, DType::I32, DType::I64, DType::U32] {
            let vals = int_values(t);
            for op in [BinaryOp::Div, BinaryOp::Rem, BinaryOp::Pow] {
                for &a in &vals {
                    for &b in &vals {
                        let (want, got) = both(&Op::Binary(op), &[Scalar::Int(a), Scalar::Int(b)], t);
                        assert!(same(want, got), "{t}: {a} {op:?} {b}: {want:?}, legalized {got:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn legalized_float_rules_match_the_reference_operations() {
        let vals = float_values();
        for t in [DType::F16, DType::Bf16, DType::F32, DType::F64] {
            let mut ops = vec![Op::Binary(BinaryOp::Rem), Op::Binary(BinaryOp::Min), Op::Binary(BinaryOp::Max)];
            if is_half(t) {
                ops.extend([BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div].map(Op::Binary));
            }
            for op in &ops {
                for &a in &vals {
                    for &b in &vals {
                        let (want, got) = both(op, &[Scalar::Float(a), Scalar::Float(b)], t);
                        assert!(same(want, got), "{t}: {a:e} {op:?} {b:e}: {want:?}, legalized {got:?}");
                    }
                }
            }
            if is_half(t) {
                for &a in &vals {
                    let (want, got) = both(&Op::Unary(UnaryOp::Sqrt), &[Scalar::Float(a)], t);
                    assert!(same(want, got), "{t}: sqrt {a:e}: {want:?}, legalized {got:?}");
                    for (&b, &c) in vals.iter().zip(vals.iter().rev()) {
                        let (want, got) = both(&Op::Fma, &[a, b, c].map(Scalar::Float), t);
                        assert!(same(want, got), "{t}: fma {a:e} {b:e} {c:e}: {want:?}, legalized {got:?}");
                    }
                }
            }
        }
    }

    /// An exponent of another integer dtype keeps its value (the interpreter does not wrap it to
    /// the base's dtype).
    #[test]
    fn an_exponent_of_another_dtype_keeps_its_value() {
        for (t, te) in [(DType::I8, DType::I64), (DType::U8, DType::I32), (DType::I32, DType::U8)] {
            let (Some((alo, ahi)), Some((elo, ehi))) = (t.int_range(), te.int_range()) else { continue };
            for a in [-3i128, -1, 0, 1, 2, 3, 7].into_iter().filter(|a| (alo..=ahi).contains(a)) {
                for e in [-300i128, -3, -2, 0, 1, 2, 5, 9, 255, 300].into_iter().filter(|e| (elo..=ehi).contains(e)) {
                    // The operands are constants, so the pass knows their dtypes, as in a kernel.
                    let k = Kernel {
                        name: "k".into(),
                        bufs: vec![],
                        body: vec![
                            Inst::Const { dst: 0, value: Scalar::Int(a), dtype: t },
                            Inst::Const { dst: 1, value: Scalar::Int(e), dtype: te },
                            Inst::Alu { dst: 2, op: Op::Binary(BinaryOp::Pow), args: vec![0, 1], dtype: t },
                        ],
                        regs: 3,
                        knobs: Default::default(),
                        loc: Default::default(),
                    };
                    let l = legalize(&k, Caps::default());
                    assert!(l.body.len() > 3);
                    let want = scalar_op(&Op::Binary(BinaryOp::Pow), &[(Scalar::Int(a), t), (Scalar::Int(e), te)], t);
                    let mut r = vec![(Scalar::Int(0), DType::I64); l.regs];
                    run(&l.body, &mut r);
                    assert!(same(want, r[2].0), "{t} {a} ** {te} {e}: {want:?}, legalized {:?}", r[2].0);
                }
            }
        }
    }

    /// Float max and min accumulators become a register updated with the legalized operation,
    /// starting at the identity, and give what the interpreter's accumulator gives (an empty
    /// reduction included), with predicated pushes.
    #[test]
    fn float_max_and_min_accumulators_match_the_reference_accumulator() {
        use crate::graph::interp::Acc;
        let vals = float_values();
        for t in [DType::F16, DType::Bf16, DType::F32, DType::F64] {
            for op in [ReduceOp::Max, ReduceOp::Min] {
                for n in [0usize, 1, 2, 7, vals.len()] {
                    // r0 = value, r1 = pred; acc 2; result r3.
                    let mut body = vec![Inst::AccNew { acc: 2, op, src: t, dtype: t }];
                    let mut reference = Acc::new(op, t, t);
                    for (i, v) in vals.iter().take(n).enumerate() {
                        let v = scalar_to(Scalar::Float(*v), t);
                        let on = i % 3 != 1;
                        body.push(Inst::Const { dst: 0, value: v, dtype: t });
                        body.push(Inst::Const { dst: 1, value: Scalar::Bool(on), dtype: DType::Bool });
                        body.push(Inst::AccPush { acc: 2, value: 0, by: None, pred: Some(1) });
                        if on {
                            reference.push(v);
                        }
                    }
                    body.push(Inst::AccGet { dst: 3, acc: 2 });
                    let k = Kernel {
                        name: "k".into(),
                        bufs: vec![],
                        body,
                        regs: 4,
                        knobs: Default::default(),
                        loc: Default::default(),
                    };
                    let l = legalize(&k, Caps::default());
                    let accs = |b: &[Inst]| {
                        b.iter().filter(|i| matches!(i, Inst::AccNew { .. } | Inst::AccPush { .. })).count()
                    };
                    assert_eq!(accs(&l.body), 0, "{t} {op:?}: legalized");
                    assert_eq!(accs(&legalize(&k, Caps { nan_minmax: true, ..Caps::default() }).body), n + 1);
                    let mut r = vec![(Scalar::Int(0), DType::I64); l.regs];
                    run(&l.body, &mut r);
                    let want = scalar_to(reference.result(), t);
                    assert!(same(want, r[3].0), "{t} {op:?} of {n}: {want:?}, legalized {:?}", r[3].0);
                }
            }
        }
    }

    #[test]
    fn a_target_that_has_an_operation_keeps_it() {
        let all = Caps { floor_div: true, narrow_float: true, float_rem: true, int_pow: true, nan_minmax: true };
        for (op, t) in [
            (Op::Binary(BinaryOp::Div), DType::I32),
            (Op::Binary(BinaryOp::Pow), DType::I64),
            (Op::Binary(BinaryOp::Rem), DType::F32),
            (Op::Binary(BinaryOp::Max), DType::F32),
            (Op::Binary(BinaryOp::Add), DType::F16),
            (Op::Fma, DType::Bf16),
        ] {
            let k = one(op.clone(), if matches!(op, Op::Fma) { 3 } else { 2 }, t);
            assert_eq!(legalize(&k, all).body.len(), 1, "{op:?} on {t}");
            assert!(legalize(&k, Caps::default()).body.len() > 1, "{op:?} on {t}");
        }
        // Operations no rule concerns are never touched.
        let k = one(Op::Binary(BinaryOp::Add), 2, DType::F32);
        assert_eq!(legalize(&k, Caps::default()).body.len(), 1);
    }
}
