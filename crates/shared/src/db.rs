//! Opening the stores: [`Storage`] says where the services keep their data (SQLite files in a
//! directory, or schemas of one PostgreSQL database) and opens each service's [`Store`].
//!
//! Each service keeps its own SQLite file, so services cannot read each other's tables and do not
//! share one write lock. A store is a pair of pools over the same file: a single-connection writer
//! (SQLite admits one writer at a time anyway; queueing writers in-process instead of on the file
//! lock avoids `SQLITE_BUSY` on lock upgrades) and a few readers, which WAL mode lets run
//! alongside the writer.

use std::path::{Path, PathBuf};
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

/// True when the error is a violation of the unique constraint or index whose name contains
/// `name` (PostgreSQL names the constraint, e.g. `users_email_key`).
pub fn is_pg_unique_violation(error: &sqlx::Error, name: &str) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.is_unique_violation() && db.constraint().is_some_and(|c| c.contains(name))
        }
        _ => false,
    }
}

/// A PostgreSQL pool whose connections all work in one service's schema.
///
/// Every service keeps its tables in a schema of its own (`auth`, `catalog`, `booking`) of the
/// database that `--database-url` names: services cannot read each other's tables, the same
/// database can hold a whole deployment, and each schema carries its own migration history. The
/// schema is created on first use and set as every connection's `search_path`, so the services'
/// SQL never names it.
#[derive(Debug, Clone)]
pub struct PgStore {
    pub pool: sqlx::PgPool,
    /// The service's schema.
    pub schema: &'static str,
}

impl PgStore {
    /// Connects a pool of at most `max_connections` to `url`, working in `schema` (created if
    /// missing). The database itself must exist.
    pub async fn connect(
        url: &str,
        schema: &'static str,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        let options = pg_options(url, schema)?;
        let server = format!(
            "PostgreSQL at {}:{} (database {}, user {})",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("-"),
            options.get_username(),
        );
        // One connection first, on its own: the pool retries a refused or failing connection
        // until its acquire timeout and then says only "pool timed out", which names neither
        // the server nor the cause.
        use sqlx::Connection as _;
        let probe = tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::postgres::PgConnection::connect_with(&options),
        )
        .await
        .map_err(|_| anyhow::anyhow!("connecting to {server}: no answer within 10 s"))?
        .map_err(|error| anyhow::anyhow!("connecting to {server}: {error}"))?;
        let _ = probe.close().await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to {server} for the {schema} schema"))?;
        // A role that may not create schemas can still use one made for it beforehand.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                .bind(schema)
                .fetch_one(&pool)
                .await
                .context("looking for the schema")?;
        // Concurrent first starts (several processes of one deployment) may race to create
        // the schema; the loser's unique violation is the winner's success.
        if !exists
            && let Err(error) = sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}"
            )))
            .execute(&pool)
            .await
        {
            let raced = matches!(&error, sqlx::Error::Database(db) if db.is_unique_violation());
            if !raced {
                return Err(error).context("creating the schema");
            }
        }
        Ok(Self { pool, schema })
    }

    /// Runs `migrations` in this store's schema, one process at a time (sqlx takes an advisory
    /// lock for the duration).
    pub async fn migrate(&self, migrations: &sqlx::migrate::Migrator) -> anyhow::Result<()> {
        migrations
            .run(&self.pool)
            .await
            .with_context(|| format!("migrating the {} schema", self.schema))?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Connection options for `url` with `search_path` set to `schema`.
pub fn pg_options(url: &str, schema: &str) -> anyhow::Result<sqlx::postgres::PgConnectOptions> {
    let options = sqlx::postgres::PgConnectOptions::from_str(url)
        .context("parsing the PostgreSQL URL")?
        .options([("search_path", schema)])
        .application_name("boxoffice");
    Ok(options)
}

/// A service's store: embedded SQLite (the default) or PostgreSQL.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Store {
    /// Brings the schema up to date with the engine's migrations: `sqlite` on the SQLite file
    /// (through its writer), `postgres` in the PostgreSQL schema.
    pub async fn migrate(
        &self,
        sqlite: &sqlx::migrate::Migrator,
        postgres: &sqlx::migrate::Migrator,
    ) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(db) => sqlite
                .run(&db.write)
                .await
                .context("migrating the SQLite store")?,
            Store::Postgres(db) => db.migrate(postgres).await?,
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Store::Sqlite(db) => db.ping().await,
            Store::Postgres(db) => db.ping().await,
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(db) => db.close().await,
            Store::Postgres(db) => db.close().await,
        }
    }
}

impl From<SqliteStore> for Store {
    fn from(db: SqliteStore) -> Self {
        Store::Sqlite(db)
    }
}

impl From<PgStore> for Store {
    fn from(db: PgStore) -> Self {
        Store::Postgres(db)
    }
}

/// Where the services keep their data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Embedded SQLite: one file per service inside this directory.
    Sqlite { dir: PathBuf },
    /// A PostgreSQL database: one schema per service (`auth`, `catalog`, `booking`).
    Postgres { url: String },
}

impl Storage {
    /// Reads `--database-url`: none means SQLite inside the data directory; `sqlite://DIR` names
    /// the directory for the SQLite files.
    pub fn from_url(url: Option<&str>, data_dir: &std::path::Path) -> anyhow::Result<Self> {
        match url {
            None => Ok(Storage::Sqlite {
                dir: data_dir.to_owned(),
            }),
            Some(url) => {
                if let Some(path) = url.strip_prefix("sqlite://") {
                    let path = path.split('?').next().unwrap_or(path);
                    anyhow::ensure!(
                        !path.is_empty(),
                        "--database-url sqlite://DIR needs a directory"
                    );
                    Ok(Storage::Sqlite {
                        dir: PathBuf::from(path),
                    })
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    Ok(Storage::Postgres {
                        url: url.to_owned(),
                    })
                } else {
                    anyhow::bail!(
                        "--database-url must start with sqlite:// or postgres:// (got {:?})",
                        redact(url)
                    )
                }
            }
        }
    }

    /// Opens the store of `service` (`auth`, `catalog` or `booking`): the file `<dir>/<service>.db`,
    /// or the schema `service` of the PostgreSQL database.
    pub async fn open(
        &self,
        service: &'static str,
        durability: Durability,
        connections: u32,
    ) -> anyhow::Result<Store> {
        Ok(match self {
            Storage::Sqlite { dir } => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                let path = dir.join(format!("{service}.db"));
                SqliteStore::open_with(&path, 4, durability).await?.into()
            }
            Storage::Postgres { url } => PgStore::connect(url, service, connections).await?.into(),
        })
    }
}

/// A database URL fit for an error message or a log line: without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
