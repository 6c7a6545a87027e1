//! The buffer a track gathers one PES payload in.
//!
//! Payloads are copied once, from the TS packets into a block many packets
//! share, and cut off with `split().freeze()`. Two things keep that copy
//! cheap (`cargo bench --bench demux`, 512 MiB: 28 ms with them, 38-40 ms
//! with a plain `BytesMut`):
//! - A PES is given room for its whole size when it starts (its
//!   PES_packet_length, or twice the track's typical size when unbounded),
//!   so it rarely outgrows its block. When it does, it moves to a new block
//!   itself: `BytesMut::reserve` on a block it owns alone reallocates it,
//!   copying every byte cut from it before, and doubles it.
//! - Two blocks take turns: when one runs out, the other is taken back if
//!   every packet cut from it has been dropped (a consumer that keeps up),
//!   so the copies land in memory that is still in cache. Otherwise a new
//!   block is allocated, and the old one lives until its packets are gone.

use bytes::{Bytes, BytesMut};

/// The smallest block: small PES (audio) share one, so they do not cost an
/// allocation each.
const BLOCK_BYTES: usize = 128 * 1024;

/// One track's PES payload in progress.
#[derive(Debug, Default)]
pub(super) struct PesBuffer {
    /// The block being filled; its bytes are the PES so far.
    current: BytesMut,
    /// The block before: taken back when `current` runs out.
    spare: BytesMut,
    /// A running average of the PES sizes cut, for unbounded PES.
    typical: usize,
    /// Blocks allocated so far (the rest were taken back).
    allocated: u64,
}

impl PesBuffer {
    /// Drops the PES in progress and makes room for a new one of `expected`
    /// bytes (if bounded) whose first `first` bytes are at hand, within
    /// `max` bytes.
    pub(super) fn begin(&mut self, expected: Option<usize>, first: usize, max: usize) {
        self.current.clear();
        let want = expected.unwrap_or(self.typical.saturating_mul(2)).max(first).min(max);
        self.make_room(want, max);
    }

    /// Appends ES bytes; the caller keeps the PES within its size cap.
    pub(super) fn push(&mut self, es: &[u8], max: usize) {
        if self.current.capacity() - self.current.len() < es.len() {
            self.make_room(es.len(), max);
        }
        self.current.extend_from_slice(es);
    }

    /// The PES so far.
    pub(super) fn bytes(&self) -> &[u8] {
        &self.current
    }

    /// Bytes of the PES so far.
    pub(super) fn len(&self) -> usize {
        self.current.len()
    }

    /// Drops the PES in progress, keeping the block.
    pub(super) fn clear(&mut self) {
        self.current.clear();
    }

    /// Cuts the PES off as a packet payload.
    pub(super) fn take(&mut self) -> Bytes {
        let len = self.current.len();
        // Weight 1/8: follows a change of bitrate within a few GOPs.
        self.typical = self.typical - self.typical / 8 + len / 8;
        self.current.split().freeze()
    }

    /// Makes room for `more` bytes after the PES in progress, moving it to
    /// the other block (taken back or new) if this one is short.
    fn make_room(&mut self, more: usize, max: usize) {
        let have = self.current.len();
        if self.current.capacity() - have >= more {
            return;
        }
        let need = have + more;
        let block = need.saturating_mul(2).min(max.max(need)).max(BLOCK_BYTES);
        std::mem::swap(&mut self.current, &mut self.spare);
        // `spare` now holds the PES so far; `current` the other block, empty.
        if !self.current.try_reclaim(block) {
            self.current = BytesMut::with_capacity(block);
            self.allocated += 1;
        }
        self.current.extend_from_slice(&self.spare);
        self.spare.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pes_that_outgrows_its_block_moves_whole() {
        let mut buf = PesBuffer::default();
        buf.begin(None, 10, 8 << 20);
        let chunk: Vec<u8> = (0..184u8).collect();
        let mut want = Vec::new();
        for _ in 0..2000 {
            buf.push(&chunk, 8 << 20);
            want.extend_from_slice(&chunk);
        }
        assert_eq!(buf.bytes(), &want[..]);
        assert_eq!(&buf.take()[..], &want[..]);
    }

    /// 200 PES of 5000 bytes: 1 MB through 128 KiB blocks.
    fn cut_200(buf: &mut PesBuffer, mut keep: impl FnMut(Bytes)) {
        for round in 0..200u32 {
            let fill = round.to_le_bytes()[0];
            buf.begin(Some(5000), 1000, 8 << 20);
            for _ in 0..5 {
                buf.push(&[fill; 1000], 8 << 20);
            }
            let packet = buf.take();
            assert_eq!(&packet[..], &[fill; 5000][..], "round {round}");
            keep(packet);
        }
    }

    #[test]
    fn blocks_are_taken_back_once_their_packets_are_dropped() {
        let mut buf = PesBuffer::default();
        cut_200(&mut buf, drop);
        assert_eq!(buf.allocated, 2);
    }

    #[test]
    fn packets_still_held_keep_their_bytes_and_their_blocks() {
        let mut buf = PesBuffer::default();
        let mut held = Vec::new();
        cut_200(&mut buf, |p| held.push(p));
        assert!(buf.allocated >= 1_000_000 / BLOCK_BYTES as u64, "{} blocks", buf.allocated);
        for (round, p) in held.iter().enumerate() {
            assert!(p.iter().all(|&b| usize::from(b) == round % 256), "round {round}");
        }
    }
}
