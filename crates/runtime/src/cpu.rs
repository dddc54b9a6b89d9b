//! A guest's on-CPU time, read from the thread CPU clock of the threads its
//! code runs on, and the budget that stops it (`cpu_time`).
//!
//! Under async Wasmtime a guest runs on a fiber that any worker thread may
//! resume, and between resumptions the thread runs other requests; a thread
//! clock read at the start and end of a request would count them all. So
//! the meter runs only while the guest's WebAssembly does: it is resumed
//! when Wasmtime enters guest code (a call into the guest, a return from a
//! host function, the end of an epoch yield) and paused when guest code is
//! left (a host call, a return to the host, an epoch yield). Host calls are
//! not counted: they are bounded by the wall-clock timeout and their own
//! limits. Each transition reads the thread clock (a system call, about
//! 0.3 µs here), so only functions with a budget are metered.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The guest's on-CPU time passed its budget.
#[derive(Debug, thiserror::Error)]
#[error("the guest used its CPU-time budget of {} ms", budget.as_millis())]
pub struct CpuTimeExceeded {
    pub budget: Duration,
}

#[derive(Default)]
struct State {
    used_ns: u64,
    /// The thread clock when guest code last began running, while it runs.
    since: Option<u64>,
}

/// Meters one store's guest code; clones share the count.
#[derive(Clone, Default)]
pub struct CpuMeter(Arc<Mutex<State>>);

/// The calling thread's CPU time.
fn thread_cpu_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
}

impl CpuMeter {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Guest code begins running on this thread.
    pub fn resume(&self) {
        let mut s = self.state();
        if s.since.is_none() {
            s.since = Some(thread_cpu_ns());
        }
    }

    /// Guest code stops running on this thread.
    pub fn pause(&self) {
        let mut s = self.state();
        if let Some(since) = s.since.take() {
            s.used_ns += thread_cpu_ns().saturating_sub(since);
        }
    }

    /// On-CPU time so far, the running stretch included (read on the thread
    /// that runs it).
    pub fn used(&self) -> Duration {
        let s = self.state();
        let running = s
            .since
            .map_or(0, |since| thread_cpu_ns().saturating_sub(since));
        Duration::from_nanos(s.used_ns + running)
    }

    /// On-CPU time of the stretches that have ended: what a request reports
    /// (read from any thread; a stretch still running is not in it).
    pub fn counted(&self) -> Duration {
        Duration::from_nanos(self.state().used_ns)
    }

    /// Follows `store`'s transitions in and out of guest code.
    pub fn attach<T: 'static>(&self, store: &mut wasmtime::Store<T>) {
        let meter = self.clone();
        store.call_hook(move |_, hook| {
            if hook.entering_host() {
                meter.pause();
            } else {
                meter.resume();
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin(d: Duration) {
        let start = thread_cpu_ns();
        while thread_cpu_ns() - start < d.as_nanos() as u64 {}
    }

    #[test]
    fn counts_only_running_stretches() {
        let m = CpuMeter::default();
        m.resume();
        spin(Duration::from_millis(5));
        m.pause();
        // Not running: time passing (even busy elsewhere) is not counted.
        std::thread::sleep(Duration::from_millis(20));
        let paused = m.used();
        assert!(paused >= Duration::from_millis(5), "{paused:?}");
        assert!(paused < Duration::from_millis(15), "{paused:?}");
        m.resume();
        m.resume(); // a nested entry does not restart the stretch
        spin(Duration::from_millis(5));
        assert!(m.used() >= paused + Duration::from_millis(5));
        m.pause();
        m.pause();
        assert!(m.used() < paused + Duration::from_millis(15));
    }
}
