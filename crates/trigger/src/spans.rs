//! The spans every invocation has, whatever its trigger: children of the
//! trigger's own span (an HTTP SERVER span, a message CONSUMER span) for the
//! queue wait, instantiation and guest execution.

use std::time::Duration;
use wedge_observe::stats::GuestStats;
use wedge_telemetry::trace::{Context, Encoded, Span, SpanKind, new_span_id};

fn nanos(d: Duration) -> u64 {
    d.as_nanos() as u64
}

fn child(ctx: &Context, out: &mut Encoded, name: &str, start: u64, end: u64) {
    out.push(&Span {
        trace_id: ctx.trace_id,
        span_id: new_span_id(),
        parent_span_id: Some(ctx.span_id),
        name,
        kind: SpanKind::Internal,
        start_unix_nanos: start,
        end_unix_nanos: end.max(start),
        attributes: &[],
        error: false,
    });
}

/// Appends the invocation's children of `ctx` (the trigger's span) to `out`:
/// `wedge.queue` when it waited for a slot, then `wasm.instantiate` and
/// `wasm.execute` (or one `wasm.guest` when instantiation was not timed
/// apart).
pub fn children(ctx: &Context, record: &crate::pipeline::Record, out: &mut Encoded) {
    // Most invocations find a free slot at once: a queue span only when one waited.
    if let Some((start, waited)) = record.queued.filter(|(_, w)| !w.is_zero()) {
        child(ctx, out, "wedge.queue", start, start + nanos(waited));
    }
    if let (Some(start), Some(g)) = (record.guest_start, &record.guest) {
        match g.instantiate {
            Some(inst) => {
                let mid = start + nanos(inst);
                child(ctx, out, "wasm.instantiate", start, mid);
                child(ctx, out, "wasm.execute", mid, start + nanos(g.guest));
            }
            None => child(ctx, out, "wasm.guest", start, start + nanos(g.guest)),
        }
    }
}

/// The guest's statistics, as span attributes of the trigger's span.
pub fn guest_attributes(guest: Option<&GuestStats>, mut add: impl FnMut(&'static str, i64)) {
    if let Some(g) = guest {
        if let Some(m) = g.peak_memory {
            add("wasm.memory.peak_bytes", m as i64);
        }
        if let Some(f) = g.fuel {
            add("wasm.fuel.consumed", f as i64);
        }
    }
}
