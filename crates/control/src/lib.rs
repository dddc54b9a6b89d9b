//! The control plane's state: function versions deployed through the admin
//! API and the traffic rules set there, events accepted asynchronously and
//! their dead letters, kept crash-safe (a redb file, and
//! modules stored by digest beside it), and laid over the manifest's app.
//!
//! Every change is one redb write transaction, committed with fsync; a
//! module is written to a temporary file, synced and renamed into place
//! before any transaction refers to it. After a crash at any moment the
//! store holds the last committed state, and every version it names has its
//! module on disk.

pub mod events;
pub mod overlay;
pub mod store;

pub use overlay::{Drift, apply};
pub use store::{
    Decision, Error, FunctionState, Query, RolloutRecord, Store, TrafficRecord, VersionRecord,
};
