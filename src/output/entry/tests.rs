//! Synthetic streams with known entry points: which packets come out is
//! worked out from how each stream is built.

use super::*;
use crate::ts::packet::Cc;
use crate::ts::psi::{build_section, packetize};

const PMT_PID: u16 = 0x1000;
const VIDEO: u16 = 0x100;
const AUDIO: u16 = 0x101;

const AUD: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0];
const SPS_PPS: &[u8] = &[0, 0, 0, 1, 0x67, 0x42, 0xC0, 0x1E, 0, 0, 0, 1, 0x68, 0xCE, 0x3C, 0x80];
const IDR: &[u8] = &[0, 0, 0, 1, 0x65, 0x88, 0x84];
const NON_IDR: &[u8] = &[0, 0, 0, 1, 0x41, 0x9A, 0x02];

/// A stream under construction: packets, and per-PID continuity counters.
struct Stream {
    packets: Vec<[u8; 188]>,
    cc: Vec<u8>,
}

impl Default for Stream {
    fn default() -> Self {
        Stream { packets: Vec::new(), cc: vec![0; 8192] }
    }
}

impl Stream {
    fn next_cc(&mut self, pid: u16) -> u8 {
        let cc = self.cc[usize::from(pid)];
        self.cc[usize::from(pid)] = (cc + 1) & 0x0F;
        cc
    }

    /// Adds the packets of a section on `pid`; returns their indices.
    fn section(&mut self, pid: u16, section: &[u8]) -> Vec<usize> {
        let mut cc = self.cc[usize::from(pid)];
        let packets = packetize(section, Pid::new(pid), &mut cc);
        self.cc[usize::from(pid)] = cc;
        let first = self.packets.len();
        self.packets.extend(packets);
        (first..self.packets.len()).collect()
    }

    fn pat(&mut self, programs: &[(u16, u16)], version: u8) -> Vec<usize> {
        let body: Vec<u8> =
            programs.iter().flat_map(|&(n, pid)| [n.to_be_bytes(), (0xE000 | pid).to_be_bytes()]).flatten().collect();
        self.section(0, &build_section(0x00, 1, version, &body))
    }

    fn pmt_on(&mut self, pmt_pid: u16, program: u16, streams: &[(u8, u16)], padding: usize) -> Vec<usize> {
        let pcr = streams.first().map_or(0x1FFF, |s| s.1);
        let mut body = (0xE000 | pcr).to_be_bytes().to_vec();
        // program_info: `padding` bytes of a private descriptor, to span packets.
        let info: Vec<u8> =
            if padding == 0 { Vec::new() } else { [vec![0x80, padding as u8], vec![0xAA; padding]].concat() };
        body.extend_from_slice(&(0xF000 | info.len() as u16).to_be_bytes());
        body.extend_from_slice(&info);
        for &(stream_type, pid) in streams {
            body.push(stream_type);
            body.extend_from_slice(&(0xE000 | pid).to_be_bytes());
            body.extend_from_slice(&0xF000u16.to_be_bytes());
        }
        self.section(pmt_pid, &build_section(0x02, program, 0, &body))
    }

    fn pmt(&mut self) -> Vec<usize> {
        self.pmt_on(PMT_PID, 1, &[(0x1B, VIDEO), (0x0F, AUDIO)], 0)
    }

    /// One packet on `pid`: a PES start with `es` after its header when
    /// `start`, else `es` as continuation bytes; 0xFF fill.
    fn pes(&mut self, pid: u16, start: bool, rai: bool, es: &[u8]) -> usize {
        let mut p = [0xFFu8; 188];
        let cc = self.next_cc(pid);
        p[0] = 0x47;
        p[1] = (u8::from(start) << 6) | (pid >> 8) as u8;
        p[2] = pid as u8;
        let mut at = 4;
        if rai {
            p[3] = 0x30 | cc;
            p[4] = 1;
            p[5] = 0x40;
            at = 6;
        } else {
            p[3] = 0x10 | cc;
        }
        if start {
            let id = if pid == VIDEO { 0xE0 } else { 0xC0 };
            let header = [0, 0, 1, id, 0, 0, 0x80, 0x80, 5, 0x21, 0, 1, 0, 1];
            p[at..at + header.len()].copy_from_slice(&header);
            at += header.len();
        }
        p[at..at + es.len()].copy_from_slice(es);
        self.packets.push(p);
        self.packets.len() - 1
    }

    fn video(&mut self, start: bool, es: &[&[u8]]) -> usize {
        self.pes(VIDEO, start, false, &es.concat())
    }

    fn audio(&mut self, start: bool) -> usize {
        self.pes(AUDIO, start, false, &[0xFF, 0xF1, 0x50, 0x80])
    }

    fn chunk(&self, range: std::ops::Range<usize>) -> Bytes {
        Bytes::from(self.packets[range].concat())
    }
}

/// The packets of `out`, data only, and the cuts as `None`.
fn packets(out: &[Piece]) -> Vec<Option<[u8; 188]>> {
    let mut all = Vec::new();
    for piece in out {
        match piece {
            Piece::Cut => all.push(None),
            Piece::Data(b) => {
                assert_eq!(b.len() % 188, 0, "a piece of {} bytes", b.len());
                all.extend(b.chunks_exact(188).map(|p| Some(p.try_into().unwrap())));
            }
        }
    }
    all
}

fn run(gate: &mut EntryGate, chunk: &Bytes) -> Vec<Option<[u8; 188]>> {
    let mut out = Vec::new();
    gate.push(chunk, &mut out);
    packets(&out)
}

/// `indices` of `s` as expected output; `Err(i)` is packet `i` with the
/// continuity counter `cc`, for copies.
fn expect(s: &Stream, items: &[Result<usize, (usize, u8)>]) -> Vec<Option<[u8; 188]>> {
    items
        .iter()
        .map(|item| match *item {
            Ok(i) => Some(s.packets[i]),
            Err((i, cc)) => {
                let mut p = s.packets[i];
                p[3] = (p[3] & 0xF0) | cc;
                Some(p)
            }
        })
        .collect()
}

/// Every PID's continuity counters in `out` follow on (payload packets).
fn assert_continuous(out: &[Option<[u8; 188]>]) {
    let mut last: std::collections::HashMap<Pid, Cc> = Default::default();
    for p in out.iter().flatten() {
        let pkt = TsPacket::new(p);
        if !pkt.has_payload() || pkt.pid() == Pid::NULL {
            continue;
        }
        if let Some(prev) = last.insert(pkt.pid(), pkt.cc()) {
            assert!(pkt.cc().follows(prev), "{}: cc {:?} after {:?}", pkt.pid(), pkt.cc(), prev);
        }
    }
}

#[test]
fn joins_at_the_idr_after_pat_and_pmt() {
    let mut s = Stream::default();
    s.video(false, &[&[0xAB; 8]]);
    s.audio(false);
    let pat = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt = s.pmt()[0];
    s.video(true, &[AUD, NON_IDR]);
    s.audio(true);
    s.video(false, &[&[0xAB; 8]]);
    let idr = s.video(true, &[AUD, SPS_PPS, IDR]);
    let mid_audio = s.audio(false);
    let v2 = s.video(false, &[&[0xAB; 8]]);
    let a2 = s.audio(true);
    let pat2 = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt2 = s.pmt()[0];
    let a3 = s.audio(false);

    let mut gate = EntryGate::new(StartMode::Clean);
    let out = run(&mut gate, &s.chunk(0..s.packets.len()));
    // Copies keep the counters of the last live PAT/PMT packets: the ones copied.
    let want = expect(&s, &[Ok(pat), Ok(pmt), Ok(idr), Ok(v2), Ok(a2), Ok(pat2), Ok(pmt2), Ok(a3)]);
    assert_eq!(out, want);
    assert_continuous(&out);
    let c = gate.counters();
    assert_eq!(c.skipped_before_entry, idr as u64);
    assert_eq!(c.skipped_mid_unit, 1, "audio {mid_audio} continues a PES begun before the entry");
    assert_eq!((c.entries, c.psi_copies, c.packets_passed), (1, 2, 6));
    assert_eq!(c.packets_in, s.packets.len() as u64);
}

#[test]
fn psi_copies_continue_into_the_live_tables() {
    // PAT and PMT repeat before the keyframe: the copies carry the counters
    // of the last ones, so the next live PAT/PMT follow on.
    let mut s = Stream::default();
    let pat = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt = s.pmt()[0];
    s.video(true, &[AUD, NON_IDR]);
    s.pat(&[(1, PMT_PID)], 0);
    s.pmt();
    s.pat(&[(1, PMT_PID)], 0);
    let idr = s.video(true, &[AUD, SPS_PPS, IDR]);
    let pat_live = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt_live = s.pmt()[0];

    let mut gate = EntryGate::new(StartMode::Clean);
    let out = run(&mut gate, &s.chunk(0..s.packets.len()));
    let want = expect(&s, &[Err((pat, 2)), Err((pmt, 1)), Ok(idr), Ok(pat_live), Ok(pmt_live)]);
    assert_eq!(out, want);
    assert_continuous(&out);
}

#[test]
fn idr_found_in_the_next_packet_of_the_pes() {
    let mut s = Stream::default();
    let pat = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt = s.pmt()[0];
    // A PES whose first packet holds only AUD and a long SEI: undecided.
    let sei = [&[0u8, 0, 0, 1, 0x06, 0x05][..], &[0x11; 150]].concat();
    let undecided_p = s.video(true, &[AUD, &sei]);
    s.audio(true);
    s.video(false, &[NON_IDR]);
    let start = s.video(true, &[AUD, &sei]);
    let a1 = s.audio(true);
    let a2 = s.audio(false);
    let rest = s.video(false, &[SPS_PPS, IDR]);
    let a3 = s.audio(false);

    let mut gate = EntryGate::new(StartMode::Clean);
    let mut out = Vec::new();
    // Fed a packet at a time: the held packets cross chunk boundaries.
    for i in 0..s.packets.len() {
        out.extend(run(&mut gate, &s.chunk(i..i + 1)));
        let held = gate.counters().held_packets;
        let confirming = (undecided_p..undecided_p + 2).contains(&i) || (start..rest).contains(&i);
        assert_eq!(held > 0, confirming, "packet {i}: {held} held");
    }
    let want = expect(&s, &[Ok(pat), Ok(pmt), Ok(start), Ok(a1), Ok(a2), Ok(rest), Ok(a3)]);
    assert_eq!(out, want, "the PES at {undecided_p} is not a keyframe, the one at {start} is");
    assert_eq!(gate.counters().skipped_before_entry, start as u64);
}

#[test]
fn random_access_indicator_alone_marks_a_keyframe() {
    let mut s = Stream::default();
    let pat = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt = s.pmt()[0];
    s.video(true, &[&[0x55; 20]]);
    let key = s.pes(VIDEO, true, true, &[0x55; 20]);
    let mut gate = EntryGate::new(StartMode::Clean);
    let out = run(&mut gate, &s.chunk(0..s.packets.len()));
    assert_eq!(out, expect(&s, &[Ok(pat), Ok(pmt), Ok(key)]));
}

#[test]
fn without_video_the_stream_starts_after_the_tables() {
    let mut s = Stream::default();
    s.audio(true);
    let pat = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt = s.pmt_on(PMT_PID, 1, &[(0x0F, AUDIO)], 0)[0];
    s.audio(false);
    let a = s.audio(true);
    let null = s.pes(0x1FFF, false, false, &[]);
    let mut gate = EntryGate::new(StartMode::Clean);
    let out = run(&mut gate, &s.chunk(0..s.packets.len()));
    assert_eq!(out, expect(&s, &[Ok(pat), Ok(pmt), Ok(a), Ok(null)]));
    let c = gate.counters();
    assert_eq!((c.skipped_before_entry, c.skipped_mid_unit, c.entries), (3, 1, 1));
}

#[test]
fn a_pmt_over_two_packets_is_copied_whole() {
    let mut s = Stream::default();
    let pat = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt = s.pmt_on(PMT_PID, 1, &[(0x1B, VIDEO), (0x0F, AUDIO)], 250);
    assert_eq!(pmt.len(), 2);
    let idr = s.video(true, &[AUD, SPS_PPS, IDR]);
    let mut gate = EntryGate::new(StartMode::Clean);
    let out = run(&mut gate, &s.chunk(0..s.packets.len()));
    assert_eq!(out, expect(&s, &[Ok(pat), Ok(pmt[0]), Ok(pmt[1]), Ok(idr)]));
}

#[test]
fn mpts_waits_for_every_pmt_and_takes_the_first_video() {
    let mut s = Stream::default();
    let pat = s.pat(&[(1, 0x1000), (2, 0x1001)], 0)[0];
    let pmt1 = s.pmt_on(0x1000, 1, &[(0x0F, 0x201)], 0)[0];
    // Program 1 has no video, so the entry waits for program 2's PMT ...
    let early = s.audio(true);
    let pmt2 = s.pmt_on(0x1001, 2, &[(0x1B, VIDEO), (0x0F, AUDIO)], 0)[0];
    // ... and then for a keyframe of its video.
    s.video(true, &[AUD, NON_IDR]);
    let idr = s.video(true, &[AUD, IDR]);
    let a = s.pes(0x201, true, false, &[0xFF, 0xF1]);
    let mut gate = EntryGate::new(StartMode::Clean);
    let out = run(&mut gate, &s.chunk(0..s.packets.len()));
    assert_eq!(out, expect(&s, &[Ok(pat), Ok(pmt1), Ok(pmt2), Ok(idr), Ok(a)]), "audio {early} is before the entry");
}

#[test]
fn a_pmt_that_never_comes_is_waited_for_within_a_bound() {
    let mut s = Stream::default();
    let pat = s.pat(&[(1, 0x1000), (2, 0x1001)], 0)[0];
    let pmt1 = s.pmt_on(0x1000, 1, &[(0x0F, AUDIO)], 0)[0];
    let mut gate = EntryGate::new(StartMode::Clean);
    let mut out = run(&mut gate, &s.chunk(0..s.packets.len()));
    assert!(out.is_empty());
    let mut filler = Stream::default();
    for _ in 0..1000 {
        filler.audio(false);
    }
    let chunk = filler.chunk(0..1000);
    // The PMT bound counts from the packet that completed the PAT (packet 0).
    for _ in 0..(PMT_WAIT_PACKETS as usize - 2) / 1000 {
        out.extend(run(&mut gate, &chunk));
    }
    assert!(out.is_empty());
    assert_eq!(gate.counters().entries, 0);
    out.extend(run(&mut gate, &chunk));
    assert_eq!(out[..2], expect(&s, &[Ok(pat), Ok(pmt1)]));
    let c = gate.counters();
    assert_eq!((c.entries, c.pmt_timeouts, c.entry_timeouts), (1, 1, 0));
    assert_eq!(out.len(), 2, "audio continuation packets wait for a PES start");
}

#[test]
fn no_pat_within_the_bound_starts_under_the_unit_start_rule() {
    let mut filler = Stream::default();
    for _ in 0..1000 {
        filler.audio(false);
    }
    let chunk = filler.chunk(0..1000);
    let mut gate = EntryGate::new(StartMode::Clean);
    let mut out = Vec::new();
    for _ in 0..PAT_WAIT_PACKETS / 1000 {
        out.extend(run(&mut gate, &chunk));
    }
    let mut s = Stream::default();
    s.cc[usize::from(AUDIO)] = filler.cc[usize::from(AUDIO)];
    let a = s.audio(true);
    out.extend(run(&mut gate, &s.chunk(0..1)));
    assert_eq!(out, expect(&s, &[Ok(a)]));
    let c = gate.counters();
    assert_eq!((c.entries, c.entry_timeouts), (1, 1));
    assert_eq!(c.skipped_before_entry + c.skipped_mid_unit, PAT_WAIT_PACKETS);
}

#[test]
fn no_keyframe_within_the_bound_starts_anyway() {
    let mut s = Stream::default();
    s.pat(&[(1, PMT_PID)], 0);
    s.pmt();
    let mut gate = EntryGate::new(StartMode::Clean);
    assert!(run(&mut gate, &s.chunk(0..2)).is_empty());
    let mut frames = Stream::default();
    for i in 0..1000 {
        frames.video(i % 10 == 0, &[AUD, NON_IDR]);
    }
    let chunk = frames.chunk(0..1000);
    let mut out = Vec::new();
    for _ in 0..KEYFRAME_WAIT_PACKETS / 1000 {
        out.extend(run(&mut gate, &chunk));
    }
    let c = gate.counters();
    assert_eq!((c.entries, c.entry_timeouts), (1, 1));
    // The bound ran out on the last packet, a PES continuation: only the copies.
    assert_eq!(out.len(), 2);
    // Then the video from its next PES start.
    out.extend(run(&mut gate, &chunk));
    assert_eq!(out.len(), 2 + 1000);
    assert_eq!(out[2], Some(frames.packets[0]));
}

#[test]
fn resync_waits_for_fresh_tables_then_a_keyframe() {
    let mut s = Stream::default();
    s.pat(&[(1, PMT_PID)], 0);
    s.pmt();
    let idr1 = s.video(true, &[AUD, IDR]);
    let mut gate = EntryGate::new(StartMode::Clean);
    assert_eq!(run(&mut gate, &s.chunk(0..3)).len(), 3);
    gate.resync(7);
    let from = s.packets.len();
    s.video(true, &[AUD, IDR]); // Before fresh tables: skipped.
    let pat = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt = s.pmt()[0];
    s.video(true, &[AUD, NON_IDR]);
    let idr2 = s.video(true, &[AUD, SPS_PPS, IDR]);
    let out = run(&mut gate, &s.chunk(from..s.packets.len()));
    assert_eq!(out, expect(&s, &[Ok(pat), Ok(pmt), Ok(idr2)]), "first entry at {idr1}");
    let c = gate.counters();
    assert_eq!((c.resyncs, c.lost_items, c.entries, c.skipped_before_entry), (1, 7, 2, 2 + 4));
}

#[test]
fn a_cut_starts_at_the_next_keyframe_with_tables() {
    let mut s = Stream::default();
    let pat = s.pat(&[(1, PMT_PID)], 0)[0];
    let pmt = s.pmt()[0];
    let idr1 = s.video(true, &[AUD, IDR]);
    let a1 = s.audio(true);
    let mut gate = EntryGate::new(StartMode::Clean);
    let mut out = run(&mut gate, &s.chunk(0..4));
    gate.request_cut();
    let from = s.packets.len();
    let p = s.video(true, &[AUD, NON_IDR]);
    let a2 = s.audio(false);
    let idr2 = s.video(true, &[AUD, IDR]);
    s.audio(false); // Continues the PES begun before the cut: skipped.
    let a3 = s.audio(true);
    out.extend(run(&mut gate, &s.chunk(from..s.packets.len())));
    let mut want = expect(&s, &[Ok(pat), Ok(pmt), Ok(idr1), Ok(a1), Ok(p), Ok(a2)]);
    want.push(None);
    want.extend(expect(&s, &[Ok(pat), Ok(pmt), Ok(idr2), Ok(a3)]));
    assert_eq!(out, want);
    let c = gate.counters();
    assert_eq!((c.cuts, c.entries, c.skipped_mid_unit), (1, 1, 1));
}

#[test]
fn kept_packets_are_slices_of_the_input() {
    let mut s = Stream::default();
    s.pat(&[(1, PMT_PID)], 0);
    s.pmt();
    s.video(true, &[AUD, IDR]);
    s.audio(true);
    s.video(false, &[&[1]]);
    s.audio(false);
    let chunk = s.chunk(0..s.packets.len());
    let mut gate = EntryGate::new(StartMode::Clean);
    let mut out = Vec::new();
    gate.push(&chunk, &mut out);
    assert_eq!(out.len(), 3, "two copies, then one run of four packets: {out:?}");
    let Piece::Data(tail) = &out[2] else { panic!("data expected") };
    assert_eq!(tail.as_ptr(), chunk[2 * 188..].as_ptr());
    assert_eq!(tail.len(), 4 * 188);
    for copy in &out[..2] {
        let Piece::Data(b) = copy else { panic!("data expected") };
        let inside = chunk.as_ptr_range().contains(&b.as_ptr());
        assert!(!inside, "PSI copies are new buffers");
    }
}

#[test]
fn any_mode_passes_everything_and_cuts_at_keyframes() {
    let mut s = Stream::default();
    s.video(false, &[&[1]]);
    s.pat(&[(1, PMT_PID)], 0);
    s.pmt();
    s.video(true, &[AUD, NON_IDR]);
    let mut gate = EntryGate::new(StartMode::Any);
    gate.request_cut();
    let out = run(&mut gate, &s.chunk(0..s.packets.len()));
    // No video known at the first packet: the cut comes at once.
    assert_eq!(out[0], None);
    assert_eq!(out[1..], expect(&s, &[Ok(0), Ok(1), Ok(2), Ok(3)]));
    gate.resync(3);
    gate.request_cut();
    let from = s.packets.len();
    let a = s.audio(false);
    let idr = s.video(true, &[AUD, IDR]);
    let out = run(&mut gate, &s.chunk(from..s.packets.len()));
    assert_eq!(out, vec![Some(s.packets[a]), None, Some(s.packets[idr])]);
    let c = gate.counters();
    assert_eq!((c.cuts, c.resyncs, c.lost_items, c.packets_passed), (2, 1, 3, 6));
}

#[test]
fn bad_packets_and_partial_chunks_are_counted() {
    let mut s = Stream::default();
    s.pat(&[(1, PMT_PID)], 0);
    s.pmt();
    s.video(true, &[AUD, IDR]);
    s.packets[2][0] = 0x46;
    let mut bytes = s.packets.concat();
    bytes.extend_from_slice(&[0x47; 100]);
    let mut gate = EntryGate::new(StartMode::Any);
    let out = run(&mut gate, &Bytes::from(bytes));
    assert_eq!(out, expect(&s, &[Ok(0), Ok(1)]));
    let c = gate.counters();
    assert_eq!((c.bad_packets, c.partial_bytes, c.packets_in), (1, 100, 2));
}
