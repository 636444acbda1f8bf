//! tk code generators. `cpu` compiles the kernel IR with Cranelift for the host (JIT) or any
//! supported triple (relocatable objects). The PTX and AMDGPU backends land with their issues.

pub mod cpu;
