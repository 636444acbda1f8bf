//! Fuzzes the whole front end (lexer, parser, loader, checker, diagnostic renderer) with
//! arbitrary input, and checks that printing a parsed program and parsing it again gives the same
//! tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let src = String::from_utf8_lossy(data).into_owned();
    let (module, diags) = tk_compiler::parser::parse(0, &src);
    if diags.is_empty() {
        let printed = tk_compiler::pretty::module_to_string(&module);
        let (again, d2) = tk_compiler::parser::parse(0, &printed);
        assert!(d2.is_empty(), "printed program does not parse:\n{printed}");
        assert_eq!(again, module, "round trip changed the program:\n{printed}");
    }
    // Every diagnostic renders (the renderer clips long lines; none may panic).
    let c = tk_compiler::check_source(Path::new("fuzz.tk"), src);
    for d in &c.diags {
        let _ = d.render_plain(&c.program.sources);
    }
});
