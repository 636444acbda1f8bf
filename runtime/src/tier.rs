//! The CPU's tier policy: which code CPU kernels run (Cranelift's, LLVM's, or Cranelift's first
//! and LLVM's once a kernel is hot). The devices and the toolchain both read it.

/// Which tier CPU kernels run (`TK_CPU_TIER`, or the device name's `tier=` option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierPolicy {
    /// Cranelift's code only.
    Cranelift,
    /// LLVM's code from the first launch (compiled when the kernels are loaded); a kernel LLVM
    /// cannot compile keeps Cranelift's.
    Llvm,
    /// Cranelift's code at once; a kernel launched `devices::cpu::TIER_UP_CALLS` times is recompiled by
    /// LLVM in the background and its code swapped in when ready (the default in builds with
    /// LLVM).
    Auto,
}

impl TierPolicy {
    pub fn name(self) -> &'static str {
        match self {
            TierPolicy::Cranelift => "cranelift",
            TierPolicy::Llvm => "llvm",
            TierPolicy::Auto => "auto",
        }
    }
    /// Parses `cranelift`, `llvm` or `auto`.
    pub fn parse(s: &str) -> Result<TierPolicy, String> {
        match s {
            "cranelift" => Ok(TierPolicy::Cranelift),
            "llvm" => Ok(TierPolicy::Llvm),
            "auto" => Ok(TierPolicy::Auto),
            _ => Err(format!("unknown CPU tier `{s}`: the tiers are cranelift, llvm and auto")),
        }
    }
    /// `TK_CPU_TIER`, else `auto`.
    pub fn from_env() -> Result<TierPolicy, String> {
        match std::env::var("TK_CPU_TIER") {
            Ok(v) if !v.is_empty() => TierPolicy::parse(&v).map_err(|m| format!("TK_CPU_TIER: {m}")),
            _ => Ok(TierPolicy::Auto),
        }
    }
}
