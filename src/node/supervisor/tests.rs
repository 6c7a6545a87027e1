//! Timelines with explicit times, and a property test over random events.

use super::*;
use Action::{Activate, Close, Open};
use Event::{Data, Ended, Failed, InputAdded, InputRemoved, ManualSwitch, OpenFailed, Opened, Tick};
use proptest::prelude::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn s(v: u64) -> Duration {
    Duration::from_secs(v)
}

/// A supervisor with the default config and a running clock.
struct Sim {
    sup: Supervisor,
    now: Duration,
}

impl Sim {
    fn new(inputs: usize) -> Sim {
        Sim { sup: Supervisor::new(inputs, SupervisorConfig::default()), now: Duration::ZERO }
    }

    fn at(&mut self, now: Duration, event: Event) -> Vec<Action> {
        assert!(now >= self.now, "test timeline goes backwards");
        self.now = now;
        let mut actions = Vec::new();
        self.sup.handle(now, event, &mut actions);
        if let Some(d) = self.sup.next_deadline() {
            assert!(d > now, "deadline {d:?} not after now {now:?}");
        }
        actions
    }

    /// Tick at the next deadline, which must be `expect`.
    fn tick_expect(&mut self, expect: Duration) -> Vec<Action> {
        assert_eq!(self.sup.next_deadline(), Some(expect));
        self.at(expect, Tick)
    }

    /// Input `i` delivers data every 500 ms in `[from, to]`; returns all actions.
    fn feed(&mut self, i: usize, from: Duration, to: Duration) -> Vec<Action> {
        let mut all = Vec::new();
        let mut t = from;
        while t <= to {
            all.extend(self.at(t, Data { input: i }));
            t += ms(500);
        }
        all
    }

    fn state(&self, i: usize) -> InputState {
        self.sup.health(i).unwrap().state
    }

    /// Start with input 0 active from `t = 0`.
    fn started(inputs: usize) -> Sim {
        let mut sim = Sim::new(inputs);
        assert_eq!(sim.at(s(0), Tick), vec![Open { input: 0 }]);
        assert_eq!(sim.at(ms(100), Opened { input: 0 }), vec![]);
        assert_eq!(sim.at(ms(200), Data { input: 0 }), vec![Activate { input: 0, reason: SwitchReason::Start }]);
        sim
    }
}

#[test]
fn start_opens_only_the_first_input_and_activates_on_data() {
    let sim = Sim::started(3);
    assert_eq!(sim.sup.active(), Some(0));
    assert_eq!(sim.state(1), InputState::Closed);
    assert_eq!(sim.state(2), InputState::Closed);
    assert_eq!(sim.sup.history(), &[Switch { at: ms(200), from: None, to: 0, reason: SwitchReason::Start }]);
    // Only the active input's timeout is pending.
    assert_eq!(sim.sup.next_deadline(), Some(ms(3200)));
}

#[test]
fn timeout_fails_over_make_before_break_then_backoff_then_failback() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.feed(0, ms(500), s(5)), vec![]);
    // Silence for 3 s: the backup is opened first, the primary stays active.
    assert_eq!(sim.tick_expect(s(8)), vec![Open { input: 1 }]);
    assert_eq!(sim.sup.active(), Some(0));
    assert_eq!(sim.sup.health(0).unwrap().degraded_since, Some(s(8)));
    assert_eq!(sim.at(ms(8100), Opened { input: 1 }), vec![]);
    // The backup's first data switches, and only then is the primary closed.
    assert_eq!(
        sim.at(ms(8200), Data { input: 1 }),
        vec![Activate { input: 1, reason: SwitchReason::Timeout }, Close { input: 0 }]
    );
    assert_eq!(sim.state(0), InputState::Backoff { until: ms(9200) });
    // Primary reconnects with backoff 1, 2, 4, 8, 10, 10 s while the backup flows.
    let mut t = ms(9200);
    for wait in [2, 4, 8, 10, 10] {
        assert_eq!(sim.feed(1, sim.now + ms(500), t - ms(100)).len(), 0);
        assert_eq!(sim.tick_expect(t), vec![Open { input: 0 }]);
        assert_eq!(sim.at(t, OpenFailed { input: 0, permanent: false }), vec![]);
        t += s(wait);
        assert_eq!(sim.state(0), InputState::Backoff { until: t });
    }
    assert_eq!(sim.feed(1, sim.now + ms(500), t - ms(100)).len(), 0);
    assert_eq!(sim.tick_expect(t), vec![Open { input: 0 }]);
    assert_eq!(sim.at(t, Opened { input: 0 }), vec![]);
    // Both deliver; failback exactly 10 s after the primary's first data.
    let first = t + ms(100);
    let mut actions = Vec::new();
    let mut now = first;
    while now < first + s(10) {
        actions.extend(sim.at(now, Data { input: 0 }));
        actions.extend(sim.at(now + ms(1), Data { input: 1 }));
        now += ms(500);
    }
    assert_eq!(actions, vec![]);
    assert_eq!(sim.sup.next_deadline(), Some(first + s(10)));
    assert_eq!(
        sim.at(first + s(10), Data { input: 0 }),
        vec![Activate { input: 0, reason: SwitchReason::Failback }, Close { input: 1 }]
    );
    let reasons: Vec<_> = sim.sup.history().iter().map(|w| (w.from, w.to, w.reason)).collect();
    assert_eq!(
        reasons,
        vec![(None, 0, SwitchReason::Start), (Some(0), 1, SwitchReason::Timeout), (Some(1), 0, SwitchReason::Failback)]
    );
    // A reset after the successful open: the next failure waits 1 s again.
    assert_eq!(sim.at(first + s(11), Failed { input: 0, permanent: false }), vec![]);
    assert_eq!(sim.state(0), InputState::Backoff { until: first + s(12) });
}

#[test]
fn transient_failure_of_active_reconnects_without_switching() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.at(s(1), Failed { input: 0, permanent: false }), vec![]);
    assert_eq!(sim.sup.active(), Some(0));
    assert_eq!(sim.tick_expect(s(2)), vec![Open { input: 0 }]);
    assert_eq!(sim.at(ms(2100), Opened { input: 0 }), vec![]);
    assert_eq!(sim.at(ms(2200), Data { input: 0 }), vec![]);
    assert_eq!(sim.sup.active(), Some(0));
    assert_eq!(sim.state(1), InputState::Closed);
    assert_eq!(sim.sup.history().len(), 1);
}

#[test]
fn failing_reconnects_switch_with_reason_error_after_timeout() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.at(s(1), Failed { input: 0, permanent: false }), vec![]);
    assert_eq!(sim.tick_expect(s(2)), vec![Open { input: 0 }]);
    assert_eq!(sim.at(s(2), OpenFailed { input: 0, permanent: false }), vec![]);
    // Next retry at 4 s, but the timeout (last data 0.2 s + 3 s) comes first.
    assert_eq!(sim.tick_expect(ms(3200)), vec![Open { input: 1 }]);
    assert_eq!(sim.at(ms(3300), Opened { input: 1 }), vec![]);
    assert_eq!(sim.at(ms(3400), Data { input: 1 }), vec![Activate { input: 1, reason: SwitchReason::Error }]);
    // The primary keeps its backoff (nothing to close) and is retried for failback.
    assert_eq!(sim.tick_expect(s(4)), vec![Open { input: 0 }]);
}

#[test]
fn permanent_failure_takes_the_input_out_for_good() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.at(s(1), Failed { input: 0, permanent: true }), vec![Open { input: 1 }]);
    assert_eq!(sim.sup.active(), None);
    assert_eq!(sim.state(0), InputState::Failed);
    assert_eq!(sim.at(ms(1100), Opened { input: 1 }), vec![]);
    assert_eq!(sim.at(ms(1200), Data { input: 1 }), vec![Activate { input: 1, reason: SwitchReason::Error }]);
    assert_eq!(sim.sup.history()[1].from, Some(0));
    // A minute of data: the failed primary is never reopened.
    assert_eq!(sim.feed(1, ms(1700), s(60)), vec![]);
    assert!(!sim.sup.finished());
}

#[test]
fn eof_fails_over_and_the_stream_ends_when_no_input_is_left() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.at(s(1), Ended { input: 0 }), vec![Open { input: 1 }]);
    assert_eq!(sim.at(ms(1100), Opened { input: 1 }), vec![]);
    assert_eq!(sim.at(ms(1200), Data { input: 1 }), vec![Activate { input: 1, reason: SwitchReason::Ended }]);
    assert!(!sim.sup.finished());
    assert_eq!(sim.at(s(2), Ended { input: 1 }), vec![]);
    assert_eq!(sim.sup.active(), None);
    assert!(sim.sup.finished());
    assert_eq!(sim.sup.next_deadline(), None);
}

#[test]
fn manual_switch_is_make_before_break_and_pins() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.at(s(1), ManualSwitch { input: 1 }), vec![Open { input: 1 }]);
    assert_eq!(sim.at(ms(1100), Opened { input: 1 }), vec![]);
    assert_eq!(sim.sup.active(), Some(0));
    assert_eq!(
        sim.at(ms(1200), Data { input: 1 }),
        vec![Activate { input: 1, reason: SwitchReason::Manual }, Close { input: 0 }]
    );
    // Pinned: the healthy primary is not reopened for failback.
    assert_eq!(sim.feed(1, ms(1700), s(30)), vec![]);
    assert_eq!(sim.state(0), InputState::Closed);
    // The pinned input degrades: failover resumes, to the primary.
    assert_eq!(sim.tick_expect(ms(32700)), vec![Open { input: 0 }]);
    assert_eq!(sim.at(ms(33100), Opened { input: 0 }), vec![]);
    assert_eq!(
        sim.at(ms(33200), Data { input: 0 }),
        vec![Activate { input: 0, reason: SwitchReason::Timeout }, Close { input: 1 }]
    );
}

#[test]
fn manual_switch_revives_an_ended_input_and_to_active_is_no_switch() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.at(s(1), ManualSwitch { input: 0 }), vec![]);
    assert_eq!(sim.sup.history().len(), 1);
    assert_eq!(sim.at(s(1), ManualSwitch { input: 9 }), vec![]);
    assert_eq!(sim.at(s(2), Ended { input: 0 }), vec![Open { input: 1 }]);
    assert_eq!(sim.at(ms(2100), Opened { input: 1 }), vec![]);
    assert_eq!(sim.at(ms(2200), Data { input: 1 }), vec![Activate { input: 1, reason: SwitchReason::Ended }]);
    assert_eq!(sim.at(s(3), ManualSwitch { input: 0 }), vec![Open { input: 0 }]);
    assert_eq!(sim.at(ms(3100), Opened { input: 0 }), vec![]);
    assert_eq!(
        sim.at(ms(3200), Data { input: 0 }),
        vec![Activate { input: 0, reason: SwitchReason::Manual }, Close { input: 1 }]
    );
}

#[test]
fn manual_target_that_stays_silent_is_abandoned() {
    let mut sim = Sim::started(2);
    sim.feed(0, ms(500), s(1));
    assert_eq!(sim.at(s(1), ManualSwitch { input: 1 }), vec![Open { input: 1 }]);
    assert_eq!(sim.at(ms(1100), Opened { input: 1 }), vec![]);
    assert_eq!(sim.feed(0, ms(1500), s(4)), vec![Close { input: 1 }]);
    assert_eq!(sim.sup.active(), Some(0));
    // Abandoned, not retried: input 1 is below the active one.
    assert_eq!(sim.feed(0, ms(4500), s(20)), vec![]);
}

#[test]
fn input_added_above_the_active_takes_over_on_first_data() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.at(s(1), InputAdded { at: 0 }), vec![Open { input: 0 }]);
    assert_eq!(sim.sup.active(), Some(1));
    assert_eq!(sim.at(ms(1100), Opened { input: 0 }), vec![]);
    assert_eq!(
        sim.at(ms(1200), Data { input: 0 }),
        vec![Activate { input: 0, reason: SwitchReason::InputAdded }, Close { input: 1 }]
    );
    assert_eq!(sim.sup.inputs(), 3);
}

#[test]
fn input_added_below_the_active_stays_closed() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.at(s(1), InputAdded { at: 7 }), vec![]);
    assert_eq!(sim.sup.inputs(), 3);
    assert_eq!(sim.state(2), InputState::Closed);
    assert_eq!(sim.sup.active(), Some(0));
}

#[test]
fn removing_the_active_closes_it_and_opens_the_next() {
    let mut sim = Sim::started(3);
    assert_eq!(sim.at(s(1), InputRemoved { input: 0 }), vec![Close { input: 0 }, Open { input: 0 }]);
    assert_eq!(sim.sup.active(), None);
    assert_eq!(sim.at(ms(1100), Opened { input: 0 }), vec![]);
    assert_eq!(sim.at(ms(1200), Data { input: 0 }), vec![Activate { input: 0, reason: SwitchReason::InputRemoved }]);
    assert_eq!(sim.sup.history()[1].from, None);
}

#[test]
fn removing_an_input_above_the_active_shifts_indices() {
    let mut sim = Sim::started(3);
    assert_eq!(sim.at(s(1), ManualSwitch { input: 2 }), vec![Open { input: 2 }]);
    sim.at(ms(1100), Opened { input: 2 });
    sim.at(ms(1200), Data { input: 2 });
    assert_eq!(sim.sup.active(), Some(2));
    assert_eq!(sim.at(s(2), InputRemoved { input: 0 }), vec![]);
    assert_eq!(sim.sup.active(), Some(1));
    assert_eq!(sim.at(s(2), InputRemoved { input: 5 }), vec![]);
    assert_eq!(sim.sup.inputs(), 2);
}

#[test]
fn silent_candidate_is_replaced_by_the_next() {
    let mut sim = Sim::started(3);
    assert_eq!(sim.tick_expect(ms(3200)), vec![Open { input: 1 }]);
    assert_eq!(sim.at(ms(3300), Opened { input: 1 }), vec![]);
    // Input 1 opened but stays silent for 3 s: closed, input 2 tried.
    assert_eq!(sim.tick_expect(ms(6200)), vec![Close { input: 1 }, Open { input: 2 }]);
    assert_eq!(sim.at(ms(6300), Opened { input: 2 }), vec![]);
    assert_eq!(
        sim.at(ms(6400), Data { input: 2 }),
        vec![Activate { input: 2, reason: SwitchReason::Timeout }, Close { input: 0 }]
    );
    // Both higher inputs are now retried for failback.
    assert_eq!(sim.tick_expect(ms(7200)), vec![Open { input: 1 }]);
    assert_eq!(sim.tick_expect(ms(7400)), vec![Open { input: 0 }]);
}

#[test]
fn active_recovering_cancels_the_switch() {
    let mut sim = Sim::started(2);
    assert_eq!(sim.tick_expect(ms(3200)), vec![Open { input: 1 }]);
    assert_eq!(sim.at(ms(3300), Opened { input: 1 }), vec![]);
    assert_eq!(sim.at(ms(3400), Data { input: 0 }), vec![Close { input: 1 }]);
    assert_eq!(sim.sup.active(), Some(0));
    assert_eq!(sim.sup.health(0).unwrap().degraded_since, None);
}

#[test]
fn all_inputs_failing_keep_retrying_with_bounded_backoff() {
    let mut sim = Sim::new(2);
    let mut opens: Vec<Vec<Duration>> = vec![Vec::new(), Vec::new()];
    let mut pending = sim.at(s(0), Tick);
    // Bounded: 2 minutes of virtual time, at most 1000 steps.
    for _ in 0..1000 {
        while let Some(a) = pending.pop() {
            match a {
                Open { input } => {
                    opens[input].push(sim.now);
                    pending.extend(sim.at(sim.now, OpenFailed { input, permanent: false }));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        let Some(d) = sim.sup.next_deadline() else { panic!("no deadline while inputs are left") };
        if d > s(120) {
            break;
        }
        pending = sim.at(d, Tick);
    }
    assert_eq!(sim.sup.active(), None);
    for o in &opens {
        assert!(o.len() >= 10, "too few retries: {o:?}");
        let gaps: Vec<_> = o.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|g| *g >= s(1) && *g <= s(10)), "gaps {gaps:?}");
        assert_eq!(&gaps[..5], &[s(1), s(2), s(4), s(8), s(10)]);
    }
}

#[test]
fn stale_and_out_of_range_events_are_ignored() {
    let mut sim = Sim::started(2);
    for e in [
        Data { input: 1 },
        Opened { input: 1 },
        OpenFailed { input: 0, permanent: true },
        Failed { input: 1, permanent: true },
        Ended { input: 1 },
        Data { input: 7 },
        Failed { input: 7, permanent: false },
    ] {
        assert_eq!(sim.at(ms(300), e), vec![], "{e:?}");
    }
    assert_eq!(sim.state(1), InputState::Closed);
    assert_eq!(sim.sup.active(), Some(0));
    assert_eq!(sim.sup.health(7), None);
}

#[test]
fn zero_config_cannot_spin() {
    let zero = SupervisorConfig {
        input_timeout: Duration::ZERO,
        failback_after: Duration::ZERO,
        backoff_min: Duration::ZERO,
        backoff_max: Duration::ZERO,
    };
    let mut sup = Supervisor::new(2, zero);
    let mut actions = Vec::new();
    sup.handle(s(1), Tick, &mut actions);
    sup.handle(s(1), OpenFailed { input: 0, permanent: false }, &mut actions);
    assert!(sup.next_deadline().is_some_and(|d| d > s(1)));
    assert_eq!(sup.config().backoff_max, ms(1));
}

#[test]
fn inputs_and_history_are_bounded() {
    let mut sim = Sim::started(2);
    for _ in 0..MAX_INPUTS {
        sim.at(s(1), InputAdded { at: 99 });
    }
    assert_eq!(sim.sup.inputs(), MAX_INPUTS);
    let mut t = s(2);
    for k in 0..30 {
        let target = 1 - k % 2;
        sim.at(t, ManualSwitch { input: target });
        sim.at(t + ms(10), Opened { input: target });
        sim.at(t + ms(20), Data { input: target });
        assert_eq!(sim.sup.active(), Some(target));
        t += s(1);
    }
    let h = sim.sup.history();
    assert_eq!(h.len(), HISTORY_LEN);
    assert!(h.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(h.last().map(|w| w.to), Some(0));
}

/// One random step: a time advance and an event.
fn step() -> impl Strategy<Value = (u64, Event)> {
    let i = 0usize..6;
    let event = prop_oneof![
        i.clone().prop_map(|input| Opened { input }),
        (i.clone(), any::<bool>())
            .prop_map(|(input, permanent)| OpenFailed { input, permanent: permanent && input % 3 == 0 }),
        i.clone().prop_map(|input| Data { input }),
        i.clone().prop_map(|input| Data { input }),
        (i.clone(), any::<bool>())
            .prop_map(|(input, permanent)| Failed { input, permanent: permanent && input % 3 == 0 }),
        i.clone().prop_map(|input| Ended { input }),
        i.clone().prop_map(|input| ManualSwitch { input }),
        i.clone().prop_map(|at| InputAdded { at }),
        i.prop_map(|input| InputRemoved { input }),
        Just(Tick),
        Just(Tick),
    ];
    (0u64..4000, event)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn invariants_hold_on_random_events(inputs in 0usize..5, steps in prop::collection::vec(step(), 1..200)) {
        let config = SupervisorConfig::default();
        let mut sup = Supervisor::new(inputs, config);
        // What the shell believes is open, kept by following the actions.
        let mut shell_open = vec![false; sup.inputs()];
        let mut now = Duration::ZERO;
        let mut actions = Vec::new();
        for (dt, event) in steps {
            // Half the steps jump to the supervisor's deadline instead.
            now = match (event, sup.next_deadline()) {
                (Tick, Some(d)) => d,
                _ => now + ms(dt),
            };
            // Mirror the shell: events that close a reader.
            let before: Vec<InputState> = (0..sup.inputs()).map(|i| sup.health(i).unwrap().state).collect();
            let n_before = sup.inputs();
            actions.clear();
            sup.handle(now, event, &mut actions);
            match event {
                OpenFailed { input, .. } if before.get(input) == Some(&InputState::Opening) => shell_open[input] = false,
                Failed { input, .. } | Ended { input }
                    if matches!(before.get(input), Some(InputState::Open | InputState::Opening)) => shell_open[input] = false,
                _ => {}
            }
            let mut rest = &actions[..];
            if let InputRemoved { input: r } = event {
                if r < n_before {
                    // A removed open input is closed first, under its old index.
                    if matches!(before[r], InputState::Open | InputState::Opening) {
                        prop_assert_eq!(rest.first(), Some(&Close { input: r }));
                        prop_assert!(shell_open[r]);
                        shell_open[r] = false;
                        rest = &rest[1..];
                    }
                    prop_assert!(!shell_open[r], "removed input {} left open", r);
                    shell_open.remove(r);
                }
            }
            if let InputAdded { at } = event {
                if sup.inputs() > shell_open.len() {
                    shell_open.insert(at.min(shell_open.len()), false);
                }
            }
            for a in rest {
                match *a {
                    Close { input } => {
                        prop_assert!(input < sup.inputs());
                        prop_assert!(shell_open[input], "close of closed input {}", input);
                        shell_open[input] = false;
                    }
                    Open { input } => {
                        prop_assert!(input < sup.inputs());
                        prop_assert!(!shell_open[input], "open of open input {}", input);
                        shell_open[input] = true;
                    }
                    Activate { input, .. } => prop_assert!(input < sup.inputs()),
                }
            }
            prop_assert_eq!(shell_open.len(), sup.inputs());
            for (i, open) in shell_open.iter().enumerate() {
                let st = sup.health(i).unwrap().state;
                prop_assert_eq!(*open, matches!(st, InputState::Open | InputState::Opening), "input {} {:?}", i, st);
                if let InputState::Backoff { until } = st {
                    // A wait is within [min, max] of when it started, so never beyond now + max.
                    prop_assert!(until <= now + config.backoff_max);
                    // A wait that started in this step is within [min, max] of now.
                    let same_indices = !matches!(event, InputAdded { .. } | InputRemoved { .. });
                    if same_indices && before[i] != st {
                        prop_assert!(until >= now + config.backoff_min, "wait {:?} at {:?}", until, now);
                    }
                }
            }
            if let Some(a) = sup.active() {
                prop_assert!(a < sup.inputs());
                let st = sup.health(a).unwrap().state;
                prop_assert!(matches!(st, InputState::Open | InputState::Opening | InputState::Backoff { .. }), "active {:?}", st);
            }
            let h = sup.history();
            prop_assert!(h.len() <= HISTORY_LEN);
            prop_assert!(h.windows(2).all(|w| w[0].at <= w[1].at));
            prop_assert!(sup.next_deadline().is_none_or(|d| d > now));
            prop_assert!(sup.inputs() <= MAX_INPUTS);
        }
    }
}

/// A world where some inputs work (open and deliver every 500 ms) and the
/// rest fail every open; time advances in 100 ms steps for 90 s.
fn run_world(working: &[bool], permanent: bool) -> (Supervisor, usize) {
    let mut sup = Supervisor::new(working.len(), SupervisorConfig::default());
    let mut open = vec![false; working.len()];
    let mut actions_total = 0;
    let mut queue = Vec::new();
    for step in 0..900u64 {
        let now = ms(step * 100);
        let mut events = vec![Tick];
        if step % 5 == 0 {
            events.extend((0..working.len()).filter(|&i| open[i]).map(|input| Data { input }));
        }
        for e in events {
            sup.handle(now, e, &mut queue);
            // Answer opens at once; bounded because each answer is one event.
            while let Some(a) = queue.pop() {
                actions_total += 1;
                match a {
                    Open { input } if working[input] => {
                        open[input] = true;
                        sup.handle(now, Opened { input }, &mut queue);
                    }
                    Open { input } => sup.handle(now, OpenFailed { input, permanent }, &mut queue),
                    Close { input } => open[input] = false,
                    Activate { .. } => {}
                }
            }
        }
    }
    (sup, actions_total)
}

#[test]
fn world_without_working_inputs_never_activates() {
    let (sup, actions) = run_world(&[false, false, false], false);
    assert_eq!(sup.active(), None);
    // Three inputs retried at most every 1..10 s for 90 s: far below a spin.
    assert!(actions < 200, "{actions} actions");
    let (sup, _) = run_world(&[false, false], true);
    assert!(sup.finished());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn settles_on_the_best_working_input(working in prop::collection::vec(any::<bool>(), 1..6), permanent in any::<bool>()) {
        let (sup, actions) = run_world(&working, permanent);
        prop_assert_eq!(sup.active(), working.iter().position(|w| *w));
        prop_assert!(actions < 1000, "{} actions", actions);
        // Settled: only the active input (and, with transient failures, the
        // retried higher ones) is open; nothing below it.
        if let Some(a) = sup.active() {
            for i in a + 1..working.len() {
                let st = sup.health(i).unwrap().state;
                prop_assert!(!matches!(st, InputState::Open | InputState::Opening), "input {} {:?}", i, st);
            }
        }
    }
}

#[test]
fn a_lone_silent_input_stays_open_instead_of_churning() {
    let mut sim = Sim::new(1);
    assert_eq!(sim.at(s(0), Tick), vec![Open { input: 0 }]);
    assert!(sim.at(s(0), Opened { input: 0 }).is_empty());
    // Nothing to fail over to: no deadline, no close, however long.
    assert_eq!(sim.sup.next_deadline(), None);
    assert!(sim.at(s(600), Tick).is_empty());
    assert_eq!(sim.state(0), InputState::Open);
    assert_eq!(sim.sup.health(0).unwrap().failures_total, 0);
    // Data when it finally comes activates it.
    assert_eq!(sim.at(s(601), Data { input: 0 }), vec![Activate { input: 0, reason: SwitchReason::Start }]);
}
