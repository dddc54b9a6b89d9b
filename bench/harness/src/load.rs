//! Load generation: a closed loop at fixed concurrency and a paced open loop.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::http::{Conn, Request};
use crate::stats::Samples;

/// What one run measured after its warm-up.
#[derive(Debug, Default)]
pub struct Outcome {
    pub ok: u64,
    /// Wrong status or broken connection.
    pub errors: u64,
    pub seconds: f64,
    pub samples: Samples,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.ok as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.samples.extend(other.samples);
    }
}

/// How a run is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Requests per second over all connections; None runs closed-loop flat out.
    pub rate: Option<f64>,
}

/// Runs `req` against `addr`; every answer must carry `status`.
pub async fn run(addr: SocketAddr, req: &Request, status: u16, shape: Shape) -> Outcome {
    let begin = Instant::now();
    let start = begin + shape.warmup;
    let end = start + shape.measure;
    let mut tasks = JoinSet::new();
    for i in 0..shape.connections {
        let req = req.clone();
        let interval = shape
            .rate
            .map(|r| Duration::from_secs_f64(shape.connections as f64 / r.max(0.001)));
        // Spread the paced connections evenly over one interval.
        let offset = interval.map(|d| d.mul_f64(i as f64 / shape.connections as f64));
        tasks.spawn(connection(addr, req, status, start, end, interval, offset));
    }
    let mut total = Outcome::default();
    while let Some(one) = tasks.join_next().await {
        total.merge(one.expect("load task panicked"));
    }
    total.seconds = shape.measure.as_secs_f64();
    total
}

async fn connection(
    addr: SocketAddr,
    req: Request,
    status: u16,
    start: Instant,
    end: Instant,
    interval: Option<Duration>,
    offset: Option<Duration>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut conn: Option<Conn> = None;
    let mut next = Instant::now() + offset.unwrap_or_default();
    loop {
        if let Some(step) = interval {
            if next >= end {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
            next += step;
        }
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        if conn.is_none() {
            match Conn::open(addr).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    out.errors += u64::from(sent >= start && sent <= end);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
        }
        let result = conn.as_mut().expect("connected").send(&req).await;
        let done = Instant::now();
        // Every answer that arrives inside the window counts, as in wrk: slow
        // servers (seconds per request at 64 connections) still get a rate.
        let counted = done >= start && done <= end;
        match result {
            Ok(resp) => {
                if resp.close {
                    conn = None;
                }
                if !counted {
                    continue;
                }
                if resp.status == status {
                    out.ok += 1;
                    let micros = (done - sent).as_micros().min(u128::from(u32::MAX)) as u32;
                    out.samples.push(micros);
                } else {
                    out.errors += 1;
                }
            }
            Err(_) => {
                conn = None;
                out.errors += u64::from(counted);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A keep-alive server answering every request with 200 "ok".
    async fn tiny_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    let mut pending = Vec::new();
                    loop {
                        let n = match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buf[..n]);
                        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            pending.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn closed_loop_counts_answers_and_wrong_statuses() {
        let addr = tiny_server().await;
        let req = Request::new("GET", "/", &[], b"");
        let shape = Shape {
            connections: 4,
            warmup: Duration::from_millis(50),
            measure: Duration::from_millis(300),
            rate: None,
        };
        let mut out = run(addr, &req, 200, shape).await;
        assert!(out.ok > 10, "{out:?}");
        assert_eq!(out.errors, 0);
        assert_eq!(out.samples.len() as u64, out.ok);
        assert!(out.samples.percentile_ms(50.0).is_some());
        let out = run(addr, &req, 404, shape).await;
        assert_eq!(out.ok, 0);
        assert!(out.errors > 10);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paced_loop_never_sends_faster_than_asked() {
        let addr = tiny_server().await;
        let req = Request::new("GET", "/", &[], b"");
        let shape = Shape {
            connections: 5,
            warmup: Duration::ZERO,
            measure: Duration::from_millis(500),
            rate: Some(200.0),
        };
        let out = run(addr, &req, 200, shape).await;
        // 200/s for 0.5 s is 100 sends at most; a loaded machine may send fewer.
        assert!(out.ok <= 100 && out.ok >= 20, "{out:?}");
    }

    #[tokio::test]
    async fn a_dead_server_is_all_errors() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let req = Request::new("GET", "/", &[], b"");
        let shape = Shape {
            connections: 1,
            warmup: Duration::ZERO,
            measure: Duration::from_millis(100),
            rate: None,
        };
        let out = run(addr, &req, 200, shape).await;
        assert_eq!(out.ok, 0);
        assert!(out.errors > 0);
    }
}
