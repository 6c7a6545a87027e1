//! Random MPTS streams with PAT and PMT changes; what must pass is worked
//! out from the tables the generator wrote, not parsed back.

use proptest::prelude::*;

use super::*;

/// One step of the generator.
#[derive(Clone, Debug)]
enum Op {
    /// Send the PAT as it stands.
    Pat,
    /// Send program i's PMT.
    Pmt(usize),
    /// A packet of program i's stream j.
    Es(usize, usize),
    /// A packet of program i's PCR PID.
    Pcr(usize),
    /// A null packet.
    Null,
    /// A packet on SI PID 0x10 + k.
    Si(u16),
    /// A packet of a PID no table names.
    Other,
    /// Program i gains or loses a stream (new PMT version).
    ChangePmt(usize, bool),
    /// Program i's PMT moves to a new PID (new PAT version).
    MovePmt(usize),
    /// Program i leaves or rejoins the PAT (new PAT version).
    ToggleListed(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Pat),
        3 => (0..4usize).prop_map(Op::Pmt),
        10 => (0..4usize, 0..4usize).prop_map(|(i, j)| Op::Es(i, j)),
        2 => (0..4usize).prop_map(Op::Pcr),
        1 => Just(Op::Null),
        1 => (0..6u16).prop_map(Op::Si),
        1 => Just(Op::Other),
        1 => (0..4usize, any::<bool>()).prop_map(|(i, add)| Op::ChangePmt(i, add)),
        1 => (0..4usize).prop_map(Op::MovePmt),
        1 => (0..4usize).prop_map(Op::ToggleListed),
    ]
}

#[derive(Clone, Debug)]
struct Program {
    number: u16,
    pmt_pid: u16,
    listed: bool,
    version: u8,
    /// Its own PID for odd programs, the first stream's for even ones.
    pcr: Option<u16>,
    streams: Vec<u16>,
}

/// What the filter should do with each input packet.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expect {
    Input(usize),
    Pat { pmt_pid: Option<Pid>, version: u8 },
}

/// The filter as the tables written say it must behave.
#[derive(Default)]
struct Model {
    /// Input PAT in force: (version, PMT PID of the program).
    pat: Option<(u8, Option<u16>)>,
    /// PMT in force: (version, PIDs it names).
    pmt: Option<(u8, Vec<u16>)>,
    /// Rewritten PAT content and version.
    out: Option<(Option<u16>, u8)>,
    awaiting: u64,
    missing: u64,
}

#[derive(Clone, Debug)]
struct Case {
    number: u16,
    si: bool,
    allow: Option<Vec<u16>>,
}

impl Case {
    fn allowed(&self, pid: u16) -> bool {
        self.allow.as_ref().is_none_or(|a| a.contains(&pid))
    }
}

impl Model {
    fn pat_sent(&mut self, case: &Case, version: u8, pmt_pid: Option<u16>, expect: &mut Vec<Expect>) {
        if self.pat.is_none_or(|(v, _)| v != version) {
            if self.pat.is_some_and(|(_, old)| old != pmt_pid) {
                self.pmt = None;
            }
            self.pat = Some((version, pmt_pid));
            self.out = match self.out {
                None => Some((pmt_pid, version)),
                Some((old, v)) if old != pmt_pid => Some((pmt_pid, (v + 1) & 0x1F)),
                same => same,
            };
        }
        if let Some((pmt_pid, version)) = self.out.filter(|_| case.allowed(0)) {
            expect.push(Expect::Pat { pmt_pid: pmt_pid.map(Pid::new), version });
        }
    }

    /// Any other packet: whether it passes.
    fn packet(&mut self, case: &Case, pid: u16) -> bool {
        let pmt_pid = self.pat.and_then(|p| p.1);
        let keep = pid != 0x1FFF
            && (pmt_pid == Some(pid)
                || self
                    .pmt
                    .as_ref()
                    .is_some_and(|(_, pids)| pids.contains(&pid) || (case.si && (0x10..=0x14).contains(&pid))));
        if keep && case.allowed(pid) {
            return true;
        }
        match (self.pat, &self.pmt) {
            (None, _) | (Some((_, Some(_))), None) => self.awaiting += 1,
            (Some((_, None)), _) => self.missing += 1,
            _ => {}
        }
        false
    }
}

fn check(ops: &[Op], case: &Case, two_sections: bool, cuts: &[usize]) {
    let mut programs: Vec<Program> = (0..4u16)
        .map(|i| Program {
            number: [1, 2, 300, 65535][usize::from(i)],
            pmt_pid: 0x1000 + i,
            listed: i != 3,
            version: 0,
            pcr: (i % 2 == 1).then_some(0x10F + 16 * i),
            streams: vec![0x100 + 16 * i, 0x101 + 16 * i],
        })
        .collect();
    let mut pat_version = 0u8;
    let mut next_pid = 0x1800u16;
    let mut stream = Mpts::new();
    let mut model = Model::default();
    let mut expect = Vec::new();
    for op in ops {
        let start = stream.packets.len();
        match *op {
            Op::Pat => {
                let listed: Vec<(u16, u16)> =
                    programs.iter().filter(|p| p.listed).map(|p| (p.number, p.pmt_pid)).collect();
                let halves = if two_sections { listed.split_at(listed.len() / 2) } else { (&listed[..], &[][..]) };
                let count = if two_sections { 2 } else { 1 };
                for (number, half) in [halves.0, halves.1].into_iter().take(count).enumerate() {
                    let mut s = build_section(0, 0x77, pat_version, &pat_body(half));
                    s[6] = number as u8;
                    s[7] = count as u8 - 1;
                    let body_len = s.len() - 4;
                    let crc = crc::Crc::<u32>::new(&crc::CRC_32_MPEG_2).checksum(&s[..body_len]);
                    s[body_len..].copy_from_slice(&crc.to_be_bytes());
                    stream.section(0, &s);
                }
                let pmt_pid = listed.iter().find(|p| p.0 == case.number).map(|p| p.1);
                model.pat_sent(case, pat_version, pmt_pid, &mut expect);
                continue;
            }
            Op::Pmt(i) => {
                let p = &programs[i];
                let pcr = p.pcr.unwrap_or(p.streams[0]);
                stream.pmt_with_pcr(p.number, p.version, p.pmt_pid, pcr, &p.streams);
                if p.number == case.number
                    && model.pat.and_then(|t| t.1) == Some(p.pmt_pid)
                    && model.pmt.as_ref().is_none_or(|(v, _)| *v != p.version)
                {
                    model.pmt = Some((p.version, [&[pcr][..], &p.streams].concat()));
                }
            }
            Op::Es(i, j) => {
                let p = &programs[i];
                stream.es(p.streams[j % p.streams.len()]);
            }
            Op::Pcr(i) => {
                let p = &programs[i];
                stream.es(p.pcr.unwrap_or(p.streams[0]));
            }
            Op::Null => {
                stream.es(0x1FFF);
            }
            Op::Si(k) => {
                stream.es(0x10 + k);
            }
            Op::Other => {
                stream.es(0x1FF0);
            }
            Op::ChangePmt(i, add) => {
                let p = &mut programs[i];
                if add && p.streams.len() < 4 {
                    let last = p.streams[p.streams.len() - 1];
                    p.streams.push(last + 1);
                } else if !add && p.streams.len() > 1 {
                    p.streams.remove(0);
                }
                p.version = (p.version + 1) & 0x1F;
                continue;
            }
            Op::MovePmt(i) => {
                programs[i].pmt_pid = next_pid;
                next_pid += 1;
                pat_version = (pat_version + 1) & 0x1F;
                continue;
            }
            Op::ToggleListed(i) => {
                programs[i].listed = !programs[i].listed;
                pat_version = (pat_version + 1) & 0x1F;
                continue;
            }
        }
        for index in start..stream.packets.len() {
            if model.packet(case, pid_of(&stream.packets[index])) {
                expect.push(Expect::Input(index));
            }
        }
    }

    let spec = FilterSpec {
        program: Some(case.number),
        si: case.si,
        pids: case.allow.as_ref().map(|a| a.iter().map(|&p| Pid::new(p)).collect()),
    };
    let mut filter = TsFilter::new(spec);
    let all = chunk_of(&stream.packets);
    let mut out = Vec::new();
    let mut at = 0;
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.packets.len() + 1) * 188).collect();
    cuts.push(all.len());
    cuts.sort_unstable();
    for cut in cuts {
        let chunk = all.slice(at..cut);
        let before = out.len();
        filter.push(&chunk, &mut out);
        // Zero copy: everything but rewritten PATs is a slice of this
        // chunk, and runs of kept packets are not split.
        let range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        let mut last_end = None;
        for b in &out[before..] {
            let start = b.as_ptr() as usize;
            if range.contains(&start) {
                assert!(start + b.len() <= range.end);
                assert_ne!(last_end, Some(start), "a run of kept packets was split");
                last_end = Some(start + b.len());
            } else {
                assert_eq!((b.len(), pid_of(b)), (188, 0), "a copied packet that is not a PAT");
                last_end = None;
            }
        }
        at = cut;
    }

    let packets = packets_of(&out);
    assert_eq!(packets.len(), expect.len(), "{:?}\nexpected {expect:?}", packets.iter().map(|p| pid_of(p)));
    let mut pat_cc = None;
    for (got, want) in packets.iter().zip(&expect) {
        match *want {
            Expect::Input(index) => assert_eq!(got[..], stream.packets[index][..], "packet {index}"),
            Expect::Pat { pmt_pid, version } => {
                let pat = seen_pat(got);
                let programs: Vec<(u16, Pid)> = pmt_pid.map(|p| (case.number, p)).into_iter().collect();
                assert_eq!((pat.tsid, pat.version, pat.programs), (0x77, version, programs));
                if let Some(cc) = pat_cc {
                    assert_eq!(pat.cc, (cc + 1) % 16, "PAT continuity");
                }
                pat_cc = Some(pat.cc);
            }
        }
    }
    let c = filter.counters();
    let pats = expect.iter().filter(|e| matches!(e, Expect::Pat { .. })).count() as u64;
    assert_eq!(c.packets_in, stream.packets.len() as u64);
    assert_eq!(c.packets_in, c.packets_passed + c.packets_dropped);
    assert_eq!((c.packets_passed, c.pats_rewritten), (expect.len() as u64 - pats, pats));
    assert_eq!((c.awaiting_tables, c.program_missing), (model.awaiting, model.missing));
    assert_eq!((c.bad_packets, c.section_errors), (0, 0));
}

fn case() -> impl Strategy<Value = Case> {
    let pool =
        prop::sample::select(vec![0u16, 0x1000, 0x1001, 0x1800, 0x100, 0x101, 0x102, 0x111, 0x11F, 0x11, 0x1FFF]);
    (
        prop::sample::select(vec![1u16, 2, 300, 65535, 7]),
        any::<bool>(),
        prop::option::weighted(0.3, prop::collection::vec(pool, 0..6)),
    )
        .prop_map(|(number, si, allow)| Case { number, si, allow })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn filter_matches_the_tables_written(
        ops in prop::collection::vec(op(), 1..120),
        case in case(),
        two_sections in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        check(&ops, &case, two_sections, &cuts);
    }
}
