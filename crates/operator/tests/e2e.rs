//! End to end against a real cluster (K3s, kind, a node), opt-in: no
//! Kubernetes API server can be installed from the package registries the
//! test command uses, so this runs only when asked:
//!
//! ```sh
//! WEDGE_E2E_KUBECONFIG=~/.kube/config \
//! WEDGE_E2E_MODULE=oci://REGISTRY/demo:v1 WEDGE_E2E_MODULE_2=oci://REGISTRY/demo:v2 \
//!   cargo test -p wedge-operator --test e2e -- --ignored
//! ```
//!
//! Without `--ignored` it is listed as ignored with the reason; with it but
//! without `WEDGE_E2E_KUBECONFIG` it fails saying so: it never passes
//! without having run. It applies the CRD, runs the controller in-process
//! against the cluster, creates a `WasmFunction` in a fresh namespace,
//! watches the objects and status appear, scales it through `/scale`,
//! changes its module and sees a rolling update, and deletes it and its
//! namespace. With `WEDGE_E2E_IMAGE` (a `wedge` image the cluster can pull)
//! it also waits for the pods to be ready.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wedge_operator::controller::{self, Ctx};
use wedge_operator::crd::WasmFunction;
use wedge_operator::desired::Settings;

async fn client() -> Client {
    let path = std::env::var("WEDGE_E2E_KUBECONFIG").expect(
        "WEDGE_E2E_KUBECONFIG is not set: this suite needs a cluster (see docs/kubernetes.md); it did not run",
    );
    let kubeconfig = Kubeconfig::read_from(&path).expect("a readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("a client")
}

/// Polls `check` every 500 ms for up to `secs`.
async fn until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < Duration::from_secs(secs), "never: {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
#[ignore = "needs a cluster: set WEDGE_E2E_KUBECONFIG and run with --ignored (docs/kubernetes.md)"]
async fn a_function_is_created_scaled_updated_and_deleted_in_a_real_cluster() {
    let client = client().await;
    let module = std::env::var("WEDGE_E2E_MODULE")
        .unwrap_or_else(|_| "oci://registry.example/wedge/demo:v1".into());
    let module_2 = std::env::var("WEDGE_E2E_MODULE_2")
        .unwrap_or_else(|_| "oci://registry.example/wedge/demo:v2".into());
    let image = std::env::var("WEDGE_E2E_IMAGE").ok();

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply("wedge-e2e").force();
    crds.patch(
        "wasmfunctions.wedge.dev",
        &pp,
        &Patch::Apply(&WasmFunction::crd()),
    )
    .await
    .expect("apply the CRD");
    until("the CRD is established", 30, || async {
        crds.get("wasmfunctions.wedge.dev")
            .await
            .ok()
            .and_then(|c| c.status)
            .is_some_and(|s| {
                s.conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
    })
    .await;

    let ns = format!("wedge-e2e-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .expect("a namespace");

    let ctx = Arc::new(Ctx::new(
        client.clone(),
        Settings {
            image: image
                .clone()
                .unwrap_or_else(|| "ghcr.io/wedge-dev/wedge:0.1.0".into()),
            admin_key: None,
        },
        Some("e2e".into()),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(controller::run(ctx, async move {
        let _ = stopped.await;
    }));

    let functions: Api<WasmFunction> = Api::namespaced(client.clone(), &ns);
    let wf: WasmFunction = serde_json::from_value(json!({
        "apiVersion": "wedge.dev/v1alpha1", "kind": "WasmFunction",
        "metadata": {"name": "demo", "namespace": ns},
        "spec": {"module": {"oci": module}, "routes": ["/demo/..."], "replicas": 1, "version": "v1"}
    }))
    .unwrap();
    functions
        .create(&PostParams::default(), &wf)
        .await
        .expect("create the WasmFunction");

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    until("the Deployment exists", 60, || async {
        deployments
            .get_opt("demo-wedge")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await;
    until("the status has conditions and a selector", 60, || async {
        functions
            .get_status("demo")
            .await
            .ok()
            .and_then(|f| f.status)
            .is_some_and(|s| {
                s.selector == "wedge.dev/function=demo"
                    && s.conditions.iter().any(|c| c.type_ == "Ready")
            })
    })
    .await;
    if image.is_some() {
        until("Ready=True", 180, || async {
            functions
                .get_status("demo")
                .await
                .ok()
                .and_then(|f| f.status)
                .is_some_and(|s| {
                    s.conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        })
        .await;
    }

    // /scale, as HPA and KEDA use it.
    functions
        .patch_scale(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("patch /scale");
    until("the Deployment has 2 replicas", 60, || async {
        deployments
            .get("demo-wedge")
            .await
            .ok()
            .and_then(|d| d.spec?.replicas)
            == Some(2)
    })
    .await;

    // A new module: a new pod template.
    let hash = |d: &Deployment| {
        d.spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("wedge.dev/config-hash")
            .cloned()
    };
    let before = hash(&deployments.get("demo-wedge").await.unwrap());
    functions
        .patch(
            "demo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"module": {"oci": module_2}}})),
        )
        .await
        .unwrap();
    until("a rolling update", 60, || async {
        deployments.get("demo-wedge").await.ok().map(|d| hash(&d)) != Some(before.clone())
    })
    .await;

    // Deleted: the finalizer runs, the owned objects go.
    functions
        .delete("demo", &DeleteParams::default())
        .await
        .unwrap();
    until("the WasmFunction is gone", 60, || async {
        functions.get_opt("demo").await.ok().flatten().is_none()
    })
    .await;
    until("its Deployment is gone", 120, || async {
        deployments
            .get_opt("demo-wedge")
            .await
            .ok()
            .flatten()
            .is_none()
    })
    .await;

    let _ = stop.send(());
    let _ = running.await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
}
