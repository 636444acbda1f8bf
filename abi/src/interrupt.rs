//! A request to stop the work in progress (Ctrl-C in the REPL, a host's cancel button).
//!
//! One flag for the process: whoever takes the interrupt (a signal handler, a UI thread) calls
//! [`request`]; everything that runs kernels for a long time polls [`requested`] at points where
//! stopping leaves no half-written state behind: the runtime between device kernels, the CPU
//! device between chunks of a parallel range, the simulators between rounds of warps or waves.
//! The work then ends with an "interrupted" error. The host [`clear`]s the flag before the next
//! piece of work.
//!
//! [`request`] only stores to an atomic, so it may be called from a signal handler.

use std::sync::atomic::{AtomicBool, Ordering};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks the work in progress to stop. Async-signal-safe.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether a stop was requested since the last [`clear`].
pub fn requested() -> bool {
    REQUESTED.load(Ordering::Relaxed)
}

/// Forgets a request: the next piece of work runs.
pub fn clear() {
    REQUESTED.store(false, Ordering::SeqCst);
}
