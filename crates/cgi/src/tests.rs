use super::*;

fn req<'a>(
    uri: &'a Uri,
    headers: &'a HeaderMap,
    params: &'a [(String, &'a str)],
) -> CgiRequest<'a> {
    CgiRequest {
        method: "POST",
        uri,
        version: "HTTP/1.1",
        headers,
        remote: "10.0.0.7:5555".parse().unwrap(),
        local: "127.0.0.1:8080".parse().unwrap(),
        route: "/api/...",
        script_name: "/api",
        path_info: "/items/a%20b",
        params,
        body_len: 11,
        allow_authorization: false,
        tls: false,
    }
}

fn get<'e>(env: &'e [(String, String)], k: &str) -> Option<&'e str> {
    env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn environment_follows_cgi() {
    let uri: Uri = "/api/items/a%20b?x=1&y=2".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("host", "example.com:8080".parse().unwrap());
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("x-custom-thing", "v1".parse().unwrap());
    headers.append("x-custom-thing", "v2".parse().unwrap());
    headers.insert("authorization", "Bearer secret".parse().unwrap());
    let params = [("id".to_string(), "7")];
    let env = environment(&req(&uri, &headers, &params));
    assert_eq!(get(&env, "REQUEST_METHOD"), Some("POST"));
    assert_eq!(get(&env, "CONTENT_TYPE"), Some("application/json"));
    assert_eq!(get(&env, "CONTENT_LENGTH"), Some("11"));
    assert_eq!(get(&env, "QUERY_STRING"), Some("x=1&y=2"));
    assert_eq!(get(&env, "PATH_INFO"), Some("/items/a b"));
    assert_eq!(get(&env, "X_RAW_PATH_INFO"), Some("/items/a%20b"));
    assert_eq!(get(&env, "SCRIPT_NAME"), Some("/api"));
    assert_eq!(get(&env, "SERVER_NAME"), Some("example.com"));
    assert_eq!(get(&env, "SERVER_PORT"), Some("8080"));
    assert_eq!(get(&env, "REMOTE_ADDR"), Some("10.0.0.7"));
    assert_eq!(get(&env, "GATEWAY_INTERFACE"), Some("CGI/1.1"));
    assert_eq!(get(&env, "X_MATCHED_ROUTE"), Some("/api/..."));
    assert_eq!(
        get(&env, "X_FULL_URL"),
        Some("http://example.com:8080/api/items/a%20b?x=1&y=2")
    );
    assert_eq!(get(&env, "X_PARAM_ID"), Some("7"));
    assert_eq!(get(&env, "HTTP_X_CUSTOM_THING"), Some("v1, v2"));
    assert_eq!(get(&env, "HTTP_CONTENT_TYPE"), None);
    assert_eq!(
        get(&env, "HTTP_AUTHORIZATION"),
        None,
        "credentials stay hidden"
    );

    let mut opted_in = req(&uri, &headers, &params);
    opted_in.allow_authorization = true;
    let env = environment(&opted_in);
    assert_eq!(get(&env, "HTTP_AUTHORIZATION"), Some("Bearer secret"));
}

#[test]
fn over_tls_https_is_on_and_http2_names_its_host_in_the_uri() {
    // HTTP/2 has no Host header: the authority is part of the URI.
    let uri: Uri = "https://example.com:8443/api/items?x=1".parse().unwrap();
    let headers = HeaderMap::new();
    let mut r = req(&uri, &headers, &[]);
    let env = environment(&r);
    assert_eq!(get(&env, "HTTPS"), None);
    assert_eq!(get(&env, "SERVER_NAME"), Some("example.com"));
    r.tls = true;
    let env = environment(&r);
    assert_eq!(get(&env, "HTTPS"), Some("on"));
    assert_eq!(
        get(&env, "X_FULL_URL"),
        Some("https://example.com:8443/api/items?x=1")
    );
}

#[test]
fn no_httpoxy_no_proxy_credentials_and_no_colliding_names() {
    let uri: Uri = "/api".parse().unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("proxy", "http://attacker:8080".parse().unwrap());
    headers.insert("proxy-authorization", "Basic eDp5".parse().unwrap());
    headers.insert("x-forwarded-for", "10.1.1.1".parse().unwrap());
    headers.insert("x_forwarded_for", "6.6.6.6".parse().unwrap());
    let env = environment(&req(&uri, &headers, &[]));
    assert_eq!(get(&env, "HTTP_PROXY"), None, "httpoxy");
    assert_eq!(get(&env, "HTTP_PROXY_AUTHORIZATION"), None);
    assert_eq!(get(&env, "HTTP_X_FORWARDED_FOR"), Some("10.1.1.1"));
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        names.len(),
        unique.len(),
        "one value per variable: {names:?}"
    );
}

#[test]
fn argv_is_the_path_and_isindex_words() {
    assert_eq!(arguments(&"/a/b?x=1".parse().unwrap()), vec!["/a/b"]);
    assert_eq!(
        arguments(&"/s?hello+big%20world".parse().unwrap()),
        vec!["/s", "hello", "big world"]
    );
}

#[test]
fn parses_headers_status_and_location() {
    let out = b"Content-Type: text/plain\nX-Extra: 1\n\nbody";
    let r = parse_response(out).unwrap();
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers["content-type"], "text/plain");
    assert_eq!(r.headers["x-extra"], "1");
    assert_eq!(&out[r.body_start..], b"body");

    let r =
        parse_response(b"Status: 404 Not Found\r\nContent-Type: text/html\r\n\r\n<h1>").unwrap();
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = parse_response(b"Location: /elsewhere\n\n").unwrap();
    assert_eq!(r.status, StatusCode::FOUND);
    let r = parse_response(b"Location: /x\nStatus: 301\n\n").unwrap();
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    let r = parse_response(b"Content-Length: 999\nTransfer-Encoding: chunked\n\nok").unwrap();
    assert!(r.headers.is_empty(), "framing headers are the server's");
}

#[test]
fn malformed_header_blocks_are_named() {
    let cases: [(&[u8], &str); 5] = [
        (b"", "wrote nothing"),
        (b"Content-Type: text/plain\nno blank line", "no blank line"),
        (b"this is not a header\n\nbody", "has no `:`"),
        (b"Status: abc\n\n", "invalid Status"),
        (b"Bad Name: x\n\n", "invalid header name"),
    ];
    for (out, needle) in cases {
        let e = parse_response(out).unwrap_err();
        assert!(e.contains(needle), "{e}");
    }
}
