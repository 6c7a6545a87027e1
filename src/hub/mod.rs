//! The hub: one stream's fan-out from one writer to any number of readers.
//!
//! A [`Hub`] is a ring of `capacity` items. Its one [`Publisher`] never
//! blocks, never takes a lock and never waits for a reader: it overwrites the
//! oldest item, and that item is dropped at once (its buffer goes back to its
//! pool), so memory is bounded by the capacity whatever the readers do.
//! Readers ([`Subscriber`]) get clones of the items (for `Bytes`, a refcount
//! increment), on any thread, through [`Subscriber::recv`],
//! [`Subscriber::recv_batch`] or [`Subscriber::try_recv`].
//!
//! A reader that falls more than `capacity` items behind gets
//! [`RecvError::Lagged`] with the exact number of items it missed, then
//! continues from the oldest item still held. When the publisher drops,
//! readers drain what is left and then get [`RecvError::Closed`].
//!
//! Waiting costs nothing when nobody waits: a publish checks one bit it reads
//! anyway. A batch wakes a waiting reader once. The writer wakes at most one
//! task per publish; the first reader woken wakes the others (see
//! `notify.rs`), so the writer's cost does not grow with the reader count.
//! `recv` is a plain future and needs no particular runtime.
//!
//! The unsafe ring and its ownership argument are in `ring.rs`; under
//! `--cfg loom` the hub runs on loom's primitives (`sync.rs`) and the models
//! in `loom_models.rs` check it.

mod notify;
mod ring;
mod sync;

#[cfg(test)]
mod counted;
#[cfg(all(test, loom))]
mod loom_models;
#[cfg(all(test, not(loom)))]
mod tests;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use self::notify::Registration;
use self::ring::{Read, Ring, Writer};
use self::sync::Arc;

/// Where a new subscriber starts reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// With the next item published after subscribing.
    Live,
    /// With the oldest item the hub still holds.
    Oldest,
}

/// Why [`Subscriber::recv`] returned no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The reader fell behind and this many items were overwritten before
    /// it read them; the next receive returns the oldest item still held.
    #[error("hub reader lagged: {0} items lost")]
    Lagged(u64),
    /// The publisher is gone and every item has been read.
    #[error("hub closed")]
    Closed,
}

/// Why [`Subscriber::try_recv`] returned no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// Nothing new yet.
    #[error("hub empty")]
    Empty,
    /// As [`RecvError::Lagged`].
    #[error("hub reader lagged: {0} items lost")]
    Lagged(u64),
    /// As [`RecvError::Closed`].
    #[error("hub closed")]
    Closed,
}

/// A capacity the hub cannot take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hub capacity {0} is not a power of two between 1 and 16777216")]
pub struct CapacityError(pub usize);

/// A handle on a stream's hub, from which readers subscribe. Cheap to clone.
pub struct Hub<T> {
    ring: Arc<Ring<T>>,
}

/// The hub's one writer. Dropping it closes the hub.
pub struct Publisher<T> {
    writer: Writer<T>,
}

/// One reader of a hub, with its own position.
pub struct Subscriber<T> {
    ring: Arc<Ring<T>>,
    pos: u64,
    reg: Registration,
}

impl<T: Clone + Send + Sync> Hub<T> {
    /// A hub holding the last `capacity` items (a power of two, at most
    /// 2^24), and its publisher.
    pub fn new(capacity: usize) -> Result<(Publisher<T>, Hub<T>), CapacityError> {
        if !capacity.is_power_of_two() || capacity > ring::MAX_CAPACITY {
            return Err(CapacityError(capacity));
        }
        let (ring, writer) = Ring::new(capacity);
        Ok((Publisher { writer }, Hub { ring }))
    }

    /// A new reader starting at `start`.
    ///
    /// # Panics
    ///
    /// If the node pool would pass 2^32 entries (billions of live readers).
    pub fn subscribe(&self, start: Start) -> Subscriber<T> {
        Subscriber::new(self.ring.clone(), start)
    }

    /// Items the hub holds at most.
    pub fn capacity(&self) -> usize {
        self.ring.capacity() as usize
    }

    /// Items published so far.
    pub fn published(&self) -> u64 {
        self.ring.tail().0
    }

    /// Whether the publisher is gone.
    pub fn is_closed(&self) -> bool {
        self.ring.tail().1
    }
}

impl<T> Clone for Hub<T> {
    fn clone(&self) -> Self {
        Hub { ring: self.ring.clone() }
    }
}

impl<T> fmt::Debug for Hub<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (published, closed) = self.ring.tail();
        f.debug_struct("Hub")
            .field("capacity", &self.ring.capacity())
            .field("published", &published)
            .field("closed", &closed)
            .finish()
    }
}

impl<T: Clone + Send + Sync> Publisher<T> {
    /// Publishes one item, overwriting (and dropping) the oldest if the hub
    /// is full. Never blocks.
    pub fn publish(&mut self, item: T) {
        self.writer.write(item);
        self.commit();
    }

    /// Publishes `items` in order and makes them visible together: a
    /// waiting reader is woken once for the whole batch.
    pub fn publish_batch<I: IntoIterator<Item = T>>(&mut self, items: I) {
        let before = self.writer.published();
        for item in items {
            self.writer.write(item);
        }
        if self.writer.published() != before {
            self.commit();
        }
    }

    fn commit(&mut self) {
        let waiters = self.writer.commit();
        let notify = &self.writer.ring().notify;
        if waiters || notify.fanout_pending() {
            notify.wake_one_and_delegate();
        }
    }

    /// A handle for subscribing.
    pub fn hub(&self) -> Hub<T> {
        Hub { ring: self.writer.ring().clone() }
    }

    /// A new reader starting at `start`; see [`Hub::subscribe`].
    pub fn subscribe(&self, start: Start) -> Subscriber<T> {
        Subscriber::new(self.writer.ring().clone(), start)
    }

    /// Items published so far.
    pub fn published(&self) -> u64 {
        self.writer.published()
    }
}

impl<T> Drop for Publisher<T> {
    fn drop(&mut self) {
        self.writer.close();
        self.writer.ring().notify.wake_all();
    }
}

impl<T> fmt::Debug for Publisher<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").field("published", &self.writer.published()).finish()
    }
}

impl<T: Clone + Send + Sync> Subscriber<T> {
    fn new(ring: Arc<Ring<T>>, start: Start) -> Self {
        ring.add_reader();
        let (published, _) = ring.tail();
        let pos = match start {
            Start::Live => published,
            Start::Oldest => published.saturating_sub(ring.capacity()),
        };
        Subscriber { ring, pos, reg: Registration::new() }
    }

    /// The position of the next item this reader will get (items published
    /// before it number `position()`).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next item if there is one now.
    pub fn try_recv(&mut self) -> Result<T, TryRecvError> {
        self.hand_off();
        match self.ring.read(self.pos) {
            Read::Item(v) => {
                self.pos += 1;
                Ok(v)
            }
            Read::Empty => Err(TryRecvError::Empty),
            Read::Closed => Err(TryRecvError::Closed),
            Read::Lagged { next } => Err(TryRecvError::Lagged(self.skip_to(next))),
        }
    }

    /// The next item, waiting for it if needed. Cancel-safe: dropping the
    /// future loses nothing.
    pub fn recv(&mut self) -> Recv<'_, T> {
        Recv { sub: self }
    }

    /// Appends up to `max` items to `out`, waiting only until there is at
    /// least one. Returns how many were appended. A lag or the end met after
    /// some items is reported by the next call.
    pub fn recv_batch<'a>(&'a mut self, out: &'a mut Vec<T>, max: usize) -> RecvBatch<'a, T> {
        RecvBatch { sub: self, out, max }
    }

    /// Polls for the next item; what [`Subscriber::recv`] awaits.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<T, RecvError>> {
        let out = loop {
            match self.try_recv() {
                Ok(v) => break Ok(v),
                Err(TryRecvError::Lagged(n)) => break Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => break Err(RecvError::Closed),
                Err(TryRecvError::Empty) => {}
            }
            if !self.wait(cx) {
                return Poll::Pending;
            }
        };
        self.ring.notify.done_waiting(&mut self.reg);
        Poll::Ready(out)
    }

    /// Polls for a batch; what [`Subscriber::recv_batch`] awaits.
    pub fn poll_recv_batch(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<T>,
        max: usize,
    ) -> Poll<Result<usize, RecvError>> {
        if max == 0 {
            return Poll::Ready(Ok(0));
        }
        self.hand_off();
        let out = self.poll_batch_inner(cx, out, max);
        if out.is_ready() {
            self.ring.notify.done_waiting(&mut self.reg);
        }
        out
    }

    fn poll_batch_inner(
        &mut self,
        cx: &mut Context<'_>,
        out: &mut Vec<T>,
        max: usize,
    ) -> Poll<Result<usize, RecvError>> {
        loop {
            let (n, stop) = self.ring.read_batch(&mut self.pos, max, out);
            if n > 0 {
                return Poll::Ready(Ok(n));
            }
            match stop {
                Read::Closed => return Poll::Ready(Err(RecvError::Closed)),
                Read::Lagged { next } => return Poll::Ready(Err(RecvError::Lagged(self.skip_to(next)))),
                Read::Empty | Read::Item(()) => {}
            }
            if !self.wait(cx) {
                return Poll::Pending;
            }
        }
    }

    /// Registers to be woken. Returns `true` if there is no need to sleep
    /// after all (the item came or the hub closed meanwhile).
    fn wait(&mut self, cx: &mut Context<'_>) -> bool {
        self.ring.notify.register(&mut self.reg, cx.waker());
        self.ring.mark_waiting(self.pos)
    }

    fn skip_to(&mut self, next: u64) -> u64 {
        let lost = next - self.pos;
        self.pos = next;
        lost
    }
}

impl<T> Subscriber<T> {
    /// Passes on a wake-up the writer left to readers (see `notify.rs`).
    #[inline]
    fn hand_off(&mut self) {
        if self.ring.notify.fanout_pending() {
            self.ring.notify.fan_out(&mut self.reg);
        }
    }

    /// Leaves the waiter list (a future ends or drops without a result).
    fn stop_waiting(&mut self) {
        self.ring.notify.done_waiting(&mut self.reg);
        self.hand_off();
    }
}

impl<T> Drop for Subscriber<T> {
    fn drop(&mut self) {
        self.stop_waiting();
        self.ring.remove_reader();
    }
}

impl<T> fmt::Debug for Subscriber<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscriber").field("position", &self.pos).finish()
    }
}

/// The future of [`Subscriber::recv`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Recv<'a, T> {
    sub: &'a mut Subscriber<T>,
}

impl<T: Clone + Send + Sync> Future for Recv<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.sub.poll_recv(cx)
    }
}

impl<T> Drop for Recv<'_, T> {
    fn drop(&mut self) {
        // A future woken as the leader and dropped unpolled still hands on.
        self.sub.stop_waiting();
    }
}

/// The future of [`Subscriber::recv_batch`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct RecvBatch<'a, T> {
    sub: &'a mut Subscriber<T>,
    out: &'a mut Vec<T>,
    max: usize,
}

impl<T: Clone + Send + Sync> Future for RecvBatch<'_, T> {
    type Output = Result<usize, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.sub.poll_recv_batch(cx, this.out, this.max)
    }
}

impl<T> Drop for RecvBatch<'_, T> {
    fn drop(&mut self) {
        self.sub.stop_waiting();
    }
}
