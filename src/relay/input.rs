//! The relay's input: one task on a shard that reads the input URL and
//! publishes its chunks into the stream's hub, until the input ends or the
//! relay stops it. Dropping the publisher at the end closes the hub, which
//! is how outputs learn to flush and finish.
//!
//! Reader contract (DESIGN.md): the first open fails fast; after that a
//! receive error is transient and the input is reopened with backoff (1 s
//! doubling to 10 s, back to 1 s after a successful open), while a clean
//! end (a file without loop) ends the relay.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::watch;

use crate::clock::SystemClock;
use crate::hub::Publisher;
use crate::input::chunks::FileChunks;
use crate::input::file::MappedFile;
use crate::input::hls::{HlsCounters, HlsInput};
use crate::input::playout::Playout;
use crate::input::playout::drive::{ChunkSink, DriveOptions, drive};
use crate::input::read::{FileMethod, ReadChunks, ReadOptions, resolve};
use crate::input::udp::{UdpInput, UdpStats};
use crate::shard::Backend;
use crate::ts::filter::{FilterCounters, FilterSpec, TsFilter};
use crate::ts::scan::{Run, Scanner};
use crate::url::{FileRead, HlsSpec, Pace, UdpSpec};

/// Packets per chunk cut from a mapped file.
const FILE_CHUNK_PACKETS: usize = 7 * 16;
/// First and longest wait before reopening a failed input.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(10));

/// What the input counts while it runs (read by the status line).
#[derive(Debug, Default)]
pub struct InputLive {
    /// Bytes of TS the input delivered (before any filter).
    pub bytes: AtomicU64,
    /// TS packets the input delivered (before any filter).
    pub packets: AtomicU64,
    /// Continuity counter errors seen on the input.
    pub cc_errors: AtomicU64,
    /// Times the input was reopened after an error.
    pub reopens: AtomicU64,
}

/// How the input ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InputEnd {
    /// The relay stopped it (duration, signal, an output's end).
    Stopped,
    /// The input has no more data (a file without loop).
    Ended,
}

/// What the input did.
#[derive(Clone, Debug, Serialize)]
pub struct InputReport {
    /// The input URL.
    pub url: String,
    /// Why it ended.
    pub end: InputEnd,
    /// Bytes of TS the input delivered (before any filter; what passed the
    /// filter is in `filter`).
    pub ts_bytes: u64,
    /// Packets the input delivered (before any filter).
    pub published_packets: u64,
    /// Continuity counter errors on the input.
    pub cc_errors: u64,
    /// Times reopened after an error.
    pub reopens: u64,
    /// What `program=`/`pids=` kept and dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterCounters>,
    /// UDP receive counters, summed over every open.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub udp: Option<UdpStats>,
    /// HLS counters (playlists, segments, lost segments), over every open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hls: Option<HlsCounters>,
}

/// The input stage: counts what the input reads, then publishes it.
pub struct InputRun {
    publisher: Publisher<Bytes>,
    live: Arc<InputLive>,
    /// Becomes `true` when the relay wants the input to stop.
    stop: watch::Receiver<bool>,
    scanner: Scanner,
    /// `program=`/`pids=`: applied after counting, before publishing.
    filter: Option<TsFilter>,
    filtered: Vec<Bytes>,
}

impl ChunkSink for InputRun {
    fn publish_batch(&mut self, batch: &mut Vec<Bytes>) {
        self.publish(batch);
    }
}

impl InputRun {
    /// The input stage around `publisher`.
    pub fn new(
        publisher: Publisher<Bytes>,
        live: Arc<InputLive>,
        stop: watch::Receiver<bool>,
        filter: FilterSpec,
    ) -> InputRun {
        let filter = (!filter.is_passthrough()).then(|| TsFilter::new(filter));
        InputRun { publisher, live, stop, scanner: Scanner::new(), filter, filtered: Vec::new() }
    }

    /// Counts `chunks` (packets, bytes, continuity errors) and publishes
    /// them, leaving `chunks` empty.
    fn publish(&mut self, chunks: &mut Vec<Bytes>) {
        let scanner = &mut self.scanner;
        let before = scanner.packets();
        let mut bytes = 0;
        for chunk in chunks.iter() {
            scanner.scan(chunk, Run::fitting(chunk.len(), 0, 188, usize::MAX), &mut ());
            bytes += chunk.len() as u64;
        }
        let cc: u64 = scanner.table().iter().map(|p| p.cc_errors).sum();
        self.live.cc_errors.store(cc, Ordering::Relaxed);
        self.live.packets.fetch_add(scanner.packets() - before, Ordering::Relaxed);
        self.live.bytes.fetch_add(bytes, Ordering::Relaxed);
        match &mut self.filter {
            Some(filter) => {
                for chunk in chunks.drain(..) {
                    filter.push(&chunk, &mut self.filtered);
                }
                self.publisher.publish_batch(self.filtered.drain(..));
            }
            None => self.publisher.publish_batch(chunks.drain(..)),
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits `delay` unless stopped first; `true` if stopped.
    async fn wait_or_stop(&mut self, delay: Duration) -> bool {
        tokio::select! {
            () = tokio::time::sleep(delay) => self.stopped(),
            _ = self.stop.changed() => true,
        }
    }

    fn report(&self, url: String, end: InputEnd, udp: Option<UdpStats>) -> InputReport {
        InputReport {
            url,
            end,
            ts_bytes: self.live.bytes.load(Ordering::Relaxed),
            published_packets: self.live.packets.load(Ordering::Relaxed),
            cc_errors: self.live.cc_errors.load(Ordering::Relaxed),
            reopens: self.live.reopens.load(Ordering::Relaxed),
            filter: self.filter.as_ref().map(TsFilter::counters),
            udp,
            hls: None,
        }
    }
}

/// Receives `spec` until stopped. The first open's error is returned; later
/// errors reopen with backoff.
pub async fn run_udp(spec: UdpSpec, backend: Backend, mut run: InputRun) -> Result<InputReport, String> {
    let url = spec.to_string();
    let mut total = UdpStats::default();
    let mut chunks = Vec::new();
    let mut backoff = BACKOFF.0;
    let mut first = true;
    while !run.stopped() {
        let mut input = match UdpInput::open(&spec, backend) {
            Ok(input) => input,
            Err(e) if first => return Err(e.to_string()),
            Err(e) => {
                tracing::warn!(input = %url, error = %e, retry_in = ?backoff, "cannot reopen input");
                if run.wait_or_stop(backoff).await {
                    break;
                }
                backoff = (backoff * 2).min(BACKOFF.1);
                continue;
            }
        };
        first = false;
        backoff = BACKOFF.0;
        let failed = loop {
            chunks.clear();
            tokio::select! {
                read = input.read_batch(&mut chunks) => if let Err(e) = read { break Some(e) },
                _ = run.stop.changed() => break None,
            }
            run.publish(&mut chunks);
            // A receiver with a backlog returns batch after batch without
            // waiting; let the shard's other tasks (outputs) run between
            // them, or they fall behind the hub while it catches up.
            tokio::task::yield_now().await;
        };
        total.add(&input.stats());
        drop(input);
        let Some(e) = failed else { break };
        run.live.reopens.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(input = %url, error = %e, retry_in = ?backoff, "input failed; reopening");
        if run.wait_or_stop(backoff).await {
            break;
        }
        backoff = (backoff * 2).min(BACKOFF.1);
    }
    Ok(run.report(url, InputEnd::Stopped, Some(total)))
}

/// Plays an HLS playlist into the hub until it ends or the relay stops it.
/// The first open's error is returned, and so is a permanent one (401, 403,
/// 404, 410, an unplayable playlist); a transient failure plays again with
/// backoff, from the media sequence where it stopped.
pub async fn run_hls(spec: HlsSpec, mut run: InputRun) -> Result<InputReport, String> {
    let url = spec.to_string();
    let mut input = HlsInput::new(spec);
    let mut stop = run.stop.clone();
    let mut backoff = BACKOFF.0;
    let mut ever_opened = false;
    let end = loop {
        if run.stopped() {
            break InputEnd::Stopped;
        }
        let mut opened = false;
        let played = tokio::select! {
            played = async {
                let open = input.open().await?;
                opened = true;
                input.play(open, &mut run).await
            } => Some(played),
            _ = stop.changed() => None,
        };
        ever_opened |= opened;
        match played {
            None => break InputEnd::Stopped,
            Some(Ok(())) => break InputEnd::Ended,
            Some(Err(e)) if e.permanent || !ever_opened => return Err(e.message),
            Some(Err(e)) => {
                if opened {
                    backoff = BACKOFF.0;
                }
                run.live.reopens.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(input = %url, error = %e, retry_in = ?backoff, "input failed; reopening");
                if run.wait_or_stop(backoff).await {
                    break InputEnd::Stopped;
                }
                backoff = (backoff * 2).min(BACKOFF.1);
            }
        }
    };
    let mut report = run.report(url, end, None);
    report.hls = Some(input.counters());
    Ok(report)
}

/// Plays a file into the hub (paced by PCR unless `pace=none`), or reads a
/// FIFO or device as it comes, until it ends or the relay stops it.
pub async fn run_file(
    path: PathBuf,
    looping: bool,
    pace: Pace,
    read: FileRead,
    backend: Backend,
    mut run: InputRun,
) -> Result<InputReport, String> {
    let url = path.display().to_string();
    let method = resolve(&path, read).map_err(|e| e.to_string())?;
    if method == FileMethod::Read {
        return run_read(path, backend, run).await;
    }
    let file = MappedFile::open(&path).map_err(|e| e.to_string())?;
    let playout = Playout::new(FileChunks::new(file, looping, FILE_CHUNK_PACKETS), looping, pace);
    let mut stop = run.stop.clone();
    let played = tokio::select! {
        played = drive(playout, &mut run, SystemClock, DriveOptions::default()) => Some(played),
        _ = stop.changed() => None,
    };
    let end = match played {
        Some(Ok(_)) => InputEnd::Ended,
        Some(Err(e)) => return Err(format!("{url}: {e}")),
        None => InputEnd::Stopped,
    };
    Ok(run.report(url, end, None))
}

/// Reads a FIFO or device into buffers and publishes it as it comes.
async fn run_read(path: PathBuf, backend: Backend, mut run: InputRun) -> Result<InputReport, String> {
    let url = path.display().to_string();
    let mut reader = ReadChunks::open(&path, backend, ReadOptions::default()).map_err(|e| e.to_string())?;
    let mut chunks = Vec::new();
    let end = loop {
        tokio::select! {
            chunk = reader.next_chunk() => match chunk.map_err(|e| e.to_string())? {
                Some(chunk) => chunks.push(chunk),
                None => break InputEnd::Ended,
            },
            _ = run.stop.changed() => break InputEnd::Stopped,
        }
        run.publish(&mut chunks);
        tokio::task::yield_now().await;
    };
    Ok(run.report(url, end, None))
}
