//! wedge-cli: the `wedge` binary; parses the command line and wires the other crates together.

mod api;
mod cache_cmd;
mod compile;
mod control_cmd;
mod inspect;
mod oci;
mod reload;
mod rollout;
mod run;
mod serve;
mod startup;
mod watch;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use wedge_runtime::cache::{self, Cache};
use wedge_runtime::outcome::EXIT_ERROR;

/// wedge runs WebAssembly functions: once from the command line, or as HTTP
/// edge functions. Modules are compiled ahead of time and cached.
#[derive(Parser)]
#[command(name = "wedge", version, about, long_about = None, max_term_width = 100)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Global {
    /// AOT cache directory [default: $XDG_CACHE_HOME/wedge or ~/.cache/wedge]
    #[arg(long, global = true, env = cache::ENV_CACHE_DIR, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile in memory only; neither read nor write the AOT cache
    #[arg(long, global = true)]
    no_cache: bool,
}

impl Global {
    fn cache(&self) -> Option<Cache> {
        if self.no_cache {
            return None;
        }
        self.cache_dir
            .clone()
            .or_else(cache::default_dir)
            .map(Cache::new)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a WASI command (preview1 module or 0.2 component) once
    Run(run::RunArgs),
    /// Precompile a module or component into an AOT artifact that `wedge run` loads
    Compile(compile::CompileArgs),
    /// Describe a module or component: world, imports, exports, memory, sections
    Inspect(inspect::InspectArgs),
    /// Serve HTTP functions: one module on every path, or an app (-f wedge.toml)
    Serve(Box<serve::ServeArgs>),
    /// Validate an app manifest and compile and link its functions, without serving
    Check(serve::AppArgs),
    /// Push a module or component to an OCI registry (CNCF TAG Runtime layout)
    Push(oci::PushArgs),
    /// Pull a module from an OCI registry into the store; print its file
    Pull(oci::PullArgs),
    /// List, clear or trim the AOT cache
    #[command(subcommand)]
    Cache(cache_cmd::CacheCommand),
    #[command(flatten)]
    Control(control_cmd::ControlCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::main(args, &cli.global),
        Command::Compile(args) => compile::main(args, &cli.global),
        Command::Inspect(args) => inspect::main(args, &cli.global),
        Command::Serve(mut args) => {
            args.app.cache_dir = cli.global.cache_dir.clone();
            serve::serve(*args, &cli.global)
        }
        Command::Check(mut args) => {
            args.cache_dir = cli.global.cache_dir.clone();
            serve::check(args, &cli.global)
        }
        Command::Push(args) => oci::push(args),
        Command::Pull(args) => oci::pull_cmd(args, cli.global.cache_dir.as_deref()),
        Command::Cache(cmd) => cache_cmd::main(cmd, &cli.global),
        Command::Control(cmd) => control_cmd::main(cmd),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            match e.downcast_ref::<wedge_manifest::ManifestError>() {
                // Manifest errors show the offending line under the message.
                Some(m) => eprintln!("wedge: error: {m}"),
                None => eprintln!("wedge: error: {}", one_line(&e)),
            }
            ExitCode::from(EXIT_ERROR as u8)
        }
    }
}

/// An error and its causes on one line, without repeating a cause that the
/// message above it already contains.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace('\n', " ")
}
