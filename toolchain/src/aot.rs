//! Ahead-of-time builds of GPU code objects (`tk build`): per source file and target, the device
//! kernels of every entry of the file as a PTX module and the cubin ptxas assembles from it
//! (NVIDIA), or as an LLVM IR module and the code object LLVM and ld.lld make from it (AMD), plus
//! a `manifest.json` that tells a loader how to run each entry: its inputs and outputs, its
//! buffers, and for each device kernel its parameters and launch geometry.
//!
//! Files are written atomically (to a temporary name, then renamed), so an interrupted build
//! never leaves a truncated object behind.

use crate::target::{Options, Target};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use tk_abi::launch::GpuKernel;
use tk_codegen::ptx::{self, Launch};
use tk_ir::graph::Graph;
use tk_ir::kernel::Kernel;
use tk_ir::schedule::{BufferKind, Schedule};
use tk_runtime::RunError;

/// One entry point to build: its name and prepared graph (`tk_ir::graph::passes::prepare`).
pub struct Entry {
    pub name: String,
    pub graph: Graph,
}

/// A source file to build: the stem names its outputs (`<stem>.<target>.cubin`).
pub struct Source {
    pub path: PathBuf,
    pub stem: String,
    pub entries: Vec<Entry>,
}

/// What ptxas reported for one device kernel on one target.
#[derive(Clone, Debug)]
pub struct Resources {
    pub target: String,
    pub kernel: String,
    pub registers: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
    pub shared_bytes: u32,
}

/// The result of a build.
pub struct Built {
    /// Every file written, in order.
    pub files: Vec<PathBuf>,
    /// What ptxas reported for each NVIDIA kernel.
    pub resources: Vec<Resources>,
    /// What each AMD code object says about its kernels: (target, kernel).
    pub amd: Vec<(String, crate::tools::lld::KernelDesc)>,
}

pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RunError> {
    let err = |e: std::io::Error| RunError::File { path: path.display().to_string(), message: e.to_string() };
    let tmp = path.with_extension(format!(
        "{}.tmp{}",
        path.extension().and_then(|e| e.to_str()).unwrap_or(""),
        std::process::id()
    ));
    std::fs::write(&tmp, data).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })
}

fn dims(d: &[tk_ir::dims::Dim]) -> Value {
    Value::Array(d.iter().map(|x| Value::String(x.to_string())).collect())
}

fn launch_json(l: &Launch) -> Value {
    match l {
        Launch::Single => json!({ "kind": "single", "blocks": "1", "threads": 1 }),
        Launch::Elements { extent, threads } => json!({
            "kind": "elements",
            "extent": extent.to_string(),
            "threads": threads,
            "blocks": format!("ceil(({extent}) / {threads}), at least 1 (the kernel loops over the rest)"),
        }),
        Launch::Blocks { extent, threads } => json!({
            "kind": "blocks",
            "threads": threads,
            "blocks": extent.as_ref().map_or("1".to_string(), |e| format!("{e}, at least 1 (the kernel loops over the rest)")),
        }),
    }
}

fn entry_json(name: &str, s: &Schedule, kernels: &[Kernel], infos: &[GpuKernel]) -> Value {
    let g = &s.graph;
    let inputs: Vec<Value> =
        g.inputs.iter().map(|(n, d, sh)| json!({ "name": n, "dtype": d.name(), "shape": dims(sh) })).collect();
    let outputs: Vec<Value> = g
        .outputs
        .iter()
        .map(|(n, id)| {
            let node = g.node(*id);
            json!({ "name": n, "dtype": node.dtype.name(), "shape": dims(&node.shape) })
        })
        .collect();
    let buffers: Vec<Value> = s
        .buffers
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let kind = match b.kind {
                BufferKind::Input(k) => json!({ "input": k }),
                BufferKind::Output(k) => json!({ "output": k }),
                BufferKind::Temp { slot } => json!({ "temp": slot }),
            };
            json!({ "id": i, "dtype": b.dtype.name(), "shape": dims(&b.shape), "kind": kind })
        })
        .collect();
    let kjson: Vec<Value> = kernels
        .iter()
        .zip(infos)
        .map(|(k, info)| {
            let mut params: Vec<Value> = k
                .bufs
                .iter()
                .map(|b| json!({ "kind": "buffer", "buffer": b.id, "type": "u64", "writes": b.write }))
                .collect();
            params.extend(info.symbols.iter().map(|s| json!({ "kind": "dim", "symbol": s, "type": "s64" })));
            params.push(json!({
                "kind": "error",
                "type": "u64",
                "about": "4 zeroed i64 slots: a failed check stores its number + 1, the value and the bounds",
            }));
            let checks: Vec<Value> = info
                .checks
                .iter()
                .map(|c| json!({ "lo": c.lo.to_string(), "hi": c.hi.to_string(), "bytes": [c.loc.lo, c.loc.hi] }))
                .collect();
            json!({
                "name": info.name,
                "params": params,
                "launch": launch_json(&info.launch),
                "shared_bytes": info.shared_bytes,
                "checks": checks,
            })
        })
        .collect();
    json!({
        "name": name,
        "inputs": inputs,
        "outputs": outputs,
        "dims": g.dims,
        "buffers": buffers,
        "temp_slots": s.slots,
        "kernels": kjson,
    })
}

/// Builds every source for every GPU target into `out`, with the manifest.
pub fn build(sources: &[Source], targets: &[Target], opts: &Options, out: &Path) -> Result<Built, RunError> {
    let Some(&first) = targets.first() else {
        return Err(RunError::Argument { message: "no target to build for".into() });
    };
    if targets.contains(&Target::Cpu) {
        return Err(RunError::Argument {
            message: "`tk build` writes GPU code objects; the CPU compiles kernels when they run".into(),
        });
    }
    // Find the tools before writing anything.
    if targets.iter().any(|t| matches!(t, Target::Nvidia(_))) {
        crate::tools::ptxas::find(crate::tools::ptxas::Tool::Ptxas)?;
    }
    if targets.iter().any(|t| matches!(t, Target::Amd(_))) {
        crate::tools::lld::available()?;
    }
    std::fs::create_dir_all(out)
        .map_err(|e| RunError::File { path: out.display().to_string(), message: format!("creating it: {e}") })?;
    let mut files = Vec::new();
    let mut resources = Vec::new();
    let mut amd = Vec::new();
    let mut fjson = Vec::new();
    let compile_err = |src: &Source, e: tk_codegen::cpu::Unsupported| RunError::Compile {
        message: format!("{}: {}", src.path.display(), e.message),
        loc: Default::default(),
    };
    for (si, src) in sources.iter().enumerate() {
        // The kernels do not depend on the GPU: lower once per entry.
        let mut groups = Vec::new();
        let mut lowered = Vec::new();
        for e in &src.entries {
            let l = crate::target::lower(&e.graph, first, opts).map_err(|err| RunError::Compile {
                message: format!("{}: entry `{}`: {}", src.path.display(), e.name, err.message),
                loc: err.loc,
            })?;
            groups.push((format!("{}_", e.name), l.kernels.clone()));
            lowered.push((e.name.clone(), l));
        }
        let mut objects = serde_json::Map::new();
        let mut entries = Vec::new();
        for (ti, t) in targets.iter().enumerate() {
            tk_abi::progress::step(si * targets.len() + ti, sources.len() * targets.len());
            let mut write_file = |name: String, data: &[u8]| -> Result<String, RunError> {
                write_atomic(&out.join(&name), data)?;
                files.push(out.join(&name));
                Ok(name)
            };
            let infos: Vec<GpuKernel> = match t {
                Target::Nvidia(nt) => {
                    let m = ptx::module(&groups, *nt).map_err(|e| compile_err(src, e))?;
                    let a = crate::tools::ptxas::assemble(&m.text, *nt)?;
                    let ptx_name = write_file(format!("{}.{t}.ptx", src.stem), m.text.as_bytes())?;
                    let cubin_name = write_file(format!("{}.{t}.cubin", src.stem), &a.cubin)?;
                    let mut res = serde_json::Map::new();
                    for (kernel, registers, spill_stores, spill_loads, shared_bytes) in
                        crate::tools::ptxas::resources(&a.report)
                    {
                        res.insert(
                            kernel.clone(),
                            json!({ "registers": registers, "spill_stores": spill_stores, "spill_loads": spill_loads, "shared_bytes": shared_bytes }),
                        );
                        resources.push(Resources {
                            target: nt.name(),
                            kernel,
                            registers,
                            spill_stores,
                            spill_loads,
                            shared_bytes,
                        });
                    }
                    objects.insert(
                        nt.name(),
                        json!({ "ptx": ptx_name, "cubin": cubin_name, "ptx_version": nt.ptx_version(), "resources": res }),
                    );
                    m.kernels
                }
                Target::Amd(at) => {
                    let m = tk_codegen::llvm::module(&groups, *at).map_err(|e| compile_err(src, e))?;
                    let co = crate::tools::lld::code_object(&m)?;
                    let ll_name = write_file(format!("{}.{t}.ll", src.stem), m.ir.as_bytes())?;
                    let hsaco_name = write_file(format!("{}.{t}.hsaco", src.stem), &co.hsaco)?;
                    let mut res = serde_json::Map::new();
                    for k in &co.kernels {
                        res.insert(
                            k.name.clone(),
                            json!({
                                "vgprs": k.vgprs, "sgprs": k.sgprs, "vgpr_spills": k.vgpr_spills, "sgpr_spills": k.sgpr_spills,
                                "lds_bytes": k.lds_bytes, "scratch_bytes": k.scratch_bytes, "wave_size": k.wave_size,
                                "kernarg_bytes": k.kernarg_bytes,
                            }),
                        );
                        amd.push((t.to_string(), k.clone()));
                    }
                    objects.insert(
                        t.to_string(),
                        json!({
                            "llvm": ll_name,
                            "hsaco": hsaco_name,
                            "code_object": "v5",
                            "kernarg": "each kernel's params (8 bytes each), then the number of workgroups of the launch (i64)",
                            "resources": res,
                        }),
                    );
                    m.kernels
                }
                Target::Cpu => Vec::new(),
            };
            if ti == 0 {
                let mut at = 0;
                for (name, l) in &lowered {
                    entries.push(entry_json(name, &l.schedule, &l.kernels, &infos[at..at + l.kernels.len()]));
                    at += l.kernels.len();
                }
            }
        }
        fjson.push(json!({
            "source": src.path.display().to_string(),
            "objects": objects,
            "entries": entries,
        }));
    }
    let manifest = json!({
        "format": "tk-build-manifest",
        "version": 1,
        "tk": env!("CARGO_PKG_VERSION"),
        "build_id": crate::BUILD_ID,
        "files": fjson,
    });
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| RunError::File { path: "manifest.json".into(), message: e.to_string() })?;
    write_atomic(&out.join("manifest.json"), text.as_bytes())?;
    files.push(out.join("manifest.json"));
    Ok(Built { files, resources, amd })
}
