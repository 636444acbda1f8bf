//! Bounds: the interval of an index expression from the ranges and the facts (`where`
//! conditions) in scope, used to prove indices in range.

use super::*;

impl<'p> Checker<'p> {
    pub(super) fn interval(&self, e: &TExpr, facts: bool) -> Interval {
        let k = key(e);
        let fact = if facts { self.facts.iter().rev().find(|f| f.key == k) } else { None };
        let base = self.interval_raw(e, facts);
        match (base, fact) {
            (Interval::Known { lo, hi, vars }, Some(f)) => {
                Interval::Known { lo: f.lo.clone().unwrap_or(lo), hi: f.hi.clone().unwrap_or(hi), vars }
            }
            (b, _) => b,
        }
    }

    pub(super) fn interval_raw(&self, e: &TExpr, facts: bool) -> Interval {
        use Interval::*;
        match &e.kind {
            TKind::Lit(Lit::Int(c)) => {
                Known { lo: Dim::constant(*c as i64), hi: Dim::constant(*c as i64), vars: false }
            }
            TKind::Dim(d) => Known { lo: d.clone(), hi: d.clone(), vars: false },
            TKind::Var(id) => match self.vars.get(id) {
                Some((lo, hi)) => Known { lo: lo.clone(), hi: hi.clone(), vars: true },
                None => Unknown,
            },
            // Only a cast to i64 keeps every index value; narrower casts may wrap.
            TKind::Cast(DType::I64, a) => self.interval(a, facts),
            TKind::Unary(UnOp::Neg, a) => match self.interval(a, facts) {
                Known { lo, hi, vars } => Known { lo: hi.neg(), hi: lo.neg(), vars },
                x => x,
            },
            TKind::Binary(op, a, b) => {
                let (x, y) = (self.interval(a, facts), self.interval(b, facts));
                let (Known { lo: l1, hi: h1, vars: v1 }, Known { lo: l2, hi: h2, vars: v2 }) = (&x, &y) else {
                    return if matches!(x, Data) || matches!(y, Data) { Data } else { Unknown };
                };
                let vars = *v1 || *v2;
                match op {
                    BinOp::Add => Known { lo: l1.add(l2), hi: h1.add(h2), vars },
                    BinOp::Sub => Known { lo: l1.sub(h2), hi: h1.sub(l2), vars },
                    BinOp::Mul => {
                        // One side is a constant or a size (non-negative, exact).
                        let (iv_lo, iv_hi, c) = if l2 == h2 {
                            (l1, h1, l2)
                        } else if l1 == h1 {
                            (l2, h2, l1)
                        } else {
                            return Unknown;
                        };
                        match c.as_const() {
                            Some(k) if k >= 0 => Known { lo: iv_lo.mul(c), hi: iv_hi.mul(c), vars },
                            Some(_) => Known { lo: iv_hi.mul(c), hi: iv_lo.mul(c), vars },
                            None if c.provably_nonneg() && iv_lo.provably_nonneg() => {
                                Known { lo: iv_lo.mul(c), hi: iv_hi.mul(c), vars }
                            }
                            None => Unknown,
                        }
                    }
                    BinOp::Div => match (h2.as_const(), l2 == h2) {
                        (Some(k), true) if k > 0 => match (l1.floor_div(k), h1.floor_div(k)) {
                            (Some(lo), Some(hi)) => Known { lo, hi, vars },
                            _ => Unknown,
                        },
                        _ => Unknown,
                    },
                    BinOp::Rem => match (h2.as_const(), l2 == h2) {
                        (Some(k), true) if k > 0 => Known { lo: Dim::constant(0), hi: Dim::constant(k - 1), vars },
                        _ => Unknown,
                    },
                    _ => Unknown,
                }
            }
            TKind::Builtin("where", args, _) => {
                // Either branch: only provable when both are.
                match (self.interval(&args[1], facts), self.interval(&args[2], facts)) {
                    (Known { lo: a, hi: b, vars: v1 }, Known { lo: c, hi: d, vars: v2 }) if a == c && b == d => {
                        Known { lo: a, hi: b, vars: v1 || v2 }
                    }
                    (Data, _) | (_, Data) => Data,
                    _ => Unknown,
                }
            }
            TKind::Lit(_) => Unknown,
            _ => Data,
        }
    }

    /// Facts about index expressions that a `where` condition establishes.
    pub(super) fn facts_of(&self, c: &TExpr, negate: bool) -> Vec<Fact> {
        let mut out = Vec::new();
        match &c.kind {
            TKind::Binary(BinOp::And, a, b) if !negate => {
                out.extend(self.facts_of(a, false));
                out.extend(self.facts_of(b, false));
            }
            TKind::Binary(BinOp::Or, a, b) if negate => {
                out.extend(self.facts_of(a, true));
                out.extend(self.facts_of(b, true));
            }
            TKind::Unary(UnOp::Not, a) => out.extend(self.facts_of(a, !negate)),
            TKind::Binary(op, a, b) if op.is_comparison() => {
                let op = if negate {
                    match op {
                        BinOp::Lt => BinOp::Ge,
                        BinOp::Le => BinOp::Gt,
                        BinOp::Gt => BinOp::Le,
                        BinOp::Ge => BinOp::Lt,
                        o => *o,
                    }
                } else {
                    *op
                };
                let exact = |x: &TExpr| match self.interval_raw(x, false) {
                    Interval::Known { lo, hi, .. } if lo == hi => Some(lo),
                    _ => None,
                };
                // x < y  gives  x <= y - 1 and y >= x + 1 (when the other side is exact).
                let mut add = |x: &TExpr, lo: Option<Dim>, hi: Option<Dim>| out.push(Fact { key: key(x), lo, hi });
                match op {
                    BinOp::Lt => {
                        if let Some(y) = exact(b) {
                            add(a, None, Some(y.add_const(-1)))
                        }
                        if let Some(x) = exact(a) {
                            add(b, Some(x.add_const(1)), None)
                        }
                    }
                    BinOp::Le => {
                        if let Some(y) = exact(b) {
                            add(a, None, Some(y))
                        }
                        if let Some(x) = exact(a) {
                            add(b, Some(x), None)
                        }
                    }
                    BinOp::Gt => {
                        if let Some(y) = exact(b) {
                            add(a, Some(y.add_const(1)), None)
                        }
                        if let Some(x) = exact(a) {
                            add(b, None, Some(x.add_const(-1)))
                        }
                    }
                    BinOp::Ge => {
                        if let Some(y) = exact(b) {
                            add(a, Some(y), None)
                        }
                        if let Some(x) = exact(a) {
                            add(b, None, Some(x))
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        // Combine facts on the same expression (`i >= 1 && i < n`).
        let mut merged: Vec<Fact> = Vec::new();
        for f in out {
            if let Some(m) = merged.iter_mut().find(|m| m.key == f.key) {
                if f.lo.is_some() {
                    m.lo = f.lo;
                }
                if f.hi.is_some() {
                    m.hi = f.hi;
                }
            } else {
                merged.push(f);
            }
        }
        merged
    }

    // ---------------------------------------------------------------- calls
}

pub(super) enum Interval {
    Known { lo: Dim, hi: Dim, vars: bool },
    Data,
    Unknown,
}
