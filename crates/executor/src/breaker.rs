//! A circuit breaker's state machine, shared by the inbound breaker (the
//! pipeline sheds a failing function's requests) and the outbound ones (a
//! function's calls to one upstream). Closed, it counts outcomes in a
//! window and opens after `failures` in a row or `failure_percent` of at
//! least `min_calls`; open, it refuses at once for `open_for`; then it lets
//! one probe through at a time (half-open) and closes after `probes`
//! successes in a row, or opens again on a failure.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wedge_manifest::breaker::Breaker as Config;
use wedge_observe::log;
use wedge_observe::metrics::Metrics;
use wedge_telemetry::metric::{Counter, Gauge};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Closed,
    Open,
    HalfOpen,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Closed => "closed",
            Phase::Open => "open",
            Phase::HalfOpen => "half-open",
        }
    }
}

struct State {
    phase: Phase,
    /// When an open breaker lets a probe through.
    until: Instant,
    probing: bool,
    successes: u32,
    consecutive: u32,
    window_start: Instant,
    calls: u32,
    failed: u32,
}

/// One breaker.
pub struct Breaker {
    pub config: Config,
    state: Mutex<State>,
    function: Arc<str>,
    target: String,
    gauge: Arc<Gauge>,
    /// Transitions to closed, open and half-open.
    transitions: [Arc<Counter>; 3],
}

/// Leave to make one call; its outcome must be told with [`Ticket::done`].
/// Dropped untold (the caller gave up, the instance was stopped), it counts
/// as a failure.
pub struct Ticket {
    breaker: Arc<Breaker>,
    probe: bool,
    told: bool,
    /// Dropped untold, count nothing (see [`Ticket::neutral_if_dropped`]).
    neutral: bool,
}

impl Breaker {
    /// A closed breaker for calls of `function` to `target` (`inbound`, or
    /// an upstream's `host:port`).
    pub fn new(config: &Config, metrics: &Metrics, function: &Arc<str>, target: &str) -> Breaker {
        let now = Instant::now();
        let gauge = metrics.circuit_state.with(&[function, target]);
        gauge.set(0);
        Breaker {
            config: config.clone(),
            state: Mutex::new(State {
                phase: Phase::Closed,
                until: now,
                probing: false,
                successes: 0,
                consecutive: 0,
                window_start: now,
                calls: 0,
                failed: 0,
            }),
            function: function.clone(),
            target: target.to_string(),
            gauge,
            transitions: [Phase::Closed, Phase::Open, Phase::HalfOpen].map(|p| {
                metrics
                    .circuit_transitions
                    .with(&[function, target, p.as_str()])
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn phase(&self) -> Phase {
        self.lock().phase
    }

    /// Leave for one call, or how long until the breaker may let one through.
    pub fn admit(self: &Arc<Self>) -> Result<Ticket, Duration> {
        let mut s = self.lock();
        let now = Instant::now();
        let probe = match s.phase {
            Phase::Closed => false,
            Phase::Open if now < s.until => return Err(s.until - now),
            Phase::Open => {
                self.moved(&mut s, Phase::HalfOpen, "open_for passed: probing");
                s.probing = true;
                true
            }
            // One probe at a time; the others are refused while it runs.
            Phase::HalfOpen if s.probing => return Err(Duration::from_secs(1)),
            Phase::HalfOpen => {
                s.probing = true;
                true
            }
        };
        Ok(Ticket {
            breaker: self.clone(),
            probe,
            told: false,
            neutral: false,
        })
    }

    fn record(&self, probe: bool, ok: bool) {
        let mut s = self.lock();
        let now = Instant::now();
        if probe {
            s.probing = false;
            if s.phase != Phase::HalfOpen {
                return;
            }
            if !ok {
                s.until = now + self.config.open_for;
                self.moved(&mut s, Phase::Open, "a probe failed");
            } else {
                s.successes += 1;
                if s.successes >= self.config.probes {
                    self.moved(&mut s, Phase::Closed, "probes succeeded");
                }
            }
            return;
        }
        if s.phase != Phase::Closed {
            return; // a call admitted before the breaker opened
        }
        if now.duration_since(s.window_start) > self.config.window {
            s.window_start = now;
            s.calls = 0;
            s.failed = 0;
        }
        s.calls += 1;
        if ok {
            s.consecutive = 0;
            return;
        }
        s.failed += 1;
        s.consecutive += 1;
        let c = &self.config;
        let ratio = s.calls >= c.min_calls && s.failed * 100 >= c.failure_percent * s.calls;
        if s.consecutive >= c.failures || ratio {
            let why = format!(
                "{} failures in a row, {} of {} calls in the window",
                s.consecutive, s.failed, s.calls
            );
            s.until = now + c.open_for;
            self.moved(&mut s, Phase::Open, &why);
        }
    }

    fn moved(&self, s: &mut State, to: Phase, why: &str) {
        s.phase = to;
        s.successes = 0;
        s.consecutive = 0;
        s.calls = 0;
        s.failed = 0;
        s.window_start = Instant::now();
        let i = match to {
            Phase::Closed => 0,
            Phase::Open => 1,
            Phase::HalfOpen => 2,
        };
        self.gauge.set(i as i64);
        self.transitions[i].inc();
        let level = if to == Phase::Closed { "info" } else { "warn" };
        log::line(
            level,
            "-",
            &self.function,
            &format!("circuit {} {}: {why}", self.target, to.as_str()),
        );
    }
}

impl Ticket {
    /// Dropped untold, the call counts for nothing: for an inbound request,
    /// whose client may hang up before the function is done.
    pub fn neutral_if_dropped(mut self) -> Ticket {
        self.neutral = true;
        self
    }

    /// The call was not made after all (it was turned away elsewhere): no
    /// outcome to count; a probe leaves the breaker half-open for the next.
    pub fn forget(mut self) {
        self.told = true;
        if self.probe {
            self.breaker.lock().probing = false;
        }
    }

    /// Tells the call's outcome.
    pub fn done(mut self, ok: bool) {
        self.told = true;
        self.breaker.record(self.probe, ok);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.told {
            if !self.neutral {
                self.breaker.record(self.probe, false);
            } else if self.probe {
                self.breaker.lock().probing = false;
            }
        }
    }
}

/// A function's outbound breakers, one per upstream (`host:port`), created
/// on first call. At most [`MAX_UPSTREAMS`]: calls to further upstreams go
/// unguarded, so a guest cannot grow the table (or the metric's labels).
pub struct Upstreams {
    pub config: Config,
    function: Arc<str>,
    metrics: Arc<Metrics>,
    map: Mutex<std::collections::HashMap<String, Arc<Breaker>>>,
}

/// Upstreams with a breaker of their own, per function version at most.
pub const MAX_UPSTREAMS: usize = 64;

impl Upstreams {
    pub fn new(config: &Config, metrics: &Arc<Metrics>, function: &Arc<str>) -> Upstreams {
        Upstreams {
            config: config.clone(),
            function: function.clone(),
            metrics: metrics.clone(),
            map: Mutex::default(),
        }
    }

    /// The breaker of `upstream`, if it has (or may have) one.
    pub fn of(&self, upstream: &str) -> Option<Arc<Breaker>> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(upstream) {
            return Some(b.clone());
        }
        if map.len() >= MAX_UPSTREAMS {
            return None;
        }
        let b = Arc::new(Breaker::new(
            &self.config,
            &self.metrics,
            &self.function,
            upstream,
        ));
        map.insert(upstream.to_string(), b.clone());
        Some(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config {
            failures: 3,
            failure_percent: 50,
            min_calls: 10,
            window: Duration::from_secs(60),
            open_for: Duration::from_millis(30),
            probes: 2,
            timeout: None,
        }
    }

    fn breaker() -> Arc<Breaker> {
        let m = Metrics::default();
        Arc::new(Breaker::new(&config(), &m, &"f".into(), "inbound"))
    }

    #[test]
    fn opens_fails_fast_probes_and_closes() {
        let b = breaker();
        for _ in 0..2 {
            b.admit().unwrap().done(false);
        }
        b.admit().unwrap().done(true); // a success resets the run
        for _ in 0..3 {
            b.admit().unwrap().done(false);
        }
        assert_eq!(b.phase(), Phase::Open);
        let wait = b.admit().err().expect("open refuses");
        assert!(wait <= Duration::from_millis(30));
        std::thread::sleep(wait);
        let probe = b.admit().expect("a probe after open_for");
        assert_eq!(b.phase(), Phase::HalfOpen);
        assert!(b.admit().is_err(), "one probe at a time");
        probe.done(true);
        b.admit().unwrap().done(true);
        assert_eq!(b.phase(), Phase::Closed, "two good probes close it");
    }

    #[test]
    fn a_failed_or_abandoned_probe_opens_it_again() {
        let b = breaker();
        for _ in 0..3 {
            b.admit().unwrap().done(false);
        }
        std::thread::sleep(Duration::from_millis(31));
        drop(b.admit().unwrap()); // the caller gave up: a failure
        assert_eq!(b.phase(), Phase::Open);
    }

    #[test]
    fn a_failure_ratio_opens_it_too() {
        let b = breaker();
        for i in 0..10 {
            b.admit().unwrap().done(i % 2 == 0);
        }
        assert_eq!(b.phase(), Phase::Open, "5 of 10 failed");
    }
}
