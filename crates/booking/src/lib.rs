//! The Booking service: seat inventory, bookings, holds and their payments, refunds, tickets
//! and check-in, the waiting list, and the email outbox.
//!
//! Booking owns every seat. A booking is one database transaction that checks the concert has not
//! started, takes a seat only if one is left, inserts the booking, queues the confirmation email
//! and saves the idempotency record — and the schema enforces the same rules again (see
//! `migrations/sqlite/0001_booking.sql`, and `0006_holds.sql` for holds, which take seats the same
//! way), so a bug in this code could not oversell either.
//!
//! # Layout
//! The booking rules are written once; the storage they need sits behind one interface,
//! [`store::BookingStore`], implemented once per engine. Neither engine imports the other, and
//! no module imports one that imports it back.
//! - [`domain`]: booking status, the idempotency key, and the pure rules of when sales are open.
//! - [`checkin`]: the rule of the door — what a scan of a ticket comes to — for both engines.
//! - [`command`]: what the service asks of a store's writer ([`command::Command`]) and what it
//!   is answered; the one place a booking is made and a writer's batch is filled.
//! - [`hold`]: holds (a seat kept while the fan pays) and their payments, as the API shows them,
//!   and the rules of their expiry; [`payments`]: the payment providers behind
//!   [`payments::PaymentProvider`] (the simulated one: Stripe's test names; Stripe itself in
//!   [`payments::stripe`]: PaymentIntents, the webhook's signature, refunds) and the checkout
//!   settings.
//! - [`view`]: the in-memory view of inventory that answers sold-out and closed requests without
//!   touching the database; exact within this process because only the writer changes it.
//! - [`store`]: [`store::BookingStore`], the store the service calls — the writer's queue, the
//!   reads and the outbox — on the engine chosen once at start-up.
//! - [`sqlite`]: the store on SQLite: the single writer thread with group commit, each command
//!   under its own savepoint, so one failing booking never fails its neighbours (`writer`,
//!   `rules`, `statements`), the outbox, which goes through the writer (`outbox`), the reads on
//!   the async pool (`reads`), and the checkpoint thread (`checkpoint`).
//! - [`postgres`]: the store on PostgreSQL: the group-commit writer that settles a whole batch
//!   per transaction with set-based statements, so several Booking instances can sell the same
//!   seats (`writer`, `settle`, `admin`), the outbox with `SKIP LOCKED` (`outbox`), the reads
//!   (`reads`), and the view and its listener that keep each instance in step with commits made
//!   elsewhere (`view`, `listener`).
//! - [`rows`]: the reads both engines make alike through sqlx (a booking, a saved answer, the
//!   outbox's depth, the sales report), written once, and the rows they decode.
//! - [`service`]: [`BookingService`], what handlers and other services call; it implements the
//!   [`boxoffice_shared::clients::Inventory`] and [`boxoffice_shared::clients::OutboxSource`]
//!   contracts for the in-process deployment; holds, payments, provider events and the refund
//!   worker are in `service/checkout.rs`. A caller is answered only after the commit is durable.
//! - [`events`]: availability change notifications and the sales timer (on-sales, starts, and
//!   the next hold expiry).
//! - [`http`]: the routes: `/api/v1/bookings…`, the concert availability and sales reads, the
//!   availability stream (`http/stream.rs`), checkout, `/api/v1/holds…` (`http/holds.rs`), and
//!   the payment provider's webhook, `/api/v1/payments/stripe/webhook` (`http/payments.rs`).
//! - [`waitlist`]: the waiting list of a sold-out seat type and the terms of an offer; a freed
//!   seat is handed to the first fan waiting in the transaction that freed it (`hand_on` of each
//!   engine's `waitlist` module), as a hold.
//! - [`ticket`]: ticket codes signed with the deployment's Ed25519 ticket key, verifiable
//!   offline; check-ins are the store's (`checkin` of each engine), their rules in
//!   `service/tickets.rs`.
//! - [`error`]: [`BookingError`] and its problem codes.
//! - [`webhook`]: webhooks: events, the forgery guard and one delivery; the delivery worker is
//!   `service/webhooks.rs`, the routes `http/webhooks.rs`, each engine's SQL its `webhooks`.
//! - [`open`]: opening Booking for one process: store, writer, limits on writes, and the routes
//!   its peers call in a split deployment.

pub mod checkin;
pub mod command;
pub mod domain;
pub mod error;
pub mod events;
pub mod hold;
pub mod http;
pub mod open;
pub mod owner;
pub mod payments;
pub mod postgres;
pub mod queue;
pub mod rows;
pub mod service;
pub mod sqlite;
pub mod store;
pub mod ticket;
pub mod view;
pub mod waitlist;
pub mod webhook;

pub use error::BookingError;
pub use http::router;
pub use service::{BookingService, LocalWorker};

/// The SQLite migrations of the Booking store, embedded in the binary.
pub use sqlite::MIGRATIONS as SQLITE_MIGRATIONS;

/// The PostgreSQL migrations of the Booking store, embedded in the binary.
pub use postgres::MIGRATIONS as POSTGRES_MIGRATIONS;
