//! Where a function's asynchronously accepted CloudEvents go: stored
//! durably before the client hears 202, then delivered with retries. The
//! HTTP trigger hands events over; the store and the delivery are elsewhere.

use bytes::Bytes;
use std::future::Future;
use std::pin::Pin;
use wedge_executor::failure::Failure;

/// Takes events for asynchronous delivery.
pub trait Ingress: Send + Sync {
    /// Stores `events` (binary-mode headers and data each) for `function`
    /// and queues them for delivery; resolves to their sequence numbers once
    /// they are durable, or to [`Failure::QueueFull`] when the backlog is at
    /// its bound, [`Failure::Internal`] when they could not be stored.
    fn accept<'a>(
        &'a self,
        function: &'a str,
        events: Vec<(http::HeaderMap, Bytes)>,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<u64>, Failure>> + Send + 'a>>;
}
