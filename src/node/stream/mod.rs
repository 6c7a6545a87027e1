//! One running stream: its task on a shard, its inputs (opened and closed
//! as its supervisor says), its hub and its outputs.
//!
//! Everything of a stream runs on one shard: the stream task (supervisor
//! timers, API commands) and one task per open input; its UDP outputs join
//! the shard's output group (one task for every stream's outputs). File
//! and stdout outputs write on threads of their own. The [`StreamHandle`] is what the node keeps: commands go to the stream task
//! through a channel, and its status comes back as a snapshot on request,
//! so nothing on the data path is shared with the API.

mod core;
mod edits;
mod input;
mod upstream;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::clock::{Clock, SystemClock};
use crate::config::StreamConfig;
use crate::hub::{Hub, Start};
use crate::node::api::{HttpCounters, NodeError, StreamDetail, StreamSummary};
use crate::node::directory::Directory;
use crate::node::supervisor::Event;
use crate::output::spec::OutputSpec;
use crate::output::udp::{LiveCounters, UdpOutput, shard_outputs};
use crate::output::writer::{self, Target};
use crate::shard::Shards;
use crate::url::{HlsPace, InputSpec, Pace};
use core::{Core, add_input, dispatch, remove_input};
pub use edits::{InputEdit, input_edits};

/// Hub items kept for a stream with a UDP input first: each can hold a
/// pool buffer, and the pool must keep buffers for receiving.
const UDP_HUB_CAPACITY: usize = 256;
/// Hub items kept for a stream fed from files read at full speed.
const FILE_HUB_CAPACITY: usize = 1024;
/// Hub items kept for a stream fed from a file paced in real time: each
/// holds up to 112 packets, so this is 10 s at 4 Mbit/s and 1 s at 40,
/// plenty for readers that keep up with real time. Fewer items also means
/// a looped file's rewritten copies are reused sooner instead of freshly
/// allocated (page faults were a tenth of a paced stream's CPU at 1024).
const PACED_FILE_HUB_CAPACITY: usize = 256;
/// How often the monitor is told the time when no data comes.
const MONITOR_TICK: Duration = Duration::from_secs(1);

/// A request to a stream task.
enum Command {
    /// Everything about the stream.
    Detail(oneshot::Sender<StreamDetail>),
    /// The one-line view.
    Summary(oneshot::Sender<StreamSummary>),
    /// Switch to an input and pin it.
    Switch(usize, oneshot::Sender<Result<(), NodeError>>),
    /// Replace the UDP outputs (the inputs keep running).
    Outputs(StreamConfig, oneshot::Sender<Result<(), String>>),
    /// Apply input edits (the stream keeps running).
    Inputs(StreamConfig, Vec<InputEdit>, oneshot::Sender<()>),
}

/// The node's handle on a running stream. Dropping it stops the stream.
pub struct StreamHandle {
    /// The definition it runs.
    pub config: StreamConfig,
    /// The shard it runs on.
    pub shard: usize,
    commands: mpsc::UnboundedSender<Command>,
    hub: Hub<Bytes>,
    http: HttpCounters,
    done: Option<oneshot::Receiver<()>>,
}

impl StreamHandle {
    /// Starts `config` on shard `shard`; returns once its outputs are open
    /// (an output that cannot open fails the start).
    pub async fn start(
        shards: &Shards,
        shard: usize,
        config: StreamConfig,
        directory: &Arc<Directory>,
    ) -> Result<StreamHandle, NodeError> {
        let capacity = match config.inputs.first() {
            Some(InputSpec::Udp(_)) => UDP_HUB_CAPACITY,
            Some(InputSpec::File { pace: None | Some(Pace::Pcr), .. }) => PACED_FILE_HUB_CAPACITY,
            Some(InputSpec::Hls(hls)) if hls.pace == HlsPace::Dts => PACED_FILE_HUB_CAPACITY,
            _ => FILE_HUB_CAPACITY,
        };
        let (publisher, hub) = crate::hub::Hub::new(capacity).map_err(|e| NodeError::Unavailable(e.to_string()))?;
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let http = HttpCounters::default();
        let task_config = config.clone();
        let task_http = http.clone();
        let backend = shards.backend();
        let directory = Arc::clone(directory);
        let done = shards
            .spawn_on(shard, move || async move {
                let core = Core::new(task_config, (backend, shard), publisher, directory, SystemClock.now());
                run(core, task_http, command_rx, ready_tx).await;
            })
            .map_err(|e| NodeError::Unavailable(e.to_string()))?;
        let handle = StreamHandle { config, shard, commands, hub, http, done: Some(done) };
        match ready_rx.await {
            Ok(Ok(())) => Ok(handle),
            Ok(Err(e)) => Err(NodeError::Invalid(e)),
            Err(_) => Err(NodeError::Unavailable("the stream's shard stopped".into())),
        }
    }

    /// The stream's hub and the counters its HTTP-TS clients share.
    pub fn tap(&self) -> (Hub<Bytes>, HttpCounters) {
        (self.hub.clone(), self.http.clone())
    }

    /// The stream in detail.
    pub async fn detail(&self) -> Result<StreamDetail, NodeError> {
        self.ask(Command::Detail).await
    }

    /// The one-line view.
    pub async fn summary(&self) -> Result<StreamSummary, NodeError> {
        self.ask(Command::Summary).await
    }

    /// Switches to input `input` and pins it.
    pub async fn switch(&self, input: usize) -> Result<(), NodeError> {
        self.ask(|tx| Command::Switch(input, tx)).await?
    }

    /// Replaces the outputs with those of `config`, keeping the inputs.
    pub async fn replace_outputs(&mut self, config: StreamConfig) -> Result<(), NodeError> {
        self.ask(|tx| Command::Outputs(config.clone(), tx)).await?.map_err(NodeError::Invalid)?;
        self.config = config;
        Ok(())
    }

    /// Applies input `edits` taking the stream to `config`'s inputs.
    pub async fn edit_inputs(&mut self, config: StreamConfig, edits: Vec<InputEdit>) -> Result<(), NodeError> {
        self.ask(|tx| Command::Inputs(config.clone(), edits, tx)).await?;
        self.config.inputs = config.inputs;
        self.config.input_urls = config.input_urls;
        Ok(())
    }

    /// Stops the stream and waits until its task has ended.
    pub async fn stop(mut self) {
        let done = self.done.take();
        drop(self);
        if let Some(done) = done {
            let _ = done.await;
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NodeError> {
        let (tx, rx) = oneshot::channel();
        let gone = || NodeError::Unavailable(format!("stream '{}' is not running", self.config.id));
        self.commands.send(make(tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())
    }
}

/// What replacing a running stream's definition by another takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplacePlan {
    /// Input edits applied to the running stream.
    pub inputs: Vec<InputEdit>,
    /// The outputs are replaced (the inputs keep running).
    pub outputs: bool,
}

/// How `old` can become `new` without a restart, or `None` when it cannot:
/// the timing changed, the inputs changed other than by additions or
/// removals alone, or the outputs changed and one of them is a writer
/// thread (those run until the hub closes).
pub fn replace_plan(old: &StreamConfig, new: &StreamConfig) -> Option<ReplacePlan> {
    if old.input_timeout != new.input_timeout || old.failback_after != new.failback_after {
        return None;
    }
    let pairs = |c: &StreamConfig| c.inputs.iter().cloned().zip(c.input_urls.iter().cloned()).collect::<Vec<_>>();
    let inputs = input_edits(&pairs(old), &pairs(new))?;
    let outputs = old.outputs != new.outputs || old.output_urls != new.output_urls;
    let udp_only = |c: &StreamConfig| c.outputs.iter().all(|o| matches!(o, OutputSpec::Udp(_)));
    if outputs && !(udp_only(old) && udp_only(new)) {
        return None;
    }
    Some(ReplacePlan { inputs, outputs })
}

/// The stream task: opens the outputs, starts the supervisor, then serves
/// timers and commands until the handle is dropped.
async fn run(
    core: Core,
    http: HttpCounters,
    mut commands: mpsc::UnboundedReceiver<Command>,
    ready: oneshot::Sender<Result<(), String>>,
) {
    let core = Rc::new(RefCell::new(core));
    core.borrow_mut().http = Arc::clone(&http.live);
    core.borrow_mut().http_clients = Arc::clone(&http.clients);
    let config = core.borrow().config.clone();
    let hub = core.borrow().hub();
    let mut udp_group = match start_outputs(&core, &config, &hub, Start::Oldest) {
        Ok(stop) => stop,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    dispatch(&core, Event::Tick);
    let wake = Rc::clone(&core.borrow().wake);
    let mut monitor = tokio::time::interval(MONITOR_TICK);
    monitor.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let wait = {
            let c = core.borrow();
            c.next_deadline().map(|d| d.saturating_sub(c.now()))
        };
        tokio::select! {
            command = commands.recv() => match command {
                Some(command) => serve_command(&core, command, &hub, &mut udp_group),
                None => break,
            },
            () = wake.notified() => {}
            () = sleep_for(wait) => dispatch(&core, Event::Tick),
            _ = monitor.tick() => {
                let mut c = core.borrow_mut();
                let now = c.now();
                c.tick_monitor(now);
            }
        }
    }
    tracing::info!(stream = %config.id, "stream stopped");
    // Stopped inputs drop their share of the core when they next run; the
    // last one out drops the publisher, which closes the hub, and the
    // outputs finish what they hold.
    core.borrow_mut().close_all();
    drop(udp_group);
}

fn serve_command(core: &Rc<RefCell<Core>>, command: Command, hub: &Hub<Bytes>, udp_group: &mut Option<UdpGroup>) {
    match command {
        Command::Detail(reply) => {
            let _ = reply.send(core.borrow().detail());
        }
        Command::Summary(reply) => {
            let c = core.borrow();
            let active = c.active();
            let _ = reply.send(StreamSummary {
                id: c.config.id.clone(),
                state: c.state(),
                active_input: active,
                active_url: active.and_then(|i| c.config.input_urls.get(i).cloned()),
                bitrate_bps: c.bitrate_bps(),
            });
        }
        Command::Switch(input, reply) => {
            let inputs = core.borrow().config.inputs.len();
            if input >= inputs {
                let _ = reply.send(Err(NodeError::Invalid(format!(
                    "input {input} out of range: the stream has inputs 0 to {}",
                    inputs.saturating_sub(1)
                ))));
                return;
            }
            dispatch(core, Event::ManualSwitch { input });
            let _ = reply.send(Ok(()));
        }
        Command::Inputs(config, edits, reply) => {
            for edit in edits {
                match edit {
                    InputEdit::Remove(index) => remove_input(core, index),
                    InputEdit::Add { at, from } => {
                        if let (Some(spec), Some(url)) = (config.inputs.get(from), config.input_urls.get(from)) {
                            add_input(core, at, spec.clone(), url.clone());
                        }
                    }
                }
            }
            let _ = reply.send(());
        }
        Command::Outputs(config, reply) => {
            // The old ones leave the shard's output group.
            *udp_group = None;
            core.borrow_mut().outputs.clear();
            let started = start_outputs(core, &config, hub, Start::Live);
            let result = started.map(|group| {
                *udp_group = group;
                core.borrow_mut().config.outputs = config.outputs.clone();
                core.borrow_mut().config.output_urls = config.output_urls.clone();
            });
            let _ = reply.send(result);
        }
    }
}

/// Opens the outputs of `config` as readers of `hub`: the UDP ones in one
/// task on this shard (stopped through the returned sender), the others on
/// threads that end when the hub closes.
fn start_outputs(
    core: &Rc<RefCell<Core>>,
    config: &StreamConfig,
    hub: &Hub<Bytes>,
    start: Start,
) -> Result<Option<UdpGroup>, String> {
    let mut udp_outputs = Vec::new();
    let mut live = Vec::new();
    for (spec, url) in config.outputs.iter().zip(&config.output_urls) {
        match spec {
            OutputSpec::Udp(u) => {
                let out = UdpOutput::open(u, hub.subscribe(start)).map_err(|e| e.to_string())?;
                live.push((url.clone(), out.live()));
                udp_outputs.push(out);
            }
            OutputSpec::File(_) | OutputSpec::Stdout => {
                let target = match spec {
                    OutputSpec::File(f) => Target::File(f.clone()),
                    _ => Target::Stdout,
                };
                let counters = Arc::new(LiveCounters::default());
                live.push((url.clone(), Arc::clone(&counters)));
                let reader = hub.subscribe(start);
                let (stream, shown) = (config.id.clone(), url.clone());
                std::thread::Builder::new()
                    .name(format!("out-{}", config.id))
                    .spawn(move || {
                        if let Err(e) = writer::run(target, reader, counters, SystemClock) {
                            tracing::error!(%stream, output = %shown, error = %e, "output failed");
                        }
                    })
                    .map_err(|e| format!("cannot start a thread for output {url}: {e}"))?;
            }
        }
    }
    core.borrow_mut().outputs = live;
    if udp_outputs.is_empty() {
        return Ok(None);
    }
    Ok(Some(UdpGroup(shard_outputs().add(udp_outputs))))
}

/// A stream's UDP outputs in its shard's output group; dropping it takes
/// them out.
struct UdpGroup(u64);

impl Drop for UdpGroup {
    fn drop(&mut self) {
        shard_outputs().remove(self.0);
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(wait) => tokio::time::sleep(wait).await,
        None => std::future::pending().await,
    }
}

/// Places streams: the shard with the fewest.
pub fn pick_shard(counts: &[usize]) -> usize {
    counts.iter().enumerate().min_by_key(|(_, n)| **n).map_or(0, |(i, _)| i)
}
