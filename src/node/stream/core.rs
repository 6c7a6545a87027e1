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
use crate::node::api::{InputStatus, OutputStatus, StreamDetail, StreamState, SwitchRecord};
use crate::node::splice::Splicer;
use crate::node::supervisor::{Action, Event, InputState, Supervisor, SupervisorConfig, SwitchReason};
use crate::output::udp::LiveCounters;
use crate::shard::Backend;
use crate::ts::filter::TsFilter;
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
}

/// One input's run-time record.
#[derive(Default)]
pub struct InputSlot {
    /// Tells the running task to stop; `None` when no task runs.
    stop: Option<watch::Sender<bool>>,
    /// Bumped at each open, so events from a task closed since are stale.
    pub generation: u64,
    /// Bytes of TS read, over every open.
    pub bytes: u64,
    /// Kernel drops over every open (UDP).
    pub kernel_drops: u64,
    /// RTP sequence gaps over every open.
    pub rtp_gaps: u64,
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
    pub fn new(config: StreamConfig, backend: Backend, publisher: Publisher<Bytes>, started: Instant) -> Core {
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
                let filter = input::filter_of(spec);
                InputSlot { filter: (!filter.is_passthrough()).then(|| TsFilter::new(filter)), ..InputSlot::default() }
            })
            .collect();
        Core {
            started,
            config,
            backend,
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

    /// Whether `generation` is the current task of `input`.
    pub fn is_current(&self, input: usize, generation: u64) -> bool {
        self.inputs.get(input).is_some_and(|s| s.generation == generation && s.stop.is_some())
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
        for action in actions.iter() {
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
        if let Some(stop) = self.inputs.get_mut(index).and_then(|s| s.stop.take()) {
            let _ = stop.send(true);
        }
        if self.active == Some(index) && self.supervisor.active() != Some(index) {
            self.active = None;
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

    /// Adds UDP receive counters of input `index`.
    pub fn add_udp(&mut self, index: usize, kernel_drops: u64, rtp_gaps: u64) {
        if let Some(slot) = self.inputs.get_mut(index) {
            slot.kernel_drops += kernel_drops;
            slot.rtp_gaps += rtp_gaps;
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
    let (spec, generation) = {
        let mut state = core.borrow_mut();
        let Some(spec) = state.config.inputs.get(index).cloned() else { return };
        let Some(slot) = state.inputs.get_mut(index) else { return };
        if let Some(old) = slot.stop.replace(stop_tx) {
            let _ = old.send(true);
        }
        slot.generation += 1;
        (spec, slot.generation)
    };
    tokio::task::spawn_local(input::run(Rc::clone(core), index, generation, spec, stop_rx));
}
