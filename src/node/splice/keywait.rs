//! After a switch, each video PID of the new input waits for a random
//! access point before it resumes (see the module docs of the splicer).
//!
//! A PES start is a keyframe when the packet's adaptation field has
//! random_access_indicator set, or when [`KeyframeScan`] over the PES
//! payload (after the PES header) finds an IDR/IRAP picture or sequence
//! header before any other picture: the rule of the outputs' entry gate.
//! A scan still undecided at the end of the first packet goes on in the
//! PES's next packets, which are held meanwhile (copies, at most
//! [`MAX_KEY_SCAN`] packets of the PID, payload-less ones included so the
//! order stays); a keyframe sends them all, from the PES start, through the
//! usual CC and discontinuity handling. Undecided after that many packets,
//! or a new PES start first: not a keyframe, held packets dropped.
//!
//! Between PES starts, packets without payload (PCR-only) pass as for any
//! other PID; payload packets are dropped. Memory: at most
//! [`MAX_VIDEO_PIDS`](super::tables::MAX_VIDEO_PIDS) waits of
//! [`MAX_KEY_SCAN`] packets each.

use super::{AWAIT_START, Emit, Splicer};
use crate::output::entry::keyframe::{KeyframeScan, Verdict, VideoKind, first_verdict};
use crate::ts::packet::{PACKET_LEN, Pid, TsPacket};

/// Packets of one PES held while its first picture is looked for (about
/// 1.4 kB of ES: parameter sets and SEI ahead of the picture fit).
pub const MAX_KEY_SCAN: usize = 8;
/// PES starts of one video PID without a keyframe before it resumes
/// anyway at the next one (10 s at 25 frames a second, one PES a frame).
pub const KEY_WAIT_PES: u32 = 250;
/// Packets of one video PID without a keyframe before it resumes anyway at
/// its next PES start (about 10 s at 15 Mbit/s); bounds PIDs whose PES
/// starts are rare.
pub const KEY_WAIT_PACKETS: u32 = 100_000;

/// One video PID waiting for a random access point.
#[derive(Debug)]
pub(super) struct KeyWait {
    pid: Pid,
    /// Packets of the PID seen during the wait, and PES starts among them.
    packets: u32,
    pes_starts: u32,
    /// The scan of the PES being judged, with its packets so far.
    open: Option<(KeyframeScan, Vec<[u8; PACKET_LEN]>)>,
}

impl KeyWait {
    /// Packets held right now.
    pub(super) fn held_packets(&self) -> u64 {
        self.open.as_ref().map_or(0, |(_, held)| held.len() as u64)
    }
}

/// What to do with a packet of a waiting PID.
enum Next {
    /// Send it (the PID resumes, or it has no payload).
    Send,
    /// Held or dropped already.
    Keep,
    /// A keyframe was confirmed: send these held packets, this one last.
    Release(Vec<[u8; PACKET_LEN]>),
}

impl Splicer {
    /// A packet of a video PID still waiting for its random access point.
    pub(super) fn await_key(&mut self, start: usize, pkt: TsPacket<'_>, kind: VideoKind, emit: &mut Emit<'_>) {
        let pid = pkt.pid();
        let n = match self.waits.iter().position(|w| w.pid == pid) {
            Some(n) => n,
            None => {
                self.waits.push(KeyWait { pid, packets: 0, pes_starts: 0, open: None });
                self.waits.len() - 1
            }
        };
        let next = self.judge(n, &pkt, kind);
        match next {
            Next::Keep => {}
            Next::Send => self.send(Some(start), pkt, emit),
            Next::Release(held) => {
                for p in &held {
                    self.send(None, TsPacket::new(p), emit);
                }
            }
        }
    }

    /// Advances wait `n` by one packet; a wait that ends is removed and its
    /// PID marked started.
    fn judge(&mut self, n: usize, pkt: &TsPacket<'_>, kind: VideoKind) -> Next {
        if n >= self.waits.len() {
            return Next::Send;
        }
        // Taken out while judged, put back unless it ends (order is free).
        let mut w = self.waits.swap_remove(n);
        w.packets = w.packets.saturating_add(1);
        let unit_start = pkt.payload_unit_start() && pkt.has_payload();
        if unit_start && let Some((_, held)) = w.open.take() {
            // The PES ended undecided: not a keyframe.
            self.counters.awaiting_key += held.len() as u64;
        }
        let next = if unit_start && !pkt.transport_error() {
            w.pes_starts = w.pes_starts.saturating_add(1);
            if w.pes_starts > KEY_WAIT_PES || w.packets > KEY_WAIT_PACKETS {
                self.counters.key_wait_overflows += 1;
                Some(Next::Send)
            } else {
                match first_verdict(pkt, kind) {
                    (Verdict::Key, _) => Some(Next::Send),
                    (Verdict::Undecided, scan) => {
                        w.open = Some((scan, vec![*pkt.bytes()]));
                        None
                    }
                    (Verdict::NotKey, _) => {
                        self.counters.awaiting_key += 1;
                        None
                    }
                }
            }
        } else if let Some((mut scan, mut held)) = w.open.take() {
            held.push(*pkt.bytes());
            match pkt.payload().map_or(Verdict::Undecided, |p| scan.feed(p)) {
                Verdict::Key => Some(Next::Release(held)),
                Verdict::Undecided if held.len() < MAX_KEY_SCAN => {
                    w.open = Some((scan, held));
                    None
                }
                Verdict::Undecided | Verdict::NotKey => {
                    self.counters.awaiting_key += held.len() as u64;
                    None
                }
            }
        } else if !pkt.has_payload() {
            // PCR-only between PES: passes as for any PID.
            self.waits.push(w);
            return Next::Send;
        } else {
            self.counters.awaiting_key += 1;
            None
        };
        match next {
            Some(next) => {
                self.state[w.pid.index()] &= !AWAIT_START;
                next
            }
            None => {
                if w.open.is_none() {
                    self.dropped(w.pid);
                }
                self.waits.push(w);
                Next::Keep
            }
        }
    }

    /// Drops the waits of PIDs the input no longer lists as video (their
    /// held packets counted); they resume like other PIDs.
    pub(super) fn prune_waits(&mut self) {
        let mut gone = Vec::new();
        let tables = &self.tables;
        self.waits.retain(|w| {
            let keep = tables.video_kind(w.pid).is_some();
            if !keep {
                gone.push((w.pid, w.held_packets()));
            }
            keep
        });
        for (pid, held) in gone {
            self.counters.awaiting_key += held;
            self.dropped(pid);
        }
    }
}
