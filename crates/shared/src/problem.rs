//! RFC 9457 problem documents: the one shape every boxoffice error takes on the wire.
//!
//! Clients branch on `code`, so the set of codes is closed ([`ErrorCode`]) and each code maps to
//! exactly one HTTP status in [`ErrorCode::status`]. Service crates keep their own error enums and
//! convert them into a [`Problem`] with a single `match`; internal causes are logged there and never
//! reach the client. See the "Conventions" and "Error codes" sections of the API contract.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Base of the `type` URI of every problem; the code is appended.
pub const PROBLEM_TYPE_BASE: &str = "https://boxoffice.dev/problems/";

/// Every problem `code` boxoffice can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedBody,
    Unauthenticated,
    InvalidCredentials,
    InvalidRefreshToken,
    Forbidden,
    ConcertNotFound,
    SeatTypeNotFound,
    BookingNotFound,
    NotFound,
    MethodNotAllowed,
    EmailTaken,
    PhoneTaken,
    SoldOut,
    AlreadyBooked,
    BookingClosed,
    SalesNotOpen,
    AlreadyCancelled,
    IdempotencyKeyReused,
    HoldNotFound,
    HoldNotActive,
    HoldExpired,
    PaymentDeclined,
    PaymentRequired,
    InvalidSignature,
    AlreadyCheckedIn,
    TicketCancelled,
    InvalidTicket,
    SeatsAvailable,
    AlreadyWaitlisted,
    WaitlistEntryNotFound,
    WebhookNotFound,
    AdmissionRequired,
    BodyTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    RateLimited,
    Internal,
    Unavailable,
}

impl ErrorCode {
    /// The HTTP status this code is always sent with.
    pub fn status(self) -> StatusCode {
        use ErrorCode::*;
        match self {
            MalformedBody | InvalidSignature => StatusCode::BAD_REQUEST,
            Unauthenticated | InvalidCredentials | InvalidRefreshToken => StatusCode::UNAUTHORIZED,
            Forbidden | AdmissionRequired => StatusCode::FORBIDDEN,
            ConcertNotFound
            | SeatTypeNotFound
            | BookingNotFound
            | HoldNotFound
            | WaitlistEntryNotFound
            | WebhookNotFound
            | NotFound => StatusCode::NOT_FOUND,
            PaymentDeclined => StatusCode::PAYMENT_REQUIRED,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            EmailTaken | PhoneTaken | SoldOut | AlreadyBooked | BookingClosed | SalesNotOpen
            | AlreadyCancelled | IdempotencyKeyReused | HoldNotActive | HoldExpired
            | PaymentRequired | AlreadyCheckedIn | TicketCancelled | SeatsAvailable
            | AlreadyWaitlisted => StatusCode::CONFLICT,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ValidationFailed | InvalidTicket => StatusCode::UNPROCESSABLE_ENTITY,
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The short, human title of the problem type (stable per code, as RFC 9457 asks).
    pub fn title(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedBody => "Malformed request body",
            Unauthenticated => "Authentication required",
            InvalidCredentials => "Invalid credentials",
            InvalidRefreshToken => "Invalid refresh token",
            Forbidden => "Forbidden",
            ConcertNotFound => "Concert not found",
            SeatTypeNotFound => "Seat type not found",
            BookingNotFound => "Booking not found",
            NotFound => "Not found",
            MethodNotAllowed => "Method not allowed",
            EmailTaken => "Email already registered",
            PhoneTaken => "Phone already registered",
            SoldOut => "Sold out",
            AlreadyBooked => "Already booked",
            BookingClosed => "Booking closed",
            SalesNotOpen => "Sales not open yet",
            AlreadyCancelled => "Already cancelled",
            IdempotencyKeyReused => "Idempotency key reused",
            HoldNotFound => "Hold not found",
            HoldNotActive => "Hold not active",
            HoldExpired => "Hold expired",
            PaymentDeclined => "Payment declined",
            PaymentRequired => "Payment required",
            InvalidSignature => "Invalid signature",
            AlreadyCheckedIn => "Already checked in",
            TicketCancelled => "Ticket cancelled",
            InvalidTicket => "Invalid ticket",
            SeatsAvailable => "Seats available",
            AlreadyWaitlisted => "Already on the waiting list",
            WaitlistEntryNotFound => "Waiting-list entry not found",
            WebhookNotFound => "Webhook not found",
            AdmissionRequired => "Admission required",
            BodyTooLarge => "Request body too large",
            UnsupportedMediaType => "Unsupported media type",
            ValidationFailed => "Validation failed",
            RateLimited => "Too many requests",
            Internal => "Internal server error",
            Unavailable => "Service unavailable",
        }
    }

    /// The code of a wire name (the inverse of [`ErrorCode::as_str`]); `None` for a code this
    /// build does not know. Goes through serde so that it can never disagree with serialization.
    pub fn parse(code: &str) -> Option<Self> {
        use serde::de::IntoDeserializer;
        let code: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            code.into_deserializer();
        Self::deserialize(code).ok()
    }

    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            MalformedBody => "malformed_body",
            Unauthenticated => "unauthenticated",
            InvalidCredentials => "invalid_credentials",
            InvalidRefreshToken => "invalid_refresh_token",
            Forbidden => "forbidden",
            ConcertNotFound => "concert_not_found",
            SeatTypeNotFound => "seat_type_not_found",
            BookingNotFound => "booking_not_found",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            EmailTaken => "email_taken",
            PhoneTaken => "phone_taken",
            SoldOut => "sold_out",
            AlreadyBooked => "already_booked",
            BookingClosed => "booking_closed",
            SalesNotOpen => "sales_not_open",
            AlreadyCancelled => "already_cancelled",
            IdempotencyKeyReused => "idempotency_key_reused",
            HoldNotFound => "hold_not_found",
            HoldNotActive => "hold_not_active",
            HoldExpired => "hold_expired",
            PaymentDeclined => "payment_declined",
            PaymentRequired => "payment_required",
            InvalidSignature => "invalid_signature",
            AlreadyCheckedIn => "already_checked_in",
            TicketCancelled => "ticket_cancelled",
            InvalidTicket => "invalid_ticket",
            SeatsAvailable => "seats_available",
            AlreadyWaitlisted => "already_waitlisted",
            WaitlistEntryNotFound => "waitlist_entry_not_found",
            WebhookNotFound => "webhook_not_found",
            AdmissionRequired => "admission_required",
            BodyTooLarge => "body_too_large",
            UnsupportedMediaType => "unsupported_media_type",
            ValidationFailed => "validation_failed",
            RateLimited => "rate_limited",
            Internal => "internal",
            Unavailable => "unavailable",
        }
    }
}

/// One invalid field of a request, listed under `errors` of a `validation_failed` problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field's name (a dotted path for nested fields, e.g. `seat_types[0].capacity`).
    pub field: String,
    /// What is wrong with it, for humans.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The invalid fields of one request, collected while each field is parsed, so that a client
/// hears of every bad field at once:
///
/// ```
/// # use boxoffice_shared::problem::{FieldError, FieldErrors};
/// let mut errors = FieldErrors::default();
/// let count = errors.check("count", "12".parse::<u32>().map_err(|_| "not a number"));
/// let name = errors.check("name", Err::<String, _>("must not be empty"));
/// let parsed = errors.finish(|| Some((count?, name?)));
/// assert_eq!(parsed.unwrap_err(), [FieldError::new("name", "must not be empty")]);
/// ```
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// The value `parsed` holds, or `None` with its error recorded against `field`.
    pub fn check<T, M: Into<String>>(
        &mut self,
        field: impl Into<String>,
        parsed: Result<T, M>,
    ) -> Option<T> {
        parsed
            .map_err(|message| self.0.push(FieldError::new(field, message)))
            .ok()
    }

    /// Records that `field` is invalid.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What `build` makes of the parsed fields when none was invalid, else every invalid field.
    /// `build` returns `None` only when a field it needs is missing, which an error explains.
    pub fn finish<T>(self, build: impl FnOnce() -> Option<T>) -> Result<T, Vec<FieldError>> {
        match (self.0.is_empty(), build()) {
            (true, Some(value)) => Ok(value),
            _ => Err(self.0),
        }
    }
}

/// An RFC 9457 problem document, ready to be sent.
///
/// The schema carries no example of its own: each response shows examples of the codes it can
/// answer (see [`crate::openapi`]), so that no 401 is illustrated with a `sold_out` problem.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `https://boxoffice.dev/problems/<code>`: the problem's code, written out as its type URI.
    #[serde(rename = "type", serialize_with = "type_uri")]
    #[schema(value_type = String, format = "uri")]
    pub problem_type: ErrorCode,
    pub title: &'static str,
    /// The HTTP status of the answer.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    pub detail: String,
    pub code: ErrorCode,
    /// Present on `validation_failed` only.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// Present on `already_checked_in` only: when the ticket's one successful scan was.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub checked_in_at: Option<time::OffsetDateTime>,
    /// Sent as the `Retry-After` header (seconds) on `rate_limited` and `unavailable`.
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

/// A problem's `type`: the URI of its code.
fn type_uri<S: serde::Serializer>(code: &ErrorCode, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&format_args!("{PROBLEM_TYPE_BASE}{}", code.as_str()))
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            problem_type: code,
            title: code.title(),
            status: code.status().as_u16(),
            detail: detail.into(),
            code,
            errors: Vec::new(),
            checked_in_at: None,
            retry_after: None,
        }
    }

    /// A `validation_failed` problem listing every invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            many => format!("{} fields are invalid", many.len()),
        };
        Self {
            errors,
            ..Self::new(ErrorCode::ValidationFailed, detail)
        }
    }

    /// A `validation_failed` problem about one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError::new(field, message)])
    }

    /// An `internal` problem. The cause is logged here, once, and never sent to the client.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %ErrorChain(cause), "internal error");
        Self::new(
            ErrorCode::Internal,
            "an unexpected error occurred; it has been logged",
        )
    }

    /// An `unavailable` problem for a dependency that is down; safe to retry.
    pub fn unavailable(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::warn!(error = %ErrorChain(cause), "dependency unavailable");
        Self {
            retry_after: Some(1),
            ..Self::new(
                ErrorCode::Unavailable,
                "a dependency is unavailable; retry shortly",
            )
        }
    }

    /// An `already_checked_in` problem: the ticket's first scan was at `at`.
    pub fn already_checked_in(at: time::OffsetDateTime) -> Self {
        Self {
            checked_in_at: Some(at),
            ..Self::new(
                ErrorCode::AlreadyCheckedIn,
                "this ticket was already checked in; see checked_in_at",
            )
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status,
            self.code.as_str(),
            self.detail
        )
    }
}

impl std::error::Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = match serde_json::to_vec(&self) {
            Ok(body) => body,
            // Serializing this struct cannot fail; keep the response well-formed regardless.
            Err(_) => b"{\"code\":\"internal\"}".to_vec(),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED && self.code == ErrorCode::Unauthenticated {
            // RFC 6750 §3: tell the client which scheme to use.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Displays an error with its whole `source()` chain, for logs.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serializes_as_its_wire_name_and_keeps_its_status() {
        use ErrorCode::*;
        let all = [
            (MalformedBody, 400),
            (Unauthenticated, 401),
            (InvalidCredentials, 401),
            (InvalidRefreshToken, 401),
            (Forbidden, 403),
            (ConcertNotFound, 404),
            (SeatTypeNotFound, 404),
            (BookingNotFound, 404),
            (NotFound, 404),
            (MethodNotAllowed, 405),
            (EmailTaken, 409),
            (PhoneTaken, 409),
            (SoldOut, 409),
            (AlreadyBooked, 409),
            (BookingClosed, 409),
            (SalesNotOpen, 409),
            (AlreadyCancelled, 409),
            (IdempotencyKeyReused, 409),
            (HoldNotFound, 404),
            (HoldNotActive, 409),
            (HoldExpired, 409),
            (PaymentDeclined, 402),
            (PaymentRequired, 409),
            (InvalidSignature, 400),
            (AlreadyCheckedIn, 409),
            (TicketCancelled, 409),
            (InvalidTicket, 422),
            (SeatsAvailable, 409),
            (AlreadyWaitlisted, 409),
            (WaitlistEntryNotFound, 404),
            (WebhookNotFound, 404),
            (AdmissionRequired, 403),
            (BodyTooLarge, 413),
            (UnsupportedMediaType, 415),
            (ValidationFailed, 422),
            (RateLimited, 429),
            (Internal, 500),
            (Unavailable, 503),
        ];
        for (code, status) in all {
            assert_eq!(code.status().as_u16(), status, "{code:?}");
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("SoldOut"), None);
        assert_eq!(ErrorCode::parse("no_such_code"), None);
    }

    #[test]
    fn problem_body_has_the_rfc_9457_members() {
        let problem = Problem::invalid_field("email", "is not an email address");
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(
            json["type"],
            "https://boxoffice.dev/problems/validation_failed"
        );
        assert_eq!(json["status"], 422);
        assert_eq!(json["code"], "validation_failed");
        assert_eq!(json["errors"][0]["field"], "email");
        assert!(json.get("retry_after").is_none());
    }

    #[test]
    fn rate_limited_problem_carries_retry_after_header() {
        let response = Problem::new(ErrorCode::RateLimited, "slow down")
            .with_retry_after(30)
            .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "30");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
