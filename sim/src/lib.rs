//! tk-sim: simulated GPUs that run the real machine code and check what hardware would not
//! report.
//!
//! - [`ptx`]: a PTX simulator (`sim:sm_XX`).
//! - [`rdna3`]: an RDNA3 emulator over tk-isa's instruction tables (`sim:gfx11XX`).
//! - [`pcie`]: simulated PCIe GPUs behind tk-gpu's transport trait (`amd:sim`).

pub mod pcie;
pub mod ptx;
pub mod rdna3;
pub mod sass;

/// Held by the tests that set the process-wide interrupt request (`tk_abi::interrupt`), so that
/// they do not clear each other's.
#[cfg(test)]
pub(crate) static INTERRUPT_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());
