//! `uringest serve`: the node. This first cut serves the embedded demo: a
//! short real clip (H.264 + AAC, 4 s, bundled in the binary) looped and
//! paced by its PCR as stream `demo`, at `http://<listen>/streams/demo.ts`,
//! with `/healthz`. Configured streams, failover and the API come with the
//! config file.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::watch;

use crate::clock::SystemClock;
use crate::http::{self, HttpOptions};
use crate::hub::Hub;
use crate::input::chunks::FileChunks;
use crate::input::playout::Playout;
use crate::input::playout::drive::{DriveOptions, drive};
use crate::shard::backend::{self, BackendError, IoChoice};
use crate::shard::{ShardError, Shards};
use crate::url::Pace;

/// The demo clip: 4 s of 320x240 H.264 and AAC at about 260 kbit/s (the
/// test fixture; see tests/fixtures/README.md for how it was made).
pub static DEMO_CLIP: &[u8] = include_bytes!("../tests/fixtures/h264_aac.ts");
/// Default HTTP address: loopback only, as a node must be told to listen
/// further.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Hub items kept per stream (file chunks: slices of the clip).
const HUB_CAPACITY: usize = 1024;
/// Packets per chunk cut from the clip.
const CHUNK_PACKETS: usize = 7 * 16;

/// Why the node could not run.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// No I/O backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The shards could not start.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The HTTP thread could not start.
    #[error("cannot start the HTTP thread: {0}")]
    Thread(std::io::Error),
    /// The demo stream failed.
    #[error("demo stream: {0}")]
    Demo(String),
}

/// How the node runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// I/O backend.
    pub io: IoChoice,
    /// Shards (default: one per usable core).
    pub shards: Option<usize>,
}

/// Runs the node until `stop` is set; calls `listening` with the bound
/// address once clients can connect.
pub fn serve(
    options: &ServeOptions,
    stop: Arc<AtomicBool>,
    listening: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let listener = std::net::TcpListener::bind(options.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ServeError::Listen { addr: options.listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: options.listen, source })?;
    let backend = backend::detect(options.io)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = Shards::start(options.shards.unwrap_or(cores), backend, true)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let (mut publisher, hub) = Hub::<Bytes>::new(HUB_CAPACITY).map_err(|e| ServeError::Demo(e.to_string()))?;
    let mut demo_stop = stop_rx.clone();
    let demo = shards.spawn(move || async move {
        let clip = FileChunks::from_bytes(Bytes::from_static(DEMO_CLIP), true, CHUNK_PACKETS);
        let playout = Playout::new(clip, true, Pace::Pcr);
        tokio::select! {
            played = drive(playout, &mut publisher, SystemClock, DriveOptions::default()) => played.map(|_| ()).map_err(|e| e.to_string()),
            _ = demo_stop.changed() => Ok(()),
        }
    })?;

    let http_options = HttpOptions { loopback_only: addr.ip().is_loopback(), ..HttpOptions::default() };
    let http_stop = stop_rx.clone();
    let http_thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => return Err(e.to_string()),
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                http::serve(listener, std::rc::Rc::new(demo_node::DemoNode { hub }), http_options, http_stop).await;
                Ok(())
            })
        })
        .map_err(ServeError::Thread)?;
    tracing::info!(%addr, "serving http://{addr}/streams/demo.ts");
    listening(addr);

    let mut demo = demo;
    let outcome = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if let Ok(result) = demo.try_recv() {
            break result.map_err(ServeError::Demo);
        }
        if http_thread.is_finished() {
            break Err(ServeError::Demo("the HTTP server stopped".into()));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = stop_tx.send(true);
    let _ = http_thread.join();
    shards.shutdown();
    outcome
}

/// The demo as a [`NodeControl`](crate::node::api::NodeControl): one
/// fixed stream, nothing to configure. Stands in until the real node.
mod demo_node {
    use bytes::Bytes;

    use crate::hub::Hub;
    use crate::node::api::{
        NodeControl, NodeError, Replaced, ShardStatus, StreamDef, StreamDetail, StreamState, StreamSummary,
    };
    use crate::ts::monitor::MonitorCounters;

    const ID: &str = "demo";

    pub(super) struct DemoNode {
        pub(super) hub: Hub<Bytes>,
    }

    fn fixed() -> NodeError {
        NodeError::Unavailable("the demo node has a fixed stream; start with --config to manage streams".into())
    }

    fn detail() -> StreamDetail {
        StreamDetail {
            id: ID.into(),
            state: StreamState::Running,
            active_input: Some(0),
            uptime_s: 0.0,
            bitrate_bps: 0.0,
            counters: MonitorCounters::default(),
            pids: Vec::new(),
            inputs: Vec::new(),
            switches_total: 0,
            switches: Vec::new(),
            outputs: Vec::new(),
            http_clients: 0,
        }
    }

    impl NodeControl for DemoNode {
        async fn list(&self) -> Vec<StreamSummary> {
            let d = detail();
            vec![StreamSummary {
                id: d.id,
                state: d.state,
                active_input: d.active_input,
                active_url: None,
                bitrate_bps: d.bitrate_bps,
            }]
        }
        async fn detail(&self, id: &str) -> Result<StreamDetail, NodeError> {
            if id == ID { Ok(detail()) } else { Err(NodeError::NotFound(id.into())) }
        }
        async fn snapshot(&self) -> (Vec<StreamDetail>, Vec<ShardStatus>) {
            (vec![detail()], Vec::new())
        }
        async fn create(&self, _: StreamDef) -> Result<StreamDetail, NodeError> {
            Err(fixed())
        }
        async fn replace(&self, _: &str, _: StreamDef) -> Result<Replaced, NodeError> {
            Err(fixed())
        }
        async fn delete(&self, _: &str) -> Result<(), NodeError> {
            Err(fixed())
        }
        async fn switch(&self, _: &str, _: usize) -> Result<(), NodeError> {
            Err(fixed())
        }
        fn hub(&self, id: &str) -> Option<Hub<Bytes>> {
            (id == ID).then(|| self.hub.clone())
        }
    }
}
