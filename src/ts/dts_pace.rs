//! Real-time pacing of AV packets by their DTS, for sources that deliver
//! in bursts faster than playback (HLS segments, a file read whole): each
//! packet is released when as much wall time has passed since the anchor
//! as DTS has since the anchor's packet.
//!
//! Not for live transports (UDP, SRT, RTMP): they pace themselves, and
//! pacing them again only adds delay.
//!
//! The anchor is reset (the packet released at once) on a discontinuity,
//! when DTS goes backwards, when a packet would wait longer than
//! [`DtsPaceLimits::max_lead`] (a jump forwards), and when the source has
//! fallen more than [`DtsPaceLimits::max_late`] behind (a stalled source
//! resumes at its own pace instead of bursting to catch up). Each reset is
//! counted. DTS of all tracks share one anchor: a stream's tracks are
//! interleaved within a fraction of a second of each other. Sans-IO: the
//! caller passes the time and sleeps until the returned instant.
//!
//! [`ChunkPacer`] applies it to runs of TS packets (an HLS segment cut into
//! chunks), keyed by the PES timestamps that start in each chunk.

use std::time::Duration;

use crate::ts::av::TIMESCALE;
use crate::ts::timestamp::first_pes_timestamp;

/// How far one track's timestamps may trail another's in mux order
/// without being taken for a jump backwards: muxers interleave audio and
/// video within a fraction of a second.
const TRACK_SKEW_TICKS: i64 = TIMESCALE;

/// When the anchor is given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DtsPaceLimits {
    /// Longest wait for one packet.
    pub max_lead: Duration,
    /// Largest delay behind schedule before re-anchoring.
    pub max_late: Duration,
}

impl Default for DtsPaceLimits {
    /// Waits of up to 10 s (an HLS segment is typically 2 to 10 s); 1 s
    /// late at most.
    fn default() -> Self {
        DtsPaceLimits { max_lead: Duration::from_secs(10), max_late: Duration::from_secs(1) }
    }
}

/// Releases packets on the wall clock by their DTS.
#[derive(Clone, Debug, Default)]
pub struct DtsPacer {
    limits: DtsPaceLimits,
    /// Wall time and DTS of the anchor packet.
    anchor: Option<(Duration, i64)>,
    resets: u64,
}

impl DtsPacer {
    /// A pacer that has seen no packet.
    pub fn new(limits: DtsPaceLimits) -> DtsPacer {
        DtsPacer { limits, anchor: None, resets: 0 }
    }

    /// How often the anchor was reset after the first packet.
    pub fn resets(&self) -> u64 {
        self.resets
    }

    /// When the packet with `dts` (and the `discontinuity` flag) that is
    /// ready at `now` may go: `now` or later.
    pub fn release_at(&mut self, dts: i64, discontinuity: bool, now: Duration) -> Duration {
        if let Some((wall, anchor_dts)) = self.anchor
            && !discontinuity
            && let Some(ahead) = u64::try_from(dts.saturating_sub(anchor_dts)).ok()
        {
            let due = wall.saturating_add(ticks_to_duration(ahead));
            let in_limits =
                due <= now.saturating_add(self.limits.max_lead) && due.saturating_add(self.limits.max_late) >= now;
            if in_limits {
                return due.max(now);
            }
        }
        if self.anchor.is_some() {
            self.resets += 1;
        }
        self.anchor = Some((now, dts));
        now
    }
}

/// Paces chunks of TS packets by the PES timestamps in them.
///
/// The tracks of a stream interleave with their timestamps out of step (an
/// audio PES may start before the video PES muxed ahead of it), so the
/// chunks are paced on a stream clock: the highest timestamp seen, which a
/// timestamp more than [`TRACK_SKEW_TICKS`] behind it resets (a jump back,
/// a 33-bit wrap). A chunk in which no PES starts goes at once: it belongs
/// to the PES before it.
#[derive(Clone, Debug, Default)]
pub struct ChunkPacer {
    pacer: DtsPacer,
    clock: Option<i64>,
    /// A discontinuity flagged on a chunk without a timestamp, carried to
    /// the next chunk that has one.
    pending_discontinuity: bool,
}

impl ChunkPacer {
    /// A pacer that has seen no chunk.
    pub fn new(limits: DtsPaceLimits) -> ChunkPacer {
        ChunkPacer { pacer: DtsPacer::new(limits), clock: None, pending_discontinuity: false }
    }

    /// How often the schedule was given up (see [`DtsPacer::resets`]).
    pub fn resets(&self) -> u64 {
        self.pacer.resets()
    }

    /// When `chunk`, ready at `now`, may go; `discontinuity` when the
    /// source says its timestamps break before it (an HLS
    /// `#EXT-X-DISCONTINUITY`).
    pub fn release_at(&mut self, chunk: &[u8], discontinuity: bool, now: Duration) -> Duration {
        let discontinuity = discontinuity || self.pending_discontinuity;
        let Some(ts) = first_pes_timestamp(chunk) else {
            self.pending_discontinuity = discontinuity;
            return now;
        };
        self.pending_discontinuity = false;
        let ts = ts as i64;
        let clock = match self.clock {
            Some(clock) if !discontinuity && ts <= clock && clock - ts <= TRACK_SKEW_TICKS => clock,
            _ => ts,
        };
        self.clock = Some(clock);
        self.pacer.release_at(clock, discontinuity, now)
    }
}

fn ticks_to_duration(ticks: u64) -> Duration {
    let secs = ticks / TIMESCALE as u64;
    let rest = ticks % TIMESCALE as u64;
    Duration::from_secs(secs).saturating_add(Duration::from_nanos(rest * 1_000_000_000 / TIMESCALE as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn a_burst_is_spread_over_its_duration() {
        let mut pacer = DtsPacer::new(DtsPaceLimits::default());
        // A 2 s segment of 25 fps arrives at once at t = 5 s.
        let due: Vec<Duration> = (0..50).map(|n| pacer.release_at(1_000 + n * 3_600, false, MS(5_000))).collect();
        assert_eq!(due[0], MS(5_000));
        assert_eq!(due[1], MS(5_040));
        assert_eq!(due[49], MS(5_000 + 49 * 40));
        // The next segment arrives on time: it continues the schedule.
        assert_eq!(pacer.release_at(1_000 + 50 * 3_600, false, MS(6_900)), MS(7_000));
        assert_eq!(pacer.resets(), 0);
    }

    #[test]
    fn jumps_stalls_and_discontinuities_reset_the_anchor() {
        let mut pacer = DtsPacer::new(DtsPaceLimits::default());
        assert_eq!(pacer.release_at(0, false, MS(0)), MS(0));
        // Backwards.
        assert_eq!(pacer.release_at(-90_000, false, MS(10)), MS(10));
        // Forwards by a minute: released now, not in a minute.
        assert_eq!(pacer.release_at(-90_000 + 60 * 90_000, false, MS(20)), MS(20));
        // A stall: 3 s late resumes at once and paces from there.
        assert_eq!(pacer.release_at(-90_000 + 60 * 90_000 + 3_600, false, MS(3_020)), MS(3_020));
        assert_eq!(pacer.release_at(-90_000 + 60 * 90_000 + 7_200, false, MS(3_020)), MS(3_060));
        // Flagged.
        assert_eq!(pacer.release_at(5, true, MS(3_030)), MS(3_030));
        assert_eq!(pacer.resets(), 4);
        // Extremes do not overflow.
        pacer.release_at(i64::MAX, false, Duration::MAX);
        pacer.release_at(i64::MIN, false, MS(0));
    }

    /// One 188-byte packet starting a PES with `pts` on PID 256.
    fn pes_start(pts: u64) -> Vec<u8> {
        let mut p = vec![0x47, 0x41, 0x00, 0x10, 0, 0, 1, 0xE0, 0, 0, 0x80, 0x80, 5];
        p.extend_from_slice(&crate::ts::timestamp::encode_timestamp(2, pts));
        p.resize(188, 0xFF);
        p
    }

    #[test]
    fn chunks_follow_the_leading_track_and_reset_on_jumps() {
        let mut pacer = ChunkPacer::new(DtsPaceLimits::default());
        let plain = {
            let mut p = vec![0x47, 0x01, 0x00, 0x10];
            p.resize(188, 0);
            p
        };
        assert_eq!(pacer.release_at(&pes_start(90_000), false, MS(0)), MS(0));
        // Video 400 ms on; then audio 200 ms behind it: no reset, no wait.
        assert_eq!(pacer.release_at(&pes_start(126_000), false, MS(0)), MS(400));
        assert_eq!(pacer.release_at(&pes_start(108_000), false, MS(400)), MS(400));
        assert_eq!(pacer.release_at(&plain, false, MS(400)), MS(400));
        assert_eq!(pacer.resets(), 0);
        // Two seconds back is a jump: a new schedule from now.
        assert_eq!(pacer.release_at(&pes_start(0), false, MS(450)), MS(450));
        assert_eq!(pacer.release_at(&pes_start(9_000), false, MS(450)), MS(550));
        // A discontinuity flagged on a chunk without timestamps applies to
        // the next one that has one.
        assert_eq!(pacer.release_at(&plain, true, MS(460)), MS(460));
        assert_eq!(pacer.release_at(&pes_start(900_000), false, MS(470)), MS(470));
        assert_eq!(pacer.resets(), 2);
    }
}
