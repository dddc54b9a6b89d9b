//! Versions of one function in traffic, and the rules that split requests
//! between them: weights, a header that picks a version by name, and sticky
//! assignment by a header or cookie so that one user stays on one version.

use std::path::PathBuf;

/// Versions of one function in traffic at most (the stable one included).
pub const MAX_VERSIONS: usize = 10;
/// The header that picks a version by name unless `version_header` says.
pub const DEFAULT_VERSION_HEADER: &str = "x-wedge-version";
/// Weights are kept in basis points: 10,000 is all of the traffic.
pub const ALL_TRAFFIC: u32 = 10_000;

/// How a function's requests are split between its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// Lower-case header name whose value names a version to use.
    pub header: String,
    pub sticky: Option<Sticky>,
    /// Versions beside the stable one, each with its share.
    pub canaries: Vec<Canary>,
}

impl Default for Traffic {
    fn default() -> Self {
        Traffic {
            header: DEFAULT_VERSION_HEADER.into(),
            sticky: None,
            canaries: Vec::new(),
        }
    }
}

impl Traffic {
    /// Each version's share in basis points, in the split's order: the
    /// canaries, then the stable version.
    pub fn weights(&self) -> impl Iterator<Item = u32> + '_ {
        self.canaries
            .iter()
            .map(|c| c.weight)
            .chain([self.stable_weight()])
    }

    /// The stable version's share, in basis points.
    pub fn stable_weight(&self) -> u32 {
        ALL_TRAFFIC.saturating_sub(self.canaries.iter().map(|c| c.weight).sum())
    }
}

/// What keeps a user on one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sticky {
    /// The value of this (lower-case) header.
    Header(String),
    /// The value of this cookie.
    Cookie(String),
}

impl Sticky {
    /// Parses `header:NAME` or `cookie:NAME`.
    pub fn parse(s: &str) -> Result<Sticky, String> {
        let bad = || {
            format!(
                "invalid sticky `{s}`: expected \"header:NAME\" (e.g. \"header:x-user-id\") or \
                 \"cookie:NAME\""
            )
        };
        let (kind, name) = s.split_once(':').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty() || name.len() > 64 || !name.bytes().all(is_token_byte) {
            return Err(bad());
        }
        match kind.trim() {
            "header" => Ok(Sticky::Header(name.to_ascii_lowercase())),
            "cookie" => Ok(Sticky::Cookie(name.to_string())),
            _ => Err(bad()),
        }
    }
}

/// A version beside the stable one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    pub version: String,
    pub source: PathBuf,
    /// Share of the traffic in basis points (1% = 100).
    pub weight: u32,
    /// Merged over the function's environment.
    pub env: Vec<(String, String)>,
}

/// Checks a version name: 1-64 of letters, digits, `.`, `_` and `-`.
pub fn check_version_name(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid version `{v}`: use 1-64 letters, digits, `.`, `_` and `-` (e.g. \"v1.2-beta\")"
        ))
    }
}

/// Checks a header name used to pick versions.
pub fn check_header_name(h: &str) -> Result<String, String> {
    if h.is_empty() || h.len() > 64 || !h.bytes().all(is_token_byte) {
        return Err(format!(
            "invalid version_header `{h}`: expected a header name such as \"x-wasm-version\""
        ));
    }
    Ok(h.to_ascii_lowercase())
}

/// A weight in percent (0 < w ≤ 100, at most two decimals) in basis points.
pub fn weight_from_percent(w: f64) -> Result<u32, String> {
    if !(w > 0.0 && w <= 100.0) {
        return Err(format!(
            "invalid weight {w}: a percentage of the traffic, more than 0 and at most 100"
        ));
    }
    let bp = (w * 100.0).round();
    if (bp - w * 100.0).abs() > 1e-6 {
        return Err(format!(
            "invalid weight {w}: at most two decimals (0.01% is the finest share)"
        ));
    }
    Ok(bp as u32)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_header_and_cookie() {
        assert_eq!(
            Sticky::parse("header:X-User-Id"),
            Ok(Sticky::Header("x-user-id".into()))
        );
        assert_eq!(
            Sticky::parse("cookie:sid"),
            Ok(Sticky::Cookie("sid".into()))
        );
        for bad in ["x-user", "query:x", "header:", "header:a b", "cookie:a;b"] {
            assert!(Sticky::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn weights_are_percentages_with_two_decimals() {
        assert_eq!(weight_from_percent(5.0), Ok(500));
        assert_eq!(weight_from_percent(0.25), Ok(25));
        assert_eq!(weight_from_percent(100.0), Ok(10_000));
        for bad in [0.0, -1.0, 100.5, 0.001, f64::NAN] {
            assert!(weight_from_percent(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_names() {
        assert!(check_version_name("v1.2-beta").is_ok());
        assert!(check_version_name("").is_err());
        assert!(check_version_name("v 1").is_err());
        assert!(check_version_name(&"a".repeat(65)).is_err());
    }
}
