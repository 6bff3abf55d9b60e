//! The Auth routes (API contract, "Auth" and "Roles"): `/api/v1/auth/*`, `/api/v1/me`, and the
//! admins' user management in `http/admin.rs`.
//!
//! Handlers turn request bodies into domain types, collecting every invalid field into one
//! `validation_failed` problem, then call [`AuthService`]. Every route is described for OpenAPI
//! by its `#[utoipa::path]` attribute, so the published document comes from this code.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, State};
use axum::http::StatusCode;
use boxoffice_shared::FieldErrors;
use boxoffice_shared::extract::{Json, present};
use boxoffice_shared::problem_responses;
use boxoffice_shared::token::{AuthUser, Authenticator, Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

mod admin;

use crate::domain::{Email, FullName, Password, Phone};
use crate::error::AuthError;
use crate::service::{AuthService, IssuedTokens, ProfileChange, Registration};
use crate::store::UserRecord;

impl FromRef<AuthService> for Authenticator {
    fn from_ref(service: &AuthService) -> Self {
        service.authenticator().clone()
    }
}

/// The Auth service's routes, with their OpenAPI descriptions.
pub fn router(service: AuthService) -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(get_me, patch_me))
        .routes(routes!(create_load_test_accounts))
        .routes(routes!(admin::list_users))
        .routes(routes!(admin::get_user, admin::set_role))
        .with_state(service)
}

/// An account as clients see it. Never includes the password hash.
#[derive(Debug, Serialize, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub full_name: String,
    pub phone: Option<String>,
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

impl From<UserRecord> for User {
    fn from(user: UserRecord) -> Self {
        Self {
            id: user.id,
            email: user.email,
            full_name: user.full_name,
            phone: user.phone,
            role: user.role,
            created_at: user.created_at,
        }
    }
}

/// The answer to register, login and refresh.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub user: User,
    /// A JWT to send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// An opaque token for `POST /api/v1/auth/refresh`; single use.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
}

impl From<IssuedTokens> for TokenResponse {
    fn from(tokens: IssuedTokens) -> Self {
        Self {
            user: tokens.user.into(),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: "Bearer",
            expires_in: tokens.expires_in,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Case-insensitive; stored trimmed and lower-cased.
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// 8 to 128 characters.
    #[schema(example = "correct horse battery", min_length = 8, max_length = 128)]
    pub password: String,
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        example = "Ada Lovelace",
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub full_name: String,
    /// `+` and 8 to 15 digits; spaces, dashes, dots and parentheses are dropped.
    #[schema(
        example = "+84901234567",
        pattern = r"^\s*[ .()-]*\+(?:[ .()-]*[0-9]){8,15}[ .()-]*\s*$"
    )]
    pub phone: Option<String>,
}

impl RegisterRequest {
    fn parse(self) -> Result<Registration, AuthError> {
        let mut errors = FieldErrors::default();
        let email = errors.check("email", Email::parse(&self.email));
        let password = errors.check("password", Password::parse(&self.password));
        let full_name = errors.check("full_name", FullName::parse(&self.full_name));
        let phone = errors.check("phone", self.phone.as_deref().map(Phone::parse).transpose());
        errors
            .finish(|| {
                Some(Registration {
                    email: email?,
                    password: password?,
                    full_name: full_name?,
                    phone: phone?,
                })
            })
            .map_err(AuthError::Validation)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// An email address or a phone number.
    #[schema(example = "ada@example.com")]
    pub login: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// 1 to 200 characters after trimming, no control characters.
    #[schema(
        min_length = 1,
        pattern = r"^[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000](?:[^\x00-\x1f\x7f-\x9f]{0,198}[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"
    )]
    pub full_name: Option<String>,
    /// A new phone number (as at registration), or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = r"^\s*[ .()-]*\+(?:[ .()-]*[0-9]){8,15}[ .()-]*\s*$")]
    pub phone: Option<Option<String>>,
}

impl UpdateMeRequest {
    fn parse(self) -> Result<ProfileChange, AuthError> {
        let mut errors = FieldErrors::default();
        let full_name = errors.check(
            "full_name",
            self.full_name.as_deref().map(FullName::parse).transpose(),
        );
        let phone = errors.check(
            "phone",
            self.phone
                .map(|phone| phone.as_deref().map(Phone::parse).transpose())
                .transpose(),
        );
        errors
            .finish(|| {
                Some(ProfileChange {
                    full_name: full_name?,
                    phone: phone?,
                })
            })
            .map_err(AuthError::Validation)
    }
}

problem_responses!(
    struct RegisterProblems {
        MalformedBody,
        EmailTaken,
        PhoneTaken,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        RateLimited: "too many registrations from this address",
        Unavailable,
    }
);

/// Create a customer account and log it in.
#[utoipa::path(
    post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created and logged in", body = TokenResponse),
        RegisterProblems,
    )
)]
pub async fn register(
    State(service): State<AuthService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(request): Json<RegisterRequest>,
) -> Result<(StatusCode, Json<TokenResponse>), AuthError> {
    let registration = request.parse()?;
    let tokens = service.register(registration, peer.ip()).await?;
    Ok((StatusCode::CREATED, Json(tokens.into())))
}

problem_responses!(
    struct LoginProblems {
        MalformedBody,
        InvalidCredentials,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "a field is missing or not a string",
        RateLimited: "too many failed logins for this account or from this address",
        Unavailable,
    }
);

/// Log in with an email address or phone number and a password.
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = TokenResponse),
        LoginProblems,
    )
)]
pub async fn login(
    State(service): State<AuthService>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Json(request): Json<LoginRequest>,
) -> Result<Json<TokenResponse>, AuthError> {
    let tokens = service
        .login(&request.login, &request.password, peer.ip())
        .await?;
    Ok(Json(tokens.into()))
}

problem_responses!(
    struct RefreshProblems {
        MalformedBody,
        InvalidRefreshToken,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed: "`refresh_token` is missing or not a string",
        Unavailable,
    }
);

/// Exchange a refresh token for new tokens. The presented token is spent; presenting it again
/// revokes the whole session.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New access and refresh tokens", body = TokenResponse),
        RefreshProblems,
    )
)]
pub async fn refresh(
    State(service): State<AuthService>,
    Json(request): Json<RefreshRequest>,
) -> Result<Json<TokenResponse>, AuthError> {
    Ok(Json(service.refresh(&request.refresh_token).await?.into()))
}

problem_responses!(
    /// What the routes that only read the caller's token and account can answer.
    struct SignedInProblems {
        Unauthenticated,
        Unavailable,
    }
);

/// End the session: its access token and refresh token stop working at once.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Logged out"),
        SignedInProblems,
    )
)]
pub async fn logout(
    State(service): State<AuthService>,
    caller: AuthUser,
) -> Result<StatusCode, AuthError> {
    service.logout(caller.session_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(
    get, path = "/api/v1/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = User),
        SignedInProblems,
    )
)]
pub async fn get_me(
    State(service): State<AuthService>,
    caller: AuthUser,
) -> Result<Json<User>, AuthError> {
    Ok(Json(service.me(caller.user_id).await?.into()))
}

problem_responses!(
    struct UpdateMeProblems {
        MalformedBody,
        Unauthenticated,
        PhoneTaken,
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        Unavailable,
    }
);

/// Change the caller's name and/or phone number (`"phone": null` removes it).
#[utoipa::path(
    patch, path = "/api/v1/me", tag = "auth",
    security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "The account, changed", body = User),
        UpdateMeProblems,
    )
)]
pub async fn patch_me(
    State(service): State<AuthService>,
    caller: AuthUser,
    Json(request): Json<UpdateMeRequest>,
) -> Result<Json<User>, AuthError> {
    let change = request.parse()?;
    Ok(Json(
        service.update_me(caller.user_id, change).await?.into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadTestAccountsRequest {
    /// 1 to 10000 accounts per call.
    #[schema(minimum = 1, maximum = 10_000)]
    pub count: u32,
    /// Lower-case letters, digits and dashes, 1 to 40: names the run in the accounts' emails.
    #[schema(pattern = "^[a-z0-9-]{1,40}$")]
    pub prefix: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoadTestAccount {
    pub user_id: Uuid,
    pub email: String,
    pub access_token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoadTestAccounts {
    pub accounts: Vec<LoadTestAccount>,
}

problem_responses!(
    struct LoadTestAccountsProblems {
        MalformedBody,
        Unauthenticated,
        Forbidden: "not an admin",
        NotFound: "load-test accounts are switched off",
        BodyTooLarge,
        UnsupportedMediaType,
        ValidationFailed,
        Unavailable,
    }
);

/// Create customer accounts in bulk, with access tokens, for load tests (admin). Off unless the
/// server runs with `--load-test-accounts on`; then it answers 404.
#[utoipa::path(
    post, path = "/api/v1/admin/load-test-accounts", tag = "auth",
    security(("bearer" = [])),
    request_body = LoadTestAccountsRequest,
    responses(
        (status = 201, description = "The accounts, each with an access token", body = LoadTestAccounts),
        LoadTestAccountsProblems,
    )
)]
pub async fn create_load_test_accounts(
    State(service): State<AuthService>,
    caller: AuthUser,
    Json(request): Json<LoadTestAccountsRequest>,
) -> Result<(StatusCode, Json<LoadTestAccounts>), AuthError> {
    if !service.load_test_accounts_enabled() {
        return Err(AuthError::NotFound);
    }
    if caller.role != Role::Admin {
        return Err(AuthError::Forbidden);
    }
    let mut errors = FieldErrors::default();
    if !(1..=10_000).contains(&request.count) {
        errors.push("count", "must be between 1 and 10000");
    }
    let prefix_ok = (1..=40).contains(&request.prefix.len())
        && request
            .prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !prefix_ok {
        errors.push(
            "prefix",
            "must be 1 to 40 lower-case letters, digits or dashes",
        );
    }
    errors.finish(|| Some(())).map_err(AuthError::Validation)?;
    let accounts = service
        .create_load_test_accounts(&request.prefix, request.count)
        .await?
        .into_iter()
        .map(|tokens| LoadTestAccount {
            user_id: tokens.user.id,
            email: tokens.user.email,
            access_token: tokens.access_token,
        })
        .collect();
    Ok((StatusCode::CREATED, Json(LoadTestAccounts { accounts })))
}
