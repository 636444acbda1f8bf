//! The device code a device loads: what the toolchain makes and a bundle stores. Devices only
//! load code; compiling it is the toolchain's business.

use std::sync::Arc;

/// Kernels compiled into this process's memory (the CPU JIT). The owner keeps the code alive
/// for as long as a device holds the `Arc`.
pub trait HostCode: Send + Sync {
    /// The number of device kernels.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The function of device kernel `i`, with the signature [`crate::cpu::KernelFn`].
    fn function(&self, i: usize) -> Option<crate::cpu::KernelFn>;
}

/// The kinds of device code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CodeKind {
    CpuObject,
    Jit,
    Ptx,
    Cubin,
    Hsaco,
}

impl CodeKind {
    /// The kind in words, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            CodeKind::CpuObject => "a CPU object",
            CodeKind::Jit => "JIT-compiled CPU code",
            CodeKind::Ptx => "PTX",
            CodeKind::Cubin => "a cubin",
            CodeKind::Hsaco => "an AMD code object",
        }
    }
}

/// Device code for a list of device kernels, borrowed.
#[derive(Clone, Copy)]
pub enum Code<'a> {
    /// A relocatable object for this CPU (symbols `tk_k{i}`).
    CpuObject(&'a [u8]),
    /// Kernels the JIT compiled in this process.
    Jit(&'a Arc<dyn HostCode>),
    /// A PTX module (entries `k{i}`).
    Ptx(&'a str),
    /// A cubin assembled from such a module for one architecture.
    Cubin(&'a [u8]),
    /// An AMD code object (`.hsaco`; kernels named as the device kernels).
    Hsaco(&'a [u8]),
}

impl std::fmt::Debug for Code<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.kind().describe())
    }
}

impl Code<'_> {
    pub fn kind(&self) -> CodeKind {
        match self {
            Code::CpuObject(_) => CodeKind::CpuObject,
            Code::Jit(_) => CodeKind::Jit,
            Code::Ptx(_) => CodeKind::Ptx,
            Code::Cubin(_) => CodeKind::Cubin,
            Code::Hsaco(_) => CodeKind::Hsaco,
        }
    }
}

/// Device code, owned (what the toolchain's code generation returns).
#[derive(Clone)]
pub enum CodeBuf {
    CpuObject(Vec<u8>),
    Jit(Arc<dyn HostCode>),
    Ptx(String),
    Cubin(Vec<u8>),
    Hsaco(Vec<u8>),
}

impl CodeBuf {
    pub fn as_code(&self) -> Code<'_> {
        match self {
            CodeBuf::CpuObject(b) => Code::CpuObject(b),
            CodeBuf::Jit(j) => Code::Jit(j),
            CodeBuf::Ptx(t) => Code::Ptx(t),
            CodeBuf::Cubin(b) => Code::Cubin(b),
            CodeBuf::Hsaco(b) => Code::Hsaco(b),
        }
    }
}
