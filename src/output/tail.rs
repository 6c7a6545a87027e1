//! Ending a recorded file on whole PES packets.
//!
//! A recording stops wherever the stream was when the relay stopped or the
//! segment rotated, which is usually inside a PES packet on every stream:
//! a decoder reading the file then reports a broken last frame. [`PesTails`]
//! notes, as packets are written, where each PID's last PES packet began;
//! [`PesTails::trim`] then removes, from the end of the file, each PID's
//! packets from that point on (PSI and packets of other PIDs stay). The
//! file loses at most one unfinished PES packet per stream.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

use crate::ts::packet::PACKET_LEN;

/// Most bytes re-read at a trim: a PES that began further back than this
/// is left alone (the tail of a stream silent for that long is not worth
/// rewriting a whole file for).
const MAX_TAIL: u64 = 64 << 20;

/// Where each PID's last PES packet starts in the file being written, and
/// whether it is known to be finished.
#[derive(Debug, Default)]
pub struct PesTails {
    written: u64,
    last_start: BTreeMap<u16, Pes>,
}

/// The last PES packet of one PID.
#[derive(Clone, Copy, Debug)]
struct Pes {
    /// File offset of its first packet.
    start: u64,
    /// PES bytes it declares (header included), 0 when unbounded (video).
    declared: u64,
    /// PES bytes seen so far.
    seen: u64,
}

impl Pes {
    fn finished(&self) -> bool {
        self.declared > 0 && self.seen >= self.declared
    }
}

impl PesTails {
    /// Notes the packets of `bytes`, about to be written at the end.
    pub fn note(&mut self, bytes: &[u8]) {
        for (i, pkt) in bytes.chunks_exact(PACKET_LEN).enumerate() {
            let has_payload = pkt[3] & 0x10 != 0;
            if pkt[0] != 0x47 || !has_payload {
                continue;
            }
            let pid = u16::from_be_bytes([pkt[1] & 0x1F, pkt[2]]);
            let start = if pkt[3] & 0x20 != 0 { 5 + usize::from(pkt[4]) } else { 4 };
            let payload = pkt.get(start..).unwrap_or_default();
            if pkt[1] & 0x40 != 0 && payload.starts_with(&[0, 0, 1]) {
                let length = payload.get(4..6).map_or(0, |l| u64::from(u16::from_be_bytes([l[0], l[1]])));
                let declared = if length == 0 { 0 } else { length + 6 };
                let at = self.written + (i * PACKET_LEN) as u64;
                self.last_start.insert(pid, Pes { start: at, declared, seen: payload.len() as u64 });
            } else if let Some(pes) = self.last_start.get_mut(&pid) {
                pes.seen += payload.len() as u64;
            }
        }
        self.written += bytes.len() as u64;
    }

    /// Cuts `file` (all of whose bytes were noted) back to whole PES
    /// packets; returns the bytes removed. Resets the notes.
    pub fn trim(&mut self, file: &mut File) -> io::Result<u64> {
        let mut notes = std::mem::take(self);
        notes.last_start.retain(|_, pes| !pes.finished());
        let Some(from) = notes.last_start.values().map(|pes| pes.start).min() else { return Ok(0) };
        if notes.written - from > MAX_TAIL || notes.written % PACKET_LEN as u64 != 0 {
            return Ok(0);
        }
        let mut tail = Vec::with_capacity((notes.written - from) as usize);
        file.seek(SeekFrom::Start(from))?;
        file.read_to_end(&mut tail)?;
        let mut kept = Vec::with_capacity(tail.len());
        for (i, pkt) in tail.chunks_exact(PACKET_LEN).enumerate() {
            let at = from + (i * PACKET_LEN) as u64;
            let pid = u16::from_be_bytes([pkt[1] & 0x1F, pkt[2]]);
            if notes.last_start.get(&pid).is_some_and(|pes| at >= pes.start) {
                continue;
            }
            kept.extend_from_slice(pkt);
        }
        file.seek(SeekFrom::Start(from))?;
        file.write_all(&kept)?;
        let end = from + kept.len() as u64;
        file.set_len(end)?;
        Ok(notes.written - end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A packet of `pid`, starting a PES when `pes_start`.
    fn packet(pid: u16, pes_start: bool, tag: u8) -> [u8; 188] {
        let mut p = [tag; 188];
        p[0] = 0x47;
        p[1] = (u8::from(pes_start) << 6) | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10;
        if pes_start {
            // Start code, stream id, PES_packet_length 0 (unbounded).
            p[4..10].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0]);
        }
        p
    }

    #[test]
    fn each_pid_loses_only_its_unfinished_pes() {
        // video 0x100: PES at 0 and 3 (unfinished); audio 0x101: PES at 1
        // and 5 (unfinished); PAT at 4 stays.
        let mut pat = packet(0, false, 9);
        pat[1] |= 0x40;
        pat[4] = 0; // pointer field, not a PES start
        let packets = [
            packet(0x100, true, 1),
            packet(0x101, true, 2),
            packet(0x100, false, 3),
            packet(0x100, true, 4),
            pat,
            packet(0x101, true, 6),
            packet(0x100, false, 7),
        ];
        let bytes: Vec<u8> = packets.concat();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        let mut tails = PesTails::default();
        tails.note(&bytes[..188 * 3]);
        tails.note(&bytes[188 * 3..]);
        assert_eq!(tails.trim(&mut file).unwrap(), 3 * 188);
        let mut left = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut left).unwrap();
        let want: Vec<u8> = [packets[0], packets[1], packets[2], packets[4]].concat();
        assert_eq!(left, want);
    }

    #[test]
    fn a_pes_of_declared_length_that_is_complete_stays() {
        // Audio PES declaring 180 bytes (fits in its one packet): finished.
        let mut audio = packet(0x101, true, 2);
        audio[8..10].copy_from_slice(&174u16.to_be_bytes());
        let bytes: Vec<u8> = [packet(0x100, true, 1), audio, packet(0x100, false, 3)].concat();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&bytes).unwrap();
        let mut tails = PesTails::default();
        tails.note(&bytes);
        // Only the unbounded video PES (from packet 0) goes; audio stays.
        assert_eq!(tails.trim(&mut file).unwrap(), 2 * 188);
        let mut left = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut left).unwrap();
        assert_eq!(left, audio);
    }

    #[test]
    fn nothing_noted_nothing_cut() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[0x47; 188]).unwrap();
        assert_eq!(PesTails::default().trim(&mut file).unwrap(), 0);
        assert_eq!(file.metadata().unwrap().len(), 188);
    }
}
