//! Packet alignment for the monitor, with the TR 101 290 §5.2.1 sync
//! hysteresis (checks 1.1 and 1.2).
//!
//! - **Acquire**: a byte 0x47 followed by four more at 188-byte spacing
//!   (five consecutive sync bytes) is a packet start. The stream begins
//!   unsynchronised, so its first packets are accepted only once four more
//!   have arrived behind them.
//! - **In sync**: each packet position is checked; a wrong sync byte is one
//!   `Sync_byte_error` and the packet is skipped (its header is not
//!   trusted). A second wrong sync byte in a row is a `TS_sync_loss`.
//! - **Lost**: the search for five sync bytes starts at the byte after the
//!   second wrong one. Packet positions are not judged while sync is lost,
//!   so `Sync_byte_error` counts only packets checked in sync.
//!
//! Partial packets are carried from one chunk to the next (at most four
//! packets while searching, less than one while in sync), so a stream cut
//! at any byte boundaries is aligned, counted and scanned exactly as the
//! same bytes in one buffer. Aligned chunks (the normal case) are scanned
//! in place, without a copy.

use crate::ts::packet::{PACKET_LEN, SYNC_BYTE};
use crate::ts::scan::{Run, ScanOutcome};

/// Consecutive sync bytes that establish sync.
const ACQUIRE: usize = 5;
/// Consecutive wrong sync bytes that lose it.
const LOSE: u32 = 2;
/// Bytes needed behind a candidate start to judge it.
const LOOKAHEAD: usize = (ACQUIRE - 1) * PACKET_LEN;
/// Largest undecided tail: a candidate start with less than a full
/// lookahead behind it.
const CARRY_CAP: usize = LOOKAHEAD;
/// Room for the carried tail joined to the start of the next chunk.
const JOIN_CAP: usize = 2048;

/// Sync state, carried bytes and the sync counters of one stream.
#[derive(Clone, Debug)]
pub(super) struct Aligner {
    synced: bool,
    /// Wrong sync bytes in a row while in sync.
    bad_run: u32,
    carry: [u8; CARRY_CAP],
    carry_len: usize,
    /// TR 101 290 1.1: times sync was lost.
    pub(super) sync_losses: u64,
    /// TR 101 290 1.2: packets in sync with a wrong sync byte.
    pub(super) sync_byte_errors: u64,
}

impl Default for Aligner {
    fn default() -> Self {
        Aligner { synced: false, bad_run: 0, carry: [0; CARRY_CAP], carry_len: 0, sync_losses: 0, sync_byte_errors: 0 }
    }
}

impl Aligner {
    /// Whether packets are being accepted.
    #[cfg(test)]
    pub(super) fn is_synced(&self) -> bool {
        self.synced
    }

    /// Bytes held back until more arrive.
    #[cfg(test)]
    pub(super) fn carried(&self) -> usize {
        self.carry_len
    }

    /// Aligns `chunk`, continuing the bytes carried from earlier chunks,
    /// and hands each run of whole packets in sync to `scan`, which
    /// accounts them and says where a packet lacked its sync byte.
    #[inline]
    pub(super) fn feed<F>(&mut self, mut chunk: &[u8], scan: &mut F)
    where
        F: FnMut(&[u8], Run) -> ScanOutcome,
    {
        // Join the carried tail with the chunk's first bytes until the tail
        // is used up; each turn takes at least one byte of the chunk.
        while self.carry_len > 0 && !chunk.is_empty() {
            let held = self.carry_len;
            let take = chunk.len().min(JOIN_CAP - held);
            let mut join = [0u8; JOIN_CAP];
            join[..held].copy_from_slice(&self.carry[..held]);
            join[held..held + take].copy_from_slice(&chunk[..take]);
            let len = held + take;
            let used = self.align(&join[..len], scan);
            if used >= held {
                self.carry_len = 0;
                chunk = chunk.get(used - held..).unwrap_or_default();
            } else {
                self.hold(&join[used..len]);
                chunk = &chunk[take..];
            }
        }
        if !chunk.is_empty() {
            let used = self.align(chunk, scan);
            self.hold(chunk.get(used..).unwrap_or_default());
        }
    }

    /// Keeps an undecided tail for the next chunk.
    fn hold(&mut self, tail: &[u8]) {
        // `align` leaves less than a packet in sync and at most LOOKAHEAD
        // bytes while searching, so the tail always fits.
        debug_assert!(tail.len() <= CARRY_CAP, "carried tail of {} bytes", tail.len());
        let n = tail.len().min(CARRY_CAP);
        self.carry[..n].copy_from_slice(&tail[..n]);
        self.carry_len = n;
    }

    /// Aligns and scans what `buf` allows; returns how many bytes are
    /// settled. The rest (a partial packet, or a candidate start that needs
    /// more bytes behind it) must be presented again with what follows.
    fn align<F>(&mut self, buf: &[u8], scan: &mut F) -> usize
    where
        F: FnMut(&[u8], Run) -> ScanOutcome,
    {
        let mut pos = 0;
        // Each turn accounts packets, skips a packet or moves past a byte,
        // so the loop ends within buf.len() turns.
        loop {
            if self.synced {
                let run = Run::fitting(buf.len(), pos, PACKET_LEN, usize::MAX);
                if run.count == 0 {
                    return pos;
                }
                let out = scan(buf, run);
                if out.packets > 0 {
                    self.bad_run = 0;
                }
                pos += out.packets * PACKET_LEN;
                if !out.sync_lost {
                    if out.packets == 0 {
                        return pos;
                    }
                    continue;
                }
                self.sync_byte_errors += 1;
                self.bad_run += 1;
                if self.bad_run >= LOSE {
                    self.sync_losses += 1;
                    self.synced = false;
                    pos += 1;
                } else {
                    pos += PACKET_LEN;
                }
            } else {
                let rest = buf.get(pos..).unwrap_or_default();
                let Some(found) = rest.iter().position(|&b| b == SYNC_BYTE) else {
                    return buf.len();
                };
                let start = pos + found;
                if start + LOOKAHEAD >= buf.len() {
                    return start;
                }
                if (1..ACQUIRE).all(|k| buf[start + k * PACKET_LEN] == SYNC_BYTE) {
                    self.synced = true;
                    self.bad_run = 0;
                    pos = start;
                } else {
                    pos = start + 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts packets as a scanner would: stops at the first bad sync byte.
    fn feed_all(a: &mut Aligner, chunks: &[&[u8]]) -> Vec<u8> {
        let mut firsts = Vec::new();
        for chunk in chunks {
            a.feed(chunk, &mut |buf: &[u8], run: Run| {
                for i in 0..run.count {
                    let off = run.start + i * run.stride;
                    if buf[off] != SYNC_BYTE {
                        return ScanOutcome { packets: i, sync_lost: true };
                    }
                    firsts.push(buf[off + 1]);
                }
                ScanOutcome { packets: run.count, sync_lost: false }
            });
        }
        firsts
    }

    fn packets(n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n * PACKET_LEN];
        for (i, p) in v.chunks_exact_mut(PACKET_LEN).enumerate() {
            p[0] = SYNC_BYTE;
            p[1] = i as u8;
        }
        v
    }

    #[test]
    fn needs_five_sync_bytes_to_start() {
        let buf = packets(5);
        let mut a = Aligner::default();
        assert!(feed_all(&mut a, &[&buf[..4 * PACKET_LEN]]).is_empty());
        assert!(!a.is_synced());
        assert_eq!(a.carried(), 4 * PACKET_LEN);
        assert_eq!(feed_all(&mut a, &[&buf[4 * PACKET_LEN..]]), vec![0, 1, 2, 3, 4]);
        assert!(a.is_synced());
    }

    #[test]
    fn one_bad_byte_is_an_error_two_are_a_loss() {
        let mut buf = packets(20);
        buf[6 * PACKET_LEN] = 0;
        buf[10 * PACKET_LEN] = 0;
        buf[11 * PACKET_LEN] = 0;
        let mut a = Aligner::default();
        let seen = feed_all(&mut a, &[&buf]);
        assert_eq!((a.sync_byte_errors, a.sync_losses), (2 + 1, 1));
        let expect: Vec<u8> = (0..20u8).filter(|i| ![6, 10, 11].contains(i)).collect();
        assert_eq!(seen, expect);
    }

    #[test]
    fn resyncs_on_a_shifted_grid() {
        let mut buf = packets(16);
        // Two stray bytes shift every later packet.
        buf.splice(8 * PACKET_LEN..8 * PACKET_LEN, [1, 2]);
        let mut a = Aligner::default();
        let seen = feed_all(&mut a, &[&buf]);
        assert_eq!((a.sync_byte_errors, a.sync_losses), (2, 1));
        // Packet 8 went with the skipped position; packet 9 starts the new
        // grid.
        let expect: Vec<u8> = (0..16u8).filter(|&i| i != 8).collect();
        assert_eq!(seen, expect);
        assert_eq!(a.carried(), 0);
    }
}
