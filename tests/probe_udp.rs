//! `probe udp://` with ffmpeg from Debian as a real sender on loopback, on
//! both backends: plain TS over UDP, multicast on `lo`, and RTP-wrapped TS
//! (`-f rtp_mpegts`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Sender, free_port, uringest};
use serde_json::Value;
use uringest::shard::backend::{self, IoChoice};

fn backends() -> Vec<&'static str> {
    let mut all = vec!["epoll"];
    match backend::detect(IoChoice::Uring) {
        Ok(_) => all.push("uring"),
        Err(e) => eprintln!("skipping io_uring: {e}"),
    }
    all
}

/// `probe --json --duration 2.5 --io <io> <url>` while `sender` runs.
fn probe_live(io: &str, url: &str, sender: impl FnOnce() -> Sender) -> Value {
    let _sender = sender();
    let out = uringest(&["probe", "--json", "--duration", "2.5", "--io", io, url]);
    assert!(out.status.success(), "probe {url} on {io} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// H.264 + AAC found, nothing lost, and the backend named.
fn check(r: &Value, io: &str) {
    let codecs: Vec<&str> =
        r["programs"][0]["streams"].as_array().unwrap().iter().map(|s| s["codec"].as_str().unwrap()).collect();
    assert_eq!(codecs, ["h264", "aac"], "{io}: {r}");
    assert_eq!(r["io"], if io == "uring" { "io_uring" } else { "epoll" });
    assert_eq!(r["errors"]["cc_errors"], 0, "{io}: {r}");
    assert_eq!(r["input"]["kernel_drops"], 0, "{io}");
    assert_eq!(r["input"]["non_ts_dropped"], 0, "{io}");
    // The clip runs at about 256 kbit/s: some 170 packets a second.
    assert!(r["ts_packets"].as_u64().unwrap() > 250, "{io}: {r}");
    let per_pid: u64 = r["pids"].as_array().unwrap().iter().map(|p| p["packets"].as_u64().unwrap()).sum();
    assert_eq!(per_pid, r["ts_packets"].as_u64().unwrap());
    assert_eq!(r["input"]["ts_packets"], r["ts_packets"], "every received packet analyzed");
}

#[test]
fn plain_udp_from_ffmpeg() {
    for io in backends() {
        let port = free_port();
        let r = probe_live(io, &format!("udp://127.0.0.1:{port}"), || {
            Sender::start("mpegts", &format!("udp://127.0.0.1:{port}?pkt_size=1316"))
        });
        check(&r, io);
        assert_eq!(r["input"]["rtp_datagrams"], 0);
    }
}

#[test]
fn multicast_on_lo_from_ffmpeg() {
    for io in backends() {
        let port = free_port();
        let r = probe_live(io, &format!("udp://239.255.7.7:{port}?iface=127.0.0.1"), || {
            Sender::start("mpegts", &format!("udp://239.255.7.7:{port}?pkt_size=1316&localaddr=127.0.0.1&ttl=1"))
        });
        check(&r, io);
    }
}

#[test]
fn rtp_wrapped_ts_from_ffmpeg() {
    for io in backends() {
        let port = free_port();
        let r = probe_live(io, &format!("udp://127.0.0.1:{port}"), || {
            Sender::start("rtp_mpegts", &format!("rtp://127.0.0.1:{port}"))
        });
        check(&r, io);
        let rtp = r["input"]["rtp_datagrams"].as_u64().unwrap();
        assert!(rtp > 0 && rtp == r["input"]["datagrams"].as_u64().unwrap(), "all datagrams are RTP: {r}");
        assert_eq!(r["input"]["rtp_seq_gaps"], 0);
    }
}

#[test]
fn silence_is_an_error_naming_the_input() {
    let port = free_port();
    let url = format!("udp://127.0.0.1:{port}");
    let out = uringest(&["probe", "--duration", "0.3", &url]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&url) && stderr.contains("no MPEG-TS received"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
