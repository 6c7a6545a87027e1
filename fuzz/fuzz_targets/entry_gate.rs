//! Random packets and random resync / cut calls through `EntryGate`.
//!
//! The input is a list of operations. Byte 0 picks the mode (bit 0: Any).
//! Then each operation is one byte: low 2 bits pick what to do, the rest a
//! count.
//! - 0: push a chunk of `count % 8 + 1` packets taken from the input, byte 0
//!   forced to 0x47 unless the packet's byte 3 is 0xEE, the PID folded onto
//!   {0, 0x100, 0x101, 0x1000, 0x1FFF} (low 3 bits of byte 1);
//! - 1: push a valid PAT (program 1 on 0x1000) and PMT whose stream types
//!   come from the next two bytes (video 0x1B, 0x24, 0x02 and others reached),
//!   or a chunk with `count` stray bytes after the packets when bit 7 is set;
//! - 2: `resync(count)`; 3: `request_cut()`.
//!
//! Checks after each step: data pieces are non-empty whole packets with a
//! sync byte; packets in = passed + skipped + held; packets out = passed +
//! PSI copies; cuts counted = cuts emitted; no counter decreases. With Any,
//! the data out is a prefix of the valid packets in, in order.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use uringest::output::entry::{EntryCounters, EntryGate, Piece, StartMode};
use uringest::ts::packet::Pid;
use uringest::ts::psi::{build_section, packetize};

const PIDS: [u16; 8] = [0x0000, 0x0100, 0x0101, 0x1000, 0x1FFF, 0x0100, 0x0101, 0x0100];

fn tables(types: [u8; 2], pat_cc: &mut u8, pmt_cc: &mut u8) -> Vec<u8> {
    let pat = build_section(0x00, 1, 0, &[0, 1, 0xF0, 0x00]);
    let mut body = vec![0xE1, 0x00, 0xF0, 0x00];
    for (t, pid) in types.iter().zip([0x100u16, 0x101]) {
        body.extend_from_slice(&[*t, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, 0x00]);
    }
    let pmt = build_section(0x02, 1, 0, &body);
    let mut out = Vec::new();
    for p in packetize(&pat, Pid::new(0), pat_cc).iter().chain(&packetize(&pmt, Pid::new(0x1000), pmt_cc)) {
        out.extend_from_slice(p);
    }
    out
}

fn check_counters(before: &EntryCounters, c: &EntryCounters) {
    assert_eq!(
        c.packets_in,
        c.packets_passed + c.skipped_before_entry + c.skipped_mid_unit + c.held_packets,
        "packets in do not add up: {c:?}"
    );
    let pairs = [
        (before.packets_in, c.packets_in),
        (before.packets_passed, c.packets_passed),
        (before.psi_copies, c.psi_copies),
        (before.skipped_before_entry, c.skipped_before_entry),
        (before.skipped_mid_unit, c.skipped_mid_unit),
        (before.entries, c.entries),
        (before.entry_timeouts, c.entry_timeouts),
        (before.resyncs, c.resyncs),
        (before.cuts, c.cuts),
        (before.bad_packets, c.bad_packets),
        (before.partial_bytes, c.partial_bytes),
    ];
    for (a, b) in pairs {
        assert!(b >= a, "a counter went down: {before:?} -> {c:?}");
    }
    assert!(c.entry_timeouts <= c.entries, "{c:?}");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let mode = if mode & 1 == 1 { StartMode::Any } else { StartMode::Clean };
    let mut gate = EntryGate::new(mode);
    let (mut pat_cc, mut pmt_cc) = (0u8, 0u8);
    let mut valid_in: Vec<u8> = Vec::new();
    let mut data_out: Vec<u8> = Vec::new();
    let mut cuts = 0u64;
    let mut steps = 0;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        steps += 1;
        if steps > 4096 {
            break;
        }
        let before = gate.counters();
        let count = op >> 2;
        let mut out = Vec::new();
        match op & 3 {
            0 => {
                let take = (usize::from(count % 8) + 1) * 188;
                let Some((raw, tail)) = rest.split_at_checked(take.min(rest.len() / 188 * 188)) else { break };
                rest = tail;
                if raw.is_empty() {
                    break;
                }
                let mut chunk = raw.to_vec();
                for p in chunk.chunks_exact_mut(188) {
                    if p[3] != 0xEE {
                        p[0] = 0x47;
                    }
                    let pid = PIDS[usize::from(p[1] & 7)];
                    p[1] = (p[1] & 0xE0) | (pid >> 8) as u8;
                    p[2] = pid as u8;
                    if p[0] == 0x47 {
                        valid_in.extend_from_slice(p);
                    }
                }
                gate.push(&Bytes::from(chunk), &mut out);
            }
            1 if count & 0x20 != 0 => {
                let mut chunk = tables([0x1B, 0x0F], &mut pat_cc, &mut pmt_cc);
                valid_in.extend_from_slice(&chunk);
                chunk.extend(std::iter::repeat_n(0x47, usize::from(count & 0x1F)));
                gate.push(&Bytes::from(chunk), &mut out);
            }
            1 => {
                let Some((types, tail)) = rest.split_first_chunk::<2>() else { break };
                rest = tail;
                let chunk = tables(*types, &mut pat_cc, &mut pmt_cc);
                valid_in.extend_from_slice(&chunk);
                gate.push(&Bytes::from(chunk), &mut out);
            }
            2 => gate.resync(u64::from(count)),
            _ => gate.request_cut(),
        }
        let c = gate.counters();
        check_counters(&before, &c);
        let mut packets_out = 0u64;
        for piece in &out {
            match piece {
                Piece::Cut => cuts += 1,
                Piece::Data(b) => {
                    assert!(!b.is_empty() && b.len() % 188 == 0, "a data piece of {} bytes", b.len());
                    for p in b.chunks_exact(188) {
                        assert_eq!(p[0], 0x47, "a packet without sync byte went out");
                    }
                    packets_out += (b.len() / 188) as u64;
                    data_out.extend_from_slice(b);
                }
            }
        }
        assert_eq!(cuts, c.cuts, "cuts emitted != cuts counted");
        let passed = (c.packets_passed - before.packets_passed) + (c.psi_copies - before.psi_copies);
        assert_eq!(packets_out, passed, "packets out != passed + copies");
        if mode == StartMode::Any {
            assert_eq!(c.psi_copies, 0);
            assert!(valid_in.starts_with(&data_out), "Any mode changed or reordered packets");
        }
    }
});
