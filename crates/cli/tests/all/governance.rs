//! Governance on real sockets: CPU-time budgets (the guest's own on-CPU
//! time, not the wall clock), rate limits and circuit breakers.

use crate::client::{Response, Server, request};
use crate::support::{Sandbox, example, guest, s};
use std::time::Duration;

fn function(name: &str, source: &str, extra: &str) -> String {
    format!(
        "[[function]]\nname = \"{name}\"\nsource = \"{}\"\nroutes = [\"/{name}\"]\n{extra}\n",
        s(&guest(source))
    )
}

fn debug_get(a: std::net::SocketAddr, path: &str) -> Response {
    request(a, "GET", path, &[("x-wedge-debug", "dbg-0123456789")], b"").unwrap()
}

/// The `cpu=NNNus` of an `x-wedge-stats` header.
fn cpu_of(r: &Response) -> Duration {
    let stats = r.header("x-wedge-stats").expect("x-wedge-stats");
    let us = stats
        .split(';')
        .find_map(|p| p.strip_prefix("cpu="))
        .and_then(|v| v.strip_suffix("us"))
        .unwrap_or_else(|| panic!("no cpu in {stats}"));
    Duration::from_micros(us.parse().unwrap())
}

#[test]
fn a_cpu_budget_stops_a_spinning_guest_but_not_a_sleeping_one() {
    let sb = Sandbox::new();
    let signal = sb.path().join("signal");
    std::fs::create_dir_all(&signal).unwrap();
    let toml = [
        "[defaults]\ntimeout = \"10s\"\ncpu_time = \"20ms\"\n".to_string(),
        function("spin", "wat/spin.wat", ""),
        function(
            "slow",
            "c/wagi/slow.wasm",
            &format!(
                "files = [{{ host = \"{}\", guest = \"/signal\" }}]",
                s(&signal)
            ),
        ),
        function("hello", "wat/wagi/hello.wat", "cpu_time = \"5s\""),
        format!(
            "[[function]]\nname = \"component\"\nsource = \"{}\"\nroutes = [\"/c/...\"]\n\
             cpu_time = \"5s\"\n",
            s(&example("c-http/demo.component.wasm"))
        ),
    ]
    .concat();
    let srv = Server::start(
        &sb.cache_dir(),
        &["-f", &sb.manifest(&toml), "--debug-token", "dbg-0123456789"],
    );
    let a = srv.addr;

    // Sleeping 200 ms of wall time costs next to no CPU: it succeeds.
    let r = debug_get(a, "/slow?nap&200");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "done nap\n");
    assert!(cpu_of(&r) < Duration::from_millis(20), "{:?}", cpu_of(&r));

    // Spinning is stopped by the budget, long before the 10 s timeout.
    let r = debug_get(a, "/spin");
    assert_eq!(r.status, 503, "{}", r.text());
    let text = r.text();
    assert!(text.contains("CPU-time budget of 20 ms"), "{text}");
    let id = r.header("x-request-id").unwrap().to_string();
    let cpu = cpu_of(&r);
    assert!(
        cpu >= Duration::from_millis(20) && cpu < Duration::from_millis(60),
        "stopped at {cpu:?} of CPU"
    );
    assert!(r.header("retry-after").is_none());
    srv.wait_for_log(&format!(
        "[{id}] spin: 503 guest used up its CPU-time budget"
    ));
    srv.wait_for_log(" GET /spin 503 ");
    let logs = srv.logs();
    let line = logs
        .lines()
        .find(|l| l.contains(&format!("[{id}] spin@")) && l.contains(" GET /spin 503 "))
        .unwrap();
    assert!(
        line.contains(" cpu=") && line.ends_with(" cpu-time"),
        "{line}"
    );

    // A budgeted function that stays within it reports what it used, WAGI
    // module and wasi:http component alike.
    for path in ["/hello", "/c/hello"] {
        let r = debug_get(a, path);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(cpu_of(&r) > Duration::ZERO, "{path}");
    }
}
