//! `wedge cache`: lists, clears and trims the AOT cache.

use crate::Global;
use anyhow::{Context, Result, bail};
use wedge_runtime::units::{self, format_bytes};

#[derive(clap::Subcommand)]
pub enum CacheCommand {
    /// List cached artifacts, most recently used first
    Ls {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Delete every cached artifact
    Clear,
    /// Delete least-recently-used artifacts until the cache fits in SIZE
    Gc {
        /// Size budget, e.g. 500MiB
        #[arg(long, value_name = "SIZE", value_parser = units::parse_size)]
        max_size: u64,
    },
    /// Print the cache directory
    Dir,
}

pub fn main(cmd: CacheCommand, global: &Global) -> Result<i32> {
    let Some(cache) = global.cache() else {
        bail!("no cache directory: set --cache-dir, WEDGE_CACHE_DIR or HOME (and drop --no-cache)");
    };
    let dir = cache.dir().display().to_string();
    match cmd {
        CacheCommand::Ls { json } => {
            let entries = cache.entries().with_context(|| format!("reading {dir}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
                return Ok(0);
            }
            let total: u64 = entries.iter().map(|e| e.size).sum();
            println!(
                "{dir}: {} artifacts, {}",
                entries.len(),
                format_bytes(total)
            );
            for e in &entries {
                println!(
                    "  {}  engine {}  {:>10}",
                    e.module_sha256,
                    e.engine_hash,
                    format_bytes(e.size)
                );
            }
        }
        CacheCommand::Clear => {
            let freed = cache.clear().with_context(|| format!("clearing {dir}"))?;
            println!("cleared {dir} ({} freed)", format_bytes(freed));
        }
        CacheCommand::Gc { max_size } => {
            let removed = cache
                .gc(max_size)
                .with_context(|| format!("trimming {dir}"))?;
            let freed: u64 = removed.iter().map(|e| e.size).sum();
            println!(
                "removed {} artifacts ({}) from {dir}",
                removed.len(),
                format_bytes(freed)
            );
        }
        CacheCommand::Dir => println!("{dir}"),
    }
    Ok(0)
}
