//! Lowering one device kernel of a schedule to the kernel IR.

use super::simplify::simplify_indices;
use super::*;
use crate::dims::Dim;
use crate::dtype::DType;
use crate::schedule::Schedule;
use std::collections::HashMap;

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
    /// Inside the element of a reduction shared by a workgroup: a reduction there runs in each
    /// thread on its own (one workgroup cannot share two nested reductions).
    in_group: bool,
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
                    // A carried scalar is the same at every position: each element's copy of the
                    // loop computes it alike (it can read no other element's values).
                    if coords_key(coords) != elem && !n.shape.is_empty() {
                        return Err(KernelError { message: LIMIT_SHIFTED_CARRIED.into(), loc: n.loc });
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
                if self.group > 1
                    && !self.in_group
                    && axes.len() == 1
                    && !matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin) =>
            {
                self.grouped_reduce(g, id, *op, axes[0], coords, pred)
            }
            // A reduction over no axes (the graph's way of saying "materialise this value") of
            // one element: the first element starts an accumulation unchanged (docs/numerics.md),
            // so it is the element itself where the accumulator and result dtypes are its own.
            // No accumulator: code generators vectorise the plain value.
            Op::Reduce { op, axes }
                if axes.is_empty()
                    && n.args.len() == 1
                    && !matches!(op, ReduceOp::ArgMax | ReduceOp::ArgMin)
                    && crate::graph::interp::acc_dtype(g.node(n.args[0]).dtype) == n.dtype
                    && g.node(n.args[0]).dtype == n.dtype =>
            {
                self.emit(g, n.args[0], coords, pred)
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
                let by = match n.args.get(1) {
                    Some(&b) if *op == ReduceOp::Dot => Some(self.emit(g, b, &full, pred)?),
                    _ => None,
                };
                self.push(Inst::AccPush { acc, value: v, by, pred: None });
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
            Op::ScatterAdd { .. } => Err(KernelError { message: LIMIT_SCATTER_IN_LOOP.into(), loc: n.loc }),
            Op::Scan { .. } => Err(KernelError { message: LIMIT_SCAN_IN_LOOP.into(), loc: n.loc }),
            Op::Loop { .. } => {
                Err(KernelError { message: "internal: a loop read other than through its results".into(), loc: n.loc })
            }
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
        let outer = std::mem::replace(&mut self.in_group, true);
        let element = self.emit(g, n.args[0], &full, Some(p)).and_then(|v| match n.args.get(1) {
            Some(&b) if op == ReduceOp::Dot => Ok((v, Some(self.emit(g, b, &full, Some(p))?))),
            _ => Ok((v, None)),
        });
        self.in_group = outer;
        let (v, by) = element?;
        self.push(Inst::AccPush { acc, value: v, by, pred: Some(p) });
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
        // The partials combine as a plain sum for a contraction.
        self.push(Inst::AccNew { acc: acc2, op: op.combine(), src: accd, dtype: n.dtype });
        let u = self.vars;
        self.vars += 1;
        self.open();
        let pv = self.reg();
        self.push(Inst::LocalLoad { dst: pv, buf: lbuf, index: IExpr::Coord(u), dtype: accd });
        self.push(Inst::AccPush { acc: acc2, value: pv, by: None, pred: None });
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
        // Each carried value at the loop's coordinates: a scalar at none; a value of another rank
        // (not needed by this copy of the loop: reading it would need other positions) is not
        // computed and keeps its register.
        let at = |rank: usize| -> Option<Vec<IExpr>> {
            if rank == coords.len() {
                Some(coords.to_vec())
            } else if rank == 0 {
                Some(Vec::new())
            } else {
                None
            }
        };
        let mut inits = Vec::new();
        for a in &n.args[..*carried] {
            let init = g.node(*a);
            inits.push(match at(init.shape.len()) {
                Some(c) => self.emit(g, *a, &c, pred)?,
                None => self.constant(Scalar::zero(init.dtype), init.dtype),
            });
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
        for (o, r) in outs.iter().zip(&regs) {
            next.push(match at(body_ref.node(*o).shape.len()) {
                Some(c) => self.emit(body_ref, *o, &c, pred)?,
                None => *r,
            });
        }
        let exit = match exits.first() {
            Some(e) => {
                let c = at(body_ref.node(*e).shape.len()).unwrap_or_else(|| coords.to_vec());
                Some(self.emit(body_ref, *e, &c, pred)?)
            }
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

/// Lowers device kernel `k` of a schedule to the kernel IR with the given knobs. A `scatter_add`
/// becomes one kernel that adds the rows in order (the reference order, on any device).
pub fn lower(s: &Schedule, k: usize, knobs: &Knobs) -> Result<Kernel, KernelError> {
    let mut ks = lower_impl(s, k, knobs, false)?;
    ks.pop().ok_or_else(|| KernelError { message: "a kernel lowered to nothing".into(), loc: Loc::default() })
}

/// Like [`lower`], for a GPU outside `--deterministic`: a `scatter_add` whose result dtype has
/// atomic adds ([`atomic_dtype`]) becomes two kernels, one zeroing the result and one thread per
/// row of values adding it in with [`Inst::AtomicAdd`]. Integer results are the same as in
/// order; float sums are added in an unspecified order (the bound of docs/numerics.md).
pub fn lower_atomic(s: &Schedule, k: usize, knobs: &Knobs) -> Result<Vec<Kernel>, KernelError> {
    lower_impl(s, k, knobs, true)
}

/// The result dtypes a GPU adds atomically: 32- and 64-bit integers and floats (f16 and bf16
/// scatters accumulate in f32 and keep the ordered kernel).
pub fn atomic_dtype(d: DType) -> bool {
    matches!(d, DType::I32 | DType::U32 | DType::I64 | DType::F32 | DType::F64)
}

fn lower_impl(s: &Schedule, k: usize, knobs: &Knobs, atomic: bool) -> Result<Vec<Kernel>, KernelError> {
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
        in_group: false,
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
        return row_kernel(b, k, bufs, knobs, loc).map(|k| vec![k]);
    }
    knobs.valid_for(shape.len()).map_err(|m| KernelError { message: format!("invalid knobs: {m}"), loc })?;
    if let [root] = roots.as_slice()
        && let Op::ScatterAdd { batch } = g.node(*root).op
    {
        let sc = Scatter { k, bufs, root: *root, batch, shape: &shape, knobs, loc };
        if atomic && atomic_dtype(g.node(*root).dtype) {
            return atomic_scatter_kernels(b, sc);
        }
        return scatter_kernel(b, sc).map(|k| vec![k]);
    }
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
            b.push(Inst::AccPush { acc, value: v, by: None, pred: None });
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
        && let Some(tiled) = crate::kernel::upcast::upcast(&body, knobs.upcast, &mut regs, &mut b.vars)
    {
        body = tiled;
        simplify_indices(&mut body, &mut HashMap::new());
    }
    if knobs.unroll > 1 {
        mark_unroll(&mut body, knobs.unroll);
    }
    Ok(vec![Kernel { name: format!("k{k}"), bufs, body, regs, knobs: knobs.clone(), loc }])
}

/// A row kernel (`schedule::fuse_rows`): its last outputs have the shape `[P.., n]`, the others
/// `[P..]` or `[P.., lanes]`. For each row `P` (the first `knobs.parallel` axes in parallel) the
/// outputs are computed in order, consecutive outputs of one shape in one phase: a value per row,
/// or a range over the last axis (vectorised by `knobs.vector`). A later phase reads an earlier
/// one's results back from their buffers, at the same row.
fn row_kernel<'s>(
    mut b: Builder<'s>,
    k: usize,
    bufs: Vec<KBuf>,
    knobs: &Knobs,
    loc: Loc,
) -> Result<Kernel, KernelError> {
    let s = b.s;
    let g = &s.graph;
    let kern = &s.kernels[k];
    let shape_of = |w: usize| &s.buffers[w].shape;
    let Some(&last) = kern.writes.last() else {
        return Err(KernelError { message: "a kernel without outputs".into(), loc });
    };
    let shape = shape_of(last).clone();
    let rank = shape.len();
    let prefix = &shape[..rank.saturating_sub(1)];
    let fits = |w: usize| {
        let sh = shape_of(w);
        sh == prefix || (rank > 0 && sh.len() == rank && sh[..rank - 1] == *prefix)
    };
    if rank < 2 || !kern.writes.iter().all(|w| fits(*w)) {
        return Err(KernelError { message: "a kernel whose outputs have different shapes".into(), loc });
    }
    knobs.valid_for(rank).map_err(|m| KernelError { message: format!("invalid knobs: {m}"), loc })?;
    let mut vars = Vec::new();
    for _ in 0..rank - 1 {
        vars.push(b.vars);
        b.vars += 1;
        b.open();
    }
    let coords: Vec<IExpr> = vars.iter().map(|v| IExpr::Coord(*v)).collect();
    // Phases: consecutive outputs of one row-long shape share a range; a value per row is a
    // phase of its own.
    let mut phases: Vec<Vec<usize>> = Vec::new();
    for &w in &kern.writes {
        match phases.last_mut() {
            Some(p) if shape_of(p[0]) == shape_of(w) && shape_of(w).len() == rank => p.push(w),
            _ => phases.push(vec![w]),
        }
    }
    let shared = shared_row_value(s, &phases, rank);
    // One range over the row's last axis storing `values` (node, buffer) at each element.
    let row_range = |b: &mut Builder<'s>, values: &[(NodeId, usize)], extent: &Dim| -> Result<(), KernelError> {
        let var = b.vars;
        b.vars += 1;
        b.open();
        let mut full = coords.clone();
        full.push(IExpr::Coord(var));
        for &(r, w) in values {
            let v = b.emit(g, r, &full, None)?;
            let buf = b.args[&w];
            let index = linear(&full, &s.buffers[w].shape);
            b.push(Inst::Store { buf, index, value: v, pred: None, loc: g.node(r).loc });
        }
        let body = b.close();
        let kind = if knobs.vector > 1 { RangeKind::Vectorized(knobs.vector) } else { RangeKind::Sequential };
        b.push(Inst::Range { var, extent: extent.clone(), kind, body });
        Ok(())
    };
    for (pi, phase) in phases.iter().enumerate() {
        if let Some((x, first, out)) = shared
            && first == pi
        {
            // The row of an expensive value that several phases read (softmax's exponentials)
            // is computed once, into the row of the output that is written last from it.
            row_range(&mut b, &[(x, out)], &shape[rank - 1])?;
            b.read_nodes.insert(x, out);
        }
        let sh = shape_of(phase[0]);
        let values: Vec<(NodeId, usize)> = phase.iter().map(|w| (s.buffers[*w].node, *w)).collect();
        if sh.len() == rank - 1 {
            for &(r, w) in &values {
                let v = b.emit(g, r, &coords, None)?;
                let buf = b.args[&w];
                b.push(Inst::Store { buf, index: linear(&coords, sh), value: v, pred: None, loc: g.node(r).loc });
            }
        } else {
            row_range(&mut b, &values, &sh[rank - 1])?;
        }
        // Later phases read these results from memory, at this row.
        for &(r, w) in &values {
            b.read_nodes.insert(r, w);
        }
    }
    for a in (0..rank - 1).rev() {
        let body = b.close();
        let kind = if a < knobs.parallel { RangeKind::Global } else { RangeKind::Sequential };
        b.push(Inst::Range { var: vars[a], extent: shape[a].clone(), kind, body });
    }
    let mut body = b.blocks.pop().unwrap_or_default();
    simplify_indices(&mut body, &mut HashMap::new());
    if knobs.unroll > 1 {
        mark_unroll(&mut body, knobs.unroll);
    }
    Ok(Kernel { name: format!("k{k}"), bufs, body, regs: b.regs, knobs: knobs.clone(), loc })
}

/// The value of a row kernel worth computing once per element: a node of the row's shape that
/// is not materialised, costs [`crate::graph::passes::EXPENSIVE`] operations or more, and is
/// evaluated by the last phase (whose one output has its dtype) and an earlier one; every read of
/// it must be at the row being computed. Returns the node, the first phase that evaluates it,
/// and the output buffer that holds it in between (the last phase reads each element before it
/// writes the same element).
fn shared_row_value(s: &Schedule, phases: &[Vec<usize>], rank: usize) -> Option<(NodeId, usize, usize)> {
    let g = &s.graph;
    let last = phases.last()?;
    let [out] = last.as_slice() else { return None };
    let out_node = g.node(s.buffers[*out].node);
    let materialised: HashMap<NodeId, usize> = s.buffers.iter().enumerate().map(|(i, b)| (b.node, i)).collect();
    // The nodes each phase evaluates (up to materialised values).
    let reach = |roots: &[usize]| -> std::collections::HashSet<NodeId> {
        let mut seen = std::collections::HashSet::new();
        let mut stack: Vec<NodeId> = roots.iter().map(|w| s.buffers[*w].node).collect();
        let starts = stack.clone();
        while let Some(id) = stack.pop() {
            if (!starts.contains(&id) && materialised.contains_key(&id)) || !seen.insert(id) {
                continue;
            }
            stack.extend(g.node(id).args.iter().copied());
        }
        seen
    };
    let reaches: Vec<_> = phases.iter().map(|p| reach(p)).collect();
    let lastr = reaches.last()?;
    let mut best: Option<(usize, NodeId, usize)> = None;
    let order = g.topo();
    for (pos, id) in order.iter().enumerate() {
        let n = g.node(*id);
        if !lastr.contains(id)
            || materialised.contains_key(id)
            || n.shape != out_node.shape
            || n.dtype != out_node.dtype
            || !matches!(n.op, Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast | Op::Bitcast | Op::Fma)
        {
            continue;
        }
        let Some(first) = reaches[..reaches.len() - 1].iter().position(|r| r.contains(id)) else { continue };
        if crate::graph::passes::elementwise_cost(g, *id, &mut std::collections::HashSet::new())
            < crate::graph::passes::EXPENSIVE
        {
            continue;
        }
        if best.is_none_or(|b| pos > b.0) {
            best = Some((pos, *id, first));
        }
    }
    let (_, x, first) = best?;
    // The last phase reads it only at the element it writes (through elementwise operations of
    // the row's shape): it overwrites the row of the output as it goes.
    let last_roots: Vec<NodeId> = last.iter().map(|w| s.buffers[*w].node).collect();
    let mut stack: Vec<(NodeId, bool)> = last_roots.iter().map(|r| (*r, true)).collect();
    let mut seen = std::collections::HashSet::new();
    while let Some((id, same)) = stack.pop() {
        if id == x {
            if !same {
                return None;
            }
            continue;
        }
        if (!last_roots.contains(&id) && materialised.contains_key(&id)) || !seen.insert((id, same)) {
            continue;
        }
        let n = g.node(id);
        let pointwise = match &n.op {
            Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast | Op::Bitcast | Op::Fma => true,
            Op::Reduce { axes, .. } => axes.is_empty(),
            _ => false,
        };
        for a in &n.args {
            stack.push((*a, same && pointwise && g.node(*a).shape == n.shape));
        }
    }
    // What it is computed from is in memory before that phase.
    let before: std::collections::HashSet<NodeId> =
        phases[..first].iter().flatten().map(|w| s.buffers[*w].node).collect();
    let mut stack = vec![x];
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        if id != x
            && let Some(b) = materialised.get(&id)
        {
            let written_here = phases.iter().flatten().any(|w| w == b);
            if written_here && !before.contains(&id) {
                return None;
            }
            continue;
        }
        stack.extend(g.node(id).args.iter().copied());
    }
    let inside = std::collections::BTreeSet::from([x]);
    let roots = phases.iter().flatten().map(|w| s.buffers[*w].node);
    if !roots.clone().all(|r| r == x || crate::schedule::row_local(g, r, rank - 1, &inside, &materialised)) {
        return None;
    }
    Some((x, first, *out))
}

/// A scatter kernel of the schedule, as the lowering found it.
struct Scatter<'a> {
    k: usize,
    bufs: Vec<KBuf>,
    root: NodeId,
    batch: usize,
    shape: &'a [Dim],
    knobs: &'a Knobs,
    loc: Loc,
}

/// A `scatter_add` kernel: one thread per column (the batch and trailing axes; the leading
/// `knobs.parallel` of them run in parallel) zeroes its column, then adds the rows in order of k,
/// so every device computes the interpreter's sums bit for bit.
fn scatter_kernel(mut b: Builder<'_>, sc: Scatter<'_>) -> Result<Kernel, KernelError> {
    let Scatter { k, bufs, root, batch, shape, knobs, loc } = sc;
    let g = &b.s.graph;
    let n = g.node(root);
    let (values, indices) = (n.args[0], n.args[1]);
    let rows = g.node(values).shape.get(batch).cloned().unwrap_or_default();
    let size = shape.get(batch).cloned().unwrap_or_default();
    let d = n.dtype;
    let out = bufs.iter().position(|kb| kb.write).unwrap_or(0);
    // Output coordinates: one variable per axis; the row axis's is the zeroing range's.
    let vars: Vec<usize> = (0..shape.len())
        .map(|_| {
            b.vars += 1;
            b.vars - 1
        })
        .collect();
    let columns: Vec<usize> = (0..shape.len()).filter(|a| *a != batch).collect();
    let parallel = knobs.parallel.min(columns.len());
    let kvar = b.vars;
    b.vars += 1;
    for _ in &columns {
        b.open();
    }
    let coords: Vec<IExpr> = vars.iter().map(|v| IExpr::Coord(*v)).collect();
    // Zero the column.
    b.open();
    let zero = b.constant(Scalar::zero(d), d);
    b.push(Inst::Store { buf: out, index: linear(&coords, shape), value: zero, pred: None, loc });
    let body = b.close();
    b.push(Inst::Range { var: vars[batch], extent: size.clone(), kind: RangeKind::Sequential, body });
    // Add the rows in order.
    b.open();
    let mut at = coords.clone();
    at[batch] = IExpr::Coord(kvar);
    let id = b.emit(g, indices, &at[..=batch], None)?;
    let id = if g.node(indices).dtype == DType::I64 { id } else { b.alu(Op::Cast, vec![id], DType::I64) };
    let ok = b.in_range(&IExpr::Data(id), &Dim::constant(0), &size);
    let v = b.emit(g, values, &at, None)?;
    let mut dst = coords.clone();
    dst[batch] = IExpr::Data(id);
    let index = linear(&dst, shape);
    let old = b.reg();
    b.push(Inst::Load {
        dst: old,
        buf: out,
        index: index.clone(),
        pred: Some(ok),
        fill: Scalar::zero(d),
        dtype: d,
        loc,
    });
    let sum = b.alu(Op::Binary(BinaryOp::Add), vec![old, v], d);
    b.push(Inst::Store { buf: out, index, value: sum, pred: Some(ok), loc });
    let body = b.close();
    b.push(Inst::Range { var: kvar, extent: rows, kind: RangeKind::Sequential, body });
    for (i, a) in columns.iter().enumerate().rev() {
        let body = b.close();
        let kind = if i < parallel { RangeKind::Global } else { RangeKind::Sequential };
        b.push(Inst::Range { var: vars[*a], extent: shape[*a].clone(), kind, body });
    }
    let mut body = b.blocks.pop().unwrap_or_default();
    simplify_indices(&mut body, &mut HashMap::new());
    let knobs = Knobs { parallel, ..Knobs::default() };
    Ok(Kernel { name: format!("k{k}"), bufs, body, regs: b.regs, knobs, loc })
}

/// A `scatter_add` on a GPU: a kernel that zeroes the result, then one that runs a thread per
/// element of `values` (its leading `knobs.parallel` axes in parallel) and adds it atomically
/// into the row its index names (indices outside `0..size` are dropped, as in order).
fn atomic_scatter_kernels(mut b: Builder<'_>, sc: Scatter<'_>) -> Result<Vec<Kernel>, KernelError> {
    let Scatter { k, bufs, root, batch, shape, knobs, loc } = sc;
    let g = &b.s.graph;
    let n = g.node(root);
    let (values, indices) = (n.args[0], n.args[1]);
    let vshape = g.node(values).shape.clone();
    let d = n.dtype;
    let Some(out) = bufs.iter().position(|kb| kb.write) else {
        return Err(KernelError { message: "a scatter kernel without an output".into(), loc });
    };
    let size = shape.get(batch).cloned().unwrap_or_default();
    // The zeroing kernel: the result buffer only.
    let zero = {
        let coords: Vec<IExpr> = (0..shape.len()).map(IExpr::Coord).collect();
        let mut body = vec![
            Inst::Const { dst: 0, value: Scalar::zero(d), dtype: d },
            Inst::Store { buf: 0, index: linear(&coords, shape), value: 0, pred: None, loc },
        ];
        let parallel = knobs.parallel.min(shape.len());
        for a in (0..shape.len()).rev() {
            let kind = if a < parallel { RangeKind::Global } else { RangeKind::Sequential };
            body = vec![Inst::Range { var: a, extent: shape[a].clone(), kind, body }];
        }
        simplify_indices(&mut body, &mut HashMap::new());
        Kernel {
            name: format!("k{k}"),
            bufs: vec![bufs[out].clone()],
            body,
            regs: 1,
            knobs: Knobs { parallel, ..Knobs::default() },
            loc,
        }
    };
    // The adding kernel: one range per axis of `values`.
    let vars: Vec<usize> = (0..vshape.len())
        .map(|_| {
            b.vars += 1;
            b.vars - 1
        })
        .collect();
    for _ in &vars {
        b.open();
    }
    let coords: Vec<IExpr> = vars.iter().map(|v| IExpr::Coord(*v)).collect();
    let id = b.emit(g, indices, &coords[..=batch], None)?;
    let id = if g.node(indices).dtype == DType::I64 { id } else { b.alu(Op::Cast, vec![id], DType::I64) };
    let ok = b.in_range(&IExpr::Data(id), &Dim::constant(0), &size);
    let v = b.emit(g, values, &coords, None)?;
    let v = if g.node(values).dtype == d { v } else { b.alu(Op::Cast, vec![v], d) };
    let mut dst = coords.clone();
    dst[batch] = IExpr::Data(id);
    b.push(Inst::AtomicAdd { buf: out, index: linear(&dst, shape), value: v, pred: Some(ok), loc });
    let parallel = knobs.parallel.min(vars.len());
    for (a, var) in vars.iter().enumerate().rev() {
        let body = b.close();
        let kind = if a < parallel { RangeKind::Global } else { RangeKind::Sequential };
        b.push(Inst::Range { var: *var, extent: vshape[a].clone(), kind, body });
    }
    let mut body = b.blocks.pop().unwrap_or_default();
    simplify_indices(&mut body, &mut HashMap::new());
    let add =
        Kernel { name: format!("k{k}"), bufs, body, regs: b.regs, knobs: Knobs { parallel, ..Knobs::default() }, loc };
    Ok(vec![zero, add])
}

/// The kernel IR's limits: constructs `tk check` accepts that no kernel can compute yet. Each is
/// reported as E0411 at the construct (docs/errors.md lists them; tests/ui has a case for each).
pub const LIMITS: &[&str] = &[LIMIT_SHIFTED_CARRIED, LIMIT_SCAN_IN_LOOP, LIMIT_SCATTER_IN_LOOP];
const LIMIT_SHIFTED_CARRIED: &str = "a loop body that reads a carried array at another position than the element it computes \
     (here a shifted or gathered index) is not supported yet: each element of a carried array must evolve on its own \
     (carried scalars may be read anywhere)";
const LIMIT_SCAN_IN_LOOP: &str = "a scan (`cumsum`, `cumprod`) of values that the steps of a loop change is not supported \
     yet: scan before or after the loop (a scan of values the loop does not change is computed once, before it)";
const LIMIT_SCATTER_IN_LOOP: &str = "`scatter_add` of values or indices that the steps of a loop change is not supported yet: \
     scatter before or after the loop (a scatter of values the loop does not change is computed once, before it)";

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
