//! `uringest serve` without a config: the embedded demo stream over HTTP,
//! read by ffprobe; health, 404 and 405; a clean stop on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;
use uringest::clock::{Clock, SystemClock};

/// The node on an ephemeral port, and the address it reports.
fn start() -> (Child, SocketAddr) {
    common::start_serve(&[])
}

/// A raw HTTP/1.1 request; the status line and the body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let status = reply.lines().next().unwrap_or_default().to_owned();
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

#[test]
fn the_demo_stream_is_served_and_the_node_stops_cleanly() {
    let (mut node, addr) = start();
    let (status, body) = request(addr, "GET", "/healthz");
    assert!(status.contains("200"), "{status}");
    assert_eq!(body.trim(), "ok");
    assert!(request(addr, "GET", "/streams/nope.ts").0.contains("404"));
    assert!(request(addr, "GET", "/other").0.contains("404"));
    assert!(request(addr, "POST", "/streams/demo.ts").0.contains("405"));

    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json", "-rw_timeout", "5000000"])
        .arg(format!("http://{addr}/streams/demo.ts"))
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    let probe: Value = serde_json::from_slice(&probe.stdout).unwrap();
    let codecs: Vec<&str> =
        probe["streams"].as_array().unwrap().iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{probe}");

    let killed = Command::new("sh").args(["-c", &format!("kill -TERM {}", node.id())]).status().unwrap();
    assert!(killed.success());
    let start = SystemClock.now();
    let status = loop {
        if let Some(s) = node.try_wait().unwrap() {
            break s;
        }
        assert!(SystemClock.now() - start < Duration::from_secs(5), "serve kept running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn a_busy_port_is_a_one_line_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = common::uringest(&["serve", "--listen", &addr]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(&addr) && err.trim().lines().count() == 1, "{err}");
}
