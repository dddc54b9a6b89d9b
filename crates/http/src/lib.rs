//! wedge-http: serves functions over HTTP — listener, router, limits with precise statuses, and the WAGI and `wasi:http` executors.
//!
//! A request goes [`server`] (accept, [`tls`], HTTP/1.1 or HTTP/2, the
//! connection limits of [`conns`]) → [`handler`] (request id, health, route,
//! method, body read under its deadline, [`gate`]) → an executor ([`wagi`] or
//! [`wasi_http`]) → back, with every failure mapped by [`failure`] to one
//! status. [`admin`] serves metrics and the token-guarded admin endpoints on a
//! listener of its own.

pub mod admin;
pub mod body;
pub mod capture;
pub mod conns;
pub mod export;
pub mod failure;
pub mod function;
pub mod gate;
pub mod handler;
pub mod host;
pub mod log;
pub mod metrics;
pub mod peer;
pub mod profile;
pub mod request_id;
pub mod server;
pub mod spans;
pub mod spec;
pub mod split;
pub mod stats;
pub mod table;
pub mod tls;
pub mod traces;
pub mod wagi;
pub mod wasi_http;
