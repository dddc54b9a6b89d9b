//! The measurements: rounds over the contenders, then wedge's own figures.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use tokio::runtime::Runtime;

use crate::contenders::{Contender, Paths};
use crate::http::{Request, once};
use crate::load::{self, Shape};
use crate::placement::Placement;
use crate::results::{ANY, Collector};
use crate::server::{Launch, RssWatch, Server};
use crate::workloads::{Inputs, Workload};

/// How long and how hard each measurement runs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub rounds: usize,
    pub connections: usize,
    pub warmup: Duration,
    /// Length of each throughput run.
    pub measure: Duration,
    /// Length of each latency run (one connection, and paced at half load).
    pub latency: Duration,
    /// Requests held open at once for the memory-per-request figure.
    pub inflight: usize,
    pub hold: Duration,
    /// Process launches per `wedge run` / `wasmtime run` timing.
    pub run_reps: usize,
}

pub struct Bench<'a> {
    pub rt: &'a Runtime,
    pub plan: &'a Plan,
    pub inputs: &'a Inputs,
    pub paths: &'a Paths,
    pub logs: PathBuf,
    pub out: Collector,
    /// Where latency runs execute; None shares every CPU.
    pub placement: Option<Placement>,
}

const MIB: f64 = 1024.0;

impl Bench<'_> {
    fn start(&self, c: &Contender, launch: &Launch, tag: &str) -> Result<Server> {
        let log = self.logs.join(format!("{}-{tag}.log", c.name));
        Server::start(self.rt, launch, "/hello", &log)
    }

    /// Starts every contender once and checks each answer against the contract.
    /// This also fills wedge's AOT cache, so the rounds measure warm starts.
    pub fn prepare(&mut self, contenders: &[Contender]) -> Result<()> {
        for c in contenders {
            let server = self
                .start(c, &c.launch, "check")
                .with_context(|| format!("starting {}", c.name))?;
            for &w in &c.workloads {
                let resp = self
                    .rt
                    .block_on(once(server.addr, &self.inputs.request(w)))?;
                self.inputs
                    .check(w, &resp)
                    .with_context(|| format!("{} answered {} wrongly", c.name, w.name()))?;
                for (req, status) in self.inputs.refusals(w) {
                    let resp = self.rt.block_on(once(server.addr, &req))?;
                    ensure!(
                        resp.status == status,
                        "{} answered a bad {} request with {} instead of {status}",
                        c.name,
                        w.name(),
                        resp.status
                    );
                }
            }
            if let Some(slow) = c.slow {
                let resp = self
                    .rt
                    .block_on(once(server.addr, &Request::new("GET", &slow(1), &[], b"")))?;
                ensure!(
                    resp.status == 200,
                    "{} answered {} to {}",
                    c.name,
                    resp.status,
                    slow(1)
                );
            }
            eprintln!("checked {:<9} {}", c.name, c.what);
        }
        Ok(())
    }

    /// One round: every contender in turn, starting from a different one each round.
    pub fn round(&mut self, round: usize, contenders: &[Contender]) {
        let n = contenders.len();
        for i in 0..n {
            let c = &contenders[(i + round) % n];
            eprintln!("round {round}: {}", c.name);
            if let Err(e) = self.contender(c) {
                self.out.note(format!("round {round}, {}: {e:#}", c.name));
            }
        }
    }

    fn contender(&mut self, c: &Contender) -> Result<()> {
        let server = self.start(c, &c.launch, "run")?;
        self.out
            .add(c.name, ANY, "start_ms", server.start.as_secs_f64() * 1000.0);
        // A few answers first, so idle memory includes what serving needs at all.
        let hello = Request::new("GET", "/hello", &[], b"");
        for _ in 0..10 {
            self.rt.block_on(once(server.addr, &hello))?;
        }
        self.out
            .add(c.name, ANY, "idle_rss_mib", server.rss_kib() as f64 / MIB);
        for &w in &c.workloads {
            self.throughput(c, &server, w);
        }
        drop(server);
        self.latency(c)?;
        // On a server of its own: before the workloads, the instances and
        // connections it holds open stayed in every workload's "under load"
        // memory; after them, it could reuse what they left resident.
        if let Some(slow) = c.slow {
            let server = self.start(c, &c.launch, "inflight")?;
            self.inflight(c, &server, slow)?;
        }
        Ok(())
    }

    /// Holds `plan.inflight` slow requests open and divides the memory growth.
    fn inflight(&mut self, c: &Contender, server: &Server, slow: fn(u64) -> String) -> Result<()> {
        let warm = Request::new("GET", &slow(1), &[], b"");
        self.rt.block_on(once(server.addr, &warm))?;
        let before = server.rss_kib();
        let before_private = crate::server::tree_private_kib(server.pid());
        let held = Request::new("GET", &slow(self.plan.hold.as_millis() as u64), &[], b"");
        let watch = RssWatch::start(server.pid());
        let watch_private = RssWatch::start_with(server.pid(), crate::server::tree_private_kib);
        let addr = server.addr;
        let statuses = self.rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..self.plan.inflight {
                let req = held.clone();
                tasks.spawn(async move { once(addr, &req).await.map(|r| r.status).unwrap_or(0) });
            }
            let mut statuses = Vec::new();
            while let Some(s) = tasks.join_next().await {
                statuses.push(s.unwrap_or(0));
            }
            statuses
        });
        let peak = watch.peak();
        let peak_private = watch_private.peak();
        let failed = statuses.iter().filter(|&&s| s != 200).count();
        ensure!(
            failed == 0,
            "{failed} of {} held requests failed",
            statuses.len()
        );
        let per = crate::stats::per_request_kib(before, peak, self.plan.inflight).unwrap_or(0.0);
        self.out.add(c.name, ANY, "inflight_kib", per);
        let per = crate::stats::per_request_kib(before_private, peak_private, self.plan.inflight)
            .unwrap_or(0.0);
        self.out.add(c.name, ANY, "inflight_private_kib", per);
        Ok(())
    }

    /// Saturated throughput, with the server sharing every CPU with the load generator.
    fn throughput(&mut self, c: &Contender, server: &Server, w: Workload) {
        let req = self.inputs.request(w);
        let p = self.plan;
        let (name, wl) = (c.name, w.name());
        let saturate = Shape {
            connections: w.connections(p.connections),
            warmup: p.warmup,
            measure: p.measure,
            rate: None,
        };
        let watch = RssWatch::start(server.pid());
        let pss = RssWatch::start_with(server.pid(), crate::server::tree_pss_kib);
        let mut full = self
            .rt
            .block_on(load::run(server.addr, &req, 200, saturate));
        self.out
            .add(name, wl, "rss_load_mib", watch.peak() as f64 / MIB);
        self.out
            .add(name, wl, "pss_load_mib", pss.peak() as f64 / MIB);
        let rps = full.rate();
        self.out.add(name, wl, "rps", rps);
        if let Some(l) = full.samples.latency() {
            self.out.add(name, wl, "p99_saturated_ms", l.p99_ms);
        }
        if full.errors > 0 {
            self.out.note(format!(
                "{name} {wl}: {} requests failed or got a wrong status",
                full.errors
            ));
        }
        eprintln!("  {wl:<6} {rps:>9.0} req/s");
    }

    /// The latency runs, on a server of their own: on one CPU with the load
    /// generator on the others where the machine has two or more (see
    /// `placement`), so that half load is half of what the server can do.
    fn latency(&mut self, c: &Contender) -> Result<()> {
        let (launch, _pinned) = match &self.placement {
            Some(p) => (p.server(&c.launch), Some(p.pin_load()?)),
            None => (c.launch.clone(), None),
        };
        let server = self.start(c, &launch, "latency")?;
        for &w in &c.workloads {
            self.latency_runs(c, &server, w);
        }
        Ok(())
    }

    fn latency_runs(&mut self, c: &Contender, server: &Server, w: Workload) {
        let req = self.inputs.request(w);
        let p = self.plan;
        let (name, wl) = (c.name, w.name());
        let short_warmup = p.warmup / 4;
        let capacity = Shape {
            connections: w.connections(p.connections),
            warmup: short_warmup,
            measure: p.latency,
            rate: None,
        };
        let full = self
            .rt
            .block_on(load::run(server.addr, &req, 200, capacity));
        let rps = full.rate();
        self.out.add(name, wl, "rps_latency_server", rps);
        let one = Shape {
            connections: 1,
            warmup: short_warmup,
            measure: p.latency,
            rate: None,
        };
        let mut single = self.rt.block_on(load::run(server.addr, &req, 200, one));
        if let Some(l) = single.samples.latency() {
            self.out.add(name, wl, "p50_1conn_ms", l.p50_ms);
            self.out.add(name, wl, "p99_1conn_ms", l.p99_ms);
            self.out.add(name, wl, "p999_1conn_ms", l.p999_ms);
        }
        let half = Shape {
            rate: Some(rps / 2.0),
            ..capacity
        };
        let mut paced = self.rt.block_on(load::run(server.addr, &req, 200, half));
        if let Some(l) = paced.samples.latency() {
            self.out.add(name, wl, "half_rps", paced.rate());
            self.out.add(name, wl, "p50_half_ms", l.p50_ms);
            self.out.add(name, wl, "p99_half_ms", l.p99_ms);
            self.out.add(name, wl, "p999_half_ms", l.p999_ms);
        }
        let errors = full.errors + single.errors + paced.errors;
        if errors > 0 {
            self.out.note(format!(
                "{name} {wl}, latency runs: {errors} requests failed or got a wrong status"
            ));
        }
        eprintln!(
            "  {wl:<6} {rps:>9.0} req/s on the latency server   p99 1conn {:?} ms   p99 half {:?} ms",
            single.samples.percentile_ms(99.0),
            paced.samples.percentile_ms(99.0)
        );
    }

    /// Deploy-to-first-answer with a cold and a warm AOT cache, `wedge run` against
    /// `wasmtime run`, and the cost of traces.
    pub fn wedge_figures(&mut self, round: usize, go: &Contender, c: &Contender) -> Result<()> {
        let cache = self.logs.join(format!("cache-round-{round}"));
        let _ = std::fs::remove_dir_all(&cache);
        let mut launch = go.launch.clone();
        set_env(&mut launch, "WEDGE_CACHE_DIR", &cache.display().to_string());
        let cold = self.start(go, &launch, "deploy-cold")?;
        self.out.add(
            "wedge",
            ANY,
            "deploy_cold_ms",
            cold.start.as_secs_f64() * 1000.0,
        );
        drop(cold);
        let warm = self.start(go, &launch, "deploy-warm")?;
        self.out.add(
            "wedge",
            ANY,
            "deploy_warm_ms",
            warm.start.as_secs_f64() * 1000.0,
        );
        drop(warm);
        let _ = std::fs::remove_dir_all(&cache);

        let (wedge_ms, wasmtime_ms) = self.run_once_times()?;
        self.out.add("wedge", ANY, "run_cached_ms", wedge_ms);
        self.out.add("wedge", ANY, "wasmtime_run_ms", wasmtime_ms);

        let (sink, exports) = self.rt.block_on(crate::sink::start())?;
        let mut traced = c.launch.clone();
        set_env(
            &mut traced,
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://{sink}"),
        );
        set_env(&mut traced, "OTEL_TRACES_SAMPLER", "always_on");
        let modes = [("obs_off_rps", &c.launch), ("obs_on_rps", &traced)];
        // Alternate which mode goes first.
        for i in 0..2 {
            let (metric, launch) = modes[(i + round) % 2];
            let server = self.start(c, launch, metric)?;
            let req = self.inputs.request(Workload::Hello);
            let shape = Shape {
                connections: self.plan.connections,
                warmup: self.plan.warmup,
                measure: self.plan.measure,
                rate: None,
            };
            let out = self.rt.block_on(load::run(server.addr, &req, 200, shape));
            self.out.add("wedge", ANY, metric, out.rate());
        }
        let exported = exports.load(std::sync::atomic::Ordering::Relaxed);
        ensure!(
            exported > 0,
            "traces were switched on but no span reached the OTLP sink"
        );
        Ok(())
    }

    /// Median wall time of `wedge run` and `wasmtime run` on a cached C hello, alternating.
    fn run_once_times(&mut self) -> Result<(f64, f64)> {
        let module = self.paths.at("guests/c/hello.wasm");
        let cwasm = self.logs.join("hello.cwasm");
        let status = Command::new(&self.paths.wasmtime)
            .arg("compile")
            .arg(&module)
            .arg("-o")
            .arg(&cwasm)
            .status()
            .context("running wasmtime compile")?;
        ensure!(status.success(), "wasmtime compile failed");
        let cache = self.logs.join("run-cache");
        let mut wedge = Command::new(&self.paths.wedge);
        wedge.arg("run").arg(&module).env("WEDGE_CACHE_DIR", &cache);
        let mut wasmtime = Command::new(&self.paths.wasmtime);
        wasmtime.arg("run").arg("--allow-precompiled").arg(&cwasm);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        timed(&mut wedge)?; // fills the cache
        for _ in 0..self.plan.run_reps {
            a.push(timed(&mut wedge)?);
            b.push(timed(&mut wasmtime)?);
        }
        let median = |v: &[f64]| {
            crate::stats::Spread::of(v)
                .map(|s| s.median)
                .unwrap_or(f64::NAN)
        };
        Ok((median(&a), median(&b)))
    }
}

fn set_env(launch: &mut Launch, key: &str, value: &str) {
    launch.env.retain(|(k, _)| k != key);
    launch.env.push((key.into(), value.into()));
}

fn timed(cmd: &mut Command) -> Result<f64> {
    let t = Instant::now();
    let status = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    ensure!(status.success(), "{cmd:?} failed with {status}");
    Ok(t.elapsed().as_secs_f64() * 1000.0)
}
