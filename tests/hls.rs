//! HLS input end to end on loopback: ffmpeg from Debian segments the H.264 +
//! AAC fixture (VOD, and live in real time with a sliding window), Python's
//! `http.server` serves the files, and `uringest relay` reads them. The
//! output is judged byte for byte against the segments, and by ffprobe and
//! ffmpeg's decoder.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::{decode_errors, ffprobe, fixture};
use serde_json::Value;
use uringest::clock::{Clock, SystemClock};

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Python's `http.server` serving `dir` on 127.0.0.1; its port.
fn serve_dir(dir: &Path) -> (Killed, u16) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        if let Some(server) = serve_dir_on(dir, port) {
            return (server, port);
        }
    }
    panic!("http.server did not start");
}

/// Python's `http.server` serving `dir` on 127.0.0.1:`port`, once it
/// accepts connections; `None` if it cannot bind.
fn serve_dir_on(dir: &Path, port: u16) -> Option<Killed> {
    let child = Command::new("python3")
        .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 must be installed (the README's test command installs it)");
    let mut server = Killed(child);
    let deadline = SystemClock.now() + Duration::from_secs(10);
    while SystemClock.now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        if server.0.try_wait().unwrap().is_some() {
            break; // the port was taken meanwhile
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The fixture, played `1 + loops` times over, cut by ffmpeg into a VOD
/// playlist `index.m3u8` of `segment_secs` segments in `dir`; the segments'
/// paths, in order.
fn make_vod(dir: &Path, loops: u32, segment_secs: u32) -> Vec<PathBuf> {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-stream_loop", &loops.to_string(), "-i"])
        .arg(fixture("h264_aac.ts"))
        .args(["-c", "copy", "-f", "hls", "-hls_time", &segment_secs.to_string(), "-hls_list_size", "0"])
        .args(["-hls_playlist_type", "vod", "-hls_segment_filename"])
        .arg(dir.join("seg%03d.ts"))
        .arg(dir.join("index.m3u8"))
        .status()
        .expect("ffmpeg must be installed");
    assert!(status.success());
    let playlist = std::fs::read_to_string(dir.join("index.m3u8")).unwrap();
    let segments: Vec<PathBuf> =
        playlist.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(|l| dir.join(l)).collect();
    assert!(segments.len() >= 3, "{playlist}");
    segments
}

/// `uringest relay <input> <output> --json` plus `extra`, started.
fn spawn_relay(input: &str, output: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_uringest"))
        .args(["relay", input, output, "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run uringest")
}

/// `uringest relay <input> <output> --json` plus `extra`, bounded in time.
fn relay(input: &str, output: &str, extra: &[&str]) -> Output {
    finish(spawn_relay(input, output, extra), input)
}

/// Waits for a relay (40 s at most); its output.
fn finish(mut child: Child, input: &str) -> Output {
    let deadline = SystemClock.now() + Duration::from_secs(40);
    while child.try_wait().unwrap().is_none() {
        if SystemClock.now() > deadline {
            let _ = child.kill();
            panic!("relay of {input} did not end");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn report(out: &Output) -> Value {
    assert!(out.status.success(), "relay failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn codecs(probe: &Value) -> Vec<String> {
    let mut c: Vec<String> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap().to_owned()).collect();
    c.sort();
    c
}

fn concat(paths: &[PathBuf]) -> Vec<u8> {
    paths.iter().flat_map(|p| std::fs::read(p).unwrap()).collect()
}

#[test]
fn the_origin_going_away_for_seconds_loses_and_repeats_no_segment() {
    let dir = tempfile::tempdir().unwrap();
    // 12 s of VOD in 2 s segments: the fixture three times over.
    let segments = make_vod(dir.path(), 2, 2);
    let (server, port) = serve_dir(dir.path());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("out.ts");
    // Paced, the relay fetches a few segments ahead, then one per 2 s: the
    // origin is gone while it wants the next ones.
    let child = spawn_relay(
        &format!("http://127.0.0.1:{port}/index.m3u8"),
        &format!("file://{}?start=any", path.display()),
        &[],
    );
    std::thread::sleep(Duration::from_millis(1_500));
    drop(server);
    std::thread::sleep(Duration::from_secs(3));
    let _server = serve_dir_on(dir.path(), port).expect("the origin back on its port");
    let r = report(&finish(child, "the VOD"));
    assert_eq!(std::fs::read(&path).unwrap(), concat(&segments), "a segment lost or repeated: {r}");
    let hls = &r["input"]["hls"];
    let recovered = hls["segment_retries"].as_u64().unwrap() + r["input"]["reopens"].as_u64().unwrap();
    assert!(recovered >= 1, "the outage went unnoticed: {r}");
    assert_eq!(hls["segments"], segments.len(), "{r}");
}

#[test]
fn vod_passes_through_byte_exact_paced_by_dts_or_at_download_speed() {
    let dir = tempfile::tempdir().unwrap();
    let segments = make_vod(dir.path(), 0, 1);
    let expected = concat(&segments);
    let (_server, port) = serve_dir(dir.path());
    let url = format!("http://127.0.0.1:{port}/index.m3u8");

    let out = tempfile::tempdir().unwrap();
    let unpaced = out.path().join("unpaced.ts");
    let r = report(&relay(&format!("{url}?pace=none"), &format!("file://{}?start=any", unpaced.display()), &[]));
    assert_eq!(std::fs::read(&unpaced).unwrap(), expected, "unpaced output differs from the segments");
    assert_eq!(r["input"]["end"], "ended", "{r}");
    assert_eq!(r["input"]["hls"]["segments"], segments.len(), "{r}");
    assert_eq!(r["input"]["hls"]["segment_bytes"], expected.len(), "{r}");
    assert_eq!(r["input"]["hls"]["missed_segments"], 0, "{r}");
    // Unpaced, 120 kB on loopback take nowhere near the clip's 4 s.
    assert!(r["duration_s"].as_f64().unwrap() < 2.0, "{r}");

    let paced = out.path().join("paced.ts");
    let r = report(&relay(&url, &format!("file://{}?start=any", paced.display()), &[]));
    assert_eq!(std::fs::read(&paced).unwrap(), expected, "paced output differs from the segments");
    // The clip's PES timestamps span 4 s; the last chunk is released about
    // 3.9 s after the first.
    let took = r["duration_s"].as_f64().unwrap();
    assert!(took >= 3.0, "paced by DTS, the 4 s clip took only {took} s: {r}");
    assert_eq!(r["input"]["hls"]["pace_resets"], 0, "{r}");
}

#[test]
fn a_master_playlist_plays_its_highest_bandwidth_variant() {
    let dir = tempfile::tempdir().unwrap();
    let high = dir.path().join("high");
    std::fs::create_dir(&high).unwrap();
    make_vod(&high, 0, 1);
    // The low variant does not exist: choosing it would fail with 404.
    let master = "#EXTM3U\n\
        #EXT-X-STREAM-INF:BANDWIDTH=300000\nlow/index.m3u8\n\
        #EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS=\"avc1.64001f,mp4a.40.2\"\nhigh/index.m3u8\n";
    std::fs::write(dir.path().join("master.m3u8"), master).unwrap();
    let (_server, port) = serve_dir(dir.path());

    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("out.ts");
    let r = report(&relay(&format!("http://127.0.0.1:{port}/master.m3u8?pace=none"), path.to_str().unwrap(), &[]));
    assert_eq!(r["input"]["hls"]["playlist_loads"], 2, "master then variant: {r}");
    let probe = ffprobe(&path);
    assert_eq!(codecs(&probe), ["aac", "h264"], "{probe}");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!((3.5..=4.5).contains(&duration), "duration {duration}: {probe}");
    assert_eq!(decode_errors(&path), "");
}

#[test]
fn a_live_sliding_window_is_followed_across_reloads() {
    let dir = tempfile::tempdir().unwrap();
    // ffmpeg encodes a test pattern and a tone in real time, as a live
    // encoder and packager: 1 s segments, a window of 4, old segments
    // deleted. (Not the fixture with -stream_loop: ffmpeg's copy across
    // the loop repeats a DTS, which its decoder then reports.)
    let _packager = Killed(
        Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
            .args(["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args(["-t", "30", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac"])
            .args(["-f", "hls", "-hls_time", "1", "-hls_list_size", "4"])
            .args(["-hls_flags", "delete_segments"])
            .arg(dir.path().join("live.m3u8"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg must be installed"),
    );
    let playlist = dir.path().join("live.m3u8");
    let deadline = SystemClock.now() + Duration::from_secs(15);
    while std::fs::read_to_string(&playlist).map_or(0, |p| p.matches("#EXTINF").count()) < 3 {
        assert!(SystemClock.now() < deadline, "ffmpeg made no live playlist");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_server, port) = serve_dir(dir.path());
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("live.ts");
    let r = report(&relay(&format!("http://127.0.0.1:{port}/live.m3u8"), path.to_str().unwrap(), &["--duration", "6"]));
    let hls = &r["input"]["hls"];
    assert_eq!(r["input"]["end"], "stopped", "{r}");
    // Joined 3 segments from the live edge, then one new segment a second.
    assert!(hls["segments"].as_u64().unwrap() >= 5, "{r}");
    assert!(hls["playlist_loads"].as_u64().unwrap() >= 4, "reloaded: {r}");
    assert_eq!(hls["missed_segments"], 0, "{r}");
    assert_eq!(hls["restarts"], 0, "{r}");
    let probe = ffprobe(&path);
    assert_eq!(codecs(&probe), ["aac", "h264"], "{probe}");
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(duration >= 3.0, "paced live output of {duration} s: {probe}");
    assert_eq!(decode_errors(&path), "");
}

#[test]
fn failures_name_the_url_and_end_the_relay() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("page.m3u8"), "<html>not a playlist</html>").unwrap();
    std::fs::write(
        dir.path().join("locked.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=AES-128,URI=\"k.key\"\n#EXTINF:2,\na.ts\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("gone.m3u8"),
        "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\nmissing.ts\n#EXT-X-ENDLIST\n",
    )
    .unwrap();
    let (_server, port) = serve_dir(dir.path());
    let out = tempfile::tempdir().unwrap();
    let sink = out.path().join("x.ts");
    let sink = sink.to_str().unwrap();
    let cases = [
        ("nope.m3u8", "HTTP 404"),
        ("page.m3u8", "not an HLS playlist"),
        ("locked.m3u8", "encrypted segments (#EXT-X-KEY METHOD=AES-128)"),
        ("gone.m3u8", "missing.ts: HTTP 404"),
    ];
    for (name, expected) in cases {
        let url = format!("http://127.0.0.1:{port}/{name}");
        let out = relay(&url, sink, &["--duration", "20"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {stderr}");
        assert!(stderr.contains(expected) && stderr.contains(&format!("127.0.0.1:{port}/")), "{name}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    }
    // Nobody listening: the first open fails at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = relay(&format!("http://127.0.0.1:{closed}/x.m3u8"), sink, &["--duration", "20"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Connection refused"));
}

#[test]
fn a_serve_stream_fails_over_from_a_missing_playlist_at_once_and_serves_the_next() {
    let dir = tempfile::tempdir().unwrap();
    // 12 s of VOD: the fixture three times over.
    make_vod(dir.path(), 2, 2);
    let (_server, port) = serve_dir(dir.path());
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nshards = 1\n\n[[stream]]\nid = \"tv\"\n\
             inputs = [\"http://127.0.0.1:{port}/missing.m3u8\", \"http://127.0.0.1:{port}/index.m3u8\"]\n"
        ),
    )
    .unwrap();
    let (node, addr) = common::start_serve(&["--config", config.to_str().unwrap()]);
    // A 404 is permanent: no backoff before the second input takes over.
    let detail = common::node::wait_for(addr, "tv", Duration::from_secs(5), "the second input", |d| {
        d["active_input"] == 1 && d["state"] == "running"
    });
    let first = &detail["inputs"][0];
    assert_eq!(first["state"], "failed", "{detail:#}");
    assert!(first["last_error"].as_str().unwrap().contains("missing.m3u8: HTTP 404"), "{detail:#}");
    assert_eq!(detail["inputs"][1]["segments_missed_total"], 0, "{detail:#}");
    let ts = common::node::record_for(addr, "tv", 3.0);
    common::node::stop_node(node);
    let path = dir.path().join("recorded.ts");
    std::fs::write(&path, &ts).unwrap();
    assert_eq!(codecs(&ffprobe(&path)), ["aac", "h264"]);
}
