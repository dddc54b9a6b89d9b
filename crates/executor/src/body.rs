//! The one response body type, and a body wrapper enforcing
//! `max_response_body` on streamed guest responses.

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use std::pin::Pin;
use std::task::{Context, Poll};

/// Errors a response body can end with.
pub type BodyError = wasmtime_wasi_http::Error;

/// Every response wedge sends has this body type.
pub type Body = UnsyncBoxBody<Bytes, BodyError>;

/// A complete body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body as a function receives it: complete, or still arriving
/// from the client (a large upload to a `wasi:http` function), in which case
/// the trigger bounds it in size and time as it streams.
pub enum RequestBody {
    Full(Bytes),
    Streaming(Body),
}

impl RequestBody {
    /// The length, when the body is complete.
    pub fn known_len(&self) -> Option<usize> {
        match self {
            RequestBody::Full(b) => Some(b.len()),
            RequestBody::Streaming(_) => None,
        }
    }

    /// The body as a stream (a complete one streams in one frame).
    pub fn into_body(self) -> Body {
        match self {
            RequestBody::Full(b) => full(b),
            RequestBody::Streaming(body) => body,
        }
    }

    /// The whole body, waiting for the rest of a streaming one.
    pub async fn into_bytes(self) -> Result<Bytes, BodyError> {
        match self {
            RequestBody::Full(b) => Ok(b),
            RequestBody::Streaming(body) => Ok(body.collect().await?.to_bytes()),
        }
    }
}

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> Self {
        RequestBody::Full(b)
    }
}

/// Ends the stream with an error once more than `limit` bytes went through;
/// the client sees a truncated response, never more than the limit.
pub struct Limited<B> {
    inner: B,
    limit: u64,
    sent: u64,
    on_exceeded: Option<Box<dyn FnOnce() + Send>>,
    /// A concurrency slot held until the body is sent or dropped.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl<B> Limited<B> {
    pub fn new(inner: B, limit: u64, on_exceeded: Box<dyn FnOnce() + Send>) -> Self {
        Limited {
            inner,
            limit,
            sent: 0,
            on_exceeded: Some(on_exceeded),
            _slot: None,
        }
    }

    /// Holds `slot` until the body is done with.
    pub fn holding(mut self, slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        self._slot = Some(slot);
        self
    }
}

impl<B> HttpBody for Limited<B>
where
    B: HttpBody<Data = Bytes, Error = BodyError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.sent += data.len() as u64;
                    if this.sent > this.limit {
                        if let Some(f) = this.on_exceeded.take() {
                            f();
                        }
                        return Poll::Ready(Some(Err(BodyError::HttpResponseBodySize(Some(
                            this.limit,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
