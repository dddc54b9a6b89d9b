//! The server's log lines on stderr: `time level [request-id] function: message`.
//! (Structured JSON logs come with the observability work.)

use std::io::Write;
use std::time::SystemTime;

fn stamp() -> String {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// Writes one line; lines of one call never interleave with others.
pub fn line(level: &str, request_id: &str, function: &str, message: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{} {level} [{request_id}] {function}: {message}",
        stamp()
    );
}

/// Logs each line of a guest's stderr (or stdout) with the request id.
pub fn guest_output(stream: &str, request_id: &str, function: &str, bytes: &[u8], truncated: bool) {
    if bytes.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    let mut err = std::io::stderr().lock();
    let now = stamp();
    for l in text.lines() {
        let _ = writeln!(err, "{now} guest [{request_id}] {function} {stream}: {l}");
    }
    if truncated {
        let _ = writeln!(
            err,
            "{now} guest [{request_id}] {function} {stream}: (truncated)"
        );
    }
}
