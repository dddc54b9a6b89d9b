//! A running count of one function version's requests, errors and latency,
//! lock-free, from which a rollout reads what happened between two moments:
//! take a [`Snapshot`] at each, and [`Snapshot::since`] gives the interval's
//! request count, error ratio and latency quantiles.
//!
//! Latency goes into 64 buckets whose bounds grow by a factor of 1.25 from
//! 50 µs (the last one is open-ended above about 50 s), so a quantile is
//! known to within 25%: plenty to tell a slow canary from its stable
//! version, at one atomic increment per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const BUCKETS: usize = 64;
const FIRST_NS: f64 = 50_000.0;
const GROWTH: f64 = 1.25;

/// Upper bound of bucket `i`, in nanoseconds.
fn bound(i: usize) -> f64 {
    FIRST_NS * GROWTH.powi(i as i32)
}

/// The upper bound of every latency bucket, in milliseconds.
pub fn bounds_ms() -> Vec<f64> {
    (0..BUCKETS).map(|i| bound(i) / 1e6).collect()
}

fn bucket(latency: Duration) -> usize {
    let ns = latency.as_nanos() as f64;
    if ns <= FIRST_NS {
        return 0;
    }
    (((ns / FIRST_NS).ln() / GROWTH.ln()).ceil() as usize).min(BUCKETS - 1)
}

/// Counts since the process started (or the version was loaded).
pub struct Tally {
    requests: AtomicU64,
    errors: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl Tally {
    /// Counts one request; `error` for a 5xx answer.
    pub fn record(&self, latency: Duration, error: bool) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.latency[bucket(latency)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            latency: std::array::from_fn(|i| self.latency[i].load(Ordering::Relaxed)),
        }
    }
}

/// The counts at one moment, or between two.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: u64,
    pub errors: u64,
    latency: [u64; BUCKETS],
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot {
            requests: 0,
            errors: 0,
            latency: [0; BUCKETS],
        }
    }
}

impl Snapshot {
    /// What happened between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            requests: self.requests.saturating_sub(earlier.requests),
            errors: self.errors.saturating_sub(earlier.errors),
            latency: std::array::from_fn(|i| self.latency[i].saturating_sub(earlier.latency[i])),
        }
    }

    /// Requests per latency bucket (bounds: [`bounds_ms`]).
    pub fn latency(&self) -> &[u64] {
        &self.latency
    }

    /// Errors per request; 0 without requests.
    pub fn error_ratio(&self) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.errors as f64 / self.requests as f64
        }
    }

    /// The latency under which a fraction `q` of the requests fell (the
    /// upper bound of its bucket); `None` without requests.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_nanos(bound(i) as u64));
            }
        }
        Some(Duration::from_nanos(bound(BUCKETS - 1) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_counts_only_its_own_requests() {
        let t = Tally::default();
        for _ in 0..100 {
            t.record(Duration::from_millis(1), false);
        }
        let start = t.snapshot();
        for i in 0..200 {
            t.record(
                Duration::from_millis(if i < 198 { 2 } else { 400 }),
                i % 10 == 0,
            );
        }
        let d = t.snapshot().since(&start);
        assert_eq!((d.requests, d.errors), (200, 20));
        assert!((d.error_ratio() - 0.1).abs() < 1e-9);
        let p50 = d.quantile(0.5).unwrap();
        assert!(
            p50 >= Duration::from_millis(2) && p50 < Duration::from_micros(2500),
            "{p50:?}"
        );
        // 2 of 200 are slow: p99 is the fast bucket, p99.5 the slow one.
        assert!(d.quantile(0.99).unwrap() < Duration::from_micros(2500));
        let p995 = d.quantile(0.995).unwrap();
        assert!(
            p995 >= Duration::from_millis(400) && p995 < Duration::from_millis(500),
            "{p995:?}"
        );
        assert_eq!(Snapshot::default().quantile(0.99), None);
        assert_eq!(Snapshot::default().error_ratio(), 0.0);
    }

    #[test]
    fn buckets_bound_their_latencies_within_a_quarter() {
        for us in [1u64, 50, 51, 120, 1_000, 33_333, 2_000_000, 40_000_000] {
            let d = Duration::from_micros(us);
            let b = bucket(d);
            assert!(bound(b) >= d.as_nanos() as f64, "{us} µs above its bucket");
            if b > 0 {
                assert!(
                    bound(b) <= d.as_nanos() as f64 * GROWTH + 1.0,
                    "{us} µs: loose bucket"
                );
            }
        }
        assert_eq!(bucket(Duration::from_secs(3600)), BUCKETS - 1);
    }
}
