//! OTLP/HTTP traces: an OTLP receiver inside the test decodes the protobuf
//! wedge posts and checks span names, parent/child links, and a trace id
//! carried from the client through the guest to its outbound call.

use crate::client::{Server, get, read_request, request};
use crate::support::{Sandbox, example, guest, s};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value};
use prost::Message;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A decoded span: the fields the test looks at.
#[derive(Debug, Clone, Default)]
pub(crate) struct Span {
    pub trace_id: String,
    pub span_id: String,
    pub parent: String,
    pub name: String,
    pub kind: u64,
    /// Attributes, values as text.
    pub attrs: Vec<(String, String)>,
}

impl Span {
    pub(crate) fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        other => panic!("unexpected attribute value {other:?}"),
    }
}

/// Decodes an export with opentelemetry-proto's generated types (an
/// implementation independent of wedge's encoder): its spans, and the
/// resource's attributes.
pub(crate) fn decode(export: &[u8]) -> (Vec<Span>, Vec<(String, String)>) {
    let export = ExportTraceServiceRequest::decode(export).expect("a valid OTLP export");
    let mut spans = Vec::new();
    let mut resource = Vec::new();
    for rs in &export.resource_spans {
        for kv in rs.resource.iter().flat_map(|r| &r.attributes) {
            resource.push((kv.key.clone(), text(&kv.value)));
        }
        for sp in rs.scope_spans.iter().flat_map(|ss| &ss.spans) {
            spans.push(Span {
                trace_id: hex(&sp.trace_id),
                span_id: hex(&sp.span_id),
                parent: hex(&sp.parent_span_id),
                name: sp.name.clone(),
                kind: sp.kind as u64,
                attrs: sp
                    .attributes
                    .iter()
                    .map(|kv| (kv.key.clone(), text(&kv.value)))
                    .collect(),
            });
        }
    }
    (spans, resource)
}

/// An OTLP/HTTP receiver that accepts every export: its address, and the
/// spans received so far.
pub(crate) fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<Span>>>) {
    let otlp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = otlp.local_addr().unwrap();
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        for conn in otlp.incoming() {
            let Ok(mut c) = conn else { continue };
            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
            let (_, body) = read_request(&mut c, ok);
            sink.lock().unwrap().extend(decode(&body).0);
        }
    });
    (addr, received)
}

/// Decompresses with the system's `gzip`, not the crate wedge compresses with.
fn gunzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .arg("-dc")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gzip");
    child.stdin.take().unwrap().write_all(body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "gzip -dc failed");
    out.stdout
}

#[test]
fn traces_continue_the_client_context_through_the_guest_to_outbound_calls() {
    // The OTLP receiver.
    let otlp = TcpListener::bind("127.0.0.1:0").unwrap();
    let otlp_addr = otlp.local_addr().unwrap();
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let resources: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let (sink, resource_sink) = (received.clone(), resources.clone());
    std::thread::spawn(move || {
        // The first export is turned away with a 503: the exporter must
        // retry it rather than lose its spans.
        let mut first = true;
        for conn in otlp.incoming() {
            let Ok(mut c) = conn else { continue };
            let answer: &[u8] = if first {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            };
            let turned_away = first;
            first = false;
            let (head, body) = read_request(&mut c, answer);
            let lower = head.to_ascii_lowercase();
            assert!(head.starts_with("POST /v1/traces"), "{head}");
            assert!(
                lower.contains("content-type: application/x-protobuf"),
                "{head}"
            );
            assert!(lower.contains("content-encoding: gzip"), "{head}");
            let (spans, resource) = decode(&gunzip(&body));
            if turned_away {
                continue; // refused: these spans count only if sent again
            }
            sink.lock().unwrap().extend(spans);
            *resource_sink.lock().unwrap() = resource;
        }
    });
    // The upstream the guest calls.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up = upstream.local_addr().unwrap();
    let upstream_saw = std::thread::spawn(move || {
        let (mut c, _) = upstream.accept().unwrap();
        read_request(
            &mut c,
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        )
        .0
    });

    let sb = Sandbox::new();
    // The endpoint comes from the manifest, the service name from the
    // environment: both configure tracing.
    let toml = format!(
        "[telemetry]\notlp_endpoint = \"http://{otlp_addr}/v1/traces\"\n\n[[function]]\nname = \"demo\"\nsource = \"{}\"\nroutes = [\"/...\"]\nallowed_outbound_hosts = [\"http://127.0.0.1:*\"]\n\n\
         [[function]]\nname = \"hello\"\nsource = \"{}\"\nroutes = [\"/hello\"]\n",
        s(&example("c-http/demo.component.wasm")),
        s(&guest("wat/wagi/hello.wat"))
    );
    let path = sb.manifest(&toml);
    let srv = Server::start_with_env(
        &sb.cache_dir(),
        &["-f", &path, "--log-format", "json"],
        &[
            ("OTEL_SERVICE_NAME", "wedge-test"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=edge,host.name=node%207",
            ),
        ],
    );

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let tp = format!("00-{trace_id}-{client_span}-01");
    let r = request(
        srv.addr,
        "GET",
        &format!("/outbound?{up}/path"),
        &[("traceparent", &tp), ("tracestate", "vendor=abc,other=1")],
        b"",
    )
    .unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{}", srv.logs());
    let head = upstream_saw.join().unwrap();
    let outbound_tp = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("traceparent:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("the outbound call carries no traceparent:\n{head}"));
    let parts: Vec<&str> = outbound_tp.split('-').collect();
    assert!(
        head.to_ascii_lowercase()
            .contains("tracestate: vendor=abc,other=1"),
        "the outbound call carries the client's tracestate:\n{head}"
    );
    assert_eq!(parts[1], trace_id, "the trace id reaches the upstream");
    assert_eq!(get(srv.addr, "/hello").status, 200);

    // Wait for the exporter's batches to arrive.
    let mut spans = Vec::new();
    for _ in 0..300 {
        spans = received.lock().unwrap().clone();
        if spans.iter().any(|s| s.name == "GET /hello") && spans.iter().any(|s| s.kind == 3) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        *resources.lock().unwrap(),
        [
            ("service.name".to_string(), "wedge-test".to_string()),
            ("deployment.environment".to_string(), "edge".to_string()),
            ("host.name".to_string(), "node 7".to_string()),
        ]
    );
    let server = spans
        .iter()
        .find(|s| s.kind == 2 && s.trace_id == trace_id)
        .unwrap_or_else(|| panic!("no server span in the client's trace: {spans:#?}"));
    assert_eq!(server.name, "GET /...");
    assert_eq!(server.parent, client_span, "continues the client's span");
    assert_eq!(server.attr("http.route"), Some("/..."), "{server:#?}");
    assert_eq!(server.attr("http.request.method"), Some("GET"));
    assert_eq!(server.attr("url.path"), Some("/outbound"));
    assert_eq!(server.attr("http.response.status_code"), Some("200"));
    assert_eq!(server.attr("faas.name"), Some("demo"));
    assert_eq!(server.attr("client.address"), Some("127.0.0.1"));
    assert!(
        server
            .attr("wedge.request_id")
            .is_some_and(|id| !id.is_empty())
    );
    let client = spans
        .iter()
        .find(|s| s.kind == 3)
        .unwrap_or_else(|| panic!("no client span: {spans:#?}"));
    assert_eq!(client.trace_id, trace_id);
    assert_eq!(
        client.attr("http.response.status_code"),
        Some("200"),
        "{client:#?}"
    );
    assert_eq!(
        client.attr("server.port"),
        Some(up.port().to_string().as_str())
    );
    assert!(
        client
            .attr("url.full")
            .is_some_and(|u| u.ends_with("/path")),
        "{client:#?}"
    );
    assert_eq!(
        client.parent, server.span_id,
        "the outbound call is a child of the request"
    );
    assert_eq!(
        client.span_id, parts[2],
        "the upstream sees the client span"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "wasm.guest" && s.parent == server.span_id)
    );

    // The access line names the trace.
    srv.wait_for_log(&format!("\"trace_id\":\"{trace_id}\""));

    let hello = spans.iter().find(|s| s.name == "GET /hello").unwrap();
    assert_ne!(
        hello.trace_id, trace_id,
        "a request without traceparent starts a trace"
    );
    assert!(hello.parent.is_empty());
    for child in ["wasm.instantiate", "wasm.execute"] {
        assert!(
            spans.iter().any(|s| s.name == child
                && s.parent == hello.span_id
                && s.trace_id == hello.trace_id),
            "no {child} under GET /hello: {spans:#?}"
        );
    }
}
