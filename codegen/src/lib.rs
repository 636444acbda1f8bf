//! tk code generators. `cpu` compiles the kernel IR with Cranelift for the host (JIT) or any
//! supported triple (relocatable objects); `ptx` emits PTX text for NVIDIA GPUs; `amdgpu` emits
//! LLVM IR for AMD RDNA3 GPUs and, with the cargo feature `amdgpu`, compiles it with LLVM 19.

pub mod amdgpu;
pub mod cpu;
pub mod ptx;
