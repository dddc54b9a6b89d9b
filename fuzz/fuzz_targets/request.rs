//! The request path up to the guest, on arbitrary bytes: parse a request
//! head as hyper does (httparse), route it, and build the CGI environment
//! and arguments a WAGI guest would get. Nothing may panic, and the
//! environment holds one value per variable, none of them `HTTP_PROXY`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use wedge_cgi::{CgiRequest, arguments, environment};
use wedge_manifest::{Route, Router};

fn router() -> &'static Router {
    static R: OnceLock<Router> = OnceLock::new();
    R.get_or_init(|| {
        let routes = ["/", "/api/...", "/users/:id", "/users/:id/files/...", "/static/..."];
        Router::new(
            routes
                .iter()
                .enumerate()
                .map(|(i, r)| (Route::parse(r).expect("valid route"), i))
                .collect(),
        )
        .expect("no conflicts")
    })
}

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    let (Some(method), Some(path)) = (req.method, req.path) else {
        return;
    };
    let Ok(uri) = path.parse::<http::Uri>() else {
        return;
    };
    let mut map = http::HeaderMap::new();
    for h in req.headers.iter() {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            map.append(n, v);
        }
    }
    let Some(routed) = router().route(uri.path()) else {
        return;
    };
    let env = environment(&CgiRequest {
        method,
        uri: &uri,
        version: "HTTP/1.1",
        headers: &map,
        remote: "192.0.2.1:5555".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        route: routed.route.template(),
        script_name: routed.found.script_name,
        path_info: routed.found.path_info,
        params: &routed.found.params,
        body_len: 0,
        allow_authorization: false,
        // Both sides of TLS: `HTTPS` must not collide with a header's name.
        tls: data.len() % 2 == 1,
    });
    let mut names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert!(!names.contains(&"HTTP_PROXY"));
    assert!(!names.contains(&"HTTP_AUTHORIZATION"));
    names.sort_unstable();
    let before = names.len();
    names.dedup();
    assert_eq!(before, names.len(), "a variable set twice");
    let args = arguments(&uri);
    assert_eq!(args[0], uri.path());
});
