//! The PAT and PMT of the current input, and the version numbers of what
//! went out, for the [`Splicer`](super::Splicer).
//!
//! Table PIDs (0 and the PMT PIDs of the input's PAT) never pass as they
//! came: each section that completes is re-sent in packets of our own, so
//! its version can be remapped (bumped when a switch changes the content
//! downstream saw) and its continuity counter continues the output's.
//!
//! Limits: a PMT must be one section (§2.4.4.8); other tables on a PMT PID
//! and sections with current_next_indicator 0 are not re-sent. A
//! multi-section PAT is compared as a whole at the end of a hold-back; one
//! that arrives after a hold-back overflow is compared per section.
//!
//! The input's PMTs also tell which PIDs carry video, and in which codec
//! family, so the splicer can resume them at a random access point; at
//! most [`MAX_VIDEO_PIDS`] are tracked (the rest resume like other PIDs).

use std::collections::BTreeMap;

use crate::output::entry::keyframe::VideoKind;
use crate::ts::packet::{Pid, TsPacket};
use crate::ts::psi::{CRC32, SectionAssembler, parse_pmt, pat_entries, split_section};

/// Video PIDs tracked per input; bounds the splicer's key-wait state.
pub(super) const MAX_VIDEO_PIDS: usize = 64;

/// The tables of the input in use since the last switch.
#[derive(Debug, Default)]
struct InputTables {
    /// One assembler per table PID.
    assemblers: Vec<(Pid, SectionAssembler)>,
    /// The sections of the newest complete PAT, by section_number.
    pat: BTreeMap<u8, Vec<u8>>,
    /// `(program_number, PMT PID)` of that PAT, program 0 left out.
    programs: Vec<(u16, Pid)>,
    /// PAT sections of a version still being collected.
    pat_pending: BTreeMap<u8, Vec<u8>>,
    pat_pending_version: Option<u8>,
    /// Newest PMT section per PMT PID.
    pmts: BTreeMap<Pid, Vec<u8>>,
    /// `(PID, codec family)` of the video streams those PMTs list, in PAT
    /// and PMT order, first occurrence of a PID only.
    video: Vec<(Pid, VideoKind)>,
}

impl InputTables {
    /// Rebuilds `video` from the PMTs; whether it changed.
    fn revideo(&mut self) -> bool {
        let mut video: Vec<(Pid, VideoKind)> = Vec::new();
        for (_, pmt_pid) in &self.programs {
            let Some(section) = self.pmts.get(pmt_pid) else { continue };
            let Some((h, body)) = split_section(section) else { continue };
            let Some(pmt) = parse_pmt(*pmt_pid, h, body) else { continue };
            for es in &pmt.streams {
                if let Some(kind) = VideoKind::of(es)
                    && video.len() < MAX_VIDEO_PIDS
                    && !video.iter().any(|(p, _)| *p == es.pid)
                {
                    video.push((es.pid, kind));
                }
            }
        }
        let changed = video != self.video;
        self.video = video;
        changed
    }
}

/// What went out on one table PID.
#[derive(Debug)]
struct TableOut {
    /// version_number of the sections sent.
    version: u8,
    /// The input's version that maps onto `version`; `None` after a switch
    /// until the new input's first section decides.
    in_version: Option<u8>,
    /// Sections sent at `version`, by section_number, version bits and
    /// CRC left out, to tell whether a new input changed them.
    sections: BTreeMap<u8, Vec<u8>>,
}

/// What one table packet brought.
#[derive(Debug, Default)]
pub(super) struct TableEvent {
    /// Accepted sections, in order, as the input sent them.
    pub(super) sections: Vec<Vec<u8>>,
    /// The set of PMT PIDs changed.
    pub(super) pids_changed: bool,
    /// The list of video PIDs changed.
    pub(super) video_changed: bool,
}

/// Input tables plus output history.
#[derive(Debug, Default)]
pub(super) struct Tables {
    input: InputTables,
    /// Keyed by PID: at most 8192 entries, PID 0 with up to 256 sections of
    /// 1 KiB, PMT PIDs with one, so memory stays bounded (under 9 MiB).
    out: BTreeMap<Pid, TableOut>,
    /// Version numbers bumped so far.
    pub(super) bumps: u64,
}

/// The section with the version bits and the CRC left out.
fn content(section: &[u8]) -> Vec<u8> {
    let mut c = section[..section.len().saturating_sub(4)].to_vec();
    if let Some(b) = c.get_mut(5) {
        *b &= !0x3E;
    }
    c
}

impl Tables {
    /// Forgets the input's tables (not what went out): the next input
    /// starts from nothing.
    pub(super) fn switch(&mut self) {
        self.input = InputTables::default();
        for t in self.out.values_mut() {
            t.in_version = None;
        }
    }

    /// `(program_number, PMT PID)` of the input's current PAT.
    pub(super) fn programs(&self) -> &[(u16, Pid)] {
        &self.input.programs
    }

    /// The codec family of `pid` when the input's PMTs list it as video.
    pub(super) fn video_kind(&self, pid: Pid) -> Option<VideoKind> {
        self.input.video.iter().find(|(p, _)| *p == pid).map(|(_, k)| *k)
    }

    /// Whether the input's PAT and every PMT it lists are known.
    pub(super) fn complete(&self) -> bool {
        let i = &self.input;
        !i.pat.is_empty() && i.programs.iter().all(|(_, pid)| i.pmts.contains_key(pid))
    }

    /// Feeds a packet of PID 0 or of a PMT PID of the current PAT.
    pub(super) fn push(&mut self, pkt: &TsPacket<'_>) -> TableEvent {
        let pid = pkt.pid();
        let i = &mut self.input;
        let slot = match i.assemblers.iter().position(|(p, _)| *p == pid) {
            Some(slot) => slot,
            None => {
                i.assemblers.push((pid, SectionAssembler::default()));
                i.assemblers.len() - 1
            }
        };
        let mut raw = Vec::new();
        if let Some((_, assembler)) = i.assemblers.get_mut(slot) {
            // Bad sections are dropped here; the input's own probe counts them.
            assembler.push(pkt, &mut |section| {
                if let Ok(section) = section {
                    raw.push(section.to_vec());
                }
            });
        }
        let mut event = TableEvent::default();
        let mut pmts_changed = false;
        for section in raw {
            if self.accept(pid, &section, &mut event.pids_changed, &mut pmts_changed) {
                event.sections.push(section);
            }
        }
        if pmts_changed || event.pids_changed {
            event.video_changed = self.input.revideo();
        }
        event
    }

    /// Takes a section into the input's tables; whether it is one to send.
    /// `pmts_changed`: a PMT differs from the one kept before.
    fn accept(&mut self, pid: Pid, section: &[u8], pids_changed: &mut bool, pmts_changed: &mut bool) -> bool {
        let Some((h, _)) = split_section(section) else { return false };
        if !h.current || h.number > h.last_number {
            return false;
        }
        let i = &mut self.input;
        if pid == Pid::PAT {
            if h.table_id != 0 {
                return false;
            }
            if i.pat_pending_version != Some(h.version)
                || i.pat_pending.values().next().and_then(|s| s.get(7)) != Some(&h.last_number)
            {
                i.pat_pending.clear();
                i.pat_pending_version = Some(h.version);
            }
            i.pat_pending.insert(h.number, section.to_vec());
            if (0..=h.last_number).all(|n| i.pat_pending.contains_key(&n)) {
                let pat = std::mem::take(&mut i.pat_pending);
                i.pat_pending_version = None;
                let mut programs: Vec<(u16, Pid)> = Vec::new();
                for s in pat.values() {
                    let Some((_, body)) = split_section(s) else { continue };
                    for (number, pmt_pid) in pat_entries(body) {
                        // A PMT PID must not be PID 0 nor listed twice.
                        if number != 0 && pmt_pid != Pid::PAT && !programs.iter().any(|p| p.1 == pmt_pid) {
                            programs.push((number, pmt_pid));
                        }
                    }
                }
                if programs != i.programs {
                    *pids_changed = true;
                    i.pmts.retain(|pid, _| programs.iter().any(|p| p.1 == *pid));
                    i.assemblers.retain(|(pid, _)| *pid == Pid::PAT || programs.iter().any(|p| p.1 == *pid));
                    i.programs = programs;
                }
                i.pat = pat;
            }
            return true;
        }
        // A PMT: one section (13818-1 §2.4.4.8), for the program listed.
        let listed = i.programs.iter().any(|&(number, p)| p == pid && number == h.extension);
        if h.table_id != 2 || h.last_number != 0 || !listed {
            return false;
        }
        if i.pmts.get(&pid).is_none_or(|s| s[..] != *section) {
            i.pmts.insert(pid, section.to_vec());
            *pmts_changed = true;
        }
        true
    }

    /// The input's tables, PAT sections first, then PMTs in PAT order,
    /// with their versions decided as a whole table: one that differs from
    /// what went out on its PID gets a bumped version.
    pub(super) fn snapshot(&mut self) -> Vec<(Pid, Vec<u8>)> {
        let mut all: Vec<(Pid, Vec<u8>)> = self.input.pat.values().map(|s| (Pid::PAT, s.clone())).collect();
        for (_, pid) in &self.input.programs {
            if let Some(s) = self.input.pmts.get(pid) {
                all.push((*pid, s.clone()));
            }
        }
        let mut pids: Vec<Pid> = all.iter().map(|(p, _)| *p).collect();
        pids.dedup();
        for pid in pids {
            let sections: BTreeMap<u8, Vec<u8>> = all
                .iter()
                .filter(|(p, _)| *p == pid)
                .filter_map(|(_, s)| Some((split_section(s)?.0.number, content(s))))
                .collect();
            let Some(in_version) = all.iter().find(|(p, _)| *p == pid).and_then(|(_, s)| split_section(s)) else {
                continue;
            };
            let in_version = in_version.0.version;
            match self.out.get_mut(&pid) {
                Some(t) if t.sections == sections => t.in_version = Some(in_version),
                Some(t) => {
                    t.version = (t.version + 1) & 0x1F;
                    t.in_version = Some(in_version);
                    t.sections.clear();
                    self.bumps += 1;
                }
                None => {
                    self.out.insert(pid, TableOut { version: in_version, in_version: Some(in_version), sections });
                }
            }
        }
        all
    }

    /// The section as it goes out: version remapped, CRC recomputed. A new
    /// input version bumps ours, unless it is the first since a switch and
    /// its content is what went out.
    pub(super) fn outgoing(&mut self, pid: Pid, section: &[u8]) -> Option<Vec<u8>> {
        let (h, _) = split_section(section)?;
        let c = content(section);
        let t = self.out.entry(pid).or_insert_with(|| TableOut {
            version: h.version,
            in_version: Some(h.version),
            sections: BTreeMap::new(),
        });
        if t.in_version != Some(h.version) {
            let same = t.in_version.is_none() && t.sections.get(&h.number) == Some(&c);
            if !same {
                t.version = (t.version + 1) & 0x1F;
                t.sections.clear();
                self.bumps += 1;
            }
            t.in_version = Some(h.version);
        }
        t.sections.insert(h.number, c);
        let mut s = section.to_vec();
        let body = s.len().checked_sub(4)?;
        *s.get_mut(5)? = (s[5] & !0x3E) | (t.version << 1);
        let crc = CRC32.checksum(&s[..body]);
        s[body..].copy_from_slice(&crc.to_be_bytes());
        Some(s)
    }
}
