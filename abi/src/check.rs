//! The error slots of a failed bounds check.
//!
//! Every device kernel gets a pointer to error slots. A check that fails stores its number + 1
//! (numbered in the kernel IR's program order, as [`crate::launch::KernelInfo::checks`] lists
//! them), the value and the bounds. The CPU kernel returns the number + 1 and writes the other
//! three words into three slots; a GPU kernel writes all four words (the first with `atom.cas`,
//! so the first failure wins) into [`GPU_SLOTS`] bytes.

use crate::launch::CheckInfo;
use std::collections::HashMap;
use tk_ir::dims::Dim;
use tk_ir::graph::Loc;

/// The bytes of a GPU kernel's error slots: four little-endian i64 words (number + 1, value,
/// lower bound, upper bound).
pub const GPU_SLOTS: usize = 32;

/// A bounds check that failed: the value and the bounds it had to lie in, at the source of
/// the check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckFailure {
    pub value: i64,
    pub lo: i64,
    pub hi: i64,
    pub loc: Loc,
}

fn eval(d: &Dim, dims: &HashMap<String, i64>) -> i64 {
    d.eval(&|s| dims.get(s).copied()).unwrap_or(0)
}

/// Decodes the words of a failed check; `None` when `code` is 0 (no check failed). The bounds
/// are evaluated from the kernel's checks when the number names one, else taken as written.
pub fn decode(words: [i64; 4], checks: &[CheckInfo], dims: &HashMap<String, i64>) -> Option<CheckFailure> {
    let [code, value, lo, hi] = words;
    if code == 0 {
        return None;
    }
    let c = usize::try_from(code - 1).ok().and_then(|i| checks.get(i));
    Some(CheckFailure {
        value,
        lo: c.map(|c| eval(&c.lo, dims)).unwrap_or(lo),
        hi: c.map(|c| eval(&c.hi, dims)).unwrap_or(hi),
        loc: c.map(|c| c.loc).unwrap_or_default(),
    })
}

/// Decodes a GPU kernel's error slots (at least [`GPU_SLOTS`] bytes; missing words read as 0).
pub fn decode_gpu(slots: &[u8], checks: &[CheckInfo], dims: &HashMap<String, i64>) -> Option<CheckFailure> {
    let word =
        |i: usize| slots.get(i * 8..i * 8 + 8).and_then(|b| b.try_into().ok()).map(i64::from_le_bytes).unwrap_or(0);
    decode([word(0), word(1), word(2), word(3)], checks, dims)
}

/// Decodes a CPU kernel's result and its three error slots.
pub fn decode_cpu(
    code: i32,
    slots: [i64; 3],
    checks: &[CheckInfo],
    dims: &HashMap<String, i64>,
) -> Option<CheckFailure> {
    decode([i64::from(code), slots[0], slots[1], slots[2]], checks, dims)
}
