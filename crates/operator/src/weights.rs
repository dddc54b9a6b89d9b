//! Traffic weights pushed to running pods through wedge's admin API, so a
//! weight change takes effect at once instead of after the kubelet's next
//! ConfigMap refresh (about a minute), and without a restart.
//!
//! Each function's pods get an admin token of their own, derived from the
//! operator's key (`HMAC-SHA256(key, "NAMESPACE/NAME")`) and handed to them
//! in a Secret the operator writes: the operator never needs to read a
//! Secret, and a token that leaks opens one function's pods only.

use crate::crd::WasmFunctionSpec;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use sha2::Sha256;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

/// How long one pod may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// The admin token of function `name` in `namespace`, from the operator's key.
pub fn token(key: &str, namespace: &str, name: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{namespace}/{name}").as_bytes());
    format!("{:x}", mac.finalize().into_bytes())
}

/// The traffic split a spec asks for, as wedge's `PUT .../traffic` takes it
/// (version → percent, adding up to 100): the canaries' weights and the
/// rest for the stable version. `None` when there is nothing to split.
pub fn traffic(spec: &WasmFunctionSpec) -> Option<BTreeMap<String, f64>> {
    let stable = spec.version.as_ref()?;
    if spec.canaries.is_empty() {
        return None;
    }
    let mut split: BTreeMap<String, f64> = spec
        .canaries
        .iter()
        .map(|c| (c.version.clone(), c.weight))
        .collect();
    let canaries: f64 = split.values().sum();
    // In hundredths, as wedge counts them, so the sum is exactly 100.
    let rest = (10_000.0 - (canaries * 100.0).round()).max(0.0) / 100.0;
    split.insert(stable.clone(), rest);
    Some(split)
}

/// `version=percent` pairs, for events and logs.
pub fn describe(split: &BTreeMap<String, f64>) -> String {
    split
        .iter()
        .map(|(v, w)| format!("{v}={w}%"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sets `function`'s traffic on the wedge whose admin API listens at
/// `admin`: `PUT /v1/functions/NAME/traffic`. The error says what the pod
/// answered, or why it could not be reached.
pub async fn put_traffic(
    admin: SocketAddr,
    function: &str,
    token: &str,
    split: &BTreeMap<String, f64>,
) -> Result<(), String> {
    let body = serde_json::to_vec(split).map_err(|e| e.to_string())?;
    let request = hyper::Request::put(format!("/v1/functions/{function}/traffic"))
        .header(hyper::header::HOST, admin.to_string())
        .header(hyper::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(admin)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        // A pod's error message is short; more is not read.
        let body = http_body_util::Limited::new(response.into_body(), 64 << 10)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&body);
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().chars().take(300).collect());
        Err(format!("{status}: {message}"))
    };
    match tokio::time::timeout(TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {}s", TIMEOUT.as_secs())),
    }
}
