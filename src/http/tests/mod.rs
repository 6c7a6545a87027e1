//! Tests of the HTTP side: a fake [`NodeControl`] (an in-memory map) behind
//! the real server on a loopback socket, driven by raw HTTP/1.1 requests.

mod api;
mod metrics;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use super::HttpOptions;
use crate::hub::{Hub, Publisher};
use crate::node::api::{
    InputStatus, NodeControl, NodeError, OutputStatus, Replaced, ShardStatus, StreamDef, StreamDetail, StreamState,
    StreamSummary,
};
use crate::ts::monitor::{MonitorCounters, PidCounters};

/// Streams the fake accepts before answering `Limit`.
pub const FAKE_LIMIT: usize = 3;

/// What the test thread can see of the fake on the server thread.
#[derive(Clone, Default)]
pub struct Probe {
    /// Mutating calls that reached the node.
    pub mutations: Arc<AtomicUsize>,
    /// When set, every call answers `Unavailable`.
    pub unavailable: Arc<AtomicBool>,
}

/// A fake stream: its definition and its hub (the publisher keeps it open).
type FakeStream = (StreamDef, Publisher<Bytes>, Hub<Bytes>);

/// An in-memory node: definitions by id, a hub each.
pub struct FakeNode {
    streams: RefCell<BTreeMap<String, FakeStream>>,
    probe: Probe,
}

impl FakeNode {
    pub fn new(probe: Probe) -> FakeNode {
        FakeNode { streams: RefCell::new(BTreeMap::new()), probe }
    }

    fn gate(&self, mutating: bool) -> Result<(), NodeError> {
        if mutating {
            self.probe.mutations.fetch_add(1, Ordering::SeqCst);
        }
        if self.probe.unavailable.load(Ordering::SeqCst) {
            return Err(NodeError::Unavailable("shards are stopping".into()));
        }
        Ok(())
    }

    fn check(def: &StreamDef) -> Result<(), NodeError> {
        let id = def.id.as_deref().unwrap_or_default();
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return Err(NodeError::Invalid(format!("id: '{id}' is not [a-z0-9_-]{{1,64}}")));
        }
        if def.inputs.is_empty() {
            return Err(NodeError::Invalid("inputs: at least one is required".into()));
        }
        Ok(())
    }

    fn insert(&self, def: StreamDef) -> Result<(), NodeError> {
        Self::check(&def)?;
        let mut streams = self.streams.borrow_mut();
        if streams.len() >= FAKE_LIMIT {
            return Err(NodeError::Limit(format!("streams: at most {FAKE_LIMIT}")));
        }
        let (publisher, hub) = Hub::new(16).map_err(|e| NodeError::Invalid(e.to_string()))?;
        streams.insert(def.id.clone().unwrap_or_default(), (def, publisher, hub));
        Ok(())
    }

    fn detail_of(id: &str, def: &StreamDef) -> StreamDetail {
        StreamDetail {
            id: id.to_owned(),
            state: StreamState::Running,
            active_input: Some(0),
            uptime_s: 1.5,
            bitrate_bps: 1_000_000.0,
            counters: MonitorCounters { packets_total: 10, bytes_total: 1880, ..MonitorCounters::default() },
            pids: vec![PidCounters { pid: 256, packets_total: 10, cc_errors_total: 1, bitrate_bps: 8000.0 }],
            inputs: def
                .inputs
                .iter()
                .enumerate()
                .map(|(index, url)| InputStatus {
                    index,
                    url: url.clone(),
                    state: "open",
                    active: index == 0,
                    opens_total: 1,
                    failures_total: 0,
                    bytes_total: 1880,
                    kernel_drops_total: 0,
                    rtp_gaps_total: 0,
                    lag_drops_total: 0,
                    segments_missed_total: 0,
                    mix_dropped_total: 0,
                    mix_realigned_total: 0,
                    last_data_ago_s: Some(0.1),
                    healthy_for_s: Some(1.0),
                    retry_in_s: None,
                    last_error: None,
                })
                .collect(),
            switches_total: 0,
            switches: Vec::new(),
            outputs: def
                .outputs
                .iter()
                .map(|url| OutputStatus { url: url.clone(), bytes_total: 0, lag_drops_total: 0 })
                .collect(),
            http_clients: 0,
            shard: 0,
            pool: crate::node::api::PoolUse::default(),
            demux: None,
        }
    }
}

impl NodeControl for FakeNode {
    async fn list(&self) -> Vec<StreamSummary> {
        self.streams
            .borrow()
            .iter()
            .map(|(id, (def, ..))| StreamSummary {
                id: id.clone(),
                state: StreamState::Running,
                active_input: Some(0),
                active_url: def.inputs.first().cloned(),
                bitrate_bps: 1_000_000.0,
            })
            .collect()
    }

    async fn detail(&self, id: &str) -> Result<StreamDetail, NodeError> {
        self.gate(false)?;
        let streams = self.streams.borrow();
        let (def, ..) = streams.get(id).ok_or_else(|| NodeError::NotFound(id.into()))?;
        Ok(Self::detail_of(id, def))
    }

    async fn snapshot(&self) -> (Vec<StreamDetail>, Vec<ShardStatus>) {
        let streams = self.streams.borrow().iter().map(|(id, (def, ..))| Self::detail_of(id, def)).collect();
        let shard = ShardStatus {
            index: 0,
            backend: "epoll",
            streams: 1,
            pool_in_use: 2,
            pool_fallbacks_total: 3,
            pool_drops_total: 4,
        };
        (streams, vec![shard])
    }

    async fn create(&self, def: StreamDef) -> Result<StreamDetail, NodeError> {
        self.gate(true)?;
        let id = def.id.clone().unwrap_or_default();
        if self.streams.borrow().contains_key(&id) {
            return Err(NodeError::Exists(id));
        }
        self.insert(def.clone())?;
        Ok(Self::detail_of(&id, &def))
    }

    async fn replace(&self, id: &str, def: StreamDef) -> Result<Replaced, NodeError> {
        self.gate(true)?;
        Self::check(&def)?;
        let mut streams = self.streams.borrow_mut();
        let Some((old, ..)) = streams.get_mut(id) else {
            drop(streams);
            self.insert(def)?;
            return Ok(Replaced::Created);
        };
        let replaced = if *old == def {
            Replaced::Unchanged
        } else if old.inputs == def.inputs {
            Replaced::Outputs
        } else {
            Replaced::Stream
        };
        *old = def;
        Ok(replaced)
    }

    async fn delete(&self, id: &str) -> Result<(), NodeError> {
        self.gate(true)?;
        self.streams.borrow_mut().remove(id).map(|_| ()).ok_or_else(|| NodeError::NotFound(id.into()))
    }

    async fn switch(&self, id: &str, input: usize) -> Result<(), NodeError> {
        self.gate(true)?;
        let streams = self.streams.borrow();
        let (def, ..) = streams.get(id).ok_or_else(|| NodeError::NotFound(id.into()))?;
        if input >= def.inputs.len() {
            return Err(NodeError::Invalid(format!("input: {input} out of range ({} inputs)", def.inputs.len())));
        }
        Ok(())
    }

    fn hub(&self, id: &str) -> Option<Hub<Bytes>> {
        self.streams.borrow().get(id).map(|(_, _, hub)| hub.clone())
    }
}

/// The real server on a loopback port, on its own thread (current-thread
/// runtime + LocalSet), stopped when dropped.
pub struct Server {
    pub addr: SocketAddr,
    pub probe: Probe,
    stop: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(options: HttpOptions) -> Server {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let probe = Probe::default();
        let node_probe = probe.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                super::serve(listener, Rc::new(FakeNode::new(node_probe)), options, stop_rx).await;
            });
        });
        Server { addr, probe, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn mutations(&self) -> usize {
        self.probe.mutations.load(Ordering::SeqCst)
    }

    /// Sends `raw` as is and reads the answer until the server closes.
    pub fn raw(&self, raw: &[u8]) -> Reply {
        let mut socket = TcpStream::connect(self.addr).unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The server may answer (and close) before taking all of an
        // oversized body: a failed write is part of what is tested.
        let _ = socket.write_all(raw);
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded: at most 5 s per read and 1 MiB in all.
        while bytes.len() < 1 << 20 {
            match socket.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
        Reply::parse(&bytes)
    }

    /// One request with `Connection: close` and, with a body, its length.
    pub fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n");
        for (name, value) in headers {
            raw.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            raw.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        raw.push_str("\r\n");
        raw.push_str(body.unwrap_or_default());
        self.raw(raw.as_bytes())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A parsed answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    fn parse(bytes: &[u8]) -> Reply {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no complete head in {text:?}"));
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(body) } else { body.to_owned() };
        Reply { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `error` of a JSON error answer.
    pub fn error(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"), "{self:?}");
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error string: {self:?}")).to_owned()
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}
