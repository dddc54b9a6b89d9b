//! A function ready to run: its settings and its compiled code behind the
//! right executor (WAGI or `wasi:http`). Built once at load; invocations
//! only read it.

pub use crate::spec::{InitialMemoryRefused, Spec, classify, preopen};
use crate::{sdk, wagi, wasi_http};
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use wasmtime::Engine;
use wedge_manifest::{Abi, Function};
use wedge_observe::metrics::{FunctionMetrics, Metrics};
use wedge_runtime::cache::Cache;
use wedge_runtime::load::{CacheStatus, Program, Source};

pub enum Executor {
    Wagi(wagi::Wagi),
    Http(wasi_http::HttpFunction),
    Sdk(sdk::Sdk),
}

impl Executor {
    /// Instantiates the function once without running it, so that one that
    /// can never be instantiated is reported at load, not on every call.
    pub async fn probe(&self) -> Result<(), String> {
        match self {
            Executor::Wagi(w) => w.probe().await,
            Executor::Http(h) => h.probe().await,
            Executor::Sdk(s) => s.probe().await,
        }
    }

    /// The compiled code, for the profiler.
    pub fn code(&self) -> crate::profile::Code<'_> {
        match self {
            Executor::Wagi(w) => crate::profile::Code::Module(w.module()),
            Executor::Http(h) => crate::profile::Code::Component(h.component()),
            Executor::Sdk(s) => crate::profile::Code::Module(s.module()),
        }
    }
}

pub struct Loaded {
    /// The manifest entry it was loaded from, routes included.
    pub config: Function,
    /// SHA-256 of the module it runs.
    pub sha256: [u8; 32],
    pub spec: Arc<Spec>,
    pub executor: Executor,
    /// `wagi`, `wasi:http@0.2`, `wasi:http@0.3` or `wedge-sdk@1`.
    pub abi: &'static str,
    /// How a Go SDK function's snapshot was obtained, or why it is served
    /// without one (a warning).
    pub snapshot: Option<SnapshotNote>,
    pub cache: CacheStatus,
    /// Why the cached artifact was not used, if it was not.
    pub cache_note: Option<String>,
}

/// Code already loaded for this table, by source path: functions that share
/// a module share its code, verified and mapped once.
pub type Shared =
    std::collections::HashMap<std::path::PathBuf, (wedge_runtime::load::Loaded, [u8; 32])>;

/// What loading functions needs from the node.
#[derive(Clone, Copy)]
pub struct Loader<'a> {
    pub engine: &'a Engine,
    pub cache: Option<&'a Cache>,
    pub metrics: &'a Arc<Metrics>,
    /// The epoch clock the functions' stores keep ticking.
    pub clock: &'a wedge_runtime::ticker::Clock,
}

/// Compiles (through the cache) and prepares one function.
pub fn load(loader: Loader<'_>, f: &Function, shared: &mut Shared) -> Result<Loaded> {
    let Loader {
        engine,
        cache,
        metrics: registry,
        clock,
    } = loader;
    let (loaded, sha256) = match shared.get(&f.source) {
        Some(done) => done.clone(),
        None => {
            let done = load_code(engine, f, cache)?;
            shared.insert(f.source.clone(), done.clone());
            done
        }
    };

    let name: Arc<str> = f.name.as_str().into();
    let metrics = Arc::new(FunctionMetrics::new(registry.clone(), name.clone()));
    registry
        .init_duration
        .with(&[&name])
        .observe(loaded.load_time.as_secs_f64());
    registry
        .module_size
        .with(&[&name])
        .set(loaded.file_size as i64);
    registry
        .aot_cache
        .with(&[&name, loaded.cache.as_str()])
        .inc();
    let version: Arc<str> = match &f.version {
        Some(v) => v.as_str().into(),
        None => short_digest(&sha256).into(),
    };
    let spec = Arc::new(Spec {
        name: name.clone(),
        version,
        metrics,
        profiling: Arc::default(),
        limits: f.limits.clone(),
        env: f.env.clone(),
        files: f.files.clone(),
        outbound: f.outbound.clone().into(),
        allow_authorization: f.allow_authorization,
        methods: f.methods.clone(),
        instance_reuse: f.instance_reuse,
        upstreams: f
            .outbound_breaker
            .as_ref()
            .map(|b| Arc::new(crate::breaker::Upstreams::new(b, registry, &name))),
        clock: clock.clone(),
    });
    let (executor, abi) = match (&loaded.program, f.abi) {
        (Program::Module(_), _) if f.instance_reuse > 1 => bail!(
            "function `{}`: instance_reuse applies to WASI 0.3 services only; WAGI modules get a \
             fresh instance per request",
            f.name
        ),
        (Program::Module(m), None) if sdk::is_sdk_module(m) => {
            let sdk = sdk::Sdk::new(
                engine,
                m,
                &sha256,
                || {
                    let mut source = Source::read(&f.source)?;
                    Ok(source.bytes()?.to_vec())
                },
                spec.clone(),
                cache,
            )
            .with_context(|| format!("function `{}`: {}", f.name, f.source.display()))?;
            (Executor::Sdk(sdk), "wedge-sdk@1")
        }
        (Program::Module(m), None | Some(Abi::Wagi)) => (
            Executor::Wagi(
                wagi::Wagi::new(engine, m, spec.clone())
                    .with_context(|| format!("function `{}`: {}", f.name, f.source.display()))?,
            ),
            "wagi",
        ),
        (Program::Component(c), None | Some(Abi::Http)) => {
            let http = wasi_http::HttpFunction::new(engine, c, spec.clone())
                .with_context(|| format!("function `{}`: {}", f.name, f.source.display()))?;
            let abi = http.abi();
            if f.instance_reuse > 1 && abi != "wasi:http@0.3" {
                bail!(
                    "function `{}`: instance_reuse applies to WASI 0.3 services only; {} is {abi}, \
                     which gets a fresh instance per request",
                    f.name,
                    f.source.display()
                );
            }
            (Executor::Http(http), abi)
        }
        (Program::Module(_), Some(Abi::Http)) => bail!(
            "function `{}`: abi = \"http\" needs a wasi:http component, but {} is a core module \
             (use abi = \"wagi\", or build a component)",
            f.name,
            f.source.display()
        ),
        (Program::Component(_), Some(Abi::Wagi)) => bail!(
            "function `{}`: abi = \"wagi\" needs a WASI preview1 module, but {} is a component",
            f.name,
            f.source.display()
        ),
    };
    let cache_note = loaded.cache_note.clone();
    let snapshot = match &executor {
        Executor::Sdk(s) => Some(match &s.snapshot {
            sdk::Snapshot::Taken { cache, took } => SnapshotNote::Taken {
                cache: *cache,
                took: *took,
            },
            sdk::Snapshot::None { why } => SnapshotNote::Missing { why: why.clone() },
        }),
        _ => None,
    };
    Ok(Loaded {
        snapshot,
        config: f.clone(),
        sha256,
        cache_note,
        spec,
        executor,
        abi,
        cache: loaded.cache,
    })
}

/// What became of a Go SDK function's snapshot.
#[derive(Clone, Debug)]
pub enum SnapshotNote {
    Taken {
        cache: CacheStatus,
        took: std::time::Duration,
    },
    /// Served without one, initialised in every invocation.
    Missing { why: String },
}

impl std::fmt::Display for SnapshotNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotNote::Taken { cache, took } => write!(
                f,
                "pre-initialised snapshot ready in {} ms (aot cache {})",
                took.as_millis(),
                cache.as_str()
            ),
            SnapshotNote::Missing { why } => write!(
                f,
                "warning: served without a snapshot (initialised in every invocation, much \
                 slower): {why}"
            ),
        }
    }
}

/// The first 12 hex digits of a digest: a version's name when it has none.
pub fn short_digest(sha256: &[u8; 32]) -> String {
    sha256[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a function's module as the file stands now.
pub fn source_sha256(f: &Function, cache: Option<&Cache>) -> Result<[u8; 32]> {
    let mut source = Source::read(&f.source).with_context(|| format!("function `{}`", f.name))?;
    Ok(source.sha256(cache)?)
}

/// Reads the source and loads its code through the cache.
fn load_code(
    engine: &Engine,
    f: &Function,
    cache: Option<&Cache>,
) -> Result<(wedge_runtime::load::Loaded, [u8; 32])> {
    let mut source = Source::read(&f.source).with_context(|| format!("function `{}`", f.name))?;
    let sha256 = source.sha256(cache)?;
    let loaded = source.load(engine, cache).map_err(|e| match e {
        // The pooling allocator checks memory needs when code is loaded.
        wedge_runtime::load::LoadError::Invalid { message, .. }
            if message.contains("pooling allocator") =>
        {
            anyhow::anyhow!(
                "function `{}` cannot be instantiated: {message} (max_memory is {} bytes)",
                f.name,
                f.limits.max_memory
            )
        }
        e => anyhow::Error::new(e).context(format!("function `{}`", f.name)),
    })?;
    Ok((loaded, sha256))
}
