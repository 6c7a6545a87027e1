//! `uringest bench send` against a plain std `UdpSocket` receiver on
//! loopback: every datagram the sender reports arrives, whole, as
//! sync-aligned TS with unbroken continuity counters, at the rate asked
//! for; with and without GSO, over IPv4 and IPv6. Bad options exit 2 with
//! one line on stderr. Each run is bounded: the sender by `--duration`,
//! the receiver by a read timeout and an overall deadline.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use uringest::clock::{Clock, SystemClock};

const BIN: &str = env!("CARGO_BIN_EXE_uringest");

/// What the receiver saw.
#[derive(Debug, Default)]
struct Received {
    datagrams: u64,
    packets: u64,
    /// Datagrams that were not 1316 bytes of 0x47-aligned packets.
    malformed: u64,
    /// Packets whose continuity counter did not follow its PID's last one.
    cc_errors: u64,
}

/// A loopback receiver on `addr` (port 0: any), reading on its own thread
/// until `stop` is set and then 300 ms pass without a datagram.
fn receiver(addr: &str) -> Option<(SocketAddr, Arc<AtomicBool>, thread::JoinHandle<Received>)> {
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).unwrap();
    // The kernel caps this at rmem_max; at 50 Mbit/s even the default holds.
    socket.set_recv_buffer_size(16 << 20).unwrap();
    if let Err(e) = socket.bind(&addr.into()) {
        eprintln!("skipping {addr}: cannot bind ({e})");
        return None;
    }
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let local = socket.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_rx = Arc::clone(&stop);
    let handle = thread::spawn(move || {
        let clock = SystemClock;
        let give_up = clock.now() + Duration::from_secs(30);
        let mut buf = vec![0u8; 65_536];
        let mut got = Received::default();
        let mut last_cc: HashMap<u16, u8> = HashMap::new();
        let mut idle_since = None;
        while clock.now() < give_up {
            let len = match socket.recv(&mut buf) {
                Ok(len) => len,
                Err(_) => {
                    if stop_rx.load(Ordering::Acquire) {
                        let since = *idle_since.get_or_insert(clock.now());
                        if clock.now() - since >= Duration::from_millis(300) {
                            break;
                        }
                    }
                    continue;
                }
            };
            idle_since = None;
            got.datagrams += 1;
            let d = &buf[..len];
            if len != 1316 || d.chunks_exact(188).any(|p| p[0] != 0x47) {
                got.malformed += 1;
                continue;
            }
            for p in d.chunks_exact(188) {
                got.packets += 1;
                let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
                let cc = p[3] & 0x0F;
                if let Some(last) = last_cc.insert(pid, cc)
                    && cc != (last + 1) & 0x0F
                {
                    got.cc_errors += 1;
                }
            }
        }
        got
    });
    Some((local, stop, handle))
}

fn bench_send(args: &[&str]) -> Output {
    Command::new(BIN).arg("bench").arg("send").args(args).output().unwrap()
}

/// Sends 1 s at 50 Mbit/s to a receiver on `bind` and checks both ends.
fn send_and_check(bind: &str, gso: bool) {
    let Some((addr, stop, handle)) = receiver(bind) else { return };
    let url = match addr {
        SocketAddr::V4(a) => format!("udp://{a}"),
        SocketAddr::V6(a) => format!("udp://[{}]:{}", a.ip(), a.port()),
    };
    let mut args = vec![url.as_str(), "--rate", "50M", "--duration", "1", "--json"];
    if gso {
        args.push("--gso");
    }
    let clock = SystemClock;
    let started = clock.now();
    let out = bench_send(&args);
    let wall = clock.now() - started;
    stop.store(true, Ordering::Release);
    let got = handle.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    // 50e6 bit/s × 1 s / (1316 × 8) bits = 4749.2, so 4750 datagrams.
    assert_eq!(r["datagrams"], 4750, "{r}");
    assert_eq!(r["packets"], 4750 * 7);
    assert_eq!(r["bytes"], 4750 * 1316);
    assert_eq!(r["pkt"], 1316);
    assert_eq!(r["gso"], gso);
    assert_eq!(r["target_bits_per_sec"], 50_000_000);
    assert_eq!(r["send_errors"], 0, "{r}");
    assert!(r["send_calls"].as_u64().unwrap() > 0);
    let bps = r["bits_per_sec"].as_f64().unwrap();
    assert!((bps / 50e6 - 1.0).abs() < 0.05, "achieved {bps} bit/s");
    let secs = r["seconds"].as_f64().unwrap();
    assert!((1.0..1.2).contains(&secs), "ran {secs} s");
    assert!(wall < Duration::from_secs(5), "took {wall:?}");

    assert_eq!(got.datagrams, 4750, "{got:?}");
    assert_eq!(got.packets, 4750 * 7, "{got:?}");
    assert_eq!(got.malformed, 0, "{got:?}");
    assert_eq!(got.cc_errors, 0, "{got:?}");
}

#[test]
fn paced_send_arrives_whole_and_continuous() {
    send_and_check("127.0.0.1:0", false);
}

#[test]
fn gso_send_arrives_as_single_datagrams() {
    send_and_check("127.0.0.1:0", true);
}

#[test]
fn ipv6_loopback() {
    send_and_check("[::1]:0", false);
}

#[test]
fn bad_input_exits_2_with_one_line() {
    for (args, needle) in [
        (&["udp://127.0.0.1:5000", "--rate", "abc"][..], "--rate"),
        (&["udp://127.0.0.1:5000", "--rate", "1G", "--pkt", "100"][..], "--pkt"),
        (&["http://127.0.0.1:5000", "--rate", "1G"][..], "'http://127.0.0.1:5000' is not a udp:// URL"),
        (&["file:///tmp/x.ts", "--rate", "1G"][..], "not a udp:// URL"),
        (&["udp://127.0.0.1:5000", "--rate", "1G", "--duration", "0"][..], "--duration"),
        (&["udp://127.0.0.1:5000?rcvbuf=1M", "--rate", "1G"][..], "'rcvbuf'"),
    ] {
        let out = bench_send(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn nobody_listening_is_counted_not_fatal() {
    // A port with no socket: loopback answers with ICMP port unreachable,
    // which later sends see as ECONNREFUSED; the sender counts and goes on.
    let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("udp://127.0.0.1:{port}");
    let out = bench_send(&[&url, "--rate", "10M", "--duration", "0.3", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["datagrams"], r["planned_datagrams"], "{r}");
    assert!(r["refused"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["send_errors"], r["refused"]);
}

#[test]
fn max_rate_reports_null_target() {
    let Some((addr, stop, handle)) = receiver("127.0.0.1:0") else { return };
    let url = format!("udp://{addr}");
    let out = bench_send(&[&url, "--rate", "max", "--duration", "0.3", "--json"]);
    stop.store(true, Ordering::Release);
    let got = handle.join().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["target_bits_per_sec"], Value::Null);
    assert!(r["datagrams"].as_u64().unwrap() > 1000, "{r}");
    // Unpaced, the receiver may fall behind and the kernel drop some (so
    // continuity may break); what arrives is still whole, aligned TS.
    assert!(got.datagrams > 0);
    assert_eq!(got.malformed, 0, "{got:?}");
}

/// `bench recv` on each backend counts exactly what `bench send` sent,
/// with and without GSO (the receiver's GRO batches split back into
/// datagrams by the counters).
#[test]
fn bench_recv_counts_every_datagram_sent() {
    for io in ["uring", "epoll"] {
        for gso in [false, true] {
            let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let url = format!("udp://127.0.0.1:{port}");
            let rx = Command::new(BIN)
                .args(["bench", "recv", "--json", "--io", io, "--duration", "3", &url])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // Let the receiver bind before the first datagram.
            thread::sleep(Duration::from_millis(700));
            let mut args = vec![url.as_str(), "--rate", "100M", "--duration", "1", "--json"];
            if gso {
                args.push("--gso");
            }
            let tx = bench_send(&args);
            assert!(tx.status.success(), "{}", String::from_utf8_lossy(&tx.stderr));
            let sent: Value = serde_json::from_slice(&tx.stdout).unwrap();
            let out = rx.wait_with_output().unwrap();
            assert!(out.status.success(), "{io}: {}", String::from_utf8_lossy(&out.stderr));
            let got: Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(got["io"], if io == "uring" { "io_uring" } else { "epoll" });
            assert_eq!(got["datagrams"], sent["datagrams"], "{io} gso={gso}");
            assert_eq!(got["ts_packets"], sent["packets"], "{io} gso={gso}");
            assert_eq!(got["kernel_drops"], 0, "{io} gso={gso}");
            assert_eq!(got["pool_drops"], 0, "{io} gso={gso}");
        }
    }
}
