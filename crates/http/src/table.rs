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
    pub functions: Vec<Loaded>,
}

impl Table {
    /// Compiles (through the cache) and links every function of `app`.
    pub fn load(
        app: &App,
        engine: &Engine,
        cache: Option<&Cache>,
        metrics: &Arc<Metrics>,
    ) -> Result<Table> {
        let mut shared = function::Shared::new();
        let functions = app
            .functions
            .iter()
            .map(|f| function::load(engine, f, cache, metrics, &mut shared))
            .collect::<Result<Vec<_>>>()?;
        Ok(Table {
            router: app.router.clone(),
            functions,
        })
    }
}

impl Table {
    /// Instantiates every function once (see `Wagi::probe`); the error
    /// names the function.
    pub async fn probe(&self) -> Result<()> {
        for f in &self.functions {
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
