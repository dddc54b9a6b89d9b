//! CloudEvents over HTTP: a function with `cloudevents = true` takes events
//! in binary and structured mode, encoded by the CloudEvents Python SDK (an
//! independent implementation, installed by scripts/test.sh), and sees each
//! in binary mode; what is no valid event is refused with 400 and the reason.

use crate::client::{Server, request};
use crate::support::{Sandbox, guest, metric, s};
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

fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} never happened"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn async_app(sb: &Sandbox, name: &str, env: &str, extra: &str) -> String {
    sb.manifest(&format!(
        "[[function]]\nname = \"{name}\"\nsource = \"{}\"\nroutes = [\"/events\"]\n\
         cloudevents = \"async\"\nenv = {{ {env} }}\n{extra}\n",
        s(&guest("c/wagi/event.wasm"))
    ))
}

fn done(srv: &Server, function: &str) -> f64 {
    metric(
        srv,
        &format!(
            "wedge_messaging_deliveries_total{{messaging_system=\"http\",trigger=\"cloudevents\",function=\"{function}\",result=\"done\"}}"
        ),
    )
}

#[test]
fn async_cloudevents_are_stored_before_202_and_delivered_after_a_kill_9() {
    let sb = Sandbox::new();
    // Each delivery takes 2 s: killed right after the 202, none has ended.
    let manifest = async_app(
        &sb,
        "slow",
        "EVENT_SLEEP_MS = \"2000\"",
        "max_concurrency = 8",
    );
    let state = sb.path().join("state");
    let args = ["-f", manifest.as_str(), "--state", s(&state)];
    let srv = Server::start(&sb.cache_dir(), &args);
    let batch: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"specversion":"1.0","id":"b-{i}","source":"/test","type":"t","data":{{"n":{i}}}}}"#))
        .collect();
    let r = request(
        srv.addr,
        "POST",
        "/events",
        &[("content-type", "application/cloudevents-batch+json")],
        format!("[{}]", batch.join(",")).as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let accepted: serde_json::Value = serde_json::from_str(&r.text()).unwrap();
    assert_eq!(accepted["accepted"], 5);
    srv.signal("KILL");
    drop(srv);
    // The events were stored before the 202: a new server delivers them all.
    let again = Server::start(&sb.cache_dir(), &args);
    // While they are delivered, the backlog shows.
    assert!(metric(&again, "wedge_events_queued{function=\"slow\"}") >= 1.0);
    wait_until("five deliveries", || done(&again, "slow") >= 5.0);
    assert_eq!(done(&again, "slow"), 5.0, "each once");
    wait_until("an empty backlog", || {
        metric(&again, "wedge_events_queued{function=\"slow\"}") == 0.0
    });
    let lag = "wedge_messaging_lag_seconds_count{messaging_system=\"http\",trigger=\"cloudevents\",function=\"slow\"}";
    assert_eq!(metric(&again, lag), 5.0);
    // Not an event: refused before anything is stored.
    let bad = request(
        again.addr,
        "POST",
        "/events",
        &[("content-type", "text/plain")],
        b"x",
    )
    .unwrap();
    assert_eq!(bad.status, 400);
}

#[test]
fn async_cloudevents_no_attempt_delivers_are_dead_letters_to_list_replay_and_discard() {
    let sb = Sandbox::new();
    let retry = "retry = { attempts = 2, delay = \"10ms\" }";
    let manifest = async_app(&sb, "reject", "EVENT_FAIL = \"400\"", retry);
    let state = sb.path().join("state");
    let srv = Server::start(
        &sb.cache_dir(),
        &["-f", &manifest, "--state", s(&state), "--watch"],
    );
    let send = |id: &str| {
        let r = request(
            srv.addr,
            "POST",
            "/events",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", id),
                ("ce-source", "/test"),
                ("ce-type", "t"),
                ("content-type", "text/plain"),
            ],
            b"payload",
        )
        .unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
    };
    send("d-1");
    send("d-2");
    let list = || -> serde_json::Value {
        serde_json::from_str(
            &srv.admin_request("GET", "/v1/events/dead-letters", b"")
                .text(),
        )
        .unwrap()
    };
    wait_until("two dead letters", || {
        list()["dead_letters"].as_array().unwrap().len() == 2
    });
    let dead = list();
    let first = &dead["dead_letters"][0];
    assert_eq!(first["function"], "reject");
    assert_eq!(first["headers"]["ce-id"], "d-1");
    assert_eq!(first["failure"]["reason"], "status-400");
    assert_eq!(first["failure"]["attempts"], 1, "a 400 is not retried");
    assert_eq!(first["data_base64"], "cGF5bG9hZA==");
    // The CLI lists them too.
    let out = sb
        .wedge()
        .env("WEDGE_ADMIN_TOKEN", crate::client::ADMIN_TOKEN)
        .args(["dead-letters", "--admin", &format!("http://{}", srv.admin)])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("d-1") && table.contains("d-2") && table.contains("status-400"),
        "{table}"
    );
    // The function is fixed; one dead letter is replayed, the other discarded.
    async_app(&sb, "reject", "EVENT_FAIL = \"\"", retry);
    srv.wait_for_log("reloaded in");
    let (a, b) = (
        first["seq"].as_u64().unwrap(),
        dead["dead_letters"][1]["seq"].as_u64().unwrap(),
    );
    let r = srv.admin_request("POST", &format!("/v1/events/dead-letters/{a}/replay"), b"");
    assert_eq!(r.status, 202, "{}", r.text());
    wait_until("the replay delivered", || done(&srv, "reject") == 1.0);
    let out = sb
        .wedge()
        .env("WEDGE_ADMIN_TOKEN", crate::client::ADMIN_TOKEN)
        .args(["dead-letters", "--admin", &format!("http://{}", srv.admin)])
        .args(["--discard", &b.to_string()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("dead letter #{b} discarded")),
        "{said}"
    );
    assert!(list()["dead_letters"].as_array().unwrap().is_empty());
    assert_eq!(
        srv.admin_request("DELETE", &format!("/v1/events/dead-letters/{b}"), b"")
            .status,
        404
    );
    assert_eq!(
        srv.admin_request("POST", "/v1/events/dead-letters/abc/replay", b"")
            .status,
        400
    );
}

#[test]
fn async_cloudevents_need_a_state_directory() {
    let sb = Sandbox::new();
    let manifest = async_app(&sb, "f", "A = \"1\"", "");
    let r = sb.run(&["serve", "-f", &manifest, "--listen", "127.0.0.1:0"]);
    r.expect(1);
    assert!(r.stderr.contains("give --state DIR"), "{}", r.stderr);
}

#[test]
fn async_cloudevents_continue_the_senders_trace() {
    let (otlp_addr, received) = crate::traces::receiver();
    let sb = Sandbox::new();
    let manifest = async_app(&sb, "traced", "A = \"1\"", "");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        format!("[telemetry]\notlp_endpoint = \"http://{otlp_addr}/v1/traces\"\n\n{text}"),
    )
    .unwrap();
    let state = sb.path().join("state");
    let srv = Server::start(&sb.cache_dir(), &["-f", &manifest, "--state", s(&state)]);
    let (trace_id, sender) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let tp = format!("00-{trace_id}-{sender}-01");
    let r = request(
        srv.addr,
        "POST",
        "/events",
        &[
            ("ce-specversion", "1.0"),
            ("ce-id", "t-1"),
            ("ce-source", "/test"),
            ("ce-type", "t"),
            ("traceparent", &tp),
        ],
        b"{}",
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let mut spans = Vec::new();
    wait_until("the SERVER and CONSUMER spans", || {
        spans = received.lock().unwrap().clone();
        spans.iter().any(|s| s.kind == 5) && spans.iter().any(|s| s.kind == 2)
    });
    let consumer = spans.iter().find(|s| s.kind == 5).unwrap();
    assert_eq!(consumer.name, "process traced");
    assert_eq!(consumer.trace_id, trace_id);
    // sender -> the 202's SERVER span -> the delivery's CONSUMER span.
    let server = spans
        .iter()
        .find(|s| s.kind == 2 && s.trace_id == trace_id)
        .unwrap_or_else(|| panic!("no server span: {spans:#?}"));
    assert_eq!(server.parent, sender, "the 202 continues the sender's span");
    assert_eq!(
        consumer.parent, server.span_id,
        "the delivery follows the 202"
    );
    assert_eq!(consumer.attr("messaging.system"), Some("http"));
    assert_eq!(consumer.attr("messaging.message.id"), Some("t-1"));
    assert_eq!(consumer.attr("wedge.delivery.result"), Some("done"));
    assert!(
        spans
            .iter()
            .any(|s| s.parent == consumer.span_id && s.name.starts_with("wasm.")),
        "{spans:#?}"
    );
}
