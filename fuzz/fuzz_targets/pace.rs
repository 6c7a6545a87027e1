//! Arbitrary packets through `LoopSeam` and then `PcrPacer`, the way a
//! looping, paced file input drives them.
//!
//! The input is cut into 188-byte packets with byte 0 forced to 0x47 and the
//! PID folded onto {0, 0x100, 0x101, 0x1000, 0x1FFF} (by the low 3 bits of
//! byte 1), so PAT/PMT discovery, PCRs and PES headers are reached. The
//! first byte of the input picks the chunk size (1..=32 packets) and the
//! pace limits are small so gaps, the PSI wait and the no-PCR refusal are
//! reached on short inputs. The file is played for three passes: pass 0
//! observed, passes 1 and 2 rewritten in place.
//!
//! Checks: a rewrite keeps the length, every sync byte, PID and flags;
//! pass 0 is unchanged; segments are contiguous, within the bytes scanned,
//! and their times never decrease; `released` stays inside its segment and
//! never goes back as time moves on; `consumed` stays inside the chunk.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use uringest::ts::pace::{PcrPacer, Segment};
use uringest::ts::seam::LoopSeam;

const PIDS: [u16; 8] = [0x0000, 0x0100, 0x0101, 0x1000, 0x1FFF, 0x0100, 0x0101, 0x0100];

fuzz_target!(|data: &[u8]| {
    let Some((&knob, rest)) = data.split_first() else { return };
    let mut file: Vec<u8> = rest[..rest.len() / 188 * 188].to_vec();
    if file.is_empty() {
        return;
    }
    for p in file.chunks_exact_mut(188) {
        p[0] = 0x47;
        let pid = PIDS[usize::from(p[1] & 7)];
        p[1] = (p[1] & 0xE0) | (pid >> 8) as u8;
        p[2] = pid as u8;
    }
    let chunk_len = (usize::from(knob & 31) + 1) * 188;
    let limits = uringest_fuzz::small_pace_limits();
    let mut seam = LoopSeam::new(None);
    let mut pacer = PcrPacer::with_limits(None, limits);
    let mut last: Option<Segment> = None;
    let mut now = Duration::ZERO;
    let mut scanned = 0u64;
    for pass in 0..3 {
        if pass > 0 {
            seam.start_iteration();
        }
        let mut bytes = file.clone();
        for chunk in bytes.chunks_mut(chunk_len) {
            let before = chunk.to_vec();
            if pass == 0 {
                seam.observe(chunk).expect("aligned chunk");
            } else {
                seam.rewrite(chunk).expect("aligned chunk");
            }
            assert_eq!(chunk.len(), before.len());
            for (a, b) in before.chunks_exact(188).zip(chunk.chunks_exact(188)) {
                assert_eq!(b[0], 0x47, "sync byte lost");
                assert_eq!(a[1..3], b[1..3], "PID or flags changed");
                assert_eq!(a[3] & 0xF0, b[3] & 0xF0, "header bits changed");
                if pass == 0 {
                    assert_eq!(a, b, "pass 0 modified");
                }
            }
            let mut pos = 0;
            let mut stalled_calls = 0;
            while pos < chunk.len() {
                let step = match pacer.scan(&chunk[pos..], now) {
                    Ok(step) => step,
                    Err(_) => return,
                };
                assert!(step.consumed <= chunk.len() - pos, "consumed past the chunk");
                assert_eq!(step.consumed % 188, 0);
                pos += step.consumed;
                scanned += step.consumed as u64;
                assert_eq!(pacer.scanned(), scanned);
                stalled_calls = if step.consumed == 0 { stalled_calls + 1 } else { 0 };
                assert!(stalled_calls < 2, "no progress");
                if let Some(seg) = step.segment {
                    check(&last, &seg, scanned);
                    // Move time along, sometimes past the stall limit.
                    let before = seg.released(now);
                    now = seg.due(seg.anchor + (seg.end - seg.anchor) / 2) + Duration::from_millis(u64::from(knob >> 6) * 40);
                    assert!(seg.released(now) >= before, "released went back");
                    last = Some(seg);
                }
            }
        }
        seam.rewrite(&mut []).expect("empty chunk");
    }
    if let Ok(Some(seg)) = pacer.finish(now) {
        check(&last, &seg, scanned);
    }
});

fn check(last: &Option<Segment>, seg: &Segment, scanned: u64) {
    assert!(seg.start <= seg.anchor && seg.anchor <= seg.end && seg.end <= scanned, "{seg:?} past {scanned}");
    assert!(seg.end_at() >= seg.start_at(), "{seg:?} goes back in time");
    if let Some(prev) = last {
        assert_eq!(prev.end, seg.start, "segments not contiguous");
        assert!(seg.start_at() >= prev.end_at(), "{seg:?} before {prev:?}");
    }
    for at in [seg.start_at(), seg.end_at(), seg.start_at() + (seg.end_at() - seg.start_at()) / 3] {
        let r = seg.released(at);
        assert!(seg.start <= r && r <= seg.end, "released {r} outside {seg:?}");
    }
    let mut prev = seg.start_at();
    for o in (seg.start..seg.end).step_by(188) {
        let due = seg.due(o);
        assert!(due >= prev, "due times decrease inside {seg:?}");
        prev = due;
    }
}
