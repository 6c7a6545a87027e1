//! `uringest serve`'s JSON API on a real node: streams created, replaced
//! and deleted while another stream's UDP output is received without a
//! break; bad calls and a bad config give the documented errors; file
//! inputs stay inside their mount; a token guards mutating calls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::node::{call, json, stop_node};
use uringest::clock::{Clock, SystemClock};

/// The node on an ephemeral port with `config`; its address.
fn start_node(config: &Path) -> (Child, SocketAddr) {
    common::start_serve(&["--shards", "2", "--config", config.to_str().unwrap()])
}

/// What a UDP receiver saw.
#[derive(Debug, Default)]
struct Seen {
    datagrams: u64,
    cc_errors: u64,
    /// Longest silence after the first datagram.
    max_gap: Duration,
}

/// Receives TS over UDP on `port` until `stop`, checking continuity per
/// PID (a set discontinuity_indicator allows any counter).
fn receive(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    std::thread::spawn(move || {
        let clock = SystemClock;
        let mut seen = Seen::default();
        let mut last_cc = vec![None::<u8>; 8192];
        let mut last_at = None;
        let mut buf = [0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            let now = clock.now();
            if let Some(at) = last_at {
                seen.max_gap = seen.max_gap.max(now.duration_since(at));
            }
            let Ok(n) = socket.recv(&mut buf) else { continue };
            last_at = Some(clock.now());
            seen.datagrams += 1;
            for p in buf[..n].chunks_exact(188) {
                let pid = usize::from(p[1] & 0x1F) << 8 | usize::from(p[2]);
                let payload = p[3] & 0x10 != 0;
                let disc = p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x80 != 0;
                let cc = p[3] & 0x0F;
                if pid != 0x1FFF {
                    if let (Some(l), false) = (last_cc[pid], disc) {
                        let want = if payload { (l + 1) & 0x0F } else { l };
                        if cc != want && !(payload && cc == l) {
                            seen.cc_errors += 1;
                        }
                    }
                    last_cc[pid] = Some(cc);
                }
            }
        }
        seen
    })
}

fn config_with(dir: &Path, extra_node: &str, streams: &str) -> std::path::PathBuf {
    std::fs::copy(common::fixture("h264_aac.ts"), dir.join("clip.ts")).unwrap();
    let path = dir.join("node.toml");
    let text = format!("[node]\n{extra_node}\n[node.mounts]\nmedia = \"{}\"\n\n{streams}", dir.display());
    std::fs::write(&path, text).unwrap();
    path
}

fn file_stream(id: &str, port: u16) -> String {
    format!(
        "[[stream]]\nid = \"{id}\"\ninputs = [\"file://media/clip.ts?loop=true\"]\noutputs = [\"udp://127.0.0.1:{port}\"]\n\n"
    )
}

#[test]
fn streams_come_and_go_while_another_streams_output_runs_unbroken() {
    let dir = tempfile::tempdir().unwrap();
    let (pa, pc, pc2) = (common::free_port(), common::free_port(), common::free_port());
    let config = config_with(dir.path(), "", &file_stream("a", pa));
    let stop = Arc::new(AtomicBool::new(false));
    let a = receive(pa, Arc::clone(&stop));
    let c1 = receive(pc, Arc::clone(&stop));
    let c2 = receive(pc2, Arc::clone(&stop));
    let (node, addr) = start_node(&config);
    std::thread::sleep(Duration::from_secs(1));

    // Create c.
    let def = |port: u16, extra: &str| {
        format!(
            r#"{{"id":"c","inputs":["file://media/clip.ts?loop=true{extra}"],"outputs":["udp://127.0.0.1:{port}"]}}"#
        )
    };
    let (code, body) = call(addr, "POST", "/api/v1/streams", Some(&def(pc, "")), None);
    assert_eq!(code, 201, "{body}");
    assert_eq!(json(&body)["id"], "c");
    let (code, body) = call(addr, "POST", "/api/v1/streams", Some(&def(pc, "")), None);
    assert_eq!(code, 409, "{body}");
    let (code, body) = call(addr, "GET", "/api/v1/streams", None, None);
    assert_eq!(code, 200);
    let ids: Vec<String> =
        json(&body)["streams"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["a", "c"]);
    std::thread::sleep(Duration::from_secs(2));

    // Replace only its output: the inputs keep running.
    let (code, body) = call(addr, "PUT", "/api/v1/streams/c", Some(&def(pc2, "")), None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["replaced"], "outputs");
    let (code, body) = call(addr, "PUT", "/api/v1/streams/c", Some(&def(pc2, "")), None);
    assert_eq!((code, json(&body)["replaced"].clone()), (200, "unchanged".into()), "{body}");
    // Add a backup input, then take it out again: the stream runs on.
    let two = format!(
        r#"{{"id":"c","inputs":["file://media/clip.ts?loop=true","udp://127.0.0.1:{}"],"outputs":["udp://127.0.0.1:{pc2}"]}}"#,
        common::free_port()
    );
    let (code, body) = call(addr, "PUT", "/api/v1/streams/c", Some(&two), None);
    assert_eq!((code, json(&body)["replaced"].clone()), (200, "inputs".into()), "{body}");
    let (_, body) = call(addr, "GET", "/api/v1/streams/c", None, None);
    let detail = json(&body);
    assert_eq!(detail["inputs"].as_array().unwrap().len(), 2, "{detail:#}");
    assert_eq!(detail["active_input"], 0, "{detail:#}");
    let (code, body) = call(addr, "PUT", "/api/v1/streams/c", Some(&def(pc2, "")), None);
    assert_eq!((code, json(&body)["replaced"].clone()), (200, "inputs".into()), "{body}");
    std::thread::sleep(Duration::from_secs(2));
    // Replace its input: the stream restarts.
    let (code, body) = call(addr, "PUT", "/api/v1/streams/c", Some(&def(pc2, "&pace=pcr")), None);
    assert_eq!((code, json(&body)["replaced"].clone()), (200, "stream".into()), "{body}");
    std::thread::sleep(Duration::from_secs(1));

    // Delete it.
    let (code, body) = call(addr, "DELETE", "/api/v1/streams/c", None, None);
    assert_eq!(code, 204, "{body}");
    assert_eq!(call(addr, "GET", "/api/v1/streams/c", None, None).0, 404);
    assert_eq!(call(addr, "DELETE", "/api/v1/streams/c", None, None).0, 404);
    std::thread::sleep(Duration::from_secs(1));

    stop.store(true, Ordering::Relaxed);
    let (a, c1, c2) = (a.join().unwrap(), c1.join().unwrap(), c2.join().unwrap());
    stop_node(node);
    eprintln!("a {a:?}\nc {c1:?}\nc2 {c2:?}");
    // Stream a ran through all of it: about 260 kbit/s of 1316-byte
    // datagrams for over 7 s, without a counter error or a long silence.
    assert!(a.datagrams > 100, "{a:?}");
    assert_eq!(a.cc_errors, 0, "{a:?}");
    assert!(a.max_gap < Duration::from_millis(500), "{a:?}");
    assert!(c1.datagrams > 20, "{c1:?}");
    assert!(c2.datagrams > 20, "{c2:?}");
}

#[test]
fn bad_calls_and_escaping_paths_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), "", &file_stream("a", common::free_port()));
    let (node, addr) = start_node(&config);
    let post = |body: &str| call(addr, "POST", "/api/v1/streams", Some(body), None);

    let (code, body) = post(r#"{"id":"x","inputs":["#);
    assert_eq!(code, 400, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("line 1"), "{body}");
    let (code, body) = post(r#"{"id":"x","inputs":["udp://127.0.0.1:5000"],"colour":"red"}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("colour"), "{body}");
    let (code, body) = post(r#"{"id":"Bad Id","inputs":["udp://127.0.0.1:5000"]}"#);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad stream id"), "{body}");
    for (input, says) in [
        ("file://media/../etc/passwd", ".."),
        ("file:///etc/passwd", "mount"),
        ("/etc/passwd", "mount"),
        ("file://elsewhere/clip.ts", "elsewhere"),
    ] {
        let (code, body) = post(&format!(r#"{{"id":"x","inputs":["{input}"]}}"#));
        assert_eq!(code, 400, "{input}: {body}");
        assert!(body.contains(says), "{input}: {body}");
    }
    // A symlink out of the mount is refused too.
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.ts")).unwrap();
    let (code, body) = post(r#"{"id":"x","inputs":["file://media/link.ts"]}"#);
    assert_eq!(code, 400, "{body}");
    let (code, body) = call(addr, "POST", "/api/v1/streams/a/switch", Some(r#"{"input":5}"#), None);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("out of range"), "{body}");
    let (code, body) = call(addr, "POST", "/api/v1/streams/zz/switch", Some(r#"{"input":0}"#), None);
    assert_eq!(code, 404, "{body}");
    let big = format!(r#"{{"id":"x","inputs":["{}"]}}"#, "a".repeat(100 << 10));
    assert_eq!(post(&big).0, 413);
    // Nothing was created by any of it.
    let (_, body) = call(addr, "GET", "/api/v1/streams", None, None);
    assert_eq!(json(&body)["streams"].as_array().unwrap().len(), 1, "{body}");
    stop_node(node);
}

#[test]
fn a_token_guards_mutating_calls() {
    let dir = tempfile::tempdir().unwrap();
    let token = "s3cret-token-0123456789";
    let config = config_with(dir.path(), &format!("token = \"{token}\""), "");
    let (node, addr) = start_node(&config);
    let def = r#"{"id":"t","inputs":["file://media/clip.ts?loop=true"]}"#;
    assert_eq!(call(addr, "POST", "/api/v1/streams", Some(def), None).0, 401);
    assert_eq!(call(addr, "POST", "/api/v1/streams", Some(def), Some("wrong-token-0123456789")).0, 401);
    assert_eq!(call(addr, "GET", "/api/v1/streams", None, None).0, 200);
    let (code, body) = call(addr, "POST", "/api/v1/streams", Some(def), Some(token));
    assert_eq!(code, 201, "{body}");
    assert_eq!(call(addr, "DELETE", "/api/v1/streams/t", None, None).0, 401);
    assert_eq!(call(addr, "DELETE", "/api/v1/streams/t", None, Some(token)).0, 204);
    stop_node(node);
}

#[test]
fn a_bad_config_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[node]\nlisten = \"127.0.0.1:0\"\n\n[[stream]]\nid = \"a\"\ninputs = [\"udp://1.2.3\"]\n")
        .unwrap();
    let out = common::uringest(&["serve", "--config", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.toml:6:"), "{err}");
    assert!(err.contains("input 1"), "{err}");
}
