//! Program filter and allow-list on streams built packet by packet, so what
//! must pass is known by construction.

use super::*;
use crate::ts::psi::{SectionError, build_section, packetize, pat_body, pmt_body};

mod model;

/// An elementary-stream packet of `pid` whose payload is `tag` repeated,
/// so every packet of a test stream is distinct.
pub(super) fn es(pid: u16, cc: &mut u8, tag: u32) -> [u8; 188] {
    let mut p = [0u8; 188];
    p[0] = 0x47;
    p[1] = (pid >> 8) as u8 & 0x1F;
    p[2] = pid as u8;
    p[3] = 0x10 | (*cc & 0x0F);
    *cc = cc.wrapping_add(1) & 0x0F;
    for (i, b) in p[4..].iter_mut().enumerate() {
        *b = tag.to_be_bytes()[i % 4];
    }
    p
}

pub(super) fn chunk_of(packets: &[[u8; 188]]) -> Bytes {
    Bytes::from(packets.concat())
}

/// A rewritten PAT as seen downstream.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct SeenPat {
    pub(super) tsid: u16,
    pub(super) version: u8,
    pub(super) cc: u8,
    pub(super) programs: Vec<(u16, Pid)>,
}

/// Parses one output PAT packet, checking it holds one whole section with
/// a valid CRC.
pub(super) fn seen_pat(packet: &[u8]) -> SeenPat {
    let pkt = TsPacket::from_slice(packet).unwrap();
    assert_eq!(pkt.pid(), Pid::PAT);
    let mut sections = Vec::new();
    SectionAssembler::default().push(&pkt, &mut |s: Result<&[u8], SectionError>| sections.push(s.unwrap().to_vec()));
    assert_eq!(sections.len(), 1, "one section per rewritten PAT packet");
    let (header, body) = psi::split_section(&sections[0]).unwrap();
    assert_eq!((header.table_id, header.number, header.last_number, header.current), (0, 0, 0, true));
    SeenPat {
        tsid: header.extension,
        version: header.version,
        cc: pkt.cc().value(),
        programs: psi::pat_entries(body).collect(),
    }
}

/// Output joined and cut into packets.
pub(super) fn packets_of(out: &[Bytes]) -> Vec<Vec<u8>> {
    let all: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
    assert_eq!(all.len() % 188, 0, "output is whole packets");
    all.chunks(188).map(<[u8]>::to_vec).collect()
}

fn pid_of(p: &[u8]) -> u16 {
    u16::from(p[1] & 0x1F) << 8 | u16::from(p[2])
}

fn program(n: u16) -> FilterSpec {
    FilterSpec { program: Some(n), ..FilterSpec::default() }
}

/// Three programs: n -> PMT 0x1000 + n - 1, video 0x100 + 2(n-1), audio +1, PCR on the video.
struct Mpts {
    cc: [u8; 8192],
    tag: u32,
    packets: Vec<[u8; 188]>,
}

impl Mpts {
    fn new() -> Mpts {
        Mpts { cc: [0; 8192], tag: 0, packets: Vec::new() }
    }

    fn section(&mut self, pid: u16, section: &[u8]) -> &mut Self {
        let packets = packetize(section, Pid::new(pid), &mut self.cc[usize::from(pid)]);
        self.packets.extend(packets);
        self
    }

    fn pat(&mut self, version: u8, programs: &[(u16, u16)]) -> &mut Self {
        self.section(0, &build_section(0, 0x77, version, &pat_body(programs)))
    }

    /// A PMT with the PCR on the first stream.
    fn pmt(&mut self, n: u16, version: u8, pid: u16, streams: &[u16]) -> &mut Self {
        self.pmt_with_pcr(n, version, pid, streams[0], streams)
    }

    fn pmt_with_pcr(&mut self, n: u16, version: u8, pid: u16, pcr: u16, streams: &[u16]) -> &mut Self {
        let streams: Vec<(u8, u16, &[u8])> = streams.iter().map(|&s| (0x1B, s, &[][..])).collect();
        self.section(pid, &build_section(2, n, version, &pmt_body(pcr, &streams)))
    }

    fn es(&mut self, pid: u16) -> &mut Self {
        self.tag += 1;
        let p = es(pid, &mut self.cc[usize::from(pid)], self.tag);
        self.packets.push(p);
        self
    }

    fn three_programs(&mut self) -> &mut Self {
        self.pat(0, &[(0, 0x10), (1, 0x1000), (2, 0x1001), (3, 0x1002)]);
        for n in 1..=3u16 {
            let v = 0x100 + 2 * (n - 1);
            self.pmt(n, 0, 0x0FFF + n, &[v, v + 1]);
        }
        self
    }
}

fn run(spec: FilterSpec, packets: &[[u8; 188]]) -> (TsFilter, Vec<Bytes>) {
    let mut filter = TsFilter::new(spec);
    let mut out = Vec::new();
    filter.push(&chunk_of(packets), &mut out);
    let c = filter.counters();
    assert_eq!(c.packets_in, c.packets_passed + c.packets_dropped, "{c:?}");
    (filter, out)
}

#[test]
fn passthrough_is_one_slice_of_the_input() {
    let mut s = Mpts::new();
    s.three_programs().es(0x100).es(0x1FFF).es(0x104);
    let chunk = chunk_of(&s.packets);
    assert!(FilterSpec::default().is_passthrough());
    let mut filter = TsFilter::new(FilterSpec::default());
    let mut out = Vec::new();
    filter.push(&chunk, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].as_ptr(), out[0].len()), (chunk.as_ptr(), chunk.len()));
    let n = s.packets.len() as u64;
    assert_eq!((filter.counters().packets_in, filter.counters().packets_passed), (n, n));
}

#[test]
fn allow_list_alone_keeps_listed_pids_in_runs() {
    let mut s = Mpts::new();
    s.es(0x100).es(0x101).es(0x102).es(0x100).es(0).es(0x101);
    let spec = FilterSpec { pids: Some(vec![Pid::new(0x100), Pid::new(0x101)]), ..FilterSpec::default() };
    assert!(!spec.is_passthrough());
    let chunk = chunk_of(&s.packets);
    let mut filter = TsFilter::new(spec);
    let mut out = Vec::new();
    filter.push(&chunk, &mut out);
    // Runs [0, 2) and [3, 4) and [5, 6), each a slice of the input.
    let spans: Vec<(usize, usize)> =
        out.iter().map(|b| ((b.as_ptr() as usize - chunk.as_ptr() as usize) / 188, b.len() / 188)).collect();
    assert_eq!(spans, [(0, 2), (3, 1), (5, 1)]);
    let c = filter.counters();
    assert_eq!((c.packets_passed, c.packets_dropped, c.pats_rewritten), (4, 2, 0));
}

#[test]
fn program_keeps_its_pmt_streams_si_and_a_rewritten_pat() {
    let mut s = Mpts::new();
    s.es(0x102).es(0x11); // before any table: dropped
    s.three_programs();
    for _ in 0..3 {
        s.es(0x100).es(0x102).es(0x103).es(0x11).es(0x1FFF).es(0x14).es(0x15);
    }
    s.three_programs();
    let (filter, out) = run(program(2), &s.packets);
    let packets = packets_of(&out);
    let pids: Vec<u16> = packets.iter().map(|p| pid_of(p)).collect();
    let body = [0x102, 0x103, 0x11, 0x14];
    let mut expected = vec![0, 0x1001];
    for _ in 0..3 {
        expected.extend(body);
    }
    expected.extend([0, 0x1001]);
    assert_eq!(pids, expected);
    let pats: Vec<SeenPat> = packets.iter().filter(|p| pid_of(p) == 0).map(|p| seen_pat(p)).collect();
    assert_eq!(pats[0], SeenPat { tsid: 0x77, version: 0, cc: 0, programs: vec![(2, Pid::new(0x1001))] });
    assert_eq!(pats[1].cc, 1);
    assert_eq!(pats[1].version, 0);
    let c = filter.counters();
    assert_eq!((c.pats_rewritten, c.awaiting_tables, c.pat_changes, c.pmt_changes), (2, 3, 0, 0));
    assert_eq!(filter.pmt().map(|p| p.program_number), Some(2));
    // Kept packets are slices of the input; only the PATs are new.
    assert_eq!(out.iter().filter(|b| b.len() == 188 && pid_of(b) == 0).count(), 2);
}

#[test]
fn si_off_drops_si_pids() {
    let mut s = Mpts::new();
    s.three_programs().es(0x10).es(0x100).es(0x12);
    let (_, out) = run(FilterSpec { si: false, ..program(1) }, &s.packets);
    let pids: Vec<u16> = packets_of(&out).iter().map(|p| pid_of(p)).collect();
    assert_eq!(pids, [0, 0x1000, 0x100]);
}

#[test]
fn allow_list_applies_after_the_program() {
    let mut s = Mpts::new();
    s.three_programs().es(0x104).es(0x105).es(0x100).es(0x11);
    let pids = Some([0, 0x105, 0x100].map(Pid::new).to_vec());
    let (_, out) = run(FilterSpec { pids, ..program(3) }, &s.packets);
    let pids: Vec<u16> = packets_of(&out).iter().map(|p| pid_of(p)).collect();
    assert_eq!(pids, [0, 0x105]);
}

#[test]
fn pmt_change_is_followed() {
    let mut s = Mpts::new();
    s.three_programs().es(0x100).es(0x120);
    s.pmt(1, 1, 0x1000, &[0x120, 0x101]).es(0x100).es(0x120).es(0x101);
    let (filter, out) = run(program(1), &s.packets);
    let pids: Vec<u16> = packets_of(&out).iter().map(|p| pid_of(p)).collect();
    assert_eq!(pids, [0, 0x1000, 0x100, 0x1000, 0x120, 0x101]);
    assert_eq!(filter.counters().pmt_changes, 1);
    assert_eq!(filter.pmt().map(|p| p.pcr_pid), Some(Pid::new(0x120)));
}

#[test]
fn pat_change_moves_the_pmt_and_bumps_the_rewritten_version() {
    let mut s = Mpts::new();
    s.three_programs().es(0x100);
    // Version 1 moves program 1's PMT to 0x1500; the old PMT PID and the
    // streams wait for the PMT there.
    s.pat(1, &[(1, 0x1500), (2, 0x1001)]).es(0x100).pmt(1, 0, 0x1000, &[0x100]).es(0x100);
    s.pmt(1, 0, 0x1500, &[0x100]).es(0x100);
    // The same content again under a new input version: same output version.
    s.pat(2, &[(2, 0x1001), (1, 0x1500)]).es(0x100);
    let (filter, out) = run(program(1), &s.packets);
    let packets = packets_of(&out);
    let pids: Vec<u16> = packets.iter().map(|p| pid_of(p)).collect();
    assert_eq!(pids, [0, 0x1000, 0x100, 0, 0x1500, 0x100, 0, 0x100]);
    let pats: Vec<SeenPat> = packets.iter().filter(|p| pid_of(p) == 0).map(|p| seen_pat(p)).collect();
    let versions: Vec<(u8, u8)> = pats.iter().map(|p| (p.version, p.cc)).collect();
    assert_eq!(versions, [(0, 0), (1, 1), (1, 2)]);
    assert_eq!(pats[1].programs, [(1, Pid::new(0x1500))]);
    let c = filter.counters();
    assert_eq!((c.pat_changes, c.pmt_changes, c.awaiting_tables), (2, 0, 3));
}

#[test]
fn missing_program_passes_only_an_empty_pat() {
    let mut s = Mpts::new();
    s.three_programs().es(0x100).es(0x11);
    s.pat(1, &[(1, 0x1000), (9, 0x1009)]).pmt(9, 0, 0x1009, &[0x190]).es(0x190);
    let (filter, out) = run(program(9), &s.packets);
    let packets = packets_of(&out);
    let pids: Vec<u16> = packets.iter().map(|p| pid_of(p)).collect();
    assert_eq!(pids, [0, 0, 0x1009, 0x190]);
    assert_eq!(seen_pat(&packets[0]).programs, []);
    assert_eq!(seen_pat(&packets[1]).programs, [(9, Pid::new(0x1009))]);
    assert_eq!(seen_pat(&packets[1]).version, 1);
    // Three PMTs and two ES packets while the program was missing.
    assert_eq!(filter.counters().program_missing, 5);
}

#[test]
fn multi_section_multi_packet_pat() {
    // Section 0 lists 50 dummy programs (two packets), section 1 lists program 7.
    let dummies: Vec<(u16, u16)> = (100..150).map(|n| (n, 0x1100 + n)).collect();
    let mut s0 = build_section(0, 5, 3, &pat_body(&dummies));
    let mut s1 = build_section(0, 5, 3, &pat_body(&[(7, 0x1700)]));
    // section_number / last_section_number, CRC recomputed.
    for (s, number) in [(&mut s0, 0u8), (&mut s1, 1)] {
        s[6] = number;
        s[7] = 1;
        let len = s.len();
        s.truncate(len - 4);
        let crc = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2).checksum(s);
        s.extend_from_slice(&crc.to_be_bytes());
    }
    let mut m = Mpts::new();
    m.section(0, &s0).es(0x170);
    assert_eq!(m.packets.len(), 3);
    m.section(0, &s1).pmt(7, 0, 0x1700, &[0x170]).es(0x170).section(0, &s0).section(0, &s1);
    let (filter, out) = run(program(7), &m.packets);
    let packets = packets_of(&out);
    let pids: Vec<u16> = packets.iter().map(|p| pid_of(p)).collect();
    assert_eq!(pids, [0, 0x1700, 0x170, 0]);
    let pat = seen_pat(&packets[0]);
    assert_eq!((pat.tsid, pat.version, pat.programs), (5, 3, vec![(7, Pid::new(0x1700))]));
    assert_eq!(filter.counters().pats_rewritten, 2);
}

#[test]
fn bad_packets_are_counted_and_cut_runs() {
    let mut s = Mpts::new();
    s.es(0x100).es(0x100).es(0x100);
    s.packets[1][0] = 0x48;
    let mut bytes = s.packets.concat();
    bytes.extend_from_slice(&[0x47, 1, 0]);
    let chunk = Bytes::from(bytes);
    for spec in [FilterSpec::default(), program(1), FilterSpec { pids: Some(vec![Pid::new(0x100)]), ..program(1) }] {
        let mut filter = TsFilter::new(spec.clone());
        let mut out = Vec::new();
        filter.push(&chunk, &mut out);
        filter.push(&chunk.slice(..100), &mut out);
        filter.push(&Bytes::new(), &mut out);
        let c = filter.counters();
        assert_eq!((c.packets_in, c.bad_packets), (5, 3), "{spec:?}");
        assert_eq!(c.packets_in, c.packets_passed + c.packets_dropped);
        if spec.program.is_none() {
            assert_eq!(out.len(), 2);
            assert!(out.iter().all(|b| b.len() == 188));
        } else {
            assert!(out.is_empty());
        }
    }
}

#[test]
fn malformed_sections_are_counted() {
    let mut s = Mpts::new();
    let mut bad_crc = build_section(0, 1, 0, &pat_body(&[(1, 0x1000)]));
    *bad_crc.last_mut().unwrap() ^= 1;
    s.section(0, &bad_crc).es(0x100);
    // A section_syntax_indicator of 0 with a valid CRC.
    let mut short = build_section(0, 1, 0, &pat_body(&[(1, 0x1000)]));
    short[1] &= 0x7F;
    let len = short.len();
    short.truncate(len - 4);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2).checksum(&short);
    short.extend_from_slice(&crc.to_be_bytes());
    s.section(0, &short);
    let (filter, out) = run(program(1), &s.packets);
    assert!(out.is_empty());
    assert_eq!(filter.counters().section_errors, 2);
}

#[test]
fn rewritten_pat_counter_wraps_continuously() {
    let mut s = Mpts::new();
    s.three_programs();
    for _ in 0..40 {
        s.pat(0, &[(1, 0x1000)]);
    }
    let (_, out) = run(program(1), &s.packets);
    let ccs: Vec<u8> = packets_of(&out).iter().filter(|p| pid_of(p) == 0).map(|p| seen_pat(p).cc).collect();
    assert_eq!(ccs.len(), 41);
    assert!(ccs.windows(2).all(|w| w[1] == (w[0] + 1) % 16), "{ccs:?}");
}
