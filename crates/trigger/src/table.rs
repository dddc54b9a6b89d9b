//! The table of functions being served: router plus loaded functions. It is
//! immutable once built and swapped as a whole (`ArcSwap`), so a reload can
//! replace it atomically while requests keep using the one they started with.

use crate::gate::Gate;
use crate::rate::Bucket;
use crate::split::Split;
use anyhow::Result;
use arc_swap::ArcSwap;
use std::sync::Arc;
use wedge_executor::breaker::Breaker;
use wedge_executor::function::{self, Loaded, Loader};
use wedge_manifest::{App, Function, Router, Traffic};
use wedge_observe::metrics::Metrics;

pub struct Table {
    pub router: Router,
    /// By the router's target index.
    pub functions: Vec<Arc<Served>>,
    /// The node-wide rate limit, if any.
    pub node_rate: Option<Arc<Bucket>>,
}

/// One version of a function as served: its loaded code and the gate that
/// bounds its concurrency and queue. A reload that keeps the version keeps
/// both, with the invocations waiting at the gate.
pub struct Version {
    pub loaded: Loaded,
    pub gate: Gate,
    /// Sheds requests while the version fails, when it has one.
    pub breaker: Option<Arc<Breaker>>,
}

impl Version {
    pub fn new(loaded: Loaded, metrics: &Metrics) -> Self {
        let l = &loaded.config.limits;
        let gate = Gate::new(l.max_concurrency, l.queue, l.queue_timeout);
        let breaker = loaded
            .config
            .circuit_breaker
            .as_ref()
            .map(|b| Arc::new(Breaker::new(b, metrics, &loaded.spec.name, "inbound")));
        Version {
            loaded,
            gate,
            breaker,
        }
    }
}

/// A version reads as its loaded function (`v.spec`, `v.config`): the gate
/// is the only thing serving adds.
impl std::ops::Deref for Version {
    type Target = Loaded;
    fn deref(&self) -> &Loaded {
        &self.loaded
    }
}

/// One function as routed: its versions in traffic and how they share it.
pub struct Served {
    pub name: String,
    /// Canaries first, the stable version last (the split's order).
    pub versions: Vec<Arc<Version>>,
    /// The versions' names, in the same order.
    pub names: Vec<Arc<str>>,
    pub split: Split,
    pub traffic: Traffic,
    /// Rate limits every request of the function passes, keyed ones first.
    pub rate: Vec<Arc<Bucket>>,
}

impl Served {
    /// The version that serves a request with these headers.
    pub fn pick(&self, headers: &http::HeaderMap) -> &Arc<Version> {
        &self.versions[self.split.pick(headers, &self.names)]
    }

    /// The stable version.
    pub fn stable(&self) -> &Arc<Version> {
        self.versions.last().expect("a function has a version")
    }
}

/// What a reload changed, by function name.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    /// Only the traffic rules changed (weights, header, sticky).
    pub traffic: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.changed.is_empty()
            && self.traffic.is_empty()
            && self.removed.is_empty()
    }
}

impl std::fmt::Display for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("changed", &self.changed),
            ("traffic of", &self.traffic),
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
    pub fn load(app: &App, loader: Loader<'_>) -> Result<Table> {
        Ok(Table::reload(app, None, loader)?.0)
    }

    /// Builds the table for `app`, keeping from `previous` every version
    /// whose configuration and module are unchanged: the same loaded code,
    /// concurrency gate (with the requests queued on it) and metrics, with
    /// their anomaly baselines. Only new or changed versions are loaded.
    pub fn reload(
        app: &App,
        previous: Option<&Table>,
        loader: Loader<'_>,
    ) -> Result<(Table, Changes)> {
        let cache = loader.cache;
        let mut shared = function::Shared::new();
        let mut changes = Changes::default();
        let mut functions = Vec::with_capacity(app.functions.len());
        for f in &app.functions {
            let old = previous.and_then(|t| t.functions.iter().find(|o| o.name == f.name));
            let mut versions = Vec::with_capacity(f.traffic.canaries.len() + 1);
            let mut fresh = false;
            for config in version_configs(f) {
                let kept = match old.and_then(|o| o.versions.iter().find(|v| v.config == config)) {
                    Some(v) if function::source_sha256(&config, cache)? == v.sha256 => Some(v),
                    _ => None,
                };
                match kept {
                    Some(v) => versions.push(v.clone()),
                    None => {
                        fresh = true;
                        let loaded = function::load(loader, &config, &mut shared)?;
                        versions.push(Arc::new(Version::new(loaded, loader.metrics)));
                    }
                }
            }
            let names: Vec<Arc<str>> = versions.iter().map(|v| v.spec.version.clone()).collect();
            if let Some(dup) = names
                .iter()
                .enumerate()
                .find(|(i, n)| names[..*i].contains(n))
            {
                anyhow::bail!(
                    "function `{}`: two versions are both named `{}` (unnamed versions are named \
                     by their module's digest: give them a `version`)",
                    f.name,
                    dup.1
                );
            }
            match old {
                None => changes.added.push(f.name.clone()),
                Some(o) if fresh || o.versions.len() != versions.len() => {
                    changes.changed.push(f.name.clone())
                }
                Some(o) if o.traffic != f.traffic || o.names != names => {
                    changes.traffic.push(f.name.clone())
                }
                Some(_) => changes.unchanged += 1,
            }
            // Buckets survive a reload that keeps their limit: a reload is
            // no way around a rate limit.
            let rate = match old {
                Some(o) if o.rate.iter().map(|b| &b.config).eq(f.rate_limits.iter()) => {
                    o.rate.clone()
                }
                _ => f
                    .rate_limits
                    .iter()
                    .map(|l| Arc::new(Bucket::new(l, loader.metrics, &f.name)))
                    .collect(),
            };
            functions.push(Arc::new(Served {
                rate,
                name: f.name.clone(),
                split: Split::new(&f.name, &f.traffic),
                traffic: f.traffic.clone(),
                names,
                versions,
            }));
        }
        if let Some(t) = previous {
            for o in &t.functions {
                if !app.functions.iter().any(|f| f.name == o.name) {
                    changes.removed.push(o.name.clone());
                }
            }
        }
        let node_rate = match (
            &app.server.rate_limit,
            previous.and_then(|t| t.node_rate.as_ref()),
        ) {
            (None, _) => None,
            (Some(l), Some(old)) if old.config == *l => Some(old.clone()),
            (Some(l), _) => Some(Arc::new(Bucket::new(l, loader.metrics, ""))),
        };
        Ok((
            Table {
                router: app.router.clone(),
                functions,
                node_rate,
            },
            changes,
        ))
    }

    /// Every loaded version of every function.
    pub fn versions(&self) -> impl Iterator<Item = &Arc<Version>> {
        self.functions.iter().flat_map(|f| f.versions.iter())
    }

    /// Instantiates every function once (see `Wagi::probe`); the error
    /// names the function.
    pub async fn probe(&self) -> Result<()> {
        self.probe_only(|_| true).await
    }

    /// Probes the functions `which` selects.
    pub async fn probe_only(&self, which: impl Fn(&str) -> bool) -> Result<()> {
        for f in self.versions().filter(|f| which(&f.config.name)) {
            f.executor.probe().await.map_err(|e| {
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
        for f in table.load().versions() {
            f.spec.metrics.close_window();
        }
    }
}

/// One configuration per version of `f`, in the split's order (canaries,
/// then stable): each a copy of the function with the version's source,
/// environment and name, and no traffic rules of its own.
pub fn version_configs(f: &Function) -> Vec<Function> {
    let bare = |source, env, version| Function {
        source,
        env,
        version,
        traffic: Traffic::default(),
        ..f.clone()
    };
    f.traffic
        .canaries
        .iter()
        .map(|c| bare(c.source.clone(), c.env.clone(), Some(c.version.clone())))
        .chain([bare(f.source.clone(), f.env.clone(), f.version.clone())])
        .collect()
}

/// The current table, replaceable while serving.
pub type Shared = Arc<ArcSwap<Table>>;

pub fn shared(table: Table) -> Shared {
    Arc::new(ArcSwap::from_pointee(table))
}
