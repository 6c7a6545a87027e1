//! `cargo bench --bench monitor`: the per-stream monitor (`StreamMonitor::push`:
//! alignment, scan, PSI, TR 101 290 checks, bitrates) against the bare
//! scanner (`Scanner::scan` with no payload sink) on the same chunks, in
//! one run, on real TS (the fixtures, looped to a few MB), in chunks of 7
//! packets (one UDP datagram, what the hub carries) and of 348 packets
//! (64 KiB, file reads). Prints ns per packet and the ratio (target <= 2x).
//!
//! Also prints the monitor's memory: heap and inline bytes when idle, and
//! after a stream of 20 PIDs, measured by a counting allocator.
//!
//! Each figure is the best of several timed repetitions. Set
//! `MONITOR_BENCH_QUICK=1` for a short run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
// The counting allocator is the only unsafe code: it forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use uringest::clock::{Clock, SystemClock};
use uringest::ts::monitor::StreamMonitor;
use uringest::ts::packet::Pid;
use uringest::ts::psi::{build_section, packetize, pat_body, pmt_body};
use uringest::ts::scan::{Run, Scanner};

/// Counts live heap bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn looped(fixture: &str, bytes: usize) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let clip = std::fs::read(path).expect("fixture");
    let mut out = Vec::with_capacity(bytes);
    while out.len() + clip.len() <= bytes {
        out.extend_from_slice(&clip);
    }
    out
}

/// Best wall time of `reps` runs of `f`.
fn best(reps: usize, mut f: impl FnMut()) -> Duration {
    let clock = SystemClock;
    (0..reps)
        .map(|_| {
            let start = clock.now();
            f();
            clock.now() - start
        })
        .min()
        .unwrap()
}

fn scan_chunks(buf: &[u8], per: usize) -> u64 {
    let mut s = Scanner::new();
    for chunk in buf.chunks(per * 188) {
        let out = s.scan(chunk, Run::fitting(chunk.len(), 0, 188, usize::MAX), &mut ());
        debug_assert!(!out.sync_lost);
    }
    s.packets()
}

fn monitor_chunks(buf: &[u8], per: usize, bitrate: f64) -> u64 {
    let mut m = StreamMonitor::new();
    let step = Duration::from_secs_f64((per * 188 * 8) as f64 / bitrate);
    let mut now = Duration::ZERO;
    for chunk in buf.chunks(per * 188) {
        m.push(chunk, now);
        now += step;
    }
    m.tick(now);
    m.counters().packets_total
}

fn measure(name: &str, buf: &[u8], bitrate: f64, reps: usize) {
    let packets = (buf.len() / 188) as f64;
    for per in [7, 348] {
        assert_eq!(scan_chunks(buf, per), monitor_chunks(buf, per, bitrate), "same packets");
        let scan = best(reps, || {
            black_box(scan_chunks(black_box(buf), per));
        });
        let monitor = best(reps, || {
            black_box(monitor_chunks(black_box(buf), per, bitrate));
        });
        let (s, m) = (scan.as_secs_f64() * 1e9 / packets, monitor.as_secs_f64() * 1e9 / packets);
        println!("{name:<28} {per:>4} pkt/chunk  scanner {s:6.2} ns/pkt  monitor {m:6.2} ns/pkt  ratio {:.2}x", m / s);
    }
}

/// A stream of 20 PIDs: PAT, PMT, 17 elementary PIDs and nulls, 2 s of
/// packets at 1 ms each.
fn twenty_pids() -> Vec<u8> {
    let mut cc = [0u8; 8192];
    let es: Vec<u16> = (0x100..0x111).collect();
    let pat = build_section(0, 1, 0, &pat_body(&[(1, 0x1000)]));
    let streams: Vec<(u8, u16, &[u8])> = es.iter().map(|&pid| (0x1B, pid, &[][..])).collect();
    let pmt = build_section(2, 1, 0, &pmt_body(0x100, &streams));
    let mut out = Vec::new();
    for i in 0..2000usize {
        if i % 50 == 0 {
            for p in packetize(&pat, Pid::PAT, &mut cc[0]).into_iter().chain(packetize(
                &pmt,
                Pid::new(0x1000),
                &mut cc[0x1000],
            )) {
                out.extend_from_slice(&p);
            }
        }
        let pid = if i % 18 == 17 { 0x1FFF } else { es[i % 18] };
        let mut p = [0u8; 188];
        p[..4].copy_from_slice(&[0x47, (pid >> 8) as u8, pid as u8, 0x10 | cc[usize::from(pid)]]);
        cc[usize::from(pid)] = (cc[usize::from(pid)] + 1) & 0x0F;
        out.extend_from_slice(&p);
    }
    out
}

fn memory() {
    let ts = twenty_pids();
    let before = LIVE.load(Ordering::Relaxed);
    let mut m = StreamMonitor::new();
    m.tick(Duration::ZERO);
    let idle = LIVE.load(Ordering::Relaxed) - before;
    println!("idle monitor: {} B inline + {idle} B heap", std::mem::size_of::<StreamMonitor>());
    for (i, chunk) in ts.chunks(7 * 188).enumerate() {
        m.push(chunk, Duration::from_millis(i as u64 * 7));
    }
    m.tick(Duration::from_secs(10));
    let mut pids = Vec::new();
    m.pids(&mut pids);
    let live = LIVE.load(Ordering::Relaxed) - before - pids.capacity() * std::mem::size_of_val(&pids[0]);
    println!(
        "monitor after {} PIDs: {} B inline + {live} B heap ({} packets, {} PID errors)",
        pids.len(),
        std::mem::size_of::<StreamMonitor>(),
        m.counters().packets_total,
        m.counters().pid_errors_total
    );
    black_box(&m);
}

fn main() {
    let quick = std::env::var_os("MONITOR_BENCH_QUICK").is_some();
    let reps = if quick { 3 } else { 15 };
    memory();
    let cbr = looped("cbr_5mbit.ts", 4 << 20);
    let clip = looped("h264_aac.ts", 4 << 20);
    let mpts = looped("mpts_3prog.ts", 4 << 20);
    measure("5 Mbit/s CBR clip, 4 MiB", &cbr, 5e6, reps);
    measure("260 kbit/s clip, 4 MiB", &clip, 260e3, reps);
    measure("3-program MPTS, 4 MiB", &mpts, 860e3, reps);
}
