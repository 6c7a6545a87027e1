//! Request routing without a socket: method and path to a [`Route`], the
//! auth and size checks, then the node call and its JSON answer.
//!
//! Order of checks, so an answer names the first thing wrong: unknown path
//! (404), method (405 with `Allow`), auth on mutating calls (401/403), body
//! size (413), body syntax (400 with serde's reason, line and column), then
//! the node's own verdict ([`NodeError`] to 400/404/409/503). Content-Type
//! is not checked: a body that parses as the expected JSON is taken, so
//! `curl -d` works without `-H`. Every error body is
//! `{"error":"<one line>"}`.

// The checks return the ready answer as their error: built at most once per
// request, so its size does not matter.
#![allow(clippy::result_large_err)]

use bytes::Bytes;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue, LOCATION};
use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::ts_body::TsBody;
use super::{HttpOptions, ServeBody, metrics};
use crate::hub::Start;
use crate::node::api::{NodeControl, NodeError, Replaced, StreamDef, StreamSummary};

/// Longest piece of a request echoed in an error, in characters.
const ECHO_MAX: usize = 80;

/// What a request asks for, once its method and path are known good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /healthz`.
    Healthz,
    /// `GET /metrics`.
    Metrics,
    /// `GET /streams/<id>.ts`.
    Ts(String),
    /// `GET /api/v1/streams`.
    List,
    /// `POST /api/v1/streams`.
    Create,
    /// `GET /api/v1/streams/<id>`.
    Detail(String),
    /// `PUT /api/v1/streams/<id>`.
    Replace(String),
    /// `DELETE /api/v1/streams/<id>`.
    Delete(String),
    /// `POST /api/v1/streams/<id>/switch`.
    Switch(String),
}

impl Route {
    /// Whether the call changes the node (needs auth).
    pub fn is_mutating(&self) -> bool {
        matches!(self, Route::Create | Route::Replace(_) | Route::Delete(_) | Route::Switch(_))
    }

    /// Whether the call reads a JSON body.
    pub fn takes_body(&self) -> bool {
        matches!(self, Route::Create | Route::Replace(_) | Route::Switch(_))
    }
}

/// `POST /api/v1/streams/<id>/switch` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    input: usize,
}

#[derive(Serialize)]
struct Listing {
    streams: Vec<StreamSummary>,
}

#[derive(Serialize)]
struct ReplaceAnswer {
    replaced: Replaced,
}

#[derive(Serialize)]
struct SwitchAnswer {
    switched_to: usize,
}

#[derive(Serialize)]
struct ErrorAnswer<'a> {
    error: &'a str,
}

/// A JSON error answer. `message` is made one line here, so nothing a
/// client sent can split it.
pub fn error(status: StatusCode, message: &str) -> Response<ServeBody> {
    let line: String = message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    json(status, &ErrorAnswer { error: &line })
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<ServeBody> {
    let (status, body) = match serde_json::to_vec(value) {
        Ok(mut body) => {
            body.push(b'\n');
            (status, body)
        }
        // Our own types always serialise; answer rather than panic if not.
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, b"{\"error\":\"cannot encode the answer\"}\n".to_vec()),
    };
    let mut response = Response::new(ServeBody::Full(Some(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<ServeBody> {
    let mut response = Response::new(ServeBody::Full(Some(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// At most [`ECHO_MAX`] characters of `s`, for an error message.
fn echo(s: &str) -> String {
    let mut out: String = s.chars().take(ECHO_MAX).collect();
    if s.chars().nth(ECHO_MAX).is_some() {
        out.push_str("...");
    }
    out
}

fn not_allowed(method: &Method, path: &str, allow: &'static str) -> Response<ServeBody> {
    let mut r = error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("method {} not allowed on {}; allowed: {allow}", echo(method.as_str()), echo(path)),
    );
    r.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    r
}

/// One path segment: non-empty, without `/`.
fn segment(s: &str) -> Option<&str> {
    (!s.is_empty() && !s.contains('/')).then_some(s)
}

/// Maps method and path to a route, or the 404/405 answer.
pub fn resolve(method: &Method, path: &str) -> Result<Route, Response<ServeBody>> {
    const READ: &str = "GET, HEAD";
    let get = method == Method::GET || method == Method::HEAD;
    let pick = |route: Route, ok: bool, allow: &'static str| {
        if ok { Ok(route) } else { Err(not_allowed(method, path, allow)) }
    };
    if path == "/healthz" {
        return pick(Route::Healthz, get, READ);
    }
    if path == "/metrics" {
        return pick(Route::Metrics, get, READ);
    }
    if let Some(id) = path.strip_prefix("/streams/").and_then(|r| r.strip_suffix(".ts")).and_then(segment) {
        return pick(Route::Ts(id.to_owned()), get, READ);
    }
    if path == "/api/v1/streams" {
        return match *method {
            Method::POST => Ok(Route::Create),
            _ => pick(Route::List, get, "GET, HEAD, POST"),
        };
    }
    if let Some(rest) = path.strip_prefix("/api/v1/streams/") {
        if let Some(id) = segment(rest) {
            return match *method {
                Method::PUT => Ok(Route::Replace(id.to_owned())),
                Method::DELETE => Ok(Route::Delete(id.to_owned())),
                _ => pick(Route::Detail(id.to_owned()), get, "GET, HEAD, PUT, DELETE"),
            };
        }
        if let Some(id) = rest.strip_suffix("/switch").and_then(segment) {
            return pick(Route::Switch(id.to_owned()), method == Method::POST, "POST");
        }
    }
    Err(error(
        StatusCode::NOT_FOUND,
        &format!("no such path {}; see /api/v1/streams, /streams/<id>.ts, /metrics, /healthz", echo(path)),
    ))
}

/// Compares `presented` with `expected` in time that depends only on
/// `expected.len()`: no exit at the first differing byte.
pub fn token_matches(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = presented.len() ^ expected.len();
    for (i, &e) in expected.iter().enumerate() {
        let p = presented.get(i).copied().unwrap_or(0);
        diff |= usize::from(e ^ p);
        // Keep the optimiser from turning the loop into an early exit.
        diff = std::hint::black_box(diff);
    }
    diff == 0
}

/// The auth rule for `route`: reads are open; a mutating call needs the
/// bearer token when one is configured, and without one is refused unless
/// the listener is loopback.
pub fn authorize(options: &HttpOptions, route: &Route, headers: &HeaderMap) -> Result<(), Response<ServeBody>> {
    if !route.is_mutating() {
        return Ok(());
    }
    let Some(token) = &options.token else {
        return if options.loopback_only {
            Ok(())
        } else {
            Err(error(
                StatusCode::FORBIDDEN,
                "mutating calls are refused: no API token is configured and the listener is not loopback",
            ))
        };
    };
    let presented = headers.get(AUTHORIZATION).map(HeaderValue::as_bytes).and_then(|v| {
        // RFC 7235 §2.1: the scheme is case-insensitive.
        let (scheme, rest) = (v.get(..7)?, v.get(7..)?);
        scheme.eq_ignore_ascii_case(b"Bearer ").then_some(rest)
    });
    let reason = match presented {
        Some(p) if token_matches(p, token.as_bytes()) => return Ok(()),
        Some(_) => "Authorization: wrong bearer token",
        None => "Authorization: a bearer token is required for this call",
    };
    let mut r = error(StatusCode::UNAUTHORIZED, reason);
    r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
    Err(r)
}

/// The 413 answer.
pub fn too_large(max_body: usize) -> Response<ServeBody> {
    let mut r = error(StatusCode::PAYLOAD_TOO_LARGE, &format!("body: larger than the limit of {max_body} bytes"));
    // The rest of the body stays unread: the connection cannot be reused.
    r.headers_mut().insert("connection", HeaderValue::from_static("close"));
    r
}

/// Everything decidable from the request head: the route, auth, and a
/// declared `Content-Length` over the limit (checked before any body byte
/// is read).
pub fn admit(
    options: &HttpOptions,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<Route, Response<ServeBody>> {
    let route = resolve(method, path)?;
    authorize(options, &route, headers)?;
    if route.takes_body() {
        let declared =
            headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
        if declared.is_some_and(|n| n > options.max_body as u64) {
            return Err(too_large(options.max_body));
        }
    }
    Ok(route)
}

/// Answers one request whose body has been read whole (the fuzz target
/// and tests call this; the server reads the body with a cap first).
pub async fn handle<N: NodeControl>(
    node: &N,
    options: &HttpOptions,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Response<ServeBody> {
    let route = match admit(options, method, path, headers) {
        Ok(route) => route,
        Err(answer) => return answer,
    };
    if route.takes_body() && body.len() > options.max_body {
        return too_large(options.max_body);
    }
    dispatch(node, route, body).await
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Response<ServeBody>> {
    serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, &format!("body: {e}")))
}

fn node_error(e: &NodeError) -> Response<ServeBody> {
    let status = match e {
        NodeError::NotFound(_) => StatusCode::NOT_FOUND,
        NodeError::Exists(_) | NodeError::Limit(_) => StatusCode::CONFLICT,
        NodeError::Invalid(_) => StatusCode::BAD_REQUEST,
        NodeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    error(status, &e.to_string())
}

/// Runs an admitted route against the node.
pub async fn dispatch<N: NodeControl>(node: &N, route: Route, body: Bytes) -> Response<ServeBody> {
    match route {
        Route::Healthz => text(StatusCode::OK, "text/plain; charset=utf-8", Bytes::from_static(b"ok\n")),
        Route::Metrics => {
            let (streams, shards) = node.snapshot().await;
            text(StatusCode::OK, metrics::CONTENT_TYPE, Bytes::from(metrics::render(&streams, &shards)))
        }
        Route::Ts(id) => match node.tap(&id) {
            None => error(StatusCode::NOT_FOUND, &format!("no stream '{}'", echo(&id))),
            Some(tap) => {
                let reader = tap.hub.subscribe(Start::Live);
                let mut r = Response::new(ServeBody::Ts(Box::new(TsBody::new(reader, tap.counters))));
                r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("video/mp2t"));
                r.headers_mut().insert("cache-control", HeaderValue::from_static("no-cache"));
                r
            }
        },
        Route::List => json(StatusCode::OK, &Listing { streams: node.list().await }),
        Route::Detail(id) => match node.detail(&id).await {
            Ok(detail) => json(StatusCode::OK, &detail),
            Err(e) => node_error(&e),
        },
        Route::Create => {
            let def: StreamDef = match parse(&body) {
                Ok(def) => def,
                Err(answer) => return answer,
            };
            if def.id.is_none() {
                return error(StatusCode::BAD_REQUEST, "body: missing field `id`");
            }
            match node.create(def).await {
                Ok(detail) => {
                    let location = HeaderValue::from_str(&format!("/api/v1/streams/{}", detail.id));
                    let mut r = json(StatusCode::CREATED, &detail);
                    if let Ok(location) = location {
                        r.headers_mut().insert(LOCATION, location);
                    }
                    r
                }
                Err(e) => node_error(&e),
            }
        }
        Route::Replace(id) => {
            let mut def: StreamDef = match parse(&body) {
                Ok(def) => def,
                Err(answer) => return answer,
            };
            match &def.id {
                Some(body_id) if *body_id != id => {
                    let msg = format!("body: id '{}' differs from the path's '{}'", echo(body_id), echo(&id));
                    return error(StatusCode::BAD_REQUEST, &msg);
                }
                _ => def.id = Some(id.clone()),
            }
            match node.replace(&id, def).await {
                Ok(replaced) => {
                    let status = if replaced == Replaced::Created { StatusCode::CREATED } else { StatusCode::OK };
                    json(status, &ReplaceAnswer { replaced })
                }
                Err(e) => node_error(&e),
            }
        }
        Route::Delete(id) => match node.delete(&id).await {
            Ok(()) => {
                let mut r = Response::new(ServeBody::Full(None));
                *r.status_mut() = StatusCode::NO_CONTENT;
                r
            }
            Err(e) => node_error(&e),
        },
        Route::Switch(id) => {
            let SwitchBody { input } = match parse(&body) {
                Ok(b) => b,
                Err(answer) => return answer,
            };
            match node.switch(&id, input).await {
                Ok(()) => json(StatusCode::OK, &SwitchAnswer { switched_to: input }),
                Err(e) => node_error(&e),
            }
        }
    }
}
