//! Pre-initialising an SDK module: instantiate it once, run `_initialize`
//! (the Go runtime's start and every package's init functions) and the
//! optional warm-up export, then write the instance's memory and globals
//! out as a new module (Wizer, from Wasmtime 48). Every invocation then
//! starts from that state instead of starting the Go runtime again.
//!
//! The snapshot depends on what the guest read while it initialised: its
//! arguments, environment and preopened directories are the function's own
//! (the same in every invocation) and go into the cache key; the monotonic
//! clock is the process-wide one ([`crate::clock`]), so time never runs
//! backwards from the snapshot to a request. What it drew from `random_get`
//! is frozen: see docs/go-sdk.md.

use super::{SdkHost, abi};
use crate::spec::Spec;
use anyhow::{Result, bail};
use sha2::{Digest, Sha256};
use std::time::Duration;
use wasmtime::error::Context as _;
use wasmtime::{Instance, Linker, Module, Store};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

/// How long initialisation and warm-up may take.
const INIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Bumped whenever snapshots are taken differently.
const FORMAT: &[u8] = b"wedge-snapshot-3 wasmtime-wizer-48 coalesced";

/// The cache key of a module's snapshot: the module and everything its
/// initialisation can read (its memory limit included).
pub fn key(module_sha256: &[u8; 32], spec: &Spec) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(FORMAT);
    field(module_sha256);
    field(&spec.limits.max_memory.to_le_bytes());
    for a in super::args(spec) {
        field(a.as_bytes());
    }
    field(b"env");
    for (k, v) in &spec.env {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    field(b"files");
    for f in &spec.files {
        field(f.guest.as_bytes());
        field(f.host.as_os_str().as_encoded_bytes());
        field(&[u8::from(f.read_only)]);
    }
    h.finalize().into()
}

/// Takes the snapshot of `wasm`; the error says why it could not be taken.
pub fn take(linker: &Linker<SdkHost>, wasm: &[u8], spec: &Spec) -> Result<Vec<u8>> {
    let mut wizer = Wizer::new();
    wizer.init_func("_initialize");
    let (cx, instrumented) = wizer.instrument(wasm)?;
    let module = Module::new(linker.engine(), &instrumented)
        .context("compiling the module to initialise")?;
    // The snapshot runs on a thread of its own with its own runtime: loading
    // happens inside and outside the server's runtime alike.
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut store = super::store(linker.engine(), spec, None, None)?;
                store.epoch_deadline_async_yield_and_update(1);
                store.set_epoch_deadline(1);
                let init = async {
                    let instance = linker.instantiate_async(&mut store, &module).await?;
                    let init = instance.get_typed_func::<(), ()>(&mut store, "_initialize")?;
                    init.call_async(&mut store, ())
                        .await
                        .context("the module's initialisation failed")?;
                    if let Ok(warm) = instance.get_typed_func::<(), ()>(&mut store, abi::WARMUP) {
                        warm.call_async(&mut store, ())
                            .await
                            .context("the module's warm-up failed")?;
                    }
                    anyhow::Ok(instance)
                };
                let instance = match tokio::time::timeout(INIT_TIMEOUT, init).await {
                    Ok(r) => r?,
                    Err(_) => bail!(
                        "initialisation took longer than {} s",
                        INIT_TIMEOUT.as_secs()
                    ),
                };
                let mut state = State {
                    store: &mut store,
                    instance,
                };
                let snap = wizer.snapshot(&cx, &mut state).await?;
                super::segments::coalesce(&snap)
            })
        })
        .join()
        .unwrap_or_else(|_| bail!("the snapshot thread panicked"))
    })
}

/// What Wizer reads the initialised state through.
struct State<'a> {
    store: &'a mut Store<SdkHost>,
    instance: Instance,
}

impl InstanceState for State<'_> {
    async fn global_get(&mut self, name: &str, _: ValType) -> SnapshotVal {
        let global = self
            .instance
            .get_global(&mut *self.store, name)
            .expect("the instrumented module exports every global");
        match global.get(&mut *self.store) {
            wasmtime::Val::I32(x) => SnapshotVal::I32(x),
            wasmtime::Val::I64(x) => SnapshotVal::I64(x),
            wasmtime::Val::F32(x) => SnapshotVal::F32(x),
            wasmtime::Val::F64(x) => SnapshotVal::F64(x),
            wasmtime::Val::V128(x) => SnapshotVal::V128(x.as_u128()),
            // Wizer refuses reference types when it instruments a module.
            _ => unreachable!("a global of reference type in an instrumented module"),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        let memory = self
            .instance
            .get_memory(&mut *self.store, name)
            .expect("the instrumented module exports every memory");
        contents(memory.data(&*self.store))
    }
}
