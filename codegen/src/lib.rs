//! tk code generators. `cpu` compiles the kernel IR with Cranelift for the host (JIT) or any
//! supported triple (relocatable objects); `ptx` emits PTX text for NVIDIA GPUs. The AMDGPU
//! backend lands with its issue.

pub mod cpu;
pub mod ptx;
