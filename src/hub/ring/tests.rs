//! Unit tests of the slot ring, written to run under Miri.

use std::sync::atomic::AtomicIsize;

use super::*;
use crate::hub::counted::Counted;

fn item(r: Read<Counted>) -> u64 {
    match r {
        Read::Item(c) => c.0,
        other => panic!("expected an item, got {other:?}"),
    }
}

#[test]
fn locate_maps_indices_to_chunks() {
    assert_eq!(locate(0, 2), (0, 0));
    assert_eq!(locate(3, 2), (0, 3));
    assert_eq!(locate(4, 2), (1, 0));
    assert_eq!(locate(11, 2), (1, 7));
    assert_eq!(locate(12, 2), (2, 0));
    assert_eq!(locate(NONE - 1, 1).0, 31);
}

#[test]
fn reads_in_order_then_empty_then_closed() {
    let live = std::sync::Arc::new(AtomicIsize::new(0));
    let (ring, mut w) = Ring::new(4);
    assert!(matches!(ring.read(0), Read::Empty));
    for i in 0..3 {
        w.write(Counted::new(i, &live));
    }
    assert!(matches!(ring.read(0), Read::Empty), "not visible before commit");
    assert!(!w.commit());
    for i in 0..3 {
        assert_eq!(item(ring.read(i)), i);
    }
    assert!(matches!(ring.read(3), Read::Empty));
    drop(w);
    assert!(matches!(ring.read(3), Read::Closed));
    assert_eq!(item(ring.read(2)), 2, "items stay readable after close");
    drop(ring);
    assert_eq!(live.load(Ordering::Relaxed), 0);
}

#[test]
fn overwritten_items_drop_at_once_and_lag_is_exact() {
    let live = std::sync::Arc::new(AtomicIsize::new(0));
    let (ring, mut w) = Ring::new(4);
    for i in 0..10 {
        w.write(Counted::new(i, &live));
        w.commit();
        assert!(live.load(Ordering::Relaxed) <= 4, "at most capacity items alive");
    }
    assert_eq!(live.load(Ordering::Relaxed), 4);
    match ring.read(1) {
        Read::Lagged { next } => assert_eq!(next, 6),
        other => panic!("{other:?}"),
    }
    assert_eq!(item(ring.read(6)), 6);
    assert_eq!(item(ring.read(9)), 9);
}

#[test]
fn a_pinned_item_is_dropped_by_its_last_reader() {
    let live = std::sync::Arc::new(AtomicIsize::new(0));
    let (ring, mut w) = Ring::new(2);
    ring.add_reader();
    ring.add_reader();
    w.write(Counted::new(0, &live));
    w.commit();
    // Two readers stop in the middle of a clone of position 0.
    let a = ring.pin(0).unwrap();
    let b = ring.pin(0).unwrap();
    assert_eq!(a.seq(), 0);
    // The writer laps them twice; it neither waits nor touches node 0.
    for i in 1..5 {
        w.write(Counted::new(i, &live));
        w.commit();
    }
    assert_eq!(b.value().0, 0, "the pinned value is intact");
    assert_eq!(live.load(Ordering::Relaxed), 3, "2 in slots + the pinned one");
    drop(a);
    assert_eq!(live.load(Ordering::Relaxed), 3);
    drop(b);
    assert_eq!(live.load(Ordering::Relaxed), 2, "last reader dropped it");
    // The node went back to the pool and is reused.
    for i in 5..20 {
        w.write(Counted::new(i, &live));
        w.commit();
    }
    assert_eq!(item(ring.read(19)), 19);
    assert_eq!(live.load(Ordering::Relaxed), 2);
    let made = lock(&ring.pool).made;
    assert_eq!(made, 2 + 1 + 2, "no growth beyond capacity + 1 + readers");
}

#[test]
fn pins_released_before_the_writer_comes_back_leave_it_the_node() {
    let live = std::sync::Arc::new(AtomicIsize::new(0));
    let (ring, mut w) = Ring::new(2);
    ring.add_reader();
    w.write(Counted::new(0, &live));
    w.commit();
    let p = ring.pin(0).unwrap();
    w.write(Counted::new(1, &live));
    w.write(Counted::new(2, &live)); // displaces position 0 with one pin
    w.commit();
    assert_eq!(live.load(Ordering::Relaxed), 3);
    drop(p);
    assert_eq!(live.load(Ordering::Relaxed), 2);
    match ring.read(0) {
        Read::Lagged { next } => assert_eq!(next, 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_read_that_finds_its_slot_overwritten_reports_the_newer_edge() {
    let live = std::sync::Arc::new(AtomicIsize::new(0));
    let (ring, mut w) = Ring::new(2);
    for i in 0..3 {
        w.write(Counted::new(i, &live));
    }
    w.commit();
    for i in 3..5 {
        w.write(Counted::new(i, &live));
    }
    // Published up to 3, but the slot of position 2 already holds 4 (not
    // yet committed): the oldest position certainly kept is 3.
    match ring.read(2) {
        Read::Lagged { next } => assert_eq!(next, 3),
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_pool_grows_with_readers() {
    let (ring, _w) = Ring::<u64>::new(4);
    for _ in 0..40 {
        ring.add_reader();
    }
    assert_eq!(lock(&ring.pool).made, 4 + 1 + 40);
    ring.remove_reader();
    ring.add_reader();
    assert_eq!(lock(&ring.pool).made, 4 + 1 + 40, "a returning reader reuses its share");
}
