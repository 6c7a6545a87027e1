//! `uringest serve`: the node. With `--config FILE` it runs the streams the
//! file defines; without, the embedded demo: a short real clip (H.264 +
//! AAC, 4 s, bundled in the binary) looped and paced by its PCR as stream
//! `demo`, at `http://<listen>/streams/demo.ts`. Either way the HTTP side
//! serves HTTP-TS, the JSON API, `/metrics` and `/healthz`.
//!
//! A bad config, or a stream whose outputs cannot open, stops the start
//! before the HTTP side listens; inputs that cannot open are the
//! supervisor's business (retried with backoff, failed over).

use std::io::Write as _;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

use crate::config::{self, Config, ConfigError, DEFAULT_FAILBACK_AFTER, DEFAULT_INPUT_TIMEOUT, StreamConfig};
use crate::http;
use crate::node::api::NodeError;
use crate::node::registry::Node;
use crate::shard::backend::{self, BackendError, IoChoice};
use crate::shard::{ShardError, Shards};
use crate::ts::filter::FilterSpec;
use crate::url::{FileRead, InputSpec, Pace};

/// The demo clip: 4 s of 320x240 H.264 and AAC at about 260 kbit/s (the
/// test fixture; see tests/fixtures/README.md for how it was made).
pub static DEMO_CLIP: &[u8] = include_bytes!("../tests/fixtures/h264_aac.ts");
/// Default HTTP address: loopback only, as a node must be told to listen
/// further.
pub const DEFAULT_LISTEN: &str = config::DEFAULT_LISTEN;

/// Why the node could not run.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The config file was refused.
    #[error(transparent)]
    Config(#[from] ConfigError),
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
    /// A thread or runtime could not start.
    #[error("cannot start the {0}")]
    Start(String),
    /// A configured stream could not start.
    #[error("stream '{id}': {error}")]
    Stream {
        /// The stream.
        id: String,
        /// Why.
        error: NodeError,
    },
    /// The HTTP side stopped on its own.
    #[error("the HTTP server stopped: {0}")]
    Http(String),
}

/// How the node runs; set fields override the config file's `[node]`.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    /// The config file; `None` runs the demo.
    pub config: Option<PathBuf>,
    /// HTTP listen address.
    pub listen: Option<SocketAddr>,
    /// I/O backend.
    pub io: Option<IoChoice>,
    /// Shards (default: one per usable core).
    pub shards: Option<usize>,
}

/// The demo's clip as a file the node can map: written to an unlinked
/// temporary file whose descriptor stays open, so nothing is left behind
/// and the path (`/proc/self/fd/N`) lives exactly as long as the node.
struct DemoFile {
    file: std::fs::File,
}

impl DemoFile {
    fn create() -> std::io::Result<DemoFile> {
        let dir = std::env::temp_dir();
        let path = dir.join(format!("uringest-demo-{}.ts", std::process::id()));
        let mut file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path)?;
        let written = file.write_all(DEMO_CLIP);
        std::fs::remove_file(&path)?;
        written?;
        Ok(DemoFile { file })
    }

    fn path(&self) -> PathBuf {
        Path::new("/proc/self/fd").join(self.file.as_raw_fd().to_string())
    }
}

/// The demo node's one stream.
fn demo_stream(path: PathBuf) -> StreamConfig {
    StreamConfig {
        id: "demo".to_owned(),
        inputs: vec![InputSpec::File {
            path,
            looping: Some(true),
            pace: Some(Pace::Pcr),
            read: FileRead::Mmap,
            filter: FilterSpec::default(),
        }],
        input_urls: vec!["demo (embedded clip, looped, paced by PCR)".to_owned()],
        outputs: Vec::new(),
        output_urls: Vec::new(),
        input_timeout: DEFAULT_INPUT_TIMEOUT,
        failback_after: DEFAULT_FAILBACK_AFTER,
    }
}

/// Runs the node until `stop` is set; calls `listening` with the bound
/// address and the stream ids once clients can connect.
pub fn serve(
    options: &ServeOptions,
    stop: Arc<AtomicBool>,
    listening: impl FnOnce(SocketAddr, &[String]),
) -> Result<(), ServeError> {
    let mut demo = None;
    let config = match &options.config {
        Some(path) => config::load(path)?,
        None => {
            let file = DemoFile::create().map_err(|e| ServeError::Start(format!("demo stream: {e}")))?;
            let mut config = config::parse("", "(demo)")?;
            config.streams.push(demo_stream(file.path()));
            demo = Some(file);
            config
        }
    };
    let Config { node: node_config, streams } = config;
    let listen = options.listen.unwrap_or(node_config.listen);
    let listener = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| ServeError::Listen { addr: listen, source })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen { addr: listen, source })?;
    let backend = backend::detect(options.io.unwrap_or(node_config.io))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = Shards::start(options.shards.or(node_config.shards).unwrap_or(cores), backend, true)?;
    let node = Arc::new(Node::new(shards, node_config.mounts.clone()));

    // The control runtime: starts the configured streams now, stops them
    // at the end. The HTTP side has its own thread.
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Start(format!("control runtime: {e}")))?;
    let ids: Vec<String> = streams.iter().map(|s| s.id.clone()).collect();
    let started = control.block_on(async {
        for stream in streams {
            let id = stream.id.clone();
            node.add(stream).await.map_err(|error| ServeError::Stream { id, error })?;
        }
        Ok(())
    });
    if let Err(e) = started {
        control.block_on(node.stop_all());
        return Err(e);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let http_node = Arc::clone(&node);
    let http_options = http::HttpOptions {
        token: node_config.token.as_ref().map(|t| t.as_str().to_owned()),
        loopback_only: addr.ip().is_loopback(),
        ..http::HttpOptions::default()
    };
    let http_thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async move {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                http::serve(listener, std::rc::Rc::new(http_node), http_options, stop_rx).await;
                Ok::<(), String>(())
            })
        })
        .map_err(|e| ServeError::Start(format!("HTTP thread: {e}")))?;
    tracing::info!(%addr, streams = ids.len(), "serving");
    listening(addr, &ids);

    let outcome = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if http_thread.is_finished() {
            break Err(ServeError::Http("it ended".into()));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let _ = stop_tx.send(true);
    let http_result = http_thread.join();
    control.block_on(node.stop_all());
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown();
    }
    drop(demo);
    match (outcome, http_result) {
        (Err(_), Ok(Err(e))) => Err(ServeError::Http(e)),
        (outcome, _) => outcome,
    }
}
