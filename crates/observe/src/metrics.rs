//! The server's metrics: families registered once, per-function series
//! resolved at load, and the `/metrics` exposition.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use wedge_telemetry::anomaly::{Config, Detector};
use wedge_telemetry::encode::Encoder;
use wedge_telemetry::metric::{Counter, Family, Gauge, Histogram};
use wedge_telemetry::names::{
    self as n, DURATION_BUCKETS, FAST_BUCKETS, FUEL_BUCKETS, Kind, SIZE_BUCKETS,
};
use wedge_telemetry::process;

/// Every metric family of a server.
pub struct Metrics {
    pub request_duration: Family<Histogram>,
    pub active: Family<Gauge>,
    pub request_body: Family<Histogram>,
    pub response_body: Family<Histogram>,
    pub invocations: Family<Counter>,
    pub errors: Family<Counter>,
    pub timeouts: Family<Counter>,
    pub coldstarts: Family<Counter>,
    pub init_duration: Family<Histogram>,
    pub invoke_duration: Family<Histogram>,
    pub memory_peak: Family<Histogram>,
    pub grow_failures: Family<Counter>,
    pub queue_wait: Family<Histogram>,
    pub rejected: Family<Counter>,
    pub module_size: Family<Gauge>,
    pub aot_cache: Family<Counter>,
    pub anomaly: Family<Gauge>,
    /// Thresholds of every function's detector.
    pub anomaly_config: Config,
    /// Where anomaly changes are POSTed as JSON, if anywhere.
    pub anomaly_webhook: Option<http::Uri>,
    pub spans_dropped: Family<Counter>,
    pub connections_open: Family<Gauge>,
    pub connections_closed: Family<Counter>,
    pub instantiate_duration: Family<Histogram>,
    pub fuel_consumed: Family<Histogram>,
    pub reloads: Family<Counter>,
    pub rollout_decisions: Family<Counter>,
    pub reload_last_successful: Family<Gauge>,
    pub rate_limit: Family<Counter>,
    pub rate_limit_keys: Family<Gauge>,
    pub circuit_state: Family<Gauge>,
    pub circuit_transitions: Family<Counter>,
    pub messaging: Messaging,
}

/// The families of message triggers; `trigger` is the trigger's client id.
pub struct Messaging {
    pub consumed: Family<Counter>,
    pub process_duration: Family<Histogram>,
    pub deliveries: Family<Counter>,
    pub dead_letters: Family<Counter>,
    pub in_flight: Family<Gauge>,
    pub lag: Family<Histogram>,
    /// Asynchronous CloudEvents waiting for delivery, per function.
    pub queued: Family<Gauge>,
    pub connected: Family<Gauge>,
    pub connections: Family<Counter>,
}

impl Default for Messaging {
    fn default() -> Self {
        const T: &[&str] = &["messaging_system", "trigger", "function"];
        Messaging {
            consumed: Family::new(
                n::MESSAGING_CONSUMED,
                &["messaging_system", "trigger", "function", "redelivered"],
                Counter::default,
            ),
            process_duration: Family::new(
                n::MESSAGING_PROCESS_DURATION,
                &["messaging_system", "trigger", "function", "outcome"],
                || Histogram::new(&DURATION_BUCKETS),
            ),
            deliveries: Family::new(
                n::WEDGE_MESSAGING_DELIVERIES,
                &["messaging_system", "trigger", "function", "result"],
                Counter::default,
            ),
            dead_letters: Family::new(
                n::WEDGE_MESSAGING_DEAD_LETTERS,
                &["messaging_system", "trigger", "function", "reason"],
                Counter::default,
            ),
            in_flight: Family::new(n::WEDGE_MESSAGING_IN_FLIGHT, T, Gauge::default),
            lag: Family::new(n::WEDGE_MESSAGING_LAG, T, || {
                Histogram::new(&DURATION_BUCKETS)
            }),
            queued: Family::new(n::WEDGE_EVENTS_QUEUED, &["function"], Gauge::default),
            connected: Family::new(
                n::WEDGE_MESSAGING_CONNECTED,
                &["messaging_system", "trigger", "broker"],
                Gauge::default,
            ),
            connections: Family::new(
                n::WEDGE_MESSAGING_CONNECTIONS,
                &["messaging_system", "trigger", "connection", "result"],
                Counter::default,
            ),
        }
    }
}

const F: &[&str] = &["function"];

impl Default for Metrics {
    fn default() -> Self {
        let dur = || Histogram::new(&DURATION_BUCKETS);
        let fast = || Histogram::new(&FAST_BUCKETS);
        let size = || Histogram::new(&SIZE_BUCKETS);
        Metrics {
            request_duration: Family::new(
                n::HTTP_SERVER_REQUEST_DURATION,
                &[
                    "http_request_method",
                    "http_response_status_code",
                    "http_route",
                    "function",
                    "version",
                ],
                dur,
            ),
            active: Family::new(n::HTTP_SERVER_ACTIVE_REQUESTS, F, Gauge::default),
            request_body: Family::new(n::HTTP_SERVER_REQUEST_BODY_SIZE, F, size),
            response_body: Family::new(n::HTTP_SERVER_RESPONSE_BODY_SIZE, F, size),
            invocations: Family::new(n::FAAS_INVOCATIONS, F, Counter::default),
            errors: Family::new(n::FAAS_ERRORS, &["function", "reason"], Counter::default),
            timeouts: Family::new(n::FAAS_TIMEOUTS, F, Counter::default),
            coldstarts: Family::new(n::FAAS_COLDSTARTS, F, Counter::default),
            init_duration: Family::new(n::FAAS_INIT_DURATION, F, fast),
            invoke_duration: Family::new(n::FAAS_INVOKE_DURATION, F, fast),
            memory_peak: Family::new(n::WASM_MEMORY_PEAK, F, size),
            grow_failures: Family::new(n::WASM_MEMORY_GROW_FAILURES, F, Counter::default),
            queue_wait: Family::new(n::WEDGE_QUEUE_WAIT, F, fast),
            rejected: Family::new(n::WEDGE_REJECTED, &["function", "reason"], Counter::default),
            module_size: Family::new(n::WASM_MODULE_SIZE, F, Gauge::default),
            aot_cache: Family::new(
                n::WEDGE_AOT_CACHE,
                &["function", "result"],
                Counter::default,
            ),
            anomaly: Family::new(n::WEDGE_ANOMALY, &["function", "kind"], Gauge::default),
            anomaly_config: Config::default(),
            anomaly_webhook: None,
            spans_dropped: Family::new(n::WEDGE_SPANS_DROPPED, &[], Counter::default),
            connections_open: Family::new(n::WEDGE_CONNECTIONS_OPEN, &["listener"], Gauge::default),
            connections_closed: Family::new(
                n::WEDGE_CONNECTIONS_CLOSED,
                &["listener", "reason"],
                Counter::default,
            ),
            instantiate_duration: Family::new(n::WASM_INSTANTIATE_DURATION, F, || {
                Histogram::new(&FAST_BUCKETS)
            }),
            fuel_consumed: Family::new(n::WASM_FUEL_CONSUMED, F, || Histogram::new(&FUEL_BUCKETS)),
            reloads: Family::new(n::WEDGE_RELOADS, &["result"], Counter::default),
            rollout_decisions: Family::new(
                n::WEDGE_ROLLOUT_DECISIONS,
                &["function", "decision"],
                Counter::default,
            ),
            reload_last_successful: Family::new(
                n::WEDGE_RELOAD_LAST_SUCCESSFUL,
                &[],
                Gauge::default,
            ),
            rate_limit: Family::new(
                n::WEDGE_RATE_LIMIT,
                &["function", "policy", "decision"],
                Counter::default,
            ),
            rate_limit_keys: Family::new(n::WEDGE_RATE_LIMIT_KEYS, F, Gauge::default),
            circuit_state: Family::new(
                n::WEDGE_CIRCUIT_STATE,
                &["function", "target"],
                Gauge::default,
            ),
            circuit_transitions: Family::new(
                n::WEDGE_CIRCUIT_TRANSITIONS,
                &["function", "target", "to"],
                Counter::default,
            ),
            messaging: Messaging::default(),
        }
    }
}

impl Metrics {
    /// Drops the request-duration series of function versions that no
    /// longer serve (`serving` holds `(function, version)` pairs), so that
    /// deploying version after version does not grow `/metrics` without
    /// bound. Requests no function answered (404s) are kept.
    pub fn prune_versions(&self, serving: &[(&str, &str)]) {
        self.request_duration.retain(|k| {
            let (function, version) = (&k[3], &k[4]);
            function.is_empty() || serving.iter().any(|(f, v)| f == function && v == version)
        });
    }

    /// The `/metrics` document, with the samples `more` adds (the
    /// engine's pooling allocator, say) before the process-wide ones.
    pub fn render(&self, openmetrics: bool, more: impl FnOnce(&mut Encoder)) -> String {
        let mut e = Encoder::new(openmetrics);
        e.family(&self.request_duration);
        e.family(&self.active);
        e.family(&self.request_body);
        e.family(&self.response_body);
        e.family(&self.invocations);
        e.family(&self.errors);
        e.family(&self.timeouts);
        e.family(&self.coldstarts);
        e.family(&self.init_duration);
        e.family(&self.invoke_duration);
        e.family(&self.memory_peak);
        e.family(&self.grow_failures);
        e.family(&self.queue_wait);
        e.family(&self.rejected);
        e.family(&self.module_size);
        e.family(&self.aot_cache);
        e.family(&self.anomaly);
        e.family(&self.spans_dropped);
        e.family(&self.connections_open);
        e.family(&self.connections_closed);
        e.family(&self.instantiate_duration);
        e.family(&self.fuel_consumed);
        e.family(&self.reloads);
        e.family(&self.rollout_decisions);
        e.family(&self.reload_last_successful);
        e.family(&self.rate_limit);
        e.family(&self.rate_limit_keys);
        e.family(&self.circuit_state);
        e.family(&self.circuit_transitions);
        let m = &self.messaging;
        e.family(&m.consumed);
        e.family(&m.process_duration);
        e.family(&m.deliveries);
        e.family(&m.dead_letters);
        e.family(&m.in_flight);
        e.family(&m.lag);
        e.family(&m.queued);
        e.family(&m.connected);
        e.family(&m.connections);
        let p = |d: n::Desc| (d.name, d.help, d.kind);
        if let Some(rss) = process::resident_bytes() {
            let (name, help, kind) = p(n::PROCESS_RESIDENT_MEMORY);
            e.sample(name, help, kind, "", rss as f64);
        }
        if let Some(cpu) = process::cpu_seconds() {
            let (name, help, kind) = p(n::PROCESS_CPU_SECONDS);
            e.sample(name, help, kind, "", cpu);
        }
        if let Some(fds) = process::open_fds() {
            let (name, help, kind) = p(n::PROCESS_OPEN_FDS);
            e.sample(name, help, kind, "", fds as f64);
        }
        more(&mut e);
        let (name, help, kind) = p(n::WEDGE_LOG_LINES_DROPPED);
        e.sample(name, help, kind, "", crate::log::dropped() as f64);
        let (name, help, kind) = p(n::PROCESS_START_TIME);
        e.sample(name, help, kind, "", process::start_time());
        let (name, help, _) = p(n::WEDGE_BUILD_INFO);
        e.sample(
            name,
            help,
            Kind::Gauge,
            &format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")),
            1.0,
        );
        e.finish()
    }
}

/// POSTs one alert; failures are logged, never retried forever.
async fn post_alert(url: http::Uri, json: String, function: Arc<str>) {
    let json = bytes::Bytes::from(json);
    let outcome = crate::export::post(&url, "application/json", &[], json.clone()).await;
    // An alert is worth one retry: a webhook that restarts misses nothing.
    let outcome = match outcome {
        Err(e) if e.retryable() => {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            crate::export::post(&url, "application/json", &[], json).await
        }
        other => other,
    };
    if let Err(e) = outcome {
        crate::log::line(
            "warn",
            "-",
            &function,
            &format!("anomaly webhook {url}: {e}"),
        );
    }
}

/// One function's series, resolved once at load.
pub struct FunctionMetrics {
    pub name: Arc<str>,
    pub active: Arc<Gauge>,
    pub invocations: Arc<Counter>,
    pub timeouts: Arc<Counter>,
    pub coldstarts: Arc<Counter>,
    pub invoke_duration: Arc<Histogram>,
    pub memory_peak: Arc<Histogram>,
    pub grow_failures: Arc<Counter>,
    pub queue_wait: Arc<Histogram>,
    pub request_body: Arc<Histogram>,
    pub response_body: Arc<Histogram>,
    pub instantiate: Arc<Histogram>,
    pub fuel: Arc<Histogram>,
    /// Requests, errors and latency of this version, for rollouts.
    pub tally: wedge_telemetry::tally::Tally,
    cold: AtomicBool,
    registry: Arc<Metrics>,
    pub detector: Mutex<Detector>,
}

impl FunctionMetrics {
    pub fn new(registry: Arc<Metrics>, name: Arc<str>) -> Self {
        let f = [&*name];
        FunctionMetrics {
            active: registry.active.with(&f),
            invocations: registry.invocations.with(&f),
            timeouts: registry.timeouts.with(&f),
            coldstarts: registry.coldstarts.with(&f),
            invoke_duration: registry.invoke_duration.with(&f),
            memory_peak: registry.memory_peak.with(&f),
            grow_failures: registry.grow_failures.with(&f),
            queue_wait: registry.queue_wait.with(&f),
            request_body: registry.request_body.with(&f),
            response_body: registry.response_body.with(&f),
            instantiate: registry.instantiate_duration.with(&f),
            fuel: registry.fuel_consumed.with(&f),
            tally: Default::default(),
            cold: AtomicBool::new(true),
            detector: Mutex::new(Detector::new(registry.anomaly_config.clone())),
            registry,
            name,
        }
    }

    /// Counts the first instantiation after load as a cold start.
    pub fn instantiated(&self) {
        if self.cold.swap(false, Ordering::Relaxed) {
            self.coldstarts.inc();
        }
    }

    /// Records one guest error.
    pub fn error(&self, reason: &str) {
        self.registry.errors.with(&[&self.name, reason]).inc();
    }

    /// Records a request turned away before the guest.
    pub fn rejected(&self, reason: &str) {
        self.registry.rejected.with(&[&self.name, reason]).inc();
    }

    /// Records a memory outcome of one instance.
    pub fn memory(&self, peak: u64, grow_failures: u64) {
        self.memory_peak.observe(peak as f64);
        if grow_failures > 0 {
            self.grow_failures.add(grow_failures);
        }
    }

    pub fn registry(&self) -> &Metrics {
        &self.registry
    }

    /// Feeds one request to the anomaly detector.
    pub fn observe(&self, latency: std::time::Duration, peak_memory: Option<u64>, error: bool) {
        self.tally.record(latency, error);
        self.detector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(latency, peak_memory, error);
    }

    /// Closes the detector's window: updates `wedge_anomaly` and logs each
    /// anomaly that began or ended.
    pub fn close_window(&self) {
        let changes = self
            .detector
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .close_window();
        for c in changes {
            let gauge = self.registry.anomaly.with(&[&self.name, c.kind.as_str()]);
            gauge.set(i64::from(c.active));
            let what = if c.active { "began" } else { "ended" };
            crate::log::line(
                "warn",
                "-",
                &self.name,
                &format!("anomaly {} {what}: {}", c.kind.as_str(), c.detail),
            );
            if let Some(url) = &self.registry.anomaly_webhook {
                let alert = format!(
                    "{{\"function\":{},\"kind\":\"{}\",\"active\":{},\"detail\":{}}}",
                    crate::log::json_str(&self.name),
                    c.kind.as_str(),
                    c.active,
                    crate::log::json_str(&c.detail)
                );
                tokio::spawn(post_alert(url.clone(), alert, self.name.clone()));
            }
        }
    }
}
