//! The system calls `bench send` needs that std and socket2 do not offer:
//! `sendmmsg`, `UDP_SEGMENT`, `IP_MULTICAST_IF` by interface index,
//! `getrusage`, `PR_SET_TIMERSLACK` and `if_nametoindex`. The only module of the crate's bench code with
//! `unsafe`.
//!
//! Ownership: [`MmsgSender`] keeps its `mmsghdr` and `iovec` arrays between
//! calls but fills the pointers in them from the slice passed to
//! [`MmsgSender::send`] right before the call; the kernel reads through them
//! only during that call, while the slice and the arrays are borrowed.
//! Nothing the kernel is given outlives the call that gives it.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Sends many datagrams per `sendmmsg(2)` on a connected socket.
pub struct MmsgSender {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

impl std::fmt::Debug for MmsgSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgSender").field("max_messages", &self.hdrs.len()).finish()
    }
}

impl MmsgSender {
    /// Room for `max_messages` messages per call (the kernel takes at most
    /// `UIO_MAXIOV`, 1024).
    pub fn new(max_messages: usize) -> Self {
        let n = max_messages.clamp(1, 1024);
        // SAFETY: mmsghdr and iovec are plain C structs for which all-zero
        // bytes are a valid value (null pointers, zero lengths).
        let zero_hdr: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_iov = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
        MmsgSender { hdrs: vec![zero_hdr; n], iovs: vec![zero_iov; n] }
    }

    /// Most messages one call sends.
    pub fn max_messages(&self) -> usize {
        self.hdrs.len()
    }

    /// Sends `payload` cut into messages of `message_bytes` (the last may be
    /// shorter), at most [`MmsgSender::max_messages`] of them, in one call.
    /// Returns how many messages the kernel took, which may be fewer.
    pub fn send(&mut self, fd: BorrowedFd<'_>, payload: &[u8], message_bytes: usize) -> io::Result<usize> {
        let mut n = 0;
        for ((chunk, hdr), iov) in
            payload.chunks(message_bytes.max(1)).zip(self.hdrs.iter_mut()).zip(self.iovs.iter_mut())
        {
            iov.iov_base = chunk.as_ptr() as *mut libc::c_void;
            iov.iov_len = chunk.len();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
            hdr.msg_len = 0;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: the first n headers point at iovecs in self.iovs, which
        // point into `payload`; both stay borrowed and unmoved for the call,
        // and the kernel only reads them (msg_name is null: the socket is
        // connected; no control data). n fits in c_uint (n <= 1024).
        let sent = unsafe { libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), n as libc::c_uint, 0) };
        if sent < 0 { Err(io::Error::last_os_error()) } else { Ok(sent as usize) }
    }
}

/// Sets `UDP_SEGMENT` (Linux 4.18): the kernel cuts every datagram sent on
/// the socket into `segment_bytes`-sized ones.
pub fn set_udp_segment(fd: BorrowedFd<'_>, segment_bytes: u16) -> io::Result<()> {
    let value = libc::c_int::from(segment_bytes);
    // SAFETY: the option value is a c_int on the stack, passed with its size;
    // the kernel copies it during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Sets `IP_MULTICAST_IF` by interface index (`struct ip_mreqn`), which
/// socket2 only offers by address.
pub fn set_multicast_if_v4_index(fd: BorrowedFd<'_>, index: u32) -> io::Result<()> {
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: libc::c_int::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
    };
    // SAFETY: the option value is an ip_mreqn on the stack, passed with its
    // size; the kernel copies it during the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// User and system CPU time of this process so far (`getrusage(2)`).
pub fn cpu_times() -> (Duration, Duration) {
    // SAFETY: rusage is a plain C struct; all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let tv =
        |t: libc::timeval| Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64);
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Asks for 1 ns timer slack on this thread, so short sleeps end on time
/// (the default slack is 50 µs). Best effort.
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long by value; no memory
    // is shared with the kernel.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// The index of network interface `name`, if there is one.
pub fn interface_index(name: &str) -> Option<u32> {
    let c = CString::new(name).ok()?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (index != 0).then_some(index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_an_index() {
        assert!(interface_index("lo").is_some());
        assert_eq!(interface_index("no-such-if0"), None);
        assert_eq!(interface_index("bad\0name"), None);
    }

    #[test]
    fn cpu_time_moves_forward() {
        let (u0, s0) = cpu_times();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let (u1, s1) = cpu_times();
        assert!(u1 + s1 >= u0 + s0);
    }
}
