//! Input URLs: the string an operator types, checked into an [`InputSpec`].
//!
//! Built so far:
//! - a plain file path, or
//!   `file:///abs/path.ts?loop=true|false&pace=pcr|none&read=auto|mmap|uring`
//!   (a plain path takes no options: `?` is part of the name);
//! - `udp://host:port?iface=&source=&rtp=&rcvbuf=&pkt_size=`, IPv4 or
//!   bracketed IPv6 (`udp://[ff15::1]:5000`); see [`UdpSpec`];
//! - on both, the stream filter options `program=N&si=0|1&pids=256,257`
//!   ([`FilterSpec`]);
//! - `http://host/x.m3u8?pace=dts|none`: HLS ([`HlsSpec`]);
//! - `copy://<stream>` and `mixer://<video>,<audio>?audio_failure=down|continue`,
//!   other streams of a `serve` node ([`MixerSpec`]).
//!
//! Layout: this file holds the types shared by the schemes, the error and
//! [`parse_input`]; `udp.rs`, `file.rs`, `hls.rs` and `stream.rs` (copy,
//! mixer) parse their schemes, `filter.rs` the filter options files, UDP and
//! HLS take.
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
use std::path::PathBuf;

use thiserror::Error;

mod file;
mod filter;
mod hls;
mod stream;
mod udp;
pub(crate) use udp::{parse_authority, parse_iface};

pub use crate::ts::filter::{FilterSpec, MAX_ALLOWED_PIDS};
pub use hls::{HlsPace, HlsSpec};
pub use stream::{AudioFailure, MAX_ID_LEN, MixerSpec, check_stream_id};
pub use udp::{Iface, UdpSpec};

/// Schemes of the full grammar that later work adds.
const PLANNED_SCHEMES: &[&str] = &["rtp", "srt", "rtmp", "rtmps", "rtsp", "rtsps"];

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
const UDP_KEYS: &str = "iface, source, rtp, rcvbuf, pkt_size, program, si, pids";
/// Options a `file://` input takes, for error messages.
const FILE_KEYS: &str = "loop, pace, read, program, si, pids";

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
        /// `program=`, `si=`, `pids=`: what of the stream to keep.
        filter: FilterSpec,
    },
    /// A UDP socket, unicast or multicast.
    Udp(UdpSpec),
    /// `copy://<stream>`: another stream of the node, passthrough.
    Copy {
        /// The stream copied.
        stream: String,
    },
    /// `mixer://<video>,<audio>`: video of one stream, audio of another.
    Mixer(MixerSpec),
    /// `http://host/x.m3u8`: an HLS playlist, live or VOD.
    Hls(HlsSpec),
}

impl InputSpec {
    /// The streams of the node this input reads (copy and mixer inputs).
    pub fn upstreams(&self) -> Vec<&str> {
        match self {
            InputSpec::Copy { stream } => vec![stream.as_str()],
            InputSpec::Mixer(mix) => vec![mix.video.as_str(), mix.audio.as_str()],
            InputSpec::File { .. } | InputSpec::Udp(_) | InputSpec::Hls(_) => Vec::new(),
        }
    }

    /// The `program=`/`pids=` options (copy and mixer inputs take none).
    pub fn filter(&self) -> FilterSpec {
        match self {
            InputSpec::Udp(u) => u.filter.clone(),
            InputSpec::File { filter, .. } => filter.clone(),
            InputSpec::Hls(h) => h.filter.clone(),
            InputSpec::Copy { .. } | InputSpec::Mixer(_) => FilterSpec::default(),
        }
    }

    /// Refuses the inputs that only a `serve` node has (copy, mixer), for
    /// `command`s that run one input on its own.
    pub fn standalone(self, command: &'static str) -> Result<InputSpec, UrlError> {
        match self {
            InputSpec::Copy { .. } => Err(UrlError::NeedsNode { scheme: "copy", command }),
            InputSpec::Mixer(_) => Err(UrlError::NeedsNode { scheme: "mixer", command }),
            other => Ok(other),
        }
    }
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

/// Why an input URL was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    /// The string is empty.
    #[error("empty input URL")]
    Empty,
    /// The scheme is not part of the grammar.
    #[error(
        "unknown URL scheme '{scheme}' in '{url}' (expected a file path, file:///abs/path.ts, udp://host:port, http://host/x.m3u8, copy://<stream> or mixer://<video>,<audio>)"
    )]
    UnknownScheme {
        /// The scheme as written.
        scheme: String,
        /// The whole URL, user info redacted.
        url: String,
    },
    /// The scheme is in the grammar but not built yet.
    #[error(
        "URL scheme '{scheme}' is not supported yet (this build takes files, udp://, http:// HLS, copy:// and mixer://): '{url}'"
    )]
    NotYetSupported {
        /// The scheme as written.
        scheme: String,
        /// The whole URL, user info redacted.
        url: String,
    },
    /// An `http(s)://` input this build cannot read yet.
    #[error("{what} is not supported yet (this build reads HLS playlists over http://): '{url}'")]
    HttpNotYetSupported {
        /// What the URL asks for.
        what: &'static str,
        /// The whole URL, user info redacted.
        url: String,
    },
    /// An `http://` URL that cannot be fetched as written.
    #[error("bad http URL '{url}': {reason}")]
    BadHttpUrl {
        /// The whole URL, user info redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A `file://` URL that is not `file:///absolute/path`.
    #[error("bad file URL '{url}': {reason}")]
    BadFileUrl {
        /// The whole URL.
        url: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A `copy://` or `mixer://` URL with a part the grammar does not have,
    /// or a bad stream id.
    #[error("bad {scheme}:// URL: {reason}")]
    BadStreamUrl {
        /// The scheme.
        scheme: &'static str,
        /// What is wrong, naming the part.
        reason: String,
    },
    /// A `copy://` or `mixer://` input given to a command without streams.
    #[error("{scheme}:// reads other streams of a `uringest serve` node; `uringest {command}` has none")]
    NeedsNode {
        /// The scheme.
        scheme: &'static str,
        /// The command.
        command: &'static str,
    },
    /// An input a command does not read yet.
    #[error("`uringest {command}` does not read {what} inputs yet")]
    NotForCommand {
        /// What kind of input.
        what: &'static str,
        /// The command.
        command: &'static str,
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
        let path = PathBuf::from(input);
        return Ok(InputSpec::File {
            path,
            looping: None,
            pace: None,
            read: FileRead::Auto,
            filter: FilterSpec::default(),
        });
    };
    let scheme_lower = scheme.to_ascii_lowercase();
    match scheme_lower.as_str() {
        "file" => return file::parse_file_url(input),
        "udp" => return udp::parse_udp_url(rest).map(InputSpec::Udp),
        "copy" => return stream::parse_copy(rest).map(|stream| InputSpec::Copy { stream }),
        "mixer" => return stream::parse_mixer(rest).map(InputSpec::Mixer),
        "http" | "https" => return hls::parse_http_url(input),
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

#[cfg(test)]
mod tests;
