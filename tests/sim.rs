//! The NVIDIA backend: every example's PTX runs on the simulated GPU (`sim:sm_86`) and matches
//! the reference interpreter under the numeric contract, on random inputs with awkward sizes;
//! the simulator catches planted out-of-bounds and missing-barrier kernels.

mod common;
use common::*;

const SIM: &str = "sim:sm_86";

#[test]
fn every_example_matches_the_interpreter_on_the_simulator() {
    every_example_matches_the_interpreter(SIM, &[0, 1, 2, 3, 5, 7, 13, 17], 300);
}

#[test]
fn integer_and_cast_edge_cases_match_the_interpreter_on_the_simulator() {
    integer_and_cast_edge_cases_match_the_interpreter(SIM);
}

#[test]
fn default_options_match_the_interpreter_within_tolerance_on_the_simulator() {
    default_options_match_the_interpreter_within_tolerance(SIM, &[1, 5, 33], 100);
}
