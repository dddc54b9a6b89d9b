//! Asynchronous CloudEvents: a function with `cloudevents = "async"` answers
//! 202 once its events are stored in the control plane's store; they are
//! then delivered from the store with the function's retry policy, again
//! after a crash, and kept as dead letters when no attempt succeeds.

use crate::event::{End, Verdict};
use crate::invoke::{self, Attempt};
use bytes::Bytes;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{Semaphore, mpsc};
use wedge_control::Store;
use wedge_control::events::{self, Stored};
use wedge_executor::failure::Failure;
use wedge_executor::invocation::Peer;
use wedge_observe::log;
use wedge_trigger::pipeline::Pipeline;
use wedge_trigger::table::Shared;

/// Events delivered at once, across functions (each function's own
/// concurrency limit applies too).
const IN_FLIGHT: usize = 64;

/// Events waiting for delivery at most, and their bytes: the backlog is held
/// in memory as well as stored; beyond, new events are turned away with 503
/// until deliveries catch up.
const MAX_QUEUED: usize = 100_000;
const MAX_QUEUED_BYTES: usize = 256 << 20;

/// The label of these deliveries in the messaging metrics.
const TRIGGER: &str = "cloudevents";

/// Stores accepted events and delivers them.
pub struct Ingress {
    store: Arc<Store>,
    table: Shared,
    pipeline: Pipeline,
    queue: mpsc::UnboundedSender<Stored>,
    /// Events in `queue` or being delivered, and their bytes.
    backlog: std::sync::Mutex<(usize, usize)>,
}

impl Ingress {
    /// Starts delivering: first every event the store holds from before (a
    /// crash or a stop left them undelivered), then each one accepted.
    pub fn start(
        store: Arc<Store>,
        table: Shared,
        pipeline: Pipeline,
    ) -> Result<Arc<Ingress>, String> {
        let (queue, rx) = mpsc::unbounded_channel();
        let earlier = store.queued_events().map_err(|e| e.to_string())?;
        if !earlier.is_empty() {
            let msg = format!(
                "{} accepted event(s) not yet delivered: delivering them",
                earlier.len()
            );
            log::line("info", "-", "-", &msg);
        }
        let backlog = (earlier.len(), earlier.iter().map(|e| e.body.len()).sum());
        for e in earlier {
            pipeline
                .metrics
                .messaging
                .queued
                .with(&[&e.head.function])
                .inc();
            let _ = queue.send(e);
        }
        let ingress = Arc::new(Ingress {
            store,
            table,
            pipeline,
            queue,
            backlog: std::sync::Mutex::new(backlog),
        });
        tokio::spawn(deliver_all(ingress.clone(), rx));
        Ok(ingress)
    }
}

impl Ingress {
    /// The store's dead letters, oldest first.
    pub fn dead_letters(
        &self,
        function: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Stored>, String> {
        self.store
            .dead_letters(function, limit)
            .map_err(|e| e.to_string())
    }

    /// Counts `count` events of `bytes` into the backlog, unless that would
    /// pass its bound.
    fn admit(&self, count: usize, bytes: usize) -> bool {
        let mut b = self.backlog.lock().expect("backlog lock");
        if b.0 + count > MAX_QUEUED || b.1 + bytes > MAX_QUEUED_BYTES {
            return false;
        }
        *b = (b.0 + count, b.1 + bytes);
        true
    }

    /// Takes `count` events of `bytes` out of the backlog.
    fn release(&self, count: usize, bytes: usize) {
        let mut b = self.backlog.lock().expect("backlog lock");
        *b = (b.0.saturating_sub(count), b.1.saturating_sub(bytes));
    }

    /// Queues dead letter `seq` for delivery again; its new sequence number,
    /// or `None` when there is no such dead letter.
    pub fn replay(&self, seq: u64) -> Result<Option<u64>, String> {
        let Some(event) = self.store.replay(seq).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let new = event.seq;
        {
            let mut b = self.backlog.lock().expect("backlog lock");
            *b = (b.0 + 1, b.1 + event.body.len());
        }
        self.pipeline
            .metrics
            .messaging
            .queued
            .with(&[&event.head.function])
            .inc();
        let _ = self.queue.send(event);
        Ok(Some(new))
    }

    /// Forgets dead letter `seq`; false when there is none.
    pub fn discard(&self, seq: u64) -> Result<bool, String> {
        self.store.discard(seq).map_err(|e| e.to_string())
    }
}

impl wedge_trigger::ingress::Ingress for Ingress {
    fn accept<'a>(
        &'a self,
        function: &'a str,
        events: Vec<(http::HeaderMap, Bytes)>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u64>, Failure>> + Send + 'a>> {
        Box::pin(async move {
            let (count, bytes) = (events.len(), events.iter().map(|(_, b)| b.len()).sum());
            if !self.admit(count, bytes) {
                return Err(Failure::QueueFull);
            }
            let rows: Vec<events::NewEvent> = events
                .into_iter()
                .map(|(headers, body)| {
                    let h = headers
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.as_str().to_string(), v.to_str().ok()?.to_string()))
                        })
                        .collect();
                    (h, body.to_vec())
                })
                .collect();
            let (store, name) = (self.store.clone(), function.to_string());
            // A durable commit (fsync): off the async workers.
            let stored = match tokio::task::spawn_blocking(move || {
                store.accept_events(&name, &rows)
            })
            .await
            {
                Ok(Ok(stored)) => stored,
                failed => {
                    self.release(count, bytes);
                    let message = match failed {
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                        Ok(Ok(_)) => unreachable!("matched above"),
                    };
                    return Err(Failure::Internal { message });
                }
            };
            let seqs = stored.iter().map(|e| e.seq).collect();
            let queued = self.pipeline.metrics.messaging.queued.with(&[function]);
            for e in stored {
                queued.inc();
                let _ = self.queue.send(e);
            }
            Ok(seqs)
        })
    }
}

/// Delivers queued events, [`IN_FLIGHT`] at a time.
async fn deliver_all(ingress: Arc<Ingress>, mut rx: mpsc::UnboundedReceiver<Stored>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(event) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let ingress = ingress.clone();
        tokio::spawn(async move {
            deliver(&ingress, event).await;
            drop(permit);
        });
    }
}

async fn deliver(ingress: &Ingress, event: Stored) {
    let start = Instant::now();
    let function = event.head.function.clone();
    let m = &ingress.pipeline.metrics.messaging;
    let series = |family: &wedge_telemetry::metric::Family<wedge_telemetry::metric::Counter>,
                  last: &str| family.with(&["http", TRIGGER, &function, last]);
    let retry = {
        let table = ingress.table.load();
        table
            .functions
            .iter()
            .find(|f| f.name == function)
            .map(|f| f.stable().config.event_retry.clone())
            .unwrap_or_default()
    };
    let id = event
        .head
        .headers
        .iter()
        .find(|(k, _)| k == "ce-id")
        .map_or_else(|| event.seq.to_string(), |(_, v)| v.clone());
    let tracer = ingress.pipeline.tracer.clone();
    let header = |name: &str| {
        let h = &event.head.headers;
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    };
    let parent = header("traceparent")
        .and_then(|tp| wedge_telemetry::trace::Context::parse(tp, header("tracestate")));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let lag = now_ms.saturating_sub(event.head.accepted_ms) as f64 / 1000.0;
    m.lag.with(&["http", TRIGGER, &function]).observe(lag);
    let mut last = Verdict::Done;
    let mut attempts = 0;
    for attempt in 1..=retry.attempts {
        if attempt > 1 {
            tokio::time::sleep(invoke::backoff(&retry, attempt)).await;
        }
        attempts = attempt;
        let call_id = format!("event-{}.{attempt}", event.seq);
        // Each attempt is a CONSUMER span of its own, continuing the
        // sender's trace.
        let span = tracer.as_ref().map(|t| t.server_context(parent.as_ref()));
        let a = Attempt {
            table: &ingress.table,
            pipeline: &ingress.pipeline,
            peer: Peer {
                remote: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                local: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
                tls: false,
            },
            function: &function,
            call_id: &call_id,
            span: span.as_ref(),
        };
        let started = wedge_telemetry::trace::now_nanos();
        let body = Bytes::from(event.body.clone());
        let (verdict, _, record) = invoke::attempt(&a, request(&event), body, None).await;
        series(&m.deliveries, verdict.name()).inc();
        if let (Some(t), Some(s)) = (&tracer, &span)
            && s.sampled
        {
            t.emit(crate::spans::attempt(&crate::spans::Attempt {
                system: "http",
                ctx: s,
                parent: parent.as_ref().map(|p| p.span_id),
                topic: &function,
                filter: &function,
                client_id: TRIGGER,
                message_id: &id,
                body_size: event.body.len(),
                function: &function,
                call_id: &call_id,
                attempt,
                result: verdict.name(),
                start: started,
                end: wedge_telemetry::trace::now_nanos(),
                record: &record,
            }));
        }
        match verdict {
            Verdict::Done => {
                last = Verdict::Done;
                break;
            }
            Verdict::Permanent(_) => {
                last = verdict;
                break;
            }
            Verdict::Retry(_) => last = verdict,
        }
    }
    let store = ingress.store.clone();
    let seq = event.seq;
    let end = match last {
        Verdict::Done => {
            let _ = tokio::task::spawn_blocking(move || store.delivered(seq)).await;
            End::Done
        }
        Verdict::Retry(why) | Verdict::Permanent(why) => {
            series(&m.dead_letters, &why.reason).inc();
            let msg = format!(
                "event {id} (#{seq}) dead-lettered after {attempts} attempt(s): {}",
                why.detail
            );
            log::line("warn", &format!("event-{seq}"), &function, &msg);
            let failure = events::Failure {
                reason: why.reason,
                detail: why.detail.chars().take(1024).collect(),
                attempts,
                at: wedge_control::store::now(),
            };
            let _ = tokio::task::spawn_blocking(move || store.dead_letter(seq, failure)).await;
            End::DeadLettered
        }
    };
    m.queued.with(&[&function]).dec();
    ingress.release(1, event.body.len());
    m.process_duration
        .with(&["http", TRIGGER, &function, end.name()])
        .observe(start.elapsed().as_secs_f64());
}

/// The stored event as the request its function is invoked with.
fn request(event: &Stored) -> http::request::Parts {
    let (mut parts, ()) = http::Request::post("/")
        .body(())
        .expect("a static request is valid")
        .into_parts();
    for (k, v) in &event.head.headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            parts.headers.append(name, value);
        }
    }
    parts
}
