//! HLS input (`http://host/x.m3u8`): live sliding windows and VOD, TS
//! segments fetched over HTTP and published as chunks of whole packets.
//!
//! Two loops run side by side in the input's task: the fetcher reloads the
//! media playlist and downloads the new segments, the player cuts each
//! segment into chunks and publishes them, paced by DTS unless `pace=none`
//! ([`ChunkPacer`]). A segment arrives whole and far faster than it plays;
//! unpaced, a 6 s segment would land in a stream's hub in one lump, more
//! than a bounded hub's readers can take. Between the two loops sit at
//! most [`SEGMENT_QUEUE`] segments, so memory is bounded by that many
//! times [`SEGMENT_LIMIT`], and a fetcher ahead of the player waits.
//!
//! [`HlsInput`] outlives a failure: its cursor keeps the media sequence, so
//! playing again after a transient error resumes where it stopped and takes
//! no segment twice. The first open resolves a master playlist to its
//! highest-bandwidth variant and keeps that choice.

pub mod fetch;
pub mod playlist;

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use url::Url;

use crate::clock::{Clock, SystemClock};
use crate::input::chunks::{ChunkCounters, FileChunks};
use crate::input::playout::drive::ChunkSink;
use crate::ts::dts_pace::{ChunkPacer, DtsPaceLimits};
use crate::url::{HlsPace, HlsSpec};
use fetch::FetchError;
use playlist::{Cursor, Listing, Media};

/// Largest playlist accepted: 1 MiB holds tens of thousands of segments.
pub const PLAYLIST_LIMIT: usize = 1 << 20;
/// Largest segment accepted: 128 MiB is 10 s at 100 Mbit/s.
pub const SEGMENT_LIMIT: usize = 128 << 20;
/// Segments fetched ahead of the one playing.
pub const SEGMENT_QUEUE: usize = 2;
/// Longest wait for one playlist.
const PLAYLIST_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for one segment.
const SEGMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries per segment before a transient error fails the input.
const SEGMENT_TRIES: u32 = 3;
/// Wait between two tries of a segment.
const SEGMENT_RETRY: Duration = Duration::from_millis(500);
/// Packets per published chunk (as a mapped file's).
const CHUNK_PACKETS: usize = 7 * 16;
/// Chunks due within this much of each other go out in one batch: the
/// outputs pace what they send, and one wake-up per chunk would only cost.
const PACE_SLACK: Duration = Duration::from_millis(10);
/// Most chunks published at once (64 × 112 packets, 1.3 MiB): well below
/// a stream hub's capacity.
const MAX_BATCH: usize = 64;
/// Reloads of a live playlist that bring nothing, beyond which it is
/// taken for stalled (a transient failure).
const STALLED_RELOADS: u32 = 6;

/// What an HLS input counted, over all its opens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HlsCounters {
    /// Playlist loads.
    pub playlist_loads: u64,
    /// Segments fetched and played.
    pub segments: u64,
    /// Segment bytes fetched.
    pub segment_bytes: u64,
    /// Segments that left a live window before they could be fetched.
    pub missed_segments: u64,
    /// Times the media sequence went backwards and the playlist was joined
    /// afresh.
    pub restarts: u64,
    /// Segment fetches tried again after a transient error.
    pub segment_retries: u64,
    /// Times pacing gave up its schedule (jumps, stalls, discontinuities).
    pub pace_resets: u64,
    /// Bytes outside any packet in the segments.
    pub skipped_bytes: u64,
    /// Lost sync bytes in the segments.
    pub sync_losses: u64,
}

/// Why playing stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HlsError {
    /// Whether trying again cannot help (fail over at once).
    pub permanent: bool,
    /// One line naming what failed.
    pub message: String,
}

impl std::fmt::Display for HlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<FetchError> for HlsError {
    fn from(e: FetchError) -> HlsError {
        HlsError { permanent: e.permanent, message: e.message }
    }
}

impl HlsError {
    fn permanent(url: &Url, what: impl std::fmt::Display) -> HlsError {
        HlsError { permanent: true, message: format!("{url}: {what}") }
    }
}

/// One HLS input, across its opens.
pub struct HlsInput {
    spec: HlsSpec,
    /// The media playlist, once a master playlist was resolved.
    media_url: Option<Url>,
    cursor: Cursor,
    pacer: ChunkPacer,
    /// The pacer's time origin: kept across opens, as the pacer's schedule
    /// is.
    epoch: Instant,
    counters: HlsCounters,
}

/// A loaded media playlist, ready to play.
pub struct OpenPlaylist {
    url: Url,
    media: Media,
}

/// A fetched segment on its way to the player.
struct Fetched {
    body: Bytes,
    discontinuity: bool,
    /// Segments lost just before this one (told to the sink with it).
    missed_before: u64,
}

impl HlsInput {
    /// An input for `spec` that has fetched nothing.
    pub fn new(spec: HlsSpec) -> HlsInput {
        HlsInput {
            spec,
            media_url: None,
            cursor: Cursor::new(),
            pacer: ChunkPacer::new(DtsPaceLimits::default()),
            epoch: SystemClock.now(),
            counters: HlsCounters::default(),
        }
    }

    /// What was counted so far.
    pub fn counters(&self) -> HlsCounters {
        HlsCounters { pace_resets: self.pacer.resets(), ..self.counters }
    }

    /// Plays the playlist `open` loaded into `sink` until it ends (`Ok`)
    /// or a fetch fails.
    pub async fn play(&mut self, open: OpenPlaylist, sink: &mut impl ChunkSink) -> Result<(), HlsError> {
        let OpenPlaylist { url: media_url, media: first } = open;
        let (tx, rx) = mpsc::channel(SEGMENT_QUEUE);
        let HlsInput { spec, cursor, pacer, epoch, counters, .. } = self;
        let pace = spec.pace;
        let mut framing = ChunkCounters::default();
        let fetcher = fetch_segments(&media_url, first, cursor, counters, tx);
        let player = play_segments(rx, (pace, *epoch), pacer, sink, &mut framing);
        let (fetched, ()) = tokio::join!(fetcher, player);
        self.counters.skipped_bytes += framing.skipped_bytes;
        self.counters.sync_losses += framing.sync_losses;
        fetched
    }

    /// Loads the media playlist, resolving a master playlist the first time:
    /// the input is open when this succeeds.
    pub async fn open(&mut self) -> Result<OpenPlaylist, HlsError> {
        let mut url = self.media_url.clone().unwrap_or_else(|| self.spec.url.clone());
        // A master playlist is followed once; its variant must be media.
        for hop in 0..2 {
            let fetched = fetch::get(&url, PLAYLIST_LIMIT, PLAYLIST_TIMEOUT).await?;
            self.counters.playlist_loads += 1;
            match playlist::parse(&fetched.body, &fetched.url).map_err(|e| HlsError::permanent(&fetched.url, e))? {
                Listing::Media(media) => {
                    self.media_url = Some(url);
                    return Ok(OpenPlaylist { url: fetched.url, media });
                }
                Listing::Variant { url: variant, bandwidth } if hop == 0 => {
                    tracing::info!(master = %fetched.url, %variant, bandwidth, "HLS: playing the highest-bandwidth variant");
                    url = variant;
                }
                Listing::Variant { .. } => {
                    return Err(HlsError::permanent(&fetched.url, "a variant is itself a master playlist"));
                }
            }
        }
        Err(HlsError::permanent(&url, "no media playlist"))
    }
}

/// Reloads the media playlist and fetches its new segments into `tx` until
/// the playlist ends, a fetch fails, or the player is gone.
async fn fetch_segments(
    media_url: &Url,
    mut media: Media,
    cursor: &mut Cursor,
    counters: &mut HlsCounters,
    tx: mpsc::Sender<Fetched>,
) -> Result<(), HlsError> {
    let clock = SystemClock;
    let mut idle_reloads = 0;
    loop {
        let loaded_at = clock.now();
        let update = cursor.update(&media);
        counters.missed_segments += update.missed;
        counters.restarts += u64::from(update.restarted);
        if update.missed > 0 || update.restarted {
            tracing::warn!(playlist = %media_url, missed = update.missed, restarted = update.restarted, "HLS: segments lost");
        }
        let brought = !update.new.is_empty();
        let mut missed_before = update.missed;
        for segment in update.new {
            let body = fetch_segment(&segment.url, counters).await?;
            counters.segments += 1;
            counters.segment_bytes += body.len() as u64;
            let fetched = Fetched { body, discontinuity: segment.discontinuity, missed_before };
            missed_before = 0;
            if tx.send(fetched).await.is_err() {
                return Ok(());
            }
            cursor.taken(segment.sequence);
        }
        if media.ended {
            return Ok(());
        }
        idle_reloads = if brought { 0 } else { idle_reloads + 1 };
        if idle_reloads > STALLED_RELOADS {
            return Err(HlsError {
                permanent: false,
                message: format!("{media_url}: live playlist brought no segment in {STALLED_RELOADS} reloads"),
            });
        }
        let next = loaded_at + playlist::reload_after(&media, brought);
        tokio::time::sleep(next.saturating_duration_since(clock.now())).await;
        let fetched = fetch::get(media_url, PLAYLIST_LIMIT, PLAYLIST_TIMEOUT).await?;
        counters.playlist_loads += 1;
        media = match playlist::parse(&fetched.body, &fetched.url).map_err(|e| HlsError::permanent(&fetched.url, e))? {
            Listing::Media(media) => media,
            Listing::Variant { .. } => return Err(HlsError::permanent(media_url, "turned into a master playlist")),
        };
    }
}

/// Fetches one segment, trying a transient failure again.
async fn fetch_segment(url: &Url, counters: &mut HlsCounters) -> Result<Bytes, HlsError> {
    let mut tries = 0;
    loop {
        tries += 1;
        match fetch::get(url, SEGMENT_LIMIT, SEGMENT_TIMEOUT).await {
            Ok(fetched) => return Ok(fetched.body),
            Err(e) if !e.permanent && tries < SEGMENT_TRIES => {
                tracing::warn!(error = %e, "HLS: segment fetch failed; trying again");
                counters.segment_retries += 1;
                tokio::time::sleep(SEGMENT_RETRY).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Cuts the segments from `rx` into chunks and publishes them, paced by
/// DTS when `pace` says so, until the fetcher is done.
async fn play_segments(
    mut rx: mpsc::Receiver<Fetched>,
    (pace, epoch): (HlsPace, Instant),
    pacer: &mut ChunkPacer,
    sink: &mut impl ChunkSink,
    framing: &mut ChunkCounters,
) {
    let clock = SystemClock;
    let mut batch = Vec::new();
    while let Some(segment) = rx.recv().await {
        if segment.missed_before > 0 {
            sink.segments_missed(segment.missed_before);
        }
        let mut chunks = FileChunks::from_bytes(segment.body, false, CHUNK_PACKETS);
        let mut discontinuity = segment.discontinuity;
        while let Some(chunk) = chunks.next_chunk() {
            if pace == HlsPace::Dts {
                let now = clock.now().saturating_duration_since(epoch);
                let due = pacer.release_at(&chunk, discontinuity, now);
                discontinuity = false;
                if due > now + PACE_SLACK {
                    sink.publish_batch(&mut batch);
                    tokio::time::sleep(due - now).await;
                }
            }
            batch.push(chunk);
            if batch.len() == MAX_BATCH {
                // Unpaced, a segment is published in slices, the shard's
                // other tasks (outputs reading the hub) running between.
                sink.publish_batch(&mut batch);
                tokio::task::yield_now().await;
            }
        }
        sink.publish_batch(&mut batch);
        let counted = chunks.counters();
        framing.skipped_bytes += counted.skipped_bytes;
        framing.sync_losses += counted.sync_losses;
        // Unpaced, a queue of segments would go out back to back: let the
        // shard's other tasks run between them.
        tokio::task::yield_now().await;
    }
}
