//! Packet size detection and synchronisation.
//!
//! The rule, applied to any byte stream:
//! - **Acquire**: a position holding 0x47 is a packet start when the two
//!   positions one and two packet lengths further also hold 0x47 (three sync
//!   bytes at packet spacing). Lengths are tried in this order: the length of
//!   the previous lock, then 188, 192 (M2TS, 4-byte prefix before the sync
//!   byte), 204 (16 bytes of Reed-Solomon parity after the packet).
//! - **End of input**: where fewer than three positions fit before the end of
//!   a finite input, every position that fits must hold 0x47 and at least two
//!   must fit; a lone packet is accepted only when it is the whole input.
//! - **Lose**: once locked, a packet position that lacks 0x47 is one sync
//!   loss; the search for a new lock starts at the next byte.
//!
//! Bytes outside accepted packets are `skipped_bytes`; a packet cut short
//! by the end of input is `truncated_bytes`. Neither is fatal.

use super::packet::{PACKET_LEN, SYNC_BYTE};

/// Wire sizes of a transport packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketSize {
    /// Plain 188-byte packets.
    Ts188,
    /// 192-byte M2TS / BDAV: 4-byte TP_extra_header, then the packet.
    M2ts192,
    /// 204-byte packets: the packet, then 16 bytes of parity.
    Rs204,
}

impl PacketSize {
    const ALL: [PacketSize; 3] = [PacketSize::Ts188, PacketSize::M2ts192, PacketSize::Rs204];

    /// Distance between sync bytes.
    pub const fn stride(self) -> usize {
        match self {
            PacketSize::Ts188 => 188,
            PacketSize::M2ts192 => 192,
            PacketSize::Rs204 => 204,
        }
    }

    /// Bytes of a packet unit before its sync byte.
    pub const fn prefix(self) -> usize {
        match self {
            PacketSize::M2ts192 => 4,
            _ => 0,
        }
    }
}

/// Sync state and counters over one stream.
#[derive(Clone, Debug, Default)]
pub struct SyncTracker {
    size: Option<PacketSize>,
    first_size: Option<PacketSize>,
    sync_losses: u64,
}

impl SyncTracker {
    /// The packet size of the current or last lock.
    pub fn size(&self) -> Option<PacketSize> {
        self.size
    }

    /// The packet size of the first lock (what `probe` reports).
    pub fn first_size(&self) -> Option<PacketSize> {
        self.first_size
    }

    /// Sync losses so far.
    pub fn sync_losses(&self) -> u64 {
        self.sync_losses
    }

    /// Records a loss of sync (a locked packet position lacked 0x47).
    pub fn lose(&mut self) {
        self.sync_losses += 1;
    }

    /// A tracker already locked on packets of `size`, for a part of a
    /// stream that starts at a known packet position.
    pub fn locked(size: PacketSize) -> SyncTracker {
        SyncTracker { size: Some(size), first_size: Some(size), sync_losses: 0 }
    }

    /// Continues this tracker with `later`, which followed the stream on
    /// from where this one stopped (locked, see [`SyncTracker::locked`]).
    pub fn append(&mut self, later: &SyncTracker) {
        self.size = later.size;
        self.first_size = self.first_size.or(later.first_size);
        self.sync_losses += later.sync_losses;
    }

    /// The first packet start at or after `from`, or `None` when `buf`
    /// holds none. `at_end` says that no bytes follow `buf`.
    pub fn acquire(&mut self, buf: &[u8], from: usize, at_end: bool) -> Option<usize> {
        let mut pos = from;
        while let Some(found) = buf.get(pos..)?.iter().position(|&b| b == SYNC_BYTE) {
            let candidate = pos + found;
            let order = self.size.into_iter().chain(PacketSize::ALL);
            for size in order {
                if confirms(buf, candidate, size.stride(), at_end, from == 0) {
                    self.size = Some(size);
                    self.first_size.get_or_insert(size);
                    return Some(candidate);
                }
            }
            pos = candidate + 1;
        }
        None
    }
}

/// Whether `pos` starts packets of `stride` by the rule in the module doc.
fn confirms(buf: &[u8], pos: usize, stride: usize, at_end: bool, whole_input: bool) -> bool {
    let mut fitting = 0;
    for k in 0..3 {
        let at = pos + k * stride;
        if at + PACKET_LEN > buf.len() {
            break;
        }
        if buf[at] != SYNC_BYTE {
            return false;
        }
        fitting += 1;
    }
    match fitting {
        3 => true,
        2 => at_end,
        1 => at_end && whole_input && pos == 0 && buf.len() - pos <= stride,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(stride: usize, packets: usize) -> Vec<u8> {
        let mut v = vec![0u8; stride * packets];
        let prefix = if stride == 192 { 4 } else { 0 };
        for i in 0..packets {
            v[i * stride + prefix] = SYNC_BYTE;
        }
        v
    }

    #[test]
    fn detects_each_size() {
        for (stride, size) in [(188, PacketSize::Ts188), (192, PacketSize::M2ts192), (204, PacketSize::Rs204)] {
            let mut t = SyncTracker::default();
            let at = t.acquire(&stream(stride, 10), 0, false);
            assert_eq!(at, Some(size.prefix()));
            assert_eq!(t.size(), Some(size));
        }
    }

    #[test]
    fn resyncs_after_garbage() {
        let mut buf = vec![0x47, 1, 2, 0x47, 9];
        buf.extend(stream(188, 5));
        let mut t = SyncTracker::default();
        assert_eq!(t.acquire(&buf, 0, true), Some(5));
    }

    #[test]
    fn needs_three_sync_bytes_unless_at_end() {
        let buf = stream(188, 2);
        assert_eq!(SyncTracker::default().acquire(&buf, 0, false), None);
        assert_eq!(SyncTracker::default().acquire(&buf, 0, true), Some(0));
        let lone = stream(188, 1);
        assert_eq!(SyncTracker::default().acquire(&lone, 0, true), Some(0));
        let mut late = vec![0u8; 50];
        late.extend(stream(188, 1));
        assert_eq!(SyncTracker::default().acquire(&late, 0, true), None);
    }

    #[test]
    fn no_sync_in_random_text() {
        let text = b"this is not a transport stream, G.\n".repeat(100);
        assert_eq!(SyncTracker::default().acquire(&text, 0, true), None);
    }
}
