//! The translation of one device kernel into a PTX `.entry` (see the module documentation).
//!
//! Registers: every kernel-IR register has a PTX register of its class: f32, f16 and bf16 in
//! `.f32` (`%f{r}`), f64 in `.f64` (`%fd{r}`), i64 in `.b64` (`%rd{r}`), the narrower integers
//! and bool in `.b32` (`%r{r}`), kept sign- or zero-extended (bool is 0 or 1). Range variables
//! are `.b64` (`%i{var}`). Temporaries are numbered `%t{n}` and predicates `%p{n}`.

use super::{Launch, PtxKernel};
use crate::common::Unsupported;
use crate::common::{decomposed, legalized, unsupported};
use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use tk_abi::launch::{collect_checks, symbolic_dims};
use tk_abi::launch::{has_local, parallel_chain};
use tk_ir::dims::{Atom, Dim};
use tk_ir::dtype::DType;
use tk_ir::graph::{BinaryOp, IExpr, Op, ReduceOp, Scalar, UnaryOp};
use tk_ir::kernel::reg_dtypes;
use tk_ir::kernel::{Inst, Kernel, RangeKind};

/// Register classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cls {
    F32,
    F64,
    B64,
    B32,
    Pred,
    B16,
}

impl Cls {
    fn decl(self) -> &'static str {
        match self {
            Cls::F32 => ".f32",
            Cls::F64 => ".f64",
            Cls::B64 => ".b64",
            Cls::B32 => ".b32",
            Cls::Pred => ".pred",
            Cls::B16 => ".b16",
        }
    }
}

fn cls(d: DType) -> Cls {
    match d {
        DType::F32 | DType::F16 | DType::Bf16 => Cls::F32,
        DType::F64 => Cls::F64,
        DType::I64 => Cls::B64,
        _ => Cls::B32,
    }
}

fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::Bf16)
}

/// The PTX type suffix of arithmetic on a dtype's register.
fn ty(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::F16 | DType::Bf16 => "f32",
        DType::F64 => "f64",
        DType::I64 => "s64",
        DType::I8 | DType::I16 | DType::I32 => "s32",
        _ => "u32",
    }
}

fn f32_lit(v: f32) -> String {
    format!("0f{:08X}", v.to_bits())
}

fn f64_lit(v: f64) -> String {
    format!("0d{:016X}", v.to_bits())
}

struct Acc {
    op: ReduceOp,
    src: DType,
    vd: DType,
    value: String,
    count: String,
    index: String,
}

/// How the kernel's threads are organised (see [`Launch`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Elements,
    Blocks,
}

struct Em {
    out: String,
    decls: Vec<(String, Cls)>,
    declared: HashSet<String>,
    ntmp: usize,
    nlabel: usize,
    dtypes: Vec<Option<DType>>,
    dims: HashMap<Dim, String>,
    syms: HashMap<String, String>,
    bufs: Vec<String>,
    buf_dtypes: Vec<DType>,
    accs: HashMap<usize, Acc>,
    locals: HashMap<usize, (String, DType)>,
    shared: Vec<(String, u64)>,
    check_ids: HashMap<*const Inst, usize>,
    err: String,
    mode: Mode,
    /// Inside a local range (each thread runs its own iteration).
    in_local: bool,
    /// The source of the next global load or store (a `// @loc FILE LO HI` line before it tells
    /// the simulator).
    loc: Option<tk_ir::graph::Loc>,
    /// `%tid.x == 0` in block mode.
    tid0: String,
    tid: String,
    done: String,
}

impl Em {
    fn line(&mut self, s: impl AsRef<str>) {
        self.out.push('\t');
        self.out.push_str(s.as_ref());
        self.out.push_str(";\n");
    }
    fn label(&mut self, l: &str) {
        let _ = writeln!(self.out, "{l}:");
    }
    fn new_label(&mut self) -> String {
        self.nlabel += 1;
        format!("$L{}", self.nlabel)
    }
    fn declare(&mut self, name: &str, c: Cls) {
        if self.declared.insert(name.to_string()) {
            self.decls.push((name.to_string(), c));
        }
    }
    fn tmp(&mut self, c: Cls) -> String {
        self.ntmp += 1;
        let n = if c == Cls::Pred { format!("%p{}", self.ntmp) } else { format!("%t{}", self.ntmp) };
        self.declare(&n, c);
        n
    }
    fn dtype(&self, r: usize) -> DType {
        self.dtypes.get(r).copied().flatten().unwrap_or(DType::I64)
    }
    fn reg(&mut self, r: usize) -> String {
        let d = self.dtype(r);
        let c = cls(d);
        let n = match c {
            Cls::F32 => format!("%f{r}"),
            Cls::F64 => format!("%fd{r}"),
            Cls::B64 => format!("%rd{r}"),
            _ => format!("%r{r}"),
        };
        self.declare(&n, c);
        n
    }
    fn var(&mut self, v: usize) -> String {
        let n = format!("%i{v}");
        self.declare(&n, Cls::B64);
        n
    }
    fn i64c(&mut self, v: i64) -> String {
        let t = self.tmp(Cls::B64);
        self.line(format!("mov.b64 {t}, {v}"));
        t
    }
    fn dim(&mut self, d: &Dim) -> String {
        match d.as_const() {
            Some(c) => self.i64c(c),
            None => match self.dims.get(d) {
                Some(v) => v.clone(),
                None => self.i64c(0),
            },
        }
    }
    /// A predicate that holds where the bool register `r` is true.
    fn pred_of(&mut self, r: usize) -> String {
        let d = self.dtype(r);
        let v = self.reg(r);
        let p = self.tmp(Cls::Pred);
        match cls(d) {
            Cls::F32 => self.line(format!("setp.neu.f32 {p}, {v}, {}", f32_lit(0.0))),
            Cls::F64 => self.line(format!("setp.neu.f64 {p}, {v}, {}", f64_lit(0.0))),
            Cls::B64 => self.line(format!("setp.ne.s64 {p}, {v}, 0")),
            _ => self.line(format!("setp.ne.u32 {p}, {v}, 0")),
        }
        p
    }
    /// A 0/1 `.b32` from a predicate.
    fn bool_of(&mut self, p: &str) -> String {
        let t = self.tmp(Cls::B32);
        self.line(format!("selp.u32 {t}, 1, 0, {p}"));
        t
    }

    /// Euclidean division and remainder of i64 values (x / 0 = 0, x % 0 = 0, x / -1 = -x), as
    /// the interpreters compute index expressions.
    fn euclid(&mut self, a: &str, b: &str, rem: bool) -> String {
        let (q, r, b0, m1) = self.safe_divrem(a, b, "s64", Cls::B64);
        let neg = self.tmp(Cls::Pred);
        self.line(format!("setp.lt.s64 {neg}, {r}, 0"));
        let bpos = self.tmp(Cls::Pred);
        self.line(format!("setp.gt.s64 {bpos}, {b}, 0"));
        let out = self.tmp(Cls::B64);
        if rem {
            let babs = self.tmp(Cls::B64);
            self.line(format!("abs.s64 {babs}, {b}"));
            let radj = self.tmp(Cls::B64);
            self.line(format!("add.s64 {radj}, {r}, {babs}"));
            self.line(format!("selp.b64 {out}, {radj}, {r}, {neg}"));
            self.line(format!("selp.b64 {out}, 0, {out}, {m1}"));
            self.line(format!("selp.b64 {out}, 0, {out}, {b0}"));
        } else {
            let qm = self.tmp(Cls::B64);
            self.line(format!("add.s64 {qm}, {q}, -1"));
            let qp = self.tmp(Cls::B64);
            self.line(format!("add.s64 {qp}, {q}, 1"));
            let qadj = self.tmp(Cls::B64);
            self.line(format!("selp.b64 {qadj}, {qm}, {qp}, {bpos}"));
            self.line(format!("selp.b64 {out}, {qadj}, {q}, {neg}"));
            let negx = self.tmp(Cls::B64);
            self.line(format!("neg.s64 {negx}, {a}"));
            self.line(format!("selp.b64 {out}, {negx}, {out}, {m1}"));
            self.line(format!("selp.b64 {out}, 0, {out}, {b0}"));
        }
        out
    }

    /// Truncating signed `a / b` and `a % b` that never fault: the divisor is replaced by 1
    /// where it is 0 or -1 (callers fix those cases up). Returns (q, r, b == 0, b == -1).
    fn safe_divrem(&mut self, a: &str, b: &str, t: &str, c: Cls) -> (String, String, String, String) {
        let bits = if c == Cls::B64 { "b64" } else { "b32" };
        let b0 = self.tmp(Cls::Pred);
        self.line(format!("setp.eq.{t} {b0}, {b}, 0"));
        let m1 = self.tmp(Cls::Pred);
        self.line(format!("setp.eq.{t} {m1}, {b}, -1"));
        let bad = self.tmp(Cls::Pred);
        self.line(format!("or.pred {bad}, {b0}, {m1}"));
        let safe = self.tmp(c);
        self.line(format!("selp.{bits} {safe}, 1, {b}, {bad}"));
        let q = self.tmp(c);
        self.line(format!("div.{t} {q}, {a}, {safe}"));
        let r = self.tmp(c);
        self.line(format!("rem.{t} {r}, {a}, {safe}"));
        (q, r, b0, m1)
    }

    /// Emits the value of a dimension polynomial (at kernel entry).
    fn eval_dim(&mut self, d: &Dim) -> String {
        let total = self.i64c(0);
        for (mono, c) in d.terms() {
            let v = self.i64c(c);
            for a in mono {
                let x = match a {
                    Atom::Sym(s) => match self.syms.get(s) {
                        Some(x) => x.clone(),
                        None => self.i64c(0),
                    },
                    Atom::FloorDiv(p, q) => {
                        let pv = self.eval_dim(p);
                        let qv = self.i64c(*q);
                        self.euclid(&pv, &qv, false)
                    }
                };
                self.line(format!("mul.lo.s64 {v}, {v}, {x}"));
            }
            self.line(format!("add.s64 {total}, {total}, {v}"));
        }
        total
    }

    fn iexpr(&mut self, e: &IExpr) -> Result<String, Unsupported> {
        Ok(match e {
            IExpr::Coord(k) => self.var(*k),
            IExpr::Dim(d) => self.dim(d),
            IExpr::Data(r) => {
                let d = self.dtype(*r);
                let v = self.reg(*r);
                self.index_of(&v, d)
            }
            IExpr::Add(a, b) | IExpr::Mul(a, b) => {
                let (x, y) = (self.iexpr(a)?, self.iexpr(b)?);
                let t = self.tmp(Cls::B64);
                let op = if matches!(e, IExpr::Add(..)) { "add.s64" } else { "mul.lo.s64" };
                self.line(format!("{op} {t}, {x}, {y}"));
                t
            }
            IExpr::Div(a, b) | IExpr::Mod(a, b) => {
                let rem = matches!(e, IExpr::Mod(..));
                let x = self.iexpr(a)?;
                if let IExpr::Dim(d) = &**b
                    && let Some(c) = d.as_const()
                    && c > 0
                {
                    let t = self.tmp(Cls::B64);
                    if c.count_ones() == 1 {
                        if rem {
                            self.line(format!("and.b64 {t}, {x}, {}", c - 1));
                        } else {
                            self.line(format!("shr.s64 {t}, {x}, {}", c.trailing_zeros()));
                        }
                        return Ok(t);
                    }
                    let q = self.tmp(Cls::B64);
                    self.line(format!("div.s64 {q}, {x}, {c}"));
                    let r = self.tmp(Cls::B64);
                    self.line(format!("rem.s64 {r}, {x}, {c}"));
                    let neg = self.tmp(Cls::Pred);
                    self.line(format!("setp.lt.s64 {neg}, {r}, 0"));
                    if rem {
                        let r2 = self.tmp(Cls::B64);
                        self.line(format!("add.s64 {r2}, {r}, {c}"));
                        self.line(format!("selp.b64 {t}, {r2}, {r}, {neg}"));
                    } else {
                        let q2 = self.tmp(Cls::B64);
                        self.line(format!("add.s64 {q2}, {q}, -1"));
                        self.line(format!("selp.b64 {t}, {q2}, {q}, {neg}"));
                    }
                    return Ok(t);
                }
                let y = self.iexpr(b)?;
                self.euclid(&x, &y, rem)
            }
        })
    }

    /// A register value as an i64 index (`scalar_index`: floats truncate, saturating).
    fn index_of(&mut self, v: &str, d: DType) -> String {
        let op = match d {
            DType::I64 => "mov.b64",
            DType::I8 | DType::I16 | DType::I32 => "cvt.s64.s32",
            DType::U8 | DType::U32 | DType::Bool => "cvt.u64.u32",
            DType::F64 => return self.trunc_to_i64(v, "f64"),
            _ => return self.trunc_to_i64(v, "f32"),
        };
        let t = self.tmp(Cls::B64);
        self.line(format!("{op} {t}, {v}"));
        t
    }

    /// A float truncated to an i64, saturating, NaN to 0. `cvt.rzi.s64` alone gives
    /// 0x8000000000000000 for NaN on the GPU (measured on an H200, sm_90), not the 0 that
    /// `scalar_index` and the interpreter's casts give.
    fn trunc_to_i64(&mut self, v: &str, ty: &str) -> String {
        let t = self.tmp(Cls::B64);
        self.line(format!("cvt.rzi.s64.{ty} {t}, {v}"));
        let nan = self.tmp(Cls::Pred);
        self.line(format!("setp.nan.{ty} {nan}, {v}, {v}"));
        self.line(format!("selp.b64 {t}, 0, {t}, {nan}"));
        t
    }

    /// Re-extends a `.b32` register holding an integer of dtype `d` after wrapping arithmetic.
    fn normalize(&mut self, v: &str, d: DType) {
        match d {
            DType::I8 => self.line(format!("bfe.s32 {v}, {v}, 0, 8")),
            DType::I16 => self.line(format!("bfe.s32 {v}, {v}, 0, 16")),
            DType::U8 => self.line(format!("and.b32 {v}, {v}, 255")),
            _ => {}
        }
    }

    /// A value in an f32 register rounded to f16 or bf16 (and kept in f32).
    fn round_half(&mut self, v: &str, d: DType) -> String {
        let h = self.tmp(Cls::B16);
        let out = self.tmp(Cls::F32);
        if d == DType::F16 {
            self.line(format!("cvt.rn.f16.f32 {h}, {v}"));
            self.line(format!("cvt.f32.f16 {out}, {h}"));
        } else {
            self.line(format!("cvt.rn.bf16.f32 {h}, {v}"));
            self.bf16_value(&h, &out);
        }
        out
    }
    /// `out = ` the f32 value of bf16 bits in a `.b16` register.
    fn bf16_value(&mut self, h: &str, out: &str) {
        let w = self.tmp(Cls::B32);
        self.line(format!("cvt.u32.u16 {w}, {h}"));
        self.line(format!("shl.b32 {w}, {w}, 16"));
        self.line(format!("mov.b32 {out}, {w}"));
    }
    /// An f64 value correctly rounded to f16 or bf16: round to odd in f32 (exact but for a
    /// sticky last bit), then to nearest (innocuous: f32 keeps more than two extra bits).
    fn round_f64_half(&mut self, v: &str, d: DType) -> String {
        let t = self.tmp(Cls::F32);
        self.line(format!("cvt.rz.f32.f64 {t}, {v}"));
        let back = self.tmp(Cls::F64);
        self.line(format!("cvt.f64.f32 {back}, {t}"));
        let inexact = self.tmp(Cls::Pred);
        self.line(format!("setp.neu.f64 {inexact}, {back}, {v}"));
        let bits = self.tmp(Cls::B32);
        self.line(format!("mov.b32 {bits}, {t}"));
        let odd = self.tmp(Cls::B32);
        self.line(format!("or.b32 {odd}, {bits}, 1"));
        self.line(format!("selp.b32 {bits}, {odd}, {bits}, {inexact}"));
        let t2 = self.tmp(Cls::F32);
        self.line(format!("mov.b32 {t2}, {bits}"));
        self.round_half(&t2, d)
    }
    /// An f64 value rounded to a float dtype's register.
    fn round_from_f64(&mut self, v: &str, to: DType) -> String {
        match to {
            DType::F64 => v.to_string(),
            DType::F32 => {
                let t = self.tmp(Cls::F32);
                self.line(format!("cvt.rn.f32.f64 {t}, {v}"));
                t
            }
            _ => self.round_f64_half(v, to),
        }
    }
    fn widen_f64(&mut self, v: &str, d: DType) -> String {
        if cls(d) == Cls::F64 {
            return v.to_string();
        }
        let t = self.tmp(Cls::F64);
        self.line(format!("cvt.f64.f32 {t}, {v}"));
        t
    }

    /// Converts a register between dtypes with the semantics of the language's `as` (the CPU
    /// backend's conversions, step for step).
    fn convert(&mut self, v: &str, from: DType, to: DType) -> String {
        if from == to {
            return v.to_string();
        }
        if to == DType::Bool {
            let p = self.tmp(Cls::Pred);
            match cls(from) {
                Cls::F32 => self.line(format!("setp.neu.f32 {p}, {v}, {}", f32_lit(0.0))),
                Cls::F64 => self.line(format!("setp.neu.f64 {p}, {v}, {}", f64_lit(0.0))),
                Cls::B64 => self.line(format!("setp.ne.s64 {p}, {v}, 0")),
                _ => self.line(format!("setp.ne.u32 {p}, {v}, 0")),
            }
            return self.bool_of(&p);
        }
        if to.is_float() {
            if from.is_float() {
                return match (cls(from), to) {
                    (Cls::F32, DType::F32) => v.to_string(),
                    (Cls::F32, DType::F64) => self.widen_f64(v, from),
                    (Cls::F32, _) => self.round_half(v, to),
                    _ => self.round_from_f64(v, to),
                };
            }
            let i = self.index_of(v, from);
            let w = self.tmp(Cls::F64);
            self.line(format!("cvt.rn.f64.s64 {w}, {i}"));
            return self.round_from_f64(&w, to);
        }
        let wide = if from.is_float() {
            let w = self.widen_f64(v, from);
            let i = self.trunc_to_i64(&w, "f64");
            if let Some((lo, hi)) = to.int_range()
                && to != DType::I64
            {
                self.line(format!("max.s64 {i}, {i}, {}", lo as i64));
                self.line(format!("min.s64 {i}, {i}, {}", hi as i64));
            }
            i
        } else {
            self.index_of(v, from)
        };
        if to == DType::I64 {
            return wide;
        }
        let t = self.tmp(Cls::B32);
        self.line(format!("cvt.u32.u64 {t}, {wide}"));
        self.normalize(&t, to);
        t
    }

    fn constant(&mut self, dst: &str, s: Scalar, d: DType) {
        let s = tk_ir::graph::interp::scalar_to(s, d);
        match (s, cls(d)) {
            (Scalar::Float(f), Cls::F32) => self.line(format!("mov.f32 {dst}, {}", f32_lit(f as f32))),
            (Scalar::Float(f), _) => self.line(format!("mov.f64 {dst}, {}", f64_lit(f))),
            (Scalar::Int(i), Cls::B64) => self.line(format!("mov.b64 {dst}, {}", i as i64)),
            (Scalar::Int(i), _) => self.line(format!("mov.b32 {dst}, {}", (i as i64) as i32)),
            (Scalar::Bool(b), _) => self.line(format!("mov.b32 {dst}, {}", u32::from(b))),
        }
    }

    fn alu(&mut self, dst: &str, op: &Op, args: &[usize], d: DType) -> Result<(), Unsupported> {
        let vals: Vec<String> = args.iter().map(|r| self.reg(*r)).collect();
        let ts: Vec<DType> = args.iter().map(|r| self.dtype(*r)).collect();
        let mv = |e: &mut Self, v: &str| {
            let t = match cls(d) {
                Cls::F32 => "f32",
                Cls::F64 => "f64",
                Cls::B64 => "b64",
                _ => "b32",
            };
            e.line(format!("mov.{t} {dst}, {v}"))
        };
        match op {
            Op::Cast => {
                let v = self.convert(&vals[0], ts[0], d);
                mv(self, &v);
            }
            Op::Bitcast => {
                if cls(ts[0]) == Cls::F32 && is_half(ts[0]) || is_half(d) || ts[0].bits() != d.bits() {
                    return unsupported(format!("bitcast from {} to {d}", ts[0]));
                }
                let t = if d.bits() == 64 { "b64" } else { "b32" };
                self.line(format!("mov.{t} {dst}, {}", vals[0]));
            }
            Op::Where => {
                let a = self.convert(&vals[1], ts[1], d);
                let b = self.convert(&vals[2], ts[2], d);
                let c = self.pred_of(args[0]);
                let t = match cls(d) {
                    Cls::F32 => "f32",
                    Cls::F64 => "f64",
                    Cls::B64 => "b64",
                    _ => "b32",
                };
                self.line(format!("selp.{t} {dst}, {a}, {b}, {c}"));
            }
            Op::Fma => {
                if !d.is_float() {
                    return unsupported(format!("fma on {d}"));
                }
                if is_half(d) {
                    return unsupported(legalized(&format!("fma on {d}")));
                }
                self.line(format!("fma.rn.{} {dst}, {}, {}, {}", ty(d), vals[0], vals[1], vals[2]));
            }
            Op::Unary(u) => {
                let v = self.unary(*u, &vals[0], ts[0], d)?;
                mv(self, &v);
            }
            Op::Binary(b) => {
                let v = self.binary(*b, &vals[0], &vals[1], ts[0], d)?;
                mv(self, &v);
            }
            other => return unsupported(format!("operation {other:?} in an ALU instruction")),
        }
        Ok(())
    }

    fn unary(&mut self, u: UnaryOp, x: &str, t: DType, d: DType) -> Result<String, Unsupported> {
        if t != d && !matches!(u, UnaryOp::Not) {
            let x = self.convert(x, t, d);
            return self.unary(u, &x, d, d);
        }
        if t == DType::Bool {
            return match u {
                UnaryOp::Not => {
                    let r = self.tmp(Cls::B32);
                    self.line(format!("xor.b32 {r}, {x}, 1"));
                    Ok(r)
                }
                _ => unsupported(format!("{u:?} on bool")),
            };
        }
        if t.is_int() {
            let c = cls(t);
            let w = if c == Cls::B64 { "64" } else { "32" };
            let r = self.tmp(c);
            match u {
                UnaryOp::Neg => self.line(format!("neg.s{w} {r}, {x}")),
                UnaryOp::Not => self.line(format!("not.b{w} {r}, {x}")),
                UnaryOp::Abs if t.is_signed_int() => self.line(format!("abs.s{w} {r}, {x}")),
                UnaryOp::Abs | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => {
                    self.line(format!("mov.b{w} {r}, {x}"))
                }
                _ => return unsupported(format!("{u:?} on {t}")),
            }
            self.normalize(&r, t);
            return Ok(r);
        }
        let ft = ty(t);
        let r = self.tmp(cls(t));
        match u {
            UnaryOp::Neg => self.line(format!("neg.{ft} {r}, {x}")),
            UnaryOp::Abs => self.line(format!("abs.{ft} {r}, {x}")),
            UnaryOp::Floor => self.line(format!("cvt.rmi.{ft}.{ft} {r}, {x}")),
            UnaryOp::Ceil => self.line(format!("cvt.rpi.{ft}.{ft} {r}, {x}")),
            UnaryOp::Round => self.line(format!("cvt.rni.{ft}.{ft} {r}, {x}")),
            UnaryOp::Sqrt if is_half(t) => return unsupported(legalized(&format!("sqrt on {t}"))),
            UnaryOp::Sqrt => self.line(format!("sqrt.rn.{ft} {r}, {x}")),
            UnaryOp::Rsqrt => {
                let w = self.widen_f64(x, t);
                let s = self.tmp(Cls::F64);
                self.line(format!("sqrt.rn.f64 {s}, {w}"));
                self.line(format!("rcp.rn.f64 {s}, {s}"));
                return Ok(self.round_from_f64(&s, t));
            }
            UnaryOp::Not => return unsupported(format!("not on {t}")),
            other => {
                return unsupported(format!(
                    "{other:?} on {t}: only f32, f16 and bf16 transcendentals are decomposed so far (GPU targets \
                     cannot evaluate the f64 reference)"
                ));
            }
        }
        Ok(r)
    }

    fn binary(&mut self, op: BinaryOp, a: &str, b: &str, t: DType, d: DType) -> Result<String, Unsupported> {
        use BinaryOp::*;
        let _ = d;
        if t == DType::Bool {
            let r = self.tmp(Cls::B32);
            let cmp = |e: &mut Self, c: &str| {
                let p = e.tmp(Cls::Pred);
                e.line(format!("setp.{c}.u32 {p}, {a}, {b}"));
                e.line(format!("selp.u32 {r}, 1, 0, {p}"));
            };
            match op {
                And | Min => self.line(format!("and.b32 {r}, {a}, {b}")),
                Or | Max => self.line(format!("or.b32 {r}, {a}, {b}")),
                Xor | Ne => self.line(format!("xor.b32 {r}, {a}, {b}")),
                Eq => cmp(self, "eq"),
                Lt => cmp(self, "lo"),
                Le => cmp(self, "ls"),
                Gt => cmp(self, "hi"),
                Ge => cmp(self, "hs"),
                _ => self.line(format!("mov.b32 {r}, 0")),
            }
            return Ok(r);
        }
        if t.is_float() {
            let ft = ty(t);
            let cc = match op {
                Eq => Some("eq"),
                Ne => Some("neu"),
                Lt => Some("lt"),
                Le => Some("le"),
                Gt => Some("gt"),
                Ge => Some("ge"),
                _ => None,
            };
            if let Some(cc) = cc {
                let p = self.tmp(Cls::Pred);
                self.line(format!("setp.{cc}.{ft} {p}, {a}, {b}"));
                return Ok(self.bool_of(&p));
            }
            let r = self.tmp(cls(t));
            match op {
                Add | Sub | Mul | Div if !is_half(t) => {
                    let o = match op {
                        Add => "add",
                        Sub => "sub",
                        Mul => "mul",
                        _ => "div",
                    };
                    self.line(format!("{o}.rn.{ft} {r}, {a}, {b}"));
                }
                Add | Sub | Mul | Div | Min | Max | Rem => return unsupported(legalized(&format!("{op:?} on {t}"))),
                Pow => return unsupported(decomposed(t)),
                _ => return unsupported(format!("{op:?} on {t}")),
            }
            return Ok(r);
        }
        // Integers.
        let signed = t.is_signed_int();
        let c = cls(t);
        let (w, bits) = if c == Cls::B64 { ("64", 64) } else { ("32", 32) };
        let it = format!("{}{w}", if signed { "s" } else { "u" });
        let nbits = i64::from(t.bits());
        let r = self.tmp(c);
        let cmp = |e: &mut Self, cc: &str| {
            let p = e.tmp(Cls::Pred);
            e.line(format!("setp.{cc}.{it} {p}, {a}, {b}"));
            e.bool_of(&p)
        };
        match op {
            Add => self.line(format!("add.s{w} {r}, {a}, {b}")),
            Sub => self.line(format!("sub.s{w} {r}, {a}, {b}")),
            Mul => self.line(format!("mul.lo.s{w} {r}, {a}, {b}")),
            And => self.line(format!("and.b{w} {r}, {a}, {b}")),
            Or => self.line(format!("or.b{w} {r}, {a}, {b}")),
            Xor => self.line(format!("xor.b{w} {r}, {a}, {b}")),
            Min => self.line(format!("min.{it} {r}, {a}, {b}")),
            Max => self.line(format!("max.{it} {r}, {a}, {b}")),
            Eq => return Ok(cmp(self, "eq")),
            Ne => return Ok(cmp(self, "ne")),
            Lt => return Ok(cmp(self, "lt")),
            Le => return Ok(cmp(self, "le")),
            Gt => return Ok(cmp(self, "gt")),
            Ge => return Ok(cmp(self, "ge")),
            Shl | Shr => {
                // Out of range when b < 0 or b >= the dtype's width (one unsigned comparison).
                let oob = self.tmp(Cls::Pred);
                self.line(format!("setp.ge.u{w} {oob}, {b}, {nbits}"));
                let amt = self.tmp(Cls::B32);
                if c == Cls::B64 {
                    self.line(format!("cvt.u32.u64 {amt}, {b}"));
                } else {
                    self.line(format!("mov.b32 {amt}, {b}"));
                }
                self.line(format!("selp.b32 {amt}, {}, {amt}, {oob}", nbits - 1));
                if op == Shl {
                    self.line(format!("shl.b{w} {r}, {a}, {amt}"));
                    self.line(format!("selp.b{w} {r}, 0, {r}, {oob}"));
                } else if signed {
                    self.line(format!("shr.s{w} {r}, {a}, {amt}"));
                } else {
                    self.line(format!("shr.u{w} {r}, {a}, {amt}"));
                    self.line(format!("selp.b{w} {r}, 0, {r}, {oob}"));
                }
            }
            // The legalize pass made the divisor safe (never 0, never -1 for a signed dtype).
            DivTrunc => self.line(format!("div.{it} {r}, {a}, {b}")),
            RemTrunc => self.line(format!("rem.{it} {r}, {a}, {b}")),
            Div | Rem | Pow => return unsupported(legalized(&format!("{op:?} on {t}"))),
        }
        let _ = bits;
        self.normalize(&r, t);
        Ok(r)
    }

    /// The address of element `index` of kernel buffer `buf`.
    fn addr(&mut self, base: &str, index: &IExpr, bytes: u32) -> Result<String, Unsupported> {
        let i = self.iexpr(index)?;
        let a = self.tmp(Cls::B64);
        self.line(format!("mad.lo.s64 {a}, {i}, {bytes}, {base}"));
        Ok(a)
    }

    fn load(&mut self, dst: &str, buf: usize, index: &IExpr, d: DType) -> Result<(), Unsupported> {
        let bd = self.buf_dtypes.get(buf).copied().unwrap_or(d);
        let base = self.bufs.get(buf).cloned().ok_or(Unsupported { message: format!("no buffer {buf}") })?;
        let a = self.addr(&base, index, bd.bits() / 8)?;
        self.mark_loc();
        let raw = self.tmp(cls(bd));
        match bd {
            DType::F16 => {
                let h = self.tmp(Cls::B16);
                self.line(format!("ld.global.b16 {h}, [{a}]"));
                self.line(format!("cvt.f32.f16 {raw}, {h}"));
            }
            DType::Bf16 => {
                let h = self.tmp(Cls::B16);
                self.line(format!("ld.global.b16 {h}, [{a}]"));
                self.bf16_value(&h, &raw);
            }
            DType::I8 => self.line(format!("ld.global.s8 {raw}, [{a}]")),
            DType::U8 | DType::Bool => self.line(format!("ld.global.u8 {raw}, [{a}]")),
            DType::I16 => self.line(format!("ld.global.s16 {raw}, [{a}]")),
            DType::F32 => self.line(format!("ld.global.f32 {raw}, [{a}]")),
            DType::F64 => self.line(format!("ld.global.f64 {raw}, [{a}]")),
            DType::I64 => self.line(format!("ld.global.b64 {raw}, [{a}]")),
            DType::I32 | DType::U32 => self.line(format!("ld.global.b32 {raw}, [{a}]")),
        }
        let v = self.convert(&raw, bd, d);
        let t = match cls(d) {
            Cls::F32 => "f32",
            Cls::F64 => "f64",
            Cls::B64 => "b64",
            _ => "b32",
        };
        self.line(format!("mov.{t} {dst}, {v}"));
        Ok(())
    }

    fn store(&mut self, buf: usize, index: &IExpr, v: &str, bd: DType) -> Result<(), Unsupported> {
        let base = self.bufs.get(buf).cloned().ok_or(Unsupported { message: format!("no buffer {buf}") })?;
        let a = self.addr(&base, index, bd.bits() / 8)?;
        match bd {
            DType::F16 => {
                let h = self.tmp(Cls::B16);
                self.line(format!("cvt.rn.f16.f32 {h}, {v}"));
                self.mark_loc();
                self.line(format!("st.global.b16 [{a}], {h}"));
            }
            DType::Bf16 => {
                let w = self.tmp(Cls::B32);
                self.line(format!("mov.b32 {w}, {v}"));
                self.line(format!("shr.u32 {w}, {w}, 16"));
                self.mark_loc();
                self.line(format!("st.global.u16 [{a}], {w}"));
            }
            _ => {
                self.mark_loc();
                self.store_plain(&a, v, bd)
            }
        }
        Ok(())
    }

    /// `buf[index] += v` atomically: `red.global.add` for integers; for floats a
    /// compare-and-swap loop around `add.rn`, because `atom.add.f32` flushes subnormals (PTX ISA,
    /// atom), and an ordinary addition must not.
    fn atomic_add(&mut self, buf: usize, index: &IExpr, v: &str, bd: DType) -> Result<(), Unsupported> {
        let base = self.bufs.get(buf).cloned().ok_or(Unsupported { message: format!("no buffer {buf}") })?;
        let a = self.addr(&base, index, bd.bits() / 8)?;
        self.mark_loc();
        match bd {
            DType::I32 | DType::U32 => self.line(format!("red.global.add.u32 [{a}], {v}")),
            DType::I64 => self.line(format!("red.global.add.u64 [{a}], {v}")),
            DType::F32 | DType::F64 => {
                let (w, fc, bc) = if bd == DType::F32 { (32, Cls::F32, Cls::B32) } else { (64, Cls::F64, Cls::B64) };
                let old = self.tmp(bc);
                self.line(format!("ld.global.b{w} {old}, [{a}]"));
                let retry = self.new_label();
                self.label(&retry);
                let f = self.tmp(fc);
                self.line(format!("mov.b{w} {f}, {old}"));
                self.line(format!("add.rn.f{w} {f}, {f}, {v}"));
                let new = self.tmp(bc);
                self.line(format!("mov.b{w} {new}, {f}"));
                let seen = self.tmp(bc);
                self.line(format!("atom.global.cas.b{w} {seen}, [{a}], {old}, {new}"));
                let again = self.tmp(Cls::Pred);
                self.line(format!("setp.ne.b{w} {again}, {seen}, {old}"));
                self.line(format!("mov.b{w} {old}, {seen}"));
                self.line(format!("@{again} bra {retry}"));
            }
            d => return Err(Unsupported { message: format!("an atomic add of {d}") }),
        }
        Ok(())
    }

    fn store_plain(&mut self, a: &str, v: &str, bd: DType) {
        match bd {
            DType::I8 | DType::U8 | DType::Bool => self.line(format!("st.global.u8 [{a}], {v}")),
            DType::I16 => self.line(format!("st.global.u16 [{a}], {v}")),
            DType::F32 => self.line(format!("st.global.f32 [{a}], {v}")),
            DType::F64 => self.line(format!("st.global.f64 [{a}], {v}")),
            DType::I64 => self.line(format!("st.global.b64 [{a}], {v}")),
            DType::I32 | DType::U32 => self.line(format!("st.global.b32 [{a}], {v}")),
            DType::F16 | DType::Bf16 => {}
        }
    }

    /// Marks the next global access with the source location of the instruction being emitted.
    fn mark_loc(&mut self) {
        if let Some(l) = self.loc.take()
            && l != tk_ir::graph::Loc::default()
        {
            let _ = writeln!(self.out, "\t// @loc {} {} {}", l.file, l.lo, l.hi);
        }
    }

    /// Runs `f` only where `pred` (a predicate register) holds.
    fn when(
        &mut self,
        pred: Option<String>,
        f: impl FnOnce(&mut Self) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        match pred {
            None => f(self),
            Some(p) => {
                let skip = self.new_label();
                self.line(format!("@!{p} bra {skip}"));
                f(self)?;
                self.label(&skip);
                Ok(())
            }
        }
    }

    /// A counted loop `var = lo..hi` (i64 registers) around `body`; `body` gets the exit label.
    fn counted(
        &mut self,
        var: &str,
        lo: &str,
        hi: &str,
        step: &str,
        body: impl FnOnce(&mut Self, &str) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        let (head, end) = (self.new_label(), self.new_label());
        self.line(format!("mov.b64 {var}, {lo}"));
        self.label(&head);
        let p = self.tmp(Cls::Pred);
        self.line(format!("setp.ge.s64 {p}, {var}, {hi}"));
        self.line(format!("@{p} bra {end}"));
        body(self, &end)?;
        self.line(format!("add.s64 {var}, {var}, {step}"));
        self.line(format!("bra {head}"));
        self.label(&end);
        Ok(())
    }

    fn block(&mut self, body: &[Inst]) -> Result<(), Unsupported> {
        for i in body {
            self.inst(i)?;
        }
        Ok(())
    }

    fn inst(&mut self, inst: &Inst) -> Result<(), Unsupported> {
        match inst {
            Inst::Range { var, extent, kind, body } => {
                if *kind == RangeKind::Local {
                    return self.local_range(*var, extent, body);
                }
                let v = self.var(*var);
                let z = self.i64c(0);
                let hi = self.dim(extent);
                let one = self.i64c(1);
                self.counted(&v, &z, &hi, &one, |e, _| e.block(body))
            }
            Inst::Const { dst, value, dtype } => {
                let r = self.reg(*dst);
                self.constant(&r, *value, *dtype);
                Ok(())
            }
            Inst::Index { dst, expr } => {
                let v = self.iexpr(expr)?;
                let r = self.reg(*dst);
                let d = self.dtype(*dst);
                let v = self.convert(&v, DType::I64, d);
                let t = if cls(d) == Cls::B64 { "b64" } else { "b32" };
                self.line(format!("mov.{t} {r}, {v}"));
                Ok(())
            }
            Inst::Load { dst, buf, index, pred, fill, dtype, loc } => {
                self.loc = Some(*loc);
                let r = self.reg(*dst);
                match pred {
                    None => self.load(&r, *buf, index, *dtype),
                    Some(p) => {
                        self.constant(&r, *fill, *dtype);
                        let p = self.pred_of(*p);
                        self.when(Some(p), |e| e.load(&r, *buf, index, *dtype))
                    }
                }
            }
            Inst::Store { buf, index, value, pred, loc } | Inst::AtomicAdd { buf, index, value, pred, loc } => {
                let atomic = matches!(inst, Inst::AtomicAdd { .. });
                self.loc = Some(*loc);
                let bd = self.buf_dtypes.get(*buf).copied().unwrap_or(DType::F32);
                let mut guard = pred.map(|p| self.pred_of(p));
                if self.mode == Mode::Blocks && !self.in_local {
                    // Code outside local ranges runs in every thread of the block: one stores.
                    let t0 = self.tid0.clone();
                    guard = Some(match guard {
                        None => t0,
                        Some(g) => {
                            let p = self.tmp(Cls::Pred);
                            self.line(format!("and.pred {p}, {g}, {t0}"));
                            p
                        }
                    });
                }
                let (buf, value) = (*buf, *value);
                self.when(guard, |e| {
                    let vd = e.dtype(value);
                    let v = e.reg(value);
                    let v = e.convert(&v, vd, bd);
                    if atomic { e.atomic_add(buf, index, &v, bd) } else { e.store(buf, index, &v, bd) }
                })
            }
            Inst::Alu { dst, op, args, dtype } => {
                let r = self.reg(*dst);
                self.alu(&r, op, args, *dtype)
            }
            Inst::AccNew { acc, op, src, dtype } => {
                let vd = crate::common::acc_value_dtype(*op, *src, *dtype);
                if *src == DType::Bool && !matches!(op, ReduceOp::Sum | ReduceOp::Prod) {
                    return unsupported(format!("{op:?} over bool"));
                }
                let value = format!("%av{acc}");
                let count = format!("%ac{acc}");
                let index = format!("%ax{acc}");
                self.declare(&value, cls(vd));
                self.declare(&count, Cls::B64);
                self.declare(&index, Cls::B64);
                let init = match op {
                    ReduceOp::Sum | ReduceOp::Dot if vd.is_float() => Scalar::Float(-0.0),
                    ReduceOp::Sum | ReduceOp::Dot => Scalar::Int(0),
                    ReduceOp::Prod if vd.is_float() => Scalar::Float(1.0),
                    ReduceOp::Prod => Scalar::Int(1),
                    ReduceOp::Max | ReduceOp::Min if vd.is_float() => {
                        Scalar::Float(if *op == ReduceOp::Max { f64::NEG_INFINITY } else { f64::INFINITY })
                    }
                    ReduceOp::Max | ReduceOp::Min => {
                        let (lo, hi) = vd.int_range().unwrap_or((0, 0));
                        Scalar::Int(if *op == ReduceOp::Max { lo } else { hi })
                    }
                    ReduceOp::ArgMax | ReduceOp::ArgMin => Scalar::zero(vd),
                };
                self.constant(&value, init, vd);
                self.line(format!("mov.b64 {count}, 0"));
                self.line(format!("mov.b64 {index}, -1"));
                self.accs.insert(*acc, Acc { op: *op, src: *src, vd, value, count, index });
                Ok(())
            }
            Inst::AccPush { acc, value, by, pred } => {
                let p = pred.map(|p| self.pred_of(p));
                let (acc, value, by) = (*acc, *value, *by);
                self.when(p, |e| e.push(acc, value, by))
            }
            Inst::AccGet { dst, acc } => {
                let Some(a) = self.accs.get(acc) else { return unsupported("result of an unknown accumulator") };
                let (op, vd, value, count, index) = (a.op, a.vd, a.value.clone(), a.count.clone(), a.index.clone());
                let out = self.dtype(*dst);
                let r = self.reg(*dst);
                let v = match op {
                    ReduceOp::ArgMax | ReduceOp::ArgMin => self.convert(&index, DType::I64, out),
                    _ => {
                        let mut v = value.clone();
                        if matches!(op, ReduceOp::Sum | ReduceOp::Dot) && vd.is_float() {
                            // An empty sum is +0.0 (the running value starts at -0.0).
                            let empty = self.tmp(Cls::Pred);
                            self.line(format!("setp.eq.s64 {empty}, {count}, 0"));
                            let t = self.tmp(cls(vd));
                            let (ft, z) =
                                if cls(vd) == Cls::F64 { ("f64", f64_lit(0.0)) } else { ("f32", f32_lit(0.0)) };
                            self.line(format!("selp.{ft} {t}, {z}, {value}, {empty}"));
                            v = t;
                        }
                        self.convert(&v, vd, out)
                    }
                };
                let t = match cls(out) {
                    Cls::F32 => "f32",
                    Cls::F64 => "f64",
                    Cls::B64 => "b64",
                    _ => "b32",
                };
                self.line(format!("mov.{t} {r}, {v}"));
                Ok(())
            }
            Inst::Check { value, lo, hi, pred, .. } => {
                let k = self.check_ids.get(&(inst as *const Inst)).copied().unwrap_or(0);
                let p = pred.map(|p| self.pred_of(p));
                let value = *value;
                self.when(p, |e| {
                    let vd = e.dtype(value);
                    let v = e.reg(value);
                    let v = e.index_of(&v, vd);
                    let l = e.dim(lo);
                    let h = e.dim(hi);
                    let below = e.tmp(Cls::Pred);
                    e.line(format!("setp.lt.s64 {below}, {v}, {l}"));
                    let above = e.tmp(Cls::Pred);
                    e.line(format!("setp.ge.s64 {above}, {v}, {h}"));
                    let bad = e.tmp(Cls::Pred);
                    e.line(format!("or.pred {bad}, {below}, {above}"));
                    let ok = e.new_label();
                    e.line(format!("@!{bad} bra {ok}"));
                    // The first failing check records itself; the thread stops.
                    let old = e.tmp(Cls::B64);
                    let err = e.err.clone();
                    e.line(format!("atom.global.cas.b64 {old}, [{err}], 0, {}", k + 1));
                    let first = e.tmp(Cls::Pred);
                    e.line(format!("setp.eq.s64 {first}, {old}, 0"));
                    e.line(format!("@{first} st.global.b64 [{err}+8], {v}"));
                    e.line(format!("@{first} st.global.b64 [{err}+16], {l}"));
                    e.line(format!("@{first} st.global.b64 [{err}+24], {h}"));
                    let done = e.done.clone();
                    e.line(format!("bra {done}"));
                    e.label(&ok);
                    Ok(())
                })
            }
            Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                let lo = self.dim(lo);
                let trip = self.dim(trip);
                let z = self.i64c(0);
                let one = self.i64c(1);
                let k = self.tmp(Cls::B64);
                let (iter, exit) = (*iter, *exit);
                self.counted(&k, &z, &trip, &one, |e, done| {
                    let it = e.reg(iter);
                    let itd = e.dtype(iter);
                    let t = e.tmp(Cls::B64);
                    e.line(format!("add.s64 {t}, {lo}, {k}"));
                    let t = e.convert(&t, DType::I64, itd);
                    let w = if cls(itd) == Cls::B64 { "b64" } else { "b32" };
                    e.line(format!("mov.{w} {it}, {t}"));
                    e.block(body)?;
                    if let Some(x) = exit {
                        let p = e.pred_of(x);
                        e.line(format!("@{p} bra {done}"));
                    }
                    // Carried values take their next values all at once.
                    let mut vals = Vec::new();
                    for (n, c) in next.iter().zip(carried) {
                        let (nd, cd) = (e.dtype(*n), e.dtype(*c));
                        let v = e.reg(*n);
                        let v = e.convert(&v, nd, cd);
                        let t = e.tmp(cls(cd));
                        let s = mov_suffix(cd);
                        e.line(format!("mov.{s} {t}, {v}"));
                        vals.push(t);
                    }
                    for (c, v) in carried.iter().zip(vals) {
                        let cd = e.dtype(*c);
                        let r = e.reg(*c);
                        e.line(format!("mov.{} {r}, {v}", mov_suffix(cd)));
                    }
                    Ok(())
                })
            }
            Inst::Copy { dst, src } => {
                let (sd, dd) = (self.dtype(*src), self.dtype(*dst));
                let s = self.reg(*src);
                let v = self.convert(&s, sd, dd);
                let r = self.reg(*dst);
                self.line(format!("mov.{} {r}, {v}", mov_suffix(dd)));
                Ok(())
            }
            Inst::LocalAlloc { buf, dtype, size } => {
                let Some(n) = size.as_const() else {
                    return unsupported(format!("local memory of symbolic size `{size}`"));
                };
                let name = format!("tk_l{buf}");
                let bytes = (n.max(1) as u64) * u64::from(reg_bytes(*dtype));
                if !self.shared.iter().any(|(s, _)| *s == name) {
                    self.shared.push((name.clone(), bytes));
                }
                self.locals.insert(*buf, (name, *dtype));
                Ok(())
            }
            Inst::LocalLoad { dst, buf, index, dtype } => {
                let Some((name, ld)) = self.locals.get(buf).cloned() else {
                    return unsupported("unknown local buffer");
                };
                let base = self.tmp(Cls::B64);
                self.line(format!("mov.u64 {base}, {name}"));
                let a = self.addr(&base, index, reg_bytes(ld))?;
                let raw = self.tmp(cls(ld));
                self.line(format!("ld.shared.{} {raw}, [{a}]", mov_suffix(ld)));
                let v = self.convert(&raw, ld, *dtype);
                let r = self.reg(*dst);
                self.line(format!("mov.{} {r}, {v}", mov_suffix(*dtype)));
                Ok(())
            }
            Inst::LocalStore { buf, index, value } => {
                let Some((name, ld)) = self.locals.get(buf).cloned() else {
                    return unsupported("unknown local buffer");
                };
                let vd = self.dtype(*value);
                let v = self.reg(*value);
                let v = self.convert(&v, vd, ld);
                let base = self.tmp(Cls::B64);
                self.line(format!("mov.u64 {base}, {name}"));
                let a = self.addr(&base, index, reg_bytes(ld))?;
                let guard = (self.mode == Mode::Blocks && !self.in_local).then(|| self.tid0.clone());
                self.when(guard, |e| {
                    e.line(format!("st.shared.{} [{a}], {v}", mov_suffix(ld)));
                    Ok(())
                })
            }
            Inst::Barrier => {
                self.line("bar.sync 0");
                Ok(())
            }
            Inst::Mma { d, a, b, c, m, n, k, dtype } => {
                let mut out = Vec::with_capacity(m * n);
                for i in 0..*m {
                    for j in 0..*n {
                        let acc = self.tmp(cls(*dtype));
                        let c0 = self.reg(c[i * n + j]);
                        self.line(format!("mov.{} {acc}, {c0}", mov_suffix(*dtype)));
                        for kk in 0..*k {
                            let x = self.reg(a[i * k + kk]);
                            let y = self.reg(b[kk * n + j]);
                            if is_half(*dtype) {
                                let (xw, yw, aw) = (
                                    self.widen_f64(&x, *dtype),
                                    self.widen_f64(&y, *dtype),
                                    self.widen_f64(&acc, *dtype),
                                );
                                let r = self.tmp(Cls::F64);
                                self.line(format!("fma.rn.f64 {r}, {xw}, {yw}, {aw}"));
                                let v = self.round_f64_half(&r, *dtype);
                                self.line(format!("mov.f32 {acc}, {v}"));
                            } else {
                                self.line(format!("fma.rn.{} {acc}, {x}, {y}, {acc}", ty(*dtype)));
                            }
                        }
                        out.push(acc);
                    }
                }
                for (r, v) in d.iter().zip(out) {
                    let dst = self.reg(*r);
                    self.line(format!("mov.{} {dst}, {v}", mov_suffix(*dtype)));
                }
                Ok(())
            }
        }
    }

    /// A local range: iteration `tid` of each thread below the extent. Barriers in the body
    /// are met by every thread of the block; a barrier first protects the local memory that the
    /// previous use of the range may still be reading.
    fn local_range(&mut self, var: usize, extent: &Dim, body: &[Inst]) -> Result<(), Unsupported> {
        if self.in_local {
            return unsupported(
                "a workgroup reduction nested inside another one cannot map onto one block of threads; \
                 use group=1 for this kernel",
            );
        }
        if self.mode != Mode::Blocks {
            return unsupported("a local range outside a workgroup kernel");
        }
        self.line("bar.sync 0");
        let v = self.var(var);
        let tid = self.tid.clone();
        self.line(format!("cvt.u64.u32 {v}, {tid}"));
        let hi = self.dim(extent);
        let inside = self.tmp(Cls::Pred);
        self.line(format!("setp.lt.s64 {inside}, {v}, {hi}"));
        self.in_local = true;
        let mut r = Ok(());
        for (n, seg) in body.split(|i| matches!(i, Inst::Barrier)).enumerate() {
            if n > 0 {
                self.line("bar.sync 0");
            }
            if !seg.is_empty() {
                r = r.and_then(|_| self.when(Some(inside.clone()), |e| e.block(seg)));
            }
        }
        self.in_local = false;
        r?;
        Ok(())
    }

    fn push(&mut self, acc: usize, value: usize, by: Option<usize>) -> Result<(), Unsupported> {
        let Some(a) = self.accs.get(&acc) else { return unsupported("push to an unknown accumulator") };
        let (op, src, vd, var, count, index) = (a.op, a.src, a.vd, a.value.clone(), a.count.clone(), a.index.clone());
        let xd = self.dtype(value);
        let x = self.reg(value);
        let x = self.convert(&x, xd, vd);
        match op {
            // A contraction: one fma.rn (f16 and bf16 products are exact in the f32 accumulator).
            ReduceOp::Dot => {
                let Some(by) = by else { return unsupported("a contraction push without its factor") };
                let yd = self.dtype(by);
                let y = self.reg(by);
                let y = self.convert(&y, yd, vd);
                match cls(vd) {
                    Cls::F32 | Cls::F64 => self.line(format!("fma.rn.{} {var}, {x}, {y}, {var}", ty(vd))),
                    c => {
                        let w = if c == Cls::B64 { "64" } else { "32" };
                        self.line(format!("mad.lo.s{w} {var}, {x}, {y}, {var}"));
                        self.normalize(&var, vd);
                    }
                }
            }
            ReduceOp::Sum | ReduceOp::Prod => {
                let o = if op == ReduceOp::Sum { "add" } else { "mul" };
                match cls(vd) {
                    Cls::F32 | Cls::F64 => self.line(format!("{o}.rn.{} {var}, {var}, {x}", ty(vd))),
                    c => {
                        let w = if c == Cls::B64 { "64" } else { "32" };
                        let o = if op == ReduceOp::Sum { "add" } else { "mul.lo" };
                        self.line(format!("{o}.s{w} {var}, {var}, {x}"));
                        self.normalize(&var, vd);
                    }
                }
            }
            ReduceOp::Max | ReduceOp::Min => {
                let max = op == ReduceOp::Max;
                if vd.is_float() {
                    return unsupported(legalized(&format!("a {op:?} accumulator of {vd}")));
                }
                self.line(format!("{}.{} {var}, {var}, {x}", if max { "max" } else { "min" }, ty(vd)));
            }
            ReduceOp::ArgMax | ReduceOp::ArgMin => {
                let max = op == ReduceOp::ArgMax;
                let first = self.tmp(Cls::Pred);
                self.line(format!("setp.eq.s64 {first}, {count}, 0"));
                let better = self.tmp(Cls::Pred);
                if vd.is_float() {
                    let ft = ty(vd);
                    let bnan = self.tmp(Cls::Pred);
                    self.line(format!("setp.nan.{ft} {bnan}, {var}, {var}"));
                    let xnan = self.tmp(Cls::Pred);
                    self.line(format!("setp.nan.{ft} {xnan}, {x}, {x}"));
                    let gt = self.tmp(Cls::Pred);
                    self.line(format!("setp.{}.{ft} {gt}, {x}, {var}", if max { "gt" } else { "lt" }));
                    self.line(format!("or.pred {better}, {xnan}, {gt}"));
                    self.line(format!("and.pred {better}, {better}, !{bnan}"));
                } else {
                    let it = if src.is_signed_int() {
                        ty(vd)
                    } else if cls(vd) == Cls::B64 {
                        "u64"
                    } else {
                        "u32"
                    };
                    self.line(format!("setp.{}.{it} {better}, {x}, {var}", if max { "gt" } else { "lt" }));
                }
                let take = self.tmp(Cls::Pred);
                self.line(format!("or.pred {take}, {first}, {better}"));
                self.line(format!("selp.b64 {index}, {count}, {index}, {take}"));
                self.line(format!("selp.{} {var}, {x}, {var}, {take}", sel_suffix(vd)));
            }
        }
        self.line(format!("add.s64 {count}, {count}, 1"));
        Ok(())
    }
}

fn mov_suffix(d: DType) -> &'static str {
    match cls(d) {
        Cls::F32 => "f32",
        Cls::F64 => "f64",
        Cls::B64 => "b64",
        _ => "b32",
    }
}

fn sel_suffix(d: DType) -> &'static str {
    mov_suffix(d)
}

/// Bytes of a dtype's register (local memory holds registers).
fn reg_bytes(d: DType) -> u32 {
    match cls(d) {
        Cls::F64 | Cls::B64 => 8,
        _ => 4,
    }
}

fn local_threads(body: &[Inst]) -> Result<u32, Unsupported> {
    tk_abi::launch::local_threads(body).map_err(|message| Unsupported { message })
}

/// Translates one device kernel into an `.entry` named `name`.
pub fn kernel(k: &Kernel, name: &str) -> Result<(String, PtxKernel), Unsupported> {
    let legal = crate::common::Backend::Ptx.legal(k);
    let k = &legal;
    let symbols = tk_abi::launch::symbols(k);
    let mut dtypes = Vec::new();
    reg_dtypes(&k.body, &mut dtypes);
    let local = has_local(&k.body);
    let chain = parallel_chain(&k.body);
    let mode = if local {
        Mode::Blocks
    } else if chain.is_some() {
        Mode::Elements
    } else {
        Mode::Single
    };
    let mut e = Em {
        out: String::new(),
        decls: Vec::new(),
        declared: HashSet::new(),
        ntmp: 0,
        nlabel: 0,
        dtypes,
        dims: HashMap::new(),
        syms: HashMap::new(),
        bufs: Vec::new(),
        buf_dtypes: k.bufs.iter().map(|b| b.dtype).collect(),
        accs: HashMap::new(),
        locals: HashMap::new(),
        shared: Vec::new(),
        check_ids: HashMap::new(),
        err: "%err".into(),
        mode,
        in_local: false,
        loc: None,
        tid0: "%ptid0".into(),
        tid: "%tidx".into(),
        done: "$Ldone".into(),
    };
    let mut order = Vec::new();
    collect_checks(&k.body, &mut order);
    e.check_ids = order.iter().enumerate().map(|(i, c)| (*c as *const Inst, i)).collect();
    // Parameters.
    let mut params = Vec::new();
    for i in 0..k.bufs.len() {
        params.push(format!("\t.param .u64 {name}_b{i}"));
        let p = format!("%b{i}");
        e.declare(&p, Cls::B64);
        e.line(format!("ld.param.u64 {p}, [{name}_b{i}]"));
        e.line(format!("cvta.to.global.u64 {p}, {p}"));
        e.bufs.push(p);
    }
    for (i, s) in symbols.iter().enumerate() {
        params.push(format!("\t.param .s64 {name}_d{i}"));
        let p = format!("%d{i}");
        e.declare(&p, Cls::B64);
        e.line(format!("ld.param.s64 {p}, [{name}_d{i}]"));
        e.syms.insert(s.clone(), p);
    }
    params.push(format!("\t.param .u64 {name}_err"));
    e.declare("%err", Cls::B64);
    e.line(format!("ld.param.u64 %err, [{name}_err]"));
    e.line("cvta.to.global.u64 %err, %err");
    for d in symbolic_dims(k) {
        if !e.dims.contains_key(&d) {
            let v = e.eval_dim(&d);
            e.dims.insert(d, v);
        }
    }
    for (n, c) in [("%tidx", Cls::B32), ("%ptid0", Cls::Pred)] {
        e.declare(n, c);
    }
    e.line("mov.u32 %tidx, %tid.x");
    e.line("setp.eq.u32 %ptid0, %tidx, 0");
    let launch = match mode {
        Mode::Single => {
            let skip = e.done.clone();
            e.line(format!("@!%ptid0 bra {skip}"));
            let ctaid = e.tmp(Cls::B32);
            e.line(format!("mov.u32 {ctaid}, %ctaid.x"));
            let p = e.tmp(Cls::Pred);
            e.line(format!("setp.ne.u32 {p}, {ctaid}, 0"));
            e.line(format!("@{p} bra {skip}"));
            e.block(&k.body)?;
            Launch::Single
        }
        Mode::Elements => {
            let Some((chain, inner)) = chain else { return unsupported("no parallel range") };
            // total = product of the extents; idx runs over it in a grid-stride loop.
            let total = e.i64c(1);
            let mut exts = Vec::new();
            let mut ext_dim = Dim::constant(1);
            for (_, x) in &chain {
                let v = e.dim(x);
                e.line(format!("mul.lo.s64 {total}, {total}, {v}"));
                exts.push(v);
                ext_dim = ext_dim.mul(x);
            }
            let (a, b, c) = (e.tmp(Cls::B32), e.tmp(Cls::B32), e.tmp(Cls::B32));
            e.line(format!("mov.u32 {a}, %ctaid.x"));
            e.line(format!("mov.u32 {b}, %ntid.x"));
            e.line(format!("mov.u32 {c}, %nctaid.x"));
            let start = e.tmp(Cls::B64);
            e.line(format!("mul.wide.u32 {start}, {a}, {b}"));
            let t = e.tmp(Cls::B64);
            e.line("cvt.u64.u32 ".to_string() + &format!("{t}, %tidx"));
            e.line(format!("add.s64 {start}, {start}, {t}"));
            let stride = e.tmp(Cls::B64);
            e.line(format!("mul.wide.u32 {stride}, {c}, {b}"));
            let idx = e.tmp(Cls::B64);
            let chain_vars: Vec<usize> = chain.iter().map(|c| c.0).collect();
            e.counted(&idx, &start, &total, &stride, |e, _| {
                let rest = e.tmp(Cls::B64);
                e.line(format!("mov.b64 {rest}, {idx}"));
                for (i, v) in chain_vars.iter().enumerate().rev() {
                    let var = e.var(*v);
                    if i == 0 {
                        e.line(format!("mov.b64 {var}, {rest}"));
                    } else {
                        let x = exts[i].clone();
                        e.line(format!("rem.s64 {var}, {rest}, {x}"));
                        e.line(format!("div.s64 {rest}, {rest}, {x}"));
                    }
                }
                e.block(inner)
            })?;
            Launch::Elements { extent: ext_dim, threads: super::THREADS }
        }
        Mode::Blocks => {
            let threads = local_threads(&k.body)?;
            match &k.body[..] {
                [Inst::Range { var, extent, kind: RangeKind::Global, body }] => {
                    let (a, c) = (e.tmp(Cls::B32), e.tmp(Cls::B32));
                    e.line(format!("mov.u32 {a}, %ctaid.x"));
                    e.line(format!("mov.u32 {c}, %nctaid.x"));
                    let (start, stride) = (e.tmp(Cls::B64), e.tmp(Cls::B64));
                    e.line(format!("cvt.u64.u32 {start}, {a}"));
                    e.line(format!("cvt.u64.u32 {stride}, {c}"));
                    let v = e.var(*var);
                    let hi = e.dim(extent);
                    e.counted(&v, &start, &hi, &stride, |e, _| e.block(body))?;
                    Launch::Blocks { extent: Some(extent.clone()), threads }
                }
                body => {
                    let ctaid = e.tmp(Cls::B32);
                    e.line(format!("mov.u32 {ctaid}, %ctaid.x"));
                    let p = e.tmp(Cls::Pred);
                    e.line(format!("setp.ne.u32 {p}, {ctaid}, 0"));
                    let skip = e.done.clone();
                    e.line(format!("@{p} bra {skip}"));
                    e.block(body)?;
                    Launch::Blocks { extent: None, threads }
                }
            }
        }
    };
    // Assemble the entry.
    let mut s = String::new();
    let _ = writeln!(s, ".visible .entry {name}(\n{}\n)", params.join(",\n"));
    if let Launch::Blocks { threads, .. } = launch {
        let _ = writeln!(s, ".maxntid {threads}, 1, 1");
    }
    s.push_str("{\n");
    for (n, c) in &e.decls {
        let _ = writeln!(s, "\t.reg {} {n};", c.decl());
    }
    let mut shared_bytes = 0;
    for (n, bytes) in &e.shared {
        let _ = writeln!(s, "\t.shared .align 8 .b8 {n}[{bytes}];");
        shared_bytes += bytes;
    }
    s.push('\n');
    s.push_str(&e.out);
    s.push_str("$Ldone:\n\tret;\n}\n");
    let info = PtxKernel {
        name: name.to_string(),
        symbols,
        checks: tk_abi::launch::kernel_info(k).checks,
        launch,
        shared_bytes,
    };
    Ok((s, info))
}
