//! `wedge serve` under hostile guests and load: every failure gets its one
//! status with the request id, the queue holds and sheds, SIGTERM drains,
//! and a well-behaved function keeps answering beside misbehaving ones.

use crate::client::{Response, Server, get, request, wait_for_file};
use crate::support::{Sandbox, guest, s};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn function(name: &str, source: &str, extra: &str) -> String {
    format!(
        "[[function]]\nname = \"{name}\"\nsource = \"{}\"\nroutes = [\"/{name}\"]\n{extra}\n",
        s(&guest(source))
    )
}

#[track_caller]
fn expect_failure(r: &Response, status: u16, reason: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let id = r
        .header("x-request-id")
        .expect("x-request-id on every response");
    let text = r.text();
    assert!(text.contains(reason), "`{reason}` missing from: {text}");
    assert!(text.contains(&format!("(request id {id})")), "{text}");
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
}

/// A GET carrying the debug token, whose failures come with their detail.
fn debug_get(a: std::net::SocketAddr, path: &str) -> Response {
    request(a, "GET", path, &[("x-wedge-debug", "dbg-0123456789")], b"").unwrap()
}

#[test]
fn every_guest_failure_maps_to_one_status() {
    let sb = Sandbox::new();
    let toml = [
        "[defaults]\ntimeout = \"1s\"\nmax_memory = \"2MiB\"\n".to_string(),
        function("trap", "wat/divzero.wat", ""),
        function("spin", "wat/spin.wat", ""),
        function("grow", "wat/grow.wat", ""),
        function("recurse", "wat/recurse.wat", ""),
        function(
            "flood",
            "wat/wagi/flood.wat",
            "max_response_body = \"64KiB\"",
        ),
        function("badcgi", "wat/wagi/badcgi.wat", ""),
        function("exit", "wat/exit7.wat", ""),
        function("fuel", "wat/burn.wat", "fuel = 1000"),
        function("env", "c/wagi/env.wasm", "max_request_body = \"1KiB\""),
    ]
    .concat();
    let srv = Server::start(
        &sb.cache_dir(),
        &["-f", &sb.manifest(&toml), "--debug-token", "dbg-0123456789"],
    );
    let a = srv.addr;
    expect_failure(
        &debug_get(a, "/trap"),
        500,
        "guest trapped: wasm trap: integer divide by zero",
    );
    expect_failure(&debug_get(a, "/spin"), 504, "guest timed out after 1000 ms");
    expect_failure(&debug_get(a, "/grow"), 500, "memory limit");
    expect_failure(&debug_get(a, "/recurse"), 500, "call stack exhausted");
    expect_failure(
        &debug_get(a, "/flood"),
        500,
        "larger than the limit of 65536 bytes",
    );
    expect_failure(
        &debug_get(a, "/badcgi"),
        502,
        "header line 1 `this is not a header` has no `:`",
    );
    expect_failure(&debug_get(a, "/exit"), 500, "guest exited with status 7");
    expect_failure(&debug_get(a, "/fuel"), 500, "fuel budget of 1000");
    expect_failure(&get(a, "/none"), 404, "no route");
    let big = vec![b'x'; 2048];
    expect_failure(
        &request(a, "POST", "/env", &[], &big).unwrap(),
        413,
        "limit of 1024 bytes",
    );
    let huge = "v".repeat(70 * 1024);
    expect_failure(
        &request(a, "GET", "/env", &[("X-Huge", &huge)], b"").unwrap(),
        431,
        "request headers are larger",
    );
    // Without the debug token a client learns the status and a summary,
    // never the guest's internals; the log has the detail.
    let r = get(a, "/trap");
    let id = r.header("x-request-id").unwrap();
    assert_eq!(
        r.text(),
        format!("500 Internal Server Error: guest trapped (request id {id})\n")
    );
    srv.wait_for_log(&format!(
        "[{id}] trap: 500 guest trapped: wasm trap: integer divide by zero"
    ));
    let r = get(a, "/badcgi");
    assert_eq!(r.status, 502);
    assert!(!r.text().contains("this is not a header"), "{}", r.text());
    // Guest failures are logged with the request id, and the server lives on.
    let r = get(a, "/trap");
    let id = r.header("x-request-id").unwrap();
    srv.wait_for_log(&format!("[{id}] trap: 500"));
    assert_eq!(get(a, "/env").status, 200);
}

fn slow_app(sb: &Sandbox, extra: &str) -> (Server, std::path::PathBuf) {
    let signal = sb.path().join("signal");
    std::fs::create_dir_all(&signal).unwrap();
    let toml = function(
        "slow",
        "c/wagi/slow.wasm",
        &format!(
            "files = [{{ host = \"{}\", guest = \"/signal\" }}]\n{extra}",
            s(&signal)
        ),
    );
    (
        Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]),
        signal,
    )
}

#[test]
fn concurrency_cap_queues_then_sheds_with_retry_after() {
    let sb = Sandbox::new();
    let (srv, signal) = slow_app(
        &sb,
        "max_concurrency = 1\nqueue = 1\nqueue_timeout = \"30s\"",
    );
    let addr = srv.addr;
    let first = std::thread::spawn(move || get(addr, "/slow?first&2000"));
    wait_for_file(&signal.join("first"));
    // The one slot is taken. Of three more requests, whichever reaches the
    // gate first waits in the one-place queue; the other two are shed.
    let others: Vec<_> = ["a", "b", "c"]
        .into_iter()
        .map(|n| std::thread::spawn(move || get(addr, &format!("/slow?{n}&10"))))
        .collect();
    let results: Vec<Response> = others.into_iter().map(|t| t.join().unwrap()).collect();
    let shed: Vec<&Response> = results.iter().filter(|r| r.status == 503).collect();
    let served: Vec<&Response> = results.iter().filter(|r| r.status == 200).collect();
    assert_eq!((shed.len(), served.len()), (2, 1), "{results:?}");
    for r in shed {
        expect_failure(r, 503, "queue is full");
        assert_eq!(r.header("retry-after"), Some("1"));
    }
    assert!(served[0].text().starts_with("done "));
    assert_eq!(first.join().unwrap().text(), "done first\n");
}

#[test]
fn queue_timeout_gives_503() {
    let sb = Sandbox::new();
    let (srv, signal) = slow_app(
        &sb,
        "max_concurrency = 1\nqueue = 4\nqueue_timeout = \"100ms\"",
    );
    let addr = srv.addr;
    let first = std::thread::spawn(move || get(addr, "/slow?hold&2000"));
    wait_for_file(&signal.join("hold"));
    expect_failure(&get(addr, "/slow?late&10"), 503, "waited");
    assert_eq!(first.join().unwrap().status, 200);
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let sb = Sandbox::new();
    let (mut srv, signal) = slow_app(&sb, "");
    let addr = srv.addr;
    let inflight = std::thread::spawn(move || get(addr, "/slow?drain&1000"));
    wait_for_file(&signal.join("drain"));
    srv.signal("TERM");
    let r = inflight.join().unwrap();
    assert_eq!(r.status, 200, "the in-flight request completes");
    assert_eq!(r.text(), "done drain\n");
    let status = srv.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", srv.logs());
    assert!(srv.logs().contains("shut down cleanly"), "{}", srv.logs());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
}

#[test]
fn a_good_function_answers_while_hostile_ones_spin() {
    let sb = Sandbox::new();
    let toml = [
        function("spin", "wat/spin.wat", "timeout = \"60s\""),
        function("hello", "wat/wagi/hello.wat", ""),
    ]
    .concat();
    let srv = Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]);
    let addr = srv.addr;
    let finished = Arc::new(AtomicUsize::new(0));
    for _ in 0..4 {
        let finished = finished.clone();
        std::thread::spawn(move || {
            let _ = request(addr, "GET", "/spin", &[], b"");
            finished.fetch_add(1, Ordering::SeqCst);
        });
    }
    // Four busy loops on two cores, and hello still answers, every time,
    // while all of them are still running.
    for _ in 0..10 {
        let r = get(addr, "/hello");
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), "hello from wagi\n");
    }
    assert_eq!(
        finished.load(Ordering::SeqCst),
        0,
        "hello waited for the spinners"
    );
    // Dropping the server ends the spinners' connections.
}
