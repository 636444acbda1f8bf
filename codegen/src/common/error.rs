//! The error an emitter reports, and the messages for what it should never receive.

use tk_ir::dtype::DType;

/// A kernel an emitter cannot translate (an operation or form it does not support).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct Unsupported {
    pub message: String,
}

pub(crate) fn unsupported<T>(m: impl Into<String>) -> Result<T, Unsupported> {
    Err(Unsupported { message: m.into() })
}

/// The message for an operation an emitter never receives because the legalize pass rewrote it
/// (reaching one is a bug in the pass or its capability table).
pub(crate) fn legalized(what: &str) -> String {
    format!("{what} reached the emitter: the legalize pass rewrites it first (tk_ir::kernel::legalize)")
}

/// The message for a float power, which the graph passes decompose before any code generator.
pub(crate) fn decomposed(t: DType) -> String {
    format!("pow on {t} reached the emitter: the graph passes decompose it first (tk_ir::graph::decompose)")
}
