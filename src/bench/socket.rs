//! Where `bench send` sends, and the socket it sends on.
//!
//! The destination is an input URL read by the crate's own parser
//! ([`crate::url::parse_input`]), so `bench send udp://239.1.1.1:5000?iface=eth0`
//! and `probe udp://239.1.1.1:5000?iface=eth0` mean the same group on the
//! same interface. `iface=` picks the outgoing interface of a multicast
//! destination (`IP_MULTICAST_IF` / `IPV6_MULTICAST_IF`); the receive-only
//! options (`source=`, `rtp=`, `rcvbuf=`, `pkt_size=`) are refused rather
//! than ignored.
//!
//! The socket is connected, so every send names no address; with `--gso`
//! it carries `UDP_SEGMENT`, so the kernel cuts each message into
//! datagrams of the segment size.

use std::net::{IpAddr, SocketAddr, SocketAddrV6};
use std::os::fd::AsFd;

use socket2::{Domain, Protocol, Socket, Type};

use super::send::SendError;
use super::sys;
use crate::url::{DEFAULT_RCVBUF, Iface, InputSpec, MAX_PKT_SIZE, parse_input};

/// Send buffer asked for (the kernel caps it at `net.core.wmem_max`).
const SEND_BUFFER_BYTES: usize = 4 << 20;

/// A checked destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Address and port; an IPv6 scope id is filled in from `iface=`.
    pub addr: SocketAddr,
    /// Outgoing interface of a multicast destination.
    pub iface: Option<Iface>,
}

/// Reads `udp://host:port[?iface=...]` with the crate's URL parser.
pub fn parse_destination(url: &str) -> Result<Destination, SendError> {
    let bad = |problem: String| SendError::Destination { problem };
    // Any other scheme is refused as such, not with its own parser's words.
    if !url.get(..6).is_some_and(|scheme| scheme.eq_ignore_ascii_case("udp://")) {
        return Err(bad(format!("'{}' is not a udp:// URL", crate::url::shown(url))));
    }
    let spec = match parse_input(url) {
        Ok(InputSpec::Udp(spec)) => spec,
        Ok(_) => return Err(bad(format!("'{url}' is not a udp:// URL"))),
        Err(e) => return Err(bad(e.to_string())),
    };
    let refused = |key: &str| bad(format!("option '{key}' applies to receivers, not to bench send"));
    if !spec.sources.is_empty() {
        return Err(refused("source"));
    }
    if !spec.rtp {
        return Err(refused("rtp"));
    }
    if spec.rcvbuf != DEFAULT_RCVBUF {
        return Err(refused("rcvbuf"));
    }
    if !spec.filter.is_passthrough() {
        return Err(refused("program/pids/si"));
    }
    if spec.pkt_size != MAX_PKT_SIZE {
        return Err(bad("option 'pkt_size' applies to receivers; use --pkt".to_owned()));
    }
    let ip = spec.group_or_host;
    if ip.is_unspecified() {
        return Err(bad(format!("host '{ip}' is unspecified: name the receiver's address")));
    }
    if spec.iface.is_some() && !ip.is_multicast() {
        return Err(bad(format!("option 'iface' needs a multicast destination, and '{ip}' is unicast")));
    }
    if let (IpAddr::V6(_), Some(Iface::Addr(a))) = (ip, &spec.iface) {
        return Err(bad(format!("option 'iface': give an IPv6 destination an interface name or index, not '{a}'")));
    }
    Ok(Destination { addr: SocketAddr::new(ip, spec.port), iface: spec.iface })
}

/// Pins the calling thread to `core`.
pub fn pin(core: usize) -> Result<(), SendError> {
    let ids = core_affinity::get_core_ids().unwrap_or_default();
    let listing = ids.iter().map(|c| c.id.to_string()).collect::<Vec<_>>().join(",");
    match ids.into_iter().find(|c| c.id == core) {
        Some(id) if core_affinity::set_for_current(id) => Ok(()),
        _ => Err(SendError::Core(core, listing)),
    }
}

/// The index of `iface` (by name or number); an address has none here.
fn iface_index(iface: &Iface) -> Result<Option<u32>, SendError> {
    match iface {
        Iface::Index(index) => Ok(Some(*index)),
        Iface::Name(name) => sys::interface_index(name)
            .map(Some)
            .ok_or_else(|| SendError::Destination { problem: format!("option 'iface': no interface named '{name}'") }),
        Iface::Addr(_) => Ok(None),
    }
}

/// Opens, configures and connects the socket. Returns it and the address
/// it is connected to (with the IPv6 scope id filled in).
pub fn open(dest: &Destination, ttl: Option<u32>, gso_segment: Option<u16>) -> Result<(Socket, SocketAddr), SendError> {
    let mut addr = dest.addr;
    let fail = |step: &'static str| move |source| SendError::Socket { dest: dest.addr, step, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(fail("socket"))?;
    // Best effort: the kernel caps it at net.core.wmem_max.
    let _ = socket.set_send_buffer_size(SEND_BUFFER_BYTES);
    let index = dest.iface.as_ref().map(iface_index).transpose()?.flatten();
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_multicast() => {
            socket.set_multicast_ttl_v4(ttl.unwrap_or(1)).map_err(fail("IP_MULTICAST_TTL"))?;
            socket.set_multicast_loop_v4(true).map_err(fail("IP_MULTICAST_LOOP"))?;
            match (&dest.iface, index) {
                (Some(Iface::Addr(IpAddr::V4(a))), _) => {
                    socket.set_multicast_if_v4(a).map_err(fail("IP_MULTICAST_IF"))?
                }
                (_, Some(index)) => {
                    sys::set_multicast_if_v4_index(socket.as_fd(), index).map_err(fail("IP_MULTICAST_IF"))?
                }
                _ => {}
            }
        }
        SocketAddr::V6(v6) if v6.ip().is_multicast() => {
            socket.set_multicast_hops_v6(ttl.unwrap_or(1)).map_err(fail("IPV6_MULTICAST_HOPS"))?;
            socket.set_multicast_loop_v6(true).map_err(fail("IPV6_MULTICAST_LOOP"))?;
            if let Some(index) = index {
                socket.set_multicast_if_v6(index).map_err(fail("IPV6_MULTICAST_IF"))?;
                // Link-local groups (ff02::) need the interface as scope.
                addr = SocketAddr::V6(SocketAddrV6::new(*v6.ip(), v6.port(), v6.flowinfo(), index));
            }
        }
        SocketAddr::V4(_) => {
            if let Some(ttl) = ttl {
                socket.set_ttl_v4(ttl).map_err(fail("IP_TTL"))?;
            }
        }
        SocketAddr::V6(_) => {
            if let Some(hops) = ttl {
                socket.set_unicast_hops_v6(hops).map_err(fail("IPV6_UNICAST_HOPS"))?;
            }
        }
    }
    if let Some(segment) = gso_segment {
        sys::set_udp_segment(socket.as_fd(), segment).map_err(SendError::GsoUnsupported)?;
    }
    socket.connect(&addr.into()).map_err(fail("connect"))?;
    Ok((socket, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn says(url: &str, needle: &str) {
        let e = parse_destination(url).unwrap_err().to_string();
        assert!(e.contains(needle), "{url}: {needle:?} not in {e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn destinations_come_from_the_crate_url_parser() {
        let d = parse_destination("udp://127.0.0.1:5000").unwrap();
        assert_eq!((d.addr, d.iface), ("127.0.0.1:5000".parse().unwrap(), None));
        assert_eq!(parse_destination("udp://[::1]:5000").unwrap().addr, "[::1]:5000".parse().unwrap());
        let d = parse_destination("udp://239.1.1.1:5000?iface=127.0.0.1").unwrap();
        assert_eq!(d.iface, Some(Iface::Addr("127.0.0.1".parse().unwrap())));
        let d = parse_destination("udp://[ff15::1]:5000?iface=lo").unwrap();
        assert_eq!(d.iface, Some(Iface::Name("lo".into())));
    }

    #[test]
    fn bad_destinations_name_the_part() {
        says("http://127.0.0.1:5000", "'http://127.0.0.1:5000' is not a udp:// URL");
        says("some/file.ts", "not a udp:// URL");
        says("udp://example.com:5000", "example.com");
        says("udp://127.0.0.1", "port");
        says("udp://127.0.0.1:0", "'0'");
        says("udp://0.0.0.0:5000", "unspecified");
        says("udp://[::]:5000", "unspecified");
        says("udp://239.1.1.1:5000?source=10.0.0.1", "'source'");
        says("udp://127.0.0.1:5000?rcvbuf=1M", "'rcvbuf'");
        says("udp://127.0.0.1:5000?pkt_size=1316", "--pkt");
        says("udp://127.0.0.1:5000?rtp=0", "'rtp'");
        says("udp://127.0.0.1:5000?iface=lo", "multicast");
        says("udp://[ff15::1]:5000?iface=fe80::1", "interface name or index");
    }

    #[test]
    fn multicast_sockets_take_the_interface() {
        for url in ["udp://239.255.0.1:5000?iface=127.0.0.1", "udp://239.255.0.1:5000?iface=lo"] {
            let (_, addr) = open(&parse_destination(url).unwrap(), None, None).unwrap();
            assert_eq!(addr, "239.255.0.1:5000".parse().unwrap());
        }
        let e = open(&parse_destination("udp://239.255.0.1:5000?iface=no-such-if0").unwrap(), None, None);
        assert!(e.unwrap_err().to_string().contains("no-such-if0"));
    }
}
