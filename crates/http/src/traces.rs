//! Trace export over OTLP/HTTP (protobuf), configured by the standard
//! `OTEL_*` environment variables. Spans go through a bounded queue to one
//! exporter task that posts them in batches; when the queue is full spans
//! are dropped and counted, never waited for.

use crate::log;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use wedge_telemetry::metric::Counter;
use wedge_telemetry::trace::{self, Context, Encoded};

/// Requests' span groups waiting for export at most; beyond, they are dropped.
const QUEUE: usize = 4096;
/// Spans per export request at most.
const BATCH: usize = 512;

/// Where and how to export.
#[derive(Clone, Debug)]
pub struct Config {
    pub endpoint: http::Uri,
    pub headers: Vec<(String, String)>,
    pub service_name: String,
    pub ratio: f64,
    pub parent_based: bool,
}

impl Config {
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
        Ok(Some(Config {
            endpoint,
            headers,
            service_name: var("OTEL_SERVICE_NAME")
                .or_else(|| manifest.service_name.clone())
                .unwrap_or_else(|| "wedge".into()),
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

/// Posts `batch` (and empties it); a failure is logged, and the spans lost.
async fn send(config: &Config, batch: &mut Vec<Encoded>) {
    let body = trace::encode_export(&config.service_name, batch);
    batch.clear();
    if let Err(e) = post(config, body).await {
        log::line(
            "warn",
            "-",
            "-",
            &format!("OTLP export to {} failed: {e}", config.endpoint),
        );
    }
}

async fn post(config: &Config, body: Vec<u8>) -> Result<(), String> {
    crate::export::post(
        &config.endpoint,
        "application/x-protobuf",
        &config.headers,
        body,
    )
    .await
}
