//! One attempt to deliver an event to its function, whatever brought it (an
//! MQTT message, an event accepted over HTTP): through the shared pipeline,
//! the response read whole, the result turned into a [`Verdict`].

use crate::event::{Verdict, Why};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Instant;
use wedge_executor::failure::Failure;
use wedge_executor::invocation::{Invocation, Peer, Route};
use wedge_observe::traces::TRACEPARENT;
use wedge_telemetry::trace;
use wedge_trigger::pipeline::{Ending, Pipeline, Record};
use wedge_trigger::table::Shared;

/// What the function answered.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

/// Where an attempt goes and what it is.
pub struct Attempt<'a> {
    pub table: &'a Shared,
    pub pipeline: &'a Pipeline,
    pub peer: Peer,
    pub function: &'a str,
    pub call_id: &'a str,
    /// The attempt's span, which the guest sees as its `traceparent`.
    pub span: Option<&'a trace::Context>,
}

/// Runs one attempt: `head` and `body` are the binary-mode event, or
/// `bad_event` says why there is none to run.
pub async fn attempt(
    a: &Attempt<'_>,
    mut head: http::request::Parts,
    body: Bytes,
    bad_event: Option<String>,
) -> (Verdict, Option<Answer>, Record) {
    let table = a.table.load_full();
    let Some(served) = table.functions.iter().find(|f| f.name == a.function) else {
        let why = Why {
            reason: "unserved".into(),
            detail: format!("function {} is not being served", a.function),
        };
        return (Verdict::Retry(why), None, Record::default());
    };
    if let Some(s) = a.span
        && let Ok(v) = http::HeaderValue::from_bytes(&s.traceparent_bytes())
    {
        head.headers.insert(TRACEPARENT, v);
    }
    let version = served.pick(&head.headers);
    let mut record = Record::default();
    record.chose(version, served.versions.len());
    let start = Instant::now();
    let limit = version.spec.limits.max_request_body;
    let result = if let Some(problem) = bad_event {
        Err(Failure::BadEvent { problem })
    } else if body.len() as u64 > limit {
        Err(Failure::BodyTooLarge { limit })
    } else {
        let inv = Invocation {
            id: a.call_id,
            head,
            body: body.into(),
            peer: a.peer,
            route: Route {
                template: "/",
                script_name: "",
                path_info: "/",
                params: &[],
            },
            trace: a.span.cloned(),
            tracer: None,
        };
        match a.pipeline.invoke(version, inv, &mut record).await {
            Ok(response) => {
                let (parts, body) = response.into_parts();
                match body.collect().await {
                    Ok(b) => Ok((parts, b.to_bytes())),
                    Err(_) => Err(Failure::ResponseTooLarge {
                        limit: version.spec.limits.max_response_body,
                    }),
                }
            }
            Err(f) => Err(f),
        }
    };
    match result {
        Ok((parts, body)) => {
            let status = parts.status.as_u16();
            let ending = Ending::Answered(status);
            a.pipeline
                .finish(&record, a.call_id, ending, start.elapsed());
            let answer = Answer {
                status,
                headers: parts.headers,
                body,
            };
            (Verdict::of_status(status), Some(answer), record)
        }
        Err(failure) => {
            let verdict = Verdict::of_failure(&failure);
            let ending = Ending::Failed {
                failure: &failure,
                answer: verdict.name(),
            };
            a.pipeline
                .finish(&record, a.call_id, ending, start.elapsed());
            (verdict, None, record)
        }
    }
}

/// The wait before attempt `attempt` of `retry`, less up to a fifth of
/// jitter so that failed events do not retry in step.
pub fn backoff(retry: &wedge_manifest::mqtt::Retry, attempt: u32) -> std::time::Duration {
    let wait = retry.delay_before(attempt);
    wait - wait.mul_f64(fastrand::f64() * 0.2)
}
