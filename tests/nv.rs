//! `nv:sim`: tk's NVIDIA driver (GSP boot, RPCs, its page tables, GPFIFO channels, QMD launches)
//! in front of the simulated NVIDIA PCIe GPU, whose host engine runs ptxas's cubins on the SASS
//! emulator. The differential suite runs every example, the random programs and (through
//! `common::SUITE_DEVICES`) the ONNX cases on it.

#[macro_use]
mod common;

/// The simulated GA102 through the whole driver.
const DRIVER: &str = "nv:sim";

// Every launch goes through the pushbuffer, the host engine and the MMU: fewer runs.
device_suite!(driver, DRIVER, sizes: [5], runs: 40, tolerance: [5], runs: 20);
