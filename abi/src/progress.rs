//! How far the work in progress has got, for a progress bar (`tk run` and `tk build` on a
//! terminal).
//!
//! Process-wide and for display only: the work is a number of steps (the device kernels of a run,
//! the files and targets of a build), and the step under way reports units of its own (the blocks
//! a simulator has run, the chunks the CPU device has finished). Concurrent runs in one process
//! mix their reports; nothing but the display reads them.

use std::sync::atomic::{AtomicU64, Ordering};

static STEP: AtomicU64 = AtomicU64::new(0);
static STEPS: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);

/// Starts step `step` (from 0) of `steps`; its units start at none.
pub fn step(step: usize, steps: usize) {
    TOTAL.store(0, Ordering::Relaxed);
    DONE.store(0, Ordering::Relaxed);
    STEP.store(step as u64, Ordering::Relaxed);
    STEPS.store(steps as u64, Ordering::Relaxed);
}

/// The current step has `total` units of work.
pub fn units(total: u64) {
    DONE.store(0, Ordering::Relaxed);
    TOTAL.store(total, Ordering::Relaxed);
}

/// `n` more units of the current step are done.
pub fn advance(n: u64) {
    DONE.fetch_add(n, Ordering::Relaxed);
}

/// Nothing is in progress.
pub fn reset() {
    step(0, 0);
}

/// The fraction of the work done, in [0, 1]; `None` when no work reported its steps.
pub fn fraction() -> Option<f64> {
    let steps = STEPS.load(Ordering::Relaxed);
    if steps == 0 {
        return None;
    }
    let (done, total) = (DONE.load(Ordering::Relaxed), TOTAL.load(Ordering::Relaxed));
    let within = if total == 0 { 0.0 } else { (done.min(total)) as f64 / total as f64 };
    let step = STEP.load(Ordering::Relaxed).min(steps) as f64;
    Some(((step + within) / steps as f64).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn steps_and_units_make_one_fraction() {
        super::reset();
        assert_eq!(super::fraction(), None);
        super::step(1, 4);
        assert_eq!(super::fraction(), Some(0.25));
        super::units(10);
        super::advance(5);
        assert_eq!(super::fraction(), Some(0.375));
        super::advance(50);
        assert_eq!(super::fraction(), Some(0.5), "units past the total count as the whole step");
        super::reset();
    }
}
