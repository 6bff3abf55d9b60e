//! The Booking service's errors and the one place where each becomes a problem `code`.

use boxoffice_shared::clients::ClientError;
use boxoffice_shared::{ErrorCode, FieldError, Problem};

#[derive(Debug, thiserror::Error)]
pub enum BookingError {
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("concert not found")]
    ConcertNotFound,
    #[error("seat type not found")]
    SeatTypeNotFound,
    #[error("booking not found")]
    BookingNotFound,
    #[error("sold out")]
    SoldOut,
    #[error("already booked")]
    AlreadyBooked,
    #[error("booking closed")]
    BookingClosed,
    #[error("sales not open yet")]
    SalesNotOpen,
    #[error("already cancelled")]
    AlreadyCancelled,
    #[error("idempotency key reused with a different request")]
    IdempotencyKeyReused,
    #[error("hold not found")]
    HoldNotFound,
    #[error("hold not active")]
    HoldNotActive,
    #[error("hold expired")]
    HoldExpired,
    #[error("payment declined")]
    PaymentDeclined(String),
    #[error("payment provider unavailable: {0}")]
    PaymentUnavailable(String),
    /// Another service this one asks (Auth, for a holder's name) does not answer.
    #[error("a peer service is unavailable: {0}")]
    PeerUnavailable(String),
    /// A priced seat booked in one step while the provider needs the client to confirm.
    #[error("payment required")]
    PaymentRequired,
    /// A payment provider's event whose signature does not verify.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// Not a ticket code of this deployment (garbage, forged, altered), or another concert's.
    #[error("invalid ticket: {0}")]
    InvalidTicket(&'static str),
    #[error("ticket cancelled")]
    TicketCancelled,
    /// Joining the waiting list of a seat type that has seats left.
    #[error("seats available")]
    SeatsAvailable,
    #[error("already on the waiting list")]
    AlreadyWaitlisted,
    #[error("waiting-list entry not found")]
    WaitlistEntryNotFound,
    #[error("webhook not found")]
    WebhookNotFound,
    /// The concert has a waiting room and the request no valid admission to it.
    #[error("admission required")]
    AdmissionRequired,
    /// Nothing here: no waiting room for the concert, or no place of the caller's in it.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The ticket's one successful scan was at this instant.
    #[error("already checked in")]
    AlreadyCheckedIn(time::OffsetDateTime),
    /// Authenticated without the role this needs, named here ("admin", "staff or admin").
    #[error("forbidden")]
    Forbidden(&'static str),
    /// Too many writes by this user or client address; retry after this many seconds.
    #[error("rate limited")]
    RateLimited(u64),
    #[error("the booking writer has stopped")]
    WriterStopped,
    #[error("store error")]
    Store(#[from] sqlx::Error),
    #[error("store error")]
    Writer(#[from] rusqlite::Error),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl BookingError {
    pub fn invalid(field: &str, message: &str) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<BookingError> for Problem {
    fn from(error: BookingError) -> Self {
        use BookingError::*;
        match error {
            Validation(errors) => Problem::validation(errors),
            ConcertNotFound => Problem::new(ErrorCode::ConcertNotFound, "no such concert"),
            SeatTypeNotFound => Problem::new(
                ErrorCode::SeatTypeNotFound,
                "this concert has no such seat type",
            ),
            BookingNotFound => Problem::new(ErrorCode::BookingNotFound, "no such booking"),
            SoldOut => Problem::new(ErrorCode::SoldOut, "no seat of this type is left"),
            AlreadyBooked => Problem::new(
                ErrorCode::AlreadyBooked,
                "you already hold a booking for this concert",
            ),
            BookingClosed => Problem::new(
                ErrorCode::BookingClosed,
                "sales for this concert are closed",
            ),
            SalesNotOpen => Problem::new(
                ErrorCode::SalesNotOpen,
                "sales for this concert have not opened yet",
            ),
            AlreadyCancelled => Problem::new(
                ErrorCode::AlreadyCancelled,
                "this booking is already cancelled",
            ),
            IdempotencyKeyReused => Problem::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different request",
            ),
            HoldNotFound => Problem::new(ErrorCode::HoldNotFound, "no such hold"),
            SeatsAvailable => Problem::new(
                ErrorCode::SeatsAvailable,
                "this seat type is not sold out: book it instead of waiting",
            ),
            AlreadyWaitlisted => Problem::new(
                ErrorCode::AlreadyWaitlisted,
                "you are already on the waiting list for this concert",
            ),
            WaitlistEntryNotFound => Problem::new(
                ErrorCode::WaitlistEntryNotFound,
                "no such waiting-list entry",
            ),
            HoldNotActive => Problem::new(
                ErrorCode::HoldNotActive,
                "this hold is no longer active (released, expired or completed)",
            ),
            HoldExpired => Problem::new(
                ErrorCode::HoldExpired,
                "this hold expired before it was paid; its seat is free again",
            ),
            PaymentDeclined(reason) => Problem::new(
                ErrorCode::PaymentDeclined,
                format!(
                    "the payment was declined ({reason}); the hold stays active until it expires"
                ),
            ),
            PaymentRequired => Problem::new(
                ErrorCode::PaymentRequired,
                "this seat has a price and this box office takes payment through a hold: \
                 POST /api/v1/holds, then pay it",
            ),
            InvalidSignature(why) => Problem::new(ErrorCode::InvalidSignature, why),
            InvalidTicket(why) => Problem::new(
                ErrorCode::InvalidTicket,
                format!("not a valid ticket for this concert: {why}"),
            ),
            TicketCancelled => Problem::new(
                ErrorCode::TicketCancelled,
                "this ticket's booking is cancelled: do not let it in",
            ),
            WebhookNotFound => Problem::new(ErrorCode::WebhookNotFound, "no such webhook"),
            AdmissionRequired => Problem::new(
                ErrorCode::AdmissionRequired,
                "this concert sells through its waiting room: join the queue \
                 (POST /api/v1/concerts/{id}/queue) and send your admission \
                 in the Boxoffice-Admission header",
            ),
            NotFound(what) => Problem::new(ErrorCode::NotFound, what),
            AlreadyCheckedIn(at) => Problem::already_checked_in(at),
            Forbidden(role) => Problem::new(
                ErrorCode::Forbidden,
                format!("this action needs the {role} role"),
            ),
            RateLimited(seconds) => Problem::new(
                ErrorCode::RateLimited,
                "too many bookings and cancels in a short time; try again later",
            )
            .with_retry_after(seconds),
            WriterStopped | PaymentUnavailable(_) | PeerUnavailable(_) => {
                Problem::unavailable(&error)
            }
            Store(ref cause) if is_unavailable(cause) => Problem::unavailable(&error),
            Writer(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(
                    failure.code,
                    rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                        | rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                ) =>
            {
                Problem::unavailable(&error)
            }
            Store(_) | Writer(_) | Corrupt(_) => Problem::internal(&error),
        }
    }
}

impl From<BookingError> for ClientError {
    fn from(error: BookingError) -> Self {
        let problem = Problem::from(error);
        match problem.code {
            ErrorCode::Unavailable | ErrorCode::Internal => {
                ClientError::Unavailable(problem.detail)
            }
            code => ClientError::Rejected {
                code,
                detail: problem.detail,
            },
        }
    }
}

impl axum::response::IntoResponse for BookingError {
    fn into_response(self) -> axum::response::Response {
        Problem::from(self).into_response()
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    ) || matches!(error, sqlx::Error::Database(db) if db.message().contains("database is locked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_contract_code() {
        use BookingError::*;
        let cases = [
            (Validation(vec![]), ErrorCode::ValidationFailed),
            (ConcertNotFound, ErrorCode::ConcertNotFound),
            (SeatTypeNotFound, ErrorCode::SeatTypeNotFound),
            (BookingNotFound, ErrorCode::BookingNotFound),
            (SoldOut, ErrorCode::SoldOut),
            (AlreadyBooked, ErrorCode::AlreadyBooked),
            (BookingClosed, ErrorCode::BookingClosed),
            (SalesNotOpen, ErrorCode::SalesNotOpen),
            (AlreadyCancelled, ErrorCode::AlreadyCancelled),
            (IdempotencyKeyReused, ErrorCode::IdempotencyKeyReused),
            (HoldNotFound, ErrorCode::HoldNotFound),
            (HoldNotActive, ErrorCode::HoldNotActive),
            (HoldExpired, ErrorCode::HoldExpired),
            (
                PaymentDeclined("card_declined".into()),
                ErrorCode::PaymentDeclined,
            ),
            (PaymentRequired, ErrorCode::PaymentRequired),
            (
                InvalidSignature("no v1 signature matches".into()),
                ErrorCode::InvalidSignature,
            ),
            (InvalidTicket("forged"), ErrorCode::InvalidTicket),
            (TicketCancelled, ErrorCode::TicketCancelled),
            (WebhookNotFound, ErrorCode::WebhookNotFound),
            (AdmissionRequired, ErrorCode::AdmissionRequired),
            (NotFound("no waiting room"), ErrorCode::NotFound),
            (
                AlreadyCheckedIn(time::OffsetDateTime::UNIX_EPOCH),
                ErrorCode::AlreadyCheckedIn,
            ),
            (Forbidden("admin"), ErrorCode::Forbidden),
            (WriterStopped, ErrorCode::Unavailable),
            (Store(sqlx::Error::PoolTimedOut), ErrorCode::Unavailable),
            (Store(sqlx::Error::RowNotFound), ErrorCode::Internal),
            (Corrupt("x".into()), ErrorCode::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(Problem::from(error).code, code);
        }
    }
}
