//! The runtime: executes an entry's schedule on a device (the toolchain compiles it; a bundle's
//! loader lowers it again and loads the stored code).
//!
//! Executing a schedule: bind the dimension symbols from the argument shapes and the explicit
//! dimension arguments, check every argument against the signature, allocate outputs and one
//! buffer per temporary slot of the memory plan (on the CPU, reuse the last launch's), and
//! enqueue the device kernels in order.
//!
//! Specialisation policy: an entry is compiled once, generically: its kernels read every
//! symbolic size at run time, so calling it on new shapes never compiles again. (Specialising
//! hot shapes into constant-size code is future work; when it lands, an entry will keep at most
//! a few specialised variants, chosen after repeated calls with the same shapes.)

use crate::array::{HostArray, elem_bytes};
use crate::device::{Buffer, Device, Executable, Queue};
use crate::error::RunError;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tk_ir::dims::Dim;
use tk_ir::dtype::DType;
use tk_ir::graph::{Graph, Loc, Op, ReduceOp};
use tk_ir::kernel::Kernel;
use tk_ir::schedule::{BufferKind, Schedule};

/// An array resident on a device.
#[derive(Clone)]
pub struct DeviceArray {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub buffer: Buffer,
}

impl DeviceArray {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies a host array to the device.
    pub fn upload(dev: &dyn Device, q: &Queue, a: &HostArray) -> Result<DeviceArray, RunError> {
        let buffer = dev.alloc(a.data.len())?;
        dev.write(q, &buffer, &a.data)?;
        Ok(DeviceArray { dtype: a.dtype, shape: a.shape.clone(), buffer })
    }
    /// Copies the array back to the host.
    pub fn download(&self, dev: &dyn Device, q: &Queue) -> Result<HostArray, RunError> {
        let mut h = HostArray::zeros(self.dtype, self.shape.clone());
        dev.read(q, &self.buffer, &mut h.data)?;
        Ok(h)
    }
}

/// Time spent in each compile stage after the front end.
#[derive(Clone, Debug, Default)]
pub struct CompileTimes {
    pub schedule: Duration,
    pub lower: Duration,
    pub codegen: Duration,
}

/// An entry compiled for one device.
pub struct Compiled {
    pub name: String,
    pub schedule: Schedule,
    pub kernels: Vec<Kernel>,
    exe: Arc<dyn Executable>,
    pub times: CompileTimes,
    /// The temporaries of the last launch, on a device whose launches finish before they return
    /// (the CPU): the next launch takes those of the sizes it needs instead of allocating (and
    /// the kernel faulting in fresh pages). A launch takes the whole pool, so launches running
    /// at once never share one.
    temps: std::sync::Mutex<Vec<Buffer>>,
}

pub use tk_abi::target::Options;

impl Compiled {
    /// An entry whose kernels were lowered (by the toolchain, or again by a bundle's loader)
    /// and whose device code is loaded onto `dev` now.
    pub fn load(
        dev: &dyn Device,
        name: &str,
        lowered: tk_abi::target::Lowered,
        code: crate::device::Code<'_>,
    ) -> Result<Compiled, RunError> {
        let tk_abi::target::Lowered { schedule, kernels, times: (ts, tl) } = lowered;
        let t2 = Instant::now();
        let exe = dev.load(&kernels, code)?;
        let times = CompileTimes { schedule: ts, lower: tl, codegen: t2.elapsed() };
        Ok(Compiled { name: name.to_string(), schedule, kernels, exe, times, temps: Default::default() })
    }

    /// How many temporaries the entry keeps for its next launch (see [`Compiled::launch`]).
    pub fn kept_temporaries(&self) -> usize {
        self.temps.lock().map(|p| p.len()).unwrap_or(0)
    }

    /// The loaded device code (a `devices::cpu::CpuExecutable` on the CPU, which says which
    /// tier each kernel runs).
    pub fn executable(&self) -> &Arc<dyn Executable> {
        &self.exe
    }

    /// [`Compiled::load`] for code that is already loaded (an executable a cache kept).
    pub fn from_executable(
        name: &str,
        lowered: tk_abi::target::Lowered,
        exe: Arc<dyn Executable>,
        codegen: Duration,
    ) -> Compiled {
        let tk_abi::target::Lowered { schedule, kernels, times: (ts, tl) } = lowered;
        Compiled {
            name: name.to_string(),
            schedule,
            kernels,
            exe,
            times: CompileTimes { schedule: ts, lower: tl, codegen },
            temps: Default::default(),
        }
    }
}

fn fmt_ty(d: DType, shape: &[impl std::fmt::Display]) -> String {
    let s: Vec<String> = shape.iter().map(|x| x.to_string()).collect();
    format!("{d}[{}]", s.join(", "))
}

fn check_graph_dims(g: &Graph, env: &HashMap<String, i64>) -> Result<(), RunError> {
    for id in g.topo() {
        let n = g.node(id);
        for d in &n.shape {
            if let Some(v) = d.eval(&|s| env.get(s).copied())
                && v < 0
            {
                return Err(RunError::Dimension {
                    message: format!("dimension `{d}` is negative ({v}) for these arguments"),
                    loc: n.loc,
                });
            }
        }
        if let Op::Reduce { op: ReduceOp::ArgMax | ReduceOp::ArgMin, axes } = &n.op {
            let size = |d: &Dim| d.eval(&|s| env.get(s).copied()).unwrap_or(0);
            let src = &g.node(n.args[0]).shape;
            let empty = axes.iter().any(|&k| src.get(k).is_some_and(|d| size(d) == 0));
            if empty && n.shape.iter().all(|d| size(d) > 0) {
                return Err(RunError::Dimension { message: "argmax/argmin over an empty axis".into(), loc: n.loc });
            }
        }
        if let Op::Loop { body, .. } = &n.op {
            check_graph_dims(body, env)?;
        }
    }
    Ok(())
}

impl Compiled {
    /// The graph's inputs: name, dtype, symbolic shape.
    pub fn inputs(&self) -> &[(String, DType, Vec<Dim>)] {
        &self.schedule.graph.inputs
    }
    /// Output names, dtypes and symbolic shapes.
    pub fn outputs(&self) -> Vec<(String, DType, Vec<Dim>)> {
        let g = &self.schedule.graph;
        g.outputs.iter().map(|(n, id)| (n.clone(), g.node(*id).dtype, g.node(*id).shape.clone())).collect()
    }

    /// Binds every dimension symbol from argument shapes and explicit values, checking each
    /// argument against the signature.
    pub fn bind(
        &self,
        args: &[(DType, Vec<usize>)],
        explicit: &HashMap<String, i64>,
    ) -> Result<HashMap<String, i64>, RunError> {
        let g = &self.schedule.graph;
        let arg = |m: String| RunError::Argument { message: m };
        if args.len() != g.inputs.len() {
            let names: Vec<&str> = g.inputs.iter().map(|i| i.0.as_str()).collect();
            return Err(arg(format!(
                "`{}` takes {} argument{} ({}), got {}",
                self.name,
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                args.len()
            )));
        }
        for s in explicit.keys() {
            if !g.dims.contains(s) {
                let known = if g.dims.is_empty() {
                    "it has none".to_string()
                } else {
                    format!("they are: {}", g.dims.join(", "))
                };
                return Err(arg(format!("`{}` has no dimension parameter `{s}`; {known}", self.name)));
            }
        }
        let mut env: HashMap<String, i64> = explicit.clone();
        // Plain symbols first, then every compound dimension is checked.
        for ((name, dtype, shape), (ad, ashape)) in g.inputs.iter().zip(args) {
            let expected = fmt_ty(*dtype, shape);
            if ad != dtype {
                return Err(arg(format!("argument `{name}`: expected {expected}, got {}", fmt_ty(*ad, ashape))));
            }
            if ashape.len() != shape.len() {
                return Err(arg(format!(
                    "argument `{name}`: expected {expected} (rank {}), got {} (rank {})",
                    shape.len(),
                    fmt_ty(*ad, ashape),
                    ashape.len()
                )));
            }
            for (d, &n) in shape.iter().zip(ashape) {
                if let [s] = d.symbols().as_slice()
                    && *d == Dim::sym(s)
                {
                    match env.get(s) {
                        Some(&v) if v != n as i64 => {
                            return Err(arg(format!(
                                "argument `{name}`: dimension `{s}` is {n} here but {v} {}",
                                if explicit.contains_key(s) { "as given" } else { "in an earlier argument" }
                            )));
                        }
                        _ => {
                            env.insert(s.clone(), n as i64);
                        }
                    }
                }
            }
        }
        for ((name, dtype, shape), (_, ashape)) in g.inputs.iter().zip(args) {
            for (d, &n) in shape.iter().zip(ashape) {
                match d.eval(&|s| env.get(s).copied()) {
                    Some(v) if v == n as i64 => {}
                    Some(v) => {
                        return Err(arg(format!(
                            "argument `{name}`: expected {}, got {}: dimension `{d}` must be {v}, not {n}",
                            fmt_ty(*dtype, shape),
                            fmt_ty(*dtype, ashape)
                        )));
                    }
                    None => {
                        let free: Vec<String> =
                            d.symbols().into_iter().filter(|s| !env.contains_key(s.as_str())).collect();
                        return Err(arg(format!(
                            "argument `{name}`: dimension `{d}` cannot be bound from the arguments: give {} a \
                             value (`--dim {}=N` on the command line, or a dimension argument in the embedding API), \
                             or pass an argument whose shape has it alone",
                            free.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" and "),
                            free.first().map(String::as_str).unwrap_or("NAME")
                        )));
                    }
                }
            }
        }
        for s in &g.dims {
            if !env.contains_key(s) {
                return Err(arg(format!("`{}` needs a value for its dimension parameter `{s}`", self.name)));
            }
        }
        check_graph_dims(g, &env)?;
        Ok(env)
    }

    /// Runs the entry on host arrays: uploads them, runs, downloads the outputs.
    pub fn run(
        &self,
        dev: &dyn Device,
        args: &[HostArray],
        explicit: &HashMap<String, i64>,
    ) -> Result<Vec<HostArray>, RunError> {
        let refs: Vec<&HostArray> = args.iter().collect();
        self.run_refs(dev, &refs, explicit)
    }

    /// [`Compiled::run`] on borrowed host arrays.
    pub fn run_refs(
        &self,
        dev: &dyn Device,
        args: &[&HostArray],
        explicit: &HashMap<String, i64>,
    ) -> Result<Vec<HostArray>, RunError> {
        let q = dev.queue();
        let shapes: Vec<(DType, Vec<usize>)> = args.iter().map(|a| (a.dtype, a.shape.clone())).collect();
        let dims = self.bind(&shapes, explicit)?;
        let dargs: Vec<DeviceArray> = args.iter().map(|a| DeviceArray::upload(dev, &q, a)).collect::<Result<_, _>>()?;
        let outs = self.launch(dev, &q, &dargs, &dims)?;
        let r = outs.iter().map(|o| o.download(dev, &q)).collect();
        dev.synchronize(&q)?;
        r
    }

    /// Runs the entry on device-resident arrays; the outputs stay on the device.
    pub fn run_resident(
        &self,
        dev: &dyn Device,
        q: &Queue,
        args: &[DeviceArray],
        explicit: &HashMap<String, i64>,
    ) -> Result<Vec<DeviceArray>, RunError> {
        let shapes: Vec<(DType, Vec<usize>)> = args.iter().map(|a| (a.dtype, a.shape.clone())).collect();
        let dims = self.bind(&shapes, explicit)?;
        self.launch(dev, q, args, &dims)
    }

    /// Allocates outputs and temporaries and enqueues every device kernel. On a device whose
    /// launches finish before they return (the CPU) the entry keeps the last launch's
    /// temporaries, and a launch takes those of the sizes it needs instead of allocating.
    pub fn launch(
        &self,
        dev: &dyn Device,
        q: &Queue,
        args: &[DeviceArray],
        dims: &HashMap<String, i64>,
    ) -> Result<Vec<DeviceArray>, RunError> {
        self.launch_impl(dev, q, args, dims, None)
    }

    /// Enqueues every device kernel writing into existing output arrays (of the shapes and
    /// dtypes [`Compiled::output_shapes`] gives), so repeated calls allocate nothing but
    /// temporaries.
    pub fn launch_into(
        &self,
        dev: &dyn Device,
        q: &Queue,
        args: &[DeviceArray],
        dims: &HashMap<String, i64>,
        outs: &[DeviceArray],
    ) -> Result<(), RunError> {
        let want = self.output_shapes(dims);
        if outs.len() != want.len() {
            return Err(RunError::Argument {
                message: format!("expected {} output arrays, got {}", want.len(), outs.len()),
            });
        }
        for ((d, shape), o) in want.iter().zip(outs) {
            if o.dtype != *d || &o.shape != shape {
                return Err(RunError::Argument {
                    message: format!("output array: expected {}, got {}", fmt_ty(*d, shape), fmt_ty(o.dtype, &o.shape)),
                });
            }
        }
        let results = self.launch_impl(dev, q, args, dims, Some(outs))?;
        // An output that is an unchanged input was copied into a new array: copy it over.
        for (r, o) in results.iter().zip(outs) {
            if !std::sync::Arc::ptr_eq(&r.buffer.mem, &o.buffer.mem) {
                dev.copy(q, &r.buffer, &o.buffer)?;
            }
        }
        Ok(())
    }

    /// The dtype and shape of every output for bound dimensions.
    pub fn output_shapes(&self, dims: &HashMap<String, i64>) -> Vec<(DType, Vec<usize>)> {
        self.outputs()
            .into_iter()
            .map(|(_, d, shape)| {
                (d, shape.iter().map(|x| x.eval(&|s| dims.get(s).copied()).unwrap_or(0).max(0) as usize).collect())
            })
            .collect()
    }

    fn launch_impl(
        &self,
        dev: &dyn Device,
        q: &Queue,
        args: &[DeviceArray],
        dims: &HashMap<String, i64>,
        given: Option<&[DeviceArray]>,
    ) -> Result<Vec<DeviceArray>, RunError> {
        let s = &self.schedule;
        let size = |shape: &[Dim]| -> Vec<usize> {
            shape.iter().map(|d| d.eval(&|x| dims.get(x).copied()).unwrap_or(0).max(0) as usize).collect()
        };
        // The bytes of a buffer of this shape, checked: sizes come from the caller's dimensions.
        let bytes = |b: &BufferOf<'_>| -> Result<usize, RunError> {
            let shape = size(b.0);
            shape.iter().try_fold(elem_bytes(b.1), |a, d| a.checked_mul(*d)).ok_or_else(|| RunError::Argument {
                message: format!(
                    "a buffer of {}[{}] has more bytes than this machine can address (check the dimensions given)",
                    b.1,
                    shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")
                ),
            })
        };
        // Temporary slots: one buffer each, as large as the largest temporary placed there.
        let mut slot_bytes: HashMap<usize, usize> = HashMap::new();
        for b in &s.buffers {
            if let BufferKind::Temp { slot } = b.kind {
                let n = bytes(&(&b.shape, b.dtype))?;
                let e = slot_bytes.entry(slot).or_insert(0);
                *e = (*e).max(n);
            }
        }
        // Temporaries need no zeroing: slots are shared by temporaries in turn, so no kernel
        // reads a temporary it has not written.
        let keep = dev.launches_finish_on_return();
        let mut pool =
            if keep { self.temps.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default() } else { Vec::new() };
        let mut slots: HashMap<usize, Buffer> = HashMap::new();
        for (slot, n) in slot_bytes {
            let buf = match pool.iter().position(|b| b.bytes() == n) {
                Some(i) => pool.swap_remove(i),
                None => dev.alloc(n)?,
            };
            // Debug builds (every test) fill host-memory temporaries with a pattern first, so a
            // kernel that read one before writing it would compute wrong values in the tests
            // rather than the zeros of a fresh allocation.
            #[cfg(debug_assertions)]
            if let Some(p) = dev.host_ptr(&buf) {
                // SAFETY: the buffer's memory has `bytes()` bytes, and nothing else uses it now
                // (it was just allocated or taken out of the pool).
                unsafe { std::ptr::write_bytes(p.as_ptr(), 0xA5, buf.bytes()) };
            }
            slots.insert(slot, buf);
        }
        let mut bufs: Vec<Option<DeviceArray>> = Vec::with_capacity(s.buffers.len());
        for b in &s.buffers {
            let shape = size(&b.shape);
            let arr = match b.kind {
                BufferKind::Input(k) => args.get(k).cloned(),
                BufferKind::Output(k) if given.is_some_and(|g| k < g.len()) => given.map(|g| g[k].clone()),
                BufferKind::Output(_) => {
                    let n = bytes(&(&b.shape, b.dtype))?;
                    Some(DeviceArray { dtype: b.dtype, shape, buffer: dev.alloc(n)? })
                }
                BufferKind::Temp { slot } => {
                    slots.get(&slot).map(|buf| DeviceArray { dtype: b.dtype, shape, buffer: buf.clone() })
                }
            };
            bufs.push(arr);
        }
        for (i, kern) in self.kernels.iter().enumerate() {
            // A stop asked for between kernels ends the run here (the inputs are untouched).
            if tk_abi::interrupt::requested() {
                return Err(RunError::Interrupted);
            }
            tk_abi::progress::step(i, self.kernels.len());
            let mut kb = Vec::with_capacity(kern.bufs.len());
            for b in &kern.bufs {
                match bufs.get(b.id).cloned().flatten() {
                    Some(a) => kb.push(a.buffer),
                    None => {
                        return Err(RunError::Device {
                            device: dev.name(),
                            message: format!("buffer b{} missing", b.id),
                        });
                    }
                }
            }
            dev.launch(q, &self.exe, i, &kb, dims)?;
        }
        if keep && let Ok(mut p) = self.temps.lock() {
            *p = slots.values().cloned().collect();
        }
        // Outputs; an output that is an unchanged input is copied, so it never aliases.
        let mut outs = Vec::new();
        for (k, (_, id)) in s.graph.outputs.iter().enumerate() {
            let found = s
                .buffers
                .iter()
                .position(|b| b.kind == BufferKind::Output(k))
                .or_else(|| s.buffers.iter().position(|b| b.node == *id && matches!(b.kind, BufferKind::Input(_))));
            let Some(a) = found.and_then(|p| bufs[p].clone()) else {
                return Err(RunError::Compile { message: format!("output {k} is never written"), loc: Loc::default() });
            };
            if matches!(found.map(|p| &s.buffers[p].kind), Some(BufferKind::Input(_))) {
                let copy = dev.alloc(a.buffer.bytes())?;
                dev.copy(q, &a.buffer, &copy)?;
                outs.push(DeviceArray { dtype: a.dtype, shape: a.shape.clone(), buffer: copy });
            } else {
                outs.push(a);
            }
        }
        Ok(outs)
    }
}

/// A buffer's symbolic shape and dtype.
type BufferOf<'a> = (&'a [Dim], DType);
