//! PAT (and optionally PMT) round trip: sections built from fuzzer-chosen
//! entries, packetized, fed back; the tables read back must be exactly what
//! was sent. Checks the reassembler, multi-section PAT collection and table
//! parsing end to end, once through `Psi::push` directly and once through
//! the whole `Analyzer` on every kernel.
//!
//! Layout: `t0 t1 v k n entries[4*n] pmt...`
//! - `t0 t1`: transport_stream_id; `v & 0x1F`: version_number, `v & 0x20`:
//!   split the PAT into `1 + (k & 3)` sections (section_number 0..), `v & 0x40`:
//!   send the sections in reverse order, `v & 0x80`: send everything twice.
//! - `k & 4`: also send a PMT for the first program.
//! - entries: program_number (2 bytes), PID (2 bytes, top 3 bits reserved);
//!   split evenly over the sections, at most 253 per section (1024 bytes).
//! - pmt: PCR PID (2 bytes), then streams `stream_type pid(2) len` + `len & 31`
//!   descriptor bytes, as many as fit a 1024-byte section.
//!
//! Expected PAT: entries in section_number order; program 0 sets the network
//! PID; duplicates, of program 0 as of any other number, keep the first.
#![no_main]

use std::collections::BTreeMap;

use crc::{CRC_32_MPEG_2, Crc};
use libfuzzer_sys::fuzz_target;
use uringest::ts::analyze::Analyzer;
use uringest::ts::codec;
use uringest::ts::packet::{Pid, TsPacket};
use uringest::ts::psi::{Psi, build_section, packetize};
use uringest::ts::stats::PidTable;

const CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_MPEG_2);

/// A long-form section with explicit section numbers.
fn section(table_id: u8, extension: u16, version: u8, number: u8, last: u8, body: &[u8]) -> Vec<u8> {
    let len = 5 + body.len() + 4;
    let mut s = vec![table_id, 0xB0 | ((len >> 8) as u8 & 0x0F), len as u8];
    s.extend_from_slice(&extension.to_be_bytes());
    s.extend_from_slice(&[0xC1 | (version & 0x1F) << 1, number, last]);
    s.extend_from_slice(body);
    s.extend_from_slice(&CRC32.checksum(&s).to_be_bytes());
    s
}

struct Stream {
    stream_type: u8,
    pid: u16,
    descriptors: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let [t0, t1, v, k, n, rest @ ..] = data else { return };
    let tsid = u16::from_be_bytes([*t0, *t1]);
    let version = v & 0x1F;
    let sections_n = if v & 0x20 != 0 { 1 + usize::from(k & 3) } else { 1 };
    let n = usize::from(*n).min(rest.len() / 4);
    let (entry_bytes, mut pmt_bytes) = rest.split_at(n * 4);
    let entries: Vec<(u16, u16)> =
        entry_bytes.chunks_exact(4).map(|e| (u16::from_be_bytes([e[0], e[1]]), u16::from_be_bytes([e[2], e[3]]))).collect();

    // Sections and the expected PAT.
    let mut sections = Vec::new();
    let mut programs: Vec<(u16, Pid)> = Vec::new();
    let mut network_pid = None;
    for i in 0..sections_n {
        let group = &entries[i * n / sections_n..(i + 1) * n / sections_n];
        let group = &group[..group.len().min(253)];
        let body: Vec<u8> = group.iter().flat_map(|&(num, pid)| [num.to_be_bytes(), pid.to_be_bytes()].concat()).collect();
        let s = section(0, tsid, version, i as u8, (sections_n - 1) as u8, &body);
        if sections_n == 1 {
            assert_eq!(build_section(0, tsid, version, &body), s, "build_section differs from the reference layout");
        }
        assert!(s.len() <= 1024);
        sections.push(s);
        for &(num, pid) in group {
            if num == 0 {
                network_pid.get_or_insert(Pid::new(pid));
            } else if !programs.iter().any(|p| p.0 == num) {
                programs.push((num, Pid::new(pid)));
            }
        }
    }
    if v & 0x40 != 0 {
        sections.reverse();
    }

    // Packets: the PAT (once or twice), then the PMT.
    let mut cc: BTreeMap<u16, u8> = BTreeMap::new();
    let mut packets: Vec<[u8; 188]> = Vec::new();
    for _ in 0..if v & 0x80 != 0 { 2 } else { 1 } {
        for s in &sections {
            packets.extend(packetize(s, Pid::PAT, cc.entry(0).or_default()));
        }
    }
    let mut pmt_expected = None;
    if k & 4 != 0
        && let Some(&(number, pmt_pid)) = programs.first()
        && let Some((pcr, tail)) = pmt_bytes.split_first_chunk::<2>()
    {
        pmt_bytes = tail;
        let pcr_pid = u16::from_be_bytes(*pcr);
        let mut body = vec![0xE0 | (pcr_pid >> 8) as u8, pcr_pid as u8, 0xF0, 0];
        let mut streams = Vec::new();
        while let Some((&[st, hi, lo, len], tail)) = pmt_bytes.split_first_chunk::<4>() {
            let len = usize::from(len & 31).min(tail.len());
            if body.len() + 5 + len > 1012 {
                break;
            }
            let (desc, tail) = tail.split_at(len);
            pmt_bytes = tail;
            let pid = u16::from_be_bytes([hi, lo]);
            body.extend_from_slice(&[st, 0xE0 | (pid >> 8) as u8, pid as u8, 0xF0, len as u8]);
            body.extend_from_slice(desc);
            streams.push(Stream { stream_type: st, pid: pid & 0x1FFF, descriptors: desc.to_vec() });
        }
        let pmt = build_section(2, number, version, &body);
        packets.extend(packetize(&pmt, pmt_pid, cc.entry(pmt_pid.value()).or_default()));
        pmt_expected = Some((number, pmt_pid, Pid::new(pcr_pid), streams));
    }

    // Directly through Psi, the way the analyzer feeds it.
    let mut table = PidTable::default();
    let mut psi = Psi::new(&mut table);
    for (i, p) in packets.iter().enumerate() {
        let pkt = TsPacket::new(p);
        table.account(&pkt, i as u64);
        if uringest_fuzz::is_wanted(&table, pkt.pid()) {
            let before = psi.counters();
            psi.push(&pkt, &mut table);
            uringest_fuzz::check_counters_monotone(before, psi.counters());
            uringest_fuzz::check_psi(&psi, &table);
        }
    }
    let counters = psi.counters();
    assert_eq!((counters.crc_errors, counters.malformed_sections), (0, 0), "valid sections rejected: {counters:?}");
    assert_eq!(counters.pat_changes, 0, "one PAT version counted as a change");
    let pat = psi.pat().expect("PAT not assembled");
    assert_eq!(pat.transport_stream_id, tsid);
    assert_eq!(pat.version, version);
    assert_eq!(pat.programs, programs, "PAT programs differ");
    assert_eq!(pat.network_pid, network_pid, "network PID differs");
    if let Some((number, pmt_pid, pcr_pid, streams)) = &pmt_expected {
        let (n, pid, pmt) = psi.programs().next().expect("first program");
        assert_eq!((n, pid), (*number, *pmt_pid));
        let pmt = pmt.expect("PMT not attached to its program");
        assert_eq!(pmt.version, version);
        assert_eq!(pmt.pcr_pid, *pcr_pid, "PCR PID differs");
        assert!(pmt.descriptors.is_empty());
        assert_eq!(pmt.streams.len(), streams.len(), "stream count differs");
        for (got, want) in pmt.streams.iter().zip(streams) {
            assert_eq!(got.pid.value(), want.pid);
            assert_eq!(got.stream_type, want.stream_type);
            assert_eq!(got.descriptors, want.descriptors);
            assert_eq!(got.codec, codec::from_pmt(want.stream_type, &want.descriptors, None));
            assert_eq!(got.language, codec::language(&want.descriptors));
        }
    }

    // The same packets as a file, through the analyzer on every kernel.
    let buf: Vec<u8> = packets.concat();
    uringest_fuzz::analyze_all(&buf, None);
    let mut analyzer = Analyzer::new();
    analyzer.analyze(&buf, None);
    let r = analyzer.report("fuzz");
    assert_eq!(r.ts_packets, packets.len() as u64);
    assert_eq!(r.packet_size, Some(188));
    let e = &r.errors;
    assert_eq!(
        (e.sync_losses, e.skipped_bytes, e.truncated_bytes, e.cc_errors, e.psi_crc_errors, e.psi_malformed_sections),
        (0, 0, 0, 0, 0, 0),
        "errors on a clean stream: {e:?}"
    );
    let listed: Vec<(u16, Pid)> = r.programs.iter().map(|p| (p.number, Pid::new(p.pmt_pid))).collect();
    assert_eq!(listed, programs, "analyzer programs differ");
    if let Some((_, _, pcr_pid, streams)) = &pmt_expected {
        let first = &r.programs[0];
        assert_eq!(first.pcr_pid, Some(pcr_pid.value()));
        let got: Vec<(u16, u8)> = first.streams.iter().map(|s| (s.pid, s.stream_type)).collect();
        let want: Vec<(u16, u8)> = streams.iter().map(|s| (s.pid, s.stream_type)).collect();
        assert_eq!(got, want, "analyzer streams differ");
    }
});
