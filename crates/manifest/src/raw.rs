//! The manifest as written: `wedge.toml` deserialised with every key
//! checked (`deny_unknown_fields`) and spans kept for later errors.

use crate::units::{Dur, Size};
use serde::Deserialize;
use std::collections::BTreeMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawManifest {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub defaults: Option<Spanned<RawFunction>>,
    #[serde(default, rename = "function")]
    pub functions: Vec<Spanned<RawFunction>>,
    #[serde(default)]
    pub telemetry: RawTelemetry,
    #[serde(default)]
    pub trigger: crate::mqtt::RawTriggers,
}

/// `[telemetry]`: trace export; the standard `OTEL_*` variables override it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub otlp_endpoint: Option<Spanned<String>>,
    pub otlp_headers: Option<BTreeMap<String, String>>,
    pub service_name: Option<String>,
    pub sampler: Option<Spanned<String>>,
    pub sampler_ratio: Option<Spanned<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<Spanned<String>>,
    pub shutdown_grace: Option<Dur>,
    /// Prefix of the health endpoints (`/.well-known/wedge`).
    pub health_prefix: Option<Spanned<String>>,
    /// Connections served at once; beyond, the oldest idle one is closed.
    pub max_connections: Option<u32>,
    /// Time a client has to send a request's head (line and headers).
    pub request_head_timeout: Option<Dur>,
    /// Time a connection may sit with no request in flight.
    pub idle_timeout: Option<Dur>,
    /// Time a client has to send a request's whole body (408 after it).
    pub body_timeout: Option<Dur>,
    /// Time a client may take no response bytes before it is cut off.
    pub send_timeout: Option<Dur>,
    /// Header fields in one request at most.
    pub max_header_count: Option<usize>,
    /// Bytes of header fields in one request at most.
    pub max_header_bytes: Option<Size>,
    /// HTTP/2 streams a client may have open at once on one connection.
    pub http2_max_streams: Option<u32>,
    /// HTTP/2 streams a client may reset before the server answers them.
    pub http2_max_pending_resets: Option<usize>,
    /// PEM certificate chain: serve HTTPS (with `tls_key`).
    pub tls_cert: Option<Spanned<String>>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<Spanned<String>>,
    /// Time a client has to finish the TLS handshake.
    pub tls_handshake_timeout: Option<Dur>,
    /// Instances alive at once across all functions (the node's pool).
    pub instances: Option<u32>,
    /// The largest memory any function may be given.
    pub max_instance_memory: Option<Size>,
    /// Compile fuel metering in, so functions may set `fuel`.
    pub fuel_metering: Option<bool>,
    /// Build the engine with WASI 0.3 (component-model async) support.
    pub wasi_p3: Option<bool>,
    /// One token bucket for every request of the node.
    pub rate_limit: Option<crate::rate::RawRate>,
}

/// How a function is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Abi {
    /// CGI over WASI preview1 (a command module).
    Wagi,
    /// `wasi:http` (a 0.2 proxy or 0.3 service component).
    Http,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    pub host: String,
    pub guest: String,
    #[serde(default)]
    pub read_only: bool,
}

/// A `[[function]]` table; `[defaults]` uses the same keys minus the
/// function's identity (name, source, routes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    pub name: Option<Spanned<String>>,
    pub source: Option<Spanned<String>>,
    pub routes: Option<Vec<Spanned<String>>>,
    pub abi: Option<Abi>,
    pub methods: Option<Vec<Spanned<String>>>,
    pub timeout: Option<Dur>,
    pub cpu_time: Option<Dur>,
    pub max_memory: Option<Size>,
    pub fuel: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub queue: Option<u32>,
    pub queue_timeout: Option<Dur>,
    pub max_request_body: Option<Size>,
    pub max_response_body: Option<Size>,
    pub env: Option<BTreeMap<String, String>>,
    pub files: Option<Vec<Spanned<RawFile>>>,
    pub allowed_outbound_hosts: Option<Vec<Spanned<String>>>,
    /// Token buckets (`[[function.rate_limit]]`), one per key at most.
    pub rate_limit: Option<Vec<crate::rate::RawRate>>,
    /// Sheds requests while the function fails.
    pub circuit_breaker: Option<Spanned<crate::breaker::RawBreaker>>,
    /// Fails fast calls to an upstream that keeps failing.
    pub outbound_breaker: Option<Spanned<crate::breaker::RawBreaker>>,
    /// Pass the Authorization header to WAGI guests (off: CGI hides it).
    pub allow_authorization: Option<bool>,
    /// The function takes CloudEvents: `true` or `"sync"` (the function's
    /// answer is the response) or `"async"` (202 once stored, then delivered
    /// with retries).
    pub cloudevents: Option<Spanned<RawCloudEvents>>,
    /// How asynchronous CloudEvents are retried.
    pub retry: Option<Spanned<crate::mqtt::RawRetry>>,
    /// Requests one instance of a WASI 0.3 service may serve, one after
    /// another (1: a fresh instance per request).
    pub instance_reuse: Option<u32>,
    /// The name of the version `source` is (default: its digest).
    pub version: Option<Spanned<String>>,
    /// Header whose value picks a version by name.
    pub version_header: Option<Spanned<String>>,
    /// `header:NAME` or `cookie:NAME`: keeps a user on one version.
    pub sticky: Option<Spanned<String>>,
    /// Versions beside `source`, each with a share of the traffic.
    pub canary: Option<Vec<Spanned<RawCanary>>>,
}

/// A `[[function.canary]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCanary {
    pub version: Spanned<String>,
    pub source: Spanned<String>,
    /// Percent of the traffic.
    pub weight: f64,
    pub env: Option<BTreeMap<String, String>>,
}

/// `cloudevents = true`, `"sync"` or `"async"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawCloudEvents {
    On(bool),
    Mode(String),
}
