//! End-to-end tests of the `wedge` binary: every test runs the real binary
//! on real guest programs and checks what it prints and how it exits.

mod cache;
mod canary;
mod client;
mod cloudevents;
mod conformance;
mod control;
mod errors;
mod go_sdk;
mod governance;
mod hostile;
mod inspect;
mod limits;
mod mqtt;
mod observe;
mod oci;
mod prometheus;
mod reload;
mod run;
mod serve;
mod serve_http;
mod serve_limits;
mod status_page;
mod streaming;
mod support;
mod tls;
mod traces;
