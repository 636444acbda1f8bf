//! The kernel-IR interpreter: runs lowered kernels over host arrays.

use super::*;
use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::interp::{self, Acc, Array, InterpError};
use crate::schedule::{BufferKind, Schedule};
use std::collections::HashMap;

/// Runs every kernel of a schedule in the kernel-IR interpreter; returns the outputs.
pub fn run_schedule(
    s: &Schedule,
    knobs: &[Knobs],
    dims: &HashMap<String, i64>,
    args: &[Array],
) -> Result<Vec<Array>, InterpError> {
    let mut kernels = Vec::new();
    for k in 0..s.kernels.len() {
        let kn = knobs.get(k).cloned().unwrap_or_default();
        kernels.push(lower(s, k, &kn).map_err(|e| InterpError { message: e.message, loc: e.loc })?);
    }
    run_kernels(s, &kernels, dims, args)
}

/// Runs already lowered kernels (one per device kernel of `s`, in order).
pub fn run_kernels(
    s: &Schedule,
    kernels: &[Kernel],
    dims: &HashMap<String, i64>,
    args: &[Array],
) -> Result<Vec<Array>, InterpError> {
    let g = &s.graph;
    let dim = |d: &Dim, loc: Loc| -> Result<i64, InterpError> {
        d.eval(&|x| dims.get(x).copied()).ok_or(InterpError { message: format!("dimension `{d}` has no value"), loc })
    };
    check_dims(g, &|d, loc| dim(d, loc))?;
    let mut mem: HashMap<usize, Array> = HashMap::new();
    for (i, b) in s.buffers.iter().enumerate() {
        let shape: Vec<usize> =
            b.shape.iter().map(|d| dim(d, Loc::default()).map(|v| v.max(0) as usize)).collect::<Result<_, _>>()?;
        match b.kind {
            BufferKind::Input(k) => {
                mem.insert(i, args[k].clone());
            }
            _ => {
                mem.insert(i, Array::from_fn(b.dtype, shape, |_| Scalar::Int(0)));
            }
        }
    }
    for kern in kernels {
        let mut bufs: Vec<Array> = kern.bufs.iter().map(|b| mem[&b.id].clone()).collect();
        let mut m = Machine {
            dims,
            regs: vec![Scalar::Int(0); kern.regs],
            types: vec![DType::I64; kern.regs],
            local: HashMap::new(),
            vars: HashMap::new(),
            accs: HashMap::new(),
        };
        m.block(&kern.body, &mut bufs)?;
        for (b, arr) in kern.bufs.iter().zip(bufs) {
            if b.write {
                mem.insert(b.id, arr);
            }
        }
    }
    crate::schedule::collect_outputs(s, &mem)
}

/// One thread's registers, register dtypes and accumulators inside a local range.
type ThreadState = (Vec<Scalar>, Vec<DType>, HashMap<usize, Acc>);

struct Machine<'d> {
    dims: &'d HashMap<String, i64>,
    local: HashMap<usize, Array>,
    regs: Vec<Scalar>,
    types: Vec<DType>,
    vars: HashMap<usize, i64>,
    accs: HashMap<usize, Acc>,
}

impl Machine<'_> {
    fn dim(&self, d: &Dim, loc: Loc) -> Result<i64, InterpError> {
        d.eval(&|x| self.dims.get(x).copied())
            .ok_or(InterpError { message: format!("dimension `{d}` has no value"), loc })
    }
    fn ix(&self, e: &IExpr) -> i64 {
        match e {
            IExpr::Coord(k) => self.vars.get(k).copied().unwrap_or(0),
            IExpr::Dim(d) => d.eval(&|x| self.dims.get(x).copied()).unwrap_or(0),
            IExpr::Data(r) => interp::scalar_index(self.regs[*r]),
            IExpr::Add(a, b) => self.ix(a).wrapping_add(self.ix(b)),
            IExpr::Mul(a, b) => self.ix(a).wrapping_mul(self.ix(b)),
            IExpr::Div(a, b) => {
                let y = self.ix(b);
                if y == 0 { 0 } else { self.ix(a).div_euclid(y) }
            }
            IExpr::Mod(a, b) => {
                let y = self.ix(b);
                if y == 0 { 0 } else { self.ix(a).rem_euclid(y) }
            }
        }
    }
    fn pred(&self, p: &Option<usize>) -> bool {
        p.is_none_or(|r| interp::scalar_bool(self.regs[r]))
    }
    fn block(&mut self, body: &[Inst], bufs: &mut [Array]) -> Result<(), InterpError> {
        for i in body {
            match i {
                Inst::Range { var, extent, kind: RangeKind::Local, body } => {
                    // Threads run phase by phase: each runs up to the next barrier, then the next
                    // phase starts. Registers are private to each thread.
                    let n = self.dim(extent, Loc::default())?.max(0);
                    let phases: Vec<&[Inst]> = body.split(|i| matches!(i, Inst::Barrier)).collect();
                    let mut files: Vec<ThreadState> =
                        (0..n).map(|_| (self.regs.clone(), self.types.clone(), self.accs.clone())).collect();
                    for phase in phases {
                        for (t, file) in files.iter_mut().enumerate() {
                            std::mem::swap(&mut self.regs, &mut file.0);
                            std::mem::swap(&mut self.types, &mut file.1);
                            std::mem::swap(&mut self.accs, &mut file.2);
                            self.vars.insert(*var, t as i64);
                            let r = self.block(phase, bufs);
                            std::mem::swap(&mut self.regs, &mut file.0);
                            std::mem::swap(&mut self.types, &mut file.1);
                            std::mem::swap(&mut self.accs, &mut file.2);
                            r?;
                        }
                    }
                }
                Inst::LocalAlloc { buf, dtype, size } => {
                    let n = self.dim(size, Loc::default())?.max(0) as usize;
                    self.local.insert(*buf, Array::from_fn(*dtype, vec![n], |_| Scalar::Int(0)));
                }
                Inst::LocalLoad { dst, buf, index, dtype } => {
                    let i = self.ix(index);
                    let v = self.local.get(buf).filter(|b| i >= 0 && (i as usize) < b.len()).map(|b| b.at(i as usize));
                    match v {
                        Some(v) => self.regs[*dst] = v,
                        None => {
                            return Err(InterpError {
                                message: format!("local load of element {i} out of range"),
                                loc: Loc::default(),
                            });
                        }
                    }
                    self.types[*dst] = *dtype;
                }
                Inst::LocalStore { buf, index, value } => {
                    let i = self.ix(index);
                    let v = self.regs[*value];
                    match self.local.get_mut(buf) {
                        Some(b) if i >= 0 && (i as usize) < b.len() => b.set(i as usize, v),
                        _ => {
                            return Err(InterpError {
                                message: format!("local store to element {i} out of range"),
                                loc: Loc::default(),
                            });
                        }
                    }
                }
                Inst::Barrier => {}
                Inst::Mma { d, a, b, c, m, n, k, dtype } => {
                    let mut out = Vec::with_capacity(m * n);
                    for i in 0..*m {
                        for j in 0..*n {
                            let mut acc = self.regs[c[i * n + j]];
                            for kk in 0..*k {
                                let x = (self.regs[a[i * k + kk]], *dtype);
                                let y = (self.regs[b[kk * n + j]], *dtype);
                                acc = interp::scalar_op(&Op::Fma, &[x, y, (acc, *dtype)], *dtype);
                            }
                            out.push(acc);
                        }
                    }
                    for (r, v) in d.iter().zip(out) {
                        self.regs[*r] = v;
                        self.types[*r] = *dtype;
                    }
                }
                Inst::Range { var, extent, body, .. } => {
                    let n = self.dim(extent, Loc::default())?;
                    for v in 0..n.max(0) {
                        self.vars.insert(*var, v);
                        self.block(body, bufs)?;
                    }
                }
                Inst::Const { dst, value, dtype } => {
                    self.regs[*dst] = interp::scalar_to(*value, *dtype);
                    self.types[*dst] = *dtype;
                }
                Inst::Index { dst, expr } => {
                    self.regs[*dst] = Scalar::Int(i128::from(self.ix(expr)));
                    self.types[*dst] = DType::I64;
                }
                Inst::Load { dst, buf, index, pred, fill, dtype, .. } => {
                    self.types[*dst] = *dtype;
                    if self.pred(pred) {
                        let i = self.ix(index);
                        let b = &bufs[*buf];
                        if i < 0 || i as usize >= b.len() {
                            return Err(InterpError {
                                message: format!("load of element {i} of a buffer of {} elements", b.len()),
                                loc: Loc::default(),
                            });
                        }
                        self.regs[*dst] = b.at(i as usize);
                    } else {
                        self.regs[*dst] = interp::scalar_to(*fill, *dtype);
                    }
                }
                Inst::Store { buf, index, value, pred, .. } => {
                    if self.pred(pred) {
                        let i = self.ix(index);
                        let v = self.regs[*value];
                        let b = &mut bufs[*buf];
                        if i < 0 || i as usize >= b.len() {
                            return Err(InterpError {
                                message: format!("store to element {i} of a buffer of {} elements", b.len()),
                                loc: Loc::default(),
                            });
                        }
                        b.set(i as usize, v);
                    }
                }
                Inst::AtomicAdd { buf, index, value, pred, .. } => {
                    if self.pred(pred) {
                        let i = self.ix(index);
                        let (v, d) = (self.regs[*value], self.types[*value]);
                        let b = &mut bufs[*buf];
                        if i < 0 || i as usize >= b.len() {
                            return Err(InterpError {
                                message: format!("atomic add to element {i} of a buffer of {} elements", b.len()),
                                loc: Loc::default(),
                            });
                        }
                        let sum = interp::scalar_op(&Op::Binary(BinaryOp::Add), &[(b.at(i as usize), d), (v, d)], d);
                        b.set(i as usize, sum);
                    }
                }
                Inst::Alu { dst, op, args, dtype } => {
                    let a: Vec<(Scalar, DType)> = args.iter().map(|r| (self.regs[*r], self.types[*r])).collect();
                    self.regs[*dst] = interp::scalar_op(op, &a, *dtype);
                    self.types[*dst] = *dtype;
                }
                Inst::AccNew { acc, op, src, dtype } => {
                    self.accs.insert(*acc, Acc::new(*op, *src, *dtype));
                    self.types[*acc] = *dtype;
                }
                Inst::AccPush { acc, value, by, pred } => {
                    if !self.pred(pred) {
                        continue;
                    }
                    let v = self.regs[*value];
                    let w = by.map(|b| self.regs[b]);
                    if let Some(a) = self.accs.get_mut(acc) {
                        match w {
                            Some(w) => a.push_product(v, w),
                            None => a.push(v),
                        }
                    }
                }
                Inst::AccGet { dst, acc } => {
                    let dt = self.types[*acc];
                    let r = self.accs.get(acc).map(|a| a.result()).unwrap_or(Scalar::Int(0));
                    self.regs[*dst] = interp::scalar_to(r, dt);
                    self.types[*dst] = dt;
                }
                Inst::Check { value, lo, hi, pred, loc } => {
                    if self.pred(pred) {
                        let v = interp::scalar_index(self.regs[*value]);
                        let (l, h) = (self.dim(lo, *loc)?, self.dim(hi, *loc)?);
                        if v < l || v >= h {
                            return Err(InterpError {
                                message: format!("index {v} is out of range {l}..{h}"),
                                loc: *loc,
                            });
                        }
                    }
                }
                Inst::Copy { dst, src } => {
                    self.regs[*dst] = self.regs[*src];
                    self.types[*dst] = self.types[*src];
                }
                Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                    let lo = self.dim(lo, Loc::default())?;
                    let trip = self.dim(trip, Loc::default())?;
                    for k in 0..trip.max(0) {
                        self.regs[*iter] = Scalar::Int(i128::from(lo + k));
                        self.types[*iter] = DType::I64;
                        self.block(body, bufs)?;
                        if let Some(e) = exit
                            && interp::scalar_bool(self.regs[*e])
                        {
                            break;
                        }
                        let vals: Vec<Scalar> = next.iter().map(|r| self.regs[*r]).collect();
                        for (c, v) in carried.iter().zip(vals) {
                            let t = self.types[*c];
                            self.regs[*c] = interp::scalar_to(v, t);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_dims(g: &Graph, dim: &dyn Fn(&Dim, Loc) -> Result<i64, InterpError>) -> Result<(), InterpError> {
    for id in g.topo() {
        let n = g.node(id);
        for d in &n.shape {
            let v = dim(d, n.loc)?;
            if v < 0 {
                return Err(InterpError {
                    message: format!("dimension `{d}` is negative ({v}) for these sizes"),
                    loc: n.loc,
                });
            }
        }
        if let Op::Loop { body, .. } = &n.op {
            check_dims(body, dim)?;
        }
    }
    Ok(())
}
