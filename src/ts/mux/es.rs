//! What the PMT and the PES headers say about each codec, as ffmpeg's
//! MPEG-TS muxer (libavformat/mpegtsenc.c, default flags) writes it, so that
//! anything that reads ffmpeg's output reads ours.
//!
//! AC-3 and E-AC-3 follow ffmpeg's default ATSC style (stream_type 0x81 /
//! 0x87 plus an `AC-3` / `EAC3` registration descriptor) rather than DVB's
//! private stream 0x06 with an AC-3 descriptor: the stream_type alone names
//! the codec for ffmpeg, ATSC receivers and our own `ts::codec`, and the
//! registration descriptor covers readers that look only at descriptors.

use crate::ts::av::Codec;

/// PES stream_id for video.
const VIDEO_STREAM_ID: u8 = 0xE0;
/// PES stream_id for MPEG audio and AAC.
const AUDIO_STREAM_ID: u8 = 0xC0;
/// PES stream_id private_stream_1, for AC-3, E-AC-3 and Opus.
const PRIVATE_STREAM_1: u8 = 0xBD;

/// Longest ES descriptor loop any codec gets here.
pub(super) const MAX_DESCRIPTORS: usize = 10;

/// A track's PMT entry and PES stream_id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct EsKind {
    /// PMT stream_type.
    pub stream_type: u8,
    /// PES stream_id.
    pub stream_id: u8,
    descriptors: [u8; MAX_DESCRIPTORS],
    descriptors_len: u8,
}

impl EsKind {
    /// The entry for `codec`; `first` is the track's first payload, which
    /// settles what the codec alone does not (MPEG-1 versus MPEG-2 audio,
    /// Opus channel count).
    pub(super) fn new(codec: Codec, first: &[u8]) -> EsKind {
        let (stream_type, stream_id) = match codec {
            Codec::H264 => (0x1B, VIDEO_STREAM_ID),
            Codec::H265 => (0x24, VIDEO_STREAM_ID),
            Codec::Aac => (0x0F, AUDIO_STREAM_ID),
            Codec::MpegAudio => (mpeg_audio_type(first), AUDIO_STREAM_ID),
            Codec::Ac3 => (0x81, PRIVATE_STREAM_1),
            Codec::Eac3 => (0x87, PRIVATE_STREAM_1),
            Codec::Opus => (0x06, PRIVATE_STREAM_1),
        };
        let mut kind = EsKind { stream_type, stream_id, descriptors: [0; MAX_DESCRIPTORS], descriptors_len: 0 };
        match codec {
            Codec::H265 => kind.registration(b"HEVC"),
            Codec::Ac3 => kind.registration(b"AC-3"),
            Codec::Eac3 => kind.registration(b"EAC3"),
            Codec::Opus => {
                kind.registration(b"Opus");
                // DVB extension descriptor (tag 0x7F), extension tag 0x80
                // (Opus, ETSI TS 102 366 annex), channel_config_code.
                kind.push(&[0x7F, 2, 0x80, opus_channels(first).unwrap_or(2)]);
            }
            Codec::H264 | Codec::Aac | Codec::MpegAudio => {}
        }
        kind
    }

    /// The ES descriptor loop.
    pub(super) fn descriptors(&self) -> &[u8] {
        &self.descriptors[..usize::from(self.descriptors_len)]
    }

    fn registration(&mut self, format: &[u8; 4]) {
        self.push(&[0x05, 4]);
        self.push(format);
    }

    fn push(&mut self, bytes: &[u8]) {
        let at = usize::from(self.descriptors_len);
        // Fixed tables above never exceed the array; stay silent rather
        // than panic if one ever did.
        if let Some(dst) = self.descriptors.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.descriptors_len += bytes.len() as u8;
        }
    }
}

/// 0x03 (ISO/IEC 11172-3) for MPEG-1 audio, 0x04 (ISO/IEC 13818-3) for the
/// MPEG-2 / 2.5 low sample rates, read from the first frame header the way
/// ffmpeg picks by sample rate (< 32 kHz is MPEG-2).
fn mpeg_audio_type(first: &[u8]) -> u8 {
    match first {
        [0xFF, b, ..] if b & 0xE0 == 0xE0 && (b >> 3) & 3 != 3 => 0x04,
        _ => 0x03,
    }
}

/// Channel count (1 or 2) from the first Opus access unit: skips the
/// Opus-in-TS control header, then reads the TOC byte's stereo flag.
fn opus_channels(au: &[u8]) -> Option<u8> {
    let (&[0x7F, flags], rest) = au.split_first_chunk::<2>()? else {
        return None;
    };
    if flags & 0xE0 != 0xE0 {
        return None;
    }
    // au_size: a run of 0xFF bytes and one final byte.
    let mut i = rest.iter().position(|&b| b != 0xFF)? + 1;
    if flags & 0x10 != 0 {
        i += 2; // start_trim
    }
    if flags & 0x08 != 0 {
        i += 2; // end_trim
    }
    if flags & 0x04 != 0 {
        i += 1 + usize::from(*rest.get(i)?); // control_extension
    }
    let toc = rest.get(i)?;
    Some(if toc & 0x04 != 0 { 2 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ffmpeg_pmt_entries() {
        // Descriptor bytes as ffmpeg 5.1 writes them (dumped from its PMTs).
        let ac3 = EsKind::new(Codec::Ac3, &[]);
        assert_eq!((ac3.stream_type, ac3.descriptors()), (0x81, &b"\x05\x04AC-3"[..]));
        let eac3 = EsKind::new(Codec::Eac3, &[]);
        assert_eq!((eac3.stream_type, eac3.descriptors()), (0x87, &b"\x05\x04EAC3"[..]));
        let hevc = EsKind::new(Codec::H265, &[]);
        assert_eq!((hevc.stream_type, hevc.descriptors()), (0x24, &b"\x05\x04HEVC"[..]));
        // Mono Opus: control header 7F E0, au_size 0x10, TOC 0xF8 (mono).
        let opus = EsKind::new(Codec::Opus, &[0x7F, 0xE0, 0x10, 0xF8]);
        assert_eq!((opus.stream_type, opus.descriptors()), (0x06, &b"\x05\x04Opus\x7f\x02\x80\x01"[..]));
        let stereo = EsKind::new(Codec::Opus, &[0x7F, 0xF0, 0xFF, 0x03, 0, 0, 0xFC]);
        assert_eq!(stereo.descriptors()[9], 2);
        assert_eq!(EsKind::new(Codec::H264, &[]).descriptors(), b"");
    }

    #[test]
    fn mpeg_audio_version() {
        assert_eq!(EsKind::new(Codec::MpegAudio, &[0xFF, 0xFD, 0x90]).stream_type, 0x03);
        assert_eq!(EsKind::new(Codec::MpegAudio, &[0xFF, 0xF5, 0x90]).stream_type, 0x04);
        assert_eq!(EsKind::new(Codec::MpegAudio, &[]).stream_type, 0x03);
    }
}
