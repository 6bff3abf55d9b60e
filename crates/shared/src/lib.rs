//! Pieces every boxoffice service shares, and nothing that belongs to one service alone.
//!
//! # Layout
//! - [`problem`]: the RFC 9457 `application/problem+json` error body and the closed list of problem
//!   codes from the API contract, each tied to its HTTP status in one place.
//! - [`openapi`]: the OpenAPI description of a route's problem answers, one example per code.
//! - [`extract`]: drop-in replacements for axum's `Json` and `Query` extractors whose rejections are
//!   problem documents too, so a client never sees a plain-text error.
//! - [`paging`]: the `limit` and `cursor` parameters of list endpoints.
//! - [`token`]: access-token claims, verification with a pinned algorithm, the in-memory list of
//!   revoked sessions, and the [`token::AuthUser`] extractor that handlers use.
//! - [`keys`]: loading or generating the token key material (HMAC secret or Ed25519 key pair),
//!   and Booking's ticket key the same way.
//! - [`qr`]: QR codes as SVG, for tickets.
//! - [`db`]: opening the stores: embedded SQLite files with the pragmas boxoffice relies on, or
//!   PostgreSQL schemas, chosen by [`db::Storage`].
//! - [`component`]: what opening a service gives its process (internal routes, readiness checks,
//!   stores) and what every opening shares (task tracker, stop signal, peer clients).
//! - [`telemetry`]: tracing set-up, the Prometheus recorder and the per-request metrics layer.
//! - [`shutdown`]: the signal that starts a graceful shutdown.
//! - [`clients`]: the traits through which services call each other, and the data they exchange.
//! - [`remote`]: the same traits over HTTP for a split deployment: the `/internal/v1` routes that
//!   serve them, the clients that call them, and the service credential that guards them.
//! - [`revocation`]: following Auth's revoked sessions from every process of a deployment.
//! - [`clock`]: the source of "now", injectable so that time rules can be tested.
//! - [`zone`]: concerts' time zones (IANA names) and the local time of an instant in one.
//!
//! Test support, compiled only with the `testing` feature, which only dev-dependencies enable
//! (`boxoffice-shared = { workspace = true, features = ["testing"] }` under
//! `[dev-dependencies]`), so that the server never carries it:
//! - `pgtest`: throw-away PostgreSQL databases for the tests that run against both engines.
//! - `redistest`: the Redis server for the tests of the shared throttles.
//!
//! Services depend on this crate; this crate depends on no service.

pub mod clients;
pub mod clock;
pub mod component;
pub mod db;
pub mod extract;
pub mod keys;
pub mod openapi;
pub mod paging;
#[cfg(any(test, feature = "testing"))]
pub mod pgtest;
pub mod problem;
pub mod qr;
#[cfg(any(test, feature = "testing"))]
pub mod redistest;
pub mod remote;
pub mod revocation;
pub mod shutdown;
pub mod telemetry;
pub mod token;
pub mod zone;

pub use problem::{ErrorCode, FieldError, FieldErrors, Problem};
