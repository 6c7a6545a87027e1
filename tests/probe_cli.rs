//! `uringest probe` on damaged input and CLI misuse.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{fixture, probe_json, uringest};

/// Runs `uringest args`, expects exit status 2 and a one-line error that
/// mentions `needle`.
fn refuses(args: &[&str], needle: &str) {
    let out = uringest(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "args {args:?}: stderr {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line expected, got: {stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    let lines: String = (0..500).map(|i| format!("line {i}: plain notes, not a transport stream\n")).collect();
    std::fs::write(&text, lines).unwrap();
    // Pseudo-random bytes (an LCG): 0x47 turns up, three at packet spacing
    // now and then, yet packets never cover half the file.
    let noise = dir.path().join("noise.bin");
    let mut x: u32 = 12345;
    let bytes: Vec<u8> = (0..200_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    std::fs::write(&noise, bytes).unwrap();
    let empty = dir.path().join("empty.ts");
    std::fs::write(&empty, b"").unwrap();
    let dir_str = dir.path().to_str().unwrap();

    refuses(&["probe", "/nonexistent/in.ts"], "/nonexistent/in.ts");
    refuses(&["probe", dir_str], "directory");
    refuses(&["probe", text.to_str().unwrap()], "not an MPEG-TS stream");
    refuses(&["probe", empty.to_str().unwrap()], "empty");
    refuses(&["probe", noise.to_str().unwrap()], "not an MPEG-TS stream");
    refuses(&["probe", "gopher://example/x.ts"], "gopher");
    refuses(&["probe", "srt://127.0.0.1:5000"], "not supported yet");
    refuses(&["probe", "udp://127.0.0.1:5000?bogus=1"], "bogus");
    refuses(&["probe", "udp://127.0.0.1"], "port");
    refuses(&["probe", "--io", "kqueue", "udp://127.0.0.1:5000"], "kqueue");
    refuses(&["probe", "file://host/x.ts"], "host");
    refuses(&["probe", "--bogus", "x.ts"], "--bogus");
    refuses(&["probe", "--duration", "-3", "x.ts"], "-3");
    refuses(&["probe"], "URL");
    refuses(&["frobnicate"], "frobnicate");
}

#[test]
fn file_url_form_is_accepted() {
    let path = fixture("h264_aac.ts");
    let url = format!("file://{}", path.display());
    let out = uringest(&["probe", "--json", &url]);
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["url"], url.as_str());
    assert_eq!(report["ts_packets"], 694);
}

#[test]
fn garbage_and_truncated_tail_are_counted_exactly() {
    let ts = std::fs::read(fixture("h264_aac.ts")).unwrap();
    let packets = ts.len() / 188;
    // 1000 bytes of garbage, the first 100 packets, 77 garbage bytes, the
    // rest but the last 50 bytes (the last packet keeps 138 of its bytes).
    let mut damaged = vec![0u8; 1000];
    damaged.extend_from_slice(&ts[..100 * 188]);
    damaged.extend_from_slice(&[0x11; 77]);
    damaged.extend_from_slice(&ts[100 * 188..ts.len() - 50]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ts");
    std::fs::write(&path, &damaged).unwrap();

    let r = probe_json(&path);
    assert_eq!(r["ts_packets"].as_u64().unwrap(), (packets - 1) as u64);
    assert_eq!(r["errors"]["sync_losses"], 1);
    assert_eq!(r["errors"]["skipped_bytes"], 1077);
    assert_eq!(r["errors"]["truncated_bytes"], 138);
    assert_eq!(r["errors"]["cc_errors"], 0, "no packet was lost between the garbage");
    assert_eq!(r["bytes"].as_u64().unwrap(), damaged.len() as u64);
    assert_eq!(r["programs"].as_array().unwrap().len(), 1);
}

#[test]
fn lost_packets_show_as_cc_errors_on_their_pid() {
    let ts = std::fs::read(fixture("h264_aac.ts")).unwrap();
    // Drop the 50th, 150th and 250th packet of the video PID 0x100.
    let mut video = 0;
    let mut out = Vec::new();
    for p in ts.chunks_exact(188) {
        let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
        if pid == 0x100 {
            video += 1;
            if [50, 150, 250].contains(&video) {
                continue;
            }
        }
        out.extend_from_slice(p);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lossy.ts");
    std::fs::write(&path, &out).unwrap();
    let r = probe_json(&path);
    let video = r["pids"].as_array().unwrap().iter().find(|p| p["pid"] == 0x100).unwrap();
    assert_eq!(video["cc_errors"], 3);
    assert_eq!(r["errors"]["cc_errors"], 3);
}

#[test]
fn duration_limits_the_read() {
    let path = fixture("h264_aac.ts");
    let out = uringest(&["probe", "--json", "--duration", "1.5", path.to_str().unwrap()]);
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let secs = r["duration_secs"].as_f64().unwrap();
    assert!((1.5..2.5).contains(&secs), "read {secs} s");
    assert!(r["bytes"].as_u64().unwrap() < std::fs::metadata(&path).unwrap().len());
}

#[test]
fn text_summary_names_programs_and_codecs() {
    let out = uringest(&["probe", fixture("mpts_3prog.ts").to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["program 1", "program 2", "program 3", "h264", "mpeg2video", "hevc", "aac", "mp2", "ac3", "0x1000"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn pids_lists_only_pids_seen() {
    // Cut the SPTS after its first PAT but before its first PMT packet: the
    // PMT PID is announced yet never seen, so it must not be listed.
    let ts = std::fs::read(fixture("h264_aac.ts")).unwrap();
    let packets: Vec<&[u8]> = ts.chunks_exact(188).collect();
    let pid_of = |p: &[u8]| (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
    let first_pmt = packets.iter().position(|p| pid_of(p) == 0x1000).unwrap();
    let first_pat = packets.iter().position(|p| pid_of(p) == 0).unwrap();
    assert!(first_pat < first_pmt, "fixture layout changed");
    let cut: Vec<u8> = packets[..first_pmt].concat();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.ts");
    std::fs::write(&path, &cut).unwrap();
    let r = probe_json(&path);
    assert!(r["pids"].as_array().unwrap().iter().all(|p| p["packets"].as_u64().unwrap() > 0));
    assert!(!r["pids"].as_array().unwrap().iter().any(|p| p["pid"] == 0x1000));
    assert_eq!(r["programs"][0]["pmt_pid"], 0x1000);
}
