//! Does a video PES start a keyframe? A scan of the elementary-stream bytes
//! for the first start code that settles it.
//!
//! An access unit opens with parameter sets, delimiters and SEI before its
//! first picture (ISO/IEC 14496-10 §7.4.1.2.3), so the scan walks start codes
//! (`00 00 01`) until one names a picture or a sequence header:
//!
//! | codec | keyframe | not a keyframe |
//! |---|---|---|
//! | H.264 | NAL 5 (IDR) | NAL 1..=4 |
//! | HEVC | NAL 16..=23 (IRAP) | NAL 0..=15 |
//! | VVC | NAL 7..=9 (IDR, CRA) | other VCL NAL 0..=11 |
//! | MPEG-1/2 video | 0xB3 sequence header | 0x00 picture |
//! | MPEG-4 part 2 | 0xB6 with I coding type | 0xB6 otherwise |
//! | CAVS | 0xB0 sequence, 0xB3 I picture | 0xB6 picture |
//! | VC-1 | 0x0F sequence, 0x0E entry point | 0x0D frame |
//!
//! Other video codecs are judged by random_access_indicator alone. The scan
//! keeps two bytes of state across calls, so start codes split between TS
//! packets are found; it never allocates.

use crate::ts::codec;
use crate::ts::packet::TsPacket;
use crate::ts::psi::EsInfo;

/// The start-code family of a video stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VideoKind {
    H264,
    Hevc,
    Vvc,
    Mpeg2,
    Mpeg4,
    Cavs,
    Vc1,
    /// Known to be video, but without a start-code rule here.
    Other,
}

impl VideoKind {
    /// The family of `es`, or `None` when it is not video.
    pub(crate) fn of(es: &EsInfo) -> Option<VideoKind> {
        let codec = es.codec?;
        if !crate::ts::codec::is_video(codec) {
            return None;
        }
        Some(match codec {
            "h264" => VideoKind::H264,
            "hevc" => VideoKind::Hevc,
            "vvc" => VideoKind::Vvc,
            "mpeg2video" => VideoKind::Mpeg2,
            "mpeg4" => VideoKind::Mpeg4,
            "cavs" => VideoKind::Cavs,
            "vc1" => VideoKind::Vc1,
            _ => VideoKind::Other,
        })
    }
}

/// What the bytes seen so far say about the access unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Key,
    NotKey,
    /// No picture or sequence start code yet.
    Undecided,
}

/// Scan state over the ES bytes of one PES packet.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyframeScan {
    kind: VideoKind,
    /// Zero bytes just seen (saturating at 2).
    zeros: u8,
    /// Bytes after a start code still to read: 0 none, 1 first, 2 second.
    after_code: u8,
    /// The first byte after the start code, when the rule needs two.
    first: u8,
}

impl KeyframeScan {
    /// A scan from the start of a PES payload.
    pub(crate) fn new(kind: VideoKind) -> KeyframeScan {
        KeyframeScan { kind, zeros: 0, after_code: 0, first: 0 }
    }

    /// Feeds the next ES bytes; the first settled verdict ends the scan.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Verdict {
        if self.kind == VideoKind::Other {
            return Verdict::NotKey;
        }
        for &b in data {
            match self.after_code {
                1 => {
                    self.after_code = 0;
                    match self.first_byte(b) {
                        Step::Done(v) => return v,
                        Step::NeedSecond => {
                            self.first = b;
                            self.after_code = 2;
                            continue;
                        }
                        Step::Next => {}
                    }
                }
                2 => {
                    self.after_code = 0;
                    if let Some(v) = self.second_byte(b) {
                        return v;
                    }
                }
                _ => {}
            }
            if b == 0 {
                self.zeros = (self.zeros + 1).min(2);
            } else {
                if b == 1 && self.zeros == 2 {
                    self.after_code = 1;
                }
                self.zeros = 0;
            }
        }
        Verdict::Undecided
    }

    fn first_byte(&self, b: u8) -> Step {
        let settled = |key: bool| Step::Done(if key { Verdict::Key } else { Verdict::NotKey });
        match self.kind {
            VideoKind::H264 => match b & 0x1F {
                5 => settled(true),
                1..=4 => settled(false),
                _ => Step::Next,
            },
            VideoKind::Hevc => match (b >> 1) & 0x3F {
                16..=23 => settled(true),
                0..=15 => settled(false),
                _ => Step::Next,
            },
            VideoKind::Vvc => Step::NeedSecond,
            VideoKind::Mpeg4 if b == 0xB6 => Step::NeedSecond,
            VideoKind::Mpeg2 => match b {
                0xB3 => settled(true),
                0x00 => settled(false),
                _ => Step::Next,
            },
            VideoKind::Cavs => match b {
                0xB0 | 0xB3 => settled(true),
                0xB6 => settled(false),
                _ => Step::Next,
            },
            VideoKind::Vc1 => match b {
                0x0F | 0x0E => settled(true),
                0x0D => settled(false),
                _ => Step::Next,
            },
            VideoKind::Mpeg4 | VideoKind::Other => Step::Next,
        }
    }

    fn second_byte(&self, b: u8) -> Option<Verdict> {
        let (key, picture) = match self.kind {
            // nal_unit_type is the top five bits of the second header byte.
            VideoKind::Vvc => ((7..=9).contains(&(b >> 3)), b >> 3 <= 11),
            // vop_coding_type 00 is an I-VOP (ISO/IEC 14496-2 §6.2.5).
            VideoKind::Mpeg4 if self.first == 0xB6 => (b >> 6 == 0, true),
            _ => (false, false),
        };
        picture.then_some(if key { Verdict::Key } else { Verdict::NotKey })
    }
}

/// What one byte after a start code tells.
enum Step {
    Done(Verdict),
    NeedSecond,
    Next,
}

/// The verdict on a video packet with payload_unit_start, and the scan to
/// continue in the PES's next packets: the random_access_indicator settles
/// it, else the start codes in the PES payload do. Shared by the output
/// entry gate and the failover splicer, so both judge keyframes alike.
pub(crate) fn first_verdict(pkt: &TsPacket<'_>, kind: VideoKind) -> (Verdict, KeyframeScan) {
    let mut scan = KeyframeScan::new(kind);
    if pkt.adaptation_field().is_some_and(|af| af.random_access()) {
        return (Verdict::Key, scan);
    }
    let verdict = match pkt.payload().and_then(codec::pes_payload) {
        Some(es) => scan.feed(es),
        None => Verdict::NotKey,
    };
    (verdict, scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(kind: VideoKind, parts: &[&[u8]]) -> Verdict {
        let mut s = KeyframeScan::new(kind);
        for p in parts {
            let v = s.feed(p);
            if v != Verdict::Undecided {
                return v;
            }
        }
        Verdict::Undecided
    }

    #[test]
    fn h264_idr_after_parameter_sets() {
        let au = [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x67, 0x42, 0, 0, 1, 0x68, 0xCE, 0, 0, 1, 0x65, 0x88];
        assert_eq!(scan(VideoKind::H264, &[&au]), Verdict::Key);
        let p = [0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x06, 0x05, 0, 0, 1, 0x41, 0x9A];
        assert_eq!(scan(VideoKind::H264, &[&p]), Verdict::NotKey);
        assert_eq!(scan(VideoKind::H264, &[&[0, 0, 0, 1, 0x09, 0xF0]]), Verdict::Undecided);
    }

    #[test]
    fn start_code_split_across_packets() {
        assert_eq!(scan(VideoKind::H264, &[&[0x09, 0xF0, 0], &[0], &[1], &[0x65]]), Verdict::Key);
        assert_eq!(scan(VideoKind::Vvc, &[&[0, 0, 1, 0x00], &[8 << 3]]), Verdict::Key);
    }

    #[test]
    fn other_families() {
        // HEVC: VPS (32) then IDR_W_RADL (19), or TRAIL_R (1).
        assert_eq!(scan(VideoKind::Hevc, &[&[0, 0, 1, 0x40, 1, 0, 0, 1, 0x26, 1]]), Verdict::Key);
        assert_eq!(scan(VideoKind::Hevc, &[&[0, 0, 1, 0x02, 1]]), Verdict::NotKey);
        assert_eq!(scan(VideoKind::Mpeg2, &[&[0, 0, 1, 0xB3, 0x14]]), Verdict::Key);
        assert_eq!(scan(VideoKind::Mpeg2, &[&[0, 0, 1, 0xB8, 0, 0, 0, 1, 0x00, 0x10]]), Verdict::NotKey);
        assert_eq!(scan(VideoKind::Mpeg4, &[&[0, 0, 1, 0xB6, 0x10]]), Verdict::Key);
        assert_eq!(scan(VideoKind::Mpeg4, &[&[0, 0, 1, 0xB6, 0x50]]), Verdict::NotKey);
        assert_eq!(scan(VideoKind::Vvc, &[&[0, 0, 1, 0x00, 1 << 3]]), Verdict::NotKey);
        assert_eq!(scan(VideoKind::Vc1, &[&[0, 0, 1, 0x0F]]), Verdict::Key);
        assert_eq!(scan(VideoKind::Other, &[&[0, 0, 1, 0x65]]), Verdict::NotKey);
    }
}
