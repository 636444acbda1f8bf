//! Errors of the runtime and the devices.

use tk_ir::graph::Loc;

/// An error running a compiled entry. Errors with a [`Loc`] point at the user's source.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RunError {
    /// A file could not be read or written, or holds the wrong data.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    /// An argument does not match the entry's signature.
    #[error("{message}")]
    Argument { message: String },
    /// An index computed at run time is outside its axis (a gather, `x[i]` with a data index).
    #[error("index {value} is out of range {lo}..{hi}")]
    OutOfRange { value: i64, lo: i64, hi: i64, loc: Loc },
    /// A dimension evaluates to a negative size for the given arguments.
    #[error("{message}")]
    Dimension { message: String, loc: Loc },
    /// The compiler cannot handle the program on this device.
    #[error("{message}")]
    Compile { message: String, loc: Loc },
    /// A required external tool (ptxas, nvdisasm) is missing.
    #[error("{tool} not found: {message}")]
    MissingTool { tool: String, message: String },
    /// An external tool failed.
    #[error("{tool}: {message}")]
    Tool { tool: String, message: String },
    /// A device kernel did something invalid (a simulated GPU's out-of-bounds access or race):
    /// `loc` is the source of the value the kernel computes.
    #[error("device {device}: {message}")]
    Fault { device: String, message: String, loc: Loc },
    /// A device failure.
    #[error("device {device}: {message}")]
    Device { device: String, message: String },
    /// The host asked the run to stop ([`tk_abi::interrupt`], Ctrl-C in the REPL). The outputs
    /// are incomplete; the inputs and the device are as they were.
    #[error("interrupted")]
    Interrupted,
}

impl RunError {
    /// The source location the error is about, when it has one.
    pub fn loc(&self) -> Option<Loc> {
        match self {
            RunError::OutOfRange { loc, .. }
            | RunError::Dimension { loc, .. }
            | RunError::Compile { loc, .. }
            | RunError::Fault { loc, .. } => Some(*loc),
            _ => None,
        }
    }
}

impl RunError {
    /// The result of a launch whose error slots were decoded: the failed check's error, if any.
    pub fn check(failure: Option<tk_abi::check::CheckFailure>) -> Result<(), RunError> {
        failure.map_or(Ok(()), |c| Err(c.into()))
    }
}

impl From<tk_abi::check::CheckFailure> for RunError {
    fn from(c: tk_abi::check::CheckFailure) -> RunError {
        RunError::OutOfRange { value: c.value, lo: c.lo, hi: c.hi, loc: c.loc }
    }
}

impl From<tk_abi::target::LowerError> for RunError {
    fn from(e: tk_abi::target::LowerError) -> RunError {
        RunError::Compile { message: e.message, loc: e.loc }
    }
}
