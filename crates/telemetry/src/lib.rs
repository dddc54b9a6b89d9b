//! wedge-telemetry: metric names, lock-free metric primitives, and their Prometheus/OpenMetrics text encoding.
//!
//! Every metric name wedge exports is defined in [`names`] and nowhere else.
//! Names follow the OpenTelemetry semantic conventions as mapped to
//! Prometheus (dots become underscores, units become suffixes).

pub mod anomaly;
pub mod encode;
pub mod metric;
pub mod names;
pub mod process;
pub mod tally;
pub mod trace;
