//! `http://host[:port]/path.m3u8?options`: an HLS playlist.
//!
//! The query belongs to the remote server (tokens, signatures), so only
//! this node's own keys are taken out of it: `pace=dts|none` and the
//! filter options (`program`, `si`, `pids`). Every other key stays in the
//! URL that is fetched, in its order. A server whose own query uses one of
//! those names cannot be reached through them; that is the price of one
//! URL per input.
//!
//! A path that does not end in `.m3u8` or `.m3u` is progressive HTTP-TS,
//! and `https://` needs TLS: both are in the grammar but not built yet.

use std::fmt;

use super::filter::{FilterOptions, write_options};
use super::{FilterSpec, InputSpec, UrlError, bad_option, redact_userinfo, set_once};

/// How an HLS input is paced (`pace=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HlsPace {
    /// `pace=dts` (the default): segments, which arrive whole and faster
    /// than real time, are released by the DTS of their PES packets.
    #[default]
    Dts,
    /// `pace=none`: published as fast as they download.
    None,
}

/// A checked HLS input URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsSpec {
    /// The playlist fetched: this node's options taken out, the rest of
    /// the query kept.
    pub url: url::Url,
    /// `pace=`.
    pub pace: HlsPace,
    /// `program=`, `si=`, `pids=`.
    pub filter: FilterSpec,
}

impl fmt::Display for HlsSpec {
    /// The fetched URL with this node's options after the server's, defaults
    /// left out; it parses back to the same spec.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())?;
        let mut sep = if self.url.query().is_some() { '&' } else { '?' };
        let mut opt = |f: &mut fmt::Formatter<'_>, key: &str, value: &dyn fmt::Display| {
            let r = write!(f, "{sep}{key}={value}");
            sep = '&';
            r
        };
        if self.pace == HlsPace::None {
            opt(f, "pace", &"none")?;
        }
        write_options(&self.filter, f, &mut opt)
    }
}

/// Parses an `http://` or `https://` input.
pub(super) fn parse_http_url(input: &str) -> Result<InputSpec, UrlError> {
    let bad = |reason: &str| UrlError::BadHttpUrl { url: redact_userinfo(input), reason: reason.to_owned() };
    let mut url = url::Url::parse(input).map_err(|e| bad(&format!("not a valid URL ({e})")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("user info is not allowed"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    let path = url.path().to_ascii_lowercase();
    let playlist = path.ends_with(".m3u8") || path.ends_with(".m3u");
    if url.scheme() == "https" || !playlist {
        let what =
            if playlist { "HLS over https:// (TLS)" } else { "progressive HTTP-TS (a path not ending in .m3u8)" };
        return Err(UrlError::HttpNotYetSupported { what, url: redact_userinfo(input) });
    }
    url.set_fragment(None);
    let mut pace = None;
    let mut filter = FilterOptions::default();
    // The server's part of the query is kept as written (a signature may
    // cover its exact bytes); only this node's pairs, and empty ones, go.
    let query = url.query().unwrap_or("").to_owned();
    let mut kept = Vec::new();
    for raw in query.split('&').filter(|raw| !raw.is_empty()) {
        let Some((key, value)) = url::form_urlencoded::parse(raw.as_bytes()).next() else { continue };
        if filter.take(&key, &value)? {
            continue;
        }
        if key == "pace" {
            let p = match &*value {
                "dts" => HlsPace::Dts,
                "none" => HlsPace::None,
                _ => return Err(bad_option("pace", &value, "expected dts or none")),
            };
            set_once(&mut pace, "pace", p)?;
        } else {
            kept.push(raw);
        }
    }
    url.set_query((!kept.is_empty()).then(|| kept.join("&")).as_deref());
    Ok(InputSpec::Hls(HlsSpec { url, pace: pace.unwrap_or_default(), filter: filter.finish() }))
}
