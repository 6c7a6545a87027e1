#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::ts::packet::TsPacket;
use crate::ts::timestamp::read_timestamp;

/// (PID, PUSI, RAI, discontinuity, PCR base, has payload, CC) of a packet.
type PacketView = (u16, bool, bool, bool, Option<i64>, bool, u8);

/// What a test reads back from the muxer's output, in stream order.
#[derive(Debug, Default)]
struct Parsed {
    /// Every packet.
    packets: Vec<PacketView>,
    /// Complete PES per PID, in order: (PID, bytes from 00 00 01).
    pes: Vec<(u16, Vec<u8>)>,
}

fn parse(ts: &[u8]) -> Parsed {
    assert_eq!(ts.len() % 188, 0);
    let mut parsed = Parsed::default();
    let mut open: Vec<(u16, Vec<u8>)> = Vec::new();
    for chunk in ts.chunks_exact(188) {
        let p = TsPacket::from_slice(chunk).unwrap();
        assert!(p.has_sync());
        let pid = p.pid().value();
        let af = p.adaptation_field();
        let pcr = af.as_ref().and_then(|a| a.pcr()).map(|pcr| (pcr.ticks() / 300) as i64);
        let rai = af.as_ref().is_some_and(|a| a.random_access());
        let disc = af.as_ref().is_some_and(|a| a.discontinuity());
        parsed.packets.push((pid, p.payload_unit_start(), rai, disc, pcr, p.has_payload(), p.cc().value()));
        if pid == 0 || pid == 0x1000 {
            continue;
        }
        if let Some(payload) = p.payload() {
            if p.payload_unit_start() {
                if let Some(i) = open.iter().position(|o| o.0 == pid) {
                    parsed.pes.push(open.remove(i));
                }
                open.push((pid, Vec::new()));
            }
            open.iter_mut().find(|o| o.0 == pid).unwrap().1.extend_from_slice(payload);
        }
    }
    parsed.pes.extend(open);
    parsed
}

/// A PES timestamp field; the muxer must set its marker bits.
fn read_ts(b: &[u8]) -> i64 {
    read_timestamp(&b[..5]).expect("PES timestamp with marker bits") as i64
}

/// (PTS, DTS, PES_packet_length, payload) of a PES.
fn split_pes(pes: &[u8]) -> (i64, i64, usize, &[u8]) {
    assert_eq!(&pes[..3], &[0, 0, 1]);
    let len = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
    let pts = read_ts(&pes[9..]);
    let dts = if pes[7] & 0x40 != 0 { read_ts(&pes[14..]) } else { pts };
    (pts, dts, len, &pes[9 + usize::from(pes[8])..])
}

fn av(track: u16, codec: Codec, len: usize, dts: i64, keyframe: bool) -> AvPacket {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 + usize::from(track)) as u8).collect();
    AvPacket { track, codec, payload: Bytes::from(payload), pts: dts, dts, keyframe, discontinuity: false }
}

fn mux(pkts: &[AvPacket]) -> (Muxer, BytesMut) {
    let mut m = Muxer::new(MuxConfig::default()).unwrap();
    let mut out = BytesMut::new();
    let n = m.push_all(pkts, &mut out);
    assert_eq!(n * 188, out.len());
    (m, out)
}

#[test]
fn pes_payloads_lengths_and_timestamps_round_trip() {
    // Sizes around every packet boundary, and past PES_packet_length's 16 bits.
    let sizes = [
        0, 1, 2, 150, 160, 161, 162, 163, 164, 165, 166, 170, 175, 176, 183, 184, 185, 367, 368, 5000, 65_521, 65_522,
        70_000,
    ];
    let mut pkts = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let dts = 1000 + i as i64 * 1800;
        pkts.push(av(1, Codec::Aac, len, dts, true));
        let mut v = av(2, Codec::H264, len, dts, i % 5 == 0);
        v.pts = dts + 3600;
        pkts.push(v);
    }
    let (_, out) = mux(&pkts);
    let parsed = parse(&out);
    assert_eq!(parsed.pes.len(), pkts.len());
    for (p, (pid, pes)) in pkts.iter().zip(&parsed.pes) {
        assert_eq!(*pid, if p.codec.is_video() { 0x100 + 1 } else { 0x100 });
        let (pts, dts, len, payload) = split_pes(pes);
        assert_eq!((pts, dts), (p.pts, p.dts));
        assert_eq!(payload, &p.payload[..], "payload of {} bytes", p.payload.len());
        let expect_len = if p.codec.is_audio() && pes.len() - 6 <= 0xFFFF { pes.len() - 6 } else { 0 };
        assert_eq!(len, expect_len, "PES_packet_length for {} bytes", p.payload.len());
    }
}

#[test]
fn continuity_counters_run_per_pid() {
    let pkts: Vec<AvPacket> = (0..200)
        .map(|i| {
            av((i % 3) as u16, if i % 3 == 0 { Codec::H264 } else { Codec::Aac }, i * 37, i as i64 * 900, i % 30 == 0)
        })
        .collect();
    let (_, out) = mux(&pkts);
    let mut last: std::collections::HashMap<u16, u8> = Default::default();
    for &(pid, _, _, _, _, has_payload, cc) in &parse(&out).packets {
        if let Some(&prev) = last.get(&pid) {
            let want = if has_payload { (prev + 1) & 15 } else { prev };
            assert_eq!(cc, want, "PID {pid:#x}");
        }
        last.insert(pid, cc);
    }
}

#[test]
fn pcr_on_video_every_pes_and_psi_every_100ms() {
    // 3 s: 25 fps video (keyframe each second) and 48 kHz AAC frames.
    let mut pkts = Vec::new();
    for i in 0..75 {
        pkts.push(av(0x31, Codec::H264, 3000, 90_000 + i * 3600, i % 25 == 0));
    }
    for i in 0..140 {
        pkts.push(av(0x32, Codec::Aac, 300, 90_000 + i * 1920, true));
    }
    pkts.sort_by_key(|p| p.dts);
    let (_, out) = mux(&pkts);
    let parsed = parse(&out);
    let pcrs: Vec<(u16, i64)> = parsed.packets.iter().filter_map(|p| p.4.map(|pcr| (p.0, pcr))).collect();
    assert!(pcrs.iter().all(|&(pid, _)| pid == 0x100), "PCR on the video PID");
    assert_eq!(pcrs.len(), 75);
    assert_eq!(pcrs[0].1, 90_000 - 63_000, "PCR 700 ms behind DTS");
    assert!(pcrs.windows(2).all(|w| (1..=3600).contains(&(w[1].1 - w[0].1))), "PCR gaps");
    // PSI before the first packet, before each video keyframe, and at
    // least every 100 ms (+ one packet's spacing) of DTS.
    let mut dts_now = 0;
    let mut last_psi = None;
    let mut pes_seen = 0;
    let mut pes = parsed.pes.iter();
    for &(pid, pusi, rai, ..) in &parsed.packets {
        if pid == 0 {
            last_psi = Some(pes_seen);
        }
        if pusi && pid != 0 && pid != 0x1000 {
            let (_, dts, _, _) = split_pes(&pes.next().unwrap().1);
            let psi_at = last_psi.expect("PSI first");
            if pid == 0x100 && rai {
                assert_eq!(psi_at, pes_seen, "PSI right before a keyframe");
            }
            if pes_seen > 0 && psi_at < pes_seen {
                assert!(dts - dts_now < 9000 + 1920, "PSI gap at {dts}");
            } else {
                dts_now = dts;
            }
            pes_seen += 1;
        }
    }
}

#[test]
fn audio_only_pcr_on_first_audio_and_lone_pcr_when_sparse() {
    // Track 9 (first, audio) sends once a second; track 8 every 20 ms: PCR
    // goes on 9's PID, in packets of their own in between.
    let mut pkts = Vec::new();
    for i in 0..3 {
        pkts.push(av(9, Codec::Ac3, 500, 90_000 + i * 90_000, true));
    }
    for i in 0..140 {
        pkts.push(av(8, Codec::Opus, 100, 90_010 + i * 1800, true));
    }
    pkts.sort_by_key(|p| p.dts);
    let (m, out) = mux(&pkts);
    let parsed = parse(&out);
    let pcrs: Vec<&PacketView> = parsed.packets.iter().filter(|p| p.4.is_some()).collect();
    assert!(pcrs.iter().all(|p| p.0 == 0x100));
    assert!(pcrs.iter().filter(|p| !p.5).count() > 40, "lone PCR packets");
    let gaps: Vec<i64> = pcrs.windows(2).map(|w| w[1].4.unwrap() - w[0].4.unwrap()).collect();
    assert!(gaps.iter().all(|g| (0..=3600 + 1800).contains(g)), "{gaps:?}");
    assert_eq!(m.counters().pcrs, pcrs.len() as u64);
}

#[test]
fn random_access_and_discontinuity_flags() {
    let mut pkts = vec![
        av(1, Codec::H264, 1000, 0, true),
        av(1, Codec::H264, 1000, 3600, false),
        av(2, Codec::Aac, 100, 3600, false),
    ];
    let mut jump = av(1, Codec::H264, 1000, 900_000, true);
    jump.discontinuity = true;
    pkts.push(jump);
    pkts.push(av(1, Codec::H264, 1000, 903_600, false));
    let mut a = av(2, Codec::Aac, 100, 900_000, true);
    a.discontinuity = true;
    pkts.push(a);
    let (_, out) = mux(&pkts);
    let starts: Vec<(u16, bool, bool)> =
        parse(&out).packets.iter().filter(|p| p.1 && p.0 >= 0x100 && p.0 < 0x1000).map(|p| (p.0, p.2, p.3)).collect();
    assert_eq!(
        starts,
        vec![
            (0x100, true, false),
            (0x100, false, false),
            (0x101, false, false),
            (0x100, true, true),
            (0x100, false, false),
            (0x101, true, true)
        ]
    );
}

#[test]
fn tracks_over_the_cap_are_refused_and_counted() {
    let config = MuxConfig { max_tracks: 3, ..MuxConfig::default() };
    let mut m = Muxer::new(config).unwrap();
    let mut out = BytesMut::new();
    for t in 0..5u16 {
        m.push(&av(t, Codec::Aac, 10, 0, true), &mut out);
        m.push(&av(t, Codec::Aac, 10, 100, true), &mut out);
    }
    assert_eq!((m.counters().packets, m.counters().refused), (6, 4));
    assert_eq!(m.tracks().map(|t| t.1.value()).collect::<Vec<_>>(), vec![0x100, 0x101, 0x102]);
    assert_eq!(m.pmt_version(), 2);
}

#[test]
fn pmt_lists_tracks_in_pid_order_with_pcr_on_video() {
    let (m, out) = mux(&[av(5, Codec::Aac, 10, 0, true), av(6, Codec::H265, 10, 0, true)]);
    assert_eq!(m.pmt_version(), 1);
    let mut table = crate::ts::stats::PidTable::default();
    let mut psi = crate::ts::psi::Psi::new(&mut table);
    for chunk in out.chunks_exact(188) {
        psi.push(&TsPacket::from_slice(chunk).unwrap(), &mut table);
    }
    let (n, pid, pmt) = psi.programs().next().unwrap();
    assert_eq!((n, pid.value()), (1, 0x1000));
    let pmt = pmt.unwrap();
    assert_eq!((pmt.version, pmt.pcr_pid.value()), (1, 0x101));
    let streams: Vec<(u8, u16)> = pmt.streams.iter().map(|s| (s.stream_type, s.pid.value())).collect();
    assert_eq!(streams, vec![(0x0F, 0x100), (0x24, 0x101)]);
}

#[test]
fn bad_configs_are_named() {
    let bad = |c: MuxConfig| Muxer::new(c).unwrap_err().to_string();
    let d = MuxConfig::default();
    assert!(bad(MuxConfig { pmt_pid: 0x1FFF, ..d }).contains("pmt_pid"));
    assert!(bad(MuxConfig { pmt_pid: 0x105, ..d }).contains("collides"));
    assert!(bad(MuxConfig { first_es_pid: 0x1FF8, ..d }).contains("last elementary"));
    assert!(bad(MuxConfig { max_tracks: 0, ..d }).contains("max_tracks"));
    assert!(bad(MuxConfig { pcr_interval: 0, ..d }).contains("pcr_interval"));
    assert!(bad(MuxConfig { mux_delay: -1, ..d }).contains("mux_delay"));
}

#[test]
fn timestamps_are_written_modulo_2_pow_33() {
    let mut p = av(1, Codec::H264, 10, (1 << 33) + 5, true);
    p.pts = -3;
    let (_, out) = mux(&[p]);
    let parsed = parse(&out);
    let (pts, dts, _, _) = split_pes(&parsed.pes[0].1);
    assert_eq!((pts, dts), ((1 << 33) - 3, 5));
    assert_eq!(parsed.packets.iter().find_map(|p| p.4), Some(((1i64 << 33) + 5 - 63_000).rem_euclid(1 << 33)));
}

fn codec_strategy() -> impl Strategy<Value = Codec> {
    prop_oneof![
        Just(Codec::H264),
        Just(Codec::H265),
        Just(Codec::Aac),
        Just(Codec::MpegAudio),
        Just(Codec::Ac3),
        Just(Codec::Eac3),
        Just(Codec::Opus),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn any_packets_give_whole_packets_and_exact_payloads(
        pkts in proptest::collection::vec(
            (0u16..24, codec_strategy(), 0usize..3000, any::<i64>(), -5000i64..5000, any::<bool>(), any::<bool>()),
            0..60,
        )
    ) {
        let pkts: Vec<AvPacket> = pkts
            .into_iter()
            .map(|(track, codec, len, dts, shift, keyframe, discontinuity)| AvPacket {
                pts: dts.saturating_add(shift),
                discontinuity,
                ..av(track, codec, len, dts, keyframe)
            })
            .collect();
        let (m, out) = mux(&pkts);
        prop_assert_eq!(out.len() % 188, 0);
        prop_assert!(out.chunks_exact(188).all(|p| p[0] == 0x47));
        prop_assert_eq!(m.counters().ts_packets * 188, out.len() as u64);
        let accepted: Vec<&AvPacket> = {
            let ids: Vec<u16> = m.tracks().map(|t| t.0).collect();
            pkts.iter().filter(|p| ids.contains(&p.track)).collect()
        };
        prop_assert_eq!(m.counters().refused as usize, pkts.len() - accepted.len());
        let parsed = parse(&out);
        prop_assert_eq!(parsed.pes.len(), accepted.len());
        // PES come out in push order per PID; check payloads byte-exact.
        for (track, pid, _) in m.tracks() {
            let ours: Vec<&&AvPacket> = accepted.iter().filter(|p| p.track == track).collect();
            let theirs: Vec<&Vec<u8>> = parsed.pes.iter().filter(|p| p.0 == pid.value()).map(|p| &p.1).collect();
            prop_assert_eq!(ours.len(), theirs.len());
            for (a, b) in ours.iter().zip(theirs) {
                let (pts, dts, _, payload) = split_pes(b);
                prop_assert_eq!(payload, &a.payload[..]);
                prop_assert_eq!((pts, dts), (a.pts.rem_euclid(1 << 33), a.dts.rem_euclid(1 << 33)));
            }
        }
    }
}
