//! File playout on a real shard, on both backends, read by a hub subscriber
//! on another thread: an unpaced file comes through byte for byte, and a
//! looped file paced by PCR keeps one timeline across the seam — PCRs only
//! move forward by regular steps, they arrive when their value says, and
//! continuity counters carry on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{backends, fixture};
use uringest::clock::{Clock, SystemClock};
use uringest::hub::{Hub, RecvError, Start};
use uringest::input::chunks::{DEFAULT_CHUNK_PACKETS, FileChunks};
use uringest::input::file::MappedFile;
use uringest::input::playout::Playout;
use uringest::input::playout::drive::{DriveOptions, DriveReport, drive};
use uringest::shard::{Backend, Shards};
use uringest::ts::analyze::Analyzer;
use uringest::ts::packet::{PACKET_LEN, Pcr, TsPacket};
use uringest::url::Pace;

/// Plays `name` on a shard of `backend` for at most `run_for`, and returns
/// what a subscriber received, each chunk with the time it arrived.
fn play(
    backend: Backend,
    name: &str,
    looping: bool,
    pace: Pace,
    run_for: Duration,
) -> (Vec<(Duration, Bytes)>, DriveReport) {
    let (mut publisher, hub) = Hub::<Bytes>::new(1 << 16).unwrap();
    let mut sub = hub.subscribe(Start::Oldest);
    let shards = Shards::start(1, backend, false).unwrap();
    let path = fixture(name);
    let done = shards
        .spawn(move || async move {
            let file = MappedFile::open(&path).unwrap();
            let playout = Playout::new(FileChunks::new(file, looping, DEFAULT_CHUNK_PACKETS), looping, pace);
            drive(
                playout,
                &mut publisher,
                SystemClock,
                DriveOptions { run_for: Some(run_for), ..DriveOptions::default() },
            )
            .await
        })
        .unwrap();
    let start = SystemClock.now();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let received = runtime.block_on(async {
        let mut got = Vec::new();
        loop {
            let next = tokio::time::timeout(run_for + Duration::from_secs(5), sub.recv()).await;
            match next.expect("the playout stopped publishing without closing the hub") {
                Ok(bytes) => got.push((SystemClock.now() - start, bytes)),
                Err(RecvError::Closed) => break got,
                Err(e) => panic!("{backend}: {e}"),
            }
        }
    });
    let report = done.blocking_recv().unwrap().unwrap();
    shards.shutdown();
    (received, report)
}

#[test]
fn unpaced_file_arrives_byte_for_byte_and_ends() {
    let expected = std::fs::read(fixture("h264_aac.ts")).unwrap();
    for backend in backends() {
        let (got, report) = play(backend, "h264_aac.ts", false, Pace::None, Duration::from_secs(20));
        let bytes: Vec<u8> = got.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        assert!(bytes == expected, "{backend}: {} bytes received of {}", bytes.len(), expected.len());
        assert_eq!(report.counters.bytes_emitted, expected.len() as u64, "{backend}");
        assert_eq!(report.errors.count(), 0, "{backend}: nothing is timed under pace=none");
    }
}

#[test]
fn looped_paced_file_keeps_its_pcr_timeline_across_the_seam() {
    let file_len = std::fs::metadata(fixture("cbr_5mbit.ts")).unwrap().len() as usize;
    for backend in backends() {
        // The clip lasts 2 s: 2.8 s crosses the seam once.
        let (got, report) = play(backend, "cbr_5mbit.ts", true, Pace::Pcr, Duration::from_millis(2800));
        let bytes: Vec<u8> = got.iter().flat_map(|(_, b)| b.iter().copied()).collect();
        assert!(bytes.len() > file_len, "{backend}: the seam was not reached ({} bytes)", bytes.len());
        assert_eq!(report.counters.chunks.loops, 1, "{backend}");

        let mut analyzer = Analyzer::new();
        analyzer.push_chunk(&bytes);
        assert_eq!(analyzer.report("playout").errors.cc_errors, 0, "{backend}: continuity counters carry on");

        // Every PCR with the time its chunk arrived.
        let mut timeline: Vec<(Duration, Pcr)> = Vec::new();
        let mut offset = 0usize;
        let mut seam_index = None;
        for (at, chunk) in &got {
            for packet in chunk.chunks_exact(PACKET_LEN) {
                let pkt = TsPacket::from_slice(packet).unwrap();
                if let Some(pcr) = pkt.adaptation_field().and_then(|af| af.pcr()) {
                    if offset >= file_len && seam_index.is_none() {
                        seam_index = Some(timeline.len());
                    }
                    timeline.push((*at, pcr));
                }
                offset += PACKET_LEN;
            }
        }
        let seam = seam_index.expect("a PCR after the seam");
        let t0 = timeline[0].0;
        let mut stream_ticks = 0u64;
        let mut worst = Duration::ZERO;
        for (k, pair) in timeline.windows(2).enumerate() {
            let step = pair[1].1.ticks_since(pair[0].1);
            assert!(step > 0 && step < Pcr::HZ / 10, "{backend}: PCR step of {step} ticks at PCR {}", k + 1);
            stream_ticks += step;
            let stream_time = Duration::from_nanos(stream_ticks * 1000 / 27);
            let arrival = pair[1].0 - t0;
            worst = worst.max(arrival.abs_diff(stream_time));
        }
        // Arrival follows the PCR within a loose bound (the machine may be
        // busy): neither the 2 s jump back of an unrewritten seam, nor a
        // burst or a gap there.
        assert!(worst < Duration::from_millis(30), "{backend}: arrival strays {worst:?} from the PCR timeline");
        let (before, after) = (timeline[seam - 1], timeline[seam]);
        let seam_step = Duration::from_nanos(after.1.ticks_since(before.1) * 1000 / 27);
        let seam_gap = after.0 - before.0;
        assert!(
            seam_gap.abs_diff(seam_step) < Duration::from_millis(30),
            "{backend}: seam {seam_step:?} vs {seam_gap:?}"
        );
        eprintln!(
            "{backend}: {} PCRs, worst arrival error {worst:?}, seam step {seam_step:?} arrived after {seam_gap:?}, \
             |emission error| p99 {:.0} us",
            timeline.len(),
            report.errors.abs_quantile(0.99) * 1e6
        );
    }
}
