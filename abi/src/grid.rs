//! The grid a GPU device kernel is launched with: one dimension of blocks of
//! [`crate::launch::THREADS`] (or the kernel's local range) threads. A launch never has more
//! blocks than the device's cap: tk's GPU kernels loop over the rest of their range (a
//! grid-stride loop), so the cap only trades parallelism for fewer blocks.

use crate::launch::Launch;
use std::collections::HashMap;

/// Blocks and threads per block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    pub blocks: u32,
    pub threads: u32,
}

/// The most blocks a launch on a real GPU gets (NVIDIA and AMD alike).
pub const GPU_MAX_BLOCKS: i64 = 1 << 16;

/// The most blocks a simulated launch runs (the simulators run every block one by one).
pub const SIM_MAX_BLOCKS: i64 = 4096;

/// The grid of a launch with the symbols bound to `dims`, with at most `max_blocks` blocks.
pub fn grid(launch: &Launch, dims: &HashMap<String, i64>, max_blocks: i64) -> Grid {
    let eval = |d: &tk_ir::dims::Dim| d.eval(&|s| dims.get(s).copied()).unwrap_or(0);
    match launch {
        Launch::Single => Grid { blocks: 1, threads: 1 },
        Launch::Elements { extent, threads } => {
            let n = eval(extent).max(0);
            let blocks = (n + i64::from(*threads) - 1) / i64::from(*threads);
            Grid { blocks: blocks.clamp(1, max_blocks) as u32, threads: *threads }
        }
        Launch::Blocks { extent, threads } => {
            let n = extent.as_ref().map_or(1, eval);
            Grid { blocks: n.clamp(1, max_blocks) as u32, threads: *threads }
        }
    }
}
