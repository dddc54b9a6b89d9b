//! An OTLP/HTTP sink that accepts and discards spans, so traces cost what they cost.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Starts the sink on the runtime; returns its address and a count of export requests.
pub async fn start() -> std::io::Result<(SocketAddr, Arc<AtomicU64>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let exports = Arc::new(AtomicU64::new(0));
    let count = exports.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut s = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    let mut length = 0usize;
                    loop {
                        line.clear();
                        match s.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) => {}
                        }
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((n, v)) = l.split_once(':')
                            && n.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if s.read_exact(&mut body).await.is_err() {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    let reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if s.get_mut().write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok((addr, exports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Conn, Request};

    #[tokio::test]
    async fn accepts_exports_on_a_kept_alive_connection() {
        let (addr, exports) = start().await.unwrap();
        let mut c = Conn::open(addr).await.unwrap();
        let req = Request::new("POST", "/v1/traces", &[], b"\x0a\x00");
        for _ in 0..3 {
            assert_eq!(c.send(&req).await.unwrap().status, 200);
        }
        assert_eq!(exports.load(Ordering::Relaxed), 3);
    }
}
