//! The WAGI executor: a WASI preview1 command per request, CGI/1.1 over
//! stdin, stdout and the environment.

mod stdout;

use crate::body::{self, Body};
use crate::capture::Capture;
use crate::failure::Failure;
use crate::spec::{self, Spec};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::sync::Arc;
use stdout::{Head, Stdout};
use wasmtime::{Engine, InstancePre, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wedge_cgi as cgi;
use wedge_observe::log;
use wedge_observe::stats::GuestStats;
use wedge_runtime::limits::Limits;

/// How much of a guest's stderr is kept per request.
const STDERR_LIMIT: usize = 64 << 10;

struct WagiHost {
    wasi: WasiP1Ctx,
    limits: Limits,
    /// The epoch ticks while this store lives.
    _active: wedge_runtime::ticker::Active,
}

/// A preview1 module, linked once.
pub struct Wagi {
    pre: InstancePre<WagiHost>,
    spec: Arc<Spec>,
    metered: bool,
}

/// One request's CGI inputs.
pub struct Call<'a> {
    pub request_id: &'a str,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
    pub body: Bytes,
}

impl Wagi {
    pub fn new(engine: &Engine, module: &Module, spec: Arc<Spec>) -> anyhow::Result<Self> {
        if module.get_export("_start").is_none() {
            anyhow::bail!("the module exports no `_start`: WAGI runs WASI commands");
        }
        let mut linker = wasmtime::Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |h: &mut WagiHost| &mut h.wasi)
            .map_err(anyhow::Error::from)?;
        let pre = linker
            .instantiate_pre(module)
            .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
        Ok(Wagi {
            pre,
            spec,
            metered: engine.get_consume_fuel(),
        })
    }

    /// A store for one instance: the memory limit, and `fuel` when metered.
    fn store(&self, wasi: WasiP1Ctx, fuel: u64) -> wasmtime::Result<Store<WagiHost>> {
        let mut store = Store::new(
            self.pre.module().engine(),
            WagiHost {
                wasi,
                limits: Limits::new(Some(self.spec.limits.max_memory), false),
                _active: self.spec.clock.active(),
            },
        );
        store.limiter(|h| &mut h.limits);
        if self.metered {
            store.set_fuel(fuel)?;
        }
        Ok(store)
    }

    /// The compiled module (for profiling).
    pub fn module(&self) -> &Module {
        self.pre.module()
    }

    /// Instantiates the module once without running it, so that a function
    /// that can never be instantiated (say, its minimum memory is over its
    /// limit) is reported at start rather than on every request.
    pub async fn probe(&self) -> Result<(), String> {
        let mut store = self
            .store(WasiCtxBuilder::new().build_p1(), u64::MAX)
            .map_err(|e| e.to_string())?;
        store.set_epoch_deadline(u64::MAX / 2);
        let result = self.pre.instantiate_async(&mut store).await.map(drop);
        self.spec.metrics.instantiated();
        result.map_err(|e| format!("{e:#}"))
    }

    /// Runs the guest for one request and turns its CGI output into a response.
    pub async fn call(
        &self,
        call: Call<'_>,
    ) -> (Result<http::Response<Body>, Failure>, GuestStats) {
        let started = std::time::Instant::now();
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
        let (stdout, head) = Stdout::new(limits.max_response_body);
        let stderr = Capture::truncating(STDERR_LIMIT);
        let mut b = WasiCtxBuilder::new();
        b.stdin(MemoryInputPipe::new(call.body))
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .args(&call.args)
            .envs(&spec.env)
            .envs(&call.env);
        spec::preopen(&mut b, &spec.files)?;
        let mut store = self
            .store(b.build_p1(), limits.fuel.unwrap_or(u64::MAX))
            .map_err(|e| Failure::Internal {
                message: e.to_string(),
            })?;
        let meter = crate::epochs::arm(&mut store, spec);
        let peak = store.data_mut().limits.share_peak();
        let mut guest = Box::pin(run_guest(self.pre.clone(), store, limits.timeout));
        let end = Ending {
            spec: spec.clone(),
            metered: self.metered,
            stderr,
        };
        let id = call.request_id;
        let mut head = head;
        let first = tokio::select! {
            biased;
            ran = &mut guest => Err(ran),
            Ok(streams) = &mut head => Ok(streams),
        };
        match first {
            Err(ran) => {
                stats.cpu = meter.map(|m| m.counted());
                let ended = end.record(ran, stats, id);
                match head.try_recv() {
                    // It streamed, and has ended since: the rest is in the pipe.
                    Ok(head) => {
                        stdout.end(end.verdict(ended, id));
                        Ok(streaming(head))
                    }
                    Err(_) => whole(&end, id, ended, stdout.take()),
                }
            }
            Ok(head) => {
                // The response streams while the guest goes on writing it,
                // in a task of its own; the body holds the function's slot.
                stats.peak_memory = Some(peak.load(std::sync::atomic::Ordering::Relaxed));
                let gone = stdout.gone();
                let id = id.to_string();
                tokio::spawn(async move {
                    let ran = tokio::select! {
                        ran = guest => Some(ran),
                        () = gone.notified() => None,
                    };
                    let mut stats = GuestStats {
                        cpu: meter.map(|m| m.counted()),
                        ..GuestStats::default()
                    };
                    match ran {
                        Some(ran) => {
                            let ended = end.record(ran, &mut stats, &id);
                            stdout.end(end.verdict(ended, &id));
                        }
                        // Dropping the guest stopped it; its stderr still counts.
                        None => end.logs(&id),
                    }
                });
                Ok(streaming(head))
            }
        }
    }
}

/// How a guest run ended, with its store for the figures.
struct Ran {
    result: Result<Result<(), wasmtime::Error>, tokio::time::error::Elapsed>,
    store: Store<WagiHost>,
    instantiated: Option<std::time::Duration>,
}

/// Instantiates the module and runs `_start` under the function's timeout.
/// Owns all it needs, so a streaming response can leave it to a task.
async fn run_guest(
    pre: InstancePre<WagiHost>,
    mut store: Store<WagiHost>,
    timeout: std::time::Duration,
) -> Ran {
    let mut instantiated = None;
    let run = async {
        let t0 = std::time::Instant::now();
        let instance = pre.instantiate_async(&mut store).await?;
        instantiated = Some(t0.elapsed());
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call_async(&mut store, ()).await
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
    stderr: Capture,
}

/// How the guest ended: its exit code or the failure, and how many
/// `memory.grow`s were refused (which explain a bad exit).
struct Ended {
    exit: Result<i32, Failure>,
    grow_failures: u64,
}

impl Ending {
    /// Records the run's figures and logs; says how the guest ended.
    fn record(&self, ran: Ran, stats: &mut GuestStats, id: &str) -> Ended {
        let spec = &self.spec;
        let limits = &spec.limits;
        let Ran {
            result,
            store,
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
        drop(store);
        self.logs(id);
        let exit = match result {
            Err(_elapsed) => Err(Failure::Timeout {
                after: limits.timeout,
            }),
            Ok(Ok(())) => Ok(0),
            Ok(Err(e)) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(spec::classify(&e, spec, grow_failures)),
            },
        };
        Ended {
            exit,
            grow_failures,
        }
    }

    /// Logs what the guest wrote to stderr.
    fn logs(&self, id: &str) {
        let (err_bytes, err_truncated) = self.stderr.take();
        log::guest_output("stderr", id, &self.spec.name, &err_bytes, err_truncated);
    }

    /// How a response that had started streaming ends: a failure cuts the
    /// body short (the status has gone), is logged with the request id and
    /// counted among the function's errors.
    fn verdict(&self, ended: Ended, id: &str) -> Result<(), String> {
        let spec = &self.spec;
        match ended.exit {
            Ok(0) => Ok(()),
            Ok(code) => {
                exited_after_response(spec, id, code);
                Ok(())
            }
            Err(failure) => {
                let reason = failure.reason();
                log::line(
                    "warn",
                    id,
                    &spec.name,
                    &format!("{reason}: the response had started, its body was cut short"),
                );
                spec.metrics.error(failure.kind());
                Err(reason)
            }
        }
    }
}

/// A guest that wrote its whole response, then exited non-zero: the
/// response stands, the log says so.
fn exited_after_response(spec: &Spec, id: &str, code: i32) {
    log::line(
        "warn",
        id,
        &spec.name,
        &format!("guest exited with status {code} after a complete response"),
    );
}

/// The response of a guest that ended before its output streamed.
fn whole(
    end: &Ending,
    id: &str,
    ended: Ended,
    out: Bytes,
) -> Result<http::Response<Body>, Failure> {
    let spec = &end.spec;
    let grow_failures = ended.grow_failures;
    let exit = ended.exit?;
    match cgi::parse_response(&out) {
        Ok(parsed) => {
            if exit != 0 {
                exited_after_response(spec, id, exit);
            }
            let mut response = http::Response::new(body::full(out.slice(parsed.body_start..)));
            *response.status_mut() = parsed.status;
            *response.headers_mut() = parsed.headers;
            Ok(response)
        }
        Err(_) if exit != 0 && grow_failures > 0 => Err(Failure::MemoryLimit {
            message: format!(
                "guest exited with status {exit} after {grow_failures} refused memory.grow \
                 (limit {} bytes)",
                spec.limits.max_memory
            ),
        }),
        Err(_) if exit != 0 => Err(Failure::GuestExit { code: exit }),
        Err(problem) => Err(Failure::Malformed { problem }),
    }
}

/// A response whose body streams from the guest's stdout.
fn streaming(head: Head) -> http::Response<Body> {
    let mut response = http::Response::new(head.body.boxed_unsync());
    *response.status_mut() = head.cgi.status;
    *response.headers_mut() = head.cgi.headers;
    response
}
