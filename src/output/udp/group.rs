//! Every UDP output of a shard in one task, whatever stream it belongs to.
//!
//! `serve` runs many streams on a shard, each with its outputs; one task
//! and one timer per stream would wake the shard once per stream per tick
//! (a hundred slow streams: thousands of timer re-arms and task switches a
//! second, more than the sending). Here outputs join and leave a single
//! per-shard group: one tick serves them all, and an idle output costs a
//! `try_recv` per tick. With no outputs at all the task sleeps until one
//! joins. The ticks are on the shard timer's grid, after the paced file
//! inputs due at the same instant (`shard::timer::ShardTimer`): one
//! wake-up of the shard publishes and sends.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use tokio::sync::Notify;

use super::{Ticker, UdpOutput, flowing_tick, round, tick_for};
use crate::clock::{Clock, SystemClock};

/// The shard's output group: outputs are added and removed from tasks on
/// the same shard.
#[derive(Default)]
pub struct ShardOutputs {
    joining: RefCell<Vec<(u64, UdpOutput)>>,
    leaving: RefCell<Vec<u64>>,
    next_key: RefCell<u64>,
    wake: Notify,
}

thread_local! {
    /// The group of the shard this thread runs, once a task asked for it.
    static GROUP: RefCell<Option<Rc<ShardOutputs>>> = const { RefCell::new(None) };
}

/// This shard's output group, started on first use. Call it from a task
/// on a shard.
pub fn shard_outputs() -> Rc<ShardOutputs> {
    GROUP.with(|group| {
        let mut group = group.borrow_mut();
        if let Some(g) = group.as_ref() {
            return Rc::clone(g);
        }
        let g = Rc::new(ShardOutputs::default());
        tokio::task::spawn_local(run(Rc::clone(&g), SystemClock));
        *group = Some(Rc::clone(&g));
        g
    })
}

impl ShardOutputs {
    /// Adds `outputs` to the group; the key removes them again.
    pub fn add(&self, outputs: Vec<UdpOutput>) -> u64 {
        let key = {
            let mut next = self.next_key.borrow_mut();
            *next += 1;
            *next
        };
        self.joining.borrow_mut().extend(outputs.into_iter().map(|o| (key, o)));
        self.wake.notify_one();
        key
    }

    /// Removes the outputs added under `key` (at the next tick).
    pub fn remove(&self, key: u64) {
        self.leaving.borrow_mut().push(key);
        self.wake.notify_one();
    }
}

async fn run<C: Clock>(group: Rc<ShardOutputs>, clock: C) {
    let start: Instant = clock.now();
    let mut ticker = match crate::shard::timer::shard_timer() {
        Ok(shared) => Ticker::on_shard_grid(start, shared),
        Err(e) => {
            tracing::warn!("no shard timer ({e}): UDP outputs tick on a timer of their own");
            Ticker::new(start)
        }
    };
    let mut outputs: Vec<(u64, UdpOutput)> = Vec::new();
    loop {
        outputs.append(&mut group.joining.borrow_mut());
        let leaving = std::mem::take(&mut *group.leaving.borrow_mut());
        if !leaving.is_empty() {
            outputs.retain(|(key, _)| !leaving.contains(key));
        }
        let now = clock.now() - start;
        let flowing = flowing_tick(outputs.iter().map(|(_, o)| o));
        round(&mut outputs, |(_, o)| o, now, ticker.interval(flowing));
        // An output whose hub closed has sent what it held: it is done.
        outputs.retain(|(_, o)| !o.finished());
        if outputs.is_empty() {
            group.wake.notified().await;
            continue;
        }
        ticker.wait(tick_for(outputs.iter().map(|(_, o)| o), now, flowing), &clock).await;
    }
}
