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
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = quick_parse(&args).unwrap_or_else(|| Cli::parse_from(args));
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

/// Parses `wedge run` and `wedge serve`, the two commands whose start-up is
/// timed, with a parser that holds only that subcommand. Clap builds the
/// whole tree (every subcommand's arguments, the control commands') before
/// parsing anything: a third of the instructions of a cached `wedge run`.
/// Help, version and every error are left to the full parser (`None`), so
/// what the user reads is the same.
fn quick_parse(args: &[std::ffi::OsString]) -> Option<Cli> {
    use clap::{Args, FromArgMatches};
    let sub = match args.get(1)?.to_str()? {
        "run" => run::RunArgs::augment_args(clap::Command::new("run")),
        "serve" => serve::ServeArgs::augment_args(clap::Command::new("serve")),
        _ => return None,
    };
    let root = Global::augment_args(clap::Command::new("wedge")).subcommand(sub);
    let matches = root.try_get_matches_from(args).ok()?;
    Cli::from_arg_matches(&matches).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(Into::into).collect()
    }

    #[test]
    fn run_and_serve_take_the_quick_parser_and_help_and_errors_the_full_one() {
        let cli = quick_parse(&argv(&["wedge", "run", "--no-cache", "m.wasm", "--", "-x"]));
        assert!(matches!(
            cli,
            Some(Cli {
                command: Command::Run(_),
                global: Global { no_cache: true, .. }
            })
        ));
        let cli = quick_parse(&argv(&[
            "wedge",
            "serve",
            "m.wasm",
            "--listen",
            "127.0.0.1:0",
        ]));
        assert!(matches!(
            cli,
            Some(Cli {
                command: Command::Serve(_),
                ..
            })
        ));
        for full in [
            &["wedge", "run", "--help"][..],
            &["wedge", "run"],
            &["wedge", "run", "--no-such-flag", "m.wasm"],
            &["wedge", "--no-cache", "run", "m.wasm"],
            &["wedge", "check", "-f", "wedge.toml"],
            &["wedge", "--version"],
        ] {
            assert!(quick_parse(&argv(full)).is_none(), "{full:?}");
        }
    }
}
