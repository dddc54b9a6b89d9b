//! The pure half of the operator: the objects and status a `WasmFunction`
//! should have, pinned by golden YAML (`WEDGE_BLESS=1` rewrites them after
//! a deliberate change), and the CRD as committed in `deploy/k8s`.

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use std::path::PathBuf;
use wedge_operator::crd::WasmFunction;
use wedge_operator::desired::{self, Settings};
use wedge_operator::status::{condition, status};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn settings() -> Settings {
    Settings {
        image: "ghcr.io/wedge-dev/wedge:0.1.0".into(),
        admin_key: Some("operator-key".into()),
    }
}

fn function(spec: serde_json::Value) -> WasmFunction {
    serde_json::from_value(json!({
        "apiVersion": "wedge.dev/v1alpha1",
        "kind": "WasmFunction",
        "metadata": {"name": "hello", "namespace": "edge", "uid": "4f6c1d2e-0000-4000-8000-000000000001", "generation": 3},
        "spec": spec,
    }))
    .unwrap()
}

fn oci_spec() -> serde_json::Value {
    json!({
        "module": {"oci": "oci://registry.example/acme/hello@sha256:6ea660de4805ca67f49ea22dd732857303e6c7b42644e5580f2798230f8aa347"},
        "routes": ["/hello", "/hello/..."],
        "abi": "http",
        "replicas": 2,
        "limits": {"timeout": "5s", "maxMemory": "32MiB", "maxConcurrency": 16},
        "env": {"GREETING": "hi \"there\""},
        "allowedOutboundHosts": ["https://api.example.com"]
    })
}

fn canary_spec() -> serde_json::Value {
    json!({
        "module": {"configMap": {"name": "hello-modules", "key": "v1.wasm"}},
        "routes": ["/hello"],
        "version": "v1",
        "versionHeader": "x-version",
        "canaries": [{"version": "v2", "module": {"configMap": {"name": "hello-modules", "key": "v2.wasm"}}, "weight": 10.0}]
    })
}

/// Compares `actual` with the golden file, or rewrites it when blessing.
fn golden(name: &str, actual: &str) {
    let path = root().join("testdata").join(name);
    if std::env::var_os("WEDGE_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("missing {}: run with WEDGE_BLESS=1", path.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs (WEDGE_BLESS=1 to accept)",
        path.display()
    );
}

fn yaml(d: &desired::Desired) -> String {
    let mut out = String::new();
    let secret = d
        .admin_secret
        .as_ref()
        .map(|s| ("Secret", serde_json::to_value(s).unwrap()));
    for (kind, v) in secret.into_iter().chain([
        ("ConfigMap", serde_json::to_value(&d.config_map).unwrap()),
        ("Deployment", serde_json::to_value(&d.deployment).unwrap()),
        ("Service", serde_json::to_value(&d.service).unwrap()),
    ]) {
        out.push_str(&format!(
            "# {kind}\n---\n{}",
            serde_yaml_ng::to_string(&v).unwrap()
        ));
    }
    out
}

#[test]
fn objects_match_the_golden_files() {
    let d = desired::desired(&function(oci_spec()), &settings()).unwrap();
    golden("oci.yaml", &yaml(&d));
    let d = desired::desired(&function(canary_spec()), &settings()).unwrap();
    golden("canary.yaml", &yaml(&d));
    let toml = d.config_map.data.as_ref().unwrap()["wedge.toml"].clone();
    assert!(toml.contains("[[function.canary]]\nversion = \"v2\"\nsource = \"/var/lib/wedge/modules/hello-modules/v2.wasm\"\nweight = 10\n"), "{toml}");
}

#[test]
fn the_generated_manifest_is_one_wedge_reads() {
    let (toml, _) = desired::wedge_toml(&function(oci_spec())).unwrap();
    let dir = tempfile_dir();
    let path = dir.join("wedge.toml");
    std::fs::write(&path, &toml).unwrap();
    let app = wedge_manifest::load(&path, &Default::default()).unwrap();
    let f = &app.functions[0];
    assert_eq!(f.name, "hello");
    assert_eq!(
        wedge_manifest::oci_reference(&f.source),
        oci_spec()["module"]["oci"].as_str()
    );
    assert_eq!(f.limits.max_memory, 32 << 20);
    assert_eq!(f.limits.max_concurrency, 16);
    assert_eq!(
        f.env,
        vec![("GREETING".to_string(), "hi \"there\"".to_string())]
    );
}

fn tempfile_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wedge-operator-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn config_hash(d: &desired::Desired) -> String {
    d.deployment
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .as_ref()
        .unwrap()["wedge.dev/config-hash"]
        .clone()
}

#[test]
fn only_a_weight_change_leaves_the_pods_running() {
    let before = desired::desired(&function(canary_spec()), &settings()).unwrap();
    let mut spec = canary_spec();
    spec["canaries"][0]["weight"] = json!(50.0);
    let weights = desired::desired(&function(spec.clone()), &settings()).unwrap();
    assert_eq!(
        config_hash(&before),
        config_hash(&weights),
        "no rollout for weights"
    );
    assert_ne!(
        before.config_map, weights.config_map,
        "but the pods' manifest changes"
    );
    spec["canaries"][0]["module"]["configMap"]["key"] = json!("v3.wasm");
    let module = desired::desired(&function(spec), &settings()).unwrap();
    assert_ne!(
        config_hash(&before),
        config_hash(&module),
        "a new module rolls the pods"
    );
    let mut spec = oci_spec();
    spec["limits"]["timeout"] = json!("6s");
    let limits = desired::desired(&function(spec), &settings()).unwrap();
    let first = desired::desired(&function(oci_spec()), &settings()).unwrap();
    assert_ne!(
        config_hash(&first),
        config_hash(&limits),
        "limits roll the pods"
    );
}

fn container(d: &desired::Desired) -> k8s_openapi::api::core::v1::Container {
    let spec = d.deployment.spec.as_ref().unwrap();
    spec.template.spec.as_ref().unwrap().containers[0].clone()
}

#[test]
fn an_admin_key_gives_each_function_a_token_and_the_api() {
    let d = desired::desired(&function(canary_spec()), &settings()).unwrap();
    let secret = d.admin_secret.as_ref().expect("a token Secret");
    assert_eq!(secret.metadata.name.as_deref(), Some("hello-wedge-admin"));
    assert_eq!(secret.metadata.namespace.as_deref(), Some("edge"));
    let token = &secret.string_data.as_ref().unwrap()["token"];
    // HMAC-SHA256(key, "namespace/name") as an independent implementation
    // (openssl) computes it.
    let out = std::process::Command::new("openssl")
        .args(["dgst", "-sha256", "-hmac", "operator-key", "-r"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"edge/hello")?;
            child.wait_with_output()
        })
        .expect("openssl (the test command installs it)");
    let expected = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token, expected.split_whitespace().next().unwrap());
    assert_ne!(
        token,
        &wedge_operator::weights::token("operator-key", "other", "hello"),
        "another namespace, another token"
    );
    let c = container(&d);
    let args = c.args.unwrap().join(" ");
    assert!(args.contains("--state /var/cache/wedge/state"), "{args}");
    let env = c.env.unwrap();
    let t = env.iter().find(|e| e.name == "WEDGE_ADMIN_TOKEN").unwrap();
    let from = t
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(
        (from.name.as_str(), from.key.as_str()),
        ("hello-wedge-admin", "token")
    );

    // A new key is a new token, which pods read at start: they roll.
    let rotated = Settings {
        admin_key: Some("new-key".into()),
        ..settings()
    };
    let r = desired::desired(&function(canary_spec()), &rotated).unwrap();
    assert_ne!(config_hash(&d), config_hash(&r));

    // Without a key: no token, no API state; weights come with the ConfigMap.
    let plain = Settings {
        admin_key: None,
        ..settings()
    };
    let p = desired::desired(&function(canary_spec()), &plain).unwrap();
    assert!(p.admin_secret.is_none());
    let c = container(&p);
    assert!(!c.args.unwrap().iter().any(|a| a == "--state"));
    assert!(!c.env.unwrap().iter().any(|e| e.name == "WEDGE_ADMIN_TOKEN"));
}

#[test]
fn the_traffic_pushed_is_the_canaries_and_the_rest_for_stable() {
    use wedge_operator::weights::{describe, traffic};
    let mut spec = canary_spec();
    spec["canaries"] = json!([
        {"version": "v2", "module": {"oci": "oci://r.example/a:v2"}, "weight": 12.5},
        {"version": "v3", "module": {"oci": "oci://r.example/a:v3"}, "weight": 0.35}]);
    let split = traffic(&function(spec).spec).unwrap();
    assert_eq!(describe(&split), "v1=87.15% v2=12.5% v3=0.35%");
    assert_eq!(
        split
            .values()
            .map(|w| (w * 100.0).round() as u32)
            .sum::<u32>(),
        10_000
    );
    assert_eq!(
        traffic(&function(oci_spec()).spec),
        None,
        "nothing to split"
    );
}

#[test]
fn invalid_specs_say_what_is_wrong() {
    let cases = [
        (
            json!({"module": {}, "routes": ["/a"]}),
            "exactly one of module.oci and module.configMap",
        ),
        (
            json!({"module": {"oci": "ghcr.io/a/b:v1"}, "routes": ["/a"]}),
            "not an OCI reference",
        ),
        (
            json!({"module": {"oci": "oci://r.example/a:v1"}, "routes": ["a"]}),
            "does not start with `/`",
        ),
        (
            json!({"module": {"oci": "oci://r.example/a:v1"}, "routes": []}),
            "at least one route",
        ),
        (
            json!({"module": {"oci": "oci://r.example/a:v1"}, "routes": ["/a"], "limits": {"timeout": "soon"}}),
            "limits.timeout",
        ),
        (
            json!({"module": {"oci": "oci://r.example/a:v1"}, "routes": ["/a"], "limits": {"maxMemory": "lots"}}),
            "limits.max_memory",
        ),
        (
            json!({"module": {"oci": "oci://r.example/a:v1"}, "routes": ["/a"], "canaries": [{"version": "v2", "module": {"oci": "oci://r.example/a:v2"}, "weight": 5.0}]}),
            "need spec.version",
        ),
        (
            json!({"module": {"oci": "oci://r.example/a:v1"}, "routes": ["/a"], "version": "v1", "canaries": [
            {"version": "v2", "module": {"oci": "oci://r.example/a:v2"}, "weight": 60.0},
            {"version": "v3", "module": {"oci": "oci://r.example/a:v3"}, "weight": 50.0}]}),
            "add up to 110",
        ),
        (
            json!({"module": {"oci": "oci://r.example/a:v1"}, "routes": ["/a"], "version": "v1", "canaries": [
            {"version": "v1", "module": {"oci": "oci://r.example/a:v2"}, "weight": 5.0}]}),
            "appears twice",
        ),
    ];
    for (spec, expected) in cases {
        let err = desired::desired(&function(spec.clone()), &settings()).unwrap_err();
        assert!(err.0.contains(expected), "{spec}: {err}");
    }
}

fn deployment(
    generation: i64,
    observed: i64,
    replicas: i32,
    ready: i32,
    updated: i32,
) -> Deployment {
    let mut d = Deployment::default();
    d.metadata.generation = Some(generation);
    d.status = Some(DeploymentStatus {
        observed_generation: Some(observed),
        replicas: Some(replicas),
        ready_replicas: Some(ready),
        updated_replicas: Some(updated),
        ..DeploymentStatus::default()
    });
    d
}

fn at(s: i64) -> Time {
    Time(Timestamp::from_second(s).unwrap())
}

#[test]
fn status_follows_the_deployment() {
    let mut wf = function(oci_spec());
    let s = status(&wf, Some(&deployment(2, 2, 2, 2, 2)), None, at(100));
    let ready = condition(&s, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "AllReplicasReady")
    );
    assert_eq!(condition(&s, "Progressing").unwrap().status, "False");
    assert_eq!(condition(&s, "Degraded").unwrap().status, "False");
    assert_eq!((s.replicas, s.ready_replicas), (2, 2));
    assert_eq!(s.selector, "wedge.dev/function=hello");
    assert_eq!(s.observed_generation, Some(3));

    // A rollout in progress: not ready, progressing; the transition time
    // of a condition that keeps its status is kept.
    wf.status = Some(s);
    let s = status(&wf, Some(&deployment(3, 3, 3, 1, 1)), None, at(200));
    assert_eq!(condition(&s, "Ready").unwrap().status, "False");
    assert_eq!(
        condition(&s, "Ready").unwrap().last_transition_time,
        at(200)
    );
    assert_eq!(condition(&s, "Progressing").unwrap().status, "True");
    assert_eq!(
        condition(&s, "Degraded").unwrap().last_transition_time,
        at(100)
    );

    // Stuck: the Deployment's progress deadline passed.
    let mut stuck = deployment(3, 3, 2, 1, 1);
    stuck.status.as_mut().unwrap().conditions = Some(vec![DeploymentCondition {
        type_: "Progressing".into(),
        status: "False".into(),
        reason: Some("ProgressDeadlineExceeded".into()),
        message: Some("ReplicaSet \"hello-wedge-abc\" has timed out progressing.".into()),
        ..DeploymentCondition::default()
    }]);
    let s = status(&wf, Some(&stuck), None, at(300));
    let degraded = condition(&s, "Degraded").unwrap();
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "ProgressDeadlineExceeded")
    );

    // An invalid spec.
    let why = desired::Invalid("route `a` does not start with `/`".into());
    let s = status(&wf, None, Some(&why), at(400));
    let ready = condition(&s, "Ready").unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "InvalidSpec")
    );
    assert!(ready.message.contains("does not start"));
}

#[test]
fn the_committed_crd_is_current_and_has_scale_columns_and_rules() {
    let yaml = wedge_operator::crd_yaml();
    let path = root().join("../../deploy/k8s/crd.yaml");
    if std::env::var_os("WEDGE_BLESS").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let committed =
        std::fs::read_to_string(&path).expect("deploy/k8s/crd.yaml (WEDGE_BLESS=1 writes it)");
    assert_eq!(
        yaml, committed,
        "deploy/k8s/crd.yaml is stale: run `WEDGE_BLESS=1 cargo test -p wedge-operator`"
    );
    let crd: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(crd["spec"]["group"], "wedge.dev");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "wfn");
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(
        v["subresources"]["scale"]["labelSelectorPath"],
        ".status.selector"
    );
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.replicas"
    );
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Ready", "Replicas", "Version", "Age"]);
    assert!(
        yaml.contains("x-kubernetes-validations"),
        "CEL rules in the schema"
    );
    assert!(yaml.contains("has(self.oci) != has(self.configMap)"));
}
