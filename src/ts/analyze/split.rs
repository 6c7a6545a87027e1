//! Analysis of one large buffer on two threads, with a result equal to the
//! sequential one.
//!
//! A big file is cut at a packet boundary near its middle, the *seam*. The
//! first half is analyzed on the calling thread, the second on another, by
//! a fork of the analyzer: fresh counters, but the framing locked on the
//! seam and the PSI state of the stream's opening. The halves are then
//! joined, and the join is exact:
//!
//! - Counters add. Per PID, only the first two continuity events of the
//!   second half depend on the first half; the tables keep them and replay
//!   them against the first half's state ([`PidTable::append`]). The PCR
//!   pair that spans the seam is timed the same way.
//! - The fork starts from the PSI state reached after the opening (PAT,
//!   PMTs, partial sections, codec sniffing, wanted PIDs). If the first
//!   half ends in any other state (a table changed, a section straddles the
//!   seam), or if its framing does not arrive locked exactly on the seam,
//!   the fork's work is thrown away and the first half's analyzer carries
//!   on alone: slower, never different.
//!
//! Nothing here is I/O; the thread is only for speed. The property tests
//! below hold the join to the sequential result for seams anywhere.
//!
//! [`PidTable::append`]: crate::ts::stats::PidTable::append

use super::{Analyzer, Cursor, Pause, Stop};
use crate::ts::framing::SyncTracker;

/// Buffers below this are analyzed on one thread: a thread start and the
/// opening cost more than they save.
const PARALLEL_MIN_BYTES: usize = 16 << 20;
/// Bytes analyzed before the fork: enough for the PAT, the PMTs and codec
/// sniffing of any sane stream (several seconds at broadcast rates).
const OPENING_BYTES: usize = 4 << 20;

impl Analyzer {
    /// Analyzes a whole input held in `buf` (no duration limit), on two
    /// threads when the buffer is large and the machine has two cores. The
    /// result is the one [`Analyzer::analyze`] gives.
    pub fn analyze_parallel(&mut self, buf: &[u8]) -> Stop {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        if buf.len() < PARALLEL_MIN_BYTES || cores < 2 {
            return self.analyze(buf, None);
        }
        self.analyze_split(buf, OPENING_BYTES, buf.len() / 2)
    }

    /// [`Analyzer::analyze_parallel`] with the opening and the seam chosen
    /// by the caller, whatever the buffer's size: the seam is the packet
    /// boundary at or before `seam_hint`. For tests and fuzzing.
    #[doc(hidden)]
    pub fn analyze_split(&mut self, buf: &[u8], opening: usize, seam_hint: usize) -> Stop {
        let mut cursor = Cursor::default();
        if self.advance(buf, &mut cursor, opening, None) == Pause::End {
            self.finish(buf, &cursor);
            return Stop::End;
        }
        if let Some(seam) = self.seam_after(&cursor, seam_hint)
            && self.try_split(buf, &mut cursor, seam)
        {
            return Stop::End;
        }
        self.advance(buf, &mut cursor, usize::MAX, None);
        self.finish(buf, &cursor);
        Stop::End
    }

    /// The packet boundary at or before `hint`, counted in whole packets
    /// from the locked position of `cursor`; `None` when there is no packet
    /// between the two.
    fn seam_after(&self, cursor: &Cursor, hint: usize) -> Option<usize> {
        let pos = cursor.locked?;
        let stride = self.sync.size()?.stride();
        let seam = pos + hint.checked_sub(pos)? / stride * stride;
        (seam > pos).then_some(seam)
    }

    /// Analyzes `buf` from `cursor` on in two halves split at `seam`, and
    /// joins them. Returns false, with `self` and `cursor` advanced to the
    /// seam exactly as a sequential run would have left them, when the
    /// halves cannot be joined exactly.
    fn try_split(&mut self, buf: &[u8], cursor: &mut Cursor, seam: usize) -> bool {
        let Some(size) = self.sync.size() else { return false };
        let opening_psi = self.psi.clone();
        let opening_wanted = self.scanner.table().wanted_pids();
        let mut later = Analyzer {
            sync: SyncTracker::locked(size),
            scanner: self.scanner.fork(),
            psi: self.psi.fork(),
            bytes: 0,
            skipped_bytes: 0,
            truncated_bytes: 0,
        };
        let mut later_cursor = Cursor { accounted: seam - size.prefix(), locked: Some(seam), search: seam };
        std::thread::scope(|scope| {
            let worker = scope.spawn(|| {
                later.advance(buf, &mut later_cursor, usize::MAX, None);
                later.finish(buf, &later_cursor);
            });
            self.advance(buf, cursor, seam, None);
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        });
        let joinable = cursor.locked == Some(seam)
            && self.sync.size() == Some(size)
            && self.psi.same_state(&opening_psi)
            && self.scanner.table().wanted_pids() == opening_wanted;
        if joinable {
            self.sync.append(&later.sync);
            self.scanner.append(&later.scanner);
            self.psi.append(later.psi);
            self.bytes += later.bytes;
            self.skipped_bytes += later.skipped_bytes;
            self.truncated_bytes += later.truncated_bytes;
        }
        joinable
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ts::psi::{build_section, packetize};

    /// A stream with PSI, two PIDs with PCRs and continuity events of every
    /// kind, then damage chosen by `faults` (byte offset, value) pairs.
    fn stream(packets: usize, seed: u64, faults: &[(usize, u8)], stride: usize) -> Vec<u8> {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut pat_cc = 0;
        let mut pmt_cc = 0;
        let pat = build_section(0x00, 1, 0, &[0, 1, 0xE1, 0x00]);
        let pmt = build_section(
            0x02,
            1,
            0,
            &[0xE1, 0x01, 0xF0, 0x00, 0x1B, 0xE1, 0x01, 0xF0, 0x00, 0x0F, 0xE1, 0x02, 0xF0, 0x00],
        );
        let mut ccs = [0u8; 3];
        let mut pcr = 1_000_000u64;
        let mut out = Vec::new();
        for i in 0..packets {
            let mut p = [0xFFu8; 188];
            match i % 40 {
                0 => p = packetize(&pat, crate::ts::packet::Pid::PAT, &mut pat_cc)[0],
                20 => p = packetize(&pmt, crate::ts::packet::Pid::new(0x100), &mut pmt_cc)[0],
                _ => {
                    let r = next();
                    let k = (r % 3) as usize;
                    let pid: u16 = [0x101, 0x102, 0x1FFF][k];
                    p[0] = 0x47;
                    p[1] = (pid >> 8) as u8;
                    p[2] = pid as u8;
                    // Mostly the next counter; sometimes a duplicate, a gap,
                    // a discontinuity or an adaptation-only packet.
                    let event = (r >> 8) % 12;
                    let (afc, cc) = match event {
                        0 | 1 => (0b01, ccs[k]),
                        2 => (0b01, ccs[k].wrapping_add(3) & 15),
                        3 => (0b10, ccs[k]),
                        _ => (0b01, ccs[k].wrapping_add(1) & 15),
                    };
                    ccs[k] = cc;
                    p[3] = (afc << 4) | cc;
                    if event == 5 {
                        // discontinuity_indicator without a PCR.
                        p[3] |= 0x20;
                        p[4] = 1;
                        p[5] = 0x80;
                    } else if k < 2 && (event == 4 || event == 6 || afc == 0b10) {
                        p[3] |= 0x20;
                        p[4] = 7;
                        p[5] = 0x10 | if event == 6 { 0x80 } else { 0 };
                        pcr += 27_000 * ((r >> 16) % 50);
                        let base = pcr / 300;
                        let ext = pcr % 300;
                        p[6] = (base >> 25) as u8;
                        p[7] = (base >> 17) as u8;
                        p[8] = (base >> 9) as u8;
                        p[9] = (base >> 1) as u8;
                        p[10] = ((base & 1) << 7) as u8 | 0x7E | (ext >> 8) as u8;
                        p[11] = ext as u8;
                    }
                }
            }
            let pad = stride - 188;
            let prefix = if stride == 192 { 4 } else { 0 };
            out.extend(std::iter::repeat_n(0u8, prefix));
            out.extend_from_slice(&p);
            out.extend(std::iter::repeat_n(0u8, pad - prefix));
        }
        for &(at, value) in faults {
            if !out.is_empty() {
                let at = at % out.len();
                out[at] = value;
            }
        }
        out
    }

    fn sequential(buf: &[u8]) -> serde_json::Value {
        let mut a = Analyzer::new();
        a.analyze(buf, None);
        serde_json::to_value(a.report("x")).unwrap()
    }

    fn split(buf: &[u8], opening: usize, seam: usize) -> serde_json::Value {
        let mut a = Analyzer::new();
        assert_eq!(a.analyze_split(buf, opening, seam), Stop::End);
        serde_json::to_value(a.report("x")).unwrap()
    }

    #[test]
    fn clean_stream_joins() {
        let buf = stream(4000, 7, &[], 188);
        let mut a = Analyzer::new();
        let mut cursor = Cursor::default();
        a.advance(&buf, &mut cursor, 188 * 100, None);
        let seam = a.seam_after(&cursor, buf.len() / 2).unwrap();
        assert!(a.try_split(&buf, &mut cursor, seam), "a clean stream must split");
        assert_eq!(serde_json::to_value(a.report("x")).unwrap(), sequential(&buf));
    }

    #[test]
    fn every_seam_joins_exactly() {
        for seed in 1..6 {
            let buf = stream(300, seed, &[], 188);
            let expected = sequential(&buf);
            for seam_packet in 45..300 {
                assert_eq!(split(&buf, 188 * 41, 188 * seam_packet), expected, "seed {seed}, seam {seam_packet}");
            }
        }
    }

    #[test]
    fn pmt_change_after_opening_falls_back() {
        let mut buf = stream(4000, 9, &[], 188);
        // A new PMT version (with a different stream) in the first half.
        let pmt = build_section(0x02, 1, 1, &[0xE1, 0x01, 0xF0, 0x00, 0x1B, 0xE1, 0x01, 0xF0, 0x00]);
        let mut cc = 5;
        let pkt = packetize(&pmt, crate::ts::packet::Pid::new(0x100), &mut cc)[0];
        buf[188 * 1020..188 * 1021].copy_from_slice(&pkt);
        assert_eq!(split(&buf, 188 * 100, buf.len() / 2), sequential(&buf));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn split_equals_sequential(
            packets in 1usize..1500,
            seed in any::<u64>(),
            faults in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            stride in prop::sample::select(vec![188usize, 192, 204]),
            opening in 0usize..60_000,
            seam in 0usize..400_000,
        ) {
            let buf = stream(packets, seed, &faults, stride);
            prop_assert_eq!(split(&buf, opening, seam), sequential(&buf));
        }
    }
}
