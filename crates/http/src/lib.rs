//! wedge-http: the HTTP trigger — listener, connection limits, TLS, routes and statuses — and the admin listener.
//!
//! A request goes [`server`] (accept, [`tls`], HTTP/1.1 or HTTP/2, the
//! connection limits of [`conns`]) → [`handler`] (request id, health, route,
//! version, method, body read under its deadline or streamed by [`upload`]) → the invocation pipeline
//! of `wedge_trigger`, which runs the function through `wedge_executor` →
//! back, with every failure answered by [`status`]. [`admin`] serves metrics
//! and the token-guarded admin endpoints on a listener of its own.

pub mod admin;
pub mod conns;
pub mod handler;
pub mod page;
pub mod server;
pub mod spans;
pub mod status;
pub mod tls;
pub mod upload;
