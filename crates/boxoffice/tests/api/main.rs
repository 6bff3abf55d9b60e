//! Black-box HTTP tests of the whole system: each test starts a real server on `127.0.0.1:0`
//! with its own data directory and talks to it the way a client would (see `helpers`).
//! One test binary, so the crate is linked once.
//!
//! - `auth`: registration, login, refresh rotation, logout, `/me`, forged tokens.
//! - `rate_limits`: login-failure and registration throttles.
//! - `connections`: header, body and idle timeouts and the bound on connections.
//! - `errors`: the problem+json answers for bad bodies, paths and methods.
//! - `ops`: health, readiness, metrics, the OpenAPI document and `/docs`.
//! - `openapi`: the OpenAPI document is a true one: references resolve, problems are declared.
//! - `roles`: the admins' user list and role changes (a demotion takes effect at once).
//! - `admin`: the admin bootstrap from configuration and from `boxoffice admin create`.
//! - `lifecycle`: restarts on the same data directory, the binary, signals and `--demo`.
//! - `concerts`: the catalog, its admin routes, sales, availability and its event stream.
//! - `on_sale`: on-sale times: scheduled concerts, `sales_not_open`, the `opened` event; the
//!   concert's waiting room setting.
//! - `bookings`: booking and cancelling, idempotency, closing, and races through HTTP.
//! - `emails`: confirmation and cancellation emails in the mail directory.
//! - `startup`: messages of a start that fails, and `--listen` with a host name.
//! - `holds`: checkout with the simulated provider: holds, paying, releasing, expiry, refunds.
//! - `stripe`: checkout with the Stripe provider against localstripe, its webhook and refunds.
//! - `queue`: waiting rooms: the shuffle at the opening, arrival order after it, admissions,
//!   their use by bookings and holds, the stream of a place.
//! - `tickets`: signed ticket codes, their QR code and email, and check-in at the door.
//! - `crash`: `kill -9` during a booking storm loses no acknowledged booking or email.
//! - `crash_checkout`: `kill -9` while fans pay loses no paid hold; expired holds hold nothing.
//! - `webhooks`: endpoints, signed deliveries to a real receiver, retries, `410`, a hanging
//!   receiver, the forgery guard; `crash_webhooks`: `kill -9` with undelivered events loses none.

#![allow(clippy::unwrap_used)]

/// This binary runs the suite on embedded SQLite; `tests/api_postgres` runs it on PostgreSQL.
const ON_POSTGRES: bool = false;

mod admin;
mod auth;
mod bookings;
mod concerts;
mod connections;
mod crash;
mod crash_checkout;
mod crash_webhooks;
mod emails;
mod errors;
mod helpers;
mod holds;
mod lifecycle;
mod loadtest;
mod on_sale;
mod openapi;
mod ops;
mod queue;
mod rate_limits;
mod roles;
mod startup;
mod stripe;
mod tickets;
mod waitlist;
mod webhooks;
