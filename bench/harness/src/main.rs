//! wedge-bench: runs wedge and the servers people pick instead on the same workloads,
//! in alternating rounds on 127.0.0.1, and writes JSON, a Markdown table and PNG plots.

mod contenders;
mod control;
mod http;
mod load;
mod measure;
mod placement;
mod plot;
mod report;
mod results;
mod server;
mod sink;
mod soak;
mod stats;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;

use contenders::Paths;
use measure::{Bench, Plan};
use results::{Config, ContenderInfo, Machine, Results};

#[derive(Parser)]
#[command(about = "Benchmarks wedge against native Rust, Node.js, Python and wasmtime serve")]
struct Args {
    /// Short runs (about 3.5 minutes in all) for a quick look; results go to OUT/quick.
    #[arg(long)]
    quick: bool,
    /// Rounds over all contenders (at least 3 for a report worth keeping).
    #[arg(long)]
    rounds: Option<usize>,
    /// Only these contenders (comma-separated): wedge-go, wedge-go-sdk, wedge-c, wasmtime, native, node, python.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only these workloads (comma-separated): hello, json, jwt, image.
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Where results go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    #[arg(long, default_value = "target/release/wedge")]
    wedge: PathBuf,
    #[arg(long, default_value = "wasmtime")]
    wasmtime: PathBuf,
    /// Redraw latest.md and the plots from a results file instead of measuring.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Soak instead: hold one wedge contender (--only, default wedge-c) at
    /// half its throughput for this many minutes; writes OUT/soak-DATE.md.
    #[arg(long, value_name = "MINUTES")]
    soak: Option<f64>,
    /// The control plane under load instead: CHANGES module rewrites picked
    /// up by --watch and CHANGES deploys through the API (one per 200 ms),
    /// deploy latency, and the throughput cost of deploys; writes
    /// OUT/control-DATE.md.
    #[arg(long, value_name = "CHANGES")]
    control: Option<u32>,
    /// Drive one running server instead, for profiling it: GET PATH on
    /// 127.0.0.1:PORT (given as PORT/PATH) for --seconds, paced at --rate
    /// req/s over --connections, or flat out without --rate; prints rate and percentiles.
    #[arg(long, value_name = "PORT/PATH")]
    drive: Option<String>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    plot::register_font()?;
    if let Some(file) = &args.report {
        let r: Results = serde_json::from_slice(&std::fs::read(file)?)
            .with_context(|| format!("reading {}", file.display()))?;
        return write_report(&r, file.parent().unwrap_or(Path::new(".")));
    }
    if !Path::new("bench/WORKLOADS.md").exists() {
        bail!("run wedge-bench from the repository root (bench/run.sh does)");
    }
    if let Some(target) = &args.drive {
        return drive(target, &args);
    }
    if let Some(changes) = args.control {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        return control::run(&rt, &args.wedge, changes, &args.out, &today());
    }
    let plan = if args.quick {
        Plan {
            rounds: args.rounds.unwrap_or(3),
            connections: 64,
            warmup: Duration::from_millis(250),
            measure: Duration::from_millis(1000),
            latency: Duration::from_millis(500),
            inflight: 100,
            hold: Duration::from_millis(1000),
            run_reps: 10,
        }
    } else {
        Plan {
            rounds: args.rounds.unwrap_or(3),
            connections: 64,
            warmup: Duration::from_secs(1),
            measure: Duration::from_secs(6),
            latency: Duration::from_secs(3),
            inflight: 200,
            hold: Duration::from_secs(3),
            run_reps: 40,
        }
    };
    let out = if args.quick {
        args.out.join("quick")
    } else {
        args.out.clone()
    };
    std::fs::create_dir_all(&out)?;
    let logs = std::env::temp_dir().join(format!("wedge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs)?;
    let root = std::env::current_dir()?;
    let paths = Paths {
        root: root.clone(),
        wedge: root.join(&args.wedge),
        wasmtime: args.wasmtime.clone(),
    };
    let cache = logs.join("wedge-cache");
    let mut all = contenders::all(&paths, &cache);
    if !args.only.is_empty() {
        for name in &args.only {
            if !all.iter().any(|c| c.name == name) {
                bail!("unknown contender {name:?}");
            }
        }
        all.retain(|c| args.only.iter().any(|n| n == c.name));
    }
    if !args.workloads.is_empty() {
        let keep = args
            .workloads
            .iter()
            .map(|w| workloads::Workload::parse(w))
            .collect::<Result<Vec<_>>>()?;
        for c in &mut all {
            c.workloads.retain(|w| keep.contains(w));
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let inputs = workloads::Inputs::load(Path::new("bench/inputs"))?;
    let placement = placement::Placement::of_this_process()?;
    let latency_placement = placement.as_ref().map_or_else(
        || "one CPU, shared by the server and the load generator".to_string(),
        placement::Placement::describe,
    );
    let mut bench = Bench {
        placement,
        rt: &rt,
        plan: &plan,
        inputs: &inputs,
        paths: &paths,
        logs: logs.clone(),
        out: Default::default(),
    };
    bench.prepare(&all)?;
    if let Some(minutes) = args.soak {
        let name = args.only.first().map_or("wedge-c", String::as_str);
        let c = all
            .iter()
            .find(|c| c.name == name && c.name.starts_with("wedge"))
            .with_context(|| format!("--soak runs a wedge contender, not {name:?}"))?;
        return soak::run(&rt, c, &inputs, minutes, &args.out, &today());
    }
    let go = all.iter().find(|c| c.name == "wedge-go").cloned();
    let c = all.iter().find(|c| c.name == "wedge-c").cloned();
    for round in 0..plan.rounds {
        bench.round(round, &all);
        if let (Some(go), Some(c)) = (&go, &c) {
            eprintln!("round {round}: wedge's own figures");
            if let Err(e) = bench.wedge_figures(round, go, c) {
                bench
                    .out
                    .note(format!("round {round}, wedge figures: {e:#}"));
            }
        }
    }
    let results = Results {
        date: today(),
        machine: machine(),
        config: Config {
            quick: args.quick,
            rounds: plan.rounds,
            connections: plan.connections,
            measure_s: plan.measure.as_secs_f64(),
            latency_s: plan.latency.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            inflight_requests: plan.inflight,
            load_generator: "wedge-bench, keep-alive HTTP/1.1 on tokio with 2 threads".into(),
            latency_placement,
        },
        contenders: all
            .iter()
            .map(|c| ContenderInfo {
                name: c.name.into(),
                what: c.what.into(),
                version: version(c.name, &paths),
            })
            .collect(),
        figures: bench.out.figures(),
        notes: bench.out.notes.clone(),
    };
    let json = out.join(format!("{}.json", results.date));
    std::fs::write(&json, serde_json::to_vec_pretty(&results)?)?;
    write_report(&results, &out)?;
    let _ = std::fs::remove_dir_all(&logs);
    eprintln!("wrote {} and {}/latest.md", json.display(), out.display());
    Ok(())
}

fn drive(target: &str, args: &Args) -> Result<()> {
    let (port, path) = target
        .split_once('/')
        .context("--drive takes PORT/PATH, e.g. 8080/hello")?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port.parse()?));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let req = http::Request::new("GET", &format!("/{path}"), &[], b"");
    let shape = load::Shape {
        connections: args.connections,
        warmup: Duration::from_millis(250),
        measure: Duration::from_secs_f64(args.seconds),
        rate: args.rate,
    };
    let mut out = rt.block_on(load::run(addr, &req, 200, shape));
    let l = out.samples.latency().context("no answers")?;
    println!(
        "{:.0} req/s, {} errors, P50 {:.3} ms, P99 {:.3} ms, P99.9 {:.3} ms",
        out.rate(),
        out.errors,
        l.p50_ms,
        l.p99_ms,
        l.p999_ms
    );
    Ok(())
}

fn write_report(r: &Results, out: &Path) -> Result<()> {
    std::fs::write(out.join("latest.md"), report::markdown(r))?;
    plot::bars(
        r,
        "rps",
        "Throughput at 64 connections, 16 for image (req/s, median, whiskers min-max)",
        "req/s",
        &out.join("throughput.png"),
    )?;
    plot::bars(
        r,
        "p99_half_ms",
        "P99 latency at 50% of each contender's throughput (ms)",
        "ms",
        &out.join("p99.png"),
    )?;
    Ok(())
}

fn capture(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(if o.stdout.is_empty() {
                &o.stderr
            } else {
                &o.stdout
            })
            .trim()
            .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

fn version(name: &str, p: &Paths) -> String {
    match name {
        "wedge-go" | "wedge-go-sdk" | "wedge-c" => {
            capture(&p.wedge.display().to_string(), &["--version"])
        }
        "wasmtime" => capture(&p.wasmtime.display().to_string(), &["--version"]),
        "node" => format!("node {}", capture("node", &["--version"])),
        "python" => capture(
            "python3",
            &[
                "-c",
                "import sys, uvicorn; print('python', sys.version.split()[0], 'uvicorn', uvicorn.__version__)",
            ],
        ),
        "native" => "rustc ".to_string() + &capture("rustc", &["--version"]).replace("rustc ", ""),
        _ => "unknown".into(),
    }
}

fn today() -> String {
    capture("date", &["-u", "+%F"])
}

fn machine() -> Machine {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu,
        kernel,
    }
}
