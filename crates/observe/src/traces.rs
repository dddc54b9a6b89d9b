//! Trace export over OTLP/HTTP (protobuf), configured by the standard
//! `OTEL_*` environment variables. Spans go through a bounded queue to one
//! exporter task that posts them in batches; when the queue is full spans
//! are dropped and counted, never waited for. A batch the collector could
//! not take (no answer, 429, 502, 503, 504) is retried with exponential
//! backoff a few times, then dropped; `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`
//! compresses batches; `OTEL_RESOURCE_ATTRIBUTES` describes the resource.
//!
//! The protobuf encoding stays hand-written (`wedge_telemetry::trace`): spans
//! are encoded where they end, straight into one buffer, which measured
//! fewer instructions per traced request than building prost messages
//! (bench/results/traces-ab-2026-11-23.json); the tests decode every export
//! with opentelemetry-proto's generated types.

use crate::log;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use wedge_telemetry::metric::Counter;
use wedge_telemetry::trace::{self, Context, Encoded};

/// Named once: a `&str` header name is parsed and hashed on every insert.
pub const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
pub const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// Requests' span groups waiting for export at most; beyond, they are dropped.
const QUEUE: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;
/// Tries per batch, and the wait before the first retry (doubling).
const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Where and how to export.
#[derive(Clone, Debug)]
pub struct Config {
    pub endpoint: http::Uri,
    pub headers: Vec<(String, String)>,
    /// Resource attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
    /// Compress batches with gzip.
    pub gzip: bool,
    pub ratio: f64,
    pub parent_based: bool,
}

impl Config {
    /// The resource's `service.name`.
    pub fn service_name(&self) -> &str {
        &self.resource[0].1
    }

    /// Reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// with `/v1/traces` appended), `OTEL_EXPORTER_OTLP_HEADERS`,
    /// `OTEL_SERVICE_NAME` and `OTEL_TRACES_SAMPLER[_ARG]`. `Ok(None)`: off.
    /// The manifest's `[telemetry]` fills in what the environment leaves out.
    pub fn resolve(manifest: &wedge_manifest::Telemetry) -> Result<Option<Config>, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_TRACES_EXPORTER").is_some_and(|v| v == "none") {
            return Ok(None);
        }
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(full), _) => full,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => match &manifest.otlp_endpoint {
                Some(e) => e.clone(),
                None => return Ok(None),
            },
        };
        let endpoint: http::Uri = endpoint
            .parse()
            .map_err(|e| format!("OTLP endpoint `{endpoint}`: {e}"))?;
        if endpoint.scheme().is_none() || endpoint.authority().is_none() {
            return Err(format!(
                "OTLP endpoint `{endpoint}`: give an absolute http(s) URL"
            ));
        }
        let headers = var("OTEL_EXPORTER_OTLP_HEADERS")
            .map(|h| {
                h.split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect()
            })
            .unwrap_or_else(|| manifest.otlp_headers.clone());
        let sampler = var("OTEL_TRACES_SAMPLER")
            .or_else(|| manifest.sampler.clone())
            .unwrap_or_else(|| "parentbased_always_on".into());
        let arg = var("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|a| a.parse::<f64>().ok())
            .or(manifest.sampler_ratio);
        let (ratio, parent_based) = match sampler.as_str() {
            "always_on" => (1.0, false),
            "always_off" => (0.0, false),
            "traceidratio" => (arg.unwrap_or(1.0), false),
            "parentbased_always_on" => (1.0, true),
            "parentbased_always_off" => (0.0, true),
            "parentbased_traceidratio" => (arg.unwrap_or(1.0), true),
            other => return Err(format!("OTEL_TRACES_SAMPLER `{other}` is not supported")),
        };
        let gzip = match var("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION")
            .or_else(|| var("OTEL_EXPORTER_OTLP_COMPRESSION"))
            .as_deref()
        {
            None | Some("none") => false,
            Some("gzip") => true,
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_COMPRESSION `{other}` is not supported (gzip or none)"
                ));
            }
        };
        let given = parse_resource(var("OTEL_RESOURCE_ATTRIBUTES").as_deref().unwrap_or(""));
        let service_name = var("OTEL_SERVICE_NAME")
            .or_else(|| manifest.service_name.clone())
            .or_else(|| {
                given
                    .iter()
                    .find(|(k, _)| k == "service.name")
                    .map(|(_, v)| v.clone())
            })
            .unwrap_or_else(|| "wedge".into());
        let mut resource = vec![("service.name".to_string(), service_name)];
        resource.extend(given.into_iter().filter(|(k, _)| k != "service.name"));
        Ok(Some(Config {
            endpoint,
            headers,
            resource,
            gzip,
            ratio,
            parent_based,
        }))
    }
}

/// Hands spans to the exporter.
pub struct Tracer {
    config: Config,
    tx: mpsc::Sender<Encoded>,
    dropped: Arc<Counter>,
}

impl Tracer {
    /// Starts the exporter task on the current runtime.
    pub fn start(config: Config, dropped: Arc<Counter>) -> Arc<Tracer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export(config.clone(), rx));
        Arc::new(Tracer {
            config,
            tx,
            dropped,
        })
    }

    /// The context of a new server span, continuing `parent` if given.
    pub fn server_context(&self, parent: Option<&Context>) -> Context {
        let trace_id = parent.map_or_else(trace::new_trace_id, |p| p.trace_id);
        let followed = if self.config.parent_based {
            parent
        } else {
            None
        };
        Context {
            trace_id,
            span_id: trace::new_span_id(),
            sampled: trace::sample(followed, &trace_id, self.config.ratio),
            tracestate: parent.and_then(|p| p.tracestate.clone()),
        }
    }

    /// Queues a request's encoded spans as one item, or counts them all
    /// as dropped when the queue is full.
    pub fn emit(&self, spans: Encoded) {
        if let Err(e) = self.tx.try_send(spans) {
            let lost = match e {
                mpsc::error::TrySendError::Full(s) | mpsc::error::TrySendError::Closed(s) => {
                    s.count
                }
            };
            self.dropped.add(lost as u64);
        }
    }
}

/// How often the exporter collects queued spans. In between it sleeps, so
/// requests never wake it: a wake-up per request (another thread scheduled,
/// 16,000 times a second) cost more than building and encoding the spans.
const COLLECT_EVERY: Duration = Duration::from_millis(50);

async fn export(config: Config, mut rx: mpsc::Receiver<Encoded>) {
    use tokio::sync::mpsc::error::TryRecvError;
    let mut batch: Vec<Encoded> = Vec::new();
    let mut spans = 0;
    let mut tick = tokio::time::interval(COLLECT_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let closed = loop {
            match rx.try_recv() {
                Ok(request) => {
                    spans += request.count;
                    batch.push(request);
                    if spans >= BATCH {
                        send(&config, &mut batch).await;
                        spans = 0;
                    }
                }
                Err(TryRecvError::Empty) => break false,
                Err(TryRecvError::Disconnected) => break true,
            }
        };
        if !batch.is_empty() {
            send(&config, &mut batch).await;
            spans = 0;
        }
        if closed {
            return;
        }
    }
}

/// Parses `OTEL_RESOURCE_ATTRIBUTES`: `key=value` pairs separated by `,`,
/// values percent-encoded (W3C Baggage octets). Malformed pairs are skipped;
/// at most 64 pairs of at most 256 bytes each are kept.
pub fn parse_resource(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim(), wedge_cgi::percent_decode(v.trim())))
        .filter(|(k, v)| !k.is_empty() && k.len() <= 256 && v.len() <= 256)
        .map(|(k, v)| (k.to_string(), v))
        .take(64)
        .collect()
}

/// Posts `batch` (and empties it), retrying while the failure is one that
/// may pass; the last failure is logged and the spans lost.
async fn send(config: &Config, batch: &mut Vec<Encoded>) {
    let mut body = bytes::Bytes::from(trace::encode_export(&config.resource, batch));
    batch.clear();
    let mut headers = config.headers.clone();
    if config.gzip {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if gz.write_all(&body).is_ok()
            && let Ok(compressed) = gz.finish()
        {
            body = compressed.into();
            headers.push(("content-encoding".into(), "gzip".into()));
        }
    }
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let result = crate::export::post(
            &config.endpoint,
            "application/x-protobuf",
            &headers,
            body.clone(),
        )
        .await;
        match result {
            Ok(()) => return,
            Err(e) if e.retryable() && attempt < ATTEMPTS => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => {
                log::line(
                    "warn",
                    "-",
                    "-",
                    &format!(
                        "OTLP export to {} failed after {attempt} attempt(s): {e}",
                        config.endpoint
                    ),
                );
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn resource_attributes_are_parsed_and_bounded() {
        let r = super::parse_resource("deployment.environment=edge, host.name=node%207,bad,=x");
        assert_eq!(
            r,
            [
                ("deployment.environment".to_string(), "edge".to_string()),
                ("host.name".to_string(), "node 7".to_string())
            ]
        );
        let many = (0..100)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(super::parse_resource(&many).len(), 64);
    }
}
