//! The CPU backend: kernel IR -> Cranelift IR -> machine code, in memory (JIT) or as a
//! relocatable object, from one translation ([`translate`]).

pub use tk_abi::helpers;
pub(crate) mod translate;

pub use crate::common::{Unsupported, acc_value_dtype};
pub use translate::{CheckInfo, KernelInfo, kernel_info, symbols};

use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module, default_libcall_names};
use cranelift_object::{ObjectBuilder, ObjectModule};
use std::collections::HashMap;
use std::str::FromStr;
use tk_ir::kernel::Kernel;

/// An error generating CPU code.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CodegenError {
    /// The kernel uses something the CPU backend cannot compile.
    #[error("kernel `{kernel}`: the CPU backend does not support {message}")]
    Unsupported { kernel: String, message: String },
    /// An unknown or unsupported target triple.
    #[error("target `{0}`: {1}")]
    Target(String, String),
    /// Cranelift rejected the generated code (a bug in tk).
    #[error("Cranelift failed on kernel `{kernel}`: {message}")]
    Backend { kernel: String, message: String },
}

/// The signature of a compiled kernel (tk-abi's CPU kernel ABI; see the `translate` module).
pub use tk_abi::cpu::KernelFn;

/// One compiled device kernel.
pub struct CompiledKernel {
    pub info: KernelInfo,
    func: KernelFn,
}

impl CompiledKernel {
    /// The machine code's entry point.
    pub fn function(&self) -> KernelFn {
        self.func
    }
}

/// Kernels compiled into executable memory; the memory is freed when this is dropped.
pub struct JitKernels {
    module: Option<JITModule>,
    pub kernels: Vec<CompiledKernel>,
}

// SAFETY: after finalisation the module is only touched by `drop`; the kernels are plain
// function pointers into immutable executable memory, callable from any thread.
unsafe impl Send for JitKernels {}
unsafe impl Sync for JitKernels {}

impl tk_abi::code::HostCode for JitKernels {
    fn len(&self) -> usize {
        self.kernels.len()
    }
    fn function(&self, i: usize) -> Option<KernelFn> {
        self.kernels.get(i).map(CompiledKernel::function)
    }
}

impl Drop for JitKernels {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: `self.kernels` (the only pointers into the module's memory) are dropped
            // with `self`; nothing can call them afterwards.
            unsafe { m.free_memory() };
        }
    }
}

fn flags(pic: bool) -> Result<settings::Flags, CodegenError> {
    let mut b = settings::builder();
    let set = |b: &mut settings::Builder, k: &str, v: &str| {
        b.set(k, v).map_err(|e| CodegenError::Target("flags".into(), format!("{k}={v}: {e}")))
    };
    set(&mut b, "opt_level", "speed")?;
    set(&mut b, "use_colocated_libcalls", "false")?;
    set(&mut b, "is_pic", if pic { "true" } else { "false" })?;
    Ok(settings::Flags::new(b))
}

/// The host's ISA with every feature this CPU has (AVX2, FMA, ... on x86_64; NEON on aarch64).
pub fn host_isa(pic: bool) -> Result<OwnedTargetIsa, CodegenError> {
    let b = cranelift_native::builder().map_err(|e| CodegenError::Target("host".into(), e.to_string()))?;
    b.finish(flags(pic)?).map_err(|e| CodegenError::Target("host".into(), e.to_string()))
}

/// The ISA for a target triple with its baseline features (`aarch64-apple-darwin`, ...).
pub fn triple_isa(triple: &str) -> Result<OwnedTargetIsa, CodegenError> {
    let t = target_lexicon::Triple::from_str(triple).map_err(|e| CodegenError::Target(triple.into(), e.to_string()))?;
    let b = cranelift_codegen::isa::lookup(t).map_err(|e| CodegenError::Target(triple.into(), e.to_string()))?;
    b.finish(flags(true)?).map_err(|e| CodegenError::Target(triple.into(), e.to_string()))
}

/// The target triple of the host and the ISA features code is compiled for (part of the
/// kernel-cache key).
pub fn host_description() -> String {
    match host_isa(false) {
        Ok(isa) => {
            let mut feats: Vec<String> =
                isa.isa_flags().iter().filter(|f| f.as_bool() == Some(true)).map(|f| f.name.to_string()).collect();
            feats.sort();
            format!("{} {}", isa.triple(), feats.join(","))
        }
        Err(e) => format!("unknown host ({e})"),
    }
}

/// Declares and defines one kernel in a module; returns its id, run-time facts and, when asked,
/// its Cranelift IR text.
fn define<M: Module>(
    m: &mut M,
    k: &Kernel,
    name: &str,
    want_text: bool,
) -> Result<(FuncId, KernelInfo, String), CodegenError> {
    let legal = crate::common::Backend::Cranelift.legal(k);
    let k = &legal;
    let backend = |message: String| CodegenError::Backend { kernel: k.name.clone(), message };
    let ptr = m.target_config().pointer_type();
    let mut ctx = m.make_context();
    translate::signature(&mut ctx.func.signature, ptr);
    let id = m.declare_function(name, Linkage::Export, &ctx.func.signature).map_err(|e| backend(e.to_string()))?;
    let mut hs = HashMap::new();
    for (hname, params, ret) in helpers::HELPERS {
        let mut sig = m.make_signature();
        translate::helper_signature(&mut sig, params, *ret);
        let hid = m.declare_function(hname, Linkage::Import, &sig).map_err(|e| backend(e.to_string()))?;
        hs.insert(*hname, (hid.as_u32(), sig));
    }
    let simd_fma = match m.isa().triple().architecture {
        target_lexicon::Architecture::Aarch64(_) => true,
        _ => m.isa().isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool() == Some(true)),
    };
    let info = translate::translate(k, &mut ctx.func, ptr, hs, m.target_config(), simd_fma)
        .map_err(|e| CodegenError::Unsupported { kernel: k.name.clone(), message: e.message })?;
    let text = if want_text { ctx.func.display().to_string() } else { String::new() };
    m.define_function(id, &mut ctx).map_err(|e| backend(format!("{e:?}")))?;
    m.clear_context(&mut ctx);
    Ok((id, info, text))
}

/// Compiles kernels for the host into executable memory.
pub fn jit(kernels: &[Kernel]) -> Result<JitKernels, CodegenError> {
    let isa = host_isa(false)?;
    let mut jb = JITBuilder::with_isa(isa, default_libcall_names());
    for (name, _, _) in helpers::HELPERS {
        if let Some(p) = helpers::address(name) {
            jb.symbol(*name, p);
        }
    }
    let mut m = JITModule::new(jb);
    let mut ids = Vec::new();
    for (i, k) in kernels.iter().enumerate() {
        ids.push(define(&mut m, k, &format!("{}_{i}", k.name), false)?);
    }
    m.finalize_definitions().map_err(|e| CodegenError::Backend { kernel: "*".into(), message: e.to_string() })?;
    let kernels = ids
        .into_iter()
        .map(|(id, info, _)| {
            let p = m.get_finalized_function(id);
            // SAFETY: `p` is the entry of a function compiled with the signature of `KernelFn`.
            let func = unsafe { std::mem::transmute::<*const u8, KernelFn>(p) };
            CompiledKernel { info, func }
        })
        .collect();
    Ok(JitKernels { module: Some(m), kernels })
}

/// Compiles kernels into a position-independent relocatable object for `triple` (the host
/// when `None`); symbol names are `{prefix}{kernel name}`.
pub fn object(kernels: &[Kernel], triple: Option<&str>, prefix: &str) -> Result<Vec<u8>, CodegenError> {
    let isa = match triple {
        Some(t) => triple_isa(t)?,
        None => host_isa(true)?,
    };
    object_with(isa, kernels, prefix)
}

/// Compiles kernels for the host, with every host ISA feature, into a relocatable object whose
/// calls to helpers use absolute 64-bit relocations (what the kernel cache's loader handles).
/// Symbols are `tk_k{i}` for kernel `i`.
pub fn host_object(kernels: &[Kernel]) -> Result<Vec<u8>, CodegenError> {
    let isa = host_isa(false)?;
    let named: Vec<Kernel> =
        kernels.iter().enumerate().map(|(i, k)| Kernel { name: format!("k{i}"), ..k.clone() }).collect();
    object_with(isa, &named, "tk_")
}

/// The ISA features of the x86-64-v3 microarchitecture level (Haswell and Zen 1 on): what the
/// psABI's level list adds to baseline x86-64 (SSE3 to SSE4.2, POPCNT, AVX, AVX2, BMI1, BMI2,
/// FMA, LZCNT), as Cranelift's x86 settings name them. Source: the x86-64 psABI, "Micro
/// architecture levels".
pub const X86_64_V3: [&str; 11] = [
    "has_sse3",
    "has_ssse3",
    "has_sse41",
    "has_sse42",
    "has_popcnt",
    "has_avx",
    "has_avx2",
    "has_bmi1",
    "has_bmi2",
    "has_fma",
    "has_lzcnt",
];

/// The CPU feature levels bundles carry code for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// The triple's baseline: runs on every CPU of that kind.
    Baseline,
    /// x86-64-v3 ([`X86_64_V3`]); x86_64 triples only.
    X86_64V3,
}

/// Compiles kernels for `triple` at a feature `level` (never the build machine's own features)
/// into a relocatable object the runtime's loader handles (absolute 64-bit calls, as
/// [`host_object`]). Symbols are `tk_k{i}` for kernel `i`. Bundles hold these.
pub fn portable_object(kernels: &[Kernel], triple: &str, level: Level) -> Result<Vec<u8>, CodegenError> {
    let t = target_lexicon::Triple::from_str(triple).map_err(|e| CodegenError::Target(triple.into(), e.to_string()))?;
    let x86 = t.architecture == target_lexicon::Architecture::X86_64;
    let mut b = cranelift_codegen::isa::lookup(t).map_err(|e| CodegenError::Target(triple.into(), e.to_string()))?;
    if level == Level::X86_64V3 {
        if !x86 {
            return Err(CodegenError::Target(triple.into(), "x86-64-v3 is a level of x86_64 CPUs only".into()));
        }
        for f in X86_64_V3 {
            b.enable(f).map_err(|e| CodegenError::Target(triple.into(), format!("{f}: {e}")))?;
        }
    }
    let isa = b.finish(flags(false)?).map_err(|e| CodegenError::Target(triple.into(), e.to_string()))?;
    let named: Vec<Kernel> =
        kernels.iter().enumerate().map(|(i, k)| Kernel { name: format!("k{i}"), ..k.clone() }).collect();
    object_with(isa, &named, "tk_")
}

fn object_with(isa: OwnedTargetIsa, kernels: &[Kernel], prefix: &str) -> Result<Vec<u8>, CodegenError> {
    let t = isa.triple().to_string();
    let ob = ObjectBuilder::new(isa, "tk", default_libcall_names())
        .map_err(|e| CodegenError::Target(t.clone(), e.to_string()))?;
    let mut m = ObjectModule::new(ob);
    for k in kernels {
        define(&mut m, k, &format!("{prefix}{}", k.name), false)?;
    }
    m.finish().emit().map_err(|e| CodegenError::Target(t, e.to_string()))
}

/// The Cranelift IR of a kernel (`tk emit --stage clif`), before Cranelift's optimisations.
pub fn clif(k: &Kernel) -> Result<String, CodegenError> {
    let isa = host_isa(false)?;
    let mut m = JITModule::new(JITBuilder::with_isa(isa, default_libcall_names()));
    let (_, _, text) = define(&mut m, k, &k.name, true)?;
    // SAFETY: nothing was finalised or handed out.
    unsafe { m.free_memory() };
    Ok(text)
}
