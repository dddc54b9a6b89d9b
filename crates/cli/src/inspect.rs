//! `wedge inspect`: describes a module or component and its cache state.

use crate::Global;
use anyhow::Result;
use std::path::PathBuf;
use wedge_runtime::cache::Key;
use wedge_runtime::engine::{self, EngineOptions};
use wedge_runtime::load::{Source, SourceKind};
use wedge_runtime::units::format_bytes;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The module or component (.wasm or .wat)
    #[arg(value_name = "MODULE")]
    module: PathBuf,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(serde::Serialize)]
struct Output {
    path: String,
    sha256: String,
    #[serde(flatten)]
    report: wedge_inspect::Report,
    /// Engine configurations (`plain`, `fuel`) with a cached artifact.
    aot_cached: Vec<&'static str>,
}

pub fn main(args: InspectArgs, global: &Global) -> Result<i32> {
    let mut source = Source::read(&args.module)?;
    if let SourceKind::Artifact(t) = &source.kind {
        let h = &t.header;
        anyhow::bail!(
            "{} is a precompiled wedge artifact ({:?} of module sha256 {}); inspect the .wasm it came from",
            args.module.display(),
            h.kind,
            wedge_runtime::cache::hex(&h.module_sha256)
        );
    }
    let report = wedge_inspect::inspect(source.bytes()?)
        .map_err(|e| anyhow::anyhow!("{}: invalid WebAssembly: {e}", args.module.display()))?;
    let cache = global.cache();
    let sha = source.sha256(cache.as_ref())?;
    let mut aot_cached = Vec::new();
    if let Some(cache) = cache {
        for (name, fuel) in [("plain", false), ("fuel", true)] {
            let engine = engine::build(EngineOptions { fuel })?;
            let key = Key {
                module_sha256: sha,
                engine_hash: engine::hash(&engine),
            };
            if cache.contains(&key) {
                aot_cached.push(name);
            }
        }
    }
    let out = Output {
        path: args.module.display().to_string(),
        sha256: wedge_runtime::cache::hex(&sha),
        report,
        aot_cached,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", human(&out));
    }
    Ok(0)
}

fn human(o: &Output) -> String {
    use std::fmt::Write as _;
    let r = &o.report;
    let mut s = String::new();
    let _ = writeln!(s, "{} ({}, {})", o.path, r.kind, format_bytes(r.size_bytes));
    let _ = writeln!(s, "  sha256     {}", o.sha256);
    let worlds = if r.worlds.is_empty() {
        "none recognised".to_string()
    } else {
        r.worlds.join(", ")
    };
    let _ = writeln!(s, "  worlds     {worlds}");
    let cached = if o.aot_cached.is_empty() {
        "no".to_string()
    } else {
        format!("yes ({})", o.aot_cached.join(", "))
    };
    let _ = writeln!(s, "  aot cached {cached}");
    if r.kind == "component" {
        let _ = writeln!(s, "  core modules {}", r.core_modules);
    }
    for p in &r.producers {
        let _ = writeln!(s, "  producer   {}: {} {}", p.field, p.name, p.version);
    }
    for m in &r.memories {
        let max = m
            .max_pages
            .map(|p| format!("{p} pages ({})", format_bytes(p * 65536)))
            .unwrap_or_else(|| "unbounded".into());
        let _ = writeln!(
            s,
            "  memory     {}min {} pages ({}), max {max}{}",
            if r.kind == "component" {
                format!("module {}: ", m.module)
            } else {
                String::new()
            },
            m.min_pages,
            format_bytes(m.min_pages * 65536),
            if m.imported { ", imported" } else { "" }
        );
    }
    let _ = writeln!(s, "  imports ({}):", r.imports.len());
    for i in &r.imports {
        let _ = writeln!(s, "    {:<8} {}", i.kind, i.name);
    }
    let _ = writeln!(s, "  exports ({}):", r.exports.len());
    for e in &r.exports {
        let _ = writeln!(s, "    {:<8} {}", e.kind, e.name);
    }
    let _ = writeln!(s, "  sections:");
    for sec in &r.sections {
        let _ = writeln!(s, "    {:<28} {:>10}", sec.name, format_bytes(sec.bytes));
    }
    s
}
