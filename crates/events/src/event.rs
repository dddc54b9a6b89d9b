//! A message as a function sees it, and what the function's answer means for
//! the message. Every function takes an event the same way: as a CloudEvents
//! HTTP request in binary mode (`ce-*` headers, the payload as the body), so
//! any `wasi:http` component or WAGI module can be an event function unchanged.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use std::time::SystemTime;
use wedge_executor::failure::{Class, Failure};
use wedge_manifest::mqtt::MqttTrigger;
use wedge_trigger::cloudevents;

/// The CloudEvents attributes a message may carry as MQTT 5 user properties
/// (the CloudEvents MQTT binding, binary mode) and wedge passes on.
const CE_REQUIRED: [&str; 3] = ["id", "source", "type"];

/// One message as it arrived.
#[derive(Clone, Debug)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    /// MQTT 5 user properties, in order.
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub received: SystemTime,
}

/// The CloudEvents attributes of a message: its own when it carries a
/// CloudEvent (`specversion` among its user properties), else made up from
/// the trigger and topic.
pub fn attributes(msg: &Message, trigger: &MqttTrigger, fresh_id: &str) -> Vec<(String, String)> {
    let own = |name: &str| {
        msg.user_properties
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let is_event = own("specversion").is_some() && CE_REQUIRED.iter().all(|a| own(a).is_some());
    if is_event {
        return msg
            .user_properties
            .iter()
            .filter(|(k, _)| cloudevents::is_attribute_name(k))
            .cloned()
            .collect();
    }
    vec![
        ("specversion".into(), "1.0".into()),
        ("id".into(), fresh_id.to_string()),
        ("source".into(), format!("{}/{}", trigger.broker, msg.topic)),
        ("type".into(), trigger.event_type.clone()),
        ("subject".into(), msg.topic.clone()),
        ("time".into(), rfc3339(msg.received)),
    ]
}

/// The request a function is invoked with: `POST /`, a `ce-` header per
/// attribute, the message's content type, `traceparent` when it carried one.
pub fn request(
    msg: &Message,
    attrs: &[(String, String)],
    default_type: &str,
) -> http::request::Parts {
    let (mut parts, ()) = http::Request::post("/")
        .body(())
        .expect("a static request is valid")
        .into_parts();
    let h = &mut parts.headers;
    for (k, v) in attrs {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(format!("ce-{k}").as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            continue;
        };
        h.append(name, value);
    }
    let ct = msg.content_type.as_deref().unwrap_or(default_type);
    if let Ok(v) = HeaderValue::from_str(ct) {
        h.insert(CONTENT_TYPE, v);
    }
    for name in ["traceparent", "tracestate"] {
        if let Some((_, v)) = msg.user_properties.iter().find(|(k, _)| k == name)
            && let Ok(v) = HeaderValue::from_str(v)
        {
            h.insert(HeaderName::from_static(name), v);
        }
    }
    parts
}

/// A message in CloudEvents structured mode (content type
/// `application/cloudevents+json`) as a binary-mode request and its body;
/// `None` for any other message.
pub fn structured(msg: &Message) -> Option<Result<(http::request::Parts, Bytes), String>> {
    let ct = msg.content_type.as_deref()?;
    let media = ct.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case(cloudevents::STRUCTURED) {
        return None;
    }
    let (mut parts, ()) = http::Request::post("/")
        .header(CONTENT_TYPE, cloudevents::STRUCTURED)
        .body(())
        .expect("a static request is valid")
        .into_parts();
    Some(cloudevents::to_binary(&mut parts, msg.payload.clone()).map(|body| (parts, body)))
}

/// What an attempt's result means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done,
    /// Worth another attempt (5xx, 408, 429, a trap, a timeout, busy).
    Retry(Why),
    /// Will fail the same way again (any other 4xx, a refused input).
    Permanent(Why),
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Why {
    /// A short token with no spaces, for metrics and dead letters:
    /// `status-503`, or a failure's kind (`trap`, `timeout`...).
    pub reason: String,
    /// What happened, for people.
    pub detail: String,
}

impl Why {
    fn status(status: u16) -> Why {
        Why {
            reason: format!("status-{status}"),
            detail: format!("the function answered {status}"),
        }
    }
}

impl Verdict {
    /// A function's answer: 2xx is done; 408, 429 and 5xx may pass; the rest
    /// (other 4xx, 1xx, 3xx) will not.
    pub fn of_status(status: u16) -> Verdict {
        match status {
            200..=299 => Verdict::Done,
            408 | 429 | 500..=599 => Verdict::Retry(Why::status(status)),
            _ => Verdict::Permanent(Why::status(status)),
        }
    }

    /// A failure with no answer from the function.
    pub fn of_failure(f: &Failure) -> Verdict {
        let why = Why {
            reason: f.kind().to_string(),
            detail: f.reason(),
        };
        match f.class() {
            Class::Refused => Verdict::Permanent(why),
            Class::Busy | Class::Guest | Class::Internal => Verdict::Retry(why),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Done => "done",
            Verdict::Retry(_) => "retry",
            Verdict::Permanent(_) => "permanent",
        }
    }
}

/// How a message ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Done,
    DeadLettered,
    /// Failed every attempt and the trigger has no dead-letter topic.
    Dropped,
}

impl End {
    pub fn name(self) -> &'static str {
        match self {
            End::Done => "done",
            End::DeadLettered => "dead-lettered",
            End::Dropped => "dropped",
        }
    }
}

/// `2026-11-30T15:04:05.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn trigger() -> MqttTrigger {
        let text = "[[function]]\nname = \"f\"\nsource = \"hello.wasm\"\n\n[[trigger.mqtt]]\n\
                    broker = \"mqtt://127.0.0.1:1883\"\ntopics = [\"s/+\"]\nfunction = \"f\"\n";
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifest/testdata/bad/wedge.toml");
        let app = wedge_manifest::parse(&dir, text, &Default::default()).expect("manifest");
        app.triggers.mqtt[0].clone()
    }

    fn message(props: &[(&str, &str)]) -> Message {
        Message {
            topic: "s/7".into(),
            payload: Bytes::from_static(b"{}"),
            user_properties: props
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_type: None,
            response_topic: None,
            correlation_data: None,
            received: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_515_045_123),
        }
    }

    #[test]
    fn a_plain_message_becomes_a_binary_mode_cloudevent() {
        let t = trigger();
        let msg = message(&[(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )]);
        let attrs = attributes(&msg, &t, "m-1");
        let parts = request(&msg, &attrs, &t.content_type);
        let h = |n: &str| {
            parts
                .headers
                .get(n)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(parts.method, http::Method::POST);
        assert_eq!(h("ce-specversion").as_deref(), Some("1.0"));
        assert_eq!(h("ce-id").as_deref(), Some("m-1"));
        assert_eq!(h("ce-source").as_deref(), Some("mqtt://127.0.0.1:1883/s/7"));
        assert_eq!(h("ce-type").as_deref(), Some("dev.wedge.mqtt.message"));
        assert_eq!(h("ce-subject").as_deref(), Some("s/7"));
        assert_eq!(h("ce-time").as_deref(), Some("2025-11-30T15:04:05.123Z"));
        assert_eq!(
            h("content-type").as_deref(),
            Some("application/octet-stream")
        );
        assert!(h("traceparent").is_some());
    }

    #[test]
    fn a_message_carrying_a_cloudevent_keeps_its_own_attributes() {
        let t = trigger();
        let msg = message(&[
            ("specversion", "1.0"),
            ("id", "abc"),
            ("source", "/sensors/7"),
            ("type", "reading"),
            ("partitionkey", "7"),
            ("Not-An-Attribute", "x"),
        ]);
        let attrs = attributes(&msg, &t, "m-1");
        let names: Vec<&str> = attrs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["specversion", "id", "source", "type", "partitionkey"]
        );
        // Without `specversion` it is not a CloudEvent: wedge makes one up.
        let msg = message(&[("id", "abc"), ("source", "x"), ("type", "y")]);
        assert_eq!(attributes(&msg, &t, "m-2")[1].1, "m-2");
    }

    #[test]
    fn verdicts_follow_the_delivery_rules() {
        assert_eq!(Verdict::of_status(204), Verdict::Done);
        for retry in [408, 429, 500, 503] {
            assert_eq!(Verdict::of_status(retry).name(), "retry", "{retry}");
        }
        for permanent in [400, 404, 413, 301, 101] {
            assert_eq!(
                Verdict::of_status(permanent).name(),
                "permanent",
                "{permanent}"
            );
        }
        let trap = Failure::Trap {
            message: "unreachable".into(),
        };
        assert_eq!(Verdict::of_failure(&trap).name(), "retry");
        assert_eq!(Verdict::of_failure(&Failure::QueueFull).name(), "retry");
        assert_eq!(
            Verdict::of_failure(&Failure::BodyTooLarge { limit: 1 }).name(),
            "permanent"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }
}
