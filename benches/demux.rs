//! `cargo bench --bench demux`: TS demux to access units against ffmpeg, in
//! one run, on one 512 MiB file:
//! - `ffmpeg -v error -i f.ts -c copy -f null -`: the whole process, wall
//!   time and CPU time (user + system, from `wait4`'s rusage);
//! - uringest's `Demuxer` over the same file, mmap'd with its pages
//!   resident, every access unit drained (batches of 256) and dropped;
//! - mpeg2ts-reader alone: its `Demultiplex` with PAT/PMT tracking and its
//!   `PesPacketFilter` calling an empty consumer, so PES headers are parsed
//!   but no payload is gathered (our demux runs its own packet loop, which
//!   prefetches, and uses the reader for the tables only);
//! - the copy alone: each packet's 184 payload bytes into a reused block,
//!   without prefetch (any demuxer that gathers payloads makes this copy).
//!
//! The file is `tests/fixtures/cbr_5mbit.ts` looped by ffmpeg
//! (`-stream_loop`, so timestamps run on) and cut to 512 MiB; it is made
//! once under the target directory and reused. Without ffmpeg the clip is
//! looped byte for byte and the ffmpeg rows are skipped.
//!
//! - demux then mux back to TS (what a mixer does), against
//!   `ffmpeg -i f.ts -c copy -f mpegts -y /dev/null`, the whole process.
//!
//! Rows are `Case`s and the ratios `Comparison`s (tables in `main`).
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) the file is
//! 16 MiB and each figure one run. `DEMUX_BENCH_MIB=N` sets the size;
//! `DEMUX_BENCH_CASES=text` runs only the rows whose name contains `text`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unsafe_code)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;

use mpeg2ts_reader::demultiplex::{self, Demultiplex, FilterRequest};
use mpeg2ts_reader::pes::{ElementaryStreamConsumer, PesHeader, PesPacketFilter};
use mpeg2ts_reader::{demux_context, packet_filter_switch};
use uringest::clock::{Clock, SystemClock};
use uringest::input::file::MappedFile;
use uringest::ts::av::AvPacket;
use uringest::ts::demux::{DRAIN_BATCH, Demuxer};
use uringest::ts::mux::{MuxConfig, Muxer};

/// Bytes handed to the demuxer per push: what a file input's chunk holds.
const CHUNK: usize = 188 * 348;

/// Times of one run: wall clock and CPU (user + system).
#[derive(Clone, Copy, Debug)]
struct Times {
    wall: Duration,
    cpu: Duration,
}

/// One row of the table.
enum Case {
    /// A whole ffmpeg process over the file; `{}` in the args is the path.
    Ffmpeg { name: &'static str, args: &'static [&'static str] },
    /// In-process work over the mapped file; returns a checksum.
    InProcess { name: &'static str, run: fn(&[u8]) -> u64 },
}

impl Case {
    fn name(&self) -> &'static str {
        match self {
            Case::Ffmpeg { name, .. } | Case::InProcess { name, .. } => name,
        }
    }
}

/// "`ours` should beat `baseline` by `target`x (wall time)".
struct Comparison {
    ours: &'static str,
    baseline: &'static str,
    target: f64,
}

fn cpu_now() -> Duration {
    // SAFETY: an all-zero rusage is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the rusage we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn tv(t: libc::timeval) -> Duration {
    Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000)
}

fn ffmpeg_present() -> bool {
    Command::new("ffmpeg")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs ffmpeg to the end; wall time from spawn to reap, CPU from `wait4`
/// (which reaps the child: `Child::wait` would hide its rusage).
#[allow(clippy::zombie_processes)]
fn run_ffmpeg(args: &[&str], path: &Path) -> Times {
    let clock = SystemClock;
    let start = clock.now();
    let child = Command::new("ffmpeg")
        .args(args.iter().map(|a| if *a == "{}" { path.to_str().unwrap() } else { a }))
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn ffmpeg");
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaps our own child by pid, writing into locals we own.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut ru) };
    let wall = clock.now() - start;
    assert!(pid > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "ffmpeg failed");
    Times { wall, cpu: tv(ru.ru_utime) + tv(ru.ru_stime) }
}

fn run_in_process(f: fn(&[u8]) -> u64, buf: &[u8]) -> (Times, u64) {
    let clock = SystemClock;
    let (start, cpu) = (clock.now(), cpu_now());
    let sum = black_box(f(black_box(buf)));
    (Times { wall: clock.now() - start, cpu: cpu_now() - cpu }, sum)
}

/// Our demuxer to access units, drained and dropped as a consumer would.
fn uringest_demux(buf: &[u8]) -> u64 {
    let mut d = Demuxer::new();
    let mut out: Vec<AvPacket> = Vec::with_capacity(DRAIN_BATCH);
    let (mut packets, mut bytes) = (0u64, 0u64);
    let mut drain = |d: &mut Demuxer| {
        while d.drain(&mut out, DRAIN_BATCH) > 0 {
            packets += out.len() as u64;
            bytes += out.iter().map(|p| p.payload.len() as u64).sum::<u64>();
            out.clear();
        }
    };
    for chunk in buf.chunks(CHUNK) {
        d.push(chunk);
        drain(&mut d);
    }
    d.flush();
    drain(&mut d);
    assert!(packets > 0);
    packets ^ bytes << 20
}

/// Demux then mux back to TS, as a mixer does: each chunk's access units
/// muxed into one buffer, cut into a `Bytes` per chunk (what a hub
/// publisher gets) and dropped.
fn uringest_demux_mux(buf: &[u8]) -> u64 {
    let mut d = Demuxer::new();
    let mut muxer = Muxer::new(MuxConfig::default()).unwrap();
    let mut out: Vec<AvPacket> = Vec::with_capacity(DRAIN_BATCH);
    let mut ts = BytesMut::with_capacity(4 << 20);
    let mut written = 0u64;
    let mut step = |d: &mut Demuxer, ts: &mut BytesMut| {
        while d.drain(&mut out, DRAIN_BATCH) > 0 {
            written += muxer.push_all(&out, ts) as u64;
            out.clear();
        }
        black_box(ts.split().freeze());
        if ts.capacity() < 1 << 20 {
            ts.reserve(4 << 20);
        }
    };
    for chunk in buf.chunks(CHUNK) {
        d.push(chunk);
        step(&mut d, &mut ts);
    }
    d.flush();
    step(&mut d, &mut ts);
    assert!(written > 0);
    written
}

/// The copy any gathering demuxer makes: each packet's last 184 bytes into
/// a reused 128 KiB block, nothing parsed. Not a rival: a floor.
fn gather_copy_floor(buf: &[u8]) -> u64 {
    let mut block = vec![0u8; 128 * 1024];
    let mut at = 0;
    let mut sum = 0u64;
    for p in buf.chunks_exact(188) {
        if at + 184 > block.len() {
            sum = sum.wrapping_add(u64::from(block[at / 2]));
            at = 0;
        }
        block[at..at + 184].copy_from_slice(&p[4..]);
        at += 184;
    }
    black_box(&block);
    sum
}

/// mpeg2ts-reader's PES parsing with an empty consumer: no gathering.
pub struct NullEs;
impl ElementaryStreamConsumer<RefCtx> for NullEs {
    fn start_stream(&mut self, _: &mut RefCtx) {}
    fn begin_packet(&mut self, _: &mut RefCtx, header: PesHeader<'_>) {
        PES_SEEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        black_box(header.pes_packet_length());
    }
    fn continue_packet(&mut self, _: &mut RefCtx, data: &[u8]) {
        black_box(data.len());
    }
    fn end_packet(&mut self, _: &mut RefCtx) {}
    fn continuity_error(&mut self, _: &mut RefCtx) {}
}

packet_filter_switch! {
    RefSwitch<RefCtx> {
        Pat: demultiplex::PatPacketFilter<RefCtx>,
        Pmt: demultiplex::PmtPacketFilter<RefCtx>,
        Pes: PesPacketFilter<RefCtx, NullEs>,
        Null: demultiplex::NullPacketFilter<RefCtx>,
    }
}
demux_context!(RefCtx, RefSwitch);

impl RefCtx {
    fn do_construct(&mut self, req: FilterRequest<'_, '_>) -> RefSwitch {
        match req {
            FilterRequest::ByPid(mpeg2ts_reader::psi::pat::PAT_PID) => RefSwitch::Pat(Default::default()),
            FilterRequest::Pmt { pid, program_number } => {
                RefSwitch::Pmt(demultiplex::PmtPacketFilter::new(pid, program_number))
            }
            FilterRequest::ByStream { .. } => RefSwitch::Pes(PesPacketFilter::new(NullEs)),
            _ => RefSwitch::Null(Default::default()),
        }
    }
}

/// PES packets the reference saw (demux_context! has no room for a field).
static PES_SEEN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn mpeg2ts_reader_pes(buf: &[u8]) -> u64 {
    let mut ctx = RefCtx::new();
    let mut demux = Demultiplex::new(&mut ctx);
    for chunk in buf.chunks(CHUNK) {
        demux.push(&mut ctx, chunk);
    }
    black_box(&demux);
    PES_SEEN.swap(0, std::sync::atomic::Ordering::Relaxed)
}

/// The test file: the clip looped by ffmpeg (continuous timestamps), or
/// byte for byte without ffmpeg, cut to `bytes` (whole packets).
fn make_file(bytes: usize, with_ffmpeg: bool) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let clip_path = format!("{}/tests/fixtures/cbr_5mbit.ts", env!("CARGO_MANIFEST_DIR"));
    let kind = if with_ffmpeg { "ffmpeg" } else { "bytes" };
    let path = dir.join(format!("demux_bench_{}mib_{kind}.ts", bytes >> 20));
    if std::fs::metadata(&path).is_ok_and(|m| m.len() == (bytes / 188 * 188) as u64) {
        return path;
    }
    let clip = std::fs::read(&clip_path).unwrap();
    let tmp = dir.join("demux_bench_tmp.ts");
    if with_ffmpeg {
        // -c copy drops the clip's null padding, so a loop is smaller than
        // the clip: loop generously, then cut.
        let loops = bytes / clip.len() * 3 / 2 + 2;
        let status = Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-stream_loop", &loops.to_string(), "-i", &clip_path])
            .args(["-map", "0", "-c", "copy", "-f", "mpegts"])
            .arg(&tmp)
            .status()
            .expect("ffmpeg");
        assert!(status.success(), "ffmpeg could not loop the clip");
        let made = std::fs::metadata(&tmp).unwrap().len();
        assert!(made >= bytes as u64, "ffmpeg made {made} bytes, fewer than {bytes}");
        let f = std::fs::OpenOptions::new().write(true).open(&tmp).unwrap();
        f.set_len((bytes / 188 * 188) as u64).unwrap();
    } else {
        let mut out = Vec::with_capacity(bytes);
        while out.len() < bytes {
            out.extend_from_slice(&clip);
        }
        out.truncate(bytes / 188 * 188);
        std::fs::write(&tmp, out).unwrap();
    }
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let mib: usize =
        std::env::var("DEMUX_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(if benching { 512 } else { 16 });
    let reps = if benching { 3 } else { 1 };
    let with_ffmpeg = ffmpeg_present();

    let cases = [
        Case::Ffmpeg {
            name: "ffmpeg -c copy -f null (whole process)",
            args: &["-v", "error", "-nostdin", "-i", "{}", "-c", "copy", "-f", "null", "-"],
        },
        Case::InProcess { name: "uringest Demuxer to AvPackets", run: uringest_demux },
        Case::Ffmpeg {
            name: "ffmpeg -c copy -f mpegts (whole process)",
            args: &["-v", "error", "-nostdin", "-i", "{}", "-c", "copy", "-f", "mpegts", "-y", "/dev/null"],
        },
        Case::InProcess { name: "uringest demux then mux to TS", run: uringest_demux_mux },
        Case::InProcess { name: "mpeg2ts-reader PES, no gathering", run: mpeg2ts_reader_pes },
        Case::InProcess { name: "copy 184 B/packet to a reused block (floor)", run: gather_copy_floor },
    ];
    let comparisons = [
        Comparison {
            ours: "uringest Demuxer to AvPackets",
            baseline: "ffmpeg -c copy -f null (whole process)",
            target: 8.0,
        },
        Comparison {
            ours: "uringest demux then mux to TS",
            baseline: "ffmpeg -c copy -f mpegts (whole process)",
            target: 4.0,
        },
    ];

    let path = make_file(mib << 20, with_ffmpeg);
    let file = MappedFile::open(&path).unwrap();
    let buf = file.bytes();
    // Make the pages resident: the in-process rows measure the demux, not
    // page faults.
    black_box(buf.chunks(4096).map(|p| u64::from(p[0])).sum::<u64>());
    let mib = buf.len() as f64 / f64::from(1 << 20);
    println!("demux bench: {} ({mib:.1} MiB, {} packets), best of {reps}", path.display(), buf.len() / 188);
    if !with_ffmpeg {
        println!("  ffmpeg not found: the ffmpeg rows are skipped (apt-get install -y ffmpeg)");
    }

    // DEMUX_BENCH_CASES=text runs only the cases whose name contains it
    // (for profiling one of them).
    let only = std::env::var("DEMUX_BENCH_CASES").unwrap_or_default();
    let mut rows: Vec<(&str, Times)> = Vec::new();
    for case in cases.iter().filter(|c| c.name().contains(only.as_str())) {
        let mut best: Option<Times> = None;
        for _ in 0..reps {
            let t = match case {
                Case::Ffmpeg { args, .. } => {
                    if !with_ffmpeg {
                        break;
                    }
                    run_ffmpeg(args, &path)
                }
                Case::InProcess { run, .. } => run_in_process(*run, buf).0,
            };
            if best.is_none_or(|b| t.wall < b.wall) {
                best = Some(t);
            }
        }
        if let Some(t) = best {
            rows.push((case.name(), t));
        }
    }

    let gbps = |d: Duration| buf.len() as f64 / d.as_secs_f64() / 1e9;
    println!("  {:<44} {:>9} {:>9} {:>10} {:>10}", "case", "wall ms", "cpu ms", "GB/s wall", "GB/s cpu");
    for (name, t) in &rows {
        println!(
            "  {:<44} {:>9.1} {:>9.1} {:>10.2} {:>10.2}",
            name,
            t.wall.as_secs_f64() * 1e3,
            t.cpu.as_secs_f64() * 1e3,
            gbps(t.wall),
            gbps(t.cpu)
        );
    }
    let find = |n: &str| rows.iter().find(|(name, _)| *name == n).map(|(_, t)| *t);
    for c in &comparisons {
        let (Some(ours), Some(base)) = (find(c.ours), find(c.baseline)) else { continue };
        let wall = base.wall.as_secs_f64() / ours.wall.as_secs_f64();
        let cpu = base.cpu.as_secs_f64() / ours.cpu.as_secs_f64();
        let verdict = if wall >= c.target { "met" } else { "NOT met" };
        println!("  {} / {}: {wall:.2}x wall, {cpu:.2}x cpu (target {}x: {verdict})", c.baseline, c.ours, c.target);
    }
}
