//! tk devices, runtime, kernel cache and bundles
//!
//! Not implemented yet: this crate is reserved by the layout; the runtime lands with the CPU issue.
