//! Statistics: latency percentiles from raw samples and min/median/max over rounds.

use serde::Serialize;

/// Latency samples in microseconds, kept whole so any percentile is exact.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    micros: Vec<u32>,
    sorted: bool,
}

impl Samples {
    pub fn push(&mut self, micros: u32) {
        self.micros.push(micros);
        self.sorted = false;
    }

    pub fn extend(&mut self, other: Samples) {
        self.micros.extend(other.micros);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// The nearest-rank percentile `p` (0 < p <= 100), in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> Option<f64> {
        if self.micros.is_empty() {
            return None;
        }
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
        let n = self.micros.len();
        // The epsilon keeps 99.9% of 1000 at rank 999 despite binary floating point.
        let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
        let index = rank.clamp(1, n) - 1;
        Some(f64::from(self.micros[index]) / 1000.0)
    }

    pub fn latency(&mut self) -> Option<Latency> {
        Some(Latency {
            p50_ms: self.percentile_ms(50.0)?,
            p99_ms: self.percentile_ms(99.0)?,
            p999_ms: self.percentile_ms(99.9)?,
            samples: self.len(),
        })
    }
}

/// Percentiles of one measurement.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub samples: usize,
}

/// The median of the rounds with the extremes beside it.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: usize,
}

impl Spread {
    /// None when there are no values; NaN values are ignored.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Some(Spread {
            median,
            min: v[0],
            max: v[n - 1],
            rounds: n,
        })
    }
}

/// `a / b`, or None when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Resident memory growth per held request, in KiB.
pub fn per_request_kib(idle_kib: u64, loaded_kib: u64, requests: usize) -> Option<f64> {
    if requests == 0 {
        return None;
    }
    Some(loaded_kib.saturating_sub(idle_kib) as f64 / requests as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: impl IntoIterator<Item = u32>) -> Samples {
        let mut s = Samples::default();
        for v in values {
            s.push(v);
        }
        s
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=1000 us: p50 is the 500th value, p99 the 990th, p99.9 the 999th.
        let mut s = samples((1..=1000).rev());
        assert_eq!(s.percentile_ms(50.0), Some(0.5));
        assert_eq!(s.percentile_ms(99.0), Some(0.99));
        assert_eq!(s.percentile_ms(99.9), Some(0.999));
        assert_eq!(s.percentile_ms(100.0), Some(1.0));
    }

    #[test]
    fn percentiles_of_few_samples_take_the_next_rank_up() {
        let mut s = samples([7000, 1000, 3000]);
        assert_eq!(s.percentile_ms(50.0), Some(3.0));
        assert_eq!(s.percentile_ms(99.0), Some(7.0));
        assert_eq!(s.percentile_ms(1.0), Some(1.0));
        let l = s.latency().unwrap();
        assert_eq!(
            (l.p50_ms, l.p99_ms, l.p999_ms, l.samples),
            (3.0, 7.0, 7.0, 3)
        );
    }

    #[test]
    fn no_samples_no_percentile() {
        assert_eq!(Samples::default().percentile_ms(50.0), None);
        assert!(Samples::default().latency().is_none());
    }

    #[test]
    fn merging_keeps_every_sample() {
        let mut a = samples([5000, 1000]);
        a.percentile_ms(50.0);
        a.extend(samples([2000]));
        assert_eq!(a.len(), 3);
        assert_eq!(a.percentile_ms(50.0), Some(2.0));
    }

    #[test]
    fn spread_of_odd_and_even_rounds() {
        let s = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.rounds), (2.0, 1.0, 3.0, 3));
        let s = Spread::of(&[4.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (3.0, 1.0, 10.0));
        assert_eq!(Spread::of(&[]), None);
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).unwrap().median, 5.0);
    }

    #[test]
    fn ratios_and_memory_per_request() {
        assert_eq!(ratio(Some(30.0), Some(10.0)), Some(3.0));
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(per_request_kib(1000, 1640, 10), Some(64.0));
        assert_eq!(per_request_kib(1000, 900, 10), Some(0.0));
        assert_eq!(per_request_kib(1000, 2000, 0), None);
    }
}
