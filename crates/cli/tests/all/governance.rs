//! Governance on real sockets: CPU-time budgets (the guest's own on-CPU
//! time, not the wall clock), rate limits and circuit breakers.

use crate::client::{Response, Server, read_request, request};
use crate::support::{Sandbox, example, guest, s};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// One keep-alive HTTP/1.1 connection, for load without a port per request.
struct KeepAlive {
    stream: std::io::BufReader<std::net::TcpStream>,
}

impl KeepAlive {
    fn connect(addr: std::net::SocketAddr) -> KeepAlive {
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_nodelay(true).unwrap();
        KeepAlive {
            stream: std::io::BufReader::new(s),
        }
    }

    /// Sends a GET and reads the response: its status and headers.
    fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>) {
        use std::io::{BufRead, Read, Write};
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: wedge\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.get_mut().write_all(head.as_bytes()).unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).unwrap();
        let status: u16 = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut fields = Vec::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            fields.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let len: usize = fields
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).unwrap();
        (status, fields)
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Sends requests back to back for `run`; counts those let through (200).
fn hammer(
    addr: std::net::SocketAddr,
    path: &'static str,
    key: &'static str,
    run: Duration,
) -> std::thread::JoinHandle<(u64, Duration)> {
    std::thread::spawn(move || {
        let mut c = KeepAlive::connect(addr);
        let start = std::time::Instant::now();
        let mut admitted = 0;
        while start.elapsed() < run {
            let (status, _) = c.get(path, &[("x-api-key", key)]);
            assert!(status == 200 || status == 429, "{status}");
            admitted += u64::from(status == 200);
        }
        (admitted, start.elapsed())
    })
}

/// The value of the series `name` (labels included) in `/metrics`.
fn metric(srv: &Server, name: &str) -> f64 {
    let text = srv.admin_request("GET", "/metrics", b"").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn rate_limits_admit_the_rate_per_key_and_node_wide() {
    let sb = Sandbox::new();
    let keyed = Server::start(
        &sb.cache_dir(),
        &[
            "-f",
            &sb.manifest(&function(
                "keyed",
                "wat/wagi/hello.wat",
                "[[function.rate_limit]]\nrate = \"100/s\"\nburst = 20\nkey = \"header:x-api-key\"",
            )),
        ],
    );
    let node_dir = Sandbox::new();
    let node = Server::start(
        &node_dir.cache_dir(),
        &[
            "-f",
            &node_dir.manifest(&format!(
                "[server]\nrate_limit = {{ rate = \"100/s\", burst = 20 }}\n{}{}",
                function("one", "wat/wagi/hello.wat", ""),
                function("two", "wat/wagi/hello.wat", ""),
            )),
        ],
    );

    // The first request over a key's burst: 429 with the IETF fields.
    let mut c = KeepAlive::connect(keyed.addr);
    let mut first_429 = None;
    let mut probe_admitted = 0;
    for _ in 0..100 {
        let (status, fields) = c.get("/keyed", &[("x-api-key", "probe")]);
        if status == 429 {
            first_429 = Some(fields);
            break;
        }
        probe_admitted += 1;
        assert_eq!(
            field(&fields, "ratelimit-policy"),
            Some("\"key\";q=100;w=1")
        );
    }
    let fields = first_429.expect("the burst runs out");
    assert_eq!(field(&fields, "retry-after"), Some("1"));
    assert_eq!(
        field(&fields, "ratelimit-policy"),
        Some("\"key\";q=100;w=1")
    );
    assert_eq!(field(&fields, "ratelimit"), Some("\"key\";r=0;t=1"));

    let run = Duration::from_secs(10);
    let streams = [
        hammer(keyed.addr, "/keyed", "alpha", run),
        hammer(keyed.addr, "/keyed", "beta", run),
        hammer(node.addr, "/one", "-", run),
        hammer(node.addr, "/two", "-", run),
    ];
    let results: Vec<(u64, Duration)> = streams.into_iter().map(|h| h.join().unwrap()).collect();
    let expect = |t: Duration| 20.0 + 100.0 * t.as_secs_f64();
    eprintln!("admitted (count, seconds) per stream: {results:?}");
    // Per key: each key has its own 100/s.
    for (admitted, t) in &results[..2] {
        let want = expect(*t);
        let got = *admitted as f64;
        assert!(
            (got - want).abs() <= want * 0.05,
            "a key got {got}, expected {want:.0}"
        );
    }
    // Node-wide: both functions together share one 100/s.
    let (t, got) = (
        results[2].1.max(results[3].1),
        (results[2].0 + results[3].0) as f64,
    );
    let want = expect(t);
    assert!(
        (got - want).abs() <= want * 0.05,
        "the node let {got} through, expected {want:.0}"
    );

    let allowed = metric(
        &keyed,
        "wedge_rate_limit_total{function=\"keyed\",policy=\"key\",decision=\"allowed\"}",
    );
    assert!(probe_admitted >= 20, "{probe_admitted}");
    assert_eq!(allowed as u64, results[0].0 + results[1].0 + probe_admitted);
    let node_allowed = metric(
        &node,
        "wedge_rate_limit_total{function=\"\",policy=\"node\",decision=\"allowed\"}",
    );
    assert_eq!(node_allowed as u64, results[2].0 + results[3].0);
}

#[test]
fn a_client_rotating_keys_cannot_grow_the_key_table() {
    let sb = Sandbox::new();
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            "-f",
            &sb.manifest(&function(
                "keyed",
                "wat/wagi/hello.wat",
                "[[function.rate_limit]]\nrate = \"1/h\"\nburst = 1\nkey = \"header:x-api-key\"\n\
                 max_keys = 500",
            )),
        ],
    );
    let mut c = KeepAlive::connect(srv.addr);
    let mut limited_late = 0;
    for i in 0..3000 {
        let key = format!("k{i}");
        let (status, _) = c.get("/keyed", &[("x-api-key", &key)]);
        if i >= 2000 {
            limited_late += u32::from(status == 429);
        }
    }
    let keys = metric(&srv, "wedge_rate_limit_keys{function=\"keyed\"}");
    assert!((500.0..=564.0).contains(&keys), "{keys} keys held");
    // Once the table is full, new keys share the overflow buckets (one
    // token an hour each): nearly all of them are turned away.
    assert!(
        limited_late >= 900,
        "{limited_late} of the last 1000 limited"
    );
}

/// An upstream that holds every connection without answering until told
/// to answer `200 ok`; it counts the connections it accepts.
struct Upstream {
    addr: std::net::SocketAddr,
    answer: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answer = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (a, n) = (answer.clone(), accepted.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                n.fetch_add(1, Ordering::SeqCst);
                if a.load(Ordering::SeqCst) {
                    read_request(
                        &mut c,
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    );
                } else {
                    held.push(c);
                }
            }
        });
        Upstream {
            addr,
            answer,
            accepted,
        }
    }
}

#[test]
fn an_outbound_breaker_fails_fast_while_the_upstream_hangs_and_recovers() {
    let up = Upstream::start();
    let sb = Sandbox::new();
    let toml = format!(
        "[[function]]\nname = \"demo\"\nsource = \"{}\"\nroutes = [\"/c/...\"]\n\
         allowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n\
         [function.outbound_breaker]\nfailures = 3\ntimeout = \"300ms\"\nopen_for = \"500ms\"\n",
        s(&example("c-http/demo.component.wasm"))
    );
    let srv = Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]);
    let path = format!("/c/outbound?{}/x", up.addr);
    let timed = |path: &str| {
        let t = std::time::Instant::now();
        let r = crate::client::get(srv.addr, path);
        (r, t.elapsed())
    };
    // Three calls wait out the 300 ms timeout; then the circuit opens.
    let mut slow = Vec::new();
    for _ in 0..3 {
        let (r, took) = timed(&path);
        assert!(r.text().contains("outbound request failed"), "{}", r.text());
        slow.push(took);
    }
    let target = format!("target=\"{}\"", up.addr);
    let state = format!("wedge_circuit_state{{function=\"demo\",{target}}}");
    assert_eq!(metric(&srv, &state), 1.0, "open after 3 failures");
    let before = up.accepted.load(Ordering::SeqCst);
    let (r, fast) = timed(&path);
    assert!(r.text().contains("outbound request failed"), "{}", r.text());
    assert_eq!(
        up.accepted.load(Ordering::SeqCst),
        before,
        "an open circuit makes no connection"
    );
    eprintln!("outbound call latency: {slow:?} while the upstream hangs, {fast:?} once open");
    assert!(fast < slow[0] / 3, "{fast:?} vs {slow:?}");
    srv.wait_for_log(&format!("circuit {} open", up.addr));

    // The upstream recovers: after open_for, one probe goes through and
    // closes the circuit.
    up.answer.store(true, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = crate::client::get(srv.addr, &path);
        if r.status == 200 {
            assert_eq!(r.text(), "ok\n");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never recovered");
    }
    assert_eq!(metric(&srv, &state), 0.0, "closed again");
    let to_closed =
        format!("wedge_circuit_transitions_total{{function=\"demo\",{target},to=\"closed\"}}");
    assert_eq!(metric(&srv, &to_closed), 1.0);
}

#[test]
fn an_inbound_breaker_sheds_a_failing_function_and_lets_it_recover() {
    let sb = Sandbox::new();
    let data = sb.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let toml = function(
        "files",
        "c/files.wasm",
        &format!(
            "files = [{{ host = \"{}\", guest = \"/data\" }}]\n\
             [function.circuit_breaker]\nfailures = 3\nopen_for = \"300ms\"\nprobes = 2",
            s(&data)
        ),
    );
    let srv = Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]);
    let a = srv.addr;
    // The page is missing: the guest exits 1 without a response.
    for _ in 0..3 {
        assert_eq!(crate::client::get(a, "/files?read+/data/page").status, 500);
    }
    let r = crate::client::get(a, "/files?read+/data/page");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("circuit breaker is open"), "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    srv.wait_for_log("circuit inbound open: 3 failures in a row");
    let state = "wedge_circuit_state{function=\"files\",target=\"inbound\"}";
    assert_eq!(metric(&srv, state), 1.0);

    // It is fixed: probes trickle through after open_for, two good ones
    // close the circuit.
    std::fs::write(data.join("page"), "Content-Type: text/plain\n\nback\n").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut served = 0;
    while served < 3 {
        let r = crate::client::get(a, "/files?read+/data/page");
        match r.status {
            200 => served += 1,
            503 => assert!(std::time::Instant::now() < deadline, "never recovered"),
            other => panic!("{other}: {}", r.text()),
        }
    }
    assert_eq!(metric(&srv, state), 0.0);
    srv.wait_for_log("circuit inbound closed: probes succeeded");
}

#[test]
fn a_bare_module_is_limited_from_the_command_line() {
    let sb = Sandbox::new();
    let hello = guest("wat/wagi/hello.wat");
    let srv = Server::start(
        &sb.cache_dir(),
        &[s(&hello), "--rate-limit", "1/h", "--rate-burst", "2"],
    );
    let mut c = KeepAlive::connect(srv.addr);
    for left in ["1", "0"] {
        let (status, fields) = c.get("/anything", &[]);
        assert_eq!(status, 200);
        assert_eq!(
            field(&fields, "ratelimit-policy"),
            Some("\"node\";q=1;w=3600")
        );
        let state = field(&fields, "ratelimit").unwrap();
        assert!(
            state.starts_with(&format!("\"node\";r={left};t=")),
            "{state}"
        );
    }
    let (status, fields) = c.get("/anything", &[]);
    assert_eq!(status, 429);
    let wait: u64 = field(&fields, "retry-after").unwrap().parse().unwrap();
    assert!(
        (3500..=3600).contains(&wait),
        "a token in an hour, not {wait} s"
    );
}
