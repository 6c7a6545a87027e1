//! File and stdout outputs: a hub reader on a thread of its own that
//! writes the stream, so a slow disk or a slow pipe never holds up a shard.
//! Falling behind shows as hub lag, which is counted and logged.
//!
//! With `segment=SECS` a file output starts a new file at the first clean
//! entry point after that long, named after the path: `rec.ts` gives
//! `rec-00001.ts`, `rec-00002.ts`, ... Each file is flushed and closed at
//! rotation and at the end, so every file on disk is complete.

use std::fs::File;
use std::future::Future;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use thiserror::Error;

use super::entry::{EntryGate, Piece, StartMode};
use super::spec::{FileOutSpec, StartAt};
use super::tail::PesTails;
use super::udp::{LagLog, LiveCounters};
use crate::clock::Clock;
use crate::hub::{RecvError, Subscriber};

/// Bytes buffered before a write reaches the file.
const WRITE_BUFFER: usize = 1 << 20;
/// Hub items taken per wake-up.
const BATCH: usize = 256;
/// Longest time written data may sit in the buffer: a slow stream takes
/// minutes to fill it, and whoever reads the file meanwhile (a tail, a
/// player) should not wait that long.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Where a writer output writes.
#[derive(Clone, Debug)]
pub enum Target {
    /// A file, maybe in segments.
    File(FileOutSpec),
    /// Standard output.
    Stdout,
}

/// Why a writer output stopped with an error.
#[derive(Debug, Error)]
pub enum WriterError {
    /// A file could not be created or written.
    #[error("output {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Writing to stdout failed (other than the reader going away).
    #[error("output -: {0}")]
    Stdout(io::Error),
}

/// What a writer output did.
#[derive(Clone, Debug, Serialize)]
pub struct WriterReport {
    /// The output.
    pub url: String,
    /// Bytes written.
    pub bytes: u64,
    /// Hub items missed by falling behind.
    pub lag_drops: u64,
    /// Packets skipped to start (or restart) at a clean entry point.
    pub skipped_packets: u64,
    /// Files written (1 without segments).
    pub files: u64,
    /// stdout's reader went away (a closed pipe): a clean end.
    pub pipe_closed: bool,
}

/// Wakes the writer's thread.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread, parking between wake-ups.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}

/// The name of segment `index` (from 1) of `path`: `rec.ts` → `rec-00001.ts`.
pub fn segment_path(path: &Path, index: u64) -> PathBuf {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{index:05}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{index:05}"),
    };
    path.with_file_name(name)
}

/// The sink being written: a file (with its path and where its PES
/// packets start) or stdout.
enum Sink {
    /// The tails are `None` with `start=any`: the stream is kept as it
    /// came, at both ends.
    File(BufWriter<File>, PathBuf, Option<PesTails>),
    Stdout(BufWriter<io::Stdout>),
}

impl Sink {
    fn create(path: &Path, trim: bool) -> Result<Sink, WriterError> {
        // Read as well as write: closing trims the tail (see `tail`).
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| WriterError::File { path: path.to_owned(), source })?;
        let tails = trim.then(PesTails::default);
        Ok(Sink::File(BufWriter::with_capacity(WRITE_BUFFER, file), path.to_owned(), tails))
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), WriterError> {
        match self {
            Sink::File(w, path, tails) => {
                if let Some(tails) = tails {
                    tails.note(bytes);
                }
                w.write_all(bytes).map_err(|source| WriterError::File { path: path.clone(), source })
            }
            Sink::Stdout(w) => w.write_all(bytes).map_err(WriterError::Stdout),
        }
    }

    /// Hands what is buffered to the kernel.
    fn flush(&mut self) -> Result<(), WriterError> {
        match self {
            Sink::File(w, path, _) => w.flush().map_err(|source| WriterError::File { path: path.clone(), source }),
            Sink::Stdout(w) => w.flush().map_err(WriterError::Stdout),
        }
    }

    /// Writes out what is buffered; a file is also cut back to whole PES
    /// packets, so it is complete as it stands (at rotation and at the end).
    fn close(&mut self) -> Result<(), WriterError> {
        match self {
            Sink::File(w, path, tails) => {
                let fail = |source| WriterError::File { path: path.clone(), source };
                w.flush().map_err(fail)?;
                let cut = match tails {
                    Some(tails) => tails.trim(w.get_mut()).map_err(fail)?,
                    None => 0,
                };
                if cut > 0 {
                    tracing::debug!(file = %path.display(), bytes = cut, "unfinished PES packets cut from the end");
                }
                Ok(())
            }
            Sink::Stdout(w) => w.flush().map_err(WriterError::Stdout),
        }
    }
}

fn is_broken_pipe(e: &WriterError) -> bool {
    matches!(e, WriterError::Stdout(io) if io.kind() == io::ErrorKind::BrokenPipe)
}

/// Writes what `reader` gets until the hub closes (or stdout's reader
/// goes away). Blocks: run it on a thread of its own.
pub fn run<C: Clock>(
    target: Target,
    mut reader: Subscriber<Bytes>,
    live: Arc<LiveCounters>,
    clock: C,
) -> Result<WriterReport, WriterError> {
    let (url, start, segment) = match &target {
        Target::File(spec) => (spec.path.display().to_string(), spec.start, spec.segment),
        Target::Stdout => ("-".to_owned(), StartAt::Clean, None),
    };
    let mode = if start == StartAt::Any { StartMode::Any } else { StartMode::Clean };
    let trim = mode == StartMode::Clean;
    let mut gate = EntryGate::new(mode);
    let mut files = 1;
    let mut sink = match &target {
        Target::File(spec) if segment.is_some() => Sink::create(&segment_path(&spec.path, files), trim)?,
        Target::File(spec) => Sink::create(&spec.path, trim)?,
        Target::Stdout => Sink::Stdout(BufWriter::with_capacity(WRITE_BUFFER, io::stdout())),
    };
    let started: Instant = clock.now();
    let mut segment_start = started;
    let mut flushed_at = started;
    let mut cut_asked = false;
    let mut lag_log = LagLog::default();
    let mut items = Vec::with_capacity(BATCH);
    let mut pieces = Vec::new();
    let mut report = WriterReport { url, bytes: 0, lag_drops: 0, skipped_packets: 0, files: 1, pipe_closed: false };
    let outcome = loop {
        items.clear();
        match block_on(reader.recv_batch(&mut items, BATCH)) {
            Ok(_) => {}
            Err(RecvError::Lagged(lost)) => {
                report.lag_drops += lost;
                live.lag_drops.fetch_add(lost, Ordering::Relaxed);
                lag_log.lost(clock.now().saturating_duration_since(started), lost, &report.url);
                gate.resync(lost);
                continue;
            }
            Err(RecvError::Closed) => break Ok(()),
        }
        if let (Some(every), false) = (segment, cut_asked)
            && clock.now().saturating_duration_since(segment_start) >= every
        {
            gate.request_cut();
            cut_asked = true;
        }
        pieces.clear();
        for item in &items {
            gate.push(item, &mut pieces);
        }
        let mut written = 0u64;
        let mut failed = None;
        for piece in pieces.drain(..) {
            match piece {
                Piece::Data(bytes) => {
                    if let Err(e) = sink.write(&bytes) {
                        failed = Some(e);
                        break;
                    }
                    written += bytes.len() as u64;
                }
                Piece::Cut => {
                    let Target::File(spec) = &target else { continue };
                    if let Err(e) = sink.close() {
                        failed = Some(e);
                        break;
                    }
                    files += 1;
                    match Sink::create(&segment_path(&spec.path, files), trim) {
                        Ok(next) => sink = next,
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                    segment_start = clock.now();
                    cut_asked = false;
                }
            }
        }
        report.bytes += written;
        live.bytes.fetch_add(written, Ordering::Relaxed);
        if failed.is_none() && clock.now().saturating_duration_since(flushed_at) >= FLUSH_EVERY {
            flushed_at = clock.now();
            failed = sink.flush().err();
        }
        if let Some(e) = failed {
            break Err(e);
        }
    };
    report.files = files;
    report.skipped_packets = gate.counters().skipped();
    let flushed = sink.close();
    match outcome.and(flushed) {
        Ok(()) => Ok(report),
        Err(e) if is_broken_pipe(&e) => {
            report.pipe_closed = true;
            Ok(report)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn segments_are_numbered_beside_the_path() {
        assert_eq!(segment_path(Path::new("/r/rec.ts"), 1), PathBuf::from("/r/rec-00001.ts"));
        assert_eq!(segment_path(Path::new("rec"), 12), PathBuf::from("rec-00012"));
    }

    #[test]
    fn block_on_waits_for_a_wake_from_another_thread() {
        let (mut publisher, hub) = crate::hub::Hub::<u32>::new(4).unwrap();
        let mut reader = hub.subscribe(crate::hub::Start::Live);
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            publisher.publish(7);
        });
        assert_eq!(block_on(reader.recv()), Ok(7));
        t.join().unwrap();
    }
}
