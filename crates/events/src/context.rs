//! What every message of one trigger shares: its configuration, the served
//! table and pipeline, both connections' clients, the arrival order, the
//! slots that bound concurrency, and its metric series.

use crate::confirm::Publisher;
use crate::event::{End, Verdict};
use crate::order::Order;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wedge_executor::invocation::Peer;
use wedge_manifest::mqtt::MqttTrigger;
use wedge_observe::metrics::Metrics;
use wedge_telemetry::metric::{Counter, Gauge};
use wedge_trigger::pipeline::Pipeline;
use wedge_trigger::table::Shared;

/// Packet ids to acknowledge on the consuming connection, in the order they
/// are due.
pub type Acks = tokio::sync::mpsc::UnboundedSender<u16>;

/// What every message of one trigger shares.
pub struct Context {
    pub trigger: MqttTrigger,
    pub table: Shared,
    pub pipeline: Pipeline,
    pub publisher: Publisher,
    /// Where the consuming connection takes acknowledgements, while it is up.
    pub(crate) acks: Mutex<Option<Acks>>,
    pub(crate) order: Mutex<Order>,
    /// Messages being handled at most (`max_in_flight`).
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// Signalled when acknowledgements leave the arrival order.
    pub(crate) room: tokio::sync::Notify,
    /// Whether the broker was seen ignoring the Receive Maximum.
    pub(crate) flooded: AtomicBool,
    /// The broker's end, as functions see the caller.
    pub peer: Peer,
    pub series: Series,
    /// Whether the consuming connection is up, for health.
    pub connected: AtomicBool,
    /// Set (to the grace) when the trigger is to stop.
    pub(crate) stop: tokio::sync::watch::Sender<Option<std::time::Duration>>,
    /// Signalled whenever a message's handling ends.
    pub(crate) idle: tokio::sync::Notify,
    /// Filters to unsubscribe from when the trigger stops (those a reload
    /// dropped).
    pub(crate) unsubscribe: Mutex<Vec<String>>,
}

/// A trigger's metric series, resolved once.
pub struct Series {
    metrics: Arc<Metrics>,
    labels: [String; 2],
    pub(crate) consumed: Arc<Counter>,
    pub(crate) redelivered: Arc<Counter>,
    pub(crate) in_flight: Arc<Gauge>,
    pub(crate) lag: Arc<wedge_telemetry::metric::Histogram>,
    pub(crate) connected: Arc<Gauge>,
    /// Attempts by result: done, retry, permanent.
    deliveries: [Arc<Counter>; 3],
    /// Processing time by how messages ended: done, dead-lettered, dropped.
    durations: [Arc<wedge_telemetry::metric::Histogram>; 3],
}

impl Series {
    /// Messages being handled now.
    pub(crate) fn in_flight_now(&self) -> i64 {
        self.in_flight.get()
    }

    pub(crate) fn new(metrics: Arc<Metrics>, t: &MqttTrigger) -> Series {
        let m = &metrics.messaging;
        let (id, f) = (t.client_id.as_str(), t.function.as_str());
        let broker = t.broker.to_string();
        Series {
            consumed: m.consumed.with(&["mqtt", id, f, "false"]),
            redelivered: m.consumed.with(&["mqtt", id, f, "true"]),
            in_flight: m.in_flight.with(&["mqtt", id, f]),
            lag: m.lag.with(&["mqtt", id, f]),
            connected: m.connected.with(&["mqtt", id, &broker]),
            deliveries: ["done", "retry", "permanent"]
                .map(|r| m.deliveries.with(&["mqtt", id, f, r])),
            durations: [End::Done, End::DeadLettered, End::Dropped]
                .map(|e| m.process_duration.with(&["mqtt", id, f, e.name()])),
            labels: [t.client_id.clone(), t.function.clone()],
            metrics,
        }
    }

    /// The attempts that ended with `verdict`.
    pub fn deliveries(&self, verdict: &Verdict) -> &Counter {
        let i = match verdict {
            Verdict::Done => 0,
            Verdict::Retry(_) => 1,
            Verdict::Permanent(_) => 2,
        };
        &self.deliveries[i]
    }

    pub fn dead_letter(&self, reason: &str) -> Arc<Counter> {
        let [id, f] = &self.labels;
        self.metrics
            .messaging
            .dead_letters
            .with(&["mqtt", id, f, reason])
    }

    /// Connection attempts and losses; `connection` is `in` or `out`.
    pub(crate) fn connections(&self, connection: &str, result: &str) -> Arc<Counter> {
        let [id, _] = &self.labels;
        self.metrics
            .messaging
            .connections
            .with(&["mqtt", id, connection, result])
    }

    pub(crate) fn ended(&self, end: End, took: Duration) {
        let i = match end {
            End::Done => 0,
            End::DeadLettered => 1,
            End::Dropped => 2,
        };
        self.durations[i].observe(took.as_secs_f64());
    }
}

impl Context {
    /// The consuming connection's acknowledgements, while it is up.
    pub(crate) fn acks(&self) -> Option<Acks> {
        self.acks.lock().expect("acks lock").clone()
    }
}

impl wedge_trigger::status::Status for Context {
    fn json(&self) -> String {
        use std::sync::atomic::Ordering;
        let t = &self.trigger;
        let m = &self.pipeline.metrics.messaging;
        // Label 1 of every messaging family is the trigger's client id.
        let sum = |f: &wedge_telemetry::metric::Family<Counter>| -> u64 {
            f.snapshot()
                .iter()
                .filter(|(labels, _)| labels.get(1) == Some(&t.client_id))
                .map(|(_, c)| c.get())
                .sum()
        };
        serde_json::json!({
            "kind": "mqtt",
            "client_id": t.client_id,
            "broker": t.broker.to_string(),
            "topics": t.topics,
            "function": t.function,
            "connected": self.connected.load(Ordering::Relaxed),
            "in_flight": self.series.in_flight.get(),
            "unacknowledged": self.order.lock().expect("order lock").len(),
            "consumed": self.series.consumed.get() + self.series.redelivered.get(),
            "redelivered": self.series.redelivered.get(),
            "dead_letters": sum(&m.dead_letters),
            "dead_letter_topic": t.dead_letter_topic,
            "reply_topic": t.reply_topic,
        })
        .to_string()
    }
}
