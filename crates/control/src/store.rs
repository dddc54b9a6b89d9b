//! The state file and the module store.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `function \0 version` → [`VersionRecord`] as JSON.
const VERSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("versions");
/// `function` → [`TrafficRecord`] as JSON.
const TRAFFIC: TableDefinition<&str, &[u8]> = TableDefinition::new("traffic");
/// `function` → [`RolloutRecord`] as JSON.
const ROLLOUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("rollouts");

/// Decisions kept in a rollout's history.
pub const KEEP_DECISIONS: usize = 200;

/// Versions kept per function; older ones not in traffic are forgotten.
pub const KEEP_VERSIONS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("state store {path}: {message}")]
    Store { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

/// One deployed version: immutable once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: String,
    /// SHA-256 of the module, hex.
    pub sha256: String,
    /// Unix seconds.
    pub created: u64,
    /// Sequence number: later deploys have larger ones.
    pub seq: u64,
}

/// The traffic rules set through the API for one function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficRecord {
    /// The version that gets what the others leave.
    pub stable: String,
    /// Other versions in traffic and their shares in basis points (0: only
    /// reachable through the version header).
    pub canaries: Vec<(String, u32)>,
    /// The stable version before the last change of stable, for rollback.
    pub previous_stable: Option<String>,
    /// Unix seconds of the change, and why it was made.
    pub changed: u64,
    pub reason: String,
}

/// A progressive rollout of one version: its plan, where it stands, and
/// every decision taken with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub version: String,
    /// The canary's share at each step, in basis points; the last is 10,000.
    pub steps: Vec<u32>,
    /// The step in force.
    pub step: usize,
    pub interval_ms: u64,
    /// The canary fails a step above this share of 5xx answers.
    pub max_error_ratio: f64,
    /// ... or when its P99 is over this multiple of the stable version's.
    pub max_latency_ratio: f64,
    /// Fewer canary requests than this in an interval decide nothing.
    pub min_requests: u64,
    /// `rollback` (all traffic to stable) or `freeze` (keep the weights).
    pub on_failure: String,
    /// Prometheus to run `queries` against (its base URL).
    #[serde(default)]
    pub prometheus: Option<String>,
    /// PromQL checks run after the built-in ones at every interval.
    #[serde(default)]
    pub queries: Vec<Query>,
    /// `running`, `paused`, `frozen`, `done`, `rolled-back` or `aborted`.
    pub state: String,
    pub history: Vec<Decision>,
}

/// A PromQL check of a rollout: `{{function}}` and `{{version}}` in the
/// query become the function and the canary; the step fails when the
/// result (one number) is above `max` or below `min`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Query {
    pub name: String,
    pub query: String,
    #[serde(default)]
    pub max: Option<f64>,
    #[serde(default)]
    pub min: Option<f64>,
}

/// One decision of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Unix milliseconds.
    pub at: u64,
    pub step: usize,
    /// The canary's share when it was taken, in basis points.
    pub weight: u32,
    pub decision: String,
    pub reason: String,
}

/// What the store knows of one function.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionState {
    /// Oldest first.
    pub versions: Vec<VersionRecord>,
    pub traffic: Option<TrafficRecord>,
    pub rollout: Option<RolloutRecord>,
}

impl FunctionState {
    pub fn version(&self, name: &str) -> Option<&VersionRecord> {
        self.versions.iter().find(|v| v.version == name)
    }
}

/// The control plane's state in `DIR/state.redb`, modules in `DIR/modules/`.
pub struct Store {
    pub(crate) db: Database,
    dir: PathBuf,
}

fn key(function: &str, version: &str) -> String {
    format!("{function}\0{version}")
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        let fail = |message: String| Error::Store {
            path: dir.to_path_buf(),
            message,
        };
        std::fs::create_dir_all(dir.join("modules")).map_err(|e| fail(e.to_string()))?;
        let db = Database::create(dir.join("state.redb")).map_err(|e| {
            fail(format!(
                "{e} (is another wedge using this --state directory?)"
            ))
        })?;
        let store = Store {
            db,
            dir: dir.to_path_buf(),
        };
        // Create the tables, so that readers find them.
        store.write(|tx| {
            tx.open_table(VERSIONS)?;
            tx.open_table(TRAFFIC)?;
            tx.open_table(ROLLOUTS)?;
            Ok(())
        })?;
        Ok(store)
    }

    pub(crate) fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Store {
            path: self.dir.clone(),
            message: e.to_string(),
        }
    }

    pub(crate) fn write<T>(
        &self,
        f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, Error> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let out = f(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(out)
    }

    /// Where a module with this digest lives.
    pub fn module_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("modules").join(format!("{sha256}.wasm"))
    }

    /// Stores module bytes by digest (durably, before any version refers to
    /// them) and returns the digest.
    pub fn put_module(&self, bytes: &[u8]) -> Result<String, Error> {
        let sha: String = Sha256::digest(bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let path = self.module_path(&sha);
        if path.is_file() {
            return Ok(sha);
        }
        let dir = self.dir.join("modules");
        let tmp = dir.join(format!(".{sha}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            self.err(format!("writing module {sha}: {e}"))
        })?;
        Ok(sha)
    }

    /// Records a new version of `function` for a stored module. Deploying
    /// the same name with the same module again changes nothing; with
    /// another module it is refused (versions are immutable).
    pub fn add_version(
        &self,
        function: &str,
        version: &str,
        sha256: &str,
    ) -> Result<VersionRecord, Error> {
        if !self.module_path(sha256).is_file() {
            return Err(Error::Invalid(format!("no stored module {sha256}")));
        }
        let current = self.function(function)?;
        if let Some(v) = current.version(version) {
            return if v.sha256 == sha256 {
                Ok(v.clone())
            } else {
                Err(Error::Conflict(format!(
                    "function `{function}` already has a version `{version}` with another module \
                     ({}); versions are immutable: deploy under a new name",
                    v.sha256
                )))
            };
        }
        let record = VersionRecord {
            version: version.to_string(),
            sha256: sha256.to_string(),
            created: now(),
            seq: current
                .versions
                .iter()
                .map(|v| v.seq + 1)
                .max()
                .unwrap_or(1),
        };
        let in_traffic: Vec<String> = current
            .traffic
            .iter()
            .flat_map(|t| {
                std::iter::once(t.stable.clone())
                    .chain(t.canaries.iter().map(|c| c.0.clone()))
                    .chain(t.previous_stable.clone())
            })
            .chain(current.rollout.iter().map(|r| r.version.clone()))
            .collect();
        let mut old: Vec<&VersionRecord> = current
            .versions
            .iter()
            .filter(|v| !in_traffic.contains(&v.version))
            .collect();
        let excess = (current.versions.len() + 1).saturating_sub(KEEP_VERSIONS);
        old.truncate(excess);
        let json = serde_json::to_vec(&record).expect("serialisable");
        self.write(|tx| {
            let mut t = tx.open_table(VERSIONS)?;
            for v in &old {
                t.remove(key(function, &v.version).as_str())?;
            }
            t.insert(key(function, version).as_str(), json.as_slice())?;
            Ok(())
        })?;
        Ok(record)
    }

    /// Forgets a version (one that failed to load, for instance).
    pub fn remove_version(&self, function: &str, version: &str) -> Result<bool, Error> {
        self.write(|tx| {
            Ok(tx
                .open_table(VERSIONS)?
                .remove(key(function, version).as_str())?
                .is_some())
        })
    }

    /// Replaces the traffic rules of `function`.
    pub fn set_traffic(&self, function: &str, record: &TrafficRecord) -> Result<(), Error> {
        let json = serde_json::to_vec(record).expect("serialisable");
        self.write(|tx| {
            tx.open_table(TRAFFIC)?.insert(function, json.as_slice())?;
            Ok(())
        })
    }

    /// Replaces the rollout of `function` (its history trimmed to the last
    /// [`KEEP_DECISIONS`]).
    pub fn set_rollout(&self, function: &str, record: &RolloutRecord) -> Result<(), Error> {
        let mut record = record.clone();
        let excess = record.history.len().saturating_sub(KEEP_DECISIONS);
        record.history.drain(..excess);
        let json = serde_json::to_vec(&record).expect("serialisable");
        self.write(|tx| {
            tx.open_table(ROLLOUTS)?.insert(function, json.as_slice())?;
            Ok(())
        })
    }

    /// Forgets the traffic rules of `function`: the manifest's apply again.
    pub fn clear_traffic(&self, function: &str) -> Result<bool, Error> {
        self.write(|tx| Ok(tx.open_table(TRAFFIC)?.remove(function)?.is_some()))
    }

    /// What the store knows of `function`.
    pub fn function(&self, function: &str) -> Result<FunctionState, Error> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut state = FunctionState::default();
        // Its versions are the keys from `function\0` up to `function\x01`.
        let (from, to) = (format!("{function}\0"), format!("{function}\u{1}"));
        let versions = tx.open_table(VERSIONS).map_err(|e| self.err(e))?;
        for item in versions
            .range(from.as_str()..to.as_str())
            .map_err(|e| self.err(e))?
        {
            let (_, v) = item.map_err(|e| self.err(e))?;
            state
                .versions
                .push(serde_json::from_slice(v.value()).map_err(|e| self.err(e))?);
        }
        state.versions.sort_by_key(|v| v.seq);
        let traffic = tx.open_table(TRAFFIC).map_err(|e| self.err(e))?;
        if let Some(v) = traffic.get(function).map_err(|e| self.err(e))? {
            state.traffic = Some(serde_json::from_slice(v.value()).map_err(|e| self.err(e))?);
        }
        let rollouts = tx.open_table(ROLLOUTS).map_err(|e| self.err(e))?;
        if let Some(v) = rollouts.get(function).map_err(|e| self.err(e))? {
            state.rollout = Some(serde_json::from_slice(v.value()).map_err(|e| self.err(e))?);
        }
        Ok(state)
    }

    /// Everything, by function name.
    pub fn all(&self) -> Result<BTreeMap<String, FunctionState>, Error> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let mut out: BTreeMap<String, FunctionState> = BTreeMap::new();
        let versions = tx.open_table(VERSIONS).map_err(|e| self.err(e))?;
        for item in versions.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let function = k.value().split('\0').next().unwrap_or_default().to_string();
            let record: VersionRecord =
                serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
            out.entry(function).or_default().versions.push(record);
        }
        let traffic = tx.open_table(TRAFFIC).map_err(|e| self.err(e))?;
        for item in traffic.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let record: TrafficRecord =
                serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
            out.entry(k.value().to_string()).or_default().traffic = Some(record);
        }
        let rollouts = tx.open_table(ROLLOUTS).map_err(|e| self.err(e))?;
        for item in rollouts.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            let record: RolloutRecord =
                serde_json::from_slice(v.value()).map_err(|e| self.err(e))?;
            out.entry(k.value().to_string()).or_default().rollout = Some(record);
        }
        for state in out.values_mut() {
            state.versions.sort_by_key(|v| v.seq);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_traffic_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            let a = s.put_module(b"\0asm-a").unwrap();
            let b = s.put_module(b"\0asm-b").unwrap();
            assert_eq!(std::fs::read(s.module_path(&a)).unwrap(), b"\0asm-a");
            s.add_version("api", "v1", &a).unwrap();
            s.add_version("api", "v2", &b).unwrap();
            // The same again is a no-op; another module under a used name is refused.
            s.add_version("api", "v1", &a).unwrap();
            assert!(matches!(
                s.add_version("api", "v1", &b),
                Err(Error::Conflict(_))
            ));
            s.set_traffic(
                "api",
                &TrafficRecord {
                    stable: "v1".into(),
                    canaries: vec![("v2".into(), 1000)],
                    previous_stable: None,
                    changed: 1,
                    reason: "test".into(),
                },
            )
            .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let api = s.function("api").unwrap();
        let names: Vec<&str> = api.versions.iter().map(|v| v.version.as_str()).collect();
        assert_eq!(names, ["v1", "v2"]);
        assert_eq!(
            api.traffic.unwrap().canaries,
            vec![("v2".to_string(), 1000)]
        );
        assert!(s.clear_traffic("api").unwrap());
        assert_eq!(s.function("api").unwrap().traffic, None);
        assert_eq!(s.function("other").unwrap(), FunctionState::default());
    }

    #[test]
    fn only_the_last_hundred_versions_not_in_traffic_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let m = s.put_module(b"\0asm").unwrap();
        s.add_version("f", "keep", &m).unwrap();
        s.set_traffic(
            "f",
            &TrafficRecord {
                stable: "keep".into(),
                canaries: vec![],
                previous_stable: None,
                changed: 0,
                reason: String::new(),
            },
        )
        .unwrap();
        for i in 0..120 {
            s.add_version("f", &format!("v{i}"), &m).unwrap();
        }
        let f = s.function("f").unwrap();
        assert_eq!(f.versions.len(), KEEP_VERSIONS);
        assert!(f.version("keep").is_some(), "the stable version was kept");
        assert!(f.version("v0").is_none() && f.version("v119").is_some());
    }
}
