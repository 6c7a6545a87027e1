//! Random packets, tables and switches through `Splicer`.
//!
//! Layout: ops until the data ends, each a byte `op`:
//! - `op % 4 == 0`: a raw packet from the next 188 bytes (0xFF-padded); the
//!   sync byte is forced unless `op & 0x80`, and a PID outside a small set
//!   is replaced by one of it, so tables and streams are hit;
//! - `1`: a valid PAT section (program numbers and PMT PIDs from the next
//!   bytes), packetized on PID 0;
//! - `2`: a valid PMT section, packetized on a PMT PID of the set;
//! - `3`: a chunk boundary; with `op & 0x40` a switch before the next
//!   chunk; with `op & 0x80` a fragment of `op & 0x3F` bytes pushed alone.
//!
//! Checks: no panic; output is whole packets with the sync byte; after
//! each switch the first packet of every PID (null aside) carries the
//! discontinuity_indicator and its CC continues that PID's last output CC
//! (PMT streams are H.264, so video PIDs wait for keyframes after a switch;
//! a raw packet with `op & 0x40` becomes an IDR PES start some of the
//! time); counters add up.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use uringest::node::splice::Splicer;
use uringest::ts::packet::Pid;
use uringest::ts::psi::{build_section, packetize, pat_body, pmt_body};
use uringest_fuzz::Reader;

/// A PES header, then an H.264 access unit delimiter and an IDR slice.
const IDR_PES: &[u8] = &[0, 0, 1, 0xE0, 0, 0, 0x80, 0, 0, 0, 0, 0, 1, 0x09, 0xF0, 0, 0, 1, 0x65, 0x88];

/// One chunk to push, and whether a switch comes before it.
struct Step {
    switch: bool,
    bytes: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let mut steps = vec![Step { switch: false, bytes: Vec::new() }];
    let mut ccs = [0u8; 8192];
    while !r.0.is_empty() {
        let op = r.byte();
        let current = &mut steps.last_mut().expect("never empty").bytes;
        match op % 4 {
            0 => {
                let mut p = r.raw_packet(op & 0x80 == 0);
                if op & 0x40 != 0 {
                    // A PES start with an IDR first, so waits end by a keyframe too.
                    p[1] |= 0x40;
                    p[3] = 0x10 | (p[3] & 0x0F);
                    p[4..4 + IDR_PES.len()].copy_from_slice(IDR_PES);
                }
                current.extend_from_slice(&p);
            }
            1 => {
                let version = r.byte();
                let entries: Vec<(u16, u16)> = (0..r.byte() % 4).map(|_| (u16::from(r.byte() % 3), r.pid())).collect();
                let s = build_section(0, 1, version, &pat_body(&entries));
                packetize(&s, Pid::PAT, &mut ccs[0]).iter().for_each(|p| current.extend_from_slice(p));
            }
            2 => {
                let (number, version, pid, pcr) = (u16::from(r.byte() % 3), r.byte(), r.pid(), r.pid());
                let streams: Vec<(u8, u16, &[u8])> = (0..r.byte() % 4).map(|_| (0x1B, r.pid(), &[][..])).collect();
                let s = build_section(2, number, version, &pmt_body(pcr, &streams));
                let pid = Pid::new(pid);
                packetize(&s, pid, &mut ccs[pid.index()]).iter().for_each(|p| current.extend_from_slice(p));
            }
            _ => {
                if op & 0x80 != 0 {
                    let take = r.0.len().min(usize::from(op & 0x3F));
                    steps.push(Step { switch: false, bytes: r.0[..take].to_vec() });
                    r.0 = &r.0[take..];
                }
                steps.push(Step { switch: op & 0x40 != 0, bytes: Vec::new() });
            }
        }
    }

    let mut splicer = Splicer::new();
    let mut out = Vec::new();
    let mut last_cc: Vec<Option<u8>> = vec![None; Pid::COUNT];
    let mut pending = vec![false; Pid::COUNT];
    let mut out_packets = 0u64;
    for step in steps {
        if step.switch {
            splicer.switch();
            pending.iter_mut().for_each(|p| *p = true);
        }
        out.clear();
        splicer.push(&Bytes::from(step.bytes), &mut out);
        for b in &out {
            assert!(!b.is_empty() && b.len() % 188 == 0, "output of {} bytes", b.len());
            for p in b.chunks(188) {
                out_packets += 1;
                assert_eq!(p[0], 0x47, "output packet without sync");
                let pid = usize::from(p[1] & 0x1F) << 8 | usize::from(p[2]);
                if pid == 0x1FFF {
                    continue;
                }
                let cc = p[3] & 0x0F;
                if pending[pid] {
                    pending[pid] = false;
                    assert!(p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x80 != 0, "first packet of {pid:#x} not flagged");
                    if let Some(last) = last_cc[pid] {
                        let want = if p[3] & 0x10 != 0 { (last + 1) & 0x0F } else { last };
                        assert_eq!(cc, want, "CC of {pid:#x} does not continue across the switch");
                    }
                }
                last_cc[pid] = Some(cc);
            }
        }
    }
    let c = splicer.counters();
    assert_eq!(c.packets_out, out_packets, "{c:?}");
    let dropped = c.bad_packets + c.held_back + c.pes_tails + c.awaiting_key + c.key_held;
    assert_eq!(c.packets_in, dropped + c.table_packets_in + c.passed, "{c:?}");
    assert_eq!(c.packets_out, c.passed + c.af_inserted + c.table_packets_out, "{c:?}");
    assert!(c.rewritten <= c.passed, "{c:?}");
});
