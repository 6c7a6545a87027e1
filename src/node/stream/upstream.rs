//! Inputs that read other streams of the node: `copy://` (their chunks,
//! passthrough) and `mixer://` (video of one, audio of another, re-muxed).
//!
//! A missing upstream fails the open, so the supervisor backs off and
//! retries (it may be created later) and the input shows as degraded; an
//! upstream that is deleted or replaced closes its hub, which is the end of
//! this input's data.

use crate::hub::RecvError;
use crate::input::playout::drive::ChunkSink;
use crate::url::MixerSpec;

use super::input::{InputSink, Outcome};
use crate::node::supervisor::Event;

/// Chunks taken from the upstream hub per batch.
const COPY_BATCH: usize = 64;

/// Runs a `copy://` input: the upstream's chunks as they are.
pub(super) async fn copy(sink: &mut InputSink, stream: &str) -> Outcome {
    let reader = sink.core.borrow().directory.chunks(stream);
    let Some(mut reader) = reader else {
        return Outcome::OpenFailed(format!("no stream '{stream}' to copy"));
    };
    sink.report(|input| Event::Opened { input }, None);
    let mut batch = Vec::with_capacity(COPY_BATCH);
    loop {
        match reader.recv_batch(&mut batch, COPY_BATCH).await {
            Ok(_) => sink.publish_batch(&mut batch),
            Err(RecvError::Lagged(n)) => sink.lagged(n),
            Err(RecvError::Closed) => return Outcome::Ended,
        }
    }
}

/// Runs a `mixer://` input.
pub(super) async fn mix(_sink: &mut InputSink, _mix: MixerSpec) -> Outcome {
    Outcome::OpenFailed("mixer:// is not built yet".into())
}
