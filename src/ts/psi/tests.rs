//! PSI reassembly and table state.

use super::*;

fn feed(psi: &mut Psi, table: &mut PidTable, packets: &[[u8; 188]]) {
    for p in packets {
        let pkt = TsPacket::new(p);
        if table.get(pkt.pid()).is_some_and(|e| e.wanted) {
            psi.push(&pkt, table);
        }
    }
}

#[test]
fn pat_then_pmts_of_three_programs() {
    let mut table = PidTable::default();
    let mut psi = Psi::new(&mut table);
    let mut cc = 0;
    let pat = build_section(0, 7, 0, &pat_body(&[(0, 0x10), (1, 0x1000), (2, 0x1001), (3, 0x1002)]));
    feed(&mut psi, &mut table, &packetize(&pat, Pid::PAT, &mut cc));
    for (i, pid) in [0x1000u16, 0x1001, 0x1002].into_iter().enumerate() {
        let body = pmt_body(
            0x100 + i as u16,
            &[(0x1B, 0x100 + i as u16, &[]), (0x0F, 0x200 + i as u16, &[0x0A, 4, b'e', b'n', b'g', 0])],
        );
        let pmt = build_section(2, i as u16 + 1, 0, &body);
        feed(&mut psi, &mut table, &packetize(&pmt, Pid::new(pid), &mut 0));
    }
    let programs: Vec<_> = psi.programs().collect();
    assert_eq!(programs.len(), 3);
    assert_eq!(psi.pat().unwrap().network_pid, Some(Pid::new(0x10)));
    let pmt = programs[2].2.unwrap();
    assert_eq!(pmt.pcr_pid, Pid::new(0x102));
    assert_eq!(pmt.streams[0].codec, Some("h264"));
    assert_eq!(pmt.streams[1].codec, Some("aac"));
    assert_eq!(pmt.streams[1].language.as_deref(), Some("eng"));
}

#[test]
fn section_spanning_packets_and_bad_crc() {
    let mut table = PidTable::default();
    let mut psi = Psi::new(&mut table);
    let pat = build_section(0, 1, 0, &pat_body(&[(1, 0x1000)]));
    feed(&mut psi, &mut table, &packetize(&pat, Pid::PAT, &mut 0));
    // A PMT with 60 streams spans several packets.
    let streams: Vec<(u8, u16, &[u8])> = (0..60).map(|i| (0x0F, 0x200 + i, &[][..])).collect();
    let pmt = build_section(2, 1, 3, &pmt_body(0x200, &streams));
    assert!(pmt.len() > 184);
    let packets = packetize(&pmt, Pid::new(0x1000), &mut 0);
    let mut corrupt = packets.clone();
    corrupt[1][20] ^= 0xFF;
    feed(&mut psi, &mut table, &corrupt);
    assert_eq!(psi.counters().crc_errors, 1);
    assert!(psi.programs().next().unwrap().2.is_none());
    feed(&mut psi, &mut table, &packets);
    assert_eq!(psi.programs().next().unwrap().2.unwrap().streams.len(), 60);
}

#[test]
fn version_change_replaces_program_list() {
    let mut table = PidTable::default();
    let mut psi = Psi::new(&mut table);
    let v0 = build_section(0, 1, 0, &pat_body(&[(1, 0x1000)]));
    let v1 = build_section(0, 1, 1, &pat_body(&[(5, 0x1005)]));
    let mut cc = 0;
    feed(&mut psi, &mut table, &packetize(&v0, Pid::PAT, &mut cc));
    feed(&mut psi, &mut table, &packetize(&v0, Pid::PAT, &mut cc));
    feed(&mut psi, &mut table, &packetize(&v1, Pid::PAT, &mut cc));
    assert_eq!(psi.pat().unwrap().programs, vec![(5, Pid::new(0x1005))]);
    assert_eq!(psi.counters().pat_changes, 1);
    assert!(!table.get(Pid::new(0x1000)).unwrap().wanted);
    assert!(table.get(Pid::new(0x1005)).unwrap().wanted);
}

#[test]
fn two_sections_in_one_packet_with_pointer_field() {
    let mut asm = SectionAssembler::default();
    let a = build_section(0x42, 1, 0, &[1, 2, 3]);
    let b = build_section(0x42, 2, 0, &[4, 5]);
    let mut p = [0xFFu8; 188];
    p[..5].copy_from_slice(&[0x47, 0x40, 0x11, 0x10, 0]);
    p[5..5 + a.len()].copy_from_slice(&a);
    p[5 + a.len()..5 + a.len() + b.len()].copy_from_slice(&b);
    let mut got = Vec::new();
    asm.push(&TsPacket::new(&p), &mut |s| got.push(s.map(<[u8]>::to_vec)));
    assert_eq!(got, vec![Ok(a), Ok(b)]);
}

#[test]
fn oversized_section_is_dropped() {
    let mut asm = SectionAssembler::default();
    let mut p = [0xFFu8; 188];
    p[..8].copy_from_slice(&[0x47, 0x40, 0x00, 0x10, 0, 0x00, 0xBF, 0xFF]);
    let mut got = Vec::new();
    asm.push(&TsPacket::new(&p), &mut |s| got.push(s.map(<[u8]>::to_vec)));
    assert_eq!(got, vec![Err(SectionError::Length)]);
}

#[test]
fn a_private_stream_stays_wanted_until_sniffed_except_tables_only() {
    // A private stream (type 0x06) that never starts a PES: the full
    // parser keeps wanting it to sniff its codec; tables_only never does.
    let pat = build_section(0, 1, 0, &pat_body(&[(1, 0x1000)]));
    let pmt = build_section(2, 1, 0, &pmt_body(0x100, &[(0x06, 0x100, &[])]));
    for (tables_only, wanted) in [(false, true), (true, false)] {
        let mut table = PidTable::default();
        let mut psi = if tables_only { Psi::tables_only(&mut table) } else { Psi::new(&mut table) };
        feed(&mut psi, &mut table, &packetize(&pat, Pid::PAT, &mut 0));
        feed(&mut psi, &mut table, &packetize(&pmt, Pid::new(0x1000), &mut 0));
        assert!(psi.programs().next().unwrap().2.is_some());
        assert_eq!(table.get(Pid::new(0x100)).is_some_and(|e| e.wanted), wanted, "tables_only {tables_only}");
        assert!(table.get(Pid::new(0x1000)).is_some_and(|e| e.wanted));
    }
}
