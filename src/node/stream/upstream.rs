//! Inputs that read other streams of the node: `copy://` (their chunks,
//! passthrough) and `mixer://` (video of one, audio of another, re-muxed).
//!
//! A mixer reads its upstreams' AV hubs ([`Directory::av`]); the first
//! reader of a stream starts its demux task on its own shard, and the task
//! ends with the stream or its last reader, so demux runs only while
//! someone reads AV packets.
//!
//! A missing upstream fails the open, so the supervisor backs off and
//! retries (it may be created later) and the input shows as degraded. An
//! upstream's hub closes when the stream is deleted, which is the end of
//! this input's data, or restarted by a replace, which is a transient
//! failure: the input reconnects to the new hub after the backoff.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use bytes::BytesMut;

use crate::clock::{Clock, SystemClock};
use crate::hub::RecvError;
use crate::input::playout::drive::ChunkSink;
use crate::node::directory::{AvSubscription, DemuxFeed, Directory};
use crate::node::supervisor::Event;
use crate::ts::audio_frames::split_frames;
use crate::ts::demux::{DRAIN_BATCH, DemuxCounters, Demuxer};
use crate::ts::mix::{Mix, MixCounters};
use crate::ts::mux::{MuxConfig, Muxer};
use crate::url::{AudioFailure, MixerSpec};

use super::input::{InputSink, Outcome};

/// Chunks taken from the upstream hub per batch.
const COPY_BATCH: usize = 64;
/// AV packets taken from an AV hub, or drained from the demuxer, per batch.
const AV_BATCH: usize = DRAIN_BATCH;
/// Room the mixer's muxer writes into; each round's TS is cut off from it
/// as one chunk, and it is topped up when it runs low.
const MUX_BUFFER: usize = 64 * 1024;
/// How often an idle demux task looks whether it still has readers.
const LEASE_CHECK: Duration = Duration::from_secs(1);

/// Runs a `copy://` input: the upstream's chunks as they are.
pub(super) async fn copy(sink: &mut InputSink, stream: &str) -> Outcome {
    let reader = sink.core.borrow().directory.chunks(stream);
    let Some(mut reader) = reader else {
        return Outcome::open_failed(format!("no stream '{stream}' to copy"));
    };
    sink.report(|input| Event::Opened { input }, None);
    let mut batch = Vec::with_capacity(COPY_BATCH);
    loop {
        match reader.recv_batch(&mut batch, COPY_BATCH).await {
            Ok(n) => {
                sink.publish_batch(&mut batch);
                if n == COPY_BATCH {
                    // A backlog returns batch after batch without waiting:
                    // let the shard's other tasks run in between.
                    tokio::task::yield_now().await;
                }
            }
            Err(RecvError::Lagged(n)) => sink.lagged(n),
            Err(RecvError::Closed) => return upstream_closed(sink, stream),
        }
    }
}

/// What an upstream's closed hub means: the end of this input when the
/// stream is gone, a transient failure (reconnect after backoff) when it
/// is still there, restarted by a replace.
fn upstream_closed(sink: &InputSink, stream: &str) -> Outcome {
    if sink.core.borrow().directory.contains(stream) {
        Outcome::failed(format!("stream '{stream}' restarted"))
    } else {
        Outcome::Ended
    }
}

/// Runs a `mixer://` input: video packets of one stream and audio packets
/// of another, on one timeline ([`Mix`]), muxed back to TS.
pub(super) async fn mix(sink: &mut InputSink, spec: MixerSpec) -> Outcome {
    let directory = Arc::clone(&sink.core.borrow().directory);
    let Some(mut video) = subscribe_av(&directory, &spec.video) else {
        return Outcome::open_failed(format!("no stream '{}' for the mixer's video", spec.video));
    };
    let Some(mut audio) = subscribe_av(&directory, &spec.audio) else {
        return Outcome::open_failed(format!("no stream '{}' for the mixer's audio", spec.audio));
    };
    let mut muxer = match Muxer::new(MuxConfig::default()) {
        Ok(muxer) => muxer,
        Err(e) => return Outcome::open_failed(e.to_string()),
    };
    sink.report(|input| Event::Opened { input }, None);
    let clock = SystemClock;
    let started = clock.now();
    let mut mix = Mix::new();
    let mut counted = MixCounters::default();
    let mut out = BytesMut::with_capacity(MUX_BUFFER);
    let (mut video_batch, mut audio_batch) = (Vec::with_capacity(AV_BATCH), Vec::with_capacity(AV_BATCH));
    let mut audio_open = true;
    let (mut frames, mut placed) = (Vec::new(), Vec::new());
    let mut chunks = Vec::with_capacity(1);
    loop {
        tokio::select! {
            got = video.packets.recv_batch(&mut video_batch, AV_BATCH) => match got {
                Ok(_) => {
                    let now = clock.now().saturating_duration_since(started);
                    for pkt in video_batch.drain(..) {
                        if let Some(pkt) = mix.video(pkt, now) {
                            muxer.push(&pkt, &mut out);
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => sink.lagged(n),
                // The video ending ends the mix.
                Err(RecvError::Closed) => return upstream_closed(sink, &spec.video),
            },
            got = audio.packets.recv_batch(&mut audio_batch, AV_BATCH), if audio_open => match got {
                Ok(_) => {
                    let now = clock.now().saturating_duration_since(started);
                    for pkt in audio_batch.drain(..) {
                        // One frame per PES: a reader joining at a
                        // keyframe gets audio from within a frame of it.
                        split_frames(pkt, &mut frames);
                        mix.audio_frames(&mut frames, now, &mut placed);
                        for frame in placed.drain(..) {
                            muxer.push(&frame, &mut out);
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => sink.lagged(n),
                Err(RecvError::Closed) => match spec.audio_failure {
                    AudioFailure::Down => return upstream_closed(sink, &spec.audio),
                    AudioFailure::Continue => {
                        tracing::warn!(audio = %spec.audio, "the mixer's audio ended; the video goes on alone");
                        audio_open = false;
                    }
                },
            },
        }
        if mix.counters() != counted {
            sink.mix_counted(counted, mix.counters());
            counted = mix.counters();
        }
        if !out.is_empty() {
            chunks.push(out.split().freeze());
            sink.publish_batch(&mut chunks);
            if out.capacity() < MUX_BUFFER / 4 {
                out.reserve(MUX_BUFFER);
            }
        }
    }
}

/// Subscribes to stream `id`'s AV packets, starting its demux task on this
/// shard when this is the first reader.
fn subscribe_av(directory: &Arc<Directory>, id: &str) -> Option<AvSubscription> {
    let mut subscription = directory.av(id)?;
    if let Some(feed) = subscription.start.take() {
        tokio::task::spawn_local(run_demux(Arc::clone(directory), feed));
    }
    Some(subscription)
}

/// A stream's demux for its AV readers: its chunks in, AV packets out,
/// until the stream closes (the readers then see the end) or no reader is
/// left.
async fn run_demux(directory: Arc<Directory>, feed: DemuxFeed) {
    let DemuxFeed { id, mut chunks, mut publisher, leases, generation, counters } = feed;
    let mut shown = DemuxCounters::default();
    let mut demuxer = Demuxer::new();
    let mut batch = Vec::with_capacity(COPY_BATCH);
    let mut packets = Vec::with_capacity(AV_BATCH);
    loop {
        let got = tokio::time::timeout(LEASE_CHECK, chunks.recv_batch(&mut batch, COPY_BATCH)).await;
        let closed = matches!(got, Ok(Err(RecvError::Closed)));
        for chunk in batch.drain(..) {
            demuxer.push(&chunk);
        }
        if closed {
            demuxer.flush();
        }
        // A lag shows in the packets' continuity counters: the demuxer
        // marks the next packet of each track it hit as a discontinuity.
        while demuxer.drain(&mut packets, AV_BATCH) > 0 {
            publisher.publish_batch(packets.drain(..));
        }
        if *demuxer.counters() != shown {
            shown = *demuxer.counters();
            *counters.lock().unwrap_or_else(PoisonError::into_inner) = shown;
        }
        if closed || (leases.strong_count() == 0 && directory.end_demux(&id, generation, &leases)) {
            return;
        }
    }
}
