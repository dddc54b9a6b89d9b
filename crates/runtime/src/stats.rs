//! Execution statistics of one run: what `--stats` prints and `--stats-json`
//! writes. Cheap to collect, so always collected.

use crate::units::{format_bytes, format_duration};
use std::fmt::Write as _;
use std::time::Duration;

/// Everything measured about one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    pub module: String,
    pub module_sha256: String,
    pub module_size_bytes: u64,
    pub kind: &'static str,
    /// `hit`, `miss`, `rejected`, `disabled` or `precompiled`.
    pub cache: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_note: Option<String>,
    /// Compiling, or verifying and loading a cached artifact.
    pub compile_us: u64,
    /// Linking and instantiating.
    pub instantiate_us: u64,
    /// Running the guest's entry point.
    pub run_us: u64,
    /// On-CPU time of the guest's own code (host calls not included).
    pub cpu_us: u64,
    pub fuel_limit: Option<u64>,
    pub fuel_consumed: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub peak_memory_bytes: u64,
    pub memory_grow_failures: u64,
    /// `exit`, `trap`, `memory-limit`, `timeout` or `fuel`.
    pub outcome: &'static str,
    pub exit_code: i32,
    pub trap: Option<String>,
    /// Peak resident memory of the whole wedge process: filled in by its
    /// caller when the statistics are shown ([`host_peak_rss`]).
    pub host_peak_rss_bytes: Option<u64>,
}

fn micros(d: Duration) -> u64 {
    d.as_micros().try_into().unwrap_or(u64::MAX)
}

impl Stats {
    pub fn set_times(&mut self, compile: Duration, instantiate: Duration, run: Duration) {
        self.compile_us = micros(compile);
        self.instantiate_us = micros(instantiate);
        self.run_us = micros(run);
    }

    /// The human table `--stats` prints.
    pub fn table(&self) -> String {
        let us = |n: u64| format_duration(Duration::from_micros(n));
        let mut rows: Vec<(&str, String)> = vec![
            ("module", format!("{} ({})", self.module, self.kind)),
            ("sha256", self.module_sha256.clone()),
            ("size", format_bytes(self.module_size_bytes)),
            ("aot cache", self.cache.to_string()),
        ];
        if let Some(note) = &self.cache_note {
            rows.push(("cache note", note.clone()));
        }
        rows.push(("compile/load", us(self.compile_us)));
        rows.push(("instantiate", us(self.instantiate_us)));
        rows.push(("run", us(self.run_us)));
        rows.push(("guest cpu", us(self.cpu_us)));
        if let Some(fuel) = self.fuel_consumed {
            let limit = self
                .fuel_limit
                .map(|l| format!(" of {l}"))
                .unwrap_or_default();
            rows.push(("fuel consumed", format!("{fuel}{limit}")));
        }
        let limit = self
            .memory_limit_bytes
            .map(|l| format!(" (limit {})", format_bytes(l)))
            .unwrap_or_default();
        rows.push((
            "peak memory",
            format!("{}{limit}", format_bytes(self.peak_memory_bytes)),
        ));
        rows.push(("failed grows", self.memory_grow_failures.to_string()));
        if let Some(rss) = self.host_peak_rss_bytes {
            rows.push(("host peak rss", format_bytes(rss)));
        }
        rows.push((
            "outcome",
            format!("{} (exit status {})", self.outcome, self.exit_code),
        ));
        if let Some(trap) = &self.trap {
            rows.push(("trap", trap.clone()));
        }
        let mut out = String::from("── wedge statistics ──\n");
        for (k, v) in rows {
            let _ = writeln!(out, "{k:>14}  {v}");
        }
        out
    }
}

/// Peak resident set size of this process (Linux `VmHWM`).
pub fn host_peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
