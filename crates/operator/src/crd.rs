//! The `WasmFunction` custom resource (`wedge.dev/v1alpha1`, short name
//! `wfn`): Rust types from which the CRD's schema is generated (the YAML
//! in `deploy/k8s/crd.yaml` is this, and a test fails when it is stale).

// `printcolumn(...)` repeats `type_ = "string"` from column to column, which
// clippy mistakes for a duplicated attribute.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A function for `wedge serve`: its module, routes, limits and versions;
/// the operator runs it as a Deployment behind a Service.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "wedge.dev",
    version = "v1alpha1",
    kind = "WasmFunction",
    namespaced,
    shortname = "wfn",
    category = "wedge",
    status = "WasmFunctionStatus",
    doc = "A WebAssembly function served by wedge",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(name = "Version", type_ = "string", json_path = ".status.version"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct WasmFunctionSpec {
    /// The module to run (the stable version's).
    pub module: Module,
    /// `wagi` or `http` (a `wasi:http` component); detected when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abi: Option<Abi>,
    /// Routes as wedge writes them: `/hello`, `/users/:id`, `/static/...`.
    #[x_kube(validation = kube::core::Rule::new("size(self) > 0").message("give at least one route"))]
    pub routes: Vec<String>,
    /// Per-request limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// The guest's environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Outbound HTTP the function may make: `https://api.example.com`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_outbound_hosts: Vec<String>,
    /// Pods running `wedge serve` (the `/scale` subresource sets it).
    #[serde(default = "one")]
    #[x_kube(validation = kube::core::Rule::new("self >= 0").message("replicas cannot be negative"))]
    pub replicas: i32,
    /// The stable version's name (what `status.version` shows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Other versions in traffic, each with its share.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub canaries: Vec<Canary>,
    /// A request header that picks a version by name (`x-version: v2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_header: Option<String>,
    /// The `wedge` image the pods run (the operator's default otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// CPU and memory for each pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn one() -> i32 {
    1
}

/// Where a module comes from: an OCI artifact, or a key of a ConfigMap
/// (binary data) in the function's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.oci) != has(self.configMap)").message("give exactly one of oci and configMap"))]
pub struct Module {
    /// `oci://REGISTRY/REPOSITORY:TAG` or `…@sha256:DIGEST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapKey>,
}

/// A key of a ConfigMap holding a module in its `binaryData`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ConfigMapKey {
    pub name: String,
    pub key: String,
}

#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Abi {
    Wagi,
    Http,
}

/// wedge's per-function limits, written as in `wedge.toml`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    /// Wall clock per request, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Guest CPU time per request, e.g. `50ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_time: Option<String>,
    /// Linear memory per instance, e.g. `64MiB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_body: Option<String>,
}

/// Another version in traffic.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Canary {
    pub version: String,
    pub module: Module,
    /// Percent of requests, 0 to 100.
    #[x_kube(validation = kube::core::Rule::new("self >= 0.0 && self <= 100.0").message("weight is a percentage, 0 to 100"))]
    pub weight: f64,
}

/// What the operator last saw of the function.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WasmFunctionStatus {
    /// `Ready`, `Progressing` and `Degraded`, with reasons and messages.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// The pods' label selector, for `/scale` (HPA, KEDA).
    #[serde(default)]
    pub selector: String,
    /// The stable version being served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}
