//! wedge-cloudevents: CloudEvents 1.0 over HTTP as functions take them — every event in binary mode, whatever mode it arrived in.
//!
//! Every event reaches a function in binary mode (`ce-*` headers, the data as the body), whatever
//! mode it arrived in. A structured-mode request (`application/cloudevents+json`)
//! is turned into binary mode; a request that is no valid CloudEvent is refused
//! with what is wrong.

use base64::Engine;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue};
use http::request::Parts;

/// Structured mode's media type.
pub const STRUCTURED: &str = "application/cloudevents+json";
/// Batched mode's media type.
pub const BATCH: &str = "application/cloudevents-batch+json";

/// The attributes every event has.
const REQUIRED: [&str; 3] = ["id", "source", "type"];

/// The media type of `parts`, lower-case, without parameters.
fn media_type(parts: &Parts) -> String {
    parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Whether `name` may be a CloudEvents attribute: lower-case letters and
/// digits, at most 20.
pub fn is_attribute_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 20
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Makes the request a binary-mode CloudEvent: a structured one is
/// converted (its attributes become `ce-*` headers, its data the body), a
/// binary one is checked. Returns the body to invoke with.
pub fn to_binary(parts: &mut Parts, body: Bytes) -> Result<Bytes, String> {
    match media_type(parts).as_str() {
        STRUCTURED => structured(parts, &body),
        BATCH => Err(format!(
            "a batch ({BATCH}) is not taken here: send one event per request, in binary or structured mode"
        )),
        _ => {
            check_binary(parts)?;
            Ok(body)
        }
    }
}

/// Events in one batch at most.
pub const MAX_BATCH: usize = 1000;

/// Every event of a request, each in binary mode: its `ce-*`,
/// `content-type`, `traceparent` and `tracestate` headers, and its data. A
/// batch (`application/cloudevents-batch+json`, a JSON array of structured
/// events) gives each of its events; any other request gives one, as
/// [`to_binary`] reads it.
pub fn events(parts: &Parts, body: Bytes) -> Result<Vec<(http::HeaderMap, Bytes)>, String> {
    let keep = |headers: &http::HeaderMap| {
        let mut out = http::HeaderMap::new();
        for (name, value) in headers {
            let n = name.as_str();
            if n.starts_with("ce-")
                || n == "content-type"
                || n == "traceparent"
                || n == "tracestate"
            {
                out.append(name.clone(), value.clone());
            }
        }
        out
    };
    if media_type(parts) != BATCH {
        let mut p = parts.clone();
        let body = to_binary(&mut p, body)?;
        return Ok(vec![(keep(&p.headers), body)]);
    }
    let batch: Vec<serde_json::Value> = serde_json::from_slice(&body)
        .map_err(|e| format!("the {BATCH} body is not a JSON array: {e}"))?;
    if batch.is_empty() || batch.len() > MAX_BATCH {
        return Err(format!(
            "a batch holds 1 to {MAX_BATCH} events, not {}",
            batch.len()
        ));
    }
    let mut out = Vec::with_capacity(batch.len());
    for (i, event) in batch.iter().enumerate() {
        let (mut p, ()) = http::Request::post("/")
            .header(CONTENT_TYPE, STRUCTURED)
            .body(())
            .expect("a static request is valid")
            .into_parts();
        let json = serde_json::to_vec(event).map_err(|e| e.to_string())?;
        let data = structured(&mut p, &json).map_err(|e| format!("event {i} of the batch: {e}"))?;
        out.push((keep(&p.headers), data));
    }
    Ok(out)
}

/// Checks the `ce-*` headers of a binary-mode event.
fn check_binary(parts: &Parts) -> Result<(), String> {
    let header = |name: &str| {
        parts
            .headers
            .get(format!("ce-{name}"))
            .and_then(|v| v.to_str().ok())
    };
    match header("specversion") {
        Some("1.0") => {}
        Some(other) => return Err(format!("ce-specversion {other} is not supported: send 1.0")),
        None => {
            return Err(format!(
                "not a CloudEvent: send ce-specversion, ce-id, ce-source and ce-type headers \
                 (binary mode) or a {STRUCTURED} body (structured mode)"
            ));
        }
    }
    for name in REQUIRED {
        if header(name).is_none_or(str::is_empty) {
            if parts.headers.contains_key(format!("ce-{name}")) {
                return Err(format!(
                    "ce-{name} is not printable ASCII: percent-encode other characters (UTF-8)"
                ));
            }
            return Err(format!("the event has no ce-{name}"));
        }
    }
    Ok(())
}

/// Converts a structured-mode event.
fn structured(parts: &mut Parts, body: &[u8]) -> Result<Bytes, String> {
    let event: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
        .map_err(|e| format!("the {STRUCTURED} body is not a JSON object: {e}"))?;
    match event.get("specversion").and_then(|v| v.as_str()) {
        Some("1.0") => {}
        Some(other) => return Err(format!("specversion {other} is not supported: send 1.0")),
        None => return Err("the event has no specversion".into()),
    }
    for name in REQUIRED {
        if event
            .get(name)
            .and_then(|v| v.as_str())
            .is_none_or(str::is_empty)
        {
            return Err(format!("the event has no {name} (a non-empty string)"));
        }
    }
    let content_type = event
        .get("datacontenttype")
        .and_then(|v| v.as_str())
        .unwrap_or("application/json")
        .to_string();
    let data = match (event.get("data"), event.get("data_base64")) {
        (Some(_), Some(_)) => return Err("the event has both data and data_base64".into()),
        (None, Some(b64)) => {
            let text = b64.as_str().ok_or("data_base64 must be a string")?;
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| format!("data_base64 is not base64: {e}"))?
        }
        // Text data of a type that is not JSON is the text itself.
        (Some(serde_json::Value::String(s)), None) if !is_json(&content_type) => {
            s.clone().into_bytes()
        }
        (Some(v), None) => serde_json::to_vec(v).map_err(|e| e.to_string())?,
        (None, None) => Vec::new(),
    };
    let headers = &mut parts.headers;
    headers.remove(CONTENT_LENGTH);
    for (name, value) in &event {
        if matches!(name.as_str(), "data" | "data_base64" | "datacontenttype") {
            continue;
        }
        if !is_attribute_name(name) {
            return Err(format!(
                "`{name}` is not a CloudEvents attribute name (lower-case letters and digits, at most 20)"
            ));
        }
        let text = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => continue,
            _ => {
                return Err(format!(
                    "attribute `{name}` must be a string, number or boolean"
                ));
            }
        };
        // As the HTTP binding writes string attributes in binary mode.
        let value = HeaderValue::from_str(&percent_encode(&text))
            .map_err(|_| format!("attribute `{name}` cannot be an HTTP header value"))?;
        let name = HeaderName::from_bytes(format!("ce-{name}").as_bytes())
            .map_err(|_| format!("`{name}` cannot be an HTTP header name"))?;
        headers.insert(name, value);
    }
    let ct = HeaderValue::from_str(&content_type)
        .map_err(|_| "datacontenttype cannot be an HTTP header value".to_string())?;
    headers.insert(CONTENT_TYPE, ct);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(data.len()));
    Ok(Bytes::from(data))
}

/// Percent-encodes what the CloudEvents HTTP binding says a header value may
/// not hold as it is: space, `"`, `%` and every byte outside printable ASCII
/// (so a UTF-8 character becomes its bytes, `%D1%93`).
fn percent_encode(text: &str) -> String {
    use percent_encoding::{CONTROLS, utf8_percent_encode};
    // CONTROLS, and every non-ASCII byte, which the crate always encodes.
    const UNSAFE: &percent_encoding::AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%');
    utf8_percent_encode(text, UNSAFE).to_string()
}

/// `application/json`, `text/json` and any `+json` type.
fn is_json(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    t == "application/json" || t == "text/json" || t.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: &str, headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::post("/events").header(CONTENT_TYPE, content_type);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn h<'a>(p: &'a Parts, name: &str) -> Option<&'a str> {
        p.headers.get(name).map(|v| v.to_str().unwrap())
    }

    #[test]
    fn structured_events_become_binary_mode() {
        let mut p = request("application/cloudevents+json; charset=utf-8", &[]);
        let body = br#"{"specversion":"1.0","id":"e-1","source":"/sensors/7","type":"reading",
            "time":"2026-11-30T12:00:00Z","partitionkey":"7","sequence":42,"data":{"t":21.5}}"#;
        let data = to_binary(&mut p, Bytes::from_static(body)).unwrap();
        assert_eq!(&data[..], br#"{"t":21.5}"#);
        assert_eq!(h(&p, "ce-id"), Some("e-1"));
        assert_eq!(h(&p, "ce-source"), Some("/sensors/7"));
        assert_eq!(h(&p, "ce-specversion"), Some("1.0"));
        assert_eq!(h(&p, "ce-sequence"), Some("42"));
        assert_eq!(h(&p, "ce-partitionkey"), Some("7"));
        assert_eq!(h(&p, "content-type"), Some("application/json"));
        assert_eq!(h(&p, "content-length"), Some("10"));

        // Text data stays text; base64 data is decoded.
        let mut p = request(STRUCTURED, &[]);
        let body = br#"{"specversion":"1.0","id":"2","source":"s","type":"t","datacontenttype":"text/plain","data":"hi"}"#;
        assert_eq!(
            &to_binary(&mut p, Bytes::from_static(body)).unwrap()[..],
            b"hi"
        );
        assert_eq!(h(&p, "content-type"), Some("text/plain"));
        let mut p = request(STRUCTURED, &[]);
        let body = br#"{"specversion":"1.0","id":"3","source":"s","type":"t","datacontenttype":"image/png","data_base64":"iVBORw=="}"#;
        assert_eq!(
            &to_binary(&mut p, Bytes::from_static(body)).unwrap()[..],
            b"\x89PNG"
        );
    }

    #[test]
    fn attribute_values_are_percent_encoded_as_the_http_binding_says() {
        // Found by the fuzz target: a non-ASCII source came out as a header
        // that binary mode could not read back.
        let mut p = request(STRUCTURED, &[]);
        let body = r#"{"specversion":"1.0","id":"e 1","source":"(ѓensors/7","type":"100%"}"#;
        to_binary(&mut p, Bytes::from(body)).unwrap();
        assert_eq!(h(&p, "ce-source"), Some("(%D1%93ensors/7"));
        assert_eq!(h(&p, "ce-id"), Some("e%201"));
        assert_eq!(h(&p, "ce-type"), Some("100%25"));
        // And what came out is accepted again.
        assert!(to_binary(&mut p, Bytes::new()).is_ok());
        // A binary-mode header that is not ASCII says so.
        let mut p = request(
            "text/plain",
            &[("ce-specversion", "1.0"), ("ce-id", "1"), ("ce-type", "t")],
        );
        p.headers
            .insert("ce-source", HeaderValue::from_bytes(b"\xd1\x93").unwrap());
        assert!(
            to_binary(&mut p, Bytes::new())
                .unwrap_err()
                .contains("percent-encode")
        );
    }

    #[test]
    fn a_batch_gives_each_event_in_binary_mode() {
        let p = request(BATCH, &[]);
        let body = br#"[{"specversion":"1.0","id":"1","source":"s","type":"t","data":{"n":1}},
                        {"specversion":"1.0","id":"2","source":"s","type":"t","datacontenttype":"text/plain","data":"two"}]"#;
        let got = events(&p, Bytes::from_static(body)).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0["ce-id"], "1");
        assert_eq!(&got[1].1[..], b"two");
        assert_eq!(got[1].0["content-type"], "text/plain");
        let bad = br#"[{"specversion":"1.0","id":"1","source":"s","type":"t"},{"id":"2"}]"#;
        let e = events(&p, Bytes::from_static(bad)).unwrap_err();
        assert!(e.contains("event 1 of the batch"), "{e}");
        assert!(
            events(&p, Bytes::from_static(b"[]"))
                .unwrap_err()
                .contains("1 to 1000")
        );
        // One event is one event, whatever its mode; only event headers kept.
        let p = request(
            "text/plain",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "9"),
                ("ce-source", "s"),
                ("ce-type", "t"),
                ("x-other", "no"),
            ],
        );
        let got = events(&p, Bytes::from_static(b"hi")).unwrap();
        assert_eq!(got[0].0.len(), 5);
        assert!(!got[0].0.contains_key("x-other"));
    }

    #[test]
    fn what_is_no_valid_event_is_refused_saying_why() {
        let cases: [(&str, &[u8], &str); 6] = [
            (STRUCTURED, b"[1]", "not a JSON object"),
            (STRUCTURED, br#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#, "0.3 is not supported"),
            (STRUCTURED, br#"{"specversion":"1.0","id":"1","type":"t"}"#, "no source"),
            (STRUCTURED, br#"{"specversion":"1.0","id":"1","source":"s","type":"t","Bad-Name":"x"}"#, "`Bad-Name`"),
            (STRUCTURED, br#"{"specversion":"1.0","id":"1","source":"s","type":"t","data":1,"data_base64":"AA=="}"#, "both"),
            (BATCH, b"[]", "one event per request"),
        ];
        for (ct, body, want) in cases {
            let mut p = request(ct, &[]);
            let e = to_binary(&mut p, Bytes::from_static(body)).unwrap_err();
            assert!(e.contains(want), "{e} should mention {want}");
        }
        let mut p = request("application/json", &[]);
        assert!(
            to_binary(&mut p, Bytes::new())
                .unwrap_err()
                .contains("not a CloudEvent")
        );
        let mut p = request(
            "application/json",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "s"),
            ],
        );
        assert!(
            to_binary(&mut p, Bytes::new())
                .unwrap_err()
                .contains("no ce-type")
        );
        let mut p = request(
            "application/json",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "1"),
                ("ce-source", "s"),
                ("ce-type", "t"),
            ],
        );
        assert_eq!(
            &to_binary(&mut p, Bytes::from_static(b"{}")).unwrap()[..],
            b"{}"
        );
    }
}
