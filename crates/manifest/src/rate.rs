//! Rate limits: token buckets per function (`[[function.rate_limit]]`),
//! optionally one per client key, and one for the whole node
//! (`[server] rate_limit`).

use serde::Deserialize;
use std::time::Duration;
use toml::Spanned;

/// Client keys a keyed limit holds state for unless `max_keys` says.
pub const DEFAULT_MAX_KEYS: u32 = 100_000;
/// The most `max_keys` may be: about 5 MB of limiter state.
pub const MAX_KEYS_LIMIT: u32 = 1_000_000;

/// One token bucket: `count` requests per `period` on average, `burst` at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub period: Duration,
    pub burst: u32,
    /// What separates clients; [`RateKey::Function`]: one bucket for all.
    pub key: RateKey,
    /// Client keys held at most; beyond, new keys share overflow buckets.
    pub max_keys: u32,
}

/// What a keyed limit tells clients apart by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateKey {
    /// No key: one bucket for every request.
    Function,
    /// The client's IP address.
    Client,
    /// The value of this (lower-case) request header, e.g. an API key.
    Header(String),
    /// The value of this route parameter (`/users/:id` → `param:id`).
    Param(String),
}

impl RateKey {
    /// Parses `client`, `header:NAME` or `param:NAME`.
    pub fn parse(s: &str) -> Result<RateKey, String> {
        let bad = || {
            format!(
                "invalid rate-limit key `{s}`: expected \"client\" (the client's address), \
                 \"header:NAME\" (e.g. \"header:x-api-key\") or \"param:NAME\" (a route parameter)"
            )
        };
        if s.trim() == "client" {
            return Ok(RateKey::Client);
        }
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad());
        }
        match kind.trim() {
            "header" => Ok(RateKey::Header(name.to_ascii_lowercase())),
            "param" => Ok(RateKey::Param(name.to_string())),
            _ => Err(bad()),
        }
    }

    /// The policy's name in metrics and `RateLimit-Policy`.
    pub fn policy(&self) -> &'static str {
        match self {
            RateKey::Function => "function",
            _ => "key",
        }
    }
}

/// A rate limit as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    /// `N/s`, `N/min` or `N/h`.
    pub rate: Spanned<String>,
    pub burst: Option<u32>,
    pub key: Option<Spanned<String>>,
    pub max_keys: Option<u32>,
}

/// Parses `100/s`, `600/min`, `5000/h` into a count and its period.
pub fn parse_rate(s: &str) -> Result<(u32, Duration), String> {
    let bad = || {
        format!(
            "invalid rate `{s}`: expected requests per period, e.g. \"100/s\", \"600/min\" or \"5000/h\""
        )
    };
    let (n, unit) = s.split_once('/').ok_or_else(bad)?;
    let n: u32 = n.trim().replace('_', "").parse().map_err(|_| bad())?;
    if n == 0 {
        return Err(format!("invalid rate `{s}`: the count must be at least 1"));
    }
    let period = match unit.trim() {
        "s" | "sec" | "second" => Duration::from_secs(1),
        "m" | "min" | "minute" => Duration::from_secs(60),
        "h" | "hour" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if n > 10_000_000 {
        return Err(format!(
            "invalid rate `{s}`: at most 10000000 requests per period"
        ));
    }
    Ok((n, period))
}

/// Resolves a written limit; `keyed` tells whether a `key` is allowed here
/// (not for the node-wide limit). The error names the offending part.
pub fn resolve(raw: &RawRate, keyed: bool) -> Result<RateLimit, (std::ops::Range<usize>, String)> {
    let (count, period) = parse_rate(raw.rate.get_ref()).map_err(|e| (raw.rate.span(), e))?;
    let key = match &raw.key {
        None => RateKey::Function,
        Some(k) if !keyed => {
            return Err((
                k.span(),
                "the node-wide rate limit has no key: it counts every request".into(),
            ));
        }
        Some(k) => RateKey::parse(k.get_ref()).map_err(|e| (k.span(), e))?,
    };
    let burst = raw.burst.unwrap_or(count);
    if burst == 0 {
        return Err((
            raw.rate.span(),
            "burst must be at least 1 (the requests let through at once)".into(),
        ));
    }
    let max_keys = raw.max_keys.unwrap_or(DEFAULT_MAX_KEYS);
    if !(1..=MAX_KEYS_LIMIT).contains(&max_keys) {
        return Err((
            raw.rate.span(),
            format!("max_keys must be from 1 to {MAX_KEYS_LIMIT}"),
        ));
    }
    Ok(RateLimit {
        count,
        period,
        burst,
        key,
        max_keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_keys_parse() {
        assert_eq!(parse_rate("100/s"), Ok((100, Duration::from_secs(1))));
        assert_eq!(parse_rate("6_000/min"), Ok((6000, Duration::from_secs(60))));
        assert_eq!(parse_rate("5/h"), Ok((5, Duration::from_secs(3600))));
        for bad in ["100", "0/s", "x/s", "10/day", "-1/s"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(RateKey::parse("client"), Ok(RateKey::Client));
        assert_eq!(
            RateKey::parse("header:X-Api-Key"),
            Ok(RateKey::Header("x-api-key".into()))
        );
        assert_eq!(RateKey::parse("param:id"), Ok(RateKey::Param("id".into())));
        for bad in ["ip", "header:", "cookie:a", "header:a b"] {
            assert!(RateKey::parse(bad).is_err(), "{bad}");
        }
    }
}
