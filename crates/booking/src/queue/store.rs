//! The waiting rooms' store, on the engine the deployment runs: a file of its own beside
//! `booking.db` (`queue.db`), or the schema `queue` of the PostgreSQL database.
//!
//! Writes are joins, group-committed (one transaction for every join waiting, whichever rooms
//! they are for), and ticks; reads are one place, one room's head and one admission time.

use boxoffice_shared::db::{Durability, Store};
use time::OffsetDateTime;
use uuid::Uuid;

use super::postgres::PgQueue;
use super::reads;
use super::sqlite::SqliteQueue;
use super::{Head, Joined, Place, RoomJoins};
use crate::error::BookingError;

/// The SQLite migrations of the waiting rooms' store.
pub static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("migrations/queue/sqlite");
/// The PostgreSQL migrations of the waiting rooms' store.
pub static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("migrations/queue/postgres");

/// The store of the waiting rooms.
pub enum QueueStore {
    Sqlite(SqliteQueue),
    Postgres(PgQueue),
}

/// Hands `$call` to the engine `$store` runs on.
macro_rules! dispatch {
    ($store:expr, $engine:ident => $call:expr) => {
        match $store {
            QueueStore::Sqlite($engine) => $call,
            QueueStore::Postgres($engine) => $call,
        }
    };
}

impl QueueStore {
    /// Migrates `store` and opens the rooms on it.
    pub async fn open(store: Store, durability: Durability) -> anyhow::Result<Self> {
        store
            .migrate(&SQLITE_MIGRATIONS, &POSTGRES_MIGRATIONS)
            .await?;
        Ok(match store {
            Store::Sqlite(db) => Self::Sqlite(SqliteQueue::open(db, durability)?),
            Store::Postgres(db) => Self::Postgres(PgQueue::new(db)),
        })
    }

    /// Takes (or finds again) each user's place, in one transaction.
    pub async fn join(
        &self,
        rooms: Vec<RoomJoins>,
        now: OffsetDateTime,
    ) -> Result<Vec<Joined>, BookingError> {
        dispatch!(self, engine => engine.join(rooms, now).await)
    }

    /// Moves the room on at `now`: shuffles it once sales opened, then admits what its rate
    /// earned since the last tick. Returns its head; nothing is written when there is nothing
    /// to do.
    pub async fn tick(
        &self,
        concert_id: Uuid,
        opens_at: Option<OffsetDateTime>,
        per_minute: u32,
        now: OffsetDateTime,
    ) -> Result<Head, BookingError> {
        dispatch!(self, engine => engine.tick(concert_id, opens_at, per_minute, now).await)
    }

    /// The room's head as stored; the default for a room nobody joined.
    pub async fn head(&self, concert_id: Uuid) -> Result<Head, BookingError> {
        dispatch!(self, engine => reads::head(engine.read_pool(), concert_id).await)
    }

    /// The user's place in the room, if they joined.
    pub async fn place(
        &self,
        concert_id: Uuid,
        user_id: Uuid,
    ) -> Result<Option<Place>, BookingError> {
        dispatch!(self, engine => reads::place(engine.read_pool(), concert_id, user_id).await)
    }

    /// When the room's admitted rank first reached `rank`; `None` while it has not.
    pub async fn admitted_at(
        &self,
        concert_id: Uuid,
        rank: i64,
    ) -> Result<Option<OffsetDateTime>, BookingError> {
        dispatch!(self, engine => reads::admitted_at(engine.read_pool(), concert_id, rank).await)
    }

    /// The store answers: the readiness check.
    pub async fn ping(&self) -> Result<(), BookingError> {
        dispatch!(self, engine => engine.ping().await)
    }

    pub async fn close(&self) {
        dispatch!(self, engine => engine.close().await)
    }
}
