//! The mixer's data path on arbitrary bytes: two transport streams (the
//! input split at a point its first two bytes choose) demuxed, their
//! packets interleaved into `Mix` (video from the first, audio from the
//! second, cut into frames by `split_frames`) at arrival times taken from
//! the input, and muxed.
//!
//! Checks: no panic; the frames of an audio packet are at most
//! `MAX_FRAMES` and add up to its payload; the mux output is whole 188-byte packets with sync
//! bytes; every packet the mix passes is of the right kind on its output
//! track, with DTS never jumping by more than the mix allows within a
//! source.
#![no_main]

use std::time::Duration;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use uringest::ts::audio_frames::{MAX_FRAMES, split_frames};
use uringest::ts::av::AvPacket;
use uringest::ts::demux::{DRAIN_BATCH, Demuxer};
use uringest::ts::mix::{AUDIO_TRACK, MAX_JUMP, Mix, VIDEO_TRACK};
use uringest::ts::mux::{MuxConfig, Muxer};

fn demux(bytes: &[u8]) -> Vec<AvPacket> {
    let mut demuxer = Demuxer::new();
    let mut out = Vec::new();
    demuxer.push(bytes);
    demuxer.flush();
    while demuxer.drain(&mut out, DRAIN_BATCH) > 0 {}
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let split = (usize::from(data[0]) << 8 | usize::from(data[1])) * 188 % (data.len() - 1).max(1);
    let (video_ts, audio_ts) = data[2..].split_at(split.min(data.len() - 2));
    let (video, audio) = (demux(video_ts), demux(audio_ts));
    let mut mix = Mix::new();
    let mut muxer = Muxer::new(MuxConfig::default()).expect("the default config is valid");
    let mut out = BytesMut::new();
    let (mut last_video, mut last_audio) = (None::<i64>, None::<i64>);
    let (mut v, mut a) = (video.into_iter(), audio.into_iter());
    let mut now = Duration::ZERO;
    let (mut frames, mut placed) = (Vec::new(), Vec::new());
    loop {
        // Arrival: alternate by the payload's first byte, time moving on.
        let (pkt, is_video) = match (v.len(), a.len()) {
            (0, 0) => break,
            (_, 0) => (v.next(), true),
            (0, _) => (a.next(), false),
            _ if data[now.as_millis() as usize % data.len()] & 1 == 0 => (v.next(), true),
            _ => (a.next(), false),
        };
        let Some(pkt) = pkt else { break };
        now += Duration::from_millis(u64::from(pkt.payload.first().copied().unwrap_or(0)) % 50);
        placed.clear();
        if is_video {
            placed.extend(mix.video(pkt, now));
        } else {
            // Frames cut from a packet are zero-copy slices that add up to it.
            let whole = pkt.payload.clone();
            split_frames(pkt, &mut frames);
            assert!(frames.len() <= MAX_FRAMES);
            assert_eq!(frames.iter().map(|f| &f.payload[..]).collect::<Vec<_>>().concat(), &whole[..]);
            mix.audio_frames(&mut frames, now, &mut placed);
        }
        for placed in placed.drain(..) {
            let last = if is_video { &mut last_video } else { &mut last_audio };
            assert_eq!(placed.track, if is_video { VIDEO_TRACK } else { AUDIO_TRACK });
            assert_eq!(placed.codec.is_video(), is_video);
            if let Some(last) = *last {
                let step = placed.dts.saturating_sub(last);
                assert!(step.unsigned_abs() <= MAX_JUMP as u64 || step == i64::MAX || step == i64::MIN, "{step}");
            }
            *last = Some(placed.dts);
            muxer.push(&placed, &mut out);
        }
    }
    assert_eq!(out.len() % 188, 0);
    assert!(out.chunks(188).all(|p| p[0] == 0x47));
});
