//! Loom models of the hub, after tokio's `loom_broadcast.rs`: under every
//! interleaving (up to a preemption bound) each reader gets items in order,
//! without duplicates, `received + lost == published`, every value is
//! dropped exactly once, and nobody sleeps forever.
//!
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib hub`
//! (`.ci/run` sets `CARGO_TARGET_DIR=target/loom`). `LOOM_MAX_PREEMPTIONS`
//! overrides the bound set here.

use std::sync::atomic::{AtomicIsize, Ordering};

use loom::future::block_on;
use loom::thread;

use super::*;
use crate::hub::counted::Counted;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(3);
    }
    b.check(f);
}

/// Receives until `Closed`: checks order, returns (received, lost).
fn drain(mut s: Subscriber<Counted>) -> (u64, u64) {
    let mut next = s.position();
    let (mut got, mut lost) = (0, 0);
    loop {
        match block_on(s.recv()) {
            Ok(v) => {
                assert!(v.0 >= next, "out of order or duplicate: {} after {next}", v.0);
                assert_eq!(v.0, next, "a gap that was not reported as a lag");
                next = v.0 + 1;
                got += 1;
            }
            Err(RecvError::Lagged(n)) => {
                next += n;
                lost += n;
            }
            Err(RecvError::Closed) => return (got, lost),
        }
    }
}

#[test]
fn publish_recv_close() {
    model(|| {
        let live = std::sync::Arc::new(AtomicIsize::new(0));
        let (mut p, h) = Hub::<Counted>::new(2).unwrap();
        let s = h.subscribe(Start::Live);
        let reader = thread::spawn(move || drain(s));
        for i in 0..3 {
            p.publish(Counted::new(i, &live));
        }
        drop(p);
        let (got, lost) = reader.join().unwrap();
        assert_eq!(got + lost, 3);
        drop(h);
        assert_eq!(live.load(Ordering::Relaxed), 0, "every value dropped exactly once");
    });
}

#[test]
fn lag_with_capacity_one() {
    model(|| {
        let live = std::sync::Arc::new(AtomicIsize::new(0));
        let (mut p, h) = Hub::<Counted>::new(1).unwrap();
        let s = h.subscribe(Start::Live);
        drop(h);
        let reader = thread::spawn(move || drain(s));
        for i in 0..3 {
            p.publish(Counted::new(i, &live));
        }
        drop(p);
        let (got, lost) = reader.join().unwrap();
        assert_eq!(got + lost, 3);
        assert!(got >= 1, "the last item is never lost");
        assert_eq!(live.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn a_reader_mid_clone_while_the_writer_laps_it() {
    model(|| {
        let live = std::sync::Arc::new(AtomicIsize::new(0));
        let (mut p, h) = Hub::<Counted>::new(1).unwrap();
        p.publish(Counted::new(0, &live));
        let mut s = h.subscribe(Start::Oldest);
        let reader = thread::spawn(move || {
            let r = s.try_recv().map(|v| v.0);
            assert!(matches!(r, Ok(0) | Err(TryRecvError::Lagged(1 | 2))), "{r:?}");
            drop(s);
        });
        p.publish(Counted::new(1, &live));
        p.publish(Counted::new(2, &live));
        reader.join().unwrap();
        assert_eq!(live.load(Ordering::Relaxed), 1, "only the newest item is alive");
        drop((p, h));
        assert_eq!(live.load(Ordering::Relaxed), 0);
    });
}

#[test]
fn batches_and_recv_batch() {
    model(|| {
        let (mut p, h) = Hub::<u64>::new(4).unwrap();
        let mut s = h.subscribe(Start::Live);
        let reader = thread::spawn(move || {
            let mut out = Vec::new();
            let mut lost = 0;
            loop {
                match block_on(s.recv_batch(&mut out, 2)) {
                    Ok(n) => assert!((1..=2).contains(&n)),
                    Err(RecvError::Lagged(n)) => lost += n,
                    Err(RecvError::Closed) => return (out, lost),
                }
            }
        });
        p.publish_batch([0, 1, 2]);
        p.publish_batch([3]);
        drop(p);
        let (out, lost) = reader.join().unwrap();
        assert_eq!(lost, 0);
        assert_eq!(out, [0, 1, 2, 3]);
    });
}

#[test]
fn one_wake_reaches_every_waiting_reader() {
    model(|| {
        let (mut p, h) = Hub::<u64>::new(2).unwrap();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let mut s = h.subscribe(Start::Live);
                thread::spawn(move || block_on(s.recv()))
            })
            .collect();
        p.publish(5);
        // The publisher stays alive: closing would wake everyone anyway.
        for r in readers {
            assert_eq!(r.join().unwrap(), Ok(5));
        }
        drop(p);
    });
}

#[test]
fn readers_subscribing_while_the_pool_grows() {
    model(|| {
        let (mut p, h) = Hub::<u64>::new(1).unwrap();
        let h2 = h.clone();
        let reader = thread::spawn(move || {
            let mut s = h2.subscribe(Start::Oldest);
            s.try_recv().ok()
        });
        p.publish(1);
        p.publish(2);
        let got = reader.join().unwrap();
        assert!(matches!(got, None | Some(1) | Some(2)), "{got:?}");
        drop((p, h));
    });
}
