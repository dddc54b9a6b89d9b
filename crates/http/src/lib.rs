//! wedge-http: serves functions over HTTP — listener, router, limits with precise statuses, and the WAGI and `wasi:http` executors.
//!
//! A request goes [`server`] (accept, HTTP/1.1 or h2c) → [`handler`] (request
//! id, health, route, method, body limit, [`gate`]) → an executor
//! ([`wagi`] or [`wasi_http`]) → back, with every failure mapped by
//! [`failure`] to one status.

pub mod admin;
pub mod body;
pub mod capture;
pub mod failure;
pub mod function;
pub mod gate;
pub mod handler;
pub mod host;
pub mod log;
pub mod metrics;
pub mod profile;
pub mod request_id;
pub mod server;
pub mod spans;
pub mod table;
pub mod traces;
pub mod wagi;
pub mod wasi_http;
