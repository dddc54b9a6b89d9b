//! The spans of one request: a SERVER span `{method} {route}` with the HTTP
//! semantic-convention attributes, and the pipeline's children for the
//! queue wait, instantiation and guest execution.

use wedge_executor::invocation::Peer;
use wedge_telemetry::trace::{Context, Encoded, Span, SpanKind, Value};
use wedge_trigger::pipeline::Record;

/// What a request's spans are made from.
pub struct Request<'a> {
    pub ctx: &'a Context,
    /// The client's span, when the request carried a `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub method: &'a str,
    pub path: &'a str,
    pub version: http::Version,
    pub route: &'a str,
    pub function: &'a str,
    /// The function version that served; empty when none did.
    pub function_version: &'a str,
    pub status: u16,
    pub request_id: &'a str,
    pub peer: Peer,
    pub start: u64,
    pub end: u64,
    /// What the pipeline saw of the invocation.
    pub record: &'a Record,
}

/// An IPv4 address as dotted decimal, written without the formatting
/// machinery (it runs on every traced request).
fn ipv4_text(ip: std::net::Ipv4Addr, buf: &mut [u8; 15]) -> &str {
    let mut n = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    std::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// The request's spans, server span first, encoded for the exporter.
pub fn for_request(r: &Request<'_>) -> Encoded {
    let mut name = String::with_capacity(r.method.len() + 1 + r.route.len());
    name.push_str(r.method);
    if !r.route.is_empty() {
        name.push(' ');
        name.push_str(r.route);
    }
    let version = match r.version {
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_10 => "1.0",
        _ => "1.1",
    };
    let mut ip = [0u8; 15];
    let client_v6;
    let client = match r.peer.remote.ip() {
        std::net::IpAddr::V4(v4) => ipv4_text(v4, &mut ip),
        v6 => {
            client_v6 = v6.to_string();
            client_v6.as_str()
        }
    };
    let mut attributes = [("", Value::Int(0)); 12];
    let mut n = 0;
    let mut add = |k: &'static str, v| {
        attributes[n] = (k, v);
        n += 1;
    };
    add("http.request.method", Value::Str(r.method));
    add("url.path", Value::Str(r.path));
    add("url.scheme", Value::Str("http"));
    add("http.response.status_code", Value::Int(i64::from(r.status)));
    add("network.protocol.version", Value::Str(version));
    add("client.address", Value::Str(client));
    add("server.port", Value::Int(i64::from(r.peer.local.port())));
    add("wedge.request_id", Value::Str(r.request_id));
    if !r.route.is_empty() {
        add("http.route", Value::Str(r.route));
    }
    if !r.function.is_empty() {
        add("faas.name", Value::Str(r.function));
        if !r.function_version.is_empty() {
            add("faas.version", Value::Str(r.function_version));
        }
    }
    wedge_trigger::spans::guest_attributes(r.record.guest.as_ref(), |k, v| add(k, Value::Int(v)));
    let mut out = Encoded {
        bytes: Vec::with_capacity(768),
        count: 0,
    };
    out.push(&Span {
        trace_id: r.ctx.trace_id,
        span_id: r.ctx.span_id,
        parent_span_id: r.parent,
        name: &name,
        kind: SpanKind::Server,
        start_unix_nanos: r.start,
        end_unix_nanos: r.end,
        attributes: &attributes[..n],
        error: r.status >= 500,
    });
    wedge_trigger::spans::children(r.ctx, r.record, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::ipv4_text;

    #[test]
    fn ipv4_addresses_read_as_display_does() {
        for ip in [
            "127.0.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "10.200.3.45",
            "192.168.100.9",
        ] {
            let addr: std::net::Ipv4Addr = ip.parse().unwrap();
            assert_eq!(ipv4_text(addr, &mut [0; 15]), ip);
        }
    }
}
