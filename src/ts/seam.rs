//! Seamless looping of a transport-stream file: [`LoopSeam`] rewrites each
//! pass after the first so a receiver sees one continuous stream.
//!
//! On pass `k` (counting from 0) every timestamp is moved forward by
//! `k × period`, and each PID's continuity counter by a per-PID delta:
//!
//! - PCR (adaptation field, ISO/IEC 13818-1 §2.4.3.4–5): 27 MHz, modulo
//!   2^33 × 300. PTS and DTS (PES header, §2.4.3.6–7): 90 kHz, modulo 2^33,
//!   moved by `period / 300`. `period` is rounded to a multiple of 300
//!   ticks so the two clocks move together.
//! - `period` is the longest of the timelines measured during pass 0, so
//!   no stream overlaps itself at the seam (a receiver's buffer would grow
//!   by the overlap on every pass; ffmpeg's `-stream_loop` makes the same
//!   choice):
//!   - the PCR: (last PCR − first PCR) + the mean regular PCR interval, on
//!     the PID given, else the first PID seen carrying a PCR;
//!   - each PES stream (up to 32 PIDs): (last DTS − first DTS) (PTS when
//!     there is no DTS) + the duration of its last PES. For video
//!     (stream_id 0xE0–0xEF) that is the mean PES interval, one frame at a
//!     constant frame rate. For other streams with a PES_packet_length, it
//!     is the last PES's payload bytes at the stream's mean bytes per tick
//!     (audio PES carry several frames, the last one often fewer), else
//!     the mean interval. A stream whose span exceeds the PCR's by more
//!     than 1 s (a discontinuity inside the file) is not trusted.
//!
//!   With a PCR, the first PCR of a pass thus follows the last of the
//!   previous pass by the mean interval plus the overhang of the longest
//!   stream (45 ms instead of 20 on `cbr_5mbit.ts`, whose AAC runs 27 ms
//!   past its video): no jump back, no repeated time. A file without PCR
//!   is measured by its PES streams alone; a file with neither keeps its
//!   timestamps (period 0) and only its counters are carried on.
//! - Continuity counters (§2.4.3.3): the first packet of a PID in a new pass
//!   must follow the last packet of that PID in the previous pass (+1 when
//!   it carries payload, equal when it does not). Every packet of the PID
//!   then gets the same delta mod 16, which keeps the file's own order
//!   (duplicates, adaptation-only packets) intact. PSI PIDs are treated
//!   like any other; the null PID is left alone.
//!
//! What it does not touch: the discontinuity_indicator (never set: the
//! point is that there is no discontinuity), OPCR, timestamps inside
//! elementary streams (SEI, ADTS), TDT/TOT wall-clock tables, section
//! versions and CRCs (no PSI content changes). Packets with
//! transport_error_indicator set are passed unmodified and not tracked:
//! their header is not trusted. A PES header that does not fit in its first
//! packet, or whose timestamp marker bits are wrong, is left as it is.
//!
//! Order in a file input: seam rewrite first, then
//! [`PcrPacer`](crate::ts::pace::PcrPacer), so pacing sees the continuous
//! timeline. Pass 0 goes through [`LoopSeam::observe`] (read-only: the mmap
//! is sent without a copy); later passes are copied into a buffer and go
//! through [`LoopSeam::rewrite`]; [`LoopSeam::start_iteration`] is called
//! at each seam. No allocation per packet: the per-PID table is allocated
//! once.
//!
//! Invariants: a rewrite keeps the length and every byte except the CC
//! nibble, the PCR base/extension bits and the PTS/DTS bits (the marker
//! bits and reserved bits are kept); pass 0 is never modified.

use std::time::Duration;

use thiserror::Error;

use super::packet::{PACKET_LEN, Pcr, Pid, TsPacket, afc};
use super::timestamp::{dts_or_pts, read_timestamp, timestamp_fields};

/// PTS/DTS wrap at 2^33 ticks of 90 kHz.
const TIMESTAMP_WRAP: u64 = 1 << 33;
/// Marks a PID whose counter has not been seen.
const NO_CC: u8 = 0xFF;
/// Longest interval taken as regular when measuring the period: 1 s.
const MAX_INTERVAL_27MHZ: u64 = Pcr::HZ;
/// Elementary streams measured for the period.
const ES_TRACKS: usize = 32;

/// Why a chunk could not be processed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum SeamError {
    /// A chunk was not a whole number of packets.
    #[error("chunk of {len} bytes is not a whole number of 188-byte packets")]
    Unaligned {
        /// Its length.
        len: usize,
    },
}

/// What the seam did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeamCounters {
    /// Seams crossed ([`LoopSeam::start_iteration`] calls).
    pub iterations_total: u64,
    /// PCRs moved.
    pub pcrs_rewritten_total: u64,
    /// PTS and DTS values moved.
    pub timestamps_rewritten_total: u64,
}

/// Continuity state of one PID.
#[derive(Clone, Copy, Debug)]
struct PidSeam {
    /// Counter of the PID's first packet in the file, as read.
    first_cc: u8,
    /// Whether that packet carried payload.
    first_payload: bool,
    /// Counter of the PID's last packet sent, as written.
    last_cc: u8,
    /// Added to every counter of the PID in the current pass.
    delta: u8,
}

impl Default for PidSeam {
    fn default() -> Self {
        PidSeam { first_cc: NO_CC, first_payload: false, last_cc: NO_CC, delta: 0 }
    }
}

/// First, last and regular PCR intervals of one PID during pass 0.
#[derive(Clone, Copy, Debug)]
struct Track {
    pid: Pid,
    first: u64,
    last: u64,
    timed: u64,
    intervals: u64,
    discontinuity_pending: bool,
}

impl Track {
    fn new(pid: Pid, value: u64) -> Track {
        Track { pid, first: value, last: value, timed: 0, intervals: 0, discontinuity_pending: false }
    }

    /// Records a PCR; intervals above 1 s or across a discontinuity do not
    /// count toward the mean.
    fn record(&mut self, value: u64) {
        let delta = (value + Pcr::WRAP - self.last) % Pcr::WRAP;
        if !std::mem::take(&mut self.discontinuity_pending) && delta > 0 && delta <= MAX_INTERVAL_27MHZ {
            self.timed += delta;
            self.intervals += 1;
        }
        self.last = value;
    }

    /// (last − first) + mean interval, or `None` without a regular interval.
    fn period(&self) -> Option<u64> {
        let span = (self.last + Pcr::WRAP - self.first) % Pcr::WRAP;
        (self.intervals > 0).then(|| span + self.timed / self.intervals)
    }
}

/// The PES starts of one elementary stream during pass 0.
#[derive(Clone, Copy, Debug)]
struct EsTrack {
    pid: Pid,
    video: bool,
    /// DTS (or PTS) of the first and last PES, 90 kHz.
    first: u64,
    last: u64,
    starts: u64,
    /// Every PES so far declared its length.
    sized: bool,
    /// Payload bytes of all PES but the last, and of the last.
    bytes_before_last: u64,
    last_bytes: u64,
}

impl EsTrack {
    fn record(&mut self, ts: u64, bytes: u64) {
        self.bytes_before_last += self.last_bytes;
        self.sized &= bytes > 0;
        self.last = ts;
        self.last_bytes = bytes;
        self.starts += 1;
    }

    /// Span plus the last PES's duration, in 27 MHz ticks.
    fn period(&self) -> Option<u64> {
        if self.starts < 2 {
            return None;
        }
        let span = (self.last + TIMESTAMP_WRAP - self.first) % TIMESTAMP_WRAP;
        let last = if !self.video && self.sized && self.bytes_before_last > 0 {
            (self.last_bytes * span).div_ceil(self.bytes_before_last)
        } else {
            span / (self.starts - 1)
        };
        Some((span + last) * 300)
    }
}

/// Rewrites the passes of a looped file; see the module docs.
#[derive(Clone, Debug)]
pub struct LoopSeam {
    pids: Box<[PidSeam]>,
    /// PIDs with a counter seen, for the seam.
    seen: Vec<Pid>,
    pcr_pid: Option<Pid>,
    pcr: Option<Track>,
    /// PES streams, at most [`ES_TRACKS`].
    es: Vec<EsTrack>,
    iteration: u64,
    period_ticks: Option<u64>,
    /// Added to PCRs in the current pass (27 MHz, modulo 2^33 × 300).
    offset_ticks: u64,
    rewriting: bool,
    counters: SeamCounters,
}

impl LoopSeam {
    /// A seam timed by `pcr_pid`'s PCRs, or by the first PID carrying one.
    pub fn new(pcr_pid: Option<Pid>) -> LoopSeam {
        LoopSeam {
            pids: vec![PidSeam::default(); Pid::COUNT].into_boxed_slice(),
            seen: Vec::with_capacity(64),
            pcr_pid,
            pcr: None,
            es: Vec::with_capacity(ES_TRACKS),
            iteration: 0,
            period_ticks: None,
            offset_ticks: 0,
            rewriting: false,
            counters: SeamCounters::default(),
        }
    }

    /// The pass being processed, from 0.
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// Whether chunks of the current pass must go through
    /// [`LoopSeam::rewrite`]; when false, [`LoopSeam::observe`] suffices.
    pub fn needs_rewrite(&self) -> bool {
        self.rewriting
    }

    /// The time one pass adds to the timeline, once measured (at the first
    /// seam).
    pub fn period(&self) -> Option<Duration> {
        self.period_ticks.map(|t| Duration::from_nanos(t * 1000 / 27))
    }

    /// What is currently added to PCRs, in 27 MHz ticks.
    pub fn offset_ticks(&self) -> u64 {
        self.offset_ticks
    }

    /// Counters.
    pub fn counters(&self) -> SeamCounters {
        self.counters
    }

    /// Records a chunk sent unmodified (pass 0, or any pass while
    /// [`LoopSeam::needs_rewrite`] is false).
    pub fn observe(&mut self, chunk: &[u8]) -> Result<(), SeamError> {
        if chunk.len() % PACKET_LEN != 0 {
            return Err(SeamError::Unaligned { len: chunk.len() });
        }
        for bytes in chunk.chunks_exact(PACKET_LEN) {
            if let Some(pkt) = TsPacket::from_slice(bytes) {
                self.track(&pkt);
            }
        }
        Ok(())
    }

    /// Rewrites a chunk of the current pass in place and records it.
    pub fn rewrite(&mut self, chunk: &mut [u8]) -> Result<(), SeamError> {
        if chunk.len() % PACKET_LEN != 0 {
            return Err(SeamError::Unaligned { len: chunk.len() });
        }
        for bytes in chunk.chunks_exact_mut(PACKET_LEN) {
            let Ok(p) = <&mut [u8; PACKET_LEN]>::try_from(bytes) else { continue };
            if self.rewriting {
                self.rewrite_packet(p);
            }
            self.track(&TsPacket::new(p));
        }
        Ok(())
    }

    /// Ends a pass: measures the period after pass 0, moves the timestamp
    /// offset on by one period and sets each PID's counter delta.
    pub fn start_iteration(&mut self) {
        let period = match self.period_ticks {
            Some(period) => period,
            None => {
                let period = self.measure_period();
                self.period_ticks = Some(period);
                period
            }
        };
        self.offset_ticks = (self.offset_ticks + period) % Pcr::WRAP;
        let mut any_delta = false;
        for pid in &self.seen {
            let e = &mut self.pids[pid.index()];
            let target = e.last_cc + u8::from(e.first_payload);
            e.delta = target.wrapping_sub(e.first_cc) & 0x0F;
            any_delta |= e.delta != 0;
        }
        self.rewriting = self.offset_ticks != 0 || any_delta;
        self.iteration += 1;
        self.counters.iterations_total += 1;
    }

    /// The longest timeline of pass 0 (see the module docs), a multiple of
    /// 300 ticks so PTS/DTS move by exactly period / 300.
    fn measure_period(&self) -> u64 {
        let pcr = self.pcr.and_then(|t| t.period());
        let trusted = |p: &u64| pcr.is_none_or(|pcr| *p <= pcr + MAX_INTERVAL_27MHZ);
        let es = self.es.iter().filter_map(EsTrack::period).filter(trusted).max();
        pcr.max(es).map_or(0, |p| p.div_ceil(300) * 300) % Pcr::WRAP
    }

    /// Applies the current offsets to one packet.
    fn rewrite_packet(&mut self, p: &mut [u8; PACKET_LEN]) {
        let pkt = TsPacket::new(p);
        let pid = pkt.pid();
        if pkt.transport_error() || pid == Pid::NULL {
            return;
        }
        let delta = self.pids[pid.index()].delta;
        p[3] = (p[3] & 0xF0) | (p[3].wrapping_add(delta) & 0x0F);
        if self.offset_ticks == 0 {
            return;
        }
        if let Some(pcr) = TsPacket::new(p).adaptation_field().and_then(|af| af.pcr()) {
            write_pcr(p, (pcr.ticks() + self.offset_ticks) % Pcr::WRAP);
            self.counters.pcrs_rewritten_total += 1;
        }
        let Some(start) = pes_start(p) else { return };
        let Some(fields) = p.get(start..).and_then(timestamp_fields) else { return };
        let offset = self.offset_ticks / 300;
        for at in fields.into_iter().flatten() {
            let field = &mut p[start + at..start + at + 5];
            if let Some(ts) = read_timestamp(field) {
                write_timestamp(field, (ts + offset) % TIMESTAMP_WRAP);
                self.counters.timestamps_rewritten_total += 1;
            }
        }
    }

    /// Records a packet as sent: its counter, and in pass 0 its clocks.
    fn track(&mut self, pkt: &TsPacket<'_>) {
        let pid = pkt.pid();
        if pkt.transport_error() || pid == Pid::NULL {
            return;
        }
        let e = &mut self.pids[pid.index()];
        if e.first_cc == NO_CC {
            e.first_cc = pkt.cc().value();
            e.first_payload = pkt.has_payload();
            self.seen.push(pid);
        }
        e.last_cc = pkt.cc().value();
        if self.iteration > 0 {
            return;
        }
        let af = pkt.adaptation_field();
        let discontinuity = af.is_some_and(|af| af.discontinuity());
        if let Some(pcr) = af.and_then(|af| af.pcr()) {
            let wanted = self.pcr_pid.is_none_or(|p| p == pid);
            match &mut self.pcr {
                None if wanted => self.pcr = Some(Track::new(pid, pcr.ticks())),
                Some(t) if t.pid == pid => {
                    t.discontinuity_pending |= discontinuity;
                    t.record(pcr.ticks());
                }
                _ => {}
            }
        }
        let Some(start) = pes_start(pkt.bytes()) else { return };
        let payload = &pkt.bytes()[start..];
        let Some(ts) = dts_or_pts(payload) else { return };
        // PES_packet_length counts from after itself; the payload follows
        // the 3 flag/length bytes and the header data.
        let length = u64::from(u16::from_be_bytes([payload[4], payload[5]]));
        let bytes = length.saturating_sub(3 + u64::from(payload[8]));
        if let Some(track) = self.es.iter_mut().find(|t| t.pid == pid) {
            track.record(ts, bytes);
        } else if self.es.len() < ES_TRACKS {
            self.es.push(EsTrack {
                pid,
                video: (0xE0..=0xEF).contains(&payload[3]),
                first: ts,
                last: ts,
                starts: 1,
                sized: bytes > 0,
                bytes_before_last: 0,
                last_bytes: bytes,
            });
        }
    }
}

/// Writes a PCR into the adaptation field of a packet known to carry one
/// (§2.4.3.4: base 33 bits, 6 reserved bits kept, extension 9 bits).
fn write_pcr(p: &mut [u8; PACKET_LEN], ticks: u64) {
    let (base, ext) = (ticks / 300, ticks % 300);
    p[6] = (base >> 25) as u8;
    p[7] = (base >> 17) as u8;
    p[8] = (base >> 9) as u8;
    p[9] = (base >> 1) as u8;
    p[10] = ((base & 1) as u8) << 7 | (p[10] & 0x7E) | (ext >> 8) as u8;
    p[11] = ext as u8;
}

/// Offset of the PES header in a packet that starts one: payload present,
/// payload_unit_start set, not the PAT or null PID.
fn pes_start(p: &[u8; PACKET_LEN]) -> Option<usize> {
    let pkt = TsPacket::new(p);
    if !pkt.payload_unit_start() || pkt.pid() == Pid::PAT || pkt.pid() == Pid::NULL {
        return None;
    }
    let control = pkt.adaptation_field_control();
    if control & afc::PAYLOAD == 0 {
        return None;
    }
    let start = if control & afc::ADAPTATION != 0 { 5 + usize::from(p[4]) } else { 4 };
    (start < PACKET_LEN).then_some(start)
}

/// Writes a 33-bit timestamp, keeping the 4-bit prefix and marker bits.
fn write_timestamp(b: &mut [u8], ts: u64) {
    if let [b0, b1, b2, b3, b4] = b {
        *b0 = (*b0 & 0xF0) | ((ts >> 29) as u8 & 0x0E) | 1;
        *b1 = (ts >> 22) as u8;
        *b2 = ((ts >> 14) as u8 & 0xFE) | 1;
        *b3 = (ts >> 7) as u8;
        *b4 = ((ts << 1) as u8 & 0xFE) | 1;
    }
}

#[cfg(test)]
mod tests;
