//! Measures what one access-log line costs the process: wedge's hand-written
//! formatter (`wedge_observe::log`) against the `tracing` path that would replace
//! it (an event through `tracing-subscriber`'s fmt layer, a reloadable level
//! filter, and `tracing-appender`'s bounded non-blocking writer).
//!
//! Each variant runs in a child process with stderr on /dev/null, so neither
//! sees the other's global state. The cost is the process's CPU time from
//! `/proc/self/stat` (every thread, the writer included; 10 ms ticks, so
//! runs are long), divided by the number of lines; the calling thread's own
//! share comes from `/proc/thread-self/schedstat`. Compare it with the CPU
//! a hello request costs the server (`bench/ab.sh` prints that) to get the
//! share of the hot path.
//!
//! Usage: log-cost [LINES] [ROUNDS]

use std::process::{Command, Stdio};
use std::time::Duration;

const VARIANTS: [&str; 4] = ["hand-text", "tracing-text", "hand-json", "tracing-json"];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let lines = args[3].parse().expect("lines");
        child(&args[2], lines);
        return;
    }
    let lines: u64 = args.get(1).map_or(1_000_000, |s| s.parse().expect("LINES"));
    let rounds: usize = args.get(2).map_or(5, |s| s.parse().expect("ROUNDS"));
    let me = std::env::current_exe().expect("own path");
    println!("# {lines} access lines per run, {rounds} rounds, stderr to /dev/null");
    println!("# variant        total-ns/line  caller-ns/line  dropped");
    let mut totals: Vec<Vec<f64>> = vec![Vec::new(); VARIANTS.len()];
    for _ in 0..rounds {
        for (i, v) in VARIANTS.iter().enumerate() {
            let out = Command::new(&me)
                .args(["--child", v, &lines.to_string()])
                .stderr(Stdio::null())
                .output()
                .expect("run child");
            let text = String::from_utf8_lossy(&out.stdout);
            print!("{text}");
            let total: f64 = text
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("child output");
            totals[i].push(total);
        }
    }
    println!("# medians:");
    for (v, t) in VARIANTS.iter().zip(totals.iter_mut()) {
        t.sort_by(f64::total_cmp);
        println!("{v:<16} {:>8.0} ns/line", t[t.len() / 2]);
    }
}

/// CPU time of the whole process (threads that have exited included, so
/// the writer thread counts after it is joined) and of the calling thread,
/// in nanoseconds.
fn cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    // Fields after the command name's closing parenthesis: utime and stime
    // are the 12th and 13th, in clock ticks (100 per second on Linux).
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|v| v.parse().expect("tick count"))
        .collect();
    let all = (f[0] + f[1]) * 10_000_000;
    let me = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    (all, me)
}

/// Logs the access line of request number `n`.
type LogOne = Box<dyn Fn(u64)>;
/// Lines dropped so far.
type Count = Box<dyn Fn() -> u64>;

fn child(variant: &str, lines: u64) {
    let stats = wedge_observe::stats::GuestStats {
        guest: Duration::from_micros(41),
        peak_memory: Some(131_072),
        instantiate: None,
        fuel: None,
        cpu: None,
    };
    let json = variant.ends_with("json");
    let (line, dropped): (LogOne, Count) = if variant.starts_with("hand") {
        wedge_observe::log::set_level("info").expect("level");
        wedge_observe::log::set_json(json);
        (
            Box::new(move |n| {
                let id = format!("01JDX3K4{n:08X}");
                wedge_observe::log::access(&wedge_observe::log::Access {
                    request_id: &id,
                    trace_id: None,
                    method: "GET",
                    route: "/hello",
                    function: "hello",
                    version: "v1",
                    status: 200,
                    duration: Duration::from_micros(57),
                    guest: Some(&stats),
                    outcome: "ok",
                })
            }),
            Box::new(wedge_observe::log::dropped),
        )
    } else {
        let counter = tracing_install(json);
        (
            Box::new(move |n| {
                let id = format!("01JDX3K4{n:08X}");
                tracing::info!(
                    target: "wedge::access",
                    request_id = %id,
                    method = "GET",
                    route = "/hello",
                    function = "hello",
                    status = 200u16,
                    duration_us = 57u64,
                    guest_us = stats.guest.as_micros() as u64,
                    peak_memory_bytes = stats.peak_memory,
                    outcome = "ok",
                )
            }),
            Box::new(move || counter.dropped_lines() as u64),
        )
    };
    for n in 0..lines / 10 {
        line(n);
    }
    if variant.starts_with("hand") {
        wedge_observe::log::flush();
    } else {
        // tracing-appender's writer can only be drained by stopping it, so
        // give it time to write the warm-up's lines instead.
        std::thread::sleep(Duration::from_millis(500));
    }
    let (all0, me0) = cpu();
    for n in 0..lines {
        line(n);
    }
    flush(variant);
    let (all1, me1) = cpu();
    println!(
        "{variant:<16} {:>8.0} {:>15.0} {:>8}",
        (all1 - all0) as f64 / lines as f64,
        (me1 - me0) as f64 / lines as f64,
        dropped()
    );
}

static GUARD: std::sync::OnceLock<
    std::sync::Mutex<Option<tracing_appender::non_blocking::WorkerGuard>>,
> = std::sync::OnceLock::new();

/// The subscriber wedge would install: a level filter that the admin API can
/// change at runtime, the fmt layer, and a bounded non-blocking writer that
/// drops lines when full (as wedge's own queue does).
fn tracing_install(json: bool) -> tracing_appender::non_blocking::ErrorCounter {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(std::io::stderr());
    let counter = writer.error_counter();
    let (filter, _handle) =
        tracing_subscriber::reload::Layer::new(tracing_subscriber::filter::LevelFilter::INFO);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(writer);
    let registry = tracing_subscriber::registry().with(filter);
    if json {
        registry.with(fmt.json()).init();
    } else {
        registry.with(fmt).init();
    }
    GUARD
        .get_or_init(Default::default)
        .lock()
        .expect("guard")
        .replace(guard);
    counter
}

/// Waits until every line so far is written, stopping tracing's writer.
fn flush(variant: &str) {
    if variant.starts_with("hand") {
        wedge_observe::log::flush();
    } else if let Some(guard) = GUARD
        .get_or_init(Default::default)
        .lock()
        .expect("guard")
        .take()
    {
        // Dropping the guard drains the queue and joins the writer thread.
        drop(guard);
    }
}
