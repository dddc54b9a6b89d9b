//! Picks the version of a function that serves a request: the one a header
//! names, else by weight, with a user kept on one version when a sticky
//! header or cookie is set.
//!
//! Weights are basis points laid out as ranges over 0..10,000, canaries
//! first and the stable version last. A request falls at a point in that
//! range, at random or, when sticky, at a hash of its key; so while the
//! weights stay put a key always lands on the same version, and when a
//! canary's share grows the users already on it stay on it.

use http::{HeaderMap, HeaderName};
use wedge_manifest::traffic::ALL_TRAFFIC;
use wedge_manifest::{Sticky, Traffic};

/// A function's split, built with its table.
#[derive(Debug)]
pub struct Split {
    header: HeaderName,
    sticky: Option<Sticky>,
    /// Exclusive upper end of each version's range, in version order.
    bounds: Vec<u32>,
    /// Mixes the function's name into sticky hashes, so one key does not
    /// land in the same place for every function.
    salt: u64,
}

impl Split {
    /// The split for versions ordered as `traffic.canaries` then the stable one.
    pub fn new(function: &str, traffic: &Traffic) -> Split {
        let mut bounds = Vec::with_capacity(traffic.canaries.len() + 1);
        let mut end = 0u32;
        for c in &traffic.canaries {
            end = (end + c.weight).min(ALL_TRAFFIC);
            bounds.push(end);
        }
        bounds.push(ALL_TRAFFIC);
        Split {
            header: HeaderName::from_bytes(traffic.header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-wedge-version")),
            sticky: traffic.sticky.clone(),
            bounds,
            salt: fnv1a(0xcbf2_9ce4_8422_2325, function.as_bytes()),
        }
    }

    /// The index of the version that serves a request with `headers`;
    /// `names` are the versions' names in the split's order.
    pub fn pick<S: AsRef<str>>(&self, headers: &HeaderMap, names: &[S]) -> usize {
        if names.len() <= 1 {
            return 0;
        }
        if let Some(asked) = headers.get(&self.header)
            && let Some(i) = names
                .iter()
                .position(|n| n.as_ref().as_bytes() == asked.as_bytes())
        {
            return i;
        }
        let point = match self.sticky_key(headers) {
            Some(key) => point_of(self.salt, key),
            None => fastrand::u32(..ALL_TRAFFIC),
        };
        self.version_at(point)
    }

    /// The version whose range holds `point` (0..10,000).
    pub fn version_at(&self, point: u32) -> usize {
        self.bounds
            .iter()
            .position(|&end| point < end)
            .unwrap_or(self.bounds.len() - 1)
    }

    fn sticky_key<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        match self.sticky.as_ref()? {
            Sticky::Header(name) => headers
                .get(name.as_str())
                .map(|v| v.as_bytes())
                .filter(|v| !v.is_empty()),
            Sticky::Cookie(name) => headers
                .get_all(http::header::COOKIE)
                .iter()
                .find_map(|v| cookie(v.as_bytes(), name.as_bytes())),
        }
    }
}

/// Where a sticky key falls in 0..10,000.
pub fn point_of(salt: u64, key: &[u8]) -> u32 {
    (mix(fnv1a(salt, key)) % u64::from(ALL_TRAFFIC)) as u32
}

/// The value of cookie `name` in one `Cookie` header, if present and not empty.
fn cookie<'h>(header: &'h [u8], name: &[u8]) -> Option<&'h [u8]> {
    header.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let eq = pair.iter().position(|&b| b == b'=')?;
        (pair[..eq].trim_ascii() == name)
            .then(|| pair[eq + 1..].trim_ascii())
            .filter(|v| !v.is_empty())
    })
}

/// FNV-1a: stable across processes and releases, so a user keeps their
/// version across restarts and on every node.
fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// SplitMix64's finaliser, so that similar keys spread evenly.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wedge_manifest::Canary;

    fn traffic(weights: &[u32], sticky: Option<Sticky>) -> Traffic {
        Traffic {
            header: "x-wasm-version".into(),
            sticky,
            canaries: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| Canary {
                    version: format!("c{i}"),
                    source: "c.wasm".into(),
                    weight: w,
                    env: Vec::new(),
                })
                .collect(),
        }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n - 1)
            .map(|i| format!("c{i}"))
            .chain(["stable".into()])
            .collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn ranges_follow_the_weights_canaries_first() {
        let s = Split::new("api", &traffic(&[500, 2500], None));
        assert_eq!(s.version_at(0), 0);
        assert_eq!(s.version_at(499), 0);
        assert_eq!(s.version_at(500), 1);
        assert_eq!(s.version_at(2999), 1);
        assert_eq!(s.version_at(3000), 2);
        assert_eq!(s.version_at(9999), 2);
        // All traffic on canaries: the stable range is empty.
        let s = Split::new("api", &traffic(&[10_000], None));
        assert!((0..10_000).all(|p| s.version_at(p) == 0));
    }

    #[test]
    fn the_header_picks_a_version_exactly_and_unknown_names_fall_through() {
        let s = Split::new("api", &traffic(&[1], None));
        let n = names(2);
        for _ in 0..1000 {
            assert_eq!(s.pick(&headers(&[("x-wasm-version", "c0")]), &n), 0);
            assert_eq!(s.pick(&headers(&[("x-wasm-version", "stable")]), &n), 1);
        }
        let unknown = (0..1000)
            .filter(|_| s.pick(&headers(&[("x-wasm-version", "v9")]), &n) == 1)
            .count();
        assert!(unknown > 950, "{unknown}");
    }

    #[test]
    fn random_split_lands_near_the_weights() {
        let s = Split::new("api", &traffic(&[1000], None));
        let n = names(2);
        let canary = (0..100_000)
            .filter(|_| s.pick(&HeaderMap::new(), &n) == 0)
            .count();
        // 10% of 100,000 with a standard deviation of about 95.
        assert!((9_500..10_500).contains(&canary), "{canary}");
    }

    /// Property: for many keys and many weight settings, a sticky key always
    /// gets the same version while the weights stay put; as a canary grows,
    /// no key on it moves off; the share of keys per version follows the
    /// weights.
    #[test]
    fn sticky_keys_stay_put_and_growing_canaries_keep_their_users() {
        let n = names(2);
        let keys: Vec<String> = (0..20_000).map(|i| format!("user-{i}")).collect();
        let mut previous: Option<Vec<usize>> = None;
        for w in [100u32, 500, 1000, 2500, 5000, 10_000] {
            let s = Split::new("api", &traffic(&[w], Some(Sticky::Header("x-user".into()))));
            let picks: Vec<usize> = keys
                .iter()
                .map(|k| s.pick(&headers(&[("x-user", k)]), &n))
                .collect();
            for (k, &p) in keys.iter().zip(&picks).step_by(97) {
                for _ in 0..5 {
                    assert_eq!(s.pick(&headers(&[("x-user", k)]), &n), p, "{k} moved");
                }
            }
            let on_canary = picks.iter().filter(|&&p| p == 0).count() as f64;
            let expected = keys.len() as f64 * f64::from(w) / 10_000.0;
            assert!(
                (on_canary - expected).abs() <= keys.len() as f64 * 0.015,
                "weight {w}: {on_canary} on canary, expected about {expected}"
            );
            if let Some(before) = &previous {
                for (b, a) in before.iter().zip(&picks) {
                    assert!(!(*b == 0 && *a != 0), "a canary user moved off as it grew");
                }
            }
            previous = Some(picks);
        }
    }

    #[test]
    fn sticky_cookie_is_found_among_others() {
        let s = Split::new("api", &traffic(&[5000], Some(Sticky::Cookie("sid".into()))));
        let n = names(2);
        let want = s.version_at(point_of(s.salt, b"abc"));
        for h in [
            headers(&[("cookie", "sid=abc")]),
            headers(&[("cookie", "a=1; sid=abc; b=2")]),
            headers(&[("cookie", "a=1"), ("cookie", " sid = abc ")]),
        ] {
            for _ in 0..50 {
                assert_eq!(s.pick(&h, &n), want, "{h:?}");
            }
        }
        assert_eq!(cookie(b"sidx=1; sid=", b"sid"), None);
        assert_eq!(cookie(b"xsid=1", b"sid"), None);
    }
}
