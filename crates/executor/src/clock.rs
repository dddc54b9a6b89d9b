//! One monotonic clock for every instance of a snapshot.
//!
//! Wasmtime's default monotonic clock counts from each context's creation,
//! so a guest snapshotted after reading it (the Go runtime does, while it
//! starts) would see time run backwards in every request. This clock counts
//! from one process-wide base, the wall-clock time when the process first
//! read it, so readings only grow: within a process and, unless the system
//! clock is set back between runs, across restarts that reuse a cached
//! snapshot.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};
use wasmtime_wasi::HostMonotonicClock;

struct Base {
    at: Instant,
    nanos: u64,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| Base {
        at: Instant::now(),
        nanos: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    })
}

/// Nanoseconds on the shared monotonic clock.
pub fn now() -> u64 {
    let b = base();
    b.nanos.saturating_add(b.at.elapsed().as_nanos() as u64)
}

/// The clock a guest context gets.
pub struct SharedMonotonic;

impl HostMonotonicClock for SharedMonotonic {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        now()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn readings_grow_and_start_far_from_zero() {
        let a = super::now();
        let b = super::now();
        assert!(b >= a);
        // Far past anything a context-relative clock read during a snapshot.
        assert!(a > 1_600_000_000 * 1_000_000_000);
    }
}
