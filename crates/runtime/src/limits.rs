//! The per-store resource limiter: enforces the memory limit and records
//! peak linear memory and failed `memory.grow`s for the statistics.

use crate::units::format_bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::ResourceLimiter;

/// Raised (as a trap) when a guest grows memory past its limit and the
/// limiter is configured to trap rather than return -1.
#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit exceeded: the guest asked for {} of linear memory, the limit is {}",
    format_bytes(*.requested),
    format_bytes(*.limit)
)]
pub struct MemoryLimitExceeded {
    pub requested: u64,
    pub limit: u64,
}

/// Raised when growth failed for a reason other than our limit (the module's
/// own declared maximum, or the host refusing the allocation) and the limiter
/// is configured to trap.
#[derive(Debug, thiserror::Error)]
#[error("memory.grow failed: {reason}")]
pub struct MemoryGrowFailed {
    pub reason: String,
}

/// Memory accounting for one store. All linear memories of the store count
/// towards one limit, as they all come out of the same host's RAM.
#[derive(Debug, Default)]
pub struct Limits {
    max_memory: Option<u64>,
    trap_on_grow_failure: bool,
    current: u64,
    peak: u64,
    grow_failures: u64,
    /// The peak, readable from outside the store while it runs.
    shared_peak: Option<Arc<AtomicU64>>,
}

impl Limits {
    /// `max_memory` in bytes; `None` leaves memory bounded only by the module.
    pub fn new(max_memory: Option<u64>, trap_on_grow_failure: bool) -> Self {
        Limits {
            max_memory,
            trap_on_grow_failure,
            ..Limits::default()
        }
    }

    /// Highest total linear memory the store ever held, in bytes.
    pub fn peak_memory(&self) -> u64 {
        self.peak
    }

    /// A handle that follows the peak as the store grows, for readers that
    /// cannot reach the store (a request handler waiting on a response).
    pub fn share_peak(&mut self) -> Arc<AtomicU64> {
        let peak = self.peak;
        self.shared_peak
            .get_or_insert_with(|| Arc::new(AtomicU64::new(peak)))
            .clone()
    }

    /// How many `memory.grow` requests were refused.
    pub fn grow_failures(&self) -> u64 {
        self.grow_failures
    }

    /// The configured limit in bytes, if any.
    pub fn max_memory(&self) -> Option<u64> {
        self.max_memory
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.current - (current as u64).min(self.current) + desired as u64;
        if let Some(limit) = self.max_memory
            && total > limit
        {
            self.grow_failures += 1;
            if self.trap_on_grow_failure {
                return Err(MemoryLimitExceeded {
                    requested: total,
                    limit,
                }
                .into());
            }
            return Ok(false);
        }
        self.current = total;
        self.peak = self.peak.max(total);
        if let Some(shared) = &self.shared_peak {
            shared.store(self.peak, Ordering::Relaxed);
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.grow_failures += 1;
        if self.trap_on_grow_failure {
            return Err(MemoryGrowFailed {
                reason: error.to_string(),
            }
            .into());
        }
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 65536;

    #[test]
    fn refuses_growth_past_the_limit_and_counts_it() {
        let mut l = Limits::new(Some(2 * PAGE as u64), false);
        assert!(l.memory_growing(0, PAGE, None).unwrap());
        assert!(l.memory_growing(PAGE, 2 * PAGE, None).unwrap());
        assert!(!l.memory_growing(2 * PAGE, 3 * PAGE, None).unwrap());
        assert_eq!(l.peak_memory(), 2 * PAGE as u64);
        assert_eq!(l.grow_failures(), 1);
    }

    #[test]
    fn a_shared_peak_follows_growth() {
        let mut l = Limits::new(None, false);
        assert!(l.memory_growing(0, PAGE, None).unwrap());
        let shared = l.share_peak();
        assert_eq!(shared.load(Ordering::Relaxed), PAGE as u64);
        assert!(l.memory_growing(PAGE, 3 * PAGE, None).unwrap());
        assert_eq!(shared.load(Ordering::Relaxed), 3 * PAGE as u64);
        assert!(Arc::ptr_eq(&shared, &l.share_peak()));
    }

    #[test]
    fn traps_when_asked_to() {
        let mut l = Limits::new(Some(PAGE as u64), true);
        assert!(l.memory_growing(0, PAGE, None).unwrap());
        let err = l.memory_growing(PAGE, 2 * PAGE, None).unwrap_err();
        let e = err.downcast_ref::<MemoryLimitExceeded>().unwrap();
        assert_eq!(e.limit, PAGE as u64);
        assert!(err.to_string().contains("memory limit exceeded"), "{err}");
    }

    #[test]
    fn peak_sums_all_memories() {
        let mut l = Limits::new(None, false);
        assert!(l.memory_growing(0, PAGE, None).unwrap());
        assert!(l.memory_growing(0, 3 * PAGE, None).unwrap());
        assert_eq!(l.peak_memory(), 4 * PAGE as u64);
        assert!(
            l.memory_grow_failed(wasmtime::format_err!("type max"))
                .is_ok()
        );
        assert_eq!(l.grow_failures(), 1);
    }
}
