//! `wedge serve` and `wedge check`: HTTP functions from one module or an app manifest.

use crate::Global;
use crate::reload::Reloader;
use anyhow::{Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wedge_executor::function::Loader;
use wedge_http::admin::{Admin, Token};
use wedge_http::handler::Handler;
use wedge_http::server::{self, Listener};
use wedge_http::tls::Tls;
use wedge_manifest::{App, ConnectionOverrides, Connections, LimitOverrides, TlsFiles};
use wedge_observe::metrics::Metrics;
use wedge_runtime::engine::{self, Node};
use wedge_runtime::ticker::{Clock, Ticker};
use wedge_runtime::units;
use wedge_trigger::pipeline::Pipeline;
use wedge_trigger::table::{self, Table};

/// Where the app comes from.
#[derive(clap::Args)]
pub struct AppArgs {
    /// A module or component to serve on every path (`/...`)
    #[arg(value_name = "MODULE", required_unless_present = "manifest")]
    module: Option<PathBuf>,
    /// An app manifest (`wedge.toml`), or a folder holding one
    #[arg(
        short = 'f',
        long = "file",
        value_name = "MANIFEST",
        conflicts_with = "module"
    )]
    manifest: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    /// Requests the whole node serves, e.g. 5000/s (also N/min, N/h); 429
    /// beyond. Wins over `[server] rate_limit`
    #[arg(long, value_name = "RATE", value_parser = wedge_manifest::rate::parse_rate)]
    rate_limit: Option<(u32, Duration)>,
    /// Requests `--rate-limit` lets through at once [default: its count]
    #[arg(long, value_name = "N", requires = "rate_limit")]
    rate_burst: Option<std::num::NonZeroU32>,
    #[command(flatten)]
    pub registry: crate::oci::RegistryArgs,
    /// The AOT cache directory (`--cache-dir`), beside which pulled modules
    /// are kept.
    #[arg(skip)]
    pub cache_dir: Option<PathBuf>,
}

/// Per-function limits; each sets the default for every function
/// (a function's own manifest key still wins).
#[derive(clap::Args)]
#[command(next_help_heading = "Limits (defaults for every function)")]
struct LimitArgs {
    /// Wall-clock time a request may run (504 after it)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    timeout: Option<Duration>,
    /// On-CPU time of a request's guest code, e.g. 50ms (503 beyond)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    cpu_time: Option<Duration>,
    /// Linear memory per instance, e.g. 16MiB
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    max_memory: Option<u64>,
    /// Deterministic instruction budget per request
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Requests a function runs at once
    #[arg(long, value_name = "N")]
    max_concurrency: Option<u32>,
    /// Requests that may wait for a slot (503 beyond)
    #[arg(long, value_name = "N")]
    queue: Option<u32>,
    /// How long a request may wait for a slot (503 after it)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    queue_timeout: Option<Duration>,
    /// Largest request body (413 beyond)
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    max_request_body: Option<u64>,
    /// Largest response body (the response is cut off beyond)
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    max_response_body: Option<u64>,
}

/// What clients may do to a connection (see docs/internet.md); each flag
/// wins over its `[server]` key.
#[derive(clap::Args)]
#[command(next_help_heading = "Connections (both listeners)")]
struct ConnectionArgs {
    /// Connections open at once; beyond, the oldest idle one is closed [default: 4096]
    #[arg(long, value_name = "N")]
    max_connections: Option<u32>,
    /// Time a client has to send a request's head [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    request_head_timeout: Option<Duration>,
    /// Time a connection may stay open with no request in flight [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Time a client has to send a whole request body (408 after it) [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    body_timeout: Option<Duration>,
    /// Time a client may take no response bytes before the connection is
    /// cut off (frees the instance a streamed response holds) [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    send_timeout: Option<Duration>,
    /// Header fields in one request at most (431 beyond) [default: 100]
    #[arg(long, value_name = "N")]
    max_header_count: Option<usize>,
    /// Bytes of header fields in one request at most (431 beyond) [default: 64KiB]
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
    max_header_bytes: Option<u64>,
    /// HTTP/2 streams one connection may have open at once [default: 128]
    #[arg(long, value_name = "N")]
    http2_max_streams: Option<u32>,
    /// HTTP/2 streams a client may reset before the server closes the
    /// connection (the rapid-reset attack) [default: 32]
    #[arg(long, value_name = "N")]
    http2_max_pending_resets: Option<usize>,
    /// Time a client has to finish the TLS handshake [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    tls_handshake_timeout: Option<Duration>,
    /// PEM certificate chain: serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN);
    /// reloaded when the file changes
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

impl ConnectionArgs {
    fn overrides(&self) -> ConnectionOverrides {
        ConnectionOverrides {
            max_connections: self.max_connections,
            request_head_timeout: self.request_head_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            send_timeout: self.send_timeout,
            max_header_count: self.max_header_count,
            max_header_bytes: self.max_header_bytes.map(|b| b as usize),
            http2_max_streams: self.http2_max_streams,
            http2_max_pending_resets: self.http2_max_pending_resets,
            tls_handshake_timeout: self.tls_handshake_timeout,
        }
    }
}

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub app: AppArgs,
    #[command(flatten)]
    connections: ConnectionArgs,
    /// Address to listen on; port 0 picks a free port [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Bytes of each instance's memory kept resident and reset in place
    /// between requests instead of being returned to the kernel
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size, default_value = "2MiB")]
    keep_resident: u64,
    /// How guest memory accesses are bounds-checked: `explicit` checks in
    /// code (fastest instantiation: no mprotect and no cross-core TLB flush
    /// per request) or `guard-pages` (faster compute-heavy guests)
    #[arg(long, value_name = "HOW", default_value = "explicit", value_parser = ["explicit", "guard-pages"])]
    bounds_checks: String,
    /// How HTTP connections are spread over threads: `per-core` hands each
    /// new connection to the least loaded of `--threads` threads and keeps
    /// it, its requests and their guests there; `shared` runs them on one
    /// work-stealing runtime
    #[arg(long, value_name = "HOW", default_value = "per-core", value_parser = ["per-core", "shared"])]
    threading: String,
    /// Threads serving HTTP with `--threading per-core` [default: the CPUs
    /// this process may use]
    #[arg(long, value_name = "N")]
    threads: Option<std::num::NonZeroUsize>,
    /// Keep versions and traffic rules deployed through the admin API
    /// (`/v1/...`) in DIR, crash-safe; without it the API is off
    #[arg(long, value_name = "DIR", env = "WEDGE_STATE_DIR")]
    state: Option<PathBuf>,
    /// Reload when the manifest or a module changes: new and changed
    /// functions are compiled and probed off the request path, then swapped
    /// in at once; a reload that fails keeps the functions serving
    #[arg(long)]
    watch: bool,
    /// Admin listener (GET /metrics, GET/PUT /log-level); port 0 picks one
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    admin_listen: SocketAddr,
    /// File holding the admin bearer token (else WEDGE_ADMIN_TOKEN; else one
    /// is generated and written, mode 0600, to
    /// $XDG_RUNTIME_DIR/wedge/admin-PORT.token or ~/.local/state/wedge/)
    #[arg(long, value_name = "FILE", env = "WEDGE_ADMIN_TOKEN_FILE")]
    admin_token_file: Option<PathBuf>,
    /// Log format: readable `text` or one JSON object per line
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Log level: error, warn, info (one access line per request) or debug
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    log_level: String,
    /// Requests with the header `x-wedge-debug: TOKEN` get per-request Wasm
    /// statistics in an `x-wedge-stats` response header (off without it)
    #[arg(long, value_name = "TOKEN", env = "WEDGE_DEBUG_TOKEN")]
    debug_token: Option<String>,
    /// Anomaly detection window: each function's P99, peak memory and error
    /// ratio are judged against their baseline once per window
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, default_value = "10s")]
    anomaly_window: Duration,
    /// POST each anomaly that begins or ends as JSON to this URL
    /// ({"function", "kind", "active", "detail"})
    #[arg(long, value_name = "URL")]
    anomaly_webhook: Option<http::Uri>,
}

impl AppArgs {
    fn load(&self) -> Result<App> {
        let l = &self.limits;
        let cli = LimitOverrides {
            timeout: l.timeout,
            cpu_time: l.cpu_time,
            max_memory: l.max_memory,
            fuel: l.fuel,
            max_concurrency: l.max_concurrency,
            queue: l.queue,
            queue_timeout: l.queue_timeout,
            max_request_body: l.max_request_body,
            max_response_body: l.max_response_body,
        };
        let mut app = match (&self.manifest, &self.module) {
            (Some(m), _) => wedge_manifest::load(m, &cli)?,
            (None, Some(module)) => wedge_manifest::single(module, &cli),
            (None, None) => anyhow::bail!("give a MODULE or -f wedge.toml"),
        };
        if let Some((count, period)) = self.rate_limit {
            app.server.rate_limit = Some(wedge_manifest::rate::RateLimit {
                count,
                period,
                burst: self.rate_burst.map_or(count, |b| b.get()),
                key: wedge_manifest::rate::RateKey::Function,
                max_keys: wedge_manifest::rate::DEFAULT_MAX_KEYS,
            });
        }
        let store = self.registry.store(self.cache_dir.as_deref());
        crate::oci::resolve(&mut app, &self.registry, &store)?;
        Ok(app)
    }
}

/// What `wedge serve` sets up while its engine is being built: both
/// listening sockets, bound, and the async runtime.
struct Early {
    data: std::net::TcpListener,
    admin: std::net::TcpListener,
    runtime: tokio::runtime::Runtime,
    /// The CPUs the process may use, asked once: each asking reads the
    /// cgroup's files again.
    cpus: usize,
}

impl Early {
    fn prepare(listen: SocketAddr, admin_listen: SocketAddr) -> Result<Early> {
        let data = bind(listen).with_context(|| format!("cannot listen on {listen}"))?;
        let admin = bind(admin_listen)
            .with_context(|| format!("cannot listen on {admin_listen} (--admin-listen)"))?;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_all()
            .thread_name("wedge-worker")
            .build()
            .context("starting the async runtime")?;
        Ok(Early {
            data,
            admin,
            runtime,
            cpus,
        })
    }
}

/// A listening socket bound as tokio's `TcpListener::bind` binds one
/// (`SO_REUSEADDR`, a backlog of 1,024, non-blocking), but before any
/// runtime exists. Never `SO_REUSEPORT`: a second server on a busy port
/// must fail, not take a share of the first one's clients.
fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Sizes the node's engine (from `[server]`, else from the defaults and
/// `app`) and checks that every function of `app` fits in it.
fn engine_for(
    app: &App,
    keep_resident: u64,
    explicit_bounds_checks: bool,
) -> Result<(wasmtime::Engine, Node)> {
    let node = Node::resolve(&app.server.engine, app);
    // Left unset, `wasi_p3` was derived from these very sources: only a
    // setting can have turned it off under a 0.3 component.
    let sources_checked = app.server.engine.wasi_p3.is_none();
    for f in &app.functions {
        node.admit(&f.name, &f.limits)
            .and_then(|()| {
                if sources_checked {
                    Ok(())
                } else {
                    node.admit_source(&f.name, &f.source)
                }
            })
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    let (options, sizing) = node.sizing(keep_resident, explicit_bounds_checks);
    Ok((engine::build_serving(options, sizing)?, node))
}

/// `wedge check`: validates the manifest and compiles and links every function.
pub fn check(args: AppArgs, global: &Global) -> Result<i32> {
    let app = args.load()?;
    let (engine, _node) = engine_for(&app, 0, true)?;
    let metrics = Arc::new(Metrics::default());
    let cache = global.cache();
    let loader = Loader {
        engine: &engine,
        cache: cache.as_ref(),
        metrics: &metrics,
        clock: &Clock::none(),
    };
    let table = Table::load(&app, loader)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(table.probe())?;
    let what = app
        .manifest
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "module".into());
    println!("{what}: ok, {} functions", table.functions.len());
    for (f, spec) in table.functions.iter().zip(&app.functions) {
        let routes: Vec<&str> = spec.routes.iter().map(|r| r.template()).collect();
        println!(
            "  {:<16} {:<14} {}",
            spec.name,
            f.stable().abi,
            routes.join(" ")
        );
    }
    for t in &app.triggers.mqtt {
        println!("  trigger {t}");
    }
    Ok(0)
}

/// `RUST_BACKTRACE` alone also turns on backtraces for library errors, and a
/// guest's exit reaches wedge as one: every request of a Go or C WAGI guest
/// would then walk the host stack (measured: a quarter of Go WAGI throughput).
fn backtrace_warning(
    rust_backtrace: Option<&str>,
    lib_backtrace: Option<&str>,
) -> Option<&'static str> {
    let on = |v: Option<&str>| v.is_some_and(|v| v != "0");
    (on(rust_backtrace) && lib_backtrace.is_none()).then_some(
        "RUST_BACKTRACE is set, so every guest exit captures a host backtrace (a quarter of Go WAGI \
         throughput); set RUST_LIB_BACKTRACE=0 as well to keep panic backtraces without that cost",
    )
}

pub fn serve(args: ServeArgs, global: &Global) -> Result<i32> {
    let mut start = crate::startup::Startup::new();
    wedge_observe::log::set_level(&args.log_level)
        .map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
    wedge_observe::log::set_json(args.log_format == "json");
    wedge_observe::log::start();
    wedge_observe::log::forward_library_events(std::env::var("RUST_LOG").ok().as_deref())
        .map_err(|e| anyhow::anyhow!(e))?;
    let store = match &args.state {
        Some(dir) => Some(Arc::new(
            wedge_control::Store::open(dir).map_err(|e| anyhow::anyhow!("--state: {e}"))?,
        )),
        None => None,
    };
    // Deploys through the admin API pull `?oci=` artifacts as sources do.
    let registry = (
        args.app.registry.options()?,
        args.app.registry.store(args.app.cache_dir.as_deref()),
    );
    let load_app = {
        let (app_args, store) = (args.app, store.clone());
        move || -> Result<App> {
            let mut app = app_args.load()?;
            if let Some(store) = &store {
                for drift in wedge_control::apply(&mut app, store)? {
                    wedge_observe::log::line("warn", "-", &drift.function, &drift.to_string());
                }
            }
            Ok(app)
        }
    };
    let app = load_app()?;
    if store.is_none()
        && let Some(f) = app
            .functions
            .iter()
            .find(|f| f.cloudevents == wedge_manifest::CloudEvents::Async)
    {
        anyhow::bail!(
            "function {} takes CloudEvents asynchronously (cloudevents = \"async\"): give --state DIR, \
             where accepted events are kept until they are delivered",
            f.name
        );
    }
    if let Some(warning) = backtrace_warning(
        std::env::var("RUST_BACKTRACE").ok().as_deref(),
        std::env::var("RUST_LIB_BACKTRACE").ok().as_deref(),
    ) {
        eprintln!("wedge: warning: {warning}");
    }
    start.mark("manifest");
    let listen = args
        .listen
        .or(app.server.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid address"));
    let configured_token = configured_admin_token(args.admin_token_file.as_ref())?;
    if configured_token.is_none() && !args.admin_listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve the admin listener on {} without a token: anyone who can reach \
             it could change the server. Give --admin-token-file FILE or WEDGE_ADMIN_TOKEN, or \
             keep --admin-listen on 127.0.0.1",
            args.admin_listen
        );
    }
    // The engine's instance pool takes milliseconds to set up (Wasmtime
    // protects each fiber stack's guard page with an mprotect of its own), so
    // it is built on a thread of its own while this one binds the listeners
    // and starts the runtime. Clients that connect meanwhile wait in the
    // listen backlog and are answered once the functions are ready, instead
    // of being refused.
    let (built, early) = std::thread::scope(|s| {
        let job = std::thread::Builder::new()
            .name("wedge-engine".into())
            .spawn_scoped(s, || {
                engine_for(&app, args.keep_resident, args.bounds_checks == "explicit")
            });
        let early = Early::prepare(listen, args.admin_listen);
        let built = match job {
            Ok(job) => job
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(e) => Err(anyhow::Error::from(e).context("starting the engine thread")),
        };
        (built, early)
    });
    let (engine, node) = built?;
    let Early {
        data: data_socket,
        admin: admin_socket,
        runtime,
        cpus,
    } = early?;
    start.mark("engine");
    let mut metrics = Metrics::default();
    metrics.anomaly_config.window = args.anomaly_window;
    if let Some(url) = &args.anomaly_webhook {
        anyhow::ensure!(
            url.scheme().is_some() && url.authority().is_some(),
            "--anomaly-webhook {url}: give an absolute http:// or https:// URL"
        );
        metrics.anomaly_webhook = Some(url.clone());
    }
    let metrics = Arc::new(metrics);
    let cache = global.cache();
    // Parked until a guest runs: an idle server does not tick.
    let ticker = Ticker::start(engine.clone()).context("starting the epoch thread")?;
    let loader = Loader {
        engine: &engine,
        cache: cache.as_ref(),
        metrics: &metrics,
        clock: &ticker.clock(),
    };
    let table = Table::load(&app, loader)?;
    start.mark("functions");
    let mut limits = app.server.connections.clone();
    limits
        .apply(&args.connections.overrides())
        .map_err(|e| anyhow::anyhow!("connection limits: {e}"))?;
    let tls_files = match (&args.connections.tls_cert, &args.connections.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => app.server.tls.clone(),
    };
    let tls = tls_files
        .as_ref()
        .map(Tls::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("tls: {e}"))?;
    let traces = wedge_observe::traces::Config::resolve(&app.telemetry)
        .map_err(|e| anyhow::anyhow!("tracing: {e}"))?;
    runtime.block_on(async move {
        if let Some(config) = &traces {
            eprintln!(
                "traces: OTLP to {} as service {} (sampling {}{})",
                config.endpoint,
                config.service_name(),
                config.ratio,
                if config.parent_based {
                    ", parent-based"
                } else {
                    ""
                }
            );
        }
        let mut pipeline = Pipeline::new(metrics.clone());
        if let Some(config) = traces {
            let dropped = metrics.spans_dropped.with(&[]);
            pipeline.tracer = Some(wedge_observe::traces::Tracer::start(config, dropped));
        }
        table.probe().await?;
        start.mark("probe");
        let threading = match args.threading.as_str() {
            "shared" => server::Threads::Shared,
            _ => server::Threads::PerCore(args.threads.map_or(cpus, |n| n.get())),
        };
        let listener = tokio::net::TcpListener::from_std(data_socket)?;
        let bound = listener.local_addr()?;
        for (served, spec) in table.functions.iter().zip(&app.functions) {
            let mut routes: Vec<&str> = spec.routes.iter().map(|r| r.template()).collect();
            if routes.is_empty() {
                routes.push("(no routes: invoked by its triggers)");
            }
            let f = served.stable();
            eprintln!(
                "function {} ({}, aot cache {}): {}",
                spec.name,
                f.abi,
                f.cache.as_str(),
                routes.join(" ")
            );
            if served.versions.len() > 1 {
                let weights = served.traffic.weights();
                for (v, w) in served.versions.iter().zip(weights) {
                    eprintln!(
                        "  version {} ({}%, {}, aot cache {})",
                        v.spec.version,
                        f64::from(w) / 100.0,
                        v.abi,
                        v.cache.as_str()
                    );
                }
            }
            for v in &served.versions {
                if let Some(note) = &v.cache_note {
                    eprintln!("  aot cache: {note}");
                }
                if let Some(note) = &v.snapshot {
                    eprintln!("  {note}");
                }
            }
        }
        let admin = tokio::net::TcpListener::from_std(admin_socket)?;
        let admin_addr = admin.local_addr()?;
        let token = match configured_token {
            Some(t) => t,
            None => {
                let (token, path) = generate_admin_token(admin_addr.port())?;
                println!("admin token in {}", path.display());
                token
            }
        };
        let shared = table::shared(table);
        let mut reloader = Reloader::new(
            Box::new(load_app),
            engine.clone(),
            ticker.clock(),
            node,
            cache,
            metrics.clone(),
            shared.clone(),
            &app,
        );
        let triggers = wedge_events::mqtt::Triggers::new(shared.clone(), pipeline.clone());
        reloader.events = Some(triggers.clone());
        let reloader = Arc::new(reloader);
        // Asynchronous CloudEvents are stored in the state store.
        let ingress = match &store {
            Some(store) => Some(
                wedge_events::ingress::Ingress::start(
                    store.clone(),
                    shared.clone(),
                    pipeline.clone(),
                )
                .map_err(|e| anyhow::anyhow!("--state: {e}"))?,
            ),
            None => None,
        };
        let control = store.map(|store| {
            let api = crate::api::Api::new(store, reloader.clone(), ingress.clone(), registry);
            api.resume_rollouts();
            api as Arc<dyn wedge_http::admin::Control>
        });
        let admin_listener = Listener::new(
            "admin",
            admin_limits(&limits),
            None,
            &metrics.connections_open,
            &metrics.connections_closed,
        );
        if let Some(tls) = &tls {
            tokio::spawn(tls.clone().watch(Duration::from_secs(1)));
        }
        let data_listener = Listener::new(
            "data",
            limits.clone(),
            tls,
            &metrics.connections_open,
            &metrics.connections_closed,
        );
        for t in &app.triggers.mqtt {
            match &t.dead_letter_topic {
                Some(d) => eprintln!("trigger {t} (dead letters to {d})"),
                None => eprintln!("trigger {t}"),
            }
        }
        triggers
            .apply(&app.triggers.mqtt, app.server.shutdown_grace)
            .await;
        let mut handler = Handler::new(shared.clone(), app.server.health_prefix.clone(), pipeline);
        let admin_app = Arc::new(Admin {
            metrics,
            table: shared,
            engine: Some(engine.clone()),
            control,
            token,
            ready: handler.ready.clone(),
            triggers: Some(triggers.clone() as Arc<dyn wedge_trigger::status::Status>),
        });
        tokio::spawn(server::serve(
            admin,
            admin_app,
            admin_listener,
            std::future::pending(),
            Duration::ZERO,
        ));
        handler.ingress = ingress.map(|i| i as Arc<dyn wedge_trigger::ingress::Ingress>);
        handler.debug_token = args.debug_token.clone().filter(|t| !t.is_empty());
        handler.max_header_bytes = limits.max_header_bytes;
        handler.body_timeout = limits.body_timeout;
        let handler = Arc::new(handler);
        tokio::spawn(table::watch_anomalies(
            handler.table.clone(),
            args.anomaly_window,
        ));
        if args.watch {
            if app.manifest.is_none() {
                eprintln!("watching the module for changes");
            } else {
                eprintln!("watching the manifest and its modules for changes");
            }
            tokio::spawn(crate::watch::watch(reloader)?);
        }
        let scheme = if tls_files.is_some() { "https" } else { "http" };
        println!("admin on http://{admin_addr}");
        println!("listening on {scheme}://{bound}");
        eprintln!("{}", start.finish());
        std::io::stdout().flush()?;
        let drained = server::serve_on(
            listener,
            threading,
            handler,
            data_listener,
            shutdown_signal(),
            app.server.shutdown_grace,
        )
        .await?;
        // Then the triggers: each finishes (and acknowledges) what it is
        // handling, within the grace; the broker keeps the rest.
        triggers.stop_all(app.server.shutdown_grace).await;
        wedge_observe::log::flush();
        if drained {
            eprintln!("wedge: shut down cleanly");
        } else {
            eprintln!(
                "wedge: shutdown grace of {} passed with requests still in flight",
                units::format_duration(app.server.shutdown_grace)
            );
        }
        Ok(0)
    })
}

/// The admin listener keeps the data plane's timeouts but serves a few
/// operators and scrapers, not the internet: 64 connections.
fn admin_limits(data: &Connections) -> Connections {
    Connections {
        max_connections: 64,
        ..data.clone()
    }
}

/// The admin token from `--admin-token-file` or `WEDGE_ADMIN_TOKEN`, if given.
fn configured_admin_token(token_file: Option<&PathBuf>) -> Result<Option<Token>> {
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--admin-token-file {}", path.display()))?;
        let token = Token::new(&text)
            .map_err(|e| anyhow::anyhow!("--admin-token-file {}: {e}", path.display()))?;
        return Ok(Some(token));
    }
    match std::env::var("WEDGE_ADMIN_TOKEN") {
        Ok(t) if !t.trim().is_empty() => Ok(Some(
            Token::new(&t).map_err(|e| anyhow::anyhow!("WEDGE_ADMIN_TOKEN: {e}"))?,
        )),
        _ => Ok(None),
    }
}

/// Where a generated admin token goes: `$XDG_RUNTIME_DIR/wedge` (a per-user
/// tmpfs, gone at logout), else `$XDG_STATE_HOME/wedge`, else
/// `~/.local/state/wedge`; one file per admin port.
pub(crate) fn token_dir() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(d) = var("XDG_RUNTIME_DIR") {
        return Ok(d.join("wedge"));
    }
    if let Some(d) = var("XDG_STATE_HOME") {
        return Ok(d.join("wedge"));
    }
    var("HOME")
        .map(|h| h.join(".local/state/wedge"))
        .context("no XDG_RUNTIME_DIR, XDG_STATE_HOME or HOME to write the admin token to; give --admin-token-file")
}

/// Generates a token and writes it (directory 0700, file 0600).
fn generate_admin_token(port: u16) -> Result<(Token, PathBuf)> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let text = Token::generate().map_err(|e| anyhow::anyhow!(e))?;
    let dir = token_dir()?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("admin-{port}.token"));
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing the admin token to {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    let token = Token::new(&text).map_err(|e| anyhow::anyhow!(e))?;
    Ok((token, path))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => eprintln!("wedge: SIGTERM, draining"),
        _ = int.recv() => eprintln!("wedge: SIGINT, draining"),
    }
}

#[cfg(test)]
mod tests {
    use super::backtrace_warning;

    #[test]
    fn warns_only_when_library_backtraces_would_be_captured() {
        assert!(backtrace_warning(Some("1"), None).is_some());
        assert!(backtrace_warning(Some("full"), None).is_some());
        assert!(backtrace_warning(Some("1"), Some("0")).is_none());
        assert!(backtrace_warning(Some("0"), None).is_none());
        assert!(backtrace_warning(None, None).is_none());
    }
}
