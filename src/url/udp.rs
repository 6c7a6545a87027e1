//! `udp://host:port?options`: the address, the socket options and their
//! rules (SSM needs a multicast group, families match).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::filter::{self, FilterOptions};
use super::{
    DEFAULT_RCVBUF, FilterSpec, MAX_PKT_SIZE, MAX_RCVBUF, MAX_SOURCES, MIN_PKT_SIZE, MIN_RCVBUF, UDP_KEYS, UrlError,
    bad_option, parse_bool, set_once, shown,
};

/// The interface of a multicast join (`iface=`).
///
/// A value that parses as an IP address is [`Iface::Addr`], one of digits
/// only is [`Iface::Index`], anything else is [`Iface::Name`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Iface {
    /// An interface name, such as `eth0` (1 to 15 bytes, no `/`, `:`,
    /// whitespace or control characters, not `.` or `..`: Linux's rules).
    Name(String),
    /// An interface index (nonzero).
    Index(u32),
    /// A local address of the interface, of the group's family.
    Addr(IpAddr),
}

impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Iface::Name(name) => f.write_str(name),
            Iface::Index(index) => write!(f, "{index}"),
            Iface::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

/// A checked `udp://` input:
/// `udp://239.1.1.1:5000?iface=eth0&source=10.0.0.1&rtp=0&rcvbuf=8M&pkt_size=1316&program=3`.
///
/// A multicast `group_or_host` is joined (IGMP/MLD); any other address is
/// the local bind address (`0.0.0.0` or `::` for any). `source=` makes the
/// join source-specific (SSM) and needs a multicast group; it may repeat
/// and may hold a comma-separated list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpSpec {
    /// The multicast group to join, or the unicast address to bind.
    pub group_or_host: IpAddr,
    /// UDP port, nonzero.
    pub port: u16,
    /// `iface=`: the interface to join on; `None`: the kernel's choice.
    pub iface: Option<Iface>,
    /// `source=`: SSM sources, unicast, of the group's family, no repeats,
    /// at most [`MAX_SOURCES`] (the kernel may allow fewer:
    /// `net.ipv4.igmp_max_msf` is 10 by default).
    pub sources: Vec<IpAddr>,
    /// `rtp=`: strip RTP headers from datagrams that are not TS but are
    /// RTP v2 (default true; `0`/`1`/`true`/`false`).
    pub rtp: bool,
    /// `rcvbuf=`: socket receive buffer in bytes (default 8 MiB; `8M`,
    /// `8MiB`, `512K`, `8388608`; [`MIN_RCVBUF`]..=[`MAX_RCVBUF`]).
    pub rcvbuf: usize,
    /// `pkt_size=`: the largest datagram expected, in bytes
    /// ([`MIN_PKT_SIZE`]..=[`MAX_PKT_SIZE`]); a longer one arrives
    /// truncated and is counted. The default is the largest possible, 65507,
    /// so no sender's datagrams are cut (the issue asks for any N×188 up to
    /// 64 KiB): with UDP GRO a receive buffer must hold a 64 KiB batch
    /// anyway, and the buffers belong to the shard, not to each input. Set
    /// it lower (1316, 1328 with RTP, 8836 for jumbo frames) to save memory
    /// where GRO is not available.
    pub pkt_size: usize,
    /// `program=`, `si=`, `pids=`: what of the stream to keep.
    pub filter: FilterSpec,
}

impl UdpSpec {
    /// A spec with every option at its default.
    pub fn new(group_or_host: IpAddr, port: u16) -> Self {
        UdpSpec {
            group_or_host,
            port,
            iface: None,
            sources: Vec::new(),
            rtp: true,
            rcvbuf: DEFAULT_RCVBUF,
            pkt_size: MAX_PKT_SIZE,
            filter: FilterSpec::default(),
        }
    }

    /// Whether the address is a multicast group to join.
    pub fn is_multicast(&self) -> bool {
        self.group_or_host.is_multicast()
    }
}

impl fmt::Display for UdpSpec {
    /// The normalised URL: options in a fixed order, defaults left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.group_or_host {
            IpAddr::V4(a) => write!(f, "udp://{a}:{}", self.port)?,
            IpAddr::V6(a) => write!(f, "udp://[{a}]:{}", self.port)?,
        }
        let mut sep = '?';
        let mut opt = |f: &mut fmt::Formatter<'_>, key: &str, value: &dyn fmt::Display| {
            let r = write!(f, "{sep}{key}={value}");
            sep = '&';
            r
        };
        if let Some(iface) = &self.iface {
            let value = match iface {
                Iface::Name(name) => url::form_urlencoded::byte_serialize(name.as_bytes()).collect(),
                other => other.to_string(),
            };
            opt(f, "iface", &value)?;
        }
        if !self.sources.is_empty() {
            let list: Vec<String> = self.sources.iter().map(IpAddr::to_string).collect();
            opt(f, "source", &list.join(","))?;
        }
        if !self.rtp {
            opt(f, "rtp", &0)?;
        }
        if self.rcvbuf != DEFAULT_RCVBUF {
            opt(f, "rcvbuf", &format_size(self.rcvbuf))?;
        }
        if self.pkt_size != MAX_PKT_SIZE {
            opt(f, "pkt_size", &self.pkt_size)?;
        }
        filter::write_options(&self.filter, f, &mut opt)
    }
}

/// Parses what follows `udp://`.
pub(super) fn parse_udp_url(rest: &str) -> Result<UdpSpec, UrlError> {
    let head_end = rest.find(['?', '#']).unwrap_or(rest.len());
    let (head, tail) = rest.split_at(head_end);
    if head.contains('@') {
        return Err(UrlError::UdpUserInfo);
    }
    let (query, fragment) = match tail.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (tail, None),
    };
    if fragment.is_some() {
        return Err(UrlError::UdpFragment);
    }
    let (authority, path) = head.split_at(head.find('/').unwrap_or(head.len()));
    // A lone trailing slash is harmless; anything more is a mistake.
    if !path.is_empty() && path != "/" {
        return Err(UrlError::UdpPath { path: shown(path) });
    }
    let (host, port) = parse_authority(authority)?;
    let mut spec = UdpSpec::new(host, port);
    let (mut iface, mut rtp, mut rcvbuf, mut pkt_size) = (None, None, None, None);
    let mut filter = FilterOptions::default();
    for (key, value) in url::form_urlencoded::parse(query.strip_prefix('?').unwrap_or(query).as_bytes()) {
        if filter.take(&key, &value)? {
            continue;
        }
        match &*key {
            "iface" => set_once(&mut iface, "iface", parse_iface(&value)?)?,
            "source" => {
                for item in value.split(',') {
                    let addr = item.parse::<IpAddr>().map_err(|_| bad_option("source", item, "not an IP address"))?;
                    spec.sources.push(addr);
                }
            }
            "rtp" => set_once(&mut rtp, "rtp", parse_bool("rtp", &value)?)?,
            "rcvbuf" => set_once(&mut rcvbuf, "rcvbuf", parse_rcvbuf(&value)?)?,
            "pkt_size" => set_once(&mut pkt_size, "pkt_size", parse_pkt_size(&value)?)?,
            _ => return Err(UrlError::UnknownOption { scheme: "udp", key: shown(&key), known: UDP_KEYS }),
        }
    }
    spec.iface = iface;
    spec.rtp = rtp.unwrap_or(true);
    spec.rcvbuf = rcvbuf.unwrap_or(DEFAULT_RCVBUF);
    spec.pkt_size = pkt_size.unwrap_or(MAX_PKT_SIZE);
    spec.filter = filter.finish();
    check_udp(&spec)?;
    Ok(spec)
}

/// `host:port` with an IPv4 host or a bracketed IPv6 one.
pub(crate) fn parse_authority(authority: &str) -> Result<(IpAddr, u16), UrlError> {
    let (host, port) = if let Some(after) = authority.strip_prefix('[') {
        let Some((inside, after)) = after.split_once(']') else {
            return Err(UrlError::HostNotIp { host: shown(authority) });
        };
        let ip = inside.parse::<Ipv6Addr>().map_err(|_| UrlError::HostNotIp { host: shown(inside) })?;
        let port = match after {
            "" | ":" => return Err(UrlError::MissingPort { host: format!("[{inside}]") }),
            p => p.strip_prefix(':').ok_or_else(|| UrlError::BadPort { port: shown(p) })?,
        };
        (IpAddr::V6(ip), port)
    } else {
        if authority.matches(':').count() > 1 {
            let host = match authority.rsplit_once(':') {
                Some((h, _)) if h.parse::<Ipv6Addr>().is_ok() => h,
                _ => authority,
            };
            return Err(match host.parse::<Ipv6Addr>() {
                Ok(_) => UrlError::UnbracketedIpv6 { host: shown(host) },
                Err(_) => UrlError::HostNotIp { host: shown(host) },
            });
        }
        let (host, port) = authority.split_once(':').unwrap_or((authority, ""));
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        let ip = host.parse::<Ipv4Addr>().map_err(|_| UrlError::HostNotIp { host: shown(host) })?;
        if port.is_empty() {
            return Err(UrlError::MissingPort { host: shown(host) });
        }
        (IpAddr::V4(ip), port)
    };
    let bad_port = || UrlError::BadPort { port: shown(port) };
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_port());
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok((host, p)),
        _ => Err(bad_port()),
    }
}

/// Rules between options: SSM needs a multicast group, families match.
fn check_udp(spec: &UdpSpec) -> Result<(), UrlError> {
    let group = spec.group_or_host;
    if spec.sources.len() > MAX_SOURCES {
        let last = spec.sources.last().map(IpAddr::to_string).unwrap_or_default();
        return Err(bad_option("source", &last, &format!("more than {MAX_SOURCES} sources")));
    }
    for (i, &source) in spec.sources.iter().enumerate() {
        let reason = if !group.is_multicast() {
            format!("a source-specific join needs a multicast group, {group} is not one")
        } else if source.is_ipv4() != group.is_ipv4() {
            format!("the source is {} but the group is {}", family(source), family(group))
        } else if source.is_multicast() || source.is_unspecified() {
            "a source must be a unicast address".to_owned()
        } else if spec.sources[..i].contains(&source) {
            "source given twice".to_owned()
        } else {
            continue;
        };
        return Err(bad_option("source", &source.to_string(), &reason));
    }
    if let Some(Iface::Addr(addr)) = spec.iface {
        let reason = if addr.is_ipv4() != group.is_ipv4() {
            format!("the interface address is {} but the group is {}", family(addr), family(group))
        } else if addr.is_multicast() || addr.is_unspecified() {
            "an interface address must be a unicast address (omit iface for the kernel's choice)".to_owned()
        } else {
            return Ok(());
        };
        return Err(bad_option("iface", &addr.to_string(), &reason));
    }
    Ok(())
}

fn family(addr: IpAddr) -> &'static str {
    if addr.is_ipv4() { "IPv4" } else { "IPv6" }
}

pub(crate) fn parse_iface(value: &str) -> Result<Iface, UrlError> {
    if let Ok(addr) = value.parse::<IpAddr>() {
        return Ok(Iface::Addr(addr));
    }
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return match value.parse::<u32>() {
            Ok(0) => Err(bad_option("iface", value, "interface index 0 means any: omit iface instead")),
            Ok(index) => Ok(Iface::Index(index)),
            Err(_) => Err(bad_option("iface", value, "interface index out of range")),
        };
    }
    let reason = if value.is_empty() {
        "empty interface name"
    } else if value.len() > 15 {
        "interface names are at most 15 bytes"
    } else if value == "." || value == ".." {
        "not an interface name"
    } else if value.chars().any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control()) {
        "interface names cannot hold '/', ':', spaces or control characters"
    } else {
        return Ok(Iface::Name(value.to_owned()));
    };
    Err(bad_option("iface", value, reason))
}

/// Bytes, or a number with a binary suffix: `K`/`KiB`, `M`/`MiB`, `G`/`GiB`
/// (any case).
fn parse_rcvbuf(value: &str) -> Result<usize, UrlError> {
    let digits_end = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
    let (digits, suffix) = value.split_at(digits_end);
    let unit: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        _ => return Err(bad_option("rcvbuf", value, "expected bytes or a K, M or G (KiB, MiB, GiB) suffix")),
    };
    let bytes = digits.parse::<u64>().ok().and_then(|n| n.checked_mul(unit));
    match bytes.and_then(|b| usize::try_from(b).ok()) {
        Some(b) if (MIN_RCVBUF..=MAX_RCVBUF).contains(&b) => Ok(b),
        Some(_) | None if !digits.is_empty() => Err(bad_option("rcvbuf", value, "must be between 4K and 1G")),
        _ => Err(bad_option("rcvbuf", value, "expected bytes or a K, M or G (KiB, MiB, GiB) suffix")),
    }
}

pub(super) fn format_size(bytes: usize) -> String {
    for (unit, suffix) in [(1usize << 30, "G"), (1 << 20, "M"), (1 << 10, "K")] {
        if bytes % unit == 0 {
            return format!("{}{suffix}", bytes / unit);
        }
    }
    bytes.to_string()
}

fn parse_pkt_size(value: &str) -> Result<usize, UrlError> {
    match value.parse::<usize>() {
        Ok(n) if value.bytes().all(|b| b.is_ascii_digit()) && (MIN_PKT_SIZE..=MAX_PKT_SIZE).contains(&n) => Ok(n),
        _ => Err(bad_option("pkt_size", value, "expected bytes, 188 to 65507")),
    }
}
