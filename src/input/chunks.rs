//! A mapped transport-stream file cut into chunks of whole 188-byte packets,
//! the unit every stream carries (DESIGN.md, "Data flow").
//!
//! The file's bytes are one `Bytes` over the mapping (`Bytes::from_owner`),
//! so a chunk of a 188-byte file is a slice of the page cache: no copy.
//! 192- and 204-byte packets are copied out to 188 (the one counted copy).
//! Framing follows `ts::framing` through the streaming `framer` (here fed
//! one window, the whole file): garbage is skipped and counted, a lost sync
//! byte is a sync loss and the packets are found again after it.
//!
//! With `looping`, the chunks start over at the first packet when the file
//! ends; [`FileChunks::iteration`] says which pass a chunk belongs to, so a
//! caller can make the seam continuous (timestamps, continuity counters).

use bytes::Bytes;

use super::file::MappedFile;
use super::framer::Framer;
use crate::ts::framing::PacketSize;

/// Packets per chunk by default: 7 (one UDP datagram's worth) would make a
/// file source do far more work per byte than needed; 64 packets (12 KiB)
/// keep chunks small enough for smooth pacing.
pub const DEFAULT_CHUNK_PACKETS: usize = 64;

/// Counters of a file source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkCounters {
    /// Packets emitted (188 bytes each).
    pub packets: u64,
    /// Bytes outside any packet.
    pub skipped_bytes: u64,
    /// Packet positions that lacked their sync byte once locked.
    pub sync_losses: u64,
    /// Packets copied from 192/204 to 188 bytes.
    pub normalised_packets: u64,
    /// Passes started over the file after the first.
    pub loops: u64,
}

/// Chunks of a whole file.
pub struct FileChunks {
    data: Bytes,
    framer: Framer,
    looping: bool,
    iteration: u64,
    loops: u64,
    /// Whether the current pass produced any packet (a pass without one
    /// ends the source even when looping).
    pass_had_packets: bool,
}

impl FileChunks {
    /// Chunks of `file`, `chunk_packets` packets at most each.
    pub fn new(file: MappedFile, looping: bool, chunk_packets: usize) -> FileChunks {
        FileChunks::from_bytes(file.into_bytes(), looping, chunk_packets)
    }

    /// Chunks of bytes already in memory (a file's contents, a fuzz input).
    pub fn from_bytes(data: Bytes, looping: bool, chunk_packets: usize) -> FileChunks {
        let mut framer = Framer::new(chunk_packets);
        // The whole mapping is one window: no carry, ever.
        framer.push(data.clone(), true);
        FileChunks { data, framer, looping, iteration: 0, loops: 0, pass_had_packets: false }
    }

    /// The pass over the file the last chunk came from (0 for the first).
    pub fn iteration(&self) -> u64 {
        self.iteration
    }

    /// The wire packet size found, once known.
    pub fn packet_size(&self) -> Option<PacketSize> {
        self.framer.sync().first_size()
    }

    /// Counters so far.
    pub fn counters(&self) -> ChunkCounters {
        ChunkCounters { loops: self.loops, ..self.framer.counters() }
    }

    /// The next chunk, or `None` at the end of the file (never, when
    /// looping over a file that holds packets).
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.framer.next_chunk() {
                self.pass_had_packets = true;
                return Some(chunk);
            }
            // The pass is over: what is left is garbage or a cut packet.
            self.framer.end_pass();
            if !self.looping || !self.pass_had_packets {
                return None;
            }
            self.iteration += 1;
            self.loops += 1;
            self.pass_had_packets = false;
            self.framer.push(self.data.clone(), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ts::packet::{PACKET_LEN, SYNC_BYTE};
    use std::path::Path;

    fn fixture(name: &str) -> MappedFile {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
        MappedFile::open(&path).unwrap()
    }

    fn collect(chunks: &mut FileChunks, limit: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for _ in 0..limit {
            match chunks.next_chunk() {
                Some(c) => {
                    assert_eq!(c.len() % PACKET_LEN, 0);
                    assert!(c.chunks(PACKET_LEN).all(|p| p[0] == SYNC_BYTE));
                    out.extend_from_slice(&c);
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn a_188_file_comes_back_byte_exact_without_copies() {
        let file = fixture("h264_aac.ts");
        let bytes = file.bytes().to_vec();
        let mut chunks = FileChunks::new(file, false, 7);
        assert_eq!(collect(&mut chunks, 10_000), bytes);
        let c = chunks.counters();
        assert_eq!((c.packets, c.normalised_packets, c.skipped_bytes, c.loops), ((bytes.len() / 188) as u64, 0, 0, 0));
    }

    #[test]
    fn m2ts_is_normalised_to_188() {
        let file = fixture("h264_aac_192.m2ts");
        let expected: Vec<u8> = file.bytes().chunks_exact(192).flat_map(|u| u[4..].to_vec()).collect();
        let mut chunks = FileChunks::new(file, false, 64);
        assert_eq!(collect(&mut chunks, 10_000), expected);
        assert_eq!(chunks.packet_size(), Some(PacketSize::M2ts192));
        assert_eq!(chunks.counters().normalised_packets, (expected.len() / 188) as u64);
    }

    #[test]
    fn looping_starts_over_and_counts_passes() {
        let file = fixture("h264_aac.ts");
        let bytes = file.bytes().to_vec();
        let mut chunks = FileChunks::new(file, true, 64);
        let packets = bytes.len() / 188;
        let three_passes = collect(&mut chunks, packets.div_ceil(64) * 3);
        assert_eq!(three_passes, bytes.repeat(3));
        assert_eq!(chunks.iteration(), 2);
        assert!(chunks.next_chunk().is_some(), "a looping source does not end");
    }

    #[test]
    fn garbage_and_sync_loss_are_counted() {
        let ts = fixture("h264_aac.ts").bytes()[..188 * 20].to_vec();
        let mut damaged = vec![0u8; 100];
        damaged.extend_from_slice(&ts[..188 * 10]);
        damaged.extend_from_slice(&[0x11; 50]);
        damaged.extend_from_slice(&ts[188 * 10..]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.ts");
        std::fs::write(&path, &damaged).unwrap();
        let mut chunks = FileChunks::new(MappedFile::open(&path).unwrap(), false, 64);
        assert_eq!(collect(&mut chunks, 100), ts);
        let c = chunks.counters();
        assert_eq!((c.skipped_bytes, c.sync_losses, c.packets), (150, 1, 20));
    }

    #[test]
    fn a_file_without_packets_ends_even_when_looping() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.ts");
        std::fs::write(&path, b"no packets here at all").unwrap();
        let mut chunks = FileChunks::new(MappedFile::open(&path).unwrap(), true, 64);
        assert!(chunks.next_chunk().is_none());
    }
}
