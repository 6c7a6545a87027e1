//! demux(mux(x)) == x: access units muxed to TS by `ts::mux` and read back
//! by `ts::demux` come back identical (track order, codec, payload bytes,
//! PTS, DTS, keyframe), for the fixtures' real streams and for arbitrary
//! packet sequences.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use uringest::ts::av::{AvPacket, Codec};
use uringest::ts::demux::{DRAIN_BATCH, Demuxer};
use uringest::ts::mux::{MuxConfig, Muxer};

fn demux(ts: &[u8]) -> Vec<AvPacket> {
    let mut demuxer = Demuxer::new();
    let mut out = Vec::new();
    for chunk in ts.chunks(188 * 64) {
        demuxer.push(chunk);
        while demuxer.drain(&mut out, DRAIN_BATCH) > 0 {}
    }
    demuxer.flush();
    while demuxer.drain(&mut out, DRAIN_BATCH) > 0 {}
    out
}

fn mux(packets: &[AvPacket]) -> Bytes {
    let mut muxer = Muxer::new(MuxConfig::default()).unwrap();
    let mut out = BytesMut::new();
    for batch in packets.chunks(7) {
        muxer.push_all(batch, &mut out);
    }
    assert_eq!(muxer.counters().refused, 0);
    out.freeze()
}

/// `original` and `again` (its mux then demux) are the same access units
/// track by track. The muxer numbers tracks from PID 0x100 in the order it
/// first sees them, so `again`'s tracks sorted by PID pair with
/// `original`'s in order of first appearance. The interleaving of tracks
/// may differ: a demuxer hands out a video PES only when the next one
/// starts, an audio PES with a known length at once.
fn assert_same(original: &[AvPacket], again: &[AvPacket]) {
    assert_eq!(original.len(), again.len(), "packet count");
    let mut first_seen = Vec::new();
    for p in original {
        if !first_seen.contains(&p.track) {
            first_seen.push(p.track);
        }
    }
    let mut pids: Vec<u16> = again.iter().map(|p| p.track).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(first_seen.len(), pids.len(), "track count");
    for (track, pid) in first_seen.into_iter().zip(pids) {
        let x: Vec<_> = original.iter().filter(|p| p.track == track).collect();
        let y: Vec<_> = again.iter().filter(|p| p.track == pid).collect();
        assert_eq!(x.len(), y.len(), "packets of track {track:#x}");
        for (n, (p, q)) in x.iter().zip(&y).enumerate() {
            assert_eq!(
                (p.codec, p.pts, p.dts, p.keyframe, &p.payload),
                (q.codec, q.pts, q.dts, q.keyframe, &q.payload),
                "track {track:#x} packet {n}"
            );
        }
    }
}

#[test]
fn the_fixtures_streams_survive_mux_then_demux() {
    for name in ["h264_aac.ts", "opus_eac3.ts", "eac3_dvb.ts"] {
        let original = demux(&std::fs::read(common::fixture(name)).unwrap());
        assert!(!original.is_empty(), "{name}: no packets");
        let again = demux(&mux(&original));
        assert_same(&original, &again);
    }
}

/// One packet of a generated stream: codec index, payload, DTS step,
/// PTS - DTS, keyframe.
fn packet_strategy() -> impl Strategy<Value = (usize, Vec<u8>, i64, i64, bool)> {
    // Bytes from 0x80 up hold no start code, so the demuxer's IDR scan
    // agrees with the keyframe flag the muxer signals by RAI.
    (0usize..5, prop::collection::vec(0x80u8..=0xff, 1..3000), 0i64..9000, 0i64..9000, any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_streams_survive_mux_then_demux(
        start in 0i64..(1 << 33),
        spec in prop::collection::vec(packet_strategy(), 1..60),
    ) {
        const CODECS: [Codec; 5] = [Codec::H264, Codec::H265, Codec::Aac, Codec::MpegAudio, Codec::Opus];
        let mut dts = start;
        let packets: Vec<AvPacket> = spec
            .into_iter()
            .map(|(c, payload, step, lead, key)| {
                let codec = CODECS[c];
                dts += step;
                AvPacket {
                    // One track per codec.
                    track: 0x100 + c as u16,
                    codec,
                    payload: Bytes::from(payload),
                    pts: dts + lead,
                    dts,
                    keyframe: key || codec.is_audio(),
                    discontinuity: false,
                }
            })
            .collect();
        let again = demux(&mux(&packets));
        assert_same(&packets, &again);
    }
}
