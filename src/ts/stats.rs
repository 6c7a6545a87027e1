//! Per-PID statistics and the reference per-packet rules.
//!
//! [`PidTable::account`] is the one definition of what a packet does to the
//! counters; the SIMD kernels only take shortcuts for packets whose outcome
//! they can prove equal (see `scan`). The rules:
//!
//! - Continuity (ISO/IEC 13818-1 §2.4.3.3): a packet with payload must carry
//!   the previous counter + 1 (mod 16); repeating the previous counter once is
//!   a legal duplicate, a second repeat is an error. A packet without payload
//!   must repeat the previous counter. A set discontinuity_indicator makes any
//!   counter legal. The null PID is never checked; neither is the first packet
//!   of a PID. After an error the received counter becomes the reference.
//! - A packet with transport_error_indicator set is counted (packets and
//!   `transport_errors`) but its header is not trusted any further: no
//!   continuity check, no PCR, no payload use.
//! - PCR: every PCR is recorded; an interval is the distance to the previous
//!   PCR of the same PID unless it goes backwards, exceeds one second or
//!   straddles a discontinuity_indicator. Intervals above 40 ms are violations
//!   (TR 101 290 §5.2.2, PCR_repetition_error).

use super::packet::{Cc, Pcr, Pid, TsPacket};

/// Longest PCR interval that still counts toward the bitrate.
const PCR_PAIR_MAX_TICKS: u64 = Pcr::HZ;
/// TR 101 290 PCR repetition limit, 40 ms.
const PCR_REPETITION_LIMIT_TICKS: u64 = Pcr::HZ / 25;
/// Marks a PID whose continuity counter has not been seen yet.
const NO_CC: u8 = 0xFF;

/// PCR observations of one PID.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PcrStats {
    /// PCRs seen.
    pub count: u64,
    /// The first PCR seen.
    pub first: Option<Pcr>,
    /// The last PCR seen and the index of its packet in the stream.
    pub last: Option<(Pcr, u64)>,
    /// Shortest valid interval, in 27 MHz ticks.
    pub min_interval_ticks: Option<u64>,
    /// Longest valid interval, in 27 MHz ticks.
    pub max_interval_ticks: Option<u64>,
    /// Valid intervals longer than 40 ms.
    pub interval_violations: u64,
    /// Sum of valid intervals, in 27 MHz ticks.
    pub timed_ticks: u64,
    /// Packets spanned by the valid intervals.
    pub timed_packets: u64,
    /// A discontinuity_indicator was seen since the last PCR.
    discontinuity_pending: bool,
    /// Packet index of the first PCR and whether an interval ending there
    /// would straddle a discontinuity: what [`PidTable::append`] needs to
    /// time the pair across a seam.
    first_index: u64,
    first_straddles: bool,
}

impl PcrStats {
    pub(crate) fn record(&mut self, pcr: Pcr, packet_index: u64, discontinuity: bool) {
        self.count += 1;
        let straddles = discontinuity || self.discontinuity_pending;
        match self.last {
            Some((prev, prev_index)) => self.time_pair(prev, prev_index, pcr, packet_index, straddles),
            None => {
                self.first = Some(pcr);
                self.first_index = packet_index;
                self.first_straddles = straddles;
            }
        }
        self.last = Some((pcr, packet_index));
        self.discontinuity_pending = false;
    }

    /// Counts the interval between two successive PCRs when it is valid.
    fn time_pair(&mut self, prev: Pcr, prev_index: u64, pcr: Pcr, packet_index: u64, straddles: bool) {
        let delta = pcr.ticks_since(prev);
        if !straddles && delta > 0 && delta <= PCR_PAIR_MAX_TICKS {
            self.min_interval_ticks = Some(self.min_interval_ticks.map_or(delta, |m| m.min(delta)));
            self.max_interval_ticks = Some(self.max_interval_ticks.map_or(delta, |m| m.max(delta)));
            if delta > PCR_REPETITION_LIMIT_TICKS {
                self.interval_violations += 1;
            }
            self.timed_ticks += delta;
            self.timed_packets += packet_index - prev_index;
        }
    }

    /// Continues these observations with `later`'s, made on the packets
    /// that follow, whose indices start at `index_offset`.
    fn append(&mut self, later: &PcrStats, index_offset: u64) {
        let Some((later_last, later_last_index)) = later.last else {
            self.discontinuity_pending |= later.discontinuity_pending;
            return;
        };
        let later_first = later.first.unwrap_or(later_last);
        let first_index = later.first_index + index_offset;
        match self.last {
            Some((prev, prev_index)) => {
                let straddles = later.first_straddles || self.discontinuity_pending;
                self.time_pair(prev, prev_index, later_first, first_index, straddles);
            }
            None => {
                self.first = Some(later_first);
                self.first_index = first_index;
                self.first_straddles = later.first_straddles || self.discontinuity_pending;
            }
        }
        self.count += later.count;
        self.interval_violations += later.interval_violations;
        self.timed_ticks += later.timed_ticks;
        self.timed_packets += later.timed_packets;
        for (mine, theirs, pick) in [
            (&mut self.min_interval_ticks, later.min_interval_ticks, u64::min as fn(u64, u64) -> u64),
            (&mut self.max_interval_ticks, later.max_interval_ticks, u64::max),
        ] {
            *mine = match (*mine, theirs) {
                (Some(a), Some(b)) => Some(pick(a, b)),
                (a, b) => a.or(b),
            };
        }
        self.last = Some((later_last, later_last_index + index_offset));
        self.discontinuity_pending = later.discontinuity_pending;
    }

    /// Bits per second of the whole stream as timed by this PID's PCRs,
    /// counting 188 bytes per packet.
    pub fn bitrate_bps(&self) -> Option<u64> {
        if self.timed_ticks == 0 {
            return None;
        }
        let bits = u128::from(self.timed_packets) * 188 * 8;
        Some((bits * u128::from(Pcr::HZ) / u128::from(self.timed_ticks)) as u64)
    }
}

/// Counters of one PID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PidStats {
    /// The PID these counters belong to.
    pub pid: Pid,
    /// Packets seen, whatever their state.
    pub packets: u64,
    /// Continuity counter errors.
    pub cc_errors: u64,
    /// Packets with transport_error_indicator set.
    pub transport_errors: u64,
    /// Packets with discontinuity_indicator set.
    pub discontinuities: u64,
    /// Packets with non-zero transport_scrambling_control.
    pub scrambled: u64,
    /// PCR observations.
    pub pcr: PcrStats,
    pub(crate) last_cc: u8,
    pub(crate) duplicate_seen: bool,
    /// The packet's payload is wanted by a parser (PSI, codec sniffing).
    pub(crate) wanted: bool,
    /// The first continuity events seen by this table, so that counters
    /// kept over a later part of a stream can be joined to an earlier
    /// part's ([`PidTable::append`]).
    pub(crate) opening: OpeningEvents,
}

/// What continuity checking needs to know of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CcEvent {
    cc: Cc,
    has_payload: bool,
    discontinuity: bool,
}

/// The opening of a PID's continuity events in one table.
///
/// Only the first two events depend on what came before: the first is
/// checked against the previous counter, and the second's verdict depends
/// on whether the first was a duplicate. From the third on, the state is
/// the table's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OpeningEvents {
    first: Option<CcEvent>,
    second: SecondEvent,
}

/// The second continuity event of a table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum SecondEvent {
    /// Not seen yet.
    #[default]
    None,
    /// A first duplicate of the first event (legal, unless the first event
    /// was itself a duplicate of what came before).
    Duplicate,
    /// Anything else.
    Other,
}

/// Judges one continuity event after `last` (the previous counter, if any)
/// and `duplicate_seen` (whether `last` was itself a repeat). Returns
/// whether it is an error and the new `duplicate_seen`. This is the rule of
/// the module doc.
fn judge_continuity(last: Option<Cc>, duplicate_seen: bool, ev: CcEvent) -> (bool, bool) {
    match last {
        None => (false, false),
        Some(_) if ev.discontinuity => (false, false),
        Some(last) if ev.has_payload => {
            if ev.cc == last {
                (duplicate_seen, true)
            } else {
                (!ev.cc.follows(last), false)
            }
        }
        Some(last) => (ev.cc != last, false),
    }
}

impl PidStats {
    fn new(pid: Pid) -> Self {
        PidStats {
            pid,
            packets: 0,
            cc_errors: 0,
            transport_errors: 0,
            discontinuities: 0,
            scrambled: 0,
            pcr: PcrStats::default(),
            last_cc: NO_CC,
            duplicate_seen: false,
            wanted: false,
            opening: OpeningEvents::default(),
        }
    }

    /// The continuity counter this PID expects next on a payload packet.
    pub(crate) fn last_cc(&self) -> Option<Cc> {
        (self.last_cc != NO_CC).then(|| Cc::new(self.last_cc))
    }

    fn check_continuity(&mut self, pkt: &TsPacket<'_>, discontinuity: bool) {
        let ev = CcEvent { cc: pkt.cc(), has_payload: pkt.has_payload(), discontinuity };
        let last = self.last_cc();
        let (error, duplicate) = judge_continuity(last, self.duplicate_seen, ev);
        if last.is_none() {
            self.opening.first = Some(ev);
        } else if self.opening.second == SecondEvent::None {
            self.opening.second = if duplicate { SecondEvent::Duplicate } else { SecondEvent::Other };
        }
        self.cc_errors += u64::from(error);
        self.duplicate_seen = duplicate;
        self.last_cc = ev.cc.value();
    }

    /// Notes that packets were taken in bulk (always "next counter", never
    /// a duplicate) after the first event.
    #[inline(always)]
    pub(crate) fn note_bulk_events(&mut self) {
        if self.opening.second == SecondEvent::None {
            self.opening.second = SecondEvent::Other;
        }
    }

    /// Continues these counters with `later`'s, kept over the packets that
    /// follow; `index_offset` is the stream index of `later`'s packet 0.
    fn append(&mut self, later: &PidStats, index_offset: u64) {
        self.packets += later.packets;
        self.transport_errors += later.transport_errors;
        self.discontinuities += later.discontinuities;
        self.scrambled += later.scrambled;
        self.cc_errors += later.cc_errors;
        self.wanted = later.wanted;
        self.pcr.append(&later.pcr, index_offset);
        let Some(first) = later.opening.first else {
            return;
        };
        // `later` took its first event without a check and its second
        // against a fresh duplicate state: redo both against ours.
        let (error, duplicate) = judge_continuity(self.last_cc(), self.duplicate_seen, first);
        self.cc_errors += u64::from(error);
        if later.opening.second == SecondEvent::Duplicate && duplicate {
            self.cc_errors += 1;
        }
        if self.last_cc().is_none() {
            self.opening = later.opening;
        } else if self.opening.second == SecondEvent::None {
            self.opening.second = if duplicate { SecondEvent::Duplicate } else { SecondEvent::Other };
        }
        self.last_cc = later.last_cc;
        self.duplicate_seen = match later.opening.second {
            SecondEvent::None => duplicate,
            _ => later.duplicate_seen,
        };
    }
}

/// Counters for every PID seen, indexed without hashing.
///
/// PIDs map to a dense vector through a 16 KiB slot table, so a stream that
/// uses ten PIDs holds ten entries, not 8192.
#[derive(Clone)]
pub struct PidTable {
    /// Entry index + 1 per PID; 0 means unseen.
    slots: Box<[u16; Pid::COUNT]>,
    entries: Vec<PidStats>,
}

impl Default for PidTable {
    fn default() -> Self {
        PidTable { slots: Box::new([0; Pid::COUNT]), entries: Vec::new() }
    }
}

impl PidTable {
    /// The entry of `pid`, created on first use.
    pub fn entry(&mut self, pid: Pid) -> &mut PidStats {
        let slot = self.slot(pid);
        &mut self.entries[slot]
    }

    /// The dense index of `pid`'s entry, created on first use.
    pub(crate) fn slot(&mut self, pid: Pid) -> usize {
        match self.slots[pid.index()] {
            0 => {
                self.entries.push(PidStats::new(pid));
                let slot = self.entries.len();
                // At most 8192 entries, so the index fits in u16.
                self.slots[pid.index()] = slot as u16;
                slot - 1
            }
            n => usize::from(n) - 1,
        }
    }

    /// The entry at a dense index returned by [`PidTable::slot`].
    pub(crate) fn at(&mut self, slot: usize) -> &mut PidStats {
        &mut self.entries[slot]
    }

    /// Counters of `pid`, if it was seen.
    pub fn get(&self, pid: Pid) -> Option<&PidStats> {
        match self.slots[pid.index()] {
            0 => None,
            n => self.entries.get(usize::from(n) - 1),
        }
    }

    /// Marks whether packets of `pid` must reach the payload sink.
    pub fn set_wanted(&mut self, pid: Pid, wanted: bool) {
        self.entry(pid).wanted = wanted;
    }

    /// PIDs marked wanted, ascending.
    pub fn wanted_pids(&self) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self.entries.iter().filter(|e| e.wanted).map(|e| e.pid).collect();
        pids.sort_by_key(|p| p.value());
        pids
    }

    /// All entries, in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = &PidStats> {
        self.entries.iter()
    }

    /// Continues these counters with `later`'s, kept over the packets that
    /// immediately follow the ones counted here (`later` starting from a
    /// fresh table, its packet indices from 0). The result equals counting
    /// all packets in one table.
    pub fn append(&mut self, later: &PidTable, packets_before: u64) {
        for theirs in &later.entries {
            let slot = self.slot(theirs.pid);
            self.entries[slot].append(theirs, packets_before);
        }
    }

    /// Applies one packet to the counters and returns its entry's slot.
    ///
    /// This is the reference behaviour every scanner must reproduce.
    pub fn account(&mut self, pkt: &TsPacket<'_>, packet_index: u64) -> usize {
        let slot = self.slot(pkt.pid());
        let entry = &mut self.entries[slot];
        entry.packets += 1;
        if pkt.transport_error() {
            entry.transport_errors += 1;
            return slot;
        }
        if pkt.bytes()[3] & 0xC0 != 0 {
            entry.scrambled += 1;
        }
        let af = pkt.adaptation_field();
        let discontinuity = af.is_some_and(|af| af.discontinuity());
        if discontinuity {
            entry.discontinuities += 1;
            entry.pcr.discontinuity_pending = true;
        }
        if entry.pid != Pid::NULL {
            entry.check_continuity(pkt, discontinuity);
        }
        if let Some(pcr) = af.and_then(|af| af.pcr()) {
            entry.pcr.record(pcr, packet_index, discontinuity);
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::PACKET_LEN;

    fn pkt(pid: u16, cc: u8, afc_bits: u8) -> [u8; PACKET_LEN] {
        let mut p = [0xFFu8; PACKET_LEN];
        p[0] = 0x47;
        p[1] = (pid >> 8) as u8 & 0x1F;
        p[2] = pid as u8;
        p[3] = (afc_bits << 4) | (cc & 0x0F);
        if afc_bits & 0b10 != 0 {
            p[4] = 1;
            p[5] = 0;
        }
        p
    }

    fn run(table: &mut PidTable, packets: &[[u8; PACKET_LEN]]) {
        for (i, p) in packets.iter().enumerate() {
            table.account(&TsPacket::new(p), i as u64);
        }
    }

    #[test]
    fn continuity_rules() {
        let mut t = PidTable::default();
        // 0,1,1 (one duplicate ok), 1 (second repeat: error), 2, adaptation-only
        // keeps 2, 4 (gap: error).
        run(
            &mut t,
            &[
                pkt(100, 0, 1),
                pkt(100, 1, 1),
                pkt(100, 1, 1),
                pkt(100, 1, 1),
                pkt(100, 2, 1),
                pkt(100, 2, 2),
                pkt(100, 4, 1),
            ],
        );
        let e = t.get(Pid::new(100)).unwrap();
        assert_eq!((e.packets, e.cc_errors), (7, 2));
    }

    #[test]
    fn discontinuity_resets_and_null_is_ignored() {
        let mut t = PidTable::default();
        let mut jump = pkt(100, 9, 3);
        jump[5] = 0x80;
        run(&mut t, &[pkt(100, 0, 1), jump, pkt(100, 10, 1), pkt(0x1FFF, 3, 1), pkt(0x1FFF, 3, 1)]);
        assert_eq!(t.get(Pid::new(100)).unwrap().cc_errors, 0);
        assert_eq!(t.get(Pid::new(100)).unwrap().discontinuities, 1);
        assert_eq!(t.get(Pid::NULL).unwrap().cc_errors, 0);
    }

    #[test]
    fn transport_error_is_counted_not_trusted() {
        let mut t = PidTable::default();
        let mut bad = pkt(100, 7, 1);
        bad[1] |= 0x80;
        run(&mut t, &[pkt(100, 0, 1), bad, pkt(100, 1, 1)]);
        let e = t.get(Pid::new(100)).unwrap();
        assert_eq!((e.packets, e.transport_errors, e.cc_errors), (3, 1, 0));
    }
}
