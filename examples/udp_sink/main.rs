//! A multi-port UDP sink for `perf/relay.sh`: one process, one thread,
//! receiving a forwarder's outputs on many ports and saying, per port, what
//! arrived, what was lost where, and how evenly it arrived. Not a uringest
//! command; build it with `cargo build --release --example udp_sink`.
//!
//! ```text
//! udp_sink --base-port 6000 --ports 16 --duration 8 [--bind-ip 127.0.0.1]
//!          [--rcvbuf 16777216] [--no-gro] [--burst-gap-us 5] [--poll-us 1000]
//! udp_sink --port 6000 --port 6005 ...
//! ```
//!
//! Non-blocking sockets, swept in turn: each is read with `recvmmsg` of up
//! to 64 messages until it is empty, then the thread sleeps
//! `--poll-us` (default 1000 µs) before the next sweep. Nobody waits on
//! the sockets, so a send into them wakes no one: the forwarder under test
//! pays for no wakeups, and the sink reads in large batches, keeping its
//! own CPU (reported as `cpu_user_s`/`cpu_sys_s`) a small share of the
//! core it shares with the sender. Reading late costs nothing in accuracy:
//! gaps come from kernel timestamps taken at send time (below), and the
//! receive buffers hold many sweeps' worth of datagrams.
//!
//! Per port it counts datagrams and bytes, and checks the transport
//! stream: every 188-byte packet's sync byte, and continuity counters per
//! PID (`cc_errors`: discontinuities). Loss is counted exactly from the
//! packet index `bench send` writes into each data packet (PID 0x100, see
//! `uringest::bench::payload`): datagram `k` carries packets `7k..7k+6`,
//! so `missing` is the sum of the holes between the first and last
//! datagram seen (the CC alone misses a loss of 16 datagrams: 112 packets
//! wrap the counter exactly). Loss before the first or after the last
//! datagram shows as `first_seq > 0` or against the sender's count.
//! `kernel_drops` is the socket's own overflow count (`SO_RXQ_OVFL`), which
//! tells loss in the sink apart from loss upstream; with GRO it counts
//! dropped skbs, which may hold many datagrams.
//!
//! Gaps come from kernel receive timestamps (`SO_TIMESTAMPNS`). On loopback
//! the kernel stamps a datagram when the sender's `send` hands it to the
//! loopback device, so a gap is the time between two sends as the sender
//! made them, not as this process got round to reading them.
//!
//! GRO: on by default (`UDP_GRO`; `--no-gro` turns it off). With it, a GSO
//! send reaches the socket as one skb holding its whole run of datagrams,
//! with one timestamp: those datagrams left in one system call, back to
//! back, and are counted with gaps of 0 between them. Without it, the
//! kernel cuts the skb into datagrams on delivery, in the sender's context
//! (on loopback, the forwarder's core and CPU time), and they all carry the
//! same timestamp anyway, so the gap figures are the same either way; GRO
//! just keeps the sink's segmentation cost off the forwarder under test.
//! Datagrams sent one per `sendmmsg` message are separate skbs with their
//! own timestamps, with or without GRO (loopback does no GRO of its own).
//!
//! A burst is a run of datagrams on one port each arriving less than
//! `--burst-gap-us` (default 5 µs, half the 10.5 µs between 1316-byte
//! datagrams at 1 Gbit/s) after the one before; `burst` gives percentiles
//! of burst lengths in datagrams, over bursts.
//!
//! Prints one JSON object on stdout: run-wide figures and `ports`, one
//! object per port, and `all`: the gap and burst percentiles of all ports
//! merged. Gap percentiles are in µs, from a histogram with 0.1 µs buckets
//! below 100 µs and 1 % wide ones above; `max` is exact.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use uringest::bench::payload::DATA_PID;
use uringest::clock::{Clock, SystemClock};

mod histogram;
use histogram::{BurstHistogram, GapHistogram};

#[path = "../support/mod.rs"]
mod support;
use support::{BATCH, RecvBatch, RxOptions, SYNC, TS_PACKET};

const NAME: &str = "udp_sink";
/// Buffer per message with GRO: a coalesced run of up to 64 KiB.
const GRO_BUF: usize = 65_536;
/// Buffer per message without GRO.
const PLAIN_BUF: usize = 2048;
/// recvmmsg calls on one socket per sweep (a bound, not a pace: 64 Mi
/// datagrams, more than a second of any loopback stream).
const CALLS_PER_SWEEP: usize = 1 << 20;
/// Most ports one sink listens on.
const MAX_PORTS: usize = 4096;

/// Receives on many UDP ports and reports loss and arrival gaps per port.
#[derive(Parser, Debug)]
struct Args {
    /// Address to bind the ports on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_ip: IpAddr,
    /// First port of a range (with --ports).
    #[arg(long, requires = "ports", conflicts_with = "port")]
    base_port: Option<u16>,
    /// Number of ports in the range starting at --base-port.
    #[arg(long, requires = "base_port")]
    ports: Option<usize>,
    /// One port to listen on; repeat for more.
    #[arg(long)]
    port: Vec<u16>,
    /// Seconds to listen.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Receive buffer per socket to ask for, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    rcvbuf: usize,
    /// Do not enable UDP_GRO.
    #[arg(long)]
    no_gro: bool,
    /// A datagram closer than this to the one before is in the same burst.
    #[arg(long, default_value_t = 5.0)]
    burst_gap_us: f64,
    /// Sleep between sweeps over the sockets, in µs.
    #[arg(long, default_value_t = 1000)]
    poll_us: u64,
}

/// Everything known about one port.
struct Port {
    port: u16,
    datagrams: u64,
    bytes: u64,
    skbs: u64,
    not_ts: u64,
    cc_errors: u64,
    /// Last continuity counter per PID; 0xFF: not seen yet.
    cc: Vec<u8>,
    first_seq: Option<u64>,
    next_seq: u64,
    missing: u64,
    out_of_order: u64,
    kernel_drops: u32,
    last_ns: Option<u64>,
    burst_gap_ns: u64,
    burst: u64,
    gaps: GapHistogram,
    bursts: BurstHistogram,
}

impl Port {
    fn new(port: u16, burst_gap_ns: u64) -> Self {
        Port {
            port,
            datagrams: 0,
            bytes: 0,
            skbs: 0,
            not_ts: 0,
            cc_errors: 0,
            cc: vec![0xFF; 8192],
            first_seq: None,
            next_seq: 0,
            missing: 0,
            out_of_order: 0,
            kernel_drops: 0,
            last_ns: None,
            burst_gap_ns,
            burst: 0,
            gaps: GapHistogram::new(),
            bursts: BurstHistogram::new(),
        }
    }

    /// One skb: `bytes` cut into datagrams of `segment` bytes, stamped `ns`.
    fn skb(&mut self, bytes: &[u8], segment: usize, ns: Option<u64>) {
        self.skbs += 1;
        let mut first = true;
        for d in bytes.chunks(segment.max(1)) {
            self.datagram(d);
            let Some(ns) = ns else { continue };
            // The first datagram's gap is from the previous skb; the rest
            // of the skb left in the same send, so their gaps are 0.
            let gap = if first { self.last_ns.map(|last| ns.saturating_sub(last)) } else { Some(0) };
            first = false;
            match gap {
                Some(g) => {
                    self.gaps.add(g, 1);
                    if g < self.burst_gap_ns {
                        self.burst += 1;
                    } else {
                        self.bursts.add(self.burst);
                        self.burst = 1;
                    }
                }
                None => self.burst = 1,
            }
            self.last_ns = Some(ns);
        }
    }

    fn datagram(&mut self, d: &[u8]) {
        self.datagrams += 1;
        self.bytes += d.len() as u64;
        if d.is_empty() || d.len() % TS_PACKET != 0 || d.chunks_exact(TS_PACKET).any(|p| p[0] != SYNC) {
            self.not_ts += 1;
            return;
        }
        let per_datagram = (d.len() / TS_PACKET) as u64;
        let mut seq = None;
        for p in d.chunks_exact(TS_PACKET) {
            let pid = (u16::from(p[1] & 0x1F) << 8) | u16::from(p[2]);
            let afc = (p[3] >> 4) & 0x3;
            let cc = p[3] & 0x0F;
            // CC counts packets with payload only (ISO/IEC 13818-1 2.4.3.3).
            if afc & 0x1 != 0 {
                let last = &mut self.cc[usize::from(pid)];
                if *last != 0xFF && cc != (*last + 1) & 0x0F {
                    self.cc_errors += 1;
                }
                *last = cc;
            }
            if seq.is_none() && pid == DATA_PID && afc & 0x1 != 0 {
                let start = if afc == 0x3 { 5 + usize::from(p[4]) } else { 4 };
                if let Some(index) = p.get(start..start + 8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                    seq = Some(u64::from_be_bytes(index) / per_datagram);
                }
            }
        }
        let Some(seq) = seq else { return };
        if self.first_seq.is_none() {
            self.first_seq = Some(seq);
            self.next_seq = seq + 1;
        } else if seq >= self.next_seq {
            self.missing += seq - self.next_seq;
            self.next_seq = seq + 1;
        } else {
            self.out_of_order += 1;
        }
    }

    fn finish(&mut self) {
        self.bursts.add(self.burst);
        self.burst = 0;
    }

    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "port": self.port,
            "datagrams": self.datagrams,
            "bytes": self.bytes,
            "skbs": self.skbs,
            "not_ts": self.not_ts,
            "cc_errors": self.cc_errors,
            "first_seq": self.first_seq,
            "last_seq": self.first_seq.map(|_| self.next_seq.saturating_sub(1)),
            "missing": self.missing,
            "out_of_order": self.out_of_order,
            "kernel_drops": self.kernel_drops,
            "gap_us": self.gaps.json(),
            "burst": self.bursts.json(),
        })
    }
}

fn cpu_times() -> (f64, f64) {
    // SAFETY: rusage is a plain C struct; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return (0.0, 0.0);
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

fn main() -> ExitCode {
    let args = match support::parse_args::<Args>(NAME, |a| a.duration) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if !(args.burst_gap_us.is_finite() && args.burst_gap_us >= 0.0 && args.burst_gap_us <= 1e6) {
        return support::fail(NAME, "--burst-gap-us", format!("{} is not in [0, 1000000]", args.burst_gap_us));
    }
    let ports: Vec<u16> = match (args.base_port, args.ports) {
        (Some(base), Some(n)) if (1..=MAX_PORTS).contains(&n) && usize::from(base) + n - 1 <= usize::from(u16::MAX) => {
            (0..n).map(|i| base + i as u16).collect()
        }
        (Some(base), Some(n)) => {
            return support::fail(
                NAME,
                "--base-port/--ports",
                format!("{n} ports from {base}: need 1..={MAX_PORTS} ports below 65536"),
            );
        }
        _ if args.port.is_empty() => {
            return support::fail(NAME, "ports", "give --base-port P --ports N, or --port P (repeatable)");
        }
        _ if args.port.len() > MAX_PORTS => return support::fail(NAME, "--port", format!("at most {MAX_PORTS} ports")),
        _ => args.port.clone(),
    };
    let gro = !args.no_gro;
    let opts = RxOptions { timestamps: true, gro, nonblocking: true, ..RxOptions::default() };
    let mut sockets = Vec::with_capacity(ports.len());
    for &p in &ports {
        match support::open_rx(SocketAddr::new(args.bind_ip, p), args.rcvbuf, &opts) {
            Ok(s) => sockets.push(s),
            Err(e) => return support::fail(NAME, "setup", e),
        }
    }
    let burst_gap_ns = (args.burst_gap_us * 1e3) as u64;
    let mut stats: Vec<Port> = ports.iter().map(|&p| Port::new(p, burst_gap_ns)).collect();
    let mut batch = RecvBatch::new(if gro { GRO_BUF } else { PLAIN_BUF });
    let poll = Duration::from_micros(args.poll_us.min(1_000_000));
    let clock = SystemClock;
    let start = clock.now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let (mut sweeps, mut recv_calls) = (0u64, 0u64);
    while clock.now() < deadline {
        sweeps += 1;
        for (socket, port) in sockets.iter().zip(stats.iter_mut()) {
            for _ in 0..CALLS_PER_SWEEP {
                recv_calls += 1;
                let got = match batch.receive(socket.as_raw_fd(), libc::MSG_DONTWAIT) {
                    Ok(got) => got,
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => break,
                    Err(e) => return support::fail(NAME, "recvmmsg", format!("port {}: {e}", port.port)),
                };
                for j in 0..got {
                    let (bytes, meta) = batch.message(j);
                    if let Some(d) = meta.drops {
                        port.kernel_drops = port.kernel_drops.max(d);
                    }
                    port.skb(bytes, meta.segment.unwrap_or(bytes.len()), meta.ns);
                }
                if got < BATCH {
                    break;
                }
            }
        }
        std::thread::sleep(poll);
    }
    let seconds = (clock.now() - start).as_secs_f64();
    let (mut all_gaps, mut all_bursts) = (GapHistogram::new(), BurstHistogram::new());
    for p in &mut stats {
        p.finish();
        all_gaps.merge(&p.gaps);
        all_bursts.merge(&p.bursts);
    }
    let (user, sys) = cpu_times();
    let report = serde_json::json!({
        "seconds": seconds,
        "gro": gro,
        "burst_gap_us": args.burst_gap_us,
        "datagrams": stats.iter().map(|p| p.datagrams).sum::<u64>(),
        "missing": stats.iter().map(|p| p.missing).sum::<u64>(),
        "cc_errors": stats.iter().map(|p| p.cc_errors).sum::<u64>(),
        "kernel_drops": stats.iter().map(|p| u64::from(p.kernel_drops)).sum::<u64>(),
        "sweeps": sweeps,
        "recv_calls": recv_calls,
        "cpu_user_s": user,
        "cpu_sys_s": sys,
        "all": {"gap_us": all_gaps.json(), "burst": all_bursts.json()},
        "ports": stats.iter().map(Port::json).collect::<Vec<_>>(),
    });
    println!("{report}");
    ExitCode::SUCCESS
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use uringest::bench::payload::{PayloadRing, TsPattern};

    const DGRAM: usize = 7 * TS_PACKET;

    #[test]
    fn loss_is_counted_exactly_where_the_continuity_counter_misses_it() {
        let mut ring = PayloadRing::new(TsPattern::new(1_000_000_000), DGRAM, 200);
        let stream = ring.fill(0, 200).to_vec();
        let mut port = Port::new(1, 5_000);
        // Lose datagrams 10..26 (16 of them: 112 packets, invisible to
        // the 4-bit CC) and 50 (7 packets: one CC jump).
        for (k, d) in stream.chunks(DGRAM).enumerate() {
            if !(10..26).contains(&k) && k != 50 {
                port.skb(d, DGRAM, Some(1_000_000 + k as u64 * 10_500));
            }
        }
        port.finish();
        assert_eq!(port.datagrams, 183);
        assert_eq!(port.missing, 17);
        assert_eq!(port.cc_errors, 1);
        assert_eq!((port.first_seq, port.next_seq), (Some(0), 200));
        assert_eq!((port.not_ts, port.out_of_order), (0, 0));
        // Every gap is 10.5 us but the two across the holes.
        assert_eq!(port.gaps.quantile_us(0.5), Some(10.55));
        assert_eq!(port.bursts.quantile(1.0), Some(1));
    }

    #[test]
    fn a_gro_skb_is_one_burst_with_zero_gaps() {
        let mut ring = PayloadRing::new(TsPattern::new(1_000_000_000), DGRAM, 27);
        let stream = ring.fill(0, 27).to_vec();
        let mut port = Port::new(1, 5_000);
        // Three skbs of nine datagrams, 94.5 us apart.
        for (i, skb) in stream.chunks(9 * DGRAM).enumerate() {
            port.skb(skb, DGRAM, Some(i as u64 * 94_500));
        }
        port.finish();
        assert_eq!((port.datagrams, port.skbs, port.missing, port.cc_errors), (27, 3, 0, 0));
        assert_eq!(port.gaps.json()["count"], 26);
        assert_eq!(port.gaps.quantile_us(0.9), Some(0.0));
        let p99 = port.gaps.quantile_us(0.99).unwrap();
        assert!((p99 - 94.5).abs() <= 0.1, "{p99}");
        assert_eq!((port.bursts.quantile(0.5), port.bursts.json()["count"].as_u64()), (Some(9), Some(3)));
    }

    #[test]
    fn not_ts_is_counted_and_skipped() {
        let mut port = Port::new(1, 5_000);
        port.skb(&[0u8; 100], 100, Some(0));
        port.skb(&[0x47u8; 188], 188, None);
        assert_eq!((port.datagrams, port.not_ts, port.first_seq), (2, 1, None));
    }
}
