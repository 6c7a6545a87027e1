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
use crate::http::{self, StreamTable};
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

    let streams: Arc<StreamTable> = Arc::new([("demo".to_owned(), hub)].into_iter().collect());
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
                http::serve(listener, streams, http_stop).await;
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
