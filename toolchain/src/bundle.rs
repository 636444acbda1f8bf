//! Writing bundles (`.tkb`; docs/bundle.md): every entry's prepared graph and, per target, the
//! device code made from its kernels. Reading them is the runtime's (`tk_runtime::bundle`).

use crate::target::{Lowered, Options, Split, Target};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::Path;
use tk_codegen::cpu::Level;
use tk_ir::graph::Graph;
use tk_runtime::RunError;
use tk_runtime::bundle::{CPU_PLATFORMS, HEADER, MAGIC, OBJECT_X86_64_V3, TRAILER, VERSION, digest};

fn bad(path: &str, message: impl Into<String>) -> RunError {
    RunError::File { path: path.to_string(), message: message.into() }
}

/// One entry to put in a bundle: its name, source file and prepared graph.
pub struct Entry {
    pub name: String,
    pub source: String,
    pub graph: Graph,
}

fn dims_json(d: &[tk_ir::dims::Dim]) -> Value {
    Value::Array(d.iter().map(|x| Value::String(x.to_string())).collect())
}

/// The options a variant was built with; `split` is `[chunks, lanes, rows]` (older bundles wrote
/// `[lanes, rows]`, which reads as one chunk).
fn options_json(o: &Options, split: Split) -> Value {
    json!({
        "deterministic": o.deterministic,
        // The knobs `--opts` named; older bundles wrote every knob under "knobs".
        "knob_overrides": o.knobs.as_ref().map(|k| k.to_string()),
        "split": [split.chunks, split.lanes, split.rows],
    })
}

/// What was written.
pub struct Written {
    pub bytes: usize,
    pub variants: Vec<String>,
}

/// Builds a bundle of `entries` for `targets` (`Target::Cpu` means every CPU platform in
/// [`CPU_PLATFORMS`]) and writes it to `path` atomically.
pub fn build(entries: &[Entry], targets: &[Target], opts: &Options, path: &Path) -> Result<Written, RunError> {
    if entries.is_empty() {
        return Err(RunError::Argument { message: "a bundle needs at least one entry".into() });
    }
    if targets.iter().any(|t| matches!(t, Target::Nvidia(_))) {
        crate::tools::ptxas::find(crate::tools::ptxas::Tool::Ptxas)?;
    }
    if targets.iter().any(|t| matches!(t, Target::Amd(_))) {
        crate::tools::lld::available()?;
    }
    let mut data: Vec<u8> = Vec::new();
    let mut blob = |bytes: &[u8]| -> Value {
        while !data.len().is_multiple_of(16) {
            data.push(0);
        }
        let v = json!({ "offset": data.len(), "length": bytes.len() });
        data.extend_from_slice(bytes);
        v
    };
    let mut variants = Vec::new();
    let mut names = Vec::new();
    for (ti, t) in targets.iter().enumerate() {
        tk_abi::progress::step(ti, targets.len());
        let split = opts.split.unwrap_or_else(|| t.split());
        let vopts = Options { split: Some(split), ..opts.clone() };
        let lowered: Vec<Lowered> = entries
            .iter()
            .map(|e| {
                crate::target::lower(&e.graph, *t, &vopts).map_err(|err| RunError::Compile {
                    message: format!("entry `{}` for {t}: {}", e.name, err.message),
                    loc: err.loc,
                })
            })
            .collect::<Result<_, _>>()?;
        let compile_err = |m: String| RunError::Compile { message: m, loc: Default::default() };
        match t {
            Target::Cpu => {
                for (variant, triple) in CPU_PLATFORMS {
                    let mut ventries = Vec::new();
                    for l in &lowered {
                        let object = |level| {
                            tk_codegen::cpu::portable_object(&l.kernels, triple, level)
                                .map_err(|e| compile_err(format!("{triple}: {e}")))
                        };
                        let mut code = json!({ "object": blob(&object(Level::Baseline)?) });
                        // x86_64 also gets the x86-64-v3 code (AVX2, FMA), which the loader
                        // picks where the CPU has those features.
                        if triple.starts_with("x86_64") {
                            code[OBJECT_X86_64_V3] = blob(&object(Level::X86_64V3)?);
                        }
                        // With LLVM, x86_64 Linux also gets LLVM's code for x86-64-v3 and v4
                        // (what the runtime's loader takes); the loader prefers it where the CPU
                        // has the level. An entry LLVM cannot compile keeps Cranelift's code only.
                        #[cfg(feature = "llvm")]
                        if triple == "x86_64-unknown-linux-gnu" {
                            for (key, cpu) in tk_codegen::llvm::cpu::BUNDLE_LEVELS {
                                match tk_codegen::llvm::cpu::portable_object(&l.kernels, triple, cpu) {
                                    Ok(obj) => code[key] = blob(&obj),
                                    Err(tk_codegen::llvm::cpu::CpuTierError::Unsupported { .. }) => {}
                                    Err(e) => return Err(compile_err(format!("{triple} ({cpu}): {e}"))),
                                }
                            }
                        }
                        // And aarch64 (Linux and macOS) LLVM's code for the platform's baseline
                        // CPU, which the loader prefers on every aarch64 machine. The object is
                        // for another machine, so it is linked here once (not run) to be sure
                        // the runtime's loader takes it.
                        #[cfg(feature = "llvm")]
                        if let Some((_, cpu)) = tk_codegen::llvm::cpu::BUNDLE_AARCH64.iter().find(|(t, _)| *t == triple)
                        {
                            match tk_codegen::llvm::cpu::portable_object(&l.kernels, triple, cpu) {
                                Ok(obj) => {
                                    tk_runtime::loader::check(&obj, object::Architecture::Aarch64).map_err(|e| {
                                        compile_err(format!("{triple} ({cpu}): LLVM's object: {e} (a bug in tk)"))
                                    })?;
                                    code[tk_runtime::bundle::OBJECT_LLVM_AARCH64] = blob(&obj);
                                }
                                Err(tk_codegen::llvm::cpu::CpuTierError::Unsupported { .. }) => {}
                                Err(e) => return Err(compile_err(format!("{triple} ({cpu}): {e}"))),
                            }
                        }
                        ventries.push(json!({
                            "kernels": l.kernels.len(),
                            "digest": digest(&l.kernels),
                            "code": code,
                        }));
                    }
                    variants.push(json!({
                        "target": variant,
                        "triple": triple,
                        "lowering": "cpu",
                        "options": options_json(opts, split),
                        "entries": ventries,
                    }));
                    names.push(variant.to_string());
                }
            }
            Target::Nvidia(nt) => {
                let mut ventries = Vec::new();
                for l in &lowered {
                    let m = tk_codegen::ptx::module(&[(String::new(), l.kernels.clone())], *nt)
                        .map_err(|e| compile_err(e.message))?;
                    let a = crate::tools::ptxas::assemble(&m.text, *nt)?;
                    ventries.push(json!({
                        "kernels": l.kernels.len(),
                        "digest": digest(&l.kernels),
                        "code": { "ptx": blob(m.text.as_bytes()), "cubin": blob(&a.cubin) },
                    }));
                }
                variants.push(json!({
                    "target": nt.name(),
                    "lowering": "gpu",
                    "options": options_json(opts, split),
                    "entries": ventries,
                }));
                names.push(nt.name());
            }
            Target::Amd(at) => {
                let mut ventries = Vec::new();
                for l in &lowered {
                    let m = tk_codegen::llvm::module(&[(String::new(), l.kernels.clone())], *at)
                        .map_err(|e| compile_err(e.message))?;
                    let co = crate::tools::lld::code_object(&m)?;
                    ventries.push(json!({
                        "kernels": l.kernels.len(),
                        "digest": digest(&l.kernels),
                        "code": { "llvm": blob(m.ir.as_bytes()), "hsaco": blob(&co.hsaco) },
                    }));
                }
                variants.push(json!({
                    "target": at.name,
                    "lowering": "gpu",
                    "options": options_json(opts, split),
                    "entries": ventries,
                }));
                names.push(at.name.to_string());
            }
        }
    }
    let ejson: Vec<Value> = entries
        .iter()
        .map(|e| {
            let g = &e.graph;
            json!({
                "name": e.name,
                "source": e.source,
                "inputs": g.inputs.iter().map(|(n, d, s)| json!({ "name": n, "dtype": d.name(), "shape": dims_json(s) })).collect::<Vec<_>>(),
                "outputs": g.outputs.iter().map(|(n, id)| {
                    let node = g.node(*id);
                    json!({ "name": n, "dtype": node.dtype.name(), "shape": dims_json(&node.shape) })
                }).collect::<Vec<_>>(),
                "dims": g.dims,
                "graph": tk_ir::graph::text::print(g, &e.name),
            })
        })
        .collect();
    let manifest = json!({
        "format": "tk-bundle",
        "version": VERSION,
        "tk": env!("CARGO_PKG_VERSION"),
        "build_id": crate::BUILD_ID,
        "entries": ejson,
        "variants": variants,
    });
    let text = serde_json::to_vec(&manifest).map_err(|e| bad(&path.display().to_string(), e.to_string()))?;
    let mut out = Vec::with_capacity(HEADER + text.len() + data.len() + TRAILER);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&text);
    out.extend_from_slice(&data);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    crate::aot::write_atomic(path, &out)?;
    Ok(Written { bytes: out.len(), variants: names })
}
