//! A `WasmFunction`'s status from what its Deployment reports (or from why
//! its spec cannot run): `Ready`, `Progressing` and `Degraded` conditions
//! with reasons and messages, replicas, the `/scale` selector and the
//! version served. Pure; the controller writes the result.

use crate::crd::{WasmFunction, WasmFunctionStatus};
use crate::desired::{Invalid, selector_string};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;

/// The status to write, given the Deployment as it stands (if any) or why
/// the spec is invalid. Conditions whose status did not change keep their
/// transition time.
pub fn status(
    wf: &WasmFunction,
    deployment: Option<&Deployment>,
    invalid: Option<&Invalid>,
    now: Time,
) -> WasmFunctionStatus {
    let previous = wf.status.as_ref();
    let generation = wf.metadata.generation;
    let want = wf.spec.replicas;
    let ds = deployment.and_then(|d| d.status.as_ref());
    let replicas = ds.and_then(|s| s.replicas).unwrap_or(0);
    let ready = ds.and_then(|s| s.ready_replicas).unwrap_or(0);
    let updated = ds.and_then(|s| s.updated_replicas).unwrap_or(0);
    let seen = deployment
        .and_then(|d| Some(d.status.as_ref()?.observed_generation? >= d.metadata.generation?))
        .unwrap_or(false);
    let stuck = ds
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| {
            (c.type_ == "Progressing" && c.status == "False")
                || (c.type_ == "ReplicaFailure" && c.status == "True")
        })
        .map(|c| {
            (
                c.reason.clone().unwrap_or_else(|| c.type_.clone()),
                c.message.clone().unwrap_or_default(),
            )
        });
    let mut conditions = Vec::new();
    let mut set = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let since = previous
            .and_then(|p| p.conditions.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        conditions.push(Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: generation,
        });
    };
    match invalid {
        Some(why) => {
            set("Ready", false, "InvalidSpec", why.0.clone());
            set(
                "Progressing",
                false,
                "InvalidSpec",
                "nothing is rolled out until the spec is fixed".into(),
            );
            set("Degraded", true, "InvalidSpec", why.0.clone());
        }
        None => {
            let rolled = seen && updated >= want && replicas == updated;
            let all_ready = ready >= want;
            match (all_ready && rolled, want) {
                (true, 0) => set("Ready", true, "ScaledToZero", "0 replicas asked for".into()),
                (true, _) => set(
                    "Ready",
                    true,
                    "AllReplicasReady",
                    format!("{ready}/{want} replicas ready"),
                ),
                (false, _) => set(
                    "Ready",
                    false,
                    "ReplicasNotReady",
                    format!("{ready}/{want} replicas ready, {updated} updated"),
                ),
            }
            set(
                "Progressing",
                !rolled,
                if rolled { "RolledOut" } else { "RollingOut" },
                format!("{updated}/{want} replicas run the current spec"),
            );
            match &stuck {
                Some((reason, message)) => set("Degraded", true, reason, message.clone()),
                None => set("Degraded", false, "AsExpected", String::new()),
            }
        }
    }
    WasmFunctionStatus {
        conditions,
        observed_generation: generation,
        replicas,
        ready_replicas: ready,
        selector: selector_string(&wf.name_any()),
        version: wf.spec.version.clone(),
    }
}

/// The status of a condition, if present.
pub fn condition<'a>(s: &'a WasmFunctionStatus, type_: &str) -> Option<&'a Condition> {
    s.conditions.iter().find(|c| c.type_ == type_)
}
