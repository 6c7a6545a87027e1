//! The whole-stream analysis behind `probe`: framing, scanning and PSI over
//! a buffer, summarised as a [`Report`]. Sans-IO: the caller hands in bytes.

use super::framing::{PacketSize, SyncTracker};
use super::packet::{PACKET_LEN, Pcr, Pid, SYNC_BYTE, TsPacket};
use super::psi::{Psi, PsiCounters};
use super::scan::{Kernel, PayloadSink, Run, Scanner};
use super::stats::PidTable;

mod report;
mod split;

pub use report::{ErrorReport, PcrReport, PidReport, ProgramReport, Report, StreamReport};

/// Packets per scanner call without a duration limit (about 385 KB).
const RUN_PACKETS: usize = 2048;
/// Packets per scanner call under a duration limit: the limit is checked
/// between calls, so this bounds the overshoot.
const LIMITED_RUN_PACKETS: usize = 64;

/// Feeds wanted packets to the PSI state.
struct PsiSink<'a>(&'a mut Psi);

impl PayloadSink for PsiSink<'_> {
    fn payload_packet(&mut self, pkt: TsPacket<'_>, _: u64, table: &mut PidTable) {
        self.0.push(&pkt, table);
    }
}

/// Analysis state over one stream.
pub struct Analyzer {
    sync: SyncTracker,
    scanner: Scanner,
    psi: Psi,
    bytes: u64,
    skipped_bytes: u64,
    truncated_bytes: u64,
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer::new()
    }
}

/// Where the analysis of one buffer stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    /// End of the last accounted packet unit.
    accounted: usize,
    /// Sync position of the next packet, while locked.
    locked: Option<usize>,
    /// Where the next sync search starts, while not locked.
    search: usize,
}

/// Why [`Analyzer::advance`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pause {
    /// No further packet fits in the buffer.
    End,
    /// The duration limit was reached.
    Limit,
    /// The next packet starts at or after the seam (the cursor is locked
    /// there).
    Seam,
}

/// Where [`Analyzer::analyze`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// All bytes were accounted.
    End,
    /// The PCR-timed duration limit was reached after this many bytes.
    Limit {
        /// Bytes accounted before stopping.
        bytes: usize,
    },
}

impl Analyzer {
    /// An analyzer on the fastest scanner kernel.
    pub fn new() -> Analyzer {
        Analyzer::with_scanner(Scanner::new())
    }

    /// An analyzer on a chosen kernel, or `None` when the CPU lacks it.
    pub fn with_kernel(kernel: Kernel) -> Option<Analyzer> {
        Scanner::with_kernel(kernel).map(Analyzer::with_scanner)
    }

    fn with_scanner(mut scanner: Scanner) -> Analyzer {
        let psi = Psi::new(scanner.table_mut());
        Analyzer { sync: SyncTracker::default(), scanner, psi, bytes: 0, skipped_bytes: 0, truncated_bytes: 0 }
    }

    /// Analyzes a whole input held in `buf`, stopping early once the first
    /// program's PCRs span `limit_secs`.
    pub fn analyze(&mut self, buf: &[u8], limit_secs: Option<f64>) -> Stop {
        let limit_ticks = limit_secs.map(|s| (s * Pcr::HZ as f64) as u64);
        let mut cursor = Cursor::default();
        match self.advance(buf, &mut cursor, usize::MAX, limit_ticks) {
            Pause::Limit => {
                self.bytes += cursor.accounted as u64;
                Stop::Limit { bytes: cursor.accounted }
            }
            Pause::End | Pause::Seam => {
                self.finish(buf, &cursor);
                Stop::End
            }
        }
    }

    /// Accounts one chunk of a live input: whole 188-byte packets, already
    /// checked for sync by the input (see `ts::datagram`). A packet without
    /// its sync byte (not expected) is a sync loss and the rest of the chunk
    /// is skipped.
    pub fn push_chunk(&mut self, chunk: &[u8]) {
        if self.sync.first_size().is_none() {
            self.sync = SyncTracker::locked(PacketSize::Ts188);
        }
        let run = Run { start: 0, stride: PACKET_LEN, count: chunk.len() / PACKET_LEN };
        let out = self.scanner.scan(chunk, run, &mut PsiSink(&mut self.psi));
        let used = out.packets * PACKET_LEN;
        if out.sync_lost {
            self.sync.lose();
        }
        self.skipped_bytes += (chunk.len() - used) as u64;
        self.bytes += chunk.len() as u64;
    }

    /// Accounts packets from `cursor` on until the input ends, the duration
    /// limit is reached, or the next packet would start at or after `seam`.
    fn advance(&mut self, buf: &[u8], cursor: &mut Cursor, seam: usize, limit_ticks: Option<u64>) -> Pause {
        let run_max = if limit_ticks.is_some() { LIMITED_RUN_PACKETS } else { RUN_PACKETS };
        // Runs hold only packets that start before the seam.
        let run_end = buf.len().min(seam.saturating_add(PACKET_LEN - 1));
        loop {
            let pos = match cursor.locked {
                Some(pos) => pos,
                None => match self.sync.acquire(buf, cursor.search, true) {
                    Some(pos) => {
                        let prefix = self.sync.size().map_or(0, PacketSize::prefix);
                        let unit_start = pos.saturating_sub(prefix).max(cursor.accounted);
                        self.skipped_bytes += (unit_start - cursor.accounted) as u64;
                        cursor.accounted = unit_start;
                        cursor.locked = Some(pos);
                        pos
                    }
                    None => return Pause::End,
                },
            };
            if pos >= seam {
                return Pause::Seam;
            }
            let stride = self.sync.size().map_or(PACKET_LEN, PacketSize::stride);
            let run = Run::fitting(run_end, pos, stride, run_max);
            if run.count == 0 {
                return Pause::End;
            }
            let out = self.scanner.scan(buf, run, &mut PsiSink(&mut self.psi));
            let next = pos + out.packets * stride;
            if out.packets > 0 {
                let prefix = self.sync.size().map_or(0, PacketSize::prefix);
                cursor.accounted = (next - prefix).min(buf.len());
            }
            if out.sync_lost {
                self.sync.lose();
                cursor.locked = None;
                cursor.search = next + 1;
            } else {
                cursor.locked = Some(next);
            }
            if let Some(limit) = limit_ticks
                && self.pcr_ticks() >= limit
            {
                return Pause::Limit;
            }
        }
    }

    /// Accounts what is left after the last packet, at the end of input.
    fn finish(&mut self, buf: &[u8], cursor: &Cursor) {
        let rest = buf.len().saturating_sub(cursor.accounted) as u64;
        // A packet cut short where one was due is a truncated tail; anything
        // else left over is garbage.
        match cursor.locked {
            Some(pos) if buf.get(pos) == Some(&SYNC_BYTE) => self.truncated_bytes += rest,
            _ => self.skipped_bytes += rest,
        }
        self.bytes += buf.len() as u64;
    }

    /// The PCR PID of the first program in the PAT, once its PMT is known.
    fn first_pcr_pid(&self) -> Option<Pid> {
        self.psi.programs().find_map(|(_, _, pmt)| pmt.map(|p| p.pcr_pid))
    }

    /// Valid PCR-timed ticks of the first program.
    fn pcr_ticks(&self) -> u64 {
        self.first_pcr_pid().and_then(|pid| self.scanner.table().get(pid)).map_or(0, |e| e.pcr.timed_ticks)
    }

    /// The scanner's counters.
    pub fn table(&self) -> &PidTable {
        self.scanner.table()
    }

    /// The PSI state.
    pub fn psi(&self) -> &Psi {
        &self.psi
    }

    /// Summarises what was seen; `url` is echoed in the report.
    pub fn report(&self, url: &str) -> Report {
        let table = self.scanner.table();
        let first_pcr = self.first_pcr_pid().and_then(|pid| table.get(pid)).map(|e| &e.pcr);
        let bitrate_bps = first_pcr.and_then(|p| p.bitrate_bps());
        let ts_packets = self.scanner.packets();
        let programs = self
            .psi
            .programs()
            .map(|(number, pmt_pid, pmt)| ProgramReport {
                number,
                pmt_pid: pmt_pid.value(),
                pcr_pid: pmt.map(|p| p.pcr_pid.value()),
                streams: pmt
                    .map(|p| {
                        p.streams
                            .iter()
                            .map(|es| StreamReport {
                                pid: es.pid.value(),
                                stream_type: es.stream_type,
                                codec: es.codec.unwrap_or(super::codec::UNKNOWN),
                                language: es.language.clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        // Entries exist for PIDs a parser wants before any packet arrived;
        // the report lists only PIDs seen.
        let mut pids: Vec<PidReport> = table
            .iter()
            .filter(|e| e.packets > 0)
            .map(|e| PidReport {
                pid: e.pid.value(),
                packets: e.packets,
                cc_errors: e.cc_errors,
                transport_errors: e.transport_errors,
                discontinuities: e.discontinuities,
                scrambled: e.scrambled,
                bitrate_bps: bitrate_bps
                    .filter(|_| ts_packets > 0)
                    .map(|b| (u128::from(b) * u128::from(e.packets) / u128::from(ts_packets)) as u64),
                pcr: (e.pcr.count > 0).then(|| PcrReport {
                    count: e.pcr.count,
                    interval_min_ms: e.pcr.min_interval_ticks.map(ticks_to_ms),
                    interval_max_ms: e.pcr.max_interval_ticks.map(ticks_to_ms),
                    interval_violations: e.pcr.interval_violations,
                }),
            })
            .collect();
        pids.sort_by_key(|p| p.pid);
        let PsiCounters { crc_errors, malformed_sections, .. } = self.psi.counters();
        Report {
            url: url.to_owned(),
            bytes: self.bytes,
            ts_packets,
            packet_size: self.sync.first_size().map(PacketSize::stride),
            bitrate_bps,
            duration_secs: first_pcr.filter(|p| p.timed_ticks > 0).map(|p| p.timed_ticks as f64 / Pcr::HZ as f64),
            scanner: self.scanner.kernel().name(),
            programs,
            errors: ErrorReport {
                sync_losses: self.sync.sync_losses(),
                cc_errors: pids.iter().map(|p| p.cc_errors).sum(),
                transport_errors: pids.iter().map(|p| p.transport_errors).sum(),
                skipped_bytes: self.skipped_bytes,
                truncated_bytes: self.truncated_bytes,
                psi_crc_errors: crc_errors,
                psi_malformed_sections: malformed_sections,
            },
            pids,
        }
    }
}

fn ticks_to_ms(ticks: u64) -> f64 {
    ticks as f64 * 1000.0 / Pcr::HZ as f64
}
