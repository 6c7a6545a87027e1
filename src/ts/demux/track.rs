//! One elementary stream: continuity, PES assembly, timestamps, keyframes.
//!
//! A track sees every TS packet of its PID that the demuxer's packet loop
//! passes on (sync byte, no transport_error_indicator, not scrambled). It
//! gathers one PES packet's payload in its `PesBuffer` (see `gather.rs`:
//! one copy, from the TS packets into a shared block) and cuts it off.
//!
//! Invariants: a PES is emitted only whole (a bounded PES that ends short, a
//! PES hit by a continuity gap or over the size cap is dropped and counted);
//! the buffer never holds more than the size cap; timestamps are unwrapped
//! against the track's previous DTS (nearest value with the same 33 bits).

use mpeg2ts_reader::pes::{PesContents, PesHeader, PesLength, PtsDts, Timestamp};

use super::gather::PesBuffer;
use super::{DemuxCounters, DemuxLimits, PACKET};
use crate::output::entry::keyframe::{KeyframeScan, Verdict, VideoKind};
use crate::ts::av::{AvPacket, Codec};
use crate::ts::codec;
use std::collections::VecDeque;

/// PTS/DTS modulus (ISO/IEC 13818-1 §2.4.3.7: 33-bit fields).
const WRAP: i64 = 1 << 33;

/// What the demux needs from a TS packet header (§2.4.3.2, §2.4.3.4), read
/// in place: cheaper than the reader's `Packet` and `AdaptationField`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TsHeader {
    /// Where the payload starts; `PACKET` (or more) when there is none.
    payload_at: usize,
    af_discontinuity: bool,
    random_access: bool,
}

impl TsHeader {
    fn read(pk: &[u8; PACKET]) -> TsHeader {
        let control = (pk[3] >> 4) & 0x03;
        let af_len = usize::from(pk[4]);
        let flags = if control & 0x02 != 0 && af_len > 0 { pk[5] } else { 0 };
        let payload_at = match control {
            0b01 => 4,
            // An adaptation field longer than the packet leaves no payload.
            0b11 => 5 + af_len,
            // Adaptation field only, or the reserved value: no payload.
            _ => PACKET,
        };
        TsHeader { payload_at, af_discontinuity: flags & 0x80 != 0, random_access: flags & 0x40 != 0 }
    }
}

/// Where the demuxed packets and the counters go.
pub(super) struct Sink<'a> {
    pub ready: &'a mut VecDeque<AvPacket>,
    pub counters: &'a mut DemuxCounters,
    pub limits: &'a DemuxLimits,
}

impl Sink<'_> {
    fn emit(&mut self, packet: AvPacket) {
        if self.ready.len() >= self.limits.max_queued {
            self.counters.queue_overflow_total += 1;
            return;
        }
        self.counters.av_packets_total += 1;
        self.ready.push_back(packet);
    }
}

/// What a track does with its PES packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Mode {
    /// Demux as this codec; `refine` lets the first payload pick AC-3 or
    /// E-AC-3 (stream type 0x81 carries both).
    Demux { codec: Codec, refine: bool },
    /// A private stream the PMT does not identify: the first payload does.
    Sniff,
    /// Sniffing failed: drop everything, count the packets.
    Skip,
}

/// Where the current PES stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gather {
    /// No PES in progress: wait for payload_unit_start_indicator.
    AwaitStart,
    /// Collecting a PES.
    Collecting,
}

/// Timestamps and flags of the PES being collected.
#[derive(Clone, Copy, Debug, Default)]
struct Head {
    pts: i64,
    dts: i64,
    keyframe: bool,
    discontinuity: bool,
    /// ES bytes the header announced (PES_packet_length), if bounded.
    expected: Option<usize>,
}

/// One elementary stream of one program.
#[derive(Debug)]
pub(super) struct Track {
    pub pid: u16,
    pub program_pid: u16,
    pub stream_type: u8,
    pub mode: Mode,
    last_cc: Option<u8>,
    gather: Gather,
    head: Head,
    buf: PesBuffer,
    /// Keyframe scan over the current video PES, while undecided.
    scan: Option<KeyframeScan>,
    /// The next PES follows a gap or a discontinuity_indicator.
    pending_discontinuity: bool,
    /// Unwrapped DTS and PTS of the last PES with timestamps.
    last: Option<(i64, i64)>,
}

impl Track {
    pub(super) fn new(pid: u16, program_pid: u16, stream_type: u8, mode: Mode) -> Track {
        Track {
            pid,
            program_pid,
            stream_type,
            mode,
            last_cc: None,
            gather: Gather::AwaitStart,
            head: Head::default(),
            buf: PesBuffer::default(),
            scan: None,
            pending_discontinuity: false,
            last: None,
        }
    }

    /// Takes one TS packet of this track's PID, already checked for sync,
    /// transport_error_indicator and scrambling by the demuxer's loop.
    pub(super) fn consume(&mut self, pk: &[u8; PACKET], sink: &mut Sink<'_>) {
        if self.mode == Mode::Skip {
            sink.counters.skipped_es_packets_total += 1;
            return;
        }
        let header = TsHeader::read(pk);
        if header.af_discontinuity {
            self.pending_discontinuity = true;
        }
        let Some(payload) = pk.get(header.payload_at..).filter(|p| !p.is_empty()) else {
            // Packets without payload do not advance the counter (§2.4.3.3).
            return;
        };
        let (af_discontinuity, random_access) = (header.af_discontinuity, header.random_access);
        let cc = pk[3] & 0x0F;
        if let Some(last) = self.last_cc
            && !af_discontinuity
        {
            if cc == last {
                // A duplicate packet (§2.4.3.3): the same bytes again.
                sink.counters.duplicate_packets_total += 1;
                return;
            }
            if cc != (last + 1) & 0x0F {
                sink.counters.cc_gaps_total += 1;
                self.pending_discontinuity = true;
                if self.gather == Gather::Collecting {
                    sink.counters.pes_dropped_cc_gap_total += 1;
                    self.abandon();
                }
            }
        }
        self.last_cc = Some(cc);
        if pk[1] & 0x40 != 0 {
            self.finish(sink, true);
            self.start(payload, random_access, sink);
        } else if self.gather == Gather::Collecting {
            self.append(payload, sink);
        } else {
            sink.counters.payload_without_pes_start_total += 1;
        }
    }

    /// Drops the PES in progress.
    fn abandon(&mut self) {
        self.buf.clear();
        self.scan = None;
        self.gather = Gather::AwaitStart;
    }

    /// Opens a PES from the payload of a packet with payload_unit_start.
    fn start(&mut self, payload: &[u8], random_access: bool, sink: &mut Sink<'_>) {
        let Some(header) = PesHeader::from_bytes(payload) else {
            sink.counters.malformed_pes_total += 1;
            return;
        };
        // Audio and video PES always carry the optional header; stream ids
        // without it (padding, private_stream_2, ECM...) are not ours.
        let PesContents::Parsed(Some(parsed)) = header.contents() else {
            sink.counters.malformed_pes_total += 1;
            return;
        };
        let es = parsed.payload();
        let header_bytes = payload.len() - es.len();
        let expected = match header.pes_packet_length() {
            // PES_packet_length counts the bytes after itself (6 bytes in).
            PesLength::Bounded(n) => match (usize::from(n.get()) + 6).checked_sub(header_bytes) {
                Some(es_len) => Some(es_len),
                None => {
                    sink.counters.malformed_pes_total += 1;
                    return;
                }
            },
            PesLength::Unbounded => None,
        };
        let stamps = match parsed.pts_dts() {
            Ok(PtsDts::PtsOnly(Ok(pts))) => Some((pts, pts)),
            Ok(PtsDts::Both { pts: Ok(pts), dts: Ok(dts) }) => Some((pts, dts)),
            _ => None,
        };
        let (pts, dts) = match (stamps, self.last) {
            (Some((pts, dts)), last) => self.unwrap(pts, dts, last),
            (None, Some((dts, pts))) => {
                sink.counters.pes_without_pts_total += 1;
                (pts, dts)
            }
            (None, None) => {
                sink.counters.pes_dropped_no_timestamp_total += 1;
                return;
            }
        };
        self.last = Some((dts, pts));
        let keyframe = random_access || !self.is_video();
        self.head =
            Head { pts, dts, keyframe, discontinuity: std::mem::take(&mut self.pending_discontinuity), expected };
        self.scan = match self.mode {
            Mode::Demux { codec: Codec::H264, .. } if !keyframe => Some(KeyframeScan::new(VideoKind::H264)),
            Mode::Demux { codec: Codec::H265, .. } if !keyframe => Some(KeyframeScan::new(VideoKind::Hevc)),
            _ => None,
        };
        self.buf.begin(expected, es.len(), sink.limits.max_pes_bytes);
        self.gather = Gather::Collecting;
        self.append(es, sink);
    }

    /// Adds ES bytes to the PES in progress; emits it when a bounded PES is
    /// complete.
    fn append(&mut self, es: &[u8], sink: &mut Sink<'_>) {
        let es = match self.head.expected {
            // Bytes past PES_packet_length are stuffing or garbage.
            Some(n) => &es[..es.len().min(n.saturating_sub(self.buf.len()))],
            None => es,
        };
        if self.buf.len() + es.len() > sink.limits.max_pes_bytes {
            sink.counters.oversized_pes_total += 1;
            self.abandon();
            return;
        }
        if let Some(scan) = &mut self.scan {
            match scan.feed(es) {
                Verdict::Undecided => {}
                v => {
                    self.head.keyframe = v == Verdict::Key;
                    self.scan = None;
                }
            }
        }
        self.buf.push(es, sink.limits.max_pes_bytes);
        if self.head.expected == Some(self.buf.len()) {
            self.finish(sink, false);
        }
    }

    /// Ends the PES in progress: emits it if whole. `cut` says the next PES
    /// (or the end of input) cut it off, which completes an unbounded PES
    /// and truncates a bounded one.
    pub(super) fn finish(&mut self, sink: &mut Sink<'_>, cut: bool) {
        if self.gather != Gather::Collecting {
            return;
        }
        self.gather = Gather::AwaitStart;
        self.scan = None;
        if cut && self.head.expected.is_some_and(|n| n != self.buf.len()) {
            sink.counters.truncated_pes_total += 1;
            self.buf.clear();
            return;
        }
        let codec = match self.mode {
            Mode::Demux { codec, refine: false } => codec,
            Mode::Demux { codec, refine: true } => {
                let codec = match codec::sniff(self.buf.bytes()) {
                    Some("eac3") => Codec::Eac3,
                    Some("ac3") => Codec::Ac3,
                    _ => codec,
                };
                self.mode = Mode::Demux { codec, refine: false };
                codec
            }
            Mode::Sniff => match sniffed(self.buf.bytes()) {
                Some(codec) => {
                    self.mode = Mode::Demux { codec, refine: false };
                    codec
                }
                None => {
                    sink.counters.skipped_streams_unidentified_total += 1;
                    self.mode = Mode::Skip;
                    self.buf.clear();
                    return;
                }
            },
            Mode::Skip => {
                self.buf.clear();
                return;
            }
        };
        let payload = self.buf.take();
        sink.emit(AvPacket {
            track: self.pid,
            codec,
            payload,
            pts: self.head.pts,
            dts: self.head.dts,
            keyframe: self.head.keyframe,
            discontinuity: self.head.discontinuity,
        });
    }

    fn is_video(&self) -> bool {
        matches!(self.mode, Mode::Demux { codec, .. } if codec.is_video())
    }

    /// Unwraps 33-bit PTS and DTS: DTS to the value nearest the previous
    /// DTS, PTS to the value nearest its DTS.
    fn unwrap(&self, pts: Timestamp, dts: Timestamp, last: Option<(i64, i64)>) -> (i64, i64) {
        let dts = match last {
            Some((last_dts, _)) => unwrap_near(dts.value(), last_dts),
            None => dts.value() as i64,
        };
        (unwrap_near(pts.value(), dts), dts)
    }
}

/// The value congruent to `raw` modulo 2^33 that is nearest `reference`.
pub(super) fn unwrap_near(raw: u64, reference: i64) -> i64 {
    let raw = (raw as i64) & (WRAP - 1);
    let mut delta = raw - reference.rem_euclid(WRAP);
    if delta >= WRAP / 2 {
        delta -= WRAP;
    } else if delta < -WRAP / 2 {
        delta += WRAP;
    }
    reference + delta
}

/// The codec of a private stream's first payload, if it is one we demux.
fn sniffed(es: &[u8]) -> Option<Codec> {
    Some(match codec::sniff(es)? {
        "aac" => Codec::Aac,
        "mp1" | "mp2" | "mp3" => Codec::MpegAudio,
        "ac3" => Codec::Ac3,
        "eac3" => Codec::Eac3,
        _ => return None,
    })
}
