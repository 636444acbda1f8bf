//! Bundles (`.tkb`): the entries of one or more `.tk` files compiled ahead of time for several
//! targets, in one checksummed file a program loads without compiling anything
//! (`docs/bundle.md` specifies the format).
//!
//! A bundle holds, per entry, its prepared graph (the text form of the graph IR) and signature,
//! and per target a *variant*: the options the entry was lowered with and, per entry, the device
//! code (a relocatable object for a CPU platform, PTX and a cubin for an NVIDIA architecture)
//! with the digest of the kernel IR it was made from. Loading an entry lowers the graph again
//! with the variant's options (the schedule and kernel IR are deterministic), checks the digest,
//! and loads the stored code onto the device: nothing is code-generated. Writing bundles is the
//! toolchain's (`tk_toolchain::bundle`).

use crate::device::{Code, Device};
use crate::error::RunError;
use crate::runtime::Compiled;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use tk_abi::target::{Options, Split, Target};

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"TKBUNDLE";
/// The format version this tk writes and reads.
pub const VERSION: u32 = 1;
/// The bytes of the header and of the trailing checksum.
pub const HEADER: usize = 32;
pub const TRAILER: usize = 32;

/// The CPU platforms `--target cpu` builds for (Cranelift objects the loader maps).
pub const CPU_PLATFORMS: [(&str, &str); 4] = [
    ("cpu-x86_64-linux", "x86_64-unknown-linux-gnu"),
    ("cpu-aarch64-linux", "aarch64-unknown-linux-gnu"),
    ("cpu-aarch64-macos", "aarch64-apple-darwin"),
    ("cpu-x86_64-macos", "x86_64-apple-darwin"),
];

/// The key of an x86_64 entry's second object, compiled for x86-64-v3 (AVX2, FMA, BMI1/2, ...)
/// beside the baseline `object`.
pub const OBJECT_X86_64_V3: &str = "object_x86_64_v3";

/// The keys of an x86_64 Linux entry's LLVM objects (a tk built with LLVM makes them), for
/// x86-64-v3 and x86-64-v4 (AVX-512).
pub const OBJECT_LLVM_X86_64_V3: &str = "object_llvm_x86_64_v3";
pub const OBJECT_LLVM_X86_64_V4: &str = "object_llvm_x86_64_v4";

/// The key of an aarch64 entry's LLVM object (Linux and macOS; a tk built with LLVM makes it):
/// an ELF object for the platform's baseline CPU, which every aarch64 machine of the platform
/// runs.
pub const OBJECT_LLVM_AARCH64: &str = "object_llvm_aarch64";

/// The CPU levels whose code a load may take.
#[derive(Clone, Copy, Debug)]
struct Levels {
    v3: bool,
    v4: bool,
    /// LLVM's code (unless `TK_CPU_TIER=cranelift`).
    llvm: bool,
    /// An aarch64 CPU.
    aarch64: bool,
}

impl Levels {
    fn host() -> Levels {
        let llvm = crate::tier::TierPolicy::from_env() != Ok(crate::tier::TierPolicy::Cranelift);
        let aarch64 = cfg!(target_arch = "aarch64") && std::env::var_os("TK_CPU_BASELINE").is_none_or(|v| v != "1");
        Levels { v3: host_runs_x86_64_v3(), v4: host_runs_x86_64_v4(), llvm, aarch64 }
    }
    fn baseline() -> Levels {
        Levels { v3: false, v4: false, llvm: false, aarch64: false }
    }
}

/// Which CPU object a load takes.
#[derive(Clone, Copy, Debug)]
enum Choice<'a> {
    /// The best one for these levels.
    Levels(Levels),
    /// The one of this manifest key.
    Key(&'a str),
}

/// The key of the CPU object to load from an entry's code: LLVM's object on aarch64, LLVM's
/// x86-64-v4 or v3 object where the CPU has the level and the entry has it, else Cranelift's
/// x86-64-v3 one, else the baseline one; None for GPU code.
fn cpu_object(code: &Value, l: Levels) -> Option<&'static str> {
    if l.llvm && l.aarch64 && code.get(OBJECT_LLVM_AARCH64).is_some() {
        Some(OBJECT_LLVM_AARCH64)
    } else if l.llvm && l.v4 && code.get(OBJECT_LLVM_X86_64_V4).is_some() {
        Some(OBJECT_LLVM_X86_64_V4)
    } else if l.llvm && l.v3 && code.get(OBJECT_LLVM_X86_64_V3).is_some() {
        Some(OBJECT_LLVM_X86_64_V3)
    } else if l.v3 && code.get(OBJECT_X86_64_V3).is_some() {
        Some(OBJECT_X86_64_V3)
    } else if code.get("object").is_some() {
        Some("object")
    } else {
        None
    }
}

/// Whether this CPU runs x86-64-v4 code: x86-64-v3 and AVX-512 F, BW, CD, DQ and VL (the x86-64
/// psABI's list for the level) and not disabled by `TK_CPU_BASELINE=1`.
pub fn host_runs_x86_64_v4() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        host_runs_x86_64_v3()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512cd")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether this CPU runs x86-64-v3 code: every feature of that level (the x86-64 psABI's list)
/// and not disabled by `TK_CPU_BASELINE=1`, which makes bundles load their baseline code.
pub fn host_runs_x86_64_v3() -> bool {
    if std::env::var_os("TK_CPU_BASELINE").is_some_and(|v| v == "1") {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("sse3")
            && std::arch::is_x86_feature_detected!("ssse3")
            && std::arch::is_x86_feature_detected!("sse4.1")
            && std::arch::is_x86_feature_detected!("sse4.2")
            && std::arch::is_x86_feature_detected!("popcnt")
            && std::arch::is_x86_feature_detected!("avx")
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("lzcnt")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The variant name of this machine's CPU (`cpu-x86_64-linux`, `cpu-aarch64-macos`, ...).
pub fn host_cpu_variant() -> String {
    format!("cpu-{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

pub(crate) fn bad(path: &str, message: impl Into<String>) -> RunError {
    RunError::File { path: path.to_string(), message: message.into() }
}

/// The digest of the kernel IR a variant's code was made from (checked when loading), and of the
/// host helpers CPU code may call (`tk_abi::helpers::HELPERS`): code from a tk whose helpers
/// differ, e.g. before the legalize pass took over the integer power, is rebuilt, not loaded.
pub fn digest(kernels: &[tk_ir::kernel::Kernel]) -> String {
    let mut h = Sha256::new();
    for (name, params, ret) in tk_abi::helpers::HELPERS {
        h.update(format!("{name}({params}) -> {ret};").as_bytes());
    }
    for k in kernels {
        h.update(tk_ir::kernel::print(k).as_bytes());
    }
    hex(&h.finalize())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A loaded bundle: its manifest and data, checked.
pub struct Bundle {
    path: String,
    manifest: Value,
    data: Vec<u8>,
}

/// An entry's signature, as the bundle records it.
#[derive(Clone, Debug)]
pub struct Signature {
    pub name: String,
    pub source: String,
    /// (name, dtype, shape) of each input and output; shapes are dimension expressions.
    pub inputs: Vec<(String, String, Vec<String>)>,
    pub outputs: Vec<(String, String, Vec<String>)>,
    /// Explicit dimension parameters.
    pub dims: Vec<String>,
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

impl Bundle {
    /// Reads and checks a bundle file.
    pub fn load(path: &Path) -> Result<Bundle, RunError> {
        let p = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| bad(&p, e.to_string()))?;
        Bundle::from_bytes(bytes, &p)
    }

    /// Checks a bundle's bytes: magic, version, checksum, manifest, code ranges. `name` names it
    /// in errors.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Bundle, RunError> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(bad(name, "not a tk bundle (it does not start with TKBUNDLE)"));
        }
        if bytes.len() < HEADER + TRAILER {
            return Err(bad(name, format!("the bundle is truncated ({} bytes)", bytes.len())));
        }
        let u32_at = |o: usize| u32::from_le_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]);
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[o..o + 8]);
            u64::from_le_bytes(b)
        };
        let version = u32_at(8);
        if version != VERSION {
            return Err(bad(
                name,
                format!(
                    "bundle format version {version}; this tk ({}) reads version {VERSION}: rebuild the bundle with this tk",
                    env!("CARGO_PKG_VERSION")
                ),
            ));
        }
        let (mlen, dlen) = (u64_at(16), u64_at(24));
        let expect = (HEADER as u64)
            .checked_add(mlen)
            .and_then(|x| x.checked_add(dlen))
            .and_then(|x| x.checked_add(TRAILER as u64));
        if expect != Some(bytes.len() as u64) {
            let said = match expect {
                Some(n) => format!("the header says {n} bytes"),
                None => "the header's sizes overflow".to_string(),
            };
            let what = match expect {
                Some(n) if n > bytes.len() as u64 => "truncated",
                Some(_) => "followed by trailing bytes",
                None => "corrupt",
            };
            return Err(bad(
                name,
                format!("the bundle is {what}: {said}, the file has {}; build it again", bytes.len()),
            ));
        }
        let body = bytes.len() - TRAILER;
        if Sha256::digest(&bytes[..body]).as_slice() != &bytes[body..] {
            return Err(bad(name, "the bundle is corrupt: its SHA-256 checksum does not match its contents"));
        }
        let mend = HEADER + mlen as usize;
        let manifest: Value = serde_json::from_slice(&bytes[HEADER..mend])
            .map_err(|e| bad(name, format!("the manifest is not valid JSON: {e}")))?;
        if manifest["format"] != "tk-bundle" {
            return Err(bad(name, "the manifest is not a tk bundle manifest"));
        }
        let data = bytes[mend..body].to_vec();
        let b = Bundle { path: name.to_string(), manifest, data };
        // Every code range lies inside the data.
        for v in b.variants() {
            for e in v["entries"].as_array().into_iter().flatten() {
                for (_, r) in e["code"].as_object().into_iter().flatten() {
                    b.blob(r)?;
                }
            }
        }
        Ok(b)
    }

    fn variants(&self) -> Vec<&Value> {
        self.manifest["variants"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
    }

    fn blob(&self, r: &Value) -> Result<&[u8], RunError> {
        let (Some(o), Some(l)) = (r["offset"].as_u64(), r["length"].as_u64()) else {
            return Err(bad(&self.path, "a code range without offset and length"));
        };
        let end = o.checked_add(l).filter(|&e| e <= self.data.len() as u64);
        match end {
            Some(e) => Ok(&self.data[o as usize..e as usize]),
            None => Err(bad(
                &self.path,
                format!("a code range {o}+{l} lies outside the bundle's {} data bytes", self.data.len()),
            )),
        }
    }

    /// The tk version that wrote the bundle.
    pub fn tk_version(&self) -> &str {
        self.manifest["tk"].as_str().unwrap_or("?")
    }

    /// The targets the bundle has code for (`cpu-x86_64-linux`, `sm_86`, ...).
    pub fn targets(&self) -> Vec<String> {
        self.variants().iter().filter_map(|v| v["target"].as_str().map(str::to_string)).collect()
    }

    /// Every entry's signature, in order.
    pub fn entries(&self) -> Vec<Signature> {
        let side = |v: &Value| -> Vec<(String, String, Vec<String>)> {
            v.as_array()
                .into_iter()
                .flatten()
                .map(|x| {
                    (
                        x["name"].as_str().unwrap_or("").into(),
                        x["dtype"].as_str().unwrap_or("").into(),
                        str_list(&x["shape"]),
                    )
                })
                .collect()
        };
        self.manifest["entries"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| Signature {
                name: e["name"].as_str().unwrap_or("").into(),
                source: e["source"].as_str().unwrap_or("").into(),
                inputs: side(&e["inputs"]),
                outputs: side(&e["outputs"]),
                dims: str_list(&e["dims"]),
            })
            .collect()
    }

    /// The variant name for a device.
    fn variant_for(dev: &dyn Device) -> String {
        match dev.compile_target() {
            Target::Cpu => host_cpu_variant(),
            t => t.to_string(),
        }
    }

    /// Loads entry `name` onto `dev` from the variant for the device's target. On an x86_64 CPU
    /// that runs x86-64-v4 or v3 code, LLVM's object for that level is loaded where the bundle
    /// has one (not under `TK_CPU_TIER=cranelift`), else Cranelift's x86-64-v3 object, else the
    /// baseline one.
    pub fn load_entry(&self, dev: &dyn Device, name: &str) -> Result<Compiled, RunError> {
        self.load_code(dev, name, Choice::Levels(Levels::host()))
    }

    /// Which CPU object [`Bundle::load_entry`] takes for entry `name` on this machine (`object`,
    /// [`OBJECT_X86_64_V3`], [`OBJECT_LLVM_X86_64_V3`], [`OBJECT_LLVM_X86_64_V4`] or
    /// [`OBJECT_LLVM_AARCH64`]), or None when
    /// the entry has no code for the CPU of `dev`'s platform.
    pub fn cpu_object_for(&self, dev: &dyn Device, name: &str) -> Option<&'static str> {
        let entries = self.manifest["entries"].as_array()?;
        let ei = entries.iter().position(|e| e["name"] == name)?;
        let want = Bundle::variant_for(dev);
        let v = self.variants().into_iter().find(|v| v["target"] == want.as_str())?;
        cpu_object(&v["entries"][ei]["code"], Levels::host())
    }

    /// [`Bundle::load_entry`], but CPU code always from the baseline object (what
    /// `TK_CPU_BASELINE=1` does for every load).
    pub fn load_entry_baseline(&self, dev: &dyn Device, name: &str) -> Result<Compiled, RunError> {
        self.load_code(dev, name, Choice::Levels(Levels::baseline()))
    }

    /// [`Bundle::load_entry`] with the CPU object of manifest key `key` (for tests and tools
    /// that compare a bundle's objects); an error when the entry has no such object.
    pub fn load_entry_object(&self, dev: &dyn Device, name: &str, key: &str) -> Result<Compiled, RunError> {
        self.load_code(dev, name, Choice::Key(key))
    }

    /// The manifest keys of entry `name`'s code for the CPU of `dev`'s platform.
    pub fn cpu_objects(&self, dev: &dyn Device, name: &str) -> Vec<String> {
        let Some(entries) = self.manifest["entries"].as_array() else { return Vec::new() };
        let Some(ei) = entries.iter().position(|e| e["name"] == name) else { return Vec::new() };
        let want = Bundle::variant_for(dev);
        let Some(v) = self.variants().into_iter().find(|v| v["target"] == want.as_str()) else { return Vec::new() };
        v["entries"][ei]["code"].as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
    }

    fn load_code(&self, dev: &dyn Device, name: &str, choice: Choice<'_>) -> Result<Compiled, RunError> {
        let entries = self.manifest["entries"].as_array().cloned().unwrap_or_default();
        let Some(ei) = entries.iter().position(|e| e["name"] == name) else {
            let names: Vec<String> = self.entries().into_iter().map(|s| s.name).collect();
            return Err(RunError::Argument {
                message: format!("{} has no entry `{name}`; its entries are: {}", self.path, names.join(", ")),
            });
        };
        let want = Bundle::variant_for(dev);
        let Some(v) = self.variants().into_iter().find(|v| v["target"] == want.as_str()) else {
            return Err(RunError::Argument {
                message: format!(
                    "{} has no code for {} (target {want}); it has code for: {}",
                    self.path,
                    dev.name(),
                    self.targets().join(", ")
                ),
            });
        };
        let corrupt = |m: String| bad(&self.path, m);
        let (graph, _) = tk_ir::graph::text::parse(entries[ei]["graph"].as_str().unwrap_or(""))
            .map_err(|e| corrupt(format!("entry `{name}`: its graph does not parse: {e}")))?;
        let o = &v["options"];
        // `knob_overrides`: the knobs `--opts` named; `knobs` (older bundles): every knob.
        let knobs = match (o["knob_overrides"].as_str(), o["knobs"].as_str()) {
            (Some(k), _) => Some(k.parse().map_err(|e| corrupt(format!("knobs `{k}`: {e}")))?),
            (None, Some(k)) => {
                let all: tk_ir::kernel::Knobs = k.parse().map_err(|e| corrupt(format!("knobs `{k}`: {e}")))?;
                Some((&all).into())
            }
            (None, None) => None,
        };
        // `[chunks, lanes, rows]`; bundles before chunks wrote `[lanes, rows]` (one chunk).
        let split = o["split"].as_array().and_then(|a| {
            let v: Vec<i64> = a.iter().map(|x| x.as_i64()).collect::<Option<_>>()?;
            match v.as_slice() {
                [lanes, rows] => Some(Split { chunks: 1, lanes: *lanes, rows: *rows }),
                [chunks, lanes, rows] => Some(Split { chunks: *chunks, lanes: *lanes, rows: *rows }),
                _ => None,
            }
        });
        let opts = Options { knobs, deterministic: o["deterministic"].as_bool().unwrap_or(false), split };
        let lowered = tk_abi::target::lower(&graph, dev.compile_target(), &opts)?;
        let ve = &v["entries"][ei];
        if ve["digest"].as_str() != Some(digest(&lowered.kernels).as_str()) {
            return Err(corrupt(format!(
                "entry `{name}` was built by tk {} (build {}), whose kernels differ from this tk's ({}): rebuild the \
                 bundle with this tk",
                self.tk_version(),
                self.manifest["build_id"].as_str().unwrap_or("?"),
                env!("CARGO_PKG_VERSION")
            )));
        }
        let code = &ve["code"];
        let key = match choice {
            Choice::Levels(l) => cpu_object(code, l),
            Choice::Key(k) if code.get(k).is_some() => Some(k),
            Choice::Key(k) => {
                return Err(RunError::Argument { message: format!("{}: entry `{name}` has no `{k}` code", self.path) });
            }
        };
        let code = if let Some(key) = key {
            Code::CpuObject(self.blob(&code[key])?)
        } else if code.get("hsaco").is_some() {
            Code::Hsaco(self.blob(&code["hsaco"])?)
        } else if !dev.accepts().contains(&crate::device::CodeKind::Cubin) || code.get("cubin").is_none() {
            let text =
                std::str::from_utf8(self.blob(&code["ptx"])?).map_err(|_| corrupt("the PTX is not UTF-8".into()))?;
            Code::Ptx(text)
        } else {
            Code::Cubin(self.blob(&code["cubin"])?)
        };
        Compiled::load(dev, name, lowered, code)
    }

    /// What the bundle holds, for `tk inspect`.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: tk bundle, format version {VERSION}, written by tk {} (build {}), {} bytes of code, checksum ok",
            self.path,
            self.tk_version(),
            self.manifest["build_id"].as_str().unwrap_or("?"),
            self.data.len()
        );
        let _ = writeln!(s, "\nentries:");
        let ty = |(n, d, sh): &(String, String, Vec<String>)| {
            if sh.is_empty() { format!("{n}: {d}") } else { format!("{n}: {d}[{}]", sh.join(", ")) }
        };
        for e in self.entries() {
            let dims = if e.dims.is_empty() { String::new() } else { format!("<{}>", e.dims.join(", ")) };
            let ins: Vec<String> = e.inputs.iter().map(ty).collect();
            let outs: Vec<String> = e.outputs.iter().map(ty).collect();
            let _ = writeln!(s, "  {}{dims}({}) -> ({})    from {}", e.name, ins.join(", "), outs.join(", "), e.source);
        }
        let _ = writeln!(s, "\ncode:");
        let names: Vec<String> = self.entries().into_iter().map(|e| e.name).collect();
        for v in self.variants() {
            let o = &v["options"];
            let _ = writeln!(
                s,
                "  {}{}: {} lowering, split {}, {}{}",
                v["target"].as_str().unwrap_or("?"),
                v["triple"].as_str().map(|t| format!(" ({t})")).unwrap_or_default(),
                v["lowering"].as_str().unwrap_or("?"),
                o["split"],
                if o["deterministic"] == true { "deterministic" } else { "default reductions" },
                o["knob_overrides"]
                    .as_str()
                    .or(o["knobs"].as_str())
                    .map(|k| format!(", knobs {k}"))
                    .unwrap_or_default(),
            );
            for (i, e) in v["entries"].as_array().into_iter().flatten().enumerate() {
                let parts: Vec<String> = e["code"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, r)| format!("{k} {} bytes", r["length"].as_u64().unwrap_or(0)))
                    .collect();
                let _ = writeln!(
                    s,
                    "    {:<24} {} device kernel(s), {}",
                    names.get(i).map_or("?", String::as_str),
                    e["kernels"].as_u64().unwrap_or(0),
                    parts.join(", ")
                );
            }
        }
        s
    }
}
