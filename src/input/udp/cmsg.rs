//! Control messages of a received datagram, parsed from bytes without
//! `unsafe` (Linux, 64-bit layout: `cmsghdr` is `len: usize, level: i32,
//! type: i32`, data and each header aligned to 8 bytes).
//!
//! ```text
//! | cmsg_len (8) | cmsg_level (4) | cmsg_type (4) | data ... | pad to 8 |
//! ```
//!
//! Read here: the socket's drop counter (`SO_RXQ_OVFL`), the GRO segment
//! size (`UDP_GRO`), and the destination address (`IP_PKTINFO`,
//! `IPV6_PKTINFO`). Anything else, or anything malformed, is skipped.

use std::net::IpAddr;

/// Bytes of control space a receive needs for everything parsed here.
pub const CONTROL_LEN: usize = 128;

const HEADER: usize = 16;
const SOL_UDP: i32 = 17;
const IPV6_PKTINFO: i32 = 50;

/// What the control messages said.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Control {
    /// The socket's running count of datagrams dropped for want of buffer
    /// space (`SO_RXQ_OVFL`), when reported.
    pub dropped_total: Option<u32>,
    /// Size of each coalesced segment when the kernel merged datagrams
    /// (`UDP_GRO`).
    pub gro_segment: Option<u16>,
    /// The datagram's destination address.
    pub destination: Option<IpAddr>,
}

fn align(n: usize) -> usize {
    (n + 7) & !7
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses the control bytes of one datagram.
pub fn parse(mut control: &[u8]) -> Control {
    let mut out = Control::default();
    while control.len() >= HEADER {
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&control[..8]);
        let len = usize::try_from(u64::from_ne_bytes(len_bytes)).unwrap_or(usize::MAX);
        if len < HEADER || len > control.len() {
            break;
        }
        let level = u32_at(control, 8).unwrap_or(0) as i32;
        let kind = u32_at(control, 12).unwrap_or(0) as i32;
        let data = &control[HEADER..len];
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SO_RXQ_OVFL) => out.dropped_total = u32_at(data, 0),
            (SOL_UDP, libc::UDP_GRO) => {
                out.gro_segment = u32_at(data, 0).and_then(|v| u16::try_from(v).ok()).filter(|&v| v > 0);
            }
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                out.destination = data.get(8..12).map(|b| IpAddr::from([b[0], b[1], b[2], b[3]]));
            }
            (libc::IPPROTO_IPV6, IPV6_PKTINFO) => {
                out.destination = data.get(0..16).and_then(|b| <[u8; 16]>::try_from(b).ok()).map(IpAddr::from);
            }
            _ => {}
        }
        control = control.get(align(len)..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let len = HEADER + data.len();
        let mut v = (len as u64).to_ne_bytes().to_vec();
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(align(len), 0);
        v
    }

    #[test]
    fn reads_drops_gro_and_destination() {
        let mut bytes = cmsg(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &7u32.to_ne_bytes());
        bytes.extend(cmsg(SOL_UDP, libc::UDP_GRO, &1316i32.to_ne_bytes()));
        let mut pktinfo = 1i32.to_ne_bytes().to_vec();
        pktinfo.extend_from_slice(&[127, 0, 0, 1, 239, 1, 2, 3]);
        bytes.extend(cmsg(libc::IPPROTO_IP, libc::IP_PKTINFO, &pktinfo));
        let c = parse(&bytes);
        assert_eq!(c.dropped_total, Some(7));
        assert_eq!(c.gro_segment, Some(1316));
        assert_eq!(c.destination, Some(IpAddr::from([239, 1, 2, 3])));
    }

    #[test]
    fn reads_ipv6_destination() {
        let mut data = [0u8; 20];
        data[0] = 0xff;
        data[1] = 0x15;
        data[15] = 1;
        let c = parse(&cmsg(libc::IPPROTO_IPV6, IPV6_PKTINFO, &data));
        assert_eq!(c.destination, Some("ff15::1".parse().unwrap()));
    }

    #[test]
    fn malformed_lengths_stop_the_walk() {
        let mut bytes = cmsg(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &7u32.to_ne_bytes());
        bytes[0] = 200;
        assert_eq!(parse(&bytes), Control::default());
        bytes[..8].copy_from_slice(&3u64.to_ne_bytes());
        assert_eq!(parse(&bytes), Control::default());
        assert_eq!(parse(&[1, 2, 3]), Control::default());
    }
}
