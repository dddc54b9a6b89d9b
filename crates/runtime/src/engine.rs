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
