//! `wedge serve` and `wedge check`: HTTP functions from one module or an app manifest.

use crate::Global;
use anyhow::{Context, Result};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wedge_http::handler::Handler;
use wedge_http::metrics::Metrics;
use wedge_http::server::{self, EpochTicker};
use wedge_http::table::{self, Table};
use wedge_manifest::{App, LimitOverrides};
use wedge_runtime::engine::{self, EngineOptions, PoolSizing};
use wedge_runtime::units;

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
}

/// Per-function limits; each sets the default for every function
/// (a function's own manifest key still wins).
#[derive(clap::Args)]
#[command(next_help_heading = "Limits (defaults for every function)")]
struct LimitArgs {
    /// Wall-clock time a request may run (504 after it)
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    timeout: Option<Duration>,
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

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    app: AppArgs,
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
    /// Admin listener (GET /metrics, GET/PUT /log-level); port 0 picks one
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9464")]
    admin_listen: SocketAddr,
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
            max_memory: l.max_memory,
            fuel: l.fuel,
            max_concurrency: l.max_concurrency,
            queue: l.queue,
            queue_timeout: l.queue_timeout,
            max_request_body: l.max_request_body,
            max_response_body: l.max_response_body,
        };
        match (&self.manifest, &self.module) {
            (Some(m), _) => Ok(wedge_manifest::load(m, &cli)?),
            (None, Some(module)) => Ok(wedge_manifest::single(module, &cli)),
            (None, None) => anyhow::bail!("give a MODULE or -f wedge.toml"),
        }
    }
}

fn engine_for(
    app: &App,
    keep_resident: u64,
    explicit_bounds_checks: bool,
) -> Result<wasmtime::Engine> {
    let instances: u32 = app
        .functions
        .iter()
        .map(|f| f.limits.max_concurrency)
        .fold(16u32, u32::saturating_add);
    let max_memory = app
        .functions
        .iter()
        .map(|f| f.limits.max_memory)
        .max()
        .unwrap_or(64 << 20);
    let fuel = app.functions.iter().any(|f| f.limits.fuel.is_some());
    Ok(engine::build_serving(
        EngineOptions { fuel },
        PoolSizing {
            instances,
            max_memory,
            keep_resident,
            explicit_bounds_checks,
        },
    )?)
}

/// `wedge check`: validates the manifest and compiles and links every function.
pub fn check(args: AppArgs, global: &Global) -> Result<i32> {
    let app = args.load()?;
    let engine = engine_for(&app, 0, true)?;
    let metrics = Arc::new(Metrics::default());
    let table = Table::load(&app, &engine, global.cache().as_ref(), &metrics)?;
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
        println!("  {:<16} {:<14} {}", spec.name, f.abi, routes.join(" "));
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
    wedge_http::log::set_level(&args.log_level).map_err(|e| anyhow::anyhow!("--log-level: {e}"))?;
    wedge_http::log::set_json(args.log_format == "json");
    let app = args.app.load()?;
    if let Some(warning) = backtrace_warning(
        std::env::var("RUST_BACKTRACE").ok().as_deref(),
        std::env::var("RUST_LIB_BACKTRACE").ok().as_deref(),
    ) {
        eprintln!("wedge: warning: {warning}");
    }
    let engine = engine_for(&app, args.keep_resident, args.bounds_checks == "explicit")?;
    let mut metrics = Metrics::default();
    metrics.anomaly_config.window = args.anomaly_window;
    if let Some(url) = &args.anomaly_webhook {
        anyhow::ensure!(
            url.scheme().is_some() && url.authority().is_some(),
            "--anomaly-webhook {url}: give an absolute http:// or https:// URL"
        );
        metrics.anomaly_webhook = Some(url.clone());
    }
    let _ = metrics.engine.set(engine.clone());
    let metrics = Arc::new(metrics);
    let table = Table::load(&app, &engine, global.cache().as_ref(), &metrics)?;
    let listen = args
        .listen
        .or(app.server.listen)
        .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("valid address"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wedge-worker")
        .build()
        .context("starting the async runtime")?;
    let traces = wedge_http::traces::Config::resolve(&app.telemetry)
        .map_err(|e| anyhow::anyhow!("tracing: {e}"))?;
    runtime.block_on(async move {
        if let Some(config) = traces {
            eprintln!(
                "traces: OTLP to {} as service {} (sampling {}{})",
                config.endpoint,
                config.service_name,
                config.ratio,
                if config.parent_based {
                    ", parent-based"
                } else {
                    ""
                }
            );
            let dropped = metrics.spans_dropped.with(&[]);
            let _ = metrics
                .tracer
                .set(wedge_http::traces::Tracer::start(config, dropped));
        }
        table.probe().await?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let bound = listener.local_addr()?;
        for (f, spec) in table.functions.iter().zip(&app.functions) {
            let routes: Vec<&str> = spec.routes.iter().map(|r| r.template()).collect();
            eprintln!(
                "function {} ({}, aot cache {}): {}",
                spec.name,
                f.abi,
                f.cache.as_str(),
                routes.join(" ")
            );
            if let Some(note) = &f.cache_note {
                eprintln!("  aot cache: {note}");
            }
        }
        let admin = tokio::net::TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (--admin-listen)", args.admin_listen))?;
        let admin_addr = admin.local_addr()?;
        let shared = table::shared(table);
        tokio::spawn(wedge_http::admin::serve(
            admin,
            metrics.clone(),
            shared.clone(),
        ));
        let mut handler = Handler::new(shared, app.server.health_prefix.clone(), metrics);
        handler.debug_token = args.debug_token.clone().filter(|t| !t.is_empty());
        let handler = Arc::new(handler);
        tokio::spawn(table::watch_anomalies(
            handler.table.clone(),
            args.anomaly_window,
        ));
        let _ticker = EpochTicker::start(engine.clone());
        println!("admin on http://{admin_addr}");
        println!("listening on http://{bound}");
        std::io::stdout().flush()?;
        let drained = server::serve(
            listener,
            handler,
            app.server.max_connections as usize,
            shutdown_signal(),
            app.server.shutdown_grace,
        )
        .await;
        wedge_http::log::flush();
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
