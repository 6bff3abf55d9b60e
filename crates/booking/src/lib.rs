//! The Booking service: seat inventory, bookings, and the email outbox.
//!
//! Booking owns every seat. A booking is one database transaction that checks the concert has not
//! started, takes a seat only if one is left, inserts the booking, queues the confirmation email
//! and saves the idempotency record — and the schema enforces the same rules again (see
//! `migrations/sqlite/0001_booking.sql`), so a bug in this code could not oversell either.
//!
//! # Layout
//! - [`domain`]: booking status, the idempotency key, and the pure rules of when sales are open.
//! - [`view`]: the in-memory view of inventory that answers sold-out and closed requests without
//!   touching the database; exact within this process because only the writer changes it.
//! - [`store`]: the reads, on the async pool.
//! - [`write`]: the writer's SQL, on its own synchronous connection.
//! - [`pg`]: the store on PostgreSQL: reads, the outbox with `SKIP LOCKED`, the group-commit
//!   writer that settles a whole batch per transaction with set-based statements (so several
//!   Booking instances can sell the same seats), and the listener that keeps each instance's view
//!   in step with commits made elsewhere.
//! - [`checkpoint`]: copies the write-ahead log into the database file on a thread of its own,
//!   so that the writer's commits do not pay for it.
//! - [`engine`]: the single writer. It takes commands from a queue and commits many of them per
//!   transaction (group commit); each command runs under its own savepoint, so one failing
//!   booking never fails its neighbours. A caller is answered only after the commit is durable.
//! - [`service`]: [`BookingService`], what handlers and other services call; it implements the
//!   [`boxoffice_shared::clients::Inventory`] and [`boxoffice_shared::clients::OutboxSource`]
//!   contracts for the in-process deployment.
//! - [`events`]: availability change notifications, the closing timer, and the SSE stream.
//! - [`http`]: the routes: `/api/v1/bookings…`, and the concert availability and sales reads.
//! - [`error`]: [`BookingError`] and its problem codes.

pub mod checkpoint;
pub mod domain;
pub mod engine;
pub mod error;
pub mod events;
pub mod http;
pub mod pg;
pub mod service;
pub mod store;
pub mod view;
pub mod write;

pub use error::BookingError;
pub use http::router;
pub use service::{BookingService, LocalWorker};

/// The SQLite migrations of the Booking store, embedded in the binary.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// The PostgreSQL migrations of the Booking store, embedded in the binary.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");
