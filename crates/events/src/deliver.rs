//! One message, start to end: delivered to the function through the shared
//! pipeline, retried with backoff while a retry may help, then either done
//! (its reply published) or dead-lettered. Only then is it acknowledged.

use crate::context::Context;
use crate::event::{self, End, Message, Verdict};
use crate::invoke::{self, Answer, Attempt};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PublishProperties;
use std::time::Duration;
use wedge_observe::log;
use wedge_observe::traces::{TRACEPARENT, TRACESTATE};
use wedge_telemetry::trace;
use wedge_trigger::pipeline::Record;

pub async fn deliver(ctx: &Context, msg: &Message) -> End {
    let t = &ctx.trigger;
    let id = wedge_trigger::request_id::generate();
    let attrs = event::attributes(msg, t, &id);
    let parent = trace_parent(msg);
    let tracer = ctx.pipeline.tracer.clone();
    let mut span = None;
    let mut last = Verdict::Done;
    let mut attempts = 0;
    for attempt in 1..=t.retry.attempts {
        if attempt > 1 {
            tokio::time::sleep(invoke::backoff(&t.retry, attempt)).await;
        }
        attempts = attempt;
        let call_id = if attempt == 1 {
            id.clone()
        } else {
            format!("{id}.{attempt}")
        };
        // Each attempt is a CONSUMER span of its own, continuing the
        // message's trace.
        span = tracer.as_ref().map(|t| t.server_context(parent.as_ref()));
        let start = trace::now_nanos();
        let (verdict, answer, record) =
            attempt_once(ctx, msg, &attrs, &call_id, span.as_ref()).await;
        ctx.series.deliveries(&verdict).inc();
        if let (Some(tracer), Some(s)) = (&tracer, &span)
            && s.sampled
        {
            tracer.emit(crate::spans::attempt(&crate::spans::Attempt {
                system: "mqtt",
                ctx: s,
                parent: parent.as_ref().map(|p| p.span_id),
                topic: &msg.topic,
                filter: filter_of(&t.topics, &msg.topic),
                client_id: &t.client_id,
                message_id: attrs
                    .iter()
                    .find(|(k, _)| k == "id")
                    .map_or("", |(_, v)| v.as_str()),
                body_size: msg.payload.len(),
                function: &t.function,
                call_id: &call_id,
                attempt,
                result: verdict.name(),
                start,
                end: trace::now_nanos(),
                record: &record,
            }));
        }
        match verdict {
            Verdict::Done => {
                if let Some(answer) = answer {
                    reply(ctx, msg, &attrs, answer, span.as_ref()).await;
                }
                return End::Done;
            }
            Verdict::Permanent(_) => {
                last = verdict;
                break;
            }
            Verdict::Retry(_) => last = verdict,
        }
    }
    let (Verdict::Retry(why) | Verdict::Permanent(why)) = last else {
        unreachable!("a done message returned above")
    };
    ctx.series.dead_letter(&why.reason).inc();
    let reason = &why.detail;
    let Some(topic) = &t.dead_letter_topic else {
        log::line(
            "error",
            &id,
            &t.function,
            &format!(
                "message on {} dropped after {attempts} attempt(s): {reason} (the trigger has no dead_letter_topic)",
                msg.topic
            ),
        );
        return End::Dropped;
    };
    log::line(
        "warn",
        &id,
        &t.function,
        &format!(
            "message on {} dead-lettered to {topic} after {attempts} attempt(s): {reason}",
            msg.topic
        ),
    );
    let mut user_properties = attrs.clone();
    for (k, v) in &msg.user_properties {
        if !user_properties.iter().any(|(a, _)| a == k) {
            user_properties.push((k.clone(), v.clone()));
        }
    }
    user_properties.extend([
        ("wedgeerror".to_string(), why.reason.clone()),
        ("wedgeerrordetail".to_string(), truncate(&why.detail, 1024)),
        ("wedgeattempts".to_string(), attempts.to_string()),
        ("wedgetopic".to_string(), msg.topic.clone()),
    ]);
    let properties = PublishProperties {
        content_type: msg.content_type.clone(),
        correlation_data: msg.correlation_data.clone(),
        user_properties,
        ..Default::default()
    };
    publish_until_confirmed(
        ctx,
        &id,
        topic,
        QoS::AtLeastOnce,
        msg.payload.clone(),
        properties,
        span.as_ref(),
    )
    .await;
    End::DeadLettered
}

/// One delivery to the function.
async fn attempt_once(
    ctx: &Context,
    msg: &Message,
    attrs: &[(String, String)],
    call_id: &str,
    span: Option<&trace::Context>,
) -> (Verdict, Option<Answer>, Record) {
    let t = &ctx.trigger;
    // A message in structured mode (the CloudEvents MQTT binding) carries its
    // event as JSON: the function gets it in binary mode like any other.
    let (head, body, bad_event) = match event::structured(msg) {
        Some(Ok((parts, body))) => (parts, body, None),
        Some(Err(problem)) => (
            event::request(msg, attrs, &t.content_type),
            Bytes::new(),
            Some(problem),
        ),
        None => (
            event::request(msg, attrs, &t.content_type),
            msg.payload.clone(),
            None,
        ),
    };
    let a = Attempt {
        table: &ctx.table,
        pipeline: &ctx.pipeline,
        peer: ctx.peer,
        function: &t.function,
        call_id,
        span,
    };
    invoke::attempt(&a, head, body, bad_event).await
}

/// Publishes the function's answer to the message's MQTT 5 Response Topic,
/// or else the trigger's `reply_topic`; `ce-*` response headers become user
/// properties (binary mode), with the status and the event's id.
async fn reply(
    ctx: &Context,
    msg: &Message,
    attrs: &[(String, String)],
    answer: Answer,
    span: Option<&trace::Context>,
) {
    let t = &ctx.trigger;
    let asked = msg
        .response_topic
        .as_deref()
        .filter(|r| !r.is_empty() && !r.contains(['+', '#']));
    let Some(topic) = asked.or(t.reply_topic.as_deref()) else {
        return;
    };
    let mut user_properties = vec![("status".to_string(), answer.status.to_string())];
    if let Some((_, id)) = attrs.iter().find(|(k, _)| k == "id") {
        user_properties.push(("wedgeevent".to_string(), id.clone()));
    }
    for (name, value) in &answer.headers {
        if let (Some(attr), Ok(v)) = (name.as_str().strip_prefix("ce-"), value.to_str()) {
            user_properties.push((attr.to_string(), v.to_string()));
        }
    }
    let content_type = answer
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let properties = PublishProperties {
        content_type,
        correlation_data: msg.correlation_data.clone(),
        user_properties,
        ..Default::default()
    };
    let qos = if t.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let id = attrs
        .iter()
        .find(|(k, _)| k == "id")
        .map_or("-", |(_, v)| v.as_str());
    publish_until_confirmed(ctx, id, topic, qos, answer.body, properties, span).await;
}

/// Publishes until the broker confirms: the message it belongs to is not
/// acknowledged before, so a broker outage holds it rather than losing it.
async fn publish_until_confirmed(
    ctx: &Context,
    id: &str,
    topic: &str,
    qos: QoS,
    payload: Bytes,
    mut properties: PublishProperties,
    span: Option<&trace::Context>,
) {
    // A PRODUCER span, child of the attempt's: the message carries it on.
    let producer = span.map(trace::Context::child);
    if let Some(p) = &producer {
        let u = &mut properties.user_properties;
        u.retain(|(k, _)| k != "traceparent" && k != "tracestate");
        u.push(("traceparent".into(), p.traceparent()));
        if let Some(state) = &p.tracestate {
            u.push(("tracestate".into(), state.clone()));
        }
    }
    let start = trace::now_nanos();
    let mut wait = Duration::from_millis(100);
    let mut failures = 0u32;
    loop {
        match ctx
            .publisher
            .publish(topic, qos, payload.clone(), properties.clone())
            .await
        {
            Ok(()) => {
                if let (Some(t), Some(p), Some(parent)) = (&ctx.pipeline.tracer, &producer, span)
                    && p.sampled
                {
                    let end = trace::now_nanos();
                    let spans = crate::spans::publish(
                        p,
                        parent.span_id,
                        topic,
                        &ctx.trigger.client_id,
                        start,
                        end,
                    );
                    t.emit(spans);
                }
                return;
            }
            Err(e) => {
                failures += 1;
                if failures.is_power_of_two() {
                    log::line(
                        "warn",
                        id,
                        &ctx.trigger.function,
                        &format!("publishing to {topic} failed ({failures}x), trying again: {e}"),
                    );
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// At most `max` bytes of `s`, cut at a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The trace a message carried: `traceparent` (and `tracestate`) among its
/// user properties, as W3C trace context and the CloudEvents tracing
/// extension both name them.
fn trace_parent(msg: &Message) -> Option<trace::Context> {
    let prop = |name: &str| {
        msg.user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    trace::Context::parse(prop(TRACEPARENT.as_str())?, prop(TRACESTATE.as_str()))
}

/// The trigger's filter that `topic` matched (the first), for span names:
/// a bounded set, unlike topics.
fn filter_of<'a>(filters: &'a [String], topic: &'a str) -> &'a str {
    filters
        .iter()
        .find(|f| wedge_manifest::mqtt::matches(f, topic))
        .map_or(topic, String::as_str)
}
