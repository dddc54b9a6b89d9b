//! Bounded in-memory capture of a guest's log output (stdout and stderr of
//! components, stderr of WAGI): past the limit it drops the excess and
//! remembers that it did. Also the error a guest's response that is too
//! large traps with.

use bytes::{Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// Raised (as a trap) when a guest writes a response larger than allowed.
#[derive(Debug, thiserror::Error)]
#[error("guest output exceeded the limit of {limit} bytes")]
pub struct OutputTooLarge {
    pub limit: usize,
}

#[derive(Default)]
struct State {
    buf: BytesMut,
    truncated: bool,
}

/// A clonable handle; every clone writes into the same buffer.
#[derive(Clone)]
pub struct Capture {
    state: Arc<Mutex<State>>,
    limit: usize,
}

impl Capture {
    /// Keeps the first `limit` bytes and drops the rest.
    pub fn truncating(limit: usize) -> Self {
        Capture {
            state: Arc::default(),
            limit,
        }
    }

    fn push(&self, bytes: &[u8]) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.limit.saturating_sub(s.buf.len());
        if bytes.len() > room {
            s.buf.extend_from_slice(&bytes[..room]);
            s.truncated = true;
            return;
        }
        s.buf.extend_from_slice(bytes);
    }

    /// Everything captured so far, and whether anything was dropped.
    pub fn take(&self) -> (Bytes, bool) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let truncated = s.truncated;
        (std::mem::take(&mut s.buf).freeze(), truncated)
    }
}

impl wasmtime_wasi::cli::StdoutStream for Capture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl wasmtime_wasi::cli::IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncating_keeps_the_head() {
        let mut c = Capture::truncating(4);
        c.write(Bytes::from_static(b"abcdef")).unwrap();
        assert_eq!(c.take(), (Bytes::from_static(b"abcd"), true));
    }
}
