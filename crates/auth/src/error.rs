//! The Auth service's errors and the one place where each becomes a problem `code`.

use boxoffice_shared::{ErrorCode, FieldError, Problem};

/// Everything that can go wrong in the Auth service.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid input")]
    Validation(Vec<FieldError>),
    #[error("email already registered")]
    EmailTaken,
    #[error("phone already registered")]
    PhoneTaken,
    #[error("unknown login or wrong password")]
    InvalidCredentials,
    #[error("refresh token unknown, expired, revoked or spent")]
    InvalidRefreshToken,
    #[error("the account no longer exists")]
    AccountGone,
    #[error("no such route")]
    NotFound,
    #[error("no such user")]
    UserNotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("too many attempts")]
    RateLimited { retry_after_secs: u64 },
    #[error("store error")]
    Store(#[from] sqlx::Error),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("token signing failed")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

impl From<AuthError> for Problem {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Validation(errors) => Problem::validation(errors),
            AuthError::EmailTaken => Problem::new(
                ErrorCode::EmailTaken,
                "an account with this email already exists",
            ),
            AuthError::PhoneTaken => Problem::new(
                ErrorCode::PhoneTaken,
                "an account with this phone number already exists",
            ),
            AuthError::InvalidCredentials => Problem::new(
                ErrorCode::InvalidCredentials,
                "the login or the password is wrong",
            ),
            AuthError::InvalidRefreshToken => Problem::new(
                ErrorCode::InvalidRefreshToken,
                "the refresh token is unknown, expired, revoked or already used; log in again",
            ),
            AuthError::AccountGone => Problem::new(
                ErrorCode::Unauthenticated,
                "the account of this token no longer exists",
            ),
            AuthError::NotFound => {
                Problem::new(ErrorCode::NotFound, "there is nothing at this path")
            }
            AuthError::UserNotFound => Problem::new(ErrorCode::NotFound, "no such user"),
            AuthError::Forbidden => {
                Problem::new(ErrorCode::Forbidden, "this action needs the admin role")
            }
            AuthError::RateLimited { retry_after_secs } => Problem::new(
                ErrorCode::RateLimited,
                "too many attempts; wait before trying again",
            )
            .with_retry_after(retry_after_secs),
            AuthError::Store(ref cause) if is_unavailable(cause) => Problem::unavailable(&error),
            AuthError::Store(_) | AuthError::Hashing(_) | AuthError::Signing(_) => {
                Problem::internal(&error)
            }
        }
    }
}

impl axum::response::IntoResponse for AuthError {
    fn into_response(self) -> axum::response::Response {
        Problem::from(self).into_response()
    }
}

/// Store errors that mean "try again later" rather than "bug".
fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_has_its_contract_code() {
        let cases = [
            (
                AuthError::Validation(vec![FieldError::new("email", "bad")]),
                ErrorCode::ValidationFailed,
            ),
            (AuthError::EmailTaken, ErrorCode::EmailTaken),
            (AuthError::PhoneTaken, ErrorCode::PhoneTaken),
            (AuthError::InvalidCredentials, ErrorCode::InvalidCredentials),
            (
                AuthError::InvalidRefreshToken,
                ErrorCode::InvalidRefreshToken,
            ),
            (AuthError::AccountGone, ErrorCode::Unauthenticated),
            (AuthError::NotFound, ErrorCode::NotFound),
            (AuthError::Forbidden, ErrorCode::Forbidden),
            (
                AuthError::RateLimited {
                    retry_after_secs: 3,
                },
                ErrorCode::RateLimited,
            ),
            (
                AuthError::Store(sqlx::Error::PoolTimedOut),
                ErrorCode::Unavailable,
            ),
            (
                AuthError::Store(sqlx::Error::RowNotFound),
                ErrorCode::Internal,
            ),
            (AuthError::Hashing("x".into()), ErrorCode::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(Problem::from(error).code, code);
        }
    }
}
