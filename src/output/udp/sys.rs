//! Sending queued `Bytes` slices as UDP datagrams without joining them
//! first: one `sendmsg` whose iovecs cover many slices, cut into datagrams
//! by the kernel (`UDP_SEGMENT` on the socket, GSO), or one `sendmmsg`
//! with a message per datagram where GSO is missing. Hand-written because
//! socket2 and std have neither a gather `sendmmsg` nor GSO.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use bytes::Bytes;

/// Reusable iovec and header arrays.
#[derive(Default)]
pub struct GatherSender {
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    /// Per message: its first iovec and how many.
    spans: Vec<(usize, usize)>,
}

// SAFETY: the iovecs and headers only point at caller memory during a
// send call; between calls they are stale and never dereferenced, so the
// arrays may move to another thread with the output that owns them.
unsafe impl Send for GatherSender {}

impl std::fmt::Debug for GatherSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatherSender").finish_non_exhaustive()
    }
}

fn iovec(slice: &[u8]) -> libc::iovec {
    libc::iovec { iov_base: slice.as_ptr() as *mut libc::c_void, iov_len: slice.len() }
}

impl GatherSender {
    /// Sends all of `slices` in one message on a socket with `UDP_SEGMENT`
    /// set: the kernel cuts it into datagrams of the segment size (the last
    /// may be shorter). Returns the bytes sent (all of them, or an error).
    pub fn send_segmented(&mut self, fd: BorrowedFd<'_>, slices: &[Bytes]) -> io::Result<usize> {
        self.iovs.clear();
        self.iovs.extend(slices.iter().filter(|s| !s.is_empty()).map(|s| iovec(s)));
        if self.iovs.is_empty() {
            return Ok(0);
        }
        // SAFETY: msghdr is plain data; zero is valid (no name, no control).
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = self.iovs.as_mut_ptr();
        msg.msg_iovlen = self.iovs.len();
        // SAFETY: every iovec points into a `Bytes` of `slices`, alive and
        // unchanged for the call; the kernel only reads them.
        let sent = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, libc::MSG_DONTWAIT) };
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }

    /// Sends `slices` as datagrams of `datagram` bytes each (the last may
    /// be shorter) with one `sendmmsg`. Returns how many datagrams left; the
    /// kernel may take fewer than given.
    pub fn send_each(&mut self, fd: BorrowedFd<'_>, slices: &[Bytes], datagram: usize) -> io::Result<usize> {
        let datagram = datagram.max(1);
        self.iovs.clear();
        self.spans.clear();
        let mut room = datagram;
        let mut first = 0;
        for slice in slices {
            let mut rest: &[u8] = slice;
            while !rest.is_empty() {
                let take = rest.len().min(room);
                self.iovs.push(iovec(&rest[..take]));
                rest = &rest[take..];
                room -= take;
                if room == 0 {
                    self.spans.push((first, self.iovs.len() - first));
                    first = self.iovs.len();
                    room = datagram;
                }
            }
        }
        if first < self.iovs.len() {
            self.spans.push((first, self.iovs.len() - first));
        }
        if self.spans.is_empty() {
            return Ok(0);
        }
        // SAFETY: mmsghdr is plain data; zero is a valid value.
        let zero: libc::mmsghdr = unsafe { std::mem::zeroed() };
        self.hdrs.clear();
        self.hdrs.resize(self.spans.len(), zero);
        let base = self.iovs.as_mut_ptr();
        for (hdr, &(start, count)) in self.hdrs.iter_mut().zip(&self.spans) {
            // SAFETY: `start + count <= iovs.len()` by construction, and
            // `iovs` is not touched again until the call returns.
            hdr.msg_hdr.msg_iov = unsafe { base.add(start) };
            hdr.msg_hdr.msg_iovlen = count;
        }
        let count = libc::c_uint::try_from(self.hdrs.len()).unwrap_or(libc::c_uint::MAX);
        // SAFETY: the headers point at iovecs into live `Bytes` of
        // `slices`; the kernel reads them and writes only `msg_len`.
        let sent = unsafe { libc::sendmmsg(fd.as_raw_fd(), self.hdrs.as_mut_ptr(), count, libc::MSG_DONTWAIT) };
        usize::try_from(sent).map_err(|_| io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::os::fd::AsFd;

    use super::*;

    fn pair() -> (UdpSocket, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2))).unwrap();
        (tx, rx)
    }

    fn slices() -> Vec<Bytes> {
        vec![Bytes::from(vec![1u8; 500]), Bytes::from(vec![2u8; 700]), Bytes::from(vec![3u8; 300])]
    }

    #[test]
    fn each_datagram_gathers_across_slices() {
        let (tx, rx) = pair();
        let mut s = GatherSender::default();
        assert_eq!(s.send_each(tx.as_fd(), &slices(), 600).unwrap(), 3);
        let mut buf = [0u8; 2000];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!((n, buf[0], buf[499], buf[500], buf[599]), (600, 1, 1, 2, 2));
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!((n, buf[0], buf[599]), (600, 2, 2));
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!((n, buf[0], buf[299]), (300, 3, 3));
    }

    #[test]
    fn one_segmented_message_leaves_as_datagrams() {
        let (tx, rx) = pair();
        let value: libc::c_int = 600;
        // SAFETY: (test) setsockopt reads an int we own.
        let rc = unsafe {
            libc::setsockopt(
                tx.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_SEGMENT,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "UDP_SEGMENT");
        let mut s = GatherSender::default();
        assert_eq!(s.send_segmented(tx.as_fd(), &slices()).unwrap(), 1500);
        let mut buf = [0u8; 2000];
        let sizes: Vec<usize> = (0..3).map(|_| rx.recv(&mut buf).unwrap()).collect();
        assert_eq!(sizes, [600, 600, 300]);
    }
}
