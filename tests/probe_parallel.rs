//! `probe` of a large file analyzes its halves on two threads; the report
//! must be the one the sequential analyzer gives, on real bytes with real
//! errors (every repeat of the clip breaks continuity and the PCR timeline).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixture, probe_json};
use uringest::ts::analyze::Analyzer;

#[test]
fn two_thread_probe_equals_sequential_analysis() {
    let clip = std::fs::read(fixture("cbr_5mbit.ts")).unwrap();
    let mut big = Vec::new();
    // About 20 MiB, above the two-thread threshold; drop a packet now and
    // then so the seam lands among continuity errors as well.
    let mut index = 0usize;
    while big.len() < 20 << 20 {
        for p in clip.chunks_exact(188) {
            index += 1;
            if index % 9973 != 0 {
                big.extend_from_slice(p);
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.ts");
    std::fs::write(&path, &big).unwrap();

    let mut sequential = Analyzer::new();
    sequential.analyze(&big, None);
    // Through text, as the CLI's report is: serde_json's default float
    // parsing may differ from the value in its last bit.
    let text = serde_json::to_string(&sequential.report(path.to_str().unwrap())).unwrap();
    let mut want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut got = probe_json(&path);
    assert_eq!(got["io"], "mmap");
    got.as_object_mut().unwrap().remove("io");
    assert!(want["errors"]["cc_errors"].as_u64().unwrap() > 10, "the file must carry continuity errors");
    // The kernel name may differ from the in-process default only if the
    // CPU changed between the two; it does not.
    want["scanner"] = serde_json::Value::Null;
    got["scanner"] = serde_json::Value::Null;
    assert_eq!(got, want);
}
