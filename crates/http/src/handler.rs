//! One request, from the socket's point of view to the guest and back:
//! request id, health endpoints, route, method, request limits, the
//! function's gate, the executor, and the one place failures become
//! responses.

use crate::body::{self, Body, Limited};
use crate::failure::Failure;
use crate::function::{Executor, GuestStats, Loaded};
use crate::metrics::{FunctionMetrics, Metrics};
use crate::server::{App, Peer};
use crate::spans;
use crate::table::Shared;
use crate::traces::{TRACEPARENT, TRACESTATE};
use crate::wagi;
use crate::{log, request_id};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited as LimitedRequest};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wedge_cgi as cgi;
use wedge_telemetry::metric::Gauge;
use wedge_telemetry::trace::{self, Context};

/// Shared by all connections.
pub struct Handler {
    pub table: Shared,
    pub health_prefix: String,
    /// Cleared when draining starts; the admin listener's `/ready` reads it too.
    pub ready: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    /// Requests carrying `x-wedge-debug: TOKEN` get an `x-wedge-stats` header
    /// and the full detail of a failure.
    pub debug_token: Option<String>,
    /// Largest header section accepted (names, values and separators).
    pub max_header_bytes: usize,
    /// Time a client has to send the whole request body.
    pub body_timeout: Duration,
}

impl App for Handler {
    fn call(
        &self,
        req: Request<Incoming>,
        peer: Peer,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        self.handle(req, peer)
    }

    fn stopping(&self) {
        self.ready.store(false, Ordering::Release);
    }
}

/// What the access log, metrics and traces learn about one request.
#[derive(Default)]
struct Seen {
    function: Option<Arc<FunctionMetrics>>,
    route: Option<Arc<str>>,
    guest: Option<GuestStats>,
    /// Unix nanoseconds when waiting for a slot began, and how long it took.
    queued: Option<(u64, std::time::Duration)>,
    /// Unix nanoseconds when the guest was called.
    guest_start: Option<u64>,
    /// The version that served, and how many the function has in traffic.
    version: Option<Arc<str>>,
    versions: usize,
}

impl Handler {
    pub fn new(table: Shared, health_prefix: String, metrics: Arc<Metrics>) -> Self {
        let defaults = wedge_manifest::Connections::default();
        Handler {
            table,
            health_prefix,
            ready: Arc::new(AtomicBool::new(true)),
            metrics,
            debug_token: None,
            max_header_bytes: defaults.max_header_bytes,
            body_timeout: defaults.body_timeout,
        }
    }

    /// Serves one request; never fails (failures are responses).
    pub async fn handle(&self, mut req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let start = Instant::now();
        let start_nanos = trace::now_nanos();
        let tracer = self.metrics.tracer.get();
        let mut parent_span = None;
        let span = tracer.map(|t| {
            let header = |n: &http::HeaderName| req.headers().get(n).and_then(|v| v.to_str().ok());
            let parent =
                header(&TRACEPARENT).and_then(|tp| Context::parse(tp, header(&TRACESTATE)));
            parent_span = parent.as_ref().map(|p| p.span_id);
            t.server_context(parent.as_ref())
        });
        if let Some(ctx) = &span {
            // The guest sees (and its outbound calls carry) this request's span.
            if let Ok(v) = HeaderValue::from_bytes(&ctx.traceparent_bytes()) {
                req.headers_mut().insert(TRACEPARENT, v);
            }
        }
        let path = req.uri().path().to_string();
        let version = req.version();
        let id = request_id::from_header(req.headers().get("x-request-id").map(|v| v.as_bytes()));
        let method = req.method().clone();
        let debug = self.debug_token.as_deref().is_some_and(|token| {
            req.headers()
                .get("x-wedge-debug")
                .is_some_and(|v| v.as_bytes() == token.as_bytes())
        });
        let mut seen = Seen::default();
        let result = self
            .dispatch(req, &path, peer, &id, &mut seen, span.as_ref())
            .await;
        let function = seen.function.as_ref().map_or("", |f| &f.name);
        let (mut response, outcome) = match result {
            Ok(r) => (r, "ok"),
            Err(failure) => {
                if let Some(f) = &seen.function {
                    match failure {
                        Failure::QueueFull
                        | Failure::QueueTimeout { .. }
                        | Failure::BodyTooLarge { .. }
                        | Failure::BodyTimeout { .. }
                        | Failure::BadRequest { .. }
                        | Failure::HeadersTooLarge { .. }
                        | Failure::MethodNotAllowed { .. } => f.rejected(failure.kind()),
                        Failure::Timeout { .. } => {
                            f.timeouts.inc();
                            f.error(failure.kind());
                        }
                        _ => f.error(failure.kind()),
                    }
                }
                if failure.status().is_server_error() {
                    log::line(
                        "warn",
                        &id,
                        if function.is_empty() { "-" } else { function },
                        &format!("{} {}", failure.status().as_u16(), failure.reason()),
                    );
                }
                (failure_response(&failure, &id, debug), failure.kind())
            }
        };
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", v);
        }
        if seen.versions > 1
            && let Some(v) = &seen.version
            && let Ok(v) = HeaderValue::from_str(v)
        {
            response.headers_mut().insert("x-wedge-version", v);
        }
        if debug
            && let Some(stats) = &seen.guest
            && let Ok(v) = HeaderValue::from_str(&stats.header())
        {
            response.headers_mut().insert("x-wedge-stats", v);
        }
        let status = response.status().as_u16();
        let route = seen.route.as_deref().unwrap_or("");
        let fn_version = seen.version.as_deref().unwrap_or("");
        let elapsed = start.elapsed();
        if let Some(f) = &seen.function {
            let peak = seen.guest.as_ref().and_then(|g| g.peak_memory);
            f.observe(elapsed, peak, status >= 500);
        }
        self.metrics
            .request_duration
            .with(&[
                method_label(&method),
                status_label(status),
                route,
                function,
                fn_version,
            ])
            .observe(elapsed.as_secs_f64());
        if let (Some(t), Some(ctx)) = (tracer, &span)
            && ctx.sampled
        {
            let spans = spans::for_request(&spans::Request {
                ctx,
                parent: parent_span,
                method: method_label(&method),
                path: &path,
                version,
                route,
                function,
                function_version: fn_version,
                status,
                request_id: &id,
                peer,
                start: start_nanos,
                end: trace::now_nanos(),
                queued: seen.queued,
                guest_start: seen.guest_start,
                guest: seen.guest.as_ref(),
            });
            t.emit(spans);
        }
        let trace_id = span.as_ref().map(Context::trace_id_hex);
        log::access(&log::Access {
            request_id: &id,
            trace_id: trace_id.as_deref(),
            method: method.as_str(),
            route,
            function,
            version: fn_version,
            status,
            duration: elapsed,
            guest: seen.guest.as_ref(),
            outcome,
        });
        response
    }

    async fn dispatch(
        &self,
        req: Request<Incoming>,
        path: &str,
        peer: Peer,
        id: &str,
        seen: &mut Seen,
        span: Option<&Context>,
    ) -> Result<Response<Body>, Failure> {
        let header_bytes: usize = req
            .headers()
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if header_bytes > self.max_header_bytes {
            return Err(Failure::HeadersTooLarge {
                limit: self.max_header_bytes,
            });
        }
        if let Some(rest) = path.strip_prefix(self.health_prefix.as_str()) {
            match rest {
                "/health" => return Ok(text(StatusCode::OK, "ok\n")),
                "/ready" if self.ready.load(Ordering::Acquire) => {
                    return Ok(text(StatusCode::OK, "ready\n"));
                }
                "/ready" => return Err(Failure::ShuttingDown),
                _ => {}
            }
        }
        let table = self.table.load_full();
        let Some(routed) = table.router.route(path) else {
            return Err(Failure::NoRoute);
        };
        let served = &table.functions[routed.target];
        let f: &Loaded = served.pick(req.headers());
        seen.function = Some(f.spec.metrics.clone());
        seen.version = Some(f.spec.version.clone());
        seen.versions = served.versions.len();
        seen.route = Some(routed.route.shared_template());
        let m = &f.spec.metrics;
        if let Some(methods) = &f.spec.methods
            && !methods.iter().any(|m| m == req.method().as_str())
        {
            return Err(Failure::MethodNotAllowed {
                allowed: methods.clone(),
            });
        }
        let limit = f.spec.limits.max_request_body;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(Failure::BodyTooLarge { limit });
        }
        m.active.inc();
        let _active = Decrement(&m.active);
        // The body is read before a slot is taken, under its own deadline:
        // a slow uploader holds a connection, never a guest's slot.
        let (parts, incoming) = req.into_parts();
        let body: Bytes = if incoming.is_end_stream() {
            // No body (most GETs): nothing to wait for, no timer to arm.
            Bytes::new()
        } else {
            self.read_body(incoming, limit).await?
        };
        let queue_start = trace::now_nanos();
        let slot = f.gate.enter().await?;
        m.queue_wait.observe(slot.queued.as_secs_f64());
        seen.queued = Some((queue_start, slot.queued));
        m.request_body.observe(body.len() as f64);
        m.invocations.inc();
        seen.guest_start = Some(trace::now_nanos());

        let response = match &f.executor {
            Executor::Wagi(wagi) => {
                let version = match parts.version {
                    http::Version::HTTP_2 => "HTTP/2.0",
                    http::Version::HTTP_10 => "HTTP/1.0",
                    _ => "HTTP/1.1",
                };
                let env = cgi::environment(&cgi::CgiRequest {
                    method: parts.method.as_str(),
                    uri: &parts.uri,
                    version,
                    headers: &parts.headers,
                    remote: peer.remote,
                    local: peer.local,
                    route: routed.route.template(),
                    script_name: routed.found.script_name,
                    path_info: routed.found.path_info,
                    params: &routed.found.params,
                    body_len: body.len(),
                    allow_authorization: f.spec.allow_authorization,
                });
                let (result, stats) = wagi
                    .call(wagi::Call {
                        request_id: id,
                        env,
                        args: cgi::arguments(&parts.uri),
                        body,
                    })
                    .await;
                seen.guest = Some(stats);
                result?
            }
            Executor::Http(http_fn) => {
                let mut parts = parts;
                absolute_uri(&mut parts, peer.local);
                let request = Request::from_parts(parts, body::full(body));
                let started = Instant::now();
                let (result, peak_memory) = http_fn.call(id, request, span.cloned()).await;
                let stats = GuestStats {
                    guest: started.elapsed(),
                    peak_memory,
                    ..GuestStats::default()
                };
                m.invoke_duration.observe(stats.guest.as_secs_f64());
                seen.guest = Some(stats);
                // The slot stays taken while the body streams from the instance.
                limit_response(
                    result?,
                    f.spec.limits.max_response_body,
                    id,
                    &f.spec.name,
                    slot,
                )?
            }
        };
        if let Some(n) = response.body().size_hint().exact() {
            m.response_body.observe(n as f64);
        }
        Ok(response)
    }
}

impl Handler {
    /// Reads a request body of at most `limit` bytes within `body_timeout`.
    async fn read_body(&self, incoming: Incoming, limit: u64) -> Result<Bytes, Failure> {
        let read = LimitedRequest::new(incoming, limit as usize).collect();
        match tokio::time::timeout(self.body_timeout, read).await {
            Err(_elapsed) => Err(Failure::BodyTimeout {
                after: self.body_timeout,
            }),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(Failure::BodyTooLarge { limit })
            }
            Ok(Err(e)) => Err(Failure::BadRequest {
                problem: format!("the request body could not be read: {e}"),
            }),
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }
}

/// Decrements a gauge when dropped.
struct Decrement<'a>(&'a Gauge);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The method as a metric label and span attribute: one of the methods of
/// RFC 9110 and PATCH, else `_OTHER` (the OpenTelemetry HTTP convention), so
/// that a client cannot mint series by inventing methods.
pub fn method_label(method: &http::Method) -> &'static str {
    use http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::CONNECT => "CONNECT",
        M::OPTIONS => "OPTIONS",
        M::TRACE => "TRACE",
        M::PATCH => "PATCH",
        _ => "_OTHER",
    }
}

/// Status codes as static strings, so labels cost no allocation.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        206 => "206",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        408 => "408",
        413 => "413",
        429 => "429",
        431 => "431",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => match status / 100 {
            1 => "1xx",
            2 => "2xx",
            3 => "3xx",
            4 => "4xx",
            _ => "5xx",
        },
    }
}

/// Gives the guest an absolute URI (scheme and authority), as a proxy sees
/// it: from the Host header, or the address the connection arrived on.
fn absolute_uri(parts: &mut http::request::Parts, local: SocketAddr) {
    if parts.uri.authority().is_some() {
        return;
    }
    let authority = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| local.to_string());
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if let Ok(uri) = format!("http://{authority}{pq}").parse() {
        parts.uri = uri;
    }
}

fn limit_response(
    response: Response<Body>,
    limit: u64,
    id: &str,
    function: &Arc<str>,
    slot: crate::gate::Entry,
) -> Result<Response<Body>, Failure> {
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(Failure::ResponseTooLarge { limit });
    }
    let (id, function) = (id.to_string(), function.clone());
    Ok(response.map(|b| {
        let on_exceeded = Box::new(move || {
            log::line(
                "warn",
                &id,
                &function,
                &format!("response body passed the limit of {limit} bytes; response cut off"),
            )
        });
        Limited::new(b, limit, on_exceeded)
            .holding(slot.into_permit())
            .boxed_unsync()
    }))
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The response for a failure: its status, and a plain-text summary with
/// the request id. The detail (a trap's message, a malformed response's
/// problem) goes to the log, and into the body only with `detail`, for
/// holders of the debug token.
pub fn failure_response(failure: &Failure, id: &str, detail: bool) -> Response<Body> {
    let status = failure.status();
    let reason = if detail {
        failure.reason()
    } else {
        failure.summary()
    };
    let body = format!(
        "{} {}: {reason} (request id {id})\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
    );
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(secs) = failure.retry_after() {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Failure::MethodNotAllowed { allowed } = failure
        && let Ok(v) = HeaderValue::from_str(&allowed.join(", "))
    {
        h.insert(header::ALLOW, v);
    }
    if matches!(failure, Failure::BodyTimeout { .. }) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}
