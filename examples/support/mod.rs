//! Pieces the perf examples share: argument handling, receive-socket setup
//! and a `recvmmsg` batch. Not an example itself (no main.rs): each example
//! includes it with `#[path = "support/mod.rs"] mod support;`, so an item
//! one example does not use is dead code there.
#![allow(unsafe_code, dead_code)]

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use socket2::{Domain, Protocol, Socket, Type};

/// Messages per recvmmsg call.
pub const BATCH: usize = 64;
/// Control bytes per message, in u64 words: a timespec cmsg and two ints.
const CONTROL_WORDS: usize = 16;
/// Bytes in one TS packet.
pub const TS_PACKET: usize = 188;
/// The byte every TS packet starts with.
pub const SYNC: u8 = 0x47;

/// Prints `name: what: e` on stderr; exit code 2.
pub fn fail(name: &str, what: &str, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("{name}: {what}: {e}");
    ExitCode::from(2)
}

/// Parses the command line; on `--help`/`--version` prints and exits 0, on
/// bad arguments names the first problem and exits 2. `duration` picks the
/// run's `--duration`, which must be in (0, 86400] seconds: a run that
/// ends, and a deadline `Instant` arithmetic cannot overflow.
pub fn parse_args<A: Parser>(name: &str, duration: fn(&A) -> f64) -> Result<A, ExitCode> {
    let args = match A::try_parse() {
        Ok(a) => a,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return Err(ExitCode::SUCCESS);
        }
        Err(e) => return Err(fail(name, "bad arguments", e.to_string().lines().next().unwrap_or(""))),
    };
    let d = duration(&args);
    if d.is_finite() && d > 0.0 && d <= 86_400.0 {
        Ok(args)
    } else {
        Err(fail(name, "--duration", format!("{d} is not in (0, 86400] seconds")))
    }
}

/// Sets an int socket option.
pub fn set_int(fd: RawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
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

/// How to set up a receive socket beyond what every one gets.
#[derive(Default)]
pub struct RxOptions {
    /// `SO_RCVTIMEO`: how often a blocked receive wakes.
    pub timeout: Option<Duration>,
    /// `SO_TIMESTAMPNS`: kernel receive timestamps in a cmsg.
    pub timestamps: bool,
    /// `UDP_GRO`: coalesced receive, segment size in a cmsg.
    pub gro: bool,
    /// `O_NONBLOCK`.
    pub nonblocking: bool,
}

/// A UDP socket bound to `addr` with a receive buffer of `rcvbuf` bytes
/// (`SO_RCVBUFFORCE`, past `rmem_max` when allowed (CAP_NET_ADMIN), else
/// `SO_RCVBUF`, capped by the kernel) and `SO_RXQ_OVFL` (the socket's drop
/// count on each datagram), plus `opts`. Errors name the address and the
/// step that failed.
pub fn open_rx(addr: SocketAddr, rcvbuf: usize, opts: &RxOptions) -> Result<Socket, String> {
    let rcvbuf = libc::c_int::try_from(rcvbuf).map_err(|_| format!("--rcvbuf {rcvbuf} is too large"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("socket for {addr}: {e}"))?;
    let fd = socket.as_raw_fd();
    let set = |level, name, what: &str| set_int(fd, level, name, 1).map_err(|e| format!("{addr}: {what}: {e}"));
    if set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
        set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf).map_err(|e| format!("{addr}: SO_RCVBUF: {e}"))?;
    }
    set(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, "SO_RXQ_OVFL")?;
    if let Some(t) = opts.timeout {
        socket.set_read_timeout(Some(t)).map_err(|e| format!("{addr}: SO_RCVTIMEO: {e}"))?;
    }
    if opts.timestamps {
        set(libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, "SO_TIMESTAMPNS")?;
    }
    if opts.gro {
        set(libc::SOL_UDP, libc::UDP_GRO, "UDP_GRO")?;
    }
    if opts.nonblocking {
        socket.set_nonblocking(true).map_err(|e| format!("{addr}: O_NONBLOCK: {e}"))?;
    }
    socket.bind(&addr.into()).map_err(|e| format!("bind {addr}: {e}"))?;
    Ok(socket)
}

/// Buffers and headers for one recvmmsg call of up to `BATCH` messages,
/// allocated once. The headers point into `data`, `control` and `iovs`,
/// heap blocks that are never resized or freed while the headers live (all
/// four drop together).
pub struct RecvBatch {
    hdrs: Vec<libc::mmsghdr>,
    _iovs: Vec<libc::iovec>,
    _control: Vec<u64>,
    data: Vec<u8>,
    buf_bytes: usize,
}

/// What the cmsgs of one message said.
#[derive(Default)]
pub struct Meta {
    /// UDP_GRO segment size, when the kernel coalesced.
    pub segment: Option<usize>,
    /// SO_RXQ_OVFL: the socket's drops so far.
    pub drops: Option<u32>,
    /// SO_TIMESTAMPNS: kernel receive time, ns since the epoch.
    pub ns: Option<u64>,
}

impl RecvBatch {
    /// A batch of `BATCH` buffers of `buf_bytes` each.
    pub fn new(buf_bytes: usize) -> Self {
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
        RecvBatch { hdrs, _iovs: iovs, _control: control, data, buf_bytes }
    }

    /// Start of buffer `i` (`i < BATCH`), for send headers that forward what
    /// arrived in it; valid as long as this batch lives.
    pub fn buffer_ptr(&self, i: usize) -> *mut u8 {
        // The receive iovec's own pointer: same provenance as what the
        // kernel writes through.
        self._iovs[i].iov_base.cast()
    }

    /// One recvmmsg with `flags` (`MSG_WAITFORONE`, `MSG_DONTWAIT`); the
    /// number of messages received.
    pub fn receive(&mut self, fd: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
            h.msg_hdr.msg_flags = 0;
        }
        // SAFETY: every header points at an iovec of `buf_bytes` into
        // self.data and at CONTROL_WORDS * 8 bytes of self._control (see
        // RecvBatch); the kernel writes them only during this call, while
        // self is borrowed mutably. The timeout pointer is null.
        let n =
            unsafe { libc::recvmmsg(fd, self.hdrs.as_mut_ptr(), BATCH as libc::c_uint, flags, std::ptr::null_mut()) };
        if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
    }

    /// Message `i` of the last receive and its cmsgs.
    pub fn message(&self, i: usize) -> (&[u8], Meta) {
        let h = &self.hdrs[i].msg_hdr;
        let len = (self.hdrs[i].msg_len as usize).min(self.buf_bytes);
        let mut m = Meta::default();
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
                    (libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS) if room >= size_of::<libc::timespec>() => {
                        let ts = std::ptr::read_unaligned(data.cast::<libc::timespec>());
                        m.ns = u64::try_from(ts.tv_sec)
                            .ok()
                            .zip(u64::try_from(ts.tv_nsec).ok())
                            .map(|(s, n)| s.saturating_mul(1_000_000_000).saturating_add(n));
                    }
                    _ => {}
                }
                c = libc::CMSG_NXTHDR(h, c);
            }
        }
        (&self.data[i * self.buf_bytes..i * self.buf_bytes + len], m)
    }
}
