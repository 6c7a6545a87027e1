//! A stream's live health: counters over the transport stream as it goes
//! out, TR 101 290 first-priority checks, and per-PID bitrates. Sans-IO:
//! the caller hands in chunks and the time.
//!
//! What is checked (TR 101 290 §5.2.1 and §5.2.2):
//! - 1.1 TS_sync_loss and 1.2 Sync_byte_error, with the usual hysteresis
//!   (five sync bytes to acquire, two bad ones to lose): see `align`.
//! - 1.3 PAT_error, 1.5 PMT_error, 1.6 PID_error: see `checks` for the
//!   exact rules and how "missing" errors are counted.
//! - 1.4 Continuity_count_error, 2.1 Transport_error and 2.3
//!   PCR_repetition_error (intervals over 40 ms): per PID, by the
//!   scanner's [`PidTable`] rules.
//!
//! Chunks may be cut anywhere: partial packets are carried to the next
//! chunk, so the counts do not depend on where a stream was cut (the
//! time-based checks aside, which see each byte at the time of the chunk
//! that completed its packet). Time is the `now` passed in, time since the
//! stream began; time going backwards counts as no time passing.
//!
//! Bitrates are over whole one-second windows of `now` (`[k s, k+1 s)`):
//! the figures are those of the last window that ended, so they lag by up
//! to a second and drop to 0 after a window without data.
//!
//! Memory: a monitor that has seen no data is a few dozen bytes; the
//! scanner, its 16 KiB PID index and the PSI state are allocated with the
//! first chunk.

mod align;
mod checks;

use std::time::Duration;

use serde::Serialize;

use self::align::Aligner;
use self::checks::Checks;
use crate::ts::packet::PACKET_LEN;
use crate::ts::psi::Psi;
use crate::ts::scan::Scanner;
use crate::ts::stats::PidTable;

/// Length of a bitrate window.
const WINDOW_NS: u64 = 1_000_000_000;

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

/// Watches one stream: feed it every chunk of the stream with its time,
/// and [`StreamMonitor::tick`] it about once a second.
#[derive(Debug, Default)]
pub struct StreamMonitor {
    bytes_total: u64,
    /// Latest time seen, ns since the stream began.
    now_ns: u64,
    /// Everything else, from the first chunk on.
    live: Option<Box<Live>>,
}

/// The state of a monitor that has seen data.
struct Live {
    scanner: Scanner,
    psi: Psi,
    aligner: Aligner,
    checks: Checks,
    rates: Rates,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").field("packets", &self.scanner.packets()).finish_non_exhaustive()
    }
}

/// Byte and per-PID packet counts per one-second window.
#[derive(Clone, Debug, Default)]
struct Rates {
    /// Index of the current window (seconds since the stream began).
    window: u64,
    /// Start of the next window, ns: compared on every chunk instead of
    /// dividing.
    next_window_ns: u64,
    bytes_now: u64,
    bytes_last: u64,
    /// Per entry of the PID table, in its order (first appearance).
    pids: Vec<PidWindow>,
}

/// One PID's packets at the start of the current window and in the last
/// whole one.
#[derive(Clone, Copy, Debug, Default)]
struct PidWindow {
    start: u64,
    last: u64,
}

impl Rates {
    /// Closes the windows that ended by `now_ns`.
    #[inline]
    fn advance(&mut self, now_ns: u64, table: &PidTable) {
        if now_ns >= self.next_window_ns {
            self.roll(now_ns, table);
        }
    }

    #[cold]
    fn roll(&mut self, now_ns: u64, table: &PidTable) {
        let window = now_ns / WINDOW_NS;
        if window <= self.window {
            // Only at the end of time, where the next window saturates.
            return;
        }
        // The last whole window is the current one only if no window
        // without data came between.
        let adjacent = window == self.window + 1;
        self.bytes_last = if adjacent { self.bytes_now } else { 0 };
        self.bytes_now = 0;
        for (i, e) in table.iter().enumerate() {
            if i == self.pids.len() {
                self.pids.push(PidWindow::default());
            }
            if let Some(w) = self.pids.get_mut(i) {
                w.last = if adjacent { e.packets.saturating_sub(w.start) } else { 0 };
                w.start = e.packets;
            }
        }
        self.window = window;
        self.next_window_ns = (window + 1).saturating_mul(WINDOW_NS);
    }
}

/// Time as nanoseconds, saturating (584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl StreamMonitor {
    /// A monitor that has seen nothing.
    pub fn new() -> StreamMonitor {
        StreamMonitor::default()
    }

    /// Moves the clock to `now`, never backwards; returns it in ns.
    #[inline]
    fn clock(&mut self, now: Duration) -> u64 {
        self.now_ns = self.now_ns.max(nanos(now));
        self.now_ns
    }

    /// Feeds one chunk that arrived at `now` (time since the stream began).
    /// Any bytes are accepted: whole aligned packets are the normal case.
    pub fn push(&mut self, chunk: &[u8], now: Duration) {
        if chunk.is_empty() {
            self.tick(now);
            return;
        }
        let now_ns = self.clock(now);
        self.bytes_total += chunk.len() as u64;
        let live = self.live.get_or_insert_with(|| Box::new(Live::new(now_ns)));
        let Live { scanner, psi, aligner, checks, rates } = &mut **live;
        rates.advance(now_ns, scanner.table());
        rates.bytes_now += chunk.len() as u64;
        checks.advance(now_ns, scanner.table());
        checks.data_at(now_ns);
        let mut sink = checks.sink(psi, now_ns);
        aligner.feed(chunk, &mut |buf, run| scanner.scan(buf, run, &mut sink));
    }

    /// Advances time without data (timeouts for missing tables and PIDs,
    /// bitrate windows).
    pub fn tick(&mut self, now: Duration) {
        let now_ns = self.clock(now);
        if let Some(live) = &mut self.live {
            live.rates.advance(now_ns, live.scanner.table());
            live.checks.advance(now_ns, live.scanner.table());
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> MonitorCounters {
        let mut c = MonitorCounters { bytes_total: self.bytes_total, ..MonitorCounters::default() };
        let Some(live) = &self.live else {
            return c;
        };
        c.packets_total = live.scanner.packets();
        c.sync_losses_total = live.aligner.sync_losses;
        c.sync_byte_errors_total = live.aligner.sync_byte_errors;
        c.pat_errors_total = live.checks.pat_errors;
        c.pmt_errors_total = live.checks.pmt_errors;
        c.pid_errors_total = live.checks.pid_errors;
        for e in live.scanner.table().iter() {
            c.cc_errors_total += e.cc_errors;
            c.tei_packets_total += e.transport_errors;
            c.pcr_interval_violations_total += e.pcr.interval_violations;
        }
        c
    }

    /// Bitrate of the whole stream over the last whole second, bits/s
    /// (every byte pushed, packets or not).
    pub fn bitrate_bps(&self) -> f64 {
        self.live.as_ref().map_or(0.0, |l| (l.rates.bytes_last * 8) as f64 * 1e9 / WINDOW_NS as f64)
    }

    /// Appends every PID seen, in PID order, to `out`; bitrates over the
    /// last whole second.
    pub fn pids(&self, out: &mut Vec<PidCounters>) {
        let Some(live) = &self.live else {
            return;
        };
        let from = out.len();
        for (i, e) in live.scanner.table().iter().enumerate() {
            if e.packets == 0 {
                // Wanted by the PSI parser but never seen.
                continue;
            }
            let last = live.rates.pids.get(i).map_or(0, |w| w.last);
            out.push(PidCounters {
                pid: e.pid.value(),
                packets_total: e.packets,
                cc_errors_total: e.cc_errors,
                bitrate_bps: (last * PACKET_LEN as u64 * 8) as f64 * 1e9 / WINDOW_NS as f64,
            });
        }
        out[from..].sort_unstable_by_key(|p| p.pid);
    }
}

impl Live {
    fn new(now_ns: u64) -> Live {
        let mut scanner = Scanner::new();
        let psi = Psi::new(scanner.table_mut());
        Live {
            scanner,
            psi,
            aligner: Aligner::default(),
            checks: Checks::new(now_ns),
            rates: Rates {
                window: now_ns / WINDOW_NS,
                next_window_ns: (now_ns / WINDOW_NS + 1).saturating_mul(WINDOW_NS),
                ..Rates::default()
            },
        }
    }
}

#[cfg(test)]
mod tests;
