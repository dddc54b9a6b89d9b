//! The server's log lines on stderr: one access line per request (text or
//! JSON), warnings with the request id, and guest output line by line.
//! The level (`error`, `warn`, `info`, `debug`) can change at runtime.
//!
//! Each thread formats its line into a reused buffer and appends it to one
//! bounded [`Queue`]; a single writer thread writes whatever has gathered in
//! one call, so a request never waits on the terminal or the disk. The queue
//! holds at most [`MAX_QUEUED_BYTES`]; when a slow terminal or disk lets it
//! fill, further lines are dropped and counted
//! (`wedge_log_lines_dropped_total`) rather than held without bound.
//!
//! The libraries underneath (Wasmtime, hyper, h2, rustls) report through
//! `tracing`; [`Forward`] is a `tracing-subscriber` layer that writes their
//! events here, through the same queue, so their diagnostics are not lost.
//!
//! wedge's own lines are formatted by hand, on measurement: `log-cost` in
//! `bench/harness` puts an access line at 0.39 µs of CPU (text) and 0.54 µs
//! (JSON) this way, against 3.9 µs and 8.8 µs as a `tracing` event through
//! `tracing-subscriber`'s fmt layer and `tracing-appender`'s non-blocking
//! writer. A hello request costs the server about 80 µs, so the `tracing`
//! path would add 4-10% to it, far past the 1% allowed
//! (`bench/results/log-cost-2026-11-30.txt`).

mod forward;
mod queue;

pub use forward::{Forward, forward_library_events};
pub use queue::Queue;

use std::cell::RefCell;
use std::fmt::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::SystemTime;

/// Most bytes of log text waiting for the writer.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

static QUEUE: OnceLock<Queue> = OnceLock::new();

fn queue() -> &'static Queue {
    QUEUE.get_or_init(|| Queue::start("wedge-log", Box::new(std::io::stderr()), MAX_QUEUED_BYTES))
}

/// Starts the writer thread now, so that the first request does not wait
/// for it to be spawned.
pub fn start() {
    queue();
}

/// Lines dropped so far because the queue was full.
pub fn dropped() -> u64 {
    QUEUE.get().map_or(0, Queue::dropped)
}

static LEVEL: AtomicU8 = AtomicU8::new(2);
static JSON: AtomicBool = AtomicBool::new(false);

const LEVELS: [&str; 4] = ["error", "warn", "info", "debug"];

/// Sets the level by name; `Err` lists the names.
pub fn set_level(name: &str) -> Result<(), String> {
    let i = LEVELS
        .iter()
        .position(|l| l.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| {
            format!(
                "unknown log level `{}` (allowed: {})",
                name.trim(),
                LEVELS.join(", ")
            )
        })?;
    LEVEL.store(i as u8, Ordering::Relaxed);
    Ok(())
}

/// The current level's name.
pub fn level() -> &'static str {
    LEVELS[LEVEL.load(Ordering::Relaxed) as usize]
}

fn enabled(level: &str) -> bool {
    LEVELS.iter().position(|l| *l == level).unwrap_or(0) <= LEVEL.load(Ordering::Relaxed) as usize
}

/// Writes access lines as JSON objects instead of text.
pub fn set_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

thread_local! {
    /// Each thread formats its lines here, reusing the allocation.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Formats lines into this thread's scratch buffer and queues them.
fn emit(format: impl FnOnce(&mut String)) {
    SCRATCH.with(|cell| {
        // A `Forward`ed event logged while formatting (not done today)
        // would find the buffer borrowed; it gets a fresh one.
        let mut fresh = String::new();
        let mut guard = cell.try_borrow_mut();
        let buf = match guard.as_deref_mut() {
            Ok(b) => b,
            Err(_) => &mut fresh,
        };
        buf.clear();
        format(buf);
        queue().push(buf.as_bytes());
        if buf.capacity() > 64 << 10 {
            *buf = String::new();
        }
    });
}

/// Unix time with milliseconds: `1764496142.123`.
fn stamp(out: &mut String) {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(out, "{}.{:03}", d.as_secs(), d.subsec_millis());
}

/// Logs one line.
pub fn line(level: &str, request_id: &str, function: &str, message: &str) {
    if !enabled(level) {
        return;
    }
    let json = JSON.load(Ordering::Relaxed);
    emit(|out| {
        if json {
            out.push_str("{\"time\":");
            stamp(out);
            let _ = write!(out, ",\"level\":\"{level}\",\"request_id\":");
            push_json_str(out, request_id);
            out.push_str(",\"function\":");
            push_json_str(out, function);
            out.push_str(",\"message\":");
            push_json_str(out, message);
            out.push_str("}\n");
        } else {
            stamp(out);
            let _ = writeln!(out, " {level} [{request_id}] {function}: {message}");
        }
    });
}

/// One request, for the access log.
pub struct Access<'a> {
    pub request_id: &'a str,
    /// The request's trace, when tracing is on.
    pub trace_id: Option<&'a str>,
    pub method: &'a str,
    pub route: &'a str,
    pub function: &'a str,
    /// The version that served; empty when none did.
    pub version: &'a str,
    pub status: u16,
    pub duration: std::time::Duration,
    pub guest: Option<&'a crate::stats::GuestStats>,
    /// `ok`, or the failure's kind.
    pub outcome: &'a str,
}

/// Logs the access line of one request (level `info`).
pub fn access(a: &Access<'_>) {
    if !enabled("info") {
        return;
    }
    let json = JSON.load(Ordering::Relaxed);
    emit(|out| {
        if json {
            access_json(out, a)
        } else {
            access_text(out, a)
        }
    });
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn access_text(out: &mut String, a: &Access<'_>) {
    stamp(out);
    let _ = write!(
        out,
        " info [{}] {}{}{}: {} {} {} {}us",
        a.request_id,
        or_dash(a.function),
        if a.version.is_empty() { "" } else { "@" },
        a.version,
        a.method,
        or_dash(a.route),
        a.status,
        a.duration.as_micros()
    );
    if let Some(g) = a.guest {
        let _ = write!(out, " guest={}us", g.guest.as_micros());
        if let Some(m) = g.peak_memory {
            let _ = write!(out, " mem={m}");
        }
        if let Some(c) = g.cpu {
            let _ = write!(out, " cpu={}us", c.as_micros());
        }
    }
    if let Some(t) = a.trace_id {
        let _ = write!(out, " trace={t}");
    }
    let _ = writeln!(out, " {}", a.outcome);
}

fn access_json(out: &mut String, a: &Access<'_>) {
    out.push_str("{\"time\":");
    stamp(out);
    out.push_str(",\"level\":\"info\",\"request_id\":");
    push_json_str(out, a.request_id);
    out.push_str(",\"trace_id\":");
    match a.trace_id {
        Some(t) => push_json_str(out, t),
        None => out.push_str("null"),
    }
    out.push_str(",\"method\":");
    push_json_str(out, a.method);
    out.push_str(",\"route\":");
    push_json_str(out, a.route);
    out.push_str(",\"function\":");
    push_json_str(out, a.function);
    out.push_str(",\"version\":");
    push_json_str(out, a.version);
    let _ = write!(
        out,
        ",\"status\":{},\"duration_us\":{},\"guest_us\":",
        a.status,
        a.duration.as_micros()
    );
    match a.guest {
        Some(g) => {
            let _ = write!(out, "{}", g.guest.as_micros());
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"peak_memory_bytes\":");
    match a.guest.and_then(|g| g.peak_memory) {
        Some(m) => {
            let _ = write!(out, "{m}");
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"cpu_us\":");
    match a.guest.and_then(|g| g.cpu) {
        Some(c) => {
            let _ = write!(out, "{}", c.as_micros());
        }
        None => out.push_str("null"),
    }
    out.push_str(",\"outcome\":");
    push_json_str(out, a.outcome);
    out.push_str("}\n");
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    out
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Logs each line of a guest's stderr (or stdout) with the request id.
pub fn guest_output(stream: &str, request_id: &str, function: &str, bytes: &[u8], truncated: bool) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    emit(|out| {
        let mut now = String::new();
        stamp(&mut now);
        let lines = text.lines().chain(truncated.then_some("(truncated)"));
        for l in lines {
            let _ = writeln!(out, "{now} guest [{request_id}] {function} {stream}: {l}");
        }
    });
}

/// Waits until every line logged so far has been written (at shutdown).
pub fn flush() {
    if let Some(q) = QUEUE.get() {
        q.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn sample<'a>(guest: Option<&'a crate::stats::GuestStats>) -> Access<'a> {
        Access {
            request_id: "r-1",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            method: "GET",
            route: "/a\"b\n\u{1}",
            function: "",
            version: "",
            status: 200,
            duration: Duration::from_micros(57),
            guest,
            outcome: "ok",
        }
    }

    #[test]
    fn text_access_line_after_its_stamp() {
        let g = crate::stats::GuestStats {
            guest: Duration::from_micros(41),
            peak_memory: Some(65536),
            instantiate: None,
            fuel: None,
            cpu: Some(Duration::from_micros(23)),
        };
        let mut out = String::new();
        access_text(&mut out, &sample(Some(&g)));
        let (stamp, rest) = out.split_once(' ').unwrap();
        assert!(stamp.parse::<f64>().is_ok(), "{stamp}");
        assert_eq!(
            rest,
            "info [r-1] -: GET /a\"b\n\u{1} 200 57us guest=41us mem=65536 cpu=23us \
             trace=4bf92f3577b34da6a3ce929d0e0e4736 ok\n"
        );
    }

    #[test]
    fn json_access_line_parses_with_escapes_and_nulls() {
        let mut out = String::new();
        access_json(&mut out, &sample(None));
        assert!(out.ends_with("}\n"));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["route"], "/a\"b\n\u{1}");
        assert_eq!(v["function"], "");
        assert_eq!(v["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["guest_us"], serde_json::Value::Null);
        assert_eq!(v["peak_memory_bytes"], serde_json::Value::Null);
        assert_eq!(v["cpu_us"], serde_json::Value::Null);
        assert_eq!(v["duration_us"], 57);
        assert!(v["time"].as_f64().is_some());
    }
}
