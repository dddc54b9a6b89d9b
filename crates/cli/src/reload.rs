//! Reloading a running server's functions: the manifest and modules are
//! read again, new and changed functions are compiled, linked and probed
//! off the request path, and the new table replaces the old one in one
//! atomic swap. Requests already running finish on the table they started
//! with; a reload that fails leaves the old table serving.

use anyhow::{Context, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime};
use wedge_executor::function::Loader;
use wedge_manifest::{App, Server};
use wedge_observe::metrics::Metrics;
use wedge_runtime::cache::Cache;
use wedge_runtime::engine::Node;
use wedge_runtime::ticker::Clock;
use wedge_trigger::table::{self, Changes, Table};

/// Everything a reload needs, shared by the file watcher (and, later, the
/// admin API).
pub struct Reloader {
    /// Reads and validates the manifest again.
    pub load: Box<dyn Fn() -> Result<App> + Send + Sync>,
    pub engine: wasmtime::Engine,
    /// The epoch clock new versions' stores keep ticking.
    pub clock: Clock,
    pub node: Node,
    pub cache: Option<Cache>,
    pub metrics: Arc<Metrics>,
    pub table: table::Shared,
    /// The server settings in force, which a reload cannot change.
    pub server: Server,
    /// The message triggers, which a reload changes to the manifest's.
    pub events: Option<Arc<wedge_events::mqtt::Triggers>>,
    /// The manifest, if the app has one.
    pub manifest: Option<PathBuf>,
    /// Every module the manifest named when it was last read.
    sources: std::sync::Mutex<Vec<PathBuf>>,
    /// Serialises reloads.
    lock: tokio::sync::Mutex<()>,
}

/// Every module `app` names, canaries included.
fn sources_of(app: &App) -> Vec<PathBuf> {
    app.functions
        .iter()
        .flat_map(|f| {
            f.traffic
                .canaries
                .iter()
                .map(|c| c.source.clone())
                .chain([f.source.clone()])
        })
        .collect()
}

/// A module's size and modification time, to tell whether it was written
/// to while it was being loaded.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &PathBuf) -> Stamp {
    let m = std::fs::metadata(path).ok()?;
    Some((m.len(), m.modified().ok()?))
}

impl Reloader {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        load: Box<dyn Fn() -> Result<App> + Send + Sync>,
        engine: wasmtime::Engine,
        clock: Clock,
        node: Node,
        cache: Option<Cache>,
        metrics: Arc<Metrics>,
        table: table::Shared,
        app: &App,
    ) -> Reloader {
        metrics.reload_last_successful.with(&[]).set(1);
        Reloader {
            load,
            engine,
            clock,
            node,
            cache,
            metrics,
            table,
            server: app.server.clone(),
            events: None,
            manifest: app.manifest.clone(),
            sources: std::sync::Mutex::new(sources_of(app)),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// The files a reload reads: the manifest, the modules serving now, and
    /// those the manifest named when it was last read (which may not load).
    pub fn inputs(&self) -> Vec<PathBuf> {
        let current = self.table.load();
        let mut files: Vec<PathBuf> = current
            .versions()
            .map(|f| f.config.source.clone())
            .collect();
        files.extend(self.manifest.clone());
        files.extend(
            self.sources
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        files.sort();
        files.dedup();
        files
    }

    /// Reloads, logs the outcome and counts it; `Err` leaves the old table.
    pub async fn reload(&self) -> Result<Changes> {
        let _one_at_a_time = self.lock.lock().await;
        let start = Instant::now();
        let result = self.try_reload().await;
        let ok = result.is_ok();
        self.metrics
            .reloads
            .with(&[if ok { "ok" } else { "failed" }])
            .inc();
        self.metrics
            .reload_last_successful
            .with(&[])
            .set(i64::from(ok));
        match &result {
            Ok(c) if c.is_empty() => {}
            Ok(c) => wedge_observe::log::line(
                "info",
                "-",
                "-",
                &format!("reloaded in {} ms: {c}", start.elapsed().as_millis()),
            ),
            Err(e) => wedge_observe::log::line(
                "warn",
                "-",
                "-",
                &format!("reload failed, the previous functions keep serving: {e:#}"),
            ),
        }
        result
    }

    async fn try_reload(&self) -> Result<Changes> {
        let app = (self.load)()?;
        *self.sources.lock().unwrap_or_else(|e| e.into_inner()) = sources_of(&app);
        for f in &app.functions {
            self.node
                .admit(&f.name, &f.limits)
                .and_then(|()| self.node.admit_source(&f.name, &f.source))
                .map_err(anyhow::Error::msg)?;
        }
        self.warn_unapplied(&app.server);
        let sources = sources_of(&app);
        let before: Vec<Stamp> = sources.iter().map(stamp).collect();
        let previous = self.table.load_full();
        let (engine, cache, metrics, clock) = (
            self.engine.clone(),
            self.cache.clone(),
            self.metrics.clone(),
            self.clock.clone(),
        );
        let app = Arc::new(app);
        let for_load = app.clone();
        // Compiling takes a core for a while: keep it off the async workers.
        let (table, changes) = tokio::task::spawn_blocking(move || {
            let loader = Loader {
                engine: &engine,
                cache: cache.as_ref(),
                metrics: &metrics,
                clock: &clock,
            };
            Table::reload(&for_load, Some(&previous), loader)
        })
        .await
        .context("the reload task failed")??;
        // Same functions, same routes (they are part of each entry): the
        // table serving now is equivalent and stays.
        if !changes.is_empty() {
            self.swap(table, &changes, &sources, &before).await?;
        }
        if let Some(events) = &self.events {
            let (stopped, started) = events
                .apply(&app.triggers.mqtt, self.server.shutdown_grace)
                .await;
            if stopped + started > 0 {
                let msg = format!("mqtt triggers: {stopped} stopped, {started} started");
                wedge_observe::log::line("info", "-", "-", &msg);
            }
        }
        Ok(changes)
    }

    /// Probes the new and changed functions of `table`, then serves it.
    async fn swap(
        &self,
        table: Table,
        changes: &Changes,
        sources: &[PathBuf],
        before: &[Stamp],
    ) -> Result<()> {
        let fresh: Vec<&String> = changes.added.iter().chain(&changes.changed).collect();
        table
            .probe_only(|name| fresh.iter().any(|f| *f == name))
            .await?;
        let after: Vec<Stamp> = sources.iter().map(stamp).collect();
        if let Some(i) = (0..before.len()).find(|&i| before[i] != after[i]) {
            anyhow::bail!(
                "{} changed while it was being loaded (still being written?); it will be \
                 loaded again when the write completes",
                sources[i].display()
            );
        }
        let serving: Vec<(&str, &str)> = table
            .functions
            .iter()
            .flat_map(|f| f.names.iter().map(|v| (f.name.as_str(), &**v)))
            .collect();
        self.metrics.prune_versions(&serving);
        self.table.store(Arc::new(table));
        Ok(())
    }

    /// Server settings are read once at start; say so when they change.
    fn warn_unapplied(&self, new: &Server) {
        let mut changed = Vec::new();
        if new.listen.is_some() && new.listen != self.server.listen {
            changed.push("listen");
        }
        if new.connections != self.server.connections {
            changed.push("connection limits");
        }
        if new.tls != self.server.tls {
            changed.push("tls");
        }
        if new.engine != self.server.engine {
            changed.push("engine sizing");
        }
        if new.health_prefix != self.server.health_prefix {
            changed.push("health_prefix");
        }
        if new.shutdown_grace != self.server.shutdown_grace {
            changed.push("shutdown_grace");
        }
        if !changed.is_empty() {
            wedge_observe::log::line(
                "warn",
                "-",
                "-",
                &format!(
                    "[server] {} changed in the manifest: applied at the next restart, not by a reload",
                    changed.join(", ")
                ),
            );
        }
    }
}
