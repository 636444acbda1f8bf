//! The external tools the toolchain runs: NVIDIA's ptxas and nvdisasm ([`ptxas`]), LLVM's ld.lld
//! and llvm-objdump ([`lld`]), each found through its `TK_*` variable or `PATH`, with a message
//! that says how to install it when it is missing.

pub mod lld;
pub mod ptxas;

use std::path::{Path, PathBuf};
use tk_runtime::RunError;

/// A temporary directory, removed when dropped.
pub(crate) struct TempDir {
    pub(crate) path: PathBuf,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

pub(crate) fn tempdir() -> Result<TempDir, RunError> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let path =
        std::env::temp_dir().join(format!("tk-gpu-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&path)
        .map_err(|e| RunError::File { path: path.display().to_string(), message: format!("creating: {e}") })?;
    Ok(TempDir { path })
}

pub(crate) fn write(p: &Path, data: &[u8]) -> Result<(), RunError> {
    std::fs::write(p, data).map_err(|e| RunError::File { path: p.display().to_string(), message: e.to_string() })
}
