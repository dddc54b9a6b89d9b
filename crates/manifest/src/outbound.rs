//! `allowed_outbound_hosts` rules: `scheme://host[:port]`, where the scheme
//! may be `*`, the host `*` or `*.domain`, and the port `*`.

/// One allow rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    Exact(String),
    Suffix(String),
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl OutboundRule {
    /// Parses a rule such as `https://api.example.com` or `http://127.0.0.1:*`.
    pub fn parse(text: &str) -> Result<OutboundRule, String> {
        let err = |why: &str| {
            format!(
                "invalid outbound host `{text}`: {why} (expected scheme://host[:port], e.g. \
                 \"https://api.example.com\", \"http://127.0.0.1:*\", \"*://*.example.com:8443\")"
            )
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| err("missing `://`"))?;
        let scheme = match scheme {
            "*" => None,
            "http" | "https" => Some(scheme.to_string()),
            _ => return Err(err("the scheme must be http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(err("a rule names a host, not a path"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, "*")) => (h, None),
            Some((h, p)) => (h, Some(p.parse::<u16>().map_err(|_| err("bad port"))?)),
            None => {
                let port = match &scheme {
                    Some(s) => default_port(s),
                    None => return Err(err("with scheme `*` give a port (or `:*`)")),
                };
                (rest, port)
            }
        };
        let host = match host {
            "" => return Err(err("empty host")),
            "*" => HostPattern::Any,
            h if h.starts_with("*.") => HostPattern::Suffix(h[1..].to_ascii_lowercase()),
            h if h.contains('*') => {
                return Err(err("`*` may only be the whole host or `*.domain`"));
            }
            h => HostPattern::Exact(h.to_ascii_lowercase()),
        };
        Ok(OutboundRule {
            scheme,
            host,
            port,
            text: text.to_string(),
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        let host = host.to_ascii_lowercase();
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Exact(h) => *h == host,
            HostPattern::Suffix(s) => host.ends_with(s.as_str()),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Whether any rule allows the request.
pub fn allowed(rules: &[OutboundRule], scheme: &str, host: &str, port: u16) -> bool {
    rules.iter().any(|r| r.allows(scheme, host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> OutboundRule {
        OutboundRule::parse(s).unwrap()
    }

    #[test]
    fn exact_host_default_port() {
        let r = rule("https://api.example.com");
        assert!(r.allows("https", "api.example.com", 443));
        assert!(r.allows("https", "API.example.com", 443));
        assert!(!r.allows("http", "api.example.com", 80));
        assert!(!r.allows("https", "api.example.com", 8443));
        assert!(!r.allows("https", "evil.com", 443));
    }

    #[test]
    fn wildcards() {
        let r = rule("http://127.0.0.1:*");
        assert!(r.allows("http", "127.0.0.1", 1234));
        assert!(!r.allows("http", "127.0.0.2", 1234));
        let r = rule("*://*.example.com:8080");
        assert!(r.allows("http", "a.example.com", 8080));
        assert!(r.allows("https", "b.a.example.com", 8080));
        assert!(!r.allows("https", "example.com", 8080));
        assert!(!r.allows("https", "a.example.com", 443));
    }

    #[test]
    fn rejects_malformed_rules() {
        for bad in [
            "api.example.com",
            "ftp://x",
            "https://x/path",
            "https://x:99999",
            "*://x",
            "https://a*b",
        ] {
            assert!(OutboundRule::parse(bad).is_err(), "{bad}");
        }
    }
}
