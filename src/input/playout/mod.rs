//! File playout: a transport-stream file played once or looped, as fast as
//! it reads (`pace=none`) or in real time by its PCR (`pace=pcr`).
//!
//! [`Playout`] is sans-IO: it is asked for the next step at a time `now`
//! (a [`Duration`] since the playout started) and answers with bytes to emit,
//! a time to wait until, or the end. [`drive`] runs it on a shard with a
//! timer and publishes into a hub.
//!
//! The pipeline per chunk of whole packets (from [`FileChunks`], zero-copy
//! slices of the mapping):
//!
//! 1. At each seam of a loop, [`LoopSeam::start_iteration`]. Pass 0 goes
//!    through [`LoopSeam::observe`] and is emitted as the mapping's own
//!    bytes; later passes are copied once and go through
//!    [`LoopSeam::rewrite`], so the PCR, PTS, DTS and continuity counters
//!    carry on across the seam (when the file has nothing to rewrite, a
//!    later pass is not copied either).
//! 2. With `pace=pcr`, the (rewritten) bytes go through [`PcrPacer::scan`],
//!    which times them once the next PCR is read. Bytes are held until
//!    their time is known, then released as their due time passes: every
//!    packet whose first byte is due at `now` goes out at once, so how
//!    often the caller asks sets the granularity (the shard's timer wheel
//!    ticks each millisecond).
//!
//! The PCR is that of the first program (the pacer finds it from the
//! PAT/PMT); a file without a PCR is refused under `pace=pcr` with
//! [`PaceError::NoPcr`] rather than paced by PTS (see `ts::pace`). Memory
//! held ahead of emission is bounded by the pacer's gap limit (2 MiB).

#[cfg(not(loom))]
pub mod drive;

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::chunks::{ChunkCounters, FileChunks};
use crate::ts::pace::{PaceCounters, PaceError, PaceLimits, PcrPacer, Segment};
use crate::ts::seam::{LoopSeam, SeamCounters, SeamError};
use crate::url::Pace;

/// Why a playout stopped with an error.
#[derive(Debug, Error)]
pub enum PlayoutError {
    /// The file cannot be paced.
    #[error(transparent)]
    Pace(#[from] PaceError),
    /// The seam rewrite refused a chunk (a bug: chunks are whole packets).
    #[error(transparent)]
    Seam(#[from] SeamError),
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Emit these bytes (whole packets) now.
    Emit {
        /// The packets.
        bytes: Bytes,
        /// When their first byte was due (`pace=pcr`); emitting later than
        /// this is the pacing error.
        due: Option<Duration>,
    },
    /// Nothing is due before this time.
    Wait(Duration),
    /// The file is over (never, when looping a file with packets).
    End,
}

/// Counters of a playout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PlayoutCounters {
    /// The file source: packets, skipped bytes, loops.
    pub chunks: ChunkCounters,
    /// The seam rewrite (looping only).
    pub seam: SeamCounters,
    /// The pacer's timeline events (`pace=pcr` only).
    pub pace: PaceCounters,
    /// Bytes emitted.
    pub bytes_emitted: u64,
    /// Bytes copied to rewrite a pass after the first.
    pub bytes_copied: u64,
}

/// A file played out; see the module docs.
pub struct Playout {
    source: FileChunks,
    seam: Option<LoopSeam>,
    pacer: Option<PcrPacer>,
    /// Pass of the last chunk taken from the source.
    iteration: u64,
    /// Bytes taken from the source and not yet emitted, in order.
    held: VecDeque<Bytes>,
    /// Bytes taken from the source and not yet scanned by the pacer.
    unscanned: VecDeque<Bytes>,
    /// Timed bytes not yet fully emitted.
    segments: VecDeque<Segment>,
    /// Stream offset of the first held byte.
    emitted: u64,
    /// The source is exhausted and the pacer finished.
    finished: bool,
    /// Buffers of rewritten passes, reused once consumers let go.
    copies: PassBuffers,
}

impl Playout {
    /// Plays `source` paced by `pace`; `source` decides whether it loops.
    pub fn new(source: FileChunks, looping: bool, pace: Pace) -> Playout {
        Playout::with_limits(source, looping, pace, PaceLimits::default())
    }

    /// The same with explicit pacer limits (small ones let tests and fuzzing
    /// reach the refusals on short inputs).
    pub fn with_limits(source: FileChunks, looping: bool, pace: Pace, limits: PaceLimits) -> Playout {
        Playout {
            source,
            seam: looping.then(|| LoopSeam::new(None)),
            pacer: (pace == Pace::Pcr).then(|| PcrPacer::with_limits(None, limits)),
            iteration: 0,
            held: VecDeque::new(),
            unscanned: VecDeque::new(),
            segments: VecDeque::new(),
            emitted: 0,
            finished: false,
            copies: PassBuffers::default(),
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> PlayoutCounters {
        PlayoutCounters {
            chunks: self.source.counters(),
            seam: self.seam.as_ref().map(LoopSeam::counters).unwrap_or_default(),
            pace: self.pacer.as_ref().map(PcrPacer::counters).unwrap_or_default(),
            bytes_emitted: self.emitted,
            bytes_copied: self.copies.bytes_copied,
        }
    }

    /// The next step at `now`.
    pub fn next(&mut self, now: Duration) -> Result<Next, PlayoutError> {
        if self.pacer.is_none() {
            return Ok(match self.take_chunk()? {
                Some(bytes) => {
                    self.emitted += bytes.len() as u64;
                    Next::Emit { bytes, due: None }
                }
                None => Next::End,
            });
        }
        loop {
            if let Some(step) = self.release(now) {
                return Ok(step);
            }
            // No timed bytes left to release: time more.
            if !self.time_more(now)? {
                return Ok(Next::End);
            }
        }
    }

    /// Emits what the front segment has due at `now`, or says when it
    /// will; `None` when no segment is waiting.
    fn release(&mut self, now: Duration) -> Option<Next> {
        while let Some(segment) = self.segments.front().copied() {
            if self.emitted >= segment.end {
                self.segments.pop_front();
                continue;
            }
            let released = segment.released(now);
            if released <= self.emitted {
                return Some(Next::Wait(segment.ready_at(self.emitted)));
            }
            let due = segment.due(self.emitted);
            let Some(front) = self.held.front_mut() else {
                // Segments only cover bytes taken, so this cannot happen;
                // dropping them rather than looping keeps it harmless.
                self.segments.clear();
                return None;
            };
            // Emit within the front held chunk only: a slice, never a copy.
            let take = ((released - self.emitted) as usize).min(front.len());
            let bytes =
                if take == front.len() { self.held.pop_front().unwrap_or_default() } else { front.split_to(take) };
            self.emitted += bytes.len() as u64;
            return Some(Next::Emit { bytes, due: Some(due) });
        }
        None
    }

    /// Feeds the pacer until it closes a segment; false at the end.
    fn time_more(&mut self, now: Duration) -> Result<bool, PlayoutError> {
        let Some(pacer) = self.pacer.as_mut() else { return Ok(false) };
        loop {
            if let Some(front) = self.unscanned.front_mut() {
                let step = pacer.scan(front, now)?;
                let _ = front.split_to(step.consumed);
                if front.is_empty() {
                    self.unscanned.pop_front();
                }
                if let Some(segment) = step.segment {
                    self.segments.push_back(segment);
                    return Ok(true);
                }
                continue;
            }
            if self.finished {
                return Ok(false);
            }
            match take_chunk(&mut self.source, &mut self.seam, &mut self.iteration, &mut self.copies)? {
                Some(chunk) => {
                    self.held.push_back(chunk.clone());
                    self.unscanned.push_back(chunk);
                }
                None => {
                    self.finished = true;
                    if let Some(segment) = pacer.finish(now)? {
                        self.segments.push_back(segment);
                        return Ok(true);
                    }
                    return Ok(false);
                }
            }
        }
    }

    fn take_chunk(&mut self) -> Result<Option<Bytes>, PlayoutError> {
        take_chunk(&mut self.source, &mut self.seam, &mut self.iteration, &mut self.copies)
    }
}

/// The next chunk of the source, through the seam when looping.
fn take_chunk(
    source: &mut FileChunks,
    seam: &mut Option<LoopSeam>,
    iteration: &mut u64,
    copies: &mut PassBuffers,
) -> Result<Option<Bytes>, PlayoutError> {
    let Some(chunk) = source.next_chunk() else { return Ok(None) };
    let Some(seam) = seam.as_mut() else { return Ok(Some(chunk)) };
    while *iteration < source.iteration() {
        seam.start_iteration();
        *iteration += 1;
    }
    if !seam.needs_rewrite() {
        seam.observe(&chunk)?;
        return Ok(Some(chunk));
    }
    let mut copy = copies.copy_of(&chunk);
    seam.rewrite(&mut copy)?;
    Ok(Some(copies.issue(copy)))
}

/// Most copies [`PassBuffers`] keeps track of (about 10 MiB of 112-packet
/// chunks): enough to cover what a file stream's hub and outputs hold at
/// headend rates; past it the oldest is let go (freed by its last user)
/// and recycling just finds nothing free.
const MAX_TRACKED_COPIES: usize = 512;

/// The buffers later passes of a loop are copied into, reused rather than
/// allocated afresh for every chunk.
///
/// A copy lives on in the hub and the outputs' queues for seconds; freed
/// and allocated again chunk after chunk, the allocator returned the pages
/// to the kernel and faulted them back in: in perf/serve.sh (64 looped
/// files) the copies cost 9 % of the node's CPU, nearly all page faults.
/// Each copy handed out is remembered (a refcount); the oldest is taken
/// back once nobody else holds any slice of it. Memory stays bounded: at
/// most [`MAX_TRACKED_COPIES`] are remembered, and none is taken back
/// while in use.
#[derive(Default)]
struct PassBuffers {
    /// Copies handed out, oldest first.
    issued: VecDeque<Bytes>,
    bytes_copied: u64,
}

impl PassBuffers {
    /// A buffer holding `chunk`'s bytes: the oldest copy when it is free,
    /// else a new one.
    fn copy_of(&mut self, chunk: &[u8]) -> BytesMut {
        let reused = match self.issued.front() {
            Some(oldest) if oldest.is_unique() => self.issued.pop_front().and_then(|b| b.try_into_mut().ok()),
            _ => None,
        };
        let mut copy = match reused {
            Some(mut buffer) => {
                buffer.clear();
                buffer
            }
            None => BytesMut::with_capacity(chunk.len()),
        };
        copy.extend_from_slice(chunk);
        self.bytes_copied += chunk.len() as u64;
        copy
    }

    /// Freezes `copy` and remembers it for reuse.
    fn issue(&mut self, copy: BytesMut) -> Bytes {
        let copy = copy.freeze();
        if self.issued.len() >= MAX_TRACKED_COPIES {
            self.issued.pop_front();
        }
        self.issued.push_back(copy.clone());
        copy
    }
}

#[cfg(test)]
mod tests;
