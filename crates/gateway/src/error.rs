//! Why the gateway answered a request itself instead of an upstream, and the problem each reason
//! becomes on the wire.
//!
//! Answers that come from an upstream — its own 4xx and 5xx problems included — pass through
//! untouched; only these are the gateway's.

use axum::response::{IntoResponse, Response};
use boxoffice_shared::problem::ErrorChain;
use boxoffice_shared::{ErrorCode, Problem};

use crate::routing::Service;

/// A request the gateway could not hand to an upstream, or whose upstream failed to answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No service owns the path: an unknown path, or an internal service-to-service route.
    #[error("no service owns this path")]
    NotFound,
    /// Every instance of the service is marked down (or the only other one just failed too).
    #[error("no healthy {service} instance")]
    NoHealthyInstance { service: Service },
    /// The connection to the chosen instance failed before a response, and the request could not
    /// be retried elsewhere: it was not idempotent and may have reached the instance, or it was
    /// the retry already.
    #[error("{service} instance {upstream} failed before answering")]
    UpstreamFailed {
        service: Service,
        upstream: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// The client's body broke off while the gateway read it (to route a write to its
    /// concert's owner).
    #[error("the request body could not be read")]
    BodyUnread,
    /// Booking's answer broke off (or was larger than an answer the gateway keeps) while the
    /// gateway read it to keep it.
    #[error("the booking service's answer broke off")]
    AnswerUnread,
    /// The request could not be addressed to the upstream; a bug, not a client error.
    #[error("cannot build the upstream request")]
    Internal(#[from] axum::http::Error),
}

impl GatewayError {
    /// The problem code this error is answered with (API contract, "Error codes").
    pub fn code(&self) -> ErrorCode {
        match self {
            GatewayError::NotFound => ErrorCode::NotFound,
            GatewayError::NoHealthyInstance { .. }
            | GatewayError::UpstreamFailed { .. }
            | GatewayError::AnswerUnread => ErrorCode::Unavailable,
            GatewayError::BodyUnread => ErrorCode::ValidationFailed,
            GatewayError::Internal(_) => ErrorCode::Internal,
        }
    }
}

impl From<GatewayError> for Problem {
    fn from(error: GatewayError) -> Self {
        match &error {
            // Internal routes answer exactly like any unknown path, so they cannot be discovered.
            GatewayError::NotFound => Problem::new(error.code(), "there is nothing at this path"),
            GatewayError::NoHealthyInstance { service } => {
                tracing::debug!(%service, "no healthy instance");
                Problem::new(
                    error.code(),
                    format!("the {service} service is unavailable; retry shortly"),
                )
                .with_retry_after(1)
            }
            GatewayError::UpstreamFailed { service, .. } => {
                tracing::warn!(error = %ErrorChain(&error), "upstream failed");
                // A POST may have been processed before the connection broke; the detail says so,
                // and a booking retried with the same Idempotency-Key is still safe.
                Problem::new(
                    error.code(),
                    format!(
                        "the {service} service did not answer; the request may or may not have \
                         been processed, retry shortly (with the same Idempotency-Key, if any)"
                    ),
                )
                .with_retry_after(1)
            }
            GatewayError::BodyUnread => Problem::new(error.code(), error.to_string()),
            GatewayError::AnswerUnread => Problem::new(
                error.code(),
                "the booking service's answer broke off; retry shortly",
            )
            .with_retry_after(1),
            GatewayError::Internal(_) => Problem::internal(&error),
        }
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{StatusCode, header};

    #[test]
    fn each_error_has_its_code_and_status() {
        let cases = [
            (GatewayError::NotFound, ErrorCode::NotFound, 404, None),
            (
                GatewayError::NoHealthyInstance {
                    service: Service::Booking,
                },
                ErrorCode::Unavailable,
                503,
                Some("1"),
            ),
        ];
        for (error, code, status, retry_after) in cases {
            assert_eq!(error.code(), code);
            let response = error.into_response();
            assert_eq!(
                response.status(),
                StatusCode::from_u16(status).expect("status")
            );
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
            assert_eq!(
                response
                    .headers()
                    .get(header::RETRY_AFTER)
                    .map(|value| value.to_str().expect("ascii")),
                retry_after
            );
        }
    }

    #[test]
    fn a_bad_upstream_request_is_internal() {
        let error = GatewayError::from(
            axum::http::Request::builder()
                .uri("\n")
                .body(())
                .expect_err("invalid uri"),
        );
        assert_eq!(error.code(), ErrorCode::Internal);
    }
}
