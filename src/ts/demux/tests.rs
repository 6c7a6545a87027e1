//! Synthetic streams whose packets, timestamps and losses are known by
//! construction.
#![allow(clippy::unwrap_used)]

use super::track::unwrap_near;
use super::*;
use crate::ts::packet::Pid;
use crate::ts::psi::{build_section, packetize, pat_body, pmt_body};
use crate::ts::timestamp::encode_timestamp;

const PMT_PID: u16 = 0x1000;
const IDR: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x65, 0x88, 0x80];
const P_SLICE: &[u8] = &[0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x41, 0x9A, 0x02];

/// A stream under construction: tables, then PES packets per PID.
struct Stream {
    bytes: Vec<u8>,
    cc: [u8; 8192],
}

impl Stream {
    /// PAT and a PMT (version `version`) with `streams` as (type, PID, descriptors).
    fn new(streams: &[(u8, u16, &[u8])]) -> Stream {
        let mut s = Stream { bytes: Vec::new(), cc: [0; 8192] };
        let pat = build_section(0, 1, 0, &pat_body(&[(1, PMT_PID)]));
        s.extend(packetize(&pat, Pid::new(0), &mut s.cc[0].clone()));
        s.pmt(0, streams);
        s
    }

    fn pmt(&mut self, version: u8, streams: &[(u8, u16, &[u8])]) {
        let pmt = build_section(2, 1, version, &pmt_body(0x100, streams));
        let mut cc = self.cc[usize::from(PMT_PID)];
        self.extend(packetize(&pmt, Pid::new(PMT_PID), &mut cc));
        self.cc[usize::from(PMT_PID)] = cc;
    }

    fn extend(&mut self, packets: Vec<[u8; 188]>) {
        for p in packets {
            self.bytes.extend_from_slice(&p);
        }
    }

    /// One PES on `pid`; `af` flags (0x80 discontinuity, 0x40 random
    /// access) go on its first packet. Returns its TS packets' offsets.
    fn pes(&mut self, pid: u16, pts: Option<u64>, dts: Option<u64>, es: &[u8], bounded: bool, af: u8) -> Vec<usize> {
        let pes = pes_bytes(pts, dts, es, bounded);
        let mut offsets = Vec::new();
        let mut rest = &pes[..];
        let mut first = true;
        while first || !rest.is_empty() {
            let mut p = [0xFFu8; 188];
            let cc = &mut self.cc[usize::from(pid)];
            p[0] = 0x47;
            p[1] = u8::from(first) << 6 | (pid >> 8) as u8;
            p[2] = pid as u8;
            let flags = if first { af } else { 0 };
            let start = if flags != 0 || rest.len() < 184 {
                let take = rest.len().min(182);
                let af_len = 183 - take;
                p[3] = 0x30 | *cc;
                p[4] = af_len as u8;
                p[5] = flags;
                5 + af_len
            } else {
                p[3] = 0x10 | *cc;
                4
            };
            *cc = (*cc + 1) & 0x0F;
            let take = 188 - start;
            p[start..].copy_from_slice(&rest[..take]);
            rest = &rest[take..];
            first = false;
            offsets.push(self.bytes.len());
            self.bytes.extend_from_slice(&p);
        }
        offsets
    }
}

fn pes_bytes(pts: Option<u64>, dts: Option<u64>, es: &[u8], bounded: bool) -> Vec<u8> {
    let mut header = Vec::new();
    let flags = match (pts, dts) {
        (Some(p), Some(d)) => {
            header.extend_from_slice(&encode_timestamp(3, p));
            header.extend_from_slice(&encode_timestamp(1, d));
            0xC0
        }
        (Some(p), None) => {
            header.extend_from_slice(&encode_timestamp(2, p));
            0x80
        }
        _ => 0,
    };
    let len = if bounded { 3 + header.len() + es.len() } else { 0 };
    let mut pes = vec![0, 0, 1, 0xE0, (len >> 8) as u8, len as u8, 0x80, flags, header.len() as u8];
    pes.extend_from_slice(&header);
    pes.extend_from_slice(es);
    pes
}

fn run(bytes: &[u8], limits: DemuxLimits) -> (Vec<AvPacket>, DemuxCounters) {
    let mut d = Demuxer::with_limits(limits);
    d.push(bytes);
    d.flush();
    let mut out = Vec::new();
    d.drain(&mut out, usize::MAX);
    (out, *d.counters())
}

fn body(n: usize) -> Vec<u8> {
    let mut es = P_SLICE.to_vec();
    es.resize(n, 0x5A);
    es
}

#[test]
fn unwrap_picks_the_nearest_value() {
    let wrap = 1i64 << 33;
    assert_eq!(unwrap_near(100, 0), 100);
    assert_eq!(unwrap_near(100, wrap - 50), wrap + 100);
    assert_eq!(unwrap_near((wrap - 50) as u64, wrap + 100), wrap - 50);
    assert_eq!(unwrap_near(5, 3 * wrap + 1), 3 * wrap + 5);
}

#[test]
fn timestamps_carry_the_33_bit_wrap() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[]), (0x0F, 0x101, &[])]);
    let start = (1u64 << 33) - 2 * 3600;
    for k in 0..6u64 {
        let dts = (start + k * 3600) & ((1 << 33) - 1);
        let pts = (start + k * 3600 + 7200) & ((1 << 33) - 1);
        s.pes(0x100, Some(pts), Some(dts), &body(400), false, 0);
        s.pes(0x101, Some(dts), None, &[0xFF, 0xF1, 0x50, 0x80, 0, 0x1F, 0xFC], true, 0);
    }
    let (out, c) = run(&s.bytes, DemuxLimits::default());
    let video: Vec<_> = out.iter().filter(|p| p.track == 0x100).map(|p| (p.dts, p.pts)).collect();
    let want: Vec<_> = (0..6).map(|k| (start as i64 + k * 3600, start as i64 + k * 3600 + 7200)).collect();
    assert_eq!(video, want);
    let audio: Vec<_> = out.iter().filter(|p| p.track == 0x101).map(|p| p.pts).collect();
    assert_eq!(audio, want.iter().map(|w| w.0).collect::<Vec<_>>());
    assert_eq!(c.av_packets_total, 12);
}

#[test]
fn cc_gap_drops_the_pes_and_marks_the_next() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[])]);
    s.pes(0x100, Some(0), None, &body(1000), false, 0);
    let hit = s.pes(0x100, Some(3600), None, &body(1000), false, 0);
    s.pes(0x100, Some(7200), None, &body(1000), false, 0);
    // Cut the third TS packet of the second PES.
    let mut bytes = s.bytes.clone();
    bytes.drain(hit[2]..hit[2] + 188);
    let (out, c) = run(&bytes, DemuxLimits::default());
    assert_eq!(out.iter().map(|p| (p.pts, p.discontinuity)).collect::<Vec<_>>(), vec![(0, false), (7200, true)]);
    assert_eq!((c.cc_gaps_total, c.pes_dropped_cc_gap_total), (1, 1));
    assert_eq!(out[0].payload.len(), 1000);
}

#[test]
fn discontinuity_indicator_marks_without_a_gap() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[])]);
    s.pes(0x100, Some(0), None, &body(300), false, 0);
    s.cc[0x100] = 9; // the counter may jump where the flag is set
    s.pes(0x100, Some(900_000), None, &body(300), false, 0x80);
    s.pes(0x100, Some(903_600), None, &body(300), false, 0);
    let (out, c) = run(&s.bytes, DemuxLimits::default());
    assert_eq!(out.iter().map(|p| p.discontinuity).collect::<Vec<_>>(), vec![false, true, false]);
    assert_eq!(c.cc_gaps_total, 0);
}

#[test]
fn pes_without_pts_takes_the_previous_timestamps() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[])]);
    s.pes(0x100, None, None, &body(200), false, 0);
    s.pes(0x100, Some(5000), Some(1400), &body(200), false, 0);
    s.pes(0x100, None, None, &body(200), false, 0);
    let (out, c) = run(&s.bytes, DemuxLimits::default());
    assert_eq!(out.iter().map(|p| (p.pts, p.dts)).collect::<Vec<_>>(), vec![(5000, 1400), (5000, 1400)]);
    assert_eq!((c.pes_without_pts_total, c.pes_dropped_no_timestamp_total), (1, 1));
}

#[test]
fn oversized_pes_is_dropped_and_memory_capped() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[])]);
    s.pes(0x100, Some(0), None, &body(5000), false, 0);
    s.pes(0x100, Some(3600), None, &body(900), false, 0);
    let (out, c) = run(&s.bytes, DemuxLimits { max_pes_bytes: 1000, max_queued: 10 });
    assert_eq!(out.iter().map(|p| p.pts).collect::<Vec<_>>(), vec![3600]);
    assert_eq!(c.oversized_pes_total, 1);
    assert_eq!(c.payload_without_pes_start_total, 27 - 5, "the rest of the big PES is ignored");
}

#[test]
fn ready_queue_is_bounded() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[])]);
    for k in 0..20 {
        s.pes(0x100, Some(k * 3600), None, &body(100), false, 0);
    }
    let (out, c) = run(&s.bytes, DemuxLimits { max_pes_bytes: 1 << 20, max_queued: 8 });
    assert_eq!((out.len(), c.queue_overflow_total), (8, 12));
}

#[test]
fn keyframes_from_idr_or_random_access() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[]), (0x24, 0x101, &[])]);
    s.pes(0x100, Some(0), None, IDR, false, 0);
    s.pes(0x100, Some(3600), None, P_SLICE, false, 0);
    s.pes(0x100, Some(7200), None, P_SLICE, false, 0x40);
    // HEVC: VPS then IDR_W_RADL; TRAIL_R.
    s.pes(0x101, Some(0), None, &[0, 0, 1, 0x40, 1, 0, 0, 1, 0x26, 1, 0xAF], false, 0);
    s.pes(0x101, Some(3600), None, &[0, 0, 1, 0x02, 1, 0xD0], false, 0);
    let (out, _) = run(&s.bytes, DemuxLimits::default());
    let keys: Vec<_> = out.iter().map(|p| (p.track, p.codec, p.keyframe)).collect();
    assert_eq!(
        keys,
        vec![
            (0x100, Codec::H264, true),
            (0x100, Codec::H264, false),
            (0x101, Codec::H265, true),
            // flush() ends the unbounded PES in track order.
            (0x100, Codec::H264, true),
            (0x101, Codec::H265, false),
        ]
    );
}

#[test]
fn bounded_pes_goes_out_at_once_and_short_one_is_dropped() {
    let mut s = Stream::new(&[(0x0F, 0x101, &[])]);
    let frame = [0xFF, 0xF1, 0x50, 0x80, 0x01, 0x7F, 0xFC, 1, 2, 3, 4];
    s.pes(0x101, Some(0), None, &frame, true, 0);
    let mut d = Demuxer::new();
    d.push(&s.bytes);
    assert_eq!(d.ready(), 1, "no need to wait for the next PES");
    // A PES announcing more bytes than it carries, cut by the next one.
    let mut short = Stream::new(&[(0x0F, 0x101, &[])]);
    let at = short.bytes.len();
    short.pes(0x101, Some(1920), None, &frame, true, 0);
    short.bytes[at + 188 - frame.len() - 14 + 4..][..2].copy_from_slice(&[0, 60]);
    short.pes(0x101, Some(3840), None, &frame, true, 0);
    let (out, c) = run(&short.bytes, DemuxLimits::default());
    assert_eq!(out.iter().map(|p| p.pts).collect::<Vec<_>>(), vec![3840]);
    assert_eq!(c.truncated_pes_total, 1);
    assert_eq!(&out[0].payload[..], &frame);
}

#[test]
fn pmt_change_adds_and_removes_tracks() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[]), (0x0F, 0x101, &[])]);
    let adts = [0xFF, 0xF1, 0x50, 0x80, 0x01, 0x1F, 0xFC];
    s.pes(0x100, Some(0), None, &body(300), false, 0);
    s.pes(0x101, Some(0), None, &adts, true, 0);
    s.pmt(1, &[(0x1B, 0x100, &[]), (0x81, 0x102, &[])]);
    s.pes(0x101, Some(1920), None, &adts, true, 0);
    s.pes(0x100, Some(3600), None, &body(300), false, 0);
    let ac3 = [0x0B, 0x77, 0, 0, 0, 0x40, 1, 2];
    s.pes(0x102, Some(3600), None, &ac3, true, 0);
    // The same table again (a repeat) changes nothing.
    s.pmt(1, &[(0x1B, 0x100, &[]), (0x81, 0x102, &[])]);
    let (out, c) = run(&s.bytes, DemuxLimits::default());
    let got: Vec<_> = out.iter().map(|p| (p.track, p.codec, p.pts)).collect();
    assert_eq!(
        got,
        vec![(0x101, Codec::Aac, 0), (0x100, Codec::H264, 0), (0x102, Codec::Ac3, 3600), (0x100, Codec::H264, 3600)]
    );
    assert_eq!((c.pmt_changes_total, c.tracks_added_total, c.tracks_removed_total), (1, 3, 1));
}

#[test]
fn a_stream_dropped_from_the_pmt_stops_and_can_come_back() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[]), (0x05, 0x101, &[])]);
    s.pes(0x100, Some(0), None, &body(300), false, 0);
    s.pes(0x101, Some(0), None, &body(100), true, 0);
    // Version 1 drops both: their packets are no one's any more.
    s.pmt(1, &[(0x0F, 0x102, &[])]);
    s.pes(0x100, Some(3600), None, &body(300), false, 0);
    s.pes(0x101, Some(3600), None, &body(100), true, 0);
    // Version 2 brings the video back, as a new track.
    s.pmt(2, &[(0x1B, 0x100, &[])]);
    s.pes(0x100, Some(7200), None, &body(300), false, 0);
    let (out, c) = run(&s.bytes, DemuxLimits::default());
    let got: Vec<_> = out.iter().map(|p| (p.track, p.pts, p.payload.len())).collect();
    assert_eq!(got, vec![(0x100, 0, 300), (0x100, 7200, 300)]);
    assert_eq!((c.tracks_added_total, c.tracks_removed_total), (3, 2));
    // Only the packet sent while 0x101 was announced counts as skipped.
    assert_eq!(c.skipped_es_packets_total, 1);
}

#[test]
fn scrambled_packets_are_counted_and_dropped() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[])]);
    s.pes(0x100, Some(0), None, &body(100), true, 0);
    let scrambled = s.pes(0x100, Some(3600), None, &body(100), true, 0);
    s.pes(0x100, Some(7200), None, &body(100), true, 0);
    let mut bytes = s.bytes.clone();
    bytes[scrambled[0] + 3] |= 0x80;
    let (out, c) = run(&bytes, DemuxLimits::default());
    // The scrambled packet was the whole second PES; the one after it
    // follows a continuity gap.
    let got: Vec<_> = out.iter().map(|p| (p.pts, p.discontinuity)).collect();
    assert_eq!(got, vec![(0, false), (7200, true)]);
    assert_eq!((c.scrambled_packets_total, c.cc_gaps_total), (1, 1));
}

#[test]
fn skipped_streams_are_counted_by_reason() {
    let subtitle: &[u8] = &[0x59, 8, b'e', b'n', b'g', 0x10, 0, 1, 0, 1];
    let mut s = Stream::new(&[(0x02, 0x100, &[]), (0x8A, 0x101, &[]), (0x06, 0x102, subtitle), (0x06, 0x103, &[])]);
    s.pes(0x100, Some(0), None, &body(400), false, 0);
    s.pes(0x101, Some(0), None, &body(100), true, 0);
    s.pes(0x102, Some(0), None, &body(100), true, 0);
    s.pes(0x103, Some(0), None, &body(100), true, 0);
    s.pes(0x103, Some(10), None, &body(100), true, 0);
    let (out, c) = run(&s.bytes, DemuxLimits::default());
    assert!(out.is_empty());
    assert_eq!(
        (
            c.skipped_streams_video_total,
            c.skipped_streams_audio_total,
            c.skipped_streams_data_total,
            c.skipped_streams_unidentified_total
        ),
        (1, 1, 1, 1)
    );
    // 3 + 1 + 1 packets on the skipped PIDs, and the one after sniffing failed.
    assert_eq!(c.skipped_es_packets_total, 6);
}

#[test]
fn bad_sync_tei_and_duplicates_are_counted() {
    let mut s = Stream::new(&[(0x1B, 0x100, &[])]);
    s.pes(0x100, Some(0), None, &body(100), false, 0);
    let second = s.pes(0x100, Some(3600), None, &body(100), false, 0);
    s.pes(0x100, Some(7200), None, &body(100), false, 0);
    let mut bytes = s.bytes.clone();
    // A duplicate of the second PES's packet right after it.
    let dup = bytes[second[0]..second[0] + 188].to_vec();
    bytes.splice(second[0] + 188..second[0] + 188, dup);
    // Garbage packet, then a TEI packet, before the end.
    let mut garbage = vec![0u8; 188];
    garbage[1] = 0x80;
    bytes.extend_from_slice(&garbage);
    garbage[0] = 0x47;
    bytes.extend_from_slice(&garbage);
    let (out, c) = run(&bytes, DemuxLimits::default());
    assert_eq!(out.iter().map(|p| p.pts).collect::<Vec<_>>(), vec![0, 3600, 7200]);
    assert_eq!((c.bad_sync_packets_total, c.transport_error_packets_total, c.duplicate_packets_total), (1, 1, 1));
    assert_eq!(c.cc_gaps_total, 0);
}

#[test]
fn demuxer_can_move_to_a_shard_thread() {
    fn is_send<T: Send>() {}
    is_send::<Demuxer>();
}
