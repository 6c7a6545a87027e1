//! stream_type and descriptors to the codec names ffprobe prints.
//!
//! The lookup order follows what ffmpeg's MPEG-TS demuxer does, so the two
//! agree: the ISO/IEC 13818-1 table 2-34 types first, then Blu-ray types when
//! the program carries an `HDMV` registration, then a stream's registration
//! descriptor (ISO/IEC 13818-1 §2.6.8), then ATSC/SCTE private types, then
//! DVB descriptors (ETSI EN 300 468 §6.2). A private stream that none of
//! these identify can be resolved from its first PES payload ([`sniff`]).

/// The name ffprobe uses when nothing identifies a stream.
pub const UNKNOWN: &str = "unknown";

/// The codec of a stream, from its PMT entry alone; `None` when the entry
/// does not say (a private stream to sniff, or a type ffprobe leaves open).
pub fn from_pmt(stream_type: u8, es_descriptors: &[u8], program_registration: Option<[u8; 4]>) -> Option<&'static str> {
    if let Some(name) = iso_type(stream_type) {
        return Some(name);
    }
    if program_registration == Some(*b"HDMV")
        && let Some(name) = hdmv_type(stream_type)
    {
        return Some(name);
    }
    let mut registration = None;
    let mut dvb = None;
    for (tag, body) in Descriptors::new(es_descriptors) {
        match tag {
            0x05 if body.len() >= 4 => registration = registration.or(registered(&body[..4])),
            0x56 => dvb = dvb.or(Some("dvb_teletext")),
            0x59 => dvb = dvb.or(Some("dvb_subtitle")),
            0x6A => dvb = dvb.or(Some("ac3")),
            0x7A => dvb = dvb.or(Some("eac3")),
            0x7B => dvb = dvb.or(Some("dts")),
            _ => {}
        }
    }
    registration.or_else(|| private_type(stream_type)).or(dvb)
}

/// ISO/IEC 13818-1 table 2-34 types that ffmpeg maps by type alone.
fn iso_type(stream_type: u8) -> Option<&'static str> {
    Some(match stream_type {
        0x01 | 0x02 => "mpeg2video",
        0x03 | 0x04 => "mp3",
        0x0F | 0x1C => "aac",
        0x10 => "mpeg4",
        0x11 => "aac_latm",
        0x1B | 0x20 => "h264",
        0x21 => "jpeg2000",
        0x24 => "hevc",
        0x33 => "vvc",
        0x42 => "cavs",
        0xD1 => "dirac",
        0xD2 => "avs2",
        0xD4 => "avs3",
        0xEA => "vc1",
        _ => return None,
    })
}

/// Blu-ray (HDMV) types.
fn hdmv_type(stream_type: u8) -> Option<&'static str> {
    Some(match stream_type {
        0x80 => "pcm_bluray",
        0x81 => "ac3",
        0x84 | 0xA1 => "eac3",
        0x82 | 0x85 | 0x86 | 0xA2 => "dts",
        0x83 => "truehd",
        0x90 => "hdmv_pgs_subtitle",
        0x92 => "hdmv_text_subtitle",
        _ => return None,
    })
}

/// Registration descriptor format identifiers (SMPTE RA).
fn registered(format: &[u8]) -> Option<&'static str> {
    Some(match format {
        b"AC-3" => "ac3",
        b"EAC3" => "eac3",
        b"HEVC" => "hevc",
        b"Opus" => "opus",
        b"KLVA" => "klv",
        b"BSSD" => "s302m",
        b"VC-1" => "vc1",
        b"drac" => "dirac",
        b"ID3 " => "timed_id3",
        b"DTS1" | b"DTS2" | b"DTS3" => "dts",
        _ => return None,
    })
}

/// ATSC and SCTE private types.
fn private_type(stream_type: u8) -> Option<&'static str> {
    Some(match stream_type {
        0x81 => "ac3",
        0x87 => "eac3",
        0x86 => "scte_35",
        0x8A => "dts",
        _ => return None,
    })
}

/// Whether a stream's first PES payload should settle its codec: unknown
/// private streams, and the families whose exact member ffprobe reads from
/// the frames (MPEG audio layer, AC-3 versus E-AC-3).
pub fn refined_by_content(codec: Option<&str>) -> bool {
    matches!(codec, None | Some("mp3" | "ac3"))
}

/// Whether ffprobe would call a stream of this codec a video stream.
pub fn is_video(codec: &str) -> bool {
    matches!(
        codec,
        "mpeg2video" | "mpeg4" | "h264" | "hevc" | "vvc" | "cavs" | "dirac" | "avs2" | "avs3" | "vc1" | "jpeg2000"
    )
}

/// Identifies an audio elementary stream from the first bytes of its first
/// PES payload, as ffprobe's content probe would for a private stream.
pub fn sniff(es: &[u8]) -> Option<&'static str> {
    let &[b0, b1, ..] = es else { return None };
    if b0 == 0x0B && b1 == 0x77 {
        let bsid = es.get(5)? >> 3;
        return Some(if bsid > 10 { "eac3" } else { "ac3" });
    }
    if b0 == 0xFF && b1 & 0xF6 == 0xF0 {
        return Some("aac");
    }
    if (u16::from(b0) << 3 | u16::from(b1) >> 5) == 0x2B7 {
        return Some("aac_latm");
    }
    if b0 == 0xFF && b1 & 0xE0 == 0xE0 {
        return match (b1 >> 1) & 0b11 {
            0b01 => Some("mp3"),
            0b10 => Some("mp2"),
            0b11 => Some("mp1"),
            _ => None,
        };
    }
    None
}

/// The elementary-stream bytes of a PES packet that starts in `payload`.
pub fn pes_payload(payload: &[u8]) -> Option<&[u8]> {
    let (prefix, rest) = payload.split_first_chunk::<6>()?;
    if prefix[..3] != [0, 0, 1] {
        return None;
    }
    // Streams without the optional PES header (ISO/IEC 13818-1 §2.4.3.7).
    if matches!(prefix[3], 0xBC | 0xBE | 0xBF | 0xF0 | 0xF1 | 0xF2 | 0xF8 | 0xFF) {
        return Some(rest);
    }
    let header_len = usize::from(*rest.get(2)?);
    rest.get(3 + header_len..)
}

/// Iterator over `(tag, body)` of a descriptor loop; stops at a truncated one.
#[derive(Clone, Debug)]
pub struct Descriptors<'a> {
    rest: &'a [u8],
}

impl<'a> Descriptors<'a> {
    /// Walks the descriptors in `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Descriptors { rest: bytes }
    }
}

impl<'a> Iterator for Descriptors<'a> {
    type Item = (u8, &'a [u8]);
    fn next(&mut self) -> Option<Self::Item> {
        let (&[tag, len], rest) = self.rest.split_first_chunk::<2>()?;
        let Some(body) = rest.get(..usize::from(len)) else {
            self.rest = &[];
            return None;
        };
        self.rest = &rest[usize::from(len)..];
        Some((tag, body))
    }
}

/// The ISO 639 language of a stream, from its descriptor 0x0A.
pub fn language(es_descriptors: &[u8]) -> Option<String> {
    Descriptors::new(es_descriptors)
        .find(|(tag, body)| *tag == 0x0A && body.len() >= 3)
        .and_then(|(_, body)| std::str::from_utf8(&body[..3]).ok())
        .filter(|s| s.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_types_win() {
        assert_eq!(from_pmt(0x1B, &[], None), Some("h264"));
        assert_eq!(from_pmt(0x24, &[0x05, 4, b'H', b'E', b'V', b'C'], None), Some("hevc"));
        assert_eq!(from_pmt(0x0F, &[], None), Some("aac"));
    }

    #[test]
    fn private_streams_by_descriptor() {
        assert_eq!(from_pmt(0x06, &[0x6A, 1, 0], None), Some("ac3"));
        assert_eq!(from_pmt(0x06, &[0x7A, 1, 0], None), Some("eac3"));
        assert_eq!(from_pmt(0x06, &[0x59, 8, 0, 0, 0, 0, 0, 0, 0, 0], None), Some("dvb_subtitle"));
        assert_eq!(from_pmt(0x06, &[0x56, 5, b'e', b'n', b'g', 0, 0], None), Some("dvb_teletext"));
        assert_eq!(from_pmt(0x06, &[0x05, 4, b'O', b'p', b'u', b's', 0x7F, 2, 0x80, 2], None), Some("opus"));
        assert_eq!(from_pmt(0x86, &[], None), Some("scte_35"));
        assert_eq!(from_pmt(0x81, &[0x05, 4, b'A', b'C', b'-', b'3'], None), Some("ac3"));
        assert_eq!(from_pmt(0x06, &[], None), None);
        assert_eq!(from_pmt(0x90, &[], Some(*b"HDMV")), Some("hdmv_pgs_subtitle"));
        assert_eq!(from_pmt(0x84, &[], Some(*b"HDMV")), Some("eac3"));
        assert_eq!(from_pmt(0x81, &[], Some(*b"HDMV")), Some("ac3"));
    }

    #[test]
    fn sniffs_audio_syncwords() {
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80]), Some("aac"));
        assert_eq!(sniff(&[0x0B, 0x77, 0, 0, 0, 0x40]), Some("ac3"));
        assert_eq!(sniff(&[0x0B, 0x77, 0, 0, 0, 0x80]), Some("eac3"));
        assert_eq!(sniff(&[0xFF, 0xFD]), Some("mp2"));
        assert_eq!(sniff(&[0xFF, 0xFB]), Some("mp3"));
        assert_eq!(sniff(&[0x56, 0xE0]), Some("aac_latm"));
        assert_eq!(sniff(&[0, 0, 0, 1]), None);
    }

    #[test]
    fn truncated_descriptor_stops_the_walk() {
        let d: Vec<_> = Descriptors::new(&[0x0A, 4, b'e', b'n', b'g', 0, 0x05, 9, 1]).collect();
        assert_eq!(d, vec![(0x0A, &b"eng\0"[..])]);
    }
}
