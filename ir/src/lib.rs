//! tk-ir: the graph IR, its passes and its reference interpreter, plus the symbolic dimensions
//! and dtypes every stage shares.

pub mod decompose;
pub mod dims;
pub mod dtype;
pub mod graph;
pub mod interp;
pub mod kernel;
pub mod legalize;
pub mod passes;
pub mod schedule;
pub mod text;
pub mod upcast;
