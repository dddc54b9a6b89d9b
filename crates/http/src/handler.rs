//! The HTTP trigger: one request, from the socket's point of view to the
//! pipeline and back — request id, health endpoints, route, version pick,
//! method, the request body under its limits and deadline, then
//! `wedge_trigger::pipeline` for everything a function call shares with
//! other triggers, and [`crate::status`] for failures. What is HTTP's own is
//! recorded here: `http.server.*` metrics, the SERVER span, the access line.

use crate::server::{App, Peer};
use crate::{spans, status, upload};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wedge_executor::body::{self, Body, RequestBody};
use wedge_executor::failure::Failure;
use wedge_executor::function::Executor;
use wedge_executor::invocation::{Invocation, Route};
use wedge_manifest::CloudEvents;
use wedge_manifest::rate::RateKey;
use wedge_observe::log;
use wedge_observe::traces::{TRACEPARENT, TRACESTATE};
use wedge_telemetry::metric::Gauge;
use wedge_telemetry::trace::{self, Context};
use wedge_trigger::cloudevents;
use wedge_trigger::pipeline::{Ending, Pipeline, Record};
use wedge_trigger::rate::{self, Bucket};
use wedge_trigger::request_id;
use wedge_trigger::table::Shared;

/// Shared by all connections.
pub struct Handler {
    pub table: Shared,
    pub health_prefix: String,
    /// Cleared when draining starts; the admin listener's `/ready` reads it too.
    pub ready: Arc<AtomicBool>,
    pub pipeline: Pipeline,
    /// Requests carrying `x-wedge-debug: TOKEN` get an `x-wedge-stats` header
    /// and the full detail of a failure.
    pub debug_token: Option<String>,
    /// Largest header section accepted (names, values and separators).
    pub max_header_bytes: usize,
    /// Time a client has to send the whole request body.
    pub body_timeout: Duration,
    /// Where functions with `cloudevents = "async"` send their events.
    pub ingress: Option<Arc<dyn wedge_trigger::ingress::Ingress>>,
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

impl Handler {
    pub fn new(table: Shared, health_prefix: String, pipeline: Pipeline) -> Self {
        let defaults = wedge_manifest::Connections::default();
        Handler {
            table,
            health_prefix,
            ready: Arc::new(AtomicBool::new(true)),
            pipeline,
            debug_token: None,
            max_header_bytes: defaults.max_header_bytes,
            body_timeout: defaults.body_timeout,
            ingress: None,
        }
    }

    /// Serves one request; never fails (failures are responses).
    pub async fn handle(&self, mut req: Request<Incoming>, peer: Peer) -> Response<Body> {
        let start = Instant::now();
        let start_nanos = trace::now_nanos();
        let tracer = self.pipeline.tracer.as_ref();
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
        let mut seen = Record::default();
        let mut route_seen = None;
        let mut rate = RateHeaders::default();
        let result = self
            .dispatch(
                req,
                &path,
                peer,
                &id,
                (&mut seen, &mut route_seen, &mut rate),
                span.as_ref(),
            )
            .await;
        let (mut response, failure) = match result {
            Ok(r) => (r, None),
            Err(f) => (status::response(&f, &id, debug), Some(f)),
        };
        let answer = response.status();
        let ending = match &failure {
            None => Ending::Answered(answer.as_u16()),
            Some(failure) => Ending::Failed {
                failure,
                answer: answer.as_str(),
            },
        };
        self.pipeline.finish(&seen, &id, ending, start.elapsed());
        let outcome = failure.as_ref().map_or("ok", Failure::kind);
        let function = seen.function_name();
        if let Ok(v) = HeaderValue::from_str(&id) {
            response.headers_mut().insert("x-request-id", v);
        }
        rate.insert(response.headers_mut());
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
        let route = route_seen.as_deref().unwrap_or("");
        let fn_version = seen.version.as_deref().unwrap_or("");
        let elapsed = start.elapsed();
        self.pipeline
            .metrics
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
                record: &seen,
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
        (seen, route_seen, rate): (&mut Record, &mut Option<Arc<str>>, &mut RateHeaders),
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
        if let Some(node) = &table.node_rate {
            rate.take(node, b"")?;
        }
        let Some(routed) = table.router.route(path) else {
            return Err(Failure::NoRoute);
        };
        let served = &table.functions[routed.target];
        let f = served.pick(req.headers());
        seen.chose(f, served.versions.len());
        *route_seen = Some(routed.route.shared_template());
        let m = &f.spec.metrics;
        if let Some(methods) = &f.spec.methods
            && !methods.iter().any(|m| m == req.method().as_str())
        {
            return Err(Failure::MethodNotAllowed {
                allowed: methods.clone(),
            });
        }
        for bucket in &served.rate {
            let client;
            let key: &[u8] = match &bucket.config.key {
                RateKey::Function => b"",
                RateKey::Client => {
                    client = ip_octets(peer.remote.ip());
                    &client.0[..client.1]
                }
                RateKey::Header(name) => req.headers().get(name).map_or(&[], |v| v.as_bytes()),
                RateKey::Param(name) => routed
                    .found
                    .params
                    .iter()
                    .find(|(k, _)| k == name)
                    .map_or(&[], |(_, v)| v.as_bytes()),
            };
            rate.take(bucket, key)?;
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
        // The body (or, when large, its start) is read before a slot is
        // taken, under its own deadline: a slow uploader holds a connection,
        // never a guest's slot. See `upload`.
        let (parts, incoming) = req.into_parts();
        let (body, watch) = if incoming.is_end_stream() {
            // No body (most GETs): nothing to wait for, no timer to arm.
            (RequestBody::Full(Bytes::new()), None)
        } else {
            let bounds = upload::Bounds {
                limit,
                timeout: self.body_timeout,
                streamable: f.config.cloudevents == CloudEvents::Off
                    && matches!(f.executor, Executor::Http(_) | Executor::Sdk(_)),
            };
            upload::read(incoming, bounds, m.request_body.clone()).await?
        };
        let (parts, body) = match (f.config.cloudevents, body) {
            (CloudEvents::Off, body) => (parts, body),
            (_, RequestBody::Streaming(_)) => {
                return Err(Failure::Internal {
                    message: "a CloudEvents body was streamed".into(),
                });
            }
            (CloudEvents::Sync, RequestBody::Full(body)) => {
                let mut parts = parts;
                let body = cloudevents::to_binary(&mut parts, body)
                    .map_err(|problem| Failure::BadEvent { problem })?;
                (parts, RequestBody::Full(body))
            }
            (CloudEvents::Async, RequestBody::Full(body)) => {
                let events = cloudevents::events(&parts, body)
                    .map_err(|problem| Failure::BadEvent { problem })?;
                let Some(ingress) = &self.ingress else {
                    return Err(Failure::Internal {
                        message: "asynchronous CloudEvents need --state".into(),
                    });
                };
                let seqs = ingress.accept(&served.name, events).await?;
                return Ok(accepted(&seqs));
            }
        };
        let invocation = Invocation {
            id,
            head: parts,
            body,
            peer,
            route: Route {
                template: routed.route.template(),
                script_name: routed.found.script_name,
                path_info: routed.found.path_info,
                params: &routed.found.params,
            },
            trace: span.cloned(),
            tracer: None,
        };
        let result = self.pipeline.invoke(f, invocation, seen).await;
        // A streamed body that went wrong is the client's failure, whatever
        // the guest made of it (unless it had answered already).
        match watch.and_then(|w| w.failure(limit, self.body_timeout)) {
            Some(failure) => Err(failure),
            None => result,
        }
    }
}

/// The rate limits a request passed (or the one that turned it away), as
/// the IETF `RateLimit-Policy` and `RateLimit` fields
/// (draft-ietf-httpapi-ratelimit-headers).
#[derive(Default)]
struct RateHeaders {
    policy: Vec<String>,
    state: Vec<String>,
}

impl RateHeaders {
    /// Takes a token from `bucket`; turned away, the failure to answer.
    fn take(&mut self, bucket: &Bucket, key: &[u8]) -> Result<(), Failure> {
        self.policy.push(rate::policy_item(bucket));
        match bucket.take(key) {
            Ok(left) => {
                self.state.push(rate::state_item(bucket, left));
                Ok(())
            }
            Err(limited) => {
                self.state.push(rate::state_item(bucket, limited.left()));
                Err(Failure::RateLimited {
                    policy: limited.policy,
                    retry_after: limited.retry_after,
                })
            }
        }
    }

    fn insert(&self, headers: &mut http::HeaderMap) {
        for (name, items) in [
            ("ratelimit-policy", &self.policy),
            ("ratelimit", &self.state),
        ] {
            if !items.is_empty()
                && let Ok(v) = HeaderValue::from_str(&items.join(", "))
            {
                headers.insert(name, v);
            }
        }
    }
}

/// An IP address's bytes (and how many there are), as a rate-limit key,
/// without an allocation per request.
fn ip_octets(ip: std::net::IpAddr) -> ([u8; 16], usize) {
    let mut out = [0; 16];
    match ip {
        std::net::IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (out, 4)
        }
        std::net::IpAddr::V6(v6) => (v6.octets(), 16),
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

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// 202 Accepted for events stored for delivery, with their sequence numbers.
fn accepted(seqs: &[u64]) -> http::Response<Body> {
    let list: Vec<String> = seqs.iter().map(u64::to_string).collect();
    let json = format!(
        "{{\"accepted\":{},\"events\":[{}]}}\n",
        seqs.len(),
        list.join(",")
    );
    let mut r = http::Response::new(wedge_executor::body::full(Bytes::from(json)));
    *r.status_mut() = StatusCode::ACCEPTED;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}
