//! Opening the embedded SQLite stores.
//!
//! Each service keeps its own SQLite file, so services cannot read each other's tables and do not
//! share one write lock. A store is a pair of pools over the same file: a single-connection writer
//! (SQLite admits one writer at a time anyway; queueing writers in-process instead of on the file
//! lock avoids `SQLITE_BUSY` on lock upgrades) and a few readers, which WAL mode lets run
//! alongside the writer.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// How hard a commit works to be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=FULL`: a commit survives power loss once it returns. The default.
    #[default]
    Full,
    /// `synchronous=NORMAL`: a commit survives a crash of the process, but the last commits
    /// before a power loss or kernel crash may be lost. Faster on slow disks.
    Normal,
}

/// The read and write pools of one SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Exactly one connection: every write transaction goes through it.
    pub write: SqlitePool,
    /// Several connections for reads, which never block on the writer in WAL mode.
    pub read: SqlitePool,
    /// The file both pools are open on.
    pub path: std::path::PathBuf,
    /// The durability commits were opened with.
    pub durability: Durability,
}

impl SqliteStore {
    /// Opens (creating if needed) the SQLite file at `path` with the pragmas boxoffice relies on:
    /// WAL journal, `synchronous=FULL` (a commit is on disk before it returns), foreign keys on.
    pub async fn open(path: &Path, readers: u32) -> anyhow::Result<Self> {
        Self::open_with(path, readers, Durability::Full).await
    }

    /// [`SqliteStore::open`] with a chosen durability.
    pub async fn open_with(
        path: &Path,
        readers: u32,
        durability: Durability,
    ) -> anyhow::Result<Self> {
        let synchronous = match durability {
            Durability::Full => SqliteSynchronous::Full,
            Durability::Normal => SqliteSynchronous::Normal,
        };
        let options = SqliteConnectOptions::from_str("sqlite://")
            .context("building SQLite options")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await
            .with_context(|| format!("opening the SQLite store {}", path.display()))?;
        let read = SqlitePoolOptions::new()
            .max_connections(readers.max(1))
            .connect_with(options.read_only(true))
            .await
            .with_context(|| format!("opening the SQLite store {} for reading", path.display()))?;
        Ok(Self {
            write,
            read,
            path: path.to_owned(),
            durability,
        })
    }

    /// Answers when both pools can run a query: the readiness check.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        sqlx::query("SELECT 1").execute(&self.write).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// True when the error is a violation of the unique constraint whose message names `column`
/// (SQLite reports `UNIQUE constraint failed: users.email`).
pub fn is_unique_violation(error: &sqlx::Error, column: &str) -> bool {
    match error {
        sqlx::Error::Database(db) => db.is_unique_violation() && db.message().contains(column),
        _ => false,
    }
}
