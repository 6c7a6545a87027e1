//! `cargo bench --bench file_read`: reading a 256 MiB TS file to chunks,
//! the read path against the mapped path and a plain `read(2)` loop, in
//! one run:
//! - `mmap`: `FileChunks` over a fresh `MappedFile` (page-table setup
//!   included, as every open pays it);
//! - `read io_uring`: `ReadChunks` on a one-shard io_uring set (default
//!   options: 256 KiB reads, 4 in flight, READ_FIXED), and with 1 in flight;
//! - `read epoll`: `ReadChunks` on a one-shard epoll set (`pread(2)`);
//! - `read(2) loop`: the baseline, a 256 KiB buffer reused, checking each
//!   188-byte packet's sync byte (the framer's work per packet) and nothing
//!   else.
//!
//! Each figure is the best of several runs. **warm**: the file is in the
//! page cache. **cold**: the file's pages are dropped before each run
//! (`posix_fadvise(DONTNEED)` on this file only), so the disk is read.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) the file is
//! 8 MiB and each figure one run; `FILE_BENCH_MIB=N` sets the size.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unsafe_code)]

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use uringest::clock::{Clock, SystemClock};
use uringest::input::chunks::{DEFAULT_CHUNK_PACKETS, FileChunks};
use uringest::input::file::MappedFile;
use uringest::input::read::{ReadChunks, ReadOptions};
use uringest::shard::backend::detect;
use uringest::shard::{Backend, IoChoice, Shards};

fn make_file(dir: &Path, bytes: usize) -> PathBuf {
    let clip = std::fs::read(format!("{}/tests/fixtures/cbr_5mbit.ts", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let path = dir.join("big.ts");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let mut written = 0;
    while written + clip.len() <= bytes {
        f.write_all(&clip).unwrap();
        written += clip.len();
    }
    let rest = (bytes - written) / 188 * 188;
    f.write_all(&clip[..rest]).unwrap();
    f.into_inner().unwrap().sync_all().unwrap();
    path
}

/// Drops `path`'s pages from the page cache (this file only).
fn drop_cache(path: &Path) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: plain syscall on an open descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

fn warm(path: &Path) {
    std::hint::black_box(std::fs::read(path).unwrap().len());
}

/// Packets of `path` through the mapping.
fn mmap_packets(path: &Path) -> u64 {
    let mut chunks = FileChunks::new(MappedFile::open(path).unwrap(), false, DEFAULT_CHUNK_PACKETS);
    while chunks.next_chunk().is_some() {}
    chunks.counters().packets
}

/// Packets of `path` through a plain read loop.
fn read_loop_packets(path: &Path) -> u64 {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut packets, mut carry) = (0u64, 0usize);
    loop {
        let n = f.read(&mut buf[carry..]).unwrap();
        if n == 0 {
            break;
        }
        let have = carry + n;
        let whole = have / 188 * 188;
        packets += buf[..whole].chunks_exact(188).filter(|p| p[0] == 0x47).count() as u64;
        buf.copy_within(whole..have, 0);
        carry = have - whole;
    }
    packets
}

/// Packets of `path` through `ReadChunks` on a shard of `backend`.
fn read_chunks_packets(shards: &Shards, path: &Path, options: ReadOptions) -> u64 {
    let (path, backend) = (path.to_owned(), shards.backend());
    shards
        .spawn(move || async move {
            let mut reader = ReadChunks::open(&path, backend, options).unwrap();
            while reader.next_chunk().await.unwrap().is_some() {}
            reader.counters().packets
        })
        .unwrap()
        .blocking_recv()
        .unwrap()
}

/// Best time of `reps` runs of `run`, each after `prepare`.
fn best(reps: usize, expected: u64, mut prepare: impl FnMut(), mut run: impl FnMut() -> u64) -> Duration {
    let clock = SystemClock;
    (0..reps)
        .map(|_| {
            prepare();
            let start = clock.now();
            assert_eq!(run(), expected, "every packet read");
            clock.now() - start
        })
        .min()
        .unwrap()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let mib: usize =
        std::env::var("FILE_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(if full { 256 } else { 8 });
    let reps = if full { 5 } else { 1 };
    let dir = tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into())).unwrap();
    let path = make_file(dir.path(), mib * 1024 * 1024);
    let bytes = std::fs::metadata(&path).unwrap().len();
    let packets = bytes / 188;

    let uring = match detect(IoChoice::Uring) {
        Ok(_) => Some(Shards::start(1, Backend::Uring, false).unwrap()),
        Err(e) => {
            println!("io_uring rows skipped: {e}");
            None
        }
    };
    let epoll = Shards::start(1, Backend::Epoll, false).unwrap();
    let qd1 = ReadOptions { queue_depth: 1, ..ReadOptions::default() };

    println!("file_read: {:.1} MiB TS file, best of {reps} (cold: of {})", bytes as f64 / 1048576.0, reps.min(3));
    println!("{:<34} {:>10} {:>10}", "", "warm GB/s", "cold GB/s");
    type Row<'a> = (&'static str, Box<dyn FnMut() -> u64 + 'a>);
    let mut rows: Vec<Row> = vec![
        ("mmap FileChunks", Box::new(|| mmap_packets(&path))),
        ("read(2) loop, 256 KiB", Box::new(|| read_loop_packets(&path))),
        ("ReadChunks epoll (pread)", Box::new(|| read_chunks_packets(&epoll, &path, ReadOptions::default()))),
    ];
    if let Some(uring) = &uring {
        rows.push((
            "ReadChunks io_uring, 4 in flight",
            Box::new(|| read_chunks_packets(uring, &path, ReadOptions::default())),
        ));
        rows.push(("ReadChunks io_uring, 1 in flight", Box::new(|| read_chunks_packets(uring, &path, qd1))));
    }
    let mut figures = Vec::new();
    for (name, run) in &mut rows {
        let warm_t = best(reps, packets, || warm(&path), &mut *run);
        let cold_t = best(reps.min(3), packets, || drop_cache(&path), &mut *run);
        let rate = |t: Duration| bytes as f64 / t.as_secs_f64() / 1e9;
        println!("{name:<34} {:>10.2} {:>10.2}", rate(warm_t), rate(cold_t));
        figures.push((*name, rate(warm_t), rate(cold_t)));
    }
    let base = figures.iter().find(|f| f.0.starts_with("read(2)")).map(|f| (f.1, f.2)).unwrap();
    println!("ratios against the read(2) loop (warm, cold):");
    for (name, w, c) in &figures {
        println!("  {name:<32} {:>5.2}x {:>5.2}x", w / base.0, c / base.1);
    }
}
