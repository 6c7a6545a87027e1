//! Input URLs: the string an operator types, checked into an [`InputSpec`].
//!
//! Built so far: a plain file path, or `file:///abs/path.ts`. Every other
//! scheme of the grammar (DESIGN.md) is recognised and refused as not yet
//! supported, so a typo is told apart from a missing feature. Errors name the
//! offending part of the URL.

use std::path::PathBuf;

use thiserror::Error;

/// Schemes of the full grammar that later work adds.
const PLANNED_SCHEMES: &[&str] =
    &["udp", "rtp", "http", "https", "srt", "rtmp", "rtmps", "rtsp", "rtsps", "copy", "mixer"];

/// A parsed input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputSpec {
    /// A transport-stream file.
    File {
        /// Path on the local filesystem.
        path: PathBuf,
    },
}

/// Why an input URL was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    /// The string is empty.
    #[error("empty input URL")]
    Empty,
    /// The scheme is not part of the grammar.
    #[error("unknown URL scheme '{scheme}' in '{url}' (expected a file path or file:///abs/path.ts)")]
    UnknownScheme {
        /// The scheme as written.
        scheme: String,
        /// The whole URL.
        url: String,
    },
    /// The scheme is in the grammar but not built yet.
    #[error("URL scheme '{scheme}' is not supported yet (this build reads files only): '{url}'")]
    NotYetSupported {
        /// The scheme as written.
        scheme: String,
        /// The whole URL.
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
}

/// Parses an input URL or plain path.
pub fn parse_input(input: &str) -> Result<InputSpec, UrlError> {
    if input.is_empty() {
        return Err(UrlError::Empty);
    }
    let Some((scheme, _)) = input.split_once("://") else {
        return Ok(InputSpec::File { path: PathBuf::from(input) });
    };
    let scheme_lower = scheme.to_ascii_lowercase();
    if scheme_lower == "file" {
        return parse_file_url(input);
    }
    let valid_scheme = scheme.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if valid_scheme && PLANNED_SCHEMES.contains(&scheme_lower.as_str()) {
        return Err(UrlError::NotYetSupported { scheme: scheme.to_owned(), url: input.to_owned() });
    }
    Err(UrlError::UnknownScheme { scheme: scheme.to_owned(), url: input.to_owned() })
}

fn parse_file_url(input: &str) -> Result<InputSpec, UrlError> {
    let bad = |reason| UrlError::BadFileUrl { url: input.to_owned(), reason };
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
    if url.query().is_some() {
        return Err(bad("query options are not supported for file inputs yet"));
    }
    if url.fragment().is_some() {
        return Err(bad("a fragment is not allowed"));
    }
    let path = url.to_file_path().map_err(|()| bad("the path is not an absolute local path"))?;
    Ok(InputSpec::File { path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_file_urls() {
        assert_eq!(parse_input("a/b.ts"), Ok(InputSpec::File { path: "a/b.ts".into() }));
        assert_eq!(parse_input("file:///tmp/x%20y.ts"), Ok(InputSpec::File { path: "/tmp/x y.ts".into() }));
        assert_eq!(parse_input("file://localhost/tmp/x.ts"), Ok(InputSpec::File { path: "/tmp/x.ts".into() }));
    }

    #[test]
    fn refusals_name_the_part() {
        assert!(matches!(parse_input("gopher://x"), Err(UrlError::UnknownScheme { .. })));
        assert!(matches!(parse_input("udp://239.1.1.1:5000"), Err(UrlError::NotYetSupported { .. })));
        let err = parse_input("file://host/x.ts").unwrap_err().to_string();
        assert!(err.contains("host"), "{err}");
        let err = parse_input("file:///x.ts?loop=true").unwrap_err().to_string();
        assert!(err.contains("query"), "{err}");
        assert_eq!(parse_input(""), Err(UrlError::Empty));
    }
}
