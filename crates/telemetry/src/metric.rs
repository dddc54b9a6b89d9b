//! Lock-free metric primitives and labeled families of them.
//!
//! A series is updated with relaxed atomics only; looking a series up by
//! its labels takes a read lock on its family (a write lock the first time
//! a label set is seen). Hot paths resolve their series once and keep it.

use crate::names::Desc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// A monotonically increasing count.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A distribution over fixed buckets.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One count per bound plus the `+Inf` bucket (not cumulative).
    counts: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|b| *b < v);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        let mut cur = self.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self.sum_bits.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Cumulative counts per bound, then the total (the `+Inf` bucket).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0;
        self.counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect()
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// One value of a family.
pub enum Value<'a> {
    Counter(&'a Counter),
    Gauge(&'a Gauge),
    Histogram(&'a Histogram),
}

/// What a family holds; how to make and read one series.
pub trait Series: Send + Sync + 'static {
    fn value(&self) -> Value<'_>;
}

impl Series for Counter {
    fn value(&self) -> Value<'_> {
        Value::Counter(self)
    }
}

impl Series for Gauge {
    fn value(&self) -> Value<'_> {
        Value::Gauge(self)
    }
}

impl Series for Histogram {
    fn value(&self) -> Value<'_> {
        Value::Histogram(self)
    }
}

/// One series with its label values.
pub type Labeled<T> = (Box<[String]>, Arc<T>);

/// Series of one metric, one per distinct label set.
pub struct Family<T: Series> {
    pub desc: Desc,
    pub labels: &'static [&'static str],
    make: fn() -> T,
    series: RwLock<Vec<Labeled<T>>>,
}

impl<T: Series> Family<T> {
    pub fn new(desc: Desc, labels: &'static [&'static str], make: fn() -> T) -> Self {
        Family {
            desc,
            labels,
            make,
            series: RwLock::new(Vec::new()),
        }
    }

    /// The series for `values` (one per label, in order), created on first use.
    pub fn with(&self, values: &[&str]) -> Arc<T> {
        debug_assert_eq!(values.len(), self.labels.len());
        let matches = |k: &[String]| k.iter().zip(values).all(|(a, b)| a == b);
        {
            let series = self.series.read().unwrap_or_else(|e| e.into_inner());
            if let Some((_, s)) = series.iter().find(|(k, _)| matches(k)) {
                return s.clone();
            }
        }
        let mut series = self.series.write().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = series.iter().find(|(k, _)| matches(k)) {
            return s.clone();
        }
        let s = Arc::new((self.make)());
        series.push((values.iter().map(|v| v.to_string()).collect(), s.clone()));
        s
    }

    /// Drops every series whose label values `keep` rejects (a function
    /// version that no longer serves, say), so that label sets that come
    /// and go do not pile up.
    pub fn retain(&self, keep: impl Fn(&[String]) -> bool) {
        self.series
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(k, _)| keep(k));
    }

    /// Every series with its label values.
    pub fn snapshot(&self) -> Vec<Labeled<T>> {
        self.series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::{DURATION_BUCKETS, FAAS_INVOCATIONS};

    #[test]
    fn histogram_buckets_are_cumulative_and_upper_inclusive() {
        let h = Histogram::new(&DURATION_BUCKETS);
        h.observe(0.005);
        h.observe(0.007);
        h.observe(100.0);
        let c = h.cumulative();
        assert_eq!(c[0], 1, "le=0.005 includes 0.005");
        assert_eq!(c[1], 2);
        assert_eq!(*c.last().unwrap(), 3);
        assert_eq!(h.count(), 3);
        assert!((h.sum() - 100.012).abs() < 1e-9);
    }

    #[test]
    fn families_reuse_series_per_label_set() {
        let f = Family::new(FAAS_INVOCATIONS, &["function"], Counter::default);
        f.with(&["a"]).inc();
        f.with(&["a"]).inc();
        f.with(&["b"]).inc();
        let snap = f.snapshot();
        assert_eq!(snap.len(), 2);
        assert_eq!(f.with(&["a"]).get(), 2);
        f.retain(|k| k[0] != "a");
        let snap = f.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(&*snap[0].0, ["b".to_string()]);
        assert_eq!(
            f.with(&["a"]).get(),
            0,
            "a dropped series starts again from zero"
        );
    }
}
