//! tk-isa: machine-code tables shared by the emulators (tk-sim), disassemblers and, later,
//! native emitters. [`rdna3`]: AMD RDNA3 (gfx11) instruction decoding and printing in LLVM's
//! assembly syntax.

pub mod rdna3;
pub mod sass;
