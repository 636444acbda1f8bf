//! The tk front end: lexer, parser, AST, name/dtype/shape checks and diagnostics.
//!
//! [`check_source`] runs the whole front end on one file (and everything it imports) and returns
//! the checked kernels with every diagnostic. Library calls never panic on user input; errors in
//! the user's program are [`diag::Diag`]s that the caller renders.

pub use codespan_reporting;

pub mod ast;
mod builtins;
pub mod check;
pub mod diag;
pub use tk_ir::dims;
pub mod lexer;
pub mod load;
pub mod lower;
pub mod parser;
pub mod pretty;
pub mod tast;
pub mod types;

use std::path::Path;

/// The result of checking one program.
pub struct Checked {
    pub program: load::Program,
    /// The kernels of the root file, elaborated (empty when there are errors).
    pub kernels: Vec<tast::CheckedKernel>,
    /// Every diagnostic, in file order.
    pub diags: Vec<diag::Diag>,
    /// Time spent parsing (every module) and checking.
    pub parse_time: std::time::Duration,
    pub check_time: std::time::Duration,
}

impl Checked {
    pub fn is_ok(&self) -> bool {
        self.diags.is_empty()
    }
    /// All diagnostics rendered without color.
    pub fn render_plain(&self) -> String {
        self.diags.iter().map(|d| d.render_plain(&self.program.sources)).collect()
    }
}

/// Stack size of the thread the front end runs on: deep (but bounded) nesting must not overflow.
const STACK_BYTES: usize = 256 << 20;

/// Runs `f` on a thread with a large stack.
pub fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        let h = std::thread::Builder::new().stack_size(STACK_BYTES).spawn_scoped(s, f);
        match h {
            Ok(h) => match h.join() {
                Ok(v) => v,
                Err(p) => std::panic::resume_unwind(p),
            },
            Err(_) => panic!("cannot spawn the front-end thread"),
        }
    })
}

/// Parses, resolves and type-checks the program whose root file is `path` with source `src`.
pub fn check_source(path: &Path, src: String) -> Checked {
    with_big_stack(|| {
        let t0 = std::time::Instant::now();
        let program = load::load(path, src);
        let t1 = std::time::Instant::now();
        let parse_failed = !program.diags.is_empty();
        let (kernels, mut diags) = if parse_failed {
            // Checking half-parsed modules would report follow-on errors; show the syntax first.
            (Vec::new(), Vec::new())
        } else {
            check::check_program(&program)
        };
        let mut all = program.diags.clone();
        all.append(&mut diags);
        all.sort_by_key(|d| (d.file, d.span.lo));
        all.dedup_by(|b, a| a.file == b.file && a.span.lo == b.span.lo && a.code == b.code);
        let kernels = if all.is_empty() { kernels } else { Vec::new() };
        let t2 = std::time::Instant::now();
        Checked { program, kernels, diags: all, parse_time: t1 - t0, check_time: t2 - t1 }
    })
}
