//! The kernel IR: one device kernel as loop-level code over registers. Ranges have a kind
//! (parallel-global, sequential, reduce, unrolled, vectorised); loads and stores use symbolic
//! index expressions over range variables and sizes; reductions use accumulators whose
//! arithmetic is the interpreter's [`Acc`](crate::graph::interp::Acc); the language's sequential loops
//! are structured loops with carried registers and an optional exit.
//!
//! How a device kernel maps to ranges is decided by [`Knobs`], which are data: they print and
//! parse as text, have a validity predicate, and can be forced from the command line.

use crate::dims::Dim;
use crate::dtype::DType;
use crate::graph::*;

mod interp;
pub mod legalize;
mod lower;
mod simplify;
mod text;
pub mod upcast;

pub use interp::{run_kernels, run_schedule};
pub use lower::{LIMITS, atomic_dtype, lower, lower_atomic};
pub use text::{parse, print};

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
    /// `buf[index] += value` as one atomic read-modify-write (only where `pred` holds): threads
    /// that add to the same element do so in an unspecified order. `value` has the buffer's dtype
    /// (i32, u32, i64, f32 or f64); a float addition rounds like `Binary(Add)`. Only GPU kernels
    /// use it (see `lower_atomic`).
    AtomicAdd {
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
    /// Adds `value` to the accumulator (only where `pred` holds). A contraction's accumulator
    /// (`ReduceOp::Dot`) takes the product `value * by` with one rounding: `acc = fma(value, by,
    /// acc)`; `by` is `None` for every other accumulator.
    AccPush {
        acc: usize,
        value: usize,
        by: Option<usize>,
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
    /// computes `upcast x upcast` outputs per iteration (1 = one; see `crate::kernel::upcast`). Other
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

/// Knobs given by name (`--opts parallel=2,upcast=4`): each replaces that knob of a kernel's
/// defaults, and the knobs not named keep the target's choice for that kernel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KnobOverrides {
    pub parallel: Option<usize>,
    pub unroll: Option<u32>,
    pub vector: Option<u32>,
    pub group: Option<u32>,
    pub upcast: Option<u32>,
}

impl KnobOverrides {
    /// `base` with the named knobs replaced.
    pub fn apply(&self, base: Knobs) -> Knobs {
        Knobs {
            parallel: self.parallel.unwrap_or(base.parallel),
            unroll: self.unroll.unwrap_or(base.unroll),
            vector: self.vector.unwrap_or(base.vector),
            group: self.group.unwrap_or(base.group),
            upcast: self.upcast.unwrap_or(base.upcast),
        }
    }
}

impl From<&Knobs> for KnobOverrides {
    /// Every knob named: the kernel's defaults play no part.
    fn from(k: &Knobs) -> KnobOverrides {
        KnobOverrides {
            parallel: Some(k.parallel),
            unroll: Some(k.unroll),
            vector: Some(k.vector),
            group: Some(k.group),
            upcast: Some(k.upcast),
        }
    }
}

impl std::fmt::Display for KnobOverrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = [
            ("parallel", self.parallel.map(|v| v as u32)),
            ("unroll", self.unroll),
            ("vector", self.vector),
            ("group", self.group),
            ("upcast", self.upcast),
        ]
        .iter()
        .filter_map(|(n, v)| v.map(|v| format!("{n}={v}")))
        .collect();
        write!(f, "{}", parts.join(","))
    }
}

impl std::str::FromStr for KnobOverrides {
    type Err = String;
    /// `parallel=2,upcast=4`: the named knobs (the same keys and errors as [`Knobs`]).
    fn from_str(s: &str) -> Result<KnobOverrides, String> {
        let mut o = KnobOverrides::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let one: Knobs = part.parse()?;
            match part.split_once('=').map(|(k, _)| k.trim()) {
                Some("parallel") => o.parallel = Some(one.parallel),
                Some("unroll") => o.unroll = Some(one.unroll),
                Some("vector") => o.vector = Some(one.vector),
                Some("group") => o.group = Some(one.group),
                Some("upcast") => o.upcast = Some(one.upcast),
                _ => {}
            }
        }
        Ok(o)
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

/// The dtype every register (and accumulator: they share the numbering) of `body` holds, by
/// register number.
pub fn reg_dtypes(body: &[Inst], t: &mut Vec<Option<DType>>) {
    let set = |t: &mut Vec<Option<DType>>, r: usize, d: DType| {
        if t.len() <= r {
            t.resize(r + 1, None);
        }
        t[r] = Some(d);
    };
    for i in body {
        match i {
            Inst::Range { body, .. } => reg_dtypes(body, t),
            Inst::Const { dst, dtype, .. }
            | Inst::Load { dst, dtype, .. }
            | Inst::Alu { dst, dtype, .. }
            | Inst::LocalLoad { dst, dtype, .. } => set(t, *dst, *dtype),
            Inst::Index { dst, .. } => set(t, *dst, DType::I64),
            Inst::AccNew { acc, dtype, .. } => set(t, *acc, *dtype),
            Inst::AccGet { dst, acc } => {
                let d = t.get(*acc).copied().flatten().unwrap_or(DType::I64);
                set(t, *dst, d)
            }
            Inst::Copy { dst, src } => {
                let d = t.get(*src).copied().flatten().unwrap_or(DType::I64);
                set(t, *dst, d)
            }
            Inst::Loop { iter, body, .. } => {
                set(t, *iter, DType::I64);
                reg_dtypes(body, t)
            }
            Inst::Mma { d, dtype, .. } => {
                for r in d {
                    set(t, *r, *dtype)
                }
            }
            _ => {}
        }
    }
}
