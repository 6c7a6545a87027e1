//! The two-thread analysis must equal the sequential one on any input, for
//! any opening and seam (taken from the first four bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| uringest_fuzz::split_agrees(data));
