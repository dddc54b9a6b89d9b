//! A minimal HTTP/1.1 client over keep-alive connections, just enough for load.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A request serialised once and sent many times.
#[derive(Debug, Clone)]
pub struct Request {
    pub bytes: std::sync::Arc<[u8]>,
}

impl Request {
    pub fn new(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        let mut b = format!("{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n").into_bytes();
        for (name, value) in headers {
            b.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !body.is_empty() || method == "POST" {
            b.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(body);
        Request { bytes: b.into() }
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The server asked to close the connection after this response.
    pub close: bool,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One keep-alive connection.
pub struct Conn {
    stream: BufReader<TcpStream>,
    line: String,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::with_capacity(64 * 1024, stream),
            line: String::new(),
        })
    }

    pub async fn send(&mut self, req: &Request) -> io::Result<Response> {
        self.stream.get_mut().write_all(&req.bytes).await?;
        self.read_response().await
    }

    async fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        if self.stream.read_line(&mut self.line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(self.line.trim_end_matches(['\r', '\n']))
    }

    async fn read_response(&mut self) -> io::Result<Response> {
        let status_line = self.read_line().await?;
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        loop {
            let line = self.read_line().await?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("bad header {line:?}")))?;
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let get = |n: &str| {
            headers
                .iter()
                .find(|(h, _)| h == n)
                .map(|(_, v)| v.as_str())
        };
        let close = get("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length = get("content-length").and_then(|v| v.parse::<usize>().ok());
        let mut body = Vec::new();
        if chunked {
            self.read_chunked(&mut body).await?;
        } else if let Some(n) = length {
            body.resize(n, 0);
            self.stream.read_exact(&mut body).await?;
        } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
            self.stream.read_to_end(&mut body).await?;
            return Ok(Response {
                status,
                headers,
                body,
                close: true,
            });
        }
        Ok(Response {
            status,
            headers,
            body,
            close,
        })
    }

    async fn read_chunked(&mut self, body: &mut Vec<u8>) -> io::Result<()> {
        loop {
            let size_line = self.read_line().await?;
            let hex = size_line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(hex, 16)
                .map_err(|_| bad(format!("bad chunk size {size_line:?}")))?;
            if size == 0 {
                // Trailers, then the blank line.
                while !self.read_line().await?.is_empty() {}
                return Ok(());
            }
            let start = body.len();
            body.resize(start + size, 0);
            self.stream.read_exact(&mut body[start..]).await?;
            self.read_line().await?;
        }
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// One request on a fresh connection.
pub async fn once(addr: SocketAddr, req: &Request) -> io::Result<Response> {
    Conn::open(addr).await?.send(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn serve_once(reply: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let mut seen = Vec::new();
            // Two requests on one connection, answered with the same reply.
            for _ in 0..2 {
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap();
                    seen.extend_from_slice(&buf[..n]);
                }
                seen.clear();
                s.write_all(reply).await.unwrap();
            }
        });
        addr
    }

    #[tokio::test]
    async fn reads_length_and_chunked_bodies_on_one_connection() {
        let addr = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
        let mut c = Conn::open(addr).await.unwrap();
        let req = Request::new("GET", "/", &[], b"");
        for _ in 0..2 {
            let r = c.send(&req).await.unwrap();
            assert_eq!(
                (r.status, r.body.as_slice(), r.close),
                (200, &b"hello"[..], false)
            );
        }
        let addr = serve_once(
            b"HTTP/1.1 401 No\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        )
        .await;
        let mut c = Conn::open(addr).await.unwrap();
        for _ in 0..2 {
            let r = c.send(&req).await.unwrap();
            assert_eq!((r.status, r.body.as_slice()), (401, &b"abcde"[..]));
            assert_eq!(r.header("Transfer-Encoding"), Some("chunked"));
        }
    }

    #[test]
    fn requests_carry_length_and_headers() {
        let r = Request::new(
            "POST",
            "/json",
            &[("content-type", "application/json")],
            b"{}",
        );
        let text = String::from_utf8(r.bytes.to_vec()).unwrap();
        assert_eq!(
            text,
            "POST /json HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}
