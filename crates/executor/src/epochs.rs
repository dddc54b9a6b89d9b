//! What a store does at each epoch tick: the guest yields to the scheduler,
//! so a busy loop cannot starve other requests (the wall-clock timeout then
//! drops it); while a profile is being taken, a sample of the guest's stack
//! is taken; and with a `cpu_time` budget, the guest's on-CPU time is
//! checked and the guest stopped once past it.

use crate::spec::Spec;
use std::sync::Arc;
use wasmtime::{Store, UpdateDeadline};
use wedge_runtime::cpu::{CpuMeter, CpuTimeExceeded};

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
    store.set_epoch_deadline(1);
    meter
}
