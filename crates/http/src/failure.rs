//! Every way a request can fail, and the one HTTP status each maps to. No
//! other code picks an error status.

use hyper::StatusCode;
use std::time::Duration;

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
    /// The request headers are over the server's limit.
    HeadersTooLarge { limit: usize },
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
    /// The guest's response could not be understood.
    Malformed { problem: String },
    /// The guest's response body went over `max_response_body`.
    ResponseTooLarge { limit: u64 },
    /// A WAGI guest exited non-zero without a response.
    GuestExit { code: i32 },
    /// The server is shutting down.
    ShuttingDown,
    /// Something went wrong in wedge itself.
    Internal { message: String },
}

impl Failure {
    pub fn status(&self) -> StatusCode {
        match self {
            Failure::NoRoute => StatusCode::NOT_FOUND,
            Failure::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Failure::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Failure::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Failure::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Failure::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Failure::QueueFull | Failure::QueueTimeout { .. } | Failure::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Failure::Trap { .. }
            | Failure::MemoryLimit { .. }
            | Failure::OutOfFuel { .. }
            | Failure::ResponseTooLarge { .. }
            | Failure::GuestExit { .. }
            | Failure::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Failure::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Failure::Malformed { .. } => StatusCode::BAD_GATEWAY,
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
            Failure::HeadersTooLarge { .. } => "headers-too-large",
            Failure::QueueFull => "queue-full",
            Failure::QueueTimeout { .. } => "queue-timeout",
            Failure::Trap { .. } => "trap",
            Failure::MemoryLimit { .. } => "memory",
            Failure::Timeout { .. } => "timeout",
            Failure::OutOfFuel { .. } => "fuel",
            Failure::Malformed { .. } => "malformed",
            Failure::ResponseTooLarge { .. } => "response-too-large",
            Failure::GuestExit { .. } => "exit",
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
            Failure::BadRequest { .. } => "the request could not be read".into(),
            Failure::Internal { .. } => "internal error".into(),
            _ => self.reason(),
        }
    }

    /// The full reason, for the log and for holders of the debug token.
    pub fn reason(&self) -> String {
        match self {
            Failure::NoRoute => "no route matches this path".into(),
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
            Failure::Malformed { problem } => format!("malformed guest response: {problem}"),
            Failure::ResponseTooLarge { limit } => {
                format!("guest response body is larger than the limit of {limit} bytes")
            }
            Failure::GuestExit { code } => {
                format!("guest exited with status {code} without a response")
            }
            Failure::ShuttingDown => "server is shutting down".into(),
            Failure::Internal { message } => format!("internal error: {message}"),
        }
    }

    /// Seconds a client should wait before retrying, for 503s.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Failure::QueueFull | Failure::QueueTimeout { .. } => Some(1),
            Failure::ShuttingDown => Some(5),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases = [
            (Failure::NoRoute, 404),
            (
                Failure::MethodNotAllowed {
                    allowed: vec!["GET".into()],
                },
                405,
            ),
            (Failure::BodyTooLarge { limit: 1 }, 413),
            (
                Failure::BodyTimeout {
                    after: Duration::from_secs(1),
                },
                408,
            ),
            (Failure::HeadersTooLarge { limit: 1 }, 431),
            (
                Failure::Trap {
                    message: "x".into(),
                },
                500,
            ),
            (
                Failure::MemoryLimit {
                    message: "x".into(),
                },
                500,
            ),
            (
                Failure::Timeout {
                    after: Duration::from_secs(1),
                },
                504,
            ),
            (
                Failure::Malformed {
                    problem: "x".into(),
                },
                502,
            ),
            (Failure::QueueFull, 503),
            (
                Failure::QueueTimeout {
                    waited: Duration::ZERO,
                },
                503,
            ),
            (Failure::ResponseTooLarge { limit: 1 }, 500),
        ];
        for (f, status) in cases {
            assert_eq!(f.status().as_u16(), status, "{f:?}");
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
