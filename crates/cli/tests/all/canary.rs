//! Versions in traffic: a weighted split, the header that picks a version,
//! sticky users, and a weight changed by a reload that keeps every version.

use crate::client::{Server, request};
use crate::reload::{metric, versioned};
use crate::support::Sandbox;
use std::collections::HashMap;

fn app(sb: &Sandbox, weight: u32) -> String {
    std::fs::write(sb.path().join("v1.wasm"), versioned(1)).unwrap();
    std::fs::write(sb.path().join("v2.wasm"), versioned(2)).unwrap();
    sb.manifest(&format!(
        "[[function]]\nname = \"api\"\nsource = \"v1.wasm\"\nroutes = [\"/api\"]\n\
         version = \"v1\"\nversion_header = \"x-wasm-version\"\nsticky = \"header:x-user\"\n\n\
         [[function.canary]]\nversion = \"v2-beta\"\nsource = \"v2.wasm\"\nweight = {weight}\n"
    ))
}

/// The version that answered, checked against the body.
fn version_of(srv: &Server, headers: &[(&str, &str)]) -> String {
    let r = request(srv.addr, "GET", "/api", headers, b"").expect("GET /api");
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r
        .header("x-wedge-version")
        .expect("x-wedge-version")
        .to_string();
    let body = r.text();
    match v.as_str() {
        "v1" => assert_eq!(body, "version 1\n"),
        "v2-beta" => assert_eq!(body, "version 2\n"),
        other => panic!("unknown version {other}"),
    }
    v
}

#[test]
fn weights_header_and_sticky_users_split_traffic_as_configured() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &["-f", &app(&sb, 10)]);
    let n = 10_000;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let addr = srv.addr;
            std::thread::spawn(move || {
                (0..n / 4)
                    .filter(|_| {
                        let r = request(addr, "GET", "/api", &[], b"").unwrap();
                        r.header("x-wedge-version") == Some("v2-beta")
                    })
                    .count()
            })
        })
        .collect();
    let canary: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    eprintln!("90/10 split: {canary} of {n} requests on the canary");
    assert!(
        (850..=1150).contains(&canary),
        "{canary} of {n} on the canary"
    );

    for _ in 0..100 {
        assert_eq!(
            version_of(&srv, &[("x-wasm-version", "v2-beta")]),
            "v2-beta"
        );
        assert_eq!(version_of(&srv, &[("x-wasm-version", "v1")]), "v1");
    }

    let mut users: HashMap<String, String> = HashMap::new();
    for round in 0..3 {
        for u in 0..400 {
            let user = format!("user-{u}");
            let v = version_of(&srv, &[("x-user", &user)]);
            let first = users.entry(user.clone()).or_insert_with(|| v.clone());
            assert_eq!(*first, v, "{user} moved in round {round}");
        }
    }
    let sticky_canary = users.values().filter(|v| *v == "v2-beta").count();
    assert!(
        (15..=70).contains(&sticky_canary),
        "{sticky_canary} of 400 users"
    );

    for v in ["v1", "v2-beta"] {
        let series = format!(
            "http_server_request_duration_seconds_count{{http_request_method=\"GET\",\
             http_response_status_code=\"200\",http_route=\"/api\",function=\"api\",version=\"{v}\"}}"
        );
        assert!(metric(&srv, &series) > 0.0, "no series {series}");
    }
    srv.wait_for_log("api@v2-beta: GET /api 200");
}

#[test]
fn a_new_weight_reloads_no_version_and_moves_traffic() {
    let sb = Sandbox::new();
    let manifest = app(&sb, 10);
    let srv = Server::start(&sb.cache_dir(), &["-f", &manifest, "--watch"]);
    assert_eq!(
        version_of(&srv, &[("x-wasm-version", "v2-beta")]),
        "v2-beta"
    );
    app(&sb, 100);
    srv.wait_for_log("traffic of api; 0 unchanged");
    for _ in 0..50 {
        assert_eq!(version_of(&srv, &[]), "v2-beta");
    }
    // Both modules were kept, not compiled or loaded again.
    assert_eq!(
        metric(
            &srv,
            "wedge_aot_cache_loads_total{function=\"api\",result=\"miss\"}"
        ),
        2.0
    );
}
