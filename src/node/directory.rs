//! The node's streams by id, as their readers see them: each stream's chunk
//! hub (HTTP-TS clients, `copy://`) and, while someone reads it, its AV hub
//! (`mixer://`).
//!
//! Kept apart from the node's stream table so that a reader never waits
//! behind a control call. A stream with several renditions would be tapped
//! here at its best one; every stream has one rendition today.
//!
//! The AV hub is lazy: the first reader starts a demux task
//! ([`AvSubscription::start`] hands it to the caller to spawn on its shard),
//! later readers share it, and the task ends once the last reader has gone
//! (each reader holds a lease the task watches). The decision to end and a
//! new reader's subscription both happen under the directory's lock, so a
//! reader never subscribes to a hub whose task has already decided to end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;

use crate::hub::{Hub, Publisher, Start, Subscriber};
use crate::node::api::HttpCounters;
use crate::ts::av::AvPacket;
use crate::ts::demux::DemuxCounters;

/// AV packets kept per stream's AV hub: a few seconds of a typical stream.
pub const AV_HUB_CAPACITY: usize = 512;

/// What a reader of a stream's AV packets holds: while any exists, the
/// stream's demux task runs.
#[derive(Debug)]
pub struct Lease(());

/// One stream's entry.
struct Entry {
    chunks: Hub<Bytes>,
    http: HttpCounters,
    av: Option<AvTap>,
}

/// A running demux task's hub, the leases of its readers, its counters.
struct AvTap {
    hub: Hub<AvPacket>,
    leases: Weak<Lease>,
    generation: u64,
    counters: Arc<Mutex<DemuxCounters>>,
}

/// The node's streams by id.
#[derive(Default)]
pub struct Directory {
    entries: Mutex<BTreeMap<String, Entry>>,
    generations: std::sync::atomic::AtomicU64,
}

/// A new reader of a stream's AV packets.
pub struct AvSubscription {
    /// The packets.
    pub packets: Subscriber<AvPacket>,
    /// Keeps the demux task running; drop it with `packets`.
    pub lease: Arc<Lease>,
    /// The demux task to spawn, when this reader is the first.
    pub start: Option<DemuxFeed>,
}

/// What a new demux task needs: the stream's chunks in, its AV hub out.
pub struct DemuxFeed {
    /// The stream's id.
    pub id: String,
    /// The stream's chunks, from the live edge.
    pub chunks: Subscriber<Bytes>,
    /// Where the AV packets go.
    pub publisher: Publisher<AvPacket>,
    /// The readers' leases: none left means the task should end.
    pub leases: Weak<Lease>,
    /// Which tap this is, for [`Directory::end_demux`].
    pub generation: u64,
    /// Where the task shows its counters.
    pub counters: Arc<Mutex<DemuxCounters>>,
}

impl Directory {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        // A poisoned lock only means a panic elsewhere; the map is whole.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds or replaces stream `id`'s hub (a replaced stream's AV readers
    /// keep the old hub until it closes).
    pub fn insert(&self, id: &str, chunks: Hub<Bytes>, http: HttpCounters) {
        self.lock().insert(id.to_owned(), Entry { chunks, http, av: None });
    }

    /// Whether stream `id` exists (a reader whose hub closed tells a
    /// restart from an end by it).
    pub fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Removes stream `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Stream `id`'s chunk hub and HTTP-TS counters.
    pub fn tap(&self, id: &str) -> Option<(Hub<Bytes>, HttpCounters)> {
        self.lock().get(id).map(|e| (e.chunks.clone(), e.http.clone()))
    }

    /// A reader of stream `id`'s chunks from the live edge (`copy://`).
    pub fn chunks(&self, id: &str) -> Option<Subscriber<Bytes>> {
        self.lock().get(id).map(|e| e.chunks.subscribe(Start::Live))
    }

    /// A reader of stream `id`'s AV packets from the live edge
    /// (`mixer://`); `None` when there is no such stream.
    pub fn av(&self, id: &str) -> Option<AvSubscription> {
        let mut entries = self.lock();
        let entry = entries.get_mut(id)?;
        if let Some(tap) = &entry.av
            && let Some(lease) = tap.leases.upgrade()
            && !tap.hub.is_closed()
        {
            return Some(AvSubscription { packets: tap.hub.subscribe(Start::Live), lease, start: None });
        }
        let (publisher, hub) = Hub::new(AV_HUB_CAPACITY).ok()?;
        let lease = Arc::new(Lease(()));
        let generation = self.generations.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let packets = hub.subscribe(Start::Live);
        let chunks = entry.chunks.subscribe(Start::Live);
        let counters = Arc::new(Mutex::new(DemuxCounters::default()));
        entry.av = Some(AvTap { hub, leases: Arc::downgrade(&lease), generation, counters: Arc::clone(&counters) });
        let leases = Arc::downgrade(&lease);
        let start = DemuxFeed { id: id.to_owned(), chunks, publisher, leases, generation, counters };
        Some(AvSubscription { packets, lease, start: Some(start) })
    }

    /// Called by a demux task that sees no lease left: true if it should
    /// end (and its tap is gone from the directory), false if a reader
    /// came meanwhile.
    pub fn end_demux(&self, id: &str, generation: u64, leases: &Weak<Lease>) -> bool {
        let mut entries = self.lock();
        if leases.strong_count() > 0 {
            return false;
        }
        if let Some(entry) = entries.get_mut(id)
            && entry.av.as_ref().is_some_and(|tap| tap.generation == generation)
        {
            entry.av = None;
        }
        true
    }

    /// Stream `id`'s demux counters, while its demux task runs.
    pub fn demux_counters(&self, id: &str) -> Option<DemuxCounters> {
        let entries = self.lock();
        let tap = entries.get(id)?.av.as_ref()?;
        Some(*tap.counters.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Whether stream `id` has a demux task running (for tests and status).
    pub fn demuxing(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|e| e.av.as_ref().is_some_and(|tap| tap.leases.strong_count() > 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory_with(id: &str) -> (Directory, Publisher<Bytes>) {
        let directory = Directory::default();
        let (publisher, hub) = Hub::new(16).unwrap();
        directory.insert(id, hub, HttpCounters::default());
        (directory, publisher)
    }

    #[test]
    fn first_av_reader_starts_the_demux_later_ones_share_it() {
        let (directory, _publisher) = directory_with("a");
        assert!(directory.av("missing").is_none());
        let first = directory.av("a").unwrap();
        assert!(first.start.is_some());
        let second = directory.av("a").unwrap();
        assert!(second.start.is_none(), "a second reader shares the running demux");
        assert!(directory.demuxing("a"));
        let feed = first.start.unwrap();
        drop((first.packets, first.lease));
        assert!(!directory.end_demux("a", feed.generation, &feed.leases), "one reader is left");
        drop((second.packets, second.lease));
        assert!(directory.end_demux("a", feed.generation, &feed.leases));
        assert!(!directory.demuxing("a"));
        assert!(directory.av("a").unwrap().start.is_some(), "the next reader starts a new demux");
    }

    #[test]
    fn an_old_demux_ending_leaves_a_newer_tap_alone() {
        let (directory, _publisher) = directory_with("a");
        let old = directory.av("a").unwrap();
        let old_feed = old.start.unwrap();
        drop((old.packets, old.lease));
        // A reader comes after the leases ran out but before the old task
        // noticed: it gets a new demux.
        let new = directory.av("a").unwrap();
        assert!(new.start.is_some());
        assert!(directory.end_demux("a", old_feed.generation, &old_feed.leases));
        assert!(directory.demuxing("a"), "the new tap survives the old task's end");
    }

    #[test]
    fn copy_readers_start_at_the_live_edge() {
        let (directory, mut publisher) = directory_with("a");
        publisher.publish(Bytes::from_static(b"old"));
        let mut reader = directory.chunks("a").unwrap();
        publisher.publish(Bytes::from_static(b"new"));
        assert_eq!(reader.try_recv().unwrap(), Bytes::from_static(b"new"));
        directory.remove("a");
        assert!(directory.chunks("a").is_none());
    }
}
