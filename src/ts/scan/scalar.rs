//! The reference kernel: every packet through [`PidTable::account`].
//!
//! [`PidTable::account`]: crate::ts::stats::PidTable::account

use super::{GroupMatcher, HOT, HotSet, Run, ScanCtx, ScanOutcome, drive, header_word};
use crate::ts::packet::SYNC_BYTE;

/// A matcher that never matches, so `drive` handles packets one by one.
struct NoShortcut;

impl GroupMatcher for NoShortcut {
    const LANES: usize = usize::MAX;
    fn matches(&self, _: &[u8], _: usize, _: usize, _: &HotSet) -> (u32, [u32; HOT]) {
        (0, [0; HOT])
    }
}

/// Scans `run` one packet at a time.
pub(super) fn scan(ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    drive(&NoShortcut, ctx, buf, run)
}

/// Writes PIDs from packet `from` of `run` on; returns the packet count
/// reached (stops at the first missing sync byte).
pub(super) fn extract_pids(buf: &[u8], run: Run, out: &mut [u16], from: usize) -> usize {
    for (i, slot) in out.iter_mut().enumerate().take(run.count).skip(from) {
        let word = header_word(buf, run.start + i * run.stride);
        if word as u8 != SYNC_BYTE {
            return i;
        }
        *slot = (((word & 0x1F00) | ((word >> 16) & 0xFF)) & 0x1FFF) as u16;
    }
    run.count
}
