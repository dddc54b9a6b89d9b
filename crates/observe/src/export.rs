//! One short HTTP POST from wedge itself (trace exports, anomaly webhooks),
//! with its own deadlines: a collector or webhook that stalls costs one
//! export, never the exporter. The guests' outbound client keeps its own,
//! longer, per-request settings.

use std::time::Duration;

/// Time to connect to the collector or webhook.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time for the whole exchange, connection to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer body read; a longer one fails the exchange.
pub const MAX_ANSWER: usize = 16 << 20;

/// Why a POST failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// The receiver answered with this non-2xx status.
    Status(u16),
    /// No answer: connection refused, reset, timed out.
    Transport(String),
}

impl PostError {
    /// Whether trying again may help: no answer, or the statuses OTLP/HTTP
    /// calls retryable (429, 502, 503, 504).
    pub fn retryable(&self) -> bool {
        match self {
            PostError::Transport(_) => true,
            PostError::Status(s) => matches!(s, 429 | 502 | 503 | 504),
        }
    }
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PostError::Status(s) => write!(f, "status {s}"),
            PostError::Transport(e) => f.write_str(e),
        }
    }
}

/// POSTs `body` (cheap to clone for a retry); `Ok` on a 2xx answer, else
/// what went wrong.
pub async fn post(
    url: &http::Uri,
    content_type: &str,
    headers: &[(String, String)],
    body: bytes::Bytes,
) -> Result<(), PostError> {
    let mut all = vec![("content-type".to_string(), content_type.to_string())];
    all.extend_from_slice(headers);
    let (status, _) = send(http::Method::POST, url, &all, body, REQUEST_TIMEOUT).await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(PostError::Status(status))
    }
}

/// One request, and the status and body of its answer, all within
/// `deadline` (connecting within [`CONNECT_TIMEOUT`]).
pub async fn send(
    method: http::Method,
    url: &http::Uri,
    headers: &[(String, String)],
    body: bytes::Bytes,
    deadline: Duration,
) -> Result<(u16, bytes::Bytes), PostError> {
    tokio::time::timeout(deadline, exchange(method, url, headers, body, deadline))
        .await
        .unwrap_or_else(|_| {
            Err(PostError::Transport(format!(
                "no answer within {} s",
                deadline.as_secs()
            )))
        })
}

async fn exchange(
    method: http::Method,
    url: &http::Uri,
    headers: &[(String, String)],
    body: bytes::Bytes,
    deadline: Duration,
) -> Result<(u16, bytes::Bytes), PostError> {
    use http_body_util::BodyExt;
    let host = url.authority().map(|a| a.to_string()).unwrap_or_default();
    let mut req = http::Request::builder()
        .method(method)
        .uri(url.clone())
        .header(http::header::HOST, host);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(
            http_body_util::Full::new(body)
                .map_err(|never| match never {})
                .boxed_unsync(),
        )
        .map_err(|e| PostError::Transport(e.to_string()))?;
    let options = wasmtime_wasi_http::RequestOptions {
        connect_timeout: Some(CONNECT_TIMEOUT),
        first_byte_timeout: Some(deadline),
        between_bytes_timeout: Some(deadline),
    };
    let (response, io) = wasmtime_wasi_http::default_send_request(req, Some(options))
        .await
        .map_err(|e| PostError::Transport(e.to_string()))?;
    // The connection's driver ends with the exchange, or at the deadline.
    tokio::spawn(tokio::time::timeout(deadline, io));
    let status = response.status().as_u16();
    let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| PostError::Transport(format!("the answer: {e}")))?
        .to_bytes();
    Ok((status, body))
}
