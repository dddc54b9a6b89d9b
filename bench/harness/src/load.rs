//! Load generation: a closed loop at fixed concurrency and a paced open loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
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
    let turns: Vec<Arc<Notify>> = (0..shape.connections)
        .map(|_| Arc::new(Notify::new()))
        .collect();
    // No connection, no turns to hand out.
    let pacer = shape.rate.filter(|_| !turns.is_empty()).map(|rate| {
        let turns = turns.clone();
        std::thread::Builder::new()
            .name("bench-pacer".into())
            .spawn(move || pace(Schedule::new(begin, rate, turns.len()), end, &turns))
            .expect("spawn the pacer thread")
    });
    let mut tasks = JoinSet::new();
    for turn in &turns {
        let req = req.clone();
        let turn = pacer.is_some().then(|| turn.clone());
        tasks.spawn(connection(addr, req, status, start, end, turn));
    }
    let mut total = Outcome::default();
    while let Some(one) = tasks.join_next().await {
        total.merge(one.expect("load task panicked"));
    }
    if let Some(p) = pacer {
        p.join().expect("pacer thread panicked");
    }
    total.seconds = shape.measure.as_secs_f64();
    total
}

/// When each paced request is due and on which connection: one every
/// `1 / rate` seconds over all connections, taken in turn, so that the
/// requests of a paced run arrive evenly spread.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    begin: Instant,
    gap: Duration,
    connections: usize,
}

impl Schedule {
    fn new(begin: Instant, rate: f64, connections: usize) -> Schedule {
        Schedule {
            begin,
            gap: Duration::from_secs_f64(1.0 / rate.max(0.001)),
            connections: connections.max(1),
        }
    }

    /// The `k`th request: when it is due, and its connection.
    fn turn(&self, k: u64) -> (Instant, usize) {
        let due = self.begin + self.gap.mul_f64(k as f64);
        (due, (k % self.connections as u64) as usize)
    }
}

/// Gives each connection its turns, on a thread of its own. Tokio's timers
/// round every wait up to the next whole millisecond, so tasks sleeping until
/// their turn sent each millisecond's requests in one burst (15 at once at
/// 15k req/s): a paced run measured queueing behind that burst. A thread's
/// sleep wakes within tens of microseconds of the instant asked for.
fn pace(schedule: Schedule, end: Instant, turns: &[Arc<Notify>]) {
    // A turn due sooner than this is handed out at once: a sleep that
    // short would overshoot by more than it waits.
    const AT_ONCE: Duration = Duration::from_micros(20);
    for k in 0.. {
        let (due, conn) = schedule.turn(k);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now + AT_ONCE {
            std::thread::sleep(due - now);
        }
        turns[conn].notify_one();
    }
}

async fn connection(
    addr: SocketAddr,
    req: Request,
    status: u16,
    start: Instant,
    end: Instant,
    turn: Option<Arc<Notify>>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut conn: Option<Conn> = None;
    let over = tokio::time::sleep_until(end.into());
    tokio::pin!(over);
    loop {
        if let Some(t) = &turn {
            tokio::select! {
                () = t.notified() => {}
                () = &mut over => break,
            }
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
        recording_server().await.0
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

    #[test]
    fn the_schedule_spreads_requests_evenly_over_the_connections() {
        let begin = Instant::now();
        let s = Schedule::new(begin, 4000.0, 3);
        let turns: Vec<(Duration, usize)> = (0..7)
            .map(|k| {
                let (due, conn) = s.turn(k);
                (due - begin, conn)
            })
            .collect();
        let us = |n| Duration::from_micros(n);
        assert_eq!(
            turns,
            [
                (us(0), 0),
                (us(250), 1),
                (us(500), 2),
                (us(750), 0),
                (us(1000), 1),
                (us(1250), 2),
                (us(1500), 0)
            ]
        );
    }

    /// A keep-alive server answering every request with 200 "ok", noting
    /// when each request arrived.
    async fn recording_server() -> (SocketAddr, Arc<std::sync::Mutex<Vec<Instant>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                s.set_nodelay(true).unwrap();
                let log = log.clone();
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
                            log.lock().unwrap().push(Instant::now());
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
        (addr, seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn paced_requests_arrive_spread_not_in_bursts() {
        let (addr, seen) = recording_server().await;
        let req = Request::new("GET", "/", &[], b"");
        // 8,000 a second is one every 125 µs. Paced by tokio's millisecond
        // timer, eight left together on every tick: most gaps between
        // arrivals were a few microseconds.
        let shape = Shape {
            connections: 8,
            warmup: Duration::ZERO,
            measure: Duration::from_millis(500),
            rate: Some(8000.0),
        };
        let out = run(addr, &req, 200, shape).await;
        assert!(out.ok > 1000, "{out:?}");
        let mut at = seen.lock().unwrap().clone();
        at.sort();
        let mut gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort();
        let median = gaps[gaps.len() / 2];
        assert!(
            median >= Duration::from_micros(40),
            "median gap between arrivals {median:?}: requests come in bursts"
        );
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
