//! wedge-events: MQTT triggers that deliver each message to a function at least once, retried with backoff, dead-lettered when retries cannot help, the function's answer published as a reply.
//!
//! A message reaches its function through the same pipeline and executors as
//! an HTTP request: as a CloudEvents request in binary mode ([`event`]).

pub mod confirm;
mod connection;
mod consumer;
pub mod context;
mod deliver;
mod dispatch;
pub mod event;
pub mod ingress;
mod invoke;
pub mod mqtt;
pub mod order;
mod spans;
