//! The `wasi:http` executor: WASI 0.2 `wasi:http/proxy` and WASI 0.3
//! `wasi:http/service` components, driven by Wasmtime's `ProxyHandler`
//! (per-request instances, expiry), or, for 0.2 on an engine without
//! concurrency support, called directly; behind wedge's own gate and limits.

use crate::body::Body;
use crate::capture::Capture;
use crate::failure::Failure;
use crate::host::{HttpHost, Outbound, RequestSlot};
use crate::spec::{self, Spec};
use http_body_util::BodyExt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, Store, StoreContextMut};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, Proxy, ProxyHandler, ProxyPre, ShouldAccept,
    WorkerExpiration, WorkerState, WorkerStatus,
};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};
use wedge_observe::log;
use wedge_observe::stats::GuestStats;
use wedge_observe::traces::Tracer;
use wedge_runtime::limits::Limits;
use wedge_telemetry::trace::Context as TraceContext;

/// How much of a component's stdout and stderr is kept per instance.
const LOG_LIMIT: usize = 64 << 10;
/// How long an idle instance may wait for another request (0.3 reuse).
const IDLE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long past its request's timeout an instance may run before it is
/// ended (the request itself has its timeout answer by then).
const END_GRACE: Duration = Duration::from_millis(100);

/// A `wasi:http` component, linked and pre-instantiated once.
pub struct HttpFunction {
    handler: ProxyHandler<State>,
    p3: bool,
    /// Called directly, not through `ProxyHandler` (see [`Self::direct`]).
    direct: bool,
    component: Component,
}

struct State {
    engine: Engine,
    pre: ProxyPre<HttpHost>,
    spec: Arc<Spec>,
    metered: bool,
    /// Requests one instance may serve (1: a fresh instance per request).
    reuse: usize,
}

impl HttpFunction {
    pub fn new(engine: &Engine, component: &Component, spec: Arc<Spec>) -> anyhow::Result<Self> {
        // Only the WASI generations the component imports are linked, and
        // only the handler it exports is looked up: linking both sets and
        // trying 0.3 first was ~4% of a `wedge check`'s samples (perf).
        let ty = component.component_type();
        let (mut p2_imports, mut p3_imports) = (false, false);
        for (name, _) in ty.imports(engine) {
            let is_p3 = wedge_runtime::generation::names_p3(name);
            p3_imports |= is_p3;
            p2_imports |= !is_p3;
        }
        let exports_service = ty
            .exports(engine)
            .any(|(name, _)| name.starts_with("wasi:http/handler@0.3"));
        let mut linker = wasmtime::component::Linker::<HttpHost>::new(engine);
        if p2_imports {
            wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from)?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                .map_err(anyhow::Error::from)?;
        }
        if p3_imports {
            wasmtime_wasi::p3::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut linker).map_err(anyhow::Error::from)?;
        }
        let instance_pre = linker
            .instantiate_pre(component)
            .map_err(|e| anyhow::anyhow!("cannot link: {e:#}"))?;
        let service = exports_service
            .then(|| wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre.clone()))
            .and_then(Result::ok);
        let (pre, p3) = match service {
            Some(service) => (ProxyPre::P3(service), true),
            None => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre) {
                Ok(proxy) => (ProxyPre::P2(proxy), false),
                Err(_) => anyhow::bail!(
                    "the component exports neither `wasi:http/incoming-handler@0.2` (a proxy) nor \
                     `wasi:http/handler@0.3` (a service)"
                ),
            },
        };
        let reuse = if p3 {
            spec.instance_reuse.max(1) as usize
        } else {
            1
        };
        let state = State {
            engine: engine.clone(),
            pre,
            spec,
            metered: engine.get_consume_fuel(),
            reuse,
        };
        Ok(HttpFunction {
            handler: ProxyHandler::new(state),
            p3,
            direct: !p3 && !engine.get_concurrency_support(),
            component: component.clone(),
        })
    }

    /// The compiled component (for profiling).
    pub fn component(&self) -> &Component {
        &self.component
    }

    pub fn abi(&self) -> &'static str {
        if self.p3 {
            "wasi:http@0.3"
        } else {
            "wasi:http@0.2"
        }
    }

    /// Instantiates the component once, as [`crate::wagi::Wagi::probe`] does.
    pub async fn probe(&self) -> Result<(), String> {
        self.handler
            .state()
            .instantiate()
            .await
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    }

    /// Serves one request in an instance of its own.
    pub async fn call(
        &self,
        request_id: &str,
        request: http::Request<Body>,
        trace: Option<TraceContext>,
        tracer: Option<Arc<Tracer>>,
    ) -> (Result<http::Response<Body>, Failure>, GuestStats) {
        let started = Instant::now();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let slot = Arc::new(RequestSlot {
            id: request_id.to_string(),
            ended: Mutex::new(Some(tx)),
            trace,
            tracer,
            peak: OnceLock::new(),
            cpu: OnceLock::new(),
        });
        let result = self.respond(slot.clone(), request, rx).await;
        let stats = GuestStats {
            guest: started.elapsed(),
            // The instance's peak memory up to the response (the body may
            // still be streaming).
            peak_memory: slot.peak.get().map(|p| p.load(Ordering::Relaxed)),
            cpu: slot.cpu.get().map(|m| m.counted()),
            ..GuestStats::default()
        };
        let spec = &self.handler.state().spec;
        spec.metrics
            .invoke_duration
            .observe(stats.guest.as_secs_f64());
        (result, stats)
    }

    async fn respond(
        &self,
        slot: Arc<RequestSlot>,
        request: http::Request<Body>,
        rx: tokio::sync::oneshot::Receiver<Result<(), wasmtime::Error>>,
    ) -> Result<http::Response<Body>, Failure> {
        let spec = &self.handler.state().spec;
        let handled = if self.direct {
            self.direct(slot.clone(), request)
                .await
                .map(|r| r.map(|b| b.map_err(Into::into).boxed_unsync()))
        } else {
            self.handler
                .handle(slot.clone(), request)
                .await
                .map(|r| r.map(|b| b.boxed_unsync()))
        };
        match handled {
            Ok(response) => Ok(response),
            Err(e) if e.is::<ExpirationError>() => Err(Failure::Timeout {
                after: spec.limits.timeout,
            }),
            // The request never reached an instance: instantiation failed.
            Err(e) if slot.peak.get().is_none() => Err(spec::classify(&e, spec, 0)),
            Err(e) => {
                // The instance took the request and gave no response. How it
                // ended says why: a trap reaches only the worker's end
                // (`Worker::drop`), which reports it here at once; a clean
                // end means the guest returned without a response. Only an
                // instance kept for reuse (0.3 services) may still be running.
                match tokio::time::timeout(REUSED_INSTANCE_WAIT, rx).await {
                    Ok(Ok(Err(instance_error))) => Err(spec::classify(&instance_error, spec, 0)),
                    Ok(Ok(Ok(()))) => Err(Failure::Malformed {
                        problem: "the guest returned without setting a response".into(),
                    }),
                    _ => match spec::classify(&e, spec, 0) {
                        Failure::Internal { .. } => Err(Failure::Malformed {
                            problem: format!("the guest gave no response: {e:#}"),
                        }),
                        other => Err(other),
                    },
                }
            }
        }
    }
}

impl HttpFunction {
    /// Serves a request in a fresh instance of a 0.2 component on an engine
    /// without concurrency support, where `ProxyHandler` (which drives every
    /// call through `run_concurrent`) cannot run: instantiate, hand the
    /// request and a response slot to `incoming-handler.handle` in a task of
    /// its own (the guest may go on writing the body after it responds),
    /// and wait for the response. The instance ends as `ProxyHandler`'s do:
    /// through [`Worker`]'s `drop`, at most `timeout` + [`END_GRACE`] after the
    /// request started.
    async fn direct(
        &self,
        slot: Arc<RequestSlot>,
        request: http::Request<Body>,
    ) -> wasmtime::Result<http::Response<HyperOutgoingBody>> {
        let state = self.handler.state();
        let timeout = state.spec.limits.timeout;
        let started = tokio::time::Instant::now();
        let Instance {
            mut store,
            proxy,
            state: worker,
            ..
        } = state.instantiate().await?;
        let Proxy::P2(proxy) = proxy else {
            wasmtime::bail!("a WASI 0.3 service needs the engine's concurrency support");
        };
        begin(store.data_mut(), slot);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let mut view = WasiHttpView::http(store.data_mut());
        let req = view.new_incoming_request(Scheme::Http, request)?;
        let out = view.new_response_outparam(tx)?;
        tokio::spawn(async move {
            let call = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, req, out);
            let ended = started + timeout + END_GRACE;
            let result = match tokio::time::timeout_at(ended, call).await {
                Ok(result) => result,
                Err(_) => Err(wasmtime::Error::new(ExpirationError)),
            };
            WorkerState::drop(&worker, store, result);
        });
        match tokio::time::timeout_at(started + timeout, rx).await {
            Err(_) => Err(wasmtime::Error::new(ExpirationError)),
            Ok(Ok(Ok(response))) => Ok(response),
            Ok(Ok(Err(code))) => Err(wasmtime::format_err!("the guest answered {code:?}")),
            Ok(Err(_)) => Err(wasmtime::format_err!("the guest set no response")),
        }
    }
}

/// Readies an instance's host state for the request in `slot`.
fn begin(host: &mut HttpHost, slot: Arc<RequestSlot>) {
    host.outbound.request_id = slot.id.clone();
    host.outbound.trace = slot.trace.clone();
    host.outbound.tracer = slot.tracer.clone();
    host.request_id = slot.id.clone();
    let _ = slot.peak.set(host.limits.share_peak());
    if let Some(m) = &host.cpu {
        let _ = slot.cpu.set(m.clone());
    }
    host.slot = Some(slot);
}

/// How long a failed request waits to learn how a reused (0.3) instance
/// ended; a fresh instance reports at once.
const REUSED_INSTANCE_WAIT: Duration = Duration::from_millis(250);

impl HandlerState for State {
    type StoreData = HttpHost;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HttpHost, Expiration, Worker>> {
        let spec = &self.spec;
        let stdout = Capture::truncating(LOG_LIMIT);
        let stderr = Capture::truncating(LOG_LIMIT);
        let mut b = WasiCtxBuilder::new();
        b.stdout(stdout.clone())
            .stderr(stderr.clone())
            .envs(&spec.env);
        spec::preopen(&mut b, &spec.files).map_err(|f| wasmtime::format_err!("{}", f.reason()))?;
        let host = HttpHost {
            wasi: b.build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound: Outbound {
                rules: spec.outbound.clone(),
                function: spec.name.clone(),
                request_id: String::new(),
                trace: None,
                tracer: None,
                breakers: spec.upstreams.clone(),
            },
            limits: Limits::new(Some(spec.limits.max_memory), false),
            stdout,
            stderr,
            request_id: String::new(),
            slot: None,
            cpu: None,
            active: spec.clock.active(),
        };
        let mut store = Store::new(&self.engine, host);
        store.limiter(|h| &mut h.limits);
        store.data_mut().cpu = crate::epochs::arm(&mut store, spec);
        if self.metered {
            store.set_fuel(spec.limits.fuel.unwrap_or(u64::MAX))?;
        }
        let started = std::time::Instant::now();
        let proxy = match self.pre.instantiate_async(&mut store).await {
            Ok(proxy) => proxy,
            Err(e) if store.data().limits.grow_failures() > 0 => {
                return Err(wasmtime::Error::new(spec::InitialMemoryRefused {
                    limit: spec.limits.max_memory,
                    detail: format!("{e:#}"),
                }));
            }
            Err(e) => return Err(e),
        };
        spec.metrics
            .instantiate
            .observe(started.elapsed().as_secs_f64());
        spec.metrics.instantiated();
        Ok(Instance {
            store,
            proxy,
            view: |h: &mut HttpHost| wasmtime_wasi_http::WasiHttpView::http(h),
            expiration: Expiration::new(spec.limits.timeout),
            state: Worker {
                spec: spec.clone(),
                reuse: self.reuse,
            },
        })
    }
}

/// Per-instance policy: how many requests, and what to do at the end.
pub struct Worker {
    spec: Arc<Spec>,
    reuse: usize,
}

impl WorkerState for Worker {
    type StoreData = HttpHost;
    type RequestData = Arc<RequestSlot>;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse {
            ShouldAccept::Never
        } else if concurrent >= 1 {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HttpHost>,
        slot: Arc<RequestSlot>,
        _task: wasmtime::component::GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync + 'static>> {
        begin(store.data_mut(), slot);
        Box::pin(tokio::time::sleep(self.spec.limits.timeout))
    }

    fn drop(&self, store: Store<HttpHost>, result: Result<(), wasmtime::Error>) {
        // Fuel is read only when metered: `get_fuel` on an unmetered store
        // builds an error, and with RUST_BACKTRACE set a backtrace with it,
        // on every request.
        if let Some(budget) = self.spec.limits.fuel
            && store.engine().get_consume_fuel()
            && let Ok(left) = store.get_fuel()
        {
            self.spec
                .metrics
                .fuel
                .observe(budget.saturating_sub(left) as f64);
        }
        let host = store.into_data();
        self.spec
            .metrics
            .memory(host.limits.peak_memory(), host.limits.grow_failures());
        let (out, out_cut) = host.stdout.take();
        let (err, err_cut) = host.stderr.take();
        log::guest_output("stdout", &host.request_id, &self.spec.name, &out, out_cut);
        log::guest_output("stderr", &host.request_id, &self.spec.name, &err, err_cut);
        if let Err(e) = &result {
            let text = format!("{e:#}").replace('\n', " ");
            log::line(
                "warn",
                &host.request_id,
                &self.spec.name,
                &format!("instance ended: {text}"),
            );
        }
        // Always answer, so the request learns at once how its instance ended.
        let tx = host
            .slot
            .and_then(|s| s.ended.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(tx) = tx {
            let _ = tx.send(result);
        }
    }
}

/// Ends an instance that ran past its timeout (or idled too long).
pub struct Expiration {
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    deadline: Option<Instant>,
}

impl Expiration {
    fn new(timeout: Duration) -> Self {
        Expiration {
            timeout,
            sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))),
            deadline: None,
        }
    }
}

impl WorkerExpiration for Expiration {
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        state: WorkerStatus,
        start: Instant,
    ) -> Poll<()> {
        let deadline = match state {
            WorkerStatus::Idle => start + IDLE_TIMEOUT,
            WorkerStatus::Requests | WorkerStatus::PostReturn => start + self.timeout + END_GRACE,
        };
        if self.deadline != Some(deadline) {
            self.deadline = Some(deadline);
            self.sleep.as_mut().reset(deadline.into());
        }
        self.sleep.as_mut().poll(cx)
    }
}
