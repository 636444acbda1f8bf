//! The house rules of docs/architecture.md ("Crates and who may depend on whom"), checked on
//! every build: which crate may depend on which (through `cargo tree`, features resolved), and
//! that no file of a crate imports a file that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every package `package` depends on (normal dependencies, transitively), by name, with the
/// given extra `cargo tree` arguments (features).
fn tree(package: &str, extra: &[&str]) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .current_dir(root())
        .args(["tree", "-e", "normal", "--prefix", "none", "-f", "{p}", "-p", package])
        .args(extra)
        .output()
        .expect("cargo runs");
    assert!(out.status.success(), "cargo tree -p {package} {extra:?}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines().skip(1).filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// The workspace crates (`tk-*` and `tk`) among `deps`.
fn tk_crates(deps: &BTreeSet<String>) -> BTreeSet<String> {
    deps.iter().filter(|d| d.starts_with("tk-") || *d == "tk").cloned().collect()
}

fn assert_none(package: &str, extra: &[&str], deps: &BTreeSet<String>, banned: &[&str]) {
    let bad: Vec<&String> = deps
        .iter()
        .filter(|d| banned.iter().any(|b| d == b || (b.ends_with('*') && d.starts_with(&b[..b.len() - 1]))))
        .collect();
    assert!(bad.is_empty(), "{package} {extra:?} must not depend on {bad:?} (docs/architecture.md)");
}

#[test]
fn tk_ir_depends_on_no_other_tk_crate() {
    let deps = tree("tk-ir", &[]);
    assert_eq!(tk_crates(&deps), BTreeSet::new(), "tk-ir depends on {deps:?}");
}

#[test]
fn tk_abi_depends_on_tk_ir_alone() {
    let deps = tk_crates(&tree("tk-abi", &[]));
    assert_eq!(deps, BTreeSet::from(["tk-ir".to_string()]));
}

#[test]
fn tk_isa_depends_on_no_tk_crate() {
    assert_eq!(tk_crates(&tree("tk-isa", &[])), BTreeSet::new());
}

const COMPILER: [&str; 7] =
    ["tk-compiler", "tk-codegen", "tk-toolchain", "tk-stdlib", "cranelift-*", "inkwell", "llvm-sys"];

#[test]
fn the_runtime_links_no_compiler_and_without_default_features_no_simulator() {
    let deps = tree("tk-runtime", &[]);
    assert_none("tk-runtime", &[], &deps, &COMPILER);
    for extra in [&["--no-default-features"][..], &["--all-features"][..]] {
        assert_none("tk-runtime", extra, &tree("tk-runtime", extra), &COMPILER);
    }
    let bare = tree("tk-runtime", &["--no-default-features"]);
    assert_none("tk-runtime", &["--no-default-features"], &bare, &["tk-sim", "tk-isa"]);
}

#[test]
fn the_gpu_driver_and_the_simulators_sit_below_the_runtime_and_the_compiler() {
    let gpu = tree("tk-gpu", &[]);
    assert_none("tk-gpu", &[], &gpu, &["tk-compiler", "tk-codegen", "tk-toolchain", "tk-runtime", "tk-sim", "tk-ir"]);
    let sim = tree("tk-sim", &[]);
    assert_none("tk-sim", &[], &sim, &["tk-compiler", "tk-codegen", "tk-toolchain", "tk-runtime", "tk-stdlib"]);
}

#[test]
fn code_generators_never_depend_on_the_front_end() {
    for extra in [&[][..], &["--all-features"][..]] {
        let deps = tree("tk-codegen", extra);
        assert_none("tk-codegen", extra, &deps, &["tk-compiler", "tk-stdlib", "tk-toolchain", "tk-runtime"]);
    }
}

#[test]
fn the_toolchain_may_use_the_runtime_but_not_the_reverse() {
    let deps = tk_crates(&tree("tk-toolchain", &[]));
    assert!(deps.contains("tk-runtime"), "{deps:?}");
    assert!(!tree("tk-runtime", &["--all-features"]).contains("tk-toolchain"));
}

#[test]
fn the_bundle_runner_links_the_runtime_and_no_compiler() {
    let deps = tree("tk-bundle-runner", &[]);
    assert!(deps.contains("tk-runtime") && deps.contains("tk-sim"), "{deps:?}");
    assert_none("tk-bundle-runner", &[], &deps, &COMPILER);
}

/// The crates whose files are checked for import cycles.
const CRATES: [&str; 10] = ["abi", "codegen", "compiler", "gpu", "ir", "isa", "runtime", "sim", "toolchain", "src"];

/// Every `.rs` file of a crate's source tree with its module path (`a::b`; the crate root is "").
fn modules(dir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("reads the source tree").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let rel = p.strip_prefix(dir).expect("inside").with_extension("");
            let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                parts.pop();
            }
            out.insert(parts.join("::"), p);
        }
    }
    out
}

/// The text of a file without its `#[cfg(test)]` modules (tests import their parent).
fn non_test_text(p: &Path) -> String {
    let text = std::fs::read_to_string(p).expect("reads");
    match text.find("#[cfg(test)]\nmod ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// The module paths a file names through `crate::` and `super::` (grouped `use` lists too).
fn references(text: &str, this: &str) -> Vec<String> {
    let mut out = Vec::new();
    let ident = |s: &str| s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').count();
    for (prefix, base) in [("crate::", String::new()), ("super::", parent(this))] {
        let mut at = 0;
        while let Some(i) = text[at..].find(prefix) {
            let start = at + i + prefix.len();
            at = start;
            // `crate::` preceded by an identifier character is another path (`tk_crate::`).
            let before = text[..start - prefix.len()].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &text[start..];
            let mut paths = Vec::new();
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    paths.push(item.trim().to_string());
                }
            } else {
                let mut end = 0;
                loop {
                    let n = ident(&rest[end..]);
                    if n == 0 {
                        break;
                    }
                    end += n;
                    if rest[end..].starts_with("::") && ident(&rest[end + 2..]) > 0 {
                        end += 2;
                    } else {
                        break;
                    }
                }
                paths.push(rest[..end].to_string());
            }
            for p in paths {
                let p: Vec<&str> = p.split("::").map(str::trim).filter(|s| !s.is_empty()).collect();
                let full: Vec<String> = base
                    .split("::")
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .chain(p.iter().map(|s| s.to_string()))
                    .collect();
                out.push(full.join("::"));
            }
        }
    }
    out
}

fn parent(m: &str) -> String {
    match m.rfind("::") {
        Some(i) => m[..i].to_string(),
        None => String::new(),
    }
}

/// Pairs that import each other today: none, and the list may only shrink (a new pair fails the
/// test; a pair that is gone must leave the list).
const KNOWN_CYCLES: [&str; 0] = [];

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let mut cycles = Vec::new();
    for c in CRATES {
        let dir = root().join(c).join(if c == "src" { "" } else { "src" });
        let mods = modules(&dir);
        // The files each file imports: the longest module prefix of every path it names.
        let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for (m, path) in &mods {
            let text = non_test_text(path);
            for r in references(&text, m) {
                let mut probe = r.as_str();
                loop {
                    if let Some((k, _)) = mods.get_key_value(probe) {
                        if k != m
                            && !k.is_empty()
                            && !m.starts_with(&format!("{k}::"))
                            && !k.starts_with(&format!("{m}::"))
                        {
                            edges.entry(m.as_str()).or_default().insert(k.as_str());
                        }
                        break;
                    }
                    match probe.rfind("::") {
                        Some(i) => probe = &probe[..i],
                        None => break,
                    }
                }
            }
        }
        for (a, bs) in &edges {
            for b in bs {
                if a < b && edges.get(b).is_some_and(|x| x.contains(a)) {
                    cycles.push(format!("{c}: {a} <-> {b}"));
                }
            }
        }
    }
    let new: Vec<&String> = cycles.iter().filter(|c| !KNOWN_CYCLES.contains(&c.as_str())).collect();
    assert!(new.is_empty(), "files that import each other: {new:#?}");
    // A known pair that is gone must leave the list, so the list only shrinks.
    let gone: Vec<&&str> = KNOWN_CYCLES.iter().filter(|k| !cycles.iter().any(|c| c == *k)).collect();
    assert!(gone.is_empty(), "no longer cycles, remove them from KNOWN_CYCLES: {gone:?}");
}

#[test]
fn the_reference_scanner_sees_grouped_and_nested_paths() {
    let r = references("use crate::{device::Buffer, error};\nuse super::gmc::PAGE; x = crate::cpu::f();", "gpu::dev");
    assert_eq!(r, vec!["device::Buffer", "error", "cpu::f", "gpu::gmc::PAGE"]);
}
