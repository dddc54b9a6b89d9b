//! The epoch clock of a serving engine. Guests yield to other requests (and
//! are stopped at their deadlines) only when the engine's epoch advances, so
//! it must tick while any guest may run; a thread that ticks every 1 ms for
//! the life of the process, though, costs an idle node CPU for nothing. The
//! [`Ticker`] ticks only while some store holds an [`Active`] and parks
//! otherwise; the first guest after idle wakes it at once (`unpark`), so it
//! waits no longer for its first tick than it would have anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;
use wasmtime::Engine;

/// How often the epoch advances while guests run: the granularity at which
/// a busy guest yields to other requests and is checked against its budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

struct Inner {
    active: AtomicUsize,
    stop: AtomicBool,
    ticks: AtomicU64,
    thread: Thread,
}

/// Owns the ticking thread; stops it when dropped.
pub struct Ticker {
    inner: Arc<Inner>,
}

/// A handle that marks stores active; cheap to clone.
#[derive(Clone)]
pub struct Clock {
    inner: Option<Arc<Inner>>,
}

/// While alive, the epoch ticks. Held by each store that may run a guest.
pub struct Active {
    inner: Option<Arc<Inner>>,
}

impl Ticker {
    /// Starts ticking `engine`'s epoch (parked until something is active).
    pub fn start(engine: Engine) -> std::io::Result<Ticker> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Inner>>();
        let handle = std::thread::Builder::new()
            .name("wedge-epoch".into())
            .spawn(move || {
                let Ok(inner) = rx.recv() else { return };
                while !inner.stop.load(Ordering::Acquire) {
                    if inner.active.load(Ordering::Acquire) == 0 {
                        // An `unpark` between the check and here makes this
                        // return at once: no wake-up is lost.
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    inner.ticks.fetch_add(1, Ordering::Relaxed);
                }
            })?;
        let inner = Arc::new(Inner {
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
            thread: handle.thread().clone(),
        });
        let _ = tx.send(inner.clone());
        Ok(Ticker { inner })
    }

    pub fn clock(&self) -> Clock {
        Clock {
            inner: Some(self.inner.clone()),
        }
    }

    /// Ticks so far (for tests and diagnostics).
    pub fn ticks(&self) -> u64 {
        self.inner.ticks.load(Ordering::Relaxed)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Release);
        self.inner.thread.unpark();
    }
}

impl Clock {
    /// A clock that ticks nothing: for stores whose epoch nobody advances
    /// (a probe, a test without a ticker).
    pub fn none() -> Clock {
        Clock { inner: None }
    }

    /// Marks one more store active, waking the ticker if it was idle.
    pub fn active(&self) -> Active {
        if let Some(inner) = &self.inner
            && inner.active.fetch_add(1, Ordering::AcqRel) == 0
        {
            inner.thread.unpark();
        }
        Active {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(inner) = &self.inner {
            inner.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let start = Instant::now();
        while !done() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn ticks_only_while_something_is_active() {
        let engine = Engine::default();
        let ticker = Ticker::start(engine).unwrap();
        let clock = ticker.clock();
        let active = clock.active();
        wait_for("ticking once active", || ticker.ticks() >= 3);
        drop(active);
        // The thread may be mid-tick when the last store goes: let it park.
        let mut last = ticker.ticks();
        wait_for("parking once idle", || {
            std::thread::sleep(EPOCH_TICK * 20);
            let now = ticker.ticks();
            let still = now == last;
            last = now;
            still
        });
        let parked = ticker.ticks();
        std::thread::sleep(EPOCH_TICK * 30);
        assert_eq!(ticker.ticks(), parked, "an idle ticker does not tick");
        // Two stores, then one: still ticking until both are gone.
        let a = clock.active();
        let b = clock.active();
        wait_for("waking on the first store after idle", || {
            ticker.ticks() >= parked + 3
        });
        drop(a);
        let before = ticker.ticks();
        wait_for("ticking while one store remains", || {
            ticker.ticks() >= before + 3
        });
        drop(b);
    }

    #[test]
    fn a_clock_without_a_ticker_marks_nothing() {
        let _a = Clock::none().active();
    }
}
