//! Symbolic dimensions: polynomials with integer coefficients over size symbols (`n`, `h`) and
//! floor-division atoms (`floor(n / 4)`). Every symbol and atom stands for a size, so it is
//! non-negative; that is what [`Dim::provably_nonneg`] relies on.

use std::collections::BTreeMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Atom {
    Sym(String),
    /// `floor(p / d)` with `d > 1`, for a polynomial that does not divide exactly.
    FloorDiv(Box<Dim>, i64),
}

/// A canonical polynomial: monomial (sorted atoms) -> non-zero coefficient.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dim {
    terms: BTreeMap<Vec<Atom>, i64>,
}

impl Dim {
    pub fn constant(c: i64) -> Dim {
        let mut terms = BTreeMap::new();
        if c != 0 {
            terms.insert(vec![], c);
        }
        Dim { terms }
    }
    pub fn sym(name: &str) -> Dim {
        Dim { terms: BTreeMap::from([(vec![Atom::Sym(name.to_string())], 1)]) }
    }
    /// The value, when the polynomial is a constant.
    pub fn as_const(&self) -> Option<i64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&vec![]).copied(),
            _ => None,
        }
    }
    /// The monomials with their coefficients (for code generators that evaluate a dimension).
    pub fn terms(&self) -> impl Iterator<Item = (&[Atom], i64)> {
        self.terms.iter().map(|(m, c)| (m.as_slice(), *c))
    }
    pub fn is_one(&self) -> bool {
        self.as_const() == Some(1)
    }
    /// The symbols this dimension mentions.
    pub fn symbols(&self) -> Vec<String> {
        let mut out = Vec::new();
        for mono in self.terms.keys() {
            for a in mono {
                match a {
                    Atom::Sym(s) => out.push(s.clone()),
                    Atom::FloorDiv(d, _) => out.extend(d.symbols()),
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
    fn add_term(&mut self, mono: Vec<Atom>, c: i64) {
        let e = self.terms.entry(mono.clone()).or_insert(0);
        *e = e.wrapping_add(c);
        if *e == 0 {
            self.terms.remove(&mono);
        }
    }
    pub fn add(&self, o: &Dim) -> Dim {
        let mut r = self.clone();
        for (m, c) in &o.terms {
            r.add_term(m.clone(), *c);
        }
        r
    }
    pub fn neg(&self) -> Dim {
        Dim { terms: self.terms.iter().map(|(m, c)| (m.clone(), c.wrapping_neg())).collect() }
    }
    pub fn sub(&self, o: &Dim) -> Dim {
        self.add(&o.neg())
    }
    pub fn mul(&self, o: &Dim) -> Dim {
        let mut r = Dim::default();
        for (m1, c1) in &self.terms {
            for (m2, c2) in &o.terms {
                let mut m: Vec<Atom> = m1.iter().chain(m2.iter()).cloned().collect();
                m.sort();
                r.add_term(m, c1.wrapping_mul(*c2));
            }
        }
        r
    }
    pub fn add_const(&self, c: i64) -> Dim {
        self.add(&Dim::constant(c))
    }
    /// Floor division by a positive constant. Exact when every coefficient divides.
    pub fn floor_div(&self, d: i64) -> Option<Dim> {
        if d <= 0 {
            return None;
        }
        if d == 1 {
            return Some(self.clone());
        }
        if let Some(c) = self.as_const() {
            return Some(Dim::constant(c.div_euclid(d)));
        }
        // p = d * q + r with every coefficient of r in 0..d; floor(p / d) = q + floor(r / d).
        let mut q = Dim::default();
        let mut r = Dim::default();
        for (m, c) in &self.terms {
            q.add_term(m.clone(), c.div_euclid(d));
            r.add_term(m.clone(), c.rem_euclid(d));
        }
        match r.as_const() {
            Some(c) => Some(q.add_const(c.div_euclid(d))),
            None => Some(q.add(&Dim { terms: BTreeMap::from([(vec![Atom::FloorDiv(Box::new(r), d)], 1)]) })),
        }
    }
    /// Exact division by another dimension, when it divides every term (used by `reshape(x, -1)`).
    pub fn exact_div(&self, o: &Dim) -> Option<Dim> {
        if let Some(c) = o.as_const() {
            if c > 0 && self.terms.values().all(|v| v % c == 0) {
                return Some(Dim { terms: self.terms.iter().map(|(m, v)| (m.clone(), v / c)).collect() });
            }
            return None;
        }
        if o.terms.len() != 1 {
            return (self == o).then(|| Dim::constant(1));
        }
        let (om, oc) = o.terms.iter().next()?;
        let mut r = Dim::default();
        for (m, c) in &self.terms {
            if c % oc != 0 {
                return None;
            }
            let mut rest = m.clone();
            for a in om {
                let pos = rest.iter().position(|x| x == a)?;
                rest.remove(pos);
            }
            r.add_term(rest, c / oc);
        }
        Some(r)
    }
    /// True when the value is >= 0 for every non-negative assignment of the symbols.
    pub fn provably_nonneg(&self) -> bool {
        self.nonneg_depth(4)
    }

    fn nonneg_depth(&self, depth: u32) -> bool {
        if self.terms.values().all(|c| *c >= 0) {
            return true;
        }
        if depth == 0 {
            return false;
        }
        // A negative multiple of floor(p / d) is at least the same multiple of p / d:
        // rest + c * floor(p / d) >= 0  follows from  d * rest + c * p >= 0  (c < 0).
        for (m, c) in &self.terms {
            if let ([Atom::FloorDiv(p, d)], true) = (m.as_slice(), *c < 0) {
                let mut rest = self.clone();
                rest.terms.remove(m);
                let scaled = rest.mul(&Dim::constant(*d)).add(&p.mul(&Dim::constant(*c)));
                if scaled.nonneg_depth(depth - 1) {
                    return true;
                }
            }
        }
        false
    }
    /// Substitutes symbols by values; `None` when a symbol has no value.
    pub fn eval(&self, env: &dyn Fn(&str) -> Option<i64>) -> Option<i64> {
        let mut total: i64 = 0;
        for (m, c) in &self.terms {
            let mut v = *c;
            for a in m {
                let x = match a {
                    Atom::Sym(s) => env(s)?,
                    Atom::FloorDiv(p, d) => p.eval(env)?.div_euclid(*d),
                };
                v = v.checked_mul(x)?;
            }
            total = total.checked_add(v)?;
        }
        Some(total)
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Atom::Sym(s) => f.write_str(s),
            Atom::FloorDiv(p, d) => {
                if p.terms.len() > 1 || p.terms.values().any(|c| *c != 1) {
                    write!(f, "({p}) / {d}")
                } else {
                    write!(f, "{p} / {d}")
                }
            }
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.terms.is_empty() {
            return f.write_str("0");
        }
        // Symbolic terms first (highest degree first), the constant last: `2 * n + 1`.
        let mut terms: Vec<(&Vec<Atom>, &i64)> = self.terms.iter().collect();
        terms.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(b.0)));
        for (i, (m, c)) in terms.into_iter().enumerate() {
            let (neg, mag) = (*c < 0, c.unsigned_abs());
            if i == 0 {
                if neg {
                    f.write_str("-")?;
                }
            } else {
                f.write_str(if neg { " - " } else { " + " })?;
            }
            let atoms: Vec<String> = m
                .iter()
                .map(|a| match a {
                    Atom::FloorDiv(..) if m.len() > 1 || mag != 1 => format!("({a})"),
                    _ => a.to_string(),
                })
                .collect();
            if m.is_empty() {
                write!(f, "{mag}")?;
            } else if mag == 1 {
                f.write_str(&atoms.join(" * "))?;
            } else {
                write!(f, "{mag} * {}", atoms.join(" * "))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms() {
        let n = Dim::sym("n");
        let m = Dim::sym("m");
        assert_eq!(n.add_const(2).sub(&Dim::constant(2)), n);
        assert_eq!(n.mul(&Dim::constant(2)).to_string(), "2 * n");
        assert_eq!(n.sub(&m).to_string(), "-m + n");
        assert_eq!(n.add(&m).mul(&n.sub(&m)), n.mul(&n).sub(&m.mul(&m)));
        assert_eq!(n.mul(&Dim::constant(4)).floor_div(4), Some(n.clone()));
        assert_eq!(n.floor_div(4).map(|d| d.to_string()), Some("n / 4".to_string()));
        assert_eq!(n.add_const(-3).to_string(), "n - 3");
        assert_eq!(Dim::constant(-7).floor_div(2), Some(Dim::constant(-4)));
        // (2n - 1) / 2 == n - 1 for every n >= 1; (2n + 3) / 2 == n + 1.
        assert_eq!(n.mul(&Dim::constant(2)).add_const(-1).floor_div(2), Some(n.add_const(-1)));
        assert_eq!(n.mul(&Dim::constant(2)).add_const(3).floor_div(2), Some(n.add_const(1)));
        assert_eq!(n.add_const(1).floor_div(2).map(|d| d.to_string()), Some("(n + 1) / 2".to_string()));
    }

    #[test]
    fn nonnegativity_and_division() {
        let n = Dim::sym("n");
        let m = Dim::sym("m");
        assert!(n.mul(&m).sub(&n.mul(&m).add_const(-1)).add_const(-1).provably_nonneg());
        assert!(!n.sub(&m).provably_nonneg());
        // n - 4 * floor(n / 4) >= 0, but not n - 5 * floor(n / 4).
        let q = n.floor_div(4).unwrap_or_default();
        assert!(n.sub(&q.mul(&Dim::constant(4))).provably_nonneg());
        assert!(!n.sub(&q.mul(&Dim::constant(5))).provably_nonneg());
        assert_eq!(
            n.mul(&m).mul(&Dim::constant(6)).exact_div(&m.mul(&Dim::constant(3))),
            Some(n.mul(&Dim::constant(2)))
        );
        assert_eq!(n.add_const(1).exact_div(&n), None);
        let v = n.mul(&m).add_const(3).eval(&|s| if s == "n" { Some(4) } else { Some(5) });
        assert_eq!(v, Some(23));
    }
}
