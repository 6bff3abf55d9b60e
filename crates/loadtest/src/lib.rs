//! `boxoffice loadtest`: reproduce an on-sale against a deployment, measure it, and prove
//! through the API that nothing was oversold, duplicated or lost.
//!
//! A run logs in as an admin, creates its own concert, gets its users from the load-test
//! accounts endpoint (`POST /api/v1/admin/load-test-accounts`, off unless the server runs with
//! `--load-test-accounts on`), runs one measured phase and then reads the end state back:
//!
//! - `onsale`: every user books once, all at the same moment; user `i` chooses seat type
//!   `i mod k`, so per seat type exactly `min(capacity, users who chose it)` must be confirmed
//!   and every other answer must be 409 `sold_out`.
//! - `churn`: steady book/cancel traffic; at the end the server must hold exactly the bookings
//!   the tool holds and show cancelled exactly those it cancelled.
//! - `browse`: list, details and availability reads.
//! - `soldout`: sell a tiny seat type out, then hammer it; every answer must be 409 `sold_out`.
//! - `checkout`: every user holds a seat and pays — a share after a declined card
//!   (`--decline-share`, default 10 %), a share never (`--abandon-share`, default 20 %); the
//!   run waits for the unpaid holds to expire and verifies the bookings and the holds.
//!   Reports completed checkouts (hold + pay) per second.
//! - `expiry`: every user holds a seat at once, so that the holds fall due together; measures
//!   how soon the seats come back and the sold-out answers of other users meanwhile.
//! - `doors`: every user books a seat and reads their ticket; `--doors` staff accounts (default
//!   8) scan every ticket 1 to 3 times at once, a share of scans re-sent with their nonce
//!   (`--retry-share`, default 5 %); exactly one scan per ticket may answer 201, the others
//!   409 `already_checked_in` with its `checked_in_at`. Reports scans per second.
//! - `waitingroom`: the concert sells behind a waiting room (`--admit-per-minute`); every user
//!   joins its queue before the opening, polls until admitted and books with the admission;
//!   nobody may book without one, and the admissions must keep the order of the positions shown
//!   and the rate within 1 %. Reports joins per second.
//!
//! `checkout` and `expiry` wait for holds to expire, so the server must keep them briefly
//! (`--hold-ttl 30`); they refuse hold times over two minutes.
//!
//! `--baseline` measures `GET /healthz` at the same concurrency and prints every figure also
//! as a ratio to it. Every scenario stops by itself (`--duration`, `--requests`, or when each
//! user has tried), and only loopback targets are accepted unless `--allow-remote`.
//!
//! # Layout
//! - [`args`]: the command line ([`LoadtestArgs`]), the scenarios' names, seat-type and
//!   duration parsing.
//! - [`client`]: one keep-alive HTTP/1.1 connection per worker (`hyper`), pre-built requests,
//!   answers classified by status and problem `code`.
//! - [`setup`]: the stage of a run: admin login, the concert, the load-test accounts, the
//!   bookings a scenario starts from, the door staff.
//! - [`phase`]: the measured phase: a [`phase::Budget`] that ends it, one [`phase::Worker`] per
//!   connection, the `/healthz` baseline.
//! - [`scenario`]: the scenarios, one module each, and the [`Report`] they end in.
//! - [`verify`]: the ledger of what the tool did, what the server says, and the judgement.
//! - [`holds`]: the same for holds: the hold ledger, the sales report's `held`, each hold read
//!   back by id, and the hold time learnt from the server.
//! - [`checkins`]: the same for check-ins: the tickets read by their holders, each scan's
//!   answer, the check-in counts, and the judgement.
//! - [`report`]: HDR latency histograms, outcome counts, the progress line and the [`Report`].
//!
//! The modules depend on each other in this order only (none imports one listed after it):
//! `args`, `client`, `report`, `verify`, `holds`, `checkins`, `phase`, `setup`, `scenario`.
//!
//! The `boxoffice` binary's `loadtest` subcommand parses [`LoadtestArgs`], calls [`run`] and
//! prints the [`Report`]; the tests of `crates/boxoffice` run it against a real server.

pub mod args;
pub mod checkins;
pub mod client;
pub mod holds;
pub mod phase;
pub mod report;
pub mod scenario;
pub mod setup;
pub mod verify;

use std::sync::Arc;

pub use args::{
    LoadtestArgs, Scenario, SeatTypeList, SeatTypeSpec, parse_duration, parse_seat_types,
};
pub use report::{Check, Figure, Report, Verdict};

/// Runs the scenario `args` describe and returns the report (the verdict included). An error
/// means the run could not be carried out (no server, no admin, accounts switched off…), not
/// that the server misbehaved: that is a FAIL verdict.
pub async fn run(args: LoadtestArgs) -> anyhow::Result<Report> {
    let target = client::Target::resolve(&args.target, args.allow_remote, args.timeout).await?;
    scenario::run(Arc::new(target), &args).await
}
