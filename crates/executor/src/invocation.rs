//! One call of a function, from any trigger. A function sees every
//! invocation as an HTTP request (method, URI, headers, body): an HTTP
//! trigger passes its request through, an event trigger builds one (a
//! CloudEvent in binary mode, say). [`Executor::call`] runs it in a fresh
//! instance and gives back the guest's response or one [`Failure`], with
//! what the call cost.

use crate::body::{Body, RequestBody};
use crate::failure::Failure;
use crate::function::Executor;
use std::net::SocketAddr;
use std::sync::Arc;
use wedge_cgi as cgi;
use wedge_observe::stats::GuestStats;
use wedge_observe::traces::Tracer;
use wedge_telemetry::trace::Context;

/// Where an invocation came from and arrived: the connection's ends for
/// HTTP; for a message, the broker's address and the node's.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// The route that matched, as CGI describes it.
pub struct Route<'a> {
    /// The route as written in the manifest, e.g. `/users/:id/...`.
    pub template: &'a str,
    pub script_name: &'a str,
    pub path_info: &'a str,
    pub params: &'a [(String, &'a str)],
}

/// One invocation.
pub struct Invocation<'a> {
    pub id: &'a str,
    pub head: http::request::Parts,
    pub body: RequestBody,
    pub peer: Peer,
    pub route: Route<'a>,
    /// The invocation's span: the guest sees it, its outbound calls carry it.
    pub trace: Option<Context>,
    /// Where the spans of the guest's outbound calls go.
    pub tracer: Option<Arc<Tracer>>,
}

/// What became of an invocation.
pub struct Outcome {
    /// The guest's response (its body may still be streaming from the
    /// instance), or why there is none.
    pub result: Result<http::Response<Body>, Failure>,
    pub stats: GuestStats,
}

impl Executor {
    /// Runs one invocation in a fresh instance.
    pub async fn call(&self, inv: Invocation<'_>, allow_authorization: bool) -> Outcome {
        match self {
            Executor::Wagi(wagi) => {
                let parts = &inv.head;
                // WAGI reads its input as a whole (CGI wants CONTENT_LENGTH
                // up front); triggers send it complete, but a stream is
                // gathered here rather than refused.
                let body = match inv.body.into_bytes().await {
                    Ok(body) => body,
                    Err(e) => {
                        let failure = Failure::BadRequest {
                            problem: format!("the request body could not be read: {e}"),
                        };
                        return Outcome {
                            result: Err(failure),
                            stats: GuestStats::default(),
                        };
                    }
                };
                let version = match parts.version {
                    http::Version::HTTP_2 => "HTTP/2.0",
                    http::Version::HTTP_10 => "HTTP/1.0",
                    _ => "HTTP/1.1",
                };
                let env = cgi::environment(&cgi::CgiRequest {
                    method: parts.method.as_str(),
                    uri: &parts.uri,
                    version,
                    headers: &parts.headers,
                    remote: inv.peer.remote,
                    local: inv.peer.local,
                    route: inv.route.template,
                    script_name: inv.route.script_name,
                    path_info: inv.route.path_info,
                    params: inv.route.params,
                    body_len: body.len(),
                    allow_authorization,
                });
                let (result, stats) = wagi
                    .call(crate::wagi::Call {
                        request_id: inv.id,
                        env,
                        args: cgi::arguments(&parts.uri),
                        body,
                    })
                    .await;
                Outcome { result, stats }
            }
            Executor::Sdk(sdk_fn) => {
                let arrival = crate::sdk::Arrival {
                    remote: inv.peer.remote,
                    local: inv.peer.local,
                    template: inv.route.template,
                    params: inv.route.params,
                };
                let head =
                    crate::sdk::request_head(inv.id, &inv.head, &arrival, inv.body.known_len());
                let call = crate::sdk::Call {
                    request_id: inv.id,
                    head,
                    body: inv.body.into_body(),
                };
                let (result, stats) = sdk_fn.call(call).await;
                Outcome { result, stats }
            }
            Executor::Http(http_fn) => {
                let mut parts = inv.head;
                absolute_uri(&mut parts, inv.peer.local);
                let request = http::Request::from_parts(parts, inv.body.into_body());
                let (result, stats) = http_fn.call(inv.id, request, inv.trace, inv.tracer).await;
                Outcome { result, stats }
            }
        }
    }
}

/// Gives the guest an absolute URI (scheme and authority), as a proxy sees
/// it: from the Host header, or the address the invocation arrived on.
fn absolute_uri(parts: &mut http::request::Parts, local: SocketAddr) {
    if parts.uri.authority().is_some() {
        return;
    }
    let authority = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| local.to_string());
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    if let Ok(uri) = format!("http://{authority}{pq}").parse() {
        parts.uri = uri;
    }
}
