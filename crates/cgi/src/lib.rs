//! wedge-cgi: the CGI/1.1 contract of WAGI — the environment and arguments a guest gets for a request, and the parsing of the header block it prints.
//!
//! Pure functions over `http` types, with no runtime underneath: the WAGI
//! executor calls them, and the fuzz targets (`fuzz/`) exercise them without
//! building Wasmtime.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use std::net::SocketAddr;

/// What the CGI environment is built from.
pub struct CgiRequest<'a> {
    pub method: &'a str,
    pub uri: &'a Uri,
    pub version: &'a str,
    pub headers: &'a HeaderMap,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    pub route: &'a str,
    pub script_name: &'a str,
    pub path_info: &'a str,
    pub params: &'a [(String, &'a str)],
    pub body_len: usize,
    pub allow_authorization: bool,
    /// The request came over TLS: `HTTPS=on`, an `https` full URL.
    pub tls: bool,
}

/// Decodes `%XX` escapes (CGI's PATH_INFO is not URL-encoded).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The CGI meta-variables for a request (RFC 3875 §4.1, plus WAGI's `X_*`).
pub fn environment(r: &CgiRequest<'_>) -> Vec<(String, String)> {
    let host_header = r
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        // HTTP/2 carries the host as the URI's authority, not a header.
        .or_else(|| r.uri.authority().map(|a| a.as_str().to_string()))
        .unwrap_or_else(|| r.local.to_string());
    let server_name = host_without_port(&host_header).to_string();
    let query = r.uri.query().unwrap_or("");
    let header = |name: &HeaderName| {
        r.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let full_url = format!(
        "{}://{host_header}{}",
        if r.tls { "https" } else { "http" },
        r.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
    );
    let mut env = vec![
        ("AUTH_TYPE".to_string(), String::new()),
        ("CONTENT_LENGTH".into(), r.body_len.to_string()),
        ("CONTENT_TYPE".into(), header(&http::header::CONTENT_TYPE)),
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("PATH_INFO".into(), percent_decode(r.path_info)),
        ("PATH_TRANSLATED".into(), percent_decode(r.path_info)),
        ("QUERY_STRING".into(), query.to_string()),
        ("REMOTE_ADDR".into(), r.remote.ip().to_string()),
        ("REMOTE_HOST".into(), r.remote.ip().to_string()),
        ("REMOTE_USER".into(), String::new()),
        ("REQUEST_METHOD".into(), r.method.to_string()),
        ("SCRIPT_NAME".into(), r.script_name.to_string()),
        ("SERVER_NAME".into(), server_name),
        ("SERVER_PORT".into(), r.local.port().to_string()),
        ("SERVER_PROTOCOL".into(), r.version.to_string()),
        (
            "SERVER_SOFTWARE".into(),
            concat!("wedge/", env!("CARGO_PKG_VERSION")).into(),
        ),
        ("X_MATCHED_ROUTE".into(), r.route.to_string()),
        ("X_FULL_URL".into(), full_url),
        ("X_RAW_PATH_INFO".into(), r.path_info.to_string()),
    ];
    if r.tls {
        // Not in RFC 3875, but what servers set and CGI libraries read
        // (Go's net/http/cgi, PHP, Perl's CGI.pm).
        env.push(("HTTPS".into(), "on".into()));
    }
    for (name, value) in r.params {
        env.push((
            format!("X_PARAM_{}", name.to_ascii_uppercase()),
            percent_decode(value),
        ));
    }
    for name in r.headers.keys() {
        if !passed_to_guest(name, r.allow_authorization) {
            continue;
        }
        let values: Vec<&str> = r
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let var = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        env.push((var, values.join(", ")));
    }
    env
}

/// Whether a request header becomes an `HTTP_*` variable (RFC 3875 §4.1.18).
///
/// - `Content-Type` and `Content-Length` are already `CONTENT_TYPE` and
///   `CONTENT_LENGTH`.
/// - Credentials are not passed: `Proxy-Authorization` never, `Authorization`
///   only when the function opts in (`allow_authorization`).
/// - `Proxy` is never passed: as `HTTP_PROXY` it would set the guest's
///   outbound proxy (httpoxy, CVE-2016-5385).
/// - A name with `_` is dropped, as Apache and nginx do: `X_Foo` and `X-Foo`
///   would both become `HTTP_X_FOO`, and a client could then shadow a header
///   that a proxy in front of wedge set. Without `_`, every variable comes from
///   exactly one header name, whose repeated fields are joined with `, `.
pub fn passed_to_guest(name: &HeaderName, allow_authorization: bool) -> bool {
    use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, PROXY_AUTHORIZATION};
    if name == CONTENT_TYPE || name == CONTENT_LENGTH || name == PROXY_AUTHORIZATION {
        return false;
    }
    if name == AUTHORIZATION {
        return allow_authorization;
    }
    name.as_str() != "proxy" && !name.as_str().contains('_')
}

/// WAGI's argv: the path, then (for an ISINDEX-style query without `=`)
/// the query's `+`-separated words, decoded.
pub fn arguments(uri: &Uri) -> Vec<String> {
    let mut args = vec![uri.path().to_string()];
    if let Some(q) = uri.query().filter(|q| !q.is_empty() && !q.contains('=')) {
        args.extend(q.split('+').map(percent_decode));
    }
    args
}

/// A guest's CGI response.
#[derive(Debug)]
pub struct CgiResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// Offset where the body starts in the guest's output.
    pub body_start: usize,
}

/// Headers a guest may not set: the server frames the response itself.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "content-length",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
    "trailer",
];

/// Where the header block at the start of `out` ends and the body begins,
/// once the blank line after it has been written (`\n\n` or `\r\n\r\n`).
pub fn header_block(out: &[u8]) -> Option<(usize, usize)> {
    match (find(out, b"\r\n\r\n"), find(out, b"\n\n")) {
        (Some(a), Some(b)) if b < a => Some((b, b + 2)),
        (Some(a), _) => Some((a, a + 4)),
        (None, Some(b)) => Some((b, b + 2)),
        (None, None) => None,
    }
}

/// Parses the header block at the start of `out`. `Err` says what is wrong
/// with it, for the 502.
pub fn parse_response(out: &[u8]) -> Result<CgiResponse, String> {
    let (head_end, body_start) = match header_block(out) {
        Some(block) => block,
        None if out.is_empty() => return Err("the guest wrote nothing to stdout".into()),
        None => {
            return Err("no blank line ends the CGI header block (print headers, an empty line, then the body)".into());
        }
    };
    let head = std::str::from_utf8(&out[..head_end])
        .map_err(|_| "the CGI header block is not UTF-8".to_string())?;
    let mut headers = HeaderMap::new();
    let mut status = None;
    for (n, line) in head.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "header line {} `{}` has no `:`",
                n + 1,
                truncate(line)
            ));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            let parsed = code
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .filter(|c| (200..600).contains(&c.as_u16()));
            status = Some(parsed.ok_or_else(|| format!("invalid Status `{}`", truncate(value)))?);
            continue;
        }
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("invalid header name `{}` on line {}", truncate(name), n + 1))?;
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("invalid value for header `{name}` on line {}", n + 1))?;
        headers.append(name, value);
    }
    let status = match status {
        Some(s) => s,
        None if headers.contains_key(http::header::LOCATION) => StatusCode::FOUND,
        None => StatusCode::OK,
    };
    Ok(CgiResponse {
        status,
        headers,
        body_start,
    })
}

/// `example.com:8080` → `example.com`; `[::1]:80` → `[::1]`.
fn host_without_port(host: &str) -> &str {
    if let Some(end) = host.find(']') {
        return &host[..=end];
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn truncate(s: &str) -> String {
    if s.len() > 60 {
        format!("{}…", &s[..s.floor_char_boundary(60)])
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests;
