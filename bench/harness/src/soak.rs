//! The soak: one wedge contender at half its measured throughput for many
//! minutes, in windows, watching resident memory and open descriptors. After
//! a warm-up both must stay flat (drift under 5%) and no request may fail.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};

use crate::contenders::Contender;
use crate::load::{self, Shape};
use crate::server::Server;
use crate::workloads::{Inputs, Workload};

/// One window of the soak.
struct Window {
    minute: f64,
    rate: f64,
    errors: u64,
    p99_ms: f64,
    rss_kib: u64,
    fds: u64,
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// Spread of `values` as a fraction of their smallest.
fn drift(values: impl Iterator<Item = u64>) -> f64 {
    let v: Vec<u64> = values.collect();
    let (min, max) = (*v.iter().min().unwrap_or(&0), *v.iter().max().unwrap_or(&0));
    if min == 0 {
        return 0.0;
    }
    (max - min) as f64 / min as f64
}

/// Runs the soak and writes `out/soak-DATE.md`; fails when a request
/// failed or memory or descriptors drifted 5% or more after warm-up.
pub fn run(
    rt: &tokio::runtime::Runtime,
    c: &Contender,
    inputs: &Inputs,
    minutes: f64,
    out: &Path,
    date: &str,
) -> Result<()> {
    let log = std::env::temp_dir().join(format!("wedge-soak-{}.log", std::process::id()));
    let server = Server::start(rt, &c.launch, "/hello", &log)?;
    let req = inputs.request(Workload::Hello);
    let max = rt
        .block_on(load::run(
            server.addr,
            &req,
            200,
            Shape {
                connections: 64,
                warmup: Duration::from_secs(2),
                measure: Duration::from_secs(10),
                rate: None,
            },
        ))
        .rate();
    let target = max / 2.0;
    eprintln!(
        "soak: {} flat out {max:.0} req/s; holding {target:.0} req/s for {minutes} min",
        c.name
    );
    let window = Duration::from_secs(30);
    let count = ((minutes * 60.0) / window.as_secs_f64()).ceil() as usize;
    let mut windows = Vec::new();
    for i in 0..count {
        let mut o = rt.block_on(load::run(
            server.addr,
            &req,
            200,
            Shape {
                connections: 32,
                warmup: Duration::ZERO,
                measure: window,
                rate: Some(target),
            },
        ));
        let w = Window {
            minute: (i + 1) as f64 * window.as_secs_f64() / 60.0,
            rate: o.rate(),
            errors: o.errors,
            p99_ms: o.samples.percentile_ms(99.0).unwrap_or(0.0),
            rss_kib: server.rss_kib(),
            fds: open_fds(server.pid()),
        };
        eprintln!(
            "soak: {:>5.1} min {:>8.0} req/s {} errors p99 {:.2} ms rss {} KiB fds {}",
            w.minute, w.rate, w.errors, w.p99_ms, w.rss_kib, w.fds
        );
        windows.push(w);
    }
    // The first minute is warm-up: the pool fills, caches settle.
    let warm = windows.len().min(2);
    let after = &windows[warm..];
    let rss_drift = drift(after.iter().map(|w| w.rss_kib));
    let fd_drift = drift(after.iter().map(|w| w.fds));
    let errors: u64 = windows.iter().map(|w| w.errors).sum();
    let ok = errors == 0 && rss_drift < 0.05 && fd_drift < 0.05;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Soak: {} ({}), {date}\n\n{minutes} minutes at half of the measured maximum \
         ({max:.0} req/s flat out at 64 connections; paced at {target:.0} req/s over 32 \
         connections), in 30-second windows. Warm-up: the first {warm} windows.\n",
        c.name, c.what
    );
    let _ = writeln!(
        md,
        "| minute | req/s | errors | p99 ms | RSS MiB | open fds |\n|---|---|---|---|---|---|"
    );
    for w in &windows {
        let _ = writeln!(
            md,
            "| {:.1} | {:.0} | {} | {:.2} | {:.1} | {} |",
            w.minute,
            w.rate,
            w.errors,
            w.p99_ms,
            w.rss_kib as f64 / 1024.0,
            w.fds
        );
    }
    let _ = writeln!(
        md,
        "\nAfter warm-up: RSS drift {:.1}%, descriptor drift {:.1}%, failed requests {errors}. \
         Verdict: **{}** (limits: drift under 5%, no failures).",
        rss_drift * 100.0,
        fd_drift * 100.0,
        if ok { "pass" } else { "FAIL" }
    );
    let file = out.join(format!("soak-{date}.md"));
    std::fs::write(&file, md)?;
    eprintln!("wrote {}", file.display());
    if !ok {
        bail!(
            "soak failed: {errors} failed requests, RSS drift {:.1}%, fd drift {:.1}%",
            rss_drift * 100.0,
            fd_drift * 100.0
        );
    }
    Ok(())
}
