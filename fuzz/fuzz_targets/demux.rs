//! Arbitrary bytes, arbitrarily chunked, through `Demuxer`.
//!
//! Input layout is `m t0 t1 s body...`:
//! - `m & 1`: put a valid PAT (program 1 on 0x1000) and PMT in front,
//!   announcing PID 0x100 with stream type `TYPES[t0 & 15]` and 0x101 with
//!   `TYPES[t1 & 15]`, so the PES paths are reached;
//! - `m & 2`: force the sync byte at every 188th byte of the body;
//! - `m & 4`: fold PIDs onto {0, 0x100, 0x101, 0x1000, 0x1FFF};
//! - `m & 8`: small limits (1 KiB per PES, 16 queued) so the caps fire;
//! - `s` seeds the chunk lengths (1..=600 bytes, packet boundaries or not).
//!
//! Checks: the chunked run gives exactly the packets and counters of one
//! push of the whole input (the carry between pushes loses nothing; skipped
//! when the small queue overflowed in either run); no
//! counter decreases; the queue stays within its cap and every payload
//! within the PES cap; `av_packets_total` = drained + queued (+ counted
//! overflow never reaches the queue); `ts_packets_total` is the whole
//! packets pushed; per track, DTS moves less than 2^32 between packets and
//! PTS is within 2^32 of DTS (the unwrap picks the nearest value); a
//! stream's TrackInfo PIDs are unique and < 8192.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use uringest::ts::av::AvPacket;
use uringest::ts::demux::{DemuxCounters, DemuxLimits, Demuxer};
use uringest::ts::packet::Pid;
use uringest::ts::psi::{build_section, packetize, pat_body, pmt_body};

const TYPES: [u8; 16] = [0x1B, 0x24, 0x0F, 0x03, 0x04, 0x81, 0x87, 0x06, 0x02, 0x8A, 0x86, 0x15, 0x1B, 0x0F, 0x06, 0x24];
const PIDS: [u16; 8] = [0x0000, 0x0100, 0x0101, 0x1000, 0x1FFF, 0x0100, 0x0101, 0x0100];

fn counters_grow(before: &DemuxCounters, after: &DemuxCounters) {
    let a = format!("{before:?}");
    let b = format!("{after:?}");
    // Same field order: compare the numbers pairwise.
    let nums = |s: &str| -> Vec<u64> {
        s.split(|c: char| !c.is_ascii_digit()).filter(|t| !t.is_empty()).map(|t| t.parse().unwrap()).collect()
    };
    for (x, y) in nums(&a).iter().zip(nums(&b).iter()) {
        assert!(x <= y, "a counter went down: {a} -> {b}");
    }
}

fn run(input: &[u8], lens: &mut dyn FnMut() -> usize, limits: DemuxLimits) -> (Vec<AvPacket>, DemuxCounters) {
    let mut d = Demuxer::with_limits(limits);
    let mut out = Vec::new();
    let mut rest = input;
    let mut before = *d.counters();
    while !rest.is_empty() {
        let (now, later) = rest.split_at(lens().min(rest.len()));
        d.push(now);
        assert!(d.ready() <= limits.max_queued);
        let c = *d.counters();
        counters_grow(&before, &c);
        before = c;
        d.drain(&mut out, 7);
        let mut pids: Vec<u16> = d.tracks().map(|t| t.pid).collect();
        assert!(pids.iter().all(|p| *p < 8192));
        pids.sort_unstable();
        pids.dedup();
        assert_eq!(pids.len(), d.tracks().count(), "a PID is one track");
        rest = later;
    }
    d.flush();
    d.drain(&mut out, usize::MAX);
    let c = *d.counters();
    counters_grow(&before, &c);
    assert_eq!(c.av_packets_total, out.len() as u64);
    assert_eq!(c.ts_packets_total, (input.len() / 188) as u64);
    (out, c)
}

fuzz_target!(|data: &[u8]| {
    let [m, t0, t1, s, body @ ..] = data else { return };
    let mut input = Vec::new();
    if m & 1 != 0 {
        let pat = build_section(0, 1, 0, &pat_body(&[(1, 0x1000)]));
        let pmt = build_section(2, 1, 0, &pmt_body(0x100, &[(TYPES[usize::from(t0 & 15)], 0x100, &[]), (TYPES[usize::from(t1 & 15)], 0x101, &[])]));
        for p in packetize(&pat, Pid::new(0), &mut 0).iter().chain(&packetize(&pmt, Pid::new(0x1000), &mut 0)) {
            input.extend_from_slice(p);
        }
    }
    let start = input.len();
    input.extend_from_slice(body);
    for (i, p) in input[start..].chunks_mut(188).enumerate() {
        if m & 2 != 0 {
            p[0] = 0x47;
        }
        if m & 4 != 0 && p.len() >= 3 {
            let pid = PIDS[(usize::from(p[1]) + i) & 7];
            p[1] = (p[1] & 0xE0) | (pid >> 8) as u8;
            p[2] = pid as u8;
        }
    }
    let limits = if m & 8 != 0 { DemuxLimits { max_pes_bytes: 1024, max_queued: 16 } } else { DemuxLimits::default() };

    let mut state = u32::from(*s) | 1;
    let mut chunked = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        if state & 3 == 0 { 188 * (state as usize >> 8 & 3) + 188 } else { (state as usize >> 4) % 600 + 1 }
    };
    let (pieces, c1) = run(&input, &mut chunked, limits);
    let (whole, c2) = run(&input, &mut || usize::MAX, limits);
    if m & 8 == 0 {
        // The default queue holds far more than a fuzz input makes.
        assert_eq!(c2.queue_overflow_total, 0);
    }
    // With the small queue, one push of everything may overflow where
    // draining between chunks did not; otherwise the runs agree exactly.
    if c1.queue_overflow_total == 0 && c2.queue_overflow_total == 0 {
        assert_eq!(c1, c2, "chunking changed the counters");
        assert_eq!(pieces, whole, "chunking changed the packets");
    }

    let mut last_dts: HashMap<u16, i64> = HashMap::new();
    for p in &whole {
        assert!(p.payload.len() <= limits.max_pes_bytes);
        assert!((p.pts - p.dts).abs() <= 1 << 32, "PTS far from DTS: {p:?}");
        if let Some(prev) = last_dts.insert(p.track, p.dts) {
            assert!((p.dts - prev).abs() <= 1 << 32, "DTS jumped by more than half the wrap");
        }
        assert!(p.track < 8192);
    }
});
