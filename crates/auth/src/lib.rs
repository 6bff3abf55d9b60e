//! The Auth service: accounts, logins, sessions and the tokens that prove them.
//!
//! It implements the "Auth" section of the API contract: registration, login by email or phone,
//! refresh-token rotation with reuse detection, logout that revokes at once, and `/me`.
//! Auth is the only service that mints tokens; the others verify them with
//! [`boxoffice_shared::token::Authenticator`].
//!
//! # Layout
//! - [`config`]: the typed configuration section the binary hands to this service.
//! - [`domain`]: input newtypes (`Email`, `Password`, `Phone`, `FullName`) parsed at the edge.
//! - [`password`]: argon2id hashing on the blocking pool, bounded in concurrency.
//! - [`tokens`]: minting access tokens and refresh-token values.
//! - [`limits`]: counting events per key in fixed windows, per process or shared through Redis.
//! - [`throttles`]: which counts a login or registration is checked against and adds to.
//! - [`store`]: the store (users, sessions, refresh tokens), on SQLite or PostgreSQL.
//! - [`service`]: the rules, composed from the parts above; what the handlers call.
//! - [`http`]: the routes, documented for OpenAPI.
//! - [`error`]: this service's error enum and its mapping onto problem codes.
//! - [`open`]: opening Auth for one process where it runs (store, keys, revocations, the
//!   directory its peers call), and where it does not (the verifier of its tokens, the follower
//!   of its revocations); the limits on writes Booking counts with.

pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod limits;
pub mod open;
pub mod password;
pub mod service;
pub mod store;
pub mod throttles;
pub mod tokens;
pub mod write_limits;

pub use config::AuthConfig;
pub use error::AuthError;
pub use http::router;
pub use service::AuthService;

/// The SQLite migrations of the Auth store, embedded in the binary.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The PostgreSQL migrations of the Auth store (run in its `auth` schema), embedded in the binary.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
