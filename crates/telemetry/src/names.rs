//! Every exported metric: name, help text and kind, in one place.

/// What kind of series a metric is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A metric's identity.
#[derive(Clone, Copy, Debug)]
pub struct Desc {
    /// Prometheus name without the `_total` suffix of counters.
    pub name: &'static str,
    pub help: &'static str,
    pub kind: Kind,
}

macro_rules! desc {
    ($id:ident, $name:literal, $kind:ident, $help:literal) => {
        pub const $id: Desc = Desc {
            name: $name,
            help: $help,
            kind: Kind::$kind,
        };
    };
}

desc!(
    HTTP_SERVER_REQUEST_DURATION,
    "http_server_request_duration_seconds",
    Histogram,
    "Duration of HTTP server requests."
);
desc!(
    HTTP_SERVER_ACTIVE_REQUESTS,
    "http_server_active_requests",
    Gauge,
    "Number of active HTTP server requests."
);
desc!(
    HTTP_SERVER_REQUEST_BODY_SIZE,
    "http_server_request_body_size_bytes",
    Histogram,
    "Size of HTTP server request bodies."
);
desc!(
    HTTP_SERVER_RESPONSE_BODY_SIZE,
    "http_server_response_body_size_bytes",
    Histogram,
    "Size of HTTP server response bodies (as declared or buffered)."
);
desc!(
    FAAS_INVOCATIONS,
    "faas_invocations",
    Counter,
    "Number of successful and failed invocations of a function."
);
desc!(
    FAAS_ERRORS,
    "faas_errors",
    Counter,
    "Number of invocation errors, by reason."
);
desc!(
    FAAS_TIMEOUTS,
    "faas_timeouts",
    Counter,
    "Number of invocation timeouts."
);
desc!(
    FAAS_COLDSTARTS,
    "faas_coldstarts",
    Counter,
    "Number of first instantiations after a function was loaded."
);
desc!(
    FAAS_INIT_DURATION,
    "faas_init_duration_seconds",
    Histogram,
    "Time spent compiling or loading the function from the AOT cache."
);
desc!(
    FAAS_INVOKE_DURATION,
    "faas_invoke_duration_seconds",
    Histogram,
    "Time spent in the guest, from instantiation to its response."
);
desc!(
    WASM_MEMORY_PEAK,
    "wasm_memory_peak_bytes",
    Histogram,
    "Peak linear memory of each request's instance."
);
desc!(
    WASM_MEMORY_GROW_FAILURES,
    "wasm_memory_grow_failures",
    Counter,
    "memory.grow requests refused by the memory limit."
);
desc!(
    WEDGE_QUEUE_WAIT,
    "wedge_queue_wait_seconds",
    Histogram,
    "Time requests waited for a concurrency slot."
);
desc!(
    WEDGE_REJECTED,
    "wedge_rejected",
    Counter,
    "Requests rejected before reaching the guest, by reason."
);
desc!(
    WASM_MODULE_SIZE,
    "wasm_module_size_bytes",
    Gauge,
    "Size of each function's WebAssembly binary."
);
desc!(
    WEDGE_AOT_CACHE,
    "wedge_aot_cache_loads",
    Counter,
    "Function loads by AOT cache outcome (hit, miss, rejected, disabled, precompiled)."
);
desc!(
    PROCESS_RESIDENT_MEMORY,
    "process_resident_memory_bytes",
    Gauge,
    "Resident memory size in bytes."
);
desc!(
    PROCESS_CPU_SECONDS,
    "process_cpu_seconds",
    Counter,
    "Total user and system CPU time spent in seconds."
);
desc!(
    PROCESS_OPEN_FDS,
    "process_open_fds",
    Gauge,
    "Number of open file descriptors."
);
desc!(
    PROCESS_START_TIME,
    "process_start_time_seconds",
    Gauge,
    "Start time of the process since the Unix epoch in seconds."
);
desc!(
    WASMTIME_POOL_CORE_INSTANCES,
    "wasmtime_pool_core_instances",
    Gauge,
    "Core instances allocated from the pooling allocator."
);
desc!(
    WASMTIME_POOL_COMPONENT_INSTANCES,
    "wasmtime_pool_component_instances",
    Gauge,
    "Component instances allocated from the pooling allocator."
);
desc!(
    WASMTIME_POOL_MEMORIES,
    "wasmtime_pool_memories",
    Gauge,
    "Linear memories allocated from the pooling allocator."
);
desc!(
    WASMTIME_POOL_STACKS,
    "wasmtime_pool_stacks",
    Gauge,
    "Async stacks allocated from the pooling allocator."
);
desc!(
    WASMTIME_POOL_UNUSED_WARM_MEMORIES,
    "wasmtime_pool_unused_warm_memories",
    Gauge,
    "Unused memory slots kept warm (affine to a module) for reuse."
);
desc!(
    WASMTIME_POOL_UNUSED_MEMORY_RESIDENT,
    "wasmtime_pool_unused_memory_resident_bytes",
    Gauge,
    "Bytes kept resident in unused memory slots."
);
desc!(
    WASM_INSTANTIATE_DURATION,
    "wasm_instantiate_duration_seconds",
    Histogram,
    "Time to instantiate a function's module or component for a request."
);
desc!(
    WASM_FUEL_CONSUMED,
    "wasm_fuel_consumed",
    Histogram,
    "Fuel each request consumed (when fuel metering is on)."
);
desc!(
    WEDGE_SPANS_DROPPED,
    "wedge_spans_dropped",
    Counter,
    "Spans dropped because the export queue was full."
);
desc!(
    WEDGE_ANOMALY,
    "wedge_anomaly",
    Gauge,
    "1 while a function drifts from its baseline (kind: latency, memory, errors)."
);
desc!(
    WEDGE_CONNECTIONS_OPEN,
    "wedge_connections_open",
    Gauge,
    "Client connections open now, per listener (data or admin)."
);
desc!(
    WEDGE_CONNECTIONS_CLOSED,
    "wedge_connections_closed",
    Counter,
    "Connections the server closed on its own (reason: evicted, idle, head-timeout, tls-handshake, send-timeout)."
);
desc!(
    WEDGE_LOG_LINES_DROPPED,
    "wedge_log_lines_dropped",
    Counter,
    "Log lines dropped because the log queue was full."
);
desc!(
    WEDGE_RELOADS,
    "wedge_reloads",
    Counter,
    "Reloads of the manifest and modules (result: ok, failed)."
);
desc!(
    WEDGE_RELOAD_LAST_SUCCESSFUL,
    "wedge_reload_last_successful",
    Gauge,
    "1 if the last reload was applied, 0 if it failed and the previous functions still serve."
);
desc!(
    WEDGE_ROLLOUT_DECISIONS,
    "wedge_rollout_decisions",
    Counter,
    "Decisions of progressive rollouts (decision: advance, wait, promote, rollback, freeze)."
);
desc!(
    WEDGE_RATE_LIMIT,
    "wedge_rate_limit",
    Counter,
    "Requests a rate limit let through or turned away (decision: allowed, limited; policy: function, key, node)."
);
desc!(
    WEDGE_RATE_LIMIT_KEYS,
    "wedge_rate_limit_keys",
    Gauge,
    "Client keys a function's keyed rate limit holds state for (bounded by max_keys)."
);
desc!(
    WEDGE_CIRCUIT_STATE,
    "wedge_circuit_state",
    Gauge,
    "Circuit breakers' state: 0 closed, 1 open, 2 half-open (target: inbound, or an upstream host:port)."
);
desc!(
    MESSAGING_CONSUMED,
    "messaging_client_consumed_messages",
    Counter,
    "Messages a trigger received from its broker (redelivered: true when the broker sent it again)."
);
desc!(
    MESSAGING_PROCESS_DURATION,
    "messaging_process_duration_seconds",
    Histogram,
    "Time from a message's arrival to its end (outcome: done, dead-lettered, dropped), retries included."
);
desc!(
    WEDGE_MESSAGING_DELIVERIES,
    "wedge_messaging_deliveries",
    Counter,
    "Deliveries of messages to functions (result: done, retry, permanent)."
);
desc!(
    WEDGE_MESSAGING_DEAD_LETTERS,
    "wedge_messaging_dead_letters",
    Counter,
    "Messages published to the dead-letter topic, or dropped when there is none (reason: a failure kind or status)."
);
desc!(
    WEDGE_MESSAGING_LAG,
    "wedge_messaging_lag_seconds",
    Histogram,
    "Time from a message's arrival, or an event's acceptance, to the start of its first delivery attempt."
);
desc!(
    WEDGE_EVENTS_QUEUED,
    "wedge_events_queued",
    Gauge,
    "Events accepted asynchronously (cloudevents = \"async\") and not yet delivered nor dead-lettered."
);
desc!(
    WEDGE_MESSAGING_IN_FLIGHT,
    "wedge_messaging_in_flight",
    Gauge,
    "Messages a trigger is handling or holding for their in-order acknowledgement."
);
desc!(
    WEDGE_MESSAGING_CONNECTED,
    "wedge_messaging_connected",
    Gauge,
    "1 while a trigger is connected to its broker, 0 while it is reconnecting."
);
desc!(
    WEDGE_MESSAGING_CONNECTIONS,
    "wedge_messaging_connections",
    Counter,
    "A trigger's connection attempts to its broker (result: ok, failed) and losses (result: lost); connection: in (consuming), out (publishing)."
);
desc!(
    WEDGE_CIRCUIT_TRANSITIONS,
    "wedge_circuit_transitions",
    Counter,
    "Circuit breakers' changes of state (to: open, half-open, closed)."
);
desc!(
    WEDGE_BUILD_INFO,
    "wedge_build_info",
    Gauge,
    "Build information; the value is always 1."
);

/// Request-duration buckets of the HTTP semantic conventions, in seconds.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Finer buckets for guest-side durations, in seconds.
pub const FAST_BUCKETS: [f64; 14] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
];

/// Fuel buckets (1e3 to 1e11 units, by 10).
pub const FUEL_BUCKETS: [f64; 9] = [1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11];

/// Size buckets, in bytes (1 KiB to 1 GiB, by 4).
pub const SIZE_BUCKETS: [f64; 11] = [
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
];

/// Every exported name, for checks that dashboards and rules only use
/// metrics that exist.
pub const ALL: [Desc; 50] = [
    HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_BODY_SIZE,
    HTTP_SERVER_RESPONSE_BODY_SIZE,
    FAAS_INVOCATIONS,
    FAAS_ERRORS,
    FAAS_TIMEOUTS,
    FAAS_COLDSTARTS,
    FAAS_INIT_DURATION,
    FAAS_INVOKE_DURATION,
    WASM_MEMORY_PEAK,
    WASM_MEMORY_GROW_FAILURES,
    WEDGE_QUEUE_WAIT,
    WEDGE_REJECTED,
    WASM_MODULE_SIZE,
    WEDGE_AOT_CACHE,
    PROCESS_RESIDENT_MEMORY,
    PROCESS_CPU_SECONDS,
    PROCESS_OPEN_FDS,
    PROCESS_START_TIME,
    WASMTIME_POOL_CORE_INSTANCES,
    WASMTIME_POOL_COMPONENT_INSTANCES,
    WASMTIME_POOL_MEMORIES,
    WASMTIME_POOL_STACKS,
    WASMTIME_POOL_UNUSED_WARM_MEMORIES,
    WASMTIME_POOL_UNUSED_MEMORY_RESIDENT,
    WASM_INSTANTIATE_DURATION,
    WASM_FUEL_CONSUMED,
    WEDGE_SPANS_DROPPED,
    WEDGE_ANOMALY,
    WEDGE_CONNECTIONS_OPEN,
    WEDGE_CONNECTIONS_CLOSED,
    WEDGE_LOG_LINES_DROPPED,
    WEDGE_RELOADS,
    WEDGE_RELOAD_LAST_SUCCESSFUL,
    WEDGE_ROLLOUT_DECISIONS,
    WEDGE_RATE_LIMIT,
    WEDGE_RATE_LIMIT_KEYS,
    WEDGE_CIRCUIT_STATE,
    WEDGE_CIRCUIT_TRANSITIONS,
    MESSAGING_CONSUMED,
    MESSAGING_PROCESS_DURATION,
    WEDGE_MESSAGING_DELIVERIES,
    WEDGE_MESSAGING_DEAD_LETTERS,
    WEDGE_MESSAGING_IN_FLIGHT,
    WEDGE_MESSAGING_LAG,
    WEDGE_EVENTS_QUEUED,
    WEDGE_MESSAGING_CONNECTED,
    WEDGE_MESSAGING_CONNECTIONS,
    WEDGE_BUILD_INFO,
];

/// The series names a metric exposes (`_total`, `_bucket`, ...).
pub fn series_names(d: &Desc) -> Vec<String> {
    match d.kind {
        Kind::Counter => vec![format!("{}_total", d.name)],
        Kind::Gauge => vec![d.name.to_string()],
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{}{s}", d.name))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metric-like identifiers in a PromQL expression or rule file.
    fn referenced(text: &str) -> Vec<String> {
        let prefixes = [
            "http_server_",
            "faas_",
            "wasm_",
            "wedge_",
            "process_",
            "wasmtime_",
            "messaging_",
        ];
        let mut out = Vec::new();
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let rest = &text[i..];
            let boundary =
                i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
            if boundary && prefixes.iter().any(|p| rest.starts_with(p)) {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                out.push(rest[..end].to_string());
                i += end;
            } else {
                i += 1;
            }
        }
        out
    }

    #[test]
    fn dashboards_and_alert_rules_use_only_exported_metrics() {
        let known: Vec<String> = ALL.iter().flat_map(series_names).collect();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
        let mut checked = 0;
        for file in ["grafana/wedge.json", "prometheus/alerts.yml"] {
            let text = std::fs::read_to_string(root.join(file)).unwrap();
            for name in referenced(&text) {
                assert!(
                    known.contains(&name),
                    "{file} uses `{name}`, which wedge does not export"
                );
                checked += 1;
            }
        }
        assert!(checked > 20, "only {checked} references found");
    }

    #[test]
    fn names_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
            }
        }
    }
}
