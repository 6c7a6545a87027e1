//! `uringest bench pace`: many looped files played out at once by PCR, to
//! measure what paced playout costs and how exactly it keeps time.
//!
//! Each stream is a [`Playout`] of one file (`loop=true&pace=pcr`) publishing
//! into its own hub with no reader, so what is measured is the input: reading
//! the mapping, rewriting passes after the first, timing and publishing.
//! Streams are spread over the shards (least loaded first). CPU is the
//! process's user and system time over the run (`getrusage`), which
//! includes the shards and nothing else of note.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

use crate::clock::{Clock, SystemClock};
use crate::hub::{CapacityError, Hub};
use crate::input::chunks::{DEFAULT_CHUNK_PACKETS, FileChunks};
use crate::input::file::{FileError, MappedFile};
use crate::input::playout::drive::{DriveOptions, PacingErrors, drive};
use crate::input::playout::{Playout, PlayoutError};
use crate::shard::backend::{self, BackendError};
use crate::shard::{IoChoice, ShardError, Shards};
use crate::url::Pace;

/// Items each stream's hub holds; nobody reads them.
const HUB_CAPACITY: usize = 1024;

/// What to run.
#[derive(Clone, Debug)]
pub struct PaceBenchOptions {
    /// Files, used in turn by the streams.
    pub files: Vec<PathBuf>,
    /// Streams to play at once.
    pub streams: usize,
    /// How long to play.
    pub duration: Duration,
    /// Shards to spread the streams over.
    pub shards: usize,
    /// The I/O backend.
    pub io: IoChoice,
    /// Shortest time between two wake-ups of a stream.
    pub quantum: Duration,
}

/// Why the bench could not run.
#[derive(Debug, Error)]
pub enum PaceBenchError {
    /// A file could not be opened.
    #[error(transparent)]
    File(#[from] FileError),
    /// The hub could not be made.
    #[error(transparent)]
    Hub(#[from] CapacityError),
    /// No file was given.
    #[error("bench pace needs at least one file")]
    NoFiles,
    /// The shards could not start.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// io_uring was asked for and is missing.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// A stream failed.
    #[error("stream {index} ({path}): {source}")]
    Stream {
        /// Stream number.
        index: usize,
        /// Its file.
        path: String,
        /// What went wrong.
        source: PlayoutError,
    },
}

/// What the bench measured.
#[derive(Clone, Debug, Serialize)]
pub struct PaceBenchReport {
    /// Streams played.
    pub streams: usize,
    /// Shards used.
    pub shards: usize,
    /// Backend in use.
    pub io: &'static str,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// User plus system CPU seconds of the whole process.
    pub cpu_seconds: f64,
    /// CPU as a percentage of one core, all streams together.
    pub cpu_percent_of_core: f64,
    /// The same per stream.
    pub cpu_percent_per_stream: f64,
    /// Bytes emitted by all streams.
    pub bytes: u64,
    /// Mean emitted bitrate per stream.
    pub bits_per_sec_per_stream: f64,
    /// Paced emissions timed.
    pub emissions: u64,
    /// Wake-ups per second per stream.
    pub wakeups_per_sec_per_stream: f64,
    /// Pacing error (emission time minus PCR time, negative when early),
    /// median, in µs.
    pub error_p50_us: f64,
    /// Its magnitude (early or late): median (µs).
    pub error_abs_p50_us: f64,
    /// Its magnitude: 99th percentile (µs).
    pub error_abs_p99_us: f64,
    /// The earliest emission (µs, negative when early).
    pub error_min_us: f64,
    /// The latest emission (µs).
    pub error_max_us: f64,
    /// Seams crossed, all streams.
    pub loops: u64,
    /// Times a stream fell more than a second behind.
    pub stalls: u64,
}

/// Runs the bench.
pub fn run(options: &PaceBenchOptions) -> Result<PaceBenchReport, PaceBenchError> {
    if options.files.is_empty() {
        return Err(PaceBenchError::NoFiles);
    }
    let backend = backend::detect(options.io)?;
    let shards = Shards::start(options.shards, backend, true)?;
    let cpu_before = cpu_time();
    let started = SystemClock.now();
    let mut running = Vec::with_capacity(options.streams);
    for index in 0..options.streams {
        let path = options.files[index % options.files.len()].clone();
        let file = MappedFile::open(&path)?;
        let playout = Playout::new(FileChunks::new(file, true, DEFAULT_CHUNK_PACKETS), true, Pace::Pcr);
        let (mut publisher, _hub) = Hub::<Bytes>::new(HUB_CAPACITY)?;
        let drive_options = DriveOptions { quantum: options.quantum, run_for: Some(options.duration), align: false };
        let done = shards.spawn(move || async move {
            drive(playout, &mut publisher, SystemClock, drive_options).await.map_err(|e| (path, e))
        })?;
        running.push(done);
    }
    let mut errors = PacingErrors::default();
    let (mut bytes, mut loops, mut stalls, mut wakeups) = (0, 0, 0, 0);
    for (index, done) in running.into_iter().enumerate() {
        let report = done
            .blocking_recv()
            .map_err(|_| ShardError::Stopped(index % options.shards))?
            .map_err(|(path, source)| PaceBenchError::Stream { index, path: path.display().to_string(), source })?;
        errors.merge(&report.errors);
        wakeups += report.wakeups;
        bytes += report.counters.bytes_emitted;
        loops += report.counters.chunks.loops;
        stalls += report.counters.pace.stalls_total;
    }
    let seconds = (SystemClock.now() - started).as_secs_f64();
    let cpu_seconds = cpu_time() - cpu_before;
    shards.shutdown();
    let us = |secs: f64| secs * 1e6;
    let (earliest, latest) = errors.extremes();
    let streams = options.streams.max(1) as f64;
    Ok(PaceBenchReport {
        streams: options.streams,
        shards: options.shards,
        io: backend.name(),
        seconds,
        cpu_seconds,
        cpu_percent_of_core: 100.0 * cpu_seconds / seconds,
        cpu_percent_per_stream: 100.0 * cpu_seconds / seconds / streams,
        bytes,
        bits_per_sec_per_stream: bytes as f64 * 8.0 / seconds / streams,
        emissions: errors.count(),
        wakeups_per_sec_per_stream: wakeups as f64 / seconds / streams,
        error_p50_us: us(errors.quantile(0.5)),
        error_abs_p50_us: us(errors.abs_quantile(0.5)),
        error_abs_p99_us: us(errors.abs_quantile(0.99)),
        error_min_us: us(earliest),
        error_max_us: us(latest),
        loops,
        stalls,
    })
}

/// User plus system CPU seconds of this process so far.
fn cpu_time() -> f64 {
    // SAFETY: getrusage writes one rusage into the zeroed local.
    #[allow(unsafe_code)]
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// The human-readable summary.
pub fn render_text(r: &PaceBenchReport) -> String {
    format!(
        "{} paced looped streams on {} shard(s) ({}) for {:.1} s\n\
         CPU: {:.1} % of a core in all, {:.2} % per stream\n\
         emitted: {:.2} Mbit/s per stream, {:.0} wake-ups/s per stream, {} seams crossed, {} stalls\n\
         pacing error (emission - PCR time) over {} emissions: median {:+.0} us; |error| p50 {:.0} us, \
         p99 {:.0} us; range {:+.0} to {:+.0} us\n",
        r.streams,
        r.shards,
        r.io,
        r.seconds,
        r.cpu_percent_of_core,
        r.cpu_percent_per_stream,
        r.bits_per_sec_per_stream / 1e6,
        r.wakeups_per_sec_per_stream,
        r.loops,
        r.stalls,
        r.emissions,
        r.error_p50_us,
        r.error_abs_p50_us,
        r.error_abs_p99_us,
        r.error_min_us,
        r.error_max_us,
    )
}
