//! Output URLs: `udp://host:port?ttl=&iface=&pkt_size=&start=`, a file
//! path or `file:///path.ts?segment=SECS&start=`, and `-` for stdout.
//!
//! The parts an output shares with a `udp://` input (host, port, interface)
//! are parsed by the same code as the input's, so their errors read alike.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

use crate::ts::packet::PACKET_LEN;
use crate::url::{Iface, UrlError, bad_option, parse_authority, parse_iface, set_once, shown};

/// Default datagram size: seven TS packets, what every IPTV receiver takes.
pub const DEFAULT_PKT_SIZE: usize = 7 * PACKET_LEN;
/// Largest datagram payload an output sends (IPv4's limit, 65507, rounded
/// down to whole packets).
pub const MAX_OUT_PKT_SIZE: usize = 65507 / PACKET_LEN * PACKET_LEN;
/// Default multicast TTL (ffmpeg's too).
pub const DEFAULT_MULTICAST_TTL: u8 = 16;
/// Shortest and longest `segment=` rotation.
pub const SEGMENT_RANGE: (f64, f64) = (1.0, 86_400.0);

/// Options a `udp://` output takes, for error messages.
const UDP_KEYS: &str = "ttl, iface, pkt_size, start";
/// Options a file output takes, for error messages.
const FILE_KEYS: &str = "segment, start";

/// Where an output starts (`start=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartAt {
    /// `start=clean` (the default): at a clean entry point (PAT, PMT, then
    /// a keyframe when the stream has video).
    #[default]
    Clean,
    /// `start=any`: with whatever comes first.
    Any,
}

/// A `udp://` output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpOutSpec {
    /// Destination: a unicast host or a multicast group.
    pub dest: SocketAddr,
    /// `ttl=`: hop limit (multicast default 16; unicast: the system's).
    pub ttl: Option<u8>,
    /// `iface=`: the interface multicast leaves by.
    pub iface: Option<Iface>,
    /// `pkt_size=`: bytes per datagram, a multiple of 188 (default 1316).
    pub pkt_size: usize,
    /// `start=`.
    pub start: StartAt,
}

/// A TS file output.
#[derive(Clone, Debug, PartialEq)]
pub struct FileOutSpec {
    /// The file, or with `segment=` the pattern its segments are named
    /// after (`name.ts` gives `name-00001.ts`, `name-00002.ts`, ...).
    pub path: PathBuf,
    /// `segment=SECS`: start a new file at the first clean entry point
    /// after this long.
    pub segment: Option<Duration>,
    /// `start=`.
    pub start: StartAt,
}

/// A parsed output.
#[derive(Clone, Debug, PartialEq)]
pub enum OutputSpec {
    /// UDP unicast or multicast.
    Udp(UdpOutSpec),
    /// A TS file, maybe in segments.
    File(FileOutSpec),
    /// TS on standard output (`-`).
    Stdout,
}

impl OutputSpec {
    /// Where the output starts.
    pub fn start(&self) -> StartAt {
        match self {
            OutputSpec::Udp(u) => u.start,
            OutputSpec::File(f) => f.start,
            OutputSpec::Stdout => StartAt::Clean,
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let start = |s: StartAt| if s == StartAt::Any { "start=any" } else { "" };
        match self {
            OutputSpec::Udp(u) => {
                write!(f, "udp://{}", u.dest)?;
                let mut opts = Vec::new();
                if let Some(ttl) = u.ttl {
                    opts.push(format!("ttl={ttl}"));
                }
                if let Some(iface) = &u.iface {
                    opts.push(format!("iface={iface}"));
                }
                if u.pkt_size != DEFAULT_PKT_SIZE {
                    opts.push(format!("pkt_size={}", u.pkt_size));
                }
                opts.extend(Some(start(u.start)).filter(|s| !s.is_empty()).map(str::to_owned));
                if !opts.is_empty() {
                    write!(f, "?{}", opts.join("&"))?;
                }
                Ok(())
            }
            OutputSpec::File(file) => {
                write!(f, "{}", file.path.display())?;
                let mut opts = Vec::new();
                if let Some(seg) = file.segment {
                    opts.push(format!("segment={}", seg.as_secs_f64()));
                }
                opts.extend(Some(start(file.start)).filter(|s| !s.is_empty()).map(str::to_owned));
                if !opts.is_empty() {
                    write!(f, " ({})", opts.join(", "))?;
                }
                Ok(())
            }
            OutputSpec::Stdout => f.write_str("-"),
        }
    }
}

/// Why an output URL was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OutputUrlError {
    /// The string is empty.
    #[error("empty output URL")]
    Empty,
    /// A part shared with inputs (host, port, interface, a repeated key).
    #[error("output '{url}': {source}")]
    Url {
        /// The whole output URL.
        url: String,
        /// What is wrong.
        source: UrlError,
    },
    /// A scheme outputs do not take.
    #[error("unknown output '{url}' (expected udp://host:port, a file path, file:///abs/path.ts or -)")]
    UnknownScheme {
        /// The whole URL.
        url: String,
    },
    /// A query key the output does not take.
    #[error("unknown option '{key}' for {scheme} outputs (known: {known})")]
    UnknownOption {
        /// `udp://` or `file`.
        scheme: &'static str,
        /// The key as written.
        key: String,
        /// The keys it takes.
        known: &'static str,
    },
    /// A `file://` URL that is not `file:///absolute/path`.
    #[error("bad file output '{url}': {reason}")]
    BadFileUrl {
        /// The whole URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
}

/// Parses an output URL, a plain path, or `-`.
pub fn parse_output(text: &str) -> Result<OutputSpec, OutputUrlError> {
    if text.is_empty() {
        return Err(OutputUrlError::Empty);
    }
    if text == "-" {
        return Ok(OutputSpec::Stdout);
    }
    let wrap = |source| OutputUrlError::Url { url: shown(text), source };
    let Some((scheme, rest)) = text.split_once("://") else {
        return Ok(OutputSpec::File(FileOutSpec { path: PathBuf::from(text), segment: None, start: StartAt::Clean }));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "udp" => parse_udp(rest).map(OutputSpec::Udp).map_err(|e| match e {
            Parsed::Url(source) => wrap(source),
            Parsed::Output(e) => e,
        }),
        "file" => parse_file(text).map(OutputSpec::File).map_err(|e| match e {
            Parsed::Url(source) => wrap(source),
            Parsed::Output(e) => e,
        }),
        _ => Err(OutputUrlError::UnknownScheme { url: shown(text) }),
    }
}

/// An error from the shared URL code or of the output's own.
enum Parsed {
    Url(UrlError),
    Output(OutputUrlError),
}

impl From<UrlError> for Parsed {
    fn from(e: UrlError) -> Parsed {
        Parsed::Url(e)
    }
}

fn parse_udp(rest: &str) -> Result<UdpOutSpec, Parsed> {
    let (head, query) = rest.split_once('?').unwrap_or((rest, ""));
    if head.contains('#') || query.contains('#') {
        return Err(UrlError::UdpFragment.into());
    }
    if head.contains('@') {
        return Err(UrlError::UdpUserInfo.into());
    }
    let authority = head.strip_suffix('/').unwrap_or(head);
    if authority.contains('/') {
        return Err(UrlError::UdpPath { path: shown(&authority[authority.find('/').unwrap_or(0)..]) }.into());
    }
    let (host, port) = parse_authority(authority)?;
    if host.is_unspecified() {
        return Err(bad_option("host", &host.to_string(), "an output needs a destination, not 'any'").into());
    }
    let (mut ttl, mut iface, mut pkt_size, mut start) = (None, None, None, None);
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*key {
            "ttl" => {
                let v = value.parse::<u8>().ok().filter(|&t| t > 0);
                set_once(&mut ttl, "ttl", v.ok_or_else(|| bad_option("ttl", &value, "expected 1 to 255"))?)?;
            }
            "iface" => set_once(&mut iface, "iface", parse_iface(&value)?)?,
            "pkt_size" => {
                let v = value
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n % PACKET_LEN == 0 && (PACKET_LEN..=MAX_OUT_PKT_SIZE).contains(&n));
                let v = v.ok_or_else(|| bad_option("pkt_size", &value, "expected a multiple of 188, 188 to 65424"))?;
                set_once(&mut pkt_size, "pkt_size", v)?;
            }
            "start" => set_once(&mut start, "start", parse_start(&value)?)?,
            _ => {
                return Err(Parsed::Output(OutputUrlError::UnknownOption {
                    scheme: "udp://",
                    key: shown(&key),
                    known: UDP_KEYS,
                }));
            }
        }
    }
    if let Some(Iface::Addr(addr)) = iface
        && addr.is_ipv4() != host.is_ipv4()
    {
        return Err(bad_option("iface", &addr.to_string(), "not of the destination's address family").into());
    }
    if iface.is_some() && !host.is_multicast() {
        let reason = "iface= picks the interface for multicast; a unicast destination follows the routing table";
        return Err(bad_option("iface", &iface.map(|i| i.to_string()).unwrap_or_default(), reason).into());
    }
    let ttl = ttl.or(host.is_multicast().then_some(DEFAULT_MULTICAST_TTL));
    Ok(UdpOutSpec {
        dest: SocketAddr::new(host, port),
        ttl,
        iface,
        pkt_size: pkt_size.unwrap_or(DEFAULT_PKT_SIZE),
        start: start.unwrap_or_default(),
    })
}

fn parse_file(text: &str) -> Result<FileOutSpec, Parsed> {
    let bad = |reason| Parsed::Output(OutputUrlError::BadFileUrl { url: shown(text), reason });
    let url = url::Url::parse(text).map_err(|_| bad("not a valid URL"))?;
    if !url.username().is_empty() || url.password().is_some() || url.port().is_some() {
        return Err(bad("user info and ports are not allowed"));
    }
    if url.host_str().is_some_and(|h| !h.is_empty() && h != "localhost") {
        return Err(bad("the host must be empty (file:///abs/path.ts)"));
    }
    if url.fragment().is_some() {
        return Err(bad("a fragment is not allowed"));
    }
    let (mut segment, mut start) = (None, None);
    for (key, value) in url.query_pairs() {
        match &*key {
            "segment" => {
                let secs = value.parse::<f64>().ok().filter(|s| (SEGMENT_RANGE.0..=SEGMENT_RANGE.1).contains(s));
                let secs = secs.ok_or_else(|| bad_option("segment", &value, "expected seconds, 1 to 86400"))?;
                set_once(&mut segment, "segment", Duration::from_secs_f64(secs))?;
            }
            "start" => set_once(&mut start, "start", parse_start(&value)?)?,
            _ => {
                return Err(Parsed::Output(OutputUrlError::UnknownOption {
                    scheme: "file",
                    key: shown(&key),
                    known: FILE_KEYS,
                }));
            }
        }
    }
    let path = url.to_file_path().map_err(|()| bad("the path is not an absolute local path"))?;
    if path.as_os_str().to_string_lossy().ends_with('/') {
        return Err(bad("the path names a directory, not a file"));
    }
    Ok(FileOutSpec { path, segment, start: start.unwrap_or_default() })
}

fn parse_start(value: &str) -> Result<StartAt, UrlError> {
    match value {
        "clean" => Ok(StartAt::Clean),
        "any" => Ok(StartAt::Any),
        _ => Err(bad_option("start", value, "expected clean or any")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp(text: &str) -> UdpOutSpec {
        match parse_output(text) {
            Ok(OutputSpec::Udp(u)) => u,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn udp_defaults_and_options() {
        let u = udp("udp://127.0.0.1:5000");
        assert_eq!(u.dest, "127.0.0.1:5000".parse().unwrap());
        assert_eq!((u.ttl, u.pkt_size, u.start), (None, 1316, StartAt::Clean));
        let m = udp("udp://239.1.1.1:5000?iface=lo&ttl=4&pkt_size=188&start=any");
        assert_eq!((m.ttl, m.pkt_size, m.start), (Some(4), 188, StartAt::Any));
        assert_eq!(m.iface, Some(Iface::Name("lo".into())));
        assert_eq!(udp("udp://239.1.1.1:5000").ttl, Some(DEFAULT_MULTICAST_TTL));
        assert_eq!(udp("udp://[::1]:5000/").dest, "[::1]:5000".parse().unwrap());
        let shown = parse_output("udp://239.1.1.1:5000?iface=lo&ttl=4&pkt_size=188&start=any").unwrap().to_string();
        assert_eq!(parse_output(&shown).unwrap(), OutputSpec::Udp(m));
    }

    #[test]
    fn files_and_stdout() {
        assert_eq!(parse_output("-").unwrap(), OutputSpec::Stdout);
        let OutputSpec::File(f) = parse_output("out.ts").unwrap() else { panic!() };
        assert_eq!((f.path, f.segment), (PathBuf::from("out.ts"), None));
        let OutputSpec::File(f) = parse_output("file:///tmp/rec.ts?segment=10&start=any").unwrap() else { panic!() };
        assert_eq!(f.path, PathBuf::from("/tmp/rec.ts"));
        assert_eq!(f.segment, Some(Duration::from_secs(10)));
        assert_eq!(f.start, StartAt::Any);
    }

    #[test]
    fn errors_name_the_offending_part() {
        let cases = [
            ("", "empty"),
            ("udp://127.0.0.1", "no port"),
            ("udp://0.0.0.0:5000", "destination"),
            ("udp://127.0.0.1:5000?pkt_size=1000", "multiple of 188"),
            ("udp://127.0.0.1:5000?ttl=0", "'ttl'"),
            ("udp://127.0.0.1:5000?bogus=1", "unknown option 'bogus' for udp:// outputs"),
            ("udp://127.0.0.1:5000?iface=lo", "unicast"),
            ("udp://127.0.0.1:5000?start=now", "clean or any"),
            ("udp://127.0.0.1:5000?ttl=1&ttl=2", "twice"),
            ("udp://name:5000", "not an IP address"),
            ("udp://127.0.0.1:5000#x", "fragment"),
            ("udp://user@127.0.0.1:5000", "user info"),
            ("file:///tmp/x.ts?segment=0", "'segment'"),
            ("file:///tmp/x.ts?rotate=1", "unknown option 'rotate' for file outputs"),
            ("file://host/x.ts", "host must be empty"),
            ("file:///tmp/", "directory"),
            ("srt://127.0.0.1:9000", "unknown output"),
        ];
        for (text, want) in cases {
            let e = parse_output(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: '{e}' lacks '{want}'");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }
}
