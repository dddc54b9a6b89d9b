//! What a store does at each epoch tick: the guest yields to the scheduler,
//! so a busy loop cannot starve other requests (the wall-clock timeout then
//! drops it); while a profile is being taken, a sample of the guest's stack
//! is taken; and with a `cpu_time` budget, the guest's on-CPU time is
//! checked and the guest stopped once past it.
//!
//! A guest's first deadline is [`FIRST_DEADLINE`] ticks away, not one: the
//! ticker is not aligned with requests, so with one tick a guest that
//! happened to start just before a tick yielded after a few microseconds and
//! waited behind every other ready request on its thread. Under paced load
//! (requests in bursts, one per millisecond) that put about one request in a
//! hundred at the back of its burst. Every guest now runs at least one full
//! tick before its first yield, and a busy one yields every tick after that.

use crate::spec::Spec;
use std::sync::Arc;
use wasmtime::{Store, UpdateDeadline};
use wedge_runtime::cpu::{CpuMeter, CpuTimeExceeded};

/// Ticks from a store's start to its first yield (or budget check): at
/// least one whole tick of running.
pub const FIRST_DEADLINE: u64 = 2;

/// Sets a request store's epoch policy; returns the store's CPU meter when
/// its function has a budget.
pub fn arm<T: Send + 'static>(store: &mut Store<T>, spec: &Spec) -> Option<CpuMeter> {
    let budget = spec.limits.cpu_time.map(|budget| {
        let meter = CpuMeter::default();
        meter.attach(store);
        (meter, budget)
    });
    let profiling = spec
        .profiling
        .is_active()
        .then(|| Arc::clone(&spec.profiling));
    let meter = budget.as_ref().map(|(m, _)| m.clone());
    if budget.is_none() && profiling.is_none() {
        store.epoch_deadline_async_yield_and_update(1);
    } else {
        store.epoch_deadline_callback(move |ctx| {
            if let Some(p) = &profiling {
                p.sample(&ctx);
            }
            let Some((meter, budget)) = &budget else {
                return Ok(UpdateDeadline::Yield(1));
            };
            if meter.used() > *budget {
                return Err(wasmtime::Error::new(CpuTimeExceeded { budget: *budget }));
            }
            // The fiber leaves this thread while it yields; the meter runs
            // again on whichever thread resumes it.
            meter.pause();
            let meter = meter.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    meter.resume();
                }),
            ))
        });
    }
    store.set_epoch_deadline(FIRST_DEADLINE);
    meter
}
