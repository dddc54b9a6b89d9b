//! The reconcile loop: for each `WasmFunction`, server-side apply the
//! objects [`crate::desired`] builds, then write the status
//! [`crate::status`] computes from the Deployment. An invalid spec gets
//! `Ready=False` and a Warning event, and waits for a change: never a crash
//! loop. Errors back off exponentially per object. A finalizer makes
//! deletion an explicit step (the owned objects go by owner reference).
//! With an admin key, traffic weights also go straight to the ready pods
//! through wedge's admin API ([`crate::weights`]).

use crate::crd::WasmFunction;
use crate::desired::{self, Desired, Invalid, Settings, object_name};
use crate::{status, weights};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{self, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The finalizer the operator puts on every `WasmFunction`.
pub const FINALIZER: &str = "wedge.dev/cleanup";
/// The field manager of every object the operator applies.
pub const MANAGER: &str = "wedge-operator";

/// What every reconcile shares.
pub struct Ctx {
    pub client: Client,
    pub settings: Settings,
    pub recorder: Recorder,
    /// Failures in a row, per object, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Per object, the traffic last pushed and the pods (by uid) that have it.
    pushed: Mutex<HashMap<String, (String, HashSet<String>)>>,
}

impl Ctx {
    pub fn new(client: Client, settings: Settings, instance: Option<String>) -> Ctx {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance,
        };
        Ctx {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            failures: Mutex::new(HashMap::new()),
            pushed: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Finalizer(Box<finalizer::Error<Error>>),
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Ctx>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let functions: Api<WasmFunction> = Api::all(client.clone());
    Controller::new(functions, watcher::Config::default())
        .owns(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(Api::<Service>::all(client), watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            if let Err(e) = result {
                eprintln!("wedge-operator: {e}");
            }
        })
        .await;
}

fn key(wf: &WasmFunction) -> String {
    format!("{}/{}", wf.namespace().unwrap_or_default(), wf.name_any())
}

/// One reconcile of one `WasmFunction`.
pub async fn reconcile(wf: Arc<WasmFunction>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = wf.namespace().unwrap_or_else(|| "default".into());
    let api: Api<WasmFunction> = Api::namespaced(ctx.client.clone(), &ns);
    let action = finalizer(&api, FINALIZER, wf.clone(), |event| async {
        match event {
            finalizer::Event::Apply(wf) => apply(&wf, &ctx).await,
            finalizer::Event::Cleanup(wf) => cleanup(&wf, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    ctx.failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key(&wf));
    Ok(action)
}

/// Backs off 2 s, 4 s, … up to 5 minutes while an object keeps failing.
pub fn error_policy(wf: Arc<WasmFunction>, error: &Error, ctx: Arc<Ctx>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures.entry(key(&wf)).or_insert(0);
    *n = n.saturating_add(1);
    eprintln!(
        "wedge-operator: {}: {error} (failure {n} in a row)",
        key(&wf)
    );
    Action::requeue(backoff(*n))
}

/// The wait after `n` failures in a row.
pub fn backoff(n: u32) -> Duration {
    let secs = 2u64.saturating_pow(n.min(16)).min(300);
    Duration::from_secs(secs)
}

async fn publish(ctx: &Ctx, wf: &WasmFunction, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    // An event that cannot be written is not worth failing the reconcile.
    if let Err(e) = ctx.recorder.publish(&event, &wf.object_ref(&())).await {
        eprintln!("wedge-operator: {}: event not recorded: {e}", key(wf));
    }
}

async fn apply(wf: &WasmFunction, ctx: &Ctx) -> Result<Action, Error> {
    let ns = wf.namespace().unwrap_or_else(|| "default".into());
    let functions: Api<WasmFunction> = Api::namespaced(ctx.client.clone(), &ns);
    let desired = match desired::desired(wf, &ctx.settings) {
        Ok(d) => d,
        Err(invalid) => {
            publish(
                ctx,
                wf,
                EventType::Warning,
                "InvalidSpec",
                invalid.0.clone(),
            )
            .await;
            write_status(&functions, wf, None, Some(&invalid)).await?;
            // Nothing changes until the spec does.
            return Ok(Action::await_change());
        }
    };
    let deployment = apply_objects(ctx, &ns, wf, desired).await?;
    write_status(&functions, wf, Some(&deployment), None).await?;
    if push_traffic(ctx, &ns, wf).await? {
        Ok(Action::requeue(Duration::from_secs(300)))
    } else {
        // A pod refused or did not answer: try again soon (the ConfigMap
        // brings the weights meanwhile).
        Ok(Action::requeue(RETRY_PUSH))
    }
}

/// How soon a failed push of traffic weights is tried again.
pub const RETRY_PUSH: Duration = Duration::from_secs(30);

/// The pod's uid, name and admin address, when it is ready to be told.
fn ready_admin(pod: &Pod) -> Option<(String, String, SocketAddr)> {
    let status = pod.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready || pod.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let ip: IpAddr = status.pod_ip.as_deref()?.parse().ok()?;
    let port = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("admin"))
        .map_or(desired::ADMIN_PORT, |p| p.container_port);
    let port = u16::try_from(port).ok()?;
    Some((pod.uid()?, pod.name_any(), SocketAddr::new(ip, port)))
}

/// Sets the spec's traffic weights on every ready pod that does not have
/// them yet, through wedge's admin API. False when a pod could not be told
/// (a Warning event says which and why); API errors listing pods fail the
/// reconcile as any other.
async fn push_traffic(ctx: &Ctx, ns: &str, wf: &WasmFunction) -> Result<bool, Error> {
    let (Some(admin_key), Some(split)) = (&ctx.settings.admin_key, weights::traffic(&wf.spec))
    else {
        lock(&ctx.pushed).remove(&key(wf));
        return Ok(true);
    };
    let name = wf.name_any();
    let described = weights::describe(&split);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(&desired::selector_string(&name)))
        .await?;
    let todo: Vec<(String, String, SocketAddr)> = {
        let mut pushed = lock(&ctx.pushed);
        let (last, done) = pushed.entry(key(wf)).or_default();
        if *last != described {
            *last = described.clone();
            done.clear();
        }
        // Pods that are gone are forgotten.
        done.retain(|uid| list.items.iter().any(|p| p.uid().as_ref() == Some(uid)));
        list.items
            .iter()
            .filter_map(ready_admin)
            .filter(|(uid, _, _)| !done.contains(uid))
            .collect()
    };
    if todo.is_empty() {
        return Ok(true);
    }
    let token = weights::token(admin_key, ns, &name);
    let addrs: Vec<SocketAddr> = todo.iter().map(|t| t.2).collect();
    let results: Vec<_> = futures::stream::iter(addrs)
        .map(|addr| weights::put_traffic(addr, &name, &token, &split))
        .buffered(16)
        .collect()
        .await;
    let mut told = Vec::new();
    let mut failed = Vec::new();
    for ((uid, pod, addr), result) in todo.into_iter().zip(results) {
        match result {
            Ok(()) => told.push(uid),
            Err(e) => failed.push(format!("pod {pod} ({addr}): {e}")),
        }
    }
    let count = told.len();
    if let Some((_, done)) = lock(&ctx.pushed).get_mut(&key(wf)) {
        done.extend(told);
    }
    if count > 0 {
        let note = format!("traffic {described} set through the admin API of {count} pod(s)");
        publish(ctx, wf, EventType::Normal, "TrafficSet", note).await;
    }
    if !failed.is_empty() {
        let note = format!(
            "traffic {described} not set through the admin API of {}; the pods get it from \
             the ConfigMap within about a minute; retrying in {}s",
            failed.join("; "),
            RETRY_PUSH.as_secs()
        );
        publish(ctx, wf, EventType::Warning, "TrafficNotSet", note).await;
    }
    Ok(failed.is_empty())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Applies the ConfigMap, Service and Deployment; gives the Deployment as
/// the API server has it now, and records an event when its template changed.
async fn apply_objects(
    ctx: &Ctx,
    ns: &str,
    wf: &WasmFunction,
    d: Desired,
) -> Result<Deployment, Error> {
    let pp = PatchParams::apply(MANAGER).force();
    let name = object_name(&wf.name_any());
    if let Some(secret) = &d.admin_secret {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
        secrets
            .patch(
                &desired::admin_secret_name(&wf.name_any()),
                &pp,
                &Patch::Apply(&with_kind(secret, "v1", "Secret")),
            )
            .await?;
    }
    let maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), ns);
    maps.patch(
        &name,
        &pp,
        &Patch::Apply(&with_kind(&d.config_map, "v1", "ConfigMap")),
    )
    .await?;
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), ns);
    services
        .patch(
            &name,
            &pp,
            &Patch::Apply(&with_kind(&d.service, "v1", "Service")),
        )
        .await?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), ns);
    let before = deployments.get_opt(&name).await?;
    let after = deployments
        .patch(
            &name,
            &pp,
            &Patch::Apply(&with_kind(&d.deployment, "apps/v1", "Deployment")),
        )
        .await?;
    let generation = |d: &Deployment| d.metadata.generation;
    match before {
        None => {
            publish(
                ctx,
                wf,
                EventType::Normal,
                "Created",
                format!("created deployment {name}"),
            )
            .await
        }
        Some(b) if generation(&b) != generation(&after) => {
            publish(
                ctx,
                wf,
                EventType::Normal,
                "RollingUpdate",
                format!("deployment {name} updated: pods roll"),
            )
            .await
        }
        Some(_) => {}
    }
    Ok(after)
}

/// An object with `apiVersion` and `kind` set, as server-side apply needs.
fn with_kind<T: serde::Serialize>(obj: &T, api_version: &str, kind: &str) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).expect("k8s objects serialize");
    v["apiVersion"] = api_version.into();
    v["kind"] = kind.into();
    v
}

async fn write_status(
    api: &Api<WasmFunction>,
    wf: &WasmFunction,
    deployment: Option<&Deployment>,
    invalid: Option<&Invalid>,
) -> Result<(), Error> {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = status::status(wf, deployment, invalid, now);
    if wf.status.as_ref().is_some_and(|s| same_status(s, &status)) {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": status });
    api.patch_status(
        &wf.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Statuses equal but for the conditions' transition times.
fn same_status(a: &crate::crd::WasmFunctionStatus, b: &crate::crd::WasmFunctionStatus) -> bool {
    let strip = |s: &crate::crd::WasmFunctionStatus| {
        let mut s = s.clone();
        for c in &mut s.conditions {
            c.last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

async fn cleanup(wf: &WasmFunction, ctx: &Ctx) -> Result<Action, Error> {
    lock(&ctx.pushed).remove(&key(wf));
    // The ConfigMap, Deployment and Service carry owner references: the
    // garbage collector deletes them. Say so, and let the object go.
    publish(
        ctx,
        wf,
        EventType::Normal,
        "Deleted",
        format!("{} and its objects are being deleted", wf.name_any()),
    )
    .await;
    Ok(Action::await_change())
}
