//! The Catalog store's statements on SQLite: `?` placeholders, instants as epoch milliseconds,
//! text search through the trigram FTS5 table `concerts_fts` (kept in sync by triggers) for three
//! characters or more and `LIKE` below that.

use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::is_unique_violation;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ConcertRecord, Engine, ListFilter, SEAT_TYPE_NAME_INDEX, SeatTypeRecord, concert_columns,
    concert_from_row, list_query, seat_type_columns, seat_type_from_row, waiting_room_columns,
};
use crate::domain::{ConcertChange, Cursor, NewConcert, NewSeatType, SearchText};

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

    fn is_duplicate_name(error: &sqlx::Error) -> bool {
        // SQLite names an index on an expression in its message.
        is_unique_violation(error, SEAT_TYPE_NAME_INDEX)
    }

    async fn insert_concert(
        conn: &mut SqliteConnection,
        id: Uuid,
        concert: &NewConcert,
        now: OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
        let (admit_per_minute, admission_ttl_seconds) = waiting_room_columns(concert.waiting_room);
        sqlx::query(
            "INSERT INTO concerts (id, name, artist, venue, description, category,
                                   starts_at, created_at, updated_at, time_zone,
                                   sales_open_at, waiting_room_admit_per_minute,
                                   waiting_room_admission_ttl_seconds, version, synced_version)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 0)",
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
        .bind(concert.sales_open_at.map(to_millis))
        .bind(admit_per_minute)
        .bind(admission_ttl_seconds)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn insert_seat_type(
        conn: &mut SqliteConnection,
        id: Uuid,
        concert_id: Uuid,
        position: i64,
        seat: &NewSeatType,
        now: OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
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
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn seat_type_count(
        conn: &mut SqliteConnection,
        concert_id: Uuid,
    ) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "SELECT count(*), coalesce(max(position), -1) + 1
             FROM seat_types WHERE concert_id = ?",
        )
        .bind(concert_id)
        .fetch_one(conn)
        .await
    }

    async fn update_if_open(
        conn: &mut SqliteConnection,
        id: Uuid,
        change: &ConcertChange,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        let changed = !change.is_empty();
        let (admit_per_minute, admission_ttl_seconds) =
            waiting_room_columns(change.waiting_room.flatten());
        Ok(sqlx::query(
            "UPDATE concerts SET
                name = coalesce(?, name),
                artist = coalesce(?, artist),
                venue = coalesce(?, venue),
                description = coalesce(?, description),
                category = coalesce(?, category),
                starts_at = coalesce(?, starts_at),
                time_zone = coalesce(?, time_zone),
                sales_open_at = CASE WHEN ? THEN ? ELSE sales_open_at END,
                waiting_room_admit_per_minute =
                    CASE WHEN ? THEN ? ELSE waiting_room_admit_per_minute END,
                waiting_room_admission_ttl_seconds =
                    CASE WHEN ? THEN ? ELSE waiting_room_admission_ttl_seconds END,
                version = version + ?,
                updated_at = CASE WHEN ? THEN ? ELSE updated_at END
             WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
        )
        .bind(change.name.as_ref().map(|v| v.as_str()))
        .bind(change.artist.as_ref().map(|v| v.as_str()))
        .bind(change.venue.as_ref().map(|v| v.as_str()))
        .bind(change.description.as_ref().map(|v| v.as_str()))
        .bind(change.category.as_ref().map(|v| v.as_str()))
        .bind(change.starts_at.map(|v| to_millis(v.get())))
        .bind(change.time_zone.as_ref().map(|v| v.as_str()))
        .bind(change.sales_open_at.is_some())
        .bind(change.sales_open_at.flatten().map(to_millis))
        .bind(change.waiting_room.is_some())
        .bind(admit_per_minute)
        .bind(change.waiting_room.is_some())
        .bind(admission_ttl_seconds)
        .bind(i64::from(changed))
        .bind(changed)
        .bind(to_millis(now))
        .bind(id)
        .bind(to_millis(now))
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn bump_if_open(
        conn: &mut SqliteConnection,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE concerts SET version = version + 1, updated_at = ?
             WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
        )
        .bind(to_millis(now))
        .bind(id)
        .bind(to_millis(now))
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn cancel_if_open(
        conn: &mut SqliteConnection,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE concerts SET cancelled_at = ?, version = version + 1, updated_at = ?
             WHERE id = ? AND cancelled_at IS NULL AND starts_at > ?",
        )
        .bind(to_millis(now))
        .bind(to_millis(now))
        .bind(id)
        .bind(to_millis(now))
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn set_capacity(
        conn: &mut SqliteConnection,
        seat_type_id: Uuid,
        capacity: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE seat_types SET capacity = ? WHERE id = ?")
            .bind(capacity)
            .bind(seat_type_id)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn mark_synced(
        conn: &mut SqliteConnection,
        id: Uuid,
        version: i64,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE concerts SET synced_version = ?
             WHERE id = ? AND version = ? AND synced_version < ?",
        )
        .bind(version)
        .bind(id)
        .bind(version)
        .bind(version)
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn unsynced(conn: &mut SqliteConnection, limit: u32) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT id FROM concerts WHERE synced_version < version ORDER BY seq LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
    }

    async fn select_concert(
        conn: &mut SqliteConnection,
        id: Uuid,
    ) -> Result<Option<ConcertRecord>, sqlx::Error> {
        sqlx::query(concat!(
            "SELECT ",
            concert_columns!(),
            " FROM concerts c WHERE c.id = ?"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|row| concert_from_row::<Sqlite>(&row))
        .transpose()
    }

    async fn select_page(
        conn: &mut SqliteConnection,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ConcertRecord>, sqlx::Error> {
        list_query::<Sqlite>(filter, after, limit)
            .build()
            .fetch_all(conn)
            .await?
            .iter()
            .map(concert_from_row::<Sqlite>)
            .collect()
    }

    async fn select_seat_types(
        conn: &mut SqliteConnection,
        concert_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, SeatTypeRecord)>, sqlx::Error> {
        let mut query: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
            "SELECT ",
            seat_type_columns!(),
            " FROM seat_types WHERE concert_id IN ("
        ));
        let mut ids = query.separated(", ");
        for id in concert_ids {
            ids.push_bind(*id);
        }
        query.push(") ORDER BY concert_id, position");
        query
            .build()
            .fetch_all(conn)
            .await?
            .iter()
            .map(seat_type_from_row::<Sqlite>)
            .collect()
    }
}
