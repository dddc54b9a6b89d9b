//! The open connections of one listener: how many requests each has in
//! flight and since when it has been idle, so that the listener can close
//! the oldest idle connection when it is full (as Envoy's overload manager
//! does) and close connections that idle or dawdle past their timeouts.
//!
//! The registry's lock is taken when a connection opens or closes and by
//! the once-a-second sweep, never per request: a request only touches two
//! atomics of its own connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
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

    fn is_idle(&self) -> bool {
        self.active() == 0
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
}

impl Closed {
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Evicted => "evicted",
            Closed::Idle => "idle",
            Closed::HeadTimeout => "head-timeout",
            Closed::TlsHandshake => "tls-handshake",
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

    /// Connections open now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    /// Closes connections that never sent a request within `head_timeout`
    /// and those idle for `idle_timeout`. Returns how many of each.
    pub fn sweep(&self, head_timeout: Duration, idle_timeout: Duration) -> (usize, usize) {
        let now = now_ms();
        let (head, idle) = (
            head_timeout.as_millis() as u64,
            idle_timeout.as_millis() as u64,
        );
        let (mut heads, mut idles) = (0, 0);
        for e in self.lock().values_mut() {
            if e.close.is_none() || !e.state.is_idle() {
                continue;
            }
            let reason = if e.state.started.load(Ordering::Relaxed) == 0
                && now.saturating_sub(e.opened) >= head
            {
                heads += 1;
                Closed::HeadTimeout
            } else if now.saturating_sub(e.state.idle_since.load(Ordering::Relaxed)) >= idle {
                idles += 1;
                Closed::Idle
            } else {
                continue;
            };
            if let Some(tx) = e.close.take() {
                let _ = tx.send(reason);
            }
        }
        (heads, idles)
    }
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

    #[test]
    fn sweeps_silent_and_idle_connections() {
        let r = Arc::new(Registry::default());
        let mut silent = r.open();
        let mut served = r.open();
        drop(served.state.request());
        let mut busy = r.open();
        let _req = busy.state.request();
        assert_eq!(
            r.sweep(Duration::from_secs(60), Duration::from_secs(60)),
            (0, 0)
        );
        assert_eq!(r.sweep(Duration::ZERO, Duration::from_secs(60)), (1, 0));
        assert_eq!(silent.closed.try_recv(), Ok(Closed::HeadTimeout));
        assert_eq!(r.sweep(Duration::ZERO, Duration::ZERO), (0, 1));
        assert_eq!(served.closed.try_recv(), Ok(Closed::Idle));
        assert!(busy.closed.try_recv().is_err());
    }
}
