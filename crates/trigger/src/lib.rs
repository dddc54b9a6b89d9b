//! wedge-trigger: what every trigger shares — the swappable table of served functions and versions, the traffic split, the concurrency gate, and the one invocation pipeline (gate → call → limits → metrics → log) that an HTTP request, a message or a CloudEvent all go through.
//!
//! A trigger routes its input to a [`table::Served`] function, lets its
//! [`split::Split`] pick a [`table::Version`], builds an
//! `wedge_executor::invocation::Invocation`, and runs it through
//! [`pipeline::Pipeline`]. The failure it gets back is trigger-neutral
//! (`wedge_executor::failure::Class`); each trigger maps it to its own
//! answer.

pub use wedge_cloudevents as cloudevents;
pub mod gate;
pub mod ingress;
pub mod pipeline;
pub mod rate;
pub mod request_id;
pub mod spans;
pub mod split;
pub mod status;
pub mod table;
