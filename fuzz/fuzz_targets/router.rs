//! The router on arbitrary route sets and paths: building it either
//! succeeds or names two conflicting routes; routing never panics, and a
//! match is a route of the set whose parameters come from the path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wedge_manifest::{Route, Router};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Lines before a blank line are routes; the rest are paths to route.
    let (routes, paths) = text.split_once("\n\n").unwrap_or((text, "/"));
    let parsed: Vec<(Route, usize)> = routes
        .lines()
        .take(64)
        .filter_map(|l| Route::parse(l).ok())
        .enumerate()
        .map(|(i, r)| (r, i))
        .collect();
    let count = parsed.len();
    let Ok(router) = Router::new(parsed) else {
        return;
    };
    for path in paths.lines().take(64) {
        if let Some(found) = router.route(path) {
            assert!(found.target < count);
            for (_, value) in &found.found.params {
                assert!(path.contains(*value), "a parameter not taken from {path:?}");
            }
        }
    }
});
