//! Unit tests of the hub's API. Small and free of sleeps and FFI, so they
//! also run under Miri (`cargo +nightly miri test --lib hub`).

use std::sync::Arc as StdArc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use super::*;

struct CountWakes(AtomicUsize);

impl Wake for CountWakes {
    fn wake(self: StdArc<Self>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn waker() -> (StdArc<CountWakes>, Waker) {
    let c = StdArc::new(CountWakes(AtomicUsize::new(0)));
    (c.clone(), Waker::from(c))
}

fn wakes(c: &CountWakes) -> usize {
    c.0.load(Ordering::Relaxed)
}

fn hub(cap: usize) -> (Publisher<u64>, Hub<u64>) {
    Hub::new(cap).unwrap()
}

#[test]
fn capacity_must_be_a_power_of_two() {
    assert_eq!(Hub::<u64>::new(0).unwrap_err(), CapacityError(0));
    assert_eq!(Hub::<u64>::new(6).unwrap_err(), CapacityError(6));
    assert_eq!(Hub::<u64>::new(1).unwrap().1.capacity(), 1);
    assert_eq!(Hub::<u64>::new(1 << 25).unwrap_err(), CapacityError(1 << 25));
}

#[test]
fn items_arrive_in_order_then_closed() {
    let (mut p, h) = hub(8);
    let mut s = h.subscribe(Start::Live);
    assert_eq!(s.try_recv(), Err(TryRecvError::Empty));
    p.publish(1);
    p.publish_batch([2, 3]);
    p.publish_batch([]);
    assert_eq!(p.published(), 3);
    assert_eq!((s.try_recv(), s.try_recv(), s.try_recv()), (Ok(1), Ok(2), Ok(3)));
    assert_eq!(s.try_recv(), Err(TryRecvError::Empty));
    p.publish(4);
    drop(p);
    assert!(h.is_closed());
    assert_eq!(s.try_recv(), Ok(4), "drains after close");
    assert_eq!(s.try_recv(), Err(TryRecvError::Closed));
    assert_eq!(s.try_recv(), Err(TryRecvError::Closed));
}

#[test]
fn live_starts_at_the_edge_and_oldest_at_the_oldest_item() {
    let (mut p, h) = hub(4);
    p.publish_batch(0..6);
    let mut live = h.subscribe(Start::Live);
    let mut old = p.subscribe(Start::Oldest);
    assert_eq!(live.position(), 6);
    assert_eq!(live.try_recv(), Err(TryRecvError::Empty));
    assert_eq!((old.try_recv(), old.try_recv()), (Ok(2), Ok(3)));
}

#[test]
fn a_lagging_reader_gets_the_exact_loss_then_the_oldest_item() {
    let (mut p, h) = hub(4);
    let mut s = h.subscribe(Start::Live);
    p.publish_batch(0..3);
    assert_eq!(s.try_recv(), Ok(0));
    p.publish_batch(3..11); // positions 1..=6 are gone, 7..=10 kept
    assert_eq!(s.try_recv(), Err(TryRecvError::Lagged(6)));
    assert_eq!(s.try_recv(), Ok(7));
    let mut out = Vec::new();
    p.publish_batch(11..20);
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Err(RecvError::Lagged(8))));
    assert_eq!(s.poll_recv_batch(&mut cx, &mut out, 100), Poll::Ready(Ok(4)));
    assert_eq!(out, [16, 17, 18, 19]);
}

#[test]
fn recv_batch_takes_at_most_max_and_reports_lag_and_end_on_the_next_call() {
    let (mut p, h) = hub(4);
    let mut s = h.subscribe(Start::Live);
    let mut cx = Context::from_waker(Waker::noop());
    let mut out = Vec::new();
    assert_eq!(s.poll_recv_batch(&mut cx, &mut out, 0), Poll::Ready(Ok(0)));
    p.publish_batch(0..3);
    assert_eq!(s.poll_recv_batch(&mut cx, &mut out, 2), Poll::Ready(Ok(2)));
    assert_eq!(s.poll_recv_batch(&mut cx, &mut out, 2), Poll::Ready(Ok(1)));
    assert_eq!(out, [0, 1, 2]);
    assert!(s.poll_recv_batch(&mut cx, &mut out, 2).is_pending());
    p.publish(3);
    drop(p);
    assert_eq!(s.poll_recv_batch(&mut cx, &mut out, 8), Poll::Ready(Ok(1)));
    assert_eq!(s.poll_recv_batch(&mut cx, &mut out, 8), Poll::Ready(Err(RecvError::Closed)));
}

#[test]
fn a_batch_wakes_a_waiting_reader_once() {
    let (mut p, h) = hub(16);
    let mut s = h.subscribe(Start::Live);
    let (count, w) = waker();
    let mut cx = Context::from_waker(&w);
    assert!(s.poll_recv(&mut cx).is_pending());
    assert!(s.poll_recv(&mut cx).is_pending(), "polled again: still one registration");
    p.publish_batch(0..8);
    assert_eq!(wakes(&count), 1);
    p.publish_batch(8..16);
    assert_eq!(wakes(&count), 1, "not waiting any more: no wake");
    assert_eq!(s.poll_recv(&mut cx), Poll::Ready(Ok(0)));
}

#[test]
fn one_wake_from_the_writer_reaches_every_waiting_reader() {
    let (mut p, h) = hub(16);
    let mut subs: Vec<_> = (0..4).map(|_| h.subscribe(Start::Live)).collect();
    let ws: Vec<_> = (0..4).map(|_| waker()).collect();
    for (s, (_, w)) in subs.iter_mut().zip(&ws) {
        assert!(s.poll_recv(&mut Context::from_waker(w)).is_pending());
    }
    p.publish(7);
    let total = |ws: &[(StdArc<CountWakes>, Waker)]| ws.iter().map(|(c, _)| wakes(c)).sum::<usize>();
    assert_eq!(total(&ws), 1, "the writer wakes one reader");
    let leader = ws.iter().position(|(c, _)| wakes(c) == 1).unwrap();
    assert_eq!(subs[leader].poll_recv(&mut Context::from_waker(&ws[leader].1)), Poll::Ready(Ok(7)));
    assert_eq!(total(&ws), 4, "the leader woke the rest");
    for s in &mut subs {
        if s.position() == 0 {
            assert_eq!(s.try_recv(), Ok(7));
        }
    }
}

#[test]
fn a_dropped_leader_still_hands_the_wake_on() {
    let (mut p, h) = hub(4);
    let mut a = h.subscribe(Start::Live);
    let mut b = h.subscribe(Start::Live);
    let ((ca, wa), (cb, wb)) = (waker(), waker());
    {
        let mut fa = a.recv();
        let mut fb = b.recv();
        assert!(Pin::new(&mut fa).poll(&mut Context::from_waker(&wa)).is_pending());
        assert!(Pin::new(&mut fb).poll(&mut Context::from_waker(&wb)).is_pending());
        p.publish(1);
        assert_eq!(wakes(&ca) + wakes(&cb), 1);
    }
    assert_eq!(wakes(&ca) + wakes(&cb), 2);
}

#[test]
fn closing_wakes_every_waiter() {
    let (p, h) = hub(4);
    let mut subs: Vec<_> = (0..3).map(|_| h.subscribe(Start::Live)).collect();
    let ws: Vec<_> = (0..3).map(|_| waker()).collect();
    for (s, (_, w)) in subs.iter_mut().zip(&ws) {
        assert!(s.poll_recv(&mut Context::from_waker(w)).is_pending());
    }
    drop(p);
    for (s, (c, w)) in subs.iter_mut().zip(&ws) {
        assert_eq!(wakes(c), 1);
        assert_eq!(s.poll_recv(&mut Context::from_waker(w)), Poll::Ready(Err(RecvError::Closed)));
    }
}

#[test]
fn publishing_without_waiters_wakes_nobody() {
    let (mut p, h) = hub(4);
    let mut s = h.subscribe(Start::Live);
    let (count, w) = waker();
    assert!(s.poll_recv(&mut Context::from_waker(&w)).is_pending());
    p.publish(0);
    assert_eq!(s.try_recv(), Ok(0));
    for i in 1..10 {
        p.publish(i);
    }
    assert_eq!(wakes(&count), 1);
}

#[test]
fn bytes_fan_out_without_copies_and_overwritten_buffers_are_freed() {
    let (mut p, h) = Hub::<bytes::Bytes>::new(2).unwrap();
    let mut s = h.subscribe(Start::Live);
    let first = bytes::Bytes::from(vec![1u8; 16]);
    p.publish(first.clone());
    let got = s.try_recv().unwrap();
    assert_eq!(got.as_ptr(), first.as_ptr(), "a clone, not a copy");
    drop(got);
    let weak = StdArc::new(());
    let owner = bytes::Bytes::from_owner(Owner(weak.clone()));
    p.publish(owner);
    p.publish(bytes::Bytes::new());
    assert_eq!(StdArc::strong_count(&weak), 2, "still held");
    p.publish(bytes::Bytes::new());
    assert_eq!(StdArc::strong_count(&weak), 1, "overwritten: dropped at once");
}

struct Owner(#[allow(dead_code)] StdArc<()>);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &[]
    }
}

#[test]
fn readers_on_other_threads_see_every_item_or_its_loss() {
    let items: u64 = if cfg!(miri) { 50 } else { 20_000 };
    let (mut p, h) = hub(8);
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut s = h.subscribe(Start::Live);
            std::thread::spawn(move || {
                let mut next = 0u64;
                loop {
                    match s.try_recv() {
                        Ok(v) => {
                            assert_eq!(v, next);
                            next += 1;
                        }
                        Err(TryRecvError::Lagged(n)) => next += n,
                        Err(TryRecvError::Empty) => std::thread::yield_now(),
                        Err(TryRecvError::Closed) => return next,
                    }
                }
            })
        })
        .collect();
    for i in 0..items {
        p.publish(i);
    }
    drop(p);
    for r in readers {
        assert_eq!(r.join().unwrap(), items);
    }
}
