//! How the API's state and the manifest combine.
//!
//! The manifest owns each function's routes and settings. Once a
//! function's traffic has been set through the API, its versions and
//! weights come from the store, and the manifest's `source`, `version` and
//! canaries for it are set aside, not lost: each such function is reported
//! as a [`Drift`] (logged at every reload and listed by the API) until the
//! API hands it back (`DELETE /v1/functions/NAME/traffic`).

use crate::store::{Error, Store};
use wedge_manifest::{App, Canary};

/// A function whose manifest `source`, `version` or canaries are set aside
/// because its traffic is managed through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drift {
    pub function: String,
    /// What the manifest says, in a few words.
    pub manifest: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "function `{}`: its traffic is managed through the admin API; the manifest's {} is \
             set aside until `DELETE /v1/functions/{}/traffic` hands it back",
            self.function, self.manifest, self.function
        )
    }
}

/// Lays the store's versions and traffic over `app`. Functions the store
/// knows but the manifest does not are ignored (their state is kept).
pub fn apply(app: &mut App, store: &Store) -> Result<Vec<Drift>, Error> {
    let state = store.all()?;
    let mut drift = Vec::new();
    for f in &mut app.functions {
        let Some(s) = state.get(&f.name) else {
            continue;
        };
        let Some(t) = &s.traffic else { continue };
        let module = |v: &str| {
            s.version(v)
                .map(|r| store.module_path(&r.sha256))
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "function `{}`: traffic names version `{v}`, which the store does not have",
                        f.name
                    ))
                })
        };
        let stable = module(&t.stable)?;
        let canaries = t
            .canaries
            .iter()
            .map(|(v, w)| {
                Ok(Canary {
                    version: v.clone(),
                    source: module(v)?,
                    weight: *w,
                    env: f.env.clone(),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        drift.push(Drift {
            function: f.name.clone(),
            manifest: format!(
                "source {}{}{}",
                f.source.display(),
                f.version
                    .as_ref()
                    .map(|v| format!(" (version {v})"))
                    .unwrap_or_default(),
                if f.traffic.canaries.is_empty() {
                    String::new()
                } else {
                    format!(" and {} canaries", f.traffic.canaries.len())
                }
            ),
        });
        f.source = stable;
        f.version = Some(t.stable.clone());
        f.traffic.canaries = canaries;
    }
    Ok(drift)
}
