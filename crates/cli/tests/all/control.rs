//! The control plane's API on real processes: deploy, traffic, promote,
//! roll back and hand back; immutable versions; bad modules refused without
//! harm; state that survives `kill -9` at any moment.

use crate::client::{ADMIN_AUTH, Server, get, request};
use crate::reload::versioned;
use crate::support::Sandbox;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn app(sb: &Sandbox) -> String {
    std::fs::write(sb.path().join("v1.wasm"), versioned(1)).unwrap();
    sb.manifest(
        "[[function]]\nname = \"api\"\nsource = \"v1.wasm\"\nroutes = [\"/api\"]\nversion = \"v1\"\n",
    )
}

fn start(sb: &Sandbox, manifest: &str, state: &Path) -> Server {
    Server::start(
        &sb.cache_dir(),
        &["-f", manifest, "--state", state.to_str().unwrap()],
    )
}

fn api(srv: &Server, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let r = request(
        srv.admin,
        method,
        path,
        &[("Authorization", ADMIN_AUTH)],
        body,
    )
    .expect("admin request");
    let v = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {}", r.text()));
    (r.status, v)
}

fn body(srv: &Server, version: Option<&str>) -> String {
    let headers: Vec<(&str, &str)> = version
        .map(|v| ("x-wedge-version", v))
        .into_iter()
        .collect();
    let r = request(srv.addr, "GET", "/api", &headers, b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
}

fn weights(v: &Value) -> Vec<(String, f64)> {
    v["traffic"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["version"].as_str().unwrap().to_string(),
                t["weight"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn deploy_canary_traffic_promote_rollback_and_hand_back() {
    let sb = Sandbox::new();
    let state = sb.path().join("state");
    let srv = start(&sb, &app(&sb), &state);

    let (s, v) = api(&srv, "GET", "/v1/functions", b"");
    assert_eq!(s, 200);
    assert_eq!(v["functions"][0]["managed_by"], "manifest");
    assert_eq!(v["functions"][0]["stable"], "v1");
    let r = request(srv.admin, "GET", "/v1/functions", &[], b"").unwrap();
    assert_eq!(r.status, 401, "the API needs the admin token");

    let (s, v) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v2&weight=10",
        &versioned(2),
    );
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["managed_by"], "api");
    assert_eq!(weights(&v), [("v2".into(), 10.0), ("v1".into(), 90.0)]);
    assert_eq!(body(&srv, Some("v2")), "version 2\n");
    assert_eq!(body(&srv, Some("v1")), "version 1\n");

    // Versions are immutable; a module that does not load changes nothing.
    let (s, v) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v2",
        &versioned(3),
    );
    assert_eq!(s, 409, "{v}");
    let (s, v) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=bad&weight=5",
        b"not wasm",
    );
    assert_eq!(s, 422, "{v}");
    assert!(v["error"].as_str().unwrap().contains("did not load"), "{v}");
    let (_, v) = api(&srv, "GET", "/v1/functions/api", b"");
    assert_eq!(weights(&v), [("v2".into(), 10.0), ("v1".into(), 90.0)]);
    assert!(
        v["stored_versions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["version"] != "bad"),
        "{v}"
    );

    let (s, v) = api(
        &srv,
        "PUT",
        "/v1/functions/api/traffic",
        br#"{"v1": 30, "v2": 70}"#,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stable"], "v2");
    let (s, _) = api(&srv, "PUT", "/v1/functions/api/traffic", br#"{"v1": 30}"#);
    assert_eq!(s, 400);

    let (s, v) = api(&srv, "POST", "/v1/functions/api/promote?version=v1", b"");
    assert_eq!(s, 200, "{v}");
    assert_eq!(weights(&v), [("v1".into(), 100.0)]);
    assert_eq!(v["previous_stable"], "v2");
    for _ in 0..20 {
        assert_eq!(body(&srv, None), "version 1\n");
    }
    let (s, v) = api(&srv, "POST", "/v1/functions/api/rollback", b"");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["stable"], "v2");
    for _ in 0..20 {
        assert_eq!(body(&srv, None), "version 2\n");
    }

    let (s, v) = api(&srv, "DELETE", "/v1/functions/api/traffic", b"");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["managed_by"], "manifest");
    assert_eq!(body(&srv, None), "version 1\n");
    // Versions that left the traffic left /metrics too: series stay bounded.
    let m = get(srv.admin, "/metrics").text();
    let api_series: Vec<&str> = m
        .lines()
        .filter(|l| {
            l.starts_with("http_server_request_duration_seconds_count")
                && l.contains("function=\"api\"")
        })
        .collect();
    assert!(!api_series.is_empty());
    assert!(
        api_series.iter().all(|l| l.contains("version=\"v1\"")),
        "{api_series:?}"
    );
    let (s, _) = api(&srv, "GET", "/v1/functions/nope", b"");
    assert_eq!(s, 404);

    // The API describes itself, and says which methods a path takes.
    let (s, doc) = api(&srv, "GET", "/v1/openapi.json", b"");
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/v1/functions/{name}/rollout"]["post"].is_object());
    let r = request(
        srv.admin,
        "DELETE",
        "/v1/functions/api",
        &[("Authorization", ADMIN_AUTH)],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("GET")));
}

/// A tiny deterministic generator for kill moments.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

fn kills() -> u32 {
    std::env::var("WEDGE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

#[test]
fn state_after_kill_9_is_the_last_committed_one() {
    let sb = Sandbox::new();
    let state: PathBuf = sb.path().join("state");
    let manifest = app(&sb);
    {
        let srv = start(&sb, &manifest, &state);
        let (s, v) = api(
            &srv,
            "POST",
            "/v1/functions/api/versions?version=v2",
            &versioned(2),
        );
        assert_eq!(s, 201, "{v}");
    }
    let mut seed = 0x5eed_u64;
    let mut confirmed = "v1".to_string();
    let mut in_flight: Option<String> = None;
    for round in 0..kills() {
        let mut srv = start(&sb, &manifest, &state);
        // Whatever committed last serves, and the API agrees with the data plane.
        let (_, v) = api(&srv, "GET", "/v1/functions/api", b"");
        let stable = v["stable"].as_str().unwrap().to_string();
        let expected_body = format!("version {}\n", &stable[1..]);
        assert_eq!(body(&srv, None), expected_body, "round {round}: {v}");
        assert!(
            stable == confirmed || in_flight.as_deref() == Some(stable.as_str()),
            "round {round}: {stable} serves; {confirmed} was confirmed, {in_flight:?} in flight"
        );
        confirmed = stable;
        // Promote back and forth, and kill -9 at a pseudo-random moment.
        let admin = srv.admin;
        let stop_after = next(&mut seed) % 6;
        let changer = std::thread::spawn(move || {
            let mut last = None;
            let mut pending = None;
            for i in 0..stop_after + 1 {
                let target = if i % 2 == 0 { "v2" } else { "v1" };
                let r = request(
                    admin,
                    "POST",
                    &format!("/v1/functions/api/promote?version={target}"),
                    &[("Authorization", ADMIN_AUTH)],
                    b"",
                );
                match r {
                    Ok(r) if r.status == 200 => last = Some(target.to_string()),
                    _ => {
                        pending = Some(target.to_string());
                        break;
                    }
                }
            }
            (last, pending)
        });
        std::thread::sleep(std::time::Duration::from_millis(next(&mut seed) % 40));
        let _ = srv.child.kill();
        let _ = srv.child.wait();
        let (last, pending) = changer.join().unwrap();
        if let Some(last) = last {
            confirmed = last;
        }
        in_flight = pending;
        get_state_ok(&state);
        eprintln!(
            "round {round}: killed; last confirmed stable {confirmed}, in flight {in_flight:?}"
        );
    }
    let srv = start(&sb, &manifest, &state);
    assert_eq!(get(srv.addr, "/api").status, 200);
}

/// The state directory holds no stray temporary module files in use.
fn get_state_ok(state: &Path) {
    for e in std::fs::read_dir(state.join("modules")).unwrap() {
        let name = e.unwrap().file_name();
        let name = name.to_string_lossy();
        assert!(name.ends_with(".wasm") || name.ends_with(".tmp"), "{name}");
    }
}

/// Runs `wedge ARGS` as a client of `srv`'s control API, with its token.
fn cli<'a>(sb: &'a Sandbox, srv: &Server) -> impl Fn(&[&str]) -> crate::support::Run + 'a {
    let admin = format!("http://{}", srv.admin);
    let token = sb.path().join("token");
    std::fs::write(&token, crate::client::ADMIN_TOKEN).unwrap();
    move |args| {
        let mut all = args.to_vec();
        all.extend([
            "--admin",
            &admin,
            "--admin-token-file",
            token.to_str().unwrap(),
        ]);
        sb.run(&all)
    }
}

#[test]
fn the_cli_deploys_splits_promotes_and_rolls_back() {
    let sb = Sandbox::new();
    let state = sb.path().join("state");
    let srv = start(&sb, &app(&sb), &state);
    let admin = format!("http://{}", srv.admin);
    let wedge = cli(&sb, &srv);
    let v2 = sb.path().join("v2.wasm");
    std::fs::write(&v2, versioned(2)).unwrap();

    let r = wedge(&[
        "deploy",
        "api",
        v2.to_str().unwrap(),
        "--version",
        "v2",
        "--weight",
        "10",
    ]);
    r.expect(0);
    assert!(
        r.stdout.contains("traffic    v2=10.0% v1=90.0%"),
        "{}",
        r.stdout
    );
    let r = wedge(&["ls"]);
    r.expect(0);
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with("api "))
        .expect("a row for api");
    assert!(
        row.contains(" api ") && row.contains("v2=10.0% v1=90.0%") && row.ends_with("/api"),
        "{row}"
    );
    wedge(&["traffic", "api", "v1=40", "v2=60"]).expect(0);
    assert_eq!(body(&srv, Some("v1")), "version 1\n");
    let r = wedge(&["promote", "api", "v1"]);
    r.expect(0);
    assert!(r.stdout.contains("rollback   to v2"), "{}", r.stdout);
    wedge(&["rollback", "api"]).expect(0);
    let r = wedge(&["status", "api", "--json"]);
    r.expect(0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["stable"], "v2");
    assert_eq!(body(&srv, None), "version 2\n");

    // Failures exit non-zero with the server's reason.
    let r = wedge(&["promote", "api", "nope"]);
    r.expect(1);
    assert!(
        r.stderr
            .contains("404: function `api` has no version `nope`"),
        "{}",
        r.stderr
    );
    let wrong = sb.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-admin-token-at-all").unwrap();
    let r = sb.run(&[
        "ls",
        "--admin",
        &admin,
        "--admin-token-file",
        wrong.to_str().unwrap(),
    ]);
    r.expect(1);
    assert!(r.stderr.contains("401"), "{}", r.stderr);
}

/// A WAGI module that answers 500 to about 20% of requests (a random byte
/// below 51), else `version 3`.
fn flaky() -> Vec<u8> {
    let bad = "Status: 500 Internal Server Error\nContent-Type: text/plain\n\nflaky\n";
    let good = "Content-Type: text/plain\n\nversion 3\n";
    wat::parse_str(format!(
        r#"(module
          (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "random_get" (func $r (param i32 i32) (result i32)))
          (memory (export "memory") 1)
          (data (i32.const 64) "{}")
          (data (i32.const 256) "{}")
          (func (export "_start")
            (drop (call $r (i32.const 512) (i32.const 1)))
            (if (i32.lt_u (i32.load8_u (i32.const 512)) (i32.const 51))
              (then (i32.store (i32.const 0) (i32.const 64)) (i32.store (i32.const 4) (i32.const {})))
              (else (i32.store (i32.const 0) (i32.const 256)) (i32.store (i32.const 4) (i32.const {}))))
            (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        bad.replace('\n', "\\n"),
        good.replace('\n', "\\n"),
        bad.len(),
        good.len()
    ))
    .unwrap()
}

/// Clients sending requests until stopped; statuses by serving version.
struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<(String, u16)>>>,
}

impl Load {
    fn start(addr: std::net::SocketAddr) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads = (0..3)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let r = request(addr, "GET", "/api", &[], b"").unwrap();
                        let v = r.header("x-wedge-version").unwrap_or("-").to_string();
                        seen.push((v, r.status));
                    }
                    seen
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn finish(self) -> Vec<(String, u16)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    }
}

/// Polls the rollout until its state is one of `states`.
fn rollout_until(srv: &Server, states: &[&str]) -> Value {
    let start = std::time::Instant::now();
    loop {
        let (s, v) = api(srv, "GET", "/v1/functions/api/rollout", b"");
        assert_eq!(s, 200, "{v}");
        if states.contains(&v["state"].as_str().unwrap()) {
            return v;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "stuck: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn decisions(v: &Value) -> Vec<String> {
    v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["decision"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_canary_failing_a_fifth_of_requests_is_rolled_back_and_stable_never_fails() {
    let sb = Sandbox::new();
    let srv = start(&sb, &app(&sb), &sb.path().join("state"));
    let (s, v) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v3",
        &flaky(),
    );
    assert_eq!(s, 201, "{v}");
    let load = Load::start(srv.addr);
    let plan = br#"{"version": "v3", "steps": [30, 60, 100], "interval": "1s",
                    "max_error_ratio": 0.05, "min_requests": 20}"#;
    let (s, v) = api(&srv, "POST", "/v1/functions/api/rollout", plan);
    assert_eq!(s, 201, "{v}");
    let v = rollout_until(&srv, &["rolled-back", "done", "frozen"]);
    let seen = load.finish();
    assert_eq!(v["state"], "rolled-back", "{v:#}");
    let d = decisions(&v);
    // start, then at most one interval without enough requests, then the rollback.
    assert!(d.len() <= 3 && d.last().unwrap() == "rollback", "{d:?}");
    let reason = v["history"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("error ratio"), "{reason}");
    let stable: Vec<u16> = seen
        .iter()
        .filter(|(v, _)| v == "v1")
        .map(|s| s.1)
        .collect();
    let canary_failed = seen.iter().filter(|(v, s)| v == "v3" && *s == 500).count();
    eprintln!(
        "rolled back after {d:?}: {} stable answers (all 200: {}), {canary_failed} canary 500s",
        stable.len(),
        stable.iter().all(|&s| s == 200)
    );
    assert!(
        stable.iter().all(|&s| s == 200),
        "the stable version failed"
    );
    assert!(canary_failed > 0);
    // The decision is stored first, then applied: wait for the traffic.
    let start = std::time::Instant::now();
    while weights(&api(&srv, "GET", "/v1/functions/api", b"").1) != [("v1".into(), 100.0)] {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(10),
            "the canary stayed in traffic"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let m = get(srv.admin, "/metrics").text();
    assert!(
        m.contains("wedge_rollout_decisions_total{function=\"api\",decision=\"rollback\"} 1"),
        "{m}"
    );
}

#[test]
fn a_healthy_canary_advances_step_by_step_to_stable() {
    let sb = Sandbox::new();
    let srv = start(&sb, &app(&sb), &sb.path().join("state"));
    let (s, v) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v2",
        &versioned(2),
    );
    assert_eq!(s, 201, "{v}");
    let load = Load::start(srv.addr);
    // Healthy means no errors here. The latency verdict compares the P99s
    // of a few dozen requests each, which a CI machine running the other
    // tests in parallel can push apart at random (seen: 4.3 ms against
    // 1.8 ms); the rollout's unit tests check that verdict.
    let plan = br#"{"version": "v2", "steps": [25, 50, 100], "interval": "500ms",
        "min_requests": 10, "max_latency_ratio": 1000}"#;
    let (s, v) = api(&srv, "POST", "/v1/functions/api/rollout", plan);
    assert_eq!(s, 201, "{v}");
    let v = rollout_until(&srv, &["rolled-back", "done", "frozen"]);
    let seen = load.finish();
    assert_eq!(v["state"], "done", "{v:#}");
    let d: Vec<String> = decisions(&v).into_iter().filter(|d| d != "wait").collect();
    assert_eq!(d, ["start", "advance", "advance", "promote"], "{v:#}");
    assert!(seen.iter().all(|(_, s)| *s == 200));
    let (_, f) = api(&srv, "GET", "/v1/functions/api", b"");
    assert_eq!(f["stable"], "v2");
    assert_eq!(f["previous_stable"], "v1");
}

#[test]
fn a_frozen_rollout_can_still_be_aborted_by_hand() {
    let sb = Sandbox::new();
    let srv = start(&sb, &app(&sb), &sb.path().join("state"));
    let (s, _) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v3",
        &flaky(),
    );
    assert_eq!(s, 201);
    let load = Load::start(srv.addr);
    let plan = br#"{"version": "v3", "steps": [50, 100], "interval": "500ms",
                    "min_requests": 20, "on_failure": "freeze"}"#;
    assert_eq!(api(&srv, "POST", "/v1/functions/api/rollout", plan).0, 201);
    let v = rollout_until(&srv, &["frozen", "rolled-back", "done"]);
    assert_eq!(v["state"], "frozen", "{v:#}");
    let (_, f) = api(&srv, "GET", "/v1/functions/api", b"");
    assert_eq!(
        weights(&f),
        [("v3".into(), 50.0), ("v1".into(), 50.0)],
        "frozen keeps the weights"
    );
    let (s, v) = api(&srv, "POST", "/v1/functions/api/rollout/abort", b"");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "aborted");
    load.finish();
    let (_, f) = api(&srv, "GET", "/v1/functions/api", b"");
    assert_eq!(weights(&f), [("v1".into(), 100.0)]);
    let (s, _) = api(&srv, "POST", "/v1/functions/api/rollout/resume", b"");
    assert_eq!(s, 409, "an aborted rollout does not resume");
}

#[test]
fn deploy_from_a_path_on_the_node_delete_and_the_rollout_cli() {
    let sb = Sandbox::new();
    let srv = start(&sb, &app(&sb), &sb.path().join("state"));
    let wedge = cli(&sb, &srv);
    let v2 = sb.path().join("v 2.wasm");
    std::fs::write(&v2, versioned(2)).unwrap();
    // The file is read on the node; nothing is uploaded.
    let r = wedge(&[
        "deploy",
        "api",
        v2.to_str().unwrap(),
        "--version",
        "v2",
        "--on-node",
    ]);
    r.expect(0);
    assert_eq!(body(&srv, Some("v2")), "version 2\n");
    let (s, v) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v9&path=relative.wasm",
        b"",
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v9&path=/nonexistent.wasm",
        b"",
    );
    assert_eq!(s, 400, "{v}");

    // A version in traffic cannot be deleted; one out of it can.
    let (s, v) = api(&srv, "DELETE", "/v1/functions/api/versions/v2", b"");
    assert_eq!(s, 409, "{v}");
    let v3 = sb.path().join("v3.wasm");
    std::fs::write(&v3, versioned(3)).unwrap();
    wedge(&["deploy", "api", v3.to_str().unwrap(), "--version", "v3"]).expect(0);
    wedge(&["traffic", "api", "v1=100"]).expect(0);
    let r = wedge(&["delete", "api", "v3"]);
    r.expect(0);
    assert!(!r.stdout.contains("v3 "), "{}", r.stdout);
    let (s, _) = api(&srv, "DELETE", "/v1/functions/api/versions/v3", b"");
    assert_eq!(s, 404);

    // Rollouts from the command line.
    let r = wedge(&[
        "rollout",
        "api",
        "v2",
        "--steps",
        "50,100",
        "--interval",
        "1h",
    ]);
    r.expect(0);
    assert!(r.stdout.contains("rollout    v2 running"), "{}", r.stdout);
    assert!(
        r.stdout.contains("step       1 of 2 at 50.0%"),
        "{}",
        r.stdout
    );
    wedge(&["rollout", "api", "--pause"]).expect(0);
    let r = wedge(&["status", "api"]);
    assert!(
        r.stdout.contains("rollout    v2 paused at 50.0%"),
        "{}",
        r.stdout
    );
    let r = wedge(&["rollout", "api", "--abort"]);
    r.expect(0);
    assert!(r.stdout.contains("abort"), "{}", r.stdout);
    let r = wedge(&["rollout", "api"]);
    r.expect(0);
    assert!(r.stdout.contains("rollout    v2 aborted"), "{}", r.stdout);
    assert_eq!(body(&srv, None), "version 1\n");
    // PromQL checks from the command line reach the stored plan.
    let r = wedge(&[
        "rollout",
        "api",
        "v2",
        "--interval",
        "1h",
        "--prometheus",
        "http://127.0.0.1:9",
        "--check",
        "errors<=0.5:sum(rate(faas_errors_total{function=\"{{function}}\"}[1m]))",
    ]);
    r.expect(0);
    let (_, v) = api(&srv, "GET", "/v1/functions/api/rollout", b"");
    assert_eq!(v["prometheus"], "http://127.0.0.1:9");
    assert_eq!(v["queries"][0]["name"], "errors");
    assert_eq!(v["queries"][0]["max"], 0.5);
    wedge(&["rollout", "api", "--abort"]).expect(0);
    let r = wedge(&["rollout", "api", "v2", "--check", "nonsense"]);
    r.expect(1);
    assert!(r.stderr.contains("NAME<=MAX:QUERY"), "{}", r.stderr);
}

#[test]
fn promql_checks_against_a_real_prometheus_gate_each_step() {
    let sb = Sandbox::new();
    let srv = start(&sb, &app(&sb), &sb.path().join("state"));
    let (_prom, prom) = crate::prometheus::start(sb.path(), None);
    let (s, _) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v2",
        &versioned(2),
    );
    assert_eq!(s, 201);
    let load = Load::start(srv.addr);
    // Only the queries gate here: the built-in latency verdict compares P99s
    // that a CI machine running other tests can push apart at random (seen:
    // 5.4 ms against 1.8 ms), so it is set out of reach.
    // A check that passes: the rollout runs to the end.
    let plan = format!(
        r#"{{"version": "v2", "steps": [50, 100], "interval": "500ms", "min_requests": 5,
            "max_latency_ratio": 1000, "prometheus": "http://{prom}",
            "queries": [{{"name": "budget", "query": "vector(1) * 0 + 1", "max": 5}}]}}"#
    );
    assert_eq!(
        api(&srv, "POST", "/v1/functions/api/rollout", plan.as_bytes()).0,
        201
    );
    let v = rollout_until(&srv, &["done", "rolled-back", "frozen"]);
    assert_eq!(v["state"], "done", "{v:#}");
    // One that fails: the next rollout is rolled back, naming the query.
    let (s, _) = api(
        &srv,
        "POST",
        "/v1/functions/api/versions?version=v3",
        &versioned(3),
    );
    assert_eq!(s, 201);
    let plan = format!(
        r#"{{"version": "v3", "steps": [50, 100], "interval": "500ms", "min_requests": 5,
            "max_latency_ratio": 1000, "prometheus": "http://{prom}",
            "queries": [{{"name": "errors-{{{{version}}}}", "query": "vector(7)", "max": 5}}]}}"#
    );
    assert_eq!(
        api(&srv, "POST", "/v1/functions/api/rollout", plan.as_bytes()).0,
        201
    );
    let v = rollout_until(&srv, &["done", "rolled-back", "frozen"]);
    let seen = load.finish();
    assert_eq!(v["state"], "rolled-back", "{v:#}");
    let reason = v["history"].as_array().unwrap().last().unwrap()["reason"]
        .as_str()
        .unwrap();
    assert!(
        reason.contains("query errors-{{version}} = 7 over its max 5"),
        "{reason}"
    );
    assert!(seen.iter().all(|(_, s)| *s == 200));
    let (s, v) = api(
        &srv,
        "POST",
        "/v1/functions/api/rollout",
        br#"{"version": "v3", "queries": [{"name": "q", "query": "up", "max": 1}]}"#,
    );
    assert_eq!(s, 400, "queries without a prometheus URL: {v}");
}

/// wedge-operator's traffic push (crates/operator/src/weights.rs) against a
/// real server: the split a `WasmFunction` asks for takes the function over
/// and serves; a wrong token is refused with the server's reason.
#[test]
fn the_operators_traffic_push_sets_the_weights_of_a_running_wedge() {
    let sb = Sandbox::new();
    std::fs::write(sb.path().join("v1.wasm"), versioned(1)).unwrap();
    std::fs::write(sb.path().join("v2.wasm"), versioned(2)).unwrap();
    let manifest = sb.manifest(
        "[[function]]\nname = \"api\"\nsource = \"v1.wasm\"\nroutes = [\"/api\"]\nversion = \"v1\"\n\
         [[function.canary]]\nversion = \"v2\"\nsource = \"v2.wasm\"\nweight = 10\n",
    );
    let srv = start(&sb, &manifest, &sb.path().join("state"));
    let wf: wedge_operator::crd::WasmFunction = serde_json::from_value(serde_json::json!({
        "apiVersion": "wedge.dev/v1alpha1", "kind": "WasmFunction",
        "metadata": {"name": "api", "namespace": "edge"},
        "spec": {"module": {"oci": "oci://r.example/api:v1"}, "routes": ["/api"], "version": "v1",
                 "canaries": [{"version": "v2", "module": {"oci": "oci://r.example/api:v2"}, "weight": 40.0}]}
    }))
    .unwrap();
    let split = wedge_operator::weights::traffic(&wf.spec).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let push = |token: &str| {
        rt.block_on(wedge_operator::weights::put_traffic(
            srv.admin, "api", token, &split,
        ))
    };
    let refused = push("not-the-token").unwrap_err();
    assert!(refused.starts_with("401"), "{refused}");
    let (_, v) = api(&srv, "GET", "/v1/functions/api", b"");
    assert_eq!(
        v["managed_by"], "manifest",
        "a refused push changes nothing"
    );

    push(crate::client::ADMIN_TOKEN).unwrap();
    let (_, v) = api(&srv, "GET", "/v1/functions/api", b"");
    assert_eq!(v["managed_by"], "api");
    assert_eq!(v["stable"], "v1");
    let mut served = weights(&v);
    served.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(served, [("v1".to_string(), 60.0), ("v2".to_string(), 40.0)]);
    // Both versions serve under the new split.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        seen.insert(body(&srv, None));
        if seen.len() == 2 {
            break;
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Pushing the same split again is harmless.
    push(crate::client::ADMIN_TOKEN).unwrap();

    // A pod that is gone: a clear error, quickly.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = rt
        .block_on(wedge_operator::weights::put_traffic(
            gone, "api", "t", &split,
        ))
        .unwrap_err();
    assert!(e.contains("cannot connect"), "{e}");
}
