//! The node's HTTP side (hyper, HTTP/1.1): HTTP-TS at `GET /streams/<id>.ts`,
//! the JSON control API under `/api/v1`, `GET /metrics` (Prometheus text)
//! and `GET /healthz`.
//!
//! Routing, auth and the JSON answers live in [`route`] and need no socket;
//! this module is the shell that accepts connections, reads each request
//! body with a hard cap ([`body`]) and hands the request to the router.
//! Each HTTP-TS client is a hub reader with its own entry gate: it starts at
//! a clean entry point, and a client too slow for the stream lags, skips to
//! the next entry point and never slows the others or the input.
//!
//! Everything runs on one thread (a tokio `LocalSet`): the node's control
//! futures need not be `Send`.

pub mod body;
pub mod metrics;
pub mod route;
#[cfg(test)]
mod tests;
mod ts_body;

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::node::api::NodeControl;
pub use route::handle;
pub use ts_body::TsBody;

/// Default cap on a request body, bytes.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// How long a request body may take to arrive; headers get hyper's 30 s.
const BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// A response body: a short fixed one, or a live transport stream.
pub enum ServeBody {
    /// Fixed bytes (JSON, metrics, health); `None` for no body.
    Full(Option<Bytes>),
    /// HTTP-TS.
    Ts(Box<TsBody>),
}

impl Body for ServeBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            ServeBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ServeBody::Ts(ts) => Pin::new(ts.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, ServeBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ServeBody::Ts(_) => SizeHint::default(),
        }
    }
}

/// How the HTTP side guards the node.
#[derive(Clone)]
pub struct HttpOptions {
    /// API token: with one, every mutating call needs
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The listener is on a loopback address: without a token, mutating
    /// calls are allowed only then.
    pub loopback_only: bool,
    /// Largest request body accepted, bytes (413 beyond).
    pub max_body: usize,
}

impl Default for HttpOptions {
    /// No token, not loopback (so mutating calls are refused), 64 KiB bodies.
    fn default() -> HttpOptions {
        HttpOptions { token: None, loopback_only: false, max_body: DEFAULT_MAX_BODY }
    }
}

impl fmt::Debug for HttpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token never reaches a log.
        f.debug_struct("HttpOptions")
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("loopback_only", &self.loopback_only)
            .field("max_body", &self.max_body)
            .finish()
    }
}

/// Answers one request off the wire: the head is checked first, so a
/// refused or oversized request has none of its body read.
async fn respond<N: NodeControl>(node: &N, options: &HttpOptions, request: Request<Incoming>) -> Response<ServeBody> {
    let (parts, incoming) = request.into_parts();
    let route = match route::admit(options, &parts.method, parts.uri.path(), &parts.headers) {
        Ok(route) => route,
        Err(answer) => return answer,
    };
    let body = if route.takes_body() {
        match tokio::time::timeout(BODY_TIMEOUT, body::read_capped(incoming, options.max_body)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(body::ReadError::TooLarge)) => return route::too_large(options.max_body),
            Ok(Err(body::ReadError::Body(e))) => {
                return route::error(StatusCode::BAD_REQUEST, &format!("body: cannot be read: {e}"));
            }
            Err(_) => {
                let secs = BODY_TIMEOUT.as_secs();
                return route::error(StatusCode::REQUEST_TIMEOUT, &format!("body: not complete after {secs} s"));
            }
        }
    } else {
        Bytes::new()
    };
    route::dispatch(node, route, body).await
}

/// Serves `node` on `listener` until `stop` turns true. Run it inside a
/// tokio `LocalSet` on a runtime with I/O and time (one local task per
/// connection).
pub async fn serve<N: NodeControl>(
    listener: TcpListener,
    node: Rc<N>,
    options: HttpOptions,
    mut stop: watch::Receiver<bool>,
) {
    let options = Rc::new(options);
    loop {
        let (socket, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and the like: keep serving the clients we have.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = socket.set_nodelay(true);
        let node = Rc::clone(&node);
        let options = Rc::clone(&options);
        let mut conn_stop = stop.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let node = Rc::clone(&node);
                let options = Rc::clone(&options);
                async move { Ok::<_, Infallible>(respond(&*node, &options, request).await) }
            });
            // The timer arms hyper's header read timeout (30 s by default).
            let conn = http1::Builder::new().timer(TokioTimer::new()).serve_connection(TokioIo::new(socket), service);
            tokio::pin!(conn);
            tokio::select! {
                served = conn.as_mut() => if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "HTTP connection ended");
                },
                _ = conn_stop.changed() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}
