//! A plain UDP forwarder: the baseline `perf/relay.sh` holds `uringest
//! relay` against, written the way a competent C programmer would write a
//! simple one. Not a uringest command; build it with
//! `cargo build --release --example forward_baseline`.
//!
//! ```text
//! forward_baseline --bind 127.0.0.1:5000 --out 127.0.0.1:6000 --out 127.0.0.1:6001 \
//!     --duration 5 --rcvbuf 67108864
//! ```
//!
//! One thread, one blocking input socket: `recvmmsg` of up to 64 datagrams
//! with `MSG_WAITFORONE` into 2 KiB buffers allocated once (no GRO), and
//! for every batch received, one `sendmmsg` per output carrying the batch's
//! datagrams, each output on its own connected socket (no pacing, no GSO).
//! A `sendmmsg` that takes only part of the batch is called again for the
//! rest; one that fails drops the rest of the batch for that output and
//! counts the error (ECONNREFUSED, from an ICMP port unreachable while no
//! one listens, is the usual one on loopback).
//!
//! The receive buffer is set with `SO_RCVBUFFORCE` (past `rmem_max`, needs
//! CAP_NET_ADMIN), else `SO_RCVBUF`. `SO_RCVTIMEO` (100 ms) wakes the loop
//! so it stops at the deadline. Kernel drops on the input come from
//! `SO_RXQ_OVFL`, the socket's cumulative drop count carried on each
//! datagram (so drops after the last datagram are not seen).
//!
//! Prints one JSON object on stdout: `datagrams_in`, `bytes_in`,
//! `kernel_drops`, `recv_calls`, `seconds` (from bind to the deadline),
//! `rcvbuf` (as granted) and `outputs`: per output `addr`, `datagrams`
//! (the kernel took), `send_calls`, `send_errors` (failed calls) and
//! `dropped` (datagrams not sent because a call failed).
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use socket2::{Domain, Protocol, Socket, Type};
use uringest::clock::{Clock, SystemClock};

#[path = "support/mod.rs"]
mod support;
use support::{BATCH, RecvBatch, RxOptions};

const NAME: &str = "forward_baseline";
/// Buffer per datagram: a 1316-byte TS datagram and then some.
const BUF: usize = 2048;
/// How often a blocked receive wakes to check the deadline.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
/// Most outputs: one socket each, well under any fd limit.
const MAX_OUTPUTS: usize = 1024;

/// A recvmmsg → sendmmsg-per-output UDP forwarder.
#[derive(Parser, Debug)]
struct Args {
    /// Address to receive on, e.g. 127.0.0.1:5000.
    #[arg(long)]
    bind: SocketAddr,
    /// Address to forward every datagram to; repeat for more outputs.
    #[arg(long = "out", required = true)]
    outs: Vec<SocketAddr>,
    /// Seconds to run.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Receive buffer to ask for, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    rcvbuf: usize,
}

fn open_output(addr: SocketAddr) -> Result<Socket, String> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("output socket for {addr}: {e}"))?;
    socket.connect(&addr.into()).map_err(|e| format!("connect {addr}: {e}"))?;
    Ok(socket)
}

/// A receive batch and the sendmmsg headers that forward it, allocated
/// once. The send headers point at `tx_iovs`, which point into `rx`'s
/// buffers: heap blocks that are never resized or freed while the headers
/// live (they all drop together).
struct Batch {
    rx: RecvBatch,
    tx: Vec<libc::mmsghdr>,
    tx_iovs: Vec<libc::iovec>,
}

impl Batch {
    fn new() -> Self {
        let rx = RecvBatch::new(BUF);
        // Lengths set per batch to what arrived.
        let mut tx_iovs: Vec<libc::iovec> =
            (0..BATCH).map(|i| libc::iovec { iov_base: rx.buffer_ptr(i).cast(), iov_len: BUF }).collect();
        let tx = tx_iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: mmsghdr is a plain C struct; all-zero is a valid
                // value. msg_name stays null: the output sockets are
                // connected.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        Batch { rx, tx, tx_iovs }
    }

    /// One blocking recvmmsg; the number of datagrams received. Sets the
    /// send lengths to the received ones.
    fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        let n = self.rx.receive(fd, libc::MSG_WAITFORONE)?;
        for (i, iov) in self.tx_iovs.iter_mut().enumerate().take(n) {
            iov.iov_len = self.rx.message(i).0.len();
        }
        Ok(n)
    }

    /// The input socket's drop count carried on datagram `i`, if any.
    fn drops(&self, i: usize) -> Option<u32> {
        self.rx.message(i).1.drops
    }

    /// Sends datagrams `from..n` of the last batch on `fd` with one
    /// sendmmsg; how many the kernel took.
    fn send(&mut self, fd: RawFd, from: usize, n: usize) -> io::Result<usize> {
        let count = n.saturating_sub(from).min(BATCH - from.min(BATCH));
        if count == 0 {
            return Ok(0);
        }
        // SAFETY: headers from..from+count (in bounds: from + count <= BATCH)
        // point at iovecs in self.tx_iovs, which point into self.rx's
        // buffers with lengths the last receive filled in; all stay
        // borrowed and unmoved for the call, and the kernel only reads them.
        let sent = unsafe { libc::sendmmsg(fd, self.tx.as_mut_ptr().add(from), count as libc::c_uint, 0) };
        if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
    }

    /// Bytes received in datagrams `0..n` of the last batch.
    fn bytes(&self, n: usize) -> u64 {
        self.tx_iovs.iter().take(n).map(|iov| iov.iov_len as u64).sum::<u64>()
    }
}

/// What one output was given.
#[derive(Default)]
struct OutCounts {
    datagrams: u64,
    send_calls: u64,
    send_errors: u64,
    dropped: u64,
}

fn main() -> ExitCode {
    let args = match support::parse_args::<Args>(NAME, |a| a.duration) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.outs.len() > MAX_OUTPUTS {
        return support::fail(NAME, "--out", format!("{} outputs; at most {MAX_OUTPUTS}", args.outs.len()));
    }
    let opts = RxOptions { timeout: Some(RECV_TIMEOUT), ..RxOptions::default() };
    let input = match support::open_rx(args.bind, args.rcvbuf, &opts) {
        Ok(s) => s,
        Err(e) => return support::fail(NAME, "setup", e),
    };
    let mut outputs = Vec::with_capacity(args.outs.len());
    for &addr in &args.outs {
        match open_output(addr) {
            Ok(s) => outputs.push(s),
            Err(e) => return support::fail(NAME, "setup", e),
        }
    }
    let fd = input.as_raw_fd();
    let clock = SystemClock;
    let start = clock.now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut batch = Batch::new();
    let mut counts: Vec<OutCounts> = args.outs.iter().map(|_| OutCounts::default()).collect();
    let (mut datagrams_in, mut bytes_in, mut recv_calls, mut kernel_drops) = (0u64, 0u64, 0u64, 0u32);
    while clock.now() < deadline {
        recv_calls += 1;
        let n = match batch.receive(fd) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
            Err(e) => return support::fail(NAME, "recvmmsg", e),
        };
        datagrams_in += n as u64;
        bytes_in += batch.bytes(n);
        if let Some(d) = (0..n).filter_map(|i| batch.drops(i)).max() {
            kernel_drops = kernel_drops.max(d);
        }
        for (socket, c) in outputs.iter().zip(counts.iter_mut()) {
            let mut done = 0;
            // Bounded: every pass sends at least one datagram or stops.
            while done < n {
                c.send_calls += 1;
                match batch.send(socket.as_raw_fd(), done, n) {
                    Ok(0) => break,
                    Ok(k) => {
                        done += k;
                        c.datagrams += k as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.send_errors += 1;
                        break;
                    }
                }
            }
            c.dropped += (n - done) as u64;
        }
    }
    let seconds = (clock.now() - start).as_secs_f64();
    let outs: Vec<serde_json::Value> = args
        .outs
        .iter()
        .zip(&counts)
        .map(|(addr, c)| {
            serde_json::json!({
                "addr": addr.to_string(),
                "datagrams": c.datagrams,
                "send_calls": c.send_calls,
                "send_errors": c.send_errors,
                "dropped": c.dropped,
            })
        })
        .collect();
    let report = serde_json::json!({
        "datagrams_in": datagrams_in,
        "bytes_in": bytes_in,
        "kernel_drops": kernel_drops,
        "recv_calls": recv_calls,
        "seconds": seconds,
        "rcvbuf": input.recv_buffer_size().unwrap_or(0),
        "outputs": outs,
    });
    println!("{report}");
    ExitCode::SUCCESS
}
