//! Drift detection per function: P99 latency against a rolling baseline,
//! peak memory rising window after window (a leak), and error ratio.
//!
//! Requests are recorded into the current window; [`Detector::close_window`]
//! summarises it every `window` and reports which anomalies began or ended.
//! Pure logic with no clock of its own, so tests feed synthetic series.

use crate::names::DURATION_BUCKETS;
use std::collections::VecDeque;
use std::time::Duration;

/// Thresholds.
#[derive(Clone, Debug)]
pub struct Config {
    /// Length of one window.
    pub window: Duration,
    /// P99 over `latency_factor` x baseline is a strike.
    pub latency_factor: f64,
    /// Error ratio over this is a strike.
    pub error_ratio: f64,
    /// Consecutive strikes before an anomaly is declared (factor x window
    /// is the sustained time: 6 x 10 s = 60 s).
    pub sustain: u32,
    /// Windows with fewer requests are not judged.
    pub min_requests: u64,
    /// Consecutive windows of rising mean peak memory that make a leak.
    pub memory_windows: usize,
    /// ... and by how much the last must exceed the first.
    pub memory_growth: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: Duration::from_secs(10),
            latency_factor: 3.0,
            error_ratio: 0.05,
            sustain: 6,
            min_requests: 20,
            memory_windows: 6,
            memory_growth: 1.2,
        }
    }
}

/// What drifted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Latency,
    Memory,
    Errors,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Latency, Kind::Memory, Kind::Errors];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Latency => "latency",
            Kind::Memory => "memory",
            Kind::Errors => "errors",
        }
    }
}

/// An anomaly that began (`active`) or ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    pub kind: Kind,
    pub active: bool,
    pub detail: String,
}

#[derive(Default)]
struct Window {
    buckets: [u64; DURATION_BUCKETS.len() + 1],
    count: u64,
    errors: u64,
    mem_sum: f64,
    mem_count: u64,
}

struct Summary {
    p99: Option<f64>,
    count: u64,
    errors: u64,
    mem_mean: Option<f64>,
}

/// One function's detector.
pub struct Detector {
    cfg: Config,
    current: Window,
    memory: VecDeque<f64>,
    baseline_p99: Option<f64>,
    latency_strikes: u32,
    error_strikes: u32,
    active: [bool; 3],
}

fn p99(buckets: &[u64], count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = (count as f64 * 0.99).ceil() as u64;
    let mut seen = 0;
    for (i, n) in buckets.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY));
        }
    }
    None
}

impl Detector {
    pub fn new(cfg: Config) -> Self {
        Detector {
            cfg,
            current: Window::default(),
            memory: VecDeque::new(),
            baseline_p99: None,
            latency_strikes: 0,
            error_strikes: 0,
            active: [false; 3],
        }
    }

    /// Records one request.
    pub fn record(&mut self, latency: Duration, peak_memory: Option<u64>, error: bool) {
        let w = &mut self.current;
        let i = DURATION_BUCKETS.partition_point(|b| *b < latency.as_secs_f64());
        w.buckets[i] += 1;
        w.count += 1;
        w.errors += u64::from(error);
        if let Some(m) = peak_memory {
            w.mem_sum += m as f64;
            w.mem_count += 1;
        }
    }

    pub fn is_active(&self, kind: Kind) -> bool {
        self.active[kind as usize]
    }

    fn set(&mut self, kind: Kind, active: bool, detail: String, out: &mut Vec<Change>) {
        if self.active[kind as usize] != active {
            self.active[kind as usize] = active;
            out.push(Change {
                kind,
                active,
                detail,
            });
        }
    }

    /// Ends the current window; returns the anomalies that began or ended.
    pub fn close_window(&mut self) -> Vec<Change> {
        let w = std::mem::take(&mut self.current);
        let s = Summary {
            p99: p99(&w.buckets, w.count),
            count: w.count,
            errors: w.errors,
            mem_mean: (w.mem_count > 0).then(|| w.mem_sum / w.mem_count as f64),
        };
        let mut out = Vec::new();
        let judged = s.count >= self.cfg.min_requests;

        if judged && let Some(p) = s.p99 {
            match self.baseline_p99 {
                Some(base) if p > base * self.cfg.latency_factor => self.latency_strikes += 1,
                Some(base) => {
                    self.latency_strikes = 0;
                    self.baseline_p99 = Some(base * 0.8 + p * 0.2);
                }
                None => self.baseline_p99 = Some(p),
            }
            let base = self.baseline_p99.unwrap_or(p);
            let active = self.latency_strikes >= self.cfg.sustain;
            let detail = format!("p99 {p:.3}s against a baseline of {base:.3}s");
            if active || self.latency_strikes == 0 {
                self.set(Kind::Latency, active, detail, &mut out);
            }
        }

        if judged {
            let ratio = s.errors as f64 / s.count as f64;
            if ratio > self.cfg.error_ratio {
                self.error_strikes += 1;
            } else {
                self.error_strikes = 0;
            }
            let active = self.error_strikes >= self.cfg.sustain;
            if active || self.error_strikes == 0 {
                let detail = format!("{:.1}% of requests failed", ratio * 100.0);
                self.set(Kind::Errors, active, detail, &mut out);
            }
        }

        if let Some(m) = s.mem_mean {
            self.memory.push_back(m);
            while self.memory.len() > self.cfg.memory_windows {
                self.memory.pop_front();
            }
            let full = self.memory.len() == self.cfg.memory_windows;
            let rising = self
                .memory
                .iter()
                .zip(self.memory.iter().skip(1))
                .all(|(a, b)| b > a);
            let first = self.memory.front().copied().unwrap_or(m);
            let grew = m >= first * self.cfg.memory_growth;
            let active = full && rising && grew;
            let detail = format!(
                "mean peak memory rose from {first:.0} to {m:.0} bytes over {} windows",
                self.memory.len()
            );
            self.set(Kind::Memory, active, detail, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config {
            sustain: 3,
            min_requests: 10,
            memory_windows: 4,
            ..Config::default()
        }
    }

    fn window(
        d: &mut Detector,
        n: u64,
        latency_ms: u64,
        errors: u64,
        mem: Option<u64>,
    ) -> Vec<Change> {
        for i in 0..n {
            d.record(Duration::from_millis(latency_ms), mem, i < errors);
        }
        d.close_window()
    }

    #[test]
    fn sustained_latency_drift_is_reported_then_cleared() {
        let mut d = Detector::new(cfg());
        for _ in 0..5 {
            assert!(window(&mut d, 50, 8, 0, None).is_empty());
        }
        // 3.5x slower: strikes accumulate, the anomaly starts on the third.
        assert!(window(&mut d, 50, 30, 0, None).is_empty());
        assert!(window(&mut d, 50, 30, 0, None).is_empty());
        let c = window(&mut d, 50, 30, 0, None);
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].kind, c[0].active), (Kind::Latency, true));
        assert!(
            c[0].detail.contains("baseline of 0.010s"),
            "{}",
            c[0].detail
        );
        assert!(d.is_active(Kind::Latency));
        // Back to normal: cleared at once.
        let c = window(&mut d, 50, 8, 0, None);
        assert_eq!((c[0].kind, c[0].active), (Kind::Latency, false));
    }

    #[test]
    fn a_short_spike_or_a_quiet_window_is_not_an_anomaly() {
        let mut d = Detector::new(cfg());
        for _ in 0..3 {
            window(&mut d, 50, 8, 0, None);
        }
        assert!(window(&mut d, 50, 100, 0, None).is_empty());
        assert!(window(&mut d, 50, 8, 0, None).is_empty());
        assert!(
            window(&mut d, 3, 1000, 3, None).is_empty(),
            "too few requests to judge"
        );
    }

    #[test]
    fn error_ratio_above_five_percent() {
        let mut d = Detector::new(cfg());
        window(&mut d, 100, 8, 1, None);
        window(&mut d, 100, 8, 10, None);
        window(&mut d, 100, 8, 10, None);
        let c = window(&mut d, 100, 8, 10, None);
        assert_eq!(
            c,
            vec![Change {
                kind: Kind::Errors,
                active: true,
                detail: "10.0% of requests failed".into()
            }]
        );
    }

    #[test]
    fn memory_rising_window_after_window_is_a_leak() {
        let mut d = Detector::new(cfg());
        let mut changes = Vec::new();
        for mib in [1u64, 2, 3, 4] {
            changes = window(&mut d, 10, 8, 0, Some(mib << 20));
        }
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].kind, changes[0].active), (Kind::Memory, true));
        // Flat memory clears it.
        let c = window(&mut d, 10, 8, 0, Some(4 << 20));
        assert_eq!((c[0].kind, c[0].active), (Kind::Memory, false));

        let mut flat = Detector::new(cfg());
        for _ in 0..8 {
            assert!(window(&mut flat, 10, 8, 0, Some(1 << 20)).is_empty());
        }
    }
}
