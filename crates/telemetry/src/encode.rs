//! Text exposition: the Prometheus text format (0.0.4), or OpenMetrics 1.0
//! when the scraper asks for it.

use crate::metric::{Family, Series, Value};
use crate::names::Kind;
use std::fmt::Write;

/// Content type of the Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// Content type of OpenMetrics.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Accumulates families into one exposition.
pub struct Encoder {
    out: String,
    openmetrics: bool,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(names: &[&str], values: &[String], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some((n, v)) = extra {
        parts.push(format!("{n}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn number(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

impl Encoder {
    pub fn new(openmetrics: bool) -> Self {
        Encoder {
            out: String::with_capacity(16 << 10),
            openmetrics,
        }
    }

    fn header(&mut self, name: &str, help: &str, kind: Kind) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        // OpenMetrics names the counter family without `_total`.
        let family = if kind == "counter" && !self.openmetrics {
            format!("{name}_total")
        } else {
            name.to_string()
        };
        let _ = writeln!(self.out, "# HELP {family} {help}");
        let _ = writeln!(self.out, "# TYPE {family} {kind}");
    }

    /// Writes every series of `family` (nothing if it has none yet).
    pub fn family<T: Series>(&mut self, family: &Family<T>) {
        let series = family.snapshot();
        if series.is_empty() {
            return;
        }
        let d = family.desc;
        self.header(d.name, d.help, d.kind);
        for (values, s) in series {
            match s.value() {
                Value::Counter(c) => {
                    let _ = writeln!(
                        self.out,
                        "{}_total{} {}",
                        d.name,
                        labels(family.labels, &values, None),
                        c.get()
                    );
                }
                Value::Gauge(g) => {
                    let _ = writeln!(
                        self.out,
                        "{}{} {}",
                        d.name,
                        labels(family.labels, &values, None),
                        g.get()
                    );
                }
                Value::Histogram(h) => {
                    let cumulative = h.cumulative();
                    let bounds = h.bounds().iter().copied().chain([f64::INFINITY]);
                    for (le, n) in bounds.zip(&cumulative) {
                        let l = labels(family.labels, &values, Some(("le", number(le))));
                        let _ = writeln!(self.out, "{}_bucket{l} {n}", d.name);
                    }
                    let l = labels(family.labels, &values, None);
                    let _ = writeln!(self.out, "{}_sum{l} {}", d.name, h.sum());
                    let _ = writeln!(
                        self.out,
                        "{}_count{l} {}",
                        d.name,
                        cumulative.last().copied().unwrap_or(0)
                    );
                }
            }
        }
    }

    /// Writes one unlabeled sample.
    pub fn sample(&mut self, name: &str, help: &str, kind: Kind, labels_text: &str, value: f64) {
        self.header(name, help, kind);
        let suffix = if kind == Kind::Counter { "_total" } else { "" };
        let _ = writeln!(self.out, "{name}{suffix}{labels_text} {value}");
    }

    pub fn finish(mut self) -> String {
        if self.openmetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metric::{Counter, Histogram};
    use crate::names::{DURATION_BUCKETS, FAAS_INVOCATIONS, HTTP_SERVER_REQUEST_DURATION};

    #[test]
    fn prometheus_and_openmetrics_text() {
        let c = Family::new(FAAS_INVOCATIONS, &["function"], Counter::default);
        c.with(&["hello \"world\""]).add(3);
        let h = Family::new(HTTP_SERVER_REQUEST_DURATION, &["http_route"], || {
            Histogram::new(&DURATION_BUCKETS)
        });
        h.with(&["/api/..."]).observe(0.02);
        let mut e = Encoder::new(false);
        e.family(&c);
        e.family(&h);
        let text = e.finish();
        assert!(
            text.contains("# TYPE faas_invocations_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("faas_invocations_total{function=\"hello \\\"world\\\"\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("http_server_request_duration_seconds_bucket{http_route=\"/api/...\",le=\"0.01\"} 0\n"), "{text}");
        assert!(text.contains("http_server_request_duration_seconds_bucket{http_route=\"/api/...\",le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("http_server_request_duration_seconds_bucket{http_route=\"/api/...\",le=\"+Inf\"} 1\n"), "{text}");
        assert!(
            text.contains(
                "http_server_request_duration_seconds_count{http_route=\"/api/...\"} 1\n"
            ),
            "{text}"
        );

        let mut e = Encoder::new(true);
        e.family(&c);
        let text = e.finish();
        assert!(text.contains("# TYPE faas_invocations counter\n"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn accept_negotiation() {
        assert!(wants_openmetrics(Some(
            "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"
        )));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}
