//! Pass file tests: each `tests/passes/*.graph` holds a graph in the text form and names a pass on
//! its first line (`// pass: optimize`, `// pass: decompose`, `// pass: schedule`); the expected
//! output is in the `.out` file beside it. Re-bless with `TK_BLESS=1 cargo test -p tk-ir --test filetests`.

#[test]
fn pass_filetests() {
    let bless = std::env::var_os("TK_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir("tests/passes")
        .expect("tests/passes")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "graph"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("readable");
        let pass = text.lines().next().and_then(|l| l.strip_prefix("// pass: ")).unwrap_or("").trim().to_string();
        let (g, name) = match tk_ir::text::parse(&text) {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{}: {e}", f.display()));
                continue;
            }
        };
        let got = match pass.as_str() {
            "optimize" => tk_ir::text::print(&tk_ir::passes::optimize(&g), &name),
            "decompose" => tk_ir::text::print(&tk_ir::decompose::decompose(&g), &name),
            "schedule" => tk_ir::schedule::print(&tk_ir::schedule::schedule(&g), &name),
            other => {
                failures.push(format!("{}: unknown pass `{other}`", f.display()));
                continue;
            }
        };
        let out = f.with_extension("out");
        if bless {
            std::fs::write(&out, &got).expect("write");
        } else {
            match std::fs::read_to_string(&out) {
                Ok(exp) if exp == got => {}
                Ok(exp) => failures.push(format!("{}: differs\n--- expected\n{exp}--- got\n{got}", f.display())),
                Err(_) => failures.push(format!("{}: missing {}", f.display(), out.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
