//! The transport stream `bench send` puts in its datagrams. Pure: a packet
//! is a function of its index in the stream and the rate, so any datagram can
//! be rebuilt from its number and a receiver knows exactly what to expect.
//!
//! The stream is one program (number 1) in whole 188-byte packets
//! (ISO/IEC 13818-1 §2.4.3.2), laid out in periods of `psi_every` packets:
//!
//! ```text
//!  position in period:  0     1     2         2+q   2+2q ...  psi_every-1
//!                      PAT   PMT   data+PCR  data  data+PCR    data
//! ```
//!
//! - PAT on PID 0 and PMT on [`PMT_PID`], one each per period (about 100 ms
//!   of stream at the rate); the PMT lists one private stream (type 0x06) on
//!   [`DATA_PID`], which is also the PCR PID.
//! - Every data packet carries its 64-bit packet index, big-endian, in the
//!   first 8 payload bytes (opaque private data to any demuxer), so a
//!   receiver can count lost packets exactly; the continuity counter alone
//!   misses a loss of a multiple of 16 packets.
//! - Every `pcr_every`-th data packet (about 20 ms) carries a PCR in an
//!   adaptation field: the time at which its first byte is due at the rate,
//!   in 27 MHz ticks. The PCR is consistent with the send rate, so
//!   `uringest probe` of a capture measures the rate the sender aimed for.
//! - Continuity counters run per PID, +1 per packet across datagrams
//!   (§2.4.3.3); no packet has discontinuity_indicator set.
//!
//! [`PayloadRing`] holds one batch of datagrams and rewrites only the bytes
//! that change from one batch to the next: headers, the adaptation field
//! and the index of data packets; whole packets only where a PSI packet
//! enters or leaves a slot.

use crc::{CRC_32_MPEG_2, Crc};

use crate::ts::packet::{PACKET_LEN, SYNC_BYTE};

/// PID of the data packets, which also carry the PCR.
pub const DATA_PID: u16 = 0x100;
/// PID of the program map table.
pub const PMT_PID: u16 = 0x1000;
/// The one program's number.
pub const PROGRAM_NUMBER: u16 = 1;
/// Byte all payload not otherwise used is filled with.
pub const FILLER: u8 = 0xFF;

/// Bytes at the start of a data packet that change per packet: header,
/// adaptation field room (PCR packets) and the packet index.
const DATA_HEAD: usize = 4 + 8 + 8;

/// What a packet position carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketKind {
    /// Program association table, PID 0.
    Pat,
    /// Program map table, [`PMT_PID`].
    Pmt,
    /// Private data on [`DATA_PID`].
    Data,
    /// Private data on [`DATA_PID`] with a PCR.
    DataPcr,
}

/// The packet layout of a stream sent at one rate.
#[derive(Clone, Debug)]
pub struct TsPattern {
    rate_bps: u64,
    pcr_every: u64,
    psi_every: u64,
    pat: [u8; PACKET_LEN],
    pmt: [u8; PACKET_LEN],
}

impl TsPattern {
    /// The layout for `rate_bps` bits per second: a PCR about every 20 ms
    /// and PSI about every 100 ms (less often at rates too low for that).
    pub fn new(rate_bps: u64) -> Self {
        let rate_bps = rate_bps.max(1);
        let packets_per_sec = rate_bps / (PACKET_LEN as u64 * 8);
        let pcr_every = (packets_per_sec / 50).max(2);
        TsPattern { rate_bps, pcr_every, psi_every: pcr_every * 5, pat: pat_packet(), pmt: pmt_packet() }
    }

    /// Data packets between PCRs.
    pub fn pcr_every(&self) -> u64 {
        self.pcr_every
    }

    /// Packets between PATs.
    pub fn psi_every(&self) -> u64 {
        self.psi_every
    }

    /// What packet `i` of the stream carries.
    pub fn kind(&self, i: u64) -> PacketKind {
        match i % self.psi_every {
            0 => PacketKind::Pat,
            1 => PacketKind::Pmt,
            pos if (pos - 2) % self.pcr_every == 0 => PacketKind::DataPcr,
            _ => PacketKind::Data,
        }
    }

    /// Continuity counter of packet `i`, counted on its own PID.
    pub fn cc(&self, i: u64) -> u8 {
        let period = i / self.psi_every;
        let pos = i % self.psi_every;
        let n = match self.kind(i) {
            PacketKind::Pat | PacketKind::Pmt => period,
            // Data packets before i: all packets but two PSI per period.
            PacketKind::Data | PacketKind::DataPcr => i - 2 * period - pos.min(2),
        };
        (n & 0x0F) as u8
    }

    /// PCR of packet `i` in 27 MHz ticks (before the 33-bit wrap): the time
    /// its first bit is due at the rate.
    pub fn pcr_ticks(&self, i: u64) -> u64 {
        let ticks = u128::from(i) * (PACKET_LEN as u128 * 8) * 27_000_000 / u128::from(self.rate_bps);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// Writes packet `i` into `out`. `out_kind` is what `out` held before
    /// (`None` for unknown); bytes already right are left alone.
    pub fn write(&self, i: u64, out: &mut [u8; PACKET_LEN], out_kind: Option<PacketKind>) -> PacketKind {
        let kind = self.kind(i);
        let cc = self.cc(i);
        match kind {
            PacketKind::Pat | PacketKind::Pmt => {
                if out_kind != Some(kind) {
                    out.copy_from_slice(if kind == PacketKind::Pat { &self.pat } else { &self.pmt });
                }
                out[3] = (out[3] & 0xF0) | cc;
            }
            PacketKind::Data | PacketKind::DataPcr => {
                if !matches!(out_kind, Some(PacketKind::Data | PacketKind::DataPcr)) {
                    out.fill(FILLER);
                }
                out[0] = SYNC_BYTE;
                out[1] = (DATA_PID >> 8) as u8;
                out[2] = DATA_PID as u8;
                let index = i.to_be_bytes();
                if kind == PacketKind::DataPcr {
                    out[3] = 0x30 | cc; // adaptation field and payload
                    out[4] = 7; // adaptation_field_length: flags + PCR
                    out[5] = 0x10; // PCR_flag
                    let ticks = self.pcr_ticks(i);
                    let base = (ticks / 300) & ((1 << 33) - 1);
                    let ext = ticks % 300;
                    out[6] = (base >> 25) as u8;
                    out[7] = (base >> 17) as u8;
                    out[8] = (base >> 9) as u8;
                    out[9] = (base >> 1) as u8;
                    out[10] = ((base & 1) << 7) as u8 | 0x7E | (ext >> 8) as u8;
                    out[11] = ext as u8;
                    out[12..DATA_HEAD].copy_from_slice(&index);
                } else {
                    out[3] = 0x10 | cc; // payload only
                    out[4..12].copy_from_slice(&index);
                    out[12..DATA_HEAD].fill(FILLER);
                }
            }
        }
        kind
    }
}

/// One section in a packet: PUSI set, pointer_field 0, stuffing after.
fn psi_packet(pid: u16, section: &[u8]) -> [u8; PACKET_LEN] {
    let mut p = [FILLER; PACKET_LEN];
    p[0] = SYNC_BYTE;
    p[1] = 0x40 | (pid >> 8) as u8;
    p[2] = pid as u8;
    p[3] = 0x10;
    p[4] = 0; // pointer_field
    let crc = Crc::<u32>::new(&CRC_32_MPEG_2).checksum(section);
    p[5..5 + section.len()].copy_from_slice(section);
    p[5 + section.len()..9 + section.len()].copy_from_slice(&crc.to_be_bytes());
    p
}

/// PAT (§2.4.4.3): transport_stream_id 1, program 1 → [`PMT_PID`].
fn pat_packet() -> [u8; PACKET_LEN] {
    let [pn_hi, pn_lo] = PROGRAM_NUMBER.to_be_bytes();
    let section = [
        0x00, // table_id
        0xB0,
        13, // section_syntax_indicator, section_length (9 + 4 CRC)
        0x00,
        0x01, // transport_stream_id
        0xC1, // version 0, current_next
        0x00,
        0x00, // section_number, last_section_number
        pn_hi,
        pn_lo,
        0xE0 | (PMT_PID >> 8) as u8,
        PMT_PID as u8,
    ];
    psi_packet(0, &section)
}

/// PMT (§2.4.4.8): PCR on [`DATA_PID`], one private PES stream (0x06) there.
fn pmt_packet() -> [u8; PACKET_LEN] {
    let [pn_hi, pn_lo] = PROGRAM_NUMBER.to_be_bytes();
    let section = [
        0x02, // table_id
        0xB0,
        18, // section_length: 9 fixed + 5 for the stream + 4 CRC
        pn_hi,
        pn_lo,
        0xC1,
        0x00,
        0x00,
        0xE0 | (DATA_PID >> 8) as u8,
        DATA_PID as u8, // PCR_PID
        0xF0,
        0x00, // program_info_length 0
        0x06,
        0xE0 | (DATA_PID >> 8) as u8,
        DATA_PID as u8,
        0xF0,
        0x00,
    ];
    psi_packet(PMT_PID, &section)
}

/// One batch of datagrams, ready to send, rebuilt in place per batch.
#[derive(Debug)]
pub struct PayloadRing {
    pattern: TsPattern,
    datagram_bytes: usize,
    buf: Vec<u8>,
    kinds: Vec<Option<PacketKind>>,
}

impl PayloadRing {
    /// Room for `max_datagrams` datagrams of `datagram_bytes` bytes, a
    /// multiple of 188.
    pub fn new(pattern: TsPattern, datagram_bytes: usize, max_datagrams: usize) -> Self {
        let datagram_bytes = datagram_bytes.max(PACKET_LEN) / PACKET_LEN * PACKET_LEN;
        let len = datagram_bytes * max_datagrams.max(1);
        PayloadRing { pattern, datagram_bytes, buf: vec![FILLER; len], kinds: vec![None; len / PACKET_LEN] }
    }

    /// Bytes per datagram.
    pub fn datagram_bytes(&self) -> usize {
        self.datagram_bytes
    }

    /// Most datagrams one [`PayloadRing::fill`] returns.
    pub fn capacity(&self) -> usize {
        self.buf.len() / self.datagram_bytes
    }

    /// Datagrams `first..first + count` (count capped at the capacity),
    /// back to back.
    pub fn fill(&mut self, first: u64, count: usize) -> &[u8] {
        let count = count.min(self.capacity());
        let per = (self.datagram_bytes / PACKET_LEN) as u64;
        let packets = count * self.datagram_bytes / PACKET_LEN;
        let first_packet = first.saturating_mul(per);
        let slots = self.buf.chunks_exact_mut(PACKET_LEN).zip(self.kinds.iter_mut()).take(packets);
        for (n, (chunk, kind)) in (0u64..).zip(slots) {
            if let Ok(packet) = <&mut [u8; PACKET_LEN]>::try_from(chunk) {
                *kind = Some(self.pattern.write(first_packet + n, packet, *kind));
            }
        }
        &self.buf[..count * self.datagram_bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::analyze::Analyzer;
    use crate::ts::packet::{Cc, Pid, TsPacket};

    #[test]
    fn cc_runs_per_pid_across_datagrams() {
        let pattern = TsPattern::new(2_000_000);
        let mut ring = PayloadRing::new(pattern.clone(), 1316, 3);
        let mut last: std::collections::HashMap<u16, Cc> = Default::default();
        let mut index = 0u64;
        let mut counts = [0u64; 3];
        // 400 batches of 1..=3 datagrams; every packet continues its PID.
        for b in 0..400u64 {
            let count = (b % 3 + 1) as usize;
            let bytes = ring.fill(index / 7, count).to_vec();
            assert_eq!(bytes.len(), count * 1316);
            for chunk in bytes.chunks_exact(PACKET_LEN) {
                let p = TsPacket::from_slice(chunk).unwrap();
                assert!(p.has_sync());
                let pid = p.pid().value();
                if let Some(prev) = last.get(&pid) {
                    assert!(p.cc().follows(*prev), "pid {pid:#x} packet {index}");
                }
                last.insert(pid, p.cc());
                match pid {
                    0 => counts[0] += 1,
                    PMT_PID => counts[1] += 1,
                    DATA_PID => {
                        counts[2] += 1;
                        let payload = p.payload().unwrap();
                        assert_eq!(u64::from_be_bytes(payload[..8].try_into().unwrap()), index);
                        if let Some(pcr) = p.adaptation_field().and_then(|af| af.pcr()) {
                            assert_eq!(pcr.ticks(), pattern.pcr_ticks(index));
                        }
                    }
                    other => panic!("unexpected pid {other}"),
                }
                index += 1;
            }
        }
        assert!(counts[0] > 1 && counts[0] == counts[1] && counts[2] > counts[0]);
        assert_eq!(Pid::new(DATA_PID).value(), DATA_PID);
    }

    #[test]
    fn the_analyzer_sees_one_clean_program_at_the_rate() {
        // Two seconds of stream at 5 Mbit/s, sent as 7-packet datagrams.
        let rate = 5_000_000;
        let mut ring = PayloadRing::new(TsPattern::new(rate), 1316, 16);
        let datagrams = rate * 2 / (1316 * 8);
        let mut stream = Vec::new();
        let mut d = 0;
        while d < datagrams {
            let n = (datagrams - d).min(16) as usize;
            stream.extend_from_slice(ring.fill(d, n));
            d += n as u64;
        }
        let mut analyzer = Analyzer::new();
        analyzer.analyze(&stream, None);
        let report = analyzer.report("bench");
        assert_eq!(report.errors.cc_errors, 0);
        assert_eq!(report.errors.psi_crc_errors, 0);
        assert_eq!(report.errors.psi_malformed_sections, 0);
        assert_eq!(report.programs.len(), 1);
        assert_eq!(report.programs[0].pcr_pid, Some(DATA_PID));
        assert_eq!(report.programs[0].streams[0].pid, DATA_PID);
        let bitrate = report.bitrate_bps.unwrap() as f64;
        assert!((bitrate / rate as f64 - 1.0).abs() < 0.01, "bitrate {bitrate}");
    }

    #[test]
    fn rates_too_low_for_20_ms_pcr_still_have_a_layout() {
        let p = TsPattern::new(1_000);
        assert_eq!(p.pcr_every(), 2);
        assert_eq!(p.kind(0), PacketKind::Pat);
        assert_eq!(p.kind(1), PacketKind::Pmt);
        assert_eq!(p.kind(2), PacketKind::DataPcr);
        assert_eq!(p.kind(3), PacketKind::Data);
        assert_eq!(p.kind(10), PacketKind::Pat);
        assert_eq!(p.cc(12), 8 & 0x0F);
    }
}
