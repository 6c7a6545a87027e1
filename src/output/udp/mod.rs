//! `udp://` outputs: hub readers that send the stream as datagrams of
//! `pkt_size` bytes (seven packets by default), paced and in batches.
//!
//! All UDP outputs placed on one shard run in one task ([`run`]) that
//! wakes every [`TICK`]: each output takes what its hub reader has, passes
//! it through its entry gate, queues it, and sends what its [`Pacer`]
//! allows, in as few system calls as the kernel lets it: one GSO message
//! (`UDP_SEGMENT`) per up to 64 KiB, or one `sendmmsg` per batch where GSO
//! is missing. One timer for every output, rather than one each, keeps
//! wake-ups flat as outputs are added.
//!
//! Nothing is dropped silently: items the reader missed (`Lagged`), packets
//! skipped to reach a clean entry point, and datagrams the kernel refused
//! are counted in [`UdpOutputReport`].

mod group;
mod sys;

pub use group::{ShardOutputs, shard_outputs};

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use socket2::Socket;
use thiserror::Error;

use super::entry::{EntryGate, Piece, StartMode};
use super::gaps::{GapHistogram, GapSummary};
use super::pace::{ByteQueue, Pacer};
use super::spec::{StartAt, UdpOutSpec};
use crate::bench::socket::{Destination, open as open_socket};
use crate::clock::Clock;
use crate::hub::{Subscriber, TryRecvError};
use crate::shard::timer::{PreciseTimer, ShardTimer};
use sys::GatherSender;

/// The finest tick while data flows; streams above about 1.2 Gbit/s send
/// more than [`DATAGRAMS_PER_TICK`] a tick. Ticks are kept on a fixed
/// grid, so the time spent sending does not stretch them.
pub const TICK: Duration = Duration::from_micros(60);
/// The coarsest tick while data flows: a 4 Mbit/s stream sends its 7
/// datagrams every 18 ms in one message. Finer ticks for slow streams
/// cost a wake-up and a send per datagram, more than a plain per-datagram
/// sender (multicat) spends; a node with a hundred such streams feels it.
const MAX_TICK: Duration = Duration::from_millis(20);
/// Datagrams a tick aims to carry: slower streams tick less often, since a
/// wake-up costs far more than sending a few datagrams more at once.
///
/// 7 at 1 Gbit/s is a tick of 74 us, under the 95 us between `bench
/// send`'s bursts of 9: a tick that comes late (this VM wakes a timer
/// 16 us late at p50, 45 us at p99) still leaves a gap no longer than the
/// input's. 16 outputs of 1 Gbit/s (perf/relay.sh's relay row, run alone
/// for these comparisons; its input's p99 gap is 96-98 us): the worst
/// output's p99 gap was 111-113 us with 8 (84 us ticks, three runs) and
/// 100.5-107 us with 7; 6 took 2-4 us more off, for a sixth more sends
/// and wake-ups.
const DATAGRAMS_PER_TICK: f64 = 7.0;
/// How often it wakes when nothing has arrived for [`IDLE_AFTER`]: an
/// idle output costs 50 wake-ups a second, and the first data after a
/// pause waits at most this long.
const IDLE_TICK: Duration = Duration::from_millis(20);
const IDLE_AFTER: Duration = Duration::from_millis(100);
/// Largest GSO message (IPv4's datagram limit).
const MAX_MESSAGE: usize = 65_507;
/// The kernel's `UDP_MAX_SEGMENTS` on older kernels.
const MAX_SEGMENTS: usize = 64;
/// Most bytes an output queues. Sends only stall when the socket stays
/// full (ENOBUFS, EAGAIN); past this the queue is dropped, counted, and the
/// output restarts at the next entry point, so memory (and the pool
/// buffers the queue holds) stays bounded.
const MAX_QUEUE_BYTES: usize = 8 << 20;
/// Most hub items one output takes per tick, so one busy output cannot
/// hold the others up.
const MAX_ITEMS_PER_TICK: usize = 4096;

/// Why a UDP output could not be set up.
#[derive(Debug, Error)]
#[error("output {url}: {problem}")]
pub struct UdpOutputError {
    url: String,
    problem: String,
}

/// Counters the relay's status line reads while the output runs.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Datagrams sent.
    pub datagrams: AtomicU64,
    /// Bytes sent.
    pub bytes: AtomicU64,
    /// Hub items this output missed because it fell behind.
    pub lag_drops: AtomicU64,
}

/// What one UDP output did.
#[derive(Clone, Debug, Serialize)]
pub struct UdpOutputReport {
    /// The output.
    pub url: String,
    /// Datagrams sent.
    pub datagrams: u64,
    /// Bytes sent.
    pub bytes: u64,
    /// Hub items missed by falling behind (each a chunk of packets).
    pub lag_drops: u64,
    /// Packets skipped to start, or restart after a lag, at a clean entry
    /// point.
    pub skipped_packets: u64,
    /// Datagrams the kernel refused (counted, not retried).
    pub send_errors: u64,
    /// Times the socket was full and sending waited for the next tick.
    pub send_blocked: u64,
    /// Bytes dropped because sending stalled with too much queued.
    pub queue_drops: u64,
    /// Whether the kernel cut messages into datagrams (GSO).
    pub gso: bool,
    /// Gaps between datagrams as sent, in microseconds.
    pub gap_us: GapSummary,
    /// Most datagrams sent back to back in one call.
    pub max_burst: u64,
}

/// One UDP output.
pub struct UdpOutput {
    url: String,
    socket: Socket,
    gso: bool,
    pkt_size: usize,
    max_message: usize,
    reader: Subscriber<Bytes>,
    gate: EntryGate,
    queue: ByteQueue,
    pacer: Pacer,
    sender: GatherSender,
    live: Arc<LiveCounters>,
    gaps: GapHistogram,
    last_send: Option<Duration>,
    last_arrival: Option<Duration>,
    closed: bool,
    send_errors: u64,
    send_blocked: u64,
    queue_drops: u64,
    max_burst: u64,
    pieces: Vec<Piece>,
    batch: Vec<Bytes>,
    lag_log: LagLog,
}

/// Logs lag drops at most once a second per output, with the count since
/// the last line: a saturated output must not also flood the log.
#[derive(Debug, Default)]
pub struct LagLog {
    last: Option<Duration>,
    unlogged: u64,
}

impl LagLog {
    /// `lost` items were missed at `now`.
    pub fn lost(&mut self, now: Duration, lost: u64, output: &str) {
        self.unlogged += lost;
        if self.last.is_some_and(|t| now.saturating_sub(t) < Duration::from_secs(1)) {
            return;
        }
        tracing::warn!(output, lost = self.unlogged, "output fell behind the input; resuming at the next entry point");
        self.last = Some(now);
        self.unlogged = 0;
    }
}

impl UdpOutput {
    /// Opens the socket for `spec` (connected; GSO when the kernel has it)
    /// and takes `reader` as the output's hub reader.
    pub fn open(spec: &UdpOutSpec, reader: Subscriber<Bytes>) -> Result<UdpOutput, UdpOutputError> {
        let url = super::spec::OutputSpec::Udp(spec.clone()).to_string();
        let dest = Destination { addr: spec.dest, iface: spec.iface.clone() };
        let ttl = spec.ttl.map(u32::from);
        let segment = u16::try_from(spec.pkt_size).ok();
        let (socket, gso) = match open_socket(&dest, ttl, segment) {
            Ok((socket, _)) => (socket, true),
            Err(crate::bench::send::SendError::GsoUnsupported(_)) => {
                let (socket, _) = open_socket(&dest, ttl, None)
                    .map_err(|e| UdpOutputError { url: url.clone(), problem: e.to_string() })?;
                (socket, false)
            }
            Err(e) => return Err(UdpOutputError { url, problem: e.to_string() }),
        };
        socket.set_nonblocking(true).map_err(|e| UdpOutputError { url: url.clone(), problem: e.to_string() })?;
        let per_message = (MAX_MESSAGE / spec.pkt_size).clamp(1, MAX_SEGMENTS);
        let mode = if spec.start == StartAt::Any { StartMode::Any } else { StartMode::Clean };
        Ok(UdpOutput {
            url,
            socket,
            gso,
            pkt_size: spec.pkt_size,
            max_message: per_message * spec.pkt_size,
            reader,
            gate: EntryGate::new(mode),
            queue: ByteQueue::new(),
            pacer: Pacer::new(),
            sender: GatherSender::default(),
            live: Arc::new(LiveCounters::default()),
            gaps: GapHistogram::default(),
            last_send: None,
            last_arrival: None,
            closed: false,
            send_errors: 0,
            send_blocked: 0,
            queue_drops: 0,
            max_burst: 0,
            pieces: Vec::new(),
            batch: Vec::new(),
            lag_log: LagLog::default(),
        })
    }

    /// The counters the status line reads.
    pub fn live(&self) -> Arc<LiveCounters> {
        Arc::clone(&self.live)
    }

    /// Takes what the hub has for this output (bounded per tick).
    fn take_arrivals(&mut self, now: Duration) {
        for _ in 0..MAX_ITEMS_PER_TICK {
            match self.reader.try_recv() {
                Ok(chunk) => {
                    if self.queue.len() > MAX_QUEUE_BYTES {
                        self.queue_drops += self.queue.len() as u64;
                        self.queue.clear();
                        self.gate.resync(0);
                        tracing::warn!(output = %self.url, "sending stalled; queued data dropped");
                    }
                    self.pieces.clear();
                    self.gate.push(&chunk, &mut self.pieces);
                    for piece in self.pieces.drain(..) {
                        if let Piece::Data(bytes) = piece {
                            self.pacer.arrived(now, bytes.len());
                            self.queue.push(now, bytes);
                        }
                    }
                    self.last_arrival = Some(now);
                }
                Err(TryRecvError::Lagged(lost)) => {
                    self.live.lag_drops.fetch_add(lost, Ordering::Relaxed);
                    self.lag_log.lost(now, lost, &self.url);
                    self.gate.resync(lost);
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Closed) => {
                    self.closed = true;
                    return;
                }
            }
        }
    }

    /// Sends what the pacer allows now, on ticks `tick` apart (everything
    /// once the input ended).
    fn send_due(&mut self, now: Duration, tick: Duration) {
        let queued = self.queue.len();
        let allowed = if self.closed { queued } else { self.pacer.allowance(now, queued, tick, self.pkt_size) };
        if queued == 0 {
            return;
        }
        let mut bytes = allowed / self.pkt_size * self.pkt_size;
        if bytes == 0 && (self.closed || self.queue.partial_due(now, self.pkt_size)) {
            bytes = queued.min(self.pkt_size);
        }
        let mut left = bytes.min(queued);
        while left > 0 {
            let message = left.min(self.max_message);
            self.batch.clear();
            self.queue.take(now, message, &mut self.batch);
            let datagrams = message.div_ceil(self.pkt_size) as u64;
            let result = if self.gso {
                self.sender.send_segmented(self.socket.as_fd(), &self.batch).map(|_| datagrams)
            } else {
                self.sender.send_each(self.socket.as_fd(), &self.batch, self.pkt_size).map(|n| n as u64)
            };
            match result {
                Ok(sent) if sent < datagrams => {
                    // sendmmsg took part of the batch (the socket filled):
                    // the rest goes back in front for the next tick.
                    let sent_bytes = (sent as usize * self.pkt_size).min(message);
                    self.count_sent(now, sent, sent_bytes);
                    self.send_blocked += 1;
                    self.queue.unshift(now, &mut self.batch, sent_bytes);
                    return;
                }
                Ok(sent) => self.count_sent(now, sent, message),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.send_blocked += 1;
                    self.queue.unshift(now, &mut self.batch, 0);
                    return;
                }
                Err(e) => {
                    // ECONNREFUSED (nobody listening on a unicast
                    // destination), ENOBUFS: the datagrams are lost.
                    self.send_errors += datagrams;
                    tracing::debug!(output = %self.url, error = %e, "send failed");
                }
            }
            left -= message;
        }
    }

    fn count_sent(&mut self, now: Duration, datagrams: u64, bytes: usize) {
        if datagrams == 0 {
            return;
        }
        self.pacer.sent(bytes);
        match self.last_send {
            Some(last) => {
                let gap = now.saturating_sub(last).as_nanos().min(u128::from(u64::MAX)) as u64;
                self.gaps.record(gap, datagrams - 1);
            }
            None => self.gaps.record_zeros(datagrams - 1),
        }
        self.last_send = Some(now);
        self.max_burst = self.max_burst.max(datagrams);
        self.live.datagrams.fetch_add(datagrams, Ordering::Relaxed);
        self.live.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn finished(&self) -> bool {
        self.closed && self.queue.is_empty()
    }

    fn report(&self) -> UdpOutputReport {
        UdpOutputReport {
            url: self.url.clone(),
            datagrams: self.live.datagrams.load(Ordering::Relaxed),
            bytes: self.live.bytes.load(Ordering::Relaxed),
            lag_drops: self.live.lag_drops.load(Ordering::Relaxed),
            skipped_packets: self.gate.counters().skipped(),
            send_errors: self.send_errors,
            send_blocked: self.send_blocked,
            queue_drops: self.queue_drops,
            gso: self.gso,
            gap_us: self.gaps.summary(),
            max_burst: self.max_burst,
        }
    }
}

/// The tick that gives the fastest output about [`DATAGRAMS_PER_TICK`]
/// datagrams a tick, within [`TICK`]..[`MAX_TICK`].
fn flowing_tick<'a>(outputs: impl Iterator<Item = &'a UdpOutput>) -> Duration {
    let finest = outputs
        .filter_map(|o| o.pacer.rate().filter(|&r| r > 0.0).map(|r| DATAGRAMS_PER_TICK * o.pkt_size as f64 / r))
        .fold(MAX_TICK.as_secs_f64(), f64::min);
    Duration::from_secs_f64(finest).clamp(TICK, MAX_TICK)
}

/// The tick for `outputs` at `now`: `flowing` (their [`flowing_tick`])
/// while any got data lately, idle otherwise.
fn tick_for<'a>(mut outputs: impl Iterator<Item = &'a UdpOutput>, now: Duration, flowing: Duration) -> Duration {
    let busy = outputs.any(|o| o.last_arrival.is_some_and(|t| now.saturating_sub(t) < IDLE_AFTER));
    if busy { flowing } else { IDLE_TICK }
}

/// The tick grid of an output task: one timer for all its outputs.
struct Ticker {
    start: Instant,
    timer: Option<PreciseTimer>,
    /// The shard's timer, when the ticks are on its grid instead.
    shared: Option<std::rc::Rc<ShardTimer>>,
    next_tick: Duration,
}

impl Ticker {
    fn new(start: Instant) -> Ticker {
        // Ticks of 100 us need the default 50 us timer slack out of the way;
        // this is the shard's thread, whose other timers only gain by it.
        crate::bench::sys::tighten_timer_slack();
        let timer = PreciseTimer::new()
            .map_err(|e| tracing::warn!("no timerfd ({e}): UDP outputs tick on the 1 ms runtime timer"))
            .ok();
        Ticker { start, timer, shared: None, next_tick: Duration::ZERO }
    }

    /// Ticks on the shard timer's grid (each tick rounded up to a multiple
    /// of itself), woken after the shard's paced inputs due at the same
    /// instant: what they publish goes out in the same wake-up, and the
    /// shard wakes once per quantum for inputs and outputs together.
    fn on_shard_grid(start: Instant, shared: std::rc::Rc<ShardTimer>) -> Ticker {
        crate::bench::sys::tighten_timer_slack();
        Ticker { start, timer: None, shared: Some(shared), next_tick: Duration::ZERO }
    }

    /// Waits for the next tick, `tick` after the last on a fixed grid.
    async fn wait<C: Clock>(&mut self, tick: Duration, clock: &C) {
        if let Some(shared) = self.shared.clone() {
            return self.wait_on_grid(&shared, tick, clock).await;
        }
        self.next_tick += tick;
        let after = clock.now() - self.start;
        if self.next_tick <= after {
            // The round took longer than a tick (many outputs on one
            // core): go again at once, after letting the shard's other
            // tasks run, rather than adding a whole tick of sleep.
            self.next_tick = after;
            tokio::task::yield_now().await;
            return;
        }
        let wait = self.next_tick - after;
        let slept = match self.timer.as_mut() {
            Some(t) => t.sleep(wait).await,
            None => {
                tokio::time::sleep(wait).await;
                Ok(())
            }
        };
        if let Err(e) = slept {
            tracing::warn!("timerfd failed ({e}): UDP outputs tick on the 1 ms runtime timer");
            self.timer = None;
        }
    }
}

impl Ticker {
    /// The interval between ticks when `tick` is wanted: `tick` itself,
    /// or on the shard's grid the step nearest it that divides
    /// [`MAX_TICK`], so every [`MAX_TICK`] point (where the shard's paced
    /// files wake) is a tick. Nearest, not the next finer: a 4 Mbit/s
    /// stream wants 18 ms, and halving that to 10 ms would double the
    /// wake-ups of a headend's slow streams.
    fn interval(&self, tick: Duration) -> Duration {
        if self.shared.is_some() { grid_step(tick) } else { tick }
    }

    /// Waits for the next point of the shard grid of step
    /// [`Ticker::interval`].
    async fn wait_on_grid<C: Clock>(&mut self, shared: &ShardTimer, tick: Duration, clock: &C) {
        let step = self.interval(tick);
        let after = clock.now() - self.start;
        let at = shared.align(self.start + self.next_tick + step, step);
        if at <= self.start + after {
            // The round overran the tick: as in `wait`, go again at once.
            self.next_tick = after;
            tokio::task::yield_now().await;
            return;
        }
        self.next_tick = at.saturating_duration_since(self.start);
        shared.sleep_until_after_others(at).await;
    }
}

/// [`MAX_TICK`] divided by the whole number that brings it nearest `tick`.
fn grid_step(tick: Duration) -> Duration {
    let per_max = (MAX_TICK.as_secs_f64() / tick.as_secs_f64().max(1e-9)).round().max(1.0) as u128;
    Duration::from_nanos(u64::try_from(MAX_TICK.as_nanos() / per_max).unwrap_or(1).max(1))
}

/// One round: every output sends what is due from its queue, then every
/// output takes what its hub has.
///
/// Sending first keeps each output's send at a steady offset from the
/// tick: taking in first put the intake of the outputs before it, which
/// varies with what the input just published, between the tick and its
/// send. 16 outputs, three runs each of perf/relay.sh's relay row run
/// alone: the
/// worst output's p99 gap 105-107 us sending first, 108.5-111 taking in
/// first. At 64 outputs, where rounds overrun the tick, both orders lost
/// nothing and sent alike (p99 burst 169-177 datagrams); an earlier build
/// lost 1.5-5 % of the input there sending first.
///
/// `tick` sizes what one tick may send: the interval between ticks while
/// data flows ([`flowing_tick`] on the ticker's grid; an idle group's
/// queues are empty).
fn round<T>(outputs: &mut [T], output: impl Fn(&mut T) -> &mut UdpOutput, now: Duration, tick: Duration) {
    for item in outputs.iter_mut() {
        output(item).send_due(now, tick);
    }
    for item in outputs.iter_mut() {
        output(item).take_arrivals(now);
    }
}

/// Runs `outputs` until every one has sent all its hub had when the hub
/// closed. Run it on a shard (it needs a tokio reactor for its timer).
pub async fn run<C: Clock>(mut outputs: Vec<UdpOutput>, clock: C) -> Vec<UdpOutputReport> {
    let start: Instant = clock.now();
    let mut ticker = Ticker::new(start);
    loop {
        let now = clock.now() - start;
        let flowing = flowing_tick(outputs.iter());
        round(&mut outputs, |o| o, now, ticker.interval(flowing));
        if outputs.iter().all(UdpOutput::finished) {
            break;
        }
        ticker.wait(tick_for(outputs.iter(), now, flowing), &clock).await;
    }
    outputs.iter().map(UdpOutput::report).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_step_is_the_divisor_of_max_tick_nearest_the_tick() {
        let us = Duration::from_micros;
        // A 4 Mbit/s stream's 18.4 ms stays one tick per 20 ms, not two.
        assert_eq!(grid_step(us(18_400)), MAX_TICK);
        assert_eq!(grid_step(us(12_000)), us(10_000));
        assert_eq!(grid_step(MAX_TICK), MAX_TICK);
        // 1 Gbit/s: 73.7 us becomes 20 ms / 271.
        assert_eq!(grid_step(Duration::from_nanos(73_700)), Duration::from_nanos(20_000_000 / 271));
        assert_eq!(grid_step(Duration::ZERO), Duration::from_nanos(1));
    }
}
