//! MPTS program filter and PID allow-list on the passthrough path.
//!
//! [`TsFilter`] takes chunks of whole 188-byte packets and hands back what
//! passes as `Bytes`: runs of consecutive kept packets are slices of the
//! input chunk (no copy); the one thing it makes is the rewritten PAT.
//!
//! With `program=N` ([`FilterSpec::program`]) it follows the PAT
//! (ISO/IEC 13818-1 §2.4.4.3, any number of sections and packets, version
//! changes) to find program N's PMT PID, and that PMT (§2.4.4.8) to find the
//! program's elementary streams and PCR PID. What passes:
//! - a rewritten PAT in place of each input PAT that completes section 0 or
//!   a new PAT version: one section listing only program N (or no program
//!   while N is missing from the input PAT), with its own version (bumped
//!   whenever its content changes) and its own continuity counter
//!   (continuous across the whole output);
//! - the PMT PID, from the moment the PAT names it (so the first PMT
//!   reaches downstream whole);
//! - once the PMT is known: the streams, the PCR PID and, unless
//!   [`FilterSpec::si`] is false, the DVB SI PIDs 0x10..=0x14.
//!
//! Everything else is dropped and counted; null packets (0x1FFF) are always
//! dropped under a program filter. A PAT that moves the PMT PID starts over
//! at "PMT unknown"; a PMT version change takes effect from the packet that
//! completes it. `pids=` ([`FilterSpec::pids`]) is applied after the program
//! filter, to every packet including the rewritten PAT: a packet passes only
//! when its PID is listed. Without `program=`, it is a plain allow-list and
//! no table is parsed.
//!
//! What it does not: split a PMT PID shared by several programs (the other
//! programs' PMT sections pass along, which decoders ignore as they are not
//! in the PAT), rewrite the PMT, or touch the continuity counters of
//! passed packets (a PID that is dropped and passed again shows a gap).
//!
//! Invariants: every input packet is counted as passed or dropped
//! (`packets_in == packets_passed + packets_dropped`); output is whole
//! packets; memory is bounded by two section assemblers (1 KiB each), one
//! PMT and one 16-packet PAT buffer; no input panics the filter. Per packet
//! the work is a sync check, a PID read and a lookup in an 8192-bit set.

use bytes::Bytes;

use super::packet::{PACKET_LEN, Pid, TsPacket};
use super::psi::{self, Pmt, SectionAssembler};

/// Most distinct PIDs a `pids=` allow-list may name.
pub const MAX_ALLOWED_PIDS: usize = 64;
/// DVB SI PIDs (NIT, SDT/BAT, EIT, RST, TDT/TOT; ETSI EN 300 468 §5.1.3)
/// that pass with a program unless `si=0`.
const SI_PIDS: std::ops::RangeInclusive<u16> = 0x10..=0x14;

/// What a filter keeps: the checked `program=`, `si=` and `pids=` options.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FilterSpec {
    /// `program=N`: keep only program N of an MPTS (1..=65535).
    pub program: Option<u16>,
    /// `si=`: with a program, also keep the SI PIDs 0x10..=0x14 (default true).
    pub si: bool,
    /// `pids=`: the allow-list, sorted and without repeats, at most
    /// [`MAX_ALLOWED_PIDS`].
    pub pids: Option<Vec<Pid>>,
}

impl Default for FilterSpec {
    fn default() -> Self {
        FilterSpec { program: None, si: true, pids: None }
    }
}

impl FilterSpec {
    /// Whether the filter would pass every packet unchanged, so callers can
    /// leave it out of the path.
    pub fn is_passthrough(&self) -> bool {
        self.program.is_none() && self.pids.is_none()
    }
}

/// What a [`TsFilter`] did, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FilterCounters {
    /// Packets fed, a trailing fragment of a chunk counted as one.
    pub packets_in: u64,
    /// Input packets passed unchanged.
    pub packets_passed: u64,
    /// Input packets not passed: unselected, replaced (input PATs under a
    /// program filter) or bad.
    pub packets_dropped: u64,
    /// Of the dropped: no sync byte, or a trailing fragment of under 188 bytes.
    pub bad_packets: u64,
    /// Of the dropped: dropped while the program's PAT entry or PMT was not
    /// known yet.
    pub awaiting_tables: u64,
    /// Of the dropped: dropped while the PAT did not list the program.
    pub program_missing: u64,
    /// Rewritten PAT packets emitted.
    pub pats_rewritten: u64,
    /// Input PAT versions applied after the first.
    pub pat_changes: u64,
    /// PMT versions of the program applied after the first for its PID.
    pub pmt_changes: u64,
    /// PAT or PMT sections dropped for a bad CRC, length or header.
    pub section_errors: u64,
}

/// A set of PIDs, one bit each.
#[derive(Clone, Debug, PartialEq, Eq)]
struct PidSet([u64; Pid::COUNT / 64]);

impl PidSet {
    const EMPTY: PidSet = PidSet([0; Pid::COUNT / 64]);
    const ALL: PidSet = PidSet([u64::MAX; Pid::COUNT / 64]);

    fn contains(&self, pid: Pid) -> bool {
        self.0[pid.index() / 64] & (1 << (pid.index() % 64)) != 0
    }

    fn insert(&mut self, pid: Pid) {
        self.0[pid.index() / 64] |= 1 << (pid.index() % 64);
    }

    fn remove(&mut self, pid: Pid) {
        self.0[pid.index() / 64] &= !(1 << (pid.index() % 64));
    }

    fn intersect(&mut self, other: &PidSet) {
        for (word, o) in self.0.iter_mut().zip(other.0.iter()) {
            *word &= o;
        }
    }
}

/// Why packets that are not kept are dropped, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropReason {
    /// Not selected (or no program filter at all).
    Unselected,
    /// The PAT entry or the PMT of the program is not known yet.
    AwaitingTables,
    /// The PAT does not list the program.
    ProgramMissing,
}

/// The applied PAT, as far as the program filter cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct PatView {
    transport_stream_id: u16,
    version: u8,
    /// The program's PMT PID; `None` when the PAT does not list it.
    pmt_pid: Option<Pid>,
}

/// The PAT this filter emits, one packet per continuity counter value.
#[derive(Clone, Debug)]
struct RewrittenPat {
    transport_stream_id: u16,
    pmt_pid: Option<Pid>,
    version: u8,
    /// The next continuity counter.
    cc: u8,
    /// 16 packets, identical but for their counter 0..=15, so that emitting
    /// one is a slice: allocation happens only when the content changes.
    packets: Bytes,
}

impl RewrittenPat {
    fn new(program: u16, pat: PatView, version: u8, cc: u8) -> RewrittenPat {
        let body = match pat.pmt_pid {
            Some(pid) => psi::pat_body(&[(program, pid.value())]),
            None => Vec::new(),
        };
        let section = psi::build_section(0x00, pat.transport_stream_id, version, &body);
        // A 16-byte section always fits one packet.
        let first = psi::packetize(&section, Pid::PAT, &mut 0).into_iter().next();
        let mut packets = Vec::with_capacity(16 * PACKET_LEN);
        if let Some(packet) = first {
            for counter in 0..16u8 {
                let mut p = packet;
                p[3] = (p[3] & 0xF0) | counter;
                packets.extend_from_slice(&p);
            }
        }
        RewrittenPat {
            transport_stream_id: pat.transport_stream_id,
            pmt_pid: pat.pmt_pid,
            version,
            cc,
            packets: Bytes::from(packets),
        }
    }

    /// The next packet, counter advanced.
    fn next_packet(&mut self) -> Option<Bytes> {
        let at = usize::from(self.cc) * PACKET_LEN;
        let packet = self.packets.get(at..at + PACKET_LEN).map(|_| self.packets.slice(at..at + PACKET_LEN));
        self.cc = (self.cc + 1) & 0x0F;
        packet
    }
}

/// PAT/PMT state of the program filter.
#[derive(Clone, Debug)]
struct ProgramTables {
    number: u16,
    pat_assembler: SectionAssembler,
    pat: Option<PatView>,
    /// (version, transport_stream_id) of the PAT being collected.
    pending_key: Option<(u8, u16)>,
    /// Section numbers of the pending PAT received so far.
    pending_seen: [u64; 4],
    /// (section_number, PMT PID) of pending sections that list the program.
    pending_found: Vec<(u8, Pid)>,
    pmt_assembler: SectionAssembler,
    pmt: Option<Pmt>,
    out: Option<RewrittenPat>,
}

impl ProgramTables {
    fn new(number: u16) -> ProgramTables {
        ProgramTables {
            number,
            pat_assembler: SectionAssembler::default(),
            pat: None,
            pending_key: None,
            pending_seen: [0; 4],
            pending_found: Vec::new(),
            pmt_assembler: SectionAssembler::default(),
            pmt: None,
            out: None,
        }
    }

    fn pmt_pid(&self) -> Option<Pid> {
        self.pat.and_then(|p| p.pmt_pid)
    }

    /// Feeds a PAT packet: the rewritten PAT to emit in its place, if any,
    /// and whether the tables changed.
    fn push_pat(&mut self, pkt: &TsPacket<'_>, counters: &mut FilterCounters) -> (Option<Bytes>, bool) {
        if pkt.transport_error() {
            return (None, false);
        }
        let (mut emit, mut changed) = (false, false);
        let mut assembler = std::mem::take(&mut self.pat_assembler);
        assembler.push(pkt, &mut |section| match section {
            Ok(section) => {
                let (e, c) = self.apply_pat_section(section, counters);
                emit |= e;
                changed |= c;
            }
            Err(_) => counters.section_errors += 1,
        });
        self.pat_assembler = assembler;
        let packet = if emit { self.out.as_mut().and_then(RewrittenPat::next_packet) } else { None };
        (packet, changed)
    }

    /// Applies one CRC-checked PAT section: whether a rewritten PAT is due
    /// (section 0 of the PAT in force, or a new PAT) and whether the tables
    /// changed.
    fn apply_pat_section(&mut self, section: &[u8], counters: &mut FilterCounters) -> (bool, bool) {
        let Some((header, body)) = psi::split_section(section) else {
            counters.section_errors += 1;
            return (false, false);
        };
        if header.table_id != 0x00 || !header.current {
            return (false, false);
        }
        if self.pat.is_some_and(|p| p.version == header.version && p.transport_stream_id == header.extension) {
            return (header.number == 0, false);
        }
        let key = (header.version, header.extension);
        if self.pending_key != Some(key) {
            self.pending_key = Some(key);
            self.pending_seen = [0; 4];
            self.pending_found.clear();
        }
        let number = header.number;
        self.pending_seen[usize::from(number / 64)] |= 1 << (number % 64);
        self.pending_found.retain(|e| e.0 != number);
        // Duplicates keep the first entry, as `Psi` does.
        if let Some((_, pid)) = psi::pat_entries(body).find(|e| e.0 == self.number) {
            self.pending_found.push((number, pid));
        }
        let seen = |n: u8| self.pending_seen[usize::from(n / 64)] & (1 << (n % 64)) != 0;
        if !(0..=header.last_number).all(seen) {
            return (false, false);
        }
        let pmt_pid = self.pending_found.iter().filter(|e| e.0 <= header.last_number).min_by_key(|e| e.0).map(|e| e.1);
        let pat = PatView { transport_stream_id: header.extension, version: header.version, pmt_pid };
        self.pending_key = None;
        self.pending_found.clear();
        if let Some(old) = self.pat.replace(pat) {
            counters.pat_changes += 1;
            if old.pmt_pid != pmt_pid {
                self.pmt = None;
                self.pmt_assembler = SectionAssembler::default();
            }
        }
        let (version, cc) = match &self.out {
            Some(o) if o.transport_stream_id == pat.transport_stream_id && o.pmt_pid == pat.pmt_pid => {
                return (true, true);
            }
            Some(o) => ((o.version + 1) & 0x1F, o.cc),
            // The first rewritten PAT takes the input's version, so a
            // stable input keeps its number.
            None => (header.version, 0),
        };
        self.out = Some(RewrittenPat::new(self.number, pat, version, cc));
        (true, true)
    }

    /// Feeds a packet of the PMT PID; whether the PMT changed.
    fn push_pmt(&mut self, pkt: &TsPacket<'_>, counters: &mut FilterCounters) -> bool {
        if pkt.transport_error() {
            return false;
        }
        let pid = pkt.pid();
        let mut changed = false;
        let mut assembler = std::mem::take(&mut self.pmt_assembler);
        assembler.push(pkt, &mut |section| match section {
            Ok(section) => changed |= self.apply_pmt_section(pid, section, counters),
            Err(_) => counters.section_errors += 1,
        });
        self.pmt_assembler = assembler;
        changed
    }

    fn apply_pmt_section(&mut self, pid: Pid, section: &[u8], counters: &mut FilterCounters) -> bool {
        let Some((header, body)) = psi::split_section(section) else {
            counters.section_errors += 1;
            return false;
        };
        if header.table_id != 0x02 || !header.current || header.extension != self.number {
            return false;
        }
        if self.pmt.as_ref().is_some_and(|p| p.version == header.version) {
            return false;
        }
        let Some(pmt) = psi::parse_pmt(pid, header, body) else {
            counters.section_errors += 1;
            return false;
        };
        if self.pmt.replace(pmt).is_some() {
            counters.pmt_changes += 1;
        }
        true
    }
}

/// The program filter and PID allow-list, sans I/O: chunks in, chunks out.
#[derive(Clone, Debug)]
pub struct TsFilter {
    spec: FilterSpec,
    /// PIDs whose packets pass unchanged (the PAT is never in it under a
    /// program filter: it is rewritten).
    keep: Box<PidSet>,
    /// The `pids=` allow-list.
    allow: Option<Box<PidSet>>,
    tables: Option<ProgramTables>,
    drop_reason: DropReason,
    counters: FilterCounters,
}

impl TsFilter {
    /// A filter for `spec`, knowing no table yet.
    pub fn new(spec: FilterSpec) -> TsFilter {
        let allow = spec.pids.as_ref().map(|pids| {
            let mut set = Box::new(PidSet::EMPTY);
            pids.iter().for_each(|&pid| set.insert(pid));
            set
        });
        let mut filter = TsFilter {
            tables: spec.program.map(ProgramTables::new),
            spec,
            keep: Box::new(PidSet::EMPTY),
            allow,
            drop_reason: DropReason::Unselected,
            counters: FilterCounters::default(),
        };
        filter.rebuild_keep();
        filter
    }

    /// The spec this filter applies.
    pub fn spec(&self) -> &FilterSpec {
        &self.spec
    }

    /// Counters since the filter was made.
    pub fn counters(&self) -> FilterCounters {
        self.counters
    }

    /// The program's PMT in force, under a program filter once known.
    pub fn pmt(&self) -> Option<&Pmt> {
        self.tables.as_ref().and_then(|t| t.pmt.as_ref())
    }

    /// Feeds a chunk of whole 188-byte packets; appends what passes to
    /// `out`: slices of `chunk` for runs of consecutive kept packets, new
    /// `Bytes` for rewritten PATs. Packets without the sync byte and a
    /// trailing fragment are dropped and counted as bad.
    pub fn push(&mut self, chunk: &Bytes, out: &mut Vec<Bytes>) {
        let whole = chunk.len() - chunk.len() % PACKET_LEN;
        let mut run: Option<usize> = None;
        let flush = |run: &mut Option<usize>, end: usize, out: &mut Vec<Bytes>| {
            if let Some(start) = run.take() {
                out.push(chunk.slice(start..end));
            }
        };
        for (index, bytes) in chunk[..whole].chunks_exact(PACKET_LEN).enumerate() {
            let at = index * PACKET_LEN;
            self.counters.packets_in += 1;
            let Some(pkt) = TsPacket::from_slice(bytes).filter(TsPacket::has_sync) else {
                flush(&mut run, at, out);
                self.counters.packets_dropped += 1;
                self.counters.bad_packets += 1;
                continue;
            };
            let pid = pkt.pid();
            if let Some(tables) = &mut self.tables {
                if pid == Pid::PAT {
                    flush(&mut run, at, out);
                    self.counters.packets_dropped += 1;
                    let (packet, changed) = tables.push_pat(&pkt, &mut self.counters);
                    if let Some(packet) = packet.filter(|_| self.allow.as_ref().is_none_or(|a| a.contains(Pid::PAT))) {
                        out.push(packet);
                        self.counters.pats_rewritten += 1;
                    }
                    if changed {
                        self.rebuild_keep();
                    }
                    continue;
                }
                if Some(pid) == tables.pmt_pid() && tables.push_pmt(&pkt, &mut self.counters) {
                    self.rebuild_keep();
                }
            }
            if self.keep.contains(pid) {
                self.counters.packets_passed += 1;
                run.get_or_insert(at);
            } else {
                flush(&mut run, at, out);
                self.counters.packets_dropped += 1;
                match self.drop_reason {
                    DropReason::Unselected => {}
                    DropReason::AwaitingTables => self.counters.awaiting_tables += 1,
                    DropReason::ProgramMissing => self.counters.program_missing += 1,
                }
            }
        }
        flush(&mut run, whole, out);
        if whole < chunk.len() {
            self.counters.packets_in += 1;
            self.counters.packets_dropped += 1;
            self.counters.bad_packets += 1;
        }
    }

    /// Recomputes the kept PIDs from the tables and the allow-list.
    fn rebuild_keep(&mut self) {
        let keep = &mut *self.keep;
        match &self.tables {
            None => {
                *keep = PidSet::ALL;
                self.drop_reason = DropReason::Unselected;
            }
            Some(tables) => {
                *keep = PidSet::EMPTY;
                self.drop_reason = match (tables.pat, &tables.pmt) {
                    (None, _) => DropReason::AwaitingTables,
                    (Some(PatView { pmt_pid: None, .. }), _) => DropReason::ProgramMissing,
                    (Some(PatView { pmt_pid: Some(pmt_pid), .. }), None) => {
                        keep.insert(pmt_pid);
                        DropReason::AwaitingTables
                    }
                    (Some(PatView { pmt_pid: Some(pmt_pid), .. }), Some(pmt)) => {
                        keep.insert(pmt_pid);
                        keep.insert(pmt.pcr_pid);
                        pmt.streams.iter().for_each(|es| keep.insert(es.pid));
                        if self.spec.si {
                            SI_PIDS.for_each(|pid| keep.insert(Pid::new(pid)));
                        }
                        DropReason::Unselected
                    }
                };
                keep.remove(Pid::PAT);
                keep.remove(Pid::NULL);
            }
        }
        if let Some(allow) = &self.allow {
            keep.intersect(allow);
        }
    }
}

#[cfg(test)]
mod tests;
