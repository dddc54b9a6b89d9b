//! Engine configuration shared by `wedge run`, `wedge compile` and the cache.
//!
//! Code generation depends on the options here, so each combination gets its
//! own engine hash and its own cached artifacts.

use crate::generation;
use std::hash::{DefaultHasher, Hash, Hasher};
use wasmtime::{Config, Engine};

/// Options that change generated code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EngineOptions {
    /// Instrument code for fuel metering (`--fuel`). Costs some speed, so it
    /// is only compiled in when asked for.
    pub fuel: bool,
}

impl EngineOptions {
    /// Bit flags recorded in artifact headers.
    pub fn to_bits(self) -> u32 {
        u32::from(self.fuel)
    }

    /// Inverse of [`EngineOptions::to_bits`].
    pub fn from_bits(bits: u32) -> Self {
        EngineOptions {
            fuel: bits & 1 != 0,
        }
    }
}

/// Builds the engine for one-shot runs and compilation.
///
/// Epoch interruption is always compiled in (its check is a load and a compare
/// at function entries and loop headers), so that one artifact serves runs
/// with and without `--timeout`; the ticking thread only exists when a
/// timeout is set.
pub fn build(opts: EngineOptions) -> wasmtime::Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(opts.fuel);
    Engine::new(&config)
}

/// Sizing of the instance pool for serving (see [`Node`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSizing {
    /// Instances alive at once across all functions (their concurrency).
    pub instances: u32,
    /// The largest linear memory any function may use, in bytes.
    pub max_memory: u64,
    /// Bytes of each linear memory kept resident and reset in user space
    /// when an instance ends, instead of being returned to the kernel.
    pub keep_resident: u64,
    /// Bounds-check memory accesses in code instead of with guard pages
    /// (see [`build_serving`]).
    pub explicit_bounds_checks: bool,
    /// Wasmtime's concurrency support, which WASI 0.3 components need; off,
    /// stores skip its bookkeeping (see [`build_serving`]).
    pub wasi_p3: bool,
}

/// Builds the engine for `wedge serve`: the pooling allocator (instances,
/// memories, tables and fiber stacks preallocated and reused), copy-on-write
/// memory images, epoch interruption for timeouts and fair scheduling.
///
/// Returning a memory to the kernel after every request (madvise, and the
/// TLB shootdowns it causes on other cores) dominates the cost of a fresh
/// instance per request. So up to `keep_resident` bytes of each memory stay
/// resident and are reset with memset, and with `pagemap_scan` (Linux 6.7+)
/// only pages the request actually dirtied are reset at all. What does get
/// decommitted is batched.
///
/// Wasmtime's concurrency support (component-model async, which WASI 0.3
/// needs) is on only when the node serves WASI 0.3: with it every store sets
/// up task and thread bookkeeping, and a `wasi:http` 0.2 call runs through
/// it. Measured on the C hello, `wrk -t1 -c64`: 58-71 µs of CPU per request
/// with it against 43-55 µs without, and 158.6 against 107.6 allocations.
pub fn build_serving(opts: EngineOptions, pool: PoolSizing) -> wasmtime::Result<Engine> {
    use wasmtime::{Enabled, PoolingAllocationConfig};
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(opts.fuel);
    config.concurrency_support(pool.wasi_p3);
    let slots = pool.instances.max(1);
    let mut p = PoolingAllocationConfig::default();
    // A component holds several core instances and up to a few memories
    // (its own, the preview1 adapter's, a libc's).
    p.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(8))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .total_stacks(slots)
        .max_memories_per_module(2)
        .max_tables_per_module(2)
        .max_memory_size(pool.max_memory.clamp(64 << 10, 4 << 30) as usize)
        .linear_memory_keep_resident(pool.keep_resident as usize)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto)
        .decommit_batch_size(16)
        .max_unused_warm_slots(slots.min(256));
    config.allocation_strategy(p);
    if pool.explicit_bounds_checks {
        // Guard pages make out-of-bounds accesses fault, but then every
        // instance's accessible size is set with mprotect, and on a
        // multi-threaded server each mprotect interrupts the other cores to
        // flush their TLBs. Explicit bounds checks in code keep the pooled
        // memory mapped read-write for good: no mprotect per request.
        config.signals_based_traps(false);
        config.memory_guard_size(0);
        config.memory_reservation(pool.max_memory.max(64 << 10));
        config.memory_reservation_for_growth(0);
    }
    Engine::new(&config)
}

/// What the node's serving engine is built for. The engine lives as long
/// as the process, so every function loaded into it, at start or later,
/// must fit: [`Node::admit`] says which one does not and what to change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    /// Instances alive at once across all functions.
    pub instances: u32,
    /// The largest linear memory a function may be given, in bytes.
    pub max_memory: u64,
    /// Fuel metering is compiled in.
    pub fuel: bool,
    /// WASI 0.3 components can run (Wasmtime's concurrency support).
    pub wasi_p3: bool,
}

impl Node {
    /// Instances in the pool unless `[server] instances` says otherwise.
    /// Each slot costs start-up time, since Wasmtime protects a guard page
    /// per fiber stack with an `mprotect` of its own when the pool is made:
    /// measured, 2.3 ms for 1,000 slots against 0.6 ms for 100 (of a 5 ms
    /// `wedge serve` start). 256 leaves room for functions deployed later
    /// beside a typical app; `[server] instances` raises it.
    pub const DEFAULT_INSTANCES: u32 = 256;
    /// Largest memory unless `[server] max_instance_memory` says otherwise.
    pub const DEFAULT_MAX_MEMORY: u64 = 1 << 30;

    /// Sizes the node: the settings where given, else the defaults raised
    /// to fit the first app (so that an app that starts today still does).
    pub fn resolve(settings: &wedge_manifest::EngineSettings, app: &wedge_manifest::App) -> Node {
        let total: u32 = app
            .functions
            .iter()
            .map(|f| f.limits.max_concurrency)
            .fold(16u32, u32::saturating_add);
        let largest = app.functions.iter().map(|f| f.limits.max_memory).max();
        Node {
            instances: settings
                .instances
                .unwrap_or_else(|| total.max(Self::DEFAULT_INSTANCES)),
            max_memory: settings.max_instance_memory.unwrap_or_else(|| {
                largest.map_or(Self::DEFAULT_MAX_MEMORY, |m| {
                    m.max(Self::DEFAULT_MAX_MEMORY)
                })
            }),
            fuel: settings
                .fuel_metering
                .unwrap_or_else(|| app.functions.iter().any(|f| f.limits.fuel.is_some())),
            // A source that cannot be read here (a precompiled artifact, made
            // by an engine with the support) keeps it on too.
            wasi_p3: settings.wasi_p3.unwrap_or_else(|| {
                app.functions
                    .iter()
                    .any(|f| generation::of_file(&f.source) != generation::Needs::NoP3)
            }),
        }
    }

    /// Whether a function with these limits can run on this node.
    pub fn admit(&self, function: &str, limits: &wedge_manifest::Limits) -> Result<(), String> {
        if limits.max_memory > self.max_memory {
            return Err(format!(
                "function `{function}`: max_memory of {} bytes is over the node's \
                 max_instance_memory of {} bytes; lower it, or raise [server] \
                 max_instance_memory and restart",
                limits.max_memory, self.max_memory
            ));
        }
        if limits.max_concurrency > self.instances {
            return Err(format!(
                "function `{function}`: max_concurrency {} is over the node's {} instances; \
                 lower it, or raise [server] instances and restart",
                limits.max_concurrency, self.instances
            ));
        }
        if limits.fuel.is_some() && !self.fuel {
            return Err(format!(
                "function `{function}`: sets fuel, but this server was started without fuel \
                 metering; set [server] fuel_metering = true and restart"
            ));
        }
        Ok(())
    }

    /// Whether a function whose source is `source` can run on this node: a
    /// WASI 0.3 component needs a node started with `wasi_p3`.
    pub fn admit_source(&self, function: &str, source: &std::path::Path) -> Result<(), String> {
        if !self.wasi_p3 && generation::of_file(source) == generation::Needs::P3 {
            return Err(format!(
                "function `{function}`: {} is a WASI 0.3 component, but this server was started \
                 without WASI 0.3 support (no function needed it); set [server] wasi_p3 = true \
                 and restart",
                source.display()
            ));
        }
        Ok(())
    }

    /// The pool sizing and code options for [`build_serving`].
    pub fn sizing(
        &self,
        keep_resident: u64,
        explicit_bounds_checks: bool,
    ) -> (EngineOptions, PoolSizing) {
        (
            EngineOptions { fuel: self.fuel },
            PoolSizing {
                instances: self.instances,
                max_memory: self.max_memory,
                keep_resident,
                explicit_bounds_checks,
                wasi_p3: self.wasi_p3,
            },
        )
    }
}

/// A stable fingerprint of everything that makes compiled code loadable by
/// `engine`: Wasmtime's own compatibility hash plus wedge's version.
pub fn hash(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    env!("CARGO_PKG_VERSION").hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuel_changes_the_engine_hash() {
        let plain = build(EngineOptions::default()).unwrap();
        let plain2 = build(EngineOptions::default()).unwrap();
        let fuel = build(EngineOptions { fuel: true }).unwrap();
        assert_eq!(hash(&plain), hash(&plain2));
        assert_ne!(hash(&plain), hash(&fuel));
    }

    #[test]
    fn node_defaults_fit_the_first_app_and_admit_names_the_fix() {
        let mut app = wedge_manifest::single(
            std::path::Path::new("hello.wasm"),
            &wedge_manifest::LimitOverrides::default(),
        );
        let node = Node::resolve(&Default::default(), &app);
        assert_eq!(
            node,
            Node {
                instances: Node::DEFAULT_INSTANCES,
                max_memory: Node::DEFAULT_MAX_MEMORY,
                fuel: false,
                // hello.wasm is not there to read: the support stays on.
                wasi_p3: true,
            }
        );
        app.functions[0].limits.max_memory = 2 << 30;
        app.functions[0].limits.fuel = Some(1000);
        let big = Node::resolve(&Default::default(), &app);
        assert_eq!((big.max_memory, big.fuel), (2 << 30, true));
        let err = node.admit("f", &app.functions[0].limits).unwrap_err();
        assert!(err.contains("max_instance_memory"), "{err}");
        app.functions[0].limits.max_memory = 1 << 20;
        let err = node.admit("f", &app.functions[0].limits).unwrap_err();
        assert!(err.contains("fuel_metering = true"), "{err}");
        assert!(big.admit("f", &app.functions[0].limits).is_ok());
        let set = wedge_manifest::EngineSettings {
            instances: Some(8),
            max_instance_memory: Some(1 << 20),
            fuel_metering: Some(false),
            wasi_p3: Some(false),
        };
        let small = Node::resolve(&set, &app);
        assert_eq!(
            (small.instances, small.max_memory, small.fuel, small.wasi_p3),
            (8, 1 << 20, false, false)
        );
    }

    #[test]
    fn wasi_p3_support_follows_the_first_app_and_admit_names_the_fix() {
        let dir = std::env::temp_dir().join(format!("wedge-p3-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p2 = dir.join("p2.wasm");
        let p3 = dir.join("p3.wasm");
        let component = |name: &str| {
            wat::parse_str(format!(r#"(component (import "{name}" (instance)))"#)).unwrap()
        };
        std::fs::write(&p2, component("wasi:cli/stdout@0.2.6")).unwrap();
        std::fs::write(&p3, component("wasi:cli/stdout@0.3.0")).unwrap();
        let app = |source: &std::path::Path| {
            wedge_manifest::single(source, &wedge_manifest::LimitOverrides::default())
        };
        let plain = Node::resolve(&Default::default(), &app(&p2));
        assert!(!plain.wasi_p3);
        assert!(Node::resolve(&Default::default(), &app(&p3)).wasi_p3);
        let err = plain.admit_source("f", &p3).unwrap_err();
        assert!(err.contains("wasi_p3 = true"), "{err}");
        assert!(plain.admit_source("f", &p2).is_ok());
        let forced = wedge_manifest::EngineSettings {
            wasi_p3: Some(true),
            ..Default::default()
        };
        assert!(Node::resolve(&forced, &app(&p2)).wasi_p3);
        // Stores of an engine without the support skip its bookkeeping.
        let sizing = |wasi_p3| PoolSizing {
            instances: 4,
            max_memory: 1 << 20,
            keep_resident: 0,
            explicit_bounds_checks: true,
            wasi_p3,
        };
        let off = build_serving(EngineOptions::default(), sizing(false)).unwrap();
        let on = build_serving(EngineOptions::default(), sizing(true)).unwrap();
        assert!(!off.get_concurrency_support() && on.get_concurrency_support());
        assert_ne!(hash(&off), hash(&on));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn option_bits_round_trip() {
        for fuel in [false, true] {
            let o = EngineOptions { fuel };
            assert_eq!(EngineOptions::from_bits(o.to_bits()), o);
        }
    }
}
