//! The controller against a mocked API server (tower-test, as kube-rs's
//! own controller tests do; the server is `fake/`). Every path of a
//! reconcile: create, becoming ready, update, scale, an invalid spec,
//! deletion through the finalizer, API errors with backoff, traffic weights
//! pushed to ready pods; and the RBAC that allows exactly those calls.

mod fake;

use fake::{Shared, fake};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wedge_operator::controller::{self, Ctx, FINALIZER};
use wedge_operator::crd::WasmFunction;
use wedge_operator::desired::Settings;

const FN_PATH: &str = "/apis/wedge.dev/v1alpha1/namespaces/edge/wasmfunctions/hello";
const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/edge/deployments/hello-wedge";
const MAP_PATH: &str = "/api/v1/namespaces/edge/configmaps/hello-wedge";
const SVC_PATH: &str = "/api/v1/namespaces/edge/services/hello-wedge";

fn ctx(client: Client) -> Arc<Ctx> {
    Arc::new(Ctx::new(
        client,
        Settings {
            image: "wedge:test".into(),
            admin_key: None,
        },
        Some("test".into()),
    ))
}

fn spec() -> Value {
    json!({
        "module": {"oci": "oci://registry.example/acme/hello:v1"},
        "routes": ["/hello"],
        "replicas": 2,
        "version": "v1"
    })
}

/// Stores the function in the fake, as a user's `kubectl apply` would.
fn put_function(state: &Shared, spec: Value) {
    let mut s = state.lock().unwrap();
    let generation = s
        .objects
        .get(FN_PATH)
        .map_or(1, |o| o["metadata"]["generation"].as_i64().unwrap() + 1);
    let mut obj = s.objects.get(FN_PATH).cloned().unwrap_or_else(|| {
        json!({
            "apiVersion": "wedge.dev/v1alpha1", "kind": "WasmFunction",
            "metadata": {"name": "hello", "namespace": "edge", "uid": "fn-uid", "resourceVersion": "1"},
        })
    });
    obj["spec"] = spec;
    obj["metadata"]["generation"] = json!(generation);
    s.objects.insert(FN_PATH.into(), obj);
}

fn function(state: &Shared) -> Arc<WasmFunction> {
    let s = state.lock().unwrap();
    Arc::new(serde_json::from_value(s.objects[FN_PATH].clone()).unwrap())
}

fn object(state: &Shared, path: &str) -> Option<Value> {
    state.lock().unwrap().objects.get(path).cloned()
}

fn condition(state: &Shared, type_: &str) -> (String, String) {
    let f = object(state, FN_PATH).unwrap();
    let c = f["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
        .clone();
    (
        c["status"].as_str().unwrap().into(),
        c["reason"].as_str().unwrap().into(),
    )
}

fn events(state: &Shared) -> Vec<String> {
    state
        .lock()
        .unwrap()
        .events
        .iter()
        .map(|(t, r)| format!("{t} {r}"))
        .collect()
}

async fn reconcile(state: &Shared, ctx: &Arc<Ctx>) -> Result<Action, controller::Error> {
    controller::reconcile(function(state), ctx.clone()).await
}

#[tokio::test]
async fn create_become_ready_update_and_scale() {
    let (client, state) = fake();
    let ctx = ctx(client);
    put_function(&state, spec());

    // First the finalizer goes on; nothing else yet.
    reconcile(&state, &ctx).await.unwrap();
    assert_eq!(function(&state).finalizers(), [FINALIZER]);
    assert!(object(&state, DEPLOY_PATH).is_none());

    // Then the objects, owned by the function, and a status.
    reconcile(&state, &ctx).await.unwrap();
    let d = object(&state, DEPLOY_PATH).expect("a deployment");
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["metadata"]["ownerReferences"][0]["uid"], "fn-uid");
    assert_eq!(d["metadata"]["ownerReferences"][0]["controller"], true);
    let toml = object(&state, MAP_PATH).unwrap()["data"]["wedge.toml"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        toml.contains("source = \"oci://registry.example/acme/hello:v1\""),
        "{toml}"
    );
    assert!(object(&state, SVC_PATH).is_some());
    assert_eq!(
        condition(&state, "Ready"),
        ("False".into(), "ReplicasNotReady".into())
    );
    assert_eq!(condition(&state, "Progressing").0, "True");
    let f = object(&state, FN_PATH).unwrap();
    assert_eq!(f["status"]["selector"], "wedge.dev/function=hello");
    assert_eq!(f["status"]["observedGeneration"], 1);
    assert_eq!(events(&state), ["Normal Created"]);

    // The Deployment's pods come up.
    {
        let mut s = state.lock().unwrap();
        let d = s.objects.get_mut(DEPLOY_PATH).unwrap();
        let generation = d["metadata"]["generation"].clone();
        d["status"] = json!({"observedGeneration": generation, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2});
    }
    reconcile(&state, &ctx).await.unwrap();
    assert_eq!(
        condition(&state, "Ready"),
        ("True".into(), "AllReplicasReady".into())
    );
    assert_eq!(
        object(&state, FN_PATH).unwrap()["status"]["readyReplicas"],
        2
    );

    // A new module rolls the pods: a new template, an event.
    let hash = |s: &Shared| {
        object(s, DEPLOY_PATH).unwrap()["spec"]["template"]["metadata"]["annotations"]["wedge.dev/config-hash"].clone()
    };
    let before = hash(&state);
    let mut next = spec();
    next["module"]["oci"] = json!("oci://registry.example/acme/hello:v2");
    put_function(&state, next.clone());
    reconcile(&state, &ctx).await.unwrap();
    assert_ne!(hash(&state), before);
    assert_eq!(events(&state).last().unwrap(), "Normal RollingUpdate");
    assert_eq!(
        condition(&state, "Ready").0,
        "False",
        "the new template is not rolled out yet"
    );

    // /scale sets spec.replicas; the Deployment follows.
    next["replicas"] = json!(5);
    put_function(&state, next);
    reconcile(&state, &ctx).await.unwrap();
    assert_eq!(object(&state, DEPLOY_PATH).unwrap()["spec"]["replicas"], 5);
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_waits_for_a_change() {
    let (client, state) = fake();
    let ctx = ctx(client);
    let mut bad = spec();
    bad["routes"] = json!(["hello"]);
    put_function(&state, bad);
    reconcile(&state, &ctx).await.unwrap();
    let action = reconcile(&state, &ctx).await.unwrap();
    assert_eq!(action, Action::await_change());
    assert_eq!(
        condition(&state, "Ready"),
        ("False".into(), "InvalidSpec".into())
    );
    let f = object(&state, FN_PATH).unwrap();
    let message = f["status"]["conditions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("route `hello` does not start with `/`"),
        "{message}"
    );
    assert_eq!(events(&state), ["Warning InvalidSpec"]);
    assert!(object(&state, DEPLOY_PATH).is_none(), "nothing is created");
    // Fixed, it runs.
    put_function(&state, spec());
    reconcile(&state, &ctx).await.unwrap();
    assert!(object(&state, DEPLOY_PATH).is_some());
}

#[tokio::test]
async fn deletion_goes_through_the_finalizer() {
    let (client, state) = fake();
    let ctx = ctx(client);
    put_function(&state, spec());
    reconcile(&state, &ctx).await.unwrap();
    reconcile(&state, &ctx).await.unwrap();
    {
        let mut s = state.lock().unwrap();
        let f = s.objects.get_mut(FN_PATH).unwrap();
        f["metadata"]["deletionTimestamp"] = json!("2026-11-30T12:00:00Z");
    }
    reconcile(&state, &ctx).await.unwrap();
    assert!(
        function(&state).finalizers().is_empty(),
        "the finalizer is released"
    );
    assert_eq!(events(&state).last().unwrap(), "Normal Deleted");
}

#[tokio::test]
async fn api_errors_fail_the_reconcile_and_back_off() {
    let (client, state) = fake();
    let ctx = ctx(client);
    put_function(&state, spec());
    reconcile(&state, &ctx).await.unwrap();
    state.lock().unwrap().fail = Some("/deployments/".into());
    let err = reconcile(&state, &ctx).await.unwrap_err();
    assert!(err.to_string().contains("InternalError"), "{err}");
    let wf = function(&state);
    let first = controller::error_policy(wf.clone(), &err, ctx.clone());
    let second = controller::error_policy(wf.clone(), &err, ctx.clone());
    assert_eq!(first, Action::requeue(Duration::from_secs(2)));
    assert_eq!(second, Action::requeue(Duration::from_secs(4)));
    assert_eq!(controller::backoff(20), Duration::from_secs(300));
    // The API recovers: the reconcile goes through and the backoff resets.
    state.lock().unwrap().fail = None;
    reconcile(&state, &ctx).await.unwrap();
    assert!(object(&state, DEPLOY_PATH).is_some());
    assert_eq!(
        controller::error_policy(wf, &err, ctx.clone()),
        Action::requeue(Duration::from_secs(2))
    );
}

/// (group, resource, verb) of an API request the fake saw.
fn permission(request: &str) -> (String, String, String) {
    let (method, path) = request.split_once(' ').unwrap();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let collection = parts.len() == if parts[0] == "api" { 5 } else { 6 };
    let verb = match method {
        "GET" if collection => "list",
        "GET" => "get",
        "PATCH" => "patch",
        "POST" => "create",
        "PUT" => "update",
        other => panic!("unexpected method {other}"),
    };
    // api/v1/namespaces/NS/RES[/NAME[/SUB]] or apis/GROUP/V/namespaces/NS/RES[/NAME[/SUB]]
    let (group, rest) = match parts[0] {
        "api" => ("", &parts[2..]),
        _ => (parts[1], &parts[3..]),
    };
    assert_eq!(rest[0], "namespaces", "{path}");
    let mut resource = rest[2].to_string();
    if let Some(sub) = rest.get(4) {
        resource = format!("{resource}/{sub}");
    }
    (group.into(), resource, verb.into())
}

/// The rules of every Role and ClusterRole in deploy/k8s/rbac.yaml.
fn rbac_rules() -> Vec<(Vec<String>, Vec<String>, Vec<String>)> {
    use serde::Deserialize;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/rbac.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut rules = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).unwrap();
        if v["kind"] != "ClusterRole" && v["kind"] != "Role" {
            continue;
        }
        for r in v["rules"].as_array().unwrap() {
            let list = |k: &str| -> Vec<String> {
                r[k].as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect()
            };
            rules.push((list("apiGroups"), list("resources"), list("verbs")));
        }
    }
    rules
}

#[tokio::test]
async fn the_rbac_allows_every_call_and_nothing_broad() {
    let (client, state) = fake();
    let ctx = keyed_ctx(client);
    let pod = FakePod::start(vec![200]).await;
    put_pod(&state, "hello-wedge-a", "hello", true, pod.addr.port());
    put_function(&state, canary_spec(10.0));
    for _ in 0..3 {
        reconcile(&state, &ctx).await.unwrap();
    }
    assert_eq!(pod.seen().len(), 1, "the push path ran");
    let mut bad = spec();
    bad["routes"] = json!(["x"]);
    put_function(&state, bad);
    reconcile(&state, &ctx).await.unwrap();
    state.lock().unwrap().objects.get_mut(FN_PATH).unwrap()["metadata"]["deletionTimestamp"] =
        json!("2026-11-30T12:00:00Z");
    reconcile(&state, &ctx).await.unwrap();

    let mut needed: Vec<(String, String, String)> = state
        .lock()
        .unwrap()
        .requests
        .iter()
        .map(|r| permission(r))
        .collect();
    // The controller's watches, and the leader Lease.
    for (group, resource) in [
        ("wedge.dev", "wasmfunctions"),
        ("apps", "deployments"),
        ("", "configmaps"),
        ("", "services"),
    ] {
        for verb in ["list", "watch"] {
            needed.push((group.into(), resource.into(), verb.into()));
        }
    }
    for verb in ["get", "create", "update"] {
        needed.push(("coordination.k8s.io".into(), "leases".into(), verb.into()));
    }
    needed.sort();
    needed.dedup();
    let rules = rbac_rules();
    for (group, resource, verb) in &needed {
        let allowed = rules
            .iter()
            .any(|(g, r, v)| g.contains(group) && r.contains(resource) && v.contains(verb));
        assert!(
            allowed,
            "deploy/k8s/rbac.yaml does not allow {verb} {group}/{resource}"
        );
    }
    for (g, r, v) in &rules {
        assert!(
            !g.iter().chain(r).chain(v).any(|x| x == "*"),
            "a wildcard in {g:?} {r:?} {v:?}"
        );
        assert!(
            !v.iter().any(|x| x == "delete"),
            "the operator deletes nothing itself: {r:?}"
        );
    }
}

/// A pod's admin API standing in for wedge's (the real one is tested
/// against `put_traffic` in the CLI's tests): records each request and
/// answers with the next of `statuses` (then 200).
struct FakePod {
    addr: std::net::SocketAddr,
    seen: Arc<std::sync::Mutex<Vec<(String, String, Value)>>>,
}

impl FakePod {
    async fn start(statuses: Vec<u16>) -> FakePod {
        use http_body_util::BodyExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<std::sync::Mutex<Vec<(String, String, Value)>>> = Arc::default();
        let statuses = Arc::new(std::sync::Mutex::new(statuses));
        let (s, st) = (seen.clone(), statuses.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let (s, st) = (s.clone(), st.clone());
                let service =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (s, st) = (s.clone(), st.clone());
                        async move {
                            let line = format!("{} {}", req.method(), req.uri().path());
                            let auth = req
                                .headers()
                                .get("authorization")
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            s.lock().unwrap().push((
                                line,
                                auth,
                                serde_json::from_slice(&body).unwrap_or(Value::Null),
                            ));
                            let mut st = st.lock().unwrap();
                            let status = if st.is_empty() { 200 } else { st.remove(0) };
                            let text = if status == 200 {
                                "{}".to_string()
                            } else {
                                json!({"error": "not now"}).to_string()
                            };
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(hyper::body::Bytes::from(text)))
                                    .unwrap(),
                            )
                        }
                    });
                tokio::spawn(async move {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        FakePod { addr, seen }
    }

    fn seen(&self) -> Vec<(String, String, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

fn keyed_ctx(client: Client) -> Arc<Ctx> {
    Arc::new(Ctx::new(
        client,
        Settings {
            image: "wedge:test".into(),
            admin_key: Some("operator-key".into()),
        },
        Some("test".into()),
    ))
}

fn canary_spec(weight: f64) -> Value {
    let mut s = spec();
    s["canaries"] = json!([{"version": "v2", "module": {"oci": "oci://registry.example/acme/hello:v2"}, "weight": weight}]);
    s
}

/// A pod of function `function`, ready or not, whose admin API is on 127.0.0.1:`port`.
fn put_pod(state: &Shared, name: &str, function: &str, ready: bool, port: u16) {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "edge", "uid": format!("uid-{name}"),
                     "labels": {"wedge.dev/function": function}},
        "spec": {"containers": [{"name": "wedge", "ports": [
            {"name": "http", "containerPort": 8080}, {"name": "admin", "containerPort": port}]}]},
        "status": {"podIP": "127.0.0.1",
                   "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
    });
    state
        .lock()
        .unwrap()
        .objects
        .insert(format!("/api/v1/namespaces/edge/pods/{name}"), pod);
}

#[tokio::test]
async fn weights_go_to_the_ready_pods_through_the_admin_api() {
    let (client, state) = fake();
    let ctx = keyed_ctx(client);
    let a = FakePod::start(vec![]).await;
    let b = FakePod::start(vec![503]).await;
    let not_ready = FakePod::start(vec![]).await;
    let other = FakePod::start(vec![]).await;
    put_function(&state, canary_spec(10.0));
    reconcile(&state, &ctx).await.unwrap();
    reconcile(&state, &ctx).await.unwrap();
    // The pods' token, in a Secret the function owns.
    let secret = object(&state, "/api/v1/namespaces/edge/secrets/hello-wedge-admin")
        .expect("the token Secret");
    let token = wedge_operator::weights::token("operator-key", "edge", "hello");
    assert_eq!(secret["stringData"]["token"], token.as_str());
    assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "fn-uid");

    put_pod(&state, "hello-wedge-a", "hello", true, a.addr.port());
    put_pod(&state, "hello-wedge-b", "hello", true, b.addr.port());
    put_pod(
        &state,
        "hello-wedge-c",
        "hello",
        false,
        not_ready.addr.port(),
    );
    put_pod(&state, "bye-wedge-a", "bye", true, other.addr.port());
    let action = reconcile(&state, &ctx).await.unwrap();
    let put = |weights: Value| {
        (
            "PUT /v1/functions/hello/traffic".to_string(),
            format!("Bearer {token}"),
            weights,
        )
    };
    assert_eq!(a.seen(), [put(json!({"v1": 90.0, "v2": 10.0}))]);
    assert_eq!(b.seen().len(), 1, "b was asked and refused");
    assert!(
        not_ready.seen().is_empty(),
        "a pod that is not ready is not asked"
    );
    assert!(
        other.seen().is_empty(),
        "another function's pod is not asked"
    );
    assert_eq!(
        action,
        Action::requeue(controller::RETRY_PUSH),
        "b is retried soon"
    );
    let ev = events(&state);
    assert!(ev.contains(&"Normal TrafficSet".to_string()), "{ev:?}");
    assert!(ev.contains(&"Warning TrafficNotSet".to_string()), "{ev:?}");

    // The retry tells b only; a already has these weights.
    let action = reconcile(&state, &ctx).await.unwrap();
    assert_eq!(action, Action::requeue(Duration::from_secs(300)));
    assert_eq!(a.seen().len(), 1);
    assert_eq!(
        b.seen().last().unwrap(),
        &put(json!({"v1": 90.0, "v2": 10.0}))
    );
    assert_eq!(b.seen().len(), 2);

    // New weights: every ready pod is told again, and no pod rolls.
    let hash = |s: &Shared| {
        object(s, DEPLOY_PATH).unwrap()["spec"]["template"]["metadata"]["annotations"]["wedge.dev/config-hash"].clone()
    };
    let before = hash(&state);
    put_function(&state, canary_spec(30.0));
    reconcile(&state, &ctx).await.unwrap();
    assert_eq!(hash(&state), before);
    assert_eq!(
        a.seen().last().unwrap(),
        &put(json!({"v1": 70.0, "v2": 30.0}))
    );
    assert_eq!(
        b.seen().last().unwrap(),
        &put(json!({"v1": 70.0, "v2": 30.0}))
    );
    assert!(not_ready.seen().is_empty());

    // Without canaries there is nothing to push.
    put_function(&state, spec());
    reconcile(&state, &ctx).await.unwrap();
    assert_eq!(a.seen().len(), 2);
}
