//! The concurrency gate of one function: `max_concurrency` slots, and a
//! bounded queue of requests waiting for one, each waiting at most
//! `queue_timeout`. Waiters are served first come, first served.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wedge_executor::failure::Failure;

pub struct Gate {
    slots: Arc<Semaphore>,
    waiting: AtomicU32,
    queue: u32,
    queue_timeout: Duration,
}

/// A held slot, and how long the request queued for it.
pub struct Entry {
    permit: OwnedSemaphorePermit,
    pub queued: Duration,
}

impl Entry {
    /// The slot itself, to hold for as long as the request uses the
    /// instance (a streamed response body holds it until sent).
    pub fn into_permit(self) -> OwnedSemaphorePermit {
        self.permit
    }
}

impl Gate {
    pub fn new(max_concurrency: u32, queue: u32, queue_timeout: Duration) -> Self {
        Gate {
            slots: Arc::new(Semaphore::new(max_concurrency as usize)),
            waiting: AtomicU32::new(0),
            queue,
            queue_timeout,
        }
    }

    /// Takes a slot, waiting in the queue if there is room.
    pub async fn enter(&self) -> Result<Entry, Failure> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Entry {
                permit,
                queued: Duration::ZERO,
            });
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Failure::QueueFull);
        }
        let start = Instant::now();
        let result =
            tokio::time::timeout(self.queue_timeout, self.slots.clone().acquire_owned()).await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        match result {
            Ok(Ok(permit)) => Ok(Entry {
                permit,
                queued: start.elapsed(),
            }),
            Ok(Err(_closed)) => Err(Failure::ShuttingDown),
            Err(_elapsed) => Err(Failure::QueueTimeout {
                waited: start.elapsed(),
            }),
        }
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> u32 {
        self.waiting.load(Ordering::Acquire)
    }

    /// Slots free now.
    pub fn free(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queues_then_rejects_when_full() {
        let gate = Gate::new(1, 1, Duration::from_secs(5));
        let first = gate.enter().await.unwrap();
        assert_eq!(first.queued, Duration::ZERO);
        // The second waits in the queue; the third finds the queue full.
        let second = gate.enter();
        tokio::pin!(second);
        assert!(futures::poll!(&mut second).is_pending());
        assert_eq!(gate.waiting(), 1);
        assert_eq!(gate.enter().await.err(), Some(Failure::QueueFull));
        drop(first);
        let second = second.await.unwrap();
        assert_eq!(gate.waiting(), 0);
        drop(second);
        assert_eq!(gate.free(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_timeout_gives_up() {
        let gate = Gate::new(1, 4, Duration::from_millis(100));
        let _held = gate.enter().await.unwrap();
        let err = gate.enter().await.err().unwrap();
        assert!(matches!(err, Failure::QueueTimeout { .. }), "{err:?}");
        assert_eq!(gate.waiting(), 0);
    }
}
