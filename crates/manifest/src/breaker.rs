//! Circuit breakers: `[function.circuit_breaker]` sheds a failing
//! function's requests, `[function.outbound_breaker]` fails fast the calls a
//! function makes to an upstream that keeps failing.

use crate::units::Dur;
use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// When a breaker opens, how long it stays open, how it closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    /// Consecutive failures that open it.
    pub failures: u32,
    /// Failures in a window, in percent of its calls, that open it...
    pub failure_percent: u32,
    /// ...once the window has at least this many calls.
    pub min_calls: u32,
    pub window: Duration,
    /// How long it fails fast before letting a probe through.
    pub open_for: Duration,
    /// Successful probes in a row that close it again.
    pub probes: u32,
    /// Outbound only: a call with no response head by then fails (and counts).
    pub timeout: Option<Duration>,
}

/// A breaker as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failures: Option<u32>,
    pub failure_ratio: Option<f64>,
    pub min_calls: Option<u32>,
    pub window: Option<Dur>,
    pub open_for: Option<Dur>,
    pub probes: Option<u32>,
    pub timeout: Option<Dur>,
}

/// Resolves a written breaker; `outbound` allows `timeout`.
pub fn resolve(raw: &Spanned<RawBreaker>, outbound: bool) -> Result<Breaker, String> {
    let r = raw.get_ref();
    let ratio = r.failure_ratio.unwrap_or(0.5);
    if !(ratio > 0.0 && ratio <= 1.0) {
        return Err(format!(
            "failure_ratio must be above 0 and at most 1 (0.5 = half the calls), not {ratio}"
        ));
    }
    if r.timeout.is_some() && !outbound {
        return Err(
            "timeout applies to outbound_breaker only (a function's own time is its `timeout`)"
                .into(),
        );
    }
    let b = Breaker {
        failures: r.failures.unwrap_or(5),
        failure_percent: (ratio * 100.0).round().max(1.0) as u32,
        min_calls: r.min_calls.unwrap_or(10),
        window: r.window.map_or(Duration::from_secs(10), |d| d.0),
        open_for: r.open_for.map_or(Duration::from_secs(5), |d| d.0),
        probes: r.probes.unwrap_or(if outbound { 1 } else { 3 }),
        timeout: r.timeout.map(|d| d.0),
    };
    for (what, v) in [
        ("failures", b.failures),
        ("min_calls", b.min_calls),
        ("probes", b.probes),
    ] {
        if v == 0 {
            return Err(format!("{what} must be at least 1"));
        }
    }
    if b.window.is_zero() || b.open_for.is_zero() || b.timeout.is_some_and(|t| t.is_zero()) {
        return Err("window, open_for and timeout must be more than zero".into());
    }
    Ok(b)
}
