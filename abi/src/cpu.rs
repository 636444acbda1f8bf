//! The CPU kernel ABI (docs/architecture.md, "The CPU backend").

/// The signature of a compiled CPU kernel: its buffers, the values of its size symbols (sorted
/// by name), the part `[lo, hi)` of its outermost parallel range to run, and three error slots
/// ([`crate::check`]); it returns 0, or a failed check's number + 1.
pub type KernelFn = unsafe extern "C" fn(*const *mut u8, *const i64, i64, i64, *mut i64) -> i32;

/// The symbol of device kernel `i` in a CPU object.
pub fn symbol(i: usize) -> String {
    format!("tk_k{i}")
}
