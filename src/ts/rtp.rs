//! RTP fixed header parsing and sequence tracking for MPEG-TS over RTP
//! (RFC 3550 §5.1, §5.3.1; RFC 2250 §2 for the MP2T payload).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |V=2|P|X|  CC   |M|     PT      |       sequence number         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           timestamp                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           synchronization source (SSRC) identifier            |
//! +=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+=+
//! |       contributing source (CSRC) identifiers: CC × 32 bits    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |      defined by profile       |  extension length (32-bit words)  X = 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          header extension: length × 32 bits (§5.3.1)          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    payload (for MP2T: N × 188)                |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |              padding ...  | padding count (P = 1, last byte)  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! What it does: [`parse`] finds the payload of one datagram as an index
//! range (nothing is copied); [`SeqTracker`] classifies each sequence number
//! as in order, a gap, late, a duplicate or a resynchronisation.
//!
//! What it does not: no RTCP, no jitter buffer, no reordering (packets are
//! passed on in arrival order and only counted), no payload-type check: MP2T
//! is payload type 33 (RFC 3551 §6), but senders with dynamic payload types
//! (96..=127) for TS are common, so any payload type is accepted and the
//! caller decides by looking for TS sync bytes in the payload.
//!
//! Invariants: a parsed [`RtpHeader::payload`] lies within the datagram and
//! starts after the fixed header, the CSRCs and the extension; padding, when
//! present, is at least one byte and never overlaps the header.

use std::ops::Range;

use thiserror::Error;

/// The only RTP version on the wire (RFC 3550 §5.1).
pub const RTP_VERSION: u8 = 2;
/// Static payload type of MPEG-2 transport streams (RFC 3551 §6).
pub const MP2T_PAYLOAD_TYPE: u8 = 33;
/// Length of the fixed header, before CSRCs.
pub const FIXED_HEADER_LEN: usize = 12;

/// Forward jump up to which missing sequence numbers count as a gap; beyond
/// it the stream counts as restarted (RFC 3550 appendix A.1, `MAX_DROPOUT`).
pub const MAX_DROPOUT: u16 = 3000;
/// How far behind the highest sequence number a packet still counts as late
/// (reordered or duplicate); further back counts as a restart (RFC 3550
/// appendix A.1, `MAX_MISORDER`).
pub const MAX_MISORDER: u16 = 100;

/// Why a datagram that claims RTP version 2 has no usable payload.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum RtpError {
    /// Fewer bytes than the fixed header.
    #[error("RTP datagram of {len} bytes is shorter than the 12-byte fixed header")]
    TooShort {
        /// Datagram length.
        len: usize,
    },
    /// The version bits are not 2.
    #[error("RTP version {version}, expected 2")]
    Version {
        /// The two version bits.
        version: u8,
    },
    /// The CSRC list runs past the end.
    #[error("RTP CSRC count {csrc_count} needs {needed} header bytes, datagram has {len}")]
    CsrcOverrun {
        /// The CC field.
        csrc_count: u8,
        /// Bytes the header needs.
        needed: usize,
        /// Datagram length.
        len: usize,
    },
    /// The header extension runs past the end.
    #[error("RTP header extension needs {needed} header bytes, datagram has {len}")]
    ExtensionOverrun {
        /// Bytes the header needs, extension included.
        needed: usize,
        /// Datagram length.
        len: usize,
    },
    /// The padding count is zero or eats into the header.
    #[error("RTP padding count {count} does not fit: {available} bytes follow the header")]
    BadPadding {
        /// The last byte of the datagram.
        count: u8,
        /// Bytes after the header.
        available: usize,
    },
}

/// The fields of one RTP header and where its payload lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpHeader {
    /// The marker bit.
    pub marker: bool,
    /// Payload type (7 bits); 33 for MP2T, often dynamic.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: u16,
    /// Media timestamp (90 kHz for MP2T).
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Number of CSRCs skipped.
    pub csrc_count: u8,
    /// Whether a header extension was skipped.
    pub extension: bool,
    /// Padding bytes removed from the end (0 when P is clear).
    pub padding_len: usize,
    /// The payload as indices into the datagram.
    pub payload: Range<usize>,
}

/// Whether `datagram` claims to be RTP version 2 (the two top bits of its
/// first byte are `10`). Says nothing about whether the rest parses.
pub fn is_version_2(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b >> 6 == RTP_VERSION)
}

/// Parses the RTP header of `datagram` and locates its payload.
pub fn parse(datagram: &[u8]) -> Result<RtpHeader, RtpError> {
    let len = datagram.len();
    let Some(fixed) = datagram.first_chunk::<FIXED_HEADER_LEN>() else {
        return Err(RtpError::TooShort { len });
    };
    let version = fixed[0] >> 6;
    if version != RTP_VERSION {
        return Err(RtpError::Version { version });
    }
    let padding = fixed[0] & 0x20 != 0;
    let extension = fixed[0] & 0x10 != 0;
    let csrc_count = fixed[0] & 0x0F;
    let mut header_len = FIXED_HEADER_LEN + 4 * usize::from(csrc_count);
    if header_len > len {
        return Err(RtpError::CsrcOverrun { csrc_count, needed: header_len, len });
    }
    if extension {
        // §5.3.1: 16 bits defined by profile, 16 bits length in words.
        let words = match datagram.get(header_len + 2..header_len + 4) {
            Some(&[hi, lo]) => usize::from(u16::from_be_bytes([hi, lo])),
            _ => return Err(RtpError::ExtensionOverrun { needed: header_len + 4, len }),
        };
        header_len += 4 + 4 * words;
        if header_len > len {
            return Err(RtpError::ExtensionOverrun { needed: header_len, len });
        }
    }
    let mut end = len;
    let mut padding_len = 0;
    if padding {
        let count = datagram[len - 1];
        let available = len - header_len;
        if count == 0 || usize::from(count) > available {
            return Err(RtpError::BadPadding { count, available });
        }
        padding_len = usize::from(count);
        end -= padding_len;
    }
    Ok(RtpHeader {
        marker: fixed[1] & 0x80 != 0,
        payload_type: fixed[1] & 0x7F,
        sequence: u16::from_be_bytes([fixed[2], fixed[3]]),
        timestamp: u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        ssrc: u32::from_be_bytes([fixed[8], fixed[9], fixed[10], fixed[11]]),
        csrc_count,
        extension,
        padding_len,
        payload: header_len..end,
    })
}

/// What one sequence number means relative to those seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqEvent {
    /// The first packet seen: nothing to compare with.
    First,
    /// The next number after the highest so far.
    InOrder,
    /// Ahead of the highest by up to [`MAX_DROPOUT`]: `missing` numbers were
    /// skipped (at least 1).
    Gap {
        /// Sequence numbers skipped.
        missing: u16,
    },
    /// Behind the highest by up to [`MAX_MISORDER`] and not seen before: it
    /// fills a hole an earlier [`SeqEvent::Gap`] counted.
    Reordered,
    /// Equal to the highest, or behind it and already seen.
    Duplicate,
    /// A new SSRC, or a jump too far to be loss or reordering: tracking
    /// restarts from this packet.
    Resync,
}

/// Sequence-number state of one RTP stream, reset by an SSRC change.
///
/// The rule (after RFC 3550 appendix A.1), with `d` the distance from the
/// highest number seen, modulo 2^16:
/// - `d == 1`: in order; `2 ..= MAX_DROPOUT + 1`: a gap of `d - 1`;
/// - `d == 0`, or `1 ..= MAX_MISORDER` behind: late; a duplicate when that
///   number was already seen (remembered for the last 128 numbers), else
///   reordered;
/// - anything else, or a different SSRC: a resync. Unlike appendix A.1 a
///   resync takes effect at once (no second packet to confirm it), because
///   nothing is dropped on its strength: a single stray packet costs two
///   resyncs in the counters, never data.
///
/// Net loss over a run is `gap missing − reordered`, as long as the late
/// packets arrive within the window.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    state: Option<SeqState>,
}

#[derive(Clone, Debug)]
struct SeqState {
    ssrc: u32,
    highest: u16,
    /// Bit k set: `highest - k` was received.
    seen: u128,
}

impl SeqTracker {
    /// Records one packet and says what its sequence number means.
    pub fn observe(&mut self, ssrc: u32, seq: u16) -> SeqEvent {
        let Some(st) = self.state.as_mut() else {
            self.state = Some(SeqState { ssrc, highest: seq, seen: 1 });
            return SeqEvent::First;
        };
        if st.ssrc != ssrc {
            *st = SeqState { ssrc, highest: seq, seen: 1 };
            return SeqEvent::Resync;
        }
        let ahead = seq.wrapping_sub(st.highest);
        let behind = st.highest.wrapping_sub(seq);
        if ahead == 0 {
            SeqEvent::Duplicate
        } else if ahead <= MAX_DROPOUT + 1 {
            st.seen = st.seen.checked_shl(u32::from(ahead)).unwrap_or(0) | 1;
            st.highest = seq;
            if ahead == 1 { SeqEvent::InOrder } else { SeqEvent::Gap { missing: ahead - 1 } }
        } else if behind <= MAX_MISORDER {
            let bit = 1u128 << behind;
            if st.seen & bit != 0 {
                SeqEvent::Duplicate
            } else {
                st.seen |= bit;
                SeqEvent::Reordered
            }
        } else {
            *st = SeqState { ssrc, highest: seq, seen: 1 };
            SeqEvent::Resync
        }
    }

    /// Forgets everything: the next packet is [`SeqEvent::First`].
    pub fn reset(&mut self) {
        self.state = None;
    }

    /// The highest sequence number of the current run, if any.
    pub fn highest(&self) -> Option<u16> {
        self.state.as_ref().map(|s| s.highest)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds an RTP datagram by hand: header, CSRCs, extension words,
    /// payload, padding.
    pub(crate) fn rtp_datagram(
        seq: u16,
        ssrc: u32,
        csrcs: u8,
        ext_words: Option<u16>,
        payload: &[u8],
        pad: u8,
    ) -> Vec<u8> {
        let mut v = vec![0x80 | (u8::from(pad > 0) << 5) | (u8::from(ext_words.is_some()) << 4) | csrcs];
        v.push(0x80 | MP2T_PAYLOAD_TYPE);
        v.extend(seq.to_be_bytes());
        v.extend(0x1234_5678u32.to_be_bytes());
        v.extend(ssrc.to_be_bytes());
        for i in 0..csrcs {
            v.extend(u32::from(i).to_be_bytes());
        }
        if let Some(words) = ext_words {
            v.extend([0xBE, 0xDE]);
            v.extend(words.to_be_bytes());
            v.extend(std::iter::repeat_n(0xEE, 4 * usize::from(words)));
        }
        v.extend(payload);
        if pad > 0 {
            v.extend(std::iter::repeat_n(0, usize::from(pad) - 1));
            v.push(pad);
        }
        v
    }

    #[test]
    fn fixed_header_fields() {
        let d = rtp_datagram(0xABCD, 0xDEAD_BEEF, 0, None, &[0x47; 188], 0);
        let h = parse(&d).unwrap();
        assert_eq!(h.payload, 12..200);
        assert_eq!((h.sequence, h.ssrc, h.timestamp), (0xABCD, 0xDEAD_BEEF, 0x1234_5678));
        assert_eq!(h.payload_type, MP2T_PAYLOAD_TYPE);
        assert!(h.marker);
        assert!(!h.extension);
        assert_eq!(h.padding_len, 0);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let d = rtp_datagram(1, 2, 15, Some(3), &[0x47; 376], 7);
        let h = parse(&d).unwrap();
        let start = 12 + 15 * 4 + 4 + 12;
        assert_eq!(h.payload, start..start + 376);
        assert_eq!((h.csrc_count, h.extension, h.padding_len), (15, true, 7));
        // An empty extension (length 0) is legal.
        let d = rtp_datagram(1, 2, 0, Some(0), &[0x47; 188], 0);
        assert_eq!(parse(&d).unwrap().payload, 16..204);
    }

    #[test]
    fn malformed_headers_name_the_field() {
        assert_eq!(parse(&[0x80; 11]), Err(RtpError::TooShort { len: 11 }));
        assert_eq!(parse(&[0x40; 12]), Err(RtpError::Version { version: 1 }));
        let mut d = rtp_datagram(1, 2, 0, None, &[], 0);
        d[0] |= 2;
        assert_eq!(parse(&d), Err(RtpError::CsrcOverrun { csrc_count: 2, needed: 20, len: 12 }));
        let mut d = rtp_datagram(1, 2, 0, None, &[0; 3], 0);
        d[0] |= 0x10;
        assert_eq!(parse(&d), Err(RtpError::ExtensionOverrun { needed: 16, len: 15 }));
        let mut d = rtp_datagram(1, 2, 0, Some(1), &[], 0);
        d[15] = 2;
        assert_eq!(parse(&d), Err(RtpError::ExtensionOverrun { needed: 24, len: 20 }));
        let mut d = rtp_datagram(1, 2, 0, None, &[1, 2, 3], 0);
        d[0] |= 0x20;
        d[14] = 0;
        assert_eq!(parse(&d), Err(RtpError::BadPadding { count: 0, available: 3 }));
        d[14] = 4;
        assert_eq!(parse(&d), Err(RtpError::BadPadding { count: 4, available: 3 }));
        d[14] = 3;
        assert_eq!(parse(&d).unwrap().payload, 12..12);
        assert!(RtpError::BadPadding { count: 4, available: 3 }.to_string().contains("padding"));
    }

    #[test]
    fn version_check() {
        assert!(is_version_2(&[0x80]));
        assert!(is_version_2(&[0xBF]));
        assert!(!is_version_2(&[0x47]));
        assert!(!is_version_2(&[]));
    }

    fn events(seqs: &[u16]) -> Vec<SeqEvent> {
        let mut t = SeqTracker::default();
        seqs.iter().map(|&s| t.observe(7, s)).collect()
    }

    #[test]
    fn in_order_across_the_wrap() {
        use SeqEvent::*;
        assert_eq!(events(&[65534, 65535, 0, 1]), [First, InOrder, InOrder, InOrder]);
    }

    #[test]
    fn gaps_across_the_wrap_count_missing_numbers() {
        use SeqEvent::*;
        // 65535 and 0 missing, then 2 missing.
        assert_eq!(events(&[65534, 1, 3]), [First, Gap { missing: 2 }, Gap { missing: 1 }]);
        assert_eq!(events(&[10, 10 + MAX_DROPOUT + 1]), [First, Gap { missing: MAX_DROPOUT }]);
    }

    #[test]
    fn duplicates_and_reordering() {
        use SeqEvent::*;
        // 65535 arrives after 0 and 1 (late, fills the gap), then again.
        assert_eq!(
            events(&[65534, 0, 1, 65535, 65535, 1, 0]),
            [First, Gap { missing: 1 }, InOrder, Reordered, Duplicate, Duplicate, Duplicate]
        );
        // Far enough back that the window no longer remembers it: still a
        // duplicate while within MAX_MISORDER, since the bitmap covers 128.
        let mut t = SeqTracker::default();
        for s in 0..=MAX_MISORDER {
            t.observe(1, s);
        }
        assert_eq!(t.observe(1, 0), Duplicate);
    }

    #[test]
    fn big_jumps_and_ssrc_changes_resync() {
        use SeqEvent::*;
        assert_eq!(events(&[100, 100 + MAX_DROPOUT + 2, 100 + MAX_DROPOUT + 3]), [First, Resync, InOrder]);
        assert_eq!(events(&[5000, 5000 - MAX_MISORDER - 1]), [First, Resync]);
        assert_eq!(events(&[5000, 5000 - MAX_MISORDER]), [First, Reordered]);
        let mut t = SeqTracker::default();
        assert_eq!(t.observe(1, 10), First);
        assert_eq!(t.observe(2, 11), Resync);
        assert_eq!(t.observe(2, 13), Gap { missing: 1 });
        assert_eq!(t.highest(), Some(13));
        t.reset();
        assert_eq!(t.observe(2, 13), First);
    }

    #[test]
    fn gap_then_late_arrival_nets_to_zero_loss() {
        let mut t = SeqTracker::default();
        let (mut missing, mut late) = (0u32, 0u32);
        for s in [1u16, 2, 5, 3, 4, 6, 9, 8, 7, 10] {
            match t.observe(3, s) {
                SeqEvent::Gap { missing: m } => missing += u32::from(m),
                SeqEvent::Reordered => late += 1,
                _ => {}
            }
        }
        assert_eq!((missing, late), (4, 4));
    }
}
