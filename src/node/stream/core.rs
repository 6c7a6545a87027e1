//! A stream's state on its shard: the supervisor, the splicer, the monitor
//! and the hub's publisher, shared by the stream task and its input tasks
//! (one thread, so `Rc<RefCell<_>>`). Every supervisor event goes through
//! [`dispatch`], which carries out the actions at once: an input is opened
//! by spawning its task, closed by telling its task to stop, activated by
//! pointing the data path at it.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use crate::clock::{Clock, SystemClock};
use crate::config::StreamConfig;
use crate::hub::Publisher;
use crate::node::api::{InputStatus, OutputStatus, PoolUse, StreamDetail, StreamState, SwitchRecord};
use crate::node::directory::Directory;
use crate::node::splice::Splicer;
use crate::node::supervisor::{Action, Event, InputState, Supervisor, SupervisorConfig, SwitchReason};
use crate::output::udp::LiveCounters;
use crate::shard::Backend;
use crate::ts::filter::TsFilter;
use crate::ts::mix::MixCounters;
use crate::ts::monitor::StreamMonitor;

use super::input;

/// Data from an input refreshes the supervisor at most this often: its
/// timers count seconds, and a call per batch would cost the data path.
const DATA_EVENT_EVERY: Duration = Duration::from_millis(100);

/// The stream's shared state.
pub struct Core {
    /// When the stream started; supervisor time counts from here.
    pub started: Instant,
    /// The stream's definition.
    pub config: StreamConfig,
    /// The shard's I/O backend.
    pub backend: Backend,
    /// The shard's index.
    pub shard: usize,
    /// The node's streams, for inputs that read them.
    pub directory: Arc<Directory>,
    supervisor: Supervisor,
    splicer: Splicer,
    publisher: Publisher<Bytes>,
    monitor: StreamMonitor,
    active: Option<usize>,
    /// Per input, in priority order.
    pub inputs: Vec<InputSlot>,
    /// Wakes the stream task to look at the next deadline again.
    pub wake: Rc<Notify>,
    /// The outputs' live counters, with their URLs.
    pub outputs: Vec<(String, Arc<LiveCounters>)>,
    /// HTTP-TS clients (counted by the node's HTTP side).
    pub http: Arc<LiveCounters>,
    /// HTTP-TS clients connected now.
    pub http_clients: Arc<std::sync::atomic::AtomicU64>,
    switches_total: u64,
    spliced: Vec<Bytes>,
    /// Source of open ids.
    opens: u64,
}

/// Growth of a UDP input's counters since the last look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UdpDelta {
    /// Kernel drops.
    pub kernel_drops: u64,
    /// RTP sequence gaps.
    pub rtp_gaps: u64,
    /// Pool fallbacks.
    pub pool_fallbacks: u64,
    /// Pool drops.
    pub pool_drops: u64,
}

/// One input's run-time record.
#[derive(Default)]
pub struct InputSlot {
    /// Tells the running task to stop; `None` when no task runs.
    stop: Option<watch::Sender<bool>>,
    /// The current open's id (unique in the stream): a task knows its
    /// input by it, so its events stay right when inputs are added or
    /// removed, and are dropped once it is closed.
    open_id: u64,
    /// Bytes of TS read, over every open.
    pub bytes: u64,
    /// Kernel drops over every open (UDP).
    pub kernel_drops: u64,
    /// RTP sequence gaps over every open.
    pub rtp_gaps: u64,
    /// Upstream hub items missed (copy, mixer), over every open.
    pub lag_drops: u64,
    /// HLS segments that left the live window unfetched, over every open.
    pub segments_missed: u64,
    /// What a mixer dropped or repaired, over every open.
    pub mix: MixCounters,
    /// Pool use of the current open, counters over every open.
    pub pool: PoolUse,
    /// The last error, one line.
    pub last_error: Option<String>,
    /// When data was last reported to the supervisor.
    last_event: Option<Duration>,
    /// `program=`/`pids=` of this input.
    filter: Option<TsFilter>,
    filtered: Vec<Bytes>,
}

impl Core {
    /// The state of a stream that has not opened anything yet.
    pub fn new(
        config: StreamConfig,
        (backend, shard): (Backend, usize),
        publisher: Publisher<Bytes>,
        directory: Arc<Directory>,
        started: Instant,
    ) -> Core {
        let supervisor = Supervisor::new(
            config.inputs.len(),
            SupervisorConfig {
                input_timeout: config.input_timeout,
                failback_after: config.failback_after,
                ..SupervisorConfig::default()
            },
        );
        let inputs = config
            .inputs
            .iter()
            .map(|spec| {
                let filter = spec.filter();
                InputSlot { filter: (!filter.is_passthrough()).then(|| TsFilter::new(filter)), ..InputSlot::default() }
            })
            .collect();
        Core {
            started,
            config,
            backend,
            shard,
            directory,
            supervisor,
            splicer: Splicer::new(),
            publisher,
            monitor: StreamMonitor::new(),
            active: None,
            inputs,
            wake: Rc::new(Notify::new()),
            outputs: Vec::new(),
            http: Arc::new(LiveCounters::default()),
            http_clients: Arc::default(),
            switches_total: 0,
            spliced: Vec::new(),
            opens: 0,
        }
    }

    /// A handle on the stream's hub.
    pub fn hub(&self) -> crate::hub::Hub<Bytes> {
        self.publisher.hub()
    }

    /// Supervisor time now.
    pub fn now(&self) -> Duration {
        SystemClock.now().saturating_duration_since(self.started)
    }

    /// When the stream task must send [`Event::Tick`].
    pub fn next_deadline(&self) -> Option<Duration> {
        self.supervisor.next_deadline()
    }

    /// Lets the monitor see time pass without data.
    pub fn tick_monitor(&mut self, now: Duration) {
        self.monitor.tick(now);
    }

    /// The input whose current open is `open_id`, if it was not closed.
    pub fn index_of(&self, open_id: u64) -> Option<usize> {
        self.inputs.iter().position(|s| s.open_id == open_id && s.stop.is_some())
    }

    /// Takes a batch of chunks from input `index`: counts it, reports data
    /// to the supervisor now and then, and publishes it when the input is
    /// active. Returns the actions the data event produced.
    pub fn take_data(&mut self, index: usize, batch: &mut Vec<Bytes>, actions: &mut Vec<Action>) {
        let now = self.now();
        let Some(slot) = self.inputs.get_mut(index) else {
            batch.clear();
            return;
        };
        slot.bytes += batch.iter().map(|c| c.len() as u64).sum::<u64>();
        let due = slot.last_event.is_none_or(|t| now.saturating_sub(t) >= DATA_EVENT_EVERY);
        if due || self.active != Some(index) {
            slot.last_event = Some(now);
            // An activation takes effect here, before this batch is routed.
            self.handle(now, Event::Data { input: index }, actions);
        }
        if self.active != Some(index) {
            batch.clear();
            return;
        }
        let Some(slot) = self.inputs.get_mut(index) else { return };
        let chunks: &mut Vec<Bytes> = match &mut slot.filter {
            Some(filter) => {
                for chunk in batch.drain(..) {
                    filter.push(&chunk, &mut slot.filtered);
                }
                &mut slot.filtered
            }
            None => batch,
        };
        for chunk in chunks.drain(..) {
            self.splicer.push(&chunk, &mut self.spliced);
        }
        for chunk in &self.spliced {
            self.monitor.push(chunk, now);
        }
        self.publisher.publish_batch(self.spliced.drain(..));
    }

    /// Feeds `event` to the supervisor and applies what can be applied
    /// without spawning: activations and closes. Opens are left in
    /// `actions` for [`dispatch`].
    fn handle(&mut self, now: Duration, event: Event, actions: &mut Vec<Action>) {
        self.supervisor.handle(now, event, actions);
        self.apply_activations(actions);
    }

    fn apply_activations(&mut self, actions: &[Action]) {
        for action in actions {
            if let Action::Activate { input, reason } = *action {
                self.activate(input, reason);
            }
        }
    }

    fn activate(&mut self, input: usize, reason: SwitchReason) {
        if self.active == Some(input) {
            return;
        }
        self.active = Some(input);
        self.splicer.switch();
        self.switches_total += 1;
        tracing::info!(stream = %self.config.id, input = %self.url(input), ?reason, "input active");
    }

    /// Stops input `index`'s task, if one runs.
    pub fn close(&mut self, index: usize) {
        if let Some(slot) = self.inputs.get_mut(index) {
            if let Some(stop) = slot.stop.take() {
                let _ = stop.send(true);
            }
            // Its pool goes with it once the hub lets go of the buffers.
            slot.pool.in_use = 0;
        }
        if self.active == Some(index) && self.supervisor.active() != Some(index) {
            self.active = None;
        }
    }

    /// Takes input `index` out: its task stops, later inputs shift down.
    /// The supervisor is told separately ([`remove_input`]).
    fn take_out(&mut self, index: usize) {
        self.close(index);
        if index >= self.inputs.len() {
            return;
        }
        self.inputs.remove(index);
        self.config.inputs.remove(index);
        self.config.input_urls.remove(index);
        self.active = match self.active {
            Some(a) if a == index => None,
            Some(a) if a > index => Some(a - 1),
            other => other,
        };
    }

    /// Puts a new input in at `at` (its URL as given); later ones shift up.
    fn put_in(&mut self, at: usize, spec: crate::url::InputSpec, url: String) {
        let at = at.min(self.inputs.len());
        let filter = spec.filter();
        let slot =
            InputSlot { filter: (!filter.is_passthrough()).then(|| TsFilter::new(filter)), ..InputSlot::default() };
        self.inputs.insert(at, slot);
        self.config.inputs.insert(at, spec);
        self.config.input_urls.insert(at, url);
        if let Some(a) = self.active.as_mut()
            && *a >= at
        {
            *a += 1;
        }
    }

    /// Closes every input (the stream is stopping).
    pub fn close_all(&mut self) {
        for index in 0..self.inputs.len() {
            self.close(index);
        }
    }

    /// Records a one-line error of input `index`.
    pub fn note_error(&mut self, index: usize, error: String) {
        tracing::warn!(stream = %self.config.id, input = %self.url(index), %error, "input error");
        if let Some(slot) = self.inputs.get_mut(index) {
            slot.last_error = Some(error);
        }
    }

    /// Adds UDP receive counters of input `index` (`delta`) and sets the
    /// buffers its pool has lent out.
    pub fn add_udp(&mut self, index: usize, delta: UdpDelta, pool_in_use: u64) {
        if let Some(slot) = self.inputs.get_mut(index) {
            slot.kernel_drops += delta.kernel_drops;
            slot.rtp_gaps += delta.rtp_gaps;
            slot.pool.fallbacks_total += delta.pool_fallbacks;
            slot.pool.drops_total += delta.pool_drops;
            slot.pool.in_use = pool_in_use;
        }
    }

    fn url(&self, index: usize) -> &str {
        self.config.input_urls.get(index).map_or("?", String::as_str)
    }

    /// The overall state.
    pub fn state(&self) -> StreamState {
        if self.supervisor.finished() {
            return StreamState::Finished;
        }
        let Some(active) = self.active else {
            return if self.switches_total == 0 { StreamState::Starting } else { StreamState::Degraded };
        };
        let timeout = self.config.input_timeout;
        let now = self.now();
        match self.supervisor.health(active) {
            Some(h) if h.state == InputState::Open && h.last_data.is_some_and(|t| now.saturating_sub(t) < timeout) => {
                StreamState::Running
            }
            _ => StreamState::Degraded,
        }
    }

    /// The active input.
    pub fn active(&self) -> Option<usize> {
        self.active
    }

    /// Output bitrate over the last second.
    pub fn bitrate_bps(&self) -> f64 {
        self.monitor.bitrate_bps()
    }

    /// Everything the API shows of the stream.
    pub fn detail(&self) -> StreamDetail {
        let now = self.now();
        let ago = |t: Option<Duration>| t.map(|t| now.saturating_sub(t).as_secs_f64());
        let inputs = (0..self.inputs.len())
            .map(|index| {
                let slot = &self.inputs[index];
                let health = self.supervisor.health(index);
                InputStatus {
                    index,
                    url: self.url(index).to_owned(),
                    state: health.map_or("closed", |h| state_name(h.state)),
                    active: self.active == Some(index),
                    opens_total: health.map_or(0, |h| h.opens_total),
                    failures_total: health.map_or(0, |h| h.failures_total),
                    bytes_total: slot.bytes,
                    kernel_drops_total: slot.kernel_drops,
                    rtp_gaps_total: slot.rtp_gaps,
                    lag_drops_total: slot.lag_drops,
                    segments_missed_total: slot.segments_missed,
                    mix_dropped_total: slot.mix.dropped(),
                    mix_realigned_total: slot.mix.realigned,
                    last_data_ago_s: ago(health.and_then(|h| h.last_data)),
                    healthy_for_s: ago(health.and_then(|h| h.healthy_since)),
                    retry_in_s: health.and_then(|h| h.next_retry).map(|t| t.saturating_sub(now).as_secs_f64()),
                    last_error: slot.last_error.clone(),
                }
            })
            .collect();
        let switches = (self.supervisor.history().iter())
            .map(|s| SwitchRecord { at_s: s.at.as_secs_f64(), from: s.from, to: s.to, reason: reason_name(s.reason) })
            .collect();
        let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        let mut outputs: Vec<OutputStatus> = (self.outputs.iter())
            .map(|(url, live)| OutputStatus {
                url: url.clone(),
                bytes_total: load(&live.bytes),
                lag_drops_total: load(&live.lag_drops),
            })
            .collect();
        outputs.push(OutputStatus {
            url: "http".to_owned(),
            bytes_total: load(&self.http.bytes),
            lag_drops_total: load(&self.http.lag_drops),
        });
        let mut pids = Vec::new();
        self.monitor.pids(&mut pids);
        StreamDetail {
            id: self.config.id.clone(),
            state: self.state(),
            active_input: self.active,
            uptime_s: now.as_secs_f64(),
            bitrate_bps: self.monitor.bitrate_bps(),
            counters: self.monitor.counters(),
            pids,
            inputs,
            switches_total: self.switches_total,
            switches,
            outputs,
            http_clients: load(&self.http_clients),
            shard: self.shard,
            pool: self.inputs.iter().fold(PoolUse::default(), |sum, s| PoolUse {
                in_use: sum.in_use + s.pool.in_use,
                fallbacks_total: sum.fallbacks_total + s.pool.fallbacks_total,
                drops_total: sum.drops_total + s.pool.drops_total,
            }),
            // Filled in by the node from its directory.
            demux: None,
        }
    }
}

fn state_name(state: InputState) -> &'static str {
    match state {
        InputState::Closed => "closed",
        InputState::Opening => "opening",
        InputState::Open => "open",
        InputState::Backoff { .. } => "backoff",
        InputState::Ended => "ended",
        InputState::Failed => "failed",
    }
}

fn reason_name(reason: SwitchReason) -> &'static str {
    match reason {
        SwitchReason::Start => "start",
        SwitchReason::Error => "error",
        SwitchReason::Timeout => "timeout",
        SwitchReason::Ended => "ended",
        SwitchReason::Failback => "failback",
        SwitchReason::Manual => "manual",
        SwitchReason::InputAdded => "input_added",
        SwitchReason::InputRemoved => "input_removed",
    }
}

/// Feeds `event` to the stream's supervisor and carries out its actions:
/// opens spawn an input task on this shard, closes stop one.
pub fn dispatch(core: &Rc<RefCell<Core>>, event: Event) {
    let mut actions = Vec::new();
    {
        let mut state = core.borrow_mut();
        let now = state.now();
        state.handle(now, event, &mut actions);
    }
    carry_out(core, &actions);
}

/// Carries out `actions` (activations are already applied).
pub fn carry_out(core: &Rc<RefCell<Core>>, actions: &[Action]) {
    for action in actions {
        match *action {
            Action::Open { input } => open(core, input),
            Action::Close { input } => core.borrow_mut().close(input),
            Action::Activate { .. } => {}
        }
    }
    core.borrow().wake.notify_one();
}

fn open(core: &Rc<RefCell<Core>>, index: usize) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (spec, open_id) = {
        let mut state = core.borrow_mut();
        state.opens += 1;
        let open_id = state.opens;
        let Some(spec) = state.config.inputs.get(index).cloned() else { return };
        let Some(slot) = state.inputs.get_mut(index) else { return };
        if let Some(old) = slot.stop.replace(stop_tx) {
            let _ = old.send(true);
        }
        slot.open_id = open_id;
        (spec, open_id)
    };
    tokio::task::spawn_local(input::run(Rc::clone(core), open_id, spec, stop_rx));
}

/// Removes input `index` from a running stream (the supervisor fails over
/// if it was active).
pub fn remove_input(core: &Rc<RefCell<Core>>, index: usize) {
    let mut actions = Vec::new();
    {
        let mut state = core.borrow_mut();
        let now = state.now();
        state.take_out(index);
        state.supervisor.handle(now, Event::InputRemoved { input: index }, &mut actions);
        // The supervisor's close of the removed input names its old index,
        // already taken care of; every later action names the new indices.
        if actions.first() == Some(&Action::Close { input: index }) {
            actions.remove(0);
        }
        state.apply_activations(&actions);
    }
    carry_out(core, &actions);
}

/// Adds an input at priority position `at` of a running stream.
pub fn add_input(core: &Rc<RefCell<Core>>, at: usize, spec: crate::url::InputSpec, url: String) {
    let mut actions = Vec::new();
    {
        let mut state = core.borrow_mut();
        let now = state.now();
        state.put_in(at, spec, url);
        state.handle(now, Event::InputAdded { at }, &mut actions);
    }
    carry_out(core, &actions);
}
