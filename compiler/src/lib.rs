//! The tk front end: lexer, parser, AST, name/dtype/shape checks and diagnostics.

pub mod ast;
pub mod diag;
pub mod lexer;
pub mod parser;
