//! HTTPS with real clients: curl (HTTP/2 and HTTP/1.1 by ALPN) and
//! `openssl s_client`, against a CA and certificates the test makes with
//! the openssl command; the certificate is replaced under a live server.

use crate::client::{Server, get};
use crate::support::{Sandbox, guest, s};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (Debian package openssl; scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA named `name` and a certificate it signs for localhost and
/// 127.0.0.1: `name-ca.pem`, `name.pem`, `name.key` in `dir`.
pub(crate) fn make_pki(dir: &Path, name: &str) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let (ca_key, ca) = (format!("{name}-ca.key"), format!("{name}-ca.pem"));
    let mut args = vec!["req", "-x509"];
    args.extend(ec);
    args.extend(["-keyout", &ca_key, "-out", &ca, "-days", "2"]);
    let subject = format!("/CN=wedge test CA {name}");
    args.extend(["-subj", &subject]);
    openssl(dir, &args);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    let (key, csr, cert) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let mut args = vec!["req"];
    args.extend(ec);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=localhost"]);
    openssl(dir, &args);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
}

/// `curl ARGS` for `path` over HTTPS to `localhost` at `addr`, trusting
/// `ca`: its output, or its error.
fn curl_https(addr: SocketAddr, ca: &Path, path: &str, args: &[&str]) -> Result<String, String> {
    let url = format!("https://localhost:{}{path}", addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", s(ca)])
        .args(args)
        .args(["--resolve", &resolve, &url])
        .output()
        .expect("curl (Debian package curl; scripts/test.sh installs it)");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `curl` over HTTPS trusting `ca`: (http version, status), or curl's error.
fn curl(addr: SocketAddr, ca: &Path, version: &str) -> Result<String, String> {
    let write_out = ["-o", "/dev/null", "-w", "%{http_version} %{http_code}"];
    curl_https(addr, ca, "/", &[&write_out[..], &[version]].concat())
}

/// The body `curl` gets for `path` over HTTPS trusting `ca`.
fn curl_body(addr: SocketAddr, ca: &Path, path: &str) -> String {
    curl_https(addr, ca, path, &["--fail"]).unwrap_or_else(|e| panic!("curl {path}: {e}"))
}

#[test]
fn guests_behind_tls_see_https() {
    let sb = Sandbox::new();
    let dir = sb.path();
    make_pki(dir, "one");
    let (cert, key) = (dir.join("one.pem"), dir.join("one.key"));
    let tls = ["--tls-cert", s(&cert), "--tls-key", s(&key)];
    let ca = dir.join("one-ca.pem");

    // WAGI: HTTPS=on, as CGI libraries read it, and an https full URL.
    let env = guest("c/wagi/env.wasm");
    let mut args = vec![s(&env)];
    args.extend(tls);
    let srv = Server::start(&sb.cache_dir(), &args);
    let body = curl_body(srv.addr, &ca, "/p?q=1");
    let expected_url = format!("X_FULL_URL=https://localhost:{}/p?q=1", srv.addr.port());
    assert!(body.lines().any(|l| l == "env HTTPS=on"), "{body}");
    assert!(body.lines().any(|l| l.ends_with(&expected_url)), "{body}");
    drop(srv);

    // The Go SDK: the handler's request has TLS state (the guest prints
    // `tls=true`), as net/http/cgi gives one for HTTPS=on.
    let sdk = crate::go_sdk::sdk_guest();
    let mut args = vec![s(&sdk)];
    args.extend(tls);
    let srv = Server::start(&sb.cache_dir(), &args);
    let body = curl_body(srv.addr, &ca, "/whoami/ada");
    assert!(body.lines().any(|l| l == "tls=true"), "{body}");
}

#[test]
fn https_with_alpn_and_a_certificate_replaced_under_live_connections() {
    let sb = Sandbox::new();
    let dir = sb.path();
    make_pki(dir, "one");
    make_pki(dir, "two");
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(dir.join("one.pem"), &cert).unwrap();
    std::fs::copy(dir.join("one.key"), &key).unwrap();
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            s(&guest("wat/wagi/hello.wat")),
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&key),
        ],
    );
    let (ca1, ca2) = (dir.join("one-ca.pem"), dir.join("two-ca.pem"));
    assert_eq!(curl(srv.addr, &ca1, "--http2").unwrap(), "2 200");
    assert_eq!(curl(srv.addr, &ca1, "--http1.1").unwrap(), "1.1 200");
    assert!(curl(srv.addr, &ca2, "--http2").is_err(), "not yet CA two");

    // A connection opened before the certificate changes.
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &srv.addr.to_string()])
        .args(["-servername", "localhost", "-CAfile", s(&ca1)])
        .args(["-verify_return_error", "-alpn", "http/1.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = client.stdin.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let output = client.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let answered = |rx: &mpsc::Receiver<String>| loop {
        let line = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a response on the open TLS connection");
        if line.contains("hello from wagi") {
            return;
        }
    };
    input
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    answered(&rx);

    // Replace the pair as a certificate manager does: new files renamed in.
    for (from, to) in [("two.pem", &cert), ("two.key", &key)] {
        let tmp = dir.join("incoming.tmp");
        std::fs::copy(dir.join(from), &tmp).unwrap();
        std::fs::rename(&tmp, to).unwrap();
    }
    srv.wait_for_log("tls: reloaded");
    assert_eq!(curl(srv.addr, &ca2, "--http2").unwrap(), "2 200");
    assert!(
        curl(srv.addr, &ca1, "--http2").is_err(),
        "CA one is retired"
    );
    // The connection from before the reload still serves.
    input
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    answered(&rx);
    drop(input);
    let _ = client.kill();
    let _ = client.wait();
}

#[test]
fn a_stalled_tls_handshake_is_closed() {
    let sb = Sandbox::new();
    let dir = sb.path();
    make_pki(dir, "one");
    let srv = Server::start(
        &sb.cache_dir(),
        &[
            s(&guest("wat/wagi/hello.wat")),
            "--tls-cert",
            s(&dir.join("one.pem")),
            "--tls-key",
            s(&dir.join("one.key")),
            "--tls-handshake-timeout",
            "1s",
        ],
    );
    let mut silent = std::net::TcpStream::connect(srv.addr).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 16];
    let n = std::io::Read::read(&mut silent, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closed the silent connection");
    let m = get(srv.admin, "/metrics").text();
    assert!(
        m.contains("wedge_connections_closed_total{listener=\"data\",reason=\"tls-handshake\"} 1"),
        "{m}"
    );
}

#[test]
fn a_key_that_does_not_fit_its_certificate_is_refused_at_start() {
    let sb = Sandbox::new();
    let dir = sb.path();
    make_pki(dir, "one");
    make_pki(dir, "two");
    let run = sb.run(&[
        "serve",
        s(&guest("wat/wagi/hello.wat")),
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        s(&dir.join("one.pem")),
        "--tls-key",
        s(&dir.join("two.key")),
    ]);
    run.expect(1);
    assert!(run.stderr.contains("does not fit"), "{}", run.stderr);
}
