#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use crate::ts::psi::{self, build_section, pat_body, pmt_body, split_section};

/// One synthetic input: its program layout and per-PID counters.
struct Input {
    program: u16,
    pmt_pid: u16,
    /// (stream_type, PID)
    streams: Vec<(u8, u16)>,
    pmt_version: u8,
    ccs: Vec<u8>,
}

impl Input {
    fn new(program: u16, pmt_pid: u16, streams: &[(u8, u16)], first_cc: u8) -> Input {
        Input { program, pmt_pid, streams: streams.to_vec(), pmt_version: 0, ccs: vec![first_cc; Pid::COUNT] }
    }

    fn pat(&mut self) -> Vec<u8> {
        let s = build_section(0, 1, 0, &pat_body(&[(self.program, self.pmt_pid)]));
        psi::packetize(&s, Pid::PAT, &mut self.ccs[0]).concat()
    }

    fn pmt(&mut self) -> Vec<u8> {
        let streams: Vec<(u8, u16, &[u8])> = self.streams.iter().map(|&(t, p)| (t, p, &[][..])).collect();
        let pcr = self.streams[0].1;
        let s = build_section(2, self.program, self.pmt_version, &pmt_body(pcr, &streams));
        let pid = Pid::new(self.pmt_pid);
        psi::packetize(&s, pid, &mut self.ccs[pid.index()]).concat()
    }

    /// A payload packet; with `af`, an adaptation field of 2 bytes (flags 0).
    fn es(&mut self, pid: u16, start: bool, af: bool) -> Vec<u8> {
        let cc = &mut self.ccs[usize::from(pid)];
        let p = es_packet(pid, *cc, start, af);
        *cc = (*cc + 1) & 0x0F;
        p.to_vec()
    }
}

fn es_packet(pid: u16, cc: u8, start: bool, af: bool) -> [u8; 188] {
    let mut p = [0xA5u8; 188];
    p[0] = 0x47;
    p[1] = (u8::from(start) << 6) | (pid >> 8) as u8;
    p[2] = pid as u8;
    p[3] = if af { 0x30 } else { 0x10 } | (cc & 0x0F);
    if af {
        p[4] = 1;
        p[5] = 0;
    }
    p
}

fn run(s: &mut Splicer, bytes: &[u8]) -> Vec<u8> {
    let chunk = Bytes::copy_from_slice(bytes);
    let mut out = Vec::new();
    s.push(&chunk, &mut out);
    for b in &out {
        assert!(b.len() % 188 == 0 && !b.is_empty());
    }
    out.concat()
}

fn pid_of(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

fn flagged(p: &[u8]) -> bool {
    p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x80 != 0
}

/// Checks CC strictly per PID over the whole output, ignoring the
/// discontinuity flag: +1 after a payload packet, same for an AF-only one.
fn assert_cc_continuous(out: &[u8]) {
    let mut last: Vec<Option<u8>> = vec![None; Pid::COUNT];
    for (n, p) in out.chunks(188).enumerate() {
        assert_eq!(p[0], 0x47, "packet {n} without sync");
        let pid = usize::from(pid_of(p));
        if pid == 0x1FFF {
            continue;
        }
        let cc = p[3] & 0x0F;
        let payload = p[3] & 0x10 != 0;
        if let Some(l) = last[pid] {
            let want = if payload { (l + 1) & 0x0F } else { l };
            assert_eq!(cc, want, "packet {n} on PID {pid:#x}");
        }
        last[pid] = Some(cc);
    }
}

/// A segment of `input`: PAT, PMT, then `n` rounds over its streams (a
/// PES start every 4th round, an AF on starts of the first stream).
fn segment(input: &mut Input, n: usize) -> Vec<u8> {
    segment_with_tail(input, n, false)
}

/// As [`segment`], with (`tail`) a packet continuing a PES of the first
/// stream right after the tables.
fn segment_with_tail(input: &mut Input, n: usize, tail: bool) -> Vec<u8> {
    let mut b = input.pat();
    b.extend(input.pmt());
    if tail {
        let pid = input.streams[0].1;
        b.extend(input.es(pid, false, false));
    }
    let streams = input.streams.clone();
    for round in 0..n {
        for (k, &(_, pid)) in streams.iter().enumerate() {
            let start = round % 4 == 0;
            b.extend(input.es(pid, start, start && k == 0));
        }
    }
    b
}

#[test]
fn passes_unchanged_before_any_switch() {
    let mut a = Input::new(1, 0x1000, &[(0x1B, 0x100), (0x0F, 0x101)], 0);
    let bytes = segment(&mut a, 10);
    let chunk = Bytes::from(bytes.clone());
    let mut s = Splicer::new();
    let mut out = Vec::new();
    s.push(&chunk, &mut out);
    assert_eq!(out.concat(), bytes);
    // Everything but the re-sent tables is a slice of the chunk.
    let copies: Vec<&Bytes> = out.iter().filter(|b| !chunk.as_ptr_range().contains(&b.as_ptr())).collect();
    assert_eq!(copies.len(), 2, "PAT and PMT only");
    let c = s.counters();
    assert_eq!((c.packets_in, c.packets_out, c.rewritten, c.af_inserted), (22, 22, 0, 0));
}

#[test]
fn cc_flags_and_tables_across_switches() {
    // Input B: other program, PMT PID and an extra PID; both start at odd CCs.
    // No video: PES starts are entry points (video waits for keyframes,
    // tested below).
    let mut a = Input::new(1, 0x1000, &[(0x0F, 0x100), (0x0F, 0x101)], 5);
    let mut b = Input::new(7, 0x1100, &[(0x0F, 0x100), (0x0F, 0x101), (0x06, 0x102)], 11);
    let mut s = Splicer::new();
    let mut out = run(&mut s, &segment(&mut a, 9));
    let mut seams = Vec::new();
    for round in 0..4 {
        s.switch();
        seams.push(out.len() / 188);
        let input = if round % 2 == 0 { &mut b } else { &mut a };
        // Resume mid-PES: the tail must go.
        out.extend(run(&mut s, &segment_with_tail(input, 9, true)));
    }
    assert_cc_continuous(&out);
    let packets: Vec<&[u8]> = out.chunks(188).collect();
    for (k, &seam) in seams.iter().enumerate() {
        let end = seams.get(k + 1).copied().unwrap_or(packets.len());
        let seg = &packets[seam..end];
        // Tables first: PAT then PMT, each flagged.
        assert_eq!(pid_of(seg[0]), 0);
        assert!(flagged(seg[0]));
        let pmt_pid = if k % 2 == 0 { 0x1100 } else { 0x1000 };
        assert_eq!(pid_of(seg[1]), pmt_pid);
        assert!(flagged(seg[1]));
        // Exactly the first packet of each PID is flagged.
        let mut seen = Vec::new();
        for p in seg {
            let pid = pid_of(p);
            let first = !seen.contains(&pid);
            seen.push(pid);
            assert_eq!(flagged(p), first, "PID {pid:#x} in segment {k}");
        }
    }
    let c = s.counters();
    assert_eq!(c.switches, 4);
    // 0x100 carries an AF on its starts; 0x101 and 0x102 need AF-only packets.
    assert_eq!(c.flags_set, 4);
    assert_eq!(c.af_inserted, 4 * 2 - 2);
    assert_eq!(c.pes_tails, 4);
    assert_balanced(&c);
}

/// Every packet in is accounted for once, every packet out too.
fn assert_balanced(c: &SpliceCounters) {
    let dropped = c.bad_packets + c.held_back + c.pes_tails + c.awaiting_key + c.key_held;
    assert_eq!(c.packets_in, dropped + c.table_packets_in + c.passed, "{c:?}");
    assert_eq!(c.packets_out, c.passed + c.af_inserted + c.table_packets_out, "{c:?}");
}

/// The version of the section in the table packet `p` (pointer 0, after
/// an optional adaptation field).
fn version(p: &[u8]) -> u8 {
    let at = if p[3] & 0x20 != 0 { 5 + usize::from(p[4]) } else { 4 };
    let section = &p[at + 1..];
    let len = 3 + (usize::from(section[1] & 0x0F) << 8 | usize::from(section[2]));
    split_section(&section[..len]).unwrap().0.version
}

#[test]
fn versions_bump_only_when_content_changes() {
    let mut a = Input::new(1, 0x1000, &[(0x1B, 0x100)], 0);
    let mut s = Splicer::new();
    let out = run(&mut s, &segment(&mut a, 2));
    assert_eq!((version(&out[..188]), version(&out[188..376])), (0, 0));
    // Same input again: same tables, same versions.
    s.switch();
    let out = run(&mut s, &segment(&mut a, 2));
    assert_eq!((version(&out[..188]), version(&out[188..376])), (0, 0));
    assert_eq!(s.counters().version_bumps, 0);
    // Same PAT, PMT gains a stream while keeping version 0: bumped to 1.
    a.streams.push((0x0F, 0x101));
    s.switch();
    let out = run(&mut s, &segment(&mut a, 2));
    assert_eq!((version(&out[..188]), version(&out[188..376])), (0, 1));
    // Later PMTs of this input keep the mapped version.
    let out = run(&mut s, &a.pmt());
    assert_eq!(version(&out), 1);
    // The input bumps its own version: ours follows by one.
    a.pmt_version = 9;
    let out = run(&mut s, &a.pmt());
    assert_eq!(version(&out), 2);
    assert_eq!(s.counters().version_bumps, 2);
}

#[test]
fn holds_back_until_tables_then_starts_on_pes_starts() {
    let mut a = Input::new(1, 0x1000, &[(0x0F, 0x100)], 0);
    let mut s = Splicer::new();
    let mut out = run(&mut s, &segment(&mut a, 3));
    s.switch();
    let mut bytes = a.es(0x100, true, false);
    bytes.extend(a.pat());
    bytes.extend(a.es(0x100, false, false));
    bytes.extend(a.pmt());
    bytes.extend(a.es(0x100, false, false));
    bytes.extend(a.es(0x100, true, false));
    out.extend(run(&mut s, &bytes));
    let c = s.counters();
    // ES, PAT, ES, PMT held; the ES tail after the tables dropped.
    assert_eq!((c.held_back, c.pes_tails, c.af_inserted), (4, 1, 1));
    let tail: Vec<&[u8]> = out.chunks(188).skip(2 + 3).collect();
    assert_eq!(tail.iter().map(|p| pid_of(p)).collect::<Vec<_>>(), [0, 0x1000, 0x100, 0x100]);
    assert_eq!(tail[2][3] & 0x30, 0x20, "AF-only packet");
    assert_cc_continuous(&out);
}

#[test]
fn hold_back_is_bounded() {
    let mut s = Splicer::new();
    s.switch();
    // No tables ever: after MAX_HOLD packets, they pass.
    let block: Vec<u8> = (0..1000u32).flat_map(|n| es_packet(0x100, n as u8, true, false)).collect();
    let chunk = Bytes::from(block);
    let mut out = Vec::new();
    let rounds = MAX_HOLD / 1000 + 1;
    for _ in 0..rounds {
        s.push(&chunk, &mut out);
        out.clear();
    }
    let c = s.counters();
    assert_eq!(c.held_back, MAX_HOLD);
    assert_eq!(c.hold_overflows, 1);
    assert_eq!(c.passed, rounds * 1000 - MAX_HOLD);
}

#[test]
fn bad_input_is_counted_not_fatal() {
    let mut s = Splicer::new();
    let mut bytes = es_packet(0x100, 0, true, false).to_vec();
    bytes.extend([0u8; 188]); // no sync
    let mut reserved = es_packet(0x100, 1, false, false);
    reserved[3] &= 0x0F; // adaptation_field_control 00
    bytes.extend(reserved);
    bytes.extend([0x47, 1, 2]); // partial
    let out = run(&mut s, &bytes);
    assert_eq!(out.len(), 188);
    let c = s.counters();
    assert_eq!((c.bad_packets, c.partial_bytes, c.passed), (2, 3, 1));
    // AF-only packet with a zero-length field, first after a switch.
    s.switch();
    let mut a = Input::new(1, 0x1000, &[(0x1B, 0x100)], 0);
    let mut bytes = segment(&mut a, 0);
    let mut odd = es_packet(0x100, 3, false, false);
    odd[3] = 0x20 | 3;
    odd[4] = 0;
    bytes.extend(odd);
    let out = run(&mut s, &bytes);
    assert_cc_continuous(&out);
    let last = &out[out.len() - 188..];
    assert!(flagged(last) && last[4] == 183);
}

#[test]
fn random_input_never_panics() {
    use rand::{Rng, SeedableRng, rngs::StdRng};
    let mut rng = StdRng::seed_from_u64(7);
    let mut s = Splicer::new();
    let mut a = Input::new(1, 0x1000, &[(0x1B, 0x100)], 0);
    let mut out = Vec::new();
    for _ in 0..2000 {
        let len = rng.random_range(0..1200);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        for p in bytes.chunks_mut(188) {
            if rng.random_bool(0.9) {
                p[0] = 0x47;
            }
            if p.len() > 2 && rng.random_bool(0.8) {
                let pid: u16 = [0, 0x1000, 0x100, 0x1FFF][rng.random_range(0..4)];
                p[1] = (p[1] & 0xE0) | (pid >> 8) as u8;
                p[2] = pid as u8;
            }
        }
        if rng.random_bool(0.2) {
            bytes.extend(segment(&mut a, 1));
        }
        if rng.random_bool(0.05) {
            s.switch();
        }
        s.push(&Bytes::from(bytes), &mut out);
        for b in out.drain(..) {
            assert!(!b.is_empty() && b.len() % 188 == 0);
            assert!(b.chunks(188).all(|p| p[0] == 0x47));
        }
    }
}

/// H.264 access units: AUD then SPS, PPS and an IDR slice; AUD then a
/// non-IDR slice; a long SEI with no start code in a packet.
const IDR: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xCE, 0, 0, 1, 0x65, 0x88];
const P_SLICE: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x41, 0x9A];
const SEI: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x06, 0x05];

/// A video packet on `pid`: with `start`, a PES header before `es`; with
/// `rai`, an adaptation field with random_access_indicator; the rest of
/// the payload 0x55 (no start code in it).
fn video(pid: u16, cc: u8, start: bool, rai: bool, es: &[u8]) -> Vec<u8> {
    let mut p = vec![0x47, (u8::from(start) << 6) | (pid >> 8) as u8, pid as u8, 0x10 | (cc & 0x0F)];
    if rai {
        p[3] |= 0x20;
        p.extend([1, 0x40]);
    }
    if start {
        p.extend([0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1]);
    }
    p.extend(es);
    p.resize(188, 0x55);
    p
}

impl Input {
    fn video(&mut self, pid: u16, start: bool, rai: bool, es: &[u8]) -> Vec<u8> {
        let cc = &mut self.ccs[usize::from(pid)];
        let p = video(pid, *cc, start, rai, es);
        *cc = (*cc + 1) & 0x0F;
        p
    }

    /// A PCR-only packet (no payload: the CC does not advance).
    fn pcr_only(&mut self, pid: u16) -> Vec<u8> {
        let cc = self.ccs[usize::from(pid)].wrapping_sub(1) & 0x0F;
        let mut p = vec![0xFFu8; 188];
        p[..6].copy_from_slice(&[0x47, (pid >> 8) as u8, pid as u8, 0x20 | cc, 183, 0x10]);
        p[6..12].fill(0);
        p
    }
}

/// The output packets of `pid`, from packet `from` on.
fn packets_of(out: &[u8], pid: u16, from: usize) -> Vec<&[u8]> {
    out.chunks(188).skip(from).filter(|p| pid_of(p) == pid).collect()
}

/// What follows the TS header and adaptation field.
fn payload(p: &[u8]) -> &[u8] {
    if p[3] & 0x20 != 0 { &p[5 + usize::from(p[4])..] } else { &p[4..] }
}

#[test]
fn video_resumes_at_an_idr_after_a_switch() {
    let mut a = Input::new(1, 0x1000, &[(0x1B, 0x100), (0x0F, 0x101)], 3);
    let mut s = Splicer::new();
    // The first input passes at once, keyframe or not.
    let mut first = a.pat();
    first.extend(a.pmt());
    first.extend(a.video(0x100, true, false, P_SLICE));
    first.extend(a.video(0x100, false, false, &[]));
    let mut out = run(&mut s, &first);
    assert_eq!(out.len(), first.len());
    assert_eq!(s.counters().awaiting_key, 0);

    s.switch();
    let seam = out.len() / 188;
    let mut b = a.pat();
    b.extend(a.pmt());
    b.extend(a.video(0x100, false, false, &[])); // tail of a PES: dropped
    b.extend(a.video(0x100, true, false, P_SLICE)); // P picture: dropped
    b.extend(a.es(0x101, true, false)); // audio resumes here
    b.extend(a.pcr_only(0x100)); // passes, flagged
    b.extend(a.video(0x100, false, false, &[])); // dropped
    b.extend(a.video(0x100, true, false, IDR)); // resumes here
    b.extend(a.video(0x100, false, false, &[]));
    b.extend(a.video(0x100, true, false, P_SLICE));
    out.extend(run(&mut s, &b));
    assert_cc_continuous(&out);

    let v = packets_of(&out, 0x100, seam);
    assert_eq!(v.len(), 4, "PCR-only, IDR start, its tail, the P picture");
    assert!(flagged(v[0]) && v[0][3] & 0x10 == 0, "the PCR-only packet carries the flag");
    assert_eq!(&payload(v[1])[14..14 + IDR.len()], IDR);
    assert!(!flagged(v[1]));
    let c = s.counters();
    assert_eq!((c.awaiting_key, c.key_held, c.key_wait_overflows, c.pes_tails), (3, 0, 0, 0));
    assert_balanced(&c);
}

#[test]
fn random_access_indicator_or_a_later_packet_decides() {
    let mut a = Input::new(1, 0x1000, &[(0x1B, 0x100)], 0);
    let mut s = Splicer::new();
    let mut out = run(&mut s, &segment(&mut a, 0));
    out.extend(run(&mut s, &a.video(0x100, true, false, P_SLICE)));

    // RAI on a PES start whose bytes say nothing: a keyframe, flagged in place.
    s.switch();
    let seam = out.len() / 188;
    let mut b = segment(&mut a, 0);
    b.extend(a.video(0x100, true, true, &[]));
    out.extend(run(&mut s, &b));
    let v = packets_of(&out, 0x100, seam);
    assert_eq!(v.len(), 1);
    assert!(flagged(v[0]) && v[0][5] & 0x40 != 0);
    assert_eq!(s.counters().flags_set, 1);

    // The picture comes in the PES's second packet: the first is held and
    // both go out, in separate chunks; before them an AF-only packet with
    // the flag. A PES that turns out not to be a keyframe is dropped whole.
    s.switch();
    let seam = out.len() / 188;
    let mut b = segment(&mut a, 0);
    b.extend(a.video(0x100, true, false, SEI));
    b.extend(a.video(0x100, false, false, &[0, 0, 1, 0x41]));
    out.extend(run(&mut s, &b));
    let c = s.counters();
    assert_eq!((c.awaiting_key, c.key_held), (2, 0));
    let held = a.video(0x100, true, false, SEI);
    out.extend(run(&mut s, &held));
    assert_eq!(s.counters().key_held, 1);
    assert_eq!(packets_of(&out, 0x100, seam).len(), 0);
    let idr_tail = a.video(0x100, false, false, &[0, 0, 1, 0x65]);
    out.extend(run(&mut s, &idr_tail));
    assert_cc_continuous(&out);
    let v = packets_of(&out, 0x100, seam);
    assert_eq!(v.len(), 3);
    assert!(flagged(v[0]) && v[0][4] == 183, "AF-only packet");
    assert_eq!(payload(v[1]), &held[4..]);
    assert_eq!(payload(v[2]), &idr_tail[4..]);
    let c = s.counters();
    assert_eq!((c.awaiting_key, c.key_held, c.af_inserted), (2, 0, 1));
    assert_balanced(&c);
}

#[test]
fn undecided_pes_is_dropped_after_max_key_scan_packets() {
    let mut a = Input::new(1, 0x1000, &[(0x1B, 0x100)], 0);
    let mut s = Splicer::new();
    let mut out = run(&mut s, &segment(&mut a, 0));
    s.switch();
    let mut b = segment(&mut a, 0);
    b.extend(a.video(0x100, true, false, SEI));
    for _ in 1..MAX_KEY_SCAN {
        b.extend(a.video(0x100, false, false, &[]));
    }
    // Too late: this PES was given up on.
    b.extend(a.video(0x100, false, false, &[0, 0, 1, 0x65]));
    b.extend(a.video(0x100, true, false, IDR));
    out.extend(run(&mut s, &b));
    assert_cc_continuous(&out);
    let c = s.counters();
    assert_eq!((c.awaiting_key, c.key_held, c.passed), (MAX_KEY_SCAN as u64 + 1, 0, 1));
    assert_balanced(&c);
}

#[test]
fn key_wait_is_bounded() {
    let mut a = Input::new(1, 0x1000, &[(0x1B, 0x100)], 0);
    let mut s = Splicer::new();
    let mut out = run(&mut s, &segment(&mut a, 1));
    s.switch();
    let mut b = segment(&mut a, 0);
    for _ in 0..=KEY_WAIT_PES {
        b.extend(a.video(0x100, true, false, P_SLICE));
    }
    b.extend(a.video(0x100, false, false, &[]));
    out.extend(run(&mut s, &b));
    assert_cc_continuous(&out);
    let c = s.counters();
    // Passed: the packet before the switch, the PES start at the bound, its tail.
    assert_eq!((c.awaiting_key, c.key_wait_overflows, c.passed), (u64::from(KEY_WAIT_PES), 1, 3));
    assert_balanced(&c);
    // Bounded in packets too, for a PID whose PES starts are rare.
    s.switch();
    let mut b = segment(&mut a, 0);
    for _ in 0..KEY_WAIT_PACKETS {
        b.extend(a.video(0x100, false, false, &[]));
    }
    b.extend(a.video(0x100, true, false, P_SLICE));
    out.extend(run(&mut s, &b));
    assert_cc_continuous(&out);
    let c = s.counters();
    assert_eq!(c.key_wait_overflows, 2);
    assert_eq!(c.awaiting_key, u64::from(KEY_WAIT_PES) + u64::from(KEY_WAIT_PACKETS));
    assert_balanced(&c);
}
