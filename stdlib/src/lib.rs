//! The tk standard library: `.tk` sources embedded at build time.
//!
//! `use std::nn::{softmax}` in a `.tk` file resolves the module path `nn` through [`module`].

/// Every standard module as `(name, source)`; `name` is the path after `std::`, joined with `::`.
pub const MODULES: &[(&str, &str)] = &[
    ("math", include_str!("../std/math.tk")),
    ("nn", include_str!("../std/nn.tk")),
    ("linalg", include_str!("../std/linalg.tk")),
];

/// The source of standard module `name` (for example `"nn"` for `std::nn`).
pub fn module(name: &str) -> Option<&'static str> {
    MODULES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// The names of all standard modules.
pub fn module_names() -> impl Iterator<Item = &'static str> {
    MODULES.iter().map(|(n, _)| *n)
}

/// One fn of the standard library, read from its source: the module (`nn` for `std::nn`), the
/// name, the signature as written (`fn softmax(x, axis: int = -1)`) and the comment above it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub module: &'static str,
    pub name: String,
    pub signature: String,
    pub doc: String,
}

/// Every fn of every standard module, in source order.
pub fn items() -> Vec<Item> {
    let mut out = Vec::new();
    for (module, src) in MODULES {
        let lines: Vec<&str> = src.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(rest) = line.strip_prefix("pub fn ").or_else(|| line.strip_prefix("fn ")) else { continue };
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            // The signature runs to the `{` that opens the body (it may span lines).
            let mut sig = String::new();
            for l in &lines[i..] {
                match l.find(" {") {
                    Some(at) => {
                        sig.push_str(&l[..at]);
                        break;
                    }
                    None => {
                        sig.push_str(l.trim());
                        sig.push(' ');
                    }
                }
            }
            let sig = sig.trim().trim_start_matches("pub ").to_string();
            let mut doc = Vec::new();
            for l in lines[..i].iter().rev() {
                match l.trim().strip_prefix("//") {
                    Some(c) => doc.push(c.trim()),
                    None => break,
                }
            }
            doc.reverse();
            out.push(Item { module, name, signature: sig, doc: doc.join(" ") });
        }
    }
    out
}

/// The standard module that defines a fn named `name` (`Some("nn")` for `softmax`).
pub fn defining_module(name: &str) -> Option<&'static str> {
    items().into_iter().find(|i| i.name == name).map(|i| i.module)
}

/// The module's description: the comment block at the top of its source.
pub fn module_doc(name: &str) -> String {
    let src = module(name).unwrap_or("");
    let lines: Vec<&str> = src.lines().map_while(|l| l.strip_prefix("//")).map(str::trim).collect();
    lines.join(" ")
}

/// docs/stdlib.md: a reference of every standard fn, generated from the sources (a test keeps
/// the file in sync).
pub fn reference() -> String {
    let mut s = String::from(
        "# The standard library\n\n\
         Generated from `stdlib/std/*.tk` by `TK_BLESS=1 cargo test -p tk-stdlib`; a test fails when this\n\
         file and the sources differ. Import a fn with `use std::MODULE::{NAME};` (docs/language.md,\n\
         modules). Parameters without a type are generic: any float dtype, any shape the body accepts.\n",
    );
    for (module, _) in MODULES {
        s.push_str(&format!("\n## std::{module}\n\n{}\n\n| fn | what it does |\n|---|---|\n", module_doc(module)));
        for i in items().iter().filter(|i| i.module == *module) {
            s.push_str(&format!("| `{}` | {} |\n", i.signature.replace('|', "\\|"), i.doc.replace('|', "\\|")));
        }
    }
    s
}
