//! The shared decomposition of transcendental functions into primitive operations (add, sub,
//! mul, div, fma, sqrt, round, compares, select, integer and bit operations), so that every
//! backend computes exactly the same function. docs/numerics.md gives the algorithms and the
//! measured accuracy; `scripts/ulp` measures it.
//!
//! f32 and f64 are decomposed here (pow included), each with its own constants and polynomial
//! degrees; f16 and bf16 are computed in f32 and rounded once.

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::*;
use std::collections::HashMap;

/// The unary operations this pass decomposes (for every float dtype).
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

/// The error of an f32 result `got` against the exact (or f64) value `want`, in units of the f32
/// ulp at `want` (the measure of docs/numerics.md; a NaN matches a NaN, an infinity itself).
pub fn ulp_error_f32(got: f32, want: f64) -> f64 {
    if want.is_nan() {
        return if got.is_nan() { 0.0 } else { f64::INFINITY };
    }
    let w32 = want as f32;
    if w32.is_infinite() || got.is_infinite() {
        return if got == w32 { 0.0 } else { f64::INFINITY };
    }
    let a = want.abs().max(f64::from(f32::MIN_POSITIVE));
    let ulp = 2f64.powi(a.log2().floor() as i32 - 23);
    (f64::from(got) - want).abs() / ulp
}

/// Replaces decomposable transcendentals by primitive operations.
pub fn decompose(g: &Graph) -> Graph {
    let mut out = Graph { inputs: g.inputs.clone(), dims: g.dims.clone(), ..Graph::default() };
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    for id in g.topo() {
        let n = g.node(id);
        let args: Vec<NodeId> = n.args.iter().map(|a| map[a]).collect();
        let new = match &n.op {
            Op::Unary(u) if decomposed(*u) && n.dtype.is_float() => {
                let d = if n.dtype == DType::F64 { DType::F64 } else { DType::F32 };
                let mut b = B { g: &mut out, shape: n.shape.clone(), loc: n.loc, d };
                let x = if n.dtype == d { args[0] } else { b.cast(args[0], d) };
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
                if n.dtype == d { y } else { b.cast(y, n.dtype) }
            }
            Op::Binary(BinaryOp::Pow) if n.dtype.is_float() => {
                let d = if n.dtype == DType::F64 { DType::F64 } else { DType::F32 };
                let mut b = B { g: &mut out, shape: n.shape.clone(), loc: n.loc, d };
                let (x, y) = if n.dtype == d { (args[0], args[1]) } else { (b.cast(args[0], d), b.cast(args[1], d)) };
                let r = if d == DType::F64 { b.pow64(x, y) } else { b.pow(x, y) };
                if n.dtype == d { r } else { b.cast(r, n.dtype) }
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

/// Builds elementwise code of one shape in one float precision `d` (f32 or f64).
struct B<'g> {
    g: &'g mut Graph,
    shape: Vec<Dim>,
    loc: Loc,
    d: DType,
}

/// The constants and degrees of one precision.
struct Prec {
    /// The integer dtype of the same width, mantissa bits, exponent bias, exponent mask.
    int: DType,
    mant: i128,
    bias: i128,
    emask: i128,
    /// log2(e), ln2 and 2/pi rounded to the precision, with the low parts where used.
    log2e: (f64, f64),
    ln2: (f64, f64),
    two_over_pi: f64,
    pio2: [f64; 3],
    sqrt2: f64,
    /// Taylor degree of e^r (|r| <= ln2/2), terms of the log series, sin and cos terms.
    exp_degree: i32,
    log_terms: usize,
    trig_terms: i32,
    /// exp overflows above and underflows below; exp2 likewise.
    exp_limits: (f64, f64),
    exp2_limits: (f64, f64),
    /// tanh: the polynomial below `tanh_small`, Taylor terms, saturation at `tanh_one`.
    tanh_small: f64,
    tanh_terms: usize,
    tanh_one: f64,
}

const F32P: Prec = Prec {
    int: DType::I32,
    mant: 23,
    bias: 127,
    emask: 0xff,
    log2e: (1.4426950216293335, 1.925963033500011e-08),
    ln2: (0.6931471824645996, -1.9046542121259336e-09),
    two_over_pi: 0.6366197466850281,
    pio2: [1.5707963705062866, -4.371138828673793e-08, -1.7151245100058819e-15],
    sqrt2: 1.4142135381698608,
    exp_degree: 7,
    log_terms: 7,
    trig_terms: 5,
    exp_limits: (88.72283935546875, -103.97207708),
    exp2_limits: (128.0, -150.0),
    tanh_small: 0.625,
    tanh_terms: 11,
    tanh_one: 9.0,
};

const F64P: Prec = Prec {
    int: DType::I64,
    mant: 52,
    bias: 1023,
    emask: 0x7ff,
    log2e: (std::f64::consts::LOG2_E, 2.0355273740931033e-17),
    ln2: (std::f64::consts::LN_2, 2.3190468138462996e-17),
    two_over_pi: std::f64::consts::FRAC_2_PI,
    pio2: [std::f64::consts::FRAC_PI_2, 6.123233995736766e-17, -1.4973849048591698e-33],
    sqrt2: std::f64::consts::SQRT_2,
    exp_degree: 13,
    log_terms: 12,
    trig_terms: 8,
    exp_limits: (709.782712893384, -745.1332191019412),
    exp2_limits: (1024.0, -1075.0),
    tanh_small: 0.55,
    tanh_terms: 20,
    tanh_one: 19.5,
};

/// Taylor coefficients of tanh(x)/x in powers of x^2 (from the Bernoulli numbers).
const TANH: [f64; 20] = [
    1.0,
    -0.3333333333333333,
    0.13333333333333333,
    -0.05396825396825397,
    0.021869488536155203,
    -0.008863235529902197,
    0.003592128036572481,
    -0.0014558343870513183,
    0.000590027440945586,
    -0.00023912911424355248,
    9.691537956929451e-05,
    -3.927832388331683e-05,
    1.5918905069328964e-05,
    -6.451689215655431e-06,
    2.6147711512907546e-06,
    -1.0597268320104654e-06,
    4.294911078273806e-07,
    -1.7406618963571648e-07,
    7.054636946400968e-08,
    -2.859136662305254e-08,
];

/// Taylor coefficients of erf(x)/x in powers of x^2: 2/sqrt(pi) (-1)^n / (n! (2n + 1)).
const ERF_TAYLOR: [f64; 20] = [
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
    9.422759064650411e-11,
    -6.7113668551641105e-12,
    4.4632242632864775e-13,
    -2.7835162072109215e-14,
    1.6342614095367152e-15,
    -9.063970842808673e-17,
    4.763348040515068e-18,
    -2.3784598852774293e-19,
];

/// f64 erfc(x) * e^(x^2) on three intervals: Chebyshev coefficients of the interpolants at 44
/// Chebyshev nodes (computed with 70-digit arithmetic), truncated where they fall below 1e-19
/// of the function.
const ERFC_CHEB: [(f64, f64, &[f64]); 3] = [
    (
        0.75,
        2.0,
        &[
            0.36187482333873555,
            -0.12303893675474277,
            0.018930087199575823,
            -0.0026868535733607438,
            0.00035638775573375243,
            -4.458831501664329e-05,
            5.298825434531266e-06,
            -6.014156181022185e-07,
            6.548103137122657e-08,
            -6.863889955602926e-09,
            6.947857207171413e-10,
            -6.80880857942812e-11,
            6.474243350892908e-12,
            -5.98463257515318e-13,
            5.387007651113075e-14,
            -4.728966781818148e-15,
            4.053873476569091e-16,
            -3.397635239934667e-17,
            2.7871016340267776e-18,
            -2.239864783313848e-19,
        ],
    ),
    (
        2.0,
        4.0,
        &[
            0.1874295690262241,
            -0.05794652883669097,
            0.008595247387396534,
            -0.0012284613640242594,
            0.00016974366686180488,
            -2.2738329337044562e-05,
            2.959844378804878e-06,
            -3.7513575581379714e-07,
            4.6372828761738244e-08,
            -5.599455392564088e-09,
            6.613160896679916e-10,
            -7.648271522199816e-11,
            8.670904325876594e-12,
            -9.645456274382108e-13,
            1.0536827959360625e-13,
            -1.1312630906760667e-14,
            1.1945180669174577e-15,
            -1.241310752580407e-16,
            1.270246323185436e-17,
            -1.280725873663855e-18,
            1.2729426443953689e-19,
        ],
    ),
    (
        4.0,
        6.0,
        &[
            0.11277819743166245,
            -0.021913497155272348,
            0.0020915397845687493,
            -0.00019628624819122983,
            1.8126654238718202e-05,
            -1.6483628246572167e-06,
            1.4769699327777977e-07,
            -1.3047490253442588e-08,
            1.136975347104367e-09,
            -9.778180226640498e-11,
            8.303212348062975e-12,
            -6.964650842590714e-13,
            5.772832164827166e-14,
            -4.730148558369874e-15,
            3.832714974411983e-16,
            -3.072023314998772e-17,
            2.4364677192447835e-18,
            -1.9126665070732086e-19,
        ],
    ),
];

impl B<'_> {
    fn p(&self) -> &'static Prec {
        if self.d == DType::F64 { &F64P } else { &F32P }
    }
    fn node(&mut self, op: Op, d: DType, args: Vec<NodeId>) -> NodeId {
        self.g.add(op, d, self.shape.clone(), args, self.loc)
    }
    /// A float constant in the working precision.
    fn c(&mut self, v: f64) -> NodeId {
        self.node(Op::Const(Scalar::Float(v)), self.d, vec![])
    }
    /// An integer constant of the working precision's width.
    fn ci(&mut self, v: i128) -> NodeId {
        let t = self.p().int;
        self.node(Op::Const(Scalar::Int(v)), t, vec![])
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
        let d = self.g.node(a).dtype;
        self.node(Op::Fma, d, vec![a, b, c])
    }
    fn sel(&mut self, c: NodeId, a: NodeId, b: NodeId) -> NodeId {
        let d = self.g.node(a).dtype;
        self.node(Op::Where, d, vec![c, a, b])
    }
    fn cast(&mut self, a: NodeId, d: DType) -> NodeId {
        self.node(Op::Cast, d, vec![a])
    }
    fn bits(&mut self, a: NodeId) -> NodeId {
        let t = self.p().int;
        self.node(Op::Bitcast, t, vec![a])
    }
    fn float(&mut self, a: NodeId) -> NodeId {
        let d = self.d;
        self.node(Op::Bitcast, d, vec![a])
    }
    /// Runs `f` in another precision.
    fn with<T>(&mut self, d: DType, f: impl FnOnce(&mut Self) -> T) -> T {
        let old = std::mem::replace(&mut self.d, d);
        let r = f(self);
        self.d = old;
        r
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
    /// A Chebyshev series sum(c[k] T_k(t)) by Clenshaw's recurrence.
    fn chebyshev(&mut self, t: NodeId, coefs: &[f64]) -> NodeId {
        let two = self.c(2.0);
        let t2 = self.bin(BinaryOp::Mul, t, two);
        let (mut b1, mut b2) = (self.c(0.0), self.c(0.0));
        for &ck in coefs[1..].iter().rev() {
            let c = self.c(ck);
            let cb = self.bin(BinaryOp::Sub, c, b2);
            let b0 = self.fma(t2, b1, cb);
            b2 = b1;
            b1 = b0;
        }
        // c0 + t b1 - b2
        let c0 = self.c(coefs[0]);
        let cb = self.bin(BinaryOp::Sub, c0, b2);
        self.fma(t, b1, cb)
    }
    /// Rounds `t` to the nearest integer, ties to even, by adding S = 1.5 * 2^mant: returns
    /// (m = t + S, n = m - S). For |t| < 2^(mant - 1) the addition's own rounding is the
    /// rounding and exact, n equals round(t), and m's bits are S's plus n as an integer (what
    /// [`B::scale`] reads), with no float-to-integer conversion. Larger |t| give some other
    /// value; exp and exp2 replace those results by their limits.
    fn round_magic(&mut self, t: NodeId) -> (NodeId, NodeId) {
        let s = self.c(1.5 * 2f64.powi(self.p().mant as i32));
        let m = self.bin(BinaryOp::Add, t, s);
        let n = self.bin(BinaryOp::Sub, m, s);
        (m, n)
    }
    /// p * 2^n, with `m` from [`B::round_magic`] for an integer n up to twice the exponent
    /// range, rounding once (subnormal results included): n = bits(m) - bits(S) as an integer,
    /// n1 = n >> 1 (floor(n / 2)), n2 = n - n1, each a normal power of two built from its
    /// exponent bits, and p * 2^n1 * 2^n2.
    fn scale(&mut self, p: NodeId, m: NodeId) -> NodeId {
        let (bias, mant) = (self.p().bias, self.p().mant);
        let s_bits = ((bias + mant) << mant) | (1 << (mant - 1));
        let mb = self.bits(m);
        let sb = self.ci(s_bits);
        let n = self.bin(BinaryOp::Sub, mb, sb);
        let one = self.ci(1);
        let n1 = self.bin(BinaryOp::Shr, n, one);
        let n2 = self.bin(BinaryOp::Sub, n, n1);
        let b = self.ci(bias);
        let sh = self.ci(mant);
        let [s1, s2] = [n1, n2].map(|k| {
            let e = self.bin(BinaryOp::Add, k, b);
            let e = self.bin(BinaryOp::Shl, e, sh);
            self.float(e)
        });
        let t = self.bin(BinaryOp::Mul, p, s1);
        self.bin(BinaryOp::Mul, t, s2)
    }

    /// Taylor coefficients of e^(r c): c^k / k!.
    fn exp_coefs(&self, c: f64) -> Vec<f64> {
        (0..=self.p().exp_degree).map(|k| c.powi(k) / (1..=k).map(f64::from).product::<f64>()).collect()
    }

    /// exp(x) = 2^n * e^r with n = round(x / ln2), r = x - n ln2 (Cody-Waite, two parts, fma).
    fn exp(&mut self, x: NodeId) -> NodeId {
        let p = self.p();
        let log2e = self.c(p.log2e.0);
        let t = self.bin(BinaryOp::Mul, x, log2e);
        let (m, n) = self.round_magic(t);
        let y = self.exp_reduced(x, m, n);
        self.exp_limits(x, y, p.exp_limits.0, p.exp_limits.1)
    }

    /// e^(x - n ln2) * 2^n, with (m, n) from [`B::round_magic`].
    fn exp_reduced(&mut self, x: NodeId, m: NodeId, n: NodeId) -> NodeId {
        let p = self.p();
        // fma(n, -c, x) rounds n * -c + x once: the same value as fma(-n, c, x).
        let hi = self.c(-p.ln2.0);
        let lo = self.c(-p.ln2.1);
        let r1 = self.fma(n, hi, x);
        let r = self.fma(n, lo, r1);
        let coefs = self.exp_coefs(1.0);
        let e = self.poly(r, &coefs);
        self.scale(e, m)
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
        let lim = self.p().exp2_limits;
        let (m, n) = self.round_magic(x);
        let r = self.bin(BinaryOp::Sub, x, n);
        let coefs = self.exp_coefs(std::f64::consts::LN_2);
        let e = self.poly(r, &coefs);
        let y = self.scale(e, m);
        self.exp_limits(x, y, lim.0, lim.1)
    }

    /// The pieces of log: x = 2^e * m with m in [sqrt(1/2), sqrt(2)); returns (e as a float,
    /// f = m - 1, s = f / (2 + f)), for positive finite x (subnormals included).
    fn log_parts(&mut self, x: NodeId) -> (NodeId, NodeId, NodeId) {
        let p = self.p();
        let d = self.d;
        let (tiny, big) = if d == DType::F64 {
            (f64::MIN_POSITIVE, 2f64.powi(52))
        } else {
            (f64::from(f32::MIN_POSITIVE), 2f64.powi(23))
        };
        let tiny = self.c(tiny);
        let is_sub = self.bin(BinaryOp::Lt, x, tiny);
        let big = self.c(big);
        let xs = self.bin(BinaryOp::Mul, x, big);
        let xn = self.sel(is_sub, xs, x);
        let e_adj0 = self.ci(0);
        let e_adjm = self.ci(-p.mant);
        let e_adj = self.sel(is_sub, e_adjm, e_adj0);
        let b = self.bits(xn);
        let sh = self.ci(p.mant);
        let mask = self.ci(p.emask);
        let be = self.bin(BinaryOp::Shr, b, sh);
        let eb = self.bin(BinaryOp::And, be, mask);
        let bias = self.ci(p.bias);
        let e0 = self.bin(BinaryOp::Sub, eb, bias);
        let e0 = self.bin(BinaryOp::Add, e0, e_adj);
        let mant = self.ci((1i128 << p.mant) - 1);
        let mb = self.bin(BinaryOp::And, b, mant);
        let one_bits = self.ci(p.bias << p.mant);
        let mbits = self.bin(BinaryOp::Or, mb, one_bits);
        let m = self.float(mbits);
        // m in [1, 2): fold to [sqrt(1/2), sqrt(2)).
        let sqrt2 = self.c(p.sqrt2);
        let big_m = self.bin(BinaryOp::Ge, m, sqrt2);
        let half = self.c(0.5);
        let mh = self.bin(BinaryOp::Mul, m, half);
        let m = self.sel(big_m, mh, m);
        let one_i = self.ci(1);
        let e1 = self.bin(BinaryOp::Add, e0, one_i);
        let e = self.sel(big_m, e1, e0);
        let ef = self.cast(e, d);
        let one = self.c(1.0);
        let f = self.bin(BinaryOp::Sub, m, one);
        let two = self.c(2.0);
        let den = self.bin(BinaryOp::Add, two, f);
        let s = self.bin(BinaryOp::Div, f, den);
        (ef, f, s)
    }

    /// The series part of log(1 + f): s * (hfsq + R(s^2)), R(z) = 2z/3 + 2z^2/5 + ...
    fn log_tail(&mut self, s: NodeId) -> NodeId {
        let terms = self.p().log_terms;
        let z = self.bin(BinaryOp::Mul, s, s);
        let coefs: Vec<f64> = (0..terms).map(|k| if k == 0 { 0.0 } else { 2.0 / (2.0 * k as f64 + 1.0) }).collect();
        self.poly(z, &coefs)
    }

    /// log(x) (or log2(x)): log(1 + f) = f - (hfsq - s * (hfsq + R(s^2))), hfsq = f^2 / 2.
    fn log(&mut self, x: NodeId, base2: bool) -> NodeId {
        let p = self.p();
        let (ef, f, s) = self.log_parts(x);
        let r = self.log_tail(s);
        let half = self.c(0.5);
        let hf = self.bin(BinaryOp::Mul, half, f);
        let hfsq = self.bin(BinaryOp::Mul, hf, f);
        let t = self.bin(BinaryOp::Add, hfsq, r);
        let st = self.bin(BinaryOp::Mul, s, t);
        let inner = self.bin(BinaryOp::Sub, hfsq, st);
        let log1pf = self.bin(BinaryOp::Sub, f, inner);
        let y = if base2 {
            // log2(x) = e + log1p(f) * log2(e), with log2(e) in two parts.
            let l_hi = self.c(p.log2e.0);
            let l_lo = self.c(p.log2e.1);
            let a = self.bin(BinaryOp::Mul, log1pf, l_lo);
            let b2 = self.fma(log1pf, l_hi, a);
            self.bin(BinaryOp::Add, ef, b2)
        } else {
            let hi = self.c(p.ln2.0);
            let lo = self.c(p.ln2.1);
            let a = self.fma(ef, lo, log1pf);
            self.fma(ef, hi, a)
        };
        self.log_specials(x, y)
    }

    /// log(0) = -inf, log(x < 0) = NaN, log(inf) = inf, NaN stays NaN.
    fn log_specials(&mut self, x: NodeId, y: NodeId) -> NodeId {
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
        let p = self.p();
        let twoopi = self.c(p.two_over_pi);
        let t = self.bin(BinaryOp::Mul, x, twoopi);
        let k = self.un(UnaryOp::Round, t);
        let nk = self.un(UnaryOp::Neg, k);
        let mut r = x;
        for part in p.pio2 {
            let c = self.c(part);
            r = self.fma(nk, c, r);
        }
        let z = self.bin(BinaryOp::Mul, r, r);
        // sin r = r + r^3 * S(z); cos r = 1 - z/2 + z^2 * C(z).
        let fact = |n: i32| (1..=n).map(f64::from).product::<f64>();
        let sign = |j: i32| if j % 2 == 1 { -1.0 } else { 1.0 };
        let sin_c: Vec<f64> = (1..=p.trig_terms).map(|j| sign(j) / fact(2 * j + 1)).collect();
        let s_poly = self.poly(z, &sin_c);
        let r3 = self.bin(BinaryOp::Mul, z, r);
        let sin_r = self.fma(r3, s_poly, r);
        let cos_c: Vec<f64> = (2..=p.trig_terms + 1).map(|j| sign(j) / fact(2 * j)).collect();
        let c_poly = self.poly(z, &cos_c);
        let z2 = self.bin(BinaryOp::Mul, z, z);
        let half = self.c(-0.5);
        let one = self.c(1.0);
        let hz = self.fma(half, z, one);
        let cos_r = self.fma(z2, c_poly, hz);
        // Quadrant: q = k mod 4 (cos adds one quarter turn).
        let ki = self.cast(k, p.int);
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

    /// erf. f32: x * P(x^2) (Taylor, 12 terms) for |x| < 1; 1 - e^(-x^2) * Q(|x| - 2.45) for
    /// |x| < 3.9, Q a degree-13 Chebyshev fit of erfc(x) e^(x^2) (relative error 2.7e-10);
    /// +-1 beyond. f64: Taylor (20 terms) below 0.75; 1 - e^(-x^2) * F(|x|) below 6 with F a
    /// Chebyshev series of erfc(x) e^(x^2) on [0.75, 2], [2, 4] and [4, 6], and x^2 carried
    /// in two parts; +-1 beyond.
    fn erf(&mut self, x: NodeId) -> NodeId {
        let f64_ = self.d == DType::F64;
        let z = self.bin(BinaryOp::Mul, x, x);
        let p = self.poly(z, if f64_ { &ERF_TAYLOR } else { &ERF_TAYLOR[..12] });
        let small = self.bin(BinaryOp::Mul, x, p);
        let ax = self.un(UnaryOp::Abs, x);
        let (mid, lim, small_lim) = if f64_ {
            // F(|x|) on its interval.
            let mut f = self.c(0.0);
            for (a, b, coefs) in ERFC_CHEB {
                let ca = self.c(a);
                let cb = self.c(b);
                let mid = self.c((a + b) / 2.0);
                let half_w = self.c(2.0 / (b - a));
                let dx = self.bin(BinaryOp::Sub, ax, mid);
                let t = self.bin(BinaryOp::Mul, dx, half_w);
                let v = self.chebyshev(t, coefs);
                let ge = self.bin(BinaryOp::Ge, ax, ca);
                let lt = self.bin(BinaryOp::Lt, ax, cb);
                let inside = self.bin(BinaryOp::And, ge, lt);
                f = self.sel(inside, v, f);
            }
            // e^(-x^2) with x^2 = h + l exactly: e^(-h) (1 - l).
            let h = self.bin(BinaryOp::Mul, ax, ax);
            let nh = self.un(UnaryOp::Neg, h);
            let l = self.fma(ax, ax, nh);
            let e = self.exp(nh);
            let el = self.bin(BinaryOp::Mul, e, l);
            let e = self.bin(BinaryOp::Sub, e, el);
            let t = self.bin(BinaryOp::Mul, e, f);
            let one = self.c(1.0);
            (self.bin(BinaryOp::Sub, one, t), 6.0, 0.75)
        } else {
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
            let c = self.c(2.45);
            let y = self.bin(BinaryOp::Sub, ax, c);
            let q = self.poly(y, &Q);
            let nz = self.un(UnaryOp::Neg, z);
            let e = self.exp(nz);
            let t = self.bin(BinaryOp::Mul, e, q);
            let one = self.c(1.0);
            (self.bin(BinaryOp::Sub, one, t), 3.9, 1.0)
        };
        let one = self.c(1.0);
        let lim = self.c(lim);
        let is_mid = self.bin(BinaryOp::Lt, ax, lim);
        let v = self.sel(is_mid, mid, one);
        let zero = self.c(0.0);
        let neg = self.bin(BinaryOp::Lt, x, zero);
        let nv = self.un(UnaryOp::Neg, v);
        let v = self.sel(neg, nv, v);
        let sl = self.c(small_lim);
        let is_small = self.bin(BinaryOp::Lt, ax, sl);
        let r = self.sel(is_small, small, v);
        let isnan = self.bin(BinaryOp::Ne, x, x);
        self.sel(isnan, x, r)
    }

    /// log2 of a positive f64 (normal or subnormal) as a double-double (hi, lo), to about
    /// 2^-70 relative: log1p(f) = 2s + 2s^3/3 + ... with s = f / (2 + f) carried in two parts.
    fn log2_dd(&mut self, x: NodeId) -> (NodeId, NodeId) {
        let (ef, f, s_hi) = self.log_parts(x);
        // d = 2 + f exactly as d_hi + d_lo; s_lo = (f - s_hi (d_hi + d_lo)) / d_hi.
        let two = self.c(2.0);
        let d_hi = self.bin(BinaryOp::Add, two, f);
        let back = self.bin(BinaryOp::Sub, d_hi, two);
        let d_lo = self.bin(BinaryOp::Sub, f, back);
        let ns = self.un(UnaryOp::Neg, s_hi);
        let res = self.fma(ns, d_hi, f);
        let sdl = self.bin(BinaryOp::Mul, s_hi, d_lo);
        let num = self.bin(BinaryOp::Sub, res, sdl);
        let s_lo = self.bin(BinaryOp::Div, num, d_hi);
        // log1p(f) = A + B with A = 2 s_hi, B = 2 s_lo + s^3 R'(s^2) (R' the series after 2s).
        let two_c = self.c(2.0);
        let a = self.bin(BinaryOp::Mul, s_hi, two_c);
        let z = self.bin(BinaryOp::Mul, s_hi, s_hi);
        let terms = self.p().log_terms + 2;
        let coefs: Vec<f64> = (1..terms).map(|k| 2.0 / (2.0 * k as f64 + 1.0)).collect();
        let r = self.poly(z, &coefs);
        let sz = self.bin(BinaryOp::Mul, s_hi, z);
        let tail = self.bin(BinaryOp::Mul, sz, r);
        let b = self.fma(s_lo, two_c, tail);
        // (A + B) * (c_hi + c_lo) + e.
        let p = self.p();
        let c_hi = self.c(p.log2e.0);
        let c_lo = self.c(p.log2e.1);
        let ph = self.bin(BinaryOp::Mul, a, c_hi);
        let nph = self.un(UnaryOp::Neg, ph);
        let pl = self.fma(a, c_hi, nph);
        let acl = self.bin(BinaryOp::Mul, a, c_lo);
        let bch = self.bin(BinaryOp::Mul, b, c_hi);
        let lo = self.bin(BinaryOp::Add, acl, bch);
        let lo = self.bin(BinaryOp::Add, lo, pl);
        // Two-sum of e and ph.
        let sum = self.bin(BinaryOp::Add, ef, ph);
        let bb = self.bin(BinaryOp::Sub, sum, ef);
        let t1 = self.bin(BinaryOp::Sub, sum, bb);
        let t2 = self.bin(BinaryOp::Sub, ef, t1);
        let t3 = self.bin(BinaryOp::Sub, ph, bb);
        let err = self.bin(BinaryOp::Add, t2, t3);
        let lo = self.bin(BinaryOp::Add, lo, err);
        // Renormalise.
        let hi = self.bin(BinaryOp::Add, sum, lo);
        let hd = self.bin(BinaryOp::Sub, hi, sum);
        let lo = self.bin(BinaryOp::Sub, lo, hd);
        (hi, lo)
    }

    /// 2^(w_hi + w_lo) in f64, w_lo small: n = round(w_hi), r = (w_hi - n) + w_lo.
    fn exp2_dd(&mut self, w_hi: NodeId, w_lo: NodeId) -> NodeId {
        let lim = self.p().exp2_limits;
        let (m, n) = self.round_magic(w_hi);
        let r0 = self.bin(BinaryOp::Sub, w_hi, n);
        let r = self.bin(BinaryOp::Add, r0, w_lo);
        let coefs = self.exp_coefs(std::f64::consts::LN_2);
        let e = self.poly(r, &coefs);
        let y = self.scale(e, m);
        self.exp_limits(w_hi, y, lim.0, lim.1)
    }

    /// x^y for f32: 2^(y * log2 |x|) computed in f64 and rounded once, with the special cases of
    /// C's `pow` (docs/numerics.md).
    fn pow(&mut self, x: NodeId, y: NodeId) -> NodeId {
        let ax = self.un(UnaryOp::Abs, x);
        let r = self.with(DType::F64, |b| {
            let ax64 = b.cast(ax, DType::F64);
            let y64 = b.cast(y, DType::F64);
            let (l, _) = b.log2_dd(ax64);
            let w = b.bin(BinaryOp::Mul, y64, l);
            // Clamped so that 2^w stays finite in f64 for every f32 result.
            let lo = b.c(-1000.0);
            let hi = b.c(1000.0);
            let w = b.bin(BinaryOp::Max, w, lo);
            let w = b.bin(BinaryOp::Min, w, hi);
            let z = b.c(0.0);
            b.exp2_dd(w, z)
        });
        let r = self.cast(r, DType::F32);
        self.pow_specials(x, y, ax, r)
    }

    /// x^y for f64: 2^(y * log2 |x|) with log2 and the product carried in two parts.
    fn pow64(&mut self, x: NodeId, y: NodeId) -> NodeId {
        let ax = self.un(UnaryOp::Abs, x);
        let (l_hi, l_lo) = self.log2_dd(ax);
        let w_hi = self.bin(BinaryOp::Mul, y, l_hi);
        let nw = self.un(UnaryOp::Neg, w_hi);
        let w_err = self.fma(y, l_hi, nw);
        let yl = self.bin(BinaryOp::Mul, y, l_lo);
        let w_lo = self.bin(BinaryOp::Add, w_err, yl);
        // Keep w_hi finite and moderate so that the reduction stays exact; the limits decide.
        let lo = self.c(-2000.0);
        let hi = self.c(2000.0);
        let w_c = self.bin(BinaryOp::Max, w_hi, lo);
        let w_c = self.bin(BinaryOp::Min, w_c, hi);
        let big = self.bin(BinaryOp::Ne, w_c, w_hi);
        let zero = self.c(0.0);
        let w_lo = self.sel(big, zero, w_lo);
        let r = self.exp2_dd(w_c, w_lo);
        self.pow_specials(x, y, ax, r)
    }

    /// The special cases of C's `pow` around a computed |x|^y.
    fn pow_specials(&mut self, x: NodeId, y: NodeId, ax: NodeId, r: NodeId) -> NodeId {
        let zero = self.c(0.0);
        let inf = self.c(f64::INFINITY);
        // |x| = 0 or inf: |x|^y is 0 or inf by the sign of y.
        let is0 = self.bin(BinaryOp::Eq, ax, zero);
        let isinf = self.bin(BinaryOp::Eq, ax, inf);
        let ypos = self.bin(BinaryOp::Gt, y, zero);
        let yneg = self.bin(BinaryOp::Lt, y, zero);
        let zero_inf = self.sel(ypos, zero, inf);
        let inf_zero = self.sel(yneg, zero, inf);
        let r = self.sel(is0, zero_inf, r);
        let r = self.sel(isinf, inf_zero, r);
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

    /// tanh: an odd Taylor polynomial for small |x|; 1 - 2 / (e^(2|x|) + 1) with the sign of x
    /// up to saturation; +-1 beyond.
    fn tanh(&mut self, x: NodeId) -> NodeId {
        let p = self.p();
        let z = self.bin(BinaryOp::Mul, x, x);
        let poly = self.poly(z, &TANH[1..p.tanh_terms]);
        let xz = self.bin(BinaryOp::Mul, x, z);
        let small = self.fma(xz, poly, x);
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
        let lim = self.c(p.tanh_small);
        let is_small = self.bin(BinaryOp::Lt, ax, lim);
        let y = self.sel(is_small, small, big);
        let sat_at = self.c(p.tanh_one);
        let sat = self.bin(BinaryOp::Ge, ax, sat_at);
        let mone = self.c(-1.0);
        let s = self.sel(neg, mone, one);
        self.sel(sat, s, y)
    }
}
