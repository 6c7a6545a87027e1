//! `uringest relay <INPUT> <OUTPUT>...`: one input, one hub, any number of
//! outputs.
//!
//! The input runs on a shard and publishes into the hub; UDP outputs are
//! spread over the shards, one task per shard for all its outputs; files
//! and stdout run on threads of their own. Every output subscribes before the
//! input starts, so none misses the beginning. The relay ends on
//! `--duration`, at the end of the input (a file without loop), on
//! SIGINT/SIGTERM, when stdout's reader goes away, or on a fatal error;
//! in every case the input is stopped first, which closes the hub, and the
//! outputs send or write what they still hold before they finish.

pub mod input;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::{oneshot, watch};

use crate::clock::{Clock, SystemClock};
use crate::hub::{Hub, Start};
use crate::output::spec::{OutputSpec, OutputUrlError, parse_output};
use crate::output::udp::{self, LiveCounters, UdpOutput, UdpOutputError, UdpOutputReport};
use crate::output::writer::{self, Target, WriterError, WriterReport};
use crate::shard::backend::{self, BackendError, IoChoice};
use crate::shard::{ShardError, Shards};
use crate::url::{InputSpec, Pace, UrlError, parse_input};
use input::{InputLive, InputReport, InputRun};
pub use status::StatusLine;

/// Hub items kept for a UDP input: each holds a pool buffer, and the pool
/// (512) must keep buffers for receiving. With GRO an item is up to 64 KiB.
const UDP_HUB_CAPACITY: usize = 256;
/// Hub items kept for a file input (slices of the mapping).
const FILE_HUB_CAPACITY: usize = 1024;
/// How often the relay looks at its stop conditions.
const POLL: Duration = Duration::from_millis(50);
/// How long outputs get to finish after the input stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Why the relay failed.
#[derive(Debug, Error)]
pub enum RelayError {
    /// The input URL is bad.
    #[error(transparent)]
    Input(#[from] UrlError),
    /// An output URL is bad.
    #[error(transparent)]
    Output(#[from] OutputUrlError),
    /// More than one output is stdout.
    #[error("'-' (stdout) may be given once")]
    TwoStdouts,
    /// No I/O backend.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The shards could not start or run a task.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// A UDP output could not be set up.
    #[error(transparent)]
    UdpOutput(#[from] UdpOutputError),
    /// A file or stdout output failed.
    #[error(transparent)]
    Writer(#[from] WriterError),
    /// The input failed to open, or failed for good.
    #[error("input {0}")]
    InputFailed(String),
    /// A thread could not start.
    #[error("cannot start an output thread: {0}")]
    Thread(std::io::Error),
}

impl RelayError {
    /// Whether the operator's input (a URL, an option) is at fault, rather
    /// than something at run time.
    pub fn is_usage(&self) -> bool {
        matches!(self, RelayError::Input(_) | RelayError::Output(_) | RelayError::TwoStdouts)
    }
}

/// How the relay runs.
#[derive(Clone, Debug, Default)]
pub struct RelayOptions {
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// The I/O backend.
    pub io: IoChoice,
    /// Shards to start (default: one per core the process may use).
    pub shards: Option<usize>,
    /// Print a live status line to stderr (only when it is a terminal).
    pub status: bool,
}

/// Why the relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayEnd {
    /// `--duration` passed.
    Duration,
    /// The input ended.
    InputEnded,
    /// SIGINT or SIGTERM.
    Signal,
    /// Stdout's reader went away.
    PipeClosed,
}

/// One output's report.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum OutputReport {
    /// A UDP output.
    Udp(UdpOutputReport),
    /// A file or stdout output.
    Writer(WriterReport),
}

/// What the relay did.
#[derive(Clone, Debug, Serialize)]
pub struct RelayReport {
    /// Seconds from start to the end of the last output.
    pub duration_s: f64,
    /// Why it ended.
    pub end: RelayEnd,
    /// The I/O backend.
    pub io: &'static str,
    /// The input.
    pub input: InputReport,
    /// The outputs, in the order given.
    pub outputs: Vec<OutputReport>,
}

/// A writer output's thread and its place among the outputs.
struct WriterThread {
    index: usize,
    handle: JoinHandle<Result<WriterReport, WriterError>>,
}

/// Runs the relay until it ends; `stop` set (by a signal handler) ends it.
pub fn relay(
    input_url: &str,
    output_urls: &[String],
    options: &RelayOptions,
    stop: Arc<AtomicBool>,
) -> Result<RelayReport, RelayError> {
    let input = parse_input(input_url)?.standalone("relay")?;
    let outputs: Vec<OutputSpec> = output_urls.iter().map(|u| parse_output(u)).collect::<Result<_, _>>()?;
    if outputs.iter().filter(|o| **o == OutputSpec::Stdout).count() > 1 {
        return Err(RelayError::TwoStdouts);
    }
    let backend = backend::detect(options.io)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = Shards::start(options.shards.unwrap_or(cores), backend, true)?;
    let clock = SystemClock;
    let started = clock.now();
    let capacity = if matches!(input, InputSpec::Udp(_)) { UDP_HUB_CAPACITY } else { FILE_HUB_CAPACITY };
    let (publisher, hub) = Hub::<Bytes>::new(capacity).map_err(|e| RelayError::InputFailed(e.to_string()))?;

    // Outputs first, subscribed before anything is published.
    let mut udp_outputs = Vec::new();
    let mut udp_indices = Vec::new();
    let mut writers = Vec::new();
    let mut live: Vec<Arc<LiveCounters>> = Vec::new();
    let mut slots: Vec<Option<OutputReport>> = vec![None; outputs.len()];
    for (index, spec) in outputs.iter().enumerate() {
        let reader = hub.subscribe(Start::Oldest);
        match spec {
            OutputSpec::Udp(u) => {
                let out = UdpOutput::open(u, reader)?;
                live.push(out.live());
                udp_outputs.push(out);
                udp_indices.push(index);
            }
            OutputSpec::File(_) | OutputSpec::Stdout => {
                let target = match spec {
                    OutputSpec::File(f) => Target::File(f.clone()),
                    _ => Target::Stdout,
                };
                let counters = Arc::new(LiveCounters::default());
                live.push(Arc::clone(&counters));
                let handle = std::thread::Builder::new()
                    .name(format!("output-{index}"))
                    .spawn(move || writer::run(target, reader, counters, SystemClock))
                    .map_err(RelayError::Thread)?;
                writers.push(WriterThread { index, handle });
            }
        }
    }
    // UDP outputs run in one task per shard, spread over all shards, so
    // that many outputs use every core; spawned before the input, so a
    // single output group gets a shard of its own when there are two.
    let groups = shards.len().min(udp_outputs.len());
    let mut grouped: Vec<Vec<(usize, UdpOutput)>> = (0..groups).map(|_| Vec::new()).collect();
    for (n, (index, out)) in udp_indices.into_iter().zip(udp_outputs).enumerate() {
        grouped[n % groups].push((index, out));
    }
    let mut udp_done = Vec::with_capacity(groups);
    for group in grouped {
        let (indices, group): (Vec<usize>, Vec<UdpOutput>) = group.into_iter().unzip();
        udp_done.push((indices, shards.spawn(move || udp::run(group, SystemClock))?));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let input_live = Arc::new(InputLive::default());
    let run = InputRun::new(publisher, Arc::clone(&input_live), stop_rx, input.filter());
    let mut input_done: oneshot::Receiver<Result<InputReport, String>> = match input {
        InputSpec::Udp(spec) => shards.spawn(move || input::run_udp(spec, backend, run))?,
        InputSpec::Hls(spec) => shards.spawn(move || input::run_hls(spec, run))?,
        InputSpec::File { path, looping, pace, read, .. } => {
            let (looping, pace) = (looping.unwrap_or(false), pace.unwrap_or(Pace::Pcr));
            shards.spawn(move || input::run_file(path, looping, pace, read, backend, run))?
        }
        // `standalone` refused these above.
        other => return Err(other.standalone("relay").err().unwrap_or(UrlError::Empty).into()),
    };

    let mut status = StatusLine::new(options.status, output_urls.len(), clock.now());
    let mut input_result = None;
    let end = loop {
        if let Ok(result) = input_done.try_recv() {
            input_result = Some(result);
            break RelayEnd::InputEnded;
        }
        if stop.load(Ordering::Relaxed) {
            break RelayEnd::Signal;
        }
        if options.duration.is_some_and(|d| clock.now().saturating_duration_since(started) >= d) {
            break RelayEnd::Duration;
        }
        if writers.iter().any(|w| w.handle.is_finished()) {
            // A writer ended on its own: stdout's reader left, or an error.
            break RelayEnd::PipeClosed;
        }
        status.update(clock.now(), &input_live, &live);
        std::thread::sleep(POLL);
    };
    status.finish();
    let _ = stop_tx.send(true);
    let input_result = match input_result {
        Some(r) => r,
        None => input_done.blocking_recv().map_err(|_| ShardError::Stopped(0))?,
    };
    let input_report = input_result.map_err(RelayError::InputFailed)?;

    // The input is gone, the hub closed: outputs finish what they hold.
    for (indices, done) in udp_done {
        let reports = done.blocking_recv().map_err(|_| ShardError::Stopped(1))?;
        for (index, report) in indices.into_iter().zip(reports) {
            slots[index] = Some(OutputReport::Udp(report));
        }
    }
    let drain_start = clock.now();
    let mut end = end;
    for w in writers {
        while !w.handle.is_finished() && clock.now().saturating_duration_since(drain_start) < DRAIN_LIMIT {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !w.handle.is_finished() {
            tracing::warn!(output = %output_urls[w.index], "output did not finish in time; leaving it");
            continue;
        }
        let report = w.handle.join().map_err(|_| RelayError::InputFailed("an output thread panicked".into()))??;
        if report.pipe_closed {
            end = RelayEnd::PipeClosed;
        }
        slots[w.index] = Some(OutputReport::Writer(report));
    }
    let io = backend.name();
    shards.shutdown();
    Ok(RelayReport {
        duration_s: clock.now().saturating_duration_since(started).as_secs_f64(),
        end,
        io,
        input: input_report,
        outputs: slots.into_iter().flatten().collect(),
    })
}

/// The human-readable summary (on stderr: stdout may carry the stream).
pub fn render_text(r: &RelayReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let i = &r.input;
    let _ = writeln!(
        s,
        "relay ended ({:?}) after {:.1} s on {}: input {} published {} packets ({} bytes), {} CC errors, {} reopens",
        r.end, r.duration_s, r.io, i.url, i.published_packets, i.ts_bytes, i.cc_errors, i.reopens
    );
    if let Some(u) = &i.udp {
        let _ = writeln!(
            s,
            "  udp: {} datagrams, {} not TS, {} kernel drops, {} pool drops, {} RTP gaps",
            u.datagrams.datagrams,
            u.datagrams.non_ts_dropped,
            u.recv.kernel_drops,
            u.recv.pool_drops,
            u.datagrams.rtp_seq_gaps
        );
    }
    if let Some(h) = &i.hls {
        let _ = writeln!(
            s,
            "  hls: {} segments ({} bytes), {} playlist loads, {} segments missed, {} restarts, {} retries, {} pacing resets",
            h.segments,
            h.segment_bytes,
            h.playlist_loads,
            h.missed_segments,
            h.restarts,
            h.segment_retries,
            h.pace_resets
        );
    }
    for o in &r.outputs {
        let _ = match o {
            OutputReport::Udp(u) => writeln!(
                s,
                "  {}: {} datagrams, {} bytes, lag drops {}, skipped {} packets, send errors {}, queue drops {} B, gaps p50/p99/max {:.0}/{:.0}/{:.0} us",
                u.url,
                u.datagrams,
                u.bytes,
                u.lag_drops,
                u.skipped_packets,
                u.send_errors,
                u.queue_drops,
                u.gap_us.p50,
                u.gap_us.p99,
                u.gap_us.max
            ),
            OutputReport::Writer(w) => writeln!(
                s,
                "  {}: {} bytes in {} file(s), lag drops {}, skipped {} packets{}",
                w.url,
                w.bytes,
                w.files,
                w.lag_drops,
                w.skipped_packets,
                if w.pipe_closed { ", reader closed the pipe" } else { "" }
            ),
        };
    }
    s
}
