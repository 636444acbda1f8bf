//! tk-ir: the graph IR, its passes and its reference interpreter (`graph/`), the schedule
//! (`schedule/`), the kernel IR with its lowering, interpreter and legalization (`kernel/`), plus
//! the symbolic dimensions and dtypes every stage shares.

pub mod dims;
pub mod dtype;
pub mod graph;
pub mod kernel;
pub mod schedule;
