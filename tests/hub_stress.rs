//! The hub under load: 64 reader threads of random speed against one
//! writer. Every reader must see strictly increasing sequence numbers, no
//! duplicates, gaps exactly equal to the `Lagged` counts it was told, and end
//! with `Closed` after draining; buffers alive never exceed what the ring and
//! the readers' hands can hold.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use uringest::hub::{Hub, RecvError, Start, Subscriber, TryRecvError};

const READERS: usize = 64;
const ITEMS: u64 = 200_000;
const CAPACITY: usize = 256;
const MAX_BATCH: usize = 16;

/// A buffer that counts how many of its kind are alive.
struct Buf {
    seq: [u8; 8],
    live: Arc<AtomicUsize>,
}

impl AsRef<[u8]> for Buf {
    fn as_ref(&self) -> &[u8] {
        &self.seq
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

fn item(seq: u64, live: &Arc<AtomicUsize>) -> Bytes {
    live.fetch_add(1, Ordering::Relaxed);
    Bytes::from_owner(Buf { seq: seq.to_le_bytes(), live: live.clone() })
}

fn seq_of(b: &Bytes) -> u64 {
    u64::from_le_bytes(b[..8].try_into().unwrap())
}

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls until ready, parking the thread in between.
fn block_on<F: Future>(f: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

#[derive(Default, Debug)]
struct Seen {
    received: u64,
    lost: u64,
    lag_events: u64,
}

/// Checks one received sequence number against what the reader expects.
fn check(next: &mut u64, pending_loss: &mut u64, seq: u64) {
    assert_eq!(seq, *next, "gap of {} after {} reported lost", seq as i64 - *next as i64, pending_loss);
    *next = seq + 1;
    *pending_loss = 0;
}

fn reader(mut s: Subscriber<Bytes>, seed: u64) -> Seen {
    let mut rng = SmallRng::seed_from_u64(seed);
    // Speed: how much work per item, and how often a reader dozes off.
    let work: u32 = rng.random_range(0..2_000);
    let doze_every: u32 = rng.random_range(200..20_000);
    let mode = seed % 3;
    let mut seen = Seen::default();
    let mut next = 0u64;
    let mut pending_loss = 0u64;
    let mut out = Vec::with_capacity(MAX_BATCH);
    let mut n = 0u32;
    loop {
        let got: Result<usize, RecvError> = match mode {
            0 => block_on(s.recv()).map(|b| {
                out.push(b);
                1
            }),
            1 => block_on(s.recv_batch(&mut out, rng.random_range(1..=MAX_BATCH))),
            _ => match s.try_recv() {
                Ok(b) => {
                    out.push(b);
                    Ok(1)
                }
                Err(TryRecvError::Empty) => {
                    thread::yield_now();
                    continue;
                }
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            },
        };
        match got {
            Ok(_) => {
                for b in out.drain(..) {
                    check(&mut next, &mut pending_loss, seq_of(&b));
                    seen.received += 1;
                    let mut x = 0u32;
                    for i in 0..work {
                        x = std::hint::black_box(x.wrapping_add(i));
                    }
                    n += 1;
                    if n % doze_every == 0 {
                        thread::sleep(Duration::from_micros(rng.random_range(10..2_000)));
                    }
                }
            }
            Err(RecvError::Lagged(k)) => {
                assert!(k > 0);
                next += k;
                pending_loss += k;
                seen.lost += k;
                seen.lag_events += 1;
            }
            Err(RecvError::Closed) => {
                assert_eq!(next, ITEMS, "closed before draining");
                return seen;
            }
        }
    }
}

#[test]
fn sixty_four_readers_of_random_speed() {
    let live = Arc::new(AtomicUsize::new(0));
    let (mut p, hub) = Hub::<Bytes>::new(CAPACITY).unwrap();
    let readers: Vec<_> = (0..READERS as u64)
        .map(|i| {
            let s = hub.subscribe(Start::Live);
            thread::spawn(move || reader(s, 0x5EED_0000 + i))
        })
        .collect();
    let mut rng = SmallRng::seed_from_u64(7);
    // Buffers alive: the ring, plus each reader's hands (a batch and the one
    // it may be cloning when overwritten).
    let bound = CAPACITY + READERS * (MAX_BATCH + 1) + 1;
    let mut seq = 0u64;
    let mut max_live = 0;
    while seq < ITEMS {
        let burst = rng.random_range(1..=32u64).min(ITEMS - seq);
        if burst == 1 {
            p.publish(item(seq, &live));
        } else {
            p.publish_batch((seq..seq + burst).map(|s| item(s, &live)));
        }
        seq += burst;
        max_live = max_live.max(live.load(Ordering::Relaxed));
        if rng.random_range(0..64) == 0 {
            thread::sleep(Duration::from_micros(50));
        }
    }
    drop(p);
    let mut total_lost = 0;
    for r in readers {
        let seen = r.join().unwrap();
        assert_eq!(seen.received + seen.lost, ITEMS, "{seen:?}");
        total_lost += seen.lost;
    }
    assert!(max_live <= bound, "{max_live} buffers alive, bound {bound}");
    assert!(live.load(Ordering::Relaxed) <= CAPACITY, "only the ring's items remain");
    drop(hub);
    assert_eq!(live.load(Ordering::Relaxed), 0, "every buffer freed exactly once");
    println!("readers lost {total_lost} of {} deliveries; at most {max_live} buffers alive", ITEMS * READERS as u64);
}
