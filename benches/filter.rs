//! `cargo bench --bench filter`: `TsFilter` over the three-program fixture
//! repeated to 64 MiB in memory, against two baselines in the same run:
//! - `sync + bitmap loop`: per packet, the sync check and a PID lookup in
//!   an 8192-bit set, counting kept packets: the least work any PID filter
//!   does, with no output;
//! - `copy kept packets`: the same loop copying each kept packet into an
//!   output buffer, as a filter that deep-copies (the reference design) would.
//!
//! Rows for program=2 (about a third of the packets kept), pids= (the same
//! PIDs, no tables parsed) and the passthrough spec, at datagram-sized
//! chunks (7 packets) and 256 KiB chunks. Each figure is the best of
//! several runs. Without `--bench` (as `cargo test --all-targets` runs it)
//! the data is 4 MiB and each figure one run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use bytes::Bytes;
use uringest::clock::{Clock, SystemClock};
use uringest::ts::filter::{FilterSpec, TsFilter};
use uringest::ts::packet::Pid;

const PROGRAM_2: [u16; 5] = [0, 0x1001, 0x102, 0x103, 0x11];

fn data(bytes: usize) -> Bytes {
    let clip = std::fs::read(format!("{}/tests/fixtures/mpts_3prog.ts", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut all = Vec::with_capacity(bytes + clip.len());
    while all.len() < bytes {
        all.extend_from_slice(&clip);
    }
    Bytes::from(all)
}

fn chunks(all: &Bytes, packets: usize) -> Vec<Bytes> {
    (0..all.len()).step_by(packets * 188).map(|at| all.slice(at..(at + packets * 188).min(all.len()))).collect()
}

fn best(reps: usize, mut run: impl FnMut() -> u64) -> (Duration, u64) {
    let clock = SystemClock;
    let mut best = Duration::MAX;
    let mut kept = 0;
    for _ in 0..reps {
        let start = clock.now();
        kept = std::hint::black_box(run());
        best = best.min(clock.now().saturating_duration_since(start));
    }
    (best, kept)
}

fn bitmap(pids: &[u16]) -> [u64; 128] {
    let mut set = [0u64; 128];
    for &p in pids {
        set[usize::from(p) / 64] |= 1 << (p % 64);
    }
    set
}

fn pid_of(p: &[u8]) -> usize {
    usize::from(p[1] & 0x1F) << 8 | usize::from(p[2])
}

fn bitmap_loop(chunks: &[Bytes], set: &[u64; 128]) -> u64 {
    let mut kept = 0;
    for chunk in chunks {
        for p in chunk.chunks_exact(188) {
            let pid = pid_of(p);
            kept += u64::from(p[0] == 0x47 && set[pid / 64] & (1 << (pid % 64)) != 0);
        }
    }
    kept
}

fn copy_loop(chunks: &[Bytes], set: &[u64; 128], out: &mut Vec<u8>) -> u64 {
    let mut kept = 0;
    for chunk in chunks {
        out.clear();
        for p in chunk.chunks_exact(188) {
            let pid = pid_of(p);
            if p[0] == 0x47 && set[pid / 64] & (1 << (pid % 64)) != 0 {
                out.extend_from_slice(p);
                kept += 1;
            }
        }
        std::hint::black_box(&out);
    }
    kept
}

fn filter_loop(chunks: &[Bytes], spec: &FilterSpec) -> u64 {
    let mut filter = TsFilter::new(spec.clone());
    let mut out = Vec::with_capacity(64);
    for chunk in chunks {
        out.clear();
        filter.push(chunk, &mut out);
        std::hint::black_box(&out);
    }
    let c = filter.counters();
    c.packets_passed + c.pats_rewritten
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (bytes, reps) = if full { (64 << 20, 7) } else { (4 << 20, 1) };
    let all = data(bytes);
    let set = bitmap(&PROGRAM_2);
    let program = FilterSpec { program: Some(2), ..FilterSpec::default() };
    let pids = FilterSpec { pids: Some(PROGRAM_2.map(Pid::new).to_vec()), ..FilterSpec::default() };
    println!("filter: {:.1} MiB of mpts_3prog.ts in memory, best of {reps}", all.len() as f64 / 1048576.0);
    for packets in [7, 1392] {
        let chunks = chunks(&all, packets);
        let mut out = Vec::with_capacity(packets * 188);
        println!("\nchunks of {packets} packets ({} bytes)", packets * 188);
        println!("{:<28} {:>8} {:>8} {:>12}", "", "Gbit/s", "ratio", "kept");
        type Row<'a> = (&'static str, Box<dyn FnMut() -> u64 + 'a>);
        let rows: Vec<Row> = vec![
            ("sync + bitmap loop", Box::new(|| bitmap_loop(&chunks, &set))),
            ("copy kept packets", Box::new(|| copy_loop(&chunks, &set, &mut out))),
            ("TsFilter program=2", Box::new(|| filter_loop(&chunks, &program))),
            ("TsFilter pids= (same PIDs)", Box::new(|| filter_loop(&chunks, &pids))),
            ("TsFilter passthrough spec", Box::new(|| filter_loop(&chunks, &FilterSpec::default()))),
        ];
        let mut base = None;
        for (name, mut run) in rows {
            let (t, kept) = best(reps, &mut run);
            let gbps = all.len() as f64 * 8.0 / t.as_secs_f64() / 1e9;
            let ratio = gbps / *base.get_or_insert(gbps);
            println!("{name:<28} {gbps:>8.1} {ratio:>7.2}x {kept:>12}");
        }
    }
}
