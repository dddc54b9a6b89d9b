//! A small in-memory Kubernetes API server behind tower-test's mock
//! service, for the controller's and the Lease's tests: it stores what is
//! applied, created and replaced (with resourceVersion conflicts), applies
//! JSON patches with the `json-patch` crate, counts generations, records
//! Events, and fails on demand.

// Each test file uses a part of it.
#![allow(dead_code)]

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// What the fake API server holds and saw.
#[derive(Default)]
pub struct State {
    /// Objects by path (`/apis/.../namespaces/edge/deployments/hello-wedge`).
    pub objects: BTreeMap<String, Value>,
    /// Events posted: (type, reason).
    pub events: Vec<(String, String)>,
    /// Requests answered 500 while the path contains this.
    pub fail: Option<String>,
    pub requests: Vec<String>,
    /// The next replace answers 409, as when another writer got there first.
    pub conflict_next_put: bool,
}

pub type Shared = Arc<Mutex<State>>;

fn status_json(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

/// Merges `patch` into `doc` (JSON merge patch, enough for apply here).
fn merge(doc: &mut Value, patch: &Value) {
    match (doc, patch) {
        (Value::Object(d), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    d.remove(k);
                } else {
                    merge(d.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (d, p) => *d = p.clone(),
    }
}

/// The objects directly under `base` whose labels match `selector`
/// (`k=v,k2=v2`), as a List.
fn list(objects: &BTreeMap<String, Value>, base: &str, selector: Option<&str>) -> Value {
    let wanted: Vec<(&str, &str)> = selector
        .unwrap_or("")
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    let items: Vec<Value> = objects
        .iter()
        .filter(|(path, _)| {
            path.strip_prefix(base)
                .and_then(|rest| rest.strip_prefix('/'))
                .is_some_and(|name| !name.contains('/'))
        })
        .filter(|(_, o)| {
            wanted
                .iter()
                .all(|(k, v)| o["metadata"]["labels"][*k] == *v)
        })
        .map(|(_, o)| o.clone())
        .collect();
    json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items})
}

fn serve(
    state: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> (StatusCode, Value) {
    let mut s = state.lock().unwrap();
    s.requests.push(format!("{method} {path}"));
    if s.fail.as_deref().is_some_and(|f| path.contains(f)) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            status_json(500, "InternalError"),
        );
    }
    if method == Method::POST && path.contains("/events") {
        let ev: Value = serde_json::from_slice(body).unwrap();
        s.events.push((
            ev["type"].as_str().unwrap_or("").into(),
            ev["reason"].as_str().unwrap_or("").into(),
        ));
        return (StatusCode::CREATED, ev);
    }
    let (base, status) = match path.strip_suffix("/status") {
        Some(b) => (b.to_string(), true),
        None => (path.to_string(), false),
    };
    match *method {
        Method::GET => match s.objects.get(&base) {
            Some(o) => (StatusCode::OK, o.clone()),
            // A collection: list it.
            None if base.rsplit('/').nth(1) == Some(ns_of(&base)) => {
                let selector = query.and_then(|q| {
                    form_urlencoded::parse(q.as_bytes())
                        .find(|(k, _)| k == "labelSelector")
                        .map(|(_, v)| v.into_owned())
                });
                (StatusCode::OK, list(&s.objects, &base, selector.as_deref()))
            }
            None => (StatusCode::NOT_FOUND, status_json(404, "NotFound")),
        },
        Method::PATCH => {
            let patch: Value = serde_json::from_slice(body).unwrap();
            let exists = s.objects.contains_key(&base);
            let mut obj = s.objects.get(&base).cloned().unwrap_or(json!({}));
            let before = obj.clone();
            if patch.is_array() {
                // A JSON patch (the finalizer's): test-and-set, as the API server does.
                // The API server reads a missing field as null in a `test`.
                let p: json_patch::Patch = serde_json::from_value(patch).unwrap();
                if obj["metadata"].get("finalizers").is_none() {
                    obj["metadata"]["finalizers"] = Value::Null;
                }
                if json_patch::patch(&mut obj, &p).is_err() {
                    return (
                        StatusCode::UNPROCESSABLE_ENTITY,
                        status_json(422, "Invalid"),
                    );
                }
                if obj["metadata"]["finalizers"].is_null() {
                    obj["metadata"]
                        .as_object_mut()
                        .unwrap()
                        .remove("finalizers");
                }
            } else if status {
                merge(&mut obj, &json!({"status": patch["status"]}));
            } else {
                if !exists {
                    obj = json!({"metadata": {"generation": 1, "uid": format!("uid-{}", s.objects.len())}});
                }
                let generation = obj["metadata"]["generation"].as_i64().unwrap_or(1);
                let old_spec = obj["spec"].clone();
                merge(&mut obj, &patch);
                if exists && obj["spec"] != old_spec {
                    obj["metadata"]["generation"] = json!(generation + 1);
                }
            }
            if obj != before || !exists {
                let rv = s.objects.len() as u64 * 1000 + s.requests.len() as u64;
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            }
            s.objects.insert(base, obj.clone());
            (StatusCode::OK, obj)
        }
        Method::POST => {
            // Create: the name is in the body; 409 when it exists.
            let mut obj: Value = serde_json::from_slice(body).unwrap();
            let name = obj["metadata"]["name"].as_str().unwrap().to_string();
            let full = format!("{base}/{name}");
            if s.objects.contains_key(&full) {
                return (StatusCode::CONFLICT, status_json(409, "AlreadyExists"));
            }
            obj["metadata"]["resourceVersion"] = json!("1");
            s.objects.insert(full, obj.clone());
            (StatusCode::CREATED, obj)
        }
        Method::PUT => {
            // Replace, with optimistic concurrency on resourceVersion.
            if std::mem::take(&mut s.conflict_next_put) {
                return (StatusCode::CONFLICT, status_json(409, "Conflict"));
            }
            let mut obj: Value = serde_json::from_slice(body).unwrap();
            let Some(current) = s.objects.get(&base) else {
                return (StatusCode::NOT_FOUND, status_json(404, "NotFound"));
            };
            if obj["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                return (StatusCode::CONFLICT, status_json(409, "Conflict"));
            }
            let rv: u64 = current["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            obj["metadata"]["resourceVersion"] = json!((rv + 1).to_string());
            s.objects.insert(base, obj.clone());
            (StatusCode::OK, obj)
        }
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            status_json(405, "MethodNotAllowed"),
        ),
    }
}

/// The namespace in `.../namespaces/NS/RESOURCE[/NAME]`.
fn ns_of(path: &str) -> &str {
    let mut parts = path.split('/');
    parts
        .by_ref()
        .find(|p| *p == "namespaces")
        .and_then(|_| parts.next())
        .unwrap_or("")
}

/// A client whose requests the fake answers, and the fake's state.
pub fn fake() -> (Client, Shared) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let state: Shared = Arc::default();
    let s = state.clone();
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect().await.unwrap().to_bytes();
            let (code, v) = serve(
                &s,
                &parts.method,
                parts.uri.path(),
                parts.uri.query(),
                &bytes,
            );
            let response = Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&v).unwrap()))
                .unwrap();
            send.send_response(response);
        }
    });
    (Client::new(service, "default"), state)
}
