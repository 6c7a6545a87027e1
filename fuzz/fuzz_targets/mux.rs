//! Arbitrary AV packets through `Muxer`.
//!
//! Layout: `max_tracks pcr_interval psi_interval delay` (one byte each,
//! scaled), then packets until the data ends, each `track codec flags
//! len_hi len_lo dts(8 bytes) [pts(8 bytes) | shift(2 bytes)]` followed by
//! `len` payload bytes taken from the input (so Opus and MPEG audio headers
//! are reached), in batches split by `flags & 0x80`.
//!
//! Timestamps take any i64 (huge, negative, jumping both ways).
//!
//! Checks: no panic; output is whole 188-byte packets with the sync byte;
//! counters add up (muxed + refused = pushed, TS packets = bytes / 188);
//! the continuity counter runs on each PID (payload packets +1, others
//! repeat); each PES reassembles to exactly its AV packet's payload, on its
//! track's PID, with PTS/DTS modulo 2^33.
#![no_main]

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use uringest::ts::av::{AvPacket, Codec};
use uringest::ts::mux::{MuxConfig, Muxer};
use uringest::ts::packet::TsPacket;
use uringest::ts::timestamp::read_timestamp;
use uringest_fuzz::Reader;

const CODECS: [Codec; 7] =
    [Codec::H264, Codec::H265, Codec::Aac, Codec::MpegAudio, Codec::Ac3, Codec::Eac3, Codec::Opus];

fn i64_of(r: &mut Reader<'_>) -> i64 {
    i64::from_be_bytes(std::array::from_fn(|_| r.byte()))
}

/// A PES timestamp field; the muxer must set its marker bits.
fn read_ts(b: &[u8]) -> i64 {
    read_timestamp(&b[..5]).expect("PES timestamp with marker bits") as i64
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let config = MuxConfig {
        max_tracks: u16::from(r.byte() % 20) + 1,
        pcr_interval: i64::from(r.byte()) * 100 + 1,
        psi_interval: i64::from(r.byte()) * 200 + 1,
        mux_delay: i64::from(r.byte()) * 1000,
        ..MuxConfig::default()
    };
    let mut mux = Muxer::new(config).expect("valid config");
    let mut out = BytesMut::new();
    let mut pushed: Vec<AvPacket> = Vec::new();
    let mut batch: Vec<AvPacket> = Vec::new();
    while !r.0.is_empty() {
        let track = u16::from(r.byte() % 24);
        let codec = CODECS[usize::from(r.byte() % 7)];
        let flags = r.byte();
        let len = usize::from(u16::from_be_bytes([r.byte(), r.byte()])) % 4096;
        let dts = i64_of(&mut r);
        let pts = if flags & 4 != 0 {
            i64_of(&mut r)
        } else {
            dts.saturating_add(i64::from(i16::from_be_bytes([r.byte(), r.byte()])))
        };
        let take = len.min(r.0.len());
        let payload = Bytes::copy_from_slice(&r.0[..take]);
        r.0 = &r.0[take..];
        batch.push(AvPacket {
            track,
            codec,
            payload,
            pts,
            dts,
            keyframe: flags & 1 != 0,
            discontinuity: flags & 2 != 0,
        });
        if flags & 0x80 != 0 {
            let before = out.len();
            let n = mux.push_all(&batch, &mut out);
            assert_eq!(n * 188, out.len() - before, "push_all's count");
            pushed.append(&mut batch);
        }
    }
    mux.push_all(&batch, &mut out);
    pushed.append(&mut batch);

    assert_eq!(out.len() % 188, 0, "partial packet");
    let c = mux.counters();
    assert_eq!(c.packets + c.refused, pushed.len() as u64);
    assert_eq!(c.ts_packets * 188, out.len() as u64);
    let pids: HashMap<u16, u16> = mux.tracks().map(|(t, pid, _)| (t, pid.value())).collect();

    let mut last_cc: HashMap<u16, u8> = HashMap::new();
    let mut pes: HashMap<u16, Vec<Vec<u8>>> = HashMap::new();
    for chunk in out.chunks_exact(188) {
        let p = TsPacket::from_slice(chunk).expect("188 bytes");
        assert!(p.has_sync(), "sync byte");
        let pid = p.pid().value();
        let cc = p.cc().value();
        if let Some(&prev) = last_cc.get(&pid) {
            let want = if p.has_payload() { (prev + 1) & 15 } else { prev };
            assert_eq!(cc, want, "CC on PID {pid:#x}");
        }
        last_cc.insert(pid, cc);
        if pid == 0 || pid == config.pmt_pid {
            continue;
        }
        if let Some(payload) = p.payload() {
            let list = pes.entry(pid).or_default();
            if p.payload_unit_start() {
                list.push(Vec::new());
            }
            list.last_mut().expect("PES starts with PUSI").extend_from_slice(payload);
        }
    }
    let mut next: HashMap<u16, usize> = HashMap::new();
    for a in &pushed {
        let Some(&pid) = pids.get(&a.track) else { continue };
        let i = next.entry(pid).or_default();
        let b = &pes[&pid][*i];
        *i += 1;
        assert_eq!(&b[..3], &[0, 0, 1]);
        let pts = read_ts(&b[9..]);
        let dts = if b[7] & 0x40 != 0 { read_ts(&b[14..]) } else { pts };
        assert_eq!((pts, dts), (a.pts.rem_euclid(1 << 33), a.dts.rem_euclid(1 << 33)));
        assert_eq!(&b[9 + usize::from(b[8])..], &a.payload[..], "payload on PID {pid:#x}");
    }
    for (pid, list) in &pes {
        assert_eq!(next.get(pid).copied().unwrap_or(0), list.len(), "extra PES on {pid:#x}");
    }
});
