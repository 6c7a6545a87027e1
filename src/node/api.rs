//! What the node offers its HTTP side: the control operations and the
//! status it reports, as plain serialisable data.
//!
//! [`NodeControl`] is implemented by the running node; the HTTP layer
//! (`crate::http`) turns requests into these calls and the snapshots into
//! JSON and Prometheus text. Status is a snapshot taken on request from the
//! stream's own task: nothing here is shared with the data path.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use crate::ts::demux::DemuxCounters;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::hub::Hub;
use crate::output::udp::LiveCounters;
use crate::ts::monitor::{MonitorCounters, PidCounters};

/// A stream as the API creates or replaces it (JSON body). The id comes
/// from the body (`POST /api/v1/streams`) or the path (`PUT`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamDef {
    /// Stream id (`[a-z0-9_-]{1,64}`); optional in a `PUT` body, where the
    /// path names it (when both are given they must agree).
    #[serde(default)]
    pub id: Option<String>,
    /// Input URLs in failover order.
    pub inputs: Vec<String>,
    /// Output URLs.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Seconds of silence before failing over (default 3).
    #[serde(default)]
    pub input_timeout: Option<f64>,
    /// Seconds a better input must be healthy before failback (default 10).
    #[serde(default)]
    pub failback_after: Option<f64>,
}

/// Why a control call was refused. Each maps to one HTTP status.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NodeError {
    /// No stream with this id (404).
    #[error("no stream '{0}'")]
    NotFound(String),
    /// A stream with this id exists already (409).
    #[error("stream '{0}' exists already")]
    Exists(String),
    /// The definition or argument is invalid; the reason names the part (400).
    #[error("{0}")]
    Invalid(String),
    /// A node limit would be exceeded (409).
    #[error("{0}")]
    Limit(String),
    /// The node could not do it now: shards stopping, a task gone (503).
    #[error("{0}")]
    Unavailable(String),
}

/// What a replace did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Replaced {
    /// The definition was the same: nothing restarted.
    Unchanged,
    /// Outputs changed (and maybe inputs were added or removed): the
    /// inputs kept running.
    Outputs,
    /// Only inputs were added or removed: the stream kept running.
    Inputs,
    /// Inputs or timing changed: the whole stream restarted.
    Stream,
    /// There was no such stream: it was created.
    Created,
}

/// A stream's overall state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    /// No input has delivered data yet.
    Starting,
    /// The active input is delivering.
    Running,
    /// The active input is silent or failing; failover is under way.
    Degraded,
    /// Every input is out of rotation (ended or failed for good).
    Finished,
}

/// One line of `GET /api/v1/streams`.
#[derive(Clone, Debug, Serialize)]
pub struct StreamSummary {
    /// Stream id.
    pub id: String,
    /// Overall state.
    pub state: StreamState,
    /// Index of the input feeding the outputs.
    pub active_input: Option<usize>,
    /// Its URL.
    pub active_url: Option<String>,
    /// Output bitrate over the last second, bits/s.
    pub bitrate_bps: f64,
}

/// One input's health.
#[derive(Clone, Debug, Serialize)]
pub struct InputStatus {
    /// Priority position (0: main).
    pub index: usize,
    /// The URL as configured.
    pub url: String,
    /// `closed`, `opening`, `open`, `backoff`, `ended` or `failed`.
    pub state: &'static str,
    /// Whether it feeds the outputs.
    pub active: bool,
    /// Successful opens.
    pub opens_total: u64,
    /// Failed opens, failures and timeouts.
    pub failures_total: u64,
    /// Bytes of TS read.
    pub bytes_total: u64,
    /// Datagrams the kernel dropped before we read them (UDP).
    pub kernel_drops_total: u64,
    /// RTP sequence gaps (RTP-wrapped UDP).
    pub rtp_gaps_total: u64,
    /// Items the upstream stream overwrote before this input read them
    /// (`copy://`, `mixer://`).
    pub lag_drops_total: u64,
    /// HLS segments that left the live window before they were fetched.
    pub segments_missed_total: u64,
    /// AV packets a mixer dropped: of the wrong kind for their upstream,
    /// of a second track, or from before the mix started.
    pub mix_dropped_total: u64,
    /// Times a mixer re-anchored an upstream whose timestamps jumped.
    pub mix_realigned_total: u64,
    /// Seconds since its last data.
    pub last_data_ago_s: Option<f64>,
    /// Seconds it has delivered without a gap of `input_timeout`.
    pub healthy_for_s: Option<f64>,
    /// Seconds until the next retry, while backing off.
    pub retry_in_s: Option<f64>,
    /// The last error, one line.
    pub last_error: Option<String>,
}

/// One switch of the active input.
#[derive(Clone, Debug, Serialize)]
pub struct SwitchRecord {
    /// Seconds since the stream started.
    pub at_s: f64,
    /// Previous active input, if any.
    pub from: Option<usize>,
    /// New active input.
    pub to: usize,
    /// `start`, `error`, `timeout`, `ended`, `failback`, `manual`,
    /// `input_added` or `input_removed`.
    pub reason: &'static str,
}

/// One output's counters.
#[derive(Clone, Debug, Serialize)]
pub struct OutputStatus {
    /// The URL as configured (`http` for the HTTP-TS clients together).
    pub url: String,
    /// Bytes sent or written.
    pub bytes_total: u64,
    /// Hub items missed by falling behind.
    pub lag_drops_total: u64,
}

/// One stream in detail (`GET /api/v1/streams/<id>`), also the source of
/// its `/metrics` lines.
#[derive(Clone, Debug, Serialize)]
pub struct StreamDetail {
    /// Stream id.
    pub id: String,
    /// Overall state.
    pub state: StreamState,
    /// Index of the input feeding the outputs.
    pub active_input: Option<usize>,
    /// Seconds since the stream started.
    pub uptime_s: f64,
    /// Output bitrate over the last second, bits/s.
    pub bitrate_bps: f64,
    /// Counters over the stream as it goes out (after splicing).
    pub counters: MonitorCounters,
    /// Per PID, in PID order.
    pub pids: Vec<PidCounters>,
    /// Inputs in priority order.
    pub inputs: Vec<InputStatus>,
    /// Active-input switches, counted since start.
    pub switches_total: u64,
    /// The last switches, oldest first.
    pub switches: Vec<SwitchRecord>,
    /// Outputs, then the HTTP-TS clients as one.
    pub outputs: Vec<OutputStatus>,
    /// HTTP-TS clients connected now.
    pub http_clients: u64,
    /// The shard it runs on.
    pub shard: usize,
    /// Its UDP inputs' use of their buffer pools.
    pub pool: PoolUse,
    /// Its demux task's counters (skipped streams, PES losses...), while
    /// someone reads its AV packets (a mixer); `null` otherwise.
    pub demux: Option<DemuxCounters>,
}

/// Buffer pool use of a stream's UDP inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PoolUse {
    /// Buffers lent out now (held by the hub and its readers).
    pub in_use: u64,
    /// Datagrams copied to the heap because the pool was empty.
    pub fallbacks_total: u64,
    /// Datagrams dropped for want of any buffer.
    pub drops_total: u64,
}

/// One shard's state for `/metrics`.
#[derive(Clone, Debug, Serialize)]
pub struct ShardStatus {
    /// Shard index.
    pub index: usize,
    /// `io_uring` or `epoll`.
    pub backend: &'static str,
    /// Streams placed on it.
    pub streams: u64,
    /// Pool buffers lent out now (summed over its UDP inputs).
    pub pool_in_use: u64,
    /// Datagrams received into a fallback buffer because the pool was empty.
    pub pool_fallbacks_total: u64,
    /// Datagrams dropped for want of a buffer.
    pub pool_drops_total: u64,
}

/// The control surface the HTTP side drives. Futures need not be `Send`:
/// the HTTP side runs on one thread.
pub trait NodeControl: 'static {
    /// Every stream, in id order.
    fn list(&self) -> impl Future<Output = Vec<StreamSummary>>;
    /// One stream in detail.
    fn detail(&self, id: &str) -> impl Future<Output = Result<StreamDetail, NodeError>>;
    /// Every stream in detail and every shard (for `/metrics`).
    fn snapshot(&self) -> impl Future<Output = (Vec<StreamDetail>, Vec<ShardStatus>)>;
    /// Creates a stream; `def.id` must be set.
    fn create(&self, def: StreamDef) -> impl Future<Output = Result<StreamDetail, NodeError>>;
    /// Replaces stream `id` (or creates it), restarting only what changed.
    fn replace(&self, id: &str, def: StreamDef) -> impl Future<Output = Result<Replaced, NodeError>>;
    /// Stops and removes stream `id`.
    fn delete(&self, id: &str) -> impl Future<Output = Result<(), NodeError>>;
    /// Switches stream `id` to input `input` (0-based) and pins it.
    fn switch(&self, id: &str, input: usize) -> impl Future<Output = Result<(), NodeError>>;
    /// The stream's hub, for an HTTP-TS client.
    fn hub(&self, id: &str) -> Option<Hub<Bytes>>;
    /// The stream's hub with the counters its HTTP-TS clients share; by
    /// default the hub alone (nothing counted).
    fn tap(&self, id: &str) -> Option<HttpTap> {
        self.hub(id).map(|hub| HttpTap { hub, counters: None })
    }
}

/// What an HTTP-TS client reads from and counts into.
pub struct HttpTap {
    /// The stream's hub.
    pub hub: Hub<Bytes>,
    /// Counters shared by the stream's HTTP-TS clients.
    pub counters: Option<HttpCounters>,
}

/// What the HTTP-TS clients of a stream count together.
#[derive(Clone, Debug, Default)]
pub struct HttpCounters {
    /// Bytes sent and hub items missed, over every client.
    pub live: Arc<LiveCounters>,
    /// Clients connected now.
    pub clients: Arc<AtomicU64>,
}
