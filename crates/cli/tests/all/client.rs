//! A small HTTP/1.1 client over a real socket, and a `wedge serve` process
//! fixture that reads its bound address from stdout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A parsed response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request on a new connection (`Connection: close`).
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse(&raw)
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"").expect("GET")
}

fn parse(raw: &[u8]) -> std::io::Result<Response> {
    let bad = |m: &str| std::io::Error::other(format!("{m}: {:?}", String::from_utf8_lossy(raw)));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("head not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        b = &b[eol + 2..];
        if size == 0 || b.len() < size {
            out.extend_from_slice(&b[..size.min(b.len())]);
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[(size + 2).min(b.len())..];
    }
    out
}

/// Reads one HTTP request (head and Content-Length body) from `c`, then
/// writes `answer`. For the test's own servers: upstreams, receivers.
pub fn read_request(c: &mut TcpStream, answer: &[u8]) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let n = c.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return (String::from_utf8_lossy(&raw).into_owned(), Vec::new());
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            while raw.len() < end + 4 + len {
                let n = c.read(&mut buf).unwrap();
                raw.extend_from_slice(&buf[..n]);
            }
            c.write_all(answer).unwrap();
            return (head, raw[end + 4..end + 4 + len].to_vec());
        }
    }
}

/// The admin token every test server gets (through `WEDGE_ADMIN_TOKEN`).
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The `Authorization` header value that carries [`ADMIN_TOKEN`].
pub const ADMIN_AUTH: &str = "Bearer test-admin-token-0123456789";

/// A running `wedge serve`; killed on drop.
pub struct Server {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `wedge serve ARGS --listen 127.0.0.1:0` with `cache_dir`.
    // The child is waited for by `Drop for Server` (or before panicking).
    #[allow(clippy::zombie_processes)]
    pub fn start(cache_dir: &Path, args: &[&str]) -> Server {
        Server::start_with_env(cache_dir, args, &[])
    }

    /// Like [`Server::start`], with extra environment variables.
    // The child is waited for by `Drop for Server` (or before panicking).
    #[allow(clippy::zombie_processes)]
    pub fn start_with_env(cache_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wedge"))
            .env("WEDGE_ADMIN_TOKEN", ADMIN_TOKEN)
            .envs(env.iter().copied())
            .arg("serve")
            .args(args)
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("WEDGE_CACHE_DIR", cache_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wedge serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let mut admin = None;
        loop {
            line.clear();
            if out.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.wait();
                panic!(
                    "wedge serve exited before listening; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
            if let Some(a) = line.trim().strip_prefix("admin on http://") {
                admin = Some(a.parse().expect("admin address"));
            }
            let listening = line.trim().strip_prefix("listening on ");
            let addr = listening.map(|a| {
                a.trim_start_matches("http://")
                    .trim_start_matches("https://")
            });
            if let Some(addr) = addr {
                let addr = addr.parse().expect("bound address");
                std::thread::spawn(move || {
                    let mut rest = String::new();
                    let _ = out.read_to_string(&mut rest);
                });
                return Server {
                    addr,
                    admin: admin.expect("admin address printed before listening"),
                    child,
                    stderr,
                };
            }
        }
    }

    /// A request to the admin listener with the admin token.
    pub fn admin_request(&self, method: &str, path: &str, body: &[u8]) -> Response {
        request(
            self.admin,
            method,
            path,
            &[("Authorization", ADMIN_AUTH)],
            body,
        )
        .expect("admin request")
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until the server has logged a line containing `needle` (log
    /// lines about an instance are written when it ends, which may be just
    /// after its response was sent).
    pub fn wait_for_log(&self, needle: &str) {
        for _ in 0..1000 {
            if self.logs().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("`{needle}` never logged:\n{}", self.logs());
    }

    /// Waits until the server has logged one line containing every one of
    /// `needles`; gives that line.
    pub fn wait_for_line(&self, needles: &[&str]) -> String {
        for _ in 0..1000 {
            let found = self
                .logs()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_string);
            if let Some(line) = found {
                return line;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no line with all of {needles:?} logged:\n{}", self.logs());
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `path` exists: the guest's signal that it started.
pub fn wait_for_file(path: &Path) {
    for _ in 0..3000 {
        if path.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never appeared", path.display());
}
