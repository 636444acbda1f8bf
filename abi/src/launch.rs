//! What a runtime needs to launch a device kernel, derived from its kernel IR alone: the size
//! symbols it reads, its checks, how it maps onto CPU threads or a GPU grid, and the GPU targets.
//! The code generators emit code that follows these facts, and a runtime that loads precompiled
//! code (a bundle) computes them again without any code generator.

use tk_ir::dims::Dim;
use tk_ir::graph::{IExpr, Loc};
use tk_ir::kernel::{Inst, Kernel, RangeKind};

/// A check of the kernel, numbered in program order.
#[derive(Clone, Debug)]
pub struct CheckInfo {
    pub lo: Dim,
    pub hi: Dim,
    pub loc: Loc,
}

/// What the runtime needs to know about a translated kernel.
#[derive(Clone, Debug)]
pub struct KernelInfo {
    /// Symbols passed in the `dims` array, in order.
    pub symbols: Vec<String>,
    pub checks: Vec<CheckInfo>,
    /// The extent of the outermost parallel range, when the kernel can be split over threads.
    pub parallel: Option<Dim>,
}

/// The dimensions a kernel body mentions (range extents, loop bounds, index expressions,
/// check bounds, local sizes).
pub fn collect_dims(body: &[Inst], out: &mut Vec<Dim>) {
    fn ix(e: &IExpr, out: &mut Vec<Dim>) {
        match e {
            IExpr::Dim(d) => out.push(d.clone()),
            IExpr::Add(a, b) | IExpr::Mul(a, b) | IExpr::Div(a, b) | IExpr::Mod(a, b) => {
                ix(a, out);
                ix(b, out);
            }
            _ => {}
        }
    }
    for i in body {
        match i {
            Inst::Range { extent, body, .. } => {
                out.push(extent.clone());
                collect_dims(body, out);
            }
            Inst::Loop { lo, trip, body, .. } => {
                out.push(lo.clone());
                out.push(trip.clone());
                collect_dims(body, out);
            }
            Inst::Index { expr, .. } => ix(expr, out),
            Inst::Load { index, .. }
            | Inst::Store { index, .. }
            | Inst::AtomicAdd { index, .. }
            | Inst::LocalLoad { index, .. }
            | Inst::LocalStore { index, .. } => ix(index, out),
            Inst::Check { lo, hi, .. } => {
                out.push(lo.clone());
                out.push(hi.clone());
            }
            Inst::LocalAlloc { size, .. } => out.push(size.clone()),
            _ => {}
        }
    }
}

/// The symbols a kernel's code reads, sorted.
pub fn symbols(k: &Kernel) -> Vec<String> {
    let mut s: Vec<String> = all_dims(k).iter().flat_map(|d| d.symbols()).collect();
    s.sort();
    s.dedup();
    s
}

/// Every dimension the kernel's body and its buffers' shapes mention, in order, repeats included.
fn all_dims(k: &Kernel) -> Vec<Dim> {
    let mut dims = Vec::new();
    collect_dims(&k.body, &mut dims);
    for b in &k.bufs {
        dims.extend(b.shape.iter().cloned());
    }
    dims
}

/// The symbolic (non-constant) dimensions the kernel's body and its buffers' shapes mention, each
/// once, in the order they first appear: what a code generator evaluates once at a kernel's entry.
pub fn symbolic_dims(k: &Kernel) -> Vec<Dim> {
    let mut seen = std::collections::HashSet::new();
    all_dims(k).into_iter().filter(|d| d.as_const().is_none() && seen.insert(d.clone())).collect()
}

/// The outermost range, when the kernel body is one parallel range (the runtime splits it).
pub fn parallel_range(k: &Kernel) -> Option<Dim> {
    match k.body.as_slice() {
        [Inst::Range { kind: RangeKind::Global, extent, .. }] => Some(extent.clone()),
        _ => None,
    }
}

/// The checks of a kernel body, in program order.
pub fn collect_checks<'k>(body: &'k [Inst], out: &mut Vec<&'k Inst>) {
    for i in body {
        match i {
            Inst::Check { .. } => out.push(i),
            Inst::Range { body, .. } | Inst::Loop { body, .. } => collect_checks(body, out),
            _ => {}
        }
    }
}

/// What the runtime needs to launch a kernel, derived from its kernel IR alone (so a kernel
/// loaded from the cache needs no translation).
pub fn kernel_info(k: &Kernel) -> KernelInfo {
    let mut order = Vec::new();
    collect_checks(&k.body, &mut order);
    let checks = order
        .into_iter()
        .filter_map(|c| match c {
            Inst::Check { lo, hi, loc, .. } => Some(CheckInfo { lo: lo.clone(), hi: hi.clone(), loc: *loc }),
            _ => None,
        })
        .collect();
    KernelInfo { symbols: symbols(k), checks, parallel: parallel_range(k) }
}

/// Work-items per block (NVIDIA) or workgroup (AMD) of an elementwise kernel.
pub const THREADS: u32 = 256;

/// How a device kernel is launched on a GPU.
#[derive(Clone, Debug, PartialEq)]
pub enum Launch {
    /// One thread in one block.
    Single,
    /// One element of `extent` per thread, `threads` per block, in a grid-stride loop (so any
    /// grid size is correct; the launcher picks `ceil(extent / threads)`, capped).
    Elements { extent: Dim, threads: u32 },
    /// One block of `threads` threads per index of `extent`, in a grid-stride loop over blocks.
    Blocks { extent: Option<Dim>, threads: u32 },
}

/// What a GPU launcher needs to know about one device kernel.
#[derive(Clone, Debug)]
pub struct GpuKernel {
    /// The kernel's name in its module.
    pub name: String,
    /// Dimension symbols passed as i64 parameters after the buffers, in order.
    pub symbols: Vec<String>,
    pub checks: Vec<CheckInfo>,
    pub launch: Launch,
    /// Bytes of shared memory (LDS) the kernel declares.
    pub shared_bytes: u64,
}

/// Whether a kernel body has local (workgroup) ranges.
pub fn has_local(body: &[Inst]) -> bool {
    body.iter().any(|i| match i {
        Inst::Range { kind: RangeKind::Local, .. } => true,
        Inst::Range { body, .. } | Inst::Loop { body, .. } => has_local(body),
        _ => false,
    })
}

/// The largest extent of a local range: the block size (local extents are constants).
pub fn local_threads(body: &[Inst]) -> Result<u32, String> {
    let mut m = 1u32;
    for i in body {
        match i {
            Inst::Range { kind: RangeKind::Local, extent, .. } => {
                let Some(c) = extent.as_const() else {
                    return Err(format!("a local range of symbolic extent `{extent}`"));
                };
                if !(1..=1024).contains(&c) {
                    return Err(format!("a local range of {c} threads (at most 1024)"));
                }
                m = m.max(c as u32);
            }
            Inst::Range { body, .. } | Inst::Loop { body, .. } => m = m.max(local_threads(body)?),
            _ => {}
        }
    }
    Ok(m)
}

/// The chain of nested parallel ranges at the top of a kernel body (flattened into one grid
/// index): (var, extent) from the outermost, and the innermost body.
pub type Chain<'k> = (Vec<(usize, Dim)>, &'k [Inst]);

pub fn parallel_chain(body: &[Inst]) -> Option<Chain<'_>> {
    let [Inst::Range { var, extent, kind: RangeKind::Global, body: inner }] = body else { return None };
    let mut chain = vec![(*var, extent.clone())];
    let mut b: &[Inst] = inner;
    while let [Inst::Range { var, extent, kind: RangeKind::Global, body: inner }] = b {
        chain.push((*var, extent.clone()));
        b = inner;
    }
    Some((chain, b))
}

/// How a kernel maps onto a GPU grid: blocks when it has local ranges, a grid-stride loop over
/// its parallel ranges, or a single thread.
pub fn gpu_launch(k: &Kernel) -> Result<Launch, String> {
    if has_local(&k.body) {
        let threads = local_threads(&k.body)?;
        return Ok(match &k.body[..] {
            [Inst::Range { extent, kind: RangeKind::Global, .. }] => {
                Launch::Blocks { extent: Some(extent.clone()), threads }
            }
            _ => Launch::Blocks { extent: None, threads },
        });
    }
    Ok(match parallel_chain(&k.body) {
        Some((chain, _)) => {
            let extent = chain.iter().fold(Dim::constant(1), |acc, (_, x)| acc.mul(x));
            Launch::Elements { extent, threads: THREADS }
        }
        None => Launch::Single,
    })
}

/// Bytes of shared memory a kernel's local allocations take (registers of 4 or 8 bytes).
pub fn shared_bytes(body: &[Inst]) -> Result<u64, String> {
    fn walk(body: &[Inst], seen: &mut Vec<usize>, total: &mut u64) -> Result<(), String> {
        for i in body {
            match i {
                Inst::LocalAlloc { buf, dtype, size } => {
                    let Some(n) = size.as_const() else {
                        return Err(format!("local memory of symbolic size `{size}`"));
                    };
                    if !seen.contains(buf) {
                        seen.push(*buf);
                        let bytes =
                            if matches!(dtype, tk_ir::dtype::DType::F64 | tk_ir::dtype::DType::I64) { 8 } else { 4 };
                        *total += (n.max(1) as u64) * bytes;
                    }
                }
                Inst::Range { body, .. } | Inst::Loop { body, .. } => walk(body, seen, total)?,
                _ => {}
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(body, &mut Vec::new(), &mut total)?;
    Ok(total)
}

/// Everything a GPU launcher needs for kernel `k`, named `name` in its module.
pub fn gpu_kernel(k: &Kernel, name: &str) -> Result<GpuKernel, String> {
    Ok(GpuKernel {
        name: name.to_string(),
        symbols: symbols(k),
        checks: kernel_info(k).checks,
        launch: gpu_launch(k)?,
        shared_bytes: shared_bytes(&k.body)?,
    })
}

/// An NVIDIA compile target: `sm_80`, `sm_86`, `sm_89`, `sm_90` or `sm_120`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NvidiaTarget {
    pub sm: u32,
}

impl NvidiaTarget {
    /// The targets tk supports, oldest first.
    pub const ALL: [NvidiaTarget; 5] = [
        NvidiaTarget { sm: 80 },
        NvidiaTarget { sm: 86 },
        NvidiaTarget { sm: 89 },
        NvidiaTarget { sm: 90 },
        NvidiaTarget { sm: 120 },
    ];

    /// The lowest PTX ISA version that supports the target.
    pub fn ptx_version(self) -> &'static str {
        match self.sm {
            80 => "7.0",
            86 => "7.1",
            89 | 90 => "7.8",
            _ => "8.7",
        }
    }
    pub fn name(self) -> String {
        format!("sm_{}", self.sm)
    }
}

impl std::fmt::Display for NvidiaTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sm_{}", self.sm)
    }
}

impl std::str::FromStr for NvidiaTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<NvidiaTarget, String> {
        let known = || NvidiaTarget::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ");
        let n = s
            .strip_prefix("sm_")
            .and_then(|n| n.parse::<u32>().ok())
            .ok_or_else(|| format!("`{s}` is not an NVIDIA target; the targets are {}", known()))?;
        NvidiaTarget::ALL
            .iter()
            .copied()
            .find(|t| t.sm == n)
            .ok_or_else(|| format!("tk does not support `{s}`; the NVIDIA targets are {}", known()))
    }
}

/// An AMD compile target: an RDNA3 (gfx11) processor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AmdTarget {
    pub name: &'static str,
}

impl AmdTarget {
    /// The targets tk supports. (`gfx11-generic`, which runs on every gfx11 GPU, needs code
    /// object v6; tk's kernel ABI is code object v5.)
    pub const ALL: [AmdTarget; 3] =
        [AmdTarget { name: "gfx1100" }, AmdTarget { name: "gfx1101" }, AmdTarget { name: "gfx1102" }];
}

impl std::fmt::Display for AmdTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl std::str::FromStr for AmdTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<AmdTarget, String> {
        AmdTarget::ALL.iter().copied().find(|t| t.name == s).ok_or_else(|| {
            let known: Vec<&str> = AmdTarget::ALL.iter().map(|t| t.name).collect();
            if s == "gfx11-generic" {
                format!(
                    "`gfx11-generic` needs code object v6, and tk's kernel ABI is code object v5: build for {} instead",
                    known.join(", ")
                )
            } else if s.starts_with("gfx") {
                format!("tk does not support `{s}`; the AMD targets are {} (RDNA3)", known.join(", "))
            } else {
                format!("`{s}` is not an AMD target; the targets are {}", known.join(", "))
            }
        })
    }
}

/// The launch information of the kernels of a PTX module made from `kernels`: kernel `i` is the
/// entry `k{i}`. An error names the kernel's source.
pub fn module_kernels(kernels: &[Kernel]) -> Result<Vec<GpuKernel>, (String, Loc)> {
    kernels.iter().enumerate().map(|(i, k)| gpu_kernel(k, &format!("k{i}")).map_err(|m| (m, k.loc))).collect()
}
