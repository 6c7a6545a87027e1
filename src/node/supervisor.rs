//! The per-stream input supervisor: a state machine without I/O.
//!
//! A stream has up to [`MAX_INPUTS`] inputs in priority order (index 0 is
//! the most preferred). The shell feeds [`Event`]s with the time `now` (a
//! [`Duration`] since the stream started, never a clock read) and carries out
//! the [`Action`]s it gets back; it sends [`Event::Tick`] at
//! [`Supervisor::next_deadline`]. Nothing here opens sockets or sleeps.
//!
//! # Input states
//!
//! Each input is in one [`InputState`]: `Closed` (not wanted, may be opened
//! at once), `Opening` (an [`Action::Open`] is outstanding), `Open`
//! (delivering or expected to deliver data), `Backoff { until }` (failed or
//! timed out; not reopened before `until`), `Ended` (clean end of data) or
//! `Failed` (permanent failure). `Ended` and `Failed` inputs are out of
//! rotation: they are never reopened on their own, only by a manual switch.
//! When every input is out of rotation, [`Supervisor::finished`] is true and
//! the shell ends the stream. So EOF of a non-looping input is a failover
//! to the next input, not an error retried forever.
//!
//! Retries back off per input: the first waits `backoff_min` (1 s), each
//! further failure doubles the wait up to `backoff_max` (10 s), and a
//! successful open resets it to `backoff_min`.
//!
//! # The active input
//!
//! The active input is the one whose data the outputs take; only an
//! [`Action::Activate`] changes it. It is never `Closed`, `Ended` or
//! `Failed`. A transient failure of the active input does not switch at
//! once: it reconnects with backoff and stays active. It is *degraded* when
//! it delivered no data for `input_timeout` (3 s, counted from its last data
//! or its activation, across reconnects); a permanent failure, an EOF or its
//! removal also give it up. Then a replacement is needed.
//!
//! # Which inputs are open
//!
//! - the active input;
//! - while failback is allowed (not pinned by a manual switch, or a
//!   replacement is needed): every in-rotation input of higher priority
//!   than the active one (or the last active one), reconnected with backoff
//!   and proven by its data for failback;
//! - while a replacement is needed: one *candidate*, the first in-rotation
//!   input not waiting out a backoff, searched from the active (or last
//!   active) position downwards, wrapping around;
//! - the target of a pending manual switch.
//!
//! Every other input is closed. A non-active input that is open (or opening)
//! and delivers no data for `input_timeout` is closed and backs off,
//! unless it is the only input in rotation (closing it would make room for
//! nothing; reopening a socket nobody sends to only churns). A
//! degraded active input that is still open stays open until a replacement
//! delivers (multicast, for one, may simply resume); a reader whose
//! transport hangs must report `Failed` itself.
//!
//! # Make-before-break, failback, manual switch
//!
//! A replacement is activated only on its first data, and the old input is
//! closed after the [`Action::Activate`], never before: the outputs are not
//! left without a source that could still recover. When a replacement is
//! needed, the highest-priority open input that has delivered data is
//! activated. Failback: a higher-priority input that has delivered data
//! without a gap of `input_timeout` for `failback_after` (10 s) is
//! activated. An input added with higher priority than the active one is
//! activated on its first data (the operator asked for it). A manual switch
//! opens its target, activates it on its first data and pins it: failback
//! is off until the pinned input is degraded. A manual switch to an `Ended`
//! or `Failed` input puts it back in rotation. Removing the active input
//! closes it at once (it is gone; nothing to make before the break).
//!
//! The last [`HISTORY_LEN`] switches are kept, newest last. Input indices in
//! the history are those at the time of the switch.
//!
//! Invariants (checked by the property test): at most one active input, and
//! it is opening, open or in backoff; every action names an input in range;
//! history is bounded and time-ordered; backoff waits stay within
//! `[backoff_min, backoff_max]`; [`Supervisor::next_deadline`] is after the
//! last `now`. Time going backwards is treated as no time passing.

use std::time::Duration;

mod types;

pub use types::{Action, Event, InputHealth, InputState, SupervisorConfig, Switch, SwitchReason};

/// Most inputs one stream may have; [`Event::InputAdded`] beyond it is ignored.
pub const MAX_INPUTS: usize = 16;
/// How many switches [`Supervisor::history`] keeps.
pub const HISTORY_LEN: usize = 20;
/// Floor for every configured duration, so no deadline can repeat at once.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// Per-input bookkeeping.
#[derive(Clone, Copy, Debug)]
struct Slot {
    state: InputState,
    /// Wait for the next failure's backoff.
    step: Duration,
    /// When the current open was asked for.
    open_at: Duration,
    last_data: Option<Duration>,
    healthy_since: Option<Duration>,
    degraded_since: Option<Duration>,
    /// A transient failure happened since the last data (reason Error, not Timeout).
    failed_since_data: bool,
    /// Added at run time and not yet activated.
    fresh: bool,
    opens_total: u64,
    failures_total: u64,
}

impl Slot {
    fn new(step: Duration, fresh: bool) -> Slot {
        Slot {
            state: InputState::Closed,
            step,
            open_at: Duration::ZERO,
            last_data: None,
            healthy_since: None,
            degraded_since: None,
            failed_since_data: false,
            fresh,
            opens_total: 0,
            failures_total: 0,
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.state, InputState::Opening | InputState::Open)
    }

    fn in_rotation(&self) -> bool {
        !matches!(self.state, InputState::Ended | InputState::Failed)
    }

    /// May be opened now: closed, or its backoff is over, or already open.
    fn available(&self, now: Duration) -> bool {
        match self.state {
            InputState::Closed | InputState::Opening | InputState::Open => true,
            InputState::Backoff { until } => until <= now,
            InputState::Ended | InputState::Failed => false,
        }
    }

    /// When an open, non-active input times out without data.
    fn silence_deadline(&self, timeout: Duration) -> Duration {
        self.last_data.unwrap_or(Duration::ZERO).max(self.open_at).saturating_add(timeout)
    }
}

/// The per-stream supervisor. See the module doc for the rules.
#[derive(Clone, Debug)]
pub struct Supervisor {
    config: SupervisorConfig,
    inputs: Vec<Slot>,
    active: Option<usize>,
    active_since: Duration,
    /// Position of the active (or last active) input: inputs above it are
    /// retried for failback, the candidate search starts here.
    anchor: usize,
    /// The last active input when none is active, for the history.
    prev_active: Option<usize>,
    /// Reason for the next activation while no input is active.
    pending_reason: SwitchReason,
    manual_target: Option<usize>,
    pinned: bool,
    history: Vec<Switch>,
    now: Duration,
}

impl Supervisor {
    /// A supervisor for `inputs` inputs (at most [`MAX_INPUTS`]; more are
    /// dropped). Durations below 1 ms are raised to 1 ms and `backoff_max`
    /// to at least `backoff_min`, so a zero config cannot spin. Send a
    /// [`Event::Tick`] at time zero to get the first [`Action::Open`].
    pub fn new(inputs: usize, config: SupervisorConfig) -> Supervisor {
        let backoff_min = config.backoff_min.max(MIN_DURATION);
        let config = SupervisorConfig {
            input_timeout: config.input_timeout.max(MIN_DURATION),
            failback_after: config.failback_after.max(MIN_DURATION),
            backoff_min,
            backoff_max: config.backoff_max.max(backoff_min),
        };
        Supervisor {
            config,
            inputs: vec![Slot::new(backoff_min, false); inputs.min(MAX_INPUTS)],
            active: None,
            active_since: Duration::ZERO,
            anchor: 0,
            prev_active: None,
            pending_reason: SwitchReason::Start,
            manual_target: None,
            pinned: false,
            history: Vec::with_capacity(HISTORY_LEN),
            now: Duration::ZERO,
        }
    }

    /// The configuration in force (after the floors of [`Supervisor::new`]).
    pub fn config(&self) -> &SupervisorConfig {
        &self.config
    }

    /// Number of inputs.
    pub fn inputs(&self) -> usize {
        self.inputs.len()
    }

    /// The input the outputs take data from.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// True when no input is left in rotation: the stream is over.
    pub fn finished(&self) -> bool {
        !self.inputs.iter().any(Slot::in_rotation)
    }

    /// A snapshot of one input; `None` when out of range.
    pub fn health(&self, input: usize) -> Option<InputHealth> {
        self.inputs.get(input).map(|s| InputHealth {
            state: s.state,
            opens_total: s.opens_total,
            failures_total: s.failures_total,
            last_data: s.last_data,
            healthy_since: s.healthy_since,
            degraded_since: s.degraded_since,
            next_retry: match s.state {
                InputState::Backoff { until } => Some(until),
                _ => None,
            },
        })
    }

    /// The last [`HISTORY_LEN`] switches, oldest first.
    pub fn history(&self) -> &[Switch] {
        &self.history
    }

    /// Handle one event at `now` and append the resulting actions.
    pub fn handle(&mut self, now: Duration, event: Event, actions: &mut Vec<Action>) {
        // A clock going backwards must not reorder history or re-arm deadlines.
        let now = now.max(self.now);
        self.now = now;
        self.apply(now, event, actions);
        self.reconcile(now, actions);
    }

    /// When to send the next [`Event::Tick`]; always after the last `now`.
    pub fn next_deadline(&self) -> Option<Duration> {
        let now = self.now;
        let alone = self.alone();
        let timeout = self.config.input_timeout;
        let needs = self.needs_replacement();
        let failback = !self.pinned && !needs;
        let mut next: Option<Duration> = None;
        let mut consider = |t: Duration| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        for (i, s) in self.inputs.iter().enumerate() {
            if Some(i) == self.active {
                if s.degraded_since.is_none() {
                    consider(s.last_data.unwrap_or(Duration::ZERO).max(self.active_since).saturating_add(timeout));
                }
            } else if s.is_open() {
                if !alone {
                    consider(s.silence_deadline(timeout));
                }
                if let (true, Some(a), Some(h)) = (failback, self.active, s.healthy_since) {
                    if i < a {
                        consider(h.saturating_add(self.config.failback_after));
                    }
                }
            }
            // Only backoffs that end in the future matter; an expired one of
            // an unwanted input would otherwise ask for a Tick in a loop.
            if let InputState::Backoff { until } = s.state {
                consider(until);
            }
        }
        next
    }

    fn needs_replacement(&self) -> bool {
        match self.active {
            None => true,
            Some(a) => self.inputs.get(a).is_none_or(|s| s.degraded_since.is_some()),
        }
    }

    /// Apply one event to the bookkeeping; the rules run in `reconcile`.
    fn apply(&mut self, now: Duration, event: Event, actions: &mut Vec<Action>) {
        match event {
            Event::Opened { input } => {
                if let Some(s) = self.inputs.get_mut(input).filter(|s| s.state == InputState::Opening) {
                    s.state = InputState::Open;
                    s.opens_total += 1;
                    s.step = self.config.backoff_min;
                }
            }
            Event::OpenFailed { input, permanent } => {
                if self.inputs.get(input).is_some_and(|s| s.state == InputState::Opening) {
                    self.fail(now, input, permanent);
                }
            }
            Event::Failed { input, permanent } => {
                if self.inputs.get(input).is_some_and(Slot::is_open) {
                    self.fail(now, input, permanent);
                }
            }
            Event::Ended { input } => {
                if self.inputs.get(input).is_some_and(Slot::is_open) {
                    self.take_out(now, input, InputState::Ended, SwitchReason::Ended);
                }
            }
            Event::Data { input } => {
                if let Some(s) = self.inputs.get_mut(input).filter(|s| s.state == InputState::Open) {
                    s.last_data = Some(now);
                    s.healthy_since.get_or_insert(now);
                    s.degraded_since = None;
                    s.failed_since_data = false;
                }
            }
            Event::ManualSwitch { input } => self.manual(input),
            Event::InputAdded { at } => self.add(at),
            Event::InputRemoved { input } => self.remove(input, actions),
            Event::Tick => {}
        }
    }

    /// A failure of an opening or open input (the shell has closed it).
    fn fail(&mut self, now: Duration, input: usize, permanent: bool) {
        if permanent {
            self.take_out(now, input, InputState::Failed, SwitchReason::Error);
            return;
        }
        let max = self.config.backoff_max;
        if let Some(s) = self.inputs.get_mut(input) {
            s.state = InputState::Backoff { until: now.saturating_add(s.step) };
            s.step = s.step.saturating_mul(2).min(max);
            s.failures_total += 1;
            s.healthy_since = None;
            // The active input reconnects first; only its timeout degrades it.
            if Some(input) != self.active {
                s.degraded_since.get_or_insert(now);
            }
            s.failed_since_data = true;
            s.fresh = false;
        }
        if self.manual_target == Some(input) {
            self.manual_target = None;
        }
    }

    /// EOF or permanent failure: out of rotation; the active one is given up.
    fn take_out(&mut self, now: Duration, input: usize, state: InputState, reason: SwitchReason) {
        if let Some(s) = self.inputs.get_mut(input) {
            s.state = state;
            s.healthy_since = None;
            s.degraded_since.get_or_insert(now);
            s.fresh = false;
            if state == InputState::Failed {
                s.failures_total += 1;
            }
        }
        if self.manual_target == Some(input) {
            self.manual_target = None;
        }
        if self.active == Some(input) {
            self.give_up_active(reason);
        }
    }

    fn give_up_active(&mut self, reason: SwitchReason) {
        self.prev_active = self.active.take();
        self.pending_reason = reason;
        self.pinned = false;
    }

    fn manual(&mut self, input: usize) {
        let min = self.config.backoff_min;
        let Some(s) = self.inputs.get_mut(input) else { return };
        if !s.in_rotation() {
            // The operator overrides EOF or a permanent failure.
            s.state = InputState::Closed;
            s.step = min;
        }
        if self.active == Some(input) {
            self.manual_target = None;
            self.pinned = true;
        } else {
            self.manual_target = Some(input);
        }
    }

    fn add(&mut self, at: usize) {
        if self.inputs.len() >= MAX_INPUTS {
            return;
        }
        let at = at.min(self.inputs.len());
        self.inputs.insert(at, Slot::new(self.config.backoff_min, true));
        let shift = |i: &mut usize| {
            if *i >= at {
                *i += 1;
            }
        };
        if let Some(a) = self.active.as_mut() {
            shift(a);
        }
        if let Some(p) = self.prev_active.as_mut() {
            shift(p);
        }
        if let Some(m) = self.manual_target.as_mut() {
            shift(m);
        }
        if self.anchor >= at && self.inputs.len() > 1 {
            self.anchor += 1;
        }
    }

    fn remove(&mut self, input: usize, actions: &mut Vec<Action>) {
        let Some(s) = self.inputs.get(input) else { return };
        if s.is_open() {
            actions.push(Action::Close { input });
        }
        self.inputs.remove(input);
        let fix = |i: Option<usize>| match i {
            Some(i) if i == input => None,
            Some(i) if i > input => Some(i - 1),
            other => other,
        };
        if self.active == Some(input) {
            self.active = None;
            self.prev_active = None;
            self.pending_reason = SwitchReason::InputRemoved;
            self.pinned = false;
        }
        self.active = fix(self.active);
        self.prev_active = fix(self.prev_active);
        self.manual_target = fix(self.manual_target);
        // The anchor keeps pointing at the same position, which now holds
        // the next input: the candidate search starts there.
        if self.anchor > input {
            self.anchor -= 1;
        }
        self.anchor = self.anchor.min(self.inputs.len().saturating_sub(1));
    }

    /// Run the rules until nothing changes (bounded: each pass that acts
    /// activates or closes something, and there are few inputs).
    fn reconcile(&mut self, now: Duration, actions: &mut Vec<Action>) {
        for _ in 0..2 * MAX_INPUTS + 4 {
            let before = actions.len();
            self.timeouts(now, actions);
            self.activation(now, actions);
            self.open_close(now, actions);
            if actions.len() == before {
                return;
            }
        }
    }

    /// Whether at most one input is in rotation: then a silent one is
    /// kept open, as closing it could not make room for another and
    /// reopening a socket nobody sends to only churns (a node with many
    /// idle streams would spend its time on it).
    fn alone(&self) -> bool {
        self.inputs.iter().filter(|s| s.in_rotation()).count() <= 1
    }

    fn timeouts(&mut self, now: Duration, actions: &mut Vec<Action>) {
        let timeout = self.config.input_timeout;
        let max = self.config.backoff_max;
        let alone = self.alone();
        for i in 0..self.inputs.len() {
            let s = &mut self.inputs[i];
            if Some(i) == self.active {
                let since = s.last_data.unwrap_or(Duration::ZERO).max(self.active_since);
                if s.degraded_since.is_none() && since.saturating_add(timeout) <= now {
                    s.degraded_since = Some(now);
                    s.healthy_since = None;
                    if !s.failed_since_data {
                        s.failures_total += 1;
                    }
                }
            } else if s.is_open() && !alone && s.silence_deadline(timeout) <= now {
                actions.push(Action::Close { input: i });
                s.state = InputState::Backoff { until: now.saturating_add(s.step) };
                s.step = s.step.saturating_mul(2).min(max);
                s.failures_total += 1;
                s.healthy_since = None;
                s.degraded_since.get_or_insert(now);
                s.fresh = false;
                if self.manual_target == Some(i) {
                    self.manual_target = None;
                }
            }
        }
    }

    fn activation(&mut self, now: Duration, actions: &mut Vec<Action>) {
        let proven = |s: &Slot| s.state == InputState::Open && s.healthy_since.is_some();
        if let Some(m) = self.manual_target.filter(|&m| self.inputs.get(m).is_some_and(proven)) {
            self.activate(now, m, SwitchReason::Manual, actions);
            return;
        }
        if self.needs_replacement() {
            let best = (0..self.inputs.len()).find(|&i| Some(i) != self.active && proven(&self.inputs[i]));
            if let Some(i) = best {
                let reason = match self.active {
                    Some(a) if self.inputs[a].failed_since_data => SwitchReason::Error,
                    Some(_) => SwitchReason::Timeout,
                    None => self.pending_reason,
                };
                self.activate(now, i, reason, actions);
            }
            return;
        }
        let (Some(a), false) = (self.active, self.pinned) else { return };
        let failback_after = self.config.failback_after;
        let ready = (0..a).find(|&i| {
            let s = &self.inputs[i];
            proven(s) && (s.fresh || s.healthy_since.is_some_and(|h| h.saturating_add(failback_after) <= now))
        });
        if let Some(i) = ready {
            self.activate(now, i, SwitchReason::Failback, actions);
        }
    }

    fn activate(&mut self, now: Duration, input: usize, reason: SwitchReason, actions: &mut Vec<Action>) {
        let Some(s) = self.inputs.get_mut(input) else { return };
        let reason = if s.fresh && reason != SwitchReason::Manual { SwitchReason::InputAdded } else { reason };
        s.fresh = false;
        s.degraded_since = None;
        let from = self.active.or(self.prev_active);
        if self.history.len() >= HISTORY_LEN {
            self.history.remove(0);
        }
        self.history.push(Switch { at: now, from, to: input, reason });
        actions.push(Action::Activate { input, reason });
        self.active = Some(input);
        self.prev_active = None;
        self.active_since = now;
        self.anchor = input;
        self.pinned = reason == SwitchReason::Manual;
        if self.manual_target == Some(input) {
            self.manual_target = None;
        }
    }

    fn open_close(&mut self, now: Duration, actions: &mut Vec<Action>) {
        let n = self.inputs.len();
        let mut wanted = [false; MAX_INPUTS];
        let needs = self.needs_replacement();
        if let Some(a) = self.active {
            wanted[a] = true;
        }
        if let Some(m) = self.manual_target {
            wanted[m] = true;
        }
        if !self.pinned || needs {
            for (i, w) in wanted.iter_mut().enumerate().take(self.anchor.min(n)) {
                *w = self.inputs[i].in_rotation();
            }
        }
        if needs && n > 0 {
            let candidate = (0..n)
                .map(|k| (self.anchor + k) % n)
                .find(|&i| Some(i) != self.active && self.inputs[i].available(now));
            if let Some(c) = candidate {
                wanted[c] = true;
            }
        }
        for (i, s) in self.inputs.iter_mut().enumerate() {
            if wanted[i] && s.available(now) && !s.is_open() {
                actions.push(Action::Open { input: i });
                s.state = InputState::Opening;
                s.open_at = now;
            } else if !wanted[i] && s.is_open() {
                actions.push(Action::Close { input: i });
                s.state = InputState::Closed;
                s.healthy_since = None;
            }
        }
    }
}

#[cfg(test)]
mod tests;
