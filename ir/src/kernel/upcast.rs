//! Register tiling ("upcast"): a kernel whose two innermost parallel output ranges enclose a
//! reduction computes an `f x f` tile of outputs per iteration instead of one element. The tile's
//! `f * f` accumulators live in registers and are updated in one pass over the reduction, so each
//! operand loaded in the reduction's body serves a whole row or column of the tile (a matrix
//! product loads `2f` values per `f * f` fused multiply-adds instead of 2 per 1).
//!
//! The transform replicates the tile body once per tile element, renaming registers, with the
//! output coordinates `i = f * io + ii` and `j = f * jo + jj`; identical instructions of
//! different copies (the load of `a[i, k]` for every `jj`) are emitted once. Elements past the
//! edge of the output are masked: their loads read nothing and their stores are skipped. Every
//! output still accumulates its terms in the same order, so results are unchanged bit for bit.

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::{BinaryOp, IExpr, Op, Scalar};
use crate::kernel::{Inst, RangeKind};
use std::collections::HashMap;

/// Substitutes coordinates in an index expression.
fn subst(e: &IExpr, map: &HashMap<usize, IExpr>, regs: &HashMap<usize, usize>) -> IExpr {
    match e {
        IExpr::Coord(v) => map.get(v).cloned().unwrap_or(IExpr::Coord(*v)),
        IExpr::Data(r) => IExpr::Data(*regs.get(r).unwrap_or(r)),
        IExpr::Dim(d) => IExpr::Dim(d.clone()),
        IExpr::Add(a, b) => IExpr::Add(Box::new(subst(a, map, regs)), Box::new(subst(b, map, regs))),
        IExpr::Mul(a, b) => IExpr::Mul(Box::new(subst(a, map, regs)), Box::new(subst(b, map, regs))),
        IExpr::Div(a, b) => IExpr::Div(Box::new(subst(a, map, regs)), Box::new(subst(b, map, regs))),
        IExpr::Mod(a, b) => IExpr::Mod(Box::new(subst(a, map, regs)), Box::new(subst(b, map, regs))),
    }
}

/// Whether the body can be replicated: plain instructions and nested ranges only.
fn replicable(body: &[Inst]) -> bool {
    body.iter().all(|i| match i {
        Inst::Range { kind, body, .. } => !matches!(kind, RangeKind::Local | RangeKind::Global) && replicable(body),
        Inst::Loop { .. } | Inst::LocalAlloc { .. } | Inst::LocalLoad { .. } | Inst::LocalStore { .. } => false,
        Inst::Barrier | Inst::Mma { .. } | Inst::AtomicAdd { .. } => false,
        _ => true,
    })
}

fn has_reduction(body: &[Inst]) -> bool {
    body.iter().any(|i| match i {
        Inst::Range { kind: RangeKind::Reduce | RangeKind::Unrolled(_), .. } => true,
        Inst::Range { body, .. } => has_reduction(body),
        _ => false,
    })
}

/// One element of the tile.
struct Copy {
    /// The output coordinates' substitutions.
    coords: HashMap<usize, IExpr>,
    /// Register renaming.
    names: HashMap<usize, usize>,
    /// Guards: the element is inside the output; its row is; its column is.
    all: usize,
    row: usize,
    col: usize,
}

/// Which of the two tiled coordinates an index expression depends on (data-dependent indices
/// depend on both).
fn uses(e: &IExpr, vi: usize, vj: usize) -> (bool, bool) {
    match e {
        IExpr::Coord(v) => (*v == vi, *v == vj),
        IExpr::Data(_) => (true, true),
        IExpr::Dim(_) => (false, false),
        IExpr::Add(a, b) | IExpr::Mul(a, b) | IExpr::Div(a, b) | IExpr::Mod(a, b) => {
            let (x, y) = (uses(a, vi, vj), uses(b, vi, vj));
            (x.0 || y.0, x.1 || y.1)
        }
    }
}

struct Tiler {
    regs: usize,
    vi: usize,
    vj: usize,
    copies: Vec<Copy>,
    /// `pred && guard` registers made so far.
    ands: HashMap<(usize, usize), usize>,
    /// Instructions already emitted, by their text after renaming (one map per open range).
    seen: Vec<HashMap<String, usize>>,
}

impl Tiler {
    fn reg(&mut self) -> usize {
        self.regs += 1;
        self.regs - 1
    }

    /// `pred && guard` (made once per pair), or either alone.
    fn and_guard(&mut self, out: &mut Vec<Inst>, pred: Option<usize>, guard: Option<usize>) -> Option<usize> {
        match (pred, guard) {
            (p, None) => p,
            (None, g) => g,
            (Some(p), Some(g)) => {
                if let Some(&r) = self.ands.get(&(p, g)) {
                    return Some(r);
                }
                let r = self.reg();
                out.push(Inst::Alu { dst: r, op: Op::Binary(BinaryOp::And), args: vec![p, g], dtype: DType::Bool });
                self.ands.insert((p, g), r);
                Some(r)
            }
        }
    }

    fn replicate(&mut self, body: &[Inst], out: &mut Vec<Inst>) {
        for inst in body {
            if let Inst::Range { var, extent, kind, body } = inst {
                let top = self.seen.last().cloned().unwrap_or_default();
                self.seen.push(top);
                let mut inner = Vec::new();
                self.replicate(body, &mut inner);
                self.seen.pop();
                out.push(Inst::Range { var: *var, extent: extent.clone(), kind: *kind, body: inner });
                continue;
            }
            for c in 0..self.copies.len() {
                let cp = &self.copies[c];
                let (coords, names) = (&cp.coords, &cp.names);
                let (all, row, col) = (cp.all, cp.row, cp.col);
                let rn = |r: &usize| *names.get(r).unwrap_or(r);
                let mut new = match inst {
                    Inst::Const { dst, value, dtype } => Inst::Const { dst: *dst, value: *value, dtype: *dtype },
                    Inst::Index { dst, expr } => Inst::Index { dst: *dst, expr: subst(expr, coords, names) },
                    Inst::Load { dst, buf, index, pred, fill, dtype, loc } => Inst::Load {
                        dst: *dst,
                        buf: *buf,
                        index: subst(index, coords, names),
                        pred: pred.as_ref().map(rn),
                        fill: *fill,
                        dtype: *dtype,
                        loc: *loc,
                    },
                    Inst::Store { buf, index, value, pred, loc } => Inst::Store {
                        buf: *buf,
                        index: subst(index, coords, names),
                        value: rn(value),
                        pred: pred.as_ref().map(rn),
                        loc: *loc,
                    },
                    Inst::Alu { dst, op, args, dtype } => {
                        Inst::Alu { dst: *dst, op: op.clone(), args: args.iter().map(rn).collect(), dtype: *dtype }
                    }
                    Inst::AccNew { acc, op, src, dtype } => {
                        Inst::AccNew { acc: *acc, op: *op, src: *src, dtype: *dtype }
                    }
                    Inst::AccPush { acc, value, by, pred } => Inst::AccPush {
                        acc: rn(acc),
                        value: rn(value),
                        by: by.as_ref().map(rn),
                        pred: pred.as_ref().map(rn),
                    },
                    Inst::AccGet { dst, acc } => Inst::AccGet { dst: *dst, acc: rn(acc) },
                    Inst::Check { value, lo, hi, pred, loc } => Inst::Check {
                        value: rn(value),
                        lo: lo.clone(),
                        hi: hi.clone(),
                        pred: pred.as_ref().map(rn),
                        loc: *loc,
                    },
                    Inst::Copy { dst, src } => Inst::Copy { dst: *dst, src: rn(src) },
                    other => other.clone(),
                };
                // Masking: nothing past the edge of the output is read, stored or checked. A load
                // depending on the row only is guarded by the row alone, so that the copies of one
                // row share it.
                let (vi, vj) = (self.vi, self.vj);
                match (&mut new, inst) {
                    (Inst::Load { pred, fill, dtype, .. }, Inst::Load { index, .. }) => {
                        let g = match uses(index, vi, vj) {
                            (true, true) => Some(all),
                            (true, false) => Some(row),
                            (false, true) => Some(col),
                            (false, false) => None,
                        };
                        if pred.is_none() && g.is_some() {
                            *fill = Scalar::zero(*dtype);
                        }
                        *pred = self.and_guard(out, *pred, g);
                    }
                    (Inst::Store { pred, .. }, _) | (Inst::Check { pred, .. }, _) => {
                        *pred = self.and_guard(out, *pred, Some(all));
                    }
                    _ => {}
                }
                // The destination: shared with an identical earlier instruction, or new.
                let dst = match &new {
                    Inst::Const { dst, .. }
                    | Inst::Index { dst, .. }
                    | Inst::Load { dst, .. }
                    | Inst::Alu { dst, .. }
                    | Inst::AccGet { dst, .. }
                    | Inst::Copy { dst, .. } => Some(*dst),
                    Inst::AccNew { acc, .. } => Some(*acc),
                    _ => None,
                };
                let pure =
                    matches!(new, Inst::Const { .. } | Inst::Index { .. } | Inst::Load { .. } | Inst::Alu { .. });
                let Some(old) = dst else {
                    if matches!(new, Inst::Store { .. }) {
                        // Loads after a store may see new values: forget them.
                        for s in &mut self.seen {
                            s.retain(|k, _| !k.starts_with("Load"));
                        }
                    }
                    out.push(new);
                    continue;
                };
                let key = pure.then(|| {
                    let mut k = new.clone();
                    set_dst(&mut k, usize::MAX);
                    format!("{k:?}")
                });
                if let Some(key) = &key
                    && let Some(&r) = self.seen.last().and_then(|s| s.get(key))
                {
                    self.copies[c].names.insert(old, r);
                    continue;
                }
                let r = self.reg();
                set_dst(&mut new, r);
                self.copies[c].names.insert(old, r);
                if let (Some(key), Some(s)) = (key, self.seen.last_mut()) {
                    s.insert(key, r);
                }
                out.push(new);
            }
        }
    }
}

fn set_dst(i: &mut Inst, r: usize) {
    match i {
        Inst::Const { dst, .. }
        | Inst::Index { dst, .. }
        | Inst::Load { dst, .. }
        | Inst::Alu { dst, .. }
        | Inst::AccGet { dst, .. }
        | Inst::Copy { dst, .. } => *dst = r,
        Inst::AccNew { acc, .. } => *acc = r,
        _ => {}
    }
}

/// Tiles the two innermost of the leading nested parallel ranges of `body` by `f x f`, when
/// they enclose a reduction. Returns the new body, or `None` when the kernel does not have that
/// form. `regs` and `vars` are the kernel's register and range-variable counts (updated).
pub fn upcast(body: &[Inst], f: u32, regs: &mut usize, vars: &mut usize) -> Option<Vec<Inst>> {
    // The chain of parallel ranges, outermost first.
    let mut chain: Vec<(usize, Dim)> = Vec::new();
    let mut b = body;
    while let [Inst::Range { var, extent, kind: RangeKind::Global, body: inner }] = b {
        chain.push((*var, extent.clone()));
        b = inner;
    }
    if chain.len() < 2 || f < 2 || !has_reduction(b) || !replicable(b) {
        return None;
    }
    let f64_ = i64::from(f);
    let (vi, m) = chain[chain.len() - 2].clone();
    let (vj, n) = chain[chain.len() - 1].clone();
    let (vio, vjo) = (*vars, *vars + 1);
    *vars += 2;
    let mut t = Tiler { regs: *regs, vi, vj, copies: Vec::new(), ands: HashMap::new(), seen: vec![HashMap::new()] };
    let mut tile = Vec::new();
    let tile_coord =
        |outer: usize, k: i64| IExpr::sum(IExpr::product(IExpr::c(f64_), IExpr::Coord(outer)), IExpr::c(k));
    // One guard per tile element: i < m && j < n.
    let mut guards_i = Vec::new();
    let mut guards_j = Vec::new();
    for (outer, ext, guards) in [(vio, &m, &mut guards_i), (vjo, &n, &mut guards_j)] {
        let lim = t.reg();
        tile.push(Inst::Index { dst: lim, expr: IExpr::Dim(ext.clone()) });
        for k in 0..f64_ {
            let (x, lt) = (t.reg(), t.reg());
            tile.push(Inst::Index { dst: x, expr: tile_coord(outer, k) });
            tile.push(Inst::Alu { dst: lt, op: Op::Binary(BinaryOp::Lt), args: vec![x, lim], dtype: DType::Bool });
            guards.push(lt);
        }
    }
    for ii in 0..f64_ {
        for jj in 0..f64_ {
            let g = t.reg();
            tile.push(Inst::Alu {
                dst: g,
                op: Op::Binary(BinaryOp::And),
                args: vec![guards_i[ii as usize], guards_j[jj as usize]],
                dtype: DType::Bool,
            });
            let coords: HashMap<usize, IExpr> = [(vi, tile_coord(vio, ii)), (vj, tile_coord(vjo, jj))].into();
            t.copies.push(Copy {
                coords,
                names: HashMap::new(),
                all: g,
                row: guards_i[ii as usize],
                col: guards_j[jj as usize],
            });
        }
    }
    t.replicate(b, &mut tile);
    *regs = t.regs;
    let tiles = |d: &Dim| d.add_const(f64_ - 1).floor_div(f64_);
    let inner = Inst::Range { var: vjo, extent: tiles(&n)?, kind: RangeKind::Global, body: tile };
    let mut out = vec![Inst::Range { var: vio, extent: tiles(&m)?, kind: RangeKind::Global, body: vec![inner] }];
    for (var, extent) in chain[..chain.len() - 2].iter().rev() {
        out = vec![Inst::Range { var: *var, extent: extent.clone(), kind: RangeKind::Global, body: out }];
    }
    Some(out)
}
