//! Rate parsing and the schedule, stepped on a ManualClock.

use super::*;
use crate::clock::{Clock, ManualClock, SystemClock};

#[test]
fn rates_parse_with_si_suffixes() {
    assert_eq!(parse_rate("3G"), Ok(3_000_000_000));
    assert_eq!(parse_rate("500M"), Ok(500_000_000));
    assert_eq!(parse_rate("100k"), Ok(100_000));
    assert_eq!(parse_rate("100K"), Ok(100_000));
    assert_eq!(parse_rate("1.5G"), Ok(1_500_000_000));
    assert_eq!(parse_rate("2000000"), Ok(2_000_000));
    assert_eq!(parse_rate("1k"), Ok(1_000));
    assert_eq!(parse_rate("100G"), Ok(100_000_000_000));
    assert_eq!(parse_rate(" 0.5M "), Ok(500_000));
}

#[test]
fn bad_rates_are_refused() {
    for bad in ["", "G", "3X", "3g", "-1G", "1e9", "inf", "nan", "3 G", "1.2.3M", "0x10"] {
        assert!(matches!(parse_rate(bad), Err(RateError::Syntax(_))), "{bad:?}");
    }
    for out in ["999", "0", "0.5k", "101G", "100000000001"] {
        assert!(matches!(parse_rate(out), Err(RateError::Range(_))), "{out:?}");
    }
}

#[test]
fn max_is_a_rate() {
    assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
    assert_eq!("3G".parse::<Rate>(), Ok(Rate::Bps(3_000_000_000)));
    assert_eq!(Rate::Max.bps(), None);
    assert!("MAX".parse::<Rate>().is_err());
}

#[test]
fn durations_are_bounded() {
    assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
    assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
    assert_eq!(parse_duration("86400"), Ok(MAX_DURATION));
    for bad in ["0", "-1", "86401", "nan", "inf", "x", "", "1e-12"] {
        assert!(parse_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn batches_hold_at_most_100_us() {
    // 3 Gbit/s of 1316-byte datagrams: 285k/s, 28.5 per 100 µs.
    assert_eq!(batch_for(3_000_000_000, 1316, 64), 28);
    assert_eq!(batch_for(100_000_000_000, 1316, 64), 64);
    assert_eq!(batch_for(1_000, 1316, 64), 1);
    assert_eq!(batch_for(50_000_000, 1316, 64), 1);
}

/// Steps a ManualClock through a run; each wait moves the clock to the
/// deadline plus `late`. Returns (sends, final instant). Bounded.
fn simulate(rate: u64, pkt: usize, secs: f64, late: Duration) -> (Vec<(Instant, u64, usize)>, Instant, Schedule) {
    let clock = ManualClock::new(SystemClock.now());
    let start = clock.now();
    let mut s = Schedule::new(start, Duration::from_secs_f64(secs), rate, pkt, 64);
    let mut sends = Vec::new();
    for _ in 0..10_000_000 {
        match s.poll(clock.now()) {
            Step::Send { first, count } => sends.push((clock.now(), first, count)),
            Step::WaitUntil(t) => {
                assert!(t > clock.now());
                clock.advance(t - clock.now() + late);
            }
            Step::Done => return (sends, clock.now(), s),
        }
    }
    panic!("schedule did not finish");
}

#[test]
fn a_punctual_sender_sends_the_planned_count_evenly() {
    for (rate, pkt, secs) in [(3_000_000_000, 1316, 1.0), (50_000_000, 1316, 0.5), (1_000_000_000, 188, 0.3)] {
        let (sends, end, s) = simulate(rate, pkt, secs, Duration::ZERO);
        let expected = rate as f64 * secs / (pkt as f64 * 8.0);
        let total: u64 = sends.iter().map(|&(_, _, c)| c as u64).sum();
        assert!((total as f64 - expected).abs() <= s.batch() as f64, "{rate}: {total} vs {expected}");
        assert_eq!(Some(total), s.planned());
        assert!(s.max_lag().is_zero());
        // Contiguous, never more than a batch, one batch per instant.
        let mut next = 0;
        for w in sends.windows(2) {
            assert!(w[1].0 > w[0].0, "two batches at one instant");
        }
        for &(_, first, count) in &sends {
            assert_eq!(first, next);
            assert!(count <= s.batch());
            next += count as u64;
        }
        // Even: each batch leaves when its first datagram is due.
        let interval = pkt as f64 * 8.0 / rate as f64;
        for &(t, first, _) in &sends {
            let due = first as f64 * interval;
            assert!(((t - sends[0].0).as_secs_f64() - due).abs() < 1e-6);
        }
        assert_eq!(end - sends[0].0, Duration::from_secs_f64(secs));
    }
}

#[test]
fn a_slightly_late_sender_catches_up_in_bounded_bursts() {
    // 30 µs late on every wait at 3 Gbit/s.
    let (sends, _, s) = simulate(3_000_000_000, 1316, 0.2, Duration::from_micros(30));
    let total: u64 = sends.iter().map(|&(_, _, c)| c as u64).sum();
    assert_eq!(Some(total), s.planned());
    assert!(sends.iter().all(|&(_, _, c)| c <= 64));
    assert!(s.max_lag() >= Duration::from_micros(30));
}

#[test]
fn a_stalled_sender_catches_up_in_full_batches_and_loses_nothing() {
    let clock = ManualClock::new(SystemClock.now());
    let start = clock.now();
    let mut s = Schedule::new(start, Duration::from_secs(1), 3_000_000_000, 1316, 64);
    assert!(matches!(s.poll(clock.now()), Step::Send { first: 0, count: 28 }));
    // A 10 ms stall: 2850 datagrams are due; they go out 64 at a time,
    // the last batch an on-time one (up to 27 of it not yet due).
    clock.advance(Duration::from_millis(10));
    let mut counts = Vec::new();
    for _ in 0..1000 {
        match s.poll(clock.now()) {
            Step::Send { count, .. } => counts.push(count),
            _ => break,
        }
    }
    let caught_up: usize = counts.iter().sum();
    let due = 3_000_000_000 / 100 / (1316 * 8) + 1;
    assert!((due..due + 28).contains(&(caught_up as u64 + 28)), "{caught_up}");
    assert!(counts.iter().all(|&c| c <= 64));
    assert_eq!(counts[0], 64);
    assert!(s.max_lag() >= Duration::from_millis(9));
    // The rest of the run still sends every planned datagram.
    for _ in 0..10_000_000 {
        match s.poll(clock.now()) {
            Step::Send { .. } => {}
            Step::WaitUntil(t) => clock.advance(t - clock.now()),
            Step::Done => break,
        }
    }
    assert_eq!(Some(s.sent()), s.planned());
}

#[test]
fn a_sender_too_slow_for_the_rate_stops_after_the_grace() {
    let clock = ManualClock::new(SystemClock.now());
    let mut s = Schedule::new(clock.now(), Duration::from_millis(10), 10_000_000_000, 1316, 64);
    assert!(matches!(s.poll(clock.now()), Step::Send { first: 0, .. }));
    clock.advance(Duration::from_millis(10) + END_GRACE);
    assert_eq!(s.poll(clock.now()), Step::Done);
    assert!(Some(s.sent()) < s.planned());
}

#[test]
fn unpaced_runs_send_full_batches_until_the_end() {
    let clock = ManualClock::new(SystemClock.now());
    let mut s = Schedule::unpaced(clock.now(), Duration::from_millis(2), 1316, 49);
    assert_eq!(s.planned(), None);
    assert_eq!(s.poll(clock.now()), Step::Send { first: 0, count: 49 });
    assert_eq!(s.poll(clock.now()), Step::Send { first: 49, count: 49 });
    clock.advance(Duration::from_millis(2));
    assert_eq!(s.poll(clock.now()), Step::Done);
    assert_eq!(s.sent(), 98);
}

#[test]
fn the_run_ends_on_time_even_with_nothing_to_send() {
    // 1 kbit/s for 1 ms: only datagram 0 is due; then Done at the end.
    let clock = ManualClock::new(SystemClock.now());
    let mut s = Schedule::new(clock.now(), Duration::from_millis(1), 1_000, 1316, 64);
    assert_eq!(s.poll(clock.now()), Step::Send { first: 0, count: 1 });
    assert_eq!(s.poll(clock.now()), Step::WaitUntil(s.end()));
    clock.advance(Duration::from_millis(1));
    assert_eq!(s.poll(clock.now()), Step::Done);
}
