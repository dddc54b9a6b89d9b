//! The WAGI executor: a WASI preview1 command per request, CGI/1.1 over
//! stdin, stdout and the environment.

use crate::body::{self, Body};
use crate::capture::Capture;
use crate::failure::Failure;
use crate::spec::{self, Spec};
use bytes::Bytes;
use std::sync::Arc;
use wasmtime::{Engine, InstancePre, Module, Store};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wedge_cgi as cgi;
use wedge_observe::log;
use wedge_observe::stats::GuestStats;
use wedge_runtime::limits::Limits;

/// Room for CGI headers on top of `max_response_body`.
const HEADER_ALLOWANCE: usize = 64 << 10;
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
        let stdout = Capture::trapping(limits.max_response_body as usize + HEADER_ALLOWANCE);
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
        let mut instantiated = None;
        let run = async {
            let t0 = std::time::Instant::now();
            let instance = self.pre.instantiate_async(&mut store).await?;
            instantiated = Some(t0.elapsed());
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        let result = tokio::time::timeout(limits.timeout, run).await;
        stats.instantiate = instantiated;
        if let Some(i) = instantiated {
            spec.metrics.instantiate.observe(i.as_secs_f64());
        }
        if self.metered {
            stats.fuel = store
                .get_fuel()
                .ok()
                .map(|left| limits.fuel.unwrap_or(u64::MAX) - left);
            if let Some(f) = stats.fuel {
                spec.metrics.fuel.observe(f as f64);
            }
        }
        stats.cpu = meter.map(|m| m.counted());
        let grow_failures = store.data().limits.grow_failures();
        let peak = store.data().limits.peak_memory();
        drop(store);
        spec.metrics.instantiated();
        spec.metrics.memory(peak, grow_failures);
        stats.peak_memory = Some(peak);

        let (err_bytes, err_truncated) = stderr.take();
        log::guest_output(
            "stderr",
            call.request_id,
            &spec.name,
            &err_bytes,
            err_truncated,
        );

        let exit = match result {
            Err(_elapsed) => {
                return Err(Failure::Timeout {
                    after: limits.timeout,
                });
            }
            Ok(Ok(())) => 0,
            Ok(Err(e)) => match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) => exit.0,
                None => return Err(spec::classify(&e, spec, grow_failures)),
            },
        };
        let (out, _) = stdout.take();
        match cgi::parse_response(&out) {
            Ok(parsed) => {
                if exit != 0 {
                    log::line(
                        "warn",
                        call.request_id,
                        &spec.name,
                        &format!("guest exited with status {exit} after a complete response"),
                    );
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
                    limits.max_memory
                ),
            }),
            Err(_) if exit != 0 => Err(Failure::GuestExit { code: exit }),
            Err(problem) => Err(Failure::Malformed { problem }),
        }
    }
}
