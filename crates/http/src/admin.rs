//! The admin listener, separate from the data plane: `GET /metrics`
//! (Prometheus text, or OpenMetrics on request), `GET /log-level` and
//! `PUT /log-level` (body: error, warn, info or debug), and
//! `POST /profile?function=NAME&seconds=N[&format=folded]`.

use crate::body::{self, Body};
use crate::function::Executor;
use crate::log;
use crate::metrics::Metrics;
use crate::profile::Code;
use crate::server::EPOCH_TICK;
use crate::table::Shared;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;
use wedge_telemetry::encode::{self, OPENMETRICS_TEXT, PROMETHEUS_TEXT};

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
    let Some(f) = current.functions.iter().find(|f| *f.spec.name == *name) else {
        return reply(
            StatusCode::NOT_FOUND,
            plain,
            format!("no function `{name}`\n"),
        );
    };
    let (engine, code) = match &f.executor {
        Executor::Wagi(wagi) => (wagi.module().engine(), Code::Module(wagi.module())),
        Executor::Http(http) => (http.component().engine(), Code::Component(http.component())),
    };
    if let Err(e) = f.spec.profiling.start(engine, &name, code, EPOCH_TICK) {
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

async fn handle(req: Request<Incoming>, metrics: Arc<Metrics>, table: Shared) -> Response<Body> {
    let plain = "text/plain; charset=utf-8";
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/profile") => profile(req.uri().query().unwrap_or(""), &table).await,
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
            reply(StatusCode::OK, ct, metrics.render(om))
        }
        (&Method::GET, "/log-level") => reply(StatusCode::OK, plain, format!("{}\n", log::level())),
        (&Method::PUT | &Method::POST, "/log-level") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return reply(StatusCode::BAD_REQUEST, plain, format!("{e}\n")),
            };
            match log::set_level(&String::from_utf8_lossy(&body)) {
                Ok(()) => reply(StatusCode::OK, plain, format!("{}\n", log::level())),
                Err(e) => reply(StatusCode::BAD_REQUEST, plain, format!("{e}\n")),
            }
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            plain,
            "not found: try GET /metrics, GET or PUT /log-level, POST /profile?function=NAME\n"
                .into(),
        ),
    }
}

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, table: Shared) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (metrics, table) = (metrics.clone(), table.clone());
        let service = service_fn(move |req| {
            let (metrics, table) = (metrics.clone(), table.clone());
            async move { Ok::<_, Infallible>(handle(req, metrics, table).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
