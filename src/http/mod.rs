//! The node's HTTP side (hyper): `GET /streams/<id>.ts` (HTTP-TS, any
//! number of clients) and `GET /healthz`. Each HTTP-TS client is a hub
//! reader with its own entry gate: it starts at a clean entry point, and a
//! client too slow for the stream lags, skips to the next entry point and
//! never slows the others or the input.

mod ts_body;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::hub::Start;
use crate::node::api::NodeControl;
use ts_body::TsBody;

/// How the HTTP side runs.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// With a token, mutating calls need `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// The listener is on a loopback address.
    pub loopback_only: bool,
    /// Largest request body taken, in bytes.
    pub max_body: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions { token: None, loopback_only: true, max_body: 64 << 10 }
    }
}

/// A response body: a short fixed one, or a live transport stream.
pub enum ServeBody {
    /// Fixed bytes (health, errors).
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

    fn size_hint(&self) -> SizeHint {
        match self {
            ServeBody::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            ServeBody::Ts(_) => SizeHint::default(),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<ServeBody> {
    let mut response = Response::new(ServeBody::Full(Some(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// Answers one request.
pub fn route<N: NodeControl>(node: &N, request: &Request<Incoming>) -> Response<ServeBody> {
    let path = request.uri().path();
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET here\n");
        r.headers_mut().insert("allow", HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    if path == "/healthz" {
        return text(StatusCode::OK, "ok\n");
    }
    let Some(id) = path.strip_prefix("/streams/").and_then(|rest| rest.strip_suffix(".ts")) else {
        return text(StatusCode::NOT_FOUND, "not found (streams are at /streams/<id>.ts)\n");
    };
    let Some(hub) = node.hub(id) else {
        return text(StatusCode::NOT_FOUND, "no such stream\n");
    };
    let mut response = Response::new(ServeBody::Ts(Box::new(TsBody::new(hub.subscribe(Start::Live)))));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
    response.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
    response
}

/// Serves `streams` on `listener` until `stop` turns true. Run it on a
/// tokio runtime with I/O (one connection task each).
pub async fn serve<N: NodeControl>(
    listener: TcpListener,
    node: Rc<N>,
    _options: HttpOptions,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let (socket, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and the like: keep serving the clients we have.
                    tracing::warn!(error = %e, "cannot accept an HTTP connection");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = socket.set_nodelay(true);
        let node = Rc::clone(&node);
        let mut conn_stop = stop.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let node = Rc::clone(&node);
                async move {
                    if let Some(id) = request.uri().path().strip_prefix("/api/v1/streams/") {
                        let body = match node.detail(id).await {
                            Ok(d) => serde_json::to_vec(&d).unwrap_or_default(),
                            Err(e) => e.to_string().into_bytes(),
                        };
                        return Ok::<_, Infallible>(Response::new(ServeBody::Full(Some(Bytes::from(body)))));
                    }
                    Ok::<_, Infallible>(route(node.as_ref(), &request))
                }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(socket), service);
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
