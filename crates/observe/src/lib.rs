//! wedge-observe: where a running wedge's observations go — the log queue and access lines, the server's metric set with its anomaly detectors, the OTLP trace exporter, and the short HTTP posts they make.
//!
//! The encodings and primitives (metric types, exposition, span protobuf,
//! anomaly detection) are `wedge_telemetry`'s and depend on nothing; this
//! crate wires them to a process: queues, threads, tasks and sockets. Every
//! other crate that runs guests reports through it, so it knows none of
//! them.

pub mod export;
pub mod log;
pub mod metrics;
pub mod stats;
pub mod traces;
