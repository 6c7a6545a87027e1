//! `cargo bench --bench hub`: the hub against its baselines, in one run.
//!
//! One publisher (the main thread) fans 1316-byte `Bytes` (7 TS packets, a
//! UDP datagram's worth, cloned from a pool of 4096 buffers so each item is
//! its own buffer) out to 1, 8 and 64 readers. Readers are async tasks on one
//! tokio current-thread runtime (no I/O or time driver) on a second thread,
//! for every fan-out alike:
//! - `hub`: `uringest::hub`, readers call `recv_batch(64)`;
//! - `hub recv`: the same, readers call `recv()` per item;
//! - `broadcast`: `tokio::sync::broadcast<Bytes>`, readers call `recv()`;
//! - `copy/sub`: the reference server's design: a mutex-guarded list of
//!   bounded channels (`tokio::sync::mpsc`), one deep copy of every item per
//!   subscriber, dropped when a channel is full.
//!
//! All have capacity 1024. Two modes: **paced**, bursts of 8 every 80 µs
//! (100k items/s, like a 1 Gbit/s input), and **unpaced**, bursts of 8 back
//! to back. Each row prints items delivered per second, process CPU time per
//! delivered item (both threads; `CLOCK_PROCESS_CPUTIME_ID`), the same net
//! of what the pacing loop costs on its own (a row with no fan-out, same
//! run), and the writer's time inside its publish calls per published item;
//! then the ratios the targets are stated in, and the floor under them: a
//! `wake only` run in which the writer sends no data and only wakes one
//! reader task per burst, which every paced row pays since the readers'
//! runtime sleeps between bursts; and a data floor, one `Bytes` clone and
//! drop per delivery with no fan-out around it, which every fan-out handing
//! each reader its own `Bytes` pays. Last, the writer's unpaced rate with one
//! subscriber that never reads, against none; the rate with none is also the
//! floor under the writer's cost at 64 readers.
//!
//! The writer (main thread) is pinned to CPU 0 and the readers' runtime to
//! CPU 1, as the node pins its shards. `HUB_BENCH_READER_CPU=0` puts the
//! readers' runtime on the writer's CPU instead: a wake-up then needs no
//! IPI, which shows what the fan-outs cost apart from that.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) every row lasts a
//! few milliseconds; `HUB_BENCH_QUICK=1` does the same under `cargo bench`.
//! For profiling, `HUB_BENCH_ONLY=hub:64:paced` (fan-out name with `_` for
//! a space, readers, `paced` or `unpaced`) runs that one row alone, for ten
//! seconds.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, unsafe_code)]

use std::hint::black_box;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};
use uringest::clock::{Clock, SystemClock};
use uringest::hub::{Hub, RecvError, Start};

mod floor;
mod sys;

use sys::{pin_to, process_cpu, reader_cpu, thread_cpu, tight_timer_slack};

const CAPACITY: usize = 1024;
const BURST: usize = 8;
const PERIOD: Duration = Duration::from_micros(80);
const ITEM_BYTES: usize = 1316;
const POOL: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hub,
    HubRecv,
    Broadcast,
    Copy,
    /// No fan-out at all: what pacing alone costs.
    Nothing,
    /// No data: the writer wakes one sleeping reader task per burst, the
    /// least any fan-out to readers that sleep between bursts must do.
    Wake,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Hub => "hub",
            Kind::HubRecv => "hub recv",
            Kind::Broadcast => "broadcast",
            Kind::Copy => "copy/sub",
            Kind::Nothing => "nothing",
            Kind::Wake => "wake only",
        }
    }
}

/// The writer's side of a fan-out.
enum Sink {
    Hub(uringest::hub::Publisher<Bytes>),
    Broadcast(broadcast::Sender<Bytes>),
    Copy(Mutex<Vec<mpsc::Sender<Bytes>>>),
    Nothing,
    Wake(Arc<WakeOnly>),
}

/// The `wake only` row's shared state: a wake-up per burst and an end flag.
struct WakeOnly {
    notify: tokio::sync::Notify,
    done: std::sync::atomic::AtomicBool,
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::Wake(w) = self {
            w.done.store(true, std::sync::atomic::Ordering::Release);
            w.notify.notify_one();
        }
    }
}

impl Sink {
    fn send_burst(&mut self, items: &[Bytes]) {
        match self {
            Sink::Hub(p) => p.publish_batch(items.iter().cloned()),
            Sink::Broadcast(tx) => {
                for b in items {
                    let _ = tx.send(b.clone());
                }
            }
            Sink::Copy(subs) => {
                // The reference server takes this lock per packet, since
                // subscribers come and go from other threads; so do we.
                #[allow(clippy::mut_mutex_lock)]
                let subs = subs.lock().unwrap();
                for b in items {
                    for tx in subs.iter() {
                        // Full: dropped, as the reference server does.
                        let _ = tx.try_send(Bytes::copy_from_slice(b));
                    }
                }
            }
            Sink::Nothing => {
                black_box(items);
            }
            Sink::Wake(w) => {
                black_box(items);
                w.notify.notify_one();
            }
        }
    }
}

type ReaderTask = std::pin::Pin<Box<dyn Future<Output = u64> + Send>>;

fn consume(b: &Bytes) {
    black_box(b.len());
}

/// A fan-out of `kind` to `readers` readers: the sink and the reader tasks,
/// each returning how many items it got.
fn build(kind: Kind, readers: usize) -> (Sink, Vec<ReaderTask>) {
    match kind {
        Kind::Hub | Kind::HubRecv => {
            let (p, hub) = Hub::<Bytes>::new(CAPACITY).unwrap();
            let tasks = (0..readers)
                .map(|_| {
                    let mut s = hub.subscribe(Start::Live);
                    let task: ReaderTask = if kind == Kind::Hub {
                        Box::pin(async move {
                            let mut got = 0;
                            let mut buf = Vec::with_capacity(64);
                            loop {
                                match s.recv_batch(&mut buf, 64).await {
                                    Ok(n) => got += n as u64,
                                    Err(RecvError::Lagged(_)) => {}
                                    Err(RecvError::Closed) => return got,
                                }
                                buf.drain(..).for_each(|b| consume(&b));
                            }
                        })
                    } else {
                        Box::pin(async move {
                            let mut got = 0;
                            loop {
                                match s.recv().await {
                                    Ok(b) => {
                                        consume(&b);
                                        got += 1;
                                    }
                                    Err(RecvError::Lagged(_)) => {}
                                    Err(RecvError::Closed) => return got,
                                }
                            }
                        })
                    };
                    task
                })
                .collect();
            (Sink::Hub(p), tasks)
        }
        Kind::Broadcast => {
            let (tx, _) = broadcast::channel::<Bytes>(CAPACITY);
            let tasks = (0..readers)
                .map(|_| {
                    let mut rx = tx.subscribe();
                    let task: ReaderTask = Box::pin(async move {
                        let mut got = 0;
                        loop {
                            match rx.recv().await {
                                Ok(b) => {
                                    consume(&b);
                                    got += 1;
                                }
                                Err(broadcast::error::RecvError::Lagged(_)) => {}
                                Err(broadcast::error::RecvError::Closed) => return got,
                            }
                        }
                    });
                    task
                })
                .collect();
            (Sink::Broadcast(tx), tasks)
        }
        Kind::Copy => {
            let mut senders = Vec::new();
            let tasks = (0..readers)
                .map(|_| {
                    let (tx, mut rx) = mpsc::channel::<Bytes>(CAPACITY);
                    senders.push(tx);
                    let task: ReaderTask = Box::pin(async move {
                        let mut got = 0;
                        while let Some(b) = rx.recv().await {
                            consume(&b);
                            got += 1;
                        }
                        got
                    });
                    task
                })
                .collect();
            (Sink::Copy(Mutex::new(senders)), tasks)
        }
        Kind::Nothing => (Sink::Nothing, Vec::new()),
        Kind::Wake => {
            let w = Arc::new(WakeOnly {
                notify: tokio::sync::Notify::new(),
                done: std::sync::atomic::AtomicBool::new(false),
            });
            let r = w.clone();
            let task: ReaderTask = Box::pin(async move {
                let mut wakes = 0;
                while !r.done.load(std::sync::atomic::Ordering::Acquire) {
                    r.notify.notified().await;
                    wakes += 1;
                }
                wakes
            });
            (Sink::Wake(w), vec![task])
        }
    }
}

/// CPU the pacing loop costs per burst with nothing to publish.
#[derive(Clone, Copy, Debug, Default)]
struct Pacing {
    process: f64,
    writer: f64,
}

#[derive(Clone, Copy, Debug)]
struct Row {
    kind: Kind,
    readers: usize,
    published: u64,
    delivered: u64,
    wall: Duration,
    cpu: Duration,
    /// The writer thread's CPU time.
    writer_cpu: Duration,
}

impl Row {
    fn delivered_per_s(&self) -> f64 {
        self.delivered as f64 / self.wall.as_secs_f64()
    }
    fn cpu_ns_per_delivered(&self) -> f64 {
        self.cpu.as_nanos() as f64 / self.delivered.max(1) as f64
    }
    fn bursts(&self) -> f64 {
        self.published as f64 / BURST as f64
    }
    /// Writer CPU per published item, net of what the pacing loop costs the
    /// writer alone (`pacing`: per burst, from the `nothing` row).
    fn writer_ns_per_published(&self, pacing: &Pacing) -> f64 {
        (self.writer_cpu.as_nanos() as f64 - pacing.writer * self.bursts()) / self.published.max(1) as f64
    }
    /// CPU per delivered item net of what pacing costs the process alone.
    fn net_cpu_ns_per_delivered(&self, pacing: &Pacing) -> f64 {
        (self.cpu.as_nanos() as f64 - pacing.process * self.bursts()) / self.delivered.max(1) as f64
    }
}

fn run(kind: Kind, readers: usize, paced: bool, duration: Duration, pool: &[Bytes]) -> Row {
    let clock = SystemClock;
    let (mut sink, tasks) = build(kind, readers);
    let ready = Arc::new(Barrier::new(2));
    let ready2 = ready.clone();
    let reader_thread = thread::spawn(move || {
        pin_to(reader_cpu());
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async move {
            let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
            // Let every reader reach its first wait before the writer starts.
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            ready2.wait();
            let mut total = 0;
            for h in handles {
                total += h.await.unwrap();
            }
            total
        })
    });
    ready.wait();
    tight_timer_slack();
    pin_to(0);
    let cpu0 = process_cpu();
    let wcpu0 = thread_cpu();
    let start = clock.now();
    let end = start + duration;
    let mut next_burst: Instant = start;
    let mut published = 0u64;
    let mut i = 0usize;
    loop {
        let now = clock.now();
        if now >= end {
            break;
        }
        if paced {
            if now < next_burst {
                thread::sleep(next_burst - now);
            }
            next_burst += PERIOD;
        }
        let at = i % (POOL / BURST) * BURST;
        sink.send_burst(&pool[at..at + BURST]);
        i += 1;
        published += BURST as u64;
    }
    drop(sink);
    let writer_cpu = thread_cpu() - wcpu0;
    let delivered = reader_thread.join().unwrap();
    let wall = clock.now() - start;
    let cpu = process_cpu() - cpu0;
    Row { kind, readers, published, delivered, wall, cpu, writer_cpu }
}

/// Unpaced writer rate (items/s) with `stalled` subscribers that never read.
fn writer_rate(kind: Kind, stalled: usize, duration: Duration, pool: &[Bytes]) -> f64 {
    let clock = SystemClock;
    pin_to(0);
    let (mut sink, tasks) = build(kind, 0);
    drop(tasks);
    let keep: (Vec<_>, Vec<_>) = match &sink {
        Sink::Hub(p) => ((0..stalled).map(|_| p.subscribe(Start::Live)).collect(), Vec::new()),
        Sink::Broadcast(tx) => (Vec::new(), (0..stalled).map(|_| tx.subscribe()).collect()),
        Sink::Copy(_) | Sink::Nothing | Sink::Wake(_) => (Vec::new(), Vec::new()),
    };
    let start = clock.now();
    let mut published = 0u64;
    let mut i = 0usize;
    while clock.now() - start < duration {
        for _ in 0..16 {
            let at = i % (POOL / BURST) * BURST;
            sink.send_burst(&pool[at..at + BURST]);
            i += 1;
        }
        published += 16 * BURST as u64;
    }
    let rate = published as f64 / (clock.now() - start).as_secs_f64();
    drop(keep);
    rate
}

fn print_rows(title: &str, rows: &[Row], pacing: &Pacing) {
    println!("\n{title}");
    println!(
        "  {:<10} {:>7} {:>10} {:>13} {:>13} {:>13} {:>10} {:>7}",
        "fan-out", "readers", "published", "delivered/s", "CPU ns/deliv", "net of pacing", "writer CPU", "wall s"
    );
    for r in rows {
        println!(
            "  {:<10} {:>7} {:>10} {:>13.0} {:>13.1} {:>13.1} {:>10.1} {:>7.2}",
            r.kind.name(),
            r.readers,
            r.published,
            r.delivered_per_s(),
            r.cpu_ns_per_delivered(),
            r.net_cpu_ns_per_delivered(pacing),
            r.writer_ns_per_published(pacing),
            r.wall.as_secs_f64()
        );
    }
}

fn find(rows: &[Row], kind: Kind, readers: usize) -> Row {
    *rows.iter().find(|r| r.kind == kind && r.readers == readers).unwrap()
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let quick = !benching || std::env::var_os("HUB_BENCH_QUICK").is_some();
    let (paced_for, unpaced_for, rate_for) = if quick {
        (Duration::from_millis(5), Duration::from_millis(5), Duration::from_millis(5))
    } else {
        (Duration::from_millis(1500), Duration::from_millis(1000), Duration::from_millis(400))
    };
    let pool: Vec<Bytes> = (0..POOL)
        .map(|i| {
            let b = Bytes::from(vec![(i % 251) as u8; ITEM_BYTES]);
            // Promote to the shared representation now, so every later clone
            // is one refcount increment, as for a pooled receive buffer.
            drop(b.clone());
            b
        })
        .collect();
    let kinds = [Kind::Hub, Kind::HubRecv, Kind::Broadcast, Kind::Copy];
    let counts = [1, 8, 64];
    if let Ok(only) = std::env::var("HUB_BENCH_ONLY") {
        let parts: Vec<&str> = only.split(':').collect();
        let kind = kinds.iter().copied().find(|k| k.name().replace(' ', "_") == parts[0]).expect("fan-out name");
        let readers: usize = parts[1].parse().expect("reader count");
        let paced = parts[2] == "paced";
        let secs = std::env::var("HUB_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
        let row = run(kind, readers, paced, Duration::from_secs_f64(secs), &pool);
        print_rows(&only, &[row], &Pacing::default());
        return;
    }
    println!(
        "hub bench: capacity {CAPACITY}, {ITEM_BYTES}-byte Bytes, bursts of {BURST}; readers are tasks on one \
         current-thread tokio runtime on a second thread, pinned to CPU {} (the writer: CPU 0){}",
        reader_cpu(),
        if quick { " (quick mode: figures are not meaningful)" } else { "" }
    );
    // What the pacing loop (sleeps, clock reads) costs per burst on its own.
    let idle = run(Kind::Nothing, 0, true, paced_for, &pool);
    let pacing = Pacing {
        process: idle.cpu.as_nanos() as f64 / idle.bursts(),
        writer: idle.writer_cpu.as_nanos() as f64 / idle.bursts(),
    };
    println!(
        "pacing alone costs {:.0} ns of CPU per burst ({:.0} ns in the writer); paced rows show CPU net of it \
         ('net of pacing', and writer CPU per item)",
        pacing.process, pacing.writer
    );
    // What waking a sleeping reader thread once per burst costs on its own:
    // every fan-out here pays it in paced runs, since the readers' runtime
    // sleeps between bursts.
    let wake = run(Kind::Wake, 1, true, paced_for, &pool);
    let floor = Pacing {
        process: wake.cpu.as_nanos() as f64 / wake.bursts(),
        writer: wake.writer_cpu.as_nanos() as f64 / wake.bursts(),
    };
    println!(
        "one cross-thread wake-up per burst, no data, costs {:.0} ns of CPU per burst ({:.0} ns in the writer), \
         {:.0} ns net of pacing: the floor of every paced row",
        floor.process,
        floor.writer,
        floor.process - pacing.process
    );
    // About four million deliveries per count (a quarter million in quick mode).
    let clone_rounds = if quick { 1 } else { 16 };
    let clone_drop: Vec<(usize, f64)> =
        [8, 64].iter().map(|&n| (n, floor::clone_drop_ns(&pool, n, clone_rounds * 64 / n))).collect();
    for &(n, ns) in &clone_drop {
        println!(
            "one Bytes clone and drop per delivery, no fan-out, {n:>2} readers' worth: {ns:.1} ns of CPU \
             (the data floor of every row)"
        );
    }
    let mut paced = Vec::new();
    let mut unpaced = Vec::new();
    for &n in &counts {
        for &k in &kinds {
            paced.push(run(k, n, true, paced_for, &pool));
            unpaced.push(run(k, n, false, unpaced_for, &pool));
        }
    }
    print_rows("paced: bursts of 8 every 80 us (100k items/s)", &paced, &pacing);
    print_rows("unpaced: bursts of 8 back to back", &unpaced, &Pacing::default());

    println!("\nratios (hub = recv_batch readers)");
    for n in [8, 64] {
        let h = find(&paced, Kind::Hub, n);
        let b = find(&paced, Kind::Broadcast, n);
        let c = find(&paced, Kind::Copy, n);
        for (label, f) in [
            ("raw", &(|r: &Row| r.cpu_ns_per_delivered()) as &dyn Fn(&Row) -> f64),
            ("net", &|r: &Row| r.net_cpu_ns_per_delivered(&pacing)),
        ] {
            let rb = f(&h) / f(&b);
            let rc = f(&h) / f(&c);
            println!(
                "  paced CPU/delivered ({label}), {n:>2} readers: vs broadcast {rb:.3}x (<= 0.5: {}), vs copy/sub {rc:.3}x (<= 0.2: {})",
                verdict(rb <= 0.5),
                verdict(rc <= 0.2)
            );
        }
        // The wake-up floor spread over the items one burst delivers: no
        // fan-out whose readers sleep between bursts can go below it.
        let delivered_per_burst = (BURST * n) as f64;
        let raw = floor.process / delivered_per_burst / b.cpu_ns_per_delivered();
        let net = (floor.process - pacing.process) / delivered_per_burst / b.net_cpu_ns_per_delivered(&pacing);
        println!(
            "  paced floor (one wake-up per burst, no data), {n:>2} readers: {raw:.3}x broadcast raw, {net:.3}x net"
        );
        // Add the data floor: no fan-out handing out owned `Bytes` goes below
        // both together.
        let data = clone_drop.iter().find(|&&(readers, _)| readers == n).map_or(0.0, |&(_, ns)| ns);
        let raw = raw + data / b.cpu_ns_per_delivered();
        let net = net + data / b.net_cpu_ns_per_delivered(&pacing);
        println!(
            "  paced floor (that, plus one Bytes clone and drop per delivery), {n:>2} readers: {raw:.3}x broadcast raw, \
             {net:.3}x net"
        );
    }
    for (label, rows, p) in [("paced", &paced, pacing), ("unpaced", &unpaced, Pacing::default())] {
        let w1 = find(rows, Kind::Hub, 1).writer_ns_per_published(&p);
        let w64 = find(rows, Kind::Hub, 64).writer_ns_per_published(&p);
        let wb = find(rows, Kind::Broadcast, 64).writer_ns_per_published(&p);
        println!(
            "  {label:<7} writer CPU ns/item, 64 vs 1 reader: {w64:.1} / {w1:.1} = {:.2}x (<= 1.2: {})",
            w64 / w1,
            verdict(w64 / w1 <= 1.2)
        );
        println!(
            "  {label:<7} writer CPU ns/item at 64 vs broadcast: {w64:.1} / {wb:.1} = {:.3}x (<= 0.25: {})",
            w64 / wb,
            verdict(w64 / wb <= 0.25)
        );
    }
    // A writer whose readers sleep between bursts wakes one per burst.
    let wake_writer = (floor.writer - pacing.writer) / BURST as f64;
    let wb = find(&paced, Kind::Broadcast, 64).writer_ns_per_published(&pacing);
    println!(
        "  paced   writer floor (one wake-up per burst, no data): {wake_writer:.1} ns/item = {:.3}x broadcast's at 64",
        wake_writer / wb
    );
    let h = find(&unpaced, Kind::Hub, 64).delivered_per_s();
    let b = find(&unpaced, Kind::Broadcast, 64).delivered_per_s();
    println!("  unpaced delivered/s at 64 readers vs broadcast: {:.2}x (>= 2: {})", h / b, verdict(h / b >= 2.0));

    println!("\nwriter alone, unpaced, items/s (best of 3 alternating runs)");
    let broadcast_writer_64 = find(&unpaced, Kind::Broadcast, 64).writer_ns_per_published(&Pacing::default());
    for kind in [Kind::Hub, Kind::Broadcast] {
        let (mut none, mut one) = (0f64, 0f64);
        for _ in 0..3 {
            none = none.max(writer_rate(kind, 0, rate_for, &pool));
            one = one.max(writer_rate(kind, 1, rate_for, &pool));
        }
        let cost = 1.0 - one / none;
        let target = if kind == Kind::Hub { format!(" (< 5%: {})", verdict(cost < 0.05)) } else { String::new() };
        println!(
            "  {:<10} no reader {none:>14.0}  one stalled reader {one:>14.0}  cost {:>5.1}%{target}",
            kind.name(),
            cost * 100.0
        );
        if kind == Kind::Hub {
            // With no reader at all nothing contends with the writer: what
            // 64 readers add can only raise it.
            let alone = 1e9 / none;
            println!(
                "  {:<10} unpaced writer floor (no reader at all): {alone:.1} ns/item = {:.3}x broadcast's at 64 readers",
                "",
                alone / broadcast_writer_64
            );
        }
    }
}
