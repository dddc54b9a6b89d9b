//! Bounded in-memory capture of a guest's stdout or stderr. Past the limit
//! a capture either traps the guest (a WAGI response that is too large) or
//! drops the excess and remembers that it did (logs).

use bytes::{Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Raised (as a trap) when a guest writes more than a trapping capture allows.
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
    trap: bool,
}

impl Capture {
    /// Traps the guest when more than `limit` bytes are written.
    pub fn trapping(limit: usize) -> Self {
        Capture {
            state: Arc::default(),
            limit,
            trap: true,
        }
    }

    /// Keeps the first `limit` bytes and drops the rest.
    pub fn truncating(limit: usize) -> Self {
        Capture {
            state: Arc::default(),
            limit,
            trap: false,
        }
    }

    fn push(&self, bytes: &[u8]) -> Result<(), OutputTooLarge> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let room = self.limit.saturating_sub(s.buf.len());
        if bytes.len() > room {
            s.buf.extend_from_slice(&bytes[..room]);
            s.truncated = true;
            if self.trap {
                return Err(OutputTooLarge { limit: self.limit });
            }
            return Ok(());
        }
        s.buf.extend_from_slice(bytes);
        Ok(())
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
        self.push(&bytes)
            .map_err(|e| StreamError::Trap(wasmtime::Error::new(e)))
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
        Poll::Ready(
            self.push(buf)
                .map(|()| buf.len())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncating_keeps_the_head() {
        let mut c = Capture::truncating(4);
        c.write(Bytes::from_static(b"abcdef")).unwrap();
        assert_eq!(c.take(), (Bytes::from_static(b"abcd"), true));
    }

    #[test]
    fn trapping_traps_past_the_limit() {
        let mut c = Capture::trapping(4);
        c.write(Bytes::from_static(b"ab")).unwrap();
        let err = c.write(Bytes::from_static(b"cde")).unwrap_err();
        let StreamError::Trap(e) = err else {
            panic!("expected a trap")
        };
        assert!(e.is::<OutputTooLarge>());
    }
}
