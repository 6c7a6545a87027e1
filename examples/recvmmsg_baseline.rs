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

/// Messages per recvmmsg call.
const BATCH: usize = 64;
/// Buffer per message without GRO: one datagram of up to 2 KiB.
const PLAIN_BUF: usize = 2048;
/// Buffer per message with GRO: a coalesced run of up to 64 KiB.
const GRO_BUF: usize = 65_536;
/// Control bytes per message, in u64 words (room for two int cmsgs).
const CONTROL_WORDS: usize = 8;
/// How often a blocked receive wakes to check the deadline.
const RECV_TIMEOUT: Duration = Duration::from_millis(100);
const TS_PACKET: usize = 188;
const SYNC: u8 = 0x47;

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

fn open(args: &Args) -> Result<Socket, String> {
    let socket = Socket::new(Domain::for_address(args.bind), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("socket: {e}"))?;
    let fd = socket.as_raw_fd();
    let rcvbuf = libc::c_int::try_from(args.rcvbuf).map_err(|_| format!("--rcvbuf {} is too large", args.rcvbuf))?;
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf).map_err(|e| format!("SO_RCVBUF: {e}"))?;
    }
    socket.set_read_timeout(Some(RECV_TIMEOUT)).map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    set_int(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).map_err(|e| format!("SO_RXQ_OVFL: {e}"))?;
    if args.gro {
        set_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).map_err(|e| format!("UDP_GRO: {e}"))?;
    }
    socket.bind(&args.bind.into()).map_err(|e| format!("bind {}: {e}", args.bind))?;
    Ok(socket)
}

/// Buffers and headers for one recvmmsg call, allocated once. The headers
/// point into `data`, `control` and `iovs`, heap blocks that are never
/// resized or freed while the headers live (all four drop together).
struct Batch {
    hdrs: Vec<libc::mmsghdr>,
    _iovs: Vec<libc::iovec>,
    _control: Vec<u64>,
    data: Vec<u8>,
    buf_bytes: usize,
}

/// One received message.
struct Message<'a> {
    bytes: &'a [u8],
    /// UDP_GRO segment size, when the kernel coalesced.
    segment: Option<usize>,
    /// SO_RXQ_OVFL: the socket's drops so far.
    drops: Option<u32>,
}

impl Batch {
    fn new(buf_bytes: usize) -> Self {
        let mut data = vec![0u8; BATCH * buf_bytes];
        let mut control = vec![0u64; BATCH * CONTROL_WORDS];
        let mut iovs: Vec<libc::iovec> = data
            .chunks_exact_mut(buf_bytes)
            .map(|c| libc::iovec { iov_base: c.as_mut_ptr().cast(), iov_len: buf_bytes })
            .collect();
        let hdrs = iovs
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
        Batch { hdrs, _iovs: iovs, _control: control, data, buf_bytes }
    }

    /// One blocking recvmmsg; the number of messages received.
    fn receive(&mut self, fd: RawFd) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at an iovec of `buf_bytes` into
        // self.data and at CONTROL_WORDS * 8 bytes of self._control (see
        // Batch); the kernel writes them only during this call, while self
        // is borrowed mutably. The timeout pointer is null.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Message `i` of the last receive.
    fn message(&self, i: usize) -> Message<'_> {
        let h = &self.hdrs[i].msg_hdr;
        let len = (self.hdrs[i].msg_len as usize).min(self.buf_bytes);
        let mut m =
            Message { bytes: &self.data[i * self.buf_bytes..i * self.buf_bytes + len], segment: None, drops: None };
        // SAFETY: `h` is a header the kernel just filled; CMSG_FIRSTHDR and
        // CMSG_NXTHDR stay within msg_control..msg_control + msg_controllen
        // (inside self._control), and each value is read only after checking
        // its cmsg holds it (read_unaligned: no alignment assumed).
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(h);
            while !c.is_null() {
                let data = libc::CMSG_DATA(c);
                let room = ((*c).cmsg_len as usize).saturating_sub(data as usize - c as usize);
                match ((*c).cmsg_level, (*c).cmsg_type) {
                    (libc::SOL_UDP, libc::UDP_GRO) if room >= 4 => {
                        let size = std::ptr::read_unaligned(data.cast::<libc::c_int>());
                        m.segment = usize::try_from(size).ok().filter(|&s| s > 0);
                    }
                    (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) if room >= 4 => {
                        m.drops = Some(std::ptr::read_unaligned(data.cast::<u32>()));
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        m
    }
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

fn fail(what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("recvmmsg_baseline: {what}: {e}");
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
    let socket = match open(&args) {
        Ok(s) => s,
        Err(e) => return fail("setup", e),
    };
    let fd = socket.as_raw_fd();
    let clock = SystemClock;
    let start = clock.now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let mut batch = Batch::new(if args.gro { GRO_BUF } else { PLAIN_BUF });
    let mut counts = Counts::default();
    let mut kernel_drops = 0u32;
    let mut recv_calls = 0u64;
    while clock.now() < deadline {
        recv_calls += 1;
        let n = match batch.receive(fd) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
            Err(e) => return fail("recvmmsg", e),
        };
        for i in 0..n {
            let m = batch.message(i);
            if let Some(d) = m.drops {
                kernel_drops = kernel_drops.max(d);
            }
            match m.segment {
                Some(segment) => m.bytes.chunks(segment).for_each(|d| counts.datagram(d)),
                None => counts.datagram(m.bytes),
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
