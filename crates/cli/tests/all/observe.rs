//! Observability: `/metrics` on the admin listener after known traffic,
//! JSON access lines, and the log level changed at runtime.

use crate::client::{ADMIN_AUTH, Server, get, read_request, request};
use crate::support::{Sandbox, example, guest, s};

fn app(sb: &Sandbox) -> String {
    let toml = format!(
        "[[function]]\nname = \"hello\"\nsource = \"{}\"\nroutes = [\"/hello\"]\nversion = \"v7\"\n\n\
         [[function]]\nname = \"trap\"\nsource = \"{}\"\nroutes = [\"/trap/...\"]\n",
        s(&guest("wat/wagi/hello.wat")),
        s(&guest("wat/divzero.wat"))
    );
    sb.manifest(&toml)
}

#[track_caller]
fn has(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing `{line}` in:\n{text}"
    );
}

#[test]
fn metrics_count_known_traffic() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &["-f", &app(&sb)]);
    for _ in 0..3 {
        assert_eq!(get(srv.addr, "/hello").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(srv.addr, "/trap/x").status, 500);
    }
    assert_eq!(get(srv.addr, "/nowhere").status, 404);

    let m = get(srv.admin, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let t = m.text();
    has(&t, "# TYPE http_server_request_duration_seconds histogram");
    has(
        &t,
        "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"200\",http_route=\"/hello\",function=\"hello\",version=\"v7\"} 3",
    );
    // An unnamed version is named by its module's digest (12 hex digits).
    let trap = t
        .lines()
        .find(|l| {
            l.starts_with(
                "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"500\",http_route=\"/trap/...\",function=\"trap\",version=\"",
            )
        })
        .expect("the trap series");
    let digest = trap.split("version=\"").nth(1).unwrap();
    assert!(digest.ends_with("\"} 2"), "{trap}");
    let digest = digest.trim_end_matches("\"} 2");
    assert!(
        digest.len() == 12 && digest.bytes().all(|b| b.is_ascii_hexdigit()),
        "{trap}"
    );
    has(
        &t,
        "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_response_status_code=\"404\",http_route=\"\",function=\"\",version=\"\"} 1",
    );
    has(&t, "faas_invocations_total{function=\"hello\"} 3");
    has(&t, "faas_invocations_total{function=\"trap\"} 2");
    has(&t, "faas_errors_total{function=\"trap\",reason=\"trap\"} 2");
    has(&t, "faas_coldstarts_total{function=\"hello\"} 1");
    has(&t, "wasm_memory_peak_bytes_count{function=\"hello\"} 3");
    has(&t, "wasm_memory_peak_bytes_sum{function=\"hello\"} 196608");
    has(&t, "http_server_active_requests{function=\"hello\"} 0");
    has(
        &t,
        "wedge_aot_cache_loads_total{function=\"hello\",result=\"miss\"} 1",
    );
    has(&t, "wedge_build_info{version=\"0.1.0\"} 1");
    for name in [
        "wasm_instantiate_duration_seconds_count{function=\"hello\"} 3",
        "wasmtime_pool_memories ",
        "wasmtime_pool_unused_warm_memories ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "process_start_time_seconds ",
        "faas_init_duration_seconds_count{function=\"hello\"} 1",
        "wasm_module_size_bytes{function=\"hello\"} ",
    ] {
        assert!(t.contains(name), "missing {name}");
    }

    let om = request(
        srv.admin,
        "GET",
        "/metrics",
        &[("Accept", "application/openmetrics-text; version=1.0.0")],
        b"",
    )
    .unwrap();
    assert!(
        om.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(om.text().contains("# TYPE faas_invocations counter\n"));
    assert!(om.text().ends_with("# EOF\n"));
}

#[test]
fn json_access_lines_and_runtime_log_level() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &["-f", &app(&sb), "--log-format", "json"]);
    let r = request(
        srv.addr,
        "GET",
        "/hello",
        &[("x-request-id", "json-line-1")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    srv.wait_for_log("\"request_id\":\"json-line-1\"");
    let line = srv
        .logs()
        .lines()
        .find(|l| l.contains("\"request_id\":\"json-line-1\""))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON access line");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["route"], "/hello");
    assert_eq!(v["function"], "hello");
    assert_eq!(v["status"], 200);
    assert_eq!(v["outcome"], "ok");
    assert_eq!(v["peak_memory_bytes"], 65536);
    assert!(v["duration_us"].as_u64().is_some() && v["guest_us"].as_u64().is_some());
    assert!(v["time"].as_f64().is_some());

    assert_eq!(srv.admin_request("GET", "/log-level", b"").text(), "info\n");
    let r = srv.admin_request("PUT", "/log-level", b"warn");
    assert_eq!((r.status, r.text().as_str()), (200, "warn\n"));
    assert_eq!(srv.admin_request("GET", "/log-level", b"").text(), "warn\n");
    let r = srv.admin_request("PUT", "/log-level", b"chatty");
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("allowed: error, warn, info, debug"),
        "{}",
        r.text()
    );
}

#[test]
fn stats_header_only_with_the_debug_token() {
    let sb = Sandbox::new();
    let toml = format!(
        "[[function]]\nname = \"burn\"\nsource = \"{}\"\nroutes = [\"/\"]\nfuel = 1_000_000_000\n",
        s(&guest("c/wagi/env.wasm"))
    );
    let path = sb.manifest(&toml);
    let srv = Server::start(&sb.cache_dir(), &["-f", &path, "--debug-token", "s3cret"]);
    assert!(
        get(srv.addr, "/").header("x-wedge-stats").is_none(),
        "off by default"
    );
    let wrong = request(srv.addr, "GET", "/", &[("x-wedge-debug", "guess")], b"").unwrap();
    assert!(wrong.header("x-wedge-stats").is_none());
    let r = request(srv.addr, "GET", "/", &[("x-wedge-debug", "s3cret")], b"").unwrap();
    let stats = r
        .header("x-wedge-stats")
        .expect("stats with the token")
        .to_string();
    let fields: Vec<&str> = stats.split(';').collect();
    assert!(
        fields[0].starts_with("instantiate=") && fields[0].ends_with("us"),
        "{stats}"
    );
    assert!(
        fields[1].starts_with("exec=") && fields[1].ends_with("us"),
        "{stats}"
    );
    assert!(
        fields[2].starts_with("mem=") && fields[2][4..].parse::<u64>().unwrap() >= 65536,
        "{stats}"
    );
    let fuel: u64 = fields[3].strip_prefix("fuel=").unwrap().parse().unwrap();
    assert!(fuel > 1000, "{stats}");
    let metrics = get(srv.admin, "/metrics").text();
    assert!(
        metrics.contains("wasm_fuel_consumed_count{function=\"burn\"} 3"),
        "{metrics}"
    );
}

#[test]
fn memory_rising_request_after_request_raises_an_anomaly() {
    let sb = Sandbox::new();
    let toml = format!(
        "[[function]]\nname = \"leaky\"\nsource = \"{}\"\nroutes = [\"/\"]\nmax_memory = \"96MiB\"\n",
        s(&guest("c/wagi/grow.wasm"))
    );
    let path = sb.manifest(&toml);
    // A webhook receiver: the first POST comes back whole from `hook`.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hook", listener.local_addr().unwrap());
    let hook = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        read_request(
            &mut c,
            b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
        )
    });
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            "-f",
            &path,
            "--anomaly-window",
            "200ms",
            "--anomaly-webhook",
            &hook_url,
        ],
    );
    let series = "wedge_anomaly{function=\"leaky\",kind=\"memory\"} 1";
    let mut kib = 256;
    let mut found = false;
    // Each request holds 128 KiB more than the last, so every window's mean
    // peak memory is above the one before, until the detector says so.
    while kib < 80 * 1024 {
        let r = get(srv.addr, &format!("/?{kib}"));
        assert_eq!(r.status, 200, "{}", r.text());
        if get(srv.admin, "/metrics").text().contains(series) {
            found = true;
            break;
        }
        kib += 128;
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(
        found,
        "no memory anomaly after growing to {kib} KiB:\n{}",
        srv.logs()
    );
    srv.wait_for_log("leaky: anomaly memory began: mean peak memory rose from");
    let (head, body) = hook.join().unwrap();
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    let alert: serde_json::Value = serde_json::from_slice(&body).expect("JSON alert");
    assert_eq!(alert["function"], "leaky");
    assert_eq!(alert["kind"], "memory");
    assert_eq!(alert["active"], true);
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .contains("mean peak memory rose")
    );
}

#[test]
fn profiles_a_function_from_live_traffic() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &[s(&guest("wat/wagi/busy.wat"))]);
    assert_eq!(get(srv.addr, "/").text(), "busy\n");
    let admin = srv.admin;
    let take = |query: &'static str| {
        std::thread::spawn(move || {
            request(admin, "POST", query, &[("Authorization", ADMIN_AUTH)], b"").unwrap()
        })
    };
    // Traffic runs until each profile comes back.
    let folded = take("/profile?function=busy&seconds=1&format=folded");
    while !folded.is_finished() {
        assert_eq!(get(srv.addr, "/").status, 200);
    }
    let folded = folded.join().unwrap();
    assert_eq!(folded.status, 200, "{}", folded.text());
    let text = folded.text();
    let line = text
        .lines()
        .find(|l| l.starts_with("start;handle;work "))
        .unwrap_or_else(|| panic!("no samples inside `work`:\n{text}"));
    assert!(line.rsplit(' ').next().unwrap().parse::<u64>().unwrap() > 0);

    let json = take("/profile?function=busy&seconds=0.5");
    while !json.is_finished() {
        assert_eq!(get(srv.addr, "/").status, 200);
    }
    let json = json.join().unwrap();
    assert_eq!(json.header("content-type"), Some("application/json"));
    let v: serde_json::Value = serde_json::from_slice(&json.body).expect("Firefox profile JSON");
    assert!(
        v["meta"].is_object() && v["threads"].is_array(),
        "{}",
        json.text()
    );
    assert!(
        json.header("x-wedge-samples")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );

    let r = request(
        admin,
        "POST",
        "/profile?function=nope",
        &[("Authorization", ADMIN_AUTH)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    let r = request(
        admin,
        "POST",
        "/profile?function=busy&seconds=999",
        &[("Authorization", ADMIN_AUTH)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 400);
}

#[test]
fn profiles_a_wasi_http_component_from_live_traffic() {
    let sb = Sandbox::new();
    let srv = Server::start(
        &sb.cache_dir(),
        &[s(&example("c-http/demo.component.wasm"))],
    );
    assert_eq!(get(srv.addr, "/burn?1").status, 200);
    let admin = srv.admin;
    let profile = std::thread::spawn(move || {
        request(
            admin,
            "POST",
            "/profile?function=demo.component&seconds=1&format=folded",
            &[("Authorization", ADMIN_AUTH)],
            b"",
        )
        .unwrap()
    });
    // Requests that each spend a few milliseconds in `burn` until the profile is back.
    while !profile.is_finished() {
        assert_eq!(get(srv.addr, "/burn?3").status, 200);
    }
    let folded = profile.join().unwrap();
    assert_eq!(folded.status, 200, "{}", folded.text());
    let text = folded.text();
    let inside: u64 = text
        .lines()
        .filter(|l| {
            l.rsplit_once(' ')
                .is_some_and(|(stack, _)| stack.ends_with(";burn"))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(inside > 0, "no samples inside `burn`:\n{text}");
}

#[test]
fn component_requests_report_their_peak_memory() {
    let sb = Sandbox::new();
    let component = example("c-http/demo.component.wasm");
    let srv = Server::start(
        &sb.cache_dir(),
        &[s(&component), "--log-format", "json", "--debug-token", "t"],
    );
    let r = request(
        srv.addr,
        "GET",
        "/hello",
        &[("x-request-id", "mem-1"), ("x-wedge-debug", "t")],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let stats = r
        .header("x-wedge-stats")
        .expect("stats with the token")
        .to_string();
    let mem = stats
        .split(';')
        .find_map(|f| f.strip_prefix("mem="))
        .unwrap_or_else(|| panic!("no mem= in {stats}"));
    // The C component starts with two 64 KiB pages at least.
    assert!(mem.parse::<u64>().unwrap() >= 131072, "{stats}");
    srv.wait_for_log("\"request_id\":\"mem-1\"");
    let line = srv
        .logs()
        .lines()
        .find(|l| l.contains("\"request_id\":\"mem-1\"") && l.contains("\"status\""))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON access line");
    assert_eq!(v["peak_memory_bytes"].as_u64(), Some(mem.parse().unwrap()));
}
