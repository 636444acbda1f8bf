//! The shared decomposition of transcendental functions into primitive operations (add, sub,
//! mul, div, fma, sqrt, round, compares, select, integer and bit operations), so that every
//! backend computes exactly the same function. docs/numerics.md gives the algorithms and the
//! measured accuracy; `scripts/ulp` measures it.
//!
//! f32 is decomposed here (pow included); f16 and bf16 are computed in f32 and rounded once. f64
//! keeps its transcendentals for now (evaluated as the f64 reference).

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::*;
use std::collections::HashMap;

/// The unary operations this pass decomposes (for f32, f16 and bf16).
pub fn decomposed(op: UnaryOp) -> bool {
    matches!(
        op,
        UnaryOp::Exp
            | UnaryOp::Exp2
            | UnaryOp::Log
            | UnaryOp::Log2
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh
            | UnaryOp::Erf
            | UnaryOp::Rsqrt
    )
}

/// Replaces decomposable transcendentals by primitive operations.
pub fn decompose(g: &Graph) -> Graph {
    let mut out = Graph { inputs: g.inputs.clone(), dims: g.dims.clone(), ..Graph::default() };
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    for id in g.topo() {
        let n = g.node(id);
        let args: Vec<NodeId> = n.args.iter().map(|a| map[a]).collect();
        let new = match &n.op {
            Op::Unary(u) if decomposed(*u) && matches!(n.dtype, DType::F32 | DType::F16 | DType::Bf16) => {
                let mut b = B { g: &mut out, shape: n.shape.clone(), loc: n.loc };
                let x = if n.dtype == DType::F32 { args[0] } else { b.cast(args[0], DType::F32) };
                let y = match u {
                    UnaryOp::Exp => b.exp(x),
                    UnaryOp::Exp2 => b.exp2(x),
                    UnaryOp::Log => b.log(x, false),
                    UnaryOp::Log2 => b.log(x, true),
                    UnaryOp::Sin => b.sincos(x, false),
                    UnaryOp::Cos => b.sincos(x, true),
                    UnaryOp::Tanh => b.tanh(x),
                    UnaryOp::Erf => b.erf(x),
                    _ => {
                        let s = b.un(UnaryOp::Sqrt, x);
                        let one = b.c(1.0);
                        b.bin(BinaryOp::Div, one, s)
                    }
                };
                if n.dtype == DType::F32 { y } else { b.cast(y, n.dtype) }
            }
            Op::Binary(BinaryOp::Pow) if matches!(n.dtype, DType::F32 | DType::F16 | DType::Bf16) => {
                let mut b = B { g: &mut out, shape: n.shape.clone(), loc: n.loc };
                let (x, y) = if n.dtype == DType::F32 {
                    (args[0], args[1])
                } else {
                    (b.cast(args[0], DType::F32), b.cast(args[1], DType::F32))
                };
                let r = b.pow(x, y);
                if n.dtype == DType::F32 { r } else { b.cast(r, n.dtype) }
            }
            Op::Loop { lo, trip, carried, has_exit, body } => out.add(
                Op::Loop {
                    lo: lo.clone(),
                    trip: trip.clone(),
                    carried: *carried,
                    has_exit: *has_exit,
                    body: Box::new(decompose(body)),
                },
                n.dtype,
                n.shape.clone(),
                args,
                n.loc,
            ),
            op => out.add(op.clone(), n.dtype, n.shape.clone(), args, n.loc),
        };
        map.insert(id, new);
    }
    out.outputs = g.outputs.iter().map(|(n, id)| (n.clone(), map[id])).collect();
    out
}

/// Builds elementwise f32 code of one shape.
struct B<'g> {
    g: &'g mut Graph,
    shape: Vec<Dim>,
    loc: Loc,
}

impl B<'_> {
    fn node(&mut self, op: Op, d: DType, args: Vec<NodeId>) -> NodeId {
        self.g.add(op, d, self.shape.clone(), args, self.loc)
    }
    fn c(&mut self, v: f64) -> NodeId {
        self.node(Op::Const(Scalar::Float(v)), DType::F32, vec![])
    }
    fn ci(&mut self, v: i128) -> NodeId {
        self.node(Op::Const(Scalar::Int(v)), DType::I32, vec![])
    }
    fn bin(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> NodeId {
        let d = if op.is_comparison() { DType::Bool } else { self.g.node(a).dtype };
        self.node(Op::Binary(op), d, vec![a, b])
    }
    fn un(&mut self, op: UnaryOp, a: NodeId) -> NodeId {
        let d = self.g.node(a).dtype;
        self.node(Op::Unary(op), d, vec![a])
    }
    fn fma(&mut self, a: NodeId, b: NodeId, c: NodeId) -> NodeId {
        self.node(Op::Fma, DType::F32, vec![a, b, c])
    }
    fn sel(&mut self, c: NodeId, a: NodeId, b: NodeId) -> NodeId {
        let d = self.g.node(a).dtype;
        self.node(Op::Where, d, vec![c, a, b])
    }
    fn cast(&mut self, a: NodeId, d: DType) -> NodeId {
        self.node(Op::Cast, d, vec![a])
    }
    fn bits(&mut self, a: NodeId) -> NodeId {
        self.node(Op::Bitcast, DType::I32, vec![a])
    }
    fn float(&mut self, a: NodeId) -> NodeId {
        self.node(Op::Bitcast, DType::F32, vec![a])
    }
    /// Horner evaluation of sum(c[k] * x^k) with fma.
    fn poly(&mut self, x: NodeId, coefs: &[f64]) -> NodeId {
        let mut acc = self.c(coefs[coefs.len() - 1]);
        for &k in coefs[..coefs.len() - 1].iter().rev() {
            let ck = self.c(k);
            acc = self.fma(acc, x, ck);
        }
        acc
    }
    /// 2^n for an integer-valued f32 n in [-126, 127].
    fn pow2(&mut self, n: NodeId) -> NodeId {
        let ni = self.cast(n, DType::I32);
        let bias = self.ci(127);
        let e = self.bin(BinaryOp::Add, ni, bias);
        let sh = self.ci(23);
        let b = self.bin(BinaryOp::Shl, e, sh);
        self.float(b)
    }
    /// p * 2^n for integer-valued n in [-252, 254], rounding once (subnormal results included).
    fn scale(&mut self, p: NodeId, n: NodeId) -> NodeId {
        let half = self.c(0.5);
        let h = self.bin(BinaryOp::Mul, n, half);
        let n1 = self.un(UnaryOp::Floor, h);
        let n2 = self.bin(BinaryOp::Sub, n, n1);
        let s1 = self.pow2(n1);
        let s2 = self.pow2(n2);
        let t = self.bin(BinaryOp::Mul, p, s1);
        self.bin(BinaryOp::Mul, t, s2)
    }

    /// e^r for |r| <= ln2/2: Taylor polynomial of degree 7.
    fn exp_poly(&mut self, r: NodeId) -> NodeId {
        let coefs: Vec<f64> = (0..8).map(|k| 1.0 / (1..=k).map(f64::from).product::<f64>()).collect();
        self.poly(r, &coefs)
    }

    /// exp(x) = 2^n * e^r with n = round(x / ln2), r = x - n ln2 (Cody-Waite, two parts, fma).
    fn exp(&mut self, x: NodeId) -> NodeId {
        let log2e = self.c(1.4426950216293335);
        let t = self.bin(BinaryOp::Mul, x, log2e);
        let n = self.un(UnaryOp::Round, t);
        let nn = self.un(UnaryOp::Neg, n);
        let hi = self.c(0.6931471824645996);
        let lo = self.c(-1.9046542121259336e-09);
        let r1 = self.fma(nn, hi, x);
        let r = self.fma(nn, lo, r1);
        let p = self.exp_poly(r);
        let y = self.scale(p, n);
        self.exp_limits(x, y, 88.72283935546875, -103.97207708)
    }

    /// Overflow to +inf above `hi`, underflow to 0 below `lo`; NaN stays NaN.
    fn exp_limits(&mut self, x: NodeId, y: NodeId, hi: f64, lo: f64) -> NodeId {
        let h = self.c(hi);
        let l = self.c(lo);
        let inf = self.c(f64::INFINITY);
        let zero = self.c(0.0);
        let over = self.bin(BinaryOp::Gt, x, h);
        let under = self.bin(BinaryOp::Lt, x, l);
        let y = self.sel(over, inf, y);
        self.sel(under, zero, y)
    }

    /// 2^x = 2^n * e^(r ln2) with n = round(x), r = x - n (exact).
    fn exp2(&mut self, x: NodeId) -> NodeId {
        let n = self.un(UnaryOp::Round, x);
        let r = self.bin(BinaryOp::Sub, x, n);
        let ln2 = std::f64::consts::LN_2;
        let coefs: Vec<f64> = (0..8).map(|k| ln2.powi(k) / (1..=k).map(f64::from).product::<f64>()).collect();
        let p = self.poly(r, &coefs);
        let y = self.scale(p, n);
        self.exp_limits(x, y, 128.0, -150.0)
    }

    /// log(x) (or log2(x)): x = 2^e * m with m in [sqrt(1/2), sqrt(2)), f = m - 1,
    /// log(1 + f) = f - (hfsq - s * (hfsq + R(s^2))) with s = f / (2 + f), hfsq = f^2 / 2.
    fn log(&mut self, x: NodeId, base2: bool) -> NodeId {
        // Subnormals: scale by 2^23 first.
        let tiny = self.c(1.1754943508222875e-38);
        let is_sub = self.bin(BinaryOp::Lt, x, tiny);
        let big = self.c(8388608.0);
        let xs = self.bin(BinaryOp::Mul, x, big);
        let xn = self.sel(is_sub, xs, x);
        let e_adj0 = self.ci(0);
        let e_adj23 = self.ci(-23);
        let e_adj = self.sel(is_sub, e_adj23, e_adj0);
        let b = self.bits(xn);
        let sh = self.ci(23);
        let ff = self.ci(0xff);
        let be = self.bin(BinaryOp::Shr, b, sh);
        let eb = self.bin(BinaryOp::And, be, ff);
        let bias = self.ci(127);
        let e0 = self.bin(BinaryOp::Sub, eb, bias);
        let e0 = self.bin(BinaryOp::Add, e0, e_adj);
        let mant = self.ci(0x7fffff);
        let mb = self.bin(BinaryOp::And, b, mant);
        let one_bits = self.ci(0x3f800000);
        let mbits = self.bin(BinaryOp::Or, mb, one_bits);
        let m = self.float(mbits);
        // m in [1, 2): fold to [sqrt(1/2), sqrt(2)).
        let sqrt2 = self.c(1.4142135381698608);
        let big_m = self.bin(BinaryOp::Ge, m, sqrt2);
        let half = self.c(0.5);
        let mh = self.bin(BinaryOp::Mul, m, half);
        let m = self.sel(big_m, mh, m);
        let one_i = self.ci(1);
        let e1 = self.bin(BinaryOp::Add, e0, one_i);
        let e = self.sel(big_m, e1, e0);
        let ef = self.cast(e, DType::F32);
        let one = self.c(1.0);
        let f = self.bin(BinaryOp::Sub, m, one);
        let two = self.c(2.0);
        let den = self.bin(BinaryOp::Add, two, f);
        let s = self.bin(BinaryOp::Div, f, den);
        let z = self.bin(BinaryOp::Mul, s, s);
        // R(z) = 2z/3 + 2z^2/5 + ... (z <= 0.0295).
        let coefs: Vec<f64> = (0..7).map(|k| if k == 0 { 0.0 } else { 2.0 / (2.0 * k as f64 + 1.0) }).collect();
        let r = self.poly(z, &coefs);
        let hf = self.bin(BinaryOp::Mul, half, f);
        let hfsq = self.bin(BinaryOp::Mul, hf, f);
        let t = self.bin(BinaryOp::Add, hfsq, r);
        let st = self.bin(BinaryOp::Mul, s, t);
        let inner = self.bin(BinaryOp::Sub, hfsq, st);
        let log1pf = self.bin(BinaryOp::Sub, f, inner);
        let y = if base2 {
            // log2(x) = e + log1p(f) * log2(e), with log2(e) split in two parts.
            let l_hi = self.c(1.4426950216293335);
            let l_lo = self.c(1.925963033500011e-08);
            let a = self.bin(BinaryOp::Mul, log1pf, l_lo);
            let b2 = self.fma(log1pf, l_hi, a);
            self.bin(BinaryOp::Add, ef, b2)
        } else {
            let hi = self.c(0.6931471824645996);
            let lo = self.c(-1.9046542121259336e-09);
            let a = self.fma(ef, lo, log1pf);
            self.fma(ef, hi, a)
        };
        // Special values: log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
        let zero = self.c(0.0);
        let ninf = self.c(f64::NEG_INFINITY);
        let nan = self.c(f64::NAN);
        let inf = self.c(f64::INFINITY);
        let is0 = self.bin(BinaryOp::Eq, x, zero);
        let neg = self.bin(BinaryOp::Lt, x, zero);
        let isinf = self.bin(BinaryOp::Eq, x, inf);
        let isnan = self.bin(BinaryOp::Ne, x, x);
        let y = self.sel(is0, ninf, y);
        let y = self.sel(neg, nan, y);
        let y = self.sel(isinf, inf, y);
        self.sel(isnan, x, y)
    }

    /// sin/cos: k = round(x * 2/pi), r = x - k * pi/2 (three parts, fma), then the polynomial of
    /// the quadrant k mod 4.
    fn sincos(&mut self, x: NodeId, cos: bool) -> NodeId {
        let twoopi = self.c(0.6366197466850281);
        let t = self.bin(BinaryOp::Mul, x, twoopi);
        let k = self.un(UnaryOp::Round, t);
        let nk = self.un(UnaryOp::Neg, k);
        let p1 = self.c(1.5707963705062866);
        let p2 = self.c(-4.371138828673793e-08);
        let p3 = self.c(-1.7151245100058819e-15);
        let r = self.fma(nk, p1, x);
        let r = self.fma(nk, p2, r);
        let r = self.fma(nk, p3, r);
        let z = self.bin(BinaryOp::Mul, r, r);
        // sin r = r + r^3 * S(z); cos r = 1 - z/2 + z^2 * C(z).
        let sin_c: Vec<f64> = (1..6)
            .map(|j: i32| {
                let n = 2 * j + 1;
                (if j % 2 == 1 { -1.0 } else { 1.0 }) / (1..=n).map(f64::from).product::<f64>()
            })
            .collect();
        let s_poly = self.poly(z, &sin_c);
        let r3 = self.bin(BinaryOp::Mul, z, r);
        let sin_r = self.fma(r3, s_poly, r);
        let cos_c: Vec<f64> = (2..7)
            .map(|j: i32| {
                let n = 2 * j;
                (if j % 2 == 1 { -1.0 } else { 1.0 }) / (1..=n).map(f64::from).product::<f64>()
            })
            .collect();
        let c_poly = self.poly(z, &cos_c);
        let z2 = self.bin(BinaryOp::Mul, z, z);
        let half = self.c(-0.5);
        let one = self.c(1.0);
        let hz = self.fma(half, z, one);
        let cos_r = self.fma(z2, c_poly, hz);
        // Quadrant: q = k mod 4 (cos adds one quarter turn).
        let ki = self.cast(k, DType::I32);
        let ki = if cos {
            let one_i = self.ci(1);
            self.bin(BinaryOp::Add, ki, one_i)
        } else {
            ki
        };
        let three = self.ci(3);
        let q = self.bin(BinaryOp::And, ki, three);
        let one_i = self.ci(1);
        let two_i = self.ci(2);
        let qb0 = self.bin(BinaryOp::And, q, one_i);
        let zero_i = self.ci(0);
        let odd = self.bin(BinaryOp::Ne, qb0, zero_i);
        let qb1 = self.bin(BinaryOp::And, q, two_i);
        let negate = self.bin(BinaryOp::Ne, qb1, zero_i);
        let v = self.sel(odd, cos_r, sin_r);
        let nv = self.un(UnaryOp::Neg, v);
        let y = self.sel(negate, nv, v);
        // inf -> NaN (x - k*pi/2 is NaN already for NaN; inf*2/pi rounds to inf).
        let inf = self.c(f64::INFINITY);
        let ax = self.un(UnaryOp::Abs, x);
        let isinf = self.bin(BinaryOp::Eq, ax, inf);
        let nan = self.c(f64::NAN);
        self.sel(isinf, nan, y)
    }

    /// erf: x * P(x^2) (Taylor, 12 terms) for |x| < 1; 1 - e^(-x^2) * Q(|x| - 2.45) for
    /// |x| < 3.9, Q a degree-13 Chebyshev fit of erfc(x) e^(x^2) (relative error 2.7e-10);
    /// +-1 beyond.
    fn erf(&mut self, x: NodeId) -> NodeId {
        const TAYLOR: [f64; 12] = [
            std::f64::consts::FRAC_2_SQRT_PI,
            -0.37612638903183754,
            0.11283791670955126,
            -0.026866170645131252,
            0.005223977625442188,
            -0.0008548327023450853,
            0.00012055332981789664,
            -1.492565035840625e-05,
            1.6462114365889248e-06,
            -1.6365844691234924e-07,
            1.4807192815879218e-08,
            -1.2290555301717928e-09,
        ];
        const Q: [f64; 14] = [
            0.21458709239198764,
            -0.07690241514887261,
            0.026176168185928845,
            -0.008513855614207274,
            0.0026586656561069567,
            -0.0008001148784177993,
            0.00023263703046226498,
            -6.561532116560254e-05,
            1.8185972362412664e-05,
            -4.842381131251507e-06,
            1.1126512681462678e-06,
            -2.8557399824296635e-07,
            1.2163186422639052e-07,
            -2.904694364552173e-08,
        ];
        let z = self.bin(BinaryOp::Mul, x, x);
        let p = self.poly(z, &TAYLOR);
        let small = self.bin(BinaryOp::Mul, x, p);
        let ax = self.un(UnaryOp::Abs, x);
        let c = self.c(2.45);
        let y = self.bin(BinaryOp::Sub, ax, c);
        let q = self.poly(y, &Q);
        let nz = self.un(UnaryOp::Neg, z);
        let e = self.exp(nz);
        let t = self.bin(BinaryOp::Mul, e, q);
        let one = self.c(1.0);
        let mid = self.bin(BinaryOp::Sub, one, t);
        let lim = self.c(3.9);
        let is_mid = self.bin(BinaryOp::Lt, ax, lim);
        let v = self.sel(is_mid, mid, one);
        let zero = self.c(0.0);
        let neg = self.bin(BinaryOp::Lt, x, zero);
        let nv = self.un(UnaryOp::Neg, v);
        let v = self.sel(neg, nv, v);
        let one_l = self.c(1.0);
        let is_small = self.bin(BinaryOp::Lt, ax, one_l);
        let r = self.sel(is_small, small, v);
        let isnan = self.bin(BinaryOp::Ne, x, x);
        self.sel(isnan, x, r)
    }

    fn c64(&mut self, v: f64) -> NodeId {
        self.node(Op::Const(Scalar::Float(v)), DType::F64, vec![])
    }
    fn ci64(&mut self, v: i128) -> NodeId {
        self.node(Op::Const(Scalar::Int(v)), DType::I64, vec![])
    }
    fn fma64(&mut self, a: NodeId, b: NodeId, c: NodeId) -> NodeId {
        self.node(Op::Fma, DType::F64, vec![a, b, c])
    }
    fn poly64(&mut self, x: NodeId, coefs: &[f64]) -> NodeId {
        let mut acc = self.c64(coefs[coefs.len() - 1]);
        for &k in coefs[..coefs.len() - 1].iter().rev() {
            let ck = self.c64(k);
            acc = self.fma64(acc, x, ck);
        }
        acc
    }

    /// log2 of a positive normal or subnormal f64, to about 1e-15 relative (the f64 version of
    /// `log`, with a longer series).
    fn log2_64(&mut self, x: NodeId) -> NodeId {
        let tiny = self.c64(f64::MIN_POSITIVE);
        let is_sub = self.bin(BinaryOp::Lt, x, tiny);
        let big = self.c64(4503599627370496.0);
        let xs = self.bin(BinaryOp::Mul, x, big);
        let xn = self.sel(is_sub, xs, x);
        let a0 = self.ci64(0);
        let a52 = self.ci64(-52);
        let e_adj = self.sel(is_sub, a52, a0);
        let b = self.node(Op::Bitcast, DType::I64, vec![xn]);
        let sh = self.ci64(52);
        let be = self.bin(BinaryOp::Shr, b, sh);
        let m11 = self.ci64(0x7ff);
        let eb = self.bin(BinaryOp::And, be, m11);
        let bias = self.ci64(1023);
        let e0 = self.bin(BinaryOp::Sub, eb, bias);
        let e0 = self.bin(BinaryOp::Add, e0, e_adj);
        let mant = self.ci64(0xf_ffff_ffff_ffff);
        let mb = self.bin(BinaryOp::And, b, mant);
        let one_bits = self.ci64(0x3ff0_0000_0000_0000);
        let mbits = self.bin(BinaryOp::Or, mb, one_bits);
        let m = self.node(Op::Bitcast, DType::F64, vec![mbits]);
        let sqrt2 = self.c64(std::f64::consts::SQRT_2);
        let big_m = self.bin(BinaryOp::Ge, m, sqrt2);
        let half = self.c64(0.5);
        let mh = self.bin(BinaryOp::Mul, m, half);
        let m = self.sel(big_m, mh, m);
        let one_i = self.ci64(1);
        let e1 = self.bin(BinaryOp::Add, e0, one_i);
        let e = self.sel(big_m, e1, e0);
        let ef = self.cast(e, DType::F64);
        let one = self.c64(1.0);
        let f = self.bin(BinaryOp::Sub, m, one);
        let two = self.c64(2.0);
        let den = self.bin(BinaryOp::Add, two, f);
        let s = self.bin(BinaryOp::Div, f, den);
        let z = self.bin(BinaryOp::Mul, s, s);
        let coefs: Vec<f64> = (0..12).map(|k| if k == 0 { 0.0 } else { 2.0 / (2.0 * k as f64 + 1.0) }).collect();
        let r = self.poly64(z, &coefs);
        let hf = self.bin(BinaryOp::Mul, half, f);
        let hfsq = self.bin(BinaryOp::Mul, hf, f);
        let t = self.bin(BinaryOp::Add, hfsq, r);
        let st = self.bin(BinaryOp::Mul, s, t);
        let inner = self.bin(BinaryOp::Sub, hfsq, st);
        let log1pf = self.bin(BinaryOp::Sub, f, inner);
        let l2e = self.c64(std::f64::consts::LOG2_E);
        self.fma64(log1pf, l2e, ef)
    }

    /// 2^w in f64 for w clamped to [-1000, 1000] (enough for any f32 result), to about 1e-15.
    fn exp2_64(&mut self, w: NodeId) -> NodeId {
        let lo = self.c64(-1000.0);
        let hi = self.c64(1000.0);
        let w = self.bin(BinaryOp::Max, w, lo);
        let w = self.bin(BinaryOp::Min, w, hi);
        let n = self.un(UnaryOp::Round, w);
        let r = self.bin(BinaryOp::Sub, w, n);
        let ln2 = std::f64::consts::LN_2;
        let coefs: Vec<f64> = (0..14).map(|k| ln2.powi(k) / (1..=k).map(f64::from).product::<f64>()).collect();
        let p = self.poly64(r, &coefs);
        let ni = self.cast(n, DType::I64);
        let bias = self.ci64(1023);
        let e = self.bin(BinaryOp::Add, ni, bias);
        let sh = self.ci64(52);
        let bits = self.bin(BinaryOp::Shl, e, sh);
        let scale = self.node(Op::Bitcast, DType::F64, vec![bits]);
        self.bin(BinaryOp::Mul, p, scale)
    }

    /// x^y for f32: 2^(y * log2 |x|) computed in f64 and rounded once, with the special cases of
    /// C's `pow` (docs/numerics.md).
    fn pow(&mut self, x: NodeId, y: NodeId) -> NodeId {
        let ax = self.un(UnaryOp::Abs, x);
        let ax64 = self.cast(ax, DType::F64);
        let y64 = self.cast(y, DType::F64);
        let l = self.log2_64(ax64);
        // log2 of 0 and inf: -inf and inf, so that w goes to the right infinity.
        let zero = self.c(0.0);
        let inf = self.c(f64::INFINITY);
        let is0 = self.bin(BinaryOp::Eq, ax, zero);
        let isinf = self.bin(BinaryOp::Eq, ax, inf);
        let ninf64 = self.c64(f64::NEG_INFINITY);
        let inf64 = self.c64(f64::INFINITY);
        let l = self.sel(is0, ninf64, l);
        let l = self.sel(isinf, inf64, l);
        let w = self.bin(BinaryOp::Mul, y64, l);
        let r64 = self.exp2_64(w);
        let r = self.cast(r64, DType::F32);
        // The sign for a negative base and an odd integer exponent; NaN for a non-integer one.
        let fy = self.un(UnaryOp::Floor, y);
        let y_int = self.bin(BinaryOp::Eq, fy, y);
        let half = self.c(0.5);
        let hy = self.bin(BinaryOp::Mul, y, half);
        let fhy = self.un(UnaryOp::Floor, hy);
        let y_even = self.bin(BinaryOp::Eq, fhy, hy);
        let not_even = self.un(UnaryOp::Not, y_even);
        let y_odd = self.bin(BinaryOp::And, y_int, not_even);
        let x_neg = self.bin(BinaryOp::Lt, x, zero);
        // -0 counts as negative for the sign of the result.
        let xb = self.bits(x);
        let z_i = self.ci(0);
        let x_signbit = self.bin(BinaryOp::Lt, xb, z_i);
        let neg_result = self.bin(BinaryOp::And, x_signbit, y_odd);
        let nr = self.un(UnaryOp::Neg, r);
        let r = self.sel(neg_result, nr, r);
        let not_int = self.un(UnaryOp::Not, y_int);
        let yinf_abs = self.un(UnaryOp::Abs, y);
        let y_is_inf = self.bin(BinaryOp::Eq, yinf_abs, inf);
        let not_yinf = self.un(UnaryOp::Not, y_is_inf);
        let bad = self.bin(BinaryOp::And, x_neg, not_int);
        let bad = self.bin(BinaryOp::And, bad, not_yinf);
        let nan = self.c(f64::NAN);
        let xinf = self.bin(BinaryOp::Eq, ax, inf);
        let not_xinf = self.un(UnaryOp::Not, xinf);
        let bad = self.bin(BinaryOp::And, bad, not_xinf);
        let r = self.sel(bad, nan, r);
        // NaN in, NaN out (the exponent-bit arithmetic above does not propagate it)...
        let xnan = self.bin(BinaryOp::Ne, x, x);
        let ynan = self.bin(BinaryOp::Ne, y, y);
        let anynan = self.bin(BinaryOp::Or, xnan, ynan);
        let r = self.sel(anynan, nan, r);
        // ...except that |x| == 1 with y = +-inf, x == 1, and y == 0 all give 1 (even for NaN).
        let one = self.c(1.0);
        let ax1 = self.bin(BinaryOp::Eq, ax, one);
        let ax1_yinf = self.bin(BinaryOp::And, ax1, y_is_inf);
        let r = self.sel(ax1_yinf, one, r);
        let x1 = self.bin(BinaryOp::Eq, x, one);
        let r = self.sel(x1, one, r);
        let y0 = self.bin(BinaryOp::Eq, y, zero);
        self.sel(y0, one, r)
    }

    /// tanh: an odd Taylor polynomial for |x| < 0.625; 1 - 2 / (e^(2|x|) + 1) with the sign of x
    /// up to |x| = 9; +-1 beyond.
    fn tanh(&mut self, x: NodeId) -> NodeId {
        // Taylor coefficients of tanh(x)/x in powers of x^2.
        let coefs = [
            1.0,
            -1.0 / 3.0,
            2.0 / 15.0,
            -17.0 / 315.0,
            62.0 / 2835.0,
            -1382.0 / 155925.0,
            21844.0 / 6081075.0,
            -929569.0 / 638512875.0,
            6404582.0 / 10854718875.0,
            -443861162.0 / 1856156927625.0,
            18888466084.0 / 194896477400625.0,
        ];
        let z = self.bin(BinaryOp::Mul, x, x);
        let p = self.poly(z, &coefs[1..]);
        let xz = self.bin(BinaryOp::Mul, x, z);
        let small = self.fma(xz, p, x);
        let ax = self.un(UnaryOp::Abs, x);
        let two = self.c(2.0);
        let tx = self.bin(BinaryOp::Mul, ax, two);
        let e = self.exp(tx);
        let one = self.c(1.0);
        let den = self.bin(BinaryOp::Add, e, one);
        let q = self.bin(BinaryOp::Div, two, den);
        let big = self.bin(BinaryOp::Sub, one, q);
        let zero = self.c(0.0);
        let neg = self.bin(BinaryOp::Lt, x, zero);
        let nbig = self.un(UnaryOp::Neg, big);
        let big = self.sel(neg, nbig, big);
        let lim = self.c(0.625);
        let is_small = self.bin(BinaryOp::Lt, ax, lim);
        let y = self.sel(is_small, small, big);
        let nine = self.c(9.0);
        let sat = self.bin(BinaryOp::Ge, ax, nine);
        let mone = self.c(-1.0);
        let s = self.sel(neg, mone, one);
        self.sel(sat, s, y)
    }
}
