//! The Catalog store on SQLite: concerts, their seat-type definitions and a full-text index.
//!
//! Every change bumps the concert's `version`; [`CatalogStore::mark_synced`] records which
//! version Booking has seen, so the reconciler knows what to push again. Changes to a concert
//! that may no longer change (started or cancelled) are guarded in the `UPDATE` itself, so a
//! check and the write can never be split by another writer.
//!
//! Listing uses keyset pagination on `(starts_at, id)`, and text search the trigram FTS5 table
//! `concerts_fts` (kept in sync by triggers) for three characters or more, `LIKE` below that.

use std::collections::HashMap;

use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::{SqliteStore, is_unique_violation};
use sqlx::{QueryBuilder, Row, Sqlite};
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

/// The Catalog service's SQLite store.
#[derive(Debug, Clone)]
pub struct CatalogStore {
    db: SqliteStore,
}

/// The concert columns `concert_from_row` reads, as a literal so that queries stay `&'static str`.
macro_rules! concert_columns {
    () => {
        "c.id, c.name, c.artist, c.venue, c.description, c.category, c.starts_at, c.cancelled_at, \
         c.created_at, c.updated_at, c.version, c.synced_version"
    };
}

fn concert_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ConcertRecord, sqlx::Error> {
    Ok(ConcertRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        artist: row.try_get("artist")?,
        venue: row.try_get("venue")?,
        description: row.try_get("description")?,
        category: row.try_get("category")?,
        starts_at: from_millis(row.try_get("starts_at")?),
        cancelled_at: row
            .try_get::<Option<i64>, _>("cancelled_at")?
            .map(from_millis),
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
        version: row.try_get("version")?,
        synced_version: row.try_get("synced_version")?,
        seat_types: Vec::new(),
    })
}

fn seat_type_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<SeatTypeRecord, sqlx::Error> {
    Ok(SeatTypeRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        price_cents: row.try_get("price_cents")?,
        currency: row.try_get("currency")?,
        capacity: row.try_get("capacity")?,
    })
}

/// Maps the seat-type name index's unique violation to a validation error on `field`.
fn duplicate_name(error: sqlx::Error, field: &str) -> CatalogError {
    if is_unique_violation(&error, "seat_types") {
        CatalogError::invalid(
            field,
            "this concert already has a seat type with this name (names ignore case)",
        )
    } else {
        CatalogError::Store(error)
    }
}

impl CatalogStore {
    pub fn new(db: SqliteStore) -> Self {
        Self { db }
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        crate::SQLITE_MIGRATIONS.run(&self.db.write).await?;
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
        let now_ms = to_millis(now);
        let mut tx = self.db.write.begin().await?;
        sqlx::query(
            "INSERT INTO concerts (id, name, artist, venue, description, category, starts_at,
                                   created_at, updated_at, version, synced_version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0)",
        )
        .bind(id)
        .bind(concert.name.as_str())
        .bind(concert.artist.as_str())
        .bind(concert.venue.as_str())
        .bind(concert.description.as_str())
        .bind(concert.category.as_str())
        .bind(to_millis(concert.starts_at.get()))
        .bind(now_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        for (position, (seat, seat_id)) in concert.seat_types.iter().zip(seat_type_ids).enumerate()
        {
            sqlx::query(
                "INSERT INTO seat_types (id, concert_id, position, name, price_cents, currency,
                                         capacity, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(*seat_id)
            .bind(id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(seat.name.as_str())
            .bind(seat.price_cents.get())
            .bind(seat.currency.as_str())
            .bind(seat.capacity.get())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(|error| duplicate_name(error, &format!("seat_types[{position}].name")))?;
        }
        let record = load_concert(&mut tx, id)
            .await?
            .ok_or(CatalogError::Store(sqlx::Error::RowNotFound))?;
        tx.commit().await?;
        Ok(record)
    }

    /// A concert with its seat types, synced or not.
    pub async fn concert(&self, id: Uuid) -> Result<Option<ConcertRecord>, CatalogError> {
        let mut conn = self.db.read.acquire().await?;
        Ok(load_concert(&mut conn, id).await?)
    }

    /// Changes a concert's metadata while it is open (not started, not cancelled), bumping its
    /// version. An empty change changes nothing.
    pub async fn update_concert(
        &self,
        id: Uuid,
        change: &ConcertChange,
        now: OffsetDateTime,
    ) -> Result<Guarded<ConcertRecord>, CatalogError> {
        let now_ms = to_millis(now);
        let mut tx = self.db.write.begin().await?;
        let updated = sqlx::query(
            "UPDATE concerts SET
                name = coalesce(?, name),
                artist = coalesce(?, artist),
                venue = coalesce(?, venue),
                description = coalesce(?, description),
                category = coalesce(?, category),
                starts_at = coalesce(?, starts_at),
                version = version + ?,
                updated_at = CASE WHEN ? THEN ? ELSE updated_at END
             WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
        )
        .bind(change.name.as_ref().map(|v| v.as_str().to_owned()))
        .bind(change.artist.as_ref().map(|v| v.as_str().to_owned()))
        .bind(change.venue.as_ref().map(|v| v.as_str().to_owned()))
        .bind(change.description.as_ref().map(|v| v.as_str().to_owned()))
        .bind(change.category.as_ref().map(|v| v.as_str().to_owned()))
        .bind(change.starts_at.map(|v| to_millis(v.get())))
        .bind(i64::from(!change.is_empty()))
        .bind(!change.is_empty())
        .bind(now_ms)
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
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
        let now_ms = to_millis(now);
        let mut tx = self.db.write.begin().await?;
        // The guard first: it is also the write that takes SQLite's write lock.
        let updated = sqlx::query(
            "UPDATE concerts SET version = version + 1, updated_at = ?
             WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
        )
        .bind(now_ms)
        .bind(concert_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            let outcome = guarded(&mut tx, concert_id, updated, now).await?;
            tx.rollback().await?;
            return Ok(outcome);
        }
        let existing: i64 =
            sqlx::query("SELECT count(*) AS n FROM seat_types WHERE concert_id = ?")
                .bind(concert_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        if existing >= i64::try_from(NewConcert::MAX_SEAT_TYPES).unwrap_or(i64::MAX) {
            return Err(CatalogError::invalid(
                "name",
                format!(
                    "a concert has at most {} seat types",
                    NewConcert::MAX_SEAT_TYPES
                ),
            ));
        }
        sqlx::query(
            "INSERT INTO seat_types (id, concert_id, position, name, price_cents, currency,
                                     capacity, created_at)
             VALUES (?, ?,
                     (SELECT coalesce(max(position), -1) + 1 FROM seat_types WHERE concert_id = ?),
                     ?, ?, ?, ?, ?)",
        )
        .bind(seat_type_id)
        .bind(concert_id)
        .bind(concert_id)
        .bind(seat.name.as_str())
        .bind(seat.price_cents.get())
        .bind(seat.currency.as_str())
        .bind(seat.capacity.get())
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(|error| duplicate_name(error, "name"))?;
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
        sqlx::query("UPDATE seat_types SET capacity = ? WHERE id = ?")
            .bind(capacity)
            .bind(seat_type_id)
            .execute(&self.db.write)
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
        let now_ms = to_millis(now);
        let mut tx = self.db.write.begin().await?;
        let updated = sqlx::query(
            "UPDATE concerts SET cancelled_at = ?, version = version + 1, updated_at = ?
             WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
        )
        .bind(now_ms)
        .bind(now_ms)
        .bind(id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let outcome = match guarded(&mut tx, id, updated, now).await? {
            Guarded::Refused(Refusal::Cancelled) => match load_concert(&mut tx, id).await? {
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
        let updated = sqlx::query(
            "UPDATE concerts SET synced_version = ? WHERE id = ? AND version = ? AND synced_version < ?",
        )
        .bind(version)
        .bind(id)
        .bind(version)
        .bind(version)
        .execute(&self.db.write)
        .await?
        .rows_affected();
        Ok(updated == 1)
    }

    /// Concerts with changes Booking has not seen, oldest first.
    pub async fn unsynced(&self, limit: u32) -> Result<Vec<Uuid>, CatalogError> {
        let rows = sqlx::query(
            "SELECT id FROM concerts WHERE synced_version < version ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.db.read)
        .await?;
        rows.iter()
            .map(|row| row.try_get("id").map_err(CatalogError::from))
            .collect()
    }

    /// One page of synced concerts matching `filter`, after `after` in the listing order
    /// (`starts_at`, then id), at most `limit` of them, each with its seat types.
    pub async fn list(
        &self,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ConcertRecord>, CatalogError> {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
            "SELECT ",
            concert_columns!(),
            " FROM concerts c WHERE c.synced_version > 0"
        ));
        match filter.status {
            ListStatus::Available | ListStatus::OnSale => {
                query
                    .push(" AND c.cancelled_at IS NULL AND c.starts_at > ")
                    .push_bind(to_millis(filter.now));
            }
            ListStatus::All => {}
        }
        if let Some(category) = &filter.category {
            query
                .push(" AND c.category = ")
                .push_bind(category.clone())
                .push(" COLLATE NOCASE");
        }
        if let Some(from) = filter.from {
            query
                .push(" AND c.starts_at >= ")
                .push_bind(to_millis(from));
        }
        if let Some(to) = filter.to {
            query.push(" AND c.starts_at <= ").push_bind(to_millis(to));
        }
        if let Some(search) = &filter.search {
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
        if let Some(after) = after {
            query
                .push(" AND (c.starts_at, c.id) > (")
                .push_bind(after.starts_at_millis)
                .push(", ")
                .push_bind(after.id)
                .push(")");
        }
        query
            .push(" ORDER BY c.starts_at, c.id LIMIT ")
            .push_bind(i64::from(limit));

        let mut conn = self.db.read.acquire().await?;
        let rows = query.build().fetch_all(&mut *conn).await?;
        let mut concerts = rows
            .iter()
            .map(concert_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        attach_seat_types(&mut conn, &mut concerts).await?;
        Ok(concerts)
    }
}

/// Classifies a guarded `UPDATE` that touched `updated` rows: done (the concert as it is now), or
/// why not.
async fn guarded(
    tx: &mut sqlx::SqliteConnection,
    id: Uuid,
    updated: u64,
    now: OffsetDateTime,
) -> Result<Guarded<ConcertRecord>, CatalogError> {
    let Some(record) = load_concert(tx, id).await? else {
        return Ok(Guarded::Refused(Refusal::NotFound));
    };
    if updated > 0 {
        Ok(Guarded::Done(record))
    } else if record.is_cancelled() {
        Ok(Guarded::Refused(Refusal::Cancelled))
    } else if record.starts_at <= now {
        Ok(Guarded::Refused(Refusal::Started))
    } else {
        // The guard matched nothing yet the concert is open: only possible if it changed between
        // the statements, which one transaction on the single writer rules out.
        Err(CatalogError::Store(sqlx::Error::RowNotFound))
    }
}

async fn load_concert(
    conn: &mut sqlx::SqliteConnection,
    id: Uuid,
) -> Result<Option<ConcertRecord>, sqlx::Error> {
    let row = sqlx::query(concat!(
        "SELECT ",
        concert_columns!(),
        " FROM concerts c WHERE c.id = ?"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut concerts = vec![concert_from_row(&row)?];
    attach_seat_types(conn, &mut concerts).await?;
    Ok(concerts.pop())
}

/// Loads the seat types of `concerts` in one query.
async fn attach_seat_types(
    conn: &mut sqlx::SqliteConnection,
    concerts: &mut [ConcertRecord],
) -> Result<(), sqlx::Error> {
    if concerts.is_empty() {
        return Ok(());
    }
    let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT concert_id, id, name, price_cents, currency, capacity FROM seat_types WHERE concert_id IN (",
    );
    let mut ids = query.separated(", ");
    for concert in concerts.iter() {
        ids.push_bind(concert.id);
    }
    query.push(") ORDER BY concert_id, position");
    let rows = query.build().fetch_all(&mut *conn).await?;
    let mut by_concert: HashMap<Uuid, Vec<SeatTypeRecord>> = HashMap::new();
    for row in &rows {
        let concert_id: Uuid = row.try_get("concert_id")?;
        by_concert
            .entry(concert_id)
            .or_default()
            .push(seat_type_from_row(row)?);
    }
    for concert in concerts {
        concert.seat_types = by_concert.remove(&concert.id).unwrap_or_default();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::domain::{Category, Title};
    use crate::testing::{Harness, START, new_concert};

    async fn insert_synced(store: &CatalogStore, concert: &NewConcert) -> ConcertRecord {
        let id = Uuid::now_v7();
        let seat_ids: Vec<Uuid> = concert.seat_types.iter().map(|_| Uuid::now_v7()).collect();
        let record = store
            .insert_concert(id, concert, &seat_ids, START)
            .await
            .unwrap();
        assert!(store.mark_synced(id, record.version).await.unwrap());
        record
    }

    fn filter(status: ListStatus) -> ListFilter {
        ListFilter {
            status,
            now: START,
            search: None,
            category: None,
            from: None,
            to: None,
        }
    }

    async fn ids(store: &CatalogStore, filter: &ListFilter) -> Vec<Uuid> {
        store
            .list(filter, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect()
    }

    async fn search(store: &CatalogStore, text: &str) -> Vec<String> {
        let filter = ListFilter {
            search: SearchText::parse(text).unwrap(),
            ..filter(ListStatus::All)
        };
        store
            .list(&filter, None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect()
    }

    #[tokio::test]
    async fn keyset_pages_cover_every_concert_once_even_with_equal_start_times() {
        let harness = Harness::new().await;
        let store = harness.service.store();
        let mut expected = Vec::new();
        for i in 0..23 {
            // Only four distinct start times: ties are broken by id.
            let concert = new_concert(&format!("Show {i}"), "A", "V", 1 + i % 4, &[("GA", 10)]);
            let record = insert_synced(store, &concert).await;
            expected.push((record.starts_at, record.id));
        }
        expected.sort();

        let mut after = None;
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = store
                .list(&filter(ListStatus::Available), after, 5)
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.cursor());
            pages += 1;
            for concert in &page {
                assert_eq!(concert.seat_types.len(), 1);
                seen.push((concert.starts_at, concert.id));
            }
        }
        assert_eq!(pages, 5);
        assert_eq!(seen, expected);
    }

    #[tokio::test]
    async fn text_search_is_a_case_insensitive_substring_of_name_artist_or_venue() {
        let harness = Harness::new().await;
        let store = harness.service.store();
        let aurora = insert_synced(
            store,
            &new_concert(
                "Aurora World Tour",
                "Aurora",
                "Royal Albert Hall",
                1,
                &[("GA", 5)],
            ),
        )
        .await;
        insert_synced(
            store,
            &new_concert("Midnight Jazz", "The Quartet", "Blue Note", 2, &[("GA", 5)]),
        )
        .await;
        insert_synced(
            store,
            &new_concert("Rock Night", "Ünïcode Band", "Arena 100%", 3, &[("GA", 5)]),
        )
        .await;

        assert_eq!(search(store, "ROYAL").await, ["Aurora World Tour"]);
        assert_eq!(search(store, "bert h").await, ["Aurora World Tour"]);
        assert_eq!(search(store, "quART").await, ["Midnight Jazz"]);
        assert_eq!(
            search(store, "night").await,
            ["Midnight Jazz", "Rock Night"]
        );
        assert_eq!(search(store, "ünï").await, ["Rock Night"]);
        // Under three characters the trigram index cannot answer: LIKE does.
        assert_eq!(search(store, "zz").await, ["Midnight Jazz"]);
        assert_eq!(search(store, "NO").await, ["Midnight Jazz"]);
        assert_eq!(search(store, "0%").await, ["Rock Night"]);
        assert!(search(store, "_").await.is_empty());
        // FTS syntax in the text is taken literally.
        assert!(search(store, "\"a OR b*").await.is_empty());
        assert!(search(store, "absent").await.is_empty());

        // The index follows renames (triggers).
        let change = ConcertChange {
            name: Some(Title::parse("Borealis").unwrap()),
            ..ConcertChange::default()
        };
        store
            .update_concert(aurora.id, &change, START)
            .await
            .unwrap();
        assert_eq!(search(store, "REALIS").await, ["Borealis"]);
        assert!(search(store, "world tour").await.is_empty());
        // The artist is unchanged and still found.
        assert_eq!(search(store, "aurora").await, ["Borealis"]);
    }

    #[tokio::test]
    async fn filters_on_status_category_and_time_and_hides_unsynced_concerts() {
        let harness = Harness::new().await;
        let store = harness.service.store();
        let soon = insert_synced(store, &new_concert("Soon", "A", "V", 1, &[("GA", 5)])).await;
        let mut festival = new_concert("Fest", "A", "V", 48, &[("GA", 5)]);
        festival.category = Category::parse("Festival").unwrap();
        let festival = insert_synced(store, &festival).await;
        let cancelled = insert_synced(store, &new_concert("Off", "A", "V", 5, &[("GA", 5)])).await;
        let Guarded::Done(off) = store.cancel(cancelled.id, START).await.unwrap() else {
            panic!("cancel refused");
        };
        assert!(off.is_cancelled());
        // Never synced: invisible to every listing.
        let hidden = new_concert("Hidden", "A", "V", 2, &[("GA", 5)]);
        store
            .insert_concert(Uuid::now_v7(), &hidden, &[Uuid::now_v7()], START)
            .await
            .unwrap();

        assert_eq!(
            ids(store, &filter(ListStatus::Available)).await,
            [soon.id, festival.id]
        );
        assert_eq!(
            ids(store, &filter(ListStatus::All)).await,
            [soon.id, cancelled.id, festival.id]
        );
        // Later on, the first concert has started: only `all` still lists it.
        let later = ListFilter {
            now: START + time::Duration::hours(2),
            ..filter(ListStatus::Available)
        };
        assert_eq!(ids(store, &later).await, [festival.id]);

        let category = ListFilter {
            category: Some("FESTIVAL".to_owned()),
            ..filter(ListStatus::All)
        };
        assert_eq!(ids(store, &category).await, [festival.id]);

        let window = ListFilter {
            from: Some(START + time::Duration::hours(1)),
            to: Some(START + time::Duration::hours(5)),
            ..filter(ListStatus::All)
        };
        assert_eq!(ids(store, &window).await, [soon.id, cancelled.id]);
    }

    #[tokio::test]
    async fn guarded_changes_refuse_started_cancelled_and_unknown_concerts() {
        let harness = Harness::new().await;
        let store = harness.service.store();
        let record = insert_synced(store, &new_concert("Show", "A", "V", 1, &[("GA", 5)])).await;
        let after_start = START + time::Duration::hours(1);
        let change = ConcertChange {
            name: Some(Title::parse("New").unwrap()),
            ..ConcertChange::default()
        };
        assert!(matches!(
            store
                .update_concert(record.id, &change, after_start)
                .await
                .unwrap(),
            Guarded::Refused(Refusal::Started)
        ));
        assert!(matches!(
            store.cancel(record.id, after_start).await.unwrap(),
            Guarded::Refused(Refusal::Started)
        ));
        assert!(matches!(
            store.cancel(Uuid::now_v7(), START).await.unwrap(),
            Guarded::Refused(Refusal::NotFound)
        ));

        let Guarded::Done(updated) = store
            .update_concert(record.id, &change, START)
            .await
            .unwrap()
        else {
            panic!("update refused");
        };
        assert_eq!(updated.name, "New");
        assert_eq!(updated.version, 2);
        assert!(!updated.is_synced());
        // An empty change changes nothing, not even the version.
        let Guarded::Done(same) = store
            .update_concert(record.id, &ConcertChange::default(), START)
            .await
            .unwrap()
        else {
            panic!("no-op refused");
        };
        assert_eq!(same.version, 2);

        // Cancelling twice is one cancellation.
        let Guarded::Done(once) = store.cancel(record.id, START).await.unwrap() else {
            panic!()
        };
        let Guarded::Done(twice) = store.cancel(record.id, START).await.unwrap() else {
            panic!()
        };
        assert_eq!(once.version, twice.version);
        assert!(matches!(
            store
                .update_concert(record.id, &change, START)
                .await
                .unwrap(),
            Guarded::Refused(Refusal::Cancelled)
        ));
        assert!(matches!(
            store
                .add_seat_type(
                    record.id,
                    Uuid::now_v7(),
                    &crate::testing::new_seat_type("VIP", 2),
                    START
                )
                .await
                .unwrap(),
            Guarded::Refused(Refusal::Cancelled)
        ));

        // Synced only for the version that was pushed.
        assert!(!store.mark_synced(record.id, 2).await.unwrap());
        assert!(store.mark_synced(record.id, twice.version).await.unwrap());
        assert!(store.unsynced(10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn seat_type_names_are_unique_per_concert_ignoring_case() {
        let harness = Harness::new().await;
        let store = harness.service.store();
        let record = insert_synced(store, &new_concert("Show", "A", "V", 1, &[("VIP", 5)])).await;
        let error = store
            .add_seat_type(
                record.id,
                Uuid::now_v7(),
                &crate::testing::new_seat_type("vip", 2),
                START,
            )
            .await
            .unwrap_err();
        let CatalogError::Validation(errors) = error else {
            panic!("expected a validation error, got {error:?}");
        };
        assert_eq!(errors[0].field, "name");

        let Guarded::Done(record) = store
            .add_seat_type(
                record.id,
                Uuid::now_v7(),
                &crate::testing::new_seat_type("Balcony", 2),
                START,
            )
            .await
            .unwrap()
        else {
            panic!()
        };
        let names: Vec<_> = record.seat_types.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["VIP", "Balcony"]);
        // Another concert may reuse the name.
        insert_synced(store, &new_concert("Other", "A", "V", 1, &[("VIP", 5)])).await;
    }
}
