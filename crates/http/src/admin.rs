//! The admin listener, separate from the data plane: `GET /metrics`
//! (Prometheus text, or OpenMetrics on request), `GET /log-level` and
//! `PUT /log-level` (body: error, warn, info or debug).

use crate::body::{self, Body};
use crate::log;
use crate::metrics::Metrics;
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

async fn handle(req: Request<Incoming>, metrics: Arc<Metrics>) -> Response<Body> {
    let plain = "text/plain; charset=utf-8";
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
            "not found: try GET /metrics, GET or PUT /log-level\n".into(),
        ),
    }
}

/// Serves the admin endpoints until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let builder = auto::Builder::new(TokioExecutor::new());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let metrics = metrics.clone();
        let service = service_fn(move |req| {
            let metrics = metrics.clone();
            async move { Ok::<_, Infallible>(handle(req, metrics).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
