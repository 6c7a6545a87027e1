//! Monitor tests on the fixtures, mutated so each expected count is known
//! by construction. Times: the CBR fixture is 5 Mbit/s exactly, so packet
//! `i` is given the time `i * 300.8 µs`.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::ts::analyze::Analyzer;

/// Time of one 188-byte packet at 5 Mbit/s.
const CBR_PACKET_NS: u64 = 300_800;
const NULL: u16 = 0x1FFF;
const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;
const PMT: u16 = 0x1000;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn pid_of(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

/// `clip` repeated `times`, continuity counters rewritten to run on across
/// the seams (as a looping playout does), so the result is clean.
fn looped(clip: &[u8], times: usize) -> Vec<u8> {
    let mut out = clip.repeat(times);
    let mut last: BTreeMap<u16, u8> = BTreeMap::new();
    for p in out.chunks_exact_mut(188) {
        let pid = pid_of(p);
        let payload = p[3] & 0x10 != 0;
        if let Some(&cc) = last.get(&pid) {
            let cc = if payload { (cc + 1) & 0x0F } else { cc };
            p[3] = (p[3] & 0xF0) | cc;
        }
        last.insert(pid, p[3] & 0x0F);
    }
    out
}

/// A null packet (never continuity-checked).
fn null_packet() -> [u8; 188] {
    let mut p = [0xFFu8; 188];
    p[..4].copy_from_slice(&[0x47, 0x1F, 0xFF, 0x10]);
    p
}

/// Replaces the packets of `pid` with index in `range` by null packets;
/// returns how many.
fn blank(ts: &mut [u8], pid: u16, range: std::ops::Range<usize>) -> usize {
    let mut n = 0;
    for (i, p) in ts.chunks_exact_mut(188).enumerate() {
        if range.contains(&i) && pid_of(p) == pid {
            p.copy_from_slice(&null_packet());
            n += 1;
        }
    }
    n
}

/// Pushes `ts` in chunks of `per` packets, each at the time of its first
/// packet (`packet_ns` apart); returns the time of the last chunk.
fn feed(m: &mut StreamMonitor, ts: &[u8], per: usize, packet_ns: u64) -> Duration {
    let mut t = Duration::ZERO;
    for (i, chunk) in ts.chunks(per * 188).enumerate() {
        t = Duration::from_nanos((i * per) as u64 * packet_ns);
        m.push(chunk, t);
    }
    t
}

/// Indices of the packets of `pid`.
fn indices(ts: &[u8], pid: u16) -> Vec<usize> {
    ts.chunks_exact(188).enumerate().filter(|(_, p)| pid_of(p) == pid).map(|(i, _)| i).collect()
}

/// "Missing" errors of a gap of `gap_ns` over `limit_ns`: the k >= 1 with
/// k * limit < gap.
fn missing_errors(gap_ns: u64, limit_ns: u64) -> u64 {
    gap_ns.saturating_sub(1) / limit_ns
}

/// Per-PID packet counts by direct count.
fn direct_counts(ts: &[u8]) -> BTreeMap<u16, u64> {
    let mut counts = BTreeMap::new();
    for p in ts.chunks_exact(188) {
        *counts.entry(pid_of(p)).or_insert(0) += 1;
    }
    counts
}

fn pid_counts(m: &StreamMonitor) -> BTreeMap<u16, u64> {
    let mut pids = Vec::new();
    m.pids(&mut pids);
    assert!(pids.windows(2).all(|w| w[0].pid < w[1].pid), "PID order");
    pids.iter().map(|p| (p.pid, p.packets_total)).collect()
}

#[test]
fn idle_monitor_is_small_and_quiet() {
    let mut m = StreamMonitor::new();
    assert!(std::mem::size_of::<StreamMonitor>() <= 32);
    m.tick(Duration::from_secs(100));
    assert_eq!(m.counters(), MonitorCounters::default());
    assert_eq!(m.bitrate_bps(), 0.0);
    let mut pids = Vec::new();
    m.pids(&mut pids);
    assert!(pids.is_empty());
    assert!(m.live.is_none(), "nothing allocated before data");
}

#[test]
fn clean_fixtures_count_exactly_and_show_no_errors() {
    for (name, secs) in [("cbr_5mbit.ts", 1.979), ("h264_aac.ts", 3.92), ("mpts_3prog.ts", 2.96)] {
        let ts = fixture(name);
        let packets = ts.len() / 188;
        let mut m = StreamMonitor::new();
        feed(&mut m, &ts, 7, (secs * 1e9 / packets as f64) as u64);
        let c = m.counters();
        // The probe's view of the same bytes: PCR repetition is a property
        // of the file.
        let mut probe = Analyzer::new();
        probe.analyze(&ts, None);
        let pcr_violations: u64 = probe.table().iter().map(|e| e.pcr.interval_violations).sum();
        assert_eq!(
            c,
            MonitorCounters {
                packets_total: packets as u64,
                bytes_total: ts.len() as u64,
                pcr_interval_violations_total: pcr_violations,
                ..MonitorCounters::default()
            },
            "{name}"
        );
        assert_eq!(pid_counts(&m), direct_counts(&ts), "{name}");
    }
}

#[test]
fn mpts_watches_every_program() {
    let ts = fixture("mpts_3prog.ts");
    let mut m = StreamMonitor::new();
    feed(&mut m, &ts, 7, 1_000_000);
    let checks = &m.live.as_ref().unwrap().checks;
    assert_eq!(checks.pmt_pids(), vec![0x1000, 0x1001, 0x1002]);
    assert_eq!(checks.stream_pids(), (0x100..=0x105).collect::<Vec<u16>>());
}

#[test]
fn pat_missing_for_a_span() {
    let mut ts = looped(&fixture("cbr_5mbit.ts"), 4);
    let per_sec = (1_000_000_000 / CBR_PACKET_NS) as usize;
    // PAT gone from 2.0 s to 3.2 s.
    let dropped = blank(&mut ts, 0, 2 * per_sec..32 * per_sec / 10);
    let pats = indices(&ts, 0);
    let gaps: Vec<u64> = pats.windows(2).map(|w| (w[1] - w[0]) as u64 * CBR_PACKET_NS).collect();
    let expected: u64 = gaps.iter().map(|&g| missing_errors(g, checks::TABLE_LIMIT_NS)).sum::<u64>()
        + missing_errors(pats[0] as u64 * CBR_PACKET_NS, checks::TABLE_LIMIT_NS);
    // The gap is about 1.3 s: errors at 0.5 and 1.0 s.
    assert_eq!(expected, 2);
    let mut m = StreamMonitor::new();
    feed(&mut m, &ts, 1, CBR_PACKET_NS);
    let c = m.counters();
    assert_eq!(c.pat_errors_total, expected);
    assert_eq!((c.pmt_errors_total, c.pid_errors_total), (0, 0));
    // The PAT's own counter jumps over the dropped packets.
    assert_eq!(c.cc_errors_total, u64::from(dropped % 16 != 0));
}

#[test]
fn pid_missing_for_a_span() {
    let mut ts = looped(&fixture("cbr_5mbit.ts"), 4);
    let per_sec = (1_000_000_000 / CBR_PACKET_NS) as usize;
    // Audio gone from 1.5 s to 7.6 s: over 5 s but under 10.
    let dropped = blank(&mut ts, AUDIO, 15 * per_sec / 10..76 * per_sec / 10);
    let audio = indices(&ts, AUDIO);
    let longest = audio.windows(2).map(|w| (w[1] - w[0]) as u64 * CBR_PACKET_NS).max().unwrap();
    assert!((5_500_000_000..9_000_000_000).contains(&longest), "{longest}");
    let mut m = StreamMonitor::new();
    feed(&mut m, &ts, 1, CBR_PACKET_NS);
    let c = m.counters();
    assert_eq!(c.pid_errors_total, 1);
    assert_eq!((c.pat_errors_total, c.pmt_errors_total), (0, 0));
    assert_eq!(c.cc_errors_total, u64::from(dropped % 16 != 0));
    assert_eq!(pid_counts(&m), direct_counts(&ts));
}

#[test]
fn stream_stopping_raises_missing_errors_on_tick() {
    let ts = looped(&fixture("cbr_5mbit.ts"), 2);
    let mut m = StreamMonitor::new();
    let end = feed(&mut m, &ts, 1, CBR_PACKET_NS);
    assert_eq!(m.counters().pat_errors_total, 0);
    let last_at = |pid| *indices(&ts, pid).last().unwrap() as u64 * CBR_PACKET_NS;
    let at = end + Duration::from_millis(1200);
    m.tick(at);
    let c = m.counters();
    let gap = |at: Duration, pid| nanos(at) - last_at(pid);
    assert_eq!(c.pat_errors_total, missing_errors(gap(at, 0), checks::TABLE_LIMIT_NS));
    assert_eq!(c.pat_errors_total, 2);
    assert_eq!(c.pmt_errors_total, missing_errors(gap(at, PMT), checks::TABLE_LIMIT_NS));
    assert_eq!(c.pid_errors_total, 0);
    // Ticks that go back in time change nothing.
    m.tick(Duration::ZERO);
    assert_eq!(m.counters(), c);
    let at = end + Duration::from_millis(5600);
    m.tick(at);
    let c = m.counters();
    assert_eq!(c.pat_errors_total, missing_errors(gap(at, 0), checks::TABLE_LIMIT_NS));
    assert_eq!(c.pat_errors_total, 11);
    // Video and audio, each missing once.
    assert_eq!(c.pid_errors_total, 2);
    assert_eq!(m.bitrate_bps(), 0.0, "no data in the last whole second");
}

#[test]
fn sync_byte_errors_and_losses() {
    let mut ts = fixture("cbr_5mbit.ts");
    let total = ts.len() / 188;
    let video = indices(&ts, VIDEO);
    // One bad sync byte on a video packet: an error, no loss; the video
    // counter then skips one.
    let single = video[video.partition_point(|&i| i < 1000)];
    ts[single * 188] = 0x46;
    // Three in a row: two errors (the third is not judged, sync being
    // lost), one loss; sync returns on the fourth, which has four behind it.
    let run = 3000..3003;
    for i in run.clone() {
        ts[i * 188] = 0x00;
    }
    let lost_pids: std::collections::BTreeSet<u16> =
        run.clone().map(|i| pid_of(&ts[i * 188..])).filter(|&p| p != NULL).collect();
    let mut m = StreamMonitor::new();
    feed(&mut m, &ts, 7, CBR_PACKET_NS);
    let c = m.counters();
    assert_eq!((c.sync_byte_errors_total, c.sync_losses_total), (3, 1));
    assert_eq!(c.packets_total, (total - 4) as u64);
    assert_eq!(c.cc_errors_total, 1 + lost_pids.len() as u64);
    let mut expect = direct_counts(&ts);
    for i in run.chain([single]) {
        *expect.get_mut(&pid_of(&ts[i * 188..])).unwrap() -= 1;
    }
    assert_eq!(pid_counts(&m), expect);
}

#[test]
fn continuity_and_transport_errors() {
    let mut ts = fixture("cbr_5mbit.ts");
    // A wrong counter on one video packet: that packet and the next of the
    // PID are errors (the wrong counter becomes the reference).
    let video = indices(&ts, VIDEO);
    let p = video[500] * 188;
    ts[p + 3] = (ts[p + 3] & 0xF0) | ((ts[p + 3] + 5) & 0x0F);
    // transport_error_indicator on three null packets: counted, and nulls
    // have no counter to break.
    for &i in &indices(&ts, NULL)[10..13] {
        ts[i * 188 + 1] |= 0x80;
    }
    let mut m = StreamMonitor::new();
    feed(&mut m, &ts, 7, CBR_PACKET_NS);
    let c = m.counters();
    assert_eq!((c.cc_errors_total, c.tei_packets_total), (2, 3));
    let mut pids = Vec::new();
    m.pids(&mut pids);
    let video_cc = pids.iter().find(|p| p.pid == VIDEO).unwrap().cc_errors_total;
    assert_eq!(video_cc, 2);
    assert_eq!(c.packets_total, (ts.len() / 188) as u64);
}

#[test]
fn pat_and_pmt_content_errors() {
    let mut ts = fixture("cbr_5mbit.ts");
    let pats = indices(&ts, 0);
    let pmts = indices(&ts, PMT);
    // Another table on PID 0 once, PID 0 scrambled twice, the PMT
    // scrambled three times; never two neighbours, so no table goes
    // missing for 0.5 s.
    let off = pats[2] * 188;
    assert_eq!(ts[off + 1] & 0x40, 0x40, "PAT packets start sections");
    ts[off + 5] = 0x42;
    for &i in &[pats[5], pats[8]] {
        ts[i * 188 + 3] |= 0x80;
    }
    for &i in &[pmts[4], pmts[10], pmts[15]] {
        ts[i * 188 + 3] |= 0xC0;
    }
    let mut m = StreamMonitor::new();
    feed(&mut m, &ts, 7, CBR_PACKET_NS);
    let c = m.counters();
    assert_eq!((c.pat_errors_total, c.pmt_errors_total), (3, 3));
    assert_eq!((c.cc_errors_total, c.pid_errors_total), (0, 0));
}

#[test]
fn bitrate_of_a_constant_rate_stream() {
    let ts = looped(&fixture("cbr_5mbit.ts"), 3);
    let mut m = StreamMonitor::new();
    let per = 7;
    let end = feed(&mut m, &ts, per, CBR_PACKET_NS);
    let rate = m.bitrate_bps();
    assert!((rate - 5e6).abs() < 5e6 * 0.01, "{rate}");
    // Per PID: exactly the packets of the chunks stamped in the last whole
    // second.
    let last = end.as_secs() - 1;
    let mut expect: BTreeMap<u16, u64> = BTreeMap::new();
    for (i, chunk) in ts.chunks(per * 188).enumerate() {
        if (i * per) as u64 * CBR_PACKET_NS / 1_000_000_000 == last {
            for p in chunk.chunks_exact(188) {
                *expect.entry(pid_of(p)).or_insert(0) += 188 * 8;
            }
        }
    }
    let mut pids = Vec::new();
    m.pids(&mut pids);
    for p in &pids {
        assert_eq!(p.bitrate_bps, expect.get(&p.pid).copied().unwrap_or(0) as f64, "PID {}", p.pid);
    }
    let sum: f64 = pids.iter().map(|p| p.bitrate_bps).sum();
    assert_eq!(sum, rate);
}

#[test]
fn bitrate_exact_at_one_packet_per_millisecond() {
    let ts = looped(&fixture("cbr_5mbit.ts"), 1);
    let mut m = StreamMonitor::new();
    feed(&mut m, &ts[..2500 * 188], 1, 1_000_000);
    assert_eq!(m.bitrate_bps(), 1000.0 * 188.0 * 8.0);
    // A second without data: the last whole window is empty.
    m.tick(Duration::from_millis(4000));
    assert_eq!(m.bitrate_bps(), 0.0);
}

#[test]
fn packets_are_judged_at_the_time_they_complete() {
    let ts = fixture("cbr_5mbit.ts");
    let mut m = StreamMonitor::new();
    // Half a packet, then nothing for a while: the PAT clock started with
    // the first byte.
    m.push(&ts[..94], Duration::ZERO);
    m.tick(Duration::from_millis(600));
    assert_eq!(m.counters().pat_errors_total, 1);
    assert_eq!(m.counters().packets_total, 0);
    m.push(&ts[94..], Duration::from_millis(700));
    assert_eq!(m.counters().packets_total, (ts.len() / 188) as u64);
    assert_eq!(m.counters().pat_errors_total, 1);
}

/// A fixture with random damage: bytes overwritten, inserted and removed.
fn damaged(edits: &[(usize, u8, u8)]) -> Vec<u8> {
    let mut ts = fixture("h264_aac.ts");
    for &(at, kind, byte) in edits {
        let at = at % ts.len();
        match kind % 4 {
            0 => ts[at] = byte,
            1 => ts.insert(at, byte),
            2 => {
                ts.remove(at);
            }
            _ => ts[at - at % 188] = byte,
        }
    }
    ts
}

/// Counters and PID table after `chunks`, all at `now`.
fn run_at_once(chunks: &[&[u8]]) -> (MonitorCounters, Vec<PidCounters>) {
    let mut m = StreamMonitor::new();
    for chunk in chunks {
        m.push(chunk, Duration::from_millis(1));
    }
    let mut pids = Vec::new();
    m.pids(&mut pids);
    (m.counters(), pids)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Where a stream is cut does not change what is counted.
    #[test]
    fn cuts_do_not_change_counts(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..60),
    ) {
        let ts = damaged(&edits);
        let whole = run_at_once(&[&ts]);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (ts.len() + 1)).collect();
        cuts.push(0);
        cuts.push(ts.len());
        cuts.sort_unstable();
        let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &ts[w[0]..w[1]]).collect();
        prop_assert_eq!(run_at_once(&chunks), whole.clone());
        // Every packet accounted is a PID's packet.
        prop_assert_eq!(whole.1.iter().map(|p| p.packets_total).sum::<u64>(), whole.0.packets_total);
        prop_assert!(whole.0.packets_total * 188 <= whole.0.bytes_total);
    }
}

#[test]
fn one_byte_chunks_match_one_buffer() {
    let ts = damaged(&[(5000, 1, 0x47), (20_000, 3, 0), (20_188, 3, 0), (60_000, 2, 0)]);
    let whole = run_at_once(&[&ts]);
    assert!(whole.0.sync_losses_total >= 1);
    let bytes: Vec<&[u8]> = ts.chunks(1).collect();
    assert_eq!(run_at_once(&bytes), whole);
}

/// A synthetic stream of 20 PIDs: PAT and PMT every 50 packets, 17
/// elementary PIDs (0x100..=0x110) and nulls; returns it and the index of
/// the last PAT packet.
fn twenty_pids() -> (Vec<u8>, usize) {
    use crate::ts::packet::Pid;
    use crate::ts::psi::{build_section, packetize, pat_body, pmt_body};
    let mut cc = [0u8; 8192];
    let es: Vec<u16> = (0x100..0x111).collect();
    let pat = build_section(0, 1, 0, &pat_body(&[(1, PMT)]));
    let streams: Vec<(u8, u16, &[u8])> = es.iter().map(|&pid| (0x1B, pid, &[][..])).collect();
    let pmt = build_section(2, 1, 0, &pmt_body(0x100, &streams));
    let mut out = Vec::new();
    let mut last_pat = 0;
    for i in 0..2000usize {
        if i % 50 == 0 {
            last_pat = out.len() / 188;
            out.extend(packetize(&pat, Pid::PAT, &mut cc[0]).into_iter().flatten());
            out.extend(packetize(&pmt, Pid::new(PMT), &mut cc[usize::from(PMT)]).into_iter().flatten());
        }
        let pid = if i % 18 == 17 { NULL } else { es[i % 18] };
        let mut p = [0u8; 188];
        p[..4].copy_from_slice(&[0x47, (pid >> 8) as u8, pid as u8, 0x10 | cc[usize::from(pid)]]);
        cc[usize::from(pid)] = (cc[usize::from(pid)] + 1) & 0x0F;
        out.extend_from_slice(&p);
    }
    (out, last_pat)
}

#[test]
fn every_listed_pid_goes_missing_when_the_stream_stops() {
    let (ts, last_pat) = twenty_pids();
    let mut m = StreamMonitor::new();
    feed(&mut m, &ts, 7, 1_000_000);
    assert_eq!(m.counters().packets_total, (ts.len() / 188) as u64);
    let checks = &m.live.as_ref().unwrap().checks;
    assert_eq!(checks.pmt_pids(), vec![PMT]);
    assert_eq!(checks.stream_pids(), (0x100..=0x110).collect::<Vec<u16>>());
    m.tick(Duration::from_secs(10));
    let c = m.counters();
    assert_eq!(c.pid_errors_total, 17);
    // The PAT and PMT come in the same chunk, at that chunk's time.
    let pat_at = (last_pat / 7 * 7) as u64 * 1_000_000;
    let expected = missing_errors(10_000_000_000 - pat_at, checks::TABLE_LIMIT_NS);
    assert_eq!((c.pat_errors_total, c.pmt_errors_total), (expected, expected));
    assert_eq!(pid_counts(&m).len(), 20);
}

#[test]
fn repeated_tables_are_followed_through_changes() {
    use crate::ts::packet::Pid;
    use crate::ts::psi::{build_section, packetize, pat_body, pmt_body};
    let (mut pat_cc, mut pmt_cc) = (0, 0);
    let pat = build_section(0, 1, 0, &pat_body(&[(1, PMT)]));
    let pmt = |version, pids: &[u16]| {
        let streams: Vec<(u8, u16, &[u8])> = pids.iter().map(|&pid| (0x1B, pid, &[][..])).collect();
        build_section(2, 1, version, &pmt_body(pids[0], &streams))
    };
    let (v0, v1) = (pmt(0, &[0x100, 0x101]), pmt(1, &[0x200]));
    let mut m = StreamMonitor::new();
    let push = |m: &mut StreamMonitor, section: &[u8], pid: u16, cc: &mut u8| {
        for p in packetize(section, Pid::new(pid), cc) {
            m.push(&p, Duration::ZERO);
        }
    };
    // Five packets to gain sync, then PMTs before the PAT that names them,
    // then identical ones, then a new version, repeated.
    for _ in 0..5 {
        push(&mut m, &v0, PMT, &mut pmt_cc);
    }
    push(&mut m, &pat, 0, &mut pat_cc);
    for _ in 0..3 {
        push(&mut m, &v0, PMT, &mut pmt_cc);
        push(&mut m, &pat, 0, &mut pat_cc);
    }
    assert_eq!(m.live.as_ref().unwrap().checks.stream_pids(), vec![0x100, 0x101]);
    for _ in 0..3 {
        push(&mut m, &v1, PMT, &mut pmt_cc);
        push(&mut m, &pat, 0, &mut pat_cc);
    }
    assert_eq!(m.live.as_ref().unwrap().checks.stream_pids(), vec![0x200]);
    assert_eq!(m.counters().packets_total, 5 + 1 + 6 + 6);
    // The PMTs before the PAT are not wanted yet. Parsed: the PAT, the
    // first PMT and PAT after it, the first PMT of the new version and the
    // PAT after that (the PMT's change made it a stranger). Skipped: the
    // other 8.
    assert_eq!(m.live.as_ref().unwrap().checks.repeats_skipped(), 8);
}
