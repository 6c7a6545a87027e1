//! PAT and PMT: section reassembly, CRC check and table state
//! (ISO/IEC 13818-1 §2.4.4).
//!
//! ```text
//! section: table_id(8) | syntax(1) 0(1) rsv(2) section_length(12) |
//!          table_id_extension(16) | rsv(2) version(5) current_next(1) |
//!          section_number(8) | last_section_number(8) | body ... | CRC_32
//! ```
//!
//! A [`SectionAssembler`] per PID joins sections across packets (pointer_field,
//! several sections per packet, 0xFF stuffing); a section longer than 1024
//! bytes (the PAT/PMT limit) or failing its CRC is counted and dropped.
//! [`Psi`] keeps the newest complete PAT and the PMT of each program, and
//! tells the scanner which PIDs it needs ([`PidTable::set_wanted`]).

use std::collections::BTreeMap;

use crc::{CRC_32_MPEG_2, Crc};

use super::codec::{self, Descriptors};
use super::packet::{Pid, TsPacket};
use super::stats::PidTable;

pub(crate) const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_MPEG_2);
/// Largest PAT or PMT section, header included (section_length <= 1021).
const MAX_SECTION: usize = 1024;

/// Joins the sections of one PID from its packets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SectionAssembler {
    partial: Vec<u8>,
    /// Whether `partial` holds the beginning of a section.
    collecting: bool,
}

/// Receives each completed section, or the error that dropped it.
pub type SectionCallback<'a> = &'a mut dyn FnMut(Result<&[u8], SectionError>);

/// As [`SectionCallback`], with whether the section began in an earlier
/// packet than the one with payload_unit_start that ended it.
pub(crate) type MarkedSectionCallback<'a> = &'a mut dyn FnMut(Result<&[u8], SectionError>, bool);

/// What went wrong with a section; counted by [`Psi`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SectionError {
    /// The CRC_32 did not match.
    Crc,
    /// The section declared more than 1024 bytes or fewer than its header.
    Length,
}

impl SectionAssembler {
    /// Feeds one packet's payload; calls `on_section` with every section it
    /// completes (CRC checked, CRC bytes included) or the error that dropped it.
    pub fn push(&mut self, pkt: &TsPacket<'_>, on_section: SectionCallback<'_>) {
        self.push_marked(pkt, &mut |section, _| on_section(section));
    }

    /// As [`SectionAssembler::push`], also telling for each section whether
    /// it ended in the bytes before the pointer_field target of a packet
    /// with payload_unit_start (`true`: it began in an earlier packet), so a
    /// caller can tell which packets carried it.
    pub(crate) fn push_marked(&mut self, pkt: &TsPacket<'_>, on_section: MarkedSectionCallback<'_>) {
        let Some(payload) = pkt.payload() else { return };
        let mut data = payload;
        if pkt.payload_unit_start() {
            let Some((&pointer, rest)) = payload.split_first() else {
                return;
            };
            let pointer = usize::from(pointer);
            let (tail, starts) = rest.split_at(pointer.min(rest.len()));
            if self.collecting {
                self.extend(tail, &mut |section| on_section(section, true));
            }
            self.partial.clear();
            self.collecting = pointer <= rest.len();
            data = starts;
        } else if !self.collecting {
            return;
        }
        self.extend(data, &mut |section| on_section(section, false));
    }

    /// Appends bytes, emitting each section as soon as it is whole.
    fn extend(&mut self, mut data: &[u8], on_section: SectionCallback<'_>) {
        while self.collecting && !data.is_empty() {
            if self.partial.is_empty() && data[0] == 0xFF {
                // Stuffing: nothing more in this packet.
                self.collecting = false;
                return;
            }
            let need = match self.declared_len() {
                Some(len) => len - self.partial.len(),
                None => 3 - self.partial.len(),
            };
            let take = need.min(data.len());
            self.partial.extend_from_slice(&data[..take]);
            data = &data[take..];
            let Some(len) = self.declared_len() else {
                continue;
            };
            if !(3 + 5 + 4..=MAX_SECTION).contains(&len) {
                on_section(Err(SectionError::Length));
                self.partial.clear();
                self.collecting = false;
                return;
            }
            if self.partial.len() == len {
                let (body, crc) = self.partial.split_at(len - 4);
                let crc_ok = crc.try_into().map(u32::from_be_bytes).ok() == Some(CRC32.checksum(body));
                on_section(if crc_ok { Ok(&self.partial) } else { Err(SectionError::Crc) });
                self.partial.clear();
            }
        }
    }

    /// Total length of the section being collected, once its header is in.
    fn declared_len(&self) -> Option<usize> {
        let &[_, hi, lo, ..] = self.partial.as_slice() else {
            return None;
        };
        Some(3 + (usize::from(hi & 0x0F) << 8 | usize::from(lo)))
    }
}

/// The long-form header fields of a section.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SectionHeader {
    pub(crate) table_id: u8,
    /// transport_stream_id (PAT) or program_number (PMT).
    pub(crate) extension: u16,
    pub(crate) version: u8,
    /// current_next_indicator.
    pub(crate) current: bool,
    pub(crate) number: u8,
    pub(crate) last_number: u8,
}

/// Splits a CRC-checked section into header and body (without CRC).
pub(crate) fn split_section(section: &[u8]) -> Option<(SectionHeader, &[u8])> {
    let header = section.get(..8)?;
    if header[1] & 0x80 == 0 {
        return None;
    }
    let body = section.get(8..section.len().checked_sub(4)?)?;
    Some((
        SectionHeader {
            table_id: header[0],
            extension: u16::from_be_bytes([header[3], header[4]]),
            version: (header[5] >> 1) & 0x1F,
            current: header[5] & 1 != 0,
            number: header[6],
            last_number: header[7],
        },
        body,
    ))
}

/// One elementary stream of a program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EsInfo {
    /// The stream's PID.
    pub pid: Pid,
    /// stream_type from the PMT.
    pub stream_type: u8,
    /// The codec ffprobe would name, once known (see [`codec`]).
    pub codec: Option<&'static str>,
    /// ISO 639 language, when a descriptor gives one.
    pub language: Option<String>,
    /// Raw ES_info descriptors.
    pub descriptors: Vec<u8>,
}

/// A program's map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pmt {
    /// program_number.
    pub program_number: u16,
    /// The PID carrying this PMT.
    pub pmt_pid: Pid,
    /// The PID carrying the program's PCR (0x1FFF: none).
    pub pcr_pid: Pid,
    /// version_number of the section.
    pub version: u8,
    /// Raw program_info descriptors.
    pub descriptors: Vec<u8>,
    /// Streams in PMT order.
    pub streams: Vec<EsInfo>,
}

/// The program association.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Pat {
    /// transport_stream_id.
    pub transport_stream_id: u16,
    /// version_number.
    pub version: u8,
    /// (program_number, PMT PID) in PAT order, program 0 excluded.
    pub programs: Vec<(u16, Pid)>,
    /// The network PID from program 0, if listed.
    pub network_pid: Option<Pid>,
}

/// PSI counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PsiCounters {
    /// Sections dropped for a bad CRC.
    pub crc_errors: u64,
    /// Sections dropped for an impossible length or header.
    pub malformed_sections: u64,
    /// PAT versions applied after the first.
    pub pat_changes: u64,
    /// PMT versions applied after each program's first.
    pub pmt_changes: u64,
}

/// PAT/PMT state of one transport stream.
#[derive(Clone, Debug, Default)]
pub struct Psi {
    /// One assembler per table PID; a handful, so a vector beats a map.
    assemblers: Vec<(Pid, SectionAssembler)>,
    pat: Option<Pat>,
    /// PAT sections of the version being collected, by section_number.
    pat_pending: BTreeMap<u8, Vec<(u16, Pid)>>,
    pat_pending_version: Option<u8>,
    pmts: BTreeMap<u16, Pmt>,
    /// PIDs of private streams still waiting for a PES start to sniff.
    sniffing: BTreeMap<Pid, u16>,
    /// Follow only PAT and PMTs: no private stream is sniffed, so the
    /// wanted PIDs are exactly the table PIDs.
    tables_only: bool,
    counters: PsiCounters,
}

impl Psi {
    /// A fresh state that wants the PAT.
    pub fn new(table: &mut PidTable) -> Psi {
        table.set_wanted(Pid::PAT, true);
        Psi::default()
    }

    /// A fresh state that follows only the PAT and PMTs: codecs stay as
    /// the PMT's stream types name them (no private stream is sniffed for
    /// its audio codec), and no elementary PID is ever wanted. For users
    /// that need the tables, not the codec names, and look at every
    /// packet of the wanted PIDs: a private stream that never starts a PES
    /// would otherwise stay wanted for good.
    pub fn tables_only(table: &mut PidTable) -> Psi {
        table.set_wanted(Pid::PAT, true);
        Psi { tables_only: true, ..Psi::default() }
    }

    /// The newest PAT.
    pub fn pat(&self) -> Option<&Pat> {
        self.pat.as_ref()
    }

    /// Programs in PAT order with their PMTs (when received).
    pub fn programs(&self) -> impl Iterator<Item = (u16, Pid, Option<&Pmt>)> {
        self.pat
            .iter()
            .flat_map(|pat| pat.programs.iter())
            .map(|&(number, pid)| (number, pid, self.pmts.get(&number).filter(|p| p.pmt_pid == pid)))
    }

    /// Counters.
    pub fn counters(&self) -> PsiCounters {
        self.counters
    }

    /// The same tables and parser state with counters at zero, to follow a
    /// later part of the stream from here.
    pub fn fork(&self) -> Psi {
        Psi { counters: PsiCounters::default(), ..self.clone() }
    }

    /// Whether `other` holds the same tables and parser state, counters
    /// aside: then both react to any further packets alike.
    pub fn same_state(&self, other: &Psi) -> bool {
        let Psi { assemblers, pat, pat_pending, pat_pending_version, pmts, sniffing, tables_only, counters: _ } = self;
        *assemblers == other.assemblers
            && *pat == other.pat
            && *pat_pending == other.pat_pending
            && *pat_pending_version == other.pat_pending_version
            && *pmts == other.pmts
            && *sniffing == other.sniffing
            && *tables_only == other.tables_only
    }

    /// Continues with `later`, a [`Psi::fork`] of this state that followed
    /// the packets after the ones seen here: its tables, both counters.
    pub fn append(&mut self, later: Psi) {
        let mine = self.counters;
        *self = later;
        let c = &mut self.counters;
        c.crc_errors += mine.crc_errors;
        c.malformed_sections += mine.malformed_sections;
        c.pat_changes += mine.pat_changes;
        c.pmt_changes += mine.pmt_changes;
    }

    /// Feeds a packet of a wanted PID.
    pub fn push(&mut self, pkt: &TsPacket<'_>, table: &mut PidTable) {
        let pid = pkt.pid();
        if let Some(&program) = self.sniffing.get(&pid) {
            self.sniff(pkt, program, table);
            if !self.is_table_pid(pid) {
                return;
            }
        }
        let slot = match self.assemblers.iter().position(|(p, _)| *p == pid) {
            Some(slot) => slot,
            None => {
                self.assemblers.push((pid, SectionAssembler::default()));
                self.assemblers.len() - 1
            }
        };
        // Take the assembler out so sections can be applied to `self` as
        // they complete, without copying them.
        let mut assembler = std::mem::take(&mut self.assemblers[slot].1);
        assembler.push(pkt, &mut |section| match section {
            Ok(section) => self.apply(pid, section, table),
            Err(SectionError::Crc) => self.counters.crc_errors += 1,
            Err(SectionError::Length) => self.counters.malformed_sections += 1,
        });
        if let Some(entry) = self.assemblers.get_mut(slot) {
            entry.1 = assembler;
        }
    }

    fn is_table_pid(&self, pid: Pid) -> bool {
        pid == Pid::PAT || self.pat.iter().any(|pat| pat.programs.iter().any(|p| p.1 == pid))
    }

    fn apply(&mut self, pid: Pid, section: &[u8], table: &mut PidTable) {
        let Some((header, body)) = split_section(section) else {
            self.counters.malformed_sections += 1;
            return;
        };
        if !header.current {
            return;
        }
        match (pid, header.table_id) {
            (Pid::PAT, 0x00) => self.apply_pat(header, body, table),
            (_, 0x02) if self.is_table_pid(pid) => self.apply_pmt(pid, header, body, table),
            _ => {}
        }
    }

    fn apply_pat(&mut self, header: SectionHeader, body: &[u8], table: &mut PidTable) {
        if self.pat.as_ref().is_some_and(|p| p.version == header.version && p.transport_stream_id == header.extension) {
            return;
        }
        if self.pat_pending_version != Some(header.version) {
            self.pat_pending.clear();
            self.pat_pending_version = Some(header.version);
        }
        let entries = pat_entries(body).collect();
        self.pat_pending.insert(header.number, entries);
        if (0..=header.last_number).any(|n| !self.pat_pending.contains_key(&n)) {
            return;
        }
        let mut pat = Pat { transport_stream_id: header.extension, version: header.version, ..Pat::default() };
        for (number, pid) in std::mem::take(&mut self.pat_pending).into_values().flatten() {
            if number == 0 {
                // Duplicates keep the first entry, here as for programs.
                pat.network_pid.get_or_insert(pid);
            } else if !pat.programs.iter().any(|p| p.0 == number) {
                pat.programs.push((number, pid));
            }
        }
        if let Some(old) = self.pat.take() {
            self.counters.pat_changes += 1;
            for (_, pid) in old.programs {
                table.set_wanted(pid, false);
            }
        }
        for &(_, pid) in &pat.programs {
            table.set_wanted(pid, true);
        }
        table.set_wanted(Pid::PAT, true);
        self.pmts.retain(|number, pmt| pat.programs.contains(&(*number, pmt.pmt_pid)));
        self.pat = Some(pat);
        self.pat_pending_version = None;
    }

    fn apply_pmt(&mut self, pid: Pid, header: SectionHeader, body: &[u8], table: &mut PidTable) {
        let number = header.extension;
        let listed = self.pat.as_ref().is_some_and(|pat| pat.programs.contains(&(number, pid)));
        if !listed || self.pmts.get(&number).is_some_and(|p| p.version == header.version) {
            return;
        }
        let Some(pmt) = parse_pmt(pid, header, body) else {
            self.counters.malformed_sections += 1;
            return;
        };
        if self.pmts.insert(number, pmt).is_some() {
            self.counters.pmt_changes += 1;
        }
        self.sniffing.retain(|_, program| *program != number);
        if self.tables_only {
            return;
        }
        if let Some(pmt) = self.pmts.get(&number) {
            for es in pmt.streams.iter().filter(|es| codec::refined_by_content(es.codec)) {
                self.sniffing.insert(es.pid, number);
                table.set_wanted(es.pid, true);
            }
        }
    }

    /// Names a private stream from its first PES payload, then stops
    /// wanting its packets.
    fn sniff(&mut self, pkt: &TsPacket<'_>, program: u16, table: &mut PidTable) {
        if !pkt.payload_unit_start() {
            return;
        }
        let pid = pkt.pid();
        let found = pkt.payload().and_then(codec::pes_payload).and_then(codec::sniff);
        if let Some(es) = self.pmts.get_mut(&program).and_then(|p| p.streams.iter_mut().find(|es| es.pid == pid)) {
            es.codec = found.or(es.codec);
        }
        self.sniffing.remove(&pid);
        if !self.is_table_pid(pid) && pid != Pid::PAT {
            table.set_wanted(pid, false);
        }
    }
}

/// The (program_number, PID) entries of a PAT section body (after the
/// 8-byte header, without CRC); program 0 names the network PID.
pub(crate) fn pat_entries(body: &[u8]) -> impl Iterator<Item = (u16, Pid)> + '_ {
    body.chunks_exact(4).map(|e| (u16::from_be_bytes([e[0], e[1]]), Pid::new(u16::from_be_bytes([e[2], e[3]]))))
}

/// Parses a PMT body (after the 8-byte header, without CRC).
pub(crate) fn parse_pmt(pmt_pid: Pid, header: SectionHeader, body: &[u8]) -> Option<Pmt> {
    let (&[pcr_hi, pcr_lo, info_hi, info_lo], rest) = body.split_first_chunk::<4>()?;
    let info_len = usize::from(info_hi & 0x0F) << 8 | usize::from(info_lo);
    let descriptors = rest.get(..info_len)?;
    let registration = Descriptors::new(descriptors)
        .find(|(tag, body)| *tag == 0x05 && body.len() >= 4)
        .and_then(|(_, body)| body[..4].try_into().ok());
    let mut es_loop = &rest[info_len..];
    let mut streams = Vec::new();
    while let Some((&[stream_type, pid_hi, pid_lo, len_hi, len_lo], tail)) = es_loop.split_first_chunk::<5>() {
        let len = usize::from(len_hi & 0x0F) << 8 | usize::from(len_lo);
        let es_descriptors = tail.get(..len)?;
        streams.push(EsInfo {
            pid: Pid::new(u16::from_be_bytes([pid_hi, pid_lo])),
            stream_type,
            codec: codec::from_pmt(stream_type, es_descriptors, registration),
            language: codec::language(es_descriptors),
            descriptors: es_descriptors.to_vec(),
        });
        es_loop = &tail[len..];
    }
    Some(Pmt {
        program_number: header.extension,
        pmt_pid,
        pcr_pid: Pid::new(u16::from_be_bytes([pcr_hi, pcr_lo])),
        version: header.version,
        descriptors: descriptors.to_vec(),
        streams,
    })
}

/// Builds one section with a valid CRC; for tests and the fuzz corpus.
pub fn build_section(table_id: u8, extension: u16, version: u8, body: &[u8]) -> Vec<u8> {
    let len = 5 + body.len() + 4;
    let mut s = vec![table_id, 0xB0 | ((len >> 8) as u8 & 0x0F), len as u8];
    s.extend_from_slice(&extension.to_be_bytes());
    s.extend_from_slice(&[0xC1 | (version & 0x1F) << 1, 0, 0]);
    s.extend_from_slice(body);
    let crc = CRC32.checksum(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// A PAT body listing `(program_number, PID)` pairs; for tests and the
/// fuzz corpus.
pub fn pat_body(programs: &[(u16, u16)]) -> Vec<u8> {
    programs.iter().flat_map(|&(n, pid)| [(n >> 8) as u8, n as u8, 0xE0 | (pid >> 8) as u8, pid as u8]).collect()
}

/// A PMT body with PCR PID `pcr` and `(stream_type, PID, ES descriptors)`
/// streams, no program descriptors; for tests and the fuzz corpus.
pub fn pmt_body(pcr: u16, streams: &[(u8, u16, &[u8])]) -> Vec<u8> {
    let mut b = vec![0xE0 | (pcr >> 8) as u8, pcr as u8, 0xF0, 0];
    for &(st, pid, desc) in streams {
        b.extend_from_slice(&[st, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, desc.len() as u8]);
        b.extend_from_slice(desc);
    }
    b
}

/// Splits a section into packets of `pid` (pointer_field 0, 0xFF stuffing),
/// counters from `cc`; for tests and the fuzz corpus.
pub fn packetize(section: &[u8], pid: Pid, cc: &mut u8) -> Vec<[u8; 188]> {
    let mut packets = Vec::new();
    let mut rest = section;
    let mut first = true;
    while first || !rest.is_empty() {
        let mut p = [0xFFu8; 188];
        p[0] = 0x47;
        p[1] = (u8::from(first) << 6) | ((pid.value() >> 8) as u8);
        p[2] = pid.value() as u8;
        p[3] = 0x10 | (*cc & 0x0F);
        *cc = cc.wrapping_add(1) & 0x0F;
        let start = if first { 5 } else { 4 };
        if first {
            p[4] = 0;
        }
        let take = rest.len().min(188 - start);
        p[start..start + take].copy_from_slice(&rest[..take]);
        rest = &rest[take..];
        first = false;
        packets.push(p);
    }
    packets
}

#[cfg(test)]
mod tests;
