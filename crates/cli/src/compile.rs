//! `wedge compile`: writes a precompiled artifact that `wedge run` accepts.

use crate::Global;
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::time::Instant;
use wedge_runtime::engine::EngineOptions;
use wedge_runtime::load::{self, Source};
use wedge_runtime::units::{format_bytes, format_duration};

#[derive(clap::Args)]
pub struct CompileArgs {
    /// The module or component to compile (.wasm or .wat)
    #[arg(value_name = "MODULE")]
    module: PathBuf,
    /// Where to write the artifact [default: MODULE with the extension .cwasm]
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
    /// Compile with fuel metering, for runs with --fuel
    #[arg(long)]
    fuel: bool,
}

pub fn main(args: CompileArgs, _global: &Global) -> Result<i32> {
    let start = Instant::now();
    let mut source = Source::read(&args.module)?;
    let bytes = load::precompile(&mut source, EngineOptions { fuel: args.fuel })?;
    let out = args
        .output
        .unwrap_or_else(|| args.module.with_extension("cwasm"));
    let tmp = out.with_extension("cwasm.tmp");
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, &out))
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "compiled {} -> {} ({}, {})",
        args.module.display(),
        out.display(),
        format_bytes(bytes.len() as u64),
        format_duration(start.elapsed())
    );
    Ok(0)
}
