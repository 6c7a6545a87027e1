//! The stream monitor on arbitrary bytes, cut into arbitrary chunks, with
//! arbitrary time steps (backwards too).
//!
//! Layout: `mode n ops[n * 3] stream...`
//! - `mode & 1`: force 0x47 at every 188th byte of the stream (from 0), so
//!   the fuzzer reaches packet parsing, PSI and the table checks; `mode & 2`
//!   also rewrites continuity counters to follow on per PID.
//! - each op `(k, a, b)`: `k < 0x40`: tick `k * 50` ms later; `k < 0x50`:
//!   tick `(k - 0x40) * 100` ms earlier (time must not go back); otherwise
//!   push the next `u16(a, b) % 4096` bytes of the stream, then move
//!   `(k & 0x0F) * 3` ms on. What the ops leave of the stream is pushed last.
//!
//! Checks, after every step: no counter goes down; per-PID packets add up
//! to `packets_total`; `packets_total * 188 <= bytes_total`; bitrates are
//! finite and not negative. At the end: bytes_total is the stream length;
//! every count that does not depend on time (packets, sync, continuity,
//! TEI, PCR, per-PID) equals that of one monitor fed the whole stream in
//! one push; table errors are at least that monitor's; aligned streams of
//! five packets or more are counted whole.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use uringest::ts::monitor::{MonitorCounters, PidCounters, StreamMonitor};

fn as_array(c: &MonitorCounters) -> [u64; 10] {
    [
        c.packets_total,
        c.bytes_total,
        c.sync_losses_total,
        c.sync_byte_errors_total,
        c.pat_errors_total,
        c.cc_errors_total,
        c.pmt_errors_total,
        c.pid_errors_total,
        c.tei_packets_total,
        c.pcr_interval_violations_total,
    ]
}

fn check_step(m: &StreamMonitor, before: &MonitorCounters) -> MonitorCounters {
    let c = m.counters();
    for (now, was) in as_array(&c).iter().zip(as_array(before)) {
        assert!(*now >= was, "a counter went down: {before:?} -> {c:?}");
    }
    let mut pids = Vec::new();
    m.pids(&mut pids);
    assert_eq!(pids.iter().map(|p| p.packets_total).sum::<u64>(), c.packets_total, "per-PID packets");
    assert!(pids.windows(2).all(|w| w[0].pid < w[1].pid), "PID order");
    assert!(c.packets_total.saturating_mul(188) <= c.bytes_total, "{c:?}");
    let rate = m.bitrate_bps();
    assert!(rate.is_finite() && rate >= 0.0, "bitrate {rate}");
    assert!(pids.iter().all(|p| p.bitrate_bps.is_finite() && p.bitrate_bps >= 0.0));
    c
}

fn pid_view(m: &StreamMonitor) -> Vec<(u16, u64, u64)> {
    let mut pids: Vec<PidCounters> = Vec::new();
    m.pids(&mut pids);
    pids.iter().map(|p| (p.pid, p.packets_total, p.cc_errors_total)).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let Some((&n, rest)) = rest.split_first() else { return };
    let ops_len = (usize::from(n) * 3).min(rest.len());
    let (ops, stream) = rest.split_at(ops_len);
    let mut stream = stream.to_vec();
    if mode & 1 != 0 {
        let mut cc = [0xFFu8; 8192];
        for p in stream.chunks_mut(188) {
            p[0] = 0x47;
            if mode & 2 != 0 && p.len() >= 4 {
                let pid = usize::from(p[1] & 0x1F) << 8 | usize::from(p[2]);
                if cc[pid] != 0xFF {
                    let next = if p[3] & 0x10 != 0 { (cc[pid] + 1) & 0x0F } else { cc[pid] };
                    p[3] = (p[3] & 0xF0) | next;
                }
                cc[pid] = p[3] & 0x0F;
            }
        }
    }

    let mut m = StreamMonitor::new();
    let mut counters = MonitorCounters::default();
    let mut now = Duration::ZERO;
    let mut at = 0;
    for op in ops.chunks_exact(3) {
        let (k, len) = (op[0], usize::from(u16::from_le_bytes([op[1], op[2]])) % 4096);
        if k < 0x40 {
            now += Duration::from_millis(u64::from(k) * 50);
            m.tick(now);
        } else if k < 0x50 {
            m.tick(now.saturating_sub(Duration::from_millis(u64::from(k - 0x40) * 100)));
        } else {
            let end = (at + len).min(stream.len());
            m.push(&stream[at..end], now);
            at = end;
            now += Duration::from_millis(u64::from(k & 0x0F) * 3);
        }
        counters = check_step(&m, &counters);
    }
    m.push(&stream[at..], now);
    let split = check_step(&m, &counters);

    let mut whole = StreamMonitor::new();
    whole.push(&stream, Duration::ZERO);
    let one = check_step(&whole, &MonitorCounters::default());
    assert_eq!(split.bytes_total, stream.len() as u64);
    let timeless = |c: &MonitorCounters| {
        [
            c.packets_total,
            c.bytes_total,
            c.sync_losses_total,
            c.sync_byte_errors_total,
            c.cc_errors_total,
            c.tei_packets_total,
            c.pcr_interval_violations_total,
        ]
    };
    assert_eq!(timeless(&split), timeless(&one), "cuts changed the counts");
    assert_eq!(pid_view(&m), pid_view(&whole), "cuts changed the per-PID counts");
    assert!(split.pat_errors_total >= one.pat_errors_total && split.pmt_errors_total >= one.pmt_errors_total);
    assert_eq!(one.pid_errors_total, 0, "no time passed");
    if mode & 1 != 0 && stream.len() > 4 * 188 {
        assert_eq!(split.packets_total, (stream.len() / 188) as u64, "aligned stream not counted whole");
        assert_eq!((split.sync_byte_errors_total, split.sync_losses_total), (0, 0));
    }
});
