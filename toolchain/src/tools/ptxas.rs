//! NVIDIA's external tools: `ptxas` (PTX -> cubin) and `nvdisasm` (cubin -> SASS text).
//!
//! A tool is found through its environment variable (`TK_PTXAS`, `TK_NVDISASM`), then `PATH`,
//! then the project's Python environment `.tools/venv`, where `scripts/setup` installs both from
//! NVIDIA's PyPI wheels (they run without a GPU). On macOS there is no ptxas: Mac users build
//! cubins ahead of time on Linux, or ship PTX for the driver to compile.

use super::{tempdir, write};
use std::path::{Path, PathBuf};
use std::process::Command;
use tk_codegen::ptx;
use tk_runtime::RunError;

/// An NVIDIA command-line tool.
#[derive(Clone, Copy, Debug)]
pub enum Tool {
    Ptxas,
    Nvdisasm,
}

impl Tool {
    fn name(self) -> &'static str {
        match self {
            Tool::Ptxas => "ptxas",
            Tool::Nvdisasm => "nvdisasm",
        }
    }
    fn env(self) -> &'static str {
        match self {
            Tool::Ptxas => "TK_PTXAS",
            Tool::Nvdisasm => "TK_NVDISASM",
        }
    }
}

/// The venvs to search: `.tools/venv` in the current directory and its ancestors, then in the
/// source tree tk was built from.
fn venvs() -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    roots.extend(src.ancestors().map(Path::to_path_buf));
    roots.into_iter().map(|r| r.join(".tools/venv")).filter(|v| v.is_dir()).collect()
}

/// The tool inside a venv: NVIDIA's wheels put it in `site-packages/nvidia/<package>/bin/`
/// (`cuda_nvcc` for ptxas 12.x, `cu13` for the 13.x tools).
fn in_venv(venv: &Path, tool: Tool) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    let mut found: Vec<PathBuf> = Vec::new();
    for e in lib.flatten() {
        let Ok(pkgs) = std::fs::read_dir(e.path().join("site-packages/nvidia")) else { continue };
        for p in pkgs.flatten() {
            let bin = p.path().join("bin").join(tool.name());
            if bin.is_file() {
                found.push(bin);
            }
        }
    }
    found.sort();
    found.into_iter().next()
}

/// Finds a tool, or says how to install it.
pub fn find(tool: Tool) -> Result<PathBuf, RunError> {
    if let Some(p) = std::env::var_os(tool.env()).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        return Err(RunError::MissingTool {
            tool: tool.name().into(),
            message: format!(
                "{} is set to `{}`, which is not a file: point it at {}, or unset it to search PATH and \
                 .tools/venv (`scripts/setup` installs the NVIDIA tools there)",
                tool.env(),
                p.display(),
                tool.name()
            ),
        });
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(tool.name());
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    for v in venvs() {
        if let Some(p) = in_venv(&v, tool) {
            return Ok(p);
        }
    }
    let mac = if cfg!(target_os = "macos") {
        " NVIDIA ships no ptxas for macOS: build cubins on Linux (`tk build --target sm_86`) or use the PTX."
    } else {
        ""
    };
    Err(RunError::MissingTool {
        tool: tool.name().into(),
        message: format!(
            "`{}` was not found (looked at ${}, PATH and .tools/venv). Run `scripts/setup` in the tk source tree, \
             or `pip install nvidia-cuda-nvcc-cu12 nvidia-cuda-nvdisasm` and set {} to the binary.{mac}",
            tool.name(),
            tool.env(),
            tool.env()
        ),
    })
}

/// A cubin and what `ptxas -v` said about it.
pub struct Assembled {
    pub cubin: Vec<u8>,
    /// ptxas's report (registers, spills, shared memory per kernel).
    pub report: String,
}

/// Assembles PTX text into a cubin for `target` with ptxas (`-v` for the resource report).
pub fn assemble(ptx_text: &str, target: ptx::Target) -> Result<Assembled, RunError> {
    let ptxas = find(Tool::Ptxas)?;
    let dir = tempdir()?;
    let src = dir.path.join("k.ptx");
    let out = dir.path.join("k.cubin");
    write(&src, ptx_text.as_bytes())?;
    let o = Command::new(&ptxas)
        .arg("-v")
        .arg(format!("--gpu-name={}", target.name()))
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .output()
        .map_err(|e| RunError::Tool { tool: "ptxas".into(), message: format!("running {}: {e}", ptxas.display()) })?;
    let report = String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout);
    if !o.status.success() {
        return Err(RunError::Tool {
            tool: "ptxas".into(),
            message: format!(
                "ptxas rejected the PTX tk generated for {target} (a tk bug; please report it):\n{report}"
            ),
        });
    }
    let cubin = std::fs::read(&out)
        .map_err(|e| RunError::Tool { tool: "ptxas".into(), message: format!("reading its output: {e}") })?;
    Ok(Assembled { cubin, report })
}

/// The SASS of a cubin, from nvdisasm.
pub fn disassemble(cubin: &[u8]) -> Result<String, RunError> {
    nvdisasm(cubin, None)
}

/// `nvdisasm -c -b SM<sm>` of raw instruction words (16 little-endian bytes each, as in a
/// cubin's `.text`), for judging hand-made or edited words.
pub fn disassemble_raw(code: &[u8], sm: u32) -> Result<String, RunError> {
    nvdisasm(code, Some(sm))
}

fn nvdisasm(input: &[u8], raw_sm: Option<u32>) -> Result<String, RunError> {
    let nvdisasm = find(Tool::Nvdisasm)?;
    let dir = tempdir()?;
    let f = dir.path.join("k.cubin");
    write(&f, input)?;
    let mut cmd = Command::new(&nvdisasm);
    cmd.arg("-c");
    if let Some(sm) = raw_sm {
        cmd.arg("-b").arg(format!("SM{sm}"));
    }
    let o = cmd.arg(&f).output().map_err(|e| RunError::Tool {
        tool: "nvdisasm".into(),
        message: format!("running {}: {e}", nvdisasm.display()),
    })?;
    if !o.status.success() {
        return Err(RunError::Tool {
            tool: "nvdisasm".into(),
            message: String::from_utf8_lossy(&o.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Per-kernel resources from a `ptxas -v` report: (kernel, registers, spill stores, spill
/// loads, shared bytes).
pub fn resources(report: &str) -> Vec<(String, u32, u32, u32, u32)> {
    let mut out: Vec<(String, u32, u32, u32, u32)> = Vec::new();
    let num_before = |s: &str, word: &str| -> u32 {
        s.find(word).and_then(|i| s[..i].split_whitespace().last().and_then(|n| n.parse().ok())).unwrap_or(0)
    };
    for line in report.lines() {
        if let Some(i) = line.find("Compiling entry function '") {
            let rest = &line[i + "Compiling entry function '".len()..];
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push((name, 0, 0, 0, 0));
        } else if let Some(last) = out.last_mut() {
            if line.contains("spill stores") {
                last.2 = num_before(line, "bytes spill stores");
                last.3 = num_before(line, "bytes spill loads");
            } else if line.contains("Used") && line.contains("registers") {
                last.1 = num_before(line, "registers");
                if line.contains("smem") {
                    last.4 = num_before(line, "bytes smem");
                }
            }
        }
    }
    out
}
