//! The clean entry point every output goes through: PAT, PMT, then (when
//! the stream has video) a keyframe; what comes before is skipped and
//! counted.
//!
//! [`EntryGate`] is sans-IO: it takes chunks of whole 188-byte packets and
//! appends [`Piece`]s to send, write or print. With [`StartMode::Clean`]:
//!
//! 1. *Tables*: the PAT and every PMT it lists are followed (ISO/IEC 13818-1
//!    §2.4.4) and copies kept of the packets that carried them. An MPTS
//!    whose PMTs do not all come within [`PMT_WAIT_PACKETS`] goes with the
//!    ones seen.
//! 2. *Keyframe*: when a program has video, the gate waits on the first
//!    video stream of the first such program for a packet with
//!    payload_unit_start that has random_access_indicator set
//!    (§2.4.3.5), or whose PES starts an access unit with an IDR/IRAP
//!    picture or a sequence header (see `keyframe.rs`; the first
//!    [`MAX_SCAN_PACKETS`] packets of the PES are scanned, and the other
//!    packets meanwhile held, at most [`MAX_HELD_PACKETS`]).
//! 3. *Running*: the copies go out first, their continuity counters ending
//!    at those of the last live PAT/PMT packets so the live ones continue
//!    them; then the stream from the keyframe on. Every other PID passes
//!    from its own first payload_unit_start packet, so no decoder sees a
//!    PES or section begin in the middle. Packets without payload (PCR
//!    only) pass until the PID shows payload.
//!
//! No PAT within [`PAT_WAIT_PACKETS`], or no keyframe within
//! [`KEYFRAME_WAIT_PACKETS`]: the gate starts anyway at the next packet,
//! every PID under the payload_unit_start rule, and counts it.
//! [`EntryGate::resync`] (a hub reader that lagged) and
//! [`EntryGate::request_cut`] (a new file segment) both lead to the next
//! clean entry point; a cut emits [`Piece::Cut`] there. A cut drops, in the
//! new segment, the rest of each PES that began in the old one.
//!
//! Kept packets go out as slices of the input chunk (no copy); only the
//! PAT/PMT copies are new buffers. Packets without a sync byte and bytes
//! past the last whole packet of a chunk are dropped and counted in every
//! mode. Memory is bounded whatever the input.

pub(crate) mod keyframe;
mod psi_cache;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::ts::packet::{PACKET_LEN, Pid, TsPacket};
use keyframe::{KeyframeScan, Verdict, first_verdict};
use psi_cache::{PsiCache, Readiness, Rendered};

/// Packets to wait for a PAT (and its PMTs) before starting anyway.
pub const PAT_WAIT_PACKETS: u64 = 200_000;
/// Packets to wait, once the PAT is known, for PMTs it lists that have not
/// come yet, before going with the ones seen.
pub const PMT_WAIT_PACKETS: u64 = 200_000;
/// Packets to wait for a keyframe (about 10 s at 150 Mbit/s) before
/// starting anyway; also bounds the wait for a cut.
pub const KEYFRAME_WAIT_PACKETS: u64 = 1_000_000;
/// Video packets of one PES scanned for the picture that settles whether it
/// starts a keyframe (about 2.9 kB of parameter sets and SEI).
pub const MAX_SCAN_PACKETS: u32 = 16;
/// Packets held while a keyframe is being confirmed.
pub const MAX_HELD_PACKETS: u32 = 4096;

/// Where an output may start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// At a clean entry point (`?start=clean`, the default).
    Clean,
    /// Anywhere: everything passes unchanged (`?start=any`).
    Any,
}

/// What the gate lets out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Whole 188-byte packets.
    Data(Bytes),
    /// A new segment may start here (only after [`EntryGate::request_cut`]).
    Cut,
}

/// What the gate did, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EntryCounters {
    /// Whole packets with a sync byte taken in.
    pub packets_in: u64,
    /// Of those, packets sent on.
    pub packets_passed: u64,
    /// PAT/PMT copies sent at entry points (not in `packets_in`).
    pub psi_copies: u64,
    /// Packets skipped while waiting for an entry point.
    pub skipped_before_entry: u64,
    /// Packets skipped after an entry because their PID had not yet
    /// started a PES or section.
    pub skipped_mid_unit: u64,
    /// Packets held right now while a keyframe is confirmed.
    pub held_packets: u64,
    /// Entry points made (the first, then after each resync).
    pub entries: u64,
    /// Entries made without PAT or keyframe, after the wait bound.
    pub entry_timeouts: u64,
    /// Entries made without some PMT the PAT lists, after the wait bound.
    pub pmt_timeouts: u64,
    /// Calls to [`EntryGate::resync`].
    pub resyncs: u64,
    /// Items the reader reported lost, summed over resyncs.
    pub lost_items: u64,
    /// [`Piece::Cut`]s emitted.
    pub cuts: u64,
    /// Cuts made without a keyframe, after the wait bound.
    pub cut_timeouts: u64,
    /// 188-byte packets without a sync byte, dropped.
    pub bad_packets: u64,
    /// Bytes past the last whole packet of a chunk, dropped.
    pub partial_bytes: u64,
}

impl EntryCounters {
    /// Packets that did not go out: skipped to reach an entry point or a
    /// PES start, and bad packets.
    pub fn skipped(&self) -> u64 {
        self.skipped_before_entry + self.skipped_mid_unit + self.bad_packets
    }
}

/// Packets of one chunk in a row, sent as one slice.
#[derive(Debug, Default)]
struct Run {
    src: Option<Bytes>,
    start: usize,
    end: usize,
}

impl Run {
    /// Adds the packet at `off` in `src`; returns the previous run when
    /// this packet does not continue it.
    fn add(&mut self, src: &Bytes, off: usize) -> Option<Bytes> {
        if let Some(s) = &self.src
            && s.as_ptr() == src.as_ptr()
            && s.len() == src.len()
            && self.end == off
        {
            self.end += PACKET_LEN;
            return None;
        }
        let done = self.take();
        *self = Run { src: Some(src.clone()), start: off, end: off + PACKET_LEN };
        done
    }

    fn take(&mut self) -> Option<Bytes> {
        self.src.take().map(|s| s.slice(self.start..self.end))
    }
}

/// One bit per PID.
#[derive(Clone, Debug)]
struct PidSet([u64; Pid::COUNT / 64]);

impl PidSet {
    fn new() -> PidSet {
        PidSet([0; Pid::COUNT / 64])
    }
    fn insert(&mut self, pid: Pid) {
        self.0[pid.index() / 64] |= 1 << (pid.index() % 64);
    }
    fn contains(&self, pid: Pid) -> bool {
        self.0[pid.index() / 64] & (1 << (pid.index() % 64)) != 0
    }
    fn clear(&mut self) {
        self.0 = [0; Pid::COUNT / 64];
    }
}

/// What the gate waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    AwaitingTables,
    AwaitingKeyframe,
    Running,
}

/// A video PES that may start a keyframe; later packets wait in `held`.
#[derive(Debug)]
struct Candidate {
    pid: Pid,
    scan: KeyframeScan,
    video_packets: u32,
    held: Vec<Bytes>,
    run: Run,
    held_packets: u32,
    /// The PAT/PMT copies as they stood when this PES began.
    psi: Option<Rendered>,
}

impl Candidate {
    fn hold(&mut self, src: &Bytes, off: usize) {
        self.held.extend(self.run.add(src, off));
        self.held_packets += 1;
    }
}

/// The entry-point gate of one output.
#[derive(Debug)]
pub struct EntryGate {
    mode: StartMode,
    phase: Phase,
    cache: PsiCache,
    readiness: Readiness,
    /// Packets seen in the current waiting phase, and since the PAT was
    /// known (for the PMT bound).
    waited: u64,
    pmt_waited: u64,
    /// PIDs that have started a PES or section since the entry.
    started: PidSet,
    /// Unstarted PIDs that have shown payload (their PCR-only packets stop).
    payload_seen: PidSet,
    candidate: Option<Candidate>,
    cut_pending: bool,
    cut_waited: u64,
    out_run: Run,
    counters: EntryCounters,
}

impl EntryGate {
    /// A gate waiting for its first entry point (or open, with `Any`).
    pub fn new(mode: StartMode) -> EntryGate {
        EntryGate {
            mode,
            phase: match mode {
                StartMode::Clean => Phase::AwaitingTables,
                StartMode::Any => Phase::Running,
            },
            cache: PsiCache::new(),
            readiness: Readiness::default(),
            waited: 0,
            pmt_waited: 0,
            started: PidSet::new(),
            payload_seen: PidSet::new(),
            candidate: None,
            cut_pending: false,
            cut_waited: 0,
            out_run: Run::default(),
            counters: EntryCounters::default(),
        }
    }

    /// Feeds one chunk of whole 188-byte packets; appends what may go out.
    pub fn push(&mut self, chunk: &Bytes, out: &mut Vec<Piece>) {
        if self.pass_whole(chunk, out) {
            return;
        }
        let whole = chunk.len() / PACKET_LEN * PACKET_LEN;
        self.counters.partial_bytes += (chunk.len() - whole) as u64;
        for off in (0..whole).step_by(PACKET_LEN) {
            let Some(pkt) = TsPacket::from_slice(&chunk[off..]) else { break };
            if !pkt.has_sync() {
                self.counters.bad_packets += 1;
                continue;
            }
            let seq = self.counters.packets_in;
            self.counters.packets_in += 1;
            if self.cache.push(&pkt, seq) {
                self.readiness = self.cache.readiness();
            }
            self.step(chunk, off, &pkt, out);
        }
        self.flush(out);
        self.counters.held_packets = self.candidate.as_ref().map_or(0, |c| u64::from(c.held_packets));
    }

    /// The common case once running, in one pass over the headers: a chunk
    /// of whole, synced packets, none feeding the tables and (with `Clean`)
    /// all of PIDs already started, goes out whole. Every output runs its
    /// own gate over every packet, so the per-packet path showed as a fifth
    /// of the relay's CPU at 16 outputs. `false`: take the full path.
    fn pass_whole(&mut self, chunk: &Bytes, out: &mut Vec<Piece>) -> bool {
        if self.phase != Phase::Running || self.candidate.is_some() || self.cut_pending {
            return false;
        }
        if chunk.is_empty() || chunk.len() % PACKET_LEN != 0 {
            return false;
        }
        for header in chunk.chunks_exact(PACKET_LEN) {
            if header[0] != 0x47 {
                return false;
            }
            let pid = Pid::new(u16::from_be_bytes([header[1] & 0x1F, header[2]]));
            if self.cache.wants(pid) {
                return false;
            }
            if self.mode == StartMode::Clean && pid != Pid::NULL && !self.started.contains(pid) {
                return false;
            }
        }
        let packets = (chunk.len() / PACKET_LEN) as u64;
        self.counters.packets_in += packets;
        self.counters.packets_passed += packets;
        out.push(Piece::Data(chunk.clone()));
        true
    }

    /// The reader lost items: skip until the next clean entry point, with
    /// PAT and PMT sent after the loss (counts it). With `Any`, only counts.
    pub fn resync(&mut self, lost_items: u64) {
        self.counters.resyncs += 1;
        self.counters.lost_items += lost_items;
        if self.mode == StartMode::Any {
            return;
        }
        if let Some(c) = self.candidate.take() {
            self.counters.skipped_before_entry += u64::from(c.held_packets);
        }
        self.counters.held_packets = 0;
        self.cache.forget();
        self.readiness = Readiness::default();
        self.enter_phase(Phase::AwaitingTables);
    }

    /// Segmenting: at the next clean entry point emit [`Piece::Cut`], then
    /// PAT, PMT, keyframe... With `Any`: the cut comes before the next
    /// video keyframe if the video stream is known, else at the next packet.
    pub fn request_cut(&mut self) {
        if !self.cut_pending {
            self.cut_pending = true;
            self.cut_waited = 0;
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> EntryCounters {
        self.counters
    }

    fn enter_phase(&mut self, phase: Phase) {
        self.phase = phase;
        self.waited = 0;
        self.pmt_waited = 0;
    }

    fn step(&mut self, src: &Bytes, off: usize, pkt: &TsPacket<'_>, out: &mut Vec<Piece>) {
        if self.candidate.is_some() {
            self.step_candidate(src, off, pkt, out);
            return;
        }
        match self.phase {
            Phase::AwaitingTables => self.step_tables(src, off, pkt, out),
            Phase::AwaitingKeyframe => self.step_keyframe(src, off, pkt, out),
            Phase::Running => self.step_running(src, off, pkt, out),
        }
    }

    fn step_tables(&mut self, src: &Bytes, off: usize, pkt: &TsPacket<'_>, out: &mut Vec<Piece>) {
        self.waited += 1;
        let r = self.readiness;
        if r.pat {
            self.pmt_waited += 1;
        }
        let enough = r.complete() || (r.pat && r.cached > 0 && self.pmt_waited >= PMT_WAIT_PACKETS);
        if enough {
            self.counters.pmt_timeouts += u64::from(!r.complete());
            // The packet that completed the tables goes out as its copy.
            self.counters.skipped_before_entry += 1;
            if self.cache.video().is_some() {
                self.enter_phase(Phase::AwaitingKeyframe);
            } else {
                let psi = self.cache.render();
                self.begin_segment(Some(psi), None, out);
            }
        } else if self.waited >= PAT_WAIT_PACKETS {
            self.timeout_entry(src, off, pkt, out);
        } else {
            self.counters.skipped_before_entry += 1;
        }
    }

    fn step_keyframe(&mut self, src: &Bytes, off: usize, pkt: &TsPacket<'_>, out: &mut Vec<Piece>) {
        self.waited += 1;
        let Some(video) = self.cache.video() else {
            // A new PMT without video: the entry needs no keyframe.
            self.counters.skipped_before_entry += 1;
            let psi = self.cache.render();
            self.begin_segment(Some(psi), None, out);
            return;
        };
        if pkt.pid() == video.pid && pkt.payload_unit_start() && !pkt.transport_error() {
            let (verdict, scan) = first_verdict(pkt, video.kind);
            match verdict {
                Verdict::Key => {
                    let psi = self.cache.render();
                    self.begin_segment(Some(psi), Some(video.pid), out);
                    self.pass(src, off, pkt, out);
                    return;
                }
                Verdict::Undecided => {
                    self.open_candidate(video.pid, scan, src, off);
                    return;
                }
                Verdict::NotKey => {}
            }
        }
        if self.waited >= KEYFRAME_WAIT_PACKETS {
            self.timeout_entry(src, off, pkt, out);
        } else {
            self.counters.skipped_before_entry += 1;
        }
    }

    fn step_running(&mut self, src: &Bytes, off: usize, pkt: &TsPacket<'_>, out: &mut Vec<Piece>) {
        if self.cut_pending {
            self.cut_waited += 1;
            let video = self.cache.video();
            match video {
                None => {
                    let psi = self.segment_psi();
                    self.begin_segment(psi, None, out);
                }
                Some(v) if pkt.pid() == v.pid && pkt.payload_unit_start() && !pkt.transport_error() => {
                    let (verdict, scan) = first_verdict(pkt, v.kind);
                    match verdict {
                        Verdict::Key => {
                            let psi = self.segment_psi();
                            self.begin_segment(psi, Some(v.pid), out);
                        }
                        Verdict::Undecided => {
                            self.open_candidate(v.pid, scan, src, off);
                            return;
                        }
                        Verdict::NotKey => {}
                    }
                }
                Some(_) => {}
            }
            if self.cut_pending && self.cut_waited >= KEYFRAME_WAIT_PACKETS {
                self.counters.cut_timeouts += 1;
                let psi = self.segment_psi();
                self.begin_segment(psi, None, out);
            }
        }
        self.pass(src, off, pkt, out);
    }

    /// A packet while a keyframe is being confirmed.
    fn step_candidate(&mut self, src: &Bytes, off: usize, pkt: &TsPacket<'_>, out: &mut Vec<Piece>) {
        if self.phase == Phase::AwaitingKeyframe {
            self.waited += 1;
        }
        let Some(c) = self.candidate.as_mut() else { return };
        let settled = if pkt.pid() != c.pid || pkt.transport_error() {
            c.hold(src, off);
            (c.held_packets >= MAX_HELD_PACKETS).then_some(false)
        } else if pkt.payload_unit_start() {
            // The PES ended undecided; this one may be the keyframe.
            self.resolve(false, out);
            self.step(src, off, pkt, out);
            return;
        } else {
            c.hold(src, off);
            c.video_packets += 1;
            match pkt.payload().map_or(Verdict::Undecided, |p| c.scan.feed(p)) {
                Verdict::Key => Some(true),
                Verdict::NotKey => Some(false),
                Verdict::Undecided => (c.video_packets >= MAX_SCAN_PACKETS).then_some(false),
            }
        };
        if let Some(key) = settled {
            self.resolve(key, out);
        }
    }

    fn open_candidate(&mut self, pid: Pid, scan: KeyframeScan, src: &Bytes, off: usize) {
        let psi = self.segment_psi();
        let mut c =
            Candidate { pid, scan, video_packets: 1, held: Vec::new(), run: Run::default(), held_packets: 0, psi };
        c.hold(src, off);
        self.candidate = Some(c);
    }

    /// Ends the candidate: a keyframe starts a segment (or the entry) with
    /// it; otherwise its packets go on as usual, or are skipped before the
    /// entry.
    fn resolve(&mut self, key: bool, out: &mut Vec<Piece>) {
        let Some(mut c) = self.candidate.take() else { return };
        c.held.extend(c.run.take());
        if key {
            self.begin_segment(c.psi, Some(c.pid), out);
        } else if self.phase != Phase::Running {
            self.counters.skipped_before_entry += u64::from(c.held_packets);
            return;
        }
        for run in &c.held {
            for off in (0..run.len()).step_by(PACKET_LEN) {
                if let Some(pkt) = TsPacket::from_slice(&run[off..]) {
                    self.pass(run, off, &pkt, out);
                }
            }
        }
    }

    /// The PAT/PMT copies a new segment starts with (none with `Any`).
    fn segment_psi(&self) -> Option<Rendered> {
        (self.mode == StartMode::Clean).then(|| self.cache.render())
    }

    /// Starts the output or a new segment: the cut if one is pending, the
    /// PAT/PMT copies, and (with `Clean`) every PID but the video one and
    /// those of the copies waiting for its own unit start.
    fn begin_segment(&mut self, psi: Option<Rendered>, video: Option<Pid>, out: &mut Vec<Piece>) {
        self.flush(out);
        if self.cut_pending {
            out.push(Piece::Cut);
            self.counters.cuts += 1;
            self.cut_pending = false;
        }
        if self.mode == StartMode::Any {
            return;
        }
        self.started.clear();
        self.payload_seen.clear();
        if let Some(psi) = psi {
            self.counters.psi_copies += psi.packets.len() as u64;
            out.extend(psi.packets.into_iter().map(Piece::Data));
            for pid in psi.pids {
                self.started.insert(pid);
            }
        }
        if let Some(pid) = video {
            self.started.insert(pid);
        }
        if self.phase != Phase::Running {
            self.counters.entries += 1;
            self.enter_phase(Phase::Running);
        }
    }

    /// Starts without a clean entry point, after a wait bound.
    fn timeout_entry(&mut self, src: &Bytes, off: usize, pkt: &TsPacket<'_>, out: &mut Vec<Piece>) {
        self.counters.entry_timeouts += 1;
        let psi = self.cache.render();
        self.begin_segment(Some(psi), None, out);
        self.pass(src, off, pkt, out);
    }

    /// A packet after the entry: sent unless its PID has not started yet.
    fn pass(&mut self, src: &Bytes, off: usize, pkt: &TsPacket<'_>, out: &mut Vec<Piece>) {
        if self.mode == StartMode::Clean {
            let pid = pkt.pid();
            let starts = pkt.payload_unit_start() && pkt.has_payload() && !pkt.transport_error();
            if pid != Pid::NULL && !self.started.contains(pid) {
                if starts {
                    self.started.insert(pid);
                } else if pkt.has_payload() || self.payload_seen.contains(pid) {
                    self.payload_seen.insert(pid);
                    self.counters.skipped_mid_unit += 1;
                    return;
                }
            }
        }
        self.counters.packets_passed += 1;
        if let Some(run) = self.out_run.add(src, off) {
            out.push(Piece::Data(run));
        }
    }

    fn flush(&mut self, out: &mut Vec<Piece>) {
        if let Some(run) = self.out_run.take() {
            out.push(Piece::Data(run));
        }
    }
}
