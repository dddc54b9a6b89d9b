//! `wasi:http` components under `wedge serve`: a C 0.2 proxy (hello, echo,
//! trap, outbound calls denied unless allowed) and the WASI 0.3 service
//! conformance programs.

use crate::client::{Server, get, read_request, request};
use crate::support::{Sandbox, example, root, s};
use serde_json::Value;

fn demo(sb: &Sandbox, extra: &str) -> Server {
    let toml = format!(
        "[[function]]\nname = \"demo\"\nsource = \"{}\"\nroutes = [\"/...\"]\n{extra}\n",
        s(&example("c-http/demo.component.wasm"))
    );
    Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)])
}

#[test]
fn c_proxy_component_hello_echo_and_trap() {
    let sb = Sandbox::new();
    let srv = demo(&sb, "");
    let r = get(srv.addr, "/hello");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from a wasi:http component\n");
    let id = r.header("x-request-id").unwrap().to_string();

    let r = request(
        srv.addr,
        "POST",
        "/echo",
        &[("Content-Type", "application/json")],
        b"{\"a\":1}",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.text(), "{\"a\":1}");

    assert_eq!(get(srv.addr, "/nothing").status, 404);
    let r = get(srv.addr, "/trap");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("guest trapped (request id"),
        "{}",
        r.text()
    );
    let trap_id = r.header("x-request-id").unwrap().to_string();
    srv.wait_for_log(&format!(
        "[{trap_id}] demo: 500 guest trapped: wasm trap: wasm `unreachable`"
    ));
    // The component's stdout reaches the log, tagged with the request id.
    srv.wait_for_log(&format!("[{id}] demo stdout: handling /hello"));
}

/// A one-shot upstream server on 127.0.0.1 answering "upstream ok".
fn upstream() -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let answer =
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nConnection: close\r\n\r\nupstream ok";
        read_request(&mut c, answer).0
    });
    (addr, t)
}

#[test]
fn outbound_requests_are_denied_unless_allowed() {
    let sb = Sandbox::new();
    let (up, _t) = upstream();
    let denied = demo(&sb, "");
    let r = get(denied.addr, &format!("/outbound?{up}/path"));
    assert_eq!(r.status, 502);
    // 15 is wasi:http's error-code `HTTP-request-denied`.
    assert_eq!(r.text(), "outbound request failed: error code 15\n");
    denied.wait_for_log("denied: not in allowed_outbound_hosts");
    drop(denied);

    let sb = Sandbox::new();
    let (up, upstream_saw) = upstream();
    let allowed = demo(&sb, "allowed_outbound_hosts = [\"http://127.0.0.1:*\"]");
    let r = get(allowed.addr, &format!("/outbound?{up}/path"));
    assert_eq!(r.status, 200, "{} {}", r.text(), allowed.logs());
    assert_eq!(r.text(), "upstream ok");
    assert!(
        upstream_saw
            .join()
            .unwrap()
            .starts_with("GET /path HTTP/1.1")
    );
}

/// Runs one `wasi-http-p3` conformance program; `Err` says what differed.
fn run_p3(name: &str) -> Result<(), String> {
    let dir = root().join("../shared/conformance/wasi-http-p3");
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let sb = Sandbox::new();
    let mut srv: Option<Server> = None;
    for op in spec["operations"].as_array().unwrap() {
        match op["type"].as_str().unwrap() {
            "run" => {
                srv = Some(Server::start(
                    &sb.cache_dir(),
                    &[s(&dir.join(format!("{name}.wasm")))],
                ))
            }
            "request" => {
                let srv = srv.as_ref().ok_or("request before run")?;
                let headers: Vec<(String, String)> = op["headers"]
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                            .collect()
                    })
                    .unwrap_or_default();
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let body = op["body"].as_str().unwrap_or("");
                let method = op["method"].as_str().unwrap();
                let path = op["path"].as_str().unwrap();
                let r = request(srv.addr, method, path, &headers, body.as_bytes())
                    .map_err(|e| e.to_string())?;
                let want = &op["response"];
                if r.status as u64 != want["status"].as_u64().unwrap() {
                    return Err(format!(
                        "{method} {path}: status {}, want {}: {}",
                        r.status,
                        want["status"],
                        r.text()
                    ));
                }
                if let Some(hs) = want["headers"].as_object() {
                    for (k, v) in hs {
                        if r.header(k) != v.as_str() {
                            return Err(format!(
                                "{method} {path}: header {k} = {:?}, want {v}",
                                r.header(k)
                            ));
                        }
                    }
                }
                if let Some(b) = want["body"].as_str()
                    && r.text() != b
                {
                    return Err(format!("{method} {path}: body {:?}, want {b:?}", r.text()));
                }
            }
            "kill" => srv.as_ref().ok_or("kill before run")?.signal("INT"),
            "wait" => {
                let code = srv
                    .as_mut()
                    .ok_or("wait before run")?
                    .child
                    .wait()
                    .unwrap()
                    .code();
                if code != Some(0) {
                    return Err(format!("exit status {code:?}"));
                }
            }
            other => return Err(format!("unknown operation {other}")),
        }
    }
    Ok(())
}

#[test]
fn wasi_http_p3_conformance() {
    let names = ["http-service", "http-service-echo", "http-service-uri"];
    let mut failed = Vec::new();
    for name in names {
        if let Err(e) = run_p3(name) {
            failed.push(format!("{name}: {e}"));
        }
    }
    eprintln!(
        "wasi-http-p3: {} passed, {} failed",
        names.len() - failed.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
