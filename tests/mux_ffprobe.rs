//! The muxer against ffprobe/ffmpeg: elementary streams made by ffmpeg,
//! cut into access units here with timestamps known by construction, muxed,
//! then read back by ffprobe (same packets, PTS, DTS, key flags, codec
//! names), decoded by ffmpeg without a word on stderr, and scanned for
//! continuity errors by our own analyzer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use bytes::{Bytes, BytesMut};
use serde_json::Value;
use uringest::ts::analyze::Analyzer;
use uringest::ts::av::{AvPacket, Codec};
use uringest::ts::mux::{MuxConfig, Muxer};

const WRAP: i64 = 1 << 33;

/// Runs ffmpeg with `args` (quiet, overwrite), panicking with its stderr.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-v", "error", "-y", "-nostdin"]).args(args).output().expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Byte offsets of Annex B start codes (3 or 4 bytes) and the NAL header
/// byte after each.
fn nal_starts(es: &[u8]) -> Vec<usize> {
    let mut v = Vec::new();
    let mut i = 0;
    while i + 3 < es.len() {
        if es[i] == 0 && es[i + 1] == 0 && es[i + 2] == 1 {
            // Include a leading zero of a 4-byte start code.
            v.push(if i > 0 && es[i - 1] == 0 { i - 1 } else { i });
            i += 3;
        } else {
            i += 1;
        }
    }
    v
}

/// Splits an Annex B stream at its access unit delimiters; `nal_type`
/// reads the type from the header byte, `aud` and `irap` classify it.
fn split_annexb(es: &[u8], nal_type: fn(u8) -> u8, aud: u8, irap: fn(u8) -> bool) -> Vec<(Bytes, bool)> {
    let starts = nal_starts(es);
    let header = |s: usize| es[s + if es[s + 2] == 1 { 3 } else { 4 }];
    let mut aus: Vec<(usize, bool)> = Vec::new();
    for &s in &starts {
        let t = nal_type(header(s));
        if t == aud {
            aus.push((s, false));
        } else if irap(t) {
            aus.last_mut().expect("stream starts with an AUD").1 = true;
        }
    }
    aus.iter()
        .enumerate()
        .map(|(i, &(s, key))| {
            let end = aus.get(i + 1).map_or(es.len(), |a| a.0);
            (Bytes::copy_from_slice(&es[s..end]), key)
        })
        .collect()
}

/// Splits audio frames whose length `frame_len` reads from their header.
fn split_frames(es: &[u8], frame_len: fn(&[u8]) -> usize) -> Vec<Bytes> {
    let mut v = Vec::new();
    let mut i = 0;
    while i < es.len() {
        let n = frame_len(&es[i..]);
        assert!(n > 0 && i + n <= es.len(), "bad frame at {i}");
        v.push(Bytes::copy_from_slice(&es[i..i + n]));
        i += n;
    }
    v
}

fn adts_len(f: &[u8]) -> usize {
    assert_eq!((f[0], f[1] & 0xF0), (0xFF, 0xF0), "ADTS sync");
    (usize::from(f[3] & 3) << 11) | (usize::from(f[4]) << 3) | usize::from(f[5] >> 5)
}

fn ac3_len(f: &[u8]) -> usize {
    assert_eq!(&f[..2], &[0x0B, 0x77], "AC-3 sync");
    if f[5] >> 3 > 10 {
        // E-AC-3: frmsiz is the frame size in 16-bit words, minus one.
        (((usize::from(f[2]) & 7) << 8) | usize::from(f[3])) * 2 + 2
    } else {
        // AC-3 at 48 kHz: words per frmsizecod pair (ATSC A/52 table 5.18).
        const WORDS_48K: [usize; 19] =
            [64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1152, 1280];
        assert_eq!(f[4] >> 6, 0, "48 kHz");
        WORDS_48K[usize::from(f[4] & 0x3F) / 2] * 2
    }
}

fn mp2_len(f: &[u8]) -> usize {
    assert_eq!((f[0], f[1] & 0xFE), (0xFF, 0xFC), "MPEG-1 layer II sync");
    // 48 kHz, layer II bitrates (kbit/s) by index.
    const KBPS: [usize; 15] = [0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384];
    assert_eq!((f[2] >> 2) & 3, 1, "48 kHz");
    144 * KBPS[usize::from(f[2] >> 4)] * 1000 / 48_000 + usize::from((f[2] >> 1) & 1)
}

/// Opus access units and their PTS from ffmpeg's own TS (no raw Opus
/// elementary format exists to cut): the PES payloads of PID 0x100.
fn opus_from_ts(ts: &[u8]) -> Vec<(Bytes, i64)> {
    let mut pes: Vec<Vec<u8>> = Vec::new();
    for p in ts.chunks_exact(188) {
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        if pid != 0x100 || p[3] & 0x10 == 0 {
            continue;
        }
        let start = if p[3] & 0x20 != 0 { 5 + usize::from(p[4]) } else { 4 };
        if p[1] & 0x40 != 0 {
            pes.push(Vec::new());
        }
        pes.last_mut().unwrap().extend_from_slice(&p[start..]);
    }
    pes.iter()
        .map(|p| {
            let t = &p[9..14];
            let pts = (i64::from(t[0] >> 1 & 7) << 30)
                | (i64::from(t[1]) << 22)
                | (i64::from(t[2] >> 1) << 15)
                | (i64::from(t[3]) << 7)
                | i64::from(t[4] >> 1);
            (&p[9 + usize::from(p[8])..], pts)
        })
        .flat_map(|(mut es, pts)| {
            // ffmpeg puts several 20 ms access units in one PES; ffprobe
            // counts each, so cut at the control headers.
            let mut units = Vec::new();
            while !es.is_empty() {
                assert_eq!((es[0], es[1] & 0xE0), (0x7F, 0xE0), "Opus control header");
                let mut i = 2;
                let mut size = 0;
                while es[i] == 0xFF {
                    size += 255;
                    i += 1;
                }
                size += usize::from(es[i]);
                i += 1 + 2 * usize::from(es[1] >> 4 & 1) + 2 * usize::from(es[1] >> 3 & 1);
                let end = i + size;
                units.push((Bytes::copy_from_slice(&es[..end]), pts + units.len() as i64 * 1800));
                es = &es[end..];
            }
            units
        })
        .collect()
}

/// One track's packets: `units` at `start + i * step`, DTS `delay` before PTS.
fn track(track: u16, codec: Codec, units: Vec<(Bytes, bool)>, start: i64, step: i64, delay: i64) -> Vec<AvPacket> {
    units
        .into_iter()
        .enumerate()
        .map(|(i, (payload, keyframe))| {
            let pts = start + i as i64 * step;
            AvPacket { track, codec, payload, pts, dts: pts - delay, keyframe, discontinuity: false }
        })
        .collect()
}

/// Interleaves tracks by DTS, as a demuxer or an encoder would deliver.
fn interleave(mut tracks: Vec<Vec<AvPacket>>) -> Vec<AvPacket> {
    let mut all: Vec<AvPacket> = tracks.drain(..).flatten().collect();
    all.sort_by_key(|p| p.dts);
    all
}

/// Muxes `pkts` with `config` into `path`; returns the bytes.
fn mux_to(path: &Path, pkts: &[AvPacket], config: MuxConfig) -> Vec<u8> {
    let mut mux = Muxer::new(config).unwrap();
    let mut out = BytesMut::new();
    // Several batches, as a publisher would cut them.
    for batch in pkts.chunks(7) {
        mux.push_all(batch, &mut out);
    }
    assert_eq!(mux.counters().packets, pkts.len() as u64);
    std::fs::write(path, &out).unwrap();
    out.to_vec()
}

/// ffprobe's streams and packets of `path`.
fn probe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "stream=index,codec_name,id:packet=stream_index,pts,dts,flags"])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "ffprobe complained: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Checks ffprobe's view of `path` against `pkts` (PTS/DTS modulo 2^33),
/// the codec names, a silent ffmpeg decode and continuity on every PID.
fn check(path: &Path, ts: &[u8], pkts: &[AvPacket]) {
    assert_eq!(ts.len() % 188, 0);
    assert!(ts.chunks_exact(188).all(|p| p[0] == 0x47));
    let v = probe(path);
    let streams = v["streams"].as_array().unwrap();
    let mut track_ids: Vec<u16> = Vec::new();
    for p in pkts {
        if !track_ids.contains(&p.track) {
            track_ids.push(p.track);
        }
    }
    assert_eq!(streams.len(), track_ids.len(), "{v}");
    for (k, &id) in track_ids.iter().enumerate() {
        let pid = 0x100 + k as u64;
        let stream = streams.iter().find(|s| u64::from_str_radix(&s["id"].as_str().unwrap()[2..], 16).unwrap() == pid);
        let stream = stream.unwrap_or_else(|| panic!("no stream on PID {pid:#x}: {v}"));
        let index = stream["index"].as_u64().unwrap();
        let ours: Vec<&AvPacket> = pkts.iter().filter(|p| p.track == id).collect();
        assert_eq!(stream["codec_name"].as_str().unwrap(), ours[0].codec.name(), "{stream}");
        let theirs: Vec<&Value> =
            v["packets"].as_array().unwrap().iter().filter(|p| p["stream_index"].as_u64() == Some(index)).collect();
        assert_eq!(theirs.len(), ours.len(), "packet count of {}", ours[0].codec.name());
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            let pts = b["pts"].as_i64().unwrap_or_else(|| panic!("packet {i} has no pts: {b}"));
            let dts = b["dts"].as_i64().unwrap();
            assert_eq!(pts.rem_euclid(WRAP), a.pts.rem_euclid(WRAP), "pts of {} packet {i}", a.codec.name());
            assert_eq!(dts.rem_euclid(WRAP), a.dts.rem_euclid(WRAP), "dts of {} packet {i}", a.codec.name());
            if a.codec.is_video() {
                assert_eq!(b["flags"].as_str().unwrap().starts_with('K'), a.keyframe, "key flag of packet {i}");
            }
        }
    }
    let decode =
        Command::new("ffmpeg").args(["-v", "error", "-nostdin", "-i"]).arg(path).args(["-f", "null", "-"]).output();
    let decode = decode.unwrap();
    assert!(decode.status.success() && decode.stderr.is_empty(), "ffmpeg: {}", String::from_utf8_lossy(&decode.stderr));
    let mut analyzer = Analyzer::new();
    analyzer.push_chunk(ts);
    let pids: Vec<_> = analyzer.table().iter().map(|s| (s.pid.value(), s.packets, s.cc_errors)).collect();
    assert!(pids.iter().all(|&(_, _, cc)| cc == 0), "CC errors: {pids:?}");
    assert_eq!(pids.len(), 2 + track_ids.len(), "{pids:?}");
}

/// 4 s of 25 fps H.264 (no B-frames: PTS order is decode order) and AAC.
fn h264_aac(dir: &Path, start: i64) -> Vec<AvPacket> {
    let (v, a) = (dir.join("v.h264"), dir.join("a.aac"));
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=d=4:s=320x240:r=25",
        "-c:v",
        "libx264",
        "-bf",
        "0",
        "-g",
        "25",
        "-bsf:v",
        "h264_metadata=aud=insert",
        "-f",
        "h264",
        v.to_str().unwrap(),
    ]);
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=4:r=48000", "-c:a", "aac", "-f", "adts", a.to_str().unwrap()]);
    let video = split_annexb(&std::fs::read(&v).unwrap(), |b| b & 0x1F, 9, |t| t == 5);
    assert_eq!(video.len(), 100);
    let audio = split_frames(&std::fs::read(&a).unwrap(), adts_len);
    assert!(audio.len() > 180, "{}", audio.len());
    let audio = audio.into_iter().map(|f| (f, true)).collect();
    // DTS 2 frames before PTS exercises the two-timestamp PES header.
    interleave(vec![track(0x44, Codec::H264, video, start, 3600, 7200), track(0x45, Codec::Aac, audio, start, 1920, 0)])
}

#[test]
fn h264_and_aac_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let pkts = h264_aac(dir.path(), 10 * 90_000);
    let path = dir.path().join("out.ts");
    let ts = mux_to(&path, &pkts, MuxConfig::default());
    check(&path, &ts, &pkts);
}

#[test]
fn timestamps_across_the_33_bit_wrap() {
    let dir = tempfile::tempdir().unwrap();
    // Starts 2 s before the wrap; the unwrapped timeline runs past 2^33.
    let pkts = h264_aac(dir.path(), WRAP - 2 * 90_000);
    assert!(pkts.last().unwrap().dts > WRAP);
    let path = dir.path().join("out.ts");
    let ts = mux_to(&path, &pkts, MuxConfig::default());
    check(&path, &ts, &pkts);
}

#[test]
fn a_track_appearing_later_gets_a_new_pmt_version() {
    let dir = tempfile::tempdir().unwrap();
    let all = h264_aac(dir.path(), 90_000);
    // Audio alone for the first second, then video joins at a keyframe.
    let pkts: Vec<AvPacket> = all.into_iter().filter(|p| p.codec.is_audio() || p.pts >= 2 * 90_000).collect();
    assert!(pkts[0].codec.is_audio() && pkts.iter().any(|p| p.codec.is_video()));
    let path = dir.path().join("out.ts");
    let mut mux = Muxer::new(MuxConfig::default()).unwrap();
    let mut out = BytesMut::new();
    mux.push_all(&pkts, &mut out);
    assert_eq!(mux.pmt_version(), 1);
    std::fs::write(&path, &out).unwrap();
    check(&path, &out, &pkts);
}

/// One audio codec alone: `encode` makes the ES with ffmpeg into `file`.
fn audio_alone(codec: Codec, encoder: &[&str], format: &str, frame_len: fn(&[u8]) -> usize, step: i64) {
    let dir = tempfile::tempdir().unwrap();
    let es = dir.path().join(format!("a.{format}"));
    let mut args = vec!["-f", "lavfi", "-i", "sine=d=3:r=48000"];
    args.extend_from_slice(encoder);
    args.extend_from_slice(&["-f", format, es.to_str().unwrap()]);
    ffmpeg(&args);
    let frames: Vec<(Bytes, bool)> =
        split_frames(&std::fs::read(&es).unwrap(), frame_len).into_iter().map(|f| (f, true)).collect();
    assert!(frames.len() > 20);
    let pkts = track(7, codec, frames, 5 * 90_000, step, 0);
    let path = dir.path().join("out.ts");
    let ts = mux_to(&path, &pkts, MuxConfig::default());
    check(&path, &ts, &pkts);
}

#[test]
fn ac3_is_recognised() {
    audio_alone(Codec::Ac3, &["-c:a", "ac3", "-b:a", "192k"], "ac3", ac3_len, 2880);
}

#[test]
fn eac3_is_recognised() {
    audio_alone(Codec::Eac3, &["-c:a", "eac3", "-b:a", "192k"], "eac3", ac3_len, 2880);
}

#[test]
fn mp2_is_recognised() {
    audio_alone(Codec::MpegAudio, &["-c:a", "mp2", "-b:a", "128k"], "mp2", mp2_len, 2160);
}

#[test]
fn opus_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("opus.ts");
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=3:r=48000", "-ac", "2", "-c:a", "libopus", src.to_str().unwrap()]);
    let units = opus_from_ts(&std::fs::read(&src).unwrap());
    assert!(units.len() > 10);
    let pkts: Vec<AvPacket> = units
        .into_iter()
        .map(|(payload, pts)| AvPacket {
            track: 1,
            codec: Codec::Opus,
            payload,
            pts,
            dts: pts,
            keyframe: true,
            discontinuity: false,
        })
        .collect();
    let path = dir.path().join("out.ts");
    let ts = mux_to(&path, &pkts, MuxConfig::default());
    check(&path, &ts, &pkts);
}

#[test]
fn hevc_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let es = dir.path().join("v.hevc");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=d=2:s=320x240:r=25",
        "-pix_fmt",
        "yuv420p",
        "-c:v",
        "libx265",
        "-x265-params",
        "bframes=0:keyint=25:aud=1:log-level=error",
        "-f",
        "hevc",
        es.to_str().unwrap(),
    ]);
    let units = split_annexb(&std::fs::read(&es).unwrap(), |b| (b >> 1) & 0x3F, 35, |t| (16..=21).contains(&t));
    assert_eq!(units.len(), 50);
    let pkts = track(3, Codec::H265, units, 90_000, 3600, 0);
    let path = dir.path().join("out.ts");
    let ts = mux_to(&path, &pkts, MuxConfig::default());
    check(&path, &ts, &pkts);
}
