//! Request bodies: read whole when small, streamed to the guest when large.
//!
//! Up to [`STREAM_AFTER`] bytes are read before the function's slot is
//! taken, under the `body_timeout` deadline, so a slow uploader costs a
//! connection and never a guest's slot. A body that ends by then reaches the
//! function complete. A longer one, to a function that reads a stream
//! (`wasi:http`), goes on as an [`Upload`]: what was read, then the rest as
//! the guest asks for it — the client is read only as fast as the guest
//! reads, so a gigabyte costs a few frames of memory. The limits still hold
//! while it streams: `max_request_body` and the `body_timeout` deadline end
//! the stream with an error the guest sees, and [`Watch`] tells the handler
//! which, so that the client gets 413 or 408 rather than the guest's answer.

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;
use wedge_executor::body::{BodyError, RequestBody};
use wedge_executor::failure::Failure;
use wedge_telemetry::metric::Histogram;

/// How much of a body is read before the function is called. A body that
/// ends within it arrives complete; a longer one streams.
pub const STREAM_AFTER: usize = 256 << 10;

/// How a streaming body went, as far as the client's side of it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Still arriving (or never read to its end by the guest).
    Open,
    /// Read to its end.
    Done,
    /// Passed `max_request_body`.
    TooLarge,
    /// Not all there by the `body_timeout` deadline.
    TimedOut,
    /// The client broke off.
    Broken,
}

/// What the handler keeps of a streaming body once the guest owns it.
#[derive(Clone, Default)]
pub struct Watch(Arc<AtomicU8>);

impl Watch {
    pub fn progress(&self) -> Progress {
        match self.0.load(Ordering::Acquire) {
            1 => Progress::Done,
            2 => Progress::TooLarge,
            3 => Progress::TimedOut,
            4 => Progress::Broken,
            _ => Progress::Open,
        }
    }

    fn set(&self, p: Progress) {
        let v = match p {
            Progress::Open => 0,
            Progress::Done => 1,
            Progress::TooLarge => 2,
            Progress::TimedOut => 3,
            Progress::Broken => 4,
        };
        self.0.store(v, Ordering::Release);
    }

    /// The failure that a body which went wrong makes of the call, whatever
    /// the guest made of it: the client's fault comes first.
    pub fn failure(&self, limit: u64, body_timeout: Duration) -> Option<Failure> {
        match self.progress() {
            Progress::Open | Progress::Done => None,
            Progress::TooLarge => Some(Failure::BodyTooLarge { limit }),
            Progress::TimedOut => Some(Failure::BodyTimeout {
                after: body_timeout,
            }),
            Progress::Broken => Some(Failure::BadRequest {
                problem: "the client broke off the request body".into(),
            }),
        }
    }
}

/// The bounds a body is read under.
pub struct Bounds {
    /// `max_request_body`.
    pub limit: u64,
    /// `body_timeout`: the whole body must be in by then.
    pub timeout: Duration,
    /// Whether the function reads a stream; if not, the body is read whole.
    pub streamable: bool,
}

/// Reads the body: whole if it ends within [`STREAM_AFTER`] bytes (or the
/// function cannot take a stream), else its start, leaving the rest to
/// stream as an [`Upload`] that records its size in `sizes` once it ends.
pub async fn read(
    mut incoming: Incoming,
    bounds: Bounds,
    sizes: Arc<Histogram>,
) -> Result<(RequestBody, Option<Watch>), Failure> {
    let mut deadline = Box::pin(tokio::time::sleep(bounds.timeout));
    let mut first: Option<Bytes> = None;
    let mut more = BytesMut::new();
    let mut received: u64 = 0;
    loop {
        let frame = tokio::select! {
            frame = std::future::poll_fn(|cx| Pin::new(&mut incoming).poll_frame(cx)) => frame,
            () = &mut deadline => {
                return Err(Failure::BodyTimeout { after: bounds.timeout });
            }
        };
        let data = match frame {
            None => break,
            Some(Err(e)) => {
                return Err(Failure::BadRequest {
                    problem: format!("the request body could not be read: {e}"),
                });
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
        };
        received += data.len() as u64;
        if received > bounds.limit {
            return Err(Failure::BodyTooLarge {
                limit: bounds.limit,
            });
        }
        // The common case, one frame, is kept without a copy.
        match &first {
            None if more.is_empty() => first = Some(data),
            _ => {
                if let Some(f) = first.take() {
                    more.extend_from_slice(&f);
                }
                more.extend_from_slice(&data);
            }
        }
        if bounds.streamable && received >= STREAM_AFTER as u64 && !incoming.is_end_stream() {
            let head = first.unwrap_or_else(|| more.freeze());
            let watch = Watch::default();
            let upload = Upload {
                head: Some(head),
                incoming,
                limit: bounds.limit,
                received,
                deadline,
                watch: watch.clone(),
                sizes,
            };
            return Ok((
                RequestBody::Streaming(http_body_util::BodyExt::boxed_unsync(upload)),
                Some(watch),
            ));
        }
    }
    let body = first.unwrap_or_else(|| more.freeze());
    Ok((RequestBody::Full(body), None))
}

/// The rest of a large request body, read as the guest reads it.
pub struct Upload {
    head: Option<Bytes>,
    incoming: Incoming,
    limit: u64,
    received: u64,
    deadline: Pin<Box<Sleep>>,
    watch: Watch,
    sizes: Arc<Histogram>,
}

impl HttpBody for Upload {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Some(head) = this.head.take() {
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if this.watch.progress() != Progress::Open {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if this.received > this.limit {
                        this.watch.set(Progress::TooLarge);
                        return Poll::Ready(Some(Err(BodyError::HttpRequestBodySize(Some(
                            this.limit,
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => {
                this.watch.set(Progress::Broken);
                Poll::Ready(Some(Err(BodyError::ConnectionTerminated)))
            }
            Poll::Ready(None) => {
                this.watch.set(Progress::Done);
                this.sizes.observe(this.received as f64);
                Poll::Ready(None)
            }
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.watch.set(Progress::TimedOut);
                    Poll::Ready(Some(Err(BodyError::ConnectionReadTimeout)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none()
            && (self.watch.progress() != Progress::Open || self.incoming.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let rest = self.incoming.size_hint();
        let head = self.head.as_ref().map_or(0, |h| h.len() as u64);
        let mut hint = SizeHint::new();
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + head);
        }
        hint.set_lower(rest.lower() + head);
        hint
    }
}
