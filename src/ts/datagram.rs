//! One UDP datagram → one run of transport packets, as index ranges.
//!
//! What it does: [`DatagramClassifier::classify`] decides whether a datagram
//! carries transport packets, directly or behind an RTP header (RFC 3550
//! §5.1, RFC 2250 §2), finds their packet size and returns the range of
//! whole, synchronised packets, so the caller cuts a `Bytes` slice of its
//! pooled receive buffer without copying. Everything is counted in
//! [`DatagramCounters`]. [`DatagramClassifier::normalise_to_188`] is the one
//! copy on this path: 192/204-byte packets to 188.
//!
//! What it does not: no socket, no clock, no continuity or PSI checks (the
//! scanner's job), no reordering of RTP packets.
//!
//! The rules, in order:
//! 1. A datagram starting with 0x47 is plain TS.
//! 2. Otherwise, when RTP stripping is on (`rtp=1`, the default) and the
//!    datagram claims RTP version 2, its header, CSRCs, extension and
//!    padding are removed ([`rtp::parse`]) and the payload must be TS. Any
//!    payload type is accepted. Only such datagrams move the RTP sequence
//!    counters.
//! 3. Otherwise (or when the RTP payload is not TS) the datagram may be raw
//!    192-byte M2TS units, whose sync byte is at offset 4.
//! 4. Anything else is [`Datagram::NotTs`], counted in `non_ts_dropped` and
//!    dropped. With `rtp=0`, RTP datagrams end up here.
//!
//! Packet size: each of 188, 204 and 192 (sync byte at offset 4) whose
//! first sync position holds 0x47 is a candidate; for each, the leading
//! whole packets with 0x47 at their sync position are counted. The winner
//! is the first of: a clean fit (every whole packet synchronised and no
//! bytes left over), then the most synchronised packets, then a length that
//! is a multiple of the size, then the order 188, 204, 192. So one 204-byte
//! packet followed by stray bytes reads as one 188-byte packet, the rest
//! counted as odd tail or bad sync: with one packet the spacing is unknown.
//!
//! Bad input inside a datagram:
//! - **Odd size**: bytes after the last whole packet are the odd tail,
//!   dropped and counted (`odd_size` datagrams, `odd_tail_bytes`).
//! - **Bad sync**: when a later packet lacks its sync byte, the packets
//!   before it are kept and it and every whole packet after it are dropped
//!   (`bad_sync` datagrams, `bad_sync_bytes`). One range per datagram keeps
//!   the zero-copy contract; a datagram with a broken packet is rare enough
//!   that discarding its rest is the honest, counted choice.
//!
//! Invariant of every [`Datagram::Ts`] over a datagram of `len` bytes, with
//! `h` the RTP payload range (or `0..len`): `payload.start == h.start` and
//! `payload.end + bad_sync_bytes + odd_tail_bytes == h.end`, where
//! `payload.len() == packets * packet_size.stride()` and `packets >= 1`.

use std::ops::Range;

use serde::Serialize;
use thiserror::Error;

use super::framing::PacketSize;
use super::packet::{PACKET_LEN, SYNC_BYTE};
use super::rtp::{self, RtpError, RtpHeader, SeqEvent, SeqTracker};

/// Packet sizes in tie-break order.
const SIZES: [PacketSize; 3] = [PacketSize::Ts188, PacketSize::Rs204, PacketSize::M2ts192];

/// Why a datagram was dropped as not TS.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NotTsReason {
    /// A zero-length datagram.
    #[error("empty datagram")]
    Empty,
    /// Neither plain TS, nor RTP (or RTP stripping is off), nor M2TS.
    #[error("datagram of {len} bytes holds no packet with a sync byte at 188, 192 or 204-byte spacing")]
    NoSync {
        /// Datagram length.
        len: usize,
    },
    /// An RTP v2 header that does not parse.
    #[error("malformed RTP header: {0}")]
    Rtp(#[from] RtpError),
    /// An RTP header whose payload is not transport packets.
    #[error("RTP payload of {len} bytes (payload type {payload_type}) is not MPEG-TS")]
    RtpPayloadNotTs {
        /// Payload length after header and padding.
        len: usize,
        /// The RTP payload type.
        payload_type: u8,
    },
}

/// The verdict on one datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Datagram {
    /// Transport packets; see the module invariant.
    Ts {
        /// Whole synchronised packets (with their 192/204 framing), as
        /// indices into the datagram. Never empty.
        payload: Range<usize>,
        /// Wire size of the packets in `payload`.
        packet_size: PacketSize,
        /// Number of packets in `payload` (at least 1).
        packets: usize,
        /// Bytes after the last whole packet (the datagram was not a
        /// multiple of the packet size).
        odd_tail_bytes: usize,
        /// Whole packets dropped from the first one lacking a sync byte on.
        bad_sync_bytes: usize,
        /// The RTP header that was stripped, if any.
        rtp: Option<RtpHeader>,
    },
    /// Not transport packets; counted and dropped.
    NotTs(NotTsReason),
}

/// Counters over every datagram seen by one classifier.
///
/// Consistency: `datagrams - non_ts_dropped` datagrams were TS, of which
/// `rtp_datagrams` were RTP; each RTP datagram moves at most one of
/// `rtp_reordered`, `rtp_duplicates`, `rtp_resyncs` or `rtp_seq_gaps` (by its
/// missing count). Net RTP loss is `rtp_seq_gaps - rtp_reordered`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DatagramCounters {
    /// Datagrams classified.
    pub datagrams: u64,
    /// Bytes of all datagrams, headers and dropped bytes included.
    pub bytes: u64,
    /// Packets returned in TS ranges (before any normalisation).
    pub ts_packets: u64,
    /// Datagrams dropped as not TS.
    pub non_ts_dropped: u64,
    /// Of those, RTP v2 datagrams whose header did not parse.
    pub rtp_malformed: u64,
    /// TS datagrams whose length was not a whole number of packets.
    pub odd_size: u64,
    /// Bytes after the last whole packet, summed.
    pub odd_tail_bytes: u64,
    /// TS datagrams cut short at a packet without its sync byte.
    pub bad_sync: u64,
    /// Bytes of the whole packets dropped by those cuts.
    pub bad_sync_bytes: u64,
    /// TS datagrams that came behind an RTP header.
    pub rtp_datagrams: u64,
    /// RTP sequence numbers skipped (missing packets when they were
    /// skipped; see `rtp_reordered`).
    pub rtp_seq_gaps: u64,
    /// RTP packets that arrived late and filled a counted gap.
    pub rtp_reordered: u64,
    /// RTP packets whose sequence number was already seen.
    pub rtp_duplicates: u64,
    /// RTP sequence restarts: SSRC change or a jump beyond
    /// [`rtp::MAX_DROPOUT`] ahead or [`rtp::MAX_MISORDER`] behind.
    pub rtp_resyncs: u64,
    /// 192/204-byte packets copied to 188 by
    /// [`DatagramClassifier::normalise_to_188`].
    pub normalised_packets: u64,
}

impl DatagramCounters {
    /// Adds `other`'s counts to these (an input reopened: totals over
    /// every open).
    pub fn add(&mut self, other: &DatagramCounters) {
        self.datagrams += other.datagrams;
        self.bytes += other.bytes;
        self.ts_packets += other.ts_packets;
        self.non_ts_dropped += other.non_ts_dropped;
        self.rtp_malformed += other.rtp_malformed;
        self.odd_size += other.odd_size;
        self.odd_tail_bytes += other.odd_tail_bytes;
        self.bad_sync += other.bad_sync;
        self.bad_sync_bytes += other.bad_sync_bytes;
        self.rtp_datagrams += other.rtp_datagrams;
        self.rtp_seq_gaps += other.rtp_seq_gaps;
        self.rtp_reordered += other.rtp_reordered;
        self.rtp_duplicates += other.rtp_duplicates;
        self.rtp_resyncs += other.rtp_resyncs;
        self.normalised_packets += other.normalised_packets;
    }
}

/// Classifies the datagrams of one UDP input and counts them.
#[derive(Clone, Debug)]
pub struct DatagramClassifier {
    rtp: bool,
    seq: SeqTracker,
    counters: DatagramCounters,
}

impl Default for DatagramClassifier {
    fn default() -> Self {
        DatagramClassifier::new(true)
    }
}

/// A run of packets found in a byte range.
struct Found {
    size: PacketSize,
    start: usize,
    packets: usize,
    whole: usize,
    tail: usize,
}

impl DatagramClassifier {
    /// A classifier; `rtp` says whether RTP headers are stripped (`rtp=1`).
    pub fn new(rtp: bool) -> Self {
        DatagramClassifier { rtp, seq: SeqTracker::default(), counters: DatagramCounters::default() }
    }

    /// Whether RTP headers are stripped.
    pub fn rtp(&self) -> bool {
        self.rtp
    }

    /// The counters so far.
    pub fn counters(&self) -> &DatagramCounters {
        &self.counters
    }

    /// Forgets the RTP sequence state (e.g. after the socket was reopened);
    /// the counters are kept.
    pub fn reset_sequence(&mut self) {
        self.seq.reset();
    }

    /// Classifies one datagram and counts it (rules in the module doc).
    pub fn classify(&mut self, datagram: &[u8]) -> Datagram {
        let c = &mut self.counters;
        c.datagrams += 1;
        c.bytes += datagram.len() as u64;
        let verdict = self.find(datagram);
        let c = &mut self.counters;
        match &verdict {
            Datagram::NotTs(reason) => {
                c.non_ts_dropped += 1;
                if matches!(reason, NotTsReason::Rtp(_)) {
                    c.rtp_malformed += 1;
                }
            }
            Datagram::Ts { packets, odd_tail_bytes, bad_sync_bytes, rtp, .. } => {
                c.ts_packets += *packets as u64;
                if *odd_tail_bytes > 0 {
                    c.odd_size += 1;
                    c.odd_tail_bytes += *odd_tail_bytes as u64;
                }
                if *bad_sync_bytes > 0 {
                    c.bad_sync += 1;
                    c.bad_sync_bytes += *bad_sync_bytes as u64;
                }
                if let Some(h) = rtp {
                    c.rtp_datagrams += 1;
                    match self.seq.observe(h.ssrc, h.sequence) {
                        SeqEvent::First | SeqEvent::InOrder => {}
                        SeqEvent::Gap { missing } => c.rtp_seq_gaps += u64::from(missing),
                        SeqEvent::Reordered => c.rtp_reordered += 1,
                        SeqEvent::Duplicate => c.rtp_duplicates += 1,
                        SeqEvent::Resync => c.rtp_resyncs += 1,
                    }
                }
            }
        }
        verdict
    }

    /// Copies the 188-byte packets out of `run`, a run of `size` packets
    /// (the bytes of a [`Datagram::Ts`] payload), into `dst`, back to back.
    /// Copies as many whole packets as both hold and returns how many.
    ///
    /// This is the one copy of the receive path. A 188-byte run is never
    /// copied: for [`PacketSize::Ts188`] nothing is written and 0 returned;
    /// slice the receive buffer instead.
    pub fn normalise_to_188(&mut self, run: &[u8], size: PacketSize, dst: &mut [u8]) -> usize {
        if size == PacketSize::Ts188 {
            return 0;
        }
        let units = run.chunks_exact(size.stride());
        let slots = dst.chunks_exact_mut(PACKET_LEN);
        let mut copied = 0;
        for (unit, slot) in units.zip(slots) {
            slot.copy_from_slice(&unit[size.prefix()..size.prefix() + PACKET_LEN]);
            copied += 1;
        }
        self.counters.normalised_packets += copied as u64;
        copied
    }

    fn find(&self, d: &[u8]) -> Datagram {
        let Some(&first) = d.first() else {
            return Datagram::NotTs(NotTsReason::Empty);
        };
        let whole = 0..d.len();
        if first == SYNC_BYTE {
            return ts_or(d, whole, None, NotTsReason::NoSync { len: d.len() });
        }
        let mut reason = NotTsReason::NoSync { len: d.len() };
        if self.rtp && rtp::is_version_2(d) {
            match rtp::parse(d) {
                Ok(h) => {
                    if let Some(found) = packets_in(d, h.payload.clone()) {
                        return ts(found, Some(h));
                    }
                    reason = NotTsReason::RtpPayloadNotTs { len: h.payload.len(), payload_type: h.payload_type };
                }
                Err(e) => reason = NotTsReason::Rtp(e),
            }
        }
        ts_or(d, whole, None, reason)
    }
}

fn ts_or(d: &[u8], range: Range<usize>, rtp: Option<RtpHeader>, reason: NotTsReason) -> Datagram {
    match packets_in(d, range) {
        Some(found) => ts(found, rtp),
        None => Datagram::NotTs(reason),
    }
}

fn ts(f: Found, rtp: Option<RtpHeader>) -> Datagram {
    let stride = f.size.stride();
    Datagram::Ts {
        payload: f.start..f.start + f.packets * stride,
        packet_size: f.size,
        packets: f.packets,
        odd_tail_bytes: f.tail,
        bad_sync_bytes: (f.whole - f.packets) * stride,
        rtp,
    }
}

/// The best run of packets in `d[range]` by the module's size rule.
fn packets_in(d: &[u8], range: Range<usize>) -> Option<Found> {
    let body = d.get(range.clone())?;
    let mut best: Option<((bool, usize, bool), Found)> = None;
    for size in SIZES {
        let stride = size.stride();
        let whole = body.len() / stride;
        let packets = (0..whole).take_while(|k| body[k * stride + size.prefix()] == SYNC_BYTE).count();
        if packets == 0 {
            continue;
        }
        let tail = body.len() % stride;
        let rank = (packets == whole && tail == 0, packets, tail == 0);
        if best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, Found { size, start: range.start, packets, whole, tail }));
        }
    }
    best.map(|(_, f)| f)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// `n` packets of `stride` bytes with sync bytes in place and a
    /// recognisable body (never 0x47 elsewhere).
    fn packets(stride: usize, n: usize) -> Vec<u8> {
        let prefix = if stride == 192 { 4 } else { 0 };
        let mut v = Vec::with_capacity(stride * n);
        for i in 0..n {
            for j in 0..stride {
                v.push(if j == prefix { SYNC_BYTE } else { ((i * 7 + j) % 64) as u8 });
            }
        }
        v
    }

    fn rtp_wrap(seq: u16, ssrc: u32, csrcs: u8, ext_words: Option<u16>, payload: &[u8], pad: u8) -> Vec<u8> {
        rtp::tests::rtp_datagram(seq, ssrc, csrcs, ext_words, payload, pad)
    }

    fn ts_fields(d: &Datagram) -> (Range<usize>, PacketSize, usize, usize, usize) {
        match d {
            Datagram::Ts { payload, packet_size, packets, odd_tail_bytes, bad_sync_bytes, .. } => {
                (payload.clone(), *packet_size, *packets, *odd_tail_bytes, *bad_sync_bytes)
            }
            Datagram::NotTs(r) => panic!("not TS: {r}"),
        }
    }

    #[test]
    fn plain_runs_of_each_size() {
        let mut c = DatagramClassifier::default();
        assert_eq!(ts_fields(&c.classify(&packets(188, 7))), (0..1316, PacketSize::Ts188, 7, 0, 0));
        assert_eq!(ts_fields(&c.classify(&packets(204, 7))), (0..1428, PacketSize::Rs204, 7, 0, 0));
        assert_eq!(ts_fields(&c.classify(&packets(192, 7))), (0..1344, PacketSize::M2ts192, 7, 0, 0));
        assert_eq!(ts_fields(&c.classify(&packets(204, 1))), (0..204, PacketSize::Rs204, 1, 0, 0));
        assert_eq!(ts_fields(&c.classify(&packets(188, 1))), (0..188, PacketSize::Ts188, 1, 0, 0));
        let n = c.counters();
        assert_eq!((n.datagrams, n.ts_packets, n.non_ts_dropped, n.odd_size), (5, 23, 0, 0));
    }

    #[test]
    fn odd_tail_is_counted() {
        let mut c = DatagramClassifier::default();
        let mut d = packets(188, 7);
        d.extend([1, 2, 3, 4, 5]);
        assert_eq!(ts_fields(&c.classify(&d)), (0..1316, PacketSize::Ts188, 7, 5, 0));
        let mut d = packets(204, 3);
        d.truncate(600);
        assert_eq!(ts_fields(&c.classify(&d)), (0..408, PacketSize::Rs204, 2, 192, 0));
        assert_eq!((c.counters().odd_size, c.counters().odd_tail_bytes), (2, 197));
    }

    #[test]
    fn bad_sync_keeps_the_packets_before_it() {
        let mut c = DatagramClassifier::default();
        let mut d = packets(188, 7);
        d[3 * 188] = 0;
        assert_eq!(ts_fields(&c.classify(&d)), (0..564, PacketSize::Ts188, 3, 0, 4 * 188));
        let mut d = packets(204, 7);
        d[204] = 0;
        assert_eq!(ts_fields(&c.classify(&d)), (0..204, PacketSize::Rs204, 1, 0, 6 * 204));
        assert_eq!((c.counters().bad_sync, c.counters().bad_sync_bytes), (2, 4 * 188 + 6 * 204));
        // No sync byte on the first packet: not TS at all.
        let mut d = packets(188, 7);
        d[0] = 0;
        assert_eq!(c.classify(&d), Datagram::NotTs(NotTsReason::NoSync { len: 1316 }));
    }

    #[test]
    fn rtp_headers_are_stripped() {
        let mut c = DatagramClassifier::default();
        let body = packets(188, 7);
        let d = rtp_wrap(1, 9, 0, None, &body, 0);
        assert_eq!(ts_fields(&c.classify(&d)), (12..1328, PacketSize::Ts188, 7, 0, 0));
        let d = rtp_wrap(2, 9, 3, Some(2), &body, 4);
        let start = 12 + 12 + 4 + 8;
        assert_eq!(ts_fields(&c.classify(&d)), (start..start + 1316, PacketSize::Ts188, 7, 0, 0));
        let d = rtp_wrap(3, 9, 0, None, &packets(204, 7), 0);
        assert_eq!(ts_fields(&c.classify(&d)), (12..1440, PacketSize::Rs204, 7, 0, 0));
        match c.classify(&rtp_wrap(4, 9, 1, None, &body, 0)) {
            Datagram::Ts { rtp: Some(h), .. } => assert_eq!((h.sequence, h.ssrc, h.csrc_count), (4, 9, 1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(c.counters().rtp_datagrams, 4);
        assert_eq!(c.counters().rtp_seq_gaps, 0);
    }

    #[test]
    fn rtp_off_or_broken_is_dropped() {
        let body = packets(188, 7);
        let d = rtp_wrap(1, 9, 0, None, &body, 0);
        let mut off = DatagramClassifier::new(false);
        assert!(matches!(off.classify(&d), Datagram::NotTs(NotTsReason::NoSync { .. })));
        assert_eq!((off.counters().non_ts_dropped, off.counters().rtp_datagrams), (1, 0));

        let mut c = DatagramClassifier::default();
        let mut bad = rtp_wrap(1, 9, 0, None, &body, 0);
        bad[0] |= 0x0F; // 15 CSRCs: the "header" now eats the payload's sync bytes
        assert!(matches!(c.classify(&bad), Datagram::NotTs(NotTsReason::RtpPayloadNotTs { .. })));
        assert!(matches!(c.classify(&[0x80; 8]), Datagram::NotTs(NotTsReason::Rtp(RtpError::TooShort { len: 8 }))));
        let text = rtp_wrap(1, 9, 0, None, b"hello, not a transport stream", 0);
        assert!(matches!(c.classify(&text), Datagram::NotTs(NotTsReason::RtpPayloadNotTs { len: 29, .. })));
        assert_eq!(c.classify(&[]), Datagram::NotTs(NotTsReason::Empty));
        let n = c.counters();
        assert_eq!((n.datagrams, n.non_ts_dropped, n.rtp_malformed, n.rtp_datagrams), (4, 4, 1, 0));
    }

    #[test]
    fn rtp_sequence_counters() {
        let mut c = DatagramClassifier::default();
        let body = packets(188, 1);
        for seq in [65533u16, 65534, 1, 2, 0, 2, 3, 60000] {
            c.classify(&rtp_wrap(seq, 5, 0, None, &body, 0));
        }
        c.classify(&rtp_wrap(60001, 6, 0, None, &body, 0));
        let n = c.counters();
        // 65535, 0 missing; 0 late; 2 duplicate; 60000 jump; SSRC change.
        assert_eq!((n.rtp_seq_gaps, n.rtp_reordered, n.rtp_duplicates, n.rtp_resyncs), (2, 1, 1, 2));
        assert_eq!(n.rtp_datagrams, 9);
    }

    #[test]
    fn normalise_copies_only_wide_packets() {
        let mut c = DatagramClassifier::default();
        for stride in [192, 204] {
            let d = packets(stride, 5);
            let (range, size, n, _, _) = ts_fields(&c.classify(&d));
            let mut dst = vec![0u8; 188 * 5];
            assert_eq!(c.normalise_to_188(&d[range], size, &mut dst), n);
            for (k, p) in dst.chunks(188).enumerate() {
                let prefix = size.prefix();
                assert_eq!(p, &d[k * stride + prefix..k * stride + prefix + 188]);
                assert_eq!(p[0], SYNC_BYTE);
            }
            let mut short = vec![0u8; 188 * 2 + 100];
            assert_eq!(c.normalise_to_188(&d, size, &mut short), 2);
        }
        let d = packets(188, 3);
        assert_eq!(c.normalise_to_188(&d, PacketSize::Ts188, &mut [0u8; 1000]), 0);
        assert_eq!(c.counters().normalised_packets, 14);
    }

    #[test]
    fn counters_serialize() {
        let json = serde_json::to_value(DatagramCounters::default()).unwrap();
        assert_eq!(json["rtp_seq_gaps"], 0);
        assert_eq!(json["odd_tail_bytes"], 0);
    }

    /// Checks the module invariant of one verdict.
    fn check(d: &[u8], v: &Datagram) {
        if let Datagram::Ts { payload, packet_size, packets, odd_tail_bytes, bad_sync_bytes, rtp } = v {
            let h = rtp.as_ref().map_or(0..d.len(), |h| h.payload.clone());
            assert!(*packets >= 1);
            assert_eq!(payload.start, h.start);
            assert_eq!(payload.len(), packets * packet_size.stride());
            assert_eq!(payload.end + bad_sync_bytes + odd_tail_bytes, h.end);
            assert!(h.end <= d.len());
            assert!(*odd_tail_bytes < packet_size.stride());
            for k in 0..*packets {
                assert_eq!(d[payload.start + k * packet_size.stride() + packet_size.prefix()], SYNC_BYTE);
            }
            if let Some(h) = rtp {
                assert_eq!(h.payload.end + h.padding_len, d.len());
            }
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..3000), rtp in any::<bool>()) {
            let mut c = DatagramClassifier::new(rtp);
            let v = c.classify(&data);
            check(&data, &v);
            prop_assert_eq!(c.counters().datagrams, 1);
        }

        #[test]
        fn built_datagrams_classify_exactly(
            stride in prop_oneof![Just(188usize), Just(192), Just(204)],
            n in 1usize..12,
            tail in 0usize..188,
            wrap in any::<bool>(),
            csrcs in 0u8..16,
            ext in proptest::option::of(0u16..8),
            pad in 0u8..20,
        ) {
            let mut body = packets(stride, n);
            body.extend(std::iter::repeat_n(1u8, tail));
            let d = if wrap { rtp_wrap(7, 1, csrcs, ext, &body, pad) } else { body.clone() };
            let mut c = DatagramClassifier::default();
            let v = c.classify(&d);
            check(&d, &v);
            let (range, size, packets_found, odd, bad) = ts_fields(&v);
            let header = if wrap { 12 + 4 * usize::from(csrcs) + ext.map_or(0, |w| 4 + 4 * usize::from(w)) } else { 0 };
            let trailer = if wrap { usize::from(pad) } else { 0 };
            prop_assert_eq!(range.start, header);
            prop_assert_eq!(c.counters().rtp_datagrams, u64::from(wrap));
            if stride == 204 && n == 1 && tail > 0 {
                // One 204-byte packet plus stray bytes cannot be told from
                // one 188-byte packet plus more: the rule reads 188.
                prop_assert_eq!((size, packets_found), (PacketSize::Ts188, 1));
            } else if stride == 188 && n == 1 && tail == 16 {
                // And the converse: 188 + 16 stray bytes is exactly one
                // 204-byte packet (its 16 bytes of parity), which fits the
                // datagram with nothing left over, so the rule reads 204.
                prop_assert_eq!((size, packets_found, odd), (PacketSize::Rs204, 1, 0));
            } else {
                prop_assert_eq!(size.stride(), stride);
                prop_assert_eq!(packets_found, n);
                prop_assert_eq!(bad, 0);
                prop_assert_eq!(odd, tail);
                prop_assert_eq!(header + n * stride + odd + trailer, d.len());
            }
        }
    }
}
