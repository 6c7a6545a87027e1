//! `uringest relay` end to end on loopback: byte-exact passthrough, ffmpeg
//! from Debian as a real sender (plain UDP, multicast on `lo`, RTP), the
//! output judged by ffprobe and by ffmpeg's decoder, stdout piped into
//! ffprobe, segments, signals and bad URLs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Sender, backends, decode_errors, ffprobe, fixture, free_port, uringest};
use serde_json::Value;
use uringest::clock::{Clock, SystemClock};
use uringest::shard::Backend;

fn io_name(b: Backend) -> &'static str {
    match b {
        Backend::Uring => "uring",
        Backend::Epoll => "epoll",
    }
}

/// `uringest relay --json` started in the background.
fn spawn_relay(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_uringest"))
        .arg("relay")
        .args(args)
        .arg("--json")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run uringest")
}

/// Waits (at most `limit`) for a background relay; its JSON report.
fn finish(mut child: Child, limit: Duration) -> Value {
    let deadline = SystemClock.now() + limit;
    while child.try_wait().unwrap().is_none() {
        if SystemClock.now() > deadline {
            let _ = child.kill();
            panic!("relay did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    let mut out = String::new();
    let mut err = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "relay failed ({status}): {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} / {err}"))
}

fn codecs(probe: &Value) -> Vec<String> {
    probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap().to_owned()).collect()
}

fn first_pid(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.len() >= 188 && bytes[0] == 0x47, "{} does not start with a packet", path.display());
    u16::from_be_bytes([bytes[1] & 0x1F, bytes[2]])
}

#[test]
fn file_to_udp_to_file_is_byte_exact() {
    let fixture = fixture("h264_aac.ts");
    for b in backends() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.ts");
        let port = free_port();
        let rx = spawn_relay(&[
            "--io",
            io_name(b),
            "--duration",
            "2.5",
            &format!("udp://127.0.0.1:{port}"),
            &format!("file://{}?start=any", out.display()),
        ]);
        std::thread::sleep(Duration::from_millis(400));
        let tx = spawn_relay(&[
            "--io",
            io_name(b),
            &format!("file://{}?pace=none", fixture.display()),
            &format!("udp://127.0.0.1:{port}?start=any"),
        ]);
        let sent = finish(tx, Duration::from_secs(10));
        assert_eq!(sent["end"], "input_ended", "{sent}");
        let got = finish(rx, Duration::from_secs(10));
        let want = std::fs::read(&fixture).unwrap();
        assert_eq!(sent["outputs"][0]["bytes"].as_u64().unwrap(), want.len() as u64, "{sent}");
        assert_eq!(got["input"]["cc_errors"], 0, "{got}");
        assert!(std::fs::read(&out).unwrap() == want, "{b:?}: relayed file differs from the fixture; {got}");
    }
}

/// ffmpeg sends for a while, the relay joins (mid-GOP) and records to a
/// file for `secs`; the recording must start clean and decode cleanly.
fn record_from_ffmpeg(io: &str, format: &str, dest: &str, input: &str, secs: f64) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec.ts");
    let _sender = Sender::start(format, dest);
    std::thread::sleep(Duration::from_millis(1300));
    let relay = spawn_relay(&["--io", io, "--duration", &secs.to_string(), input, out.to_str().unwrap()]);
    let report = finish(relay, Duration::from_secs_f64(secs + 10.0));
    assert_eq!(report["input"]["cc_errors"], 0, "{io} {format}: {report}");
    assert_eq!(report["input"]["kernel_drops"], 0, "{io} {format}: {report}");
    assert_eq!(report["outputs"][0]["lag_drops"], 0, "{report}");
    assert_eq!(first_pid(&out), 0, "{io} {format}: the recording starts with a PAT");
    let probe = ffprobe(&out);
    assert_eq!(codecs(&probe), ["h264", "aac"], "{io} {format}: {probe}");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    // Joined at the next keyframe (at most 1 s in), so between secs - 1.5
    // and secs of stream.
    assert!(duration > secs - 1.5 && duration < secs + 0.5, "{io} {format}: {duration} s of {secs}: {probe}");
    let errors = decode_errors(&out);
    assert!(errors.is_empty(), "{io} {format}: ffmpeg reports: {errors}");
}

#[test]
fn ffmpeg_over_plain_udp_is_recorded_clean() {
    for b in backends() {
        let port = free_port();
        record_from_ffmpeg(
            io_name(b),
            "mpegts",
            &format!("udp://127.0.0.1:{port}?pkt_size=1316"),
            &format!("udp://127.0.0.1:{port}"),
            3.0,
        );
    }
}

#[test]
fn ffmpeg_multicast_on_lo_is_recorded_clean() {
    let port = free_port();
    record_from_ffmpeg(
        "auto",
        "mpegts",
        &format!("udp://239.255.8.8:{port}?pkt_size=1316&localaddr=127.0.0.1&ttl=1"),
        &format!("udp://239.255.8.8:{port}?iface=127.0.0.1"),
        3.0,
    );
}

#[test]
fn ffmpeg_rtp_is_recorded_clean() {
    let port = free_port();
    record_from_ffmpeg(
        "auto",
        "rtp_mpegts",
        &format!("rtp://127.0.0.1:{port}"),
        &format!("udp://127.0.0.1:{port}"),
        3.0,
    );
}

#[test]
fn stdout_pipes_into_ffprobe() {
    let fixture = fixture("h264_aac.ts");
    let mut relay = Command::new(env!("CARGO_BIN_EXE_uringest"))
        .args(["relay", &format!("file://{}?pace=none", fixture.display()), "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pipe = relay.stdout.take().unwrap();
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_format", "-of", "json", "-i", "-"])
        .stdin(pipe)
        .output()
        .unwrap();
    assert!(relay.wait().unwrap().success());
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    let probe: Value = serde_json::from_slice(&probe.stdout).unwrap();
    assert_eq!(codecs(&probe), ["h264", "aac"], "{probe}");
}

#[test]
fn a_closed_pipe_ends_the_relay_cleanly() {
    let fixture = fixture("h264_aac.ts");
    // Looping at full speed: only the reader going away can end it.
    let mut relay = Command::new(env!("CARGO_BIN_EXE_uringest"))
        .args(["relay", &format!("file://{}?pace=none&loop=true", fixture.display()), "-", "--duration", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = relay.stdout.take().unwrap();
    let mut first = vec![0u8; 188 * 100];
    pipe.read_exact(&mut first).unwrap();
    drop(pipe);
    let start = SystemClock.now();
    let status = loop {
        if let Some(s) = relay.try_wait().unwrap() {
            break s;
        }
        assert!(SystemClock.now() - start < Duration::from_secs(5), "relay kept running after its reader left");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    relay.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{status}: {err}");
    assert!(err.contains("PipeClosed"), "{err}");
}

#[test]
fn sigint_stops_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.ts");
    let port = free_port();
    let relay = spawn_relay(&[&format!("udp://127.0.0.1:{port}"), out.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(500));
    let killed = Command::new("sh").args(["-c", &format!("kill -INT {}", relay.id())]).status().unwrap();
    assert!(killed.success());
    let report = finish(relay, Duration::from_secs(5));
    assert_eq!(report["end"], "signal", "{report}");
    assert!(out.exists(), "the output file is created even when nothing came");
}

#[test]
fn bad_urls_and_options_are_one_line_errors() {
    let cases: [(&[&str], &str); 6] = [
        (&["relay", "udp://127.0.0.1:5000"], "OUTPUTS"),
        (&["relay", "udp://127.0.0.1", "-"], "no port"),
        (&["relay", "udp://127.0.0.1:5000", "udp://127.0.0.1:6000?pkt_size=1000"], "multiple of 188"),
        (&["relay", "udp://127.0.0.1:5000", "srt://x"], "unknown output"),
        (&["relay", "udp://127.0.0.1:5000", "-", "-"], "once"),
        (&["relay", "udp://127.0.0.1:5000", "file:///tmp/x.ts?bogus=1"], "'bogus'"),
    ];
    for (args, needle) in cases {
        let out = uringest(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn a_missing_input_file_is_a_runtime_error() {
    let out = uringest(&["relay", "/no/such/file.ts", "udp://127.0.0.1:5000"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("/no/such/file.ts"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn segments_rotate_and_each_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec.ts");
    let fixture = fixture("h264_aac.ts");
    let relay = spawn_relay(&[
        "--duration",
        "5.5",
        &format!("file://{}?loop=true", fixture.display()),
        &format!("file://{}?segment=1", base.display()),
    ]);
    let report = finish(relay, Duration::from_secs(15));
    // Keyframes every second; a rotation asked for after 1 s waits for the
    // next one, so 5.5 s give 3 to 6 files depending on where the asks fall.
    let files = report["outputs"][0]["files"].as_u64().unwrap();
    assert!((3..=6).contains(&files), "{report}");
    for i in 1..=files {
        let seg = dir.path().join(format!("rec-{i:05}.ts"));
        assert_eq!(first_pid(&seg), 0, "{} starts with a PAT", seg.display());
        assert_eq!(codecs(&ffprobe(&seg)), ["h264", "aac"], "{}", seg.display());
        let errors = decode_errors(&seg);
        assert!(errors.is_empty(), "{}: {errors}", seg.display());
    }
}

/// ffprobe's programs of `path` that carry streams, as (number, codecs).
fn programs_with_streams(probe: &Value) -> Vec<(u64, Vec<String>)> {
    probe["programs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["streams"].as_array().is_some_and(|s| !s.is_empty()))
        .map(|p| {
            let codecs = p["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap().to_owned());
            (p["program_num"].as_u64().unwrap(), codecs.collect())
        })
        .collect()
}

#[test]
fn program_filter_keeps_one_program_of_the_mpts() {
    let fixture = fixture("mpts_3prog.ts");
    let all = programs_with_streams(&ffprobe(&fixture));
    assert_eq!(all.len(), 3, "{all:?}");
    for (number, codecs) in all {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("p.ts");
        let input = format!("file://{}?pace=none&program={number}", fixture.display());
        let report = finish(spawn_relay(&[&input, out.to_str().unwrap()]), Duration::from_secs(15));
        assert!(report["input"]["filter"]["packets_dropped"].as_u64().unwrap() > 0, "{report}");
        let kept = programs_with_streams(&ffprobe(&out));
        assert_eq!(kept, [(number, codecs)], "program={number}");
        let errors = decode_errors(&out);
        assert!(errors.is_empty(), "program={number}: {errors}");
    }
}

#[test]
fn pid_filter_passes_only_the_listed_pids() {
    let fixture = fixture("mpts_3prog.ts");
    let probe = ffprobe(&fixture);
    let video = common::hex_id(&probe["streams"][0]["id"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("v.ts");
    let input = format!("file://{}?pace=none&pids={video}", fixture.display());
    let output = format!("file://{}?start=any", out.display());
    finish(spawn_relay(&[&input, &output]), Duration::from_secs(15));
    let bytes = std::fs::read(&out).unwrap();
    let source = std::fs::read(&fixture).unwrap();
    let want: Vec<&[u8]> =
        source.chunks(188).filter(|p| u64::from(u16::from_be_bytes([p[1] & 0x1F, p[2]])) == video).collect();
    assert!(!want.is_empty());
    assert_eq!(bytes, want.concat(), "exactly the packets of PID {video}, unchanged");
}

#[test]
fn a_terminal_gets_a_status_line_and_a_pipe_does_not() {
    let fixture = fixture("h264_aac.ts");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.ts");
    let relay =
        format!("{} relay {} {} --duration 2.5", env!("CARGO_BIN_EXE_uringest"), fixture.display(), out.display());
    // `script` runs the relay on a pseudo-terminal and copies what it
    // prints (stderr included) to our stdout.
    let on_tty = Command::new("script").args(["-qec", &relay, "/dev/null"]).output().expect("script (util-linux)");
    let seen = String::from_utf8_lossy(&on_tty.stdout);
    assert!(on_tty.status.success(), "{seen}");
    assert!(seen.contains("Mbit/s") && seen.contains("pkts"), "no status line on a terminal: {seen}");
    let piped = uringest(&["relay", fixture.to_str().unwrap(), out.to_str().unwrap(), "--duration", "1.5"]);
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(piped.status.success(), "{err}");
    assert!(!err.contains("Mbit/s"), "status line on a pipe: {err}");
    assert!(err.contains("relay ended"), "{err}");
}
