//! Throw-away PostgreSQL databases for tests.
//!
//! Tests that exercise the PostgreSQL stores call [`TestDatabase::create`], which makes a fresh
//! database on the server named by `BOXOFFICE_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drops it again when the value is dropped.
//!
//! On a machine without PostgreSQL the tests still pass: `create` prints that the PostgreSQL
//! variant was skipped and returns `None`. CI sets `BOXOFFICE_REQUIRE_POSTGRES=1`, which turns
//! that skip into a failure, so a broken PostgreSQL set-up cannot pass silently there.

use std::io::Write;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The server the tests use when `BOXOFFICE_TEST_POSTGRES_URL` is unset.
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database that exists until this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL of the new database.
    pub url: String,
    name: String,
    server: String,
}

/// True when CI demands the PostgreSQL variants (`BOXOFFICE_REQUIRE_POSTGRES=1`).
pub fn required() -> bool {
    std::env::var("BOXOFFICE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1" || v == "true")
}

fn server_url() -> String {
    std::env::var("BOXOFFICE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
}

impl TestDatabase {
    /// Creates a fresh, empty database, or returns `None` (after saying so on stderr) when no
    /// PostgreSQL server answers and CI did not demand one.
    ///
    /// # Panics
    /// When the server is unreachable and `BOXOFFICE_REQUIRE_POSTGRES=1`, or when it answers but
    /// refuses to create the database.
    pub async fn create(test: &str) -> Option<Self> {
        let server = server_url();
        let mut admin = match connect(&server).await {
            Ok(connection) => connection,
            Err(error) => {
                if required() {
                    panic!(
                        "BOXOFFICE_REQUIRE_POSTGRES=1 but PostgreSQL at {server} is unreachable: {error}"
                    );
                }
                // Straight to the process's stderr: the test harness captures `eprintln!` of
                // passing tests, and a skip must be seen.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED the PostgreSQL variant of {test}: no PostgreSQL at {server} ({error}); \
                     set BOXOFFICE_TEST_POSTGRES_URL to run it"
                );
                return None;
            }
        };
        let name = format!("boxoffice_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|error| panic!("creating the test database {name}: {error}"));
        let _ = admin.close().await;
        let options = PgConnectOptions::from_str(&server)
            .unwrap_or_else(|error| panic!("parsing {server}: {error}"));
        let mut url = with_database(&server, &name, &options);
        // A local test server needs no TLS; the handshake costs more than a small test.
        let local = [
            "@127.0.0.1",
            "@localhost",
            "@[::1]",
            "://127.0.0.1",
            "://localhost",
        ]
        .iter()
        .any(|host| url.contains(host));
        if local && !url.contains("sslmode=") {
            url.push_str(if url.contains('?') { "&" } else { "?" });
            url.push_str("sslmode=disable");
        }
        Some(Self { url, name, server })
    }
}

impl TestDatabase {
    /// [`TestDatabase::create`] for synchronous callers, including code already running inside an
    /// async runtime (it works on a short-lived thread with a runtime of its own).
    pub fn create_blocking(test: &str) -> Option<Self> {
        let test = test.to_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for creating the test database");
            runtime.block_on(TestDatabase::create(&test))
        })
        .join()
        .expect("creating the test database does not panic")
    }
}

/// `server` with its database part replaced by `name`.
fn with_database(server: &str, name: &str, _options: &PgConnectOptions) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    // postgres://user@host:port[/db]: the database is whatever follows the authority.
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&options))
        .await
        .map_err(|_| sqlx::Error::PoolTimedOut)?
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived thread
        // with its own runtime does the cleanup and is waited for.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = connect(&server).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_part_is_replaced() {
        let options = PgConnectOptions::new();
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x", &options),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x", &options),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:1", "x", &options),
            "postgres://h:1/x"
        );
    }

    #[tokio::test]
    async fn a_test_database_is_created_and_dropped() {
        let Some(db) = TestDatabase::create("a_test_database_is_created_and_dropped").await else {
            return;
        };
        let mut connection = connect(&db.url)
            .await
            .expect("the new database accepts connections");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut connection)
            .await
            .expect("a query runs");
        assert_eq!(one, 1);
        let _ = connection.close().await;
        let name = db.name.clone();
        drop(db);
        let mut admin = connect(&server_url()).await.expect("the server");
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(&name)
            .fetch_one(&mut admin)
            .await
            .expect("a query runs");
        assert_eq!(left, 0, "the test database is dropped");
    }
}
