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
use crate::input::udp::{UdpError, UdpInput, UdpStats};
use crate::shard::backend::{self, BackendError};
use crate::shard::{IoChoice, ShardError, Shards};
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
    /// The shard could not run the input.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The input failed.
    #[error(transparent)]
    Udp(#[from] UdpError),
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
    let shards = Shards::start(1, backend, false)?;
    let started = SystemClock.now();
    let done = shards.spawn(move || async move {
        let mut input = UdpInput::open(&spec, backend)?;
        let mut chunks = Vec::new();
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        loop {
            // Dropping the chunks returns their buffers to the pool.
            chunks.clear();
            tokio::select! {
                read = input.read_batch(&mut chunks) => read?,
                () = &mut deadline => break,
            }
        }
        Ok::<_, UdpError>(input.stats())
    })?;
    let outcome = done.blocking_recv().map_err(|_| ShardError::Stopped(0))?;
    let seconds = (SystemClock.now() - started).as_secs_f64();
    shards.shutdown();
    Ok(RecvBenchReport { io: backend.name(), seconds, stats: outcome? })
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
