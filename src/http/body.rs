//! Reading a request body with a hard cap: never more than `cap` bytes are
//! held, whatever the framing (Content-Length or chunked) claims.

use std::future::poll_fn;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use hyper::body::Body;

/// Why a body could not be read.
#[derive(Debug)]
pub enum ReadError<E> {
    /// More than the cap arrived.
    TooLarge,
    /// The connection failed mid-body.
    Body(E),
}

/// Reads `body` whole, failing as soon as more than `cap` bytes arrive.
pub async fn read_capped<B>(body: B, cap: usize) -> Result<Bytes, ReadError<B::Error>>
where
    B: Body<Data = Bytes>,
{
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut len = 0usize;
    while let Some(frame) = poll_fn(|cx| Pin::as_mut(&mut body).poll_frame(cx)).await {
        let Ok(data) = frame.map_err(ReadError::Body)?.into_data() else {
            continue; // Trailers carry nothing we use.
        };
        len = len.saturating_add(data.len());
        if len > cap {
            return Err(ReadError::TooLarge);
        }
        // A single-frame body (the usual case) is kept without a copy.
        match (&mut first, &mut joined) {
            (None, None) => first = Some(data),
            (Some(_), None) => {
                let mut buf = BytesMut::with_capacity(len);
                if let Some(f) = first.take() {
                    buf.extend_from_slice(&f);
                }
                buf.extend_from_slice(&data);
                joined = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&data),
        }
    }
    Ok(joined.map(BytesMut::freeze).or(first).unwrap_or_default())
}
