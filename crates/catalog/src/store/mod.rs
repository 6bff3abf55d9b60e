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
//! [`CatalogStore`] is the one API the service uses. Its operations (several statements in one
//! transaction, such as inserting a concert with its seat types) are written once, generic over
//! [`Engine`]: what each engine says in its own SQL. The engines' statements live in one module
//! each, and the store picks the engine in one place (`on_engine!`):
//! - [`sqlite`]: the embedded default: a writer connection and readers that never wait for it.
//! - [`postgres`]: the `catalog` schema of a shared PostgreSQL database.
//!
//! Instants are bound at whole milliseconds on both engines (SQLite keeps epoch milliseconds,
//! PostgreSQL `timestamptz`), so records and cursors come back identical whichever engine stored
//! them. The contract tests (`store/tests.rs`) run one suite on both.

mod postgres;
mod sqlite;

use std::collections::HashMap;

use boxoffice_shared::clients::WaitingRoom;
use boxoffice_shared::clock::to_millis;
use boxoffice_shared::db::Store;
use sqlx::{ColumnIndex, Database, Decode, Encode, Pool, QueryBuilder, Row, Type};
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
    /// When sales open; `None`: on sale since it was created.
    pub sales_open_at: Option<OffsetDateTime>,
    /// The waiting room in front of its sales; `None`: none.
    pub waiting_room: Option<WaitingRoom>,
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

/// Runs `$body` with `$pools` bound to the [`Pools`] of the engine the store was opened on: the
/// one place where the engine is chosen.
macro_rules! on_engine {
    ($store:expr, $pools:ident => $body:expr) => {
        match &$store.db {
            Store::Sqlite(db) => {
                let $pools = Pools::<sqlx::Sqlite> {
                    write: &db.write,
                    read: &db.read,
                };
                $body
            }
            Store::Postgres(db) => {
                let $pools = Pools::<sqlx::Postgres> {
                    write: &db.pool,
                    read: &db.pool,
                };
                $body
            }
        }
    };
}

impl CatalogStore {
    /// A store over the catalog's SQLite file or PostgreSQL schema.
    pub fn new(db: impl Into<Store>) -> Self {
        Self { db: db.into() }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        self.db
            .migrate(&crate::SQLITE_MIGRATIONS, &crate::POSTGRES_MIGRATIONS)
            .await
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
        on_engine!(self, pools => pools.insert_concert(id, concert, seat_type_ids, now).await)
    }

    /// A concert with its seat types, synced or not.
    pub async fn concert(&self, id: Uuid) -> Result<Option<ConcertRecord>, CatalogError> {
        on_engine!(self, pools => pools.concert(id).await)
    }

    /// Changes a concert's metadata while it is open (not started, not cancelled), bumping its
    /// version. An empty change changes nothing.
    pub async fn update_concert(
        &self,
        id: Uuid,
        change: &ConcertChange,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        on_engine!(self, pools => pools.update_concert(id, change, now).await)
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
        on_engine!(self, pools => pools.add_seat_type(concert_id, seat_type_id, seat, now).await)
    }

    /// Records a seat type's capacity after Booking accepted it. No version bump: Booking already
    /// has this figure, and provisioning never overwrites the capacity of a known seat type.
    pub async fn set_capacity(
        &self,
        seat_type_id: Uuid,
        capacity: i64,
    ) -> Result<(), CatalogError> {
        on_engine!(self, pools => pools.set_capacity(seat_type_id, capacity).await)
    }

    /// Calls a concert off. Idempotent: an already cancelled concert is returned unchanged
    /// (version not bumped). A concert that has started can no longer be cancelled.
    pub async fn cancel(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        on_engine!(self, pools => pools.cancel(id, now).await)
    }

    /// Records that Booking has seen `version`, unless the concert changed again meanwhile
    /// (then the newer version still has to be pushed). True when recorded.
    pub async fn mark_synced(&self, id: Uuid, version: i64) -> Result<bool, CatalogError> {
        on_engine!(self, pools => pools.mark_synced(id, version).await)
    }

    /// Concerts with changes Booking has not seen, oldest first.
    pub async fn unsynced(&self, limit: u32) -> Result<Vec<Uuid>, CatalogError> {
        on_engine!(self, pools => pools.unsynced(limit).await)
    }

    /// One page of synced concerts matching `filter`, after `after` in the listing order
    /// (`starts_at`, then id), at most `limit` of them, each with its seat types.
    pub async fn list(
        &self,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ConcertRecord>, CatalogError> {
        on_engine!(self, pools => pools.list(filter, after, limit).await)
    }
}

/// One engine's connection pools: on SQLite the writer and the readers (which never wait for the
/// writer), on PostgreSQL one pool for both.
struct Pools<'a, E: Database> {
    write: &'a Pool<E>,
    read: &'a Pool<E>,
}

/// The store's operations, written once for both engines.
impl<E: Engine> Pools<'_, E> {
    async fn insert_concert(
        &self,
        id: Uuid,
        concert: &NewConcert,
        seat_type_ids: &[Uuid],
        now: OffsetDateTime,
    ) -> Result<ConcertRecord, CatalogError> {
        let mut tx = self.write.begin().await?;
        E::insert_concert(&mut *tx, id, concert, now)
            .await
            .map_err(on_sale_after_start)?;
        for (index, (seat, seat_id)) in concert.seat_types.iter().zip(seat_type_ids).enumerate() {
            let position = i64::try_from(index).unwrap_or(i64::MAX);
            E::insert_seat_type(&mut *tx, *seat_id, id, position, seat, now)
                .await
                .map_err(|error| {
                    duplicate_name::<E>(error, &format!("seat_types[{index}].name"))
                })?;
        }
        let record = load_concert::<E>(&mut *tx, id)
            .await?
            .ok_or(CatalogError::Store(sqlx::Error::RowNotFound))?;
        tx.commit().await?;
        Ok(record)
    }

    async fn concert(&self, id: Uuid) -> Result<Option<ConcertRecord>, CatalogError> {
        let mut conn = self.read.acquire().await?;
        Ok(load_concert::<E>(&mut *conn, id).await?)
    }

    async fn update_concert(
        &self,
        id: Uuid,
        change: &ConcertChange,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        let mut tx = self.write.begin().await?;
        let updated = E::update_if_open(&mut *tx, id, change, now)
            .await
            .map_err(on_sale_after_start)?;
        let outcome = guarded::<E>(&mut *tx, id, updated, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn add_seat_type(
        &self,
        concert_id: Uuid,
        seat_type_id: Uuid,
        seat: &NewSeatType,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        let mut tx = self.write.begin().await?;
        // The guard first: it is also the write that takes SQLite's write lock, or on PostgreSQL
        // the concert's row lock, so additions to one concert count and number seat types one
        // after the other.
        let updated = E::bump_if_open(&mut *tx, concert_id, now).await?;
        if updated == 0 {
            let outcome = guarded::<E>(&mut *tx, concert_id, updated, now).await?;
            tx.rollback().await?;
            return Ok(outcome);
        }
        let (existing, position) = E::seat_type_count(&mut *tx, concert_id).await?;
        if existing >= i64::try_from(NewConcert::MAX_SEAT_TYPES).unwrap_or(i64::MAX) {
            return Err(CatalogError::invalid(
                "name",
                format!(
                    "a concert has at most {} seat types",
                    NewConcert::MAX_SEAT_TYPES
                ),
            ));
        }
        E::insert_seat_type(&mut *tx, seat_type_id, concert_id, position, seat, now)
            .await
            .map_err(|error| duplicate_name::<E>(error, "name"))?;
        let outcome = guarded::<E>(&mut *tx, concert_id, updated, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn set_capacity(&self, seat_type_id: Uuid, capacity: i64) -> Result<(), CatalogError> {
        let mut conn = self.write.acquire().await?;
        E::set_capacity(&mut *conn, seat_type_id, capacity).await?;
        Ok(())
    }

    async fn cancel(
        &self,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        let mut tx = self.write.begin().await?;
        let updated = E::cancel_if_open(&mut *tx, id, now).await?;
        let outcome = match guarded::<E>(&mut *tx, id, updated, now).await? {
            Guarded::Refused(Refusal::Cancelled) => match load_concert::<E>(&mut *tx, id).await? {
                Some(record) => Guarded::Done(record),
                None => Guarded::Refused(Refusal::NotFound),
            },
            other => other,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn mark_synced(&self, id: Uuid, version: i64) -> Result<bool, CatalogError> {
        let mut conn = self.write.acquire().await?;
        Ok(E::mark_synced(&mut *conn, id, version).await? == 1)
    }

    async fn unsynced(&self, limit: u32) -> Result<Vec<Uuid>, CatalogError> {
        let mut conn = self.read.acquire().await?;
        Ok(E::unsynced(&mut *conn, limit).await?)
    }

    async fn list(
        &self,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ConcertRecord>, CatalogError> {
        let mut conn = self.read.acquire().await?;
        let mut concerts = E::select_page(&mut *conn, filter, after, limit).await?;
        attach_seat_types::<E>(&mut *conn, &mut concerts).await?;
        Ok(concerts)
    }
}

/// A concert with its seat types.
async fn load_concert<E: Engine>(
    conn: &mut E::Connection,
    id: Uuid,
) -> Result<Option<ConcertRecord>, sqlx::Error> {
    let Some(concert) = E::select_concert(conn, id).await? else {
        return Ok(None);
    };
    let mut concerts = [concert];
    attach_seat_types::<E>(conn, &mut concerts).await?;
    let [concert] = concerts;
    Ok(Some(concert))
}

/// Loads the seat types of `concerts` in one query.
async fn attach_seat_types<E: Engine>(
    conn: &mut E::Connection,
    concerts: &mut [ConcertRecord],
) -> Result<(), sqlx::Error> {
    if concerts.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = concerts.iter().map(|concert| concert.id).collect();
    let mut by_concert: HashMap<Uuid, Vec<SeatTypeRecord>> = HashMap::new();
    for (concert_id, seat_type) in E::select_seat_types(conn, &ids).await? {
        by_concert.entry(concert_id).or_default().push(seat_type);
    }
    for concert in concerts {
        concert.seat_types = by_concert.remove(&concert.id).unwrap_or_default();
    }
    Ok(())
}

/// Classifies a guarded `UPDATE` that touched `updated` rows: done (the concert as it is now), or
/// why not.
async fn guarded<E: Engine>(
    conn: &mut E::Connection,
    id: Uuid,
    updated: u64,
    now: OffsetDateTime,
) -> Result<Guarded<ConcertRecord>, CatalogError> {
    let Some(record) = load_concert::<E>(conn, id).await? else {
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

/// Maps the check that sales open before the start to a validation error on `sales_open_at`.
fn on_sale_after_start(error: sqlx::Error) -> CatalogError {
    match &error {
        sqlx::Error::Database(db)
            if db.message().contains("sales_open_before_start")
                || db.constraint() == Some("sales_open_before_start") =>
        {
            CatalogError::invalid("sales_open_at", "must be before starts_at")
        }
        _ => CatalogError::Store(error),
    }
}

/// Maps the seat-type name index's unique violation to a validation error on `field`.
fn duplicate_name<E: Engine>(error: sqlx::Error, field: &str) -> CatalogError {
    if E::is_duplicate_name(&error) {
        CatalogError::invalid(
            field,
            "this concert already has a seat type with this name (names ignore case)",
        )
    } else {
        CatalogError::Store(error)
    }
}

/// The concert columns `concert_from_row` reads, as a literal so that queries stay `&'static str`.
macro_rules! concert_columns {
    () => {
        "c.id, c.name, c.artist, c.venue, c.description, c.category, c.starts_at, c.time_zone, \
         c.sales_open_at, c.waiting_room_admit_per_minute, c.waiting_room_admission_ttl_seconds, \
         c.cancelled_at, c.created_at, c.updated_at, c.version, c.synced_version"
    };
}
use concert_columns;

/// The seat-type columns `seat_type_from_row` reads.
macro_rules! seat_type_columns {
    () => {
        "concert_id, id, name, price_cents, currency, capacity"
    };
}
use seat_type_columns;

/// What each engine says in its own SQL: the statements the operations compose, the pieces of
/// the listing query, and how its rows hold instants. Each statement runs on the connection it is
/// given: a transaction's, or a pooled one's.
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

    /// Whether `error` is the seat-type name index's unique violation.
    fn is_duplicate_name(error: &sqlx::Error) -> bool;

    /// Inserts a concert (version 1, never synced), without its seat types.
    async fn insert_concert(
        conn: &mut Self::Connection,
        id: Uuid,
        concert: &NewConcert,
        now: OffsetDateTime,
    ) -> Result<(), sqlx::Error>;

    /// Inserts a seat type at `position` in its concert's display order.
    async fn insert_seat_type(
        conn: &mut Self::Connection,
        id: Uuid,
        concert_id: Uuid,
        position: i64,
        seat: &NewSeatType,
        now: OffsetDateTime,
    ) -> Result<(), sqlx::Error>;

    /// How many seat types a concert has, and the next free display position.
    async fn seat_type_count(
        conn: &mut Self::Connection,
        concert_id: Uuid,
    ) -> Result<(i64, i64), sqlx::Error>;

    /// Applies `change` to an open concert, bumping its version unless the change is empty.
    /// Returns the rows changed: 0 when the concert is unknown, started or cancelled.
    async fn update_if_open(
        conn: &mut Self::Connection,
        id: Uuid,
        change: &ConcertChange,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error>;

    /// Bumps an open concert's version. Returns the rows changed: 0 when the concert is unknown,
    /// started or cancelled.
    async fn bump_if_open(
        conn: &mut Self::Connection,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error>;

    /// Cancels an open concert, bumping its version. Returns the rows changed: 0 when the concert
    /// is unknown, started or already cancelled.
    async fn cancel_if_open(
        conn: &mut Self::Connection,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error>;

    async fn set_capacity(
        conn: &mut Self::Connection,
        seat_type_id: Uuid,
        capacity: i64,
    ) -> Result<(), sqlx::Error>;

    /// Sets `synced_version` to `version` if that is still the concert's version and newer than
    /// what was recorded. Returns the rows changed.
    async fn mark_synced(
        conn: &mut Self::Connection,
        id: Uuid,
        version: i64,
    ) -> Result<u64, sqlx::Error>;

    /// Concerts with changes Booking has not seen, in insertion order.
    async fn unsynced(conn: &mut Self::Connection, limit: u32) -> Result<Vec<Uuid>, sqlx::Error>;

    /// A concert, without its seat types.
    async fn select_concert(
        conn: &mut Self::Connection,
        id: Uuid,
    ) -> Result<Option<ConcertRecord>, sqlx::Error>;

    /// One page of a listing ([`list_query`]), without seat types.
    async fn select_page(
        conn: &mut Self::Connection,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ConcertRecord>, sqlx::Error>;

    /// The seat types of these concerts, each with its concert's id, in display order.
    async fn select_seat_types(
        conn: &mut Self::Connection,
        concert_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, SeatTypeRecord)>, sqlx::Error>;
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
        ListStatus::Available => {
            query.push(" AND c.cancelled_at IS NULL AND c.starts_at > ");
            DB::push_millis(&mut query, to_millis(filter.now));
        }
        ListStatus::OnSale => {
            query.push(" AND c.cancelled_at IS NULL AND c.starts_at > ");
            DB::push_millis(&mut query, to_millis(filter.now));
            query.push(" AND (c.sales_open_at IS NULL OR c.sales_open_at <= ");
            DB::push_millis(&mut query, to_millis(filter.now));
            query.push(")");
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
    for<'r> i32: Decode<'r, DB> + Type<DB>,
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
        sales_open_at: DB::optional_instant(row, "sales_open_at")?,
        waiting_room: waiting_room_from_columns(
            row.try_get("waiting_room_admit_per_minute")?,
            row.try_get("waiting_room_admission_ttl_seconds")?,
        )?,
        cancelled_at: DB::optional_instant(row, "cancelled_at")?,
        created_at: DB::instant(row, "created_at")?,
        updated_at: DB::instant(row, "updated_at")?,
        version: row.try_get("version")?,
        synced_version: row.try_get("synced_version")?,
        seat_types: Vec::new(),
    })
}

/// A waiting room from its two columns, which the schema only sets together and in range.
fn waiting_room_from_columns(
    admit_per_minute: Option<i32>,
    admission_ttl_seconds: Option<i32>,
) -> Result<Option<WaitingRoom>, sqlx::Error> {
    match (admit_per_minute, admission_ttl_seconds) {
        (None, None) => Ok(None),
        (Some(admit), Some(ttl)) => match (u32::try_from(admit), u32::try_from(ttl)) {
            (Ok(admit_per_minute), Ok(admission_ttl_seconds)) => Ok(Some(WaitingRoom {
                admit_per_minute,
                admission_ttl_seconds,
            })),
            _ => Err(sqlx::Error::Decode(
                "a negative waiting room setting".into(),
            )),
        },
        _ => Err(sqlx::Error::Decode("half a waiting room".into())),
    }
}

/// The waiting room's two columns as bound: both `NULL` for none.
fn waiting_room_columns(room: Option<WaitingRoom>) -> (Option<i64>, Option<i64>) {
    (
        room.map(|room| i64::from(room.admit_per_minute)),
        room.map(|room| i64::from(room.admission_ttl_seconds)),
    )
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
