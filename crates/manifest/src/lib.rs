//! wedge-manifest: reads `wedge.toml` into a validated, fully resolved app (paths absolute, defaults filled, routes checked).
//!
//! Configuration flows one way: TOML text → [`raw`] (every key checked, spans
//! kept) → [`App`] (validated and resolved). The runtime never sees raw
//! configuration. Every error names file, line and column.

pub mod breaker;
pub mod error;
pub mod mqtt;
pub mod outbound;
pub mod rate;
pub mod raw;
pub mod routes;
pub mod traffic;
pub mod units;

pub use error::{Located, ManifestError};
pub use outbound::OutboundRule;
pub use raw::Abi;
pub use routes::{Route, Router};
pub use traffic::{Canary, Sticky, Traffic};

use raw::{RawFunction, RawManifest};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The file name `wedge serve -f DIR` looks for.
pub const MANIFEST_FILE: &str = "wedge.toml";
/// Default prefix of the health endpoints.
pub const DEFAULT_HEALTH_PREFIX: &str = "/.well-known/wedge";

/// Per-function limits, all filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub timeout: Duration,
    /// On-CPU time of the guest's own code per request, when budgeted.
    pub cpu_time: Option<Duration>,
    pub max_memory: u64,
    pub fuel: Option<u64>,
    pub max_concurrency: u32,
    pub queue: u32,
    pub queue_timeout: Duration,
    pub max_request_body: u64,
    pub max_response_body: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(30),
            cpu_time: None,
            max_memory: 128 << 20,
            fuel: None,
            max_concurrency: 64,
            queue: 256,
            queue_timeout: Duration::from_secs(5),
            max_request_body: 10 << 20,
            max_response_body: 64 << 20,
        }
    }
}

/// Limits given on the command line (or by `[defaults]`), each optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub timeout: Option<Duration>,
    pub cpu_time: Option<Duration>,
    pub max_memory: Option<u64>,
    pub fuel: Option<u64>,
    pub max_concurrency: Option<u32>,
    pub queue: Option<u32>,
    pub queue_timeout: Option<Duration>,
    pub max_request_body: Option<u64>,
    pub max_response_body: Option<u64>,
}

impl Limits {
    fn apply(&mut self, o: &LimitOverrides) {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = o.$f { self.$f = v; } )* };
        }
        set!(
            timeout,
            max_memory,
            max_concurrency,
            queue,
            queue_timeout,
            max_request_body,
            max_response_body
        );
        if o.fuel.is_some() {
            self.fuel = o.fuel;
        }
        if o.cpu_time.is_some() {
            self.cpu_time = o.cpu_time;
        }
    }
}

impl From<&RawFunction> for LimitOverrides {
    fn from(f: &RawFunction) -> Self {
        LimitOverrides {
            timeout: f.timeout.map(|d| d.0),
            cpu_time: f.cpu_time.map(|d| d.0),
            max_memory: f.max_memory.map(|s| s.0),
            fuel: f.fuel,
            max_concurrency: f.max_concurrency,
            queue: f.queue,
            queue_timeout: f.queue_timeout.map(|d| d.0),
            max_request_body: f.max_request_body.map(|s| s.0),
            max_response_body: f.max_response_body.map(|s| s.0),
        }
    }
}

/// A host directory the guest may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMount {
    pub host: PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// One function, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    pub source: PathBuf,
    pub routes: Vec<Route>,
    /// `None`: detect from the binary.
    pub abi: Option<Abi>,
    /// Upper-case methods allowed; `None` allows all.
    pub methods: Option<Vec<String>>,
    pub limits: Limits,
    pub env: Vec<(String, String)>,
    pub files: Vec<FileMount>,
    pub outbound: Vec<OutboundRule>,
    pub allow_authorization: bool,
    /// Takes CloudEvents: structured mode is turned into binary mode, and
    /// what is no valid event is refused.
    pub cloudevents: CloudEvents,
    /// How asynchronously accepted events are retried.
    pub event_retry: mqtt::Retry,
    /// Requests one 0.3 service instance may serve in turn (1: fresh each).
    pub instance_reuse: u32,
    /// The name of the version `source` is; `None`: named by its digest.
    pub version: Option<String>,
    /// Other versions in traffic and how requests are split.
    pub traffic: Traffic,
    /// Token buckets every request of the function passes (all versions).
    pub rate_limits: Vec<rate::RateLimit>,
    /// Sheds requests while the function fails (opt-in).
    pub circuit_breaker: Option<breaker::Breaker>,
    /// Fails fast the calls to an upstream that keeps failing (opt-in).
    pub outbound_breaker: Option<breaker::Breaker>,
}

/// Server settings, resolved.
#[derive(Debug, Clone)]
pub struct Server {
    pub listen: Option<SocketAddr>,
    pub shutdown_grace: Duration,
    pub health_prefix: String,
    pub connections: Connections,
    /// HTTPS: the certificate chain and key files (both or neither).
    pub tls: Option<TlsFiles>,
    /// How the node's engine is sized; fixed for the life of the process.
    pub engine: EngineSettings,
    /// One token bucket for every request the node serves.
    pub rate_limit: Option<rate::RateLimit>,
}

/// The engine is built once per process and outlives every version of every
/// function, so it is sized for the node, not for one app: a function
/// deployed later must fit in it. Unset values are derived at start from the
/// defaults and the first app (see docs/manifest.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSettings {
    /// Instances alive at once across all functions (the instance pool).
    pub instances: Option<u32>,
    /// The largest linear memory any function may be given, in bytes.
    pub max_instance_memory: Option<u64>,
    /// Compile fuel metering into all code, so functions may set `fuel`.
    pub fuel_metering: Option<bool>,
    /// Support WASI 0.3 components (Wasmtime's concurrency support, which
    /// every store then pays for); unset, on if a function of the first app
    /// is one.
    pub wasi_p3: Option<bool>,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: None,
            shutdown_grace: Duration::from_secs(10),
            health_prefix: DEFAULT_HEALTH_PREFIX.to_string(),
            connections: Connections::default(),
            tls: None,
            engine: EngineSettings::default(),
            rate_limit: None,
        }
    }
}

/// What one listener allows its clients: every limit a hostile client could
/// otherwise stretch (see docs/internet.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connections {
    /// Connections open at once; beyond, the oldest idle one is closed.
    pub max_connections: u32,
    /// Time to send a request's head; for HTTP/1.1 it also bounds the wait
    /// for the next request on a kept-alive connection.
    pub request_head_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Time to send a whole request body (408 after it).
    pub body_timeout: Duration,
    /// Time a client may take no response bytes before it is cut off.
    pub send_timeout: Duration,
    pub max_header_count: usize,
    pub max_header_bytes: usize,
    pub http2_max_streams: u32,
    pub http2_max_pending_resets: usize,
    pub tls_handshake_timeout: Duration,
}

impl Default for Connections {
    fn default() -> Self {
        Connections {
            max_connections: 4096,
            request_head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            send_timeout: Duration::from_secs(30),
            max_header_count: 100,
            max_header_bytes: 64 << 10,
            http2_max_streams: 128,
            http2_max_pending_resets: 32,
            tls_handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Connection limits given as flags, each optional; they win over `[server]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionOverrides {
    pub max_connections: Option<u32>,
    pub request_head_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub body_timeout: Option<Duration>,
    pub send_timeout: Option<Duration>,
    pub max_header_count: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub http2_max_streams: Option<u32>,
    pub http2_max_pending_resets: Option<usize>,
    pub tls_handshake_timeout: Option<Duration>,
}

impl Connections {
    /// Applies `o` and checks the result; `Err` names the key and the fix.
    pub fn apply(&mut self, o: &ConnectionOverrides) -> Result<(), String> {
        macro_rules! set {
            ($($f:ident),*) => { $( if let Some(v) = o.$f { self.$f = v; } )* };
        }
        set!(
            max_connections,
            request_head_timeout,
            idle_timeout,
            body_timeout,
            send_timeout,
            max_header_count,
            max_header_bytes,
            http2_max_streams,
            http2_max_pending_resets,
            tls_handshake_timeout
        );
        let positive = [
            ("max_connections", u64::from(self.max_connections)),
            ("max_header_count", self.max_header_count as u64),
            ("http2_max_streams", u64::from(self.http2_max_streams)),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        for (key, d) in [
            ("request_head_timeout", self.request_head_timeout),
            ("idle_timeout", self.idle_timeout),
            ("body_timeout", self.body_timeout),
            ("send_timeout", self.send_timeout),
            ("tls_handshake_timeout", self.tls_handshake_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{key} must be more than zero"));
            }
        }
        if !(1024..=(1 << 20)).contains(&self.max_header_bytes) {
            return Err("max_header_bytes must be from 1KiB to 1MiB".into());
        }
        Ok(())
    }
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Trace export settings from `[telemetry]` (all optional).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    /// Full OTLP/HTTP traces URL, e.g. `http://collector:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    pub otlp_headers: Vec<(String, String)>,
    pub service_name: Option<String>,
    /// An `OTEL_TRACES_SAMPLER` name.
    pub sampler: Option<String>,
    pub sampler_ratio: Option<f64>,
}

/// The sampler names `[telemetry] sampler` accepts (as `OTEL_TRACES_SAMPLER`).
pub const SAMPLERS: [&str; 6] = [
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

/// Whether and how a function takes CloudEvents over HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloudEvents {
    #[default]
    Off,
    /// The function's answer is the response.
    Sync,
    /// 202 once the event is stored; delivered from the store with retries.
    Async,
}

/// A validated application: what `wedge serve` runs.
#[derive(Debug, Clone)]
pub struct App {
    pub server: Server,
    pub telemetry: Telemetry,
    pub functions: Vec<Function>,
    pub router: Router,
    /// The manifest it came from, if any.
    pub manifest: Option<PathBuf>,
    /// Triggers besides the HTTP routes.
    pub triggers: Triggers,
}

/// The triggers that invoke functions besides HTTP routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triggers {
    pub mqtt: Vec<mqtt::MqttTrigger>,
}

/// Finds the manifest: a file, or `wedge.toml` inside a directory.
pub fn locate(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join(MANIFEST_FILE)
    } else {
        path.to_path_buf()
    }
}

/// Reads and resolves a manifest; `cli` limits apply to every function
/// unless the function itself sets the key.
pub fn load(path: &Path, cli: &LimitOverrides) -> Result<App, ManifestError> {
    let path = locate(path);
    let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Read {
        path: path.clone(),
        source,
    })?;
    parse(&path, &text, cli)
}

/// Serves one module on every path (`wedge serve app.wasm`).
pub fn single(module: &Path, cli: &LimitOverrides) -> App {
    let mut limits = Limits::default();
    limits.apply(cli);
    let name = module
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "main".into());
    let route = Route::parse("/...").expect("valid route");
    App {
        server: Server::default(),
        functions: vec![Function {
            name,
            source: match oci_reference(module) {
                Some(_) => module.to_path_buf(),
                None => std::path::absolute(module).unwrap_or_else(|_| module.to_path_buf()),
            },
            routes: vec![route.clone()],
            abi: None,
            methods: None,
            limits,
            env: Vec::new(),
            files: Vec::new(),
            outbound: Vec::new(),
            allow_authorization: false,
            cloudevents: CloudEvents::Off,
            event_retry: mqtt::Retry::default(),
            instance_reuse: 1,
            version: None,
            traffic: Traffic::default(),
            rate_limits: Vec::new(),
            circuit_breaker: None,
            outbound_breaker: None,
        }],
        router: Router::new(vec![(route, 0)]).expect("one route cannot conflict"),
        manifest: None,
        telemetry: Telemetry::default(),
        triggers: Triggers::default(),
    }
}

/// Parses manifest text; `file` locates errors and relative paths.
pub fn parse(file: &Path, text: &str, cli: &LimitOverrides) -> Result<App, ManifestError> {
    let at = |span: Option<Range<usize>>, message: String| {
        ManifestError::Invalid(Located::new(file, text, span, message))
    };
    let raw: RawManifest = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_string();
        at(e.span(), suggest(&message))
    })?;
    let base = std::path::absolute(file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default();

    let mut server = Server::default();
    if let Some(listen) = &raw.server.listen {
        server.listen = Some(listen.get_ref().parse().map_err(|_| {
            at(
                Some(listen.span()),
                format!(
                    "invalid listen address `{}`: expected IP:PORT, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:0\"",
                    listen.get_ref()
                ),
            )
        })?);
    }
    if let Some(g) = raw.server.shutdown_grace {
        server.shutdown_grace = g.0;
    }
    if let Some(p) = &raw.server.health_prefix {
        let v = p.get_ref();
        if !v.starts_with('/') || v.ends_with('/') || v.contains(' ') {
            return Err(at(
                Some(p.span()),
                format!(
                    "invalid health_prefix `{v}`: expected a path like \"/.well-known/wedge\" (no trailing `/`)"
                ),
            ));
        }
        server.health_prefix = v.clone();
    }
    let rs = &raw.server;
    server.engine = EngineSettings {
        instances: rs.instances,
        max_instance_memory: rs.max_instance_memory.map(|s| s.0),
        fuel_metering: rs.fuel_metering,
        wasi_p3: rs.wasi_p3,
    };
    if server.engine.instances == Some(0) {
        return Err(at(
            None,
            "[server] instances must be at least 1 (instances alive at once across all functions)"
                .into(),
        ));
    }
    if server.engine.max_instance_memory.is_some_and(|m| m < 65536) {
        return Err(at(
            None,
            "[server] max_instance_memory must be at least 64KiB (one page)".into(),
        ));
    }
    if let Some(r) = &rs.rate_limit {
        server.rate_limit = Some(rate::resolve(r, false).map_err(|(span, e)| at(Some(span), e))?);
    }
    let manifest_limits = ConnectionOverrides {
        max_connections: rs.max_connections,
        request_head_timeout: rs.request_head_timeout.map(|d| d.0),
        idle_timeout: rs.idle_timeout.map(|d| d.0),
        body_timeout: rs.body_timeout.map(|d| d.0),
        send_timeout: rs.send_timeout.map(|d| d.0),
        max_header_count: rs.max_header_count,
        max_header_bytes: rs.max_header_bytes.map(|s| s.0 as usize),
        http2_max_streams: rs.http2_max_streams,
        http2_max_pending_resets: rs.http2_max_pending_resets,
        tls_handshake_timeout: rs.tls_handshake_timeout.map(|d| d.0),
    };
    server
        .connections
        .apply(&manifest_limits)
        .map_err(|e| at(None, format!("[server]: {e}")))?;
    match (&rs.tls_cert, &rs.tls_key) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let mut paths = Vec::new();
            for p in [cert, key] {
                let path = base.join(p.get_ref());
                if !path.is_file() {
                    return Err(at(
                        Some(p.span()),
                        format!(
                            "`{}` not found (looked for {}; paths are relative to the manifest)",
                            p.get_ref(),
                            path.display()
                        ),
                    ));
                }
                paths.push(path);
            }
            let key = paths.pop().expect("two paths");
            let cert = paths.pop().expect("two paths");
            server.tls = Some(TlsFiles { cert, key });
        }
        (Some(one), None) | (None, Some(one)) => {
            return Err(at(
                Some(one.span()),
                "give both tls_cert and tls_key (PEM files), or neither".into(),
            ));
        }
    }

    let defaults = raw.defaults.as_ref();
    if let Some(d) = defaults {
        for (key, span) in [
            ("name", d.get_ref().name.as_ref().map(Spanned::span)),
            ("source", d.get_ref().source.as_ref().map(Spanned::span)),
            ("routes", d.get_ref().routes.as_ref().map(|_| d.span())),
            ("version", d.get_ref().version.as_ref().map(Spanned::span)),
            ("canary", d.get_ref().canary.as_ref().map(|_| d.span())),
        ] {
            if let Some(span) = span {
                return Err(at(
                    Some(span),
                    format!("`{key}` is not allowed in [defaults]: it belongs to one [[function]]"),
                ));
            }
        }
    }
    if raw.functions.is_empty() {
        return Err(at(
            None,
            "no functions: add a [[function]] table with `name`, `source` and `routes`".into(),
        ));
    }

    let mut functions: Vec<Function> = Vec::new();
    let mut route_spans: Vec<(Route, usize, Range<usize>)> = Vec::new();
    for spanned in &raw.functions {
        let f = spanned.get_ref();
        let table = spanned.span();
        let name = f.name.as_ref().ok_or_else(|| {
            at(
                Some(table.clone()),
                "this [[function]] has no `name`".into(),
            )
        })?;
        let valid_name = !name.get_ref().is_empty()
            && name
                .get_ref()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !valid_name {
            return Err(at(
                Some(name.span()),
                format!(
                    "invalid function name `{}`: use letters, digits, `-` and `_`",
                    name.get_ref()
                ),
            ));
        }
        if functions.iter().any(|other| other.name == *name.get_ref()) {
            return Err(at(
                Some(name.span()),
                format!(
                    "duplicate function name `{}`: names must be unique",
                    name.get_ref()
                ),
            ));
        }
        let source = f.source.as_ref().ok_or_else(|| {
            at(
                Some(table.clone()),
                format!(
                    "function `{}` has no `source` (the .wasm file to run)",
                    name.get_ref()
                ),
            )
        })?;
        let source_path = source_path(&base, source, &at)?;
        let triggered = raw.trigger.mqtt.iter().any(|t| {
            t.get_ref()
                .function
                .as_ref()
                .is_some_and(|n| n.get_ref() == name.get_ref())
        });
        let no_routes = Vec::new();
        let routes = f.routes.as_ref().filter(|r| !r.is_empty() || triggered);
        let routes = routes.or(if triggered { Some(&no_routes) } else { None }).ok_or_else(|| {
            at(
                Some(table.clone()),
                format!(
                    "function `{}` has no `routes`: add e.g. routes = [\"/{}\"] or [\"/...\"] for every path",
                    name.get_ref(),
                    name.get_ref()
                ),
            )
        })?;
        let index = functions.len();
        let mut parsed_routes = Vec::new();
        for r in routes {
            let route = Route::parse(r.get_ref()).map_err(|e| at(Some(r.span()), e.to_string()))?;
            route_spans.push((route.clone(), index, r.span()));
            parsed_routes.push(route);
        }
        let methods = match f
            .methods
            .as_ref()
            .or(defaults.and_then(|d| d.get_ref().methods.as_ref()))
        {
            None => None,
            Some(list) => {
                let mut out = Vec::new();
                for m in list {
                    let upper = m.get_ref().to_ascii_uppercase();
                    const KNOWN: [&str; 9] = [
                        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT",
                        "TRACE",
                    ];
                    if !KNOWN.contains(&upper.as_str()) {
                        return Err(at(
                            Some(m.span()),
                            format!(
                                "unknown method `{}` (allowed: {})",
                                m.get_ref(),
                                KNOWN.join(", ")
                            ),
                        ));
                    }
                    out.push(upper);
                }
                Some(out)
            }
        };

        let mut limits = Limits::default();
        if let Some(d) = defaults {
            limits.apply(&LimitOverrides::from(d.get_ref()));
        }
        limits.apply(cli);
        limits.apply(&LimitOverrides::from(f));
        if limits.max_concurrency == 0 {
            return Err(at(
                Some(table.clone()),
                format!(
                    "function `{}`: max_concurrency must be at least 1",
                    name.get_ref()
                ),
            ));
        }
        if limits.max_memory < 65536 {
            return Err(at(
                Some(table.clone()),
                format!(
                    "function `{}`: max_memory must be at least 64KiB (one page)",
                    name.get_ref()
                ),
            ));
        }
        if limits.timeout.is_zero() {
            return Err(at(
                Some(table.clone()),
                format!(
                    "function `{}`: timeout must be more than zero",
                    name.get_ref()
                ),
            ));
        }
        if let Some(cpu) = limits.cpu_time
            && cpu < std::time::Duration::from_millis(1)
        {
            return Err(at(
                Some(table.clone()),
                format!(
                    "function `{}`: cpu_time must be at least 1ms (the budget is checked every \
                     millisecond of the guest's running)",
                    name.get_ref()
                ),
            ));
        }

        let instance_reuse = f
            .instance_reuse
            .or(defaults.and_then(|d| d.get_ref().instance_reuse))
            .unwrap_or(1);
        if instance_reuse == 0 {
            return Err(at(
                Some(table.clone()),
                format!(
                    "function `{}`: instance_reuse must be at least 1 (1 = a fresh instance per request)",
                    name.get_ref()
                ),
            ));
        }
        let mut env: Vec<(String, String)> = Vec::new();
        for map in [
            defaults.and_then(|d| d.get_ref().env.as_ref()),
            f.env.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            for (k, v) in map {
                env.retain(|(existing, _)| existing != k);
                env.push((k.clone(), v.clone()));
            }
        }
        let mut files = Vec::new();
        for m in f
            .files
            .as_ref()
            .or(defaults.and_then(|d| d.get_ref().files.as_ref()))
            .into_iter()
            .flatten()
        {
            let raw = m.get_ref();
            let host = base.join(&raw.host);
            if !host.is_dir() {
                return Err(at(
                    Some(m.span()),
                    format!(
                        "files: host directory `{}` not found (looked for {})",
                        raw.host,
                        host.display()
                    ),
                ));
            }
            if !raw.guest.starts_with('/') {
                return Err(at(
                    Some(m.span()),
                    format!(
                        "files: guest path `{}` must be absolute, like \"/static\"",
                        raw.guest
                    ),
                ));
            }
            files.push(FileMount {
                host,
                guest: raw.guest.clone(),
                read_only: raw.read_only,
            });
        }
        let (version, traffic) = resolve_traffic(f, defaults, &base, &env, &at)?;
        let mut rate_limits = Vec::new();
        let rules = f
            .rate_limit
            .as_ref()
            .or(defaults.and_then(|d| d.get_ref().rate_limit.as_ref()));
        for r in rules.into_iter().flatten() {
            let limit = rate::resolve(r, true).map_err(|(span, e)| at(Some(span), e))?;
            if let rate::RateKey::Param(p) = &limit.key
                && let Some(route) = parsed_routes.iter().find(|r: &&Route| !r.has_param(p))
            {
                let span = r.key.as_ref().map(|k| k.span());
                return Err(at(
                    span,
                    format!(
                        "function `{}`: rate-limit key `param:{p}` names no parameter of route \
                         `{}`: use a route like \"/users/:{p}\", or key by \"client\" or a header",
                        name.get_ref(),
                        route.template()
                    ),
                ));
            }
            if rate_limits
                .iter()
                .any(|l: &rate::RateLimit| l.key == limit.key)
            {
                return Err(at(
                    Some(r.rate.span()),
                    format!(
                        "function `{}` has two rate limits with the same key: merge them",
                        name.get_ref()
                    ),
                ));
            }
            rate_limits.push(limit);
        }
        // Per-key buckets first: a client over its own limit does not use
        // up the function's.
        rate_limits.sort_by_key(|l| l.key == rate::RateKey::Function);
        let breaker_of = |raw: Option<&Spanned<breaker::RawBreaker>>, outbound: bool| {
            raw.map(|b| {
                breaker::resolve(b, outbound).map_err(|e| {
                    let table = if outbound {
                        "outbound_breaker"
                    } else {
                        "circuit_breaker"
                    };
                    at(
                        Some(b.span()),
                        format!("function `{}`: {table}: {e}", name.get_ref()),
                    )
                })
            })
            .transpose()
        };
        let circuit_breaker = breaker_of(
            f.circuit_breaker
                .as_ref()
                .or(defaults.and_then(|d| d.get_ref().circuit_breaker.as_ref())),
            false,
        )?;
        let outbound_breaker = breaker_of(
            f.outbound_breaker
                .as_ref()
                .or(defaults.and_then(|d| d.get_ref().outbound_breaker.as_ref())),
            true,
        )?;
        let mut outbound = Vec::new();
        let rules = f
            .allowed_outbound_hosts
            .as_ref()
            .or(defaults.and_then(|d| d.get_ref().allowed_outbound_hosts.as_ref()));
        for r in rules.into_iter().flatten() {
            outbound.push(OutboundRule::parse(r.get_ref()).map_err(|e| at(Some(r.span()), e))?);
        }
        let ce = f
            .cloudevents
            .as_ref()
            .or(defaults.and_then(|d| d.get_ref().cloudevents.as_ref()));
        let cloudevents = match ce.map(|c| (c.get_ref(), c.span())) {
            None | Some((raw::RawCloudEvents::On(false), _)) => CloudEvents::Off,
            Some((raw::RawCloudEvents::On(true), _)) => CloudEvents::Sync,
            Some((raw::RawCloudEvents::Mode(m), span)) => match m.as_str() {
                "sync" => CloudEvents::Sync,
                "async" => CloudEvents::Async,
                other => {
                    return Err(at(
                        Some(span),
                        format!(
                            "cloudevents = \"{other}\": use true or \"sync\" (the function's answer is the \
                             response) or \"async\" (202 once stored, then delivered with retries)"
                        ),
                    ));
                }
            },
        };
        let retry_raw = f
            .retry
            .as_ref()
            .or(defaults.and_then(|d| d.get_ref().retry.as_ref()));
        let event_retry = match retry_raw {
            None => mqtt::Retry::default(),
            Some(r) if cloudevents != CloudEvents::Async => {
                return Err(at(
                    Some(r.span()),
                    "`retry` applies to functions with cloudevents = \"async\" (MQTT triggers have their own)"
                        .into(),
                ));
            }
            Some(r) => mqtt::resolve_retry(r).map_err(|(span, e)| at(Some(span), e))?,
        };
        functions.push(Function {
            name: name.get_ref().clone(),
            source: source_path,
            routes: parsed_routes,
            abi: f.abi.or(defaults.and_then(|d| d.get_ref().abi)),
            methods,
            limits,
            env,
            files,
            outbound,
            allow_authorization: f
                .allow_authorization
                .or(defaults.and_then(|d| d.get_ref().allow_authorization))
                .unwrap_or(false),
            cloudevents,
            event_retry,
            instance_reuse,
            version,
            traffic,
            rate_limits,
            circuit_breaker,
            outbound_breaker,
        });
    }

    let router = Router::new(route_spans.iter().map(|(r, i, _)| (r.clone(), *i)).collect()).map_err(
        |(first, second)| {
            let (a, fa, span_a) = &route_spans[first];
            let (b, fb, span_b) = &route_spans[second];
            let line_a = text[..span_a.start].matches('\n').count() + 1;
            at(
                Some(span_b.clone()),
                format!(
                    "route `{b}` of function `{}` conflicts with route `{a}` of function `{}` (line {line_a}): \
                     both match the same paths; make one more specific or remove it",
                    functions[*fb].name, functions[*fa].name
                ),
            )
        },
    )?;
    let t = &raw.telemetry;
    let mut telemetry = Telemetry {
        otlp_headers: t
            .otlp_headers
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        service_name: t.service_name.clone(),
        ..Telemetry::default()
    };
    if let Some(e) = &t.otlp_endpoint {
        let v = e.get_ref();
        if !(v.starts_with("http://") || v.starts_with("https://")) || v.len() < 10 {
            return Err(at(
                Some(e.span()),
                format!(
                    "invalid otlp_endpoint `{v}`: expected a URL like \"http://127.0.0.1:4318/v1/traces\""
                ),
            ));
        }
        telemetry.otlp_endpoint = Some(v.clone());
    }
    if let Some(sm) = &t.sampler {
        if !SAMPLERS.contains(&sm.get_ref().as_str()) {
            return Err(at(
                Some(sm.span()),
                format!(
                    "unknown sampler `{}` (allowed: {})",
                    sm.get_ref(),
                    SAMPLERS.join(", ")
                ),
            ));
        }
        telemetry.sampler = Some(sm.get_ref().clone());
    }
    if let Some(r) = &t.sampler_ratio {
        if !(0.0..=1.0).contains(r.get_ref()) {
            return Err(at(
                Some(r.span()),
                format!("sampler_ratio {} is outside 0.0 to 1.0", r.get_ref()),
            ));
        }
        telemetry.sampler_ratio = Some(*r.get_ref());
    }
    let names: Vec<&str> = functions.iter().map(|f| f.name.as_str()).collect();
    let mut triggers = Triggers::default();
    for t in &raw.trigger.mqtt {
        let resolved = mqtt::resolve(t, &base, &names).map_err(|(span, e)| at(Some(span), e))?;
        if triggers
            .mqtt
            .iter()
            .any(|o| o.client_id == resolved.client_id && o.broker == resolved.broker)
        {
            return Err(at(
                Some(t.span()),
                format!(
                    "two triggers connect to {} as client `{}`: a broker allows one connection per client id; \
                     give each trigger its own client_id",
                    resolved.broker, resolved.client_id
                ),
            ));
        }
        triggers.mqtt.push(resolved);
    }
    Ok(App {
        server,
        functions,
        router,
        manifest: Some(file.to_path_buf()),
        telemetry,
        triggers,
    })
}

/// Adds a "did you mean" to serde's unknown-field message.
fn suggest(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((found, allowed)) = rest.split_once('`') else {
        return message.to_string();
    };
    let best = allowed
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|cand| (distance(found, cand), cand))
        .min();
    match best {
        Some((d, cand)) if d <= 2 => format!("{message}; did you mean `{cand}`?"),
        _ => message.to_string(),
    }
}

type At<'a> = dyn Fn(Option<Range<usize>>, String) -> ManifestError + 'a;

/// The file a `source` names, relative to the manifest and checked to
/// exist; or, for `oci://REGISTRY/REPOSITORY:TAG` (or `@sha256:…`), the
/// reference itself, which the registry client resolves to a file before
/// anything loads it (see [`oci_reference`]).
fn source_path(
    base: &Path,
    source: &Spanned<String>,
    at: &At<'_>,
) -> Result<PathBuf, ManifestError> {
    let text = source.get_ref();
    if let Some(rest) = text.strip_prefix("oci://") {
        let (repo, _) = rest.split_once('@').unwrap_or((rest, ""));
        let path_part = repo.split_once('/').map(|(_, p)| p);
        if rest.contains(char::is_whitespace) || path_part.is_none_or(str::is_empty) {
            return Err(at(
                Some(source.span()),
                format!(
                    "source `{text}` is not an OCI reference: write oci://REGISTRY/REPOSITORY:TAG \
                     or oci://REGISTRY/REPOSITORY@sha256:DIGEST"
                ),
            ));
        }
        return Ok(PathBuf::from(text));
    }
    let path = base.join(text);
    if !path.is_file() {
        return Err(at(
            Some(source.span()),
            format!(
                "source `{text}` not found (looked for {}; paths are relative to the manifest)",
                path.display()
            ),
        ));
    }
    Ok(path)
}

/// The OCI reference a function's `source` is, if it is one (until it has
/// been pulled and replaced by the module's file).
pub fn oci_reference(source: &Path) -> Option<&str> {
    source.to_str().filter(|s| s.starts_with("oci://"))
}

/// A function's version name and traffic rules from its table.
fn resolve_traffic(
    f: &RawFunction,
    defaults: Option<&Spanned<RawFunction>>,
    base: &Path,
    env: &[(String, String)],
    at: &At<'_>,
) -> Result<(Option<String>, Traffic), ManifestError> {
    let name = f.name.as_ref().map_or("", |n| n.get_ref().as_str());
    let mut traffic = Traffic::default();
    let version = match &f.version {
        Some(v) => {
            traffic::check_version_name(v.get_ref()).map_err(|e| at(Some(v.span()), e))?;
            Some(v.get_ref().clone())
        }
        None => None,
    };
    if let Some(h) = f
        .version_header
        .as_ref()
        .or(defaults.and_then(|d| d.get_ref().version_header.as_ref()))
    {
        traffic.header =
            traffic::check_header_name(h.get_ref()).map_err(|e| at(Some(h.span()), e))?;
    }
    if let Some(st) = f
        .sticky
        .as_ref()
        .or(defaults.and_then(|d| d.get_ref().sticky.as_ref()))
    {
        traffic.sticky = Some(Sticky::parse(st.get_ref()).map_err(|e| at(Some(st.span()), e))?);
    }
    let mut names: Vec<&str> = version.iter().map(String::as_str).collect();
    for c in f.canary.iter().flatten() {
        let raw = c.get_ref();
        let v = raw.version.get_ref();
        traffic::check_version_name(v).map_err(|e| at(Some(raw.version.span()), e))?;
        if version.is_none() {
            return Err(at(
                Some(c.span()),
                format!(
                    "function `{name}` has canaries but its `source` has no `version`: name it (e.g. version = \"v1\") so requests and metrics can tell the versions apart"
                ),
            ));
        }
        if names.contains(&v.as_str()) {
            return Err(at(
                Some(raw.version.span()),
                format!(
                    "duplicate version `{v}` in function `{name}`: version names must be unique"
                ),
            ));
        }
        names.push(v);
        let source = source_path(base, &raw.source, at)?;
        let weight = traffic::weight_from_percent(raw.weight).map_err(|e| at(Some(c.span()), e))?;
        let mut merged = env.to_vec();
        for (k, val) in raw.env.iter().flatten() {
            merged.retain(|(existing, _)| existing != k);
            merged.push((k.clone(), val.clone()));
        }
        traffic.canaries.push(Canary {
            version: v.clone(),
            source,
            weight,
            env: merged,
        });
    }
    if traffic.canaries.len() + 1 > traffic::MAX_VERSIONS {
        return Err(at(
            f.canary.as_ref().and_then(|c| c.last()).map(Spanned::span),
            format!(
                "function `{name}` has {} versions in traffic; at most {} are allowed",
                traffic.canaries.len() + 1,
                traffic::MAX_VERSIONS
            ),
        ));
    }
    let total: u32 = traffic.canaries.iter().map(|c| c.weight).sum();
    if total > traffic::ALL_TRAFFIC {
        return Err(at(
            f.canary.as_ref().and_then(|c| c.last()).map(Spanned::span),
            format!(
                "the canaries of function `{name}` take {}% of the traffic; their weights must \
                 add up to at most 100 (the stable version gets the rest)",
                f64::from(total) / 100.0
            ),
        ));
    }
    Ok((version, traffic))
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests;
