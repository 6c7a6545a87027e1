//! The scanner: walks runs of aligned packets, checks sync bytes and keeps
//! the per-PID counters of [`PidTable`].
//!
//! Three kernels give identical results (property tests hold them to it):
//! - `Scalar` applies [`PidTable::account`] to every packet;
//! - `Sse2` (4 lanes) and `Avx2` (8 lanes) load the 4-byte headers of a
//!   group of packets at once and compare them with the header the current
//!   run predicts: sync byte, no transport error, the run's PID, payload
//!   without adaptation field, and continuity counters rising by one. The
//!   matching prefix of the group is applied in bulk (packets += n, counter
//!   += n), which is exactly what the reference rules do for such packets;
//!   the first packet that differs goes through [`PidTable::account`].
//!
//! A *run* starts after a packet whose PID is neither null nor wanted by a
//! payload sink and that had no transport error, so its counter is known.
//!
//! The scanner does not look for sync: it stops before the first packet that
//! lacks 0x47 and reports it, and the framer resynchronises.

mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use super::packet::{PACKET_LEN, SYNC_BYTE, TsPacket};
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
        [Kernel::Avx2, Kernel::Sse2]
            .into_iter()
            .find(|k| k.is_supported())
            .unwrap_or(Kernel::Scalar)
    }

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Sse2 => std::arch::is_x86_feature_detected!("sse2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
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
        Run {
            start,
            stride,
            count: count.min(max),
        }
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
        Scanner {
            kernel: Kernel::detect(),
            table: PidTable::default(),
            next_index: 0,
        }
    }

    /// A scanner on `kernel`, or `None` when the CPU lacks it.
    pub fn with_kernel(kernel: Kernel) -> Option<Scanner> {
        kernel.is_supported().then(|| Scanner {
            kernel,
            table: PidTable::default(),
            next_index: 0,
        })
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

    /// Accounts the packets of `run`, stopping before the first one whose
    /// first byte is not 0x47. A run that does not fit in `buf` is cut to the
    /// packets that do.
    pub fn scan(&mut self, buf: &[u8], run: Run, sink: &mut dyn PayloadSink) -> ScanOutcome {
        let run = if run.fits(buf.len()) {
            run
        } else {
            Run::fitting(buf.len(), run.start, run.stride, run.count)
        };
        let ctx = ScanCtx {
            table: &mut self.table,
            next_index: &mut self.next_index,
            sink,
        };
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

/// The header a run predicts for its next packets, and the run's state.
#[derive(Clone, Copy)]
struct RunState {
    slot: usize,
    /// Masked header (see [`RUN_HEADER_MASK`]) without the counter bits.
    header: u32,
    cc: u8,
}

/// Bits of the little-endian header word a run must match: sync byte,
/// transport_error_indicator, PID, adaptation_field_control and counter;
/// payload_unit_start, priority and scrambling may vary.
const RUN_HEADER_MASK: u32 = 0x3FFF_9FFF;

/// Compares groups of headers against a run's prediction.
trait RunMatcher {
    /// Packets per group.
    const LANES: usize;
    /// How many leading packets of the group at `buf[off..]` (`LANES`
    /// packets `stride` apart, all inside `buf`) continue the run whose
    /// masked header is `header` and whose last counter is `cc`.
    fn leading_matches(&self, buf: &[u8], off: usize, stride: usize, header: u32, cc: u8) -> usize;
}

/// The little-endian header word of the packet at `buf[off..]`.
#[inline(always)]
fn header_word(buf: &[u8], off: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(word)
}

/// The run that follows the packet whose header word is `word`, if any.
#[inline(always)]
fn run_after(ctx: &mut ScanCtx<'_>, slot: usize, word: u32) -> Option<RunState> {
    let entry = ctx.table.at(slot);
    if entry.wanted || entry.pid == super::packet::Pid::NULL || word & 0x80_00 != 0 {
        return None;
    }
    let cc = entry.last_cc()?.value();
    Some(RunState {
        slot,
        header: (word & 0x00FF_1F00) | u32::from(SYNC_BYTE) | 0x1000_0000,
        cc,
    })
}

/// The loop shared by every kernel; `M` decides how many packets of a group
/// can be applied in bulk. Inlined into each kernel's entry point so the
/// SIMD comparisons inline into it.
#[inline(always)]
fn drive<M: RunMatcher>(matcher: &M, mut ctx: ScanCtx<'_>, buf: &[u8], run: Run) -> ScanOutcome {
    let Run {
        start,
        stride,
        count,
    } = run;
    let mut i = 0;
    let mut state: Option<RunState> = None;
    while i < count {
        if let Some(st) = state
            && M::LANES <= count - i
        {
            let n = matcher.leading_matches(buf, start + i * stride, stride, st.header, st.cc);
            if n > 0 {
                let cc = ((usize::from(st.cc) + n) & 0x0F) as u8;
                let entry = ctx.table.at(st.slot);
                entry.packets += n as u64;
                entry.last_cc = cc;
                entry.duplicate_seen = false;
                *ctx.next_index += n as u64;
                i += n;
                state = Some(RunState { cc, ..st });
                if n == M::LANES {
                    continue;
                }
                if i >= count {
                    break;
                }
            }
        }
        let off = start + i * stride;
        let Some(bytes) = buf
            .get(off..off + PACKET_LEN)
            .and_then(|b| b.try_into().ok())
        else {
            break;
        };
        let pkt = TsPacket::new(bytes);
        if !pkt.has_sync() {
            return ScanOutcome {
                packets: i,
                sync_lost: true,
            };
        }
        let index = *ctx.next_index;
        let slot = ctx.table.account(&pkt, index);
        *ctx.next_index += 1;
        i += 1;
        if ctx.table.at(slot).wanted {
            if !pkt.transport_error() {
                ctx.sink.payload_packet(pkt, index, ctx.table);
            }
            state = None;
        } else if M::LANES != usize::MAX {
            state = run_after(&mut ctx, slot, header_word(buf, off));
        }
    }
    ScanOutcome {
        packets: i,
        sync_lost: false,
    }
}

/// PIDs of the packets of `run`, written to `out` (one per packet, up to
/// `out.len()`), stopping before the first packet that lacks 0x47. Returns
/// the number written. Uses the fastest kernel of this CPU.
pub fn extract_pids(buf: &[u8], run: Run, out: &mut [u16]) -> usize {
    extract_pids_with(Kernel::detect(), buf, run, out)
}

/// [`extract_pids`] on a chosen kernel (scalar when the CPU lacks it).
pub fn extract_pids_with(kernel: Kernel, buf: &[u8], run: Run, out: &mut [u16]) -> usize {
    let run = if run.fits(buf.len()) {
        run
    } else {
        Run::fitting(buf.len(), run.start, run.stride, run.count)
    };
    let run = Run {
        count: run.count.min(out.len()),
        ..run
    };
    match kernel {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 if kernel.is_supported() => x86::extract_pids_avx2(buf, run, out),
        _ => scalar::extract_pids(buf, run, out, 0),
    }
}

#[cfg(test)]
mod tests;
