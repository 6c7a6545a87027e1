//! AV packets back to MPEG-TS: PAT, PMT, PES, PCR, continuity counters.
//!
//! [`Muxer`] is sans-IO: [`Muxer::push`] appends whole 188-byte transport
//! packets for one [`AvPacket`] to a caller's [`BytesMut`], so a hub
//! publisher mux a batch, then `split().freeze()`s the buffer into one
//! `Bytes` chunk without a copy. Timestamps are taken as they come (90 kHz,
//! unwrapped) and written modulo 2^33; nothing is reordered or delayed.
//!
//! - Tracks are keyed by [`AvPacket::track`]; each new one gets the next
//!   elementary PID from [`MuxConfig::first_es_pid`] and bumps the PMT
//!   version. At most [`MuxConfig::max_tracks`]; packets of any further
//!   track are refused and counted.
//! - PAT and PMT go out before the first packet, whenever the PMT changes,
//!   before every video keyframe (a receiver joining there can start at
//!   once) and whenever DTS moved [`MuxConfig::psi_interval`] on.
//! - PCR rides on the first video track (the first audio track when there
//!   is none), in the first packet of each of its PES, as DTS minus
//!   [`MuxConfig::mux_delay`], never going back except after a
//!   discontinuity on the PCR track. When that track is sparse, a packet of
//!   another track whose DTS is more than [`MuxConfig::pcr_interval`] past
//!   the last PCR first sends one in a packet of its own.
//! - The first packet of a keyframe's PES has random_access_indicator; the
//!   first packet of a track after an [`AvPacket::discontinuity`] has
//!   discontinuity_indicator.

mod es;
mod pes;

use bytes::BytesMut;
use thiserror::Error;

use crate::ts::av::{AvPacket, Codec, TIMESCALE};
use crate::ts::packet::{PACKET_LEN, Pid};
use crate::ts::psi::{build_section, packetize, pat_body, pmt_body};
use es::EsKind;
use pes::{FirstPacket, PES_HEADER_MAX, pes_header, write_pcr_only, write_pes};

/// How the muxer lays out its program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MuxConfig {
    /// program_number in the PAT and PMT.
    pub program_number: u16,
    /// transport_stream_id in the PAT.
    pub transport_stream_id: u16,
    /// PID of the PMT.
    pub pmt_pid: u16,
    /// PID of the first track; later tracks take the following PIDs.
    pub first_es_pid: u16,
    /// Most tracks muxed; packets of further tracks are refused.
    pub max_tracks: u16,
    /// Longest DTS span (90 kHz) between PAT/PMT repetitions.
    pub psi_interval: i64,
    /// DTS span (90 kHz) past which a packet of a non-PCR track sends a
    /// PCR of its own first; the PCR track's PES each carry one anyway, so
    /// this only bounds the gaps of a sparse PCR track (to this plus the
    /// other tracks' packet spacing).
    pub pcr_interval: i64,
    /// How far PCR runs behind DTS (90 kHz): the decoder's buffering time.
    pub mux_delay: i64,
}

impl Default for MuxConfig {
    /// ffmpeg's layout: program 1, PMT on 0x1000, streams from 0x100; PSI
    /// every 100 ms; a lone PCR after 40 ms without one (ISO/IEC 13818-1's
    /// bound); PCR 700 ms behind DTS (ffmpeg's default `-muxdelay`).
    fn default() -> Self {
        MuxConfig {
            program_number: 1,
            transport_stream_id: 1,
            pmt_pid: 0x1000,
            first_es_pid: 0x100,
            max_tracks: 16,
            psi_interval: TIMESCALE / 10,
            pcr_interval: TIMESCALE * 40 / 1000,
            mux_delay: TIMESCALE * 7 / 10,
        }
    }
}

/// A [`MuxConfig`] the muxer cannot honour.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum MuxConfigError {
    /// A PID outside 0x0010..=0x1FFE (reserved or null).
    #[error("mux config: {field} PID {pid:#06x} is outside 0x0010..=0x1FFE")]
    Pid {
        /// Which setting.
        field: &'static str,
        /// Its value.
        pid: u32,
    },
    /// The PMT PID falls among the elementary PIDs.
    #[error("mux config: pmt_pid {pmt:#06x} collides with the elementary PIDs {first:#06x}..={last:#06x}")]
    PmtCollision {
        /// The PMT PID.
        pmt: u16,
        /// First elementary PID.
        first: u16,
        /// Last elementary PID.
        last: u32,
    },
    /// max_tracks of 0, or more than a PMT section holds.
    #[error("mux config: max_tracks {0} is outside 1..=64")]
    MaxTracks(u16),
    /// An interval that is not positive.
    #[error("mux config: {field} {value} must be > 0")]
    Interval {
        /// Which setting.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A negative mux delay.
    #[error("mux config: mux_delay {0} must be >= 0")]
    Delay(i64),
}

/// What the muxer did so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuxCounters {
    /// AV packets muxed.
    pub packets: u64,
    /// AV packets refused because their track was over `max_tracks`.
    pub refused: u64,
    /// Transport packets written.
    pub ts_packets: u64,
    /// PAT + PMT repetitions written.
    pub psi: u64,
    /// PCRs written.
    pub pcrs: u64,
}

/// One track's state.
#[derive(Clone, Debug)]
struct Track {
    id: u16,
    codec: Codec,
    pid: u16,
    kind: EsKind,
    /// Next continuity counter.
    cc: u8,
    /// The next packet of this PID carries discontinuity_indicator.
    discontinuity: bool,
}

/// AV packets to one MPEG-TS program. See the module docs.
#[derive(Debug)]
pub struct Muxer {
    config: MuxConfig,
    tracks: Vec<Track>,
    /// Index into `tracks` of the PCR track.
    pcr_track: Option<usize>,
    /// PAT and PMT as packets with counter 0, rebuilt when the PMT changes.
    psi_packets: Vec<[u8; PACKET_LEN]>,
    /// How many of `psi_packets` are the PAT's (the rest are the PMT's).
    pat_count: usize,
    pmt_version: u8,
    pat_cc: u8,
    pmt_cc: u8,
    /// DTS at the last PAT/PMT; `None` before the first or after a change.
    last_psi: Option<i64>,
    /// PCR base (90 kHz, unwrapped) last written.
    last_pcr: Option<i64>,
    /// Set on a PCR-track discontinuity: the next PCR may go back and says so.
    pcr_discontinuity: bool,
    counters: MuxCounters,
}

impl Muxer {
    /// A muxer with no tracks yet; checks `config`.
    pub fn new(config: MuxConfig) -> Result<Muxer, MuxConfigError> {
        let pid_ok = |field, pid: u32| {
            if (0x10..=0x1FFE).contains(&pid) { Ok(()) } else { Err(MuxConfigError::Pid { field, pid }) }
        };
        if config.max_tracks == 0 || config.max_tracks > 64 {
            return Err(MuxConfigError::MaxTracks(config.max_tracks));
        }
        pid_ok("pmt_pid", u32::from(config.pmt_pid))?;
        pid_ok("first_es_pid", u32::from(config.first_es_pid))?;
        let last = u32::from(config.first_es_pid) + u32::from(config.max_tracks) - 1;
        pid_ok("last elementary", last)?;
        if (u32::from(config.first_es_pid)..=last).contains(&u32::from(config.pmt_pid)) {
            return Err(MuxConfigError::PmtCollision { pmt: config.pmt_pid, first: config.first_es_pid, last });
        }
        for (field, value) in [("psi_interval", config.psi_interval), ("pcr_interval", config.pcr_interval)] {
            if value <= 0 {
                return Err(MuxConfigError::Interval { field, value });
            }
        }
        if config.mux_delay < 0 {
            return Err(MuxConfigError::Delay(config.mux_delay));
        }
        Ok(Muxer {
            config,
            tracks: Vec::with_capacity(usize::from(config.max_tracks)),
            pcr_track: None,
            psi_packets: Vec::new(),
            pat_count: 0,
            pmt_version: 0,
            pat_cc: 0,
            pmt_cc: 0,
            last_psi: None,
            last_pcr: None,
            pcr_discontinuity: false,
            counters: MuxCounters::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &MuxConfig {
        &self.config
    }

    /// What the muxer did so far.
    pub fn counters(&self) -> MuxCounters {
        self.counters
    }

    /// The tracks muxed so far as `(track, PID, codec)`, in PID order.
    pub fn tracks(&self) -> impl Iterator<Item = (u16, Pid, Codec)> + '_ {
        self.tracks.iter().map(|t| (t.id, Pid::new(t.pid), t.codec))
    }

    /// The PMT version last written.
    pub fn pmt_version(&self) -> u8 {
        self.pmt_version
    }

    /// Appends the transport packets for `pkt` (and any PAT, PMT or PCR
    /// due before it) to `out`; returns how many 188-byte packets that was,
    /// 0 when the packet was refused.
    pub fn push(&mut self, pkt: &AvPacket, out: &mut BytesMut) -> usize {
        let Some(index) = self.track_index(pkt) else {
            self.counters.refused += 1;
            return 0;
        };
        let mut written = 0;
        let is_pcr_track = self.pcr_track == Some(index);
        if pkt.discontinuity {
            self.tracks[index].discontinuity = true;
            if is_pcr_track {
                self.pcr_discontinuity = true;
            }
        }
        let video_key = pkt.keyframe && pkt.codec.is_video();
        let psi_due = match self.last_psi {
            None => true,
            Some(last) => video_key || !(0..self.config.psi_interval).contains(&pkt.dts.saturating_sub(last)),
        };
        if psi_due {
            written += self.write_psi(out);
            self.last_psi = Some(pkt.dts);
        }

        // PCR: due when none was written, the interval passed, or the PCR
        // track jumped; held monotonic otherwise.
        let target = pkt.dts.saturating_sub(self.config.mux_delay);
        let pcr = match self.last_pcr {
            _ if self.pcr_discontinuity && is_pcr_track => Some(target),
            None => Some(target),
            // Every PES of the PCR track carries one (8 bytes): its frames
            // are at most 40 ms apart for video >= 25 fps and every audio
            // codec here, so the 40 ms bound holds whatever the other
            // tracks do.
            Some(last) if is_pcr_track => Some(target.max(last)),
            // A sparse PCR track: a PCR of its own between its PES.
            Some(last) if target.saturating_sub(last) > self.config.pcr_interval => Some(target),
            Some(_) => None,
        };
        let mut first = FirstPacket { random_access: pkt.keyframe, ..FirstPacket::default() };
        // A track exists (this one), so there is a PCR track.
        if let (Some(pcr), Some(pcr_index)) = (pcr, self.pcr_track) {
            let pcr_discontinuity = std::mem::take(&mut self.pcr_discontinuity);
            self.last_pcr = Some(pcr);
            self.counters.pcrs += 1;
            if pcr_index == index {
                first.pcr = Some(pcr);
            } else {
                let t = &mut self.tracks[pcr_index];
                let pcr_disc = pcr_discontinuity || std::mem::take(&mut t.discontinuity);
                write_pcr_only(out, t.pid, t.cc.wrapping_sub(1), pcr, pcr_disc);
                written += 1;
            }
        }

        let track = &mut self.tracks[index];
        first.discontinuity = std::mem::take(&mut track.discontinuity);
        let mut hdr = [0u8; PES_HEADER_MAX];
        // Audio PES carry their exact length, as ffmpeg writes them; video
        // is unbounded (frames outgrow 16 bits).
        let bounded = pkt.codec.is_audio().then_some(pkt.payload.len());
        let hdr_len = pes_header(&mut hdr, track.kind.stream_id, pkt.pts, pkt.dts, bounded);
        written += write_pes(out, track.pid, &mut track.cc, &hdr[..hdr_len], &pkt.payload, first);
        self.counters.packets += 1;
        self.counters.ts_packets += written as u64;
        written
    }

    /// [`Muxer::push`] for each packet in order; returns the packets written.
    pub fn push_all<'a>(&mut self, pkts: impl IntoIterator<Item = &'a AvPacket>, out: &mut BytesMut) -> usize {
        pkts.into_iter().map(|p| self.push(p, out)).sum()
    }

    /// The index of `pkt`'s track, adding it (or updating its codec) and
    /// rebuilding the PMT as needed; `None` when over the track cap.
    fn track_index(&mut self, pkt: &AvPacket) -> Option<usize> {
        if let Some(i) = self.tracks.iter().position(|t| t.id == pkt.track) {
            if self.tracks[i].codec != pkt.codec {
                let t = &mut self.tracks[i];
                t.codec = pkt.codec;
                t.kind = EsKind::new(pkt.codec, &pkt.payload);
                self.pmt_changed();
            }
            return Some(i);
        }
        if self.tracks.len() >= usize::from(self.config.max_tracks) {
            return None;
        }
        let pid = self.config.first_es_pid + self.tracks.len() as u16;
        self.tracks.push(Track {
            id: pkt.track,
            codec: pkt.codec,
            pid,
            kind: EsKind::new(pkt.codec, &pkt.payload),
            cc: 0,
            discontinuity: false,
        });
        self.pmt_changed();
        Some(self.tracks.len() - 1)
    }

    /// Picks the PCR track again, bumps the PMT version and rebuilds the
    /// PSI packets, sent before the next packet.
    fn pmt_changed(&mut self) {
        let pcr =
            self.tracks.iter().position(|t| t.codec.is_video()).or(if self.tracks.is_empty() { None } else { Some(0) });
        if pcr != self.pcr_track {
            // A new PCR PID starts its own time base.
            self.pcr_track = pcr;
            self.last_pcr = None;
        }
        if !self.psi_packets.is_empty() {
            self.pmt_version = (self.pmt_version + 1) & 0x1F;
        }
        let c = &self.config;
        let mut cc = 0;
        let pat = build_section(0x00, c.transport_stream_id, 0, &pat_body(&[(c.program_number, c.pmt_pid)]));
        self.psi_packets = packetize(&pat, Pid::new(0), &mut cc);
        self.pat_count = self.psi_packets.len();
        let pcr_pid = pcr.map_or(0x1FFF, |i| self.tracks[i].pid);
        let streams: Vec<(u8, u16, &[u8])> =
            self.tracks.iter().map(|t| (t.kind.stream_type, t.pid, t.kind.descriptors())).collect();
        let pmt = build_section(0x02, c.program_number, self.pmt_version, &pmt_body(pcr_pid, &streams));
        self.psi_packets.extend(packetize(&pmt, Pid::new(c.pmt_pid), &mut cc));
        self.last_psi = None;
    }

    /// Appends the PAT and PMT with this muxer's counters.
    fn write_psi(&mut self, out: &mut BytesMut) -> usize {
        for (i, p) in self.psi_packets.iter().enumerate() {
            let cc = if i < self.pat_count { &mut self.pat_cc } else { &mut self.pmt_cc };
            let start = out.len();
            out.extend_from_slice(p);
            out[start + 3] = (p[3] & 0xF0) | *cc;
            *cc = (*cc + 1) & 0x0F;
        }
        self.counters.psi += 1;
        self.psi_packets.len()
    }
}

#[cfg(test)]
mod tests;
