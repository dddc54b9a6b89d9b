//! OTLP/HTTP traces: an OTLP receiver inside the test decodes the protobuf
//! wedge posts and checks span names, parent/child links, and a trace id
//! carried from the client through the guest to its outbound call.

use crate::client::{Server, get, read_request, request};
use crate::support::{Sandbox, example, guest, s};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A decoded span: the fields the test looks at.
#[derive(Debug, Clone, Default)]
struct Span {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: u64,
    /// Attributes, values as text.
    attrs: Vec<(String, String)>,
}

impl Span {
    fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn varint(b: &[u8], i: &mut usize) -> u64 {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let byte = b[*i];
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

/// Walks one protobuf message: (field, wire type, payload or varint).
fn fields(b: &[u8]) -> Vec<(u64, &[u8], u64)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i);
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = varint(b, &mut i);
                out.push((field, &b[0..0], v));
            }
            1 => {
                out.push((field, &b[i..i + 8], 0));
                i += 8;
            }
            2 => {
                let len = varint(b, &mut i) as usize;
                out.push((field, &b[i..i + len], 0));
                i += len;
            }
            5 => i += 4,
            _ => panic!("unexpected wire type {wire}"),
        }
    }
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn decode(export: &[u8]) -> Vec<Span> {
    let mut spans = Vec::new();
    for (f, rs, _) in fields(export) {
        assert_eq!(f, 1, "resource_spans");
        for (f, ss, _) in fields(rs) {
            if f != 2 {
                continue;
            }
            for (f, sp, _) in fields(ss) {
                if f != 2 {
                    continue;
                }
                let mut span = Span::default();
                for (f, v, n) in fields(sp) {
                    match f {
                        1 => span.trace_id = hex(v),
                        2 => span.span_id = hex(v),
                        4 => span.parent = hex(v),
                        5 => span.name = String::from_utf8_lossy(v).into_owned(),
                        6 => span.kind = n,
                        9 => {
                            let kv = fields(v);
                            let key = String::from_utf8_lossy(kv[0].1).into_owned();
                            let value = match fields(kv[1].1).first() {
                                Some((1, text, _)) => String::from_utf8_lossy(text).into_owned(),
                                Some((3, _, int)) => int.to_string(),
                                other => panic!("unexpected attribute value {other:?}"),
                            };
                            span.attrs.push((key, value));
                        }
                        _ => {}
                    }
                }
                spans.push(span);
            }
        }
    }
    spans
}

#[test]
fn traces_continue_the_client_context_through_the_guest_to_outbound_calls() {
    // The OTLP receiver.
    let otlp = TcpListener::bind("127.0.0.1:0").unwrap();
    let otlp_addr = otlp.local_addr().unwrap();
    let received: Arc<Mutex<Vec<Span>>> = Arc::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        for conn in otlp.incoming() {
            let Ok(mut c) = conn else { continue };
            let (head, body) = read_request(
                &mut c,
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
            assert!(head.starts_with("POST /v1/traces"), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("content-type: application/x-protobuf"),
                "{head}"
            );
            sink.lock().unwrap().extend(decode(&body));
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
        &[("OTEL_SERVICE_NAME", "wedge-test")],
    );

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let tp = format!("00-{trace_id}-{client_span}-01");
    let r = request(
        srv.addr,
        "GET",
        &format!("/outbound?{up}/path"),
        &[("traceparent", &tp)],
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
