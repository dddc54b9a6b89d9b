//! Engine configuration shared by `wedge run`, `wedge compile` and the cache.
//!
//! Code generation depends on the options here, so each combination gets its
//! own engine hash and its own cached artifacts.

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

/// Sizing of the instance pool for serving, derived from the app.
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
pub fn build_serving(opts: EngineOptions, pool: PoolSizing) -> wasmtime::Result<Engine> {
    use wasmtime::{Enabled, PoolingAllocationConfig};
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.consume_fuel(opts.fuel);
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
    fn option_bits_round_trip() {
        for fuel in [false, true] {
            let o = EngineOptions { fuel };
            assert_eq!(EngineOptions::from_bits(o.to_bits()), o);
        }
    }
}
