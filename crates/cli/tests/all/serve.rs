//! `wedge serve` end to end: both ABIs, the CGI contract, routes, methods,
//! health, request ids, and `wedge check`.

use crate::client::{Server, get, request};
use crate::support::{Sandbox, example, guest, s};

#[test]
fn one_module_serves_every_path_with_health_endpoints() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &[s(&guest("wat/wagi/hello.wat"))]);
    for path in ["/", "/any/path?x=1"] {
        let r = get(srv.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.text(), "hello from wagi\n");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert!(r.header("x-request-id").is_some_and(|v| !v.is_empty()));
    }
    assert_eq!(get(srv.addr, "/.well-known/wedge/health").text(), "ok\n");
    assert_eq!(get(srv.addr, "/.well-known/wedge/ready").status, 200);
    // The client's request id is kept.
    let r = request(
        srv.addr,
        "GET",
        "/",
        &[("x-request-id", "trace-me-42")],
        b"",
    )
    .unwrap();
    assert_eq!(r.header("x-request-id"), Some("trace-me-42"));
}

#[test]
fn go_wagi_function_answers() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &[s(&example("go-hello/hello.wasm"))]);
    let r = get(srv.addr, "/hi?gopher");
    assert_eq!(r.status, 200, "{}", srv.logs());
    assert_eq!(r.text(), "Hello, gopher, from Go WAGI on wasip1\n");
}

#[test]
fn cgi_environment_arguments_and_body() {
    let sb = Sandbox::new();
    let toml = format!(
        r#"
[[function]]
name = "env"
source = "{}"
routes = ["/api/...", "/users/:id"]
env = {{ GREETING = "hi" }}
"#,
        s(&guest("c/wagi/env.wasm"))
    );
    let srv = Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]);
    let r = request(
        srv.addr,
        "POST",
        "/api/items/a%20b?x=1&y=2",
        &[
            ("Content-Type", "application/json"),
            ("X-Custom", "v"),
            ("Authorization", "Bearer secret"),
        ],
        b"{\"k\":1}",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-guest"), Some("env"));
    let t = r.text();
    for line in [
        "argv[0]=/api/items/a%20b",
        "env REQUEST_METHOD=POST",
        "env CONTENT_TYPE=application/json",
        "env CONTENT_LENGTH=7",
        "env QUERY_STRING=x=1&y=2",
        "env SCRIPT_NAME=/api",
        "env PATH_INFO=/items/a b",
        "env X_MATCHED_ROUTE=/api/...",
        "env HTTP_X_CUSTOM=v",
        "env SERVER_PROTOCOL=HTTP/1.1",
        "env GATEWAY_INTERFACE=CGI/1.1",
        "env REMOTE_ADDR=127.0.0.1",
        "env GREETING=hi",
        "body={\"k\":1}",
    ] {
        assert!(
            t.contains(&format!("{line}\n")),
            "missing `{line}` in:\n{t}"
        );
    }
    assert!(
        t.contains(&format!("env SERVER_PORT={}\n", srv.addr.port())),
        "{t}"
    );
    assert!(
        t.contains(&format!(
            "env X_FULL_URL=http://{}/api/items/a%20b?x=1&y=2\n",
            srv.addr
        )),
        "{t}"
    );
    assert!(!t.contains("AUTHORIZATION"), "credentials leaked:\n{t}");
    assert!(
        !t.contains("env PATH=") && !t.contains("env HOME="),
        "host env leaked:\n{t}"
    );

    let r = get(srv.addr, "/users/ann");
    assert!(r.text().contains("env X_PARAM_ID=ann\n"), "{}", r.text());
    assert_eq!(get(srv.addr, "/nowhere").status, 404);
}

#[test]
fn routes_methods_and_not_found() {
    let sb = Sandbox::new();
    let toml = format!(
        r#"
[[function]]
name = "hello"
source = "{hello}"
routes = ["/hello"]
methods = ["GET"]

[[function]]
name = "env"
source = "{env}"
routes = ["/..."]
"#,
        hello = s(&guest("wat/wagi/hello.wat")),
        env = s(&guest("c/wagi/env.wasm"))
    );
    let srv = Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]);
    assert_eq!(get(srv.addr, "/hello").text(), "hello from wagi\n");
    assert!(
        get(srv.addr, "/hello/x")
            .text()
            .contains("X_MATCHED_ROUTE=/...")
    );
    let r = request(srv.addr, "POST", "/hello", &[], b"x").unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET"));
    let id = r.header("x-request-id").unwrap().to_string();
    assert!(
        r.text().contains(&format!("(request id {id})")),
        "{}",
        r.text()
    );
}

#[test]
fn check_validates_and_names_the_line() {
    let sb = Sandbox::new();
    let good = format!(
        "[[function]]\nname = \"a\"\nsource = \"{}\"\nroutes = [\"/a\"]\n",
        s(&guest("wat/wagi/hello.wat"))
    );
    let r = sb.run(&["check", "-f", &sb.manifest(&good)]);
    assert!(
        r.expect(0).stdout.contains("ok, 1 functions"),
        "{}",
        r.stdout
    );
    // Triggers are listed too (checking needs no broker).
    let triggered = format!(
        "{good}\n[[trigger.mqtt]]\nbroker = \"mqtt://127.0.0.1:1883\"\nclient_id = \"edge-1\"\n\
         topics = [\"s/#\"]\nfunction = \"a\"\n"
    );
    let r = sb.run(&["check", "-f", &sb.manifest(&triggered)]);
    assert!(
        r.expect(0)
            .stdout
            .contains("trigger mqtt mqtt://127.0.0.1:1883 as edge-1: s/# -> a"),
        "{}",
        r.stdout
    );
    let bad = good.replace("routes", "rootes");
    let r = sb.run(&["check", "-f", &sb.manifest(&bad)]);
    r.expect(1);
    assert!(
        r.stderr.contains("wedge.toml:4:1: unknown field `rootes`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("did you mean `routes`?"), "{}", r.stderr);
}

#[test]
fn a_function_that_cannot_be_instantiated_is_refused_at_start() {
    let sb = Sandbox::new();
    // The Go runtime's initial memory is far above 1 MiB.
    let toml = format!(
        "[[function]]\nname = \"go\"\nsource = \"{}\"\nroutes = [\"/\"]\nmax_memory = \"1MiB\"\n",
        s(&example("go-hello/hello.wasm"))
    );
    let r = sb.run(&["check", "-f", &sb.manifest(&toml)]);
    r.expect(1);
    assert!(
        r.stderr.contains("function `go` cannot be instantiated"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("max_memory is 1048576 bytes"),
        "{}",
        r.stderr
    );
}

#[test]
fn services_may_reuse_instances_and_modules_may_not() {
    let sb = Sandbox::new();
    let p3 = crate::support::root().join("../shared/conformance/wasi-http-p3/http-service.wasm");
    let toml = format!(
        "[[function]]\nname = \"svc\"\nsource = \"{}\"\nroutes = [\"/...\"]\ninstance_reuse = 3\n",
        s(&p3)
    );
    let srv = Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]);
    for _ in 0..7 {
        let r = get(srv.addr, "/");
        assert_eq!((r.status, r.text().as_str()), (200, "hey\n"));
    }
    drop(srv);
    let toml = format!(
        "[[function]]\nname = \"w\"\nsource = \"{}\"\nroutes = [\"/\"]\ninstance_reuse = 2\n",
        s(&guest("wat/wagi/hello.wat"))
    );
    let r = sb.run(&["check", "-f", &sb.manifest(&toml)]);
    r.expect(1);
    assert!(
        r.stderr
            .contains("instance_reuse applies to WASI 0.3 services only"),
        "{}",
        r.stderr
    );
}

#[test]
fn functions_sharing_a_module_share_its_code_but_not_their_limits() {
    let sb = Sandbox::new();
    let module = guest("c/wagi/env.wasm");
    let env = s(&module);
    let toml = format!(
        "[[function]]\nname = \"one\"\nsource = \"{env}\"\nroutes = [\"/one\"]\nenv = {{ WHO = \"one\" }}\n\n\
         [[function]]\nname = \"two\"\nsource = \"{env}\"\nroutes = [\"/two\"]\nenv = {{ WHO = \"two\" }}\nmethods = [\"POST\"]\n"
    );
    let srv = Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)]);
    let one = get(srv.addr, "/one");
    assert_eq!(one.status, 200);
    assert!(one.text().contains("WHO=one"), "{}", one.text());
    assert_eq!(
        get(srv.addr, "/two").status,
        405,
        "the second function keeps its own methods"
    );
    let two = request(srv.addr, "POST", "/two", &[], b"").unwrap();
    assert!(two.text().contains("WHO=two"), "{}", two.text());
    // One load: both functions report the same cache outcome for the one artifact.
    let logs = srv.logs();
    let outcome = |name: &str| {
        logs.lines()
            .find(|l| l.starts_with(&format!("function {name} ")))
            .and_then(|l| l.split("aot cache ").nth(1))
            .map(|rest| rest.split(')').next().unwrap().to_string())
    };
    assert_eq!(outcome("one"), outcome("two"), "{logs}");
}

/// Names of the threads of process `pid` that serve data connections.
fn data_threads(pid: u32) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .filter(|n| n.starts_with("wedge-data"))
        .collect();
    names.sort();
    names
}

#[test]
fn connections_are_served_by_per_core_threads_or_a_shared_runtime() {
    let sb = Sandbox::new();
    let module = example("c-http/demo.component.wasm");
    for (args, threads) in [
        (
            vec!["--threads", "3"],
            vec!["wedge-data-0", "wedge-data-1", "wedge-data-2"],
        ),
        (vec!["--threading", "shared"], vec![]),
    ] {
        let mut all = vec![s(&module)];
        all.extend(&args);
        let srv = Server::start(&sb.cache_dir(), &all);
        // Concurrent clients, each request a connection of its own: every
        // one is answered, whichever thread accepted it.
        let addr = srv.addr;
        let clients: Vec<_> = (0..6)
            .map(|_| {
                std::thread::spawn(move || {
                    (0..20)
                        .map(|_| get(addr, "/hello"))
                        .filter(|r| r.status == 200 && r.text().contains("wasi:http"))
                        .count()
                })
            })
            .collect();
        let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(answered, 120, "{args:?}: {}", srv.logs());
        // The threads start before the first connection is accepted.
        assert_eq!(data_threads(srv.child.id()), threads, "{args:?}");
    }
}

#[test]
fn a_port_in_use_is_refused_not_shared() {
    // A second server on the port of a running one must fail to start, not
    // bind beside it (as SO_REUSEPORT would) and take some of its clients.
    let sb = Sandbox::new();
    let module = example("c-http/demo.component.wasm");
    let first = Server::start(&sb.cache_dir(), &[s(&module)]);
    let addr = first.addr.to_string();
    let r = sb.run(&[
        "serve",
        s(&module),
        "--listen",
        &addr,
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    r.expect(1);
    assert!(
        r.stderr.contains(&format!("cannot listen on {addr}")),
        "{}",
        r.stderr
    );
    assert_eq!(get(first.addr, "/hello").status, 200);
}

#[test]
fn a_client_that_connects_during_start_is_answered_not_refused() {
    // The listener is bound while the engine is built, before the functions
    // are loaded. With an empty AOT cache the Go module is compiled first
    // (a second or more), so the client below gets through before the
    // server says it is listening, and waits in the backlog for its answer.
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let sb = Sandbox::new();
    let module = example("go-hello/hello.wasm");
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], crate::support::free_port()));
    let mut child = sb
        .wedge()
        .env("WEDGE_ADMIN_TOKEN", crate::client::ADMIN_TOKEN)
        .args(["serve", s(&module), "--listen", &addr.to_string()])
        .args(["--admin-listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn wedge serve");
    let (told, listening) = mpsc::channel();
    let out = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if line.starts_with("listening on ") {
                let _ = told.send(Instant::now());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut conn = loop {
        match std::net::TcpStream::connect(addr) {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < deadline, "never accepted: {e}");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    };
    let connected = Instant::now();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let said_listening = listening
        .recv_timeout(Duration::from_secs(60))
        .expect("the server said it was listening");
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        connected < said_listening,
        "connected {:?} after the server said it was listening",
        connected - said_listening
    );
}
