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
