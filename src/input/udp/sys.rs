//! The socket calls that neither std nor socket2 offer: protocol-independent
//! multicast joins by interface index (RFC 3678 §5.2, `MCAST_JOIN_GROUP`,
//! `MCAST_JOIN_SOURCE_GROUP`), interface lookup, integer socket options,
//! and `recvmmsg`.
//!
//! Every function takes plain values and returns `io::Result`; the unsafe
//! blocks only pass pointers to locals that outlive the call.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

use socket2::SockAddr;

/// Index of the interface named `name`.
pub fn index_of_name(name: &str) -> io::Result<u32> {
    let c_name = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))?;
    // SAFETY: `c_name` is a valid NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("no interface named '{name}'")));
    }
    Ok(index)
}

/// Index of the interface that holds local address `addr`.
pub fn index_of_addr(addr: IpAddr) -> io::Result<u32> {
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut found = None;
    let mut cursor = list;
    while !cursor.is_null() {
        // SAFETY: `cursor` walks the list getifaddrs returned, not yet freed.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        if entry.ifa_addr.is_null() || entry.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr of the family it names; the
        // largest we read is sockaddr_in6, and only for that family.
        let here = unsafe {
            match i32::from((*entry.ifa_addr).sa_family) {
                libc::AF_INET => {
                    let sin = &*entry.ifa_addr.cast::<libc::sockaddr_in>();
                    Some(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()))
                }
                libc::AF_INET6 => {
                    let sin6 = &*entry.ifa_addr.cast::<libc::sockaddr_in6>();
                    Some(IpAddr::from(sin6.sin6_addr.s6_addr))
                }
                _ => None,
            }
        };
        if here == Some(addr) {
            // SAFETY: ifa_name is a NUL-terminated string owned by the list.
            let name = unsafe { CStr::from_ptr(entry.ifa_name) };
            found = Some(name.to_string_lossy().into_owned());
            break;
        }
    }
    // SAFETY: `list` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    match found {
        Some(name) => index_of_name(&name),
        None => Err(io::Error::new(io::ErrorKind::NotFound, format!("no local interface has address {addr}"))),
    }
}

fn storage_of(addr: IpAddr) -> libc::sockaddr_storage {
    let sock = SockAddr::from(SocketAddr::new(addr, 0));
    // SAFETY: sockaddr_storage is plain data; all-zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
    let len = (sock.len() as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: both regions are at least `len` bytes and do not overlap.
    unsafe {
        std::ptr::copy_nonoverlapping(sock.as_ptr().cast::<u8>(), (&raw mut storage).cast::<u8>(), len);
    }
    storage
}

fn level_of(group: IpAddr) -> libc::c_int {
    match group {
        IpAddr::V4(_) => libc::IPPROTO_IP,
        IpAddr::V6(_) => libc::IPPROTO_IPV6,
    }
}

/// Joins `group` on interface `ifindex` (0: the kernel's choice).
pub fn join_group(fd: &impl AsRawFd, group: IpAddr, ifindex: u32) -> io::Result<()> {
    let req = libc::group_req { gr_interface: ifindex, gr_group: storage_of(group) };
    set_opt(fd.as_raw_fd(), level_of(group), libc::MCAST_JOIN_GROUP, &req)
}

/// Joins `group` for datagrams from `source` only, on interface `ifindex`.
pub fn join_source_group(fd: &impl AsRawFd, group: IpAddr, source: IpAddr, ifindex: u32) -> io::Result<()> {
    let req =
        libc::group_source_req { gsr_interface: ifindex, gsr_group: storage_of(group), gsr_source: storage_of(source) };
    set_opt(fd.as_raw_fd(), level_of(group), libc::MCAST_JOIN_SOURCE_GROUP, &req)
}

/// Sets an integer socket option.
pub fn set_int(fd: &impl AsRawFd, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    set_opt(fd.as_raw_fd(), level, name, &value)
}

fn set_opt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid T for the duration of the call and the
    // length passed is its size.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, (value as *const T).cast::<libc::c_void>(), size_of::<T>() as libc::socklen_t)
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Buffers for one `recvmmsg` call: where each datagram goes and room for
/// its control messages.
pub struct MmsgBatch {
    headers: Vec<libc::mmsghdr>,
    iovecs: Vec<libc::iovec>,
    control: Vec<u8>,
    control_len: usize,
}

// SAFETY: the raw pointers inside point into this batch's own vectors or to
// buffers the caller lends for one call; nothing is shared between threads.
unsafe impl Send for MmsgBatch {}

impl MmsgBatch {
    /// Room for `slots` datagrams, each with `control_len` bytes of control
    /// messages.
    pub fn new(slots: usize, control_len: usize) -> MmsgBatch {
        // SAFETY: mmsghdr and iovec are plain data; zero is a valid value.
        let headers = (0..slots).map(|_| unsafe { zeroed::<libc::mmsghdr>() }).collect();
        let iovecs = (0..slots).map(|_| libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }).collect();
        MmsgBatch { headers, iovecs, control: vec![0; slots * control_len], control_len }
    }

    /// Receives up to `buffers.len()` datagrams without blocking, each into
    /// its buffer (pointer, capacity). Returns how many arrived; then
    /// [`MmsgBatch::received`] tells each one's length, flags and control
    /// bytes. `WouldBlock` when none is waiting.
    ///
    /// # Safety
    ///
    /// Each buffer must be valid for writes of its capacity and not be
    /// accessed by anyone else until this call returns.
    pub unsafe fn recv(&mut self, fd: &impl AsRawFd, buffers: &[(*mut u8, usize)]) -> io::Result<usize> {
        let n = buffers.len().min(self.headers.len());
        for (i, &(ptr, cap)) in buffers.iter().take(n).enumerate() {
            self.iovecs[i] = libc::iovec { iov_base: ptr.cast(), iov_len: cap };
            let header = &mut self.headers[i].msg_hdr;
            header.msg_name = std::ptr::null_mut();
            header.msg_namelen = 0;
            header.msg_iov = &raw mut self.iovecs[i];
            header.msg_iovlen = 1;
            header.msg_control = self.control[i * self.control_len..].as_mut_ptr().cast();
            header.msg_controllen = self.control_len;
            header.msg_flags = 0;
            self.headers[i].msg_len = 0;
        }
        // SAFETY: the headers point to iovecs and control areas owned by
        // self and to buffers the caller vouches for; `n` is within both.
        let rc = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.headers.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(rc as usize)
    }

    /// Length, `msg_flags` and control bytes of datagram `i` of the last
    /// [`MmsgBatch::recv`].
    pub fn received(&self, i: usize) -> (usize, i32, &[u8]) {
        let header = &self.headers[i];
        let control_len = header.msg_hdr.msg_controllen.min(self.control_len);
        let start = i * self.control_len;
        (header.msg_len as usize, header.msg_hdr.msg_flags, &self.control[start..start + control_len])
    }
}

/// A non-blocking eventfd, for the kernel to signal completions.
pub fn eventfd() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned by the OwnedFd.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Resets an eventfd's counter (non-blocking; an empty counter is fine).
pub fn clear_eventfd(fd: &impl AsRawFd) {
    let mut value = 0u64;
    // SAFETY: reads 8 bytes into a local u64.
    let _ = unsafe { libc::read(fd.as_raw_fd(), (&raw mut value).cast::<libc::c_void>(), 8) };
}

/// A private epoll instance watching `fd` for input, one-shot: after it
/// reports, it stays silent until [`rearm`]. The epoll descriptor is what
/// the shard's reactor waits on, so datagrams arriving while the watch is
/// disarmed wake nobody.
pub fn oneshot_epoll(fd: &impl AsRawFd) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: plain syscall; the returned fd is owned below.
    let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let epoll = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    ctl(epoll.as_raw_fd(), fd.as_raw_fd(), libc::EPOLL_CTL_ADD)?;
    Ok(epoll)
}

fn ctl(epoll: RawFd, watched: RawFd, op: libc::c_int) -> io::Result<()> {
    let mut event = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLONESHOT) as u32, u64: 0 };
    // SAFETY: `event` is a valid epoll_event for the call.
    if unsafe { libc::epoll_ctl(epoll, op, watched, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Re-arms the one-shot watch of `watched` in `epoll` ([`oneshot_epoll`]).
/// If input is already waiting, the epoll descriptor becomes readable at
/// once.
pub fn rearm(epoll: &impl AsRawFd, watched: &impl AsRawFd) -> io::Result<()> {
    ctl(epoll.as_raw_fd(), watched.as_raw_fd(), libc::EPOLL_CTL_MOD)
}

/// Takes the pending report of a one-shot epoll without waiting; whether
/// there was one.
pub fn take_report(epoll: &impl AsRawFd) -> io::Result<bool> {
    let mut event = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: room for one event, which is the maximum passed.
    let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), &mut event, 1, 0) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted { Ok(false) } else { Err(err) };
    }
    Ok(n > 0)
}
