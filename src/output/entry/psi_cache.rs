//! The PAT and PMTs an output needs before its first packet, kept as copies
//! of the packets that carried them.
//!
//! [`Psi`] parses the tables (the same code `probe` uses); beside it, one
//! [`SectionAssembler`] per table PID notes which packets carried each
//! complete, current PAT (table 0 on PID 0) and PMT (table 2 on a PMT PID
//! the PAT lists) section. Those packets are copied (188 bytes each; PSI is
//! a few packets a second) so they can be sent again at an entry point.
//!
//! Bounds: at most [`MAX_TRACKS`] table PIDs, [`MAX_SECTIONS`] cached
//! sections and [`MAX_RUN`] packets per section; what does not fit is not
//! cached, so an entry point waits for it only up to the gate's bound.

use bytes::{Bytes, BytesMut};

use super::keyframe::VideoKind;
use crate::ts::packet::{PACKET_LEN, Pid, TsPacket};
use crate::ts::psi::{Psi, SectionAssembler, split_section};
use crate::ts::stats::PidTable;

/// Table PIDs followed: the PAT and up to 63 PMT PIDs.
const MAX_TRACKS: usize = 64;
/// Cached sections (PAT sections plus one per program).
const MAX_SECTIONS: usize = 256;
/// Packets per section: 1024 bytes span at most 6 packets, 7 when the first
/// also ends the previous section.
const MAX_RUN: usize = 8;

/// The stream an entry point waits for: the first video stream of the
/// first program that has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Video {
    pub(crate) pid: Pid,
    pub(crate) kind: VideoKind,
}

/// How much of the tables the cache holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Readiness {
    /// The newest PAT is known and its packets are cached.
    pub(crate) pat: bool,
    /// Programs the PAT lists.
    pub(crate) listed: usize,
    /// Of those, programs whose newest PMT is known and cached.
    pub(crate) cached: usize,
}

impl Readiness {
    /// PAT and every PMT are at hand.
    pub(crate) fn complete(&self) -> bool {
        self.pat && self.cached == self.listed
    }
}

/// One packet copy and its index in the input (to keep input order).
type PacketCopy = (u64, Bytes);

/// Assembly state of one table PID.
#[derive(Debug)]
struct Track {
    pid: Pid,
    assembler: SectionAssembler,
    /// Packets since the last payload_unit_start, while a section is open.
    run: Vec<PacketCopy>,
    /// Continuity counter of the last packet with payload on this PID.
    last_cc: Option<u8>,
}

/// A complete section and the packets that carried it.
#[derive(Debug)]
struct Cached {
    pid: Pid,
    table_id: u8,
    extension: u16,
    number: u8,
    version: u8,
    packets: Vec<PacketCopy>,
}

/// Copies of the packets carrying the current PAT and PMTs, rendered
/// with continuity counters that the live packets continue.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) packets: Vec<Bytes>,
    /// The PIDs the copies are on, PAT first.
    pub(crate) pids: Vec<Pid>,
}

/// Tables and packet copies of one stream.
pub(crate) struct PsiCache {
    psi: Psi,
    /// Which PIDs `psi` wants: the PAT and the PMTs (nothing is sniffed).
    table: PidTable,
    tracks: Vec<Track>,
    sections: Vec<Cached>,
    video: Option<Video>,
}

impl PsiCache {
    pub(crate) fn new() -> PsiCache {
        let mut table = PidTable::default();
        let psi = Psi::tables_only(&mut table);
        PsiCache { psi, table, tracks: Vec::new(), sections: Vec::new(), video: None }
    }

    /// The video stream entry points wait for, once a PMT names one.
    pub(crate) fn video(&self) -> Option<Video> {
        self.video
    }

    /// Feeds one packet with a sync byte; `seq` is its index in the input.
    /// Returns whether the cached tables changed.
    /// Whether packets of `pid` feed the tables (PAT, PMTs).
    pub(crate) fn wants(&self, pid: Pid) -> bool {
        self.table.get(pid).is_some_and(|e| e.wanted)
    }

    pub(crate) fn push(&mut self, pkt: &TsPacket<'_>, seq: u64) -> bool {
        let pid = pkt.pid();
        if !self.table.get(pid).is_some_and(|e| e.wanted) || pkt.transport_error() {
            return false;
        }
        self.psi.push(pkt, &mut self.table);
        let Some(slot) = self.track_slot(pid) else { return false };
        let track = &mut self.tracks[slot];
        if pkt.has_payload() {
            track.last_cc = Some(pkt.cc().value());
        }
        let copy = (seq, Bytes::copy_from_slice(pkt.bytes()));
        let previous = if pkt.payload_unit_start() {
            std::mem::replace(&mut track.run, vec![copy.clone()])
        } else {
            if !track.run.is_empty() {
                track.run.push(copy.clone());
                if track.run.len() > MAX_RUN {
                    track.run.clear();
                }
            }
            Vec::new()
        };
        let mut done: Vec<(Vec<u8>, Vec<PacketCopy>)> = Vec::new();
        let Track { assembler, run, .. } = track;
        assembler.push_marked(pkt, &mut |section, from_tail| {
            let Ok(section) = section else { return };
            let carriers = if from_tail {
                let mut all = previous.clone();
                all.push(copy.clone());
                all
            } else {
                run.clone()
            };
            if !carriers.is_empty() && carriers.len() <= MAX_RUN {
                done.push((section.to_vec(), carriers));
            }
        });
        let changed =
            done.into_iter().fold(false, |changed, (section, carriers)| self.store(pid, &section, carriers) | changed);
        if changed {
            self.video = self.find_video();
        }
        changed
    }

    /// The track of a table PID, created on its first packet.
    fn track_slot(&mut self, pid: Pid) -> Option<usize> {
        if let Some(slot) = self.tracks.iter().position(|t| t.pid == pid) {
            return Some(slot);
        }
        let listed = pid == Pid::PAT || self.psi.pat().is_some_and(|pat| pat.programs.iter().any(|p| p.1 == pid));
        if !listed || self.tracks.len() >= MAX_TRACKS {
            return None;
        }
        self.tracks.push(Track { pid, assembler: SectionAssembler::default(), run: Vec::new(), last_cc: None });
        Some(self.tracks.len() - 1)
    }

    /// Caches a current PAT or PMT section; whether the cache changed.
    fn store(&mut self, pid: Pid, section: &[u8], packets: Vec<PacketCopy>) -> bool {
        let Some((h, _)) = split_section(section) else { return false };
        let wanted_table = if pid == Pid::PAT { 0x00 } else { 0x02 };
        if !h.current || h.table_id != wanted_table {
            return false;
        }
        let same_table = |c: &Cached| c.pid == pid && c.table_id == h.table_id && c.extension == h.extension;
        // A new version replaces all sections of the old one.
        self.sections.retain(|c| !same_table(c) || c.version == h.version);
        let fresh =
            Cached { pid, table_id: h.table_id, extension: h.extension, number: h.number, version: h.version, packets };
        if let Some(old) = self.sections.iter_mut().find(|c| same_table(c) && c.number == h.number) {
            *old = fresh;
        } else if self.sections.len() < MAX_SECTIONS {
            self.sections.push(fresh);
        } else {
            return false;
        }
        true
    }

    fn find_video(&self) -> Option<Video> {
        self.psi
            .programs()
            .filter_map(|(_, _, pmt)| pmt)
            .find_map(|pmt| pmt.streams.iter().find_map(|es| VideoKind::of(es).map(|kind| Video { pid: es.pid, kind })))
    }

    /// The cached section `(pid, table_id, extension)` of `version`, if any.
    fn cached(&self, pid: Pid, table_id: u8, extension: Option<u16>, version: u8) -> impl Iterator<Item = &Cached> {
        self.sections.iter().filter(move |c| {
            c.pid == pid && c.table_id == table_id && extension.is_none_or(|e| e == c.extension) && c.version == version
        })
    }

    /// How far the tables are known and cached.
    pub(crate) fn readiness(&self) -> Readiness {
        let Some(pat) = self.psi.pat() else { return Readiness::default() };
        let mut r = Readiness {
            pat: self.cached(Pid::PAT, 0x00, None, pat.version).next().is_some(),
            listed: pat.programs.len(),
            cached: 0,
        };
        for (number, pid, pmt) in self.psi.programs() {
            if pmt.is_some_and(|pmt| self.cached(pid, 0x02, Some(number), pmt.version).next().is_some()) {
                r.cached += 1;
            }
        }
        r
    }

    /// Copies of the packets of the current PAT, then of each listed PMT,
    /// each PID's continuity counters ending at that of its last live packet.
    pub(crate) fn render(&self) -> Rendered {
        let mut rendered = Rendered { packets: Vec::new(), pids: Vec::new() };
        let Some(pat) = self.psi.pat() else { return rendered };
        let mut per_pid: Vec<(Pid, Vec<&PacketCopy>)> = Vec::new();
        let pat_copies = self.cached(Pid::PAT, 0x00, None, pat.version).flat_map(|c| &c.packets);
        per_pid.push((Pid::PAT, pat_copies.collect()));
        for (number, pid, pmt) in self.psi.programs() {
            let Some(pmt) = pmt else { continue };
            let copies = self.cached(pid, 0x02, Some(number), pmt.version).flat_map(|c| &c.packets);
            match per_pid.iter_mut().find(|(p, _)| *p == pid) {
                Some((_, list)) => list.extend(copies),
                None => per_pid.push((pid, copies.collect())),
            }
        }
        for (pid, mut copies) in per_pid {
            // Input order; a packet that carried two sections goes once.
            copies.sort_by_key(|c| c.0);
            copies.dedup_by_key(|c| c.0);
            if copies.is_empty() {
                continue;
            }
            let last_cc = self.tracks.iter().find(|t| t.pid == pid).and_then(|t| t.last_cc);
            let n = copies.len();
            for (i, (_, bytes)) in copies.into_iter().enumerate() {
                rendered.packets.push(match last_cc {
                    Some(last) => with_cc(bytes, last.wrapping_sub((n - 1 - i) as u8)),
                    None => bytes.clone(),
                });
            }
            rendered.pids.push(pid);
        }
        rendered
    }

    /// Forgets the copies, open sections and counters (after a loss), so
    /// the next entry point waits for tables sent after it; the parsed
    /// tables stay, to know the video stream.
    pub(crate) fn forget(&mut self) {
        self.sections.clear();
        for t in &mut self.tracks {
            t.assembler = SectionAssembler::default();
            t.run.clear();
            t.last_cc = None;
        }
    }
}

impl std::fmt::Debug for PsiCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PsiCache")
            .field("pat", &self.psi.pat())
            .field("sections", &self.sections.len())
            .field("video", &self.video)
            .finish_non_exhaustive()
    }
}

/// `packet` with its continuity counter set to `cc`.
fn with_cc(packet: &Bytes, cc: u8) -> Bytes {
    let mut copy = BytesMut::from(&packet[..]);
    if copy.len() == PACKET_LEN {
        copy[3] = (copy[3] & 0xF0) | (cc & 0x0F);
    }
    copy.freeze()
}
