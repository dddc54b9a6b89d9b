//! Forwards the libraries' `tracing` events (and `log` records) to wedge's log.

use super::line;

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
