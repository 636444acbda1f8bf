//! Vectorised ranges: `range i in 0..n vectorized(w)` runs its body for `w` consecutive values
//! of `i` at once, then a scalar tail for the last `n mod w`.
//!
//! Every register of the body is *uniform* (the same for all `w` lanes: computed once, in
//! scalar code) or *varying*. A varying register of a 32-bit dtype (f32, i32, u32, bool as a
//! mask) lives in `w / 4` SIMD registers of 128 bits; other varying registers live in `w`
//! scalar registers, one per lane. Instructions the SIMD path supports (arithmetic,
//! comparisons, selects, casts, contiguous loads and stores, sum/prod/max/min accumulators) are
//! emitted as SIMD code; every other one is emitted once per lane with the scalar code (which
//! also unrolls it `w` times). Either way each lane computes exactly what the scalar loop
//! computes for its iteration, in the same order, so results are bit-identical.

use super::{Tr, Unsupported, reg_type};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_frontend::Variable;
use std::collections::{HashMap, HashSet};
use tk_ir::dtype::DType;
use tk_ir::graph::{BinaryOp, IExpr, Op, ReduceOp, UnaryOp};
use tk_ir::kernel::Inst;

/// Lanes per SIMD register (128-bit registers of 32-bit lanes).
pub const LANES: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// One scalar per lane.
    Lanes,
    /// `w / 4` SIMD registers.
    Simd,
}

pub struct VecState {
    pub var: usize,
    pub w: usize,
    pub forms: HashMap<usize, Form>,
    /// Accumulators kept in SIMD registers.
    pub simd_accs: HashMap<usize, DType>,
    pub lane_vars: HashMap<(usize, usize), Variable>,
    pub part_vars: HashMap<(usize, usize), Variable>,
    /// The value of the range variable in each lane.
    pub var_lanes: Vec<Variable>,
}

fn simd_dtype(d: DType) -> bool {
    matches!(d, DType::F32 | DType::I32 | DType::U32 | DType::Bool)
}

fn simd_type(d: DType) -> Type {
    if d == DType::F32 { types::F32X4 } else { types::I32X4 }
}

fn mentions(e: &IExpr, var: usize, varying: &HashSet<usize>) -> bool {
    match e {
        IExpr::Coord(k) => *k == var,
        IExpr::Data(r) => varying.contains(r),
        IExpr::Dim(_) => false,
        IExpr::Add(a, b) | IExpr::Mul(a, b) | IExpr::Div(a, b) | IExpr::Mod(a, b) => {
            mentions(a, var, varying) || mentions(b, var, varying)
        }
    }
}

/// The coefficient of `var` in an index expression, when it is affine in `var` with a constant
/// coefficient.
fn coefficient(e: &IExpr, var: usize, varying: &HashSet<usize>) -> Option<i64> {
    match e {
        IExpr::Coord(k) => Some(i64::from(*k == var)),
        IExpr::Dim(_) => Some(0),
        IExpr::Data(r) => (!varying.contains(r)).then_some(0),
        IExpr::Add(a, b) => Some(coefficient(a, var, varying)? + coefficient(b, var, varying)?),
        IExpr::Mul(a, b) => {
            let (ca, cb) = (coefficient(a, var, varying)?, coefficient(b, var, varying)?);
            match (ca, cb) {
                (0, 0) => Some(0),
                (0, c) => match &**a {
                    IExpr::Dim(d) => d.as_const().map(|k| k * c),
                    _ => None,
                },
                (c, 0) => match &**b {
                    IExpr::Dim(d) => d.as_const().map(|k| k * c),
                    _ => None,
                },
                _ => None,
            }
        }
        IExpr::Div(..) | IExpr::Mod(..) => (!mentions(e, var, varying)).then_some(0),
    }
}

/// Which registers of a vectorised body are varying; `None` when the body cannot be vectorised.
/// An accumulator push: (accumulator, predicate, value).
/// An accumulator push: the accumulator, its predicate, the value and a contraction's factor.
type Push = (usize, Option<usize>, usize, Option<usize>);

fn varying_regs(body: &[Inst], var: usize) -> Option<(HashSet<usize>, Vec<Push>)> {
    let mut v = HashSet::new();
    let mut pushes = Vec::new();
    loop {
        let before = v.len();
        pushes.clear();
        scan(body, var, &mut v, &mut pushes)?;
        if v.len() == before {
            return Some((v, pushes));
        }
    }
}

fn scan(body: &[Inst], var: usize, v: &mut HashSet<usize>, pushes: &mut Vec<Push>) -> Option<()> {
    for i in body {
        match i {
            Inst::Range { body, .. } => scan(body, var, v, pushes)?,
            Inst::Const { .. } => {}
            Inst::Index { dst, expr } => {
                if mentions(expr, var, v) {
                    v.insert(*dst);
                }
            }
            Inst::Load { dst, index, pred, .. } => {
                if mentions(index, var, v) || pred.is_some_and(|p| v.contains(&p)) {
                    v.insert(*dst);
                }
            }
            Inst::Alu { dst, args, .. } => {
                if args.iter().any(|a| v.contains(a)) {
                    v.insert(*dst);
                }
            }
            Inst::AccNew { acc, .. } => {
                v.insert(*acc);
            }
            Inst::AccPush { acc, value, by, pred } => pushes.push((*acc, *pred, *value, *by)),
            Inst::AccGet { dst, acc } => {
                if v.contains(acc) {
                    v.insert(*dst);
                }
            }
            Inst::Copy { dst, src } => {
                if v.contains(src) {
                    v.insert(*dst);
                }
            }
            Inst::Store { .. } | Inst::Check { .. } => {}
            Inst::Loop { .. }
            | Inst::LocalAlloc { .. }
            | Inst::LocalLoad { .. }
            | Inst::LocalStore { .. }
            | Inst::Barrier
            | Inst::Mma { .. }
            | Inst::AtomicAdd { .. } => return None,
        }
    }
    Some(())
}

/// The destination registers an instruction writes.
fn dsts(i: &Inst) -> Vec<usize> {
    match i {
        Inst::Const { dst, .. }
        | Inst::Index { dst, .. }
        | Inst::Load { dst, .. }
        | Inst::Alu { dst, .. }
        | Inst::AccGet { dst, .. }
        | Inst::Copy { dst, .. } => vec![*dst],
        _ => vec![],
    }
}

fn vflags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl Tr<'_, '_> {
    /// Plans the vectorisation of a range body; `None` when it must run as a scalar loop.
    pub(super) fn vector_plan(&self, var: usize, w: usize, body: &[Inst]) -> Option<VecState> {
        if w < 2 || self.vec.is_some() {
            return None;
        }
        let (varying, pushes) = varying_regs(body, var)?;
        let mut forms = HashMap::new();
        for r in &varying {
            let simd = w.is_multiple_of(LANES) && simd_dtype(self.dtype(*r));
            forms.insert(*r, if simd { Form::Simd } else { Form::Lanes });
        }
        let mut simd_accs = HashMap::new();
        let mut decls = Vec::new();
        collect_accs(body, &mut decls);
        for (acc, op, src, out) in decls {
            let vd = super::acc_value_dtype(op, src, out);
            // A contraction's lanes need the vector fma (else its pushes run per lane).
            let dot = op == ReduceOp::Dot;
            let ok = w.is_multiple_of(LANES)
                && (matches!(op, ReduceOp::Sum | ReduceOp::Prod | ReduceOp::Max | ReduceOp::Min)
                    || (dot && self.simd_fma && vd == DType::F32))
                && matches!(vd, DType::F32 | DType::I32 | DType::U32)
                && pushes.iter().filter(|p| p.0 == acc).all(|p| {
                    p.1.is_none()
                        && self.dtype(p.2) == vd
                        && p.3.is_some() == dot
                        && p.3.is_none_or(|b| self.dtype(b) == vd)
                });
            if ok {
                simd_accs.insert(acc, vd);
            }
        }
        Some(VecState {
            var,
            w,
            forms,
            simd_accs,
            lane_vars: HashMap::new(),
            part_vars: HashMap::new(),
            var_lanes: Vec::new(),
        })
    }

    pub(super) fn form(&self, r: usize) -> Option<Form> {
        self.vec.as_ref().and_then(|v| v.forms.get(&r).copied())
    }

    fn lane_var(&mut self, r: usize, l: usize) -> Variable {
        let t = reg_type(self.dtype(r));
        if let Some(v) = self.vec.as_ref().and_then(|s| s.lane_vars.get(&(r, l))) {
            return *v;
        }
        let v = self.b.declare_var(t);
        if let Some(s) = self.vec.as_mut() {
            s.lane_vars.insert((r, l), v);
        }
        v
    }

    fn part_var(&mut self, r: usize, p: usize) -> Variable {
        if let Some(v) = self.vec.as_ref().and_then(|s| s.part_vars.get(&(r, p))) {
            return *v;
        }
        let t = match self.vec.as_ref().and_then(|s| s.simd_accs.get(&r)) {
            Some(vd) => simd_type(*vd),
            None => simd_type(self.dtype(r)),
        };
        let v = self.b.declare_var(t);
        if let Some(s) = self.vec.as_mut() {
            s.part_vars.insert((r, p), v);
        }
        v
    }

    /// A varying register's value in lane `l` (scalar code).
    pub(super) fn get_lane(&mut self, r: usize, l: usize) -> Value {
        match self.form(r) {
            Some(Form::Simd) => {
                let pv = self.part_var(r, l / LANES);
                let p = self.b.use_var(pv);
                let x = self.b.ins().extractlane(p, (l % LANES) as u8);
                if self.dtype(r) == DType::Bool {
                    let n = self.b.ins().ireduce(types::I8, x);
                    self.b.ins().band_imm_s(n, 1)
                } else {
                    x
                }
            }
            _ => {
                let v = self.lane_var(r, l);
                self.b.use_var(v)
            }
        }
    }

    pub(super) fn set_lane(&mut self, r: usize, l: usize, val: Value) {
        let v = self.lane_var(r, l);
        self.b.def_var(v, val);
    }

    /// The SIMD parts of a register of a 32-bit dtype (splat when uniform, packed from lanes).
    fn parts(&mut self, r: usize) -> Vec<Value> {
        let w = self.vec.as_ref().map_or(LANES, |s| s.w);
        let d = self.dtype(r);
        let t = simd_type(d);
        match self.form(r) {
            Some(Form::Simd) => (0..w / LANES)
                .map(|p| {
                    let v = self.part_var(r, p);
                    self.b.use_var(v)
                })
                .collect(),
            Some(Form::Lanes) => (0..w / LANES)
                .map(|p| {
                    let mut acc = None;
                    for k in 0..LANES {
                        let x = self.get_lane(r, p * LANES + k);
                        let x = self.lane_to_simd_elem(x, d);
                        acc = Some(match acc {
                            None => self.b.ins().splat(t, x),
                            Some(a) => self.b.ins().insertlane(a, x, k as u8),
                        });
                    }
                    acc.unwrap_or_else(|| self.b.ins().iconst(types::I32, 0))
                })
                .collect(),
            None => {
                let x = self.get(r);
                let x = self.lane_to_simd_elem(x, d);
                let s = self.b.ins().splat(t, x);
                vec![s; w / LANES]
            }
        }
    }

    /// A scalar of dtype `d` as an element of its SIMD type (bools become 0 / -1 masks).
    fn lane_to_simd_elem(&mut self, x: Value, d: DType) -> Value {
        if d == DType::Bool {
            let w = self.b.ins().uextend(types::I32, x);
            self.b.ins().ineg(w)
        } else {
            x
        }
    }

    fn set_parts(&mut self, r: usize, vals: Vec<Value>) {
        for (p, v) in vals.into_iter().enumerate() {
            let pv = self.part_var(r, p);
            self.b.def_var(pv, v);
        }
    }

    /// Packs the lanes written by a lane-mode instruction into SIMD registers.
    fn pack(&mut self, r: usize) {
        if self.form(r) != Some(Form::Simd) {
            return;
        }
        let w = self.vec.as_ref().map_or(LANES, |s| s.w);
        let d = self.dtype(r);
        let t = simd_type(d);
        for p in 0..w / LANES {
            let mut acc = None;
            for k in 0..LANES {
                let lv = self.lane_var(r, p * LANES + k);
                let x = self.b.use_var(lv);
                let x = self.lane_to_simd_elem(x, d);
                acc = Some(match acc {
                    None => self.b.ins().splat(t, x),
                    Some(a) => self.b.ins().insertlane(a, x, k as u8),
                });
            }
            if let Some(a) = acc {
                let pv = self.part_var(r, p);
                self.b.def_var(pv, a);
            }
        }
    }

    /// Emits one instruction of a vectorised body.
    pub(super) fn vinst(&mut self, inst: &Inst) -> Result<(), Unsupported> {
        let (var, w) = match self.vec.as_ref() {
            Some(s) => (s.var, s.w),
            None => return self.inst(inst),
        };
        let varying: HashSet<usize> = self.vec.as_ref().map(|s| s.forms.keys().copied().collect()).unwrap_or_default();
        let any_varying = |regs: &[usize]| regs.iter().any(|r| varying.contains(r));
        match inst {
            Inst::Range { .. } => return self.inst(inst),
            Inst::AccNew { acc, op, src, dtype }
                if self.vec.as_ref().is_some_and(|s| s.simd_accs.contains_key(acc)) =>
            {
                let vd = super::acc_value_dtype(*op, *src, *dtype);
                self.simd_acc_new(*acc, *op, vd);
                return Ok(());
            }
            Inst::AccPush { acc, value, by, .. }
                if self.vec.as_ref().is_some_and(|s| s.simd_accs.contains_key(acc)) =>
            {
                return self.simd_acc_push(*acc, *value, *by);
            }
            Inst::AccGet { dst, acc } if self.vec.as_ref().is_some_and(|s| s.simd_accs.contains_key(acc)) => {
                return self.simd_acc_get(*dst, *acc);
            }
            _ => {}
        }
        // Uniform instructions: once, as scalar code.
        let uniform = match inst {
            Inst::Const { .. } => true,
            Inst::Index { dst, .. } | Inst::Load { dst, .. } | Inst::Alu { dst, .. } | Inst::Copy { dst, .. } => {
                !varying.contains(dst)
            }
            Inst::AccGet { dst, .. } => !varying.contains(dst),
            Inst::Store { index, value, pred, .. } => {
                !mentions(index, var, &varying)
                    && !varying.contains(value)
                    && !pred.is_some_and(|p| varying.contains(&p))
            }
            Inst::Check { value, pred, .. } => !varying.contains(value) && !pred.is_some_and(|p| varying.contains(&p)),
            Inst::AccNew { acc, .. } | Inst::AccPush { acc, .. } => !varying.contains(acc),
            _ => false,
        };
        if uniform {
            return self.inst(inst);
        }
        if self.try_simd(inst, var, w, &varying)? {
            return Ok(());
        }
        let _ = any_varying;
        // Lane mode: the scalar code once per lane.
        let lanes = self.vec.as_ref().map(|s| s.var_lanes.clone()).unwrap_or_default();
        let saved = self.vars.get(&var).copied();
        for (l, lv) in lanes.iter().enumerate() {
            self.lane = Some(l);
            self.vars.insert(var, *lv);
            let r = self.inst(inst);
            if r.is_err() {
                self.lane = None;
                return r;
            }
        }
        self.lane = None;
        if let Some(s) = saved {
            self.vars.insert(var, s);
        }
        for d in dsts(inst) {
            self.pack(d);
        }
        Ok(())
    }

    /// Emits an instruction as SIMD code when it can be; returns whether it did.
    fn try_simd(&mut self, inst: &Inst, var: usize, _w: usize, varying: &HashSet<usize>) -> Result<bool, Unsupported> {
        match inst {
            Inst::Load { dst, buf, index, pred: None, dtype, .. }
                if self.form(*dst) == Some(Form::Simd)
                    && simd_dtype(*dtype)
                    && *dtype != DType::Bool
                    && coefficient(index, var, varying) == Some(1) =>
            {
                let addr = self.lane0_addr(*buf, index, *dtype, var);
                let n = self.vec.as_ref().map_or(1, |s| s.w / LANES);
                let vals: Vec<Value> =
                    (0..n).map(|p| self.b.ins().load(simd_type(*dtype), vflags(), addr, (16 * p) as i32)).collect();
                self.set_parts(*dst, vals);
                Ok(true)
            }
            Inst::Store { buf, index, value, pred: None, .. }
                if self.form(*value) == Some(Form::Simd)
                    && self.buf_dtype(*buf) == self.dtype(*value)
                    && self.dtype(*value) != DType::Bool
                    && coefficient(index, var, varying) == Some(1) =>
            {
                let d = self.dtype(*value);
                let vals = self.parts(*value);
                let addr = self.lane0_addr(*buf, index, d, var);
                for (p, v) in vals.into_iter().enumerate() {
                    self.b.ins().store(vflags(), v, addr, (16 * p) as i32);
                }
                Ok(true)
            }
            Inst::Copy { dst, src } if self.form(*dst) == Some(Form::Simd) && self.dtype(*dst) == self.dtype(*src) => {
                let v = self.parts(*src);
                self.set_parts(*dst, v);
                Ok(true)
            }
            Inst::Alu { dst, op, args, dtype } if self.form(*dst) == Some(Form::Simd) => {
                let ts: Vec<DType> = args.iter().map(|a| self.dtype(*a)).collect();
                if !ts.iter().all(|t| simd_dtype(*t)) {
                    return Ok(false);
                }
                // Shifts by a constant in range, and fma where the target has it.
                let special = match op {
                    Op::Binary(BinaryOp::Shl | BinaryOp::Shr) => {
                        let amount = args.get(1).and_then(|a| self.consts.get(a).copied());
                        match amount {
                            Some(c) if (0..32).contains(&c) && !varying.contains(&args[1]) => {
                                let x = self.parts(args[0]);
                                let c = self.b.ins().iconst(types::I32, c);
                                let shl = matches!(op, Op::Binary(BinaryOp::Shl));
                                let out: Vec<Value> = x
                                    .into_iter()
                                    .map(|v| {
                                        if shl {
                                            self.b.ins().ishl(v, c)
                                        } else if ts[0] == DType::I32 {
                                            self.b.ins().sshr(v, c)
                                        } else {
                                            self.b.ins().ushr(v, c)
                                        }
                                    })
                                    .collect();
                                Some(out)
                            }
                            _ => return Ok(false),
                        }
                    }
                    Op::Fma if self.simd_fma && ts.iter().all(|t| *t == DType::F32) && *dtype == DType::F32 => {
                        let (a, b, c) = (self.parts(args[0]), self.parts(args[1]), self.parts(args[2]));
                        Some((0..a.len()).map(|p| self.b.ins().fma(a[p], b[p], c[p])).collect())
                    }
                    _ => None,
                };
                if let Some(out) = special {
                    self.set_parts(*dst, out);
                    return Ok(true);
                }
                if !simd_op_ok(op, &ts, *dtype) {
                    return Ok(false);
                }
                let vals: Vec<Vec<Value>> = args.iter().map(|a| self.parts(*a)).collect();
                let n = vals.first().map_or(0, |v| v.len());
                let mut out = Vec::with_capacity(n);
                for p in 0..n {
                    let a: Vec<Value> = vals.iter().map(|v| v[p]).collect();
                    out.push(self.simd_op(op, &a, &ts, *dtype));
                }
                self.set_parts(*dst, out);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The address of lane 0's element of a contiguous access.
    fn lane0_addr(&mut self, buf: usize, index: &IExpr, d: DType, var: usize) -> Value {
        let l0 = self.vec.as_ref().and_then(|s| s.var_lanes.first().copied());
        let saved = self.vars.get(&var).copied();
        if let Some(l0) = l0 {
            self.vars.insert(var, l0);
        }
        let i = self.iexpr(index);
        if let Some(s) = saved {
            self.vars.insert(var, s);
        }
        self.elem_addr(buf, i, d)
    }

    fn simd_op(&mut self, op: &Op, a: &[Value], ts: &[DType], d: DType) -> Value {
        let t = ts.first().copied().unwrap_or(d);
        match op {
            Op::Binary(b) if t == DType::F32 => {
                let (x, y) = (a[0], a[1]);
                match b {
                    BinaryOp::Add => self.b.ins().fadd(x, y),
                    BinaryOp::Sub => self.b.ins().fsub(x, y),
                    BinaryOp::Mul => self.b.ins().fmul(x, y),
                    BinaryOp::Div => self.b.ins().fdiv(x, y),
                    BinaryOp::Min => self.b.ins().fmin(x, y),
                    BinaryOp::Max => self.b.ins().fmax(x, y),
                    cmp => {
                        let cc = match cmp {
                            BinaryOp::Eq => FloatCC::Equal,
                            BinaryOp::Ne => FloatCC::NotEqual,
                            BinaryOp::Lt => FloatCC::LessThan,
                            BinaryOp::Le => FloatCC::LessThanOrEqual,
                            BinaryOp::Gt => FloatCC::GreaterThan,
                            _ => FloatCC::GreaterThanOrEqual,
                        };
                        self.b.ins().fcmp(cc, x, y)
                    }
                }
            }
            Op::Binary(b) if t == DType::Bool => {
                let (x, y) = (a[0], a[1]);
                match b {
                    BinaryOp::And | BinaryOp::Min => self.b.ins().band(x, y),
                    BinaryOp::Or | BinaryOp::Max => self.b.ins().bor(x, y),
                    BinaryOp::Xor | BinaryOp::Ne => self.b.ins().bxor(x, y),
                    _ => {
                        let e = self.b.ins().bxor(x, y);
                        self.b.ins().bnot(e)
                    }
                }
            }
            Op::Binary(b) => {
                let (x, y) = (a[0], a[1]);
                let signed = t == DType::I32;
                let cc = |s, u| if signed { s } else { u };
                match b {
                    BinaryOp::Add => self.b.ins().iadd(x, y),
                    BinaryOp::Sub => self.b.ins().isub(x, y),
                    BinaryOp::Mul => self.b.ins().imul(x, y),
                    BinaryOp::And => self.b.ins().band(x, y),
                    BinaryOp::Or => self.b.ins().bor(x, y),
                    BinaryOp::Xor => self.b.ins().bxor(x, y),
                    BinaryOp::Min if signed => self.b.ins().smin(x, y),
                    BinaryOp::Min => self.b.ins().umin(x, y),
                    BinaryOp::Max if signed => self.b.ins().smax(x, y),
                    BinaryOp::Max => self.b.ins().umax(x, y),
                    BinaryOp::Eq => self.b.ins().icmp(IntCC::Equal, x, y),
                    BinaryOp::Ne => self.b.ins().icmp(IntCC::NotEqual, x, y),
                    BinaryOp::Lt => self.b.ins().icmp(cc(IntCC::SignedLessThan, IntCC::UnsignedLessThan), x, y),
                    BinaryOp::Le => {
                        self.b.ins().icmp(cc(IntCC::SignedLessThanOrEqual, IntCC::UnsignedLessThanOrEqual), x, y)
                    }
                    BinaryOp::Gt => self.b.ins().icmp(cc(IntCC::SignedGreaterThan, IntCC::UnsignedGreaterThan), x, y),
                    _ => {
                        self.b.ins().icmp(cc(IntCC::SignedGreaterThanOrEqual, IntCC::UnsignedGreaterThanOrEqual), x, y)
                    }
                }
            }
            Op::Unary(u) => {
                let x = a[0];
                match (u, t) {
                    (UnaryOp::Neg, DType::F32) => self.b.ins().fneg(x),
                    (UnaryOp::Abs, DType::F32) => self.b.ins().fabs(x),
                    (UnaryOp::Sqrt, _) => self.b.ins().sqrt(x),
                    (UnaryOp::Floor, DType::F32) => self.b.ins().floor(x),
                    (UnaryOp::Ceil, DType::F32) => self.b.ins().ceil(x),
                    (UnaryOp::Round, DType::F32) => self.b.ins().nearest(x),
                    (UnaryOp::Neg, _) => self.b.ins().ineg(x),
                    (UnaryOp::Abs, DType::I32) => self.b.ins().iabs(x),
                    (UnaryOp::Not, _) => self.b.ins().bnot(x),
                    _ => x,
                }
            }
            Op::Where => {
                let (c, x, y) = (a[0], a[1], a[2]);
                let c = if d == DType::F32 { self.b.ins().bitcast(types::F32X4, little(), c) } else { c };
                self.b.ins().bitselect(c, x, y)
            }
            Op::Cast | Op::Bitcast => {
                let x = a[0];
                match (t, d) {
                    (f, g) if f == g => x,
                    (DType::F32, DType::I32) if matches!(op, Op::Cast) => {
                        self.b.ins().fcvt_to_sint_sat(types::I32X4, x)
                    }
                    (DType::F32, DType::U32) if matches!(op, Op::Cast) => {
                        self.b.ins().fcvt_to_uint_sat(types::I32X4, x)
                    }
                    (DType::I32, DType::F32) if matches!(op, Op::Cast) => self.b.ins().fcvt_from_sint(types::F32X4, x),
                    (DType::U32, DType::F32) if matches!(op, Op::Cast) => self.b.ins().fcvt_from_uint(types::F32X4, x),
                    (DType::F32, _) if matches!(op, Op::Bitcast) => self.b.ins().bitcast(types::I32X4, little(), x),
                    (_, DType::F32) if matches!(op, Op::Bitcast) => self.b.ins().bitcast(types::F32X4, little(), x),
                    (DType::I32 | DType::U32, DType::I32 | DType::U32) => x,
                    (DType::Bool, DType::F32) => {
                        let one = self.b.ins().f32const(1.0);
                        let ones = self.b.ins().splat(types::F32X4, one);
                        let bits = self.b.ins().bitcast(types::I32X4, little(), ones);
                        let m = self.b.ins().band(x, bits);
                        self.b.ins().bitcast(types::F32X4, little(), m)
                    }
                    (DType::Bool, _) => self.b.ins().ineg(x),
                    (DType::F32, DType::Bool) => {
                        let z = self.b.ins().f32const(0.0);
                        let zs = self.b.ins().splat(types::F32X4, z);
                        self.b.ins().fcmp(FloatCC::NotEqual, x, zs)
                    }
                    (_, DType::Bool) => {
                        let z = self.b.ins().iconst(types::I32, 0);
                        let zs = self.b.ins().splat(types::I32X4, z);
                        self.b.ins().icmp(IntCC::NotEqual, x, zs)
                    }
                    _ => x,
                }
            }
            _ => a[0],
        }
    }

    fn simd_acc_new(&mut self, acc: usize, op: ReduceOp, vd: DType) {
        let n = self.vec.as_ref().map_or(1, |s| s.w / LANES);
        let init = match (op, vd) {
            (ReduceOp::Sum | ReduceOp::Dot, DType::F32) => self.b.ins().f32const(-0.0),
            (ReduceOp::Prod, DType::F32) => self.b.ins().f32const(1.0),
            (ReduceOp::Max, DType::F32) => self.b.ins().f32const(f32::NEG_INFINITY),
            (ReduceOp::Min, DType::F32) => self.b.ins().f32const(f32::INFINITY),
            (ReduceOp::Sum, _) => self.b.ins().iconst(types::I32, 0),
            (ReduceOp::Prod, _) => self.b.ins().iconst(types::I32, 1),
            (ReduceOp::Max, DType::I32) => self.b.ins().iconst(types::I32, i64::from(i32::MIN as u32)),
            (ReduceOp::Min, DType::I32) => self.b.ins().iconst(types::I32, i64::from(i32::MAX)),
            (ReduceOp::Max, _) => self.b.ins().iconst(types::I32, 0),
            _ => self.b.ins().iconst(types::I32, i64::from(u32::MAX)),
        };
        let v = self.b.ins().splat(simd_type(vd), init);
        for p in 0..n {
            let pv = self.part_var(acc, p);
            self.b.def_var(pv, v);
        }
        let count = self.b.declare_var(types::I64);
        let z = self.b.ins().iconst(types::I64, 0);
        self.b.def_var(count, z);
        self.simd_acc_meta.insert(acc, (op, vd, count));
    }

    fn simd_acc_push(&mut self, acc: usize, value: usize, by: Option<usize>) -> Result<(), Unsupported> {
        let Some(&(op, vd, count)) = self.simd_acc_meta.get(&acc) else {
            return Err(Unsupported { message: "push to an unknown accumulator".into() });
        };
        let xs = self.parts(value);
        let ys = by.map(|b| self.parts(b));
        for (p, x) in xs.into_iter().enumerate() {
            let pv = self.part_var(acc, p);
            let cur = self.b.use_var(pv);
            let signed = vd == DType::I32;
            let next = match (op, vd) {
                (ReduceOp::Dot, _) => match ys.as_ref().and_then(|ys| ys.get(p)) {
                    Some(&y) => self.b.ins().fma(x, y, cur),
                    None => return Err(Unsupported { message: "a contraction push without its factor".into() }),
                },
                (ReduceOp::Sum, DType::F32) => self.b.ins().fadd(cur, x),
                (ReduceOp::Prod, DType::F32) => self.b.ins().fmul(cur, x),
                (ReduceOp::Max, DType::F32) => self.b.ins().fmax(cur, x),
                (ReduceOp::Min, DType::F32) => self.b.ins().fmin(cur, x),
                (ReduceOp::Sum, _) => self.b.ins().iadd(cur, x),
                (ReduceOp::Prod, _) => self.b.ins().imul(cur, x),
                (ReduceOp::Max, _) if signed => self.b.ins().smax(cur, x),
                (ReduceOp::Max, _) => self.b.ins().umax(cur, x),
                (_, _) if signed => self.b.ins().smin(cur, x),
                _ => self.b.ins().umin(cur, x),
            };
            self.b.def_var(pv, next);
        }
        let c = self.b.use_var(count);
        let c1 = self.b.ins().iadd_imm_s(c, 1);
        self.b.def_var(count, c1);
        Ok(())
    }

    fn simd_acc_get(&mut self, dst: usize, acc: usize) -> Result<(), Unsupported> {
        let Some(&(op, vd, count)) = self.simd_acc_meta.get(&acc) else {
            return Err(Unsupported { message: "result of an unknown accumulator".into() });
        };
        let n = self.vec.as_ref().map_or(1, |s| s.w / LANES);
        let out = self.dtype(dst);
        let mut vals = Vec::new();
        for p in 0..n {
            let pv = self.part_var(acc, p);
            let mut v = self.b.use_var(pv);
            if matches!(op, ReduceOp::Sum | ReduceOp::Dot) && vd == DType::F32 {
                let c = self.b.use_var(count);
                let empty = self.b.ins().icmp_imm_s(IntCC::Equal, c, 0);
                let z = self.b.ins().f32const(0.0);
                let zs = self.b.ins().splat(types::F32X4, z);
                v = self.b.ins().select(empty, zs, v);
            }
            vals.push(v);
        }
        if out == vd && self.form(dst) == Some(Form::Simd) {
            self.set_parts(dst, vals);
        } else {
            // A conversion: through the lanes.
            for (p, v) in vals.into_iter().enumerate() {
                for k in 0..LANES {
                    let x = self.b.ins().extractlane(v, k as u8);
                    let y = self.convert(x, vd, out);
                    self.set_lane(dst, p * LANES + k, y);
                }
            }
            self.pack(dst);
        }
        Ok(())
    }
}

fn little() -> MemFlagsData {
    MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
}

fn simd_op_ok(op: &Op, ts: &[DType], d: DType) -> bool {
    let t = ts.first().copied().unwrap_or(d);
    match op {
        Op::Binary(b) => {
            if ts.get(1) != Some(&t) {
                return false;
            }
            match t {
                DType::F32 => !matches!(
                    b,
                    BinaryOp::Rem
                        | BinaryOp::Pow
                        | BinaryOp::And
                        | BinaryOp::Or
                        | BinaryOp::Xor
                        | BinaryOp::Shl
                        | BinaryOp::Shr
                ),
                DType::Bool => matches!(
                    b,
                    BinaryOp::And
                        | BinaryOp::Or
                        | BinaryOp::Xor
                        | BinaryOp::Ne
                        | BinaryOp::Eq
                        | BinaryOp::Min
                        | BinaryOp::Max
                ),
                _ => !matches!(
                    b,
                    BinaryOp::Div
                        | BinaryOp::Rem
                        | BinaryOp::DivTrunc
                        | BinaryOp::RemTrunc
                        | BinaryOp::Pow
                        | BinaryOp::Shl
                        | BinaryOp::Shr
                ),
            }
        }
        Op::Unary(u) => {
            t == d
                && match t {
                    DType::F32 => matches!(
                        u,
                        UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Sqrt | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round
                    ),
                    DType::Bool => matches!(u, UnaryOp::Not),
                    DType::I32 => matches!(u, UnaryOp::Neg | UnaryOp::Not | UnaryOp::Abs),
                    _ => matches!(u, UnaryOp::Neg | UnaryOp::Not | UnaryOp::Abs),
                }
        }
        Op::Where => ts.len() == 3 && ts[0] == DType::Bool && ts[1] == d && ts[2] == d && d != DType::Bool,
        Op::Cast => true,
        Op::Bitcast => matches!((t, d), (DType::F32, DType::I32 | DType::U32) | (DType::I32 | DType::U32, DType::F32)),
        _ => false,
    }
}

fn collect_accs(body: &[Inst], out: &mut Vec<(usize, ReduceOp, DType, DType)>) {
    for i in body {
        match i {
            Inst::AccNew { acc, op, src, dtype } => out.push((*acc, *op, *src, *dtype)),
            Inst::Range { body, .. } => collect_accs(body, out),
            _ => {}
        }
    }
}
