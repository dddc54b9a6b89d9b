//! The response of a Go SDK function: held whole while it is small, so
//! that a failure keeps its one precise status; streamed once more than
//! [`STREAM_AFTER`] body bytes are written or the guest flushes, through a
//! channel of at most [`QUEUED_CHUNKS`] chunks, so that a guest writing
//! faster than its client reads waits in its `body_write`.

use crate::body::{Body, BodyError};
use crate::failure::Failure;
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::sync::{mpsc, oneshot};

/// Body bytes held before the response starts to stream.
pub const STREAM_AFTER: usize = 64 << 10;
/// The largest chunk handed to the client at once.
pub const CHUNK: usize = 64 << 10;
/// Chunks written that the client has not yet taken.
const QUEUED_CHUNKS: usize = 4;

type Sent = Result<Bytes, BodyError>;

/// The response side of one invocation.
pub struct Responder {
    /// `max_response_body`.
    limit: u64,
    head: Option<(StatusCode, HeaderMap)>,
    buf: BytesMut,
    written: u64,
    start: Option<oneshot::Sender<http::Response<Body>>>,
    tx: Option<mpsc::Sender<Sent>>,
    /// Moves into the streaming body, whose end drops it.
    gone: Option<oneshot::Sender<()>>,
    /// Set when the host itself cut the body (the limit), so that its end
    /// is not taken for a client that left.
    cut: Arc<AtomicBool>,
    /// Set once the response can take no more (the client left, or the
    /// limit was passed): writes fail.
    closed: bool,
    /// What the host found wrong with the response, if anything.
    pub problem: Option<Failure>,
}

impl Responder {
    /// A responder for a body of at most `limit` bytes, where the response
    /// arrives if it comes to stream, and what tells when a streaming
    /// response's body is dropped.
    pub fn new(limit: u64) -> (Self, oneshot::Receiver<http::Response<Body>>, Gone) {
        let (start, started) = oneshot::channel();
        let (gone, dropped) = oneshot::channel();
        let cut = Arc::new(AtomicBool::new(false));
        let r = Responder {
            limit,
            head: None,
            buf: BytesMut::new(),
            written: 0,
            start: Some(start),
            tx: None,
            gone: Some(gone),
            cut: cut.clone(),
            closed: false,
            problem: None,
        };
        (r, started, Gone { dropped, cut })
    }

    /// Takes the response head; a second one, or a malformed one, is refused.
    pub fn head(&mut self, head: Result<(StatusCode, HeaderMap), String>) -> i32 {
        if self.head.is_some() {
            return self.refuse("the function sent a second response head".into());
        }
        match head {
            Ok(head) => {
                self.head = Some(head);
                0
            }
            Err(problem) => self.refuse(problem),
        }
    }

    fn refuse(&mut self, problem: String) -> i32 {
        self.problem.get_or_insert(Failure::Malformed { problem });
        self.closed = true;
        -1
    }

    /// Appends body bytes; waits while the client is slow.
    pub async fn write(&mut self, bytes: Bytes) -> i32 {
        if self.closed {
            return -1;
        }
        if self.head.is_none() {
            return self.refuse("the function wrote body bytes before its response head".into());
        }
        self.written += bytes.len() as u64;
        if self.written > self.limit {
            self.problem
                .get_or_insert(Failure::ResponseTooLarge { limit: self.limit });
            self.closed = true;
            if let Some(tx) = self.tx.take() {
                self.cut.store(true, Ordering::Relaxed);
                let _ = tx
                    .send(Err(BodyError::HttpResponseBodySize(Some(self.limit))))
                    .await;
            }
            return -1;
        }
        if self.tx.is_none() {
            self.buf.extend_from_slice(&bytes);
            if self.buf.len() <= STREAM_AFTER {
                return 0;
            }
            return self.stream().await;
        }
        self.send(bytes).await
    }

    /// Starts streaming now, when the head is there.
    pub async fn flush(&mut self) -> i32 {
        if self.closed {
            return -1;
        }
        if self.head.is_none() || self.tx.is_some() {
            return 0;
        }
        self.stream().await
    }

    async fn stream(&mut self) -> i32 {
        let Some((status, headers)) = self.head.take() else {
            return -1;
        };
        let (tx, rx) = mpsc::channel(QUEUED_CHUNKS);
        let body = ChannelBody {
            rx,
            _gone: self.gone.take(),
        };
        let mut response = http::Response::new(body.boxed_unsync());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        self.head = Some((status, HeaderMap::new()));
        if let Some(start) = self.start.take()
            && start.send(response).is_err()
        {
            self.closed = true;
            return -1;
        }
        self.tx = Some(tx);
        let held = std::mem::take(&mut self.buf).freeze();
        if held.is_empty() {
            return 0;
        }
        self.send(held).await
    }

    async fn send(&mut self, mut bytes: Bytes) -> i32 {
        let Some(tx) = &self.tx else { return -1 };
        while !bytes.is_empty() {
            let chunk = bytes.split_to(bytes.len().min(CHUNK));
            if tx.send(Ok(chunk)).await.is_err() {
                self.closed = true;
                return -1;
            }
        }
        0
    }

    /// The response of a guest that ended before it streamed: `None` when
    /// it sent no head.
    pub fn whole(&mut self) -> Option<http::Response<Body>> {
        let (status, headers) = self.head.take()?;
        let body = std::mem::take(&mut self.buf).freeze();
        let mut response = http::Response::new(crate::body::full(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Some(response)
    }

    /// Ends a streaming body: cleanly, or cut short with `reason`.
    pub async fn end(&mut self, end: Result<(), String>) {
        if let (Some(tx), Err(reason)) = (self.tx.take(), end) {
            let _ = tx.send(Err(BodyError::InternalError(Some(reason)))).await;
        }
    }
}

/// Tells when a streaming response's body was dropped: sent, or its client
/// gone, unless the host cut it ([`Gone::by_client`]).
pub struct Gone {
    pub dropped: oneshot::Receiver<()>,
    cut: Arc<AtomicBool>,
}

impl Gone {
    /// Whether a dropped body means the client left (rather than the host
    /// cutting the body at the limit).
    pub fn by_client(&self) -> bool {
        !self.cut.load(Ordering::Relaxed)
    }
}

/// A body fed by the guest's writes.
struct ChannelBody {
    rx: mpsc::Receiver<Sent>,
    _gone: Option<oneshot::Sender<()>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        self.rx
            .poll_recv(cx)
            .map(|sent| sent.map(|r| r.map(Frame::data)))
    }
}
