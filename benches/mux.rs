//! `cargo bench --bench mux`: `Muxer` throughput on a realistic mix, against
//! a memcpy of the same payload bytes in the same run.
//!
//! The mix: 4 Mbit/s H.264 at 25 fps (a 150 KB IDR every 2 s, P frames of
//! 13-27 KB averaging the rest of the budget) plus 128 kbit/s AAC at 48 kHz
//! (341-342 byte frames), interleaved by DTS: 60 s of media (about 31 MB of
//! TS) with `--bench`, 5 s otherwise (as `cargo test --all-targets` runs it).
//! Packets go in batches of 64, as a hub publisher would push them, each
//! batch's output frozen into one `Bytes` chunk. Rows:
//! - `mux`: TS MB/s out and AV packets/s;
//! - `memcpy payloads`: the payloads copied into one buffer per batch, the
//!   least work any muxer does.
//!
//! Each figure is the best of several runs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use uringest::clock::{Clock, SystemClock};
use uringest::ts::av::{AvPacket, Codec};
use uringest::ts::mux::{MuxConfig, Muxer};

const BATCH: usize = 64;

/// A small deterministic generator, so runs compare.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn payload(rng: &mut Lcg, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    v.extend((0..len).map(|_| rng.next() as u8));
    Bytes::from(v)
}

fn mix(secs: i64) -> Vec<AvPacket> {
    let mut rng = Lcg(7);
    let mut pkts = Vec::new();
    for i in 0..secs * 25 {
        let key = i % 50 == 0;
        // 4 Mbit/s = 1 MB per 2 s GOP: 150 KB IDR, 49 P frames of ~17.3 KB.
        let len = if key { 150_000 } else { 13_000 + (rng.next() % 9_000) as usize };
        let dts = 90_000 + i * 3600;
        let p = payload(&mut rng, len);
        pkts.push(AvPacket {
            track: 0x100,
            codec: Codec::H264,
            payload: p,
            pts: dts + 3600,
            dts,
            keyframe: key,
            discontinuity: false,
        });
    }
    for i in 0..secs * 48_000 / 1024 {
        let len = 341 + (i % 3 == 0) as usize;
        let dts = 90_000 + i * 1920;
        let p = payload(&mut rng, len);
        pkts.push(AvPacket {
            track: 0x101,
            codec: Codec::Aac,
            payload: p,
            pts: dts,
            dts,
            keyframe: true,
            discontinuity: false,
        });
    }
    pkts.sort_by_key(|p| p.dts);
    pkts
}

fn best(reps: usize, mut run: impl FnMut() -> u64) -> (Duration, u64) {
    let clock = SystemClock;
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..reps {
        let start = clock.now();
        bytes = std::hint::black_box(run());
        best = best.min(clock.now().saturating_duration_since(start));
    }
    (best, bytes)
}

fn mux_all(pkts: &[AvPacket]) -> u64 {
    let mut mux = Muxer::new(MuxConfig::default()).unwrap();
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut total = 0;
    for batch in pkts.chunks(BATCH) {
        mux.push_all(batch, &mut out);
        let chunk: Bytes = out.split().freeze();
        total += chunk.len() as u64;
        drop(std::hint::black_box(chunk));
    }
    total
}

fn memcpy_all(pkts: &[AvPacket]) -> u64 {
    let mut out = BytesMut::with_capacity(1 << 20);
    let mut total = 0;
    for batch in pkts.chunks(BATCH) {
        for p in batch {
            out.extend_from_slice(&p.payload);
        }
        let chunk: Bytes = out.split().freeze();
        total += chunk.len() as u64;
        drop(std::hint::black_box(chunk));
    }
    total
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (secs, reps) = if full { (60, 7) } else { (5, 1) };
    let pkts = mix(secs);
    let es: u64 = pkts.iter().map(|p| p.payload.len() as u64).sum();
    let (t_mux, ts) = best(reps, || mux_all(&pkts));
    let (t_copy, copied) = best(reps, || memcpy_all(&pkts));
    assert_eq!(copied, es);
    let mbs = |bytes: u64, t: Duration| bytes as f64 / t.as_secs_f64() / 1e6;
    println!(
        "mux bench: {} s of media, {} AV packets, {:.1} MB ES -> {:.1} MB TS ({:.2}% overhead), best of {reps}",
        secs,
        pkts.len(),
        es as f64 / 1e6,
        ts as f64 / 1e6,
        (ts as f64 / es as f64 - 1.0) * 100.0
    );
    println!("{:<18} {:>10} {:>14} {:>12}", "row", "MB/s out", "AV packets/s", "time/memcpy");
    println!(
        "{:<18} {:>10.0} {:>14.0} {:>11.2}x",
        "mux",
        mbs(ts, t_mux),
        pkts.len() as f64 / t_mux.as_secs_f64(),
        t_mux.as_secs_f64() / t_copy.as_secs_f64()
    );
    println!(
        "{:<18} {:>10.0} {:>14.0} {:>11.2}x",
        "memcpy payloads",
        mbs(copied, t_copy),
        pkts.len() as f64 / t_copy.as_secs_f64(),
        1.0
    );
}
