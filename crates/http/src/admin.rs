//! The admin listener, separate from the data plane: `GET /metrics`
//! (Prometheus text, or OpenMetrics on request), `GET /live`, `GET /ready`,
//! `GET /` (the status page, see [`crate::page`]), and, with
//! `Authorization: Bearer TOKEN` only, `GET /status`, `GET /log-level`,
//! `PUT /log-level` (body: error, warn, info or debug),
//! `POST /profile?function=NAME&seconds=N[&format=folded]` and
//! `GET /triggers` (the state of every message trigger, as JSON).

use crate::server::{App, EPOCH_TICK, Peer};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use subtle::ConstantTimeEq;
use wedge_executor::body::{self, Body};
use wedge_observe::log;
use wedge_observe::metrics::Metrics;
use wedge_telemetry::encode::{self, OPENMETRICS_TEXT, PROMETHEUS_TEXT};
use wedge_trigger::table::Shared;

use crate::page::PAGE;

/// Largest admin request body.
pub const MAX_BODY: usize = 4 << 10;

/// The control plane's API under `/v1/`, served behind the admin token.
pub trait Control: Send + Sync {
    /// Largest request body it accepts for this request.
    fn max_body(&self, method: &Method, path: &str) -> usize;
    /// Answers one request (a JSON document).
    fn call(
        &self,
        method: Method,
        path: String,
        query: String,
        body: bytes::Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response<String>> + Send + '_>>;
}

/// The admin endpoints.
pub struct Admin {
    pub metrics: Arc<Metrics>,
    pub table: Shared,
    /// The engine whose pooling allocator `/metrics` reports.
    pub engine: Option<wasmtime::Engine>,
    /// `/v1/...`, when the server has a control plane.
    pub control: Option<Arc<dyn Control>>,
    /// Every endpoint but `/metrics`, `/live` and `/ready` needs it.
    pub token: Token,
    /// The data plane's readiness (cleared when it starts draining).
    pub ready: Arc<AtomicBool>,
    /// The triggers besides HTTP, for `GET /triggers` (a JSON array).
    pub triggers: Option<Arc<dyn wedge_trigger::status::Status>>,
}

/// The pooling allocator's occupancy, as `wasmtime.pool.*` gauges.
fn pool_samples(engine: &wasmtime::Engine, e: &mut encode::Encoder) {
    use wedge_telemetry::names as n;
    let Some(pool) = engine.pooling_allocator_metrics() else {
        return;
    };
    for (d, v) in [
        (
            n::WASMTIME_POOL_CORE_INSTANCES,
            pool.core_instances() as f64,
        ),
        (
            n::WASMTIME_POOL_COMPONENT_INSTANCES,
            pool.component_instances() as f64,
        ),
        (n::WASMTIME_POOL_MEMORIES, pool.memories() as f64),
        (n::WASMTIME_POOL_STACKS, pool.stacks() as f64),
        (
            n::WASMTIME_POOL_UNUSED_WARM_MEMORIES,
            f64::from(pool.unused_warm_memories()),
        ),
        (
            n::WASMTIME_POOL_UNUSED_MEMORY_RESIDENT,
            pool.unused_memory_bytes_resident() as f64,
        ),
    ] {
        e.sample(d.name, d.help, d.kind, "", v);
    }
}

/// The admin bearer token.
pub struct Token(Vec<u8>);

impl Token {
    pub fn new(token: &str) -> Result<Token, String> {
        let t = token.trim();
        if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "the admin token must be at least 16 printable characters, without spaces".into(),
            );
        }
        Ok(Token(t.as_bytes().to_vec()))
    }

    /// 32 random bytes from the OS, hex-encoded.
    pub fn generate() -> Result<String, String> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| format!("no OS randomness: {e}"))?;
        Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Whether `header` is `Bearer <this token>`, compared in constant time.
    fn admits(&self, header: Option<&HeaderValue>) -> bool {
        let Some(given) = header.and_then(|h| h.as_bytes().strip_prefix(b"Bearer ")) else {
            return false;
        };
        bool::from(given.ct_eq(&self.0))
    }
}

fn reply(status: StatusCode, content_type: &'static str, text: String) -> Response<Body> {
    let mut r = Response::new(body::full(text));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Samples a function's requests for a while and returns the profile.
async fn profile(query: &str, table: &Shared) -> Response<Body> {
    let plain = "text/plain; charset=utf-8";
    let bad = |m: String| reply(StatusCode::BAD_REQUEST, plain, m + "\n");
    let param = |k: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.to_string())
    };
    let Some(name) = param("function") else {
        return bad("give ?function=NAME (and optionally &seconds=N, &format=folded)".into());
    };
    let seconds: f64 = match param("seconds").map(|s| s.parse::<f64>()) {
        None => 5.0,
        Some(Ok(s)) if (0.1..=60.0).contains(&s) => s,
        Some(_) => return bad("seconds must be a number from 0.1 to 60".into()),
    };
    let folded = match param("format").as_deref() {
        None | Some("json") => false,
        Some("folded") => true,
        Some(other) => return bad(format!("unknown format `{other}` (json or folded)")),
    };
    let current = table.load_full();
    let Some(served) = current.functions.iter().find(|f| *f.name == *name) else {
        return reply(
            StatusCode::NOT_FOUND,
            plain,
            format!("no function `{name}`\n"),
        );
    };
    // The stable version unless `version=` names another.
    let f = match param("version") {
        None => served.stable(),
        Some(v) => match served.versions.iter().find(|l| *l.spec.version == *v) {
            Some(l) => l,
            None => {
                return reply(
                    StatusCode::NOT_FOUND,
                    plain,
                    format!("function `{name}` has no version `{v}` in traffic\n"),
                );
            }
        },
    };
    let code = f.executor.code();
    if let Err(e) = f
        .spec
        .profiling
        .start(code.engine(), &name, code, EPOCH_TICK)
    {
        return reply(StatusCode::CONFLICT, plain, e + "\n");
    }
    tokio::time::sleep(std::time::Duration::from_secs_f64(seconds)).await;
    match f.spec.profiling.finish() {
        Some(p) if folded => reply(StatusCode::OK, plain, p.folded),
        Some(p) => {
            let mut r = Response::new(body::full(p.json));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            if let Ok(v) = HeaderValue::from_str(&p.samples.to_string()) {
                r.headers_mut().insert("x-wedge-samples", v);
            }
            r
        }
        None => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            plain,
            "the profile was lost\n".into(),
        ),
    }
}

impl App for Admin {
    fn call(
        &self,
        req: Request<Incoming>,
        _peer: Peer,
    ) -> impl std::future::Future<Output = Response<Body>> + Send {
        self.handle(req)
    }
}

const PLAIN: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

impl Admin {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        match (req.method(), req.uri().path()) {
            (&Method::GET, "/metrics") => {
                let accept = req
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let om = encode::wants_openmetrics(accept);
                let ct = if om {
                    OPENMETRICS_TEXT
                } else {
                    PROMETHEUS_TEXT
                };
                return reply(
                    StatusCode::OK,
                    ct,
                    self.metrics.render(om, |e| {
                        if let Some(engine) = &self.engine {
                            pool_samples(engine, e);
                        }
                    }),
                );
            }
            (&Method::GET, "/live") => return reply(StatusCode::OK, PLAIN, "live\n".into()),
            // The page holds no data: it asks for the token, then `/status`.
            (&Method::GET, "/") => {
                let mut r = reply(StatusCode::OK, "text/html; charset=utf-8", PAGE.into());
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(
                        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                         connect-src 'self'; img-src 'self'; frame-ancestors 'none'",
                    ),
                );
                r.headers_mut().insert(
                    header::REFERRER_POLICY,
                    HeaderValue::from_static("no-referrer"),
                );
                return r;
            }
            (&Method::GET, "/ready") if self.ready.load(Ordering::Acquire) => {
                return reply(StatusCode::OK, PLAIN, "ready\n".into());
            }
            (&Method::GET, "/ready") => {
                return reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    PLAIN,
                    "shutting down\n".into(),
                );
            }
            _ => {}
        }
        if !self.token.admits(req.headers().get(header::AUTHORIZATION)) {
            let mut r = reply(
                StatusCode::UNAUTHORIZED,
                PLAIN,
                "401 Unauthorized: send `Authorization: Bearer TOKEN` (the admin token)\n".into(),
            );
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"wedge-admin\""),
            );
            return r;
        }
        if let Some(control) = &self.control
            && req.uri().path().starts_with("/v1/")
        {
            let (method, path) = (req.method().clone(), req.uri().path().to_string());
            let query = req.uri().query().unwrap_or("").to_string();
            let limit = control.max_body(req.method(), req.uri().path());
            let body = match Limited::new(req.into_body(), limit).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return reply(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        JSON,
                        format!("{{\"error\":\"request bodies are limited to {limit} bytes\"}}\n"),
                    );
                }
                Err(e) => {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        JSON,
                        format!("{{\"error\":{}}}\n", log::json_str(&e.to_string())),
                    );
                }
            };
            let answer = control.call(method, path, query, body).await;
            let (parts, json) = answer.into_parts();
            let mut r = reply(parts.status, JSON, json);
            r.headers_mut().extend(parts.headers);
            return r;
        }
        match (req.method(), req.uri().path()) {
            (&Method::POST, "/profile") => {
                profile(req.uri().query().unwrap_or(""), &self.table).await
            }
            (&Method::GET, "/status") => {
                let table = self.table.load_full();
                let mut r = reply(
                    StatusCode::OK,
                    JSON,
                    crate::page::json(&table, self.control.is_some()),
                );
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                r
            }
            (&Method::GET, "/triggers") => {
                let list = self
                    .triggers
                    .as_ref()
                    .map_or_else(|| "[]".into(), |t| t.json());
                reply(StatusCode::OK, JSON, format!("{list}\n"))
            }
            (&Method::GET, "/log-level") => {
                reply(StatusCode::OK, PLAIN, format!("{}\n", log::level()))
            }
            (&Method::PUT | &Method::POST, "/log-level") => {
                let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
                    Ok(b) => b.to_bytes(),
                    Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                        return reply(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            PLAIN,
                            format!("admin request bodies are limited to {MAX_BODY} bytes\n"),
                        );
                    }
                    Err(e) => return reply(StatusCode::BAD_REQUEST, PLAIN, format!("{e}\n")),
                };
                match log::set_level(&String::from_utf8_lossy(&body)) {
                    Ok(()) => reply(StatusCode::OK, PLAIN, format!("{}\n", log::level())),
                    Err(e) => reply(StatusCode::BAD_REQUEST, PLAIN, format!("{e}\n")),
                }
            }
            _ => reply(
                StatusCode::NOT_FOUND,
                PLAIN,
                "not found: try GET /metrics, /live, /ready, GET or PUT /log-level, \
                 POST /profile?function=NAME\n"
                    .into(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Token;
    use http::HeaderValue;

    #[test]
    fn admits_only_the_exact_bearer_token() {
        let t = Token::new("0123456789abcdef-secret").unwrap();
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert!(t.admits(Some(&h("Bearer 0123456789abcdef-secret"))));
        assert!(!t.admits(Some(&h("Bearer 0123456789abcdef-secreT"))));
        assert!(!t.admits(Some(&h("Bearer 0123456789abcdef-secret2"))));
        assert!(!t.admits(Some(&h("Basic 0123456789abcdef-secret"))));
        assert!(!t.admits(None));
        assert!(Token::new("short").is_err());
        assert!(Token::new("has a space in it!!").is_err());
        let g = Token::generate().unwrap();
        assert_eq!(g.len(), 64);
        assert_ne!(g, Token::generate().unwrap());
    }
}
