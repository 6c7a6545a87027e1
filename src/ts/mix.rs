//! The timeline of a `mixer://`: video packets of one stream and audio
//! packets of another, each on its own clock, put on one output clock.
//!
//! The two upstreams are live (paced in real time), so what arrives at the
//! same moment belongs together. The mix starts at the first video
//! keyframe: its PTS becomes [`ORIGIN`], and its arrival time the origin's
//! wall time. The first audio packet after that is placed at `ORIGIN` plus
//! the wall time elapsed since (by its last frame, when it comes as a run
//! of frames: see [`Mix::audio_frames`]); audio placed before `ORIGIN` is
//! dropped, so both start at `ORIGIN`, to within an audio frame. From then on each source keeps its own offset, so its
//! packets keep their spacing exactly; a source whose timestamps jump (a
//! discontinuity, or more than [`MAX_JUMP`] between packets) is re-anchored
//! to follow on from its last packet, so the output timeline never jumps.
//!
//! Packets of the wrong kind (audio from the video stream, video from the
//! audio stream), of a second track of the right kind, and from before the
//! start are dropped and counted. Sans-IO: the caller passes the time.

use std::time::Duration;

use crate::ts::av::{AvPacket, TIMESCALE};

/// The output PTS of the first video keyframe: ten seconds, leaving room
/// below it for decode times of reordered pictures and for early audio.
pub const ORIGIN: i64 = 10 * TIMESCALE;
/// The output track of the video.
pub const VIDEO_TRACK: u16 = 0x100;
/// The output track of the audio.
pub const AUDIO_TRACK: u16 = 0x101;
/// A timestamp step larger than this (ten seconds) within one source is a
/// jump, handled as a discontinuity.
pub const MAX_JUMP: i64 = 10 * TIMESCALE;
/// The step assumed after a jump when a source has shown none yet: one
/// frame at 25 fps.
const DEFAULT_STEP: i64 = TIMESCALE / 25;

/// What the mix dropped or repaired.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MixCounters {
    /// Audio from the video stream, or video from the audio stream.
    pub wrong_kind: u64,
    /// Packets of a second video (or audio) track.
    pub extra_tracks: u64,
    /// Packets before the first video keyframe.
    pub before_start: u64,
    /// Times a source was re-anchored after a jump.
    pub realigned: u64,
}

impl MixCounters {
    /// Packets dropped, for any reason.
    pub fn dropped(&self) -> u64 {
        self.wrong_kind + self.extra_tracks + self.before_start
    }

    /// These counters plus the growth from `before` to `now` (one open's
    /// counts added to those of earlier opens).
    pub fn add_growth(&mut self, before: MixCounters, now: MixCounters) {
        self.wrong_kind += now.wrong_kind.saturating_sub(before.wrong_kind);
        self.extra_tracks += now.extra_tracks.saturating_sub(before.extra_tracks);
        self.before_start += now.before_start.saturating_sub(before.before_start);
        self.realigned += now.realigned.saturating_sub(before.realigned);
    }
}

/// One source's mapping onto the output clock.
#[derive(Debug, Default)]
struct Source {
    track: Option<u16>,
    /// Output timestamp minus input timestamp.
    offset: Option<i64>,
    last_dts_in: i64,
    last_dts_out: i64,
    last_step: i64,
}

impl Source {
    /// Maps `pkt` (already known to be this source's track) onto the
    /// output clock; `anchor` gives the output PTS of a first packet.
    fn place(&mut self, mut pkt: AvPacket, anchor: impl FnOnce() -> i64, counters: &mut MixCounters) -> AvPacket {
        let offset = match self.offset {
            None => anchor().saturating_sub(pkt.pts),
            Some(offset) => {
                let step = pkt.dts.saturating_sub(self.last_dts_in);
                if pkt.discontinuity || !(-MAX_JUMP..=MAX_JUMP).contains(&step) {
                    counters.realigned += 1;
                    let step = if self.last_step > 0 { self.last_step } else { DEFAULT_STEP };
                    self.last_dts_out.saturating_add(step).saturating_sub(pkt.dts)
                } else {
                    if step > 0 {
                        self.last_step = step;
                    }
                    offset
                }
            }
        };
        self.offset = Some(offset);
        self.last_dts_in = pkt.dts;
        pkt.pts = pkt.pts.saturating_add(offset);
        pkt.dts = pkt.dts.saturating_add(offset);
        self.last_dts_out = pkt.dts;
        // The output timeline is continuous by construction.
        pkt.discontinuity = false;
        pkt
    }

    /// Whether `pkt` is of this source's track (the first one seen).
    fn takes(&mut self, pkt: &AvPacket, counters: &mut MixCounters) -> bool {
        match self.track {
            Some(track) if track != pkt.track => {
                counters.extra_tracks += 1;
                false
            }
            _ => true,
        }
    }
}

/// The mix's state.
#[derive(Debug, Default)]
pub struct Mix {
    video: Source,
    audio: Source,
    /// The first keyframe's arrival time.
    origin: Option<Duration>,
    counters: MixCounters,
}

impl Mix {
    /// A mix that has seen nothing yet.
    pub fn new() -> Mix {
        Mix::default()
    }

    /// What was dropped or repaired so far.
    pub fn counters(&self) -> MixCounters {
        self.counters
    }

    /// Whether the mix has started (a video keyframe came).
    pub fn started(&self) -> bool {
        self.origin.is_some()
    }

    /// A packet from the video stream, arrived at `now`: the packet to
    /// mux, or `None` when it is dropped.
    pub fn video(&mut self, pkt: AvPacket, now: Duration) -> Option<AvPacket> {
        if !pkt.codec.is_video() {
            self.counters.wrong_kind += 1;
            return None;
        }
        if !self.video.takes(&pkt, &mut self.counters) {
            return None;
        }
        if self.origin.is_none() {
            if !pkt.keyframe {
                self.counters.before_start += 1;
                return None;
            }
            self.origin = Some(now);
            self.video.track = Some(pkt.track);
        }
        let mut out = self.video.place(pkt, || ORIGIN, &mut self.counters);
        out.track = VIDEO_TRACK;
        Some(out)
    }

    /// A packet from the audio stream, arrived at `now`: the packet to
    /// mux, or `None` when it is dropped.
    pub fn audio(&mut self, pkt: AvPacket, now: Duration) -> Option<AvPacket> {
        self.audio_spanning(pkt, now, 0)
    }

    /// The frames one audio packet was cut into, arrived together at
    /// `now`, appended to `out` as placed. The first packet of the audio
    /// anchors the run by its last frame: a muxer sends a PES once its last
    /// frame is in, so that frame, not the first, is the one on time
    /// (anchoring by the first put a third of a second of ffmpeg-muxed AAC
    /// that much late).
    pub fn audio_frames(&mut self, frames: &mut Vec<AvPacket>, now: Duration, out: &mut Vec<AvPacket>) {
        let first = frames.first().map_or(0, |f| f.pts);
        let span = frames.last().map_or(0, |f| f.pts.saturating_sub(first));
        for frame in frames.drain(..) {
            out.extend(self.audio_spanning(frame, now, span));
        }
    }

    /// [`Mix::audio`], anchoring (when this is the audio's first packet)
    /// `span` ticks before the arrival.
    fn audio_spanning(&mut self, pkt: AvPacket, now: Duration, span: i64) -> Option<AvPacket> {
        if !pkt.codec.is_audio() {
            self.counters.wrong_kind += 1;
            return None;
        }
        if !self.audio.takes(&pkt, &mut self.counters) {
            return None;
        }
        let Some(origin) = self.origin else {
            self.counters.before_start += 1;
            return None;
        };
        self.audio.track = Some(pkt.track);
        let elapsed = now.saturating_sub(origin);
        let ticks = i64::try_from(elapsed.as_micros().saturating_mul(9) / 100).unwrap_or(i64::MAX);
        let anchor = ORIGIN.saturating_add(ticks).saturating_sub(span.max(0));
        let mut out = self.audio.place(pkt, || anchor, &mut self.counters);
        if out.pts < ORIGIN {
            // Sound from before the first picture: the mix starts with it.
            self.counters.before_start += 1;
            return None;
        }
        out.track = AUDIO_TRACK;
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ts::av::Codec;

    fn pkt(track: u16, codec: Codec, dts: i64, keyframe: bool) -> AvPacket {
        AvPacket {
            track,
            codec,
            payload: Bytes::from_static(b"x"),
            pts: dts.saturating_add(3600),
            dts,
            keyframe,
            discontinuity: false,
        }
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn starts_at_the_first_keyframe_and_aligns_audio_by_arrival() {
        let mut mix = Mix::new();
        assert_eq!(mix.audio(pkt(0x101, Codec::Aac, 500, true), MS(0)), None, "no audio before the video starts");
        assert_eq!(mix.video(pkt(0x100, Codec::H264, 1_000_000, false), MS(0)), None, "not a keyframe");
        assert_eq!(mix.video(pkt(0x100, Codec::Aac, 1_000_000, true), MS(0)), None, "audio from the video stream");
        let v = mix.video(pkt(0x100, Codec::H264, 1_003_600, true), MS(100)).unwrap();
        assert_eq!((v.track, v.pts, v.dts), (VIDEO_TRACK, ORIGIN, ORIGIN - 3600));
        // Audio arriving 40 ms later lands 40 ms (3600 ticks) after the origin.
        let a = mix.audio(pkt(0x102, Codec::Aac, 7_000, true), MS(140)).unwrap();
        assert_eq!((a.track, a.pts), (AUDIO_TRACK, ORIGIN + 3600));
        // Later packets keep their own spacing, whatever their arrival.
        let a2 = mix.audio(pkt(0x102, Codec::Aac, 8_920, true), MS(500)).unwrap();
        assert_eq!(a2.pts - a.pts, 1_920);
        let v2 = mix.video(pkt(0x100, Codec::H264, 1_007_200, false), MS(900)).unwrap();
        assert_eq!(v2.dts - v.dts, 3_600);
        assert_eq!(mix.audio(pkt(0x100, Codec::H264, 9_000, true), MS(900)), None, "video from the audio stream");
        assert_eq!(mix.audio(pkt(0x103, Codec::Aac, 9_000, true), MS(900)), None, "a second audio track");
        let c = mix.counters();
        assert_eq!((c.before_start, c.wrong_kind, c.extra_tracks, c.realigned), (2, 2, 1, 0));
    }

    #[test]
    fn a_run_of_frames_is_anchored_by_its_last_frame() {
        let mut mix = Mix::new();
        mix.video(pkt(0x100, Codec::H264, 0, true), MS(0)).unwrap();
        // Three AAC frames (1920 ticks each) arrive together 100 ms later:
        // the last one is on time, so the first lands 3840 ticks earlier.
        let mut frames: Vec<AvPacket> = (0..3).map(|n| pkt(0x101, Codec::Aac, 5_000 + n * 1_920, true)).collect();
        let mut out = Vec::new();
        mix.audio_frames(&mut frames, MS(100), &mut out);
        let pts: Vec<i64> = out.iter().map(|p| p.pts).collect();
        assert_eq!(pts, [ORIGIN + 9_000 - 3_840, ORIGIN + 9_000 - 1_920, ORIGIN + 9_000]);
        // A run reaching back before the first picture is cut at it.
        let mut late_start = Mix::new();
        late_start.video(pkt(0x100, Codec::H264, 0, true), MS(0)).unwrap();
        let mut frames: Vec<AvPacket> = (0..3).map(|n| pkt(0x101, Codec::Aac, n * 1_920, true)).collect();
        let mut cut = Vec::new();
        late_start.audio_frames(&mut frames, MS(30), &mut cut);
        assert_eq!(cut.iter().map(|p| p.pts).collect::<Vec<_>>(), [ORIGIN + 2_700 - 1_920, ORIGIN + 2_700]);
        assert_eq!(late_start.counters().before_start, 1);
        assert!(frames.is_empty());
        // Later runs keep the spacing, whatever their arrival.
        let mut more = vec![pkt(0x101, Codec::Aac, 5_000 + 3 * 1_920, true)];
        mix.audio_frames(&mut more, MS(900), &mut out);
        assert_eq!(out[3].pts, ORIGIN + 9_000 + 1_920);
    }

    #[test]
    fn a_jump_or_discontinuity_follows_on_from_the_last_packet() {
        let mut mix = Mix::new();
        let first = mix.video(pkt(1, Codec::H265, 0, true), MS(0)).unwrap();
        let second = mix.video(pkt(1, Codec::H265, 3_000, false), MS(40)).unwrap();
        // A loop back to zero without a flag: more than MAX_JUMP backwards.
        let mut back = pkt(1, Codec::H265, 3_000 - MAX_JUMP - 1, false);
        back.discontinuity = false;
        let third = mix.video(back, MS(80)).unwrap();
        assert_eq!(third.dts - second.dts, 3_000, "one step after the last packet");
        let mut flagged = pkt(1, Codec::H265, 42, true);
        flagged.discontinuity = true;
        let fourth = mix.video(flagged, MS(120)).unwrap();
        assert_eq!(fourth.dts - third.dts, 3_000);
        assert!(!fourth.discontinuity, "the output timeline does not jump");
        assert_eq!(mix.counters().realigned, 2);
        assert!(first.dts < second.dts);
    }

    #[test]
    fn extreme_timestamps_do_not_overflow() {
        let mut mix = Mix::new();
        let mut p = pkt(1, Codec::H264, i64::MAX - 10, true);
        p.pts = i64::MAX;
        assert!(mix.video(p, MS(0)).is_some());
        assert!(mix.video(pkt(1, Codec::H264, i64::MIN, false), MS(1)).is_some());
        let _ = mix.audio(pkt(2, Codec::Opus, i64::MIN, true), Duration::MAX);
    }
}
