//! UI tests: every `tests/ui/*.tk` is checked and its diagnostics compared with the `.stderr`
//! file beside it. Each file's first line says which code it must produce:
//! `// expect: E0306 — ...`; the test fails when that code is not reported.
//! Re-bless the expected output with `TK_BLESS=1 cargo test --test ui`.

use std::path::{Path, PathBuf};

fn ui_files() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir("tests/ui")
        .expect("tests/ui exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "tk"))
        .collect();
    v.sort();
    v
}

fn expected_codes(src: &str) -> Vec<String> {
    let first = src.lines().next().unwrap_or("");
    first
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() == 5 && w.starts_with('E') && w[1..].chars().all(|c| c.is_ascii_digit()))
        .map(str::to_string)
        .collect()
}

#[test]
fn ui() {
    let bless = std::env::var_os("TK_BLESS").is_some();
    let mut failures = Vec::new();
    let files = ui_files();
    assert!(files.len() >= 60, "expected at least 60 UI cases, found {}", files.len());
    for path in &files {
        let src = std::fs::read_to_string(path).expect("readable");
        // Through the toolchain's check, as `tk check` does (it adds E0411 for the later stages).
        let checked = tk_toolchain::Session::new().check(path, src.clone());
        let got = checked.render_plain();
        let codes: Vec<&str> = checked.diags.iter().map(|d| d.code.as_str()).collect();
        let want = expected_codes(&src);
        if want.is_empty() {
            failures.push(format!("{}: first line must be `// expect: ENNNN ...`", path.display()));
        }
        for w in &want {
            if !codes.contains(&w.as_str()) {
                failures.push(format!("{}: expected {w}, got {codes:?}\n{got}", path.display()));
            }
        }
        let stderr = path.with_extension("stderr");
        if bless {
            std::fs::write(&stderr, &got).expect("write .stderr");
        } else {
            match std::fs::read_to_string(&stderr) {
                Ok(exp) if exp == got => {}
                Ok(exp) => failures.push(format!(
                    "{}: diagnostics differ (re-bless with TK_BLESS=1)\n--- expected\n{exp}\n--- got\n{got}",
                    path.display()
                )),
                Err(_) => {
                    failures.push(format!("{}: missing {} (run with TK_BLESS=1)", path.display(), stderr.display()))
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} UI failure(s):\n\n{}", failures.len(), failures.join("\n\n"));
}

/// Every error code the compiler defines has a UI case and a section in docs/errors.md.
#[test]
fn every_code_is_tested_and_documented() {
    let docs = std::fs::read_to_string("docs/errors.md").expect("docs/errors.md exists");
    let names: Vec<String> =
        ui_files().iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().to_uppercase())).collect();
    let mut missing = Vec::new();
    for code in tk_compiler::diag::Code::ALL {
        let c = code.as_str();
        if !docs.contains(&format!("## {c}")) {
            missing.push(format!("{c} has no `## {c}` section in docs/errors.md"));
        }
        if *code == tk_compiler::diag::Code::TooLarge {
            continue; // a 64 MiB file: covered by the `oversized_file` test below
        }
        if c.starts_with("E05") {
            continue; // run-time errors: tests/cli.rs runs programs that raise each of them
        }
        if !names.iter().any(|n| n.starts_with(c)) {
            missing.push(format!("{c} has no tests/ui/{}_*.tk case", c.to_lowercase()));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn oversized_file() {
    let big = "// padding\n".repeat((tk_compiler::parser::MAX_SOURCE_BYTES / 11) + 2);
    let checked = tk_compiler::check_source(Path::new("big.tk"), big);
    let codes: Vec<&str> = checked.diags.iter().map(|d| d.code.as_str()).collect();
    assert_eq!(codes, ["E0008"]);
}

/// Every limit of the kernel IR (tk_ir::kernel::LIMITS) is a located checker error: a UI case
/// `e0411_limit_*.tk` reports it with its message, and docs/errors.md lists as many limits.
#[test]
fn every_kernel_ir_limit_is_a_located_check_error() {
    let cases: Vec<PathBuf> = ui_files()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("e0411_limit_")))
        .collect();
    let mut missing = Vec::new();
    for limit in tk_ir::kernel::LIMITS {
        let found = cases.iter().any(|path| {
            let src = std::fs::read_to_string(path).expect("readable");
            let checked = tk_toolchain::Session::new().check(path, src);
            checked.diags.iter().any(|d| {
                d.code.as_str() == "E0411"
                    && d.message.contains(limit)
                    && d.location(&checked.program.sources).is_some_and(|(_, line, _)| line > 1)
            })
        });
        if !found {
            missing.push(*limit);
        }
    }
    assert!(missing.is_empty(), "kernel-IR limits with no located UI case (tests/ui/e0411_limit_*.tk): {missing:#?}");
    let docs = std::fs::read_to_string("docs/errors.md").expect("docs/errors.md exists");
    let section = docs.split("## E0411").nth(1).and_then(|s| s.split("Example:").next()).unwrap_or("");
    let listed = section.lines().filter(|l| l.starts_with("- ")).count();
    assert_eq!(listed, tk_ir::kernel::LIMITS.len(), "docs/errors.md#e0411 lists {listed} limits: {section}");
}
