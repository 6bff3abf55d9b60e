//! The Catalog store's statements on PostgreSQL: `$n` placeholders, instants as `timestamptz`
//! bound at whole milliseconds (the precision SQLite keeps, so both engines hand back the same
//! instants and cursors), text search through `ILIKE`, which a pg_trgm index speeds up where the
//! extension exists.

use boxoffice_shared::clock::{from_millis, to_millis};
use boxoffice_shared::db::is_pg_unique_violation;
use sqlx::{PgConnection, Postgres, QueryBuilder, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ConcertRecord, Engine, ListFilter, SEAT_TYPE_NAME_INDEX, SeatTypeRecord, concert_columns,
    concert_from_row, list_query, seat_type_columns, seat_type_from_row, waiting_room_columns,
};
use crate::domain::{ConcertChange, Cursor, NewConcert, NewSeatType, SearchText};

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

    fn is_duplicate_name(error: &sqlx::Error) -> bool {
        // PostgreSQL names the index in the error's constraint field.
        is_pg_unique_violation(error, SEAT_TYPE_NAME_INDEX)
    }

    async fn insert_concert(
        conn: &mut PgConnection,
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, 1, 0)",
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
        .bind(concert.sales_open_at.map(pg_instant))
        .bind(admit_per_minute)
        .bind(admission_ttl_seconds)
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn insert_seat_type(
        conn: &mut PgConnection,
        id: Uuid,
        concert_id: Uuid,
        position: i64,
        seat: &NewSeatType,
        now: OffsetDateTime,
    ) -> Result<(), sqlx::Error> {
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
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn seat_type_count(
        conn: &mut PgConnection,
        concert_id: Uuid,
    ) -> Result<(i64, i64), sqlx::Error> {
        sqlx::query_as(
            "SELECT count(*), coalesce(max(position), -1) + 1
             FROM seat_types WHERE concert_id = $1",
        )
        .bind(concert_id)
        .fetch_one(conn)
        .await
    }

    async fn update_if_open(
        conn: &mut PgConnection,
        id: Uuid,
        change: &ConcertChange,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        let changed = !change.is_empty();
        let (admit_per_minute, admission_ttl_seconds) =
            waiting_room_columns(change.waiting_room.flatten());
        Ok(sqlx::query(
            "UPDATE concerts SET
                name = coalesce($1, name),
                artist = coalesce($2, artist),
                venue = coalesce($3, venue),
                description = coalesce($4, description),
                category = coalesce($5, category),
                starts_at = coalesce($6, starts_at),
                time_zone = coalesce($7, time_zone),
                sales_open_at = CASE WHEN $12 THEN $13 ELSE sales_open_at END,
                waiting_room_admit_per_minute =
                    CASE WHEN $14 THEN $15 ELSE waiting_room_admit_per_minute END,
                waiting_room_admission_ttl_seconds =
                    CASE WHEN $14 THEN $16 ELSE waiting_room_admission_ttl_seconds END,
                version = version + $8,
                updated_at = CASE WHEN $9 THEN $10 ELSE updated_at END
             WHERE id = $11 AND cancelled_at IS NULL AND starts_at > $10",
        )
        .bind(change.name.as_ref().map(|v| v.as_str()))
        .bind(change.artist.as_ref().map(|v| v.as_str()))
        .bind(change.venue.as_ref().map(|v| v.as_str()))
        .bind(change.description.as_ref().map(|v| v.as_str()))
        .bind(change.category.as_ref().map(|v| v.as_str()))
        .bind(change.starts_at.map(|v| pg_instant(v.get())))
        .bind(change.time_zone.as_ref().map(|v| v.as_str()))
        .bind(i64::from(changed))
        .bind(changed)
        .bind(pg_instant(now))
        .bind(id)
        .bind(change.sales_open_at.is_some())
        .bind(change.sales_open_at.flatten().map(pg_instant))
        .bind(change.waiting_room.is_some())
        .bind(admit_per_minute)
        .bind(admission_ttl_seconds)
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn bump_if_open(
        conn: &mut PgConnection,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE concerts SET version = version + 1, updated_at = $1
             WHERE id = $2 AND cancelled_at IS NULL AND starts_at > $1",
        )
        .bind(pg_instant(now))
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn cancel_if_open(
        conn: &mut PgConnection,
        id: Uuid,
        now: OffsetDateTime,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE concerts SET cancelled_at = $1, version = version + 1, updated_at = $1
             WHERE id = $2 AND cancelled_at IS NULL AND starts_at > $1",
        )
        .bind(pg_instant(now))
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn set_capacity(
        conn: &mut PgConnection,
        seat_type_id: Uuid,
        capacity: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE seat_types SET capacity = $1 WHERE id = $2")
            .bind(capacity)
            .bind(seat_type_id)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn mark_synced(
        conn: &mut PgConnection,
        id: Uuid,
        version: i64,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE concerts SET synced_version = $1
             WHERE id = $2 AND version = $1 AND synced_version < $1",
        )
        .bind(version)
        .bind(id)
        .execute(conn)
        .await?
        .rows_affected())
    }

    async fn unsynced(conn: &mut PgConnection, limit: u32) -> Result<Vec<Uuid>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT id FROM concerts WHERE synced_version < version ORDER BY seq LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(conn)
        .await
    }

    async fn select_concert(
        conn: &mut PgConnection,
        id: Uuid,
    ) -> Result<Option<ConcertRecord>, sqlx::Error> {
        sqlx::query(concat!(
            "SELECT ",
            concert_columns!(),
            " FROM concerts c WHERE c.id = $1"
        ))
        .bind(id)
        .fetch_optional(conn)
        .await?
        .map(|row| concert_from_row::<Postgres>(&row))
        .transpose()
    }

    async fn select_page(
        conn: &mut PgConnection,
        filter: &ListFilter,
        after: Option<Cursor>,
        limit: u32,
    ) -> Result<Vec<ConcertRecord>, sqlx::Error> {
        list_query::<Postgres>(filter, after, limit)
            .build()
            .fetch_all(conn)
            .await?
            .iter()
            .map(concert_from_row::<Postgres>)
            .collect()
    }

    async fn select_seat_types(
        conn: &mut PgConnection,
        concert_ids: &[Uuid],
    ) -> Result<Vec<(Uuid, SeatTypeRecord)>, sqlx::Error> {
        sqlx::query(concat!(
            "SELECT ",
            seat_type_columns!(),
            " FROM seat_types WHERE concert_id = ANY($1) ORDER BY concert_id, position"
        ))
        .bind(concert_ids)
        .fetch_all(conn)
        .await?
        .iter()
        .map(seat_type_from_row::<Postgres>)
        .collect()
    }
}

/// `at` as the PostgreSQL store binds it: truncated to whole milliseconds, the precision SQLite
/// keeps, so both engines hand back the same instants.
pub(super) fn pg_instant(at: OffsetDateTime) -> OffsetDateTime {
    pg_millis(to_millis(at))
}

/// 0000-01-01T00:00:00Z in epoch milliseconds: the earliest RFC 3339 instant.
pub(super) const MIN_MILLIS: i64 = -62_167_219_200_000;
/// 9999-12-31T23:59:59.999Z in epoch milliseconds: the latest RFC 3339 instant, and the latest
/// the `time` crate represents.
pub(super) const MAX_MILLIS: i64 = 253_402_300_799_999;

/// Epoch milliseconds as a `timestamptz` bind. Only a forged cursor holds milliseconds outside
/// years 0000 to 9999; clamped into them, it compares with every stored instant as SQLite's
/// integer would, instead of failing (`timestamp out of range`) or wrapping to the epoch.
pub(super) fn pg_millis(millis: i64) -> OffsetDateTime {
    from_millis(millis.clamp(MIN_MILLIS, MAX_MILLIS))
}
