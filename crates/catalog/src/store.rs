//! The Catalog store, on SQLite or PostgreSQL: concerts and their seat-type definitions.
//!
//! Every change bumps the concert's `version`; [`CatalogStore::mark_synced`] records which
//! version Booking has seen, so the reconciler knows what to push again. Changes to a concert
//! that may no longer change (started or cancelled) are guarded in the `UPDATE` itself, so a
//! check and the write can never be split by another writer.
//!
//! Listing uses keyset pagination on `(starts_at, id)`. Text search is a case-insensitive
//! substring match of name, artist and venue: on SQLite through the trigram FTS5 table
//! `concerts_fts` (kept in sync by triggers) for three characters or more, `LIKE` below that; on
//! PostgreSQL through `ILIKE`, which a pg_trgm index speeds up where the extension exists.
//!
//! # Two engines, one behaviour
//! The public methods are written once. They compose the statements of `Conn`, each of which
//! holds both engines' SQL side by side, and `Engine` covers what the listing query and the row
//! readers say differently. Instants are bound at whole milliseconds on both engines (SQLite keeps
//! epoch milliseconds, PostgreSQL `timestamptz`), so records and cursors come back identical
//! whichever engine stored them. The contract tests (`store/tests.rs`) run one suite on both.

use std::collections::HashMap;
use std::ops::DerefMut;

use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::{Store, is_pg_unique_violation, is_unique_violation};
use sqlx::pool::PoolConnection;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, PgConnection, Postgres, QueryBuilder, Row, Sqlite,
    SqliteConnection, Transaction, Type,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::domain::{ConcertChange, Cursor, ListStatus, NewConcert, NewSeatType, SearchText};
use crate::error::CatalogError;

/// A concert as stored, with its seat types in declaration order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcertRecord {
    pub id: Uuid,
    pub name: String,
    pub artist: String,
    pub venue: String,
    pub description: String,
    pub category: String,
    pub starts_at: OffsetDateTime,
    /// The venue's IANA time zone.
    pub time_zone: String,
    pub cancelled_at: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Bumped by every change.
    pub version: i64,
    /// The last version Booking acknowledged; 0 when it never did.
    pub synced_version: i64,
    pub seat_types: Vec<SeatTypeRecord>,
}

impl ConcertRecord {
    /// Its position in the listing order.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            starts_at_millis: to_millis(self.starts_at),
            id: self.id,
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled_at.is_some()
    }

    /// Booking has seen every change.
    pub fn is_synced(&self) -> bool {
        self.synced_version >= self.version
    }
}

/// A seat type as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatTypeRecord {
    pub id: Uuid,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    /// What was provisioned to Booking; Booking's figure is authoritative.
    pub capacity: i64,
}

/// Why a guarded change did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    Started,
    Cancelled,
}

/// The outcome of a change that is only allowed while the concert is open.
#[derive(Debug)]
pub enum Guarded<T> {
    Done(T),
    Refused(Refusal),
}

/// What a listing asks for. Status `on_sale` selects like `available` here: whether seats are
/// left is Booking's to say, and the service filters on it.
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub status: ListStatus,
    /// "Now" for the `available` filter.
    pub now: OffsetDateTime,
    pub search: Option<SearchText>,
    pub category: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

/// The Catalog service's store.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    db: Store,
}

/// The unique index on `(concert_id, lower(name))`, as both engines name it.
const SEAT_TYPE_NAME_INDEX: &str = "seat_types_name_per_concert";

impl CatalogStore {
    /// A store over the catalog's SQLite file or PostgreSQL schema.
    pub fn new(db: impl Into<Store>) -> Self {
        Self { db: db.into() }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match &self.db {
            Store::Sqlite(db) => crate::SQLITE_MIGRATIONS.run(&db.write).await?,
            Store::Postgres(db) => db.migrate(&crate::POSTGRES_MIGRATIONS).await?,
        }
        Ok(())
    }

    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        self.db.ping().await
    }

    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Stores a new concert and its seat types (version 1, never synced).
    pub async fn insert_concert(
        &self,
        id: Uuid,
        concert: &NewConcert,
        seat_type_ids: &[Uuid],
        now: OffsetDateTime,
    ) -> Result<ConcertRecord, CatalogError> {
        let mut tx = self.begin().await?;
        tx.insert_concert(id, concert, now).await?;
        for (index, (seat, seat_id)) in concert.seat_types.iter().zip(seat_type_ids).enumerate() {
            let position = i64::try_from(index).unwrap_or(i64::MAX);
            tx.insert_seat_type(*seat_id, id, position, seat, now)
                .await
                .map_err(|error| {
                    self.duplicate_name(error, &format!("seat_types[{index}].name"))
                })?;
        }
        let record = tx
            .load_concert(id)
            .await?
            .ok_or(CatalogError::Store(sqlx::Error::RowNotFound))?;
        tx.commit().await?;
        Ok(record)
    }

    /// A concert with its seat types, synced or not.
    pub async fn concert(&self, id: Uuid) -> Result<Option<ConcertRecord>, CatalogError> {
        Ok(self.reader().await?.load_concert(id).await?)
    }

    /// Changes a concert's metadata while it is open (not started, not cancelled), bumping its
    /// version. An empty change changes nothing.
    pub async fn update_concert(
        &self,
        id: Uuid,
        change: &ConcertChange,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        let mut tx = self.begin().await?;
        let updated = tx.update_if_open(id, change, now).await?;
        let outcome = guarded(&mut tx, id, updated, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Adds a seat type to an open concert, bumping its version. A name already used in the
    /// concert (ignoring case) is a validation error on `name`.
    pub async fn add_seat_type(
        &self,
        concert_id: Uuid,
        seat_type_id: Uuid,
        seat: &NewSeatType,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        let mut tx = self.begin().await?;
        // The guard first: it is also the write that takes SQLite's write lock, or on PostgreSQL
        // the concert's row lock, so additions to one concert count and number seat types one
        // after the other.
        let updated = tx.bump_if_open(concert_id, now).await?;
        if updated == 0 {
            let outcome = guarded(&mut tx, concert_id, updated, now).await?;
            tx.rollback().await?;
            return Ok(outcome);
        }
        let (existing, position) = tx.seat_type_count(concert_id).await?;
        if existing >= i64::try_from(NewConcert::MAX_SEAT_TYPES).unwrap_or(i64::MAX) {
            return Err(CatalogError::invalid(
                "name",
                format!(
                    "a concert has at most {} seat types",
                    NewConcert::MAX_SEAT_TYPES
                ),
            ));
        }
        tx.insert_seat_type(seat_type_id, concert_id, position, seat, now)
            .await
            .map_err(|error| self.duplicate_name(error, "name"))?;
        let outcome = guarded(&mut tx, concert_id, updated, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Records a seat type's capacity after Booking accepted it. No version bump: Booking already
    /// has this figure, and provisioning never overwrites the capacity of a known seat type.
    pub async fn set_capacity(
        &self,
        seat_type_id: Uuid,
        capacity: i64,
    ) -> Result<(), CatalogError> {
        self.writer()
            .await?
            .set_capacity(seat_type_id, capacity)
            .await?;
        Ok(())
    }

    /// Calls a concert off. Idempotent: an already cancelled concert is returned unchanged
    /// (version not bumped). A concert that has started can no longer be cancelled.
    pub async fn cancel(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        let mut tx = self.begin().await?;
        let updated = tx.cancel_if_open(id, now).await?;
        let outcome = match guarded(&mut tx, id, updated, now).await? {
            Guarded::Refused(Refusal::Cancelled) => match tx.load_concert(id).await? {
                Some(record) => Guarded::Done(record),
                None => Guarded::Refused(Refusal::NotFound),
            },
            other => other,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Records that Booking has seen `version`, unless the concert changed again meanwhile
    /// (then the newer version still has to be pushed). True when recorded.
    pub async fn mark_synced(&self, id: Uuid, version: i64) -> Result<bool, CatalogError> {
        let updated = self.writer().await?.mark_synced(id, version).await?;
        Ok(updated == 1)
    }

    /// Concerts with changes Booking has not seen, oldest first.
    pub async fn unsynced(&self, limit: u32) -> Result<Vec<Uuid>, CatalogError> {
        Ok(self.reader().await?.unsynced(limit).await?)
    }

    /// One page of synced concerts matching `filter`, after `after` in the listing order
    /// (`starts_at`, then id), at most `limit` of them, each with its seat types.
    pub async fn list(
        &self,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ConcertRecord>, CatalogError> {
        Ok(self.reader().await?.list(filter, after, limit).await?)
    }

    /// A transaction on the writer.
    async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match &self.db {
            Store::Sqlite(db) => Conn::Sqlite(db.write.begin().await?),
            Store::Postgres(db) => Conn::Postgres(db.pool.begin().await?),
        })
    }

    /// A connection for a single write statement.
    async fn writer(&self) -> Result<Pooled, sqlx::Error> {
        Ok(match &self.db {
            Store::Sqlite(db) => Conn::Sqlite(db.write.acquire().await?),
            Store::Postgres(db) => Conn::Postgres(db.pool.acquire().await?),
        })
    }

    /// A connection for reads; on SQLite one of the readers, which never wait for the writer.
    async fn reader(&self) -> Result<Pooled, sqlx::Error> {
        Ok(match &self.db {
            Store::Sqlite(db) => Conn::Sqlite(db.read.acquire().await?),
            Store::Postgres(db) => Conn::Postgres(db.pool.acquire().await?),
        })
    }

    /// Maps the seat-type name index's unique violation to a validation error on `field`.
    fn duplicate_name(&self, error: sqlx::Error, field: &str) -> CatalogError {
        let duplicate = match &self.db {
            // SQLite names an index on an expression in its message, PostgreSQL in the error's
            // constraint field.
            Store::Sqlite(_) => is_unique_violation(&error, SEAT_TYPE_NAME_INDEX),
            Store::Postgres(_) => is_pg_unique_violation(&error, SEAT_TYPE_NAME_INDEX),
        };
        if duplicate {
            CatalogError::invalid(
                field,
                "this concert already has a seat type with this name (names ignore case)",
            )
        } else {
            CatalogError::Store(error)
        }
    }
}

/// Classifies a guarded `UPDATE` that touched `updated` rows: done (the concert as it is now), or
/// why not.
async fn guarded(
    tx: &mut Tx,
    id: Uuid,
    updated: u64,
    now: OffsetDateTime,
) -> Result<Guarded<ConcertRecord>, CatalogError> {
    let Some(record) = tx.load_concert(id).await? else {
        return Ok(Guarded::Refused(Refusal::NotFound));
    };
    if updated > 0 {
        Ok(Guarded::Done(record))
    } else if record.is_cancelled() {
        Ok(Guarded::Refused(Refusal::Cancelled))
    } else if record.starts_at <= now {
        Ok(Guarded::Refused(Refusal::Started))
    } else {
        // The guard matched nothing yet the concert is open: it changed between the statements.
        // SQLite's single writer rules that out. On PostgreSQL (read committed) only a concert
        // inserted in between could, and nobody knew its id before it was inserted.
        Err(CatalogError::Store(sqlx::Error::RowNotFound))
    }
}

/// A connection on either engine: a transaction ([`Tx`]) or a pooled connection ([`Pooled`]).
///
/// Its methods are the statements the public methods compose, each with the SQLite SQL (`?`
/// placeholders, epoch milliseconds) next to the PostgreSQL SQL (`$n`, `timestamptz`).
enum Conn<S, P> {
    Sqlite(S),
    Postgres(P),
}

type Tx = Conn<Transaction<'static, Sqlite>, Transaction<'static, Postgres>>;
type Pooled = Conn<PoolConnection<Sqlite>, PoolConnection<Postgres>>;

impl Tx {
    async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(tx) => tx.commit().await,
            Conn::Postgres(tx) => tx.commit().await,
        }
    }

    async fn rollback(self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(tx) => tx.rollback().await,
            Conn::Postgres(tx) => tx.rollback().await,
        }
    }
}

/// The concert columns `concert_from_row` reads, as a literal so that queries stay `&'static str`.
macro_rules! concert_columns {
    () => {
        "c.id, c.name, c.artist, c.venue, c.description, c.category, c.starts_at, c.time_zone, \
         c.cancelled_at, c.created_at, c.updated_at, c.version, c.synced_version"
    };
}

/// The seat-type columns `seat_type_from_row` reads.
macro_rules! seat_type_columns {
    () => {
        "concert_id, id, name, price_cents, currency, capacity"
    };
}

impl<S, P> Conn<S, P>
where
    S: DerefMut<Target = SqliteConnection>,
    P: DerefMut<Target = PgConnection>,
{
    async fn insert_concert(
        &mut self,
        id: Uuid,
        concert: &NewConcert,
        now: OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(conn) => {
                sqlx::query(
                    "INSERT INTO concerts (id, name, artist, venue, description, category,
                                           starts_at, created_at, updated_at, time_zone,
                                           version, synced_version)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0)",
                )
                .bind(id)
                .bind(concert.name.as_str())
                .bind(concert.artist.as_str())
                .bind(concert.venue.as_str())
                .bind(concert.description.as_str())
                .bind(concert.category.as_str())
                .bind(to_millis(concert.starts_at.get()))
                .bind(to_millis(now))
                .bind(to_millis(now))
                .bind(concert.time_zone.as_str())
                .execute(&mut **conn)
                .await?;
            }
            Conn::Postgres(conn) => {
                sqlx::query(
                    "INSERT INTO concerts (id, name, artist, venue, description, category,
                                           starts_at, created_at, updated_at, time_zone,
                                           version, synced_version)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, 1, 0)",
                )
                .bind(id)
                .bind(concert.name.as_str())
                .bind(concert.artist.as_str())
                .bind(concert.venue.as_str())
                .bind(concert.description.as_str())
                .bind(concert.category.as_str())
                .bind(pg_instant(concert.starts_at.get()))
                .bind(pg_instant(now))
                .bind(concert.time_zone.as_str())
                .execute(&mut **conn)
                .await?;
            }
        }
        Ok(())
    }

    /// Inserts a seat type at `position` in its concert's display order.
    async fn insert_seat_type(
        &mut self,
        id: Uuid,
        concert_id: Uuid,
        position: i64,
        seat: &NewSeatType,
        now: OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(conn) => {
                sqlx::query(
                    "INSERT INTO seat_types (id, concert_id, position, name, price_cents,
                                             currency, capacity, created_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(id)
                .bind(concert_id)
                .bind(position)
                .bind(seat.name.as_str())
                .bind(seat.price_cents.get())
                .bind(seat.currency.as_str())
                .bind(seat.capacity.get())
                .bind(to_millis(now))
                .execute(&mut **conn)
                .await?;
            }
            Conn::Postgres(conn) => {
                sqlx::query(
                    "INSERT INTO seat_types (id, concert_id, position, name, price_cents,
                                             currency, capacity, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(id)
                .bind(concert_id)
                .bind(position)
                .bind(seat.name.as_str())
                .bind(seat.price_cents.get())
                .bind(seat.currency.as_str())
                .bind(seat.capacity.get())
                .bind(pg_instant(now))
                .execute(&mut **conn)
                .await?;
            }
        }
        Ok(())
    }

    /// How many seat types a concert has, and the next free display position.
    async fn seat_type_count(&mut self, concert_id: Uuid) -> Result<(i64, i64), sqlx::Error> {
        match self {
            Conn::Sqlite(conn) => {
                sqlx::query_as(
                    "SELECT count(*), coalesce(max(position), -1) + 1
                     FROM seat_types WHERE concert_id = ?",
                )
                .bind(concert_id)
                .fetch_one(&mut **conn)
                .await
            }
            Conn::Postgres(conn) => {
                sqlx::query_as(
                    "SELECT count(*), coalesce(max(position), -1) + 1
                     FROM seat_types WHERE concert_id = $1",
                )
                .bind(concert_id)
                .fetch_one(&mut **conn)
                .await
            }
        }
    }

    /// Applies `change` to an open concert, bumping its version unless the change is empty.
    /// Returns the rows changed: 0 when the concert is unknown, started or cancelled.
    async fn update_if_open(
        &mut self,
        id: Uuid,
        change: &ConcertChange,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        let name = change.name.as_ref().map(|v| v.as_str().to_owned());
        let artist = change.artist.as_ref().map(|v| v.as_str().to_owned());
        let venue = change.venue.as_ref().map(|v| v.as_str().to_owned());
        let description = change.description.as_ref().map(|v| v.as_str().to_owned());
        let category = change.category.as_ref().map(|v| v.as_str().to_owned());
        let starts_at = change.starts_at.map(|v| v.get());
        let time_zone = change.time_zone.as_ref().map(|v| v.as_str().to_owned());
        let changed = !change.is_empty();
        Ok(match self {
            Conn::Sqlite(conn) => sqlx::query(
                "UPDATE concerts SET
                    name = coalesce(?, name),
                    artist = coalesce(?, artist),
                    venue = coalesce(?, venue),
                    description = coalesce(?, description),
                    category = coalesce(?, category),
                    starts_at = coalesce(?, starts_at),
                    time_zone = coalesce(?, time_zone),
                    version = version + ?,
                    updated_at = CASE WHEN ? THEN ? ELSE updated_at END
                 WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
            )
            .bind(name)
            .bind(artist)
            .bind(venue)
            .bind(description)
            .bind(category)
            .bind(starts_at.map(to_millis))
            .bind(time_zone)
            .bind(i64::from(changed))
            .bind(changed)
            .bind(to_millis(now))
            .bind(id)
            .bind(to_millis(now))
            .execute(&mut **conn)
            .await?
            .rows_affected(),
            Conn::Postgres(conn) => sqlx::query(
                "UPDATE concerts SET
                    name = coalesce($1, name),
                    artist = coalesce($2, artist),
                    venue = coalesce($3, venue),
                    description = coalesce($4, description),
                    category = coalesce($5, category),
                    starts_at = coalesce($6, starts_at),
                    time_zone = coalesce($7, time_zone),
                    version = version + $8,
                    updated_at = CASE WHEN $9 THEN $10 ELSE updated_at END
                 WHERE id = $11 AND cancelled_at IS NULL AND starts_at > $10",
            )
            .bind(name)
            .bind(artist)
            .bind(venue)
            .bind(description)
            .bind(category)
            .bind(starts_at.map(pg_instant))
            .bind(time_zone)
            .bind(i64::from(changed))
            .bind(changed)
            .bind(pg_instant(now))
            .bind(id)
            .execute(&mut **conn)
            .await?
            .rows_affected(),
        })
    }

    /// Bumps an open concert's version. Returns the rows changed: 0 when the concert is unknown,
    /// started or cancelled.
    async fn bump_if_open(&mut self, id: Uuid, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Conn::Sqlite(conn) => sqlx::query(
                "UPDATE concerts SET version = version + 1, updated_at = ?
                 WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
            )
            .bind(to_millis(now))
            .bind(id)
            .bind(to_millis(now))
            .execute(&mut **conn)
            .await?
            .rows_affected(),
            Conn::Postgres(conn) => sqlx::query(
                "UPDATE concerts SET version = version + 1, updated_at = $1
                 WHERE id = $2 AND cancelled_at IS NULL AND starts_at > $1",
            )
            .bind(pg_instant(now))
            .bind(id)
            .execute(&mut **conn)
            .await?
            .rows_affected(),
        })
    }

    /// Cancels an open concert, bumping its version. Returns the rows changed: 0 when the concert
    /// is unknown, started or already cancelled.
    async fn cancel_if_open(&mut self, id: Uuid, now: OffsetDateTime) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Conn::Sqlite(conn) => sqlx::query(
                "UPDATE concerts SET cancelled_at = ?, version = version + 1, updated_at = ?
                 WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
            )
            .bind(to_millis(now))
            .bind(to_millis(now))
            .bind(id)
            .bind(to_millis(now))
            .execute(&mut **conn)
            .await?
            .rows_affected(),
            Conn::Postgres(conn) => sqlx::query(
                "UPDATE concerts SET cancelled_at = $1, version = version + 1, updated_at = $1
                 WHERE id = $2 AND cancelled_at IS NULL AND starts_at > $1",
            )
            .bind(pg_instant(now))
            .bind(id)
            .execute(&mut **conn)
            .await?
            .rows_affected(),
        })
    }

    async fn set_capacity(&mut self, seat_type_id: Uuid, capacity: i64) -> Result<(), sqlx::Error> {
        match self {
            Conn::Sqlite(conn) => {
                sqlx::query("UPDATE seat_types SET capacity = ? WHERE id = ?")
                    .bind(capacity)
                    .bind(seat_type_id)
                    .execute(&mut **conn)
                    .await?;
            }
            Conn::Postgres(conn) => {
                sqlx::query("UPDATE seat_types SET capacity = $1 WHERE id = $2")
                    .bind(capacity)
                    .bind(seat_type_id)
                    .execute(&mut **conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Sets `synced_version` to `version` if that is still the concert's version and newer than
    /// what was recorded. Returns the rows changed.
    async fn mark_synced(&mut self, id: Uuid, version: i64) -> Result<u64, sqlx::Error> {
        Ok(match self {
            Conn::Sqlite(conn) => sqlx::query(
                "UPDATE concerts SET synced_version = ?
                 WHERE id = ? AND version = ? AND synced_version < ?",
            )
            .bind(version)
            .bind(id)
            .bind(version)
            .bind(version)
            .execute(&mut **conn)
            .await?
            .rows_affected(),
            Conn::Postgres(conn) => sqlx::query(
                "UPDATE concerts SET synced_version = $1
                 WHERE id = $2 AND version = $1 AND synced_version < $1",
            )
            .bind(version)
            .bind(id)
            .execute(&mut **conn)
            .await?
            .rows_affected(),
        })
    }

    /// Concerts with changes Booking has not seen, in insertion order.
    async fn unsynced(&mut self, limit: u32) -> Result<Vec<Uuid>, sqlx::Error> {
        match self {
            Conn::Sqlite(conn) => {
                sqlx::query_scalar(
                    "SELECT id FROM concerts WHERE synced_version < version ORDER BY seq LIMIT ?",
                )
                .bind(i64::from(limit))
                .fetch_all(&mut **conn)
                .await
            }
            Conn::Postgres(conn) => {
                sqlx::query_scalar(
                    "SELECT id FROM concerts WHERE synced_version < version ORDER BY seq LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&mut **conn)
                .await
            }
        }
    }

    /// A concert with its seat types.
    async fn load_concert(&mut self, id: Uuid) -> Result<Option<ConcertRecord>, sqlx::Error> {
        let concert = match self {
            Conn::Sqlite(conn) => sqlx::query(concat!(
                "SELECT ",
                concert_columns!(),
                " FROM concerts c WHERE c.id = ?"
            ))
            .bind(id)
            .fetch_optional(&mut **conn)
            .await?
            .map(|row| concert_from_row::<Sqlite>(&row))
            .transpose()?,
            Conn::Postgres(conn) => sqlx::query(concat!(
                "SELECT ",
                concert_columns!(),
                " FROM concerts c WHERE c.id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut **conn)
            .await?
            .map(|row| concert_from_row::<Postgres>(&row))
            .transpose()?,
        };
        let Some(concert) = concert else {
            return Ok(None);
        };
        let mut concerts = [concert];
        self.attach_seat_types(&mut concerts).await?;
        let [concert] = concerts;
        Ok(Some(concert))
    }

    /// One page of a listing (see [`CatalogStore::list`]).
    async fn list(
        &mut self,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ConcertRecord>, sqlx::Error> {
        let mut concerts = match self {
            Conn::Sqlite(conn) => list_query::<Sqlite>(filter, after, limit)
                .build()
                .fetch_all(&mut **conn)
                .await?
                .iter()
                .map(concert_from_row::<Sqlite>)
                .collect::<Result<Vec<_>, _>>()?,
            Conn::Postgres(conn) => list_query::<Postgres>(filter, after, limit)
                .build()
                .fetch_all(&mut **conn)
                .await?
                .iter()
                .map(concert_from_row::<Postgres>)
                .collect::<Result<Vec<_>, _>>()?,
        };
        self.attach_seat_types(&mut concerts).await?;
        Ok(concerts)
    }

    /// Loads the seat types of `concerts` in one query.
    async fn attach_seat_types(
        &mut self,
        concerts: &mut [ConcertRecord],
    ) -> Result<(), sqlx::Error> {
        if concerts.is_empty() {
            return Ok(());
        }
        let seat_types = match self {
            Conn::Sqlite(conn) => {
                let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
                    "SELECT ",
                    seat_type_columns!(),
                    " FROM seat_types WHERE concert_id IN ("
                ));
                let mut ids = query.separated(", ");
                for concert in concerts.iter() {
                    ids.push_bind(concert.id);
                }
                query.push(") ORDER BY concert_id, position");
                query
                    .build()
                    .fetch_all(&mut **conn)
                    .await?
                    .iter()
                    .map(seat_type_from_row::<Sqlite>)
                    .collect::<Result<Vec<_>, _>>()?
            }
            Conn::Postgres(conn) => {
                let ids: Vec<Uuid> = concerts.iter().map(|concert| concert.id).collect();
                sqlx::query(concat!(
                    "SELECT ",
                    seat_type_columns!(),
                    " FROM seat_types WHERE concert_id = ANY($1) ORDER BY concert_id, position"
                ))
                .bind(ids)
                .fetch_all(&mut **conn)
                .await?
                .iter()
                .map(seat_type_from_row::<Postgres>)
                .collect::<Result<Vec<_>, _>>()?
            }
        };
        let mut by_concert: HashMap<Uuid, Vec<SeatTypeRecord>> = HashMap::new();
        for (concert_id, seat_type) in seat_types {
            by_concert.entry(concert_id).or_default().push(seat_type);
        }
        for concert in concerts {
            concert.seat_types = by_concert.remove(&concert.id).unwrap_or_default();
        }
        Ok(())
    }
}

/// What the listing query and the row readers say differently on each engine.
trait Engine: Database {
    /// Appends an instant, given in epoch milliseconds, as a bind.
    fn push_millis(query: &mut QueryBuilder<Self>, millis: i64);

    /// Appends ` AND ` a case-insensitive comparison of the concert's category with `category`.
    fn push_category(query: &mut QueryBuilder<Self>, category: &str);

    /// Appends ` AND ` a case-insensitive substring match of `search` against the concert's
    /// name, artist or venue.
    fn push_search(query: &mut QueryBuilder<Self>, search: &SearchText);

    /// Reads an instant column: epoch milliseconds on SQLite, `timestamptz` on PostgreSQL.
    fn instant(row: &Self::Row, column: &str) -> Result<OffsetDateTime, sqlx::Error>;

    /// Reads a nullable instant column.
    fn optional_instant(
        row: &Self::Row,
        column: &str,
    ) -> Result<Option<OffsetDateTime>, sqlx::Error>;
}

impl Engine for Sqlite {
    fn push_millis(query: &mut QueryBuilder<Self>, millis: i64) {
        query.push_bind(millis);
    }

    fn push_category(query: &mut QueryBuilder<Self>, category: &str) {
        query
            .push(" AND c.category = ")
            .push_bind(category.to_owned())
            .push(" COLLATE NOCASE");
    }

    fn push_search(query: &mut QueryBuilder<Self>, search: &SearchText) {
        if search.uses_index() {
            query
                .push(" AND c.seq IN (SELECT rowid FROM concerts_fts WHERE concerts_fts MATCH ")
                .push_bind(search.fts_phrase())
                .push(")");
        } else {
            // The trigram index cannot answer one- or two-character substrings.
            let pattern = search.like_pattern();
            query
                .push(" AND (c.name LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR c.artist LIKE ")
                .push_bind(pattern.clone())
                .push(" ESCAPE '\\' OR c.venue LIKE ")
                .push_bind(pattern)
                .push(" ESCAPE '\\')");
        }
    }

    fn instant(row: &Self::Row, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
        Ok(from_millis(row.try_get(column)?))
    }

    fn optional_instant(
        row: &Self::Row,
        column: &str,
    ) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        Ok(row.try_get::<Option<i64>, _>(column)?.map(from_millis))
    }
}

impl Engine for Postgres {
    fn push_millis(query: &mut QueryBuilder<Self>, millis: i64) {
        query.push_bind(pg_millis(millis));
    }

    fn push_category(query: &mut QueryBuilder<Self>, category: &str) {
        // The expression `concerts_by_category` indexes. Unlike SQLite's NOCASE, `lower` folds
        // beyond ASCII too (in a UTF-8 locale).
        query
            .push(" AND lower(c.category) = lower(")
            .push_bind(category.to_owned())
            .push(")");
    }

    fn push_search(query: &mut QueryBuilder<Self>, search: &SearchText) {
        // `like_pattern` escapes with a backslash, PostgreSQL's default LIKE escape. Case is
        // folded by the database's locale (beyond ASCII in a UTF-8 one, as SQLite's trigram
        // index does). A pg_trgm index, where the migration could create one, answers any
        // pattern length; without it the same condition scans, with the same results.
        let pattern = search.like_pattern();
        query
            .push(" AND (c.name ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR c.artist ILIKE ")
            .push_bind(pattern.clone())
            .push(" OR c.venue ILIKE ")
            .push_bind(pattern)
            .push(")");
    }

    fn instant(row: &Self::Row, column: &str) -> Result<OffsetDateTime, sqlx::Error> {
        row.try_get(column)
    }

    fn optional_instant(
        row: &Self::Row,
        column: &str,
    ) -> Result<Option<OffsetDateTime>, sqlx::Error> {
        row.try_get(column)
    }
}

/// `at` as the PostgreSQL store binds it: truncated to whole milliseconds, the precision SQLite
/// keeps, so both engines hand back the same instants.
fn pg_instant(at: OffsetDateTime) -> OffsetDateTime {
    pg_millis(to_millis(at))
}

/// 0000-01-01T00:00:00Z in epoch milliseconds: the earliest RFC 3339 instant.
const MIN_MILLIS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z in epoch milliseconds: the latest RFC 3339 instant, and the latest
/// the `time` crate represents.
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// Epoch milliseconds as a `timestamptz` bind. Only a forged cursor holds milliseconds outside
/// years 0000 to 9999; clamped into them, it compares with every stored instant as SQLite's
/// integer would, instead of failing (`timestamp out of range`) or wrapping to the epoch.
fn pg_millis(millis: i64) -> OffsetDateTime {
    from_millis(millis.clamp(MIN_MILLIS, MAX_MILLIS))
}

/// The listing query: synced concerts matching `filter` after `after`, in listing order.
fn list_query<DB: Engine>(
    filter: &ListFilter,
    after: Option<Cursor>,
    limit: u32,
) -> QueryBuilder<DB>
where
    for<'q> Uuid: Encode<'q, DB> + Type<DB>,
    for<'q> i64: Encode<'q, DB> + Type<DB>,
{
    let mut query = QueryBuilder::new(concat!(
        "SELECT ",
        concert_columns!(),
        " FROM concerts c WHERE c.synced_version > 0"
    ));
    match filter.status {
        ListStatus::Available | ListStatus::OnSale => {
            query.push(" AND c.cancelled_at IS NULL AND c.starts_at > ");
            DB::push_millis(&mut query, to_millis(filter.now));
        }
        ListStatus::All => {}
    }
    if let Some(category) = &filter.category {
        DB::push_category(&mut query, category);
    }
    if let Some(from) = filter.from {
        query.push(" AND c.starts_at >= ");
        DB::push_millis(&mut query, to_millis(from));
    }
    if let Some(to) = filter.to {
        query.push(" AND c.starts_at <= ");
        DB::push_millis(&mut query, to_millis(to));
    }
    if let Some(search) = &filter.search {
        DB::push_search(&mut query, search);
    }
    if let Some(after) = after {
        query.push(" AND (c.starts_at, c.id) > (");
        DB::push_millis(&mut query, after.starts_at_millis);
        query.push(", ").push_bind(after.id).push(")");
    }
    query
        .push(" ORDER BY c.starts_at, c.id LIMIT ")
        .push_bind(i64::from(limit));
    query
}

fn concert_from_row<DB: Engine>(row: &DB::Row) -> Result<ConcertRecord, sqlx::Error>
where
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'c> &'c str: ColumnIndex<DB::Row>,
{
    Ok(ConcertRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        artist: row.try_get("artist")?,
        venue: row.try_get("venue")?,
        description: row.try_get("description")?,
        category: row.try_get("category")?,
        starts_at: DB::instant(row, "starts_at")?,
        time_zone: row.try_get("time_zone")?,
        cancelled_at: DB::optional_instant(row, "cancelled_at")?,
        created_at: DB::instant(row, "created_at")?,
        updated_at: DB::instant(row, "updated_at")?,
        version: row.try_get("version")?,
        synced_version: row.try_get("synced_version")?,
        seat_types: Vec::new(),
    })
}

/// A seat type and the concert it belongs to.
fn seat_type_from_row<DB: Engine>(row: &DB::Row) -> Result<(Uuid, SeatTypeRecord), sqlx::Error>
where
    for<'r> Uuid: Decode<'r, DB> + Type<DB>,
    for<'r> String: Decode<'r, DB> + Type<DB>,
    for<'r> i64: Decode<'r, DB> + Type<DB>,
    for<'c> &'c str: ColumnIndex<DB::Row>,
{
    let seat_type = SeatTypeRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        price_cents: row.try_get("price_cents")?,
        currency: row.try_get("currency")?,
        capacity: row.try_get("capacity")?,
    };
    Ok((row.try_get("concert_id")?, seat_type))
}

#[cfg(test)]
mod tests;
