//! Arbitrary requests through `http::handle` (routing, auth, body limit,
//! JSON parsing) against a trivial in-memory node.
//!
//! Layout: `m f path \0 headers \0 body`: `m` picks the method (GET, HEAD,
//! POST, PUT, DELETE, PATCH, OPTIONS or an odd token), `f` the options
//! (bit 0: a token is configured; bit 1: loopback listener; bits 2-3: body
//! limit 0, 16, 256 or 64 KiB; bit 4: add the right bearer token), headers
//! are `name: value` lines (malformed ones skipped), the body is the rest.
//!
//! Checks: the answer is ready at once (the node never waits); its status is
//! one the API documents; every error is `{"error": one line}` as JSON; 405
//! names `Allow`, 401 asks for `Bearer`; a call reaches the node's mutating
//! side only when the auth rule (re-derived here) allows it, and a call
//! with a body only when the body is within the limit.
#![no_main]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use uringest::http::{HttpOptions, ServeBody, handle};
use uringest::hub::Hub;
use uringest::node::api::{
    NodeControl, NodeError, Replaced, ShardStatus, StreamDef, StreamDetail, StreamState, StreamSummary,
};
use uringest::ts::monitor::MonitorCounters;

const TOKEN: &str = "fuzz-token-0123456789";

#[derive(Default)]
struct Node {
    streams: RefCell<BTreeMap<String, usize>>,
    /// Calls that took a body (create, replace, switch).
    bodied: Cell<u32>,
    deletes: Cell<u32>,
}

fn detail(id: &str, inputs: usize) -> StreamDetail {
    StreamDetail {
        id: id.into(),
        state: StreamState::Starting,
        active_input: (inputs > 0).then_some(0),
        uptime_s: 0.0,
        bitrate_bps: 0.0,
        counters: MonitorCounters::default(),
        pids: Vec::new(),
        inputs: Vec::new(),
        switches_total: 0,
        switches: Vec::new(),
        outputs: Vec::new(),
        http_clients: 0,
        shard: 0,
        pool: uringest::node::api::PoolUse::default(),
        demux: None,
    }
}

impl NodeControl for Node {
    async fn list(&self) -> Vec<StreamSummary> {
        let streams = self.streams.borrow();
        streams
            .keys()
            .map(|id| StreamSummary {
                id: id.clone(),
                state: StreamState::Starting,
                active_input: None,
                active_url: None,
                bitrate_bps: 0.0,
            })
            .collect()
    }
    async fn detail(&self, id: &str) -> Result<StreamDetail, NodeError> {
        let streams = self.streams.borrow();
        streams.get(id).map(|n| detail(id, *n)).ok_or_else(|| NodeError::NotFound(id.into()))
    }
    async fn snapshot(&self) -> (Vec<StreamDetail>, Vec<ShardStatus>) {
        (self.streams.borrow().iter().map(|(id, n)| detail(id, *n)).collect(), Vec::new())
    }
    async fn create(&self, def: StreamDef) -> Result<StreamDetail, NodeError> {
        self.bodied.set(self.bodied.get() + 1);
        let id = def.id.ok_or_else(|| NodeError::Invalid("id: missing".into()))?;
        let mut streams = self.streams.borrow_mut();
        if streams.contains_key(&id) {
            return Err(NodeError::Exists(id));
        }
        if streams.len() >= 4 {
            return Err(NodeError::Limit("streams: at most 4".into()));
        }
        streams.insert(id.clone(), def.inputs.len());
        Ok(detail(&id, def.inputs.len()))
    }
    async fn replace(&self, id: &str, def: StreamDef) -> Result<Replaced, NodeError> {
        self.bodied.set(self.bodied.get() + 1);
        if def.id.as_deref() != Some(id) {
            return Err(NodeError::Invalid("the router must set the path's id".into()));
        }
        let old = self.streams.borrow_mut().insert(id.into(), def.inputs.len());
        Ok(if old.is_some() { Replaced::Stream } else { Replaced::Created })
    }
    async fn delete(&self, id: &str) -> Result<(), NodeError> {
        self.deletes.set(self.deletes.get() + 1);
        self.streams.borrow_mut().remove(id).map(|_| ()).ok_or_else(|| NodeError::NotFound(id.into()))
    }
    async fn switch(&self, id: &str, input: usize) -> Result<(), NodeError> {
        self.bodied.set(self.bodied.get() + 1);
        match self.streams.borrow().get(id) {
            None => Err(NodeError::NotFound(id.into())),
            Some(n) if input >= *n => Err(NodeError::Invalid("input: out of range".into())),
            Some(_) => Err(NodeError::Unavailable("not now".into())),
        }
    }
    fn hub(&self, _: &str) -> Option<Hub<Bytes>> {
        None
    }
}

fn run<F: Future>(f: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(f).poll(&mut cx) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("handle waited although the node never does"),
    }
}

fn one_request(node: &Node, data: &[u8]) {
    let [m, f, rest @ ..] = data else { return };
    let method = match m % 8 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::POST,
        3 => Method::PUT,
        4 => Method::DELETE,
        5 => Method::PATCH,
        6 => Method::OPTIONS,
        _ => Method::from_bytes(b"BREW").unwrap(),
    };
    let max_body = [0, 16, 256, 64 * 1024][usize::from((f >> 2) & 3)];
    let options =
        HttpOptions { token: (f & 1 != 0).then(|| TOKEN.to_owned()), loopback_only: f & 2 != 0, max_body };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let head = parts.next().unwrap_or_default();
    let body = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let mut headers = HeaderMap::new();
    for line in head.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        headers.append(name, value);
    }
    if f & 16 != 0 {
        headers.insert("authorization", HeaderValue::from_static("Bearer fuzz-token-0123456789"));
    }

    let (bodied, deletes) = (node.bodied.get(), node.deletes.get());
    let response = run(handle(node, &options, &method, &path, &headers, body.clone()));
    let reached_bodied = node.bodied.get() != bodied;
    let reached = reached_bodied || node.deletes.get() != deletes;

    let status = response.status();
    let documented = [200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 503];
    assert!(documented.contains(&status.as_u16()), "undocumented status {status}");
    if reached {
        // The auth rule, re-derived: any Authorization header equal to the
        // token under a case-insensitive Bearer scheme.
        let authorized = match &options.token {
            None => options.loopback_only,
            Some(t) => headers.get_all("authorization").iter().take(1).any(|v| {
                let v = v.as_bytes();
                v.len() == 7 + t.len() && v[..7].eq_ignore_ascii_case(b"bearer ") && &v[7..] == t.as_bytes()
            }),
        };
        assert!(authorized, "a mutating call reached the node without auth");
    }
    if reached_bodied {
        assert!(body.len() <= max_body, "a {} byte body over the {max_body} limit reached the node", body.len());
    }
    match status {
        StatusCode::METHOD_NOT_ALLOWED => assert!(response.headers().contains_key("allow")),
        StatusCode::UNAUTHORIZED => assert_eq!(response.headers().get("www-authenticate").unwrap(), "Bearer"),
        _ => {}
    }
    if !status.is_success() {
        assert_eq!(response.headers().get("content-type").unwrap(), "application/json");
        let ServeBody::Full(Some(bytes)) = response.into_body() else { panic!("error without a body") };
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let error = value["error"].as_str().unwrap();
        assert!(!error.is_empty() && !error.chars().any(char::is_control), "not one line: {error:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    // Two requests on one node, so the second can see the first's stream.
    let node = Node::default();
    let split = data.iter().position(|&b| b == 0xff).unwrap_or(data.len());
    one_request(&node, &data[..split]);
    one_request(&node, data.get(split + 1..).unwrap_or_default());
});
