//! `udp://` input on real loopback sockets, on both backends: what is sent
//! arrives byte for byte, and everything else is counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use common::backends;
use uringest::input::udp::{UdpInput, UdpStats};
use uringest::shard::{Backend, Shards};
use uringest::url::{InputSpec, parse_input};

/// Seven TS packets whose payload bytes encode `n`, with PID 0x100 and
/// continuity counters following on from datagram to datagram.
fn ts_datagram(n: u32) -> Vec<u8> {
    let mut d = Vec::with_capacity(1316);
    for k in 0..7u32 {
        let mut p = [0u8; 188];
        p[0] = 0x47;
        p[1] = 0x01;
        p[2] = 0x00;
        p[3] = 0x10 | ((n * 7 + k) & 0x0F) as u8;
        p[4..8].copy_from_slice(&n.to_be_bytes());
        p[8] = k as u8;
        d.extend_from_slice(&p);
    }
    d
}

fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut d = vec![0x80, 33];
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&[0, 0, 0, 1, 0xDE, 0xAD, 0xBE, 0xEF]);
    d.extend_from_slice(payload);
    d
}

/// Opens `url` on a shard of `backend`, tells the test its bound address,
/// then collects chunks until `bytes` bytes arrived or 5 s passed.
/// `{port}` in `url` becomes a port that was free a moment ago.
fn receive(backend: Backend, url: &str, bytes: usize, send: impl FnOnce(SocketAddr)) -> (Vec<u8>, UdpStats) {
    let probe = if url.contains("[::1]") { "[::1]:0" } else { "127.0.0.1:0" };
    let port = UdpSocket::bind(probe).unwrap().local_addr().unwrap().port();
    let url = url.replace("{port}", &port.to_string());
    let InputSpec::Udp(spec) = parse_input(&url).unwrap() else { panic!("not udp: {url}") };
    let shards = Shards::start(1, backend, false).unwrap();
    let (addr_tx, addr_rx) = mpsc::channel();
    let done = shards
        .spawn(move || async move {
            let mut input = UdpInput::open(&spec, backend).unwrap();
            addr_tx.send(input.local_addr()).unwrap();
            let mut got = Vec::new();
            let mut chunks: Vec<Bytes> = Vec::new();
            let deadline = tokio::time::sleep(Duration::from_secs(5));
            tokio::pin!(deadline);
            while got.len() < bytes {
                chunks.clear();
                tokio::select! {
                    r = input.read_batch(&mut chunks) => r.unwrap(),
                    _ = &mut deadline => break,
                }
                for c in &chunks {
                    assert_eq!(c.len() % 188, 0, "chunks hold whole packets");
                    got.extend_from_slice(c);
                }
            }
            (got, input.stats())
        })
        .unwrap();
    let addr = addr_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    send(addr);
    done.blocking_recv().unwrap()
}

#[test]
fn unicast_ts_arrives_byte_exact() {
    for backend in backends() {
        let sent: Vec<Vec<u8>> = (0..300).map(ts_datagram).collect();
        let expected: Vec<u8> = sent.concat();
        let (got, stats) = receive(backend, "udp://127.0.0.1:{port}", expected.len(), |addr| {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            for d in &sent {
                tx.send_to(d, addr).unwrap();
            }
        });
        assert_eq!(got.len(), expected.len(), "{backend}: bytes received");
        assert!(got == expected, "{backend}: payload differs");
        assert_eq!(stats.datagrams.datagrams, 300, "{backend}");
        assert_eq!(stats.datagrams.ts_packets, 2100, "{backend}");
        assert_eq!(stats.recv.kernel_drops, 0, "{backend}");
    }
}

#[test]
fn rtp_is_stripped_gaps_and_junk_are_counted() {
    for backend in backends() {
        // 50 RTP datagrams with sequence 10 missing, then a junk datagram
        // and a 1317-byte (odd) one.
        let mut expected = Vec::new();
        let mut wire = Vec::new();
        for seq in 0..51u16 {
            if seq == 10 {
                continue;
            }
            let ts = ts_datagram(u32::from(seq));
            expected.extend_from_slice(&ts);
            wire.push(rtp(seq, &ts));
        }
        wire.push(b"definitely not a transport stream".to_vec());
        let mut odd = ts_datagram(99);
        odd.push(0xAA);
        expected.extend_from_slice(&odd[..1316]);
        wire.push(odd);
        let (got, stats) = receive(backend, "udp://127.0.0.1:{port}", expected.len(), |addr| {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            for d in &wire {
                tx.send_to(d, addr).unwrap();
            }
        });
        assert!(got == expected, "{backend}: payload differs ({} vs {} bytes)", got.len(), expected.len());
        let d = &stats.datagrams;
        assert_eq!((d.datagrams, d.rtp_datagrams, d.rtp_seq_gaps), (52, 50, 1), "{backend}");
        assert_eq!((d.non_ts_dropped, d.odd_size, d.odd_tail_bytes), (1, 1, 1), "{backend}");
    }
}

#[test]
fn rtp_off_drops_rtp_datagrams() {
    for backend in backends() {
        let plain = ts_datagram(1);
        let (got, stats) = receive(backend, "udp://127.0.0.1:{port}?rtp=0", plain.len(), |addr| {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            tx.send_to(&rtp(1, &ts_datagram(0)), addr).unwrap();
            tx.send_to(&plain, addr).unwrap();
        });
        assert!(got == plain, "{backend}");
        assert_eq!(stats.datagrams.non_ts_dropped, 1, "{backend}");
    }
}

#[test]
fn ipv6_unicast() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback");
        return;
    }
    for backend in backends() {
        let sent: Vec<u8> = (0..20).flat_map(ts_datagram).collect();
        let (got, _) = receive(backend, "udp://[::1]:{port}", sent.len(), |addr| {
            let tx = UdpSocket::bind("[::1]:0").unwrap();
            for d in sent.chunks(1316) {
                tx.send_to(d, addr).unwrap();
            }
        });
        assert!(got == sent, "{backend}");
    }
}

#[test]
fn a_paused_sender_is_not_an_end_of_stream() {
    for backend in backends() {
        let sent: Vec<u8> = (0..40).flat_map(ts_datagram).collect();
        let (got, _) = receive(backend, "udp://127.0.0.1:{port}", sent.len(), |addr| {
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            for d in sent[..20 * 1316].chunks(1316) {
                tx.send_to(d, addr).unwrap();
            }
            std::thread::sleep(Duration::from_millis(300));
            // A new sender socket, as a restarted process would have.
            let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
            for d in sent[20 * 1316..].chunks(1316) {
                tx.send_to(d, addr).unwrap();
            }
        });
        assert!(got == sent, "{backend}");
    }
}

/// A sender of multicast on `lo` (interface 127.0.0.1), bound to `from`.
fn multicast_sender(from: &str) -> UdpSocket {
    let tx = UdpSocket::bind(from).unwrap();
    let sock = socket2::SockRef::from(&tx);
    sock.set_multicast_if_v4(&"127.0.0.1".parse().unwrap()).unwrap();
    sock.set_multicast_loop_v4(true).unwrap();
    tx
}

#[test]
fn multicast_on_lo_two_groups_on_one_port_stay_apart() {
    for backend in backends() {
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let ours: Vec<u8> = (0..30).flat_map(ts_datagram).collect();
        let theirs: Vec<u8> = (100..130).flat_map(ts_datagram).collect();
        // A second input on the other group and the same port, open the
        // whole time, must not take ours nor give us theirs.
        let other_url = format!("udp://239.255.42.2:{port}?iface=127.0.0.1");
        let InputSpec::Udp(other_spec) = parse_input(&other_url).unwrap() else { unreachable!() };
        let shards = Shards::start(1, backend, false).unwrap();
        let (ready_tx, ready_rx) = mpsc::channel();
        let other = shards
            .spawn(move || async move {
                let mut input = UdpInput::open(&other_spec, backend).unwrap();
                ready_tx.send(()).unwrap();
                let mut got = Vec::new();
                let mut chunks = Vec::new();
                let deadline = tokio::time::sleep(Duration::from_secs(5));
                tokio::pin!(deadline);
                while got.len() < 30 * 1316 {
                    chunks.clear();
                    tokio::select! {
                        r = input.read_batch(&mut chunks) => r.unwrap(),
                        _ = &mut deadline => break,
                    }
                    chunks.iter().for_each(|c: &Bytes| got.extend_from_slice(c));
                }
                got
            })
            .unwrap();
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let url = format!("udp://239.255.42.1:{port}?iface=127.0.0.1");
        let (got, stats) = receive(backend, &url, ours.len(), |_| {
            let tx = multicast_sender("127.0.0.1:0");
            for (a, b) in ours.chunks(1316).zip(theirs.chunks(1316)) {
                tx.send_to(a, ("239.255.42.1", port)).unwrap();
                tx.send_to(b, ("239.255.42.2", port)).unwrap();
            }
        });
        assert!(got == ours, "{backend}: group 1 got {} bytes, not its own", got.len());
        assert_eq!(stats.datagrams.datagrams, 30, "{backend}: nothing of the other group");
        let other_got = other.blocking_recv().unwrap();
        assert!(other_got == theirs, "{backend}: group 2 got {} bytes, not its own", other_got.len());
    }
}

#[test]
fn ssm_takes_only_the_named_source() {
    for backend in backends() {
        let wanted: Vec<u8> = (0..20).flat_map(ts_datagram).collect();
        let url = "udp://232.1.2.3:{port}?iface=127.0.0.1&source=127.0.0.1";
        let (got, stats) = receive(backend, url, wanted.len(), |addr| {
            let port = addr.port();
            let good = multicast_sender("127.0.0.1:0");
            let bad = multicast_sender("127.0.0.2:0");
            for (n, d) in wanted.chunks(1316).enumerate() {
                bad.send_to(&ts_datagram(1000 + n as u32), ("232.1.2.3", port)).unwrap();
                good.send_to(d, ("232.1.2.3", port)).unwrap();
            }
        });
        assert!(got == wanted, "{backend}: got {} bytes", got.len());
        assert_eq!(stats.datagrams.datagrams, 20, "{backend}: the other source was filtered");
    }
}

/// A consumer that holds every chunk it gets never stalls the receiver:
/// past the pool, datagrams are copied to the heap, past the heap cap
/// (32 MiB) they are dropped, and every one is counted. Sent: 30 000
/// datagrams of 1316 bytes (39 MB), in bursts the socket buffer absorbs.
#[test]
fn held_buffers_fall_back_to_the_heap_then_drop_and_count() {
    const SENT: u64 = 30_000;
    for backend in backends() {
        let port = UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let InputSpec::Udp(spec) = parse_input(&format!("udp://127.0.0.1:{port}?rcvbuf=64M")).unwrap() else {
            panic!("not udp")
        };
        let shards = Shards::start(1, backend, false).unwrap();
        let (addr_tx, addr_rx) = mpsc::channel();
        let done = shards
            .spawn(move || async move {
                let mut input = UdpInput::open(&spec, backend).unwrap();
                addr_tx.send(input.local_addr()).unwrap();
                // Never cleared: every chunk stays held.
                let mut held: Vec<Bytes> = Vec::new();
                let deadline = tokio::time::sleep(Duration::from_secs(20));
                tokio::pin!(deadline);
                loop {
                    let s = input.stats();
                    if s.datagrams.datagrams + s.recv.pool_drops + s.recv.kernel_drops >= SENT {
                        break;
                    }
                    // Once past the heap cap every datagram is dropped and
                    // read_batch has nothing to return: look at the counters
                    // every 50 ms.
                    tokio::select! {
                        r = input.read_batch(&mut held) => r.unwrap(),
                        _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                        _ = &mut deadline => break,
                    }
                }
                (held.iter().map(|c| c.len()).sum::<usize>(), input.stats())
            })
            .unwrap();
        let addr = addr_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        for n in 0..SENT as u32 {
            tx.send_to(&ts_datagram(n), addr).unwrap();
            if n % 2000 == 1999 {
                // Let the receiver keep up: the point is the pool, not the
                // socket buffer.
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let (held_bytes, stats) = done.blocking_recv().unwrap();
        let (d, r) = (&stats.datagrams, &stats.recv);
        assert_eq!(r.kernel_drops, 0, "{backend}");
        assert_eq!(d.datagrams + r.pool_drops, SENT, "{backend}: every datagram received or counted as dropped");
        assert_eq!(held_bytes as u64, d.datagrams * 1316, "{backend}");
        assert!(r.pool_fallbacks > 0, "{backend}: heap copies once the pool is held");
        assert!(r.pool_drops > 0, "{backend}: drops past the heap cap");
        // The cap bounds the heap copies: 32 MiB of 1316-byte datagrams.
        assert!(r.pool_fallbacks <= (32 << 20) / 1316 + 1, "{backend}: {} heap copies", r.pool_fallbacks);
        shards.shutdown();
    }
}
