//! Packet-aligned input, so the fuzzer spends its time inside packet
//! parsing and the SIMD run shortcuts rather than in sync search.
//!
//! Layout: `g h body...`
//! - `g & 3`: stride (0 or 3: 188, 1: 192 with a 4-byte prefix, 2: 204);
//!   `g & 4`: remap every PID to a small set (long same-PID runs);
//!   `g & 0x10` clear: clear transport_error_indicator everywhere.
//! - `h & 7`: max packets per `Scanner::scan` call; `h >> 3` bits 0..2:
//!   PIDs 0, 0x101, 0x1FFF start out wanted by the payload sink.
//! - body: packet units of `stride` bytes. The byte at each sync position is
//!   a control byte `c`, then overwritten with 0x47 unless `c & 0x0F == 0x0F`.
//!   `c & 0x10` clear: rewrite the continuity counter to continue the PID's
//!   sequence; `c & 0x80`: force adaptation_field_control to payload-only.
//!
//! Checks: report invariants and kernel agreement on the analyzer (as in
//! `scanner`); then the bare `Scanner` on every kernel, fed in runs of the
//! chosen length with a sink that toggles wanted PIDs from packet contents,
//! must produce identical outcomes, sink calls and `PidStats`; and
//! `extract_pids_with` must agree across kernels and with the header bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringest::ts::packet::{Pid, TsPacket};
use uringest::ts::scan::{Kernel, PayloadSink, Run, ScanOutcome, Scanner, extract_pids_with};
use uringest::ts::stats::{PidStats, PidTable};

const SMALL: [u16; 8] = [0x100, 0x100, 0x100, 0x101, 0x000, 0x1FFF, 0x102, 0x100];
const MAX_RUN: [usize; 8] = [1, 2, 3, 4, 7, 8, 9, 2048];

/// Records wanted packets and flips interest in PIDs as the packets say.
#[derive(Default, Debug, PartialEq)]
struct ToggleSink {
    seen: Vec<(u64, u16)>,
}

impl PayloadSink for ToggleSink {
    fn payload_packet(&mut self, pkt: TsPacket<'_>, index: u64, table: &mut PidTable) {
        self.seen.push((index, pkt.pid().value()));
        let b = pkt.bytes();
        if b[4] & 0x80 != 0 {
            table.set_wanted(Pid::new(SMALL[usize::from(b[5] & 7)]), b[4] & 0x40 != 0);
        }
    }
}

#[derive(Debug, PartialEq)]
struct ScanResult {
    outcomes: Vec<(Run, ScanOutcome)>,
    packets: u64,
    table: Vec<PidStats>,
    sink: ToggleSink,
}

fn scan_all(kernel: Kernel, buf: &[u8], prefix: usize, stride: usize, max: usize, wanted: &[Pid]) -> ScanResult {
    let mut scanner = Scanner::with_kernel(kernel).expect("supported kernel");
    for &pid in wanted {
        scanner.table_mut().set_wanted(pid, true);
    }
    let mut sink = ToggleSink::default();
    let mut outcomes = Vec::new();
    let mut pos = prefix;
    loop {
        let run = Run::fitting(buf.len(), pos, stride, max);
        if run.count == 0 {
            break;
        }
        let out = scanner.scan(buf, run, &mut sink);
        assert!(out.packets <= run.count, "scan accounted more packets than the run holds");
        if out.sync_lost {
            assert!(out.packets < run.count);
            assert_ne!(buf[pos + out.packets * stride], 0x47, "sync_lost at a sync byte");
        } else {
            assert_eq!(out.packets, run.count, "scan stopped early without losing sync");
        }
        outcomes.push((run, out));
        // Skip the packet that lost sync, like a framer that found the next one.
        pos += (out.packets + usize::from(out.sync_lost)) * stride;
    }
    let table: Vec<PidStats> = scanner.table().iter().cloned().collect();
    let sum: u64 = table.iter().map(|e| e.packets).sum();
    assert_eq!(sum, scanner.packets(), "per-PID packets do not add up to scanner.packets()");
    let expected: usize = outcomes.iter().map(|(_, o)| o.packets).sum();
    assert_eq!(scanner.packets(), expected as u64, "scanner.packets() != sum of outcomes");
    ScanResult { outcomes, packets: scanner.packets(), table, sink }
}

fuzz_target!(|data: &[u8]| {
    let [g, h, body @ ..] = data else { return };
    let stride = [188, 192, 204, 188][usize::from(g & 3)];
    let prefix = if stride == 192 { 4 } else { 0 };
    let mut buf = body.to_vec();
    let mut counters = [0x0Fu8; 8192];
    let mut p = prefix;
    while p < buf.len() {
        let c = buf[p];
        if c & 0x0F != 0x0F {
            buf[p] = 0x47;
            if p + 3 < buf.len() {
                if g & 0x10 == 0 {
                    buf[p + 1] &= 0x7F;
                }
                if g & 4 != 0 {
                    let pid = SMALL[usize::from(buf[p + 1] & 7)];
                    buf[p + 1] = (buf[p + 1] & 0xE0) | (pid >> 8) as u8;
                    buf[p + 2] = pid as u8;
                }
                if c & 0x80 != 0 {
                    buf[p + 3] = (buf[p + 3] & 0xCF) | 0x10;
                }
                let pid = usize::from(buf[p + 1] & 0x1F) << 8 | usize::from(buf[p + 2]);
                if c & 0x10 == 0 {
                    counters[pid] = (counters[pid] + 1) & 0x0F;
                    buf[p + 3] = (buf[p + 3] & 0xF0) | counters[pid];
                } else {
                    counters[pid] = buf[p + 3] & 0x0F;
                }
            }
        }
        p += stride;
    }

    uringest_fuzz::analyze_all(&buf, None);

    let max = MAX_RUN[usize::from(h & 7)];
    let wanted: Vec<Pid> = [Pid::PAT, Pid::new(0x101), Pid::NULL]
        .into_iter()
        .enumerate()
        .filter(|(i, _)| (h >> 3) & (1 << i) != 0)
        .map(|(_, p)| p)
        .collect();
    let kernels = uringest_fuzz::kernels();
    let reference = scan_all(Kernel::Scalar, &buf, prefix, stride, max, &wanted);
    for &k in &kernels[1..] {
        let other = scan_all(k, &buf, prefix, stride, max, &wanted);
        if other != reference {
            assert_eq!(other.outcomes, reference.outcomes, "scan outcomes differ: {} vs scalar", k.name());
            assert_eq!(other.sink, reference.sink, "sink calls differ: {} vs scalar", k.name());
            assert_eq!(other.table, reference.table, "PidStats differ: {} vs scalar", k.name());
            assert_eq!(other.packets, reference.packets, "packet count differs: {} vs scalar", k.name());
        }
    }

    // extract_pids: agree across kernels and with the header bytes.
    let run = Run::fitting(buf.len(), prefix, stride, usize::MAX);
    let out_len = if h & 0x40 != 0 { run.count / 2 + 1 } else { run.count };
    let mut expected = vec![0u16; out_len];
    let n = extract_pids_with(Kernel::Scalar, &buf, run, &mut expected);
    assert!(n <= out_len.min(run.count));
    for (i, &pid) in expected[..n].iter().enumerate() {
        let off = prefix + i * stride;
        assert_eq!(buf[off], 0x47, "extract_pids passed a packet without sync");
        assert_eq!(pid, u16::from(buf[off + 1] & 0x1F) << 8 | u16::from(buf[off + 2]), "extract_pids wrong PID");
    }
    if n < out_len.min(run.count) {
        assert_ne!(buf[prefix + n * stride], 0x47, "extract_pids stopped at a sync byte");
    }
    for &k in &kernels[1..] {
        let mut got = vec![0u16; out_len];
        let m = extract_pids_with(k, &buf, run, &mut got);
        assert_eq!((m, &got[..m]), (n, &expected[..n]), "extract_pids differs: {} vs scalar", k.name());
    }
});
