//! A streaming framer: byte windows in, chunks of whole 188-byte packets
//! out, shared by the mapped reader (`chunks`, one window: the whole file)
//! and the read path (`read`, one window per filled buffer).
//!
//! What it does: applies `ts::framing`'s rule to a stream that arrives in
//! windows. Garbage is skipped and counted, a lost sync byte is one sync
//! loss, 192- and 204-byte packets are copied out to 188 (the one counted
//! copy); 188-byte packets are `Bytes` slices of the window (no copy).
//!
//! What it does not: I/O, looping, or deciding when a stream ends. The
//! caller says whether a window is the last of its pass (`at_end`).
//!
//! Windows and the carry: when a window is used up ([`Framer::next_chunk`]
//! returns `None`) and more bytes follow, [`Framer::take_carry`] gives the
//! tail the framer has not decided yet: a packet cut by the end of the
//! window (under 192 bytes), or, while hunting for sync, the bytes from
//! which a sync byte could still be confirmed (at most [`MAX_CARRY`]).
//! The next window must start with exactly those bytes.
//!
//! Invariant: the chunks and the counters at the end of a stream do not
//! depend on where the stream was cut into windows: a sync position is only
//! accepted when every packet size the search could try fits in the window
//! (or the window is the last), so more bytes could not change the answer,
//! and bytes are only counted as skipped once no later packet can start
//! before them. Chunk boundaries do depend on the cuts (a chunk never
//! spans two windows).

use bytes::{Bytes, BytesMut};

use super::chunks::ChunkCounters;
use crate::ts::framing::{PacketSize, SyncTracker};
use crate::ts::packet::{PACKET_LEN, SYNC_BYTE};

/// Bytes from a candidate sync byte to the end of the third packet at the
/// longest stride: what `SyncTracker::acquire` reads to confirm it.
const CONFIRM_SPAN: usize = 2 * PacketSize::Rs204.stride() + PACKET_LEN;
/// Longest prefix before a sync byte (M2TS's TP_extra_header).
const MAX_PREFIX: usize = PacketSize::M2ts192.prefix();
/// Longest carry [`Framer::take_carry`] returns.
pub const MAX_CARRY: usize = CONFIRM_SPAN + MAX_PREFIX;

/// Framing state over one stream, fed window by window.
#[derive(Debug)]
pub struct Framer {
    window: Bytes,
    /// Whether no bytes follow `window` in this pass.
    at_end: bool,
    sync: SyncTracker,
    /// Sync position of the next packet, while locked (may lie past the end
    /// of the window: the parity of a 204-byte packet cut by it).
    locked: Option<usize>,
    /// Where the next sync search starts.
    search: usize,
    /// Bytes before this offset are emitted or counted as skipped.
    accounted: usize,
    chunk_packets: usize,
    counters: ChunkCounters,
}

impl Framer {
    /// A framer cutting chunks of at most `chunk_packets` packets.
    pub fn new(chunk_packets: usize) -> Framer {
        Framer {
            window: Bytes::new(),
            at_end: false,
            sync: SyncTracker::default(),
            locked: None,
            search: 0,
            accounted: 0,
            chunk_packets: chunk_packets.max(1),
            counters: ChunkCounters::default(),
        }
    }

    /// Gives the next window: the bytes of the last [`Framer::take_carry`]
    /// followed by new bytes, or the first window of a pass. `at_end` says
    /// that no bytes follow it in this pass.
    pub fn push(&mut self, window: Bytes, at_end: bool) {
        self.window = window;
        self.at_end = at_end;
    }

    /// The sync state (packet size, sync losses).
    pub fn sync(&self) -> &SyncTracker {
        &self.sync
    }

    /// Counters so far (`loops` is left at zero: passes are the caller's).
    pub fn counters(&self) -> ChunkCounters {
        ChunkCounters { sync_losses: self.sync.sync_losses(), ..self.counters }
    }

    /// The next chunk of the window, or `None` when the window holds no
    /// more that can be decided: call [`Framer::take_carry`] and push the
    /// next window, or [`Framer::end_pass`] when this was the last.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        // Each turn either returns or moves `search` past a lost position,
        // so the loop ends within the window.
        loop {
            let buf = &self.window[..];
            let pos = match self.locked {
                Some(pos) => pos,
                None => {
                    let before = self.sync.clone();
                    let found = self.sync.acquire(buf, self.search, self.at_end);
                    let pos = match found {
                        Some(pos) if self.at_end || pos + CONFIRM_SPAN <= buf.len() => pos,
                        _ => {
                            if !self.at_end {
                                // A candidate this close to the end might be
                                // decided otherwise with more bytes: forget
                                // the answer (and the size it set) and look
                                // again from there in the next window. All
                                // earlier candidates were decided for good.
                                self.sync = before;
                                self.search = self.search.max(buf.len().saturating_sub(CONFIRM_SPAN));
                            }
                            return None;
                        }
                    };
                    let prefix = self.sync.size().map_or(0, PacketSize::prefix);
                    let unit_start = pos.saturating_sub(prefix).max(self.accounted);
                    self.counters.skipped_bytes += (unit_start - self.accounted) as u64;
                    self.accounted = unit_start;
                    self.locked = Some(pos);
                    pos
                }
            };
            let size = self.sync.size()?;
            let stride = size.stride();
            let mut count = 0;
            while count < self.chunk_packets {
                let at = pos + count * stride;
                if at + PACKET_LEN > buf.len() || buf[at] != SYNC_BYTE {
                    break;
                }
                count += 1;
            }
            let next = pos + count * stride;
            // Whether the position after the run lacks its sync byte; a
            // position not wholly in the window is decided by the next one.
            let lost = next + PACKET_LEN <= buf.len() && buf[next] != SYNC_BYTE && count < self.chunk_packets;
            if lost {
                self.sync.lose();
                self.locked = None;
                self.search = next + 1;
            } else {
                self.locked = Some(next);
            }
            if count == 0 {
                if lost {
                    continue;
                }
                return None;
            }
            // Not clipped to the window: the parity of a 204-byte packet
            // may lie in the next one.
            self.accounted = next - size.prefix();
            self.counters.packets += count as u64;
            return Some(match size {
                PacketSize::Ts188 => self.window.slice(pos..next),
                _ => self.normalise(pos, count, stride),
            });
        }
    }

    /// The one copy: `count` packets of `stride` bytes from `pos`, cut to
    /// 188 bytes each.
    fn normalise(&mut self, pos: usize, count: usize, stride: usize) -> Bytes {
        let mut out = BytesMut::with_capacity(count * PACKET_LEN);
        for k in 0..count {
            let at = pos + k * stride;
            out.extend_from_slice(&self.window[at..at + PACKET_LEN]);
        }
        self.counters.normalised_packets += count as u64;
        out.freeze()
    }

    /// The undecided tail of the used-up window (at most [`MAX_CARRY`]
    /// bytes), which must start the next window; positions are rebased onto
    /// it. Call after [`Framer::next_chunk`] returned `None`.
    pub fn take_carry(&mut self) -> Bytes {
        let len = self.window.len();
        let keep = match self.locked {
            Some(pos) => self.accounted.min(pos).min(len),
            None => {
                // No packet found later can start before `search` minus the
                // longest prefix: the bytes before that are skipped for good.
                let sure = self.search.saturating_sub(MAX_PREFIX).min(len);
                if sure > self.accounted {
                    self.counters.skipped_bytes += (sure - self.accounted) as u64;
                    self.accounted = sure;
                }
                self.accounted.min(self.search).min(len)
            }
        };
        self.locked = self.locked.map(|pos| pos - keep);
        self.search = self.search.saturating_sub(keep);
        self.accounted -= keep;
        let carry = self.window.slice(keep..);
        self.window = Bytes::new();
        carry
    }

    /// Ends a pass after its last window is used up: what was left is
    /// garbage or a cut packet, counted as skipped. The sync state is kept
    /// (the next pass tries the same packet size first).
    pub fn end_pass(&mut self) {
        self.counters.skipped_bytes += self.window.len().saturating_sub(self.accounted) as u64;
        self.window = Bytes::new();
        self.at_end = false;
        self.locked = None;
        self.search = 0;
        self.accounted = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// All chunks and the counters of `data` framed in one window.
    fn whole(data: &[u8], chunk_packets: usize) -> (Vec<u8>, ChunkCounters) {
        let mut f = Framer::new(chunk_packets);
        f.push(Bytes::copy_from_slice(data), true);
        let mut out = Vec::new();
        while let Some(c) = f.next_chunk() {
            out.extend_from_slice(&c);
        }
        f.end_pass();
        (out, f.counters())
    }

    /// The same, fed in windows cut after each length in `cuts` (carry
    /// copied in front, as the read path does).
    fn windowed(data: &[u8], cuts: &[usize], chunk_packets: usize) -> (Vec<u8>, ChunkCounters) {
        let mut f = Framer::new(chunk_packets);
        let mut out = Vec::new();
        let mut rest = data;
        let mut carry = Bytes::new();
        let mut cuts = cuts.iter().cycle();
        loop {
            let take = cuts.next().copied().unwrap_or(rest.len()).min(rest.len());
            let (now, later) = rest.split_at(take);
            rest = later;
            let at_end = rest.is_empty();
            let mut window = carry.to_vec();
            window.extend_from_slice(now);
            f.push(Bytes::from(window), at_end);
            while let Some(c) = f.next_chunk() {
                assert_eq!(c.len() % PACKET_LEN, 0);
                out.extend_from_slice(&c);
            }
            if at_end {
                break;
            }
            carry = f.take_carry();
            assert!(carry.len() <= MAX_CARRY, "carry of {} bytes", carry.len());
        }
        f.end_pass();
        (out, f.counters())
    }

    fn packets(stride: usize, n: usize, seed: u8) -> Vec<u8> {
        let prefix = if stride == 192 { 4 } else { 0 };
        let mut v = Vec::with_capacity(stride * n);
        for i in 0..n {
            let mut unit = vec![seed.wrapping_add(i as u8) | 1; stride];
            unit[prefix] = SYNC_BYTE;
            // Keep stray sync bytes out of the payload.
            for b in unit.iter_mut().skip(prefix + 1) {
                if *b == SYNC_BYTE {
                    *b = 0;
                }
            }
            v.extend_from_slice(&unit);
        }
        v
    }

    #[test]
    fn one_window_and_many_agree_on_a_fixture() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/h264_aac_192.m2ts");
        let data = std::fs::read(path).unwrap();
        let expected = whole(&data, 64);
        for cut in [1, 187, 188, 191, 192, 1000, 4096, 65536] {
            assert_eq!(windowed(&data, &[cut], 64), expected, "cut every {cut} bytes");
        }
    }

    #[test]
    fn a_204_packet_cut_before_its_parity_keeps_the_count() {
        let mut data = packets(204, 10, 3);
        data.extend_from_slice(&[0x11; 30]);
        data.extend(packets(204, 5, 9));
        let expected = whole(&data, 64);
        assert_eq!(expected.1.packets, 15);
        for cut in 180..=210 {
            assert_eq!(windowed(&data, &[cut], 64), expected, "cut every {cut} bytes");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The invariant of the module doc: cuts change nothing but chunk
        /// boundaries.
        #[test]
        fn cuts_do_not_change_packets_or_counters(
            parts in proptest::collection::vec((0usize..4, 0usize..12, any::<u8>()), 1..8),
            cuts in proptest::collection::vec(1usize..2000, 1..6),
            chunk_packets in 1usize..70,
        ) {
            let mut data = Vec::new();
            for (kind, n, seed) in parts {
                match kind {
                    0 => data.extend(packets(188, n, seed)),
                    1 => data.extend(packets(192, n, seed)),
                    2 => data.extend(packets(204, n, seed)),
                    _ => data.extend((0..n * 37).map(|i| if i % 5 == 0 { SYNC_BYTE } else { seed ^ i as u8 })),
                }
            }
            prop_assert_eq!(windowed(&data, &cuts, chunk_packets), whole(&data, chunk_packets));
        }
    }
}
