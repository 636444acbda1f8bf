//! Compile targets, their default knobs and reduction splitting, and [`lower`]: the one path
//! from a prepared graph to device kernels. They are written in tk-abi (a bundle's loader in the
//! runtime lowers with the same rules) and re-exported here, where the rest of compilation is.

pub use tk_abi::target::{LowerError, Lowered, Options, Split, Target, cpu_threads, lower, schedule, split};
