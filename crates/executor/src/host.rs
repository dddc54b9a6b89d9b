//! Per-store state of a `wasi:http` component instance, the views Wasmtime
//! asks for, and the outbound-request hook that enforces
//! `allowed_outbound_hosts`.

use crate::capture::Capture;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};
use wedge_manifest::OutboundRule;
use wedge_observe::log;
use wedge_observe::traces::Tracer;
use wedge_runtime::limits::Limits;
use wedge_telemetry::trace::{self, Context, Encoded, Span, SpanKind, Value};

/// Per-request data handed through the handler to the instance.
pub struct RequestSlot {
    pub(crate) id: String,
    /// Receives how the instance ended (its error, if any).
    pub(crate) ended: Mutex<Option<tokio::sync::oneshot::Sender<Result<(), wasmtime::Error>>>>,
    /// The request's span, parent of the guest's outbound calls.
    pub(crate) trace: Option<Context>,
    /// Where the spans of its outbound calls go.
    pub(crate) tracer: Option<Arc<Tracer>>,
    /// The serving instance's peak linear memory, once it has the request.
    pub(crate) peak: OnceLock<Arc<AtomicU64>>,
    /// The serving instance's CPU meter, when its function has a budget.
    pub(crate) cpu: OnceLock<wedge_runtime::cpu::CpuMeter>,
}

/// Store data of one component instance.
pub struct HttpHost {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub http: WasiHttpCtx,
    pub outbound: Outbound,
    pub limits: Limits,
    pub stdout: Capture,
    pub stderr: Capture,
    pub request_id: String,
    /// The request being served, to report how the instance ended.
    pub slot: Option<Arc<RequestSlot>>,
    /// Meters the guest's on-CPU time, when its function has a budget.
    pub cpu: Option<wedge_runtime::cpu::CpuMeter>,
    /// The epoch ticks while this store lives.
    pub active: wedge_runtime::ticker::Active,
}

impl WasiView for HttpHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpHost {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// Outbound HTTP policy of one function: denied unless a rule allows it.
pub struct Outbound {
    pub rules: Arc<[OutboundRule]>,
    pub function: Arc<str>,
    pub request_id: String,
    /// The current request's span; outbound calls become its children.
    pub trace: Option<Context>,
    pub tracer: Option<Arc<Tracer>>,
    /// Per-upstream circuit breakers, when the function has them.
    pub breakers: Option<Arc<crate::breaker::Upstreams>>,
}

type SendFuture = Box<
    dyn std::future::Future<
            Output = Result<
                (
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<
                        dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>>
                            + Send,
                    >,
                ),
                wasmtime_wasi_http::Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for Outbound {
    // The same set as Wasmtime's default filter, asked directly: the default
    // method builds an `Arc` closure on every call, and it is called for
    // every header of every request and response.
    fn is_forbidden_header(&mut self, name: &http::HeaderName) -> bool {
        wasmtime_wasi_http::DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn std::future::Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("http").to_string();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        if !wedge_manifest::outbound::allowed(&self.rules, &scheme, &host, port) {
            log::line(
                "warn",
                &self.request_id,
                &self.function,
                &format!(
                    "outbound request to {scheme}://{host}:{port} denied: not in allowed_outbound_hosts"
                ),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let mut options = options;
        let mut ticket = None;
        if let Some(upstreams) = &self.breakers {
            if let Some(t) = upstreams.config.timeout {
                let mut o = options.unwrap_or_default();
                o.connect_timeout = Some(o.connect_timeout.map_or(t, |c| c.min(t)));
                o.first_byte_timeout = Some(o.first_byte_timeout.map_or(t, |c| c.min(t)));
                options = Some(o);
            }
            if let Some(b) = upstreams.of(&format!("{host}:{port}")) {
                match b.admit() {
                    Ok(t) => ticket = Some(t),
                    // Open: the guest learns at once that the upstream is
                    // unavailable (the transition was logged).
                    Err(_) => {
                        return Box::new(async {
                            Err(wasmtime_wasi_http::Error::DestinationUnavailable)
                        });
                    }
                }
            }
        }
        let mut request = request;
        let client = self.trace.as_ref().map(Context::child);
        if let Some(c) = &client
            && let Ok(v) = http::HeaderValue::from_bytes(&c.traceparent_bytes())
        {
            request
                .headers_mut()
                .insert(wedge_observe::traces::TRACEPARENT, v);
            // W3C trace context: vendors' state travels with the trace,
            // unless the guest set its own.
            if let Some(state) = &c.tracestate
                && !request
                    .headers()
                    .contains_key(wedge_observe::traces::TRACESTATE)
                && let Ok(v) = http::HeaderValue::from_str(state)
            {
                request
                    .headers_mut()
                    .insert(wedge_observe::traces::TRACESTATE, v);
            }
        }
        let tracer = self.tracer.clone();
        let parent = self.trace.as_ref().map(|t| t.span_id);
        let method = request.method().to_string();
        let url = request.uri().to_string();
        Box::new(async move {
            use http_body_util::BodyExt;
            let start = trace::now_nanos();
            let result = wasmtime_wasi_http::default_send_request(request, options).await;
            if let Some(t) = ticket {
                // An upstream that answers 5xx is failing as much as one
                // that does not answer.
                t.done(matches!(&result, Ok((r, _)) if r.status().as_u16() < 500));
            }
            if let (Some(t), Some(c)) = (tracer, client)
                && c.sampled
            {
                let status = result.as_ref().ok().map(|(r, _)| r.status().as_u16());
                let attributes = [
                    ("http.request.method", Value::Str(&method)),
                    ("server.address", Value::Str(&host)),
                    ("server.port", Value::Int(i64::from(port))),
                    ("url.full", Value::Str(&url)),
                    (
                        "http.response.status_code",
                        Value::Int(i64::from(status.unwrap_or(0))),
                    ),
                ];
                let mut spans = Encoded::default();
                spans.push(&Span {
                    trace_id: c.trace_id,
                    span_id: c.span_id,
                    parent_span_id: parent,
                    name: &method,
                    kind: SpanKind::Client,
                    start_unix_nanos: start,
                    end_unix_nanos: trace::now_nanos(),
                    // The status only when there was a response.
                    attributes: &attributes[..if status.is_some() { 5 } else { 4 }],
                    error: result.is_err(),
                });
                t.emit(spans);
            }
            let (response, io) = result?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn std::future::Future<Output = _> + Send>,
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_headers_are_wasmtimes_default_set() {
        let mut hooks = Outbound {
            rules: Arc::from(Vec::new()),
            function: Arc::from("f"),
            request_id: "r".into(),
            trace: None,
            tracer: None,
            breakers: None,
        };
        let filter = hooks.forbidden_header_filter();
        let names = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "transfer-encoding",
            "upgrade",
            "host",
            "http2-settings",
            "proxy-authorization",
            "content-type",
            "x-request-id",
            "authorization",
        ];
        let mut forbidden = 0;
        for n in names {
            let name = http::HeaderName::from_static(n);
            assert_eq!(hooks.is_forbidden_header(&name), filter(&name), "{n}");
            forbidden += usize::from(hooks.is_forbidden_header(&name));
        }
        assert_eq!(forbidden, 8);
    }
}
