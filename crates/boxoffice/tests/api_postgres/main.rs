//! The black-box suite of `tests/api`, run against PostgreSQL: the same modules, compiled a
//! second time with every test server (and every `boxoffice` process a test starts) storing its
//! data in a fresh PostgreSQL database of its own (see `helpers`). Only the throttling tests stay
//! out: their state is in memory, whatever the store.
//!
//! `split`, `owners` and `answers` start the split deployment (separate service processes behind the
//! gateway) on PostgreSQL, where it belongs.
//!
//! The server is `BOXOFFICE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without one, each test says it skipped
//! PostgreSQL and runs on SQLite; `BOXOFFICE_REQUIRE_POSTGRES=1` (set by CI) makes that a failure.

#![allow(clippy::unwrap_used)]

const ON_POSTGRES: bool = true;

#[path = "../api/admin.rs"]
mod admin;
mod answers;
#[path = "../api/auth.rs"]
mod auth;
#[path = "../api/bookings.rs"]
mod bookings;
#[path = "../api/concerts.rs"]
mod concerts;
#[path = "../api/crash.rs"]
mod crash;
#[path = "../api/crash_checkout.rs"]
mod crash_checkout;
#[path = "../api/crash_webhooks.rs"]
mod crash_webhooks;
#[path = "../api/emails.rs"]
mod emails;
#[path = "../api/errors.rs"]
mod errors;
#[path = "../api/helpers.rs"]
mod helpers;
#[path = "../api/holds.rs"]
mod holds;
mod instances;
#[path = "../api/lifecycle.rs"]
mod lifecycle;
#[path = "../api/loadtest.rs"]
mod loadtest;
#[path = "../api/on_sale.rs"]
mod on_sale;
#[path = "../api/ops.rs"]
mod ops;
mod owners;
#[path = "../api/queue.rs"]
mod queue;
#[path = "../api/roles.rs"]
mod roles;
mod split;
#[path = "../api/stripe.rs"]
mod stripe;
#[path = "../api/tickets.rs"]
mod tickets;
#[path = "../api/waitlist.rs"]
mod waitlist;
#[path = "../api/webhooks.rs"]
mod webhooks;
