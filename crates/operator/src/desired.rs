//! What a `WasmFunction` should become, as pure functions: the generated
//! `wedge.toml` (in a ConfigMap), the Deployment running `wedge serve` on
//! it, and the Service in front. No API calls here; golden files under
//! `testdata/` pin the output.
//!
//! Pods run `wedge serve --watch`, so a change that only moves traffic
//! weights reaches them without a restart: through wedge's admin API when
//! the operator has an admin key (see [`crate::weights`]), and in any case
//! through the ConfigMap (kubelet refreshes mounted ConfigMaps) and a hot
//! reload. Every other change alters the pod template's
//! `wedge.dev/config-hash` and rolls the pods.

use crate::crd::{Abi, Module, WasmFunction};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource,
    EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    Secret, SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, SleepAction,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The operator's own settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The `wedge` image pods run unless the function names one.
    pub image: String,
    /// The key the pods' admin tokens are derived from ([`crate::weights`]).
    /// With it, pods keep an API state and the operator pushes traffic
    /// weights to them; without it, weights reach pods only through the
    /// ConfigMap.
    pub admin_key: Option<String>,
}

/// The objects a function is run by.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub config_map: ConfigMap,
    /// The pods' admin token (`NAME-wedge-admin`, key `token`), when the
    /// operator has an admin key.
    pub admin_secret: Option<Secret>,
    pub deployment: Deployment,
    pub service: Service,
}

/// Why a spec cannot be run (shown as `Ready=False`, reason `InvalidSpec`).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

pub const HTTP_PORT: i32 = 8080;
pub const ADMIN_PORT: i32 = 9464;
const CONFIG_DIR: &str = "/etc/wedge";
const MODULES_DIR: &str = "/var/lib/wedge/modules";
/// The API's store: in the emptyDir, so a new pod starts from the ConfigMap.
const STATE_DIR: &str = "/var/cache/wedge/state";
const HEALTH: &str = wedge_manifest::DEFAULT_HEALTH_PREFIX;

/// The label every object of function `name` carries; the pods' selector.
pub fn selector(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("wedge.dev/function".to_string(), name.to_string())])
}

/// The selector as `/scale` reports it.
pub fn selector_string(name: &str) -> String {
    format!("wedge.dev/function={name}")
}

/// The name of the objects run for function `name`.
pub fn object_name(name: &str) -> String {
    format!("{name}-wedge")
}

/// The name of the Secret with the admin token of function `name`'s pods.
pub fn admin_secret_name(name: &str) -> String {
    format!("{name}-wedge-admin")
}

fn labels(name: &str) -> BTreeMap<String, String> {
    let mut l = selector(name);
    l.insert("app.kubernetes.io/name".into(), "wedge".into());
    l.insert("app.kubernetes.io/instance".into(), name.into());
    l.insert(
        "app.kubernetes.io/managed-by".into(),
        "wedge-operator".into(),
    );
    l
}

fn meta(wf: &WasmFunction, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(object_name(&wf.name_any())),
        namespace: wf.namespace(),
        labels: Some(labels(&wf.name_any())),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Checks what the CRD's schema cannot, and builds the objects.
pub fn desired(wf: &WasmFunction, settings: &Settings) -> Result<Desired, Invalid> {
    let owner = wf
        .controller_owner_ref(&())
        .ok_or_else(|| Invalid("the resource has no name or uid yet".into()))?;
    let (toml, restart_relevant) = wedge_toml(wf)?;
    let name = wf.name_any();
    let mut data = BTreeMap::new();
    data.insert("wedge.toml".to_string(), toml);
    let config_map = ConfigMap {
        metadata: meta(wf, &owner),
        data: Some(data),
        ..ConfigMap::default()
    };
    let token = settings
        .admin_key
        .as_ref()
        .map(|key| crate::weights::token(key, &wf.namespace().unwrap_or_default(), &name));
    // Pods read the token at start: a new one (a rotated key) rolls them.
    let mut restart_relevant = restart_relevant;
    if let Some(t) = &token {
        restart_relevant.push_str(t);
    }
    let hash = format!("{:x}", Sha256::digest(restart_relevant.as_bytes()))[..16].to_string();
    let deployment = deployment(wf, settings, &owner, &hash);
    let admin_secret = token.map(|token| Secret {
        metadata: ObjectMeta {
            name: Some(admin_secret_name(&name)),
            ..meta(wf, &owner)
        },
        string_data: Some(BTreeMap::from([("token".to_string(), token)])),
        ..Secret::default()
    });
    let service = Service {
        metadata: meta(wf, &owner),
        spec: Some(ServiceSpec {
            selector: Some(selector(&name)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    Ok(Desired {
        config_map,
        admin_secret,
        deployment,
        service,
    })
}

/// `s` as a TOML basic string, quoted and escaped.
fn q(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Where a module is for the pod: its OCI reference, or the file a
/// ConfigMap volume puts it in.
fn source(module: &Module, what: &str) -> Result<String, Invalid> {
    match (&module.oci, &module.config_map) {
        (Some(r), None) => {
            if !r.starts_with("oci://") {
                return Err(Invalid(format!(
                    "{what}: `{r}` is not an OCI reference; write oci://REGISTRY/REPOSITORY:TAG or …@sha256:DIGEST"
                )));
            }
            Ok(r.clone())
        }
        (None, Some(cm)) => Ok(format!("{MODULES_DIR}/{}/{}", cm.name, cm.key)),
        _ => Err(Invalid(format!(
            "{what}: give exactly one of module.oci and module.configMap"
        ))),
    }
}

/// The manifest the pods serve, and the part of it whose change needs a
/// restart (all but the canaries' weights).
pub fn wedge_toml(wf: &WasmFunction) -> Result<(String, String), Invalid> {
    let spec = &wf.spec;
    let name = wf.name_any();
    if spec.routes.is_empty() {
        return Err(Invalid("give at least one route".into()));
    }
    for r in &spec.routes {
        if !r.starts_with('/') {
            return Err(Invalid(format!("route `{r}` does not start with `/`")));
        }
    }
    let mut t = String::new();
    t.push_str("# Generated by wedge-operator from a WasmFunction; edits are overwritten.\n");
    t.push_str("[server]\n");
    t.push_str(&format!(
        "listen = {}\n\n",
        q(&format!("0.0.0.0:{HTTP_PORT}"))
    ));
    t.push_str("[[function]]\n");
    t.push_str(&format!("name = {}\n", q(&name)));
    t.push_str(&format!(
        "source = {}\n",
        q(&source(&spec.module, "module")?)
    ));
    let routes: Vec<String> = spec.routes.iter().map(|r| q(r)).collect();
    t.push_str(&format!("routes = [{}]\n", routes.join(", ")));
    if let Some(abi) = spec.abi {
        let abi = match abi {
            Abi::Wagi => "wagi",
            Abi::Http => "http",
        };
        t.push_str(&format!("abi = {}\n", q(abi)));
    }
    if let Some(v) = &spec.version {
        t.push_str(&format!("version = {}\n", q(v)));
    }
    if let Some(h) = &spec.version_header {
        t.push_str(&format!("version_header = {}\n", q(h)));
    }
    if let Some(l) = &spec.limits {
        let durations = [("timeout", &l.timeout), ("cpu_time", &l.cpu_time)];
        for (key, value) in durations {
            if let Some(v) = value {
                wedge_manifest::units::parse_duration(v)
                    .map_err(|e| Invalid(format!("limits.{key}: {e}")))?;
                t.push_str(&format!("{key} = {}\n", q(v)));
            }
        }
        let sizes = [
            ("max_memory", &l.max_memory),
            ("max_request_body", &l.max_request_body),
            ("max_response_body", &l.max_response_body),
        ];
        for (key, value) in sizes {
            if let Some(v) = value {
                wedge_manifest::units::parse_size(v)
                    .map_err(|e| Invalid(format!("limits.{key}: {e}")))?;
                t.push_str(&format!("{key} = {}\n", q(v)));
            }
        }
        if let Some(n) = l.max_concurrency {
            t.push_str(&format!("max_concurrency = {n}\n"));
        }
    }
    if !spec.allowed_outbound_hosts.is_empty() {
        let hosts: Vec<String> = spec.allowed_outbound_hosts.iter().map(|h| q(h)).collect();
        t.push_str(&format!(
            "allowed_outbound_hosts = [{}]\n",
            hosts.join(", ")
        ));
    }
    if !spec.env.is_empty() {
        t.push_str("\n[function.env]\n");
        for (k, v) in &spec.env {
            t.push_str(&format!("{} = {}\n", q(k), q(v)));
        }
    }
    let restart_relevant_end = t.len();
    let mut weights = 0.0;
    let mut seen = vec![spec.version.clone().unwrap_or_default()];
    let mut canaries = String::new();
    for c in &spec.canaries {
        if seen.contains(&c.version) {
            return Err(Invalid(format!(
                "version `{}` appears twice; name each version once",
                c.version
            )));
        }
        seen.push(c.version.clone());
        if !(c.weight > 0.0 && c.weight <= 100.0) {
            return Err(Invalid(format!(
                "canary `{}`: weight {} is not a percentage above 0",
                c.version, c.weight
            )));
        }
        weights += c.weight;
        let src = source(&c.module, &format!("canary `{}`", c.version))?;
        canaries.push_str(&format!(
            "\n[[function.canary]]\nversion = {}\nsource = {}\nweight = {}\n",
            q(&c.version),
            q(&src),
            c.weight
        ));
    }
    if !spec.canaries.is_empty() && spec.version.is_none() {
        return Err(Invalid(
            "canaries need spec.version to name the stable version".into(),
        ));
    }
    if weights > 100.0 + 1e-9 {
        return Err(Invalid(format!(
            "the canaries' weights add up to {weights}, over 100"
        )));
    }
    // The canaries' modules restart pods when they change; their weights do not.
    let mut restart = t[..restart_relevant_end].to_string();
    for c in &spec.canaries {
        restart.push_str(&format!("{}={:?}\n", c.version, c.module));
    }
    t.push_str(&canaries);
    Ok((t, restart))
}

fn deployment(
    wf: &WasmFunction,
    settings: &Settings,
    owner: &OwnerReference,
    hash: &str,
) -> Deployment {
    let spec = &wf.spec;
    let name = wf.name_any();
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: object_name(&name),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume {
            name: "cache".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        },
    ];
    let mut mounts = vec![
        VolumeMount {
            name: "config".into(),
            mount_path: CONFIG_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "cache".into(),
            mount_path: "/var/cache/wedge".into(),
            ..VolumeMount::default()
        },
    ];
    // One volume per ConfigMap that holds modules.
    let mut by_map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let modules = std::iter::once(&spec.module).chain(spec.canaries.iter().map(|c| &c.module));
    for m in modules {
        if let Some(cm) = &m.config_map {
            by_map
                .entry(cm.name.clone())
                .or_default()
                .push(cm.key.clone());
        }
    }
    for (i, (map, keys)) in by_map.into_iter().enumerate() {
        let vol = format!("modules-{i}");
        volumes.push(Volume {
            name: vol.clone(),
            config_map: Some(ConfigMapVolumeSource {
                name: map.clone(),
                items: Some(
                    keys.into_iter()
                        .map(|k| KeyToPath {
                            key: k.clone(),
                            path: k,
                            ..KeyToPath::default()
                        })
                        .collect(),
                ),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: vol,
            mount_path: format!("{MODULES_DIR}/{map}"),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    // The root filesystem is read-only: the AOT cache, pulled modules and
    // a generated admin token go to the emptyDir.
    let mut env = vec![
        EnvVar {
            name: "WEDGE_CACHE_DIR".into(),
            value: Some("/var/cache/wedge".into()),
            ..EnvVar::default()
        },
        EnvVar {
            name: "XDG_RUNTIME_DIR".into(),
            value: Some("/var/cache/wedge".into()),
            ..EnvVar::default()
        },
    ];
    if settings.admin_key.is_some() {
        env.push(EnvVar {
            name: "WEDGE_ADMIN_TOKEN".into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: admin_secret_name(&name),
                    key: "token".into(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        });
    }
    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(format!("{HEALTH}{path}")),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    };
    let resources = spec
        .resources
        .clone()
        .unwrap_or_else(|| ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_string(), Quantity("100m".into())),
                ("memory".to_string(), Quantity("128Mi".into())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_string(),
                Quantity("512Mi".into()),
            )])),
            ..ResourceRequirements::default()
        });
    let mut args: Vec<String> = [
        "serve",
        "-f",
        &format!("{CONFIG_DIR}/wedge.toml"),
        "--watch",
        "--admin-listen",
        &format!("0.0.0.0:{ADMIN_PORT}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if settings.admin_key.is_some() {
        // The admin API (and its store, for traffic set through it) is on
        // only with a state directory.
        args.extend(["--state".to_string(), STATE_DIR.to_string()]);
    }
    let container = Container {
        name: "wedge".into(),
        image: Some(spec.image.clone().unwrap_or_else(|| settings.image.clone())),
        args: Some(args),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: HTTP_PORT,
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("admin".into()),
                container_port: ADMIN_PORT,
                ..ContainerPort::default()
            },
        ]),
        env: Some(env),
        readiness_probe: Some(probe("/ready", 2)),
        liveness_probe: Some(probe("/health", 10)),
        lifecycle: Some(Lifecycle {
            // Endpoints drop the pod before wedge stops accepting; then
            // SIGTERM drains what is in flight.
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: 5 }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        resources: Some(resources),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    };
    let mut template_labels = labels(&name);
    template_labels.extend(selector(&name));
    Deployment {
        metadata: meta(wf, owner),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector(&name)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(BTreeMap::from([(
                        "wedge.dev/config-hash".to_string(),
                        hash.to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    termination_grace_period_seconds: Some(40),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}
