//! An HTTP-TS response body: a hub reader behind an entry gate, whose
//! chunks go out as body frames without a copy.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame};

use std::sync::atomic::Ordering;

use crate::hub::{RecvError, Subscriber};
use crate::node::api::HttpCounters;
use crate::output::entry::{EntryGate, Piece, StartMode};

/// Hub items taken per poll.
const BATCH: usize = 64;

/// One HTTP-TS client's stream.
pub struct TsBody {
    reader: Subscriber<Bytes>,
    gate: EntryGate,
    items: Vec<Bytes>,
    pieces: Vec<Piece>,
    ready: VecDeque<Bytes>,
    lost: u64,
    /// The stream's HTTP-TS counters, when the node keeps them.
    counters: Option<HttpCounters>,
}

impl TsBody {
    /// A body reading `reader`, starting at a clean entry point; counted
    /// as a client in `counters` until dropped.
    pub fn new(reader: Subscriber<Bytes>, counters: Option<HttpCounters>) -> TsBody {
        if let Some(c) = &counters {
            c.clients.fetch_add(1, Ordering::Relaxed);
        }
        TsBody {
            counters,
            reader,
            gate: EntryGate::new(StartMode::Clean),
            items: Vec::with_capacity(BATCH),
            pieces: Vec::new(),
            ready: VecDeque::new(),
            lost: 0,
        }
    }
}

impl Body for TsBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        loop {
            if let Some(bytes) = this.ready.pop_front() {
                if let Some(c) = &this.counters {
                    c.live.bytes.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                }
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            this.items.clear();
            match this.reader.poll_recv_batch(cx, &mut this.items, BATCH) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(RecvError::Closed)) => return Poll::Ready(None),
                Poll::Ready(Err(RecvError::Lagged(n))) => {
                    // A slow client: skip to the next entry point.
                    this.lost += n;
                    if let Some(c) = &this.counters {
                        c.live.lag_drops.fetch_add(n, Ordering::Relaxed);
                    }
                    tracing::debug!(lost = this.lost, "HTTP-TS client fell behind");
                    this.gate.resync(n);
                }
                Poll::Ready(Ok(_)) => {
                    this.pieces.clear();
                    for item in &this.items {
                        this.gate.push(item, &mut this.pieces);
                    }
                    this.ready.extend(this.pieces.drain(..).filter_map(|p| match p {
                        Piece::Data(b) => Some(b),
                        Piece::Cut => None,
                    }));
                }
            }
        }
    }
}

impl Drop for TsBody {
    fn drop(&mut self) {
        if let Some(c) = &self.counters {
            c.clients.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
