//! Hostile clients on real sockets: each attack runs beside a well-behaved
//! client, which must still get its 200 promptly, and the server must stay
//! bounded (connections, series, memory) and close what it should.

use crate::client::{ADMIN_AUTH, Server, get, request};
use crate::support::{Sandbox, guest, s};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A sample's value from a `/metrics` document (first series whose line
/// starts with `prefix`).
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn metrics(srv: &Server) -> String {
    get(srv.admin, "/metrics").text()
}

/// Reads until the peer closes; `true` if it did (EOF or reset) within
/// `limit`, `false` if the read timed out with the connection still open.
fn closed_by_peer(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// A request from a well-behaved client: 200, and no slower than `limit`.
#[track_caller]
fn prompt_ok(addr: SocketAddr, path: &str, limit: Duration) {
    let t = Instant::now();
    let r = get(addr, path);
    let took = t.elapsed();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(took < limit, "the real request took {took:?}");
}

#[test]
fn slowloris_heads_neither_starve_real_requests_nor_stay_open() {
    let sb = Sandbox::new();
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            s(&guest("wat/wagi/hello.wat")),
            "--max-connections",
            "64",
            "--request-head-timeout",
            "2s",
        ],
    );
    // Three times the cap in half-open heads that never finish.
    let mut dawdlers: Vec<TcpStream> = (0..192)
        .map(|_| {
            let mut c = TcpStream::connect(srv.addr).unwrap();
            c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    // The oldest dawdlers make room: no waiting for any timeout.
    prompt_ok(srv.addr, "/", Duration::from_millis(1500));
    // Every dawdler is closed by the server, evicted or timed out.
    for c in &mut dawdlers {
        assert!(
            closed_by_peer(c, Duration::from_secs(10)),
            "a half-open head is still open"
        );
    }
    let m = metrics(&srv);
    let closed = |reason: &str| {
        let name =
            format!("wedge_connections_closed_total{{listener=\"data\",reason=\"{reason}\"}}");
        metric(&m, &name).unwrap_or(0.0)
    };
    // Each of the 128 dawdlers past the cap, and the real request, made
    // room by evicting one: none had to wait for a timeout to free a place
    // (the rest time out). Every dawdler is counted once.
    let (evicted, timed_out) = (closed("evicted"), closed("head-timeout"));
    assert!(evicted >= 128.0, "{m}");
    assert_eq!(evicted + timed_out, 192.0, "{m}");
    assert!(
        metric(&m, "wedge_connections_open{listener=\"data\"}").unwrap() <= 64.0,
        "{m}"
    );
}

#[test]
fn a_silent_connection_and_an_idle_keep_alive_are_closed() {
    let sb = Sandbox::new();
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            s(&guest("wat/wagi/hello.wat")),
            "--request-head-timeout",
            "1s",
            "--idle-timeout",
            "1s",
        ],
    );
    // Connects and sends nothing at all.
    let mut silent = TcpStream::connect(srv.addr).unwrap();
    // One request, then nothing on a kept-alive connection.
    let mut idle = TcpStream::connect(srv.addr).unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let started = Instant::now();
    assert!(closed_by_peer(&mut silent, Duration::from_secs(10)));
    assert!(closed_by_peer(&mut idle, Duration::from_secs(10)));
    assert!(started.elapsed() >= Duration::from_millis(500));
    // Each close is counted once, and before the client sees it.
    let m = metrics(&srv);
    for reason in ["head-timeout", "idle"] {
        let series =
            format!("wedge_connections_closed_total{{listener=\"data\",reason=\"{reason}\"}}");
        assert_eq!(metric(&m, &series), Some(1.0), "{reason}:\n{m}");
    }
}

#[test]
fn slow_uploads_hold_no_slot_and_get_408() {
    let sb = Sandbox::new();
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            s(&guest("c/wagi/env.wasm")),
            "--max-concurrency",
            "2",
            "--queue",
            "0",
            "--body-timeout",
            "2s",
        ],
    );
    let mut uploads: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut c = TcpStream::connect(srv.addr).unwrap();
            c.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789")
                .unwrap();
            c
        })
        .collect();
    // Four uploads stall, yet both slots are free for a real request.
    prompt_ok(srv.addr, "/", Duration::from_millis(1500));
    for c in &mut uploads {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Vec::new();
        let _ = c.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("did not arrive within 2000 ms"), "{text}");
    }
    let m = metrics(&srv);
    assert!(
        m.contains("reason=\"body-timeout\"} 4"),
        "rejections counted: {m}"
    );
}

#[test]
fn invented_methods_and_paths_do_not_mint_series() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &[s(&guest("wat/wagi/hello.wat"))]);
    for i in 0..2000 {
        let r = request(srv.addr, &format!("M{i:05}"), &format!("/p{i}"), &[], b"").unwrap();
        assert_eq!(r.status, 200);
    }
    let m = metrics(&srv);
    let counts: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("http_server_request_duration_seconds_count"))
        .collect();
    assert_eq!(counts.len(), 1, "{counts:?}");
    assert!(
        counts[0].contains("http_request_method=\"_OTHER\""),
        "{counts:?}"
    );
    assert!(counts[0].ends_with(" 2000"), "{counts:?}");
    let series = m.lines().filter(|l| !l.starts_with('#')).count();
    assert!(
        series < 300,
        "{series} series after 2000 distinct methods and paths"
    );
    assert!(!m.contains("M00001") && !m.contains("/p1\""));
}

#[test]
fn no_httpoxy_and_no_header_name_collisions_in_cgi() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &[s(&guest("c/wagi/env.wasm"))]);
    let r = request(
        srv.addr,
        "GET",
        "/",
        &[
            ("Proxy", "http://attacker:8080"),
            ("X-Real", "dash"),
            ("X_Real", "underscore"),
        ],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let env = r.text();
    assert!(!env.contains("HTTP_PROXY"), "{env}");
    assert!(env.contains("env HTTP_X_REAL=dash\n"), "{env}");
    assert!(!env.contains("underscore"), "{env}");
}

#[test]
fn admin_mutations_need_the_token() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &[s(&guest("wat/wagi/hello.wat"))]);
    let a = srv.admin;
    for (method, path) in [("PUT", "/log-level"), ("POST", "/profile?function=hello")] {
        let r = request(a, method, path, &[], b"debug").unwrap();
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
        let r = request(
            a,
            method,
            path,
            &[("Authorization", "Bearer wrong-token-0123456789")],
            b"debug",
        )
        .unwrap();
        assert_eq!(r.status, 401, "{method} {path} with a wrong token");
    }
    assert_eq!(get(a, "/log-level").status, 401);
    for path in ["/metrics", "/live", "/ready"] {
        assert_eq!(get(a, path).status, 200, "{path} stays open for probes");
    }
    let r = srv.admin_request("PUT", "/log-level", b"warn");
    assert_eq!((r.status, r.text().as_str()), (200, "warn\n"));
    let big = vec![b'x'; 8 << 10];
    let r = request(
        a,
        "PUT",
        "/log-level",
        &[("Authorization", ADMIN_AUTH)],
        &big,
    )
    .unwrap();
    assert_eq!(r.status, 413, "{}", r.text());
}

#[test]
fn a_generated_admin_token_is_private_and_works() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    let runtime_dir = sb.path().join("run");
    std::fs::create_dir(&runtime_dir).unwrap();
    let srv = Server::start_with_env(
        &sb.cache_dir(),
        &[s(&guest("wat/wagi/hello.wat"))],
        &[
            ("WEDGE_ADMIN_TOKEN", ""),
            ("XDG_RUNTIME_DIR", s(&runtime_dir)),
        ],
    );
    let file = runtime_dir
        .join("wedge")
        .join(format!("admin-{}.token", srv.admin.port()));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let token = std::fs::read_to_string(&file).unwrap();
    assert_eq!(token.len(), 64);
    let auth = format!("Bearer {token}");
    let r = request(
        srv.admin,
        "GET",
        "/log-level",
        &[("Authorization", &auth)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let r = request(
        srv.admin,
        "GET",
        "/log-level",
        &[("Authorization", ADMIN_AUTH)],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 401, "the test token is not this server's");
}

#[test]
fn an_admin_listener_off_loopback_needs_a_configured_token() {
    let sb = Sandbox::new();
    let run = sb
        .wedge()
        .args([
            "serve",
            s(&guest("wat/wagi/hello.wat")),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("without a token"), "{err}");
    assert!(err.contains("--admin-token-file"), "{err}");
}

/// Raises this process's descriptor limit (inherited by the server it
/// starts) to its hard limit: 10,000 connections need more than the
/// customary soft limit of 1,024.
fn raise_fd_limit(need: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct given.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= need,
        "this machine allows {} open files per process; the test needs {need}",
        lim.rlim_cur
    );
}

#[test]
fn ten_thousand_idle_keep_alive_connections() {
    raise_fd_limit(10_500);
    let sb = Sandbox::new();
    // Timeouts far longer than the test: only eviction can make room.
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            s(&guest("wat/wagi/hello.wat")),
            "--request-head-timeout",
            "120s",
            "--idle-timeout",
            "120s",
        ],
    );
    let rss = |srv: &Server| metric(&metrics(srv), "process_resident_memory_bytes").unwrap();
    prompt_ok(srv.addr, "/", Duration::from_secs(2));
    let before = rss(&srv);
    let mut idle = Vec::with_capacity(10_000);
    let mut buf = [0u8; 256];
    for _ in 0..10_000 {
        let mut c = TcpStream::connect(srv.addr).unwrap();
        c.write_all(b"GET /.well-known/wedge/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let n = c.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        idle.push(c);
    }
    // The cap holds (the oldest idle made room for each newcomer), and a
    // real request is served at once.
    prompt_ok(srv.addr, "/", Duration::from_secs(1));
    let m = metrics(&srv);
    let open = metric(&m, "wedge_connections_open{listener=\"data\"}").unwrap();
    assert!(open <= 4096.0, "{open} connections open");
    let grown = rss(&srv) - before;
    assert!(
        grown < 256.0 * 1048576.0,
        "RSS grew by {} MiB",
        grown / 1048576.0
    );
}

#[test]
fn http2_rapid_resets_are_cut_off() {
    let sb = Sandbox::new();
    let srv = Server::start(&sb.cache_dir(), &[s(&guest("wat/wagi/hello.wat"))]);
    let addr = srv.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let sent = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let mut sent = 0;
        // Batches of opened-and-reset streams, each written in one go, so the
        // server sees resets of streams it has not accepted yet.
        'attack: for _ in 0..100 {
            for _ in 0..100 {
                client = match client.ready().await {
                    Ok(c) => c,
                    Err(_) => break 'attack,
                };
                let req = http::Request::get(format!("http://{addr}/"))
                    .body(())
                    .unwrap();
                match client.send_request(req, false) {
                    Ok((_, mut stream)) => {
                        stream.send_reset(h2::Reason::CANCEL);
                        sent += 1;
                    }
                    Err(_) => break 'attack,
                }
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;
        sent
    });
    assert!(sent < 10_000, "the server let {sent} resets through");
    prompt_ok(srv.addr, "/", Duration::from_secs(1));
}

/// WAGI responses past 64 KiB stream (docs/streaming.md): a client that
/// reads none of a large one holds bounded memory, and its guest's slot
/// only until `send_timeout` cuts it off; requests queued behind are served.
#[test]
fn slow_readers_of_large_responses_hold_bounded_memory_and_slots_until_send_timeout() {
    let sb = Sandbox::new();
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            s(&guest("c/wagi/env.wasm")),
            "--max-concurrency",
            "2",
            "--queue-timeout",
            "60s",
            "--send-timeout",
            "1s",
        ],
    );
    let rss = |srv: &Server| metric(&metrics(srv), "process_resident_memory_bytes").unwrap();
    prompt_ok(srv.addr, "/", Duration::from_secs(2));
    let before = rss(&srv);
    // Six clients each ask for an 8 MiB echo and never read a byte of it.
    let body = vec![b'x'; 8 << 20];
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let stalled: Vec<TcpStream> = (0..6)
        .map(|_| {
            let mut c = TcpStream::connect(srv.addr).unwrap();
            c.write_all(head.as_bytes()).unwrap();
            c.write_all(&body).unwrap();
            c
        })
        .collect();
    // Both slots go to stalled clients in turn, each until it is cut off;
    // a real request waits its turn and is served.
    let r = get(srv.addr, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    let series = "wedge_connections_closed_total{listener=\"data\",reason=\"send-timeout\"}";
    let cut = metric(&metrics(&srv), series).unwrap_or(0.0);
    assert!(
        cut >= 1.0,
        "no stalled client was cut off:\n{}",
        metrics(&srv)
    );
    let grown = rss(&srv) - before;
    assert!(
        grown < 128.0 * 1048576.0,
        "RSS grew by {} MiB for 48 MiB of unread responses",
        grown / 1048576.0
    );
    drop(stalled);
}

/// Library diagnostics reach wedge's log: h2's `tracing` events, asked for
/// with `RUST_LOG`, come out as log lines named after their target.
#[test]
fn library_events_reach_the_log() {
    let sb = Sandbox::new();
    let srv = Server::start_with_env(
        &sb.cache_dir(),
        &[s(&guest("wat/wagi/hello.wat")), "--log-level", "debug"],
        &[("RUST_LOG", "h2=debug,warn")],
    );
    let addr = srv.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (client, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let mut client = client.ready().await.unwrap();
        let req = http::Request::get(format!("http://{addr}/"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true).unwrap();
        response.await.unwrap().status()
    });
    assert_eq!(status, 200);
    srv.wait_for_log(" debug [-] h2::");
}

/// A client that stops reading a streamed component response holds the
/// instance (and its slot) only until `send_timeout`; then its connection
/// is cut and the slot serves others.
#[test]
fn a_client_that_stops_reading_a_stream_is_cut_off_and_frees_its_slot() {
    let sb = Sandbox::new();
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            s(&crate::support::example("c-http/demo.component.wasm")),
            "--max-concurrency",
            "1",
            "--queue-timeout",
            "100ms",
            "--max-request-body",
            "64MiB",
            "--send-timeout",
            "1s",
        ],
    );
    // 32 MiB echoed back: more than the kernel buffers of both ends hold.
    let body = vec![b'x'; 32 << 20];
    let mut stalled = TcpStream::connect(srv.addr).unwrap();
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&body).unwrap();
    // Wait for the server's own signal that it cut the stalled client off.
    let series = "wedge_connections_closed_total{listener=\"data\",reason=\"send-timeout\"}";
    let mut cut = false;
    for _ in 0..500 {
        if metric(&metrics(&srv), series).unwrap_or(0.0) >= 1.0 {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        cut,
        "the stalled client was never cut off:\n{}",
        metrics(&srv)
    );
    prompt_ok(srv.addr, "/hello", Duration::from_secs(2));
    assert!(closed_by_peer(&mut stalled, Duration::from_secs(10)));
}
