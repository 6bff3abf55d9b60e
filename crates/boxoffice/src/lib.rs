//! The `boxoffice` binary: every service in one process on embedded SQLite by default.
//!
//! # Layout
//! - [`cli`]: the command line (`serve`, `admin create`), the only place configuration is read.
//! - [`config`]: [`config::Config`], what `serve` is told, and the checks that refuse
//!   combinations of roles, peers and storage that cannot work.
//! - [`app`]: [`app::Services`], which decides from the roles which services this process runs,
//!   opens each through its crate's `open` module (which returns its internal routes, readiness
//!   checks and stores, having spawned its background tasks) and wires each to its peers, in
//!   process or over HTTP; and [`app::Application`], which merges them into one router, binds
//!   the listener (port 0 in tests) and runs until a shutdown signal.
//! - [`server`]: the connection loop: header, body and idle timeouts and a bound on
//!   connections, so that slow or idle clients cannot exhaust the process.
//! - [`ops`]: health, readiness, metrics, the OpenAPI document, `/docs`, and the 404/405/panic
//!   answers that keep every error in problem+json.
//! - [`demo`]: the sample data `serve --demo` loads.
//!
//! The services themselves live in their own crates (`boxoffice-auth`, …); this crate only
//! composes them. `boxoffice loadtest`, the load generator that also verifies the end state,
//! lives in `boxoffice-loadtest`: the command line hands its arguments over and prints the
//! report.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod ops;
pub mod server;
