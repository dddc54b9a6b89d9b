//! The spans of one request: a SERVER span `{method} {route}` with the HTTP
//! semantic-convention attributes, and children for the queue wait,
//! instantiation and guest execution.

use crate::function::GuestStats;
use crate::handler::Peer;
use std::time::Duration;
use wedge_telemetry::trace::{Context, Span, SpanKind, Value, new_span_id};

/// What a request's spans are made from.
pub struct Request<'a> {
    pub ctx: &'a Context,
    /// The client's span, when the request carried a `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub method: &'a str,
    pub path: &'a str,
    pub version: http::Version,
    pub route: &'a str,
    pub function: &'a str,
    pub status: u16,
    pub request_id: &'a str,
    pub peer: Peer,
    pub start: u64,
    pub end: u64,
    pub queued: Option<(u64, Duration)>,
    pub guest_start: Option<u64>,
    pub guest: Option<&'a GuestStats>,
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

fn child(
    r: &Request<'_>,
    name: &str,
    start: u64,
    end: u64,
    attributes: Vec<(&'static str, Value)>,
) -> Span {
    Span {
        trace_id: r.ctx.trace_id,
        span_id: new_span_id(),
        parent_span_id: Some(r.ctx.span_id),
        name: name.to_string(),
        kind: SpanKind::Internal,
        start_unix_nanos: start,
        end_unix_nanos: end.max(start),
        attributes,
        error: false,
    }
}

/// The request's spans, server span first.
pub fn for_request(r: &Request<'_>) -> Vec<Span> {
    let name = if r.route.is_empty() {
        r.method.to_string()
    } else {
        format!("{} {}", r.method, r.route)
    };
    let version = match r.version {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    let mut attributes = vec![
        ("http.request.method", Value::Str(r.method.into())),
        ("url.path", Value::Str(r.path.into())),
        ("url.scheme", Value::Str("http".into())),
        ("http.response.status_code", Value::Int(i64::from(r.status))),
        ("network.protocol.version", Value::Str(version.into())),
        ("client.address", Value::Str(r.peer.remote.ip().to_string())),
        ("server.port", Value::Int(i64::from(r.peer.local.port()))),
        ("wedge.request_id", Value::Str(r.request_id.into())),
    ];
    if !r.route.is_empty() {
        attributes.push(("http.route", Value::Str(r.route.into())));
    }
    if !r.function.is_empty() {
        attributes.push(("faas.name", Value::Str(r.function.into())));
    }
    if let Some(g) = r.guest {
        if let Some(m) = g.peak_memory {
            attributes.push(("wasm.memory.peak_bytes", Value::Int(m as i64)));
        }
        if let Some(f) = g.fuel {
            attributes.push(("wasm.fuel.consumed", Value::Int(f as i64)));
        }
    }
    let mut spans = vec![Span {
        trace_id: r.ctx.trace_id,
        span_id: r.ctx.span_id,
        parent_span_id: r.parent,
        name,
        kind: SpanKind::Server,
        start_unix_nanos: r.start,
        end_unix_nanos: r.end,
        attributes,
        error: r.status >= 500,
    }];
    // Most requests find a free slot at once: a queue span only when one waited.
    if let Some((start, waited)) = r.queued.filter(|(_, w)| !w.is_zero()) {
        spans.push(child(
            r,
            "wedge.queue",
            start,
            start + nanos(waited),
            vec![],
        ));
    }
    if let (Some(start), Some(g)) = (r.guest_start, r.guest) {
        match g.instantiate {
            Some(inst) => {
                let mid = start + nanos(inst);
                spans.push(child(r, "wasm.instantiate", start, mid, vec![]));
                spans.push(child(
                    r,
                    "wasm.execute",
                    mid,
                    start + nanos(g.guest),
                    vec![],
                ));
            }
            None => spans.push(child(
                r,
                "wasm.guest",
                start,
                start + nanos(g.guest),
                vec![],
            )),
        }
    }
    spans
}
