//! A listener for the data plane and the admin endpoints alike: accepts
//! connections (optionally TLS), speaks HTTP/1.1 with keep-alive and HTTP/2,
//! holds every client to the limits of [`Connections`], and drains
//! gracefully.
//!
//! Limits, each from `[server]` or a flag: the request head must arrive
//! within `request_head_timeout` (hyper's timer; for HTTP/1.1 the same timer
//! bounds the wait for the next request on a kept-alive connection), a
//! connection that never sends a request or idles with nothing in flight is
//! closed by a periodic sweep, as is one whose client takes no response
//! bytes for `send_timeout`, header count and bytes are capped, HTTP/2
//! streams and pending resets are capped (CVE-2023-44487), and when
//! `max_connections` are open the oldest idle connection makes room.

use crate::conns::{Closed, ConnState, Registry, RequestGuard, Timeouts, Watched};
use crate::tls::Tls;
use bytes::Bytes;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use wedge_executor::body::Body;
use wedge_manifest::Connections;
use wedge_telemetry::metric::{Counter, Family, Gauge};

pub use wedge_executor::invocation::Peer;
pub use wedge_runtime::ticker::EPOCH_TICK;

/// What a listener serves: one response per request, never an error.
pub trait App: Send + Sync + 'static {
    fn call(
        &self,
        req: Request<Incoming>,
        peer: Peer,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// Called once when the listener stops accepting (before draining).
    fn stopping(&self) {}
}

/// A listener's settings and the series it reports to.
pub struct Listener {
    /// `data` or `admin`: the `listener` label of its metrics.
    pub name: &'static str,
    pub limits: Connections,
    pub tls: Option<Tls>,
    open: Arc<Gauge>,
    closed: [(Closed, Arc<Counter>); 5],
}

impl Listener {
    pub fn new(
        name: &'static str,
        limits: Connections,
        tls: Option<Tls>,
        open: &Family<Gauge>,
        closed: &Family<Counter>,
    ) -> Self {
        let reason = |r: Closed| (r, closed.with(&[name, r.as_str()]));
        Listener {
            name,
            limits,
            tls,
            open: open.with(&[name]),
            closed: [
                reason(Closed::Evicted),
                reason(Closed::Idle),
                reason(Closed::HeadTimeout),
                reason(Closed::TlsHandshake),
                reason(Closed::SendTimeout),
            ],
        }
    }

    fn count_closed(&self, reason: Closed, n: usize) {
        if let Some((_, c)) = self.closed.iter().find(|(r, _)| *r == reason) {
            c.add(n as u64);
        }
    }
}

/// The response body of a request: releases the request's hold on its
/// connection once the body has been sent (or abandoned).
pub struct Tracked {
    inner: Body,
    _guard: RequestGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = wedge_executor::body::BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

fn builder(limits: &Connections) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.request_head_timeout)
        .max_headers(limits.max_header_count)
        // The head (request line and headers) must fit hyper's read buffer;
        // hyper answers 431 beyond it. 8 KiB more leaves room for the line.
        .max_buf_size((limits.max_header_bytes + (8 << 10)).max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .max_pending_accept_reset_streams(limits.http2_max_pending_resets)
        .max_local_error_reset_streams(limits.http2_max_pending_resets)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish for up to `grace`. Returns whether every
/// connection finished in time.
pub async fn serve<A: App>(
    listener: TcpListener,
    app: Arc<A>,
    config: Listener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> bool {
    let config = Arc::new(config);
    let builder = Arc::new(builder(&config.limits));
    let registry = Arc::new(Registry::default());
    let max = config.limits.max_connections as usize;
    let permits = Arc::new(Semaphore::new(max));
    let sweeper = tokio::spawn(sweep(registry.clone(), config.clone()));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    let what = format!("{} listener: accept failed: {e}", config.name);
                    wedge_observe::log::line("warn", "-", "-", &what);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if registry.evict_oldest_idle() {
                    config.count_closed(Closed::Evicted, 1);
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("never closed"),
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(remote);
        let peer = Peer { remote, local };
        let (app, builder, config) = (app.clone(), builder.clone(), config.clone());
        let (registration, stopped) = (registry.open(), stopped.clone());
        tokio::spawn(async move {
            config.open.inc();
            let mut registration = registration;
            let state = registration.state.clone();
            let closed = &mut registration.closed;
            let conn = Conn {
                app,
                peer,
                state,
                builder: &builder,
            };
            match &config.tls {
                None => conn.run(stream, closed, stopped, &config).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(
                        config.limits.tls_handshake_timeout,
                        tls.accept(stream),
                    );
                    let stream = tokio::select! {
                        done = handshake => match done {
                            Ok(Ok(tls_stream)) => Some(tls_stream),
                            Ok(Err(_)) => None,
                            Err(_) => {
                                config.count_closed(Closed::TlsHandshake, 1);
                                None
                            }
                        },
                        Ok(reason) = &mut *closed => {
                            config.count_closed(reason, 1);
                            None
                        }
                    };
                    if let Some(stream) = stream {
                        conn.run(stream, closed, stopped, &config).await;
                    }
                }
            }
            config.open.dec();
            drop(registration);
            drop(permit);
        });
    }
    drop(listener);
    app.stopping();
    let _ = stop.send(true);
    let drained = tokio::select! {
        all = permits.acquire_many(max as u32) => all.is_ok(),
        () = tokio::time::sleep(grace) => false,
    };
    sweeper.abort();
    drained
}

/// One connection's service.
struct Conn<'a, A> {
    app: Arc<A>,
    peer: Peer,
    state: Arc<ConnState>,
    builder: &'a auto::Builder<TokioExecutor>,
}

impl<A: App> Conn<'_, A> {
    /// Serves the connection until the client leaves, the server closes it
    /// (evicted, idle, silent), or shutdown drains it.
    async fn run<IO>(
        self,
        io: IO,
        closed: &mut oneshot::Receiver<Closed>,
        mut stopped: watch::Receiver<bool>,
        config: &Listener,
    ) where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Conn {
            app,
            peer,
            state,
            builder,
        } = self;
        let requests = state.clone();
        let service = service_fn(move |req| {
            let guard = requests.request();
            let app = app.clone();
            async move {
                let response = app.call(req, peer).await;
                Ok::<_, Infallible>(response.map(|inner| Tracked {
                    inner,
                    _guard: guard,
                }))
            }
        });
        let io = Watched::new(io, state.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => return,
            Ok(reason) = closed => {
                config.count_closed(reason, 1);
                // Idle: nothing is lost by closing now. A request that began
                // since the decision still gets its answer. A client that
                // stopped reading is cut off: its response cannot finish.
                if state.active() == 0 || reason == Closed::SendTimeout {
                    return;
                }
            }
            _ = stopped.changed() => {}
        }
        conn.as_mut().graceful_shutdown();
        let _ = conn.await;
    }
}

/// Closes connections that sent no request in time or idled too long.
async fn sweep(registry: Arc<Registry>, config: Arc<Listener>) {
    let l = &config.limits;
    let every = l
        .request_head_timeout
        .min(l.idle_timeout)
        .min(l.send_timeout)
        .div_f64(4.0)
        .clamp(Duration::from_millis(50), Duration::from_secs(1));
    let timeouts = Timeouts {
        head: l.request_head_timeout,
        idle: l.idle_timeout,
        send: l.send_timeout,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let swept = registry.sweep(&timeouts);
        config.count_closed(Closed::HeadTimeout, swept.head);
        config.count_closed(Closed::Idle, swept.idle);
        config.count_closed(Closed::SendTimeout, swept.send);
    }
}
