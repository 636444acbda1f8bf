//! The embedding API: open a device, load entries (from a bundle here; from source with the `tk`
//! crate's `compile_str`), and call them on host or device-resident arrays.
//!
//! ```no_run
//! use tk_runtime::api::{AsArg, Bundle, Device};
//! use tk_runtime::HostArray;
//!
//! # fn main() -> Result<(), tk_runtime::RunError> {
//! let dev = Device::open("cpu")?;
//! let b = Bundle::load("kernels.tkb")?;
//! let x = HostArray::from_slice(&[2, 3], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0])?;
//! let y = b.entry("softmax_rows")?.call(&dev, &[x.as_arg()])?;
//! println!("{:?}", y[0].to_vec::<f32>()?);
//! # Ok(())
//! # }
//! ```
//!
//! Everything here is in the runtime crate: a program that only loads bundles links no
//! compiler. Shape and dtype mismatches are [`RunError::Argument`] errors, reported before
//! anything runs.

use crate::HostArray;
use crate::error::RunError;
use crate::runtime::{Compiled, DeviceArray};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A compute device (`cpu`, `sim:sm_86`, `cuda:0`; `tk devices` lists them).
///
/// ```
/// let dev = tk_runtime::api::Device::open("cpu").unwrap();
/// assert_eq!(dev.name(), "cpu");
/// assert!(tk_runtime::api::Device::open("tpu:0").is_err());
/// ```
#[derive(Clone)]
pub struct Device {
    inner: Arc<dyn crate::device::Device>,
}

impl Device {
    /// Opens a device by name.
    pub fn open(name: &str) -> Result<Device, RunError> {
        Ok(Device { inner: crate::devices::open(name)? })
    }
    /// The device's name.
    pub fn name(&self) -> String {
        self.inner.name()
    }
    /// The underlying device, for the lower-level runtime API.
    pub fn raw(&self) -> &dyn crate::device::Device {
        self.inner.as_ref()
    }
    /// Copies a host array to the device, so that repeated calls use it without copying.
    ///
    /// ```
    /// # use tk_runtime::{api::Device, HostArray};
    /// let dev = Device::open("cpu").unwrap();
    /// let x = HostArray::from_slice(&[3], &[1.0f32, 2.0, 3.0]).unwrap();
    /// let on_dev = dev.upload(&x).unwrap();
    /// assert_eq!(dev.download(&on_dev).unwrap(), x);
    /// ```
    pub fn upload(&self, a: &HostArray) -> Result<DeviceArray, RunError> {
        let q = self.inner.queue();
        let d = DeviceArray::upload(self.raw(), &q, a)?;
        self.inner.synchronize(&q)?;
        Ok(d)
    }
    /// An array over host memory the caller owns, without a copy, on a device whose kernels
    /// read host memory (the CPU); `Ok(None)` on other devices (upload a copy there). `owner`
    /// lives as long as the array (and every output that is not a copy of it).
    ///
    /// # Safety
    /// `ptr` is valid for reads of the array's bytes (its elements in row-major order, little
    /// endian) for as long as `owner` lives, and nothing writes them while the array is used.
    pub unsafe fn wrap_host(
        &self,
        ptr: std::ptr::NonNull<u8>,
        dtype: crate::DType,
        shape: Vec<usize>,
        owner: Box<dyn std::any::Any + Send + Sync>,
    ) -> Result<Option<DeviceArray>, RunError> {
        let bytes =
            shape.iter().try_fold(crate::array::elem_bytes(dtype), |a, d| a.checked_mul(*d)).ok_or_else(|| {
                RunError::Argument { message: format!("an array of {dtype} with shape {shape:?} has too many bytes") }
            })?;
        // SAFETY: the caller's promise, for exactly these bytes.
        let buffer = unsafe { self.inner.wrap_host(ptr, bytes, owner) };
        Ok(buffer.map(|buffer| DeviceArray { dtype, shape, buffer }))
    }
    /// Where a device array's elements are in host memory, on a device whose memory is host
    /// memory (the CPU): valid while the array lives. `None` elsewhere (download a copy).
    pub fn host_ptr(&self, a: &DeviceArray) -> Option<std::ptr::NonNull<u8>> {
        self.inner.host_ptr(&a.buffer)
    }
    /// Copies a device array back to the host.
    pub fn download(&self, a: &DeviceArray) -> Result<HostArray, RunError> {
        let q = self.inner.queue();
        let h = a.download(self.raw(), &q)?;
        self.inner.synchronize(&q)?;
        Ok(h)
    }
}

/// An argument of a call: a host array (copied to the device for the call) or an array already
/// on the device.
#[derive(Clone, Copy)]
pub enum Arg<'a> {
    Host(&'a HostArray),
    Device(&'a DeviceArray),
}

/// Turns arrays into call arguments: `x.as_arg()`.
///
/// ```
/// use tk_runtime::api::{Arg, AsArg};
/// let x = tk_runtime::HostArray::from_slice(&[1], &[1i32]).unwrap();
/// assert!(matches!(x.as_arg(), Arg::Host(_)));
/// ```
pub trait AsArg {
    fn as_arg(&self) -> Arg<'_>;
}

impl AsArg for HostArray {
    fn as_arg(&self) -> Arg<'_> {
        Arg::Host(self)
    }
}

impl AsArg for DeviceArray {
    fn as_arg(&self) -> Arg<'_> {
        Arg::Device(self)
    }
}

/// Where an entry's code comes from: a bundle, or a compiler (the `tk` crate's JIT).
pub trait Source: Send + Sync {
    /// The entry made ready for a device.
    fn load(&self, dev: &Device, name: &str) -> Result<Compiled, RunError>;
}

/// An entry point, loaded onto each device the first time it is called there.
pub struct Entry {
    name: String,
    source: Arc<dyn Source>,
    loaded: Mutex<HashMap<String, Arc<Compiled>>>,
}

impl Entry {
    /// An entry named `name` of `source`.
    pub fn new(name: &str, source: Arc<dyn Source>) -> Entry {
        Entry { name: name.to_string(), source, loaded: Mutex::new(HashMap::new()) }
    }

    /// The entry's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The entry ready for `dev` (loaded once per device).
    pub fn on(&self, dev: &Device) -> Result<Arc<Compiled>, RunError> {
        let poisoned = || RunError::Argument { message: "a lock of the entry was poisoned".into() };
        let key = dev.name();
        if let Some(c) = self.loaded.lock().map_err(|_| poisoned())?.get(&key) {
            return Ok(c.clone());
        }
        let c = Arc::new(self.source.load(dev, &self.name)?);
        self.loaded.lock().map_err(|_| poisoned())?.insert(key, c.clone());
        Ok(c)
    }

    /// Calls the entry with its arguments in order; the outputs come back to the host.
    pub fn call(&self, dev: &Device, args: &[Arg<'_>]) -> Result<Vec<HostArray>, RunError> {
        self.call_with_dims(dev, args, &HashMap::new())
    }

    /// [`Entry::call`] with values for explicit dimension parameters (`kernel k<h>`).
    pub fn call_with_dims(
        &self,
        dev: &Device,
        args: &[Arg<'_>],
        dims: &HashMap<String, i64>,
    ) -> Result<Vec<HostArray>, RunError> {
        let outs = self.call_resident(dev, args, dims)?;
        outs.iter().map(|o| dev.download(o)).collect()
    }

    /// Calls the entry and leaves the outputs on the device.
    pub fn call_resident(
        &self,
        dev: &Device,
        args: &[Arg<'_>],
        dims: &HashMap<String, i64>,
    ) -> Result<Vec<DeviceArray>, RunError> {
        let c = self.on(dev)?;
        let q = dev.raw().queue();
        let mut on_dev = Vec::with_capacity(args.len());
        for a in args {
            on_dev.push(match a {
                Arg::Host(h) => DeviceArray::upload(dev.raw(), &q, h)?,
                Arg::Device(d) => (*d).clone(),
            });
        }
        let outs = c.run_resident(dev.raw(), &q, &on_dev, dims)?;
        dev.raw().synchronize(&q)?;
        Ok(outs)
    }
}

/// A bundle (`.tkb`, docs/bundle.md) whose entries can be called.
pub struct Bundle {
    inner: Arc<crate::bundle::Bundle>,
}

struct BundleSource(Arc<crate::bundle::Bundle>);

impl Source for BundleSource {
    fn load(&self, dev: &Device, name: &str) -> Result<Compiled, RunError> {
        self.0.load_entry(dev.raw(), name)
    }
}

impl Bundle {
    /// Reads and checks a bundle.
    pub fn load(path: impl AsRef<Path>) -> Result<Bundle, RunError> {
        Ok(Bundle { inner: Arc::new(crate::bundle::Bundle::load(path.as_ref())?) })
    }
    /// A bundle from its bytes (`include_bytes!`); `name` names it in errors.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Bundle, RunError> {
        Ok(Bundle { inner: Arc::new(crate::bundle::Bundle::from_bytes(bytes, name)?) })
    }
    /// The entries' signatures.
    pub fn signatures(&self) -> Vec<crate::bundle::Signature> {
        self.inner.entries()
    }
    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Result<Entry, RunError> {
        if !self.inner.entries().iter().any(|s| s.name == name) {
            let names: Vec<String> = self.inner.entries().into_iter().map(|s| s.name).collect();
            return Err(RunError::Argument {
                message: format!("no entry `{name}`; the entries are: {}", names.join(", ")),
            });
        }
        Ok(Entry::new(name, Arc::new(BundleSource(self.inner.clone()))))
    }
}
