//! The manifest parser on arbitrary text: it must return an app or an error
//! naming a line, never panic, and an app it returns must be internally
//! consistent (every route resolves to one of its functions).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use wedge_manifest::{LimitOverrides, ManifestError};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match wedge_manifest::parse(Path::new("/nonexistent/wedge.toml"), text, &LimitOverrides::default()) {
        Ok(app) => {
            for (i, f) in app.functions.iter().enumerate() {
                for r in &f.routes {
                    let probe = r.template().replace("...", "x").replace(':', "");
                    if let Some(found) = app.router.route(&probe) {
                        assert!(found.target < app.functions.len(), "route {i} points nowhere");
                    }
                }
            }
        }
        Err(ManifestError::Invalid(located)) => {
            let shown = located.to_string();
            assert!(!shown.is_empty());
        }
        Err(_) => {}
    }
});
