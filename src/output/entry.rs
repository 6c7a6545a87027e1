//! Placeholder for the clean entry point gate: passes everything through.
//! Replaced by the real gate (PAT, PMT, keyframe) before it is used.

use bytes::Bytes;

/// Where an output starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// At a clean entry point.
    Clean,
    /// With whatever comes first.
    Any,
}

/// What the gate lets out.
#[derive(Clone, Debug)]
pub enum Piece {
    /// Packets to send.
    Data(Bytes),
    /// A new segment may start here.
    Cut,
}

/// Counters of the gate.
#[derive(Clone, Copy, Debug, Default)]
pub struct EntryCounters {
    /// Packets skipped before an entry point.
    pub skipped_packets: u64,
}

/// The gate.
#[derive(Debug)]
pub struct EntryGate {
    cut: bool,
}

impl EntryGate {
    /// A gate.
    pub fn new(_mode: StartMode) -> EntryGate {
        EntryGate { cut: false }
    }

    /// Feeds one chunk.
    pub fn push(&mut self, chunk: &Bytes, out: &mut Vec<Piece>) {
        if std::mem::take(&mut self.cut) {
            out.push(Piece::Cut);
        }
        out.push(Piece::Data(chunk.clone()));
    }

    /// The reader lost items.
    pub fn resync(&mut self, _lost_items: u64) {}

    /// Asks for a cut.
    pub fn request_cut(&mut self) {
        self.cut = true;
    }

    /// Counters.
    pub fn counters(&self) -> EntryCounters {
        EntryCounters::default()
    }
}
