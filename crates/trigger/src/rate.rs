//! Rate limits: token buckets (GCRA, from `governor`) per function, per
//! client key, and for the whole node. A keyed limit stores a 64-bit hash of
//! each key (SipHash with a per-process random key), so a key's length costs
//! nothing, and holds at most `max_keys` of them: past that, buckets that
//! have refilled are swept (at most once a second), and while the table is
//! still full, new keys share 64 overflow buckets instead of growing it. A
//! client rotating keys therefore costs bounded memory and can only crowd
//! the overflow buckets.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wedge_executor::failure::ceil_secs;
use wedge_manifest::rate::{RateKey, RateLimit};
use wedge_observe::metrics::Metrics;
use wedge_telemetry::metric::{Counter, Gauge};

type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;
type Keyed =
    RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock, StateInformationMiddleware>;

/// Overflow buckets new keys share while the key table is full.
const OVERFLOW_BUCKETS: u64 = 64;
/// A sweep of refilled buckets runs at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

enum Kind {
    One(Direct),
    Keyed(Keyed),
}

/// One token bucket (or one per key).
pub struct Bucket {
    pub config: RateLimit,
    /// `function`, `key` or `node`.
    policy: &'static str,
    kind: Kind,
    hasher: std::hash::RandomState,
    start: Instant,
    /// Milliseconds after `start` of the last sweep.
    last_sweep: AtomicU64,
    allowed: Arc<Counter>,
    limited: Arc<Counter>,
    keys: Option<Arc<Gauge>>,
}

/// One bucket's state after a request took a token, for the
/// `RateLimit` header: requests left now, and seconds until it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    pub remaining: u32,
    pub reset_secs: u64,
}

/// Turned away: when a token will be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub policy: &'static str,
    pub retry_after: Duration,
}

impl Limited {
    /// The bucket's state for the `RateLimit` header: empty until then.
    pub fn left(&self) -> Left {
        Left {
            remaining: 0,
            reset_secs: ceil_secs(self.retry_after),
        }
    }
}

impl Bucket {
    /// A bucket for `config`, counting into `function`'s (or, with an empty
    /// name, the node's) series.
    pub fn new(config: &RateLimit, metrics: &Metrics, function: &str) -> Bucket {
        let per_token = (config.period / config.count).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(per_token)
            .expect("a non-zero period")
            .allow_burst(burst);
        let policy = if function.is_empty() {
            "node"
        } else {
            config.key.policy()
        };
        let kind = match config.key {
            RateKey::Function => Kind::One(
                RateLimiter::direct(quota).with_middleware::<StateInformationMiddleware>(),
            ),
            _ => Kind::Keyed(
                RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            ),
        };
        let keys =
            matches!(kind, Kind::Keyed(_)).then(|| metrics.rate_limit_keys.with(&[function]));
        Bucket {
            config: config.clone(),
            policy,
            kind,
            hasher: std::hash::RandomState::new(),
            start: Instant::now(),
            last_sweep: AtomicU64::new(0),
            allowed: metrics.rate_limit.with(&[function, policy, "allowed"]),
            limited: metrics.rate_limit.with(&[function, policy, "limited"]),
            keys,
        }
    }

    /// The policy's name in metrics and headers.
    pub fn policy(&self) -> &'static str {
        self.policy
    }

    /// Takes one token, for `key` when the bucket is keyed.
    pub fn take(&self, key: &[u8]) -> Result<Left, Limited> {
        let outcome = match &self.kind {
            Kind::One(l) => l.check(),
            Kind::Keyed(l) => l.check_key(&self.slot(l, key)),
        };
        match outcome {
            Ok(snapshot) => {
                self.allowed.inc();
                let remaining = snapshot.remaining_burst_capacity();
                let used = self.config.burst.saturating_sub(remaining);
                let per_token = self.config.period / self.config.count;
                let reset = per_token * used;
                Ok(Left {
                    remaining,
                    reset_secs: ceil_secs(reset),
                })
            }
            Err(not_until) => {
                self.limited.inc();
                let now = match &self.kind {
                    Kind::One(l) => l.clock().now(),
                    Kind::Keyed(l) => l.clock().now(),
                };
                Err(Limited {
                    policy: self.policy(),
                    retry_after: not_until.wait_time_from(now),
                })
            }
        }
    }

    /// The key a request is counted under: its hash, or an overflow bucket
    /// while the table is full.
    fn slot(&self, l: &Keyed, key: &[u8]) -> u64 {
        let hash = self.hasher.hash_one(key);
        let max = self.config.max_keys as usize;
        let held = l.len();
        if let Some(g) = &self.keys {
            g.set(held as i64);
        }
        if held < max {
            return hash;
        }
        let now = self.start.elapsed().as_millis() as u64;
        let last = self.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= SWEEP_EVERY.as_millis() as u64
            && self
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            l.retain_recent();
            l.shrink_to_fit();
            if let Some(g) = &self.keys {
                g.set(l.len() as i64);
            }
        }
        if l.len() < max {
            hash
        } else {
            // A fixed set of values that keys fold into meanwhile (one may
            // equal a real key's hash: that key then shares it, harmlessly).
            u64::MAX - hash % OVERFLOW_BUCKETS
        }
    }

    /// Keys held now (keyed buckets).
    pub fn keys(&self) -> usize {
        match &self.kind {
            Kind::One(_) => 0,
            Kind::Keyed(l) => l.len(),
        }
    }
}

/// A `RateLimit-Policy` item: `"function";q=100;w=1`.
pub fn policy_item(b: &Bucket) -> String {
    format!(
        "\"{}\";q={};w={}",
        b.policy(),
        b.config.count,
        b.config.period.as_secs().max(1)
    )
}

/// A `RateLimit` item: `"function";r=19;t=1`.
pub fn state_item(b: &Bucket, left: Left) -> String {
    format!(
        "\"{}\";r={};t={}",
        b.policy(),
        left.remaining,
        left.reset_secs
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(count: u32, burst: u32, key: RateKey, max_keys: u32) -> RateLimit {
        RateLimit {
            count,
            period: Duration::from_secs(1),
            burst,
            key,
            max_keys,
        }
    }

    #[test]
    fn a_burst_then_the_rate() {
        let m = Metrics::default();
        let b = Bucket::new(&limit(10, 3, RateKey::Function, 1), &m, "f");
        let lefts: Vec<u32> = (0..3).map(|_| b.take(b"").unwrap().remaining).collect();
        assert_eq!(lefts, [2, 1, 0]);
        let denied = b.take(b"").unwrap_err();
        assert_eq!(denied.policy, "function");
        assert!(denied.retry_after > Duration::ZERO);
        assert!(denied.retry_after <= Duration::from_millis(100));
        assert_eq!(policy_item(&b), "\"function\";q=10;w=1");
    }

    #[test]
    fn keys_have_their_own_buckets_and_the_table_stays_bounded() {
        let m = Metrics::default();
        let b = Bucket::new(&limit(1, 1, RateKey::Client, 100), &m, "f");
        assert!(b.take(b"10.0.0.1").is_ok());
        assert!(b.take(b"10.0.0.1").is_err(), "the key's bucket is empty");
        assert!(b.take(b"10.0.0.2").is_ok(), "another key has its own");
        for i in 0..10_000u32 {
            let _ = b.take(&i.to_le_bytes());
        }
        assert!(
            b.keys() <= 100 + OVERFLOW_BUCKETS as usize,
            "{} keys held",
            b.keys()
        );
    }
}
