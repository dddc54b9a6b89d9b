//! `wedge run`: runs a WASI command once with limits and statistics.

use crate::Global;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;
use wedge_runtime::command::{self, RunConfig};
use wedge_runtime::dirs::DirMount;
use wedge_runtime::engine::{self, EngineOptions};
use wedge_runtime::load::Source;
use wedge_runtime::outcome::{EXIT_TIMEOUT, Outcome};
use wedge_runtime::units::{self, WASM_PAGE, format_duration};

#[derive(clap::Args)]
#[command(
    after_help = "Exit status: the guest's own exit code; 124 when --timeout stopped it; \
134 when it trapped; 152 when --fuel ran out; 1 when wedge could not run it; 2 for bad flags."
)]
pub struct RunArgs {
    /// The program: .wasm (module or component), .wat, or a `wedge compile` artifact
    #[arg(value_name = "MODULE")]
    module: PathBuf,
    /// Arguments passed to the guest after its name
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<String>,
    /// Set a guest environment variable; `--env NAME` copies the host's value (repeatable)
    #[arg(long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Give the guest the host's whole environment (then --env adds or overrides)
    #[arg(long)]
    env_inherit: bool,
    /// Preopen a host directory, read-write unless `:ro` (repeatable)
    #[arg(long = "dir", value_name = "HOST[::GUEST][:ro]")]
    dirs: Vec<DirMount>,
    /// Linear memory limit, rounded up to 64 KiB pages (e.g. 512KiB, 2MiB)
    #[arg(long, value_name = "SIZE", value_parser = units::parse_size, conflicts_with = "max_memory_pages")]
    max_memory: Option<u64>,
    /// Linear memory limit in 64 KiB pages (WasmEdge's --memory-page-limit)
    #[arg(long, value_name = "N")]
    max_memory_pages: Option<u64>,
    /// Trap when memory.grow fails instead of returning -1 to the guest
    #[arg(long)]
    trap_on_grow_failure: bool,
    /// Wall-clock deadline (e.g. 100ms, 2s); exit status 124 when it passes
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    timeout: Option<Duration>,
    /// Deterministic instruction budget; exit status 152 when it runs out
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Print execution statistics on stderr after the run
    #[arg(long)]
    stats: bool,
    /// Write execution statistics as JSON to PATH (`-` for stdout)
    #[arg(long, value_name = "PATH")]
    stats_json: Option<String>,
}

fn guest_env(args: &RunArgs) -> Result<Vec<(String, String)>> {
    let mut env: Vec<(String, String)> = if args.env_inherit {
        std::env::vars().collect()
    } else {
        Vec::new()
    };
    for item in &args.env {
        let (k, v) = match item.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => {
                let v = std::env::var(item).with_context(|| {
                    format!("--env {item}: the host has no variable `{item}` to pass on")
                })?;
                (item.clone(), v)
            }
        };
        if k.is_empty() {
            bail!("--env {item}: empty variable name (expected K=V)");
        }
        env.retain(|(existing, _)| *existing != k);
        env.push((k, v));
    }
    Ok(env)
}

pub fn main(args: RunArgs, global: &Global) -> Result<i32> {
    let env = guest_env(&args)?;
    let max_memory = match (args.max_memory, args.max_memory_pages) {
        (Some(bytes), _) => Some(units::bytes_to_pages(bytes) * WASM_PAGE),
        (None, Some(pages)) => Some(
            pages
                .checked_mul(WASM_PAGE)
                .context("--max-memory-pages is too large")?,
        ),
        (None, None) => None,
    };
    for d in &args.dirs {
        if !d.host.is_dir() {
            bail!("--dir {}: no such directory on the host", d.host.display());
        }
    }
    let source = Source::read(&args.module)?;
    let options = match source.required_options() {
        Some(opts) if args.fuel.is_some() && !opts.fuel => bail!(
            "{}: compiled without fuel metering, so --fuel cannot apply; \
             run `wedge compile --fuel` or pass the .wasm",
            args.module.display()
        ),
        Some(opts) => opts,
        None => EngineOptions {
            fuel: args.fuel.is_some(),
        },
    };
    let engine = engine::build(options)?;
    let cache = global.cache();
    let loaded = source.load(&engine, cache.as_ref())?;

    let mut argv = vec![args.module.display().to_string()];
    argv.extend(args.args.iter().cloned());
    let timeout = args.timeout;
    let on_stuck: Box<dyn FnOnce() + Send> = Box::new(move || {
        eprintln!(
            "wedge: timed out: the guest was stopped after {} (it was blocked in a host call)",
            format_duration(timeout.unwrap_or_default())
        );
        std::process::exit(EXIT_TIMEOUT);
    });
    let mut report = command::run(
        &engine,
        &loaded,
        RunConfig {
            argv,
            env,
            dirs: args.dirs.clone(),
            max_memory,
            trap_on_grow_failure: args.trap_on_grow_failure,
            timeout,
            fuel: args.fuel,
            on_stuck: Some(on_stuck),
        },
    )
    .map_err(|e| anyhow::anyhow!("{}: {e:#}", args.module.display()))?;

    let _ = std::io::stdout().flush();
    match &report.outcome {
        Outcome::Exited(_) => {}
        other => {
            let what = match other {
                Outcome::Trapped { .. } => "guest trapped: ",
                Outcome::MemoryLimit { .. } => "guest trapped: ",
                _ => "",
            };
            eprintln!("wedge: {what}{}", other.message().unwrap_or_default());
            let bt = other.backtrace();
            if !bt.is_empty() {
                eprintln!("wasm backtrace:");
                for frame in bt {
                    eprintln!("  {frame}");
                }
            }
        }
    }
    if args.stats || args.stats_json.is_some() {
        // Read only when shown: /proc/self/status costs ~30 µs of a 2 ms run.
        report.stats.host_peak_rss_bytes = wedge_runtime::stats::host_peak_rss();
    }
    if args.stats {
        eprint!("{}", report.stats.table());
    }
    if let Some(path) = &args.stats_json {
        let json = serde_json::to_string_pretty(&report.stats)? + "\n";
        if path == "-" {
            print!("{json}");
            let _ = std::io::stdout().flush();
        } else {
            std::fs::write(path, json).with_context(|| format!("writing --stats-json {path}"))?;
        }
    }
    Ok(report.outcome.exit_status())
}
