//! The open connections of one listener: how many requests each has in
//! flight and since when it has been idle, so that the listener can close
//! the oldest idle connection when it is full (as Envoy's overload manager
//! does) and close connections that idle or dawdle past their timeouts.
//!
//! The registry's lock is taken when a connection opens or closes and by
//! the periodic sweep, never per request: a request only touches two
//! atomics of its own connection, and a write one more when the socket
//! stops taking bytes ([`Watched`]), which is how a client that stops
//! reading its response is found.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::oneshot;

/// Milliseconds since the first call, as a cheap monotonic clock.
fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// What one connection is doing, shared with its requests.
#[derive(Debug)]
pub struct ConnState {
    active: AtomicU32,
    started: AtomicU64,
    /// When the connection opened or its last request finished (ms).
    idle_since: AtomicU64,
    /// 1 + when a write last found the socket full and nothing has been
    /// written since (ms); 0 while writes go through.
    write_blocked: AtomicU64,
}

impl ConnState {
    /// Marks a request in flight until the guard drops (with the response
    /// body, once it has been sent).
    pub fn request(self: &Arc<Self>) -> RequestGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }

    /// Requests in flight now.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Acquire)
    }

    /// Whether a request ever began on this connection.
    pub fn served_any(&self) -> bool {
        self.started.load(Ordering::Relaxed) != 0
    }

    fn is_idle(&self) -> bool {
        self.active() == 0
    }

    fn blocked(&self) {
        if self.write_blocked.load(Ordering::Relaxed) == 0 {
            self.write_blocked.store(now_ms() + 1, Ordering::Relaxed);
        }
    }

    fn unblocked(&self) {
        if self.write_blocked.load(Ordering::Relaxed) != 0 {
            self.write_blocked.store(0, Ordering::Relaxed);
        }
    }
}

/// A connection's byte stream, noting when writes stall: the client has
/// stopped reading and the kernel's buffers are full.
pub struct Watched<IO> {
    io: IO,
    state: Arc<ConnState>,
}

impl<IO> Watched<IO> {
    pub fn new(io: IO, state: Arc<ConnState>) -> Self {
        Watched { io, state }
    }

    fn note<T>(&self, p: Poll<T>) -> Poll<T> {
        match p {
            Poll::Pending => self.state.blocked(),
            Poll::Ready(_) => self.state.unblocked(),
        }
        p
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write(cx, buf);
        self.note(p)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let p = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.note(p)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let p = Pin::new(&mut self.io).poll_flush(cx);
        self.note(p)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// One request in flight on a connection.
#[derive(Debug)]
pub struct RequestGuard(Arc<ConnState>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.idle_since.store(now_ms(), Ordering::Relaxed);
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why the server closed a connection on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    /// The listener was full and this was its oldest idle connection.
    Evicted,
    /// No request in flight for `idle_timeout`.
    Idle,
    /// Connected, but sent no complete request head in time.
    HeadTimeout,
    /// The TLS handshake did not finish in time.
    TlsHandshake,
    /// The client took no response bytes for `send_timeout`.
    SendTimeout,
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Evicted => "evicted",
            Closed::Idle => "idle",
            Closed::HeadTimeout => "head-timeout",
            Closed::TlsHandshake => "tls-handshake",
            Closed::SendTimeout => "send-timeout",
        }
    }
}

struct Entry {
    state: Arc<ConnState>,
    opened: u64,
    close: Option<oneshot::Sender<Closed>>,
}

/// Every open connection of a listener.
#[derive(Default)]
pub struct Registry {
    entries: Mutex<HashMap<u64, Entry>>,
    next: AtomicU64,
}

/// A registered connection; unregisters on drop.
pub struct Registration {
    registry: Arc<Registry>,
    id: u64,
    pub state: Arc<ConnState>,
    /// Resolves when the server decides to close this connection.
    pub closed: oneshot::Receiver<Closed>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection.
    pub fn open(self: &Arc<Self>) -> Registration {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let state = Arc::new(ConnState {
            active: AtomicU32::new(0),
            started: AtomicU64::new(0),
            idle_since: AtomicU64::new(now),
            write_blocked: AtomicU64::new(0),
        });
        let (tx, rx) = oneshot::channel();
        self.lock().insert(
            id,
            Entry {
                state: state.clone(),
                opened: now,
                close: Some(tx),
            },
        );
        Registration {
            registry: self.clone(),
            id,
            state,
            closed: rx,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// Tells the idle connection that has been idle longest to close.
    /// `false` when every connection has a request in flight.
    pub fn evict_oldest_idle(&self) -> bool {
        let mut entries = self.lock();
        let oldest = entries
            .values_mut()
            .filter(|e| e.close.is_some() && e.state.is_idle())
            .min_by_key(|e| e.state.idle_since.load(Ordering::Relaxed));
        match oldest.and_then(|e| e.close.take()) {
            Some(tx) => {
                let _ = tx.send(Closed::Evicted);
                true
            }
            None => false,
        }
    }

    /// Closes connections that never sent a request within `head_timeout`,
    /// those idle for `idle_timeout`, and those whose client has taken no
    /// response bytes for `send_timeout`. Returns how many were closed for
    /// each reason.
    pub fn sweep(&self, timeouts: &Timeouts) -> Swept {
        let now = now_ms();
        let ms = |d: Duration| d.as_millis() as u64;
        let (head, idle, send) = (ms(timeouts.head), ms(timeouts.idle), ms(timeouts.send));
        let mut swept = Swept::default();
        for e in self.lock().values_mut() {
            if e.close.is_none() {
                continue;
            }
            let s = &e.state;
            let blocked = s.write_blocked.load(Ordering::Relaxed);
            let reason = if blocked != 0 && now.saturating_sub(blocked - 1) >= send {
                swept.send += 1;
                Closed::SendTimeout
            } else if !s.is_idle() {
                continue;
            } else if s.started.load(Ordering::Relaxed) == 0 && now.saturating_sub(e.opened) >= head
            {
                swept.head += 1;
                Closed::HeadTimeout
            } else if now.saturating_sub(s.idle_since.load(Ordering::Relaxed)) >= idle {
                swept.idle += 1;
                Closed::Idle
            } else {
                continue;
            };
            if let Some(tx) = e.close.take() {
                let _ = tx.send(reason);
            }
        }
        swept
    }
}

/// The deadlines [`Registry::sweep`] enforces.
pub struct Timeouts {
    pub head: Duration,
    pub idle: Duration,
    pub send: Duration,
}

/// How many connections one sweep closed, by reason.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub head: usize,
    pub idle: usize,
    pub send: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_the_longest_idle_connection_and_never_a_busy_one() {
        let r = Arc::new(Registry::default());
        let mut busy = r.open();
        let _req = busy.state.request();
        let mut old = r.open();
        std::thread::sleep(Duration::from_millis(5));
        let mut new = r.open();
        // `new` served a request just now; `old` has idled since it opened.
        drop(new.state.request());
        assert!(r.evict_oldest_idle());
        assert_eq!(old.closed.try_recv(), Ok(Closed::Evicted));
        assert!(new.closed.try_recv().is_err());
        assert!(r.evict_oldest_idle());
        assert_eq!(new.closed.try_recv(), Ok(Closed::Evicted));
        assert!(!r.evict_oldest_idle(), "only a busy connection is left");
        assert!(busy.closed.try_recv().is_err());
        assert_eq!(r.len(), 3);
        drop((old, new));
        assert_eq!(r.len(), 1);
    }

    fn t(head: u64, idle: u64, send: u64) -> Timeouts {
        Timeouts {
            head: Duration::from_secs(head),
            idle: Duration::from_secs(idle),
            send: Duration::from_secs(send),
        }
    }

    #[test]
    fn sweeps_silent_idle_and_stalled_connections() {
        let r = Arc::new(Registry::default());
        let mut silent = r.open();
        let mut served = r.open();
        drop(served.state.request());
        let mut busy = r.open();
        let _req = busy.state.request();
        let mut stalled = r.open();
        let _waiting = stalled.state.request();
        assert_eq!(r.sweep(&t(60, 60, 60)), Swept::default());
        stalled.state.blocked();
        assert_eq!(r.sweep(&t(60, 60, 60)), Swept::default());
        let one = |head, idle, send| Swept { head, idle, send };
        assert_eq!(r.sweep(&t(60, 60, 0)), one(0, 0, 1));
        assert_eq!(stalled.closed.try_recv(), Ok(Closed::SendTimeout));
        assert_eq!(r.sweep(&t(0, 60, 0)), one(1, 0, 0));
        assert_eq!(silent.closed.try_recv(), Ok(Closed::HeadTimeout));
        assert_eq!(r.sweep(&t(0, 0, 0)), one(0, 1, 0));
        assert_eq!(served.closed.try_recv(), Ok(Closed::Idle));
        assert!(busy.closed.try_recv().is_err(), "busy and writing: kept");
    }

    #[test]
    fn a_write_that_goes_through_clears_the_stall() {
        let r = Arc::new(Registry::default());
        let c = r.open();
        let _req = c.state.request();
        c.state.blocked();
        c.state.unblocked();
        assert_eq!(r.sweep(&t(60, 60, 0)), Swept::default());
    }
}
