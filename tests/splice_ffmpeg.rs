//! The `Splicer` on real ffmpeg clips: A (2 s) → switch → B (2 s, other
//! PIDs, program and picture) → switch → A, judged by ffprobe, ffmpeg and
//! `uringest probe` against the plain concatenation of the same files. Video
//! resumes at a keyframe after each switch, so ffmpeg decodes the spliced
//! stream without a single error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use uringest::node::splice::Splicer;

/// Makes a 2 s H.264 + AAC clip with ffmpeg.
fn clip(dir: &Path, name: &str, video: &str, extra: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", video, "-f", "lavfi", "-i"])
        .arg("sine=frequency=440:sample_rate=48000")
        .args(["-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac"])
        .args(extra)
        .args(["-f", "mpegts"])
        .arg(&path)
        .output()
        .expect("ffmpeg must be installed (the README's test command installs it)");
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&path).unwrap()
}

/// What `ffmpeg -v <level>` says while decoding every stream of `path`.
fn ffmpeg_says(path: &Path, level: &str) -> Vec<String> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", level, "-i"])
        .arg(path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success(), "ffmpeg failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stderr).lines().map(str::to_owned).collect()
}

/// Per-PID (cc_errors, discontinuities) from `uringest probe --json`.
fn probe_pids(path: &Path) -> Vec<(u64, u64, u64)> {
    let probe = common::probe_json(path);
    probe["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pid"].as_u64().unwrap(), p["cc_errors"].as_u64().unwrap(), p["discontinuities"].as_u64().unwrap()))
        .collect()
}

/// Checks CC strictly per PID, ignoring discontinuity flags: +1 after a
/// packet with payload, the same after one without.
fn assert_cc_strict(ts: &[u8]) {
    let mut last = vec![None::<u8>; 8192];
    for (n, p) in ts.chunks(188).enumerate() {
        assert_eq!(p[0], 0x47, "packet {n}");
        let pid = usize::from(p[1] & 0x1F) << 8 | usize::from(p[2]);
        let cc = p[3] & 0x0F;
        if pid != 0x1FFF {
            if let Some(l) = last[pid] {
                let want = if p[3] & 0x10 != 0 { (l + 1) & 0x0F } else { l };
                assert_eq!(cc, want, "packet {n} on PID {pid:#x}");
            }
            last[pid] = Some(cc);
        }
    }
}

fn pid_at(ts: &[u8], n: usize) -> u16 {
    u16::from(ts[n * 188 + 1] & 0x1F) << 8 | u16::from(ts[n * 188 + 2])
}

/// The first packet index at or after `from` that continues a `video` PES:
/// joining there, the splicer has to hold back until the next PAT and PMT.
fn mid_pes_join(ts: &[u8], video: u16, from: usize) -> usize {
    (from..ts.len() / 188)
        .find(|&n| pid_at(ts, n) == video && ts[n * 188 + 1] & 0x40 == 0)
        .expect("a mid-PES join point in the clip")
}

/// The first packet index at or after `from` that starts a `video` PES
/// with random_access_indicator set (ffmpeg sets it on keyframes).
fn next_keyframe(ts: &[u8], video: u16, from: usize) -> Option<usize> {
    (from..ts.len() / 188).find(|&n| {
        let p = &ts[n * 188..(n + 1) * 188];
        pid_at(ts, n) == video && p[1] & 0x40 != 0 && p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x40 != 0
    })
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn spliced_clips_decode_with_one_discontinuity_per_switch() {
    let dir = tempfile::tempdir().unwrap();
    let a = clip(dir.path(), "a.ts", "testsrc=size=320x240:rate=25", &[]);
    let b = clip(
        dir.path(),
        "b.ts",
        "testsrc2=size=352x288:rate=25",
        &["-mpegts_start_pid", "0x200", "-mpegts_pmt_start_pid", "0x1100", "-mpegts_service_id", "7"],
    );

    // B and the second A join mid-PES and mid-GOP, as a failover would,
    // with a keyframe (one a second) still to come. (ffmpeg writes its
    // tables between whole PES packets, so no PES tail follows them here:
    // the unit tests cover tails.)
    let b_from = mid_pes_join(&b, 0x200, 110);
    let a_from = mid_pes_join(&a, 0x100, 100);
    for (ts, pid, from) in [(&b, 0x200, b_from), (&a, 0x100, a_from)] {
        let key = next_keyframe(ts, pid, from).expect("a keyframe after the join");
        assert!(key > from + 20, "join {from} too close to the keyframe at {key}");
    }
    let segments = [&a[..], &b[b_from * 188..], &a[a_from * 188..]];
    let mut splicer = Splicer::new();
    let mut out: Vec<Bytes> = Vec::new();
    for (k, clip) in segments.into_iter().enumerate() {
        if k > 0 {
            splicer.switch();
        }
        // Chunks of 7 packets, as from UDP datagrams.
        let all = Bytes::copy_from_slice(clip);
        for start in (0..all.len()).step_by(7 * 188) {
            splicer.push(&all.slice(start..(start + 7 * 188).min(all.len())), &mut out);
        }
    }
    let spliced = out.concat();
    let raw = segments.concat();
    let spliced_path = write(dir.path(), "spliced.ts", &spliced);
    let raw_path = write(dir.path(), "raw.ts", &raw);

    let c = splicer.counters();
    eprintln!("{c:?}");
    assert_eq!(c.switches, 2);
    assert_eq!(c.hold_overflows, 0);
    assert!(c.held_back > 5, "{c:?}");
    // Both joins are mid-GOP: video waits for the next keyframe (found by
    // its random_access_indicator or IDR, not by the wait bound).
    assert!(c.awaiting_key > 0, "{c:?}");
    assert_eq!((c.key_wait_overflows, c.key_held), (0, 0), "{c:?}");
    assert_eq!(c.packets_in, (raw.len() / 188) as u64);

    // ffprobe sees video and audio.
    let probe = common::ffprobe(&spliced_path);
    let types: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_type"].as_str().unwrap_or("?")).collect();
    assert!(types.contains(&"video") && types.contains(&"audio"), "{types:?}");
    // Both pictures are there: A's 320 and B's 352 pixels wide.
    let mut widths: Vec<u64> =
        probe["streams"].as_array().unwrap().iter().filter_map(|s| s["width"].as_u64()).collect();
    widths.sort();
    assert_eq!(widths, [320, 352], "{probe}");

    // Counters continue strictly; the raw concatenation breaks them.
    assert_cc_strict(&spliced);
    let spliced_pids = probe_pids(&spliced_path);
    let raw_pids = probe_pids(&raw_path);
    eprintln!("spliced {spliced_pids:?}\nraw {raw_pids:?}");
    assert!(raw_pids.iter().map(|p| p.1).sum::<u64>() > 0, "{raw_pids:?}");
    assert_eq!(spliced_pids.iter().map(|p| p.1).sum::<u64>(), 0, "{spliced_pids:?}");

    // One discontinuity per switch on each PID: A's PIDs see the second
    // switch, B's the first; PAT and SDT (both inputs) see both.
    let expected: Vec<(u64, u64)> =
        vec![(0, 2), (0x11, 2), (0x100, 1), (0x101, 1), (0x200, 1), (0x201, 1), (0x1000, 1), (0x1100, 1)];
    let mut got: Vec<(u64, u64)> = spliced_pids.iter().map(|p| (p.0, p.2)).collect();
    got.sort();
    assert_eq!(got, expected);
    assert!(raw_pids.iter().all(|p| p.2 == 0));

    // ffmpeg decodes it without a word at level error, where the plain
    // concatenation (joined mid-GOP) makes the decoder complain.
    let spliced_says = ffmpeg_says(&spliced_path, "error");
    assert!(spliced_says.is_empty(), "{spliced_says:#?}");
    let raw_says = ffmpeg_says(&raw_path, "error");
    assert!(!raw_says.is_empty(), "the joins should be mid-GOP");
    // ffmpeg's demuxer reports broken counters and the packets it marks
    // corrupt for them at debug level: the concatenation has them, the
    // spliced stream none.
    let broken = |lines: &[String]| {
        lines.iter().filter(|l| l.contains("Continuity check failed") || l.contains("Packet corrupt")).count()
    };
    let raw_debug = ffmpeg_says(&raw_path, "debug");
    let spliced_debug = ffmpeg_says(&spliced_path, "debug");
    assert!(broken(&raw_debug) > 0, "the concatenation should break counters");
    let bad: Vec<&String> = spliced_debug
        .iter()
        .filter(|l| {
            l.contains("Continuity check failed") || l.contains("Packet corrupt") || l.contains("corrupt input")
        })
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
}
