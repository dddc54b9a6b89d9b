//! wedge-executor: runs functions — loads a module or component behind the right executor (WAGI or `wasi:http`) and answers one [`invocation::Invocation`] in a fresh, limited instance; no listener, no trigger.
//!
//! [`function::load`] compiles (through the AOT cache) and links a
//! function; [`invocation`] runs one call and returns the guest's response
//! or one trigger-neutral [`failure::Failure`], with what it cost. The
//! executors are [`wagi`] (CGI over a WASI preview1 command), [`wasi_http`]
//! (WASI 0.2 and 0.3 `wasi:http` components) and [`sdk`] (Go SDK modules,
//! run from a pre-initialised snapshot); all read their function's settings
//! from [`spec::Spec`].

pub mod body;
pub mod breaker;
pub mod capture;
pub mod clock;
pub mod epochs;
pub mod failure;
pub mod function;
pub mod host;
pub mod invocation;
pub mod profile;
pub mod sdk;
pub mod spec;
pub mod wagi;
pub mod wasi_http;
