//! Pacing on the committed fixtures and on synthetic streams.

use super::*;
use crate::ts::analyze::Analyzer;
use crate::ts::psi::{build_section, packetize};

const CBR: &[u8] = include_bytes!("../../../tests/fixtures/cbr_5mbit.ts");
const H264_AAC: &[u8] = include_bytes!("../../../tests/fixtures/h264_aac.ts");
const MPTS: &[u8] = include_bytes!("../../../tests/fixtures/mpts_3prog.ts");

const MS: u64 = Pcr::HZ / 1000;
const ONE_US: Duration = Duration::from_micros(1);

/// A packet of `pid`, with a PCR and/or discontinuity_indicator when asked.
fn packet(pid: u16, cc: u8, pcr: Option<u64>, discontinuity: bool) -> [u8; PACKET_LEN] {
    let mut p = [0xFFu8; PACKET_LEN];
    p[..4].copy_from_slice(&[0x47, (pid >> 8) as u8, pid as u8, 0x10 | (cc & 0x0F)]);
    if pcr.is_some() || discontinuity {
        p[3] |= 0x20;
        p[4] = if pcr.is_some() { 7 } else { 1 };
        p[5] = u8::from(discontinuity) << 7 | u8::from(pcr.is_some()) << 4;
        if let Some(ticks) = pcr {
            let (base, ext) = (ticks / 300, ticks % 300);
            p[6..10].copy_from_slice(&((base >> 1) as u32).to_be_bytes());
            p[10] = ((base & 1) as u8) << 7 | 0x7E | (ext >> 8) as u8;
            p[11] = ext as u8;
        }
    }
    p
}

/// A stream of PCRs on PID 0x100, one per `spacing` packets (the others
/// null packets), each given as (PCR, discontinuity).
fn synthetic(pcrs: &[(u64, bool)], spacing: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, &(pcr, disc)) in pcrs.iter().enumerate() {
        out.extend_from_slice(&packet(0x100, i as u8, Some(pcr), disc));
        for _ in 1..spacing {
            out.extend_from_slice(&packet(0x1FFF, 0, None, false));
        }
    }
    out
}

/// Feeds `bytes` in chunks of `chunk_packets` packets at time `now`, and
/// finishes; returns the segments in order.
fn run(pacer: &mut PcrPacer, bytes: &[u8], chunk_packets: usize, now: Duration) -> Vec<Segment> {
    let mut segments = Vec::new();
    for chunk in bytes.chunks(chunk_packets * PACKET_LEN) {
        let mut pos = 0;
        // Each call consumes bytes or returns a segment, and the packet that
        // closed a segment is passed on the next call: 2 calls per packet.
        for _ in 0..=2 * chunk.len() / PACKET_LEN + 1 {
            let step = pacer.scan(&chunk[pos..], now).unwrap();
            pos += step.consumed;
            segments.extend(step.segment);
            if pos == chunk.len() && step.segment.is_none() {
                break;
            }
        }
        assert_eq!(pos, chunk.len(), "pacer stopped consuming");
    }
    segments.extend(pacer.finish(now).unwrap());
    check_contiguous(&segments);
    segments
}

fn check_contiguous(segments: &[Segment]) {
    for pair in segments.windows(2) {
        assert_eq!(pair[0].end, pair[1].start);
        assert_eq!(pair[0].end, pair[1].anchor);
        assert!(pair[1].start_at() >= pair[0].end_at(), "{pair:?}");
    }
    for s in segments {
        assert!(s.start <= s.anchor && s.anchor <= s.end && s.end_at() >= s.start_at(), "{s:?}");
    }
}

/// The PCR of the packet at stream offset `offset`.
fn pcr_at(bytes: &[u8], offset: u64) -> Pcr {
    let p = TsPacket::from_slice(&bytes[offset as usize..]).unwrap();
    p.adaptation_field().and_then(|af| af.pcr()).unwrap()
}

fn first_pcr_pid(bytes: &[u8]) -> Pid {
    let mut analyzer = Analyzer::new();
    analyzer.analyze(bytes, None);
    analyzer.psi().programs().next().and_then(|(_, _, pmt)| pmt).unwrap().pcr_pid
}

fn secs(ticks: u64) -> Duration {
    duration_of(ticks)
}

fn close(a: Duration, b: Duration, tolerance: Duration) -> bool {
    a.abs_diff(b) <= tolerance
}

#[test]
fn fixture_pcrs_are_due_at_their_pcr() {
    for (name, bytes) in [("cbr_5mbit", CBR), ("h264_aac", H264_AAC), ("mpts_3prog", MPTS)] {
        let start = Duration::from_secs(7);
        let mut pacer = PcrPacer::new(None);
        let segments = run(&mut pacer, bytes, 64, start);
        assert_eq!(pacer.pcr_pid(), Some(first_pcr_pid(bytes)), "{name}");
        let c = pacer.counters();
        assert_eq!((c.discontinuities_total, c.pcr_jumps_total, c.stalls_total, c.pcr_gaps_total), (0, 0, 0, 0));
        // The anchor of every segment but the tail is a PCR packet.
        let pcr0 = pcr_at(bytes, segments[0].anchor);
        assert_eq!(segments[0].start_at(), start, "{name}: first PCR due at once");
        assert_eq!(segments[0].due(0), start, "{name}: bytes before the first PCR are due at once");
        for s in &segments {
            let expected = start + secs(pcr_at(bytes, s.anchor).ticks_since(pcr0));
            assert!(close(s.due(s.anchor), expected, ONE_US), "{name}: {s:?}");
        }
        assert_eq!(c.pcrs_total, segments.len() as u64, "{name}: one segment per PCR, plus the tail");
        // The tail after the last PCR runs at the last interval's rate.
        let [.., last, tail] = segments[..] else { panic!("{name}: too few segments") };
        assert_eq!(tail.end, bytes.len() as u64);
        let last_rate = (last.end_at() - last.start_at()).as_secs_f64() / (last.end - last.anchor) as f64;
        let tail_time = (tail.end_at() - tail.start_at()).as_secs_f64();
        assert!((tail_time - last_rate * tail.bytes() as f64).abs() < 1e-6, "{name}");
    }
}

#[test]
fn chunking_does_not_change_the_plan() {
    let whole = run(&mut PcrPacer::new(None), CBR, CBR.len() / PACKET_LEN, Duration::ZERO);
    for packets in [1, 7, 100] {
        let chunked = run(&mut PcrPacer::new(None), CBR, packets, Duration::ZERO);
        assert_eq!(whole, chunked, "chunks of {packets} packets");
    }
}

#[test]
fn pcr_wrap_around_is_seamless() {
    let pcrs: Vec<(u64, bool)> = (0..100).map(|i| ((Pcr::WRAP - 50 * MS + i * MS) % Pcr::WRAP, false)).collect();
    let bytes = synthetic(&pcrs, 10);
    let mut pacer = PcrPacer::new(Some(Pid::new(0x100)));
    let segments = run(&mut pacer, &bytes, 16, Duration::ZERO);
    for (i, s) in segments.iter().enumerate().take(99) {
        assert_eq!(s.due(s.anchor), secs(i as u64 * MS), "PCR {i}");
        // Bytes between PCRs are spread linearly: packet 5 of 10 is half way.
        assert!(close(s.due(s.anchor + 5 * PACKET_LEN as u64), secs(i as u64 * MS + MS / 2), ONE_US));
    }
    assert_eq!(pacer.counters().pcr_jumps_total, 0);
}

#[test]
fn discontinuity_continues_at_the_last_rate() {
    // 1 ms per 10 packets, then a new time base (announced), a backward
    // jump and a forward jump of 2 s (not announced).
    let mut pcrs: Vec<(u64, bool)> = (0..10).map(|i| (i * MS, false)).collect();
    pcrs.extend((0..10).map(|i| (5_000_000_000 + i * MS, i == 0)));
    pcrs.extend((0..10).map(|i| (1_000 + i * MS, false)));
    pcrs.extend((0..10).map(|i| (1_000 + 2_000 * MS + i * MS, false)));
    let bytes = synthetic(&pcrs, 10);
    let mut pacer = PcrPacer::new(Some(Pid::new(0x100)));
    let segments = run(&mut pacer, &bytes, 3, Duration::ZERO);
    // Every PCR is due 1 ms after the previous one: no gap, no burst.
    for (i, s) in segments.iter().enumerate().take(pcrs.len()) {
        assert_eq!(s.due(s.anchor), secs(i as u64 * MS), "PCR {i}");
    }
    let c = pacer.counters();
    assert_eq!((c.discontinuities_total, c.pcr_jumps_total), (1, 2));
}

#[test]
fn discontinuity_before_any_rate_releases_at_once() {
    let bytes = synthetic(&[(0, false), (900 * MS, true), (901 * MS, false)], 10);
    let segments = run(&mut PcrPacer::new(Some(Pid::new(0x100))), &bytes, 5, Duration::ZERO);
    assert_eq!(segments[0].end_at(), Duration::ZERO);
    assert_eq!(segments[1].end_at(), secs(MS));
}

#[test]
fn late_caller_moves_the_timeline() {
    let bytes = synthetic(&(0..5).map(|i| (i * 10 * MS, false)).collect::<Vec<_>>(), 10);
    let mut pacer = PcrPacer::new(Some(Pid::new(0x100)));
    let first = pacer.scan(&bytes, Duration::ZERO).unwrap();
    let seg = first.segment.unwrap();
    assert_eq!((seg.start_at(), seg.end_at()), (Duration::ZERO, secs(10 * MS)));
    // Asked 5 s later for the next one: starts now, keeps its length.
    let late = Duration::from_secs(5);
    let mut pos = first.consumed;
    let seg = pacer.scan(&bytes[pos..], late).unwrap().segment.unwrap();
    assert_eq!((seg.start_at(), seg.end_at()), (late, late + secs(10 * MS)));
    assert_eq!(pacer.counters().stalls_total, 1);
    // Late by less than the limit: no move.
    pos = seg.end as usize;
    let seg = pacer.scan(&bytes[pos..], late + Duration::from_millis(500)).unwrap().segment.unwrap();
    assert_eq!(seg.start_at(), late + secs(10 * MS));
    assert_eq!(pacer.counters().stalls_total, 1);
}

#[test]
fn no_pcr_is_refused_with_the_offset_scanned() {
    let nulls: Vec<u8> = (0..30_000).flat_map(|_| packet(0x1FFF, 0, None, false)).collect();
    let mut pacer = PcrPacer::new(None);
    let err = pacer.scan(&nulls, Duration::ZERO).unwrap_err();
    let PaceError::NoPcr { scanned, pid: None } = err else { panic!("{err:?}") };
    assert!(scanned >= 4 << 20 && scanned < (4 << 20) + PACKET_LEN as u64);
    assert!(err.to_string().starts_with("no PCR in the first 4194468 bytes"), "{err}");
    // A short input without PCR is refused when it ends.
    let mut pacer = PcrPacer::new(Some(Pid::new(0x100)));
    assert_eq!(pacer.scan(&nulls[..PACKET_LEN * 10], Duration::ZERO).unwrap().consumed, PACKET_LEN * 10);
    let err = pacer.finish(Duration::ZERO).unwrap_err();
    assert_eq!(err, PaceError::NoPcr { scanned: 1880, pid: Some(Pid::new(0x100)) });
    assert_eq!(err.to_string(), "no PCR on PCR PID 0x0100 in the first 1880 bytes: pace=pcr needs one, use pace=none");
}

#[test]
fn unaligned_chunk_is_an_error() {
    let err = PcrPacer::new(None).scan(&[0x47; 200], Duration::ZERO).unwrap_err();
    assert_eq!(err, PaceError::Unaligned { offset: 0, len: 200 });
}

#[test]
fn long_run_without_pcr_is_timed_at_the_last_rate() {
    let limits = PaceLimits { gap_bytes: 100 * PACKET_LEN as u64, ..PaceLimits::default() };
    let pcrs: Vec<(u64, bool)> = (0..3).map(|i| (i * MS, false)).collect();
    // 10 packets per PCR, but 250 packets before the last one.
    let mut bytes = synthetic(&pcrs[..3], 10);
    bytes.extend((0..240).flat_map(|_| packet(0x1FFF, 0, None, false)));
    bytes.extend(synthetic(&[(30 * MS, false)], 10));
    let mut pacer = PcrPacer::with_limits(Some(Pid::new(0x100)), limits);
    let segments = run(&mut pacer, &bytes, 32, Duration::ZERO);
    assert_eq!(pacer.counters().pcr_gaps_total, 2);
    // 100 packets at 0.1 ms each, twice, then the PCR after the gap.
    assert_eq!(segments[2].end - segments[2].start, 100 * PACKET_LEN as u64);
    assert_eq!(segments[2].end_at(), secs(12 * MS));
    assert_eq!(segments[3].end_at(), secs(22 * MS));
    assert_eq!(segments[4].end_at(), secs(27 * MS));
}

#[test]
fn released_is_the_inverse_of_due() {
    let bytes = synthetic(&[(0, false), (7 * MS + 13, false), (7 * MS + 13, false)], 23);
    let segments = run(&mut PcrPacer::new(Some(Pid::new(0x100))), &bytes, 50, Duration::from_millis(3));
    for s in &segments {
        for tick in (0..=9 * MS).step_by(997) {
            let now = Duration::from_millis(3) + secs(tick);
            let expected = (s.start..s.end)
                .step_by(PACKET_LEN)
                .filter(|&o| s.due(o) <= now)
                .last()
                .map_or(s.start, |o| o + PACKET_LEN as u64);
            assert_eq!(s.released(now), expected, "{s:?} at {now:?}");
        }
    }
}

#[test]
fn ready_at_is_the_first_instant_that_releases_the_packet() {
    let bytes = synthetic(&[(0, false), (7 * MS + 13, false), (7 * MS + 13, false)], 23);
    let segments = run(&mut PcrPacer::new(Some(Pid::new(0x100))), &bytes, 50, Duration::from_millis(3));
    for s in &segments {
        for o in (s.start..s.end).step_by(PACKET_LEN) {
            let at = s.ready_at(o);
            assert!(s.released(at) > o, "{s:?}: packet at {o} not released at {at:?}");
            assert!(at - s.due(o) < Duration::from_nanos(2), "ready_at rounds up by less than a nanosecond");
            if let Some(before) = at.checked_sub(Duration::from_nanos(1)) {
                assert!(s.released(before) <= o || s.due(o) == at, "{s:?}: packet at {o} released before {at:?}");
            }
        }
    }
}

#[test]
fn pcr_pid_comes_from_the_first_program() {
    // PID 0x100 carries PCRs first, but the PMT names 0x101.
    let pat = build_section(0, 1, 0, &[0, 1, 0xF0, 0x00]);
    let pmt = build_section(2, 1, 0, &[0xE1, 0x01, 0xF0, 0, 0x1B, 0xE1, 0x00, 0xF0, 0]);
    let mut bytes: Vec<u8> = synthetic(&[(0, false), (MS, false)], 2);
    bytes.extend(packetize(&pat, Pid::PAT, &mut 0).concat());
    bytes.extend(packetize(&pmt, Pid::new(0x1000), &mut 0).concat());
    for i in 0..4u64 {
        bytes.extend_from_slice(&packet(0x101, i as u8, Some(50 * MS + i * MS), false));
    }
    let mut pacer = PcrPacer::new(None);
    let segments = run(&mut pacer, &bytes, 1, Duration::ZERO);
    assert_eq!(pacer.pcr_pid(), Some(Pid::new(0x101)));
    assert_eq!(segments[0].anchor, 6 * PACKET_LEN as u64);
    assert_eq!(segments[0].end_at(), secs(MS));
}

#[test]
fn without_psi_the_first_pcr_pid_is_taken() {
    let limits = PaceLimits { psi_wait_bytes: 20 * PACKET_LEN as u64, ..PaceLimits::default() };
    let bytes = synthetic(&(0..10).map(|i| (i * MS, false)).collect::<Vec<_>>(), 10);
    let mut pacer = PcrPacer::with_limits(None, limits);
    let segments = run(&mut pacer, &bytes, 4, Duration::ZERO);
    assert_eq!(pacer.pcr_pid(), Some(Pid::new(0x100)));
    // PCRs 0 and 1 passed while PSI was awaited; PCR 1 is the anchor.
    assert_eq!(segments[0].anchor, 10 * PACKET_LEN as u64);
    assert_eq!(segments[0].end_at(), secs(MS));
}
