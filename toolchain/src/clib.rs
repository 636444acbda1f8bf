//! `tk build --emit staticlib`: a position-independent static library and a C header with one
//! function per entry, callable from C with no tk runtime beyond what the library holds.
//!
//! The library holds the CPU kernels of every entry (one Cranelift object for the host, symbols
//! `tk_<entry>_k<i>`) and one C source tk generates and the system C compiler builds: per entry,
//! a function that checks the dimensions, allocates the temporaries, runs the device kernels in
//! order on the calling thread, frees the temporaries and returns a status; plus the host
//! functions the kernels call (the f64 transcendentals through libm, integer powers). The
//! caller allocates the outputs, whose sizes the header gives. Link with `-lm`.
//!
//! The C compiler is `$CC`, else `cc`; the archiver `$AR`, else `ar`. Missing: exit code 4.

use crate::target::{Options, Target};
use std::collections::BTreeSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use tk_ir::dims::{Atom, Dim};
use tk_ir::dtype::DType;
use tk_ir::graph::{Graph, Op, ReduceOp};
use tk_ir::schedule::BufferKind;
use tk_runtime::RunError;

/// One entry for the library (the same description as a bundle's).
pub use crate::bundle::Entry;

fn tool(env: &str, default: &str) -> Result<PathBuf, RunError> {
    let name = std::env::var_os(env).filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if name.components().count() > 1 {
        return if name.is_file() {
            Ok(name)
        } else {
            Err(RunError::MissingTool {
                tool: default.into(),
                message: format!("{env} is set to `{}`, which is not a file", name.display()),
            })
        };
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(&name);
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    Err(RunError::MissingTool {
        tool: name.display().to_string(),
        message: format!(
            "`{}` was not found on PATH: a static library needs a C compiler and an archiver (on Debian and Ubuntu: \
             `apt-get install build-essential`; on macOS: `xcode-select --install`), or set {env}",
            name.display()
        ),
    })
}

fn run(cmd: &mut Command, what: &str) -> Result<(), RunError> {
    let o = cmd.output().map_err(|e| RunError::Tool { tool: what.into(), message: e.to_string() })?;
    if !o.status.success() {
        return Err(RunError::Tool {
            tool: what.into(),
            message: format!("failed (a tk bug; please report it):\n{}", String::from_utf8_lossy(&o.stderr)),
        });
    }
    Ok(())
}

fn c_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I8 => "int8_t",
        DType::I16 => "int16_t",
        DType::I32 => "int32_t",
        DType::I64 => "int64_t",
        DType::U8 | DType::Bool => "uint8_t",
        DType::U32 => "uint32_t",
        DType::F16 | DType::Bf16 => "uint16_t",
    }
}

fn c_ident(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// A dimension expression as C (i64 arithmetic; floor division by positive constants).
fn c_dim(d: &Dim) -> String {
    let mut terms = Vec::new();
    for (mono, c) in d.terms() {
        let mut parts = vec![format!("INT64_C({c})")];
        for a in mono {
            parts.push(match a {
                Atom::Sym(s) => format!("tk__d_{}", c_ident(s)),
                Atom::FloorDiv(p, q) => format!("tk_fdiv({}, INT64_C({q}))", c_dim(p)),
            });
        }
        terms.push(parts.join(" * "));
    }
    if terms.is_empty() { "INT64_C(0)".into() } else { format!("({})", terms.join(" + ")) }
}

fn size_expr(shape: &[Dim]) -> String {
    if shape.is_empty() { "INT64_C(1)".into() } else { shape.iter().map(c_dim).collect::<Vec<_>>().join(" * ") }
}

/// The dimension parameters of an entry, in order: the bare symbols of the inputs' shapes as
/// they first appear, then the explicit dimensions.
fn dim_params(g: &Graph) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for (_, _, shape) in &g.inputs {
        for d in shape {
            if let [s] = d.symbols().as_slice()
                && *d == Dim::sym(s)
                && !v.contains(s)
            {
                v.push(s.clone());
            }
        }
    }
    for s in &g.dims {
        if !v.contains(s) {
            v.push(s.clone());
        }
    }
    v
}

const PRELUDE: &str = r#"#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

typedef int32_t (*tk_kernel_fn)(void *const *bufs, const int64_t *dims, int64_t lo, int64_t hi, int64_t *err);

#define TK_OK 0
#define TK_ERR_DIMENSION 1
#define TK_ERR_INDEX 2
#define TK_ERR_MEMORY 3

static int64_t tk_fdiv(int64_t a, int64_t b) {
    int64_t q = a / b, r = a % b;
    return (r != 0 && ((r < 0) != (b < 0))) ? q - 1 : q;
}
"#;

/// The host functions the kernels may call, by name, as C.
fn helper_c(name: &str) -> Option<&'static str> {
    Some(match name {
        "tk_exp" => "double tk_exp(double x) { return exp(x); }",
        "tk_exp2" => "double tk_exp2(double x) { return exp2(x); }",
        "tk_log" => "double tk_log(double x) { return log(x); }",
        "tk_log2" => "double tk_log2(double x) { return log2(x); }",
        "tk_sin" => "double tk_sin(double x) { return sin(x); }",
        "tk_cos" => "double tk_cos(double x) { return cos(x); }",
        "tk_tanh" => "double tk_tanh(double x) { return tanh(x); }",
        "tk_erf" => "double tk_erf(double x) { return erf(x); }",
        _ => return None,
    })
}

/// What was written.
pub struct Written {
    pub library: PathBuf,
    pub header: PathBuf,
}

/// Builds the static library and header for the host CPU.
pub fn build(entries: &[Entry], opts: &Options, lib: &Path, header: &Path) -> Result<Written, RunError> {
    let cc = tool("CC", "cc")?;
    let ar = tool("AR", "ar")?;
    let guard =
        header.file_stem().map_or_else(|| "TK_KERNELS".to_string(), |s| c_ident(&s.to_string_lossy()).to_uppercase());
    let mut all = Vec::new();
    let mut c = String::from(PRELUDE);
    let mut h = String::new();
    let _ = writeln!(
        h,
        "/* Generated by tk {} (build {}) from: {}.\n * Link with the static library and -lm. Every function runs on the calling thread;\n * calls on different threads are independent. */\n#ifndef {guard}_H\n#define {guard}_H\n\n#include <stdint.h>\n\n#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n\
         /* Status codes. */\n#define TK_OK 0\n/* A dimension is negative, or an argmax/argmin reduces an empty axis. */\n#define TK_ERR_DIMENSION 1\n\
         /* A data-dependent index (a gather) is out of range. */\n#define TK_ERR_INDEX 2\n/* Temporary memory could not be allocated. */\n#define TK_ERR_MEMORY 3\n",
        env!("CARGO_PKG_VERSION"),
        crate::BUILD_ID,
        entries.iter().map(|e| e.source.as_str()).collect::<BTreeSet<_>>().into_iter().collect::<Vec<_>>().join(", ")
    );
    let split = opts.split.unwrap_or_else(|| Target::Cpu.split());
    let lopts = Options { split: Some(split), ..opts.clone() };
    for e in entries {
        let l = crate::target::lower(&e.graph, Target::Cpu, &lopts)?;
        let g = &l.schedule.graph;
        let fname = format!("tk_{}", c_ident(&e.name));
        let dims = dim_params(g);
        // The signature.
        let mut params: Vec<String> =
            g.inputs.iter().map(|(n, d, _)| format!("const {} *{}", c_type(*d), c_ident(n))).collect();
        // Outputs take their names, prefixed with `out_` where an input or a dimension has it.
        let taken = |n: &str| g.inputs.iter().any(|(i, _, _)| i == n) || dims.iter().any(|d| d == n);
        let outs: Vec<(String, DType, Vec<Dim>)> = g
            .outputs
            .iter()
            .map(|(n, id)| {
                let p = if taken(n) { format!("out_{}", c_ident(n)) } else { c_ident(n) };
                (p, g.node(*id).dtype, g.node(*id).shape.clone())
            })
            .collect();
        params.extend(outs.iter().map(|(n, d, _)| format!("{} *{n}", c_type(*d))));
        params.extend(dims.iter().map(|d| format!("int64_t {}", c_ident(d))));
        let sig = format!("int {fname}({})", if params.is_empty() { "void".into() } else { params.join(", ") });
        // The header's description.
        let ty = |d: DType, s: &[Dim]| {
            if s.is_empty() {
                d.name().to_string()
            } else {
                format!("{d}[{}]", s.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", "))
            }
        };
        let _ = writeln!(h, "\n/* {} (from {})", e.name, e.source);
        for (n, d, s) in &g.inputs {
            let _ = writeln!(h, " *   in  {n}: {}", ty(*d, s));
        }
        for (n, d, s) in &outs {
            let _ = writeln!(h, " *   out {n}: {}, allocated by the caller", ty(*d, s));
        }
        if !dims.is_empty() {
            let _ = writeln!(h, " *   dimensions: {}", dims.join(", "));
        }
        if g.inputs.iter().any(|(_, d, _)| matches!(d, DType::F16 | DType::Bf16))
            || outs.iter().any(|(_, d, _)| matches!(d, DType::F16 | DType::Bf16))
        {
            let _ = writeln!(h, " *   f16 and bf16 elements are their 16-bit patterns; bool is one byte, 0 or 1.");
        }
        let _ = writeln!(h, " */\n{sig};");
        // The body.
        let _ = writeln!(c, "\n{sig} {{");
        for (i, k) in l.kernels.iter().enumerate() {
            let sym = format!("{fname}_k{i}");
            let _ =
                writeln!(c, "    extern int32_t {sym}(void *const *, const int64_t *, int64_t, int64_t, int64_t *);");
            all.push(tk_ir::kernel::Kernel { name: sym, ..k.clone() });
        }
        for d in &dims {
            let _ = writeln!(c, "    const int64_t tk__d_{0} = {0};", c_ident(d));
            let _ = writeln!(c, "    if (tk__d_{} < 0) return TK_ERR_DIMENSION;", c_ident(d));
        }
        // Every dimension of the graph is a size (non-negative); argmax/argmin need a non-empty
        // axis unless their result is empty.
        let mut seen = BTreeSet::new();
        for id in g.topo() {
            let n = g.node(id);
            for d in &n.shape {
                if d.as_const().is_none() && seen.insert(d.to_string()) {
                    let _ = writeln!(c, "    if ({} < 0) return TK_ERR_DIMENSION;", c_dim(d));
                }
            }
            if let Op::Reduce { op: ReduceOp::ArgMax | ReduceOp::ArgMin, axes } = &n.op {
                let src = &g.node(n.args[0]).shape;
                let empty: Vec<String> =
                    axes.iter().filter_map(|&k| src.get(k)).map(|d| format!("{} == 0", c_dim(d))).collect();
                let nonempty: Vec<String> = n.shape.iter().map(|d| format!("{} > 0", c_dim(d))).collect();
                if !empty.is_empty() {
                    let cond = if nonempty.is_empty() { "1".into() } else { nonempty.join(" && ") };
                    let _ = writeln!(c, "    if (({}) && ({cond})) return TK_ERR_DIMENSION;", empty.join(" || "));
                }
            }
        }
        // Buffers: the arguments, the outputs, and one allocation per temporary slot.
        let s = &l.schedule;
        let nslots = s.slots;
        let _ = writeln!(c, "    int tk__status = TK_OK;\n    void *tk__slot[{}] = {{0}};", nslots.max(1));
        for slot in 0..nslots {
            let sizes: Vec<String> = s
                .buffers
                .iter()
                .filter(|b| b.kind == BufferKind::Temp { slot })
                .map(|b| format!("(size_t)({}) * {}", size_expr(&b.shape), b.dtype.bits() / 8))
                .collect();
            let _ = writeln!(c, "    {{\n        size_t tk__bytes = 1;");
            for sz in sizes {
                let _ = writeln!(c, "        if ({sz} > tk__bytes) tk__bytes = {sz};");
            }
            let _ = writeln!(
                c,
                "        tk__slot[{slot}] = calloc(tk__bytes, 1);\n        if (!tk__slot[{slot}]) {{ tk__status = TK_ERR_MEMORY; goto tk__done; }}\n    }}"
            );
        }
        let _ = writeln!(c, "    void *tk__buf[{}];", s.buffers.len().max(1));
        for (i, b) in s.buffers.iter().enumerate() {
            let v = match b.kind {
                BufferKind::Input(k) => format!("(void *){}", c_ident(&g.inputs[k].0)),
                BufferKind::Output(k) => format!("(void *){}", outs[k].0),
                BufferKind::Temp { slot } => format!("tk__slot[{slot}]"),
            };
            let _ = writeln!(c, "    tk__buf[{i}] = {v};");
        }
        // The device kernels, in order.
        for (i, k) in l.kernels.iter().enumerate() {
            let bufs: Vec<String> = k.bufs.iter().map(|b| format!("tk__buf[{}]", b.id)).collect();
            let syms: Vec<String> =
                tk_abi::launch::symbols(k).iter().map(|s| format!("tk__d_{}", c_ident(s))).collect();
            let _ = writeln!(
                c,
                "    {{\n        void *const tk__b[] = {{{}}};\n        const int64_t tk__dims[] = {{{}}};\n        int64_t tk__err[3] = {{0, 0, 0}};\n        if ({fname}_k{i}(tk__b, tk__dims, 0, INT64_MAX, tk__err) != 0) {{ tk__status = TK_ERR_INDEX; goto tk__done; }}\n    }}",
                if bufs.is_empty() { "0".into() } else { bufs.join(", ") },
                if syms.is_empty() { "0".into() } else { syms.join(", ") }
            );
        }
        // An output that is an input unchanged is copied.
        for (k, (_, id)) in g.outputs.iter().enumerate() {
            let written = s.buffers.iter().any(|b| b.kind == BufferKind::Output(k));
            if !written
                && let Some(b) = s.buffers.iter().find(|b| b.node == *id && matches!(b.kind, BufferKind::Input(_)))
                && let BufferKind::Input(ik) = b.kind
            {
                let _ = writeln!(
                    c,
                    "    memcpy({}, {}, (size_t)({}) * {});",
                    outs[k].0,
                    c_ident(&g.inputs[ik].0),
                    size_expr(&b.shape),
                    b.dtype.bits() / 8
                );
            }
        }
        let _ = writeln!(c, "tk__done:");
        for slot in 0..nslots {
            let _ = writeln!(c, "    free(tk__slot[{slot}]);");
        }
        let _ = writeln!(c, "    (void)tk__buf;\n    return tk__status;\n}}");
    }
    let _ = writeln!(h, "\n#ifdef __cplusplus\n}}\n#endif\n\n#endif");
    // The kernels, for the host, position-independent.
    let triple = tk_runtime::bundle::CPU_PLATFORMS
        .iter()
        .find(|(v, _)| *v == tk_runtime::bundle::host_cpu_variant())
        .map(|(_, t)| *t)
        .ok_or_else(|| RunError::Argument {
            message: "static libraries are made for x86_64 and aarch64 hosts".into(),
        })?;
    let obj = tk_codegen::cpu::object(&all, Some(triple), "")
        .map_err(|e| RunError::Compile { message: e.to_string(), loc: Default::default() })?;
    // The helpers the kernels call.
    let file = object::File::parse(&*obj)
        .map_err(|e| RunError::Compile { message: e.to_string(), loc: Default::default() })?;
    let mut helpers = BTreeSet::new();
    {
        // The symbols the code refers to (relocation targets), not every declared import.
        use object::{Object, ObjectSection, ObjectSymbol, RelocationTarget};
        for sec in file.sections() {
            for (_, r) in sec.relocations() {
                if let RelocationTarget::Symbol(i) = r.target()
                    && let Ok(sym) = file.symbol_by_index(i)
                    && sym.is_undefined()
                {
                    let name = sym.name().unwrap_or("").trim_start_matches('_').to_string();
                    if name.starts_with("tk_") && !all.iter().any(|k| k.name == name) {
                        helpers.insert(name);
                    }
                }
            }
        }
    }
    for hname in &helpers {
        match helper_c(hname) {
            Some(code) => {
                let _ = writeln!(c, "\n{code}");
            }
            None => {
                return Err(RunError::Compile {
                    message: format!(
                        "these kernels use `{hname}` (f16/bf16 arithmetic), which static libraries do not provide yet; \
                         use a bundle"
                    ),
                    loc: Default::default(),
                });
            }
        }
    }
    let dir = crate::tools::tempdir()?;
    let (cpath, cobj, kobj) = (dir.path.join("entries.c"), dir.path.join("entries.o"), dir.path.join("kernels.o"));
    crate::tools::write(&cpath, c.as_bytes())?;
    crate::tools::write(&kobj, &obj)?;
    run(Command::new(&cc).args(["-std=c99", "-O2", "-fPIC", "-c"]).arg(&cpath).arg("-o").arg(&cobj), "the C compiler")?;
    let tmp_lib = dir.path.join("lib.a");
    run(Command::new(&ar).arg("rcs").arg(&tmp_lib).arg(&kobj).arg(&cobj), "ar")?;
    let bytes = std::fs::read(&tmp_lib)
        .map_err(|e| RunError::File { path: tmp_lib.display().to_string(), message: e.to_string() })?;
    crate::aot::write_atomic(lib, &bytes)?;
    crate::aot::write_atomic(header, h.as_bytes())?;
    Ok(Written { library: lib.to_path_buf(), header: header.to_path_buf() })
}
