//! Helpers: a `wedge` command with a private cache, and paths to guests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A guest program under `guests/`.
pub fn guest(rel: &str) -> PathBuf {
    let p = root().join("guests").join(rel);
    assert!(p.exists(), "missing guest {}", p.display());
    p
}

/// A file under `examples/`.
pub fn example(rel: &str) -> PathBuf {
    let p = root().join("examples").join(rel);
    assert!(p.exists(), "missing example {}", p.display());
    p
}

/// A port free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The value of a `/metrics` series of the admin listener (labels
/// included), 0 when absent.
pub fn metric(srv: &crate::client::Server, series: &str) -> f64 {
    crate::client::get(srv.admin, "/metrics")
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// A WAT guest compiled to a binary `.wasm` in `dir`.
pub fn wat_guest(dir: &Path, name: &str) -> PathBuf {
    let wasm = wat::parse_file(guest(&format!("wat/{name}.wat"))).expect("valid wat");
    let out = dir.join(format!("{name}.wasm"));
    std::fs::write(&out, wasm).unwrap();
    out
}

/// A sandbox: its own cache directory and scratch space.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `toml` as this sandbox's `wedge.toml`; returns its path.
    pub fn manifest(&self, toml: &str) -> String {
        let path = self.path().join("wedge.toml");
        std::fs::write(&path, toml).unwrap();
        s(&path).to_string()
    }

    /// `wedge` with this sandbox's cache and an empty environment.
    pub fn wedge(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_wedge"));
        c.env_clear()
            .env("WEDGE_CACHE_DIR", self.cache_dir())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default());
        c
    }

    /// Runs `wedge ARGS...`.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.wedge().args(args).output().expect("spawn wedge"))
    }
}

/// What a wedge process did.
pub struct Run {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            status: o.status.code().expect("wedge was killed by a signal"),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Run {
    /// Asserts the exit status, showing the output when it differs.
    #[track_caller]
    pub fn expect(&self, status: i32) -> &Self {
        assert_eq!(
            self.status, status,
            "unexpected exit status\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "wedge panicked:\n{}",
            self.stderr
        );
        self
    }

    /// Parses a `--stats-json -` document from the end of stdout.
    pub fn stats(&self) -> serde_json::Value {
        let start = self.stdout.rfind("\n{").map(|i| i + 1).unwrap_or(0);
        serde_json::from_str(&self.stdout[start..])
            .unwrap_or_else(|e| panic!("stats json: {e}\nstdout:\n{}", self.stdout))
    }
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

impl Run {
    /// Asserts only that wedge itself did not fail or panic.
    #[track_caller]
    pub fn expect_any(&self) -> &Self {
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        assert!(!self.stderr.contains("wedge: error"), "{}", self.stderr);
        self
    }
}
