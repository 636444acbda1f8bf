//! The device interface. It is shaped for GPUs behind a slow link: memory lives on the device
//! in [`Buffer`]s; copies and launches are enqueued on a [`Queue`] and complete in order;
//! [`Event`]s mark points in a queue. A buffer is reference-counted and the queue holds a
//! reference to every buffer its pending work uses, so memory is freed only after the last work
//! using it completes. The CPU device runs its queue inline: work is complete when the call
//! that enqueues it returns. Devices load code ([`Code`]) and run it; they never compile.

use crate::error::RunError;
use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tk_ir::kernel::Kernel;

/// Device memory. Cloning shares the memory; it is freed when the last clone is dropped.
#[derive(Clone)]
pub struct Buffer {
    pub(crate) mem: Arc<dyn Any + Send + Sync>,
    bytes: usize,
}

impl Buffer {
    pub(crate) fn new(mem: Arc<dyn Any + Send + Sync>, bytes: usize) -> Buffer {
        Buffer { mem, bytes }
    }
    /// The size in bytes.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// An in-order stream of copies and launches.
pub struct Queue {
    pub(crate) id: usize,
}

impl Queue {
    /// The queue's number on its device.
    pub fn id(&self) -> usize {
        self.id
    }
}

/// An event of a device that runs its queues asynchronously (a CUDA event).
pub trait GpuEvent: Send + Sync {
    fn query(&self) -> bool;
    fn elapsed(&self, later: &dyn GpuEvent) -> Option<Duration>;
    fn wait(&self) -> Result<(), String>;
    fn as_any(&self) -> &dyn Any;
}

/// A point in a queue: complete once all work enqueued before it has completed.
#[derive(Clone)]
pub struct Event {
    /// When the work completed, for devices whose queues run inline.
    at: Option<Instant>,
    gpu: Option<Arc<dyn GpuEvent>>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("at", &self.at).field("gpu", &self.gpu.is_some()).finish()
    }
}

impl Event {
    /// An event of an inline queue: complete now.
    pub fn now() -> Event {
        Event { at: Some(Instant::now()), gpu: None }
    }
    /// An event of an asynchronous queue.
    pub fn gpu(e: Arc<dyn GpuEvent>) -> Event {
        Event { at: None, gpu: Some(e) }
    }
    /// Whether the work before the event has completed.
    pub fn query(&self) -> bool {
        match &self.gpu {
            Some(g) => g.query(),
            None => self.at.is_some(),
        }
    }
    /// Time from this event to a later one, when both have completed.
    pub fn elapsed(&self, later: &Event) -> Option<Duration> {
        match (&self.gpu, &later.gpu) {
            (Some(a), Some(b)) => a.elapsed(b.as_ref()),
            _ => Some(later.at?.saturating_duration_since(self.at?)),
        }
    }
    /// Waits until the event has completed.
    pub fn wait(&self) -> Result<(), String> {
        match &self.gpu {
            Some(g) => g.wait(),
            None => Ok(()),
        }
    }
}

pub use tk_abi::code::{Code, CodeKind};

/// Device kernels compiled and loaded for one device.
pub trait Executable: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    /// The number of device kernels.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A compute device.
pub trait Device: Send + Sync {
    /// The device's name (`cpu`, `cuda:0`, ...).
    fn name(&self) -> String;
    /// The compile target (`x86_64-unknown-linux-gnu avx2,fma,...`, `sm_86`, `gfx1100`).
    fn target(&self) -> String;
    /// The target kernels are compiled for (which decides their default knobs).
    fn compile_target(&self) -> tk_abi::target::Target {
        tk_abi::target::Target::Cpu
    }
    /// The CPU's tier policy (`cpu,tier=...` or `TK_CPU_TIER`); `None` on other devices.
    fn cpu_tier(&self) -> Option<crate::tier::TierPolicy> {
        None
    }
    /// The kinds of code the device loads, the one it prefers first.
    fn accepts(&self) -> &'static [CodeKind];
    fn alloc(&self, bytes: usize) -> Result<Buffer, RunError>;
    fn queue(&self) -> Queue;
    /// Enqueues a copy from host memory into a buffer.
    fn write(&self, q: &Queue, dst: &Buffer, src: &[u8]) -> Result<(), RunError>;
    /// Enqueues a copy from a buffer into host memory and waits for it.
    fn read(&self, q: &Queue, src: &Buffer, dst: &mut [u8]) -> Result<(), RunError>;
    /// Enqueues a copy between buffers.
    fn copy(&self, q: &Queue, src: &Buffer, dst: &Buffer) -> Result<(), RunError>;
    /// Loads compiled code for device kernels (made by the toolchain for `kernels`, or read
    /// from a bundle). Devices never compile: the toolchain does.
    fn load(&self, kernels: &[Kernel], code: Code<'_>) -> Result<Arc<dyn Executable>, RunError>;
    /// Enqueues device kernel `k` of `exe` on buffers (in the kernel's buffer order) with the
    /// given values of the dimension symbols.
    fn launch(
        &self,
        q: &Queue,
        exe: &Arc<dyn Executable>,
        k: usize,
        bufs: &[Buffer],
        dims: &HashMap<String, i64>,
    ) -> Result<(), RunError>;
    /// Records an event at the current end of a queue.
    fn record(&self, q: &Queue) -> Event;
    /// Waits until an event has completed.
    fn wait(&self, e: &Event) -> Result<(), RunError>;
    /// Waits until all work on a queue has completed.
    fn synchronize(&self, q: &Queue) -> Result<(), RunError>;
    /// A buffer over host memory that the caller owns, without a copy, on a device whose
    /// kernels read host memory (the CPU); `None` on other devices. `owner` is kept alive as
    /// long as the buffer (a numpy array, for the Python package).
    ///
    /// # Safety
    /// `ptr` is valid for reads and writes of `bytes` bytes for as long as `owner` lives, and
    /// nothing else writes the memory while the device uses it. (Kernels never write their
    /// inputs: an input buffer is only read.)
    unsafe fn wrap_host(
        &self,
        _ptr: std::ptr::NonNull<u8>,
        _bytes: usize,
        _owner: Box<dyn Any + Send + Sync>,
    ) -> Option<Buffer> {
        None
    }
    /// The host address of a buffer's memory on a device whose memory is host memory (the
    /// CPU); `None` elsewhere.
    fn host_ptr(&self, _b: &Buffer) -> Option<std::ptr::NonNull<u8>> {
        None
    }
    /// Whether a kernel has finished with its buffers when [`Device::launch`] returns (the CPU
    /// runs it then and there), so that an entry may keep its temporaries for its next launch.
    /// Queued devices (GPUs) say `false`.
    fn launches_finish_on_return(&self) -> bool {
        false
    }
}
