//! Compile targets and the part of compilation they steer: which knobs a device kernel gets by
//! default and how long reductions are split. Every path that turns a prepared graph into
//! device kernels (`tk run`, `tk emit`, `tk build`, the REPL, and a bundle's loader, which
//! lowers the stored graph again and checks the digest of the kernels) goes through [`lower`].
//! It lives in tk-abi because the runtime's bundle loader and the toolchain must lower alike.

use crate::launch::{AmdTarget, NvidiaTarget};
use std::time::{Duration, Instant};
use tk_ir::dims::Dim;
use tk_ir::graph::{Graph, Loc, Op, ReduceOp};
use tk_ir::kernel::{Kernel, KnobOverrides, Knobs};
use tk_ir::schedule::Schedule;

/// A device kernel that cannot be lowered (the kernel IR's limits).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct LowerError {
    pub message: String,
    pub loc: Loc,
}

/// The threads of the CPU device's pool: `RAYON_NUM_THREADS` when set to a positive number, else
/// the machine's available parallelism (the rule rayon's global pool follows).
pub fn cpu_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

pub use tk_ir::graph::passes::Split;

/// A compile target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// The host CPU (Cranelift).
    Cpu,
    /// An NVIDIA GPU architecture (PTX, cubins through ptxas).
    Nvidia(NvidiaTarget),
    /// An AMD RDNA3 processor (LLVM IR, code objects through LLVM 19 and ld.lld).
    Amd(AmdTarget),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Cpu => f.write_str("cpu"),
            Target::Nvidia(t) => write!(f, "{t}"),
            Target::Amd(t) => write!(f, "{t}"),
        }
    }
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Target, String> {
        if s == "cpu" {
            return Ok(Target::Cpu);
        }
        if s.starts_with("sm_") {
            return s.parse().map(Target::Nvidia);
        }
        if s.starts_with("gfx") {
            return s.parse().map(Target::Amd);
        }
        let nv: Vec<String> = NvidiaTarget::ALL.iter().map(|t| t.name()).collect();
        let amd: Vec<&str> = AmdTarget::ALL.iter().map(|t| t.name).collect();
        Err(format!("unknown target `{s}`; the targets are cpu, {}, {}", nv.join(", "), amd.join(", ")))
    }
}

impl Target {
    /// The default knobs of a device kernel writing an output of shape `shape`.
    ///
    /// CPU: the outermost axis runs in parallel and the innermost is vectorised 16 wide (four
    /// 128-bit registers), or 8 or 4 wide when it is a small constant. GPU: every output axis is
    /// parallel (one element per thread), nothing is vectorised, and matrix-product-like kernels
    /// compute a 4 x 4 tile of outputs per thread.
    pub fn default_knobs(self, shape: &[Dim]) -> Knobs {
        match self {
            Target::Cpu => {
                let vector = match shape.last().map(|d| d.as_const()) {
                    None => 1,
                    Some(Some(c)) if c < 4 => 1,
                    Some(Some(c)) if c < 8 => 4,
                    Some(Some(c)) if c < 16 => 8,
                    Some(_) => 16,
                };
                Knobs { parallel: shape.len().min(1), vector, ..Knobs::default() }
            }
            // A 4 x 4 register tile where two parallel axes enclose a reduction (matrix products).
            Target::Nvidia(_) | Target::Amd(_) => Knobs { parallel: shape.len(), upcast: 4, ..Knobs::default() },
        }
    }

    /// The knobs of device kernel `k` of a schedule: [`Target::default_knobs`] of its output
    /// shape, except that on the CPU a contraction (a matrix product: `reduce dot`) whose rows
    /// have 32 elements or more vectorises 32 lanes, eight 4-lane accumulators per broadcast
    /// element of the left operand (measured on 1024^3 f32: 48 ms against 87 ms with 16 lanes;
    /// 64 lanes run out of registers on x86_64). Results are unchanged: each output element
    /// still accumulates in k order.
    pub fn kernel_knobs(self, s: &Schedule, k: usize) -> Knobs {
        // A row kernel's last outputs are its widest (see `tk_ir::schedule::fuse_rows`).
        let Some(&w) = s.kernels.get(k).and_then(|kern| kern.writes.last()) else { return Knobs::default() };
        let shape = &s.buffers[w].shape;
        let mut kn = self.default_knobs(shape);
        let contraction = matches!(s.graph.node(s.buffers[w].node).op, Op::Reduce { op: ReduceOp::Dot, .. });
        let wide = shape.last().is_some_and(|d| d.as_const().is_none_or(|c| c >= 32));
        if self == Target::Cpu && contraction && wide && kn.vector == 16 {
            kn.vector = 32;
        }
        kn
    }

    /// How long reductions are split (see `tk_ir::graph::passes::split_reductions`).
    pub fn split(self) -> Split {
        match self {
            // A contiguous chunk per thread of the pool, 16 SIMD lanes each.
            Target::Cpu => Split { chunks: cpu_threads().clamp(1, 16) as i64, lanes: 16, rows: 16 },
            // Enough partials to give every SM of a large GPU some work; neighbouring threads
            // read neighbouring elements.
            Target::Nvidia(_) | Target::Amd(_) => Split { chunks: 1, lanes: 1024, rows: 32 },
        }
    }
}

/// Compile options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Knobs for every device kernel, each replacing that knob of the target's defaults for the
    /// kernel (all of the defaults when `None`).
    pub knobs: Option<KnobOverrides>,
    /// Keep every reduction in the reference order, so results are bit-identical to the
    /// reference interpreter (no split reductions, no atomic scatters).
    pub deterministic: bool,
    /// How long reductions are split instead of the target's [`Target::split`]: bundles record
    /// the split they were built with, since the CPU's depends on the build machine's cores.
    pub split: Option<Split>,
}

/// A prepared graph scheduled and lowered for a target.
pub struct Lowered {
    pub schedule: Schedule,
    pub kernels: Vec<Kernel>,
    /// Time spent scheduling (with the reduction splitting) and lowering.
    pub times: (Duration, Duration),
}

/// The graph that is scheduled: long reductions split as the options (else the target) say, or
/// the prepared graph itself when reductions are deterministic.
pub fn split<'g>(g: &'g Graph, target: Target, opts: &Options) -> std::borrow::Cow<'g, Graph> {
    // The CPU vectorises a product's output rows: an operand read across them is packed first,
    // and an expensive operand it would recompute for every column (softmax(s) @ v) is computed
    // once into a buffer.
    let g = if target == Target::Cpu {
        let packed = tk_ir::graph::passes::pack_transposed(g);
        std::borrow::Cow::Owned(tk_ir::graph::passes::materialize_shared_operands(&packed))
    } else {
        std::borrow::Cow::Borrowed(g)
    };
    if opts.deterministic {
        return g;
    }
    let split = opts.split.unwrap_or_else(|| target.split());
    std::borrow::Cow::Owned(tk_ir::graph::passes::split_reductions(&g, &split))
}

/// The schedule of a prepared graph for a target: the CPU runs a row's reductions and the
/// elementwise work that reads them in one kernel (`tk_ir::schedule::fuse_rows`).
pub fn schedule(g: &Graph, target: Target, opts: &Options) -> Schedule {
    let s = tk_ir::schedule::schedule(&split(g, target, opts));
    if target == Target::Cpu { tk_ir::schedule::fuse_rows(&s) } else { s }
}

/// Schedules a prepared graph (see `tk_ir::graph::passes::prepare`) for a target and lowers every
/// device kernel.
pub fn lower(g: &Graph, target: Target, opts: &Options) -> Result<Lowered, LowerError> {
    let t0 = Instant::now();
    let schedule = schedule(g, target, opts);
    let t1 = Instant::now();
    let mut kernels = Vec::new();
    for i in 0..schedule.kernels.len() {
        let defaults = target.kernel_knobs(&schedule, i);
        let kn = match &opts.knobs {
            Some(o) => o.apply(defaults),
            None => defaults,
        };
        let err = |e: tk_ir::kernel::KernelError| LowerError { message: e.message, loc: e.loc };
        // GPUs add a scatter's rows with atomics, except where every sum must keep its order.
        if target != Target::Cpu && !opts.deterministic {
            kernels.extend(tk_ir::kernel::lower_atomic(&schedule, i, &kn).map_err(err)?);
        } else {
            kernels.push(tk_ir::kernel::lower(&schedule, i, &kn).map_err(err)?);
        }
    }
    // Device kernel `i` is the entry `k{i}` of the module (see `launch::module_kernels`); a
    // scatter's atomic form adds a kernel, so names follow positions, not schedule kernels.
    for (i, k) in kernels.iter_mut().enumerate() {
        k.name = format!("k{i}");
    }
    Ok(Lowered { schedule, kernels, times: (t1 - t0, t1.elapsed()) })
}
