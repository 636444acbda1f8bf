//! tk code generators: CPU (Cranelift), PTX, AMDGPU
//!
//! Not implemented yet: this crate is reserved by the layout; backends land with their issues.
