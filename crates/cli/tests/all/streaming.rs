//! Bodies that stream: a large upload through a streaming echo component, a
//! slow reader of a large response (component and WAGI), with the server's
//! memory staying flat, and the limits holding while bodies stream.

use crate::client::Server;
use crate::support::{Sandbox, example, guest, metric, s};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn app(sb: &Sandbox, extra: &str) -> Server {
    app_with(sb, extra, "")
}

/// The app with `server` keys in `[server]` besides the `[defaults]`.
fn app_with(sb: &Sandbox, extra: &str, server: &str) -> Server {
    let toml = format!(
        "[server]\n{server}\n[defaults]\ntimeout = \"120s\"\n{extra}\n\
         [[function]]\nname = \"demo\"\nsource = \"{}\"\nroutes = [\"/c/...\"]\n\
         [[function]]\nname = \"bytes\"\nsource = \"{}\"\nroutes = [\"/wagi/bytes\"]\n",
        s(&example("c-http/demo.component.wasm")),
        s(&guest("c/wagi/bytes.wasm")),
    );
    Server::start(&sb.cache_dir(), &["-f", &sb.manifest(&toml)])
}

/// The server's resident memory now, and its peak so far, in bytes.
fn memory(srv: &Server) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", srv.child.id())).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .map(|v| v.trim().parse::<u64>().unwrap() * 1024)
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Byte `i` of every generated body.
fn pattern(from: u64, len: usize) -> Vec<u8> {
    (0..len as u64).map(|i| ((from + i) % 251) as u8).collect()
}

/// A response read as it arrives: its head, then its body in pieces.
struct Reader {
    r: BufReader<TcpStream>,
    status: u16,
    headers: Vec<(String, String)>,
    /// Bytes left in the current chunk (chunked) or the body (length).
    left: u64,
    chunked: bool,
    done: bool,
}

impl Reader {
    fn new(stream: TcpStream) -> Reader {
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut r = BufReader::with_capacity(64 << 10, stream);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let status = line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            line.clear();
            r.read_line(&mut line).unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap();
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let left = get("content-length").map_or(0, |v| v.parse().unwrap());
        Reader {
            r,
            status,
            headers,
            left,
            chunked,
            done: !chunked && left == 0,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The next piece of the body, empty at its proper end; an error when
    /// the body was cut short.
    fn next(&mut self, max: usize) -> std::io::Result<Vec<u8>> {
        if self.done {
            return Ok(Vec::new());
        }
        if self.chunked && self.left == 0 {
            let mut line = String::new();
            if self.r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let size = u64::from_str_radix(line.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            if size == 0 {
                self.done = true;
                return Ok(Vec::new());
            }
            self.left = size;
        }
        let mut buf = vec![0; max.min(self.left as usize)];
        let n = self.r.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.truncate(n);
        self.left -= n as u64;
        if self.left == 0 {
            if self.chunked {
                let mut crlf = [0; 2];
                self.r.read_exact(&mut crlf)?;
            } else {
                self.done = true;
            }
        }
        Ok(buf)
    }

    /// Reads the rest of the body, checking it against the pattern from
    /// byte `at`; gives how many bytes came, and whether the body ended
    /// properly.
    fn check_rest(&mut self, mut at: u64) -> (u64, bool) {
        loop {
            match self.next(256 << 10) {
                Ok(piece) if piece.is_empty() => return (at, true),
                Ok(piece) => {
                    assert!(piece == pattern(at, piece.len()), "wrong bytes at {at}");
                    at += piece.len() as u64;
                }
                Err(_) => return (at, false),
            }
        }
    }
}

/// Sends a request head; the body, if any, is the caller's to write.
fn send_head(addr: SocketAddr, method: &str, path: &str, headers: &[&str]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s
}

/// Writes `len` pattern bytes, chunked when `chunked`.
fn send_body(mut s: TcpStream, len: u64, chunked: bool) -> std::io::Result<()> {
    let piece = 64 << 10;
    let mut at = 0;
    while at < len {
        let n = piece.min(len - at) as usize;
        if chunked {
            s.write_all(format!("{n:x}\r\n").as_bytes())?;
        }
        s.write_all(&pattern(at, n))?;
        if chunked {
            s.write_all(b"\r\n")?;
        }
        at += n as u64;
    }
    if chunked {
        s.write_all(b"0\r\n\r\n")?;
    }
    Ok(())
}

/// Memory the server may gain for a body many times larger.
const FLAT: u64 = 48 * MIB;

#[test]
fn a_large_upload_streams_through_an_echo_with_flat_memory() {
    let sb = Sandbox::new();
    let srv = app(
        &sb,
        "max_request_body = \"2GiB\"\nmax_response_body = \"2GiB\"",
    );
    // Warm up: the first call maps code and pools.
    let small = send_head(srv.addr, "POST", "/c/pipe", &["Content-Length: 1000"]);
    send_body(small.try_clone().unwrap(), 1000, false).unwrap();
    let mut r = Reader::new(small);
    assert_eq!(r.check_rest(0), (1000, true));
    let (before, _) = memory(&srv);

    let len = 256 * MIB;
    let up = send_head(
        srv.addr,
        "POST",
        "/c/pipe",
        &[&format!("Content-Length: {len}")],
    );
    let writer = {
        let up = up.try_clone().unwrap();
        std::thread::spawn(move || send_body(up, len, false))
    };
    let mut r = Reader::new(up);
    assert_eq!(r.status, 200);
    assert_eq!(r.check_rest(0), (len, true), "every byte echoed, in order");
    writer.join().unwrap().unwrap();
    let (_, peak) = memory(&srv);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "upload of {} MiB: peak RSS grew by {:.1} MiB",
        len / MIB,
        growth as f64 / MIB as f64
    );
    assert!(
        growth < FLAT,
        "RSS grew by {growth} bytes for a {len}-byte upload"
    );
    // Counted once it had all come.
    let count = metric(
        &srv,
        "http_server_request_body_size_bytes_count{function=\"demo\"}",
    );
    assert!(count >= 2.0, "{count}");
}

#[test]
fn a_slow_reader_of_a_large_response_holds_memory_flat() {
    let sb = Sandbox::new();
    let srv = app(&sb, "max_response_body = \"2GiB\"");
    let len = 256 * MIB;
    for path in [format!("/c/bytes?{len}"), format!("/wagi/bytes?{len}")] {
        let mut warm = Reader::new(send_head(
            srv.addr,
            "GET",
            &path.replace(&len.to_string(), "10"),
            &[],
        ));
        assert_eq!(warm.check_rest(0), (10, true), "{path}");
        let (before, _) = memory(&srv);
        let mut r = Reader::new(send_head(srv.addr, "GET", &path, &[]));
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        let first = r.next(MIB as usize).unwrap();
        assert_eq!(first, pattern(0, first.len()));
        // A reader that stops: the guest could write the whole body in
        // this time if nothing held it back.
        std::thread::sleep(Duration::from_millis(1500));
        let (_, paused) = memory(&srv);
        assert_eq!(r.check_rest(first.len() as u64), (len, true), "{path}");
        let (_, peak) = memory(&srv);
        let growth = peak.saturating_sub(before);
        eprintln!(
            "{path}: peak RSS grew by {:.1} MiB while paused, {:.1} MiB in all",
            paused.saturating_sub(before) as f64 / MIB as f64,
            growth as f64 / MIB as f64
        );
        assert!(growth < FLAT, "{path}: RSS grew by {growth} bytes");
    }
}

#[test]
fn limits_hold_while_bodies_stream() {
    let sb = Sandbox::new();
    let srv = app_with(
        &sb,
        "max_request_body = \"1MiB\"\nmax_response_body = \"1MiB\"",
        "body_timeout = \"1s\"",
    );
    // Too large, found out while streaming (no Content-Length to refuse
    // it by): 413, though the guest answered.
    let up = send_head(
        srv.addr,
        "POST",
        "/c/count",
        &["Transfer-Encoding: chunked"],
    );
    let writer = {
        let up = up.try_clone().unwrap();
        std::thread::spawn(move || send_body(up, 4 * MIB, true))
    };
    let mut r = Reader::new(up);
    assert_eq!(r.status, 413);
    let id = r.header("x-request-id").unwrap().to_string();
    let mut text = Vec::new();
    while let Ok(piece) = r.next(4096) {
        if piece.is_empty() {
            break;
        }
        text.extend(piece);
    }
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("limit of 1048576 bytes"), "{text}");
    assert!(text.contains(&id), "{text}");
    let _ = writer.join();

    // A body that stops arriving: 408 at the body deadline, though the
    // guest was already reading it.
    let mut up = send_head(srv.addr, "POST", "/c/count", &["Content-Length: 900000"]);
    up.write_all(&pattern(0, 300 << 10)).unwrap();
    let r = Reader::new(up);
    assert_eq!(r.status, 408);

    // A body within the limits streams whole (and its count is right).
    let up = send_head(
        srv.addr,
        "POST",
        "/c/count",
        &["Transfer-Encoding: chunked"],
    );
    send_body(up.try_clone().unwrap(), 900_000, true).unwrap();
    let mut r = Reader::new(up);
    assert_eq!(r.status, 200);
    let sum: u64 = pattern(0, 900_000).iter().map(|&b| b as u64).sum();
    let text = String::from_utf8(r.next(4096).unwrap()).unwrap();
    assert_eq!(text, format!("900000 bytes, sum {sum}\n"));

    // A response past max_response_body is cut off at the limit, from a
    // component and from WAGI alike, and the log says why.
    for path in ["/c/bytes?4194304", "/wagi/bytes?4194304"] {
        let mut r = Reader::new(send_head(srv.addr, "GET", path, &[]));
        assert_eq!(r.status, 200, "{path}");
        let id = r.header("x-request-id").unwrap().to_string();
        let (got, ended) = r.check_rest(0);
        assert!(!ended, "{path}: a cut-off body must not end properly");
        assert!(got <= MIB, "{path}: {got} bytes passed the limit");
        srv.wait_for_line(&[&format!("[{id}]"), "limit of 1048576 bytes"]);
    }
}

#[test]
fn a_wagi_guest_that_fails_mid_stream_cuts_the_body_and_a_small_one_keeps_its_status() {
    let sb = Sandbox::new();
    let srv = app(
        &sb,
        "max_concurrency = 1\nqueue = 4\nqueue_timeout = \"60s\"",
    );
    // Small: the whole answer is held until the guest ends, so a trap is a 500.
    let r = crate::client::get(srv.addr, "/wagi/bytes?1000&trap");
    assert_eq!(r.status, 500, "{}", r.text());
    // Large: it streams, so the trap can only cut the body short.
    let before = metric(
        &srv,
        "faas_errors_total{function=\"bytes\",reason=\"trap\"}",
    );
    let mut r = Reader::new(send_head(srv.addr, "GET", "/wagi/bytes?3000000&trap", &[]));
    assert_eq!(r.status, 200);
    let id = r.header("x-request-id").unwrap().to_string();
    let (got, ended) = r.check_rest(0);
    // What the guest wrote arrives, up to what was still in hyper's write
    // buffer when the body failed; the body does not end properly.
    assert!((64 << 10..=3_000_000).contains(&got), "{got}");
    assert!(!ended, "a failed body must not end properly");
    srv.wait_for_log(&format!(
        "[{id}] bytes: guest trapped: wasm trap: wasm `unreachable` instruction executed: the response had started"
    ));
    let after = metric(
        &srv,
        "faas_errors_total{function=\"bytes\",reason=\"trap\"}",
    );
    assert_eq!(after, before + 1.0);

    // A client that leaves mid-stream stops the guest and frees its slot
    // (there is one): the next request is served.
    let mut r = Reader::new(send_head(srv.addr, "GET", "/wagi/bytes?1073741824", &[]));
    assert_eq!(r.status, 200);
    r.next(MIB as usize).unwrap();
    drop(r);
    let r = crate::client::get(srv.addr, "/wagi/bytes?10");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, pattern(0, 10));
}
