use std::path::Path;
use std::time::Duration;

use super::*;
use crate::input::chunks::DEFAULT_CHUNK_PACKETS;
use crate::input::file::MappedFile;
use crate::ts::analyze::Analyzer;
use crate::ts::packet::{PACKET_LEN, Pcr, TsPacket};

fn fixture_path(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn playout(name: &str, looping: bool, pace: Pace) -> Playout {
    let file = MappedFile::open(&fixture_path(name)).unwrap();
    Playout::new(FileChunks::new(file, looping, DEFAULT_CHUNK_PACKETS), looping, pace)
}

/// Drives a paced playout on a simulated clock that wakes exactly when
/// asked (never late): every emitted packet with the time it went out.
fn simulate(p: &mut Playout, until: Duration) -> Vec<(Duration, Bytes)> {
    let mut now = Duration::ZERO;
    let mut out = Vec::new();
    while now < until {
        match p.next(now).unwrap() {
            Next::Emit { bytes, due } => {
                let due = due.unwrap();
                assert!(due <= now, "emitted {due:?} before its time at {now:?}");
                out.push((now, bytes));
            }
            Next::Wait(at) => {
                assert!(at > now, "asked to wait for {at:?}, already {now:?}");
                now = at;
            }
            Next::End => break,
        }
    }
    out
}

/// (emission time, PCR) of every PCR on the first PCR PID.
fn pcrs(out: &[(Duration, Bytes)]) -> Vec<(Duration, Pcr)> {
    let mut pid = None;
    let mut found = Vec::new();
    for (at, bytes) in out {
        for packet in bytes.chunks_exact(PACKET_LEN) {
            let pkt = TsPacket::from_slice(packet).unwrap();
            let Some(pcr) = pkt.adaptation_field().and_then(|af| af.pcr()) else { continue };
            if *pid.get_or_insert(pkt.pid()) == pkt.pid() {
                found.push((*at, pcr));
            }
        }
    }
    found
}

fn joined(out: &[(Duration, Bytes)]) -> Vec<u8> {
    out.iter().flat_map(|(_, b)| b.iter().copied()).collect()
}

#[test]
fn unpaced_once_is_the_file_byte_for_byte() {
    let bytes = std::fs::read(fixture_path("h264_aac.ts")).unwrap();
    let mut p = playout("h264_aac.ts", false, Pace::None);
    let mut out = Vec::new();
    loop {
        match p.next(Duration::ZERO).unwrap() {
            Next::Emit { bytes, due } => {
                assert_eq!(due, None);
                out.extend_from_slice(&bytes);
            }
            Next::End => break,
            Next::Wait(at) => panic!("pace=none waited until {at:?}"),
        }
    }
    assert_eq!(out, bytes);
    assert_eq!(p.counters().bytes_emitted, bytes.len() as u64);
    assert_eq!(p.counters().bytes_copied, 0);
}

#[test]
fn unpaced_loop_carries_counters_and_timestamps_across_seams() {
    let len = std::fs::metadata(fixture_path("cbr_5mbit.ts")).unwrap().len();
    let mut p = playout("cbr_5mbit.ts", true, Pace::None);
    let mut out = Vec::new();
    while (out.len() as u64) < 3 * len {
        match p.next(Duration::ZERO).unwrap() {
            Next::Emit { bytes, .. } => out.extend_from_slice(&bytes),
            other => panic!("a looped file goes on, got {other:?}"),
        }
    }
    let mut analyzer = Analyzer::new();
    analyzer.push_chunk(&out);
    let report = analyzer.report("loop");
    assert_eq!(report.errors.cc_errors, 0, "continuity counters carry on across the seams");
    let counters = p.counters();
    assert_eq!(counters.chunks.loops, 2);
    assert_eq!(counters.seam.iterations_total, 2);
    assert!(counters.bytes_copied >= len, "passes after the first are rewritten copies");
    let timeline =
        pcrs(&out.chunks(PACKET_LEN).map(|c| (Duration::ZERO, Bytes::copy_from_slice(c))).collect::<Vec<_>>());
    for pair in timeline.windows(2) {
        let step = pair[1].1.ticks_since(pair[0].1);
        assert!(step > 0 && step < Pcr::HZ / 10, "PCR step of {step} ticks across the loop");
    }
}

#[test]
fn paced_emission_follows_the_pcr() {
    let bytes = std::fs::read(fixture_path("cbr_5mbit.ts")).unwrap();
    let mut p = playout("cbr_5mbit.ts", false, Pace::Pcr);
    let out = simulate(&mut p, Duration::from_secs(10));
    assert_eq!(joined(&out), bytes, "every byte once, in order");
    let timeline = pcrs(&out);
    assert!(timeline.len() > 40);
    let (t0, pcr0) = timeline[0];
    for &(at, pcr) in &timeline {
        let stream_time = Duration::from_nanos(pcr.ticks_since(pcr0) * 1000 / 27);
        let wall = at - t0;
        let error = wall.abs_diff(stream_time);
        assert!(error < Duration::from_micros(50), "PCR at {stream_time:?} went out at {wall:?}");
    }
    let (last, _) = out.last().unwrap();
    assert!(*last > Duration::from_millis(1900) && *last < Duration::from_millis(2100), "2 s clip took {last:?}");
}

#[test]
fn paced_loop_keeps_one_timeline_across_the_seam() {
    let len = std::fs::metadata(fixture_path("cbr_5mbit.ts")).unwrap().len() as usize;
    let mut p = playout("cbr_5mbit.ts", true, Pace::Pcr);
    let out = simulate(&mut p, Duration::from_millis(4500));
    assert!(joined(&out).len() > 2 * len, "more than two passes in 4.5 s");
    let timeline = pcrs(&out);
    let (t0, pcr0) = timeline[0];
    let mut unwrapped = 0u64;
    let mut prev = pcr0;
    for &(at, pcr) in &timeline[1..] {
        let step = pcr.ticks_since(prev);
        assert!(step < Pcr::HZ / 10, "PCR step of {step} ticks");
        unwrapped += step;
        prev = pcr;
        let stream_time = Duration::from_nanos(unwrapped * 1000 / 27);
        let error = (at - t0).abs_diff(stream_time);
        assert!(error < Duration::from_micros(50), "PCR at {stream_time:?} went out at {:?}", at - t0);
    }
    let mut analyzer = Analyzer::new();
    analyzer.push_chunk(&joined(&out));
    assert_eq!(analyzer.report("loop").errors.cc_errors, 0);
    assert_eq!(p.counters().pace.pcr_jumps_total, 0, "the seam looks like any other PCR interval");
}

#[test]
fn paced_emission_slices_the_mapping_on_the_first_pass() {
    let mut p = playout("h264_aac.ts", false, Pace::Pcr);
    let _ = simulate(&mut p, Duration::from_millis(500));
    assert_eq!(p.counters().bytes_copied, 0);
}

#[test]
fn a_file_without_pcr_is_refused_under_pace_pcr() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nopcr.ts");
    let mut data = Vec::new();
    for i in 0..2000u32 {
        let mut pkt = [0xAAu8; PACKET_LEN];
        pkt[..4].copy_from_slice(&[0x47, 0x01, 0x00, 0x10 | (i % 16) as u8]);
        data.extend_from_slice(&pkt);
    }
    std::fs::write(&path, &data).unwrap();
    let file = MappedFile::open(&path).unwrap();
    let mut p = Playout::new(FileChunks::new(file, false, DEFAULT_CHUNK_PACKETS), false, Pace::Pcr);
    let err = match p.next(Duration::ZERO) {
        Ok(Next::Emit { .. }) => panic!("nothing is timed without a PCR"),
        Ok(other) => panic!("expected an error, got {other:?}"),
        Err(e) => e,
    };
    assert!(err.to_string().contains("no PCR"), "{err}");
    assert!(err.to_string().contains("pace=none"), "{err}");
}

fn copy(copies: &mut PassBuffers, bytes: &[u8]) -> Bytes {
    let buffer = copies.copy_of(bytes);
    copies.issue(buffer)
}

#[test]
fn pass_copies_reuse_a_buffer_once_every_slice_of_it_dropped() {
    let mut copies = PassBuffers::default();
    let first = copy(&mut copies, &[1u8; 376]);
    let slice = first.slice(188..);
    let first_ptr = first.as_ptr();
    drop(first);
    // A slice still in use (say, in the hub): the buffer is not reused.
    let second = copy(&mut copies, &[2u8; 376]);
    assert_ne!(second.as_ptr(), first_ptr);
    assert_eq!(&slice[..], &[1u8; 188][..], "the slice in use is untouched");
    drop(slice);
    // Now nobody holds the first: the next copy goes into it.
    let third = copy(&mut copies, &[3u8; 376]);
    assert_eq!(third.as_ptr(), first_ptr);
    assert_eq!(&third[..], &[3u8; 376][..]);
    assert_eq!(&second[..], &[2u8; 376][..]);
    assert_eq!(copies.bytes_copied, 3 * 376);
}

#[test]
fn pass_copies_track_a_bounded_number_of_buffers() {
    let mut copies = PassBuffers::default();
    // Every copy kept alive by its user: nothing is ever free, and the
    // tracking does not grow past its bound.
    let held: Vec<Bytes> = (0..MAX_TRACKED_COPIES + 10).map(|_| copy(&mut copies, &[0u8; 188])).collect();
    assert_eq!(copies.issued.len(), MAX_TRACKED_COPIES);
    let ptrs: std::collections::HashSet<*const u8> = held.iter().map(|b| b.as_ptr()).collect();
    assert_eq!(ptrs.len(), held.len(), "no buffer in use was handed out twice");
}
