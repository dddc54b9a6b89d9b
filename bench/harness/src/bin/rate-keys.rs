//! What a keyed rate limit costs in memory when clients rotate keys: fills
//! one bucket table with N distinct keys (`max_keys` = 100,000 by default)
//! and prints the process's resident memory before and after, and the time
//! per check.
//!
//! Usage: rate-keys [KEYS] [MAX_KEYS]

use std::time::{Duration, Instant};
use wedge_manifest::rate::{RateKey, RateLimit};
use wedge_observe::metrics::Metrics;
use wedge_trigger::rate::Bucket;

fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args.next().map_or(1_000_000, |a| a.parse().expect("KEYS"));
    let max_keys: u32 = args
        .next()
        .map_or(100_000, |a| a.parse().expect("MAX_KEYS"));
    let metrics = Metrics::default();
    let limit = RateLimit {
        count: 10,
        period: Duration::from_secs(1),
        burst: 20,
        key: RateKey::Header("x-api-key".into()),
        max_keys,
    };
    let bucket = Bucket::new(&limit, &metrics, "f");
    let before = rss();
    let start = Instant::now();
    let mut admitted = 0u64;
    for i in 0..keys {
        // Keys as an attacker would send them: long, all different.
        let key = format!(
            "api-key-{i:016x}-{:032x}",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        admitted += u64::from(bucket.take(key.as_bytes()).is_ok());
    }
    let took = start.elapsed();
    let after = rss();
    println!(
        "{keys} distinct keys, max_keys {max_keys}: {} held, {admitted} admitted, RSS {:.1} -> {:.1} MiB \
         (+{:.1} MiB, {:.0} bytes per held key), {:.0} ns per check",
        bucket.keys(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        (after - before) as f64 / 1048576.0,
        (after - before) as f64 / bucket.keys().max(1) as f64,
        took.as_nanos() as f64 / keys as f64,
    );
}
