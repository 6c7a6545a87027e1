//! A stream's live health: counters over the transport stream as it goes
//! out, TR 101 290 first-priority checks, and per-PID bitrates. Sans-IO:
//! the caller hands in chunks and the time.

use std::time::Duration;

use serde::Serialize;

/// Counters over a stream since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MonitorCounters {
    /// TS packets seen.
    pub packets_total: u64,
    /// Bytes seen.
    pub bytes_total: u64,
    /// TR 101 290 1.1 TS_sync_loss: times sync was lost.
    pub sync_losses_total: u64,
    /// TR 101 290 1.2 Sync_byte_error: packets without the sync byte.
    pub sync_byte_errors_total: u64,
    /// TR 101 290 1.3 PAT_error: PAT missing for over 0.5 s, or on PID 0
    /// with another table id, or scrambled.
    pub pat_errors_total: u64,
    /// TR 101 290 1.4 Continuity_count_error.
    pub cc_errors_total: u64,
    /// TR 101 290 1.5 PMT_error: a PMT missing for over 0.5 s, or scrambled.
    pub pmt_errors_total: u64,
    /// TR 101 290 1.6 PID_error: a PID the PMT lists absent for over 5 s.
    pub pid_errors_total: u64,
    /// Packets with transport_error_indicator set (TR 101 290 2.1).
    pub tei_packets_total: u64,
    /// PCR intervals over 40 ms (TR 101 290 2.3, PCR_repetition_error).
    pub pcr_interval_violations_total: u64,
}

/// One PID's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PidCounters {
    /// The PID.
    pub pid: u16,
    /// Packets seen.
    pub packets_total: u64,
    /// Continuity errors.
    pub cc_errors_total: u64,
    /// Bitrate over the last second, bits/s.
    pub bitrate_bps: f64,
}

/// Watches one stream (placeholder until the checks land: counts bytes).
#[derive(Debug, Default)]
pub struct StreamMonitor {
    counters: MonitorCounters,
}

impl StreamMonitor {
    /// A monitor that has seen nothing.
    pub fn new() -> StreamMonitor {
        StreamMonitor::default()
    }

    /// Feeds one chunk that arrived at `now` (time since the stream began).
    pub fn push(&mut self, chunk: &[u8], now: Duration) {
        let _ = now;
        self.counters.bytes_total += chunk.len() as u64;
        self.counters.packets_total += (chunk.len() / 188) as u64;
    }

    /// Advances time without data (timeouts for missing tables and PIDs).
    pub fn tick(&mut self, now: Duration) {
        let _ = now;
    }

    /// The counters so far.
    pub fn counters(&self) -> MonitorCounters {
        self.counters
    }

    /// Bitrate of the whole stream over the last second, bits/s.
    pub fn bitrate_bps(&self) -> f64 {
        0.0
    }

    /// Appends every PID seen, in PID order, to `out`.
    pub fn pids(&self, out: &mut Vec<PidCounters>) {
        let _ = out;
    }
}
