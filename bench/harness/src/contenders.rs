//! The contenders: how each is launched and which workloads it serves.

use std::path::{Path, PathBuf};

use crate::server::Launch;
use crate::workloads::Workload::{self, Hello, Image, Json, Jwt};

#[derive(Debug, Clone)]
pub struct Contender {
    /// Short name used in tables, files and `--only`.
    pub name: &'static str,
    /// What it is, for the report.
    pub what: &'static str,
    pub workloads: Vec<Workload>,
    pub launch: Launch,
    /// The path that holds a request open for `ms` milliseconds, if any.
    pub slow: Option<fn(u64) -> String>,
}

/// Where the built things are, relative to the repository root.
pub struct Paths {
    pub root: PathBuf,
    pub wedge: PathBuf,
    pub wasmtime: PathBuf,
}

impl Paths {
    pub fn at(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

fn contract_slow(ms: u64) -> String {
    format!("/slow?ms={ms}")
}

/// guests/c/wagi/slow.c takes `NAME&MS`.
fn c_slow(ms: u64) -> String {
    format!("/slow?held&{ms}")
}

fn wedge_serve(p: &Paths, manifest: &str, cache: &Path) -> Launch {
    Launch {
        program: p.wedge.clone(),
        args: vec![
            "serve".into(),
            "-f".into(),
            p.at(manifest).display().to_string(),
            "--listen".into(),
            "127.0.0.1:{port}".into(),
            "--admin-listen".into(),
            "127.0.0.1:0".into(),
        ],
        env: vec![("WEDGE_CACHE_DIR".into(), cache.display().to_string())],
        dir: None,
    }
}

/// Every contender, wedge's first. `cache` is wedge's AOT cache directory.
pub fn all(p: &Paths, cache: &Path) -> Vec<Contender> {
    let component = p
        .at("bench/contenders/c-http/bench.component.wasm")
        .display()
        .to_string();
    vec![
        Contender {
            name: "wedge-go",
            what: "wedge, Go 1.27 wasip1 WAGI module, fresh instance per request",
            workloads: vec![Hello, Json, Jwt, Image],
            launch: wedge_serve(p, "bench/wedge/go.toml", cache),
            slow: Some(contract_slow),
        },
        Contender {
            name: "wedge-go-sdk",
            what: "wedge, the same Go work as net/http handlers with wedge's Go SDK, a fresh \
                   instance of a pre-initialised snapshot per request",
            workloads: vec![Hello, Json, Jwt, Image],
            launch: wedge_serve(p, "bench/wedge/go-sdk.toml", cache),
            slow: Some(contract_slow),
        },
        Contender {
            name: "wedge-c",
            what: "wedge, C wasi:http 0.2 component, fresh instance per request",
            workloads: vec![Hello, Jwt],
            launch: wedge_serve(p, "bench/wedge/c.toml", cache),
            slow: Some(c_slow),
        },
        Contender {
            name: "wasmtime",
            what: "wasmtime serve 48.0.8, the same C component",
            workloads: vec![Hello, Jwt],
            launch: Launch {
                program: p.wasmtime.clone(),
                args: vec![
                    "serve".into(),
                    "--addr".into(),
                    "127.0.0.1:{port}".into(),
                    component,
                ],
                env: vec![],
                dir: None,
            },
            slow: None,
        },
        Contender {
            name: "native",
            what: "native Rust: hyper 1.12 on tokio, a worker thread per core",
            workloads: vec![Hello, Json, Jwt, Image],
            launch: Launch {
                program: p.at("bench/contenders/native/target/release/native-bench"),
                args: vec![],
                env: vec![("PORT".into(), "{port}".into())],
                dir: None,
            },
            slow: Some(contract_slow),
        },
        Contender {
            name: "node",
            what: "Node.js 20 node:http, one process",
            workloads: vec![Hello, Json, Jwt, Image],
            launch: Launch {
                program: "node".into(),
                args: vec!["server.js".into()],
                env: vec![("PORT".into(), "{port}".into())],
                dir: Some(p.at("bench/contenders/node")),
            },
            slow: Some(contract_slow),
        },
        Contender {
            name: "python",
            what: "Python 3.11 plain ASGI on uvicorn (uvloop, httptools), one worker",
            workloads: vec![Hello, Json, Jwt, Image],
            launch: Launch {
                program: "python3".into(),
                args: [
                    "-m",
                    "uvicorn",
                    "app:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "{port}",
                    "--workers",
                    "1",
                ]
                .into_iter()
                .chain(["--log-level", "warning", "--no-access-log"])
                .map(String::from)
                .collect(),
                env: vec![],
                dir: Some(p.at("bench/contenders/python")),
            },
            slow: Some(contract_slow),
        },
    ]
}
