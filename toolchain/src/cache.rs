//! The kernel cache: compiled CPU kernels in memory and on disk.
//!
//! The key of an entry is the text of the device kernels' IR (knobs included), the compile
//! target (triple and enabled ISA features) and the tk build id (version, git commit, dirty
//! flag). An entry on disk is a relocatable object produced by the same translation as the JIT,
//! loaded by the runtime's loader (`tk_runtime::loader`) through the CPU device. Entries are written to a temporary file and
//! renamed, so concurrent writers never expose a half-written entry; every entry carries its full
//! key and a checksum, and an entry that does not verify or load is compiled again and replaced.
//!
//! Where: `$TK_CACHE_DIR`, else the user cache directory (`~/.cache/tk` on Linux,
//! `~/Library/Caches/tk` on macOS). `TK_CACHE=0` disables the cache (memory and disk).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tk_abi::code::Code;
use tk_ir::kernel::Kernel;
use tk_runtime::RunError;
use tk_runtime::device::{Device, Executable};
use tk_runtime::devices::cpu::TierPolicy;

/// tk's build id: version, git commit and a dirty flag (from the build script).
pub use crate::BUILD_ID;

const MAGIC: &[u8; 8] = b"TKCACHE1";

/// Counters of what the cache did, for tests and `--time`.
#[derive(Debug, Default)]
pub struct Stats {
    pub memory_hits: AtomicUsize,
    pub disk_hits: AtomicUsize,
    pub compiled: AtomicUsize,
    /// Entries on disk that did not verify or load (and were replaced).
    pub rejected: AtomicUsize,
}

pub struct KernelCache {
    enabled: bool,
    dir: Option<PathBuf>,
    target: String,
    memory: Mutex<HashMap<String, Arc<dyn Executable>>>,
    pub stats: Stats,
}

fn hash_hex(s: &[u8]) -> String {
    let mut out = String::new();
    for salt in [0u64, 0x9e37_79b9_7f4a_7c15] {
        let mut h = std::hash::DefaultHasher::new();
        salt.hash(&mut h);
        s.hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

fn checksum(s: &[u8]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// Splits an entry into (key, object) when its magic and checksum verify.
fn parse_entry(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let body_len = bytes.len().checked_sub(8)?;
    let (body, sum) = bytes.split_at(body_len);
    if checksum(body) != u64::from_le_bytes(sum.try_into().ok()?) || !body.starts_with(MAGIC) {
        return None;
    }
    let rest = &body[MAGIC.len()..];
    let klen = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
    let key = std::str::from_utf8(rest.get(8..8 + klen)?).ok()?;
    Some((key, rest.get(8 + klen..)?))
}

fn make_entry(key: &str, obj: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(MAGIC.len() + 16 + key.len() + obj.len());
    v.extend_from_slice(MAGIC);
    v.extend_from_slice(&(key.len() as u64).to_le_bytes());
    v.extend_from_slice(key.as_bytes());
    v.extend_from_slice(obj);
    let sum = checksum(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

impl KernelCache {
    /// The process's cache, configured from the environment.
    pub fn global() -> Arc<KernelCache> {
        static GLOBAL: OnceLock<Arc<KernelCache>> = OnceLock::new();
        GLOBAL.get_or_init(|| Arc::new(KernelCache::from_env())).clone()
    }

    /// `TK_CACHE=0` disables caching; `TK_CACHE_DIR` overrides the directory.
    pub fn from_env() -> KernelCache {
        let enabled = std::env::var("TK_CACHE").map(|v| v != "0").unwrap_or(true);
        let dir =
            std::env::var_os("TK_CACHE_DIR").map(PathBuf::from).or_else(|| dirs::cache_dir().map(|d| d.join("tk")));
        KernelCache::new(enabled, dir, tk_codegen::cpu::host_description())
    }

    /// A cache in `dir` (memory only when `None`) for a compile target.
    pub fn new(enabled: bool, dir: Option<PathBuf>, target: String) -> KernelCache {
        KernelCache { enabled, dir, target, memory: Mutex::new(HashMap::new()), stats: Stats::default() }
    }

    /// The full key of a set of device kernels.
    pub fn key(&self, kernels: &[Kernel]) -> String {
        let mut k = format!("tk kernel cache\ntarget: {}\nbuild: {BUILD_ID}\n", self.target);
        for kern in kernels {
            k.push_str(&tk_ir::kernel::print(kern));
        }
        k
    }

    /// The file of an entry.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join("cpu").join(format!("{}.tko", hash_hex(key.as_bytes()))))
    }

    /// Compiled kernels loaded onto the CPU device `dev`: from memory, from disk, or compiled
    /// now (and stored).
    ///
    /// The kernels start on Cranelift's code; under the device's tier policy (`TK_CPU_TIER`,
    /// `cpu,tier=...`) LLVM's code replaces it (see `tk_runtime::devices::cpu::TierPolicy`), and
    /// LLVM's objects are cached on disk beside Cranelift's (`cpu-llvm/`).
    pub fn get_or_compile(&self, dev: &dyn Device, kernels: &[Kernel]) -> Result<Arc<dyn Executable>, RunError> {
        let policy = dev.cpu_tier().unwrap_or(TierPolicy::Cranelift);
        if policy == TierPolicy::Llvm && !tk_codegen::llvm::cpu::AVAILABLE {
            return Err(no_llvm());
        }
        // The runtime's loader takes LLVM's objects on x86_64 and aarch64: elsewhere `auto` stays
        // on Cranelift rather than compile code it cannot load.
        let loads_llvm = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));
        let policy = if policy == TierPolicy::Auto && !loads_llvm { TierPolicy::Cranelift } else { policy };
        let e = self.cranelift(dev, kernels, policy)?;
        #[cfg(feature = "llvm")]
        if policy != TierPolicy::Cranelift
            && let Some(x) = e.as_any().downcast_ref::<tk_runtime::devices::cpu::CpuExecutable>()
        {
            x.enable_tiers(policy, self.recompiler());
        }
        Ok(e)
    }

    /// Compiles one kernel with LLVM for this machine (an object whose kernel is `tk_k0`), or
    /// takes the object from the disk cache.
    #[cfg(feature = "llvm")]
    fn recompiler(&self) -> Arc<tk_runtime::devices::cpu::Recompiler> {
        let dir = self.dir.clone().filter(|_| self.enabled);
        Arc::new(move |k: &Kernel| {
            let host = tk_codegen::llvm::cpu::host();
            let key = format!(
                "tk kernel cache, LLVM tier\ntarget: {} {} {}\nbuild: {BUILD_ID}\n{}",
                host.triple,
                host.cpu,
                host.features,
                tk_ir::kernel::print(k)
            );
            let path = dir.as_ref().map(|d| d.join("cpu-llvm").join(format!("{}.tko", hash_hex(key.as_bytes()))));
            if let Some(p) = &path
                && let Ok(bytes) = std::fs::read(p)
                && let Some((_, obj)) = parse_entry(&bytes).filter(|(k, _)| *k == key)
            {
                return Ok(obj.to_vec());
            }
            let obj = tk_codegen::llvm::cpu::object(std::slice::from_ref(k)).map_err(|e| e.to_string())?;
            if let Some(p) = &path {
                // Best effort, as for Cranelift's objects.
                let _ = write_atomically(p, &make_entry(&key, &obj));
            }
            Ok(obj)
        })
    }

    /// Cranelift's code for the kernels: from memory (one executable per tier policy), from
    /// disk, or compiled now (and stored).
    fn cranelift(
        &self,
        dev: &dyn Device,
        kernels: &[Kernel],
        policy: TierPolicy,
    ) -> Result<Arc<dyn Executable>, RunError> {
        let compile_err =
            |e: tk_codegen::cpu::CodegenError| RunError::Compile { message: e.to_string(), loc: Default::default() };
        let jit = |kernels: &[Kernel]| dev.load(kernels, Code::Jit(&jit(kernels)?));
        if !self.enabled || !self.target_is_host() {
            self.stats.compiled.fetch_add(1, Ordering::Relaxed);
            return jit(kernels);
        }
        let key = self.key(kernels);
        let mkey = format!("{key}tier: {}\n", policy.name());
        if let Some(e) = self.memory.lock().ok().and_then(|m| m.get(&mkey).cloned()) {
            self.stats.memory_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(e);
        }
        let path = self.path(&key);
        if let Some(p) = &path
            && let Ok(bytes) = std::fs::read(p)
        {
            match parse_entry(&bytes).filter(|(k, _)| *k == key) {
                Some((_, obj)) => match dev.load(kernels, Code::CpuObject(obj)) {
                    Ok(e) => {
                        self.stats.disk_hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(self.remember(mkey, e));
                    }
                    Err(_) => {
                        self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    }
                },
                None => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.stats.compiled.fetch_add(1, Ordering::Relaxed);
        let obj = tk_codegen::cpu::host_object(kernels).map_err(compile_err)?;
        if let Some(p) = &path {
            // Best effort: a cache that cannot be written only costs time.
            let _ = write_atomically(p, &make_entry(&key, &obj));
        }
        let e = match dev.load(kernels, Code::CpuObject(&obj)) {
            Ok(e) => e,
            // An object the loader cannot handle: the JIT compiles the same code in memory.
            Err(_) => jit(kernels)?,
        };
        Ok(self.remember(mkey, e))
    }

    fn remember(&self, key: String, e: Arc<dyn Executable>) -> Arc<dyn Executable> {
        if let Ok(mut m) = self.memory.lock() {
            m.insert(key, e.clone());
        }
        e
    }

    /// Whether entries are for this machine (a cache built for another target only stores keys).
    fn target_is_host(&self) -> bool {
        self.target == tk_codegen::cpu::host_description()
    }
}

/// The error for a forced LLVM tier in a build without LLVM.
pub(crate) fn no_llvm() -> RunError {
    RunError::Argument {
        message: "the CPU's LLVM tier was asked for (TK_CPU_TIER=llvm or cpu,tier=llvm), but this build of tk has no \
                  LLVM: build it with `--features llvm` (scripts/setup installs LLVM 19), or use \
                  TK_CPU_TIER=cranelift or auto"
            .into(),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let r = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// Device kernels compiled by the JIT into this process's memory (what the cache compiles when it
/// keeps nothing, and the CPU's code when no cache is wanted).
pub fn jit(kernels: &[Kernel]) -> Result<Arc<dyn tk_abi::code::HostCode>, RunError> {
    Ok(Arc::new(
        tk_codegen::cpu::jit(kernels)
            .map_err(|e| RunError::Compile { message: e.to_string(), loc: Default::default() })?,
    ))
}
