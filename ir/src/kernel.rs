//! The kernel IR: one device kernel as loop-level code over registers. Ranges have a kind
//! (parallel-global, sequential, reduce, unrolled, vectorised); loads and stores use symbolic
//! index expressions over range variables and sizes; reductions use accumulators whose
//! arithmetic is the interpreter's [`Acc`](crate::interp::Acc); the language's sequential loops
//! are structured loops with carried registers and an optional exit.
//!
//! How a device kernel maps to ranges is decided by [`Knobs`], which are data: they print and
//! parse as text, have a validity predicate, and can be forced from the command line.

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::*;
use crate::interp::{self, Acc, Array, InterpError};
use crate::schedule::{BufferKind, Schedule};
use std::collections::HashMap;
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeKind {
    /// Iterations spread over threads / blocks / cores.
    Global,
    /// The threads of one workgroup: they share local memory and meet at barriers.
    Local,
    /// Iterations run in order by one thread.
    Sequential,
    /// A reduction range: iterations feed an accumulator, in order.
    Reduce,
    /// Unrolled by the given factor (the order of iterations is unchanged).
    Unrolled(u32),
    /// Vectorised with the given width (a scalar tail handles the rest).
    Vectorized(u32),
}

#[derive(Clone, Debug)]
pub enum Inst {
    /// `for var in 0..extent` (with `guard`: only where `guard` holds, for split ranges).
    Range {
        var: usize,
        extent: Dim,
        kind: RangeKind,
        body: Vec<Inst>,
    },
    Const {
        dst: usize,
        value: Scalar,
        dtype: DType,
    },
    /// The i64 value of an index expression (`IExpr::Coord(k)` is range variable k,
    /// `IExpr::Data(r)` is register r).
    Index {
        dst: usize,
        expr: IExpr,
    },
    /// `dst = pred ? buf[index] : fill` (the load happens only where `pred` holds). `loc` is
    /// the source of the value read, for reports of faulting accesses; like `Kernel::loc` it is
    /// not part of the text form.
    Load {
        dst: usize,
        buf: usize,
        index: IExpr,
        pred: Option<usize>,
        fill: Scalar,
        dtype: DType,
        loc: Loc,
    },
    Store {
        buf: usize,
        index: IExpr,
        value: usize,
        pred: Option<usize>,
        loc: Loc,
    },
    /// An elementwise operation (Unary, Binary, Where, Cast) on registers.
    Alu {
        dst: usize,
        op: Op,
        args: Vec<usize>,
        dtype: DType,
    },
    AccNew {
        acc: usize,
        op: ReduceOp,
        src: DType,
        dtype: DType,
    },
    /// Adds `value` to the accumulator (only where `pred` holds).
    AccPush {
        acc: usize,
        value: usize,
        pred: Option<usize>,
    },
    AccGet {
        dst: usize,
        acc: usize,
    },
    /// Where `pred` holds, `lo <= value < hi` must hold, or the kernel fails naming `loc`.
    Check {
        value: usize,
        lo: Dim,
        hi: Dim,
        pred: Option<usize>,
        loc: Loc,
    },
    /// A sequential loop: `iter` counts from `lo`; each trip runs `body`, stops if `exit` is true,
    /// else copies `next` into `carried`.
    Loop {
        lo: Dim,
        trip: Dim,
        iter: usize,
        carried: Vec<usize>,
        body: Vec<Inst>,
        next: Vec<usize>,
        exit: Option<usize>,
    },
    Copy {
        dst: usize,
        src: usize,
    },
    /// Local (workgroup-shared) memory `l{buf}` of `size` elements.
    LocalAlloc {
        buf: usize,
        dtype: DType,
        size: Dim,
    },
    LocalLoad {
        dst: usize,
        buf: usize,
        index: IExpr,
        dtype: DType,
    },
    LocalStore {
        buf: usize,
        index: IExpr,
        value: usize,
    },
    /// Every thread of the enclosing local range waits here until all have arrived.
    Barrier,
    /// A matrix multiply-accumulate on register fragments: `d = c + a @ b` with `a` m x k, `b`
    /// k x n, `c` and `d` m x n (row-major register lists). Each element accumulates in k order,
    /// one fma at a time rounded to `dtype`: the order every backend's tensor-core code must
    /// reproduce (or meet the reduction bound of docs/numerics.md).
    Mma {
        d: Vec<usize>,
        a: Vec<usize>,
        b: Vec<usize>,
        c: Vec<usize>,
        m: usize,
        n: usize,
        k: usize,
        dtype: DType,
    },
}

/// One kernel argument: a buffer of the schedule.
#[derive(Clone, Debug)]
pub struct KBuf {
    pub id: usize,
    pub dtype: DType,
    pub shape: Vec<Dim>,
    pub write: bool,
}

#[derive(Clone, Debug)]
pub struct Kernel {
    pub name: String,
    pub bufs: Vec<KBuf>,
    pub body: Vec<Inst>,
    pub regs: usize,
    pub knobs: Knobs,
    /// The source of the value the kernel computes (its first output's node), for reports of
    /// faults inside it. Not part of the text form.
    pub loc: Loc,
}

/// Optimisation choices for one kernel, as data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Knobs {
    /// How many leading output axes run as parallel-global ranges (the rest are sequential).
    pub parallel: usize,
    /// Unroll factor of reduction ranges (1 = none).
    pub unroll: u32,
    /// Vector width of the innermost output range (1 = scalar).
    pub vector: u32,
    /// Threads that share one reduction (through local memory; 1 = none). Grouping changes the
    /// order of floating-point reductions (within the bound of docs/numerics.md).
    pub group: u32,
    /// Register tile: a kernel whose two innermost parallel output ranges enclose a reduction
    /// computes `upcast x upcast` outputs per iteration (1 = one; see `crate::upcast`). Other
    /// kernels ignore it. Results are unchanged.
    pub upcast: u32,
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs { parallel: 1, unroll: 1, vector: 1, group: 1, upcast: 1 }
    }
}

impl std::fmt::Display for Knobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parallel={},unroll={},vector={},group={}", self.parallel, self.unroll, self.vector, self.group)?;
        if self.upcast != 1 {
            write!(f, ",upcast={}", self.upcast)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Knobs {
    type Err = String;
    /// `parallel=2,unroll=4,vector=4`; missing keys keep their defaults.
    fn from_str(s: &str) -> Result<Knobs, String> {
        let mut k = Knobs::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, v) = part.split_once('=').ok_or(format!("`{part}`: expected KEY=VALUE"))?;
            let n: u32 = v.trim().parse().map_err(|_| format!("`{part}`: `{v}` is not a number"))?;
            match key.trim() {
                "parallel" => k.parallel = n as usize,
                "unroll" => k.unroll = n,
                "vector" => k.vector = n,
                "group" => k.group = n,
                "upcast" => k.upcast = n,
                other => {
                    return Err(format!(
                        "unknown knob `{other}`; the knobs are parallel, unroll, vector, group, upcast"
                    ));
                }
            }
        }
        Ok(k)
    }
}

impl Knobs {
    /// Whether the knobs make sense for a kernel whose output has `rank` axes.
    pub fn valid_for(&self, rank: usize) -> Result<(), String> {
        if self.parallel > rank {
            return Err(format!("parallel={} but the kernel has {rank} output axes", self.parallel));
        }
        for (name, v, max) in [
            ("unroll", self.unroll, 64),
            ("vector", self.vector, 64),
            ("group", self.group, 256),
            ("upcast", self.upcast, 8),
        ] {
            if v == 0 || !v.is_power_of_two() || v > max {
                return Err(format!("{name}={v}: must be a power of two from 1 to {max}"));
            }
        }
        if self.vector > 1 && rank == 0 {
            return Err("vector > 1 needs an output axis to vectorise".into());
        }
        Ok(())
    }
}

/// An error lowering to the kernel IR.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct KernelError {
    pub message: String,
    pub loc: Loc,
}

/// A loop body being emitted: its graph, the iteration register, the carried registers, the
/// element coordinates (as a key) and the outer nodes its captured inputs stand for.
type Body<'s> = (&'s Graph, usize, Vec<usize>, String, Vec<NodeId>);

struct Builder<'s> {
    s: &'s Schedule,
    blocks: Vec<Vec<Inst>>,
    memo: Vec<HashMap<String, usize>>,
    regs: usize,
    vars: usize,
    /// Buffer id -> kernel argument index.
    args: HashMap<usize, usize>,
    /// Node -> buffer id, for values the kernel reads from memory.
    read_nodes: HashMap<NodeId, usize>,
    /// Per loop body being emitted: (graph, iteration reg, carried regs, element coordinates).
    bodies: Vec<Body<'s>>,
    group: u32,
    locals: usize,
}

fn coords_key(c: &[IExpr]) -> String {
    c.iter().map(|e| format!("{e}")).collect::<Vec<_>>().join(",")
}

fn subst(e: &IExpr, coords: &[IExpr], data: &[usize]) -> IExpr {
    match e {
        IExpr::Coord(k) => coords.get(*k).cloned().unwrap_or(IExpr::c(0)),
        IExpr::Dim(d) => IExpr::Dim(d.clone()),
        IExpr::Data(k) => IExpr::Data(data.get(*k).copied().unwrap_or(0)),
        IExpr::Add(a, b) => IExpr::sum(subst(a, coords, data), subst(b, coords, data)),
        IExpr::Mul(a, b) => IExpr::product(subst(a, coords, data), subst(b, coords, data)),
        IExpr::Div(a, b) => IExpr::Div(Box::new(subst(a, coords, data)), Box::new(subst(b, coords, data))),
        IExpr::Mod(a, b) => IExpr::Mod(Box::new(subst(a, coords, data)), Box::new(subst(b, coords, data))),
    }
}

/// Row-major linear index of `coords` in `shape`.
fn linear(coords: &[IExpr], shape: &[Dim]) -> IExpr {
    let mut acc = IExpr::c(0);
    for (i, c) in coords.iter().enumerate() {
        let stride = shape[i + 1..].iter().fold(Dim::constant(1), |a, b| a.mul(b));
        acc = IExpr::sum(acc, IExpr::product(c.clone(), IExpr::Dim(stride)));
    }
    acc.simplified()
}

impl<'s> Builder<'s> {
    fn reg(&mut self) -> usize {
        self.regs += 1;
        self.regs - 1
    }
    fn push(&mut self, i: Inst) {
        if let Some(b) = self.blocks.last_mut() {
            b.push(i);
        }
    }
    fn open(&mut self) {
        self.blocks.push(Vec::new());
        self.memo.push(HashMap::new());
    }
    fn close(&mut self) -> Vec<Inst> {
        self.memo.pop();
        self.blocks.pop().unwrap_or_default()
    }
    fn lookup(&self, key: &str) -> Option<usize> {
        self.memo.iter().rev().find_map(|m| m.get(key).copied())
    }
    fn constant(&mut self, value: Scalar, dtype: DType) -> usize {
        let dst = self.reg();
        self.push(Inst::Const { dst, value, dtype });
        dst
    }
    fn alu(&mut self, op: Op, args: Vec<usize>, dtype: DType) -> usize {
        let dst = self.reg();
        self.push(Inst::Alu { dst, op, args, dtype });
        dst
    }
    fn index_value(&mut self, expr: IExpr) -> usize {
        let dst = self.reg();
        self.push(Inst::Index { dst, expr });
        dst
    }
    fn and(&mut self, a: Option<usize>, b: usize) -> usize {
        match a {
            None => b,
            Some(a) => self.alu(Op::Binary(BinaryOp::And), vec![a, b], DType::Bool),
        }
    }
    /// `lo <= e < hi` as a bool register.
    fn in_range(&mut self, e: &IExpr, lo: &Dim, hi: &Dim) -> usize {
        let v = self.index_value(e.clone());
        let l = self.index_value(IExpr::Dim(lo.clone()));
        let h = self.index_value(IExpr::Dim(hi.clone()));
        let a = self.alu(Op::Binary(BinaryOp::Ge), vec![v, l], DType::Bool);
        let b = self.alu(Op::Binary(BinaryOp::Lt), vec![v, h], DType::Bool);
        self.alu(Op::Binary(BinaryOp::And), vec![a, b], DType::Bool)
    }

    /// Emits code for the value of node `id` of graph `g` at `coords`, where `pred` holds.
    fn emit(&mut self, g: &'s Graph, id: NodeId, coords: &[IExpr], pred: Option<usize>) -> Result<usize, KernelError> {
        let key = format!("{:p}:{}:{}:{:?}", g as *const Graph, id.index(), coords_key(coords), pred);
        if let Some(r) = self.lookup(&key) {
            return Ok(r);
        }
        let r = self.emit_inner(g, id, coords, pred)?;
        if let Some(m) = self.memo.last_mut() {
            m.insert(key, r);
        }
        Ok(r)
    }

    fn emit_inner(
        &mut self,
        g: &'s Graph,
        id: NodeId,
        coords: &[IExpr],
        pred: Option<usize>,
    ) -> Result<usize, KernelError> {
        let n = g.node(id);
        let top = std::ptr::eq(g, &self.s.graph);
        if top && let Some(&b) = self.read_nodes.get(&id) {
            let buf = self.args[&b];
            let dst = self.reg();
            let index = linear(coords, &n.shape);
            self.push(Inst::Load { dst, buf, index, pred, fill: Scalar::zero(n.dtype), dtype: n.dtype, loc: n.loc });
            return Ok(dst);
        }
        match &n.op {
            Op::Input(k) => {
                // Inside a loop body: the iteration, a carried value, or a captured outer value.
                let Some((_, iter, carried, elem, captured)) =
                    self.bodies.iter().rev().find(|b| std::ptr::eq(b.0, g)).cloned()
                else {
                    return Err(KernelError { message: "an input that is not a kernel buffer".into(), loc: n.loc });
                };
                if *k == 0 {
                    return Ok(iter);
                }
                if *k <= carried.len() {
                    if coords_key(coords) != elem {
                        return Err(KernelError {
                            message: "a loop body that reads its carried values at other positions is not supported by the kernel IR yet".into(),
                            loc: n.loc,
                        });
                    }
                    return Ok(carried[*k - 1]);
                }
                let outer_node = captured[*k - 1 - carried.len()];
                let outer_graph = self.outer_graph_of(g);
                self.emit(outer_graph, outer_node, coords, pred)
            }
            Op::Const(s) => Ok(self.constant(*s, n.dtype)),
            Op::Size(d) => Ok(self.index_value(IExpr::Dim(d.clone()))),
            Op::Iota { axis, offset } => {
                let e = IExpr::sum(coords.get(*axis).cloned().unwrap_or(IExpr::c(0)), IExpr::Dim(offset.clone()))
                    .simplified();
                let v = self.index_value(e);
                Ok(if n.dtype == DType::I64 { v } else { self.alu(Op::Cast, vec![v], n.dtype) })
            }
            Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast | Op::Bitcast | Op::Fma => {
                let mut args = Vec::new();
                for a in &n.args {
                    args.push(self.emit(g, *a, coords, pred)?);
                }
                Ok(self.alu(n.op.clone(), args, n.dtype))
            }
            Op::Index { map, guards, fill } => {
                let mut data = Vec::new();
                for a in &n.args[1..] {
                    data.push(self.emit(g, *a, coords, pred)?);
                }
                let mut p = pred;
                let mut fills = false;
                for gd in guards {
                    let e = subst(&gd.expr, coords, &data).simplified();
                    match gd.on_invalid {
                        OnInvalid::Fill => {
                            let c = self.in_range(&e, &gd.lo, &gd.hi);
                            p = Some(self.and(p, c));
                            fills = true;
                        }
                        OnInvalid::Error => {
                            let v = self.index_value(e);
                            self.push(Inst::Check {
                                value: v,
                                lo: gd.lo.clone(),
                                hi: gd.hi.clone(),
                                pred: p,
                                loc: n.loc,
                            });
                        }
                    }
                }
                let src_coords: Vec<IExpr> = map.iter().map(|m| subst(m, coords, &data).simplified()).collect();
                let v = self.emit(g, n.args[0], &src_coords, p)?;
                if fills {
                    let f = self.constant(*fill, n.dtype);
                    let c = p.unwrap_or(f);
                    Ok(self.alu(Op::Where, vec![c, v, f], n.dtype))
                } else {
                    Ok(v)
                }
            }
            Op::Reduce { op, axes }
                if self.group > 1 && axes.len() == 1 && !matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) =>
            {
                self.grouped_reduce(g, id, *op, axes[0], coords, pred)
            }
            Op::Reduce { op, axes } => {
                let src = g.node(n.args[0]);
                let acc = self.reg();
                self.push(Inst::AccNew { acc, op: *op, src: src.dtype, dtype: n.dtype });
                // Full source coordinates: kept axes from `coords`, reduced axes from new ranges.
                let mut full = Vec::new();
                let mut ki = 0;
                let mut vars = Vec::new();
                for k in 0..src.shape.len() {
                    if axes.contains(&k) {
                        let v = self.vars;
                        self.vars += 1;
                        vars.push((v, src.shape[k].clone()));
                        full.push(IExpr::Coord(v));
                    } else {
                        full.push(coords.get(ki).cloned().unwrap_or(IExpr::c(0)));
                        ki += 1;
                    }
                }
                // Nested ranges, innermost last (row-major order, as the interpreter reduces).
                let mut opened = 0;
                for _ in &vars {
                    self.open();
                    opened += 1;
                }
                let v = self.emit(g, n.args[0], &full, pred)?;
                self.push(Inst::AccPush { acc, value: v, pred: None });
                for (var, extent) in vars.into_iter().rev() {
                    let body = self.close();
                    opened -= 1;
                    self.push(Inst::Range { var, extent, kind: RangeKind::Reduce, body });
                }
                let _ = opened;
                let dst = self.reg();
                self.push(Inst::AccGet { dst, acc });
                Ok(dst)
            }
            Op::Proj(k) => {
                let lp = n.args[0];
                let regs = self.emit_loop(g, lp, coords, pred)?;
                regs.get(*k).copied().ok_or(KernelError { message: "loop output out of range".into(), loc: n.loc })
            }
            Op::Scan { .. } | Op::Loop { .. } => Err(KernelError {
                message: "a scan or loop value used inside another computation is not supported by the kernel IR yet"
                    .into(),
                loc: n.loc,
            }),
        }
    }

    /// A reduction over one axis shared by `group` threads of a workgroup: thread t reduces the
    /// elements t, t + G, t + 2G, ... into a partial result in local memory; after a barrier, the
    /// partials are combined in thread order.
    fn grouped_reduce(
        &mut self,
        g: &'s Graph,
        id: NodeId,
        op: ReduceOp,
        axis: usize,
        coords: &[IExpr],
        pred: Option<usize>,
    ) -> Result<usize, KernelError> {
        let n = g.node(id);
        let src = g.node(n.args[0]);
        let gsz = i64::from(self.group);
        let extent = src.shape[axis].clone();
        // Partials stay in the accumulator dtype (f32 for f16/bf16) until the final result.
        let accd = match src.dtype {
            DType::F16 | DType::Bf16 => DType::F32,
            d => d,
        };
        let lbuf = self.locals;
        self.locals += 1;
        self.push(Inst::LocalAlloc { buf: lbuf, dtype: accd, size: Dim::constant(gsz) });
        let t = self.vars;
        let r = self.vars + 1;
        self.vars += 2;
        self.open();
        let acc = self.reg();
        self.push(Inst::AccNew { acc, op, src: src.dtype, dtype: accd });
        self.open();
        let elem = IExpr::sum(IExpr::product(IExpr::Coord(r), IExpr::c(gsz)), IExpr::Coord(t)).simplified();
        let v = self.index_value(elem.clone());
        let hi = self.index_value(IExpr::Dim(extent.clone()));
        let inside = self.alu(Op::Binary(BinaryOp::Lt), vec![v, hi], DType::Bool);
        let p = self.and(pred, inside);
        let mut full = Vec::new();
        let mut ki = 0;
        for k in 0..src.shape.len() {
            if k == axis {
                full.push(elem.clone());
            } else {
                full.push(coords.get(ki).cloned().unwrap_or(IExpr::c(0)));
                ki += 1;
            }
        }
        let v = self.emit(g, n.args[0], &full, Some(p))?;
        self.push(Inst::AccPush { acc, value: v, pred: Some(p) });
        let body = self.close();
        let trips = extent.add_const(gsz - 1).floor_div(gsz).unwrap_or_default();
        self.push(Inst::Range { var: r, extent: trips, kind: RangeKind::Reduce, body });
        let partial = self.reg();
        self.push(Inst::AccGet { dst: partial, acc });
        self.push(Inst::LocalStore { buf: lbuf, index: IExpr::Coord(t), value: partial });
        self.push(Inst::Barrier);
        let tbody = self.close();
        self.push(Inst::Range { var: t, extent: Dim::constant(gsz), kind: RangeKind::Local, body: tbody });
        let acc2 = self.reg();
        self.push(Inst::AccNew { acc: acc2, op, src: accd, dtype: n.dtype });
        let u = self.vars;
        self.vars += 1;
        self.open();
        let pv = self.reg();
        self.push(Inst::LocalLoad { dst: pv, buf: lbuf, index: IExpr::Coord(u), dtype: accd });
        self.push(Inst::AccPush { acc: acc2, value: pv, pred: None });
        let body = self.close();
        self.push(Inst::Range { var: u, extent: Dim::constant(gsz), kind: RangeKind::Sequential, body });
        let dst = self.reg();
        self.push(Inst::AccGet { dst, acc: acc2 });
        Ok(dst)
    }

    /// The graph enclosing loop body `g`: the previous body, or the schedule's graph.
    fn outer_graph_of(&self, g: &Graph) -> &'s Graph {
        let pos = self.bodies.iter().rposition(|b| std::ptr::eq(b.0, g)).unwrap_or(0);
        if pos == 0 { &self.s.graph } else { self.bodies[pos - 1].0 }
    }

    fn emit_loop(
        &mut self,
        g: &'s Graph,
        lp: NodeId,
        coords: &[IExpr],
        pred: Option<usize>,
    ) -> Result<Vec<usize>, KernelError> {
        let key = format!("loop:{:p}:{}:{}", g as *const Graph, lp.index(), coords_key(coords));
        if let Some(r) = self.lookup(&key) {
            // Registers of one loop are consecutive.
            let n = match &g.node(lp).op {
                Op::Loop { carried, .. } => *carried,
                _ => 0,
            };
            return Ok((r..r + n).collect());
        }
        let n = g.node(lp);
        let Op::Loop { lo, trip, carried, has_exit, body } = &n.op else {
            return Err(KernelError { message: "projection of a non-loop".into(), loc: n.loc });
        };
        let mut inits = Vec::new();
        for a in &n.args[..*carried] {
            inits.push(self.emit(g, *a, coords, pred)?);
        }
        let regs: Vec<usize> = (0..*carried).map(|_| self.reg()).collect();
        let first = regs.first().copied().unwrap_or(0);
        for (r, i) in regs.iter().zip(&inits) {
            self.push(Inst::Copy { dst: *r, src: *i });
        }
        let iter = self.reg();
        let captured: Vec<NodeId> = n.args[*carried..].to_vec();
        let body_ref: &'s Graph = body;
        self.bodies.push((body_ref, iter, regs.clone(), coords_key(coords), captured));
        self.open();
        let mut next = Vec::new();
        let mut outs: Vec<NodeId> = body_ref.outputs.iter().map(|(_, id)| *id).collect();
        let exits = if *has_exit { outs.split_off(*carried) } else { Vec::new() };
        for o in &outs {
            next.push(self.emit(body_ref, *o, coords, pred)?);
        }
        let exit = match exits.first() {
            Some(e) => Some(self.emit(body_ref, *e, coords, pred)?),
            None => None,
        };
        let insts = self.close();
        self.bodies.pop();
        self.push(Inst::Loop {
            lo: lo.clone(),
            trip: trip.clone(),
            iter,
            carried: regs.clone(),
            body: insts,
            next,
            exit,
        });
        if let Some(m) = self.memo.last_mut() {
            m.insert(key, first);
        }
        Ok(regs)
    }
}

/// Lowers device kernel `k` of a schedule to the kernel IR with the given knobs.
pub fn lower(s: &Schedule, k: usize, knobs: &Knobs) -> Result<Kernel, KernelError> {
    let kern = &s.kernels[k];
    let g = &s.graph;
    let mut b = Builder {
        s,
        blocks: vec![Vec::new()],
        memo: vec![HashMap::new()],
        regs: 0,
        vars: 0,
        args: HashMap::new(),
        read_nodes: HashMap::new(),
        bodies: Vec::new(),
        group: knobs.group,
        locals: 0,
    };
    let mut bufs = Vec::new();
    for &id in kern.reads.iter().chain(&kern.writes) {
        let buf = &s.buffers[id];
        b.args.insert(id, bufs.len());
        bufs.push(KBuf { id, dtype: buf.dtype, shape: buf.shape.clone(), write: kern.writes.contains(&id) });
    }
    for &id in &kern.reads {
        b.read_nodes.insert(s.buffers[id].node, id);
    }
    let roots: Vec<NodeId> = kern.writes.iter().map(|w| s.buffers[*w].node).collect();
    let loc = roots.first().map(|r| g.node(*r).loc).unwrap_or_default();
    let shape = roots.first().map(|r| g.node(*r).shape.clone()).unwrap_or_default();
    if roots.iter().any(|r| g.node(*r).shape != shape) {
        return Err(KernelError { message: "a kernel whose outputs have different shapes".into(), loc });
    }
    knobs.valid_for(shape.len()).map_err(|m| KernelError { message: format!("invalid knobs: {m}"), loc })?;
    // A scan kernel: sequential over the scan axis with a running accumulator.
    let scan = roots.iter().find_map(|r| match g.node(*r).op {
        Op::Scan { op, axis } => Some((*r, op, axis)),
        _ => None,
    });
    let rank = shape.len();
    let mut out_vars = Vec::new();
    for _ in 0..rank {
        out_vars.push(b.vars);
        b.vars += 1;
    }
    let coords: Vec<IExpr> = out_vars.iter().map(|v| IExpr::Coord(*v)).collect();
    // Open one block per output range, outermost first.
    for _ in 0..rank {
        b.open();
    }
    match scan {
        Some((root, op, axis)) => {
            // The scan axis's range is innermost and sequential; the accumulator lives outside it.
            // Re-open: close the innermost block for the scan axis and build it by hand.
            let src = g.node(root).args[0];
            let acc = b.reg();
            let inner = b.close();
            let mut body_coords = coords.clone();
            body_coords[axis] = IExpr::Coord(out_vars[axis]);
            b.push(Inst::AccNew { acc, op, src: g.node(src).dtype, dtype: g.node(root).dtype });
            b.open();
            let v = b.emit(g, src, &body_coords, None)?;
            b.push(Inst::AccPush { acc, value: v, pred: None });
            let r = b.reg();
            b.push(Inst::AccGet { dst: r, acc });
            let wb = b.args[&kern.writes[0]];
            let loc = g.node(root).loc;
            b.push(Inst::Store { buf: wb, index: linear(&body_coords, &shape), value: r, pred: None, loc });
            let body = b.close();
            let _ = inner;
            b.push(Inst::Range { var: out_vars[axis], extent: shape[axis].clone(), kind: RangeKind::Sequential, body });
            // Close the remaining output ranges (all but the scan axis).
            let mut order: Vec<usize> = (0..rank).filter(|a| *a != axis).collect();
            order.reverse();
            for a in order {
                let body = b.close();
                let kind = if a < knobs.parallel { RangeKind::Global } else { RangeKind::Sequential };
                b.push(Inst::Range { var: out_vars[a], extent: shape[a].clone(), kind, body });
            }
        }
        None => {
            for (w, r) in kern.writes.iter().zip(&roots) {
                let v = b.emit(g, *r, &coords, None)?;
                let buf = b.args[w];
                let loc = g.node(*r).loc;
                b.push(Inst::Store { buf, index: linear(&coords, &shape), value: v, pred: None, loc });
            }
            for a in (0..rank).rev() {
                let body = b.close();
                let kind = if a < knobs.parallel {
                    RangeKind::Global
                } else if a == rank - 1 && knobs.vector > 1 {
                    RangeKind::Vectorized(knobs.vector)
                } else {
                    RangeKind::Sequential
                };
                b.push(Inst::Range { var: out_vars[a], extent: shape[a].clone(), kind, body });
            }
        }
    }
    let mut body = b.blocks.pop().unwrap_or_default();
    simplify_indices(&mut body, &mut HashMap::new());
    let mut regs = b.regs;
    if knobs.upcast > 1
        && let Some(tiled) = crate::upcast::upcast(&body, knobs.upcast, &mut regs, &mut b.vars)
    {
        body = tiled;
        simplify_indices(&mut body, &mut HashMap::new());
    }
    if knobs.unroll > 1 {
        mark_unroll(&mut body, knobs.unroll);
    }
    Ok(Kernel { name: format!("k{k}"), bufs, body, regs, knobs: knobs.clone(), loc })
}

fn mark_unroll(body: &mut [Inst], f: u32) {
    for i in body {
        match i {
            Inst::Range { kind, body, .. } => {
                if *kind == RangeKind::Reduce {
                    *kind = RangeKind::Unrolled(f);
                }
                mark_unroll(body, f);
            }
            Inst::Loop { body, .. } => mark_unroll(body, f),
            _ => {}
        }
    }
}

/// The text form of a kernel (`tk emit --stage kernel`).
pub fn print(k: &Kernel) -> String {
    let mut out = String::new();
    let bufs: Vec<String> = k
        .bufs
        .iter()
        .map(|b| {
            let dims: Vec<String> = b.shape.iter().map(|d| d.to_string()).collect();
            format!("b{}: {}[{}]{}", b.id, b.dtype, dims.join(", "), if b.write { " out" } else { "" })
        })
        .collect();
    let _ = writeln!(out, "kernel {}({}) knobs {} {{", k.name, bufs.join(", "), k.knobs);
    print_block(&k.body, 1, &mut out);
    out.push_str("}\n");
    out
}

/// An index expression with range variables as `iN` and registers as `rN`.
fn ix(e: &IExpr) -> String {
    match e {
        IExpr::Coord(k) => format!("i{k}"),
        IExpr::Data(k) => format!("r{k}"),
        IExpr::Dim(d) if d.as_const().is_some() => d.to_string(),
        IExpr::Dim(d) => format!("<{d}>"),
        IExpr::Add(a, b) => format!("({} + {})", ix(a), ix(b)),
        IExpr::Mul(a, b) => format!("({} * {})", ix(a), ix(b)),
        IExpr::Div(a, b) => format!("({} / {})", ix(a), ix(b)),
        IExpr::Mod(a, b) => format!("({} % {})", ix(a), ix(b)),
    }
}

fn print_block(body: &[Inst], ind: usize, out: &mut String) {
    let pad = "  ".repeat(ind);
    for i in body {
        let _ = match i {
            Inst::Range { var, extent, kind, body } => {
                let _ = writeln!(out, "{pad}range i{var} in 0..<{extent}> {} {{", format!("{kind:?}").to_lowercase());
                print_block(body, ind + 1, out);
                writeln!(out, "{pad}}}")
            }
            Inst::Const { dst, value, dtype } => writeln!(out, "{pad}r{dst} = const {value} : {dtype}"),
            Inst::Index { dst, expr } => writeln!(out, "{pad}r{dst} = index {} : i64", ix(expr)),
            Inst::Load { dst, buf, index, pred, fill, dtype, .. } => match pred {
                Some(p) => writeln!(out, "{pad}r{dst} = load a{buf}[{}] if r{p} else {fill} : {dtype}", ix(index)),
                None => writeln!(out, "{pad}r{dst} = load a{buf}[{}] : {dtype}", ix(index)),
            },
            Inst::Store { buf, index, value, pred, .. } => match pred {
                Some(p) => writeln!(out, "{pad}store a{buf}[{}] = r{value} if r{p}", ix(index)),
                None => writeln!(out, "{pad}store a{buf}[{}] = r{value}", ix(index)),
            },
            Inst::Alu { dst, op, args, dtype } => {
                let name = match op {
                    Op::Unary(u) => format!("{u:?}").to_lowercase(),
                    Op::Binary(b) => format!("{b:?}").to_lowercase(),
                    Op::Where => "where".into(),
                    Op::Cast => "cast".into(),
                    Op::Bitcast => "bitcast".into(),
                    Op::Fma => "fma".into(),
                    _ => "?".into(),
                };
                let a: Vec<String> = args.iter().map(|r| format!("r{r}")).collect();
                writeln!(out, "{pad}r{dst} = {name} {} : {dtype}", a.join(", "))
            }
            Inst::AccNew { acc, op, src, dtype } => {
                writeln!(out, "{pad}r{acc} = acc {} {src} -> {dtype}", format!("{op:?}").to_lowercase())
            }
            Inst::AccPush { acc, value, pred } => match pred {
                Some(p) => writeln!(out, "{pad}accumulate r{acc} += r{value} if r{p}"),
                None => writeln!(out, "{pad}accumulate r{acc} += r{value}"),
            },
            Inst::LocalAlloc { buf, dtype, size } => writeln!(out, "{pad}local l{buf}: {dtype}[<{size}>]"),
            Inst::LocalLoad { dst, buf, index, dtype } => {
                writeln!(out, "{pad}r{dst} = load l{buf}[{}] : {dtype}", ix(index))
            }
            Inst::LocalStore { buf, index, value } => writeln!(out, "{pad}store l{buf}[{}] = r{value}", ix(index)),
            Inst::Barrier => writeln!(out, "{pad}barrier"),
            Inst::Mma { d, a, b, c, m, n, k, dtype } => {
                let l = |v: &[usize]| v.iter().map(|r| format!("r{r}")).collect::<Vec<_>>().join(", ");
                writeln!(out, "{pad}mma {m}x{n}x{k} ({}) = ({}) + ({}) @ ({}) : {dtype}", l(d), l(c), l(a), l(b))
            }
            Inst::AccGet { dst, acc } => writeln!(out, "{pad}r{dst} = result r{acc}"),
            Inst::Check { value, lo, hi, pred, loc } => {
                let p = pred.map(|p| format!(" if r{p}")).unwrap_or_default();
                writeln!(out, "{pad}check r{value} in <{lo}>..<{hi}>{p} @{}:{}..{}", loc.file, loc.lo, loc.hi)
            }
            Inst::Copy { dst, src } => writeln!(out, "{pad}r{dst} = r{src}"),
            Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                let c: Vec<String> = carried.iter().map(|r| format!("r{r}")).collect();
                let _ = writeln!(out, "{pad}loop r{iter} from <{lo}> trips <{trip}> carry ({}) {{", c.join(", "));
                print_block(body, ind + 1, out);
                let nx: Vec<String> = next.iter().map(|r| format!("r{r}")).collect();
                if let Some(e) = exit {
                    let _ = writeln!(out, "{pad}  exit if r{e}");
                }
                let _ = writeln!(out, "{pad}  next ({})", nx.join(", "));
                writeln!(out, "{pad}}}")
            }
        };
    }
}

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
                Inst::Alu { dst, op, args, dtype } => {
                    let a: Vec<(Scalar, DType)> = args.iter().map(|r| (self.regs[*r], self.types[*r])).collect();
                    self.regs[*dst] = interp::scalar_op(op, &a, *dtype);
                    self.types[*dst] = *dtype;
                }
                Inst::AccNew { acc, op, src, dtype } => {
                    self.accs.insert(*acc, Acc::new(*op, *src, *dtype));
                    self.types[*acc] = *dtype;
                }
                Inst::AccPush { acc, value, pred } => {
                    if !self.pred(pred) {
                        continue;
                    }
                    let v = self.regs[*value];
                    if let Some(a) = self.accs.get_mut(acc) {
                        a.push(v);
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

/// Parses the text form of a kernel (as [`print`] writes it).
pub fn parse(text: &str) -> Result<Kernel, crate::text::ParseError> {
    let lines: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with("//"))
        .collect();
    let perr = |line: usize, m: &str| crate::text::ParseError { line, message: m.to_string() };
    let Some(&(ln, head)) = lines.first() else { return Err(perr(0, "empty kernel")) };
    let rest = head.strip_prefix("kernel ").ok_or_else(|| perr(ln, "expected `kernel NAME(...)`"))?;
    let (name, rest) = rest.split_once('(').ok_or_else(|| perr(ln, "expected `(`"))?;
    let (args, rest) = rest.rsplit_once(") knobs ").ok_or_else(|| perr(ln, "expected `) knobs ...`"))?;
    let knobs: Knobs = rest.trim_end_matches('{').trim().parse().map_err(|e: String| perr(ln, &e))?;
    let mut bufs = Vec::new();
    for a in crate::text::split_top(args, ',') {
        let a = a.trim();
        if a.is_empty() {
            continue;
        }
        let (id, ty) = a.split_once(": ").ok_or_else(|| perr(ln, "expected `bN: TYPE`"))?;
        let write = ty.ends_with(" out");
        let ty = ty.trim_end_matches(" out");
        let id: usize = id.trim_start_matches('b').parse().map_err(|_| perr(ln, "bad buffer id"))?;
        let (d, rest) = ty.split_once('[').ok_or_else(|| perr(ln, "bad type"))?;
        let dtype = DType::parse(d).ok_or_else(|| perr(ln, "unknown dtype"))?;
        let mut shape = Vec::new();
        for part in crate::text::split_top(rest.trim_end_matches(']'), ',') {
            if !part.trim().is_empty() {
                shape.push(crate::text::parse_dim(part.trim(), ln)?);
            }
        }
        bufs.push(KBuf { id, dtype, shape, write });
    }
    let mut pos = 1;
    let mut maxreg = 0usize;
    let body = parse_block(&lines, &mut pos, &mut maxreg)?;
    if pos != lines.len() {
        return Err(perr(lines.get(pos).map(|l| l.0).unwrap_or(0), "text after the kernel"));
    }
    Ok(Kernel { name: name.trim().to_string(), bufs, body, regs: maxreg + 1, knobs, loc: Loc::default() })
}

fn reg(w: &str, ln: usize, maxreg: &mut usize) -> Result<usize, crate::text::ParseError> {
    let r: usize = w
        .trim()
        .trim_end_matches(',')
        .strip_prefix('r')
        .and_then(|x| x.parse().ok())
        .ok_or(crate::text::ParseError { line: ln, message: format!("expected a register, found `{w}`") })?;
    *maxreg = (*maxreg).max(r);
    Ok(r)
}

fn kdim(w: &str, ln: usize) -> Result<Dim, crate::text::ParseError> {
    let inner = w
        .trim()
        .strip_prefix('<')
        .and_then(|x| x.strip_suffix('>'))
        .ok_or(crate::text::ParseError { line: ln, message: format!("expected `<DIM>`, found `{w}`") })?;
    crate::text::parse_dim(inner, ln)
}

fn kix(s: &str, ln: usize, maxreg: &mut usize) -> Result<IExpr, crate::text::ParseError> {
    crate::text::parse_iexpr_with(s, ln, 'i', 'r', &mut |r| *maxreg = (*maxreg).max(r))
}

fn alu_op(name: &str) -> Option<Op> {
    match name {
        "where" => Some(Op::Where),
        "cast" => Some(Op::Cast),
        "bitcast" => Some(Op::Bitcast),
        "fma" => Some(Op::Fma),
        n => crate::text::UNARY.iter().find(|u| format!("{u:?}").to_lowercase() == n).map(|u| Op::Unary(*u)).or_else(
            || crate::text::BINARY.iter().find(|b| format!("{b:?}").to_lowercase() == n).map(|b| Op::Binary(*b)),
        ),
    }
}

fn red_op(name: &str) -> Option<ReduceOp> {
    crate::text::REDUCE.iter().copied().find(|o| format!("{o:?}").to_lowercase() == name)
}

fn scalar(w: &str, ln: usize) -> Result<Scalar, crate::text::ParseError> {
    let e = || crate::text::ParseError { line: ln, message: format!("bad constant `{w}`") };
    Ok(match w {
        "true" => Scalar::Bool(true),
        "false" => Scalar::Bool(false),
        "nan" => Scalar::Float(f64::NAN),
        "inf" => Scalar::Float(f64::INFINITY),
        "-inf" => Scalar::Float(f64::NEG_INFINITY),
        w if w.contains(['.', 'e', 'E']) => Scalar::Float(w.parse().map_err(|_| e())?),
        w => Scalar::Int(w.parse().map_err(|_| e())?),
    })
}

fn parse_block(
    lines: &[(usize, &str)],
    pos: &mut usize,
    maxreg: &mut usize,
) -> Result<Vec<Inst>, crate::text::ParseError> {
    let mut out = Vec::new();
    loop {
        let Some(&(ln, l)) = lines.get(*pos) else {
            return Err(crate::text::ParseError { line: 0, message: "missing `}`".into() });
        };
        *pos += 1;
        let perr = |m: &str| crate::text::ParseError { line: ln, message: m.to_string() };
        if l == "}" {
            return Ok(out);
        }
        let words: Vec<&str> = crate::text::split_top(l, ' ').into_iter().filter(|w| !w.is_empty()).collect();
        if let Some(rest) = l.strip_prefix("range ") {
            let w: Vec<&str> = crate::text::split_top(rest, ' ').into_iter().filter(|x| !x.is_empty()).collect();
            let var: usize = w[0].trim_start_matches('i').parse().map_err(|_| perr("bad range variable"))?;
            let extent =
                kdim(w.get(2).and_then(|x| x.strip_prefix("0..")).ok_or_else(|| perr("expected `in 0..<DIM>`"))?, ln)?;
            let kind = match w.get(3).copied().unwrap_or("") {
                "global" => RangeKind::Global,
                "local" => RangeKind::Local,
                "sequential" => RangeKind::Sequential,
                "reduce" => RangeKind::Reduce,
                k if k.starts_with("unrolled(") => {
                    RangeKind::Unrolled(k[9..k.len() - 1].parse().map_err(|_| perr("bad factor"))?)
                }
                k if k.starts_with("vectorized(") => {
                    RangeKind::Vectorized(k[11..k.len() - 1].parse().map_err(|_| perr("bad width"))?)
                }
                _ => return Err(perr("unknown range kind")),
            };
            let body = parse_block(lines, pos, maxreg)?;
            out.push(Inst::Range { var, extent, kind, body });
        } else if let Some(rest) = l.strip_prefix("store ")
            && !l.starts_with("store l")
        {
            let (target, val) = rest.split_once(" = ").ok_or_else(|| perr("expected `store aN[...] = rM`"))?;
            let (buf, idx) = target.split_once('[').ok_or_else(|| perr("expected `[`"))?;
            let buf: usize = buf.trim_start_matches('a').parse().map_err(|_| perr("bad buffer"))?;
            let index = kix(idx.trim_end_matches(']'), ln, maxreg)?;
            let (v, pred) = match val.split_once(" if ") {
                Some((v, p)) => (reg(v, ln, maxreg)?, Some(reg(p, ln, maxreg)?)),
                None => (reg(val, ln, maxreg)?, None),
            };
            out.push(Inst::Store { buf, index, value: v, pred, loc: Loc::default() });
        } else if let Some(rest) = l.strip_prefix("accumulate ") {
            let (a, v) = rest.split_once(" += ").ok_or_else(|| perr("expected `+=`"))?;
            let (v, pred) = match v.split_once(" if ") {
                Some((v, p)) => (v, Some(reg(p, ln, maxreg)?)),
                None => (v, None),
            };
            out.push(Inst::AccPush { acc: reg(a, ln, maxreg)?, value: reg(v, ln, maxreg)?, pred });
        } else if l == "barrier" {
            out.push(Inst::Barrier);
        } else if let Some(rest) = l.strip_prefix("local l") {
            let (b, ty) = rest.split_once(": ").ok_or_else(|| perr("expected `local lN: TYPE`"))?;
            let (d, sz) = ty.split_once('[').ok_or_else(|| perr("expected `[`"))?;
            out.push(Inst::LocalAlloc {
                buf: b.parse().map_err(|_| perr("bad local buffer"))?,
                dtype: DType::parse(d).ok_or_else(|| perr("bad dtype"))?,
                size: kdim(sz.trim_end_matches(']'), ln)?,
            });
        } else if let Some(rest) = l.strip_prefix("store l") {
            let (target, val) = rest.split_once(" = ").ok_or_else(|| perr("expected `store lN[...] = rM`"))?;
            let (buf, idx) = target.split_once('[').ok_or_else(|| perr("expected `[`"))?;
            out.push(Inst::LocalStore {
                buf: buf.parse().map_err(|_| perr("bad local buffer"))?,
                index: kix(idx.trim_end_matches(']'), ln, maxreg)?,
                value: reg(val, ln, maxreg)?,
            });
        } else if let Some(rest) = l.strip_prefix("mma ") {
            let (body, t) = rest.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
            let (dims, rest) = body.split_once(' ').ok_or_else(|| perr("expected dimensions"))?;
            let ds: Vec<usize> =
                dims.split('x').map(|x| x.parse().map_err(|_| perr("bad mma shape"))).collect::<Result<_, _>>()?;
            if ds.len() != 3 {
                return Err(perr("expected MxNxK"));
            }
            let lists: Vec<Vec<usize>> = rest
                .split(['(', ')'])
                .map(str::trim)
                .filter(|x| x.starts_with('r'))
                .map(|x| x.split(',').map(|r| reg(r, ln, maxreg)).collect::<Result<Vec<_>, _>>())
                .collect::<Result<_, _>>()?;
            if lists.len() != 4 {
                return Err(perr("expected (d) = (c) + (a) @ (b)"));
            }
            out.push(Inst::Mma {
                d: lists[0].clone(),
                c: lists[1].clone(),
                a: lists[2].clone(),
                b: lists[3].clone(),
                m: ds[0],
                n: ds[1],
                k: ds[2],
                dtype: DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))?,
            });
        } else if let Some(rest) = l.strip_prefix("check ") {
            let (body, loc) = rest.rsplit_once(" @").ok_or_else(|| perr("missing location"))?;
            let w: Vec<&str> = crate::text::split_top(body, ' ').into_iter().filter(|x| !x.is_empty()).collect();
            let value = reg(w[0], ln, maxreg)?;
            let (lo, hi) = w.get(2).and_then(|r| r.split_once("..")).ok_or_else(|| perr("expected `in <LO>..<HI>`"))?;
            let pred = match w.get(4) {
                Some(p) => Some(reg(p, ln, maxreg)?),
                None => None,
            };
            let (f, r) = loc.split_once(':').ok_or_else(|| perr("bad location"))?;
            let (a, b) = r.split_once("..").ok_or_else(|| perr("bad location"))?;
            let num = |x: &str| x.parse::<u32>().map_err(|_| perr("bad location"));
            out.push(Inst::Check {
                value,
                lo: kdim(lo, ln)?,
                hi: kdim(hi, ln)?,
                pred,
                loc: Loc { file: num(f)?, lo: num(a)?, hi: num(b)? },
            });
        } else if let Some(rest) = l.strip_prefix("loop ") {
            // loop rI from <LO> trips <N> carry (rA, rB) {
            let w: Vec<&str> = crate::text::split_top(rest.trim_end_matches('{').trim(), ' ')
                .into_iter()
                .filter(|x| !x.is_empty())
                .collect();
            let iter = reg(w[0], ln, maxreg)?;
            let lo = kdim(w.get(2).copied().unwrap_or(""), ln)?;
            let trip = kdim(w.get(4).copied().unwrap_or(""), ln)?;
            let carried = w.get(6).map(|c| c.trim_start_matches('(').trim_end_matches(')')).unwrap_or("");
            let carried: Vec<usize> = carried
                .split(',')
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(|x| reg(x, ln, maxreg))
                .collect::<Result<_, _>>()?;
            // The body ends with optional `exit if rE`, then `next (...)`, then `}`.
            let mut body = Vec::new();
            let mut exit = None;
            let next;
            loop {
                let Some(&(l2, t)) = lines.get(*pos) else { return Err(perr("unterminated loop")) };
                if let Some(e) = t.strip_prefix("exit if ") {
                    exit = Some(reg(e, l2, maxreg)?);
                    *pos += 1;
                } else if let Some(n) = t.strip_prefix("next ") {
                    next = n
                        .trim_start_matches('(')
                        .trim_end_matches(')')
                        .split(',')
                        .map(str::trim)
                        .filter(|x| !x.is_empty())
                        .map(|x| reg(x, l2, maxreg))
                        .collect::<Result<Vec<_>, _>>()?;
                    *pos += 1;
                    match lines.get(*pos) {
                        Some((_, "}")) => *pos += 1,
                        _ => return Err(perr("expected `}` after `next`")),
                    }
                    break;
                } else {
                    // One instruction of the body.
                    let mut sub_pos = *pos;
                    let mut one = parse_one(lines, &mut sub_pos, maxreg)?;
                    *pos = sub_pos;
                    body.append(&mut one);
                }
            }
            out.push(Inst::Loop { lo, trip, iter, carried, body, next, exit });
        } else if words.len() >= 3 && words[1] == "=" {
            let dst = reg(words[0], ln, maxreg)?;
            let rhs = l.split_once(" = ").map(|x| x.1).unwrap_or("");
            let inst = if let Some(r) = rhs.strip_prefix("const ") {
                let (v, t) = r.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                Inst::Const {
                    dst,
                    value: scalar(v.trim(), ln)?,
                    dtype: DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))?,
                }
            } else if let Some(r) = rhs.strip_prefix("index ") {
                let (e, _) = r.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                Inst::Index { dst, expr: kix(e, ln, maxreg)? }
            } else if let Some(r) = rhs.strip_prefix("load l") {
                let (body, t) = r.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                let (buf, idx) = body.split_once('[').ok_or_else(|| perr("expected `[`"))?;
                Inst::LocalLoad {
                    dst,
                    buf: buf.parse().map_err(|_| perr("bad local buffer"))?,
                    index: kix(idx.trim_end_matches(']'), ln, maxreg)?,
                    dtype: DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))?,
                }
            } else if let Some(r) = rhs.strip_prefix("load ") {
                let (body, t) = r.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                let dtype = DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))?;
                let (target, cond) = match body.split_once(" if ") {
                    Some((a, c)) => (a, Some(c)),
                    None => (body, None),
                };
                let (buf, idx) = target.split_once('[').ok_or_else(|| perr("expected `[`"))?;
                let buf: usize = buf.trim_start_matches('a').parse().map_err(|_| perr("bad buffer"))?;
                let index = kix(idx.trim_end_matches(']'), ln, maxreg)?;
                let (pred, fill) = match cond {
                    Some(c) => {
                        let (p, f) = c.split_once(" else ").ok_or_else(|| perr("expected `else FILL`"))?;
                        (Some(reg(p, ln, maxreg)?), scalar(f.trim(), ln)?)
                    }
                    None => (None, Scalar::zero(dtype)),
                };
                Inst::Load { dst, buf, index, pred, fill, dtype, loc: Loc::default() }
            } else if let Some(r) = rhs.strip_prefix("acc ") {
                let w: Vec<&str> = r.split_whitespace().collect();
                let op = red_op(w.first().copied().unwrap_or("")).ok_or_else(|| perr("bad reduction"))?;
                let src = DType::parse(w.get(1).copied().unwrap_or("")).ok_or_else(|| perr("bad dtype"))?;
                let dtype = DType::parse(w.get(3).copied().unwrap_or("")).ok_or_else(|| perr("bad dtype"))?;
                Inst::AccNew { acc: dst, op, src, dtype }
            } else if let Some(r) = rhs.strip_prefix("result ") {
                Inst::AccGet { dst, acc: reg(r, ln, maxreg)? }
            } else if rhs.starts_with('r') && !rhs.contains(' ') {
                Inst::Copy { dst, src: reg(rhs, ln, maxreg)? }
            } else {
                let (body, t) = rhs.rsplit_once(" : ").ok_or_else(|| perr("missing type"))?;
                let (name, args) = body.split_once(' ').ok_or_else(|| perr("expected `OP rA, rB`"))?;
                let op = alu_op(name).ok_or_else(|| perr(&format!("unknown operation `{name}`")))?;
                let args: Vec<usize> = args.split(',').map(|a| reg(a, ln, maxreg)).collect::<Result<_, _>>()?;
                Inst::Alu { dst, op, args, dtype: DType::parse(t.trim()).ok_or_else(|| perr("bad dtype"))? }
            };
            out.push(inst);
        } else {
            return Err(perr(&format!("unexpected line `{l}`")));
        }
    }
}

/// Parses one instruction (a range or a loop with its nested body counts as one).
fn parse_one(
    lines: &[(usize, &str)],
    pos: &mut usize,
    maxreg: &mut usize,
) -> Result<Vec<Inst>, crate::text::ParseError> {
    // Reuse the block parser on a slice that ends right after the instruction: find its extent.
    let start = *pos;
    let opens = lines[start].1.ends_with('{');
    let mut end = start + 1;
    if opens {
        let mut depth = 1;
        while end < lines.len() && depth > 0 {
            if lines[end].1.ends_with('{') {
                depth += 1;
            }
            if lines[end].1 == "}" {
                depth -= 1;
            }
            end += 1;
        }
    }
    let mut slice: Vec<(usize, &str)> = lines[start..end].to_vec();
    slice.push((0, "}"));
    let mut p = 0;
    let insts = parse_block(&slice, &mut p, maxreg)?;
    *pos = end;
    Ok(insts)
}

/// Simplifies every index expression with the extents of the enclosing ranges.
fn simplify_indices(body: &mut [Inst], ranges: &mut HashMap<usize, Dim>) {
    for i in body {
        match i {
            Inst::Range { var, extent, body, .. } => {
                ranges.insert(*var, extent.clone());
                simplify_indices(body, ranges);
                ranges.remove(var);
            }
            Inst::Loop { body, .. } => simplify_indices(body, ranges),
            Inst::Index { expr, .. }
            | Inst::Load { index: expr, .. }
            | Inst::Store { index: expr, .. }
            | Inst::LocalLoad { index: expr, .. }
            | Inst::LocalStore { index: expr, .. } => {
                *expr = expr.simplified_in(&|k| ranges.get(&k).cloned());
            }
            _ => {}
        }
    }
}
