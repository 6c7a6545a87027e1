//! The entry gate on a real H.264 + AAC stream from ffmpeg, joined mid-GOP
//! and mid-PES: what it lets out decodes without a word from ffmpeg and
//! starts with a PAT and a keyframe.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use bytes::Bytes;
use uringest::output::entry::{EntryCounters, EntryGate, Piece, StartMode};
use uringest::ts::packet::{Pid, TsPacket};

/// Runs `cmd args`, returning (success, stderr).
fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} must be installed (the README's test command installs ffmpeg): {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout))
}

/// What `ffmpeg -v error` says when decoding all of `path`.
fn decode_errors(path: &Path) -> String {
    let (ok, said) = run("ffmpeg", &["-hide_banner", "-v", "error", "-i", path.to_str().unwrap(), "-f", "null", "-"]);
    assert!(ok, "ffmpeg failed on {}: {said}", path.display());
    said
}

/// 4 s of H.264 (a keyframe each second) and AAC, as MPEG-TS.
fn make_source(path: &Path) {
    let (ok, said) = run(
        "ffmpeg",
        &[
            "-hide_banner",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-g",
            "25",
            "-c:a",
            "aac",
            "-f",
            "mpegts",
            path.to_str().unwrap(),
        ],
    );
    assert!(ok, "ffmpeg could not make the source: {said}");
}

/// The gate's output for `joined`, fed in datagram-sized chunks of 7 packets.
fn through_gate(joined: &Bytes) -> (Vec<u8>, EntryCounters) {
    let mut gate = EntryGate::new(StartMode::Clean);
    let mut out = Vec::new();
    for off in (0..joined.len()).step_by(7 * 188) {
        gate.push(&joined.slice(off..(off + 7 * 188).min(joined.len())), &mut out);
    }
    let mut written = Vec::new();
    for piece in &out {
        match piece {
            Piece::Data(b) => written.extend_from_slice(b),
            Piece::Cut => panic!("no cut was requested"),
        }
    }
    (written, gate.counters())
}

/// `ts` with every random_access_indicator cleared.
fn without_rai(ts: &[u8]) -> Vec<u8> {
    let mut ts = ts.to_vec();
    for p in ts.chunks_exact_mut(188) {
        if p[3] & 0x20 != 0 && p[4] > 0 {
            p[5] &= !0x40;
        }
    }
    ts
}

#[test]
fn joined_mid_gop_the_output_decodes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source.ts");
    make_source(&source);
    let bytes = std::fs::read(&source).unwrap();
    let packets: Vec<&[u8]> = bytes.chunks_exact(188).collect();
    assert!(packets.len() > 500, "source of {} packets", packets.len());

    // The most frequent PID is the video; cut inside one of its PES packets
    // half a GOP in, so the file starts mid-GOP and mid-PES.
    let mut counts = vec![0usize; Pid::COUNT];
    for p in &packets {
        counts[TsPacket::from_slice(p).unwrap().pid().index()] += 1;
    }
    let video = (0..Pid::COUNT).max_by_key(|&i| counts[i]).unwrap();
    let start = packets.len() / 8;
    let cut = (start..packets.len())
        .find(|&i| {
            let pkt = TsPacket::from_slice(packets[i]).unwrap();
            pkt.pid().index() == video && !pkt.payload_unit_start()
        })
        .unwrap();
    let joined = Bytes::from(bytes[cut * 188..].to_vec());
    let joined_path = dir.path().join("joined.ts");
    std::fs::write(&joined_path, &joined).unwrap();
    // Ground truth that the cut hurts: ffmpeg complains about the raw join.
    assert_ne!(
        decode_errors(&joined_path),
        "",
        "the raw join at packet {cut} decodes cleanly; the test proves nothing"
    );

    let (written, c) = through_gate(&joined);
    let out_path = dir.path().join("out.ts");
    std::fs::write(&out_path, &written).unwrap();

    assert_eq!((c.entries, c.entry_timeouts, c.bad_packets), (1, 0, 0), "{c:?}");
    assert!(c.skipped_before_entry > 0, "{c:?}");
    assert_eq!(c.packets_in, (joined.len() / 188) as u64);
    assert_eq!(written.len() as u64, (c.packets_passed + c.psi_copies) * 188);

    assert_eq!(TsPacket::from_slice(&written).unwrap().pid(), Pid::PAT, "the output starts with a PAT");
    assert_eq!(decode_errors(&out_path), "", "ffmpeg complains about the gate's output");

    // Without random_access_indicator, the scan for the IDR finds the same
    // entry point.
    let (plain, plain_counters) = through_gate(&Bytes::from(without_rai(&joined)));
    assert_eq!(plain_counters, c);
    assert!(plain == without_rai(&written), "another entry point without random_access_indicator");

    let probe = common::ffprobe(&out_path);
    let mut codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    codecs.sort();
    assert_eq!(codecs, ["aac", "h264"]);

    let (ok, frames) = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "v",
            "-show_frames",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "frame=key_frame,pict_type",
            "-of",
            "json",
            out_path.to_str().unwrap(),
        ],
    );
    assert!(ok, "ffprobe -show_frames failed: {frames}");
    let frames: serde_json::Value = serde_json::from_str(&frames).unwrap();
    let first = &frames["frames"][0];
    assert_eq!(first["key_frame"], 1, "first video frame: {first}");
}
