//! The device interface. It is shaped for GPUs behind a slow link: memory lives on the device
//! in [`Buffer`]s; copies and launches are enqueued on a [`Queue`] and complete in order;
//! [`Event`]s mark points in a queue. A buffer is reference-counted and the queue holds a
//! reference to every buffer its pending work uses, so memory is freed only after the last work
//! using it completes. The CPU device runs its queue inline: work is complete when the call
//! that enqueues it returns.

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

/// A point in a queue: complete once all work enqueued before it has completed.
#[derive(Clone, Debug)]
pub struct Event {
    pub(crate) at: Option<Instant>,
}

impl Event {
    /// Whether the work before the event has completed.
    pub fn query(&self) -> bool {
        self.at.is_some()
    }
    /// Time from this event to a later one, when both have completed.
    pub fn elapsed(&self, later: &Event) -> Option<Duration> {
        Some(later.at?.saturating_duration_since(self.at?))
    }
}

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
    fn compile_target(&self) -> crate::target::Target {
        crate::target::Target::Cpu
    }
    fn alloc(&self, bytes: usize) -> Result<Buffer, RunError>;
    fn queue(&self) -> Queue;
    /// Enqueues a copy from host memory into a buffer.
    fn write(&self, q: &Queue, dst: &Buffer, src: &[u8]) -> Result<(), RunError>;
    /// Enqueues a copy from a buffer into host memory and waits for it.
    fn read(&self, q: &Queue, src: &Buffer, dst: &mut [u8]) -> Result<(), RunError>;
    /// Enqueues a copy between buffers.
    fn copy(&self, q: &Queue, src: &Buffer, dst: &Buffer) -> Result<(), RunError>;
    /// Compiles device kernels and loads them onto the device.
    fn compile(&self, kernels: &[Kernel]) -> Result<Arc<dyn Executable>, RunError>;
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
}

/// The devices this machine has: (name, compile target). Simulated GPUs are always there
/// (`sim:sm_86` is listed; any NVIDIA target works).
pub fn list() -> Vec<(String, String)> {
    let cpu = crate::cpu::CpuDevice::new();
    let sim = crate::sim::SimDevice::new(tk_codegen::ptx::Target { sm: 86 });
    vec![(cpu.name(), cpu.target()), (sim.name(), format!("{} (any sm_XX target)", sim.target()))]
}

/// Opens a device by name.
pub fn open(name: &str) -> Result<Arc<dyn Device>, RunError> {
    match name {
        "cpu" => Ok(Arc::new(crate::cpu::CpuDevice::new())),
        n if n.starts_with("sim:sm_") => {
            let t = n["sim:".len()..].parse().map_err(|m| RunError::Device { device: n.to_string(), message: m })?;
            Ok(Arc::new(crate::sim::SimDevice::new(t)))
        }
        n if n.starts_with("sim:") || n.starts_with("cuda:") || n.starts_with("amd:") => Err(RunError::Device {
            device: n.to_string(),
            message: "this device kind is not available in this build of tk yet; `tk devices` lists the devices".into(),
        }),
        n => Err(RunError::Device {
            device: n.to_string(),
            message: "unknown device; device names are `cpu`, `sim:<target>`, `cuda:N`, `amd:N` and `amd:sim` \
                      (`tk devices` lists this machine's)"
                .into(),
        }),
    }
}
