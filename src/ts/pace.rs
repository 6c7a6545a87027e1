//! Real-time pacing of a transport stream by its PCR (ISO/IEC 13818-1
//! §2.4.3.5), for `file://…?pace=pcr`.
//!
//! [`PcrPacer`] is sans-IO: it is fed 188-byte-aligned chunks and `now`, and
//! returns [`Segment`]s: runs of bytes with the time each byte is due. It
//! never reads a clock, sleeps or sends; the file input does that.
//!
//! # Timeline
//!
//! Times are [`Duration`]s since an epoch the caller picks (for instance the
//! `Instant` the input opened: `clock.now() - opened`). Byte offsets are
//! counted across all chunks fed, from 0.
//!
//! - The first PCR used (the *anchor*) is due at the `now` of the call that
//!   finds it. Bytes before it are due at the same time: released at once.
//! - Each later PCR `c` on the PCR PID is due at `due(previous) + (c −
//!   previous) / 27 MHz`, the difference taken modulo 2^33 × 300, so the
//!   wrap-around of the 33-bit base is invisible.
//! - Between two PCRs, bytes are due linearly by byte position (piecewise
//!   constant bitrate, the T-STD model of §2.4.2.2). A segment runs from
//!   one PCR packet (included) to the next (excluded).
//! - A PCR after a discontinuity_indicator, or one that goes backwards or
//!   more than [`PaceLimits::max_pcr_step`] forwards (counted as a *jump*),
//!   starts a new time base: it is due when its bytes would be at the rate
//!   of the last regular interval, so there is neither a gap nor a burst.
//! - When the caller asks for a segment more than [`PaceLimits::stall`]
//!   after its start (it fell behind), the timeline is moved to `now`
//!   rather than bursting to catch up; counted as a stall.
//! - More than [`PaceLimits::gap_bytes`] without a PCR: the bytes so far are
//!   timed at the last rate so the caller need not hold them; counted.
//! - [`PcrPacer::finish`] times the bytes after the last PCR at the last
//!   rate (end of a file that is not looped).
//!
//! # The PCR PID
//!
//! Given, or found: the PCR_PID of the first program of the PAT, from its
//! PMT (§2.4.4.9). Without PSI within [`PaceLimits::psi_wait_bytes`], or
//! when that program declares no PCR (PCR_PID 0x1FFF), the first PID seen
//! carrying a PCR. PCRs that passed while the PMT was awaited are not
//! replayed: the latest one on the chosen PID becomes the anchor.
//!
//! # Without a PCR
//!
//! The pacer refuses: [`PaceError::NoPcr`] after
//! [`PaceLimits::no_pcr_bytes`] bytes without one (or at [`PcrPacer::finish`]
//! for a shorter input), naming how far it looked. It does not fall back to
//! PTS: a file without a PCR is not a transport stream a receiver can lock
//! to, and PTS-paced output would need a PCR inserted. `pace=none` plays
//! such a file at full speed.
//!
//! # Looping
//!
//! In a loop, the seam rewrite ([`crate::ts::seam::LoopSeam`]) runs first
//! and the pacer sees the rewritten bytes, so the first PCR of a new pass
//! follows the last of the previous one by one mean interval and the pacer
//! crosses the seam like any other interval.
//!
//! # Driving it
//!
//! ```text
//! loop {
//!     let step = pacer.scan(&window[pos..], now)?;   // window: a slice of the mmap
//!     pending += step.consumed; pos += step.consumed; // bytes the pacer has seen
//!     if let Some(seg) = step.segment {
//!         // the pending bytes are exactly seg.start..seg.end: send each
//!         // 1316-byte datagram starting at offset o when now >= seg.due(o)
//!         // (or seg.released(now) tells how far one may send at once).
//!     }
//!     // consumed == 0 never happens twice in a row: the second call passes
//!     // the PCR packet that closed the segment.
//! }
//! ```
//!
//! Work per packet is one PID compare (plus the PCR decode on PCR packets);
//! no allocation after construction.
//!
//! Invariants: segments are contiguous (`next.start == prev.end`), their
//! times never decrease (`next.start_at() >= prev.end_at()`), and a segment
//! only covers bytes already passed to [`PcrPacer::scan`].

use std::time::Duration;

use thiserror::Error;

use super::packet::{PACKET_LEN, Pcr, Pid, TsPacket};
use super::psi::Psi;
use super::stats::PidTable;

/// PCR-carrying PIDs remembered while the PCR PID is being found.
const FINDER_PIDS: usize = 16;

/// Why the stream cannot be paced.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PaceError {
    /// No PCR to pace by within the bytes scanned.
    #[error("no PCR{} in the first {scanned} bytes: pace=pcr needs one, use pace=none", on_pid(*.pid))]
    NoPcr {
        /// Bytes scanned before giving up.
        scanned: u64,
        /// The PCR PID, if one was known.
        pid: Option<Pid>,
    },
    /// A chunk was not a whole number of packets.
    #[error("chunk of {len} bytes at offset {offset} is not a whole number of 188-byte packets")]
    Unaligned {
        /// Stream offset of the chunk.
        offset: u64,
        /// Its length.
        len: usize,
    },
}

fn on_pid(pid: Option<Pid>) -> String {
    pid.map_or_else(String::new, |pid| format!(" on PCR PID {pid}"))
}

/// Bounds of the pacer; the defaults suit files of any common bitrate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaceLimits {
    /// Bytes without any PCR before [`PaceError::NoPcr`] (default 4 MiB).
    pub no_pcr_bytes: u64,
    /// Bytes to wait for the PAT and first PMT before taking the first PID
    /// that carries a PCR (default 1 MiB).
    pub psi_wait_bytes: u64,
    /// Bytes after a PCR without the next one before they are timed at the
    /// last rate (default 2 MiB).
    pub gap_bytes: u64,
    /// Largest forward PCR step taken as regular (default 1 s).
    pub max_pcr_step: Duration,
    /// How late the caller may be before the timeline moves (default 1 s).
    pub stall: Duration,
}

impl Default for PaceLimits {
    fn default() -> Self {
        PaceLimits {
            no_pcr_bytes: 4 << 20,
            psi_wait_bytes: 1 << 20,
            gap_bytes: 2 << 20,
            max_pcr_step: Duration::from_secs(1),
            stall: Duration::from_secs(1),
        }
    }
}

/// What happened to the timeline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PaceCounters {
    /// PCRs of the PCR PID used.
    pub pcrs_total: u64,
    /// New time bases announced by discontinuity_indicator.
    pub discontinuities_total: u64,
    /// PCRs that went backwards or jumped forward without announcement.
    pub pcr_jumps_total: u64,
    /// Runs of [`PaceLimits::gap_bytes`] without a PCR.
    pub pcr_gaps_total: u64,
    /// Times the caller was late by more than [`PaceLimits::stall`].
    pub stalls_total: u64,
}

/// A run of bytes and when each is due.
///
/// Bytes in `start..anchor` are all due at [`Segment::start_at`] (only the
/// first segment has any); from `anchor` to `end` the due time rises
/// linearly to [`Segment::end_at`], the time of the byte at `end`, which
/// belongs to the next segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Stream offset of the first byte.
    pub start: u64,
    /// Stream offset of the PCR packet the interpolation starts from.
    pub anchor: u64,
    /// Stream offset after the last byte.
    pub end: u64,
    start_tick: u64,
    end_tick: u64,
}

impl Segment {
    /// Bytes in the segment.
    pub fn bytes(&self) -> u64 {
        self.end - self.start
    }

    /// When the first byte is due.
    pub fn start_at(&self) -> Duration {
        duration_of(self.start_tick)
    }

    /// When the byte at `end` (the next segment's first) is due.
    pub fn end_at(&self) -> Duration {
        duration_of(self.end_tick)
    }

    /// When the byte at stream offset `offset` is due; clamped to the
    /// segment's times outside it.
    pub fn due(&self, offset: u64) -> Duration {
        duration_of(self.due_tick(offset))
    }

    /// The earliest time at which [`Segment::released`] covers the packet
    /// at `offset`: [`Segment::due`] rounded up to the nanosecond, for a
    /// caller that sleeps until then.
    pub fn ready_at(&self, offset: u64) -> Duration {
        let ticks = self.due_tick(offset);
        let nanos = ((ticks % Pcr::HZ) * 1000).div_ceil(27);
        Duration::new(ticks / Pcr::HZ, 0) + Duration::from_nanos(nanos)
    }

    fn due_tick(&self, offset: u64) -> u64 {
        if offset >= self.end {
            return self.end_tick;
        }
        if offset <= self.anchor {
            return self.start_tick;
        }
        let span = u128::from(self.end_tick - self.start_tick);
        let into = u128::from(offset - self.anchor);
        let len = u128::from(self.end - self.anchor);
        // into < len, so the quotient is below span and fits.
        self.start_tick + (span * into / len) as u64
    }

    /// The stream offset up to which whole packets are due at `now`: every
    /// packet starting before it has its first byte due at or before `now`.
    pub fn released(&self, now: Duration) -> u64 {
        let now = ticks_of(now);
        if now >= self.end_tick {
            return self.end;
        }
        if now < self.start_tick {
            return self.start;
        }
        // Here start_tick <= now < end_tick, so the span is not zero and
        // anchor < end. due(o) <= now  <=>  span * (o - anchor) < (n + 1) * len.
        let span = u128::from(self.end_tick - self.start_tick);
        let len = u128::from(self.end - self.anchor);
        let n = u128::from(now - self.start_tick);
        let last_due = self.anchor + (((n + 1) * len - 1) / span).min(len - 1) as u64;
        let packets = (last_due - self.start) / PACKET_LEN as u64 + 1;
        (self.start + packets * PACKET_LEN as u64).min(self.end)
    }
}

/// What one [`PcrPacer::scan`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Bytes of the chunk passed; the caller resumes after them.
    pub consumed: usize,
    /// A segment completed by a PCR (or a gap) at the end of the consumed
    /// bytes.
    pub segment: Option<Segment>,
}

/// The last PCR (or timed point) the timeline is anchored on.
#[derive(Clone, Copy, Debug)]
struct Anchor {
    offset: u64,
    /// `None` for a point timed by extrapolation, not by a PCR.
    pcr: Option<Pcr>,
    tick: u64,
}

/// The last regular PCR interval: its length in ticks and in bytes.
#[derive(Clone, Copy, Debug)]
struct Rate {
    ticks: u64,
    bytes: u64,
}

/// Paces a transport stream by the PCR of one PID; see the module docs.
#[derive(Clone, Debug)]
pub struct PcrPacer {
    limits: PaceLimits,
    pid: Option<Pid>,
    finder: Option<Box<PcrPidFinder>>,
    /// Stream offset of the next byte to scan.
    scanned: u64,
    /// Stream offset of the first byte not yet in a segment.
    head: u64,
    anchor: Option<Anchor>,
    rate: Option<Rate>,
    discontinuity_pending: bool,
    /// Offset of the packet that closed the last segment, to be skipped
    /// when the next scan starts with it.
    resume_at: Option<u64>,
    counters: PaceCounters,
}

impl PcrPacer {
    /// A pacer on `pcr_pid`, or one that finds the PCR PID itself (`None`).
    pub fn new(pcr_pid: Option<Pid>) -> PcrPacer {
        PcrPacer::with_limits(pcr_pid, PaceLimits::default())
    }

    /// A pacer with explicit limits.
    pub fn with_limits(pcr_pid: Option<Pid>, limits: PaceLimits) -> PcrPacer {
        PcrPacer {
            limits,
            pid: pcr_pid,
            finder: pcr_pid.is_none().then(|| Box::new(PcrPidFinder::new())),
            scanned: 0,
            head: 0,
            anchor: None,
            rate: None,
            discontinuity_pending: false,
            resume_at: None,
            counters: PaceCounters::default(),
        }
    }

    /// The PCR PID, once known.
    pub fn pcr_pid(&self) -> Option<Pid> {
        self.pid
    }

    /// Counters.
    pub fn counters(&self) -> PaceCounters {
        self.counters
    }

    /// Stream offset of the next byte to scan (bytes consumed so far).
    pub fn scanned(&self) -> u64 {
        self.scanned
    }

    /// Scans `chunk` (the bytes after those consumed so far) up to the next
    /// PCR that completes a segment, or to its end.
    pub fn scan(&mut self, chunk: &[u8], now: Duration) -> Result<Step, PaceError> {
        if chunk.len() % PACKET_LEN != 0 {
            return Err(PaceError::Unaligned { offset: self.scanned, len: chunk.len() });
        }
        let now = ticks_of(now);
        let base = self.scanned;
        for (index, bytes) in chunk.chunks_exact(PACKET_LEN).enumerate() {
            let Some(pkt) = TsPacket::from_slice(bytes) else { continue };
            let consumed = index * PACKET_LEN;
            self.scanned = base + consumed as u64;
            if let Some(segment) = self.packet(&pkt, now)? {
                self.resume_at = Some(self.scanned);
                return Ok(Step { consumed, segment: Some(segment) });
            }
        }
        self.scanned = base + chunk.len() as u64;
        Ok(Step { consumed: chunk.len(), segment: None })
    }

    /// Times the bytes after the last PCR at the last rate (at once when no
    /// rate is known yet): the end of a pass that is not looped. More bytes
    /// may follow; the next PCR then starts a new anchor without a gap.
    pub fn finish(&mut self, now: Duration) -> Result<Option<Segment>, PaceError> {
        let Some(anchor) = self.anchor else {
            if self.scanned > 0 {
                return Err(PaceError::NoPcr { scanned: self.scanned, pid: self.pid });
            }
            return Ok(None);
        };
        if self.scanned <= self.head {
            return Ok(None);
        }
        let tick = anchor.tick.saturating_add(self.extrapolate(self.scanned - anchor.offset));
        let end = Anchor { offset: self.scanned, pcr: None, tick };
        Ok(Some(self.close(end, ticks_of(now))))
    }

    /// One packet at stream offset `self.scanned`; a segment that ends
    /// before it, if this packet completes one.
    fn packet(&mut self, pkt: &TsPacket<'_>, now: u64) -> Result<Option<Segment>, PaceError> {
        let offset = self.scanned;
        // The packet that closed the last segment comes back as the first of
        // the next call; it has been accounted.
        if self.resume_at.take() == Some(offset) {
            return Ok(None);
        }
        if let Some(finder) = &mut self.finder
            && let Some((pid, latest)) = finder.push(pkt, offset, &self.limits)
        {
            self.pid = Some(pid);
            self.finder = None;
            if let Some((at, pcr)) = latest.filter(|&(at, _)| at < offset) {
                self.anchor = Some(Anchor { offset: at, pcr: Some(pcr), tick: now });
                self.counters.pcrs_total += 1;
            }
        }
        if Some(pkt.pid()) == self.pid && !pkt.transport_error() {
            let af = pkt.adaptation_field();
            if af.is_some_and(|af| af.discontinuity()) {
                self.discontinuity_pending = true;
            }
            if let Some(pcr) = af.and_then(|af| af.pcr()) {
                return Ok(self.pcr(pcr, offset, now));
            }
        }
        match self.anchor {
            Some(anchor) if offset - anchor.offset >= self.limits.gap_bytes => {
                self.counters.pcr_gaps_total += 1;
                let tick = anchor.tick.saturating_add(self.extrapolate(offset - anchor.offset));
                Ok(Some(self.close(Anchor { offset, pcr: None, tick }, now)))
            }
            Some(_) => Ok(None),
            None if offset + PACKET_LEN as u64 >= self.limits.no_pcr_bytes => {
                Err(PaceError::NoPcr { scanned: offset + PACKET_LEN as u64, pid: self.pid })
            }
            None => Ok(None),
        }
    }

    /// A PCR of the PCR PID at `offset`.
    fn pcr(&mut self, pcr: Pcr, offset: u64, now: u64) -> Option<Segment> {
        self.counters.pcrs_total += 1;
        let discontinuity = std::mem::take(&mut self.discontinuity_pending);
        let Some(anchor) = self.anchor else {
            self.anchor = Some(Anchor { offset, pcr: Some(pcr), tick: now });
            return None;
        };
        let bytes = offset - anchor.offset;
        let regular = match anchor.pcr {
            Some(_) if discontinuity => {
                self.counters.discontinuities_total += 1;
                None
            }
            Some(previous) => {
                let ticks = pcr.ticks_since(previous);
                if ticks <= ticks_of(self.limits.max_pcr_step) {
                    if ticks > 0 {
                        self.rate = Some(Rate { ticks, bytes });
                    }
                    Some(ticks)
                } else {
                    self.counters.pcr_jumps_total += 1;
                    None
                }
            }
            // After a gap or a finished pass: continue at the last rate.
            None => None,
        };
        let step = regular.unwrap_or_else(|| self.extrapolate(bytes));
        let end = Anchor { offset, pcr: Some(pcr), tick: anchor.tick.saturating_add(step) };
        Some(self.close(end, now))
    }

    /// Ticks `bytes` take at the last regular rate (0 without one).
    fn extrapolate(&self, bytes: u64) -> u64 {
        self.rate.map_or(0, |r| {
            let ticks = u128::from(bytes) * u128::from(r.ticks) / u128::from(r.bytes.max(1));
            u64::try_from(ticks).unwrap_or(u64::MAX)
        })
    }

    /// Closes the segment from the current anchor to `end`, moving the
    /// timeline to `now` when the caller is late by more than the stall
    /// limit; `end` becomes the new anchor.
    fn close(&mut self, mut end: Anchor, now: u64) -> Segment {
        let (anchor_offset, mut start_tick) = self.anchor.map_or((end.offset, end.tick), |a| (a.offset, a.tick));
        if now > start_tick.saturating_add(ticks_of(self.limits.stall)) {
            self.counters.stalls_total += 1;
            let shift = now - start_tick;
            start_tick = now;
            end.tick = end.tick.saturating_add(shift);
        }
        let segment =
            Segment { start: self.head, anchor: anchor_offset, end: end.offset, start_tick, end_tick: end.tick };
        self.head = end.offset;
        self.anchor = Some(end);
        segment
    }
}

/// Finds the PCR PID: the first program's PCR_PID, else the first PID seen
/// with a PCR.
#[derive(Clone)]
struct PcrPidFinder {
    table: PidTable,
    psi: Psi,
    /// (PID, offset, PCR) of the latest PCR of each PCR-carrying PID, in
    /// order of first appearance; at most [`FINDER_PIDS`].
    seen: Vec<(Pid, u64, Pcr)>,
}

impl std::fmt::Debug for PcrPidFinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcrPidFinder").field("psi", &self.psi).field("seen", &self.seen).finish_non_exhaustive()
    }
}

impl PcrPidFinder {
    fn new() -> PcrPidFinder {
        let mut table = PidTable::default();
        let psi = Psi::new(&mut table);
        PcrPidFinder { table, psi, seen: Vec::with_capacity(FINDER_PIDS) }
    }

    /// Feeds one packet; once decided, the PCR PID and its latest PCR
    /// (offset, value).
    fn push(&mut self, pkt: &TsPacket<'_>, offset: u64, limits: &PaceLimits) -> Option<(Pid, Option<(u64, Pcr)>)> {
        if pkt.transport_error() {
            return None;
        }
        let pid = pkt.pid();
        if let Some(pcr) = pkt.adaptation_field().and_then(|af| af.pcr()) {
            if let Some(entry) = self.seen.iter_mut().find(|s| s.0 == pid) {
                *entry = (pid, offset, pcr);
            } else if self.seen.len() < FINDER_PIDS {
                self.seen.push((pid, offset, pcr));
            }
        }
        if self.table.get(pid).is_some_and(|e| e.wanted) {
            self.psi.push(pkt, &mut self.table);
        }
        let declared = self.psi.programs().next().and_then(|(_, _, pmt)| pmt).map(|pmt| pmt.pcr_pid);
        let chosen = match declared {
            Some(pid) if pid != Pid::NULL => pid,
            Some(_) => self.seen.first()?.0,
            None if offset + PACKET_LEN as u64 >= limits.psi_wait_bytes => self.seen.first()?.0,
            None => return None,
        };
        let latest = self.seen.iter().find(|s| s.0 == chosen).map(|s| (s.1, s.2));
        Some((chosen, latest))
    }
}

/// 27 MHz ticks in `d`, saturating.
fn ticks_of(d: Duration) -> u64 {
    u64::try_from(d.as_nanos() * u128::from(Pcr::HZ) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// The duration of `ticks` 27 MHz ticks, rounded down to the nanosecond.
fn duration_of(ticks: u64) -> Duration {
    let nanos = (ticks % Pcr::HZ) * 1000 / 27;
    Duration::new(ticks / Pcr::HZ, nanos as u32)
}

#[cfg(test)]
mod tests;
