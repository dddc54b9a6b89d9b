//! The one place a failure becomes an HTTP answer: its status, and a
//! plain-text body with the request id (`Retry-After`, `Allow` and
//! `Connection: close` where they apply).

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use wedge_executor::body::{self, Body};
use wedge_executor::failure::Failure;

/// The status a failure is answered with.
pub fn of(failure: &Failure) -> StatusCode {
    match failure {
        Failure::NoRoute => StatusCode::NOT_FOUND,
        Failure::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        Failure::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Failure::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
        Failure::BadRequest { .. } | Failure::BadEvent { .. } => StatusCode::BAD_REQUEST,
        Failure::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Failure::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        Failure::QueueFull
        | Failure::QueueTimeout { .. }
        | Failure::ShuttingDown
        | Failure::CircuitOpen { .. }
        | Failure::CpuTime { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Trap { .. }
        | Failure::MemoryLimit { .. }
        | Failure::OutOfFuel { .. }
        | Failure::ResponseTooLarge { .. }
        | Failure::GuestExit { .. }
        | Failure::Panicked { .. }
        | Failure::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        Failure::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        Failure::Malformed { .. } => StatusCode::BAD_GATEWAY,
    }
}

/// The response for a failure: its status, and a plain-text summary with
/// the request id. The detail (a trap's message, a malformed response's
/// problem) goes to the log, and into the body only with `detail`, for
/// holders of the debug token.
pub fn response(failure: &Failure, id: &str, detail: bool) -> Response<Body> {
    let status = of(failure);
    let reason = if detail {
        failure.reason()
    } else {
        failure.summary()
    };
    let body = format!(
        "{} {}: {reason} (request id {id})\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
    );
    let mut r = Response::new(body::full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(secs) = failure.retry_after() {
        h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Failure::MethodNotAllowed { allowed } = failure
        && let Ok(v) = HeaderValue::from_str(&allowed.join(", "))
    {
        h.insert(header::ALLOW, v);
    }
    if matches!(failure, Failure::BodyTimeout { .. }) {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
            assert_eq!(of(&f).as_u16(), status, "{f:?}");
        }
    }

    #[test]
    fn responses_carry_the_request_id_and_hide_detail() {
        let trap = Failure::Trap {
            message: "wasm trap: secret detail".into(),
        };
        let r = response(&trap, "req-1", false);
        assert_eq!(r.status(), 500);
        let r = response(&Failure::QueueFull, "req-2", false);
        assert_eq!(r.headers()[header::RETRY_AFTER], "1");
    }
}
