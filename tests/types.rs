//! Type filetests: each `tests/types/*.tk` is checked and its `tk emit --stage types` output
//! compared with the `.types` file beside it. Re-bless with `TK_BLESS=1 cargo test --test types`.

#[test]
fn types_filetests() {
    let bless = std::env::var_os("TK_BLESS").is_some();
    let mut files: Vec<_> = std::fs::read_dir("tests/types")
        .expect("tests/types")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "tk"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    for f in &files {
        let src = std::fs::read_to_string(f).expect("readable");
        let checked = tk_compiler::check_source(f, src);
        if !checked.is_ok() {
            failures.push(format!("{}: errors:\n{}", f.display(), checked.render_plain()));
            continue;
        }
        let got: String = checked.kernels.iter().map(tk_compiler::tast::print_types).collect();
        let exp_path = f.with_extension("types");
        if bless {
            std::fs::write(&exp_path, &got).expect("write");
        } else {
            match std::fs::read_to_string(&exp_path) {
                Ok(exp) if exp == got => {}
                Ok(exp) => failures.push(format!("{}: differs\n--- expected\n{exp}--- got\n{got}", f.display())),
                Err(_) => failures.push(format!("{}: missing {}", f.display(), exp_path.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
