//! The one invocation pipeline every trigger uses: the version's gate, the
//! executor's call, the response limit, and the function's metrics, anomaly
//! detector and log lines. A trigger (HTTP, a message, a CloudEvent) picks
//! the version, builds the [`Invocation`], calls [`Pipeline::invoke`], and
//! ends with [`Pipeline::finish`]; it maps the result to its own answer and
//! records only what is its own (an HTTP status metric, a SERVER span, an
//! access line).

use crate::table::Version;
use http_body::Body as _;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use wedge_executor::body::{Body, Limited};
use wedge_executor::failure::{Class, Failure};
use wedge_executor::invocation::Invocation;
use wedge_observe::log;
use wedge_observe::metrics::{FunctionMetrics, Metrics};
use wedge_observe::stats::GuestStats;
use wedge_observe::traces::Tracer;
use wedge_telemetry::trace;

/// Shared by every trigger of a server (clones share the metrics and tracer).
#[derive(Clone)]
pub struct Pipeline {
    pub metrics: Arc<Metrics>,
    /// The trace exporter, when tracing is configured.
    pub tracer: Option<Arc<Tracer>>,
}

/// What the pipeline learned about one invocation: for the trigger's own
/// metrics, spans and log line, and for [`Pipeline::finish`].
#[derive(Default)]
pub struct Record {
    pub function: Option<Arc<FunctionMetrics>>,
    /// The version that served, and how many the function has in traffic.
    pub version: Option<Arc<str>>,
    pub versions: usize,
    pub guest: Option<GuestStats>,
    /// Unix nanoseconds when waiting for a slot began, and how long it took.
    pub queued: Option<(u64, Duration)>,
    /// Unix nanoseconds when the guest was called.
    pub guest_start: Option<u64>,
}

impl Record {
    /// Starts the record of an invocation of `version`, one of `versions`.
    pub fn chose(&mut self, version: &Version, versions: usize) {
        self.function = Some(version.spec.metrics.clone());
        self.version = Some(version.spec.version.clone());
        self.versions = versions;
    }

    /// The function's name, empty when no function was chosen.
    pub fn function_name(&self) -> &str {
        self.function.as_ref().map_or("", |f| &f.name)
    }
}

/// How an invocation ended, as [`Pipeline::finish`] needs to know it.
pub enum Ending<'a> {
    /// The guest answered with this status (HTTP's, or the one an event
    /// trigger reads from the function's response).
    Answered(u16),
    /// It failed, and the trigger answered `answer` (an HTTP status, say),
    /// which starts the failure's log line.
    Failed {
        failure: &'a Failure,
        answer: &'a str,
    },
}

impl Pipeline {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Pipeline {
            metrics,
            tracer: None,
        }
    }

    /// Runs `inv` on `version`: waits for a slot at its gate, calls the
    /// guest, and bounds the response body by `max_response_body`. The slot
    /// stays taken while the body streams from the instance.
    pub async fn invoke(
        &self,
        version: &Version,
        mut inv: Invocation<'_>,
        record: &mut Record,
    ) -> Result<http::Response<Body>, Failure> {
        let m = &version.spec.metrics;
        let ticket = match &version.breaker {
            Some(b) => Some(
                b.admit()
                    .map_err(|retry_after| Failure::CircuitOpen { retry_after })?
                    .neutral_if_dropped(),
            ),
            None => None,
        };
        let queue_start = trace::now_nanos();
        let slot = match version.gate.enter().await {
            Ok(slot) => slot,
            Err(busy) => {
                // Turned away before the guest ran: no verdict on it.
                if let Some(t) = ticket {
                    t.forget();
                }
                return Err(busy);
            }
        };
        m.queue_wait.observe(slot.queued.as_secs_f64());
        record.queued = Some((queue_start, slot.queued));
        // A streaming body is measured by its trigger once it has all come.
        if let Some(n) = inv.body.known_len() {
            m.request_body.observe(n as f64);
        }
        m.invocations.inc();
        record.guest_start = Some(trace::now_nanos());
        inv.tracer = self.tracer.clone();
        let id = inv.id.to_string();
        let outcome = version
            .executor
            .call(inv, version.spec.allow_authorization)
            .await;
        record.guest = Some(outcome.stats);
        if let Some(t) = ticket {
            t.done(match &outcome.result {
                Ok(r) => r.status().as_u16() < 500,
                Err(f) => !matches!(f.class(), Class::Guest | Class::Internal),
            });
        }
        let response = limit_response(
            outcome.result?,
            version.spec.limits.max_response_body,
            id,
            &version.spec.name,
            slot,
        )?;
        if let Some(n) = response.body().size_hint().exact() {
            m.response_body.observe(n as f64);
        }
        Ok(response)
    }

    /// Ends an invocation: counts a failure by its class (turned away, or
    /// an error of the function), feeds the function's anomaly detector and
    /// rollout tally, and logs failures that are not the caller's fault.
    pub fn finish(&self, record: &Record, id: &str, ending: Ending<'_>, elapsed: Duration) {
        let failed = match ending {
            Ending::Answered(status) => status >= 500,
            Ending::Failed { failure, answer } => {
                let class = failure.class();
                // A client over its rate limit is neither the function's
                // error nor news for the log: the metrics count it. Shed by
                // an open breaker, it is an error but no news either (the
                // breaker logged when it opened).
                let limited = matches!(failure, Failure::RateLimited { .. });
                let quiet = limited || matches!(failure, Failure::CircuitOpen { .. });
                if let Some(f) = &record.function {
                    match (class, failure) {
                        (Class::Refused | Class::Busy, _) => f.rejected(failure.kind()),
                        (_, Failure::Timeout { .. }) => {
                            f.timeouts.inc();
                            f.error(failure.kind());
                        }
                        _ => f.error(failure.kind()),
                    }
                }
                if class != Class::Refused && !quiet {
                    let function = record.function_name();
                    log::line(
                        "warn",
                        id,
                        if function.is_empty() { "-" } else { function },
                        &format!("{answer} {}", failure.reason()),
                    );
                }
                class != Class::Refused && !limited
            }
        };
        if let Some(f) = &record.function {
            let peak = record.guest.as_ref().and_then(|g| g.peak_memory);
            f.observe(elapsed, peak, failed);
        }
    }
}

/// Bounds a response body by `limit` bytes: a declared length over it fails
/// at once; a streamed body is cut off where it passes the limit, with a
/// log line. The body holds the gate's slot until it is done.
fn limit_response(
    response: http::Response<Body>,
    limit: u64,
    id: String,
    function: &Arc<str>,
    slot: crate::gate::Entry,
) -> Result<http::Response<Body>, Failure> {
    let declared = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Failure::ResponseTooLarge { limit });
    }
    let function = function.clone();
    Ok(response.map(|b| {
        let on_exceeded = Box::new(move || {
            log::line(
                "warn",
                &id,
                &function,
                &format!("response body passed the limit of {limit} bytes; response cut off"),
            )
        });
        Limited::new(b, limit, on_exceeded)
            .holding(slot.into_permit())
            .boxed_unsync()
    }))
}
