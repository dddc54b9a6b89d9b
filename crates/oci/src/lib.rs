//! wedge-oci: Wasm modules as OCI artifacts — push, pull by tag or digest with every digest checked, and a content-addressed store of what was pulled.
//!
//! [`artifact`] is the CNCF TAG Runtime layout (pure functions: build one,
//! find the module in one, old layout included); [`store`] keeps pulled
//! modules by digest beside the AOT cache; [`registry`] talks to registries
//! through `oci-client`. No Wasmtime here.

pub mod artifact;
pub mod registry;
pub mod store;

pub use registry::{Error, Options, Pulled, Pushed, pull, push};
pub use store::Store;
