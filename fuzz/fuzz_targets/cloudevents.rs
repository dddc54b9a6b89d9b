//! The CloudEvents conversion on arbitrary structured-mode bodies: it never
//! panics, and an event it accepts comes out as a valid binary-mode event
//! (every `ce-*` header a legal attribute, the required ones present, a
//! Content-Length that matches the body), which converts again unchanged.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use wedge_cloudevents::{STRUCTURED, is_attribute_name, to_binary};

fuzz_target!(|data: &[u8]| {
    let (mut parts, ()) = http::Request::post("/")
        .header(http::header::CONTENT_TYPE, STRUCTURED)
        .body(())
        .unwrap()
        .into_parts();
    let Ok(body) = to_binary(&mut parts, Bytes::copy_from_slice(data)) else {
        return;
    };
    for (name, _) in &parts.headers {
        if let Some(attr) = name.as_str().strip_prefix("ce-") {
            assert!(is_attribute_name(attr), "{attr}");
        }
    }
    for required in ["ce-specversion", "ce-id", "ce-source", "ce-type"] {
        assert!(parts.headers.contains_key(required), "{required}");
    }
    let length = parts.headers[http::header::CONTENT_LENGTH].to_str().unwrap();
    assert_eq!(length.parse::<usize>().unwrap(), body.len());
    // Now in binary mode: accepted again as it is.
    let again = to_binary(&mut parts, body.clone()).expect("binary mode is accepted");
    assert_eq!(again, body);
});
