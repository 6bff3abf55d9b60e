//! The Catalog service's errors and the one place where each becomes a problem `code`.

use boxoffice_shared::clients::ClientError;
use boxoffice_shared::{ErrorCode, FieldError, Problem};

/// Everything that can go wrong in the Catalog service.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("concert not found")]
    ConcertNotFound,
    #[error("seat type not found")]
    SeatTypeNotFound,
    /// The concert has started or was cancelled: it can no longer change.
    #[error("booking closed: {0}")]
    BookingClosed(&'static str),
    /// The Booking service refused or could not be reached.
    #[error("inventory call failed")]
    Inventory(#[source] ClientError),
    #[error("store error")]
    Store(#[from] sqlx::Error),
}

impl CatalogError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }
}

impl From<ClientError> for CatalogError {
    fn from(error: ClientError) -> Self {
        Self::Inventory(error)
    }
}

impl From<CatalogError> for Problem {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::Validation(errors) => Problem::validation(errors),
            CatalogError::ConcertNotFound => {
                Problem::new(ErrorCode::ConcertNotFound, "no concert has this id")
            }
            CatalogError::SeatTypeNotFound => Problem::new(
                ErrorCode::SeatTypeNotFound,
                "this concert has no seat type with this id",
            ),
            CatalogError::BookingClosed(why) => Problem::new(ErrorCode::BookingClosed, why),
            // Booking's own answer (e.g. `validation_failed` for a capacity below what is sold)
            // reaches the client with its code; an outage is 503 with Retry-After.
            CatalogError::Inventory(ClientError::Rejected { code, detail }) => {
                Problem::new(code, detail)
            }
            CatalogError::Inventory(ClientError::Unavailable(_)) => Problem::unavailable(&error),
            CatalogError::Store(ref cause) if is_unavailable(cause) => Problem::unavailable(&error),
            CatalogError::Store(_) => Problem::internal(&error),
        }
    }
}

impl axum::response::IntoResponse for CatalogError {
    fn into_response(self) -> axum::response::Response {
        Problem::from(self).into_response()
    }
}

/// Store errors that mean "try again later" rather than "bug".
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        // SQLITE_BUSY / SQLITE_LOCKED: another process holds the file lock past the busy timeout.
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("5" | "6")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_contract_code() {
        let cases = [
            (
                CatalogError::invalid("seat_types[0].capacity", "too big"),
                ErrorCode::ValidationFailed,
            ),
            (CatalogError::ConcertNotFound, ErrorCode::ConcertNotFound),
            (CatalogError::SeatTypeNotFound, ErrorCode::SeatTypeNotFound),
            (
                CatalogError::BookingClosed("started"),
                ErrorCode::BookingClosed,
            ),
            (
                CatalogError::Inventory(ClientError::Unavailable("down".into())),
                ErrorCode::Unavailable,
            ),
            (
                CatalogError::Inventory(ClientError::rejected(
                    ErrorCode::ValidationFailed,
                    "below sold",
                )),
                ErrorCode::ValidationFailed,
            ),
            (
                CatalogError::Store(sqlx::Error::PoolTimedOut),
                ErrorCode::Unavailable,
            ),
            (
                CatalogError::Store(sqlx::Error::RowNotFound),
                ErrorCode::Internal,
            ),
        ];
        for (error, code) in cases {
            let problem = Problem::from(error);
            assert_eq!(problem.code, code);
            assert_eq!(problem.status, code.status().as_u16());
        }
    }

    #[test]
    fn validation_lists_every_field_and_unavailable_asks_to_retry() {
        let problem = Problem::from(CatalogError::Validation(vec![
            FieldError::new("name", "must not be empty"),
            FieldError::new("seat_types[1].capacity", "must be between 1 and 1000000"),
        ]));
        assert_eq!(problem.errors.len(), 2);
        let problem = Problem::from(CatalogError::Inventory(ClientError::Unavailable(
            "connection refused".into(),
        )));
        assert_eq!(problem.retry_after, Some(1));
        assert!(!problem.detail.contains("connection refused"));
    }
}
