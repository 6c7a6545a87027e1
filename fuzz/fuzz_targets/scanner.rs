//! Arbitrary bytes through the whole-stream analyzer.
//!
//! Checks the report invariants (see `uringest_fuzz::check_report`) and that
//! the scalar, SSE2 and AVX2 kernels (and the default analyzer) agree on the
//! report, the raw per-PID counters and the PSI counters. A second pass uses
//! a duration limit taken from the first byte.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    uringest_fuzz::analyze_all(data, None);
    if let Some(&b) = data.first() {
        // 0 .. ~4 s in 1/64 s steps; 0 stops after the first run with a PCR pair.
        uringest_fuzz::analyze_all(data, Some(f64::from(b) / 64.0));
    }
});
