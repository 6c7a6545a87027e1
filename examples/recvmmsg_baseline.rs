//! A plain `recvmmsg(2)` UDP receiver: the baseline `perf/udp.sh` holds
//! uringest's UDP ingest against, written the way a C programmer would
//! write a fast one. Not a uringest command; build it with
//! `cargo build --release --example recvmmsg_baseline`.
//!
//! ```text
//! recvmmsg_baseline --bind 127.0.0.1:5000 --duration 5 --rcvbuf 67108864 [--gro]
//! ```
//!
//! One blocking socket, one thread, buffers allocated once: `recvmmsg` of
//! up to 64 messages with `MSG_WAITFORONE`, into 2 KiB buffers, or 64 KiB
//! ones with `--gro` (`UDP_GRO`), where the kernel hands over runs of
//! coalesced datagrams and names their segment size in a cmsg: a run of
//! `len` bytes counts as `ceil(len / segment size)` datagrams.
//! `SO_RCVTIMEO` (100 ms) wakes the loop so it stops at the deadline.
//! `SO_RCVBUFFORCE` sets the receive buffer past `rmem_max` when allowed
//! (CAP_NET_ADMIN), else `SO_RCVBUF` (capped by the kernel).
//!
//! The work per datagram is the least any TS consumer does, and no more
//! than uringest's receive path: every 188-byte packet's sync byte is
//! checked and the packets counted; a datagram that is not whole
//! sync-aligned packets counts in `not_ts`. Kernel drops come from
//! `SO_RXQ_OVFL`, the socket's cumulative drop count carried on each
//! received datagram (so drops after the last datagram are not seen).
//!
//! Prints one JSON object on stdout: `datagrams`, `bytes`, `packets`,
//! `not_ts`, `kernel_drops`, `seconds` (the run, from bind to the
//! deadline), `recv_calls`, `rcvbuf` (as granted), `gro`.
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use uringest::clock::{Clock, SystemClock};

#[path = "support/mod.rs"]
mod support;
use support::{RecvBatch, RxOptions, SYNC, TS_PACKET};

const NAME: &str = "recvmmsg_baseline";
/// Buffer per message without GRO: one datagram of up to 2 KiB.
const PLAIN_BUF: usize = 2048;
/// Buffer per message with GRO: a coalesced run of up to 64 KiB.
const GRO_BUF: usize = 65_536;
/// How often a blocked receive wakes to check the deadline.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);

/// A plain recvmmsg(64) UDP receiver that counts datagrams, TS packets and
/// kernel drops.
#[derive(Parser, Debug)]
struct Args {
    /// Address to bind, e.g. 127.0.0.1:5000 or [::1]:5000.
    #[arg(long)]
    bind: SocketAddr,
    /// Seconds to listen.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Receive buffer to ask for, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    rcvbuf: usize,
    /// Enable UDP_GRO (coalesced receive).
    #[arg(long)]
    gro: bool,
}

/// Counts of what arrived.
#[derive(Default)]
struct Counts {
    datagrams: u64,
    bytes: u64,
    packets: u64,
    not_ts: u64,
}

impl Counts {
    /// One datagram: whole 188-byte packets, each starting with 0x47.
    fn datagram(&mut self, d: &[u8]) {
        self.datagrams += 1;
        self.bytes += d.len() as u64;
        if d.is_empty() || d.len() % TS_PACKET != 0 || d.chunks_exact(TS_PACKET).any(|p| p[0] != SYNC) {
            self.not_ts += 1;
        } else {
            self.packets += (d.len() / TS_PACKET) as u64;
        }
    }
}

fn main() -> ExitCode {
    let args = match support::parse_args::<Args>(NAME, |a| a.duration) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let opts = RxOptions { timeout: Some(RECV_TIMEOUT), gro: args.gro, ..RxOptions::default() };
    let socket = match support::open_rx(args.bind, args.rcvbuf, &opts) {
        Ok(s) => s,
        Err(e) => return support::fail(NAME, "setup", e),
    };
    let fd = socket.as_raw_fd();
    let clock = SystemClock;
    let start = clock.now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut batch = RecvBatch::new(if args.gro { GRO_BUF } else { PLAIN_BUF });
    let mut counts = Counts::default();
    let mut kernel_drops = 0u32;
    let mut recv_calls = 0u64;
    while clock.now() < deadline {
        recv_calls += 1;
        let n = match batch.receive(fd, libc::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
            Err(e) => return support::fail(NAME, "recvmmsg", e),
        };
        for i in 0..n {
            let (bytes, m) = batch.message(i);
            if let Some(d) = m.drops {
                kernel_drops = kernel_drops.max(d);
            }
            match m.segment {
                Some(segment) => bytes.chunks(segment).for_each(|d| counts.datagram(d)),
                None => counts.datagram(bytes),
            }
        }
    }
    let seconds = (clock.now() - start).as_secs_f64();
    let report = serde_json::json!({
        "datagrams": counts.datagrams,
        "bytes": counts.bytes,
        "packets": counts.packets,
        "not_ts": counts.not_ts,
        "kernel_drops": kernel_drops,
        "seconds": seconds,
        "recv_calls": recv_calls,
        "rcvbuf": socket.recv_buffer_size().unwrap_or(0),
        "gro": args.gro,
    });
    println!("{report}");
    ExitCode::SUCCESS
}
