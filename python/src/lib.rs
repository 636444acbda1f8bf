//! `tk._tk`: the native half of the Python package `tk`. The Python half (`tk/__init__.py`)
//! converts numpy arrays and Python numbers and shapes the API; this module compiles programs,
//! loads bundles, opens devices and calls entries.
//!
//! Host arrays come in as `(address, dtype, shape, owner)`: the address of C-contiguous elements
//! that `owner` (a numpy array) keeps alive. On the CPU device they are used in place (no copy);
//! elsewhere they are copied to the device. Outputs stay on their device as `Array`s; on the CPU
//! the Python half views them as numpy arrays without a copy.
//!
//! The GIL is released while programs compile and entries run. Nothing panics across the FFI
//! boundary: every error is a Python exception (pyo3 turns a panic into `PanicException` too).

use pyo3::exceptions::{PyIndexError, PyKeyboardInterrupt, PyOSError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex};
use tk_runtime::api::{Arg, Bundle, Device as RtDevice, Entry};
use tk_runtime::{DType, DeviceArray, HostArray, RunError};

pyo3::create_exception!(_tk, CompileError, pyo3::exceptions::PyException, "A `.tk` program has errors.");
pyo3::create_exception!(
    _tk,
    ArgumentError,
    pyo3::exceptions::PyValueError,
    "An argument does not match the entry's signature."
);
pyo3::create_exception!(_tk, DeviceError, pyo3::exceptions::PyRuntimeError, "A device failed to compile or run.");

/// A run-time error as the Python exception a user expects.
fn run_err(e: RunError) -> PyErr {
    let m = e.to_string();
    match e {
        RunError::Argument { .. } | RunError::Dimension { .. } => ArgumentError::new_err(m),
        RunError::OutOfRange { .. } => PyIndexError::new_err(m),
        RunError::File { .. } => PyOSError::new_err(m),
        RunError::Interrupted => PyKeyboardInterrupt::new_err(m),
        RunError::Compile { .. }
        | RunError::MissingTool { .. }
        | RunError::Tool { .. }
        | RunError::Fault { .. }
        | RunError::Device { .. } => DeviceError::new_err(m),
    }
}

fn compile_err(py: Python<'_>, e: tk::CompileError) -> PyErr {
    let err = CompileError::new_err(e.rendered.clone());
    let v = err.value(py);
    let set = || -> PyResult<()> {
        v.setattr("code", e.code.clone())?;
        v.setattr("file", e.file.clone())?;
        v.setattr("line", e.line)?;
        v.setattr("column", e.column)?;
        v.setattr("diagnostics", e.rendered.clone())?;
        Ok(())
    };
    match set() {
        Ok(()) => err,
        Err(other) => other,
    }
}

fn dtype(name: &str) -> PyResult<DType> {
    DType::ALL
        .into_iter()
        .find(|d| d.name() == name)
        .ok_or_else(|| ArgumentError::new_err(format!("unknown dtype `{name}`")))
}

/// Devices by name, opened once per process (a simulated GPU keeps its memory).
fn device(name: &str) -> PyResult<RtDevice> {
    static OPEN: Mutex<Vec<(String, RtDevice)>> = Mutex::new(Vec::new());
    let mut open = OPEN.lock().map_err(|_| DeviceError::new_err("the device table's lock was poisoned"))?;
    if let Some((_, d)) = open.iter().find(|(n, _)| n == name) {
        return Ok(d.clone());
    }
    let d = RtDevice::open(name).map_err(run_err)?;
    open.push((name.to_string(), d.clone()));
    Ok(d)
}

/// The devices of this machine that can run kernels: (name, description). `tk devices` also
/// lists what it found but cannot use, with the reason.
#[pyfunction]
fn devices() -> Vec<(String, String)> {
    tk_runtime::list()
        .into_iter()
        .filter(|(name, what)| {
            !name.ends_with(":-") && !what.contains("not supported yet") && !what.starts_with("unreachable")
        })
        .collect()
}

/// A compute device.
#[pyclass(module = "tk._tk", frozen)]
struct Device {
    dev: RtDevice,
    name: String,
}

#[pymethods]
impl Device {
    #[new]
    fn new(name: &str) -> PyResult<Device> {
        let dev = device(name)?;
        Ok(Device { name: dev.name(), dev })
    }
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }
    /// Copies host elements to the device (or wraps them, on the CPU).
    fn _upload(
        &self,
        py: Python<'_>,
        addr: usize,
        dtype_name: &str,
        shape: Vec<usize>,
        owner: Py<PyAny>,
    ) -> PyResult<Array> {
        let arr = host_arg(py, &self.dev, addr, dtype_name, shape, owner)?;
        let on = match &arr {
            HostArg::Wrapped(d) => d.clone(),
            HostArg::Copied(h) => {
                let dev = self.dev.clone();
                py.detach(|| dev.upload(h)).map_err(run_err)?
            }
        };
        Ok(Array { dev: self.dev.clone(), name: self.name.clone(), arr: on })
    }
}

/// An array on a device.
#[pyclass(module = "tk._tk", frozen)]
struct Array {
    dev: RtDevice,
    /// The device's name (asked once: it is compared on every call).
    name: String,
    arr: DeviceArray,
}

#[pymethods]
impl Array {
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.arr.shape)
    }
    #[getter]
    fn dtype(&self) -> &'static str {
        self.arr.dtype.name()
    }
    #[getter]
    fn device(&self) -> &str {
        &self.name
    }
    /// The address of the elements in host memory (CPU arrays), else None.
    fn _host_address(&self) -> Option<usize> {
        self.dev.host_ptr(&self.arr).map(|p| p.as_ptr() as usize)
    }
    /// A copy of the array in host memory, as a CPU array.
    fn _to_host(&self, py: Python<'_>) -> PyResult<Array> {
        let (dev, arr) = (self.dev.clone(), self.arr.clone());
        let h = py.detach(|| dev.download(&arr)).map_err(run_err)?;
        let cpu = device("cpu")?;
        let arr = wrap_owned(&cpu, h)?;
        Ok(Array { name: cpu.name(), dev: cpu, arr })
    }
}

/// A host array held by the CPU device without a copy.
fn wrap_owned(cpu: &RtDevice, h: HostArray) -> PyResult<DeviceArray> {
    let h = Box::new(h);
    let ptr = NonNull::new(h.data.as_ptr() as *mut u8).unwrap_or(NonNull::dangling());
    let (dtype, shape) = (h.dtype, h.shape.clone());
    // SAFETY: the box owns the bytes and moves into the buffer, which keeps it; its heap data
    // does not move. Nothing writes it: kernels only read their inputs.
    unsafe { cpu.wrap_host(ptr, dtype, shape, h) }
        .map_err(run_err)?
        .ok_or_else(|| DeviceError::new_err("the CPU device cannot hold host memory"))
}

enum HostArg {
    Wrapped(DeviceArray),
    Copied(HostArray),
}

/// Host elements at `addr` (kept alive by `owner`) for `dev`: used in place on the CPU, copied
/// for other devices.
fn host_arg(
    py: Python<'_>,
    dev: &RtDevice,
    addr: usize,
    dtype_name: &str,
    shape: Vec<usize>,
    owner: Py<PyAny>,
) -> PyResult<HostArg> {
    let dt = dtype(dtype_name)?;
    let bytes = shape
        .iter()
        .try_fold(tk_runtime::array::elem_bytes(dt), |a, d| a.checked_mul(*d))
        .ok_or_else(|| ArgumentError::new_err(format!("an array of {dt} with shape {shape:?} is too large")))?;
    let Some(ptr) = NonNull::new(addr as *mut u8) else {
        return Err(ArgumentError::new_err("an array without data (null address)"));
    };
    // SAFETY: the Python half passes the address of the C-contiguous elements of `owner` (a
    // numpy array it made or checked: `bytes` long), which lives as long as the buffer holds it.
    if let Some(d) = unsafe { dev.wrap_host(ptr, dt, shape.clone(), Box::new(owner.clone_ref(py))) }.map_err(run_err)? {
        return Ok(HostArg::Wrapped(d));
    }
    // SAFETY: as above; the bytes are copied before `owner` can go away.
    let data = unsafe { std::slice::from_raw_parts(ptr.as_ptr(), bytes) }.to_vec();
    Ok(HostArg::Copied(HostArray { dtype: dt, shape, data }))
}

enum Source {
    Jit(tk::Program),
    Bundle(Bundle),
}

/// A compiled program or a loaded bundle.
#[pyclass(module = "tk._tk", frozen)]
struct Program {
    source: Source,
    signatures: Vec<tk_runtime::bundle::Signature>,
    entries: Mutex<HashMap<String, Arc<Entry>>>,
}

impl Program {
    fn entry(&self, name: &str) -> PyResult<Arc<Entry>> {
        let poisoned = || DeviceError::new_err("the program's lock was poisoned");
        if let Some(e) = self.entries.lock().map_err(|_| poisoned())?.get(name) {
            return Ok(e.clone());
        }
        let e = Arc::new(
            match &self.source {
                Source::Jit(p) => p.entry(name),
                Source::Bundle(b) => b.entry(name),
            }
            .map_err(run_err)?,
        );
        self.entries.lock().map_err(|_| poisoned())?.insert(name.to_string(), e.clone());
        Ok(e)
    }
}

type Side = Vec<(String, String, Vec<String>)>;

#[pymethods]
impl Program {
    /// The entries' names, in source order.
    #[getter]
    fn entries(&self) -> Vec<String> {
        self.signatures.iter().map(|s| s.name.clone()).collect()
    }
    /// An entry's inputs, outputs (name, dtype, dimension expressions) and explicit dimensions.
    fn _signature(&self, name: &str) -> PyResult<(Side, Side, Vec<String>)> {
        let s = self.signatures.iter().find(|s| s.name == name).ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(format!(
                "no entry `{name}`; the entries are: {}",
                self.entries().join(", ")
            ))
        })?;
        Ok((s.inputs.clone(), s.outputs.clone(), s.dims.clone()))
    }
    /// Calls entry `name` on `device` and leaves the outputs there.
    fn _call(
        &self,
        py: Python<'_>,
        name: &str,
        device: &Device,
        args: Vec<Bound<'_, PyAny>>,
        dims: HashMap<String, i64>,
    ) -> PyResult<Vec<Array>> {
        let entry = self.entry(name)?;
        let dev = device.dev.clone();
        let mut wrapped: Vec<DeviceArray> = Vec::new();
        let mut copied: Vec<HostArray> = Vec::new();
        // Per argument: (is it a host copy, its index in `copied` or `wrapped`).
        let mut order: Vec<(bool, usize)> = Vec::with_capacity(args.len());
        // Each argument is a device array, or host elements `(address, dtype, shape, owner)`.
        for a in &args {
            if let Ok(d) = a.cast::<Array>() {
                let d = d.get();
                if d.name != device.name {
                    return Err(ArgumentError::new_err(format!(
                        "an array on {} passed to a call on {}: copy it with .numpy() or upload it there",
                        d.name, device.name
                    )));
                }
                order.push((false, wrapped.len()));
                wrapped.push(d.arr.clone());
                continue;
            }
            let (addr, dt, shape, owner): (usize, String, Vec<usize>, Py<PyAny>) = a.extract()?;
            match host_arg(py, &dev, addr, &dt, shape, owner)? {
                HostArg::Wrapped(d) => {
                    order.push((false, wrapped.len()));
                    wrapped.push(d);
                }
                HostArg::Copied(h) => {
                    order.push((true, copied.len()));
                    copied.push(h);
                }
            }
        }
        let outs = py
            .detach(|| {
                let call: Vec<Arg<'_>> = order
                    .iter()
                    .map(|&(host, i)| if host { Arg::Host(&copied[i]) } else { Arg::Device(&wrapped[i]) })
                    .collect();
                entry.call_resident(&dev, &call, &dims)
            })
            .map_err(run_err)?;
        Ok(outs.into_iter().map(|arr| Array { dev: dev.clone(), name: device.name.clone(), arr }).collect())
    }
    fn __repr__(&self) -> String {
        format!("<tk.Program: {}>", self.entries().join(", "))
    }
}

fn from_jit(py: Python<'_>, r: Result<tk::Program, tk::CompileError>) -> PyResult<Program> {
    let p = r.map_err(|e| compile_err(py, e))?;
    let signatures = p.signatures();
    Ok(Program { source: Source::Jit(p), signatures, entries: Mutex::new(HashMap::new()) })
}

/// Checks `.tk` source; `name` names it in diagnostics.
#[pyfunction]
fn compile(py: Python<'_>, source: &str, name: &str) -> PyResult<Program> {
    let r = py.detach(|| tk::compile_named(source, name));
    from_jit(py, r)
}

/// Checks a `.tk` file.
#[pyfunction]
fn compile_file(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Program> {
    let r = py.detach(|| tk::compile_file(&path));
    from_jit(py, r)
}

/// Reads and checks a bundle made by `tk build`.
#[pyfunction]
fn load_bundle(py: Python<'_>, path: std::path::PathBuf) -> PyResult<Program> {
    let b = py.detach(|| Bundle::load(&path)).map_err(run_err)?;
    let signatures = b.signatures();
    Ok(Program { source: Source::Bundle(b), signatures, entries: Mutex::new(HashMap::new()) })
}

#[pymodule]
fn _tk(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(compile_file, m)?)?;
    m.add_function(wrap_pyfunction!(load_bundle, m)?)?;
    m.add_function(wrap_pyfunction!(devices, m)?)?;
    m.add_class::<Program>()?;
    m.add_class::<Device>()?;
    m.add_class::<Array>()?;
    let py = m.py();
    m.add("CompileError", py.get_type::<CompileError>())?;
    m.add("ArgumentError", py.get_type::<ArgumentError>())?;
    m.add("DeviceError", py.get_type::<DeviceError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
