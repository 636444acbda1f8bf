//! The scheduler: partitions a graph into device kernels, lists their buffers, and plans the
//! memory of temporaries.
//!
//! Rules (docs/architecture.md states them for users):
//! 1. A value is *materialised* (written to a buffer) when it is a graph output, a reduction
//!    whose result is used at another shape (broadcast back, or reduced again), a scan, or a
//!    loop result.
//! 2. Everything else is fused into the kernels that use it: elementwise chains and views fuse
//!    into their consumer, and into the input of a reduction. A fused value used by several
//!    kernels is recomputed in each, unless it contains a reduction, a scan or a loop; then it is
//!    materialised instead (recomputing it would repeat the expensive part).
//! 3. Reductions with the same output shape where one feeds the other share one kernel (the
//!    kernel runs one phase per reduction for each output element): softmax's max and sum, and
//!    layernorm's mean and variance, each take one kernel, and the normalisation a second.
//! 4. Temporaries reuse the memory of temporaries no later kernel reads, when dtype and element
//!    count match.
//! 5. Elementwise results of the same shape computed one after the other share one kernel
//!    (several outputs of one entry, for example).
//! 6. On the CPU, [`fuse_rows`] then joins an elementwise kernel with the kernels computing the
//!    row reductions it reads: one kernel per row (softmax, layernorm).

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::interp::{self, Array, InterpError};
use crate::graph::*;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BufferKind {
    Input(usize),
    Output(usize),
    Temp { slot: usize },
}

#[derive(Clone, Debug)]
pub struct Buffer {
    pub kind: BufferKind,
    pub dtype: DType,
    pub shape: Vec<Dim>,
    /// The node whose value the buffer holds.
    pub node: NodeId,
}

#[derive(Clone, Debug)]
pub struct DeviceKernel {
    /// The nodes the kernel computes, arguments first.
    pub nodes: Vec<NodeId>,
    /// Buffers it reads (inputs and temporaries written by earlier kernels).
    pub reads: Vec<usize>,
    /// Buffers it writes.
    pub writes: Vec<usize>,
}

#[derive(Clone, Debug)]
pub struct Schedule {
    pub graph: Graph,
    pub kernels: Vec<DeviceKernel>,
    pub buffers: Vec<Buffer>,
    /// Number of temporary memory slots after reuse.
    pub slots: usize,
}

fn users(g: &Graph) -> HashMap<NodeId, Vec<NodeId>> {
    let mut u: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    for id in g.topo() {
        for a in &g.node(id).args {
            u.entry(*a).or_default().push(id);
        }
    }
    u
}

fn is_heavy(op: &Op) -> bool {
    matches!(op, Op::Reduce { .. } | Op::Scan { .. } | Op::Loop { .. } | Op::ScatterAdd { .. })
}

/// Schedules a graph (run [`crate::graph::passes::optimize`] first for the best result).
pub fn schedule(g: &Graph) -> Schedule {
    let order = g.topo();
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let users = users(g);
    let outputs: BTreeSet<NodeId> = g.outputs.iter().map(|(_, id)| *id).collect();
    let mut mat: BTreeSet<NodeId> = BTreeSet::new();
    for &id in &order {
        let n = g.node(id);
        let us = users.get(&id).cloned().unwrap_or_default();
        let materialise = match &n.op {
            Op::Input(_) => false,
            _ if outputs.contains(&id) => true,
            Op::Reduce { .. } => us.iter().any(|u| matches!(g.node(*u).op, Op::Reduce { .. })),
            Op::Scan { .. } | Op::ScatterAdd { .. } => true,
            // A loop is computed by the kernel that writes its results (its projections).
            Op::Loop { .. } => false,
            Op::Proj(_) => true,
            _ => false,
        };
        if materialise {
            mat.insert(id);
        }
    }
    // Rule 1, reductions: fusing a reduction into a consumer of another shape would recompute it
    // for every element of the consumer, so it is materialised.
    loop {
        let mut changed = false;
        for &id in &order {
            let n = g.node(id);
            if !matches!(n.op, Op::Reduce { .. }) || mat.contains(&id) {
                continue;
            }
            let mut stack: Vec<NodeId> = users.get(&id).cloned().unwrap_or_default();
            let mut seen = BTreeSet::new();
            let mut other_shape = false;
            while let Some(u) = stack.pop() {
                if !seen.insert(u) {
                    continue;
                }
                if g.node(u).shape != n.shape {
                    other_shape = true;
                    break;
                }
                if !mat.contains(&u) {
                    stack.extend(users.get(&u).cloned().unwrap_or_default());
                }
            }
            if other_shape {
                mat.insert(id);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // Rule 2: a fused value with heavy work, needed by several kernels, is materialised.
    loop {
        let kernels = form(g, &order, &mat);
        let mut count: HashMap<NodeId, usize> = HashMap::new();
        for k in &kernels {
            for id in k {
                *count.entry(*id).or_default() += 1;
            }
        }
        let mut changed = false;
        for (id, c) in count {
            if c > 1
                && !mat.contains(&id)
                && !matches!(g.node(id).op, Op::Input(_) | Op::Loop { .. })
                && has_heavy(g, id, &mat)
            {
                mat.insert(id);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let groups = form(g, &order, &mat);
    // Roots of each group (the materialised node that formed it).
    let roots: Vec<NodeId> = mat.iter().copied().collect::<Vec<_>>();
    let mut roots = roots;
    roots.sort_by_key(|id| pos[id]);
    // Rule 3: merge reduction kernels with equal output shapes where one feeds the other.
    let mut kernel_of: HashMap<NodeId, usize> = HashMap::new();
    let mut merged: Vec<Vec<NodeId>> = Vec::new();
    let mut merged_roots: Vec<Vec<NodeId>> = Vec::new();
    for (root, nodes) in roots.iter().zip(groups) {
        let rn = g.node(*root);
        let target = if let Op::Proj(_) = rn.op {
            // The results of one loop that have one shape come from one kernel; a result of
            // another shape (a carried scalar next to a carried array) gets its own kernel, which
            // runs its own copy of the loop (each element's copy computes the carried scalars).
            let lp = rn.args[0];
            (0..merged_roots.len()).find(|k| {
                merged_roots[*k].iter().any(|r| {
                    let r = g.node(*r);
                    matches!(r.op, Op::Proj(_)) && r.args[0] == lp && r.shape == rn.shape
                })
            })
        } else if matches!(rn.op, Op::Reduce { .. }) {
            // Kernels whose outputs this group reads.
            let mut reads = BTreeSet::new();
            for id in &nodes {
                for a in &g.node(*id).args {
                    if mat.contains(a)
                        && a != root
                        && let Some(k) = kernel_of.get(a)
                    {
                        reads.insert(*k);
                    }
                }
            }
            // Only into the latest kernel it reads: merging into an earlier one would make that
            // kernel depend on a later kernel (a cycle).
            let last = reads.iter().next_back().copied();
            last.filter(|k| {
                merged_roots[*k]
                    .iter()
                    .all(|r| matches!(g.node(*r).op, Op::Reduce { .. }) && g.node(*r).shape == rn.shape)
            })
        } else if !matches!(rn.op, Op::Scan { .. } | Op::Loop { .. } | Op::ScatterAdd { .. }) {
            // Rule 5 (horizontal fusion): an elementwise result joins the latest kernel when that
            // kernel's results have the same shape (it reads nothing from a later kernel: there is
            // none yet).
            let last = merged_roots.len().checked_sub(1);
            last.filter(|k| {
                merged_roots[*k].iter().all(|r| {
                    !matches!(g.node(*r).op, Op::Scan { .. } | Op::Proj(_) | Op::ScatterAdd { .. })
                        && g.node(*r).shape == rn.shape
                })
            })
        } else {
            None
        };
        match target {
            Some(k) => {
                for id in nodes {
                    if !merged[k].contains(&id) {
                        merged[k].push(id);
                    }
                }
                merged_roots[k].push(*root);
                kernel_of.insert(*root, k);
            }
            None => {
                kernel_of.insert(*root, merged.len());
                merged.push(nodes);
                merged_roots.push(vec![*root]);
            }
        }
    }
    // Buffers.
    let mut buffers: Vec<Buffer> = Vec::new();
    let mut buf_of: HashMap<NodeId, usize> = HashMap::new();
    for &id in &order {
        if let Op::Input(k) = g.node(id).op {
            buf_of.insert(id, buffers.len());
            let n = g.node(id);
            buffers.push(Buffer { kind: BufferKind::Input(k), dtype: n.dtype, shape: n.shape.clone(), node: id });
        }
    }
    for &id in mat.iter() {
        let n = g.node(id);
        let kind = match g.outputs.iter().position(|(_, o)| *o == id) {
            Some(k) => BufferKind::Output(k),
            None => BufferKind::Temp { slot: 0 },
        };
        buf_of.insert(id, buffers.len());
        buffers.push(Buffer { kind, dtype: n.dtype, shape: n.shape.clone(), node: id });
    }
    let mut kernels = Vec::new();
    for (nodes, roots) in merged.iter().zip(&merged_roots) {
        let mut nodes = nodes.clone();
        nodes.sort_by_key(|id| pos[id]);
        let mut reads = BTreeSet::new();
        for id in &nodes {
            for a in &g.node(*id).args {
                if !nodes.contains(a)
                    && let Some(b) = buf_of.get(a)
                {
                    reads.insert(*b);
                }
            }
        }
        let writes: Vec<usize> = roots.iter().filter_map(|r| buf_of.get(r).copied()).collect();
        kernels.push(DeviceKernel { nodes, reads: reads.into_iter().collect(), writes });
    }
    // Order: every kernel after the kernels whose buffers it reads; among the kernels that are
    // ready, the one whose last node comes first in the graph.
    let last = |k: &DeviceKernel| k.nodes.iter().map(|id| pos[id]).max().unwrap_or(0);
    let mut writer: HashMap<usize, usize> = HashMap::new();
    for (i, k) in kernels.iter().enumerate() {
        for w in &k.writes {
            writer.insert(*w, i);
        }
    }
    let mut done = vec![false; kernels.len()];
    let mut order_k = Vec::with_capacity(kernels.len());
    while order_k.len() < kernels.len() {
        let ready = (0..kernels.len())
            .filter(|&i| !done[i] && kernels[i].reads.iter().all(|b| writer.get(b).is_none_or(|w| *w == i || done[*w])))
            .min_by_key(|&i| last(&kernels[i]));
        // A cycle cannot happen (merges only join the latest kernel read); if it did, fall back
        // to graph order for the rest.
        let next = ready.or_else(|| (0..kernels.len()).filter(|&i| !done[i]).min_by_key(|&i| last(&kernels[i])));
        let Some(i) = next else { break };
        done[i] = true;
        order_k.push(i);
    }
    let mut slots_k: Vec<Option<DeviceKernel>> = kernels.into_iter().map(Some).collect();
    let mut kernels: Vec<DeviceKernel> = order_k.into_iter().filter_map(|i| slots_k[i].take()).collect();
    kernels.shrink_to_fit();
    // A loop's results are written by the loop's kernel: the Proj kernels read the loop's buffer.
    let slots = plan_memory(&mut buffers, &kernels);
    Schedule { graph: g.clone(), kernels, buffers, slots }
}

/// Rule 6 (the CPU's row kernels): an elementwise kernel over `[P.., n]` and the kernels before
/// it that compute, for each row `P`, what it reads of that row (reductions over the row into
/// `[P..]`, and their lane partials `[P.., lanes]`) become one kernel that runs, for each row,
/// every phase in order: the row's max, its sum of exponentials, then the row's outputs, while the
/// row is in the cache. The temporaries are still written (each row's own elements, by the
/// thread that reads them back); values and their order are unchanged, so results are
/// bit-identical to the kernels apart. A GPU keeps the kernels apart (one thread per row would
/// leave it idle).
///
/// A kernel joins only when every value of the row kernel that reads its results reads them at
/// the row being computed (shown by following the index maps from the outputs), when no kernel
/// between it and the elementwise one reads its results, and when it has no scan, loop or scatter.
pub fn fuse_rows(s: &Schedule) -> Schedule {
    let g = &s.graph;
    let order = g.topo();
    let pos: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    let mut writer: HashMap<usize, usize> = HashMap::new();
    for (i, k) in s.kernels.iter().enumerate() {
        for w in &k.writes {
            writer.insert(*w, i);
        }
    }
    let node_buf: HashMap<NodeId, usize> = s
        .buffers
        .iter()
        .enumerate()
        .filter(|(_, b)| !matches!(b.kind, BufferKind::Input(_)))
        .map(|(i, b)| (b.node, i))
        .collect();
    let plain = |k: &DeviceKernel| {
        k.nodes.iter().all(|id| {
            !matches!(g.node(*id).op, Op::Scan { .. } | Op::Loop { .. } | Op::Proj(_) | Op::ScatterAdd { .. })
        })
    };
    let mut taken = vec![false; s.kernels.len()];
    // Fused kernel at the position of its elementwise kernel: the kernels it takes, in order.
    let mut fused: HashMap<usize, Vec<usize>> = HashMap::new();
    for (e, ek) in s.kernels.iter().enumerate() {
        let Some(shape) = ek.writes.first().map(|w| s.buffers[*w].shape.clone()) else { continue };
        let rank = shape.len();
        let elementwise = ek.nodes.iter().all(|id| match &g.node(*id).op {
            Op::Reduce { axes, .. } => axes.is_empty(),
            op => !is_heavy(op) && !matches!(op, Op::Proj(_)),
        });
        if rank < 2 || !elementwise || ek.writes.iter().any(|w| s.buffers[*w].shape != shape) {
            continue;
        }
        let prefix = &shape[..rank - 1];
        let row_shaped = |b: &Buffer| {
            matches!(b.kind, BufferKind::Temp { .. })
                && (b.shape == prefix
                    || (b.shape.len() == rank
                        && b.shape[..rank - 1] == *prefix
                        && b.shape[rank - 1].as_const().is_some()))
        };
        // The kernels computing row values that `e` reads, directly or through each other.
        let mut set: BTreeSet<usize> = BTreeSet::new();
        let mut stack: Vec<usize> = ek.reads.clone();
        while let Some(b) = stack.pop() {
            let Some(&k) = writer.get(&b) else { continue };
            let kern = &s.kernels[k];
            if k >= e
                || taken[k]
                || set.contains(&k)
                || !plain(kern)
                || !kern.writes.iter().all(|w| row_shaped(&s.buffers[*w]))
            {
                continue;
            }
            set.insert(k);
            stack.extend(kern.reads.iter().copied());
        }
        // No kernel outside the set reads a result of the set before the row kernel runs (a
        // kernel dropped from the set reads before it, so its producers drop too).
        loop {
            let early = |b: &usize, set: &BTreeSet<usize>| {
                s.kernels.iter().enumerate().any(|(j, kj)| j < e && !set.contains(&j) && kj.reads.contains(b))
            };
            match set.iter().copied().find(|&k| s.kernels[k].writes.iter().any(|w| early(w, &set))) {
                Some(k) => {
                    set.remove(&k);
                }
                None => break,
            }
        }
        if set.is_empty() {
            continue;
        }
        // Every read of a result of the set is at the row being computed.
        let inside: BTreeSet<NodeId> =
            set.iter().flat_map(|k| s.kernels[*k].writes.iter().map(|w| s.buffers[*w].node)).collect();
        let mut roots: Vec<NodeId> = inside.iter().copied().collect();
        roots.extend(ek.writes.iter().map(|w| s.buffers[*w].node));
        if !roots.iter().all(|r| row_local(g, *r, rank - 1, &inside, &node_buf)) {
            continue;
        }
        for k in &set {
            taken[*k] = true;
        }
        fused.insert(e, set.into_iter().collect());
    }
    if fused.is_empty() {
        return s.clone();
    }
    let mut kernels = Vec::new();
    for (e, ek) in s.kernels.iter().enumerate() {
        if taken[e] {
            continue;
        }
        let Some(parts) = fused.get(&e) else {
            kernels.push(ek.clone());
            continue;
        };
        let mut nodes: Vec<NodeId> = Vec::new();
        let mut writes: Vec<usize> = Vec::new();
        for k in parts.iter().chain(std::iter::once(&e)) {
            for id in &s.kernels[*k].nodes {
                if !nodes.contains(id) {
                    nodes.push(*id);
                }
            }
            writes.extend(s.kernels[*k].writes.iter().copied());
        }
        nodes.sort_by_key(|id| pos[id]);
        let mut reads: BTreeSet<usize> = BTreeSet::new();
        for k in parts.iter().chain(std::iter::once(&e)) {
            reads.extend(s.kernels[*k].reads.iter().filter(|b| !writes.contains(b)));
        }
        kernels.push(DeviceKernel { nodes, reads: reads.into_iter().collect(), writes });
    }
    let mut buffers = s.buffers.clone();
    let slots = plan_memory(&mut buffers, &kernels);
    Schedule { graph: s.graph.clone(), kernels, buffers, slots }
}

/// Whether every read of a node of `inside` from `root` (evaluated at a row's coordinates: its
/// first `rows` coordinates are the row's) is at the same row. Follows elementwise operations,
/// index maps that keep the first `rows` coordinates, and reductions over later axes.
pub(crate) fn row_local(
    g: &Graph,
    root: NodeId,
    rows: usize,
    inside: &BTreeSet<NodeId>,
    bufs: &HashMap<NodeId, usize>,
) -> bool {
    // (node, whether its first `rows` coordinates are the row's)
    let mut stack: Vec<(NodeId, bool)> = Vec::new();
    let mut seen: BTreeSet<(NodeId, bool)> = BTreeSet::new();
    stack.push((root, true));
    while let Some((id, aligned)) = stack.pop() {
        if !seen.insert((id, aligned)) {
            continue;
        }
        if id != root && inside.contains(&id) {
            if !aligned {
                return false;
            }
            continue;
        }
        if id != root && bufs.contains_key(&id) {
            // Another kernel's result (or an input): read from memory, anywhere.
            continue;
        }
        let n = g.node(id);
        match &n.op {
            Op::Index { map, .. } => {
                let src = g.node(n.args[0]);
                let keeps = aligned
                    && src.shape.len() >= rows
                    && n.shape.len() >= rows
                    && src.shape[..rows] == n.shape[..rows]
                    && (0..rows).all(|k| map.get(k) == Some(&IExpr::Coord(k)));
                stack.push((n.args[0], keeps));
                for d in &n.args[1..] {
                    stack.push((*d, aligned));
                }
            }
            Op::Reduce { axes, .. } => {
                let keeps = aligned && axes.iter().all(|a| *a >= rows);
                for a in &n.args {
                    stack.push((*a, keeps));
                }
            }
            _ => {
                for a in &n.args {
                    let same = g.node(*a).shape == n.shape;
                    stack.push((*a, aligned && same));
                }
            }
        }
    }
    true
}

fn has_heavy(g: &Graph, id: NodeId, mat: &BTreeSet<NodeId>) -> bool {
    let mut stack = vec![id];
    let mut seen = BTreeSet::new();
    while let Some(x) = stack.pop() {
        if !seen.insert(x) {
            continue;
        }
        let n = g.node(x);
        if is_heavy(&n.op) {
            return true;
        }
        for a in &n.args {
            if !mat.contains(a) {
                stack.push(*a);
            }
        }
    }
    false
}

/// The nodes of each materialised value's kernel: its ancestors up to materialised values.
fn form(g: &Graph, order: &[NodeId], mat: &BTreeSet<NodeId>) -> Vec<Vec<NodeId>> {
    let mut out = Vec::new();
    for &root in order.iter().filter(|id| mat.contains(id)) {
        let mut nodes = Vec::new();
        let mut stack = vec![root];
        let mut seen = BTreeSet::new();
        while let Some(x) = stack.pop() {
            if !seen.insert(x) {
                continue;
            }
            let n = g.node(x);
            if matches!(n.op, Op::Input(_)) {
                continue;
            }
            nodes.push(x);
            for a in &n.args {
                if !mat.contains(a) {
                    stack.push(*a);
                }
            }
        }
        out.push(nodes);
    }
    out
}

fn elements(shape: &[Dim]) -> Dim {
    shape.iter().fold(Dim::constant(1), |a, d| a.mul(d))
}

/// Gives every temporary a memory slot, reusing slots whose last reader has run.
fn plan_memory(buffers: &mut [Buffer], kernels: &[DeviceKernel]) -> usize {
    let mut last_use: HashMap<usize, usize> = HashMap::new();
    for (k, kern) in kernels.iter().enumerate() {
        for b in kern.reads.iter().chain(&kern.writes) {
            last_use.insert(*b, k);
        }
    }
    // Slots: (dtype, element count, free after kernel index).
    let mut slots: Vec<(DType, Dim, usize)> = Vec::new();
    for (k, kern) in kernels.iter().enumerate() {
        for &b in &kern.writes {
            if !matches!(buffers[b].kind, BufferKind::Temp { .. }) {
                continue;
            }
            let (d, n) = (buffers[b].dtype, elements(&buffers[b].shape));
            let free = slots.iter().position(|(sd, sn, until)| *sd == d && *sn == n && *until < k);
            let slot = match free {
                Some(s) => s,
                None => {
                    slots.push((d, n.clone(), 0));
                    slots.len() - 1
                }
            };
            slots[slot].2 = last_use.get(&b).copied().unwrap_or(k);
            buffers[b].kind = BufferKind::Temp { slot };
        }
    }
    slots.len()
}

/// The text form of a schedule (`tk emit --stage schedule`): the graph's text, then the buffers
/// and the device kernels, which refer to the graph's nodes by number.
pub fn print(s: &Schedule, name: &str) -> String {
    let g = &s.graph;
    let mut out = crate::graph::text::print(g, name);
    let _ = writeln!(
        out,
        "schedule {name}: {} device kernel{}",
        s.kernels.len(),
        if s.kernels.len() == 1 { "" } else { "s" }
    );
    let order = g.topo();
    let num: HashMap<NodeId, usize> = order.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    for (i, b) in s.buffers.iter().enumerate() {
        let kind = match &b.kind {
            BufferKind::Input(k) => format!("input {}", g.inputs.get(*k).map(|x| x.0.as_str()).unwrap_or("?")),
            BufferKind::Output(k) => format!("output {}", g.outputs.get(*k).map(|x| x.0.as_str()).unwrap_or("?")),
            BufferKind::Temp { slot } => format!("temp slot {slot}"),
        };
        let dims: Vec<String> = b.shape.iter().map(|d| d.to_string()).collect();
        let _ = writeln!(out, "  buffer b{i} = {kind}: {}[{}] (%{})", b.dtype, dims.join(", "), num[&b.node]);
    }
    for (k, kern) in s.kernels.iter().enumerate() {
        let r: Vec<String> = kern.reads.iter().map(|b| format!("b{b}")).collect();
        let w: Vec<String> = kern.writes.iter().map(|b| format!("b{b}")).collect();
        let ops: Vec<String> = kern.nodes.iter().map(|id| format!("%{}", num[id])).collect();
        let _ = writeln!(
            out,
            "  kernel k{k}: reads [{}] writes [{}] nodes [{}]",
            r.join(", "),
            w.join(", "),
            ops.join(", ")
        );
    }
    out.push_str("end schedule\n");
    out
}

/// Parses the text form of a schedule.
pub fn parse(text: &str) -> Result<(Schedule, String), crate::graph::text::ParseError> {
    let perr = |line: usize, m: &str| crate::graph::text::ParseError { line, message: m.to_string() };
    let start = text.find("\nschedule ").ok_or_else(|| perr(0, "missing `schedule` section"))? + 1;
    let first_line = text[..start].lines().count() + 1;
    let (graph, name) = crate::graph::text::parse(&text[..start])?;
    let order = graph.topo();
    let node = |w: &str, ln: usize| -> Result<NodeId, crate::graph::text::ParseError> {
        let k: usize = w.trim().trim_start_matches('%').parse().map_err(|_| perr(ln, "bad node reference"))?;
        order.get(k).copied().ok_or_else(|| perr(ln, "node reference out of range"))
    };
    let list = |w: &str| -> Vec<String> {
        w.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(|x| x.trim().to_string())
            .filter(|x| !x.is_empty())
            .collect()
    };
    let buf = |w: &str, ln: usize| -> Result<usize, crate::graph::text::ParseError> {
        w.trim_start_matches('b').parse().map_err(|_| perr(ln, "bad buffer"))
    };
    let mut buffers = Vec::new();
    let mut kernels = Vec::new();
    let mut slots = 0;
    for (i, line) in text[start..].lines().enumerate() {
        let ln = first_line + i;
        let l = line.trim();
        if l.is_empty() || l.starts_with("schedule ") || l == "end schedule" {
            continue;
        }
        if let Some(rest) = l.strip_prefix("buffer ") {
            let (_, def) = rest.split_once(" = ").ok_or_else(|| perr(ln, "expected `buffer bN = ...`"))?;
            let (kind_s, ty) = def.split_once(": ").ok_or_else(|| perr(ln, "expected `KIND: TYPE (%N)`"))?;
            let (ty, nref) = ty.rsplit_once(" (").ok_or_else(|| perr(ln, "missing `(%N)`"))?;
            let id = node(nref.trim_end_matches(')'), ln)?;
            let n = graph.node(id);
            let kind = if let Some(nm) = kind_s.strip_prefix("input ") {
                BufferKind::Input(graph.inputs.iter().position(|x| x.0 == nm).ok_or_else(|| perr(ln, "unknown input"))?)
            } else if let Some(nm) = kind_s.strip_prefix("output ") {
                BufferKind::Output(
                    graph.outputs.iter().position(|x| x.0 == nm).ok_or_else(|| perr(ln, "unknown output"))?,
                )
            } else if let Some(sl) = kind_s.strip_prefix("temp slot ") {
                let slot: usize = sl.parse().map_err(|_| perr(ln, "bad slot"))?;
                slots = slots.max(slot + 1);
                BufferKind::Temp { slot }
            } else {
                return Err(perr(ln, "unknown buffer kind"));
            };
            let _ = ty;
            buffers.push(Buffer { kind, dtype: n.dtype, shape: n.shape.clone(), node: id });
        } else if let Some(rest) = l.strip_prefix("kernel ") {
            let (_, body) = rest.split_once(": ").ok_or_else(|| perr(ln, "expected `kernel kN: ...`"))?;
            let r = body
                .split_once("reads ")
                .and_then(|(_, x)| x.split_once(" writes"))
                .ok_or_else(|| perr(ln, "missing reads"))?
                .0;
            let w = body
                .split_once("writes ")
                .and_then(|(_, x)| x.split_once(" nodes"))
                .ok_or_else(|| perr(ln, "missing writes"))?
                .0;
            let ns = body.split_once("nodes ").ok_or_else(|| perr(ln, "missing nodes"))?.1;
            kernels.push(DeviceKernel {
                reads: list(r).iter().map(|b| buf(b, ln)).collect::<Result<_, _>>()?,
                writes: list(w).iter().map(|b| buf(b, ln)).collect::<Result<_, _>>()?,
                nodes: list(ns).iter().map(|n| node(n, ln)).collect::<Result<_, _>>()?,
            });
        } else {
            return Err(perr(ln, "unexpected line"));
        }
    }
    Ok((Schedule { graph, kernels, buffers, slots }, name))
}

/// Runs a schedule kernel by kernel, each kernel seeing only the buffers it reads: the check
/// that the partition and the buffer lists are right.
pub fn run(s: &Schedule, dims: &HashMap<String, i64>, args: &[Array]) -> Result<Vec<Array>, InterpError> {
    let g = &s.graph;
    let mut store: HashMap<usize, Array> = HashMap::new();
    for (i, b) in s.buffers.iter().enumerate() {
        if let BufferKind::Input(k) = b.kind {
            store.insert(i, args[k].clone());
        }
    }
    for kern in &s.kernels {
        // A graph of this kernel alone: its read buffers become inputs.
        let mut sub = Graph { dims: g.dims.clone(), ..Graph::default() };
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        let mut sub_args = Vec::new();
        for &b in &kern.reads {
            let buf = &s.buffers[b];
            let k = sub.inputs.len();
            sub.inputs.push((format!("b{b}"), buf.dtype, buf.shape.clone()));
            let id = sub.add(Op::Input(k), buf.dtype, buf.shape.clone(), vec![], g.node(buf.node).loc);
            map.insert(buf.node, id);
            let Some(v) = store.get(&b) else {
                return Err(InterpError {
                    message: format!("buffer b{b} is read before it is written"),
                    loc: Loc::default(),
                });
            };
            sub_args.push(v.clone());
        }
        for &id in &kern.nodes {
            let n = g.node(id);
            let mut args = Vec::new();
            for a in &n.args {
                match map.get(a) {
                    Some(x) => args.push(*x),
                    None => {
                        return Err(InterpError {
                            message: "a kernel uses a value it neither computes nor reads".into(),
                            loc: n.loc,
                        });
                    }
                }
            }
            let new = sub.add(n.op.clone(), n.dtype, n.shape.clone(), args, n.loc);
            map.insert(id, new);
        }
        for &b in &kern.writes {
            sub.outputs.push((format!("b{b}"), map[&s.buffers[b].node]));
        }
        let res = interp::run(&sub, dims, &sub_args)?;
        for (&b, v) in kern.writes.iter().zip(res) {
            store.insert(b, v);
        }
    }
    collect_outputs(s, &store)
}

/// The graph's outputs from the buffers of an executed schedule (an output that is an unchanged
/// input is read from the input's buffer).
pub(crate) fn collect_outputs(s: &Schedule, store: &HashMap<usize, Array>) -> Result<Vec<Array>, InterpError> {
    let mut outs = Vec::new();
    for (k, (_, id)) in s.graph.outputs.iter().enumerate() {
        let b = s
            .buffers
            .iter()
            .position(|b| b.kind == BufferKind::Output(k) || (b.node == *id && matches!(b.kind, BufferKind::Input(_))));
        match b.and_then(|b| store.get(&b)) {
            Some(v) => outs.push(v.clone()),
            None => return Err(InterpError { message: format!("output {k} was never written"), loc: Loc::default() }),
        }
    }
    Ok(outs)
}
