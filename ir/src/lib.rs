//! tk graph IR, scheduler, kernel IR and reference interpreters
//!
//! Not implemented yet: this crate is reserved by the layout; the graph IR lands with the graph-IR issue.
