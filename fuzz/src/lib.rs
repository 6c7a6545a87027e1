//! Helpers shared by the fuzz targets: report invariants and the
//! kernel-against-kernel comparison of the analyzer.

use uringest::ts::analyze::{Analyzer, Report, Stop};
use uringest::ts::psi::{Psi, PsiCounters};
use uringest::ts::scan::Kernel;
use uringest::ts::stats::{PidStats, PidTable};

/// Every kernel this CPU can run, the scalar reference first.
pub fn kernels() -> Vec<Kernel> {
    [Kernel::Scalar, Kernel::Sse2, Kernel::Avx2].into_iter().filter(|k| k.is_supported()).collect()
}

/// Invariants of a report over an input of `input_len` bytes that stopped
/// with `stop`.
pub fn check_report(input_len: usize, stop: Stop, r: &Report) {
    match stop {
        Stop::End => assert_eq!(r.bytes, input_len as u64, "bytes != input length"),
        Stop::Limit { bytes } => {
            assert!(bytes <= input_len, "limit stop past the end: {bytes} > {input_len}");
            assert_eq!(r.bytes, bytes as u64, "bytes != accounted bytes at limit stop");
        }
    }
    let sum: u64 = r.pids.iter().map(|p| p.packets).sum();
    assert_eq!(sum, r.ts_packets, "per-PID packets do not add up to ts_packets");
    assert!(
        r.ts_packets.checked_mul(188).is_some_and(|b| b <= r.bytes),
        "ts_packets * 188 > bytes ({} packets, {} bytes)",
        r.ts_packets,
        r.bytes
    );
    for w in r.pids.windows(2) {
        assert!(w[0].pid < w[1].pid, "pids not strictly ascending: {} then {}", w[0].pid, w[1].pid);
    }
    for p in &r.pids {
        assert!(p.pid < 8192, "pid {} out of range", p.pid);
        assert!(p.packets > 0, "pid {} listed without a packet", p.pid);
        assert!(p.cc_errors <= p.packets, "pid {}: more cc errors than packets", p.pid);
        assert!(p.transport_errors <= p.packets, "pid {}: more transport errors than packets", p.pid);
        assert!(p.discontinuities <= p.packets, "pid {}: more discontinuities than packets", p.pid);
        assert!(p.scrambled <= p.packets, "pid {}: more scrambled than packets", p.pid);
        if let Some(pcr) = &p.pcr {
            assert!(pcr.count <= p.packets, "pid {}: more PCRs than packets", p.pid);
            assert!(pcr.interval_violations <= pcr.count, "pid {}: more PCR violations than PCRs", p.pid);
        }
    }
    let e = &r.errors;
    assert_eq!(e.cc_errors, r.pids.iter().map(|p| p.cc_errors).sum::<u64>(), "cc_errors total");
    assert_eq!(e.transport_errors, r.pids.iter().map(|p| p.transport_errors).sum::<u64>(), "transport_errors total");
    assert!(
        e.skipped_bytes.checked_add(e.truncated_bytes).is_some_and(|s| s <= r.bytes),
        "skipped {} + truncated {} > bytes {}",
        e.skipped_bytes,
        e.truncated_bytes,
        r.bytes
    );
    // Bytes inside accepted packets are neither garbage nor a cut-short tail.
    assert!(
        e.skipped_bytes + e.truncated_bytes + r.ts_packets * 188 <= r.bytes,
        "skipped {} + truncated {} + 188 * {} packets > bytes {}",
        e.skipped_bytes,
        e.truncated_bytes,
        r.ts_packets,
        r.bytes
    );
    if e.truncated_bytes > 0 {
        assert!(r.ts_packets > 0, "truncated bytes without any packet");
    }
    match r.packet_size {
        None => assert_eq!(r.ts_packets, 0, "packets counted without a packet size"),
        Some(s) => assert!(matches!(s, 188 | 192 | 204), "packet size {s}"),
    }
    if r.ts_packets == 0 {
        assert_eq!(r.packet_size, None, "a lock that accounted no packet");
    }
    let mut numbers = std::collections::BTreeSet::new();
    for prog in &r.programs {
        assert!(prog.number != 0, "program 0 listed as a program");
        assert!(numbers.insert(prog.number), "program {} listed twice", prog.number);
        assert!(prog.pmt_pid < 8192, "pmt pid {} out of range", prog.pmt_pid);
        if let Some(pcr) = prog.pcr_pid {
            assert!(pcr < 8192, "pcr pid {pcr} out of range");
        }
        for s in &prog.streams {
            assert!(s.pid < 8192, "es pid {} out of range", s.pid);
        }
    }
}

/// Everything an analyzer ends with that must not depend on the kernel.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    /// The stop reason.
    pub stop: Stop,
    /// The report as JSON, with the kernel name blanked.
    pub json: String,
    /// The raw per-PID counters (more than the report shows).
    pub table: Vec<PidStats>,
    /// PSI counters.
    pub psi: PsiCounters,
}

/// Analyzes `data` on `kernel`, checks the report invariants and returns
/// what must agree across kernels.
pub fn analyze_on(kernel: Kernel, data: &[u8], limit_secs: Option<f64>) -> Outcome {
    let mut a = Analyzer::with_kernel(kernel).expect("kernel listed as supported");
    let stop = a.analyze(data, limit_secs);
    if limit_secs.is_none() {
        assert_eq!(stop, Stop::End, "stopped early without a limit");
    }
    let mut report = a.report("fuzz");
    assert_eq!(report.scanner, kernel.name());
    check_report(data.len(), stop, &report);
    report.scanner = "";
    let json = serde_json::to_string(&report).expect("report serialises");
    Outcome { stop, json, table: a.table().iter().cloned().collect(), psi: a.psi().counters() }
}

/// Runs `data` through the default analyzer and every kernel; all reports
/// must satisfy the invariants and agree.
pub fn analyze_all(data: &[u8], limit_secs: Option<f64>) {
    let mut default = Analyzer::new();
    let stop = default.analyze(data, limit_secs);
    let default_report = default.report("fuzz");
    check_report(data.len(), stop, &default_report);
    let reference = analyze_on(Kernel::Scalar, data, limit_secs);
    for k in kernels().into_iter().skip(1) {
        let other = analyze_on(k, data, limit_secs);
        if other != reference {
            assert_eq!(other.stop, reference.stop, "stop differs: {} vs scalar", k.name());
            assert_eq!(other.table, reference.table, "pid table differs: {} vs scalar", k.name());
            assert_eq!(other.psi, reference.psi, "psi counters differ: {} vs scalar", k.name());
            assert_eq!(other.json, reference.json, "report differs: {} vs scalar", k.name());
        }
    }
}

/// Invariants of PSI state after any push.
pub fn check_psi(psi: &Psi, table: &PidTable) {
    use uringest::ts::packet::Pid;
    assert!(is_wanted(table, Pid::PAT), "PAT PID no longer wanted");
    let mut numbers = std::collections::BTreeSet::new();
    for (number, pid, pmt) in psi.programs() {
        assert!(number != 0, "program 0 listed as a program");
        assert!(numbers.insert(number), "program {number} listed twice");
        assert!(pid.value() < 8192, "pmt pid {pid} out of range");
        assert!(is_wanted(table, pid), "PMT PID {pid} of program {number} not wanted");
        if let Some(pmt) = pmt {
            assert_eq!(pmt.pmt_pid, pid, "PMT attached to the wrong PID");
            assert_eq!(pmt.program_number, number, "PMT attached to the wrong program");
            assert!(pmt.pcr_pid.value() < 8192);
            for es in &pmt.streams {
                assert!(es.pid.value() < 8192);
            }
        }
    }
    if let Some(pat) = psi.pat() {
        assert_eq!(pat.programs.len(), numbers.len(), "pat().programs and programs() disagree");
    }
}

/// Whether `pid` is marked wanted. The flag is crate-private; its `Debug`
/// output is the only public view of it.
pub fn is_wanted(table: &PidTable, pid: uringest::ts::packet::Pid) -> bool {
    table.get(pid).is_some_and(|e| format!("{e:?}").contains("wanted: true"))
}

/// Counters must never go down.
pub fn check_counters_monotone(before: PsiCounters, after: PsiCounters) {
    assert!(after.crc_errors >= before.crc_errors, "crc_errors decreased");
    assert!(after.malformed_sections >= before.malformed_sections, "malformed_sections decreased");
    assert!(after.pat_changes >= before.pat_changes, "pat_changes decreased");
    assert!(after.pmt_changes >= before.pmt_changes, "pmt_changes decreased");
}

/// Analyzes `data` split in two at a seam chosen from its first bytes and
/// requires the sequential report.
pub fn split_agrees(data: &[u8]) {
    let [a, b, c, d, rest @ ..] = data else { return };
    let opening = usize::from(u16::from_le_bytes([*a, *b]));
    let seam = usize::from(u16::from_le_bytes([*c, *d])) * 4;
    let mut sequential = Analyzer::new();
    sequential.analyze(rest, None);
    let mut split = Analyzer::new();
    assert_eq!(split.analyze_split(rest, opening, seam), Stop::End);
    let (want, got) = (sequential.report("fuzz"), split.report("fuzz"));
    check_report(rest.len(), Stop::End, &got);
    let json = |r| serde_json::to_string(&r).expect("report serialises");
    assert_eq!(json(got), json(want), "split at {seam} (opening {opening}) differs from sequential");
    let raw = |a: &Analyzer| a.table().iter().map(|e| (e.pid, e.packets, e.cc_errors)).collect::<Vec<_>>();
    let (mut x, mut y) = (raw(&sequential), raw(&split));
    x.sort_by_key(|e| e.0.value());
    y.sort_by_key(|e| e.0.value());
    assert_eq!(x, y, "per-PID counters differ");
    assert_eq!(split.psi().counters(), sequential.psi().counters(), "PSI counters differ");
}

/// Moves a packet whose PID is not in `pids` onto one of them (chosen by
/// the low 3 bits of byte 1), so random packets reach the table and
/// stream paths of a target.
pub fn steer_pid(p: &mut [u8; 188], pids: &[u16; 8]) {
    let pid = u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]);
    if !pids.contains(&pid) {
        let pid = pids[usize::from(p[1] & 7)];
        p[1] = (p[1] & 0xE0) | (pid >> 8) as u8;
        p[2] = pid as u8;
    }
}

/// The PIDs the table-driven targets (`filter`, `splice`) steer packets
/// onto: PAT, two PMT PIDs, three streams, the SDT and null.
pub const STEERED_PIDS: [u16; 8] = [0x0000, 0x1000, 0x1001, 0x0100, 0x0101, 0x0102, 0x0011, 0x1FFF];

/// Reads the fuzz input a byte at a time, zeros past the end.
pub struct Reader<'a>(pub &'a [u8]);

impl Reader<'_> {
    /// The next byte (0 once the input is used up).
    pub fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }

    /// One of [`STEERED_PIDS`].
    pub fn pid(&mut self) -> u16 {
        STEERED_PIDS[usize::from(self.byte() & 7)]
    }

    /// A packet from the next 188 bytes (0xFF-padded), its sync byte forced
    /// when `sync`, its PID steered onto [`STEERED_PIDS`].
    pub fn raw_packet(&mut self, sync: bool) -> [u8; 188] {
        let mut p = [0xFFu8; 188];
        let take = self.0.len().min(188);
        p[..take].copy_from_slice(&self.0[..take]);
        self.0 = &self.0[take..];
        if sync {
            p[0] = 0x47;
        }
        steer_pid(&mut p, &STEERED_PIDS);
        p
    }
}

/// Pacing limits scaled down so short fuzz inputs reach every rule (no
/// PCR, PSI wait, gaps, large PCR steps, stalls).
pub fn small_pace_limits() -> uringest::ts::pace::PaceLimits {
    uringest::ts::pace::PaceLimits {
        no_pcr_bytes: 64 * 188,
        psi_wait_bytes: 8 * 188,
        gap_bytes: 16 * 188,
        max_pcr_step: std::time::Duration::from_millis(100),
        stall: std::time::Duration::from_millis(50),
    }
}
