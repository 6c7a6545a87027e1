//! TR 101 290 first-priority table and PID checks (§5.2.1: 1.3 PAT_error,
//! 1.5 PMT_error, 1.6 PID_error), on times in nanoseconds since the stream
//! began.
//!
//! - **PAT**: a section with table_id 0x00 must start on PID 0 at least
//!   every 0.5 s, from the first byte of the stream on. A section start
//!   with another table_id (0xFF stuffing aside) or a packet with
//!   transport_scrambling_control != 00 on PID 0 is one error each.
//! - **PMT**: each PMT PID of the current PAT must carry a section start
//!   with table_id 0x02 at least every 0.5 s, from when the PAT named it; a
//!   scrambled packet on it is one error.
//! - **PID**: each elementary PID of the current PMTs must carry some packet
//!   at least every 5 s, from when its PMT named it.
//!
//! "Missing" errors count events: one when the limit is passed (missing for
//! strictly longer than the limit), then one more for each further full
//! limit it stays missing (so a PAT gone for 1.2 s is two errors). They
//! keep counting while no data arrives at all: a stream that stopped lacks
//! its tables.
//!
//! Only the first section start of a packet (at its pointer_field) is
//! looked at: where several sections share a packet, the first is what
//! marks the table present. Elementary PIDs are never sent to the payload
//! sink (that would take them off the scanner's fast path): their presence
//! is read from the per-PID packet counts at most every 10 ms, so a PID's
//! "last seen" time is late by up to that step plus one chunk.
//!
//! Tables repeat every 100 ms or so, unchanged: a PAT or PMT packet that
//! holds whole sections and equals the previous packet of its PID (counter
//! aside) is not parsed again while the tables stay as they are, since the
//! parser would only find the same sections.

use crate::ts::packet::{PACKET_LEN, Pid, TsPacket};
use crate::ts::psi::Psi;
use crate::ts::scan::PayloadSink;
use crate::ts::stats::PidTable;

/// PAT and PMT repetition limit, 0.5 s.
pub(super) const TABLE_LIMIT_NS: u64 = 500_000_000;
/// PID_error limit, 5 s (TR 101 290 leaves it to the user).
pub(super) const PID_LIMIT_NS: u64 = 5_000_000_000;
/// How often elementary PIDs' packet counts are compared.
const PRESENCE_STEP_NS: u64 = 10_000_000;

/// When a table or PID was last seen and how many "missing" errors it has
/// raised since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Watch {
    pub(super) pid: u16,
    last_seen_ns: u64,
    fired: u64,
    /// The PID's packet count at the last presence check.
    packets: u64,
}

impl Watch {
    fn new(pid: u16, now_ns: u64, packets: u64) -> Watch {
        Watch { pid, last_seen_ns: now_ns, fired: 0, packets }
    }

    fn seen(&mut self, now_ns: u64) {
        self.last_seen_ns = self.last_seen_ns.max(now_ns);
        self.fired = 0;
    }

    /// When the next "missing" error falls due: strictly after this.
    fn deadline(&self, limit_ns: u64) -> u64 {
        self.last_seen_ns.saturating_add(limit_ns.saturating_mul(self.fired.saturating_add(1)))
    }

    /// Errors newly due at `now_ns`: the k >= 1 with k * limit < missing
    /// time, less those already raised.
    fn overdue(&mut self, now_ns: u64, limit_ns: u64) -> u64 {
        let missing = now_ns.saturating_sub(self.last_seen_ns);
        let due = missing.saturating_sub(1) / limit_ns.max(1);
        let new = due.saturating_sub(self.fired);
        self.fired = self.fired.max(due);
        new
    }
}

/// What identifies a set of tables: when it changes, the watch lists are
/// rebuilt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TablesKey {
    pat: Option<(u16, u8)>,
    pat_changes: u64,
    pmt_changes: u64,
    pmts_known: usize,
}

impl TablesKey {
    fn of(psi: &Psi) -> TablesKey {
        TablesKey {
            pat: psi.pat().map(|p| (p.transport_stream_id, p.version)),
            pat_changes: psi.counters().pat_changes,
            pmt_changes: psi.counters().pmt_changes,
            pmts_known: psi.programs().filter(|p| p.2.is_some()).count(),
        }
    }
}

/// Table PIDs whose last packet may be skipped when it comes again.
const REPEAT_PIDS: usize = 16;

/// The last packet handed to the parser on each of a few table PIDs, when
/// it held whole sections only.
#[derive(Clone, Debug, Default)]
struct Repeats {
    last: Vec<(u16, [u8; PACKET_LEN])>,
    /// Packets skipped, for tests.
    #[cfg(test)]
    skipped: u64,
}

impl Repeats {
    /// Whether `pkt` repeats its PID's last packet, so parsing it again
    /// changes nothing. Otherwise remembers it, when it can be skipped
    /// next time.
    fn is_repeat(&mut self, pkt: &TsPacket<'_>) -> bool {
        let pid = pkt.pid().value();
        let at = self.last.iter().position(|(p, _)| *p == pid);
        let mut bytes = *pkt.bytes();
        bytes[3] &= 0xF0;
        if !holds_whole_sections(pkt) {
            if let Some(i) = at {
                self.last.swap_remove(i);
            }
            return false;
        }
        match at {
            Some(i) if self.last[i].1 == bytes => {
                #[cfg(test)]
                {
                    self.skipped += 1;
                }
                true
            }
            Some(i) => {
                self.last[i].1 = bytes;
                false
            }
            None => {
                if self.last.len() < REPEAT_PIDS {
                    self.last.push((pid, bytes));
                }
                false
            }
        }
    }

    /// The tables changed after a packet of `pid` was parsed: packets of
    /// other PIDs may now mean something else, so none is a repeat.
    fn forget_others(&mut self, pid: u16) {
        self.last.retain(|(p, _)| *p == pid);
    }
}

/// Whether a packet starts a section at its first payload byte, ends it
/// within the packet and is stuffed after it: then parsing it leaves the
/// section assembler in the same state whatever came before.
fn holds_whole_sections(pkt: &TsPacket<'_>) -> bool {
    let Some(payload) = pkt.payload() else { return false };
    if !pkt.payload_unit_start() || payload.first() != Some(&0) {
        return false;
    }
    let Some(&[_, hi, lo]) = payload.get(1..4) else { return false };
    let end = 1 + 3 + (usize::from(hi & 0x0F) << 8 | usize::from(lo));
    end <= payload.len() && payload.get(end).is_none_or(|&b| b == 0xFF)
}

/// State and counters of the table and PID checks.
#[derive(Clone, Debug)]
pub(super) struct Checks {
    pat: Watch,
    /// PMT PIDs of the current PAT, ascending.
    pmts: Vec<Watch>,
    /// Elementary PIDs of the current PMTs, ascending.
    streams: Vec<Watch>,
    key: TablesKey,
    repeats: Repeats,
    /// Time of the last chunk that carried data.
    last_data_ns: u64,
    next_presence_ns: u64,
    /// Earliest time at which any "missing" error can fall due.
    next_due_ns: u64,
    pub(super) pat_errors: u64,
    pub(super) pmt_errors: u64,
    pub(super) pid_errors: u64,
}

impl Checks {
    /// Checks of a stream whose first data arrived at `now_ns`.
    pub(super) fn new(now_ns: u64) -> Checks {
        let pat = Watch::new(Pid::PAT.value(), now_ns, 0);
        Checks {
            pat,
            pmts: Vec::new(),
            streams: Vec::new(),
            key: TablesKey::default(),
            repeats: Repeats::default(),
            last_data_ns: now_ns,
            next_presence_ns: now_ns,
            next_due_ns: pat.deadline(TABLE_LIMIT_NS),
            pat_errors: 0,
            pmt_errors: 0,
            pid_errors: 0,
        }
    }

    /// Brings the checks to `now_ns` (before the chunk that arrives then, if
    /// any): notes which elementary PIDs had packets since the last look
    /// and counts the errors fallen due.
    #[inline]
    pub(super) fn advance(&mut self, now_ns: u64, table: &PidTable) {
        if now_ns >= self.next_presence_ns || now_ns > self.next_due_ns {
            self.evaluate(now_ns, table);
        }
    }

    /// Notes that a chunk with data arrived at `now_ns`.
    #[inline]
    pub(super) fn data_at(&mut self, now_ns: u64) {
        self.last_data_ns = now_ns;
    }

    #[cold]
    fn evaluate(&mut self, now_ns: u64, table: &PidTable) {
        if now_ns >= self.next_presence_ns {
            for w in &mut self.streams {
                let packets = table.get(Pid::new(w.pid)).map_or(0, |e| e.packets);
                if packets != w.packets {
                    w.packets = packets;
                    // The packets came with some chunk since the last look:
                    // the last one is the latest they can have arrived.
                    w.seen(self.last_data_ns);
                }
            }
            self.next_presence_ns = now_ns.saturating_add(PRESENCE_STEP_NS);
        }
        self.pat_errors += self.pat.overdue(now_ns, TABLE_LIMIT_NS);
        let mut next = self.pat.deadline(TABLE_LIMIT_NS);
        for w in &mut self.pmts {
            self.pmt_errors += w.overdue(now_ns, TABLE_LIMIT_NS);
            next = next.min(w.deadline(TABLE_LIMIT_NS));
        }
        for w in &mut self.streams {
            self.pid_errors += w.overdue(now_ns, PID_LIMIT_NS);
            next = next.min(w.deadline(PID_LIMIT_NS));
        }
        self.next_due_ns = next;
    }

    /// A payload sink that checks PAT and PMT packets at `now_ns` and
    /// passes every wanted packet on to `psi`.
    pub(super) fn sink<'a>(&'a mut self, psi: &'a mut Psi, now_ns: u64) -> TableSink<'a> {
        TableSink { checks: self, psi, now_ns }
    }

    /// After a packet of `pid` was parsed: if the tables in `psi` changed,
    /// rebuilds the watch lists, keeping the state of PIDs still listed;
    /// new ones start their clocks now.
    fn follow_tables(&mut self, pid: u16, psi: &Psi, table: &PidTable, now_ns: u64) {
        let key = TablesKey::of(psi);
        if key == self.key {
            return;
        }
        self.key = key;
        self.repeats.forget_others(pid);
        let pmt_pids = psi.programs().map(|(_, pid, _)| pid.value());
        self.pmts = rebuild(&self.pmts, pmt_pids, now_ns, |_| 0);
        let es_pids = psi.programs().filter_map(|p| p.2).flat_map(|pmt| pmt.streams.iter().map(|es| es.pid.value()));
        self.streams = rebuild(&self.streams, es_pids, now_ns, |pid| table.get(Pid::new(pid)).map_or(0, |e| e.packets));
        // New clocks may fall due before the old earliest deadline.
        self.next_due_ns = self.next_due_ns.min(now_ns.saturating_add(TABLE_LIMIT_NS));
    }

    /// PIDs whose PMT is watched, ascending.
    #[cfg(test)]
    pub(super) fn pmt_pids(&self) -> Vec<u16> {
        self.pmts.iter().map(|w| w.pid).collect()
    }

    /// Table packets not parsed again.
    #[cfg(test)]
    pub(super) fn repeats_skipped(&self) -> u64 {
        self.repeats.skipped
    }

    /// Elementary PIDs watched, ascending.
    #[cfg(test)]
    pub(super) fn stream_pids(&self) -> Vec<u16> {
        self.streams.iter().map(|w| w.pid).collect()
    }
}

/// The watch list for `pids` (any order, duplicates allowed): old entries
/// kept, new ones started at `now_ns` with their current packet count.
fn rebuild(old: &[Watch], pids: impl Iterator<Item = u16>, now_ns: u64, packets: impl Fn(u16) -> u64) -> Vec<Watch> {
    let mut pids: Vec<u16> = pids.collect();
    pids.sort_unstable();
    pids.dedup();
    pids.into_iter()
        .map(|pid| match old.binary_search_by_key(&pid, |w| w.pid) {
            Ok(i) => old[i],
            Err(_) => Watch::new(pid, now_ns, packets(pid)),
        })
        .collect()
}

/// The table_id at the pointer_field target of a packet with
/// payload_unit_start.
fn first_table_id(pkt: &TsPacket<'_>) -> Option<u8> {
    if !pkt.payload_unit_start() {
        return None;
    }
    let payload = pkt.payload()?;
    let pointer = usize::from(*payload.first()?);
    payload.get(1 + pointer).copied()
}

/// Sees the packets the PSI parser wants (PAT, PMTs, streams it sniffs).
pub(super) struct TableSink<'a> {
    checks: &'a mut Checks,
    psi: &'a mut Psi,
    now_ns: u64,
}

impl PayloadSink for TableSink<'_> {
    fn payload_packet(&mut self, pkt: TsPacket<'_>, _: u64, table: &mut PidTable) {
        let pid = pkt.pid();
        let scrambled = pkt.bytes()[3] & 0xC0 != 0;
        let checks = &mut *self.checks;
        let table_pid;
        if pid == Pid::PAT {
            if scrambled {
                checks.pat_errors += 1;
            } else {
                match first_table_id(&pkt) {
                    Some(0x00) => checks.pat.seen(self.now_ns),
                    Some(0xFF) | None => {}
                    Some(_) => checks.pat_errors += 1,
                }
            }
            table_pid = true;
        } else if let Ok(i) = checks.pmts.binary_search_by_key(&pid.value(), |w| w.pid) {
            if scrambled {
                checks.pmt_errors += 1;
            } else if first_table_id(&pkt) == Some(0x02) {
                checks.pmts[i].seen(self.now_ns);
            }
            table_pid = true;
        } else {
            table_pid = false;
        }
        if !table_pid {
            self.psi.push(&pkt, table);
        } else if !checks.repeats.is_repeat(&pkt) {
            self.psi.push(&pkt, table);
            // At once, so the next packet is judged by the new tables.
            checks.follow_tables(pid.value(), self.psi, table, self.now_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fires_once_per_full_period() {
        let mut w = Watch::new(0, 1_000, 0);
        assert_eq!(w.overdue(1_000 + TABLE_LIMIT_NS, TABLE_LIMIT_NS), 0, "exactly the limit is not over it");
        assert_eq!(w.overdue(1_001 + TABLE_LIMIT_NS, TABLE_LIMIT_NS), 1);
        assert_eq!(w.overdue(1_000 + 2 * TABLE_LIMIT_NS, TABLE_LIMIT_NS), 0);
        assert_eq!(w.overdue(1_000 + 7 * TABLE_LIMIT_NS / 2, TABLE_LIMIT_NS), 2);
        assert_eq!(w.deadline(TABLE_LIMIT_NS), 1_000 + 4 * TABLE_LIMIT_NS);
        w.seen(5 * TABLE_LIMIT_NS);
        assert_eq!(w.overdue(5 * TABLE_LIMIT_NS + 1, TABLE_LIMIT_NS), 0);
        assert_eq!(w.overdue(u64::MAX, 1), u64::MAX - 5 * TABLE_LIMIT_NS - 1);
    }
}
