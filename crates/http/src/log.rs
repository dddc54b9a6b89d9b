//! The server's log lines on stderr: one access line per request (text or
//! JSON), warnings with the request id, and guest output line by line.
//! The level (`error`, `warn`, `info`, `debug`) can change at runtime.
//!
//! Lines go through a channel to one writer thread, which writes whatever
//! has queued up in one go: a request never waits on the terminal or the
//! disk, and under load many lines share one write. The queue holds at most
//! [`MAX_QUEUED_BYTES`]; when a slow terminal or disk lets it fill, further
//! lines are dropped and counted (`wedge_log_lines_dropped_total`) rather
//! than held in memory without bound.
//!
//! The libraries underneath (Wasmtime, hyper, h2, rustls) report through
//! `tracing`; [`Forward`] is a `tracing-subscriber` layer that writes their
//! events here, through the same bounded queue, so their diagnostics are
//! not lost. wedge's own lines keep their hand-written formatting: the
//! access line is written on every request, and formatting it by hand
//! costs one `format!` where a `tracing` event would also dispatch through
//! the subscriber and visit each field.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::time::SystemTime;

enum Message {
    Text(String),
    /// Acknowledged once everything sent before it is written.
    Flush(Sender<()>),
}

static WRITER: OnceLock<Sender<Message>> = OnceLock::new();
/// Bytes of log text queued and not yet written.
static QUEUED: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Most bytes of log text waiting for the writer.
pub const MAX_QUEUED_BYTES: usize = 16 << 20;

/// Lines dropped so far because the queue was full.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
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

fn writer() -> &'static Sender<Message> {
    WRITER.get_or_init(|| {
        let (tx, rx) = channel::<Message>();
        std::thread::Builder::new()
            .name("wedge-log".into())
            .spawn(move || {
                let mut batch = String::new();
                let mut acks = Vec::new();
                while let Ok(first) = rx.recv() {
                    let mut next = Some(first);
                    while let Some(m) = next {
                        match m {
                            Message::Text(t) => batch.push_str(&t),
                            Message::Flush(ack) => acks.push(ack),
                        }
                        next = if batch.len() < (256 << 10) {
                            rx.try_recv().ok()
                        } else {
                            None
                        };
                    }
                    let _ = std::io::stderr().lock().write_all(batch.as_bytes());
                    QUEUED.fetch_sub(batch.len(), Ordering::AcqRel);
                    batch.clear();
                    for ack in acks.drain(..) {
                        let _ = ack.send(());
                    }
                }
            })
            .expect("spawn the log thread");
        tx
    })
}

fn emit(text: String) {
    let len = text.len();
    if QUEUED.fetch_add(len, Ordering::AcqRel) + len > MAX_QUEUED_BYTES {
        QUEUED.fetch_sub(len, Ordering::AcqRel);
        DROPPED.fetch_add(text.matches('\n').count().max(1) as u64, Ordering::Relaxed);
        return;
    }
    if writer().send(Message::Text(text)).is_err() {
        QUEUED.fetch_sub(len, Ordering::AcqRel);
    }
}

fn stamp() -> String {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// Logs one line.
pub fn line(level: &str, request_id: &str, function: &str, message: &str) {
    if !enabled(level) {
        return;
    }
    if JSON.load(Ordering::Relaxed) {
        emit(format!(
            "{{\"time\":{},\"level\":\"{level}\",\"request_id\":{},\"function\":{},\"message\":{}}}\n",
            stamp(),
            json_str(request_id),
            json_str(function),
            json_str(message)
        ));
        return;
    }
    emit(format!(
        "{} {level} [{request_id}] {function}: {message}\n",
        stamp()
    ));
}

/// One request, for the access log.
pub struct Access<'a> {
    pub request_id: &'a str,
    /// The request's trace, when tracing is on.
    pub trace_id: Option<&'a str>,
    pub method: &'a str,
    pub route: &'a str,
    pub function: &'a str,
    pub status: u16,
    pub duration: std::time::Duration,
    pub guest: Option<&'a crate::function::GuestStats>,
    /// `ok`, or the failure's kind.
    pub outcome: &'a str,
}

/// Logs the access line of one request (level `info`).
pub fn access(a: &Access<'_>) {
    if !enabled("info") {
        return;
    }
    let dur_us = a.duration.as_micros();
    let guest_us = a.guest.map(|g| g.guest.as_micros());
    let mem = a.guest.and_then(|g| g.peak_memory);
    let text = if JSON.load(Ordering::Relaxed) {
        let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
        format!(
            "{{\"time\":{},\"level\":\"info\",\"request_id\":{},\"trace_id\":{},\"method\":{},\"route\":{},\"function\":{},\"status\":{},\"duration_us\":{dur_us},\"guest_us\":{},\"peak_memory_bytes\":{},\"outcome\":{}}}\n",
            stamp(),
            json_str(a.request_id),
            opt(a.trace_id.map(json_str)),
            json_str(a.method),
            json_str(a.route),
            json_str(a.function),
            a.status,
            opt(guest_us.map(|v| v.to_string())),
            opt(mem.map(|v| v.to_string())),
            json_str(a.outcome),
        )
    } else {
        let guest = guest_us
            .map(|g| format!(" guest={g}us"))
            .unwrap_or_default();
        let mem = mem.map(|m| format!(" mem={m}")).unwrap_or_default();
        let trace = a
            .trace_id
            .map(|t| format!(" trace={t}"))
            .unwrap_or_default();
        format!(
            "{} info [{}] {}: {} {} {} {dur_us}us{guest}{mem}{trace} {}\n",
            stamp(),
            a.request_id,
            if a.function.is_empty() {
                "-"
            } else {
                a.function
            },
            a.method,
            if a.route.is_empty() { "-" } else { a.route },
            a.status,
            a.outcome
        )
    };
    emit(text);
}

/// A JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Logs each line of a guest's stderr (or stdout) with the request id.
pub fn guest_output(stream: &str, request_id: &str, function: &str, bytes: &[u8], truncated: bool) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let now = stamp();
    let mut out = String::with_capacity(bytes.len() + 64);
    for l in text.lines() {
        out.push_str(&format!(
            "{now} guest [{request_id}] {function} {stream}: {l}\n"
        ));
    }
    if truncated {
        out.push_str(&format!(
            "{now} guest [{request_id}] {function} {stream}: (truncated)\n"
        ));
    }
    emit(out);
}

/// Forwards `tracing` events from wedge's libraries to this log.
pub struct Forward;

/// An event's message and fields as `message key=value ...`.
#[derive(Default)]
struct Text(String);

impl tracing::field::Visit for Text {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, "{}={value:?}", field.name());
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Forward {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let meta = event.metadata();
        let level = match *meta.level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        let mut text = Text::default();
        event.record(&mut text);
        line(level, "-", meta.target(), &text.0);
    }
}

/// Installs [`Forward`] for the process: library events (and `log` records)
/// at `warn` and above,
/// or as `RUST_LOG` says (`target=level,...`, e.g. `wasmtime=debug,warn`).
/// `Err` when `RUST_LOG` does not parse.
pub fn forward_library_events(rust_log: Option<&str>) -> Result<(), String> {
    use tracing_subscriber::layer::SubscriberExt;
    let filter: tracing_subscriber::filter::Targets = match rust_log {
        Some(spec) if !spec.trim().is_empty() => spec
            .parse()
            .map_err(|e| format!("RUST_LOG `{spec}`: {e}"))?,
        _ => tracing_subscriber::filter::Targets::new()
            .with_default(tracing::level_filters::LevelFilter::WARN),
    };
    use tracing_subscriber::util::SubscriberInitExt;
    // `try_init` also routes the `log` crate's records (Cranelift, parts of
    // Wasmtime) through the same filter and layer.
    tracing_subscriber::registry()
        .with(filter)
        .with(Forward)
        .try_init()
        .map_err(|e| e.to_string())
}

/// Waits until every line logged so far has been written (at shutdown).
pub fn flush() {
    let (tx, rx) = channel();
    if writer().send(Message::Flush(tx)).is_ok() {
        let _ = rx.recv();
    }
}
