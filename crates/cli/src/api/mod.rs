//! The control plane's HTTP API (`/v1/...` on the admin listener): deploy a
//! version, set traffic, promote, roll back, hand a function back to the
//! manifest. Every change is committed to the state store, then applied by
//! a reload; a change that does not load is undone in the store, so the
//! committed state is always one that serves.

mod events;

use crate::reload::Reloader;
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::Arc;
use wedge_control::store::now;
use wedge_control::{FunctionState, Store, TrafficRecord};
use wedge_manifest::traffic::{ALL_TRAFFIC, MAX_VERSIONS, check_version_name};
use wedge_trigger::table::Served;

/// The API's OpenAPI 3 description, served at `GET /v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Largest request body other than a module.
pub const MAX_JSON: usize = 64 << 10;

/// Largest module accepted by a deploy.
pub const MAX_MODULE: usize = 64 << 20;

pub struct Api {
    pub store: Arc<Store>,
    pub reloader: Arc<Reloader>,
    /// Asynchronous CloudEvents, for their dead letters.
    pub ingress: Option<Arc<wedge_events::ingress::Ingress>>,
    /// One change at a time.
    pub(crate) lock: tokio::sync::Mutex<()>,
    /// Itself, for the rollout tasks it starts.
    me: std::sync::Weak<Api>,
    /// How deploys with `?oci=REFERENCE` reach registries, and where the
    /// pulled modules are kept.
    pub registry: (wedge_oci::Options, wedge_oci::Store),
}

pub(crate) type Reply = (StatusCode, String);

pub(crate) fn reply(status: StatusCode, v: Value) -> Reply {
    (status, format!("{v:#}\n"))
}

pub(crate) fn error(status: StatusCode, message: impl std::fmt::Display) -> Reply {
    reply(status, json!({ "error": message.to_string() }))
}

fn store_error(e: wedge_control::Error) -> Reply {
    use wedge_control::Error as E;
    let status = match &e {
        E::Invalid(_) => StatusCode::BAD_REQUEST,
        E::NotFound(_) => StatusCode::NOT_FOUND,
        E::Conflict(_) => StatusCode::CONFLICT,
        E::Store { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

/// The methods a path of the API answers, if it is one.
fn allowed(path: &str) -> Option<&'static str> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    Some(match parts.as_slice() {
        ["v1", "openapi.json"] | ["v1", "functions"] | ["v1", "functions", _] => "GET",
        ["v1", "functions", _, "versions"] => "POST",
        ["v1", "functions", _, "versions", _] => "DELETE",
        ["v1", "functions", _, "traffic"] => "PUT, DELETE",
        ["v1", "functions", _, "promote" | "rollback"] => "POST",
        ["v1", "functions", _, "rollout"] => "GET, POST",
        ["v1", "functions", _, "rollout", _] => "POST",
        ["v1", "events", "dead-letters"] => "GET",
        ["v1", "events", "dead-letters", _] => "DELETE",
        ["v1", "events", "dead-letters", _, "replay"] => "POST",
        _ => return None,
    })
}

fn param<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

pub(crate) fn percent(bp: u32) -> f64 {
    f64::from(bp) / 100.0
}

impl wedge_http::admin::Control for Api {
    fn max_body(&self, method: &Method, path: &str) -> usize {
        // Only a deploy uploads a module; everything else is a small JSON.
        if method == Method::POST && path.trim_end_matches('/').ends_with("/versions") {
            MAX_MODULE
        } else {
            MAX_JSON
        }
    }

    fn call(
        &self,
        method: Method,
        path: String,
        query: String,
        body: bytes::Bytes,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = http::Response<String>> + Send + '_>>
    {
        Box::pin(async move {
            let allow = allowed(&path);
            let (status, text) = match allow {
                Some(methods) if !methods.split(", ").any(|m| m == method.as_str()) => error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{method} is not allowed here; allowed: {methods}"),
                ),
                _ => self.route(method, &path, &query, body).await,
            };
            let mut r = http::Response::new(text);
            *r.status_mut() = status;
            if status == StatusCode::METHOD_NOT_ALLOWED
                && let Some(methods) = allow
            {
                r.headers_mut()
                    .insert(http::header::ALLOW, http::HeaderValue::from_static(methods));
            }
            r
        })
    }
}

impl Api {
    pub fn new(
        store: Arc<Store>,
        reloader: Arc<Reloader>,
        ingress: Option<Arc<wedge_events::ingress::Ingress>>,
        registry: (wedge_oci::Options, wedge_oci::Store),
    ) -> Arc<Api> {
        Arc::new_cyclic(|me| Api {
            store,
            reloader,
            ingress,
            lock: tokio::sync::Mutex::new(()),
            me: me.clone(),
            registry,
        })
    }

    async fn route(&self, method: Method, path: &str, query: &str, body: bytes::Bytes) -> Reply {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // Changes act on a function the server serves; check that before
        // reading their input, so an unknown name is always a 404.
        let changes = matches!(
            (&method, parts.as_slice()),
            (
                &Method::POST,
                ["v1", "functions", _, "versions" | "promote" | "rollout"]
            ) | (
                &Method::PUT | &Method::DELETE,
                ["v1", "functions", _, "traffic"]
            )
        );
        if changes && self.served(parts[2]).is_none() {
            return error(StatusCode::NOT_FOUND, format!("no function `{}`", parts[2]));
        }
        match (method, parts.as_slice()) {
            (Method::GET, ["v1", "openapi.json"]) => (StatusCode::OK, OPENAPI.to_string()),
            (Method::GET, ["v1", "functions"]) => self.list(),
            (Method::GET, ["v1", "events", "dead-letters"]) => self.dead_letters(query),
            (Method::DELETE, ["v1", "events", "dead-letters", seq]) => self.discard(seq),
            (Method::POST, ["v1", "events", "dead-letters", seq, "replay"]) => self.replay(seq),
            (Method::GET, ["v1", "functions", name]) => self.show(name),
            (Method::POST, ["v1", "functions", name, "versions"]) => {
                self.deploy(name, query, body).await
            }
            (Method::DELETE, ["v1", "functions", name, "versions", version]) => {
                self.delete_version(name, version).await
            }
            (Method::PUT, ["v1", "functions", name, "traffic"]) => {
                self.set_traffic(name, &body).await
            }
            (Method::DELETE, ["v1", "functions", name, "traffic"]) => self.release(name).await,
            (Method::GET, ["v1", "functions", name, "rollout"]) => self.show_rollout(name),
            (Method::POST, ["v1", "functions", name, "rollout"]) => {
                let Some(me) = self.me.upgrade() else {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
                };
                me.rollout(name, "", &body).await
            }
            (Method::POST, ["v1", "functions", name, "rollout", action]) => {
                let Some(me) = self.me.upgrade() else {
                    return error(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
                };
                me.rollout(name, action, &body).await
            }
            (Method::POST, ["v1", "functions", name, "promote"]) => {
                let Some(v) = param(query, "version") else {
                    return error(StatusCode::BAD_REQUEST, "give ?version=NAME");
                };
                let v = v.to_string();
                let done = self
                    .change(name, "promote", {
                        let v = v.clone();
                        move |_, t| Ok(promoted(t, &v))
                    })
                    .await;
                if done.0 == StatusCode::OK {
                    self.rollout_promoted_by_hand(name, &v);
                }
                done
            }
            (Method::POST, ["v1", "functions", name, "rollback"]) => {
                self.change(name, "rollback", |_, t| {
                    let Some(prev) = t.previous_stable.clone() else {
                        return Err(error(
                            StatusCode::CONFLICT,
                            "nothing to roll back to: the stable version has not changed \
                             through the API",
                        ));
                    };
                    Ok(promoted(t, &prev))
                })
                .await
            }
            _ => error(
                StatusCode::NOT_FOUND,
                "unknown endpoint: see GET /v1/functions, GET /v1/functions/NAME, POST \
                 /v1/functions/NAME/versions?version=V[&weight=W], PUT|DELETE \
                 /v1/functions/NAME/traffic, POST /v1/functions/NAME/promote?version=V, POST \
                 /v1/functions/NAME/rollback, GET|POST /v1/functions/NAME/rollout, POST \
                 /v1/functions/NAME/rollout/pause|resume|abort",
            ),
        }
    }

    pub(crate) fn served(&self, name: &str) -> Option<Arc<Served>> {
        let table = self.reloader.table.load();
        table.functions.iter().find(|f| f.name == name).cloned()
    }

    fn view(&self, served: &Served) -> Value {
        let state = self.store.function(&served.name).unwrap_or_default();
        let weights = served.traffic.weights();
        let versions: Vec<Value> = served
            .versions
            .iter()
            .zip(weights)
            .map(|(v, w)| {
                json!({
                    "version": &*v.spec.version,
                    "weight": percent(w),
                    "abi": v.abi,
                    "sha256": v.sha256.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                })
            })
            .collect();
        let stored: Vec<Value> = state
            .versions
            .iter()
            .map(|v| json!({"version": v.version, "sha256": v.sha256, "created": v.created}))
            .collect();
        let routes: Vec<&str> = served
            .stable()
            .config
            .routes
            .iter()
            .map(|r| r.template())
            .collect();
        json!({
            "name": served.name,
            "routes": routes,
            "managed_by": if state.traffic.is_some() { "api" } else { "manifest" },
            "stable": &*served.stable().spec.version,
            "traffic": versions,
            "previous_stable": state.traffic.as_ref().and_then(|t| t.previous_stable.clone()),
            "last_change": state.traffic.as_ref().map(|t| json!({"at": t.changed, "reason": t.reason})),
            "rollout": state.rollout.as_ref().map(|r| json!({
                "version": r.version,
                "state": r.state,
                "weight": percent(r.steps.get(r.step).copied().unwrap_or(0)),
            })),
            "stored_versions": stored,
        })
    }

    fn list(&self) -> Reply {
        let table = self.reloader.table.load();
        let all: Vec<Value> = table.functions.iter().map(|f| self.view(f)).collect();
        reply(StatusCode::OK, json!({ "functions": all }))
    }

    fn show(&self, name: &str) -> Reply {
        match self.served(name) {
            Some(f) => reply(StatusCode::OK, self.view(&f)),
            None => error(StatusCode::NOT_FOUND, format!("no function `{name}`")),
        }
    }

    /// The function's traffic as the store has it, taking over from the
    /// manifest (its versions' modules copied into the store) on first use.
    fn adopt(&self, served: &Served) -> Result<(FunctionState, TrafficRecord), Reply> {
        let state = self.store.function(&served.name).map_err(store_error)?;
        if let Some(t) = &state.traffic {
            return Ok((state.clone(), t.clone()));
        }
        for v in &served.versions {
            let bytes = std::fs::read(&v.config.source).map_err(|e| {
                error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("reading {}: {e}", v.config.source.display()),
                )
            })?;
            let sha = self.store.put_module(&bytes).map_err(store_error)?;
            self.store
                .add_version(&served.name, &v.spec.version, &sha)
                .map_err(store_error)?;
        }
        let canaries = served.names[..served.names.len() - 1]
            .iter()
            .zip(&served.traffic.canaries)
            .map(|(n, c)| (n.to_string(), c.weight))
            .collect();
        let traffic = TrafficRecord {
            stable: served.stable().spec.version.to_string(),
            canaries,
            previous_stable: None,
            changed: now(),
            reason: "taken over from the manifest".into(),
        };
        Ok((
            self.store.function(&served.name).map_err(store_error)?,
            traffic,
        ))
    }

    /// Applies a traffic change: commit, reload, and undo on failure.
    pub(crate) async fn change(
        &self,
        name: &str,
        reason: &str,
        f: impl FnOnce(&FunctionState, &TrafficRecord) -> Result<TrafficRecord, Reply>,
    ) -> Reply {
        let _one = self.lock.lock().await;
        let Some(served) = self.served(name) else {
            return error(StatusCode::NOT_FOUND, format!("no function `{name}`"));
        };
        let before = match self.store.function(name) {
            Ok(s) => s.traffic,
            Err(e) => return store_error(e),
        };
        let (state, current) = match self.adopt(&served) {
            Ok(x) => x,
            Err(r) => return r,
        };
        let mut next = match f(&state, &current) {
            Ok(t) => t,
            Err(r) => return r,
        };
        for v in std::iter::once(&next.stable).chain(next.canaries.iter().map(|c| &c.0)) {
            if state.version(v).is_none() {
                return error(
                    StatusCode::NOT_FOUND,
                    format!("function `{name}` has no version `{v}`; deploy it first"),
                );
            }
        }
        next.changed = now();
        next.reason = reason.to_string();
        if let Err(e) = self.store.set_traffic(name, &next) {
            return store_error(e);
        }
        if let Err(e) = self.reloader.reload().await {
            let undo = match &before {
                Some(t) => self.store.set_traffic(name, t),
                None => self.store.clear_traffic(name).map(|_| ()),
            };
            let _ = self.reloader.reload().await;
            let mut message = format!("the change did not load and was undone: {e:#}");
            if let Err(u) = undo {
                message.push_str(&format!("; undoing it failed too: {u}"));
            }
            return error(StatusCode::UNPROCESSABLE_ENTITY, message);
        }
        match self.served(name) {
            Some(f) => reply(StatusCode::OK, self.view(&f)),
            None => error(StatusCode::NOT_FOUND, format!("no function `{name}`")),
        }
    }

    /// Pulls an OCI artifact for a deploy; gives the module's file.
    async fn pull(&self, reference: &str) -> Result<String, Reply> {
        let (options, store) = &self.registry;
        match wedge_oci::pull(reference, store, options).await {
            Ok(pulled) => {
                wedge_observe::log::line(
                    "info",
                    "-",
                    "-",
                    &format!("deploy: pulled {reference} ({})", pulled.manifest),
                );
                Ok(pulled.path.display().to_string())
            }
            Err(e @ wedge_oci::Error::Reference { .. }) => Err(error(StatusCode::BAD_REQUEST, e)),
            Err(e @ wedge_oci::Error::NotWasm { .. }) => {
                Err(error(StatusCode::UNPROCESSABLE_ENTITY, e))
            }
            Err(e) => Err(error(StatusCode::BAD_GATEWAY, e)),
        }
    }

    async fn deploy(&self, name: &str, query: &str, body: bytes::Bytes) -> Reply {
        let Some(version) = param(query, "version") else {
            return error(
                StatusCode::BAD_REQUEST,
                "give ?version=NAME (and optionally &weight=PERCENT) with the module as the body",
            );
        };
        if let Err(e) = check_version_name(version) {
            return error(StatusCode::BAD_REQUEST, e);
        }
        let weight = match param(query, "weight").map(str::parse::<f64>) {
            None => 0,
            Some(Ok(w)) if (0.0..=100.0).contains(&w) => (w * 100.0).round() as u32,
            Some(_) => return error(StatusCode::BAD_REQUEST, "weight is a percentage, 0 to 100"),
        };
        // The module: the body, a file already on the node, or an OCI
        // artifact pulled now.
        let path = param(query, "path").map(wedge_cgi::percent_decode);
        let oci = param(query, "oci").map(wedge_cgi::percent_decode);
        let given = usize::from(!body.is_empty())
            + usize::from(path.is_some())
            + usize::from(oci.is_some());
        if given > 1 {
            return error(
                StatusCode::BAD_REQUEST,
                "give the module one way: as the body, as ?path=FILE on the node, or as ?oci=REFERENCE",
            );
        }
        let path = match oci {
            Some(reference) => match self.pull(&reference).await {
                Ok(file) => Some(file),
                Err(reply) => return reply,
            },
            None => path,
        };
        let body = match path {
            Some(path) => {
                let file = std::path::PathBuf::from(&path);
                if !file.is_absolute() {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("path `{path}` is not absolute"),
                    );
                }
                let read = tokio::task::spawn_blocking(move || {
                    let len = std::fs::metadata(&file)?.len();
                    if len > MAX_MODULE as u64 {
                        return Err(std::io::Error::other(format!(
                            "{len} bytes, over the {MAX_MODULE}-byte limit"
                        )));
                    }
                    std::fs::read(&file)
                })
                .await;
                match read {
                    Ok(Ok(bytes)) => bytes::Bytes::from(bytes),
                    Ok(Err(e)) => {
                        return error(StatusCode::BAD_REQUEST, format!("reading `{path}`: {e}"));
                    }
                    Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
                }
            }
            None => body,
        };
        if body.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                "the request body is the module (or give ?path=FILE on the node); it is empty",
            );
        }
        let store = self.store.clone();
        let sha = match tokio::task::spawn_blocking(move || store.put_module(&body)).await {
            Ok(Ok(sha)) => sha,
            Ok(Err(e)) => return store_error(e),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        let existed = self
            .store
            .function(name)
            .map(|s| s.version(version).is_some())
            .unwrap_or(false);
        if let Err(e) = self.store.add_version(name, version, &sha) {
            return store_error(e);
        }
        let v = version.to_string();
        let (status, text) = self
            .change(name, "deploy", move |_, t| {
                if weight >= ALL_TRAFFIC {
                    return Ok(promoted(t, &v));
                }
                if t.stable == v {
                    return Ok(t.clone());
                }
                let mut next = t.clone();
                next.canaries.retain(|c| c.0 != v);
                next.canaries.push((v.clone(), weight));
                if next.canaries.len() + 1 > MAX_VERSIONS {
                    return Err(error(
                        StatusCode::CONFLICT,
                        format!(
                            "at most {MAX_VERSIONS} versions share a function's traffic; take \
                             one out first"
                        ),
                    ));
                }
                let total: u32 = next.canaries.iter().map(|c| c.1).sum();
                if total > ALL_TRAFFIC {
                    return Err(error(
                        StatusCode::CONFLICT,
                        format!(
                            "the canaries would take {}% of the traffic; lower the weight or \
                             set the traffic first",
                            percent(total)
                        ),
                    ));
                }
                Ok(next)
            })
            .await;
        if status == StatusCode::UNPROCESSABLE_ENTITY && !existed {
            let _ = self.store.remove_version(name, version);
        }
        if status == StatusCode::OK {
            (StatusCode::CREATED, text)
        } else {
            (status, text)
        }
    }

    async fn set_traffic(&self, name: &str, body: &[u8]) -> Reply {
        let weights: serde_json::Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => m,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "the body is a JSON object of version: percent, e.g. {\"v1\": 90, \"v2\": 10}",
                );
            }
        };
        if weights.len() > MAX_VERSIONS {
            return error(
                StatusCode::BAD_REQUEST,
                format!("at most {MAX_VERSIONS} versions share a function's traffic"),
            );
        }
        let mut parsed: Vec<(String, u32)> = Vec::new();
        for (v, w) in &weights {
            match w.as_f64() {
                Some(w) if (0.0..=100.0).contains(&w) => {
                    parsed.push((v.clone(), (w * 100.0).round() as u32))
                }
                _ => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        format!("`{v}`: a percentage, 0 to 100"),
                    );
                }
            }
        }
        let total: u32 = parsed.iter().map(|p| p.1).sum();
        if total != ALL_TRAFFIC {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "the weights add up to {}%; they must add up to 100",
                    percent(total)
                ),
            );
        }
        self.change(name, "traffic", move |_, t| {
            // The stable version takes the largest share; on a tie the
            // current stable keeps its place.
            let top = parsed.iter().map(|p| p.1).max().unwrap_or(0);
            let stable = parsed
                .iter()
                .find(|p| p.1 == top && p.0 == t.stable)
                .or_else(|| parsed.iter().find(|p| p.1 == top))
                .map(|p| p.0.clone())
                .unwrap_or_else(|| t.stable.clone());
            let mut next = t.clone();
            if stable != t.stable {
                next.previous_stable = Some(t.stable.clone());
            }
            next.canaries = parsed.iter().filter(|p| p.0 != stable).cloned().collect();
            next.stable = stable;
            Ok(next)
        })
        .await
    }

    async fn delete_version(&self, name: &str, version: &str) -> Reply {
        let _one = self.lock.lock().await;
        let state = match self.store.function(name) {
            Ok(s) => s,
            Err(e) => return store_error(e),
        };
        if state.version(version).is_none() {
            return error(
                StatusCode::NOT_FOUND,
                format!("function `{name}` has no stored version `{version}`"),
            );
        }
        let used = state.traffic.as_ref().is_some_and(|t| {
            t.stable == version
                || t.canaries.iter().any(|c| c.0 == version)
                || t.previous_stable.as_deref() == Some(version)
        }) || state.rollout.as_ref().is_some_and(|r| {
            r.version == version && matches!(r.state.as_str(), "running" | "paused" | "frozen")
        });
        if used {
            return error(
                StatusCode::CONFLICT,
                format!(
                    "version `{version}` of `{name}` is in traffic, kept for rollback, or in a \
                     rollout; take it out first"
                ),
            );
        }
        match self.store.remove_version(name, version) {
            Ok(_) => match self.served(name) {
                Some(f) => reply(StatusCode::OK, self.view(&f)),
                None => reply(StatusCode::OK, json!({ "deleted": version })),
            },
            Err(e) => store_error(e),
        }
    }

    async fn release(&self, name: &str) -> Reply {
        let _one = self.lock.lock().await;
        match self.store.clear_traffic(name) {
            Ok(false) => {
                return error(
                    StatusCode::CONFLICT,
                    format!("function `{name}` is already managed by the manifest"),
                );
            }
            Ok(true) => {}
            Err(e) => return store_error(e),
        }
        if let Err(e) = self.reloader.reload().await {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("handed back, but the manifest does not load: {e:#}"),
            );
        }
        self.show(name)
    }
}

/// `t` with all traffic on `version`, the old stable kept for rollback.
pub(crate) fn promoted(t: &TrafficRecord, version: &str) -> TrafficRecord {
    TrafficRecord {
        stable: version.to_string(),
        canaries: Vec::new(),
        previous_stable: (t.stable != version)
            .then(|| t.stable.clone())
            .or_else(|| t.previous_stable.clone()),
        changed: t.changed,
        reason: t.reason.clone(),
    }
}
