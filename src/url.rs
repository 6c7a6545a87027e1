//! Input URLs: the string an operator types, checked into an [`InputSpec`].
//!
//! Built so far:
//! - a plain file path, or
//!   `file:///abs/path.ts?loop=true|false&pace=pcr|none&read=auto|mmap|uring`
//!   (a plain path takes no options: `?` is part of the name);
//! - `udp://host:port?iface=&source=&rtp=&rcvbuf=&pkt_size=`, IPv4 or
//!   bracketed IPv6 (`udp://[ff15::1]:5000`); see [`UdpSpec`].
//!
//! Every other scheme of the grammar (DESIGN.md) is recognised and refused
//! as not yet supported, so a typo is told apart from a missing feature.
//!
//! What it does not: no DNS. A `udp://` host must be an IP address: a
//! multicast group is one anyway, and a bind address that depended on a
//! resolver at start-up (or re-resolved on every reconnect) would make the
//! same URL mean different sockets. Interface names and indexes are not
//! checked against the host's interfaces here; opening the socket does.
//!
//! Invariants: errors name the offending part (the key, the value, the
//! host, the port) in one line (control characters escaped) and never echo
//! user info, so credentials typed by mistake are not printed. A [`UdpSpec`]'s `Display` is a
//! normalised URL that parses back to the same spec.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use thiserror::Error;

/// Schemes of the full grammar that later work adds.
const PLANNED_SCHEMES: &[&str] = &["rtp", "http", "https", "srt", "rtmp", "rtmps", "rtsp", "rtsps", "copy", "mixer"];

/// Default `rcvbuf`: 8 MiB.
pub const DEFAULT_RCVBUF: usize = 8 << 20;
/// Smallest accepted `rcvbuf`: 4 KiB.
pub const MIN_RCVBUF: usize = 4 << 10;
/// Largest accepted `rcvbuf`: 1 GiB.
pub const MAX_RCVBUF: usize = 1 << 30;
/// Smallest accepted `pkt_size`: one transport packet.
pub const MIN_PKT_SIZE: usize = 188;
/// Largest UDP payload over IPv4 (65535 − 20 − 8), and the default
/// `pkt_size`: see [`UdpSpec::pkt_size`].
pub const MAX_PKT_SIZE: usize = 65507;
/// Most `source=` addresses one input may name.
pub const MAX_SOURCES: usize = 64;

/// Options a `udp://` input takes, for error messages.
const UDP_KEYS: &str = "iface, source, rtp, rcvbuf, pkt_size";
/// Options a `file://` input takes, for error messages.
const FILE_KEYS: &str = "loop, pace, read";

/// A parsed input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSpec {
    /// A transport-stream file.
    File {
        /// Path on the local filesystem.
        path: PathBuf,
        /// `loop=`: start again at the end; `None` leaves it to the command.
        looping: Option<bool>,
        /// `pace=`: `None` leaves it to the command.
        pace: Option<Pace>,
        /// `read=`: how the bytes are read (mapped, or read into buffers).
        read: FileRead,
    },
    /// A UDP socket, unicast or multicast.
    Udp(UdpSpec),
}

/// How a file input is paced (`pace=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pace {
    /// `pace=pcr`: real time, by the stream's PCR.
    Pcr,
    /// `pace=none`: as fast as the file reads.
    None,
}

impl fmt::Display for Pace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pace::Pcr => "pcr",
            Pace::None => "none",
        })
    }
}

/// How a file input's bytes are read (`read=`); `input::read` explains
/// when each is the better choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FileRead {
    /// `read=auto` (the default): mapped when the path is a regular file,
    /// read into buffers otherwise (a FIFO, a character device).
    #[default]
    Auto,
    /// `read=mmap`: mapped; only regular files can be.
    Mmap,
    /// `read=uring`: read sequentially into pooled buffers, with io_uring
    /// fixed-buffer reads (`read(2)` on the epoll backend).
    Uring,
}

impl fmt::Display for FileRead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileRead::Auto => "auto",
            FileRead::Mmap => "mmap",
            FileRead::Uring => "uring",
        })
    }
}

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
/// `udp://239.1.1.1:5000?iface=eth0&source=10.0.0.1&rtp=0&rcvbuf=8M&pkt_size=1316`.
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
        Ok(())
    }
}

/// Why an input URL was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    /// The string is empty.
    #[error("empty input URL")]
    Empty,
    /// The scheme is not part of the grammar.
    #[error("unknown URL scheme '{scheme}' in '{url}' (expected a file path, file:///abs/path.ts or udp://host:port)")]
    UnknownScheme {
        /// The scheme as written.
        scheme: String,
        /// The whole URL, user info redacted.
        url: String,
    },
    /// The scheme is in the grammar but not built yet.
    #[error("URL scheme '{scheme}' is not supported yet (this build takes files and udp:// only): '{url}'")]
    NotYetSupported {
        /// The scheme as written.
        scheme: String,
        /// The whole URL, user info redacted.
        url: String,
    },
    /// A `file://` URL that is not `file:///absolute/path`.
    #[error("bad file URL '{url}': {reason}")]
    BadFileUrl {
        /// The whole URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// `user@` in a `udp://` URL (not echoed: it may hold a password).
    #[error("user info ('...@') is not allowed in a udp:// URL (for ffmpeg's udp://@host:port, drop the '@')")]
    UdpUserInfo,
    /// A path after the port.
    #[error("udp:// URL has a path '{path}': expected udp://host:port?options")]
    UdpPath {
        /// The path as written.
        path: String,
    },
    /// A `#fragment` (not echoed).
    #[error("a fragment ('#...') is not allowed in a udp:// URL")]
    UdpFragment,
    /// Nothing between `udp://` and the port.
    #[error("udp:// URL has no host: expected udp://host:port (0.0.0.0 or [::] to bind any)")]
    MissingHost,
    /// The host is not an IP address literal.
    #[error("udp:// host '{host}' is not an IP address (names are not resolved: give the group or bind address)")]
    HostNotIp {
        /// The host as written.
        host: String,
    },
    /// An IPv6 address without brackets.
    #[error("IPv6 address '{host}' must be in brackets: udp://[{host}]:port")]
    UnbracketedIpv6 {
        /// The address as written.
        host: String,
    },
    /// No `:port`.
    #[error("udp:// URL has no port after host '{host}': expected udp://host:port")]
    MissingPort {
        /// The host as written.
        host: String,
    },
    /// A port that is not 1..=65535.
    #[error("bad port '{port}' in udp:// URL: expected 1..=65535")]
    BadPort {
        /// The port as written.
        port: String,
    },
    /// A query key the scheme does not take.
    #[error("unknown option '{key}' for {scheme}:// inputs (known: {known})")]
    UnknownOption {
        /// The scheme.
        scheme: &'static str,
        /// The key as written.
        key: String,
        /// The keys the scheme takes.
        known: &'static str,
    },
    /// A key that may appear once appeared again.
    #[error("option '{key}' given twice")]
    DuplicateOption {
        /// The key.
        key: &'static str,
    },
    /// A known key with a value it cannot take.
    #[error("bad value '{value}' for '{key}': {reason}")]
    BadOption {
        /// The key.
        key: &'static str,
        /// The value as written (one list item for `source`).
        value: String,
        /// What is wrong.
        reason: String,
    },
}

/// Parses an input URL or plain path.
pub fn parse_input(input: &str) -> Result<InputSpec, UrlError> {
    if input.is_empty() {
        return Err(UrlError::Empty);
    }
    let Some((scheme, rest)) = input.split_once("://") else {
        return Ok(InputSpec::File { path: PathBuf::from(input), looping: None, pace: None, read: FileRead::Auto });
    };
    let scheme_lower = scheme.to_ascii_lowercase();
    match scheme_lower.as_str() {
        "file" => return parse_file_url(input),
        "udp" => return parse_udp_url(rest).map(InputSpec::Udp),
        _ => {}
    }
    let valid_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let url = redact_userinfo(input);
    if valid_scheme && PLANNED_SCHEMES.contains(&scheme_lower.as_str()) {
        return Err(UrlError::NotYetSupported { scheme: shown(scheme), url });
    }
    Err(UrlError::UnknownScheme { scheme: shown(scheme), url })
}

/// `input` with anything between `://` and an `@` before the path replaced
/// by `***`, control characters escaped (see [`shown`]).
fn redact_userinfo(input: &str) -> String {
    let Some((scheme, rest)) = input.split_once("://") else { return shown(input) };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => shown(&format!("{scheme}://***{}", &rest[at..])),
        None => shown(input),
    }
}

/// `text` with control characters escaped (`\n`, `\u{7f}`), so that an
/// error message quoting it stays on one line.
pub(crate) fn shown(text: &str) -> String {
    text.chars().fold(String::with_capacity(text.len()), |mut out, c| {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
        out
    })
}

fn parse_file_url(input: &str) -> Result<InputSpec, UrlError> {
    let bad = |reason| UrlError::BadFileUrl { url: redact_userinfo(input), reason };
    let url = url::Url::parse(input).map_err(|_| bad("not a valid URL"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("user info is not allowed"));
    }
    if url.port().is_some() {
        return Err(bad("a port is not allowed"));
    }
    if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
        return Err(bad("the host must be empty (file:///abs/path)"));
    }
    if url.fragment().is_some() {
        return Err(bad("a fragment is not allowed"));
    }
    let (mut looping, mut pace, mut read) = (None, None, None);
    for (key, value) in url::form_urlencoded::parse(url.query().unwrap_or("").as_bytes()) {
        match &*key {
            "loop" => set_once(&mut looping, "loop", parse_bool("loop", &value)?)?,
            "pace" => {
                let p = match &*value {
                    "pcr" => Pace::Pcr,
                    "none" => Pace::None,
                    _ => return Err(bad_option("pace", &value, "expected pcr or none")),
                };
                set_once(&mut pace, "pace", p)?;
            }
            "read" => {
                let r = match &*value {
                    "auto" => FileRead::Auto,
                    "mmap" => FileRead::Mmap,
                    "uring" => FileRead::Uring,
                    _ => return Err(bad_option("read", &value, "expected auto, mmap or uring")),
                };
                set_once(&mut read, "read", r)?;
            }
            _ => return Err(UrlError::UnknownOption { scheme: "file", key: shown(&key), known: FILE_KEYS }),
        }
    }
    let path = url.to_file_path().map_err(|()| bad("the path is not an absolute local path"))?;
    Ok(InputSpec::File { path, looping, pace, read: read.unwrap_or_default() })
}

/// Parses what follows `udp://`.
fn parse_udp_url(rest: &str) -> Result<UdpSpec, UrlError> {
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
    for (key, value) in url::form_urlencoded::parse(query.strip_prefix('?').unwrap_or(query).as_bytes()) {
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

pub(crate) fn bad_option(key: &'static str, value: &str, reason: &str) -> UrlError {
    UrlError::BadOption { key, value: shown(value), reason: reason.to_owned() }
}

pub(crate) fn set_once<T>(slot: &mut Option<T>, key: &'static str, value: T) -> Result<(), UrlError> {
    if slot.is_some() {
        return Err(UrlError::DuplicateOption { key });
    }
    *slot = Some(value);
    Ok(())
}

fn parse_bool(key: &'static str, value: &str) -> Result<bool, UrlError> {
    match value {
        "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(bad_option(key, value, "expected 0, 1, true or false")),
    }
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

fn format_size(bytes: usize) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, looping: Option<bool>, pace: Option<Pace>) -> InputSpec {
        InputSpec::File { path: path.into(), looping, pace, read: FileRead::Auto }
    }

    fn udp(input: &str) -> UdpSpec {
        match parse_input(input) {
            Ok(InputSpec::Udp(spec)) => spec,
            other => panic!("{input}: {other:?}"),
        }
    }

    fn err(input: &str) -> UrlError {
        parse_input(input).unwrap_err()
    }

    /// The error, and that its message holds `needle`.
    fn err_says(input: &str, needle: &str) -> UrlError {
        let e = err(input);
        assert!(e.to_string().contains(needle), "{input}: {needle:?} not in {e}");
        assert!(!e.to_string().contains('\n'));
        e
    }

    #[test]
    fn paths_and_file_urls() {
        assert_eq!(parse_input("a/b.ts"), Ok(file("a/b.ts", None, None)));
        assert_eq!(parse_input("a/b?loop=1.ts"), Ok(file("a/b?loop=1.ts", None, None)));
        assert_eq!(parse_input("file:///tmp/x%20y.ts"), Ok(file("/tmp/x y.ts", None, None)));
        assert_eq!(parse_input("file://localhost/tmp/x.ts"), Ok(file("/tmp/x.ts", None, None)));
    }

    #[test]
    fn file_options() {
        assert_eq!(parse_input("file:///x.ts?loop=true&pace=pcr"), Ok(file("/x.ts", Some(true), Some(Pace::Pcr))));
        assert_eq!(parse_input("file:///x.ts?loop=false"), Ok(file("/x.ts", Some(false), None)));
        assert_eq!(parse_input("file:///x.ts?pace=none&loop=0"), Ok(file("/x.ts", Some(false), Some(Pace::None))));
        assert_eq!(parse_input("file:///x.ts?"), Ok(file("/x.ts", None, None)));
        assert_eq!(
            err_says("file:///x.ts?segment=600", "'segment'"),
            UrlError::UnknownOption { scheme: "file", key: "segment".into(), known: FILE_KEYS }
        );
        err_says("file:///x.ts?loop=yes", "'loop'");
        err_says("file:///x.ts?pace=fast", "'pace'");
        assert_eq!(err("file:///x.ts?loop=1&loop=0"), UrlError::DuplicateOption { key: "loop" });
        assert_eq!(Pace::Pcr.to_string(), "pcr");
        assert_eq!(Pace::None.to_string(), "none");
    }

    #[test]
    fn file_read_option() {
        let read = |input: &str| match parse_input(input) {
            Ok(InputSpec::File { read, .. }) => read,
            other => panic!("{input}: {other:?}"),
        };
        assert_eq!(read("file:///x.ts"), FileRead::Auto);
        assert_eq!(read("/x.ts?read=uring"), FileRead::Auto, "a plain path takes no options");
        assert_eq!(read("file:///x.ts?read=auto"), FileRead::Auto);
        assert_eq!(read("file:///x.ts?read=mmap&loop=1"), FileRead::Mmap);
        assert_eq!(read("file:///tmp/fifo?loop=0&read=uring&pace=none"), FileRead::Uring);
        let e = err_says("file:///x.ts?read=direct", "'read'");
        assert!(e.to_string().contains("auto, mmap or uring"), "{e}");
        err_says("file:///x.ts?read=URING", "'read'");
        err_says("file:///x.ts?read=", "'read'");
        assert_eq!(err("file:///x.ts?read=mmap&read=uring"), UrlError::DuplicateOption { key: "read" });
        for r in [FileRead::Auto, FileRead::Mmap, FileRead::Uring] {
            assert_eq!(read(&format!("file:///x.ts?read={r}")), r);
        }
    }

    #[test]
    fn refusals_name_the_part() {
        assert!(matches!(parse_input("gopher://x"), Err(UrlError::UnknownScheme { .. })));
        assert!(matches!(parse_input("srt://1.2.3.4:9000"), Err(UrlError::NotYetSupported { .. })));
        err_says("file://host/x.ts", "host");
        err_says("file:///x.ts#frag", "fragment");
        assert_eq!(parse_input(""), Err(UrlError::Empty));
    }

    #[test]
    fn user_info_is_never_echoed() {
        for input in ["rtmp://bob:hunter2@host/app", "gopher://bob:hunter2@x", "file://bob:hunter2@/x.ts"] {
            let e = err(input).to_string();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert_eq!(err("udp://bob:hunter2@239.1.1.1:5000"), UrlError::UdpUserInfo);
        assert_eq!(err("udp://@239.1.1.1:5000"), UrlError::UdpUserInfo);
        // An `@` after a `/` still reads as user info, so no part of it is echoed.
        assert_eq!(err("udp://bob:p/w@239.1.1.1:5000"), UrlError::UdpUserInfo);
    }

    #[test]
    fn udp_accepted_forms() {
        let s = udp("udp://239.1.1.1:5000");
        assert_eq!(s, UdpSpec::new("239.1.1.1".parse().unwrap(), 5000));
        assert!(s.rtp && s.is_multicast());
        assert_eq!((s.rcvbuf, s.pkt_size), (8 << 20, 65507));

        let s = udp("udp://239.1.1.1:5000?iface=eth0&source=10.0.0.1&rtp=0&rcvbuf=8M&pkt_size=1316");
        assert_eq!(s.iface, Some(Iface::Name("eth0".into())));
        assert_eq!(s.sources, ["10.0.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!((s.rtp, s.rcvbuf, s.pkt_size), (false, 8 << 20, 1316));

        let s = udp("UDP://232.0.0.1:1234/?source=10.0.0.1,10.0.0.2&source=10.0.0.3&iface=3&rtp=true");
        assert_eq!(s.sources.len(), 3);
        assert_eq!(s.iface, Some(Iface::Index(3)));
        assert!(s.rtp);

        let s = udp("udp://[ff15::1]:5000?iface=fe80::1&source=2001:db8::7&rcvbuf=512K");
        assert_eq!(s.group_or_host, "ff15::1".parse::<IpAddr>().unwrap());
        assert_eq!(s.iface, Some(Iface::Addr("fe80::1".parse().unwrap())));
        assert_eq!(s.rcvbuf, 512 << 10);

        assert!(!udp("udp://0.0.0.0:5000").is_multicast());
        assert_eq!(udp("udp://127.0.0.1:65535").port, 65535);
        assert_eq!(udp("udp://[::]:5000").group_or_host, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(udp("udp://239.1.1.1:5000?iface=10.0.0.5").iface, Some(Iface::Addr("10.0.0.5".parse().unwrap())));
        assert_eq!(udp("udp://239.1.1.1:5000?iface=br-lan.100").iface, Some(Iface::Name("br-lan.100".into())));
        for (text, bytes) in [("8388608", 8 << 20), ("8MiB", 8 << 20), ("8m", 8 << 20), ("1G", 1 << 30), ("4k", 4096)] {
            assert_eq!(udp(&format!("udp://1.2.3.4:5?rcvbuf={text}")).rcvbuf, bytes, "{text}");
        }
        assert_eq!(udp("udp://1.2.3.4:5?pkt_size=188").pkt_size, 188);
        assert_eq!(udp("udp://1.2.3.4:5?pkt_size=65507").pkt_size, 65507);
        assert!(udp("udp://1.2.3.4:5?rtp=1").rtp);
    }

    #[test]
    fn udp_address_errors() {
        assert_eq!(err("udp://:5000"), UrlError::MissingHost);
        assert_eq!(err("udp://"), UrlError::MissingHost);
        assert_eq!(err("udp://239.1.1.1"), UrlError::MissingPort { host: "239.1.1.1".into() });
        assert_eq!(err("udp://239.1.1.1:"), UrlError::MissingPort { host: "239.1.1.1".into() });
        assert_eq!(err("udp://[ff15::1]"), UrlError::MissingPort { host: "[ff15::1]".into() });
        assert_eq!(err("udp://239.1.1.1:0"), UrlError::BadPort { port: "0".into() });
        assert_eq!(err("udp://239.1.1.1:65536"), UrlError::BadPort { port: "65536".into() });
        assert_eq!(err("udp://239.1.1.1:+5"), UrlError::BadPort { port: "+5".into() });
        assert_eq!(err("udp://[ff15::1]x"), UrlError::BadPort { port: "x".into() });
        err_says("udp://example.com:5000", "'example.com' is not an IP address");
        err_says("udp://[example]:5000", "'example'");
        err_says("udp://[ff15::1:5000", "[ff15::1:5000");
        err_says("udp://[1.2.3.4]:5000", "'1.2.3.4'");
        err_says("udp://[ff02::1%eth0]:5000", "ff02::1%eth0");
        assert_eq!(err("udp://ff15::1:5000"), UrlError::UnbracketedIpv6 { host: "ff15::1".into() });
        assert_eq!(err("udp://ff15::1"), UrlError::UnbracketedIpv6 { host: "ff15::1".into() });
        err_says("udp://a:b:c", "'a:b:c'");
        assert_eq!(err("udp://239.1.1.1:5000/live"), UrlError::UdpPath { path: "/live".into() });
        assert_eq!(err("udp://239.1.1.1:5000#x"), UrlError::UdpFragment);
        assert_eq!(err("udp://239.1.1.1:5000?rtp=0#x"), UrlError::UdpFragment);
    }

    #[test]
    fn udp_option_errors() {
        let bad = |input: &str, key: &str| {
            let e = err(input);
            assert!(matches!(&e, UrlError::BadOption { key: k, .. } if *k == key), "{input}: {e:?}");
            assert!(e.to_string().contains(&format!("for '{key}'")), "{e}");
        };
        err_says("udp://239.1.1.1:5000?foo=1", "unknown option 'foo'");
        err_says("udp://239.1.1.1:5000?ttl=1", "known: iface, source");
        assert_eq!(err("udp://239.1.1.1:5000?rtp=0&rtp=1"), UrlError::DuplicateOption { key: "rtp" });
        assert_eq!(err("udp://239.1.1.1:5000?iface=a&iface=b"), UrlError::DuplicateOption { key: "iface" });
        bad("udp://239.1.1.1:5000?rtp=yes", "rtp");
        bad("udp://239.1.1.1:5000?rtp", "rtp");
        for v in ["8MB", "x", "", "0", "4095", "2G", "99999999999999999999", "M", "-1"] {
            bad(&format!("udp://239.1.1.1:5000?rcvbuf={v}"), "rcvbuf");
        }
        for v in ["187", "65508", "1k", "", "+200"] {
            bad(&format!("udp://239.1.1.1:5000?pkt_size={v}"), "pkt_size");
        }
        for v in ["", "0", "4294967296", "a/b", "a:b", "a%20b", "sixteen_chars_xx", ".", ".."] {
            bad(&format!("udp://239.1.1.1:5000?iface={v}"), "iface");
        }
        bad("udp://239.1.1.1:5000?iface=::1", "iface");
        bad("udp://239.1.1.1:5000?iface=0.0.0.0", "iface");
        bad("udp://[ff15::1]:5000?iface=10.0.0.1", "iface");
        bad("udp://239.1.1.1:5000?source=host", "source");
        bad("udp://239.1.1.1:5000?source=10.0.0.1,", "source");
        bad("udp://10.0.0.9:5000?source=10.0.0.1", "source");
        bad("udp://0.0.0.0:5000?source=10.0.0.1", "source");
        bad("udp://239.1.1.1:5000?source=2001:db8::1", "source");
        bad("udp://[ff15::1]:5000?source=10.0.0.1", "source");
        bad("udp://239.1.1.1:5000?source=239.1.1.2", "source");
        bad("udp://239.1.1.1:5000?source=0.0.0.0", "source");
        bad("udp://239.1.1.1:5000?source=10.0.0.1&source=10.0.0.1", "source");
        let many: Vec<String> = (1..=65).map(|i| format!("10.0.{}.{}", i / 256, i % 256)).collect();
        bad(&format!("udp://239.1.1.1:5000?source={}", many.join(",")), "source");
        err_says("udp://10.0.0.9:5000?source=10.0.0.1", "needs a multicast group");
        err_says("udp://239.1.1.1:5000?source=2001:db8::1", "IPv6 but the group is IPv4");
    }

    #[test]
    fn udp_display_is_normalised_and_round_trips() {
        let cases = [
            ("udp://239.1.1.1:5000", "udp://239.1.1.1:5000"),
            ("udp://239.1.1.1:5000?rtp=1&rcvbuf=8388608&pkt_size=65507", "udp://239.1.1.1:5000"),
            (
                "udp://239.1.1.1:5000?pkt_size=1316&rcvbuf=512k&rtp=false&source=10.0.0.1&iface=eth0",
                "udp://239.1.1.1:5000?iface=eth0&source=10.0.0.1&rtp=0&rcvbuf=512K&pkt_size=1316",
            ),
            (
                "udp://[FF15:0::1]:5000?source=2001:db8::1&source=2001:db8::2",
                "udp://[ff15::1]:5000?source=2001:db8::1,2001:db8::2",
            ),
            ("udp://1.2.3.4:5?rcvbuf=5000&iface=7", "udp://1.2.3.4:5?iface=7&rcvbuf=5000"),
            ("udp://1.2.3.4:5?iface=a%26b%2Bc", "udp://1.2.3.4:5?iface=a%26b%2Bc"),
            ("udp://1.2.3.4:5?rcvbuf=1048576", "udp://1.2.3.4:5?rcvbuf=1M"),
        ];
        for (input, shown) in cases {
            let spec = udp(input);
            assert_eq!(spec.to_string(), shown, "{input}");
            assert_eq!(udp(shown), spec, "{shown}");
        }
        assert_eq!(udp("udp://1.2.3.4:5?iface=a%26b%2Bc").iface, Some(Iface::Name("a&b+c".into())));
        assert_eq!(Iface::Index(4).to_string(), "4");
    }

    #[test]
    fn control_characters_are_escaped_in_errors() {
        let e = err("udp://1.2.3.4:5?a%0Ab=1");
        assert_eq!(e, UrlError::UnknownOption { scheme: "udp", key: "a\\nb".into(), known: UDP_KEYS });
        assert!(!err("udp://1.2.3.4:5?iface=x%0D").to_string().contains('\r'));
        assert!(!err("file:///x?pace=%7F").to_string().chars().any(char::is_control));
        assert!(!err("gopher://a\tb").to_string().contains('\t'));
    }

    #[test]
    fn size_formatting() {
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(3 << 20), "3M");
        assert_eq!(format_size(4096), "4K");
        assert_eq!(format_size(4097), "4097");
    }
}
