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

use crate::conns::{Closed, ConnState, Registration, Registry, RequestGuard, Timeouts, Watched};
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
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
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

    /// Counts one connection the server closed, by the task that closes it.
    fn count_closed(&self, reason: Closed) {
        if let Some((_, c)) = self.closed.iter().find(|(r, _)| *r == reason) {
            c.inc();
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

/// Where connections and their requests run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// On this many threads, each with a current-thread runtime of its own.
    /// The listener's task accepts and hands each new connection to the
    /// thread with the fewest open connections; from then on the
    /// connection, its requests and their guests stay on that thread, with
    /// no hand-off between threads per request.
    PerCore(usize),
    /// As tasks of the calling (multi-threaded, work-stealing) runtime.
    Shared,
}

/// What every accept loop of one listener shares.
struct Shared<A> {
    app: Arc<A>,
    config: Arc<Listener>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    registry: Arc<Registry>,
    permits: Arc<Semaphore>,
    stopped: watch::Receiver<bool>,
}

impl<A> Clone for Shared<A> {
    fn clone(&self) -> Self {
        Shared {
            app: self.app.clone(),
            config: self.config.clone(),
            builder: self.builder.clone(),
            registry: self.registry.clone(),
            permits: self.permits.clone(),
            stopped: self.stopped.clone(),
        }
    }
}

/// A connection accepted for a worker thread, with its place in the
/// listener's connection limit.
struct Accepted {
    stream: std::net::TcpStream,
    remote: SocketAddr,
    held: Held,
}

/// What an accepted connection holds from the accept loop on: its place
/// under `max_connections`, and its entry in the registry. Registered at
/// accept, not when a worker thread gets to it, so that an eviction always
/// sees every connection holding a place: a burst that outruns the workers
/// still finds its victims, instead of waiting for a timeout to free a place.
struct Held {
    permit: OwnedSemaphorePermit,
    registration: Registration,
}

/// A worker thread as the accept loop sees it.
struct Worker {
    /// Unbounded, but each connection in it holds one of the listener's
    /// `max_connections` permits.
    hand: mpsc::UnboundedSender<Accepted>,
    /// Connections open on the thread.
    open: Arc<AtomicUsize>,
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
    serve_on(listener, Threads::Shared, app, config, shutdown, grace)
        .await
        .unwrap_or(false)
}

/// Serves `listener` as [`serve`] does, with its connections placed as
/// `threads` says. Connection limits, eviction and draining cover all
/// threads together. Fails only if a thread cannot be started.
pub async fn serve_on<A: App>(
    listener: TcpListener,
    threads: Threads,
    app: Arc<A>,
    config: Listener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<bool> {
    let builder = Arc::new(builder(&config.limits));
    let max = config.limits.max_connections as usize;
    let (stop, stopped) = watch::channel(false);
    let shared = Shared {
        app,
        config: Arc::new(config),
        builder,
        registry: Arc::new(Registry::default()),
        permits: Arc::new(Semaphore::new(max)),
        stopped,
    };
    // Told once draining is over: a current-thread runtime runs its
    // connections only while its thread is inside `block_on`.
    let (done, finished) = watch::channel(false);
    let mut workers = Vec::new();
    let mut handles = Vec::new();
    if let Threads::PerCore(n) = threads {
        for i in 0..n.max(1) {
            let (hand, mut arrivals) = mpsc::unbounded_channel::<Accepted>();
            let open = Arc::new(AtomicUsize::new(0));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (shared, load, mut finished) = (shared.clone(), open.clone(), finished.clone());
            let name = format!("wedge-{}-{i}", shared.config.name);
            handles.push(std::thread::Builder::new().name(name).spawn(move || {
                rt.block_on(async move {
                    while let Some(a) = arrivals.recv().await {
                        match TcpStream::from_std(a.stream) {
                            Ok(stream) => {
                                connection(&shared, stream, a.remote, a.held, Some(load.clone()))
                            }
                            Err(_) => {
                                load.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                    }
                    let _ = finished.wait_for(|done| *done).await;
                });
            })?);
            workers.push(Worker { hand, open });
        }
    }
    let accepting = tokio::spawn(accept(listener, shared.clone(), workers));
    let sweeper = tokio::spawn(sweep(shared.registry.clone(), shared.config.clone()));
    shutdown.await;
    shared.app.stopping();
    let _ = stop.send(true);
    accepting.abort();
    let drained = tokio::select! {
        all = shared.permits.acquire_many(max as u32) => all.is_ok(),
        () = tokio::time::sleep(grace) => false,
    };
    sweeper.abort();
    let _ = done.send(true);
    for h in handles {
        let _ = tokio::task::spawn_blocking(move || h.join()).await;
    }
    Ok(drained)
}

/// Accepts connections on `listener` until the server stops: serves each
/// here, or hands it to the least loaded of `workers` if there are any.
async fn accept<A: App>(listener: TcpListener, shared: Shared<A>, workers: Vec<Worker>) {
    let (config, registry, permits) = (&shared.config, &shared.registry, &shared.permits);
    let mut next = 0;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of descriptors and the like: back off, keep serving.
                let what = format!("{} listener: accept failed: {e}", config.name);
                wedge_observe::log::line("warn", "-", "-", &what);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                // The evicted connection's task counts it as it closes.
                registry.evict_oldest_idle();
                permits.clone().acquire_owned().await.expect("never closed")
            }
        };
        let held = Held {
            permit,
            registration: registry.open(),
        };
        let _ = stream.set_nodelay(true);
        if workers.is_empty() {
            connection(&shared, stream, remote, held, None);
            continue;
        }
        // The fewest open connections; ties taken in turn.
        next = (next + 1) % workers.len();
        let w = (0..workers.len())
            .map(|k| &workers[(next + k) % workers.len()])
            .min_by_key(|w| w.open.load(Ordering::Relaxed))
            .expect("at least one worker");
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        w.open.fetch_add(1, Ordering::Relaxed);
        let _ = w.hand.send(Accepted {
            stream,
            remote,
            held,
        });
    }
}

/// Serves one accepted connection as a task of the current runtime;
/// `open` counts it while it lasts.
fn connection<A: App>(
    shared: &Shared<A>,
    stream: TcpStream,
    remote: SocketAddr,
    held: Held,
    open: Option<Arc<AtomicUsize>>,
) {
    let local = stream.local_addr().unwrap_or(remote);
    let peer = Peer {
        remote,
        local,
        tls: shared.config.tls.is_some(),
    };
    let (app, builder, config) = (
        shared.app.clone(),
        shared.builder.clone(),
        shared.config.clone(),
    );
    let stopped = shared.stopped.clone();
    let Held {
        permit,
        mut registration,
    } = held;
    tokio::spawn(async move {
        config.open.inc();
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
                // Pinned outside the select so that the socket it holds is
                // closed only after the reason is counted: a client that
                // sees the close then reads the metrics finds it there.
                let mut handshake = Box::pin(tokio::time::timeout(
                    config.limits.tls_handshake_timeout,
                    tls.accept(stream),
                ));
                let stream = tokio::select! {
                    done = &mut handshake => match done {
                        Ok(Ok(tls_stream)) => Some(tls_stream),
                        Ok(Err(_)) => None,
                        Err(_) => {
                            config.count_closed(Closed::TlsHandshake);
                            None
                        }
                    },
                    Ok(reason) = &mut *closed => {
                        config.count_closed(reason);
                        None
                    }
                };
                drop(handshake);
                if let Some(stream) = stream {
                    conn.run(stream, closed, stopped, &config).await;
                }
            }
        }
        config.open.dec();
        drop(registration);
        drop(permit);
        if let Some(open) = open {
            open.fetch_sub(1, Ordering::Relaxed);
        }
    });
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
            done = conn.as_mut() => {
                // hyper's own head timeout (no head in time, the next one on
                // a kept-alive connection included) can close before the
                // sweep does: counted here, as the sweep would have.
                if let Err(e) = done
                    && e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_timeout)
                {
                    let reason = if state.served_any() {
                        Closed::Idle
                    } else {
                        Closed::HeadTimeout
                    };
                    config.count_closed(reason);
                }
                return;
            }
            Ok(reason) = closed => {
                config.count_closed(reason);
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
        // Each swept connection's task counts its reason as it closes,
        // before its socket does.
        registry.sweep(&timeouts);
    }
}
