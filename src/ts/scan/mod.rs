//! The scanner: walks runs of aligned packets, checks sync bytes and keeps
//! the per-PID counters of [`PidTable`].
//!
//! Three kernels give identical results (property tests hold them to it):
//! - `Scalar` applies [`PidTable::account`] to every packet;
//! - `Sse2` (4 lanes) and `Avx2` (8 lanes) load the 4-byte headers of a
//!   group of packets at once and match them against up to four *hot* PIDs
//!   held in registers: sync byte, no transport error, a hot PID, payload
//!   without adaptation field, and for each lane the counter its PID expects
//!   there (its last counter plus the number of its packets in the group up
//!   to that lane, from a prefix-count table indexed by the lane mask). The
//!   matching prefix of the group is applied in bulk per PID (packets += n,
//!   counter += n), which is exactly what the reference rules do for such
//!   packets. The first packet that differs tries the scalar *hot lane*
//!   (a payload packet of a hot PID with the next counter, with or without
//!   a plain adaptation field, PCR recorded), and otherwise goes through
//!   [`PidTable::account`]. Interleaved video, audio and nulls thus stay on
//!   the fast path; PSI, discontinuities and damaged packets take the slow
//!   one. When groups keep breaking in their first lanes (streams where
//!   most packets carry adaptation fields) the kernels stop trying groups
//!   for up to 32 packets and use the hot lane alone.
//!
//! The scanner does not look for sync: it stops before the first packet that
//! lacks 0x47 and reports it, and the framer resynchronises.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::packet::{Cc, PACKET_LEN, SYNC_BYTE, TsPacket};
use super::stats::PidTable;

/// Receives the packets of PIDs marked wanted (PSI, codec sniffing).
pub trait PayloadSink {
    /// Called once per wanted packet, in stream order, after its counters
    /// were updated. The sink may mark PIDs wanted or not.
    fn payload_packet(&mut self, pkt: TsPacket<'_>, packet_index: u64, table: &mut PidTable);
}

/// A sink that wants nothing.
impl PayloadSink for () {
    fn payload_packet(&mut self, _: TsPacket<'_>, _: u64, _: &mut PidTable) {}
}

/// The instruction set a scanner runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// One packet at a time; the reference.
    Scalar,
    /// Groups of 4 headers in SSE2 registers.
    Sse2,
    /// Groups of 8 headers gathered into AVX2 registers.
    Avx2,
}

impl Kernel {
    /// The fastest kernel this CPU supports.
    pub fn detect() -> Kernel {
        [Kernel::Avx2, Kernel::Sse2].into_iter().find(|k| k.is_supported()).unwrap_or(Kernel::Scalar)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => {
                std::arch::is_x86_feature_detected!("sse2") && std::arch::is_x86_feature_detected!("popcnt")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("popcnt")
                    && std::arch::is_x86_feature_detected!("bmi1")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Lower-case name, as printed by `probe` and the benches.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Sse2 => "sse2",
            Kernel::Avx2 => "avx2",
        }
    }
}

/// Where a run of packets lies in a buffer: packet `i` starts (with its sync
/// byte) at `start + i * stride` and spans 188 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// Offset of the first sync byte.
    pub start: usize,
    /// Distance between sync bytes: 188, 192 or 204.
    pub stride: usize,
    /// Number of packets.
    pub count: usize,
}

impl Run {
    /// The run of all whole packets from `start` on, at most `max` of them.
    pub fn fitting(buf_len: usize, start: usize, stride: usize, max: usize) -> Run {
        let count = match buf_len.checked_sub(start + PACKET_LEN) {
            Some(room) if stride > 0 => room / stride + 1,
            _ => 0,
        };
        Run { start, stride, count: count.min(max) }
    }

    /// Whether every packet of the run lies inside a buffer of `buf_len`.
    pub fn fits(&self, buf_len: usize) -> bool {
        self.count == 0
            || self
                .stride
                .checked_mul(self.count - 1)
                .and_then(|span| span.checked_add(self.start + PACKET_LEN))
                .is_some_and(|end| end <= buf_len)
    }
}

/// How a scan ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanOutcome {
    /// Packets with a good sync byte that were accounted.
    pub packets: usize,
    /// The scan stopped at a packet position lacking 0x47.
    pub sync_lost: bool,
}

/// Per-PID counters kept over a stream of packet runs.
#[derive(Clone)]
pub struct Scanner {
    kernel: Kernel,
    table: PidTable,
    next_index: u64,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner::new()
    }
}

impl Scanner {
    /// A scanner on the fastest kernel of this CPU.
    pub fn new() -> Scanner {
        Scanner { kernel: Kernel::detect(), table: PidTable::default(), next_index: 0 }
    }

    /// A scanner on `kernel`, or `None` when the CPU lacks it.
    pub fn with_kernel(kernel: Kernel) -> Option<Scanner> {
        kernel.is_supported().then(|| Scanner { kernel, table: PidTable::default(), next_index: 0 })
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The counters so far.
    pub fn table(&self) -> &PidTable {
        &self.table
    }

    /// The counters, for marking PIDs wanted.
    pub fn table_mut(&mut self) -> &mut PidTable {
        &mut self.table
    }

    /// Packets accounted so far (the index the next packet will get).
    pub fn packets(&self) -> u64 {
        self.next_index
    }

    /// A scanner on the same kernel with fresh counters that wants the same
    /// PIDs, for a later part of the same stream.
    pub fn fork(&self) -> Scanner {
        let mut table = PidTable::default();
        for pid in self.table.wanted_pids() {
            table.set_wanted(pid, true);
        }
        Scanner { kernel: self.kernel, table, next_index: 0 }
    }

    /// Continues these counters with those of `later`, a [`Scanner::fork`]
    /// that counted the packets right after the ones counted here.
    pub fn append(&mut self, later: &Scanner) {
        self.table.append(&later.table, self.next_index);
        self.next_index += later.next_index;
    }

    /// Accounts the packets of `run`, stopping before the first one whose
    /// first byte is not 0x47. A run that does not fit in `buf` is cut to the
    /// packets that do.
    pub fn scan(&mut self, buf: &[u8], run: Run, sink: &mut dyn PayloadSink) -> ScanOutcome {
        let run = if run.fits(buf.len()) { run } else { Run::fitting(buf.len(), run.start, run.stride, run.count) };
        let ctx = ScanCtx { table: &mut self.table, next_index: &mut self.next_index, sink };
        match self.kernel {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => x86::scan_avx2(ctx, buf, run),
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => x86::scan_sse2(ctx, buf, run),
            _ => scalar::scan(ctx, buf, run),
        }
    }
}

/// What a kernel updates.
struct ScanCtx<'a> {
    table: &'a mut PidTable,
    next_index: &'a mut u64,
    sink: &'a mut dyn PayloadSink,
}

/// Number of PIDs the SIMD kernels track at once.
const HOT: usize = 4;
/// Longest stretch, in packets, without group attempts after groups kept
/// breaking early.
const MAX_GROUP_BACKOFF: usize = 32;
/// A masked header that no packet can produce (bits outside the mask).
const NO_HEADER: u32 = u32::MAX;
/// Bits of the little-endian header word a hot PID must match: sync byte,
/// transport_error_indicator, PID, scrambling (none) and
/// adaptation_field_control (payload only); payload_unit_start, priority
/// and counter may vary.
const HOT_HEADER_MASK: u32 = 0xF0FF_9FFF;

/// Up to [`HOT`] PIDs whose next packets the kernels can apply in bulk: for
/// each, the header its simple packets carry (counter masked out), the last
/// counter and the table slot. A PID is hot only while its entry is neither
/// null nor wanted and its counter is known, so a simple packet (payload
/// only, no transport error) with the next counter is exactly what the
/// reference rules would accept without an error.
#[derive(Clone, Copy)]
struct HotSet {
    headers: [u32; HOT],
    /// Last counter per hot PID. Kept as u32, like every field the kernels
    /// read each group: byte fields invited wide loads over narrow stores,
    /// which stall store forwarding.
    cc: [u32; HOT],
    /// All ones for the null PID (counted, never continuity-checked).
    any_cc: [u32; HOT],
    /// Packets applied in bulk but not yet written to the table.
    pending: [u32; HOT],
    slots: [usize; HOT],
    victim: usize,
}

impl HotSet {
    const EMPTY: HotSet = HotSet {
        headers: [NO_HEADER; HOT],
        cc: [0; HOT],
        any_cc: [0; HOT],
        pending: [0; HOT],
        slots: [0; HOT],
        victim: 0,
    };

    /// Adds `counts[h]` packets to each hot PID; their counters advance by
    /// as much. Kept in registers until [`HotSet::flush`].
    #[inline(always)]
    fn apply(&mut self, counts: [u32; HOT]) {
        for ((pending, cc), count) in self.pending.iter_mut().zip(&mut self.cc).zip(counts) {
            *pending += count;
            *cc = (*cc + count) & 0x0F;
        }
    }

    /// Writes bulk-applied packets to the table, so the reference path
    /// sees current counters.
    #[inline(always)]
    fn flush(&mut self, table: &mut PidTable) {
        for h in 0..HOT {
            if self.pending[h] > 0 {
                let entry = table.at(self.slots[h]);
                entry.packets += u64::from(self.pending[h]);
                if self.any_cc[h] == 0 {
                    entry.last_cc = self.cc[h] as u8;
                    entry.duplicate_seen = false;
                    entry.note_bulk_events();
                }
                self.pending[h] = 0;
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.headers == [NO_HEADER; HOT]
    }

    /// Takes one payload packet of a hot PID without leaving the hot state,
    /// when the reference rules reduce to "next counter, maybe a PCR": no
    /// transport error, no scrambling, the expected counter (any counter for
    /// the null PID, which must then carry no adaptation field), and an
    /// adaptation field, if any, that is well formed and without
    /// discontinuity_indicator. Returns false, having changed nothing, for
    /// anything else.
    #[inline(always)]
    fn lane(&mut self, table: &mut PidTable, bytes: &[u8; PACKET_LEN], index: u64) -> bool {
        const AFC_ADAPTATION: u32 = 0x2000_0000;
        let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let fixed = word & HOT_HEADER_MASK;
        let Some(h) = self.headers.iter().position(|&x| x == fixed & !AFC_ADAPTATION) else {
            return false;
        };
        let has_field = fixed & AFC_ADAPTATION != 0;
        let cc = (word >> 24) & 0x0F;
        if self.any_cc[h] != 0 {
            if has_field {
                return false;
            }
            self.pending[h] += 1;
            return true;
        }
        if cc != (self.cc[h] + 1) & 0x0F {
            return false;
        }
        if has_field {
            if usize::from(bytes[4]) > PACKET_LEN - 5 {
                return false;
            }
            if let Some(af) = TsPacket::new(bytes).adaptation_field() {
                if af.discontinuity() {
                    return false;
                }
                if bytes[5] & 0x10 != 0 {
                    let Some(pcr) = af.pcr() else { return false };
                    table.at(self.slots[h]).pcr.record(pcr, index, false);
                }
            }
        }
        self.pending[h] += 1;
        self.cc[h] = cc;
        true
    }

    /// Drops the PIDs whose packets a payload sink now wants.
    fn drop_wanted(&mut self, table: &mut PidTable) {
        for h in 0..HOT {
            if self.headers[h] != NO_HEADER && table.at(self.slots[h]).wanted {
                self.headers[h] = NO_HEADER;
            }
        }
    }

    /// Brings the entry of the packet just accounted (header word `word`)
    /// into the set, or drops it when it no longer qualifies. Call after
    /// [`HotSet::flush`].
    fn refresh(&mut self, table: &mut PidTable, slot: usize, word: u32) {
        let header = (word & 0x00FF_1F00) | u32::from(SYNC_BYTE) | 0x1000_0000;
        let at = self.headers.iter().position(|&h| h == header);
        let entry = table.at(slot);
        let null = entry.pid == super::packet::Pid::NULL;
        let cc = match entry.last_cc() {
            _ if entry.wanted => None,
            _ if null => Some(Cc::new(0)),
            known => known,
        };
        match (cc, at) {
            (Some(cc), Some(i)) => self.cc[i] = u32::from(cc.value()),
            (Some(cc), None) => {
                let i = self.headers.iter().position(|&h| h == NO_HEADER).unwrap_or_else(|| {
                    self.victim = (self.victim + 1) % HOT;
                    self.victim
                });
                self.headers[i] = header;
                self.cc[i] = u32::from(cc.value());
                self.any_cc[i] = if null { u32::MAX } else { 0 };
                self.slots[i] = slot;
            }
            (None, Some(i)) => self.headers[i] = NO_HEADER,
            (None, None) => {}
        }
    }
}

/// Compares groups of headers against the hot set.
trait GroupMatcher {
    /// Packets per group.
    const LANES: usize;
    /// For the group at `buf[off..]` (`LANES` packets `stride` apart): a bit
    /// per lane that is a simple packet of a hot PID with the expected
    /// counter, and per hot PID the lanes that carry it (counter or not).
    fn matches(&self, buf: &[u8], off: usize, stride: usize, hot: &HotSet) -> (u32, [u32; HOT]);
}

/// The little-endian header word of the packet at `buf[off..]`.
#[inline(always)]
fn header_word(buf: &[u8], off: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(word)
}

/// `PREFIX[m]` byte `k`: how many of bits `0..=k` of `m` are set.
static PREFIX: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut m = 0;
    while m < 256 {
        let mut k = 0;
        let mut count = 0u64;
        let mut word = 0u64;
        while k < 8 {
            count += (m >> k) as u64 & 1;
            word |= count << (8 * k);
            k += 1;
        }
        table[m] = word;
        m += 1;
    }
    table
};

/// The loop shared by every kernel; `M` decides how many packets of a group
/// can be applied in bulk. Inlined into each kernel's entry point so the
/// SIMD comparisons inline into it.
#[inline(always)]
fn drive<M: GroupMatcher>(matcher: &M, ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    let Run { start, stride, count } = run;
    let run_base = *ctx.next_index;
    let mut i = 0;
    let mut hot = HotSet::EMPTY;
    let (mut backoff, mut retry_at) = (0usize, 0usize);
    let full = if M::LANES >= 32 { 0 } else { (1u32 << M::LANES) - 1 };
    while i < count {
        if i >= retry_at && M::LANES <= count - i && !hot.is_empty() {
            let (ok, masks) = matcher.matches(buf, start + i * stride, stride, &hot);
            if ok == full {
                // The common case: a constant step and counters that follow
                // from the PID masks alone, so the next group's loads and
                // comparisons need not wait for this one's result.
                hot.apply(masks.map(u32::count_ones));
                i += M::LANES;
                backoff = 0;
                continue;
            }
            let n = ok.trailing_ones();
            if n > 0 {
                let lead = (1u32 << n) - 1;
                hot.apply(masks.map(|m| (m & lead).count_ones()));
                i += n as usize;
            }
            // Streams where most packets carry adaptation fields break
            // nearly every group; stop trying groups for a while there and
            // let the hot lane take packets one by one.
            if n < 2 {
                backoff = (backoff * 2).clamp(1, MAX_GROUP_BACKOFF);
                retry_at = i + backoff;
            }
        }
        let off = start + i * stride;
        let Some(bytes) = buf.get(off..off + PACKET_LEN).and_then(|b| b.try_into().ok()) else {
            break;
        };
        if M::LANES != usize::MAX && hot.lane(ctx.table, bytes, run_base + i as u64) {
            i += 1;
            continue;
        }
        hot.flush(ctx.table);
        let pkt = TsPacket::new(bytes);
        if !pkt.has_sync() {
            *ctx.next_index = run_base + i as u64;
            return ScanOutcome { packets: i, sync_lost: true };
        }
        // Bulk-applied packets before this one get their indices now.
        *ctx.next_index = run_base + i as u64;
        let index = *ctx.next_index;
        let slot = ctx.table.account(&pkt, index);
        *ctx.next_index += 1;
        i += 1;
        if ctx.table.at(slot).wanted {
            if !pkt.transport_error() {
                ctx.sink.payload_packet(pkt, index, ctx.table);
                // The sink may have made a hot PID wanted.
                hot.drop_wanted(ctx.table);
            }
        } else if M::LANES != usize::MAX {
            hot.refresh(ctx.table, slot, header_word(buf, off));
        }
    }
    hot.flush(ctx.table);
    *ctx.next_index = run_base + i as u64;
    ScanOutcome { packets: i, sync_lost: false }
}

/// PIDs of the packets of `run`, written to `out` (one per packet, up to
/// `out.len()`), stopping before the first packet that lacks 0x47. Returns
/// the number written. Uses the fastest kernel of this CPU.
pub fn extract_pids(buf: &[u8], run: Run, out: &mut [u16]) -> usize {
    extract_pids_with(Kernel::detect(), buf, run, out)
}

/// [`extract_pids`] on a chosen kernel (scalar when the CPU lacks it).
pub fn extract_pids_with(kernel: Kernel, buf: &[u8], run: Run, out: &mut [u16]) -> usize {
    let run = if run.fits(buf.len()) { run } else { Run::fitting(buf.len(), run.start, run.stride, run.count) };
    let run = Run { count: run.count.min(out.len()), ..run };
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if kernel.is_supported() => x86::extract_pids_avx2(buf, run, out),
        _ => scalar::extract_pids(buf, run, out, 0),
    }
}

#[cfg(test)]
mod tests;
