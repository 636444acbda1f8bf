//! Legalization: the kernel IR rewritten into operations every code generator maps one to one,
//! driven by what the target lacks ([`Caps`]). The numeric contract (docs/numerics.md) is then
//! written once, here, instead of in each emitter.
//!
//! Rules:
//! - integer division and remainder floor, and a zero divisor gives 0 (and the dtype's minimum
//!   divided by -1 wraps): `Div`/`Rem` on integers become the machine's truncating division
//!   ([`BinaryOp::DivTrunc`], [`BinaryOp::RemTrunc`]) on a divisor made safe (never 0, never -1
//!   for signed dtypes), corrected to the floor with compares and selects.
//!
//! `tk emit --stage kernel` prints the kernel IR before legalization, `--stage legal` after. The
//! reference interpreter runs both forms alike, and the legalized form computes the same values
//! bit for bit (tested below and by every device's differential suite).

use crate::dtype::DType;
use crate::graph::{BinaryOp, Op, Scalar};
use crate::kernel::{Inst, Kernel};

/// What a target can do natively, so the pass leaves it alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Caps {
    /// Integer division that floors and gives 0 for a zero divisor (no target has it).
    pub floor_div: bool,
}

/// The legalized form of a kernel for a target with `caps`.
pub fn legalize(k: &Kernel, caps: Caps) -> Kernel {
    let mut out = k.clone();
    let mut regs = k.regs;
    out.body = body(&k.body, caps, &mut regs);
    out.regs = regs;
    out
}

fn body(insts: &[Inst], caps: Caps, regs: &mut usize) -> Vec<Inst> {
    let mut out = Vec::with_capacity(insts.len());
    for i in insts {
        match i {
            Inst::Range { var, extent, kind, body: b } => {
                out.push(Inst::Range { var: *var, extent: extent.clone(), kind: *kind, body: body(b, caps, regs) })
            }
            Inst::Loop { lo, trip, iter, carried, body: b, next, exit } => out.push(Inst::Loop {
                lo: lo.clone(),
                trip: trip.clone(),
                iter: *iter,
                carried: carried.clone(),
                body: body(b, caps, regs),
                next: next.clone(),
                exit: *exit,
            }),
            Inst::Alu { dst, op: Op::Binary(op @ (BinaryOp::Div | BinaryOp::Rem)), args, dtype }
                if !caps.floor_div && is_int(*dtype) =>
            {
                let mut e = Emit { out: &mut out, regs };
                e.floor_divrem(*dst, *op == BinaryOp::Div, args[0], args[1], *dtype);
            }
            other => out.push(other.clone()),
        }
    }
    out
}

fn is_int(d: DType) -> bool {
    !d.is_float() && d != DType::Bool
}

struct Emit<'a> {
    out: &'a mut Vec<Inst>,
    regs: &'a mut usize,
}

impl Emit<'_> {
    fn reg(&mut self) -> usize {
        let r = *self.regs;
        *self.regs += 1;
        r
    }
    fn konst(&mut self, v: i128, dtype: DType) -> usize {
        let dst = self.reg();
        self.out.push(Inst::Const { dst, value: Scalar::Int(v), dtype });
        dst
    }
    fn alu_to(&mut self, dst: usize, op: Op, args: Vec<usize>, dtype: DType) -> usize {
        self.out.push(Inst::Alu { dst, op, args, dtype });
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

    /// `dst = a / b` (or `a % b`) with the language's rules: the quotient floors, the remainder
    /// has the divisor's sign, a zero divisor gives 0, and `MIN / -1` wraps to `MIN` (`MIN % -1`
    /// is 0). The machine's truncating division only ever sees a divisor that is neither 0 nor -1.
    fn floor_divrem(&mut self, dst: usize, div: bool, a: usize, b: usize, t: DType) {
        let zero = self.konst(0, t);
        let one = self.konst(1, t);
        let b0 = self.bin(BinaryOp::Eq, b, zero, DType::Bool);
        if !t.is_signed_int() {
            let safe = self.select(b0, one, b, t);
            let v = self.bin(if div { BinaryOp::DivTrunc } else { BinaryOp::RemTrunc }, a, safe, t);
            self.alu_to(dst, Op::Where, vec![b0, zero, v], t);
            return;
        }
        let minus_one = self.konst(-1, t);
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::interp::wrap;

    /// Every pair of values of every 8-bit dtype, and edge values of the wider ones, give the
    /// same quotient and remainder through the legalized form as through `Div` and `Rem`.
    #[test]
    fn legalized_division_matches_the_reference_operation() {
        for t in [DType::I8, DType::U8, DType::I16, DType::I32, DType::I64, DType::U32] {
            let (lo, hi) = t.int_range().expect("an integer dtype");
            let vals: Vec<i128> = if t.bits() == 8 {
                (lo..=hi).collect()
            } else {
                let mut v = vec![lo, lo + 1, hi, hi - 1, -1, 0, 1, 2, 3, 7, -7, 100, -100];
                v.retain(|x| (lo..=hi).contains(x));
                v
            };
            for div in [true, false] {
                let op = if div { BinaryOp::Div } else { BinaryOp::Rem };
                let k = Kernel {
                    name: "k".into(),
                    bufs: vec![],
                    body: vec![Inst::Alu { dst: 2, op: Op::Binary(op), args: vec![0, 1], dtype: t }],
                    regs: 3,
                    knobs: Default::default(),
                    loc: Default::default(),
                };
                let l = legalize(&k, Caps::default());
                assert!(l.body.len() > 1, "{t}: legalized");
                for &a in &vals {
                    for &b in &vals {
                        let want = crate::graph::interp::scalar_op(
                            &Op::Binary(op),
                            &[(Scalar::Int(a), t), (Scalar::Int(b), t)],
                            t,
                        );
                        let got = run(&l.body, l.regs, &[(0, a), (1, b)], t)[2];
                        assert_eq!(want, Scalar::Int(wrap(got, t)), "{t}: {a} {op:?} {b}");
                    }
                }
            }
        }
    }

    /// Runs straight-line constants and ALU operations on scalar registers.
    fn run(body: &[Inst], regs: usize, init: &[(usize, i128)], t: DType) -> Vec<i128> {
        let mut r: Vec<(Scalar, DType)> = vec![(Scalar::Int(0), t); regs];
        for &(i, v) in init {
            r[i] = (Scalar::Int(v), t);
        }
        for i in body {
            match i {
                Inst::Const { dst, value, dtype } => r[*dst] = (*value, *dtype),
                Inst::Alu { dst, op, args, dtype } => {
                    let a: Vec<(Scalar, DType)> = args.iter().map(|x| r[*x]).collect();
                    r[*dst] = (crate::graph::interp::scalar_op(op, &a, *dtype), *dtype);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        r.iter()
            .map(|(s, _)| match s {
                Scalar::Int(v) => *v,
                Scalar::Bool(b) => i128::from(*b),
                Scalar::Float(_) => 0,
            })
            .collect()
    }
}
