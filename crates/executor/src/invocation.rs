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
    /// Arrived over TLS: the guest sees the `https` scheme (`HTTPS=on` in
    /// CGI).
    pub tls: bool,
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
                    tls: inv.peer.tls,
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
                    tls: inv.peer.tls,
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
                absolute_uri(&mut parts, &inv.peer);
                let request = http::Request::from_parts(parts, inv.body.into_body());
                let (result, stats) = http_fn.call(inv.id, request, inv.trace, inv.tracer).await;
                Outcome { result, stats }
            }
        }
    }
}

/// Gives the guest an absolute URI (scheme and authority), as a proxy sees
/// it: `https` for a TLS connection, the authority from the Host header or
/// the address the invocation arrived on.
fn absolute_uri(parts: &mut http::request::Parts, peer: &Peer) {
    use http::uri::{Authority, PathAndQuery, Scheme};
    // Absolute already, or not a path (the `*` of `OPTIONS *`): as it came.
    if parts.uri.authority().is_some() || !parts.uri.path().starts_with('/') {
        return;
    }
    // Built from parts rather than formatted and parsed again: one
    // allocation (the authority's bytes) instead of about six per request.
    let authority = match parts.headers.get(http::header::HOST) {
        Some(host) => match Authority::try_from(host.as_bytes()) {
            Ok(a) => a,
            // A Host that is no authority leaves the URI as it came.
            Err(_) => return,
        },
        None => match Authority::try_from(peer.local.to_string()) {
            Ok(a) => a,
            Err(_) => return,
        },
    };
    let mut uri = std::mem::take(&mut parts.uri).into_parts();
    uri.scheme = Some(if peer.tls {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    });
    uri.authority = Some(authority);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = http::Uri::from_parts(uri).expect("scheme, authority and path make a URI");
}

#[cfg(test)]
mod tests {
    use super::{Peer, absolute_uri};

    fn absolute_over(uri: &str, host: Option<&str>, tls: bool) -> String {
        let mut b = http::Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header("host", h);
        }
        let (mut parts, ()) = b.body(()).unwrap().into_parts();
        let peer = Peer {
            remote: "127.0.0.1:5000".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
            tls,
        };
        absolute_uri(&mut parts, &peer);
        parts.uri.to_string()
    }

    fn absolute(uri: &str, host: Option<&str>) -> String {
        absolute_over(uri, host, false)
    }

    #[test]
    fn over_tls_the_guest_sees_https() {
        assert_eq!(
            absolute_over("/a?b", Some("example.com"), true),
            "https://example.com/a?b"
        );
        assert_eq!(absolute_over("/", None, true), "https://127.0.0.1:8080/");
    }

    #[test]
    fn the_guest_sees_an_absolute_uri() {
        assert_eq!(
            absolute("/a/b?x=1&y", Some("example.com:81")),
            "http://example.com:81/a/b?x=1&y"
        );
        assert_eq!(absolute("/hello", None), "http://127.0.0.1:8080/hello");
        assert_eq!(absolute("*", Some("h")), "*");
        // Already absolute: kept as it came, whatever the Host says.
        assert_eq!(
            absolute("https://up.example/p?q", Some("other")),
            "https://up.example/p?q"
        );
        // A Host that is no authority leaves the URI relative.
        assert_eq!(absolute("/p", Some("bad host/x")), "/p");
    }
}
