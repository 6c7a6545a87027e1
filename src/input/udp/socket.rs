//! Opening the socket of a `udp://` input: bind, join, buffer size and the
//! control messages the receivers read.
//!
//! - A multicast input binds to the group address itself and turns
//!   `IP_MULTICAST_ALL` off, so two groups on one port never see each
//!   other's datagrams; the receivers also check each datagram's destination
//!   (`IP_PKTINFO`). Several inputs may bind the same group and port
//!   (`SO_REUSEADDR`).
//! - The join is by interface index (`MCAST_JOIN_GROUP`, or
//!   `MCAST_JOIN_SOURCE_GROUP` once per `source=` for SSM, RFC 3678), for
//!   IPv4 and IPv6 alike; `iface=` may name the interface, its index or one
//!   of its addresses.
//! - `rcvbuf=` is forced (`SO_RCVBUFFORCE`, which needs CAP_NET_ADMIN) and
//!   otherwise asked for (`SO_RCVBUF`, capped by `net.core.rmem_max`); the
//!   granted size is read back and a clamp is logged.
//! - `SO_RXQ_OVFL` reports kernel drops; `UDP_GRO` is turned on when the
//!   receive buffers can hold a 64 KiB batch (the default `pkt_size`).

use std::io;
use std::net::{IpAddr, SocketAddr};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use thiserror::Error;

use super::sys;
use crate::url::{Iface, MAX_PKT_SIZE, UdpSpec};

const SOL_UDP: i32 = 17;

/// An open socket and what the kernel granted.
pub struct OpenedSocket {
    /// The socket, non-blocking.
    pub socket: Socket,
    /// The bound address.
    pub local: SocketAddr,
    /// The receive buffer granted, in bytes.
    pub rcvbuf: usize,
    /// Whether UDP GRO is on.
    pub gro: bool,
}

/// Why a socket could not be set up; each names the input and the step.
#[derive(Debug, Error)]
pub enum SocketError {
    /// A socket call failed.
    #[error("{url}: cannot {step}: {source}")]
    Call {
        /// The input.
        url: String,
        /// What was being done.
        step: String,
        /// The OS error.
        source: io::Error,
    },
    /// `iface=` names no interface here.
    #[error("{url}: interface '{iface}': {source}")]
    Iface {
        /// The input.
        url: String,
        /// The interface as written.
        iface: String,
        /// The lookup error.
        source: io::Error,
    },
}

/// Opens, binds and joins the socket of `spec`.
pub fn open(spec: &UdpSpec) -> Result<OpenedSocket, SocketError> {
    let url = spec.to_string();
    let call = |step: &str| {
        let url = url.clone();
        let step = step.to_owned();
        move |source| SocketError::Call { url, step, source }
    };
    let group = spec.group_or_host;
    let multicast = spec.is_multicast();
    let domain = if group.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(call("create a socket"))?;
    if group.is_ipv6() {
        socket.set_only_v6(true).map_err(call("set IPV6_V6ONLY"))?;
    }
    if multicast {
        socket.set_reuse_address(true).map_err(call("set SO_REUSEADDR"))?;
        match group {
            IpAddr::V4(_) => socket.set_multicast_all_v4(false),
            IpAddr::V6(_) => socket.set_multicast_all_v6(false),
        }
        .map_err(call("turn IP_MULTICAST_ALL off"))?;
    }
    let bind_to = SocketAddr::new(group, spec.port);
    socket.bind(&SockAddr::from(bind_to)).map_err(call(&format!("bind {bind_to}")))?;
    if multicast {
        let ifindex = match &spec.iface {
            None => 0,
            Some(iface) => interface_index(iface).map_err(|source| SocketError::Iface {
                url: url.clone(),
                iface: iface.to_string(),
                source,
            })?,
        };
        if spec.sources.is_empty() {
            sys::join_group(&socket, group, ifindex).map_err(call(&format!("join {group}")))?;
        }
        for &source in &spec.sources {
            sys::join_source_group(&socket, group, source, ifindex)
                .map_err(call(&format!("join {group} from source {source}")))?;
        }
    }
    let rcvbuf = set_rcvbuf(&socket, spec.rcvbuf);
    if rcvbuf < spec.rcvbuf {
        tracing::warn!(
            "{url}: kernel granted a receive buffer of {rcvbuf} bytes, not {} (raise net.core.rmem_max or run with CAP_NET_ADMIN)",
            spec.rcvbuf
        );
    }
    sys::set_int(&socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1).map_err(call("set SO_RXQ_OVFL"))?;
    match group {
        IpAddr::V4(_) => sys::set_int(&socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1),
        IpAddr::V6(_) => sys::set_int(&socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1),
    }
    .map_err(call("ask for packet info"))?;
    // GRO batches need 64 KiB buffers; a kernel without UDP GRO simply
    // delivers datagrams one by one.
    let gro = spec.pkt_size >= MAX_PKT_SIZE && sys::set_int(&socket, SOL_UDP, libc::UDP_GRO, 1).is_ok();
    socket.set_nonblocking(true).map_err(call("make the socket non-blocking"))?;
    let local = socket.local_addr().ok().and_then(|a| a.as_socket()).ok_or_else(|| SocketError::Call {
        url: url.clone(),
        step: "read the bound address".to_owned(),
        source: io::Error::other("no socket address"),
    })?;
    Ok(OpenedSocket { socket, local, rcvbuf, gro })
}

fn interface_index(iface: &Iface) -> io::Result<u32> {
    match iface {
        Iface::Name(name) => sys::index_of_name(name),
        Iface::Index(index) => Ok(*index),
        Iface::Addr(addr) => sys::index_of_addr(*addr),
    }
}

/// Sets the receive buffer as large as allowed; returns the size granted.
fn set_rcvbuf(socket: &Socket, wanted: usize) -> usize {
    let value = libc::c_int::try_from(wanted).unwrap_or(libc::c_int::MAX);
    if sys::set_int(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value).is_err() {
        // Not privileged: ask, and let the kernel cap it at rmem_max.
        let _ = socket.set_recv_buffer_size(wanted);
    }
    // Linux reports twice what it accounts for bookkeeping overhead.
    socket.recv_buffer_size().map_or(0, |granted| granted / 2)
}
