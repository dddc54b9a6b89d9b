//! What a running guest needs to know about its function (its settings,
//! metrics and profiler), and how an error out of a guest call becomes one
//! precise [`Failure`]. Shared by both executors; knows neither.

use crate::failure::Failure;
use std::sync::Arc;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};
use wedge_manifest::{FileMount, Limits, OutboundRule};
use wedge_observe::metrics::FunctionMetrics;
use wedge_runtime::cpu::CpuTimeExceeded;
use wedge_runtime::limits::{MemoryGrowFailed, MemoryLimitExceeded};

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
    /// Breakers of the function's outbound calls, per upstream (opt-in).
    pub upstreams: Option<Arc<crate::breaker::Upstreams>>,
    /// Marks this function's stores active, so the epoch ticks while they live.
    pub clock: wedge_runtime::ticker::Clock,
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

/// Records what a finished instance cost (instantiation time, fuel, peak
/// memory) in `stats` and the function's metrics, and counts it; gives the
/// number of `memory.grow`s its limiter refused.
pub fn record_costs<T>(
    store: &wasmtime::Store<T>,
    limiter: &wedge_runtime::limits::Limits,
    spec: &Spec,
    metered: bool,
    instantiated: Option<std::time::Duration>,
    stats: &mut wedge_observe::stats::GuestStats,
) -> u64 {
    stats.instantiate = instantiated;
    if let Some(i) = instantiated {
        spec.metrics.instantiate.observe(i.as_secs_f64());
    }
    if metered {
        stats.fuel = store
            .get_fuel()
            .ok()
            .map(|left| spec.limits.fuel.unwrap_or(u64::MAX) - left);
        if let Some(f) = stats.fuel {
            spec.metrics.fuel.observe(f as f64);
        }
    }
    let grow_failures = limiter.grow_failures();
    let peak = limiter.peak_memory();
    spec.metrics.instantiated();
    spec.metrics.memory(peak, grow_failures);
    stats.peak_memory = Some(peak);
    grow_failures
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
        if cause.is::<CpuTimeExceeded>() {
            return Failure::CpuTime {
                budget: spec.limits.cpu_time.unwrap_or_default(),
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
