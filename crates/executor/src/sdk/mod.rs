//! The Go SDK executor: a module built with wedge's Go SDK (wedge ABI v1: a
//! WASI reactor exporting `wedge_handle_v1`, importing `wedge_v1`), taken
//! as a snapshot after its initialisation once at load, and run in a fresh
//! instance of that snapshot per invocation, under the same limits and with
//! the same statuses as WAGI. Requests reach the guest through the ABI, not
//! through its environment (which the snapshot froze).

mod abi;
mod coalesce;
mod response;
mod segments;
mod snapshot;

pub use abi::{Arrival, request_head};

use crate::body::Body;
use crate::capture::Capture;
use crate::failure::Failure;
use crate::spec::{self, Spec};
use abi::CallState;
use response::Responder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wedge_observe::log;
use wedge_observe::stats::GuestStats;
use wedge_runtime::cache::Cache;
use wedge_runtime::limits::Limits;
use wedge_runtime::load::CacheStatus;

/// How much of a guest's stdout and stderr is kept per invocation.
const LOG_LIMIT: usize = 64 << 10;

/// Whether a module speaks wedge ABI v1.
pub fn is_sdk_module(module: &Module) -> bool {
    module.get_export(abi::HANDLE).is_some() || module.imports().any(|i| i.module() == abi::MODULE)
}

/// The state of one SDK instance.
pub struct SdkHost {
    wasi: WasiP1Ctx,
    limits: Limits,
    /// The invocation it serves (none while the snapshot is taken).
    call: Option<CallState>,
    /// The function's `max_memory`, which the guest may ask for.
    max_memory: u64,
    _active: wedge_runtime::ticker::Active,
}

/// How the function's snapshot was obtained, or why there is none.
pub enum Snapshot {
    Taken {
        cache: CacheStatus,
        took: Duration,
    },
    /// Served without one: `_initialize` runs in every invocation.
    None {
        why: String,
    },
}

/// An SDK module, linked once.
pub struct Sdk {
    pre: InstancePre<SdkHost>,
    spec: Arc<Spec>,
    metered: bool,
    pub snapshot: Snapshot,
}

/// One invocation's inputs.
pub struct Call<'a> {
    pub request_id: &'a str,
    /// The request head record ([`request_head`]).
    pub head: Vec<u8>,
    pub body: Body,
}

/// The guest's arguments: its function's name.
fn args(spec: &Spec) -> [&str; 1] {
    [&spec.name]
}

/// A store for one instance, with the function's WASI context (the same
/// while the snapshot is taken as in every invocation).
fn store(
    engine: &Engine,
    spec: &Spec,
    call: Option<CallState>,
    logs: Option<(&Capture, &Capture)>,
) -> anyhow::Result<Store<SdkHost>> {
    let mut b = WasiCtxBuilder::new();
    b.args(&args(spec))
        .envs(&spec.env)
        .monotonic_clock(crate::clock::SharedMonotonic);
    if let Some((stdout, stderr)) = logs {
        b.stdout(stdout.clone()).stderr(stderr.clone());
    }
    spec::preopen(&mut b, &spec.files).map_err(|f| anyhow::anyhow!(f.reason()))?;
    let mut store = Store::new(
        engine,
        SdkHost {
            wasi: b.build_p1(),
            limits: Limits::new(Some(spec.limits.max_memory), false),
            call,
            max_memory: spec.limits.max_memory,
            _active: spec.clock.active(),
        },
    );
    store.limiter(|h| &mut h.limits);
    Ok(store)
}

impl Sdk {
    /// Links the module and takes its snapshot (through the cache);
    /// `wasm` gives the module's bytes when the snapshot must be taken.
    pub fn new(
        engine: &Engine,
        module: &Module,
        module_sha256: &[u8; 32],
        wasm: impl FnOnce() -> anyhow::Result<Vec<u8>>,
        spec: Arc<Spec>,
        cache: Option<&Cache>,
    ) -> anyhow::Result<Self> {
        if module.get_export(abi::HANDLE).is_none() {
            anyhow::bail!(
                "the module imports {} but exports no `{}`: build it with the Go SDK \
                 (-buildmode=c-shared)",
                abi::MODULE,
                abi::HANDLE
            );
        }
        let mut linker = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |h: &mut SdkHost| &mut h.wasi)?;
        abi::add_to_linker(&mut linker)?;
        let started = Instant::now();
        let key = snapshot::key(module_sha256, &spec);
        let taken = wedge_runtime::load::derived_module(engine, cache, key, || {
            snapshot::take(&linker, &wasm()?, &spec)
        });
        let (pre, snapshot) = match taken {
            Ok((snap, cache, _note)) => (
                linker.instantiate_pre(&snap)?,
                Snapshot::Taken {
                    cache,
                    took: started.elapsed(),
                },
            ),
            Err(e) => (
                linker
                    .instantiate_pre(module)
                    .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?,
                Snapshot::None { why: one_line(&e) },
            ),
        };
        Ok(Sdk {
            pre,
            spec,
            metered: engine.get_consume_fuel(),
            snapshot,
        })
    }

    /// The compiled code (for profiling).
    pub fn module(&self) -> &Module {
        self.pre.module()
    }

    /// Instantiates the module once without running it.
    pub async fn probe(&self) -> Result<(), String> {
        let mut store =
            store(self.pre.module().engine(), &self.spec, None, None).map_err(|e| e.to_string())?;
        store.set_epoch_deadline(u64::MAX / 2);
        let result = self.pre.instantiate_async(&mut store).await.map(drop);
        self.spec.metrics.instantiated();
        result.map_err(|e| format!("{e:#}"))
    }

    /// Runs one invocation in a fresh instance.
    pub async fn call(
        &self,
        call: Call<'_>,
    ) -> (Result<http::Response<Body>, Failure>, GuestStats) {
        let started = Instant::now();
        let mut stats = GuestStats::default();
        let result = self.run(call, &mut stats).await;
        stats.guest = started.elapsed();
        self.spec
            .metrics
            .invoke_duration
            .observe(stats.guest.as_secs_f64());
        (result, stats)
    }

    async fn run(
        &self,
        call: Call<'_>,
        stats: &mut GuestStats,
    ) -> Result<http::Response<Body>, Failure> {
        let spec = &self.spec;
        let limits = &spec.limits;
        let (out, mut started, mut gone) = Responder::new(limits.max_response_body);
        let logs = Logs {
            stdout: Capture::truncating(LOG_LIMIT),
            stderr: Capture::truncating(LOG_LIMIT),
        };
        let state = CallState::new(call.head, call.body, out);
        let mut store = store(
            self.pre.module().engine(),
            spec,
            Some(state),
            Some((&logs.stdout, &logs.stderr)),
        )
        .map_err(|e| Failure::Internal {
            message: format!("{e:#}"),
        })?;
        if self.metered {
            store
                .set_fuel(limits.fuel.unwrap_or(u64::MAX))
                .map_err(|e| Failure::Internal {
                    message: e.to_string(),
                })?;
        }
        let meter = crate::epochs::arm(&mut store, spec);
        let peak = store.data_mut().limits.share_peak();
        let initialise = matches!(self.snapshot, Snapshot::None { .. });
        let mut guest = Box::pin(run_guest(
            self.pre.clone(),
            store,
            limits.timeout,
            initialise,
        ));
        let end = Ending {
            spec: spec.clone(),
            metered: self.metered,
            logs,
        };
        let id = call.request_id;
        let first = tokio::select! {
            biased;
            ran = &mut guest => Err(ran),
            Ok(response) = &mut started => Ok(response),
        };
        match first {
            Err(ran) => {
                stats.cpu = meter.map(|m| m.counted());
                let (verdict, mut out) = end.record(ran, stats, id);
                match started.try_recv() {
                    // It streamed, and has ended since.
                    Ok(response) => {
                        end.close(&mut out, verdict, id).await;
                        Ok(response)
                    }
                    Err(_) => {
                        verdict?;
                        out.whole().ok_or_else(|| Failure::Malformed {
                            problem: "the function returned without a response".into(),
                        })
                    }
                }
            }
            Ok(response) => {
                // The rest streams while the guest goes on, in a task of its
                // own; the response body holds the function's slot.
                stats.peak_memory = Some(peak.load(std::sync::atomic::Ordering::Relaxed));
                let id = id.to_string();
                tokio::spawn(async move {
                    // A body dropped before the guest is done: its client
                    // left, and the guest is stopped at once.
                    let ran = tokio::select! {
                        ran = &mut guest => ran,
                        _ = &mut gone.dropped, if gone.by_client() => {
                            if gone.by_client() {
                                drop(guest);
                                end.logs(&id);
                                return;
                            }
                            // The host cut the body: the guest's writes fail
                            // now, and it ends on its own.
                            guest.await
                        }
                    };
                    let mut stats = GuestStats {
                        cpu: meter.map(|m| m.counted()),
                        ..GuestStats::default()
                    };
                    let (verdict, mut out) = end.record(ran, &mut stats, &id);
                    end.close(&mut out, verdict, &id).await;
                });
                Ok(response)
            }
        }
    }
}

/// An error's chain on one line, without the wasm backtrace a trap carries.
fn one_line(e: &anyhow::Error) -> String {
    let parts: Vec<String> = e
        .chain()
        .map(|c| c.to_string())
        .filter(|c| !c.starts_with("error while executing at wasm backtrace"))
        .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    parts.join(": ")
}

struct Logs {
    stdout: Capture,
    stderr: Capture,
}

/// How a guest run ended, with its store for the figures.
struct Ran {
    result: Result<Result<i32, wasmtime::Error>, tokio::time::error::Elapsed>,
    store: Store<SdkHost>,
    instantiated: Option<Duration>,
}

/// Instantiates the module (initialising it when it has no snapshot) and
/// calls `wedge_handle_v1` under the function's timeout.
async fn run_guest(
    pre: InstancePre<SdkHost>,
    mut store: Store<SdkHost>,
    timeout: Duration,
    initialise: bool,
) -> Ran {
    let mut instantiated = None;
    let run = async {
        let t0 = Instant::now();
        let instance = pre.instantiate_async(&mut store).await?;
        if initialise {
            let init = instance.get_typed_func::<(), ()>(&mut store, "_initialize")?;
            init.call_async(&mut store, ()).await?;
        }
        instantiated = Some(t0.elapsed());
        let handle = instance.get_typed_func::<(), i32>(&mut store, abi::HANDLE)?;
        let returned = handle.call_async(&mut store, ()).await;
        if let Some(memory) = instance.get_memory(&mut store, "memory") {
            coalesce::fill_gaps(memory.data_mut(&mut store));
        }
        returned
    };
    let result = tokio::time::timeout(timeout, run).await;
    Ran {
        result,
        store,
        instantiated,
    }
}

/// What ends a run: its figures and logs, then its verdict.
struct Ending {
    spec: Arc<Spec>,
    metered: bool,
    logs: Logs,
}

impl Ending {
    /// Records the run's figures and logs; gives its verdict and the
    /// response side of the invocation.
    fn record(
        &self,
        ran: Ran,
        stats: &mut GuestStats,
        id: &str,
    ) -> (Result<(), Failure>, Responder) {
        let spec = &self.spec;
        let limits = &spec.limits;
        let Ran {
            result,
            mut store,
            instantiated,
        } = ran;
        let grow_failures = spec::record_costs(
            &store,
            &store.data().limits,
            spec,
            self.metered,
            instantiated,
            stats,
        );
        let call = store
            .data_mut()
            .call
            .take()
            .expect("an invocation's store holds its call");
        drop(store);
        self.logs(id);
        let abi::Parts { out, failed } = call.into_parts();
        let verdict = match result {
            Err(_elapsed) => Err(Failure::Timeout {
                after: limits.timeout,
            }),
            Ok(Err(e)) => Err(match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) if grow_failures > 0 => Failure::MemoryLimit {
                    message: format!(
                        "guest exited with status {} after {grow_failures} refused memory.grow \
                         (limit {} bytes)",
                        exit.0, limits.max_memory
                    ),
                },
                Some(exit) => Failure::GuestExit { code: exit.0 },
                None => spec::classify(&e, spec, grow_failures),
            }),
            Ok(Ok(0)) => match &out.problem {
                Some(p) => Err(p.clone()),
                None => Ok(()),
            },
            Ok(Ok(_)) => Err(Failure::Panicked {
                message: failed.unwrap_or_else(|| "no reason given".into()),
            }),
        };
        (verdict, out)
    }

    /// Logs what the guest wrote to stdout and stderr.
    fn logs(&self, id: &str) {
        for (stream, capture) in [("stdout", &self.logs.stdout), ("stderr", &self.logs.stderr)] {
            let (bytes, truncated) = capture.take();
            log::guest_output(stream, id, &self.spec.name, &bytes, truncated);
        }
    }

    /// Ends a response that streamed: a failure cuts its body short (the
    /// status has gone), is logged with the request id and counted.
    async fn close(&self, out: &mut Responder, verdict: Result<(), Failure>, id: &str) {
        let end = match verdict {
            Ok(()) => Ok(()),
            Err(failure) => {
                let reason = failure.reason();
                log::line(
                    "warn",
                    id,
                    &self.spec.name,
                    &format!("{reason}: the response had started, its body was cut short"),
                );
                self.spec.metrics.error(failure.kind());
                Err(reason)
            }
        };
        out.end(end).await;
    }
}
