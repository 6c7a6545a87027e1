//! `uringest bench recv`: a UDP input received on one shard and consumed
//! as cheaply as possible, to measure the receive path alone.
//!
//! `probe` of a `udp://` input also analyzes every packet (per-PID
//! continuity, PSI), which on this machine is a third of its CPU at
//! 3 Gbit/s; `perf/udp.sh` compares receive paths, and the baseline it
//! compares against (`examples/recvmmsg_baseline.rs`) only checks sync
//! bytes. Here the input does what it always does (classify each datagram:
//! TS or RTP-TS, sync bytes, sizes; count; hand out zero-copy chunks) and
//! the chunks are dropped at once, returning their buffers to the pool.

use std::time::Duration;

use serde::Serialize;

use crate::clock::{Clock, SystemClock};
use crate::input::udp::UdpStats;
use crate::input::udp::listen::{ListenError, listen_for};
use crate::shard::IoChoice;
use crate::shard::backend::{self, BackendError};
use crate::url::{InputSpec, UrlError, parse_input};

/// Why the bench could not run.
#[derive(Debug, thiserror::Error)]
pub enum RecvBenchError {
    /// The URL was refused.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// Not a `udp://` URL.
    #[error("bench recv takes a udp:// URL, not {0}")]
    NotUdp(String),
    /// io_uring was asked for and is missing.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The shard or the input failed.
    #[error(transparent)]
    Listen(#[from] ListenError),
}

/// What was received.
#[derive(Clone, Debug, Serialize)]
pub struct RecvBenchReport {
    /// The backend in use.
    pub io: &'static str,
    /// Seconds listened.
    pub seconds: f64,
    /// Every counter of the input: datagrams, bytes, TS packets, drops...
    #[serde(flatten)]
    pub stats: UdpStats,
}

/// Listens to `url` on one shard for `duration`.
pub fn run(url: &str, duration: Duration, io: IoChoice) -> Result<RecvBenchReport, RecvBenchError> {
    let InputSpec::Udp(spec) = parse_input(url)? else {
        return Err(RecvBenchError::NotUdp(url.to_owned()));
    };
    let backend = backend::detect(io)?;
    let started = SystemClock.now();
    // The chunks are dropped as soon as they are handed over.
    let ((), stats) = listen_for(spec, backend, duration, (), |(), _chunks| {})?;
    let seconds = (SystemClock.now() - started).as_secs_f64();
    Ok(RecvBenchReport { io: backend.name(), seconds, stats })
}

/// The human-readable summary.
pub fn render_text(r: &RecvBenchReport) -> String {
    let d = &r.stats.datagrams;
    let v = &r.stats.recv;
    format!(
        "received on {} for {:.1} s: {} datagrams, {} bytes, {} TS packets\n\
         dropped: {} not TS, {} by the kernel, {} for want of pool buffers ({} heap copies)\n",
        r.io,
        r.seconds,
        d.datagrams,
        d.bytes,
        d.ts_packets,
        d.non_ts_dropped,
        v.kernel_drops,
        v.pool_drops,
        v.pool_fallbacks,
    )
}
