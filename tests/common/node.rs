//! Talking to a running `uringest serve`: API calls, waiting on a stream's
//! state, recording its HTTP-TS output, stopping it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use uringest::clock::{Clock, SystemClock};

/// One request; (status code, body).
pub fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&str>, token: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let code = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = reply.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

/// `body` as JSON.
pub fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// `GET path` as JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> Value {
    json(&call(addr, "GET", path, None, None).1)
}

/// Polls stream `id` until `want` holds of its detail, at most `limit`.
pub fn wait_for(addr: SocketAddr, id: &str, limit: Duration, what: &str, want: impl Fn(&Value) -> bool) -> Value {
    let clock = SystemClock;
    let start = clock.now();
    loop {
        let detail = get_json(addr, &format!("/api/v1/streams/{id}"));
        if want(&detail) {
            return detail;
        }
        assert!(clock.now().duration_since(start) < limit, "timed out waiting for {what}: {detail:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Records `GET /streams/<id>.ts` until `stop` or the end of the body; the
/// body.
pub fn record(addr: SocketAddr, id: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Vec<u8>> {
    let path = format!("/streams/{id}.ts");
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        // HTTP/1.0: the body runs until the close, without chunking.
        write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 65536];
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => all.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("{e}"),
            }
        }
        let head = all.windows(4).position(|w| w == b"\r\n\r\n").expect("an HTTP header") + 4;
        all.split_off(head)
    })
}

/// Records stream `id` for `secs` seconds of wall time.
pub fn record_for(addr: SocketAddr, id: &str, secs: f64) -> Vec<u8> {
    let stop = Arc::new(AtomicBool::new(false));
    let recording = record(addr, id, Arc::clone(&stop));
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    recording.join().unwrap()
}

/// Stops the node with SIGTERM; it must exit cleanly.
pub fn stop_node(mut node: Child) {
    Command::new("sh").args(["-c", &format!("kill -TERM {}", node.id())]).status().unwrap();
    let status = node.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
