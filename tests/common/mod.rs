//! Helpers shared by the integration tests: the binary, fixtures, ffprobe.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use uringest::shard::{Backend, IoChoice, backend};

pub mod node;

/// Path of a committed fixture.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Runs the built `uringest` with `args`.
pub fn uringest(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uringest")).args(args).output().expect("run uringest")
}

/// `uringest probe --json` of `path`, parsed; panics with stderr on failure.
pub fn probe_json(path: &Path) -> Value {
    let out = uringest(&["probe", "--json", path.to_str().unwrap()]);
    assert!(out.status.success(), "probe failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("probe prints JSON")
}

/// What ffmpeg's decoder says about `path` (empty: no errors).
pub fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg").args(["-v", "error", "-i"]).arg(path).args(["-f", "null", "-"]).output().unwrap();
    assert!(out.status.success(), "ffmpeg could not read {}", path.display());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// ffprobe's programs and streams of `path`. ffprobe comes from Debian's
/// ffmpeg package, which the README's test command installs.
pub fn ffprobe(path: &Path) -> Value {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_programs", "-show_streams", "-show_format", "-of", "json"])
        .arg(path)
        .output()
        .expect("ffprobe must be installed (the README's test command installs ffmpeg)");
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Parses ffprobe's `"0x100"` stream ids.
pub fn hex_id(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Backends to test: epoll always, io_uring when this kernel has it.
pub fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::Epoll];
    match backend::detect(IoChoice::Uring) {
        Ok(b) => all.push(b),
        Err(e) => eprintln!("skipping io_uring: {e}"),
    }
    all
}

/// A UDP port free on 127.0.0.1 when asked (the socket is closed again).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// ffmpeg looping the H.264 + AAC fixture in real time to `dest`, in
/// `format`; killed when dropped.
pub struct Sender(Child);

impl Sender {
    /// Starts ffmpeg; panics if it cannot run.
    pub fn start(format: &str, dest: &str) -> Sender {
        let child = Command::new("ffmpeg")
            .args(["-v", "error", "-re", "-stream_loop", "-1", "-i"])
            .arg(fixture("h264_aac.ts"))
            .args(["-c", "copy", "-f", format, dest])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ffmpeg must be installed (the README's test command installs it)");
        Sender(child)
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `uringest serve --listen 127.0.0.1:0` plus `args`, started; the child
/// and the address from the line that announces it. The rest of its
/// stderr is echoed by a thread, so the node never blocks on a full pipe.
pub fn start_serve(args: &[&str]) -> (Child, std::net::SocketAddr) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_uringest"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    for _ in 0..100 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        eprint!("node: {line}");
        if let Some(rest) = line.split("http://").nth(1) {
            addr = rest.split('/').next().map(|a| a.trim().parse().unwrap());
            break;
        }
    }
    let addr = addr.expect("the node announces its address");
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            eprintln!("node: {line}");
        }
    });
    (child, addr)
}
