//! What every vendor's driver offers the runtime for running work: a command queue whose
//! submissions end in a fence write, waits on that fence with a timeout, and the errors a GPU
//! can raise. A GPU that does not answer is a lost device, reported, never a hang.

use std::time::Duration;

/// A failure of the GPU or the link to it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GpuError {
    /// The GPU could not be set up (missing resources, a register write that failed).
    #[error("setting up the GPU: {0}")]
    Setup(String),
    /// Device memory is exhausted.
    #[error("out of VRAM allocating {0} bytes")]
    OutOfMemory(u64),
    /// The device reported a fault (a bad address, a rejected packet or register).
    #[error("the GPU faulted: {0}")]
    Fault(String),
    /// A submission did not complete in time; the device is lost.
    #[error(
        "the GPU did not finish the launch within {} ms ({var}); the device is lost",
        .limit.as_millis()
    )]
    Timeout { limit: Duration, var: &'static str },
    /// The transport failed (the link dropped, the device stopped answering); the device is lost.
    #[error("{0}")]
    Link(String),
    /// An earlier failure lost the device; it must be opened again.
    #[error("the device was lost after an earlier failure; open it again")]
    Lost,
    /// The GPU's firmware is missing: the files, their paths, and where to get them.
    #[error("missing GPU firmware: {0}")]
    Firmware(String),
    /// A request the driver refuses (a size it cannot express, an unaligned address).
    #[error("{0}")]
    Invalid(String),
}

impl GpuError {
    /// Whether the device is unusable after this error.
    pub fn loses_device(&self) -> bool {
        matches!(self, GpuError::Fault(_) | GpuError::Timeout { .. } | GpuError::Link(_) | GpuError::Lost)
    }
}

/// A queue of commands the GPU runs in order. Each submission ends with a write of the next
/// fence value, so a submission is done once the fence has reached its value.
pub trait CommandQueue {
    /// The vendor's command (AMD: a PM4 packet; NVIDIA: a GPFIFO entry's methods).
    type Command;
    /// Queues `commands` and a fence write after them; returns the fence value that marks them
    /// done. One doorbell (or its equivalent) is the only round trip.
    fn submit(&self, commands: &[Self::Command]) -> Result<u64, GpuError>;
    /// The last fence value the GPU wrote (read from host memory: no round trip).
    fn fence(&self) -> u64;
    /// Waits until the fence reaches `value`, asking the device about faults now and then; a
    /// device that has not arrived after `limit` is lost ([`GpuError::Timeout`]).
    fn wait(&self, value: u64, limit: Duration) -> Result<(), GpuError>;
}
