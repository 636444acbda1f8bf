//! What every step of the AMD driver shares: the lost-link check and its message, the bound on
//! every wait, and the driver's log (`TK_LOG=driver`).

use std::time::Duration;

pub use crate::transport::{LINK_LOST, link_gone};

/// The bound on every wait for the GPU: `TK_GPU_TIMEOUT_MS` (the same for every GPU driver),
/// else the older `TK_AMD_TIMEOUT_MS`, else 20 s.
pub(crate) fn default_timeout() -> Duration {
    let ms = ["TK_GPU_TIMEOUT_MS", "TK_AMD_TIMEOUT_MS"]
        .iter()
        .find_map(|v| std::env::var(v).ok().and_then(|s| s.parse().ok()))
        .unwrap_or(20_000);
    Duration::from_millis(ms)
}

/// Whether `TK_LOG` asks for the driver's log (`TK_LOG=driver`, or a comma-separated list that
/// holds `driver`).
pub(crate) fn logging() -> bool {
    std::env::var("TK_LOG").is_ok_and(|v| v.split(',').any(|x| x.trim() == "driver"))
}

/// One line of the driver's log on stderr: `driver: STEP: what it did`.
pub(crate) fn log(step: &str, what: impl FnOnce() -> String) {
    if logging() {
        eprintln!("driver: {step}: {}", what());
    }
}
