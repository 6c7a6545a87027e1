//! Audio packets cut into single frames, each with its own PTS.
//!
//! Muxers such as ffmpeg's put a third of a second of audio in one PES;
//! the demuxer hands that out as one [`AvPacket`]. A re-muxer (the mixer)
//! cuts it into frames so that its output has audio every frame: a reader
//! joining at a video keyframe then gets audio from within one frame of it,
//! not from the next big PES. Frames are zero-copy slices of the payload.
//!
//! Frame lengths and durations come from each frame's header: ADTS
//! (ISO/IEC 13818-7 §6.2), MPEG audio (ISO/IEC 11172-3 §2.4.2.3), AC-3
//! (ATSC A/52 §5.4.1, table 5.18) and E-AC-3 (A/52 Annex E). Opus access
//! units in TS carry their own control headers and are left whole, as is
//! any packet whose frames do not parse end to end (a damaged or
//! truncated frame): it goes out as it came.

use crate::ts::av::{AvPacket, Codec, TIMESCALE};

/// Most frames one packet is cut into; a longer run of tiny frames is left
/// whole (bounds the work per packet).
pub const MAX_FRAMES: usize = 256;

/// One frame's length in bytes and duration in samples at `rate` Hz.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Frame {
    len: usize,
    samples: u32,
    rate: u32,
}

/// `pkt` cut into its frames, appended to `out`; returns how many packets
/// were appended (1 when it is left whole).
pub fn split_frames(pkt: AvPacket, out: &mut Vec<AvPacket>) -> usize {
    let parse: fn(&[u8]) -> Option<Frame> = match pkt.codec {
        Codec::Aac => adts,
        Codec::MpegAudio => mpeg_audio,
        Codec::Ac3 | Codec::Eac3 => ac3,
        Codec::H264 | Codec::H265 | Codec::Opus => {
            out.push(pkt);
            return 1;
        }
    };
    let mut frames: [Frame; MAX_FRAMES] = [Frame { len: 0, samples: 0, rate: 1 }; MAX_FRAMES];
    let mut count = 0;
    let mut at = 0;
    while at < pkt.payload.len() {
        let Some(frame) = (count < MAX_FRAMES).then(|| parse(&pkt.payload[at..])).flatten() else {
            out.push(pkt);
            return 1;
        };
        if frame.len == 0 || frame.len > pkt.payload.len() - at {
            out.push(pkt);
            return 1;
        }
        frames[count] = frame;
        count += 1;
        at += frame.len;
    }
    if count <= 1 {
        out.push(pkt);
        return 1;
    }
    let (mut start, mut samples) = (0usize, 0u64);
    for frame in &frames[..count] {
        let offset = i64::try_from(samples * TIMESCALE as u64 / u64::from(frame.rate)).unwrap_or(i64::MAX);
        out.push(AvPacket {
            track: pkt.track,
            codec: pkt.codec,
            payload: pkt.payload.slice(start..start + frame.len),
            pts: pkt.pts.saturating_add(offset),
            dts: pkt.dts.saturating_add(offset),
            keyframe: pkt.keyframe,
            discontinuity: pkt.discontinuity && start == 0,
        });
        start += frame.len;
        samples += u64::from(frame.samples);
    }
    count
}

/// An ADTS frame header.
fn adts(b: &[u8]) -> Option<Frame> {
    if b.len() < 7 || b[0] != 0xFF || b[1] & 0xF6 != 0xF0 {
        return None;
    }
    const RATES: [u32; 13] = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
    let rate = *RATES.get(usize::from(b[2] >> 2 & 0x0F))?;
    let len = (usize::from(b[3] & 0x03) << 11) | (usize::from(b[4]) << 3) | usize::from(b[5] >> 5);
    let blocks = u32::from(b[6] & 0x03) + 1;
    (len >= 7).then_some(Frame { len, samples: 1024 * blocks, rate })
}

/// An MPEG-1/2/2.5 audio frame header (layers I-III).
fn mpeg_audio(b: &[u8]) -> Option<Frame> {
    if b.len() < 4 || b[0] != 0xFF || b[1] & 0xE0 != 0xE0 {
        return None;
    }
    let version = b[1] >> 3 & 3; // 0: 2.5, 2: 2, 3: 1
    let layer = b[1] >> 1 & 3; // 3: I, 2: II, 1: III
    let bitrate_index = usize::from(b[2] >> 4);
    let rate_index = usize::from(b[2] >> 2 & 3);
    if version == 1 || layer == 0 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    const KBPS_V1: [[u32; 14]; 3] = [
        [32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448],
        [32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384],
        [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320],
    ];
    const KBPS_V2: [[u32; 14]; 2] = [
        [32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256],
        [8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ];
    let layer_row = usize::from(3 - layer); // 0: I, 1: II, 2: III
    let kbps = if version == 3 {
        KBPS_V1[layer_row][bitrate_index - 1]
    } else {
        KBPS_V2[usize::from(layer_row != 0)][bitrate_index - 1]
    };
    let base: u32 = [44100, 48000, 32000][rate_index];
    let rate = match version {
        3 => base,
        2 => base / 2,
        _ => base / 4,
    };
    let padding = u32::from(b[2] >> 1 & 1);
    let (len, samples) = match layer_row {
        0 => ((12 * kbps * 1000 / rate + padding) * 4, 384),
        1 => (144 * kbps * 1000 / rate + padding, 1152),
        _ if version == 3 => (144 * kbps * 1000 / rate + padding, 1152),
        _ => (72 * kbps * 1000 / rate + padding, 576),
    };
    Some(Frame { len: usize::try_from(len).ok()?, samples, rate })
}

/// An AC-3 or E-AC-3 syncframe header.
fn ac3(b: &[u8]) -> Option<Frame> {
    if b.len() < 6 || b[0] != 0x0B || b[1] != 0x77 {
        return None;
    }
    let bsid = b[5] >> 3;
    if bsid > 10 {
        // E-AC-3: frmsiz in words after strmtyp/substreamid.
        let words = (usize::from(b[2] & 0x07) << 8 | usize::from(b[3])) + 1;
        let fscod = b[4] >> 6;
        let (rate, blocks) = if fscod == 3 {
            ([24000, 22050, 16000, 0][usize::from(b[4] >> 4 & 3)], 6)
        } else {
            ([48000, 44100, 32000][usize::from(fscod)], [1, 2, 3, 6][usize::from(b[4] >> 4 & 3)])
        };
        return (rate > 0).then_some(Frame { len: words * 2, samples: 256 * blocks, rate });
    }
    const KBPS: [u32; 19] = [32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 576, 640];
    let fscod = b[4] >> 6;
    let frmsizecod = usize::from(b[4] & 0x3F);
    let kbps = *KBPS.get(frmsizecod / 2)?;
    let words = match fscod {
        0 => kbps * 2,
        1 => kbps * 320 / 147 + u32::from(frmsizecod & 1 == 1),
        2 => kbps * 3,
        _ => return None,
    };
    let rate = [48000, 44100, 32000][usize::from(fscod)];
    Some(Frame { len: usize::try_from(words * 2).ok()?, samples: 1536, rate })
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn packet(codec: Codec, payload: Vec<u8>) -> AvPacket {
        AvPacket {
            track: 0x101,
            codec,
            payload: Bytes::from(payload),
            pts: 900_000,
            dts: 900_000,
            keyframe: true,
            discontinuity: true,
        }
    }

    /// An ADTS frame of `len` bytes at 48 kHz.
    fn adts_frame(len: usize) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[..7].copy_from_slice(&[0xFF, 0xF1, 0x4C, 0x80, 0, 0, 0xFC]);
        f[3] |= (len >> 11) as u8 & 3;
        f[4] = (len >> 3) as u8;
        f[5] = ((len & 7) << 5) as u8 | 0x1F;
        f
    }

    #[test]
    fn adts_frames_come_out_one_by_one_with_their_timestamps() {
        let payload = [adts_frame(200), adts_frame(180), adts_frame(210)].concat();
        let mut out = Vec::new();
        assert_eq!(split_frames(packet(Codec::Aac, payload.clone()), &mut out), 3);
        let lens: Vec<usize> = out.iter().map(|p| p.payload.len()).collect();
        assert_eq!(lens, [200, 180, 210]);
        let pts: Vec<i64> = out.iter().map(|p| p.pts).collect();
        // 1024 samples at 48 kHz: 1920 ticks.
        assert_eq!(pts, [900_000, 901_920, 903_840]);
        assert_eq!(out.iter().map(|p| p.discontinuity).collect::<Vec<_>>(), [true, false, false]);
        assert_eq!(out.iter().map(|p| &p.payload[..]).collect::<Vec<_>>().concat(), payload);
    }

    #[test]
    fn damaged_or_unsplittable_packets_go_out_whole() {
        let mut out = Vec::new();
        let mut cut = [adts_frame(200), adts_frame(180)].concat();
        cut.truncate(300);
        assert_eq!(split_frames(packet(Codec::Aac, cut), &mut out), 1);
        assert_eq!(split_frames(packet(Codec::Aac, vec![0x12; 50]), &mut out), 1);
        assert_eq!(split_frames(packet(Codec::Opus, vec![0x7F, 0xE0, 1, 2]), &mut out), 1);
        assert_eq!(split_frames(packet(Codec::H264, vec![0, 0, 1, 0x65]), &mut out), 1);
        assert_eq!(out.len(), 4);
    }

    #[test]
    fn header_lengths_follow_the_standards() {
        // MPEG-1 layer II, 128 kbit/s, 48 kHz: 144 * 128000 / 48000 = 384.
        assert_eq!(mpeg_audio(&[0xFF, 0xFD, 0x84, 0x00]), Some(Frame { len: 384, samples: 1152, rate: 48000 }));
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, padded: 417 + 1.
        assert_eq!(mpeg_audio(&[0xFF, 0xFB, 0x92, 0x00]), Some(Frame { len: 418, samples: 1152, rate: 44100 }));
        // AC-3, 48 kHz, 192 kbit/s (frmsizecod 20): 384 words.
        assert_eq!(ac3(&[0x0B, 0x77, 0, 0, 0x14, 0x40]), Some(Frame { len: 768, samples: 1536, rate: 48000 }));
        // AC-3, 44.1 kHz, 32 kbit/s, odd code: 69 + 1 words.
        assert_eq!(ac3(&[0x0B, 0x77, 0, 0, 0x41, 0x40]), Some(Frame { len: 140, samples: 1536, rate: 44100 }));
        // E-AC-3 (bsid 16), frmsiz 511, 48 kHz, 6 blocks.
        assert_eq!(ac3(&[0x0B, 0x77, 0x01, 0xFF, 0x30, 0x80]), Some(Frame { len: 1024, samples: 1536, rate: 48000 }));
        assert_eq!(
            adts(&[0xFF, 0xF1, 0x50, 0x80, 0x2E, 0x7F, 0xFC]),
            Some(Frame { len: 371, samples: 1024, rate: 44100 })
        );
    }
}
