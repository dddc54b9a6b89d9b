//! Progressive rollouts: a version's share of the traffic grows step by step
//! (e.g. 5, 25, 50, 100%), and after each interval its own requests are
//! judged against the stable version's: its 5xx ratio, and its P99 against
//! the stable P99. A pass moves to the next step (the last promotes it); a
//! failure rolls back (all traffic to stable) or freezes the weights, as the
//! rollout says. Too few canary requests decide nothing. Every decision is
//! stored with its reason, logged, and counted in
//! `wedge_rollout_decisions_total`; the plan and its progress are in the
//! state store, so a restart resumes where it stood. Pause, resume, abort and
//! a manual promote always work, whatever state the rollout is in.

use crate::api::{Api, Reply, error, percent, reply};
use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use wedge_control::{Decision, Query, RolloutRecord, TrafficRecord};
use wedge_manifest::traffic::ALL_TRAFFIC;
use wedge_telemetry::tally::Snapshot;

/// A rollout as asked for (`POST /v1/functions/NAME/rollout`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Plan {
    version: String,
    #[serde(default = "default_steps")]
    steps: Vec<f64>,
    #[serde(default = "default_interval")]
    interval: String,
    #[serde(default = "default_error_ratio")]
    max_error_ratio: f64,
    #[serde(default = "default_latency_ratio")]
    max_latency_ratio: f64,
    #[serde(default = "default_min_requests")]
    min_requests: u64,
    #[serde(default = "default_on_failure")]
    on_failure: String,
    /// Base URL of a Prometheus for `queries`.
    #[serde(default)]
    prometheus: Option<String>,
    #[serde(default)]
    queries: Vec<Query>,
}

fn default_steps() -> Vec<f64> {
    vec![5.0, 25.0, 50.0, 100.0]
}
fn default_interval() -> String {
    "60s".into()
}
fn default_error_ratio() -> f64 {
    0.05
}
fn default_latency_ratio() -> f64 {
    2.0
}
fn default_min_requests() -> u64 {
    20
}
fn default_on_failure() -> String {
    "rollback".into()
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn summary(r: &RolloutRecord) -> serde_json::Value {
    json!({
        "version": r.version,
        "state": r.state,
        "step": r.step,
        "steps": r.steps.iter().map(|s| percent(*s)).collect::<Vec<_>>(),
        "weight": percent(r.steps.get(r.step).copied().unwrap_or(0)),
        "interval_ms": r.interval_ms,
        "max_error_ratio": r.max_error_ratio,
        "max_latency_ratio": r.max_latency_ratio,
        "min_requests": r.min_requests,
        "on_failure": r.on_failure,
        "prometheus": r.prometheus,
        "queries": r.queries.iter().map(|q| json!({
            "name": q.name, "query": q.query, "max": q.max, "min": q.min,
        })).collect::<Vec<_>>(),
        "history": r.history.iter().map(|d| json!({
            "at_ms": d.at, "step": d.step, "weight": percent(d.weight),
            "decision": d.decision, "reason": d.reason,
        })).collect::<Vec<_>>(),
    })
}

/// What one interval's figures say about the canary.
#[derive(Debug)]
enum Verdict {
    Pass(String),
    Fail(String),
    Wait(String),
}

/// Requests each side needs in an interval before P99s are compared.
const LATENCY_SAMPLES: u64 = 100;

fn judge(r: &RolloutRecord, canary: &Snapshot, stable: &Snapshot) -> Verdict {
    if canary.requests < r.min_requests {
        return Verdict::Wait(format!(
            "{} canary requests, fewer than the {} needed to judge",
            canary.requests, r.min_requests
        ));
    }
    let ratio = canary.error_ratio();
    if ratio > r.max_error_ratio {
        return Verdict::Fail(format!(
            "canary error ratio {:.1}% ({} of {}) over {:.1}%",
            ratio * 100.0,
            canary.errors,
            canary.requests,
            r.max_error_ratio * 100.0
        ));
    }
    let (c99, s99) = (canary.quantile(0.99), stable.quantile(0.99));
    // A P99 of fewer than 100 requests is their slowest one: for a version
    // just deployed, its first request into a cold instance slot. Below that
    // the step is judged on errors alone.
    let enough = r.min_requests.max(LATENCY_SAMPLES);
    if let (Some(c), Some(s)) = (c99, s99)
        && canary.requests >= enough
        && stable.requests >= enough
        && c.as_secs_f64() > s.as_secs_f64() * r.max_latency_ratio
    {
        return Verdict::Fail(format!(
            "canary p99 {c:?} over {}x the stable p99 {s:?}",
            r.max_latency_ratio
        ));
    }
    Verdict::Pass(format!(
        "canary error ratio {:.1}% of {} requests, p99 {} (stable {})",
        ratio * 100.0,
        canary.requests,
        c99.map_or("-".into(), |d| format!("{d:?}")),
        s99.map_or("-".into(), |d| format!("{d:?}")),
    ))
}

impl Api {
    pub(crate) async fn rollout(self: &Arc<Self>, name: &str, action: &str, body: &[u8]) -> Reply {
        match action {
            "" => self.start_rollout(name, body).await,
            "pause" => {
                self.set_rollout_state(name, &["running"], "paused", "paused by hand")
                    .await
            }
            "resume" => {
                let r = self
                    .set_rollout_state(name, &["paused", "frozen"], "running", "resumed by hand")
                    .await;
                if r.0 == StatusCode::OK {
                    self.spawn_driver(name.to_string());
                }
                r
            }
            "abort" => self.abort_rollout(name).await,
            _ => error(
                StatusCode::NOT_FOUND,
                "rollout actions: pause, resume, abort",
            ),
        }
    }

    pub(crate) fn show_rollout(&self, name: &str) -> Reply {
        match self.rollout_of(name) {
            Ok(r) => reply(StatusCode::OK, summary(&r)),
            Err(e) => e,
        }
    }

    /// The function's rollout, or the answer saying why there is none.
    fn rollout_of(&self, name: &str) -> Result<RolloutRecord, Reply> {
        match self.store.function(name).map(|s| s.rollout) {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(error(
                StatusCode::NOT_FOUND,
                format!("function `{name}` has no rollout"),
            )),
            Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        }
    }

    async fn start_rollout(self: &Arc<Self>, name: &str, body: &[u8]) -> Reply {
        let plan: Plan = match serde_json::from_slice(body) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("rollout plan: {e}")),
        };
        let interval = match wedge_manifest::units::parse_duration(&plan.interval) {
            Ok(d) if d >= Duration::from_millis(100) => d,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "interval `{}`: a duration of at least 100ms, e.g. \"30s\"",
                        plan.interval
                    ),
                );
            }
        };
        let steps: Vec<u32> = plan
            .steps
            .iter()
            .map(|s| (s * 100.0).round() as u32)
            .collect();
        let rising = steps.windows(2).all(|w| w[0] < w[1]);
        if steps.is_empty()
            || steps.len() > 100
            || !rising
            || steps[0] == 0
            || steps.last() != Some(&ALL_TRAFFIC)
        {
            return error(
                StatusCode::BAD_REQUEST,
                "steps are up to 100 rising percentages above 0 that end at 100, e.g. [5, 25, 50, 100]",
            );
        }
        if !(0.0..=1.0).contains(&plan.max_error_ratio) || plan.max_latency_ratio < 1.0 {
            return error(
                StatusCode::BAD_REQUEST,
                "max_error_ratio is a fraction from 0 to 1; max_latency_ratio is at least 1",
            );
        }
        if plan.on_failure != "rollback" && plan.on_failure != "freeze" {
            return error(
                StatusCode::BAD_REQUEST,
                "on_failure is `rollback` or `freeze`",
            );
        }
        if !plan.queries.is_empty() {
            let url = plan.prometheus.as_deref().unwrap_or("");
            let ok = url
                .parse::<http::Uri>()
                .is_ok_and(|u| u.scheme_str() == Some("http") && u.authority().is_some());
            if !ok {
                return error(
                    StatusCode::BAD_REQUEST,
                    "queries need \"prometheus\": the base URL of a Prometheus, e.g. \"http://127.0.0.1:9090\"",
                );
            }
        }
        let bad_query = |q: &Query| {
            q.name.is_empty()
                || q.query.is_empty()
                || q.query.len() > 4096
                || (q.max.is_none() && q.min.is_none())
        };
        if plan.queries.len() > 10 || plan.queries.iter().any(bad_query) {
            return error(
                StatusCode::BAD_REQUEST,
                "at most 10 queries, each with a `name`, a PromQL `query` (up to 4 KiB) and a `max` or `min`",
            );
        }
        if let Ok(Some(r)) = self.store.function(name).map(|s| s.rollout)
            && matches!(r.state.as_str(), "running" | "paused" | "frozen")
        {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "function `{name}` has a rollout of `{}` {}; abort it first",
                    r.version, r.state
                ),
            );
        }
        let record = RolloutRecord {
            version: plan.version.clone(),
            steps,
            step: 0,
            interval_ms: interval.as_millis() as u64,
            max_error_ratio: plan.max_error_ratio,
            max_latency_ratio: plan.max_latency_ratio,
            min_requests: plan.min_requests,
            on_failure: plan.on_failure,
            prometheus: plan.prometheus,
            queries: plan.queries,
            state: "running".into(),
            history: vec![Decision {
                at: now_ms(),
                step: 0,
                weight: 0,
                decision: "start".into(),
                reason: "started by hand".into(),
            }],
        };
        let version = plan.version;
        let weight = record.steps[0];
        let (status, text) = self
            .change(name, "rollout", move |_, t| {
                if t.stable == version {
                    return Err(error(
                        StatusCode::CONFLICT,
                        format!("`{version}` is already the stable version"),
                    ));
                }
                Ok(with_canary(t, &version, weight))
            })
            .await;
        if status != StatusCode::OK {
            return (status, text);
        }
        if let Err(e) = self.store.set_rollout(name, &record) {
            return error(StatusCode::INTERNAL_SERVER_ERROR, e);
        }
        self.spawn_driver(name.to_string());
        reply(StatusCode::CREATED, summary(&record))
    }

    async fn set_rollout_state(&self, name: &str, from: &[&str], to: &str, why: &str) -> Reply {
        let _one = self.lock.lock().await;
        let mut r = match self.rollout_of(name) {
            Ok(r) => r,
            Err(e) => return e,
        };
        if !from.contains(&r.state.as_str()) {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "the rollout of `{}` is {}; it cannot be {to}",
                    r.version, r.state
                ),
            );
        }
        self.decide(name, &mut r, to, to, why);
        match self.store.set_rollout(name, &r) {
            Ok(()) => reply(StatusCode::OK, summary(&r)),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }

    async fn abort_rollout(&self, name: &str) -> Reply {
        let mut r = match self.rollout_of(name) {
            Ok(r) => r,
            Err(e) => return e,
        };
        let version = r.version.clone();
        let (status, text) = self
            .change(name, "rollout aborted", move |_, t| {
                Ok(without(t, &version))
            })
            .await;
        if status != StatusCode::OK {
            return (status, text);
        }
        self.decide(
            name,
            &mut r,
            "aborted",
            "abort",
            "aborted by hand; all traffic to stable",
        );
        match self.store.set_rollout(name, &r) {
            Ok(()) => reply(StatusCode::OK, summary(&r)),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }

    /// Marks a running rollout of `version` as ended by a manual promote.
    pub(crate) fn rollout_promoted_by_hand(&self, name: &str, version: &str) {
        if let Ok(Some(mut r)) = self.store.function(name).map(|s| s.rollout)
            && matches!(r.state.as_str(), "running" | "paused" | "frozen")
        {
            let why = format!("`{version}` promoted by hand");
            let state = if r.version == version {
                "done"
            } else {
                "aborted"
            };
            self.decide(name, &mut r, state, "promote", &why);
            let _ = self.store.set_rollout(name, &r);
        }
    }

    /// Records a decision: history, log line, metric.
    fn decide(&self, name: &str, r: &mut RolloutRecord, state: &str, decision: &str, why: &str) {
        r.state = state.to_string();
        let weight = r.steps.get(r.step).copied().unwrap_or(0);
        r.history.push(Decision {
            at: now_ms(),
            step: r.step,
            weight,
            decision: decision.to_string(),
            reason: why.to_string(),
        });
        self.reloader
            .metrics
            .rollout_decisions
            .with(&[name, decision])
            .inc();
        wedge_observe::log::line(
            if decision == "rollback" || decision == "freeze" {
                "warn"
            } else {
                "info"
            },
            "-",
            name,
            &format!(
                "rollout of {} at {}%: {decision}: {why}",
                r.version,
                percent(weight)
            ),
        );
    }

    /// Resumes every running rollout (at start).
    /// Resumes running rollouts, and makes sure ended ones left the traffic
    /// as they say (a rolled-back or aborted version out of it, a done one
    /// stable), whatever a crash or a hand edit of the store left behind.
    pub fn resume_rollouts(self: &Arc<Self>) {
        let Ok(all) = self.store.all() else { return };
        for (name, s) in all {
            let (Some(r), Some(t)) = (s.rollout, s.traffic) else {
                continue;
            };
            let v = r.version.clone();
            match r.state.as_str() {
                "running" => self.spawn_driver(name),
                "rolled-back" | "aborted" if t.canaries.iter().any(|c| c.0 == v) => {
                    let api = self.clone();
                    tokio::spawn(async move {
                        api.change(&name, "rollout ended", move |_, t| Ok(without(t, &v)))
                            .await
                    });
                }
                "done" if t.stable != v => {
                    let api = self.clone();
                    tokio::spawn(async move {
                        api.change(&name, "rollout promoted", move |_, t| {
                            Ok(crate::api::promoted(t, &v))
                        })
                        .await
                    });
                }
                _ => {}
            }
        }
    }

    fn spawn_driver(self: &Arc<Self>, name: String) {
        let api = self.clone();
        tokio::spawn(async move { api.drive(&name).await });
    }

    fn tallies(&self, name: &str, canary: &str) -> Option<(Snapshot, Snapshot)> {
        let served = self.served(name)?;
        let c = served
            .versions
            .iter()
            .find(|v| *v.spec.version == *canary)?;
        let s = served.stable();
        Some((
            c.spec.metrics.tally.snapshot(),
            s.spec.metrics.tally.snapshot(),
        ))
    }

    /// Runs a rollout until it ends, is paused or is frozen.
    async fn drive(self: &Arc<Self>, name: &str) {
        let Ok(Some(r)) = self.store.function(name).map(|s| s.rollout) else {
            return;
        };
        // After a restart the traffic may predate the stored step.
        let (v, w) = (r.version.clone(), r.steps[r.step.min(r.steps.len() - 1)]);
        let _ = self
            .change(name, "rollout", move |_, t| Ok(with_canary(t, &v, w)))
            .await;
        let mut last = self.tallies(name, &r.version);
        loop {
            tokio::time::sleep(Duration::from_millis(r.interval_ms)).await;
            let Ok(Some(mut r)) = self.store.function(name).map(|s| s.rollout) else {
                return;
            };
            if r.state != "running" {
                return;
            }
            let now = self.tallies(name, &r.version);
            let (Some((c1, s1)), Some((c0, s0))) = (now.clone(), last.clone()) else {
                self.decide(
                    name,
                    &mut r,
                    "aborted",
                    "abort",
                    "the canary is no longer in traffic",
                );
                let _ = self.store.set_rollout(name, &r);
                return;
            };
            last = now;
            let verdict = match judge(&r, &c1.since(&c0), &s1.since(&s0)) {
                Verdict::Pass(why) => match check_queries(name, &r).await {
                    None => Verdict::Pass(why),
                    Some(other) => other,
                },
                other => other,
            };
            match verdict {
                Verdict::Wait(why) => {
                    self.decide(name, &mut r, "running", "wait", &why);
                    let _ = self.store.set_rollout(name, &r);
                }
                Verdict::Fail(why) if r.on_failure == "freeze" => {
                    self.decide(name, &mut r, "frozen", "freeze", &why);
                    let _ = self.store.set_rollout(name, &r);
                    return;
                }
                Verdict::Fail(why) => {
                    // Traffic first, then the record: whoever sees the
                    // rollout rolled back sees the canary out of traffic.
                    let v = r.version.clone();
                    let _ = self
                        .change(name, "rollout rolled back", move |_, t| Ok(without(t, &v)))
                        .await;
                    self.decide(name, &mut r, "rolled-back", "rollback", &why);
                    let _ = self.store.set_rollout(name, &r);
                    return;
                }
                Verdict::Pass(why) if r.step + 1 >= r.steps.len() => {
                    let v = r.version.clone();
                    let _ = self
                        .change(name, "rollout promoted", move |_, t| {
                            Ok(crate::api::promoted(t, &v))
                        })
                        .await;
                    self.decide(name, &mut r, "done", "promote", &why);
                    let _ = self.store.set_rollout(name, &r);
                    return;
                }
                Verdict::Pass(why) => {
                    r.step += 1;
                    self.decide(name, &mut r, "running", "advance", &why);
                    let _ = self.store.set_rollout(name, &r);
                    let (v, w) = (r.version.clone(), r.steps[r.step]);
                    if let (status, text) = self
                        .change(name, "rollout", move |_, t| Ok(with_canary(t, &v, w)))
                        .await
                        && status != StatusCode::OK
                    {
                        self.decide(
                            name,
                            &mut r,
                            "frozen",
                            "freeze",
                            &format!("the next step did not apply: {text}"),
                        );
                        let _ = self.store.set_rollout(name, &r);
                        return;
                    }
                    last = self.tallies(name, &r.version);
                }
            }
        }
    }
}

/// Runs a rollout's PromQL checks; `None` when they all pass.
async fn check_queries(function: &str, r: &RolloutRecord) -> Option<Verdict> {
    let base = r.prometheus.as_deref()?.trim_end_matches('/');
    for q in &r.queries {
        let promql = q
            .query
            .replace("{{function}}", function)
            .replace("{{version}}", &r.version);
        let url = format!(
            "{base}/api/v1/query?query={}",
            percent_encoding::utf8_percent_encode(&promql, percent_encoding::NON_ALPHANUMERIC)
        );
        let Ok(uri) = url.parse::<http::Uri>() else {
            return Some(Verdict::Fail(format!("query {}: bad URL {url}", q.name)));
        };
        let answer = wedge_observe::export::send(
            http::Method::GET,
            &uri,
            &[],
            bytes::Bytes::new(),
            Duration::from_secs(10),
        )
        .await;
        let value = match answer {
            Ok((200, body)) => first_value(&body),
            Ok((status, _)) => {
                return Some(Verdict::Wait(format!(
                    "query {}: Prometheus answered {status}",
                    q.name
                )));
            }
            Err(e) => return Some(Verdict::Wait(format!("query {}: Prometheus: {e}", q.name))),
        };
        let Some(v) = value else {
            return Some(Verdict::Wait(format!("query {} returned no data", q.name)));
        };
        if let Some(max) = q.max
            && v > max
        {
            return Some(Verdict::Fail(format!(
                "query {} = {v} over its max {max}",
                q.name
            )));
        }
        if let Some(min) = q.min
            && v < min
        {
            return Some(Verdict::Fail(format!(
                "query {} = {v} under its min {min}",
                q.name
            )));
        }
    }
    None
}

/// The number in a Prometheus instant-query answer: a scalar, or the first
/// sample of a vector.
fn first_value(body: &[u8]) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let result = &v["data"]["result"];
    let pair = match v["data"]["resultType"].as_str()? {
        "scalar" => result,
        "vector" => &result.as_array()?.first()?["value"],
        _ => return None,
    };
    pair.get(1)?.as_str()?.parse().ok()
}

/// `t` with `version` as its only canary, at `weight`.
fn with_canary(t: &TrafficRecord, version: &str, weight: u32) -> TrafficRecord {
    let mut next = t.clone();
    next.canaries = vec![(version.to_string(), weight.min(ALL_TRAFFIC))];
    next
}

/// `t` without `version` among its canaries.
fn without(t: &TrafficRecord, version: &str) -> TrafficRecord {
    let mut next = t.clone();
    next.canaries.retain(|c| c.0 != version);
    next
}

#[cfg(test)]
mod tests {
    use super::{Verdict, first_value, judge};
    use std::time::Duration;
    use wedge_control::RolloutRecord;
    use wedge_telemetry::tally::{Snapshot, Tally};

    fn plan() -> RolloutRecord {
        RolloutRecord {
            version: "v2".into(),
            steps: vec![2500, 10_000],
            step: 0,
            interval_ms: 500,
            max_error_ratio: 0.05,
            max_latency_ratio: 2.0,
            min_requests: 10,
            on_failure: "rollback".into(),
            prometheus: None,
            queries: vec![],
            state: "running".into(),
            history: vec![],
        }
    }

    /// `n` requests of 1 ms, then `slow` of `slow_ms`.
    fn traffic(n: u64, slow: u64, slow_ms: u64) -> Snapshot {
        let t = Tally::default();
        for _ in 0..n {
            t.record(Duration::from_millis(1), false);
        }
        for _ in 0..slow {
            t.record(Duration::from_millis(slow_ms), false);
        }
        t.snapshot()
    }

    #[test]
    fn one_cold_request_does_not_fail_a_healthy_canary() {
        // 12 canary requests, the first into a cold slot: their P99 is it.
        let verdict = judge(&plan(), &traffic(11, 1, 20), &traffic(300, 0, 0));
        assert!(matches!(verdict, Verdict::Pass(_)), "{verdict:?}");
    }

    #[test]
    fn a_slow_canary_fails_once_its_p99_means_something() {
        let verdict = judge(&plan(), &traffic(180, 20, 20), &traffic(300, 0, 0));
        let Verdict::Fail(why) = verdict else {
            panic!("{verdict:?}")
        };
        assert!(why.contains("p99"), "{why}");
        // Errors are judged at any count.
        let t = Tally::default();
        for i in 0..12 {
            t.record(Duration::from_millis(1), i < 3);
        }
        assert!(matches!(
            judge(&plan(), &t.snapshot(), &traffic(300, 0, 0)),
            Verdict::Fail(_)
        ));
    }

    #[test]
    fn prometheus_answers_give_their_first_number() {
        let vector = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{},"value":[1764496142.1,"0.25"]},{"metric":{},"value":[1,"9"]}]}}"#;
        assert_eq!(first_value(vector), Some(0.25));
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#;
        assert_eq!(first_value(scalar), Some(7.0));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(first_value(empty), None);
        assert_eq!(first_value(b"not json"), None);
    }
}
