//! One valid transport stream across input switches (failover).
//!
//! A [`Splicer`] sits between the active input's chunks and the stream's
//! hub. Told with [`Splicer::switch`] that the next chunks come from another
//! input (or the same one reopened), it makes the seam look like one
//! announced discontinuity instead of garbage:
//!
//! - **Hold-back.** After a switch nothing goes out until the new input's
//!   PAT and every PMT it lists are complete; the packets before are
//!   dropped and counted. Then the PAT and PMTs go out first, followed by
//!   the input. The wait is bounded by [`MAX_HOLD`] packets, after which
//!   packets pass anyway (counted in `hold_overflows`).
//! - **Tables.** PAT and PMT sections are always re-sent in our own packets
//!   (pointer_field 0, 0xFF stuffing) with our own continuity counter, and
//!   a version number that is bumped whenever the content downstream saw
//!   changes, across switches included, so players re-read them.
//! - **Continuity counters** carry on per PID: the first packet of a PID
//!   after a switch fixes an offset (output CC = input CC + offset) so it
//!   continues that PID's last output CC. Offsets preserve what the input
//!   meant: a duplicate keeps its CC, a packet without payload repeats it.
//! - **discontinuity_indicator** is set on the first packet of every PID
//!   after a switch (ISO/IEC 13818-1 §2.4.3.5: the PCR time base and, for
//!   other PIDs, the elementary stream may restart there). A packet with an
//!   adaptation field gets the flag in place. One without cannot get a
//!   field without moving its payload, so an adaptation-field-only packet
//!   (adaptation_field_control `10`, 183 bytes: the flags byte and 0xFF
//!   stuffing) is put before it. Such a packet has no payload, so its CC
//!   repeats the PID's previous one (§2.4.3.3: the counter does not
//!   increment when adaptation_field_control is `00` or `10`); ffmpeg's
//!   demuxer (`mpegts.c`, `expected_cc = has_payload ? last_cc + 1 :
//!   last_cc`) expects the same, and accepts any CC on a packet flagged
//!   discontinuous anyway.
//! - **Clean starts.** After a switch each PID resumes at its own
//!   payload_unit_start: the tail of a PES or section begun before is
//!   dropped and counted. Packets without payload (PCR-only) pass at once.
//!   When a payload packet is dropped after such a packet went out, the
//!   CC offset is fixed again at the PID's next packet out, so the output
//!   counter does not jump over the dropped ones.
//! - **Video resumes at a random access point.** After a switch, each
//!   video PID the new input's PMTs list (see `keywait.rs`) resumes only at
//!   a PES that starts a keyframe, judged as the outputs' entry gate does:
//!   random_access_indicator, or an IDR/IRAP picture or sequence header
//!   first in the PES. The PES packets before the verdict are held (at
//!   most [`MAX_KEY_SCAN`] per PID) and go out with it; everything else
//!   before is dropped and counted (`awaiting_key`). After
//!   [`KEY_WAIT_PES`] PES starts or [`KEY_WAIT_PACKETS`] packets of the PID
//!   without a keyframe, it resumes at its next PES start anyway
//!   (`key_wait_overflows`). The first input passes at once (outputs have
//!   their own entry gate); after a hold-back that ended without every
//!   PMT, the streams of the missing ones resume like non-video PIDs.
//!
//! Not done: PCR/PTS continuity (the discontinuity flag tells players the
//! time base changed).
//!
//! Packets that pass unchanged go out as slices of the input chunk; a
//! packet that changes, or was held from an earlier chunk, goes out as a
//! copy. Null packets (0x1FFF) pass untouched. A chunk's bytes past its
//! last whole packet, packets without the sync byte and packets with the
//! reserved adaptation_field_control `00` are dropped and counted.

mod keywait;
mod tables;
#[cfg(test)]
mod tests;

use bytes::Bytes;

use crate::ts::packet::{PACKET_LEN, Pid, SYNC_BYTE, TsPacket, afc};
use keywait::KeyWait;
pub use keywait::{KEY_WAIT_PACKETS, KEY_WAIT_PES, MAX_KEY_SCAN};
use tables::Tables;

/// Packets held back after a switch, waiting for the new input's PAT and
/// PMT, before giving up and passing them anyway.
pub const MAX_HOLD: u64 = 200_000;

/// No CC has gone out on this PID yet.
const NONE: u8 = 0xFF;
/// Per-PID state bits: the offset is fixed for the current input.
const SYNCED: u8 = 1;
/// The next packet is the first since a switch: flag it discontinuous.
const DISC: u8 = 2;
/// Drop payload until a payload_unit_start.
const AWAIT_START: u8 = 4;
/// A PMT PID of the current input's PAT.
const TABLE: u8 = 8;

/// What the splicer did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpliceCounters {
    /// Whole packets fed.
    pub packets_in: u64,
    /// Packets appended to the output (passed, inserted and table packets).
    pub packets_out: u64,
    /// Input packets that went out (as a slice or a rewritten copy).
    pub passed: u64,
    /// Of `passed`, those that went out as a changed copy.
    pub rewritten: u64,
    /// Calls to [`Splicer::switch`].
    pub switches: u64,
    /// Packets dropped while waiting for a new input's PAT and PMT.
    pub held_back: u64,
    /// Hold-backs that ran past [`MAX_HOLD`] packets.
    pub hold_overflows: u64,
    /// Payload packets dropped before their PID's first payload_unit_start
    /// after a switch (video PIDs count in `awaiting_key` instead).
    pub pes_tails: u64,
    /// Video packets dropped after a switch before their PID's first
    /// random access point.
    pub awaiting_key: u64,
    /// Video PIDs that resumed without a random access point, after
    /// [`KEY_WAIT_PES`] PES starts or [`KEY_WAIT_PACKETS`] packets.
    pub key_wait_overflows: u64,
    /// Video packets held right now while a PES start is judged (not yet
    /// in `passed` nor `awaiting_key`).
    pub key_held: u64,
    /// Table packets taken in, replaced by the re-sent sections.
    pub table_packets_in: u64,
    /// PAT/PMT sections sent.
    pub sections_out: u64,
    /// Table packets sent.
    pub table_packets_out: u64,
    /// Table version numbers bumped.
    pub version_bumps: u64,
    /// Adaptation-field-only packets inserted to carry a discontinuity_indicator.
    pub af_inserted: u64,
    /// discontinuity_indicators set in an existing adaptation field.
    pub flags_set: u64,
    /// Packets without the sync byte or with adaptation_field_control `00`.
    pub bad_packets: u64,
    /// Bytes after a chunk's last whole packet.
    pub partial_bytes: u64,
}

/// Where the output of one chunk goes: runs of unchanged packets become one
/// slice each.
struct Emit<'a> {
    chunk: &'a Bytes,
    out: &'a mut Vec<Bytes>,
    /// Byte range of the pending run of unchanged packets.
    run: Option<(usize, usize)>,
    packets: u64,
}

impl Emit<'_> {
    fn pass(&mut self, start: usize) {
        self.packets += 1;
        match &mut self.run {
            Some((_, end)) if *end == start => *end += PACKET_LEN,
            _ => {
                self.flush();
                self.run = Some((start, start + PACKET_LEN));
            }
        }
    }

    fn push(&mut self, bytes: Bytes) {
        self.flush();
        self.packets += (bytes.len() / PACKET_LEN) as u64;
        self.out.push(bytes);
    }

    fn flush(&mut self) {
        if let Some((start, end)) = self.run.take() {
            self.out.push(self.chunk.slice(start..end));
        }
    }
}

/// Keeps one stream valid across input switches; see the module docs.
pub struct Splicer {
    /// Last output CC per PID, or [`NONE`].
    last_cc: Box<[u8; Pid::COUNT]>,
    /// Output CC minus input CC per PID, for the current input.
    offset: Box<[u8; Pid::COUNT]>,
    /// State bits per PID.
    state: Box<[u8; Pid::COUNT]>,
    /// Packets held since the last switch; `None` when passing.
    holding: Option<u64>,
    /// Video PIDs waiting for a random access point since the last switch.
    waits: Vec<KeyWait>,
    tables: Tables,
    counters: SpliceCounters,
}

impl Default for Splicer {
    fn default() -> Self {
        Splicer::new()
    }
}

impl Splicer {
    /// A splicer for a stream's first input: it passes at once, nothing is
    /// flagged until the first switch.
    pub fn new() -> Splicer {
        Splicer {
            last_cc: Box::new([NONE; Pid::COUNT]),
            offset: Box::new([0; Pid::COUNT]),
            state: Box::new([0; Pid::COUNT]),
            holding: None,
            waits: Vec::new(),
            tables: Tables::default(),
            counters: SpliceCounters::default(),
        }
    }

    /// The next chunks come from another input (or the same one reopened).
    pub fn switch(&mut self) {
        self.counters.switches += 1;
        self.state.fill(DISC | AWAIT_START);
        for w in self.waits.drain(..) {
            self.counters.awaiting_key += w.held_packets();
        }
        self.tables.switch();
        self.holding = Some(0);
    }

    /// Counters so far.
    pub fn counters(&self) -> SpliceCounters {
        let key_held = self.waits.iter().map(KeyWait::held_packets).sum();
        SpliceCounters { version_bumps: self.tables.bumps, key_held, ..self.counters }
    }

    /// Feeds a chunk of whole 188-byte packets; appends what goes out
    /// (zero-copy slices where nothing changes, rewritten copies where a
    /// packet changes).
    pub fn push(&mut self, chunk: &Bytes, out: &mut Vec<Bytes>) {
        let whole = chunk.len() / PACKET_LEN * PACKET_LEN;
        self.counters.partial_bytes += (chunk.len() - whole) as u64;
        let mut emit = Emit { chunk, out, run: None, packets: 0 };
        for (n, bytes) in chunk[..whole].chunks_exact(PACKET_LEN).enumerate() {
            let Ok(bytes) = <&[u8; PACKET_LEN]>::try_from(bytes) else { continue };
            self.packet(n * PACKET_LEN, TsPacket::new(bytes), &mut emit);
        }
        emit.flush();
        self.counters.packets_out += emit.packets;
    }

    fn packet(&mut self, start: usize, pkt: TsPacket<'_>, emit: &mut Emit<'_>) {
        self.counters.packets_in += 1;
        if !pkt.has_sync() || pkt.adaptation_field_control() == 0 {
            self.counters.bad_packets += 1;
            return;
        }
        let pid = pkt.pid();
        let table = pid == Pid::PAT || self.state[pid.index()] & TABLE != 0;
        if table {
            self.table_packet(pkt, emit);
            return;
        }
        if let Some(held) = &mut self.holding {
            *held += 1;
            if *held <= MAX_HOLD {
                self.counters.held_back += 1;
                return;
            }
            self.counters.hold_overflows += 1;
            self.holding = None;
        }
        if pid == Pid::NULL {
            self.counters.passed += 1;
            emit.pass(start);
            return;
        }
        self.es_packet(start, pkt, emit);
    }

    fn table_packet(&mut self, pkt: TsPacket<'_>, emit: &mut Emit<'_>) {
        let event = self.tables.push(&pkt);
        if event.pids_changed {
            self.retable();
        }
        if event.video_changed {
            self.prune_waits();
        }
        match &mut self.holding {
            Some(held) => {
                self.counters.held_back += 1;
                *held += 1;
                if self.tables.complete() {
                    self.holding = None;
                    for (pid, section) in self.tables.snapshot() {
                        self.send_section(pid, &section, emit);
                    }
                } else if *held > MAX_HOLD {
                    self.counters.hold_overflows += 1;
                    self.holding = None;
                }
            }
            None => {
                self.counters.table_packets_in += 1;
                for section in event.sections {
                    self.send_section(pkt.pid(), &section, emit);
                }
            }
        }
    }

    /// Marks the PMT PIDs of the input's PAT; a PID that stops being one
    /// fixes a new offset at its next packet.
    fn retable(&mut self) {
        for s in self.state.iter_mut() {
            if *s & TABLE != 0 {
                *s &= !(TABLE | SYNCED);
            }
        }
        for &(_, pid) in self.tables.programs() {
            self.state[pid.index()] |= TABLE;
        }
    }

    /// Sends one section in packets of our own on `pid`.
    fn send_section(&mut self, pid: Pid, section: &[u8], emit: &mut Emit<'_>) {
        let Some(section) = self.tables.outgoing(pid, section) else { return };
        let i = pid.index();
        let flag = self.state[i] & DISC != 0;
        self.state[i] &= !DISC;
        let mut cc = self.last_cc[i];
        let packets = packetize(&section, pid, &mut cc, flag);
        self.last_cc[i] = cc;
        self.counters.sections_out += 1;
        self.counters.table_packets_out += (packets.len() / PACKET_LEN) as u64;
        emit.push(Bytes::from(packets));
    }

    fn es_packet(&mut self, start: usize, pkt: TsPacket<'_>, emit: &mut Emit<'_>) {
        let i = pkt.pid().index();
        if self.state[i] & AWAIT_START != 0 {
            if let Some(kind) = self.tables.video_kind(pkt.pid()) {
                self.await_key(start, pkt, kind, emit);
                return;
            }
            if pkt.has_payload() {
                if !pkt.payload_unit_start() {
                    self.counters.pes_tails += 1;
                    self.dropped(pkt.pid());
                    return;
                }
                self.state[i] &= !AWAIT_START;
            }
        }
        self.send(Some(start), pkt, emit);
    }

    /// A payload packet of `pid` was dropped after a switch: should one
    /// without payload have gone out before, fix the CC offset again at the
    /// next packet out so the output counter does not skip.
    fn dropped(&mut self, pid: Pid) {
        self.state[pid.index()] &= !SYNCED;
    }

    /// Sends an input packet on: a slice of the chunk at `start` when
    /// nothing changes, else (or with `start` `None`, a packet held from an
    /// earlier chunk) a copy; CC offset and discontinuity flag applied.
    fn send(&mut self, start: Option<usize>, pkt: TsPacket<'_>, emit: &mut Emit<'_>) {
        let i = pkt.pid().index();
        let state = self.state[i];
        let payload = pkt.has_payload();
        let bytes = pkt.bytes();
        let cc_in = pkt.cc().value();
        // An adaptation field with a flags byte can take the flag in place.
        let has_flags = pkt.adaptation_field_control() & afc::ADAPTATION != 0 && bytes[4] >= 1;
        let mut flag_here = false;
        if state & SYNCED == 0 {
            let last = self.last_cc[i];
            let wanted = match last {
                NONE => cc_in,
                last if payload => (last + 1) & 0x0F,
                last => last,
            };
            self.offset[i] = (wanted + 16 - cc_in) & 0x0F;
            self.state[i] = (self.state[i] | SYNCED) & !DISC;
            if state & DISC != 0 {
                if has_flags {
                    flag_here = true;
                } else if payload {
                    // The inserted packet repeats the CC before this one.
                    let cc = (wanted + 15) & 0x0F;
                    emit.push(Bytes::copy_from_slice(&af_only(pkt.pid(), cc)));
                    self.counters.af_inserted += 1;
                } else {
                    // No payload and no flags byte: nothing to keep but the
                    // PID, so an AF-only packet takes its place.
                    emit.push(Bytes::copy_from_slice(&af_only(pkt.pid(), wanted)));
                    self.counters.passed += 1;
                    self.counters.rewritten += 1;
                    self.last_cc[i] = wanted;
                    return;
                }
            }
        }
        let cc_out = (cc_in + self.offset[i]) & 0x0F;
        self.last_cc[i] = cc_out;
        self.counters.passed += 1;
        if cc_out == cc_in && !flag_here {
            match start {
                Some(start) => emit.pass(start),
                None => emit.push(Bytes::copy_from_slice(bytes)),
            }
            return;
        }
        let mut copy = *bytes;
        copy[3] = (copy[3] & 0xF0) | cc_out;
        if flag_here {
            copy[5] |= 0x80;
            self.counters.flags_set += 1;
        }
        self.counters.rewritten += 1;
        emit.push(Bytes::copy_from_slice(&copy));
    }
}

/// An adaptation-field-only packet on `pid` with counter `cc` and the
/// discontinuity_indicator set.
fn af_only(pid: Pid, cc: u8) -> [u8; PACKET_LEN] {
    let mut p = [0xFFu8; PACKET_LEN];
    p[0] = SYNC_BYTE;
    p[1] = (pid.value() >> 8) as u8;
    p[2] = pid.value() as u8;
    p[3] = (afc::ADAPTATION << 4) | (cc & 0x0F);
    p[4] = 183;
    p[5] = 0x80;
    p
}

/// Splits a section into packets of `pid` (pointer_field 0, 0xFF stuffing)
/// continuing from counter `cc` ([`NONE`]: start at 0); with `flag`, the
/// first packet carries an adaptation field with the discontinuity_indicator.
fn packetize(section: &[u8], pid: Pid, cc: &mut u8, flag: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity((section.len() / 180 + 1) * PACKET_LEN);
    let mut rest = section;
    let mut first = true;
    while first || !rest.is_empty() {
        let next = if *cc == NONE { 0 } else { (*cc + 1) & 0x0F };
        *cc = next;
        let mut p = [0xFFu8; PACKET_LEN];
        p[0] = SYNC_BYTE;
        p[1] = (u8::from(first) << 6) | (pid.value() >> 8) as u8;
        p[2] = pid.value() as u8;
        let mut at = 4;
        if first && flag {
            p[3] = ((afc::ADAPTATION | afc::PAYLOAD) << 4) | next;
            p[4] = 1;
            p[5] = 0x80;
            at = 6;
        } else {
            p[3] = (afc::PAYLOAD << 4) | next;
        }
        if first {
            p[at] = 0;
            at += 1;
        }
        let take = rest.len().min(PACKET_LEN - at);
        p[at..at + take].copy_from_slice(&rest[..take]);
        rest = &rest[take..];
        first = false;
        out.extend_from_slice(&p);
    }
    out
}
