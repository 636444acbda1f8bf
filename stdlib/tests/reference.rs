//! docs/stdlib.md is the reference generated from the standard library's sources; it must match
//! them (`TK_BLESS=1` rewrites it).

#[test]
fn the_stdlib_reference_is_in_sync_with_the_sources() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/stdlib.md");
    let want = tk_stdlib::reference();
    if std::env::var("TK_BLESS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &want).expect("write docs/stdlib.md");
    }
    let got = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(got, want, "docs/stdlib.md is out of date: run `TK_BLESS=1 cargo test -p tk-stdlib`");
}

#[test]
fn every_fn_is_documented_and_found() {
    let items = tk_stdlib::items();
    assert!(items.len() >= 30, "{}", items.len());
    for i in &items {
        assert!(!i.doc.is_empty(), "std::{}::{} has no comment", i.module, i.name);
        assert!(i.signature.starts_with(&format!("fn {}(", i.name)), "{i:?}");
    }
    assert_eq!(tk_stdlib::defining_module("softmax"), Some("nn"));
    assert_eq!(tk_stdlib::defining_module("logsumexp"), Some("math"));
    assert_eq!(tk_stdlib::defining_module("nope"), None);
}
