//! The Redis server for tests, as [`crate::pgtest`] is the PostgreSQL one.
//!
//! Tests of the throttles shared between Auth instances call [`server`], which returns the URL
//! named by `BOXOFFICE_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) when a server answers
//! there. Without one the tests still pass: `server` prints that the test was skipped and
//! returns `None`. CI sets `BOXOFFICE_REQUIRE_REDIS=1`, which turns that skip into a failure.

use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The server the tests use when `BOXOFFICE_TEST_REDIS_URL` is unset.
pub const DEFAULT_SERVER: &str = "redis://127.0.0.1:6379";

/// True when CI demands the Redis tests (`BOXOFFICE_REQUIRE_REDIS=1`).
pub fn required() -> bool {
    std::env::var("BOXOFFICE_REQUIRE_REDIS").is_ok_and(|v| v == "1" || v == "true")
}

/// The test Redis server's URL when it accepts a connection, or `None` (after saying so on
/// stderr) when it does not and CI did not demand it.
///
/// # Panics
/// When no server answers and `BOXOFFICE_REQUIRE_REDIS=1`.
pub fn server(test: &str) -> Option<String> {
    let url =
        std::env::var("BOXOFFICE_TEST_REDIS_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
    let address = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    let answers = address.to_socket_addrs().is_ok_and(|mut addresses| {
        addresses
            .any(|address| TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok())
    });
    if answers {
        return Some(url);
    }
    assert!(
        !required(),
        "BOXOFFICE_REQUIRE_REDIS=1 but no Redis server answers at {url}"
    );
    // Straight to the process's stderr: the test harness captures `eprintln!` of passing tests,
    // and a skip must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: no Redis server at {url}; set BOXOFFICE_TEST_REDIS_URL to run it"
    );
    None
}
