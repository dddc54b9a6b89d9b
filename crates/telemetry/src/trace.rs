//! Tracing primitives: W3C trace context, spans, sampling, and the OTLP
//! protobuf encoding of an `ExportTraceServiceRequest` (written by hand: a
//! few fields of a stable wire format do not need a code generator).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The propagated part of a span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
    pub tracestate: Option<String>,
}

/// Lower-case hex, two digits a byte, into `out` (twice as long as `bytes`).
/// Ids are formatted on every traced request, so no formatting machinery.
fn write_hex(out: &mut [u8], bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 0xf)];
    }
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Random bits for ids: SipHash with per-process random keys over a counter.
fn random_u64() -> u64 {
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = KEYS.get_or_init(RandomState::new).build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

pub fn new_trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&random_u64().to_be_bytes());
    id[8..].copy_from_slice(&random_u64().to_be_bytes());
    id
}

pub fn new_span_id() -> [u8; 8] {
    loop {
        let id = random_u64().to_be_bytes();
        if id != [0; 8] {
            return id;
        }
    }
}

impl Context {
    /// Parses a `traceparent` header (version 00); `None` if malformed.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Context> {
        let mut parts = traceparent.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = unhex::<16>(trace)?;
        let span_id = unhex::<8>(span)?;
        let flags = unhex::<1>(flags)?[0];
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Context {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            // W3C: at most 32 members; longer than 512 bytes may be dropped.
            tracestate: tracestate
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.len() <= 512 && t.split(',').count() <= 32)
                .map(str::to_string),
        })
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> String {
        String::from_utf8(self.traceparent_bytes().to_vec()).unwrap_or_default()
    }

    /// The `traceparent` value as ASCII bytes, built without allocating.
    pub fn traceparent_bytes(&self) -> [u8; 55] {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        write_hex(&mut out[3..35], &self.trace_id);
        write_hex(&mut out[36..52], &self.span_id);
        if self.sampled {
            out[54] = b'1';
        }
        out
    }

    /// A child context: same trace, new span id.
    pub fn child(&self) -> Context {
        Context {
            span_id: new_span_id(),
            ..self.clone()
        }
    }

    pub fn trace_id_hex(&self) -> String {
        let mut out = [0u8; 32];
        write_hex(&mut out, &self.trace_id);
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }
}

/// Parent-based ratio sampling: follow the parent's decision; for a new
/// trace, sample when the trace id falls under the ratio.
pub fn sample(parent: Option<&Context>, trace_id: &[u8; 16], ratio: f64) -> bool {
    match parent {
        Some(p) => p.sampled,
        None => {
            let x = u64::from_be_bytes(trace_id[8..].try_into().unwrap());
            (x as f64) < ratio.clamp(0.0, 1.0) * (u64::MAX as f64)
        }
    }
}

/// Span kinds of OTLP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal = 1,
    Server = 2,
    Client = 3,
    Producer = 4,
    Consumer = 5,
}

/// An attribute value, borrowed: spans are encoded where they end, so
/// building one allocates nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Str(&'a str),
    Int(i64),
}

/// A finished span, ready to encode.
#[derive(Clone, Copy, Debug)]
pub struct Span<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    pub name: &'a str,
    pub kind: SpanKind,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    pub attributes: &'a [(&'a str, Value<'a>)],
    pub error: bool,
}

/// Spans already encoded as `ScopeSpans.spans` fields, with their count:
/// what a request hands to the exporter (one buffer, however many spans).
#[derive(Debug, Default)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub count: usize,
}

impl Encoded {
    pub fn push(&mut self, s: &Span<'_>) {
        let len = span_len(s);
        self.bytes.reserve(field_len(2, len));
        span(&mut self.bytes, s, len);
        self.count += 1;
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

// Protobuf wire encoding. Every message's size is computed first, so an
// export is written into one buffer of the exact size with no nested copies.

#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline(always)]
fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline(always)]
fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, (u64::from(field) << 3) | u64::from(wire));
}

/// Size of a length-delimited field holding `n` bytes.
#[inline]
fn field_len(field: u32, n: usize) -> usize {
    varint_len(u64::from(field) << 3) + varint_len(n as u64) + n
}

/// The key and length of a length-delimited field; its `n` bytes follow.
/// Every field number here is below 16, so the key is one byte.
#[inline(always)]
fn open(out: &mut Vec<u8>, field: u32, n: usize) {
    debug_assert!(field < 16);
    if n < 0x80 {
        // Two pushes into reserved space: cheaper than a memcpy call.
        out.push((field << 3 | 2) as u8);
        out.push(n as u8);
    } else {
        key(out, field, 2);
        varint(out, n as u64);
    }
}

#[inline(always)]
fn bytes_field(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    open(out, field, b.len());
    out.extend_from_slice(b);
}

#[inline]
fn fixed64(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 1);
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn varint_field(out: &mut Vec<u8>, field: u32, v: u64) {
    key(out, field, 0);
    varint(out, v);
}

/// common.v1.AnyValue { string_value = 1; int_value = 3 }
#[inline]
fn any_len(v: &Value<'_>) -> usize {
    match v {
        Value::Str(s) => field_len(1, s.len()),
        Value::Int(i) => 1 + varint_len(*i as u64),
    }
}

/// common.v1.KeyValue { key = 1; value = 2 }
#[inline]
fn key_value_len(k: &str, v: &Value<'_>) -> usize {
    field_len(1, k.len()) + field_len(2, any_len(v))
}

fn key_value(out: &mut Vec<u8>, field: u32, k: &str, v: &Value<'_>) {
    open(out, field, key_value_len(k, v));
    bytes_field(out, 1, k.as_bytes());
    open(out, 2, any_len(v));
    match v {
        Value::Str(s) => bytes_field(out, 1, s.as_bytes()),
        Value::Int(i) => varint_field(out, 3, *i as u64),
    }
}

/// Status { code = 3 } with STATUS_CODE_ERROR (2).
const ERROR_STATUS: [u8; 2] = [3 << 3, 2];

/// trace.v1.Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6,
/// start 7, end 8, attributes 9, status 15.
fn span_len(s: &Span<'_>) -> usize {
    field_len(1, 16)
        + field_len(2, 8)
        + s.parent_span_id.map_or(0, |_| field_len(4, 8))
        + field_len(5, s.name.len())
        + 1
        + varint_len(s.kind as u64)
        + 2 * 9
        + s.attributes
            .iter()
            .map(|(k, v)| field_len(9, key_value_len(k, v)))
            .sum::<usize>()
        + if s.error {
            field_len(15, ERROR_STATUS.len())
        } else {
            0
        }
}

fn span(out: &mut Vec<u8>, s: &Span<'_>, len: usize) {
    open(out, 2, len);
    bytes_field(out, 1, &s.trace_id);
    bytes_field(out, 2, &s.span_id);
    if let Some(p) = &s.parent_span_id {
        bytes_field(out, 4, p);
    }
    bytes_field(out, 5, s.name.as_bytes());
    varint_field(out, 6, s.kind as u64);
    fixed64(out, 7, s.start_unix_nanos);
    fixed64(out, 8, s.end_unix_nanos);
    for (k, v) in s.attributes {
        key_value(out, 9, k, v);
    }
    if s.error {
        bytes_field(out, 15, &ERROR_STATUS);
    }
}

/// collector.trace.v1.ExportTraceServiceRequest { resource_spans = 1 }
/// ResourceSpans { resource = 1 (Resource { attributes = 1 }); scope_spans = 2 }
/// ScopeSpans { scope = 1 (InstrumentationScope { name = 1; version = 2 }); spans = 2 }
/// `resource` is the resource's attributes (`service.name` first);
/// `spans` are the requests' encoded spans, copied once into the export.
pub fn encode_export(resource: &[(String, String)], spans: &[Encoded]) -> Vec<u8> {
    let attrs: Vec<(&str, Value<'_>)> = resource
        .iter()
        .map(|(k, v)| (k.as_str(), Value::Str(v)))
        .collect();
    let version = env!("CARGO_PKG_VERSION").as_bytes();
    let resource_len: usize = attrs
        .iter()
        .map(|(k, v)| field_len(1, key_value_len(k, v)))
        .sum();
    let scope_len = field_len(1, b"wedge".len()) + field_len(2, version.len());
    let scope_spans_len =
        field_len(1, scope_len) + spans.iter().map(|e| e.bytes.len()).sum::<usize>();
    let resource_spans_len = field_len(1, resource_len) + field_len(2, scope_spans_len);
    let total = field_len(1, resource_spans_len);

    let mut out = Vec::with_capacity(total);
    open(&mut out, 1, resource_spans_len);
    open(&mut out, 1, resource_len);
    for (k, v) in &attrs {
        key_value(&mut out, 1, k, v);
    }
    open(&mut out, 2, scope_spans_len);
    open(&mut out, 1, scope_len);
    bytes_field(&mut out, 1, b"wedge");
    bytes_field(&mut out, 2, version);
    for e in spans {
        out.extend_from_slice(&e.bytes);
    }
    debug_assert_eq!(out.len(), total, "computed and written sizes differ");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip_and_rejects() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = Context::parse(tp, Some("k=v")).unwrap();
        assert!(c.sampled);
        assert_eq!(c.traceparent(), tp);
        assert_eq!(c.tracestate.as_deref(), Some("k=v"));
        let child = c.child();
        assert_eq!(child.trace_id, c.trace_id);
        assert_ne!(child.span_id, c.span_id);
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        ] {
            assert!(Context::parse(bad, None).is_none(), "{bad}");
        }
    }

    #[test]
    fn sampling_follows_the_parent_then_the_ratio() {
        let parent = Context::parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
            None,
        )
        .unwrap();
        assert!(!sample(Some(&parent), &parent.trace_id, 1.0));
        let ids: Vec<_> = (0..1000).map(|_| new_trace_id()).collect();
        assert!(ids.iter().all(|id| sample(None, id, 1.0)));
        assert!(ids.iter().all(|id| !sample(None, id, 0.0)));
        let half = ids.iter().filter(|id| sample(None, id, 0.5)).count();
        assert!((350..650).contains(&half), "{half}");
    }

    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value;
    use prost::Message;

    fn text(v: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
        match v.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(any_value::Value::IntValue(i)) => i.to_string(),
            other => panic!("unexpected attribute value {other:?}"),
        }
    }

    /// The export decoded by opentelemetry-proto (prost, generated from the
    /// OTLP .proto files): an implementation independent of ours.
    #[test]
    fn exports_decode_with_the_reference_types() {
        let long = "x".repeat(300);
        let attributes = [("long", Value::Str(&long)), ("neg", Value::Int(-5))];
        let names: Vec<String> = (0..3).map(|i| format!("span {i}")).collect();
        // Two requests' worth, appended as the exporter does.
        let (mut first, mut second) = (Encoded::default(), Encoded::default());
        for i in 0..3u8 {
            let s = Span {
                trace_id: [i + 1; 16],
                span_id: [9; 8],
                parent_span_id: (i > 0).then_some([7; 8]),
                name: &names[usize::from(i)],
                kind: if i == 0 {
                    SpanKind::Server
                } else {
                    SpanKind::Internal
                },
                start_unix_nanos: 1,
                end_unix_nanos: u64::MAX,
                attributes: &attributes,
                error: i == 2,
            };
            if i == 0 {
                first.push(&s)
            } else {
                second.push(&s)
            }
        }
        assert_eq!((first.count, second.count), (1, 2));
        let resource = vec![
            ("service.name".to_string(), "s".repeat(200)),
            ("deployment.environment".to_string(), "edge".to_string()),
        ];
        let bytes = encode_export(&resource, &[first, second]);
        let export = ExportTraceServiceRequest::decode(bytes.as_slice()).expect("valid OTLP");
        assert_eq!(export.resource_spans.len(), 1);
        let rs = &export.resource_spans[0];
        let attrs: Vec<(String, String)> = rs
            .resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| (kv.key.clone(), text(&kv.value)))
            .collect();
        assert_eq!(attrs, resource);
        let ss = &rs.scope_spans[0];
        assert_eq!(ss.scope.as_ref().unwrap().name, "wedge");
        assert_eq!(ss.spans.len(), 3);
        for (i, sp) in ss.spans.iter().enumerate() {
            assert_eq!(sp.trace_id, vec![i as u8 + 1; 16]);
            assert_eq!(sp.span_id, vec![9; 8]);
            assert_eq!(sp.parent_span_id.len(), if i > 0 { 8 } else { 0 });
            assert_eq!(sp.name, format!("span {i}"));
            assert_eq!(sp.kind, if i == 0 { 2 } else { 1 }, "SERVER, INTERNAL");
            assert_eq!(
                (sp.start_time_unix_nano, sp.end_time_unix_nano),
                (1, u64::MAX)
            );
            let attrs: Vec<(String, String)> = sp
                .attributes
                .iter()
                .map(|kv| (kv.key.clone(), text(&kv.value)))
                .collect();
            assert_eq!(
                attrs,
                [("long".into(), long.clone()), ("neg".into(), "-5".into())]
            );
            assert_eq!(sp.status.as_ref().map(|s| s.code), (i == 2).then_some(2));
        }
    }
}
