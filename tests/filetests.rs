//! The file tests: every `tests/filetests/**/NAME.tk` (source) or `NAME.graph` (graph IR text) is
//! run through one stage and its text compared with `NAME.expected` beside it. Re-bless after an
//! intended change with `TK_BLESS=1 cargo test --test filetests` (and read the diff).
//!
//! Directives are whole-line comments anywhere in the file:
//! - `// stage: S`: for source, `types`, `graph`, `schedule`, `kernel`, `legal`, `clif`, `ptx` or
//!   `llvm`
//!   (the text `tk emit --stage S` prints, through the toolchain's Session); for graph IR,
//!   `optimize`, `decompose` or `schedule`;
//! - `// target: T`: the compile target (default `cpu`);
//! - `// knobs: K`: the knobs of every device kernel (`--opts`);
//! - `// deterministic`: every reduction in the reference order (`--deterministic`);
//! - `// split: C,L,R`: how long reductions are split: chunks and lanes of a reduction to a
//!   scalar, partials per row (the CPU's default depends on the cores);
//! - `// entry: NAME`: only this kernel;
//! - `// arch: A`: only on hosts of this architecture (the CLIF names the host's calling
//!   convention); elsewhere the case is skipped with a message.
//!
//! Output that names tk's version has it replaced by `VERSION`.

use std::path::{Path, PathBuf};
use tk_toolchain::emit::{Notes, Stage};
use tk_toolchain::target::{Options, Target};

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("tests/filetests").flatten() {
        let p = e.path();
        if p.is_dir() {
            cases(&p, out);
        } else if p.extension().is_some_and(|x| x == "tk" || x == "graph") {
            out.push(p);
        }
    }
}

/// The value of directive `name` (`Some("")` for a flag).
fn directive<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    text.lines().find_map(|l| {
        let rest = l.trim().strip_prefix("//")?.trim();
        let rest = rest.strip_prefix(name)?;
        if rest.is_empty() {
            return Some("");
        }
        rest.strip_prefix(':').map(str::trim)
    })
}

/// The stage text of one case, or why there is none.
fn run(path: &Path, text: &str) -> Result<String, String> {
    let stage = directive(text, "stage").ok_or("no `// stage:` directive")?;
    if path.extension().is_some_and(|x| x == "graph") {
        let (g, name) = tk_ir::graph::text::parse(text).map_err(|e| e.to_string())?;
        return match stage {
            "optimize" => Ok(tk_ir::graph::text::print(&tk_ir::graph::passes::optimize(&g), &name)),
            "decompose" => Ok(tk_ir::graph::text::print(&tk_ir::graph::decompose::decompose(&g), &name)),
            "contract" => Ok(tk_ir::graph::text::print(&tk_ir::graph::passes::contract(&g), &name)),
            "schedule" => Ok(tk_ir::schedule::print(&tk_ir::schedule::schedule(&g), &name)),
            other => Err(format!("unknown graph stage `{other}` (optimize, decompose, contract, schedule)")),
        };
    }
    let target: Target = directive(text, "target").unwrap_or("cpu").parse()?;
    let knobs = match directive(text, "knobs") {
        Some(k) => Some(k.parse().map_err(|e| format!("knobs `{k}`: {e}"))?),
        None => None,
    };
    let split = match directive(text, "split") {
        Some(s) => {
            let v: Vec<i64> =
                s.split(',').map(|x| x.trim().parse().map_err(|_| "split: C,L,R")).collect::<Result<_, _>>()?;
            let [chunks, lanes, rows] = v[..] else { return Err("split: C,L,R".into()) };
            Some(tk_toolchain::target::Split { chunks, lanes, rows })
        }
        None => None,
    };
    let session = tk_toolchain::Session::with_options(Options {
        knobs,
        deterministic: directive(text, "deterministic").is_some(),
        split,
    });
    let checked = session.check(path, text.to_string());
    if !checked.is_ok() {
        return Err(checked.render_plain());
    }
    let entry = directive(text, "entry");
    let stage = match stage {
        "types" => {
            return Ok(checked
                .kernels
                .iter()
                .filter(|k| entry.is_none_or(|e| e == k.name))
                .map(tk_compiler::tast::print_types)
                .collect());
        }
        "graph" => Stage::Graph,
        "schedule" => Stage::Schedule,
        "kernel" => Stage::Kernel,
        "legal" => Stage::Legal,
        "clif" => Stage::Clif,
        "ptx" => Stage::Ptx,
        "llvm" => Stage::Llvm,
        other => return Err(format!("unknown stage `{other}`")),
    };
    let out = session.emit(&checked, stage, target, entry, Notes::default()).map_err(|e| e.to_string())?;
    Ok(out.replace(env!("CARGO_PKG_VERSION"), "VERSION"))
}

#[test]
fn filetests() {
    let bless = std::env::var_os("TK_BLESS").is_some();
    let mut files = Vec::new();
    cases(Path::new("tests/filetests"), &mut files);
    files.sort();
    let mut failures = Vec::new();
    let mut stages = std::collections::BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        stages.insert(directive(&text, "stage").unwrap_or("").to_string());
        if let Some(arch) = directive(&text, "arch")
            && arch != std::env::consts::ARCH
        {
            eprintln!("skipping {}: it is for {arch} hosts, this is {}", f.display(), std::env::consts::ARCH);
            continue;
        }
        let got = match run(f, &text) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let exp_path = f.with_extension("expected");
        if bless {
            std::fs::write(&exp_path, &got).expect("write");
            continue;
        }
        match std::fs::read_to_string(&exp_path) {
            Ok(exp) if exp == got => {}
            Ok(exp) => failures
                .push(format!("{}: differs (TK_BLESS=1 to accept)\n--- expected\n{exp}--- got\n{got}", f.display())),
            Err(_) => failures.push(format!("{}: missing {} (TK_BLESS=1 to create)", f.display(), exp_path.display())),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Every stage the runner knows has cases.
    for s in ["types", "graph", "schedule", "kernel", "legal", "clif", "ptx", "llvm", "optimize", "decompose"] {
        assert!(stages.contains(s), "no file test of stage `{s}`");
    }
}

#[test]
fn directives_are_whole_line_comments() {
    let t = "// stage: kernel\n//deterministic\nkernel k() -> f32 { 1.0 } // knobs: x\n";
    assert_eq!(directive(t, "stage"), Some("kernel"));
    assert_eq!(directive(t, "deterministic"), Some(""));
    assert_eq!(directive(t, "knobs"), None);
    assert_eq!(directive(t, "target"), None);
}
