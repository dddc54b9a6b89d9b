//! The control plane under load: module changes picked up by `--watch`,
//! deploys through the admin API, the time from a deploy to the first
//! response on the new version, and what reloads cost a steady server's
//! throughput. Writes `OUT/control-DATE.md`; fails on any failed request.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http::{Request, once};
use crate::load::{self, Shape};
use crate::server::{Launch, Server, free_port};
use crate::stats::Samples;

const TOKEN: &str = "bench-admin-token-0123456789";

/// The module with a custom section naming `n`, so that each variant has
/// its own digest (and is compiled once, then found in the AOT cache).
fn variant(base: &[u8], n: u32) -> Vec<u8> {
    let mut m = base.to_vec();
    let name = b"wedge-bench";
    let payload = n.to_le_bytes();
    m.push(0);
    m.push((1 + name.len() + payload.len()) as u8);
    m.push(name.len() as u8);
    m.extend_from_slice(name);
    m.extend_from_slice(&payload);
    m
}

/// A module's version name when it has none (see `short_digest`).
fn sha12(bytes: &[u8]) -> String {
    use sha2::Digest;
    wedge_executor::function::short_digest(&sha2::Sha256::digest(bytes).into())
}

struct Admin {
    addr: SocketAddr,
}

impl Admin {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, serde_json::Value)> {
        let auth = format!("Bearer {TOKEN}");
        let req = Request::new(method, path, &[("authorization", &auth)], body);
        let r = once(self.addr, &req).await.context("admin request")?;
        Ok((
            r.status,
            serde_json::from_slice(&r.body).unwrap_or_default(),
        ))
    }

    async fn stable(&self) -> Result<String> {
        let (_, v) = self.call("GET", "/v1/functions/hello", b"").await?;
        Ok(v["stable"].as_str().unwrap_or_default().to_string())
    }
}

/// Load in the background for `seconds` after a short warm-up.
fn spawn_load(
    addr: SocketAddr,
    req: &Request,
    seconds: u64,
) -> tokio::task::JoinHandle<load::Outcome> {
    let req = req.clone();
    tokio::spawn(async move { load::run(addr, &req, 200, shape(seconds)).await })
}

fn shape(seconds: u64) -> Shape {
    Shape {
        connections: 64,
        warmup: Duration::from_millis(500),
        measure: Duration::from_secs(seconds),
        rate: None,
    }
}

/// Runs every part and writes the report.
pub fn run(
    rt: &tokio::runtime::Runtime,
    wedge: &Path,
    changes: u32,
    out: &Path,
    date: &str,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let base = std::fs::read("examples/c-http/demo.component.wasm")
        .context("run from the repository root")?;
    let module = dir.path().join("hello.wasm");
    std::fs::write(&module, variant(&base, 0))?;
    let manifest = dir.path().join("wedge.toml");
    std::fs::write(
        &manifest,
        "[[function]]\nname = \"hello\"\nsource = \"hello.wasm\"\nroutes = [\"/...\"]\n",
    )?;
    let admin_port = free_port()?;
    let launch = Launch {
        program: wedge.to_path_buf(),
        args: [
            "serve",
            "-f",
            &manifest.to_string_lossy(),
            "--watch",
            "--state",
            &dir.path().join("state").to_string_lossy(),
            "--listen",
            "127.0.0.1:{port}",
            "--admin-listen",
            &format!("127.0.0.1:{admin_port}"),
            "--log-level",
            "warn",
        ]
        .map(String::from)
        .to_vec(),
        env: vec![
            ("WEDGE_ADMIN_TOKEN".into(), TOKEN.into()),
            (
                "WEDGE_CACHE_DIR".into(),
                dir.path().join("cache").to_string_lossy().into(),
            ),
        ],
        dir: None,
    };
    let log = std::env::temp_dir().join(format!("wedge-control-{}.log", std::process::id()));
    let server = Server::start(rt, &launch, "/hello", &log)?;
    let admin = Admin {
        addr: SocketAddr::from(([127, 0, 0, 1], admin_port)),
    };
    let hello = Request::new("GET", "/hello", &[], b"");
    let mut report = format!(
        "# Control plane under load ({date})\n\n{} cores; wedge at {}; C wasi:http hello \
         ({} bytes); the load is 64 keep-alive connections, closed loop.\n\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        wedge.display(),
        base.len()
    );

    // 1. --watch: module rewrites under load, alternating two variants.
    let interval = Duration::from_millis(200);
    let (outcome, settle) = rt.block_on(async {
        let load = spawn_load(server.addr, &hello, u64::from(changes) / 5 + 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut last = String::new();
        for n in 1..=changes {
            let bytes = variant(&base, n % 2 + 1);
            last = sha12(&bytes);
            std::fs::write(&module, bytes)?;
            tokio::time::sleep(interval).await;
        }
        let written = Instant::now() - interval;
        while admin.stable().await? != last {
            if written.elapsed() > Duration::from_secs(10) {
                bail!("the last module change was not serving after 10 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let settle = written.elapsed();
        Ok::<_, anyhow::Error>((load.await?, settle))
    })?;
    writeln!(
        report,
        "## `--watch`: {changes} module rewrites at {interval:?} under load\n\n\
         {} requests answered at {:.0} req/s, **{} failed**; the last change served \
         {:.0} ms after it was written.\n",
        outcome.ok,
        outcome.rate(),
        outcome.errors,
        settle.as_secs_f64() * 1000.0
    )?;
    if outcome.errors > 0 {
        bail!("{} requests failed during --watch reloads", outcome.errors);
    }

    // 2. Deploy of a cached module to the first response on it.
    let bytes = variant(&base, 1);
    let mut deploy = Samples::default();
    rt.block_on(async {
        for i in 0..50 {
            let t = Instant::now();
            let (s, v) = admin
                .call(
                    "POST",
                    &format!("/v1/functions/hello/versions?version=d{i}&weight=100"),
                    &bytes,
                )
                .await?;
            if s != 201 {
                bail!("deploy answered {s}: {v}");
            }
            let r = once(server.addr, &hello).await?;
            if r.status != 200 {
                bail!("first request after a deploy answered {}", r.status);
            }
            deploy.push(t.elapsed().as_micros() as u32);
        }
        Ok(())
    })?;
    writeln!(
        report,
        "## Deploy to first response\n\nA deploy through the API of a module already in the \
         AOT cache, promoted at once (store, fsync, compile from cache, link, probe, swap), \
         then one request: median **{:.2} ms**, p95 {:.2} ms, max {:.2} ms over 50.\n",
        deploy.percentile_ms(50.0).unwrap_or(0.0),
        deploy.percentile_ms(95.0).unwrap_or(0.0),
        deploy.percentile_ms(100.0).unwrap_or(0.0),
    )?;

    // 3. What deploys every 200 ms cost a steady server: alternate windows.
    let mut pairs = Vec::new();
    let mut deploys_ok = 0u32;
    let mut failed = 0u64;
    for round in 0..4 {
        let steady = rt.block_on(load::run(server.addr, &hello, 200, shape(5)));
        let busy = rt.block_on(async {
            let load = spawn_load(server.addr, &hello, 5);
            let stop = Instant::now() + Duration::from_millis(5500);
            let mut n = 0;
            while Instant::now() < stop {
                let v = format!("r{round}-{n}");
                let (s, _) = admin
                    .call(
                        "POST",
                        &format!("/v1/functions/hello/versions?version={v}&weight=100"),
                        &variant(&base, n % 2 + 1),
                    )
                    .await?;
                deploys_ok += u32::from(s == 201);
                n += 1;
                tokio::time::sleep(interval).await;
            }
            Ok::<_, anyhow::Error>(load.await?)
        })?;
        failed += steady.errors + busy.errors;
        pairs.push((steady.rate(), busy.rate()));
    }
    let mut ratios: Vec<f64> = pairs.iter().map(|(a, b)| b / a).collect();
    ratios.sort_by(f64::total_cmp);
    let median = (ratios[1] + ratios[2]) / 2.0;
    writeln!(
        report,
        "## Throughput while deploying every {interval:?}\n\nFour pairs of 5 s windows, steady \
         then with deploys ({deploys_ok} deploys, {failed} failed requests):\n"
    )?;
    for (a, b) in &pairs {
        writeln!(
            report,
            "- steady {a:.0} req/s, deploying {b:.0} req/s ({:+.1}%)",
            (b / a - 1.0) * 100.0
        )?;
    }
    writeln!(
        report,
        "\nMedian ratio **{median:.3}** (cost {:.1}%).\n",
        (1.0 - median) * 100.0
    )?;
    if failed > 0 {
        bail!("{failed} requests failed while deploying");
    }

    // 4. Many deploys through the API under load.
    let (outcome, ok) = rt.block_on(async {
        let load = spawn_load(server.addr, &hello, u64::from(changes) / 5 + 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut ok = 0;
        for n in 0..changes {
            let (s, _) = admin
                .call(
                    "POST",
                    &format!("/v1/functions/hello/versions?version=m{n}&weight=100"),
                    &variant(&base, n % 2 + 1),
                )
                .await?;
            ok += u32::from(s == 201);
            tokio::time::sleep(interval).await;
        }
        Ok::<_, anyhow::Error>((load.await?, ok))
    })?;
    writeln!(
        report,
        "## {changes} deploys through the API at {interval:?} under load\n\n{ok} deploys \
         succeeded; {} requests answered at {:.0} req/s, **{} failed**.\n",
        outcome.ok,
        outcome.rate(),
        outcome.errors
    )?;
    drop(server);
    let path = out.join(format!("control-{date}.md"));
    std::fs::write(&path, &report)?;
    print!("{report}");
    eprintln!("wrote {}", path.display());
    if outcome.errors > 0 {
        bail!("{} requests failed during deploys", outcome.errors);
    }
    Ok(())
}
