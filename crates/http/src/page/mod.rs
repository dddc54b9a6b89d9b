//! The status page of the admin listener: `GET /` serves one HTML page
//! (no data in it; it asks for the admin token and keeps it in the page),
//! and `GET /status` (behind the token) the JSON it draws from — every
//! function with its routes, versions, weights, limits, in-flight and
//! queued requests, anomaly flags, each version's running tally, and the
//! instances' peak memory. The
//! page turns two tallies a second apart into requests/s, error ratio and
//! latency quantiles, so the server keeps no history for it and does
//! nothing while nobody looks.

use serde_json::{Value, json};
use wedge_telemetry::anomaly::Kind;
use wedge_trigger::table::Table;

/// The page: HTML, CSS and JavaScript in one file, no external requests.
pub const PAGE: &str = include_str!("page.html");

/// The document `GET /status` answers.
pub fn json(table: &Table, control: bool) -> String {
    let functions: Vec<Value> = table
        .functions
        .iter()
        .map(|served| {
            let weights: Vec<u32> = served.traffic.weights().collect();
            let versions: Vec<Value> = served
                .versions
                .iter()
                .zip(&weights)
                .map(|(v, weight)| {
                    let spec = &v.spec;
                    let m = &spec.metrics;
                    let tally = m.tally.snapshot();
                    let limits = &v.config.limits;
                    let anomalies: Vec<&str> = {
                        let d = m.detector.lock().unwrap_or_else(|p| p.into_inner());
                        Kind::ALL
                            .iter()
                            .filter(|k| d.is_active(**k))
                            .map(|k| k.as_str())
                            .collect()
                    };
                    json!({
                        "version": &*spec.version,
                        "abi": v.abi,
                        "weight": f64::from(*weight) / 100.0,
                        "limits": {
                            "timeout_ms": limits.timeout.as_millis() as u64,
                            "max_memory": limits.max_memory,
                            "max_concurrency": limits.max_concurrency,
                            "queue": limits.queue,
                        },
                        "in_flight": m.active.get(),
                        "queued": v.gate.waiting(),
                        "requests": tally.requests,
                        "errors": tally.errors,
                        "latency": tally.latency(),
                        "anomalies": anomalies,
                    })
                })
                .collect();
            // Peak memory per instance is counted per function, not version.
            let memory = &served.stable().spec.metrics.memory_peak;
            json!({
                "name": served.name,
                "memory_peak": {"sum": memory.sum(), "count": memory.count()},
                "routes": served
                    .stable()
                    .config
                    .routes
                    .iter()
                    .map(|r| r.template())
                    .collect::<Vec<_>>(),
                "stable": &**served.names.last().expect("a function has a version"),
                "version_header": served.traffic.header,
                "versions": versions,
            })
        })
        .collect();
    let doc = json!({
        "now_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "control": control,
        "latency_bounds_ms": wedge_telemetry::tally::bounds_ms(),
        "functions": functions,
    });
    format!("{doc}\n")
}
