//! Kernels against the scalar reference, on random and adversarial input.

use proptest::prelude::*;

use super::*;
use crate::ts::packet::Pid;
use crate::ts::stats::PidStats;

/// One packet to synthesise: which PID, how its counter moves, its flags.
#[derive(Clone, Debug)]
struct Spec {
    pid: u16,
    cc_step: u8,
    afc: u8,
    tei: bool,
    bad_sync: bool,
    discontinuity: bool,
    pusi: bool,
    scrambled: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![8 => Just(0x100u16), 2 => Just(0x101), 1 => Just(0x1FFF), 1 => Just(0), 1 => 0u16..0x2000],
        prop_oneof![12 => Just(1u8), 1 => Just(0), 1 => 0u8..16],
        prop_oneof![12 => Just(1u8), 2 => Just(3), 1 => Just(2), 1 => Just(0)],
        prop::bool::weighted(0.02),
        prop::bool::weighted(0.01),
        prop::bool::weighted(0.02),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.02),
    )
        .prop_map(|(pid, cc_step, afc, tei, bad_sync, discontinuity, pusi, scrambled)| Spec {
            pid,
            cc_step,
            afc,
            tei,
            bad_sync,
            discontinuity,
            pusi,
            scrambled,
        })
}

fn build(specs: &[Spec], stride: usize, noise: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(specs.len() * stride);
    let mut counters = [0u8; 8192];
    for (n, s) in specs.iter().enumerate() {
        let cc = &mut counters[usize::from(s.pid)];
        *cc = (*cc + s.cc_step) & 0x0F;
        let mut p = [0u8; 188];
        for (k, b) in p.iter_mut().enumerate() {
            *b = noise.get((n * 7 + k) % noise.len().max(1)).copied().unwrap_or(0xFF);
        }
        p[0] = if s.bad_sync { 0x46 } else { 0x47 };
        p[1] = (u8::from(s.tei) << 7) | (u8::from(s.pusi) << 6) | ((s.pid >> 8) as u8 & 0x1F);
        p[2] = s.pid as u8;
        p[3] = (u8::from(s.scrambled) << 7) | (s.afc << 4) | *cc;
        if s.afc & 0b10 != 0 {
            p[4] = 7;
            p[5] = (u8::from(s.discontinuity) << 7) | 0x10;
        }
        if stride == 192 {
            buf.extend_from_slice(&[0, 1, 2, 3]);
        }
        buf.extend_from_slice(&p);
        if stride == 204 {
            buf.extend_from_slice(&[0x47; 16]);
        }
    }
    buf
}

/// Records wanted packets and flips interest to stress the kernels' runs.
#[derive(Default, PartialEq, Debug)]
struct Recorder {
    seen: Vec<(u64, u16)>,
}

impl PayloadSink for Recorder {
    fn payload_packet(&mut self, pkt: TsPacket<'_>, index: u64, table: &mut PidTable) {
        self.seen.push((index, pkt.pid().value()));
        // After PAT, want 0x101 for a while; stop once it was seen 3 times.
        if pkt.pid() == Pid::PAT {
            table.set_wanted(Pid::new(0x101), true);
        } else if self.seen.iter().filter(|s| s.1 == 0x101).count() >= 3 {
            table.set_wanted(Pid::new(0x101), false);
        }
    }
}

fn scan_all(
    kernel: Kernel,
    buf: &[u8],
    stride: usize,
    chunk: usize,
) -> Option<(Vec<PidStats>, Vec<ScanOutcome>, Recorder, u64)> {
    let mut scanner = Scanner::with_kernel(kernel)?;
    scanner.table_mut().set_wanted(Pid::PAT, true);
    let mut sink = Recorder::default();
    let mut outcomes = Vec::new();
    let offset = if stride == 192 { 4 } else { 0 };
    let mut start = offset;
    loop {
        let run = Run::fitting(buf.len(), start, stride, chunk);
        if run.count == 0 {
            break;
        }
        let out = scanner.scan(buf, run, &mut sink);
        outcomes.push(out);
        // Skip the bad packet like a framer that relocks at the next one.
        start += (out.packets + usize::from(out.sync_lost)) * stride;
    }
    Some((scanner.table().iter().cloned().collect(), outcomes, sink, scanner.packets()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn kernels_agree_with_scalar(
        specs in prop::collection::vec(spec(), 0..400),
        stride in prop_oneof![Just(188usize), Just(192), Just(204)],
        chunk in 1usize..64,
        noise in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let buf = build(&specs, stride, &noise);
        let reference = scan_all(Kernel::Scalar, &buf, stride, chunk);
        for kernel in [Kernel::Sse2, Kernel::Avx2] {
            if let Some(got) = scan_all(kernel, &buf, stride, chunk) {
                prop_assert_eq!(&got, reference.as_ref().unwrap(), "kernel {:?}", kernel);
            }
        }
    }

    #[test]
    fn kernels_agree_on_random_bytes(
        mut bytes in prop::collection::vec(any::<u8>(), 0..20_000),
        sync_every in prop_oneof![Just(188usize), Just(192), Just(204)],
    ) {
        // Random bytes with most sync bytes in place: headers are arbitrary.
        for (i, b) in bytes.iter_mut().enumerate() {
            if i % sync_every == 0 && i % (sync_every * 31) != sync_every * 30 {
                *b = 0x47;
            }
        }
        let reference = scan_all(Kernel::Scalar, &bytes, sync_every, 1000);
        for kernel in [Kernel::Sse2, Kernel::Avx2] {
            if let Some(got) = scan_all(kernel, &bytes, sync_every, 1000) {
                prop_assert_eq!(&got, reference.as_ref().unwrap());
            }
        }
        let run = Run::fitting(bytes.len(), 0, sync_every, usize::MAX);
        let mut a = vec![0u16; run.count];
        let mut b = vec![0u16; run.count];
        let na = extract_pids_with(Kernel::Scalar, &bytes, run, &mut a);
        let nb = extract_pids_with(Kernel::Avx2, &bytes, run, &mut b);
        prop_assert_eq!(na, nb);
        prop_assert_eq!(&a[..na], &b[..nb]);
    }
}

/// A payload-only packet of `pid` with the next counter.
fn plain(pid: u16) -> Spec {
    Spec { pid, cc_step: 1, afc: 1, tei: false, bad_sync: false, discontinuity: false, pusi: false, scrambled: false }
}

#[test]
fn steady_run_is_counted_in_bulk_and_exactly() {
    let specs: Vec<Spec> = (0..1000).map(|_| plain(0x100)).collect();
    let buf = build(&specs, 188, &[]);
    for kernel in [Kernel::Scalar, Kernel::Sse2, Kernel::Avx2] {
        let Some(mut s) = Scanner::with_kernel(kernel) else {
            continue;
        };
        let out = s.scan(&buf, Run::fitting(buf.len(), 0, 188, usize::MAX), &mut ());
        assert_eq!(out, ScanOutcome { packets: 1000, sync_lost: false });
        let e = s.table().get(Pid::new(0x100)).unwrap();
        assert_eq!((e.packets, e.cc_errors), (1000, 0));
        // The counter ended where 1000 increments from 1 land.
        assert_eq!(e.last_cc().map(|c| c.value()), Some(((1 + 999) % 16) as u8));
    }
}

#[test]
fn stops_at_missing_sync() {
    let mut specs: Vec<Spec> = (0..50).map(|_| plain(0x100)).collect();
    specs[37].bad_sync = true;
    let buf = build(&specs, 188, &[]);
    let mut s = Scanner::new();
    let out = s.scan(&buf, Run::fitting(buf.len(), 0, 188, usize::MAX), &mut ());
    assert_eq!(out, ScanOutcome { packets: 37, sync_lost: true });
}

#[test]
fn run_that_overhangs_the_buffer_is_cut() {
    let buf = build(&[plain(1)], 188, &[]);
    let mut s = Scanner::new();
    let out = s.scan(&buf, Run { start: 0, stride: 188, count: 10 }, &mut ());
    assert_eq!(out.packets, 1);
}
