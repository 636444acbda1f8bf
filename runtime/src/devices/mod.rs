//! The devices: [`cpu`] (the default), [`cuda`] (NVIDIA GPUs through libcuda), [`sim`] (the
//! simulated GPUs, feature `sim`) and [`amd`] (tk's userspace AMD driver, on tk-gpu).

pub mod amd;
pub mod cpu;
pub mod cuda;
#[cfg(feature = "sim")]
pub mod sim;
