//! The Catalog service: concerts, their details and their seat types.
//!
//! It implements the "Concerts" section of the API contract except the routes that read the
//! booking store directly (availability, its stream, sales), which the Booking service serves.
//! Catalog owns concert metadata and seat-type definitions in its own store (an SQLite file, or a
//! schema of its own in PostgreSQL); Booking owns the seats (capacity as sold against,
//! `remaining`, the sale window). Catalog provisions seats through the
//! [`Inventory`](boxoffice_shared::clients::Inventory) trait and reads exact counts through it
//! too, so a concert shown here is never staler than the booking store.
//!
//! Cross-service writes cannot be atomic: each concert carries a `version` and the version
//! Booking acknowledged (`synced_version`); [`worker::run_reconciler`] re-pushes whatever
//! Booking has not seen. See [`service`] for the protocol.
//!
//! # Layout
//! - [`domain`]: input newtypes parsed at the edge, the listing cursor, and the status rule
//!   ([`domain::derive_status`]) as a pure function.
//! - [`store`]: the store (concerts, seat types, text search): one facade whose operations are
//!   written once, and one module per engine (`store/sqlite.rs`, `store/postgres.rs`) with that
//!   engine's SQL; the contract suite (`store/tests.rs`) runs against both.
//! - [`service`]: the rules and the sync protocol with Booking; what the handlers call.
//! - [`http`]: the routes, documented for OpenAPI; the request bodies and their validation in
//!   `http/requests.rs`.
//! - [`worker`]: the reconciler that pushes unsynced concerts to Booking.
//! - [`error`]: this service's error enum and its mapping onto problem codes.
//! - [`open`]: opening Catalog for one process: store, migrations, Booking's inventory (in
//!   process or over HTTP) and the reconciler.

pub mod domain;
pub mod error;
pub mod http;
pub mod open;
pub mod service;
pub mod store;
pub mod worker;

#[cfg(test)]
mod testing;

pub use error::CatalogError;
pub use http::router;
pub use service::CatalogService;
pub use worker::run_reconciler;

/// The SQLite migrations of the Catalog store, embedded in the binary.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The PostgreSQL migrations of the Catalog store, embedded in the binary. They run in the
/// catalog's schema and keep their history there.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
