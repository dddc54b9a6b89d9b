//! Every way an invocation can fail, from any trigger, and what kind of
//! failure each is ([`Class`]). Triggers map a failure to their own answer
//! (`wedge_http::status` to an HTTP status) and nowhere else.

use std::time::Duration;

/// The trigger-neutral meaning of a failure: each trigger maps it to its own
/// answer (an HTTP status; ack, retry or dead-letter for a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Turned away before the guest ran, for something in the input itself:
    /// the same input fails the same way again.
    Refused,
    /// Turned away before the guest ran because the function is at its limit
    /// or the server is stopping: the same input may succeed later.
    Busy,
    /// The guest ran and failed (trapped, ran out of time, memory or fuel, or
    /// answered nonsense).
    Guest,
    /// wedge itself failed.
    Internal,
}

/// Why a request did not get the guest's own response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No route matches the path.
    NoRoute,
    /// The route exists but not for this method.
    MethodNotAllowed { allowed: Vec<String> },
    /// The request body is over `max_request_body`.
    BodyTooLarge { limit: u64 },
    /// The client did not send the whole body within `body_timeout`.
    BodyTimeout { after: Duration },
    /// The request could not be read (a broken body, say).
    BadRequest { problem: String },
    /// A function that takes CloudEvents was sent something that is no
    /// valid event; `problem` says what, for the client.
    BadEvent { problem: String },
    /// The request headers are over the server's limit.
    HeadersTooLarge { limit: usize },
    /// A rate limit has no token left; one will be there after `retry_after`.
    RateLimited {
        policy: &'static str,
        retry_after: Duration,
    },
    /// The function's circuit breaker is open: it has been failing, and
    /// requests are shed until a probe succeeds.
    CircuitOpen { retry_after: Duration },
    /// Every slot busy and the queue full.
    QueueFull,
    /// Waited in the queue past `queue_timeout`.
    QueueTimeout { waited: Duration },
    /// The guest trapped.
    Trap { message: String },
    /// The guest hit its memory limit (trapped, or failed after a refused grow).
    MemoryLimit { message: String },
    /// The guest ran past its timeout.
    Timeout { after: Duration },
    /// The guest used up its fuel budget.
    OutOfFuel { budget: u64 },
    /// The guest's own code ran on the CPU past its `cpu_time` budget.
    CpuTime { budget: Duration },
    /// The guest's response could not be understood.
    Malformed { problem: String },
    /// The guest's response body went over `max_response_body`.
    ResponseTooLarge { limit: u64 },
    /// A WAGI guest exited non-zero without a response.
    GuestExit { code: i32 },
    /// A Go SDK function's handler panicked (or failed) before its
    /// response was complete; `message` is its reason.
    Panicked { message: String },
    /// The server is shutting down.
    ShuttingDown,
    /// Something went wrong in wedge itself.
    Internal { message: String },
}

impl Failure {
    /// What kind of failure this is, for a trigger to choose its answer.
    pub fn class(&self) -> Class {
        match self {
            Failure::NoRoute
            | Failure::MethodNotAllowed { .. }
            | Failure::BodyTooLarge { .. }
            | Failure::BodyTimeout { .. }
            | Failure::BadRequest { .. }
            | Failure::BadEvent { .. }
            | Failure::HeadersTooLarge { .. } => Class::Refused,
            Failure::QueueFull
            | Failure::QueueTimeout { .. }
            | Failure::ShuttingDown
            | Failure::RateLimited { .. }
            | Failure::CircuitOpen { .. } => Class::Busy,
            Failure::Trap { .. }
            | Failure::MemoryLimit { .. }
            | Failure::Timeout { .. }
            | Failure::OutOfFuel { .. }
            | Failure::CpuTime { .. }
            | Failure::Malformed { .. }
            | Failure::ResponseTooLarge { .. }
            | Failure::GuestExit { .. }
            | Failure::Panicked { .. } => Class::Guest,
            Failure::Internal { .. } => Class::Internal,
        }
    }

    /// A short label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::NoRoute => "no-route",
            Failure::MethodNotAllowed { .. } => "method",
            Failure::BodyTooLarge { .. } => "request-too-large",
            Failure::BodyTimeout { .. } => "body-timeout",
            Failure::BadRequest { .. } => "bad-request",
            Failure::BadEvent { .. } => "bad-event",
            Failure::HeadersTooLarge { .. } => "headers-too-large",
            Failure::QueueFull => "queue-full",
            Failure::RateLimited { .. } => "rate-limited",
            Failure::CircuitOpen { .. } => "circuit-open",
            Failure::QueueTimeout { .. } => "queue-timeout",
            Failure::Trap { .. } => "trap",
            Failure::MemoryLimit { .. } => "memory",
            Failure::Timeout { .. } => "timeout",
            Failure::OutOfFuel { .. } => "fuel",
            Failure::CpuTime { .. } => "cpu-time",
            Failure::Malformed { .. } => "malformed",
            Failure::ResponseTooLarge { .. } => "response-too-large",
            Failure::GuestExit { .. } => "exit",
            Failure::Panicked { .. } => "panic",
            Failure::ShuttingDown => "shutdown",
            Failure::Internal { .. } => "internal",
        }
    }

    /// The reason given to every client: no guest output, no internals.
    pub fn summary(&self) -> String {
        match self {
            Failure::Trap { .. } => "guest trapped".into(),
            Failure::MemoryLimit { .. } => "guest hit its memory limit".into(),
            Failure::Malformed { .. } => "malformed guest response".into(),
            Failure::Panicked { .. } => "the function panicked".into(),
            Failure::BadRequest { .. } => "the request could not be read".into(),
            Failure::Internal { .. } => "internal error".into(),
            _ => self.reason(),
        }
    }

    /// The full reason, for the log and for holders of the debug token.
    pub fn reason(&self) -> String {
        match self {
            Failure::NoRoute => "no route matches this path".into(),
            Failure::BadEvent { problem } => problem.clone(),
            Failure::MethodNotAllowed { allowed } => {
                format!("method not allowed here (allowed: {})", allowed.join(", "))
            }
            Failure::BodyTooLarge { limit } => {
                format!("request body is larger than the limit of {limit} bytes")
            }
            Failure::BodyTimeout { after } => format!(
                "the request body did not arrive within {} ms",
                after.as_millis()
            ),
            Failure::BadRequest { problem } => problem.clone(),
            Failure::HeadersTooLarge { limit } => {
                format!("request headers are larger than the limit of {limit} bytes")
            }
            Failure::QueueFull => {
                "function is at its concurrency limit and its queue is full".into()
            }
            Failure::CircuitOpen { .. } => {
                "function is failing and its circuit breaker is open; requests are shed".into()
            }
            Failure::RateLimited {
                policy,
                retry_after,
            } => format!(
                "rate limit ({policy}) reached; try again in {} ms",
                retry_after.as_millis().max(1)
            ),
            Failure::QueueTimeout { waited } => format!(
                "function is at its concurrency limit; waited {} ms in the queue",
                waited.as_millis()
            ),
            Failure::Trap { message } => format!("guest trapped: {message}"),
            Failure::MemoryLimit { message } => format!("guest hit its memory limit: {message}"),
            Failure::Timeout { after } => {
                format!("guest timed out after {} ms", after.as_millis())
            }
            Failure::OutOfFuel { budget } => {
                format!("guest used up its fuel budget of {budget}")
            }
            Failure::CpuTime { budget } => format!(
                "guest used up its CPU-time budget of {} ms",
                budget.as_millis()
            ),
            Failure::Malformed { problem } => format!("malformed guest response: {problem}"),
            Failure::ResponseTooLarge { limit } => {
                format!("guest response body is larger than the limit of {limit} bytes")
            }
            Failure::GuestExit { code } => {
                format!("guest exited with status {code} without a response")
            }
            Failure::Panicked { message } => format!("the function panicked: {message}"),
            Failure::ShuttingDown => "server is shutting down".into(),
            Failure::Internal { message } => format!("internal error: {message}"),
        }
    }

    /// Seconds a client should wait before retrying, for 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Failure::QueueFull | Failure::QueueTimeout { .. } => Some(1),
            // Whole seconds, rounded up: never before a token is there.
            Failure::RateLimited { retry_after, .. } | Failure::CircuitOpen { retry_after } => {
                Some(ceil_secs(*retry_after))
            }
            Failure::ShuttingDown => Some(5),
            _ => None,
        }
    }
}

/// Whole seconds, rounded up: a wait told in seconds never ends early.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_reasons() {
        let cases = [
            (Failure::NoRoute, Class::Refused),
            (Failure::BodyTooLarge { limit: 1 }, Class::Refused),
            (Failure::QueueFull, Class::Busy),
            (Failure::ShuttingDown, Class::Busy),
            (
                Failure::Timeout {
                    after: Duration::from_secs(1),
                },
                Class::Guest,
            ),
            (Failure::ResponseTooLarge { limit: 1 }, Class::Guest),
            (
                Failure::Internal {
                    message: "x".into(),
                },
                Class::Internal,
            ),
        ];
        for (f, class) in cases {
            assert_eq!(f.class(), class, "{f:?}");
        }
        assert!(Failure::QueueFull.retry_after().is_some());
        let trap = Failure::Trap {
            message: "wasm trap: secret detail".into(),
        };
        assert_eq!(trap.summary(), "guest trapped");
        assert!(trap.reason().contains("secret detail"));
        assert!(Failure::NoRoute.retry_after().is_none());
    }
}
