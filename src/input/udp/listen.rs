//! A UDP input listened to for a while on a shard of its own: what `probe`
//! and `bench recv` do with a `udp://` URL.

use std::time::Duration;

use bytes::Bytes;

use super::{UdpError, UdpInput, UdpStats};
use crate::shard::{Backend, ShardError, Shards};
use crate::url::UdpSpec;

/// Why listening failed.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// The shard could not run the input.
    #[error(transparent)]
    Shard(#[from] ShardError),
    /// The input failed.
    #[error(transparent)]
    Udp(#[from] UdpError),
}

/// Opens `spec` on a one-shard runtime of `backend` and, for `duration`,
/// hands each batch of chunks to `consume` on the shard's thread; the
/// chunks are dropped (their buffers returned) after each call. Returns the
/// consumer's state and the input's counters.
pub fn listen_for<S, F>(
    spec: UdpSpec,
    backend: Backend,
    duration: Duration,
    state: S,
    mut consume: F,
) -> Result<(S, UdpStats), ListenError>
where
    S: Send + 'static,
    F: FnMut(&mut S, &[Bytes]) + Send + 'static,
{
    let shards = Shards::start(1, backend, false)?;
    let done = shards.spawn(move || async move {
        let mut state = state;
        let mut input = UdpInput::open(&spec, backend)?;
        let mut chunks = Vec::new();
        let deadline = tokio::time::sleep(duration);
        tokio::pin!(deadline);
        loop {
            chunks.clear();
            tokio::select! {
                read = input.read_batch(&mut chunks) => read?,
                () = &mut deadline => break,
            }
            consume(&mut state, &chunks);
        }
        Ok::<_, UdpError>((state, input.stats()))
    })?;
    let outcome = done.blocking_recv().map_err(|_| ShardError::Stopped(0))?;
    shards.shutdown();
    Ok(outcome?)
}
