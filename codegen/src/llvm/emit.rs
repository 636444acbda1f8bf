//! The translation of one device kernel into an `amdgpu_kernel` function (see the module
//! documentation).
//!
//! Every kernel-IR register, range variable and accumulator is a private variable (an `alloca`
//! in address space 5) that is loaded where it is read and stored where it is written; LLVM's
//! `mem2reg`/`SROA` turn them into SSA values, so no private memory remains. Register types
//! follow the PTX backend: f32, f16 and bf16 in `float`, f64 in `double`, i64 in `i64`, the
//! narrower integers and bool in `i32`, kept sign- or zero-extended (bool is 0 or 1).

use super::{AmdKernel, Launch, THREADS};
use crate::common::Unsupported;
use crate::common::{decomposed, legalized, unsupported};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write;
use tk_abi::launch::{collect_checks, symbolic_dims};
use tk_abi::launch::{has_local, parallel_chain};
use tk_ir::dims::{Atom, Dim};
use tk_ir::dtype::DType;
use tk_ir::graph::{BinaryOp, IExpr, Op, ReduceOp, Scalar, UnaryOp};
use tk_ir::kernel::reg_dtypes;
use tk_ir::kernel::{Inst, Kernel, RangeKind};

/// The LLVM type of a dtype's register.
fn rty(d: DType) -> &'static str {
    match d {
        DType::F32 | DType::F16 | DType::Bf16 => "float",
        DType::F64 => "double",
        DType::I64 => "i64",
        _ => "i32",
    }
}

fn is_half(d: DType) -> bool {
    matches!(d, DType::F16 | DType::Bf16)
}

/// An LLVM literal of type `float` (written as the double with the same value).
fn f32_lit(v: f32) -> String {
    format!("0x{:016X}", (v as f64).to_bits())
}

fn f64_lit(v: f64) -> String {
    format!("0x{:016X}", v.to_bits())
}

/// Bytes of a dtype's register (LDS holds registers).
fn reg_bytes(d: DType) -> u32 {
    match rty(d) {
        "double" | "i64" => 8,
        _ => 4,
    }
}

struct Acc {
    op: ReduceOp,
    src: DType,
    vd: DType,
    value: String,
    count: String,
    index: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Single,
    Elements,
    Blocks,
}

struct Em {
    out: String,
    allocas: String,
    allocated: BTreeSet<String>,
    nval: usize,
    nlabel: usize,
    /// Whether the current basic block has its terminator.
    terminated: bool,
    dtypes: Vec<Option<DType>>,
    dims: HashMap<Dim, String>,
    syms: HashMap<String, String>,
    bufs: Vec<String>,
    buf_dtypes: Vec<DType>,
    accs: HashMap<(usize, usize), Acc>,
    locals: HashMap<usize, (String, DType)>,
    lds: Vec<(String, u64)>,
    check_ids: HashMap<*const Inst, usize>,
    mode: Mode,
    in_local: bool,
    /// `workitem id == 0` (an i1).
    tid0: String,
    /// The work-item id in x as i64.
    tid: String,
    decls: BTreeSet<String>,
    kname: String,
    /// A host CPU function (`cpu_kernel`) rather than an `amdgpu_kernel`.
    cpu: bool,
    /// The next range is the CPU function's top-level parallel range (runs `[lo, hi)` of it).
    cpu_top: bool,
    /// Inside the main loop of a vectorised range on the CPU: its width (see `vectorized`).
    lanes: Option<usize>,
    /// The lane whose copy of an instruction is being emitted.
    lane: Option<usize>,
    /// The registers and accumulators defined in the vectorised body (one copy per lane).
    lane_regs: HashSet<usize>,
    /// The range variables with one value per lane (the vectorised range's, and the rows of a
    /// register tile).
    lane_vars: Vec<usize>,
    /// Rows of a matrix product's register tile on the CPU (see `tiled`).
    tile_rows: usize,
    /// The number of the next loop's `!llvm.loop` metadata on the CPU (0: none are written).
    loop_md: usize,
    /// The next counted loop is a vectorised range's main loop (see `counted`).
    laned_loop: bool,
}

impl Em {
    /// An emitter for kernel `k` (legalized) named `name`, with its checks numbered in program
    /// order.
    fn new(k: &Kernel, name: &str, mode: Mode) -> Em {
        let mut dtypes = Vec::new();
        reg_dtypes(&k.body, &mut dtypes);
        let mut order = Vec::new();
        collect_checks(&k.body, &mut order);
        Em {
            out: String::new(),
            allocas: String::new(),
            allocated: BTreeSet::new(),
            nval: 0,
            nlabel: 0,
            terminated: false,
            dtypes,
            dims: HashMap::new(),
            syms: HashMap::new(),
            bufs: (0..k.bufs.len()).map(|i| format!("%b{i}")).collect(),
            buf_dtypes: k.bufs.iter().map(|b| b.dtype).collect(),
            accs: HashMap::new(),
            locals: HashMap::new(),
            lds: Vec::new(),
            check_ids: order.iter().enumerate().map(|(i, c)| (*c as *const Inst, i)).collect(),
            mode,
            in_local: false,
            tid0: String::new(),
            tid: String::new(),
            decls: BTreeSet::new(),
            kname: name.to_string(),
            cpu: false,
            cpu_top: false,
            lanes: None,
            lane: None,
            lane_regs: HashSet::new(),
            lane_vars: Vec::new(),
            tile_rows: 1,
            loop_md: 0,
            laned_loop: false,
        }
    }

    /// Evaluates, once at the function's entry, every symbolic dimension the body and the
    /// buffers' shapes use.
    fn bind_dims(&mut self, k: &Kernel) {
        for d in symbolic_dims(k) {
            if !self.dims.contains_key(&d) {
                let v = self.eval_dim(&d);
                self.dims.insert(d, v);
            }
        }
    }

    fn line(&mut self, s: impl AsRef<str>) {
        if self.terminated {
            // Unreachable code after a branch: give it a block of its own.
            let l = self.new_label();
            let _ = writeln!(self.out, "{l}:");
            self.terminated = false;
        }
        self.out.push_str("  ");
        self.out.push_str(s.as_ref());
        self.out.push('\n');
    }
    /// `%vN = <rhs>`; returns `%vN`.
    fn val(&mut self, rhs: impl AsRef<str>) -> String {
        self.nval += 1;
        let v = format!("%v{}", self.nval);
        self.line(format!("{v} = {}", rhs.as_ref()));
        v
    }
    fn new_label(&mut self) -> String {
        self.nlabel += 1;
        format!("L{}", self.nlabel)
    }
    /// Starts basic block `l`, falling through into it from the current one.
    fn label(&mut self, l: &str) {
        if !self.terminated {
            let _ = writeln!(self.out, "  br label %{l}");
        }
        let _ = writeln!(self.out, "{l}:");
        self.terminated = false;
    }
    fn br(&mut self, l: &str) {
        self.line(format!("br label %{l}"));
        self.terminated = true;
    }
    fn cbr(&mut self, c: &str, t: &str, f: &str) {
        self.line(format!("br i1 {c}, label %{t}, label %{f}"));
        self.terminated = true;
    }
    fn declare(&mut self, d: &str) {
        self.decls.insert(d.to_string());
    }
    fn call(&mut self, ret: &str, name: &str, args: &[(&str, &str)]) -> String {
        let sig: Vec<&str> = args.iter().map(|a| a.0).collect();
        self.declare(&format!("declare {ret} @{name}({})", sig.join(", ")));
        let a: Vec<String> = args.iter().map(|(t, v)| format!("{t} {v}")).collect();
        self.val(format!("call {ret} @{name}({})", a.join(", ")))
    }
    /// A private variable of type `ty` named `%name` (allocated once, in the entry block).
    fn slot(&mut self, name: &str, ty: &str) -> String {
        let p = format!("%{name}");
        if self.allocated.insert(p.clone()) {
            let _ = writeln!(self.allocas, "  {p} = alloca {ty}, align 8, addrspace(5)");
        }
        p
    }
    fn get(&mut self, slot: &str, ty: &str) -> String {
        self.val(format!("load {ty}, ptr addrspace(5) {slot}"))
    }
    fn set(&mut self, slot: &str, ty: &str, v: &str) {
        self.line(format!("store {ty} {v}, ptr addrspace(5) {slot}"));
    }
    fn dtype(&self, r: usize) -> DType {
        self.dtypes.get(r).copied().flatten().unwrap_or(DType::I64)
    }
    /// The suffix of lane-private names (`.{lane}`) for register or accumulator `r`.
    fn lane_suffix(&self, r: usize) -> String {
        match self.lane {
            Some(l) if self.lane_regs.contains(&r) => format!(".{l}"),
            _ => String::new(),
        }
    }
    fn reg_slot(&mut self, r: usize) -> String {
        let t = rty(self.dtype(r));
        let sfx = self.lane_suffix(r);
        self.slot(&format!("r{r}{sfx}"), t)
    }
    /// The key of accumulator `acc` in `accs` (one per lane inside a vectorised body).
    fn acc_key(&self, acc: usize) -> (usize, usize) {
        match self.lane {
            Some(l) if self.lane_regs.contains(&acc) => (acc, l + 1),
            _ => (acc, 0),
        }
    }
    fn reg(&mut self, r: usize) -> String {
        let t = rty(self.dtype(r));
        let s = self.reg_slot(r);
        self.get(&s, t)
    }
    fn set_reg(&mut self, r: usize, v: &str) {
        let t = rty(self.dtype(r));
        let s = self.reg_slot(r);
        self.set(&s, t, v);
    }
    fn var_slot(&mut self, v: usize) -> String {
        match self.lane {
            Some(l) if self.lane_vars.contains(&v) => self.slot(&format!("i{v}.{l}"), "i64"),
            _ => self.slot(&format!("i{v}"), "i64"),
        }
    }
    fn var(&mut self, v: usize) -> String {
        let s = self.var_slot(v);
        self.get(&s, "i64")
    }
    fn dim(&mut self, d: &Dim) -> String {
        match d.as_const() {
            Some(c) => c.to_string(),
            None => self.dims.get(d).cloned().unwrap_or_else(|| "0".into()),
        }
    }
    /// An i1 that holds where the value `v` of dtype `d` is true (non-zero).
    fn truth(&mut self, v: &str, d: DType) -> String {
        match rty(d) {
            "float" => self.val(format!("fcmp une float {v}, 0.0")),
            "double" => self.val(format!("fcmp une double {v}, 0.0")),
            t => self.val(format!("icmp ne {t} {v}, 0")),
        }
    }
    fn pred_of(&mut self, r: usize) -> String {
        let d = self.dtype(r);
        let v = self.reg(r);
        self.truth(&v, d)
    }
    fn bool_of(&mut self, p: &str) -> String {
        self.val(format!("zext i1 {p} to i32"))
    }
    fn select(&mut self, c: &str, t: &str, a: &str, b: &str) -> String {
        self.val(format!("select i1 {c}, {t} {a}, {t} {b}"))
    }

    /// Truncating `a / b` and `a % b` that never trap: the divisor is 1 where it is 0 or -1
    /// (callers fix those up). Returns (q, r, b == 0, b == -1).
    fn safe_divrem(&mut self, a: &str, b: &str, t: &str) -> (String, String, String, String) {
        let b0 = self.val(format!("icmp eq {t} {b}, 0"));
        let m1 = self.val(format!("icmp eq {t} {b}, -1"));
        let bad = self.val(format!("or i1 {b0}, {m1}"));
        let safe = self.select(&bad, t, "1", b);
        let q = self.val(format!("sdiv {t} {a}, {safe}"));
        let r = self.val(format!("srem {t} {a}, {safe}"));
        (q, r, b0, m1)
    }

    /// Euclidean i64 division or remainder (x / 0 = 0, x % 0 = 0, x / -1 = -x), as the
    /// interpreters compute index expressions.
    fn euclid(&mut self, a: &str, b: &str, rem: bool) -> String {
        let (q, r, b0, m1) = self.safe_divrem(a, b, "i64");
        let neg = self.val(format!("icmp slt i64 {r}, 0"));
        let bpos = self.val(format!("icmp sgt i64 {b}, 0"));
        let out = if rem {
            let babs = self.call("i64", "llvm.abs.i64", &[("i64", b), ("i1", "false")]);
            let radj = self.val(format!("add i64 {r}, {babs}"));
            let o = self.select(&neg, "i64", &radj, &r);
            self.select(&m1, "i64", "0", &o)
        } else {
            let qm = self.val(format!("add i64 {q}, -1"));
            let qp = self.val(format!("add i64 {q}, 1"));
            let qadj = self.select(&bpos, "i64", &qm, &qp);
            let o = self.select(&neg, "i64", &qadj, &q);
            let negx = self.val(format!("sub i64 0, {a}"));
            self.select(&m1, "i64", &negx, &o)
        };
        self.select(&b0, "i64", "0", &out)
    }

    /// The value of a dimension polynomial (emitted in the entry block).
    fn eval_dim(&mut self, d: &Dim) -> String {
        let mut total = "0".to_string();
        for (mono, c) in d.terms() {
            let mut v = c.to_string();
            for a in mono {
                let x = match a {
                    Atom::Sym(s) => self.syms.get(s).cloned().unwrap_or_else(|| "0".into()),
                    Atom::FloorDiv(p, q) => {
                        let pv = self.eval_dim(p);
                        self.euclid(&pv, &q.to_string(), false)
                    }
                };
                v = self.val(format!("mul i64 {v}, {x}"));
            }
            total = self.val(format!("add i64 {total}, {v}"));
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
                let op = if matches!(e, IExpr::Add(..)) { "add" } else { "mul" };
                self.val(format!("{op} i64 {x}, {y}"))
            }
            IExpr::Div(a, b) | IExpr::Mod(a, b) => {
                let rem = matches!(e, IExpr::Mod(..));
                let x = self.iexpr(a)?;
                if let IExpr::Dim(d) = &**b
                    && let Some(c) = d.as_const()
                    && c > 0
                {
                    if c.count_ones() == 1 {
                        return Ok(if rem {
                            self.val(format!("and i64 {x}, {}", c - 1))
                        } else {
                            self.val(format!("ashr i64 {x}, {}", c.trailing_zeros()))
                        });
                    }
                    let q = self.val(format!("sdiv i64 {x}, {c}"));
                    let r = self.val(format!("srem i64 {x}, {c}"));
                    let neg = self.val(format!("icmp slt i64 {r}, 0"));
                    return Ok(if rem {
                        let r2 = self.val(format!("add i64 {r}, {c}"));
                        self.select(&neg, "i64", &r2, &r)
                    } else {
                        let q2 = self.val(format!("add i64 {q}, -1"));
                        self.select(&neg, "i64", &q2, &q)
                    });
                }
                let y = self.iexpr(b)?;
                self.euclid(&x, &y, rem)
            }
        })
    }

    /// A register value as an i64 index (floats truncate, saturating; NaN is 0).
    fn index_of(&mut self, v: &str, d: DType) -> String {
        match d {
            DType::I64 => v.to_string(),
            DType::I8 | DType::I16 | DType::I32 => self.val(format!("sext i32 {v} to i64")),
            DType::U8 | DType::U32 | DType::Bool => self.val(format!("zext i32 {v} to i64")),
            DType::F64 => self.call("i64", "llvm.fptosi.sat.i64.f64", &[("double", v)]),
            _ => self.call("i64", "llvm.fptosi.sat.i64.f32", &[("float", v)]),
        }
    }

    /// Re-extends an `i32` holding an integer of dtype `d` after wrapping arithmetic.
    fn normalize(&mut self, v: &str, d: DType) -> String {
        match d {
            DType::I8 | DType::I16 => {
                let n = if d == DType::I8 { "i8" } else { "i16" };
                let t = self.val(format!("trunc i32 {v} to {n}"));
                self.val(format!("sext {n} {t} to i32"))
            }
            DType::U8 => self.val(format!("and i32 {v}, 255")),
            _ => v.to_string(),
        }
    }

    /// An f32 value rounded to half, with the sign copied from the f32 value. LLVM 19 selects
    /// `fptrunc (fmul a, b)` to `v_fma_mixlo_f16 a, b, +0`, whose result is +0 where a * b is
    /// -0 (fixed upstream in llvm/llvm-project#214544, after LLVM 19). Rounding never changes a
    /// sign, so taking the sign bit from the f32 value is exact and undoes that; it is integer
    /// arithmetic, which LLVM does not see through. (An `llvm.arithmetic.fence` also keeps the
    /// pattern apart, but LLVM 19 then fails on uniform values: "illegal VGPR to SGPR copy".)
    fn half_with_sign(&mut self, v: &str) -> String {
        let h = self.val(format!("fptrunc float {v} to half"));
        let hb = self.val(format!("bitcast half {h} to i16"));
        let mag = self.val(format!("and i16 {hb}, 32767"));
        let vb = self.val(format!("bitcast float {v} to i32"));
        let top = self.val(format!("lshr i32 {vb}, 16"));
        let top = self.val(format!("trunc i32 {top} to i16"));
        let sign = self.val(format!("and i16 {top}, -32768"));
        let r = self.val(format!("or i16 {mag}, {sign}"));
        self.val(format!("bitcast i16 {r} to half"))
    }

    /// An f32 value rounded to f16 or bf16 (to nearest, ties to even), kept in f32.
    fn round_half(&mut self, v: &str, d: DType) -> String {
        if d == DType::F16 {
            let h = self.half_with_sign(v);
            return self.val(format!("fpext half {h} to float"));
        }
        let bits = self.val(format!("bitcast float {v} to i32"));
        let lsb = self.val(format!("lshr i32 {bits}, 16"));
        let lsb = self.val(format!("and i32 {lsb}, 1"));
        let up = self.val(format!("add i32 {bits}, 32767"));
        let up = self.val(format!("add i32 {up}, {lsb}"));
        let rounded = self.val(format!("and i32 {up}, -65536"));
        let quiet = self.val(format!("or i32 {bits}, 4194304"));
        let quiet = self.val(format!("and i32 {quiet}, -65536"));
        let nan = self.val(format!("fcmp uno float {v}, 0.0"));
        let r = self.select(&nan, "i32", &quiet, &rounded);
        self.val(format!("bitcast i32 {r} to float"))
    }
    /// The f32 value of bf16 bits in an `i32` (in its low 16 bits).
    fn bf16_value(&mut self, w: &str) -> String {
        let s = self.val(format!("shl i32 {w}, 16"));
        self.val(format!("bitcast i32 {s} to float"))
    }
    /// An f64 value correctly rounded to f16 or bf16: first to f32 rounding to odd (exact but
    /// for a sticky last bit), then to nearest (innocuous: f32 keeps more than two extra bits).
    fn round_f64_half(&mut self, v: &str, d: DType) -> String {
        let t = self.val(format!("fptrunc double {v} to float"));
        let back = self.val(format!("fpext float {t} to double"));
        let bits = self.val(format!("bitcast float {t} to i32"));
        // Round toward zero: step back one ulp where rounding to nearest went away from zero.
        let (ab, av) = (
            self.call("double", "llvm.fabs.f64", &[("double", &back)]),
            self.call("double", "llvm.fabs.f64", &[("double", v)]),
        );
        let away = self.val(format!("fcmp ogt double {ab}, {av}"));
        let dec = self.val(format!("add i32 {bits}, -1"));
        let bits = self.select(&away, "i32", &dec, &bits);
        let inexact = self.val(format!("fcmp une double {back}, {v}"));
        let odd = self.val(format!("or i32 {bits}, 1"));
        let bits = self.select(&inexact, "i32", &odd, &bits);
        let t2 = self.val(format!("bitcast i32 {bits} to float"));
        self.round_half(&t2, d)
    }
    fn round_from_f64(&mut self, v: &str, to: DType) -> String {
        match to {
            DType::F64 => v.to_string(),
            DType::F32 => self.val(format!("fptrunc double {v} to float")),
            _ => self.round_f64_half(v, to),
        }
    }
    fn widen_f64(&mut self, v: &str, d: DType) -> String {
        if rty(d) == "double" { v.to_string() } else { self.val(format!("fpext float {v} to double")) }
    }

    /// Converts a register between dtypes with the semantics of the language's `as` (the
    /// other backends' conversions, step for step).
    fn convert(&mut self, v: &str, from: DType, to: DType) -> String {
        if from == to {
            return v.to_string();
        }
        if to == DType::Bool {
            let p = self.truth(v, from);
            return self.bool_of(&p);
        }
        if to.is_float() {
            if from.is_float() {
                return match (rty(from), to) {
                    ("float", DType::F32) => v.to_string(),
                    ("float", DType::F64) => self.widen_f64(v, from),
                    ("float", _) => self.round_half(v, to),
                    _ => self.round_from_f64(v, to),
                };
            }
            if self.cpu && to == DType::F32 && rty(from) == "i32" && from.is_signed_int() {
                // Exact in f64, so rounding it once to f32 is the f64 route's result; this form
                // vectorises on the CPU.
                return self.val(format!("sitofp i32 {v} to float"));
            }
            let i = self.index_of(v, from);
            let w = self.val(format!("sitofp i64 {i} to double"));
            return self.round_from_f64(&w, to);
        }
        if self.cpu && rty(from) == "float" && to == DType::I32 {
            // The same saturation as through f64 (f32 values are exact there), NaN to 0, written
            // as a conversion and selects, which vectorise on the CPU (LLVM 19's x86 backend
            // splits a vector `llvm.fptosi.sat` into scalar conversions). `fptosi` of a value out
            // of range is poison, which the selects never choose.
            let t = self.val(format!("fptosi float {v} to i32"));
            let big = self.val(format!("fcmp oge float {v}, {}", f32_lit(2147483648.0)));
            let small = self.val(format!("fcmp olt float {v}, {}", f32_lit(-2147483648.0)));
            let nan = self.val(format!("fcmp uno float {v}, 0.0"));
            let a = self.val(format!("select i1 {big}, i32 2147483647, i32 {t}"));
            let b = self.val(format!("select i1 {small}, i32 -2147483648, i32 {a}"));
            return self.val(format!("select i1 {nan}, i32 0, i32 {b}"));
        }
        let wide = if from.is_float() {
            let w = self.widen_f64(v, from);
            let mut i = self.call("i64", "llvm.fptosi.sat.i64.f64", &[("double", &w)]);
            if let Some((lo, hi)) = to.int_range()
                && to != DType::I64
            {
                i = self.call("i64", "llvm.smax.i64", &[("i64", &i), ("i64", &(lo as i64).to_string())]);
                i = self.call("i64", "llvm.smin.i64", &[("i64", &i), ("i64", &(hi as i64).to_string())]);
            }
            i
        } else {
            self.index_of(v, from)
        };
        if to == DType::I64 {
            return wide;
        }
        let t = self.val(format!("trunc i64 {wide} to i32"));
        self.normalize(&t, to)
    }

    fn constant(&mut self, s: Scalar, d: DType) -> String {
        let s = tk_ir::graph::interp::scalar_to(s, d);
        match (s, rty(d)) {
            (Scalar::Float(f), "float") => f32_lit(f as f32),
            (Scalar::Float(f), _) => f64_lit(f),
            (Scalar::Int(i), "i64") => (i as i64).to_string(),
            (Scalar::Int(i), _) => ((i as i64) as i32).to_string(),
            (Scalar::Bool(b), _) => u32::from(b).to_string(),
        }
    }

    /// IEEE 754-2019 minimum / maximum: NaN propagates, -0 < +0 (as the other backends).
    fn fminmax(&mut self, a: &str, b: &str, d: DType, max: bool) -> String {
        let (t, s) = if rty(d) == "double" { ("double", "f64") } else { ("float", "f32") };
        let name = format!("llvm.{}.{s}", if max { "maximum" } else { "minimum" });
        self.call(t, &name, &[(t, a), (t, b)])
    }

    fn alu(&mut self, op: &Op, args: &[usize], d: DType) -> Result<String, Unsupported> {
        let vals: Vec<String> = args.iter().map(|r| self.reg(*r)).collect();
        let ts: Vec<DType> = args.iter().map(|r| self.dtype(*r)).collect();
        Ok(match op {
            Op::Cast => self.convert(&vals[0], ts[0], d),
            Op::Bitcast => {
                if is_half(ts[0]) || is_half(d) || ts[0].bits() != d.bits() {
                    return unsupported(format!("bitcast from {} to {d}", ts[0]));
                }
                let (from, to) = (rty(ts[0]), rty(d));
                if from == to { vals[0].clone() } else { self.val(format!("bitcast {from} {} to {to}", vals[0])) }
            }
            Op::Where => {
                let a = self.convert(&vals[1], ts[1], d);
                let b = self.convert(&vals[2], ts[2], d);
                let c = self.truth(&vals[0], ts[0]);
                self.select(&c, rty(d), &a, &b)
            }
            Op::Fma => {
                if !d.is_float() {
                    return unsupported(format!("fma on {d}"));
                }
                if is_half(d) {
                    return unsupported(legalized(&format!("fma on {d}")));
                }
                let v: Vec<String> = (0..3).map(|i| self.convert(&vals[i], ts[i], d)).collect();
                let (t, s) = if d == DType::F64 { ("double", "f64") } else { ("float", "f32") };
                self.call(t, &format!("llvm.fma.{s}"), &[(t, &v[0]), (t, &v[1]), (t, &v[2])])
            }
            Op::Unary(u) => self.unary(*u, &vals[0], ts[0], d)?,
            Op::Binary(b) => {
                let x = if ts[0] == ts[1] || matches!(b, BinaryOp::Shl | BinaryOp::Shr) {
                    vals[1].clone()
                } else {
                    self.convert(&vals[1], ts[1], ts[0])
                };
                let bt = if matches!(b, BinaryOp::Shl | BinaryOp::Shr) { ts[1] } else { ts[0] };
                let r = self.binary(*b, &vals[0], &x, ts[0], bt)?;
                let rd = if matches!(
                    b,
                    BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
                ) {
                    DType::Bool
                } else {
                    ts[0]
                };
                self.convert(&r, rd, d)
            }
            other => return unsupported(format!("operation {other:?} in an ALU instruction")),
        })
    }

    fn unary(&mut self, u: UnaryOp, x: &str, t: DType, d: DType) -> Result<String, Unsupported> {
        if t != d && !matches!(u, UnaryOp::Not) {
            let x = self.convert(x, t, d);
            return self.unary(u, &x, d, d);
        }
        if t == DType::Bool {
            return match u {
                UnaryOp::Not => Ok(self.val(format!("xor i32 {x}, 1"))),
                _ => unsupported(format!("{u:?} on bool")),
            };
        }
        if t.is_int() {
            let it = rty(t);
            let r = match u {
                UnaryOp::Neg => self.val(format!("sub {it} 0, {x}")),
                UnaryOp::Not => self.val(format!("xor {it} {x}, -1")),
                UnaryOp::Abs if t.is_signed_int() => {
                    self.call(it, &format!("llvm.abs.{it}"), &[(it, x), ("i1", "false")])
                }
                UnaryOp::Abs | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => x.to_string(),
                _ => return unsupported(format!("{u:?} on {t}")),
            };
            return Ok(self.normalize(&r, t));
        }
        let (ft, s) = if rty(t) == "double" { ("double", "f64") } else { ("float", "f32") };
        let r = match u {
            UnaryOp::Neg => self.val(format!("fneg {ft} {x}")),
            UnaryOp::Abs => self.call(ft, &format!("llvm.fabs.{s}"), &[(ft, x)]),
            UnaryOp::Floor => self.call(ft, &format!("llvm.floor.{s}"), &[(ft, x)]),
            UnaryOp::Ceil => self.call(ft, &format!("llvm.ceil.{s}"), &[(ft, x)]),
            UnaryOp::Round => self.call(ft, &format!("llvm.roundeven.{s}"), &[(ft, x)]),
            UnaryOp::Sqrt if is_half(t) => return unsupported(legalized(&format!("sqrt on {t}"))),
            UnaryOp::Sqrt => self.call(ft, &format!("llvm.sqrt.{s}"), &[(ft, x)]),
            UnaryOp::Rsqrt => {
                let w = self.widen_f64(x, t);
                let s = self.call("double", "llvm.sqrt.f64", &[("double", &w)]);
                let r = self.val(format!("fdiv double 1.0, {s}"));
                return Ok(self.round_from_f64(&r, t));
            }
            UnaryOp::Not => return unsupported(format!("not on {t}")),
            other => {
                return unsupported(format!(
                    "{other:?} on {t}: only f32, f16 and bf16 transcendentals are decomposed so far (GPU targets \
                     cannot evaluate the f64 reference)"
                ));
            }
        };
        Ok(r)
    }

    /// `a op b` on values of dtype `t` (`bt` is the dtype of `b` for shifts); comparisons give
    /// a bool (`i32` 0 or 1).
    fn binary(&mut self, op: BinaryOp, a: &str, b: &str, t: DType, bt: DType) -> Result<String, Unsupported> {
        use BinaryOp::*;
        if t == DType::Bool {
            let cmp = |e: &mut Self, c: &str| {
                let p = e.val(format!("icmp {c} i32 {a}, {b}"));
                e.bool_of(&p)
            };
            return Ok(match op {
                And | Min => self.val(format!("and i32 {a}, {b}")),
                Or | Max => self.val(format!("or i32 {a}, {b}")),
                Xor | Ne => self.val(format!("xor i32 {a}, {b}")),
                Eq => cmp(self, "eq"),
                Lt => cmp(self, "ult"),
                Le => cmp(self, "ule"),
                Gt => cmp(self, "ugt"),
                Ge => cmp(self, "uge"),
                _ => "0".to_string(),
            });
        }
        if t.is_float() {
            let ft = rty(t);
            let cc = match op {
                Eq => Some("oeq"),
                Ne => Some("une"),
                Lt => Some("olt"),
                Le => Some("ole"),
                Gt => Some("ogt"),
                Ge => Some("oge"),
                _ => None,
            };
            if let Some(cc) = cc {
                let p = self.val(format!("fcmp {cc} {ft} {a}, {b}"));
                return Ok(self.bool_of(&p));
            }
            return Ok(match op {
                Add | Sub | Mul | Div if !is_half(t) => {
                    let o = match op {
                        Add => "fadd",
                        Sub => "fsub",
                        Mul => "fmul",
                        _ => "fdiv",
                    };
                    self.val(format!("{o} {ft} {a}, {b}"))
                }
                Min | Max => self.fminmax(a, b, t, op == Max),
                Add | Sub | Mul | Div | Rem => return unsupported(legalized(&format!("{op:?} on {t}"))),
                Pow => return unsupported(decomposed(t)),
                _ => return unsupported(format!("{op:?} on {t}")),
            });
        }
        // Integers, in i32 (narrow dtypes, re-extended) or i64.
        let signed = t.is_signed_int();
        let it = rty(t);
        let nbits = i64::from(t.bits());
        let cmp = |e: &mut Self, s: &str, u: &str| {
            let p = e.val(format!("icmp {} {it} {a}, {b}", if signed { s } else { u }));
            e.bool_of(&p)
        };
        let r = match op {
            Add => self.val(format!("add {it} {a}, {b}")),
            Sub => self.val(format!("sub {it} {a}, {b}")),
            Mul => self.val(format!("mul {it} {a}, {b}")),
            And => self.val(format!("and {it} {a}, {b}")),
            Or => self.val(format!("or {it} {a}, {b}")),
            Xor => self.val(format!("xor {it} {a}, {b}")),
            Min | Max => {
                let f =
                    format!("llvm.{}{}.{it}", if signed { "s" } else { "u" }, if op == Min { "min" } else { "max" });
                self.call(it, &f, &[(it, a), (it, b)])
            }
            Eq => return Ok(cmp(self, "eq", "eq")),
            Ne => return Ok(cmp(self, "ne", "ne")),
            Lt => return Ok(cmp(self, "slt", "ult")),
            Le => return Ok(cmp(self, "sle", "ule")),
            Gt => return Ok(cmp(self, "sgt", "ugt")),
            Ge => return Ok(cmp(self, "sge", "uge")),
            Shl | Shr => {
                // The amount as an i64; out of range when negative or at least the width.
                let amt = self.index_of(b, bt);
                let oob = self.val(format!("icmp uge i64 {amt}, {nbits}"));
                let amt = self.select(&oob, "i64", &(nbits - 1).to_string(), &amt);
                let amt = if it == "i64" { amt } else { self.val(format!("trunc i64 {amt} to i32")) };
                if op == Shl {
                    let s = self.val(format!("shl {it} {a}, {amt}"));
                    self.select(&oob, it, "0", &s)
                } else if signed {
                    self.val(format!("ashr {it} {a}, {amt}"))
                } else {
                    let s = self.val(format!("lshr {it} {a}, {amt}"));
                    self.select(&oob, it, "0", &s)
                }
            }
            // The legalize pass made the divisor safe (never 0, never -1 for a signed dtype).
            DivTrunc => self.val(format!("{} {it} {a}, {b}", if signed { "sdiv" } else { "udiv" })),
            RemTrunc => self.val(format!("{} {it} {a}, {b}", if signed { "srem" } else { "urem" })),
            Div | Rem | Pow => return unsupported(legalized(&format!("{op:?} on {t}"))),
        };
        Ok(self.normalize(&r, t))
    }

    /// The pointer to element `index` of global buffer `buf`, of element type `ety`.
    fn gaddr(&mut self, buf: usize, index: &IExpr, ety: &str) -> Result<String, Unsupported> {
        let base = self.bufs.get(buf).cloned().ok_or(Unsupported { message: format!("no buffer {buf}") })?;
        let i = self.iexpr(index)?;
        Ok(self.val(format!("getelementptr inbounds {ety}, ptr addrspace(1) {base}, i64 {i}")))
    }

    /// Loads element `index` of buffer `buf` as a register of dtype `d`.
    fn load(&mut self, buf: usize, index: &IExpr, d: DType) -> Result<String, Unsupported> {
        let bd = self.buf_dtypes.get(buf).copied().unwrap_or(d);
        let raw = match bd {
            DType::F16 => {
                let a = self.gaddr(buf, index, "half")?;
                let h = self.val(format!("load half, ptr addrspace(1) {a}, align 2"));
                self.val(format!("fpext half {h} to float"))
            }
            DType::Bf16 => {
                let a = self.gaddr(buf, index, "i16")?;
                let h = self.val(format!("load i16, ptr addrspace(1) {a}, align 2"));
                let w = self.val(format!("zext i16 {h} to i32"));
                self.bf16_value(&w)
            }
            DType::I8 | DType::U8 | DType::Bool | DType::I16 => {
                let n = if bd == DType::I16 { "i16" } else { "i8" };
                let a = self.gaddr(buf, index, n)?;
                let v = self.val(format!("load {n}, ptr addrspace(1) {a}"));
                let ext = if bd.is_signed_int() { "sext" } else { "zext" };
                self.val(format!("{ext} {n} {v} to i32"))
            }
            _ => {
                let t = rty(bd);
                let a = self.gaddr(buf, index, t)?;
                self.val(format!("load {t}, ptr addrspace(1) {a}"))
            }
        };
        Ok(self.convert(&raw, bd, d))
    }

    /// Stores `v` (a register of the buffer's dtype) at element `index` of buffer `buf`.
    fn store(&mut self, buf: usize, index: &IExpr, v: &str, bd: DType) -> Result<(), Unsupported> {
        match bd {
            DType::F16 => {
                let h = self.half_with_sign(v);
                let a = self.gaddr(buf, index, "half")?;
                self.line(format!("store half {h}, ptr addrspace(1) {a}, align 2"));
            }
            DType::Bf16 => {
                let w = self.val(format!("bitcast float {v} to i32"));
                let w = self.val(format!("lshr i32 {w}, 16"));
                let h = self.val(format!("trunc i32 {w} to i16"));
                let a = self.gaddr(buf, index, "i16")?;
                self.line(format!("store i16 {h}, ptr addrspace(1) {a}, align 2"));
            }
            DType::I8 | DType::U8 | DType::Bool | DType::I16 => {
                let n = if bd == DType::I16 { "i16" } else { "i8" };
                let t = self.val(format!("trunc i32 {v} to {n}"));
                let a = self.gaddr(buf, index, n)?;
                self.line(format!("store {n} {t}, ptr addrspace(1) {a}"));
            }
            _ => {
                let t = rty(bd);
                let a = self.gaddr(buf, index, t)?;
                self.line(format!("store {t} {v}, ptr addrspace(1) {a}"));
            }
        }
        Ok(())
    }

    /// `buf[index] += v` atomically: `atomicrmw add` for integers, `atomicrmw fadd` for floats,
    /// which rounds like `fadd` (gfx11 has no f64 atomic add, and LLVM 19 expands both float
    /// forms into compare-and-swap loops).
    fn atomic_add(&mut self, buf: usize, index: &IExpr, v: &str, bd: DType) -> Result<(), Unsupported> {
        let op = match bd {
            DType::I32 | DType::U32 | DType::I64 => "add",
            DType::F32 | DType::F64 => "fadd",
            d => return unsupported(format!("an atomic add of {d}")),
        };
        let t = rty(bd);
        let a = self.gaddr(buf, index, t)?;
        let align = bd.bits() / 8;
        self.val(format!("atomicrmw {op} ptr addrspace(1) {a}, {t} {v} syncscope(\"agent\") monotonic, align {align}"));
        Ok(())
    }

    /// Runs `f` only where `pred` (an i1) holds.
    fn when(
        &mut self,
        pred: Option<String>,
        f: impl FnOnce(&mut Self) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        match pred {
            None => f(self),
            Some(p) => {
                let (then, skip) = (self.new_label(), self.new_label());
                self.cbr(&p, &then, &skip);
                self.label(&then);
                f(self)?;
                self.label(&skip);
                Ok(())
            }
        }
    }

    /// A counted loop `var = lo..hi` by `step` (i64 values; `var` is a slot) around `body`,
    /// which gets the exit label.
    fn counted(
        &mut self,
        var: &str,
        lo: &str,
        hi: &str,
        step: &str,
        body: impl FnOnce(&mut Self, &str) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        let (head, inner, end) = (self.new_label(), self.new_label(), self.new_label());
        // A vectorised range's main loop, and every loop inside it, already runs its lanes side
        // by side for the SLP vectoriser: LLVM's loop vectoriser would vectorise such a loop
        // again across its iterations, with gathers and scatters for the lanes' strided
        // accesses (measured: 4x slower than the SLP code), so it is told not to.
        let no_loop_vectorizer = std::mem::take(&mut self.laned_loop) || self.lanes.is_some();
        self.set(var, "i64", lo);
        self.label(&head);
        let v = self.get(var, "i64");
        let p = self.val(format!("icmp sge i64 {v}, {hi}"));
        self.cbr(&p, &end, &inner);
        self.label(&inner);
        body(self, &end)?;
        let v = self.get(var, "i64");
        let n = self.val(format!("add i64 {v}, {step}"));
        self.set(var, "i64", &n);
        if no_loop_vectorizer && self.loop_md > 0 {
            let id = self.loop_md;
            self.loop_md += 1;
            self.decls.insert(format!("!{id} = distinct !{{!{id}, !{NO_LOOP_VECTORIZER}}}"));
            self.decls.insert(format!("!{NO_LOOP_VECTORIZER} = !{{!\"llvm.loop.vectorize.enable\", i1 false}}"));
            self.line(format!("br label %{head}, !llvm.loop !{id}"));
            self.terminated = true;
        } else {
            self.br(&head);
        }
        self.label(&end);
        Ok(())
    }

    fn block(&mut self, body: &[Inst]) -> Result<(), Unsupported> {
        for i in body {
            match self.lanes {
                // In a vectorised body every instruction but a range is emitted once per lane,
                // the copies side by side, so LLVM's SLP vectoriser turns them into vector code.
                Some(w) if !matches!(i, Inst::Range { .. }) => {
                    for l in 0..w {
                        self.lane = Some(l);
                        let r = self.inst(i);
                        self.lane = None;
                        r?;
                    }
                }
                _ => self.inst(i)?,
            }
        }
        Ok(())
    }

    /// A vectorised range `var in lo..hi` (i64 values) on the CPU: whole groups of `w`
    /// iterations run their lanes' copies of the body side by side (an instruction for every
    /// lane, then the next instruction), then the last `(hi - lo) mod w` iterations run one at a
    /// time. Each lane computes what its iteration computes in the scalar loop, in the same
    /// order, so the results are those of the scalar loop bit for bit (the Cranelift backend's
    /// vectorisation makes the same promise). A body with a sequential loop, workgroup memory or
    /// a nested vectorised range runs as the scalar loop.
    /// Rows `lo..hi` of `var` around a vectorised range `(jv, jlo, jhi, jw)` with body `jbody`:
    /// whole tiles of `rows` rows, then the remaining rows one at a time.
    fn row_tiles(
        &mut self,
        var: usize,
        lo: &str,
        hi: &str,
        rows: usize,
        (jv, jlo, jhi, jw): (usize, &str, &str, usize),
        jbody: &[Inst],
    ) -> Result<(), Unsupported> {
        let n = self.val(format!("sub i64 {hi}, {lo}"));
        let n = self.call("i64", "llvm.smax.i64", &[("i64", &n), ("i64", "0")]);
        let rem = self.val(format!("srem i64 {n}, {rows}"));
        let whole = self.val(format!("sub i64 {hi}, {rem}"));
        self.nval += 1;
        let ib = self.slot(&format!("ib{}", self.nval), "i64");
        let ib2 = ib.clone();
        self.counted(&ib, lo, &whole, &rows.to_string(), |e, _| {
            let i0 = e.get(&ib2, "i64");
            e.tiled(Some((var, i0, rows)), jv, jlo, jhi, jw, jbody)
        })?;
        let v = self.var_slot(var);
        self.counted(&v, &whole, hi, "1", |e, _| e.vectorized(jv, jlo, jhi, jw, jbody))
    }

    fn vectorized(&mut self, var: usize, lo: &str, hi: &str, w: usize, body: &[Inst]) -> Result<(), Unsupported> {
        self.tiled(None, var, lo, hi, w, body)
    }

    /// [`Em::vectorized`] for `rows` consecutive values of an outer range variable at once:
    /// `tile = Some((ivar, ibase, rows))` gives lane `L` the row `ibase + L / w` and the column
    /// `lo + L mod w` (a register tile of a matrix product: `rows * w` independent accumulators).
    /// Each lane still computes exactly its own iteration, in order.
    fn tiled(
        &mut self,
        tile: Option<(usize, String, usize)>,
        var: usize,
        lo: &str,
        hi: &str,
        w: usize,
        body: &[Inst],
    ) -> Result<(), Unsupported> {
        let rows = tile.as_ref().map_or(1, |t| t.2);
        let plain_rows = |e: &mut Self, lo: &str, hi: &str| -> Result<(), Unsupported> {
            let v = e.var_slot(var);
            match &tile {
                None => e.counted(&v, lo, hi, "1", |e, _| e.block(body)),
                Some((iv, ib, rows)) => {
                    for r in 0..*rows {
                        let slot = e.var_slot(*iv);
                        let x = e.val(format!("add i64 {ib}, {r}"));
                        e.set(&slot, "i64", &x);
                        e.counted(&v, lo, hi, "1", |e, _| e.block(body))?;
                    }
                    Ok(())
                }
            }
        };
        if w < 2 || w * rows > 256 || self.lanes.is_some() || !lanes_ok(body) {
            return plain_rows(self, lo, hi);
        }
        // Registers defined in the body are private to a lane; as in the Cranelift backend, the
        // kernel IR never reads them after the range.
        let mut regs = HashSet::new();
        defs(body, &mut regs);
        let n = self.val(format!("sub i64 {hi}, {lo}"));
        let n = self.call("i64", "llvm.smax.i64", &[("i64", &n), ("i64", "0")]);
        let rem = self.val(format!("srem i64 {n}, {w}"));
        let main = self.val(format!("sub i64 {hi}, {rem}"));
        self.nval += 1;
        let base = self.slot(&format!("vb{}", self.nval), "i64");
        let base2 = base.clone();
        let tile2 = tile.clone();
        self.laned_loop = true;
        self.counted(&base, lo, &main, &w.to_string(), |e, _| {
            let b = e.get(&base2, "i64");
            let saved = (std::mem::take(&mut e.lane_regs), std::mem::take(&mut e.lane_vars));
            e.lane_regs = regs;
            e.lane_vars = vec![var];
            if let Some((iv, _, _)) = &tile2 {
                e.lane_vars.push(*iv);
            }
            for l in 0..w * rows {
                e.lane = Some(l);
                let slot = e.var_slot(var);
                let islot = tile2.as_ref().map(|t| e.var_slot(t.0));
                e.lane = None;
                let x = e.val(format!("add i64 {b}, {}", l % w));
                e.set(&slot, "i64", &x);
                if let (Some(islot), Some((_, ib, _))) = (islot, &tile2) {
                    let y = e.val(format!("add i64 {ib}, {}", l / w));
                    e.set(&islot, "i64", &y);
                }
            }
            e.lanes = Some(w * rows);
            let r = e.block(body);
            e.lanes = None;
            e.lane_regs = saved.0;
            e.lane_vars = saved.1;
            r
        })?;
        plain_rows(self, &main, hi)
    }

    fn barrier(&mut self) {
        self.line("fence syncscope(\"workgroup\") release");
        self.line("call void @llvm.amdgcn.s.barrier()");
        self.declare("declare void @llvm.amdgcn.s.barrier()");
        self.line("fence syncscope(\"workgroup\") acquire");
    }

    fn lds_ptr(&mut self, name: &str, index: &IExpr, t: &str) -> Result<String, Unsupported> {
        let i = self.iexpr(index)?;
        if self.cpu {
            return Ok(self.val(format!("getelementptr inbounds {t}, ptr {name}, i64 {i}")));
        }
        Ok(self.val(format!("getelementptr inbounds {t}, ptr addrspace(3) @\"{name}\", i64 {i}")))
    }

    fn inst(&mut self, inst: &Inst) -> Result<(), Unsupported> {
        match inst {
            Inst::Range { var, extent, kind, body } => {
                let top = std::mem::replace(&mut self.cpu_top, false);
                if *kind == RangeKind::Local {
                    if self.cpu {
                        return self.cpu_local_range(*var, extent, body);
                    }
                    return self.local_range(*var, extent, body);
                }
                let hi = self.dim(extent);
                if top && *kind == RangeKind::Global {
                    // The part `[lo, hi)` of the parallel range this call runs (as the Cranelift
                    // code: clamped to the range).
                    let lo = self.call("i64", "llvm.smax.i64", &[("i64", "%lo"), ("i64", "0")]);
                    let hi = self.call("i64", "llvm.smin.i64", &[("i64", "%hi"), ("i64", &hi)]);
                    // Matrix-product-like kernels (a reduction under a vectorised inner range)
                    // run the inner range in blocks outside the parallel range, as the Cranelift
                    // code does, so the block of every operand the reduction reads stays in
                    // cache across rows.
                    if let [Inst::Range { var: jv, extent: je, kind: RangeKind::Vectorized(jw), body: jbody }] =
                        body.as_slice()
                        && jbody
                            .iter()
                            .any(|i| matches!(i, Inst::Range { kind: RangeKind::Reduce | RangeKind::Unrolled(_), .. }))
                    {
                        let block = i64::from(*jw).max(64);
                        let jext = self.dim(je);
                        self.nval += 1;
                        let jb = self.slot(&format!("jb{}", self.nval), "i64");
                        let (jb2, var, jv, jw) = (jb.clone(), *var, *jv, *jw as usize);
                        // Register tiles of `tile_rows` rows (small bodies only: each lane is a
                        // copy of the body).
                        let rows = if size(jbody) <= 24 { self.tile_rows.max(1) } else { 1 };
                        return self.counted(&jb, "0", &jext, &block.to_string(), |e, _| {
                            let b = e.get(&jb2, "i64");
                            let end = e.val(format!("add i64 {b}, {block}"));
                            let jhi = e.call("i64", "llvm.smin.i64", &[("i64", &end), ("i64", &jext)]);
                            e.row_tiles(var, &lo, &hi, rows, (jv, &b, &jhi, jw), jbody)
                        });
                    }
                    let v = self.var_slot(*var);
                    return self.counted(&v, &lo, &hi, "1", |e, _| e.block(body));
                }
                // A row loop around a matrix product's vectorised columns (batched products):
                // register tiles of rows, as above, without column blocks.
                if self.cpu
                    && self.lanes.is_none()
                    && matches!(kind, RangeKind::Sequential | RangeKind::Global)
                    && let [Inst::Range { var: jv, extent: je, kind: RangeKind::Vectorized(jw), body: jbody }] =
                        body.as_slice()
                    && jbody.iter().any(|i| matches!(i, Inst::Range { kind: RangeKind::Reduce, .. }))
                    && size(jbody) <= 24
                    && self.tile_rows > 1
                {
                    let jext = self.dim(je);
                    let rows = self.tile_rows;
                    return self.row_tiles(*var, "0", &hi, rows, (*jv, "0", &jext, *jw as usize), jbody);
                }
                if let RangeKind::Vectorized(w) = kind
                    && self.cpu
                {
                    return self.vectorized(*var, "0", &hi, *w as usize, body);
                }
                let v = self.var_slot(*var);
                self.counted(&v, "0", &hi, "1", |e, _| e.block(body))
            }
            Inst::Const { dst, value, dtype } => {
                let c = self.constant(*value, *dtype);
                let c = self.convert(&c, *dtype, self.dtype(*dst));
                self.set_reg(*dst, &c);
                Ok(())
            }
            Inst::Index { dst, expr } => {
                let v = self.iexpr(expr)?;
                let d = self.dtype(*dst);
                let v = self.convert(&v, DType::I64, d);
                self.set_reg(*dst, &v);
                Ok(())
            }
            Inst::Load { dst, buf, index, pred, fill, dtype, .. } => {
                let d = self.dtype(*dst);
                match pred {
                    None => {
                        let v = self.load(*buf, index, *dtype)?;
                        let v = self.convert(&v, *dtype, d);
                        self.set_reg(*dst, &v);
                        Ok(())
                    }
                    Some(p) => {
                        let f = self.constant(*fill, *dtype);
                        let f = self.convert(&f, *dtype, d);
                        self.set_reg(*dst, &f);
                        let p = self.pred_of(*p);
                        let (buf, dtype, dst) = (*buf, *dtype, *dst);
                        self.when(Some(p), |e| {
                            let v = e.load(buf, index, dtype)?;
                            let v = e.convert(&v, dtype, d);
                            e.set_reg(dst, &v);
                            Ok(())
                        })
                    }
                }
            }
            Inst::Store { buf, index, value, pred, .. } | Inst::AtomicAdd { buf, index, value, pred, .. } => {
                let atomic = matches!(inst, Inst::AtomicAdd { .. });
                if atomic && self.cpu {
                    return unsupported("atomic adds on the CPU (its scatter is ordered)");
                }
                let bd = self.buf_dtypes.get(*buf).copied().unwrap_or(DType::F32);
                let mut guard = pred.map(|p| self.pred_of(p));
                if self.mode == Mode::Blocks && !self.in_local {
                    // Code outside local ranges runs in every work-item: one stores.
                    let t0 = self.tid0.clone();
                    guard = Some(match guard {
                        None => t0,
                        Some(g) => self.val(format!("and i1 {g}, {t0}")),
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
                let v = self.alu(op, args, *dtype)?;
                let v = self.convert(&v, *dtype, self.dtype(*dst));
                self.set_reg(*dst, &v);
                Ok(())
            }
            Inst::AccNew { acc, op, src, dtype } => {
                let vd = crate::common::acc_value_dtype(*op, *src, *dtype);
                if *src == DType::Bool && !matches!(op, ReduceOp::Sum | ReduceOp::Prod) {
                    return unsupported(format!("{op:?} over bool"));
                }
                let sfx = self.lane_suffix(*acc);
                let value = self.slot(&format!("av{acc}{sfx}"), rty(vd));
                let count = self.slot(&format!("ac{acc}{sfx}"), "i64");
                let index = self.slot(&format!("ax{acc}{sfx}"), "i64");
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
                let c = self.constant(init, vd);
                self.set(&value, rty(vd), &c);
                self.set(&count, "i64", "0");
                self.set(&index, "i64", "-1");
                let key = self.acc_key(*acc);
                self.accs.insert(key, Acc { op: *op, src: *src, vd, value, count, index });
                Ok(())
            }
            Inst::AccPush { acc, value, by, pred } => {
                let p = pred.map(|p| self.pred_of(p));
                let (acc, value, by) = (*acc, *value, *by);
                self.when(p, |e| e.push(acc, value, by))
            }
            Inst::AccGet { dst, acc } => {
                let Some(a) = self.accs.get(&self.acc_key(*acc)) else {
                    return unsupported("result of an unknown accumulator");
                };
                let (op, vd, value, count, index) = (a.op, a.vd, a.value.clone(), a.count.clone(), a.index.clone());
                let out = self.dtype(*dst);
                let v = match op {
                    ReduceOp::ArgMax | ReduceOp::ArgMin => {
                        let i = self.get(&index, "i64");
                        self.convert(&i, DType::I64, out)
                    }
                    _ => {
                        let mut v = self.get(&value, rty(vd));
                        if matches!(op, ReduceOp::Sum | ReduceOp::Dot) && vd.is_float() {
                            // An empty sum is +0.0 (the running value starts at -0.0).
                            let c = self.get(&count, "i64");
                            let empty = self.val(format!("icmp eq i64 {c}, 0"));
                            v = self.select(&empty, rty(vd), "0.0", &v);
                        }
                        self.convert(&v, vd, out)
                    }
                };
                self.set_reg(*dst, &v);
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
                    let below = e.val(format!("icmp slt i64 {v}, {l}"));
                    let above = e.val(format!("icmp sge i64 {v}, {h}"));
                    let bad = e.val(format!("or i1 {below}, {above}"));
                    let (fail, ok) = (e.new_label(), e.new_label());
                    e.cbr(&bad, &fail, &ok);
                    e.label(&fail);
                    if e.cpu {
                        // The CPU ABI: the value and the bounds in the three error slots, and
                        // the check's number plus one as the result.
                        for (slot, x) in [(0, &v), (1, &l), (2, &h)] {
                            let a = e.val(format!("getelementptr inbounds i64, ptr %err, i64 {slot}"));
                            e.line(format!("store i64 {x}, ptr {a}"));
                        }
                        e.line(format!("ret i32 {}", k + 1));
                        e.terminated = true;
                        e.label(&ok);
                        return Ok(());
                    }
                    // The first failing check records itself; the work-item stops.
                    let pair =
                        e.val(format!("cmpxchg ptr addrspace(1) %err, i64 0, i64 {} monotonic monotonic", k + 1));
                    let first = e.val(format!("extractvalue {{ i64, i1 }} {pair}, 1"));
                    let (rec, done) = (e.new_label(), e.new_label());
                    e.cbr(&first, &rec, &done);
                    e.label(&rec);
                    for (slot, x) in [(1, &v), (2, &l), (3, &h)] {
                        let a = e.val(format!("getelementptr inbounds i64, ptr addrspace(1) %err, i64 {slot}"));
                        e.line(format!("store i64 {x}, ptr addrspace(1) {a}"));
                    }
                    e.br(&done);
                    e.label(&done);
                    e.br("done");
                    e.label(&ok);
                    Ok(())
                })
            }
            Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                let lo = self.dim(lo);
                let trip = self.dim(trip);
                self.nval += 1;
                let k = self.slot(&format!("lk{}", self.nval), "i64");
                let (iter, exit) = (*iter, *exit);
                let k2 = k.clone();
                self.counted(&k, "0", &trip, "1", |e, done| {
                    let kv = e.get(&k2, "i64");
                    let t = e.val(format!("add i64 {lo}, {kv}"));
                    let t = e.convert(&t, DType::I64, e.dtype(iter));
                    e.set_reg(iter, &t);
                    e.block(body)?;
                    if let Some(x) = exit {
                        let p = e.pred_of(x);
                        let cont = e.new_label();
                        e.cbr(&p, done, &cont);
                        e.label(&cont);
                    }
                    // Carried values take their next values all at once.
                    let mut vals = Vec::new();
                    for (n, c) in next.iter().zip(carried) {
                        let (nd, cd) = (e.dtype(*n), e.dtype(*c));
                        let v = e.reg(*n);
                        vals.push(e.convert(&v, nd, cd));
                    }
                    for (c, v) in carried.iter().zip(vals) {
                        e.set_reg(*c, &v);
                    }
                    Ok(())
                })
            }
            Inst::Copy { dst, src } => {
                let (sd, dd) = (self.dtype(*src), self.dtype(*dst));
                let s = self.reg(*src);
                let v = self.convert(&s, sd, dd);
                self.set_reg(*dst, &v);
                Ok(())
            }
            Inst::LocalAlloc { buf, dtype, size } => {
                let Some(n) = size.as_const() else {
                    return unsupported(format!("local memory of symbolic size `{size}`"));
                };
                if self.cpu {
                    // The threads of a workgroup run one after another in one call: the local
                    // memory is the call's own.
                    let name = format!("%lds{buf}");
                    let bytes = (n.max(1) as u64) * u64::from(reg_bytes(*dtype));
                    if self.allocated.insert(name.clone()) {
                        let _ = writeln!(self.allocas, "  {name} = alloca [{bytes} x i8], align 8");
                    }
                    self.locals.insert(*buf, (name, *dtype));
                    return Ok(());
                }
                let name = format!("{}.lds{buf}", self.kname);
                let bytes = (n.max(1) as u64) * u64::from(reg_bytes(*dtype));
                if !self.lds.iter().any(|(s, _)| *s == name) {
                    self.lds.push((name.clone(), bytes));
                }
                self.locals.insert(*buf, (name, *dtype));
                Ok(())
            }
            Inst::LocalLoad { dst, buf, index, dtype } => {
                let Some((name, ld)) = self.locals.get(buf).cloned() else {
                    return unsupported("unknown local buffer");
                };
                let t = rty(ld);
                let a = self.lds_ptr(&name, index, t)?;
                let raw = self.val(format!("load {t}, ptr addrspace(3) {a}"));
                let v = self.convert(&raw, ld, *dtype);
                let v = self.convert(&v, *dtype, self.dtype(*dst));
                self.set_reg(*dst, &v);
                Ok(())
            }
            Inst::LocalStore { buf, index, value } => {
                let Some((name, ld)) = self.locals.get(buf).cloned() else {
                    return unsupported("unknown local buffer");
                };
                let vd = self.dtype(*value);
                let v = self.reg(*value);
                let v = self.convert(&v, vd, ld);
                let guard = (self.mode == Mode::Blocks && !self.in_local).then(|| self.tid0.clone());
                self.when(guard, |e| {
                    let t = rty(ld);
                    let a = e.lds_ptr(&name, index, t)?;
                    e.line(format!("store {t} {v}, ptr addrspace(3) {a}"));
                    Ok(())
                })
            }
            Inst::Barrier => {
                if self.cpu {
                    return unsupported("a barrier outside a workgroup");
                }
                self.barrier();
                Ok(())
            }
            Inst::Mma { d, a, b, c, m, n, k, dtype } => {
                let t = rty(*dtype);
                let mut out = Vec::with_capacity(m * n);
                for i in 0..*m {
                    for j in 0..*n {
                        let mut acc = self.reg(c[i * n + j]);
                        for kk in 0..*k {
                            let x = self.reg(a[i * k + kk]);
                            let y = self.reg(b[kk * n + j]);
                            acc = if is_half(*dtype) {
                                let (xw, yw, aw) = (
                                    self.widen_f64(&x, *dtype),
                                    self.widen_f64(&y, *dtype),
                                    self.widen_f64(&acc, *dtype),
                                );
                                let r = self.call(
                                    "double",
                                    "llvm.fma.f64",
                                    &[("double", &xw), ("double", &yw), ("double", &aw)],
                                );
                                self.round_f64_half(&r, *dtype)
                            } else {
                                let s = if t == "double" { "f64" } else { "f32" };
                                self.call(t, &format!("llvm.fma.{s}"), &[(t, &x), (t, &y), (t, &acc)])
                            };
                        }
                        out.push(acc);
                    }
                }
                for (r, v) in d.iter().zip(out) {
                    self.set_reg(*r, &v);
                }
                Ok(())
            }
        }
    }

    /// A local range: iteration `tid` of each work-item below the extent. Barriers in the body
    /// are met by every work-item; a barrier first protects the LDS that the previous use of the
    /// range may still be reading.
    fn local_range(&mut self, var: usize, extent: &Dim, body: &[Inst]) -> Result<(), Unsupported> {
        if self.in_local {
            return unsupported(
                "a workgroup reduction nested inside another one cannot map onto one workgroup; use group=1 for \
                 this kernel",
            );
        }
        if self.mode != Mode::Blocks {
            return unsupported("a local range outside a workgroup kernel");
        }
        self.barrier();
        let v = self.var_slot(var);
        let tid = self.tid.clone();
        self.set(&v, "i64", &tid);
        let hi = self.dim(extent);
        let inside = self.val(format!("icmp slt i64 {tid}, {hi}"));
        self.in_local = true;
        let mut r = Ok(());
        for (n, seg) in body.split(|i| matches!(i, Inst::Barrier)).enumerate() {
            if n > 0 {
                self.barrier();
            }
            if !seg.is_empty() {
                r = r.and_then(|_| self.when(Some(inside.clone()), |e| e.block(seg)));
            }
        }
        self.in_local = false;
        r
    }

    /// A local range on the CPU: the work-items run one after another, which is valid when no
    /// code follows a barrier (the Cranelift backend's rule).
    fn cpu_local_range(&mut self, var: usize, extent: &Dim, body: &[Inst]) -> Result<(), Unsupported> {
        let last = body.iter().rposition(|i| !matches!(i, Inst::Barrier)).map_or(0, |p| p + 1);
        if body[..last].iter().any(|i| matches!(i, Inst::Barrier)) {
            return unsupported("a workgroup with code after a barrier (use group=1 on the CPU)");
        }
        let v = self.var_slot(var);
        let hi = self.dim(extent);
        self.counted(&v, "0", &hi, "1", |e, _| e.block(&body[..last]))
    }

    fn push(&mut self, acc: usize, value: usize, by: Option<usize>) -> Result<(), Unsupported> {
        let Some(a) = self.accs.get(&self.acc_key(acc)) else { return unsupported("push to an unknown accumulator") };
        let (op, src, vd, slot, count, index) = (a.op, a.src, a.vd, a.value.clone(), a.count.clone(), a.index.clone());
        let t = rty(vd);
        let xd = self.dtype(value);
        let x = self.reg(value);
        let x = self.convert(&x, xd, vd);
        let cur = self.get(&slot, t);
        match op {
            // A contraction: one llvm.fma (f16 and bf16 products are exact in the f32
            // accumulator).
            ReduceOp::Dot => {
                let Some(by) = by else { return unsupported("a contraction push without its factor") };
                let yd = self.dtype(by);
                let y = self.reg(by);
                let y = self.convert(&y, yd, vd);
                let n = match vd {
                    DType::F32 => self.call(t, "llvm.fma.f32", &[(t, &x), (t, &y), (t, &cur)]),
                    DType::F64 => self.call(t, "llvm.fma.f64", &[(t, &x), (t, &y), (t, &cur)]),
                    d if d.is_float() => return unsupported(legalized(&format!("a contraction in {d}"))),
                    _ => {
                        let m = self.val(format!("mul {t} {x}, {y}"));
                        let r = self.val(format!("add {t} {cur}, {m}"));
                        self.normalize(&r, vd)
                    }
                };
                self.set(&slot, t, &n);
            }
            ReduceOp::Sum | ReduceOp::Prod => {
                let n = if vd.is_float() {
                    let o = if op == ReduceOp::Sum { "fadd" } else { "fmul" };
                    self.val(format!("{o} {t} {cur}, {x}"))
                } else {
                    let o = if op == ReduceOp::Sum { "add" } else { "mul" };
                    let r = self.val(format!("{o} {t} {cur}, {x}"));
                    self.normalize(&r, vd)
                };
                self.set(&slot, t, &n);
            }
            ReduceOp::Max | ReduceOp::Min => {
                let max = op == ReduceOp::Max;
                let n = if vd.is_float() {
                    self.fminmax(&cur, &x, vd, max)
                } else {
                    let s = if vd.is_signed_int() { "s" } else { "u" };
                    self.call(t, &format!("llvm.{s}{}.{t}", if max { "max" } else { "min" }), &[(t, &cur), (t, &x)])
                };
                self.set(&slot, t, &n);
            }
            ReduceOp::ArgMax | ReduceOp::ArgMin => {
                let max = op == ReduceOp::ArgMax;
                let c = self.get(&count, "i64");
                let first = self.val(format!("icmp eq i64 {c}, 0"));
                let better = if vd.is_float() {
                    let bnan = self.val(format!("fcmp uno {t} {cur}, {cur}"));
                    let xnan = self.val(format!("fcmp uno {t} {x}, {x}"));
                    let gt = self.val(format!("fcmp {} {t} {x}, {cur}", if max { "ogt" } else { "olt" }));
                    let b = self.val(format!("or i1 {xnan}, {gt}"));
                    let nb = self.val(format!("xor i1 {bnan}, true"));
                    self.val(format!("and i1 {b}, {nb}"))
                } else {
                    let signed = src.is_signed_int();
                    let cc = match (max, signed) {
                        (true, true) => "sgt",
                        (true, false) => "ugt",
                        (false, true) => "slt",
                        (false, false) => "ult",
                    };
                    self.val(format!("icmp {cc} {t} {x}, {cur}"))
                };
                let take = self.val(format!("or i1 {first}, {better}"));
                let i = self.get(&index, "i64");
                let ni = self.select(&take, "i64", &c, &i);
                self.set(&index, "i64", &ni);
                let nv = self.select(&take, t, &x, &cur);
                self.set(&slot, t, &nv);
            }
        }
        let c = self.get(&count, "i64");
        let c1 = self.val(format!("add i64 {c}, 1"));
        self.set(&count, "i64", &c1);
        Ok(())
    }
}

fn local_threads(body: &[Inst]) -> Result<u32, Unsupported> {
    tk_abi::launch::local_threads(body).map_err(|message| Unsupported { message })
}

/// Translates one device kernel into an `amdgpu_kernel` function named `name`, with its own
/// attribute group. Returns the function and its LDS declarations, the launch information and
/// the intrinsic declarations it uses.
pub fn kernel(k: &Kernel, name: &str, attr: usize) -> Result<(String, AmdKernel, BTreeSet<String>), Unsupported> {
    let legal = crate::common::Backend::Llvm.legal(k);
    let k = &legal;
    let symbols = tk_abi::launch::symbols(k);
    let local = has_local(&k.body);
    let chain = parallel_chain(&k.body);
    let mode = if local {
        Mode::Blocks
    } else if chain.is_some() {
        Mode::Elements
    } else {
        Mode::Single
    };
    let mut e = Em::new(k, name, mode);
    let mut params: Vec<String> = (0..k.bufs.len()).map(|i| format!("ptr addrspace(1) %b{i}")).collect();
    for (i, s) in symbols.iter().enumerate() {
        params.push(format!("i64 %d{i}"));
        e.syms.insert(s.clone(), format!("%d{i}"));
    }
    params.push("ptr addrspace(1) %err".into());
    params.push("i64 %ngroups".into());
    e.bind_dims(k);
    let tid32 = e.call("i32", "llvm.amdgcn.workitem.id.x", &[]);
    e.tid = e.val(format!("zext i32 {tid32} to i64"));
    e.tid0 = e.val(format!("icmp eq i32 {tid32}, 0"));
    let wg32 = e.call("i32", "llvm.amdgcn.workgroup.id.x", &[]);
    let wg = e.val(format!("zext i32 {wg32} to i64"));
    let launch = match mode {
        Mode::Single => {
            let wg0 = e.val(format!("icmp eq i32 {wg32}, 0"));
            let go = e.val(format!("and i1 {wg0}, {}", e.tid0));
            let run = e.new_label();
            e.cbr(&go, &run, "done");
            e.label(&run);
            e.block(&k.body)?;
            Launch::Single
        }
        Mode::Elements => {
            let Some((chain, inner)) = chain else { return unsupported("no parallel range") };
            let mut total = "1".to_string();
            let mut exts = Vec::new();
            let mut ext_dim = Dim::constant(1);
            for (_, x) in &chain {
                let v = e.dim(x);
                total = e.val(format!("mul i64 {total}, {v}"));
                exts.push(v);
                ext_dim = ext_dim.mul(x);
            }
            let base = e.val(format!("mul i64 {wg}, {THREADS}"));
            let start = e.val(format!("add i64 {base}, {}", e.tid));
            let stride = e.val(format!("mul i64 %ngroups, {THREADS}"));
            let idx = e.slot("idx", "i64");
            let chain_vars: Vec<usize> = chain.iter().map(|c| c.0).collect();
            let idx2 = idx.clone();
            e.counted(&idx, &start, &total, &stride, |e, _| {
                let mut rest = e.get(&idx2, "i64");
                for (i, v) in chain_vars.iter().enumerate().rev() {
                    let slot = e.var_slot(*v);
                    if i == 0 {
                        e.set(&slot, "i64", &rest);
                    } else {
                        let x = exts[i].clone();
                        let r = e.val(format!("srem i64 {rest}, {x}"));
                        e.set(&slot, "i64", &r);
                        rest = e.val(format!("sdiv i64 {rest}, {x}"));
                    }
                }
                e.block(inner)
            })?;
            Launch::Elements { extent: ext_dim, threads: THREADS }
        }
        Mode::Blocks => {
            let threads = local_threads(&k.body)?;
            match &k.body[..] {
                [Inst::Range { var, extent, kind: RangeKind::Global, body }] => {
                    let v = e.var_slot(*var);
                    let hi = e.dim(extent);
                    e.counted(&v, &wg, &hi, "%ngroups", |e, _| e.block(body))?;
                    Launch::Blocks { extent: Some(extent.clone()), threads }
                }
                body => {
                    let wg0 = e.val(format!("icmp eq i32 {wg32}, 0"));
                    let run = e.new_label();
                    e.cbr(&wg0, &run, "done");
                    e.label(&run);
                    e.block(body)?;
                    Launch::Blocks { extent: None, threads }
                }
            }
        }
    };
    let threads = match launch {
        Launch::Blocks { threads, .. } => threads,
        Launch::Elements { threads, .. } => threads,
        Launch::Single => 1,
    };
    e.label("done");
    e.line("ret void");
    let mut s = String::new();
    let mut lds_bytes = 0;
    for (n, bytes) in &e.lds {
        let _ = writeln!(s, "@\"{n}\" = internal addrspace(3) global [{bytes} x i8] poison, align 8");
        lds_bytes += bytes;
    }
    let _ = writeln!(s, "define amdgpu_kernel void @\"{name}\"({}) #{attr} {{", params.join(", "));
    s.push_str("entry:\n");
    s.push_str(&e.allocas);
    s.push_str(&e.out);
    s.push_str("}\n");
    let _ = writeln!(
        s,
        "attributes #{attr} = {{ nounwind \"amdgpu-flat-work-group-size\"=\"1,{}\" \"uniform-work-group-size\"=\"true\" \
         \"denormal-fp-math\"=\"ieee,ieee\" \"denormal-fp-math-f32\"=\"ieee,ieee\" \"amdgpu-no-dispatch-ptr\" \
         \"amdgpu-no-queue-ptr\" \"amdgpu-no-dispatch-id\" \"amdgpu-no-implicitarg-ptr\" \"amdgpu-no-hostcall-ptr\" \
         \"amdgpu-no-heap-ptr\" \"amdgpu-no-multigrid-sync-arg\" \"amdgpu-no-default-queue\" \
         \"amdgpu-no-completion-action\" \"amdgpu-no-lds-kernel-id\" \"amdgpu-no-workitem-id-y\" \
         \"amdgpu-no-workitem-id-z\" \"amdgpu-no-workgroup-id-y\" \"amdgpu-no-workgroup-id-z\" \"target-features\"=\"+wavefrontsize32\" }}",
        threads.max(32)
    );
    let info = AmdKernel {
        name: name.to_string(),
        symbols,
        checks: tk_abi::launch::kernel_info(k).checks,
        launch,
        shared_bytes: lds_bytes,
    };
    Ok((s, info, e.decls))
}

/// Whether a vectorised body can run its lanes side by side (no sequential loop, workgroup
/// memory or nested vectorised range).
fn lanes_ok(body: &[Inst]) -> bool {
    body.iter().all(|i| match i {
        Inst::Range { kind: RangeKind::Vectorized(_) | RangeKind::Local, .. } => false,
        Inst::Range { body, .. } => lanes_ok(body),
        Inst::Loop { .. }
        | Inst::LocalAlloc { .. }
        | Inst::LocalLoad { .. }
        | Inst::LocalStore { .. }
        | Inst::Barrier
        | Inst::Mma { .. }
        | Inst::AtomicAdd { .. } => false,
        _ => true,
    })
}

/// The registers and accumulators a body defines.
fn defs(body: &[Inst], out: &mut HashSet<usize>) {
    for i in body {
        match i {
            Inst::Range { body, .. } => defs(body, out),
            Inst::Const { dst, .. }
            | Inst::Index { dst, .. }
            | Inst::Load { dst, .. }
            | Inst::Alu { dst, .. }
            | Inst::AccGet { dst, .. }
            | Inst::Copy { dst, .. } => {
                out.insert(*dst);
            }
            Inst::AccNew { acc, .. } => {
                out.insert(*acc);
            }
            _ => {}
        }
    }
}

/// The number of instructions in a body, nested ones included.
fn size(body: &[Inst]) -> usize {
    body.iter().map(|i| if let Inst::Range { body, .. } = i { 1 + size(body) } else { 1 }).sum()
}

/// Loop metadata of kernel `i` of a module is numbered from `(i + 1) * LOOP_MD_PER_KERNEL`.
pub const LOOP_MD_PER_KERNEL: usize = 100_000;

/// The number of the loop property "do not vectorise this loop" that laned loops name.
const NO_LOOP_VECTORIZER: usize = 1;

/// Translates one device kernel for the host CPU into a function named `name` with the CPU
/// kernel ABI of the Cranelift backend (`tk_abi::cpu::KernelFn`: buffers, dimension values,
/// the part `[lo, hi)` of the parallel range, three error slots; the result is 0 or the failed
/// check's number plus one). Its attributes are group `#0` (the module's: the host's `target-cpu` and
/// `target-features`, in attribute group `#0`). Returns the function and the declarations it uses.
///
/// The body is the same kernel IR the Cranelift backend compiles, in the same order: unrolled
/// ranges are plain loops, vectorised ranges run their lanes' copies side by side (`tiled`), and
/// every lane computes its scalar iteration, so both tiers compute identical bits. What the emitter cannot compile on the CPU (atomic adds,
/// barriers followed by code) is an `Unsupported` error; the kernel then stays on Cranelift.
/// `index` is the kernel's place in its module (it numbers the kernel's loop metadata).
pub fn cpu_kernel(
    k: &Kernel,
    name: &str,
    tile_rows: usize,
    index: usize,
) -> Result<(String, BTreeSet<String>), Unsupported> {
    let legal = crate::common::Backend::LlvmCpu.legal(k);
    let k = &legal;
    let symbols = tk_abi::launch::symbols(k);
    let mut e = Em::new(k, name, Mode::Single);
    e.cpu = true;
    e.cpu_top = tk_abi::launch::parallel_range(k).is_some();
    e.tile_rows = tile_rows;
    e.loop_md = (index + 1) * LOOP_MD_PER_KERNEL;
    e.tid0 = "true".into();
    e.tid = "0".into();
    for i in 0..k.bufs.len() {
        let a = e.val(format!("getelementptr inbounds ptr, ptr %bufs, i64 {i}"));
        e.line(format!("%b{i} = load ptr, ptr {a}, align 8"));
    }
    for (i, s) in symbols.iter().enumerate() {
        let a = e.val(format!("getelementptr inbounds i64, ptr %dimv, i64 {i}"));
        e.line(format!("%d{i} = load i64, ptr {a}, align 8"));
        e.syms.insert(s.clone(), format!("%d{i}"));
    }
    e.bind_dims(k);
    e.block(&k.body)?;
    e.label("done");
    e.line("ret i32 0");
    let mut s = String::new();
    let _ = writeln!(
        s,
        "define i32 @\"{name}\"(ptr noalias nocapture readonly %bufs, ptr noalias nocapture readonly %dimv, i64 %lo, \
         i64 %hi, ptr noalias nocapture %err) #0 {{"
    );
    s.push_str("entry:\n");
    s.push_str(&e.allocas);
    s.push_str(&e.out);
    s.push_str("}\n");
    // The shared translation writes GPU address spaces; host memory has one.
    let s = s
        .replace(" addrspace(1)", "")
        .replace(", addrspace(5)", "")
        .replace(" addrspace(5)", "")
        .replace(" addrspace(3)", "");
    Ok((s, e.decls))
}
