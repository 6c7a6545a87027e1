//! The demuxer against ffprobe, the oracle, on the bundled fixtures.
//!
//! ffprobe runs ffmpeg's parsers, which split an audio PES into frames, so:
//! video is compared packet by packet (count, PTS, DTS, keyframe flag, CRC-32
//! of the bytes); audio frame by frame, after splitting our packets into
//! frames where the format makes it easy (ADTS), else by total bytes and by
//! each packet's PTS being a frame PTS of ffprobe's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use common::{fixture, hex_id};
use proptest::prelude::*;
use serde_json::Value;
use uringest::ts::av::{AvPacket, Codec};
use uringest::ts::demux::{DRAIN_BATCH, Demuxer};

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// One packet as ffprobe shows it.
#[derive(Debug, Clone, PartialEq)]
struct Theirs {
    pts: i64,
    dts: i64,
    size: usize,
    key: bool,
    crc: String,
}

/// ffprobe's packets per PID, and each PID's codec name.
fn ffprobe_packets(path: &Path) -> (BTreeMap<u64, Vec<Theirs>>, BTreeMap<u64, String>) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_data_hash", "CRC32", "-of", "json", "-show_entries"])
        .arg("packet=stream_index,pts,dts,size,flags,data_hash:stream=index,id,codec_name")
        .arg(path)
        .output()
        .expect("ffprobe runs (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut pid_of = BTreeMap::new();
    let mut codecs = BTreeMap::new();
    for s in v["streams"].as_array().unwrap() {
        let pid = hex_id(&s["id"]);
        pid_of.insert(s["index"].as_u64().unwrap(), pid);
        codecs.insert(pid, s["codec_name"].as_str().unwrap().to_owned());
    }
    let mut packets: BTreeMap<u64, Vec<Theirs>> = BTreeMap::new();
    for p in v["packets"].as_array().unwrap() {
        let pid = pid_of[&p["stream_index"].as_u64().unwrap()];
        let pts = p["pts"].as_i64().unwrap();
        packets.entry(pid).or_default().push(Theirs {
            pts,
            dts: p["dts"].as_i64().unwrap_or(pts),
            size: p["size"].as_str().unwrap().parse().unwrap(),
            key: p["flags"].as_str().unwrap().starts_with('K'),
            crc: p["data_hash"].as_str().unwrap().trim_start_matches("CRC32:").to_owned(),
        });
    }
    (packets, codecs)
}

/// Everything the demuxer makes of `bytes`, pushed in chunks of
/// `chunks` lengths (cycled), drained in batches, then flushed.
fn demux_chunked(bytes: &[u8], chunks: &[usize]) -> (Vec<AvPacket>, Demuxer) {
    let mut d = Demuxer::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    for len in chunks.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (now, later) = rest.split_at((*len).clamp(1, rest.len()));
        d.push(now);
        while d.drain(&mut out, DRAIN_BATCH) == DRAIN_BATCH {}
        rest = later;
    }
    d.flush();
    d.drain(&mut out, usize::MAX);
    (out, d)
}

fn demux_file(name: &str) -> (Vec<AvPacket>, Demuxer) {
    let bytes = std::fs::read(fixture(name)).unwrap();
    demux_chunked(&bytes, &[bytes.len()])
}

fn of_track(packets: &[AvPacket], pid: u16) -> Vec<&AvPacket> {
    packets.iter().filter(|p| p.track == pid).collect()
}

fn crc_hex(bytes: &[u8]) -> String {
    format!("{:08x}", CRC32.checksum(bytes))
}

/// Video: one of ours is one of theirs, in order, byte for byte. With
/// `exact` false, ffmpeg's parser may move a zero byte of a 4-byte start
/// code across the boundary (its HEVC parser does): then each size is
/// within one byte and the totals agree.
fn assert_video_matches(ours: &[&AvPacket], theirs: &[Theirs], codec: Codec, exact: bool) {
    assert_eq!(ours.len(), theirs.len(), "video packet count");
    for (i, (o, t)) in ours.iter().zip(theirs).enumerate() {
        assert_eq!(o.codec, codec);
        assert_eq!((o.pts, o.dts), (t.pts, t.dts), "timestamps of video packet {i}");
        assert_eq!(o.keyframe, t.key, "keyframe flag of video packet {i}");
        if exact {
            assert_eq!(o.payload.len(), t.size, "size of video packet {i}");
            assert_eq!(crc_hex(&o.payload), t.crc, "bytes of video packet {i}");
        } else {
            assert!(o.payload.len().abs_diff(t.size) <= 1, "size of video packet {i}");
        }
    }
    let total: usize = ours.iter().map(|p| p.payload.len()).sum();
    assert_eq!(total, theirs.iter().map(|t| t.size).sum::<usize>(), "video bytes");
    assert!(ours.iter().filter(|p| p.keyframe).count() >= 2, "a fixture with keyframes");
}

/// ADTS frames of one packet (ISO/IEC 14496-3 §1.A.2: 13-bit frame_length).
fn adts_frames(mut es: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while es.len() >= 7 {
        assert_eq!((es[0], es[1] & 0xF6), (0xFF, 0xF0), "ADTS sync");
        let len = usize::from(es[3] & 3) << 11 | usize::from(es[4]) << 3 | usize::from(es[5]) >> 5;
        frames.push(&es[..len]);
        es = &es[len..];
    }
    assert!(es.is_empty(), "whole ADTS frames");
    frames
}

/// Opus access units of one packet, without their control headers
/// (ETSI TS 102 366 style, as in ffmpeg's Opus-in-TS: 0x7FE0 | flags,
/// au_size in 0xFF-continued bytes, optional trims and extension).
fn opus_frames(mut es: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while !es.is_empty() {
        assert_eq!((es[0], es[1] & 0xE0), (0x7F, 0xE0), "Opus control header");
        let flags = es[1];
        let mut i = 2;
        let mut size = 0usize;
        loop {
            size += usize::from(es[i]);
            i += 1;
            if es[i - 1] != 0xFF {
                break;
            }
        }
        i += 2 * usize::from(flags & 0x10 != 0) + 2 * usize::from(flags & 0x08 != 0);
        if flags & 0x04 != 0 {
            i += 1 + usize::from(es[i]);
        }
        frames.push(&es[i..i + size]);
        es = &es[i + size..];
    }
    frames
}

/// Audio without an easy frame split: same bytes in all, every PES PTS is
/// a frame PTS, every packet a keyframe.
fn assert_audio_bytes(ours: &[&AvPacket], theirs: &[Theirs], codec: Codec) {
    assert!(!ours.is_empty());
    let total: usize = ours.iter().map(|p| p.payload.len()).sum();
    assert_eq!(total, theirs.iter().map(|t| t.size).sum::<usize>(), "audio bytes");
    let frame_pts: BTreeSet<i64> = theirs.iter().map(|t| t.pts).collect();
    for p in ours {
        assert_eq!(p.codec, codec);
        assert!(p.keyframe && p.pts == p.dts);
        assert!(frame_pts.contains(&p.pts), "PES PTS {} is a frame PTS", p.pts);
    }
    assert!(ours.windows(2).all(|w| w[0].pts < w[1].pts), "audio PTS increase");
}

#[test]
fn h264_aac_matches_ffprobe() {
    let path = fixture("h264_aac.ts");
    let (packets, d) = demux_file("h264_aac.ts");
    let (theirs, codecs) = ffprobe_packets(&path);
    assert_eq!(codecs[&0x100], "h264");
    assert_video_matches(&of_track(&packets, 0x100), &theirs[&0x100], Codec::H264, true);

    let audio = of_track(&packets, 0x101);
    let mut frames = Vec::new();
    for p in &audio {
        assert_eq!(p.codec, Codec::Aac);
        for (k, f) in adts_frames(&p.payload).into_iter().enumerate() {
            // 1024 samples at 48 kHz per AAC frame: 1920 ticks.
            frames.push((p.pts + 1920 * k as i64, f.len(), crc_hex(f)));
        }
    }
    let want: Vec<_> = theirs[&0x101].iter().map(|t| (t.pts, t.size, t.crc.clone())).collect();
    assert_eq!(frames, want, "AAC frames");

    let c = d.counters();
    assert_eq!(c.av_packets_total, packets.len() as u64);
    assert_eq!(c.cc_gaps_total + c.malformed_pes_total + c.truncated_pes_total + c.pes_without_pts_total, 0);
    assert_eq!(c.tracks_added_total, 2);
}

#[test]
fn mpts_program_3_and_program_2() {
    let path = fixture("mpts_3prog.ts");
    let (packets, d) = demux_file("mpts_3prog.ts");
    let (theirs, codecs) = ffprobe_packets(&path);
    let pid_of = |codec: &str| *codecs.iter().find(|(_, c)| *c == codec).unwrap().0 as u16;

    // Program 3: HEVC + AC-3.
    let hevc = pid_of("hevc");
    assert_video_matches(&of_track(&packets, hevc), &theirs[&u64::from(hevc)], Codec::H265, false);
    let ac3 = pid_of("ac3");
    assert_audio_bytes(&of_track(&packets, ac3), &theirs[&u64::from(ac3)], Codec::Ac3);

    // Program 2: MPEG-2 video skipped and counted, MP2 kept.
    let mpeg2 = pid_of("mpeg2video");
    assert!(of_track(&packets, mpeg2).is_empty());
    assert_eq!(d.counters().skipped_streams_video_total, 1);
    assert!(d.counters().skipped_es_packets_total > 100);
    let mp2 = pid_of("mp2");
    assert_audio_bytes(&of_track(&packets, mp2), &theirs[&u64::from(mp2)], Codec::MpegAudio);

    // Program 1 too; nothing else comes out.
    let h264 = pid_of("h264");
    assert_video_matches(&of_track(&packets, h264), &theirs[&u64::from(h264)], Codec::H264, true);
    let tracks: BTreeSet<u16> = packets.iter().map(|p| p.track).collect();
    assert_eq!(tracks.len(), 5);
    assert_eq!(d.tracks().count(), 5);
}

#[test]
fn opus_and_eac3() {
    let path = fixture("opus_eac3.ts");
    let (packets, _) = demux_file("opus_eac3.ts");
    let (theirs, codecs) = ffprobe_packets(&path);
    assert_eq!((codecs[&0x100].as_str(), codecs[&0x101].as_str()), ("opus", "eac3"));
    assert_audio_bytes(&of_track(&packets, 0x101), &theirs[&0x101], Codec::Eac3);
    // ffmpeg packs several Opus access units in one PES, each behind a
    // control header that its parser strips: split ours the same way.
    let mut frames = Vec::new();
    for p in of_track(&packets, 0x100) {
        assert_eq!(p.codec, Codec::Opus);
        for (k, f) in opus_frames(&p.payload).into_iter().enumerate() {
            // 20 ms frames: 1800 ticks.
            frames.push((p.pts + 1800 * k as i64, f.len(), crc_hex(f)));
        }
    }
    let want: Vec<_> = theirs[&0x100].iter().map(|t| (t.pts, t.size, t.crc.clone())).collect();
    assert_eq!(frames, want, "Opus frames");

    let (packets, _) = demux_file("eac3_dvb.ts");
    let (theirs, _) = ffprobe_packets(&fixture("eac3_dvb.ts"));
    assert_audio_bytes(&of_track(&packets, 0x100), &theirs[&0x100], Codec::Eac3);
}

#[test]
fn private_aac_is_sniffed() {
    // The M2TS fixture's AAC is type 0x06 with no descriptor; ffprobe
    // probes the frames, so do we. 192-byte units: strip the 4-byte prefix.
    let m2ts = std::fs::read(fixture("h264_aac_192.m2ts")).unwrap();
    let ts: Vec<u8> = m2ts.chunks_exact(192).flat_map(|u| u[4..].to_vec()).collect();
    let (packets, d) = demux_chunked(&ts, &[ts.len()]);
    let audio: Vec<_> = packets.iter().filter(|p| p.codec == Codec::Aac).collect();
    assert!(!audio.is_empty());
    assert!(audio.iter().all(|p| !adts_frames(&p.payload).is_empty()));
    assert_eq!(d.counters().skipped_streams_unidentified_total, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    /// Any chunking, down to single bytes, gives the packets of one push.
    #[test]
    fn chunking_does_not_matter(chunks in proptest::collection::vec(1usize..5000, 1..40)) {
        let bytes = std::fs::read(fixture("h264_aac.ts")).unwrap();
        let (whole, d1) = demux_chunked(&bytes, &[bytes.len()]);
        let (pieces, d2) = demux_chunked(&bytes, &chunks);
        prop_assert_eq!(whole, pieces);
        prop_assert_eq!(d1.counters(), d2.counters());
    }
}
