//! Running a WASI command once — a preview1 module or a `wasi:cli` component —
//! with limits, collecting statistics. This is `wedge run`'s engine room.

use crate::dirs::DirMount;
use crate::limits::Limits;
use crate::load::{Loaded, Program};
use crate::outcome::Outcome;
use crate::stats::Stats;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// How long a guest may keep running after its deadline passed (it can only
/// be stuck inside a blocking host call then) before `on_stuck` is called.
pub const STUCK_GRACE: Duration = Duration::from_millis(250);

/// What to run the guest with.
#[derive(Default)]
pub struct RunConfig {
    /// Program name and arguments, `argv[0]` first.
    pub argv: Vec<String>,
    /// The guest's whole environment.
    pub env: Vec<(String, String)>,
    pub dirs: Vec<DirMount>,
    /// Linear memory limit in bytes.
    pub max_memory: Option<u64>,
    pub trap_on_grow_failure: bool,
    pub timeout: Option<Duration>,
    pub fuel: Option<u64>,
    /// Called from the watchdog thread when the guest is still running
    /// [`STUCK_GRACE`] after its deadline (blocked in a host call, where epoch
    /// interruption cannot reach it). The CLI exits the process from here.
    pub on_stuck: Option<Box<dyn FnOnce() + Send>>,
}

/// The result of a run.
pub struct Report {
    pub outcome: Outcome,
    pub stats: Stats,
}

/// Store state for a preview1 module.
struct ModuleHost {
    wasi: WasiP1Ctx,
    limits: Limits,
}

/// Store state for a component.
struct ComponentHost {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: Limits,
}

impl WasiView for ComponentHost {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn wasi_builder(cfg: &RunConfig) -> wasmtime::Result<WasiCtxBuilder> {
    let mut b = WasiCtxBuilder::new();
    // One guest on a current-thread runtime: a blocking WASI call (a file
    // read) may as well block this thread rather than hop to Tokio's
    // blocking pool and back.
    b.allow_blocking_current_thread(true);
    b.inherit_stdio().args(&cfg.argv).envs(&cfg.env);
    for d in &cfg.dirs {
        let perms = if d.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        b.preopened_dir(&d.host, &d.guest, perms).map_err(|e| {
            e.context(format!(
                "cannot preopen directory {} as {}",
                d.host.display(),
                d.guest
            ))
        })?;
    }
    Ok(b)
}

/// Ticks the engine's epoch once when the deadline passes.
struct Watchdog {
    _cancel: mpsc::Sender<()>,
}

impl Watchdog {
    fn start(
        engine: &Engine,
        timeout: Duration,
        on_stuck: Option<Box<dyn FnOnce() + Send>>,
    ) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        let engine = engine.clone();
        std::thread::spawn(move || {
            if rx.recv_timeout(timeout) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            engine.increment_epoch();
            if rx.recv_timeout(STUCK_GRACE) == Err(mpsc::RecvTimeoutError::Timeout)
                && let Some(f) = on_stuck
            {
                f();
            }
        });
        Watchdog { _cancel: tx }
    }
}

fn prepare_store<T>(store: &mut Store<T>, cfg: &RunConfig, metered: bool) -> wasmtime::Result<()> {
    store.epoch_deadline_trap();
    // Without a timeout nobody ticks the epoch; the deadline is never reached.
    store.set_epoch_deadline(if cfg.timeout.is_some() {
        1
    } else {
        u64::MAX / 2
    });
    if metered {
        store.set_fuel(cfg.fuel.unwrap_or(u64::MAX))?;
    }
    Ok(())
}

/// Runs `loaded` once. `Err` means wedge could not start the guest (link
/// error, bad preopen); anything the guest does is an [`Outcome`].
pub fn run(engine: &Engine, loaded: &Loaded, mut cfg: RunConfig) -> wasmtime::Result<Report> {
    let metered = engine.get_consume_fuel();
    if cfg.fuel.is_some() && !metered {
        wasmtime::bail!("--fuel needs an engine built with fuel metering");
    }
    let mut stats = Stats {
        module: cfg.argv.first().cloned().unwrap_or_default(),
        module_sha256: crate::cache::hex(&loaded.sha256),
        module_size_bytes: loaded.file_size,
        kind: match loaded.program {
            Program::Module(_) => "module",
            Program::Component(_) => "component",
        },
        cache: loaded.cache.as_str(),
        cache_note: loaded.cache_note.clone(),
        compile_us: 0,
        instantiate_us: 0,
        run_us: 0,
        cpu_us: 0,
        fuel_limit: cfg.fuel,
        fuel_consumed: None,
        memory_limit_bytes: cfg.max_memory,
        peak_memory_bytes: 0,
        memory_grow_failures: 0,
        outcome: "exit",
        exit_code: 0,
        trap: None,
        host_peak_rss_bytes: None,
    };
    let limits = Limits::new(cfg.max_memory, cfg.trap_on_grow_failure);
    let builder = wasi_builder(&cfg)?;
    let watchdog_timeout = cfg.timeout;
    let on_stuck = cfg.on_stuck.take();
    let meter = crate::cpu::CpuMeter::default();
    // The guest runs on this thread under a current-thread runtime. The
    // synchronous bindings would start WASI's own multi-threaded runtime on
    // the first WASI call: two worker threads created, and every later
    // mapping change interrupting their cores to flush the TLB (measured:
    // ~0.3 ms of a 3 ms hello).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| wasmtime::format_err!("starting the async runtime: {e}"))?;
    let (result, times, limits, fuel_left) = match &loaded.program {
        Program::Module(module) => {
            let mut builder = builder;
            let host = ModuleHost {
                wasi: builder.build_p1(),
                limits,
            };
            let mut store = Store::new(engine, host);
            store.limiter(|h| &mut h.limits);
            prepare_store(&mut store, &cfg, metered)?;
            meter.attach(&mut store);
            let mut linker = wasmtime::Linker::new(engine);
            wasmtime_wasi::p1::add_to_linker_async(&mut linker, |h: &mut ModuleHost| &mut h.wasi)?;
            let t0 = Instant::now();
            let pre = linker.instantiate_pre(module).map_err(link_error)?;
            let _watchdog = watchdog_timeout.map(|t| Watchdog::start(engine, t, on_stuck));
            let (result, inst, run) = rt.block_on(async {
                let instance = pre.instantiate_async(&mut store).await;
                let (inst, t1) = (t0.elapsed(), Instant::now());
                let result = match instance {
                    Err(e) => return (Err(e), inst, Duration::ZERO),
                    Ok(i) => match i.get_typed_func::<(), ()>(&mut store, "_start") {
                        Ok(start) => start.call_async(&mut store, ()).await,
                        Err(_) => Err(wasmtime::format_err!(
                            "the module exports no `_start` function: it is not a WASI command \
                             (a reactor or library cannot be run)"
                        )),
                    },
                };
                (result, inst, t1.elapsed())
            });
            let fuel = metered.then(|| store.get_fuel().unwrap_or(0));
            (result, (inst, run), store.into_data().limits, fuel)
        }
        Program::Component(component) => {
            let mut builder = builder;
            let host = ComponentHost {
                wasi: builder.build(),
                table: ResourceTable::new(),
                limits,
            };
            let mut store = Store::new(engine, host);
            store.limiter(|h| &mut h.limits);
            prepare_store(&mut store, &cfg, metered)?;
            meter.attach(&mut store);
            let mut linker = wasmtime::component::Linker::new(engine);
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
            let t0 = Instant::now();
            let pre = linker.instantiate_pre(component).map_err(link_error)?;
            let pre = wasmtime_wasi::p2::bindings::CommandPre::new(pre).map_err(|e| {
                e.context(
                    "the component is not a `wasi:cli/command` (it exports no `wasi:cli/run`)",
                )
            })?;
            let _watchdog = watchdog_timeout.map(|t| Watchdog::start(engine, t, on_stuck));
            let (result, inst, run) = rt.block_on(async {
                let command = pre.instantiate_async(&mut store).await;
                let (inst, t1) = (t0.elapsed(), Instant::now());
                let result = match command {
                    Err(e) => return (Err(e), inst, Duration::ZERO),
                    Ok(c) => c.wasi_cli_run().call_run(&mut store).await,
                };
                let exit = |()| wasmtime::Error::new(wasmtime_wasi::I32Exit(1));
                (result.and_then(|r| r.map_err(exit)), inst, t1.elapsed())
            });
            let fuel = metered.then(|| store.get_fuel().unwrap_or(0));
            (result, (inst, run), store.into_data().limits, fuel)
        }
    };
    let outcome = match result {
        Ok(()) => Outcome::Exited(0),
        Err(e) => {
            let name = std::path::Path::new(&stats.module)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Outcome::from_error(e, &name, cfg.timeout, cfg.fuel)?
        }
    };
    stats.set_times(loaded.load_time, times.0, times.1);
    stats.cpu_us = meter.counted().as_micros().try_into().unwrap_or(u64::MAX);
    if let (Some(left), true) = (fuel_left, metered) {
        let budget = cfg.fuel.unwrap_or(u64::MAX);
        stats.fuel_consumed = Some(budget - left);
    }
    stats.peak_memory_bytes = limits.peak_memory();
    stats.memory_grow_failures = limits.grow_failures();
    stats.outcome = outcome.kind();
    stats.exit_code = outcome.exit_status();
    stats.trap = outcome.message();
    Ok(Report { outcome, stats })
}

fn link_error(e: wasmtime::Error) -> wasmtime::Error {
    wasmtime::format_err!(
        "cannot link: {e:#} (wedge provides WASI preview1 `wasi_snapshot_preview1` to modules \
         and WASI 0.2 `wasi:*` interfaces to components; any other import must be satisfied \
         by the program itself)"
    )
}
