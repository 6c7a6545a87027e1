//! Loops of the committed fixtures and synthetic edge cases.

use std::collections::BTreeMap;

use super::*;
use crate::ts::analyze::Analyzer;
use crate::ts::pace::PcrPacer;
use crate::ts::stats::PidTable;

const CBR: &[u8] = include_bytes!("../../../tests/fixtures/cbr_5mbit.ts");
const H264_AAC: &[u8] = include_bytes!("../../../tests/fixtures/h264_aac.ts");
const MPTS: &[u8] = include_bytes!("../../../tests/fixtures/mpts_3prog.ts");
const FIXTURES: [(&str, &[u8]); 3] = [("cbr_5mbit", CBR), ("h264_aac", H264_AAC), ("mpts_3prog", MPTS)];

const MS: u64 = Pcr::HZ / 1000;

/// `bytes` played `passes` times through a seam, in chunks of 7 packets:
/// pass 0 observed, the others copied and rewritten.
fn looped(bytes: &[u8], passes: usize) -> (Vec<u8>, LoopSeam) {
    let mut seam = LoopSeam::new(None);
    let mut out = Vec::with_capacity(bytes.len() * passes);
    for pass in 0..passes {
        if pass > 0 {
            seam.start_iteration();
        }
        let mut copy = bytes.to_vec();
        for chunk in copy.chunks_mut(7 * PACKET_LEN) {
            if seam.needs_rewrite() {
                seam.rewrite(chunk).unwrap();
            } else {
                seam.observe(chunk).unwrap();
            }
        }
        out.extend_from_slice(&copy);
    }
    (out, seam)
}

fn packets(bytes: &[u8]) -> impl Iterator<Item = TsPacket<'_>> {
    bytes.chunks_exact(PACKET_LEN).filter_map(TsPacket::from_slice)
}

/// (packet index, PCR) of `pid`.
fn pcrs(bytes: &[u8], pid: Pid) -> Vec<(usize, u64)> {
    packets(bytes)
        .enumerate()
        .filter(|(_, p)| p.pid() == pid)
        .filter_map(|(i, p)| p.adaptation_field().and_then(|af| af.pcr()).map(|pcr| (i, pcr.ticks())))
        .collect()
}

/// DTS (PTS when there is none) of each PES start, per PID.
fn pes_clock(bytes: &[u8]) -> BTreeMap<Pid, Vec<u64>> {
    let mut out: BTreeMap<Pid, Vec<u64>> = BTreeMap::new();
    for p in packets(bytes) {
        let Some(start) = pes_start(p.bytes()) else { continue };
        let payload = &p.bytes()[start..];
        let Some([pts, dts]) = timestamp_fields(payload) else { continue };
        let at = dts.or(pts).unwrap();
        out.entry(p.pid()).or_default().push(read_timestamp(&payload[at..at + 5]).unwrap());
    }
    out
}

fn first_pcr_pid(bytes: &[u8]) -> Pid {
    let mut analyzer = Analyzer::new();
    analyzer.analyze(bytes, None);
    analyzer.psi().programs().next().and_then(|(_, _, pmt)| pmt).unwrap().pcr_pid
}

#[test]
fn three_loops_of_each_fixture_are_continuous() {
    for (name, bytes) in FIXTURES {
        let (out, seam) = looped(bytes, 3);
        assert_eq!(&out[..bytes.len()], bytes, "{name}: pass 0 is untouched");

        let mut analyzer = Analyzer::new();
        analyzer.analyze(&out, None);
        let report = analyzer.report(name);
        assert_eq!(report.errors.cc_errors, 0, "{name}: {:?}", report.pids);
        assert!(report.pids.iter().all(|p| p.discontinuities == 0), "{name}");

        // PCR strictly increasing; at each seam the step is at least the
        // file's shortest interval and at most its longest plus one video
        // frame (the overhang of the longest stream).
        let pid = first_pcr_pid(bytes);
        let single = pcrs(bytes, pid);
        let steps: Vec<u64> = single.windows(2).map(|w| w[1].1 - w[0].1).collect();
        let (min, max) = (*steps.iter().min().unwrap(), *steps.iter().max().unwrap());
        let all = pcrs(&out, pid);
        assert_eq!(all.len(), 3 * single.len());
        for (k, w) in all.windows(2).enumerate() {
            assert!(w[1].1 > w[0].1, "{name}: PCR {k} -> {}: {:?}", k + 1, w);
            if (k + 1) % single.len() == 0 {
                let step = w[1].1 - w[0].1;
                assert!(
                    (min..=max + 40 * MS).contains(&step),
                    "{name}: seam step {step} outside {min}..={max} + 40 ms"
                );
                assert_eq!(step, seam.offset_ticks() / 2 - (single.last().unwrap().1 - single[0].1));
            }
        }
        // The period covers the PCR span plus a mean interval.
        let period = seam.period().unwrap();
        let pcr_period = (single.last().unwrap().1 - single[0].1) + steps.iter().sum::<u64>() / steps.len() as u64;
        assert!(period >= Duration::from_nanos(pcr_period * 1000 / 27), "{name}");

        // Each PES PID's DTS (PTS for audio) strictly increases across seams.
        let clocks = pes_clock(&out);
        let single_clocks = pes_clock(bytes);
        assert!(!clocks.is_empty());
        for (pid, ts) in &clocks {
            assert_eq!(ts.len(), 3 * single_clocks[pid].len(), "{name} {pid}");
            for w in ts.windows(2) {
                assert!(w[1] > w[0], "{name} {pid}: {w:?}");
            }
            let n = single_clocks[pid].len();
            assert_eq!(ts[n] - ts[0], seam.offset_ticks() / 2 / 300, "{name} {pid}: moved by one period");
        }
    }
}

#[test]
fn rewrite_touches_only_counters_and_clocks() {
    let (out, _) = looped(CBR, 2);
    let pass1 = &out[CBR.len()..];
    assert_eq!(pass1.len(), CBR.len());
    let mut changed_pcr = 0;
    for (a, b) in CBR.chunks_exact(PACKET_LEN).zip(pass1.chunks_exact(PACKET_LEN)) {
        assert_eq!(b[0], 0x47);
        assert_eq!(a[..3], b[..3]);
        assert_eq!(a[3] & 0xF0, b[3] & 0xF0);
        let (pa, pb) = (TsPacket::from_slice(a).unwrap(), TsPacket::from_slice(b).unwrap());
        if pa.pid() == Pid::NULL {
            assert_eq!(a, b);
        }
        if let Some(pcr) = pa.adaptation_field().and_then(|af| af.pcr()) {
            changed_pcr += 1;
            assert_ne!(pb.adaptation_field().and_then(|af| af.pcr()), Some(pcr));
            assert_eq!(a[10] & 0x7E, b[10] & 0x7E, "reserved bits kept");
        }
        let pes = pes_start(pa.bytes()).and_then(|s| timestamp_fields(&a[s..]).map(|f| (s, f)));
        let mut same = [true; PACKET_LEN];
        same[3] = false;
        if pa.adaptation_field().and_then(|af| af.pcr()).is_some() {
            same[6..12].fill(false);
        }
        if let Some((s, fields)) = pes {
            for at in fields.into_iter().flatten() {
                same[s + at..s + at + 5].fill(false);
            }
        }
        for i in (0..PACKET_LEN).filter(|&i| same[i]) {
            assert_eq!(a[i], b[i], "byte {i} changed");
        }
    }
    assert_eq!(changed_pcr, 100);
}

#[test]
fn paced_loop_has_no_seam_in_time() {
    let (out, seam) = looped(CBR, 3);
    let mut pacer = PcrPacer::new(None);
    let mut pos = 0;
    let mut segments = Vec::new();
    while pos < out.len() {
        let step = pacer.scan(&out[pos..], Duration::ZERO).unwrap();
        pos += step.consumed;
        segments.extend(step.segment);
    }
    let c = pacer.counters();
    assert_eq!((c.discontinuities_total, c.pcr_jumps_total, c.stalls_total), (0, 0, 0));
    let pcr_at = |offset: u64| TsPacket::from_slice(&out[offset as usize..]).unwrap().adaptation_field().unwrap().pcr();
    let pcr0 = pcr_at(segments[0].anchor).unwrap();
    for s in &segments {
        let ticks = pcr_at(s.anchor).unwrap().ticks_since(pcr0);
        let expected = Duration::from_nanos(ticks * 1000 / 27);
        assert!(s.due(s.anchor).abs_diff(expected) < Duration::from_micros(1), "{s:?}");
    }
    // The first PCR of pass 1 is due one period after the first of pass 0:
    // a pass lasts the PCR span plus one mean interval.
    let first_of_pass1 = segments.iter().find(|s| s.anchor >= CBR.len() as u64).unwrap();
    assert!(first_of_pass1.due(first_of_pass1.anchor).abs_diff(seam.period().unwrap()) < Duration::from_micros(1));
}

/// A packet of `pid` with counter `cc`; payload or adaptation only.
fn packet(pid: u16, cc: u8, payload: bool) -> [u8; PACKET_LEN] {
    let mut p = [0xFFu8; PACKET_LEN];
    p[..4].copy_from_slice(&[0x47, (pid >> 8) as u8, pid as u8, if payload { 0x10 } else { 0x20 } | cc]);
    if !payload {
        p[4] = 183;
        p[5] = 0;
    }
    p
}

fn with_pcr(mut p: [u8; PACKET_LEN], ticks: u64) -> [u8; PACKET_LEN] {
    p[3] = (p[3] & 0xCF) | 0x30;
    p[4] = 7;
    p[5] = 0x10;
    write_pcr(&mut p, ticks);
    p
}

/// A PES start on `pid` with PTS and, when given, DTS.
fn pes(pid: u16, cc: u8, pts: u64, dts: Option<u64>) -> [u8; PACKET_LEN] {
    let mut p = packet(pid, cc, true);
    p[1] |= 0x40;
    let flags = if dts.is_some() { 0xC0 } else { 0x80 };
    let header_len = if dts.is_some() { 10 } else { 5 };
    p[4..13].copy_from_slice(&[0, 0, 1, 0xE0, 0, 0, 0x80, flags, header_len]);
    p[13] = if dts.is_some() { 0x31 } else { 0x21 };
    write_timestamp(&mut p[13..18], pts);
    if let Some(dts) = dts {
        p[18] = 0x11;
        write_timestamp(&mut p[18..23], dts);
    }
    p
}

#[test]
fn counters_follow_the_spec_rules_across_the_seam() {
    // 0x100 starts with an adaptation-only packet; 0x101 ends with one;
    // 0x102 has a legal duplicate; the PAT is looped like any PID.
    let file: Vec<u8> = [
        packet(0x100, 5, false),
        packet(0x100, 6, true),
        packet(0x101, 0, true),
        packet(0x102, 9, true),
        packet(0x102, 9, true),
        packet(0x100, 7, true),
        packet(0x101, 1, true),
        packet(0x101, 1, false),
        packet(0x0000, 3, true),
        packet(0x1FFF, 4, true),
    ]
    .concat();
    let (out, _) = looped(&file, 20);
    let mut table = PidTable::default();
    for (i, p) in packets(&out).enumerate() {
        table.account(&p, i as u64);
    }
    assert!(table.iter().all(|e| e.cc_errors == 0), "{:?}", table.iter().collect::<Vec<_>>());
    // Null packets pass unmodified.
    assert!(packets(&out).filter(|p| p.pid() == Pid::NULL).all(|p| p.cc().value() == 4));
}

#[test]
fn period_is_the_pcr_span_plus_one_mean_interval() {
    // PCRs 40 ms apart on PID 0x100, one every 10 packets, 10 of them.
    let file: Vec<u8> = (0..100u64)
        .map(|i| {
            let p = packet(0x100, i as u8 & 0x0F, true);
            if i % 10 == 0 { with_pcr(p, 1_000 + i / 10 * 40 * MS) } else { p }
        })
        .collect::<Vec<_>>()
        .concat();
    let (out, seam) = looped(&file, 2);
    assert_eq!(seam.period(), Some(Duration::from_millis(400)));
    let all = pcrs(&out, Pid::new(0x100));
    assert_eq!(all[10].1, all[9].1 + 40 * MS);
}

#[test]
fn clocks_wrap_around() {
    // PCR and DTS close to their wrap; PTS 0.5 s ahead of DTS.
    let near = Pcr::WRAP - 100 * MS;
    let dts0 = TIMESTAMP_WRAP - 9_000;
    let file: Vec<u8> = (0..10u64)
        .flat_map(|i| {
            [
                with_pcr(packet(0x100, i as u8, true), near + i * 40 * MS),
                pes(0x101, i as u8, dts0 + i * 3_600 + 45_000, Some(dts0 + i * 3_600)),
            ]
        })
        .collect::<Vec<_>>()
        .concat();
    let (out, seam) = looped(&file, 3);
    assert_eq!(seam.period(), Some(Duration::from_millis(400)));
    let all = pcrs(&out, Pid::new(0x100));
    for (k, w) in all.windows(2).enumerate() {
        assert_eq!(w[1].1, (w[0].1 + 40 * MS) % Pcr::WRAP, "PCR {k}");
    }
    let dts = &pes_clock(&out)[&Pid::new(0x101)];
    for (k, w) in dts.windows(2).enumerate() {
        assert_eq!(w[1], (w[0] + 3_600) % TIMESTAMP_WRAP, "DTS {k}");
    }
    // PTS keeps its distance to DTS.
    let p = &out[out.len() - PACKET_LEN..];
    let (pts, dts) = (read_timestamp(&p[13..18]).unwrap(), read_timestamp(&p[18..23]).unwrap());
    assert_eq!((pts + TIMESTAMP_WRAP - dts) % TIMESTAMP_WRAP, 45_000);
    assert_eq!((p[13] >> 4, p[18] >> 4), (0x3, 0x1), "prefixes kept");
}

#[test]
fn without_pcr_the_period_comes_from_the_dts() {
    let file: Vec<u8> =
        (0..25u64).map(|i| pes(0x101, i as u8, i * 3_600 + 7_200, Some(i * 3_600))).collect::<Vec<_>>().concat();
    let (out, seam) = looped(&file, 2);
    assert_eq!(seam.period(), Some(Duration::from_secs(1)));
    assert_eq!(pes_clock(&out)[&Pid::new(0x101)][25], 90_000);
}

#[test]
fn malformed_pes_headers_are_left_alone() {
    let mut bad_marker = pes(0x101, 0, 1_000, None);
    bad_marker[17] &= 0xFE;
    let mut short_header = pes(0x101, 1, 2_000, Some(1_000));
    short_header[12] = 5;
    let padding = {
        let mut p = pes(0x101, 2, 3_000, None);
        p[7] = 0xBE;
        p
    };
    let file: Vec<u8> =
        [with_pcr(packet(0x100, 0, true), 0), with_pcr(packet(0x100, 1, true), MS), bad_marker, short_header, padding]
            .concat();
    let (out, seam) = looped(&file, 2);
    let pass1 = &out[file.len()..];
    for i in 2..5 {
        let span = i * PACKET_LEN + 4..(i + 1) * PACKET_LEN;
        assert_eq!(pass1[span.clone()], file[span], "packet {i}");
    }
    assert_eq!(seam.counters().timestamps_rewritten_total, 0);
    assert_eq!(seam.counters().pcrs_rewritten_total, 2);
}

#[test]
fn unaligned_chunks_are_errors() {
    let mut seam = LoopSeam::new(None);
    assert_eq!(seam.observe(&[0x47; 100]), Err(SeamError::Unaligned { len: 100 }));
    assert_eq!(seam.rewrite(&mut [0x47; 189]), Err(SeamError::Unaligned { len: 189 }));
}
