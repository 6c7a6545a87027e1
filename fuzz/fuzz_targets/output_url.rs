//! Arbitrary strings through `parse_output`.
//!
//! Layout: `m text...`; `m & 3` puts `udp://` (1) or `file:///` (2) in front
//! of the text so most runs reach those parsers. Text that is not UTF-8 is
//! skipped.
//!
//! Checks: no panic; errors are one line; a udp:// spec keeps its
//! invariants (port nonzero, a destination that is not "any", pkt_size a
//! multiple of 188 in range) and its `Display` parses back to the same
//! spec; a file spec's segment is in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringest::output::spec::{MAX_OUT_PKT_SIZE, OutputSpec, SEGMENT_RANGE, parse_output};

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let input = match m & 3 {
        1 => format!("udp://{text}"),
        2 => format!("file:///{text}"),
        _ => text.to_owned(),
    };
    match parse_output(&input) {
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "control character in error: {msg:?}");
        }
        Ok(OutputSpec::Udp(spec)) => {
            assert_ne!(spec.dest.port(), 0);
            assert!(!spec.dest.ip().is_unspecified());
            assert!(spec.pkt_size % 188 == 0 && (188..=MAX_OUT_PKT_SIZE).contains(&spec.pkt_size));
            let shown = OutputSpec::Udp(spec.clone()).to_string();
            match parse_output(&shown) {
                Ok(OutputSpec::Udp(again)) => assert_eq!(again, spec, "round trip: {input:?} -> {shown:?}"),
                other => panic!("Display {shown:?} of {input:?} does not parse back: {other:?}"),
            }
        }
        Ok(OutputSpec::File(spec)) => {
            if let Some(seg) = spec.segment {
                assert!((SEGMENT_RANGE.0..=SEGMENT_RANGE.1).contains(&seg.as_secs_f64()));
            }
        }
        Ok(OutputSpec::Stdout) => assert_eq!(input, "-"),
    }
});
