//! The table of functions being served: router plus loaded functions. It is
//! immutable once built and swapped as a whole (`ArcSwap`), so a reload can
//! replace it atomically while requests keep using the one they started with.

use crate::function::{self, Loaded};
use crate::metrics::Metrics;
use anyhow::Result;
use arc_swap::ArcSwap;
use std::sync::Arc;
use wasmtime::Engine;
use wedge_manifest::{App, Router};
use wedge_runtime::cache::Cache;

pub struct Table {
    pub router: Router,
    pub functions: Vec<Arc<Loaded>>,
}

/// What a reload changed, by function name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("changed", &self.changed),
            ("removed", &self.removed),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what} {}", names.join(", ")));
            }
        }
        parts.push(format!("{} unchanged", self.unchanged));
        f.write_str(&parts.join("; "))
    }
}

impl Table {
    /// Compiles (through the cache) and links every function of `app`.
    pub fn load(
        app: &App,
        engine: &Engine,
        cache: Option<&Cache>,
        metrics: &Arc<Metrics>,
    ) -> Result<Table> {
        Ok(Table::reload(app, None, engine, cache, metrics)?.0)
    }

    /// Builds the table for `app`, keeping from `previous` every function
    /// whose manifest entry and module are unchanged: the same loaded code,
    /// concurrency gate (with the requests queued on it) and metrics, with
    /// their anomaly baselines. Only new or changed functions are loaded.
    pub fn reload(
        app: &App,
        previous: Option<&Table>,
        engine: &Engine,
        cache: Option<&Cache>,
        metrics: &Arc<Metrics>,
    ) -> Result<(Table, Changes)> {
        let mut shared = function::Shared::new();
        let mut changes = Changes::default();
        let mut functions = Vec::with_capacity(app.functions.len());
        for f in &app.functions {
            let old = previous.and_then(|t| t.functions.iter().find(|o| o.config.name == f.name));
            if let Some(old) = old
                && old.config == *f
                && function::source_sha256(f, cache)? == old.sha256
            {
                changes.unchanged += 1;
                functions.push(old.clone());
                continue;
            }
            let loaded = function::load(engine, f, cache, metrics, &mut shared)?;
            match old {
                Some(_) => changes.changed.push(f.name.clone()),
                None => changes.added.push(f.name.clone()),
            }
            functions.push(Arc::new(loaded));
        }
        if let Some(t) = previous {
            for o in &t.functions {
                if !app.functions.iter().any(|f| f.name == o.config.name) {
                    changes.removed.push(o.config.name.clone());
                }
            }
        }
        Ok((
            Table {
                router: app.router.clone(),
                functions,
            },
            changes,
        ))
    }

    /// Instantiates every function once (see `Wagi::probe`); the error
    /// names the function.
    pub async fn probe(&self) -> Result<()> {
        self.probe_only(|_| true).await
    }

    /// Probes the functions `which` selects.
    pub async fn probe_only(&self, which: impl Fn(&str) -> bool) -> Result<()> {
        for f in self.functions.iter().filter(|f| which(&f.config.name)) {
            let result = match &f.executor {
                crate::function::Executor::Wagi(w) => w.probe().await,
                crate::function::Executor::Http(h) => h.probe().await,
            };
            result.map_err(|e| {
                anyhow::anyhow!(
                    "function `{}` cannot be instantiated: {e} (max_memory is {} bytes)",
                    f.spec.name,
                    f.spec.limits.max_memory
                )
            })?;
        }
        Ok(())
    }
}

/// Closes every function's anomaly window each `window`, for as long as
/// the returned future runs.
pub async fn watch_anomalies(table: Shared, window: std::time::Duration) {
    let mut tick = tokio::time::interval(window);
    tick.tick().await;
    loop {
        tick.tick().await;
        for f in &table.load().functions {
            f.spec.metrics.close_window();
        }
    }
}

/// The current table, replaceable while serving.
pub type Shared = Arc<ArcSwap<Table>>;

pub fn shared(table: Table) -> Shared {
    Arc::new(ArcSwap::from_pointee(table))
}
