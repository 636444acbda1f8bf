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
    /// `dst = pred ? buf[index] : fill` (the load happens only where `pred` holds).
    Load {
        dst: usize,
        buf: usize,
        index: IExpr,
        pred: Option<usize>,
        fill: Scalar,
        dtype: DType,
    },
    Store {
        buf: usize,
        index: IExpr,
        value: usize,
        pred: Option<usize>,
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
    AccPush {
        acc: usize,
        value: usize,
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
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs { parallel: 1, unroll: 1, vector: 1 }
    }
}

impl std::fmt::Display for Knobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "parallel={},unroll={},vector={}", self.parallel, self.unroll, self.vector)
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
                other => return Err(format!("unknown knob `{other}`; the knobs are parallel, unroll, vector")),
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
        for (name, v) in [("unroll", self.unroll), ("vector", self.vector)] {
            if v == 0 || !v.is_power_of_two() || v > 64 {
                return Err(format!("{name}={v}: must be a power of two from 1 to 64"));
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
            self.push(Inst::Load { dst, buf, index, pred, fill: zero(n.dtype), dtype: n.dtype });
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
                self.push(Inst::AccPush { acc, value: v });
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

fn zero(d: DType) -> Scalar {
    if d.is_float() {
        Scalar::Float(0.0)
    } else if d == DType::Bool {
        Scalar::Bool(false)
    } else {
        Scalar::Int(0)
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
            b.push(Inst::AccPush { acc, value: v });
            let r = b.reg();
            b.push(Inst::AccGet { dst: r, acc });
            let wb = b.args[&kern.writes[0]];
            b.push(Inst::Store { buf: wb, index: linear(&body_coords, &shape), value: r, pred: None });
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
                b.push(Inst::Store { buf, index: linear(&coords, &shape), value: v, pred: None });
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
    if knobs.unroll > 1 {
        mark_unroll(&mut body, knobs.unroll);
    }
    Ok(Kernel { name: format!("k{k}"), bufs, body, regs: b.regs, knobs: knobs.clone() })
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
        IExpr::Dim(d) => format!("({d})"),
        IExpr::Add(a, b) => format!("({} + {})", ix(a), ix(b)),
        IExpr::Mul(a, b) => format!("{} * {}", ix(a), ix(b)),
        IExpr::Div(a, b) => format!("({} / {})", ix(a), ix(b)),
        IExpr::Mod(a, b) => format!("({} % {})", ix(a), ix(b)),
    }
}

fn print_block(body: &[Inst], ind: usize, out: &mut String) {
    let pad = "  ".repeat(ind);
    for i in body {
        let _ = match i {
            Inst::Range { var, extent, kind, body } => {
                let _ = writeln!(out, "{pad}range i{var} in 0..{extent} {} {{", format!("{kind:?}").to_lowercase());
                print_block(body, ind + 1, out);
                writeln!(out, "{pad}}}")
            }
            Inst::Const { dst, value, dtype } => writeln!(out, "{pad}r{dst} = const {value} : {dtype}"),
            Inst::Index { dst, expr } => writeln!(out, "{pad}r{dst} = index {} : i64", ix(expr)),
            Inst::Load { dst, buf, index, pred, fill, dtype } => match pred {
                Some(p) => writeln!(out, "{pad}r{dst} = load a{buf}[{}] if r{p} else {fill} : {dtype}", ix(index)),
                None => writeln!(out, "{pad}r{dst} = load a{buf}[{}] : {dtype}", ix(index)),
            },
            Inst::Store { buf, index, value, .. } => writeln!(out, "{pad}store a{buf}[{}] = r{value}", ix(index)),
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
            Inst::AccPush { acc, value } => writeln!(out, "{pad}accumulate r{acc} += r{value}"),
            Inst::AccGet { dst, acc } => writeln!(out, "{pad}r{dst} = result r{acc}"),
            Inst::Check { value, lo, hi, .. } => writeln!(out, "{pad}check r{value} in {lo}..{hi}"),
            Inst::Copy { dst, src } => writeln!(out, "{pad}r{dst} = r{src}"),
            Inst::Loop { lo, trip, iter, carried, body, next, exit } => {
                let c: Vec<String> = carried.iter().map(|r| format!("r{r}")).collect();
                let _ = writeln!(out, "{pad}loop r{iter} from {lo} trips {trip} carry ({}) {{", c.join(", "));
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
    let g = &s.graph;
    let dim = |d: &Dim, loc: Loc| -> Result<i64, InterpError> {
        d.eval(&|x| dims.get(x).copied()).ok_or(InterpError { message: format!("dimension `{d}` has no value"), loc })
    };
    // Sizes are checked before anything runs: no dimension of any value may be negative.
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
    for (k, _) in s.kernels.iter().enumerate() {
        let kn = knobs.get(k).cloned().unwrap_or_default();
        let kern = lower(s, k, &kn).map_err(|e| InterpError { message: e.message, loc: e.loc })?;
        let mut bufs: Vec<Array> = kern.bufs.iter().map(|b| mem[&b.id].clone()).collect();
        let mut m = Machine {
            dims,
            regs: vec![Scalar::Int(0); kern.regs],
            types: vec![DType::I64; kern.regs],
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
    let mut outs = Vec::new();
    for (k, (_, id)) in g.outputs.iter().enumerate() {
        let b = s
            .buffers
            .iter()
            .position(|b| b.kind == BufferKind::Output(k) || (b.node == *id && matches!(b.kind, BufferKind::Input(_))));
        match b.and_then(|b| mem.get(&b)) {
            Some(v) => outs.push(v.clone()),
            None => return Err(InterpError { message: format!("output {k} was never written"), loc: Loc::default() }),
        }
    }
    Ok(outs)
}

struct Machine<'d> {
    dims: &'d HashMap<String, i64>,
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
                Inst::Load { dst, buf, index, pred, fill, dtype } => {
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
                Inst::Store { buf, index, value, pred } => {
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
                Inst::AccPush { acc, value } => {
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
