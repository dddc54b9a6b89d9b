//! A WAGI guest's stdout: buffered while it is small, streamed once it is
//! not.
//!
//! The output is kept whole until the CGI header block is complete and
//! more than [`STREAM_AFTER`] bytes of body follow it. A response that ends before
//! then is answered as a whole, so every failure of a small response keeps
//! its one precise status (a trap is a 500, not a cut-off 200). Past that
//! point the header block is parsed and handed to the caller ([`Head`]), and
//! the rest flows through a pipe of at most [`QUEUED`] bytes: a guest that
//! writes faster than the client reads waits in its `fd_write`, so a slow
//! reader of a gigabyte costs a few hundred KiB. Writing past the limit
//! traps the guest, streaming or not.
//!
//! A small pipe of our own rather than a channel: the guest's side must
//! wait for room in bytes (WASI's `check-write`/`ready`), and the same
//! state holds the guest's end, which the body reports as an error.

use crate::body::BodyError;
use crate::capture::OutputTooLarge;
use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame};
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::AsyncWrite;
use tokio::sync::{Notify, oneshot};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wedge_cgi::{self as cgi, CgiResponse};

/// Room for the CGI header block on top of `max_response_body`.
const HEADER_ALLOWANCE: usize = 64 << 10;
/// Body bytes buffered after the header block before the response streams.
pub const STREAM_AFTER: usize = 64 << 10;
/// Bytes the guest may have written that the client has not yet taken.
pub const QUEUED: usize = 256 << 10;
/// The most the guest is told it may write at once.
const WRITE_BUDGET: usize = 64 << 10;

/// The start of a response that streams: the parsed header block, the body
/// bytes that came with it, and the body's remainder.
pub struct Head {
    pub cgi: CgiResponse,
    pub body: Output,
}

enum Phase {
    /// Everything so far is in `buf`.
    Buffering,
    /// The head went to the caller; the body goes through `queue`.
    Streaming,
    /// The client left: writes fail.
    Gone,
}

struct State {
    phase: Phase,
    buf: BytesMut,
    /// Where the header block ends in `buf`, once it does.
    body_start: Option<usize>,
    /// The header block did not parse: the response is answered whole (as
    /// a 502 when the guest is done).
    no_stream: bool,
    head: Option<oneshot::Sender<Head>>,
    queue: VecDeque<Bytes>,
    queued: usize,
    /// Body bytes written (streaming).
    sent: u64,
    /// How the guest ended, once it has (streaming).
    end: Option<Result<(), String>>,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// The guest's stdout. Clones share one stream.
#[derive(Clone)]
pub struct Stdout {
    state: Arc<Mutex<State>>,
    /// `max_response_body`.
    limit: u64,
    /// Told when the client is gone, so the guest can be stopped.
    gone: Arc<Notify>,
}

impl Stdout {
    /// A stdout for a response of at most `limit` body bytes, and where its
    /// head arrives if it comes to stream.
    pub fn new(limit: u64) -> (Self, oneshot::Receiver<Head>) {
        let (tx, rx) = oneshot::channel();
        let state = State {
            phase: Phase::Buffering,
            buf: BytesMut::new(),
            body_start: None,
            no_stream: false,
            head: Some(tx),
            queue: VecDeque::new(),
            queued: 0,
            sent: 0,
            end: None,
            reader: None,
            writer: None,
        };
        let out = Stdout {
            state: Arc::new(Mutex::new(state)),
            limit,
            gone: Arc::new(Notify::new()),
        };
        (out, rx)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notified once the client drops a streaming response.
    pub fn gone(&self) -> Arc<Notify> {
        self.gone.clone()
    }

    /// The whole output of a guest that ended before its response streamed.
    pub fn take(&self) -> Bytes {
        std::mem::take(&mut self.lock().buf).freeze()
    }

    /// Ends a streaming body: cleanly, or with an error the client sees as
    /// a response cut short.
    pub fn end(&self, end: Result<(), String>) {
        let mut s = self.lock();
        s.end = Some(end);
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    fn push(&self, bytes: Bytes) -> Result<(), StreamError> {
        let mut s = self.lock();
        match s.phase {
            Phase::Gone => Err(StreamError::Closed),
            Phase::Streaming => {
                s.sent += bytes.len() as u64;
                if s.sent > self.limit {
                    return Err(too_large(self.limit as usize));
                }
                s.queued += bytes.len();
                s.queue.push_back(bytes);
                if let Some(w) = s.reader.take() {
                    w.wake();
                }
                Ok(())
            }
            Phase::Buffering => {
                let total = self.limit as usize + HEADER_ALLOWANCE;
                if s.buf.len() + bytes.len() > total {
                    return Err(too_large(total));
                }
                // A blank line straddling earlier writes starts at most
                // 3 bytes back; before that none was found.
                let from = s.buf.len().saturating_sub(3);
                s.buf.extend_from_slice(&bytes);
                if s.body_start.is_none() {
                    s.body_start = cgi::header_block(&s.buf[from..]).map(|(_, body)| from + body);
                }
                let body = s.body_start.map_or(0, |start| s.buf.len() - start);
                // Over the limit before it streams: a trap, and a precise
                // status. (A limit within STREAM_AFTER never streams.)
                if body as u64 > self.limit {
                    return Err(too_large(self.limit as usize));
                }
                if body > STREAM_AFTER
                    && !s.no_stream
                    && let Some((tx, cgi)) = start_streaming(&mut s)
                {
                    drop(s);
                    // Refused, the head is dropped, and its `Output` marks
                    // the client gone: the caller no longer waits.
                    let _ = tx.send(Head {
                        cgi,
                        body: Output(self.clone()),
                    });
                }
                Ok(())
            }
        }
    }

    /// Room for the guest to write, or the waker to call when there is.
    fn poll_room(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.lock();
        if matches!(s.phase, Phase::Streaming) && s.queued >= QUEUED {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        Poll::Ready(())
    }
}

/// Moves the body written so far to the pipe, once the header block
/// parses; gives the head's channel and the parsed block.
fn start_streaming(s: &mut State) -> Option<(oneshot::Sender<Head>, CgiResponse)> {
    let Ok(cgi) = cgi::parse_response(&s.buf) else {
        s.no_stream = true;
        return None;
    };
    let tx = s.head.take()?;
    let first = s.buf.split_off(cgi.body_start).freeze();
    s.buf = BytesMut::new();
    s.sent = first.len() as u64;
    s.queued = first.len();
    s.queue.push_back(first);
    s.phase = Phase::Streaming;
    Some((tx, cgi))
}

fn too_large(limit: usize) -> StreamError {
    StreamError::Trap(wasmtime::Error::new(OutputTooLarge { limit }))
}

impl wasmtime_wasi::cli::StdoutStream for Stdout {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::cli::IsTerminal for Stdout {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl OutputStream for Stdout {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(bytes)
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        let s = self.lock();
        match s.phase {
            Phase::Gone => Err(StreamError::Closed),
            Phase::Streaming if s.queued >= QUEUED => Ok(0),
            _ => Ok(WRITE_BUDGET),
        }
    }
}

#[async_trait::async_trait]
impl Pollable for Stdout {
    async fn ready(&mut self) {
        std::future::poll_fn(|cx| self.poll_room(cx)).await
    }
}

impl AsyncWrite for Stdout {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.poll_room(cx).is_pending() {
            return Poll::Pending;
        }
        let n = buf.len().min(WRITE_BUDGET);
        Poll::Ready(
            self.push(Bytes::copy_from_slice(&buf[..n]))
                .map(|()| n)
                .map_err(|e| io::Error::other(e.to_string())),
        )
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The body of a streaming WAGI response, read from the guest's stdout.
/// Dropping it (the client left) fails the guest's next write and stops it.
pub struct Output(Stdout);

impl HttpBody for Output {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut s = self.0.lock();
        if let Some(data) = s.queue.pop_front() {
            s.queued -= data.len();
            if let Some(w) = s.writer.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        match s.end.take() {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(reason)) => Poll::Ready(Some(Err(BodyError::InternalError(Some(reason))))),
            None => {
                s.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        let mut s = self.0.lock();
        if s.end.is_none() {
            s.phase = Phase::Gone;
            s.queue.clear();
            s.queued = 0;
            if let Some(w) = s.writer.take() {
                w.wake();
            }
            drop(s);
            self.0.gone.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn write(out: &mut Stdout, bytes: &[u8]) -> StreamResult<()> {
        out.write(Bytes::copy_from_slice(bytes))
    }

    #[test]
    fn a_small_response_stays_whole() {
        let (mut out, mut head) = Stdout::new(1 << 20);
        write(&mut out, b"Content-Type: text/plain\n\nhello").unwrap();
        assert!(head.try_recv().is_err(), "nothing streamed");
        assert_eq!(&out.take()[..], b"Content-Type: text/plain\n\nhello");
    }

    #[tokio::test]
    async fn a_large_response_streams_after_its_header_block() {
        let (mut out, mut head) = Stdout::new(1 << 30);
        write(&mut out, b"Status: 201\r\nX-A: b\r\n\r\n").unwrap();
        write(&mut out, &vec![b'x'; STREAM_AFTER]).unwrap();
        assert!(head.try_recv().is_err(), "one byte short");
        write(&mut out, b"y").unwrap();
        let head = head.try_recv().expect("streams now");
        assert_eq!(head.cgi.status, 201);
        assert_eq!(head.cgi.headers["x-a"], "b");
        write(&mut out, b"tail").unwrap();
        out.end(Ok(()));
        let body = head.body.collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), STREAM_AFTER + 5);
        assert!(body.ends_with(b"ytail"));
    }

    #[test]
    fn a_full_pipe_makes_the_guest_wait() {
        let (mut out, mut head) = Stdout::new(1 << 30);
        write(&mut out, b"Content-Type: a/b\n\n").unwrap();
        write(&mut out, &vec![0; STREAM_AFTER + 1]).unwrap();
        let _head = head.try_recv().unwrap();
        while out.check_write().unwrap() > 0 {
            write(&mut out, &[0; 4096]).unwrap();
        }
        let waker = futures_noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(out.poll_room(&mut cx).is_pending());
    }

    #[test]
    fn writing_past_the_limit_traps_while_streaming() {
        let (mut out, mut head) = Stdout::new(STREAM_AFTER as u64 + 11);
        write(&mut out, b"Content-Type: a/b\n\n").unwrap();
        write(&mut out, &vec![0; STREAM_AFTER + 1]).unwrap();
        let _head = head.try_recv().unwrap();
        write(&mut out, &[0; 10]).unwrap();
        assert!(matches!(write(&mut out, b"!"), Err(StreamError::Trap(_))));
    }

    #[test]
    fn a_limit_within_the_buffer_traps_before_anything_streams() {
        let (mut out, mut head) = Stdout::new(STREAM_AFTER as u64);
        write(&mut out, b"Content-Type: a/b\n\n").unwrap();
        write(&mut out, &vec![0; STREAM_AFTER]).unwrap();
        assert!(matches!(write(&mut out, b"!"), Err(StreamError::Trap(_))));
        assert!(head.try_recv().is_err(), "the status is still to be given");
    }

    #[test]
    fn a_departed_client_fails_the_next_write() {
        let (mut out, mut head) = Stdout::new(1 << 30);
        write(&mut out, b"Content-Type: a/b\n\n").unwrap();
        write(&mut out, &vec![0; STREAM_AFTER + 1]).unwrap();
        drop(head.try_recv().unwrap());
        assert!(matches!(write(&mut out, b"x"), Err(StreamError::Closed)));
    }

    #[test]
    fn a_bad_header_block_is_answered_whole() {
        let (mut out, mut head) = Stdout::new(1 << 30);
        write(&mut out, b"no colon here\n\n").unwrap();
        write(&mut out, &vec![0; STREAM_AFTER * 2]).unwrap();
        assert!(head.try_recv().is_err());
        assert!(cgi::parse_response(&out.take()).is_err());
    }

    fn futures_noop_waker() -> Waker {
        Waker::noop().clone()
    }
}
