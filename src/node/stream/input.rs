//! One input of a stream, as a task on the stream's shard: it opens the
//! input, reports the open to the supervisor, hands its data to the stream
//! ([`Core::take_data`]) and reports a failure or the end of data. It does
//! not retry: the supervisor decides when to open it again (backoff, make
//! before break). A task asked to stop ends without reporting anything.

use std::cell::RefCell;
use std::rc::Rc;

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::clock::SystemClock;
use crate::input::chunks::FileChunks;
use crate::input::file::MappedFile;
use crate::input::hls::HlsInput;
use crate::input::playout::Playout;
use crate::input::playout::drive::{ChunkSink, DriveOptions, drive};
use crate::input::read::{FileMethod, ReadChunks, ReadOptions, resolve};
use crate::input::udp::UdpInput;
use crate::node::supervisor::{Action, Event};
use crate::ts::mix::MixCounters;
use crate::url::{InputSpec, Pace};

use super::core::{Core, UdpDelta, carry_out, dispatch};
use super::upstream;

/// Packets per chunk cut from a mapped file.
const FILE_CHUNK_PACKETS: usize = 7 * 16;
/// Shortest time between two wake-ups of a paced file: a node plays many
/// files, and the UDP outputs pace what it publishes anyway (at 1 ms, 64
/// files spent more CPU on timers than on their data). The files of a
/// shard wake together on its shared timer's grid of this step.
const DRIVE_QUANTUM: Duration = Duration::from_millis(20);

/// Hands an input's batches to the stream.
pub(super) struct InputSink {
    pub(super) core: Rc<RefCell<Core>>,
    /// The open this task runs; its input's index may change meanwhile.
    open_id: u64,
    actions: Vec<Action>,
}

impl ChunkSink for InputSink {
    fn segments_missed(&mut self, count: u64) {
        if let Some(index) = self.index() {
            self.core.borrow_mut().inputs[index].segments_missed += count;
        }
    }

    fn publish_batch(&mut self, batch: &mut Vec<Bytes>) {
        {
            let mut core = self.core.borrow_mut();
            let Some(index) = core.index_of(self.open_id) else {
                batch.clear();
                return;
            };
            core.take_data(index, batch, &mut self.actions);
        }
        if !self.actions.is_empty() {
            carry_out(&self.core, &self.actions);
            self.actions.clear();
        }
    }
}

impl InputSink {
    /// Reports the event `make` builds for this input's index, unless the
    /// input was closed meanwhile.
    pub(super) fn report(&self, make: impl FnOnce(usize) -> Event, error: Option<String>) {
        let Some(index) = self.core.borrow().index_of(self.open_id) else { return };
        if let Some(error) = error {
            self.core.borrow_mut().note_error(index, error);
        }
        dispatch(&self.core, make(index));
    }

    /// Adds what a mixer counted since `before` (its counters now: `now`).
    pub(super) fn mix_counted(&self, before: MixCounters, now: MixCounters) {
        if let Some(index) = self.index() {
            self.core.borrow_mut().inputs[index].mix.add_growth(before, now);
        }
    }

    /// Counts upstream hub items this input missed.
    pub(super) fn lagged(&self, items: u64) {
        if let Some(index) = self.index() {
            self.core.borrow_mut().inputs[index].lag_drops += items;
        }
    }

    fn index(&self) -> Option<usize> {
        self.core.borrow().index_of(self.open_id)
    }

    fn udp_counters(&self, delta: UdpDelta, lent: u64) {
        if let Some(index) = self.index() {
            self.core.borrow_mut().add_udp(index, delta, lent);
        }
    }
}

/// Runs the input opened as `open_id` until it fails, ends or `stop`
/// turns true.
pub async fn run(core: Rc<RefCell<Core>>, open_id: u64, spec: InputSpec, mut stop: watch::Receiver<bool>) {
    let mut sink = InputSink { core, open_id, actions: Vec::new() };
    let outcome = tokio::select! {
        outcome = read(&mut sink, spec) => outcome,
        _ = stop.changed() => return,
    };
    match outcome {
        Outcome::OpenFailed { permanent, error } => {
            sink.report(|input| Event::OpenFailed { input, permanent }, Some(error))
        }
        Outcome::Failed { permanent, error } => sink.report(|input| Event::Failed { input, permanent }, Some(error)),
        Outcome::Ended => sink.report(|input| Event::Ended { input }, None),
    }
}

pub(super) enum Outcome {
    /// The input could not open; `permanent` when opening again cannot help.
    OpenFailed {
        permanent: bool,
        error: String,
    },
    /// The input failed after it opened.
    Failed {
        permanent: bool,
        error: String,
    },
    Ended,
}

impl Outcome {
    /// A failure to open that trying again may mend.
    pub(super) fn open_failed(error: impl ToString) -> Outcome {
        Outcome::OpenFailed { permanent: false, error: error.to_string() }
    }

    /// A failure after the open that trying again may mend.
    pub(super) fn failed(error: impl ToString) -> Outcome {
        Outcome::Failed { permanent: false, error: error.to_string() }
    }
}

async fn read(sink: &mut InputSink, spec: InputSpec) -> Outcome {
    match spec {
        InputSpec::Copy { stream } => upstream::copy(sink, &stream).await,
        InputSpec::Mixer(mix) => upstream::mix(sink, mix).await,
        InputSpec::Hls(spec) => {
            // A new input per open: a reopened live playlist is joined at
            // its live edge again.
            let mut input = HlsInput::new(spec);
            let open = match input.open().await {
                Ok(open) => open,
                Err(e) => return Outcome::OpenFailed { permanent: e.permanent, error: e.message },
            };
            sink.report(|input| Event::Opened { input }, None);
            match input.play(open, sink).await {
                Ok(()) => Outcome::Ended,
                Err(e) => Outcome::Failed { permanent: e.permanent, error: e.message },
            }
        }
        InputSpec::Udp(spec) => {
            let backend = sink.core.borrow().backend;
            let mut input = match UdpInput::open(&spec, backend) {
                Ok(input) => input,
                Err(e) => return Outcome::open_failed(e.to_string()),
            };
            sink.report(|input| Event::Opened { input }, None);
            let mut chunks = Vec::new();
            let mut counted = UdpDelta::default();
            let mut lent = 0;
            loop {
                chunks.clear();
                let read = input.read_batch(&mut chunks).await;
                let stats = input.stats();
                let now = UdpDelta {
                    kernel_drops: stats.recv.kernel_drops,
                    rtp_gaps: stats.datagrams.rtp_seq_gaps,
                    pool_fallbacks: stats.recv.pool_fallbacks,
                    pool_drops: stats.recv.pool_drops,
                };
                if now != counted || input.pool_lent() != lent {
                    lent = input.pool_lent();
                    let delta = UdpDelta {
                        kernel_drops: now.kernel_drops - counted.kernel_drops,
                        rtp_gaps: now.rtp_gaps - counted.rtp_gaps,
                        pool_fallbacks: now.pool_fallbacks - counted.pool_fallbacks,
                        pool_drops: now.pool_drops - counted.pool_drops,
                    };
                    sink.udp_counters(delta, lent);
                    counted = now;
                }
                if let Err(e) = read {
                    sink.udp_counters(UdpDelta::default(), 0);
                    return Outcome::failed(e.to_string());
                }
                sink.publish_batch(&mut chunks);
                // A backlog returns batch after batch without waiting: let
                // the shard's other streams and outputs run in between.
                tokio::task::yield_now().await;
            }
        }
        InputSpec::File { path, looping, pace, read, .. } => {
            let backend = sink.core.borrow().backend;
            let method = match resolve(&path, read) {
                Ok(method) => method,
                Err(e) => return Outcome::open_failed(e.to_string()),
            };
            if method == FileMethod::Read {
                let mut reader = match ReadChunks::open(&path, backend, ReadOptions::default()) {
                    Ok(reader) => reader,
                    Err(e) => return Outcome::open_failed(e.to_string()),
                };
                sink.report(|input| Event::Opened { input }, None);
                let mut chunks = Vec::new();
                loop {
                    match reader.next_chunk().await {
                        Ok(Some(chunk)) => chunks.push(chunk),
                        Ok(None) => return Outcome::Ended,
                        Err(e) => return Outcome::failed(e.to_string()),
                    }
                    sink.publish_batch(&mut chunks);
                    tokio::task::yield_now().await;
                }
            }
            let file = match MappedFile::open(&path) {
                Ok(file) => file,
                Err(e) => return Outcome::open_failed(e.to_string()),
            };
            sink.report(|input| Event::Opened { input }, None);
            let looping = looping.unwrap_or(false);
            let playout =
                Playout::new(FileChunks::new(file, looping, FILE_CHUNK_PACKETS), looping, pace.unwrap_or(Pace::Pcr));
            match drive(playout, sink, SystemClock, DriveOptions { quantum: DRIVE_QUANTUM, run_for: None, align: true })
                .await
            {
                Ok(_) => Outcome::Ended,
                Err(e) => Outcome::failed(format!("{}: {e}", path.display())),
            }
        }
    }
}
