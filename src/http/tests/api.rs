//! The API over a real socket: every status code, auth, body limits.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use hyper::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};

use super::{FAKE_LIMIT, FakeNode, Probe, Server};
use crate::http::route::{Route, resolve, token_matches};
use crate::http::{HttpOptions, handle};

const TOKEN: &str = "s3cret-token-0123456789";
const DEF_A: &str = r#"{"id":"a","inputs":["udp://239.1.1.1:5000","udp://239.1.1.2:5000"]}"#;

fn open() -> Server {
    Server::start(HttpOptions { loopback_only: true, ..HttpOptions::default() })
}

fn with_token() -> Server {
    Server::start(HttpOptions { token: Some(TOKEN.into()), loopback_only: false, ..HttpOptions::default() })
}

#[test]
fn healthz_and_stream_list() {
    let s = open();
    let r = s.call("GET", "/healthz", &[], None);
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = s.call("GET", "/api/v1/streams", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"streams": []}));
    assert_eq!(s.call("POST", "/api/v1/streams", &[], Some(DEF_A)).status, 201);
    let r = s.call("GET", "/api/v1/streams", &[], None);
    let list = r.json();
    assert_eq!(list["streams"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["streams"][0]["id"], "a");
    assert_eq!(list["streams"][0]["state"], "running");
    assert_eq!(list["streams"][0]["active_url"], "udp://239.1.1.1:5000");
}

#[test]
fn create_detail_and_their_errors() {
    let s = open();
    let r = s.call("POST", "/api/v1/streams", &[("Content-Type", "application/json")], Some(DEF_A));
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some("/api/v1/streams/a"));
    let created = r.json();
    assert_eq!((created["id"].as_str(), created["inputs"].as_array().map(Vec::len)), (Some("a"), Some(2)));
    // Content-Type is not required: the body parses, so it is taken.
    let r = s.call("POST", "/api/v1/streams", &[], Some(r#"{"id":"b","inputs":["udp://1.2.3.4:5"]}"#));
    assert_eq!(r.status, 201, "{r:?}");

    let r = s.call("GET", "/api/v1/streams/a", &[], None);
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["inputs"][1]["url"], "udp://239.1.1.2:5000");
    assert_eq!(r.json()["pids"][0]["pid"], 256);

    let r = s.call("GET", "/api/v1/streams/nope", &[], None);
    assert_eq!((r.status, r.error()), (404, "no stream 'nope'".to_owned()));
    let r = s.call("POST", "/api/v1/streams", &[], Some(DEF_A));
    assert_eq!((r.status, r.error()), (409, "stream 'a' exists already".to_owned()));
    let r = s.call("POST", "/api/v1/streams", &[], Some(r#"{"inputs":["udp://1.2.3.4:5"]}"#));
    assert_eq!((r.status, r.error()), (400, "body: missing field `id`".to_owned()));
    let r = s.call("POST", "/api/v1/streams", &[], Some(r#"{"id":"Bad!","inputs":["udp://1.2.3.4:5"]}"#));
    assert_eq!(r.status, 400);
    assert!(r.error().starts_with("id: 'Bad!'"), "{r:?}");
    let r = s.call("POST", "/api/v1/streams", &[], Some(r#"{"id":"c","inputs":[]}"#));
    assert_eq!((r.status, r.error()), (400, "inputs: at least one is required".to_owned()));
    assert_eq!(s.call("POST", "/api/v1/streams", &[], Some(r#"{"id":"c","inputs":["x"]}"#)).status, 201);
    let r = s.call("POST", "/api/v1/streams", &[], Some(r#"{"id":"d","inputs":["x"]}"#));
    assert_eq!((r.status, r.error()), (409, format!("streams: at most {FAKE_LIMIT}")));
}

#[test]
fn malformed_json_gets_serdes_reason() {
    let s = open();
    let r = s.call("POST", "/api/v1/streams", &[], Some("{\"id\":\"a\",\n \"inputs\": [1,]}"));
    assert_eq!(r.status, 400);
    let e = r.error();
    assert!(e.starts_with("body: invalid type: integer `1`"), "{e}");
    assert!(e.ends_with("at line 2 column 13"), "{e}");
    let r = s.call("POST", "/api/v1/streams", &[], Some(r#"{"id":"a","inputs":[],"bogus":1}"#));
    assert!(r.error().starts_with("body: unknown field `bogus`"), "{r:?}");
    let r = s.call("POST", "/api/v1/streams", &[], Some(""));
    assert_eq!((r.status, r.error()), (400, "body: EOF while parsing a value at line 1 column 0".to_owned()));
    let r = s.call("POST", "/api/v1/streams/a/switch", &[], Some(r#"{"input":-1}"#));
    assert_eq!(r.status, 400);
    assert!(r.error().contains("line 1 column 11"), "{r:?}");
    assert_eq!(s.mutations(), 0, "a malformed body reached the node");
}

#[test]
fn replace_delete_switch() {
    let s = open();
    let put = |body: &str| s.call("PUT", "/api/v1/streams/a", &[], Some(body));
    let r = put(r#"{"inputs":["udp://239.1.1.1:5000"]}"#);
    assert_eq!((r.status, r.json()), (201, serde_json::json!({"replaced": "created"})));
    let r = put(r#"{"id":"a","inputs":["udp://239.1.1.1:5000"]}"#);
    assert_eq!((r.status, r.json()), (200, serde_json::json!({"replaced": "unchanged"})));
    let r = put(r#"{"inputs":["udp://239.1.1.1:5000"],"outputs":["udp://239.9.9.9:6000"]}"#);
    assert_eq!((r.status, r.json()), (200, serde_json::json!({"replaced": "outputs"})));
    let r = put(r#"{"inputs":["udp://239.1.1.1:5000","udp://239.1.1.2:5000"]}"#);
    assert_eq!((r.status, r.json()), (200, serde_json::json!({"replaced": "stream"})));
    let r = put(r#"{"id":"b","inputs":["x"]}"#);
    assert_eq!((r.status, r.error()), (400, "body: id 'b' differs from the path's 'a'".to_owned()));

    let r = s.call("POST", "/api/v1/streams/a/switch", &[], Some(r#"{"input":1}"#));
    assert_eq!((r.status, r.json()), (200, serde_json::json!({"switched_to": 1})));
    let r = s.call("POST", "/api/v1/streams/a/switch", &[], Some(r#"{"input":2}"#));
    assert_eq!((r.status, r.error()), (400, "input: 2 out of range (2 inputs)".to_owned()));
    let r = s.call("POST", "/api/v1/streams/zz/switch", &[], Some(r#"{"input":0}"#));
    assert_eq!(r.status, 404);

    let r = s.call("DELETE", "/api/v1/streams/a", &[], None);
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = s.call("DELETE", "/api/v1/streams/a", &[], None);
    assert_eq!((r.status, r.error()), (404, "no stream 'a'".to_owned()));
}

#[test]
fn unavailable_is_503() {
    let s = open();
    s.probe.unavailable.store(true, Ordering::SeqCst);
    let r = s.call("POST", "/api/v1/streams", &[], Some(DEF_A));
    assert_eq!((r.status, r.error()), (503, "shards are stopping".to_owned()));
    assert_eq!(s.call("GET", "/api/v1/streams/a", &[], None).status, 503);
}

#[test]
fn wrong_method_405_with_allow_and_unknown_path_404() {
    let s = open();
    for (method, path, allow) in [
        ("DELETE", "/api/v1/streams", "GET, HEAD, POST"),
        ("POST", "/api/v1/streams/a", "GET, HEAD, PUT, DELETE"),
        ("GET", "/api/v1/streams/a/switch", "POST"),
        ("PUT", "/metrics", "GET, HEAD"),
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/streams/a.ts", "GET, HEAD"),
    ] {
        let r = s.call(method, path, &[], None);
        assert_eq!((r.status, r.header("allow")), (405, Some(allow)), "{method} {path}: {r:?}");
        assert!(r.error().starts_with(&format!("method {method} not allowed on {path}")), "{r:?}");
    }
    for path in ["/", "/api/v1", "/api/v1/streams/", "/api/v1/streams/a/b", "/api/v2/streams", "/streams/.ts"] {
        let r = s.call("GET", path, &[], None);
        assert_eq!(r.status, 404, "{path}: {r:?}");
        assert!(r.error().starts_with(&format!("no such path {path};")), "{r:?}");
    }
    assert_eq!(s.mutations(), 0);
}

#[test]
fn http_ts_route_uses_the_nodes_hub() {
    let s = open();
    assert_eq!(s.call("POST", "/api/v1/streams", &[], Some(DEF_A)).status, 201);
    let r = s.call("HEAD", "/streams/a.ts", &[], None);
    assert_eq!((r.status, r.header("content-type")), (200, Some("video/mp2t")), "{r:?}");
    let r = s.call("GET", "/streams/nope.ts", &[], None);
    assert_eq!((r.status, r.error()), (404, "no stream 'nope'".to_owned()));
}

#[test]
fn token_guards_mutating_calls_only() {
    let s = with_token();
    let bearer = format!("Bearer {TOKEN}");
    let r = s.call("POST", "/api/v1/streams", &[], Some(DEF_A));
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")), "{r:?}");
    assert_eq!(r.error(), "Authorization: a bearer token is required for this call");
    let wrong = format!("Bearer {TOKEN}x");
    for bad in [wrong.as_str(), "Bearer s3cret-token-012345678X", "Bearer ", "Basic czNjcmV0", TOKEN] {
        let r = s.call("POST", "/api/v1/streams", &[("Authorization", bad)], Some(DEF_A));
        assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")), "{bad}: {r:?}");
    }
    for method in ["PUT", "DELETE"] {
        assert_eq!(s.call(method, "/api/v1/streams/a", &[], Some(DEF_A)).status, 401, "{method}");
    }
    assert_eq!(s.call("POST", "/api/v1/streams/a/switch", &[], Some(r#"{"input":0}"#)).status, 401);
    assert_eq!(s.mutations(), 0, "an unauthorised call reached the node");

    let r = s.call("POST", "/api/v1/streams", &[("Authorization", &bearer)], Some(DEF_A));
    assert_eq!(r.status, 201, "{r:?}");
    // The scheme is case-insensitive (RFC 7235 §2.1).
    let lower = format!("bearer {TOKEN}");
    assert_eq!(s.call("DELETE", "/api/v1/streams/a", &[("Authorization", &lower)], None).status, 204);
    assert_eq!(s.mutations(), 2);
    // Reads stay open.
    assert_eq!(s.call("GET", "/api/v1/streams", &[], None).status, 200);
    assert_eq!(s.call("GET", "/metrics", &[], None).status, 200);
}

#[test]
fn without_a_token_only_loopback_may_mutate() {
    let s = open();
    assert_eq!(s.call("POST", "/api/v1/streams", &[], Some(DEF_A)).status, 201);
    let s = Server::start(HttpOptions { token: None, loopback_only: false, ..HttpOptions::default() });
    for (method, path) in [("POST", "/api/v1/streams"), ("PUT", "/api/v1/streams/a"), ("DELETE", "/api/v1/streams/a")] {
        let r = s.call(method, path, &[], Some(DEF_A));
        assert_eq!(r.status, 403, "{method}: {r:?}");
        assert!(r.error().contains("no API token is configured"), "{r:?}");
    }
    assert_eq!(s.call("GET", "/api/v1/streams", &[], None).status, 200);
    assert_eq!(s.mutations(), 0);
}

fn small() -> Server {
    Server::start(HttpOptions { loopback_only: true, max_body: 256, ..HttpOptions::default() })
}

#[test]
fn body_at_the_limit_is_taken() {
    let s = small();
    let body = format!("{DEF_A:<256}");
    assert_eq!(body.len(), 256);
    assert_eq!(s.call("POST", "/api/v1/streams", &[], Some(&body)).status, 201);
}

#[test]
fn oversized_body_by_content_length_is_413_before_reading() {
    let s = small();
    // Only the head is sent: the answer must not wait for the body.
    let raw = "POST /api/v1/streams HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000000\r\n\r\n";
    let r = s.raw(raw.as_bytes());
    assert_eq!((r.status, r.error()), (413, "body: larger than the limit of 256 bytes".to_owned()));
    assert_eq!(r.header("connection"), Some("close"));
    let r = s.call("PUT", "/api/v1/streams/a", &[], Some(&" ".repeat(257)));
    assert_eq!(r.status, 413);
    assert_eq!(s.mutations(), 0);
}

#[test]
fn oversized_chunked_body_is_413_while_reading() {
    let s = small();
    let mut raw = String::from("POST /api/v1/streams HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    // 3 chunks of 100 bytes: the third crosses the 256-byte limit.
    for _ in 0..3 {
        raw.push_str(&format!("64\r\n{}\r\n", " ".repeat(100)));
    }
    raw.push_str("0\r\n\r\n");
    let r = s.raw(raw.as_bytes());
    assert_eq!(r.status, 413, "{r:?}");
    // Just under the limit in chunks: taken.
    let body = format!("{DEF_A:<200}");
    let raw = format!(
        "POST /api/v1/streams HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
         64\r\n{}\r\n64\r\n{}\r\n0\r\n\r\n",
        &body[..100],
        &body[100..]
    );
    let r = s.raw(raw.as_bytes());
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(s.mutations(), 1);
}

#[test]
fn tokens_compare_in_full() {
    assert!(token_matches(b"abc", b"abc"));
    for other in [&b"abd"[..], b"ab", b"abcd", b"", b"xbc"] {
        assert!(!token_matches(other, b"abc"), "{other:?}");
    }
    assert!(!token_matches(b"", b"x"));
}

#[test]
fn routes_resolve_without_a_socket() {
    assert_eq!(resolve(&Method::GET, "/api/v1/streams/x").ok(), Some(Route::Detail("x".into())));
    assert_eq!(resolve(&Method::POST, "/api/v1/streams/x/switch").ok(), Some(Route::Switch("x".into())));
    assert_eq!(resolve(&Method::HEAD, "/streams/x.ts").ok(), Some(Route::Ts("x".into())));
    assert_eq!(resolve(&Method::GET, "/streams/a/b.ts").err().map(|r| r.status()), Some(StatusCode::NOT_FOUND));
}

#[test]
fn handle_checks_the_given_body_against_the_limit() {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let node = FakeNode::new(Probe::default());
    let options = HttpOptions { token: Some(TOKEN.into()), max_body: 8, ..HttpOptions::default() };
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {TOKEN}")).unwrap());
    let body = Bytes::from_static(DEF_A.as_bytes());
    let r = runtime.block_on(handle(&node, &options, &Method::POST, "/api/v1/streams", &headers, body.clone()));
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let options = HttpOptions { max_body: 1024, ..options };
    let r = runtime.block_on(handle(&node, &options, &Method::POST, "/api/v1/streams", &headers, body));
    assert_eq!(r.status(), StatusCode::CREATED);
}
