//! Access units: what the demuxer produces and the muxer consumes.
//!
//! An [`AvPacket`] is one PES worth of one elementary stream: a video access
//! unit, or the audio frames a muxer put in one PES. Timestamps are 90 kHz
//! ticks on an unwrapped timeline (the demuxer carries the 33-bit wrap into
//! the high bits), so consumers such as the mixer can compare and shift them
//! without caring about the wrap; the muxer writes them modulo 2^33.

use bytes::Bytes;

/// Ticks per second of PTS, DTS and PCR base.
pub const TIMESCALE: i64 = 90_000;

/// The elementary stream formats uringest demuxes and muxes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// H.264 / AVC, Annex B byte stream.
    H264,
    /// H.265 / HEVC, Annex B byte stream.
    H265,
    /// AAC in ADTS frames.
    Aac,
    /// MPEG-1/2 audio (layers I-III).
    MpegAudio,
    /// AC-3 (Dolby Digital).
    Ac3,
    /// E-AC-3 (Dolby Digital Plus).
    Eac3,
    /// Opus, in the ETSI TS 102 366 style access units of Opus-in-TS.
    Opus,
}

impl Codec {
    /// Whether this is a video format.
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265)
    }

    /// Whether this is an audio format.
    pub fn is_audio(self) -> bool {
        !self.is_video()
    }

    /// The name ffprobe prints for this codec (`codec_name`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "hevc",
            Codec::Aac => "aac",
            Codec::MpegAudio => "mp2",
            Codec::Ac3 => "ac3",
            Codec::Eac3 => "eac3",
            Codec::Opus => "opus",
        }
    }
}

/// One access unit of one elementary stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvPacket {
    /// Which elementary stream of its source this belongs to: the source's
    /// PID for demuxed streams. A muxer keeps tracks apart by it and maps
    /// each to a PID of its own.
    pub track: u16,
    /// The format of `payload`.
    pub codec: Codec,
    /// The elementary stream bytes (PES payload, no PES header).
    pub payload: Bytes,
    /// Presentation time, 90 kHz, unwrapped.
    pub pts: i64,
    /// Decode time, 90 kHz, unwrapped; equal to `pts` when the PES had none.
    pub dts: i64,
    /// A random access point: an IDR / IRAP picture for video; every audio
    /// packet is one.
    pub keyframe: bool,
    /// The source jumped before this packet (a CC gap, a splice, a
    /// discontinuity_indicator); timestamps need not follow on.
    pub discontinuity: bool,
}
