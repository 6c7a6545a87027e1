//! `cargo bench --bench scanner`: the scanner against its baselines, in one
//! run, on real TS (the bundled H.264 + AAC fixture, repeated):
//! - 1 MiB that stays in cache, and 256 MiB that does not;
//! - our SIMD kernels with per-PID counters, CC and TEI checks; the scalar
//!   kernel; mpeg2ts-reader doing the same counting, both in a hand-written
//!   loop over its `Packet` type and as a filter behind its own packet loop
//!   (`Demultiplex::push`); a read-only pass over the bytes; memcpy.
//!
//! Each figure is the best of several timed repetitions (the least disturbed
//! by the rest of the machine). Set `SCANNER_BENCH_QUICK=1` for a short run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use mpeg2ts_reader::demultiplex::{self, Demultiplex, FilterRequest, PacketFilter};
use mpeg2ts_reader::packet::Packet;
use mpeg2ts_reader::{demux_context, packet_filter_switch};
use uringest::clock::{Clock, SystemClock};
use uringest::ts::analyze::Analyzer;
use uringest::ts::scan::{Kernel, Run, Scanner};

fn real_ts(fixture: &str, bytes: usize) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{fixture}", env!("CARGO_MANIFEST_DIR"));
    let clip = std::fs::read(path).expect("fixture");
    let mut out = Vec::with_capacity(bytes);
    while out.len() + clip.len() <= bytes {
        out.extend_from_slice(&clip);
    }
    // Top up with whole packets of the clip.
    let rest = (bytes - out.len()) / 188 * 188;
    out.extend_from_slice(&clip[..rest]);
    out
}

/// Best wall time of `reps` runs of `f`, each run `inner` calls.
fn best(reps: usize, inner: usize, mut f: impl FnMut()) -> Duration {
    let clock = SystemClock;
    (0..reps)
        .map(|_| {
            let start = clock.now();
            for _ in 0..inner {
                f();
            }
            (clock.now() - start) / inner as u32
        })
        .min()
        .unwrap()
}

fn scan(kernel: Kernel, buf: &[u8]) -> u64 {
    let mut s = Scanner::with_kernel(kernel).unwrap();
    let out = s.scan(buf, Run::fitting(buf.len(), 0, 188, usize::MAX), &mut ());
    assert!(!out.sync_lost);
    s.table().iter().map(|e| e.packets + e.cc_errors).sum()
}

/// The same work as our scanner (per-PID packets, TEI, continuity with the
/// discontinuity_indicator, PCR extraction) on mpeg2ts-reader's `Packet`.
fn mpeg2ts_reader_loop(buf: &[u8], packets: &mut [u64], last_cc: &mut [u8]) -> u64 {
    packets.fill(0);
    last_cc.fill(0xFF);
    let mut errors = 0u64;
    let mut pcr_sum = 0u64;
    for chunk in buf.chunks_exact(188) {
        let Some(p) = Packet::try_new(chunk) else {
            break;
        };
        let pid = usize::from(u16::from(p.pid()));
        packets[pid] += 1;
        if p.transport_error_indicator() {
            errors += 1;
            continue;
        }
        let af = p.adaptation_field();
        let discontinuity = af.as_ref().is_some_and(|af| af.discontinuity_indicator());
        if let Some(pcr) = af.as_ref().and_then(|af| af.pcr().ok()) {
            pcr_sum = pcr_sum.wrapping_add(pcr.base());
        }
        let cc = p.continuity_counter().count();
        if pid != 0x1FFF {
            let last = last_cc[pid];
            let expected = if p.adaptation_control().has_payload() { last.wrapping_add(1) & 0x0F } else { last };
            if last != 0xFF && !discontinuity && cc != expected && cc != last {
                errors += 1;
            }
            last_cc[pid] = cc;
        }
    }
    packets.iter().sum::<u64>() + errors + (pcr_sum & 1)
}

/// Per-PID counting (packets, continuity with the discontinuity_indicator,
/// PCR) as a filter behind mpeg2ts-reader's own packet loop,
/// `Demultiplex::push`, with its PAT and PMT filters running as they would
/// for any user of the crate.
#[derive(Default)]
pub struct CountFilter {
    packets: u64,
    errors: u64,
    last_cc: Option<u8>,
    pcr_sum: u64,
}

impl PacketFilter for CountFilter {
    type Ctx = CountContext;
    fn consume(&mut self, _: &mut CountContext, p: &Packet<'_>) {
        self.packets += 1;
        let af = p.adaptation_field();
        let discontinuity = af.as_ref().is_some_and(|af| af.discontinuity_indicator());
        if let Some(pcr) = af.as_ref().and_then(|af| af.pcr().ok()) {
            self.pcr_sum = self.pcr_sum.wrapping_add(pcr.base());
        }
        let cc = p.continuity_counter().count();
        if u16::from(p.pid()) != 0x1FFF {
            if let Some(last) = self.last_cc {
                let expected = if p.adaptation_control().has_payload() { (last + 1) & 0x0F } else { last };
                if !discontinuity && cc != expected && cc != last {
                    self.errors += 1;
                }
            }
            self.last_cc = Some(cc);
        }
    }
}

packet_filter_switch! {
    CountSwitch<CountContext> {
        Pat: demultiplex::PatPacketFilter<CountContext>,
        Pmt: demultiplex::PmtPacketFilter<CountContext>,
        Count: CountFilter,
    }
}
demux_context!(CountContext, CountSwitch);

impl CountContext {
    fn do_construct(&mut self, req: FilterRequest<'_, '_>) -> CountSwitch {
        match req {
            FilterRequest::ByPid(mpeg2ts_reader::psi::pat::PAT_PID) => CountSwitch::Pat(Default::default()),
            FilterRequest::Pmt { pid, program_number } => {
                CountSwitch::Pmt(demultiplex::PmtPacketFilter::new(pid, program_number))
            }
            _ => CountSwitch::Count(CountFilter::default()),
        }
    }
}

fn mpeg2ts_reader_demultiplex(buf: &[u8]) -> u64 {
    let mut ctx = CountContext::new();
    let mut demux = Demultiplex::new(&mut ctx);
    demux.push(&mut ctx, buf);
    // Nothing reads the filters' counts back: Demultiplex keeps them
    // private. black_box on the demultiplexer keeps the work alive.
    black_box(&demux);
    buf.len() as u64
}

fn read_only(buf: &[u8]) -> u64 {
    // Wide independent sums so the loop is bound by loads, not adds.
    let mut acc = [0u64; 8];
    for chunk in buf.chunks_exact(64) {
        for (a, word) in acc.iter_mut().zip(chunk.chunks_exact(8)) {
            *a = a.wrapping_add(u64::from_ne_bytes(word.try_into().unwrap()));
        }
    }
    acc.iter().fold(0, |x, y| x ^ y)
}

struct Row {
    name: &'static str,
    secs: f64,
}

fn measure(label: &str, buf: &[u8], reps: usize, inner: usize) {
    let mut dst = vec![0u8; buf.len()];
    let mut packets = vec![0u64; 8192];
    let mut last_cc = vec![0u8; 8192];
    let expected = scan(Kernel::Scalar, buf);
    let mut rows = Vec::new();
    for kernel in [Kernel::Avx2, Kernel::Sse2, Kernel::Scalar] {
        if !kernel.is_supported() {
            continue;
        }
        assert_eq!(scan(kernel, buf), expected, "kernels disagree");
        let name = match kernel {
            Kernel::Avx2 => "uringest scanner avx2",
            Kernel::Sse2 => "uringest scanner sse2",
            Kernel::Scalar => "uringest scanner scalar",
        };
        let t = best(reps, inner, || {
            black_box(scan(kernel, black_box(buf)));
        });
        rows.push(Row { name, secs: t.as_secs_f64() });
    }
    let t = best(reps, inner, || {
        let mut a = Analyzer::new();
        a.analyze(black_box(buf), None);
        black_box(a.table().iter().count());
    });
    rows.push(Row { name: "uringest analyzer (framing+scan+PSI)", secs: t.as_secs_f64() });
    let t = best(reps, inner, || {
        black_box(mpeg2ts_reader_loop(black_box(buf), &mut packets, &mut last_cc));
    });
    rows.push(Row { name: "mpeg2ts-reader Packet loop (hand-written)", secs: t.as_secs_f64() });
    let t = best(reps, inner, || {
        black_box(mpeg2ts_reader_demultiplex(black_box(buf)));
    });
    rows.push(Row { name: "mpeg2ts-reader Demultiplex::push", secs: t.as_secs_f64() });
    let t = best(reps, inner, || {
        black_box(read_only(black_box(buf)));
    });
    rows.push(Row { name: "read-only pass (baseline)", secs: t.as_secs_f64() });
    let t = best(reps, inner, || {
        dst.copy_from_slice(black_box(buf));
        black_box(&dst);
    });
    rows.push(Row { name: "memcpy (baseline)", secs: t.as_secs_f64() });

    let gbps = |r: &Row| buf.len() as f64 / r.secs / 1e9;
    println!("\n{label}: {} bytes, {} packets", buf.len(), buf.len() / 188);
    println!("  {:<44} {:>10} {:>12}", "variant", "GB/s", "Mpackets/s");
    for r in &rows {
        println!("  {:<44} {:>10.2} {:>12.1}", r.name, gbps(r), buf.len() as f64 / 188.0 / r.secs / 1e6);
    }
    let find = |n: &str| rows.iter().find(|r| r.name == n).map(gbps);
    let simd = find("uringest scanner avx2").or_else(|| find("uringest scanner sse2")).unwrap_or(0.0);
    let ratio = |base: &str| find(base).map_or(f64::NAN, |b| simd / b);
    println!("  ratios of the best SIMD kernel:");
    println!("    vs scalar scanner        {:>6.2}x", ratio("uringest scanner scalar"));
    println!("    vs mpeg2ts-reader Packet {:>6.2}x", ratio("mpeg2ts-reader Packet loop (hand-written)"));
    println!("    vs mpeg2ts-reader Demux  {:>6.2}x", ratio("mpeg2ts-reader Demultiplex::push"));
    println!("    vs read-only pass        {:>6.2}x", ratio("read-only pass (baseline)"));
    println!("    vs memcpy                {:>6.2}x", ratio("memcpy (baseline)"));
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` does not and
    // only needs to know this builds and runs.
    let benching = std::env::args().any(|a| a == "--bench");
    let quick = !benching || std::env::var_os("SCANNER_BENCH_QUICK").is_some();
    println!("scanner bench: detected kernel {}", Kernel::detect().name());
    let (reps, inner) = if quick { (3, 5) } else { (15, 200) };
    let small = real_ts("cbr_5mbit.ts", 1 << 20);
    measure("1 MiB in cache, 5 Mbit/s CBR clip", &small, reps, inner);
    let low = real_ts("h264_aac.ts", 1 << 20);
    measure("1 MiB in cache, 260 kbit/s clip (a third of packets carry adaptation fields)", &low, reps, inner);
    let big = real_ts("cbr_5mbit.ts", if quick { 8 << 20 } else { 256 << 20 });
    let label = if quick { "8 MiB (quick), 5 Mbit/s CBR clip" } else { "256 MiB out of cache, 5 Mbit/s CBR clip" };
    measure(label, &big, if quick { 2 } else { 7 }, 1);
}
