//! A function ready to serve: its settings, its compiled code behind the
//! right executor (WAGI or `wasi:http`), and its concurrency gate. Built
//! once at load; requests only read it.

use crate::failure::Failure;
use crate::gate::Gate;
use crate::metrics::{FunctionMetrics, Metrics};
use crate::{wagi, wasi_http};
use anyhow::{Context, Result, bail};
use std::sync::Arc;
use wasmtime::Engine;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wedge_manifest::{Abi, FileMount, Function, Limits, OutboundRule};
use wedge_runtime::cache::Cache;
use wedge_runtime::limits::{MemoryGrowFailed, MemoryLimitExceeded};
use wedge_runtime::load::{CacheStatus, Program, Source};

/// What a request needs to know about its function.
pub struct Spec {
    pub name: Arc<str>,
    /// The version's name: the manifest's, else its module digest's start.
    pub version: Arc<str>,
    pub limits: Limits,
    pub env: Vec<(String, String)>,
    pub files: Vec<FileMount>,
    pub outbound: Arc<[OutboundRule]>,
    pub allow_authorization: bool,
    pub methods: Option<Vec<String>>,
    pub instance_reuse: u32,
    pub metrics: Arc<FunctionMetrics>,
    pub profiling: Arc<crate::profile::Profiling>,
}

/// What one guest call cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestStats {
    /// Instantiation and execution.
    pub guest: std::time::Duration,
    /// Peak linear memory, when known by the time the response is ready.
    pub peak_memory: Option<u64>,
    /// Instantiation alone, when measured separately.
    pub instantiate: Option<std::time::Duration>,
    /// Fuel consumed, when metering is on.
    pub fuel: Option<u64>,
}

impl GuestStats {
    /// The `x-wedge-stats` header value: `instantiate=12us;exec=80us;mem=65536;fuel=1234`.
    pub fn header(&self) -> String {
        let mut parts = Vec::with_capacity(4);
        let total = self.guest.as_micros();
        if let Some(i) = self.instantiate {
            let i = i.as_micros();
            parts.push(format!("instantiate={i}us"));
            parts.push(format!("exec={}us", total.saturating_sub(i)));
        } else {
            parts.push(format!("guest={total}us"));
        }
        if let Some(m) = self.peak_memory {
            parts.push(format!("mem={m}"));
        }
        if let Some(f) = self.fuel {
            parts.push(format!("fuel={f}"));
        }
        parts.join(";")
    }
}

pub enum Executor {
    Wagi(wagi::Wagi),
    Http(wasi_http::HttpFunction),
}

pub struct Loaded {
    /// The manifest entry it was loaded from, routes included.
    pub config: Function,
    /// SHA-256 of the module it runs.
    pub sha256: [u8; 32],
    pub spec: Arc<Spec>,
    pub executor: Executor,
    pub gate: Gate,
    /// `wagi`, `wasi:http@0.2` or `wasi:http@0.3`.
    pub abi: &'static str,
    pub cache: CacheStatus,
    /// Why the cached artifact was not used, if it was not.
    pub cache_note: Option<String>,
}

/// Code already loaded for this table, by source path: functions that share
/// a module share its code, verified and mapped once.
pub type Shared =
    std::collections::HashMap<std::path::PathBuf, (wedge_runtime::load::Loaded, [u8; 32])>;

/// Compiles (through the cache) and prepares one function.
pub fn load(
    engine: &Engine,
    f: &Function,
    cache: Option<&Cache>,
    registry: &Arc<Metrics>,
    shared: &mut Shared,
) -> Result<Loaded> {
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
        name,
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
    });
    let (executor, abi) = match (&loaded.program, f.abi) {
        (Program::Module(_), _) if f.instance_reuse > 1 => bail!(
            "function `{}`: instance_reuse applies to WASI 0.3 services only; WAGI modules get a \
             fresh instance per request",
            f.name
        ),
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
    let l = &f.limits;
    let cache_note = loaded.cache_note.clone();
    Ok(Loaded {
        config: f.clone(),
        sha256,
        cache_note,
        spec,
        executor,
        gate: Gate::new(l.max_concurrency, l.queue, l.queue_timeout),
        abi,
        cache: loaded.cache,
    })
}

/// The first 12 hex digits of a digest: a version's name when it has none.
pub fn short_digest(sha256: &[u8; 32]) -> String {
    sha256[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Preopens the function's granted directories.
pub fn preopen(b: &mut WasiCtxBuilder, files: &[FileMount]) -> Result<(), Failure> {
    for m in files {
        let perms = if m.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&m.host, &m.guest, perms)
            .map_err(|e| Failure::Internal {
                message: format!("cannot open {}: {e}", m.host.display()),
            })?;
    }
    Ok(())
}

/// An instance could not be created because the memory limit refused the
/// guest's initial memory.
#[derive(Debug, thiserror::Error)]
#[error("the guest's initial memory is over its limit of {limit} bytes: {detail}")]
pub struct InitialMemoryRefused {
    pub limit: u64,
    pub detail: String,
}

/// Classifies an error out of a guest call by the types in its chain, never
/// by its text. `grow_failures` tells whether the guest was refused memory,
/// which explains most failures that follow.
pub fn classify(err: &wasmtime::Error, spec: &Spec, grow_failures: u64) -> Failure {
    for cause in err.chain() {
        if cause.is::<crate::capture::OutputTooLarge>() {
            return Failure::ResponseTooLarge {
                limit: spec.limits.max_response_body,
            };
        }
        if cause.is::<MemoryLimitExceeded>()
            || cause.is::<MemoryGrowFailed>()
            || cause.is::<InitialMemoryRefused>()
        {
            return Failure::MemoryLimit {
                message: cause.to_string(),
            };
        }
    }
    if let Some(trap) = err.downcast_ref::<wasmtime::Trap>() {
        return match trap {
            wasmtime::Trap::OutOfFuel => Failure::OutOfFuel {
                budget: spec.limits.fuel.unwrap_or(0),
            },
            wasmtime::Trap::Interrupt => Failure::Timeout {
                after: spec.limits.timeout,
            },
            _ if grow_failures > 0 => Failure::MemoryLimit {
                message: format!(
                    "{trap} after {grow_failures} refused memory.grow (limit {} bytes)",
                    spec.limits.max_memory
                ),
            },
            _ => Failure::Trap {
                message: trap.to_string(),
            },
        };
    }
    let text = format!("{err:#}");
    if grow_failures > 0 {
        // The limiter refused memory (at instantiation, or a grow the guest
        // could not live without) and the guest failed as a result.
        return Failure::MemoryLimit {
            message: format!(
                "{text} after {grow_failures} refused memory request(s) (limit {} bytes)",
                spec.limits.max_memory
            ),
        };
    }
    Failure::Internal { message: text }
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
