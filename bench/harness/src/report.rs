//! The Markdown report: tables with ratios to native and to `wasmtime serve`, and the targets.

use std::fmt::Write;

use crate::results::{ANY, Results};
use crate::stats::{Spread, ratio};
use crate::workloads::ALL;

fn num(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn spread(s: Option<Spread>) -> String {
    match s {
        Some(s) if s.rounds > 1 => format!("{} ({}–{})", num(s.median), num(s.min), num(s.max)),
        Some(s) => num(s.median),
        None => "–".into(),
    }
}

fn times(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "–".into())
}

/// One target: what was asked, what was measured, and whether it holds.
pub struct Target {
    pub what: String,
    pub measured: String,
    pub met: Option<bool>,
}

pub fn targets(r: &Results) -> Vec<Target> {
    let m = |c: &str, w: &str, k: &str| r.median(c, w, k);
    let mut t = Vec::new();
    let mut at_least = |what: &str, value: Option<f64>, goal: f64, unit: &str| {
        t.push(Target {
            what: what.into(),
            measured: value
                .map(|v| format!("{v:.2}{unit}"))
                .unwrap_or_else(|| "not measured".into()),
            met: value.map(|v| v >= goal),
        });
    };
    at_least(
        "hello component: wedge >= 3x `wasmtime serve` throughput",
        ratio(m("wedge-c", "hello", "rps"), m("wasmtime", "hello", "rps")),
        3.0,
        "x",
    );
    at_least(
        "hello component: wedge >= 0.5x native Rust throughput",
        ratio(m("wedge-c", "hello", "rps"), m("native", "hello", "rps")),
        0.5,
        "x",
    );
    at_least(
        "Go WAGI hello >= 5x the seed's 1,840 req/s (9,200)",
        m("wedge-go", "hello", "rps"),
        9200.0,
        " req/s",
    );
    at_least(
        "Go SDK hello >= 5x the seed's 1,840 req/s (9,200)",
        m("wedge-go-sdk", "hello", "rps"),
        9200.0,
        " req/s",
    );
    for w in ["json", "jwt"] {
        at_least(
            &format!("{w}, Go SDK >= 2.5x the same Go as WAGI"),
            ratio(m("wedge-go-sdk", w, "rps"), m("wedge-go", w, "rps")),
            2.5,
            "x",
        );
    }
    for w in ["json", "jwt", "image"] {
        at_least(
            &format!("{w}, Go under wedge >= Node.js"),
            ratio(m("wedge-go", w, "rps"), m("node", w, "rps")),
            1.0,
            "x",
        );
        at_least(
            &format!("{w}, Go under wedge >= Python"),
            ratio(m("wedge-go", w, "rps"), m("python", w, "rps")),
            1.0,
            "x",
        );
        at_least(
            &format!("{w}, Go under wedge >= 0.3x native"),
            ratio(m("wedge-go", w, "rps"), m("native", w, "rps")),
            0.3,
            "x",
        );
    }
    let mut at_most = |what: &str, value: Option<f64>, goal: f64, unit: &str| {
        t.push(Target {
            what: what.into(),
            measured: value
                .map(|v| format!("{v:.2}{unit}"))
                .unwrap_or_else(|| "not measured".into()),
            met: value.map(|v| v <= goal),
        });
    };
    at_most(
        "hello component: wedge P99 at 50% load <= 2x native's",
        ratio(
            m("wedge-c", "hello", "p99_half_ms"),
            m("native", "hello", "p99_half_ms"),
        ),
        2.0,
        "x",
    );
    at_most(
        "`wedge run` of a cached module <= 0.6x `wasmtime run` time",
        ratio(
            m("wedge", ANY, "run_cached_ms"),
            m("wedge", ANY, "wasmtime_run_ms"),
        ),
        0.6,
        "x",
    );
    at_most(
        "`wedge serve` start to first response, warm cache <= 5 ms",
        m("wedge-c", ANY, "start_ms"),
        5.0,
        " ms",
    );
    at_most(
        "deploy (new process) to first response, warm AOT cache <= 5 ms",
        m("wedge", ANY, "deploy_warm_ms"),
        5.0,
        " ms",
    );
    at_most(
        "idle RSS <= 15 MB (wedge-c: one component + one WAGI module)",
        m("wedge-c", ANY, "idle_rss_mib"),
        15.0,
        " MiB",
    );
    // Resident memory cannot tell the guest's touched linear memory (slow.wasm
    // declares two 64 KiB pages) from wedge's own, so all of it counts as wedge's.
    at_most(
        "host memory per in-flight request <= 64 KiB (linear memory counted as host)",
        m("wedge-c", ANY, "inflight_kib"),
        64.0,
        " KiB",
    );
    at_most(
        "Go SDK memory per in-flight request (RSS) <= 0.5x Go WAGI's",
        ratio(
            m("wedge-go-sdk", ANY, "inflight_kib"),
            m("wedge-go", ANY, "inflight_kib"),
        ),
        0.5,
        "x",
    );
    at_most(
        "Go SDK memory per in-flight request (private) <= 0.5x Go WAGI's",
        ratio(
            m("wedge-go-sdk", ANY, "inflight_private_kib"),
            m("wedge-go", ANY, "inflight_private_kib"),
        ),
        0.5,
        "x",
    );
    at_most(
        "Go SDK RSS under load (hello) <= 0.5x Go WAGI's",
        ratio(
            m("wedge-go-sdk", "hello", "rss_load_mib"),
            m("wedge-go", "hello", "rss_load_mib"),
        ),
        0.5,
        "x",
    );
    at_most(
        "Go SDK PSS under load (hello) <= 0.5x Go WAGI's",
        ratio(
            m("wedge-go-sdk", "hello", "pss_load_mib"),
            m("wedge-go", "hello", "pss_load_mib"),
        ),
        0.5,
        "x",
    );
    at_most(
        "Go SDK `wedge serve` start to first response (cached snapshot) <= 2x a C component's",
        ratio(
            m("wedge-go-sdk", ANY, "start_ms"),
            m("wedge-c", ANY, "start_ms"),
        ),
        2.0,
        "x",
    );
    let overhead = ratio(
        m("wedge", ANY, "obs_on_rps"),
        m("wedge", ANY, "obs_off_rps"),
    )
    .map(|x| (1.0 - x) * 100.0);
    at_most(
        "observability overhead (traces at 100%) <= 5%",
        overhead,
        5.0,
        "%",
    );
    t
}

pub fn markdown(r: &Results) -> String {
    let mut s = String::new();
    let c = &r.config;
    let _ = writeln!(s, "# wedge benchmarks, {}\n", r.date);
    let _ = writeln!(
        s,
        "Machine: {} cores, {}, Linux {}. Every server and the load generator ({}) share these cores \
         on 127.0.0.1 (the latency runs split them, see below), so absolute figures are low; the ratios are what travels.\n",
        r.machine.cores, r.machine.cpu, r.machine.kernel, c.load_generator
    );
    let latency = if c.latency_placement.is_empty() {
        // Results written before the latency runs had a server of their own.
        "one with a single connection and one paced at 50% of that contender's own throughput in \
         the same round (requests evenly spaced by a pacing thread, each timed from its send)"
            .to_string()
    } else {
        format!(
            "on a server started for them ({}): first its throughput there (closed loop), then one \
             connection, then requests paced at 50% of that throughput (evenly spaced by a pacing \
             thread, each timed from its send)",
            c.latency_placement
        )
    };
    let _ = writeln!(
        s,
        "Runs: {} round{}{}, contenders alternating (each round starts with a different one). Throughput \
         is a closed loop at {} connections for {} s after {} s of warm-up; latency runs last {} s, \
         {latency}. Figures are medians over the rounds, with the lowest and highest in brackets. \
         Generated by `bench/run.sh` from `{}.json`.\n",
        c.rounds,
        if c.rounds == 1 { "" } else { "s" },
        if c.quick { " (--quick)" } else { "" },
        c.connections,
        c.measure_s,
        c.warmup_s,
        c.latency_s,
        r.date
    );
    let _ = writeln!(s, "| contender | what | version |\n|---|---|---|");
    for ci in &r.contenders {
        let _ = writeln!(s, "| {} | {} | {} |", ci.name, ci.what, ci.version);
    }

    let _ = writeln!(
        s,
        "\n## Throughput at {} connections, 16 for image (req/s)\n\n\
         Memory under load is the peak over the run, sampled every 50 ms. RSS counts a page once per \
         mapping of it: wedge maps a module's memory image into every instance slot, so a page of it \
         that many instances read counts many times though one copy exists. PSS (smaps_rollup) \
         shares each page among its mappings and counts it once: what the process costs the machine.\n",
        c.connections
    );
    let _ = writeln!(
        s,
        "| workload | contender | req/s | vs native | vs wasmtime serve | P99 at {} conns (ms) | RSS under load (MiB) | PSS under load (MiB) |",
        c.connections
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for w in ALL.map(|w| w.name()) {
        for ci in &r.contenders {
            let Some(rps) = r.get(&ci.name, w, "rps") else {
                continue;
            };
            let vs = |other: &str| times(ratio(Some(rps.median), r.median(other, w, "rps")));
            let _ = writeln!(
                s,
                "| {w} | {} | {} | {} | {} | {} | {} | {} |",
                ci.name,
                spread(Some(rps)),
                vs("native"),
                vs("wasmtime"),
                spread(r.get(&ci.name, w, "p99_saturated_ms")),
                spread(r.get(&ci.name, w, "rss_load_mib")),
                spread(r.get(&ci.name, w, "pss_load_mib")),
            );
        }
    }

    let _ = writeln!(s, "\n## Latency (ms)\n");
    let _ = writeln!(
        s,
        "| workload | contender | 1 conn P50 | 1 conn P99 | 1 conn P99.9 | 50% load P50 | 50% load P99 | 50% load P99.9 | P99 at 50% vs native | capacity req/s | paced req/s |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
    for w in ALL.map(|w| w.name()) {
        for ci in &r.contenders {
            if r.get(&ci.name, w, "rps").is_none() {
                continue;
            }
            let g = |k: &str| spread(r.get(&ci.name, w, k));
            let vs = times(ratio(
                r.median(&ci.name, w, "p99_half_ms"),
                r.median("native", w, "p99_half_ms"),
            ));
            let _ = writeln!(
                s,
                "| {w} | {} | {} | {} | {} | {} | {} | {} | {vs} | {} | {} |",
                ci.name,
                g("p50_1conn_ms"),
                g("p99_1conn_ms"),
                g("p999_1conn_ms"),
                g("p50_half_ms"),
                g("p99_half_ms"),
                g("p999_half_ms"),
                g("rps_latency_server"),
                g("half_rps"),
            );
        }
    }

    let _ = writeln!(s, "\n## Start and memory\n");
    let _ = writeln!(
        s,
        "Start is process spawn to the first 200 on `/hello` (wedge with a warm AOT cache). Idle RSS is \
         after ten requests. Per in-flight request: {} requests held open at once on `/slow`, the growth \
         of resident memory divided by their number (wedge's figure includes each instance's linear memory); \
         private is the same growth of memory the process alone holds (smaps_rollup `Private_*`), which \
         leaves out pages several instances share, such as a Go SDK snapshot's image that instances only \
         read.\n",
        c.inflight_requests
    );
    let _ = writeln!(
        s,
        "| contender | start to first response (ms) | idle RSS (MiB) | per in-flight request, RSS (KiB) | per in-flight request, private (KiB) |\n|---|---|---|---|---|"
    );
    for ci in &r.contenders {
        let g = |k: &str| spread(r.get(&ci.name, ANY, k));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            ci.name,
            g("start_ms"),
            g("idle_rss_mib"),
            g("inflight_kib"),
            g("inflight_private_kib")
        );
    }

    let _ = writeln!(s, "\n## wedge only\n");
    let g = |k: &str| spread(r.get("wedge", ANY, k));
    let _ = writeln!(s, "| figure | value |\n|---|---|");
    let _ = writeln!(
        s,
        "| deploy the Go module to first response, cold AOT cache (ms) | {} |",
        g("deploy_cold_ms")
    );
    let _ = writeln!(
        s,
        "| the same, warm AOT cache (ms) | {} |",
        g("deploy_warm_ms")
    );
    let _ = writeln!(
        s,
        "| `wedge run` C hello, cached (ms) | {} |",
        g("run_cached_ms")
    );
    let _ = writeln!(
        s,
        "| `wasmtime run --allow-precompiled` C hello (ms) | {} |",
        g("wasmtime_run_ms")
    );
    let _ = writeln!(
        s,
        "| hello component, observability off (req/s) | {} |",
        g("obs_off_rps")
    );
    let _ = writeln!(
        s,
        "| hello component, traces at 100% to an OTLP sink (req/s) | {} |",
        g("obs_on_rps")
    );

    let _ = writeln!(
        s,
        "\n## Targets\n\n| target | measured | met |\n|---|---|---|"
    );
    for t in targets(r) {
        let met = match t.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(s, "| {} | {} | {met} |", t.what, t.measured);
    }
    if !r.notes.is_empty() {
        let _ = writeln!(s, "\n## Notes from the run\n");
        for n in &r.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    let _ = writeln!(
        s,
        "\n![throughput](throughput.png)\n\n![P99 at 50% load](p99.png)"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::Collector;

    fn results(c: Collector) -> Results {
        Results::for_test(&["wedge-c", "wasmtime", "native"], c)
    }

    #[test]
    fn ratios_and_targets_come_from_medians() {
        let mut c = Collector::default();
        for (wc, wt, n) in [
            (30000.0, 9000.0, 50000.0),
            (31000.0, 10000.0, 60000.0),
            (29000.0, 11000.0, 40000.0),
        ] {
            c.add("wedge-c", "hello", "rps", wc);
            c.add("wasmtime", "hello", "rps", wt);
            c.add("native", "hello", "rps", n);
        }
        c.add("wedge", ANY, "obs_off_rps", 1000.0);
        c.add("wedge", ANY, "obs_on_rps", 940.0);
        let r = results(c);
        let md = markdown(&r);
        assert!(
            md.contains("| hello | wedge-c | 30.0k (29.0k–31.0k) | 0.60x | 3.00x |"),
            "{md}"
        );
        let t = targets(&r);
        let find = |p: &str| t.iter().find(|t| t.what.starts_with(p)).unwrap();
        assert_eq!(find("hello component: wedge >= 3x").met, Some(true));
        assert_eq!(find("hello component: wedge >= 0.5x").met, Some(true));
        let obs = find("observability");
        assert_eq!((obs.measured.as_str(), obs.met), ("6.00%", Some(false)));
        assert_eq!(find("Go WAGI hello").met, None);
        assert!(
            md.contains(
                "| Go WAGI hello >= 5x the seed's 1,840 req/s (9,200) | not measured | – |"
            )
        );
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(12345.0), "12.3k");
        assert_eq!(num(123.4), "123");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(spread(None), "–");
    }
}
