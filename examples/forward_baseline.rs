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
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use socket2::{Domain, Protocol, Socket, Type};
use uringest::clock::{Clock, SystemClock};

/// Datagrams per recvmmsg call, and so at most per sendmmsg call.
const BATCH: usize = 64;
/// Buffer per datagram: a 1316-byte TS datagram and then some.
const BUF: usize = 2048;
/// Control bytes per message, in u64 words (room for one int cmsg and more).
const CONTROL_WORDS: usize = 8;
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

fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: the value is a c_int on the stack passed with its size; the
    // kernel copies it during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

fn open_input(args: &Args) -> Result<Socket, String> {
    let socket = Socket::new(Domain::for_address(args.bind), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("input socket: {e}"))?;
    let fd = socket.as_raw_fd();
    let rcvbuf = libc::c_int::try_from(args.rcvbuf).map_err(|_| format!("--rcvbuf {} is too large", args.rcvbuf))?;
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    socket.set_read_timeout(Some(RECV_TIMEOUT)).map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).map_err(|e| format!("SO_RXQ_OVFL: {e}"))?;
    socket.bind(&args.bind.into()).map_err(|e| format!("bind {}: {e}", args.bind))?;
    Ok(socket)
}

fn open_output(addr: SocketAddr) -> Result<Socket, String> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("output socket for {addr}: {e}"))?;
    socket.connect(&addr.into()).map_err(|e| format!("connect {addr}: {e}"))?;
    Ok(socket)
}

/// Buffers and headers for one recvmmsg call and the sendmmsg calls that
/// forward it, allocated once. All headers point into `data`, `control`,
/// `rx_iovs` and `tx_iovs`, heap blocks that are never resized or freed
/// while the headers live (they all drop together).
struct Batch {
    rx: Vec<libc::mmsghdr>,
    _rx_iovs: Vec<libc::iovec>,
    tx: Vec<libc::mmsghdr>,
    tx_iovs: Vec<libc::iovec>,
    _control: Vec<u64>,
    _data: Vec<u8>,
}

impl Batch {
    fn new() -> Self {
        let mut data = vec![0u8; BATCH * BUF];
        let mut control = vec![0u64; BATCH * CONTROL_WORDS];
        let mut rx_iovs: Vec<libc::iovec> =
            data.chunks_exact_mut(BUF).map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: BUF }).collect();
        // Same buffers; lengths set per batch to what arrived.
        let mut tx_iovs = rx_iovs.clone();
        let rx = rx_iovs
            .iter_mut()
            .zip(control.chunks_exact_mut(CONTROL_WORDS))
            .map(|(iov, ctl)| {
                // SAFETY: mmsghdr is a plain C struct; all-zero is a valid value.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = ctl.as_mut_ptr().cast();
                h
            })
            .collect();
        let tx = tx_iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: as above. msg_name stays null: the output sockets
                // are connected.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        Batch { rx, _rx_iovs: rx_iovs, tx, tx_iovs, _control: control, _data: data }
    }

    /// One blocking recvmmsg; the number of datagrams received. Sets the
    /// send lengths to the received ones.
    fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for h in &mut self.rx {
            h.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at an iovec of BUF bytes into
        // self.data and at CONTROL_WORDS * 8 bytes of self._control (see
        // Batch); the kernel writes them only during this call, while self
        // is borrowed mutably. The timeout pointer is null.
        let n = unsafe {
            libc::recvmmsg(fd, self.rx.as_mut_ptr(), BATCH as libc::c_uint, libc::MSG_WAITFORONE, std::ptr::null_mut())
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for (iov, h) in self.tx_iovs.iter_mut().zip(&self.rx).take(n) {
            iov.iov_len = (h.msg_len as usize).min(BUF);
        }
        Ok(n)
    }

    /// The input socket's drop count carried on datagram `i`, if any.
    fn drops(&self, i: usize) -> Option<u32> {
        let h = &self.rx[i].msg_hdr;
        let mut drops = None;
        // SAFETY: `h` is a header the kernel just filled; CMSG_FIRSTHDR and
        // CMSG_NXTHDR stay within msg_control..msg_control + msg_controllen
        // (inside self._control), and the value is read only after checking
        // its cmsg holds it (read_unaligned: no alignment assumed).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                let room = ((*c).cmsg_len as usize).saturating_sub(data as usize - c as usize);
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL && room >= 4 {
                    drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        drops
    }

    /// Sends datagrams `from..n` of the last batch on `fd` with one
    /// sendmmsg; how many the kernel took.
    fn send(&mut self, fd: RawFd, from: usize, n: usize) -> io::Result<usize> {
        let count = n.saturating_sub(from).min(BATCH - from.min(BATCH));
        if count == 0 {
            return Ok(0);
        }
        // SAFETY: headers from..from+count (in bounds: from + count <= BATCH)
        // point at iovecs in self.tx_iovs, which point into self._data with
        // lengths the last receive filled in; all stay borrowed and unmoved
        // for the call, and the kernel only reads them.
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

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("forward_baseline: {what}: {e}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return fail("bad arguments", e.to_string().lines().next().unwrap_or("")),
    };
    if !(args.duration.is_finite() && args.duration > 0.0 && args.duration <= 86_400.0) {
        return fail("--duration", format!("{} is not in (0, 86400] seconds", args.duration));
    }
    if args.outs.len() > MAX_OUTPUTS {
        return fail("--out", format!("{} outputs; at most {MAX_OUTPUTS}", args.outs.len()));
    }
    let input = match open_input(&args) {
        Ok(s) => s,
        Err(e) => return fail("setup", e),
    };
    let mut outputs = Vec::with_capacity(args.outs.len());
    for &addr in &args.outs {
        match open_output(addr) {
            Ok(s) => outputs.push(s),
            Err(e) => return fail("setup", e),
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
            Err(e) => return fail("recvmmsg", e),
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
