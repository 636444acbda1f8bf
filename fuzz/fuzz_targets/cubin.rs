//! Fuzzes the cubin reader: any bytes are read or refused with an error, never a panic.
//! `cargo fuzz run cubin abi/tests/fixtures/cubin` starts from the real cubins.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tk_abi::cubin::read(data);
});
