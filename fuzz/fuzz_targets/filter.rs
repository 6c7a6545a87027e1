//! Random specs and packets through `TsFilter`.
//!
//! Layout: `flags program_hi program_lo n pids(2 bytes each, n % 8)` then
//! ops until the data ends, each a byte `op`:
//! - `op % 4 == 0`: a raw packet from the next 188 bytes (0xFF-padded); the
//!   sync byte is forced unless `op & 0x80`, and a PID outside a small set
//!   is replaced by one of it, so tables and kept PIDs are hit;
//! - `1`: a valid PAT section (version, section numbers and entries from
//!   the next bytes), packetized on PID 0;
//! - `2`: a valid PMT section, packetized on a PMT PID of the set;
//! - `3`: a chunk boundary, and with `op & 0x80` a fragment of `op & 0x7F`
//!   bytes pushed on its own.
//!
//! `flags`: bit 0 program filter, bit 1 si, bit 2 allow-list.
//!
//! Checks: no panic; output is whole packets with the sync byte; every
//! output buffer is a slice of the chunk just pushed, or a single rewritten
//! PAT packet whose CRC is valid, that lists at most the program asked for,
//! and whose continuity counter follows the previous one; passed packets
//! are never null packets under a program filter and always on a listed
//! PID under an allow-list; counters add up.
#![no_main]

use bytes::Bytes;
use crc::{CRC_32_MPEG_2, Crc};
use libfuzzer_sys::fuzz_target;
use uringest::ts::filter::{FilterSpec, TsFilter};
use uringest::ts::packet::Pid;
use uringest::ts::psi::{build_section, packetize, pat_body, pmt_body};
use uringest_fuzz::Reader;

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_MPEG_2);
fuzz_target!(|data: &[u8]| {
    let mut r = Reader(data);
    let flags = r.byte();
    let program = u16::from_be_bytes([r.byte(), r.byte()]).max(1);
    let n = usize::from(r.byte() % 8);
    let mut pids: Vec<Pid> = (0..n).map(|_| Pid::new(u16::from_be_bytes([r.byte(), r.byte()]))).collect();
    pids.sort();
    pids.dedup();
    let spec = FilterSpec {
        program: (flags & 1 != 0).then_some(program),
        si: flags & 2 != 0,
        pids: (flags & 4 != 0).then_some(pids),
    };

    // Chunks to push, each a list of bytes.
    let mut chunks: Vec<Vec<u8>> = vec![Vec::new()];
    let mut ccs = [0u8; 8192];
    while !r.0.is_empty() {
        let op = r.byte();
        let current = chunks.last_mut().expect("never empty");
        match op % 4 {
            0 => {
                current.extend_from_slice(&r.raw_packet(op & 0x80 == 0));
            }
            1 => {
                let version = r.byte();
                let (number, last) = (r.byte() % 3, r.byte() % 3);
                let entries: Vec<(u16, u16)> = (0..r.byte() % 5)
                    .map(|_| {
                        let number = match r.byte() % 4 {
                            0 => 0,
                            1 | 2 => program,
                            _ => program.wrapping_add(1),
                        };
                        (number, r.pid())
                    })
                    .collect();
                let mut s = build_section(0, 1, version, &pat_body(&entries));
                s[6] = number;
                s[7] = last;
                let body = s.len() - 4;
                let crc = CRC32.checksum(&s[..body]);
                s[body..].copy_from_slice(&crc.to_be_bytes());
                packetize(&s, Pid::PAT, &mut ccs[0]).iter().for_each(|p| current.extend_from_slice(p));
            }
            2 => {
                let (number, version, pid, pcr) = (u16::from(r.byte() % 4), r.byte(), r.pid(), r.pid());
                let streams: Vec<(u8, u16, &[u8])> = (0..r.byte() % 4).map(|_| (0x1B, r.pid(), &[][..])).collect();
                let number = if number == 0 { program } else { number };
                let s = build_section(2, number, version, &pmt_body(pcr, &streams));
                let pid = Pid::new(pid);
                packetize(&s, pid, &mut ccs[pid.index()]).iter().for_each(|p| current.extend_from_slice(p));
            }
            _ => {
                if op & 0x80 != 0 {
                    let take = r.0.len().min(usize::from(op & 0x7F));
                    chunks.push(r.0[..take].to_vec());
                    r.0 = &r.0[take..];
                }
                chunks.push(Vec::new());
            }
        }
    }

    let mut filter = TsFilter::new(spec.clone());
    let mut out = Vec::new();
    let mut pat_cc: Option<u8> = None;
    let mut out_packets = 0u64;
    for chunk in chunks {
        let chunk = Bytes::from(chunk);
        let before = out.len();
        filter.push(&chunk, &mut out);
        for b in &out[before..] {
            assert!(!b.is_empty() && b.len() % 188 == 0, "output of {} bytes", b.len());
            out_packets += (b.len() / 188) as u64;
            let inside = chunk.as_ptr_range().contains(&b.as_ptr());
            if inside {
                assert!(b.as_ptr() as usize + b.len() <= chunk.as_ptr_range().end as usize);
                for p in b.chunks(188) {
                    assert_eq!(p[0], 0x47, "passed a packet without sync");
                    let pid = Pid::new(u16::from(p[1] & 0x1F) << 8 | u16::from(p[2]));
                    if spec.program.is_some() {
                        assert!(pid != Pid::NULL && pid != Pid::PAT, "passed {pid} under a program filter");
                    }
                    if let Some(list) = &spec.pids {
                        assert!(list.contains(&pid), "passed unlisted {pid}");
                    }
                }
            } else {
                check_rewritten_pat(b, &spec, &mut pat_cc);
            }
        }
    }
    let c = filter.counters();
    assert_eq!(c.packets_in, c.packets_passed + c.packets_dropped, "{c:?}");
    assert_eq!(out_packets, c.packets_passed + c.pats_rewritten, "{c:?}");
    assert!(c.bad_packets + c.awaiting_tables + c.program_missing <= c.packets_dropped, "{c:?}");
});

fn check_rewritten_pat(b: &[u8], spec: &FilterSpec, pat_cc: &mut Option<u8>) {
    assert_eq!(b.len(), 188, "a copied buffer that is not one packet");
    assert_eq!(&b[..3], &[0x47, 0x40, 0x00], "a copied packet that is not a PAT start");
    let program = spec.program.expect("a rewritten PAT without a program filter");
    if let Some(list) = &spec.pids {
        assert!(list.contains(&Pid::PAT), "rewritten PAT passed without PID 0 listed");
    }
    let cc = b[3] & 0x0F;
    if let Some(prev) = *pat_cc {
        assert_eq!(cc, (prev + 1) & 0x0F, "rewritten PAT continuity");
    }
    *pat_cc = Some(cc);
    assert_eq!(b[4], 0, "pointer_field");
    let section = &b[5..];
    let len = 3 + (usize::from(section[1] & 0x0F) << 8 | usize::from(section[2]));
    assert!(len == 12 || len == 16, "rewritten PAT of {len} bytes");
    let (body, crc) = section[..len].split_at(len - 4);
    assert_eq!(CRC32.checksum(body).to_be_bytes(), crc, "rewritten PAT CRC");
    assert_eq!((section[0], section[6], section[7]), (0, 0, 0), "table_id / section numbers");
    if len == 16 {
        assert_eq!(u16::from_be_bytes([section[8], section[9]]), program, "rewritten PAT names another program");
    }
    assert!(section[len..].iter().all(|&x| x == 0xFF), "stuffing after the section");
}
