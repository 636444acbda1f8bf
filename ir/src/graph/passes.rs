//! Rewrite passes over the graph IR. Each pass rebuilds the graph in canonical order; none
//! changes what the graph computes (the tests run every example before and after).
//!
//! - constant folding of exact primitive operations (never transcendentals: those must go
//!   through the shared decomposition so that every backend computes the same function);
//! - algebraic simplification that is exact in IEEE arithmetic (`x * 1`, `x - 0`, casts to the
//!   same dtype, `where` on a constant);
//! - view composition: an Index of an Index becomes one Index;
//! - common subexpression elimination;
//! - loop-invariant hoisting: heavy work in a loop body that reads no carried value (a scan, a
//!   scatter, a reduction of captured arrays) is computed once before the loop and captured;
//! - dead code removal (only what the outputs need is kept).

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::interp::{self, Array};
use crate::graph::*;
use std::collections::{HashMap, HashSet};

/// The graph every backend compiles: optimised, transcendentals decomposed into primitives
/// (crate::graph::decompose), optimised again. The reference interpreter on this graph is the oracle.
pub fn prepare(g: &Graph) -> Graph {
    optimize(&contract(&crate::graph::decompose::decompose(&optimize(g))))
}

/// The numeric contract's one decision about fused multiply-add (docs/numerics.md): a float
/// `sum` whose summand is a product, `reduce sum (binary mul a b)`, becomes a contraction
/// `reduce dot a b` that accumulates `acc = fma(a, b, acc)`, one rounding per step. Matrix
/// products, dot products and `sum(r in ..: a[..] * b[..])` are such sums. The reference
/// interpreter and every backend run the prepared graph, so they all compute the same
/// operations. Nothing else is contracted: an elementwise `a * b + c` keeps its two roundings.
/// Runs inside loop bodies too.
pub fn contract(g: &Graph) -> Graph {
    rebuild(g, |out, n| {
        if let Op::Loop { body, .. } = &n.op {
            let mut op = n.op.clone();
            if let Op::Loop { body: b, .. } = &mut op {
                **b = contract(body);
            }
            return Some(out.add(op, n.dtype, n.shape.clone(), n.args.clone(), n.loc));
        }
        let Op::Reduce { op: ReduceOp::Sum, axes } = &n.op else { return None };
        let m = out.node(n.args[0]);
        if !m.dtype.is_float() || !matches!(m.op, Op::Binary(BinaryOp::Mul)) {
            return None;
        }
        let (a, b) = (m.args[0], m.args[1]);
        let op = Op::Reduce { op: ReduceOp::Dot, axes: axes.clone() };
        Some(out.add(op, n.dtype, n.shape.clone(), vec![a, b], n.loc))
    })
}

/// Runs every pass until nothing changes (at most a few rounds).
pub fn optimize(g: &Graph) -> Graph {
    let mut cur = g.clone();
    for _ in 0..4 {
        let next = cse(&compose_views(&simplify(&hoist(&cur))));
        if crate::graph::text::print(&next, "g") == crate::graph::text::print(&cur, "g") {
            return next;
        }
        cur = next;
    }
    cur
}

/// Rebuilds `g` with only the nodes its outputs need, in canonical order; `f` may replace a
/// node (given with its arguments already rebuilt) by an existing node of the new graph.
fn rebuild(g: &Graph, mut f: impl FnMut(&mut Graph, &Node) -> Option<NodeId>) -> Graph {
    let mut out = Graph { inputs: g.inputs.clone(), dims: g.dims.clone(), ..Graph::default() };
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    let live = live_nodes(g);
    for id in g.topo() {
        if !live[id.index()] {
            continue;
        }
        let n = g.node(id);
        let mut node = n.clone();
        node.args = n.args.iter().map(|a| map[a]).collect();
        if let Op::Loop { body, .. } = &mut node.op {
            **body = optimize(body);
        }
        let new = match f(&mut out, &node) {
            Some(existing) => existing,
            None => out.add(node.op.clone(), node.dtype, node.shape.clone(), node.args.clone(), node.loc),
        };
        map.insert(id, new);
    }
    out.outputs = g.outputs.iter().map(|(n, id)| (n.clone(), map[id])).collect();
    out
}

fn live_nodes(g: &Graph) -> Vec<bool> {
    let mut live = vec![false; g.g.node_count()];
    let mut stack: Vec<NodeId> = g.outputs.iter().map(|(_, id)| *id).collect();
    while let Some(id) = stack.pop() {
        if !live[id.index()] {
            live[id.index()] = true;
            stack.extend(g.node(id).args.iter().copied());
        }
    }
    live
}

/// Loop-invariant hoisting: in each loop body, the values that depend on no carried value and no
/// iteration number, contain heavy work (a reduction, scan, scatter or loop) and no checked
/// access (whose error the loop might never reach), and are used by the step's other values,
/// are computed once before the loop and passed in as captured values.
pub fn hoist(g: &Graph) -> Graph {
    rebuild(g, |out, n| {
        let Op::Loop { lo, trip, carried, has_exit, body } = &n.op else { return None };
        let (body, extra) = hoist_body(out, body, *carried, &n.args)?;
        let mut args = n.args.clone();
        args.extend(extra);
        let (body, args) = prune_captures(&body, *carried, &args);
        let op = Op::Loop {
            lo: lo.clone(),
            trip: trip.clone(),
            carried: *carried,
            has_exit: *has_exit,
            body: Box::new(body),
        };
        Some(out.add(op, n.dtype, n.shape.clone(), args, n.loc))
    })
}

/// The body with its hoistable values replaced by new captured inputs, and those values built
/// in `out` (None when there is nothing to hoist).
fn hoist_body(out: &mut Graph, body: &Graph, carried: usize, args: &[NodeId]) -> Option<(Graph, Vec<NodeId>)> {
    let order = body.topo();
    let count = body.g.node_count();
    let (mut invariant, mut heavy) = (vec![false; count], vec![false; count]);
    for &id in &order {
        let n = body.node(id);
        let checked =
            matches!(&n.op, Op::Index { guards, .. } if guards.iter().any(|gd| gd.on_invalid == OnInvalid::Error));
        invariant[id.index()] = match n.op {
            Op::Input(k) => k > carried,
            _ => !checked && n.args.iter().all(|a| invariant[a.index()]),
        };
        heavy[id.index()] =
            matches!(n.op, Op::Reduce { .. } | Op::Scan { .. } | Op::ScatterAdd { .. } | Op::Loop { .. })
                || n.args.iter().any(|a| heavy[a.index()]);
    }
    let outputs: Vec<NodeId> = body.outputs.iter().map(|(_, id)| *id).collect();
    let hoisted: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|id| {
            invariant[id.index()]
                && heavy[id.index()]
                && !matches!(body.node(*id).op, Op::Proj(_) | Op::Loop { .. })
                && (outputs.contains(id)
                    || body.g.neighbors_directed(*id, petgraph::Direction::Outgoing).any(|u| !invariant[u.index()]))
        })
        .collect();
    if hoisted.is_empty() {
        return None;
    }
    // Build the hoisted values before the loop: a captured input is the loop's argument.
    let mut outer: HashMap<NodeId, NodeId> = HashMap::new();
    for &id in &order {
        if !invariant[id.index()] {
            continue;
        }
        let n = body.node(id);
        let new = match n.op {
            Op::Input(k) => args[k - 1],
            _ => {
                let a = n.args.iter().map(|a| outer[a]).collect();
                out.add(n.op.clone(), n.dtype, n.shape.clone(), a, n.loc)
            }
        };
        outer.insert(id, new);
    }
    // The body reads them as new captured inputs.
    let mut nb = Graph { inputs: body.inputs.clone(), dims: body.dims.clone(), ..Graph::default() };
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    for &id in &order {
        let n = body.node(id);
        let new = if hoisted.contains(&id) {
            let k = nb.inputs.len();
            nb.inputs.push((format!("capture{k}"), n.dtype, n.shape.clone()));
            nb.add(Op::Input(k), n.dtype, n.shape.clone(), vec![], n.loc)
        } else {
            let a = n.args.iter().map(|a| map[a]).collect();
            nb.add(n.op.clone(), n.dtype, n.shape.clone(), a, n.loc)
        };
        map.insert(id, new);
    }
    nb.outputs = body.outputs.iter().map(|(name, id)| (name.clone(), map[id])).collect();
    Some((dce(&nb), hoisted.iter().map(|id| outer[id]).collect()))
}

/// Drops the captured inputs a loop body no longer reads (after hoisting), with their loop
/// arguments, so that the loop's kernel does not read their buffers.
fn prune_captures(body: &Graph, carried: usize, args: &[NodeId]) -> (Graph, Vec<NodeId>) {
    let mut used = vec![false; body.inputs.len()];
    for n in body.g.node_weights() {
        if let Op::Input(k) = n.op
            && let Some(u) = used.get_mut(k)
        {
            *u = true;
        }
    }
    // New number of each input: the iteration and carried values keep theirs.
    let mut renumber: Vec<Option<usize>> = vec![None; body.inputs.len()];
    let mut inputs = Vec::new();
    let mut new_args: Vec<NodeId> = args[..carried.min(args.len())].to_vec();
    for (k, input) in body.inputs.iter().enumerate() {
        if k <= carried || used[k] {
            renumber[k] = Some(inputs.len());
            if k > carried {
                inputs.push((format!("capture{}", inputs.len()), input.1, input.2.clone()));
                new_args.push(args[k - 1]);
            } else {
                inputs.push(input.clone());
            }
        }
    }
    let mut nb = Graph { inputs, dims: body.dims.clone(), ..Graph::default() };
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    for id in body.topo() {
        let n = body.node(id);
        let op = match n.op {
            Op::Input(k) => Op::Input(renumber[k].unwrap_or(k)),
            ref op => op.clone(),
        };
        let a = n.args.iter().map(|a| map[a]).collect();
        map.insert(id, nb.add(op, n.dtype, n.shape.clone(), a, n.loc));
    }
    nb.outputs = body.outputs.iter().map(|(name, id)| (name.clone(), map[id])).collect();
    (nb, new_args)
}

/// Dead code removal alone.
pub fn dce(g: &Graph) -> Graph {
    rebuild(g, |_, _| None)
}

/// Common subexpression elimination: identical operations on identical arguments are one node.
pub fn cse(g: &Graph) -> Graph {
    let mut seen: HashMap<String, NodeId> = HashMap::new();
    rebuild(g, |out, n| {
        if matches!(n.op, Op::Loop { .. }) {
            return None;
        }
        let key = format!("{:?}|{:?}|{:?}|{:?}", n.op, n.dtype, n.shape, n.args);
        match seen.get(&key) {
            Some(&id) => Some(id),
            None => {
                let id = out.add(n.op.clone(), n.dtype, n.shape.clone(), n.args.clone(), n.loc);
                seen.insert(key, id);
                Some(id)
            }
        }
    })
}

/// The value of a node that is one constant everywhere: a Const, or a guard-free view of one.
fn scalar_const(g: &Graph, id: NodeId) -> Option<Scalar> {
    let n = g.node(id);
    match &n.op {
        Op::Const(s) => Some(*s),
        Op::Index { guards, .. } if guards.is_empty() && n.args.len() == 1 => match &g.node(n.args[0]).op {
            Op::Const(s) => Some(*s),
            _ => None,
        },
        _ => None,
    }
}

fn is_exact_unary(op: UnaryOp) -> bool {
    matches!(
        op,
        UnaryOp::Neg | UnaryOp::Not | UnaryOp::Abs | UnaryOp::Sqrt | UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round
    )
}

/// Constant folding and exact algebraic identities.
pub fn simplify(g: &Graph) -> Graph {
    rebuild(g, |out, n| {
        let consts: Vec<Option<Scalar>> = n.args.iter().map(|a| scalar_const(out, *a)).collect();
        let all_const = !n.args.is_empty() && consts.iter().all(|c| c.is_some()) && n.shape.is_empty();
        let foldable = match &n.op {
            Op::Unary(u) => is_exact_unary(*u),
            Op::Binary(b) => *b != BinaryOp::Pow,
            Op::Where | Op::Cast | Op::Bitcast | Op::Fma => true,
            _ => false,
        };
        if all_const && foldable {
            // Evaluate the node on its constant arguments with the reference interpreter.
            let mut tiny = Graph::default();
            let mut args = Vec::new();
            for (k, a) in n.args.iter().enumerate() {
                let an = out.node(*a);
                tiny.inputs.push((format!("a{k}"), an.dtype, vec![]));
                args.push(tiny.add(Op::Input(k), an.dtype, vec![], vec![], an.loc));
            }
            let r = tiny.add(n.op.clone(), n.dtype, vec![], args, n.loc);
            tiny.outputs.push(("r".into(), r));
            let vals: Vec<Array> = n
                .args
                .iter()
                .zip(&consts)
                .map(|(a, c)| Array::from_fn(out.node(*a).dtype, vec![], |_| c.unwrap_or(Scalar::Int(0))))
                .collect();
            if let Ok(res) = interp::run(&tiny, &HashMap::new(), &vals) {
                let s = match &res[0].data {
                    interp::Data::F(v) => Scalar::Float(v[0]),
                    interp::Data::I(v) => Scalar::Int(v[0]),
                    interp::Data::B(v) => Scalar::Bool(v[0]),
                };
                return Some(out.add(Op::Const(s), n.dtype, vec![], vec![], n.loc));
            }
        }
        let is = |c: &Option<Scalar>, v: f64| match c {
            Some(Scalar::Float(x)) => *x == v && x.is_sign_positive(),
            Some(Scalar::Int(x)) => *x as f64 == v,
            _ => false,
        };
        let same_shape = |a: NodeId| out.node(a).shape == n.shape && out.node(a).dtype == n.dtype;
        match &n.op {
            Op::Cast if out.node(n.args[0]).dtype == n.dtype => Some(n.args[0]),
            Op::Binary(BinaryOp::Mul) if is(&consts[1], 1.0) && same_shape(n.args[0]) => Some(n.args[0]),
            Op::Binary(BinaryOp::Mul) if is(&consts[0], 1.0) && same_shape(n.args[1]) => Some(n.args[1]),
            Op::Binary(BinaryOp::Div) if is(&consts[1], 1.0) && same_shape(n.args[0]) => Some(n.args[0]),
            Op::Binary(BinaryOp::Sub) if is(&consts[1], 0.0) && same_shape(n.args[0]) => Some(n.args[0]),
            Op::Binary(BinaryOp::Add) if !n.dtype.is_float() && is(&consts[1], 0.0) && same_shape(n.args[0]) => {
                Some(n.args[0])
            }
            Op::Where => match consts[0] {
                Some(Scalar::Bool(true)) if same_shape(n.args[1]) => Some(n.args[1]),
                Some(Scalar::Bool(false)) if same_shape(n.args[2]) => Some(n.args[2]),
                _ => None,
            },
            // An identity view.
            Op::Index { map, guards, .. }
                if guards.is_empty()
                    && n.args.len() == 1
                    && same_shape(n.args[0])
                    && map.iter().enumerate().all(|(k, m)| *m == IExpr::Coord(k)) =>
            {
                Some(n.args[0])
            }
            _ => None,
        }
    })
}

/// Substitutes output coordinates of the outer map into an inner expression.
fn subst(e: &IExpr, outer: &[IExpr]) -> IExpr {
    match e {
        IExpr::Coord(k) => outer.get(*k).cloned().unwrap_or(IExpr::c(0)),
        IExpr::Dim(d) => IExpr::Dim(d.clone()),
        IExpr::Data(k) => IExpr::Data(*k),
        IExpr::Add(a, b) => IExpr::sum(subst(a, outer), subst(b, outer)),
        IExpr::Mul(a, b) => IExpr::product(subst(a, outer), subst(b, outer)),
        IExpr::Div(a, b) => IExpr::Div(Box::new(subst(a, outer)), Box::new(subst(b, outer))),
        IExpr::Mod(a, b) => IExpr::Mod(Box::new(subst(a, outer)), Box::new(subst(b, outer))),
    }
}

/// View composition: `Index(Index(src, inner), outer)` becomes `Index(src, inner ∘ outer)` when
/// the inner index has no data-dependent parts and its guards (if any) fill with the same value.
pub fn compose_views(g: &Graph) -> Graph {
    rebuild(g, |out, n| {
        let Op::Index { map: om, guards: og, fill: of } = &n.op else { return None };
        let inner_id = n.args[0];
        let inner = out.node(inner_id).clone();
        let Op::Index { map: im, guards: ig, fill: inf } = &inner.op else { return None };
        if inner.args.len() != 1 || im.iter().any(|m| m.uses_data()) || ig.iter().any(|g| g.expr.uses_data()) {
            return None;
        }
        if !ig.is_empty() && (inf != of || ig.iter().any(|g| g.on_invalid != OnInvalid::Fill)) {
            return None;
        }
        // Keep guards on inner coordinates: outer guards stay; inner guards are substituted.
        let mut guards = og.clone();
        for gd in ig {
            guards.push(Guard {
                expr: subst(&gd.expr, om),
                lo: gd.lo.clone(),
                hi: gd.hi.clone(),
                on_invalid: gd.on_invalid,
            });
        }
        // The outer map can be out of the inner's range only where an outer guard fails.
        let map: Vec<IExpr> = im.iter().map(|m| subst(m, om).simplified()).collect();
        let guards: Vec<Guard> = guards.into_iter().map(|g| Guard { expr: g.expr.simplified(), ..g }).collect();
        let mut args = vec![inner.args[0]];
        args.extend(n.args[1..].iter().copied());
        let _ = Dim::constant(0);
        Some(out.add(Op::Index { map, guards, fill: *of }, n.dtype, n.shape.clone(), args, n.loc))
    })
}

/// How [`split_reductions`] splits: a reduction to a scalar into `chunks` contiguous chunks of
/// `lanes` interleaved partials each (one chunk per thread on a CPU, so each thread streams its
/// own memory; a GPU takes one chunk of many lanes, so neighbouring threads read neighbouring
/// elements), and a reduction along rows into `rows` interleaved partials per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub chunks: i64,
    pub lanes: i64,
    pub rows: i64,
}

/// Splits reductions over a long last axis (`sum(x)` of an `x: f32[n]`, `max(x, axis: 1)` of an
/// `x: f32[b, n]`) into partial reductions, a reduction of the partials, and a sequential
/// reduction of the elements left over. Along a row, element `i` goes to partial `i mod k` (`k`
/// = `split.rows`). A reduction to a scalar takes `chunks x lanes` partials: the first
/// `chunks * lanes * m` elements (`m = n / (chunks * lanes)`) form `chunks` contiguous runs, and
/// element `j` of a run goes to lane `j mod lanes` of its chunk. Partials are independent and
/// read contiguous memory, so a backend runs them in SIMD lanes and on several threads. max and
/// min are exact in any order; sums change order (docs/numerics.md bounds the difference). With
/// `--deterministic` this pass does not run.
pub fn split_reductions(g: &Graph, split: &Split) -> Graph {
    rebuild(g, |out, n| {
        let Op::Reduce { op, axes } = &n.op else { return None };
        let x = n.args[0];
        let src = out.node(x).clone();
        let r = src.shape.len();
        if !matches!(op, ReduceOp::Sum | ReduceOp::Max | ReduceOp::Min | ReduceOp::Dot)
            || r == 0
            || axes.as_slice() != [r - 1]
        {
            return None;
        }
        // Chunks are for reductions to a scalar only (rows already spread over threads).
        let (chunks, lanes) = if r == 1 { (split.chunks.max(1), split.lanes) } else { (1, split.rows) };
        let partials = chunks.checked_mul(lanes)?;
        // Only where every element read along the axis is contiguous in memory (or the same
        // for the whole axis): a matrix product's column reads would become strided partials.
        if !n.args.iter().all(|a| contiguous_along(out, *a, r - 1, 0)) {
            return None;
        }
        if lanes < 2 || src.shape[r - 1].as_const().is_some_and(|c| c < partials * 16) {
            return None;
        }
        // A product of two matrices (`q @ transpose(k)`: every operand is reused along some output
        // axis) keeps its rows whole: its partials would outnumber its operands' elements many
        // times over (measured: q @ k^T for 8 x 512 x 64, 100 ms split, 32 ms whole).
        if *op == ReduceOp::Dot && r > 2 && n.args.iter().all(|a| reused_along_output(out, *a, r - 1)) {
            return None;
        }
        let outer: Vec<Dim> = src.shape[..r - 1].to_vec();
        let len = src.shape[r - 1].clone();
        let rows = len.floor_div(partials)?;
        let main = rows.mul(&Dim::constant(partials));
        let rem = len.sub(&main);
        // Partials keep the accumulator's precision (f32 for f16 and bf16).
        let pd = if matches!(op, ReduceOp::Sum | ReduceOp::Dot) && matches!(src.dtype, DType::F16 | DType::Bf16) {
            DType::F32
        } else {
            n.dtype
        };
        let keep: Vec<IExpr> = (0..r - 1).map(IExpr::Coord).collect();
        let mut map = keep.clone();
        let mut vshape = outer.clone();
        // The view: [outer.., rows, lanes], or [chunks, rows, lanes] with chunk c at c * rows * lanes.
        let (red_axis, pshape) = if chunks > 1 {
            let run = rows.mul(&Dim::constant(lanes));
            map.push(IExpr::sum(
                IExpr::sum(
                    IExpr::product(IExpr::Coord(0), IExpr::Dim(run)),
                    IExpr::product(IExpr::Coord(1), IExpr::c(lanes)),
                ),
                IExpr::Coord(2),
            ));
            vshape.push(Dim::constant(chunks));
            (1, vec![Dim::constant(chunks), Dim::constant(lanes)])
        } else {
            map.push(IExpr::sum(IExpr::product(IExpr::Coord(r - 1), IExpr::c(lanes)), IExpr::Coord(r)));
            let mut p = outer.clone();
            p.push(Dim::constant(lanes));
            (r - 1, p)
        };
        vshape.push(rows);
        vshape.push(Dim::constant(lanes));
        // Every argument (a contraction has two) is viewed the same way.
        let ys: Vec<NodeId> = n
            .args
            .iter()
            .map(|&a| {
                let d = out.node(a).dtype;
                let view = Op::Index { map: map.clone(), guards: vec![], fill: Scalar::zero(d) };
                out.add(view, d, vshape.clone(), vec![a], n.loc)
            })
            .collect();
        let p = out.add(Op::Reduce { op: *op, axes: vec![red_axis] }, pd, pshape, ys, n.loc);
        // The partials combine as a plain sum (a contraction's partials are sums already).
        let paxes = if chunks > 1 { vec![0, 1] } else { vec![r - 1] };
        let a = out.add(Op::Reduce { op: op.combine(), axes: paxes }, pd, outer.clone(), vec![p], n.loc);
        let red = Op::Reduce { op: *op, axes: vec![r - 1] };
        let mut tmap = keep;
        tmap.push(IExpr::sum(IExpr::Coord(r - 1), IExpr::Dim(main)));
        let mut tshape = outer.clone();
        tshape.push(rem);
        let tvs: Vec<NodeId> = n
            .args
            .iter()
            .map(|&a| {
                let d = out.node(a).dtype;
                let tail = Op::Index { map: tmap.clone(), guards: vec![], fill: Scalar::zero(d) };
                out.add(tail, d, tshape.clone(), vec![a], n.loc)
            })
            .collect();
        let t = out.add(red, pd, outer.clone(), tvs, n.loc);
        let combine = match op {
            ReduceOp::Sum | ReduceOp::Dot => BinaryOp::Add,
            ReduceOp::Max => BinaryOp::Max,
            _ => BinaryOp::Min,
        };
        let c = out.add(Op::Binary(combine), pd, outer.clone(), vec![a, t], n.loc);
        Some(if pd == n.dtype { c } else { out.add(Op::Cast, n.dtype, outer, vec![c], n.loc) })
    })
}

/// Packs the operand of a matrix product that is read across its rows: in `q @ transpose(k)`
/// the kernel vectorises the output's last axis `j`, and `k[j, r]` is strided along it (every
/// lane a separate load). Such an operand, a float input viewed with its last source axis the
/// reduction axis and the one before it the output's last axis, is copied once into a transposed
/// buffer (`reduce sum` over no axes, which the schedule materialises before the product), and
/// the product reads the copy along its rows. Values and their order are unchanged (each element
/// is added once to -0.0, which keeps it), so this runs in `--deterministic` too. Only for
/// products with at least two output axes whose rows are long enough to vectorise.
pub fn pack_transposed(g: &Graph) -> Graph {
    rebuild(g, |out, n| {
        let Op::Reduce { op: ReduceOp::Dot, axes } = &n.op else { return None };
        let r = out.node(n.args[0]).shape.len();
        if r < 3 || axes.as_slice() != [r - 1] || n.shape[r - 2].as_const().is_some_and(|c| c < 32) {
            return None;
        }
        let mut changed = false;
        let mut args = Vec::with_capacity(n.args.len());
        for &a in &n.args {
            args.push(match packed(out, a, r) {
                Some(p) => {
                    changed = true;
                    p
                }
                None => a,
            });
        }
        changed.then(|| out.add(n.op.clone(), n.dtype, n.shape.clone(), args, n.loc))
    })
}

/// The packed form of contraction operand `a` (a view with output axes `0..r - 1` and the
/// reduction axis `r - 1`), when it reads an input across the output's last axis.
fn packed(g: &mut Graph, a: NodeId, r: usize) -> Option<NodeId> {
    let v = g.node(a).clone();
    let Op::Index { map, guards, fill } = &v.op else { return None };
    let src = g.node(*v.args.first()?).clone();
    let k = map.len();
    if !guards.is_empty() || v.args.len() != 1 || !matches!(src.op, Op::Input(_)) || !src.dtype.is_float() || k < 2 {
        return None;
    }
    let (j, red) = (r - 2, r - 1);
    if map[k - 1] != IExpr::Coord(red) || map[k - 2] != IExpr::Coord(j) {
        return None;
    }
    if map[..k - 2].iter().any(|m| mentions(m, j) || mentions(m, red)) {
        return None;
    }
    // The transposed copy: t[.., y, x] = src[.., x, y].
    let mut tmap: Vec<IExpr> = (0..k - 2).map(IExpr::Coord).collect();
    tmap.push(IExpr::Coord(k - 1));
    tmap.push(IExpr::Coord(k - 2));
    let mut tshape = src.shape.clone();
    tshape.swap(k - 2, k - 1);
    let args = v.args.clone();
    let view = g.add(Op::Index { map: tmap, guards: vec![], fill: *fill }, src.dtype, tshape.clone(), args, v.loc);
    let copy = g.add(Op::Reduce { op: ReduceOp::Sum, axes: vec![] }, src.dtype, tshape, vec![view], v.loc);
    let mut pmap = map.clone();
    pmap.swap(k - 2, k - 1);
    Some(g.add(Op::Index { map: pmap, guards: vec![], fill: *fill }, v.dtype, v.shape.clone(), vec![copy], v.loc))
}

/// Materialises an expensive operand of a matrix product that the product would recompute for
/// every element of an output axis. In `softmax(s) @ v` the scheduler fuses the softmax (its
/// `exp` decomposition, a subtraction and a division) into the product's reduction, where it is
/// evaluated again for every column of the result: `d` times per element of `s`. Such an
/// operand (a view of an elementwise computation of at least [`EXPENSIVE`] operations, broadcast
/// along an output axis) is computed once into a buffer (`reduce sum` over no axes, which the
/// schedule materialises; adding each value once to -0.0 keeps it), and the product reads the
/// buffer through the same view. Every value and its order are unchanged, so this runs under
/// `--deterministic` too.
pub fn materialize_shared_operands(g: &Graph) -> Graph {
    rebuild(g, |out, n| {
        let Op::Reduce { op: ReduceOp::Dot, axes } = &n.op else { return None };
        let r = out.node(n.args[0]).shape.len();
        if r < 3 || axes.as_slice() != [r - 1] {
            return None;
        }
        let mut changed = false;
        let mut args = Vec::with_capacity(n.args.len());
        for &a in &n.args {
            let v = out.node(a).clone();
            let shared = match &v.op {
                Op::Index { guards, .. } if guards.is_empty() && v.args.len() == 1 => {
                    let src = out.node(v.args[0]);
                    src.dtype.is_float()
                        && elementwise_cost(out, v.args[0], &mut HashSet::new()) >= EXPENSIVE
                        && reused_along_output(out, a, r - 1)
                }
                _ => false,
            };
            if !shared {
                args.push(a);
                continue;
            }
            let src = out.node(v.args[0]).clone();
            let copy = out.add(
                Op::Reduce { op: ReduceOp::Sum, axes: vec![] },
                src.dtype,
                src.shape.clone(),
                vec![v.args[0]],
                v.loc,
            );
            args.push(out.add(v.op.clone(), v.dtype, v.shape.clone(), vec![copy], v.loc));
            changed = true;
        }
        changed.then(|| out.add(n.op.clone(), n.dtype, n.shape.clone(), args, n.loc))
    })
}

/// Elementwise operations at which a product's broadcast operand is worth a buffer.
pub const EXPENSIVE: usize = 16;

/// The number of elementwise operations that compute node `id` from materialised values (inputs,
/// reductions, constants), each shared node counted once; stops counting at [`EXPENSIVE`].
pub(crate) fn elementwise_cost(g: &Graph, id: NodeId, seen: &mut HashSet<NodeId>) -> usize {
    if !seen.insert(id) || seen.len() > 4 * EXPENSIVE {
        return 0;
    }
    let n = g.node(id);
    match &n.op {
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast | Op::Bitcast | Op::Fma => {
            let mut c = 1;
            for a in &n.args {
                if c >= EXPENSIVE {
                    break;
                }
                c += elementwise_cost(g, *a, seen);
            }
            c
        }
        Op::Index { .. } => n.args.first().map_or(0, |a| elementwise_cost(g, *a, seen)),
        _ => 0,
    }
}

/// Whether node `id` (a view with `rows` leading output axes, then the reduction axis) reads
/// the same element for every value of one of those output axes: a broadcast operand.
fn reused_along_output(g: &Graph, id: NodeId, rows: usize) -> bool {
    match &g.node(id).op {
        Op::Index { map, .. } => (0..rows).any(|axis| !map.iter().any(|m| mentions(m, axis))),
        _ => false,
    }
}

fn mentions(e: &IExpr, axis: usize) -> bool {
    match e {
        IExpr::Coord(k) => *k == axis,
        IExpr::Add(a, b) | IExpr::Mul(a, b) | IExpr::Div(a, b) | IExpr::Mod(a, b) => {
            mentions(a, axis) || mentions(b, axis)
        }
        _ => false,
    }
}

/// Whether node `id` reads memory contiguously along output axis `axis`: elementwise operations
/// of inputs, and views whose last source axis is `axis` itself (or that do not move along it).
fn contiguous_along(g: &Graph, id: NodeId, axis: usize, depth: usize) -> bool {
    let n = g.node(id);
    if depth > 64 {
        return false;
    }
    match &n.op {
        Op::Input(_) | Op::Const(_) | Op::Iota { .. } | Op::Size(_) => true,
        // A reduction read by another reduction is materialised row-major (see `schedule`).
        Op::Reduce { .. } => true,
        Op::Unary(_) | Op::Binary(_) | Op::Where | Op::Cast | Op::Bitcast | Op::Fma => {
            n.args.iter().all(|a| contiguous_along(g, *a, axis, depth + 1))
        }
        Op::Index { map, .. } => {
            let Some((last, rest)) = map.split_last() else { return true };
            if !mentions(last, axis) && !rest.iter().any(|m| mentions(m, axis)) {
                return true; // the same element for the whole axis
            }
            n.args.len() == 1
                && matches!(g.node(n.args[0]).op, Op::Input(_))
                && *last == IExpr::Coord(axis)
                && !rest.iter().any(|m| mentions(m, axis))
        }
        _ => false,
    }
}
