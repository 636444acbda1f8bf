//! tk code generators. `cpu` compiles the kernel IR with Cranelift for the host (JIT) or any
//! supported triple (relocatable objects); `ptx` emits PTX text for NVIDIA GPUs; `llvm` emits
//! LLVM IR (AMD RDNA3 today) and, with the cargo feature `amdgpu`, compiles it with LLVM 19.
//! Launch facts and the host-function ABI come from tk-abi; the emitters never see the front end.
//! Every emitter receives kernels legalized for its target (`common::legal`).

pub mod common;
pub mod cpu;
pub mod llvm;
pub mod ptx;
