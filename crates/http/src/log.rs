//! The server's log lines on stderr: `time level [request-id] function: message`.
//! (Structured JSON logs come with the observability work.)
//!
//! Lines go through a channel to one writer thread, which writes whatever
//! has queued up in one go: a request never waits on the terminal or the
//! disk, and under load many lines share one write.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::mpsc::{Sender, channel};
use std::time::SystemTime;

enum Message {
    Text(String),
    /// Acknowledged once everything sent before it is written.
    Flush(Sender<()>),
}

static WRITER: OnceLock<Sender<Message>> = OnceLock::new();

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
    let _ = writer().send(Message::Text(text));
}

fn stamp() -> String {
    let d = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", d.as_secs(), d.subsec_millis())
}

/// Logs one line.
pub fn line(level: &str, request_id: &str, function: &str, message: &str) {
    emit(format!(
        "{} {level} [{request_id}] {function}: {message}\n",
        stamp()
    ));
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

/// Waits until every line logged so far has been written (at shutdown).
pub fn flush() {
    let (tx, rx) = channel();
    if writer().send(Message::Flush(tx)).is_ok() {
        let _ = rx.recv();
    }
}
