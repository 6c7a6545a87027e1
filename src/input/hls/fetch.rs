//! HTTP/1.1 GET for playlists and segments: hyper's client connection over
//! a tokio `TcpStream`, one connection per request, redirects followed, the
//! body capped, the whole exchange under one timeout.
//!
//! One connection per request keeps the client free of a pool and of a
//! spawned connection task: an HLS input makes one request per segment
//! (every few seconds) and one per reload, so a handshake on loopback or a
//! CDN edge is noise next to the body.
//!
//! Errors say whether retrying can help (DESIGN.md, "HLS"): 401, 403, 404
//! and 410, a name that does not resolve, and a body over the cap are
//! permanent; refused or reset connections, timeouts and other statuses
//! are transient.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::{Host, Position, Url};

/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

/// A failed fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchError {
    /// Whether fetching again cannot help.
    pub permanent: bool,
    /// One line naming the URL and what went wrong.
    pub message: String,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FetchError {}

/// A fetched body and the URL it came from after redirects (relative URIs
/// in a playlist resolve against that one).
#[derive(Debug)]
pub struct Fetched {
    /// The final URL.
    pub url: Url,
    /// The whole body.
    pub body: Bytes,
}

/// GETs `url`: at most `limit` body bytes, within `timeout` per request.
pub async fn get(url: &Url, limit: usize, timeout: Duration) -> Result<Fetched, FetchError> {
    let mut url = url.clone();
    for _ in 0..=MAX_REDIRECTS {
        let outcome = tokio::time::timeout(timeout, get_once(&url, limit))
            .await
            .map_err(|_| transient(&url, format!("no complete response within {timeout:?}")))??;
        match outcome {
            Outcome::Body(body) => return Ok(Fetched { url, body }),
            Outcome::Redirect(location) => {
                let next = url.join(&location).map_err(|_| {
                    permanent(&url, format!("redirect to a bad location '{}'", crate::url::shown(&location)))
                })?;
                if next.scheme() != "http" {
                    return Err(permanent(&url, format!("redirect to '{next}', not http://")));
                }
                url = next;
            }
        }
    }
    Err(permanent(&url, format!("more than {MAX_REDIRECTS} redirects")))
}

enum Outcome {
    Body(Bytes),
    Redirect(String),
}

async fn get_once(url: &Url, limit: usize) -> Result<Outcome, FetchError> {
    let stream = connect(url).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| transient(url, format!("HTTP handshake: {e}")))?;
    let request = Request::get(&url[Position::BeforePath..Position::AfterQuery])
        .header(header::HOST, &url[Position::BeforeHost..Position::AfterPort])
        .header(header::USER_AGENT, concat!("uringest/", env!("CARGO_PKG_VERSION")))
        .body(Empty::<Bytes>::new())
        .map_err(|e| permanent(url, format!("cannot build the request: {e}")))?;
    let exchange = async move {
        let response = sender.send_request(request).await.map_err(|e| transient(url, format!("request: {e}")))?;
        // No second request on this connection: it closes once the body
        // is read.
        drop(sender);
        let status = response.status();
        if status.is_redirection() {
            return match response.headers().get(header::LOCATION).and_then(|v| v.to_str().ok()) {
                Some(location) => Ok(Outcome::Redirect(location.to_owned())),
                None => Err(permanent(url, format!("HTTP {status} without a Location"))),
            };
        }
        if !status.is_success() {
            let permanent_status =
                [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN, StatusCode::NOT_FOUND, StatusCode::GONE];
            let error = if permanent_status.contains(&status) { permanent } else { transient };
            return Err(error(url, format!("HTTP {status}")));
        }
        let declared = response.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse().ok());
        if declared.is_some_and(|n: u64| n > limit as u64) {
            return Err(permanent(
                url,
                format!("body of {} bytes is over the {limit}-byte limit", declared.unwrap_or(0)),
            ));
        }
        match Limited::new(response.into_body(), limit).collect().await {
            Ok(collected) => Ok(Outcome::Body(collected.to_bytes())),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                Err(permanent(url, format!("body is over the {limit}-byte limit")))
            }
            Err(e) => Err(transient(url, format!("reading the body: {e}"))),
        }
    };
    // The connection is driven beside the exchange; when it ends first
    // (the server closed after the body), the exchange still finishes
    // from what was buffered, or fails on the closed channel.
    tokio::pin!(exchange);
    tokio::pin!(connection);
    let mut connection_done = false;
    loop {
        tokio::select! {
            biased;
            outcome = &mut exchange => return outcome,
            _ = &mut connection, if !connection_done => connection_done = true,
        }
    }
}

/// Connects to the URL's host, trying each resolved address in turn.
async fn connect(url: &Url) -> Result<TcpStream, FetchError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let addrs: Vec<SocketAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![SocketAddr::from((ip, port))],
        Some(Host::Ipv6(ip)) => vec![SocketAddr::from((ip, port))],
        Some(Host::Domain(name)) => tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| permanent(url, format!("cannot resolve '{name}': {e}")))?
            .collect(),
        None => return Err(permanent(url, "no host".to_owned())),
    };
    let mut last = None;
    for addr in &addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                // Requests are one small write each; do not hold them back.
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(format!("connect to {addr}: {e}")),
        }
    }
    Err(transient(url, last.unwrap_or_else(|| "the name resolved to no address".to_owned())))
}

fn permanent(url: &Url, what: String) -> FetchError {
    FetchError { permanent: true, message: format!("GET {url}: {what}") }
}

fn transient(url: &Url, what: String) -> FetchError {
    FetchError { permanent: false, message: format!("GET {url}: {what}") }
}
