//! CloudEvents over HTTP: a function with `cloudevents = true` takes events
//! in binary and structured mode, encoded by the CloudEvents Python SDK (an
//! independent implementation, installed by scripts/test.sh), and sees each
//! in binary mode; what is no valid event is refused with 400 and the reason.

use crate::client::{Server, request};
use crate::support::{Sandbox, guest, s};
use base64::Engine;
use std::path::PathBuf;

/// The venv scripts/test.sh makes beside the build, with the SDK.
fn python() -> PathBuf {
    let target = PathBuf::from(env!("CARGO_BIN_EXE_wedge"))
        .parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf();
    let py = target.join("test-venv/bin/python3");
    assert!(
        py.exists(),
        "{} is missing: run scripts/test.sh, which installs the CloudEvents Python SDK there",
        py.display()
    );
    py
}

/// The SDK's encoding of one event: (headers, body) per mode.
fn sdk_requests() -> serde_json::Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/all/py/cloudevents_requests.py");
    let out = std::process::Command::new(python())
        .arg(&script)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

fn send(srv: &Server, req: &serde_json::Value) -> crate::client::Response {
    let headers: Vec<(String, String)> = req["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let body = base64::engine::general_purpose::STANDARD
        .decode(req["body"].as_str().unwrap())
        .unwrap();
    request(srv.addr, "POST", "/events", &headers, &body).expect("request")
}

#[test]
fn cloudevents_in_structured_and_binary_mode_reach_the_function_in_binary_mode() {
    let sb = Sandbox::new();
    let toml = format!(
        "[[function]]\nname = \"event\"\nsource = \"{}\"\nroutes = [\"/events\"]\ncloudevents = true\n",
        s(&guest("c/wagi/event.wasm"))
    );
    let srv = Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]);
    let sdk = sdk_requests();
    for mode in ["structured", "binary"] {
        let r = send(&srv, &sdk[mode]);
        assert_eq!(r.status, 200, "{mode}: {}", r.text());
        let seen: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
        assert_eq!(seen["id"], "abc-1", "{mode}");
        assert_eq!(seen["source"], "/sensors/7", "{mode}");
        assert_eq!(seen["type"], "dev.example.reading", "{mode}");
        assert_eq!(seen["subject"], "sensors/7/reading", "{mode}");
        // The data, as the body (JSON spacing is the SDK's in binary mode).
        let data: serde_json::Value =
            serde_json::from_str(seen["payload"].as_str().unwrap()).unwrap();
        assert_eq!(data["t"], 21.5, "{mode}");
    }

    // No event at all, a bad one, and a batch: refused, saying why.
    let plain = request(
        srv.addr,
        "POST",
        "/events",
        &[("content-type", "application/json")],
        b"{}",
    )
    .unwrap();
    assert_eq!(plain.status, 400);
    assert!(
        plain.text().contains("not a CloudEvent"),
        "{}",
        plain.text()
    );
    let bad = request(
        srv.addr,
        "POST",
        "/events",
        &[("content-type", "application/cloudevents+json")],
        br#"{"specversion":"1.0","id":"1","type":"t"}"#,
    )
    .unwrap();
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("no source"), "{}", bad.text());
    let batch = request(
        srv.addr,
        "POST",
        "/events",
        &[("content-type", "application/cloudevents-batch+json")],
        b"[]",
    )
    .unwrap();
    assert_eq!(batch.status, 400);
    assert!(
        batch.text().contains("one event per request"),
        "{}",
        batch.text()
    );
}
