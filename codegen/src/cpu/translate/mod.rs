//! Kernel IR -> Cranelift IR.
//!
//! Every device kernel becomes one function with the signature
//! `fn(bufs: *const *mut u8, dims: *const i64, lo: i64, hi: i64, err: *mut i64) -> i32`:
//! `bufs` are the kernel's buffers in [`Kernel::bufs`] order, `dims` the values of the symbols
//! in [`symbols`] order, and `[lo, hi)` the part of the outermost parallel range this call runs
//! (the runtime splits it over threads). The result is 0, or `k + 1` when check `k` (in program
//! order) failed; then `err` holds the offending value and the bounds.
//!
//! Values live in registers of these types: f32 as F32; f64, f16 and bf16 as F64 (f16 and bf16
//! values are exact in f64; their arithmetic arrives legalized as f32 operations and a cast,
//! which rounds through a host helper); integers in their width; bool as I8 holding 0 or 1.

use crate::common::{Unsupported, acc_value_dtype, decomposed, legalized, unsupported};
use tk_ir::kernel::reg_dtypes;

mod vector;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{
    AbiParam, Block, ExtFuncData, ExternalName, FuncRef, Function, InstBuilder, MemFlagsData, Signature, StackSlotData,
    StackSlotKind, Type, UserExternalName, Value, types,
};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::collections::HashMap;
pub use tk_abi::launch::{CheckInfo, KernelInfo, kernel_info, parallel_range, symbols};
pub(crate) use tk_abi::launch::{collect_checks, collect_dims};
use tk_ir::dims::{Atom, Dim};
use tk_ir::dtype::DType;
use tk_ir::graph::{BinaryOp, IExpr, Op, ReduceOp, Scalar, UnaryOp};
use tk_ir::kernel::{Inst, Kernel, RangeKind};

/// Columns per block of a blocked matrix-product-like kernel (see `Inst::Range` in `inst`).
const BLOCK: i64 = 64;

/// The register type of a dtype.
pub fn reg_type(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::F64 | DType::F16 | DType::Bf16 => types::F64,
        DType::I8 | DType::U8 | DType::Bool => types::I8,
        DType::I16 => types::I16,
        DType::I32 | DType::U32 => types::I32,
        DType::I64 => types::I64,
    }
}

/// The memory type of a dtype.
fn mem_type(d: DType) -> Type {
    match d {
        DType::F16 | DType::Bf16 => types::I16,
        d => reg_type(d),
    }
}

/// The kernel function's signature for a pointer type.
pub fn signature(sig: &mut Signature, ptr: Type) {
    for t in [ptr, ptr, types::I64, types::I64, ptr] {
        sig.params.push(AbiParam::new(t));
    }
    sig.returns.push(AbiParam::new(types::I32));
}

/// The signature of a helper.
pub fn helper_signature(sig: &mut Signature, params: &str, ret: char) {
    let t = |c: char| match c {
        'f' => types::F64,
        'i' => types::I64,
        _ => types::I32,
    };
    for c in params.chars() {
        sig.params.push(AbiParam::new(t(c)));
    }
    sig.returns.push(AbiParam::new(t(ret)));
}

pub(super) struct AccVars {
    op: ReduceOp,
    src: DType,
    /// The dtype of the running value.
    vd: DType,
    value: Variable,
    /// Elements pushed so far (I64).
    count: Variable,
    /// The index of the best element (arg reductions).
    index: Variable,
}

pub(super) struct Tr<'a, 'f> {
    pub(super) b: &'a mut FunctionBuilder<'f>,
    pub(super) ptr: Type,
    pub(super) dtypes: Vec<Option<DType>>,
    pub(super) regs: HashMap<usize, Variable>,
    pub(super) vars: HashMap<usize, Variable>,
    pub(super) dims: HashMap<Dim, Value>,
    pub(super) bufs: Vec<Value>,
    pub(super) accs: HashMap<usize, AccVars>,
    pub(super) helpers: HashMap<&'static str, FuncRef>,
    /// Helpers the module declares (function index, signature), imported on first use.
    pub(super) decls: HashMap<&'static str, (u32, Signature)>,
    pub(super) locals: HashMap<usize, (cranelift_codegen::ir::StackSlot, DType)>,
    pub(super) check_ids: HashMap<*const Inst, usize>,
    pub(super) err: Value,
    pub(super) lo: Value,
    pub(super) hi: Value,
    pub(super) top: bool,
    pub(super) buf_dtypes: Vec<DType>,
    /// The vectorised range being emitted (see the `vector` module).
    pub(super) vec: Option<vector::VecState>,
    /// The lane being emitted, in the lane mode of a vectorised range.
    pub(super) lane: Option<usize>,
    /// SIMD accumulators: operation, value dtype, element count.
    pub(super) simd_acc_meta: HashMap<usize, (ReduceOp, DType, Variable)>,
    /// Integer constants by register (shift amounts in SIMD code).
    pub(super) consts: HashMap<usize, i64>,
    /// Whether the target has fused multiply-add for SIMD registers.
    pub(super) simd_fma: bool,
    /// The kernel's knobs (vector width of a one-axis parallel range).
    pub(super) knobs_vector: u32,
    /// The number of output axes.
    pub(super) rank: usize,
}

fn flags() -> MemFlagsData {
    MemFlagsData::trusted()
}

impl Tr<'_, '_> {
    pub(super) fn dtype(&self, r: usize) -> DType {
        self.dtypes.get(r).copied().flatten().unwrap_or(DType::I64)
    }
    fn var(&mut self, r: usize) -> Variable {
        if let Some(v) = self.regs.get(&r) {
            return *v;
        }
        let t = reg_type(self.dtype(r));
        let v = self.b.declare_var(t);
        self.regs.insert(r, v);
        v
    }
    pub(super) fn get(&mut self, r: usize) -> Value {
        if let Some(l) = self.lane
            && self.form(r).is_some()
        {
            return self.get_lane(r, l);
        }
        let v = self.var(r);
        self.b.use_var(v)
    }
    pub(super) fn set(&mut self, r: usize, val: Value) {
        if let Some(l) = self.lane
            && self.form(r).is_some()
        {
            return self.set_lane(r, l, val);
        }
        let v = self.var(r);
        self.b.def_var(v, val);
    }
    /// The key of an accumulator's state (one per lane in lane mode).
    fn acc_key(&self, acc: usize) -> usize {
        match self.lane {
            Some(l) if self.form(acc).is_some() => (acc << 8) | (l + 1),
            _ => acc << 8,
        }
    }
    pub(super) fn buf_dtype(&self, buf: usize) -> DType {
        self.buf_dtypes.get(buf).copied().unwrap_or(DType::F32)
    }
    /// The address of element `i` (an i64) of kernel buffer `buf`.
    pub(super) fn elem_addr(&mut self, buf: usize, i: Value, d: DType) -> Value {
        let base = self.bufs[buf];
        self.offset_addr(base, i, d)
    }
    /// The address of element `index` of a local-memory stack slot.
    fn local_addr(&mut self, slot: cranelift_codegen::ir::StackSlot, index: &IExpr, d: DType) -> Value {
        let i = self.iexpr(index);
        let base = self.b.ins().stack_addr(self.ptr, slot, 0);
        self.offset_addr(base, i, d)
    }
    /// `base + i * size_of(d)` in the pointer type.
    fn offset_addr(&mut self, base: Value, i: Value, d: DType) -> Value {
        let bytes = i64::from(d.bits() / 8);
        let off = self.b.ins().imul_imm_s(i, bytes);
        let off = if self.ptr == types::I64 { off } else { self.b.ins().ireduce(self.ptr, off) };
        self.b.ins().iadd(base, off)
    }
    fn i64c(&mut self, v: i64) -> Value {
        self.b.ins().iconst(types::I64, v)
    }
    fn call(&mut self, name: &'static str, args: &[Value]) -> Value {
        let f = match self.helpers.get(name) {
            Some(f) => *f,
            None => {
                let (index, sig) = self
                    .decls
                    .get(name)
                    .cloned()
                    .unwrap_or_else(|| (0, Signature::new(self.b.func.signature.call_conv)));
                let sig = self.b.import_signature(sig);
                let user = self.b.func.declare_imported_user_function(UserExternalName { namespace: 0, index });
                let f = self.b.import_function(ExtFuncData {
                    name: ExternalName::user(user),
                    signature: sig,
                    colocated: false,
                    patchable: false,
                });
                self.helpers.insert(name, f);
                f
            }
        };
        let c = self.b.ins().call(f, args);
        self.b.inst_results(c)[0]
    }

    /// Emits the value of a dimension polynomial (only at function entry).
    fn eval_dim(&mut self, d: &Dim, syms: &HashMap<String, Value>) -> Value {
        let mut total = self.i64c(0);
        for (mono, c) in d.terms() {
            let mut v = self.i64c(c);
            for a in mono {
                let x = match a {
                    Atom::Sym(s) => syms.get(s).copied().unwrap_or(total),
                    Atom::FloorDiv(p, q) => {
                        let pv = self.eval_dim(p, syms);
                        let qv = self.i64c(*q);
                        self.floor_div(pv, qv)
                    }
                };
                v = self.b.ins().imul(v, x);
            }
            total = self.b.ins().iadd(total, v);
        }
        total
    }
    fn dim(&mut self, d: &Dim) -> Value {
        match d.as_const() {
            Some(c) => self.i64c(c),
            None => match self.dims.get(d) {
                Some(v) => *v,
                None => self.i64c(0),
            },
        }
    }

    /// Euclidean division and remainder of i64 values (x / 0 = 0, x % 0 = 0), as the interpreters
    /// compute index expressions.
    /// Truncating `a / b` and `a % b` of signed integers that never trap: the divisor is
    /// replaced by 1 where it is 0 or -1 (callers fix those cases up). Returns (q, r, b == 0,
    /// b == -1, the constant 0).
    fn safe_sdivrem(&mut self, a: Value, b: Value, ty: Type) -> (Value, Value, Value, Value, Value) {
        let zero = self.b.ins().iconst(ty, 0);
        let one = self.b.ins().iconst(ty, 1);
        let b0 = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
        let m1 = self.b.ins().icmp_imm_s(IntCC::Equal, b, -1);
        let bad = self.b.ins().bor(b0, m1);
        let safe = self.b.ins().select(bad, one, b);
        let q = self.b.ins().sdiv(a, safe);
        let r = self.b.ins().srem(a, safe);
        (q, r, b0, m1, zero)
    }

    fn euclid(&mut self, a: Value, b: Value, rem: bool) -> Value {
        let (q, r, b0, m1, zero) = self.safe_sdivrem(a, b, types::I64);
        // div_euclid: when r < 0, q -= sign(b) and r += |b|.
        let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
        let bpos = self.b.ins().icmp_imm_s(IntCC::SignedGreaterThan, b, 0);
        let qm = self.b.ins().iadd_imm_s(q, -1);
        let qp = self.b.ins().iadd_imm_s(q, 1);
        let qadj = self.b.ins().select(bpos, qm, qp);
        let q2 = self.b.ins().select(neg, qadj, q);
        let babs = self.b.ins().iabs(b);
        let radj = self.b.ins().iadd(r, babs);
        let r2 = self.b.ins().select(neg, radj, r);
        // b == -1: x / -1 = -x (wrapping), x % -1 = 0.
        let negx = self.b.ins().ineg(a);
        if rem {
            let r3 = self.b.ins().select(m1, zero, r2);
            self.b.ins().select(b0, zero, r3)
        } else {
            let q3 = self.b.ins().select(m1, negx, q2);
            self.b.ins().select(b0, zero, q3)
        }
    }

    /// Floor division of i64 values by a positive divisor.
    fn floor_div(&mut self, a: Value, b: Value) -> Value {
        self.euclid(a, b, false)
    }

    pub(super) fn iexpr(&mut self, e: &IExpr) -> Value {
        match e {
            IExpr::Coord(k) => match self.vars.get(k) {
                Some(v) => {
                    let v = *v;
                    self.b.use_var(v)
                }
                None => self.i64c(0),
            },
            IExpr::Dim(d) => self.dim(d),
            IExpr::Data(r) => {
                let d = self.dtype(*r);
                let v = self.get(*r);
                self.index_of(v, d)
            }
            IExpr::Add(a, b) => {
                let (x, y) = (self.iexpr(a), self.iexpr(b));
                self.b.ins().iadd(x, y)
            }
            IExpr::Mul(a, b) => {
                let (x, y) = (self.iexpr(a), self.iexpr(b));
                self.b.ins().imul(x, y)
            }
            IExpr::Div(a, b) | IExpr::Mod(a, b) => {
                let rem = matches!(e, IExpr::Mod(..));
                let x = self.iexpr(a);
                // A positive constant divisor (the common case): plain floor division.
                if let IExpr::Dim(d) = &**b
                    && let Some(c) = d.as_const()
                    && c > 0
                {
                    if c.count_ones() == 1 {
                        let sh = c.trailing_zeros() as i64;
                        return if rem { self.b.ins().band_imm_s(x, c - 1) } else { self.b.ins().sshr_imm_s(x, sh) };
                    }
                    let q = self.b.ins().sdiv_imm_s(x, c);
                    let r = self.b.ins().srem_imm_s(x, c);
                    let neg = self.b.ins().icmp_imm_s(IntCC::SignedLessThan, r, 0);
                    return if rem {
                        let r2 = self.b.ins().iadd_imm_s(r, c);
                        self.b.ins().select(neg, r2, r)
                    } else {
                        let q2 = self.b.ins().iadd_imm_s(q, -1);
                        self.b.ins().select(neg, q2, q)
                    };
                }
                let y = self.iexpr(b);
                self.euclid(x, y, rem)
            }
        }
    }

    /// A register value as an index (`scalar_index`).
    fn index_of(&mut self, v: Value, d: DType) -> Value {
        match d {
            DType::I64 => v,
            DType::I8 | DType::I16 | DType::I32 => self.b.ins().sextend(types::I64, v),
            DType::U8 | DType::U32 | DType::Bool => self.b.ins().uextend(types::I64, v),
            DType::F32 => {
                let w = self.b.ins().fpromote(types::F64, v);
                self.b.ins().fcvt_to_sint_sat(types::I64, w)
            }
            _ => self.b.ins().fcvt_to_sint_sat(types::I64, v),
        }
    }

    /// An f64 value rounded to a float dtype's register representation.
    fn round_f64(&mut self, v: Value, to: DType) -> Value {
        match to {
            DType::F32 => self.b.ins().fdemote(types::F32, v),
            DType::F16 => self.call("tk_round_f16", &[v]),
            DType::Bf16 => self.call("tk_round_bf16", &[v]),
            _ => v,
        }
    }
    fn as_f64(&mut self, v: Value, d: DType) -> Value {
        if d == DType::F32 { self.b.ins().fpromote(types::F64, v) } else { v }
    }

    /// Converts a value between dtypes with the semantics of the language's `as`.
    pub(super) fn convert(&mut self, v: Value, from: DType, to: DType) -> Value {
        if from == to {
            return v;
        }
        if to == DType::Bool {
            return if from.is_float() {
                let z = if from == DType::F32 { self.b.ins().f32const(0.0) } else { self.b.ins().f64const(0.0) };
                self.b.ins().fcmp(FloatCC::NotEqual, v, z)
            } else {
                self.b.ins().icmp_imm_s(IntCC::NotEqual, v, 0)
            };
        }
        if to.is_float() {
            let w = if from.is_float() {
                if from == DType::F32 && to == DType::F64 {
                    return self.b.ins().fpromote(types::F64, v);
                }
                self.as_f64(v, from)
            } else {
                let i = self.index_of(v, from);
                self.b.ins().fcvt_from_sint(types::F64, i)
            };
            return self.round_f64(w, to);
        }
        // To an integer.
        let t = reg_type(to);
        let wide = if from.is_float() {
            let w = self.as_f64(v, from);
            let i = self.b.ins().fcvt_to_sint_sat(types::I64, w);
            match to.int_range() {
                Some((lo, hi)) if to != DType::I64 => {
                    let l = self.i64c(lo as i64);
                    let h = self.i64c(hi as i64);
                    let c = self.b.ins().smax(i, l);
                    self.b.ins().smin(c, h)
                }
                _ => i,
            }
        } else {
            self.index_of(v, from)
        };
        if t == types::I64 { wide } else { self.b.ins().ireduce(t, wide) }
    }

    fn constant(&mut self, s: Scalar, d: DType) -> Value {
        let s = tk_ir::graph::interp::scalar_to(s, d);
        match (s, d) {
            (Scalar::Float(f), DType::F32) => self.b.ins().f32const(f as f32),
            (Scalar::Float(f), _) => self.b.ins().f64const(f),
            (Scalar::Int(i), d) => {
                let t = reg_type(d);
                let bits = t.bits();
                let v = if bits == 64 { i as i64 } else { (i as i64) & ((1i64 << bits) - 1) };
                self.b.ins().iconst(t, v)
            }
            (Scalar::Bool(b), _) => self.b.ins().iconst(types::I8, i64::from(b)),
        }
    }

    fn float_const(&mut self, v: f64, d: DType) -> Value {
        if d == DType::F32 { self.b.ins().f32const(v as f32) } else { self.b.ins().f64const(v) }
    }

    fn alu(&mut self, op: &Op, args: &[usize], d: DType) -> Result<Value, Unsupported> {
        let vals: Vec<Value> = args.iter().map(|r| self.get(*r)).collect();
        let ts: Vec<DType> = args.iter().map(|r| self.dtype(*r)).collect();
        Ok(match op {
            Op::Cast => self.convert(vals[0], ts[0], d),
            Op::Bitcast => {
                if reg_type(ts[0]).bits() != reg_type(d).bits() || ts[0].bits() != d.bits() {
                    return unsupported(format!("bitcast from {} to {d}", ts[0]));
                }
                self.b.ins().bitcast(reg_type(d), MemFlagsData::new(), vals[0])
            }
            Op::Where => {
                let a = self.convert(vals[1], ts[1], d);
                let b = self.convert(vals[2], ts[2], d);
                let c = if ts[0] == DType::Bool { vals[0] } else { self.convert(vals[0], ts[0], DType::Bool) };
                self.b.ins().select(c, a, b)
            }
            Op::Fma => {
                if !d.is_float() {
                    return unsupported(format!("fma on {d}"));
                }
                if !matches!(d, DType::F32 | DType::F64) {
                    return unsupported(legalized(&format!("fma on {d}")));
                }
                self.b.ins().fma(vals[0], vals[1], vals[2])
            }
            Op::Unary(u) => self.unary(*u, vals[0], ts[0], d)?,
            Op::Binary(bop) => self.binary(*bop, vals[0], vals[1], ts[0], d)?,
            other => return unsupported(format!("operation {other:?} in an ALU instruction")),
        })
    }

    fn unary(&mut self, u: UnaryOp, x: Value, t: DType, d: DType) -> Result<Value, Unsupported> {
        if t != d && !matches!(u, UnaryOp::Not) {
            let x = self.convert(x, t, d);
            return self.unary(u, x, d, d);
        }
        if t == DType::Bool {
            return match u {
                UnaryOp::Not => Ok(self.b.ins().bxor_imm_s(x, 1)),
                _ => unsupported(format!("{u:?} on bool")),
            };
        }
        if t.is_int() {
            return Ok(match u {
                UnaryOp::Neg => self.b.ins().ineg(x),
                UnaryOp::Not => self.b.ins().bnot(x),
                UnaryOp::Abs if t.is_signed_int() => self.b.ins().iabs(x),
                UnaryOp::Abs | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round => x,
                _ => return unsupported(format!("{u:?} on {t}")),
            });
        }
        let r = match u {
            UnaryOp::Neg => self.b.ins().fneg(x),
            UnaryOp::Abs => self.b.ins().fabs(x),
            UnaryOp::Floor => self.b.ins().floor(x),
            UnaryOp::Ceil => self.b.ins().ceil(x),
            UnaryOp::Round => self.b.ins().nearest(x),
            UnaryOp::Sqrt if matches!(t, DType::F16 | DType::Bf16) => {
                return unsupported(legalized(&format!("sqrt on {t}")));
            }
            UnaryOp::Sqrt => self.b.ins().sqrt(x),
            UnaryOp::Not => return unsupported(format!("not on {t}")),
            UnaryOp::Rsqrt => {
                let w = self.as_f64(x, t);
                let s = self.b.ins().sqrt(w);
                let one = self.b.ins().f64const(1.0);
                let r = self.b.ins().fdiv(one, s);
                self.round_f64(r, t)
            }
            _ => {
                let name = match u {
                    UnaryOp::Exp => "tk_exp",
                    UnaryOp::Exp2 => "tk_exp2",
                    UnaryOp::Log => "tk_log",
                    UnaryOp::Log2 => "tk_log2",
                    UnaryOp::Sin => "tk_sin",
                    UnaryOp::Cos => "tk_cos",
                    UnaryOp::Tanh => "tk_tanh",
                    _ => "tk_erf",
                };
                let w = self.as_f64(x, t);
                let r = self.call(name, &[w]);
                self.round_f64(r, t)
            }
        };
        Ok(r)
    }

    fn binary(&mut self, op: BinaryOp, a: Value, b: Value, t: DType, d: DType) -> Result<Value, Unsupported> {
        use BinaryOp::*;
        if t == DType::Bool {
            return Ok(match op {
                And | Min => self.b.ins().band(a, b),
                Or | Max => self.b.ins().bor(a, b),
                Xor | Ne => self.b.ins().bxor(a, b),
                Eq => self.b.ins().icmp(IntCC::Equal, a, b),
                Lt => self.b.ins().icmp(IntCC::UnsignedLessThan, a, b),
                Le => self.b.ins().icmp(IntCC::UnsignedLessThanOrEqual, a, b),
                Gt => self.b.ins().icmp(IntCC::UnsignedGreaterThan, a, b),
                Ge => self.b.ins().icmp(IntCC::UnsignedGreaterThanOrEqual, a, b),
                _ => self.b.ins().iconst(types::I8, 0),
            });
        }
        if t.is_float() {
            let cmp = |cc| Some(cc);
            let cc = match op {
                Eq => cmp(FloatCC::Equal),
                Ne => cmp(FloatCC::NotEqual),
                Lt => cmp(FloatCC::LessThan),
                Le => cmp(FloatCC::LessThanOrEqual),
                Gt => cmp(FloatCC::GreaterThan),
                Ge => cmp(FloatCC::GreaterThanOrEqual),
                _ => None,
            };
            if let Some(cc) = cc {
                return Ok(self.b.ins().fcmp(cc, a, b));
            }
            let half = matches!(t, DType::F16 | DType::Bf16);
            let r = match op {
                Add if !half => self.b.ins().fadd(a, b),
                Sub if !half => self.b.ins().fsub(a, b),
                Mul if !half => self.b.ins().fmul(a, b),
                Div if !half => self.b.ins().fdiv(a, b),
                Min => self.b.ins().fmin(a, b),
                Max => self.b.ins().fmax(a, b),
                Add | Sub | Mul | Div | Rem => return unsupported(legalized(&format!("{op:?} on {t}"))),
                Pow => return unsupported(decomposed(t)),
                _ => return unsupported(format!("{op:?} on {t}")),
            };
            let _ = d;
            return Ok(r);
        }
        // Integers.
        let signed = t.is_signed_int();
        let bits = i64::from(t.bits());
        let ty = reg_type(t);
        let cc = |s: IntCC, u: IntCC| if signed { s } else { u };
        let r = match op {
            Add => self.b.ins().iadd(a, b),
            Sub => self.b.ins().isub(a, b),
            Mul => self.b.ins().imul(a, b),
            And => self.b.ins().band(a, b),
            Or => self.b.ins().bor(a, b),
            Xor => self.b.ins().bxor(a, b),
            Min => {
                if signed {
                    self.b.ins().smin(a, b)
                } else {
                    self.b.ins().umin(a, b)
                }
            }
            Max => {
                if signed {
                    self.b.ins().smax(a, b)
                } else {
                    self.b.ins().umax(a, b)
                }
            }
            Eq => self.b.ins().icmp(IntCC::Equal, a, b),
            Ne => self.b.ins().icmp(IntCC::NotEqual, a, b),
            Lt => self.b.ins().icmp(cc(IntCC::SignedLessThan, IntCC::UnsignedLessThan), a, b),
            Le => self.b.ins().icmp(cc(IntCC::SignedLessThanOrEqual, IntCC::UnsignedLessThanOrEqual), a, b),
            Gt => self.b.ins().icmp(cc(IntCC::SignedGreaterThan, IntCC::UnsignedGreaterThan), a, b),
            Ge => self.b.ins().icmp(cc(IntCC::SignedGreaterThanOrEqual, IntCC::UnsignedGreaterThanOrEqual), a, b),
            Shl | Shr => {
                // Out of range when b < 0 or b >= bits (an unsigned comparison covers both).
                let oob = self.b.ins().icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, b, bits);
                let zero = self.b.ins().iconst(ty, 0);
                let top = self.b.ins().iconst(ty, bits - 1);
                let sh = self.b.ins().select(oob, top, b);
                if op == Shl {
                    let v = self.b.ins().ishl(a, sh);
                    self.b.ins().select(oob, zero, v)
                } else if signed {
                    self.b.ins().sshr(a, sh)
                } else {
                    let v = self.b.ins().ushr(a, sh);
                    self.b.ins().select(oob, zero, v)
                }
            }
            // The legalize pass made the divisor safe (never 0, never -1 for a signed dtype), so
            // these never trap.
            DivTrunc if signed => self.b.ins().sdiv(a, b),
            DivTrunc => self.b.ins().udiv(a, b),
            RemTrunc if signed => self.b.ins().srem(a, b),
            RemTrunc => self.b.ins().urem(a, b),
            Div | Rem | Pow => return unsupported(legalized(&format!("{op:?} on {t}"))),
        };
        let _ = d;
        Ok(r)
    }

    fn load(&mut self, buf: usize, index: &IExpr, d: DType) -> Value {
        let i = self.iexpr(index);
        let addr = self.elem_addr(buf, i, d);
        let v = self.b.ins().load(mem_type(d), flags(), addr, 0);
        match d {
            DType::F16 | DType::Bf16 => {
                let w = self.b.ins().uextend(types::I32, v);
                self.call(if d == DType::F16 { "tk_f16_value" } else { "tk_bf16_value" }, &[w])
            }
            _ => v,
        }
    }

    fn store(&mut self, buf: usize, index: &IExpr, v: Value, d: DType) {
        let i = self.iexpr(index);
        let addr = self.elem_addr(buf, i, d);
        let v = match d {
            DType::F16 | DType::Bf16 => {
                let w = self.call(if d == DType::F16 { "tk_f16_bits" } else { "tk_bf16_bits" }, &[v]);
                self.b.ins().ireduce(types::I16, w)
            }
            _ => v,
        };
        self.b.ins().store(flags(), v, addr, 0);
    }

    /// Runs `f` only where register `pred` is true.
    fn guarded(
        &mut self,
        pred: Option<usize>,
        f: impl FnOnce(&mut Self) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        match pred {
            None => f(self),
            Some(p) => {
                let c = self.get(p);
                let then = self.b.create_block();
                let cont = self.b.create_block();
                self.b.ins().brif(c, then, &[], cont, &[]);
                self.b.switch_to_block(then);
                self.b.seal_block(then);
                f(self)?;
                self.b.ins().jump(cont, &[]);
                self.b.switch_to_block(cont);
                self.b.seal_block(cont);
                Ok(())
            }
        }
    }

    /// A counted loop `var = lo..hi` around `body`.
    fn counted(
        &mut self,
        lo: Value,
        hi: Value,
        body: impl FnMut(&mut Self, Value) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        self.counted_step(lo, hi, 1, body)
    }

    /// A counted loop `var = lo, lo + step, ... < hi` around `body`.
    fn counted_step(
        &mut self,
        lo: Value,
        hi: Value,
        step: i64,
        mut body: impl FnMut(&mut Self, Value) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        self.counted_exit(lo, hi, step, |s, i, _| body(s, i))
    }

    /// A counted loop whose body also gets the block after the loop (to leave early).
    fn counted_exit(
        &mut self,
        lo: Value,
        hi: Value,
        step: i64,
        mut body: impl FnMut(&mut Self, Value, Block) -> Result<(), Unsupported>,
    ) -> Result<(), Unsupported> {
        let i = self.b.declare_var(types::I64);
        self.b.def_var(i, lo);
        let header = self.b.create_block();
        let bodyb = self.b.create_block();
        let exit = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let iv = self.b.use_var(i);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, iv, hi);
        self.b.ins().brif(more, bodyb, &[], exit, &[]);
        self.b.switch_to_block(bodyb);
        self.b.seal_block(bodyb);
        body(self, iv, exit)?;
        let iv = self.b.use_var(i);
        let next = self.b.ins().iadd_imm_s(iv, step);
        self.b.def_var(i, next);
        self.b.ins().jump(header, &[]);
        self.b.seal_block(header);
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
        Ok(())
    }

    /// The loop `var in lo..hi` around `body`: vectorised `width` wide when the body allows,
    /// with a scalar tail.
    fn range_loop(&mut self, var: usize, lo: Value, hi: Value, width: u32, body: &[Inst]) -> Result<(), Unsupported> {
        let v = self.b.declare_var(types::I64);
        self.vars.insert(var, v);
        let mut lo = lo;
        if width > 1
            && let Some(plan) = self.vector_plan(var, width as usize, body)
        {
            // The vector loop over whole groups of w, then the scalar tail.
            let w = i64::from(width);
            let n = self.b.ins().isub(hi, lo);
            let zero = self.i64c(0);
            let n = self.b.ins().smax(n, zero);
            let whole = self.b.ins().band_imm_s(n, -w);
            let main = self.b.ins().iadd(lo, whole);
            let mut plan = Some(plan);
            self.counted_step(lo, main, w, |s, base| {
                let Some(mut p) = plan.take() else { return Ok(()) };
                s.b.def_var(v, base);
                for l in 0..w {
                    let lv = s.b.declare_var(types::I64);
                    let x = s.b.ins().iadd_imm_s(base, l);
                    s.b.def_var(lv, x);
                    p.var_lanes.push(lv);
                }
                s.vec = Some(p);
                let r = s.block(body);
                s.vec = None;
                r
            })?;
            lo = main;
        }
        self.counted(lo, hi, |s, iv| {
            s.b.def_var(v, iv);
            s.block(body)
        })
    }

    fn block(&mut self, body: &[Inst]) -> Result<(), Unsupported> {
        for inst in body {
            if self.vec.is_some() {
                self.vinst(inst)?;
            } else {
                self.inst(inst)?;
            }
        }
        Ok(())
    }

    pub(super) fn inst(&mut self, inst: &Inst) -> Result<(), Unsupported> {
        match inst {
            Inst::Range { var, extent, kind, body } => {
                let top = std::mem::replace(&mut self.top, false);
                let ext = self.dim(extent);
                let (lo, hi) = if top && *kind == RangeKind::Global {
                    let z = self.i64c(0);
                    let lo = self.b.ins().smax(self.lo, z);
                    let hi = self.b.ins().smin(self.hi, ext);
                    (lo, hi)
                } else {
                    (self.i64c(0), ext)
                };
                if *kind == RangeKind::Local {
                    // Threads of a workgroup run one after another: valid when nothing runs
                    // after a barrier.
                    let last = body.iter().rposition(|i| !matches!(i, Inst::Barrier)).map_or(0, |p| p + 1);
                    if body[..last].iter().any(|i| matches!(i, Inst::Barrier)) {
                        return unsupported("a workgroup with code after a barrier (use group=1 on the CPU)");
                    }
                }
                // A one-axis parallel range is also the innermost axis: vectorise each chunk.
                let width = match kind {
                    RangeKind::Vectorized(w) => *w,
                    RangeKind::Global if top && self.rank == 1 => self.knobs_vector,
                    _ => 1,
                };
                // Matrix-product-like kernels (a reduction under a vectorised inner range) run
                // the inner range in blocks, outside the parallel range, so the block of every
                // operand the reduction reads stays in cache across rows.
                if top
                    && *kind == RangeKind::Global
                    && let [Inst::Range { var: jv, extent: je, kind: RangeKind::Vectorized(jw), body: jbody }] =
                        body.as_slice()
                    && jbody
                        .iter()
                        .any(|i| matches!(i, Inst::Range { kind: RangeKind::Reduce | RangeKind::Unrolled(_), .. }))
                {
                    let block = i64::from(*jw).max(BLOCK);
                    let jext = self.dim(je);
                    let z = self.i64c(0);
                    let iv = self.b.declare_var(types::I64);
                    self.vars.insert(*var, iv);
                    return self.counted_step(z, jext, block, |s, jb| {
                        let end = s.b.ins().iadd_imm_s(jb, block);
                        let jhi = s.b.ins().smin(end, jext);
                        s.counted(lo, hi, |s, i| {
                            s.b.def_var(iv, i);
                            s.range_loop(*jv, jb, jhi, *jw, jbody)
                        })
                    });
                }
                if let RangeKind::Unrolled(f) = kind
                    && *f > 1
                {
                    // f iterations per trip, in order, then the remainder one at a time.
                    let f = i64::from(*f);
                    let v = self.b.declare_var(types::I64);
                    self.vars.insert(*var, v);
                    let n = self.b.ins().isub(hi, lo);
                    let zero = self.i64c(0);
                    let n = self.b.ins().smax(n, zero);
                    let whole = self.b.ins().band_imm_s(n, -f);
                    let main = self.b.ins().iadd(lo, whole);
                    self.counted_step(lo, main, f, |s, base| {
                        for j in 0..f {
                            let x = s.b.ins().iadd_imm_s(base, j);
                            s.b.def_var(v, x);
                            s.block(body)?;
                        }
                        Ok(())
                    })?;
                    return self.counted(main, hi, |s, iv| {
                        s.b.def_var(v, iv);
                        s.block(body)
                    });
                }
                self.range_loop(*var, lo, hi, width, body)
            }
            Inst::Const { dst, value, dtype } => {
                if let Scalar::Int(i) = value
                    && self.lane.is_none()
                {
                    self.consts.insert(*dst, *i as i64);
                }
                let v = self.constant(*value, *dtype);
                self.set(*dst, v);
                Ok(())
            }
            Inst::Index { dst, expr } => {
                let v = self.iexpr(expr);
                self.set(*dst, v);
                Ok(())
            }
            Inst::Load { dst, buf, index, pred, fill, dtype, .. } => {
                match pred {
                    None => {
                        let v = self.load(*buf, index, *dtype);
                        self.set(*dst, v);
                    }
                    Some(p) => {
                        let f = self.constant(*fill, *dtype);
                        self.set(*dst, f);
                        let (buf, dst, d) = (*buf, *dst, *dtype);
                        self.guarded(Some(*p), |s| {
                            let v = s.load(buf, index, d);
                            s.set(dst, v);
                            Ok(())
                        })?;
                    }
                }
                Ok(())
            }
            Inst::Store { buf, index, value, pred, .. } => {
                let bd = self.dtypes_of_buf(*buf);
                let (buf, value) = (*buf, *value);
                self.guarded(*pred, |s| {
                    let vd = s.dtype(value);
                    let v = s.get(value);
                    let v = s.convert(v, vd, bd);
                    s.store(buf, index, v, bd);
                    Ok(())
                })
            }
            Inst::Alu { dst, op, args, dtype } => {
                let v = self.alu(op, args, *dtype)?;
                self.set(*dst, v);
                Ok(())
            }
            Inst::AccNew { acc, op, src, dtype } => {
                let vd = acc_value_dtype(*op, *src, *dtype);
                if *src == DType::Bool && !matches!(op, ReduceOp::Sum | ReduceOp::Prod) {
                    return unsupported(format!("{op:?} over bool"));
                }
                let init = match op {
                    ReduceOp::Sum | ReduceOp::Dot if vd.is_float() => self.float_const(-0.0, vd),
                    ReduceOp::Sum | ReduceOp::Dot => self.constant(Scalar::Int(0), vd),
                    ReduceOp::Prod if vd.is_float() => self.float_const(1.0, vd),
                    ReduceOp::Prod => self.constant(Scalar::Int(1), vd),
                    ReduceOp::Max | ReduceOp::Min if vd.is_float() => {
                        self.float_const(if *op == ReduceOp::Max { f64::NEG_INFINITY } else { f64::INFINITY }, vd)
                    }
                    ReduceOp::Max | ReduceOp::Min => {
                        let (lo, hi) = vd.int_range().unwrap_or((0, 0));
                        self.constant(Scalar::Int(if *op == ReduceOp::Max { lo } else { hi }), vd)
                    }
                    ReduceOp::ArgMax | ReduceOp::ArgMin => self.constant(Scalar::zero(vd), vd),
                };
                let value = self.b.declare_var(reg_type(vd));
                self.b.def_var(value, init);
                let count = self.b.declare_var(types::I64);
                let z = self.i64c(0);
                self.b.def_var(count, z);
                let index = self.b.declare_var(types::I64);
                let m1 = self.i64c(-1);
                self.b.def_var(index, m1);
                let key = self.acc_key(*acc);
                self.accs.insert(key, AccVars { op: *op, src: *src, vd, value, count, index });
                Ok(())
            }
            Inst::AccPush { acc, value, by, pred } => {
                let (acc, value, by) = (*acc, *value, *by);
                self.guarded(*pred, |s| s.push(acc, value, by))
            }
            Inst::AccGet { dst, acc } => {
                let Some(a) = self.accs.get(&self.acc_key(*acc)) else {
                    return unsupported("result of an unknown accumulator");
                };
                let (op, vd, value, count, index) = (a.op, a.vd, a.value, a.count, a.index);
                let out = self.dtype(*dst);
                let r = match op {
                    ReduceOp::ArgMax | ReduceOp::ArgMin => {
                        let i = self.b.use_var(index);
                        self.convert(i, DType::I64, out)
                    }
                    _ => {
                        let mut v = self.b.use_var(value);
                        if matches!(op, ReduceOp::Sum | ReduceOp::Dot) && vd.is_float() {
                            // An empty sum is +0.0 (the running value starts at -0.0).
                            let c = self.b.use_var(count);
                            let z = self.float_const(0.0, vd);
                            let empty = self.b.ins().icmp_imm_s(IntCC::Equal, c, 0);
                            v = self.b.ins().select(empty, z, v);
                        }
                        self.convert(v, vd, out)
                    }
                };
                self.set(*dst, r);
                Ok(())
            }
            Inst::Check { value, lo, hi, pred, .. } => {
                // Checks are numbered in program order of the kernel IR (see `kernel_info`), so
                // every copy of one check (vector lanes, scalar tails) reports the same number.
                let k = self.check_ids.get(&(inst as *const Inst)).copied().unwrap_or(0);
                let value = *value;
                let (lo, hi) = (lo.clone(), hi.clone());
                self.guarded(*pred, |s| {
                    let vd = s.dtype(value);
                    let v = s.get(value);
                    let v = s.index_of(v, vd);
                    let l = s.dim(&lo);
                    let h = s.dim(&hi);
                    let below = s.b.ins().icmp(IntCC::SignedLessThan, v, l);
                    let above = s.b.ins().icmp(IntCC::SignedGreaterThanOrEqual, v, h);
                    let bad = s.b.ins().bor(below, above);
                    let fail = s.b.create_block();
                    let ok = s.b.create_block();
                    s.b.set_cold_block(fail);
                    s.b.ins().brif(bad, fail, &[], ok, &[]);
                    s.b.switch_to_block(fail);
                    s.b.seal_block(fail);
                    let err = s.err;
                    s.b.ins().store(flags(), v, err, 0);
                    s.b.ins().store(flags(), l, err, 8);
                    s.b.ins().store(flags(), h, err, 16);
                    let code = s.b.ins().iconst(types::I32, k as i64 + 1);
                    s.b.ins().return_(&[code]);
                    s.b.switch_to_block(ok);
                    s.b.seal_block(ok);
                    Ok(())
                })
            }
            Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                let lo = self.dim(lo);
                let trip = self.dim(trip);
                let z = self.i64c(0);
                let (iter, exit) = (*iter, *exit);
                self.counted_exit(z, trip, 1, |s, k, done| {
                    let it = s.b.ins().iadd(lo, k);
                    s.set(iter, it);
                    s.block(body)?;
                    if let Some(e) = exit {
                        let c = s.get(e);
                        let cont = s.b.create_block();
                        s.b.ins().brif(c, done, &[], cont, &[]);
                        s.b.switch_to_block(cont);
                        s.b.seal_block(cont);
                    }
                    // Carried values take their next values all at once.
                    let vals: Vec<Value> = next
                        .iter()
                        .zip(carried)
                        .map(|(n, c)| {
                            let (nd, cd) = (s.dtype(*n), s.dtype(*c));
                            let v = s.get(*n);
                            s.convert(v, nd, cd)
                        })
                        .collect();
                    for (c, v) in carried.iter().zip(vals) {
                        s.set(*c, v);
                    }
                    Ok(())
                })
            }
            Inst::Copy { dst, src } => {
                let (sd, dd) = (self.dtype(*src), self.dtype(*dst));
                let v = self.get(*src);
                let v = self.convert(v, sd, dd);
                self.set(*dst, v);
                Ok(())
            }
            Inst::LocalAlloc { buf, dtype, size } => {
                let Some(n) = size.as_const() else {
                    return unsupported(format!("local memory of symbolic size `{size}`"));
                };
                let bytes = (n.max(1) as u32).saturating_mul(dtype.bits() / 8);
                let slot = self.b.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, bytes, 3));
                self.locals.insert(*buf, (slot, *dtype));
                Ok(())
            }
            Inst::LocalLoad { dst, buf, index, dtype } => {
                let Some(&(slot, ld)) = self.locals.get(buf) else { return unsupported("unknown local buffer") };
                let addr = self.local_addr(slot, index, ld);
                let v = self.b.ins().load(reg_type(ld), flags(), addr, 0);
                let v = self.convert(v, ld, *dtype);
                self.set(*dst, v);
                Ok(())
            }
            Inst::LocalStore { buf, index, value } => {
                let Some(&(slot, ld)) = self.locals.get(buf) else { return unsupported("unknown local buffer") };
                let vd = self.dtype(*value);
                let v = self.get(*value);
                let v = self.convert(v, vd, ld);
                let addr = self.local_addr(slot, index, ld);
                self.b.ins().store(flags(), v, addr, 0);
                Ok(())
            }
            Inst::Barrier => Ok(()),
            // The CPU lowers `scatter_add` in order (`tk_ir::kernel::lower`); atomics are for GPUs.
            Inst::AtomicAdd { .. } => unsupported("an atomic add (the CPU adds a scatter's rows in order)"),
            Inst::Mma { d, a, b, c, m, n, k, dtype } => {
                let mut out = Vec::with_capacity(m * n);
                for i in 0..*m {
                    for j in 0..*n {
                        let mut acc = self.get(c[i * n + j]);
                        for kk in 0..*k {
                            let x = self.get(a[i * k + kk]);
                            let y = self.get(b[kk * n + j]);
                            acc = self.b.ins().fma(x, y, acc);
                            if matches!(dtype, DType::F16 | DType::Bf16) {
                                acc = self.round_f64(acc, *dtype);
                            }
                        }
                        out.push(acc);
                    }
                }
                for (r, v) in d.iter().zip(out) {
                    self.set(*r, v);
                }
                Ok(())
            }
        }
    }

    fn dtypes_of_buf(&self, buf: usize) -> DType {
        self.buf_dtypes.get(buf).copied().unwrap_or(DType::F32)
    }

    fn push(&mut self, acc: usize, value: usize, by: Option<usize>) -> Result<(), Unsupported> {
        let Some(a) = self.accs.get(&self.acc_key(acc)) else { return unsupported("push to an unknown accumulator") };
        let (op, src, vd, var, count, index) = (a.op, a.src, a.vd, a.value, a.count, a.index);
        let xd = self.dtype(value);
        let x = self.get(value);
        let cur = self.b.use_var(var);
        let cnt = self.b.use_var(count);
        let next = match op {
            // A contraction: one fma (f16 and bf16 products are exact in the f32 accumulator).
            ReduceOp::Dot => {
                let Some(by) = by else { return unsupported("a contraction push without its factor") };
                let (yd, y) = (self.dtype(by), self.get(by));
                let x = self.convert(x, xd, vd);
                let y = self.convert(y, yd, vd);
                match vd {
                    DType::F32 | DType::F64 => self.b.ins().fma(x, y, cur),
                    d if d.is_float() => return unsupported(legalized(&format!("a contraction in {d}"))),
                    _ => {
                        let p = self.b.ins().imul(x, y);
                        self.b.ins().iadd(cur, p)
                    }
                }
            }
            ReduceOp::Sum | ReduceOp::Prod => {
                let x = self.convert(x, xd, vd);
                match (op, vd.is_float()) {
                    (ReduceOp::Sum, true) => self.b.ins().fadd(cur, x),
                    (ReduceOp::Sum, false) => self.b.ins().iadd(cur, x),
                    (_, true) => self.b.ins().fmul(cur, x),
                    (_, false) => self.b.ins().imul(cur, x),
                }
            }
            ReduceOp::Max | ReduceOp::Min => {
                let x = self.convert(x, xd, vd);
                let max = op == ReduceOp::Max;
                if vd.is_float() {
                    if max { self.b.ins().fmax(cur, x) } else { self.b.ins().fmin(cur, x) }
                } else if vd.is_signed_int() {
                    if max { self.b.ins().smax(cur, x) } else { self.b.ins().smin(cur, x) }
                } else if max {
                    self.b.ins().umax(cur, x)
                } else {
                    self.b.ins().umin(cur, x)
                }
            }
            ReduceOp::ArgMax | ReduceOp::ArgMin => {
                let x = self.convert(x, xd, vd);
                let max = op == ReduceOp::ArgMax;
                let first = self.b.ins().icmp_imm_s(IntCC::Equal, cnt, 0);
                let better = if vd.is_float() {
                    let bnan = self.b.ins().fcmp(FloatCC::Unordered, cur, cur);
                    let xnan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
                    let gt = self.b.ins().fcmp(if max { FloatCC::GreaterThan } else { FloatCC::LessThan }, x, cur);
                    let t = self.b.ins().bor(xnan, gt);
                    let bok = self.b.ins().bxor_imm_s(bnan, 1);
                    self.b.ins().band(bok, t)
                } else {
                    let cc = match (max, src.is_signed_int()) {
                        (true, true) => IntCC::SignedGreaterThan,
                        (true, false) => IntCC::UnsignedGreaterThan,
                        (false, true) => IntCC::SignedLessThan,
                        (false, false) => IntCC::UnsignedLessThan,
                    };
                    self.b.ins().icmp(cc, x, cur)
                };
                let take = self.b.ins().bor(first, better);
                let idx = self.b.use_var(index);
                let ni = self.b.ins().select(take, cnt, idx);
                self.b.def_var(index, ni);
                self.b.ins().select(take, x, cur)
            }
        };
        self.b.def_var(var, next);
        let c1 = self.b.ins().iadd_imm_s(cnt, 1);
        self.b.def_var(count, c1);
        Ok(())
    }
}

/// Translates a kernel into `func` (whose signature must be [`signature`]). `helpers` maps
/// helper names to functions imported into `func`.
pub fn translate(
    k: &Kernel,
    func: &mut Function,
    ptr: Type,
    decls: HashMap<&'static str, (u32, Signature)>,
    config: cranelift_codegen::isa::TargetFrontendConfig,
    simd_fma: bool,
) -> Result<KernelInfo, Unsupported> {
    let mut fctx = FunctionBuilderContext::new();
    let mut b = FunctionBuilder::new(func, &mut fctx);
    let entry = b.create_block();
    b.append_block_params_for_function_params(entry);
    b.switch_to_block(entry);
    b.seal_block(entry);
    let params = b.block_params(entry).to_vec();
    let symbols = symbols(k);
    let mut dtypes = Vec::new();
    reg_dtypes(&k.body, &mut dtypes);
    let mut tr = Tr {
        b: &mut b,
        ptr,
        dtypes,
        regs: HashMap::new(),
        vars: HashMap::new(),
        dims: HashMap::new(),
        bufs: Vec::new(),
        accs: HashMap::new(),
        helpers: HashMap::new(),
        decls,
        locals: HashMap::new(),
        check_ids: HashMap::new(),
        err: params[4],
        lo: params[2],
        hi: params[3],
        top: true,
        buf_dtypes: k.bufs.iter().map(|b| b.dtype).collect(),
        vec: None,
        lane: None,
        simd_acc_meta: HashMap::new(),
        consts: HashMap::new(),
        simd_fma,
        knobs_vector: k.knobs.vector,
        rank: k.bufs.iter().find(|b| b.write).map_or(0, |b| b.shape.len()),
    };
    // Entry: buffer pointers and every dimension the body uses.
    let ptr_bytes = i32::from(ptr.bytes() as u16);
    for i in 0..k.bufs.len() {
        let p = tr.b.ins().load(ptr, flags().with_readonly(), params[0], ptr_bytes * i as i32);
        tr.bufs.push(p);
    }
    let mut syms = HashMap::new();
    for (i, s) in symbols.iter().enumerate() {
        let v = tr.b.ins().load(types::I64, flags().with_readonly(), params[1], 8 * i as i32);
        syms.insert(s.clone(), v);
    }
    let mut dims = Vec::new();
    collect_dims(&k.body, &mut dims);
    for d in dims {
        if d.as_const().is_none() && !tr.dims.contains_key(&d) {
            let v = tr.eval_dim(&d, &syms);
            tr.dims.insert(d, v);
        }
    }
    let parallel = parallel_range(k);
    tr.top = parallel.is_some();
    let mut order = Vec::new();
    collect_checks(&k.body, &mut order);
    tr.check_ids = order.iter().enumerate().map(|(i, c)| (*c as *const Inst, i)).collect();
    tr.block(&k.body)?;
    let z = tr.b.ins().iconst(types::I32, 0);
    tr.b.ins().return_(&[z]);
    b.seal_all_blocks();
    b.finalize(config);
    Ok(kernel_info(k))
}
