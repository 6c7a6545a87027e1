//! `uringest serve` failing over from a primary UDP source (ffmpeg) that
//! stops to a looped backup file, then back once the primary has been
//! healthy for `failback_after`, with the stream recorded over HTTP-TS
//! throughout and judged by ffprobe and `uringest probe`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::node::{record, wait_for};
use serde_json::Value;

/// The node on an ephemeral port with `config`; its address.
fn start_node(config: &Path) -> (Child, SocketAddr) {
    common::start_serve(&["--config", config.to_str().unwrap()])
}

#[test]
fn failover_to_the_backup_and_failback_keep_one_valid_stream() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::fixture("h264_aac.ts"), dir.path().join("backup.ts")).unwrap();
    let port = common::free_port();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nshards = 1\n[node.mounts]\nmedia = \"{}\"\n\n[[stream]]\nid = \"tv\"\n\
             inputs = [\"udp://127.0.0.1:{port}\", \"file://media/backup.ts?loop=true\"]\n\
             input_timeout = 1.0\nfailback_after = 2.0\n",
            dir.path().display()
        ),
    )
    .unwrap();

    let primary = common::Sender::start("mpegts", &format!("udp://127.0.0.1:{port}?pkt_size=1316"));
    let (mut node, addr) = start_node(&config);
    let on = |input: u64| move |d: &Value| d["active_input"] == input && d["state"] == "running";
    wait_for(addr, "tv", Duration::from_secs(10), "the primary", on(0));
    // Recording from here, it sees two switches: the failover and the
    // failback.
    let stop = Arc::new(AtomicBool::new(false));
    let recording = record(addr, "tv", Arc::clone(&stop));
    std::thread::sleep(Duration::from_secs(2));
    drop(primary);
    wait_for(addr, "tv", Duration::from_secs(10), "failover to the backup", on(1));
    std::thread::sleep(Duration::from_secs(2));
    let _primary = common::Sender::start("mpegts", &format!("udp://127.0.0.1:{port}?pkt_size=1316"));
    let detail = wait_for(addr, "tv", Duration::from_secs(15), "failback to the primary", on(0));
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let ts = recording.join().unwrap();
    Command::new("sh").args(["-c", &format!("kill -TERM {}", node.id())]).status().unwrap();
    let status = node.wait().unwrap();
    assert!(status.success(), "{status:?}");

    // The switch history: start on the primary, its timeout, the failback.
    let reasons: Vec<&str> =
        detail["switches"].as_array().unwrap().iter().map(|s| s["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["start", "timeout", "failback"], "{detail:#}");
    let inputs = detail["inputs"].as_array().unwrap();
    assert!(inputs[0]["opens_total"].as_u64().unwrap() >= 1, "{detail:#}");
    assert!(inputs[1]["bytes_total"].as_u64().unwrap() > 0, "{detail:#}");

    // The recording: whole packets, starting with a PAT.
    assert!(ts.len() > 100 * 188, "recorded only {} bytes", ts.len());
    let ts = &ts[..ts.len() / 188 * 188];
    assert_eq!(ts[0], 0x47);
    assert_eq!((u16::from(ts[1] & 0x1F) << 8) | u16::from(ts[2]), 0, "the recording starts with a PAT");
    let path = dir.path().join("recorded.ts");
    std::fs::write(&path, ts).unwrap();
    let says = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(&path)
        .args(["-map", "0", "-f", "null", "-"])
        .output()
        .unwrap();
    eprintln!("ffmpeg says: {}", String::from_utf8_lossy(&says.stderr));

    // ffprobe reads H.264 and AAC.
    let probe = common::ffprobe(&path);
    let codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap_or("?")).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{codecs:?}");

    // No continuity errors, and one discontinuity per switch the recording
    // saw (the failover and the failback) on the video and audio PIDs.
    let report = common::probe_json(&path);
    for pid in report["pids"].as_array().unwrap() {
        let id = pid["pid"].as_u64().unwrap();
        assert_eq!(pid["cc_errors"], 0, "PID {id:#x}: {pid}");
        if id == 0x100 || id == 0x101 {
            assert_eq!(pid["discontinuities"], 2, "PID {id:#x}: {pid}");
        }
    }
}
