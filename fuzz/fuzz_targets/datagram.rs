//! A sequence of datagrams through one `DatagramClassifier`.
//!
//! Layout: `f record*`, where `f & 1` turns RTP stripping on and each record
//! is `len_hi len_lo mode bytes[len]` (a short last record takes what is
//! left). `mode & 1`: write 0x47 at every sync position of the datagram, at
//! stride 188/192/204 from `(mode >> 1) & 3`, starting at the RTP payload
//! when the bytes parse as RTP, so the fuzzer reaches the TS paths without
//! guessing sync bytes; `mode & 0x80` then clears the sync byte of packet
//! `(mode >> 3) & 15` again.
//!
//! Checks after every datagram: the verdict's module invariant (ranges in
//! bounds, whole packets with sync bytes, payload + bad sync + odd tail +
//! RTP header and padding == length), each counter moving by exactly what
//! the verdict says, at most one RTP sequence counter moving, and for
//! 192/204-byte runs `normalise_to_188` copying exactly the sync-led
//! 188-byte packets.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uringest::ts::datagram::{Datagram, DatagramClassifier, DatagramCounters};
use uringest::ts::framing::PacketSize;
use uringest::ts::rtp;

fn fix_sync(d: &mut [u8], mode: u8) {
    let stride = [188, 192, 204, 188][usize::from((mode >> 1) & 3)];
    let prefix = if stride == 192 { 4 } else { 0 };
    let start = rtp::parse(d).map_or(0, |h| h.payload.start);
    let mut at = start + prefix;
    let mut k = 0;
    while at < d.len() {
        if mode & 0x80 == 0 || k != (mode >> 3) & 15 {
            d[at] = 0x47;
        } else {
            d[at] = 0;
        }
        at += stride;
        k += 1;
    }
}

fn check(d: &[u8], v: &Datagram, before: &DatagramCounters, after: &DatagramCounters, rtp_on: bool) {
    assert_eq!(after.datagrams, before.datagrams + 1, "datagrams");
    assert_eq!(after.bytes, before.bytes + d.len() as u64, "bytes");
    assert_eq!(after.normalised_packets, before.normalised_packets);
    let seq_moves = [
        after.rtp_seq_gaps != before.rtp_seq_gaps,
        after.rtp_reordered != before.rtp_reordered,
        after.rtp_duplicates != before.rtp_duplicates,
        after.rtp_resyncs != before.rtp_resyncs,
    ];
    assert!(seq_moves.iter().filter(|&&m| m).count() <= 1, "more than one RTP sequence counter moved");
    assert!(after.rtp_reordered <= before.rtp_reordered + 1);
    assert!(after.rtp_duplicates <= before.rtp_duplicates + 1);
    assert!(after.rtp_resyncs <= before.rtp_resyncs + 1);
    match v {
        Datagram::NotTs(_) => {
            assert_eq!(after.non_ts_dropped, before.non_ts_dropped + 1, "non_ts_dropped");
            assert_eq!(after.ts_packets, before.ts_packets);
            assert_eq!(after.rtp_datagrams, before.rtp_datagrams);
            assert!(!seq_moves.contains(&true), "a dropped datagram moved the RTP sequence");
        }
        Datagram::Ts { payload, packet_size, packets, odd_tail_bytes, bad_sync_bytes, rtp } => {
            let stride = packet_size.stride();
            let h = rtp.as_ref().map_or(0..d.len(), |h| h.payload.clone());
            assert!(rtp.is_none() || rtp_on, "RTP stripped with rtp=0");
            assert!(*packets >= 1, "TS verdict without packets");
            assert!(h.start <= h.end && h.end <= d.len(), "RTP payload out of bounds");
            assert_eq!(payload.start, h.start, "payload does not start at the RTP payload");
            assert_eq!(payload.len(), packets * stride, "payload is not whole packets");
            assert_eq!(payload.end + bad_sync_bytes + odd_tail_bytes, h.end, "bytes unaccounted");
            assert!(*odd_tail_bytes < stride);
            assert_eq!(bad_sync_bytes % stride, 0);
            for k in 0..*packets {
                assert_eq!(d[payload.start + k * stride + packet_size.prefix()], 0x47, "packet {k} without sync");
            }
            if *bad_sync_bytes > 0 {
                assert_ne!(d[payload.end + packet_size.prefix()], 0x47, "cut at a sync byte");
            }
            if let Some(r) = rtp {
                assert_eq!(r.payload.end + r.padding_len, d.len(), "padding");
                assert_eq!(after.rtp_datagrams, before.rtp_datagrams + 1);
            } else {
                assert_eq!(after.rtp_datagrams, before.rtp_datagrams);
                assert!(!seq_moves.contains(&true), "a plain datagram moved the RTP sequence");
            }
            assert_eq!(after.non_ts_dropped, before.non_ts_dropped);
            assert_eq!(after.ts_packets, before.ts_packets + *packets as u64);
            assert_eq!(after.odd_size, before.odd_size + u64::from(*odd_tail_bytes > 0));
            assert_eq!(after.odd_tail_bytes, before.odd_tail_bytes + *odd_tail_bytes as u64);
            assert_eq!(after.bad_sync, before.bad_sync + u64::from(*bad_sync_bytes > 0));
            assert_eq!(after.bad_sync_bytes, before.bad_sync_bytes + *bad_sync_bytes as u64);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else { return };
    let rtp_on = flags & 1 != 0;
    let mut classifier = DatagramClassifier::new(rtp_on);
    let mut out = vec![0u8; 65536];
    let mut count = 0u64;
    while let [hi, lo, mode, tail @ ..] = rest {
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        let (bytes, next) = tail.split_at(len);
        rest = next;
        let mut d = bytes.to_vec();
        if mode & 1 != 0 {
            fix_sync(&mut d, *mode);
        }
        let before = classifier.counters().clone();
        let v = classifier.classify(&d);
        let after = classifier.counters().clone();
        check(&d, &v, &before, &after, rtp_on);
        count += 1;
        if let Datagram::Ts { payload, packet_size, packets, .. } = &v {
            let run = &d[payload.clone()];
            // A short destination on odd datagrams exercises the partial copy.
            let room = if count % 2 == 0 { out.len() } else { 188 * (packets / 2) };
            let copied = classifier.normalise_to_188(run, *packet_size, &mut out[..room]);
            if *packet_size == PacketSize::Ts188 {
                assert_eq!(copied, 0, "a 188-byte run was copied");
            } else {
                assert_eq!(copied, (*packets).min(room / 188), "normalise copied the wrong count");
                for (k, p) in out[..copied * 188].chunks_exact(188).enumerate() {
                    let src = k * packet_size.stride() + packet_size.prefix();
                    assert_eq!(p, &run[src..src + 188], "normalised packet {k} differs");
                }
            }
            let n = classifier.counters().normalised_packets;
            assert_eq!(n, after.normalised_packets + copied as u64, "normalised_packets");
        }
    }
    let c = classifier.counters();
    assert_eq!(c.datagrams, count);
    assert!(c.rtp_datagrams + c.non_ts_dropped <= c.datagrams);
    assert!(c.rtp_malformed <= c.non_ts_dropped);
    assert!(c.odd_size + c.non_ts_dropped <= c.datagrams);
    assert!(c.bad_sync + c.non_ts_dropped <= c.datagrams);
    assert!(c.rtp_reordered + c.rtp_duplicates + c.rtp_resyncs <= c.rtp_datagrams);
    assert!(rtp_on || c.rtp_datagrams == 0);
});
