//! The read path for files (`input::read::ReadChunks`) against the mapped
//! path (`FileChunks`), on both backends, on a shard of its own: fixtures,
//! a damaged file, FIFOs fed by a thread and by ffmpeg, looping, errors.
//! Every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use common::backends;
use uringest::input::chunks::{ChunkCounters, FileChunks};
use uringest::input::file::{FileError, MappedFile};
use uringest::input::read::{FileMethod, ReadChunks, ReadOptions, resolve};
use uringest::shard::{Backend, Shards};
use uringest::url::FileRead;

/// Longest any one test waits for its shard.
const DEADLINE: Duration = Duration::from_secs(60);
/// Chunks read at most from one source (bounds every read loop).
const MAX_CHUNKS: usize = 1_000_000;

/// Runs `make`'s future on a fresh one-shard set of `backend`, within
/// [`DEADLINE`].
fn on_shard<T, F, Fut>(backend: Backend, make: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let shards = Shards::start(1, backend, false).unwrap();
    let done = shards.spawn(make).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(done.blocking_recv());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(Ok(value)) => {
            shards.shutdown();
            value
        }
        Ok(Err(_)) => panic!("the shard stopped before the test's future ended"),
        Err(_) => {
            // Do not join a stuck shard: fail now.
            std::mem::forget(shards);
            panic!("timed out after {DEADLINE:?} on {backend}");
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Read {
    bytes: Vec<u8>,
    counters: ChunkCounters,
    iteration: u64,
    chunks: usize,
    fixed_buffers: bool,
    heap_reads: u64,
}

/// Reads `path` to its end (or `limit` bytes) on `backend`.
fn read_file(backend: Backend, path: &Path, options: ReadOptions, limit: usize) -> Result<Read, FileError> {
    let path = path.to_owned();
    on_shard(backend, move || async move {
        let mut reader = ReadChunks::open(&path, backend, options)?;
        let mut out = Read {
            bytes: Vec::new(),
            counters: ChunkCounters::default(),
            iteration: 0,
            chunks: 0,
            fixed_buffers: false,
            heap_reads: 0,
        };
        while out.chunks < MAX_CHUNKS && out.bytes.len() < limit {
            let Some(chunk) = reader.next_chunk().await? else { break };
            assert!(!chunk.is_empty() && chunk.len() % 188 == 0, "chunk of {} bytes", chunk.len());
            assert!(chunk.chunks(188).all(|p| p[0] == 0x47));
            out.bytes.extend_from_slice(&chunk);
            out.chunks += 1;
        }
        out.counters = reader.counters();
        out.iteration = reader.iteration();
        out.fixed_buffers = reader.fixed_buffers();
        out.heap_reads = reader.heap_reads();
        Ok(out)
    })
}

/// The mapped path's bytes and counters of `path`.
fn mapped(path: &Path) -> (Vec<u8>, ChunkCounters) {
    let mut chunks = FileChunks::new(MappedFile::open(path).unwrap(), false, 64);
    let mut bytes = Vec::new();
    for _ in 0..MAX_CHUNKS {
        let Some(chunk) = chunks.next_chunk() else { break };
        bytes.extend_from_slice(&chunk);
    }
    (bytes, chunks.counters())
}

fn small_reads() -> ReadOptions {
    // 4 KiB reads cut 188-, 192- and 204-byte packets everywhere, and two
    // buffers with four reads wanted in flight run the pool dry.
    ReadOptions { read_bytes: 4096, buffers: 2, queue_depth: 4, chunk_packets: 7, ..ReadOptions::default() }
}

#[test]
fn fixtures_read_like_the_mapping() {
    for backend in backends() {
        for name in ["h264_aac.ts", "h264_aac_192.m2ts", "mpts_3prog.ts", "cbr_5mbit.ts"] {
            let path = common::fixture(name);
            let (bytes, counters) = mapped(&path);
            for options in [ReadOptions::default(), small_reads()] {
                let read = read_file(backend, &path, options, usize::MAX).unwrap();
                assert!(read.bytes == bytes, "{backend} {name} {options:?}: bytes differ from the mapping");
                assert_eq!(read.counters, counters, "{backend} {name} {options:?}");
                assert_eq!(read.iteration, 0);
                assert_eq!(read.fixed_buffers, backend == Backend::Uring, "{backend}: READ_FIXED in use");
                if options == ReadOptions::default() {
                    // Chunks dropped as they come: the pool always has a
                    // buffer, nothing is allocated per read.
                    assert_eq!(read.heap_reads, 0, "{backend} {name}");
                }
            }
        }
    }
}

#[test]
fn a_damaged_file_counts_like_the_mapping() {
    let ts = std::fs::read(common::fixture("cbr_5mbit.ts")).unwrap();
    let mut damaged = vec![0u8; 100];
    damaged.extend_from_slice(&ts[..188 * 10]);
    damaged.extend_from_slice(&[0x11; 50]);
    damaged.extend_from_slice(&ts[188 * 10..188 * 5000]);
    damaged.extend_from_slice(&[0x47; 3]);
    damaged.extend_from_slice(&ts[188 * 6000..188 * 6100]);
    damaged.extend_from_slice(&ts[..100]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ts");
    std::fs::write(&path, &damaged).unwrap();
    let (bytes, counters) = mapped(&path);
    // Garbage at the start and in the middle, three stray sync bytes, a cut
    // last packet: the mapping's verdict is the reference.
    assert!(counters.sync_losses >= 2 && counters.skipped_bytes >= 250, "{counters:?}");
    for backend in backends() {
        for options in [ReadOptions::default(), small_reads()] {
            let read = read_file(backend, &path, options, usize::MAX).unwrap();
            assert!(read.bytes == bytes, "{backend} {options:?}: bytes differ from the mapping");
            assert_eq!(read.counters, counters, "{backend} {options:?}");
        }
    }
}

#[test]
fn looping_a_regular_file_gives_it_three_times() {
    let path = common::fixture("h264_aac.ts");
    let ts = std::fs::read(&path).unwrap();
    for backend in backends() {
        let options = ReadOptions { looping: true, ..ReadOptions::default() };
        let read = read_file(backend, &path, options, ts.len() * 3).unwrap();
        assert!(read.bytes == ts.repeat(3), "{backend}: three passes differ from the file three times");
        assert_eq!((read.iteration, read.counters.loops), (2, 2), "{backend}");
        // And the source goes on.
        let more = read_file(backend, &path, options, ts.len() * 3 + 1).unwrap();
        assert!(more.bytes.len() > ts.len() * 3 && more.iteration == 3, "{backend}: a looping file ends");
    }
}

/// `ffmpeg -c copy -f mpegts` of `input` to `out` (a file or a FIFO),
/// started and not waited for.
fn remux(input: &Path, out: &Path) -> std::process::Child {
    Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i"])
        .arg(input)
        .args(["-c", "copy", "-f", "mpegts"])
        .arg(out)
        .spawn()
        .expect("ffmpeg must be installed (the README's test command installs it)")
}

fn mkfifo(dir: &Path) -> PathBuf {
    let path = dir.join("fifo");
    let status = Command::new("mkfifo").arg(&path).status().expect("mkfifo");
    assert!(status.success());
    path
}

#[test]
fn a_fifo_fed_in_odd_writes_comes_back_byte_exact_and_ends() {
    let ts = std::fs::read(common::fixture("h264_aac_192.m2ts")).unwrap();
    let (expected, counters) = mapped(&common::fixture("h264_aac_192.m2ts"));
    for backend in backends() {
        for looping in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let fifo = mkfifo(dir.path());
            let writer = {
                let (fifo, ts) = (fifo.clone(), ts.clone());
                std::thread::spawn(move || {
                    // Open after the reader, so its first read waits for a
                    // writer (a FIFO without one reads as ended).
                    std::thread::sleep(Duration::from_millis(200));
                    let mut f = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
                    for piece in ts.chunks(1000) {
                        f.write_all(piece).unwrap();
                    }
                })
            };
            let options = ReadOptions { looping, ..ReadOptions::default() };
            // (A failed read panics here, before joining a writer that may
            // wait forever for a reader.)
            let read = read_file(backend, &fifo, options, usize::MAX).unwrap();
            writer.join().unwrap();
            assert!(read.bytes == expected, "{backend}: FIFO bytes differ");
            assert_eq!(read.counters, counters, "{backend}");
            assert_eq!(read.iteration, 0, "{backend}: a FIFO does not loop");
        }
    }
}

#[test]
fn a_fifo_fed_by_ffmpeg_gives_its_packets() {
    let input = common::fixture("h264_aac.ts");
    let ffmpeg = |out: &Path| remux(&input, out);
    let dir = tempfile::tempdir().unwrap();
    // The same muxing into a regular file: what the FIFO must deliver.
    let reference = dir.path().join("reference.ts");
    assert!(ffmpeg(&reference).wait().unwrap().success());
    let expected = std::fs::read(&reference).unwrap();
    assert_eq!(expected.len() % 188, 0);
    for backend in backends() {
        let fifo = mkfifo(dir.path());
        let mut child = ffmpeg(&fifo);
        let read = read_file(backend, &fifo, ReadOptions::default(), usize::MAX);
        if read.is_err() {
            // ffmpeg may still wait for a reader to open the FIFO.
            let _ = child.kill();
        }
        let status = child.wait().unwrap();
        std::fs::remove_file(&fifo).unwrap();
        let read = read.unwrap();
        assert!(status.success(), "{backend}: ffmpeg failed");
        let c = read.counters;
        assert_eq!((c.sync_losses, c.skipped_bytes), (0, 0), "{backend}");
        assert_eq!(c.packets as usize, expected.len() / 188, "{backend}: packets");
        assert_eq!(read.bytes.len(), expected.len(), "{backend}");
        // With `-c copy` the muxer writes the same bytes to a FIFO as to a
        // file.
        assert!(read.bytes == expected, "{backend}: bytes differ from ffmpeg's file output");
    }
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.ts");
    let empty = dir.path().join("empty.ts");
    std::fs::write(&empty, b"").unwrap();
    for backend in backends() {
        let err = read_file(backend, &missing, ReadOptions::default(), usize::MAX).unwrap_err();
        assert!(matches!(err, FileError::NotFound(_)), "{backend}: {err}");
        assert!(err.to_string().contains("missing.ts"), "{err}");
        let err = read_file(backend, dir.path(), ReadOptions::default(), usize::MAX).unwrap_err();
        assert!(matches!(err, FileError::IsDirectory(_)), "{backend}: {err}");
        let err = read_file(backend, &empty, ReadOptions::default(), usize::MAX).unwrap_err();
        assert!(matches!(err, FileError::Empty(_)), "{backend}: {err}");
    }
}

#[test]
fn auto_maps_regular_files_and_reads_fifos() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = mkfifo(dir.path());
    let file = common::fixture("h264_aac.ts");
    assert_eq!(resolve(&file, FileRead::Auto).unwrap(), FileMethod::Mmap);
    assert_eq!(resolve(&file, FileRead::Uring).unwrap(), FileMethod::Read);
    assert_eq!(resolve(&fifo, FileRead::Auto).unwrap(), FileMethod::Read);
    assert_eq!(resolve(Path::new("/dev/null"), FileRead::Auto).unwrap(), FileMethod::Read);
    assert!(matches!(resolve(&dir.path().join("nope"), FileRead::Auto), Err(FileError::NotFound(_))));
    assert!(matches!(resolve(dir.path(), FileRead::Auto), Err(FileError::IsDirectory(_))));
    // A character device reads on both backends: /dev/null ends at once.
    for backend in backends() {
        let read = read_file(backend, Path::new("/dev/null"), ReadOptions::default(), usize::MAX).unwrap();
        assert_eq!((read.bytes.len(), read.chunks), (0, 0), "{backend}");
    }
}

/// `uringest probe` of a FIFO that ffmpeg writes: read into buffers on each
/// backend, and the same packet count and PIDs as probe of the file ffmpeg
/// writes with the same arguments.
#[test]
fn probe_reads_a_fifo_written_by_ffmpeg() {
    let input = common::fixture("h264_aac.ts");
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.ts");
    let ffmpeg = |out: &Path| remux(&input, out);
    assert!(ffmpeg(&reference).wait().unwrap().success());
    let expected = common::probe_json(&reference);
    for io in ["uring", "epoll"] {
        let fifo = mkfifo(dir.path());
        let mut child = ffmpeg(&fifo);
        // --duration bounds the wait should ffmpeg never open the FIFO.
        let out = common::uringest(&["probe", "--json", "--io", io, "--duration", "30", fifo.to_str().unwrap()]);
        let _ = child.kill();
        let _ = child.wait();
        std::fs::remove_file(&fifo).unwrap();
        assert!(out.status.success(), "{io}: {}", String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let name = if io == "uring" { "io_uring read" } else { "epoll read" };
        assert_eq!(got["io"], name);
        assert_eq!(got["ts_packets"], expected["ts_packets"], "{io}");
        assert_eq!(got["pids"], expected["pids"], "{io}");
        assert_eq!(got["programs"], expected["programs"], "{io}");
    }
    // No writer: a clear error once --duration has passed, not a hang.
    let fifo = mkfifo(dir.path());
    let out = common::uringest(&["probe", "--duration", "0.5", fifo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing read in 0.5 s"));
}
