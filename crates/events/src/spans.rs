//! The spans of a message, in the OpenTelemetry messaging conventions: a
//! CONSUMER span `process TOPIC` per delivery attempt, continuing the trace
//! the message carried (`traceparent` among its MQTT 5 user properties) and
//! parent of the invocation's spans, and a PRODUCER span `publish TOPIC` for
//! the reply or dead letter, which carries the trace on. An event accepted
//! asynchronously over HTTP gets the same CONSUMER spans, continuing the
//! sender's `traceparent`.

use wedge_telemetry::trace::{Context, Encoded, Span, SpanKind, Value};
use wedge_trigger::pipeline::Record;

/// One delivery attempt, as its CONSUMER span sees it.
pub struct Attempt<'a> {
    /// `mqtt`, or `http` for CloudEvents accepted asynchronously.
    pub system: &'a str,
    pub ctx: &'a Context,
    /// The producer's span, when the message carried a trace.
    pub parent: Option<[u8; 8]>,
    pub topic: &'a str,
    /// The subscription filter that matched (`messaging.destination.template`).
    pub filter: &'a str,
    pub client_id: &'a str,
    pub message_id: &'a str,
    pub body_size: usize,
    pub function: &'a str,
    pub call_id: &'a str,
    pub attempt: u32,
    /// `done`, `retry` or `permanent`.
    pub result: &'a str,
    pub start: u64,
    pub end: u64,
    pub record: &'a Record,
}

const SYSTEM: (&str, Value<'static>) = ("messaging.system", Value::Str("mqtt"));

/// The attempt's CONSUMER span and the invocation's children of it.
pub fn attempt(a: &Attempt<'_>) -> Encoded {
    let name = format!("process {}", a.filter);
    let version = a.record.version.as_deref().unwrap_or("");
    let mut attributes = vec![
        ("messaging.system", Value::Str(a.system)),
        ("messaging.operation.name", Value::Str("process")),
        ("messaging.operation.type", Value::Str("process")),
        ("messaging.destination.name", Value::Str(a.topic)),
        ("messaging.destination.template", Value::Str(a.filter)),
        ("messaging.client.id", Value::Str(a.client_id)),
        ("messaging.message.id", Value::Str(a.message_id)),
        (
            "messaging.message.body.size",
            Value::Int(a.body_size as i64),
        ),
        ("faas.trigger", Value::Str("pubsub")),
        ("faas.name", Value::Str(a.function)),
        ("wedge.request_id", Value::Str(a.call_id)),
        ("wedge.delivery.attempt", Value::Int(i64::from(a.attempt))),
        ("wedge.delivery.result", Value::Str(a.result)),
    ];
    if !version.is_empty() {
        attributes.push(("faas.version", Value::Str(version)));
    }
    let mut guest = Vec::new();
    wedge_trigger::spans::guest_attributes(a.record.guest.as_ref(), |k, v| guest.push((k, v)));
    attributes.extend(guest.into_iter().map(|(k, v)| (k, Value::Int(v))));
    let mut out = Encoded::default();
    out.push(&Span {
        trace_id: a.ctx.trace_id,
        span_id: a.ctx.span_id,
        parent_span_id: a.parent,
        name: &name,
        kind: SpanKind::Consumer,
        start_unix_nanos: a.start,
        end_unix_nanos: a.end.max(a.start),
        attributes: &attributes,
        error: a.result != "done",
    });
    wedge_trigger::spans::children(a.ctx, a.record, &mut out);
    out
}

/// The PRODUCER span `ctx` for publishing to `topic` (a reply or a dead
/// letter), child of the attempt's span `parent`; the published message
/// carries `ctx` as its `traceparent`.
pub fn publish(
    ctx: &Context,
    parent: [u8; 8],
    topic: &str,
    client_id: &str,
    start: u64,
    end: u64,
) -> Encoded {
    let name = format!("publish {topic}");
    let attributes = [
        SYSTEM,
        ("messaging.operation.name", Value::Str("publish")),
        ("messaging.operation.type", Value::Str("send")),
        ("messaging.destination.name", Value::Str(topic)),
        ("messaging.client.id", Value::Str(client_id)),
    ];
    let mut out = Encoded::default();
    out.push(&Span {
        trace_id: ctx.trace_id,
        span_id: ctx.span_id,
        parent_span_id: Some(parent),
        name: &name,
        kind: SpanKind::Producer,
        start_unix_nanos: start,
        end_unix_nanos: end.max(start),
        attributes: &attributes,
        error: false,
    });
    out
}
